/*
 * kernels.h - the heavy arithmetic behind the ops. Internal, never installed.
 *
 * Everything above this interface is independent of how the kernels are
 * written; a faster kernel or a BLAS backend changes only kernels.c.
 */
#ifndef UNROLL_AD_KERNELS_H
#define UNROLL_AD_KERNELS_H

#include <stddef.h>

/*
 * C[m,n] (+)= op(A) op(B), row-major and contiguous, where op(A) is [m,k]
 * (A stored [m,k], or [k,m] when trans_a) and op(B) is [k,n] (B stored [k,n],
 * or [n,k] when trans_b). With accumulate 0, C is overwritten.
 */
void ad__gemm_f32(int trans_a, int trans_b, size_t m, size_t n, size_t k, const float *a,
                  const float *b, float *c, int accumulate);
void ad__gemm_f64(int trans_a, int trans_b, size_t m, size_t n, size_t k, const double *a,
                  const double *b, double *c, int accumulate);

/*
 * f32 activations over n elements, y may equal x: sigmoid(x) = 1/(1+e^-x) and
 * tanh(x), branch-free and vectorised (kernels_act.c), within a few ulp of
 * the exact values, NaN preserved.
 */
void ad__sigmoid_f32(size_t n, const float *x, float *y);
void ad__tanh_f32(size_t n, const float *x, float *y);

#endif
