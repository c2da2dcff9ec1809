/**
 * @file
 * textbook.h - the two textbook models built with engine ops, exactly as
 * bptt_ref.h writes them, and the checker that compares the engine's
 * gradients with the hand-derived reference.
 *
 * The checker is a tool for anyone deriving gradients by hand: it runs both
 * and reports, per weight, the element where they differ most.
 *
 *     nn_check_report rep;
 *     nn_check_case1(W_i, W_h, W_o, x, T, y, &rep, &err);
 *     nn_check_print(&rep, stdout);   // max |engine - reference| = ...
 */
#ifndef UNROLL_NN_TEXTBOOK_H
#define UNROLL_NN_TEXTBOOK_H

#include <stdio.h>

#include "../autodiff/autodiff.h"
#include "bptt_ref.h"
#include "cell.h"

#ifdef __cplusplus
extern "C" {
#endif

/**
 * Case 1 on tape t: x [T, V] one-hot rows (f64 data, copied), label y.
 * W_i [V, H], W_h [H, H], W_o [H, 1]; every step uses fresh temporal copies
 * of W_i and W_h. *y_hat (y_hat may be NULL) receives the prediction
 * yhat = sigmoid(O_T W_o), a [1, 1] tensor on t (NULL on error). Returns the
 * scalar BCE loss or NULL (tape error).
 */
NN_API ad_tensor *nn_case1_loss(ad_tape *t, ad_param *W_i, ad_param *W_h, ad_param *W_o, const double *x,
                         int T, double y, ad_tensor **y_hat);

/**
 * Case 2 parameters: W_xh [H, V], W_hh [H, H], W_hy [V, H], b_h [H, 1], b_y [V, 1].
 * b_h and b_y may be NULL: the model then has no such bias.
 */
typedef struct nn_case2_params {
    /**@{*/
    /** The parameters, of the shapes above. */
    ad_param *W_xh, *W_hh, *W_hy, *b_h, *b_y;
    /**@}*/
} nn_case2_params;

/**
 * Case 2 on tape t in column form, the loss summed over the T steps.
 * h0 ([H, 1] on t, e.g. an ad_variable to read dL/dh0) may be NULL (zeros);
 * *h_last (may be NULL) receives the last state. b_h, b_y may be NULL (no
 * bias). inputs and targets must lie in 0..V-1 (AD_ERR_ARG otherwise).
 * Returns the loss or NULL.
 */
NN_API ad_tensor *nn_case2_loss(ad_tape *t, const nn_case2_params *p, const int64_t *inputs,
                         const int64_t *targets, int T, ad_tensor *h0, ad_tensor **h_last);

/**
 * Case 2 as a custom cell, for the unrollers and the truncated-BPTT driver
 * (nn_tbptt_run()): the step is the column form of nn_case2_loss(),
 * h_t = tanh(W_xh x_t + W_hh h_{t-1} + b_h), on a batch of one: x [1, V]
 * (a one-hot row) and h [1, H] are read as the columns [V, 1] and [H, 1].
 * The cell's parameters are W_xh, W_hh and b_h (when not NULL); p must
 * outlive the cell. Pair it with nn_case2_step_loss(). Errors: AD_ERR_NULL,
 * AD_ERR_DTYPE (W_xh not f32/f64 alike), AD_ERR_SHAPE (weights that do not
 * fit together). A step with a batch other than 1 fails with AD_ERR_SHAPE.
 */
NN_API ad_status nn_case2_cell(const nn_case2_params *p, nn_cell *cell, ad_error *err);

/**
 * The loss of one case-2 step from the cell's state h ([1, H], as
 * nn_case2_cell() gives it): -log softmax(W_hy h + b_y)[target], exactly the
 * term nn_case2_loss() adds at each step. Returns NULL on a tape error
 * (AD_ERR_NULL, AD_ERR_ARG for a target outside 0..V-1, AD_ERR_SHAPE).
 */
NN_API ad_tensor *nn_case2_step_loss(ad_tape *t, const nn_case2_params *p, const nn_state *h, int64_t target);

/** One weight's worst disagreement between engine and reference. */
typedef struct nn_check_entry {
    /** The weight's name ("W_h", ..., or "h0"). */
    char name[AD_NAME_SIZE];
    size_t worst_index; /**< flat index of the worst element */
    /**@{*/
    /** The engine's and the reference's gradient at the worst element. */
    double engine, reference;
    /**@}*/
    /**@{*/
    /** |engine - reference| there, and that divided by |reference| (guarded against 0). */
    double abs_err, rel_err;
    /**@}*/
} nn_check_entry;

/** The checker's result. */
typedef struct nn_check_report {
    /** Entries used. */
    size_t count;
    /** One entry per weight (and "h0" for case 2). */
    nn_check_entry entries[8];
    double max_abs_err; /**< over all weights and elements */
    /** The largest rel_err over the entries. */
    double max_rel_err;
    /**@{*/
    /** The loss as the engine and as the reference computed it. */
    double engine_loss, reference_loss;
    /**@}*/
} nn_check_report;

/**
 * Compares the engine's case 1 gradients with nn_ref_case1 for f64 weights
 * (left with their values and gradients unchanged). Errors: AD_ERR_NULL,
 * AD_ERR_DTYPE (f32 weights), AD_ERR_SHAPE (weights that do not fit
 * together), AD_ERR_EMPTY, AD_ERR_NOMEM, and engine errors.
 */
NN_API ad_status nn_check_case1(ad_param *W_i, ad_param *W_h, ad_param *W_o, const double *x, int T,
                         double y, nn_check_report *report, ad_error *err);

/**
 * The same for case 2 from the initial state h0 ([H] values; NULL means
 * zeros), including dL/dh0 as the entry "h0". b_h and b_y may be NULL (no
 * bias; they then have no entry). Errors as nn_check_case1(), and AD_ERR_ARG
 * for an input or target outside 0..V-1.
 */
NN_API ad_status nn_check_case2(const nn_case2_params *p, const int64_t *inputs, const int64_t *targets, int T,
                         const double *h0, nn_check_report *report, ad_error *err);

/** Prints one line per weight and a last line "max |engine - reference| = <value>". */
NN_API void nn_check_print(const nn_check_report *report, FILE *out);

#ifdef __cplusplus
}
#endif
#endif
