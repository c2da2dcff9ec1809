/*
 * test_nn_rnn.c - Elman, LSTM and GRU cells and the unroller against
 * PyTorch's nn.RNN / nn.LSTM / nn.GRU (tests/data/rnn, written by
 * tests/data/make_fixtures.py): the state dict loads from .npy files and
 * outputs, input gradients and parameter gradients agree to 1e-10 relative
 * in f64. Also: masking, per-copy gradients, bad inputs.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <unroll/nn/nn.h>
#include "testsupport.h"
#include "../nn/internal.h"

typedef struct rnn_case {
    const char *dir;
    const char *prefix;
    nn_cell_kind kind;
    int layers, bidir, bias, proj;
} rnn_case;

static const rnn_case cases[] = {
    {"rnn_tanh", "rnn", NN_CELL_RNN_TANH, 2, 0, 1, 0}, {"rnn_relu", "rnn", NN_CELL_RNN_RELU, 1, 0, 1, 0},
    {"lstm", "lstm", NN_CELL_LSTM, 2, 0, 1, 0},         {"gru", "gru", NN_CELL_GRU, 2, 0, 1, 0},
    {"gru_bidir", "gru", NN_CELL_GRU, 1, 1, 1, 0},      {"lstm_nobias_b1", "lstm", NN_CELL_LSTM, 1, 0, 0, 0},
    {"lstm_proj", "lstm", NN_CELL_LSTM, 2, 0, 1, 2}, {"lstm_proj_bidir", "lstm", NN_CELL_LSTM, 1, 1, 1, 3},
};

static ad_tensor *load(const char *dir, const char *file)
{
    char path[512];
    snprintf(path, sizeof path, "%s/rnn/%s/%s.npy", UNROLL_TEST_DATA, dir, file);
    ad_error err;
    ad_tensor *x = ad_npy_load(path, &err);
    cr_assert_not_null(x, "%s", err.msg);
    return x;
}

static void expect_close(const char *what, const double *got, ad_tensor *want, double rtol)
{
    const double *w = ad_tensor_f64(want);
    for (size_t i = 0; i < ad_tensor_numel(want); i++)
        cr_assert(fabs(got[i] - w[i]) <= rtol * fabs(w[i]) + 1e-13, "%s[%zu]: %.17g, PyTorch %.17g",
                  what, i, got[i], w[i]);
}

/* Step k of a [B, T, F] tensor as [B, F]. */
static ad_tensor *step_of(ad_tape *t, ad_tensor *x, int k)
{
    int64_t b = ad_tensor_dim(x, 0), f = ad_tensor_dim(x, 2);
    return ad_reshape(t, ad_slice(t, x, 1, k, 1), ad_shape2(b, f));
}

/* Stacks T states [B, H] into [B, T, H]. */
static ad_tensor *stack(ad_tape *t, ad_tensor **hs, int T)
{
    ad_tensor *parts[64];
    for (int k = 0; k < T; k++) {
        int64_t b = ad_tensor_dim(hs[k], 0), h = ad_tensor_dim(hs[k], 1);
        parts[k] = ad_reshape(t, hs[k], ad_shape3(b, 1, h));
    }
    return ad_concat(t, parts, T, 1);
}

static int case_ids[sizeof cases / sizeof cases[0]];

ParameterizedTestParameters(nn_rnn, matches_pytorch)
{
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) case_ids[i] = (int)i;
    return cr_make_param_array(int, case_ids, sizeof cases / sizeof cases[0]);
}

ParameterizedTest(int *id, nn_rnn, matches_pytorch)
{
    const rnn_case *c = &cases[*id];
    long before = ts_live_allocs();
    ad_error err;
    ad_tensor *xh = load(c->dir, "x"), *h0h = load(c->dir, "h0"), *uh = load(c->dir, "u");
    ad_tensor *c0h = c->kind == NN_CELL_LSTM ? load(c->dir, "c0") : NULL;
    int B = (int)ad_tensor_dim(xh, 0), T = (int)ad_tensor_dim(xh, 1), I = (int)ad_tensor_dim(xh, 2);
    int P = (int)ad_tensor_dim(h0h, 2), H = c0h ? (int)ad_tensor_dim(c0h, 2) : P; /* P: the size of h */
    nn_params *ps = nn_params_new(AD_F64, &err);
    nn_cell cells[4];
    int n_cells = c->bidir ? 2 : c->layers;
    for (int l = 0; l < n_cells; l++) {
        int layer = c->bidir ? 0 : l, in = (l == 0 || c->bidir) ? I : P;
        nn_cell_options co = {.kind = c->kind, .layer = layer, .reverse = c->bidir && l == 1, .input_size = in,
                              .hidden_size = H, .no_bias = !c->bias, .proj_size = c->proj};
        cr_assert_eq(nn_cell_create(&cells[l], ps, c->prefix, &co, &err), AD_OK, "%s", err.msg);
        cr_assert_eq(nn_cell_output_size(&cells[l]), P);
    }
    char dir[512];
    snprintf(dir, sizeof dir, "%s/rnn/%s", UNROLL_TEST_DATA, c->dir);
    cr_assert_eq(nn_params_load_npy_dir(ps, dir, &err), AD_OK, "%s", err.msg);

    ad_tape *t = ad_tape_new(NULL);
    ad_tensor *x = ad_variable(t, AD_F64, ad_tensor_shape(xh), ad_tensor_data(xh));
    ad_tensor *h0 = ad_constant(t, h0h), *c0 = c0h ? ad_constant(t, c0h) : NULL;
    ad_tensor *xs[16];
    nn_state init[4], outs[16], outs_b[16];
    for (int k = 0; k < T; k++) xs[k] = step_of(t, x, k);
    for (int l = 0; l < n_cells; l++) {
        init[l].h = ad_reshape(t, ad_slice(t, h0, 0, l, 1), ad_shape2(B, P));
        init[l].c = c0 ? ad_reshape(t, ad_slice(t, c0, 0, l, 1), ad_shape2(B, H)) : NULL;
    }
    nn_unroll_options o = {0};
    o.h0 = init;
    ad_tensor *hs[16];
    if (c->bidir) {
        cr_assert_eq(nn_unroll_bidirectional(t, &cells[0], &cells[1], xs, T, &o, outs, outs_b, hs),
                     AD_OK, "%s", ad_tape_message(t));
    } else {
        cr_assert_eq(nn_unroll_layers(t, cells, n_cells, xs, T, &o, outs, NULL), AD_OK, "%s",
                     ad_tape_message(t));
        for (int k = 0; k < T; k++) hs[k] = outs[k].h;
    }
    ad_tensor *out = stack(t, hs, T);
    ad_tensor *loss = ad_sum(t, ad_mul(t, out, ad_constant(t, uh)), AD_AXIS_ALL, 0);
    cr_assert_not_null(loss, "%s", ad_tape_message(t));
    ad_tensor *want_out = load(c->dir, "out"), *want_loss = load(c->dir, "loss");
    expect_close("output", ad_tensor_f64(out), want_out, 1e-10);
    expect_close("loss", ad_tensor_f64(loss), want_loss, 1e-10);
    cr_assert_eq(ad_backward(t, loss, NULL), AD_OK, "%s", ad_tape_message(t));
    ad_tensor *gx = load(c->dir, "gx");
    expect_close("dL/dx", ad_tensor_grad_f64(x), gx, 1e-10);
    for (size_t i = 0; i < nn_params_count(ps); i++) {
        ad_param *p = nn_params_at(ps, i);
        char file[128];
        snprintf(file, sizeof file, "g.%s", ad_param_name(p));
        ad_tensor *g = load(c->dir, file);
        expect_close(ad_param_name(p), ad_tensor_f64(ad_param_grad(p)), g, 1e-10);
        ad_tensor_free(g);
    }
    ad_tensor *tensors[] = {xh, h0h, uh, c0h, want_out, want_loss, gx};
    for (size_t i = 0; i < sizeof tensors / sizeof tensors[0]; i++) ad_tensor_free(tensors[i]);
    ad_tape_free(t);
    nn_params_free(ps);
    cr_assert_eq(ts_live_allocs(), before);
}

/* ---- masking and per-copy gradients ----------------------------------------------------- */

/* sum over steps of sum(h_t * w_t) restricted to valid steps, for the given rows. */
static double masked_run(nn_cell_kind kind, const double *xdata, int B, int T, const int64_t *len,
                         int row, double *grads_out, size_t *n_grads)
{
    const int I = 2, H = 3;
    nn_params *ps = nn_params_new(AD_F64, NULL);
    nn_cell cell;
    nn_cell_create(&cell, ps, "m", &(nn_cell_options){.kind = kind, .input_size = I, .hidden_size = H}, NULL);
    ad_rng rng;
    ad_rng_seed(&rng, 3, 0);
    nn_cell_init_pytorch(&cell, &rng);
    ad_tape *t = ad_tape_new(NULL);
    int b0 = row < 0 ? 0 : row, nb = row < 0 ? B : 1;
    ad_tensor *xs[8];
    for (int k = 0; k < T; k++) {
        double buf[16];
        for (int b = 0; b < nb; b++)
            for (int i = 0; i < I; i++) buf[b * I + i] = xdata[((b0 + b) * T + k) * I + i];
        xs[k] = ad_from_data(t, AD_F64, ad_shape2(nb, I), buf);
    }
    nn_unroll_options o = {0};
    int64_t lens[8];
    for (int b = 0; b < nb; b++) lens[b] = len[b0 + b];
    o.lengths = lens;
    nn_state outs[8], last;
    cr_assert_eq(nn_unroll(t, &cell, xs, row < 0 ? T : (int)len[row], &o, outs, &last), AD_OK,
                 "%s", ad_tape_message(t));
    ad_tensor *loss = ad_sum(t, ad_tanh(t, last.h), AD_AXIS_ALL, 0);
    cr_assert_eq(ad_backward(t, loss, NULL), AD_OK, "%s", ad_tape_message(t));
    double l = ad_tensor_item(loss);
    size_t n;
    const double *g = nn_params_grads(ps, &n);
    memcpy(grads_out, g, n * sizeof *g);
    *n_grads = n;
    ad_tape_free(t);
    nn_params_free(ps);
    return l;
}

Test(nn_rnn, padded_steps_change_nothing)
{
    long before = ts_live_allocs();
    enum { B = 3, T = 5, I = 2 };
    double x[B * T * I];
    ts_fill_uniform(x, B * T * I, 17, -1, 1);
    int64_t len[B] = {5, 2, 4};
    nn_cell_kind kinds[3] = {NN_CELL_RNN_TANH, NN_CELL_LSTM, NN_CELL_GRU};
    for (int k = 0; k < 3; k++) {
        double g_batch[256], g_sum[256] = {0}, g_one[256];
        size_t n;
        double l_batch = masked_run(kinds[k], x, B, T, len, -1, g_batch, &n);
        double l_sum = 0;
        for (int b = 0; b < B; b++) {
            l_sum += masked_run(kinds[k], x, B, T, len, b, g_one, &n);
            for (size_t i = 0; i < n; i++) g_sum[i] += g_one[i];
        }
        cr_assert_float_eq(l_batch, l_sum, 1e-12, "kind %d", k);
        for (size_t i = 0; i < n; i++)
            cr_assert(fabs(g_batch[i] - g_sum[i]) <= 1e-12 * fabs(g_sum[i]) + 1e-15,
                      "kind %d grad %zu: batch %.17g, rows alone %.17g", k, i, g_batch[i], g_sum[i]);
    }
    cr_assert_eq(ts_live_allocs(), before);
}

Test(nn_rnn, copies_sum_to_the_parameter_gradient)
{
    long before = ts_live_allocs();
    nn_params *ps = nn_params_new(AD_F64, NULL);
    nn_cell cell;
    cr_assert_eq(nn_cell_create(&cell, ps, "lstm", &(nn_cell_options){.kind = NN_CELL_LSTM, .input_size = 2, .hidden_size = 3}, NULL), AD_OK);
    ad_rng rng;
    ad_rng_seed(&rng, 9, 0);
    nn_cell_init_pytorch(&cell, &rng);
    ad_tape *t = ad_tape_new(NULL);
    enum { T = 6 };
    ad_tensor *xs[T];
    for (int k = 0; k < T; k++) xs[k] = ad_rand_normal(t, &rng, AD_F64, ad_shape2(2, 2), 0, 1);
    nn_state last;
    cr_assert_eq(nn_unroll(t, &cell, xs, T, NULL, NULL, &last), AD_OK);
    cr_assert_eq(ad_backward(t, ad_sum(t, last.h, AD_AXIS_ALL, 0), NULL), AD_OK);
    for (int w = 0; w < cell.n_w; w++) {
        ad_tensor *copies[T + 1];
        cr_assert_eq(ad_tape_copies(t, cell.w[w], copies, T + 1), T, "one copy per step");
        ad_tensor *g = ad_param_grad(cell.w[w]);
        for (size_t i = 0; i < ad_tensor_numel(g); i++) {
            double s = 0;
            /* backward adds the copies into the parameter in reverse recording order */
            for (int k = T - 1; k >= 0; k--) s += ad_tensor_grad_f64(copies[k])[i];
            cr_assert_eq(s, ad_tensor_f64(g)[i], "%s[%zu]", ad_param_name(cell.w[w]), i);
        }
    }
    ad_tape_free(t);
    nn_params_free(ps);
    cr_assert_eq(ts_live_allocs(), before);
}

/* ---- bad inputs ------------------------------------------------------------------------- */

static nn_params *bad_ps;
static nn_cell bad_cell;

static ad_tensor *call_bad(ad_tape *t, int which)
{
    if (!bad_ps) {
        bad_ps = nn_params_new(AD_F64, NULL);
        nn_cell_create(&bad_cell, bad_ps, "gru", &(nn_cell_options){.kind = NN_CELL_GRU, .input_size = 2, .hidden_size = 3}, NULL);
    }
    ad_tensor *x = ad_zeros(t, AD_F64, ad_shape2(4, 2));
    ad_tensor *xs[3] = {x, x, x};
    nn_state h = {ad_zeros(t, AD_F64, ad_shape2(4, 5)), NULL}, out;
    nn_unroll_options o = {0};
    int64_t len[4] = {1, 2, 9, 1};
    switch (which) {
    case 0: nn_unroll(t, &bad_cell, xs, 0, NULL, NULL, &out); break;
    case 1: nn_unroll(t, NULL, xs, 3, NULL, NULL, &out); break;
    case 2: nn_unroll(t, &bad_cell, NULL, 3, NULL, NULL, &out); break;
    case 3: o.h0 = &h; nn_unroll(t, &bad_cell, xs, 3, &o, NULL, &out); break;
    case 4: {
        ad_tensor *f = ad_zeros(t, AD_F32, ad_shape2(4, 2));
        ad_tensor *fs[1] = {f};
        nn_unroll(t, &bad_cell, fs, 1, NULL, NULL, &out);
        break;
    }
    case 5: {
        ad_tensor *w = ad_zeros(t, AD_F64, ad_shape2(4, 3));
        ad_tensor *ws[1] = {w};
        nn_unroll(t, &bad_cell, ws, 1, NULL, NULL, &out);
        break;
    }
    case 6: o.lengths = len; nn_unroll(t, &bad_cell, xs, 3, &o, NULL, &out); break;
    case 7: xs[1] = NULL; nn_unroll(t, &bad_cell, xs, 3, NULL, NULL, &out); break;
    case 8: nn_unroll_layers(t, &bad_cell, 0, xs, 3, NULL, &out, NULL); break;
    }
    return NULL;
}

static const ts_bad_case bad[] = {
    {"T = 0", AD_ERR_EMPTY, "empty sequence (T = 0)"},
    {"NULL cell", AD_ERR_NULL, "cell is NULL"},
    {"NULL inputs", AD_ERR_NULL, "xs is NULL"},
    {"hidden size", AD_ERR_SHAPE, "gru.l0: h must be [4, 3]"},
    {"dtype", AD_ERR_DTYPE, "x is f32, the cell's weights are f64"},
    {"input size", AD_ERR_SHAPE, "x must be [B, 2]"},
    {"length", AD_ERR_ARG, "length 9 of row 2 is outside 1..3"},
    {"NULL step input", AD_ERR_NULL, "input at t=1 is NULL"},
    {"no layers", AD_ERR_EMPTY, "no layers"},
};

Test(nn_rnn, bad_inputs)
{
    ts_expect_tape_errors(call_bad, bad, (int)(sizeof bad / sizeof bad[0]));
    nn_params_free(bad_ps);
    bad_ps = NULL;
    cr_assert_eq(nn_unroll(NULL, NULL, NULL, 1, NULL, NULL, NULL), AD_ERR_NULL);
}

/* A learnable initial state receives the batch sum of dL/dh0. */
Test(nn_rnn, learnable_initial_state)
{
    long before = ts_live_allocs();
    nn_params *ps = nn_params_new(AD_F64, NULL);
    nn_cell cell;
    nn_cell_create(&cell, ps, "lstm", &(nn_cell_options){.kind = NN_CELL_LSTM, .input_size = 2, .hidden_size = 3}, NULL);
    ad_param *h0 = nn_params_add(ps, "lstm.h0", ad_shape2(1, 3), NULL);
    ad_param *c0 = nn_params_add(ps, "lstm.c0", ad_shape2(1, 3), NULL);
    ad_rng rng;
    ad_rng_seed(&rng, 12, 0);
    nn_params_init_uniform(ps, &rng, -0.5, 0.5);
    double xs_data[4 * 3 * 2];
    ts_fill_uniform(xs_data, 24, 13, -1, 1);
    ad_tape *t = ad_tape_new(NULL);
    ad_tensor *xs[4];
    for (int k = 0; k < 4; k++) xs[k] = ad_from_data(t, AD_F64, ad_shape2(3, 2), xs_data + k * 6);
    nn_state init, last;
    cr_assert_eq(nn_initial_state(t, &cell, 3, h0, c0, &init), AD_OK, "%s", ad_tape_message(t));
    nn_unroll_options o = {0};
    o.h0 = &init;
    cr_assert_eq(nn_unroll(t, &cell, xs, 4, &o, NULL, &last), AD_OK);
    cr_assert_eq(ad_backward(t, ad_sum(t, last.h, AD_AXIS_ALL, 0), NULL), AD_OK);
    /* The same run from variables holding the broadcast values. */
    ad_tape *v = ad_tape_new(NULL);
    double hb[9], cb[9];
    for (int b = 0; b < 3; b++)
        for (int j = 0; j < 3; j++) {
            hb[b * 3 + j] = ad_tensor_f64(ad_param_value(h0))[j];
            cb[b * 3 + j] = ad_tensor_f64(ad_param_value(c0))[j];
        }
    for (int k = 0; k < 4; k++) xs[k] = ad_from_data(v, AD_F64, ad_shape2(3, 2), xs_data + k * 6);
    nn_state vinit = {ad_variable(v, AD_F64, ad_shape2(3, 3), hb), ad_variable(v, AD_F64, ad_shape2(3, 3), cb)};
    o.h0 = &vinit;
    cr_assert_eq(nn_unroll(v, &cell, xs, 4, &o, NULL, &last), AD_OK);
    cr_assert_eq(ad_backward(v, ad_sum(v, last.h, AD_AXIS_ALL, 0), NULL), AD_OK);
    for (int j = 0; j < 3; j++) {
        double sh = 0, sc = 0;
        for (int b = 0; b < 3; b++) {
            sh += ad_tensor_grad_f64(vinit.h)[b * 3 + j];
            sc += ad_tensor_grad_f64(vinit.c)[b * 3 + j];
        }
        cr_assert_float_eq(ad_tensor_f64(ad_param_grad(h0))[j], sh, 1e-14);
        cr_assert_float_eq(ad_tensor_f64(ad_param_grad(c0))[j], sc, 1e-14);
    }
    ad_tape_reset(t);
    ad_param *wrong = nn_params_add(ps, "wrong", ad_shape2(2, 3), NULL);
    cr_assert_eq(nn_initial_state(t, &cell, 3, wrong, NULL, &init), AD_ERR_SHAPE);
    cr_assert(strstr(ad_tape_message(t), "must be [1, 3]"), "%s", ad_tape_message(t));
    ad_tape_free(t);
    ad_tape_free(v);
    nn_params_free(ps);
    cr_assert_eq(ts_live_allocs(), before);
}

/* Anomaly mode names the cell and the time step of the first non-finite value. */
Test(nn_rnn, anomaly_names_cell_and_step)
{
    long before = ts_live_allocs();
    nn_params *ps = nn_params_new(AD_F64, NULL);
    nn_cell cell;
    nn_cell_create(&cell, ps, "gru", &(nn_cell_options){.kind = NN_CELL_GRU, .input_size = 1, .hidden_size = 2}, NULL);
    ad_tape *t = ad_tape_new(NULL);
    ad_tape_set_anomaly(t, 1);
    ad_tensor *xs[6];
    for (int k = 0; k < 6; k++) {
        double v = k == 4 ? NAN : 0.5;
        xs[k] = ad_from_data(t, AD_F64, ad_shape2(1, 1), &v);
    }
    nn_state last;
    cr_assert_eq(nn_unroll(t, &cell, xs, 6, NULL, NULL, &last), AD_ERR_NONFINITE);
    cr_assert(strstr(ad_tape_message(t), "gru.l0 t=4"), "%s", ad_tape_message(t));
    ad_tape_free(t);
    nn_params_free(ps);
    cr_assert_eq(ts_live_allocs(), before);
}

/*
 * Copies' gradients not kept (copy_grads = norms, and
 * none): the same parameter gradients without a buffer per copy. Norms
 * records the norms of the biases (added by column sums, not a product)
 * through one buffer per bias that each step reuses; none keeps nothing.
 */
Test(nn_rnn, norms_copies_give_the_same_gradients_in_less_memory)
{
    long before = ts_live_allocs();
    nn_params *ps = nn_params_new(AD_F64, NULL);
    nn_cell cell;
    nn_cell_create(&cell, ps, "lstm", &(nn_cell_options){.kind = NN_CELL_LSTM, .input_size = 3, .hidden_size = 8}, NULL);
    ad_rng rng;
    ad_rng_seed(&rng, 14, 0);
    nn_cell_init_pytorch(&cell, &rng);
    double x[20 * 2 * 3];
    ts_fill_uniform(x, 120, 15, -1, 1);
    size_t n;
    double full[2000], used[3];
    for (int mode = 0; mode < 3; mode++) { /* keep, norms, none */
        ad_tape_options o = {0};
        if (mode == 1) o.copy_grads = AD_COPY_GRADS_NORMS;
        if (mode == 2) o.copy_grads = AD_COPY_GRADS_NONE;
        ad_tape *t = ad_tape_new(&o);
        cr_assert_eq(ad_tape_mode(t).copy_grads, (ad_copy_grads)mode);
        ad_tensor *xs[20];
        for (int k = 0; k < 20; k++) xs[k] = ad_from_data(t, AD_F64, ad_shape2(2, 3), x + k * 6);
        nn_state last;
        nn_params_zero_grad(ps);
        cr_assert_eq(nn_unroll(t, &cell, xs, 20, NULL, NULL, &last), AD_OK);
        cr_assert_eq(ad_backward(t, ad_sum(t, ad_mul(t, last.h, last.c), AD_AXIS_ALL, 0), NULL), AD_OK);
        const double *g = nn_params_grads(ps, &n);
        cr_assert_leq(n, 2000);
        for (size_t i = 0; i < n; i++) {
            if (!mode) full[i] = g[i];
            else cr_assert(fabs(g[i] - full[i]) <= 1e-13 * fabs(full[i]) + 1e-16, "mode %d: grad %zu", mode, i);
        }
        ad_tensor *copies[20];
        cr_assert_eq(ad_tape_copies(t, cell.w[1], copies, 20), 20);
        used[mode] = (double)ad_tape_bytes_used(t);
        if (mode) {
            cr_assert_null(ad_tensor_grad_f64(copies[3]), "no per-copy gradient when copies are not kept");
            cr_assert_eq(ad_tape_status(t), AD_ERR_STATE, "reading it is an error naming the mode");
            cr_assert(strstr(ad_tape_message(t), mode == 1 ? "copy_grads = norms" : "copy_grads = none"), "%s",
                      ad_tape_message(t));
        } else {
            cr_assert_not_null(ad_tensor_grad_f64(copies[3]));
        }
        ad_tape_free(t);
    }
    /* one parameter-sized buffer per copy saved: 20 steps x all four weights,
     * less (norms) the biases' buffers of one step */
    double per_step = (double)(n * sizeof(double));
    cr_assert(used[0] - used[2] >= 20.0 * per_step, "none %.0f bytes vs %.0f", used[2], used[0]);
    cr_assert(used[0] - used[1] >= 19.0 * per_step, "norms %.0f bytes vs %.0f", used[1], used[0]);
    /* a loss that is itself a copy */
    ad_tape_options o = {0};
    o.copy_grads = AD_COPY_GRADS_NORMS;
    ad_tape *t = ad_tape_new(&o);
    nn_params_zero_grad(ps);
    ad_param *b = cell.w[2];
    double g0 = ad_tensor_f64(ad_param_grad(b))[0];
    ad_tensor *up = ad_ones(t, AD_F64, ad_shape1(32));
    cr_assert_eq(ad_backward(t, ad_use(t, b), up), AD_OK);
    cr_assert_eq(ad_tensor_f64(ad_param_grad(b))[0], g0 + 1.0);
    ad_tape_free(t);
    nn_params_free(ps);
    cr_assert_eq(ts_live_allocs(), before);
}

Test(nn_rnn, projection_bad_inputs)
{
    long before = ts_live_allocs();
    nn_params *ps = nn_params_new(AD_F64, NULL);
    nn_cell gru, custom = {.name = "mine", .input_size = 2, .hidden_size = 2, .step = nn_builtin_step};
    nn_cell_create(&gru, ps, "gru", &(nn_cell_options){.kind = NN_CELL_GRU, .input_size = 2, .hidden_size = 2}, NULL);
    ad_tape *t = ad_tape_new(NULL);
    ad_tensor *x = ad_zeros(t, AD_F64, ad_shape2(1, 2));
    cr_assert_null(nn_cell_input_projection(t, &custom, x));
    cr_assert_eq(ad_tape_status(t), AD_ERR_ARG);
    cr_assert(strstr(ad_tape_message(t), "built-in cell"), "%s", ad_tape_message(t));
    ad_tape_reset(t);
    nn_state s = {ad_zeros(t, AD_F64, ad_shape2(1, 2)), NULL}, next;
    cr_assert_eq(nn_cell_step_projected(t, &gru, NULL, &s, &next), AD_ERR_NULL);
    ad_tape_reset(t);
    cr_assert_eq(nn_cell_step_projected(t, &gru, ad_zeros(t, AD_F64, ad_shape2(1, 5)), &s, &next),
                 AD_ERR_SHAPE, "a projection of the wrong width is a shape error");
    cr_assert_null(nn_cell_input_projection(NULL, &gru, x));
    cr_assert_eq(nn_cell_step_projected(NULL, &gru, x, &s, &next), AD_ERR_NULL);
    cr_assert_eq(nn_initial_state(NULL, &gru, 1, NULL, NULL, &s), AD_ERR_NULL);
    ad_tape_free(t);
    nn_params_free(ps);
    cr_assert_eq(ts_live_allocs(), before);
}

/* Two stacked layers of `kind` over T steps with masking (lengths 9, 4, 7):
 * the outputs and parameter gradients of loss = sum_t sum(tanh(h_t)) (+ sum(c^2)
 * of the last LSTM state), and the tape's node count and bytes after the forward. */
enum { LT = 9, LB = 3, LI = 4, LH = 5 };

typedef struct layer_run {
    double out[LT * LB * LH], grads[1024];
    size_t n, nodes, bytes;
} layer_run;

static void run_two_layers(nn_cell_kind kind, uint64_t seed, int hoist, int plain, layer_run *r)
{
    double x[LT * LB * LI];
    ts_fill_uniform(x, LT * LB * LI, 31, -1, 1);
    int64_t lengths[LB] = {9, 4, 7};
    nn_params *ps = nn_params_new(AD_F64, NULL);
    nn_cell cells[2];
    nn_cell_create(&cells[0], ps, "l", &(nn_cell_options){.kind = kind, .input_size = LI, .hidden_size = LH}, NULL);
    nn_cell_create(&cells[1], ps, "l", &(nn_cell_options){.kind = kind, .layer = 1, .input_size = LH, .hidden_size = LH}, NULL);
    if (plain) cells[0].step = cells[1].step = nn__builtin_step_plain;
    ad_rng rng;
    ad_rng_seed(&rng, seed, 0);
    nn_params_init_uniform(ps, &rng, -0.7, 0.7);
    ad_tape *t = ad_tape_new(NULL);
    ad_tensor *xs[LT];
    for (int s = 0; s < LT; s++) xs[s] = ad_from_data(t, AD_F64, ad_shape2(LB, LI), x + s * LB * LI);
    nn_unroll_options o = {0};
    o.lengths = lengths;
    o.hoist_input = hoist;
    nn_state outs[LT], lasts[2];
    cr_assert_eq(nn_unroll_layers(t, cells, 2, xs, LT, &o, outs, lasts), AD_OK, "%s", ad_tape_message(t));
    r->nodes = ad_tape_size(t);
    r->bytes = ad_tape_bytes_used(t);
    ad_tensor *loss = NULL;
    for (int s = 0; s < LT; s++) {
        memcpy(r->out + s * LB * LH, ad_tensor_f64(outs[s].h), LB * LH * sizeof(double));
        ad_tensor *l = ad_sum(t, ad_tanh(t, outs[s].h), AD_AXIS_ALL, 0);
        loss = loss ? ad_add(t, loss, l) : l;
    }
    if (lasts[1].c) loss = ad_add(t, loss, ad_sum(t, ad_mul(t, lasts[1].c, lasts[1].c), AD_AXIS_ALL, 0));
    cr_assert_eq(ad_backward(t, loss, NULL), AD_OK, "%s", ad_tape_message(t));
    const double *g = nn_params_grads(ps, &r->n);
    cr_assert_leq(r->n, 1024);
    memcpy(r->grads, g, r->n * sizeof *g);
    ad_tape_free(t);
    nn_params_free(ps);
}

static void expect_same_run(const char *what, int kind, const layer_run *a, const layer_run *b, double out_tol)
{
    for (int i = 0; i < LT * LB * LH; i++)
        cr_assert(fabs(a->out[i] - b->out[i]) <= out_tol, "%s, kind %d: output %d", what, kind, i);
    for (size_t i = 0; i < a->n; i++)
        cr_assert(fabs(a->grads[i] - b->grads[i]) <= 1e-12 * fabs(a->grads[i]) + 1e-14,
                  "%s, kind %d: grad %zu: %.17g vs %.17g", what, kind, i, a->grads[i], b->grads[i]);
}

/* Hoisting the input projection changes nothing but the order of sums. */
Test(nn_rnn, hoisted_input_projection_equals_step_by_step)
{
    long before = ts_live_allocs();
    nn_cell_kind kinds[3] = {NN_CELL_RNN_TANH, NN_CELL_LSTM, NN_CELL_GRU};
    layer_run r[2];
    for (int k = 0; k < 3; k++) {
        for (int hoist = 0; hoist < 2; hoist++) run_two_layers(kinds[k], 32 + (uint64_t)k, hoist, 0, &r[hoist]);
        expect_same_run("hoisted vs step by step", kinds[k], &r[0], &r[1], 1e-13);
    }
    cr_assert_eq(ts_live_allocs(), before);
}

/* The fused gate ops against the op-by-op gates: the same states and
 * gradients within f64 rounding, and the tape records fewer nodes and bytes
 * (the gated cells under half the nodes, Elman one fewer per step). */
Test(nn_rnn, fused_gates_equal_the_op_by_op_gates)
{
    long before = ts_live_allocs();
    nn_cell_kind kinds[4] = {NN_CELL_LSTM, NN_CELL_GRU, NN_CELL_RNN_TANH, NN_CELL_RNN_RELU};
    layer_run r[2];
    for (int k = 0; k < 4; k++) {
        for (int plain = 0; plain < 2; plain++) run_two_layers(kinds[k], 42 + (uint64_t)k, 1, plain, &r[plain]);
        expect_same_run("fused vs plain gates", kinds[k], &r[0], &r[1], 1e-14);
        cr_assert_lt(k < 2 ? r[0].nodes * 2 : r[0].nodes + 2 * LT - 1, r[1].nodes, "kind %d: %zu fused nodes, %zu plain",
                     k, r[0].nodes, r[1].nodes);
        cr_assert_lt(r[0].bytes, r[1].bytes, "kind %d: %zu fused bytes, %zu plain", k, r[0].bytes, r[1].bytes);
    }
    cr_assert_eq(ts_live_allocs(), before);
}

/* ---- LSTM with projections: bad options, and TBPTT over [B, P] states ---------------------- */

Test(nn_rnn, proj_size_bad_options)
{
    long before = ts_live_allocs();
    ad_error err;
    nn_params *ps = nn_params_new(AD_F64, &err);
    nn_cell c;
    nn_cell_options gru = {.kind = NN_CELL_GRU, .input_size = 3, .hidden_size = 4, .proj_size = 2};
    cr_assert_eq(nn_cell_create(&c, ps, "g", &gru, &err), AD_ERR_ARG);
    cr_assert(strstr(err.msg, "proj_size 2 needs an LSTM"), "%s", err.msg);
    nn_cell_options big = {.kind = NN_CELL_LSTM, .input_size = 3, .hidden_size = 4, .proj_size = 4};
    cr_assert_eq(nn_cell_create(&c, ps, "l", &big, &err), AD_ERR_ARG);
    big.proj_size = -1;
    cr_assert_eq(nn_cell_create(&c, ps, "l", &big, &err), AD_ERR_ARG);
    cr_assert_eq(nn_cell_create(&c, ps, "l", NULL, &err), AD_ERR_NULL);
    nn_cell_options bad_kind = {.kind = (nn_cell_kind)9, .input_size = 3, .hidden_size = 4};
    cr_assert_eq(nn_cell_create(&c, ps, "l", &bad_kind, &err), AD_ERR_ARG);
    cr_assert_eq(nn_params_count(ps), 0, "nothing registered by a refused cell");
    cr_assert_eq(nn_cell_output_size(NULL), 0);
    nn_params_free(ps);
    cr_assert_eq(ts_live_allocs(), before);
}

typedef struct proj_ctx {
    double x[6 * 2 * 3];
    double *grads;
    size_t n;
    nn_params *ps;
} proj_ctx;

static ad_tensor *proj_input(ad_tape *t, int64_t s, void *vc)
{
    proj_ctx *c = vc;
    return ad_from_f64(t, AD_F64, ad_shape2(2, 3), c->x + s * 6);
}

static ad_tensor *proj_loss(ad_tape *t, const nn_state *h, int64_t s, void *vc)
{
    (void)vc;
    return ad_mul_scalar(t, ad_sum(t, ad_mul(t, h->h, h->h), AD_AXIS_ALL, 0), 1.0 + 0.1 * (double)s);
}

static ad_status proj_update(int64_t seg, double loss, void *vc)
{
    (void)seg, (void)loss;
    proj_ctx *c = vc;
    size_t n;
    double *g = nn_params_grads(c->ps, &n);
    memcpy(c->grads, g, n * sizeof *g);
    return AD_OK;
}

Test(nn_rnn, tbptt_carries_projected_states)
{
    long before = ts_live_allocs();
    ad_error err;
    proj_ctx c;
    c.ps = nn_params_new(AD_F64, &err);
    nn_cell cell;
    nn_cell_options o = {.kind = NN_CELL_LSTM, .input_size = 3, .hidden_size = 4, .proj_size = 2};
    cr_assert_eq(nn_cell_create(&cell, c.ps, "lstm", &o, &err), AD_OK, "%s", err.msg);
    ad_rng rng;
    ad_rng_seed(&rng, 8, 0);
    nn_cell_init_pytorch(&cell, &rng);
    ts_fill_uniform(c.x, 36, 4, -1, 1);
    double h0[2 * 2] = {0.1, -0.2, 0.3, 0.05}, c0[2 * 4] = {0.2, 0.1, -0.1, 0.3, 0, 0.4, -0.3, 0.1};
    double tb[256], want[256];
    c.grads = tb;
    nn_params_values(c.ps, &c.n);
    cr_assert(c.n <= 256);
    /* one segment over all 6 steps: the same gradients as the plain unroll */
    ad_tape *t = ad_tape_new(NULL);
    nn_tbptt_options to = {.k1 = 6, .k2 = 6, .steps = 6, .batch = 2, .h0 = h0, .c0 = c0};
    cr_assert_eq(nn_tbptt_run(t, &cell, c.ps, &to, proj_input, proj_loss, proj_update, &c, &err), AD_OK, "%s", err.msg);
    ad_tape_reset(t);
    nn_params_zero_grad(c.ps);
    ad_tensor *xs[6];
    for (int s = 0; s < 6; s++) xs[s] = proj_input(t, s, &c);
    nn_state init = {ad_from_f64(t, AD_F64, ad_shape2(2, 2), h0), ad_from_f64(t, AD_F64, ad_shape2(2, 4), c0)}, outs[6];
    nn_unroll_options uo = {.h0 = &init};
    cr_assert_eq(nn_unroll(t, &cell, xs, 6, &uo, outs, NULL), AD_OK, "%s", ad_tape_message(t));
    ad_tensor *total = NULL;
    for (int s = 0; s < 6; s++) {
        ad_tensor *l = proj_loss(t, &outs[s], s, &c);
        total = total ? ad_add(t, total, l) : l;
    }
    cr_assert_eq(ad_backward(t, total, NULL), AD_OK);
    memcpy(want, nn_params_grads(c.ps, &c.n), c.n * sizeof *want);
    for (size_t i = 0; i < c.n; i++) cr_assert(ts_rel_diff(tb[i], want[i]) <= 1e-12, "grad %zu", i);
    ad_tape_free(t);
    nn_params_free(c.ps);
    cr_assert_eq(ts_live_allocs(), before);
}
