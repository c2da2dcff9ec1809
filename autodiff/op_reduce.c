/*
 * op_reduce.c - sum and mean (over one axis or all), softmax and log-softmax
 * along an axis.
 *
 * Every op here sees its input as [outer, len, inner]: `len` is the reduced
 * axis, `outer` the axes before it and `inner` the axes after it.
 */
#include <math.h>

#include "internal.h"

typedef struct span {
    size_t outer, len, inner;
} span;

static span span_of(ad_shape s, int axis)
{
    span sp = {1, 1, 1};
    if (axis == AD_AXIS_ALL) {
        for (int i = 0; i < s.rank; i++) sp.len *= (size_t)s.dim[i];
        return sp;
    }
    for (int i = 0; i < s.rank; i++) {
        size_t d = (size_t)s.dim[i];
        if (i < axis) sp.outer *= d;
        else if (i == axis) sp.len = d;
        else sp.inner *= d;
    }
    return sp;
}

/* Normalises n->a.axis in place; fails the tape when it is out of range. */
static ad_status check_axis(ad_tape *t, ad_node *n)
{
    if (n->a.axis == AD_AXIS_ALL) return AD_OK;
    int rank = n->in[0]->shape.rank;
    int axis = ad__axis(n->a.axis, rank);
    if (axis < 0) {
        char s[AD__SHAPE_BUF];
        return ad_tape_fail(t, AD_ERR_ARG, "%s: axis %d is out of range for %s", ad__ops[n->op].name,
                        n->a.axis, ad__shape_str(n->in[0]->shape, s));
    }
    n->a.axis = axis;
    return AD_OK;
}

ad_status ad__shape_reduce(ad_tape *t, ad_node *n, ad_shape *out)
{
    if (check_axis(t, n) != AD_OK) return ad_tape_status(t);
    ad_shape in = n->in[0]->shape;
    if (n->op == AD_OP_MEAN && span_of(in, n->a.axis).len == 0) {
        char s[AD__SHAPE_BUF];
        return ad_tape_fail(t, AD_ERR_EMPTY, "mean: %s has no elements along the reduced axis",
                        ad__shape_str(in, s));
    }
    ad_shape o = {0, {0, 0, 0, 0}};
    for (int i = 0; i < in.rank; i++) {
        int reduced = n->a.axis == AD_AXIS_ALL || i == n->a.axis;
        if (reduced && !n->a.keepdim) continue;
        o.dim[o.rank++] = reduced ? 1 : in.dim[i];
    }
    *out = o;
    return AD_OK;
}

ad_status ad__shape_softmax(ad_tape *t, ad_node *n, ad_shape *out)
{
    if (n->a.axis == AD_AXIS_ALL || n->in[0]->shape.rank == 0)
        return ad_tape_fail(t, AD_ERR_ARG, "%s: needs one axis of a tensor of rank >= 1",
                        ad__ops[n->op].name);
    if (check_axis(t, n) != AD_OK) return ad_tape_status(t);
    *out = n->in[0]->shape;
    return AD_OK;
}

/* ---- sum and mean ------------------------------------------------------------------- */

#define DEFINE_REDUCE(T)                                                               \
    static void reduce_fwd_##T(span sp, const T *x, T *y, T scale)                     \
    {                                                                                  \
        for (size_t o = 0; o < sp.outer; o++)                                          \
            for (size_t i = 0; i < sp.inner; i++) {                                    \
                T s = 0;                                                               \
                for (size_t k = 0; k < sp.len; k++) s += x[(o * sp.len + k) * sp.inner + i]; \
                y[o * sp.inner + i] = s * scale;                                       \
            }                                                                          \
    }                                                                                  \
    static void reduce_bwd_##T(span sp, const T *g, T *gx, T scale)                    \
    {                                                                                  \
        for (size_t o = 0; o < sp.outer; o++)                                          \
            for (size_t k = 0; k < sp.len; k++)                                        \
                for (size_t i = 0; i < sp.inner; i++)                                  \
                    gx[(o * sp.len + k) * sp.inner + i] += g[o * sp.inner + i] * scale; \
    }

DEFINE_REDUCE(float)
DEFINE_REDUCE(double)

static double reduce_scale(const ad_node *n, span sp)
{
    return n->op == AD_OP_MEAN ? 1.0 / (double)sp.len : 1.0;
}

static ad_status reduce_fwd(ad_tape *t, ad_node *n)
{
    (void)t;
    span sp = span_of(n->in[0]->shape, n->a.axis);
    double scale = reduce_scale(n, sp);
    if (n->out->dtype == AD_F32)
        reduce_fwd_float(sp, n->in[0]->data, n->out->data, (float)scale);
    else
        reduce_fwd_double(sp, n->in[0]->data, n->out->data, scale);
    return AD_OK;
}

/* d sum_k x_k / dx_k = 1 (mean: 1/len): the gradient is spread back over the axis. */
static void reduce_bwd(ad_tape *t, ad_node *n)
{
    void *gx = ad__grad(t, n->in[0]);
    if (!gx) return;
    span sp = span_of(n->in[0]->shape, n->a.axis);
    double scale = reduce_scale(n, sp);
    if (n->out->dtype == AD_F32)
        reduce_bwd_float(sp, n->out->grad, gx, (float)scale);
    else
        reduce_bwd_double(sp, n->out->grad, gx, scale);
}

/* Sums and means are linear: their forward on the tangents. */
ad_status ad__sum_jvp(ad_tape *t, ad_node *n) { return ad__jvp_linear(t, n, 0); }
ad_status ad__mean_jvp(ad_tape *t, ad_node *n) { return ad__jvp_linear(t, n, 0); }

ad_status ad__sum_fwd(ad_tape *t, ad_node *n) { return reduce_fwd(t, n); }
void ad__sum_bwd(ad_tape *t, ad_node *n) { reduce_bwd(t, n); }
ad_status ad__mean_fwd(ad_tape *t, ad_node *n) { return reduce_fwd(t, n); }
void ad__mean_bwd(ad_tape *t, ad_node *n) { reduce_bwd(t, n); }

static ad_tensor *reduce(ad_tape *t, ad__op op, ad_tensor *x, int axis, int keepdim)
{
    ad__args args = {0};
    args.axis = axis;
    args.keepdim = keepdim != 0;
    return ad__record(t, op, &x, 1, &args);
}

ad_tensor *ad_sum(ad_tape *t, ad_tensor *x, int axis, int keepdim)
{
    return reduce(t, AD_OP_SUM, x, axis, keepdim);
}

ad_tensor *ad_mean(ad_tape *t, ad_tensor *x, int axis, int keepdim)
{
    return reduce(t, AD_OP_MEAN, x, axis, keepdim);
}

/* ---- softmax and log-softmax ------------------------------------------------------- */

/*
 * Forward, max-shifted: m = max_k x_k, s = sum_k e^(x_k - m);
 * softmax y_k = e^(x_k - m) / s, log-softmax y_k = x_k - m - log s.
 * Backward, with g = dL/dy:
 *   softmax:     dx_k = y_k (g_k - sum_j g_j y_j)
 *   log-softmax: dx_k = g_k - e^(y_k) sum_j g_j
 */
#define DEFINE_SOFTMAX(T, EXP, LOG)                                                    \
    static void softmax_fwd_##T(span sp, const T *x, T *y, int logsm)                  \
    {                                                                                  \
        for (size_t o = 0; o < sp.outer; o++)                                          \
            for (size_t i = 0; i < sp.inner; i++) {                                    \
                const T *xr = x + o * sp.len * sp.inner + i;                           \
                T *yr = y + o * sp.len * sp.inner + i;                                 \
                T m = xr[0], s = 0;                                                    \
                for (size_t k = 1; k < sp.len; k++)                                    \
                    if (xr[k * sp.inner] > m) m = xr[k * sp.inner];                    \
                for (size_t k = 0; k < sp.len; k++) s += EXP(xr[k * sp.inner] - m);    \
                T ls = LOG(s);                                                         \
                for (size_t k = 0; k < sp.len; k++) {                                  \
                    T z = xr[k * sp.inner] - m;                                        \
                    yr[k * sp.inner] = logsm ? z - ls : EXP(z) / s;                    \
                }                                                                      \
            }                                                                          \
    }                                                                                  \
    static void softmax_bwd_##T(span sp, const T *y, const T *g, T *gx, int logsm)     \
    {                                                                                  \
        for (size_t o = 0; o < sp.outer; o++)                                          \
            for (size_t i = 0; i < sp.inner; i++) {                                    \
                size_t base = o * sp.len * sp.inner + i;                               \
                T dot = 0;                                                             \
                for (size_t k = 0; k < sp.len; k++) {                                  \
                    size_t j = base + k * sp.inner;                                    \
                    dot += logsm ? g[j] : g[j] * y[j];                                 \
                }                                                                      \
                for (size_t k = 0; k < sp.len; k++) {                                  \
                    size_t j = base + k * sp.inner;                                    \
                    gx[j] += logsm ? g[j] - EXP(y[j]) * dot : y[j] * (g[j] - dot);     \
                }                                                                      \
            }                                                                          \
    }

/* cppcheck takes s = 0 into LOG(s): s holds exp(0) = 1 from the maximum. */
// cppcheck-suppress invalidFunctionArg
DEFINE_SOFTMAX(float, expf, logf)
// cppcheck-suppress invalidFunctionArg
DEFINE_SOFTMAX(double, exp, log)

static ad_status softmax_fwd(ad_tape *t, ad_node *n)
{
    (void)t;
    span sp = span_of(n->in[0]->shape, n->a.axis);
    int logsm = n->op == AD_OP_LOG_SOFTMAX;
    if (sp.len == 0) return AD_OK;
    if (n->out->dtype == AD_F32)
        softmax_fwd_float(sp, n->in[0]->data, n->out->data, logsm);
    else
        softmax_fwd_double(sp, n->in[0]->data, n->out->data, logsm);
    return AD_OK;
}

static void softmax_bwd(ad_tape *t, ad_node *n)
{
    void *gx = ad__grad(t, n->in[0]);
    if (!gx) return;
    span sp = span_of(n->in[0]->shape, n->a.axis);
    int logsm = n->op == AD_OP_LOG_SOFTMAX;
    if (n->out->dtype == AD_F32)
        softmax_bwd_float(sp, n->out->data, n->out->grad, gx, logsm);
    else
        softmax_bwd_double(sp, n->out->data, n->out->grad, gx, logsm);
}

/*
 * Forward mode, with p = softmax(x) along the axis and d the tangent of x:
 *   softmax:     dy_k = p_k (d_k - sum_j p_j d_j)
 *   log-softmax: dy_k = d_k - sum_j p_j d_j, p_j = e^(y_j)
 */
#define DEFINE_SOFTMAX_JVP(T, EXP)                                                     \
    static void softmax_jvp_##T(span sp, const T *y, const T *d, T *dy, int logsm)     \
    {                                                                                  \
        for (size_t o = 0; o < sp.outer; o++)                                          \
            for (size_t i = 0; i < sp.inner; i++) {                                    \
                size_t base = o * sp.len * sp.inner + i;                               \
                T mix = 0;                                                             \
                for (size_t k = 0; k < sp.len; k++) {                                  \
                    size_t j = base + k * sp.inner;                                    \
                    mix += (logsm ? EXP(y[j]) : y[j]) * d[j];                          \
                }                                                                      \
                for (size_t k = 0; k < sp.len; k++) {                                  \
                    size_t j = base + k * sp.inner;                                    \
                    dy[j] = logsm ? d[j] - mix : y[j] * (d[j] - mix);                  \
                }                                                                      \
            }                                                                          \
    }
DEFINE_SOFTMAX_JVP(float, expf)
DEFINE_SOFTMAX_JVP(double, exp)

static ad_status softmax_jvp(ad_tape *t, ad_node *n)
{
    span sp = span_of(n->in[0]->shape, n->a.axis);
    size_t len = n->out->numel, es = ad__dtype_size(n->out->dtype);
    const char *d = ad__tan(t, n->in[0]);
    char *dy = ad__tan_new(t, n);
    if (!dy) return ad_tape_status(t);
    int logsm = n->op == AD_OP_LOG_SOFTMAX;
    for (size_t k = 0; k < (size_t)ad__tan_k(t) && sp.len; k++) {
        if (n->out->dtype == AD_F32)
            softmax_jvp_float(sp, n->out->data, (const float *)(const void *)(d + k * len * es),
                              (float *)(void *)(dy + k * len * es), logsm);
        else
            softmax_jvp_double(sp, n->out->data, (const double *)(const void *)(d + k * len * es),
                               (double *)(void *)(dy + k * len * es), logsm);
    }
    return AD_OK;
}
ad_status ad__softmax_jvp(ad_tape *t, ad_node *n) { return softmax_jvp(t, n); }
ad_status ad__log_softmax_jvp(ad_tape *t, ad_node *n) { return softmax_jvp(t, n); }

ad_status ad__softmax_fwd(ad_tape *t, ad_node *n) { return softmax_fwd(t, n); }
void ad__softmax_bwd(ad_tape *t, ad_node *n) { softmax_bwd(t, n); }
ad_status ad__log_softmax_fwd(ad_tape *t, ad_node *n) { return softmax_fwd(t, n); }
void ad__log_softmax_bwd(ad_tape *t, ad_node *n) { softmax_bwd(t, n); }

ad_tensor *ad_softmax(ad_tape *t, ad_tensor *x, int axis)
{
    ad__args args = {0};
    args.axis = axis;
    return ad__record(t, AD_OP_SOFTMAX, &x, 1, &args);
}

ad_tensor *ad_log_softmax(ad_tape *t, ad_tensor *x, int axis)
{
    ad__args args = {0};
    args.axis = axis;
    return ad__record(t, AD_OP_LOG_SOFTMAX, &x, 1, &args);
}
