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
 * Saves the parameters of `ps`, the state of `opt` (may be NULL) and `ts`
 * (may be NULL) to `path` atomically. Errors: AD_ERR_NULL, AD_ERR_IO,
 * AD_ERR_NOMEM.
 */
NN_API ad_status nn_checkpoint_save(const char *path, nn_params *ps, const nn_optim *opt,
                             const nn_train_state *ts, ad_error *err);

/**
 * Loads a checkpoint into `ps` (names, dtypes and shapes must match the
 * file's exactly: AD_ERR_MISMATCH listing the differences), `opt` (may be
 * NULL; its kind and size must match, and the file must hold optimizer
 * state) and `ts` (may be NULL). Corrupt or truncated files are
 * AD_ERR_FORMAT; nothing is changed on any error. Allocation is bounded by
 * the file's size.
 */
NN_API ad_status nn_checkpoint_load(const char *path, nn_params *ps, nn_optim *opt, nn_train_state *ts,
                             ad_error *err);

/** CRC-32 (IEEE 802.3, as zlib's crc32) of `n` bytes, continuing from `crc` (0 to start). */
NN_API uint32_t nn_crc32(uint32_t crc, const void *data, size_t n);

#ifdef __cplusplus
}
#endif
#endif
