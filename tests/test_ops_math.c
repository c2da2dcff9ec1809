/*
 * test_ops_math.c - elementwise, scalar and reduction ops: forward values by
 * hand, and an f64 gradient check of every op over several shapes,
 * broadcasting patterns and axes.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "kernels.h"
#include "testsupport.h"

typedef struct gc_row gc_row;

/*
 * One gradcheck case. The row carries its call: `unary` or `binary` when the
 * op's public function takes only its inputs (then the row names it
 * directly), else `call`, which reads the row's axis/keepdim or fixes a
 * scalar. Criterion cannot pass pointers to a case, so the cases run by row
 * number (ts_row_numbers).
 */
struct gc_row {
    const char *name;
    ad_tensor *(*unary)(ad_tape *t, ad_tensor *a);
    ad_tensor *(*binary)(ad_tape *t, ad_tensor *a, ad_tensor *b);
    ad_tensor *(*call)(ad_tape *t, const gc_row *r, ad_tensor *a);
    int ra;
    int64_t sa[4];
    int rb; /* 0 with nb == 0: unary */
    int64_t sb[4];
    int nb; /* number of inputs beyond the first */
    int axis;
    int keepdim;
    double lo, hi; /* range of input values */
    uint64_t seed;
};

static ad_tensor *call_add_scalar(ad_tape *t, const gc_row *r, ad_tensor *a) { (void)r; return ad_add_scalar(t, a, 1.5); }
static ad_tensor *call_mul_scalar(ad_tape *t, const gc_row *r, ad_tensor *a) { (void)r; return ad_mul_scalar(t, a, -2.5); }
static ad_tensor *call_pow_scalar(ad_tape *t, const gc_row *r, ad_tensor *a) { (void)r; return ad_pow_scalar(t, a, 2.7); }
static ad_tensor *call_sum(ad_tape *t, const gc_row *r, ad_tensor *a) { return ad_sum(t, a, r->axis, r->keepdim); }
static ad_tensor *call_mean(ad_tape *t, const gc_row *r, ad_tensor *a) { return ad_mean(t, a, r->axis, r->keepdim); }
static ad_tensor *call_softmax(ad_tape *t, const gc_row *r, ad_tensor *a) { return ad_softmax(t, a, r->axis); }
static ad_tensor *call_log_softmax(ad_tape *t, const gc_row *r, ad_tensor *a) { return ad_log_softmax(t, a, r->axis); }
static ad_tensor *call_layer_norm(ad_tape *t, const gc_row *r, ad_tensor *a) { (void)r; return ad_layer_norm(t, a, 1e-5); }

/* The row's op on a (and b for binary rows). */
static ad_tensor *apply(ad_tape *t, const gc_row *r, ad_tensor *a, ad_tensor *b)
{
    if (r->binary) return r->binary(t, a, b);
    if (r->unary) return r->unary(t, a);
    return r->call(t, r, a);
}

typedef struct gc_ctx {
    const gc_row *row;
    ad_param *p[2];
} gc_ctx;

static ad_tensor *graph(ad_tape *t, void *vctx)
{
    gc_ctx *c = vctx;
    const gc_row *r = c->row;
    ad_tensor *a = ad_use(t, c->p[0]);
    ad_tensor *b = r->nb ? ad_use(t, c->p[1]) : NULL;
    return apply(t, r, a, b);
}

#define S(...) {__VA_ARGS__}
#define BIN(op, ra, sa, rb, sb, lo, hi) {#op, NULL, ad_##op, NULL, ra, S sa, rb, S sb, 1, 0, 0, lo, hi, 11}
#define UN(op, ra, sa, lo, hi) {#op, ad_##op, NULL, NULL, ra, S sa, 0, {0}, 0, 0, 0, lo, hi, 12}
/* an op whose call fixes a scalar argument (call_<op> above) */
#define SCAL(op, ra, sa, lo, hi) {#op, NULL, NULL, call_##op, ra, S sa, 0, {0}, 0, 0, 0, lo, hi, 12}
#define RED(op, ra, sa, axis, keep) {#op, NULL, NULL, call_##op, ra, S sa, 0, {0}, 0, axis, keep, -2, 2, 13}

static const gc_row rows[] = {
    /* broadcasting in both operand orders, for each binary op */
    BIN(add, 2, (2, 3), 2, (2, 3), -2, 2), BIN(add, 2, (2, 3), 1, (3), -2, 2),
    BIN(add, 1, (3), 2, (2, 3), -2, 2), BIN(add, 2, (2, 1), 2, (1, 3), -2, 2),
    BIN(add, 3, (4, 1, 3), 2, (2, 1), -2, 2), BIN(add, 0, (0), 2, (2, 2), -2, 2),
    BIN(add, 4, (2, 1, 3, 1), 4, (1, 2, 1, 2), -2, 2),
    BIN(sub, 2, (2, 3), 1, (3), -2, 2), BIN(sub, 1, (3), 2, (2, 3), -2, 2),
    BIN(sub, 2, (2, 1), 2, (1, 3), -2, 2), BIN(sub, 2, (2, 2), 0, (0), -2, 2),
    BIN(mul, 2, (2, 3), 2, (2, 3), -2, 2), BIN(mul, 2, (2, 3), 1, (3), -2, 2),
    BIN(mul, 1, (3), 2, (2, 3), -2, 2), BIN(mul, 2, (2, 1), 2, (1, 3), -2, 2),
    BIN(mul, 3, (4, 1, 3), 2, (2, 1), -2, 2), BIN(mul, 0, (0), 2, (2, 2), -2, 2),
    BIN(div, 2, (2, 3), 2, (2, 3), 0.5, 2), BIN(div, 2, (2, 3), 1, (3), 0.5, 2),
    BIN(div, 1, (3), 2, (2, 3), 0.5, 2), BIN(div, 2, (2, 1), 2, (1, 3), 0.5, 2),
    BIN(div, 3, (4, 1, 3), 2, (2, 1), 0.5, 2),
    /* unary and scalar ops; log/sqrt/pow on positive inputs */
    SCAL(add_scalar, 2, (2, 3), -2, 2), SCAL(mul_scalar, 3, (2, 1, 3), -2, 2),
    SCAL(pow_scalar, 2, (3, 2), 0.3, 2), UN(neg, 1, (5), -2, 2),
    UN(exp, 2, (2, 3), -2, 2), UN(log, 2, (2, 3), 0.2, 3), UN(sqrt, 1, (4), 0.2, 3),
    UN(abs, 2, (3, 3), 0.1, 2), UN(tanh, 4, (2, 1, 2, 3), -2, 2),
    UN(tanh, 0, (0), -2, 2), UN(sigmoid, 2, (2, 3), -4, 4),
    UN(relu, 2, (2, 3), 0.1, 2), UN(softplus, 2, (2, 3), -4, 4), UN(softplus, 3, (2, 2, 3), -30, 30),
    /* reductions: every axis, negative axes, keepdim both ways, all axes */
    RED(sum, 2, (2, 3), 0, 0), RED(sum, 2, (2, 3), 1, 1), RED(sum, 3, (2, 3, 4), -1, 0),
    RED(sum, 3, (2, 3, 4), 1, 0), RED(sum, 4, (2, 1, 3, 2), AD_AXIS_ALL, 0),
    RED(sum, 2, (2, 3), AD_AXIS_ALL, 1), RED(mean, 2, (2, 3), 0, 1),
    RED(mean, 3, (2, 3, 4), -2, 0), RED(mean, 2, (3, 2), AD_AXIS_ALL, 0),
    RED(softmax, 2, (2, 5), 1, 0), RED(softmax, 2, (4, 3), 0, 0),
    RED(softmax, 3, (2, 3, 4), 1, 0), RED(log_softmax, 2, (2, 5), -1, 0),
    RED(log_softmax, 3, (2, 3, 4), 0, 0), RED(log_softmax, 1, (6), 0, 0),
    RED(layer_norm, 2, (3, 5), -1, 0), RED(layer_norm, 3, (2, 3, 4), -1, 0),
    RED(layer_norm, 1, (7), -1, 0),
};

#define N_ROWS (sizeof rows / sizeof rows[0])

static ad_shape shape_of(int rank, const int64_t *d)
{
    ad_shape s = {rank, {d[0], d[1], d[2], d[3]}};
    return s;
}

ParameterizedTestParameters(ops_math, gradcheck)
{
    return ts_row_numbers(N_ROWS);
}

ParameterizedTest(size_t *i, ops_math, gradcheck)
{
    const gc_row *row = &rows[*i];
    long before = ts_live_allocs();
    gc_ctx c = {row, {NULL, NULL}};
    c.p[0] = ad_param_new("a", AD_F64, shape_of(row->ra, row->sa), NULL);
    ts_fill_uniform(ad_tensor_f64(ad_param_value(c.p[0])), ad_tensor_numel(ad_param_value(c.p[0])),
                    row->seed, row->lo, row->hi);
    if (row->nb) {
        c.p[1] = ad_param_new("b", AD_F64, shape_of(row->rb, row->sb), NULL);
        ts_fill_uniform(ad_tensor_f64(ad_param_value(c.p[1])),
                        ad_tensor_numel(ad_param_value(c.p[1])), row->seed + 1, row->lo, row->hi);
    }
    ad_gradcheck_report rep;
    ad_error err;
    ad_status st = ad_gradcheck(graph, &c, c.p, row->nb ? 2 : 1, NULL, &rep, &err);
    if (st != AD_OK) ad_gradcheck_print(&rep, stderr);
    cr_assert_eq(st, AD_OK, "row %zu (%s): %s", *i, row->name, err.msg);
    /* The exact check: backward against forward mode, to 1e-12. */
    st = ad_gradcheck_exact(graph, &c, c.p, row->nb ? 2 : 1, NULL, &rep, &err);
    if (st != AD_OK) ad_gradcheck_print(&rep, stderr);
    cr_assert_eq(st, AD_OK, "exact check: %s", err.msg);
    ad_gradcheck_options fast = {0};
    fast.fast = 1;
    cr_assert_eq(ad_gradcheck(graph, &c, c.p, row->nb ? 2 : 1, &fast, &rep, &err), AD_OK,
                 "fast mode, row %zu (%s): %s", *i, row->name, err.msg);
    ad_param_free(c.p[0]);
    ad_param_free(c.p[1]);
    cr_assert_eq(ts_live_allocs(), before);
}

/*
 * The bad inputs every row's op shares: a NULL input (either one of a binary
 * op) fails with AD_ERR_NULL naming the op and the input, and a binary op's
 * operands of two dtypes with AD_ERR_DTYPE. Walking the rows covers each op
 * the rows check.
 */
Test(ops_math, every_row_refuses_null_and_mixed_dtypes)
{
    long before = ts_live_allocs();
    for (size_t i = 0; i < N_ROWS; i++) {
        const gc_row *r = &rows[i];
        char want[64];
        for (int which = 0; which <= r->nb; which++) {
            ad_tape *t = ad_tape_new(NULL);
            ad_tensor *a = which == 0 ? NULL : ad_ones(t, AD_F64, shape_of(r->ra, r->sa));
            ad_tensor *b = !r->nb || which == 1 ? NULL : ad_ones(t, AD_F64, shape_of(r->rb, r->sb));
            cr_assert_null(apply(t, r, a, b), "row %zu (%s): NULL input %d gave a tensor", i, r->name, which);
            cr_assert_eq(ad_tape_status(t), AD_ERR_NULL, "row %zu (%s): %s", i, r->name, ad_tape_message(t));
            snprintf(want, sizeof want, "%s: input %d", r->name, which);
            cr_assert(strstr(ad_tape_message(t), want), "row %zu: '%s' lacks '%s'", i, ad_tape_message(t), want);
            ad_tape_free(t);
        }
        if (!r->nb) continue;
        ad_tape *t = ad_tape_new(NULL);
        ad_tensor *a = ad_ones(t, AD_F64, shape_of(r->ra, r->sa)), *b = ad_ones(t, AD_F32, shape_of(r->rb, r->sb));
        cr_assert_null(apply(t, r, a, b), "row %zu (%s): f64 with f32 gave a tensor", i, r->name);
        cr_assert_eq(ad_tape_status(t), AD_ERR_DTYPE, "row %zu (%s): %s", i, r->name, ad_tape_message(t));
        ad_tape_free(t);
    }
    cr_assert_eq(ts_live_allocs(), before);
}

/* ---- forward values ------------------------------------------------------------ */

static void assert_values(ad_tensor *x, const double *want, size_t n, double tol)
{
    cr_assert_not_null(x);
    cr_assert_eq(ad_tensor_numel(x), n);
    for (size_t i = 0; i < n; i++)
        cr_assert(fabs(ad_tensor_get(x, i) - want[i]) <= tol, "element %zu: %.17g, want %.17g", i,
                  ad_tensor_get(x, i), want[i]);
}

Test(ops_math, broadcast_values)
{
    ad_tape *t = ad_tape_new(NULL);
    double a[6] = {1, 2, 3, 4, 5, 6}, b[3] = {10, 20, 30}, col[2] = {2, 4};
    ad_tensor *ta = ad_from_data(t, AD_F64, ad_shape2(2, 3), a);
    ad_tensor *tb = ad_from_data(t, AD_F64, ad_shape1(3), b);
    ad_tensor *tc = ad_from_data(t, AD_F64, ad_shape2(2, 1), col);
    assert_values(ad_add(t, ta, tb), (double[]){11, 22, 33, 14, 25, 36}, 6, 0);
    assert_values(ad_sub(t, tb, ta), (double[]){9, 18, 27, 6, 15, 24}, 6, 0);
    assert_values(ad_mul(t, tc, tb), (double[]){20, 40, 60, 40, 80, 120}, 6, 0);
    assert_values(ad_div(t, ta, tc), (double[]){0.5, 1, 1.5, 1, 1.25, 1.5}, 6, 0);
    ad_tensor *out = ad_mul(t, ad_ones(t, AD_F32, ad_shape3(4, 1, 3)), ad_ones(t, AD_F32, ad_shape2(2, 1)));
    cr_assert_eq(ad_tensor_rank(out), 3);
    cr_assert_eq(ad_tensor_dim(out, 0), 4);
    cr_assert_eq(ad_tensor_dim(out, 1), 2);
    cr_assert_eq(ad_tensor_dim(out, 2), 3);
    ad_tensor *s = ad_add(t, ad_full(t, AD_F64, ad_shape0(), 0.5), ta);
    assert_values(s, (double[]){1.5, 2.5, 3.5, 4.5, 5.5, 6.5}, 6, 0);
    ad_tape_free(t);
}

/*
 * Operands of the output's size take a flat loop, a bias row added to a
 * matrix a row loop, everything else the broadcasting loop; all must agree.
 * x op s with s stretched (a row [1,3] as either operand, a column [2,1])
 * against x op s' with s' the stretched copy built with concat (flat loop):
 * values and x's gradient agree to the last bit, s's gradient (a sum over
 * the stretched axis either way) within rounding, in f32 and f64. A leading
 * axis of 1 ([1,2,3] op [2,3]) keeps the output's shape.
 */
Test(ops_math, fast_paths_match_broadcasting)
{
    ad_tensor *(*ops[4])(ad_tape *, ad_tensor *, ad_tensor *) = {ad_add, ad_sub, ad_mul, ad_div};
    double x[6] = {0.3, -1.2, 2.5, 0.7, -0.4, 1.9}, s[3] = {1.5, -0.8, 2.2};
    double w[6] = {0.9, -1.1, 0.4, 2.0, -0.6, 1.3};
    /* case 0: x op row; 1: row op x; 2: x op column */
    for (int c = 0; c < 3; c++)
        for (int dt = 0; dt < 2; dt++)
            for (int k = 0; k < 4; k++) {
                ad_dtype d = dt ? AD_F64 : AD_F32;
                ad_shape ss = c == 2 ? ad_shape2(2, 1) : ad_shape2(1, 3);
                size_t sn = c == 2 ? 2 : 3;
                ad_tape *tp[2] = {ad_tape_new(NULL), ad_tape_new(NULL)};
                ad_tensor *xv[2], *sv[2], *y[2];
                for (int path = 0; path < 2; path++) { /* a tape each: gradients last until the next backward */
                    ad_tape *t = tp[path];
                    /* variables from f64 values converted to the dtype */
                    xv[path] = ad_variable(t, d, ad_shape2(2, 3), ad_tensor_data(ad_from_f64(t, d, ad_shape2(2, 3), x)));
                    sv[path] = ad_variable(t, d, ss, ad_tensor_data(ad_from_f64(t, d, ss, s)));
                    ad_tensor *copies[3] = {sv[path], sv[path], sv[path]};
                    ad_tensor *st = !path ? sv[path] : c == 2 ? ad_concat(t, copies, 3, 1) : ad_concat(t, copies, 2, 0);
                    y[path] = c == 1 ? ops[k](t, st, xv[path]) : ops[k](t, xv[path], st);
                    ad_tensor *loss = ad_sum(t, ad_mul(t, y[path], ad_from_f64(t, d, ad_shape2(2, 3), w)), AD_AXIS_ALL, 0);
                    cr_assert_eq(ad_backward(t, loss, NULL), AD_OK, "%s", ad_tape_message(t));
                }
                for (size_t i = 0; i < 6; i++) {
                    cr_assert_eq(ad_tensor_get(y[0], i), ad_tensor_get(y[1], i), "case %d op %d dtype %d y[%zu]", c, k, dt, i);
                    cr_assert_eq(ad_tensor_grad_get(xv[0], i), ad_tensor_grad_get(xv[1], i), "case %d op %d dtype %d dx[%zu]", c, k, dt, i);
                }
                /* the stretched operand's gradient is a sum, which a compiler may fuse
                 * into multiply-adds in one loop and not in the other (clang does) */
                double eps = dt ? DBL_EPSILON : FLT_EPSILON;
                for (size_t i = 0; i < sn; i++) {
                    double g0 = ad_tensor_grad_get(sv[0], i), g1 = ad_tensor_grad_get(sv[1], i);
                    cr_assert(fabs(g0 - g1) <= 4 * eps * (fabs(g0) + fabs(g1)), "case %d op %d dtype %d ds[%zu]: %.17g vs %.17g",
                              c, k, dt, i, g0, g1);
                }
                ad_tape *t = tp[0];
                ad_tensor *lead = ops[k](t, ad_from_f64(t, d, ad_shape3(1, 2, 3), x), ad_from_f64(t, d, ad_shape2(2, 3), w));
                cr_assert_eq(ad_tensor_rank(lead), 3);
                cr_assert_eq(ad_tensor_dim(lead, 0), 1);
                for (size_t i = 0; i < 6; i++) {
                    ad_tensor *one = ops[k](t, ad_full(t, d, ad_shape0(), x[i]), ad_full(t, d, ad_shape0(), w[i]));
                    cr_assert_eq(ad_tensor_get(lead, i), ad_tensor_get(one, 0));
                }
                ad_tape_free(tp[0]);
                ad_tape_free(tp[1]);
            }
}

/*
 * Small products take plain loops (row updates, or dot products for a
 * transposed B, with lengths up to 4 unrolled) instead of the blocked kernel; both sum
 * over p in increasing order, the kernel with fused multiply-adds, so they
 * agree within rounding. Forward and both gradients, every transpose case.
 */
Test(ops_math, small_matmul_matches_the_kernel)
{
    size_t shapes[][3] = {{1, 3, 3}, {3, 3, 3}, {3, 1, 3}, {2, 5, 7}, {6, 6, 7}, {1, 1, 1},
                          {2, 2, 4}, {4, 4, 2}, {3, 4, 1}};
    for (size_t sh = 0; sh < sizeof shapes / sizeof shapes[0]; sh++)
        for (int dt = 0; dt < 2; dt++)
            for (int f = 0; f < 4; f++) {
                size_t m = shapes[sh][0], n = shapes[sh][1], k = shapes[sh][2];
                int ta = f & 1, tb = (f >> 1) & 1;
                ad_dtype d = dt ? AD_F64 : AD_F32;
                double a[64], b[64], w[64], want[64], ga[64], gb[64];
                ts_fill_uniform(a, m * k, 40 + sh, -1, 1);
                ts_fill_uniform(b, k * n, 50 + sh, -1, 1);
                ts_fill_uniform(w, m * n, 60 + sh, -1, 1);
                ad_tape *t = ad_tape_new(NULL);
                ad_shape sa = ta ? ad_shape2((int64_t)k, (int64_t)m) : ad_shape2((int64_t)m, (int64_t)k);
                ad_shape sb = tb ? ad_shape2((int64_t)n, (int64_t)k) : ad_shape2((int64_t)k, (int64_t)n);
                ad_tensor *av = ad_variable(t, d, sa, ad_tensor_data(ad_from_f64(t, d, sa, a)));
                ad_tensor *bv = ad_variable(t, d, sb, ad_tensor_data(ad_from_f64(t, d, sb, b)));
                ad_tensor *wv = ad_from_f64(t, d, ad_shape2((int64_t)m, (int64_t)n), w);
                ad_tensor *y = ad_matmul(t, av, bv, (ta ? AD_TRANS_A : 0) | (tb ? AD_TRANS_B : 0));
                /* addmm's small loops start each row from the bias; the kernel adds onto filled rows */
                double bias[64], want_b[64];
                ts_fill_uniform(bias, n, 90 + sh, -1, 1);
                ad_tensor *bt = ad_from_f64(t, d, ad_shape1((int64_t)n), bias);
                ad_tensor *yb = ad_addmm(t, bt, av, bv, (ta ? AD_TRANS_A : 0) | (tb ? AD_TRANS_B : 0));
                cr_assert_not_null(yb, "%s", ad_tape_message(t));
                cr_assert_eq(ad_backward(t, ad_sum(t, ad_mul(t, y, wv), AD_AXIS_ALL, 0), NULL), AD_OK);
                /* the kernel on the rounded values: Y = op(A) op(B), dA and dB from W */
                for (size_t i = 0; i < m * k; i++) a[i] = ad_tensor_get(av, i), ga[i] = 0;
                for (size_t i = 0; i < k * n; i++) b[i] = ad_tensor_get(bv, i), gb[i] = 0;
                for (size_t i = 0; i < m * n; i++) w[i] = ad_tensor_get(wv, i);
                ad__gemm_f64(ta, tb, m, n, k, a, b, want, 0);
                for (size_t i = 0; i < m * n; i++) want_b[i] = ad_tensor_get(bt, i % n);
                ad__gemm_f64(ta, tb, m, n, k, a, b, want_b, 1);
                if (!ta) ad__gemm_f64(0, !tb, m, k, n, w, b, ga, 1);
                else ad__gemm_f64(tb, 1, k, m, n, b, w, ga, 1);
                if (!tb) ad__gemm_f64(!ta, 0, k, n, m, a, w, gb, 1);
                else ad__gemm_f64(1, ta, n, k, m, w, a, gb, 1);
                double tol = dt ? 1e-14 : 1e-5;
                for (size_t i = 0; i < m * n; i++)
                    cr_assert(fabs(ad_tensor_get(y, i) - want[i]) <= tol, "%zux%zux%zu ta%d tb%d dtype %d y[%zu]", m, n, k, ta, tb, dt, i);
                for (size_t i = 0; i < m * n; i++)
                    cr_assert(fabs(ad_tensor_get(yb, i) - want_b[i]) <= tol, "%zux%zux%zu ta%d tb%d dtype %d addmm[%zu]", m, n, k, ta, tb, dt, i);
                for (size_t i = 0; i < m * k; i++)
                    cr_assert(fabs(ad_tensor_grad_get(av, i) - ga[i]) <= tol, "%zux%zux%zu ta%d tb%d dtype %d da[%zu]", m, n, k, ta, tb, dt, i);
                for (size_t i = 0; i < k * n; i++)
                    cr_assert(fabs(ad_tensor_grad_get(bv, i) - gb[i]) <= tol, "%zux%zux%zu ta%d tb%d dtype %d db[%zu]", m, n, k, ta, tb, dt, i);
                ad_tape_free(t);
            }
}

/* Reference for the small loops: C[i,j] = start + sum over p in increasing
 * order of op(A)[i,p] op(B)[p,j], in the dtype T (start 0 when none). */
#define DEFINE_REF_PRODUCT(T)                                                                     \
    static void ref_product_##T(int ta, int tb, size_t m, size_t n, size_t k, const T *a,          \
                                const T *b, const T *bias, T *c)                                  \
    {                                                                                             \
        for (size_t i = 0; i < m; i++)                                                            \
            for (size_t j = 0; j < n; j++) {                                                      \
                T s = bias ? bias[j] : 0;                                                         \
                for (size_t p = 0; p < k; p++) {                                                  \
                    T x = ta ? a[p * m + i] : a[i * k + p], y = tb ? b[j * k + p] : b[p * n + j]; \
                    s += x * y;                                                                   \
                }                                                                                 \
                c[i * n + j] = s;                                                                 \
            }                                                                                     \
    }
DEFINE_REF_PRODUCT(float)
DEFINE_REF_PRODUCT(double)

/* The product of ta/tb-stored operands through the reference, in dtype d. */
static void ref_product(ad_dtype d, int ta, int tb, size_t m, size_t n, size_t k, ad_tensor *a,
                        ad_tensor *b, ad_tensor *bias, double *out)
{
    if (d == AD_F32) {
        float c[64];
        ref_product_float(ta, tb, m, n, k, ad_tensor_data(a), ad_tensor_data(b), bias ? ad_tensor_data(bias) : NULL, c);
        for (size_t i = 0; i < m * n; i++) out[i] = c[i];
    } else {
        ref_product_double(ta, tb, m, n, k, ad_tensor_data(a), ad_tensor_data(b), bias ? ad_tensor_data(bias) : NULL,
                           out);
    }
}

/*
 * Every small form (each n and k up to 5, so the fixed-size functions and the
 * general loops, rows of 1 to 5, both transposes, both dtypes) gives exactly
 * the start value plus the terms in increasing p: forward, addmm and both
 * gradients equal the reference loop bit for bit.
 */
Test(ops_math, small_matmul_forms_sum_in_order)
{
    for (size_t m = 1; m <= 5; m++)
        for (size_t n = 1; n <= 5; n++)
            for (size_t k = 1; k <= 5; k++)
                for (int f = 0; f < 8; f++) {
                    int ta = f & 1, tb = (f >> 1) & 1;
                    ad_dtype d = (f >> 2) ? AD_F64 : AD_F32;
                    double a[64], b[64], w[64], bias[8], got[64], want[64];
                    size_t seed = 100 + m * 100 + n * 10 + k;
                    ts_fill_uniform(a, m * k, seed, -1, 1);
                    ts_fill_uniform(b, k * n, seed + 1, -1, 1);
                    ts_fill_uniform(w, m * n, seed + 2, -1, 1);
                    ts_fill_uniform(bias, n, seed + 3, -1, 1);
                    ad_tape *t = ad_tape_new(NULL);
                    ad_shape sa = ta ? ad_shape2((int64_t)k, (int64_t)m) : ad_shape2((int64_t)m, (int64_t)k);
                    ad_shape sb = tb ? ad_shape2((int64_t)n, (int64_t)k) : ad_shape2((int64_t)k, (int64_t)n);
                    ad_shape sc = ad_shape2((int64_t)m, (int64_t)n);
                    ad_tensor *av = ad_variable(t, d, sa, ad_tensor_data(ad_from_f64(t, d, sa, a)));
                    ad_tensor *bv = ad_variable(t, d, sb, ad_tensor_data(ad_from_f64(t, d, sb, b)));
                    ad_tensor *wv = ad_from_f64(t, d, sc, w);
                    ad_tensor *bt = ad_from_f64(t, d, ad_shape1((int64_t)n), bias);
                    int flags = (ta ? AD_TRANS_A : 0) | (tb ? AD_TRANS_B : 0);
                    ad_tensor *y = ad_matmul(t, av, bv, flags), *yb = ad_addmm(t, bt, av, bv, flags);
                    cr_assert_not_null(yb, "%s", ad_tape_message(t));
                    cr_assert_eq(ad_backward(t, ad_sum(t, ad_mul(t, y, wv), AD_AXIS_ALL, 0), NULL), AD_OK);
                    ref_product(d, ta, tb, m, n, k, av, bv, NULL, want);
                    for (size_t i = 0; i < m * n; i++)
                        cr_assert(ad_tensor_get(y, i) == want[i], "%zux%zux%zu f%d y[%zu]", m, n, k, f, i);
                    ref_product(d, ta, tb, m, n, k, av, bv, bt, want);
                    for (size_t i = 0; i < m * n; i++)
                        cr_assert(ad_tensor_get(yb, i) == want[i], "%zux%zux%zu f%d addmm[%zu]", m, n, k, f, i);
                    /* dA = W op(B)^T (stored transposed when ta), dB = op(A)^T W (likewise) */
                    if (!ta) ref_product(d, 0, !tb, m, k, n, wv, bv, NULL, want);
                    else ref_product(d, tb, 1, k, m, n, bv, wv, NULL, want);
                    for (size_t i = 0; i < m * k; i++) got[i] = ad_tensor_grad_get(av, i);
                    for (size_t i = 0; i < m * k; i++)
                        cr_assert(got[i] == want[i], "%zux%zux%zu f%d da[%zu]", m, n, k, f, i);
                    if (!tb) ref_product(d, !ta, 0, k, n, m, av, wv, NULL, want);
                    else ref_product(d, 1, ta, n, k, m, wv, av, NULL, want);
                    for (size_t i = 0; i < k * n; i++) got[i] = ad_tensor_grad_get(bv, i);
                    for (size_t i = 0; i < k * n; i++)
                        cr_assert(got[i] == want[i], "%zux%zux%zu f%d db[%zu]", m, n, k, f, i);
                    ad_tape_free(t);
                }
}

/*
 * The f32 tanh op runs the vectorised kernel (kernels_act.c): over a sweep of
 * floats of every magnitude it is within one ulp of the correctly rounded
 * value (float)tanh((double)x), and equal to it for nearly all (99.1% in
 * gcc's build), with the special values kept.
 */
Test(ops_math, f32_tanh_is_within_one_ulp)
{
    enum { N = 1 << 17 };
    static float xs[N];
    size_t n = 0;
    for (uint32_t u = 0; u < 0x7f800000u && n + 2 <= N; u += 0x7f800000u / (N / 2) + 1) {
        float f;
        memcpy(&f, &u, sizeof f);
        xs[n++] = f;
        xs[n++] = -f;
    }
    ad_tape *t = ad_tape_new(NULL);
    const float *y = ad_tensor_f32(ad_tanh(t, ad_from_data(t, AD_F32, ad_shape1((int64_t)n), xs)));
    cr_assert_not_null(y);
    size_t exact = 0;
    for (size_t i = 0; i < n; i++) {
        float want = (float)tanh((double)xs[i]);
        exact += y[i] == want && signbit(y[i]) == signbit(want);
        cr_assert(fabsf(y[i] - want) <= fabsf(nextafterf(want, 0.0f) - want), "tanh(%a) = %a, want %a", xs[i], y[i], want);
    }
    cr_assert_geq(exact, n - n / 50, "%zu of %zu correctly rounded", exact, n);
    float sp[7] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, 1e-45f, 0x1p-6f};
    const float *ys = ad_tensor_f32(ad_tanh(t, ad_from_data(t, AD_F32, ad_shape1(7), sp)));
    cr_assert(ys[0] == 0 && !signbit(ys[0]) && ys[1] == 0 && signbit(ys[1]));
    cr_assert(ys[2] == 1.0f && ys[3] == -1.0f && isnan(ys[4]) && ys[5] == 1e-45f);
    cr_assert(fabsf(ys[6] - (float)tanh(0x1p-6)) <= FLT_EPSILON * 0x1p-6f);
    ad_tape_free(t);
}

Test(ops_math, unary_values)
{
    ad_tape *t = ad_tape_new(NULL);
    double x[4] = {-2, -0.5, 0, 1.5};
    for (int dt = 0; dt < 2; dt++) {
        ad_dtype d = dt ? AD_F64 : AD_F32;
        double tol = dt ? 1e-15 : 1e-6;
        ad_tensor *v = ad_from_f64(t, d, ad_shape1(4), x);
        assert_values(ad_neg(t, v), (double[]){2, 0.5, 0, -1.5}, 4, 0);
        assert_values(ad_abs(t, v), (double[]){2, 0.5, 0, 1.5}, 4, 0);
        assert_values(ad_relu(t, v), (double[]){0, 0, 0, 1.5}, 4, 0);
        assert_values(ad_tanh(t, v), (double[]){tanh(-2), tanh(-0.5), 0, tanh(1.5)}, 4, tol);
        assert_values(ad_exp(t, v), (double[]){exp(-2), exp(-0.5), 1, exp(1.5)}, 4, tol * 5);
        assert_values(ad_sigmoid(t, v),
                      (double[]){1 / (1 + exp(2)), 1 / (1 + exp(0.5)), 0.5, 1 / (1 + exp(-1.5))}, 4,
                      tol);
        assert_values(ad_add_scalar(t, v, 1), (double[]){-1, 0.5, 1, 2.5}, 4, 0);
        assert_values(ad_mul_scalar(t, v, 2), (double[]){-4, -1, 0, 3}, 4, 0);
        ad_tensor *p = ad_from_f64(t, d, ad_shape1(3), (double[]){1, 4, 9});
        assert_values(ad_sqrt(t, p), (double[]){1, 2, 3}, 3, 0);
        assert_values(ad_log(t, p), (double[]){0, log(4), log(9)}, 3, tol * 10);
        assert_values(ad_pow_scalar(t, p, 1.5), (double[]){1, 8, 27}, 3, tol * 30);
        /* the two-branch sigmoid never overflows */
        ad_tensor *big = ad_from_f64(t, d, ad_shape1(2), (double[]){-800, 800});
        assert_values(ad_sigmoid(t, big), (double[]){0, 1}, 2, 0);
    }
    cr_assert_eq(ad_tape_status(t), AD_OK, "%s", ad_tape_message(t));
    ad_tape_free(t);
}

/*
 * softplus in both dtypes: log(1 + e^x) at ordinary x, and its stable form at
 * the extremes: x itself for large x (where e^x overflows), e^x for very
 * negative x (where 1 + e^x rounds to 1), log 2 at 0; its gradient is
 * sigmoid(x) there too.
 */
Test(ops_math, softplus_values)
{
    ad_tape *t = ad_tape_new(NULL);
    double x[7] = {-2, -0.5, 0, 1.5, 800, -800, -40};
    for (int dt = 0; dt < 2; dt++) {
        ad_dtype d = dt ? AD_F64 : AD_F32;
        double tol = dt ? 1e-15 : 1e-6;
        ad_tensor *v = ad_variable(t, d, ad_shape1(5), ad_tensor_data(ad_from_f64(t, d, ad_shape1(5), x)));
        ad_tensor *y = ad_softplus(t, v);
        assert_values(y, (double[]){log1p(exp(-2)), log1p(exp(-0.5)), log(2), log1p(exp(1.5)), 800}, 5, tol);
        cr_assert_eq(ad_backward(t, ad_sum(t, y, AD_AXIS_ALL, 0), NULL), AD_OK, "%s", ad_tape_message(t));
        double s[5] = {1 / (1 + exp(2)), 1 / (1 + exp(0.5)), 0.5, 1 / (1 + exp(-1.5)), 1};
        for (size_t i = 0; i < 5; i++)
            cr_assert(fabs(ad_tensor_grad_get(v, i) - s[i]) <= tol, "dtype %d grad %zu: %.17g, want %.17g", dt, i,
                      ad_tensor_grad_get(v, i), s[i]);
        /* the tail: relative accuracy, where log(1 + e^x) would give 0 */
        ad_tensor *tail = ad_softplus(t, ad_from_f64(t, d, ad_shape1(2), x + 5));
        cr_assert_eq(ad_tensor_get(tail, 0), 0.0, "softplus(-800) underflows to 0, never NaN");
        double want = dt ? exp(-40.0) : (double)expf(-40.0f);
        cr_assert(fabs(ad_tensor_get(tail, 1) - want) <= 4 * (dt ? DBL_EPSILON : FLT_EPSILON) * want,
                  "dtype %d softplus(-40) = %.17g, want %.17g", dt, ad_tensor_get(tail, 1), want);
    }
    cr_assert_eq(ad_tape_status(t), AD_OK, "%s", ad_tape_message(t));
    ad_tape_free(t);
}

Test(ops_math, reduction_values)
{
    ad_tape *t = ad_tape_new(NULL);
    double a[6] = {1, 2, 3, 4, 5, 6};
    ad_tensor *x = ad_from_data(t, AD_F64, ad_shape2(2, 3), a);
    assert_values(ad_sum(t, x, 0, 0), (double[]){5, 7, 9}, 3, 0);
    assert_values(ad_sum(t, x, -1, 0), (double[]){6, 15}, 2, 0);
    assert_values(ad_mean(t, x, 1, 1), (double[]){2, 5}, 2, 0);
    ad_tensor *all = ad_sum(t, x, AD_AXIS_ALL, 0);
    cr_assert_eq(ad_tensor_rank(all), 0);
    cr_assert_float_eq(ad_tensor_item(all), 21, 0);
    ad_tensor *allk = ad_mean(t, x, AD_AXIS_ALL, 1);
    cr_assert_eq(ad_tensor_rank(allk), 2);
    cr_assert_float_eq(ad_tensor_item(allk), 3.5, 0);
    ad_tensor *sm = ad_softmax(t, x, 1);
    double e = exp(1) + exp(2) + exp(3);
    assert_values(sm, (double[]){exp(1) / e, exp(2) / e, exp(3) / e, exp(1) / e, exp(2) / e, exp(3) / e},
                  6, 1e-15);
    /* max-shifted: huge logits stay finite */
    ad_tensor *big = ad_from_f64(t, AD_F32, ad_shape2(1, 2), (double[]){1000, 0});
    assert_values(ad_log_softmax(t, big, 1), (double[]){0, -1000}, 2, 1e-3);
    assert_values(ad_softmax(t, big, 1), (double[]){1, 0}, 2, 0);
    cr_assert_eq(ad_tape_status(t), AD_OK);
    ad_tape_free(t);
}

Test(ops_math, bad_inputs)
{
    long before = ts_live_allocs();
    ad_tape *t = ad_tape_new(NULL);
    ad_tensor *a = ad_ones(t, AD_F64, ad_shape2(2, 3));
    ad_tensor *b = ad_ones(t, AD_F64, ad_shape1(4));
    cr_assert_null(ad_add(t, a, b));
    cr_assert_eq(ad_tape_status(t), AD_ERR_SHAPE);
    cr_assert_str_eq(ad_tape_message(t), "add: [2,3] and [4]: shapes do not broadcast");
    ad_tape_reset(t);
    a = ad_ones(t, AD_F64, ad_shape2(2, 3));
    b = ad_ones(t, AD_F32, ad_shape2(2, 3));
    cr_assert_null(ad_mul(t, a, b));
    cr_assert_eq(ad_tape_status(t), AD_ERR_DTYPE);
    ad_tape_reset(t);
    cr_assert_null(ad_tanh(t, NULL));
    cr_assert_eq(ad_tape_status(t), AD_ERR_NULL);
    cr_assert(strstr(ad_tape_message(t), "tanh") != NULL);
    ad_tape_reset(t);
    a = ad_ones(t, AD_F64, ad_shape2(2, 3));
    cr_assert_null(ad_sum(t, a, 2, 0));
    cr_assert_eq(ad_tape_status(t), AD_ERR_ARG);
    cr_assert(strstr(ad_tape_message(t), "axis 2") != NULL, "%s", ad_tape_message(t));
    ad_tape_reset(t);
    a = ad_ones(t, AD_F64, ad_shape2(2, 3));
    cr_assert_null(ad_softmax(t, a, -3));
    cr_assert_eq(ad_tape_status(t), AD_ERR_ARG);
    ad_tape_reset(t);
    a = ad_ones(t, AD_F64, ad_shape2(2, 3));
    cr_assert_null(ad_softmax(t, a, AD_AXIS_ALL));
    cr_assert_eq(ad_tape_status(t), AD_ERR_ARG);
    ad_tape_reset(t);
    cr_assert_null(ad_layer_norm(t, ad_ones(t, AD_F64, ad_shape0()), 1e-5));
    cr_assert_eq(ad_tape_status(t), AD_ERR_SHAPE);
    cr_assert(strstr(ad_tape_message(t), "layer_norm: [] has no last axis"), "%s", ad_tape_message(t));
    ad_tape_reset(t);
    cr_assert_null(ad_layer_norm(t, ad_ones(t, AD_F64, ad_shape2(3, 0)), 1e-5));
    cr_assert_eq(ad_tape_status(t), AD_ERR_SHAPE);
    for (int i = 0; i < 3; i++) {
        ad_tape_reset(t);
        double eps[3] = {0.0, -1e-5, NAN};
        cr_assert_null(ad_layer_norm(t, ad_ones(t, AD_F64, ad_shape2(2, 3)), eps[i]));
        cr_assert_eq(ad_tape_status(t), AD_ERR_ARG);
        cr_assert(strstr(ad_tape_message(t), "must be positive"), "%s", ad_tape_message(t));
    }
    ad_tape_reset(t);
    cr_assert_null(ad_layer_norm(t, NULL, 1e-5));
    cr_assert_eq(ad_tape_status(t), AD_ERR_NULL);
    ad_tape_reset(t);
    a = ad_ones(t, AD_F64, ad_shape2(0, 3));
    cr_assert_null(ad_mean(t, a, 0, 0));
    cr_assert_eq(ad_tape_status(t), AD_ERR_EMPTY);
    ad_tape_reset(t);
    a = ad_ones(t, AD_F64, ad_shape2(0, 3));
    cr_assert_not_null(ad_sum(t, a, 0, 0), "the sum of nothing is 0");
    ad_tape_free(t);
    cr_assert_eq(ts_live_allocs(), before);
}
