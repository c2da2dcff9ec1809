/*
 * test_nn_hoist_block.c - nn_unroll() with hoist_input computes the input
 * projection per block of hoist_block steps (nn_unroll_options), releasing
 * each block after its steps: the loss and the gradients of every
 * parameter, of the inputs xs and of h0 equal the step-by-step unroll's
 * (hoist_input = 0) within 1e-12 relative in f64, for Elman, LSTM and GRU,
 * with T a multiple of the block or not, T below the block, the default
 * block, reversed, masked and stacked unrolls, and with a per-step head
 * (step_loss). The blocked tape keeps fewer bytes than one block of T; a
 * negative block is a clear error; nothing leaks.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include <unroll/nn/nn.h>
#include "testsupport.h"

enum { B = 3, I = 4, H = 5, V = 3, TMAX = 200, LAYERS = 2 };

typedef struct net {
    nn_params *ps;
    nn_cell cell[LAYERS];
    ad_param *wo; /* the head [H, V] */
} net;

static void make_net(net *n, nn_cell_kind kind)
{
    memset(n, 0, sizeof *n);
    n->ps = nn_params_new(AD_F64, NULL);
    for (int l = 0; l < LAYERS; l++)
        cr_assert_eq(nn_cell_create(&n->cell[l], n->ps, "c",
                                    &(nn_cell_options){.kind = kind, .input_size = l ? H : I, .hidden_size = H,
                                                       .layer = l},
                                    NULL),
                     AD_OK);
    n->wo = nn_params_add(n->ps, "head.W", ad_shape2(H, V), NULL);
    ad_rng rng;
    ad_rng_seed(&rng, 5, 2);
    nn_params_init_uniform(n->ps, &rng, -0.7, 0.7);
}

/* The head + loss of one step: sum(tanh(h Wo)^2) (1 + step / 10), + 0.1 sum(c) for an LSTM. */
static ad_tensor *head_loss(ad_tape *t, void *ctx, int step, const nn_state *h)
{
    net *n = ctx;
    ad_tensor *y = ad_tanh(t, ad_matmul(t, h->h, ad_use(t, n->wo), 0));
    ad_tensor *l = ad_mul_scalar(t, ad_sum(t, ad_mul(t, y, y), AD_AXIS_ALL, 0), 1.0 + step / 10.0);
    if (h->c) l = ad_add(t, l, ad_mul_scalar(t, ad_sum(t, h->c, AD_AXIS_ALL, 0), 0.1));
    return l;
}

typedef struct run_cfg {
    int hoist, block, step_loss, reverse, masked, layers;
} run_cfg;

static const int64_t lengths[B] = {TMAX, 2, TMAX}; /* clamped to T: row 1 is padded after step 1 */

/* One forward + backward over T steps; the loss, the gradients (parameters,
 * xs, h0) into g, the tape's bytes after backward to *bytes. */
static double run(net *n, int T, run_cfg c, double *g, size_t *ng, size_t *bytes)
{
    ad_tape *t = ad_tape_new(&(ad_tape_options){.release_grads = 1});
    nn_params_zero_grad(n->ps);
    static ad_tensor *xs[TMAX];
    static nn_state outs[TMAX];
    static double xd[B * I];
    for (int k = 0; k < T; k++) {
        ts_fill_uniform(xd, B * I, 100 + (uint64_t)k, -1, 1);
        xs[k] = ad_variable(t, AD_F64, ad_shape2(B, I), xd);
    }
    double h0d[B * H];
    ts_fill_uniform(h0d, B * H, 9, -0.5, 0.5);
    nn_state h0[LAYERS];
    for (int l = 0; l < LAYERS; l++) {
        h0[l].h = ad_variable(t, AD_F64, ad_shape2(B, H), h0d);
        h0[l].c = n->cell[0].has_c ? ad_variable(t, AD_F64, ad_shape2(B, H), h0d) : NULL;
    }
    int64_t len[B];
    for (int b = 0; b < B; b++) len[b] = lengths[b] < T ? lengths[b] : T;
    nn_unroll_options o = {.h0 = h0, .hoist_input = c.hoist, .hoist_block = c.block, .reverse = c.reverse,
                           .lengths = c.masked ? len : NULL};
    ad_tensor *loss = NULL;
    nn_state last;
    if (c.step_loss) {
        o.step_loss = head_loss, o.step_loss_ctx = n, o.loss = &loss;
        cr_assert_eq(nn_unroll(t, &n->cell[0], xs, T, &o, NULL, &last), AD_OK, "%s", ad_tape_message(t));
    } else {
        ad_status st = c.layers ? nn_unroll_layers(t, n->cell, LAYERS, xs, T, &o, outs, NULL)
                                : nn_unroll(t, &n->cell[0], xs, T, &o, outs, &last);
        cr_assert_eq(st, AD_OK, "%s", ad_tape_message(t));
        for (int k = 0; k < T; k++) {
            ad_tensor *l = head_loss(t, n, k, &outs[k]);
            loss = loss ? ad_add(t, loss, l) : l;
        }
    }
    cr_assert_not_null(loss);
    double lv = ad_tensor_f64(loss)[0];
    cr_assert_eq(ad_backward(t, loss, NULL), AD_OK, "%s", ad_tape_message(t));
    if (bytes) *bytes = ad_tape_bytes_used(t);
    size_t m = 0;
    for (size_t p = 0; p < nn_params_count(n->ps); p++) {
        ad_tensor *gr = ad_param_grad(nn_params_at(n->ps, p));
        for (size_t i = 0; i < ad_tensor_numel(gr); i++) g[m++] = ad_tensor_f64(gr)[i];
    }
    for (int k = 0; k < T; k++)
        for (int i = 0; i < B * I; i++) g[m++] = ad_tensor_grad_f64(xs[k])[i];
    for (int l = 0; l < (c.layers ? LAYERS : 1); l++) {
        for (int i = 0; i < B * H; i++) g[m++] = ad_tensor_grad_f64(h0[l].h)[i];
        if (h0[l].c)
            for (int i = 0; i < B * H; i++) g[m++] = ad_tensor_grad_f64(h0[l].c)[i];
    }
    *ng = m;
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

static double g_ref[60000], g_blk[60000];

/* The blocked run c against the step-by-step one with the same options. */
static void compare(nn_cell_kind kind, run_cfg c, int T)
{
    long before = ts_live_allocs();
    net n;
    make_net(&n, kind);
    size_t n0, n1;
    run_cfg ref = c;
    ref.hoist = 0;
    c.hoist = 1;
    double l0 = run(&n, T, ref, g_ref, &n0, NULL);
    double l1 = run(&n, T, c, g_blk, &n1, NULL);
    cr_assert_eq(n0, n1);
    cr_assert(fabs(l0 - l1) <= 1e-12 * fabs(l0), "loss %.17g vs step by step %.17g", l1, l0);
    expect_rel(g_ref, g_blk, n0, "gradient");
    nn_params_free(n.ps);
    cr_assert_eq(ts_live_allocs(), before, "no leak");
}

static const nn_cell_kind kinds[3] = {NN_CELL_RNN_TANH, NN_CELL_LSTM, NN_CELL_GRU};

Test(nn_hoist_block, t_not_a_multiple_of_the_block)
{
    for (int k = 0; k < 3; k++) compare(kinds[k], (run_cfg){.block = 4}, 23);
}

Test(nn_hoist_block, t_a_multiple_of_the_block)
{
    for (int k = 0; k < 3; k++) compare(kinds[k], (run_cfg){.block = 6}, 24);
}

Test(nn_hoist_block, t_below_the_block)
{
    for (int k = 0; k < 3; k++) compare(kinds[k], (run_cfg){.block = 8}, 3);
}

Test(nn_hoist_block, default_block_over_two_blocks)
{
    cr_assert_eq(NN_UNROLL_HOIST_BLOCK, 64);
    for (int k = 0; k < 3; k++) compare(kinds[k], (run_cfg){.block = 0}, 70);
}

Test(nn_hoist_block, blocks_of_one_step)
{
    for (int k = 0; k < 3; k++) compare(kinds[k], (run_cfg){.block = 1}, 9);
}

Test(nn_hoist_block, with_step_loss)
{
    for (int k = 0; k < 3; k++) {
        compare(kinds[k], (run_cfg){.block = 5, .step_loss = 1}, 23);
        compare(kinds[k], (run_cfg){.block = 30, .step_loss = 1}, 23);
    }
}

Test(nn_hoist_block, reversed_masked_and_stacked)
{
    for (int k = 0; k < 3; k++) {
        compare(kinds[k], (run_cfg){.block = 4, .reverse = 1}, 23);
        compare(kinds[k], (run_cfg){.block = 4, .masked = 1}, 23);
        compare(kinds[k], (run_cfg){.block = 4, .layers = 1}, 23);
    }
}

Test(nn_hoist_block, blocks_keep_fewer_tape_bytes)
{
    long before = ts_live_allocs();
    net n;
    make_net(&n, NN_CELL_LSTM);
    size_t ng, whole, blocked;
    run(&n, TMAX, (run_cfg){.hoist = 1, .block = TMAX, .step_loss = 1}, g_ref, &ng, &whole);
    run(&n, TMAX, (run_cfg){.hoist = 1, .block = 8, .step_loss = 1}, g_blk, &ng, &blocked);
    /* one [T B, 4 H] projection (and its gradient) against one block's */
    size_t proj = (size_t)TMAX * B * 4 * H * sizeof(double);
    cr_assert(blocked + proj / 2 < whole, "blocked %zu bytes, whole %zu", blocked, whole);
    nn_params_free(n.ps);
    cr_assert_eq(ts_live_allocs(), before, "no leak");
}

Test(nn_hoist_block, negative_block_is_an_error)
{
    long before = ts_live_allocs();
    net n;
    make_net(&n, NN_CELL_RNN_TANH);
    ad_tape *t = ad_tape_new(NULL);
    ad_tensor *xs[4];
    for (int k = 0; k < 4; k++) xs[k] = ad_zeros(t, AD_F64, ad_shape2(B, I));
    nn_state outs[4];
    nn_unroll_options o = {.hoist_input = 1, .hoist_block = -2};
    cr_assert_eq(nn_unroll(t, &n.cell[0], xs, 4, &o, outs, NULL), AD_ERR_ARG);
    cr_assert(strstr(ad_tape_message(t), "hoist_block = -2 is negative"), "%s", ad_tape_message(t));
    ad_tape_free(t);
    t = ad_tape_new(NULL);
    for (int k = 0; k < 4; k++) xs[k] = ad_zeros(t, AD_F64, ad_shape2(B, I));
    xs[2] = ad_zeros(t, AD_F64, ad_shape2(B, I + 1)); /* a bad step inside the second block */
    o.hoist_block = 2;
    cr_assert_eq(nn_unroll(t, &n.cell[0], xs, 4, &o, outs, NULL), AD_ERR_SHAPE);
    cr_assert(strstr(ad_tape_message(t), "t=2 differs"), "%s", ad_tape_message(t));
    ad_tape_free(t);
    nn_params_free(n.ps);
    cr_assert_eq(ts_live_allocs(), before, "no leak");
}

/*
 * With a per-step head, each step's loss term is recorded right after the
 * step, so backward reaches the head of step t just before step t: only a
 * step's dL/dh is live at a time, not T of them. A T = 400 Elman unroll on
 * a tape that releases intermediate gradients grows by far less than the
 * T B H doubles of every step's dL/dh during backward (it grew by them
 * when the terms came after all the steps).
 */
static ad_tensor *mean_head(ad_tape *t, void *ctx, int step, const nn_state *h)
{
    (void)ctx, (void)step;
    return ad_sum(t, ad_tanh(t, h->h), AD_AXIS_ALL, 0);
}

Test(nn_hoist_block, step_losses_keep_one_steps_state_gradient_live)
{
    long before = ts_live_allocs();
    enum { T = 400, BB = 16, HH = 64 };
    nn_params *ps = nn_params_new(AD_F64, NULL);
    nn_cell cell;
    cr_assert_eq(nn_cell_create(&cell, ps, "e", &(nn_cell_options){.kind = NN_CELL_RNN_TANH, .input_size = I,
                                                                     .hidden_size = HH}, NULL),
                 AD_OK);
    ad_rng rng;
    ad_rng_seed(&rng, 3, 1);
    nn_cell_init_pytorch(&cell, &rng);
    /* stacked weight gradients off: they pin a bounded number of step rows of their own */
    ad_tape *t = ad_tape_new(&(ad_tape_options){.copy_grads = AD_COPY_GRADS_NONE, .release_grads = 1,
                                                .fast_off = AD_FAST_STACKED_GRADS});
    ad_tensor *xs[T];
    for (int k = 0; k < T; k++) xs[k] = ad_rand_normal(t, &rng, AD_F64, ad_shape2(BB, I), 0, 1);
    ad_tensor *loss = NULL;
    nn_state last;
    nn_unroll_options o = {.hoist_input = 1, .step_loss = mean_head, .loss = &loss};
    cr_assert_eq(nn_unroll(t, &cell, xs, T, &o, NULL, &last), AD_OK, "%s", ad_tape_message(t));
    size_t recorded = ad_tape_bytes_used(t);
    cr_assert_eq(ad_backward(t, loss, NULL), AD_OK, "%s", ad_tape_message(t));
    size_t grew = ad_tape_bytes_used(t) - recorded, all_dh = (size_t)T * BB * HH * sizeof(double);
    cr_log_info("backward grew the tape by %zu bytes; every step's dL/dh is %zu", grew, all_dh);
    cr_assert(4 * grew < all_dh, "backward grew by %zu bytes, T dL/dh are %zu", grew, all_dh);
    ad_tape_free(t);
    nn_params_free(ps);
    cr_assert_eq(ts_live_allocs(), before);
}
