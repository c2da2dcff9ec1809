/*
 * test_nn_bptt.c - the engine against the hand-derived BPTT reference
 * (nn/bptt_ref.c) in f64: the two textbook cases, truncated BPTT and a
 * batched Elman layer, for T from 1 to several hundred; the checker's
 * report; bad inputs.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <unroll/nn/nn.h>
#include "testsupport.h"

/*
 * Engine and reference agree to 1e-12 relative to the largest element of the
 * gradient: an element that is a sum of hundreds of per-step terms with
 * cancellation can be far smaller than its terms, and the two sides add the
 * terms in different orders.
 */
static void expect_agree(const char *what, const double *engine, const double *ref, size_t n)
{
    double scale = 0;
    for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(ref[i]));
    for (size_t i = 0; i < n; i++) {
        double a = fabs(engine[i] - ref[i]);
        cr_assert(a <= 1e-12 * scale || a <= 1e-18, "%s[%zu]: engine %.17g reference %.17g",
                  what, i, engine[i], ref[i]);
    }
}

static void expect_report(const nn_check_report *r, const char *what)
{
    for (size_t i = 0; i < r->count; i++)
        cr_assert(r->entries[i].rel_err <= 1e-12 || r->entries[i].abs_err <= 1e-18,
                  "%s %s: rel %.3g abs %.3g", what, r->entries[i].name, r->entries[i].rel_err,
                  r->entries[i].abs_err);
    cr_assert(fabs(r->engine_loss - r->reference_loss) <= 1e-12 * fabs(r->reference_loss) + 1e-15);
}

Test(nn_bptt, case1_many_to_one)
{
    long before = ts_live_allocs();
    enum { V = 3, H = 3 };
    int lengths[] = {1, 2, 7, 50, 300};
    nn_params *ps = nn_params_new(AD_F64, NULL);
    ad_param *W_i = nn_params_add(ps, "W_i", ad_shape2(V, H), NULL);
    ad_param *W_h = nn_params_add(ps, "W_h", ad_shape2(H, H), NULL);
    ad_param *W_o = nn_params_add(ps, "W_o", ad_shape2(H, 1), NULL);
    ad_rng rng;
    ad_rng_seed(&rng, 11, 0);
    nn_params_init_uniform(ps, &rng, -0.9, 0.9);
    double *x = calloc(300 * V, sizeof *x);
    for (int t = 0; t < 300; t++) x[t * V + ad_rng_below(&rng, V)] = 1;
    for (size_t k = 0; k < sizeof lengths / sizeof lengths[0]; k++)
        for (int y = 0; y <= 1; y++) {
            nn_check_report rep;
            ad_error err;
            cr_assert_eq(nn_check_case1(W_i, W_h, W_o, x, lengths[k], y, &rep, &err), AD_OK, "%s",
                         err.msg);
            cr_assert_eq(rep.count, 3);
            expect_report(&rep, "case 1");
        }
    free(x);
    nn_params_free(ps);
    cr_assert_eq(ts_live_allocs(), before);
}

static nn_params *case2_model(int V, int H, nn_case2_params *p, uint64_t seed)
{
    nn_params *ps = nn_params_new(AD_F64, NULL);
    p->W_xh = nn_params_add(ps, "W_xh", ad_shape2(H, V), NULL);
    p->W_hh = nn_params_add(ps, "W_hh", ad_shape2(H, H), NULL);
    p->W_hy = nn_params_add(ps, "W_hy", ad_shape2(V, H), NULL);
    p->b_h = nn_params_add(ps, "b_h", ad_shape2(H, 1), NULL);
    p->b_y = nn_params_add(ps, "b_y", ad_shape2(V, 1), NULL);
    ad_rng rng;
    ad_rng_seed(&rng, seed, 0);
    nn_params_init_uniform(ps, &rng, -0.6, 0.6);
    return ps;
}

Test(nn_bptt, case2_many_to_many_with_initial_state)
{
    long before = ts_live_allocs();
    enum { V = 5, H = 4, MAXT = 200 };
    nn_case2_params p;
    nn_params *ps = case2_model(V, H, &p, 12);
    int64_t in[MAXT], tg[MAXT];
    ad_rng rng;
    ad_rng_seed(&rng, 13, 0);
    for (int t = 0; t < MAXT; t++) in[t] = (int64_t)ad_rng_below(&rng, V), tg[t] = (int64_t)ad_rng_below(&rng, V);
    int lengths[] = {1, 5, 25, 200};
    for (size_t k = 0; k < sizeof lengths / sizeof lengths[0]; k++) {
        nn_check_report rep;
        ad_error err;
        cr_assert_eq(nn_check_case2(&p, in, tg, lengths[k], NULL, &rep, &err), AD_OK, "%s", err.msg);
        cr_assert_eq(rep.count, 6, "five weights and h0");
        cr_assert_str_eq(rep.entries[5].name, "h0");
        expect_report(&rep, "case 2");
    }
    nn_params_free(ps);
    cr_assert_eq(ts_live_allocs(), before);
}

/* The checker without biases (either or both) and from a given h0. */
Test(nn_bptt, case2_without_biases_and_given_h0)
{
    long before = ts_live_allocs();
    enum { V = 5, H = 4, T = 40 };
    nn_case2_params full;
    nn_params *ps = case2_model(V, H, &full, 21);
    int64_t in[T], tg[T];
    ad_rng rng;
    ad_rng_seed(&rng, 22, 0);
    for (int t = 0; t < T; t++) in[t] = (int64_t)ad_rng_below(&rng, V), tg[t] = (int64_t)ad_rng_below(&rng, V);
    double h0[H] = {0.3, -0.7, 0.1, 0.55};
    for (int form = 0; form < 4; form++) {
        nn_case2_params p = full;
        if (form & 1) p.b_h = NULL;
        if (form & 2) p.b_y = NULL;
        for (int given = 0; given <= 1; given++) {
            nn_check_report rep;
            ad_error err;
            cr_assert_eq(nn_check_case2(&p, in, tg, T, given ? h0 : NULL, &rep, &err), AD_OK, "%s", err.msg);
            cr_assert_eq(rep.count, (size_t)(3 + (p.b_h != NULL) + (p.b_y != NULL) + 1), "weights present and h0");
            cr_assert_str_eq(rep.entries[rep.count - 1].name, "h0");
            expect_report(&rep, "case 2 form");
        }
    }
    nn_params_free(ps);
    cr_assert_eq(ts_live_allocs(), before);
}

/* The given h0 reaches the reference and the engine: a reference run from h0 by hand. */
Test(nn_bptt, case2_given_h0_changes_loss)
{
    long before = ts_live_allocs();
    enum { V = 3, H = 2, T = 1 };
    nn_case2_params p;
    nn_params *ps = case2_model(V, H, &p, 31);
    p.b_h = p.b_y = NULL;
    int64_t in[T] = {1}, tg[T] = {2};
    double h0[H] = {0.4, -0.9};
    nn_check_report rep;
    ad_error err;
    cr_assert_eq(nn_check_case2(&p, in, tg, T, h0, &rep, &err), AD_OK, "%s", err.msg);
    /* by hand: h1 = tanh(W_xh[:, 1] + W_hh h0), y = W_hy h1, L = lse(y) - y[2] */
    const double *Wxh = ad_tensor_f64(ad_param_value(p.W_xh)), *Whh = ad_tensor_f64(ad_param_value(p.W_hh)),
                 *Why = ad_tensor_f64(ad_param_value(p.W_hy));
    double h1[H], y[V], s = 0;
    for (int i = 0; i < H; i++) h1[i] = tanh(Wxh[i * V + 1] + Whh[i * H] * h0[0] + Whh[i * H + 1] * h0[1]);
    for (int v = 0; v < V; v++) y[v] = Why[v * H] * h1[0] + Why[v * H + 1] * h1[1], s += exp(y[v]);
    double L = log(s) - y[2];
    cr_assert(fabs(rep.reference_loss - L) <= 1e-14, "reference %.17g hand %.17g", rep.reference_loss, L);
    cr_assert(fabs(rep.engine_loss - L) <= 1e-14, "engine %.17g hand %.17g", rep.engine_loss, L);
    expect_report(&rep, "case 2 h0");
    nn_params_free(ps);
    cr_assert_eq(ts_live_allocs(), before);
}

/* nn_case1_loss hands out yhat = sigmoid(O_T W_o); checked against a hand computation. */
Test(nn_bptt, case1_prediction)
{
    long before = ts_live_allocs();
    enum { V = 2, H = 2, T = 2 };
    nn_params *ps = nn_params_new(AD_F64, NULL);
    ad_param *W_i = nn_params_add(ps, "W_i", ad_shape2(V, H), NULL);
    ad_param *W_h = nn_params_add(ps, "W_h", ad_shape2(H, H), NULL);
    ad_param *W_o = nn_params_add(ps, "W_o", ad_shape2(H, 1), NULL);
    ad_rng rng;
    ad_rng_seed(&rng, 41, 0);
    nn_params_init_uniform(ps, &rng, -0.9, 0.9);
    const double *wi = ad_tensor_f64(ad_param_value(W_i)), *wh = ad_tensor_f64(ad_param_value(W_h)),
                 *wo = ad_tensor_f64(ad_param_value(W_o));
    double x[T * V] = {1, 0, 0, 1};
    double O[H] = {0, 0};
    for (int t = 0; t < T; t++) {
        double n[H];
        for (int j = 0; j < H; j++) {
            double a = 0;
            for (int v = 0; v < V; v++) a += x[t * V + v] * wi[v * H + j];
            for (int k = 0; k < H; k++) a += O[k] * wh[k * H + j];
            n[j] = tanh(a);
        }
        memcpy(O, n, sizeof O);
    }
    double yhat = 1 / (1 + exp(-(O[0] * wo[0] + O[1] * wo[1])));
    ad_tape *t = ad_tape_new(NULL);
    ad_tensor *yh = NULL;
    ad_tensor *loss = nn_case1_loss(t, W_i, W_h, W_o, x, T, 1.0, &yh);
    cr_assert_not_null(loss, "%s", ad_tape_message(t));
    cr_assert_not_null(yh);
    cr_assert_eq(ad_tensor_numel(yh), 1);
    cr_assert(fabs(ad_tensor_item(yh) - yhat) <= 1e-15, "yhat %.17g hand %.17g", ad_tensor_item(yh), yhat);
    cr_assert(fabs(ad_tensor_item(loss) + log(yhat)) <= 1e-14);
    /* on error *y_hat is NULL */
    cr_assert_null(nn_case1_loss(t, W_i, W_h, W_o, x, 0, 1.0, &yh));
    cr_assert_null(yh);
    ad_tape_free(t);
    nn_params_free(ps);
    cr_assert_eq(ts_live_allocs(), before);
}

/* Bad ids, empty sequences and NULLs in the case 2 engine model and checker. */
Test(nn_bptt, case2_bad_ids)
{
    long before = ts_live_allocs();
    enum { V = 3, H = 2 };
    nn_case2_params p;
    nn_params *ps = case2_model(V, H, &p, 51);
    int64_t in[2] = {0, 1}, tg[2] = {1, 3}, neg[2] = {-1, 0};
    nn_check_report rep;
    ad_error err;
    cr_assert_eq(nn_check_case2(&p, in, tg, 2, NULL, &rep, &err), AD_ERR_ARG);
    cr_assert(strstr(err.msg, "outside"), "%s", err.msg);
    cr_assert_eq(nn_check_case2(&p, neg, in, 2, NULL, &rep, &err), AD_ERR_ARG);
    cr_assert_eq(nn_check_case2(&p, in, in, 0, NULL, &rep, &err), AD_ERR_EMPTY);
    cr_assert_eq(nn_check_case2(NULL, in, in, 1, NULL, &rep, &err), AD_ERR_NULL);
    ad_tape *t = ad_tape_new(NULL);
    ad_tensor *hl = (ad_tensor *)1;
    cr_assert_null(nn_case2_loss(t, &p, in, tg, 2, NULL, &hl));
    cr_assert_null(hl);
    cr_assert_eq(ad_tape_status(t), AD_ERR_ARG);
    cr_assert(strstr(ad_tape_message(t), "target 3 at t=1"), "%s", ad_tape_message(t));
    ad_tape_free(t);
    t = ad_tape_new(NULL);
    cr_assert_null(nn_case2_loss(t, &p, neg, tg, 2, NULL, NULL));
    cr_assert(strstr(ad_tape_message(t), "input -1 at t=0"), "%s", ad_tape_message(t));
    ad_tape_free(t);
    t = ad_tape_new(NULL);
    cr_assert_null(nn_case2_loss(t, &p, in, in, 0, NULL, NULL));
    cr_assert_eq(ad_tape_status(t), AD_ERR_EMPTY);
    ad_tape_free(t);
    nn_params_free(ps);
    cr_assert_eq(ts_live_allocs(), before);
}

Test(nn_bptt, case2_truncated_segments)
{
    long before = ts_live_allocs();
    enum { V = 4, H = 3, T = 10, K = 3 };
    nn_case2_params p;
    nn_params *ps = case2_model(V, H, &p, 14);
    int64_t in[T] = {0, 1, 2, 3, 0, 1, 3, 2, 2, 1}, tg[T] = {1, 2, 3, 0, 1, 3, 2, 2, 1, 0};
    /* Reference. */
    size_t n;
    double *ref = calloc(2 * H * V + H * H + H + V, sizeof *ref), ref_loss, ref_dh0[H];
    nn_case2_weights w = {ad_tensor_f64(ad_param_value(p.W_xh)), ad_tensor_f64(ad_param_value(p.W_hh)),
                          ad_tensor_f64(ad_param_value(p.W_hy)), ad_tensor_f64(ad_param_value(p.b_h)),
                          ad_tensor_f64(ad_param_value(p.b_y))};
    nn_case2_weights g = {ref, ref + H * V, ref + H * V + H * H, ref + 2 * H * V + H * H,
                          ref + 2 * H * V + H * H + H};
    cr_assert_eq(nn_ref_case2_truncated(V, H, &w, in, tg, T, K, NULL, &ref_loss, &g, ref_dh0, NULL),
                 AD_OK);
    /* Engine: one tape per segment; the state is carried as a detached constant. */
    ad_tape *t = ad_tape_new(NULL);
    double h[H] = {0}, loss = 0;
    for (int s = 0; s < T; s += K) {
        int len = T - s < K ? T - s : K;
        ad_tape_reset(t);
        ad_tensor *h0 = ad_from_data(t, AD_F64, ad_shape2(H, 1), h), *hl;
        ad_tensor *l = nn_case2_loss(t, &p, in + s, tg + s, len, h0, &hl);
        cr_assert_eq(ad_backward(t, l, NULL), AD_OK, "%s", ad_tape_message(t));
        loss += ad_tensor_item(l);
        memcpy(h, ad_tensor_f64(hl), sizeof h);
    }
    cr_assert(fabs(loss - ref_loss) <= 1e-12 * ref_loss);
    const double *eng = nn_params_grads(ps, &n);
    /* The set's block is W_xh, W_hh, W_hy, b_h, b_y in order, as the reference layout. */
    expect_agree("truncated grads", eng, ref, n);
    ad_tape_free(t);
    free(ref);
    nn_params_free(ps);
    cr_assert_eq(ts_live_allocs(), before);
}

/* A batched layer: nn_unroll with a built-in cell vs its plain-loop reference, B = 1 and 3. */
static void layer_case(nn_cell_kind kind, int B, int T)
{
    enum { I = 3, H = 4 };
    int G = kind == NN_CELL_LSTM ? 4 : kind == NN_CELL_GRU ? 3 : 1;
    nn_params *ps = nn_params_new(AD_F64, NULL);
    nn_cell cell;
    cr_assert_eq(nn_cell_create(&cell, ps, "rnn", &(nn_cell_options){.kind = kind, .input_size = I, .hidden_size = H}, NULL), AD_OK);
    ad_rng rng;
    ad_rng_seed(&rng, (uint64_t)(B * 1000 + T + 7 * G), 0);
    nn_cell_init_pytorch(&cell, &rng);
    size_t nx = (size_t)T * B * I, nh = (size_t)B * H;
    double *x = malloc(nx * sizeof *x), *U = malloc((size_t)T * nh * sizeof *U);
    double h0[64], c0[64], rdh0[64], rdc0[64], rloss;
    ts_fill_uniform(x, nx, 1, -1, 1);
    ts_fill_uniform(U, (size_t)T * nh, 2, -1, 1);
    ts_fill_uniform(h0, nh, 3, -0.5, 0.5);
    ts_fill_uniform(c0, nh, 4, -0.5, 0.5);
    size_t n;
    nn_params_values(ps, &n);
    double *ref = malloc(n * sizeof *ref), *rdx = malloc(nx * sizeof *rdx);
    nn_ref_weights w = {ad_tensor_f64(ad_param_value(cell.w[0])), ad_tensor_f64(ad_param_value(cell.w[1])),
                        ad_tensor_f64(ad_param_value(cell.w[2])), ad_tensor_f64(ad_param_value(cell.w[3]))};
    size_t gh = (size_t)G * H;
    nn_ref_weights g = {ref, ref + gh * I, ref + gh * I + gh * H, ref + gh * I + gh * H + gh};
    const nn_ref_sizes sz = {B, I, H, T};
    ad_status st = kind == NN_CELL_LSTM
                       ? nn_ref_lstm(&sz, &w, x, h0, c0, U, &rloss, &g, rdh0, rdc0, rdx, NULL)
                   : kind == NN_CELL_GRU ? nn_ref_gru(&sz, &w, x, h0, U, &rloss, &g, rdh0, rdx, NULL)
                                         : nn_ref_elman(&sz, &w, x, h0, U, &rloss, &g, rdh0, rdx, NULL);
    cr_assert_eq(st, AD_OK);

    ad_tape *t = ad_tape_new(NULL);
    ad_tensor **xs = malloc((size_t)T * sizeof *xs);
    nn_state *outs = malloc((size_t)T * sizeof *outs);
    for (int k = 0; k < T; k++) xs[k] = ad_variable(t, AD_F64, ad_shape2(B, I), x + (size_t)k * B * I);
    nn_state init = {ad_variable(t, AD_F64, ad_shape2(B, H), h0),
                     kind == NN_CELL_LSTM ? ad_variable(t, AD_F64, ad_shape2(B, H), c0) : NULL};
    nn_unroll_options o = {0};
    o.h0 = &init;
    cr_assert_eq(nn_unroll(t, &cell, xs, T, &o, outs, NULL), AD_OK, "%s", ad_tape_message(t));
    ad_tensor *loss = NULL;
    for (int k = 0; k < T; k++) {
        ad_tensor *uk = ad_from_data(t, AD_F64, ad_shape2(B, H), U + (size_t)k * nh);
        ad_tensor *lk = ad_sum(t, ad_mul(t, outs[k].h, uk), AD_AXIS_ALL, 0);
        loss = loss ? ad_add(t, loss, lk) : lk;
    }
    cr_assert_eq(ad_backward(t, loss, NULL), AD_OK, "%s", ad_tape_message(t));
    cr_assert(fabs(ad_tensor_item(loss) - rloss) <= 1e-12 * fabs(rloss) + 1e-15);
    const double *eg = nn_params_grads(ps, &n);
    expect_agree("W_ih", eg, g.W_ih, gh * I);
    expect_agree("W_hh", eg + gh * I, g.W_hh, gh * H);
    expect_agree("b_ih", eg + gh * I + gh * H, g.b_ih, gh);
    expect_agree("b_hh", eg + gh * I + gh * H + gh, g.b_hh, gh);
    expect_agree("h0", ad_tensor_grad_f64(init.h), rdh0, nh);
    if (init.c) expect_agree("c0", ad_tensor_grad_f64(init.c), rdc0, nh);
    for (int k = 0; k < T; k++)
        expect_agree("x", ad_tensor_grad_f64(xs[k]), rdx + (size_t)k * B * I, (size_t)B * I);
    ad_tape_free(t);
    free(xs), free(outs), free(x), free(U), free(ref), free(rdx);
    nn_params_free(ps);
}

Test(nn_bptt, batched_layers_elman_lstm_gru)
{
    long before = ts_live_allocs();
    int Ts[] = {1, 4, 100, 300};
    nn_cell_kind kinds[3] = {NN_CELL_RNN_TANH, NN_CELL_LSTM, NN_CELL_GRU};
    for (int k = 0; k < 3; k++)
        for (size_t i = 0; i < sizeof Ts / sizeof Ts[0]; i++) {
            layer_case(kinds[k], 1, Ts[i]);
            layer_case(kinds[k], 3, Ts[i]);
        }
    cr_assert_eq(ts_live_allocs(), before);
}

/* An allocation failure in the second segment is reported, and the loss
 * holds the segments that completed (the first), nothing undefined. */
Test(nn_bptt, truncated_reference_out_of_memory)
{
    long before = ts_live_allocs();
    enum { V = 3, H = 2, T = 4, K = 2 };
    double x[H * V + H * H + V * H + H + V];
    ts_fill_uniform(x, sizeof x / sizeof x[0], 5, -0.5, 0.5);
    nn_case2_weights w = {x, x + H * V, x + H * V + H * H, x + 2 * H * V + H * H, x + 2 * H * V + H * H + H};
    int64_t in[T] = {0, 1, 2, 1}, tg[T] = {1, 2, 0, 0};
    double first, loss = -1;
    cr_assert_eq(nn_ref_case2(V, H, &w, in, tg, K, NULL, &first, NULL, NULL, NULL, NULL), AD_OK);
    /* the h buffer, then the first segment's four, then the second's first */
    ad_error err;
    ts_fail_alloc_at(6);
    ad_status st = nn_ref_case2_truncated(V, H, &w, in, tg, T, K, NULL, &loss, NULL, NULL, &err);
    ts_fail_alloc_at(0);
    cr_assert_eq(st, AD_ERR_NOMEM, "%s", ad_status_name(st));
    cr_assert_eq(loss, first, "loss %.17g, the first segment's %.17g", loss, first);
    cr_assert_eq(ts_live_allocs(), before);
}

Test(nn_bptt, bad_inputs)
{
    long before = ts_live_allocs();
    ad_error err;
    double loss, x[3] = {1, 0, 0};
    nn_case1_weights w1 = {x, x, x};
    cr_assert_eq(nn_ref_case1(3, 1, NULL, x, 1, 1, &loss, NULL, &err), AD_ERR_NULL);
    cr_assert_eq(nn_ref_case1(3, 1, &w1, x, 0, 1, &loss, NULL, &err), AD_ERR_EMPTY);
    cr_assert_eq(nn_ref_case1(0, 1, &w1, x, 1, 1, &loss, NULL, &err), AD_ERR_ARG);
    nn_case2_weights w2 = {x, x, x, x, x};
    int64_t in[1] = {3}, tg[1] = {0};
    cr_assert_eq(nn_ref_case2(3, 1, &w2, in, tg, 1, NULL, &loss, NULL, NULL, NULL, &err), AD_ERR_ARG);
    cr_assert(strstr(err.msg, "outside 0..V-1"));
    cr_assert_eq(nn_ref_case2(3, 1, &w2, in, tg, 0, NULL, &loss, NULL, NULL, NULL, &err), AD_ERR_EMPTY);
    in[0] = 0;
    cr_assert_eq(nn_ref_case2_truncated(3, 1, &w2, in, tg, 1, 0, NULL, &loss, NULL, NULL, &err), AD_ERR_ARG);
    nn_ref_weights we = {x, x, x, x};
    const nn_ref_sizes one = {1, 1, 1, 1}, empty = {1, 1, 1, 0}, no_input = {1, 0, 1, 1};
    cr_assert_eq(nn_ref_elman(&empty, &we, x, x, x, &loss, NULL, NULL, NULL, &err), AD_ERR_EMPTY);
    cr_assert_eq(nn_ref_elman(&one, &we, NULL, x, x, &loss, NULL, NULL, NULL, &err), AD_ERR_NULL);
    cr_assert_eq(nn_ref_elman(NULL, &we, x, x, x, &loss, NULL, NULL, NULL, &err), AD_ERR_NULL);
    cr_assert(strstr(err.msg, "sizes"), "%s", err.msg);
    cr_assert_eq(nn_ref_lstm(&one, &we, x, x, NULL, x, &loss, NULL, NULL, NULL, NULL, &err), AD_ERR_NULL);
    cr_assert_eq(nn_ref_lstm(&empty, &we, x, x, x, x, &loss, NULL, NULL, NULL, NULL, &err), AD_ERR_EMPTY);
    cr_assert_eq(nn_ref_gru(&no_input, &we, x, x, x, &loss, NULL, NULL, NULL, &err), AD_ERR_ARG);
    cr_assert_eq(nn_ref_gru(NULL, &we, x, x, x, &loss, NULL, NULL, NULL, &err), AD_ERR_NULL);

    /* The checker refuses f32 weights and weights that do not fit together. */
    nn_params *ps = nn_params_new(AD_F32, NULL);
    ad_param *a = nn_params_add(ps, "a", ad_shape2(3, 2), NULL);
    nn_check_report rep;
    cr_assert_eq(nn_check_case1(a, a, a, x, 1, 1, &rep, &err), AD_ERR_DTYPE);
    nn_params *pd = nn_params_new(AD_F64, NULL);
    ad_param *b = nn_params_add(pd, "b", ad_shape2(3, 2), NULL);
    cr_assert_eq(nn_check_case1(b, b, b, x, 1, 1, &rep, &err), AD_ERR_SHAPE);
    cr_assert_eq(nn_check_case1(b, NULL, b, x, 1, 1, &rep, &err), AD_ERR_NULL);
    nn_case2_params p2 = {b, b, NULL, b, b}; /* W_hy missing (a bias may be NULL) */
    cr_assert_eq(nn_check_case2(&p2, in, tg, 1, NULL, &rep, &err), AD_ERR_NULL);
    ad_tape *t = ad_tape_new(NULL);
    cr_assert_null(nn_case1_loss(t, b, b, b, x, 0, 1, NULL));
    cr_assert_eq(ad_tape_status(t), AD_ERR_EMPTY);
    ad_tape_free(t);
    nn_params_free(ps);
    nn_params_free(pd);
    cr_assert_eq(ts_live_allocs(), before);
}

/* ---- case 2 as a cell, through the truncated-BPTT driver ---------------------------- */

typedef struct tb_ctx {
    const nn_case2_params *p;
    const int64_t *in, *tg;
    int V;
    nn_params *ps;
    double *sum; /* the segments' gradients, added up */
    double loss;
    int segments;
} tb_ctx;

static ad_tensor *tb_input(ad_tape *t, int64_t step, void *vc)
{
    tb_ctx *c = vc;
    ad_tensor *x = ad_zeros(t, AD_F64, ad_shape2(1, c->V));
    if (x) ad_tensor_f64(x)[c->in[step]] = 1.0;
    return x;
}

static ad_tensor *tb_loss(ad_tape *t, const nn_state *h, int64_t step, void *vc)
{
    tb_ctx *c = vc;
    return nn_case2_step_loss(t, c->p, h, c->tg[step]);
}

static ad_status tb_update(int64_t segment, double loss, void *vc)
{
    (void)segment;
    tb_ctx *c = vc;
    size_t n;
    const double *g = nn_params_grads(c->ps, &n);
    for (size_t i = 0; i < n; i++) c->sum[i] += g[i];
    c->loss += loss;
    c->segments++;
    return AD_OK;
}

/* nn_tbptt_run(k1 = k2 = K) over the case-2 cell equals the reference's
 * truncated BPTT over the same windows, with and without biases, from zeros
 * and from a given h0 (T = 10 is not a multiple of K: a last short window). */
Test(nn_bptt, case2_cell_through_tbptt_equals_the_reference)
{
    long before = ts_live_allocs();
    enum { V = 4, H = 3, T = 10, K = 3 };
    int64_t in[T] = {0, 1, 2, 3, 0, 1, 3, 2, 2, 1}, tg[T] = {1, 2, 3, 0, 1, 3, 2, 2, 1, 0};
    const double h0v[H] = {0.3, -0.2, 0.5};
    for (int variant = 0; variant < 4; variant++) {
        int bias = variant < 2;
        const double *h0 = variant % 2 ? h0v : NULL;
        nn_case2_params p;
        nn_params *ps = case2_model(V, H, &p, 15);
        if (!bias) p.b_h = p.b_y = NULL;
        size_t n;
        nn_params_grads(ps, &n);
        double *ref = calloc(n, sizeof *ref), *sum = calloc(n, sizeof *sum), ref_loss;
        cr_assert(ref && sum);
        nn_case2_weights w = {ad_tensor_f64(ad_param_value(p.W_xh)), ad_tensor_f64(ad_param_value(p.W_hh)),
                              ad_tensor_f64(ad_param_value(p.W_hy)),
                              bias ? ad_tensor_f64(ad_param_value(p.b_h)) : NULL,
                              bias ? ad_tensor_f64(ad_param_value(p.b_y)) : NULL};
        nn_case2_weights g = {ref, ref + H * V, ref + H * V + H * H, bias ? ref + 2 * H * V + H * H : NULL,
                              bias ? ref + 2 * H * V + H * H + H : NULL};
        cr_assert_eq(nn_ref_case2_truncated(V, H, &w, in, tg, T, K, h0, &ref_loss, &g, NULL, NULL), AD_OK);

        nn_cell cell;
        ad_error err;
        cr_assert_eq(nn_case2_cell(&p, &cell, &err), AD_OK, "%s", err.msg);
        cr_assert_eq(cell.n_w, bias ? 3 : 2);
        cr_assert_eq(cell.input_size, V);
        cr_assert_eq(cell.hidden_size, H);
        tb_ctx c = {&p, in, tg, V, ps, sum, 0, 0};
        nn_tbptt_options o = {.k1 = K, .k2 = K, .steps = T, .batch = 1, .h0 = h0};
        ad_tape *t = ad_tape_new(NULL);
        cr_assert_eq(nn_tbptt_run(t, &cell, ps, &o, tb_input, tb_loss, tb_update, &c, &err), AD_OK, "%s", err.msg);
        cr_assert_eq(c.segments, (T + K - 1) / K);
        cr_assert(fabs(c.loss - ref_loss) <= 1e-12 * ref_loss, "variant %d: %.17g vs %.17g", variant, c.loss,
                  ref_loss);
        expect_agree(bias ? "tbptt grads" : "tbptt grads, no bias", sum, ref, n);
        /* one window by the cell equals nn_case2_loss over it */
        ad_tape_reset(t);
        ad_tensor *hv = ad_from_data(t, AD_F64, ad_shape2(H, 1), h0 ? h0 : (double[H]){0});
        ad_tensor *whole = nn_case2_loss(t, &p, in, tg, K, hv, NULL);
        cr_assert(whole, "%s", ad_tape_message(t));
        double direct = ad_tensor_item(whole);
        ad_tape_reset(t);
        nn_state s = {ad_from_data(t, AD_F64, ad_shape2(1, H), h0 ? h0 : (double[H]){0}), NULL};
        double by_cell = 0;
        for (int k = 0; k < K; k++) {
            nn_state next;
            cr_assert_eq(nn_cell_step(t, &cell, tb_input(t, k, &c), &s, &next), AD_OK, "%s", ad_tape_message(t));
            by_cell += ad_tensor_item(tb_loss(t, &next, k, &c));
            s = next;
        }
        cr_assert(fabs(by_cell - direct) <= 1e-12 * direct, "%.17g vs %.17g", by_cell, direct);
        ad_tape_free(t);
        free(ref);
        free(sum);
        nn_params_free(ps);
    }
    cr_assert_eq(ts_live_allocs(), before);
}

Test(nn_bptt, case2_cell_bad_input)
{
    long before = ts_live_allocs();
    enum { V = 4, H = 3 };
    nn_case2_params p;
    nn_params *ps = case2_model(V, H, &p, 16);
    nn_cell cell;
    ad_error err;
    cr_assert_eq(nn_case2_cell(NULL, &cell, &err), AD_ERR_NULL);
    cr_assert_eq(nn_case2_cell(&p, NULL, &err), AD_ERR_NULL);
    nn_case2_params q = p;
    q.W_hh = NULL;
    cr_assert_eq(nn_case2_cell(&q, &cell, &err), AD_ERR_NULL);
    q = p;
    q.W_hh = p.W_hy; /* [V, H] where [H, H] is needed */
    cr_assert_eq(nn_case2_cell(&q, &cell, &err), AD_ERR_SHAPE);
    cr_assert(strstr(err.msg, "do not fit"), "%s", err.msg);
    cr_assert_eq(nn_case2_cell(&p, &cell, &err), AD_OK, "%s", err.msg);
    ad_tape *t = ad_tape_new(NULL);
    /* a batch of 2 */
    nn_state s = {ad_zeros(t, AD_F64, ad_shape2(2, H)), NULL}, next;
    cr_assert_eq(nn_cell_step(t, &cell, ad_zeros(t, AD_F64, ad_shape2(2, V)), &s, &next), AD_ERR_SHAPE);
    cr_assert(strstr(ad_tape_message(t), "batch of 1"), "%s", ad_tape_message(t));
    ad_tape_reset(t);
    /* the step loss: NULL, a bad target, a bad state */
    nn_state h = {ad_zeros(t, AD_F64, ad_shape2(1, H)), NULL};
    cr_assert_null(nn_case2_step_loss(t, NULL, &h, 0));
    cr_assert_eq(ad_tape_status(t), AD_ERR_NULL);
    ad_tape_reset(t);
    h.h = ad_zeros(t, AD_F64, ad_shape2(1, H));
    cr_assert_null(nn_case2_step_loss(t, &p, &h, V));
    cr_assert(strstr(ad_tape_message(t), "target 4 is outside 0..3"), "%s", ad_tape_message(t));
    ad_tape_reset(t);
    h.h = ad_zeros(t, AD_F64, ad_shape2(1, H + 1));
    cr_assert_null(nn_case2_step_loss(t, &p, &h, 0));
    cr_assert_eq(ad_tape_status(t), AD_ERR_SHAPE);
    /* T = 0 through the driver */
    nn_tbptt_options o = {.k1 = 2, .k2 = 2, .steps = 0, .batch = 1};
    cr_assert_eq(nn_tbptt_run(t, &cell, ps, &o, tb_input, tb_loss, tb_update, NULL, &err), AD_ERR_EMPTY);
    cr_assert(strstr(err.msg, "empty sequence"), "%s", err.msg);
    ad_tape_free(t);
    nn_params_free(ps);
    cr_assert_eq(ts_live_allocs(), before);
}
