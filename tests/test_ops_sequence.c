/*
 * test_ops_sequence.c - ad_rnn_sequence and ad_gru_sequence, a whole Elman
 * or GRU recurrence in one node: its states and the gradients of gx and h0 equal, bit for bit, those
 * of the T steps of ad_matmul and ad_rnn_cell on slices of gx, concatenated,
 * and the weight's gradient to rounding (f32 and f64, tanh and relu, both
 * weight layouts, on every copy-gradient mode); an f64 check
 * against central differences and forward mode; its bad inputs.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <math.h>
#include <string.h>

#include "testsupport.h"

typedef struct seq_case {
    int64_t T, B, H;
    ad_dtype dtype;
    ad_rnn_activation act;
    int flags;
    ad_copy_grads mode;
    int gru; /* ad_gru_sequence (act unused) instead of ad_rnn_sequence */
} seq_case;

/* The parameters gx [T B, G H], h0 [B, H], w [H, G H] (or its transpose)
 * and, for the GRU (G = 3), b [G H]; the loss's weights. */
typedef struct seq_net {
    const seq_case *c;
    ad_param *p[4];
    int n_p;
    double *mix; /* [T B, H] */
    int plain, release;
    ad_tensor *states; /* of the last graph built */
} seq_net;

/* The states by the step-by-step graph: T slices, products and gates. */
static ad_tensor *plain_states(ad_tape *t, const seq_case *c, ad_tensor *gx, ad_tensor *h0, ad_tensor *w,
                               ad_tensor *b)
{
    ad_tensor *hs[16], *h = h0;
    cr_assert(c->T <= 16);
    for (int64_t k = 0; k < c->T; k++) {
        ad_tensor *x = ad_slice(t, gx, 0, k * c->B, c->B);
        if (c->gru) h = hs[k] = ad_gru_cell(t, x, ad_addmm(t, b, h, w, c->flags), h);
        else h = hs[k] = ad_rnn_cell(t, x, ad_matmul(t, h, w, c->flags), c->act);
    }
    return ad_concat(t, hs, (int)c->T, 0);
}

static ad_tensor *fused_states(ad_tape *t, const seq_case *c, ad_tensor *gx, ad_tensor *h0, ad_tensor *w,
                               ad_tensor *b)
{
    return c->gru ? ad_gru_sequence(t, gx, h0, w, b, c->flags) : ad_rnn_sequence(t, gx, h0, w, c->act, c->flags);
}

/* L = sum(mix * H) with H the states of either graph; with `release`, gx is
 * a product of the tape, released once the states are recorded. */
static ad_tensor *seq_loss(ad_tape *t, void *ctx)
{
    seq_net *s = ctx;
    const seq_case *c = s->c;
    ad_tensor *gx = ad_use(t, s->p[0]), *h0 = ad_use(t, s->p[1]), *w = ad_use(t, s->p[2]);
    ad_tensor *b = c->gru ? ad_use(t, s->p[3]) : NULL;
    if (s->release) gx = ad_mul_scalar(t, gx, 0.5);
    ad_tensor *hs = s->plain ? plain_states(t, c, gx, h0, w, b) : fused_states(t, c, gx, h0, w, b);
    if (s->release && hs && ad_tape_release(t, gx) != AD_OK) return NULL;
    s->states = hs;
    ad_tensor *mix = ad_from_f64(t, c->dtype, ad_shape2(c->T * c->B, c->H), s->mix);
    return ad_sum(t, ad_mul(t, hs, mix), AD_AXIS_ALL, 0);
}

static void net_new(seq_net *s, const seq_case *c, uint64_t seed)
{
    int64_t G = c->gru ? 3 : 1, tb = (c->flags & AD_TRANS_B) != 0;
    ad_shape sh[4] = {ad_shape2(c->T * c->B, G * c->H), ad_shape2(c->B, c->H),
                      tb ? ad_shape2(G * c->H, c->H) : ad_shape2(c->H, G * c->H), ad_shape1(G * c->H)};
    double lo[4] = {-1.5, -1, -0.8, -0.5}, hi[4] = {1.5, 1, 0.8, 0.5};
    const char *names[4] = {"gx", "h0", "w", "b"};
    memset(s, 0, sizeof *s);
    s->c = c;
    s->n_p = c->gru ? 4 : 3;
    for (int i = 0; i < s->n_p; i++) {
        s->p[i] = ad_param_new(names[i], c->dtype, sh[i], NULL);
        cr_assert_not_null(s->p[i]);
        ad_tensor *val = ad_param_value(s->p[i]);
        size_t n = ad_tensor_numel(val);
        double *v = malloc(n * sizeof *v);
        cr_assert_not_null(v);
        ts_fill_uniform(v, n, seed + (uint64_t)i, lo[i], hi[i]);
        for (size_t j = 0; j < n; j++) {
            if (c->dtype == AD_F32) ad_tensor_f32(val)[j] = (float)v[j];
            else ad_tensor_f64(val)[j] = v[j];
        }
        free(v);
    }
    size_t nm = (size_t)(c->T * c->B * c->H);
    s->mix = malloc(nm * sizeof *s->mix);
    cr_assert_not_null(s->mix);
    ts_fill_uniform(s->mix, nm, seed + 7, -1, 1);
}

static void net_free(seq_net *s)
{
    for (int i = 0; i < s->n_p; i++) ad_param_free(s->p[i]);
    free(s->mix);
}

/* One forward and backward of either graph on a tape of c's mode: the
 * states and the three gradients, as bytes. */
typedef struct run_out {
    unsigned char *bytes[5];
    size_t size[5];
} run_out;

static void keep_bytes(run_out *o, int i, ad_tensor *x)
{
    o->size[i] = ad_tensor_numel(x) * ad_dtype_size(ad_tensor_dtype(x));
    o->bytes[i] = malloc(o->size[i]);
    cr_assert_not_null(o->bytes[i]);
    memcpy(o->bytes[i], ad_tensor_data(x), o->size[i]);
}

static void run(seq_net *s, int plain, run_out *o)
{
    ad_tape_options opt = {0};
    opt.copy_grads = s->c->mode;
    ad_tape *t = ad_tape_new(&opt);
    cr_assert_not_null(t);
    for (int i = 0; i < s->n_p; i++) ad_param_zero_grad(s->p[i]);
    s->plain = plain;
    ad_tensor *loss = seq_loss(t, s);
    cr_assert_not_null(loss, "%s", ad_tape_message(t));
    cr_assert_eq(ad_backward(t, loss, NULL), AD_OK, "%s", ad_tape_message(t));
    keep_bytes(o, 0, s->states);
    for (int i = 0; i < s->n_p; i++) keep_bytes(o, i + 1, ad_param_grad(s->p[i]));
    ad_tape_free(t);
}

static void run_free(run_out *o, int n)
{
    for (int i = 0; i < n; i++) free(o->bytes[i]);
}

static const char *what[5] = {"states", "dgx", "dh0", "dw", "db"};

/* T, B, H; dtype; activation; flags; copy-gradient mode. Sizes from a
 * single unit to a step of 16 x 40 (the products take the kernel's small,
 * fixed and blocked paths). */
static seq_case cases[] = {
    {3, 1, 3, AD_F32, AD_RNN_TANH, 0, AD_COPY_GRADS_KEEP, 0},
    {3, 1, 3, AD_F64, AD_RNN_TANH, 0, AD_COPY_GRADS_KEEP, 0},
    {1, 2, 1, AD_F64, AD_RNN_TANH, AD_TRANS_B, AD_COPY_GRADS_KEEP, 0},
    {5, 4, 7, AD_F32, AD_RNN_RELU, 0, AD_COPY_GRADS_KEEP, 0},
    {5, 4, 7, AD_F64, AD_RNN_TANH, AD_TRANS_B, AD_COPY_GRADS_KEEP, 0},
    {4, 16, 40, AD_F32, AD_RNN_TANH, AD_TRANS_B, AD_COPY_GRADS_KEEP, 0},
    {4, 16, 40, AD_F64, AD_RNN_RELU, 0, AD_COPY_GRADS_KEEP, 0},
    {6, 3, 5, AD_F32, AD_RNN_TANH, 0, AD_COPY_GRADS_NORMS, 0},
    {6, 3, 5, AD_F64, AD_RNN_TANH, AD_TRANS_B, AD_COPY_GRADS_NONE, 0},
    {4, 16, 40, AD_F32, AD_RNN_TANH, 0, AD_COPY_GRADS_NORMS, 0},
    {3, 1, 3, AD_F32, 0, 0, AD_COPY_GRADS_KEEP, 1},
    {1, 2, 2, AD_F64, 0, AD_TRANS_B, AD_COPY_GRADS_KEEP, 1},
    {5, 4, 7, AD_F64, 0, 0, AD_COPY_GRADS_KEEP, 1},
    {4, 16, 40, AD_F32, 0, AD_TRANS_B, AD_COPY_GRADS_KEEP, 1},
    {4, 16, 40, AD_F64, 0, 0, AD_COPY_GRADS_NORMS, 1},
    {6, 3, 5, AD_F32, 0, AD_TRANS_B, AD_COPY_GRADS_NONE, 1},
};

ParameterizedTestParameters(ops_sequence, equals_the_steps)
{
    return ts_row_numbers(sizeof cases / sizeof cases[0]);
}

/* The states and the gradients of gx, h0 and the GRU's b are bit-equal on
 * every tape mode; the weight's gradient, which the node sums over the steps
 * in one product (the step-by-step graph in one per step, or on lean tapes
 * its own stacked product), agrees to rounding. */
ParameterizedTest(size_t *row, ops_sequence, equals_the_steps)
{
    const seq_case *c = &cases[*row];
    long before = ts_live_allocs();
    for (int release = 0; release < 2; release++) {
        seq_net s;
        net_new(&s, c, 40 + *row);
        s.release = release;
        run_out fused, plain;
        run(&s, 0, &fused);
        run(&s, 1, &plain);
        double tol = c->dtype == AD_F32 ? 1e-5 : 1e-13;
        for (int i = 0; i < s.n_p + 1; i++) {
            cr_assert_eq(fused.size[i], plain.size[i]);
            if (i < 3 || i == 4) { /* the states, dgx, dh0 and the GRU's db */
                cr_assert(!memcmp(fused.bytes[i], plain.bytes[i], fused.size[i]), "row %zu: %s differ (release %d)",
                          *row, what[i], release);
                continue;
            }
            size_t n = fused.size[i] / ad_dtype_size(c->dtype);
            for (size_t j = 0; j < n; j++) {
                double a = c->dtype == AD_F32 ? ((float *)fused.bytes[i])[j] : ((double *)fused.bytes[i])[j];
                double b = c->dtype == AD_F32 ? ((float *)plain.bytes[i])[j] : ((double *)plain.bytes[i])[j];
                cr_assert(fabs(a - b) <= tol * (1 + fabs(b)), "row %zu: %s[%zu] %.17g vs %.17g", *row, what[i], j, a, b);
            }
        }
        run_free(&fused, s.n_p + 1);
        run_free(&plain, s.n_p + 1);
        net_free(&s);
    }
    cr_assert_eq(ts_live_allocs(), before);
}

/* f64: against central differences and against forward mode, with respect
 * to gx, h0, w (and the GRU's b), for both activations, the GRU and both
 * layouts. */
Test(ops_sequence, f64_gradients_match_central_differences_and_forward_mode)
{
    static const seq_case rows[] = {
        {4, 2, 3, AD_F64, AD_RNN_TANH, 0, AD_COPY_GRADS_KEEP, 0},
        {4, 2, 3, AD_F64, AD_RNN_TANH, AD_TRANS_B, AD_COPY_GRADS_KEEP, 0},
        {3, 3, 4, AD_F64, AD_RNN_RELU, AD_TRANS_B, AD_COPY_GRADS_KEEP, 0},
        {2, 1, 2, AD_F64, AD_RNN_RELU, 0, AD_COPY_GRADS_KEEP, 0},
        {4, 2, 3, AD_F64, 0, 0, AD_COPY_GRADS_KEEP, 1},
        {3, 3, 2, AD_F64, 0, AD_TRANS_B, AD_COPY_GRADS_KEEP, 1},
    };
    long before = ts_live_allocs();
    for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++) {
        seq_net s;
        net_new(&s, &rows[r], 90 + r);
        ad_gradcheck_report rep;
        ad_error err;
        ad_status st = ad_gradcheck(seq_loss, &s, s.p, (size_t)s.n_p, NULL, &rep, &err);
        if (st != AD_OK) ad_gradcheck_print(&rep, stderr);
        cr_assert_eq(st, AD_OK, "row %zu: %s", r, err.msg);
        st = ad_gradcheck_exact(seq_loss, &s, s.p, (size_t)s.n_p, NULL, &rep, &err);
        if (st != AD_OK) ad_gradcheck_print(&rep, stderr);
        cr_assert_eq(st, AD_OK, "row %zu: exact: %s", r, err.msg);
        net_free(&s);
    }
    cr_assert_eq(ts_live_allocs(), before);
}

/* The recurrence by hand for one unit: h_k = tanh(gx_k + w h_{k-1}). */
Test(ops_sequence, one_unit_by_hand)
{
    ad_tape *t = ad_tape_new(NULL);
    const double gx[3] = {0.5, -0.25, 1.0}, h0 = 0.3, w = -0.7;
    ad_tensor *hs = ad_rnn_sequence(t, ad_from_f64(t, AD_F64, ad_shape2(3, 1), gx),
                                    ad_from_f64(t, AD_F64, ad_shape2(1, 1), &h0),
                                    ad_from_f64(t, AD_F64, ad_shape2(1, 1), &w), AD_RNN_TANH, 0);
    cr_assert_not_null(hs, "%s", ad_tape_message(t));
    double h = h0;
    for (int k = 0; k < 3; k++) {
        h = tanh(gx[k] + w * h);
        cr_assert(fabs(ad_tensor_get(hs, (size_t)k) - h) < 1e-15, "h_%d", k + 1);
    }
    ad_tape_free(t);
}

/* One GRU unit by hand (PyTorch's equations), two steps. */
Test(ops_sequence, one_gru_unit_by_hand)
{
    ad_tape *t = ad_tape_new(NULL);
    const double gx[6] = {0.5, -0.25, 1.0, -0.75, 0.3, 0.2}, h0 = 0.4, w[3] = {-0.7, 0.6, 0.9}, b[3] = {0.1, -0.2, 0.05};
    ad_tensor *hs = ad_gru_sequence(t, ad_from_f64(t, AD_F64, ad_shape2(2, 3), gx),
                                    ad_from_f64(t, AD_F64, ad_shape2(1, 1), &h0),
                                    ad_from_f64(t, AD_F64, ad_shape2(1, 3), w), ad_from_f64(t, AD_F64, ad_shape1(3), b), 0);
    cr_assert_not_null(hs, "%s", ad_tape_message(t));
    double h = h0;
    for (int k = 0; k < 2; k++) {
        const double *x = gx + 3 * k;
        double r = 1 / (1 + exp(-(x[0] + h * w[0] + b[0]))), z = 1 / (1 + exp(-(x[1] + h * w[1] + b[1])));
        double n = tanh(x[2] + r * (h * w[2] + b[2]));
        h = (1 - z) * n + z * h;
        cr_assert(fabs(ad_tensor_get(hs, (size_t)k) - h) < 1e-15, "h_%d: %.17g vs %.17g", k + 1,
                  ad_tensor_get(hs, (size_t)k), h);
    }
    ad_tape_free(t);
}

static ad_tensor *call_bad_gru(ad_tape *t, int i)
{
    ad_tensor *gx = ad_zeros(t, AD_F64, ad_shape2(6, 6)), *h0 = ad_zeros(t, AD_F64, ad_shape2(2, 2));
    ad_tensor *w = ad_zeros(t, AD_F64, ad_shape2(2, 6)), *b = ad_zeros(t, AD_F64, ad_shape1(6));
    switch (i) {
    case 0: return ad_gru_sequence(t, gx, h0, w, NULL, 0);
    case 1: return ad_gru_sequence(t, gx, h0, w, b, AD_TRANS_B);
    case 2: return ad_gru_sequence(t, gx, h0, w, ad_zeros(t, AD_F64, ad_shape1(4)), 0);
    case 3: return ad_gru_sequence(t, ad_zeros(t, AD_F64, ad_shape2(6, 4)), h0, w, b, 0);
    case 4: return ad_gru_sequence(t, gx, ad_zeros(t, AD_F64, ad_shape2(4, 2)), w, b, 0);
    case 5: return ad_gru_sequence(t, ad_zeros(t, AD_F64, ad_shape2(0, 6)), h0, w, b, 0);
    case 6: return ad_gru_sequence(t, gx, h0, w, b, AD_TRANS_A);
    case 7: return ad_gru_sequence(t, gx, h0, w, ad_zeros(t, AD_F32, ad_shape1(6)), 0);
    }
    return NULL;
}

static const ts_bad_case bad_gru[] = {
    {"NULL b_hh", AD_ERR_NULL, "gru_sequence: input 3 is NULL"},
    {"layout", AD_ERR_SHAPE, "gru_sequence: gx [6,6], h0 [2,2], w_hh [2,6], b_hh [6]: gx must be [T B, 3H]"},
    {"bias size", AD_ERR_SHAPE, "b_hh [4]"},
    {"gx width", AD_ERR_SHAPE, "gx [6,4]"},
    {"steps not whole", AD_ERR_SHAPE, "gru_sequence: gx [6,6] is not a whole number of steps of 4 rows"},
    {"empty sequence", AD_ERR_EMPTY, "gru_sequence: gx [0,6] is an empty sequence"},
    {"flags", AD_ERR_ARG, "gru_sequence: flags 1: only AD_TRANS_B applies"},
    {"dtype", AD_ERR_DTYPE, "gru_sequence: input 3 is f32 but input 0 is f64"},
};

Test(ops_sequence, gru_bad_inputs)
{
    long before = ts_live_allocs();
    ts_expect_tape_errors(call_bad_gru, bad_gru, (int)(sizeof bad_gru / sizeof bad_gru[0]));
    cr_assert_eq(ts_live_allocs(), before);
}

static ad_tensor *call_bad(ad_tape *t, int i)
{
    ad_tensor *gx = ad_zeros(t, AD_F64, ad_shape2(6, 3)), *h0 = ad_zeros(t, AD_F64, ad_shape2(2, 3));
    ad_tensor *w = ad_zeros(t, AD_F64, ad_shape2(3, 3));
    switch (i) {
    case 0: return ad_rnn_sequence(t, NULL, h0, w, AD_RNN_TANH, 0);
    case 1: return ad_rnn_sequence(t, gx, NULL, w, AD_RNN_TANH, 0);
    case 2: return ad_rnn_sequence(t, gx, h0, NULL, AD_RNN_TANH, 0);
    case 3: return ad_rnn_sequence(t, gx, h0, ad_zeros(t, AD_F64, ad_shape2(3, 4)), AD_RNN_TANH, 0);
    case 4: return ad_rnn_sequence(t, gx, ad_zeros(t, AD_F64, ad_shape2(2, 4)), w, AD_RNN_TANH, 0);
    case 5: return ad_rnn_sequence(t, gx, ad_zeros(t, AD_F64, ad_shape2(4, 3)), w, AD_RNN_TANH, 0);
    case 6: return ad_rnn_sequence(t, ad_zeros(t, AD_F64, ad_shape2(0, 3)), h0, w, AD_RNN_TANH, 0);
    case 7: return ad_rnn_sequence(t, gx, ad_zeros(t, AD_F64, ad_shape2(0, 3)), w, AD_RNN_TANH, 0);
    case 8: return ad_rnn_sequence(t, gx, h0, w, (ad_rnn_activation)5, 0);
    case 9: return ad_rnn_sequence(t, gx, h0, w, AD_RNN_TANH, AD_TRANS_A);
    case 10: return ad_rnn_sequence(t, gx, ad_zeros(t, AD_F32, ad_shape2(2, 3)), w, AD_RNN_TANH, 0);
    case 11: return ad_rnn_sequence(t, ad_zeros(t, AD_F64, ad_shape1(6)), h0, w, AD_RNN_TANH, 0);
    case 12: {
        ad_tape *other = ad_tape_new(NULL);
        ad_tensor *r = ad_rnn_sequence(t, gx, h0, ad_zeros(other, AD_F64, ad_shape2(3, 3)), AD_RNN_TANH, 0);
        ad_tape_free(other);
        return r;
    }
    }
    return NULL;
}

static const ts_bad_case bad[] = {
    {"NULL gx", AD_ERR_NULL, "rnn_sequence: input 0 is NULL"},
    {"NULL h0", AD_ERR_NULL, "rnn_sequence: input 1 is NULL"},
    {"NULL w", AD_ERR_NULL, "rnn_sequence: input 2 is NULL"},
    {"w not square", AD_ERR_SHAPE, "rnn_sequence: gx [6,3], h0 [2,3], w_hh [3,4]: gx must be [T B, H]"},
    {"h0 width", AD_ERR_SHAPE, "h0 [2,4]"},
    {"steps not whole", AD_ERR_SHAPE, "rnn_sequence: gx [6,3] is not a whole number of steps of 4 rows"},
    {"empty sequence", AD_ERR_EMPTY, "rnn_sequence: gx [0,3] is an empty sequence"},
    {"empty state", AD_ERR_EMPTY, "rnn_sequence: state h0 [0,3] is empty"},
    {"activation", AD_ERR_ARG, "rnn_sequence: unknown activation 5"},
    {"flags", AD_ERR_ARG, "rnn_sequence: flags 1: only AD_TRANS_B applies"},
    {"dtype", AD_ERR_DTYPE, "rnn_sequence: input 1 is f32 but input 0 is f64"},
    {"rank 1 gx", AD_ERR_SHAPE, "rnn_sequence: gx [6]"},
    {"foreign tape", AD_ERR_FOREIGN, "rnn_sequence: input 2 is not a tensor of this tape"},
};

Test(ops_sequence, bad_inputs)
{
    long before = ts_live_allocs();
    ts_expect_tape_errors(call_bad, bad, (int)(sizeof bad / sizeof bad[0]));
    cr_assert_eq(ts_live_allocs(), before);
}
