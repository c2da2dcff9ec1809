/**
 * @file
 * unroll.h - run a cell over T time steps.
 *
 * One generic unroller for every cell, built-in or custom. Each step calls
 * the cell's step function, which records a fresh temporal copy of every
 * weight it uses, so after backward the per-step gradients dL/dW^(t) are
 * readable (ad_tape_copies()) and the parameters hold their sum. Each step's
 * nodes carry the tape label "<cell name> t=<step>", which anomaly mode and
 * the DOT export show.
 *
 *     nn_state outs[T], last;
 *     nn_unroll_options o = {0};            // zero initial state, all steps valid
 *     if (nn_unroll(t, &cell, xs, T, &o, outs, &last) != AD_OK) ...error on the tape
 *     // many-to-many: outs[k].h is h_k;  many-to-one: last.h
 *
 * Variable-length batches: with `lengths`, row b is valid for steps
 * 0..lengths[b]-1; at padded steps its state is carried unchanged (ad_where),
 * so padded steps change neither the state nor, through it, the loss, and
 * last.h holds each row's state at its own last valid step. Outputs at padded
 * steps repeat the carried state: leave them out of the loss (e.g. with
 * ad_cross_entropy's ignore_index).
 */
#ifndef UNROLL_NN_UNROLL_H
#define UNROLL_NN_UNROLL_H

#include "../autodiff/autodiff.h"
#include "cell.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Recomputation modes of nn_unroll() (nn_unroll_options::recompute). */
typedef enum nn_recompute_mode {
    /** Store all: every step's intermediates stay on the tape (the default). */
    NN_RECOMPUTE_OFF = 0,
    /** Equal checkpointed segments (nn_recompute_plan_segments()): every step runs twice. */
    NN_RECOMPUTE_SEGMENTS = 1,
    /** The binomial (revolve) schedule for nn_unroll_options::slots checkpoint slots
     *  (nn_recompute_plan_slots()), as nested checkpointed segments. */
    NN_RECOMPUTE_SLOTS = 2
} nn_recompute_mode;

/**
 * A per-step head and loss: returns the loss term of step `step` (a tensor
 * of one element, of the state's dtype) computed on tape t from the state h
 * after that step, or NULL after an error on t. Under recomputation it runs
 * inside the step's checkpointed segment (on a scratch tape during backward)
 * and must be deterministic given its arguments and ctx.
 */
typedef ad_tensor *(*nn_step_loss_fn)(ad_tape *t, void *ctx, int step, const nn_state *h);

/**
 * Steps per block of the hoisted input projection when
 * nn_unroll_options::hoist_block is 0: with B = 32 a block is a 2048-row
 * product, as fast per row as one over the whole sequence, while one block's
 * projection and its gradient stay a few MiB however long the sequence.
 */
#define NN_UNROLL_HOIST_BLOCK 64

/** Options of the unrollers; zero-initialise for the defaults. */
typedef struct nn_unroll_options {
    const nn_state *h0;     /**< initial state; NULL: zeros. Per layer for nn_unroll_layers(). */
    const int64_t *lengths; /**< per batch row, in 1..T; NULL: every step valid */
    int reverse;            /**< process t = T-1 down to 0 (a backward direction) */
    /**
     * Built-in cells: compute the input projection of all T steps in one
     * product before the loop (faster for large batches or sequences). The
     * results and gradients equal the step-by-step unroll up to rounding
     * (tested); W_ih and b_ih then have one temporal copy for the whole
     * sequence instead of one per step. Ignored for custom cells.
     */
    int hoist_input;
    /**
     * With hoist_input: the projection is computed per block of this many
     * steps (0: NN_UNROLL_HOIST_BLOCK; T or more: one product for the whole
     * sequence; negative: AD_ERR_ARG). Each block's projection is released
     * once its steps have read it, and in backward each block's gradient is
     * used and released before the next one is written, so no [T B, G H]
     * buffer is kept. W_ih and b_ih get one temporal copy per block. The
     * gradients equal the step-by-step unroll's up to rounding (tested).
     */
    int hoist_block;
    /**
     * With hoist_input, for a built-in Elman cell (NN_CELL_RNN_TANH,
     * NN_CELL_RNN_RELU) or GRU: each block's steps as one ad_rnn_sequence
     * (b_hh added to the block's projection once) or ad_gru_sequence node
     * instead of a product and a gate node per step. For small nets, where recording costs more
     * than the arithmetic. outs[k].h are views of the block's states. W_hh
     * and b_hh get one temporal copy per block, as W_ih and b_ih do, so
     * nn_grad_flow() refuses a run of blocks longer than one step
     * (AD_ERR_MISMATCH: hoist_block = 1 keeps per-step copies). The states
     * and gradients equal the step-by-step unroll's up to rounding (tested).
     * AD_ERR_ARG, naming what is missing, for another cell or a replaced
     * step, without hoist_input, with lengths, reverse (so also in
     * nn_unroll_bidirectional()), recompute or step_loss.
     */
    int fuse_steps;
    /**
     * nn_unroll_layers() and nn_unroll_layers_seq(): dropout with probability
     * `dropout` (in [0, 1)) on the outputs of every layer but the last, as
     * PyTorch's nn.LSTM(dropout=...): inverted scaling (kept elements are
     * multiplied by 1/(1-p)), applied only when `train` is set, drawing from
     * `rng` (required then). Ignored by nn_unroll() and with one layer.
     */
    double dropout;
    /**
     * With dropout: 1 draws one mask per layer for the whole sequence ([B,
     * H], the same at every step: variational or "locked" dropout, after Gal
     * and Ghahramani 2016) instead of a new mask at every step (0).
     */
    int variational;
    int train;   /**< training mode: dropout is applied (0: evaluation, no dropout) */
    ad_rng *rng; /**< the dropout masks' random numbers (train with dropout > 0) */
    /**
     * nn_unroll_seq() and nn_unroll_layers_seq(): the input is [B, T, I] and
     * the output [B, T, H] (PyTorch's batch_first=True) instead of [T, B, I]
     * and [T, B, H].
     */
    int batch_first;
    /**
     * nn_unroll(), nn_unroll_layers() and nn_unroll_bidirectional():
     * recompute the steps in backward instead of keeping their intermediates
     * (an nn_recompute_mode; 0 = store all). The steps are cut by the
     * schedule of nn_recompute_plan.h; every checkpointed segment is one
     * ad_checkpoint() region whose inputs are the carried state (h, c) of
     * every layer and the segment's inputs xs, and whose outputs are the
     * segment's last states, its summed loss (with step_loss) and, only when
     * `outs` is given, every step's state of the top layer (which then stay
     * on the tape: pass outs = NULL and put the head in step_loss to keep
     * nothing of size T). Stacked layers run together in each segment, so
     * only the boundary states of every layer are kept; dropout between them
     * draws the same masks as the store-all unroll (and leaves `rng` in the
     * same state), redrawn in the recomputation. A bidirectional layer
     * recomputes each direction on its own. With hoist_input the input
     * projection is computed per segment inside its region. With lengths
     * the steps are masked exactly as in the store-all unroll (inside the
     * regions; the lengths are copied), and with reverse the schedule runs
     * over the steps in processing order (T-1 down to 0). Gradients equal
     * the store-all unroll's up to rounding (tested), also through
     * nn_unroll_seq() and nn_unroll_layers_seq() (whose output needs every
     * state, so the top layer's states are region outputs there). The
     * cells and step_loss_ctx must stay valid until backward has run (the
     * regions re-run them).
     */
    int recompute;
    /** NN_RECOMPUTE_SEGMENTS: the number of segments (0: ceil(sqrt(T)); above T: T; < 0: AD_ERR_ARG). */
    int segments;
    /** NN_RECOMPUTE_SLOTS: checkpoint slots, >= 1 (AD_ERR_ARG otherwise). */
    int slots;
    /**
     * nn_unroll() and nn_unroll_layers() (the top layer's states), with or
     * without recompute; refused by nn_unroll_bidirectional() (AD_ERR_ARG: a
     * step's output needs both directions). Called after every step
     * (in processing order: T-1 down to 0 with reverse) with the step's
     * state, masked as in outs when lengths are given (padded rows carry
     * their state: leave them out of the term); the terms are summed, in
     * processing order within each segment and then over the segments, into
     * one scalar written to *loss. Requires `loss` (and `loss` requires
     * step_loss: AD_ERR_NULL otherwise).
     */
    nn_step_loss_fn step_loss;
    /** The ctx passed to step_loss. */
    void *step_loss_ctx;
    /** With step_loss: receives the summed loss (a tensor on the tape); NULL otherwise. */
    ad_tensor **loss;
} nn_unroll_options;

/**
 * A learnable initial state: parameters h0 (and c0 for an LSTM) of shape
 * [1, H], broadcast to [batch, H] on tape t, so backward sums dL/dh0 over the
 * batch into them. A NULL parameter gives zeros. Errors: AD_ERR_NULL,
 * AD_ERR_SHAPE (not [1, H]), AD_ERR_EMPTY (batch < 1).
 */
NN_API ad_status nn_initial_state(ad_tape *t, const nn_cell *cell, int64_t batch, ad_param *h0,
                           ad_param *c0, nn_state *out);

/**
 * Runs `cell` over xs[0..T-1] (each [B, I]). Writes the state after each step
 * to outs[t] (outs may be NULL) in time order, also when reversed, and the
 * final state to *last (may be NULL). Returns the tape's status; errors:
 * AD_ERR_NULL, AD_ERR_EMPTY (T < 1), AD_ERR_ARG (a length outside 1..T),
 * AD_ERR_SHAPE / AD_ERR_DTYPE (input or state not matching the cell), and
 * those of the cell's ops.
 */
NN_API ad_status nn_unroll(ad_tape *t, const nn_cell *cell, ad_tensor *const *xs, int T,
                    const nn_unroll_options *opts, nn_state *outs, nn_state *last);

/**
 * Stacked layers: layer 0 reads xs, layer k reads layer k-1's outputs. outs
 * (T entries; required unless recompute or step_loss is set) ends with the
 * top layer's states; lasts (n_layers entries, may be NULL) gets each
 * layer's final state. opts->h0, when given, holds one state per layer.
 * With recompute (or step_loss) every segment runs all layers, and
 * step_loss sees the top layer's state. Errors: those of nn_unroll(),
 * AD_ERR_EMPTY (no layers), AD_ERR_SHAPE (a layer's input size is not the
 * previous layer's output size, checked first with recompute), AD_ERR_ARG /
 * AD_ERR_NULL (dropout outside [0, 1), or training dropout without rng).
 */
NN_API ad_status nn_unroll_layers(ad_tape *t, const nn_cell *cells, int n_layers, ad_tensor *const *xs,
                           int T, const nn_unroll_options *opts, nn_state *outs, nn_state *lasts);

/**
 * A bidirectional layer, as PyTorch's bidirectional=True: `fwd` runs forward
 * into outs_fwd, `bwd` runs reversed into outs_bwd (both T entries), and
 * cat[t] = [h_fwd(t), h_bwd(t)] along the last axis ([B, 2H]). opts->h0, when
 * given, holds two states (forward, backward). With recompute each direction
 * is recomputed on its own (its states are outputs of its regions, as cat
 * needs them); step_loss is refused (AD_ERR_ARG): put the head after the
 * layer, on cat.
 */
NN_API ad_status nn_unroll_bidirectional(ad_tape *t, const nn_cell *fwd, const nn_cell *bwd,
                                  ad_tensor *const *xs, int T, const nn_unroll_options *opts,
                                  nn_state *outs_fwd, nn_state *outs_bwd, ad_tensor **cat);

/* ---- sequence tensors ------------------------------------------------------------------ */

/**
 * nn_unroll() over a sequence tensor, as PyTorch's recurrent modules take it:
 * x is [T, B, I] (or [B, T, I] with opts->batch_first) and *y receives every
 * step's hidden state as one tensor [T, B, H] (or [B, T, H]); *last (may be
 * NULL) the final state. A [T, B, I] input is read through views (no copy);
 * a batch-first one is transposed once. Gradients equal those of nn_unroll()
 * on the same steps as an array (tested). Errors: those of nn_unroll(), and
 * AD_ERR_NULL (x or y NULL), AD_ERR_SHAPE (x not of rank 3, or its last size
 * not the cell's input size), AD_ERR_EMPTY (T = 0), AD_ERR_NOMEM.
 */
NN_API ad_status nn_unroll_seq(ad_tape *t, const nn_cell *cell, ad_tensor *x,
                               const nn_unroll_options *opts, ad_tensor **y, nn_state *last);

/**
 * nn_unroll_layers() over a sequence tensor: x as in nn_unroll_seq(), *y the
 * top layer's states ([T, B, H] or [B, T, H]), lasts (n_layers entries, may
 * be NULL) each layer's final state; dropout between layers as the options
 * say; recompute as in nn_unroll_layers(). Errors: those of
 * nn_unroll_layers() and nn_unroll_seq().
 */
NN_API ad_status nn_unroll_layers_seq(ad_tape *t, const nn_cell *cells, int n_layers, ad_tensor *x,
                                      const nn_unroll_options *opts, ad_tensor **y, nn_state *lasts);

/**
 * Reorders targets given batch-major, as PyTorch code keeps them
 * (targets[b * T + t], the rows of a [B, T] tensor), into time-major order
 * (out[t * B + b]), the row order of a [T, B, H] output reshaped to
 * [T B, H], so that a loss over all T B tokens pairs each output row with
 * its target. A batch-first output reshaped to [B T, H] needs no reordering.
 * Errors: AD_ERR_NULL, AD_ERR_ARG (B or T < 1); `out` must not overlap
 * `targets`.
 */
NN_API ad_status nn_targets_time_major(const int64_t *targets, int64_t B, int64_t T, int64_t *out,
                                       ad_error *err);

#ifdef __cplusplus
}
#endif
#endif
