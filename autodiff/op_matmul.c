/*
 * op_matmul.c - matrix product with optionally transposed operands.
 *
 * Shapes: op(a) [m,k] x op(b) [k,n] -> [m,n].
 */
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
    if (n->a.flags & ~(AD_TRANS_A | AD_TRANS_B))
        return ad__fail(t, AD_ERR_ARG, "matmul: unknown flags %d", n->a.flags);
    if (a->shape.rank != 2 || b->shape.rank != 2)
        return ad__fail(t, AD_ERR_SHAPE, "matmul: %s x %s: both operands must be 2-D",
                        ad__shape_str(a->shape, sa), ad__shape_str(b->shape, sb));
    int64_t m, ka, kb, nn;
    dims(a, ta, &m, &ka);
    dims(b, tb, &kb, &nn);
    if (ka != kb)
        return ad__fail(t, AD_ERR_SHAPE, "matmul: %s%s x %s%s: inner dimensions %lld and %lld differ",
                        ad__shape_str(a->shape, sa), ta ? "^T" : "", ad__shape_str(b->shape, sb),
                        tb ? "^T" : "", (long long)ka, (long long)kb);
    *out = ad_shape2(m, nn);
    return AD_OK;
}

/*
 * Products this small (the textbook nets' 3x3 weights, single rows) cost less
 * as a plain loop than the kernel's set-up for blocking and packing. Each C
 * element is still its start value plus the terms in increasing p.
 */
#define SMALL_PRODUCT(m, n, k) ((m) <= 64 && (n) <= 64 && (k) <= 64 && (m) * (n) * (k) <= 256)

#define DEFINE_SMALL(T)                                                                        \
    static void small_##T(int ta, int tb, size_t m, size_t nn, size_t k, const T *a,           \
                          const T *b, T *restrict c, int accumulate)                            \
    {                                                                                          \
        size_t ar = ta ? 1 : k, ac = ta ? m : 1, br = tb ? 1 : nn, bc = tb ? k : 1;            \
        for (size_t i = 0; i < m; i++) {                                                       \
            T *restrict ci = c + i * nn;                                                       \
            const T *ai = a + i * ar;                                                          \
            for (size_t j = 0; j < nn; j++) {                                                  \
                const T *bj = b + j * bc;                                                      \
                T s = accumulate ? ci[j] : 0;                                                  \
                for (size_t p = 0; p < k; p++) s += ai[p * ac] * bj[p * br];                   \
                ci[j] = s;                                                                     \
            }                                                                                  \
        }                                                                                      \
    }

DEFINE_SMALL(float)
DEFINE_SMALL(double)

/* One product dst (+)= op(x) op(y) in the given dtype. */
static void gemm(ad_dtype dt, int tx, int ty, int64_t m, int64_t nn, int64_t k, const void *x,
                 const void *y, void *dst, int accumulate)
{
    size_t um = (size_t)m, un = (size_t)nn, uk = (size_t)k;
    if (SMALL_PRODUCT(um, un, uk)) {
        if (dt == AD_F32) small_float(tx, ty, um, un, uk, x, y, dst, accumulate);
        else small_double(tx, ty, um, un, uk, x, y, dst, accumulate);
    } else if (dt == AD_F32) {
        ad__gemm_f32(tx, ty, um, un, uk, x, y, dst, accumulate);
    } else {
        ad__gemm_f64(tx, ty, um, un, uk, x, y, dst, accumulate);
    }
}

ad_status ad__matmul_fwd(ad_tape *t, ad_node *n)
{
    (void)t;
    const ad_tensor *a = n->in[0], *b = n->in[1];
    int ta = (n->a.flags & AD_TRANS_A) != 0, tb = (n->a.flags & AD_TRANS_B) != 0;
    int64_t m, k, kb, nn;
    dims(a, ta, &m, &k);
    dims(b, tb, &kb, &nn);
    gemm(a->dtype, ta, tb, m, nn, k, a->data, b->data, n->out->data, 0);
    return AD_OK;
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
            gemm(dt, 0, !tb, m, k, nn, g, b->data, ga, 1);
        else /* dA[k,m] = op(B)[k,n] G^T[n,m] */
            gemm(dt, tb, 1, k, m, nn, b->data, g, ga, 1);
    }
    void *gb = ad__grad(t, b);
    if (gb) {
        if (!tb) /* dB[k,n] = op(A)^T[k,m] G[m,n] */
            gemm(dt, !ta, 0, k, nn, m, a->data, g, gb, 1);
        else /* dB[n,k] = G^T[n,m] op(A)[m,k] */
            gemm(dt, 1, ta, nn, k, m, g, a->data, gb, 1);
    }
}

ad_tensor *ad_matmul(ad_tape *t, ad_tensor *a, ad_tensor *b, int flags)
{
    ad__args args = {0};
    args.flags = flags;
    ad_tensor *in[2] = {a, b};
    return ad__record(t, AD_OP_MATMUL, in, 2, &args);
}
