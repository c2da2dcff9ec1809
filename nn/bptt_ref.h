/**
 * @file
 * bptt_ref.h - backpropagation through time derived by hand, in plain loops.
 *
 * No engine call anywhere: these functions implement the textbook
 * derivations of docs/derivations.md line by line, in f64, so the engine can
 * be held to them and so users who derive gradients by hand can check their
 * own work. All matrices are row-major double arrays owned by the caller;
 * gradient arrays are overwritten (not accumulated).
 *
 * Case 1 (many-to-one, row vectors, no biases; derivations.md section 1):
 *
 *     O_t = tanh(x_t W_i + O_{t-1} W_h),  O_0 = 0,  yhat = sigmoid(O_T W_o)
 *     L = -(y log yhat + (1 - y) log(1 - yhat))
 *
 * Case 2 (min-char-rnn, column vectors; section 2):
 *
 *     h_t = tanh(W_xh x_t + W_hh h_{t-1} + b_h),  y_t = W_hy h_t + b_y
 *     p_t = softmax(y_t),  L = -sum_t log p_t[c_t]
 *
 * Batched Elman (PyTorch layout; section 3):
 *
 *     h_t = tanh(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh),  L = sum_t sum(h_t * U_t)
 *
 * Batched LSTM and GRU (PyTorch's equations, nn/cell.h; section 4), same loss.
 */
#ifndef UNROLL_NN_BPTT_REF_H
#define UNROLL_NN_BPTT_REF_H

#include <stdint.h>

#include "../autodiff/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Case 1 weights (or their gradients): W_i [V, H], W_h [H, H], W_o [H, 1]. */
typedef struct nn_case1_weights {
    /**@{*/
    /** Row-major arrays of the shapes above. */
    double *W_i, *W_h, *W_o;
    /**@}*/
} nn_case1_weights;

/**
 * Case 1 loss and gradients for one sequence of T one-hot rows x [T, V] and
 * label y in [0, 1]. `grads` (may be NULL) receives dL/dW. Errors:
 * AD_ERR_NULL, AD_ERR_EMPTY (T < 1), AD_ERR_ARG (sizes < 1), AD_ERR_NOMEM.
 */
NN_API ad_status nn_ref_case1(int V, int H, const nn_case1_weights *w, const double *x, int T, double y,
                       double *loss, nn_case1_weights *grads, ad_error *err);

/**
 * Case 2 weights (or gradients): W_xh [H, V], W_hh [H, H], W_hy [V, H], b_h [H], b_y [V].
 * b_h and b_y may be NULL: the model then has no such bias (and a NULL gradient
 * array for a bias is skipped).
 */
typedef struct nn_case2_weights {
    /**@{*/
    /** Row-major arrays of the shapes above. */
    double *W_xh, *W_hh, *W_hy, *b_h, *b_y;
    /**@}*/
} nn_case2_weights;

/**
 * Case 2 over T steps with inputs[t], targets[t] in 0..V-1, from initial
 * state h0 [H]. Writes the loss, the gradients (grads may be NULL), dL/dh0
 * (dh0 may be NULL) and the last state (h_last may be NULL, H entries).
 * Errors: AD_ERR_NULL, AD_ERR_EMPTY, AD_ERR_ARG (an index outside 0..V-1),
 * AD_ERR_NOMEM.
 */
NN_API ad_status nn_ref_case2(int V, int H, const nn_case2_weights *w, const int64_t *inputs,
                       const int64_t *targets, int T, const double *h0, double *loss,
                       nn_case2_weights *grads, double *dh0, double *h_last, ad_error *err);

/**
 * Truncated BPTT of case 2 at fixed weights: segments of k steps; each starts
 * from the previous segment's last state (carried forward, its gradient not
 * propagated back). Writes the summed loss and the sum of the segments'
 * gradients, and the gradient with respect to h0 (first segment only). On
 * AD_ERR_NOMEM *loss is the sum over the segments that completed.
 */
NN_API ad_status nn_ref_case2_truncated(int V, int H, const nn_case2_weights *w, const int64_t *inputs,
                                 const int64_t *targets, int T, int k, const double *h0,
                                 double *loss, nn_case2_weights *grads, double *dh0,
                                 ad_error *err);

/**
 * Weights (or gradients) of a recurrent layer in PyTorch's layout: W_ih
 * [G H, I], W_hh [G H, H], b_ih [G H], b_hh [G H], with G = 1 (Elman),
 * 4 (LSTM, gates i f g o) or 3 (GRU, gates r z n).
 */
typedef struct nn_ref_weights {
    /**@{*/
    /** Row-major arrays of the shapes above. */
    double *W_ih, *W_hh, *b_ih, *b_hh;
    /**@}*/
} nn_ref_weights;

/** The sizes of a batched reference layer (nn_ref_elman(), nn_ref_lstm(), nn_ref_gru()). */
typedef struct nn_ref_sizes {
    int batch;  /**< B, rows per step (>= 1) */
    int input;  /**< I, features per row (>= 1) */
    int hidden; /**< H, hidden units (>= 1) */
    int steps;  /**< T, time steps (>= 1; 0 is an empty sequence, AD_ERR_EMPTY) */
} nn_ref_sizes;

/**
 * Batched tanh Elman layer over x [T, B, I] from h0 [B, H] with loss
 * L = sum_t sum(h_t * U_t), U [T, B, H] (any upstream weighting). Writes the
 * loss, gradients, dL/dh0 (may be NULL) and dL/dx (dx may be NULL, [T, B, I]).
 */
NN_API ad_status nn_ref_elman(const nn_ref_sizes *sizes, const nn_ref_weights *w, const double *x,
                       const double *h0, const double *U, double *loss, nn_ref_weights *grads,
                       double *dh0, double *dx, ad_error *err);

/**
 * Batched LSTM layer (derivations.md section 4) over x [T, B, I] from h0, c0
 * [B, H], loss L = sum_t sum(h_t * U_t). Writes the loss, gradients, and
 * dL/dh0, dL/dc0, dL/dx (each may be NULL).
 */
NN_API ad_status nn_ref_lstm(const nn_ref_sizes *sizes, const nn_ref_weights *w, const double *x,
                      const double *h0, const double *c0, const double *U, double *loss,
                      nn_ref_weights *grads, double *dh0, double *dc0, double *dx, ad_error *err);

/** Batched GRU layer (section 4), as nn_ref_lstm() without the cell state. */
NN_API ad_status nn_ref_gru(const nn_ref_sizes *sizes, const nn_ref_weights *w, const double *x,
                     const double *h0, const double *U, double *loss, nn_ref_weights *grads,
                     double *dh0, double *dx, ad_error *err);

#ifdef __cplusplus
}
#endif
#endif
