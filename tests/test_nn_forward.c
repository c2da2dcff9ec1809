/*
 * test_nn_forward.c - the exact gradient check (backward against forward
 * mode) through unrolled recurrent cells: every built-in cell, fused and
 * op-by-op, an LSTM with projections, and a custom cell, over a masked batch;
 * and the per-copy variant on one step's weights.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stdio.h>
#include <string.h>

#include <unroll/nn/nn.h>
#include "testsupport.h"
#include "../nn/internal.h"

enum { I = 3, H = 4, B = 2, T = 5 };

typedef enum cell_id { C_RNN_TANH, C_RNN_RELU, C_LSTM, C_GRU, C_LSTM_PROJ, C_CUSTOM } cell_id;

typedef struct row {
    cell_id cell;
    int plain_gates;
} row;

typedef struct ctx {
    nn_cell cell;
    double x[T * B * I];
} ctx;

/* A user's cell (the minimal gated unit): u = sigmoid(x Wu + h Uu),
 * h' = u h + (1 - u) tanh(x Wc + h Uc), ops only. */
static ad_status mgu_step(ad_tape *t, const nn_cell *c, ad_tensor *x, const nn_state *prev, nn_state *next)
{
    ad_tensor *u = ad_sigmoid(t, ad_add(t, ad_matmul(t, x, ad_use(t, c->w[0]), 0),
                                        ad_matmul(t, prev->h, ad_use(t, c->w[1]), 0)));
    ad_tensor *cand = ad_tanh(t, ad_add(t, ad_matmul(t, x, ad_use(t, c->w[2]), 0),
                                        ad_matmul(t, prev->h, ad_use(t, c->w[3]), 0)));
    next->h = ad_add(t, ad_mul(t, u, prev->h), ad_mul(t, ad_add_scalar(t, ad_neg(t, u), 1.0), cand));
    return ad_tape_status(t);
}

static ad_tensor *graph(ad_tape *t, void *vc)
{
    ctx *c = vc;
    ad_tensor *xs[T];
    for (int k = 0; k < T; k++) xs[k] = ad_from_data(t, AD_F64, ad_shape2(B, I), c->x + k * B * I);
    int64_t lengths[B] = {T, 3};
    nn_unroll_options o = {0};
    o.lengths = lengths;
    nn_state outs[T], last;
    if (nn_unroll(t, &c->cell, xs, T, &o, outs, &last) != AD_OK) return NULL;
    ad_tensor *loss = ad_sum(t, ad_mul(t, last.h, last.h), AD_AXIS_ALL, 0);
    if (last.c) loss = ad_add(t, loss, ad_sum(t, ad_tanh(t, last.c), AD_AXIS_ALL, 0));
    return loss;
}

static void make_cell(const row *r, nn_params *ps, ctx *c)
{
    memset(c, 0, sizeof *c);
    if (r->cell == C_CUSTOM) {
        c->cell = (nn_cell){.name = "mgu", .input_size = I, .hidden_size = H, .step = mgu_step, .n_w = 4};
        const char *names[4] = {"mgu.Wu", "mgu.Uu", "mgu.Wc", "mgu.Uc"};
        for (int i = 0; i < 4; i++)
            c->cell.w[i] = nn_params_add(ps, names[i], i % 2 ? ad_shape2(H, H) : ad_shape2(I, H), NULL);
    } else {
        static const nn_cell_kind kinds[] = {NN_CELL_RNN_TANH, NN_CELL_RNN_RELU, NN_CELL_LSTM, NN_CELL_GRU,
                                             NN_CELL_LSTM};
        nn_cell_options o = {.kind = kinds[r->cell], .input_size = I, .hidden_size = H,
                             .proj_size = r->cell == C_LSTM_PROJ ? 2 : 0};
        ad_error err;
        cr_assert_eq(nn_cell_create(&c->cell, ps, "cell", &o, &err), AD_OK, "%s", err.msg);
        if (r->plain_gates) c->cell.step = nn__builtin_step_plain;
    }
    ad_rng rng;
    ad_rng_seed(&rng, 21 + (uint64_t)r->cell, 0);
    nn_params_init_uniform(ps, &rng, -0.7, 0.7);
    ts_fill_uniform(c->x, T * B * I, 5, -1, 1);
}

ParameterizedTestParameters(nn_forward, exact_check_of_cells)
{
    static row rows[] = {{C_RNN_TANH, 0}, {C_RNN_TANH, 1}, {C_RNN_RELU, 0}, {C_RNN_RELU, 1}, {C_LSTM, 0},
                         {C_LSTM, 1},     {C_GRU, 0},      {C_GRU, 1},      {C_LSTM_PROJ, 0}, {C_CUSTOM, 0}};
    return cr_make_param_array(row, rows, sizeof rows / sizeof rows[0]);
}

/* Every parameter of every cell: v^T (J u) = (v^T J) u to 1e-12, and the
 * per-copy variant on the recurrent weights of steps 1 and 3. */
ParameterizedTest(row *r, nn_forward, exact_check_of_cells)
{
    long before = ts_live_allocs();
    nn_params *ps = nn_params_new(AD_F64, NULL);
    ctx c;
    make_cell(r, ps, &c);
    ad_gradcheck_report rep;
    ad_error err;
    ad_status st = ad_gradcheck_exact(graph, &c, c.cell.w, (size_t)c.cell.n_w, NULL, &rep, &err);
    if (st != AD_OK) ad_gradcheck_print(&rep, stderr);
    cr_assert_eq(st, AD_OK, "cell %d plain %d: %s", (int)r->cell, r->plain_gates, err.msg);
    cr_assert_eq(rep.count, (size_t)c.cell.n_w);
    for (size_t i = 0; i < rep.count; i++) {
        cr_assert(rep.entries[i].rel_err <= 1e-12, "%s: %g", rep.entries[i].name, rep.entries[i].rel_err);
        cr_assert(rep.entries[i].analytic != 0, "%s: a zero projection checks nothing", rep.entries[i].name);
    }
    ad_gradcheck_entry e;
    for (size_t copy = 1; copy <= 3; copy += 2) { /* step 0 multiplies h0 = 0: a zero gradient */
        st = ad_gradcheck_exact_copy(graph, &c, c.cell.w[1], copy, NULL, &e, &err);
        cr_assert_eq(st, AD_OK, "copy %zu: %s (rel %g)", copy, err.msg, e.rel_err);
        cr_assert(e.analytic != 0);
    }
    cr_assert_eq(ad_gradcheck_exact_copy(graph, &c, c.cell.w[1], T, NULL, &e, &err), AD_ERR_ARG);
    cr_assert(strstr(err.msg, "copy 5"), "%s", err.msg);
    nn_params_free(ps);
    cr_assert_eq(ts_live_allocs(), before);
}
