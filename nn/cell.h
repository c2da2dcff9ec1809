/*
 * cell.h - recurrent cells: one time step written with engine ops.
 *
 * A cell is a step function plus its parameters:
 *     next = step(tape, cell, x_t, prev)
 * with x_t [B, I] and states [B, H] (rows are batch entries, as PyTorch's
 * batch_first layout). The built-in cells follow PyTorch's equations, gate
 * order, parameter names and shapes exactly, so weights exchanged through
 * .npy give the same numbers:
 *
 *   Elman  h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh),        act = tanh | relu
 *   LSTM   [i f g o] = x W_ih^T + b_ih + h W_hh^T + b_hh       (W_ih [4H, I])
 *          c' = sigmoid(f) c + sigmoid(i) tanh(g),  h' = sigmoid(o) tanh(c')
 *   GRU    [r z n] split of  x W_ih^T + b_ih  and  h W_hh^T + b_hh   (W_ih [3H, I])
 *          r = sigmoid(.), z = sigmoid(.),  n = tanh(x_n + r (h W_hn^T + b_hn))
 *          h' = (1 - z) n + z h
 *
 * Parameters are registered as "<prefix>.weight_ih_l<k>", "weight_hh_l<k>",
 * "bias_ih_l<k>", "bias_hh_l<k>" (suffix "_reverse" for the backward
 * direction of a bidirectional layer), and initialised later with
 * nn_cell_init_pytorch() (uniform(-1/sqrt(H), 1/sqrt(H)), PyTorch's default).
 *
 * A custom cell is an nn_cell whose `step` the user writes; it gets BPTT,
 * masking, stacking and the gradient-flow report with no extra code
 * (docs/guide.md, "Writing a cell").
 */
#ifndef UNROLL_NN_CELL_H
#define UNROLL_NN_CELL_H

#include "../autodiff/autodiff.h"
#include "params.h"

#ifdef __cplusplus
extern "C" {
#endif

/** The state a cell carries: h, and c for LSTM (NULL otherwise). */
typedef struct nn_state {
    ad_tensor *h;
    ad_tensor *c;
} nn_state;

typedef struct nn_cell nn_cell;

/**
 * One time step: writes `next` from input x [B, I] and `prev`. Returns the
 * tape's status (AD_OK, or the error of the first failing op).
 */
typedef ad_status (*nn_step_fn)(ad_tape *t, const nn_cell *cell, ad_tensor *x,
                                 const nn_state *prev, nn_state *next);

/** The most parameters one cell holds. */
#define NN_CELL_MAX_PARAMS 8

/** Kinds of built-in cells. */
typedef enum nn_cell_kind {
    NN_CELL_CUSTOM = 0,
    NN_CELL_RNN_TANH,
    NN_CELL_RNN_RELU,
    NN_CELL_LSTM,
    NN_CELL_GRU
} nn_cell_kind;

/** A cell: its step, sizes and parameters. Plain data; fill it by hand for a custom cell. */
struct nn_cell {
    char name[AD_NAME_SIZE]; /**< used in tape labels: "<name> t=<step>" */
    nn_cell_kind kind;
    int input_size, hidden_size;
    int has_c;          /**< carries a cell state c (LSTM) */
    nn_step_fn step;
    ad_param *w[NN_CELL_MAX_PARAMS]; /**< the cell's parameters (built-ins: W_ih, W_hh, b_ih, b_hh) */
    int n_w;
    /** Built-in cells: 0 (the default) runs the fused gate ops (ad_rnn_cell,
     *  ad_lstm_cell_state/_output, ad_gru_cell); 1 the op-by-op gates (split,
     *  add, sigmoid, tanh, mul), equal within rounding and kept as their reference. */
    int plain_gates;
    void *ctx;          /**< for custom cells */
};

/**
 * Registers a built-in cell's parameters in `ps` and fills `cell`.
 * `prefix` e.g. "rnn" ("" registers the bare names "weight_ih_l<k>", ... of a
 * torch.nn.LSTM's own state dict); `layer` the k in "_l<k>"; `reverse` adds "_reverse";
 * `bias` 0 leaves out the two biases (PyTorch's bias=False).
 * Errors: AD_ERR_NULL, AD_ERR_ARG (sizes < 1, unknown kind), and those of
 * nn_params_add (a duplicate name).
 */
NN_API ad_status nn_cell_create(nn_cell *cell, nn_cell_kind kind, nn_params *ps, const char *prefix,
                         int layer, int reverse, int input_size, int hidden_size, int bias,
                         ad_error *err);

/** PyTorch's initialisation of a recurrent cell: every parameter uniform(-k, k), k = 1/sqrt(H). */
NN_API void nn_cell_init_pytorch(nn_cell *cell, ad_rng *rng);

/**
 * Runs cell->step after checking the arguments: x [B, I] and prev->h [B, H]
 * (and prev->c for an LSTM) on tape t with the cell's dtype. Bad input is a
 * tape error naming the cell (AD_ERR_NULL, AD_ERR_SHAPE, AD_ERR_DTYPE).
 */
NN_API ad_status nn_cell_step(ad_tape *t, const nn_cell *cell, ad_tensor *x, const nn_state *prev,
                       nn_state *next);

/** Zero initial state for batch size B (c too for an LSTM), on tape t. */
NN_API ad_status nn_cell_zero_state(ad_tape *t, const nn_cell *cell, int64_t batch, nn_state *out);

/**
 * x W_ih^T + b_ih of a built-in cell for any number of rows: x [N, I] ->
 * [N, G H]. With all T steps' inputs stacked (N = T B), this is the input
 * projection of the whole sequence in one product (nn_unroll's hoist_input).
 * Custom cells: AD_ERR_ARG on the tape.
 */
NN_API ad_tensor *nn_cell_input_projection(ad_tape *t, const nn_cell *cell, ad_tensor *x);

/**
 * One step of a built-in cell from its input projection gx = x W_ih^T + b_ih
 * ([B, G H]) instead of x. nn_cell_step(x) equals this with
 * gx = nn_cell_input_projection(x).
 */
NN_API ad_status nn_cell_step_projected(ad_tape *t, const nn_cell *cell, ad_tensor *gx,
                                 const nn_state *prev, nn_state *next);

/* The built-in step functions (usable directly as nn_cell.step). */
NN_API ad_status nn_rnn_step(ad_tape *t, const nn_cell *cell, ad_tensor *x, const nn_state *prev,
                      nn_state *next);
NN_API ad_status nn_lstm_step(ad_tape *t, const nn_cell *cell, ad_tensor *x, const nn_state *prev,
                       nn_state *next);
NN_API ad_status nn_gru_step(ad_tape *t, const nn_cell *cell, ad_tensor *x, const nn_state *prev,
                      nn_state *next);

#ifdef __cplusplus
}
#endif
#endif
