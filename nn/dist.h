/**
 * @file
 * dist.h - data-parallel training over MPI (built with UNROLL_WITH_MPI=ON).
 *
 * Every rank holds the whole model and trains on its own slice of each
 * global batch. Rank 0's parameters (and optimizer state) are broadcast once
 * at the start; after each backward, nn_dist_average_grads() replaces every
 * rank's gradients with their average over the ranks, so every rank applies
 * the same update and the replicas never drift apart. The average is
 * computed in a fixed order (rank 0's block, then rank 1's, ...), so a job
 * run twice gives bit-identical weights, every rank holds the same bits, and
 * N ranks match one rank on the whole batch to rounding.
 *
 *     nn_dist *d = nn_dist_new(NULL, &err);           // MPI_COMM_WORLD, MPI already initialised
 *     nn_dist_check_params(d, ps, &err);              // same names and shapes everywhere
 *     nn_dist_broadcast_params(d, ps, &err);          // rank 0's initial weights
 *     int64_t b0, nb;
 *     nn_dist_shard(d, B, &b0, &nb, &err);            // this rank's rows [b0, b0 + nb)
 *     for (...) {
 *         ...forward on rows b0.., ad_backward...
 *         st = nn_dist_agree(d, st, &err);            // every rank learns of any failure
 *         if (st == AD_OK) st = nn_dist_average_grads(d, ps, &err);
 *         if (st == AD_OK) st = nn_optim_step(opt, &err);
 *         if (nn_dist_rank(d) == 0) nn_checkpoint_save(...);
 *     }
 *     nn_dist_free(d);
 *
 * Only nn/dist.c calls MPI. MPI errors come back as AD_ERR_COMM with MPI's
 * error string; nothing calls MPI_Abort.
 */
#ifndef UNROLL_NN_DIST_H
#define UNROLL_NN_DIST_H

#include <stddef.h>
#include <stdint.h>

#include "optim.h"
#include "params.h"

#ifdef __cplusplus
extern "C" {
#endif

/** A data-parallel context: a communicator of its own (a duplicate of the caller's). */
typedef struct nn_dist nn_dist;

/** Options for nn_dist_new(); a zero-filled struct (or NULL) means defaults. */
typedef struct nn_dist_options {
    /**
     * A pointer to the MPI_Comm to train over (MPI_Comm is a handle type, so
     * pass `&comm`); NULL means MPI_COMM_WORLD. The context works on a
     * duplicate, so its messages never mix with the caller's.
     */
    const void *comm;
    /**
     * 1: call MPI_Init when MPI is not initialised yet, and MPI_Finalize in
     * nn_dist_free(). 0 (the default): the caller initialises and finalises
     * MPI, and nn_dist_new() fails with AD_ERR_STATE if it has not.
     */
    int init;
} nn_dist_options;

/**
 * A new context over opts->comm (see nn_dist_options). Errors: AD_ERR_STATE
 * (MPI not initialised and opts->init is 0, or already finalised),
 * AD_ERR_COMM (an MPI call failed), AD_ERR_NOMEM. Collective: every rank of
 * the communicator must call it.
 */
NN_API nn_dist *nn_dist_new(const nn_dist_options *opts, ad_error *err);

/** Frees the context (and finalises MPI if nn_dist_new() initialised it); NULL is ignored. Collective. */
NN_API void nn_dist_free(nn_dist *d);

/** This process's rank, 0..size-1 (0 for NULL). */
NN_API int nn_dist_rank(const nn_dist *d);

/** The number of ranks (1 for NULL). */
NN_API int nn_dist_size(const nn_dist *d);

/**
 * Checks that every rank has the same parameter set: the same dtype, names,
 * shapes and order (a checksum of them is exchanged). On a mismatch every
 * rank returns AD_ERR_MISMATCH with a message naming the first rank that
 * differs from rank 0. Errors also: AD_ERR_NULL, AD_ERR_COMM. Collective.
 */
NN_API ad_status nn_dist_check_params(nn_dist *d, const nn_params *ps, ad_error *err);

/**
 * Copies rank 0's parameter values to every rank (one broadcast of the flat
 * value block). Run nn_dist_check_params() first: the sets must match.
 * Errors: AD_ERR_NULL, AD_ERR_COMM. Collective.
 */
NN_API ad_status nn_dist_broadcast_params(nn_dist *d, nn_params *ps, ad_error *err);

/**
 * Copies rank 0's optimizer state (its step count and every state buffer,
 * e.g. Adam's moments) to every rank. The optimizers must be of the same
 * kind over matching parameter sets (AD_ERR_MISMATCH otherwise, on every
 * rank). Errors also: AD_ERR_NULL, AD_ERR_COMM. Collective.
 */
NN_API ad_status nn_dist_broadcast_optim(nn_dist *d, nn_optim *opt, ad_error *err);

/**
 * Replaces every rank's gradients with their mean over the ranks,
 * g = (g_0 + g_1 + ... + g_{N-1}) / N, summed in rank order on every rank,
 * so every rank holds the same bits and a repeated run gives the same
 * result. With each rank's loss the mean over its equal share of the global
 * batch, this is the gradient of the mean loss over the whole batch. Cost:
 * one all-to-all and one all-gather of the flat gradient block (each rank
 * sends and receives about 2 (N-1)/N of it, as a ring all-reduce does).
 * Errors: AD_ERR_NULL, AD_ERR_NOMEM, AD_ERR_COMM. Collective.
 */
NN_API ad_status nn_dist_average_grads(nn_dist *d, nn_params *ps, ad_error *err);

/**
 * Replaces values[0..n-1] (a loss, metrics) with their mean over the ranks,
 * summed in rank order, identical on every rank. Errors: AD_ERR_NULL
 * (values NULL with n > 0), AD_ERR_NOMEM, AD_ERR_COMM. Collective.
 */
NN_API ad_status nn_dist_average(nn_dist *d, double *values, size_t n, ad_error *err);

/**
 * Agrees on a status: every rank passes its own, and every rank gets AD_OK
 * when all passed AD_OK, else the status of the lowest failing rank, with
 * a message naming that rank (the failing rank's own message is passed on
 * when `err` held one). Call it once per step, before any collective that
 * a failed rank would not reach, so that one rank's failure (a bad data
 * file, out of memory) ends the step on every rank instead of hanging.
 * Errors also: AD_ERR_NULL (d), AD_ERR_COMM. Collective.
 */
NN_API ad_status nn_dist_agree(nn_dist *d, ad_status local, ad_error *err);

/**
 * This rank's share of a global batch of `global` rows: rows
 * [*begin, *begin + *count) with count = global / size, in rank order, so
 * the global batch does not depend on the number of ranks. Errors:
 * AD_ERR_NULL, AD_ERR_ARG (global < 1, or not divisible by the number of
 * ranks: the message gives both).
 */
NN_API ad_status nn_dist_shard(const nn_dist *d, int64_t global, int64_t *begin, int64_t *count,
                               ad_error *err);

#ifdef __cplusplus
}
#endif
#endif
