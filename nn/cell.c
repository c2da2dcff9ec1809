/*
 * cell.c - built-in recurrent cells (Elman, LSTM, GRU) with PyTorch's
 * equations, and the checks every step goes through.
 */
#include "cell.h"
#include "internal.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static int gates_of(nn_cell_kind kind)
{
    return kind == NN_CELL_LSTM ? 4 : kind == NN_CELL_GRU ? 3 : 1;
}

static ad_status check_options(const nn_cell_options *o, ad_error *err)
{
    if (o->kind < NN_CELL_RNN_TANH || o->kind > NN_CELL_GRU)
        return ad_error_set(err, AD_ERR_ARG, "cell_create: unknown cell kind %d", (int)o->kind);
    if (o->input_size < 1 || o->hidden_size < 1 || o->layer < 0)
        return ad_error_set(err, AD_ERR_ARG, "cell_create: sizes must be >= 1 and layer >= 0 (input %d, hidden %d, layer %d)",
                            o->input_size, o->hidden_size, o->layer);
    if (o->proj_size != 0 && (o->kind != NN_CELL_LSTM || o->proj_size < 0 || o->proj_size >= o->hidden_size))
        return ad_error_set(err, AD_ERR_ARG, "cell_create: proj_size %d needs an LSTM and 0 < proj_size < hidden_size (%d)",
                            o->proj_size, o->hidden_size);
    return AD_OK;
}

/* Registers "<prefix>.<what>_l<layer><_reverse>" as w[cell->n_w++]. */
static ad_status add_weight(nn_cell *cell, nn_params *ps, const char *prefix, const char *what,
                            const nn_cell_options *o, ad_shape shape, ad_error *err)
{
    char full[AD_NAME_SIZE];
    const char *dot = prefix[0] ? "." : "";
    int len = snprintf(full, sizeof full, "%s%s%s_l%d%s", prefix, dot, what, o->layer, o->reverse ? "_reverse" : "");
    if (len < 0 || len >= (int)sizeof full) return ad_error_set(err, AD_ERR_ARG, "cell_create: parameter name too long");
    cell->w[cell->n_w] = nn_params_add(ps, full, shape, err);
    if (!cell->w[cell->n_w]) return err ? err->code : AD_ERR_ARG;
    cell->n_w++;
    return AD_OK;
}

ad_status nn_cell_create(nn_cell *cell, nn_params *ps, const char *prefix, const nn_cell_options *opts,
                         ad_error *err)
{
    if (!cell || !ps || !prefix || !opts) return ad_error_set(err, AD_ERR_NULL, "cell_create: an argument is NULL");
    ad_status st = check_options(opts, err);
    if (st != AD_OK) return st;
    memset(cell, 0, sizeof *cell);
    cell->kind = opts->kind;
    cell->input_size = opts->input_size;
    cell->hidden_size = opts->hidden_size;
    cell->proj_size = opts->proj_size;
    cell->has_bias = !opts->no_bias;
    cell->has_c = opts->kind == NN_CELL_LSTM;
    cell->step = nn_builtin_step;
    /* An empty prefix registers PyTorch's bare names ("weight_ih_l0"), as a
     * state dict of a torch.nn.LSTM on its own has them. */
    snprintf(cell->name, sizeof cell->name, "%s%sl%d%s", prefix, prefix[0] ? "." : "", opts->layer,
             opts->reverse ? "_reverse" : "");
    int64_t g = (int64_t)gates_of(opts->kind) * opts->hidden_size, out = nn_cell_output_size(cell);
    st = add_weight(cell, ps, prefix, "weight_ih", opts, ad_shape2(g, opts->input_size), err);
    if (st == AD_OK) st = add_weight(cell, ps, prefix, "weight_hh", opts, ad_shape2(g, out), err);
    if (st == AD_OK && cell->has_bias) st = add_weight(cell, ps, prefix, "bias_ih", opts, ad_shape1(g), err);
    if (st == AD_OK && cell->has_bias) st = add_weight(cell, ps, prefix, "bias_hh", opts, ad_shape1(g), err);
    if (st == AD_OK && cell->proj_size)
        st = add_weight(cell, ps, prefix, "weight_hr", opts, ad_shape2(cell->proj_size, opts->hidden_size), err);
    return st != AD_OK ? st : ad_error_set(err, AD_OK, NULL);
}

int nn_cell_output_size(const nn_cell *cell)
{
    if (!cell) return 0;
    return cell->proj_size > 0 ? cell->proj_size : cell->hidden_size;
}

void nn_cell_init_pytorch(nn_cell *cell, ad_rng *rng)
{
    if (!cell || !rng || cell->hidden_size < 1) return;
    double k = 1.0 / sqrt((double)cell->hidden_size);
    for (int i = 0; i < cell->n_w; i++) nn_init_uniform(nn_cell_weight(cell, i), rng, -k, k);
}

ad_param *nn_cell_weight(const nn_cell *cell, int i)
{
    if (!cell || i < 0 || i >= cell->n_w) return NULL;
    if (cell->params) return cell->params[i];
    return i < NN_CELL_MAX_PARAMS ? cell->w[i] : NULL;
}

static ad_dtype cell_dtype(const nn_cell *cell)
{
    ad_param *w0 = nn_cell_weight(cell, 0);
    return w0 ? ad_tensor_dtype(ad_param_value(w0)) : AD_F64;
}

/* A hand-filled cell's weight list: n_w in range and no NULL entry (a
 * custom cell's n_w = 9 would otherwise read past w[]; with `params` set,
 * any n_w >= 0 is allowed). */
static ad_status check_weights(ad_tape *t, const nn_cell *cell)
{
    if (cell->n_w < 0 || (!cell->params && cell->n_w > NN_CELL_MAX_PARAMS))
        return ad_tape_fail(t, AD_ERR_ARG,
                            "%s: n_w = %d is outside 0..%d (NN_CELL_MAX_PARAMS; set params for more)",
                            cell->name, cell->n_w, NN_CELL_MAX_PARAMS);
    for (int i = 0; i < cell->n_w; i++)
        if (!nn_cell_weight(cell, i))
            return ad_tape_fail(t, AD_ERR_NULL, "%s: %s[%d] is NULL (n_w = %d)", cell->name,
                                cell->params ? "params" : "w", i, cell->n_w);
    return AD_OK;
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
    if (check_weights(t, cell) != AD_OK) return ad_tape_status(t);
    if (!check_2d(t, cell, "x", x, -1, cell->input_size)) return ad_tape_status(t);
    int64_t b = ad_tensor_dim(x, 0);
    if (!check_2d(t, cell, "h", prev->h, b, nn_cell_output_size(cell))) return ad_tape_status(t);
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
    if (check_weights(t, cell) != AD_OK) return ad_tape_status(t);
    out->h = ad_zeros(t, cell_dtype(cell), ad_shape2(batch, nn_cell_output_size(cell)));
    out->c = cell->has_c ? ad_zeros(t, cell_dtype(cell), ad_shape2(batch, cell->hidden_size)) : NULL;
    return ad_tape_status(t);
}

/* v W^T + b with W = cell->w[wi] and b = cell->w[bi] when the cell has biases;
 * the weight's copy is recorded before the bias's (copies are numbered in order). */
static ad_tensor *projection(ad_tape *t, const nn_cell *cell, ad_tensor *v, int wi, int bi)
{
    ad_tensor *w = ad_use(t, cell->w[wi]);
    if (!cell->has_bias) return ad_matmul(t, v, w, AD_TRANS_B);
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

/* With proj_size: h = (o tanh c) W_hr^T; W_hr is the last weight. */
static ad_tensor *project_output(ad_tape *t, const nn_cell *cell, ad_tensor *h)
{
    if (!cell->proj_size) return h;
    return ad_matmul(t, h, ad_use(t, cell->w[cell->n_w - 1]), AD_TRANS_B);
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
        next->h = project_output(t, cell, ad_mul(t, o, ad_tanh(t, next->c)));
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
    int plain = cell->step == nn__builtin_step_plain;
    next->c = NULL;
    switch (cell->kind) {
    case NN_CELL_RNN_TANH:
    case NN_CELL_RNN_RELU: {
        int relu = cell->kind == NN_CELL_RNN_RELU;
        if (!plain) {
            next->h = ad_rnn_cell(t, gx, gh, relu ? AD_RNN_RELU : AD_RNN_TANH);
            release_projection(t, gh);
            break;
        }
        ad_tensor *pre = ad_add(t, gx, gh);
        next->h = relu ? ad_relu(t, pre) : ad_tanh(t, pre);
        break;
    }
    case NN_CELL_LSTM:
        if (plain) return plain_gates(t, cell, gx, gh, prev, next);
        next->c = ad_lstm_cell_state(t, gx, gh, prev->c);
        next->h = project_output(t, cell, ad_lstm_cell_output(t, gx, gh, next->c));
        release_projection(t, gh);
        break;
    case NN_CELL_GRU:
        if (plain) return plain_gates(t, cell, gx, gh, prev, next);
        next->h = ad_gru_cell(t, gx, gh, prev->h);
        break;
    default: return ad_tape_fail(t, AD_ERR_ARG, "%s: not a built-in cell", cell->name);
    }
    return ad_tape_status(t);
}

ad_status nn_builtin_step(ad_tape *t, const nn_cell *cell, ad_tensor *x, const nn_state *prev,
                          nn_state *next)
{
    return nn_cell_step_projected(t, cell, nn_cell_input_projection(t, cell, x), prev, next);
}

/* The reference path: the same step as nn_builtin_step with the op-by-op
 * gates; nn_cell_step_projected() takes it for a cell whose step is this. */
ad_status nn__builtin_step_plain(ad_tape *t, const nn_cell *cell, ad_tensor *x, const nn_state *prev,
                                 nn_state *next)
{
    return nn_cell_step_projected(t, cell, nn_cell_input_projection(t, cell, x), prev, next);
}
