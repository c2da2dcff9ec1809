/*
 * test_ops_loss.c - cross-entropy, binary cross-entropy (logits and
 * probabilities) and MSE: values by hand, an f64 gradient check of each loss
 * and reduction, the numerically hard cases, and bad inputs.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <math.h>
#include <string.h>

#include "testsupport.h"

typedef struct gc_row gc_row;

typedef struct gc_ctx {
    const gc_row *row;
    ad_param *p[2];
    double target[64];
    int64_t cls[16];
} gc_ctx;

/* One gradcheck case: the loss it checks (with x the logits or inputs), its
 * reduction, and whether the loss takes a second parameter (MSE). Criterion
 * cannot pass pointers to a case, so the cases run by row number. */
struct gc_row {
    const char *name;
    ad_tensor *(*loss)(ad_tape *t, const gc_row *r, gc_ctx *c, ad_tensor *x);
    int two_params;
    ad_reduction red;
    int64_t rows, cols;
    int ignore; /* CE: mark some targets ignore_index */
};

static ad_tensor *targets(ad_tape *t, const gc_row *r, gc_ctx *c)
{
    return ad_from_data(t, AD_F64, ad_shape2(r->rows, r->cols), c->target);
}
static ad_tensor *ce(ad_tape *t, const gc_row *r, gc_ctx *c, ad_tensor *x)
{
    return ad_cross_entropy(t, x, c->cls, r->rows, -100, r->red);
}
static ad_tensor *bce_logits(ad_tape *t, const gc_row *r, gc_ctx *c, ad_tensor *x)
{
    return ad_bce_with_logits(t, x, targets(t, r, c), r->red);
}
static ad_tensor *bce(ad_tape *t, const gc_row *r, gc_ctx *c, ad_tensor *x)
{
    return ad_bce(t, ad_sigmoid(t, x), targets(t, r, c), r->red);
}
static ad_tensor *mse(ad_tape *t, const gc_row *r, gc_ctx *c, ad_tensor *x)
{
    return ad_mse(t, x, ad_use(t, c->p[1]), r->red);
}

static ad_tensor *graph(ad_tape *t, void *vctx)
{
    gc_ctx *c = vctx;
    return c->row->loss(t, c->row, c, ad_use(t, c->p[0]));
}

#define L(loss, red, rows, cols, ignore) {#loss, loss, 0, AD_REDUCE_##red, rows, cols, ignore}
#define L2(loss, red, rows, cols) {#loss, loss, 1, AD_REDUCE_##red, rows, cols, 0}

static const gc_row rows[] = {
    L(ce, MEAN, 4, 5, 0), L(ce, SUM, 3, 2, 0),
    L(ce, NONE, 4, 3, 0), L(ce, MEAN, 6, 4, 1),
    L(ce, SUM, 6, 4, 1),  L(ce, MEAN, 1, 7, 0),
    L(bce_logits, MEAN, 3, 4, 0), L(bce_logits, SUM, 2, 3, 0),
    L(bce_logits, NONE, 2, 3, 0), L(bce, MEAN, 3, 4, 0),
    L(bce, SUM, 2, 2, 0),         L(bce, NONE, 1, 5, 0),
    L2(mse, MEAN, 3, 4),          L2(mse, SUM, 2, 3),
    L2(mse, NONE, 4, 1),
};

ParameterizedTestParameters(ops_loss, gradcheck)
{
    return ts_row_numbers(sizeof rows / sizeof rows[0]);
}

ParameterizedTest(size_t *ri, ops_loss, gradcheck)
{
    const gc_row *row = &rows[*ri];
    long before = ts_live_allocs();
    gc_ctx c;
    memset(&c, 0, sizeof c);
    c.row = row;
    ad_shape s = ad_shape2(row->rows, row->cols);
    size_t n = (size_t)(row->rows * row->cols);
    c.p[0] = ad_param_new("x", AD_F64, s, NULL);
    ts_fill_uniform(ad_tensor_f64(ad_param_value(c.p[0])), n, 31, -3, 3);
    ts_fill_uniform(c.target, n, 32, 0, 1);
    for (int64_t i = 0; i < row->rows; i++)
        c.cls[i] = (row->ignore && i % 3 == 1) ? -100 : (i * 7 + 3) % row->cols;
    size_t np = 1;
    if (row->two_params) {
        c.p[1] = ad_param_new("y", AD_F64, s, NULL);
        ts_fill_uniform(ad_tensor_f64(ad_param_value(c.p[1])), n, 33, -3, 3);
        np = 2;
    }
    ad_gradcheck_report rep;
    ad_error err;
    ad_status st = ad_gradcheck(graph, &c, c.p, np, NULL, &rep, &err);
    if (st != AD_OK) ad_gradcheck_print(&rep, stderr);
    cr_assert_eq(st, AD_OK, "loss %s reduction %d: %s", row->name, (int)row->red, err.msg);
    /* The exact check: backward against forward mode, to 1e-12. */
    st = ad_gradcheck_exact(graph, &c, c.p, np, NULL, &rep, &err);
    if (st != AD_OK) ad_gradcheck_print(&rep, stderr);
    cr_assert_eq(st, AD_OK, "exact check: %s", err.msg);
    ad_param_free(c.p[0]);
    ad_param_free(c.p[1]);
    cr_assert_eq(ts_live_allocs(), before);
}

/* ---- values ------------------------------------------------------------------------- */

static ad_tape *tape;
static void setup(void) { tape = ad_tape_new(NULL); }
static void teardown(void) { ad_tape_free(tape); }

static double item(ad_tensor *x)
{
    cr_assert_not_null(x, "%s", ad_tape_message(tape));
    return ad_tensor_item(x);
}

Test(ops_loss, cross_entropy_values, .init = setup, .fini = teardown)
{
    double x[6] = {1, 2, 3, 1000, 0, -1000};
    ad_tensor *lg = ad_variable(tape, AD_F64, ad_shape2(2, 3), x);
    int64_t tg[2] = {0, 1};
    double l0 = log(exp(1) + exp(2) + exp(3)) - 1; /* row 0 */
    double l1 = 1000;                               /* row 1: huge logits, max-shifted */
    cr_assert_float_eq(item(ad_cross_entropy(tape, lg, tg, 2, -100, AD_REDUCE_SUM)), l0 + l1, 1e-9);
    cr_assert_float_eq(item(ad_cross_entropy(tape, lg, tg, 2, -100, AD_REDUCE_MEAN)),
                       (l0 + l1) / 2, 1e-9);
    int64_t ig[2] = {0, -100};
    ad_tensor *m = ad_cross_entropy(tape, lg, ig, 2, -100, AD_REDUCE_MEAN);
    cr_assert_float_eq(item(m), l0, 1e-12, "an ignored row counts neither in sum nor in mean");
    cr_assert_eq(ad_backward(tape, m, NULL), AD_OK);
    const double *g = ad_tensor_grad_f64(lg);
    double s = exp(1) + exp(2) + exp(3);
    cr_assert_float_eq(g[0], exp(1) / s - 1, 1e-12);
    cr_assert_float_eq(g[2], exp(3) / s, 1e-12);
    for (int k = 3; k < 6; k++) cr_assert_eq(g[k], 0.0);
    ad_tensor *none = ad_cross_entropy(tape, lg, ig, 2, -100, AD_REDUCE_NONE);
    cr_assert_eq(ad_tensor_numel(none), 2);
    cr_assert_float_eq(ad_tensor_f64(none)[0], l0, 1e-12);
    cr_assert_eq(ad_tensor_f64(none)[1], 0.0);
}

Test(ops_loss, bce_with_logits_is_stable, .init = setup, .fini = teardown)
{
    double x[4] = {-800, 800, 0, 2};
    double y[4] = {1, 0, 1, 0.25};
    ad_tensor *lx = ad_variable(tape, AD_F64, ad_shape1(4), x);
    ad_tensor *ly = ad_from_data(tape, AD_F64, ad_shape1(4), y);
    ad_tensor *l = ad_bce_with_logits(tape, lx, ly, AD_REDUCE_NONE);
    cr_assert_not_null(l);
    const double *v = ad_tensor_f64(l);
    cr_assert_float_eq(v[0], 800, 1e-9);
    cr_assert_float_eq(v[1], 800, 1e-9);
    cr_assert_float_eq(v[2], log(2), 1e-15);
    cr_assert_float_eq(v[3], 2 - 0.5 + log1p(exp(-2)), 1e-14);
    ad_tensor *ones = ad_ones(tape, AD_F64, ad_shape1(4));
    cr_assert_eq(ad_backward(tape, l, ones), AD_OK);
    const double *g = ad_tensor_grad_f64(lx);
    cr_assert_float_eq(g[0], -1, 1e-15);
    cr_assert_float_eq(g[1], 1, 1e-15);
    cr_assert_float_eq(g[2], -0.5, 1e-15);
}

Test(ops_loss, bce_clamps_logs_like_pytorch, .init = setup, .fini = teardown)
{
    double p[3] = {0, 1, 0.5};
    double y[3] = {1, 0, 1};
    ad_tensor *l = ad_bce(tape, ad_from_data(tape, AD_F64, ad_shape1(3), p),
                          ad_from_data(tape, AD_F64, ad_shape1(3), y), AD_REDUCE_NONE);
    cr_assert_not_null(l);
    cr_assert_eq(ad_tensor_f64(l)[0], 100.0);
    cr_assert_eq(ad_tensor_f64(l)[1], 100.0);
    cr_assert_float_eq(ad_tensor_f64(l)[2], log(2), 1e-15);
}

Test(ops_loss, mse_values_and_both_gradients, .init = setup, .fini = teardown)
{
    ad_tensor *a = ad_variable(tape, AD_F32, ad_shape1(2), (float[]){1, 4});
    ad_tensor *b = ad_variable(tape, AD_F32, ad_shape1(2), (float[]){3, 1});
    ad_tensor *l = ad_mse(tape, a, b, AD_REDUCE_MEAN);
    cr_assert_float_eq(item(l), (4.0 + 9.0) / 2, 1e-6);
    cr_assert_eq(ad_backward(tape, l, NULL), AD_OK);
    cr_assert_float_eq(ad_tensor_grad_f32(a)[0], -2.0f, 1e-6);
    cr_assert_float_eq(ad_tensor_grad_f32(b)[1], -3.0f, 1e-6);
}

/* ---- bad inputs --------------------------------------------------------------------- */

static ad_tensor *call_bad(ad_tape *t, int which)
{
    ad_tensor *m23 = ad_zeros(t, AD_F64, ad_shape2(2, 3));
    ad_tensor *m32 = ad_zeros(t, AD_F64, ad_shape2(3, 2));
    int64_t tg[3] = {0, 5, 1};
    int64_t ig[2] = {-1, -1};
    switch (which) {
    case 0: return ad_cross_entropy(t, m23, tg, 2, -100, AD_REDUCE_MEAN);
    case 1: return ad_cross_entropy(t, m23, tg, 3, -100, AD_REDUCE_MEAN);
    case 2: return ad_cross_entropy(t, m23, NULL, 2, -100, AD_REDUCE_MEAN);
    case 3: return ad_cross_entropy(t, m23, ig, 2, -1, AD_REDUCE_MEAN);
    case 4: return ad_cross_entropy(t, ad_zeros(t, AD_F64, ad_shape1(3)), tg, 3, -100, AD_REDUCE_SUM);
    case 5: return ad_cross_entropy(t, m23, ig, 2, -100, (ad_reduction)7);
    case 6: return ad_bce_with_logits(t, m23, m32, AD_REDUCE_MEAN);
    case 7: return ad_bce(t, m23, ad_variable(t, AD_F64, ad_shape2(2, 3), (double[6]){0}),
                          AD_REDUCE_SUM);
    case 8: return ad_mse(t, m23, ad_zeros(t, AD_F32, ad_shape2(2, 3)), AD_REDUCE_MEAN);
    case 9: return ad_mse(t, ad_zeros(t, AD_F64, ad_shape2(0, 3)),
                          ad_zeros(t, AD_F64, ad_shape2(0, 3)), AD_REDUCE_MEAN);
    case 10: return ad_mse(t, NULL, m23, AD_REDUCE_MEAN);
    case 11: return ad_cross_entropy(t, ad_zeros(t, AD_F64, ad_shape2(0, 3)), tg, 0, -100,
                                     AD_REDUCE_SUM);
    }
    return NULL;
}

static const ts_bad_case bad[] = {
    {"ce target range", AD_ERR_ARG, "target 5 of row 1 is outside the 3 classes"},
    {"ce count", AD_ERR_SHAPE, "3 targets for logits [2,3]"},
    {"ce NULL targets", AD_ERR_NULL, "targets are NULL"},
    {"ce all ignored", AD_ERR_EMPTY, "the mean is undefined"},
    {"ce rank", AD_ERR_RANK, "must be [N, C]"},
    {"ce reduction", AD_ERR_ARG, "unknown reduction 7"},
    {"bce logits shapes", AD_ERR_SHAPE, "bce_with_logits: input [2,3] and target [3,2] differ"},
    {"bce target grad", AD_ERR_ARG, "targets must be constants"},
    {"mse dtype", AD_ERR_DTYPE, "input 1 is f32"},
    {"mse empty mean", AD_ERR_EMPTY, "no elements"},
    {"mse NULL", AD_ERR_NULL, "input 0 is NULL"},
    {"ce empty", AD_ERR_EMPTY, "are empty"},
};

Test(ops_loss, bad_inputs)
{
    long before = ts_live_allocs();
    ts_expect_tape_errors(call_bad, bad, (int)(sizeof bad / sizeof bad[0]));
    cr_assert_null(ad_mse(NULL, NULL, NULL, AD_REDUCE_SUM));
    cr_assert_eq(ts_live_allocs(), before);
}
