/*
 * op_matmul.c - matrix product with optionally transposed operands, and the
 * same with a row bias added (addmm), so that a layer's x W + b is one node
 * with one output buffer.
 *
 * Shapes: op(a) [m,k] x op(b) [k,n] -> [m,n]; addmm's bias [n] or [1,n].
 */
#include <string.h>

#include "internal.h"
#include "kernels.h"

static void dims(const ad_tensor *x, int trans, int64_t *rows, int64_t *cols)
{
    *rows = trans ? x->shape.dim[1] : x->shape.dim[0];
    *cols = trans ? x->shape.dim[0] : x->shape.dim[1];
}

ad_status ad__shape_matmul(ad_tape *t, ad_node *n, ad_shape *out)
{
    const ad_tensor *a = n->in[0], *b = n->in[1];
    char sa[AD__SHAPE_BUF], sb[AD__SHAPE_BUF];
    int ta = (n->a.flags & AD_TRANS_A) != 0, tb = (n->a.flags & AD_TRANS_B) != 0;
    const char *name = ad__ops[n->op].name;
    if (n->a.flags & ~(AD_TRANS_A | AD_TRANS_B))
        return ad__fail(t, AD_ERR_ARG, "%s: unknown flags %d", name, n->a.flags);
    if (a->shape.rank != 2 || b->shape.rank != 2)
        return ad__fail(t, AD_ERR_SHAPE, "%s: %s x %s: both operands must be 2-D", name,
                        ad__shape_str(a->shape, sa), ad__shape_str(b->shape, sb));
    int64_t m, ka, kb, nn;
    dims(a, ta, &m, &ka);
    dims(b, tb, &kb, &nn);
    if (ka != kb)
        return ad__fail(t, AD_ERR_SHAPE, "%s: %s%s x %s%s: inner dimensions %lld and %lld differ",
                        name, ad__shape_str(a->shape, sa), ta ? "^T" : "", ad__shape_str(b->shape, sb),
                        tb ? "^T" : "", (long long)ka, (long long)kb);
    *out = ad_shape2(m, nn);
    return AD_OK;
}

/* out = op(a) op(b), or with accumulate out += op(a) op(b). */
static void product(const ad_node *n, int accumulate)
{
    const ad_tensor *a = n->in[0], *b = n->in[1];
    int ta = (n->a.flags & AD_TRANS_A) != 0, tb = (n->a.flags & AD_TRANS_B) != 0;
    int64_t m, k, kb, nn;
    dims(a, ta, &m, &k);
    dims(b, tb, &kb, &nn);
    if (a->dtype == AD_F32)
        ad__gemm_f32(ta, tb, (size_t)m, (size_t)nn, (size_t)k, a->data, b->data, n->out->data, accumulate);
    else
        ad__gemm_f64(ta, tb, (size_t)m, (size_t)nn, (size_t)k, a->data, b->data, n->out->data, accumulate);
}

ad_status ad__matmul_fwd(ad_tape *t, ad_node *n)
{
    (void)t;
    product(n, 0);
    return AD_OK;
}

/* One product dst (+)= op(x) op(y) in the node's dtype. */
static void gemm(ad_dtype dt, int tx, int ty, int64_t m, int64_t nn, int64_t k, const void *x,
                 const void *y, void *dst)
{
    if (dt == AD_F32)
        ad__gemm_f32(tx, ty, (size_t)m, (size_t)nn, (size_t)k, x, y, dst, 1);
    else
        ad__gemm_f64(tx, ty, (size_t)m, (size_t)nn, (size_t)k, x, y, dst, 1);
}

/*
 * With C = op(A) op(B) and G = dL/dC:
 *   dL/dop(A) = G op(B)^T, dL/dop(B) = op(A)^T G.
 * For a transposed operand the stored gradient is the transpose of that:
 *   trans_a: dA = op(B) G^T;   trans_b: dB = G^T op(A).
 */
void ad__matmul_bwd(ad_tape *t, ad_node *n)
{
    ad_tensor *a = n->in[0], *b = n->in[1];
    const void *g = n->out->grad;
    int ta = (n->a.flags & AD_TRANS_A) != 0, tb = (n->a.flags & AD_TRANS_B) != 0;
    int64_t m, k, kb, nn;
    dims(a, ta, &m, &k);
    dims(b, tb, &kb, &nn);
    ad_dtype dt = a->dtype;
    void *ga = ad__grad(t, a);
    if (ga) {
        if (!ta) /* dA[m,k] = G[m,n] op(B)^T[n,k] */
            gemm(dt, 0, !tb, m, k, nn, g, b->data, ga);
        else /* dA[k,m] = op(B)[k,n] G^T[n,m] */
            gemm(dt, tb, 1, k, m, nn, b->data, g, ga);
    }
    void *gb = ad__grad(t, b);
    if (gb) {
        if (!tb) /* dB[k,n] = op(A)^T[k,m] G[m,n] */
            gemm(dt, !ta, 0, k, nn, m, a->data, g, gb);
        else /* dB[n,k] = G^T[n,m] op(A)[m,k] */
            gemm(dt, 1, ta, nn, k, m, g, a->data, gb);
    }
}

/* ---- addmm: op(a) op(b) + bias ------------------------------------------------------ */

ad_status ad__shape_addmm(ad_tape *t, ad_node *n, ad_shape *out)
{
    if (ad__shape_matmul(t, n, out) != AD_OK) return ad_tape_status(t);
    ad_shape bs = n->in[2]->shape;
    int row = (bs.rank == 1 && bs.dim[0] == out->dim[1]) ||
              (bs.rank == 2 && bs.dim[0] == 1 && bs.dim[1] == out->dim[1]);
    if (!row) {
        char sb[AD__SHAPE_BUF], so[AD__SHAPE_BUF];
        return ad__fail(t, AD_ERR_SHAPE, "addmm: bias %s for a product %s: the bias must be [%lld] or [1, %lld]",
                        ad__shape_str(bs, sb), ad__shape_str(*out, so), (long long)out->dim[1],
                        (long long)out->dim[1]);
    }
    return AD_OK;
}

/* Every row starts as the bias; the product is added onto it. */
ad_status ad__addmm_fwd(ad_tape *t, ad_node *n)
{
    (void)t;
    size_t rows = (size_t)n->out->shape.dim[0], row = (size_t)n->out->shape.dim[1] * ad_dtype_size(n->out->dtype);
    for (size_t i = 0; i < rows; i++) memcpy((char *)n->out->data + i * row, n->in[2]->data, row);
    product(n, 1);
    return AD_OK;
}

#define DEFINE_COLUMN_SUMS(T)                                                        \
    static void column_sums_##T(size_t rows, size_t cols, const T *g, T *out)        \
    {                                                                                \
        for (size_t i = 0; i < rows; i++)                                            \
            for (size_t j = 0; j < cols; j++) out[j] += g[i * cols + j];             \
    }
DEFINE_COLUMN_SUMS(float)
DEFINE_COLUMN_SUMS(double)

/* d bias = the column sums of G; a and b as for matmul. */
void ad__addmm_bwd(ad_tape *t, ad_node *n)
{
    ad__matmul_bwd(t, n);
    void *gb = ad__grad(t, n->in[2]);
    if (!gb) return;
    size_t rows = (size_t)n->out->shape.dim[0], cols = (size_t)n->out->shape.dim[1];
    if (n->out->dtype == AD_F32) column_sums_float(rows, cols, n->out->grad, gb);
    else column_sums_double(rows, cols, n->out->grad, gb);
}

ad_tensor *ad_addmm(ad_tape *t, ad_tensor *bias, ad_tensor *a, ad_tensor *b, int flags)
{
    ad__args args = {0};
    args.flags = flags;
    ad_tensor *in[3] = {a, b, bias};
    return ad__record(t, AD_OP_ADDMM, in, 3, &args);
}

ad_tensor *ad_matmul(ad_tape *t, ad_tensor *a, ad_tensor *b, int flags)
{
    ad__args args = {0};
    args.flags = flags;
    ad_tensor *in[2] = {a, b};
    return ad__record(t, AD_OP_MATMUL, in, 2, &args);
}
