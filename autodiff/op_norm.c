/*
 * op_norm.c - layer normalisation over the last axis.
 *
 * Each row x of length N (the last axis) becomes y = (x - mu) r with
 * mu = sum_k x_k / N, v = sum_k (x_k - mu)^2 / N (the biased variance, as
 * PyTorch's layer_norm) and r = 1 / sqrt(v + eps). The affine part
 * (gamma y + beta) is ordinary broadcasting ops (nn_layer_norm_forward).
 */
#include <math.h>

#include "internal.h"

ad_status ad__shape_layer_norm(ad_tape *t, ad_node *n, ad_shape *out)
{
    ad_shape in = n->in[0]->shape;
    char s[AD__SHAPE_BUF];
    if (in.rank < 1 || in.dim[in.rank - 1] < 1)
        return ad_tape_fail(t, AD_ERR_SHAPE, "layer_norm: %s has no last axis to normalise", ad__shape_str(in, s));
    if (!(n->a.scalar > 0.0 && isfinite(n->a.scalar)))
        return ad_tape_fail(t, AD_ERR_ARG, "layer_norm: eps = %g must be positive and finite", n->a.scalar);
    *out = in;
    return AD_OK;
}

/*
 * saved: r of every row, in the tensor's dtype. With g = dL/dy, backward is
 *   dx_k = r (g_k - mean_j g_j - y_k mean_j g_j y_j),
 * from dy_k/dx_j = r (delta_kj - 1/N - y_k y_j / N).
 */
#define DEFINE_LAYER_NORM(T, SQRT)                                                     \
    static void layer_norm_fwd_##T(size_t rows, size_t len, const T *x, T *y, T *r,    \
                                   double eps)                                         \
    {                                                                                  \
        for (size_t o = 0; o < rows; o++) {                                            \
            const T *xr = x + o * len;                                                 \
            T *yr = y + o * len;                                                       \
            T mu = 0, v = 0;                                                           \
            for (size_t k = 0; k < len; k++) mu += xr[k];                              \
            mu /= (T)len;                                                              \
            for (size_t k = 0; k < len; k++) v += (xr[k] - mu) * (xr[k] - mu);         \
            r[o] = 1 / SQRT(v / (T)len + (T)eps);                                      \
            for (size_t k = 0; k < len; k++) yr[k] = (xr[k] - mu) * r[o];              \
        }                                                                              \
    }                                                                                  \
    static void layer_norm_bwd_##T(size_t rows, size_t len, const T *y, const T *r,    \
                                   const T *g, T *gx)                                  \
    {                                                                                  \
        for (size_t o = 0; o < rows; o++) {                                            \
            const T *yr = y + o * len, *gr = g + o * len;                              \
            T *gxr = gx + o * len;                                                     \
            T mg = 0, mgy = 0;                                                         \
            for (size_t k = 0; k < len; k++) {                                         \
                mg += gr[k];                                                           \
                mgy += gr[k] * yr[k];                                                  \
            }                                                                          \
            mg /= (T)len;                                                              \
            mgy /= (T)len;                                                             \
            for (size_t k = 0; k < len; k++) gxr[k] += r[o] * (gr[k] - mg - yr[k] * mgy); \
        }                                                                              \
    }

DEFINE_LAYER_NORM(float, sqrtf)
DEFINE_LAYER_NORM(double, sqrt)

/*
 * Forward mode: y = (x - mu) r with r = 1/sqrt(var + eps) gives, for a
 * tangent d of x, dy_k = r (d_k - mean_j d_j) - y_k mean_j (y_j r d_j)
 * = r (d_k - mean d - y_k mean(y d)).
 */
#define DEFINE_LAYER_NORM_JVP(T)                                                       \
    static void layer_norm_jvp_##T(size_t rows, size_t len, const T *y, const T *r,    \
                                   const T *d, T *dy)                                  \
    {                                                                                  \
        for (size_t o = 0; o < rows; o++) {                                            \
            const T *yr = y + o * len, *dr = d + o * len;                              \
            T md = 0, myd = 0;                                                         \
            for (size_t k = 0; k < len; k++) {                                         \
                md += dr[k];                                                           \
                myd += yr[k] * dr[k];                                                  \
            }                                                                          \
            md /= (T)len;                                                              \
            myd /= (T)len;                                                             \
            for (size_t k = 0; k < len; k++) dy[o * len + k] = r[o] * (dr[k] - md - yr[k] * myd); \
        }                                                                              \
    }
DEFINE_LAYER_NORM_JVP(float)
DEFINE_LAYER_NORM_JVP(double)

static size_t last_len(const ad_tensor *x) { return (size_t)x->shape.dim[x->shape.rank - 1]; }

ad_status ad__layer_norm_fwd(ad_tape *t, ad_node *n)
{
    size_t len = last_len(n->in[0]), rows = n->out->numel / len;
    n->saved = ad__saved_array(t, n, rows ? rows : 1, ad__dtype_size(n->out->dtype));
    if (!n->saved) return ad_tape_status(t);
    if (n->out->dtype == AD_F32)
        layer_norm_fwd_float(rows, len, n->in[0]->data, n->out->data, n->saved, n->a.scalar);
    else
        layer_norm_fwd_double(rows, len, n->in[0]->data, n->out->data, n->saved, n->a.scalar);
    return AD_OK;
}

void ad__layer_norm_bwd(ad_tape *t, ad_node *n)
{
    void *gx = ad__grad(t, n->in[0]);
    if (!gx) return;
    size_t len = last_len(n->in[0]), rows = n->out->numel / len;
    if (n->out->dtype == AD_F32)
        layer_norm_bwd_float(rows, len, n->out->data, n->saved, n->out->grad, gx);
    else
        layer_norm_bwd_double(rows, len, n->out->data, n->saved, n->out->grad, gx);
}

ad_status ad__layer_norm_jvp(ad_tape *t, ad_node *n)
{
    size_t len = last_len(n->in[0]), rows = len ? n->in[0]->numel / len : 0;
    size_t all = n->out->numel, es = ad__dtype_size(n->out->dtype);
    if (!n->saved) return ad__jvp_need_saved(t, n);
    const char *d = ad__tan(t, n->in[0]);
    char *dy = ad__tan_new(t, n);
    if (!dy) return ad_tape_status(t);
    for (size_t k = 0; k < (size_t)ad__tan_k(t); k++) {
        if (n->out->dtype == AD_F32)
            layer_norm_jvp_float(rows, len, n->out->data, n->saved,
                                 (const float *)(const void *)(d + k * all * es), (float *)(void *)(dy + k * all * es));
        else
            layer_norm_jvp_double(rows, len, n->out->data, n->saved,
                                  (const double *)(const void *)(d + k * all * es),
                                  (double *)(void *)(dy + k * all * es));
    }
    return AD_OK;
}

ad_tensor *ad_layer_norm(ad_tape *t, ad_tensor *x, double eps)
{
    ad__args args = {0};
    args.scalar = eps;
    return ad__record(t, AD_OP_LAYER_NORM, &x, 1, &args);
}
