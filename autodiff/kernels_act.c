/*
 * kernels_act.c - the activations (sigmoid, tanh) and softmax's exponential
 * over f32 and f64 arrays,
 * written without branches or calls so that the loops vectorise.
 *
 * glibc's expf/tanhf are accurate but scalar calls; in the recurrent
 * workloads they took a fifth of a training step. These keep float
 * accuracy (a few ulp, tested against double libm in tests/test_kernels.c)
 * and the special values: NaN stays NaN (anomaly mode depends on it),
 * +-inf saturate to the limits, and nothing overflows for any input.
 *
 * exp: x = n ln2 + r with |r| <= ln2/2, e^r by a degree-7 polynomial (the
 * Cephes single-precision coefficients), 2^n built in the exponent bits.
 * n is found with the 1.5 * 2^23 rounding trick, so no float-to-int
 * conversion ever sees a NaN or an out-of-range value.
 *
 * Compiled once per instruction-set variant, like kernels.c (see cpu.c);
 * only this variant's table, ad__act_kernels_<variant>, is external.
 */
#include <stdint.h>
#include <string.h>

#include "kernels.h"

/* e^x for x in [-87.3, 18] (callers clamp), NaN in, NaN out. */
static inline float exp_core(float x)
{
    const float round = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer */
    float t = x * 1.44269504088896341f + round;
    float n = t - round;
    float r = x - n * 0.693359375f; /* ln2 split in two for an exact product */
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    uint32_t bits;
    memcpy(&bits, &t, sizeof bits);
    /* The low mantissa bits of t hold n (two's complement in 22 bits). */
    uint32_t scale_bits = (bits + 127u) << 23;
    float scale;
    memcpy(&scale, &scale_bits, sizeof scale);
    return p * scale;
}

/* sigmoid: with e = e^-|x| (never overflows), 1/(1+e) for x >= 0 and
 * e/(1+e) for x < 0, both without cancellation. e is the square of
 * e^(-|x|/2), which reaches the denormals and 0 as expf does. */
static void sigmoid_f32(size_t n, const float *x, float *y)
{
    for (size_t i = 0; i < n; i++) {
        float v = x[i];
        float a = v < 0 ? -v : v;
        float q = exp_core(-0.5f * (a > 174.0f ? 174.0f : a));
        float e = q * q; /* e^-|x|, squared from e^(-|x|/2) so that it underflows to 0 */
        float s = 1.0f / (1.0f + e);
        y[i] = v >= 0 ? s : v < 0 ? e * s : v; /* the last case: NaN */
    }
}

/*
 * tanh: an odd polynomial for |x| < 0.625 (the Cephes tanhf coefficients),
 * 1 - 2/(e^{2|x|} + 1) above, where tanh(10) already rounds to 1.
 */
static void tanh_f32(size_t n, const float *x, float *y)
{
    for (size_t i = 0; i < n; i++) {
        float v = x[i];
        float a = v < 0 ? -v : v;
        float z = v * v;
        float p = -5.70498872745e-3f;
        p = p * z + 2.06390887954e-2f;
        p = p * z - 5.37397155531e-2f;
        p = p * z + 1.33314422036e-1f;
        p = p * z - 3.33332819422e-1f;
        float small = v * (1.0f + z * p); /* keeps the sign of -0 */
        float e = exp_core(2.0f * (a > 10.0f ? 10.0f : a));
        float big = 1.0f - 2.0f / (e + 1.0f);
        big = v < 0 ? -big : big;
        y[i] = a < 0.625f ? small : big; /* NaN: big, which is NaN */
    }
}

/* e^x for x <= 0 (softmax's shifted logits): the square of e^(x/2), so that
 * it reaches the denormals and underflows to 0 as expf does. */
static void exp_nonpos_f32(size_t n, const float *x, float *y)
{
    for (size_t i = 0; i < n; i++) {
        float h = 0.5f * x[i];
        float q = exp_core(h < -87.3f ? -87.3f : h); /* NaN: the comparison fails, NaN goes on */
        y[i] = q * q;
    }
}

/* ---- f64 ------------------------------------------------------------------------------ */

/*
 * e^y = 2^n (1 + q) for y in [-708, 0] (callers clamp), to about an ulp:
 * y = n ln2 + r with |r| <= ln2/2 (ln2 in two parts), q = e^r - 1 by its
 * Taylor series to r^13 (the first term left out is below 2^-60 of the
 * result). e^y - 1 is then 2^n q + (2^n - 1), which does not cancel for
 * y <= 0, so tanh keeps its relative accuracy near 0; e^y itself is
 * 2^n + 2^n q. NaN in, NaN out.
 */
static inline void exp_parts(double y, double *scale, double *q)
{
    const double round = 6755399441055744.0; /* 1.5 * 2^52 */
    double t = y * 1.4426950408889634074 + round;
    double n = t - round;
    double r = (y - n * 6.93147180369123816490e-01) - n * 1.90821492927058770002e-10;
    double p = 1.0 / 6227020800;
    p = p * r + 1.0 / 479001600;
    p = p * r + 1.0 / 39916800;
    p = p * r + 1.0 / 3628800;
    p = p * r + 1.0 / 362880;
    p = p * r + 1.0 / 40320;
    p = p * r + 1.0 / 5040;
    p = p * r + 1.0 / 720;
    p = p * r + 1.0 / 120;
    p = p * r + 1.0 / 24;
    p = p * r + 1.0 / 6;
    p = p * r + 0.5;
    *q = r + r * r * p;
    uint64_t bits;
    memcpy(&bits, &t, sizeof bits);
    uint64_t scale_bits = (bits + 1023u) << 52; /* 2^n from the low bits of t, n >= -1022 */
    memcpy(scale, &scale_bits, sizeof *scale);
}

/* sigmoid: with e = e^-|x|, 1/(1+e) for x >= 0 and e/(1+e) below. */
static void sigmoid_f64(size_t n, const double *x, double *y)
{
    for (size_t i = 0; i < n; i++) {
        double v = x[i], scale, q;
        double a = v < 0 ? -v : v;
        exp_parts(-0.5 * (a > 1416.0 ? 1416.0 : a), &scale, &q);
        double h = scale + scale * q;
        double e = h * h; /* e^-|x|, squared from e^(-|x|/2) so that it underflows to 0 */
        double s = 1.0 / (1.0 + e);
        y[i] = v >= 0 ? s : v < 0 ? e * s : v; /* the last case: NaN */
    }
}

/* tanh |x| = -m / (2 + m) with m = expm1(-2|x|), exact in relative terms at
 * every size; tanh(20) already rounds to 1. */
static void tanh_f64(size_t n, const double *x, double *y)
{
    for (size_t i = 0; i < n; i++) {
        double v = x[i];
        double a = v < 0 ? -v : v;
        double scale, q;
        exp_parts(-2.0 * (a > 20.0 ? 20.0 : a), &scale, &q);
        double m = scale * q + (scale - 1.0); /* e^(-2|x|) - 1 */
        double t = -m / (2.0 + m);
        y[i] = v < 0 ? -t : v > 0 ? t : v; /* keeps -0, +0 and NaN */
    }
}

/* e^x for x <= 0, as the square of e^(x/2) (underflows as exp does). */
static void exp_nonpos_f64(size_t n, const double *x, double *y)
{
    for (size_t i = 0; i < n; i++) {
        double h = 0.5 * x[i], scale, q;
        exp_parts(h < -708.0 ? -708.0 : h, &scale, &q);
        double e = scale + scale * q;
        y[i] = e * e;
    }
}

/* This variant's entry points; cpu.c picks one variant's table per process. */
const ad__act_kernels AD__VARIANT(ad__act_kernels) = {
    .sigmoid_f32 = sigmoid_f32,
    .tanh_f32 = tanh_f32,
    .sigmoid_f64 = sigmoid_f64,
    .tanh_f64 = tanh_f64,
    .exp_nonpos_f32 = exp_nonpos_f32,
    .exp_nonpos_f64 = exp_nonpos_f64,
};
