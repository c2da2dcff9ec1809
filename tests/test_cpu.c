/*
 * test_cpu.c - the run-time choice of the kernel variant (autodiff/cpu.c)
 * and every variant this build and CPU can run against the generic one.
 *
 * The rule the variants keep: each sums every element of a product in the
 * same order (it depends only on the shapes); a variant with fused
 * multiply-adds rounds each step once where the generic one rounds the
 * product and the sum. So where every partial sum is exact (small integers)
 * all variants are bit-identical to each other and to the plain loop; on
 * random data they agree within the rounding bound of a k-term sum; packing
 * B first never changes a bit within a variant; the activations of every
 * variant keep the accuracy test_kernels.c asks of them. In a build with
 * one variant (UNROLL_NATIVE=ON, or not x86-64) the comparisons between
 * variants skip, saying so.
 */
#define _POSIX_C_SOURCE 200809L /* setenv */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <criterion/parameterized.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <unroll/autodiff/autodiff.h>

#include "kernels.h"
#include "testsupport.h"

/* ---- the rule of the choice ------------------------------------------------------------- */

enum { GEN = 1u << AD__CPU_GENERIC, AVX2 = 1u << AD__CPU_AVX2, AVX512 = 1u << AD__CPU_AVX512 };

typedef struct pick_row {
    char request[16]; /* UNROLL_CPU */
    int unset;        /* UNROLL_CPU not set at all */
    unsigned usable;
    int want;
} pick_row;

static pick_row pick_rows[] = {
    {"", 1, GEN, AD__CPU_GENERIC},           {"", 1, GEN | AVX2, AD__CPU_AVX2},
    {"", 0, GEN | AVX2, AD__CPU_AVX2},       {"auto", 0, GEN | AVX2, AD__CPU_AVX2},
    {"auto", 0, GEN, AD__CPU_GENERIC},       {"generic", 0, GEN | AVX2, AD__CPU_GENERIC},
    {"avx2", 0, GEN | AVX2, AD__CPU_AVX2},   {"avx2", 0, GEN, AD__CPU_GENERIC},
    {"AVX2", 0, GEN | AVX2, AD__CPU_GENERIC}, {"avx512", 0, GEN | AVX2, AD__CPU_GENERIC},
    {"off", 0, GEN | AVX2, AD__CPU_GENERIC},  {"avx2 ", 0, GEN | AVX2, AD__CPU_GENERIC},
    {"", 1, GEN | AVX2 | AVX512, AD__CPU_AVX512},          {"auto", 0, GEN | AVX2 | AVX512, AD__CPU_AVX512},
    {"avx512", 0, GEN | AVX2 | AVX512, AD__CPU_AVX512},    {"avx2", 0, GEN | AVX2 | AVX512, AD__CPU_AVX2},
    {"generic", 0, GEN | AVX2 | AVX512, AD__CPU_GENERIC},  {"AVX512", 0, GEN | AVX2 | AVX512, AD__CPU_GENERIC},
    {"avx512f", 0, GEN | AVX2 | AVX512, AD__CPU_GENERIC},  {"avx512", 0, GEN | AVX512, AD__CPU_AVX512},
    {"", 1, GEN | AVX512, AD__CPU_AVX512},
};

ParameterizedTestParameters(cpu, pick_follows_the_rule)
{
    return cr_make_param_array(pick_row, pick_rows, sizeof pick_rows / sizeof pick_rows[0]);
}

/* Unset, empty or "auto": the best usable variant; a usable variant's exact
 * name: that one; anything else, or a variant the CPU lacks: generic. */
ParameterizedTest(pick_row *row, cpu, pick_follows_the_rule)
{
    int got = ad__cpu_pick(row->unset ? NULL : row->request, row->usable);
    cr_assert_eq(got, row->want, "UNROLL_CPU=%s%s usable %#x: variant %d, want %d", row->request,
                 row->unset ? " (unset)" : "", row->usable, got, row->want);
}

Test(cpu, variants_out_of_range_are_null)
{
    cr_assert_not_null(ad__cpu_kernels(AD__CPU_GENERIC));
    cr_assert_str_eq(ad__cpu_kernels(AD__CPU_GENERIC)->name, "generic");
    cr_assert_null(ad__cpu_kernels(AD__CPU_COUNT));
    cr_assert_null(ad__cpu_kernels((ad__cpu_variant)-1));
}

/* The mask of usable variants, as ad__cpu_pick sees it. */
static unsigned usable_mask(void)
{
    unsigned mask = 0;
    for (int v = 0; v < AD__CPU_COUNT; v++)
        if (ad__cpu_kernels((ad__cpu_variant)v)) mask |= 1u << v;
    return mask;
}

/* The process's choice is the rule's answer for this CPU and environment,
 * and it is what the entry points run (their bits are that variant's). */
Test(cpu, the_entry_points_run_the_chosen_variant)
{
    ad__cpu_variant v = ad__cpu_pick(getenv("UNROLL_CPU"), usable_mask());
    const ad__kernel_set *k = ad__cpu_kernels(v);
    cr_assert_not_null(k);
    cr_assert_str_eq(ad_kernel_variant(), k->name);
    cr_log_info("this process runs the %s kernels (usable mask %#x)", k->name, usable_mask());
    enum { M = 13, N = 37, K = 300 };
    double r[M * K + K * N];
    float a[M * K], b[K * N], want[M * N], got[M * N], sw[K], sg[K];
    ts_fill_uniform(r, M * K + K * N, 5, -1, 1);
    for (int i = 0; i < M * K; i++) a[i] = (float)r[i];
    for (int i = 0; i < K * N; i++) b[i] = (float)r[M * K + i];
    k->gemm->f32(0, 1, M, N, K, a, b, want, 0);
    ad__gemm_f32(0, 1, M, N, K, a, b, got, 0);
    cr_assert(!memcmp(want, got, sizeof got), "ad__gemm_f32 differs from the %s table", k->name);
    k->act->tanh_f32(K, a, sw);
    ad__tanh_f32(K, a, sg);
    cr_assert(!memcmp(sw, sg, sizeof sg), "ad__tanh_f32 differs from the %s table", k->name);
    cr_assert_eq(ad__gemm_packed_count(0, N, K), k->gemm->packed_count(0, N, K));
}

/* UNROLL_CPU=generic before the first kernel call: the generic kernels. */
static void force_generic(void) { setenv("UNROLL_CPU", "generic", 1); }
Test(cpu, unroll_cpu_generic_turns_the_dispatch_off, .init = force_generic)
{
    cr_assert_str_eq(ad_kernel_variant(), "generic");
    float x[3] = {0.5f, -2.0f, 7.0f}, y[3], w[3];
    ad__sigmoid_f32(3, x, y);
    ad__act_kernels_generic.sigmoid_f32(3, x, w);
    cr_assert(!memcmp(y, w, sizeof w));
}

/* ---- every variant against the generic one ---------------------------------------------- */

static const size_t shapes[][3] = {{1, 1, 1},     {1, 100, 100}, {100, 100, 1}, {3, 5, 7},    {4, 16, 64},
                                   {5, 17, 65},   {6, 8, 8},     {7, 9, 130},   {6, 16, 16},  {13, 24, 257},
                                   {32, 256, 256}, {33, 300, 70}, {7, 1, 300},  {64, 513, 129},
                                   /* AVX-512's strips: a last one of 1, NR/2 and NR/2 + 1 columns of
                                    * 32 (f32) or 16 (f64), 8-row blocks with remainders, k off KC */
                                   {17, 65, 257},  {15, 48, 64},  {9, 49, 300},  {8, 17, 33}, {21, 31, 520}};
enum { N_SHAPES = sizeof shapes / sizeof shapes[0] };

static void fill_int(double *x, size_t n, uint64_t seed, double lim)
{
    ts_fill_uniform(x, n, seed, -lim, lim);
    for (size_t i = 0; i < n; i++) x[i] = round(x[i]);
}

/* op(A) op(B) (+ C0) in exact integer arithmetic (the inputs are small integers). */
static void plain_exact(int ta, int tb, size_t m, size_t n, size_t k, const double *a, const double *b,
                        const double *c0, double *c)
{
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++) {
            double s = c0 ? c0[i * n + j] : 0;
            for (size_t p = 0; p < k; p++) s += (ta ? a[p * m + i] : a[i * k + p]) * (tb ? b[j * k + p] : b[p * n + j]);
            c[i * n + j] = s;
        }
}

/* One variant's product, plain or with B packed first, in both dtypes. */
static void run_variant(const ad__gemm_kernels *g, int packed, int ta, int tb, size_t m, size_t n, size_t k,
                        const double *a, const double *b, double *c, const float *af, const float *bf, float *cf,
                        int acc)
{
    if (!packed) {
        g->f64(ta, tb, m, n, k, a, b, c, acc);
        g->f32(ta, tb, m, n, k, af, bf, cf, acc);
        return;
    }
    double *pd = malloc(g->packed_count(1, n, k) * sizeof *pd + 1);
    float *pf = malloc(g->packed_count(0, n, k) * sizeof *pf + 1);
    cr_assert(pd && pf);
    g->pack_f64(tb, n, k, b, pd);
    g->pack_f32(tb, n, k, bf, pf);
    g->prepacked_f64(ta, tb, m, n, k, a, b, pd, c, acc);
    g->prepacked_f32(ta, tb, m, n, k, af, bf, pf, cf, acc);
    free(pd), free(pf);
}

/* Small integers: every partial sum is exact in either dtype, whatever the
 * rounding mode of a step, so every variant gives the plain loop's bits for
 * every transpose case, accumulate or not, packed or not. This holds each
 * variant's blocking, packing and edges (which differ with the vector width)
 * to the one plain answer. */
Test(cpu, every_variant_is_exact_on_exact_sums)
{
    long before = ts_live_allocs();
    int ran = 0;
    for (int v = 0; v < AD__CPU_COUNT; v++) {
        const ad__kernel_set *ks = ad__cpu_kernels((ad__cpu_variant)v);
        if (!ks) continue;
        ran++;
        for (size_t s = 0; s < N_SHAPES; s++) {
            size_t m = shapes[s][0], n = shapes[s][1], k = shapes[s][2];
            double *a = malloc(m * k * sizeof *a), *b = malloc(k * n * sizeof *b), *c0 = malloc(m * n * sizeof *c0);
            double *want = malloc(m * n * sizeof *want), *got = malloc(m * n * sizeof *got);
            float *af = malloc(m * k * sizeof *af), *bf = malloc(k * n * sizeof *bf), *cf = malloc(m * n * sizeof *cf);
            fill_int(a, m * k, 11 + s, 4);
            fill_int(b, k * n, 12 + s, 4);
            fill_int(c0, m * n, 13 + s, 8);
            for (size_t i = 0; i < m * k; i++) af[i] = (float)a[i];
            for (size_t i = 0; i < k * n; i++) bf[i] = (float)b[i];
            for (int ta = 0; ta < 2; ta++)
                for (int tb = 0; tb < 2; tb++)
                    for (int acc = 0; acc < 2; acc++)
                        for (int packed = 0; packed < 2; packed++) {
                            plain_exact(ta, tb, m, n, k, a, b, acc ? c0 : NULL, want);
                            for (size_t i = 0; i < m * n; i++) got[i] = acc ? c0[i] : 12345.0;
                            for (size_t i = 0; i < m * n; i++) cf[i] = (float)got[i];
                            run_variant(ks->gemm, packed, ta, tb, m, n, k, a, b, got, af, bf, cf, acc);
                            for (size_t i = 0; i < m * n; i++) {
                                cr_assert(got[i] == want[i], "%s f64 %zux%zux%zu ta%d tb%d acc%d packed%d [%zu]: %.17g vs %.17g",
                                          ks->name, m, n, k, ta, tb, acc, packed, i, got[i], want[i]);
                                cr_assert((double)cf[i] == want[i], "%s f32 %zux%zux%zu ta%d tb%d acc%d packed%d [%zu]: %.9g vs %.17g",
                                          ks->name, m, n, k, ta, tb, acc, packed, i, (double)cf[i], want[i]);
                            }
                        }
            free(a), free(b), free(c0), free(want), free(got), free(af), free(bf), free(cf);
        }
    }
    cr_assert(ran >= 1, "the generic variant always exists");
    cr_assert_eq(ts_live_allocs(), before);
}

/* The variants other than generic that this build and CPU can run. */
static int other_variants(const ad__kernel_set **out)
{
    int n = 0;
    for (int v = AD__CPU_GENERIC + 1; v < AD__CPU_COUNT; v++)
        if (ad__cpu_kernels((ad__cpu_variant)v)) out[n++] = ad__cpu_kernels((ad__cpu_variant)v);
    return n;
}

#define SKIP_WITHOUT_VARIANTS(list, count)                                                               \
    do {                                                                                                 \
        (count) = other_variants(list);                                                                  \
        if ((count) == 0) {                                                                              \
            cr_skip_test("only the generic kernels exist here (UNROLL_NATIVE=ON, another architecture, " \
                         "or a CPU without AVX2 + FMA): nothing to compare");                            \
            return;                                                                                      \
        }                                                                                                \
    } while (0)

/*
 * Random data: each element of a variant and of generic is the same sum of
 * the same terms in the same order, each within gamma = (k + 10) u of
 * sum |terms| of the exact value (u the unit roundoff; + 10 for the eight
 * lanes of the dot-product path), so they differ by at most twice that. And
 * within one variant packing B first changes no bit.
 */
Test(cpu, every_variant_agrees_with_generic_within_rounding)
{
    const ad__kernel_set *vs[AD__CPU_COUNT];
    int nv;
    SKIP_WITHOUT_VARIANTS(vs, nv);
    const ad__gemm_kernels *gen = ad__cpu_kernels(AD__CPU_GENERIC)->gemm;
    long before = ts_live_allocs();
    for (int v = 0; v < nv; v++)
        for (size_t s = 0; s < N_SHAPES; s++) {
            size_t m = shapes[s][0], n = shapes[s][1], k = shapes[s][2];
            double *a = malloc(m * k * sizeof *a), *b = malloc(k * n * sizeof *b), *c0 = malloc(m * n * sizeof *c0);
            double *gd = malloc(m * n * sizeof *gd), *vd = malloc(m * n * sizeof *vd), *pd = malloc(m * n * sizeof *pd);
            double *mag = malloc(m * n * sizeof *mag), *ones = malloc(m * n * sizeof *ones);
            float *af = malloc(m * k * sizeof *af), *bf = malloc(k * n * sizeof *bf);
            float *gf = malloc(m * n * sizeof *gf), *vf = malloc(m * n * sizeof *vf), *pf = malloc(m * n * sizeof *pf);
            ts_fill_uniform(a, m * k, 21 + s, -1, 1);
            ts_fill_uniform(b, k * n, 22 + s, -1, 1);
            ts_fill_uniform(c0, m * n, 23 + s, -1, 1);
            for (size_t i = 0; i < m * k; i++) af[i] = (float)a[i];
            for (size_t i = 0; i < k * n; i++) bf[i] = (float)b[i];
            double *aa = malloc(m * k * sizeof *aa), *ba = malloc(k * n * sizeof *ba);
            for (size_t i = 0; i < m * k; i++) aa[i] = fabs(a[i]);
            for (size_t i = 0; i < k * n; i++) ba[i] = fabs(b[i]);
            for (int ta = 0; ta < 2; ta++)
                for (int tb = 0; tb < 2; tb++)
                    for (int acc = 0; acc < 2; acc++) {
                        for (size_t i = 0; i < m * n; i++) ones[i] = fabs(c0[i]);
                        plain_exact(ta, tb, m, n, k, aa, ba, acc ? ones : NULL, mag); /* sum |terms| */
                        for (size_t i = 0; i < m * n; i++) gd[i] = vd[i] = pd[i] = acc ? c0[i] : -7.0;
                        for (size_t i = 0; i < m * n; i++) gf[i] = vf[i] = pf[i] = (float)gd[i];
                        run_variant(gen, 0, ta, tb, m, n, k, a, b, gd, af, bf, gf, acc);
                        run_variant(vs[v]->gemm, 0, ta, tb, m, n, k, a, b, vd, af, bf, vf, acc);
                        run_variant(vs[v]->gemm, 1, ta, tb, m, n, k, a, b, pd, af, bf, pf, acc);
                        cr_assert(!memcmp(vd, pd, m * n * sizeof *pd) && !memcmp(vf, pf, m * n * sizeof *pf),
                                  "%s %zux%zux%zu ta%d tb%d acc%d: prepacked B changes bits", vs[v]->name, m, n, k,
                                  ta, tb, acc);
                        double g64 = 2 * (double)(k + 10) * DBL_EPSILON / 2, g32 = 2 * (double)(k + 10) * FLT_EPSILON / 2;
                        for (size_t i = 0; i < m * n; i++) {
                            cr_assert(fabs(vd[i] - gd[i]) <= g64 * mag[i], "%s f64 %zux%zux%zu ta%d tb%d acc%d [%zu]: %.17g vs generic %.17g",
                                      vs[v]->name, m, n, k, ta, tb, acc, i, vd[i], gd[i]);
                            cr_assert(fabs((double)vf[i] - (double)gf[i]) <= g32 * mag[i],
                                      "%s f32 %zux%zux%zu ta%d tb%d acc%d [%zu]: %.9g vs generic %.9g", vs[v]->name, m,
                                      n, k, ta, tb, acc, i, (double)vf[i], (double)gf[i]);
                        }
                    }
            free(a), free(b), free(c0), free(gd), free(vd), free(pd), free(mag), free(ones);
            free(af), free(bf), free(gf), free(vf), free(pf), free(aa), free(ba);
        }
    cr_assert_eq(ts_live_allocs(), before);
}

/* avx2 and avx512 both fuse every multiply-add and sum in the same order, so
 * on random data they give the same bits, whatever their vector widths,
 * row blocks and panel shapes. */
Test(cpu, avx2_and_avx512_give_the_same_bits)
{
    const ad__kernel_set *x2 = ad__cpu_kernels(AD__CPU_AVX2), *x5 = ad__cpu_kernels(AD__CPU_AVX512);
    if (!x2 || !x5) {
        cr_skip_test("this build or CPU lacks the avx2 or the avx512 variant: nothing to compare");
        return;
    }
    for (size_t s = 0; s < N_SHAPES; s++) {
        size_t m = shapes[s][0], n = shapes[s][1], k = shapes[s][2];
        double *a = malloc(m * k * sizeof *a), *b = malloc(k * n * sizeof *b);
        double *d2 = malloc(m * n * sizeof *d2), *d5 = malloc(m * n * sizeof *d5);
        float *af = malloc(m * k * sizeof *af), *bf = malloc(k * n * sizeof *bf);
        float *f2 = malloc(m * n * sizeof *f2), *f5 = malloc(m * n * sizeof *f5);
        cr_assert(a && b && d2 && d5 && af && bf && f2 && f5);
        ts_fill_uniform(a, m * k, 41 + s, -1, 1);
        ts_fill_uniform(b, k * n, 42 + s, -1, 1);
        for (size_t i = 0; i < m * k; i++) af[i] = (float)a[i];
        for (size_t i = 0; i < k * n; i++) bf[i] = (float)b[i];
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++)
                for (int packed = 0; packed < 2; packed++) {
                    ts_fill_uniform(d2, m * n, 43 + s, -1, 1);
                    memcpy(d5, d2, m * n * sizeof *d5);
                    for (size_t i = 0; i < m * n; i++) f2[i] = f5[i] = (float)d2[i];
                    run_variant(x2->gemm, packed, ta, tb, m, n, k, a, b, d2, af, bf, f2, 1);
                    run_variant(x5->gemm, packed, ta, tb, m, n, k, a, b, d5, af, bf, f5, 1);
                    cr_assert(!memcmp(d2, d5, m * n * sizeof *d5) && !memcmp(f2, f5, m * n * sizeof *f5),
                              "%zux%zux%zu ta%d tb%d packed%d: avx2 and avx512 differ", m, n, k, ta, tb, packed);
                }
        free(a), free(b), free(d2), free(d5), free(af), free(bf), free(f2), free(f5);
    }
}

/* ---- activations ------------------------------------------------------------------------ */

/* ulp distance in float between y and the exact value (double). */
static double ulps(float y, double exact)
{
    double spacing = exact == 0 ? 1.4e-45 : fabs(exact) * FLT_EPSILON;
    if (spacing < 1.4e-45) spacing = 1.4e-45;
    return fabs((double)y - exact) / spacing;
}

/* Every variant's activations (generic included), and softmax's exponential
 * of x <= 0: within 4 ulp of libm in
 * double (f32) or long double (f64), limits exact, NaN kept, -0 kept by
 * tanh; and the variants' f32 results within 4 ulp of generic's (measured:
 * avx2 2.5, from its fused multiply-adds). */
Test(cpu, every_variant_keeps_the_activations_accurate)
{
    enum { N = 100001 };
    float *x = malloc(N * sizeof *x), *ys = malloc(N * sizeof *ys), *yt = malloc(N * sizeof *yt);
    float *gs = malloc(N * sizeof *gs), *gt = malloc(N * sizeof *gt);
    double *xd = malloc(N * sizeof *xd), *ds = malloc(N * sizeof *ds), *dt = malloc(N * sizeof *dt);
    cr_assert(x && ys && yt && gs && gt && xd && ds && dt);
    for (int i = 0; i < N; i++) x[i] = (float)(-40.0 + 80.0 * i / (N - 1)), xd[i] = -45.0 + 90.0 * i / (N - 1);
    x[0] = 1e-20f, x[1] = -3e-8f, x[2] = 0.6249999f, x[3] = 0.625f, x[4] = -87.5f;
    xd[0] = 1e-300, xd[1] = -3e-17, xd[2] = 1e-8, xd[3] = 708.5, xd[4] = -708.5;
    const ad__act_kernels *gen = ad__cpu_kernels(AD__CPU_GENERIC)->act;
    gen->sigmoid_f32(N, x, gs);
    gen->tanh_f32(N, x, gt);
    for (int v = 0; v < AD__CPU_COUNT; v++) {
        const ad__kernel_set *ks = ad__cpu_kernels((ad__cpu_variant)v);
        if (!ks) continue;
        ks->act->sigmoid_f32(N, x, ys);
        ks->act->tanh_f32(N, x, yt);
        ks->act->sigmoid_f64(N, xd, ds);
        ks->act->tanh_f64(N, xd, dt);
        double worst = 0;
        for (int i = 0; i < N; i++) {
            double s = 1.0 / (1.0 + exp(-(double)x[i])), th = tanh((double)x[i]);
            cr_assert(ulps(ys[i], s) <= 4, "%s sigmoid(%.9g) = %.9g, exact %.17g", ks->name, (double)x[i], (double)ys[i], s);
            cr_assert(ulps(yt[i], th) <= 4, "%s tanh(%.9g) = %.9g, exact %.17g", ks->name, (double)x[i], (double)yt[i], th);
            double d = fmax(ulps(ys[i], gs[i]), ulps(yt[i], gt[i]));
            worst = d > worst ? d : worst;
            cr_assert(d <= 4, "%s at %.9g: %.1f ulp from generic", ks->name, (double)x[i], d);
            long double sl = 1.0L / (1.0L + expl(-(long double)xd[i])), tl = tanhl((long double)xd[i]);
            cr_assert(fabsl(ds[i] - sl) <= 4 * fabs((double)sl) * DBL_EPSILON + 5e-324, "%s sigmoid(%.17g) = %.17g",
                      ks->name, xd[i], ds[i]);
            cr_assert(fabsl(dt[i] - tl) <= 4 * fabs((double)tl) * DBL_EPSILON + 5e-324, "%s tanh(%.17g) = %.17g",
                      ks->name, xd[i], dt[i]);
        }
        cr_log_info("%s: f32 activations at most %.2f ulp from generic", ks->name, worst);
        /* softmax's exponential of x <= 0 (f32 to -104, f64 to -745, through the denormals) */
        for (int i = 0; i < N; i++) x[i] = (float)(-104.0 * i / (N - 1)), xd[i] = -745.0 * i / (N - 1);
        ks->act->exp_nonpos_f32(N, x, ys);
        ks->act->exp_nonpos_f64(N, xd, ds);
        for (int i = 0; i < N; i++) {
            double e = exp((double)x[i]);
            cr_assert(ulps(ys[i], e) <= 4, "%s exp(%.9g) = %.9g, exact %.17g", ks->name, (double)x[i], (double)ys[i], e);
            long double el = expl((long double)xd[i]);
            cr_assert(fabsl(ds[i] - el) <= 4 * fabs((double)el) * DBL_EPSILON + 5e-324, "%s exp(%.17g) = %.17g",
                      ks->name, xd[i], ds[i]);
        }
        for (int i = 0; i < N; i++) x[i] = (float)(-40.0 + 80.0 * i / (N - 1)), xd[i] = -45.0 + 90.0 * i / (N - 1);
        x[0] = 1e-20f, x[1] = -3e-8f, x[2] = 0.6249999f, x[3] = 0.625f, x[4] = -87.5f;
        xd[0] = 1e-300, xd[1] = -3e-17, xd[2] = 1e-8, xd[3] = 708.5, xd[4] = -708.5;
        float sp[7] = {INFINITY, -INFINITY, NAN, -800.0f, 800.0f, 0.0f, -0.0f}, o[7];
        ks->act->sigmoid_f32(7, sp, o);
        cr_assert(o[0] == 1.0f && o[1] == 0.0f && isnan(o[2]) && o[3] == 0.0f && o[4] == 1.0f && o[5] == 0.5f, "%s", ks->name);
        ks->act->tanh_f32(7, sp, o);
        cr_assert(o[0] == 1.0f && o[1] == -1.0f && isnan(o[2]) && o[3] == -1.0f && o[4] == 1.0f && o[5] == 0.0f, "%s", ks->name);
        cr_assert(signbit(o[6]), "%s: tanh(-0) = -0", ks->name);
        double spd[7] = {INFINITY, -INFINITY, NAN, -1e4, 1e4, 0.0, -0.0}, od[7];
        ks->act->sigmoid_f64(7, spd, od);
        cr_assert(od[0] == 1.0 && od[1] == 0.0 && isnan(od[2]) && od[3] == 0.0 && od[4] == 1.0 && od[5] == 0.5, "%s", ks->name);
        ks->act->tanh_f64(7, spd, od);
        cr_assert(od[0] == 1.0 && od[1] == -1.0 && isnan(od[2]) && signbit(od[6]), "%s", ks->name);
    }
    free(x), free(ys), free(yt), free(gs), free(gt), free(xd), free(ds), free(dt);
}
