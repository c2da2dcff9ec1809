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
 *         nn_grad_flow_write_png(&flow, "flow.png", NULL, &err); // a heatmap
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
    double *w_norm; /**< ||dL/dW^(t)|| for each of the n_w cell weights (in the report's `norms` block) */
} nn_grad_flow_row;

/** The report. */
typedef struct nn_grad_flow {
    /** The number of rows, one per time step. */
    int steps;
    /** The number of weight columns (the cell's n_w). */
    int n_w;
    /** The weights' parameter names, one per column. */
    char (*names)[AD_NAME_SIZE];
    /** The steps x n_w norms the rows point into, malloc'd; nn_grad_flow_free() releases them. */
    double *norms;
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
 * per step; the message names the mode), AD_ERR_NOMEM. The report has one column per cell weight, however
 * many (nn_cell::params).
 */
NN_API ad_status nn_grad_flow_collect(const ad_tape *t, const nn_cell *cell, const nn_state *outs, int T,
                               const nn_unroll_options *opts, nn_grad_flow *out, ad_error *err);

/** Releases the rows; the struct may be collected into again. */
NN_API void nn_grad_flow_free(nn_grad_flow *flow);

/** Prints a table: one line per step, a column per norm. */
NN_API void nn_grad_flow_print(const nn_grad_flow *flow, FILE *out);

/** Writes CSV with a header "step,h,<weight names...>". Returns AD_ERR_IO on a write error. */
NN_API ad_status nn_grad_flow_write_csv(const nn_grad_flow *flow, FILE *out);

/** How nn_grad_flow_write_png() draws; all zero gives the defaults. */
typedef struct nn_grad_flow_plot_options {
    const char *title;     /**< the title above the plot; NULL: "gradient flow" */
    int width;             /**< the picture's width in pixels; 0: 900 */
    int height;            /**< the picture's height in pixels; 0: 600 */
    const char *data_path; /**< where the plotted data is written and kept; NULL: a temporary file next to the PNG, removed afterwards */
} nn_grad_flow_plot_options;

/**
 * Writes the data nn_grad_flow_write_png() plots, as gnuplot reads it.
 * Block 0 (the heatmap): a line "step weight log10||dL/dW^(t)||" per step
 * and weight column, a blank line after each step. Two blank lines, then
 * block 1 (the line): "step log10||dL/dh_t||" per step. A norm that is 0,
 * NaN or infinite has no logarithm and is written as NaN, which gnuplot
 * leaves out (a blank cell, a gap in the line). Values are printed with 17
 * significant digits. Returns AD_ERR_NULL, AD_ERR_EMPTY (no steps or no
 * weight columns) or AD_ERR_IO on a write error.
 */
NN_API ad_status nn_grad_flow_write_plot_data(const nn_grad_flow *flow, FILE *out);

/**
 * Draws the report as a PNG with gnuplot: a heatmap of log10||dL/dW^(t)||
 * (time step across, one row per weight) with log10||dL/dh_t|| as a line
 * above it, on the same time axis. Cells with a zero or non-finite norm are
 * blank and counted in the title. gnuplot is run without a shell
 * (nn_gnuplot_run()); `opts` may be NULL. Returns AD_ERR_NULL,
 * AD_ERR_EMPTY (no steps or no weight columns), AD_ERR_IO (the PNG or the
 * data file cannot be written, or gnuplot failed), AD_ERR_NOT_FOUND
 * ("gnuplot not found ...": callers print a note and go on), AD_ERR_ARG (a
 * path or the title too long for the script); on an error no PNG is left.
 */
NN_API ad_status nn_grad_flow_write_png(const nn_grad_flow *flow, const char *png_path,
                                        const nn_grad_flow_plot_options *opts, ad_error *err);

#ifdef __cplusplus
}
#endif
#endif
