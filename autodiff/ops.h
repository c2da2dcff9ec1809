/**
 * @file
 * ops.h - the differentiable operations.
 *
 * Every op takes the tape first, checks its inputs (one shared gate), computes
 * its result eagerly into the tape's arena and records a node for backward.
 * On bad input an op returns NULL and records a sticky error on the tape
 * naming the op and the shapes, e.g.
 *
 *     matmul: [2,3] x [4,5]: inner dimensions 3 and 4 differ
 * An op given a NULL input returns NULL, so a chain of ops is checked once:
 *
 *     ad_tensor *h = ad_tanh(t, ad_add(t, ad_matmul(t, x, wx, 0),
 *                                       ad_matmul(t, hprev, wh, 0)));
 *     if (!h) fprintf(stderr, "%s\n", ad_tape_message(t));
 *
 * All inputs of an op share one dtype. Binary elementwise ops broadcast as
 * NumPy does (align trailing axes; a size of 1 stretches). Negative axes
 * count from the end. Results are valid until the tape is reset.
 */
#ifndef UNROLL_AD_OPS_H
#define UNROLL_AD_OPS_H

#include <stdint.h>

#include "rng.h"
#include "tape.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Axis value meaning "all axes" for ad_sum() and ad_mean(). */
#define AD_AXIS_ALL (-1000)

/** Flags of ad_matmul(). */
enum {
    AD_TRANS_A = 1, /**< use the transpose of a */
    AD_TRANS_B = 2  /**< use the transpose of b */
};

/** How a loss reduces its per-element terms. */
typedef enum ad_reduction {
    AD_REDUCE_MEAN = 0, /**< mean over counted elements (PyTorch's default) */
    AD_REDUCE_SUM = 1,  /**< sum; a scalar */
    AD_REDUCE_NONE = 2  /**< no reduction: one loss per element or row */
} ad_reduction;

/* ---- linear algebra ---------------------------------------------------------- */

/** C = op(a) op(b) with op = transpose where `flags` has AD_TRANS_A / AD_TRANS_B; 2-D: [m,k] x [k,n] -> [m,n]. */
AD_API ad_tensor *ad_matmul(ad_tape *t, ad_tensor *a, ad_tensor *b, int flags);

/**
 * bias + op(a) op(b) in one node (PyTorch's addmm): [m,k] x [k,n] plus a row
 * bias [n] or [1,n] added to every row; flags as for ad_matmul(). Equals
 * ad_add(ad_matmul(a, b, flags), bias) within rounding with one output buffer
 * instead of two; backward gives the bias the column sums of the gradient.
 */
AD_API ad_tensor *ad_addmm(ad_tape *t, ad_tensor *bias, ad_tensor *a, ad_tensor *b, int flags);

/* ---- elementwise, broadcasting ----------------------------------------------- */

/** a + b, broadcast. */
AD_API ad_tensor *ad_add(ad_tape *t, ad_tensor *a, ad_tensor *b);
/** a - b, broadcast. */
AD_API ad_tensor *ad_sub(ad_tape *t, ad_tensor *a, ad_tensor *b);
/** a * b elementwise (Hadamard), broadcast; with a 0/1 constant b this is a mask. */
AD_API ad_tensor *ad_mul(ad_tape *t, ad_tensor *a, ad_tensor *b);
/** a / b elementwise, broadcast. */
AD_API ad_tensor *ad_div(ad_tape *t, ad_tensor *a, ad_tensor *b);

/** x + c for a scalar c. */
AD_API ad_tensor *ad_add_scalar(ad_tape *t, ad_tensor *x, double c);
/** x * c for a scalar c. */
AD_API ad_tensor *ad_mul_scalar(ad_tape *t, ad_tensor *x, double c);
/** x ^ p elementwise for a scalar exponent p; d/dx = p x^(p-1). */
AD_API ad_tensor *ad_pow_scalar(ad_tape *t, ad_tensor *x, double p);

/* ---- elementwise, unary ------------------------------------------------------ */

/** -x. */
AD_API ad_tensor *ad_neg(ad_tape *t, ad_tensor *x);
/** e^x. */
AD_API ad_tensor *ad_exp(ad_tape *t, ad_tensor *x);
/** ln x (x <= 0 gives -inf/NaN, caught by anomaly mode). */
AD_API ad_tensor *ad_log(ad_tape *t, ad_tensor *x);
/** sqrt x. */
AD_API ad_tensor *ad_sqrt(ad_tape *t, ad_tensor *x);
/** |x|; the gradient at 0 is 0, as in PyTorch. */
AD_API ad_tensor *ad_abs(ad_tape *t, ad_tensor *x);
/** tanh x; d/dx = 1 - tanh^2 x. */
AD_API ad_tensor *ad_tanh(ad_tape *t, ad_tensor *x);
/** 1 / (1 + e^-x), computed in the two-branch stable form; d/dx = s (1 - s). */
AD_API ad_tensor *ad_sigmoid(ad_tape *t, ad_tensor *x);
/** max(x, 0); the gradient at 0 is 0. */
AD_API ad_tensor *ad_relu(ad_tape *t, ad_tensor *x);
/**
 * softplus(x) = log(1 + e^x), computed as max(x, 0) + log1p(e^-|x|) so that it
 * never overflows and keeps its small values for very negative x;
 * d/dx = sigmoid(x) (two-branch stable). A smooth relu: positive everywhere.
 */
AD_API ad_tensor *ad_softplus(ad_tape *t, ad_tensor *x);

/* ---- reductions and normalisations ------------------------------------------- */

/** Sum over `axis`, or over everything with AD_AXIS_ALL; keepdim keeps the axis with size 1. */
AD_API ad_tensor *ad_sum(ad_tape *t, ad_tensor *x, int axis, int keepdim);
/** Mean over `axis` (or AD_AXIS_ALL); the mean of nothing is an AD_ERR_EMPTY error. */
AD_API ad_tensor *ad_mean(ad_tape *t, ad_tensor *x, int axis, int keepdim);
/** softmax along `axis`: e^(x_i - max) / sum_j e^(x_j - max). */
AD_API ad_tensor *ad_softmax(ad_tape *t, ad_tensor *x, int axis);
/** log-softmax along `axis`: x_i - max - log sum_j e^(x_j - max). */
AD_API ad_tensor *ad_log_softmax(ad_tape *t, ad_tensor *x, int axis);
/**
 * Layer normalisation over the last axis, without the affine part (as
 * torch.nn.functional.layer_norm with no weight or bias): each row x of N
 * elements becomes (x - mean(x)) / sqrt(var(x) + eps), var the biased
 * variance (divided by N). eps must be positive (PyTorch's default is
 * 1e-5). Errors: AD_ERR_SHAPE (rank 0 or an empty last axis), AD_ERR_ARG
 * (eps). nn_layer_norm_forward() adds the learnable gain and bias.
 */
AD_API ad_tensor *ad_layer_norm(ad_tape *t, ad_tensor *x, double eps);

/* ---- shape ------------------------------------------------------------------- */

/**
 * The same elements with shape `shape` (equal numel); one size may be -1
 * (inferred). The result shares x's data (a view, no copy), so writing into
 * x's buffer afterwards shows through; its gradient is still its own.
 */
AD_API ad_tensor *ad_reshape(ad_tape *t, ad_tensor *x, ad_shape shape);
/** Swaps axes `a0` and `a1`. */
AD_API ad_tensor *ad_transpose(ad_tape *t, ad_tensor *x, int a0, int a1);
/** Output axis i is input axis perm[i]; `perm` has rank(x) entries, a permutation. */
AD_API ad_tensor *ad_permute(ad_tape *t, ad_tensor *x, const int *perm);
/** Joins `n` tensors along `axis`; all other sizes must agree. */
AD_API ad_tensor *ad_concat(ad_tape *t, ad_tensor *const *xs, int n, int axis);
/**
 * The `len` entries from `start` along `axis`. When they form one contiguous
 * block (every axis before `axis` has size 1, e.g. rows of a matrix) the
 * result shares x's data instead of copying it, so writing into x's buffer
 * afterwards shows through; its gradient is still its own.
 */
AD_API ad_tensor *ad_slice(ad_tape *t, ad_tensor *x, int axis, int64_t start, int64_t len);
/**
 * Splits `x` along `axis` into `n` consecutive pieces of sizes `sizes[i]`
 * (which must add up to the axis size), written to `out[0..n-1]`. Returns the
 * tape's status.
 */
AD_API ad_status ad_split(ad_tape *t, ad_tensor *x, int axis, int n, const int64_t *sizes,
                   ad_tensor **out);

/**
 * Row gather (embedding lookup): out[i, :] = table[idx[i], :] for table
 * [V, D] and n indices (copied) -> [n, D]. Backward scatter-adds into the
 * rows of table. Indices outside [0, V) are an AD_ERR_ARG error.
 */
AD_API ad_tensor *ad_gather_rows(ad_tape *t, ad_tensor *table, const int64_t *idx, int64_t n);

/**
 * out = cond != 0 ? a : b. `a` and `b` have one shape; `cond` is a constant
 * that broadcasts to it (e.g. [B,1] over [B,H]); no gradient flows to cond.
 */
AD_API ad_tensor *ad_where(ad_tape *t, ad_tensor *cond, ad_tensor *a, ad_tensor *b);

/**
 * Inverted dropout: with `train` set, each element is zeroed with probability
 * p and the others are scaled by 1/(1-p), using draws from `rng`; without
 * `train` (or with p = 0) the output equals x. p must lie in [0, 1).
 */
AD_API ad_tensor *ad_dropout(ad_tape *t, ad_tensor *x, double p, int train, ad_rng *rng);

/** A copy of x that does not require gradients: backward stops here. */
AD_API ad_tensor *ad_detach(ad_tape *t, ad_tensor *x);

/* ---- losses ------------------------------------------------------------------ */

/**
 * Cross-entropy of logits [N, C] with integer class targets (n = N entries,
 * copied): l_i = -log softmax(x_i)[c_i], fused and max-shifted; the gradient is
 * softmax(x_i) - onehot(c_i). Rows whose target equals `ignore_index` count
 * neither in the loss nor in the mean. Targets outside [0, C) that are not
 * ignore_index are an AD_ERR_ARG error. NONE returns [N] (0 for ignored rows).
 */
AD_API ad_tensor *ad_cross_entropy(ad_tape *t, ad_tensor *logits, const int64_t *targets, int64_t n,
                            int64_t ignore_index, ad_reduction reduction);

/**
 * Binary cross-entropy with logits: l = max(x,0) - x y + log1p(e^-|x|),
 * stable for any x; d/dx = sigmoid(x) - y. `targets` (same shape, constant)
 * hold y in [0, 1].
 */
AD_API ad_tensor *ad_bce_with_logits(ad_tape *t, ad_tensor *logits, ad_tensor *targets,
                              ad_reduction reduction);

/**
 * Binary cross-entropy on probabilities: l = -(y log p + (1-y) log(1-p)) with
 * each log clamped at -100 as PyTorch does; `targets` are constants.
 */
AD_API ad_tensor *ad_bce(ad_tape *t, ad_tensor *probs, ad_tensor *targets, ad_reduction reduction);

/** Mean squared error (pred - target)^2, same shapes; gradients flow to both. */
AD_API ad_tensor *ad_mse(ad_tape *t, ad_tensor *pred, ad_tensor *target, ad_reduction reduction);

/* ---- fused recurrent cell gates -------------------------------------------- */

/*
 * One node per gate block of a built-in cell. gx = x W_ih^T + b_ih and
 * gh = h W_hh^T + b_hh are the step's two projections, [B, G H] each (gate
 * order as in PyTorch); the state is [B, H]. They equal the op-by-op cells
 * of nn/cell.h (split, add, sigmoid, tanh, mul) within rounding, keep only
 * the activations backward needs and record one node instead of a dozen.
 * Errors: AD_ERR_SHAPE when the shapes do not fit together, AD_ERR_EMPTY for
 * an empty state, and the gate's NULL / dtype / foreign-tape checks.
 */

/** Activations of ad_rnn_cell(). */
typedef enum ad_rnn_activation {
    /** h' = tanh(gx + gh). */
    AD_RNN_TANH = 0,
    /** h' = relu(gx + gh). */
    AD_RNN_RELU = 1
} ad_rnn_activation;

/**
 * Elman step: h' = act(gx + gh) with gx, gh [B, H] and act AD_RNN_TANH or
 * AD_RNN_RELU (any other value is AD_ERR_ARG). One node and one buffer for
 * what ad_tanh(ad_add(gx, gh)) records as two; the gradient, act'(.) times
 * the upstream one, goes to both gx and gh.
 */
AD_API ad_tensor *ad_rnn_cell(ad_tape *t, ad_tensor *gx, ad_tensor *gh, ad_rnn_activation activation);

/**
 * A whole Elman recurrence in one node: with gx [T B, H] holding the input
 * projections of T steps (step k's B rows at rows k B .. k B + B - 1, the
 * layout ad_concat of the steps along axis 0 gives), h0 [B, H] and w_hh
 * [H, H], returns the states h_1..h_T as [T B, H] in the same layout, where
 * h_k = act(gx_k + h_{k-1} op(w_hh)); op is the transpose when `flags` is
 * AD_TRANS_B (PyTorch's weight_hh layout), else none. The states and the
 * gradients of gx and h0 are those of the T steps ad_rnn_cell(ad_slice(gx,
 * 0, k B, B), ad_matmul(h, w_hh, flags), act) concatenated, bit for bit, and
 * w_hh's gradient (summed over the steps in one product) agrees to rounding;
 * one node instead of 3 T + 1 (for tiny nets recording is most of the cost).
 * Backward keeps h0, w_hh and the states; gx can be released.
 * Errors: AD_ERR_SHAPE when the shapes do not fit or gx's rows are not a
 * whole number of steps of h0's B rows, AD_ERR_EMPTY for an empty h0 or
 * sequence, AD_ERR_ARG for an unknown activation or flags other than 0 and
 * AD_TRANS_B, and the gate's NULL / dtype / foreign-tape checks.
 */
AD_API ad_tensor *ad_rnn_sequence(ad_tape *t, ad_tensor *gx, ad_tensor *h0, ad_tensor *w_hh,
                                  ad_rnn_activation activation, int flags);

/**
 * A whole GRU recurrence in one node, PyTorch's equations: with gx [T B, 3H]
 * the input projections of T steps (gx = x W_ih^T + b_ih, gates r z n,
 * step k's B rows at k B), h0 [B, H], w_hh [H, 3H] ([3H, H], PyTorch's
 * weight_hh layout, with `flags` AD_TRANS_B) and b_hh [3H] (or [1, 3H]),
 * returns the states [T B, H], h_k = ad_gru_cell(gx_k, gh_k, h_{k-1}) with
 * gh_k = h_{k-1} op(w_hh) + b_hh. The states and the gradients of gx, h0
 * and b_hh are those of the T steps (ad_addmm and ad_gru_cell on slices of
 * gx, concatenated) bit for bit, and w_hh's (summed over the steps in one
 * product) agrees to rounding; one node instead of 3 T + 1. Backward
 * keeps h0, w_hh, the states and every step's gh and gates (6 T B H numbers).
 * Errors: AD_ERR_SHAPE when the shapes do not fit or gx's rows are not a
 * whole number of steps, AD_ERR_EMPTY for an empty h0 or sequence,
 * AD_ERR_ARG for flags other than 0 and AD_TRANS_B, and the gate's NULL /
 * dtype / foreign-tape checks.
 */
AD_API ad_tensor *ad_gru_sequence(ad_tape *t, ad_tensor *gx, ad_tensor *h0, ad_tensor *w_hh, ad_tensor *b_hh,
                                  int flags);

/**
 * LSTM cell state: with [i f g o] = gx + gh ([B, 4H]) and c [B, H],
 * c' = sigmoid(f) c + sigmoid(i) tanh(g) -> [B, H]. The o block is not read
 * (see ad_lstm_cell_output). Gradients flow to gx, gh and c.
 */
AD_API ad_tensor *ad_lstm_cell_state(ad_tape *t, ad_tensor *gx, ad_tensor *gh, ad_tensor *c);

/**
 * LSTM hidden output: h' = sigmoid(o) tanh(c_next) with o the last H columns
 * of gx + gh ([B, 4H]) and c_next = ad_lstm_cell_state(...) [B, H].
 * Gradients flow to the o block of gx and gh, and to c_next.
 */
AD_API ad_tensor *ad_lstm_cell_output(ad_tape *t, ad_tensor *gx, ad_tensor *gh, ad_tensor *c_next);

/**
 * GRU step, PyTorch's equations: with [r z n] blocks of gx and gh ([B, 3H])
 * and h [B, H], r = sigmoid(gx_r + gh_r), z = sigmoid(gx_z + gh_z),
 * n = tanh(gx_n + r gh_n), h' = (1 - z) n + z h -> [B, H]. gh must include
 * b_hh, since r multiplies (h W_hn^T + b_hn). Gradients flow to gx, gh and h.
 */
AD_API ad_tensor *ad_gru_cell(ad_tape *t, ad_tensor *gx, ad_tensor *gh, ad_tensor *h);

/* ---- user-defined ops -------------------------------------------------------- */

/**
 * A user-defined op. The caller keeps this description alive while tapes use
 * it (a static const struct is typical) and calls it with ad_custom(). The
 * callbacks see ordinary tensors, so ad_tensor_f64() etc. give their data:
 * - shape: the output shape for inputs `in` (all of one dtype, already
 *   checked non-NULL and on this tape); return AD_OK, or an error code after
 *   writing a message to msg (msg_size bytes);
 * - forward: fill `out` (allocated by the engine with that shape);
 * - backward: add (+=) dL/din[i] into gin[i] given gout = dL/dout; gin[i] is
 *   NULL when input i needs no gradient;
 * - jvp (optional, for forward mode, see forward.h): write into tout the
 *   tangent of the output, sum_i (dout/din[i]) tin[i], where tin[i] is NULL
 *   for a zero tangent; called once per direction. Without it, ad_jvp()
 *   through this op fails with AD_ERR_STATE naming the op.
 * gradcheck and anomaly mode treat custom ops like built-ins.
 */
typedef struct ad_custom_op {
    const char *name; /**< shown in errors and DOT output */
    int arity;        /**< number of inputs, 1..AD_CUSTOM_MAX_IN */
    /** Computes the output shape (see above). */
    ad_status (*shape)(void *ctx, ad_tensor *const *in, int n, ad_shape *out, char *msg,
                       size_t msg_size);
    /** Fills the output (see above). */
    void (*forward)(void *ctx, ad_tensor *const *in, int n, ad_tensor *out);
    /** Adds the input gradients (see above). */
    void (*backward)(void *ctx, ad_tensor *const *in, int n, ad_tensor *out, ad_tensor *gout,
                     ad_tensor *const *gin);
    void (*jvp)(void *ctx, ad_tensor *const *in, int n, ad_tensor *out, ad_tensor *const *tin,
                ad_tensor *tout); /**< forward-mode rule, or NULL */
} ad_custom_op;

/** The largest arity of a custom op. */
#define AD_CUSTOM_MAX_IN 8

/**
 * Applies the custom op `op` to `n` inputs (n must equal op->arity), passing
 * `ctx` to each callback. Errors: AD_ERR_NULL (op or a callback missing),
 * AD_ERR_ARG (arity), and whatever the shape callback returns.
 */
AD_API ad_tensor *ad_custom(ad_tape *t, const ad_custom_op *op, void *ctx, ad_tensor *const *in, int n);

#ifdef __cplusplus
}
#endif
#endif
