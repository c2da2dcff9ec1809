/*
 * test_custom.c - user-defined ops behave like built-ins: gradcheck, errors,
 * anomaly mode.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "testsupport.h"

/* softplus(x) * y elementwise, two inputs of one shape. */
static ad_status sp_shape(void *ctx, ad_tensor *const *in, int n, ad_shape *out, char *msg,
                          size_t size)
{
    (void)ctx;
    (void)n;
    if (!ad_shape_equal(ad_tensor_shape(in[0]), ad_tensor_shape(in[1]))) {
        snprintf(msg, size, "inputs differ in shape");
        return AD_ERR_SHAPE;
    }
    *out = ad_tensor_shape(in[0]);
    return AD_OK;
}

static void sp_forward(void *ctx, ad_tensor *const *in, int n, ad_tensor *out)
{
    (void)ctx;
    (void)n;
    const double *x = ad_tensor_f64(in[0]), *y = ad_tensor_f64(in[1]);
    double *o = ad_tensor_f64(out);
    for (size_t i = 0; i < ad_tensor_numel(out); i++) o[i] = log1p(exp(x[i])) * y[i];
}

static void sp_backward(void *ctx, ad_tensor *const *in, int n, ad_tensor *out, ad_tensor *gout,
                        ad_tensor *const *gin)
{
    (void)n;
    (void)out;
    double wrong = ctx ? *(double *)ctx : 1.0; /* 1 for the right derivative */
    const double *x = ad_tensor_f64(in[0]), *y = ad_tensor_f64(in[1]), *g = ad_tensor_f64(gout);
    for (size_t i = 0; i < ad_tensor_numel(gout); i++) {
        double s = 1 / (1 + exp(-x[i]));
        if (gin[0]) ad_tensor_f64(gin[0])[i] += g[i] * s * y[i] * wrong;
        if (gin[1]) ad_tensor_f64(gin[1])[i] += g[i] * log1p(exp(x[i]));
    }
}

static const ad_custom_op softplus_mul = {"softplus_mul", 2, sp_shape, sp_forward, sp_backward, NULL};

typedef struct ctx {
    ad_param *p[3];
    double *factor;
} ctx;

/* tanh(softplus_mul(A W, B)) summed: a custom op inside a bigger graph. */
static ad_tensor *graph(ad_tape *t, void *vc)
{
    ctx *c = vc;
    ad_tensor *aw = ad_matmul(t, ad_use(t, c->p[0]), ad_use(t, c->p[1]), 0);
    ad_tensor *in[2] = {aw, ad_use(t, c->p[2])};
    return ad_tanh(t, ad_custom(t, &softplus_mul, c->factor, in, 2));
}

static void make(ctx *c)
{
    c->p[0] = ad_param_new("A", AD_F64, ad_shape2(2, 3), NULL);
    c->p[1] = ad_param_new("W", AD_F64, ad_shape2(3, 4), NULL);
    c->p[2] = ad_param_new("B", AD_F64, ad_shape2(2, 4), NULL);
    for (int i = 0; i < 3; i++)
        ts_fill_uniform(ad_tensor_f64(ad_param_value(c->p[i])),
                        ad_tensor_numel(ad_param_value(c->p[i])), 40 + (uint64_t)i, -1, 1);
    c->factor = NULL;
}

static void destroy(ctx *c)
{
    for (int i = 0; i < 3; i++) ad_param_free(c->p[i]);
}

Test(custom, used_like_a_builtin_passes_gradcheck)
{
    long before = ts_live_allocs();
    ctx c;
    make(&c);
    ad_gradcheck_report rep;
    ad_error err;
    cr_assert_eq(ad_gradcheck(graph, &c, c.p, 3, NULL, &rep, &err), AD_OK, "%s", err.msg);
    cr_assert(rep.passed);
    cr_assert_eq(rep.count, 3);
    destroy(&c);
    cr_assert_eq(ts_live_allocs(), before);
}

Test(custom, wrong_backward_is_caught)
{
    ctx c;
    make(&c);
    double factor = 1.05; /* a 5% error in dA */
    c.factor = &factor;
    ad_gradcheck_report rep;
    ad_error err;
    cr_assert_eq(ad_gradcheck(graph, &c, c.p, 3, NULL, &rep, &err), AD_ERR_MISMATCH);
    cr_assert(!rep.passed);
    cr_assert(!rep.entries[0].passed && !rep.entries[1].passed, "A and W are wrong");
    cr_assert(rep.entries[2].passed, "B is right");
    cr_assert(strstr(err.msg, "'A'") != NULL, "%s", err.msg);
    ad_gradcheck_options fast = {0};
    fast.fast = 1;
    cr_assert_eq(ad_gradcheck(graph, &c, c.p, 3, &fast, &rep, &err), AD_ERR_MISMATCH);
    destroy(&c);
}

Test(custom, bad_definitions)
{
    ad_tape *t = ad_tape_new(NULL);
    ad_tensor *a = ad_ones(t, AD_F64, ad_shape1(3));
    ad_tensor *in[2] = {a, a};
    cr_assert_null(ad_custom(t, NULL, NULL, in, 2));
    cr_assert_eq(ad_tape_status(t), AD_ERR_NULL);
    ad_tape_reset(t);
    ad_custom_op broken = softplus_mul;
    broken.backward = NULL;
    a = ad_ones(t, AD_F64, ad_shape1(3));
    in[0] = in[1] = a;
    cr_assert_null(ad_custom(t, &broken, NULL, in, 2));
    cr_assert_eq(ad_tape_status(t), AD_ERR_NULL);
    ad_tape_reset(t);
    a = ad_ones(t, AD_F64, ad_shape1(3));
    in[0] = in[1] = a;
    cr_assert_null(ad_custom(t, &softplus_mul, NULL, in, 1));
    cr_assert_eq(ad_tape_status(t), AD_ERR_ARG);
    cr_assert(strstr(ad_tape_message(t), "softplus_mul") != NULL);
    ad_tape_reset(t);
    in[0] = ad_ones(t, AD_F64, ad_shape1(3));
    in[1] = ad_ones(t, AD_F64, ad_shape1(4));
    cr_assert_null(ad_custom(t, &softplus_mul, NULL, in, 2));
    cr_assert_eq(ad_tape_status(t), AD_ERR_SHAPE);
    cr_assert_str_eq(ad_tape_message(t), "softplus_mul: inputs differ in shape");
    ad_tape_reset(t);
    in[0] = ad_ones(t, AD_F64, ad_shape1(3));
    in[1] = NULL;
    cr_assert_null(ad_custom(t, &softplus_mul, NULL, in, 2));
    cr_assert_eq(ad_tape_status(t), AD_ERR_NULL);
    cr_assert(strstr(ad_tape_message(t), "softplus_mul: input 1") != NULL, "%s",
              ad_tape_message(t));
    ad_tape_free(t);
}

Test(custom, anomaly_names_the_custom_op)
{
    ad_tape *t = ad_tape_new(NULL);
    ad_tape_set_anomaly(t, 1);
    ad_tensor *in[2] = {ad_full(t, AD_F64, ad_shape1(2), 1000.0), ad_ones(t, AD_F64, ad_shape1(2))};
    cr_assert_null(ad_custom(t, &softplus_mul, NULL, in, 2)); /* log1p(e^1000) = inf */
    cr_assert_eq(ad_tape_status(t), AD_ERR_NONFINITE);
    cr_assert(strstr(ad_tape_message(t), "softplus_mul") != NULL, "%s", ad_tape_message(t));
    ad_tape_free(t);
}
