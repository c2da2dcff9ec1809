/*
 * test_ops_torch.c - forward values and input gradients of every op against
 * PyTorch float64 results (tests/data/ops/<case>/, written by
 * tests/data/make_fixtures.py): in0/in1 are the inputs, up the upstream
 * gradient, out the output and g0/g1 the input gradients PyTorch computed.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "testsupport.h"

typedef ad_tensor *(*op_fn)(ad_tape *t, ad_tensor *a, ad_tensor *b);

static ad_tensor *f_matmul(ad_tape *t, ad_tensor *a, ad_tensor *b) { return ad_matmul(t, a, b, 0); }
static ad_tensor *f_matmul_ta(ad_tape *t, ad_tensor *a, ad_tensor *b) { return ad_matmul(t, a, b, AD_TRANS_A); }
static ad_tensor *f_matmul_tb(ad_tape *t, ad_tensor *a, ad_tensor *b) { return ad_matmul(t, a, b, AD_TRANS_B); }
static ad_tensor *f_add(ad_tape *t, ad_tensor *a, ad_tensor *b) { return ad_add(t, a, b); }
static ad_tensor *f_sub(ad_tape *t, ad_tensor *a, ad_tensor *b) { return ad_sub(t, a, b); }
static ad_tensor *f_mul(ad_tape *t, ad_tensor *a, ad_tensor *b) { return ad_mul(t, a, b); }
static ad_tensor *f_div(ad_tape *t, ad_tensor *a, ad_tensor *b) { return ad_div(t, a, b); }
static ad_tensor *f_add_scalar(ad_tape *t, ad_tensor *a, ad_tensor *b) { (void)b; return ad_add_scalar(t, a, 1.5); }
static ad_tensor *f_mul_scalar(ad_tape *t, ad_tensor *a, ad_tensor *b) { (void)b; return ad_mul_scalar(t, a, -2.5); }
static ad_tensor *f_pow_scalar(ad_tape *t, ad_tensor *a, ad_tensor *b) { (void)b; return ad_pow_scalar(t, a, 2.7); }
static ad_tensor *f_neg(ad_tape *t, ad_tensor *a, ad_tensor *b) { (void)b; return ad_neg(t, a); }
static ad_tensor *f_exp(ad_tape *t, ad_tensor *a, ad_tensor *b) { (void)b; return ad_exp(t, a); }
static ad_tensor *f_log(ad_tape *t, ad_tensor *a, ad_tensor *b) { (void)b; return ad_log(t, a); }
static ad_tensor *f_sqrt(ad_tape *t, ad_tensor *a, ad_tensor *b) { (void)b; return ad_sqrt(t, a); }
static ad_tensor *f_abs(ad_tape *t, ad_tensor *a, ad_tensor *b) { (void)b; return ad_abs(t, a); }
static ad_tensor *f_tanh(ad_tape *t, ad_tensor *a, ad_tensor *b) { (void)b; return ad_tanh(t, a); }
static ad_tensor *f_sigmoid(ad_tape *t, ad_tensor *a, ad_tensor *b) { (void)b; return ad_sigmoid(t, a); }
static ad_tensor *f_relu(ad_tape *t, ad_tensor *a, ad_tensor *b) { (void)b; return ad_relu(t, a); }
static ad_tensor *f_sum1(ad_tape *t, ad_tensor *a, ad_tensor *b) { (void)b; return ad_sum(t, a, 1, 0); }
static ad_tensor *f_mean(ad_tape *t, ad_tensor *a, ad_tensor *b) { (void)b; return ad_mean(t, a, AD_AXIS_ALL, 0); }
static ad_tensor *f_softmax(ad_tape *t, ad_tensor *a, ad_tensor *b) { (void)b; return ad_softmax(t, a, 1); }
static ad_tensor *f_log_softmax(ad_tape *t, ad_tensor *a, ad_tensor *b) { (void)b; return ad_log_softmax(t, a, 0); }
static ad_tensor *f_layer_norm(ad_tape *t, ad_tensor *a, ad_tensor *b) { (void)b; return ad_layer_norm(t, a, 1e-5); }
static ad_tensor *f_reshape(ad_tape *t, ad_tensor *a, ad_tensor *b) { (void)b; return ad_reshape(t, a, ad_shape2(-1, 2)); }
static ad_tensor *f_transpose(ad_tape *t, ad_tensor *a, ad_tensor *b) { (void)b; return ad_transpose(t, a, 0, 2); }
static ad_tensor *f_permute(ad_tape *t, ad_tensor *a, ad_tensor *b) { (void)b; return ad_permute(t, a, (int[]){2, 0, 1, 3}); }
static ad_tensor *f_concat(ad_tape *t, ad_tensor *a, ad_tensor *b) { return ad_concat(t, (ad_tensor *[]){a, b}, 2, 1); }
static ad_tensor *f_slice(ad_tape *t, ad_tensor *a, ad_tensor *b) { (void)b; return ad_slice(t, a, 1, 1, 2); }

static ad_tensor *f_gather(ad_tape *t, ad_tensor *a, ad_tensor *b)
{
    (void)b;
    return ad_gather_rows(t, a, (int64_t[]){2, 0, 2, 1}, 4);
}

static ad_tensor *f_where(ad_tape *t, ad_tensor *a, ad_tensor *b)
{
    ad_tensor *cond = ad_from_data(t, AD_F64, ad_shape1(3), (double[]){1, 0, 1});
    return ad_where(t, cond, a, b);
}

static const int64_t ce_targets[4] = {1, -100, 4, 0};
static ad_tensor *f_ce(ad_tape *t, ad_tensor *a, ad_tensor *b)
{
    (void)b;
    return ad_cross_entropy(t, a, ce_targets, 4, -100, AD_REDUCE_MEAN);
}
static ad_tensor *f_ce_sum(ad_tape *t, ad_tensor *a, ad_tensor *b)
{
    (void)b;
    return ad_cross_entropy(t, a, ce_targets, 4, -100, AD_REDUCE_SUM);
}
static ad_tensor *f_bce_logits(ad_tape *t, ad_tensor *a, ad_tensor *b) { return ad_bce_with_logits(t, a, b, AD_REDUCE_MEAN); }
static ad_tensor *f_bce(ad_tape *t, ad_tensor *a, ad_tensor *b) { return ad_bce(t, a, b, AD_REDUCE_SUM); }
static ad_tensor *f_mse(ad_tape *t, ad_tensor *a, ad_tensor *b) { return ad_mse(t, a, b, AD_REDUCE_MEAN); }

typedef struct torch_case {
    const char *name;
    op_fn fn;
    int arity;
    int b_const; /* the second input is a constant target */
} torch_case;

static const torch_case cases[] = {
    {"matmul", f_matmul, 2, 0}, {"matmul_ta", f_matmul_ta, 2, 0}, {"matmul_tb", f_matmul_tb, 2, 0},
    {"add", f_add, 2, 0}, {"sub", f_sub, 2, 0}, {"mul", f_mul, 2, 0}, {"div", f_div, 2, 0},
    {"add_scalar", f_add_scalar, 1, 0}, {"mul_scalar", f_mul_scalar, 1, 0},
    {"pow_scalar", f_pow_scalar, 1, 0}, {"neg", f_neg, 1, 0}, {"exp", f_exp, 1, 0},
    {"log", f_log, 1, 0}, {"sqrt", f_sqrt, 1, 0}, {"abs", f_abs, 1, 0}, {"tanh", f_tanh, 1, 0},
    {"sigmoid", f_sigmoid, 1, 0}, {"relu", f_relu, 1, 0}, {"sum_axis1", f_sum1, 1, 0},
    {"mean_all", f_mean, 1, 0}, {"softmax", f_softmax, 1, 0}, {"log_softmax", f_log_softmax, 1, 0},
    {"reshape", f_reshape, 1, 0}, {"transpose", f_transpose, 1, 0}, {"permute", f_permute, 1, 0},
    {"concat", f_concat, 2, 0}, {"slice", f_slice, 1, 0}, {"gather_rows", f_gather, 1, 0},
    {"where", f_where, 2, 0}, {"cross_entropy", f_ce, 1, 0}, {"cross_entropy_sum", f_ce_sum, 1, 0},
    {"bce_with_logits", f_bce_logits, 2, 1}, {"bce", f_bce, 2, 1}, {"mse", f_mse, 2, 0},
    {"layer_norm", f_layer_norm, 1, 0},
};

static ad_tensor *load(const char *name, const char *file)
{
    char path[512];
    snprintf(path, sizeof path, "%s/ops/%s/%s.npy", UNROLL_TEST_DATA, name, file);
    ad_error err;
    ad_tensor *x = ad_npy_load(path, &err);
    cr_assert_not_null(x, "%s", err.msg);
    return x;
}

/* Relative 1e-12 with an absolute floor for values near zero. */
static void expect_close(const char *what, const char *name, const double *got, ad_tensor *want)
{
    const double *w = ad_tensor_f64(want);
    for (size_t i = 0; i < ad_tensor_numel(want); i++)
        cr_assert(fabs(got[i] - w[i]) <= 1e-12 * fabs(w[i]) + 1e-14,
                  "%s %s[%zu]: %.17g, PyTorch %.17g", name, what, i, got[i], w[i]);
}

/* Parameters are case numbers (ts_row_numbers): the test runs in a fresh
 * process image where the table's pointers may differ. */
ParameterizedTestParameters(ops_torch, matches_pytorch)
{
    return ts_row_numbers(sizeof cases / sizeof cases[0]);
}

ParameterizedTest(size_t *id, ops_torch, matches_pytorch)
{
    const torch_case *c = &cases[*id];
    long before = ts_live_allocs();
    ad_tensor *in[2] = {load(c->name, "in0"), c->arity > 1 ? load(c->name, "in1") : NULL};
    ad_tensor *up = load(c->name, "up"), *out = load(c->name, "out");
    ad_tape *t = ad_tape_new(NULL);
    ad_tensor *x[2] = {NULL, NULL};
    for (int i = 0; i < c->arity; i++) {
        int constant = i == 1 && c->b_const;
        x[i] = constant ? ad_constant(t, in[i])
                        : ad_variable(t, AD_F64, ad_tensor_shape(in[i]), ad_tensor_data(in[i]));
    }
    ad_tensor *y = c->fn(t, x[0], x[1]);
    cr_assert_not_null(y, "%s: %s", c->name, ad_tape_message(t));
    cr_assert(ad_shape_equal(ad_tensor_shape(y), ad_tensor_shape(out)), "%s: output shape", c->name);
    expect_close("output", c->name, ad_tensor_f64(y), out);
    cr_assert_eq(ad_backward(t, y, up), AD_OK, "%s: %s", c->name, ad_tape_message(t));
    for (int i = 0; i < c->arity; i++) {
        if (i == 1 && c->b_const) continue;
        ad_tensor *g = load(c->name, i ? "g1" : "g0");
        expect_close(i ? "grad of input 1" : "grad of input 0", c->name, ad_tensor_grad_f64(x[i]), g);
        ad_tensor_free(g);
    }
    ad_tape_free(t);
    for (int i = 0; i < 2; i++) ad_tensor_free(in[i]);
    ad_tensor_free(up);
    ad_tensor_free(out);
    cr_assert_eq(ts_live_allocs(), before);
}
