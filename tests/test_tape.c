/*
 * test_tape.c - the tape: arena, op table, temporal copies, backward mechanics.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "testsupport.h"

Test(tape, op_table_rows_are_complete)
{
    for (int op = 0; op < AD_OP_COUNT; op++) {
        const ad__op_def *d = &ad__ops[op];
        cr_assert_not_null(d->name, "op %d has no name", op);
        cr_assert_not_null(d->shape, "op %s has no shape rule", d->name);
        cr_assert_not_null(d->forward, "op %s has no forward", d->name);
        cr_assert_not_null(d->backward, "op %s has no backward", d->name);
        cr_assert_not_null(d->jvp, "op %s has no forward-mode rule (jvp)", d->name);
        /* inputs past the node's three inline slots go to an arena list; the
         * keeps bits name inputs 0..5 */
        cr_assert(d->arity >= -1 && d->arity <= 6, "op %s has arity %d", d->name, d->arity);
        for (int other = 0; other < op; other++)
            cr_assert_str_neq(d->name, ad__ops[other].name, "two ops are named %s", d->name);
    }
}

Test(tape, new_free_reset_no_leak)
{
    long before = ts_live_allocs();
    ad_tape *t = ad_tape_new(NULL);
    cr_assert_not_null(t);
    cr_assert_eq(ad_tape_status(t), AD_OK);
    cr_assert_str_eq(ad_tape_message(t), "");
    ad_tensor *x = ad_zeros(t, AD_F32, ad_shape2(3, 4));
    cr_assert_not_null(x);
    cr_assert_eq(ad_tape_size(t), 1);
    cr_assert_eq(ad_tensor_numel(x), 12);
    cr_assert(ad_tape_bytes_used(t) >= 48);
    ad_tape_reset(t);
    cr_assert_eq(ad_tape_size(t), 0);
    cr_assert_eq(ad_tape_bytes_used(t), 0);
    cr_assert(ad_tape_bytes_reserved(t) > 0);
    ad_tape_free(t);
    cr_assert_eq(ts_live_allocs(), before);
}

Test(tape, options_need_both_hooks)
{
    ad_tape_options o = {0};
    o.alloc = ts_counting_alloc_fn;
    cr_assert_null(ad_tape_new(&o));
}

Test(tape, leaves_hold_values)
{
    ad_tape *t = ad_tape_new(NULL);
    double d[6] = {1, 2, 3, 4, 5, 6};
    ad_tensor *a = ad_from_f64(t, AD_F32, ad_shape2(2, 3), d);
    ad_tensor *b = ad_full(t, AD_F64, ad_shape1(4), 2.5);
    ad_tensor *c = ad_ones(t, AD_F64, ad_shape0());
    cr_assert_float_eq(ad_tensor_f32(a)[5], 6.0f, 0);
    cr_assert_null(ad_tensor_f64(a));
    cr_assert_float_eq(ad_tensor_get(b, 3), 2.5, 0);
    cr_assert_float_eq(ad_tensor_item(c), 1.0, 0);
    cr_assert(isnan(ad_tensor_item(b)));
    cr_assert_eq(ad_tensor_dim(a, -1), 3);
    ad_rng r;
    ad_rng_seed(&r, 1, 0);
    ad_tensor *u = ad_rand_uniform(t, &r, AD_F64, ad_shape1(1000), -2, 3);
    double lo = 1e9, hi = -1e9, mean = 0;
    for (size_t i = 0; i < 1000; i++) {
        double v = ad_tensor_get(u, i);
        lo = fmin(lo, v), hi = fmax(hi, v), mean += v / 1000;
    }
    cr_assert(lo >= -2 && hi < 3);
    cr_assert(fabs(mean - 0.5) < 0.2, "mean %g", mean);
    ad_tensor *z = ad_rand_normal(t, &r, AD_F64, ad_shape1(4000), 1, 2);
    double m = 0, v2 = 0;
    for (size_t i = 0; i < 4000; i++) m += ad_tensor_get(z, i) / 4000;
    for (size_t i = 0; i < 4000; i++) v2 += pow(ad_tensor_get(z, i) - m, 2) / 4000;
    cr_assert(fabs(m - 1) < 0.15 && fabs(sqrt(v2) - 2) < 0.15, "mean %g std %g", m, sqrt(v2));
    ad_tape_free(t);
}

/* The matmul chain W^(1..T) of one parameter: copies' gradients sum to the parameter's. */
Test(tape, copies_sum_to_parameter_gradient)
{
    long before = ts_live_allocs();
    ad_error err;
    ad_param *w = ad_param_new("W", AD_F64, ad_shape2(3, 3), &err);
    cr_assert_not_null(w);
    ts_fill_uniform(ad_tensor_f64(ad_param_value(w)), 9, 3, -0.9, 0.9);
    ad_tape *t = ad_tape_new(NULL);
    double x0[3] = {0.3, -0.2, 0.5};
    ad_tensor *h = ad_from_data(t, AD_F64, ad_shape2(1, 3), x0);
    enum { T = 6 };
    for (int i = 0; i < T; i++) h = ad_matmul(t, h, ad_use(t, w), 0);
    ad_tensor *up = ad_ones(t, AD_F64, ad_shape2(1, 3));
    cr_assert_eq(ad_backward(t, h, up), AD_OK, "%s", ad_tape_message(t));
    ad_tensor *copies[T];
    cr_assert_eq(ad_tape_copies(t, w, copies, T), T);
    double *gp = ad_tensor_f64(ad_param_grad(w));
    for (int e = 0; e < 9; e++) {
        /* Backward adds the copies in reverse recording order; summing in
         * that order gives the parameter's gradient to the last bit. */
        double s = 0;
        for (int i = T; i-- > 0;) s += ad_tensor_grad_f64(copies[i])[e];
        cr_assert_eq(s, gp[e], "element %d: sum of copies %.17g, parameter %.17g", e, s, gp[e]);
    }
    /* The copies differ: the gradient depends on the step. */
    cr_assert_neq(ad_tensor_grad_f64(copies[0])[0], ad_tensor_grad_f64(copies[T - 1])[0]);
    ad_tape_free(t);
    ad_param_free(w);
    cr_assert_eq(ts_live_allocs(), before);
}

Test(tape, gradients_accumulate_until_zeroed)
{
    ad_param *w = ad_param_new("w", AD_F64, ad_shape2(1, 1), NULL);
    ad_tensor_f64(ad_param_value(w))[0] = 3;
    ad_tape *t = ad_tape_new(NULL);
    double one = 2;
    for (int k = 1; k <= 3; k++) {
        ad_tensor *x = ad_from_data(t, AD_F64, ad_shape2(1, 1), &one);
        ad_tensor *y = ad_matmul(t, x, ad_use(t, w), 0);
        cr_assert_eq(ad_backward(t, y, NULL), AD_OK);
        cr_assert_float_eq(ad_tensor_f64(ad_param_grad(w))[0], 2.0 * k, 0);
        ad_tape_reset(t);
    }
    ad_param_zero_grad(w);
    cr_assert_float_eq(ad_tensor_f64(ad_param_grad(w))[0], 0.0, 0);
    ad_tape_free(t);
    ad_param_free(w);
}

Test(tape, backward_twice_recomputes_intermediates)
{
    ad_param *w = ad_param_new("w", AD_F64, ad_shape2(1, 1), NULL);
    ad_tensor_f64(ad_param_value(w))[0] = 3;
    ad_tape *t = ad_tape_new(NULL);
    double two = 2;
    ad_tensor *x = ad_from_data(t, AD_F64, ad_shape2(1, 1), &two);
    ad_tensor *wu = ad_use(t, w);
    ad_tensor *y = ad_matmul(t, ad_matmul(t, x, wu, 0), wu, 0); /* 2 w^2 */
    cr_assert_eq(ad_backward(t, y, NULL), AD_OK);
    cr_assert_float_eq(ad_tensor_grad_f64(wu)[0], 12.0, 1e-12);
    cr_assert_eq(ad_backward(t, y, NULL), AD_OK);
    cr_assert_float_eq(ad_tensor_grad_f64(wu)[0], 12.0, 1e-12); /* fresh per pass */
    cr_assert_float_eq(ad_tensor_f64(ad_param_grad(w))[0], 24.0, 1e-12); /* accumulates */
    ad_tape_free(t);
    ad_param_free(w);
}

Test(tape, no_grad_and_detach_stop_gradients)
{
    ad_param *w = ad_param_new("w", AD_F64, ad_shape2(1, 1), NULL);
    ad_tensor_f64(ad_param_value(w))[0] = 3;
    ad_tape *t = ad_tape_new(NULL);
    double two = 2;
    ad_tensor *x = ad_from_data(t, AD_F64, ad_shape2(1, 1), &two);
    int was = ad_tape_set_grad_enabled(t, 0);
    cr_assert_eq(was, 1);
    ad_tensor *y = ad_matmul(t, x, ad_use(t, w), 0);
    ad_tape_set_grad_enabled(t, 1);
    cr_assert_eq(ad_backward(t, y, NULL), AD_ERR_STATE);
    ad_tape_reset(t);
    ad_tensor *wu = ad_use(t, w);
    x = ad_from_data(t, AD_F64, ad_shape2(1, 1), &two);
    ad_tensor *h = ad_detach(t, ad_matmul(t, x, wu, 0));
    ad_tensor *z = ad_matmul(t, h, wu, 0); /* gradient reaches w only through the second use */
    cr_assert_eq(ad_backward(t, z, NULL), AD_OK);
    cr_assert_float_eq(ad_tensor_f64(ad_param_grad(w))[0], 6.0, 1e-12);
    cr_assert_null(ad_tensor_grad_f64(h));
    ad_tape_free(t);
    ad_param_free(w);
}

/* 100,000 nodes in one chain: backward is a loop, not recursion. */
Test(tape, long_chain_backward)
{
    ad_param *w = ad_param_new("w", AD_F64, ad_shape2(1, 1), NULL);
    ad_tensor_f64(ad_param_value(w))[0] = 1.0;
    ad_tape *t = ad_tape_new(NULL);
    double one = 1;
    ad_tensor *h = ad_from_data(t, AD_F64, ad_shape2(1, 1), &one);
    ad_tensor *wu = ad_use(t, w);
    for (int i = 0; i < 100000; i++) h = ad_matmul(t, h, wu, 0);
    cr_assert_eq(ad_backward(t, h, NULL), AD_OK, "%s", ad_tape_message(t));
    cr_assert_float_eq(ad_tensor_f64(ad_param_grad(w))[0], 100000.0, 1e-6);
    ad_tape_free(t);
    ad_param_free(w);
}

Test(tape, labels_are_kept_per_node)
{
    ad_tape *t = ad_tape_new(NULL);
    ad_tape_set_label(t, "cell t=3");
    ad_tensor *a = ad_zeros(t, AD_F32, ad_shape1(2));
    ad_tape_set_label(t, NULL);
    ad_tensor *b = ad_zeros(t, AD_F32, ad_shape1(2));
    cr_assert_str_eq(a->node->label, "cell t=3");
    cr_assert_null(b->node->label);
    ad_tape_free(t);
}

/*
 * On a lean tape the weight gradients of per-step products (few rows,
 * weights of 4096+ elements) are stacked and computed once at the end of
 * backward, AD__TUNE_STACK_ROWS (512) rows at a time: the same gradients as a tape
 * with per-copy buffers, within f64 rounding, for a weight used plainly, used
 * transposed, and with a transposed left operand; 70 steps of 32 rows take
 * several stacked products.
 */
/* Three f64 [h, h] weights W, U, V, uniform in [-0.15, 0.15] from seeds
 * seed, seed + 1, seed + 2. */
static void hh_params(ad_param **p, int64_t h, uint64_t seed)
{
    const char *names[3] = {"W", "U", "V"};
    for (int i = 0; i < 3; i++) {
        p[i] = ad_param_new(names[i], AD_F64, ad_shape2(h, h), NULL);
        ts_fill_uniform(ad_tensor_f64(ad_param_value(p[i])), (size_t)(h * h), seed + (uint64_t)i, -0.15, 0.15);
    }
}

static unsigned stacked_grads_off(int lean, unsigned fast_off, ad_param *const *p, const double *x, double *out)
{
    enum { T = 70, B = 32, H = 64 };
    ad_tape_options o = {0};
    o.copy_grads = lean ? AD_COPY_GRADS_NORMS : AD_COPY_GRADS_KEEP;
    o.fast_off = fast_off;
    ad_tape *t = ad_tape_new(&o);
    cr_assert_not_null(t);
    unsigned used = ad_tape_mode(t).fast_paths;
    for (int i = 0; i < 3; i++) ad_param_zero_grad(p[i]);
    ad_tensor *h = ad_zeros(t, AD_F64, ad_shape2(B, H)), *loss = NULL;
    for (int s = 0; s < T; s++) {
        ad_tensor *xs = ad_from_data(t, AD_F64, ad_shape2(H, B), x + (size_t)s * H * B); /* stored [H, B] */
        ad_tensor *a = ad_matmul(t, xs, ad_use(t, p[0]), AD_TRANS_A);       /* x^T W */
        ad_tensor *b = ad_matmul(t, h, ad_use(t, p[1]), AD_TRANS_B);        /* h U^T */
        ad_tensor *c = ad_matmul(t, ad_tanh(t, h), ad_use(t, p[2]), 0);     /* tanh(h) V */
        h = ad_tanh(t, ad_add(t, ad_add(t, a, b), ad_mul_scalar(t, c, 0.5)));
        ad_tensor *l = ad_sum(t, ad_mul(t, h, h), AD_AXIS_ALL, 0);
        loss = loss ? ad_add(t, loss, l) : l;
    }
    cr_assert_eq(ad_backward(t, loss, NULL), AD_OK, "%s", ad_tape_message(t));
    for (int i = 0; i < 3; i++) memcpy(out + i * H * H, ad_tensor_f64(ad_param_grad(p[i])), H * H * sizeof *out);
    ad_tape_free(t);
    return used;
}

static void stacked_grads(int lean, ad_param *const *p, const double *x, double *out)
{
    stacked_grads_off(lean, 0, p, x, out);
}

Test(tape, lean_tapes_stack_the_steps_weight_gradients)
{
    long before = ts_live_allocs();
    enum { T = 70, B = 32, H = 64 };
    double *x = malloc((size_t)T * H * B * sizeof *x), *g[2];
    for (int i = 0; i < 2; i++) g[i] = malloc(3 * H * H * sizeof(double));
    ts_fill_uniform(x, (size_t)T * H * B, 21, -1, 1);
    ad_param *p[3];
    hh_params(p, H, 22);
    stacked_grads(0, p, x, g[0]);
    stacked_grads(1, p, x, g[1]);
    for (int i = 0; i < 3 * H * H; i++)
        cr_assert(fabs(g[1][i] - g[0][i]) <= 1e-12 * fabs(g[0][i]) + 1e-13, "grad %d: stacked %.17g, per copy %.17g",
                  i, g[1][i], g[0][i]);
    for (int i = 0; i < 3; i++) ad_param_free(p[i]);
    free(x), free(g[0]), free(g[1]);
    cr_assert_eq(ts_live_allocs(), before);
}

/* The net of stacked_grads_off with one copy of each weight that every step
 * shares (the copy of U also added, as a bias-like term, to each step's
 * state: a reader that is not a product). Fills the gradients and each
 * copy's gradient norm. */
static void shared_copy_grads(ad_copy_grads mode, unsigned fast_off, ad_param *const *p, const double *x,
                              double *out, double *norms)
{
    enum { T = 40, B = 8, H = 64 };
    ad_tape_options o = {0};
    o.copy_grads = mode;
    o.fast_off = fast_off;
    ad_tape *t = ad_tape_new(&o);
    cr_assert_not_null(t);
    for (int i = 0; i < 3; i++) ad_param_zero_grad(p[i]);
    ad_tensor *w[3];
    for (int i = 0; i < 3; i++) w[i] = ad_use(t, p[i]);
    ad_tensor *h = ad_zeros(t, AD_F64, ad_shape2(B, H)), *loss = NULL;
    for (int s = 0; s < T; s++) {
        ad_tensor *xs = ad_from_data(t, AD_F64, ad_shape2(H, B), x + (size_t)s * H * B);
        ad_tensor *a = ad_matmul(t, xs, w[0], AD_TRANS_A);
        ad_tensor *b = ad_matmul(t, h, w[1], AD_TRANS_B);
        ad_tensor *c = ad_matmul(t, ad_tanh(t, h), w[2], 0);
        ad_tensor *u = ad_sum(t, w[1], AD_AXIS_ALL, 0);
        h = ad_tanh(t, ad_add(t, ad_add(t, ad_add(t, a, b), ad_mul_scalar(t, c, 0.5)), ad_mul_scalar(t, u, 1e-3)));
        ad_tensor *l = ad_sum(t, ad_mul(t, h, h), AD_AXIS_ALL, 0);
        loss = loss ? ad_add(t, loss, l) : l;
    }
    cr_assert_eq(ad_backward(t, loss, NULL), AD_OK, "%s", ad_tape_message(t));
    for (int i = 0; i < 3; i++) {
        memcpy(out + i * H * H, ad_tensor_f64(ad_param_grad(p[i])), H * H * sizeof *out);
        cr_assert_eq(ad_tensor_grad_norm(w[i], &norms[i], NULL), AD_OK, "%s", ad_tape_message(t));
    }
    ad_tape_free(t);
}

/* A copy every step shares has its per-step weight gradients stacked too (into
 * its own buffer, computed before its backward reads it): the gradients and
 * each copy's norm equal KEEP's within f64 rounding, with stacking on and off. */
Test(tape, copies_shared_by_the_steps_stack_their_weight_gradients)
{
    long before = ts_live_allocs();
    enum { T = 40, B = 8, H = 64, N = 3 * H * H };
    double *x = malloc((size_t)T * H * B * sizeof *x), *g[3], norms[3][3];
    for (int i = 0; i < 3; i++) g[i] = malloc(N * sizeof(double));
    ts_fill_uniform(x, (size_t)T * H * B, 41, -1, 1);
    ad_param *p[3];
    hh_params(p, H, 42);
    shared_copy_grads(AD_COPY_GRADS_KEEP, 0, p, x, g[0], norms[0]);
    shared_copy_grads(AD_COPY_GRADS_NORMS, 0, p, x, g[1], norms[1]);
    shared_copy_grads(AD_COPY_GRADS_NORMS, AD_FAST_STACKED_GRADS, p, x, g[2], norms[2]);
    for (int v = 1; v < 3; v++) {
        for (int i = 0; i < N; i++)
            cr_assert(fabs(g[v][i] - g[0][i]) <= 1e-12 * fabs(g[0][i]) + 1e-13, "run %d grad %d: %.17g, KEEP %.17g",
                      v, i, g[v][i], g[0][i]);
        for (int i = 0; i < 3; i++)
            cr_assert(fabs(norms[v][i] - norms[0][i]) <= 1e-12 * norms[0][i], "run %d norm %d: %.17g, KEEP %.17g", v,
                      i, norms[v][i], norms[0][i]);
    }
    for (int i = 0; i < 3; i++) ad_param_free(p[i]);
    free(x);
    for (int i = 0; i < 3; i++) free(g[i]);
    cr_assert_eq(ts_live_allocs(), before);
}

/*
 * Each lean-tape speed path turns off on its own (ad_tape_options.fast_off)
 * and ad_tape_mode() says which are in use: every combination gives the
 * plain tape's gradients within f64 rounding, and the packed weights change
 * no bit (with and without stacking).
 */
Test(tape, each_fast_path_turns_off_on_its_own)
{
    long before = ts_live_allocs();
    enum { T = 70, B = 32, H = 64, N = 3 * H * H };
    double *x = malloc((size_t)T * H * B * sizeof *x), *g[5];
    for (int i = 0; i < 5; i++) g[i] = malloc(N * sizeof(double));
    ts_fill_uniform(x, (size_t)T * H * B, 31, -1, 1);
    ad_param *p[3];
    hh_params(p, H, 32);
    const unsigned both = AD_FAST_PACKED_WEIGHTS | AD_FAST_STACKED_GRADS;
    cr_assert_eq(stacked_grads_off(0, 0, p, x, g[0]), 0u, "a KEEP tape has no lean speed path");
    cr_assert_eq(stacked_grads_off(1, 0, p, x, g[1]), both);
    cr_assert_eq(stacked_grads_off(1, AD_FAST_PACKED_WEIGHTS, p, x, g[2]), (unsigned)AD_FAST_STACKED_GRADS);
    cr_assert_eq(stacked_grads_off(1, AD_FAST_STACKED_GRADS, p, x, g[3]), (unsigned)AD_FAST_PACKED_WEIGHTS);
    cr_assert_eq(stacked_grads_off(1, both, p, x, g[4]), 0u);
    for (int r = 1; r < 5; r++)
        for (int i = 0; i < N; i++)
            cr_assert(fabs(g[r][i] - g[0][i]) <= 1e-12 * fabs(g[0][i]) + 1e-13, "run %d grad %d: %.17g, plain %.17g",
                      r, i, g[r][i], g[0][i]);
    cr_assert(!memcmp(g[1], g[2], N * sizeof(double)), "packing changes no bit (stacked)");
    cr_assert(!memcmp(g[3], g[4], N * sizeof(double)), "packing changes no bit (per step)");
    for (int i = 0; i < 3; i++) ad_param_free(p[i]);
    free(x);
    for (int i = 0; i < 5; i++) free(g[i]);
    cr_assert_eq(ts_live_allocs(), before);
}

Test(tape, fast_off_refuses_unknown_paths_and_anomaly_mode_drops_stacking)
{
    ad_tape_options o = {0};
    o.copy_grads = AD_COPY_GRADS_NONE;
    o.fast_off = 1u << 7;
    cr_assert_null(ad_tape_new(&o), "an unknown fast_off bit is refused");
    o.fast_off = 0;
    ad_tape *t = ad_tape_new(&o);
    cr_assert_eq(ad_tape_mode(t).fast_paths, (unsigned)(AD_FAST_PACKED_WEIGHTS | AD_FAST_STACKED_GRADS));
    ad_tape_set_anomaly(t, 1);
    cr_assert_eq(ad_tape_mode(t).fast_paths, (unsigned)AD_FAST_PACKED_WEIGHTS,
                 "stacking steps aside so that anomalies are caught at their step");
    ad_tape_free(t);
    cr_assert_eq(ad_tape_mode(NULL).fast_paths, 0u);
}

/*
 * release_grads: the same parameter and leaf gradients to the bit (only
 * buffers are reused), in less arena memory, intermediate gradients NULL
 * afterwards; with lean copies the stacked weight gradients (whose step
 * gradients are read at the end of backward) stay right.
 */
static size_t release_run(int release, int lean, ad_param *const *p, const double *x, double *g, double *gx)
{
    enum { T = 30, B = 4, H = 64 };
    ad_tape_options o = {0};
    o.release_grads = release;
    o.copy_grads = lean ? AD_COPY_GRADS_NORMS : AD_COPY_GRADS_KEEP;
    ad_tape *t = ad_tape_new(&o);
    for (int i = 0; i < 2; i++) ad_param_zero_grad(p[i]);
    ad_tensor *x0 = ad_variable(t, AD_F64, ad_shape2(B, H), x);
    ad_tensor *h = x0, *loss = NULL, *mid = NULL;
    for (int s = 0; s < T; s++) {
        ad_tensor *z = ad_add(t, ad_matmul(t, h, ad_use(t, p[0]), 0), ad_use(t, p[1]));
        h = ad_tanh(t, z);
        if (s == T / 2) mid = z;
        ad_tensor *l = ad_sum(t, ad_mul(t, h, h), AD_AXIS_ALL, 0);
        loss = loss ? ad_add(t, loss, l) : l;
    }
    cr_assert_eq(ad_backward(t, loss, NULL), AD_OK, "%s", ad_tape_message(t));
    memcpy(g, ad_tensor_f64(ad_param_grad(p[0])), H * H * sizeof *g);
    memcpy(g + H * H, ad_tensor_f64(ad_param_grad(p[1])), H * sizeof *g);
    memcpy(gx, ad_tensor_grad_f64(x0), B * H * sizeof *gx);
    if (release) cr_assert_null(ad_tensor_grad_f64(mid), "an intermediate gradient is released");
    else cr_assert_not_null(ad_tensor_grad_f64(mid));
    size_t used = ad_tape_bytes_used(t);
    ad_tape_free(t);
    return used;
}

Test(tape, released_gradient_buffers_change_no_result)
{
    long before = ts_live_allocs();
    enum { B = 4, H = 64 };
    double x[B * H], g[2][H * H + H], gx[2][B * H];
    ts_fill_uniform(x, B * H, 31, -1, 1);
    ad_param *p[2] = {ad_param_new("W", AD_F64, ad_shape2(H, H), NULL), ad_param_new("b", AD_F64, ad_shape1(H), NULL)};
    ts_fill_uniform(ad_tensor_f64(ad_param_value(p[0])), H * H, 32, -0.2, 0.2);
    ts_fill_uniform(ad_tensor_f64(ad_param_value(p[1])), H, 33, -0.2, 0.2);
    for (int lean = 0; lean < 2; lean++) {
        size_t kept = release_run(0, lean, p, x, g[0], gx[0]);
        size_t reused = release_run(1, lean, p, x, g[1], gx[1]);
        cr_assert(!memcmp(g[0], g[1], sizeof g[0]), "lean %d: parameter gradients differ", lean);
        cr_assert(!memcmp(gx[0], gx[1], sizeof gx[0]), "lean %d: the leaf's gradient differs", lean);
        /* per-copy weight gradients (not lean) are leaves' and stay; the step gradients are reused */
        cr_assert_lt(reused, lean ? kept * 4 / 5 : kept * 9 / 10, "lean %d: %zu bytes with release, %zu without", lean,
                     reused, kept);
    }
    ad_param_free(p[0]);
    ad_param_free(p[1]);
    cr_assert_eq(ts_live_allocs(), before);
}

/* ---- released buffers and what each backward keeps ------------------------------------- */

/*
 * The keeps mask of every op row is a promise: backward reads no other data.
 * Each case runs an op on intermediates (x_i = 1.0 * copy of p_i), sums its
 * output, and backpropagates twice: once as is, once after overwriting with
 * NaN the data of every input (and the output) that its row says backward
 * does not read. The parameter gradients must agree to the bit.
 */
/* One case: a name and the op call on x[0..2] (each [4, 8]). */
typedef struct keep_row {
    const char *name;
    ad_tensor *(*op)(ad_tape *t, ad_tensor *const *x);
} keep_row;

static const int64_t keep_idx[4] = {2, 0, 1, 2};

static ad_tensor *k_add(ad_tape *t, ad_tensor *const *x) { return ad_add(t, x[0], x[1]); }
static ad_tensor *k_sub(ad_tape *t, ad_tensor *const *x) { return ad_sub(t, x[0], x[1]); }
static ad_tensor *k_add_scalar(ad_tape *t, ad_tensor *const *x) { return ad_add_scalar(t, x[0], 0.5); }
static ad_tensor *k_mul_scalar(ad_tape *t, ad_tensor *const *x) { return ad_mul_scalar(t, x[0], -1.5); }
static ad_tensor *k_neg(ad_tape *t, ad_tensor *const *x) { return ad_neg(t, x[0]); }
static ad_tensor *k_exp(ad_tape *t, ad_tensor *const *x) { return ad_exp(t, x[0]); }
static ad_tensor *k_sqrt(ad_tape *t, ad_tensor *const *x)
{
    return ad_sqrt(t, ad_add_scalar(t, ad_abs(t, x[0]), 0.1));
}
static ad_tensor *k_tanh(ad_tape *t, ad_tensor *const *x) { return ad_tanh(t, x[0]); }
static ad_tensor *k_sigmoid(ad_tape *t, ad_tensor *const *x) { return ad_sigmoid(t, x[0]); }
static ad_tensor *k_pow(ad_tape *t, ad_tensor *const *x)
{
    return ad_pow_scalar(t, ad_add_scalar(t, ad_abs(t, x[0]), 0.1), 1.7);
}
static ad_tensor *k_log(ad_tape *t, ad_tensor *const *x)
{
    return ad_log(t, ad_add_scalar(t, ad_abs(t, x[0]), 0.1));
}
static ad_tensor *k_abs(ad_tape *t, ad_tensor *const *x) { return ad_abs(t, x[0]); }
static ad_tensor *k_relu(ad_tape *t, ad_tensor *const *x) { return ad_relu(t, x[0]); }
static ad_tensor *k_sum(ad_tape *t, ad_tensor *const *x) { return ad_sum(t, x[0], 1, 0); }
static ad_tensor *k_mean(ad_tape *t, ad_tensor *const *x) { return ad_mean(t, x[0], 0, 1); }
static ad_tensor *k_reshape(ad_tape *t, ad_tensor *const *x) { return ad_reshape(t, x[0], ad_shape2(8, 4)); }
static ad_tensor *k_permute(ad_tape *t, ad_tensor *const *x) { return ad_transpose(t, x[0], 0, 1); }
static ad_tensor *k_concat(ad_tape *t, ad_tensor *const *x) { return ad_concat(t, x, 2, 1); }
static ad_tensor *k_slice0(ad_tape *t, ad_tensor *const *x) { return ad_slice(t, x[0], 0, 1, 2); }
static ad_tensor *k_slice1(ad_tape *t, ad_tensor *const *x) { return ad_slice(t, x[0], 1, 2, 3); }
static ad_tensor *k_gather(ad_tape *t, ad_tensor *const *x) { return ad_gather_rows(t, x[0], keep_idx, 4); }
static ad_tensor *k_ce(ad_tape *t, ad_tensor *const *x)
{
    return ad_cross_entropy(t, x[0], keep_idx, 4, -100, AD_REDUCE_MEAN);
}
static ad_tensor *k_matmul(ad_tape *t, ad_tensor *const *x) { return ad_matmul(t, x[0], x[1], AD_TRANS_B); }
static ad_tensor *k_addmm(ad_tape *t, ad_tensor *const *x)
{
    return ad_addmm(t, ad_slice(t, ad_reshape(t, x[2], ad_shape1(32)), 0, 0, 4), x[0], ad_reshape(t, x[1], ad_shape2(8, 4)), 0);
}
static ad_tensor *k_rnn(ad_tape *t, ad_tensor *const *x) { return ad_rnn_cell(t, x[0], x[1], AD_RNN_TANH); }
static ad_tensor *k_lstm_state(ad_tape *t, ad_tensor *const *x)
{
    return ad_lstm_cell_state(t, x[0], x[1], ad_slice(t, x[2], 1, 0, 2));
}
static ad_tensor *k_lstm_output(ad_tape *t, ad_tensor *const *x)
{
    return ad_lstm_cell_output(t, x[0], x[1], ad_slice(t, x[2], 1, 0, 2));
}
static ad_tensor *k_gru(ad_tape *t, ad_tensor *const *x)
{
    return ad_gru_cell(t, ad_slice(t, x[0], 1, 0, 6), ad_slice(t, x[1], 1, 0, 6), ad_slice(t, x[2], 1, 0, 2));
}
static ad_tensor *k_dropout_eval(ad_tape *t, ad_tensor *const *x)
{
    return ad_dropout(t, x[0], 0.3, 0, NULL);
}
static ad_tensor *k_layer_norm(ad_tape *t, ad_tensor *const *x) { return ad_layer_norm(t, x[0], 1e-5); }

#define K(name) {#name, k_##name}
static const keep_row keep_rows[] = {
    K(add), K(sub), K(add_scalar), K(mul_scalar), K(neg), K(exp), K(sqrt), K(tanh), K(sigmoid),
    K(pow), K(log), K(abs), K(relu), K(sum), K(mean), K(reshape), K(permute), K(concat), K(slice0),
    K(slice1), K(gather), K(ce), K(matmul), K(addmm), K(rnn), K(lstm_state), K(lstm_output), K(gru),
    K(dropout_eval), K(layer_norm),
};

#define N_KEEP_ROWS (sizeof keep_rows / sizeof keep_rows[0])

static void poison(ad_tensor *x)
{
    for (size_t i = 0; i < ad_tensor_numel(x); i++) ad_tensor_f64(x)[i] = NAN;
}

/* One run of case k; with `poisoned`, the data its backward should not read is overwritten. */
static void keep_run(const keep_row *k, ad_param *const *p, int poisoned, double *g)
{
    ad_tape *t = ad_tape_new(NULL);
    ad_tensor *x[3];
    for (int i = 0; i < 3; i++) x[i] = ad_mul_scalar(t, ad_use(t, p[i]), 1.0);
    ad_tensor *y = k->op(t, x);
    cr_assert_not_null(y, "case %s: %s", k->name, ad_tape_message(t));
    ad_node *n = y->node;
    ad_tensor *loss = ad_sum(t, y, AD_AXIS_ALL, 0);
    if (poisoned) {
        unsigned keeps = ad__ops[n->op].keeps;
        for (int i = 0; i < n->n_in; i++) {
            ad_tensor *in = n->in[i];
            int kept = (keeps & AD__KEEPS_ALL_IN) || (i < 6 && (keeps & AD__KEEPS_IN(i)));
            /* only the op's own intermediates: views and leaves share data with others */
            if (!kept && in->node->n_in > 0 && !in->view_of) poison(in);
        }
        if (!(keeps & AD__KEEPS_OUT) && !y->view_of) poison(y);
    }
    cr_assert_eq(ad_backward(t, loss, NULL), AD_OK, "case %s: %s", k->name, ad_tape_message(t));
    for (int i = 0; i < 3; i++) memcpy(g + i * 32, ad_tensor_f64(ad_param_grad(p[i])), 32 * sizeof *g);
    ad_tape_free(t);
}

Test(tape, backward_reads_only_the_data_its_row_keeps)
{
    long before = ts_live_allocs();
    ad_param *p[3];
    const char *names[3] = {"a", "b", "c"};
    for (int i = 0; i < 3; i++) {
        p[i] = ad_param_new(names[i], AD_F64, ad_shape2(4, 8), NULL);
        ts_fill_uniform(ad_tensor_f64(ad_param_value(p[i])), 32, 60 + (uint64_t)i, -1.5, 1.5);
    }
    for (size_t k = 0; k < N_KEEP_ROWS; k++) {
        double clean[96], dirty[96];
        for (int i = 0; i < 3; i++) ad_param_zero_grad(p[i]);
        keep_run(&keep_rows[k], p, 0, clean);
        for (int i = 0; i < 3; i++) ad_param_zero_grad(p[i]);
        keep_run(&keep_rows[k], p, 1, dirty);
        cr_assert(!memcmp(clean, dirty, sizeof clean), "case %s: backward read data its row does not keep", keep_rows[k].name);
    }
    for (int i = 0; i < 3; i++) ad_param_free(p[i]);
    cr_assert_eq(ts_live_allocs(), before);
}

/* ad_tape_release: the buffer is reused, the tensor can no longer be read or
 * used, and every misuse is a clear tape error. */
static ad_tensor *release_bad(ad_tape *t, int i)
{
    ad_tensor *a = ad_ones(t, AD_F64, ad_shape2(4, 4)), *b = ad_add(t, a, a);
    switch (i) {
    case 0: ad_tape_release(t, a); return NULL;                 /* a leaf */
    case 1: ad_mul(t, b, a); ad_tape_release(t, b); return NULL; /* mul's backward reads b */
    case 2: ad_tape_release(t, ad_slice(t, b, 0, 0, 2)); return NULL; /* a view */
    case 3: ad_tape_release(t, b); return ad_neg(t, b);          /* released, then used */
    case 4: {
        ad_tensor *v = ad_slice(t, b, 0, 1, 2);
        ad_tape_release(t, b);
        return ad_neg(t, v);                                     /* a view of released data */
    }
    case 5: ad_tape_release(t, NULL); return NULL;
    case 6: {
        ad_tape *other = ad_tape_new(NULL);
        ad_tensor *x = ad_add(other, ad_ones(other, AD_F64, ad_shape1(2)), ad_ones(other, AD_F64, ad_shape1(2)));
        ad_tape_release(t, x);
        ad_tape_free(other);
        return NULL;
    }
    case 7: ad_tanh(t, b); ad_tape_release(t, ad_tanh(t, b)); return ad_mul_scalar(t, ad_tanh(t, b), 2); /* tanh keeps its output */
    }
    return NULL;
}

static const ts_bad_case release_cases[] = {
    {"leaf", AD_ERR_ARG, "tape_release: const [4,4] is a leaf; only op outputs can be released"},
    {"kept by mul", AD_ERR_STATE, "tape_release: add [4,4]: the backward of a recorded op reads it"},
    {"view", AD_ERR_ARG, "tape_release: slice [2,4] is a view; release the tensor it views"},
    {"used after release", AD_ERR_STATE, "neg: input 0's data was released (ad_tape_release)"},
    {"view of released", AD_ERR_STATE, "neg: input 0's data was released"},
    {"NULL", AD_ERR_NULL, "tape_release: tensor is NULL"},
    {"foreign", AD_ERR_FOREIGN, "tape_release: the tensor is not on this tape"},
    {"kept by tanh", AD_ERR_STATE, "tape_release: tanh [4,4]: the backward of a recorded op reads it"},
};

Test(tape, released_buffers_are_reused_and_guarded)
{
    long before = ts_live_allocs();
    ts_expect_tape_errors(release_bad, release_cases, (int)(sizeof release_cases / sizeof release_cases[0]));
    ad_tape *t = ad_tape_new(NULL);
    ad_param *w = ad_param_new("w", AD_F64, ad_shape2(16, 16), NULL);
    ts_fill_uniform(ad_tensor_f64(ad_param_value(w)), 256, 71, -1, 1);
    ad_tensor *x = ad_mul_scalar(t, ad_use(t, w), 2.0), *y = ad_add_scalar(t, x, 1.0);
    void *buf = ad_tensor_data(x);
    cr_assert_eq(ad_tape_release(t, x), AD_OK, "%s", ad_tape_message(t));
    cr_assert_eq(ad_tape_release(t, x), AD_OK, "twice is allowed");
    cr_assert_null(ad_tensor_data(x));
    cr_assert(isnan(ad_tensor_get(x, 0)), "a released tensor reads as NaN");
    void *file = NULL;
    size_t size = 0;
    ad_error err;
    cr_assert_eq(ad_npy_write(x, &file, &size, &err), AD_ERR_STATE);
    cr_assert(strstr(err.msg, "was released"), "%s", err.msg);
    cr_assert_null(file);
    ad_tensor *z = ad_neg(t, y); /* same size: takes the released buffer */
    cr_assert_eq(ad_tensor_data(z), buf);
    cr_assert_eq(ad_tensor_f64(z)[5], -(2.0 * ad_tensor_f64(ad_param_value(w))[5] + 1.0));
    cr_assert_eq(ad_backward(t, ad_sum(t, z, AD_AXIS_ALL, 0), NULL), AD_OK, "%s", ad_tape_message(t));
    for (int i = 0; i < 256; i++) cr_assert_eq(ad_tensor_f64(ad_param_grad(w))[i], -2.0, "grad %d", i);
    ad_tape_free(t);
    ad_param_free(w);
    cr_assert_eq(ts_live_allocs(), before);
}

/* ---- tape modes: what each keeps, and reading what a mode dropped ------------------------ */

Test(tape, modes_are_named_and_queried)
{
    long before = ts_live_allocs();
    ad_tape_modes d = ad_tape_mode(NULL);
    cr_assert_eq(d.copy_grads, AD_COPY_GRADS_KEEP);
    cr_assert_eq(d.release_grads, 0);
    struct {
        ad_copy_grads copy_grads;
        int release, anomaly;
        ad_copy_grads want;
    } rows[] = {
        {AD_COPY_GRADS_KEEP, 0, 0, AD_COPY_GRADS_KEEP},   {AD_COPY_GRADS_NORMS, 1, 0, AD_COPY_GRADS_NORMS},
        {AD_COPY_GRADS_NORMS, 0, 1, AD_COPY_GRADS_NORMS}, {AD_COPY_GRADS_NONE, 1, 0, AD_COPY_GRADS_NONE},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        ad_tape_options o = {0};
        o.copy_grads = rows[i].copy_grads;
        o.release_grads = rows[i].release;
        ad_tape *t = ad_tape_new(&o);
        cr_assert_not_null(t);
        cr_assert_eq(ad_tape_set_anomaly(t, rows[i].anomaly), 0, "row %zu", i);
        ad_tape_modes m = ad_tape_mode(t);
        cr_assert_eq(m.copy_grads, rows[i].want, "row %zu", i);
        cr_assert_eq(m.release_grads, rows[i].release, "row %zu", i);
        cr_assert_eq(m.anomaly, rows[i].anomaly, "row %zu", i);
        ad_tape_free(t);
    }
    ad_tape_options bad = {0};
    bad.copy_grads = (ad_copy_grads)3;
    cr_assert_null(ad_tape_new(&bad), "a copy_grads value outside the enum is refused");
    cr_assert_str_eq(ad_copy_grads_name(AD_COPY_GRADS_KEEP), "keep");
    cr_assert_str_eq(ad_copy_grads_name(AD_COPY_GRADS_NORMS), "norms");
    cr_assert_str_eq(ad_copy_grads_name(AD_COPY_GRADS_NONE), "none");
    cr_assert_str_eq(ad_copy_grads_name((ad_copy_grads)9), "?");
    cr_assert_eq(ts_live_allocs(), before);
}

/*
 * A norms tape records every copy's ||dL/dW^(t)||: the same norms as a keep
 * tape's copies (1e-12 relative, f64), for a weight used plainly, used
 * transposed and with a transposed left operand, each stacked (the Gram
 * form), for a bias added by broadcasting (a buffer per copy), and for a
 * loss that is a copy itself. Reading the gradient itself is AD_ERR_STATE
 * naming the mode; on a none tape the norm is too.
 */
static void copy_norms(ad_copy_grads mode, ad_param *const *p, const double *x, double *norms)
{
    enum { T = 70, B = 32, H = 64 };
    ad_tape_options o = {0};
    o.copy_grads = mode;
    ad_tape *t = ad_tape_new(&o);
    ad_tensor *h = ad_zeros(t, AD_F64, ad_shape2(B, H)), *loss = NULL;
    ad_tensor *copies[4][T];
    for (int s = 0; s < T; s++) {
        ad_tensor *xs = ad_from_data(t, AD_F64, ad_shape2(H, B), x + (size_t)s * H * B); /* stored [H, B] */
        for (int i = 0; i < 4; i++) copies[i][s] = ad_use(t, p[i]);
        ad_tensor *a = ad_matmul(t, xs, copies[0][s], AD_TRANS_A);
        ad_tensor *b = ad_matmul(t, h, copies[1][s], AD_TRANS_B);
        ad_tensor *c = ad_matmul(t, ad_tanh(t, h), copies[2][s], 0);
        ad_tensor *z = ad_add(t, ad_add(t, a, b), ad_mul_scalar(t, c, 0.5));
        h = ad_tanh(t, ad_add(t, z, copies[3][s]));
        ad_tensor *l = ad_sum(t, ad_mul(t, h, h), AD_AXIS_ALL, 0);
        loss = loss ? ad_add(t, loss, l) : l;
    }
    cr_assert_eq(ad_backward(t, loss, NULL), AD_OK, "%s", ad_tape_message(t));
    ad_error err;
    for (int i = 0; i < 4; i++)
        for (int s = 0; s < T; s++) {
            ad_status st = ad_tensor_grad_norm(copies[i][s], &norms[i * T + s], &err);
            cr_assert_eq(st, mode == AD_COPY_GRADS_NONE ? AD_ERR_STATE : AD_OK, "%s", err.msg);
        }
    if (mode == AD_COPY_GRADS_NONE) cr_assert(strstr(err.msg, "copy_grads = none"), "%s", err.msg);
    cr_assert_eq(ad_tape_status(t), AD_OK, "reading norms sets no tape error");
    if (mode == AD_COPY_GRADS_KEEP) {
        cr_assert_not_null(ad_tensor_grad_f64(copies[1][3]));
    } else {
        cr_assert_null(ad_tensor_grad_f64(copies[1][3]));
        cr_assert_eq(ad_tape_status(t), AD_ERR_STATE);
        cr_assert(strstr(ad_tape_message(t), mode == AD_COPY_GRADS_NORMS ? "copy_grads = norms" : "copy_grads = none"),
                  "%s", ad_tape_message(t));
        cr_assert(isnan(ad_tensor_grad_get(copies[3][3], 0)));
    }
    /* a loss that is itself a copy: its gradient is the seed */
    ad_tape_reset(t);
    ad_tensor *up = ad_full(t, AD_F64, ad_shape1(H), 2.0), *bias = ad_use(t, p[3]);
    cr_assert_eq(ad_backward(t, bias, up), AD_OK);
    double bn = -1;
    cr_assert_eq(ad_tensor_grad_norm(bias, &bn, NULL), mode == AD_COPY_GRADS_NONE ? AD_ERR_STATE : AD_OK);
    if (mode != AD_COPY_GRADS_NONE) cr_assert_float_eq(bn, 2.0 * sqrt((double)H), 1e-12);
    ad_tape_free(t);
}

Test(tape, norms_tapes_record_each_copys_norm)
{
    long before = ts_live_allocs();
    enum { T = 70, B = 32, H = 64 };
    double *x = malloc((size_t)T * H * B * sizeof *x), keep[4 * T], norms[4 * T], none[4 * T];
    ts_fill_uniform(x, (size_t)T * H * B, 41, -1, 1);
    const char *names[4] = {"W", "U", "V", "b"};
    ad_param *p[4];
    for (int i = 0; i < 4; i++) {
        p[i] = ad_param_new(names[i], AD_F64, i < 3 ? ad_shape2(H, H) : ad_shape1(H), NULL);
        ts_fill_uniform(ad_tensor_f64(ad_param_value(p[i])), i < 3 ? H * H : H, 42 + (uint64_t)i, -0.15, 0.15);
    }
    copy_norms(AD_COPY_GRADS_KEEP, p, x, keep);
    copy_norms(AD_COPY_GRADS_NORMS, p, x, norms);
    copy_norms(AD_COPY_GRADS_NONE, p, x, none);
    for (int i = 0; i < 4 * T; i++) {
        cr_assert(keep[i] > 0 || i % T == 0, "norm %d is 0", i);
        cr_assert(fabs(norms[i] - keep[i]) <= 1e-12 * keep[i], "%s at step %d: %.17g recorded, %.17g kept",
                  names[i / T], i % T, norms[i], keep[i]);
    }
    for (int i = 0; i < 4; i++) ad_param_free(p[i]);
    free(x);
    cr_assert_eq(ts_live_allocs(), before);
}

/* The norm a NORMS tape records for a copy read by two ops (a buffer of its
 * own, added into the parameter) is summed in the order KEEP's norm of the
 * kept buffer is: the same bits, in f32 and f64, below and above the 16
 * elements where the sum of squares moves to its sixteen lanes. */
static void two_use_norms(ad_copy_grads mode, ad_dtype dt, int64_t n, double *norm, double *grad)
{
    ad_param *w = ad_param_new("w", dt, ad_shape1(n), NULL);
    ad_tape *t = ad_tape_new(&(ad_tape_options){.copy_grads = mode});
    double x[1000];
    ts_fill_uniform(x, (size_t)n, 61, -1, 1);
    ad_tensor *wv = ad_param_value(w);
    for (int64_t i = 0; i < n; i++) {
        if (dt == AD_F32) ad_tensor_f32(wv)[i] = 0.001f * (float)(i + 1);
        else ad_tensor_f64(wv)[i] = 0.001 * (double)(i + 1);
    }
    ad_tensor *c = ad_use(t, w), *v = ad_from_f64(t, dt, ad_shape1(n), x);
    ad_tensor *y = ad_add(t, ad_mul(t, ad_tanh(t, ad_mul(t, c, v)), c), ad_sigmoid(t, c)); /* c read three times */
    cr_assert_eq(ad_backward(t, ad_sum(t, ad_mul(t, y, y), AD_AXIS_ALL, 0), NULL), AD_OK, "%s", ad_tape_message(t));
    cr_assert_eq(ad_tensor_grad_norm(c, norm, NULL), AD_OK);
    *grad = ad_tensor_get(ad_param_grad(w), (size_t)n - 1);
    ad_tape_free(t);
    ad_param_free(w);
}

Test(tape, norms_tape_copy_norm_has_keeps_bits)
{
    long before = ts_live_allocs();
    const int64_t sizes[4] = {3, 15, 37, 1000};
    for (int d = 0; d < 2; d++)
        for (int k = 0; k < 4; k++) {
            ad_dtype dt = d ? AD_F64 : AD_F32;
            double keep, norms, gk, gn;
            two_use_norms(AD_COPY_GRADS_KEEP, dt, sizes[k], &keep, &gk);
            two_use_norms(AD_COPY_GRADS_NORMS, dt, sizes[k], &norms, &gn);
            cr_assert(keep > 0);
            cr_assert_eq(norms, keep, "%s n = %lld: %.17g recorded, %.17g kept", ad_dtype_name(dt),
                         (long long)sizes[k], norms, keep);
            cr_assert_eq(gn, gk, "the parameter's gradient is the same");
        }
    cr_assert_eq(ts_live_allocs(), before);
}

/* release_grads: a released gradient's norm stays readable (the same as
 * kept), reading the gradient itself is AD_ERR_STATE naming release_grads;
 * small gradients (not released), leaves and tensors no gradient reached
 * read as before. */
Test(tape, released_gradients_keep_their_norm)
{
    long before = ts_live_allocs();
    double x[256], w[256], norm[2];
    ts_fill_uniform(x, 256, 51, -1, 1);
    ts_fill_uniform(w, 256, 52, -1, 1);
    for (int release = 0; release < 2; release++) {
        ad_tape *t = ad_tape_new(&(ad_tape_options){.release_grads = release});
        ad_tensor *v = ad_variable(t, AD_F64, ad_shape2(16, 16), x);
        ad_tensor *mid = ad_tanh(t, ad_mul(t, v, ad_from_data(t, AD_F64, ad_shape2(16, 16), w)));
        ad_tensor *small = ad_tanh(t, ad_slice(t, mid, 0, 0, 2)); /* [2, 16]: 32 elements */
        ad_tensor *unused = ad_tanh(t, v);
        ad_tensor *loss = ad_add(t, ad_sum(t, ad_mul(t, mid, mid), AD_AXIS_ALL, 0), ad_sum(t, small, AD_AXIS_ALL, 0));
        cr_assert_eq(ad_backward(t, loss, NULL), AD_OK);
        cr_assert_eq(ad_tensor_grad_norm(mid, &norm[release], NULL), AD_OK);
        double n_small, n_unused, n_v;
        cr_assert_eq(ad_tensor_grad_norm(small, &n_small, NULL), AD_OK);
        cr_assert_float_eq(n_small, sqrt(32.0), 1e-12);
        cr_assert_eq(ad_tensor_grad_norm(unused, &n_unused, NULL), AD_OK);
        cr_assert_eq(n_unused, 0.0);
        cr_assert_eq(ad_tensor_grad_norm(v, &n_v, NULL), AD_OK);
        cr_assert(n_v > 0);
        cr_assert_not_null(ad_tensor_grad_f64(v), "a leaf's gradient is kept");
        cr_assert_not_null(ad_tensor_grad_f64(small), "a small gradient is kept");
        cr_assert_eq(ad_tape_status(t), AD_OK);
        if (release) {
            cr_assert_null(ad_tensor_grad_f64(mid));
            cr_assert_eq(ad_tape_status(t), AD_ERR_STATE);
            cr_assert(strstr(ad_tape_message(t), "released during backward (release_grads = 1)"), "%s",
                      ad_tape_message(t));
            cr_assert(strstr(ad_tape_message(t), "tanh [16,16]"), "the message names the tensor: %s",
                      ad_tape_message(t));
        } else {
            cr_assert_not_null(ad_tensor_grad_f64(mid));
        }
        ad_tape_free(t);
    }
    cr_assert(norm[0] > 0);
    cr_assert(fabs(norm[1] - norm[0]) <= 1e-15 * norm[0], "released %.17g, kept %.17g", norm[1], norm[0]);
    /* bad inputs, and a parameter's value view, whose gradient is the parameter's */
    double n;
    ad_error err;
    cr_assert_eq(ad_tensor_grad_norm(NULL, &n, &err), AD_ERR_NULL);
    cr_assert(strstr(err.msg, "tensor_grad_norm"), "%s", err.msg);
    ad_param *p = ad_param_new("p", AD_F64, ad_shape1(4), NULL);
    cr_assert_eq(ad_tensor_grad_norm(ad_param_value(p), NULL, &err), AD_ERR_NULL);
    ad_tensor_f64(ad_param_grad(p))[1] = 3, ad_tensor_f64(ad_param_grad(p))[2] = 4;
    cr_assert_eq(ad_tensor_grad_norm(ad_param_value(p), &n, NULL), AD_OK);
    cr_assert_float_eq(n, 5.0, 1e-15);
    ad_param_free(p);
    cr_assert_eq(ts_live_allocs(), before);
}
