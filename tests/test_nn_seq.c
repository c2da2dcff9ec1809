/*
 * Sequence tensors ([T, B, I] and batch-first [B, T, I]) and dropout between
 * layers: the tensor forms give the array form's values and gradients, and
 * dropout does what PyTorch's does (inverted scaling, training only, a fresh
 * mask per step or one per sequence).
 */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>
#include <unroll/nn/nn.h>

#include "testsupport.h"

enum { T = 5, B = 3, I = 4, H = 6 };

typedef struct net {
    nn_params *ps;
    nn_cell cells[2];
    double x[T * B * I]; /* time-major: x[(t B + b) I + i] */
} net;

static void net_new(net *n, nn_cell_kind kind, int layers)
{
    ad_error err;
    n->ps = nn_params_new(AD_F64, &err);
    for (int l = 0; l < layers; l++)
        cr_assert_eq(nn_cell_create(&n->cells[l], n->ps, "rnn", &(nn_cell_options){.kind = kind, .layer = l, .input_size = l ? H : I, .hidden_size = H}, &err), AD_OK,
                     "%s", err.msg);
    ad_rng rng;
    ad_rng_seed(&rng, 11, 0);
    nn_params_init_uniform(n->ps, &rng, -0.5, 0.5);
    ts_fill_uniform(n->x, T * B * I, 5, -1, 1);
}

/* sum(y * w) for fixed weights w: a loss that reads every output element. */
static ad_tensor *weighted_sum(ad_tape *t, ad_tensor *y, size_t n)
{
    double w[T * B * H];
    ts_fill_uniform(w, n, 9, -1, 1);
    return ad_sum(t, ad_mul(t, y, ad_from_f64(t, AD_F64, ad_tensor_shape(y), w)), AD_AXIS_ALL, 0);
}

/* The outputs [T, B, H] and the gradients of the array form, the reference. */
static void array_form(net *n, int layers, int hoist, double *y, double *g, size_t *ng)
{
    ad_tape *t = ad_tape_new(NULL);
    ad_tensor *xs[T];
    for (int k = 0; k < T; k++) xs[k] = ad_from_f64(t, AD_F64, ad_shape2(B, I), n->x + k * B * I);
    nn_state outs[T];
    nn_unroll_options o = {.hoist_input = hoist};
    cr_assert_eq(nn_unroll_layers(t, n->cells, layers, xs, T, &o, outs, NULL), AD_OK, "%s", ad_tape_message(t));
    ad_tensor *all = ad_concat(t, (ad_tensor *[]){outs[0].h, outs[1].h, outs[2].h, outs[3].h, outs[4].h}, T, 0);
    nn_params_zero_grad(n->ps);
    cr_assert_eq(ad_backward(t, weighted_sum(t, all, T * B * H), NULL), AD_OK);
    for (size_t i = 0; i < T * B * H; i++) y[i] = ad_tensor_get(all, i);
    double *gp = nn_params_grads(n->ps, ng);
    memcpy(g, gp, *ng * sizeof *g);
    ad_tape_free(t);
}

static void check_tensor_form(nn_cell_kind kind, int layers, int hoist, int batch_first)
{
    net n;
    net_new(&n, kind, layers);
    double want_y[T * B * H], want_g[4096], x[T * B * I];
    size_t ng;
    array_form(&n, layers, hoist, want_y, want_g, &ng);
    /* the same inputs as one tensor, time-major or batch-first */
    for (int k = 0; k < T; k++)
        for (int b = 0; b < B; b++)
            for (int i = 0; i < I; i++)
                x[batch_first ? (b * T + k) * I + i : (k * B + b) * I + i] = n.x[(k * B + b) * I + i];
    ad_tape *t = ad_tape_new(NULL);
    ad_tensor *X = ad_from_f64(t, AD_F64, batch_first ? ad_shape3(B, T, I) : ad_shape3(T, B, I), x), *Y = NULL;
    nn_unroll_options o = {.hoist_input = hoist, .batch_first = batch_first};
    ad_status st = layers == 1 ? nn_unroll_seq(t, n.cells, X, &o, &Y, NULL)
                               : nn_unroll_layers_seq(t, n.cells, layers, X, &o, &Y, NULL);
    cr_assert_eq(st, AD_OK, "%s", ad_tape_message(t));
    ad_shape s = ad_tensor_shape(Y);
    cr_assert(ad_shape_equal(s, batch_first ? ad_shape3(B, T, H) : ad_shape3(T, B, H)));
    /* the loss in the array form's element order */
    ad_tensor *tm = batch_first ? ad_transpose(t, Y, 0, 1) : Y;
    nn_params_zero_grad(n.ps);
    cr_assert_eq(ad_backward(t, weighted_sum(t, ad_reshape(t, tm, ad_shape2(T * B, H)), T * B * H), NULL), AD_OK);
    for (int k = 0; k < T; k++)
        for (int b = 0; b < B; b++)
            for (int h = 0; h < H; h++) {
                size_t i = batch_first ? (size_t)(b * T + k) * H + h : (size_t)(k * B + b) * H + h;
                cr_assert(ad_tensor_get(Y, i) == want_y[(k * B + b) * H + h], "y[%d,%d,%d]", k, b, h);
            }
    size_t n2;
    double *g = nn_params_grads(n.ps, &n2);
    cr_assert_eq(n2, ng);
    for (size_t i = 0; i < ng; i++)
        cr_assert(ts_rel_diff(g[i], want_g[i]) <= 1e-12, "grad %zu: %.17g vs %.17g", i, g[i], want_g[i]);
    ad_tape_free(t);
    nn_params_free(n.ps);
}

Test(nn_seq, time_major_equals_the_array_form)
{
    long before = ts_live_allocs();
    check_tensor_form(NN_CELL_LSTM, 1, 0, 0);
    check_tensor_form(NN_CELL_GRU, 1, 1, 0);
    check_tensor_form(NN_CELL_RNN_TANH, 2, 0, 0);
    check_tensor_form(NN_CELL_LSTM, 2, 1, 0);
    cr_assert_eq(ts_live_allocs(), before);
}

Test(nn_seq, batch_first_equals_the_array_form)
{
    long before = ts_live_allocs();
    check_tensor_form(NN_CELL_LSTM, 1, 0, 1);
    check_tensor_form(NN_CELL_GRU, 2, 1, 1);
    cr_assert_eq(ts_live_allocs(), before);
}

Test(nn_seq, time_major_steps_read_the_input_in_place)
{
    /* The steps' inputs are views of the [T, B, I] tensor: a value written
     * into its buffer after the unroll is what the recorded steps see. */
    net n;
    net_new(&n, NN_CELL_RNN_TANH, 1);
    ad_tape *t = ad_tape_new(NULL);
    ad_tensor *X = ad_from_f64(t, AD_F64, ad_shape3(T, B, I), n.x);
    ad_tensor *R = ad_reshape(t, X, ad_shape2(T * B, I));
    ad_tensor *S = ad_slice(t, R, 0, 2 * B, B);
    cr_assert_eq(ad_tensor_data(R), ad_tensor_data(X));
    cr_assert_eq((char *)ad_tensor_data(S), (char *)ad_tensor_data(X) + 2 * B * I * sizeof(double));
    ad_tape_free(t);
    nn_params_free(n.ps);
}

/* ---- dropout between layers --------------------------------------------------------- */

/* A cell whose state is its input: y of a 2-layer stack is then layer 0's
 * outputs after the dropout between the layers. */
static ad_status identity_step(ad_tape *t, const nn_cell *cell, ad_tensor *x, const nn_state *prev, nn_state *next)
{
    (void)cell, (void)prev;
    next->h = ad_mul_scalar(t, x, 1.0);
    next->c = NULL;
    return ad_tape_status(t);
}

static void dropped_outputs(double p, int train, int variational, uint64_t seed, double *y, double *plain)
{
    net n;
    net_new(&n, NN_CELL_LSTM, 1);
    n.cells[1] = (nn_cell){.kind = NN_CELL_CUSTOM, .input_size = H, .hidden_size = H, .step = identity_step};
    strcpy(n.cells[1].name, "identity");
    n.cells[1].w[0] = n.cells[0].w[0]; /* the dtype of the cell (unused by its step) */
    n.cells[1].n_w = 1;
    ad_rng rng;
    ad_rng_seed(&rng, seed, 0);
    ad_tape *t = ad_tape_new(NULL);
    ad_tensor *X = ad_from_f64(t, AD_F64, ad_shape3(T, B, I), n.x), *Y = NULL, *Y0 = NULL;
    nn_unroll_options o = {.dropout = p, .train = train, .variational = variational, .rng = &rng};
    cr_assert_eq(nn_unroll_layers_seq(t, n.cells, 2, X, &o, &Y, NULL), AD_OK, "%s", ad_tape_message(t));
    cr_assert_eq(nn_unroll_seq(t, n.cells, X, NULL, &Y0, NULL), AD_OK);
    for (size_t i = 0; i < T * B * H; i++) y[i] = ad_tensor_get(Y, i), plain[i] = ad_tensor_get(Y0, i);
    ad_tape_free(t);
    nn_params_free(n.ps);
}

enum { SEEDS = 100 };

Test(nn_seq, dropout_between_layers_scales_and_zeroes)
{
    double y[T * B * H], x[T * B * H];
    long before = ts_live_allocs();
    for (int variational = 0; variational <= 1; variational++) {
        size_t zeros = 0;
        int pattern_differs = 0;
        for (uint64_t seed = 1; seed <= SEEDS; seed++) {
            dropped_outputs(0.4, 1, variational, seed, y, x);
            for (size_t i = 0; i < T * B * H; i++) {
                if (y[i] == 0.0) zeros++;
                else cr_assert(ts_rel_diff(y[i], x[i] / 0.6) <= 1e-15, "kept elements are scaled by 1/(1-p)");
            }
            for (int k = 1; k < T; k++)
                for (size_t j = 0; j < B * H; j++)
                    if ((y[k * B * H + j] == 0.0) != (y[j] == 0.0)) pattern_differs = 1;
        }
        /* variational: SEEDS * B * H independent draws (std 0.012), else T times as many */
        double frac = (double)zeros / ((double)SEEDS * T * B * H);
        cr_assert(fabs(frac - 0.4) < 0.05, "variational %d: dropped fraction %.3f, p = 0.4", variational, frac);
        if (variational) cr_assert(!pattern_differs, "variational: one mask for every step");
        else cr_assert(pattern_differs, "a fresh mask at every step");
    }
    /* evaluation mode, and p = 0: no dropout at all */
    dropped_outputs(0.4, 0, 0, 1, y, x);
    for (size_t i = 0; i < T * B * H; i++) cr_assert(y[i] == x[i]);
    dropped_outputs(0.0, 1, 1, 1, y, x);
    for (size_t i = 0; i < T * B * H; i++) cr_assert(y[i] == x[i]);
    cr_assert_eq(ts_live_allocs(), before);
}

typedef struct drop_ctx {
    net n;
    int variational;
} drop_ctx;

/* A 2-layer LSTM with dropout in training mode; the masks are redrawn from
 * the same seed at every evaluation, so the function is deterministic. */
static ad_tensor *drop_graph(ad_tape *t, void *ctx)
{
    drop_ctx *c = ctx;
    ad_rng rng;
    ad_rng_seed(&rng, 3, 0);
    ad_tensor *X = ad_from_f64(t, AD_F64, ad_shape3(T, B, I), c->n.x), *Y = NULL;
    nn_unroll_options o = {.dropout = 0.3, .train = 1, .variational = c->variational, .rng = &rng};
    if (nn_unroll_layers_seq(t, c->n.cells, 2, X, &o, &Y, NULL) != AD_OK) return NULL;
    return weighted_sum(t, Y, T * B * H);
}

Test(nn_seq, gradcheck_through_dropout)
{
    for (int variational = 0; variational <= 1; variational++) {
        drop_ctx c = {.variational = variational};
        net_new(&c.n, NN_CELL_LSTM, 2);
        ad_param *ps[8];
        size_t np = nn_params_count(c.n.ps);
        for (size_t i = 0; i < np; i++) ps[i] = nn_params_at(c.n.ps, i);
        ad_gradcheck_report rep;
        ad_error err;
        ad_status st = ad_gradcheck(drop_graph, &c, ps, np, NULL, &rep, &err);
        cr_assert_eq(st, AD_OK, "variational %d: %s", variational, err.msg);
        nn_params_free(c.n.ps);
    }
}

Test(nn_seq, bad_inputs)
{
    long before = ts_live_allocs();
    net n;
    net_new(&n, NN_CELL_LSTM, 2);
    ad_tape *t = ad_tape_new(NULL);
    ad_tensor *X = ad_from_f64(t, AD_F64, ad_shape3(T, B, I), n.x), *Y = NULL;
    ad_rng rng;
    ad_rng_seed(&rng, 1, 0);
    struct {
        nn_unroll_options o;
        ad_status want;
        const char *msg;
    } rows[] = {
        {{.dropout = 1.0, .train = 1, .rng = &rng}, AD_ERR_ARG, "outside [0, 1)"},
        {{.dropout = -0.1}, AD_ERR_ARG, "outside [0, 1)"},
        {{.dropout = NAN}, AD_ERR_ARG, "outside [0, 1)"},
        {{.dropout = 0.5, .train = 1}, AD_ERR_NULL, "needs an rng"},
    };
    for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++) {
        ad_tape_reset(t);
        X = ad_from_f64(t, AD_F64, ad_shape3(T, B, I), n.x);
        cr_assert_eq(nn_unroll_layers_seq(t, n.cells, 2, X, &rows[r].o, &Y, NULL), rows[r].want, "row %zu", r);
        cr_assert(strstr(ad_tape_message(t), rows[r].msg), "row %zu: %s", r, ad_tape_message(t));
    }
    ad_tape_reset(t);
    cr_assert_eq(nn_unroll_seq(t, n.cells, ad_from_f64(t, AD_F64, ad_shape2(T * B, I), n.x), NULL, &Y, NULL),
                 AD_ERR_SHAPE);
    cr_assert(strstr(ad_tape_message(t), "[T, B, I]"), "%s", ad_tape_message(t));
    ad_tape_reset(t);
    nn_unroll_options bf = {.batch_first = 1};
    cr_assert_eq(nn_unroll_seq(t, n.cells, ad_from_f64(t, AD_F64, ad_shape2(T * B, I), n.x), &bf, &Y, NULL),
                 AD_ERR_SHAPE);
    cr_assert(strstr(ad_tape_message(t), "[B, T, I]"), "%s", ad_tape_message(t));
    ad_tape_reset(t);
    cr_assert_eq(nn_unroll_seq(t, n.cells, ad_zeros(t, AD_F64, ad_shape3(T, B, I + 1)), NULL, &Y, NULL),
                 AD_ERR_SHAPE);
    cr_assert(strstr(ad_tape_message(t), "input size is 5, the cell takes 4"), "%s", ad_tape_message(t));
    ad_tape_reset(t);
    cr_assert_eq(nn_unroll_seq(t, n.cells, ad_zeros(t, AD_F64, ad_shape3(0, B, I)), NULL, &Y, NULL), AD_ERR_EMPTY);
    ad_tape_reset(t);
    cr_assert_eq(nn_unroll_seq(t, n.cells, NULL, NULL, &Y, NULL), AD_ERR_NULL);
    ad_tape_reset(t);
    X = ad_from_f64(t, AD_F64, ad_shape3(T, B, I), n.x);
    cr_assert_eq(nn_unroll_seq(t, n.cells, X, NULL, NULL, NULL), AD_ERR_NULL);
    ad_tape_reset(t);
    cr_assert_eq(nn_unroll_seq(t, NULL, X, NULL, &Y, NULL), AD_ERR_NULL);
    ad_tape_reset(t);
    X = ad_from_f64(t, AD_F32, ad_shape3(T, B, I), n.x); /* an f32 input to an f64 cell */
    cr_assert_eq(nn_unroll_seq(t, n.cells, X, NULL, &Y, NULL), AD_ERR_DTYPE, "%s", ad_tape_message(t));
    ad_tape_reset(t);
    X = ad_from_f64(t, AD_F64, ad_shape3(T, B, I), n.x);
    cr_assert_eq(nn_unroll_layers_seq(t, n.cells, 0, X, NULL, &Y, NULL), AD_ERR_EMPTY);
    cr_assert_eq(nn_unroll_seq(NULL, n.cells, X, NULL, &Y, NULL), AD_ERR_NULL);
    ad_tape_free(t);
    nn_params_free(n.ps);
    cr_assert_eq(ts_live_allocs(), before);
}

Test(nn_seq, targets_time_major)
{
    int64_t bt[6] = {10, 11, 12, 20, 21, 22}, tb[6]; /* B = 2 rows of T = 3 */
    ad_error err;
    cr_assert_eq(nn_targets_time_major(bt, 2, 3, tb, &err), AD_OK);
    int64_t want[6] = {10, 20, 11, 21, 12, 22};
    for (int i = 0; i < 6; i++) cr_assert_eq(tb[i], want[i]);
    cr_assert_eq(nn_targets_time_major(NULL, 2, 3, tb, &err), AD_ERR_NULL);
    cr_assert_eq(nn_targets_time_major(bt, 2, 3, NULL, &err), AD_ERR_NULL);
    cr_assert_eq(nn_targets_time_major(bt, 0, 3, tb, &err), AD_ERR_ARG);
    cr_assert(strstr(err.msg, "B = 0"), "%s", err.msg);
    cr_assert_eq(nn_targets_time_major(bt, 2, -1, tb, &err), AD_ERR_ARG);
}
