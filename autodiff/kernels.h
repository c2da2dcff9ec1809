/*
 * kernels.h - the heavy arithmetic behind the ops. Internal, never installed.
 *
 * Everything above this interface is independent of how the kernels are
 * written; a faster kernel or a BLAS backend changes only kernels.c.
 *
 * The functions below are the entry points the engine calls (cpu.c). Each
 * forwards to one instruction-set variant of kernels.c and kernels_act.c,
 * chosen once per process from the CPU (see cpu.c); the variants' tables
 * are declared at the end, for cpu.c and the tests that compare variants.
 */
#ifndef UNROLL_AD_KERNELS_H
#define UNROLL_AD_KERNELS_H

#include <stddef.h>

#include "tuning.h"

/*
 * One product C (+)= op(A) op(B), the way every product of the engine is
 * computed (ad__gemm below): op(A) [m,k], op(B) [k,n], C [m,n], row-major and
 * contiguous (A stored [k,m] when trans_a, B stored [n,k] when trans_b).
 * With `bias` (a row of n) every row of C starts as the bias (accumulate is
 * then ignored); `packed` is op(B) packed by ad__gemm_pack_*() or NULL.
 * Every C element is its start value plus the terms in increasing p,
 * whichever path computes it.
 */
typedef struct ad__product {
    int f64; /* double (1) or float (0) operands */
    int trans_a, trans_b;
    size_t m, n, k;
    const void *a, *b;
    void *c;
    int accumulate;
    const void *bias;
    const void *packed;
} ad__product;

/* Products this small (tuning.h) cost less as a plain loop than the
 * blocked kernel's set-up for blocking and packing. */
static inline int ad__is_small_product(size_t m, size_t n, size_t k)
{
    return m <= AD__TUNE_SMALL_SIDE && n <= AD__TUNE_SMALL_SIDE && k <= AD__TUNE_SMALL_SIDE &&
           m * n * k <= AD__TUNE_SMALL_WORK;
}

/* The paths of ad__gemm (gemm.c): a small product with n, k <= 4 by its
 * table entry [f64][trans_b][trans_a][n-1][k-1] (both loops unroll fully),
 * another small product, and the blocked kernel (which fills the bias rows
 * first and uses `packed` when given). */
typedef void (*ad__small_fixed)(size_t m, const void *a, const void *b, void *c, int accumulate,
                                const void *bias);
extern const ad__small_fixed ad__small_fixed_table[2][2][2][4][4];
void ad__small_product(int f64, int trans_a, int trans_b, size_t m, size_t n, size_t k, const void *a,
                       const void *b, void *c, int accumulate, const void *bias);
void ad__gemm_blocked(const ad__product *p);

/* The one entry point of every product. Inline, so that a call site's
 * constants reach the test of the tiny case, the one that runs most often
 * (n, k <= 4 and m <= 16: m n k <= 256), at no call cost. */
static inline void ad__gemm(const ad__product *p)
{
    if (p->n - 1 < 4 && p->k - 1 < 4 && p->m <= 16)
        ad__small_fixed_table[p->f64 != 0][p->trans_b != 0][p->trans_a != 0][p->n - 1][p->k - 1](
            p->m, p->a, p->b, p->c, p->accumulate, p->bias);
    else if (ad__is_small_product(p->m, p->n, p->k))
        ad__small_product(p->f64, p->trans_a, p->trans_b, p->m, p->n, p->k, p->a, p->b, p->c, p->accumulate,
                          p->bias);
    else
        ad__gemm_blocked(p);
}

/* ---- the blocked kernel (kernels.c, through cpu.c's dispatch) ---------------------- */

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
/* e^x for x <= 0 (softmax's logits less their maximum), y may equal x:
 * within a few ulp of libm, underflowing to 0 below the denormals as exp
 * does, NaN preserved. A positive x is outside the contract. */
void ad__exp_nonpos_f32(size_t n, const float *x, float *y);
void ad__exp_nonpos_f64(size_t n, const double *x, double *y);

/*
 * The variants. AD__VARIANT(x) names x's copy in the file being compiled:
 * x_generic by default, x_avx2 when the build compiles the kernels again
 * with -DAD__KERNEL_VARIANT=avx2 -mavx2 -mfma, x_avx512 with
 * -DAD__KERNEL_VARIANT=avx512 -mavx512f -mavx512vl -mavx512bw -mavx512dq
 * -mfma. Each table's functions
 * compute what the entry points above document.
 */
#if !defined(AD__KERNEL_VARIANT)
#define AD__KERNEL_VARIANT generic
#endif
#define AD__VARIANT_CAT(x, v) x##_##v
#define AD__VARIANT_NAME(x, v) AD__VARIANT_CAT(x, v)
#define AD__VARIANT(x) AD__VARIANT_NAME(x, AD__KERNEL_VARIANT)

typedef struct ad__gemm_kernels {
    size_t (*packed_count)(int f64, size_t n, size_t k);
    void (*f32)(int trans_a, int trans_b, size_t m, size_t n, size_t k, const float *a, const float *b,
                float *c, int accumulate);
    void (*f64)(int trans_a, int trans_b, size_t m, size_t n, size_t k, const double *a, const double *b,
                double *c, int accumulate);
    void (*pack_f32)(int trans_b, size_t n, size_t k, const float *b, float *packed);
    void (*pack_f64)(int trans_b, size_t n, size_t k, const double *b, double *packed);
    void (*prepacked_f32)(int trans_a, int trans_b, size_t m, size_t n, size_t k, const float *a,
                          const float *b, const float *packed, float *c, int accumulate);
    void (*prepacked_f64)(int trans_a, int trans_b, size_t m, size_t n, size_t k, const double *a,
                          const double *b, const double *packed, double *c, int accumulate);
} ad__gemm_kernels;

typedef struct ad__act_kernels {
    void (*sigmoid_f32)(size_t n, const float *x, float *y);
    void (*tanh_f32)(size_t n, const float *x, float *y);
    void (*sigmoid_f64)(size_t n, const double *x, double *y);
    void (*tanh_f64)(size_t n, const double *x, double *y);
    void (*exp_nonpos_f32)(size_t n, const float *x, float *y);
    void (*exp_nonpos_f64)(size_t n, const double *x, double *y);
} ad__act_kernels;

/* The variants, best last; AD__CPU_GENERIC is the build's own flags. */
typedef enum ad__cpu_variant { AD__CPU_GENERIC, AD__CPU_AVX2, AD__CPU_AVX512, AD__CPU_COUNT } ad__cpu_variant;

typedef struct ad__kernel_set {
    const char *name; /* as UNROLL_CPU spells it */
    const ad__gemm_kernels *gemm;
    const ad__act_kernels *act;
} ad__kernel_set;

/*
 * Variant v's kernels, or NULL when this build did not compile it or this
 * CPU cannot run it; AD__CPU_GENERIC always exists.
 */
const ad__kernel_set *ad__cpu_kernels(ad__cpu_variant v);

/*
 * The rule of the choice, a pure function: `request` is UNROLL_CPU (NULL or
 * "" when unset), `usable` a bit mask (1 << v) of the variants
 * ad__cpu_kernels() can give. Unset or "auto": the best usable variant; the
 * name of a usable variant: that one; anything else: AD__CPU_GENERIC.
 */
ad__cpu_variant ad__cpu_pick(const char *request, unsigned usable);

extern const ad__gemm_kernels ad__gemm_kernels_generic, ad__gemm_kernels_avx2, ad__gemm_kernels_avx512;
extern const ad__act_kernels ad__act_kernels_generic, ad__act_kernels_avx2, ad__act_kernels_avx512;

#endif
