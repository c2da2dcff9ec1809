/*
 * test_kernels.c - the blocked GEMM against a plain triple loop, for every
 * transpose case, both dtypes, and shapes that hit each path: vectors, outer
 * products, edges narrower than the register block, panels wider and deeper
 * than the cache blocks. The fast path must equal the plain one within
 * rounding (the sums are taken in another order).
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>

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
