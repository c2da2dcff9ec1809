/**
 * @file
 * npy.h - NumPy .npy files of f32/f64 tensors.
 *
 * Reads and writes format versions 1.0 and 2.0, little-endian, C order,
 * dtypes '<f4' and '<f8', rank 0 to 4. Everything else is refused with a
 * clear error rather than guessed at: big-endian data, Fortran order, other
 * dtypes, malformed or oversized headers, shapes whose size disagrees with
 * the data, truncated or trailing bytes. Memory allocated while loading is
 * bounded by the file's real size. Layout details: docs/formats.md.
 *
 *     ad_error err;
 *     ad_tensor *x = ad_npy_load("weights.npy", &err);
 *     if (!x) fprintf(stderr, "%s\n", err.msg);
 *     ...
 *     ad_npy_save("copy.npy", x, &err);
 *     ad_tensor_free(x);
 */
#ifndef UNROLL_AD_NPY_H
#define UNROLL_AD_NPY_H

#include <stddef.h>

#include "itensor.h"
#include "status.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/** The largest header accepted when reading (NumPy writes far less). */
#define AD_NPY_MAX_HEADER 65536

/**
 * Parses a whole .npy image of `size` bytes into a new heap tensor (free it
 * with ad_tensor_free()). Returns NULL on error, with err (may be NULL) set to
 * AD_ERR_NULL, AD_ERR_FORMAT (not .npy, bad header, Fortran order, big-endian,
 * size mismatch, truncation), AD_ERR_DTYPE (not f4/f8; an integer file says
 * to use ad_npy_read_ints()), AD_ERR_RANK (> 4), AD_ERR_OVERFLOW or AD_ERR_NOMEM.
 */
AD_API ad_tensor *ad_npy_read(const void *data, size_t size, ad_error *err);

/** Loads the .npy file at `path` (see ad_npy_read(); also AD_ERR_IO). */
AD_API ad_tensor *ad_npy_load(const char *path, ad_error *err);

/**
 * Loads the .npy file at `path` into the existing tensor `dst` (a heap tensor
 * or a parameter's value), which must have the file's shape and dtype
 * (AD_ERR_SHAPE / AD_ERR_DTYPE otherwise); a tape tensor whose data was
 * released (ad_tape_release()) is AD_ERR_STATE. On any error dst is unchanged.
 */
AD_API ad_status ad_npy_load_into(const char *path, ad_tensor *dst, ad_error *err);

/**
 * Encodes x as a .npy image (version 1.0, or 2.0 when the header needs it)
 * into a new malloc'd buffer *out of *size bytes.
 */
AD_API ad_status ad_npy_write(const ad_tensor *x, void **out, size_t *size, ad_error *err);

/** Saves x to `path` atomically (see fileio.h). Errors: AD_ERR_NULL, AD_ERR_IO, AD_ERR_NOMEM. */
AD_API ad_status ad_npy_save(const char *path, const ad_tensor *x, ad_error *err);

/**
 * Parses a whole .npy image of '<i8', '<i4', '|u1' or '|b1' elements into a
 * new integer tensor (free it with ad_itensor_free()) whose type records the
 * file's. The rules and errors are those of ad_npy_read(), with AD_ERR_DTYPE
 * for float files and other dtypes, and AD_ERR_FORMAT for a '|b1' byte other
 * than 0 or 1.
 */
AD_API ad_itensor *ad_npy_read_ints(const void *data, size_t size, ad_error *err);

/** Loads the integer .npy file at `path` (see ad_npy_read_ints(); also AD_ERR_IO). */
AD_API ad_itensor *ad_npy_load_ints(const char *path, ad_error *err);

/**
 * Encodes x as a .npy image of its type (ad_itensor_type()) into a new
 * malloc'd buffer *out of *size bytes. A value that does not fit the type is
 * AD_ERR_ARG (see ad_itensor_check_range()); nothing is written then.
 */
AD_API ad_status ad_npy_write_ints(const ad_itensor *x, void **out, size_t *size, ad_error *err);

/** Saves x to `path` atomically. Errors: those of ad_npy_write_ints(), AD_ERR_IO. */
AD_API ad_status ad_npy_save_ints(const char *path, const ad_itensor *x, ad_error *err);

#ifdef __cplusplus
}
#endif
#endif
