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

/*
 * Products this small (tuning.h) cost less as a plain loop than the kernel's
 * set-up for blocking and packing. Each C element is still its start value
 * plus the terms in increasing p.
 */
#define SMALL_PRODUCT(m, n, k)                                                                   \
    ((m) <= AD__TUNE_SMALL_SIDE && (n) <= AD__TUNE_SMALL_SIDE && (k) <= AD__TUNE_SMALL_SIDE &&   \
     (m) * (n) * (k) <= AD__TUNE_SMALL_WORK)

/*
 * Without a transposed B a row of C is updated by a multiple of a row of B
 * for p = 0, 1, ... (C's row and B's row are contiguous); with a transposed B
 * each element is a dot product of two contiguous runs. Either way each
 * element is its start value plus the terms in increasing p, as in the
 * kernel. Products whose row length n and inner length k are both at most 4
 * go to one small function per (n, k), in which both loops unroll fully; the
 * rest take the general loops. At these sizes the set-up of one function
 * holding every variant (and loop control) would cost more than the
 * arithmetic.
 */
/* Kept out of line so that the dispatch (gemm, below) stays a short straight run. */
#if defined(__GNUC__)
#define NOINLINE __attribute__((noinline))
#else
#define NOINLINE
#endif

#define DEFINE_SMALL(T)                                                                        \
    static inline void rows_##T(size_t m, size_t nn, size_t k, size_t ar, size_t ac,           \
                                const T *restrict a, const T *restrict b, T *restrict c,       \
                                int accumulate, const T *restrict bias)                        \
    {                                                                                          \
        for (size_t i = 0; i < m; i++) {                                                       \
            T *restrict ci = c + i * nn;                                                       \
            const T *ai = a + i * ar;                                                          \
            if (bias)                                                                          \
                for (size_t j = 0; j < nn; j++) ci[j] = bias[j];                               \
            else if (!accumulate)                                                              \
                for (size_t j = 0; j < nn; j++) ci[j] = 0;                                     \
            for (size_t p = 0; p < k; p++) {                                                   \
                T x = ai[p * ac];                                                              \
                const T *bp = b + p * nn;                                                      \
                for (size_t j = 0; j < nn; j++) ci[j] += x * bp[j];                            \
            }                                                                                  \
        }                                                                                      \
    }                                                                                          \
    static inline void dots_##T(size_t m, size_t nn, size_t k, size_t ar, size_t ac,           \
                                const T *restrict a, const T *restrict b, T *restrict c,       \
                                int accumulate, const T *restrict bias)                        \
    {                                                                                          \
        for (size_t i = 0; i < m; i++) {                                                       \
            T *restrict ci = c + i * nn;                                                       \
            const T *ai = a + i * ar;                                                          \
            for (size_t j = 0; j < nn; j++) {                                                  \
                const T *bj = b + j * k;                                                       \
                T s = bias ? bias[j] : accumulate ? ci[j] : 0;                                 \
                for (size_t p = 0; p < k; p++) s += ai[p * ac] * bj[p];                        \
                ci[j] = s;                                                                     \
            }                                                                                  \
        }                                                                                      \
    }

DEFINE_SMALL(float)
DEFINE_SMALL(double)

/*
 * The loops above with the transpose of A, n and k fixed (m varies), named
 * <form>_<T>_<ta>_<n>_<k>; one signature for both dtypes so that one table
 * holds them all.
 */
typedef void (*small_fixed)(size_t m, const void *a, const void *b, void *c, int accumulate,
                            const void *bias);
#define DEFINE_FIXED_FORM(form, T, TA, N, K)                                                 \
    static void form##_##T##_##TA##_##N##_##K(size_t m, const void *a, const void *b, void *c, \
                                              int accumulate, const void *bias)              \
    {                                                                                        \
        form##_##T(m, N, K, TA ? 1 : K, TA ? m : 1, a, b, c, accumulate, bias);             \
    }
#define DEFINE_FIXED(T, TA, N, K) DEFINE_FIXED_FORM(rows, T, TA, N, K) DEFINE_FIXED_FORM(dots, T, TA, N, K)
#define DEFINE_FIXED_K(T, TA, N) \
    DEFINE_FIXED(T, TA, N, 1) DEFINE_FIXED(T, TA, N, 2) DEFINE_FIXED(T, TA, N, 3) DEFINE_FIXED(T, TA, N, 4)
#define DEFINE_FIXED_N(T, TA) \
    DEFINE_FIXED_K(T, TA, 1) DEFINE_FIXED_K(T, TA, 2) DEFINE_FIXED_K(T, TA, 3) DEFINE_FIXED_K(T, TA, 4)
DEFINE_FIXED_N(float, 0)
DEFINE_FIXED_N(float, 1)
DEFINE_FIXED_N(double, 0)
DEFINE_FIXED_N(double, 1)

#define FIXED_K(form, T, TA, N) \
    {form##_##T##_##TA##_##N##_1, form##_##T##_##TA##_##N##_2, form##_##T##_##TA##_##N##_3, form##_##T##_##TA##_##N##_4}
#define FIXED_N(form, T, TA) \
    {FIXED_K(form, T, TA, 1), FIXED_K(form, T, TA, 2), FIXED_K(form, T, TA, 3), FIXED_K(form, T, TA, 4)}
#define FIXED_TA(form, T) {FIXED_N(form, T, 0), FIXED_N(form, T, 1)}
#define FIXED_TB(T) {FIXED_TA(rows, T), FIXED_TA(dots, T)}

/* [f64][tb][ta][n - 1][k - 1] */
static const small_fixed fixed_table[2][2][2][4][4] = {FIXED_TB(float), FIXED_TB(double)};

/* The small products with n or k above 4. */
static NOINLINE void small_any(ad_dtype dt, int ta, int tb, size_t m, size_t nn, size_t k, const void *a,
                               const void *b, void *c, int accumulate, const void *bias)
{
    size_t ar = ta ? 1 : k, ac = ta ? m : 1;
    if (dt == AD_F32 && !tb) rows_float(m, nn, k, ar, ac, a, b, c, accumulate, bias);
    else if (dt == AD_F32) dots_float(m, nn, k, ar, ac, a, b, c, accumulate, bias);
    else if (!tb) rows_double(m, nn, k, ar, ac, a, b, c, accumulate, bias);
    else dots_double(m, nn, k, ar, ac, a, b, c, accumulate, bias);
}

/* Copies the bias into every row (a loop: a memcpy call per short row costs
 * more than the copy). */
#define DEFINE_FILL_ROWS(T)                                                            \
    static void fill_rows_##T(size_t rows, size_t cols, const T *bias, T *restrict out) \
    {                                                                                  \
        for (size_t i = 0; i < rows; i++)                                              \
            for (size_t j = 0; j < cols; j++) out[i * cols + j] = bias[j];             \
    }
DEFINE_FILL_ROWS(float)
DEFINE_FILL_ROWS(double)

/*
 * op(w) packed for the kernel, made on the first product with w on this tape
 * and kept until the tape is reset, for a lean tape's copy of a parameter
 * (its values do not change between recording and backward): the recurrent
 * weight of an unroll is then packed once instead of once per step and
 * direction. op(w) is [k_rows, n_cols]; NULL where the kernel packs for
 * itself (few rows, CBLAS, a full cache).
 */
static const void *packed_weight(ad_tape *t, const ad_tensor *w, int trans, size_t n_cols, size_t k_rows,
                                 size_t m)
{
    if (!t->lean_copies || !w->param || m < AD__TUNE_PACK_MIN_ROWS || SMALL_PRODUCT(m, n_cols, k_rows))
        return NULL;
    size_t count = ad__gemm_packed_count(w->dtype == AD_F64, n_cols, k_rows);
    if (!count) return NULL;
    for (int i = 0; i < t->n_packed; i++) {
        const ad__packed_weight *e = &t->packed[i];
        if (e->data == w->data && e->trans == trans && e->n == n_cols && e->k == k_rows) return e->packed;
    }
    if (t->n_packed == AD__PACKED_WEIGHTS) return NULL;
    void *buf = ad__alloc_array(t, count, ad__dtype_size(w->dtype));
    if (!buf) return NULL; /* the tape is in error */
    if (w->dtype == AD_F32) ad__gemm_pack_f32(trans, n_cols, k_rows, w->data, buf);
    else ad__gemm_pack_f64(trans, n_cols, k_rows, w->data, buf);
    ad__packed_weight *e = &t->packed[t->n_packed++];
    e->data = w->data, e->trans = trans, e->n = n_cols, e->k = k_rows, e->packed = buf;
    return buf;
}

/* The kernel's path of gemm (below). */
static NOINLINE void gemm_kernel(ad_dtype dt, int tx, int ty, size_t um, size_t un, size_t uk, const void *x,
                                 const void *y, void *dst, int accumulate, const void *bias, const void *packed)
{
    if (bias) {
        if (dt == AD_F32) fill_rows_float(um, un, bias, dst);
        else fill_rows_double(um, un, bias, dst);
        accumulate = 1;
    }
    if (packed && dt == AD_F32) ad__gemm_prepacked_f32(tx, ty, um, un, uk, x, y, packed, dst, accumulate);
    else if (packed) ad__gemm_prepacked_f64(tx, ty, um, un, uk, x, y, packed, dst, accumulate);
    else if (dt == AD_F32) ad__gemm_f32(tx, ty, um, un, uk, x, y, dst, accumulate);
    else ad__gemm_f64(tx, ty, um, un, uk, x, y, dst, accumulate);
}

/*
 * One product dst (+)= op(x) op(y) in the given dtype; with a bias (a row of
 * n) every row of dst starts as the bias instead (accumulate is then
 * ignored). The small loops start from the bias directly; the kernel adds
 * onto rows filled with it first, so both give bias + terms in increasing p.
 * Inlined, so that each call site passes its constants straight on.
 */
static inline void gemm(ad_dtype dt, int tx, int ty, int64_t m, int64_t nn, int64_t k, const void *x,
                        const void *y, void *dst, int accumulate, const void *bias, const void *packed)
{
    size_t um = (size_t)m, un = (size_t)nn, uk = (size_t)k;
    /* n, k <= 4 and m <= 16 is a small product (m n k <= 256), tested first */
    if (un - 1 < 4 && uk - 1 < 4 && um <= 16)
        fixed_table[dt == AD_F64][ty != 0][tx != 0][un - 1][uk - 1](um, x, y, dst, accumulate, bias);
    else if (SMALL_PRODUCT(um, un, uk)) small_any(dt, tx, ty, um, un, uk, x, y, dst, accumulate, bias);
    else gemm_kernel(dt, tx, ty, um, un, uk, x, y, dst, accumulate, bias, packed);
}

/* out = op(a) op(b), or with a bias out = bias + op(a) op(b) row by row. */
static void product(ad_tape *t, const ad_node *n, const void *bias)
{
    const ad_tensor *a = n->in[0], *b = n->in[1];
    int ta = (n->a.flags & AD_TRANS_A) != 0, tb = (n->a.flags & AD_TRANS_B) != 0;
    int64_t m, k, kb, nn;
    dims(a, ta, &m, &k);
    dims(b, tb, &kb, &nn);
    const void *packed = packed_weight(t, b, tb, (size_t)nn, (size_t)k, (size_t)m);
    if (t->status != AD_OK) return;
    gemm(a->dtype, ta, tb, m, nn, k, a->data, b->data, n->out->data, 0, bias, packed);
}

ad_status ad__matmul_fwd(ad_tape *t, ad_node *n)
{
    product(t, n, NULL);
    return t->status;
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
            gemm(dt, 0, !tb, m, k, nn, g, b->data, ga, 1, NULL, packed_weight(t, b, !tb, (size_t)k, (size_t)nn, (size_t)m));
        else /* dA[k,m] = op(B)[k,n] G^T[n,m] */
            gemm(dt, tb, 1, k, m, nn, b->data, g, ga, 1, NULL, NULL);
    }
    /* a copy's gradient on a tape that does not keep it: see copy_grads.c */
    int direct = 0;
    void *gb = b->param && t->lean_copies && b->requires_grad
                   ? ad__weight_grad(t, b, a->data, ta, g, (size_t)m, (size_t)k, (size_t)nn, &direct)
                   : ad__grad(t, b);
    if (gb && !(direct && ad__defer_weight_grad(t, b, a->data, ta, n->out, (size_t)m, (size_t)k, (size_t)nn, tb))) {
        if (!tb) /* dB[k,n] = op(A)^T[k,m] G[m,n] */
            gemm(dt, !ta, 0, k, nn, m, a->data, g, gb, 1, NULL, NULL);
        else /* dB[n,k] = G^T[n,m] op(A)[m,k] */
            gemm(dt, 1, ta, nn, k, m, g, a->data, gb, 1, NULL, NULL);
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
    if (da && !ta) gemm(dt, 0, tb, m * (int64_t)K, nn, k, da, b->data, dy, 0, NULL, NULL);
    for (size_t d = 0; d < K; d++) {
        char *yk = dy + d * ny * es;
        if (da && ta) gemm(dt, 1, tb, m, nn, k, da + d * a->numel * es, b->data, yk, 1, NULL, NULL);
        if (db) gemm(dt, ta, tb, m, nn, k, a->data, db + d * b->numel * es, yk, 1, NULL, NULL);
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
    return t->status;
}

#define DEFINE_COLUMN_SUMS(T)                                                        \
    static void column_sums_##T(size_t rows, size_t cols, const T *g, T *out)        \
    {                                                                                \
        for (size_t i = 0; i < rows; i++)                                            \
            for (size_t j = 0; j < cols; j++) out[j] += g[i * cols + j];             \
    }
DEFINE_COLUMN_SUMS(float)
DEFINE_COLUMN_SUMS(double)

/* d bias = the column sums of G; a and b as for matmul. The bias first:
 * matmul's backward may stack the weight gradient, and the stack, once full,
 * is computed at once and (release_grads) gives G's buffer back. */
void ad__addmm_bwd(ad_tape *t, ad_node *n)
{
    void *gb = ad__grad(t, n->in[2]);
    if (gb) {
        size_t rows = (size_t)n->out->shape.dim[0], cols = (size_t)n->out->shape.dim[1];
        if (n->out->dtype == AD_F32) column_sums_float(rows, cols, n->out->grad, gb);
        else column_sums_double(rows, cols, n->out->grad, gb);
    } else if (t->status != AD_OK) {
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
