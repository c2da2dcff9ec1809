/*
 * cell.c - built-in recurrent cells (Elman, LSTM, GRU) with PyTorch's
 * equations, and the checks every step goes through.
 */
#include "cell.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static int gates_of(nn_cell_kind kind)
{
    return kind == NN_CELL_LSTM ? 4 : kind == NN_CELL_GRU ? 3 : 1;
}

ad_status nn_cell_create(nn_cell *cell, nn_cell_kind kind, nn_params *ps, const char *prefix,
                         int layer, int reverse, int input_size, int hidden_size, int bias,
                         ad_error *err)
{
    if (!cell || !ps || !prefix) return ad_error_set(err, AD_ERR_NULL, "cell_create: an argument is NULL");
    if (kind < NN_CELL_RNN_TANH || kind > NN_CELL_GRU)
        return ad_error_set(err, AD_ERR_ARG, "cell_create: unknown cell kind");
    if (input_size < 1 || hidden_size < 1 || layer < 0)
        return ad_error_set(err, AD_ERR_ARG, "cell_create: sizes must be >= 1 and layer >= 0");
    memset(cell, 0, sizeof *cell);
    cell->kind = kind;
    cell->input_size = input_size;
    cell->hidden_size = hidden_size;
    cell->has_c = kind == NN_CELL_LSTM;
    cell->step = kind == NN_CELL_LSTM ? nn_lstm_step : kind == NN_CELL_GRU ? nn_gru_step : nn_rnn_step;
    const char *rev = reverse ? "_reverse" : "";
    /* An empty prefix registers PyTorch's bare names ("weight_ih_l0"), as a
     * state dict of a torch.nn.LSTM on its own has them. */
    const char *dot = prefix[0] ? "." : "";
    snprintf(cell->name, sizeof cell->name, "%s%sl%d%s", prefix, dot, layer, rev);
    int64_t g = (int64_t)gates_of(kind) * hidden_size;
    ad_shape shapes[4] = {ad_shape2(g, input_size), ad_shape2(g, hidden_size), ad_shape1(g),
                          ad_shape1(g)};
    const char *names[4] = {"weight_ih", "weight_hh", "bias_ih", "bias_hh"};
    int n = bias ? 4 : 2;
    for (int i = 0; i < n; i++) {
        char full[AD_NAME_SIZE];
        int len = snprintf(full, sizeof full, "%s%s%s_l%d%s", prefix, dot, names[i], layer, rev);
        if (len < 0 || len >= (int)sizeof full)
            return ad_error_set(err, AD_ERR_ARG, "cell_create: parameter name too long");
        cell->w[i] = nn_params_add(ps, full, shapes[i], err);
        if (!cell->w[i]) return err ? err->code : AD_ERR_ARG;
    }
    cell->n_w = n;
    return ad_error_set(err, AD_OK, NULL);
}

void nn_cell_init_pytorch(nn_cell *cell, ad_rng *rng)
{
    if (!cell || !rng || cell->hidden_size < 1) return;
    double k = 1.0 / sqrt((double)cell->hidden_size);
    for (int i = 0; i < cell->n_w; i++) nn_init_uniform(cell->w[i], rng, -k, k);
}

static ad_dtype cell_dtype(const nn_cell *cell)
{
    return cell->n_w > 0 ? ad_tensor_dtype(ad_param_value(cell->w[0])) : AD_F64;
}

/* Checks that s is [B, n] of the cell's dtype. */
static int check_2d(ad_tape *t, const nn_cell *cell, const char *what, ad_tensor *s, int64_t b,
                    int64_t n)
{
    if (!s) return ad_tape_fail(t, AD_ERR_NULL, "%s: %s is NULL", cell->name, what) == AD_OK;
    if (cell->n_w > 0 && ad_tensor_dtype(s) != cell_dtype(cell))
        return ad_tape_fail(t, AD_ERR_DTYPE, "%s: %s is %s, the cell's weights are %s", cell->name,
                            what, ad_dtype_name(ad_tensor_dtype(s)),
                            ad_dtype_name(cell_dtype(cell))) == AD_OK;
    if (ad_tensor_rank(s) != 2 || (b >= 0 && ad_tensor_dim(s, 0) != b) || ad_tensor_dim(s, 1) != n) {
        char rows[24] = "B";
        if (b >= 0) snprintf(rows, sizeof rows, "%lld", (long long)b);
        return ad_tape_fail(t, AD_ERR_SHAPE, "%s: %s must be [%s, %lld], got rank %d [%lld, %lld]",
                            cell->name, what, rows, (long long)n, ad_tensor_rank(s),
                            (long long)ad_tensor_dim(s, 0), (long long)ad_tensor_dim(s, 1)) == AD_OK;
    }
    return 1;
}

ad_status nn_cell_step(ad_tape *t, const nn_cell *cell, ad_tensor *x, const nn_state *prev,
                       nn_state *next)
{
    if (!t) return AD_ERR_NULL;
    if (ad_tape_status(t) != AD_OK) return ad_tape_status(t);
    if (!cell || !cell->step || !prev || !next)
        return ad_tape_fail(t, AD_ERR_NULL, "cell step: %s is NULL",
                            !cell ? "cell" : !cell->step ? "cell->step" : !prev ? "prev" : "next");
    if (!check_2d(t, cell, "x", x, -1, cell->input_size)) return ad_tape_status(t);
    int64_t b = ad_tensor_dim(x, 0);
    if (!check_2d(t, cell, "h", prev->h, b, cell->hidden_size)) return ad_tape_status(t);
    if (cell->has_c && !check_2d(t, cell, "c", prev->c, b, cell->hidden_size))
        return ad_tape_status(t);
    next->h = next->c = NULL;
    ad_status st = cell->step(t, cell, x, prev, next);
    if (st == AD_OK && !next->h) st = ad_tape_fail(t, AD_ERR_STATE, "%s: step gave no h", cell->name);
    return st;
}

ad_status nn_cell_zero_state(ad_tape *t, const nn_cell *cell, int64_t batch, nn_state *out)
{
    if (!t) return AD_ERR_NULL;
    if (!cell || !out) return ad_tape_fail(t, AD_ERR_NULL, "zero_state: %s is NULL", !cell ? "cell" : "out");
    if (batch < 1) return ad_tape_fail(t, AD_ERR_EMPTY, "%s: batch size %lld", cell->name, (long long)batch);
    ad_shape s = ad_shape2(batch, cell->hidden_size);
    out->h = ad_zeros(t, cell_dtype(cell), s);
    out->c = cell->has_c ? ad_zeros(t, cell_dtype(cell), s) : NULL;
    return ad_tape_status(t);
}

/* v W^T + b with W = cell->w[wi] and b = cell->w[bi] when the cell has biases;
 * the weight's copy is recorded before the bias's (copies are numbered in order). */
static ad_tensor *projection(ad_tape *t, const nn_cell *cell, ad_tensor *v, int wi, int bi)
{
    ad_tensor *w = ad_use(t, cell->w[wi]);
    if (cell->n_w < 4) return ad_matmul(t, v, w, AD_TRANS_B);
    ad_tensor *b = ad_use(t, cell->w[bi]);
    return ad_addmm(t, b, v, w, AD_TRANS_B);
}

ad_tensor *nn_cell_input_projection(ad_tape *t, const nn_cell *cell, ad_tensor *x)
{
    if (!t) return NULL;
    if (!cell || cell->kind == NN_CELL_CUSTOM || cell->n_w < 2) {
        ad_tape_fail(t, AD_ERR_ARG, "input_projection: needs a built-in cell");
        return NULL;
    }
    return projection(t, cell, x, 0, 2);
}

/* h W_hh^T (+ b_hh). */
static ad_tensor *hidden_projection(ad_tape *t, const nn_cell *cell, ad_tensor *h)
{
    return projection(t, cell, h, 1, 3);
}

/* The op-by-op gates: the reference the fused gate ops are held to. */
static ad_status plain_gates(ad_tape *t, const nn_cell *cell, ad_tensor *gx, ad_tensor *gh,
                             const nn_state *prev, nn_state *next)
{
    int64_t hs = cell->hidden_size, sizes[4] = {hs, hs, hs, hs};
    ad_tensor *q[4], *b[3];
    if (cell->kind == NN_CELL_LSTM) {
        if (ad_split(t, ad_add(t, gx, gh), 1, 4, sizes, q) != AD_OK) return ad_tape_status(t);
        ad_tensor *i = ad_sigmoid(t, q[0]), *f = ad_sigmoid(t, q[1]);
        ad_tensor *g = ad_tanh(t, q[2]), *o = ad_sigmoid(t, q[3]);
        next->c = ad_add(t, ad_mul(t, f, prev->c), ad_mul(t, i, g));
        next->h = ad_mul(t, o, ad_tanh(t, next->c));
        return ad_tape_status(t);
    }
    if (ad_split(t, gx, 1, 3, sizes, q) != AD_OK || ad_split(t, gh, 1, 3, sizes, b) != AD_OK)
        return ad_tape_status(t);
    ad_tensor *r = ad_sigmoid(t, ad_add(t, q[0], b[0]));
    ad_tensor *z = ad_sigmoid(t, ad_add(t, q[1], b[1]));
    ad_tensor *n = ad_tanh(t, ad_add(t, q[2], ad_mul(t, r, b[2])));
    /* (1 - z) n + z h  ==  n + z (h - n) */
    next->h = ad_add(t, n, ad_mul(t, z, ad_sub(t, prev->h, n)));
    return ad_tape_status(t);
}

/* The fused Elman and LSTM gates keep what their backward needs, not the
 * step's hidden projection: its buffer goes back to the tape for the next
 * step (the GRU's backward reads it). */
static void release_projection(ad_tape *t, ad_tensor *gh)
{
    if (gh && ad_tape_status(t) == AD_OK) ad_tape_release(t, gh);
}

ad_status nn_cell_step_projected(ad_tape *t, const nn_cell *cell, ad_tensor *gx,
                                 const nn_state *prev, nn_state *next)
{
    if (!t) return AD_ERR_NULL;
    if (!cell || !prev || !next || !gx)
        return ad_tape_fail(t, AD_ERR_NULL, "step_projected: an argument is NULL");
    ad_tensor *gh = hidden_projection(t, cell, prev->h);
    next->c = NULL;
    switch (cell->kind) {
    case NN_CELL_RNN_TANH:
    case NN_CELL_RNN_RELU: {
        int relu = cell->kind == NN_CELL_RNN_RELU;
        if (!cell->plain_gates) {
            next->h = ad_rnn_cell(t, gx, gh, relu ? AD_RNN_RELU : AD_RNN_TANH);
            release_projection(t, gh);
            break;
        }
        ad_tensor *pre = ad_add(t, gx, gh);
        next->h = relu ? ad_relu(t, pre) : ad_tanh(t, pre);
        break;
    }
    case NN_CELL_LSTM:
        if (cell->plain_gates) return plain_gates(t, cell, gx, gh, prev, next);
        next->c = ad_lstm_cell_state(t, gx, gh, prev->c);
        next->h = ad_lstm_cell_output(t, gx, gh, next->c);
        release_projection(t, gh);
        break;
    case NN_CELL_GRU:
        if (cell->plain_gates) return plain_gates(t, cell, gx, gh, prev, next);
        next->h = ad_gru_cell(t, gx, gh, prev->h);
        break;
    default: return ad_tape_fail(t, AD_ERR_ARG, "%s: not a built-in cell", cell->name);
    }
    return ad_tape_status(t);
}

ad_status nn_rnn_step(ad_tape *t, const nn_cell *cell, ad_tensor *x, const nn_state *prev,
                      nn_state *next)
{
    return nn_cell_step_projected(t, cell, nn_cell_input_projection(t, cell, x), prev, next);
}

ad_status nn_lstm_step(ad_tape *t, const nn_cell *cell, ad_tensor *x, const nn_state *prev,
                       nn_state *next)
{
    return nn_cell_step_projected(t, cell, nn_cell_input_projection(t, cell, x), prev, next);
}

ad_status nn_gru_step(ad_tape *t, const nn_cell *cell, ad_tensor *x, const nn_state *prev,
                      nn_state *next)
{
    return nn_cell_step_projected(t, cell, nn_cell_input_projection(t, cell, x), prev, next);
}
