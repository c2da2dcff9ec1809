/*
 * test_nn_rtrl.c - real-time recurrent learning: the sum of its per-step
 * gradients over a window equals BPTT's gradient of the window's summed loss
 * (1e-12 relative, f64) for Elman, LSTM, GRU and a custom cell; its memory
 * does not grow with the stream; bad input.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <math.h>
#include <string.h>

#include <unroll/nn/nn.h>
#include "testsupport.h"

enum { I = 3, H = 4, B = 2, T = 7 };

typedef enum cell_id { C_ELMAN, C_LSTM, C_GRU, C_CUSTOM } cell_id;

/* The minimal gated unit, ops only (as a user would write it). */
static ad_status mgu_step(ad_tape *t, const nn_cell *c, ad_tensor *x, const nn_state *prev, nn_state *next)
{
    ad_tensor *u = ad_sigmoid(t, ad_add(t, ad_matmul(t, x, ad_use(t, c->w[0]), 0),
                                        ad_matmul(t, prev->h, ad_use(t, c->w[1]), 0)));
    ad_tensor *cand = ad_tanh(t, ad_add(t, ad_matmul(t, x, ad_use(t, c->w[2]), 0),
                                        ad_matmul(t, prev->h, ad_use(t, c->w[3]), 0)));
    next->h = ad_add(t, ad_mul(t, u, prev->h), ad_mul(t, ad_add_scalar(t, ad_neg(t, u), 1.0), cand));
    return ad_tape_status(t);
}

static void make_cell(cell_id id, nn_params *ps, nn_cell *cell)
{
    memset(cell, 0, sizeof *cell);
    if (id == C_CUSTOM) {
        *cell = (nn_cell){.name = "mgu", .input_size = I, .hidden_size = H, .step = mgu_step, .n_w = 4};
        const char *names[4] = {"mgu.Wu", "mgu.Uu", "mgu.Wc", "mgu.Uc"};
        for (int i = 0; i < 4; i++)
            cell->w[i] = nn_params_add(ps, names[i], i % 2 ? ad_shape2(H, H) : ad_shape2(I, H), NULL);
    } else {
        static const nn_cell_kind kinds[] = {NN_CELL_RNN_TANH, NN_CELL_LSTM, NN_CELL_GRU};
        nn_cell_options o = {.kind = kinds[id], .input_size = I, .hidden_size = H};
        cr_assert_eq(nn_cell_create(cell, ps, "cell", &o, NULL), AD_OK);
    }
    ad_rng rng;
    ad_rng_seed(&rng, 40 + (uint64_t)id, 0);
    nn_params_init_uniform(ps, &rng, -0.8, 0.8);
}

/* L_t = sum(h_t * w) + (LSTM) sum(tanh(c_t)) with fixed weights w. */
static ad_tensor *step_loss(ad_tape *t, const nn_state *s, void *ctx)
{
    const double *w = ctx;
    ad_tensor *l = ad_sum(t, ad_mul(t, s->h, ad_from_data(t, AD_F64, ad_shape2(B, H), w)), AD_AXIS_ALL, 0);
    if (s->c) l = ad_add(t, l, ad_sum(t, ad_tanh(t, s->c), AD_AXIS_ALL, 0));
    return l;
}

ParameterizedTestParameters(nn_rtrl, equals_bptt_on_a_window)
{
    static cell_id ids[] = {C_ELMAN, C_LSTM, C_GRU, C_CUSTOM};
    return cr_make_param_array(cell_id, ids, 4);
}

ParameterizedTest(cell_id *id, nn_rtrl, equals_bptt_on_a_window)
{
    long before = ts_live_allocs();
    nn_params *ps = nn_params_new(AD_F64, NULL);
    nn_cell cell;
    make_cell(*id, ps, &cell);
    double x[T * B * I], w[B * H];
    ts_fill_uniform(x, T * B * I, 8, -1, 1);
    ts_fill_uniform(w, B * H, 9, -1, 1);

    /* BPTT: the window's summed loss on one tape, one backward. */
    nn_params_zero_grad(ps);
    ad_tape *t = ad_tape_new(NULL);
    nn_state s;
    cr_assert_eq(nn_cell_zero_state(t, &cell, B, &s), AD_OK);
    ad_tensor *total = NULL;
    double bptt_loss = 0;
    for (int k = 0; k < T; k++) {
        nn_state next = {0};
        cr_assert_eq(nn_cell_step(t, &cell, ad_from_data(t, AD_F64, ad_shape2(B, I), x + k * B * I), &s, &next),
                     AD_OK, "%s", ad_tape_message(t));
        ad_tensor *l = step_loss(t, &next, w);
        total = total ? ad_add(t, total, l) : l;
        s = next;
    }
    bptt_loss = ad_tensor_item(total);
    cr_assert_eq(ad_backward(t, total, NULL), AD_OK, "%s", ad_tape_message(t));
    ad_tape_free(t);
    double bptt[4][64];
    for (int i = 0; i < cell.n_w; i++) {
        ad_tensor *g = ad_param_grad(cell.w[i]);
        cr_assert(ad_tensor_numel(g) <= 64);
        memcpy(bptt[i], ad_tensor_f64(g), ad_tensor_numel(g) * sizeof(double));
    }

    /* RTRL: one step at a time, gradients added step by step. */
    nn_params_zero_grad(ps);
    ad_error err;
    nn_rtrl *r = nn_rtrl_new(&cell, B, &err);
    cr_assert_not_null(r, "%s", err.msg);
    double rtrl_loss = 0;
    for (int k = 0; k < T; k++) {
        double l;
        cr_assert_eq(nn_rtrl_step(r, x + k * B * I, step_loss, w, &l, &err), AD_OK, "%s", err.msg);
        rtrl_loss += l;
    }
    cr_assert(fabs(rtrl_loss - bptt_loss) <= 1e-13 * fabs(bptt_loss), "%.17g vs %.17g", rtrl_loss, bptt_loss);
    double worst = 0;
    for (int i = 0; i < cell.n_w; i++) {
        ad_tensor *g = ad_param_grad(cell.w[i]);
        double scale = 0;
        for (size_t e = 0; e < ad_tensor_numel(g); e++) scale = fmax(scale, fabs(bptt[i][e]));
        cr_assert(scale > 0, "%s: a zero gradient checks nothing", ad_param_name(cell.w[i]));
        for (size_t e = 0; e < ad_tensor_numel(g); e++)
            worst = fmax(worst, fabs(ad_tensor_f64(g)[e] - bptt[i][e]) / scale);
    }
    cr_assert(worst <= 1e-12, "cell %d: max relative |rtrl - bptt| = %g", (int)*id, worst);
    nn_rtrl_free(r);
    nn_params_free(ps);
    cr_assert_eq(ts_live_allocs(), before);
}

static ad_tensor *tiny_loss(ad_tape *t, const nn_state *s, void *ctx)
{
    (void)ctx;
    return ad_mean(t, ad_mul(t, s->h, s->h), AD_AXIS_ALL, 0);
}

/* The same bytes and live allocations after 100 steps as after 10,000. */
Test(nn_rtrl, memory_does_not_grow_with_the_stream)
{
    nn_params *ps = nn_params_new(AD_F64, NULL);
    nn_cell cell;
    nn_cell_options o = {.kind = NN_CELL_RNN_TANH, .input_size = 1, .hidden_size = 2};
    cr_assert_eq(nn_cell_create(&cell, ps, "rnn", &o, NULL), AD_OK);
    ad_rng rng;
    ad_rng_seed(&rng, 3, 0);
    nn_params_init_uniform(ps, &rng, -0.5, 0.5);
    nn_rtrl *r = nn_rtrl_new(&cell, 1, NULL);
    cr_assert_not_null(r);
    size_t bytes_100 = 0;
    long live_100 = 0;
    for (int k = 1; k <= 10000; k++) {
        double x = sin(0.1 * k);
        cr_assert_eq(nn_rtrl_step(r, &x, tiny_loss, NULL, NULL, NULL), AD_OK);
        if (k == 100) bytes_100 = nn_rtrl_bytes(r), live_100 = ts_live_allocs();
    }
    cr_assert_eq(nn_rtrl_bytes(r), bytes_100);
    cr_assert_eq(ts_live_allocs(), live_100);
    nn_rtrl_free(r);
    nn_params_free(ps);
}

Test(nn_rtrl, bad_input)
{
    ad_error err;
    cr_assert_null(nn_rtrl_new(NULL, 1, &err));
    cr_assert_eq(err.code, AD_ERR_NULL);
    nn_params *ps = nn_params_new(AD_F64, NULL);
    nn_cell cell;
    make_cell(C_ELMAN, ps, &cell);
    cr_assert_null(nn_rtrl_new(&cell, 0, &err));
    cr_assert_eq(err.code, AD_ERR_ARG);
    nn_rtrl *r = nn_rtrl_new(&cell, B, &err);
    double x[B * I] = {0};
    cr_assert_eq(nn_rtrl_step(r, NULL, tiny_loss, NULL, NULL, &err), AD_ERR_NULL);
    cr_assert_eq(nn_rtrl_step(r, x, NULL, NULL, NULL, &err), AD_ERR_NULL);
    cr_assert_eq(nn_rtrl_step(NULL, x, tiny_loss, NULL, NULL, &err), AD_ERR_NULL);
    nn_rtrl_free(r);
    nn_rtrl_free(NULL);
    nn_params_free(ps);
}
