/*
 * test_nn_recompute.c - nn_unroll() with recomputation (nn_unroll_options
 * recompute / segments / slots) and a per-step head + loss (step_loss): the
 * loss, every parameter gradient and the gradients of the inputs and of h0
 * equal the store-all unroll's (the same head applied after a plain
 * nn_unroll) within 1e-12 relative in f64, for Elman, LSTM, GRU and a custom
 * cell; the tape keeps fewer bytes; bad options are clear errors; nothing
 * leaks.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include <unroll/nn/nn.h>
#include "testsupport.h"

enum { B = 3, I = 4, H = 5, V = 3, TMAX = 200 };

/* A custom cell: u = sigmoid(x Wu + h Uu), h' = u h + (1 - u) tanh(x Wc + h Uc). */
static ad_status mgu_step(ad_tape *t, const nn_cell *c, ad_tensor *x, const nn_state *prev, nn_state *next)
{
    ad_tensor *u = ad_sigmoid(t, ad_add(t, ad_matmul(t, x, ad_use(t, c->w[0]), 0),
                                        ad_matmul(t, prev->h, ad_use(t, c->w[1]), 0)));
    ad_tensor *cand = ad_tanh(t, ad_add(t, ad_matmul(t, x, ad_use(t, c->w[2]), 0),
                                        ad_matmul(t, prev->h, ad_use(t, c->w[3]), 0)));
    next->h = ad_add(t, ad_mul(t, u, prev->h), ad_mul(t, ad_add_scalar(t, ad_neg(t, u), 1.0), cand));
    return ad_tape_status(t);
}

enum { LMAX = 3 };

typedef struct net {
    nn_params *ps;
    nn_cell cells[LMAX]; /* layer 0 reads xs, layer l reads layer l-1 */
    int L;
    ad_param *wo; /* the head [H, V] */
    const int64_t *lengths; /* with masks: the head leaves padded rows out */
} net;

/* Layer l of kind `kind` (the custom cell for NN_CELL_CUSTOM), reading `in` inputs. */
static void make_layer(net *n, int l, nn_cell_kind kind, int in)
{
    char name[32];
    if (kind == NN_CELL_CUSTOM) {
        n->cells[l] = (nn_cell){.name = "mgu", .input_size = in, .hidden_size = H, .step = mgu_step, .n_w = 4};
        const char *w[4] = {"Wu", "Uu", "Wc", "Uc"};
        for (int i = 0; i < 4; i++) {
            snprintf(name, sizeof name, "mgu%d.%s", l, w[i]);
            n->cells[l].w[i] = nn_params_add(n->ps, name, i % 2 ? ad_shape2(H, H) : ad_shape2(in, H), NULL);
        }
    } else {
        snprintf(name, sizeof name, "c%d", l);
        cr_assert_eq(nn_cell_create(&n->cells[l], n->ps, name,
                                    &(nn_cell_options){.kind = kind, .input_size = in, .hidden_size = H}, NULL),
                     AD_OK);
    }
}

/* A stack of L layers of the given kinds, and the head. */
static void make_stack(net *n, const nn_cell_kind *kinds, int L)
{
    memset(n, 0, sizeof *n);
    n->ps = nn_params_new(AD_F64, NULL);
    n->L = L;
    for (int l = 0; l < L; l++) make_layer(n, l, kinds[l], l == 0 ? I : H);
    n->wo = nn_params_add(n->ps, "head.W", ad_shape2(H, V), NULL);
    ad_rng rng;
    ad_rng_seed(&rng, 11, 3);
    nn_params_init_uniform(n->ps, &rng, -0.7, 0.7);
}

static void make_net(net *n, nn_cell_kind kind) { make_stack(n, &kind, 1); }

/* [B, 1]: 1 for the rows valid at `step`, 0 for the padded ones. */
static ad_tensor *valid_rows(ad_tape *t, const int64_t *lengths, int step)
{
    ad_tensor *m = ad_zeros(t, AD_F64, ad_shape2(B, 1));
    for (int b = 0; b < B; b++) ad_tensor_f64(m)[b] = step < lengths[b] ? 1.0 : 0.0;
    return m;
}

/* the head + loss of one step: sum(tanh(h Wo)^2) * (1 + step / 10), and for
 * an LSTM + 0.1 sum(c); with lengths, over the rows valid at the step */
static ad_tensor *head_loss(ad_tape *t, void *ctx, int step, const nn_state *h)
{
    net *n = ctx;
    ad_tensor *y = ad_tanh(t, ad_matmul(t, h->h, ad_use(t, n->wo), 0));
    if (n->lengths) y = ad_mul(t, y, valid_rows(t, n->lengths, step));
    ad_tensor *l = ad_mul_scalar(t, ad_sum(t, ad_mul(t, y, y), AD_AXIS_ALL, 0), 1.0 + step / 10.0);
    if (h->c) l = ad_add(t, l, ad_mul_scalar(t, ad_sum(t, h->c, AD_AXIS_ALL, 0), 0.1));
    return l;
}

typedef struct run_cfg {
    int recompute, segments, slots, hoist, want_outs;
    int masked, reverse; /* lengths (row_lengths), reversed time */
    int layers;          /* through nn_unroll_layers() (always for more than one layer) */
    double dropout;      /* between layers, in training, from a seeded rng */
    int variational;
} run_cfg;

/* The masked rows: some end inside a segment, one after a single step. */
static const int64_t row_lengths[B] = {23, 9, 1};

/* The dropout rng's state after the last run: the recomputed unroll leaves
 * it where the store-all one does. */
static ad_rng rng_after;

/* T steps of inputs [B, I] (variables) on t. */
static void make_inputs(ad_tape *t, int T, ad_tensor **xs)
{
    ad_rng rng;
    ad_rng_seed(&rng, 7, 1);
    static double xd[B * I];
    for (int k = 0; k < T; k++) {
        ad_tensor *r = ad_rand_normal(t, &rng, AD_F64, ad_shape2(B, I), 0, 1);
        memcpy(xd, ad_tensor_f64(r), sizeof xd);
        xs[k] = ad_variable(t, AD_F64, ad_shape2(B, I), xd);
    }
}

/* Every layer's initial state (variables, different per layer). */
static void make_h0(ad_tape *t, const net *n, nn_state *h0)
{
    double h0d[B * H];
    for (int l = 0; l < n->L; l++) {
        ts_fill_uniform(h0d, B * H, 9 + (uint64_t)l, -0.5, 0.5);
        h0[l] = (nn_state){ad_variable(t, AD_F64, ad_shape2(B, H), h0d), NULL};
        if (n->cells[l].has_c) h0[l].c = ad_variable(t, AD_F64, ad_shape2(B, H), h0d);
    }
}

/* The gradients after backward: parameters, inputs, initial states. */
static size_t gather_grads(const net *n, ad_tensor *const *xs, int T, const nn_state *h0, double *g)
{
    size_t m = 0;
    for (size_t p = 0; p < nn_params_count(n->ps); p++) {
        ad_tensor *gr = ad_param_grad(nn_params_at(n->ps, p));
        for (size_t i = 0; i < ad_tensor_numel(gr); i++) g[m++] = ad_tensor_f64(gr)[i];
    }
    for (int k = 0; k < T; k++)
        for (int i = 0; i < B * I; i++) g[m++] = ad_tensor_grad_f64(xs[k])[i];
    for (int l = 0; l < n->L; l++) {
        for (int i = 0; i < B * H; i++) g[m++] = ad_tensor_grad_f64(h0[l].h)[i];
        if (h0[l].c)
            for (int i = 0; i < B * H; i++) g[m++] = ad_tensor_grad_f64(h0[l].c)[i];
    }
    return m;
}

/* nn_unroll, or nn_unroll_layers for c.layers or a stack. */
static ad_status unroll_net(ad_tape *t, net *n, ad_tensor *const *xs, int T, run_cfg c, const nn_unroll_options *o,
                            nn_state *outs, nn_state *lasts)
{
    if (n->L == 1 && !c.layers) return nn_unroll(t, n->cells, xs, T, o, outs, lasts);
    return nn_unroll_layers(t, n->cells, n->L, xs, T, o, outs, lasts);
}

/* One forward + backward over T steps; recompute = -1: the store-all
 * reference (plain unroll, then the head on every output of the top layer,
 * in the order the steps ran). Writes the loss, the gradients (parameters,
 * inputs, h0) into g and the states (the top layer's last, then outs) to hs. */
static double run(net *n, int T, run_cfg c, double *g, size_t *ng, double *hs, size_t *bytes)
{
    ad_tape *t = ad_tape_new(NULL);
    nn_params_zero_grad(n->ps);
    static ad_tensor *xs[TMAX];
    static nn_state outs[TMAX];
    make_inputs(t, T, xs);
    nn_state h0[LMAX], lasts[LMAX];
    make_h0(t, n, h0);
    ad_rng drng;
    ad_rng_seed(&drng, 5, 2);
    nn_unroll_options o = {.h0 = h0, .hoist_input = c.hoist, .reverse = c.reverse, .dropout = c.dropout,
                           .variational = c.variational, .train = c.dropout > 0, .rng = &drng};
    n->lengths = c.masked ? row_lengths : NULL;
    o.lengths = n->lengths;
    ad_tensor *loss = NULL;
    if (c.recompute < 0) {
        cr_assert_eq(unroll_net(t, n, xs, T, c, &o, outs, lasts), AD_OK, "%s", ad_tape_message(t));
        for (int i = 0; i < T; i++) {
            int k = c.reverse ? T - 1 - i : i;
            ad_tensor *l = head_loss(t, n, k, &outs[k]);
            loss = loss ? ad_add(t, loss, l) : l;
        }
    } else {
        o.recompute = c.recompute, o.segments = c.segments, o.slots = c.slots;
        o.step_loss = head_loss, o.step_loss_ctx = n, o.loss = &loss;
        cr_assert_eq(unroll_net(t, n, xs, T, c, &o, c.want_outs ? outs : NULL, lasts), AD_OK, "%s",
                     ad_tape_message(t));
    }
    rng_after = drng;
    cr_assert_not_null(loss);
    if (bytes) *bytes = ad_tape_bytes_used(t);
    if (hs) {
        memcpy(hs, ad_tensor_f64(lasts[n->L - 1].h), sizeof(double) * B * H);
        if (c.want_outs || c.recompute < 0)
            for (int k = 0; k < T; k++) memcpy(hs + (k + 1) * B * H, ad_tensor_f64(outs[k].h), sizeof(double) * B * H);
    }
    double lv = ad_tensor_f64(loss)[0];
    cr_assert_eq(ad_backward(t, loss, NULL), AD_OK, "%s", ad_tape_message(t));
    *ng = gather_grads(n, xs, T, h0, g);
    ad_tape_free(t);
    return lv;
}

static void expect_rel(const double *a, const double *b, size_t n, const char *what)
{
    double scale = 0, diff = 0;
    for (size_t i = 0; i < n; i++) {
        cr_assert(isfinite(a[i]) && isfinite(b[i]), "%s[%zu] not finite", what, i);
        if (fabs(a[i]) > scale) scale = fabs(a[i]);
        if (fabs(a[i] - b[i]) > diff) diff = fabs(a[i] - b[i]);
    }
    cr_assert(scale > 0, "%s is all zero", what);
    cr_assert(diff <= 1e-12 * scale, "%s: max difference %.3g at scale %.3g", what, diff, scale);
}

static double g_ref[40000], g_rc[40000], hs_ref[(TMAX + 1) * B * H], hs_rc[(TMAX + 1) * B * H];

/* The store-all run and the run with c on the same net: equal loss,
 * gradients, states and dropout rng; nothing leaks. */
static void compare_net(net *n, run_cfg c, int T)
{
    size_t n0, n1;
    run_cfg ref = c;
    ref.recompute = -1;
    double l0 = run(n, T, ref, g_ref, &n0, hs_ref, NULL);
    ad_rng r0 = rng_after;
    double l1 = run(n, T, c, g_rc, &n1, hs_rc, NULL);
    cr_assert_eq(n0, n1);
    cr_assert(r0.state == rng_after.state, "the dropout rng ends elsewhere than after the store-all run");
    cr_assert(fabs(l0 - l1) <= 1e-12 * fabs(l0), "loss %.17g vs store-all %.17g", l1, l0);
    expect_rel(g_ref, g_rc, n0, "gradient");
    expect_rel(hs_ref, hs_rc, (size_t)B * H * (c.want_outs ? (size_t)T + 1 : 1), "states");
}

static void compare_stack(const nn_cell_kind *kinds, int L, run_cfg c, int T)
{
    long before = ts_live_allocs();
    net n;
    make_stack(&n, kinds, L);
    compare_net(&n, c, T);
    nn_params_free(n.ps);
    cr_assert_eq(ts_live_allocs(), before, "no leak");
}

static void compare(nn_cell_kind kind, run_cfg c, int T) { compare_stack(&kind, 1, c, T); }

#define SQRT_T {.recompute = NN_RECOMPUTE_SEGMENTS}
#define SEG5 {.recompute = NN_RECOMPUTE_SEGMENTS, .segments = 5}
#define SLOTS3 {.recompute = NN_RECOMPUTE_SLOTS, .slots = 3}

Test(nn_recompute, elman_sqrt_segments) { compare(NN_CELL_RNN_TANH, (run_cfg)SQRT_T, 23); }
Test(nn_recompute, elman_five_segments) { compare(NN_CELL_RNN_TANH, (run_cfg)SEG5, 23); }
Test(nn_recompute, lstm_sqrt_segments) { compare(NN_CELL_LSTM, (run_cfg)SQRT_T, 23); }
Test(nn_recompute, lstm_five_segments) { compare(NN_CELL_LSTM, (run_cfg)SEG5, 23); }
Test(nn_recompute, gru_sqrt_segments) { compare(NN_CELL_GRU, (run_cfg)SQRT_T, 23); }
Test(nn_recompute, gru_five_segments) { compare(NN_CELL_GRU, (run_cfg)SEG5, 23); }
Test(nn_recompute, custom_sqrt_segments) { compare(NN_CELL_CUSTOM, (run_cfg)SQRT_T, 23); }
Test(nn_recompute, custom_five_segments) { compare(NN_CELL_CUSTOM, (run_cfg)SEG5, 23); }

Test(nn_recompute, hoisted_projection_per_segment)
{
    compare(NN_CELL_LSTM, (run_cfg){.recompute = NN_RECOMPUTE_SEGMENTS, .hoist = 1}, 23);
    compare(NN_CELL_RNN_TANH, (run_cfg){.recompute = NN_RECOMPUTE_SEGMENTS, .segments = 4, .hoist = 1}, 23);
}

Test(nn_recompute, states_as_outputs)
{
    compare(NN_CELL_LSTM, (run_cfg){.recompute = NN_RECOMPUTE_SEGMENTS, .want_outs = 1}, 23);
    compare(NN_CELL_GRU, (run_cfg){.recompute = NN_RECOMPUTE_SLOTS, .slots = 2, .want_outs = 1}, 23);
}

Test(nn_recompute, step_loss_without_recompute) { compare(NN_CELL_GRU, (run_cfg){.want_outs = 1}, 23); }

/* ---- masks (lengths) and reversed time ---- */

/* Both schedules, with and without outs (the states through the regions) and
 * hoisting, for one cell kind: masked, reversed, and both at once. */
static void masked_and_reversed(nn_cell_kind kind)
{
    const run_cfg base[4] = {SQRT_T, SEG5, SLOTS3, {.recompute = NN_RECOMPUTE_SLOTS, .slots = 1}};
    for (int i = 0; i < 4; i++)
        for (int v = 1; v < 4; v++) {
            run_cfg c = base[i];
            c.masked = v & 1, c.reverse = (v >> 1) & 1;
            c.want_outs = (i + v) % 2, c.hoist = i == 1;
            compare(kind, c, 23);
        }
    /* step_loss without recompute follows the masks and the order too */
    compare(kind, (run_cfg){.masked = 1, .reverse = 1, .want_outs = 1}, 23);
}

Test(nn_recompute, masks_and_reverse_elman) { masked_and_reversed(NN_CELL_RNN_TANH); }
Test(nn_recompute, masks_and_reverse_lstm) { masked_and_reversed(NN_CELL_LSTM); }
Test(nn_recompute, masks_and_reverse_gru) { masked_and_reversed(NN_CELL_GRU); }
Test(nn_recompute, masks_and_reverse_custom) { masked_and_reversed(NN_CELL_CUSTOM); }

Test(nn_recompute, slots_nested_regions)
{
    compare(NN_CELL_RNN_TANH, (run_cfg)SLOTS3, 23);
    compare(NN_CELL_LSTM, (run_cfg)SLOTS3, 23);
    compare(NN_CELL_GRU, (run_cfg){.recompute = NN_RECOMPUTE_SLOTS, .slots = 1}, 23);
    compare(NN_CELL_CUSTOM, (run_cfg){.recompute = NN_RECOMPUTE_SLOTS, .slots = 2, .hoist = 1}, 23);
}

Test(nn_recompute, fewer_tape_bytes_at_t200)
{
    long before = ts_live_allocs();
    net n;
    make_net(&n, NN_CELL_LSTM);
    size_t n0, n1, b_all, b_rc, b_slots;
    run(&n, TMAX, (run_cfg){.recompute = -1}, g_ref, &n0, NULL, &b_all);
    run(&n, TMAX, (run_cfg)SQRT_T, g_rc, &n1, NULL, &b_rc);
    expect_rel(g_ref, g_rc, n0, "gradient");
    run(&n, TMAX, (run_cfg){.recompute = NN_RECOMPUTE_SLOTS, .slots = 4}, g_rc, &n1, NULL, &b_slots);
    expect_rel(g_ref, g_rc, n0, "gradient (slots)");
    cr_log_info("T=%d LSTM tape bytes: store-all %zu, sqrt(T) segments %zu, 4 slots %zu", TMAX, b_all, b_rc,
                b_slots);
    cr_assert(3 * b_rc < b_all, "sqrt(T) segments keep %zu bytes, store-all %zu", b_rc, b_all);
    cr_assert(3 * b_slots < b_all, "slots keep %zu bytes, store-all %zu", b_slots, b_all);
    nn_params_free(n.ps);
    cr_assert_eq(ts_live_allocs(), before, "no leak");
}

/* ---- stacked layers: every layer in each segment ---- */

/* Both schedules, masks, reverse, with and without outs, for a stack. */
static void stacked(const nn_cell_kind *kinds, int L)
{
    const run_cfg base[3] = {SQRT_T, SLOTS3, {.recompute = NN_RECOMPUTE_SLOTS, .slots = 1}};
    for (int i = 0; i < 3; i++)
        for (int v = 0; v < 4; v++) {
            run_cfg c = base[i];
            c.masked = v & 1, c.reverse = (v >> 1) & 1;
            c.want_outs = (i + v) % 2, c.hoist = v == 1;
            compare_stack(kinds, L, c, 23);
        }
}

Test(nn_recompute, stacked_elman) { stacked((nn_cell_kind[]){NN_CELL_RNN_TANH, NN_CELL_RNN_TANH}, 2); }
Test(nn_recompute, stacked_lstm) { stacked((nn_cell_kind[]){NN_CELL_LSTM, NN_CELL_LSTM, NN_CELL_LSTM}, 3); }
Test(nn_recompute, stacked_gru) { stacked((nn_cell_kind[]){NN_CELL_GRU, NN_CELL_GRU}, 2); }
Test(nn_recompute, stacked_custom) { stacked((nn_cell_kind[]){NN_CELL_CUSTOM, NN_CELL_CUSTOM}, 2); }
Test(nn_recompute, stacked_mixed) { stacked((nn_cell_kind[]){NN_CELL_GRU, NN_CELL_CUSTOM, NN_CELL_LSTM}, 3); }

/* One layer through nn_unroll_layers, and step_loss on a stack without recompute. */
Test(nn_recompute, stacked_one_layer_and_step_loss_only)
{
    compare(NN_CELL_LSTM, (run_cfg){.recompute = NN_RECOMPUTE_SEGMENTS, .layers = 1, .want_outs = 1}, 23);
    compare_stack((nn_cell_kind[]){NN_CELL_LSTM, NN_CELL_GRU}, 2, (run_cfg){.masked = 1, .want_outs = 1}, 23);
}

/* Dropout between layers: the masks of the store-all run with the same seed
 * (per step, and variational), redrawn exactly in the recomputation. */
Test(nn_recompute, stacked_dropout_same_masks)
{
    const nn_cell_kind lstm3[3] = {NN_CELL_LSTM, NN_CELL_LSTM, NN_CELL_LSTM};
    const nn_cell_kind mixed[3] = {NN_CELL_GRU, NN_CELL_CUSTOM, NN_CELL_RNN_TANH};
    for (int var = 0; var < 2; var++) {
        compare_stack(lstm3, 3, (run_cfg){.recompute = NN_RECOMPUTE_SEGMENTS, .dropout = 0.3, .variational = var}, 23);
        compare_stack(mixed, 3,
                      (run_cfg){.recompute = NN_RECOMPUTE_SLOTS, .slots = 2, .dropout = 0.5, .variational = var,
                                .masked = 1, .reverse = 1, .want_outs = 1, .hoist = 1},
                      23);
        compare_stack(lstm3, 2, (run_cfg){.dropout = 0.4, .variational = var, .want_outs = 1}, 23);
    }
}

/* The whole stack per segment keeps only boundary states of every layer. */
Test(nn_recompute, stacked_fewer_tape_bytes_at_t200)
{
    long before = ts_live_allocs();
    net n;
    make_stack(&n, (nn_cell_kind[]){NN_CELL_LSTM, NN_CELL_LSTM}, 2);
    size_t n0, n1, b_all, b_rc;
    run(&n, TMAX, (run_cfg){.recompute = -1, .dropout = 0.2}, g_ref, &n0, NULL, &b_all);
    run(&n, TMAX, (run_cfg){.recompute = NN_RECOMPUTE_SEGMENTS, .dropout = 0.2}, g_rc, &n1, NULL, &b_rc);
    expect_rel(g_ref, g_rc, n0, "gradient");
    cr_log_info("T=%d 2-layer LSTM tape bytes: store-all %zu, sqrt(T) segments %zu", TMAX, b_all, b_rc);
    cr_assert(4 * b_rc < b_all, "sqrt(T) segments keep %zu bytes, store-all %zu", b_rc, b_all);
    nn_params_free(n.ps);
    cr_assert_eq(ts_live_allocs(), before, "no leak");
}

/* ---- bidirectional layers: each direction recomputed ---- */

/* A forward and a backward direction (cells[0], cells[1], both reading xs). */
static void make_bidir(net *n, nn_cell_kind fwd, nn_cell_kind bwd)
{
    memset(n, 0, sizeof *n);
    n->ps = nn_params_new(AD_F64, NULL);
    n->L = 2;
    make_layer(n, 0, fwd, I);
    make_layer(n, 1, bwd, I);
    n->wo = nn_params_add(n->ps, "head.W", ad_shape2(H, V), NULL);
    ad_rng rng;
    ad_rng_seed(&rng, 11, 3);
    nn_params_init_uniform(n->ps, &rng, -0.7, 0.7);
}

/* The head on both directions' states and 0.1 sum(cat) at every step, after
 * nn_unroll_bidirectional with c (recompute -1: store all). */
static double run_bidir(net *n, int T, run_cfg c, double *g, size_t *ng)
{
    ad_tape *t = ad_tape_new(NULL);
    nn_params_zero_grad(n->ps);
    static ad_tensor *xs[TMAX], *cat[TMAX];
    static nn_state of[TMAX], ob[TMAX];
    make_inputs(t, T, xs);
    nn_state h0[2];
    make_h0(t, n, h0);
    n->lengths = c.masked ? row_lengths : NULL;
    nn_unroll_options o = {.h0 = h0, .lengths = n->lengths, .hoist_input = c.hoist};
    if (c.recompute >= 0) o.recompute = c.recompute, o.segments = c.segments, o.slots = c.slots;
    cr_assert_eq(nn_unroll_bidirectional(t, &n->cells[0], &n->cells[1], xs, T, &o, of, ob, cat), AD_OK, "%s",
                 ad_tape_message(t));
    ad_tensor *loss = NULL;
    for (int k = 0; k < T; k++) {
        ad_tensor *l = ad_add(t, ad_add(t, head_loss(t, n, k, &of[k]), head_loss(t, n, k, &ob[k])),
                              ad_mul_scalar(t, ad_sum(t, cat[k], AD_AXIS_ALL, 0), 0.1));
        loss = loss ? ad_add(t, loss, l) : l;
    }
    double lv = ad_tensor_f64(loss)[0];
    cr_assert_eq(ad_backward(t, loss, NULL), AD_OK, "%s", ad_tape_message(t));
    *ng = gather_grads(n, xs, T, h0, g);
    ad_tape_free(t);
    return lv;
}

static void compare_bidir(nn_cell_kind fwd, nn_cell_kind bwd, run_cfg c)
{
    long before = ts_live_allocs();
    net n;
    make_bidir(&n, fwd, bwd);
    size_t n0, n1;
    run_cfg ref = c;
    ref.recompute = -1;
    double l0 = run_bidir(&n, 23, ref, g_ref, &n0), l1 = run_bidir(&n, 23, c, g_rc, &n1);
    cr_assert_eq(n0, n1);
    cr_assert(fabs(l0 - l1) <= 1e-12 * fabs(l0), "loss %.17g vs store-all %.17g", l1, l0);
    expect_rel(g_ref, g_rc, n0, "gradient");
    nn_params_free(n.ps);
    cr_assert_eq(ts_live_allocs(), before, "no leak");
}

Test(nn_recompute, bidirectional_each_direction)
{
    const nn_cell_kind kinds[4] = {NN_CELL_RNN_TANH, NN_CELL_LSTM, NN_CELL_GRU, NN_CELL_CUSTOM};
    for (int i = 0; i < 4; i++) {
        compare_bidir(kinds[i], kinds[(i + 1) % 4], (run_cfg)SQRT_T);
        compare_bidir(kinds[i], kinds[i], (run_cfg){.recompute = NN_RECOMPUTE_SLOTS, .slots = 2, .masked = 1});
        compare_bidir(kinds[(i + 2) % 4], kinds[i], (run_cfg){.recompute = NN_RECOMPUTE_SEGMENTS, .segments = 5,
                                                              .masked = 1, .hoist = 1});
    }
}

/* ---- sequence tensors: the array form underneath ---- */

/* sum(y^2 * w) over nn_unroll_seq's (stack: nn_unroll_layers_seq's) output
 * for x [T, B, I] (or batch-first), w fixed weights; the loss and the
 * gradients of the parameters and of x. */
static double run_seq(net *n, int T, int batch_first, int recompute, double *g, size_t *ng)
{
    ad_tape *t = ad_tape_new(NULL);
    nn_params_zero_grad(n->ps);
    static double xd[TMAX * B * I], wd[TMAX * B * H];
    ts_fill_uniform(xd, (size_t)T * B * I, 3, -1, 1);
    ts_fill_uniform(wd, (size_t)T * B * H, 4, 0, 1);
    ad_shape xs = batch_first ? ad_shape3(B, T, I) : ad_shape3(T, B, I);
    ad_tensor *x = ad_variable(t, AD_F64, xs, xd), *y = NULL;
    ad_tensor *w = ad_from_data(t, AD_F64, batch_first ? ad_shape3(B, T, H) : ad_shape3(T, B, H), wd);
    nn_unroll_options o = {.batch_first = batch_first, .recompute = recompute, .slots = 2, .hoist_input = 1};
    nn_state lasts[LMAX];
    ad_status st = n->L == 1 ? nn_unroll_seq(t, n->cells, x, &o, &y, lasts)
                             : nn_unroll_layers_seq(t, n->cells, n->L, x, &o, &y, lasts);
    cr_assert_eq(st, AD_OK, "%s", ad_tape_message(t));
    ad_tensor *loss = ad_sum(t, ad_mul(t, ad_mul(t, y, y), w), AD_AXIS_ALL, 0);
    double lv = ad_tensor_f64(loss)[0];
    cr_assert_eq(ad_backward(t, loss, NULL), AD_OK, "%s", ad_tape_message(t));
    size_t m = 0;
    for (size_t p = 0; p < nn_params_count(n->ps); p++) {
        ad_tensor *gr = ad_param_grad(nn_params_at(n->ps, p));
        for (size_t i = 0; i < ad_tensor_numel(gr); i++) g[m++] = ad_tensor_f64(gr)[i];
    }
    for (size_t i = 0; i < (size_t)T * B * I; i++) g[m++] = ad_tensor_grad_f64(x)[i];
    *ng = m;
    ad_tape_free(t);
    return lv;
}

Test(nn_recompute, sequence_tensors)
{
    long before = ts_live_allocs();
    const nn_cell_kind kinds[2][2] = {{NN_CELL_LSTM}, {NN_CELL_GRU, NN_CELL_CUSTOM}};
    for (int s = 0; s < 2; s++)
        for (int bf = 0; bf < 2; bf++)
            for (int mode = NN_RECOMPUTE_SEGMENTS; mode <= NN_RECOMPUTE_SLOTS; mode++) {
                net n;
                make_stack(&n, kinds[s], s + 1);
                size_t n0, n1;
                double l0 = run_seq(&n, 23, bf, NN_RECOMPUTE_OFF, g_ref, &n0);
                double l1 = run_seq(&n, 23, bf, mode, g_rc, &n1);
                cr_assert_eq(n0, n1);
                cr_assert(fabs(l0 - l1) <= 1e-12 * fabs(l0), "loss %.17g vs store-all %.17g", l1, l0);
                expect_rel(g_ref, g_rc, n0, "gradient");
                nn_params_free(n.ps);
            }
    cr_assert_eq(ts_live_allocs(), before, "no leak");
}

/* With gradients disabled the regions simply run on the tape: the same loss. */
Test(nn_recompute, grad_disabled_gives_the_same_loss)
{
    long before = ts_live_allocs();
    net n;
    make_net(&n, NN_CELL_LSTM);
    double l[3];
    for (int mode = 0; mode < 3; mode++) {
        ad_tape *t = ad_tape_new(NULL);
        ad_tape_set_grad_enabled(t, 0);
        ad_rng rng;
        ad_rng_seed(&rng, 7, 1);
        ad_tensor *xs[23];
        for (int k = 0; k < 23; k++) xs[k] = ad_rand_normal(t, &rng, AD_F64, ad_shape2(B, I), 0, 1);
        ad_tensor *loss = NULL;
        nn_unroll_options o = {.recompute = mode == 0 ? NN_RECOMPUTE_OFF : mode == 1 ? NN_RECOMPUTE_SEGMENTS
                                                                                    : NN_RECOMPUTE_SLOTS,
                               .slots = 2, .step_loss = head_loss, .step_loss_ctx = &n, .loss = &loss};
        cr_assert_eq(nn_unroll(t, n.cells, xs, 23, &o, NULL, NULL), AD_OK, "%s", ad_tape_message(t));
        l[mode] = ad_tensor_f64(loss)[0];
        ad_tape_free(t);
    }
    cr_assert(fabs(l[1] - l[0]) <= 1e-12 * fabs(l[0]) && fabs(l[2] - l[0]) <= 1e-12 * fabs(l[0]),
              "losses %.17g %.17g %.17g", l[0], l[1], l[2]);
    nn_params_free(n.ps);
    cr_assert_eq(ts_live_allocs(), before, "no leak");
}

/* ---- bad options ---- */

static ad_tensor *null_loss(ad_tape *t, void *ctx, int step, const nn_state *h)
{
    (void)t, (void)ctx, (void)step, (void)h;
    return NULL;
}

static ad_tensor *vector_loss(ad_tape *t, void *ctx, int step, const nn_state *h)
{
    (void)t, (void)ctx, (void)step;
    return h->h;
}

/* nn_unroll with options o on T steps: returns the status, the message in msg */
static ad_status try_unroll(net *n, int T, nn_unroll_options o, char *msg)
{
    ad_tape *t = ad_tape_new(NULL);
    ad_tensor *xs[8];
    for (int k = 0; k < 8; k++) xs[k] = ad_zeros(t, AD_F64, ad_shape2(B, I));
    nn_state last;
    ad_status st = nn_unroll(t, n->cells, xs, T, &o, NULL, &last);
    strcpy(msg, ad_tape_message(t));
    ad_tape_free(t);
    return st;
}

Test(nn_recompute, bad_options_are_clear_errors)
{
    long before = ts_live_allocs();
    net n;
    make_net(&n, NN_CELL_LSTM);
    char msg[512];
    ad_tensor *loss;
    nn_unroll_options ok = {.recompute = NN_RECOMPUTE_SEGMENTS, .step_loss = head_loss, .step_loss_ctx = &n,
                            .loss = &loss};
    cr_assert_eq(try_unroll(&n, 8, ok, msg), AD_OK, "%s", msg);

    nn_unroll_options o = ok;
    o.segments = -2;
    cr_assert_eq(try_unroll(&n, 8, o, msg), AD_ERR_ARG);
    cr_assert(strstr(msg, "segments = -2"), "%s", msg);
    o = ok, o.recompute = NN_RECOMPUTE_SLOTS, o.slots = 0;
    cr_assert_eq(try_unroll(&n, 8, o, msg), AD_ERR_ARG);
    cr_assert(strstr(msg, "slots = 0"), "%s", msg);
    o = ok, o.recompute = 7;
    cr_assert_eq(try_unroll(&n, 8, o, msg), AD_ERR_ARG);
    cr_assert(strstr(msg, "recompute = 7"), "%s", msg);
    cr_assert_eq(try_unroll(&n, 0, ok, msg), AD_ERR_EMPTY);
    cr_assert(strstr(msg, "T = 0"), "%s", msg);
    o = ok, o.step_loss = NULL;
    cr_assert_eq(try_unroll(&n, 8, o, msg), AD_ERR_NULL);
    cr_assert(strstr(msg, "step_loss is NULL"), "%s", msg);
    o = ok, o.loss = NULL;
    cr_assert_eq(try_unroll(&n, 8, o, msg), AD_ERR_NULL);
    cr_assert(strstr(msg, "loss (its output) is NULL"), "%s", msg);
    o = ok, o.step_loss = null_loss;
    cr_assert_eq(try_unroll(&n, 8, o, msg), AD_ERR_NULL);
    cr_assert(strstr(msg, "step_loss returned NULL at t=0"), "%s", msg);
    o = ok, o.step_loss = vector_loss;
    cr_assert_eq(try_unroll(&n, 8, o, msg), AD_ERR_SHAPE);
    cr_assert(strstr(msg, "one element"), "%s", msg);
    int64_t lengths[B] = {8, 9, 8};
    o = ok, o.lengths = lengths;
    cr_assert_eq(try_unroll(&n, 8, o, msg), AD_ERR_ARG);
    cr_assert(strstr(msg, "length 9 of row 1 is outside 1..8"), "%s", msg);

    nn_params_free(n.ps);
    cr_assert_eq(ts_live_allocs(), before, "no leak");
}

/* nn_unroll_layers / nn_unroll_bidirectional with options o on 4 steps:
 * the status, the message in msg (bidir: the bidirectional form). */
static ad_status try_layers(net *n, nn_unroll_options o, int bidir, nn_state *outs, char *msg)
{
    ad_tape *t = ad_tape_new(NULL);
    ad_tensor *xs[4], *cat[4];
    nn_state outs2[4];
    for (int k = 0; k < 4; k++) xs[k] = ad_zeros(t, AD_F64, ad_shape2(B, I));
    ad_status st = bidir ? nn_unroll_bidirectional(t, &n->cells[0], &n->cells[0], xs, 4, &o, outs, outs2, cat)
                         : nn_unroll_layers(t, n->cells, n->L, xs, 4, &o, outs, NULL);
    strcpy(msg, ad_tape_message(t));
    ad_tape_free(t);
    return st;
}

Test(nn_recompute, bad_layer_options_are_clear_errors)
{
    long before = ts_live_allocs();
    net n;
    make_stack(&n, (nn_cell_kind[]){NN_CELL_LSTM, NN_CELL_GRU}, 2);
    char msg[512];
    ad_tensor *loss;
    nn_state outs[4];
    nn_unroll_options ok = {.recompute = NN_RECOMPUTE_SEGMENTS, .step_loss = head_loss, .step_loss_ctx = &n,
                            .loss = &loss};
    cr_assert_eq(try_layers(&n, ok, 0, NULL, msg), AD_OK, "%s", msg); /* outs optional with step_loss */
    nn_unroll_options o = ok;
    o.slots = 0, o.recompute = NN_RECOMPUTE_SLOTS;
    cr_assert_eq(try_layers(&n, o, 0, outs, msg), AD_ERR_ARG);
    cr_assert(strstr(msg, "slots = 0"), "%s", msg);
    o = ok, o.step_loss = NULL;
    cr_assert_eq(try_layers(&n, o, 0, outs, msg), AD_ERR_NULL);
    cr_assert(strstr(msg, "step_loss is NULL"), "%s", msg);
    o = ok, o.dropout = 0.5, o.train = 1;
    cr_assert_eq(try_layers(&n, o, 0, outs, msg), AD_ERR_NULL);
    cr_assert(strstr(msg, "needs an rng"), "%s", msg);
    o = (nn_unroll_options){0};
    cr_assert_eq(try_layers(&n, o, 0, NULL, msg), AD_ERR_NULL);
    cr_assert(strstr(msg, "outs is NULL"), "%s", msg);
    int64_t lengths[B] = {4, 0, 4};
    o = ok, o.lengths = lengths;
    cr_assert_eq(try_layers(&n, o, 0, outs, msg), AD_ERR_ARG);
    cr_assert(strstr(msg, "length 0 of row 1"), "%s", msg);
    n.cells[1].input_size = H + 1; /* layer 1 cannot read layer 0 */
    cr_assert_eq(try_layers(&n, ok, 0, outs, msg), AD_ERR_SHAPE);
    cr_assert(strstr(msg, "layer 1"), "%s", msg);
    n.cells[1].input_size = H;
    /* bidirectional: recompute works, step_loss is refused by name */
    o = ok, o.step_loss = NULL, o.loss = NULL;
    cr_assert_eq(try_layers(&n, o, 1, outs, msg), AD_OK, "%s", msg);
    cr_assert_eq(try_layers(&n, ok, 1, outs, msg), AD_ERR_ARG);
    cr_assert(strstr(msg, "step_loss is not supported with bidirectional"), "%s", msg);
    o = ok, o.step_loss = NULL;
    cr_assert_eq(try_layers(&n, o, 1, outs, msg), AD_ERR_ARG);
    cr_assert(strstr(msg, "bidirectional"), "%s", msg);
    nn_params_free(n.ps);
    cr_assert_eq(ts_live_allocs(), before, "no leak");
}
