/*
 * gemm.c - the products of the engine below ad__gemm() (kernels.h): the
 * small products as plain loops, one function per small (n, k) with m free,
 * and the way into the blocked kernel with a bias row or a packed B.
 */
#include <stddef.h>

#include "kernels.h"
#include "split.h"
#include "tuning.h"

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
const ad__small_fixed ad__small_fixed_table[2][2][2][4][4] = {FIXED_TB(float), FIXED_TB(double)};

void ad__small_product(int f64, int ta, int tb, size_t m, size_t nn, size_t k, const void *a, const void *b,
                       void *c, int accumulate, const void *bias)
{
    size_t ar = ta ? 1 : k, ac = ta ? m : 1;
    if (!f64 && !tb) rows_float(m, nn, k, ar, ac, a, b, c, accumulate, bias);
    else if (!f64) dots_float(m, nn, k, ar, ac, a, b, c, accumulate, bias);
    else if (!tb) rows_double(m, nn, k, ar, ac, a, b, c, accumulate, bias);
    else dots_double(m, nn, k, ar, ac, a, b, c, accumulate, bias);
}

/* Copies the bias into every row (a loop: a memcpy call per short row costs
 * more than the copy); many rows (the input projection of a whole unroll)
 * are split over the threads (split.h). */
#define DEFINE_FILL_ROWS(T)                                                            \
    static void fill_rows_##T(size_t rows, size_t cols, const T *bias, T *restrict out) \
    {                                                                                  \
        for (size_t i = 0; i < rows; i++)                                              \
            for (size_t j = 0; j < cols; j++) out[i * cols + j] = bias[j];             \
    }
DEFINE_FILL_ROWS(float)
DEFINE_FILL_ROWS(double)

static void fill_range(void *ctx, size_t lo, size_t hi, int part)
{
    const ad__product *p = ctx;
    (void)part;
    if (!p->f64) fill_rows_float(hi - lo, p->n, p->bias, (float *)p->c + lo * p->n);
    else fill_rows_double(hi - lo, p->n, p->bias, (double *)p->c + lo * p->n);
}

void ad__gemm_blocked(const ad__product *p)
{
    int accumulate = p->accumulate;
    if (p->bias) {
        size_t bytes = p->m * p->n * (p->f64 ? sizeof(double) : sizeof(float));
        ad__split_run(p->m, ad__split_parts(p->m, bytes, AD__TUNE_COPY_MIN_PER_THREAD), 1, fill_range, (void *)p);
        accumulate = 1;
    }
    int ta = p->trans_a, tb = p->trans_b;
    if (p->packed && !p->f64)
        ad__gemm_prepacked_f32(ta, tb, p->m, p->n, p->k, p->a, p->b, p->packed, p->c, accumulate);
    else if (p->packed)
        ad__gemm_prepacked_f64(ta, tb, p->m, p->n, p->k, p->a, p->b, p->packed, p->c, accumulate);
    else if (!p->f64)
        ad__gemm_f32(ta, tb, p->m, p->n, p->k, p->a, p->b, p->c, accumulate);
    else
        ad__gemm_f64(ta, tb, p->m, p->n, p->k, p->a, p->b, p->c, accumulate);
}
