/**
 * @file
 * checkpoint.h - crash-safe training checkpoints.
 *
 * One binary file holds a model's named parameters, the optimizer's state,
 * and the training state (step counter, RNG, schedule). The format
 * (docs/formats.md) has a bounded header, a CRC-32 per section and one over
 * the whole file. Saving is atomic (temporary file, fsync, rename, fsync of
 * the folder): a crash during a save leaves the previous checkpoint intact.
 * Loading validates everything before touching anything: a failed load
 * leaves the model, the optimizer and the training state unchanged.
 *
 *     nn_train_state ts = {.step = step, .rng = rng, .has_rng = 1};
 *     nn_checkpoint_save("run.ckpt", ps, opt, &ts, &err);
 *     ...
 *     if (nn_checkpoint_load("run.ckpt", ps, opt, &ts, &err) != AD_OK)
 *         fprintf(stderr, "%s\n", err.msg);   // e.g. names or shapes that differ
 */
#ifndef UNROLL_NN_CHECKPOINT_H
#define UNROLL_NN_CHECKPOINT_H

#include <stdint.h>

#include "optim.h"
#include "params.h"

#ifdef __cplusplus
extern "C" {
#endif

/** The checkpoint format version this library writes and reads. */
#define NN_CHECKPOINT_VERSION 1

/** Training state saved with a checkpoint. */
typedef struct nn_train_state {
    int64_t step;         /**< the training loop's step counter */
    ad_rng rng;           /**< e.g. the data-sampling RNG */
    nn_schedule schedule; /**< the learning-rate schedule */
    /**@{*/
    /** 1 when `rng` / `schedule` hold state to save (or were loaded). */
    int has_rng, has_schedule;
    /**@}*/
} nn_train_state;

/**
 * Saves the parameters of `ps`, the state of `opt` (may be NULL; it must be
 * the optimizer of `ps`) and `ts` (may be NULL) to `path` atomically. What a
 * load would refuse is not written: AD_ERR_ARG for an optimizer of another
 * set or values out of range (see nn_checkpoint_load()), AD_ERR_STATE for a
 * set that grew after its optimizer was made. Errors also: AD_ERR_NULL,
 * AD_ERR_IO, AD_ERR_NOMEM.
 */
NN_API ad_status nn_checkpoint_save(const char *path, nn_params *ps, const nn_optim *opt,
                             const nn_train_state *ts, ad_error *err);

/**
 * Loads a checkpoint into `ps` (names, dtypes and shapes must match the
 * file's exactly, in any order: AD_ERR_MISMATCH listing the differences with
 * both shapes), `opt` (may be NULL; the optimizer of `ps`, else AD_ERR_ARG;
 * its kind and size must match, and the file must hold optimizer state,
 * which is restored parameter by parameter by name) and `ts` (may be NULL).
 * Corrupt or truncated files, and values out of range (a learning rate that
 * is not finite and >= 0, non-finite or negative-square optimizer state,
 * step counts beyond 2^53, an even RNG increment, an unusable schedule), are
 * AD_ERR_FORMAT; nothing is changed on any error. Allocation is bounded by
 * the file's size.
 */
NN_API ad_status nn_checkpoint_load(const char *path, nn_params *ps, nn_optim *opt, nn_train_state *ts,
                             ad_error *err);

/** What a checkpoint holds besides the parameters (nn_checkpoint_read_params()). */
typedef struct nn_checkpoint_info {
    int version;           /**< the format version (NN_CHECKPOINT_VERSION) */
    uint64_t file_bytes;   /**< the file's size; every checksum in it was verified */
    size_t n_params;       /**< tensors in the parameter section */
    ad_dtype dtype;        /**< their dtype */
    int has_optim;         /**< an optimizer section is present; then: */
    nn_optim_kind optim_kind; /**< its kind */
    double lr;             /**< its learning rate */
    int64_t optim_steps;   /**< updates it had applied */
    int optim_buffers;     /**< state buffers (e.g. 2 for Adam) */
    uint64_t optim_numel;  /**< elements per buffer */
    int has_train;         /**< a training-state section is present; then: */
    nn_train_state train;  /**< its contents */
} nn_checkpoint_info;

/**
 * Reads a checkpoint without knowing its model: a new parameter set with the
 * file's names, shapes and values, in the file's order (free it with
 * nn_params_free()), and, when `info` is not NULL, what else the file holds
 * (see nn_checkpoint_info; the optimizer state itself is not loaded). For
 * tools that inspect or convert checkpoints. Validates like
 * nn_checkpoint_load(): corrupt, truncated or malformed files are
 * AD_ERR_FORMAT, a file that is not readable AD_ERR_IO. Errors also:
 * AD_ERR_NULL, AD_ERR_NOMEM.
 */
NN_API nn_params *nn_checkpoint_read_params(const char *path, nn_checkpoint_info *info, ad_error *err);

#ifdef __cplusplus
}
#endif
#endif
