/*
 * test_ops_fused.c - the fused ops: ad_addmm and the gate ops
 * (ad_rnn_cell, ad_lstm_cell_state, ad_lstm_cell_output, ad_gru_cell). An f64 gradient
 * check of each with respect to every input, values and gradients equal to
 * the op-by-op formulas, f32 against f64, and bad inputs.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <math.h>
#include <string.h>

#include "testsupport.h"

/* The fused call and the same formulas with the general ops. */
typedef ad_tensor *(*cell_fn)(ad_tape *t, ad_tensor *gx, ad_tensor *gh, ad_tensor *s);

/* A gate op: its gates per hidden unit, its inputs (the Elman ops take no
 * state: two instead of three), the fused call and its op-by-op formula. */
typedef struct cell_def {
    const char *name;
    int64_t gates;
    int inputs;
    cell_fn fused, plain;
} cell_def;

static ad_tensor *lstm_state(ad_tape *t, ad_tensor *gx, ad_tensor *gh, ad_tensor *s)
{
    return ad_lstm_cell_state(t, gx, gh, s);
}
static ad_tensor *lstm_output(ad_tape *t, ad_tensor *gx, ad_tensor *gh, ad_tensor *s)
{
    return ad_lstm_cell_output(t, gx, gh, s);
}
static ad_tensor *lstm_both(ad_tape *t, ad_tensor *gx, ad_tensor *gh, ad_tensor *s)
{
    return ad_lstm_cell_output(t, gx, gh, ad_lstm_cell_state(t, gx, gh, s));
}
static ad_tensor *gru(ad_tape *t, ad_tensor *gx, ad_tensor *gh, ad_tensor *s) { return ad_gru_cell(t, gx, gh, s); }
static ad_tensor *rnn_tanh(ad_tape *t, ad_tensor *gx, ad_tensor *gh, ad_tensor *s)
{
    (void)s;
    return ad_rnn_cell(t, gx, gh, AD_RNN_TANH);
}
static ad_tensor *rnn_relu(ad_tape *t, ad_tensor *gx, ad_tensor *gh, ad_tensor *s)
{
    (void)s;
    return ad_rnn_cell(t, gx, gh, AD_RNN_RELU);
}

/* The LSTM with the general ops: the new state c (from s), or with `output`
 * the new output from c (c = s itself without `state`). */
static ad_tensor *plain_lstm(ad_tape *t, ad_tensor *gx, ad_tensor *gh, ad_tensor *s, int state, int output)
{
    int64_t h = ad_tensor_dim(s, 1), sz[4] = {h, h, h, h};
    ad_tensor *q[4];
    if (ad_split(t, ad_add(t, gx, gh), 1, 4, sz, q) != AD_OK) return NULL;
    ad_tensor *c = s;
    if (state)
        c = ad_add(t, ad_mul(t, ad_sigmoid(t, q[1]), s), ad_mul(t, ad_sigmoid(t, q[0]), ad_tanh(t, q[2])));
    if (!output) return c;
    return ad_mul(t, ad_sigmoid(t, q[3]), ad_tanh(t, c));
}
static ad_tensor *plain_lstm_state(ad_tape *t, ad_tensor *gx, ad_tensor *gh, ad_tensor *s)
{
    return plain_lstm(t, gx, gh, s, 1, 0);
}
static ad_tensor *plain_lstm_output(ad_tape *t, ad_tensor *gx, ad_tensor *gh, ad_tensor *s)
{
    return plain_lstm(t, gx, gh, s, 0, 1);
}
static ad_tensor *plain_lstm_both(ad_tape *t, ad_tensor *gx, ad_tensor *gh, ad_tensor *s)
{
    return plain_lstm(t, gx, gh, s, 1, 1);
}
static ad_tensor *plain_gru(ad_tape *t, ad_tensor *gx, ad_tensor *gh, ad_tensor *s)
{
    int64_t h = ad_tensor_dim(s, 1), sz[3] = {h, h, h};
    ad_tensor *x[3], *y[3];
    if (ad_split(t, gx, 1, 3, sz, x) != AD_OK || ad_split(t, gh, 1, 3, sz, y) != AD_OK) return NULL;
    ad_tensor *r = ad_sigmoid(t, ad_add(t, x[0], y[0])), *z = ad_sigmoid(t, ad_add(t, x[1], y[1]));
    ad_tensor *n = ad_tanh(t, ad_add(t, x[2], ad_mul(t, r, y[2])));
    ad_tensor *one_minus_z = ad_add_scalar(t, ad_neg(t, z), 1);
    return ad_add(t, ad_mul(t, one_minus_z, n), ad_mul(t, z, s));
}
static ad_tensor *plain_rnn_tanh(ad_tape *t, ad_tensor *gx, ad_tensor *gh, ad_tensor *s)
{
    (void)s;
    return ad_tanh(t, ad_add(t, gx, gh));
}
static ad_tensor *plain_rnn_relu(ad_tape *t, ad_tensor *gx, ad_tensor *gh, ad_tensor *s)
{
    (void)s;
    return ad_relu(t, ad_add(t, gx, gh));
}

#define CELL(name, gates, inputs) {#name, gates, inputs, name, plain_##name}
enum { LSTM_STATE, LSTM_OUTPUT, LSTM_BOTH, GRU, RNN_TANH, RNN_RELU, N_CELLS };
static const cell_def cells[N_CELLS] = {
    [LSTM_STATE] = CELL(lstm_state, 4, 3), [LSTM_OUTPUT] = CELL(lstm_output, 4, 3),
    [LSTM_BOTH] = CELL(lstm_both, 4, 3),   [GRU] = CELL(gru, 3, 3),
    [RNN_TANH] = CELL(rnn_tanh, 1, 2),     [RNN_RELU] = CELL(rnn_relu, 1, 2),
};

/* One gradcheck case (plain data, see STYLE.md): the cell by its number in
 * cells[]. shared: gh is gx itself. */
typedef struct cell_row {
    int cell;
    int64_t b, h;
    int shared;
    uint64_t seed;
} cell_row;

typedef struct cell_ctx {
    const cell_row *row;
    ad_param *p[3]; /* gx, gh, state */
} cell_ctx;

static ad_tensor *graph(ad_tape *t, void *vctx)
{
    cell_ctx *c = vctx;
    ad_tensor *gx = ad_use(t, c->p[0]);
    ad_tensor *gh = c->row->shared ? gx : ad_use(t, c->p[1]);
    return cells[c->row->cell].fused(t, gx, gh, ad_use(t, c->p[2]));
}

static void make_params(const cell_row *r, ad_dtype dt, ad_param **p)
{
    ad_shape sg = ad_shape2(r->b, cells[r->cell].gates * r->h), ss = ad_shape2(r->b, r->h);
    const char *names[3] = {"gx", "gh", "state"};
    for (int i = 0; i < 3; i++) {
        p[i] = ad_param_new(names[i], dt, i < 2 ? sg : ss, NULL);
        size_t n = ad_tensor_numel(ad_param_value(p[i]));
        double v[512];
        cr_assert_leq(n, 512);
        ts_fill_uniform(v, n, r->seed + (uint64_t)i, -2.5, 2.5);
        for (size_t k = 0; k < n; k++) {
            if (dt == AD_F64) ad_tensor_f64(ad_param_value(p[i]))[k] = v[k];
            else ad_tensor_f32(ad_param_value(p[i]))[k] = (float)v[k];
        }
    }
}

static void free_params(ad_param **p)
{
    for (int i = 0; i < 3; i++) ad_param_free(p[i]);
}

static cell_row rows[] = {
    {LSTM_STATE, 1, 1, 0, 3},  {LSTM_STATE, 3, 2, 0, 5},  {LSTM_STATE, 2, 3, 1, 7},
    {LSTM_OUTPUT, 1, 1, 0, 9}, {LSTM_OUTPUT, 3, 2, 0, 11}, {LSTM_OUTPUT, 2, 3, 1, 13},
    {LSTM_BOTH, 2, 4, 0, 15},  {LSTM_BOTH, 3, 2, 1, 17},   {GRU, 1, 1, 0, 19},
    {GRU, 3, 2, 0, 21},        {GRU, 2, 5, 0, 23},         {GRU, 2, 3, 1, 25},
    {RNN_TANH, 1, 1, 0, 27},   {RNN_TANH, 3, 4, 0, 29},    {RNN_TANH, 2, 3, 1, 31},
    {RNN_RELU, 3, 4, 0, 33},   {RNN_RELU, 2, 2, 1, 35},
};

ParameterizedTestParameters(ops_fused, gradcheck)
{
    return cr_make_param_array(cell_row, rows, sizeof rows / sizeof rows[0]);
}

ParameterizedTest(cell_row *row, ops_fused, gradcheck)
{
    long before = ts_live_allocs();
    cell_ctx c = {row, {NULL, NULL, NULL}};
    make_params(row, AD_F64, c.p);
    ad_gradcheck_report rep;
    ad_error err;
    ad_param *wrt[3] = {c.p[0], row->shared ? c.p[2] : c.p[1], c.p[2]};
    size_t n_wrt = (size_t)cells[row->cell].inputs - (row->shared ? 1 : 0);
    ad_status st = ad_gradcheck(graph, &c, wrt, n_wrt, NULL, &rep, &err);
    if (st != AD_OK) ad_gradcheck_print(&rep, stderr);
    cr_assert_eq(st, AD_OK, "%s B=%lld H=%lld: %s", cells[row->cell].name, (long long)row->b, (long long)row->h,
                 err.msg);
    /* The exact check: backward against forward mode, to 1e-12. */
    st = ad_gradcheck_exact(graph, &c, wrt, n_wrt, NULL, &rep, &err);
    if (st != AD_OK) ad_gradcheck_print(&rep, stderr);
    cr_assert_eq(st, AD_OK, "exact check: %s", err.msg);
    free_params(c.p);
    cr_assert_eq(ts_live_allocs(), before);
}

/* Output and input gradients of one op, from sum(out * w) with fixed w. */
static void run(cell_fn fn, const cell_row *r, ad_dtype dt, double *out, double *grads)
{
    ad_param *p[3];
    make_params(r, dt, p);
    ad_tape *t = ad_tape_new(NULL);
    ad_tensor *y = fn(t, ad_use(t, p[0]), ad_use(t, p[1]), ad_use(t, p[2]));
    cr_assert_not_null(y, "%s", ad_tape_message(t));
    size_t n = ad_tensor_numel(y), off = 0;
    double w[512];
    ts_fill_uniform(w, n, 99, -1, 1);
    ad_tensor *loss = ad_sum(t, ad_mul(t, y, ad_from_f64(t, dt, ad_tensor_shape(y), w)), AD_AXIS_ALL, 0);
    cr_assert_eq(ad_backward(t, loss, NULL), AD_OK, "%s", ad_tape_message(t));
    for (size_t i = 0; i < n; i++) out[i] = ad_tensor_get(y, i);
    for (int k = 0; k < 3; k++) {
        ad_tensor *g = ad_param_grad(p[k]);
        for (size_t i = 0; i < ad_tensor_numel(g); i++) grads[off++] = ad_tensor_get(g, i);
    }
    ad_tape_free(t);
    free_params(p);
}

Test(ops_fused, equal_the_op_by_op_formulas)
{
    long before = ts_live_allocs();
    for (int k = 0; k < N_CELLS; k++) {
        cell_row r = {k, 4, 6, 0, 50 + (uint64_t)k};
        size_t n_out = 24, n_grad = (size_t)(2 * cells[k].gates + 1) * 24;
        double fo[24], po[24], fg[240], pg[240], f32o[24], f32g[240];
        run(cells[k].fused, &r, AD_F64, fo, fg);
        run(cells[k].plain, &r, AD_F64, po, pg);
        run(cells[k].fused, &r, AD_F32, f32o, f32g);
        for (size_t i = 0; i < n_out; i++) {
            cr_assert(fabs(fo[i] - po[i]) <= 1e-15, "op %d out %zu: %.17g vs %.17g", k, i, fo[i], po[i]);
            cr_assert(fabs(f32o[i] - fo[i]) <= 2e-6, "op %d f32 out %zu: %.9g vs %.17g", k, i, f32o[i], fo[i]);
        }
        for (size_t i = 0; i < n_grad; i++) {
            cr_assert(fabs(fg[i] - pg[i]) <= 1e-14, "op %d grad %zu: %.17g vs %.17g", k, i, fg[i], pg[i]);
            cr_assert(fabs(f32g[i] - fg[i]) <= 4e-6, "op %d f32 grad %zu: %.9g vs %.17g", k, i, f32g[i], fg[i]);
        }
    }
    cr_assert_eq(ts_live_allocs(), before);
}

/* Hand values: all pre-activations 0 give sigmoid 1/2 and tanh 0. */
Test(ops_fused, values_at_zero_pre_activations)
{
    ad_tape *t = ad_tape_new(NULL);
    ad_tensor *g4 = ad_zeros(t, AD_F64, ad_shape2(1, 4)), *g3 = ad_zeros(t, AD_F64, ad_shape2(1, 3));
    ad_tensor *s = ad_full(t, AD_F64, ad_shape2(1, 1), 0.8);
    /* c' = 0.5 * 0.8 + 0.5 * 0 */
    ad_tensor *c = ad_lstm_cell_state(t, g4, g4, s);
    cr_assert_float_eq(ad_tensor_item(c), 0.4, 1e-16);
    /* h' = 0.5 tanh(0.4) */
    cr_assert_float_eq(ad_tensor_item(ad_lstm_cell_output(t, g4, g4, c)), 0.5 * tanh(0.4), 1e-16);
    /* n = tanh(0) = 0, z = 0.5: h' = 0.5 * 0.8 */
    cr_assert_float_eq(ad_tensor_item(ad_gru_cell(t, g3, g3, s)), 0.4, 1e-16);
    ad_tape_free(t);
}

static ad_tensor *call_bad(ad_tape *t, int i)
{
    ad_tensor *g8 = ad_zeros(t, AD_F64, ad_shape2(2, 8)), *g6 = ad_zeros(t, AD_F64, ad_shape2(2, 6));
    ad_tensor *s = ad_zeros(t, AD_F64, ad_shape2(2, 2)), *s3 = ad_zeros(t, AD_F64, ad_shape2(3, 2));
    switch (i) {
    case 0: return ad_lstm_cell_state(t, NULL, g8, s);
    case 1: return ad_lstm_cell_output(t, g8, NULL, s);
    case 2: return ad_gru_cell(t, g6, g6, NULL);
    case 3: return ad_lstm_cell_state(t, g8, g6, s);
    case 4: return ad_lstm_cell_state(t, g6, g6, s);
    case 5: return ad_gru_cell(t, g8, g8, s);
    case 6: return ad_lstm_cell_output(t, g8, g8, s3);
    case 7: return ad_gru_cell(t, ad_zeros(t, AD_F64, ad_shape1(6)), g6, s);
    case 8: return ad_gru_cell(t, g6, g6, ad_zeros(t, AD_F32, ad_shape2(2, 2)));
    case 9: {
        ad_tensor *e = ad_zeros(t, AD_F64, ad_shape2(0, 8));
        return ad_lstm_cell_state(t, e, e, ad_zeros(t, AD_F64, ad_shape2(0, 2)));
    }
    case 11: return ad_rnn_cell(t, s, s3, AD_RNN_TANH);
    case 12: return ad_rnn_cell(t, s, s, (ad_rnn_activation)7);
    case 13: return ad_rnn_cell(t, NULL, s, AD_RNN_RELU);
    case 10: {
        ad_tape *other = ad_tape_new(NULL);
        ad_tensor *r = ad_gru_cell(t, g6, g6, ad_zeros(other, AD_F64, ad_shape2(2, 2)));
        ad_tape_free(other);
        return r;
    }
    }
    return NULL;
}

static const ts_bad_case bad[] = {
    {"NULL gx", AD_ERR_NULL, "lstm_cell_state: input 0 is NULL"},
    {"NULL gh", AD_ERR_NULL, "lstm_cell_output: input 1 is NULL"},
    {"NULL state", AD_ERR_NULL, "gru_cell: input 2 is NULL"},
    {"gx and gh differ", AD_ERR_SHAPE, "lstm_cell_state: gx [2,8], gh [2,6], state [2,2]"},
    {"3H gates for an LSTM", AD_ERR_SHAPE, "must both be [B, 4H]"},
    {"4H gates for a GRU", AD_ERR_SHAPE, "gru_cell: gx [2,8], gh [2,8], state [2,2]: the projections must both be [B, 3H]"},
    {"state rows differ", AD_ERR_SHAPE, "state [3,2]"},
    {"rank 1 gates", AD_ERR_SHAPE, "gru_cell: gx [6]"},
    {"dtype", AD_ERR_DTYPE, "gru_cell: input 2 is f32 but input 0 is f64"},
    {"empty batch", AD_ERR_EMPTY, "lstm_cell_state: state [0,2] is empty"},
    {"foreign tape", AD_ERR_FOREIGN, "gru_cell: input 2 is not a tensor of this tape"},
    {"rnn shapes differ", AD_ERR_SHAPE, "rnn_cell: gx [2,2] and gh [3,2] must both be [B, H]"},
    {"rnn activation", AD_ERR_ARG, "rnn_cell: unknown activation 7"},
    {"rnn NULL", AD_ERR_NULL, "rnn_cell: input 0 is NULL"},
};

Test(ops_fused, bad_inputs)
{
    long before = ts_live_allocs();
    ts_expect_tape_errors(call_bad, bad, (int)(sizeof bad / sizeof bad[0]));
    cr_assert_eq(ts_live_allocs(), before);
}

/* ---- addmm ------------------------------------------------------------------------- */

typedef struct addmm_row {
    int64_t m, k, n;
    int flags, bias_rank;
    uint64_t seed;
} addmm_row;

static addmm_row addmm_rows[] = {
    {3, 4, 2, 0, 1, 61}, {3, 4, 2, AD_TRANS_A, 2, 62}, {3, 4, 2, AD_TRANS_B, 1, 63},
    {7, 5, 17, AD_TRANS_A | AD_TRANS_B, 2, 64}, {1, 3, 1, 0, 1, 65}, {13, 9, 20, AD_TRANS_B, 1, 66},
};

typedef struct addmm_ctx {
    const addmm_row *row;
    ad_param *p[3];
    int plain;
} addmm_ctx;

static ad_tensor *addmm_graph(ad_tape *t, void *vctx)
{
    addmm_ctx *c = vctx;
    ad_tensor *a = ad_use(t, c->p[0]), *b = ad_use(t, c->p[1]), *bias = ad_use(t, c->p[2]);
    if (c->plain) return ad_add(t, ad_matmul(t, a, b, c->row->flags), bias);
    return ad_addmm(t, bias, a, b, c->row->flags);
}

static void addmm_params(const addmm_row *r, addmm_ctx *c)
{
    int ta = (r->flags & AD_TRANS_A) != 0, tb = (r->flags & AD_TRANS_B) != 0;
    ad_shape s[3] = {ta ? ad_shape2(r->k, r->m) : ad_shape2(r->m, r->k),
                     tb ? ad_shape2(r->n, r->k) : ad_shape2(r->k, r->n),
                     r->bias_rank == 1 ? ad_shape1(r->n) : ad_shape2(1, r->n)};
    const char *names[3] = {"a", "b", "bias"};
    for (int i = 0; i < 3; i++) {
        c->p[i] = ad_param_new(names[i], AD_F64, s[i], NULL);
        ts_fill_uniform(ad_tensor_f64(ad_param_value(c->p[i])), ad_tensor_numel(ad_param_value(c->p[i])),
                        r->seed + (uint64_t)i, -2, 2);
    }
}

ParameterizedTestParameters(ops_fused, addmm_gradcheck)
{
    return cr_make_param_array(addmm_row, addmm_rows, sizeof addmm_rows / sizeof addmm_rows[0]);
}

/* Finite differences, then the same values and gradients as matmul + add. */
ParameterizedTest(addmm_row *row, ops_fused, addmm_gradcheck)
{
    long before = ts_live_allocs();
    addmm_ctx c = {row, {NULL, NULL, NULL}, 0};
    addmm_params(row, &c);
    ad_gradcheck_report rep;
    ad_error err;
    ad_status st = ad_gradcheck(addmm_graph, &c, c.p, 3, NULL, &rep, &err);
    if (st != AD_OK) ad_gradcheck_print(&rep, stderr);
    cr_assert_eq(st, AD_OK, "addmm %lldx%lldx%lld flags %d: %s", (long long)row->m, (long long)row->k,
                 (long long)row->n, row->flags, err.msg);
    /* The exact check: backward against forward mode, to 1e-12. */
    st = ad_gradcheck_exact(addmm_graph, &c, c.p, 3, NULL, &rep, &err);
    if (st != AD_OK) ad_gradcheck_print(&rep, stderr);
    cr_assert_eq(st, AD_OK, "exact check: %s", err.msg);
    double out[2][400], grads[2][3][400];
    for (c.plain = 0; c.plain < 2; c.plain++) {
        for (int i = 0; i < 3; i++) ad_param_zero_grad(c.p[i]);
        ad_tape *t = ad_tape_new(NULL);
        ad_tensor *y = addmm_graph(t, &c);
        cr_assert_not_null(y, "%s", ad_tape_message(t));
        size_t n = ad_tensor_numel(y);
        cr_assert_leq(n, 400);
        double w[400];
        ts_fill_uniform(w, n, 5, -1, 1);
        ad_tensor *loss = ad_sum(t, ad_mul(t, y, ad_from_data(t, AD_F64, ad_tensor_shape(y), w)), AD_AXIS_ALL, 0);
        cr_assert_eq(ad_backward(t, loss, NULL), AD_OK);
        for (size_t i = 0; i < n; i++) out[c.plain][i] = ad_tensor_get(y, i);
        for (int k = 0; k < 3; k++)
            for (size_t i = 0; i < ad_tensor_numel(ad_param_grad(c.p[k])); i++)
                grads[c.plain][k][i] = ad_tensor_get(ad_param_grad(c.p[k]), i);
        ad_tape_free(t);
    }
    for (int i = 0; i < row->m * row->n; i++)
        cr_assert(fabs(out[0][i] - out[1][i]) <= 1e-14, "out %d: %.17g vs %.17g", i, out[0][i], out[1][i]);
    for (int k = 0; k < 3; k++)
        for (size_t i = 0; i < ad_tensor_numel(ad_param_grad(c.p[k])); i++)
            cr_assert(fabs(grads[0][k][i] - grads[1][k][i]) <= 1e-13, "grad %d[%zu]", k, i);
    for (int i = 0; i < 3; i++) ad_param_free(c.p[i]);
    cr_assert_eq(ts_live_allocs(), before);
}

Test(ops_fused, addmm_values)
{
    ad_tape *t = ad_tape_new(NULL);
    ad_tensor *a = ad_from_data(t, AD_F64, ad_shape2(2, 2), (double[]){1, 2, 3, 4});
    ad_tensor *b = ad_from_data(t, AD_F64, ad_shape2(2, 3), (double[]){1, 0, 1, 0, 1, 1});
    ad_tensor *bias = ad_from_data(t, AD_F64, ad_shape1(3), (double[]){10, 20, 30});
    ad_tensor *y = ad_addmm(t, bias, a, b, 0);
    double want[6] = {11, 22, 33, 13, 24, 37};
    for (int i = 0; i < 6; i++) cr_assert_eq(ad_tensor_get(y, i), want[i], "element %d", i);
    ad_tape_free(t);
}

static ad_tensor *addmm_bad(ad_tape *t, int i)
{
    ad_tensor *a = ad_zeros(t, AD_F64, ad_shape2(2, 3)), *b = ad_zeros(t, AD_F64, ad_shape2(3, 4));
    switch (i) {
    case 0: return ad_addmm(t, NULL, a, b, 0);
    case 1: return ad_addmm(t, ad_zeros(t, AD_F64, ad_shape1(4)), a, NULL, 0);
    case 2: return ad_addmm(t, ad_zeros(t, AD_F64, ad_shape1(3)), a, b, 0);
    case 3: return ad_addmm(t, ad_zeros(t, AD_F64, ad_shape2(2, 4)), a, b, 0);
    case 4: return ad_addmm(t, ad_zeros(t, AD_F64, ad_shape1(4)), a, a, 0);
    case 5: return ad_addmm(t, ad_zeros(t, AD_F32, ad_shape1(4)), a, b, 0);
    case 6: return ad_addmm(t, ad_zeros(t, AD_F64, ad_shape1(4)), a, b, 8);
    }
    return NULL;
}

static const ts_bad_case addmm_bad_cases[] = {
    {"NULL bias", AD_ERR_NULL, "addmm: input 2 is NULL"},
    {"NULL b", AD_ERR_NULL, "addmm: input 1 is NULL"},
    {"bias of the wrong length", AD_ERR_SHAPE, "addmm: bias [3] for a product [2,4]: the bias must be [4] or [1, 4]"},
    {"full-size bias", AD_ERR_SHAPE, "addmm: bias [2,4]"},
    {"inner dimensions", AD_ERR_SHAPE, "addmm: [2,3] x [2,3]: inner dimensions 3 and 2 differ"},
    {"dtype", AD_ERR_DTYPE, "addmm: input 2 is f32 but input 0 is f64"},
    {"flags", AD_ERR_ARG, "addmm: unknown flags 8"},
};

Test(ops_fused, addmm_bad_inputs)
{
    long before = ts_live_allocs();
    ts_expect_tape_errors(addmm_bad, addmm_bad_cases, (int)(sizeof addmm_bad_cases / sizeof addmm_bad_cases[0]));
    cr_assert_eq(ts_live_allocs(), before);
}
