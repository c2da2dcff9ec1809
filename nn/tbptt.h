/**
 * @file
 * tbptt.h - truncated backpropagation through time, TBPTT(k1, k2).
 *
 * Over a long sequence of `steps` steps: every k1 steps, the driver records
 * the last k2 steps on a fresh tape, starting from the state k2 steps back
 * (a constant: carried forward, its gradient not), adds the losses of the k1
 * newest steps, runs backward and calls the caller's update (clip, optimizer
 * step). Segment j covers the new steps [j k1, min((j+1) k1, steps)) and is
 * recorded from step max((j+1) k1 - k2, 0); a last, shorter segment counts
 * back from its nominal end (j+1) k1. k1 = k2 = k is the textbook case: fixed segments of k steps, the
 * last state of one segment starting the next. With k2 > k1, segments
 * overlap and the overlapping steps are recomputed with the current weights.
 *
 *     static ad_tensor *input(ad_tape *t, int64_t step, void *ctx)   // x_step [B, I]
 *     static ad_tensor *loss(ad_tape *t, const nn_state *h, int64_t step, void *ctx)
 *     static ad_status update(int64_t segment, double loss, void *ctx) // nn_optim_step(...)
 *
 *     nn_tbptt_options o = {.k1 = 25, .k2 = 25, .steps = T, .batch = B};
 *     nn_tbptt_run(tape, &cell, ps, &o, input, loss, update, ctx, &err);
 */
#ifndef UNROLL_NN_TBPTT_H
#define UNROLL_NN_TBPTT_H

#include <stdint.h>

#include "cell.h"
#include "params.h"

#ifdef __cplusplus
extern "C" {
#endif

/** The input of step `step` (0-based) on tape t, [batch, I]; NULL on error (tape error set). */
typedef ad_tensor *(*nn_tbptt_input_fn)(ad_tape *t, int64_t step, void *ctx);

/** The scalar loss of step `step` given the state after it; NULL means no loss at this step. */
typedef ad_tensor *(*nn_tbptt_loss_fn)(ad_tape *t, const nn_state *h, int64_t step, void *ctx);

/**
 * Called after each segment's backward with the segment number and its loss
 * (the sum of its steps' losses). Return AD_OK to continue; anything else
 * stops the run with that status.
 */
typedef ad_status (*nn_tbptt_update_fn)(int64_t segment, double loss, void *ctx);

/** Options; k2 >= k1 >= 1. */
typedef struct nn_tbptt_options {
    int k1;        /**< steps between updates */
    int k2;        /**< steps backpropagated through at each update */
    int64_t steps; /**< length of the whole sequence */
    int64_t batch; /**< rows of each input */
    /**@{*/
    /** Initial state values in f64, or NULL for zeros: h0 [batch, nn_cell_output_size()], c0 [batch, H]. */
    const double *h0, *c0;
    /**@}*/
    /**
     * Recompute each segment's steps in backward (an nn_recompute_mode, as
     * nn_unroll_options::recompute; 0: store all): the segment is recorded by
     * nn_unroll() with the loss as its per-step head, so only the states at
     * the schedule's boundaries stay on the tape. The segment's inputs are
     * then all made before its first step, and `loss` runs again (with the
     * same state) when a region is recomputed, so both must be
     * deterministic. The parameters after each update equal the store-all
     * run's up to rounding (tested). AD_ERR_ARG for a value outside the modes.
     */
    int recompute;
    /** NN_RECOMPUTE_SEGMENTS: segments per TBPTT segment (0: ceil(sqrt(k2)); < 0: AD_ERR_ARG). */
    int segments;
    /** NN_RECOMPUTE_SLOTS: checkpoint slots, >= 1 (AD_ERR_ARG otherwise). */
    int slots;
} nn_tbptt_options;

/**
 * Runs TBPTT over the sequence. Before each segment's backward the
 * gradients of `ps` (may be NULL) are zeroed, so `update` sees exactly that
 * segment's gradients. The tape is reset at the start of every segment.
 * Errors: AD_ERR_NULL, AD_ERR_ARG (k1, k2, steps, batch or the recompute
 * options), AD_ERR_NOMEM, the tape's errors (copied to err), and the
 * update's status.
 */
NN_API ad_status nn_tbptt_run(ad_tape *t, const nn_cell *cell, nn_params *ps, const nn_tbptt_options *o,
                       nn_tbptt_input_fn input, nn_tbptt_loss_fn loss, nn_tbptt_update_fn update,
                       void *ctx, ad_error *err);

#ifdef __cplusplus
}
#endif
#endif
