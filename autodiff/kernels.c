/*
 * kernels.c - plain C11 kernels.
 *
 * The loops are ordered so that the innermost one walks both C and the
 * streamed operand with unit stride, which compilers vectorise.
 */
#include "kernels.h"

#include <string.h>

/* One loop body for both element types. */
#define DEFINE_GEMM(NAME, T)                                                                \
    void NAME(int trans_a, int trans_b, size_t m, size_t n, size_t k, const T *a,          \
              const T *b, T *c, int accumulate)                                            \
    {                                                                                       \
        if (!accumulate) memset(c, 0, m * n * sizeof(T));                                   \
        if (!trans_b) {                                                                     \
            /* C[i,:] += A(i,p) * B[p,:] */                                                 \
            for (size_t i = 0; i < m; i++) {                                                \
                T *ci = c + i * n;                                                          \
                for (size_t p = 0; p < k; p++) {                                            \
                    T aip = trans_a ? a[p * m + i] : a[i * k + p];                          \
                    const T *bp = b + p * n;                                                \
                    for (size_t j = 0; j < n; j++) ci[j] += aip * bp[j];                    \
                }                                                                           \
            }                                                                               \
        } else {                                                                            \
            /* C[i,j] += dot(A(i,:), B[j,:]) */                                             \
            for (size_t i = 0; i < m; i++) {                                                \
                T *ci = c + i * n;                                                          \
                for (size_t j = 0; j < n; j++) {                                            \
                    const T *bj = b + j * k;                                                \
                    T s = 0;                                                                \
                    if (!trans_a) {                                                         \
                        const T *ai = a + i * k;                                            \
                        for (size_t p = 0; p < k; p++) s += ai[p] * bj[p];                  \
                    } else {                                                                \
                        for (size_t p = 0; p < k; p++) s += a[p * m + i] * bj[p];           \
                    }                                                                       \
                    ci[j] += s;                                                             \
                }                                                                           \
            }                                                                               \
        }                                                                                   \
    }

DEFINE_GEMM(ad__gemm_f32, float)
DEFINE_GEMM(ad__gemm_f64, double)
