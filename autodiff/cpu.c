/*
 * cpu.c - the run-time choice of the kernels' instruction-set variant, and
 * the kernel entry points of kernels.h, which forward to the chosen one.
 *
 * A portable build (UNROLL_NATIVE=OFF) on x86-64 compiles kernels.c and
 * kernels_act.c three times: with the build's own flags ("generic": SSE2,
 * two 128-bit vectors per micro-kernel row, no fused multiply-add), with
 * -mavx2 -mfma ("avx2": 256-bit vectors, fused multiply-adds, what
 * -march=native gives on an AVX2 machine) and with -mavx512f -mavx512vl
 * -mavx512bw -mavx512dq -mfma ("avx512": 512-bit vectors, 8-row
 * micro-kernel, what -march=native gives on Zen 4/5 or Skylake-SP and
 * later). The first kernel call picks one
 * variant from the CPU's features and the UNROLL_CPU environment variable,
 * once per process; every later call uses it. The choice depends only on the
 * CPU and the environment, never on timing, so results are deterministic
 * for a given machine. Under UNROLL_NATIVE=ON, or on another architecture,
 * only "generic" exists (then compiled for the build machine).
 *
 * The variants sum every element in the same order; they differ in the
 * rounding of multiply-adds (fused or not), so avx2 and avx512 give the
 * same bits. tests/test_cpu.c holds each
 * variant to the generic one.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "kernels.h"
#include "threads.h"

/* The names UNROLL_CPU takes, whether or not this build has the variant. */
static const char *const names[AD__CPU_COUNT] = {
    [AD__CPU_GENERIC] = "generic", [AD__CPU_AVX2] = "avx2", [AD__CPU_AVX512] = "avx512"};

static const ad__kernel_set sets[AD__CPU_COUNT] = {
    [AD__CPU_GENERIC] = {"generic", &ad__gemm_kernels_generic, &ad__act_kernels_generic},
#if defined(UNROLL_CPU_AVX2)
    [AD__CPU_AVX2] = {"avx2", &ad__gemm_kernels_avx2, &ad__act_kernels_avx2},
#endif
#if defined(UNROLL_CPU_AVX512)
    [AD__CPU_AVX512] = {"avx512", &ad__gemm_kernels_avx512, &ad__act_kernels_avx512},
#endif
};

/* The variants this CPU can run, as a mask of 1 << variant. */
static unsigned usable_variants(void)
{
    unsigned mask = 1u << AD__CPU_GENERIC;
#if defined(UNROLL_CPU_AVX2)
    /* libgcc's (and compiler-rt's) check includes the OS saving the
     * 256-bit registers (XGETBV), not only the CPUID bits. */
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) mask |= 1u << AD__CPU_AVX2;
#endif
#if defined(UNROLL_CPU_AVX512)
    /* The same for AVX-512: libgcc (since GCC 8) and compiler-rt report
     * avx512* only when XCR0 says the OS saves the opmask and all 512 bits
     * of the 32 zmm registers. */
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        mask |= 1u << AD__CPU_AVX512;
#endif
    return mask;
}

const ad__kernel_set *ad__cpu_kernels(ad__cpu_variant v)
{
    if ((unsigned)v >= AD__CPU_COUNT || !(usable_variants() & (1u << v))) return NULL;
    return &sets[v];
}

ad__cpu_variant ad__cpu_pick(const char *request, unsigned usable)
{
    if (!request || !*request || !strcmp(request, "auto")) {
        for (int v = AD__CPU_COUNT - 1; v > AD__CPU_GENERIC; v--)
            if (usable & (1u << v)) return (ad__cpu_variant)v;
        return AD__CPU_GENERIC;
    }
    for (int v = AD__CPU_COUNT - 1; v > AD__CPU_GENERIC; v--)
        if ((usable & (1u << v)) && !strcmp(request, names[v])) return (ad__cpu_variant)v;
    return AD__CPU_GENERIC;
}

/* Set once; concurrent first calls compute the same answer and store the
 * same pointer, so the race is benign and no lock is needed. */
static _Atomic(const ad__kernel_set *) chosen;

static AD__COLD const ad__kernel_set *choose(void)
{
    const ad__kernel_set *k = &sets[ad__cpu_pick(getenv("UNROLL_CPU"), usable_variants())];
    atomic_store_explicit(&chosen, k, memory_order_release);
    return k;
}

static inline const ad__kernel_set *kernels(void)
{
    const ad__kernel_set *k = atomic_load_explicit(&chosen, memory_order_acquire);
    return k ? k : choose();
}

const char *ad_kernel_variant(void) { return kernels()->name; }

void ad__gemm_f32(int trans_a, int trans_b, size_t m, size_t n, size_t k, const float *a,
                  const float *b, float *c, int accumulate)
{
    kernels()->gemm->f32(trans_a, trans_b, m, n, k, a, b, c, accumulate);
}
void ad__gemm_f64(int trans_a, int trans_b, size_t m, size_t n, size_t k, const double *a,
                  const double *b, double *c, int accumulate)
{
    kernels()->gemm->f64(trans_a, trans_b, m, n, k, a, b, c, accumulate);
}
size_t ad__gemm_packed_count(int f64, size_t n, size_t k) { return kernels()->gemm->packed_count(f64, n, k); }
void ad__gemm_pack_f32(int trans_b, size_t n, size_t k, const float *b, float *packed)
{
    kernels()->gemm->pack_f32(trans_b, n, k, b, packed);
}
void ad__gemm_pack_f64(int trans_b, size_t n, size_t k, const double *b, double *packed)
{
    kernels()->gemm->pack_f64(trans_b, n, k, b, packed);
}
void ad__gemm_prepacked_f32(int trans_a, int trans_b, size_t m, size_t n, size_t k, const float *a,
                            const float *b, const float *packed, float *c, int accumulate)
{
    kernels()->gemm->prepacked_f32(trans_a, trans_b, m, n, k, a, b, packed, c, accumulate);
}
void ad__gemm_prepacked_f64(int trans_a, int trans_b, size_t m, size_t n, size_t k, const double *a,
                            const double *b, const double *packed, double *c, int accumulate)
{
    kernels()->gemm->prepacked_f64(trans_a, trans_b, m, n, k, a, b, packed, c, accumulate);
}
void ad__sigmoid_f32(size_t n, const float *x, float *y) { kernels()->act->sigmoid_f32(n, x, y); }
void ad__tanh_f32(size_t n, const float *x, float *y) { kernels()->act->tanh_f32(n, x, y); }
void ad__sigmoid_f64(size_t n, const double *x, double *y) { kernels()->act->sigmoid_f64(n, x, y); }
void ad__tanh_f64(size_t n, const double *x, double *y) { kernels()->act->tanh_f64(n, x, y); }
void ad__exp_nonpos_f32(size_t n, const float *x, float *y) { kernels()->act->exp_nonpos_f32(n, x, y); }
void ad__exp_nonpos_f64(size_t n, const double *x, double *y) { kernels()->act->exp_nonpos_f64(n, x, y); }
