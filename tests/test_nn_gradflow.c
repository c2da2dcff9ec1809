/*
 * test_nn_gradflow.c - the gradient-flow report: per-step norms equal those
 * of the states' and temporal copies' gradients, the direction is honoured,
 * vanishing gradients show, and the CSV has its header.
 */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>
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
