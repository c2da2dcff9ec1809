/**
 * @file
 * tensor.h - dense tensors and parameters.
 *
 * A tensor is dense, contiguous and row-major, of rank 0 to AD_MAX_RANK, with
 * elements of type float (AD_F32) or double (AD_F64) chosen at run time.
 * Tensors live in one of two places:
 *   - on a tape (created by ad_zeros(), ad_from_data(), ops, ...): owned by
 *     the tape's arena, valid until ad_tape_reset() or ad_tape_free(), never
 *     freed one by one;
 *   - on the heap (ad_tensor_new(), ad_npy_load()): owned by the caller and
 *     released with ad_tensor_free(). Ops do not take heap tensors directly;
 *     copy one onto a tape with ad_constant().
 *
 * A parameter (ad_param) owns persistent storage and a gradient buffer outside
 * any tape; ad_use() puts a temporal copy of it on a tape.
 *
 *     ad_error err;
 *     ad_param *w = ad_param_new("W", AD_F64, ad_shape2(3, 3), &err);
 *     double *wv = ad_tensor_f64(ad_param_value(w));
 *     wv[0] = 0.5;
 *     ...                       // use it on tapes, run backward
 *     double *g = ad_tensor_f64(ad_param_grad(w));
 *     ad_param_free(w);
 */
#ifndef UNROLL_AD_TENSOR_H
#define UNROLL_AD_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

/** The largest rank a tensor can have. */
#define AD_MAX_RANK 4

/** The longest parameter name, including the terminating NUL. */
#define AD_NAME_SIZE 64

/** Element type of a tensor. */
typedef enum ad_dtype {
    AD_F32 = 0, /**< float: what training uses */
    AD_F64 = 1  /**< double: what gradient checks use */
} ad_dtype;

/** A shape: `rank` sizes in `dim[0..rank-1]`; the rest are ignored. */
typedef struct ad_shape {
    /** The number of axes, 0..AD_MAX_RANK. */
    int rank;
    /** The size of each axis, outermost first. */
    int64_t dim[AD_MAX_RANK];
} ad_shape;

/** A tensor; see the top of this header for where tensors live. */
typedef struct ad_tensor ad_tensor;

/** A named parameter: persistent values and gradient, outside any tape. */
typedef struct ad_param ad_param;

/** The shape of a scalar (rank 0, one element). */
static inline ad_shape ad_shape0(void) { ad_shape s = {0, {0, 0, 0, 0}}; return s; }
/** A rank-1 shape [a]. */
static inline ad_shape ad_shape1(int64_t a) { ad_shape s = {1, {a, 0, 0, 0}}; return s; }
/** A rank-2 shape [a, b]. */
static inline ad_shape ad_shape2(int64_t a, int64_t b) { ad_shape s = {2, {a, b, 0, 0}}; return s; }
/** A rank-3 shape [a, b, c]. */
static inline ad_shape ad_shape3(int64_t a, int64_t b, int64_t c)
{
    ad_shape s = {3, {a, b, c, 0}};
    return s;
}
/** A rank-4 shape [a, b, c, d]. */
static inline ad_shape ad_shape4(int64_t a, int64_t b, int64_t c, int64_t d)
{
    ad_shape s = {4, {a, b, c, d}};
    return s;
}

/**
 * Number of elements of `s` written to `*numel`. Returns AD_ERR_RANK for a
 * rank outside 0..4, AD_ERR_ARG for a negative size and AD_ERR_OVERFLOW when
 * the product or its size in bytes (as double) does not fit in size_t.
 */
AD_API ad_status ad_shape_numel(ad_shape s, size_t *numel);

/** 1 when `a` and `b` have the same rank and sizes, else 0. */
AD_API int ad_shape_equal(ad_shape a, ad_shape b);

/** Writes `s` as "[2,3]" into `buf` (always NUL-terminated); returns `buf`. */
AD_API char *ad_shape_format(ad_shape s, char *buf, size_t size);

/** Size in bytes of one element of `dtype` (4 or 8); 0 for an invalid dtype. */
AD_API size_t ad_dtype_size(ad_dtype dtype);

/** "f32" or "f64"; "invalid" otherwise. */
AD_API const char *ad_dtype_name(ad_dtype dtype);

/**
 * A new zero-filled heap tensor owned by the caller (free with
 * ad_tensor_free()). Returns NULL and fills `err` (may be NULL) on an invalid
 * dtype (AD_ERR_DTYPE), shape (AD_ERR_RANK, AD_ERR_ARG, AD_ERR_OVERFLOW) or
 * allocation failure (AD_ERR_NOMEM). Zero-size shapes are allowed.
 */
AD_API ad_tensor *ad_tensor_new(ad_dtype dtype, ad_shape shape, ad_error *err);

/** Frees a heap tensor; does nothing for NULL, tape tensors and parameter views. */
AD_API void ad_tensor_free(ad_tensor *x);

/** The dtype of `x` (AD_F32 for NULL). */
AD_API ad_dtype ad_tensor_dtype(const ad_tensor *x);

/** The shape of `x` (rank 0 for NULL). */
AD_API ad_shape ad_tensor_shape(const ad_tensor *x);

/** The rank of `x` (0 for NULL). */
AD_API int ad_tensor_rank(const ad_tensor *x);

/** Size of axis `axis` of `x`; negative axes count from the end; 0 when out of range. */
AD_API int64_t ad_tensor_dim(const ad_tensor *x, int axis);

/** Number of elements of `x` (0 for NULL). */
AD_API size_t ad_tensor_numel(const ad_tensor *x);

/** The element buffer of an f32 tensor; NULL for NULL or an f64 tensor. */
AD_API float *ad_tensor_f32(ad_tensor *x);

/** The element buffer of an f64 tensor; NULL for NULL or an f32 tensor. */
AD_API double *ad_tensor_f64(ad_tensor *x);

/** The element buffer, whatever the dtype; NULL for NULL. */
AD_API void *ad_tensor_data(ad_tensor *x);

/**
 * The gradient of an f32 tape tensor from the latest ad_backward() on its
 * tape, or NULL when it received none (or is NULL, or f64). For a temporal
 * copy (ad_use()) this is that copy's own gradient dL/dW^(t). When the
 * tape's mode dropped the gradient (a copy on a tape whose copy_grads is not
 * KEEP, an intermediate gradient released by release_grads) it returns NULL
 * and sets AD_ERR_STATE on the tape with a message naming the mode.
 */
AD_API float *ad_tensor_grad_f32(ad_tensor *x);

/** As ad_tensor_grad_f32() for f64 tensors. */
AD_API double *ad_tensor_grad_f64(ad_tensor *x);

/**
 * Writes ||dL/dx|| (Euclidean, over every element; NaN and Inf propagate) of
 * the latest ad_backward() to `*norm`: from the gradient buffer when there is
 * one, from the norm backward recorded when the tape's mode dropped the
 * buffer (copy_grads = NORMS, release_grads), 0 when no gradient reached x.
 * A parameter's value view (ad_param_value()) reads the parameter's
 * accumulated gradient. Errors (in `err`,
 * the tape is left alone): AD_ERR_NULL, AD_ERR_STATE for a copy on a tape
 * with copy_grads = NONE, which records nothing per copy.
 */
AD_API ad_status ad_tensor_grad_norm(const ad_tensor *x, double *norm, ad_error *err);

/** Element `i` (flat, row-major) of `x` as a double; NaN for NULL or i out of range. */
AD_API double ad_tensor_get(const ad_tensor *x, size_t i);

/**
 * Element `i` of the gradient of `x` (see ad_tensor_grad_f32()); NaN when
 * there is none, and then also AD_ERR_STATE on the tape when its mode
 * dropped the gradient (as ad_tensor_grad_f32()).
 */
AD_API double ad_tensor_grad_get(const ad_tensor *x, size_t i);

/** The single element of a one-element tensor as double (the loss); NaN otherwise. */
AD_API double ad_tensor_item(const ad_tensor *x);

/**
 * A new parameter named `name` (at most AD_NAME_SIZE-1 bytes) with
 * zero-filled values and gradient in storage it owns. Returns NULL and fills
 * `err` on a NULL or too long name (AD_ERR_NULL, AD_ERR_ARG), invalid dtype
 * or shape, or allocation failure. Free with ad_param_free().
 */
AD_API ad_param *ad_param_new(const char *name, ad_dtype dtype, ad_shape shape, ad_error *err);

/**
 * A parameter whose values and gradient live in caller storage `data` and
 * `grad` (each numel elements of `dtype`; both required). The caller keeps
 * ownership of the storage, which must outlive the parameter; this is how a
 * model keeps all its parameters in one contiguous block.
 */
AD_API ad_param *ad_param_view(const char *name, ad_dtype dtype, ad_shape shape, void *data,
                        void *grad, ad_error *err);

/**
 * Points a view parameter (ad_param_view()) at new storage, keeping the
 * parameter itself, so a model can grow or move its one parameter block
 * while cells keep their ad_param pointers. Tapes must not hold temporal
 * copies of p across the call. Errors: AD_ERR_NULL, AD_ERR_STATE (p owns its
 * storage).
 */
AD_API ad_status ad_param_rebind(ad_param *p, void *data, void *grad, ad_error *err);

/** Frees a parameter (and its storage unless it is a view); NULL is ignored. */
AD_API void ad_param_free(ad_param *p);

/** The parameter's values as a heap tensor view owned by the parameter (do not free). */
AD_API ad_tensor *ad_param_value(ad_param *p);

/** The parameter's accumulated gradient as a tensor view owned by the parameter. */
AD_API ad_tensor *ad_param_grad(ad_param *p);

/** The parameter's name ("" for NULL). */
AD_API const char *ad_param_name(const ad_param *p);

/** Sets the accumulated gradient to zero; gradients add up across backward calls until then. */
AD_API void ad_param_zero_grad(ad_param *p);

#ifdef __cplusplus
}
#endif
#endif
