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
 * A constant B used in many products (a weight over the steps of an unroll)
 * packed once: ad__gemm_packed_count() elements (0: nothing to pack, e.g.
 * with CBLAS) filled by ad__gemm_pack_*() from B as stored (trans_b as in the
 * product), then passed with B itself to ad__gemm_prepacked_*(), which
 * computes exactly what ad__gemm_* computes, bit for bit, without packing B
 * again.
 */
size_t ad__gemm_packed_count(int f64, size_t n, size_t k);
void ad__gemm_pack_f32(int trans_b, size_t n, size_t k, const float *b, float *packed);
void ad__gemm_pack_f64(int trans_b, size_t n, size_t k, const double *b, double *packed);
void ad__gemm_prepacked_f32(int trans_a, int trans_b, size_t m, size_t n, size_t k, const float *a,
                            const float *b, const float *packed, float *c, int accumulate);
void ad__gemm_prepacked_f64(int trans_a, int trans_b, size_t m, size_t n, size_t k, const double *a,
                            const double *b, const double *packed, double *c, int accumulate);

/*
 * Activations over n elements, y may equal x: sigmoid(x) = 1/(1+e^-x) and
 * tanh(x), branch-free and vectorised (kernels_act.c), within a few ulp of
 * the exact values, NaN preserved.
 */
void ad__sigmoid_f32(size_t n, const float *x, float *y);
void ad__tanh_f32(size_t n, const float *x, float *y);
/* The same in f64, within a few ulp of libm's values. */
void ad__sigmoid_f64(size_t n, const double *x, double *y);
void ad__tanh_f64(size_t n, const double *x, double *y);

#endif
