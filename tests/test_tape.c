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
        cr_assert(d->arity >= -1 && d->arity <= 3, "op %s has arity %d", d->name, d->arity);
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
 * backward, STACK_ROWS (2048) rows at a time: the same gradients as a tape
 * with per-copy buffers, within f64 rounding, for a weight used plainly, used
 * transposed, and with a transposed left operand; 70 steps of 32 rows take
 * two stacked products.
 */
static void stacked_grads(int lean, ad_param *const *p, const double *x, double *out)
{
    enum { T = 70, B = 32, H = 64 };
    ad_tape_options o = {0};
    o.lean_copies = lean;
    ad_tape *t = ad_tape_new(&o);
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
}

Test(tape, lean_tapes_stack_the_steps_weight_gradients)
{
    long before = ts_live_allocs();
    enum { T = 70, B = 32, H = 64 };
    double *x = malloc((size_t)T * H * B * sizeof *x), *g[2];
    for (int i = 0; i < 2; i++) g[i] = malloc(3 * H * H * sizeof(double));
    ts_fill_uniform(x, (size_t)T * H * B, 21, -1, 1);
    const char *names[3] = {"W", "U", "V"};
    ad_param *p[3];
    for (int i = 0; i < 3; i++) {
        p[i] = ad_param_new(names[i], AD_F64, ad_shape2(H, H), NULL);
        ts_fill_uniform(ad_tensor_f64(ad_param_value(p[i])), H * H, 22 + (uint64_t)i, -0.15, 0.15);
    }
    stacked_grads(0, p, x, g[0]);
    stacked_grads(1, p, x, g[1]);
    for (int i = 0; i < 3 * H * H; i++)
        cr_assert(fabs(g[1][i] - g[0][i]) <= 1e-12 * fabs(g[0][i]) + 1e-13, "grad %d: stacked %.17g, per copy %.17g",
                  i, g[1][i], g[0][i]);
    for (int i = 0; i < 3; i++) ad_param_free(p[i]);
    free(x), free(g[0]), free(g[1]);
    cr_assert_eq(ts_live_allocs(), before);
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
    o.lean_copies = lean;
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
