/**
 * @file
 * gradflow.h - the gradient-flow report: how much gradient reaches each time
 * step, the tool to see vanishing and exploding gradients.
 *
 * After backward through an unrolled cell, for every step t it gives
 * ||dL/dh_t|| (the state's gradient, over the whole batch) and, for each of
 * the cell's weights, ||dL/dW^(t)|| (the gradient of that step's temporal
 * copy). Norms are Euclidean (Frobenius).
 *
 *     nn_unroll(t, &cell, xs, T, &o, outs, &last);
 *     ... loss, ad_backward(t, loss, NULL) ...
 *     nn_grad_flow flow;
 *     if (nn_grad_flow_collect(t, &cell, outs, T, &o, &flow, &err) == AD_OK) {
 *         nn_grad_flow_print(&flow, stdout);      // a table
 *         nn_grad_flow_write_csv(&flow, csv);     // step,h,<weight>,...
 *         nn_grad_flow_free(&flow);
 *     }
 */
#ifndef UNROLL_NN_GRADFLOW_H
#define UNROLL_NN_GRADFLOW_H

#include <stdio.h>

#include "cell.h"
#include "unroll.h"

#ifdef __cplusplus
extern "C" {
#endif

/** One row per time step (in time order). */
typedef struct nn_grad_flow_row {
    /** The time step t. */
    int step;
    double h_norm;                    /**< ||dL/dh_t||; 0 when no gradient reached h_t, NaN/Inf reported as such */
    double w_norm[NN_CELL_MAX_PARAMS]; /**< ||dL/dW^(t)|| for each cell weight */
} nn_grad_flow_row;

/** The report. */
typedef struct nn_grad_flow {
    /** The number of rows, one per time step. */
    int steps;
    /** The number of weight columns (the cell's n_w). */
    int n_w;
    /** The weights' parameter names, one per column. */
    char names[NN_CELL_MAX_PARAMS][AD_NAME_SIZE];
    nn_grad_flow_row *rows; /**< `steps` rows, malloc'd; nn_grad_flow_free() releases them */
} nn_grad_flow;

/**
 * Collects the report from tape t after backward. `outs` are the T states
 * nn_unroll() wrote and `opts` the options it ran with (for the direction;
 * may be NULL). A weight used m times per step has m*T copies, summed per
 * step. It works on tapes with copy_grads = keep or norms, with or without
 * release_grads (from the norms backward records), and non-finite norms are
 * reported, not skipped. Errors: AD_ERR_NULL, AD_ERR_EMPTY (T < 1),
 * AD_ERR_MISMATCH (a weight's copy count is not a multiple of T),
 * AD_ERR_STATE (copy_grads = none, or norms with a weight used several times
 * per step; the message names the mode), AD_ERR_NOMEM.
 */
NN_API ad_status nn_grad_flow_collect(const ad_tape *t, const nn_cell *cell, const nn_state *outs, int T,
                               const nn_unroll_options *opts, nn_grad_flow *out, ad_error *err);

/** Releases the rows; the struct may be collected into again. */
NN_API void nn_grad_flow_free(nn_grad_flow *flow);

/** Prints a table: one line per step, a column per norm. */
NN_API void nn_grad_flow_print(const nn_grad_flow *flow, FILE *out);

/** Writes CSV with a header "step,h,<weight names...>". Returns AD_ERR_IO on a write error. */
NN_API ad_status nn_grad_flow_write_csv(const nn_grad_flow *flow, FILE *out);

#ifdef __cplusplus
}
#endif
#endif
