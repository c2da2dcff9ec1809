/*
 * test_gradcheck.c - the gradient checker itself.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "testsupport.h"

typedef struct mm_ctx {
    ad_param *p[2];
    int flags;
} mm_ctx;

static ad_tensor *mm_graph(ad_tape *t, void *vc)
{
    mm_ctx *c = vc;
    return ad_matmul(t, ad_use(t, c->p[0]), ad_use(t, c->p[1]), c->flags);
}

static void mm_make(mm_ctx *c, int flags, ad_dtype dt)
{
    int ta = flags & AD_TRANS_A, tb = (flags & AD_TRANS_B) != 0;
    c->flags = flags;
    c->p[0] = ad_param_new("A", dt, ta ? ad_shape2(4, 3) : ad_shape2(3, 4), NULL);
    c->p[1] = ad_param_new("B", dt, tb ? ad_shape2(5, 4) : ad_shape2(4, 5), NULL);
    for (int i = 0; i < 2 && dt == AD_F64; i++)
        ts_fill_uniform(ad_tensor_f64(ad_param_value(c->p[i])),
                        ad_tensor_numel(ad_param_value(c->p[i])), 5 + (uint64_t)i, -1, 1);
}

Test(gradcheck, matmul_all_transpose_cases)
{
    long before = ts_live_allocs();
    for (int flags = 0; flags < 4; flags++) {
        mm_ctx c;
        mm_make(&c, flags, AD_F64);
        ad_gradcheck_report rep;
        ad_error err;
        cr_assert_eq(ad_gradcheck(mm_graph, &c, c.p, 2, NULL, &rep, &err), AD_OK, "flags %d: %s",
                     flags, err.msg);
        cr_assert(rep.passed);
        cr_assert_str_eq(rep.entries[1].name, "B");
        cr_assert(rep.evaluations > 2 * (12 + 20));
        ad_gradcheck_options fast = {0};
        fast.fast = 1;
        fast.projections = 3;
        cr_assert_eq(ad_gradcheck(mm_graph, &c, c.p, 2, &fast, &rep, &err), AD_OK);
        cr_assert(rep.evaluations < 20, "fast mode evaluated %zu times", rep.evaluations);
        ad_param_free(c.p[0]);
        ad_param_free(c.p[1]);
    }
    cr_assert_eq(ts_live_allocs(), before);
}

Test(gradcheck, restores_values_and_gradients)
{
    mm_ctx c;
    mm_make(&c, 0, AD_F64);
    double *g = ad_tensor_f64(ad_param_grad(c.p[0]));
    g[0] = 7.25;
    double v[12], gg[12];
    memcpy(v, ad_tensor_f64(ad_param_value(c.p[0])), sizeof v);
    memcpy(gg, g, sizeof gg);
    ad_gradcheck_report rep;
    cr_assert_eq(ad_gradcheck(mm_graph, &c, c.p, 2, NULL, &rep, NULL), AD_OK);
    cr_assert_arr_eq(v, ad_tensor_f64(ad_param_value(c.p[0])), sizeof v);
    cr_assert_arr_eq(gg, g, sizeof gg);
    ad_param_free(c.p[0]);
    ad_param_free(c.p[1]);
}

Test(gradcheck, refuses_f32)
{
    mm_ctx c;
    mm_make(&c, 0, AD_F32);
    ad_gradcheck_report rep;
    ad_error err;
    cr_assert_eq(ad_gradcheck(mm_graph, &c, c.p, 2, NULL, &rep, &err), AD_ERR_DTYPE);
    cr_assert(strstr(err.msg, "'A' is f32") != NULL, "%s", err.msg);
    ad_param_free(c.p[0]);
    ad_param_free(c.p[1]);
}

static ad_tensor *failing_graph(ad_tape *t, void *vc)
{
    mm_ctx *c = vc;
    ad_tensor *a = ad_use(t, c->p[0]);
    return ad_matmul(t, a, a, 0); /* [3,4] x [3,4] */
}

Test(gradcheck, bad_arguments_and_graph_errors)
{
    mm_ctx c;
    mm_make(&c, 0, AD_F64);
    ad_gradcheck_report rep;
    ad_error err;
    cr_assert_eq(ad_gradcheck(NULL, &c, c.p, 2, NULL, &rep, &err), AD_ERR_NULL);
    cr_assert_eq(ad_gradcheck(mm_graph, &c, NULL, 2, NULL, &rep, &err), AD_ERR_NULL);
    cr_assert_eq(ad_gradcheck(mm_graph, &c, c.p, 2, NULL, NULL, &err), AD_ERR_NULL);
    cr_assert_eq(ad_gradcheck(mm_graph, &c, c.p, 0, NULL, &rep, &err), AD_ERR_ARG);
    cr_assert_eq(ad_gradcheck(mm_graph, &c, c.p, AD_GRADCHECK_MAX_PARAMS + 1, NULL, &rep, &err),
                 AD_ERR_ARG);
    ad_param *withnull[2] = {c.p[0], NULL};
    cr_assert_eq(ad_gradcheck(mm_graph, &c, withnull, 2, NULL, &rep, &err), AD_ERR_NULL);
    cr_assert_eq(ad_gradcheck(failing_graph, &c, c.p, 1, NULL, &rep, &err), AD_ERR_SHAPE);
    cr_assert(strstr(err.msg, "inner dimensions") != NULL, "%s", err.msg);
    ad_param_free(c.p[0]);
    ad_param_free(c.p[1]);
}

/* Every allocation of a check may fail: a clean status, nothing leaked. */
Test(gradcheck, allocation_failures)
{
    mm_ctx c;
    mm_make(&c, 0, AD_F64);
    long before = ts_live_allocs();
    int done = 0;
    for (long k = 1; k < 100 && !done; k++) {
        ts_fail_alloc_at(k);
        ad_gradcheck_report rep;
        ad_error err;
        ad_status st = ad_gradcheck(mm_graph, &c, c.p, 2, NULL, &rep, &err);
        int fired = ts_fail_alloc_fired();
        ts_fail_alloc_at(0);
        if (fired) {
            cr_assert_eq(st, AD_ERR_NOMEM, "failure %ld gave %s: %s", k, ad_status_name(st),
                         err.msg);
        } else {
            cr_assert_eq(st, AD_OK);
            done = 1;
        }
        cr_assert_eq(ts_live_allocs(), before, "leak after failing allocation %ld", k);
    }
    cr_assert(done);
    ad_param_free(c.p[0]);
    ad_param_free(c.p[1]);
}
