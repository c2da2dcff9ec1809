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
