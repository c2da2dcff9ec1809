/*
 * test_alloc.c - the memory contract of the tape: a warmed-up step does no
 * allocation, and every failed allocation is a clean error with no leak.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "testsupport.h"

/* One small recurrent step pattern: h = tanh(x W + h U + b), loss = sum(h). */
static ad_status step(ad_tape *t, ad_param *const *p, int steps)
{
    double x0[6] = {0.1, -0.2, 0.3, 0.4, -0.5, 0.6};
    ad_tensor *x = ad_from_data(t, AD_F64, ad_shape2(2, 3), x0);
    ad_tensor *h = ad_zeros(t, AD_F64, ad_shape2(2, 3));
    for (int s = 0; s < steps; s++) {
        ad_tensor *a = ad_matmul(t, x, ad_use(t, p[0]), 0);
        ad_tensor *b = ad_matmul(t, h, ad_use(t, p[1]), 0);
        h = ad_tanh(t, ad_add(t, ad_add(t, a, b), ad_use(t, p[2])));
    }
    ad_tensor *loss = ad_sum(t, h, AD_AXIS_ALL, 0);
    if (!loss) return ad_tape_status(t);
    return ad_backward(t, loss, NULL);
}

static void make_params(ad_param **p)
{
    p[0] = ad_param_new("W", AD_F64, ad_shape2(3, 3), NULL);
    p[1] = ad_param_new("U", AD_F64, ad_shape2(3, 3), NULL);
    p[2] = ad_param_new("b", AD_F64, ad_shape1(3), NULL);
    for (int i = 0; i < 3; i++)
        ts_fill_uniform(ad_tensor_f64(ad_param_value(p[i])), ad_tensor_numel(ad_param_value(p[i])),
                        (uint64_t)i + 1, -0.5, 0.5);
}

Test(alloc, warmed_up_steps_allocate_nothing)
{
    ad_param *p[3];
    make_params(p);
    ts_counting_alloc c = {0};
    ad_tape_options o = ts_counting_options(&c);
    o.chunk_bytes = 4096; /* small chunks: the step spans several */
    ad_tape *t = ad_tape_new(&o);
    cr_assert_not_null(t);
    cr_assert_eq(step(t, p, 8), AD_OK, "%s", ad_tape_message(t));
    long warm = c.calls;
    cr_assert(warm > 3, "the first step should need several chunks, made %ld", warm);
    long heap_before = ts_total_allocs();
    for (int i = 0; i < 5; i++) {
        ad_tape_reset(t);
        cr_assert_eq(step(t, p, 8), AD_OK, "%s", ad_tape_message(t));
    }
    cr_assert_eq(c.calls, warm, "steady state allocated %ld times", c.calls - warm);
    cr_assert_eq(ts_total_allocs(), heap_before, "steady state called malloc");
    ad_tape_free(t);
    cr_assert_eq(c.calls, c.frees);
    for (int i = 0; i < 3; i++) ad_param_free(p[i]);
}

/* Fail the 1st, 2nd, ... allocation of a forward+backward: each run ends in a
 * clean AD_ERR_NOMEM (or succeeds once past the last allocation) and frees
 * everything. */
Test(alloc, every_failed_allocation_is_a_clean_error)
{
    ad_param *p[3];
    make_params(p);
    int succeeded = 0;
    for (long k = 1; k < 200 && !succeeded; k++) {
        ts_counting_alloc c = {0};
        c.fail_at = k;
        ad_tape_options o = ts_counting_options(&c);
        o.chunk_bytes = 1024;
        ad_tape *t = ad_tape_new(&o);
        if (!t) {
            cr_assert_eq(k, 1, "only the first allocation is the tape itself");
            continue;
        }
        ad_status st = step(t, p, 4);
        if (c.attempts >= k) {
            cr_assert_eq(st, AD_ERR_NOMEM, "failure at allocation %ld gave %s: %s", k,
                         ad_status_name(st), ad_tape_message(t));
            cr_assert(strlen(ad_tape_message(t)) > 0);
            /* The tape stays usable after a reset. */
            ad_tape_reset(t);
            cr_assert_eq(ad_tape_status(t), AD_OK);
        } else {
            cr_assert_eq(st, AD_OK);
            succeeded = 1;
        }
        ad_tape_free(t);
        cr_assert_eq(c.calls, c.frees, "leak after failing allocation %ld", k);
    }
    cr_assert(succeeded, "never got past the allocations");
    for (int i = 0; i < 3; i++) ad_param_free(p[i]);
}
