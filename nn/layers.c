/*
 * layers.c - Linear, Embedding and LayerNorm.
 */
#include "layers.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* Registers "<prefix>.<what>". */
static ad_param *add(nn_params *ps, const char *prefix, const char *what, ad_shape s, ad_error *err)
{
    char name[AD_NAME_SIZE];
    int n = snprintf(name, sizeof name, "%s.%s", prefix, what);
    if (n < 0 || n >= (int)sizeof name) {
        ad_error_set(err, AD_ERR_ARG, "layer: parameter name too long");
        return NULL;
    }
    return nn_params_add(ps, name, s, err);
}

ad_status nn_linear_create(nn_linear *lin, nn_params *ps, const char *prefix, int in_features,
                           int out_features, int bias, ad_error *err)
{
    if (!lin || !ps || !prefix) return ad_error_set(err, AD_ERR_NULL, "linear_create: an argument is NULL");
    if (in_features < 1 || out_features < 1)
        return ad_error_set(err, AD_ERR_ARG, "linear_create: sizes must be >= 1");
    memset(lin, 0, sizeof *lin);
    lin->in_features = in_features;
    lin->out_features = out_features;
    lin->weight = add(ps, prefix, "weight", ad_shape2(out_features, in_features), err);
    if (!lin->weight) return err ? err->code : AD_ERR_ARG;
    if (bias) {
        lin->bias = add(ps, prefix, "bias", ad_shape1(out_features), err);
        if (!lin->bias) return err ? err->code : AD_ERR_ARG;
    }
    return ad_error_set(err, AD_OK, NULL);
}

void nn_linear_init_pytorch(nn_linear *lin, ad_rng *rng)
{
    if (!lin || !rng) return;
    double k = 1.0 / sqrt((double)lin->in_features);
    nn_init_uniform(lin->weight, rng, -k, k);
    if (lin->bias) nn_init_uniform(lin->bias, rng, -k, k);
}

ad_tensor *nn_linear_forward(ad_tape *t, const nn_linear *lin, ad_tensor *x)
{
    if (!t) return NULL;
    if (!lin || !lin->weight) {
        ad_tape_fail(t, AD_ERR_NULL, "linear: layer is NULL");
        return NULL;
    }
    if (x && (ad_tensor_rank(x) != 2 || ad_tensor_dim(x, 1) != lin->in_features)) {
        ad_tape_fail(t, AD_ERR_SHAPE, "linear %s: input must be [B, %d], got rank %d with %lld columns",
                     ad_param_name(lin->weight), lin->in_features, ad_tensor_rank(x),
                     (long long)(ad_tensor_rank(x) >= 2 ? ad_tensor_dim(x, 1) : -1));
        return NULL;
    }
    ad_tensor *w = ad_use(t, lin->weight);
    if (!lin->bias) return ad_matmul(t, x, w, AD_TRANS_B);
    ad_tensor *b = ad_use(t, lin->bias); /* after w: copies are numbered in order of use */
    return ad_addmm(t, b, x, w, AD_TRANS_B);
}

ad_status nn_embedding_create(nn_embedding *e, nn_params *ps, const char *prefix, int num, int dim,
                              ad_error *err)
{
    if (!e || !ps || !prefix) return ad_error_set(err, AD_ERR_NULL, "embedding_create: an argument is NULL");
    if (num < 1 || dim < 1) return ad_error_set(err, AD_ERR_ARG, "embedding_create: sizes must be >= 1");
    e->num = num;
    e->dim = dim;
    e->weight = add(ps, prefix, "weight", ad_shape2(num, dim), err);
    return e->weight ? ad_error_set(err, AD_OK, NULL) : (err ? err->code : AD_ERR_ARG);
}

void nn_embedding_init_pytorch(nn_embedding *e, ad_rng *rng)
{
    if (e && rng) nn_init_normal(e->weight, rng, 1.0);
}

ad_tensor *nn_embedding_forward(ad_tape *t, const nn_embedding *e, const int64_t *ids, int64_t n)
{
    if (!t) return NULL;
    if (!e || !e->weight) {
        ad_tape_fail(t, AD_ERR_NULL, "embedding: layer is NULL");
        return NULL;
    }
    return ad_gather_rows(t, ad_use(t, e->weight), ids, n);
}

ad_status nn_layer_norm_create(nn_layer_norm *ln, nn_params *ps, const char *prefix, int size, double eps,
                               int affine, ad_error *err)
{
    if (!ln || (affine && (!ps || !prefix)))
        return ad_error_set(err, AD_ERR_NULL, "layer_norm_create: an argument is NULL");
    if (size < 1) return ad_error_set(err, AD_ERR_ARG, "layer_norm_create: size %d must be >= 1", size);
    if (!(eps > 0.0 && isfinite(eps)))
        return ad_error_set(err, AD_ERR_ARG, "layer_norm_create: eps = %g must be positive and finite", eps);
    memset(ln, 0, sizeof *ln);
    ln->size = size;
    ln->eps = eps;
    if (!affine) return ad_error_set(err, AD_OK, NULL);
    ln->weight = add(ps, prefix, "weight", ad_shape1(size), err);
    if (!ln->weight) return err ? err->code : AD_ERR_ARG;
    ln->bias = add(ps, prefix, "bias", ad_shape1(size), err);
    if (!ln->bias) return err ? err->code : AD_ERR_ARG;
    ad_tensor *w = ad_param_value(ln->weight);
    for (int i = 0; i < size; i++) { /* PyTorch's reset_parameters: ones and zeros */
        if (ad_tensor_dtype(w) == AD_F32) ad_tensor_f32(w)[i] = 1.0f;
        else ad_tensor_f64(w)[i] = 1.0;
    }
    return ad_error_set(err, AD_OK, NULL);
}

ad_tensor *nn_layer_norm_forward(ad_tape *t, const nn_layer_norm *ln, ad_tensor *x)
{
    if (!t) return NULL;
    if (!ln) {
        ad_tape_fail(t, AD_ERR_NULL, "layer_norm: layer is NULL");
        return NULL;
    }
    if (x && (ad_tensor_rank(x) < 1 || ad_tensor_dim(x, -1) != ln->size)) {
        ad_tape_fail(t, AD_ERR_SHAPE, "layer_norm: the last axis must be %d, got rank %d with %lld", ln->size,
                     ad_tensor_rank(x), (long long)(ad_tensor_rank(x) >= 1 ? ad_tensor_dim(x, -1) : -1));
        return NULL;
    }
    ad_tensor *y = ad_layer_norm(t, x, ln->eps);
    if (!ln->weight) return y;
    return ad_add(t, ad_mul(t, y, ad_use(t, ln->weight)), ad_use(t, ln->bias));
}
