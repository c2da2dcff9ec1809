/*
 * test_anomaly.c - anomaly mode names the first op producing NaN/Inf.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "testsupport.h"

Test(anomaly, forward_names_op_node_and_label)
{
    ad_param *w = ad_param_new("w", AD_F64, ad_shape1(3), NULL);
    double *v = ad_tensor_f64(ad_param_value(w));
    v[0] = 1, v[1] = -1, v[2] = 2;
    ad_tape *t = ad_tape_new(NULL);
    cr_assert_eq(ad_tape_set_anomaly(t, 1), 0, "a new tape starts with anomaly mode off");
    ad_tensor *x = ad_use(t, w);
    ad_tensor *e = ad_exp(t, x);
    ad_tape_set_label(t, "cell t=17");
    ad_tensor *l = ad_log(t, ad_add_scalar(t, x, 0.5)); /* log(-0.5) = NaN */
    cr_assert_not_null(e);
    cr_assert_null(l);
    cr_assert_eq(ad_tape_status(t), AD_ERR_NONFINITE);
    const char *m = ad_tape_message(t);
    cr_assert(strstr(m, "log") && strstr(m, "node 3") && strstr(m, "cell t=17") &&
                  strstr(m, "forward"),
              "message: %s", m);
    ad_tape_free(t);
    ad_param_free(w);
}

Test(anomaly, off_by_default_values_propagate)
{
    ad_tape *t = ad_tape_new(NULL);
    ad_tensor *x = ad_full(t, AD_F64, ad_shape1(2), -1.0);
    ad_tensor *l = ad_log(t, x);
    cr_assert_not_null(l);
    cr_assert(ad_tensor_get(l, 0) != ad_tensor_get(l, 0));
    cr_assert_eq(ad_tape_set_anomaly(t, 1), 0);
    cr_assert_null(ad_log(t, x));
    cr_assert_eq(ad_tape_status(t), AD_ERR_NONFINITE);
    ad_tape_free(t);
}

/* sqrt(0) is finite but its derivative 1/(2 sqrt 0) is not: caught in backward. */
Test(anomaly, backward_names_op)
{
    ad_param *w = ad_param_new("w", AD_F64, ad_shape1(2), NULL);
    ad_tensor_f64(ad_param_value(w))[1] = 4.0;
    ad_tape *t = ad_tape_new(NULL);
    ad_tape_set_anomaly(t, 1);
    ad_tape_set_label(t, "head");
    ad_tensor *s = ad_sum(t, ad_sqrt(t, ad_use(t, w)), AD_AXIS_ALL, 0);
    cr_assert_not_null(s, "%s", ad_tape_message(t));
    cr_assert_eq(ad_backward(t, s, NULL), AD_ERR_NONFINITE);
    const char *m = ad_tape_message(t);
    cr_assert(strstr(m, "sqrt") && strstr(m, "backward") && strstr(m, "head"), "message: %s", m);
    ad_tape_free(t);
    ad_param_free(w);
}
