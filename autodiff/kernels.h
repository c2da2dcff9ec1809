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

/*
 * The variants. AD__VARIANT(x) names x's copy in the file being compiled:
 * x_generic by default, x_avx2 when the build compiles the kernels again
 * with -DAD__KERNEL_VARIANT=avx2 -mavx2 -mfma. Each table's functions
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
} ad__act_kernels;

/* The variants, best last; AD__CPU_GENERIC is the build's own flags. */
typedef enum ad__cpu_variant { AD__CPU_GENERIC, AD__CPU_AVX2, AD__CPU_COUNT } ad__cpu_variant;

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

extern const ad__gemm_kernels ad__gemm_kernels_generic, ad__gemm_kernels_avx2;
extern const ad__act_kernels ad__act_kernels_generic, ad__act_kernels_avx2;

#endif
