/*
 * test_nn_many_params.c - a custom cell with more parameters than the inline
 * list nn_cell::w holds (12 > NN_CELL_MAX_PARAMS) through nn_cell::params:
 * the unroller, the f64 gradient check, temporal copies and real-time
 * recurrent learning see all 12; the parameter names and counts are right;
 * bad lists are refused with clear errors.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <unroll/nn/nn.h>
#include "testsupport.h"

enum { I = 2, H = 3, B = 2, T = 4, PAIRS = 6, NP = 2 * PAIRS };

/* h' = tanh(sum_j x A_j + h C_j): A_j = params[2j] [I, H], C_j = params[2j+1] [H, H]. */
static ad_status wide_step(ad_tape *t, const nn_cell *c, ad_tensor *x, const nn_state *prev, nn_state *next)
{
    ad_tensor *z = NULL;
    for (int j = 0; j < PAIRS; j++) {
        ad_tensor *term = ad_add(t, ad_matmul(t, x, ad_use(t, nn_cell_weight(c, 2 * j)), 0),
                                 ad_matmul(t, prev->h, ad_use(t, nn_cell_weight(c, 2 * j + 1)), 0));
        z = z ? ad_add(t, z, term) : term;
    }
    next->h = ad_tanh(t, z);
    next->c = NULL;
    return ad_tape_status(t);
}

typedef struct wide {
    nn_params *ps;
    ad_param *list[NP];
    nn_cell cell;
    double x[T * B * I];
} wide;

static void wide_new(wide *w)
{
    ad_error err;
    w->ps = nn_params_new(AD_F64, &err);
    cr_assert(w->ps);
    for (int i = 0; i < NP; i++) {
        char name[32];
        snprintf(name, sizeof name, "wide.%c%d", i % 2 ? 'C' : 'A', i / 2);
        w->list[i] = nn_params_add(w->ps, name, i % 2 ? ad_shape2(H, H) : ad_shape2(I, H), &err);
        cr_assert(w->list[i], "%s", err.msg);
    }
    w->cell = (nn_cell){.name = "wide", .kind = NN_CELL_CUSTOM, .input_size = I, .hidden_size = H,
                        .step = wide_step, .n_w = NP, .params = w->list};
    ad_rng rng;
    ad_rng_seed(&rng, 21, 0);
    nn_params_init_uniform(w->ps, &rng, -0.4, 0.4);
    ts_fill_uniform(w->x, T * B * I, 8, -1, 1);
}

static ad_tensor *wide_graph(ad_tape *t, void *vw)
{
    wide *w = vw;
    ad_tensor *xs[T];
    for (int k = 0; k < T; k++) xs[k] = ad_from_data(t, AD_F64, ad_shape2(B, I), w->x + k * B * I);
    nn_state outs[T], last;
    if (nn_unroll(t, &w->cell, xs, T, NULL, outs, &last) != AD_OK) return NULL;
    return ad_sum(t, ad_mul(t, last.h, last.h), AD_AXIS_ALL, 0);
}

Test(nn_many_params, twelve_parameters_gradcheck_and_copies)
{
    long before = ts_live_allocs();
    wide w;
    wide_new(&w);
    /* counts and names */
    cr_assert_eq(nn_params_count(w.ps), NP);
    for (int i = 0; i < NP; i++) {
        char want[32];
        snprintf(want, sizeof want, "wide.%c%d", i % 2 ? 'C' : 'A', i / 2);
        cr_assert_eq(nn_cell_weight(&w.cell, i), w.list[i]);
        cr_assert_str_eq(ad_param_name(nn_cell_weight(&w.cell, i)), want);
    }
    cr_assert_null(nn_cell_weight(&w.cell, NP));
    cr_assert_null(nn_cell_weight(&w.cell, -1));
    cr_assert_null(nn_cell_weight(NULL, 0));
    /* the f64 gradient check over all 12 */
    ad_gradcheck_report rep;
    ad_error err;
    ad_status st = ad_gradcheck(wide_graph, &w, w.list, NP, NULL, &rep, &err);
    if (st != AD_OK) ad_gradcheck_print(&rep, stderr);
    cr_assert_eq(st, AD_OK, "%s", err.msg);
    /* one temporal copy per step for each parameter; they sum to its gradient */
    ad_tape *t = ad_tape_new(NULL);
    nn_params_zero_grad(w.ps);
    cr_assert_eq(ad_backward(t, wide_graph(t, &w), NULL), AD_OK, "%s", ad_tape_message(t));
    for (int i = 0; i < NP; i++) {
        ad_tensor *copies[T + 1];
        cr_assert_eq(ad_tape_copies(t, w.list[i], copies, T + 1), T);
        ad_tensor *g = ad_param_grad(w.list[i]);
        for (size_t e = 0; e < ad_tensor_numel(g); e++) {
            double s = 0;
            for (int k = T - 1; k >= 0; k--) s += ad_tensor_grad_f64(copies[k])[e];
            cr_assert_eq(s, ad_tensor_f64(g)[e]);
        }
    }
    ad_tape_free(t);
    nn_params_free(w.ps);
    cr_assert_eq(ts_live_allocs(), before);
}

/* RTRL on the same cell: the loss of the last step only, so its accumulated
 * gradient equals BPTT's. */
typedef struct last_loss {
    int k;
} last_loss;

static ad_tensor *rtrl_loss(ad_tape *t, const nn_state *s, void *ctx)
{
    last_loss *l = ctx;
    ad_tensor *sq = ad_sum(t, ad_mul(t, s->h, s->h), AD_AXIS_ALL, 0);
    return l->k == T - 1 ? sq : ad_mul_scalar(t, sq, 0.0);
}

Test(nn_many_params, rtrl_with_twelve_parameters_equals_bptt)
{
    long before = ts_live_allocs();
    wide w;
    wide_new(&w);
    ad_tape *t = ad_tape_new(NULL);
    nn_params_zero_grad(w.ps);
    cr_assert_eq(ad_backward(t, wide_graph(t, &w), NULL), AD_OK, "%s", ad_tape_message(t));
    double want[NP][H * H];
    for (int i = 0; i < NP; i++) {
        ad_tensor *g = ad_param_grad(w.list[i]);
        memcpy(want[i], ad_tensor_f64(g), ad_tensor_numel(g) * sizeof(double));
    }
    ad_tape_free(t);
    ad_error err;
    nn_rtrl *r = nn_rtrl_new(&w.cell, B, &err);
    cr_assert(r, "%s", err.msg);
    nn_params_zero_grad(w.ps);
    for (int k = 0; k < T; k++) {
        last_loss l = {k};
        cr_assert_eq(nn_rtrl_step(r, w.x + k * B * I, rtrl_loss, &l, NULL, &err), AD_OK, "%s", err.msg);
    }
    for (int i = 0; i < NP; i++) {
        ad_tensor *g = ad_param_grad(w.list[i]);
        double scale = 0;
        for (size_t e = 0; e < ad_tensor_numel(g); e++) scale = fmax(scale, fabs(want[i][e]));
        cr_assert(scale > 0, "%s: a zero gradient checks nothing", ad_param_name(w.list[i]));
        for (size_t e = 0; e < ad_tensor_numel(g); e++)
            cr_assert(fabs(ad_tensor_f64(g)[e] - want[i][e]) <= 1e-12 * scale, "%s[%zu]: %.17g vs %.17g",
                      ad_param_name(w.list[i]), e, ad_tensor_f64(g)[e], want[i][e]);
    }
    nn_rtrl_free(r);
    nn_params_free(w.ps);
    cr_assert_eq(ts_live_allocs(), before);
}

Test(nn_many_params, bad_lists_are_refused)
{
    long before = ts_live_allocs();
    wide w;
    wide_new(&w);
    ad_tape *t = ad_tape_new(NULL);
    ad_tensor *xs[T];
    /* 12 without a list: beyond w[] */
    nn_cell inline_only = w.cell;
    inline_only.params = NULL;
    for (int k = 0; k < T; k++) xs[k] = ad_zeros(t, AD_F64, ad_shape2(B, I));
    cr_assert_eq(nn_unroll(t, &inline_only, xs, T, NULL, NULL, NULL), AD_ERR_ARG);
    cr_assert(strstr(ad_tape_message(t), "n_w = 12 is outside 0..8"), "%s", ad_tape_message(t));
    cr_assert(strstr(ad_tape_message(t), "set params"), "%s", ad_tape_message(t));
    /* a NULL entry in the list */
    ad_param *holes[NP];
    memcpy(holes, w.list, sizeof holes);
    holes[10] = NULL;
    nn_cell holed = w.cell;
    holed.params = holes;
    ad_tape_reset(t);
    for (int k = 0; k < T; k++) xs[k] = ad_zeros(t, AD_F64, ad_shape2(B, I));
    cr_assert_eq(nn_unroll(t, &holed, xs, T, NULL, NULL, NULL), AD_ERR_NULL);
    cr_assert(strstr(ad_tape_message(t), "params[10] is NULL"), "%s", ad_tape_message(t));
    ad_error err;
    cr_assert_null(nn_rtrl_new(&holed, B, &err));
    cr_assert_eq(err.code, AD_ERR_ARG);
    cr_assert(strstr(err.msg, "parameter 10 of 12"), "%s", err.msg);
    /* rebinding an external list is refused with a clear message */
    nn_cell dst;
    cr_assert_eq(nn_cell_rebind(&w.cell, w.ps, &dst, &err), AD_ERR_ARG);
    cr_assert(strstr(err.msg, "external parameter list"), "%s", err.msg);
    ad_tape_free(t);
    nn_params_free(w.ps);
    cr_assert_eq(ts_live_allocs(), before);
}

/* The gradient-flow report has a column per parameter, however many: each
 * is the norm of that step's temporal copy's gradient. */
Test(nn_many_params, gradient_flow_has_every_column)
{
    long before = ts_live_allocs();
    wide w;
    wide_new(&w);
    ad_tape *t = ad_tape_new(NULL);
    ad_tensor *xs[T];
    for (int k = 0; k < T; k++) xs[k] = ad_from_data(t, AD_F64, ad_shape2(B, I), w.x + k * B * I);
    nn_state outs[T];
    cr_assert_eq(nn_unroll(t, &w.cell, xs, T, NULL, outs, NULL), AD_OK, "%s", ad_tape_message(t));
    cr_assert_eq(ad_backward(t, ad_sum(t, outs[T - 1].h, AD_AXIS_ALL, 0), NULL), AD_OK, "%s", ad_tape_message(t));
    nn_grad_flow f;
    ad_error err;
    cr_assert_eq(nn_grad_flow_collect(t, &w.cell, outs, T, NULL, &f, &err), AD_OK, "%s", err.msg);
    cr_assert_eq(f.n_w, NP);
    for (int i = 0; i < NP; i++) {
        cr_assert_str_eq(f.names[i], ad_param_name(w.list[i]));
        ad_tensor *copies[T];
        cr_assert_eq(ad_tape_copies(t, w.list[i], copies, T), (size_t)T);
        for (int k = 0; k < T; k++) {
            const double *g = ad_tensor_grad_f64(copies[k]);
            double ss = 0;
            for (size_t e = 0; g && e < ad_tensor_numel(copies[k]); e++) ss += g[e] * g[e];
            cr_assert(fabs(f.rows[k].w_norm[i] - sqrt(ss)) <= 1e-14 * (1 + sqrt(ss)), "%s t=%d: %.17g vs %.17g",
                      f.names[i], k, f.rows[k].w_norm[i], sqrt(ss));
        }
    }
    nn_grad_flow_free(&f);
    ad_tape_free(t);
    nn_params_free(w.ps);
    cr_assert_eq(ts_live_allocs(), before);
}
