/**
 * @file
 * state_dict.h - loading weights by name like PyTorch's load_state_dict().
 *
 * The source is a .safetensors file or a folder of `<key>.npy` files (a state
 * dict saved with numpy.save per entry). Each file key is mapped to a model
 * name (strip and add a prefix, or the caller's rename function), matched
 * with the parameter set, and everything is checked before any value
 * changes: the report lists the model's parameters the file lacks
 * (missing), the file's keys the model lacks (unexpected) and the entries
 * whose shape (both shapes given) or kind differs. Shape differences are
 * always an error; missing and unexpected keys are one only with `strict`.
 *
 *     nn_load_options o = {.strict = 1, .strip_prefix = "module."};
 *     nn_load_report rep;
 *     if (nn_params_load_state_dict(ps, "model.safetensors", &o, &rep, &err) != AD_OK)
 *         fprintf(stderr, "%s\n", err.msg);        // nothing was changed
 *     for (size_t i = 0; i < rep.n_missing; i++) printf("missing %s\n", rep.missing[i]);
 *     nn_load_report_free(&rep);
 */
#ifndef UNROLL_NN_STATE_DICT_H
#define UNROLL_NN_STATE_DICT_H

#include <stddef.h>

#include "../autodiff/autodiff.h"
#include "params.h"

#ifdef __cplusplus
extern "C" {
#endif

/**
 * Maps a file key to a model name: writes the name (NUL-terminated, at most
 * cap bytes) into `name` and returns 1, or returns 0 to leave the key out
 * (neither loaded nor reported, e.g. "num_batches_tracked").
 */
typedef int (*nn_rename_fn)(const char *key, char *name, size_t cap, void *ctx);

/** How file keys become model names; zero-initialise for "as they are", not strict. */
typedef struct nn_load_options {
    const char *strip_prefix; /**< removed from keys that start with it (others are kept as they are) */
    const char *add_prefix;   /**< then put in front of every key */
    nn_rename_fn rename;      /**< when set, used instead of the two prefixes */
    void *rename_ctx;         /**< passed to rename */
    int strict;               /**< 1: missing or unexpected keys are an error (AD_ERR_MISMATCH) */
} nn_load_options;

/** An entry whose shape, or kind (integers for a float parameter), differs. */
typedef struct nn_load_mismatch {
    char *name;             /**< the model name */
    ad_shape file_shape;    /**< the entry's shape in the file */
    ad_shape model_shape;   /**< the parameter's shape */
    int file_is_int;        /**< the file holds integers there */
} nn_load_mismatch;

/** What a load found; free the lists with nn_load_report_free(). */
typedef struct nn_load_report {
    size_t n_loaded;        /**< parameters written (0 when the load failed) */
    char **missing;         /**< model names the file lacks, in registration order */
    size_t n_missing;       /**< entries of missing */
    char **unexpected;      /**< file keys (as in the file) that match no parameter */
    size_t n_unexpected;    /**< entries of unexpected */
    nn_load_mismatch *mismatched; /**< entries whose shape or kind differs */
    size_t n_mismatched;    /**< entries of mismatched */
} nn_load_report;

/**
 * Loads `path` (a directory: its *.npy files; otherwise a safetensors file)
 * into the matching parameters of `ps`, converting f32/f64 (and BF16/F16)
 * to the set's dtype. Fills *report (may be NULL) whatever the outcome.
 * Errors, with nothing changed: AD_ERR_NULL, AD_ERR_SHAPE / AD_ERR_DTYPE (a
 * mismatched entry), AD_ERR_MISMATCH (strict, and keys missing or
 * unexpected; the message names the first few), AD_ERR_DUPLICATE (two keys
 * mapped to one name), AD_ERR_ARG (a mapped name too long), AD_ERR_NOMEM,
 * and the file's own errors (AD_ERR_IO, AD_ERR_FORMAT, ...).
 */
NN_API ad_status nn_params_load_state_dict(nn_params *ps, const char *path, const nn_load_options *opts,
                                           nn_load_report *report, ad_error *err);

/** Frees the lists of a report and zeroes it; NULL is ignored. */
NN_API void nn_load_report_free(nn_load_report *report);

#ifdef __cplusplus
}
#endif
#endif
