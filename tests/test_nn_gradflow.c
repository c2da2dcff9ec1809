/*
 * test_nn_gradflow.c - the gradient-flow report: per-step norms equal those
 * of the states' and temporal copies' gradients, the direction is honoured,
 * vanishing gradients show, and the CSV has its header.
 */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <unroll/nn/nn.h>
#include "testsupport.h"

enum { T = 12, B = 2, I = 3, H = 4 };

static double copy_norm(ad_tensor *c)
{
    double s = 0;
    for (size_t i = 0; i < ad_tensor_numel(c); i++) s += ad_tensor_grad_f64(c)[i] * ad_tensor_grad_f64(c)[i];
    return sqrt(s);
}

static void run(int reverse)
{
    nn_params *ps = nn_params_new(AD_F64, NULL);
    nn_cell cell;
    nn_cell_create(&cell, ps, "rnn", &(nn_cell_options){.kind = NN_CELL_RNN_TANH, .reverse = reverse, .input_size = I, .hidden_size = H}, NULL);
    ad_rng rng;
    ad_rng_seed(&rng, 8, 0);
    nn_cell_init_pytorch(&cell, &rng); /* small weights: the gradient fades with distance */
    ad_tape *t = ad_tape_new(NULL);
    ad_tensor *xs[T];
    for (int k = 0; k < T; k++) xs[k] = ad_rand_normal(t, &rng, AD_F64, ad_shape2(B, I), 0, 1);
    nn_unroll_options o = {0};
    o.reverse = reverse;
    nn_state outs[T], last;
    cr_assert_eq(nn_unroll(t, &cell, xs, T, &o, outs, &last), AD_OK);
    cr_assert_eq(ad_backward(t, ad_sum(t, last.h, AD_AXIS_ALL, 0), NULL), AD_OK);
    nn_grad_flow f;
    ad_error err;
    cr_assert_eq(nn_grad_flow_collect(t, &cell, outs, T, &o, &f, &err), AD_OK, "%s", err.msg);
    ad_tensor *copies[T];
    ad_tape_copies(t, cell.w[1], copies, T);
    for (int k = 0; k < T; k++) {
        int step = reverse ? T - 1 - k : k;
        cr_assert_float_eq(f.rows[step].w_norm[1], copy_norm(copies[k]), 1e-15);
    }
    int first = reverse ? T - 1 : 0, final = reverse ? 0 : T - 1;
    cr_assert(f.rows[first].h_norm < 0.1 * f.rows[final].h_norm,
              "vanishing: |dL/dh| at the first step %g, at the last %g", f.rows[first].h_norm,
              f.rows[final].h_norm);
    FILE *csv = tmpfile();
    cr_assert_eq(nn_grad_flow_write_csv(&f, csv), AD_OK);
    rewind(csv);
    char line[256];
    cr_assert_not_null(fgets(line, sizeof line, csv));
    const char *want = reverse ? "step,h,rnn.weight_ih_l0_reverse,rnn.weight_hh_l0_reverse,"
                                 "rnn.bias_ih_l0_reverse,rnn.bias_hh_l0_reverse\n"
                               : "step,h,rnn.weight_ih_l0,rnn.weight_hh_l0,rnn.bias_ih_l0,rnn.bias_hh_l0\n";
    cr_assert_str_eq(line, want);
    fclose(csv);
    nn_grad_flow_free(&f);
    cr_assert_eq(nn_grad_flow_collect(t, &cell, outs, T - 1, &o, &f, &err), AD_ERR_MISMATCH);
    cr_assert_eq(nn_grad_flow_collect(t, NULL, outs, T, &o, &f, &err), AD_ERR_NULL);
    cr_assert_eq(nn_grad_flow_collect(t, &cell, outs, 0, &o, &f, &err), AD_ERR_EMPTY);
    ad_tape_free(t);
    nn_params_free(ps);
}

Test(nn_gradflow, norms_per_step_both_directions)
{
    long before = ts_live_allocs();
    run(0);
    run(1);
    cr_assert_eq(ts_live_allocs(), before);
}

Test(nn_gradflow, printing_bad_inputs)
{
    nn_grad_flow f = {0};
    cr_assert_eq(nn_grad_flow_write_csv(NULL, stdout), AD_ERR_NULL);
    cr_assert_eq(nn_grad_flow_write_csv(&f, NULL), AD_ERR_NULL);
    nn_grad_flow_print(NULL, stdout); /* nothing, no crash */
    nn_grad_flow_print(&f, stdout);
    nn_grad_flow_free(NULL);
    nn_grad_flow_free(&f);
    nn_check_print(NULL, stdout);
}

/*
 * The report on tapes that keep no per-copy gradient: backward records each
 * copy's norm, so the report equals the plain tape's (copy_grads = keep) to
 * 1e-12 relative in f64, with or without release_grads. Rows: the cell, the
 * batch and hidden sizes (H = 64 with B = 4: the recurrent weight's
 * gradient is stacked and its norm comes from the Gram form, the states'
 * gradients are released; B = 40 with H = 16: the Gram form does not pay and
 * the copies get buffers).
 */
typedef struct lean_case {
    int kind; /* nn_cell_kind */
    int batch, hidden, release;
} lean_case;

static const lean_case lean_cases[] = {
    {NN_CELL_RNN_TANH, 4, 64, 0}, {NN_CELL_RNN_TANH, 4, 64, 1}, {NN_CELL_RNN_TANH, 40, 16, 1},
    {NN_CELL_LSTM, 4, 64, 0},     {NN_CELL_LSTM, 4, 64, 1},     {NN_CELL_LSTM, 40, 16, 1},
    {NN_CELL_GRU, 4, 64, 0},      {NN_CELL_GRU, 4, 64, 1},      {NN_CELL_GRU, 40, 16, 1},
};
static int lean_ids[sizeof lean_cases / sizeof lean_cases[0]];

/* The report of one unroll; lean: copy_grads = norms. */
static void lean_report(const lean_case *c, int lean, nn_grad_flow *f)
{
    enum { LT = 12, LI = 8 };
    nn_params *ps = nn_params_new(AD_F64, NULL);
    nn_cell cell;
    nn_cell_create(&cell, ps, "cell", &(nn_cell_options){.kind = (nn_cell_kind)c->kind, .input_size = LI, .hidden_size = c->hidden}, NULL);
    ad_rng rng;
    ad_rng_seed(&rng, 21, 0);
    nn_cell_init_pytorch(&cell, &rng);
    ad_tape_options o = {0};
    o.copy_grads = lean ? AD_COPY_GRADS_NORMS : AD_COPY_GRADS_KEEP;
    o.release_grads = lean && c->release;
    ad_tape *t = ad_tape_new(&o);
    ad_tensor *xs[LT];
    for (int k = 0; k < LT; k++) xs[k] = ad_rand_normal(t, &rng, AD_F64, ad_shape2(c->batch, LI), 0, 1);
    nn_state outs[LT], last;
    cr_assert_eq(nn_unroll(t, &cell, xs, LT, NULL, outs, &last), AD_OK);
    ad_tensor *loss = ad_sum(t, ad_mul(t, last.h, last.h), AD_AXIS_ALL, 0);
    cr_assert_eq(ad_backward(t, loss, NULL), AD_OK, "%s", ad_tape_message(t));
    ad_error err;
    cr_assert_eq(nn_grad_flow_collect(t, &cell, outs, LT, NULL, f, &err), AD_OK, "%s", err.msg);
    cr_assert_eq(ad_tape_status(t), AD_OK, "collecting sets no tape error: %s", ad_tape_message(t));
    ad_tape_free(t);
    nn_params_free(ps);
}

ParameterizedTestParameters(nn_gradflow, lean_tapes_report_the_plain_norms)
{
    for (size_t i = 0; i < sizeof lean_cases / sizeof lean_cases[0]; i++) lean_ids[i] = (int)i;
    return cr_make_param_array(int, lean_ids, sizeof lean_cases / sizeof lean_cases[0]);
}

ParameterizedTest(int *id, nn_gradflow, lean_tapes_report_the_plain_norms)
{
    const lean_case *c = &lean_cases[*id];
    long before = ts_live_allocs();
    nn_grad_flow plain, lean;
    lean_report(c, 0, &plain);
    lean_report(c, 1, &lean);
    cr_assert_eq(plain.steps, lean.steps);
    cr_assert_eq(plain.n_w, lean.n_w);
    double largest = 0;
    for (int k = 0; k < plain.steps; k++) {
        const nn_grad_flow_row *p = &plain.rows[k], *l = &lean.rows[k];
        cr_assert(fabs(l->h_norm - p->h_norm) <= 1e-12 * p->h_norm, "step %d: |dL/dh| %.17g vs %.17g", k,
                  l->h_norm, p->h_norm);
        for (int w = 0; w < plain.n_w; w++) {
            /* h_{-1} = 0: dL/dW_hh^(0) = h_{-1}^T (...) = 0, every other norm is positive */
            if (k > 0 || w != 1) cr_assert(p->w_norm[w] > 0, "step %d, %s: the plain norm is 0", k, plain.names[w]);
            cr_assert(fabs(l->w_norm[w] - p->w_norm[w]) <= 1e-12 * p->w_norm[w], "step %d, %s: %.17g vs %.17g",
                      k, plain.names[w], l->w_norm[w], p->w_norm[w]);
            if (p->w_norm[w] > largest) largest = p->w_norm[w];
        }
    }
    cr_assert(largest > 0);
    nn_grad_flow_free(&plain);
    nn_grad_flow_free(&lean);
    cr_assert_eq(ts_live_allocs(), before);
}

/* What the report cannot compute is an error naming the mode: nothing per
 * copy (copy_grads = none), or a weight used twice per step on a norms tape
 * (the norm of a sum of copies is not the sum of their norms). */
Test(nn_gradflow, modes_that_drop_the_data_are_errors)
{
    long before = ts_live_allocs();
    nn_params *ps = nn_params_new(AD_F64, NULL);
    nn_cell cell;
    nn_cell_create(&cell, ps, "rnn", &(nn_cell_options){.kind = NN_CELL_RNN_TANH, .input_size = I, .hidden_size = H}, NULL);
    ad_rng rng;
    ad_rng_seed(&rng, 9, 0);
    nn_cell_init_pytorch(&cell, &rng);
    for (int mode = AD_COPY_GRADS_NORMS; mode <= AD_COPY_GRADS_NONE; mode++) {
        ad_tape_options o = {0};
        o.copy_grads = (ad_copy_grads)mode;
        ad_tape *t = ad_tape_new(&o);
        ad_tensor *xs[T];
        for (int k = 0; k < T; k++) xs[k] = ad_rand_normal(t, &rng, AD_F64, ad_shape2(B, I), 0, 1);
        nn_state outs[T], last;
        cr_assert_eq(nn_unroll(t, &cell, xs, T, NULL, outs, &last), AD_OK);
        ad_tensor *loss = ad_sum(t, last.h, AD_AXIS_ALL, 0);
        /* norms: a second use of W_hh per step, at every step */
        if (mode == AD_COPY_GRADS_NORMS)
            for (int k = 0; k < T; k++)
                loss = ad_add(t, loss, ad_sum(t, ad_use(t, cell.w[1]), AD_AXIS_ALL, 0));
        cr_assert_eq(ad_backward(t, loss, NULL), AD_OK, "%s", ad_tape_message(t));
        nn_grad_flow f;
        ad_error err;
        cr_assert_eq(nn_grad_flow_collect(t, &cell, outs, T, NULL, &f, &err), AD_ERR_STATE);
        const char *want = mode == AD_COPY_GRADS_NONE ? "copy_grads = none" : "copy_grads = norms";
        cr_assert(strstr(err.msg, want), "%s", err.msg);
        cr_assert_null(f.rows);
        ad_tape_free(t);
    }
    nn_params_free(ps);
    cr_assert_eq(ts_live_allocs(), before);
}

/* A NaN in the input at step 5: the norms from there on are NaN in the
 * report (they used to be skipped, reading as finite, even 0). */
Test(nn_gradflow, nan_norms_are_reported)
{
    long before = ts_live_allocs();
    nn_params *ps = nn_params_new(AD_F64, NULL);
    nn_cell cell;
    nn_cell_create(&cell, ps, "rnn", &(nn_cell_options){.kind = NN_CELL_RNN_TANH, .input_size = I, .hidden_size = H}, NULL);
    ad_rng rng;
    ad_rng_seed(&rng, 10, 0);
    nn_cell_init_pytorch(&cell, &rng);
    for (int lean = 0; lean < 2; lean++) {
        ad_tape *t = ad_tape_new(&(ad_tape_options){.copy_grads = lean ? AD_COPY_GRADS_NORMS : AD_COPY_GRADS_KEEP});
        ad_tensor *xs[T];
        for (int k = 0; k < T; k++) xs[k] = ad_rand_normal(t, &rng, AD_F64, ad_shape2(B, I), 0, 1);
        ad_tensor_f64(xs[5])[0] = NAN;
        nn_state outs[T], last;
        cr_assert_eq(nn_unroll(t, &cell, xs, T, NULL, outs, &last), AD_OK);
        cr_assert_eq(ad_backward(t, ad_sum(t, last.h, AD_AXIS_ALL, 0), NULL), AD_OK);
        nn_grad_flow f;
        ad_error err;
        cr_assert_eq(nn_grad_flow_collect(t, &cell, outs, T, NULL, &f, &err), AD_OK, "%s", err.msg);
        cr_assert(isnan(f.rows[T - 2].h_norm), "lean %d: |dL/dh| at step %d is %g", lean, T - 2, f.rows[T - 2].h_norm);
        cr_assert(isnan(f.rows[T - 1].w_norm[1]), "lean %d: |dL/dW_hh| at the last step is %g", lean,
                  f.rows[T - 1].w_norm[1]);
        cr_assert(isfinite(f.rows[T - 1].h_norm), "the seed's gradient is finite");
        nn_grad_flow_free(&f);
        ad_tape_free(t);
    }
    nn_params_free(ps);
    cr_assert_eq(ts_live_allocs(), before);
}

/*
 * An unroll with recomputation (sqrt(T) segments and revolve slots, nested
 * regions) gives the plain unroll's report within 1e-12: the copies used
 * inside checkpointed regions keep their norms on the tape.
 */
static void recompute_report(nn_cell_kind kind, int mode, nn_grad_flow *f)
{
    nn_params *ps = nn_params_new(AD_F64, NULL);
    nn_cell cell;
    nn_cell_create(&cell, ps, "c", &(nn_cell_options){.kind = kind, .input_size = I, .hidden_size = H}, NULL);
    ad_rng rng;
    ad_rng_seed(&rng, 11, 0);
    nn_cell_init_pytorch(&cell, &rng);
    ad_tape *t = ad_tape_new(&(ad_tape_options){.copy_grads = AD_COPY_GRADS_NORMS});
    ad_tensor *xs[T];
    for (int k = 0; k < T; k++) xs[k] = ad_rand_normal(t, &rng, AD_F64, ad_shape2(B, I), 0, 1);
    nn_unroll_options o = {.recompute = mode, .slots = 2};
    nn_state outs[T], last;
    cr_assert_eq(nn_unroll(t, &cell, xs, T, &o, outs, &last), AD_OK, "%s", ad_tape_message(t));
    ad_tensor *loss = ad_sum(t, ad_mul(t, last.h, last.h), AD_AXIS_ALL, 0);
    for (int k = 0; k < T; k += 3) loss = ad_add(t, loss, ad_sum(t, outs[k].h, AD_AXIS_ALL, 0));
    cr_assert_eq(ad_backward(t, loss, NULL), AD_OK, "%s", ad_tape_message(t));
    ad_error err;
    cr_assert_eq(nn_grad_flow_collect(t, &cell, outs, T, &o, f, &err), AD_OK, "%s", err.msg);
    ad_tape_free(t);
    nn_params_free(ps);
}

Test(nn_gradflow, recomputed_unrolls_report_the_plain_norms)
{
    long before = ts_live_allocs();
    nn_cell_kind kinds[2] = {NN_CELL_LSTM, NN_CELL_GRU};
    for (int c = 0; c < 2; c++) {
        nn_grad_flow plain, rc;
        recompute_report(kinds[c], NN_RECOMPUTE_OFF, &plain);
        cr_assert(plain.rows[T / 2].w_norm[1] > 0, "the recurrent weight's copies have gradients");
        for (int mode = NN_RECOMPUTE_SEGMENTS; mode <= NN_RECOMPUTE_SLOTS; mode++) {
            recompute_report(kinds[c], mode, &rc);
            for (int k = 0; k < T; k++) {
                cr_assert(fabs(rc.rows[k].h_norm - plain.rows[k].h_norm) <= 1e-12 * plain.rows[k].h_norm,
                          "cell %d mode %d step %d |dL/dh|", c, mode, k);
                for (int w = 0; w < plain.n_w; w++) {
                    double a = rc.rows[k].w_norm[w], b = plain.rows[k].w_norm[w];
                    cr_assert(fabs(a - b) <= 1e-12 * b, "cell %d mode %d step %d %s: %.17g vs %.17g", c,
                              mode, k, plain.names[w], a, b);
                }
            }
            nn_grad_flow_free(&rc);
        }
        nn_grad_flow_free(&plain);
    }
    cr_assert_eq(ts_live_allocs(), before);
}
