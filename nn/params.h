/**
 * @file
 * params.h - a model's named parameter set.
 *
 * Parameters are registered by name ("rnn.weight_hh_l0"), iterated in
 * registration order, and looked up by name in O(1). All values live in one
 * contiguous block and all gradients in another, so optimizers and clipping
 * run one flat loop over nn_params_values() / nn_params_grads(), and
 * checkpoints save the set by name.
 *
 *     nn_params *ps = nn_params_new(AD_F64, &err);
 *     ad_param *w = nn_params_add(ps, "lin.weight", ad_shape2(3, 4), &err);
 *     ad_rng rng;
 *     ad_rng_seed(&rng, 42, 0);
 *     nn_params_init_uniform(ps, &rng, -0.5, 0.5);
 *     ...
 *     nn_params_free(ps);   // frees every parameter it holds
 *
 * Register every parameter before recording tapes that use them: adding one
 * may move the blocks (the ad_param pointers stay valid).
 */
#ifndef UNROLL_NN_PARAMS_H
#define UNROLL_NN_PARAMS_H

#include <stddef.h>

#include "../autodiff/autodiff.h"

#ifdef __cplusplus
extern "C" {
#endif

/** A named parameter set of one dtype. */
typedef struct nn_params nn_params;

/** An empty set whose parameters will have `dtype`. NULL and err filled on failure. */
NN_API nn_params *nn_params_new(ad_dtype dtype, ad_error *err);

/** Frees the set and every parameter in it; NULL is ignored. */
NN_API void nn_params_free(nn_params *ps);

/**
 * Registers a zero-filled parameter `name` of `shape`. Returns NULL with err
 * set on AD_ERR_NULL, AD_ERR_DUPLICATE (name taken), AD_ERR_ARG (name too
 * long), an invalid shape, or AD_ERR_NOMEM (the set is unchanged then).
 */
NN_API ad_param *nn_params_add(nn_params *ps, const char *name, ad_shape shape, ad_error *err);

/** The parameter called `name`, or NULL. */
NN_API ad_param *nn_params_get(const nn_params *ps, const char *name);

/**
 * The parameter called `name`, which must have `shape`: AD_ERR_NOT_FOUND or
 * AD_ERR_SHAPE (message with both shapes) otherwise.
 */
NN_API ad_param *nn_params_find(const nn_params *ps, const char *name, ad_shape shape, ad_error *err);

/** Number of parameters. */
NN_API size_t nn_params_count(const nn_params *ps);

/** The i-th parameter in registration order, or NULL past the end. */
NN_API ad_param *nn_params_at(const nn_params *ps, size_t i);

/** The dtype of the set. */
NN_API ad_dtype nn_params_dtype(const nn_params *ps);

/** All values, one block of *numel elements (float or double), in registration order. */
NN_API void *nn_params_values(nn_params *ps, size_t *numel);

/** All gradients, laid out as nn_params_values(). */
NN_API void *nn_params_grads(nn_params *ps, size_t *numel);

/**
 * A replica of `ps` for data-parallel training: the same parameters (names,
 * shapes, order) reading ps's values, with gradient buffers of its own, so
 * that several tapes can run forward and backward at the same time, one
 * replica each (such as a shard of the batch per ad_parallel_run() task), and
 * their gradients are then summed into ps with nn_params_accumulate_grads()
 * in a fixed order. Register every parameter of ps first: adding one moves
 * ps's storage and leaves the replica stale (its values follow ps's new
 * storage, but accumulation refuses with AD_ERR_STATE). A replica takes no
 * parameters of its own (nn_params_add is AD_ERR_STATE), is freed with
 * nn_params_free() before ps (one freed after may only be freed), and may
 * not be replicated (AD_ERR_ARG). Errors: AD_ERR_NULL, AD_ERR_ARG, AD_ERR_NOMEM.
 */
NN_API nn_params *nn_params_replica(nn_params *ps, ad_error *err);

/**
 * Adds the gradients of `replica` (made by nn_params_replica(dst)) into
 * dst's: one flat loop (split over the threads of ad_set_num_threads() for
 * a large set, with the same results). Errors: AD_ERR_NULL, AD_ERR_ARG (not
 * a replica of dst), AD_ERR_STATE (dst grew since the replica was made).
 */
NN_API ad_status nn_params_accumulate_grads(nn_params *dst, const nn_params *replica, ad_error *err);

/** Zeroes every gradient (split over the threads as nn_params_accumulate_grads()). */
NN_API void nn_params_zero_grad(nn_params *ps);

/** Fills every parameter with uniform draws from [lo, hi) in registration order. */
NN_API void nn_params_init_uniform(nn_params *ps, ad_rng *rng, double lo, double hi);

/** Fills one parameter with uniform draws from [lo, hi). */
NN_API void nn_init_uniform(ad_param *p, ad_rng *rng, double lo, double hi);

/** Fills one parameter with normal draws of mean 0 and deviation `std`. */
NN_API void nn_init_normal(ad_param *p, ad_rng *rng, double std);

/**
 * Xavier/Glorot uniform for a [fan_out, fan_in] weight: bound
 * sqrt(6 / (fan_in + fan_out)). Rank-2 parameters only (others are left alone).
 */
NN_API void nn_init_xavier_uniform(ad_param *p, ad_rng *rng);

/**
 * Loads every parameter from `<dir>/<name>.npy` (a PyTorch state dict saved
 * with numpy.save per entry), converting f32 and f64. Everything is read and
 * checked first; on any error (missing file, shape mismatch, corrupt file, an
 * f64 value too large for an f32 set: AD_ERR_NONFINITE) no parameter is
 * changed. Names holding '/', '\\' or ".." are AD_ERR_ARG (they could reach
 * outside the folder). Errors name the parameter.
 */
NN_API ad_status nn_params_load_npy_dir(nn_params *ps, const char *dir, ad_error *err);

/**
 * Saves every parameter to `<dir>/<name>.npy` (each file written atomically).
 * Names holding '/', '\\' or ".." are AD_ERR_ARG, before anything is written.
 */
NN_API ad_status nn_params_save_npy_dir(const nn_params *ps, const char *dir, ad_error *err);

/* ---- another dtype (nn/convert.c) ------------------------------------------------------ */

/**
 * A new set with src's names and shapes, in registration order, holding its
 * values converted to `dtype` (gradients zero): e.g. an f64 copy of a model
 * trained in f32, for ad_gradcheck(), which needs f64. Free with
 * nn_params_free(). Errors: AD_ERR_NULL, AD_ERR_DTYPE, AD_ERR_NOMEM, and
 * AD_ERR_NONFINITE when an f64 value is beyond f32's range.
 */
NN_API nn_params *nn_params_clone(const nn_params *src, ad_dtype dtype, ad_error *err);

/**
 * Copies every value of src into dst by name, converting between f32 and
 * f64 (rounding to nearest). The sets must hold the same names with the
 * same shapes (in any order): AD_ERR_NOT_FOUND, AD_ERR_SHAPE (naming both
 * shapes) or AD_ERR_MISMATCH (a different count) otherwise, and
 * AD_ERR_NONFINITE for a finite f64 value beyond f32's range; on any error
 * nothing is changed. Errors also: AD_ERR_NULL.
 */
NN_API ad_status nn_params_copy_values(nn_params *dst, const nn_params *src, ad_error *err);

#ifdef __cplusplus
}
#endif
#endif
