/**
 * @file
 * status.h - result codes shared by every unroll function.
 *
 * Functions that work on a tape record the first error on the tape (see
 * ad_tape_status()); functions outside a tape return an ad_status and, when
 * given a non-NULL ad_error, fill it with a message naming what went wrong.
 *
 *     ad_error err;
 *     ad_tensor *x = ad_npy_load("x.npy", &err);
 *     if (!x) fprintf(stderr, "%s: %s\n", ad_status_name(err.code), err.msg);
 *
 * The list below is the single source of the codes: the enum, the name and
 * description functions and docs/errors.md are all generated from or checked
 * against it.
 */
#ifndef UNROLL_AD_STATUS_H
#define UNROLL_AD_STATUS_H

#include "export.h"
#include <unroll/version.h>

#ifdef __cplusplus
extern "C" {
#endif

/**
 * The result codes as rows X(code, value, description): the one list that
 * the ad_status enum, ad_status_name(), ad_status_str() and docs/errors.md
 * come from or are checked against.
 */
#define AD_STATUS_LIST(X)                                                          \
    X(AD_OK, 0, "success")                                                         \
    X(AD_ERR_NULL, 1, "a required argument was NULL")                             \
    X(AD_ERR_SHAPE, 2, "tensor shapes do not fit the operation")                  \
    X(AD_ERR_DTYPE, 3, "tensor dtypes are wrong or do not match")                 \
    X(AD_ERR_RANK, 4, "rank outside 0..4")                                        \
    X(AD_ERR_EMPTY, 5, "an empty tensor, sequence or list where data is needed") \
    X(AD_ERR_FOREIGN, 6, "a tensor belongs to another tape")                      \
    X(AD_ERR_NOMEM, 7, "memory allocation failed")                                \
    X(AD_ERR_OVERFLOW, 8, "a size computation overflowed")                        \
    X(AD_ERR_ARG, 9, "an argument is out of its valid range")                     \
    X(AD_ERR_NOT_SCALAR, 10, "backward from a non-scalar without an upstream gradient") \
    X(AD_ERR_NONFINITE, 11, "a NaN or infinite value was produced or refused")   \
    X(AD_ERR_IO, 12, "a file could not be opened, read or written")               \
    X(AD_ERR_FORMAT, 13, "a file is corrupt, truncated or of an unsupported format") \
    X(AD_ERR_NOT_FOUND, 14, "a named item does not exist")                        \
    X(AD_ERR_DUPLICATE, 15, "a name is already in use")                           \
    X(AD_ERR_STATE, 16, "the object is not in a state that allows the call")      \
    X(AD_ERR_MISMATCH, 17, "values disagree beyond the tolerance")                \
    X(AD_ERR_COMM, 18, "a communication (MPI) call failed")

/** Result code of an unroll call; AD_OK (0) is success. */
typedef enum ad_status {
#define AD__STATUS_ENUM(code, value, desc) code = value,
    AD_STATUS_LIST(AD__STATUS_ENUM)
#undef AD__STATUS_ENUM
    /** The number of codes (one past the largest value); not a code itself. */
    AD_STATUS_COUNT
} ad_status;

/** Capacity of ad_error.msg, including the terminating NUL. */
#define AD_ERROR_MSG_SIZE 256

/**
 * An error report filled by functions that are not tied to a tape. `code`
 * repeats the returned status; `msg` is a NUL-terminated sentence naming the
 * function and the offending values (empty on success).
 */
typedef struct ad_error {
    /** The status the call returned. */
    ad_status code;
    /** What went wrong, NUL-terminated; empty on success. */
    char msg[AD_ERROR_MSG_SIZE];
} ad_error;

/** The identifier of a code, such as "AD_ERR_SHAPE"; "AD_UNKNOWN" for values outside the list. */
AD_API const char *ad_status_name(ad_status s);

/** A one-line description of a code, as listed in docs/errors.md. */
AD_API const char *ad_status_str(ad_status s);

/**
 * The version of the library actually linked, such as "0.2.0"; equal to
 * UNROLL_VERSION_STRING of the headers it was built with (unroll/version.h).
 */
AD_API const char *ad_version(void);

/**
 * The linked library's version as major * 10000 + minor * 100 + patch, to
 * compare with UNROLL_VERSION_NUMBER of the headers a program was compiled
 * against.
 */
AD_API int ad_version_number(void);

/**
 * Fills `err` (may be NULL) with `code` and a printf-style message (fmt may
 * be NULL for none) and returns `code`. For code built on the library that
 * reports errors the way the library does.
 */
AD_API ad_status ad_error_set(ad_error *err, ad_status code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

#ifdef __cplusplus
}
#endif
#endif
