/**
 * @file
 * cell.h - recurrent cells: one time step written with engine ops.
 *
 * A cell is a step function plus its parameters:
 *
 *     next = step(tape, cell, x_t, prev)
 *
 * with x_t [B, I] and states [B, H] (rows are batch entries, as PyTorch's
 * batch_first layout). The built-in cells follow PyTorch's equations, gate
 * order, parameter names and shapes exactly, so weights exchanged through
 * .npy give the same numbers:
 *
 * ```
 *   Elman  h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh),        act = tanh | relu
 *   LSTM   [i f g o] = x W_ih^T + b_ih + h W_hh^T + b_hh       (W_ih [4H, I])
 *          c' = sigmoid(f) c + sigmoid(i) tanh(g),  h' = sigmoid(o) tanh(c')
 *          with proj_size P: h' = (sigmoid(o) tanh(c')) W_hr^T, h [B, P] (W_hr [P, H])
 *   GRU    [r z n] split of  x W_ih^T + b_ih  and  h W_hh^T + b_hh   (W_ih [3H, I])
 *          r = sigmoid(.), z = sigmoid(.),  n = tanh(x_n + r (h W_hn^T + b_hn))
 *          h' = (1 - z) n + z h
 * ```
 *
 * Parameters are registered as "<prefix>.weight_ih_l<k>", "weight_hh_l<k>",
 * "bias_ih_l<k>", "bias_hh_l<k>" (and "weight_hr_l<k>" with proj_size;
 * suffix "_reverse" for the backward
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
    /** The hidden state h [B, H]. */
    ad_tensor *h;
    /** The cell state c [B, H] of an LSTM; NULL for other cells. */
    ad_tensor *c;
} nn_state;

/** A cell (struct nn_cell below): plain data, so a custom cell is filled by hand. */
typedef struct nn_cell nn_cell;

/**
 * One time step: writes `next` from input x [B, I] and `prev`. Returns the
 * tape's status (AD_OK, or the error of the first failing op).
 */
typedef ad_status (*nn_step_fn)(ad_tape *t, const nn_cell *cell, ad_tensor *x,
                                 const nn_state *prev, nn_state *next);

/**
 * The most parameters the inline list nn_cell::w holds. A custom cell with
 * more sets nn_cell::params to its own list instead: then there is no limit.
 */
#define NN_CELL_MAX_PARAMS 8

/** Kinds of built-in cells. */
typedef enum nn_cell_kind {
    /** A cell whose step function the user writes. */
    NN_CELL_CUSTOM = 0,
    /** Elman with tanh: h' = tanh(x W_ih^T + b_ih + h W_hh^T + b_hh). */
    NN_CELL_RNN_TANH,
    /** Elman with relu: h' = relu(x W_ih^T + b_ih + h W_hh^T + b_hh). */
    NN_CELL_RNN_RELU,
    /** LSTM, PyTorch's gate order i f g o. */
    NN_CELL_LSTM,
    /** GRU, PyTorch's gate order r z n. */
    NN_CELL_GRU
} nn_cell_kind;

/** A cell: its step, sizes and parameters. Plain data; fill it by hand for a custom cell. */
struct nn_cell {
    char name[AD_NAME_SIZE]; /**< used in tape labels: "<name> t=<step>" */
    /** Which built-in cell this is, or NN_CELL_CUSTOM. */
    nn_cell_kind kind;
    /**@{*/
    /** The sizes I of an input row and H of the state. */
    int input_size, hidden_size;
    /**@}*/
    int proj_size;      /**< LSTM with projections: h is [B, proj_size]; 0 otherwise */
    int has_bias;       /**< built-in cells: the biases b_ih and b_hh are w[2] and w[3] */
    int has_c;          /**< carries a cell state c (LSTM) */
    /** The step function; nn_cell_create() sets the built-in one of the kind. */
    nn_step_fn step;
    ad_param *w[NN_CELL_MAX_PARAMS]; /**< the cell's parameters (built-ins: W_ih, W_hh, b_ih, b_hh) */
    /** How many parameters the cell has: entries of `w`, or of `params` when that is set. */
    int n_w;
    void *ctx;          /**< for custom cells */
    /**
     * Custom cells with any number of parameters: when non-NULL, the cell's
     * parameters are params[0..n_w-1] (n_w unlimited) and `w` is not read.
     * The array is the caller's; it must outlive every use of the cell.
     * Read a parameter with nn_cell_weight(), which handles both lists.
     */
    ad_param *const *params;
};

/** The cell's i-th parameter, from `params` when set, else from `w`; NULL when i is outside 0..n_w-1. */
NN_API ad_param *nn_cell_weight(const nn_cell *cell, int i);

/** How nn_cell_create() builds a built-in cell; zero fields are PyTorch's defaults. */
typedef struct nn_cell_options {
    nn_cell_kind kind; /**< NN_CELL_RNN_TANH, NN_CELL_RNN_RELU, NN_CELL_LSTM or NN_CELL_GRU */
    int input_size;    /**< I, at least 1 */
    int hidden_size;   /**< H, at least 1 */
    int layer;         /**< the k in the names' "_l<k>" */
    int reverse;       /**< 1: the backward direction of a bidirectional layer ("_reverse") */
    int no_bias;       /**< 1 leaves out b_ih and b_hh (PyTorch's bias=False) */
    int proj_size;     /**< LSTM only: PyTorch's proj_size, 0 < P < H (0: none) */
} nn_cell_options;

/**
 * Registers a built-in cell's parameters in `ps` under `prefix` (e.g.
 * "lstm": "lstm.weight_ih_l0", ...; "" registers the bare names
 * "weight_ih_l<k>", ... of a torch.nn.LSTM's own state dict) and fills
 * `cell`. Errors: AD_ERR_NULL,
 * AD_ERR_ARG (sizes < 1, a negative layer, an unknown kind, proj_size
 * outside 0..H-1 or on a cell other than an LSTM), and those of
 * nn_params_add (a duplicate name).
 *
 *     nn_cell_create(&cell, ps, "lstm", &(nn_cell_options){.kind = NN_CELL_LSTM,
 *                    .input_size = I, .hidden_size = H}, &err);
 */
NN_API ad_status nn_cell_create(nn_cell *cell, nn_params *ps, const char *prefix, const nn_cell_options *opts,
                                ad_error *err);

/** The size of the state h a cell gives: proj_size when it has one, else hidden_size (0 for NULL). */
NN_API int nn_cell_output_size(const nn_cell *cell);

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

/**
 * The step function of every built-in cell (nn_cell.step of the cells
 * nn_cell_create() makes): nn_cell_step_projected() of
 * nn_cell_input_projection(x), which follows cell->kind. It does not check
 * its arguments as nn_cell_step() does; it returns the tape's status, and a
 * custom cell is AD_ERR_ARG on the tape. A custom cell may call it on a
 * built-in cell.
 */
NN_API ad_status nn_builtin_step(ad_tape *t, const nn_cell *cell, ad_tensor *x, const nn_state *prev,
                                 nn_state *next);

/**
 * `src` with each weight replaced by the parameter of the same name in `ps`
 * (e.g. a clone of its set in f64, from nn_params_clone()), written to
 * `dst` (which may be src). Errors: AD_ERR_NULL, AD_ERR_ARG (n_w out of
 * range), AD_ERR_NOT_FOUND (a weight missing from ps); dst is unchanged on
 * error.
 */
NN_API ad_status nn_cell_rebind(const nn_cell *src, nn_params *ps, nn_cell *dst, ad_error *err);

#ifdef __cplusplus
}
#endif
#endif
