/*
 * test_forward.c - forward mode (ad_jvp): tangents by hand, K directions in
 * one walk, f32, detach, reset, lean tapes, custom ops with and without a
 * jvp callback, bad input, allocation failures; and the exact check catching
 * a backward bug of relative size 1e-7 that finite differences pass.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "internal.h"
#include "testsupport.h"

/* y = tanh(x) * x: dy = ((1 - tanh^2 x) x + tanh x) dx, elementwise. */
Test(forward, tangent_by_hand)
{
    long before = ts_live_allocs();
    ad_tape *t = ad_tape_new(NULL);
    double xv[3] = {0.3, -1.2, 2.0}, u[3] = {1.0, 0.5, -2.0};
    ad_tensor *x = ad_variable(t, AD_F64, ad_shape1(3), xv);
    ad_tensor *y = ad_mul(t, ad_tanh(t, x), x);
    ad_tensor *c = ad_full(t, AD_F64, ad_shape1(3), 2.0), *z = ad_mul(t, c, c); /* no seed reaches it */
    ad_tangent_seed s = {x, NULL, u};
    cr_assert_eq(ad_jvp(t, &s, 1, 1), AD_OK, "%s", ad_tape_message(t));
    const double *dy = ad_tensor_tangent(y, 0);
    cr_assert_not_null(dy);
    for (int i = 0; i < 3; i++) {
        double th = tanh(xv[i]), want = ((1 - th * th) * xv[i] + th) * u[i];
        cr_assert(fabs(dy[i] - want) <= 1e-15 * fabs(want) + 1e-300, "%d: %.17g vs %.17g", i, dy[i], want);
    }
    cr_assert_null(ad_tensor_tangent(z, 0), "a tensor no seed reaches has a zero (NULL) tangent");
    cr_assert_null(ad_tensor_tangent(y, 1), "k out of range");
    cr_assert_null(ad_tensor_tangent(y, -1));
    cr_assert_null(ad_tensor_tangent(NULL, 0));
    ad_tape_reset(t);
    cr_assert_null(ad_tensor_tangent(y, 0), "a reset forgets the tangents");
    ad_tape_free(t);
    cr_assert_eq(ts_live_allocs(), before);
}

static ad_tensor *net(ad_tape *t, ad_param *w, ad_param *b, ad_dtype dt, ad_tensor **x_out)
{
    double xv[12];
    ts_fill_uniform(xv, 12, 3, -1, 1);
    ad_tensor *x = ad_from_f64(t, dt, ad_shape2(3, 4), xv);
    if (x_out) *x_out = x;
    ad_tensor *h = ad_tanh(t, ad_addmm(t, ad_use(t, b), x, ad_use(t, w), 0));
    h = ad_sigmoid(t, ad_matmul(t, h, ad_use(t, w), AD_TRANS_B));
    return ad_log_softmax(t, ad_matmul(t, h, ad_use(t, w), 0), 1);
}

/* K = 5 directions in one walk give what five walks of one direction give,
 * bit for bit in the same dtype; seeding the parameter seeds all its copies. */
Test(forward, k_directions_equal_single_walks)
{
    long before = ts_live_allocs();
    ad_param *w = ad_param_new("w", AD_F64, ad_shape2(4, 4), NULL), *b = ad_param_new("b", AD_F64, ad_shape1(4), NULL);
    ts_fill_uniform(ad_tensor_f64(ad_param_value(w)), 16, 1, -1, 1);
    ts_fill_uniform(ad_tensor_f64(ad_param_value(b)), 4, 2, -1, 1);
    enum { K = 5 };
    double u[K * 16], ub[K * 4];
    ts_fill_uniform(u, K * 16, 4, -1, 1);
    ts_fill_uniform(ub, K * 4, 5, -1, 1);
    ad_tape *t = ad_tape_new(NULL);
    ad_tensor *y = net(t, w, b, AD_F64, NULL);
    ad_tangent_seed s[2] = {{NULL, w, u}, {NULL, b, ub}};
    cr_assert_eq(ad_jvp(t, s, 2, K), AD_OK, "%s", ad_tape_message(t));
    double all[K][12];
    for (int k = 0; k < K; k++) memcpy(all[k], ad_tensor_tangent(y, k), sizeof all[k]);
    for (int k = 0; k < K; k++) {
        ad_tangent_seed one[2] = {{NULL, w, u + k * 16}, {NULL, b, ub + k * 4}};
        cr_assert_eq(ad_jvp(t, one, 2, 1), AD_OK, "%s", ad_tape_message(t));
        const double *dy = ad_tensor_tangent(y, 0);
        for (int i = 0; i < 12; i++) cr_assert_eq(dy[i], all[k][i], "k %d i %d", k, i);
    }
    ad_tape_free(t);
    ad_param_free(w);
    ad_param_free(b);
    cr_assert_eq(ts_live_allocs(), before);
}

/* f32 tangents follow the f64 ones to f32 rounding; a lean tape (packed
 * weights, no per-copy buffers) gives the plain tape's tangents. */
Test(forward, f32_and_lean_tapes)
{
    long before = ts_live_allocs();
    double wv[16], bv[4], u[16];
    ts_fill_uniform(wv, 16, 1, -1, 1);
    ts_fill_uniform(bv, 4, 2, -1, 1);
    ts_fill_uniform(u, 16, 4, -1, 1);
    double ref[12];
    for (int pass = 0; pass < 3; pass++) { /* f64 plain, f64 lean, f32 */
        ad_dtype dt = pass == 2 ? AD_F32 : AD_F64;
        ad_param *w = ad_param_new("w", dt, ad_shape2(4, 4), NULL), *b = ad_param_new("b", dt, ad_shape1(4), NULL);
        float uf[16];
        for (int i = 0; i < 16; i++) {
            if (dt == AD_F32) ad_tensor_f32(ad_param_value(w))[i] = (float)wv[i];
            else ad_tensor_f64(ad_param_value(w))[i] = wv[i];
            uf[i] = (float)u[i];
        }
        for (int i = 0; i < 4; i++) {
            if (dt == AD_F32) ad_tensor_f32(ad_param_value(b))[i] = (float)bv[i];
            else ad_tensor_f64(ad_param_value(b))[i] = bv[i];
        }
        ad_tape_options o = {0};
        o.copy_grads = pass == 1 ? AD_COPY_GRADS_NORMS : AD_COPY_GRADS_KEEP;
        ad_tape *t = ad_tape_new(&o);
        ad_tensor *y = net(t, w, b, dt, NULL);
        ad_tangent_seed s = {NULL, w, dt == AD_F32 ? (const void *)uf : (const void *)u};
        cr_assert_eq(ad_jvp(t, &s, 1, 1), AD_OK, "%s", ad_tape_message(t));
        for (int i = 0; i < 12; i++) {
            double v = dt == AD_F32 ? ((const float *)ad_tensor_tangent(y, 0))[i] : ((const double *)ad_tensor_tangent(y, 0))[i];
            if (pass == 0) ref[i] = v;
            else if (pass == 1) cr_assert(fabs(v - ref[i]) <= 1e-14 * (1 + fabs(ref[i])), "lean %d: %g vs %g", i, v, ref[i]);
            else cr_assert(fabs(v - ref[i]) <= 1e-5 * (1 + fabs(ref[i])), "f32 %d: %g vs %g", i, v, ref[i]);
        }
        ad_tape_free(t);
        ad_param_free(w);
        ad_param_free(b);
    }
    cr_assert_eq(ts_live_allocs(), before);
}

/* Detach stops tangents; no-grad regions do not; a seeded input works. */
Test(forward, detach_no_grad_and_inputs)
{
    ad_tape *t = ad_tape_new(NULL);
    double xv[2] = {0.5, -0.25}, u[2] = {1, 2};
    ad_tensor *x = ad_from_data(t, AD_F64, ad_shape1(2), xv); /* a constant input */
    ad_tensor *d = ad_exp(t, ad_detach(t, x));
    int was = ad_tape_set_grad_enabled(t, 0);
    ad_tensor *ng = ad_mul_scalar(t, x, 3.0);
    ad_tape_set_grad_enabled(t, was);
    ad_tangent_seed s = {x, NULL, u};
    cr_assert_eq(ad_jvp(t, &s, 1, 1), AD_OK, "%s", ad_tape_message(t));
    cr_assert_null(ad_tensor_tangent(d, 0));
    const double *dn = ad_tensor_tangent(ng, 0);
    cr_assert_not_null(dn);
    cr_assert_eq(dn[0], 3.0);
    cr_assert_eq(dn[1], 6.0);
    ad_tape_free(t);
}

/* ---- custom ops ---------------------------------------------------------------------- */

static ad_status same_shape(void *ctx, ad_tensor *const *in, int n, ad_shape *out, char *msg, size_t m)
{
    (void)ctx, (void)n, (void)msg, (void)m;
    *out = ad_tensor_shape(in[0]);
    return AD_OK;
}
static void twice_fwd(void *ctx, ad_tensor *const *in, int n, ad_tensor *out)
{
    (void)ctx, (void)n;
    for (size_t i = 0; i < ad_tensor_numel(out); i++) ad_tensor_f64(out)[i] = 2 * ad_tensor_f64(in[0])[i];
}
/* The planted bug: the gradient is off by a relative 1e-7. */
static void twice_bwd_slightly_wrong(void *ctx, ad_tensor *const *in, int n, ad_tensor *out, ad_tensor *gout,
                                     ad_tensor *const *gin)
{
    (void)ctx, (void)in, (void)n, (void)out;
    if (gin[0])
        for (size_t i = 0; i < ad_tensor_numel(gout); i++)
            ad_tensor_f64(gin[0])[i] += 2 * (1 + 1e-7) * ad_tensor_f64(gout)[i];
}
static void twice_bwd(void *ctx, ad_tensor *const *in, int n, ad_tensor *out, ad_tensor *gout, ad_tensor *const *gin)
{
    (void)ctx, (void)in, (void)n, (void)out;
    if (gin[0])
        for (size_t i = 0; i < ad_tensor_numel(gout); i++) ad_tensor_f64(gin[0])[i] += 2 * ad_tensor_f64(gout)[i];
}
static void twice_jvp(void *ctx, ad_tensor *const *in, int n, ad_tensor *out, ad_tensor *const *tin, ad_tensor *tout)
{
    (void)ctx, (void)in, (void)n, (void)out;
    for (size_t i = 0; i < ad_tensor_numel(tout); i++) ad_tensor_f64(tout)[i] = tin[0] ? 2 * ad_tensor_f64(tin[0])[i] : 0;
}
static const ad_custom_op twice_buggy = {"twice_buggy", 1, same_shape, twice_fwd, twice_bwd_slightly_wrong, twice_jvp};
static const ad_custom_op twice_ok = {"twice_ok", 1, same_shape, twice_fwd, twice_bwd, twice_jvp};
static const ad_custom_op twice_no_jvp = {"twice_no_jvp", 1, same_shape, twice_fwd, twice_bwd, NULL};

typedef struct cctx {
    ad_param *w;
    const ad_custom_op *op;
} cctx;

static ad_tensor *custom_graph(ad_tape *t, void *vc)
{
    cctx *c = vc;
    ad_tensor *s = ad_ones(t, AD_F64, ad_shape1(3));
    for (int k = 0; k < 3; k++) {
        ad_tensor *wk = ad_use(t, c->w);
        if (k == 1) wk = ad_custom(t, c->op, NULL, &wk, 1);
        s = ad_tanh(t, ad_mul(t, s, wk));
    }
    return ad_sum(t, s, AD_AXIS_ALL, 0);
}

/* The bug of relative size 1e-7 passes finite differences (tolerance 1e-3
 * relative) and fails the exact check (1e-12) with a relative error of about
 * 1e-7; the same op with a right backward passes both. */
Test(forward, exact_check_catches_a_1e7_bug_finite_differences_miss)
{
    long before = ts_live_allocs();
    ad_param *w = ad_param_new("w", AD_F64, ad_shape1(3), NULL);
    double *wv = ad_tensor_f64(ad_param_value(w));
    wv[0] = 0.7, wv[1] = -0.4, wv[2] = 0.2;
    cctx c = {w, &twice_buggy};
    ad_gradcheck_report rep;
    ad_error err;
    cr_assert_eq(ad_gradcheck(custom_graph, &c, &w, 1, NULL, &rep, &err), AD_OK,
                 "finite differences miss the bug: %s", err.msg);
    ad_status st = ad_gradcheck_exact(custom_graph, &c, &w, 1, NULL, &rep, &err);
    cr_assert_eq(st, AD_ERR_MISMATCH, "the exact check catches it");
    cr_assert(rep.entries[0].rel_err > 1e-9 && rep.entries[0].rel_err < 1e-6, "rel err %g", rep.entries[0].rel_err);
    ad_gradcheck_entry e;
    cr_assert_eq(ad_gradcheck_exact_copy(custom_graph, &c, w, 1, NULL, &e, &err), AD_ERR_MISMATCH, "the buggy step");
    cr_assert_eq(ad_gradcheck_exact_copy(custom_graph, &c, w, 2, NULL, &e, &err), AD_OK, "a clean step: %s", err.msg);
    c.op = &twice_ok;
    st = ad_gradcheck_exact(custom_graph, &c, &w, 1, NULL, &rep, &err);
    cr_assert_eq(st, AD_OK, "%s (rel %g)", err.msg, rep.entries[0].rel_err);
    cr_assert(rep.entries[0].rel_err <= 1e-12);
    ad_param_free(w);
    cr_assert_eq(ts_live_allocs(), before);
}

Test(forward, custom_op_without_jvp_is_a_clear_error)
{
    ad_param *w = ad_param_new("w", AD_F64, ad_shape1(3), NULL);
    cctx c = {w, &twice_no_jvp};
    ad_gradcheck_report rep;
    ad_error err;
    cr_assert_eq(ad_gradcheck_exact(custom_graph, &c, &w, 1, NULL, &rep, &err), AD_ERR_STATE);
    cr_assert(strstr(err.msg, "twice_no_jvp") && strstr(err.msg, "jvp"), "%s", err.msg);
    ad_param_free(w);
}

/* ---- bad input ----------------------------------------------------------------------- */

Test(forward, bad_input)
{
    long before = ts_live_allocs();
    double u[4] = {1, 2, 3, 4};
    cr_assert_eq(ad_jvp(NULL, NULL, 0, 1), AD_ERR_NULL);
    struct {
        int k;
        int which; /* 0 good seed, 1 non-leaf, 2 both, 3 neither, 4 dot NULL, 5 foreign, 6 seeds NULL */
        ad_status want;
        const char *frag;
    } cases[] = {{0, 0, AD_ERR_ARG, "k = 0"},           {AD_JVP_MAX_K + 1, 0, AD_ERR_ARG, "directions"},
                 {1, 1, AD_ERR_ARG, "not a leaf"},      {1, 2, AD_ERR_ARG, "exactly one"},
                 {1, 3, AD_ERR_ARG, "exactly one"},     {1, 4, AD_ERR_NULL, "dot is NULL"},
                 {1, 5, AD_ERR_FOREIGN, "not on this tape"}, {1, 6, AD_ERR_NULL, "seeds is NULL"}};
    ad_param *p = ad_param_new("p", AD_F64, ad_shape1(4), NULL);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ad_tape *t = ad_tape_new(NULL), *other = ad_tape_new(NULL);
        ad_tensor *x = ad_variable(t, AD_F64, ad_shape1(4), u), *y = ad_exp(t, x);
        ad_tensor *z = ad_variable(other, AD_F64, ad_shape1(4), u);
        ad_tangent_seed s = {x, NULL, u};
        if (cases[i].which == 1) s.x = y;
        if (cases[i].which == 2) s.param = p;
        if (cases[i].which == 3) s.x = NULL;
        if (cases[i].which == 4) s.dot = NULL;
        if (cases[i].which == 5) s.x = z;
        ad_status st = ad_jvp(t, cases[i].which == 6 ? NULL : &s, 1, cases[i].k);
        cr_assert_eq(st, cases[i].want, "case %zu: %s", i, ad_tape_message(t));
        cr_assert(strstr(ad_tape_message(t), cases[i].frag), "case %zu: %s", i, ad_tape_message(t));
        cr_assert_eq(ad_jvp(t, &s, 1, 1), cases[i].want, "sticky");
        ad_tape_free(t);
        ad_tape_free(other);
    }
    ad_gradcheck_report rep;
    ad_error err;
    ad_param *f32 = ad_param_new("f", AD_F32, ad_shape1(2), NULL);
    cr_assert_eq(ad_gradcheck_exact(NULL, NULL, &p, 1, NULL, &rep, &err), AD_ERR_NULL);
    cr_assert_eq(ad_gradcheck_exact(custom_graph, NULL, &p, 0, NULL, &rep, &err), AD_ERR_ARG);
    cr_assert_eq(ad_gradcheck_exact(custom_graph, NULL, &f32, 1, NULL, &rep, &err), AD_ERR_DTYPE);
    cr_assert(strstr(err.msg, "f32"), "%s", err.msg);
    ad_gradcheck_entry e;
    cr_assert_eq(ad_gradcheck_exact_copy(custom_graph, NULL, NULL, 0, NULL, &e, &err), AD_ERR_NULL);
    cr_assert_eq(ad_gradcheck_exact_copy(custom_graph, NULL, f32, 0, NULL, &e, &err), AD_ERR_DTYPE);
    ad_param_free(p);
    ad_param_free(f32);
    cr_assert_eq(ts_live_allocs(), before);
}

/* An allocation failure anywhere in a walk is AD_ERR_NOMEM on the tape, and
 * nothing leaks. */
Test(forward, allocation_failures)
{
    long before = ts_live_allocs();
    ad_param *w = ad_param_new("w", AD_F64, ad_shape2(4, 4), NULL), *b = ad_param_new("b", AD_F64, ad_shape1(4), NULL);
    enum { K = 200 }; /* tangents larger than a chunk */
    static double u[16 * K];
    ts_fill_uniform(u, 16 * K, 4, -1, 1);
    int failed = 0;
    for (long n = 1; n < 40; n++) {
        ts_counting_alloc ca = {0};
        ad_tape_options o = ts_counting_options(&ca);
        o.chunk_bytes = 4096; /* each tangent block needs a chunk of its own */
        ad_tape *t = ad_tape_new(&o);
        cr_assert_not_null(t);
        ad_tensor *y = net(t, w, b, AD_F64, NULL);
        cr_assert_not_null(y, "%s", ad_tape_message(t));
        ca.fail_at = ca.calls + n;
        ad_tangent_seed s = {NULL, w, u};
        ad_status st = ad_jvp(t, &s, 1, K);
        cr_assert(st == AD_OK || st == AD_ERR_NOMEM, "n %ld: %s", n, ad_status_name(st));
        failed |= st == AD_ERR_NOMEM;
        ad_tape_free(t);
    }
    cr_assert(failed, "some walk met an injected failure");
    ad_param_free(w);
    ad_param_free(b);
    cr_assert_eq(ts_live_allocs(), before);
}

/* The guards of data a rule reads: the engine never releases such data (it
 * refuses ad_tape_release on it), so the test sets the states by hand to
 * prove that a walk meeting them refuses with the op's name instead of
 * reading freed memory. */
Test(forward, missing_data_is_refused_naming_the_op)
{
    double xv[4] = {0.1, 0.2, 0.3, 0.4}, u[4] = {1, 1, 1, 1};
    ad_tape *t = ad_tape_new(NULL);
    ad_tensor *x = ad_variable(t, AD_F64, ad_shape2(1, 4), xv);
    ad_tensor *y = ad_tanh(t, x);
    cr_assert_not_null(ad_mul_scalar(t, y, 2.0));
    y->released = 1;
    ad_tangent_seed s = {x, NULL, u};
    cr_assert_eq(ad_jvp(t, &s, 1, 1), AD_ERR_STATE);
    cr_assert(strstr(ad_tape_message(t), "tanh") && strstr(ad_tape_message(t), "released"), "%s",
              ad_tape_message(t));
    y->released = 0;
    ad_tape_reset(t);

    double g[4] = {0.5, -0.5, 0.25, 1.0}, c0[1] = {0.3};
    ad_tensor *gx = ad_variable(t, AD_F64, ad_shape2(1, 4), g), *gh = ad_zeros(t, AD_F64, ad_shape2(1, 4));
    ad_tensor *c = ad_from_data(t, AD_F64, ad_shape2(1, 1), c0);
    ad_tensor *cn = ad_lstm_cell_state(t, gx, gh, c);
    cr_assert_not_null(cn, "%s", ad_tape_message(t));
    cn->node->saved = NULL; /* as a tape that kept no gate planes would leave it */
    s.x = gx;
    cr_assert_eq(ad_jvp(t, &s, 1, 1), AD_ERR_STATE);
    cr_assert(strstr(ad_tape_message(t), "lstm_cell_state") && strstr(ad_tape_message(t), "not kept"), "%s",
              ad_tape_message(t));
    ad_tape_free(t);
}
