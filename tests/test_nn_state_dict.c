/*
 * test_nn_state_dict.c - loading a PyTorch state dict by name: a bare
 * torch.nn.LSTM(3, 4, num_layers=2, bidirectional=True) plus an
 * nn.Linear(8, 2) saved by tests/data/make_fixtures.py as a safetensors file
 * and as a folder of .npy files loads into unroll's equivalent model and
 * gives PyTorch's outputs (out, h_n, c_n, fc(out)) to 1e-10 in f64; name
 * maps (prefixes, a rename function), strict on and off, and the report of
 * missing, unexpected and mismatched keys, with nothing changed on error.
 */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <unroll/nn/nn.h>
#include "testsupport.h"

#define SD(name) UNROLL_TEST_DATA "/state_dict/" name
enum { T = 5, B = 2, I = 3, H = 4 };

typedef struct model {
    nn_params *ps;
    nn_cell cells[2][2]; /* [layer][direction] */
    nn_linear fc;
} model;

static void model_new(model *m, const char *lstm_prefix, int hidden, int with_fc)
{
    m->ps = nn_params_new(AD_F64, NULL);
    for (int l = 0; l < 2; l++)
        for (int d = 0; d < 2; d++)
            cr_assert_eq(nn_cell_create(&m->cells[l][d], m->ps, lstm_prefix, &(nn_cell_options){.kind = NN_CELL_LSTM, .layer = l, .reverse = d, .input_size = l ? 2 * hidden : I, .hidden_size = hidden}, NULL), AD_OK);
    if (with_fc) cr_assert_eq(nn_linear_create(&m->fc, m->ps, "fc", 2 * hidden, 2, 1, NULL), AD_OK);
}

static void expect_close(ad_tensor *got, const double *want, size_t n, const char *what)
{
    cr_assert_not_null(got, "%s", what);
    cr_assert_eq(ad_tensor_numel(got), n, "%s", what);
    for (size_t i = 0; i < n; i++)
        cr_assert(fabs(ad_tensor_get(got, i) - want[i]) <= 1e-10, "%s[%zu]: %.17g, PyTorch %.17g", what, i,
                  ad_tensor_get(got, i), want[i]);
}

/* Runs the model on the fixture's x and compares with PyTorch's outputs. */
static void expect_pytorch_outputs(model *m)
{
    ad_tensor *x = ad_npy_load(SD("x.npy"), NULL), *out = ad_npy_load(SD("out.npy"), NULL);
    ad_tensor *hn = ad_npy_load(SD("hn.npy"), NULL), *cn = ad_npy_load(SD("cn.npy"), NULL);
    ad_tensor *y = ad_npy_load(SD("y.npy"), NULL);
    cr_assert(x && out && hn && cn && y);
    ad_tape *t = ad_tape_new(NULL);
    ad_tensor *xs[T], *cat[2][T];
    for (int s = 0; s < T; s++) xs[s] = ad_from_data(t, AD_F64, ad_shape2(B, I), ad_tensor_f64(x) + s * B * I);
    nn_state fw[2][T], bw[2][T];
    for (int l = 0; l < 2; l++)
        cr_assert_eq(nn_unroll_bidirectional(t, &m->cells[l][0], &m->cells[l][1], l ? cat[0] : xs, T, NULL, fw[l],
                                             bw[l], cat[l]), AD_OK, "%s", ad_tape_message(t));
    for (int s = 0; s < T; s++) {
        expect_close(cat[1][s], ad_tensor_f64(out) + s * B * 2 * H, B * 2 * H, "out");
        expect_close(nn_linear_forward(t, &m->fc, cat[1][s]), ad_tensor_f64(y) + s * B * 2, B * 2, "fc(out)");
    }
    /* h_n, c_n: [l0 forward, l0 backward, l1 forward, l1 backward], each [B, H] */
    for (int l = 0; l < 2; l++) {
        expect_close(fw[l][T - 1].h, ad_tensor_f64(hn) + (2 * l) * B * H, B * H, "h_n forward");
        expect_close(bw[l][0].h, ad_tensor_f64(hn) + (2 * l + 1) * B * H, B * H, "h_n backward");
        expect_close(fw[l][T - 1].c, ad_tensor_f64(cn) + (2 * l) * B * H, B * H, "c_n forward");
        expect_close(bw[l][0].c, ad_tensor_f64(cn) + (2 * l + 1) * B * H, B * H, "c_n backward");
    }
    ad_tape_free(t);
    ad_tensor_free(x), ad_tensor_free(out), ad_tensor_free(hn), ad_tensor_free(cn), ad_tensor_free(y);
}

static int all_zero(nn_params *ps)
{
    size_t n;
    double *v = nn_params_values(ps, &n);
    for (size_t i = 0; i < n; i++)
        if (v[i] != 0) return 0;
    return 1;
}

Test(state_dict, bare_pytorch_lstm_and_linear_from_safetensors)
{
    long before = ts_live_allocs();
    model m;
    model_new(&m, "", H, 1); /* "weight_ih_l0", ..., "fc.weight": the file's own names */
    nn_load_options o = {.strict = 1};
    nn_load_report r;
    ad_error err;
    cr_assert_eq(nn_params_load_state_dict(m.ps, SD("lstm_fc.safetensors"), &o, &r, &err), AD_OK, "%s", err.msg);
    cr_assert_eq(r.n_loaded, 18);
    cr_assert_eq(r.n_missing + r.n_unexpected + r.n_mismatched, 0);
    nn_load_report_free(&r);
    expect_pytorch_outputs(&m);
    nn_params_free(m.ps);
    cr_assert_eq(ts_live_allocs(), before);
}

/* The LSTM under "rnn." in the model, bare in the file: a rename function. */
static int to_model(const char *key, char *name, size_t cap, void *ctx)
{
    (void)ctx;
    if (strcmp(key, "skip.me") == 0) return 0;
    snprintf(name, cap, "%s%s", strncmp(key, "fc.", 3) == 0 ? "" : "rnn.", key);
    return 1;
}

Test(state_dict, npy_folder_with_a_rename_function)
{
    long before = ts_live_allocs();
    model m;
    model_new(&m, "rnn", H, 1);
    nn_load_options o = {.strict = 1, .rename = to_model};
    nn_load_report r;
    ad_error err;
    cr_assert_eq(nn_params_load_state_dict(m.ps, SD("lstm_fc_npy"), &o, &r, &err), AD_OK, "%s", err.msg);
    cr_assert_eq(r.n_loaded, 18);
    nn_load_report_free(&r);
    expect_pytorch_outputs(&m);
    /* f32 models load the f64 file converted */
    nn_params *p32 = nn_params_new(AD_F32, NULL);
    nn_cell c;
    nn_cell_create(&c, p32, "", &(nn_cell_options){.kind = NN_CELL_LSTM, .input_size = I, .hidden_size = H}, NULL);
    o = (nn_load_options){0};
    cr_assert_eq(nn_params_load_state_dict(p32, SD("lstm_fc.safetensors"), &o, &r, &err), AD_OK, "%s", err.msg);
    cr_assert_eq(r.n_loaded, 4);
    cr_assert_eq(r.n_unexpected, 14, "the other layers and fc are unexpected");
    ad_tensor *w = ad_npy_load(SD("lstm_fc_npy/weight_hh_l0.npy"), NULL);
    cr_assert_eq(ad_tensor_f32(ad_param_value(nn_params_get(p32, "weight_hh_l0")))[5], (float)ad_tensor_f64(w)[5]);
    ad_tensor_free(w);
    nn_load_report_free(&r);
    nn_params_free(p32);
    nn_params_free(m.ps);
    cr_assert_eq(ts_live_allocs(), before);
}

Test(state_dict, prefixes_strict_and_the_report)
{
    long before = ts_live_allocs();
    model m;
    model_new(&m, "enc", H, 0);
    ad_param *extra = nn_params_add(m.ps, "enc.extra", ad_shape1(3), NULL);
    nn_load_options o = {.add_prefix = "enc.", .strict = 1};
    nn_load_report r;
    ad_error err;
    /* strict: the missing and unexpected keys are listed and nothing changes */
    cr_assert_eq(nn_params_load_state_dict(m.ps, SD("lstm_fc.safetensors"), &o, &r, &err), AD_ERR_MISMATCH);
    cr_assert(strstr(err.msg, "1 missing (first 'enc.extra'), 2 unexpected (first 'fc.weight')"), "%s", err.msg);
    cr_assert_eq(r.n_loaded, 0);
    cr_assert_eq(r.n_missing, 1);
    cr_assert_str_eq(r.missing[0], "enc.extra");
    cr_assert_eq(r.n_unexpected, 2);
    cr_assert_str_eq(r.unexpected[1], "fc.bias");
    cr_assert(all_zero(m.ps), "a refused load changed the model");
    nn_load_report_free(&r);
    /* not strict: the 16 matching keys load */
    o.strict = 0;
    cr_assert_eq(nn_params_load_state_dict(m.ps, SD("lstm_fc.safetensors"), &o, &r, &err), AD_OK, "%s", err.msg);
    cr_assert_eq(r.n_loaded, 16);
    cr_assert_eq(r.n_missing, 1);
    cr_assert_eq(ad_tensor_f64(ad_param_value(extra))[0], 0.0);
    cr_assert(!all_zero(m.ps));
    nn_load_report_free(&r);
    /* strip_prefix: a file saved from a wrapped model ("module.enc....") */
    char path[] = "/tmp/unroll_sd_XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    nn_params *wrapped = nn_params_new(AD_F64, NULL);
    ad_param *wp = nn_params_add(wrapped, "module.enc.extra", ad_shape1(3), NULL);
    ad_tensor_f64(ad_param_value(wp))[2] = 2.5;
    cr_assert_eq(nn_params_save_safetensors(wrapped, path, NULL, 0, &err), AD_OK, "%s", err.msg);
    o = (nn_load_options){.strip_prefix = "module."};
    cr_assert_eq(nn_params_load_state_dict(m.ps, path, &o, &r, &err), AD_OK, "%s", err.msg);
    cr_assert_eq(r.n_loaded, 1);
    cr_assert_eq(ad_tensor_f64(ad_param_value(extra))[2], 2.5);
    nn_load_report_free(&r);
    unlink(path);
    nn_params_free(wrapped);
    nn_params_free(m.ps);
    cr_assert_eq(ts_live_allocs(), before);
}

Test(state_dict, shape_and_kind_mismatches_change_nothing)
{
    long before = ts_live_allocs();
    model m;
    model_new(&m, "", 5, 1); /* hidden 5: every LSTM shape and fc.weight differ */
    nn_load_report r;
    ad_error err;
    cr_assert_eq(nn_params_load_state_dict(m.ps, SD("lstm_fc_npy"), NULL, &r, &err), AD_ERR_SHAPE);
    cr_assert(strstr(err.msg, "has shape [2] in the file, [2] in the model") == NULL, "%s", err.msg);
    cr_assert(strstr(err.msg, "in the file") && strstr(err.msg, "17 mismatched"), "%s", err.msg);
    cr_assert_eq(r.n_mismatched, 17);
    cr_assert_str_eq(r.mismatched[0].name, "bias_hh_l0");
    cr_assert(ad_shape_equal(r.mismatched[0].file_shape, ad_shape1(16)));
    cr_assert(ad_shape_equal(r.mismatched[0].model_shape, ad_shape1(20)));
    cr_assert(all_zero(m.ps));
    nn_load_report_free(&r);
    nn_params_free(m.ps);
    /* an integer entry for a float parameter */
    nn_params *ps = nn_params_new(AD_F64, NULL);
    nn_params_add(ps, "ids", ad_shape2(2, 2), NULL);
    cr_assert_eq(nn_params_load_state_dict(ps, UNROLL_TEST_DATA "/safetensors/basic.safetensors", NULL, &r, &err),
                 AD_ERR_DTYPE);
    cr_assert(strstr(err.msg, "'ids' holds integers"), "%s", err.msg);
    cr_assert(r.mismatched[0].file_is_int);
    nn_load_report_free(&r);
    nn_params_free(ps);
    cr_assert_eq(ts_live_allocs(), before);
}

static int all_to_one(const char *key, char *name, size_t cap, void *ctx)
{
    (void)key, (void)ctx;
    snprintf(name, cap, "bias_hh_l0");
    return 1;
}

Test(state_dict, bad_inputs)
{
    long before = ts_live_allocs();
    model m;
    model_new(&m, "", H, 1);
    nn_load_report r;
    ad_error err;
    cr_assert_eq(nn_params_load_state_dict(NULL, SD("lstm_fc_npy"), NULL, &r, &err), AD_ERR_NULL);
    cr_assert_eq(nn_params_load_state_dict(m.ps, NULL, NULL, NULL, &err), AD_ERR_NULL);
    cr_assert_eq(nn_params_load_state_dict(m.ps, SD("missing.safetensors"), NULL, &r, &err), AD_ERR_IO);
    cr_assert_eq(nn_params_load_state_dict(m.ps, UNROLL_TEST_DATA "/make_fixtures.py", NULL, &r, &err),
                 AD_ERR_FORMAT);
    cr_assert_eq(nn_params_load_state_dict(m.ps, UNROLL_TEST_DATA "/npy", NULL, &r, &err), AD_ERR_FORMAT,
                 "a folder holding a corrupt .npy: %s", err.msg);
    nn_load_options o = {.rename = all_to_one};
    cr_assert_eq(nn_params_load_state_dict(m.ps, SD("lstm_fc_npy"), &o, &r, &err), AD_ERR_DUPLICATE);
    cr_assert(strstr(err.msg, "two keys map to 'bias_hh_l0'"), "%s", err.msg);
    char longp[80];
    memset(longp, 'p', sizeof longp - 1);
    longp[sizeof longp - 1] = '\0';
    o = (nn_load_options){.add_prefix = longp};
    cr_assert_eq(nn_params_load_state_dict(m.ps, SD("lstm_fc_npy"), &o, &r, &err), AD_ERR_ARG);
    cr_assert(all_zero(m.ps));
    nn_load_report_free(NULL);
    nn_params_free(m.ps);
    cr_assert_eq(ts_live_allocs(), before);
}

Test(state_dict, allocation_failures_change_nothing)
{
#ifdef TS_SHARED_LIBS
    cr_skip_test("allocation failures cannot be injected into a shared library");
#else
    long before = ts_live_allocs();
    const char *paths[] = {SD("lstm_fc.safetensors"), SD("lstm_fc_npy")};
    for (int p = 0; p < 2; p++) {
        model m;
        model_new(&m, "", H, 1);
        for (long k = 1;; k++) {
            nn_load_report r;
            ad_error err;
            ts_fail_alloc_at(k);
            ad_status st = nn_params_load_state_dict(m.ps, paths[p], NULL, &r, &err);
            int fired = ts_fail_alloc_fired();
            ts_fail_alloc_at(0);
            nn_load_report_free(&r);
            if (!fired) {
                cr_assert_eq(st, AD_OK, "%s", err.msg);
                break;
            }
            cr_assert_eq(st, AD_ERR_NOMEM, "%s allocation %ld: %s", paths[p], k, err.msg);
            cr_assert(all_zero(m.ps), "allocation %ld failed and the model changed", k);
        }
        nn_params_free(m.ps);
    }
    cr_assert_eq(ts_live_allocs(), before);
#endif
}
