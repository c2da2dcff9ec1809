/*
 * test_op_list.c - one row per op of the engine's list (autodiff/op_list.h):
 * a small float64 graph through the op, checked by central differences
 * (ad_gradcheck) and against forward mode (ad_gradcheck_exact). The test
 * walks the list, so an op added without a row here fails it; each row's
 * graph must really record a node of its op.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include <unroll/autodiff/autodiff.h>

#include "internal.h"
#include "testsupport.h"

typedef struct oc_ctx {
    ad_param *p[3];
} oc_ctx;

#define U(i) ad_use(t, c->p[i])

/* A custom op for the CUSTOM row: y = x^3, with its jvp. */
static ad_status cube_shape(void *ctx, ad_tensor *const *in, int n, ad_shape *out, char *msg, size_t size)
{
    (void)ctx, (void)n, (void)msg, (void)size;
    *out = ad_tensor_shape(in[0]);
    return AD_OK;
}
static void cube_forward(void *ctx, ad_tensor *const *in, int n, ad_tensor *out)
{
    (void)ctx, (void)n;
    const double *x = ad_tensor_f64(in[0]);
    double *y = ad_tensor_f64(out);
    for (size_t i = 0; i < ad_tensor_numel(out); i++) y[i] = x[i] * x[i] * x[i];
}
static void cube_backward(void *ctx, ad_tensor *const *in, int n, ad_tensor *out, ad_tensor *gout,
                          ad_tensor *const *gin)
{
    (void)ctx, (void)n;
    if (!gin[0]) return;
    const double *x = ad_tensor_f64(in[0]), *g = ad_tensor_f64(gout);
    double *gx = ad_tensor_f64(gin[0]);
    for (size_t i = 0; i < ad_tensor_numel(out); i++) gx[i] += 3 * x[i] * x[i] * g[i];
}
static void cube_jvp(void *ctx, ad_tensor *const *in, int n, ad_tensor *out, ad_tensor *const *tin,
                     ad_tensor *tout)
{
    (void)ctx, (void)n;
    const double *x = ad_tensor_f64(in[0]);
    double *ty = ad_tensor_f64(tout);
    for (size_t i = 0; i < ad_tensor_numel(out); i++)
        ty[i] = tin[0] ? 3 * x[i] * x[i] * ad_tensor_f64(tin[0])[i] : 0.0;
}
static const ad_custom_op cube = {"cube", 1, cube_shape, cube_forward, cube_backward, cube_jvp};

static const double k6[6] = {0.5, -1.0, 1.5, 2.0, -0.25, 0.75};

static ad_tensor *g_const(ad_tape *t, oc_ctx *c) { return ad_mul(t, U(0), ad_from_f64(t, AD_F64, ad_shape2(2, 3), k6)); }
static ad_tensor *g_variable(ad_tape *t, oc_ctx *c)
{
    return ad_mul(t, U(0), ad_variable(t, AD_F64, ad_shape2(2, 3), k6));
}
static ad_tensor *g_param(ad_tape *t, oc_ctx *c) { return ad_tanh(t, U(0)); }
static ad_tensor *g_detach(ad_tape *t, oc_ctx *c)
{
    /* no gradient flows through detach by design: it sees a constant here */
    return ad_mul(t, U(0), ad_detach(t, ad_from_f64(t, AD_F64, ad_shape2(2, 3), k6)));
}
static ad_tensor *g_matmul(ad_tape *t, oc_ctx *c) { return ad_matmul(t, U(0), U(1), AD_TRANS_B); }
static ad_tensor *g_add(ad_tape *t, oc_ctx *c) { return ad_add(t, U(0), U(1)); }
static ad_tensor *g_sub(ad_tape *t, oc_ctx *c) { return ad_sub(t, U(0), U(1)); }
static ad_tensor *g_mul(ad_tape *t, oc_ctx *c) { return ad_mul(t, U(0), U(1)); }
static ad_tensor *g_div(ad_tape *t, oc_ctx *c) { return ad_div(t, U(0), U(1)); }
static ad_tensor *g_add_scalar(ad_tape *t, oc_ctx *c) { return ad_add_scalar(t, U(0), 1.5); }
static ad_tensor *g_mul_scalar(ad_tape *t, oc_ctx *c) { return ad_mul_scalar(t, U(0), -2.5); }
static ad_tensor *g_pow_scalar(ad_tape *t, oc_ctx *c) { return ad_pow_scalar(t, U(0), 2.7); }
static ad_tensor *g_neg(ad_tape *t, oc_ctx *c) { return ad_neg(t, U(0)); }
static ad_tensor *g_exp(ad_tape *t, oc_ctx *c) { return ad_exp(t, U(0)); }
static ad_tensor *g_log(ad_tape *t, oc_ctx *c) { return ad_log(t, U(0)); }
static ad_tensor *g_sqrt(ad_tape *t, oc_ctx *c) { return ad_sqrt(t, U(0)); }
static ad_tensor *g_abs(ad_tape *t, oc_ctx *c) { return ad_abs(t, ad_add_scalar(t, U(0), -1.25)); }
static ad_tensor *g_tanh(ad_tape *t, oc_ctx *c) { return ad_tanh(t, U(0)); }
static ad_tensor *g_sigmoid(ad_tape *t, oc_ctx *c) { return ad_sigmoid(t, U(0)); }
static ad_tensor *g_relu(ad_tape *t, oc_ctx *c) { return ad_relu(t, ad_add_scalar(t, U(0), -1.25)); }
static ad_tensor *g_sum(ad_tape *t, oc_ctx *c) { return ad_sum(t, U(0), 1, 0); }
static ad_tensor *g_mean(ad_tape *t, oc_ctx *c) { return ad_mean(t, U(0), 0, 1); }
static ad_tensor *g_softmax(ad_tape *t, oc_ctx *c) { return ad_softmax(t, U(0), 1); }
static ad_tensor *g_log_softmax(ad_tape *t, oc_ctx *c) { return ad_log_softmax(t, U(0), -1); }
static ad_tensor *g_reshape(ad_tape *t, oc_ctx *c) { return ad_tanh(t, ad_reshape(t, U(0), ad_shape2(3, 2))); }
static ad_tensor *g_permute(ad_tape *t, oc_ctx *c) { return ad_tanh(t, ad_transpose(t, U(0), 0, 1)); }
static ad_tensor *g_concat(ad_tape *t, oc_ctx *c)
{
    ad_tensor *xs[3] = {U(0), U(1), U(0)};
    return ad_tanh(t, ad_concat(t, xs, 3, 1));
}
static ad_tensor *g_slice(ad_tape *t, oc_ctx *c) { return ad_tanh(t, ad_slice(t, U(0), 1, 1, 2)); }
static ad_tensor *g_gather_rows(ad_tape *t, oc_ctx *c)
{
    static const int64_t idx[4] = {1, 0, 1, 1};
    return ad_tanh(t, ad_gather_rows(t, U(0), idx, 4));
}
static ad_tensor *g_where(ad_tape *t, oc_ctx *c)
{
    static const double cond[6] = {1, 0, 0, 1, 1, 0};
    return ad_where(t, ad_from_f64(t, AD_F64, ad_shape2(2, 3), cond), U(0), U(1));
}
static ad_tensor *g_dropout(ad_tape *t, oc_ctx *c)
{
    ad_rng rng; /* the same mask on every evaluation */
    ad_rng_seed(&rng, 7, 3);
    return ad_dropout(t, U(0), 0.4, 1, &rng);
}
static ad_tensor *g_cross_entropy(ad_tape *t, oc_ctx *c)
{
    static const int64_t tgt[2] = {2, 0};
    return ad_cross_entropy(t, U(0), tgt, 2, -100, AD_REDUCE_MEAN);
}
static const double y6[6] = {0, 1, 0.25, 1, 0.5, 0};
static ad_tensor *g_bce_with_logits(ad_tape *t, oc_ctx *c)
{
    return ad_bce_with_logits(t, U(0), ad_from_f64(t, AD_F64, ad_shape2(2, 3), y6), AD_REDUCE_SUM);
}
static ad_tensor *g_bce(ad_tape *t, oc_ctx *c)
{
    return ad_bce(t, ad_sigmoid(t, U(0)), ad_from_f64(t, AD_F64, ad_shape2(2, 3), y6), AD_REDUCE_MEAN);
}
static ad_tensor *g_mse(ad_tape *t, oc_ctx *c) { return ad_mse(t, U(0), U(1), AD_REDUCE_MEAN); }
static ad_tensor *g_custom(ad_tape *t, oc_ctx *c)
{
    ad_tensor *in[1] = {U(0)};
    return ad_custom(t, &cube, NULL, in, 1);
}
/* cells: p0 = gx [2, G H], p1 = gh [2, G H], p2 = state [2, H] with H = 2 */
static ad_tensor *g_lstm_cell_state(ad_tape *t, oc_ctx *c) { return ad_lstm_cell_state(t, U(0), U(1), U(2)); }
static ad_tensor *g_lstm_cell_output(ad_tape *t, oc_ctx *c)
{
    return ad_lstm_cell_output(t, U(0), U(1), ad_tanh(t, U(2)));
}
static ad_tensor *g_gru_cell(ad_tape *t, oc_ctx *c) { return ad_gru_cell(t, U(0), U(1), U(2)); }
static ad_tensor *g_addmm(ad_tape *t, oc_ctx *c) { return ad_addmm(t, U(2), U(0), U(1), AD_TRANS_B); }
static ad_tensor *g_rnn_cell(ad_tape *t, oc_ctx *c) { return ad_rnn_cell(t, U(0), U(1), AD_RNN_TANH); }
static ad_tensor *g_rnn_sequence(ad_tape *t, oc_ctx *c)
{
    return ad_rnn_sequence(t, U(0), U(1), U(2), AD_RNN_TANH, AD_TRANS_B);
}
static const double k9[9] = {0.1, -0.2, 0.3, 0.05, -0.15, 0.25, -0.1, 0.2, 0.0};
static ad_tensor *g_gru_sequence(ad_tape *t, oc_ctx *c)
{
    return ad_gru_sequence(t, U(0), U(1), U(2), ad_from_f64(t, AD_F64, ad_shape1(9), k9), 0);
}
static ad_tensor *g_layer_norm(ad_tape *t, oc_ctx *c) { return ad_layer_norm(t, U(0), 1e-5); }
static ad_tensor *g_softplus(ad_tape *t, oc_ctx *c) { return ad_softplus(t, U(0)); }
static ad_status tanh_of_product(ad_tape *t, void *ctx, ad_tensor *const *in, int n_in, ad_tensor **out, int n_out)
{
    (void)ctx, (void)n_in, (void)n_out;
    out[0] = ad_tanh(t, ad_mul(t, in[0], in[1]));
    return ad_tape_status(t);
}
static ad_tensor *g_checkpoint(ad_tape *t, oc_ctx *c)
{
    ad_tensor *in[2] = {U(0), U(1)}, *out = NULL;
    return ad_checkpoint(t, tanh_of_product, NULL, in, 2, &out, 1, NULL) == AD_OK ? out : NULL;
}

typedef struct op_row {
    ad_tensor *(*graph)(ad_tape *t, oc_ctx *c);
    int n;            /* parameters */
    int64_t s[3][2];  /* their shapes (2-D; {n, 0} is 1-D) */
    double lo, hi;    /* range of their values */
} op_row;

#define R(fn, n, s0, s1, s2, lo, hi) {g_##fn, n, {s0, s1, s2}, lo, hi}
#define D(a, b) {a, b}
#define X23 D(2, 3)
#define NO D(0, 0)

/* One row per op, indexed by the op list's enum: a missing row fails. */
static const op_row rows[AD_OP_COUNT] = {
    [AD_OP_CONST] = R(const, 1, X23, NO, NO, -2, 2),
    [AD_OP_VARIABLE] = R(variable, 1, X23, NO, NO, -2, 2),
    [AD_OP_PARAM] = R(param, 1, X23, NO, NO, -2, 2),
    [AD_OP_DETACH] = R(detach, 1, X23, NO, NO, -2, 2),
    [AD_OP_MATMUL] = R(matmul, 2, X23, D(4, 3), NO, -2, 2),
    [AD_OP_ADD] = R(add, 2, X23, D(3, 0), NO, -2, 2),
    [AD_OP_SUB] = R(sub, 2, X23, D(2, 1), NO, -2, 2),
    [AD_OP_MUL] = R(mul, 2, X23, D(1, 3), NO, -2, 2),
    [AD_OP_DIV] = R(div, 2, X23, X23, NO, 0.5, 2),
    [AD_OP_ADD_SCALAR] = R(add_scalar, 1, X23, NO, NO, -2, 2),
    [AD_OP_MUL_SCALAR] = R(mul_scalar, 1, X23, NO, NO, -2, 2),
    [AD_OP_POW_SCALAR] = R(pow_scalar, 1, X23, NO, NO, 0.3, 2),
    [AD_OP_NEG] = R(neg, 1, X23, NO, NO, -2, 2),
    [AD_OP_EXP] = R(exp, 1, X23, NO, NO, -2, 2),
    [AD_OP_LOG] = R(log, 1, X23, NO, NO, 0.2, 3),
    [AD_OP_SQRT] = R(sqrt, 1, X23, NO, NO, 0.2, 3),
    [AD_OP_ABS] = R(abs, 1, X23, NO, NO, 0.1, 1.0),
    [AD_OP_TANH] = R(tanh, 1, X23, NO, NO, -2, 2),
    [AD_OP_SIGMOID] = R(sigmoid, 1, X23, NO, NO, -4, 4),
    [AD_OP_RELU] = R(relu, 1, X23, NO, NO, 1.5, 3),
    [AD_OP_SUM] = R(sum, 1, X23, NO, NO, -2, 2),
    [AD_OP_MEAN] = R(mean, 1, X23, NO, NO, -2, 2),
    [AD_OP_SOFTMAX] = R(softmax, 1, X23, NO, NO, -2, 2),
    [AD_OP_LOG_SOFTMAX] = R(log_softmax, 1, X23, NO, NO, -2, 2),
    [AD_OP_RESHAPE] = R(reshape, 1, X23, NO, NO, -2, 2),
    [AD_OP_PERMUTE] = R(permute, 1, X23, NO, NO, -2, 2),
    [AD_OP_CONCAT] = R(concat, 2, X23, D(2, 2), NO, -2, 2),
    [AD_OP_SLICE] = R(slice, 1, X23, NO, NO, -2, 2),
    [AD_OP_GATHER_ROWS] = R(gather_rows, 1, X23, NO, NO, -2, 2),
    [AD_OP_WHERE] = R(where, 2, X23, X23, NO, -2, 2),
    [AD_OP_DROPOUT] = R(dropout, 1, X23, NO, NO, -2, 2),
    [AD_OP_CROSS_ENTROPY] = R(cross_entropy, 1, X23, NO, NO, -2, 2),
    [AD_OP_BCE_WITH_LOGITS] = R(bce_with_logits, 1, X23, NO, NO, -2, 2),
    [AD_OP_BCE] = R(bce, 1, X23, NO, NO, -2, 2),
    [AD_OP_MSE] = R(mse, 2, X23, X23, NO, -2, 2),
    [AD_OP_CUSTOM] = R(custom, 1, X23, NO, NO, -2, 2),
    [AD_OP_LSTM_CELL_STATE] = R(lstm_cell_state, 3, D(2, 8), D(2, 8), D(2, 2), -2, 2),
    [AD_OP_LSTM_CELL_OUTPUT] = R(lstm_cell_output, 3, D(2, 8), D(2, 8), D(2, 2), -2, 2),
    [AD_OP_GRU_CELL] = R(gru_cell, 3, D(2, 6), D(2, 6), D(2, 2), -2, 2),
    [AD_OP_ADDMM] = R(addmm, 3, X23, D(4, 3), D(4, 0), -2, 2),
    [AD_OP_RNN_CELL] = R(rnn_cell, 2, X23, X23, NO, -2, 2),
    [AD_OP_LAYER_NORM] = R(layer_norm, 1, X23, NO, NO, -2, 2),
    [AD_OP_CHECKPOINT] = R(checkpoint, 2, X23, X23, NO, -2, 2),
    [AD_OP_SOFTPLUS] = R(softplus, 1, X23, NO, NO, -4, 4),
    [AD_OP_RNN_SEQUENCE] = R(rnn_sequence, 3, D(6, 3), X23, D(3, 3), -1, 1),
    [AD_OP_GRU_SEQUENCE] = R(gru_sequence, 3, D(6, 9), X23, D(3, 9), -1, 1),
};

/* Ops whose forward mode is not written yet: the exact check must refuse
 * them with AD_ERR_STATE naming the op, never pass with zeros. */
static int jvp_unsupported(int op) { return op == AD_OP_CHECKPOINT; }

typedef struct row_ctx {
    oc_ctx c;
    const op_row *row;
} row_ctx;

static ad_tensor *graph(ad_tape *t, void *ctx)
{
    row_ctx *rc = ctx;
    return rc->row->graph(t, &rc->c);
}

static ad_shape row_shape(const int64_t s[2])
{
    return s[1] ? ad_shape2(s[0], s[1]) : ad_shape1(s[0]);
}

Test(op_list, every_op_has_an_f64_gradcheck_row)
{
    for (int op = 0; op < AD_OP_COUNT; op++) {
        const op_row *r = &rows[op];
        const char *name = ad__ops[op].name;
        cr_assert_not_null(r->graph, "op %s has no row in tests/test_op_list.c", name);
        long before = ts_live_allocs();
        row_ctx rc = {{{NULL, NULL, NULL}}, r};
        for (int i = 0; i < r->n; i++) {
            rc.c.p[i] = ad_param_new("p", AD_F64, row_shape(r->s[i]), NULL);
            cr_assert_not_null(rc.c.p[i]);
            ad_tensor *v = ad_param_value(rc.c.p[i]);
            ts_fill_uniform(ad_tensor_f64(v), ad_tensor_numel(v), 100u + (uint64_t)(op * 3 + i), r->lo, r->hi);
        }
        /* the row's graph records a node of its op */
        ad_tape *t = ad_tape_new(NULL);
        cr_assert_not_null(graph(t, &rc), "op %s: %s", name, ad_tape_message(t));
        size_t count, found = 0;
        ad_node *const *nodes = ad__tape_nodes(t, &count);
        for (size_t i = 0; i < count; i++) found += nodes[i]->op == (ad__op)op;
        cr_assert(found > 0, "op %s: its row records no %s node", name, name);
        ad_tape_free(t);

        ad_gradcheck_report rep;
        ad_error err;
        ad_status st = ad_gradcheck(graph, &rc, rc.c.p, (size_t)r->n, NULL, &rep, &err);
        if (st != AD_OK) ad_gradcheck_print(&rep, stderr);
        cr_assert_eq(st, AD_OK, "op %s: gradcheck: %s", name, err.msg);
        st = ad_gradcheck_exact(graph, &rc, rc.c.p, (size_t)r->n, NULL, &rep, &err);
        if (jvp_unsupported(op)) {
            cr_assert_eq(st, AD_ERR_STATE, "op %s: exact check: %s", name, ad_status_name(st));
            cr_assert(strstr(err.msg, name), "op %s: the refusal does not name it: %s", name, err.msg);
        } else {
            if (st != AD_OK) ad_gradcheck_print(&rep, stderr);
            cr_assert_eq(st, AD_OK, "op %s: exact check (jvp): %s", name, err.msg);
        }
        for (int i = 0; i < r->n; i++) ad_param_free(rc.c.p[i]);
        cr_assert_eq(ts_live_allocs(), before, "op %s leaks", name);
    }
}

Test(op_list, every_row_declares_what_backward_keeps)
{
    /* The keeps column cannot be left empty (op_table.c does not compile
     * then); what is declared must name inputs the op has. */
    for (int op = 0; op < AD_OP_COUNT; op++) {
        const ad__op_def *d = &ad__ops[op];
        unsigned in_bits = d->keeps & 0x3fu;
        if (d->arity >= 0)
            cr_assert(in_bits >> d->arity == 0, "op %s keeps input bits 0x%x beyond its arity %d", d->name,
                      in_bits, d->arity);
        else
            cr_assert_eq(in_bits, 0u, "op %s takes any number of inputs: it may keep all or none", d->name);
        cr_assert(d->arity != 0 || d->keeps == 0, "leaf %s has no backward that reads data", d->name);
    }
}

Test(op_list, the_gate_checks_arity)
{
    ad_tape *t = ad_tape_new(NULL);
    ad_tensor *x = ad_ones(t, AD_F64, ad_shape2(2, 2));
    ad_tensor *in[3] = {x, x, x};
    cr_assert_null(ad__record(t, AD_OP_ADD, in, 3, NULL));
    cr_assert_eq(ad_tape_status(t), AD_ERR_ARG);
    cr_assert(strstr(ad_tape_message(t), "add: takes 2 inputs, got 3"), "%s", ad_tape_message(t));
    ad_tape_free(t);
}

Test(op_list, custom_ops_are_named_by_their_own_name)
{
    ad__args a = {0};
    a.custom = &cube;
    cr_assert_str_eq(ad__op_name(AD_OP_CUSTOM, &a), "cube");
    cr_assert_str_eq(ad__op_name(AD_OP_CUSTOM, NULL), "custom");
    ad_custom_op unnamed = cube;
    unnamed.name = NULL;
    a.custom = &unnamed;
    cr_assert_str_eq(ad__op_name(AD_OP_CUSTOM, &a), "custom");
    cr_assert_str_eq(ad__op_name(AD_OP_ADD, &a), "add");
}
