/*
 * op_matmul.c - matrix product with optionally transposed operands, and the
 * same with a row bias added (addmm), so that a layer's x W + b is one node
 * with one output buffer.
 *
 * Shapes: op(a) [m,k] x op(b) [k,n] -> [m,n]; addmm's bias [n] or [1,n].
 */
#include <string.h>

#include "internal.h"
#include "split.h"
#include "kernels.h"

static void dims(const ad_tensor *x, int trans, int64_t *rows, int64_t *cols)
{
    *rows = trans ? x->shape.dim[1] : x->shape.dim[0];
    *cols = trans ? x->shape.dim[0] : x->shape.dim[1];
}

/* The messages of ad__shape_matmul, in the order its checks are made. */
static AD__COLD ad_status fail_matmul(ad_tape *t, const ad_node *n)
{
    const ad_tensor *a = n->in[0], *b = n->in[1];
    char sa[AD__SHAPE_BUF], sb[AD__SHAPE_BUF];
    int ta = (n->a.flags & AD_TRANS_A) != 0, tb = (n->a.flags & AD_TRANS_B) != 0;
    const char *name = ad__ops[n->op].name;
    if (n->a.flags & ~(AD_TRANS_A | AD_TRANS_B))
        return ad_tape_fail(t, AD_ERR_ARG, "%s: unknown flags %d", name, n->a.flags);
    if (a->shape.rank != 2 || b->shape.rank != 2)
        return ad_tape_fail(t, AD_ERR_SHAPE, "%s: %s x %s: both operands must be 2-D", name,
                        ad__shape_str(a->shape, sa), ad__shape_str(b->shape, sb));
    int64_t m, ka, kb, nn;
    dims(a, ta, &m, &ka);
    dims(b, tb, &kb, &nn);
    return ad_tape_fail(t, AD_ERR_SHAPE, "%s: %s%s x %s%s: inner dimensions %lld and %lld differ",
                    name, ad__shape_str(a->shape, sa), ta ? "^T" : "", ad__shape_str(b->shape, sb),
                    tb ? "^T" : "", (long long)ka, (long long)kb);
}

ad_status ad__shape_matmul(ad_tape *t, ad_node *n, ad_shape *out)
{
    const ad_tensor *a = n->in[0], *b = n->in[1];
    int flags = n->a.flags;
    if ((flags & ~(AD_TRANS_A | AD_TRANS_B)) || a->shape.rank != 2 || b->shape.rank != 2)
        return fail_matmul(t, n);
    int64_t m, ka, kb, nn;
    dims(a, (flags & AD_TRANS_A) != 0, &m, &ka);
    dims(b, (flags & AD_TRANS_B) != 0, &kb, &nn);
    if (ka != kb) return fail_matmul(t, n);
    *out = ad_shape2(m, nn);
    return AD_OK;
}

/* The product op(a) op(b) of the given sizes into c (accumulate: c +=). */
static inline ad__product prod(ad_dtype dt, int ta, int tb, int64_t m, int64_t n, int64_t k, const void *a,
                               const void *b, void *c, int accumulate)
{
    ad__product p = {dt == AD_F64, ta, tb, (size_t)m, (size_t)n, (size_t)k, a, b, c, accumulate, NULL, NULL};
    return p;
}

/* out = op(a) op(b), or with a bias out = bias + op(a) op(b) row by row. */
static void product(ad_tape *t, const ad_node *n, const void *bias)
{
    const ad_tensor *a = n->in[0], *b = n->in[1];
    int ta = (n->a.flags & AD_TRANS_A) != 0, tb = (n->a.flags & AD_TRANS_B) != 0;
    int64_t m, k, kb, nn;
    dims(a, ta, &m, &k);
    dims(b, tb, &kb, &nn);
    ad__product p = prod(a->dtype, ta, tb, m, nn, k, a->data, b->data, n->out->data, 0);
    p.bias = bias;
    p.packed = ad__packed_for(t, b, tb, (size_t)nn, (size_t)k, (size_t)m);
    if (ad__status(t) != AD_OK) return;
    ad__gemm(&p);
}

ad_status ad__matmul_fwd(ad_tape *t, ad_node *n)
{
    product(t, n, NULL);
    return ad__status(t);
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
        ad__product p;
        if (!ta) { /* dA[m,k] = G[m,n] op(B)^T[n,k] */
            p = prod(dt, 0, !tb, m, k, nn, g, b->data, ga, 1);
            p.packed = ad__packed_for(t, b, !tb, (size_t)k, (size_t)nn, (size_t)m);
        } else { /* dA[k,m] = op(B)[k,n] G^T[n,m] */
            p = prod(dt, tb, 1, k, m, nn, b->data, g, ga, 1);
        }
        ad__gemm(&p);
    }
    /* a copy's gradient on a tape that does not keep it: see copy_grads.c */
    int direct = 0, lean = b->param && ad__tape_lean_copies(t) && b->requires_grad;
    void *gb = lean ? ad__weight_grad(t, b, a->data, ta, g, (size_t)m, (size_t)k, (size_t)nn, &direct)
                    : ad__grad(t, b);
    /* On a lean tape the per-step product is stacked whether it goes into the
     * parameter or (with few rows) into the buffer of a copy the steps share. */
    if (gb && !(lean && ad__defer_weight_grad(t, b, a->data, ta, n->out, (size_t)m, (size_t)k, (size_t)nn, tb, gb, !direct))) {
        ad__product p = !tb ? prod(dt, !ta, 0, k, nn, m, a->data, g, gb, 1)  /* dB[k,n] = op(A)^T[k,m] G[m,n] */
                            : prod(dt, 1, ta, nn, k, m, g, a->data, gb, 1); /* dB[n,k] = G^T[n,m] op(A)[m,k] */
        ad__gemm(&p);
    }
}

/*
 * Forward mode: d(op(A) op(B)) = op(dA) op(B) + op(A) op(dB), direction by
 * direction. Untransposed, the K tangents of A stack into one [K m, k]
 * operand, so that term is a single product of K m rows. With `bias` (the
 * tangents of addmm's bias, or NULL) every row of direction k adds its row.
 */
static ad_status product_jvp(ad_tape *t, ad_node *n, const char *bias)
{
    const ad_tensor *a = n->in[0], *b = n->in[1];
    int ta = (n->a.flags & AD_TRANS_A) != 0, tb = (n->a.flags & AD_TRANS_B) != 0;
    int64_t m, k, kb, nn;
    dims(a, ta, &m, &k);
    dims(b, tb, &kb, &nn);
    ad_dtype dt = a->dtype;
    size_t es = ad__dtype_size(dt), K = (size_t)ad__tan_k(t), ny = n->out->numel;
    const char *da = ad__tan(t, a), *db = ad__tan(t, b);
    char *dy = ad__tan_new(t, n);
    if (!dy) return ad_tape_status(t);
    ad__product p;
    if (da && !ta) p = prod(dt, 0, tb, m * (int64_t)K, nn, k, da, b->data, dy, 0), ad__gemm(&p);
    for (size_t d = 0; d < K; d++) {
        char *yk = dy + d * ny * es;
        if (da && ta) p = prod(dt, 1, tb, m, nn, k, da + d * a->numel * es, b->data, yk, 1), ad__gemm(&p);
        if (db) p = prod(dt, ta, tb, m, nn, k, a->data, db + d * b->numel * es, yk, 1), ad__gemm(&p);
        if (!bias) continue;
        const char *bk = bias + d * (size_t)nn * es;
        for (int64_t r = 0; r < m; r++)
            for (int64_t j = 0; j < nn; j++) {
                if (dt == AD_F32) ((float *)(void *)yk)[r * nn + j] += ((const float *)(const void *)bk)[j];
                else ((double *)(void *)yk)[r * nn + j] += ((const double *)(const void *)bk)[j];
            }
    }
    return AD_OK;
}

ad_status ad__matmul_jvp(ad_tape *t, ad_node *n) { return product_jvp(t, n, NULL); }

/* ---- addmm: op(a) op(b) + bias ------------------------------------------------------ */

ad_status ad__shape_addmm(ad_tape *t, ad_node *n, ad_shape *out)
{
    if (ad__shape_matmul(t, n, out) != AD_OK) return ad_tape_status(t);
    ad_shape bs = n->in[2]->shape;
    int row = (bs.rank == 1 && bs.dim[0] == out->dim[1]) ||
              (bs.rank == 2 && bs.dim[0] == 1 && bs.dim[1] == out->dim[1]);
    if (!row) {
        char sb[AD__SHAPE_BUF], so[AD__SHAPE_BUF];
        return ad_tape_fail(t, AD_ERR_SHAPE, "addmm: bias %s for a product %s: the bias must be [%lld] or [1, %lld]",
                        ad__shape_str(bs, sb), ad__shape_str(*out, so), (long long)out->dim[1],
                        (long long)out->dim[1]);
    }
    return AD_OK;
}

/* Every row starts as the bias; the product is added onto it. */
ad_status ad__addmm_fwd(ad_tape *t, ad_node *n)
{
    product(t, n, n->in[2]->data);
    return ad__status(t);
}

/* out[j] += the sum of column j of g over its rows, for the columns
 * [j0, j1) of a [rows, cols] g: each column in row order, so a split of the
 * columns over the threads (split.h) keeps every sum's order. */
#define DEFINE_COLUMN_SUMS(T)                                                                       \
    static void column_sums_##T(size_t rows, size_t cols, size_t j0, size_t j1, const T *g, T *out) \
    {                                                                                               \
        for (size_t i = 0; i < rows; i++)                                                           \
            for (size_t j = j0; j < j1; j++) out[j] += g[i * cols + j];                             \
    }
DEFINE_COLUMN_SUMS(float)
DEFINE_COLUMN_SUMS(double)

typedef struct sums_job {
    int f32;
    size_t rows, cols;
    const void *g;
    void *out;
} sums_job;

static void sums_range(void *ctx, size_t lo, size_t hi, int part)
{
    const sums_job *j = ctx;
    (void)part;
    if (j->f32) column_sums_float(j->rows, j->cols, lo, hi, j->g, j->out);
    else column_sums_double(j->rows, j->cols, lo, hi, j->g, j->out);
}

void ad__column_sums(int f32, size_t rows, size_t cols, const void *g, void *out)
{
    sums_job j = {f32, rows, cols, g, out};
    size_t bytes = rows * cols * (f32 ? sizeof(float) : sizeof(double));
    /* column boundaries on 64-byte lines of out */
    ad__split_run(cols, ad__split_parts(cols, bytes, AD__TUNE_COPY_MIN_PER_THREAD), 16, sums_range, &j);
}

/* d bias = the column sums of G; a and b as for matmul. The bias first:
 * matmul's backward may stack the weight gradient, and the stack, once full,
 * is computed at once and (release_grads) gives G's buffer back. */
void ad__addmm_bwd(ad_tape *t, ad_node *n)
{
    void *gb = ad__grad(t, n->in[2]);
    if (gb) {
        ad__column_sums(n->out->dtype == AD_F32, (size_t)n->out->shape.dim[0], (size_t)n->out->shape.dim[1],
                        n->out->grad, gb);
    } else if (ad__status(t) != AD_OK) {
        return;
    }
    ad__matmul_bwd(t, n);
}

/* d(bias + op(A) op(B)) = d bias (on every row) + the product's tangent. */
ad_status ad__addmm_jvp(ad_tape *t, ad_node *n) { return product_jvp(t, n, ad__tan(t, n->in[2])); }

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
