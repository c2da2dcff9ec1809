/*
 * test_ops_shape.c - reshape, transpose/permute, concat, slice, split, row
 * gather, where and dropout: values by hand, an f64 gradient check of each
 * over several shapes and axes, and their bad inputs.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <string.h>

#include "testsupport.h"

typedef struct gc_row gc_row;

typedef struct gc_ctx {
    const gc_row *row;
    ad_param *p[3];
    int n;
} gc_ctx;

/*
 * One gradcheck case: the graph it checks, the inputs it takes (a second
 * one has the first's shape, one longer along the axis when `longer`),
 * and the arguments of its op. Criterion cannot pass pointers to a case, so
 * the cases run by row number (ts_row_numbers).
 */
struct gc_row {
    const char *name;
    ad_tensor *(*graph)(ad_tape *t, const gc_row *r, gc_ctx *c, ad_tensor *a);
    int inputs;
    int longer;
    int rank;
    int64_t dim[4];
    int axis; /* axis of concat/slice/split/transpose; second axis below */
    int axis2;
    int64_t start, len; /* slice */
};

static ad_shape shape_of(int rank, const int64_t *d)
{
    ad_shape s = {rank, {d[0], d[1], d[2], d[3]}};
    return s;
}

/* Each graph ends in a multiplication by the input squared so that pure data
 * movement is checked through a non-linear function as well. */
static ad_tensor *g_reshape(ad_tape *t, const gc_row *r, gc_ctx *c, ad_tensor *a)
{
    (void)r, (void)c;
    return ad_reshape(t, ad_mul(t, a, a), ad_shape2(-1, 2));
}
static ad_tensor *g_transpose(ad_tape *t, const gc_row *r, gc_ctx *c, ad_tensor *a)
{
    (void)c;
    return ad_transpose(t, a, r->axis, r->axis2);
}
static ad_tensor *g_permute(ad_tape *t, const gc_row *r, gc_ctx *c, ad_tensor *a)
{
    (void)c;
    int perm[4] = {2, 0, 1, 3};
    if (r->rank == 3) perm[0] = 1, perm[1] = 2, perm[2] = 0;
    return ad_permute(t, ad_tanh(t, a), perm);
}
static ad_tensor *g_concat2(ad_tape *t, const gc_row *r, gc_ctx *c, ad_tensor *a)
{
    ad_tensor *xs[2] = {a, ad_use(t, c->p[1])};
    return ad_concat(t, xs, 2, r->axis);
}
static ad_tensor *g_concat3(ad_tape *t, const gc_row *r, gc_ctx *c, ad_tensor *a)
{
    ad_tensor *xs[3] = {ad_tanh(t, a), ad_use(t, c->p[1]), a};
    return ad_concat(t, xs, 3, r->axis);
}
static ad_tensor *g_slice(ad_tape *t, const gc_row *r, gc_ctx *c, ad_tensor *a)
{
    (void)c;
    return ad_slice(t, ad_mul(t, a, a), r->axis, r->start, r->len);
}
static ad_tensor *g_split(ad_tape *t, const gc_row *r, gc_ctx *c, ad_tensor *a)
{
    (void)c;
    int64_t sizes[2] = {r->start, r->len};
    ad_tensor *parts[2];
    if (ad_split(t, a, r->axis, 2, sizes, parts) != AD_OK) return NULL;
    return ad_concat(t, (ad_tensor *[]){ad_tanh(t, parts[1]), parts[0]}, 2, r->axis);
}
static ad_tensor *g_gather(ad_tape *t, const gc_row *r, gc_ctx *c, ad_tensor *a)
{
    (void)r, (void)c;
    int64_t idx[5] = {2, 0, 2, 1, 2};
    return ad_tanh(t, ad_gather_rows(t, a, idx, 5));
}
static ad_tensor *g_where(ad_tape *t, const gc_row *r, gc_ctx *c, ad_tensor *a)
{
    (void)r;
    double m[3] = {1, 0, 1};
    ad_tensor *cond = ad_from_data(t, AD_F64, ad_shape1(3), m);
    return ad_where(t, cond, ad_tanh(t, a), ad_use(t, c->p[1]));
}
static ad_tensor *g_dropout_train(ad_tape *t, const gc_row *r, gc_ctx *c, ad_tensor *a)
{
    (void)r, (void)c;
    ad_rng rng;
    ad_rng_seed(&rng, 5, 1); /* same mask on every evaluation */
    return ad_dropout(t, ad_mul(t, a, a), 0.4, 1, &rng);
}
static ad_tensor *g_dropout_eval(ad_tape *t, const gc_row *r, gc_ctx *c, ad_tensor *a)
{
    (void)r, (void)c;
    return ad_dropout(t, a, 0.4, 0, NULL);
}

static ad_tensor *graph(ad_tape *t, void *vctx)
{
    gc_ctx *c = vctx;
    return c->row->graph(t, c->row, c, ad_use(t, c->p[0]));
}

/* R: one input; R2: a second of the same shape; RL: a second one longer along the axis */
#define R(op, rank, dims, axis, axis2, start, len) {#op, g_##op, 1, 0, rank, {dims}, axis, axis2, start, len}
#define R2(op, rank, dims) {#op, g_##op, 2, 0, rank, {dims}, 0, 0, 0, 0}
#define RL(op, rank, dims, axis) {#op, g_##op, 2, 1, rank, {dims}, axis, 0, 0, 0}
#define D(...) __VA_ARGS__

static const gc_row rows[] = {
    R(reshape, 2, D(3, 4), 0, 0, 0, 0), R(reshape, 3, D(2, 3, 2), 0, 0, 0, 0),
    R(transpose, 2, D(2, 3), 0, 1, 0, 0), R(transpose, 3, D(2, 3, 4), -1, 0, 0, 0),
    R(transpose, 4, D(2, 1, 3, 2), 1, 2, 0, 0), R(permute, 3, D(2, 3, 4), 0, 0, 0, 0),
    R(permute, 4, D(2, 3, 1, 2), 0, 0, 0, 0),
    RL(concat2, 2, D(2, 3), 0), RL(concat2, 2, D(2, 3), 1),
    RL(concat2, 3, D(2, 3, 2), -1), RL(concat3, 2, D(3, 2), 1),
    RL(concat3, 3, D(2, 2, 3), 1),
    R(slice, 2, D(4, 3), 0, 0, 1, 2), R(slice, 2, D(4, 3), 1, 0, 2, 1),
    R(slice, 3, D(2, 5, 3), -2, 0, 0, 5), R(slice, 3, D(2, 5, 3), 1, 0, 3, 2),
    R(split, 2, D(4, 3), 0, 0, 1, 3), R(split, 3, D(2, 5, 3), 1, 0, 2, 3),
    R(gather, 2, D(3, 4), 0, 0, 0, 0), R2(where, 2, D(2, 3)),
    R(dropout_train, 2, D(4, 5), 0, 0, 0, 0), R(dropout_eval, 1, D(6), 0, 0, 0, 0),
};

/* The second input has the first's shape, one longer along the axis when
 * the row says so (concat). */
static ad_shape second_shape(const gc_row *r)
{
    ad_shape s = shape_of(r->rank, r->dim);
    if (r->longer) {
        int ax = r->axis < 0 ? r->axis + r->rank : r->axis;
        s.dim[ax] += 1;
    }
    return s;
}

ParameterizedTestParameters(ops_shape, gradcheck)
{
    return ts_row_numbers(sizeof rows / sizeof rows[0]);
}

ParameterizedTest(size_t *i, ops_shape, gradcheck)
{
    const gc_row *row = &rows[*i];
    long before = ts_live_allocs();
    gc_ctx c = {row, {NULL, NULL, NULL}, 1};
    c.p[0] = ad_param_new("a", AD_F64, shape_of(row->rank, row->dim), NULL);
    ts_fill_uniform(ad_tensor_f64(ad_param_value(c.p[0])),
                    ad_tensor_numel(ad_param_value(c.p[0])), 21, -2, 2);
    if (row->inputs == 2) {
        c.p[1] = ad_param_new("b", AD_F64, second_shape(row), NULL);
        ts_fill_uniform(ad_tensor_f64(ad_param_value(c.p[1])),
                        ad_tensor_numel(ad_param_value(c.p[1])), 22, -2, 2);
        c.n = 2;
    }
    ad_gradcheck_report rep;
    ad_error err;
    ad_status st = ad_gradcheck(graph, &c, c.p, (size_t)c.n, NULL, &rep, &err);
    if (st != AD_OK) ad_gradcheck_print(&rep, stderr);
    cr_assert_eq(st, AD_OK, "row %zu (%s): %s", *i, row->name, err.msg);
    /* The exact check: backward against forward mode, to 1e-12. */
    st = ad_gradcheck_exact(graph, &c, c.p, (size_t)c.n, NULL, &rep, &err);
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

static ad_tensor *iota(int rank, int64_t d0, int64_t d1, int64_t d2)
{
    double v[64];
    for (int i = 0; i < 64; i++) v[i] = i;
    ad_shape s = rank == 1 ? ad_shape1(d0) : rank == 2 ? ad_shape2(d0, d1) : ad_shape3(d0, d1, d2);
    return ad_from_data(tape, AD_F64, s, v);
}

/* iota as a variable (receives a gradient). */
static ad_tensor *viota(int64_t d0, int64_t d1)
{
    double v[64];
    for (int i = 0; i < 64; i++) v[i] = i;
    return ad_variable(tape, AD_F64, ad_shape2(d0, d1), v);
}

static void expect(ad_tensor *y, const double *want, size_t n)
{
    cr_assert_not_null(y, "%s", ad_tape_message(tape));
    cr_assert_eq(ad_tensor_numel(y), n);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(ad_tensor_f64(y)[i], want[i], "element %zu: %g, want %g", i,
                     ad_tensor_f64(y)[i], want[i]);
}

Test(ops_shape, transpose_values, .init = setup, .fini = teardown)
{
    ad_tensor *y = ad_transpose(tape, iota(2, 2, 3, 0), 0, 1);
    expect(y, (double[]){0, 3, 1, 4, 2, 5}, 6);
    cr_assert_eq(ad_tensor_dim(y, 0), 3);
    ad_tensor *z = ad_permute(tape, iota(3, 2, 3, 2), (int[]){2, 0, 1});
    /* z[k, i, j] = x[i, j, k] = 6i + 2j + k */
    cr_assert_eq(ad_tensor_dim(z, 0), 2);
    cr_assert_eq(ad_tensor_dim(z, 2), 3);
    expect(z, (double[]){0, 2, 4, 6, 8, 10, 1, 3, 5, 7, 9, 11}, 12);
}

Test(ops_shape, concat_slice_split_values, .init = setup, .fini = teardown)
{
    ad_tensor *a = iota(2, 2, 2, 0);
    ad_tensor *b = ad_add_scalar(tape, iota(2, 2, 1, 0), 10);
    expect(ad_concat(tape, (ad_tensor *[]){a, b}, 2, 1), (double[]){0, 1, 10, 2, 3, 11}, 6);
    expect(ad_slice(tape, iota(2, 3, 3, 0), 1, 1, 2), (double[]){1, 2, 4, 5, 7, 8}, 6);
    ad_tensor *parts[3];
    cr_assert_eq(ad_split(tape, iota(1, 6, 0, 0), 0, 3, (int64_t[]){1, 3, 2}, parts), AD_OK);
    expect(parts[0], (double[]){0}, 1);
    expect(parts[1], (double[]){1, 2, 3}, 3);
    expect(parts[2], (double[]){4, 5}, 2);
    expect(ad_reshape(tape, iota(2, 2, 3, 0), ad_shape2(3, -1)), (double[]){0, 1, 2, 3, 4, 5}, 6);
}

/* A slice of one contiguous block (leading axes of size 1) shares its input's
 * data instead of copying; other slices copy. Gradients are the same. */
Test(ops_shape, contiguous_slices_share_data, .init = setup, .fini = teardown)
{
    ad_tensor *x = iota(2, 4, 3, 0);
    ad_tensor *block = ad_slice(tape, x, 0, 1, 2);
    cr_assert_eq(ad_tensor_f64(block), ad_tensor_f64(x) + 3, "rows 1..2 are a view");
    ad_tensor *big = ad_zeros(tape, AD_F64, ad_shape2(1000, 4));
    size_t before = ad_tape_bytes_used(tape);
    cr_assert_not_null(ad_slice(tape, big, 0, 100, 900));
    cr_assert_lt(ad_tape_bytes_used(tape) - before, 1000, "no copy of 900 rows");
    expect(block, (double[]){3, 4, 5, 6, 7, 8}, 6);
    ad_tensor *cols = ad_slice(tape, x, 1, 1, 1);
    cr_assert_neq(ad_tensor_f64(cols), ad_tensor_f64(x) + 1, "a column slice is a copy");
    expect(cols, (double[]){1, 4, 7, 10}, 4);
    ad_tensor *inner = ad_slice(tape, iota(3, 1, 4, 2), 1, 1, 2); /* [1,4,2]: outer 1 */
    expect(inner, (double[]){2, 3, 4, 5}, 4);
    /* gradients through a view: d sum(block * block) / dx = 2x on block 1..2, 0 elsewhere */
    ad_param *p = ad_param_new("x", AD_F64, ad_shape2(4, 3), NULL);
    for (int i = 0; i < 12; i++) ad_tensor_f64(ad_param_value(p))[i] = i;
    ad_tensor *v = ad_slice(tape, ad_mul_scalar(tape, ad_use(tape, p), 1.0), 0, 1, 2);
    cr_assert_eq(ad_backward(tape, ad_sum(tape, ad_mul(tape, v, v), AD_AXIS_ALL, 0), NULL), AD_OK);
    const double *g = ad_tensor_f64(ad_param_grad(p));
    for (int i = 0; i < 12; i++) cr_assert_eq(g[i], i >= 3 && i < 9 ? 2.0 * i : 0.0, "grad %d", i);
    ad_param_free(p);
}

/* The view path of slice (one block: forward shares the data, backward adds
 * one run) against gather_rows of the same rows, the general path: equal
 * values and gradients, for runs short enough for the unrolled addition and
 * longer ones, both dtypes, with overlapping slices adding into one gradient. */
Test(ops_shape, view_slices_match_gathered_rows)
{
    int64_t cols[] = {1, 3, 8, 9, 20};
    for (int dt = 0; dt < 2; dt++)
        for (size_t c = 0; c < sizeof cols / sizeof cols[0]; c++) {
            ad_dtype d = dt ? AD_F64 : AD_F32;
            int64_t R = 5, C = cols[c];
            double x[100], w[100], got[2][101];
            ts_fill_uniform(x, (size_t)(R * C), 70 + c, -1, 1);
            ts_fill_uniform(w, (size_t)(R * C), 80 + c, -1, 1);
            for (int general = 0; general < 2; general++) {
                ad_tape *t = ad_tape_new(NULL);
                ad_tensor *xv = ad_variable(t, d, ad_shape2(R, C), ad_tensor_data(ad_from_f64(t, d, ad_shape2(R, C), x)));
                ad_tensor *loss = NULL;
                for (int64_t start = 0; start + 2 <= R; start += 1) { /* rows start, start + 1 */
                    int64_t idx[2] = {start, start + 1};
                    ad_tensor *s = general ? ad_gather_rows(t, xv, idx, 2) : ad_slice(t, xv, 0, start, 2);
                    if (!general) cr_assert_eq(ad_tensor_data(s), (char *)ad_tensor_data(xv) + (size_t)(start * C) * (dt ? 8 : 4));
                    ad_tensor *wv = ad_from_f64(t, d, ad_shape2(2, C), w + start * C);
                    ad_tensor *term = ad_sum(t, ad_mul(t, s, wv), AD_AXIS_ALL, 0);
                    loss = loss ? ad_add(t, loss, term) : term;
                }
                cr_assert_eq(ad_backward(t, loss, NULL), AD_OK, "%s", ad_tape_message(t));
                for (int64_t i = 0; i < R * C; i++) got[general][i] = ad_tensor_grad_get(xv, (size_t)i);
                got[general][R * C] = ad_tensor_item(loss);
                ad_tape_free(t);
            }
            for (int64_t i = 0; i <= R * C; i++)
                cr_assert_eq(got[0][i], got[1][i], "dtype %d cols %lld [%lld]: %.17g vs %.17g", dt, (long long)C,
                             (long long)i, got[0][i], got[1][i]);
        }
}

Test(ops_shape, gather_scatter_adds_repeated_rows, .init = setup, .fini = teardown)
{
    ad_tensor *table = viota(3, 2);
    int64_t idx[4] = {2, 0, 2, 2};
    ad_tensor *y = ad_gather_rows(tape, table, idx, 4);
    idx[0] = 1; /* the op kept its own copy */
    expect(y, (double[]){4, 5, 0, 1, 4, 5, 4, 5}, 8);
    cr_assert_eq(ad_backward(tape, ad_sum(tape, y, AD_AXIS_ALL, 0), NULL), AD_OK);
    const double *g = ad_tensor_grad_f64(table);
    double want[6] = {1, 1, 0, 0, 3, 3};
    for (int i = 0; i < 6; i++) cr_assert_eq(g[i], want[i]);
}

Test(ops_shape, where_masks_padded_steps, .init = setup, .fini = teardown)
{
    ad_tensor *a = viota(2, 3);
    double nv[6] = {0, -1, -2, -3, -4, -5};
    ad_tensor *b = ad_variable(tape, AD_F64, ad_shape2(2, 3), nv);
    ad_tensor *cond = ad_from_data(tape, AD_F64, ad_shape2(2, 1), (double[]){0, 1});
    ad_tensor *y = ad_where(tape, cond, a, b);
    expect(y, (double[]){-0.0, -1, -2, 3, 4, 5}, 6);
    cr_assert_eq(ad_backward(tape, ad_sum(tape, y, AD_AXIS_ALL, 0), NULL), AD_OK);
    double ga[6] = {0, 0, 0, 1, 1, 1};
    for (int i = 0; i < 6; i++) {
        cr_assert_eq(ad_tensor_grad_f64(a)[i], ga[i]);
        cr_assert_eq(ad_tensor_grad_f64(b)[i], 1 - ga[i]);
    }
}

Test(ops_shape, dropout_zeroes_and_scales, .init = setup, .fini = teardown)
{
    ad_rng rng;
    ad_rng_seed(&rng, 1, 2);
    double ones[1000];
    for (int i = 0; i < 1000; i++) ones[i] = 1;
    ad_tensor *x = ad_from_data(tape, AD_F32, ad_shape1(1000), (float[1000]){0});
    ad_tensor *y = ad_dropout(tape, ad_add_scalar(tape, x, 1), 0.25, 1, &rng);
    cr_assert_not_null(y);
    int zeros = 0;
    for (int i = 0; i < 1000; i++) {
        float v = ad_tensor_f32(y)[i];
        cr_assert(v == 0.0f || v == (float)(1 / 0.75), "element %d is %g", i, v);
        zeros += v == 0.0f;
    }
    cr_assert(zeros > 200 && zeros < 300, "%d of 1000 dropped at p = 0.25", zeros);
    ad_tensor *e = ad_dropout(tape, ad_from_data(tape, AD_F64, ad_shape1(1000), ones), 0.25, 0, NULL);
    for (int i = 0; i < 1000; i++) cr_assert_eq(ad_tensor_f64(e)[i], 1.0);
}

/* ---- bad inputs --------------------------------------------------------------------- */

static ad_tensor *call_bad(ad_tape *t, int which)
{
    ad_tensor *m23 = ad_zeros(t, AD_F64, ad_shape2(2, 3));
    ad_tensor *m33 = ad_zeros(t, AD_F64, ad_shape2(3, 3));
    ad_tensor *f32 = ad_zeros(t, AD_F32, ad_shape2(2, 3));
    ad_tensor *out[2];
    switch (which) {
    case 0: return ad_reshape(t, m23, ad_shape2(4, 2));
    case 1: return ad_reshape(t, m23, ad_shape2(-1, 4));
    case 2: return ad_reshape(t, NULL, ad_shape1(6));
    case 3: return ad_transpose(t, m23, 0, 2);
    case 4: return ad_permute(t, m23, (int[]){0, 0});
    case 5: return ad_permute(t, m23, NULL);
    case 6: return ad_concat(t, (ad_tensor *[]){m23, m33}, 2, 1);
    case 7: return ad_concat(t, (ad_tensor *[]){m23, f32}, 2, 0);
    case 8: return ad_concat(t, NULL, 0, 0);
    case 9: return ad_slice(t, m23, 1, 2, 2);
    case 10: return ad_slice(t, m23, 5, 0, 1);
    case 11: ad_split(t, m23, 1, 2, (int64_t[]){1, 1}, out); return NULL;
    case 12: return ad_gather_rows(t, m23, (int64_t[]){0, 2}, 2);
    case 13: return ad_gather_rows(t, m23, NULL, 2);
    case 14: return ad_gather_rows(t, m23, (int64_t[]){0}, 0);
    case 15: return ad_gather_rows(t, ad_zeros(t, AD_F64, ad_shape1(3)), (int64_t[]){0}, 1);
    case 16: return ad_where(t, ad_zeros(t, AD_F64, ad_shape1(2)), m23, m23);
    case 17: return ad_where(t, ad_zeros(t, AD_F64, ad_shape1(3)), m23, m33);
    case 18: return ad_where(t, ad_variable(t, AD_F64, ad_shape1(3), (double[3]){0}), m23, m23);
    case 19: return ad_dropout(t, m23, 1.0, 1, NULL);
    case 20: return ad_dropout(t, m23, 0.5, 1, NULL);
    case 21: return ad_transpose(t, NULL, 0, 1);
    case 22: return ad_dropout(t, NULL, 0.5, 0, NULL);
    case 23: return ad_slice(t, m23, 1, 1, INT64_MAX); /* start + len overflows int64 */
    }
    return NULL;
}

static const ts_bad_case bad[] = {
    {"reshape size", AD_ERR_SHAPE, "6 elements cannot become 8"},
    {"reshape infer", AD_ERR_SHAPE, "cannot infer"},
    {"reshape NULL", AD_ERR_NULL, "reshape: input 0 is NULL"},
    {"transpose axis", AD_ERR_ARG, "out of range"},
    {"permute not a permutation", AD_ERR_ARG, "not a permutation"},
    {"permute NULL", AD_ERR_NULL, "perm is NULL"},
    {"concat shapes", AD_ERR_SHAPE, "does not match input 0"},
    {"concat dtype", AD_ERR_DTYPE, "input 1 is f32"},
    {"concat no inputs", AD_ERR_EMPTY, "concat: no inputs"},
    {"slice range", AD_ERR_ARG, "[2, 4) is outside axis 1"},
    {"slice axis", AD_ERR_ARG, "axis 5 is out of range"},
    {"split sizes", AD_ERR_SHAPE, "add up to 2"},
    {"gather index", AD_ERR_ARG, "index 2 at position 1"},
    {"gather NULL", AD_ERR_NULL, "indices are NULL"},
    {"gather empty", AD_ERR_EMPTY, "no indices"},
    {"gather rank", AD_ERR_RANK, "must be [V, D]"},
    {"where cond", AD_ERR_SHAPE, "does not broadcast"},
    {"where a b", AD_ERR_SHAPE, "differ"},
    {"where cond grad", AD_ERR_ARG, "cond must be a constant"},
    {"dropout p", AD_ERR_ARG, "outside [0, 1)"},
    {"dropout rng", AD_ERR_NULL, "needs an rng"},
    {"transpose NULL", AD_ERR_NULL, "input 0 is NULL"},
    {"dropout NULL", AD_ERR_NULL, "input 0 is NULL"},
    {"slice huge length", AD_ERR_ARG, "[1, 1 + 9223372036854775807) is outside axis 1 of [2,3]"},
};

Test(ops_shape, bad_inputs)
{
    long before = ts_live_allocs();
    ts_expect_tape_errors(call_bad, bad, (int)(sizeof bad / sizeof bad[0]));
    cr_assert_null(ad_transpose(NULL, NULL, 0, 1));
    cr_assert_eq(ad_split(NULL, NULL, 0, 1, NULL, NULL), AD_ERR_NULL);
    cr_assert_eq(ts_live_allocs(), before);
}
