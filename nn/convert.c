/*
 * convert.c - a model in another dtype: an f64 copy of a parameter set for
 * gradient checks of a model trained in f32, values copied back and forth
 * by name, and cells re-pointed at the copy's parameters.
 */
#include <float.h>
#include <math.h>
#include <stdio.h>

#include "cell.h"
#include "params.h"

static double value_at(ad_tensor *v, size_t i)
{
    return ad_tensor_dtype(v) == AD_F32 ? (double)ad_tensor_f32(v)[i] : ad_tensor_f64(v)[i];
}

/* Checks that every parameter of dst has a same-shaped one in src and that
 * the two sets have the same names; nothing is changed. */
static ad_status check_same_layout(nn_params *dst, const nn_params *src, ad_error *err)
{
    const char *fn = "nn_params_copy_values";
    for (size_t i = 0; i < nn_params_count(dst); i++) {
        ad_param *d = nn_params_at(dst, i), *s = nn_params_get(src, ad_param_name(d));
        if (!s) return ad_error_set(err, AD_ERR_NOT_FOUND, "%s: '%s' is not in the source set", fn, ad_param_name(d));
        ad_shape ds = ad_tensor_shape(ad_param_value(d)), ss = ad_tensor_shape(ad_param_value(s));
        if (!ad_shape_equal(ds, ss)) {
            char a[64], b[64];
            return ad_error_set(err, AD_ERR_SHAPE, "%s: '%s' is %s here and %s in the source", fn,
                                ad_param_name(d), ad_shape_format(ds, a, sizeof a), ad_shape_format(ss, b, sizeof b));
        }
    }
    if (nn_params_count(src) != nn_params_count(dst))
        return ad_error_set(err, AD_ERR_MISMATCH, "%s: the source has %zu parameters, the destination %zu", fn,
                            nn_params_count(src), nn_params_count(dst));
    return AD_OK;
}

ad_status nn_params_copy_values(nn_params *dst, const nn_params *src, ad_error *err)
{
    if (!dst || !src) return ad_error_set(err, AD_ERR_NULL, "nn_params_copy_values: %s is NULL", !dst ? "dst" : "src");
    ad_status st = check_same_layout(dst, src, err);
    if (st != AD_OK) return st;
    int to_f32 = nn_params_dtype(dst) == AD_F32;
    if (to_f32) /* refuse, before anything changes, what f32 cannot hold */
        for (size_t i = 0; i < nn_params_count(dst); i++) {
            ad_param *d = nn_params_at(dst, i);
            ad_tensor *sv = ad_param_value(nn_params_get(src, ad_param_name(d)));
            for (size_t k = 0; k < ad_tensor_numel(sv); k++) {
                double v = value_at(sv, k);
                if (isfinite(v) && fabs(v) > FLT_MAX)
                    return ad_error_set(err, AD_ERR_NONFINITE, "nn_params_copy_values: '%s'[%zu] = %g is beyond f32's range",
                                        ad_param_name(d), k, v);
            }
        }
    for (size_t i = 0; i < nn_params_count(dst); i++) {
        ad_param *d = nn_params_at(dst, i);
        ad_tensor *dv = ad_param_value(d), *sv = ad_param_value(nn_params_get(src, ad_param_name(d)));
        for (size_t k = 0; k < ad_tensor_numel(dv); k++) {
            double v = value_at(sv, k);
            if (to_f32) ad_tensor_f32(dv)[k] = (float)v;
            else ad_tensor_f64(dv)[k] = v;
        }
    }
    return ad_error_set(err, AD_OK, NULL);
}

nn_params *nn_params_clone(const nn_params *src, ad_dtype dtype, ad_error *err)
{
    if (!src) {
        ad_error_set(err, AD_ERR_NULL, "nn_params_clone: src is NULL");
        return NULL;
    }
    nn_params *ps = nn_params_new(dtype, err);
    if (!ps) return NULL;
    for (size_t i = 0; i < nn_params_count(src); i++) {
        ad_param *s = nn_params_at(src, i);
        if (!nn_params_add(ps, ad_param_name(s), ad_tensor_shape(ad_param_value(s)), err)) {
            nn_params_free(ps);
            return NULL;
        }
    }
    if (nn_params_copy_values(ps, src, err) != AD_OK) {
        nn_params_free(ps);
        return NULL;
    }
    return ps;
}

ad_status nn_cell_rebind(const nn_cell *src, nn_params *ps, nn_cell *dst, ad_error *err)
{
    if (!src || !ps || !dst)
        return ad_error_set(err, AD_ERR_NULL, "nn_cell_rebind: %s is NULL", !src ? "src" : !ps ? "ps" : "dst");
    if (src->params)
        return ad_error_set(err, AD_ERR_ARG,
                            "nn_cell_rebind: %s has an external parameter list (params); rebind its entries "
                            "with nn_params_get() into a list of your own", src->name);
    if (src->n_w < 0 || src->n_w > NN_CELL_MAX_PARAMS)
        return ad_error_set(err, AD_ERR_ARG, "nn_cell_rebind: n_w = %d is outside 0..%d", src->n_w, NN_CELL_MAX_PARAMS);
    nn_cell c = *src;
    for (int i = 0; i < src->n_w; i++) {
        const char *name = src->w[i] ? ad_param_name(src->w[i]) : NULL;
        c.w[i] = name ? nn_params_get(ps, name) : NULL;
        if (!c.w[i])
            return ad_error_set(err, AD_ERR_NOT_FOUND, "nn_cell_rebind: %s's weight '%s' is not in the set",
                                src->name, name ? name : "(NULL)");
    }
    *dst = c;
    return ad_error_set(err, AD_OK, NULL);
}
