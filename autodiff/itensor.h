/**
 * @file
 * itensor.h - integer tensors on the host: token ids, class targets, masks.
 *
 * Ops take ids and targets as plain `const int64_t *` (ad_cross_entropy,
 * ad_gather_rows, nn_embedding_forward); an ad_itensor is how such arrays
 * travel to and from files. Whatever the element type it came from ('<i8',
 * '<i4', '|u1', '|b1' in a .npy file), the values are held as int64_t, the
 * one id type of the API; the type is kept so that a save writes the file
 * back as it was. An ad_itensor never goes on a tape and has no gradient.
 *
 *     ad_error err;
 *     ad_itensor *y = ad_npy_load_ints("targets.npy", &err);   // np.int64 [T, B]
 *     if (!y) fprintf(stderr, "%s\n", err.msg);
 *     ad_tensor *loss = ad_cross_entropy(t, logits, ad_itensor_data(y), -100, AD_MEAN);
 *     ...
 *     ad_itensor_free(y);
 */
#ifndef UNROLL_AD_ITENSOR_H
#define UNROLL_AD_ITENSOR_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/** The element type an integer tensor is stored as in a file; in memory it is always int64_t. */
typedef enum ad_itype {
    AD_I64 = 0, /**< '<i8' (np.int64, torch.long): ids and targets */
    AD_I32 = 1, /**< '<i4' (np.int32) */
    AD_U8 = 2,  /**< '|u1' (np.uint8) */
    AD_BOOL = 3 /**< '|b1' (np.bool_): 0 or 1 */
} ad_itype;

/** An integer tensor on the heap; see the top of this header. */
typedef struct ad_itensor ad_itensor;

/** "i64", "i32", "u8" or "bool"; "invalid" for any other value. */
AD_API const char *ad_itype_name(ad_itype type);

/**
 * A new zero-filled integer tensor of `shape` (rank 0 to 4) to be saved as
 * `type`, owned by the caller (free with ad_itensor_free()). Returns NULL and
 * fills err (may be NULL) on an invalid type (AD_ERR_DTYPE), shape
 * (AD_ERR_RANK, AD_ERR_ARG, AD_ERR_OVERFLOW) or AD_ERR_NOMEM.
 */
AD_API ad_itensor *ad_itensor_new(ad_itype type, ad_shape shape, ad_error *err);

/** Frees an integer tensor; NULL is ignored. */
AD_API void ad_itensor_free(ad_itensor *x);

/** The elements, numel int64_t values in row-major order; NULL for NULL. */
AD_API int64_t *ad_itensor_data(ad_itensor *x);

/** The element type the tensor is saved as (AD_I64 for NULL). */
AD_API ad_itype ad_itensor_type(const ad_itensor *x);

/** The shape of `x` (rank 0 for NULL). */
AD_API ad_shape ad_itensor_shape(const ad_itensor *x);

/** Number of elements of `x` (0 for NULL). */
AD_API size_t ad_itensor_numel(const ad_itensor *x);

/**
 * Checks that every element fits the tensor's type (int32 range, 0..255 for
 * u8, 0 or 1 for bool). Returns AD_OK, or AD_ERR_ARG naming the first element
 * that does not fit, or AD_ERR_NULL.
 */
AD_API ad_status ad_itensor_check_range(const ad_itensor *x, ad_error *err);

#ifdef __cplusplus
}
#endif
#endif
