/*
 * test_nn_fuse_steps.c - nn_unroll_options.fuse_steps: an Elman or GRU
 * layer's hoisted blocks as sequence nodes give the states and gradients of
 * the step-by-step unroll (f64 rounding), in one layer and stacked, with and
 * without biases, in one block or several, from fewer nodes; the
 * gradient-flow report keeps per-step norms only with one-step blocks and
 * refuses longer ones; every combination it does not apply to is refused.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include <unroll/nn/nn.h>

#include "testsupport.h"
#include "../nn/internal.h"

enum { FT = 7, FB = 3, FI = 4, FH = 5 };

typedef struct fuse_run {
    double out[FT * FB * FH], grads[1024];
    size_t n, nodes;
} fuse_run;

typedef struct fuse_case {
    nn_cell_kind kind;
    int layers, no_bias, hoist_block;
} fuse_case;

/* loss = sum_t sum(tanh(h_t)) of the top layer, through nn_unroll (one
 * layer) or nn_unroll_layers; the outputs, gradients and the nodes the
 * unroll recorded. */
static void run_net(const fuse_case *c, int fuse, fuse_run *r)
{
    double x[FT * FB * FI];
    ts_fill_uniform(x, FT * FB * FI, 77, -1, 1);
    nn_params *ps = nn_params_new(AD_F64, NULL);
    nn_cell cells[2];
    for (int l = 0; l < c->layers; l++) {
        nn_cell_options co = {.kind = c->kind, .layer = l, .input_size = l ? FH : FI, .hidden_size = FH,
                              .no_bias = c->no_bias};
        cr_assert_eq(nn_cell_create(&cells[l], ps, "e", &co, NULL), AD_OK);
    }
    ad_rng rng;
    ad_rng_seed(&rng, 5, 0);
    nn_params_init_uniform(ps, &rng, -0.6, 0.6);
    ad_tape *t = ad_tape_new(NULL);
    ad_tensor *xs[FT];
    for (int s = 0; s < FT; s++) xs[s] = ad_from_data(t, AD_F64, ad_shape2(FB, FI), x + s * FB * FI);
    size_t before = ad_tape_size(t);
    nn_unroll_options o = {.hoist_input = 1, .hoist_block = c->hoist_block, .fuse_steps = fuse};
    nn_state outs[FT], lasts[2];
    ad_status st = c->layers == 1 ? nn_unroll(t, &cells[0], xs, FT, &o, outs, &lasts[0])
                                  : nn_unroll_layers(t, cells, c->layers, xs, FT, &o, outs, lasts);
    cr_assert_eq(st, AD_OK, "%s", ad_tape_message(t));
    r->nodes = ad_tape_size(t) - before;
    ad_tensor *loss = NULL;
    for (int s = 0; s < FT; s++) {
        memcpy(r->out + s * FB * FH, ad_tensor_f64(outs[s].h), FB * FH * sizeof(double));
        ad_tensor *l = ad_sum(t, ad_tanh(t, outs[s].h), AD_AXIS_ALL, 0);
        loss = loss ? ad_add(t, loss, l) : l;
    }
    cr_assert(ad_tensor_f64(outs[FT - 1].h) == ad_tensor_f64(lasts[c->layers - 1].h), "the last state is the last output");
    cr_assert_eq(ad_backward(t, loss, NULL), AD_OK, "%s", ad_tape_message(t));
    const double *g = nn_params_grads(ps, &r->n);
    cr_assert_leq(r->n, 1024);
    memcpy(r->grads, g, r->n * sizeof *g);
    ad_tape_free(t);
    nn_params_free(ps);
}

Test(nn_fuse_steps, equals_the_step_by_step_unroll_from_fewer_nodes)
{
    static const fuse_case cases[] = {
        {NN_CELL_RNN_TANH, 1, 0, 0}, {NN_CELL_RNN_TANH, 1, 1, 0}, {NN_CELL_RNN_RELU, 1, 0, 3},
        {NN_CELL_RNN_TANH, 2, 0, 3}, {NN_CELL_RNN_RELU, 2, 1, 0}, {NN_CELL_RNN_TANH, 1, 0, 1},
        {NN_CELL_GRU, 1, 0, 0},      {NN_CELL_GRU, 2, 1, 3},      {NN_CELL_GRU, 1, 0, 1},
    };
    long before = ts_live_allocs();
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fuse_run steps, fused;
        run_net(&cases[i], 0, &steps);
        run_net(&cases[i], 1, &fused);
        cr_assert_eq(steps.n, fused.n);
        for (int k = 0; k < FT * FB * FH; k++)
            cr_assert(fabs(steps.out[k] - fused.out[k]) <= 1e-14, "case %zu: output %d: %.17g vs %.17g", i, k,
                      steps.out[k], fused.out[k]);
        for (size_t k = 0; k < steps.n; k++)
            cr_assert(fabs(steps.grads[k] - fused.grads[k]) <= 1e-12 * fabs(steps.grads[k]) + 1e-14,
                      "case %zu: grad %zu: %.17g vs %.17g", i, k, steps.grads[k], fused.grads[k]);
        /* one block: under half the nodes (a view per step stays); several: fewer; one-step blocks: not compared */
        size_t scale = cases[i].hoist_block == 0 ? 2 : 1;
        if (cases[i].hoist_block != 1)
            cr_assert_lt(fused.nodes * scale, steps.nodes, "case %zu: %zu fused nodes, %zu step by step", i,
                         fused.nodes, steps.nodes);
    }
    cr_assert_eq(ts_live_allocs(), before);
}

/* With one-step blocks every step keeps its own copies and the report is
 * the step-by-step one's; with longer blocks it is refused, not made up. */
static ad_status flow(int fuse, int hoist_block, nn_grad_flow *g, ad_error *err)
{
    nn_params *ps = nn_params_new(AD_F64, NULL);
    nn_cell cell;
    nn_cell_options co = {.kind = NN_CELL_RNN_TANH, .input_size = FI, .hidden_size = FH};
    cr_assert_eq(nn_cell_create(&cell, ps, "e", &co, NULL), AD_OK);
    ad_rng rng;
    ad_rng_seed(&rng, 9, 0);
    nn_params_init_uniform(ps, &rng, -0.6, 0.6);
    double x[FT * FB * FI];
    ts_fill_uniform(x, FT * FB * FI, 78, -1, 1);
    ad_tape *t = ad_tape_new(NULL);
    ad_tensor *xs[FT];
    for (int s = 0; s < FT; s++) xs[s] = ad_from_data(t, AD_F64, ad_shape2(FB, FI), x + s * FB * FI);
    nn_unroll_options o = {.hoist_input = 1, .hoist_block = hoist_block, .fuse_steps = fuse};
    nn_state outs[FT], last;
    cr_assert_eq(nn_unroll(t, &cell, xs, FT, &o, outs, &last), AD_OK, "%s", ad_tape_message(t));
    ad_tensor *loss = ad_sum(t, ad_mul(t, last.h, last.h), AD_AXIS_ALL, 0);
    cr_assert_eq(ad_backward(t, loss, NULL), AD_OK);
    ad_status st = nn_grad_flow_collect(t, &cell, outs, FT, &o, g, err);
    ad_tape_free(t);
    nn_params_free(ps);
    return st;
}

Test(nn_fuse_steps, gradient_flow_per_step_only_with_one_step_blocks)
{
    long before = ts_live_allocs();
    nn_grad_flow a = {0}, b = {0};
    ad_error err;
    cr_assert_eq(flow(0, 1, &a, &err), AD_OK, "%s", err.msg);
    cr_assert_eq(flow(1, 1, &b, &err), AD_OK, "%s", err.msg);
    cr_assert_eq(a.steps, b.steps);
    for (int s = 0; s < a.steps; s++)
        for (int w = 0; w < a.n_w; w++)
            cr_assert(fabs(a.rows[s].w_norm[w] - b.rows[s].w_norm[w]) <= 1e-12 * a.rows[s].w_norm[w] + 1e-15,
                      "step %d weight %d", s, w);
    nn_grad_flow_free(&a);
    nn_grad_flow_free(&b);
    nn_grad_flow c = {0};
    cr_assert_eq(flow(1, 0, &c, &err), AD_ERR_MISMATCH);
    cr_assert(strstr(err.msg, "not a multiple of 7 steps"), "%s", err.msg);
    nn_grad_flow_free(&c);
    cr_assert_eq(ts_live_allocs(), before);
}

/* Each combination fuse_steps does not apply to, refused by name. */
Test(nn_fuse_steps, refuses_what_it_does_not_apply_to)
{
    long before = ts_live_allocs();
    nn_params *ps = nn_params_new(AD_F64, NULL);
    nn_cell elman, lstm, plain, back;
    cr_assert_eq(nn_cell_create(&elman, ps, "e", &(nn_cell_options){.kind = NN_CELL_RNN_TANH, .input_size = FI,
                                                                    .hidden_size = FH}, NULL), AD_OK);
    cr_assert_eq(nn_cell_create(&lstm, ps, "l", &(nn_cell_options){.kind = NN_CELL_LSTM, .input_size = FI,
                                                                   .hidden_size = FH}, NULL), AD_OK);
    cr_assert_eq(nn_cell_create(&back, ps, "r", &(nn_cell_options){.kind = NN_CELL_RNN_TANH, .reverse = 1,
                                                                   .input_size = FI, .hidden_size = FH}, NULL), AD_OK);
    plain = elman;
    plain.step = nn__builtin_step_plain;
    int64_t lengths[FB] = {7, 3, 5};
    nn_unroll_options hoisted = {.hoist_input = 1, .fuse_steps = 1};
    struct {
        const nn_cell *cell;
        nn_unroll_options o;
        const char *want;
    } rows[] = {
        {&lstm, hoisted, "fuse_steps needs a built-in Elman or GRU cell"},
        {&plain, hoisted, "fuse_steps needs the built-in step"},
        {&elman, {.fuse_steps = 1}, "fuse_steps needs hoist_input"},
        {&elman, {.hoist_input = 1, .fuse_steps = 1, .lengths = lengths}, "fuse_steps needs no lengths"},
        {&elman, {.hoist_input = 1, .fuse_steps = 1, .reverse = 1}, "fuse_steps needs the forward direction"},
        {&elman, {.hoist_input = 1, .fuse_steps = 1, .recompute = NN_RECOMPUTE_SEGMENTS},
         "fuse_steps needs store-all"},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        ad_tape *t = ad_tape_new(NULL);
        ad_tensor *xs[FT];
        for (int s = 0; s < FT; s++) xs[s] = ad_zeros(t, AD_F64, ad_shape2(FB, FI));
        nn_state outs[FT];
        cr_assert_eq(nn_unroll(t, rows[i].cell, xs, FT, &rows[i].o, outs, NULL), AD_ERR_ARG, "row %zu", i);
        cr_assert(strstr(ad_tape_message(t), rows[i].want), "row %zu: %s", i, ad_tape_message(t));
        ad_tape_free(t);
    }
    /* stacked layers with recompute, and the bidirectional unroller */
    ad_tape *t = ad_tape_new(NULL);
    ad_tensor *xs[FT];
    for (int s = 0; s < FT; s++) xs[s] = ad_zeros(t, AD_F64, ad_shape2(FB, FI));
    nn_state outs[FT], outs_b[FT], lasts[1];
    nn_unroll_options rc = {.hoist_input = 1, .fuse_steps = 1, .recompute = NN_RECOMPUTE_SEGMENTS};
    cr_assert_eq(nn_unroll_layers(t, &elman, 1, xs, FT, &rc, outs, lasts), AD_ERR_ARG);
    cr_assert(strstr(ad_tape_message(t), "fuse_steps needs store-all"), "%s", ad_tape_message(t));
    ad_tape_reset(t);
    for (int s = 0; s < FT; s++) xs[s] = ad_zeros(t, AD_F64, ad_shape2(FB, FI));
    ad_tensor *cat[FT];
    cr_assert_eq(nn_unroll_bidirectional(t, &elman, &back, xs, FT, &hoisted, outs, outs_b, cat), AD_ERR_ARG);
    cr_assert(strstr(ad_tape_message(t), "unroll_bidirectional: fuse_steps needs the forward direction"), "%s",
              ad_tape_message(t));
    ad_tape_free(t);
    nn_params_free(ps);
    cr_assert_eq(ts_live_allocs(), before);
}
