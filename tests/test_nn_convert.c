/*
 * A model trained in f32 checked in f64: nn_params_clone(), nn_cell_rebind()
 * and nn_params_copy_values(); and gradient checks of inputs that are not
 * model parameters (dL/dh0, dL/dx), by holding them in ad_params.
 */
#include <criterion/criterion.h>
#include <float.h>
#include <math.h>
#include <string.h>
#include <unroll/nn/nn.h>

#include "testsupport.h"

enum { I = 3, H = 4, B = 2, T = 4 };

typedef struct model {
    nn_cell lstm;
    ad_param *h0, *x; /* the initial state and the inputs, held in params so gradcheck can vary them */
} model;

static ad_tensor *graph(ad_tape *t, void *ctx)
{
    model *m = ctx;
    ad_tensor *x = ad_use(t, m->x), *xs[T];
    for (int k = 0; k < T; k++) xs[k] = ad_slice(t, x, 0, k * B, B);
    nn_state h0 = {ad_use(t, m->h0), ad_zeros(t, AD_F64, ad_shape2(B, H))}, last;
    nn_unroll_options o = {.h0 = &h0};
    if (nn_unroll(t, &m->lstm, xs, T, &o, NULL, &last) != AD_OK) return NULL;
    return ad_sum(t, ad_mul(t, last.h, last.h), AD_AXIS_ALL, 0);
}

Test(nn_convert, an_f32_model_is_checked_in_f64)
{
    long before = ts_live_allocs();
    ad_error err;
    nn_params *ps32 = nn_params_new(AD_F32, &err);
    nn_cell lstm32;
    cr_assert_eq(nn_cell_create(&lstm32, ps32, "lstm", &(nn_cell_options){.kind = NN_CELL_LSTM, .input_size = I, .hidden_size = H}, &err), AD_OK);
    ad_rng rng;
    ad_rng_seed(&rng, 4, 0);
    nn_cell_init_pytorch(&lstm32, &rng);

    nn_params *ps64 = nn_params_clone(ps32, AD_F64, &err);
    cr_assert_not_null(ps64, "%s", err.msg);
    cr_assert_eq(nn_params_count(ps64), nn_params_count(ps32));
    size_t n32, n64;
    float *v32 = nn_params_values(ps32, &n32);
    double *v64 = nn_params_values(ps64, &n64);
    cr_assert_eq(n32, n64);
    for (size_t i = 0; i < n32; i++) cr_assert(v64[i] == (double)v32[i]);

    model m;
    cr_assert_eq(nn_cell_rebind(&lstm32, ps64, &m.lstm, &err), AD_OK, "%s", err.msg);
    for (int i = 0; i < m.lstm.n_w; i++) {
        cr_assert_str_eq(ad_param_name(m.lstm.w[i]), ad_param_name(lstm32.w[i]));
        cr_assert_eq(ad_tensor_dtype(ad_param_value(m.lstm.w[i])), AD_F64);
    }
    /* dL/dW, dL/dh0 and dL/dx against central differences */
    m.h0 = ad_param_new("h0", AD_F64, ad_shape2(B, H), &err);
    m.x = ad_param_new("x", AD_F64, ad_shape2(T * B, I), &err);
    ts_fill_uniform(ad_tensor_f64(ad_param_value(m.h0)), B * H, 1, -1, 1);
    ts_fill_uniform(ad_tensor_f64(ad_param_value(m.x)), T * B * I, 2, -1, 1);
    ad_param *check[8] = {m.h0, m.x};
    size_t n = 2;
    for (int i = 0; i < m.lstm.n_w; i++) check[n++] = m.lstm.w[i];
    ad_gradcheck_report rep;
    cr_assert_eq(ad_gradcheck(graph, &m, check, n, NULL, &rep, &err), AD_OK, "%s", err.msg);
    cr_assert(rep.passed);

    /* and back: an update made in f64 reaches the f32 model, rounded */
    for (size_t i = 0; i < n64; i++) v64[i] += 1e-3 * (double)i;
    cr_assert_eq(nn_params_copy_values(ps32, ps64, &err), AD_OK, "%s", err.msg);
    for (size_t i = 0; i < n32; i++) cr_assert(v32[i] == (float)v64[i]);

    ad_param_free(m.h0);
    ad_param_free(m.x);
    nn_params_free(ps64);
    nn_params_free(ps32);
    cr_assert_eq(ts_live_allocs(), before);
}

Test(nn_convert, bad_inputs)
{
    long before = ts_live_allocs();
    ad_error err;
    nn_params *a = nn_params_new(AD_F32, &err), *b = nn_params_new(AD_F64, &err);
    nn_params_add(a, "w", ad_shape2(2, 3), &err);
    ad_param *bw = nn_params_add(b, "w", ad_shape2(3, 2), &err);
    cr_assert_eq(nn_params_copy_values(a, b, &err), AD_ERR_SHAPE);
    cr_assert(strstr(err.msg, "[2,3]") && strstr(err.msg, "[3,2]"), "%s", err.msg);
    cr_assert_eq(nn_params_copy_values(NULL, b, &err), AD_ERR_NULL);
    cr_assert_eq(nn_params_copy_values(a, NULL, &err), AD_ERR_NULL);
    nn_params *c = nn_params_new(AD_F64, &err);
    nn_params_add(c, "v", ad_shape2(2, 3), &err);
    cr_assert_eq(nn_params_copy_values(a, c, &err), AD_ERR_NOT_FOUND);
    cr_assert(strstr(err.msg, "'w'"), "%s", err.msg);
    nn_params *d = nn_params_new(AD_F64, &err);
    nn_params_add(d, "w", ad_shape2(2, 3), &err);
    nn_params_add(d, "extra", ad_shape1(1), &err);
    cr_assert_eq(nn_params_copy_values(a, d, &err), AD_ERR_MISMATCH);
    /* a value f32 cannot hold: refused, and nothing changes */
    ad_tensor_f64(ad_param_value(nn_params_get(d, "w")))[0] = 0.5;
    ad_tensor_f64(ad_param_value(nn_params_get(d, "w")))[4] = 1e300;
    nn_params *e = nn_params_clone(d, AD_F32, &err);
    cr_assert_null(e);
    cr_assert_eq(err.code, AD_ERR_NONFINITE, "%s", err.msg);
    cr_assert_null(nn_params_clone(NULL, AD_F64, &err));
    cr_assert_eq(err.code, AD_ERR_NULL);
    cr_assert_null(nn_params_clone(b, (ad_dtype)7, &err));
    cr_assert_eq(err.code, AD_ERR_DTYPE);

    nn_cell cell = {.kind = NN_CELL_CUSTOM, .n_w = 1};
    strcpy(cell.name, "c");
    cell.w[0] = bw;
    nn_cell out;
    cr_assert_eq(nn_cell_rebind(&cell, c, &out, &err), AD_ERR_NOT_FOUND);
    cr_assert(strstr(err.msg, "'w'"), "%s", err.msg);
    cr_assert_eq(nn_cell_rebind(NULL, c, &out, &err), AD_ERR_NULL);
    cr_assert_eq(nn_cell_rebind(&cell, NULL, &out, &err), AD_ERR_NULL);
    cr_assert_eq(nn_cell_rebind(&cell, c, NULL, &err), AD_ERR_NULL);
    cell.n_w = 9;
    cr_assert_eq(nn_cell_rebind(&cell, c, &out, &err), AD_ERR_ARG);
    nn_params_free(a), nn_params_free(b), nn_params_free(c), nn_params_free(d);
    cr_assert_eq(ts_live_allocs(), before);
}
