/*
 * test_nn_layers.c - Linear and Embedding: values by hand, an f64 gradient
 * check through embedding -> linear -> cross-entropy, names, bad inputs.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include <unroll/nn/nn.h>
#include "testsupport.h"

typedef struct ctx {
    nn_embedding emb;
    nn_linear lin;
} ctx;

static const int64_t ids[5] = {3, 0, 3, 1, 2};
static const int64_t targets[5] = {1, 0, 2, 2, 1};

static ad_tensor *graph(ad_tape *t, void *vc)
{
    ctx *c = vc;
    ad_tensor *x = nn_embedding_forward(t, &c->emb, ids, 5);
    return ad_cross_entropy(t, nn_linear_forward(t, &c->lin, ad_tanh(t, x)), targets, 5, -100,
                            AD_REDUCE_MEAN);
}

Test(nn_layers, gradcheck_embedding_linear)
{
    long before = ts_live_allocs();
    nn_params *ps = nn_params_new(AD_F64, NULL);
    ctx c;
    cr_assert_eq(nn_embedding_create(&c.emb, ps, "emb", 4, 3, NULL), AD_OK);
    cr_assert_eq(nn_linear_create(&c.lin, ps, "fc", 3, 3, 1, NULL), AD_OK);
    ad_rng rng;
    ad_rng_seed(&rng, 6, 0);
    nn_embedding_init_pytorch(&c.emb, &rng);
    nn_linear_init_pytorch(&c.lin, &rng);
    cr_assert_not_null(nn_params_get(ps, "fc.bias"));
    ad_param *p[3] = {c.emb.weight, c.lin.weight, c.lin.bias};
    ad_gradcheck_report rep;
    ad_error err;
    ad_status st = ad_gradcheck(graph, &c, p, 3, NULL, &rep, &err);
    if (st != AD_OK) ad_gradcheck_print(&rep, stderr);
    cr_assert_eq(st, AD_OK, "%s", err.msg);
    nn_params_free(ps);
    cr_assert_eq(ts_live_allocs(), before);
}

Test(nn_layers, linear_values)
{
    nn_params *ps = nn_params_new(AD_F64, NULL);
    nn_linear lin;
    nn_linear_create(&lin, ps, "fc", 2, 1, 1, NULL);
    double *w = ad_tensor_f64(ad_param_value(lin.weight)), *b = ad_tensor_f64(ad_param_value(lin.bias));
    w[0] = 2, w[1] = -1, b[0] = 0.5;
    ad_tape *t = ad_tape_new(NULL);
    ad_tensor *y = nn_linear_forward(t, &lin, ad_from_data(t, AD_F64, ad_shape2(2, 2),
                                                           (double[]){1, 1, 3, 4}));
    cr_assert_not_null(y, "%s", ad_tape_message(t));
    cr_assert_eq(ad_tensor_f64(y)[0], 1.5);
    cr_assert_eq(ad_tensor_f64(y)[1], 2.5);
    ad_tape_free(t);
    nn_params_free(ps);
}

static nn_params *bad_ps;
static nn_linear bad_lin;
static nn_embedding bad_emb;

static ad_tensor *call_bad(ad_tape *t, int i)
{
    if (!bad_ps) {
        bad_ps = nn_params_new(AD_F64, NULL);
        nn_linear_create(&bad_lin, bad_ps, "fc", 3, 2, 1, NULL);
        nn_embedding_create(&bad_emb, bad_ps, "emb", 4, 3, NULL);
    }
    switch (i) {
    case 0: return nn_linear_forward(t, &bad_lin, ad_zeros(t, AD_F64, ad_shape2(2, 4)));
    case 1: return nn_linear_forward(t, NULL, ad_zeros(t, AD_F64, ad_shape2(2, 3)));
    case 2: return nn_linear_forward(t, &bad_lin, ad_zeros(t, AD_F32, ad_shape2(2, 3)));
    case 3: return nn_embedding_forward(t, &bad_emb, (int64_t[]){4}, 1);
    case 4: return nn_embedding_forward(t, &bad_emb, NULL, 1);
    case 5: return nn_linear_forward(t, &bad_lin, NULL);
    }
    return NULL;
}

static const ts_bad_case bad[] = {
    {"linear shape", AD_ERR_SHAPE, "linear fc.weight: input must be [B, 3]"},
    {"linear NULL", AD_ERR_NULL, "layer is NULL"},
    {"linear dtype", AD_ERR_DTYPE, "addmm: input 1 is f64 but input 0 is f32"},
    {"embedding index", AD_ERR_ARG, "index 4 at position 0"},
    {"embedding NULL ids", AD_ERR_NULL, "indices are NULL"},
    {"linear NULL input", AD_ERR_NULL, "addmm: input 0 is NULL"},
};

Test(nn_layers, bad_inputs)
{
    ts_expect_tape_errors(call_bad, bad, (int)(sizeof bad / sizeof bad[0]));
    nn_params_free(bad_ps);
    bad_ps = NULL;
    nn_params *ps = nn_params_new(AD_F64, NULL);
    nn_linear lin;
    nn_embedding e;
    ad_error err;
    cr_assert_eq(nn_linear_create(&lin, ps, "fc", 0, 2, 1, &err), AD_ERR_ARG);
    cr_assert_eq(nn_linear_create(NULL, ps, "fc", 1, 2, 1, &err), AD_ERR_NULL);
    cr_assert_eq(nn_embedding_create(&e, ps, "emb", 3, 0, &err), AD_ERR_ARG);
    cr_assert_eq(nn_embedding_create(&e, ps, "emb", 3, 2, &err), AD_OK);
    cr_assert_eq(nn_embedding_create(&e, ps, "emb", 3, 2, &err), AD_ERR_DUPLICATE);
    nn_params_free(ps);
}

Test(nn_layers, layer_norm_gain_and_bias)
{
    long before = ts_live_allocs();
    ad_error err;
    nn_params *ps = nn_params_new(AD_F64, &err);
    nn_layer_norm ln, bare;
    cr_assert_eq(nn_layer_norm_create(&ln, ps, "ln", 4, 1e-5, 1, &err), AD_OK, "%s", err.msg);
    cr_assert_str_eq(ad_param_name(ln.weight), "ln.weight");
    cr_assert_str_eq(ad_param_name(ln.bias), "ln.bias");
    for (int i = 0; i < 4; i++) { /* PyTorch's initial values */
        cr_assert(ad_tensor_f64(ad_param_value(ln.weight))[i] == 1.0);
        cr_assert(ad_tensor_f64(ad_param_value(ln.bias))[i] == 0.0);
    }
    cr_assert_eq(nn_layer_norm_create(&bare, NULL, NULL, 4, 1e-5, 0, &err), AD_OK);
    double w[4] = {0.5, -1, 2, 1.5}, b[4] = {0.1, 0.2, -0.3, 0.4}, x[8] = {1, 2, 3, 5, -1, 0, 4, 9};
    memcpy(ad_tensor_f64(ad_param_value(ln.weight)), w, sizeof w);
    memcpy(ad_tensor_f64(ad_param_value(ln.bias)), b, sizeof b);
    ad_tape *t = ad_tape_new(NULL);
    ad_tensor *xt = ad_from_f64(t, AD_F64, ad_shape2(2, 4), x);
    ad_tensor *y = nn_layer_norm_forward(t, &ln, xt), *z = nn_layer_norm_forward(t, &bare, xt);
    cr_assert_not_null(y, "%s", ad_tape_message(t));
    for (int r = 0; r < 2; r++) {
        double mu = 0, v = 0;
        for (int k = 0; k < 4; k++) mu += x[r * 4 + k] / 4;
        for (int k = 0; k < 4; k++) v += (x[r * 4 + k] - mu) * (x[r * 4 + k] - mu) / 4;
        for (int k = 0; k < 4; k++) {
            double n = (x[r * 4 + k] - mu) / sqrt(v + 1e-5);
            cr_assert(fabs(ad_tensor_get(z, (size_t)(r * 4 + k)) - n) < 1e-14);
            cr_assert(fabs(ad_tensor_get(y, (size_t)(r * 4 + k)) - (n * w[k] + b[k])) < 1e-14);
        }
    }
    ad_tape_reset(t);
    cr_assert_null(nn_layer_norm_forward(t, &ln, ad_zeros(t, AD_F64, ad_shape2(2, 5))));
    cr_assert_eq(ad_tape_status(t), AD_ERR_SHAPE);
    cr_assert(strstr(ad_tape_message(t), "last axis must be 4"), "%s", ad_tape_message(t));
    ad_tape_reset(t);
    cr_assert_null(nn_layer_norm_forward(t, NULL, ad_zeros(t, AD_F64, ad_shape2(2, 4))));
    cr_assert_eq(ad_tape_status(t), AD_ERR_NULL);
    cr_assert_eq(nn_layer_norm_create(&bare, ps, "x", 0, 1e-5, 1, &err), AD_ERR_ARG);
    cr_assert_eq(nn_layer_norm_create(&bare, ps, "x", 4, 0.0, 1, &err), AD_ERR_ARG);
    cr_assert_eq(nn_layer_norm_create(&bare, ps, "ln", 4, 1e-5, 1, &err), AD_ERR_DUPLICATE);
    cr_assert_eq(nn_layer_norm_create(NULL, ps, "y", 4, 1e-5, 1, &err), AD_ERR_NULL);
    cr_assert_eq(nn_layer_norm_create(&bare, NULL, "y", 4, 1e-5, 1, &err), AD_ERR_NULL);
    ad_tape_free(t);
    nn_params_free(ps);
    cr_assert_eq(ts_live_allocs(), before);
}
