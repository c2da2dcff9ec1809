/*
 * test_nn_custom.c - a cell written by the user (the minimal gated unit of
 * docs/guide.md) gets BPTT from the generic unroller with no extra code:
 * its gradients pass an f64 gradient check through a masked, unrolled batch,
 * and the per-step copies sum to the parameter gradients.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include <unroll/nn/nn.h>
#include "testsupport.h"

/* u = sigmoid(x Wu + h Uu), h' = u*h + (1-u)*tanh(x Wc + h Uc) */
static ad_status mgu_step(ad_tape *t, const nn_cell *c, ad_tensor *x, const nn_state *prev,
                          nn_state *next)
{
    ad_tensor *u = ad_sigmoid(t, ad_add(t, ad_matmul(t, x, ad_use(t, c->w[0]), 0),
                                        ad_matmul(t, prev->h, ad_use(t, c->w[1]), 0)));
    ad_tensor *cand = ad_tanh(t, ad_add(t, ad_matmul(t, x, ad_use(t, c->w[2]), 0),
                                        ad_matmul(t, prev->h, ad_use(t, c->w[3]), 0)));
    ad_tensor *one_minus_u = ad_add_scalar(t, ad_neg(t, u), 1.0);
    next->h = ad_add(t, ad_mul(t, u, prev->h), ad_mul(t, one_minus_u, cand));
    return ad_tape_status(t);
}

enum { I = 2, H = 3, B = 2, T = 5 };

typedef struct ctx {
    nn_cell cell;
    double x[T * B * I];
} mgu_ctx;

static ad_tensor *graph(ad_tape *t, void *vc)
{
    mgu_ctx *c = vc;
    ad_tensor *xs[T];
    for (int k = 0; k < T; k++) xs[k] = ad_from_data(t, AD_F64, ad_shape2(B, I), c->x + k * B * I);
    int64_t lengths[B] = {T, 3};
    nn_unroll_options o = {0};
    o.lengths = lengths;
    nn_state outs[T], last;
    if (nn_unroll(t, &c->cell, xs, T, &o, outs, &last) != AD_OK) return NULL;
    return ad_sum(t, ad_mul(t, last.h, last.h), AD_AXIS_ALL, 0);
}

Test(nn_custom, user_cell_gets_bptt)
{
    long before = ts_live_allocs();
    nn_params *ps = nn_params_new(AD_F64, NULL);
    mgu_ctx c = {.cell = {.name = "mgu", .input_size = I, .hidden_size = H, .step = mgu_step, .n_w = 4}};
    const char *names[4] = {"mgu.Wu", "mgu.Uu", "mgu.Wc", "mgu.Uc"};
    for (int i = 0; i < 4; i++)
        c.cell.w[i] = nn_params_add(ps, names[i], i % 2 ? ad_shape2(H, H) : ad_shape2(I, H), NULL);
    ad_rng rng;
    ad_rng_seed(&rng, 4, 0);
    nn_params_init_uniform(ps, &rng, -0.8, 0.8);
    ts_fill_uniform(c.x, T * B * I, 5, -1, 1);

    ad_gradcheck_report rep;
    ad_error err;
    ad_status st = ad_gradcheck(graph, &c, c.cell.w, 4, NULL, &rep, &err);
    if (st != AD_OK) ad_gradcheck_print(&rep, stderr);
    cr_assert_eq(st, AD_OK, "%s", err.msg);

    ad_tape *t = ad_tape_new(NULL);
    nn_params_zero_grad(ps);
    cr_assert_eq(ad_backward(t, graph(t, &c), NULL), AD_OK, "%s", ad_tape_message(t));
    for (int i = 0; i < 4; i++) {
        ad_tensor *copies[T];
        cr_assert_eq(ad_tape_copies(t, c.cell.w[i], copies, T), T);
        ad_tensor *g = ad_param_grad(c.cell.w[i]);
        for (size_t e = 0; e < ad_tensor_numel(g); e++) {
            double s = 0;
            for (int k = T - 1; k >= 0; k--) s += ad_tensor_grad_f64(copies[k])[e];
            cr_assert_eq(s, ad_tensor_f64(g)[e]);
        }
    }
    ad_tape_free(t);
    nn_params_free(ps);
    cr_assert_eq(ts_live_allocs(), before);
}

/* ---- per-copy gradient check --------------------------------------------------------- */

typedef struct lstm_ctx {
    nn_cell cell;
    double x[T * B * I];
} lstm_ctx;

static ad_tensor *lstm_graph(ad_tape *t, void *vc)
{
    lstm_ctx *c = vc;
    ad_tensor *xs[T];
    for (int k = 0; k < T; k++) xs[k] = ad_from_data(t, AD_F64, ad_shape2(B, I), c->x + k * B * I);
    nn_state outs[T];
    if (nn_unroll(t, &c->cell, xs, T, NULL, outs, NULL) != AD_OK) return NULL;
    ad_tensor *loss = NULL;
    for (int k = 0; k < T; k++) {
        ad_tensor *l = ad_sum(t, ad_mul(t, outs[k].h, outs[k].h), AD_AXIS_ALL, 0);
        loss = loss ? ad_add(t, loss, l) : l;
    }
    return loss;
}

Test(nn_custom, per_copy_gradcheck)
{
    long before = ts_live_allocs();
    nn_params *ps = nn_params_new(AD_F64, NULL);
    lstm_ctx c;
    cr_assert_eq(nn_cell_create(&c.cell, ps, "lstm", &(nn_cell_options){.kind = NN_CELL_LSTM, .input_size = I, .hidden_size = H}, NULL), AD_OK);
    ad_rng rng;
    ad_rng_seed(&rng, 10, 0);
    nn_cell_init_pytorch(&c.cell, &rng);
    ts_fill_uniform(c.x, T * B * I, 11, -1, 1);
    size_t steps[3] = {0, 2, T - 1};
    for (int w = 0; w < c.cell.n_w; w++)
        for (int s = 0; s < 3; s++) {
            ad_gradcheck_entry e;
            ad_error err;
            ad_status st = ad_gradcheck_copy(lstm_graph, &c, c.cell.w[w], steps[s], NULL, &e, &err);
            cr_assert_eq(st, AD_OK, "%s step %zu: %s", ad_param_name(c.cell.w[w]), steps[s], err.msg);
            cr_assert(e.passed);
        }
    /* Different steps have different gradients: the check is per copy, not per parameter. */
    ad_gradcheck_entry e0, e4;
    ad_gradcheck_copy(lstm_graph, &c, c.cell.w[1], 0, NULL, &e0, NULL);
    ad_gradcheck_copy(lstm_graph, &c, c.cell.w[1], T - 1, NULL, &e4, NULL);
    cr_assert_neq(e0.analytic, e4.analytic);
    ad_error err;
    cr_assert_eq(ad_gradcheck_copy(lstm_graph, &c, c.cell.w[0], T, NULL, &e0, &err), AD_ERR_ARG);
    cr_assert(strstr(err.msg, "has 5 copies"), "%s", err.msg);
    cr_assert_eq(ad_gradcheck_copy(lstm_graph, &c, NULL, 0, NULL, &e0, &err), AD_ERR_NULL);
    cr_assert_eq(ad_gradcheck_copy(lstm_graph, &c, c.cell.w[0], 0, NULL, NULL, &err), AD_ERR_NULL);
    nn_params *p32 = nn_params_new(AD_F32, NULL);
    ad_param *w32 = nn_params_add(p32, "w", ad_shape1(2), NULL);
    cr_assert_eq(ad_gradcheck_copy(lstm_graph, &c, w32, 0, NULL, &e0, &err), AD_ERR_DTYPE);
    nn_params_free(p32);
    nn_params_free(ps);
    cr_assert_eq(ts_live_allocs(), before);
}

/* A step whose backward is wrong at one step only is caught by the per-copy check. */
static void twice_fwd(void *ctx, ad_tensor *const *in, int n, ad_tensor *out)
{
    (void)ctx, (void)n;
    for (size_t i = 0; i < ad_tensor_numel(out); i++) ad_tensor_f64(out)[i] = 2 * ad_tensor_f64(in[0])[i];
}
static void twice_bwd_wrong(void *ctx, ad_tensor *const *in, int n, ad_tensor *out, ad_tensor *gout,
                            ad_tensor *const *gin)
{
    (void)ctx, (void)in, (void)n, (void)out;
    if (gin[0])
        for (size_t i = 0; i < ad_tensor_numel(gout); i++)
            ad_tensor_f64(gin[0])[i] += 3 * ad_tensor_f64(gout)[i]; /* should be 2 */
}
static ad_status same_shape(void *ctx, ad_tensor *const *in, int n, ad_shape *out, char *msg, size_t m)
{
    (void)ctx, (void)n, (void)msg, (void)m;
    *out = ad_tensor_shape(in[0]);
    return AD_OK;
}
static const ad_custom_op twice_wrong = {"twice_wrong", 1, same_shape, twice_fwd, twice_bwd_wrong, NULL};

static ad_tensor *buggy_graph(ad_tape *t, void *vp)
{
    ad_param *w = vp;
    ad_tensor *s = ad_ones(t, AD_F64, ad_shape1(2));
    for (int k = 0; k < 3; k++) {
        ad_tensor *wk = ad_use(t, w);
        if (k == 1) wk = ad_custom(t, &twice_wrong, NULL, &wk, 1); /* the bug lives at step 1 */
        s = ad_tanh(t, ad_mul(t, s, wk));
    }
    return ad_sum(t, s, AD_AXIS_ALL, 0);
}

Test(nn_custom, per_copy_gradcheck_finds_a_bug_at_one_step)
{
    ad_param *w = ad_param_new("w", AD_F64, ad_shape1(2), NULL);
    ad_tensor_f64(ad_param_value(w))[0] = 0.7;
    ad_tensor_f64(ad_param_value(w))[1] = -0.4;
    ad_gradcheck_entry e;
    ad_error err;
    cr_assert_eq(ad_gradcheck_copy(buggy_graph, w, w, 0, NULL, &e, &err), AD_OK, "%s", err.msg);
    cr_assert_eq(ad_gradcheck_copy(buggy_graph, w, w, 1, NULL, &e, &err), AD_ERR_MISMATCH);
    cr_assert_eq(ad_gradcheck_copy(buggy_graph, w, w, 2, NULL, &e, &err), AD_OK, "%s", err.msg);
    ad_param_free(w);
}

/* A step that goes wrong at t = 2: an op error there names the step. */
static ad_status failing_step(ad_tape *t, const nn_cell *c, ad_tensor *x, const nn_state *prev, nn_state *next)
{
    (void)x;
    int *calls = c->ctx;
    ad_tensor *bad = (*calls)++ == 2 ? ad_zeros(t, AD_F64, ad_shape2(1, 7)) : prev->h;
    next->h = ad_add(t, prev->h, bad);
    return ad_tape_status(t);
}

Test(nn_custom, an_error_inside_a_step_names_the_step)
{
    long before = ts_live_allocs();
    ad_error err;
    nn_params *ps = nn_params_new(AD_F64, &err);
    int calls = 0;
    nn_cell cell = {.kind = NN_CELL_CUSTOM, .input_size = I, .hidden_size = H, .step = failing_step, .ctx = &calls};
    strcpy(cell.name, "odd");
    cell.w[0] = nn_params_add(ps, "w", ad_shape2(I, H), &err);
    cell.n_w = 1;
    ad_tape *t = ad_tape_new(NULL);
    ad_tensor *xs[T];
    for (int k = 0; k < T; k++) xs[k] = ad_zeros(t, AD_F64, ad_shape2(B, I));
    cr_assert_eq(nn_unroll(t, &cell, xs, T, NULL, NULL, NULL), AD_ERR_SHAPE);
    cr_assert(strstr(ad_tape_message(t), "add: ") == ad_tape_message(t), "%s", ad_tape_message(t));
    cr_assert(strstr(ad_tape_message(t), "(at odd t=2)"), "%s", ad_tape_message(t));
    /* outside a labelled region the message is as before */
    ad_tape_reset(t);
    ad_add(t, ad_zeros(t, AD_F64, ad_shape2(2, 3)), ad_zeros(t, AD_F64, ad_shape2(1, 7)));
    cr_assert(!strstr(ad_tape_message(t), "(at "), "%s", ad_tape_message(t));
    ad_tape_free(t);
    nn_params_free(ps);
    cr_assert_eq(ts_live_allocs(), before);
}

Test(nn_custom, a_weight_list_out_of_range_is_refused)
{
    long before = ts_live_allocs();
    ad_error err;
    nn_params *ps = nn_params_new(AD_F64, &err);
    nn_cell cell = {.kind = NN_CELL_CUSTOM, .input_size = I, .hidden_size = H, .step = mgu_step};
    strcpy(cell.name, "many");
    for (int i = 0; i < NN_CELL_MAX_PARAMS; i++) {
        char name[16];
        snprintf(name, sizeof name, "w%d", i);
        cell.w[i] = nn_params_add(ps, name, ad_shape2(I, H), &err);
    }
    ad_tape *t = ad_tape_new(NULL);
    ad_tensor *xs[T];
    for (int k = 0; k < T; k++) xs[k] = ad_zeros(t, AD_F64, ad_shape2(B, I));
    cell.n_w = NN_CELL_MAX_PARAMS + 1;
    cr_assert_eq(nn_unroll(t, &cell, xs, T, NULL, NULL, NULL), AD_ERR_ARG);
    cr_assert(strstr(ad_tape_message(t), "n_w = 9 is outside 0..8"), "%s", ad_tape_message(t));
    ad_tape_reset(t);
    for (int k = 0; k < T; k++) xs[k] = ad_zeros(t, AD_F64, ad_shape2(B, I));
    cell.n_w = -1;
    cr_assert_eq(nn_unroll(t, &cell, xs, T, NULL, NULL, NULL), AD_ERR_ARG);
    ad_tape_reset(t);
    for (int k = 0; k < T; k++) xs[k] = ad_zeros(t, AD_F64, ad_shape2(B, I));
    cell.n_w = 4;
    cell.w[2] = NULL;
    cr_assert_eq(nn_unroll(t, &cell, xs, T, NULL, NULL, NULL), AD_ERR_NULL);
    cr_assert(strstr(ad_tape_message(t), "w[2] is NULL"), "%s", ad_tape_message(t));
    ad_tape_free(t);
    nn_params_free(ps);
    cr_assert_eq(ts_live_allocs(), before);
}
