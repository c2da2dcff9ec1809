/*
 * test_errors.c - status codes, docs/errors.md, and bad input to the tensor,
 * parameter and tape functions.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "testsupport.h"

/* Every code has a distinct name and description, and docs/errors.md lists
 * exactly the same value, name and description. */
Test(errors, docs_table_matches_codes)
{
    FILE *f = fopen(UNROLL_SOURCE_DIR "/docs/errors.md", "r");
    cr_assert_not_null(f, "docs/errors.md is missing");
    char line[512];
    int seen = 0;
    while (fgets(line, sizeof line, f)) {
        int value;
        char name[64], desc[256];
        if (sscanf(line, "| %d | %63[A-Z_] | %255[^|]|", &value, name, desc) != 3) continue;
        size_t len = strlen(desc);
        while (len && desc[len - 1] == ' ') desc[--len] = '\0';
        cr_assert(value >= 0 && value < AD_STATUS_COUNT, "docs lists unknown value %d", value);
        cr_assert_str_eq(name, ad_status_name((ad_status)value));
        cr_assert_str_eq(desc, ad_status_str((ad_status)value));
        seen++;
    }
    fclose(f);
    cr_assert_eq(seen, AD_STATUS_COUNT, "docs list %d codes, the code has %d", seen,
                 AD_STATUS_COUNT);
    for (int a = 0; a < AD_STATUS_COUNT; a++)
        for (int b = 0; b < a; b++)
            cr_assert_str_neq(ad_status_name((ad_status)a), ad_status_name((ad_status)b));
    cr_assert_str_eq(ad_status_name((ad_status)999), "AD_UNKNOWN");
}

Test(errors, tensor_new_bad_inputs)
{
    long before = ts_live_allocs();
    ad_error err;
    cr_assert_null(ad_tensor_new((ad_dtype)7, ad_shape1(2), &err));
    cr_assert_eq(err.code, AD_ERR_DTYPE);
    cr_assert_null(ad_tensor_new(AD_F32, (ad_shape){5, {1, 1, 1, 1}}, &err));
    cr_assert_eq(err.code, AD_ERR_RANK);
    cr_assert_null(ad_tensor_new(AD_F32, ad_shape2(-1, 2), &err));
    cr_assert_eq(err.code, AD_ERR_ARG);
    cr_assert_null(ad_tensor_new(AD_F64, ad_shape2(INT64_MAX / 2, 4), &err));
    cr_assert_eq(err.code, AD_ERR_OVERFLOW);
    cr_assert(strstr(err.msg, "tensor_new") != NULL, "%s", err.msg);
    cr_assert_null(ad_tensor_new(AD_F64, ad_shape2(INT64_MAX / 2, 4), NULL));
    ad_tensor *e = ad_tensor_new(AD_F64, ad_shape2(0, 4), &err);
    cr_assert_not_null(e, "zero-size tensors are allowed");
    cr_assert_eq(ad_tensor_numel(e), 0);
    ad_tensor_free(e);
    ts_fail_alloc_at(1);
    cr_assert_null(ad_tensor_new(AD_F64, ad_shape1(3), &err));
    cr_assert_eq(err.code, AD_ERR_NOMEM);
    ts_fail_alloc_at(0);
    cr_assert_eq(ts_live_allocs(), before);
}

Test(errors, tensor_queries_accept_null)
{
    cr_assert_eq(ad_tensor_numel(NULL), 0);
    cr_assert_eq(ad_tensor_rank(NULL), 0);
    cr_assert_null(ad_tensor_f32(NULL));
    cr_assert_null(ad_tensor_f64(NULL));
    cr_assert_null(ad_tensor_data(NULL));
    cr_assert_null(ad_tensor_grad_f64(NULL));
    cr_assert(ad_tensor_get(NULL, 0) != ad_tensor_get(NULL, 0)); /* NaN */
    ad_tensor_free(NULL);
    ad_param_free(NULL);
    ad_param_zero_grad(NULL);
    cr_assert_str_eq(ad_param_name(NULL), "");
    cr_assert_null(ad_param_value(NULL));
    cr_assert_eq(ad_tape_status(NULL), AD_ERR_NULL);
    ad_tape_reset(NULL);
    ad_tape_free(NULL);
    cr_assert_eq(ad_backward(NULL, NULL, NULL), AD_ERR_NULL);
}

Test(errors, param_bad_inputs)
{
    long before = ts_live_allocs();
    ad_error err;
    cr_assert_null(ad_param_new(NULL, AD_F64, ad_shape1(2), &err));
    cr_assert_eq(err.code, AD_ERR_NULL);
    char longname[100];
    memset(longname, 'w', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    cr_assert_null(ad_param_new(longname, AD_F64, ad_shape1(2), &err));
    cr_assert_eq(err.code, AD_ERR_ARG);
    cr_assert_null(ad_param_new("w", (ad_dtype)3, ad_shape1(2), &err));
    cr_assert_eq(err.code, AD_ERR_DTYPE);
    cr_assert_null(ad_param_new("w", AD_F64, (ad_shape){-1, {0}}, &err));
    cr_assert_eq(err.code, AD_ERR_RANK);
    double d[2], g[2];
    cr_assert_null(ad_param_view("w", AD_F64, ad_shape1(2), NULL, g, &err));
    cr_assert_eq(err.code, AD_ERR_NULL);
    cr_assert_null(ad_param_view("w", AD_F64, ad_shape1(2), d, NULL, &err));
    cr_assert_eq(err.code, AD_ERR_NULL);
    for (long k = 1; k <= 3; k++) {
        ts_fail_alloc_at(k);
        ad_param *p = ad_param_new("w", AD_F64, ad_shape1(2), &err);
        if (p) {
            cr_assert(!ts_fail_alloc_fired());
            ad_param_free(p);
        } else {
            cr_assert_eq(err.code, AD_ERR_NOMEM);
        }
    }
    ts_fail_alloc_at(0);
    ad_param *v = ad_param_view("w", AD_F64, ad_shape1(2), d, g, &err);
    cr_assert_not_null(v);
    cr_assert_eq(ad_tensor_f64(ad_param_value(v)), d);
    ad_param_free(v);
    cr_assert_eq(ts_live_allocs(), before);
}

/* Bad input to the tape entry points: status and message fragment. */
Test(errors, tape_bad_inputs)
{
    long before = ts_live_allocs();
    ad_tape *t = ad_tape_new(NULL);
    ad_tape *other = ad_tape_new(NULL);
    cr_assert_null(ad_from_data(t, AD_F64, ad_shape1(2), NULL));
    cr_assert_eq(ad_tape_status(t), AD_ERR_NULL);
    cr_assert(strstr(ad_tape_message(t), "from_data") != NULL);
    /* sticky: the first error wins */
    cr_assert_null(ad_zeros(t, AD_F64, ad_shape1(2)));
    cr_assert_eq(ad_tape_status(t), AD_ERR_NULL);
    ad_tape_reset(t);

    cr_assert_null(ad_zeros(t, AD_F64, (ad_shape){5, {1, 1, 1, 1}}));
    cr_assert_eq(ad_tape_status(t), AD_ERR_RANK);
    ad_tape_reset(t);
    cr_assert_null(ad_zeros(t, (ad_dtype)9, ad_shape1(2)));
    cr_assert_eq(ad_tape_status(t), AD_ERR_DTYPE);
    ad_tape_reset(t);
    cr_assert_null(ad_ones(t, AD_F32, ad_shape2(INT64_MAX, 2)));
    cr_assert_eq(ad_tape_status(t), AD_ERR_OVERFLOW);
    ad_tape_reset(t);
    cr_assert_null(ad_rand_uniform(t, NULL, AD_F32, ad_shape1(2), 0, 1));
    cr_assert_eq(ad_tape_status(t), AD_ERR_NULL);
    ad_tape_reset(t);
    cr_assert_null(ad_constant(t, NULL));
    cr_assert_eq(ad_tape_status(t), AD_ERR_NULL);
    ad_tape_reset(t);
    cr_assert_null(ad_use(t, NULL));
    cr_assert_eq(ad_tape_status(t), AD_ERR_NULL);
    ad_tape_reset(t);

    /* a tensor of another tape */
    ad_tensor *a = ad_ones(t, AD_F64, ad_shape2(2, 2));
    ad_tensor *b = ad_ones(other, AD_F64, ad_shape2(2, 2));
    cr_assert_null(ad_matmul(t, a, b, 0));
    cr_assert_eq(ad_tape_status(t), AD_ERR_FOREIGN);
    ad_tape_reset(t);
    /* a heap tensor given to an op directly */
    ad_tensor *heap = ad_tensor_new(AD_F64, ad_shape2(2, 2), NULL);
    a = ad_ones(t, AD_F64, ad_shape2(2, 2));
    cr_assert_null(ad_matmul(t, a, heap, 0));
    cr_assert_eq(ad_tape_status(t), AD_ERR_FOREIGN);
    cr_assert(strstr(ad_tape_message(t), "ad_constant") != NULL);
    ad_tape_reset(t);
    cr_assert_not_null(ad_matmul(t, ad_ones(t, AD_F64, ad_shape2(2, 2)), ad_constant(t, heap), 0));
    ad_tensor_free(heap);
    ad_tape_reset(t);
    /* shape and dtype mismatches name the op and the shapes */
    a = ad_ones(t, AD_F64, ad_shape2(2, 3));
    b = ad_ones(t, AD_F64, ad_shape2(4, 5));
    cr_assert_null(ad_matmul(t, a, b, 0));
    cr_assert_eq(ad_tape_status(t), AD_ERR_SHAPE);
    cr_assert_str_eq(ad_tape_message(t), "matmul: [2,3] x [4,5]: inner dimensions 3 and 4 differ");
    ad_tape_reset(t);
    a = ad_ones(t, AD_F64, ad_shape2(2, 3));
    b = ad_ones(t, AD_F32, ad_shape2(3, 5));
    cr_assert_null(ad_matmul(t, a, b, 0));
    cr_assert_eq(ad_tape_status(t), AD_ERR_DTYPE);
    ad_tape_reset(t);
    a = ad_ones(t, AD_F64, ad_shape3(2, 3, 1));
    cr_assert_null(ad_matmul(t, a, a, 0));
    cr_assert_eq(ad_tape_status(t), AD_ERR_SHAPE);
    ad_tape_reset(t);
    a = ad_ones(t, AD_F64, ad_shape2(2, 3));
    cr_assert_null(ad_matmul(t, a, a, 8));
    cr_assert_eq(ad_tape_status(t), AD_ERR_ARG);
    ad_tape_reset(t);
    cr_assert_null(ad_matmul(t, NULL, a, 0));
    cr_assert_eq(ad_tape_status(t), AD_ERR_NULL);
    ad_tape_reset(t);
    cr_assert_null(ad_detach(t, NULL));
    cr_assert_eq(ad_tape_status(t), AD_ERR_NULL);
    ad_tape_free(t);
    ad_tape_free(other);
    cr_assert_eq(ts_live_allocs(), before);
}

Test(errors, backward_bad_inputs)
{
    ad_param *w = ad_param_new("w", AD_F64, ad_shape2(2, 2), NULL);
    ad_tape *t = ad_tape_new(NULL);
    ad_tape *other = ad_tape_new(NULL);
    ad_tensor *x = ad_ones(t, AD_F64, ad_shape2(1, 2));
    ad_tensor *y = ad_matmul(t, x, ad_use(t, w), 0);
    cr_assert_eq(ad_backward(t, NULL, NULL), AD_ERR_NULL);
    ad_tape_reset(t);
    x = ad_ones(t, AD_F64, ad_shape2(1, 2));
    y = ad_matmul(t, x, ad_use(t, w), 0);
    cr_assert_eq(ad_backward(t, y, NULL), AD_ERR_NOT_SCALAR);
    cr_assert(strstr(ad_tape_message(t), "[1,2]") != NULL, "%s", ad_tape_message(t));
    ad_tape_reset(t);
    x = ad_ones(t, AD_F64, ad_shape2(1, 2));
    y = ad_matmul(t, x, ad_use(t, w), 0);
    ad_tensor *up = ad_ones(t, AD_F64, ad_shape2(2, 1));
    cr_assert_eq(ad_backward(t, y, up), AD_ERR_SHAPE);
    ad_tape_reset(t);
    x = ad_ones(t, AD_F64, ad_shape2(1, 2));
    y = ad_matmul(t, x, ad_use(t, w), 0);
    up = ad_ones(t, AD_F32, ad_shape2(1, 2));
    cr_assert_eq(ad_backward(t, y, up), AD_ERR_DTYPE);
    ad_tape_reset(t);
    ad_tensor *foreign = ad_ones(other, AD_F64, ad_shape0());
    cr_assert_eq(ad_backward(t, foreign, NULL), AD_ERR_FOREIGN);
    ad_tape_reset(t);
    ad_tensor *c = ad_ones(t, AD_F64, ad_shape0());
    cr_assert_eq(ad_backward(t, c, NULL), AD_ERR_STATE);
    ad_tape_free(t);
    ad_tape_free(other);
    ad_param_free(w);
}

/* Every op given a NULL input returns NULL with AD_ERR_NULL naming the op
 * (X a [2, 2] constant): one row per op, its call and what the message says. */
#define X ad_ones(t, AD_F64, ad_shape2(2, 2))
static const int64_t idx1[1] = {0};

static ad_tensor *null_matmul(ad_tape *t) { return ad_matmul(t, X, NULL, 0); }
static ad_tensor *null_add(ad_tape *t) { return ad_add(t, NULL, X); }
static ad_tensor *null_sub(ad_tape *t) { return ad_sub(t, X, NULL); }
static ad_tensor *null_mul(ad_tape *t) { return ad_mul(t, NULL, X); }
static ad_tensor *null_div(ad_tape *t) { return ad_div(t, X, NULL); }
static ad_tensor *null_add_scalar(ad_tape *t) { return ad_add_scalar(t, NULL, 1); }
static ad_tensor *null_mul_scalar(ad_tape *t) { return ad_mul_scalar(t, NULL, 1); }
static ad_tensor *null_pow_scalar(ad_tape *t) { return ad_pow_scalar(t, NULL, 2); }
static ad_tensor *null_neg(ad_tape *t) { return ad_neg(t, NULL); }
static ad_tensor *null_exp(ad_tape *t) { return ad_exp(t, NULL); }
static ad_tensor *null_log(ad_tape *t) { return ad_log(t, NULL); }
static ad_tensor *null_sqrt(ad_tape *t) { return ad_sqrt(t, NULL); }
static ad_tensor *null_abs(ad_tape *t) { return ad_abs(t, NULL); }
static ad_tensor *null_sigmoid(ad_tape *t) { return ad_sigmoid(t, NULL); }
static ad_tensor *null_relu(ad_tape *t) { return ad_relu(t, NULL); }
static ad_tensor *null_sum(ad_tape *t) { return ad_sum(t, NULL, 0, 0); }
static ad_tensor *null_mean(ad_tape *t) { return ad_mean(t, NULL, AD_AXIS_ALL, 0); }
static ad_tensor *null_log_softmax(ad_tape *t) { return ad_log_softmax(t, NULL, 0); }
static ad_tensor *null_slice(ad_tape *t) { return ad_slice(t, NULL, 0, 0, 1); }
static ad_tensor *null_gather_rows(ad_tape *t) { return ad_gather_rows(t, NULL, idx1, 1); }
static ad_tensor *null_where(ad_tape *t) { return ad_where(t, X, NULL, X); }
static ad_tensor *null_cross_entropy(ad_tape *t)
{
    return ad_cross_entropy(t, NULL, idx1, 1, -100, AD_REDUCE_SUM);
}
static ad_tensor *null_bce_with_logits(ad_tape *t) { return ad_bce_with_logits(t, X, NULL, AD_REDUCE_SUM); }
static ad_tensor *null_bce(ad_tape *t) { return ad_bce(t, NULL, X, AD_REDUCE_SUM); }
static ad_tensor *null_concat(ad_tape *t) { return ad_concat(t, (ad_tensor *[]){X, NULL}, 2, 0); }
static ad_tensor *null_permute(ad_tape *t) { return ad_permute(t, NULL, (int[]){1, 0}); }
#undef X

#define NC(op, fragment) {#op, AD_ERR_NULL, fragment, null_##op}
static const ts_bad_call null_cases[] = {
    NC(matmul, "matmul: input 1 is NULL"),
    NC(add, "add: input 0"),
    NC(sub, "sub: input 1"),
    NC(mul, "mul: input 0"),
    NC(div, "div: input 1"),
    NC(add_scalar, "add_scalar: input 0"),
    NC(mul_scalar, "mul_scalar: input 0"),
    NC(pow_scalar, "pow_scalar: input 0"),
    NC(neg, "neg: input 0"),
    NC(exp, "exp: input 0"),
    NC(log, "log: input 0"),
    NC(sqrt, "sqrt: input 0"),
    NC(abs, "abs: input 0"),
    NC(sigmoid, "sigmoid: input 0"),
    NC(relu, "relu: input 0"),
    NC(sum, "sum: input 0"),
    NC(mean, "mean: input 0"),
    NC(log_softmax, "log_softmax: input 0"),
    NC(slice, "slice: input 0"),
    NC(gather_rows, "gather_rows: input 0"),
    NC(where, "where: input 1"),
    NC(cross_entropy, "cross_entropy: input 0"),
    NC(bce_with_logits, "bce_with_logits: input 1"),
    NC(bce, "bce: input 0"),
    NC(concat, "concat: input 1"),
    NC(permute, "permute: input 0"),
};

Test(errors, every_op_refuses_null_inputs)
{
    long before = ts_live_allocs();
    ts_expect_bad_calls(null_cases, (int)(sizeof null_cases / sizeof null_cases[0]));
    cr_assert_eq(ts_live_allocs(), before);
}

/* Functions for code built on the engine: reporting errors, moving parameter storage. */
Test(errors, extension_functions_bad_inputs)
{
    long before = ts_live_allocs();
    cr_assert_eq(ad_tape_fail(NULL, AD_ERR_ARG, "x"), AD_ERR_NULL);
    ad_tape *t = ad_tape_new(NULL);
    cr_assert_eq(ad_tape_fail(t, AD_ERR_ARG, "layer %d: bad", 3), AD_ERR_ARG);
    cr_assert_eq(ad_tape_fail(t, AD_ERR_SHAPE, "second"), AD_ERR_ARG, "the first error wins");
    cr_assert_str_eq(ad_tape_message(t), "layer 3: bad");
    ad_tape_free(t);
    ad_error err;
    cr_assert_eq(ad_error_set(&err, AD_ERR_IO, "file %s", "a.npy"), AD_ERR_IO);
    cr_assert_str_eq(err.msg, "file a.npy");
    cr_assert_eq(ad_error_set(NULL, AD_ERR_IO, "ignored"), AD_ERR_IO);
    float v[2], g[2], v2[2], g2[2];
    ad_param *view = ad_param_view("w", AD_F32, ad_shape1(2), v, g, NULL);
    cr_assert_eq(ad_param_rebind(view, v2, g2, &err), AD_OK);
    cr_assert_eq(ad_tensor_f32(ad_param_value(view)), v2);
    cr_assert_eq(ad_tensor_f32(ad_param_grad(view)), g2);
    cr_assert_eq(ad_param_rebind(view, NULL, g2, &err), AD_ERR_NULL);
    cr_assert_eq(ad_param_rebind(NULL, v2, g2, &err), AD_ERR_NULL);
    ad_param *owner = ad_param_new("o", AD_F32, ad_shape1(2), NULL);
    cr_assert_eq(ad_param_rebind(owner, v2, g2, &err), AD_ERR_STATE);
    cr_assert(strstr(err.msg, "owns its storage"), "%s", err.msg);
    ad_param_free(owner);
    ad_param_free(view);
    cr_assert_eq(ts_live_allocs(), before);
}

/* The words of a long message, "w000 w001 ...": cut anywhere, the cut is
 * visible only if it falls at a boundary and is marked. */
static void long_words(char *buf, size_t cap)
{
    size_t n = 0;
    for (int i = 0; n + 6 < cap; i++) n += (size_t)snprintf(buf + n, cap - n, "%sw%03d", i ? " " : "", i);
}

/* A message cut to fit ends at a word boundary with "…" (UTF-8), and the
 * text before it is the start of the whole message. */
static void expect_cut_at_boundary(const char *msg, const char *whole, size_t min_len, size_t max_len)
{
    static const char ellipsis[] = "\xe2\x80\xa6";
    size_t len = strlen(msg), e = sizeof ellipsis - 1;
    cr_assert(len <= max_len, "%zu bytes, more than %zu", len, max_len);
    cr_assert(len >= min_len, "cut too early: %zu bytes", len);
    cr_assert(len >= e && strcmp(msg + len - e, ellipsis) == 0, "no ellipsis: ...%s", msg + len - 8);
    size_t kept = len - e;
    cr_assert_eq(strncmp(msg, whole, kept), 0, "the kept text is not the start of the message");
    cr_assert(whole[kept] == ' ' && msg[kept - 1] != ' ', "cut inside a word at %zu: '%.12s'", kept,
              whole + kept - 6);
}

Test(errors, long_messages_are_cut_at_a_boundary_and_marked)
{
    char whole[600];
    long_words(whole, sizeof whole);
    ad_error err;
    cr_assert_eq(ad_error_set(&err, AD_ERR_ARG, "%s", whole), AD_ERR_ARG);
    expect_cut_at_boundary(err.msg, whole, AD_ERROR_MSG_SIZE - 1 - 8, AD_ERROR_MSG_SIZE - 1);
    /* a message that fits is kept as it is */
    cr_assert_eq(ad_error_set(&err, AD_ERR_ARG, "short %s message", "whole"), AD_ERR_ARG);
    cr_assert_str_eq(err.msg, "short whole message");
    char fits[AD_ERROR_MSG_SIZE];
    memset(fits, 'x', sizeof fits - 1);
    fits[sizeof fits - 1] = '\0';
    ad_error_set(&err, AD_ERR_ARG, "%s", fits);
    cr_assert_str_eq(err.msg, fits, "exactly 255 bytes fit");
    /* the tape's message follows the same rule */
    ad_tape *t = ad_tape_new(NULL);
    char longer[1200];
    long_words(longer, sizeof longer);
    ad_tape_fail(t, AD_ERR_ARG, "%s", longer);
    const char *m = ad_tape_message(t);
    expect_cut_at_boundary(m, longer, AD_ERROR_MSG_SIZE, strlen(longer) - 1);
    ad_tape_free(t);
}
