/**
 * @file
 * layers.h - feed-forward layers: Linear, Embedding and LayerNorm, with PyTorch's
 * parameter names, shapes and default initialisation.
 *
 *     nn_linear head;
 *     nn_linear_create(&head, ps, "fc", H, V, 1, &err);   // fc.weight [V, H], fc.bias [V]
 *     ad_tensor *logits = nn_linear_forward(t, &head, h);  // h [B, H] -> [B, V]
 *
 *     nn_embedding emb;
 *     nn_embedding_create(&emb, ps, "emb", V, D, &err);    // emb.weight [V, D]
 *     ad_tensor *x = nn_embedding_forward(t, &emb, ids, B); // [B, D]
 */
#ifndef UNROLL_NN_LAYERS_H
#define UNROLL_NN_LAYERS_H

#include "../autodiff/autodiff.h"
#include "params.h"

#ifdef __cplusplus
extern "C" {
#endif

/** y = x W^T + b with W [out, in], b [out] (NULL without bias). */
typedef struct nn_linear {
    /**@{*/
    /** W [out, in] and b [out] (NULL without bias). */
    ad_param *weight, *bias;
    /**@}*/
    /**@{*/
    /** The sizes in and out. */
    int in_features, out_features;
    /**@}*/
} nn_linear;

/** Registers "<prefix>.weight" (and "<prefix>.bias" when bias != 0). Errors: AD_ERR_NULL, AD_ERR_ARG, those of nn_params_add. */
NN_API ad_status nn_linear_create(nn_linear *lin, nn_params *ps, const char *prefix, int in_features,
                           int out_features, int bias, ad_error *err);

/** PyTorch's default: weight and bias uniform(-1/sqrt(in), 1/sqrt(in)). */
NN_API void nn_linear_init_pytorch(nn_linear *lin, ad_rng *rng);

/** x [B, in] -> [B, out]; a temporal copy of each weight per call. Shape errors name the layer. */
NN_API ad_tensor *nn_linear_forward(ad_tape *t, const nn_linear *lin, ad_tensor *x);

/** A lookup table of `num` rows of size `dim`: weight [num, dim]. */
typedef struct nn_embedding {
    /** The table [num, dim]. */
    ad_param *weight;
    /**@{*/
    /** The number of rows and the size of each. */
    int num, dim;
    /**@}*/
} nn_embedding;

/** Registers "<prefix>.weight" [num, dim]. */
NN_API ad_status nn_embedding_create(nn_embedding *e, nn_params *ps, const char *prefix, int num, int dim,
                              ad_error *err);

/** PyTorch's default: normal(0, 1). */
NN_API void nn_embedding_init_pytorch(nn_embedding *e, ad_rng *rng);

/** Rows ids[0..n-1] of the table -> [n, dim]; backward scatter-adds into the rows. */
NN_API ad_tensor *nn_embedding_forward(ad_tape *t, const nn_embedding *e, const int64_t *ids, int64_t n);

/**
 * Layer normalisation over the last axis with a learnable gain and bias, as
 * PyTorch's nn.LayerNorm(size, eps): y = ad_layer_norm(x, eps) * weight + bias.
 */
typedef struct nn_layer_norm {
    /**@{*/
    /** The gain and bias, [size] each; NULL without the affine part. */
    ad_param *weight, *bias;
    /**@}*/
    int size;   /**< the length of the normalised last axis */
    double eps; /**< added to the variance */
} nn_layer_norm;

/**
 * Registers "<prefix>.weight" and "<prefix>.bias" ([size] each, initialised
 * to 1 and 0 as PyTorch does) when `affine` is set (PyTorch's
 * elementwise_affine). eps must be positive (PyTorch's default: 1e-5).
 * Errors: AD_ERR_NULL, AD_ERR_ARG (size < 1, eps), those of nn_params_add.
 */
NN_API ad_status nn_layer_norm_create(nn_layer_norm *ln, nn_params *ps, const char *prefix, int size,
                                      double eps, int affine, ad_error *err);

/** x [..., size] -> the same shape; a temporal copy of the gain and bias per call. */
NN_API ad_tensor *nn_layer_norm_forward(ad_tape *t, const nn_layer_norm *ln, ad_tensor *x);

#ifdef __cplusplus
}
#endif
#endif
