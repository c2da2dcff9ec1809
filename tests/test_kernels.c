/*
 * test_kernels.c - the blocked GEMM against a plain triple loop, for every
 * transpose case, both dtypes, and shapes that hit each path: vectors, outer
 * products, edges narrower than the register block, panels wider and deeper
 * than the cache blocks. The fast path must equal the plain one within
 * rounding (the sums are taken in another order).
 */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "testsupport.h"

/* C = op(A) op(B) the plain way, in long double. */
static void plain(int ta, int tb, size_t m, size_t n, size_t k, const double *a, const double *b,
                  const double *c0, double *c)
{
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++) {
            long double s = c0 ? c0[i * n + j] : 0;
            for (size_t p = 0; p < k; p++)
                s += (long double)(ta ? a[p * m + i] : a[i * k + p]) * (tb ? b[j * k + p] : b[p * n + j]);
            c[i * n + j] = (double)s;
        }
}

Test(kernels, gemm_matches_the_plain_loop)
{
    size_t shapes[][3] = {{1, 1, 1},   {1, 100, 100}, {100, 100, 1}, {3, 5, 7},     {4, 16, 64},
                          {5, 17, 65}, {32, 256, 256}, {33, 300, 70}, {7, 1, 300},  {64, 513, 129}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        size_t m = shapes[s][0], n = shapes[s][1], k = shapes[s][2];
        double *a = malloc(m * k * sizeof *a), *b = malloc(k * n * sizeof *b);
        double *c0 = malloc(m * n * sizeof *c0), *want = malloc(m * n * sizeof *want);
        double *got = malloc(m * n * sizeof *got);
        float *af = malloc(m * k * sizeof *af), *bf = malloc(k * n * sizeof *bf), *cf = malloc(m * n * sizeof *cf);
        ts_fill_uniform(a, m * k, 1 + s, -1, 1);
        ts_fill_uniform(b, k * n, 2 + s, -1, 1);
        ts_fill_uniform(c0, m * n, 3 + s, -1, 1);
        for (size_t i = 0; i < m * k; i++) af[i] = (float)a[i];
        for (size_t i = 0; i < k * n; i++) bf[i] = (float)b[i];
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++)
                for (int acc = 0; acc < 2; acc++) {
                    plain(ta, tb, m, n, k, a, b, acc ? c0 : NULL, want);
                    for (size_t i = 0; i < m * n; i++) got[i] = acc ? c0[i] : 12345.0;
                    for (size_t i = 0; i < m * n; i++) cf[i] = (float)got[i];
                    ad__gemm_f64(ta, tb, m, n, k, a, b, got, acc);
                    ad__gemm_f32(ta, tb, m, n, k, af, bf, cf, acc);
                    for (size_t i = 0; i < m * n; i++) {
                        double tol = 1e-14 * (double)(k + 1) * 2;
                        cr_assert(fabs(got[i] - want[i]) <= tol, "f64 %zux%zux%zu ta%d tb%d acc%d [%zu]: %.17g vs %.17g",
                                  m, n, k, ta, tb, acc, i, got[i], want[i]);
                        cr_assert(fabs(cf[i] - want[i]) <= 1e-6 * (double)(k + 1) * 2,
                                  "f32 %zux%zux%zu ta%d tb%d acc%d [%zu]: %.9g vs %.9g", m, n, k, ta, tb, acc,
                                  i, (double)cf[i], want[i]);
                    }
                }
        free(a), free(b), free(c0), free(want), free(got), free(af), free(bf), free(cf);
    }
}

/* ulp distance in float between y and the exact value (double). */
static double ulps(float y, double exact)
{
    double spacing = exact == 0 ? 1.4e-45 : fabs(exact) * FLT_EPSILON;
    if (spacing < 1.4e-45) spacing = 1.4e-45;
    return fabs((double)y - exact) / spacing;
}

/* The vectorised f32 activations: within 4 ulp of double libm over a dense
 * sweep and random points, exact limits, NaN kept. */
Test(kernels, f32_activations_are_float_accurate)
{
    enum { N = 200001 };
    float *x = malloc(N * sizeof *x), *ys = malloc(N * sizeof *ys), *yt = malloc(N * sizeof *yt);
    double r[1000];
    ts_fill_uniform(r, 1000, 77, -200, 200);
    for (int i = 0; i < N; i++) x[i] = (float)(-40.0 + 80.0 * i / (N - 1));
    for (int i = 0; i < 1000; i++) x[i] = (float)r[i];
    x[1000] = 1e-20f, x[1001] = -3e-8f, x[1002] = 0.6249999f, x[1003] = 0.625f, x[1004] = -87.5f;
    ad__sigmoid_f32(N, x, ys);
    ad__tanh_f32(N, x, yt);
    double worst_s = 0, worst_t = 0;
    for (int i = 0; i < N; i++) {
        double s = 1.0 / (1.0 + exp(-(double)x[i])), th = tanh((double)x[i]);
        double us = ulps(ys[i], s), ut = ulps(yt[i], th);
        worst_s = us > worst_s ? us : worst_s;
        worst_t = ut > worst_t ? ut : worst_t;
        cr_assert(us <= 4, "sigmoid(%.9g) = %.9g, exact %.17g (%.1f ulp)", (double)x[i], (double)ys[i], s, us);
        cr_assert(ut <= 4, "tanh(%.9g) = %.9g, exact %.17g (%.1f ulp)", (double)x[i], (double)yt[i], th, ut);
    }
    cr_log_info("worst: sigmoid %.2f ulp, tanh %.2f ulp", worst_s, worst_t);
    float sp[7] = {INFINITY, -INFINITY, NAN, -800.0f, 800.0f, 0.0f, -0.0f}, o[7];
    ad__sigmoid_f32(7, sp, o);
    cr_assert(o[0] == 1.0f && o[1] == 0.0f && isnan(o[2]) && o[3] == 0.0f && o[4] == 1.0f && o[5] == 0.5f);
    ad__tanh_f32(7, sp, o);
    cr_assert(o[0] == 1.0f && o[1] == -1.0f && isnan(o[2]) && o[3] == -1.0f && o[4] == 1.0f && o[5] == 0.0f);
    cr_assert(signbit(o[6]), "tanh(-0) = -0");
    ad__tanh_f32(1, sp, sp); /* in place */
    cr_assert(sp[0] == 1.0f);
    free(x), free(ys), free(yt);
}

/* A B packed once (a weight reused over an unroll's steps) gives the products
 * of ad__gemm_* to the bit, for every transpose case, both dtypes, shapes with
 * partial strips, several panels and rows below the register block. */
Test(kernels, prepacked_b_is_bit_identical)
{
    size_t shapes[][3] = {{32, 256, 256}, {16, 1024, 256}, {33, 300, 70}, {6, 17, 5}, {64, 513, 129}, {3, 40, 9}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        size_t m = shapes[s][0], n = shapes[s][1], k = shapes[s][2];
        double *a = malloc(m * k * sizeof *a), *b = malloc(k * n * sizeof *b), *c0 = malloc(m * n * sizeof *c0);
        double *want = malloc(m * n * sizeof *want), *got = malloc(m * n * sizeof *got);
        float *af = malloc(m * k * sizeof *af), *bf = malloc(k * n * sizeof *bf);
        float *wf = malloc(m * n * sizeof *wf), *gf = malloc(m * n * sizeof *gf);
        ts_fill_uniform(a, m * k, 31 + s, -1, 1);
        ts_fill_uniform(b, k * n, 32 + s, -1, 1);
        ts_fill_uniform(c0, m * n, 33 + s, -1, 1);
        for (size_t i = 0; i < m * k; i++) af[i] = (float)a[i];
        for (size_t i = 0; i < k * n; i++) bf[i] = (float)b[i];
        double *pd = malloc(ad__gemm_packed_count(1, n, k) * sizeof *pd + 1);
        float *pf = malloc(ad__gemm_packed_count(0, n, k) * sizeof *pf + 1);
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++)
                for (int acc = 0; acc < 2; acc++) {
                    ad__gemm_pack_f64(tb, n, k, b, pd);
                    ad__gemm_pack_f32(tb, n, k, bf, pf);
                    memcpy(want, c0, m * n * sizeof *want);
                    memcpy(got, c0, m * n * sizeof *got);
                    for (size_t i = 0; i < m * n; i++) wf[i] = gf[i] = (float)c0[i];
                    ad__gemm_f64(ta, tb, m, n, k, a, b, want, acc);
                    ad__gemm_prepacked_f64(ta, tb, m, n, k, a, b, pd, got, acc);
                    ad__gemm_f32(ta, tb, m, n, k, af, bf, wf, acc);
                    ad__gemm_prepacked_f32(ta, tb, m, n, k, af, bf, pf, gf, acc);
                    cr_assert(!memcmp(want, got, m * n * sizeof *got), "f64 %zux%zux%zu ta%d tb%d acc%d", m, n, k, ta, tb, acc);
                    cr_assert(!memcmp(wf, gf, m * n * sizeof *gf), "f32 %zux%zux%zu ta%d tb%d acc%d", m, n, k, ta, tb, acc);
                }
        free(a), free(b), free(c0), free(want), free(got), free(af), free(bf), free(wf), free(gf), free(pd), free(pf);
    }
}

/* The f64 activations: within 4 ulp of long double libm (measured: sigmoid
 * 2.5, tanh 1.5), their limits and NaN kept. */
Test(kernels, f64_activations_are_double_accurate)
{
    enum { N = 200001 };
    double *x = malloc(N * sizeof *x), *ys = malloc(N * sizeof *ys), *yt = malloc(N * sizeof *yt);
    for (int i = 0; i < N; i++) x[i] = -45.0 + 90.0 * i / (N - 1);
    ts_fill_uniform(x, 1000, 78, -800, 800);
    x[1000] = 1e-300, x[1001] = -3e-17, x[1002] = 1e-8, x[1003] = -0.2, x[1004] = 708.5, x[1005] = -708.5;
    ad__sigmoid_f64(N, x, ys);
    ad__tanh_f64(N, x, yt);
    for (int i = 0; i < N; i++) {
        long double s = 1.0L / (1.0L + expl(-(long double)x[i])), th = tanhl((long double)x[i]);
        double spacing_s = fabs((double)s) * DBL_EPSILON, spacing_t = fabs((double)th) * DBL_EPSILON;
        cr_assert(fabsl(ys[i] - s) <= 4 * spacing_s + 5e-324, "sigmoid(%.17g) = %.17g, exact %.17Lg", x[i], ys[i], s);
        cr_assert(fabsl(yt[i] - th) <= 4 * spacing_t + 5e-324, "tanh(%.17g) = %.17g, exact %.17Lg", x[i], yt[i], th);
    }
    double sp[7] = {INFINITY, -INFINITY, NAN, -1e4, 1e4, 0.0, -0.0}, o[7];
    ad__sigmoid_f64(7, sp, o);
    cr_assert(o[0] == 1.0 && o[1] == 0.0 && isnan(o[2]) && o[3] == 0.0 && o[4] == 1.0 && o[5] == 0.5);
    ad__tanh_f64(7, sp, o);
    cr_assert(o[0] == 1.0 && o[1] == -1.0 && isnan(o[2]) && o[3] == -1.0 && o[4] == 1.0 && o[5] == 0.0);
    cr_assert(signbit(o[6]), "tanh(-0) = -0");
    free(x), free(ys), free(yt);
}

/* The products of one shape in variant ks, every transpose case, accumulate
 * or not, both dtypes, against the plain loop; with B packed first they must
 * give the unpacked bits. */
static void check_variant_shape(const ad__kernel_set *ks, size_t m, size_t n, size_t k, uint64_t seed)
{
    const ad__gemm_kernels *g = ks->gemm;
    double *a = malloc(m * k * sizeof *a), *b = malloc(k * n * sizeof *b), *c0 = malloc(m * n * sizeof *c0);
    double *want = malloc(m * n * sizeof *want), *got = malloc(m * n * sizeof *got), *gp = malloc(m * n * sizeof *gp);
    float *af = malloc(m * k * sizeof *af), *bf = malloc(k * n * sizeof *bf);
    float *cf = malloc(m * n * sizeof *cf), *cp = malloc(m * n * sizeof *cp);
    double *pd = malloc(g->packed_count(1, n, k) * sizeof *pd + 1);
    float *pf = malloc(g->packed_count(0, n, k) * sizeof *pf + 1);
    cr_assert(a && b && c0 && want && got && gp && af && bf && cf && cp && pd && pf);
    ts_fill_uniform(a, m * k, seed, -1, 1);
    ts_fill_uniform(b, k * n, seed + 1, -1, 1);
    ts_fill_uniform(c0, m * n, seed + 2, -1, 1);
    for (size_t i = 0; i < m * k; i++) af[i] = (float)a[i];
    for (size_t i = 0; i < k * n; i++) bf[i] = (float)b[i];
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
            for (int acc = 0; acc < 2; acc++) {
                plain(ta, tb, m, n, k, a, b, acc ? c0 : NULL, want);
                for (size_t i = 0; i < m * n; i++) got[i] = gp[i] = acc ? c0[i] : 12345.0;
                for (size_t i = 0; i < m * n; i++) cf[i] = cp[i] = (float)got[i];
                g->pack_f64(tb, n, k, b, pd);
                g->pack_f32(tb, n, k, bf, pf);
                g->f64(ta, tb, m, n, k, a, b, got, acc);
                g->f32(ta, tb, m, n, k, af, bf, cf, acc);
                g->prepacked_f64(ta, tb, m, n, k, a, b, pd, gp, acc);
                g->prepacked_f32(ta, tb, m, n, k, af, bf, pf, cp, acc);
                cr_assert(!memcmp(got, gp, m * n * sizeof *gp) && !memcmp(cf, cp, m * n * sizeof *cp),
                          "%s %zux%zux%zu ta%d tb%d acc%d: prepacked B changes bits", ks->name, m, n, k, ta, tb, acc);
                for (size_t i = 0; i < m * n; i++) {
                    cr_assert(fabs(got[i] - want[i]) <= 1e-14 * (double)(k + 1) * 2,
                              "%s f64 %zux%zux%zu ta%d tb%d acc%d [%zu]: %.17g vs %.17g", ks->name, m, n, k, ta, tb,
                              acc, i, got[i], want[i]);
                    cr_assert(fabs(cf[i] - want[i]) <= 1e-6 * (double)(k + 1) * 2,
                              "%s f32 %zux%zux%zu ta%d tb%d acc%d [%zu]: %.9g vs %.9g", ks->name, m, n, k, ta, tb,
                              acc, i, (double)cf[i], want[i]);
                }
            }
    free(a), free(b), free(c0), free(want), free(got), free(gp), free(af), free(bf), free(cf), free(cp), free(pd),
        free(pf);
}

/* Every variant this build and CPU run (the native build has one): a last
 * strip of every width 1..NR-1 for the widest NR of any variant (32 floats,
 * 16 doubles with AVX-512), alone and after a whole strip (the one-vector
 * kernel for widths up to NR/2, the whole one above), with row counts that
 * leave every remainder of the 6- and 8-row kernels, and k off the 256-row
 * block (deeper than one block, and shallower); every transpose case,
 * accumulate or not, B packed or not. */
Test(kernels, narrow_strips_of_every_width_in_every_variant)
{
    static const size_t rows[] = {6, 7, 13, 15, 19, 33};
    long before = ts_live_allocs();
    int ran = 0;
    for (int v = 0; v < AD__CPU_COUNT; v++) {
        const ad__kernel_set *ks = ad__cpu_kernels((ad__cpu_variant)v);
        if (!ks) continue;
        ran++;
        for (size_t w = 1; w < 32; w++)
            for (size_t lead = 0; lead <= 32; lead += 32) {
                size_t m = rows[(w + lead) % (sizeof rows / sizeof rows[0])];
                size_t k = (w % 3 == 0) ? 257 : (w % 3 == 1) ? 70 : 300;
                check_variant_shape(ks, m, lead + w, k, 100 + w + lead);
            }
        check_variant_shape(ks, 2048 / 32 + 1, 65, 256, 7);   /* the head's shape, rows cut down */
        check_variant_shape(ks, 17, 300, 513, 8);             /* two k blocks and a partial third */
        check_variant_shape(ks, 9, 16 * 9 + 5, 129, 9);       /* f64 narrow strip after several */
    }
    cr_assert(ran >= 1, "the generic variant always exists");
    cr_assert_eq(ts_live_allocs(), before);
}

/* Softmax's exponential of x <= 0: within 4 ulp of libm from 0 down through
 * the denormals (f32 to -104, f64 to -745), 0 below them and at -inf, NaN
 * kept; in place too. */
Test(kernels, exp_of_nonpositive_values_is_accurate)
{
    enum { N = 200001 };
    float *xf = malloc(N * sizeof *xf), *yf = malloc(N * sizeof *yf);
    double *xd = malloc(N * sizeof *xd), *yd = malloc(N * sizeof *yd);
    for (int i = 0; i < N; i++) xf[i] = (float)(-104.0 * i / (N - 1)), xd[i] = -745.0 * i / (N - 1);
    ad__exp_nonpos_f32(N, xf, yf);
    ad__exp_nonpos_f64(N, xd, yd);
    double worst = 0;
    for (int i = 0; i < N; i++) {
        double u = ulps(yf[i], exp((double)xf[i]));
        worst = u > worst ? u : worst;
        cr_assert(u <= 4, "exp(%.9g) = %.9g, exact %.17g (%.1f ulp)", (double)xf[i], (double)yf[i], exp((double)xf[i]), u);
        long double e = expl((long double)xd[i]);
        double spacing = fabs((double)e) * DBL_EPSILON;
        cr_assert(fabsl(yd[i] - e) <= 4 * spacing + 5e-324, "exp(%.17g) = %.17g, exact %.17Lg", xd[i], yd[i], e);
    }
    cr_log_info("worst f32: %.2f ulp", worst);
    float sf[5] = {0.0f, -0.0f, -200.0f, -INFINITY, NAN};
    double sd[5] = {0.0, -0.0, -2000.0, -INFINITY, NAN};
    ad__exp_nonpos_f32(5, sf, sf);
    ad__exp_nonpos_f64(5, sd, sd);
    cr_assert(sf[0] == 1.0f && sf[1] == 1.0f && sf[2] == 0.0f && sf[3] == 0.0f && isnan(sf[4]));
    cr_assert(sd[0] == 1.0 && sd[1] == 1.0 && sd[2] == 0.0 && sd[3] == 0.0 && isnan(sd[4]));
    free(xf), free(yf), free(xd), free(yd);
}
