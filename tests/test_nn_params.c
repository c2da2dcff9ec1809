/*
 * test_nn_params.c - named parameter sets: order, lookup, one contiguous
 * block that may move while ad_param pointers stay valid, seeded
 * initialisation, .npy folders, and bad inputs.
 */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <unroll/nn/nn.h>
#include "testsupport.h"

Test(nn_params, order_lookup_and_one_block)
{
    long before = ts_live_allocs();
    ad_error err;
    nn_params *ps = nn_params_new(AD_F64, &err);
    const char *names[40];
    char buf[40][16];
    ad_param *ptr[40];
    for (int i = 0; i < 40; i++) { /* enough to move the blocks several times */
        snprintf(buf[i], sizeof buf[i], "layer%d.w", i);
        names[i] = buf[i];
        ptr[i] = nn_params_add(ps, names[i], ad_shape2(2, i + 1), &err);
        cr_assert_not_null(ptr[i], "%s", err.msg);
        ad_tensor_f64(ad_param_value(ptr[i]))[0] = i;
    }
    cr_assert_eq(nn_params_count(ps), 40);
    size_t n, off = 0;
    double *v = nn_params_values(ps, &n);
    cr_assert_eq(n, (size_t)(2 * 40 * 41 / 2));
    for (int i = 0; i < 40; i++) {
        cr_assert_eq(nn_params_at(ps, (size_t)i), ptr[i], "registration order");
        cr_assert_eq(nn_params_get(ps, names[i]), ptr[i]);
        cr_assert_eq(ad_tensor_f64(ad_param_value(ptr[i])), v + off, "views into the one block");
        cr_assert_eq(v[off], (double)i, "values survive the block moving");
        off += (size_t)(2 * (i + 1));
    }
    cr_assert_null(nn_params_get(ps, "nope"));
    cr_assert_null(nn_params_at(ps, 40));
    cr_assert_not_null(nn_params_find(ps, "layer2.w", ad_shape2(2, 3), &err));
    cr_assert_null(nn_params_find(ps, "layer2.w", ad_shape2(3, 2), &err));
    cr_assert_eq(err.code, AD_ERR_SHAPE);
    cr_assert(strstr(err.msg, "has shape [2,3], expected [3,2]"), "%s", err.msg);
    cr_assert_null(nn_params_find(ps, "missing", ad_shape2(1, 1), &err));
    cr_assert_eq(err.code, AD_ERR_NOT_FOUND);
    cr_assert_null(nn_params_add(ps, "layer3.w", ad_shape1(1), &err));
    cr_assert_eq(err.code, AD_ERR_DUPLICATE);
    cr_assert_eq(nn_params_count(ps), 40, "a failed add changes nothing");
    double *g = nn_params_grads(ps, &n);
    g[5] = 3;
    nn_params_zero_grad(ps);
    cr_assert_eq(g[5], 0.0);
    nn_params_free(ps);
    cr_assert_eq(ts_live_allocs(), before);
}

Test(nn_params, seeded_init_is_reproducible)
{
    long before = ts_live_allocs();
    double first[12];
    for (int run = 0; run < 2; run++) {
        nn_params *ps = nn_params_new(AD_F32, NULL);
        nn_cell cell;
        cr_assert_eq(nn_cell_create(&cell, ps, "gru", &(nn_cell_options){.kind = NN_CELL_GRU, .input_size = 1, .hidden_size = 4}, NULL), AD_OK);
        ad_rng rng;
        ad_rng_seed(&rng, 5, 0);
        nn_cell_init_pytorch(&cell, &rng);
        size_t n;
        float *v = nn_params_values(ps, &n);
        for (size_t i = 0; i < n; i++) cr_assert(v[i] >= -0.5f && v[i] < 0.5f, "1/sqrt(H) = 0.5");
        for (int i = 0; i < 12; i++) {
            if (run == 0) first[i] = v[i];
            else cr_assert_eq(first[i], v[i]);
        }
        cr_assert_not_null(nn_params_get(ps, "gru.bias_hh_l0"));
        nn_params_free(ps);
    }
    cr_assert_eq(ts_live_allocs(), before);
}

Test(nn_params, npy_folder_round_trip_and_atomic_failure)
{
    long before = ts_live_allocs();
    char dir[] = "/tmp/unroll_params_XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    ad_error err;
    nn_params *a = nn_params_new(AD_F64, NULL);
    ad_param *w = nn_params_add(a, "lin.weight", ad_shape2(2, 2), NULL);
    nn_params_add(a, "lin.bias", ad_shape1(2), NULL);
    ad_rng rng;
    ad_rng_seed(&rng, 1, 0);
    nn_params_init_uniform(a, &rng, -1, 1);
    cr_assert_eq(nn_params_save_npy_dir(a, dir, &err), AD_OK, "%s", err.msg);
    /* An f32 set loads the f64 files, converting. */
    nn_params *b = nn_params_new(AD_F32, NULL);
    ad_param *wb = nn_params_add(b, "lin.weight", ad_shape2(2, 2), NULL);
    nn_params_add(b, "lin.bias", ad_shape1(2), NULL);
    cr_assert_eq(nn_params_load_npy_dir(b, dir, &err), AD_OK, "%s", err.msg);
    cr_assert_eq(ad_tensor_f32(ad_param_value(wb))[3], (float)ad_tensor_f64(ad_param_value(w))[3]);
    /* A set with one more parameter fails on the missing file and changes nothing. */
    nn_params *c = nn_params_new(AD_F64, NULL);
    ad_param *wc = nn_params_add(c, "lin.weight", ad_shape2(2, 2), NULL);
    nn_params_add(c, "lin.extra", ad_shape1(1), NULL);
    cr_assert_eq(nn_params_load_npy_dir(c, dir, &err), AD_ERR_IO);
    cr_assert(strstr(err.msg, "lin.extra"), "%s", err.msg);
    cr_assert_eq(ad_tensor_f64(ad_param_value(wc))[0], 0.0, "nothing loaded");
    /* A shape that differs is reported with both shapes. */
    nn_params *d = nn_params_new(AD_F64, NULL);
    nn_params_add(d, "lin.weight", ad_shape2(4, 1), NULL);
    cr_assert_eq(nn_params_load_npy_dir(d, dir, &err), AD_ERR_SHAPE);
    cr_assert(strstr(err.msg, "'lin.weight': file has shape [2,2], the model [4,1]"), "%s", err.msg);
    char path[128];
    snprintf(path, sizeof path, "%s/lin.weight.npy", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/lin.bias.npy", dir);
    unlink(path);
    rmdir(dir);
    nn_params_free(a), nn_params_free(b), nn_params_free(c), nn_params_free(d);
    cr_assert_eq(ts_live_allocs(), before);
}

Test(nn_params, bad_inputs)
{
    long before = ts_live_allocs();
    ad_error err;
    cr_assert_null(nn_params_new((ad_dtype)9, &err));
    cr_assert_eq(err.code, AD_ERR_DTYPE);
    nn_params *ps = nn_params_new(AD_F64, &err);
    cr_assert_null(nn_params_add(NULL, "a", ad_shape1(1), &err));
    cr_assert_eq(err.code, AD_ERR_NULL);
    cr_assert_null(nn_params_add(ps, NULL, ad_shape1(1), &err));
    cr_assert_eq(err.code, AD_ERR_NULL);
    cr_assert_null(nn_params_add(ps, "", ad_shape1(1), &err));
    cr_assert_eq(err.code, AD_ERR_ARG);
    char longname[100];
    memset(longname, 'a', 99);
    longname[99] = '\0';
    cr_assert_null(nn_params_add(ps, longname, ad_shape1(1), &err));
    cr_assert_eq(err.code, AD_ERR_ARG);
    ad_shape r5 = {5, {1, 1, 1, 1}};
    cr_assert_null(nn_params_add(ps, "rank5", r5, &err));
    cr_assert_eq(err.code, AD_ERR_RANK);
    cr_assert_eq(nn_params_load_npy_dir(ps, NULL, &err), AD_ERR_NULL);
    cr_assert_eq(nn_params_save_npy_dir(NULL, "/tmp", &err), AD_ERR_NULL);
    nn_cell cell;
    cr_assert_eq(nn_cell_create(&cell, ps, "l", &(nn_cell_options){.kind = NN_CELL_LSTM, .input_size = 0, .hidden_size = 3}, &err), AD_ERR_ARG);
    cr_assert_eq(nn_cell_create(&cell, ps, "l", &(nn_cell_options){.kind = (nn_cell_kind)42, .input_size = 1, .hidden_size = 3}, &err), AD_ERR_ARG);
    cr_assert_eq(nn_cell_create(NULL, ps, "l", &(nn_cell_options){.kind = NN_CELL_LSTM, .input_size = 1, .hidden_size = 3}, &err), AD_ERR_NULL);
    cr_assert_eq(nn_cell_create(&cell, ps, "l", &(nn_cell_options){.kind = NN_CELL_LSTM, .input_size = 1, .hidden_size = 3}, &err), AD_OK);
    cr_assert_eq(nn_cell_create(&cell, ps, "l", &(nn_cell_options){.kind = NN_CELL_LSTM, .input_size = 1, .hidden_size = 3}, &err), AD_ERR_DUPLICATE);
    nn_params_free(ps);
    nn_params_free(NULL);
    cr_assert_eq(nn_params_count(NULL), 0);
    cr_assert_eq(ts_live_allocs(), before);
}

/* A replica reads the set's values and keeps gradients of its own, which
 * accumulate into the set's; every misuse is a clear error. */
Test(nn_params, replicas_share_values_and_sum_gradients)
{
    long before = ts_live_allocs();
    ad_error err;
    nn_params *ps = nn_params_new(AD_F32, NULL);
    ad_param *w = nn_params_add(ps, "w", ad_shape2(2, 3), NULL), *b = nn_params_add(ps, "b", ad_shape1(3), NULL);
    cr_assert(w && b);
    for (int i = 0; i < 6; i++) ad_tensor_f32(ad_param_value(w))[i] = (float)i;
    nn_params *r = nn_params_replica(ps, &err);
    cr_assert_not_null(r, "%s", err.msg);
    cr_assert_eq(nn_params_count(r), 2);
    ad_param *rw = nn_params_get(r, "w");
    cr_assert_str_eq(ad_param_name(nn_params_at(r, 1)), "b");
    cr_assert_eq(ad_tensor_f32(ad_param_value(rw)), ad_tensor_f32(ad_param_value(w)), "values are shared");
    cr_assert_neq(ad_tensor_f32(ad_param_grad(rw)), ad_tensor_f32(ad_param_grad(w)), "gradients are not");
    /* a backward through the replica's copy fills the replica's gradient only */
    ad_tape *t = ad_tape_new(NULL);
    cr_assert_eq(ad_backward(t, ad_sum(t, ad_mul_scalar(t, ad_use(t, rw), 2.0), AD_AXIS_ALL, 0), NULL), AD_OK);
    ad_tape_free(t);
    cr_assert_eq(ad_tensor_f32(ad_param_grad(w))[0], 0.0f);
    cr_assert_eq(nn_params_accumulate_grads(ps, r, &err), AD_OK, "%s", err.msg);
    cr_assert_eq(nn_params_accumulate_grads(ps, r, &err), AD_OK, "%s", err.msg);
    for (int i = 0; i < 6; i++) cr_assert_eq(ad_tensor_f32(ad_param_grad(w))[i], 4.0f, "twice 2 at %d", i);
    cr_assert_eq(ad_tensor_f32(ad_param_grad(b))[0], 0.0f);
    /* misuse */
    cr_assert_null(nn_params_replica(NULL, &err));
    cr_assert_eq(err.code, AD_ERR_NULL);
    cr_assert_null(nn_params_replica(r, &err));
    cr_assert_eq(err.code, AD_ERR_ARG);
    cr_assert(strstr(err.msg, "itself a replica"), "%s", err.msg);
    cr_assert_null(nn_params_add(r, "extra", ad_shape1(2), &err));
    cr_assert_eq(err.code, AD_ERR_STATE);
    cr_assert_eq(nn_params_accumulate_grads(NULL, r, &err), AD_ERR_NULL);
    cr_assert_eq(nn_params_accumulate_grads(ps, NULL, &err), AD_ERR_NULL);
    nn_params *other = nn_params_new(AD_F32, NULL);
    cr_assert_eq(nn_params_accumulate_grads(other, r, &err), AD_ERR_ARG);
    cr_assert_eq(nn_params_accumulate_grads(ps, ps, &err), AD_ERR_ARG);
    cr_assert(strstr(err.msg, "not a replica"), "%s", err.msg);
    cr_assert_not_null(nn_params_add(ps, "late", ad_shape1(4), NULL)); /* moves ps's storage */
    cr_assert_eq(nn_params_accumulate_grads(ps, r, &err), AD_ERR_STATE);
    cr_assert(strstr(err.msg, "make the replica again"), "%s", err.msg);
    nn_params_free(other);
    nn_params_free(r);
    nn_params_free(ps);
    cr_assert_eq(ts_live_allocs(), before);
}

/* Adding a parameter to a set moves its storage: a replica made before
 * then reads the set's new storage (never the freed block), and refuses to
 * accumulate until it is made again. Freeing the set first is survivable. */
Test(nn_params, a_replica_of_a_grown_set_never_reads_freed_storage)
{
    long before = ts_live_allocs();
    ad_error err;
    nn_params *ps = nn_params_new(AD_F32, NULL);
    ad_param *w = nn_params_add(ps, "w", ad_shape2(2, 3), NULL);
    for (int i = 0; i < 6; i++) ad_tensor_f32(ad_param_value(w))[i] = (float)i + 1;
    nn_params *r = nn_params_replica(ps, &err);
    nn_params *r2 = nn_params_replica(ps, &err);
    cr_assert(r && r2, "%s", err.msg);
    cr_assert_not_null(nn_params_add(ps, "late", ad_shape1(4096), NULL)); /* moves the values */
    ad_param *rw = nn_params_get(r, "w");
    cr_assert_eq(ad_tensor_f32(ad_param_value(rw)), ad_tensor_f32(ad_param_value(w)),
                 "the replica follows the set's storage");
    cr_assert_eq(nn_params_values(r, NULL), nn_params_values(ps, NULL));
    ad_tape *t = ad_tape_new(NULL);
    ad_tensor *sum = ad_sum(t, ad_use(t, rw), AD_AXIS_ALL, 0);
    cr_assert_eq(ad_tensor_item(sum), 21.0, "read through the replica: %g", ad_tensor_item(sum));
    cr_assert_eq(ad_backward(t, sum, NULL), AD_OK, "%s", ad_tape_message(t));
    ad_tape_free(t);
    cr_assert_eq(nn_params_accumulate_grads(ps, r, &err), AD_ERR_STATE);
    cr_assert(strstr(err.msg, "make the replica again"), "%s", err.msg);
    nn_params_free(r);
    /* the set freed before its replica: the replica can still be freed */
    nn_params_free(ps);
    cr_assert_eq(nn_params_accumulate_grads(ps = nn_params_new(AD_F32, NULL), r2, &err), AD_ERR_ARG);
    nn_params_free(r2);
    nn_params_free(ps);
    cr_assert_eq(ts_live_allocs(), before);
}

/* A parameter's name becomes a file name in a .npy folder: a name that
 * could reach outside the folder is refused, and nothing is written. */
Test(nn_params, npy_folder_names_cannot_leave_the_folder)
{
    long before = ts_live_allocs();
    char dir[] = "/tmp/unroll_names_XXXXXX", inner[64], p[128];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(inner, sizeof inner, "%s/inner", dir);
    cr_assert_eq(mkdir(inner, 0700), 0);
    static const char *const bad[] = {"../escape", "a/b", "..", "x..y", "back\\slash"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        nn_params *ps = nn_params_new(AD_F64, NULL);
        nn_params_add(ps, "fine", ad_shape1(2), NULL);
        cr_assert_not_null(nn_params_add(ps, bad[i], ad_shape1(2), NULL), "checkpoints may use any name");
        ad_error err;
        cr_assert_eq(nn_params_save_npy_dir(ps, inner, &err), AD_ERR_ARG, "'%s'", bad[i]);
        cr_assert(strstr(err.msg, bad[i]) && strstr(err.msg, "file name"), "%s", err.msg);
        cr_assert_eq(nn_params_load_npy_dir(ps, inner, &err), AD_ERR_ARG, "'%s'", bad[i]);
        cr_assert(strstr(err.msg, "file name"), "%s", err.msg);
        nn_params_free(ps);
    }
    snprintf(p, sizeof p, "%s/escape.npy", dir);
    cr_assert_neq(access(p, F_OK), 0, "a file was written outside the folder");
    snprintf(p, sizeof p, "%s/fine.npy", inner);
    cr_assert_neq(access(p, F_OK), 0, "a refused save writes nothing");
    cr_assert_eq(rmdir(inner), 0);
    cr_assert_eq(rmdir(dir), 0);
    cr_assert_eq(ts_live_allocs(), before);
}

/* f64 files load into an f32 set only when every value fits a float:
 * 1e300 would silently become infinity. */
Test(nn_params, npy_folder_f64_to_f32_refuses_values_out_of_range)
{
    long before = ts_live_allocs();
    char dir[] = "/tmp/unroll_range_XXXXXX", p[128];
    cr_assert_not_null(mkdtemp(dir));
    nn_params *a = nn_params_new(AD_F64, NULL);
    ad_param *w = nn_params_add(a, "w", ad_shape1(3), NULL);
    double *v = ad_tensor_f64(ad_param_value(w));
    v[0] = 1.5, v[1] = 1e300, v[2] = -2;
    cr_assert_eq(nn_params_save_npy_dir(a, dir, NULL), AD_OK);
    nn_params *b = nn_params_new(AD_F32, NULL);
    ad_param *wb = nn_params_add(b, "w", ad_shape1(3), NULL);
    float *f = ad_tensor_f32(ad_param_value(wb));
    f[0] = -9;
    ad_error err;
    cr_assert_eq(nn_params_load_npy_dir(b, dir, &err), AD_ERR_NONFINITE);
    cr_assert(strstr(err.msg, "'w'") && strstr(err.msg, "1e+300") && strstr(err.msg, "f32"), "%s", err.msg);
    cr_assert_eq(f[0], -9.0f, "nothing was loaded");
    /* values that fit load, and what was infinite or NaN already stays so */
    v[1] = INFINITY;
    cr_assert_eq(nn_params_save_npy_dir(a, dir, NULL), AD_OK);
    cr_assert_eq(nn_params_load_npy_dir(b, dir, &err), AD_OK, "%s", err.msg);
    cr_assert(f[0] == 1.5f && isinf(f[1]) && f[2] == -2.0f);
    snprintf(p, sizeof p, "%s/w.npy", dir);
    unlink(p);
    rmdir(dir);
    nn_params_free(a);
    nn_params_free(b);
    cr_assert_eq(ts_live_allocs(), before);
}

Test(nn_params, npy_folder_load_refuses_a_named_pipe_without_blocking, .timeout = 20)
{
    long before = ts_live_allocs();
    char dir[] = "/tmp/unroll_dfifo_XXXXXX", p[128];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(p, sizeof p, "%s/w.npy", dir);
    cr_assert_eq(mkfifo(p, 0600), 0);
    nn_params *ps = nn_params_new(AD_F32, NULL);
    nn_params_add(ps, "w", ad_shape1(2), NULL);
    ad_error err;
    cr_assert_eq(nn_params_load_npy_dir(ps, dir, &err), AD_ERR_IO);
    cr_assert(strstr(err.msg, "not a regular file"), "%s", err.msg);
    nn_params_free(ps);
    unlink(p);
    rmdir(dir);
    cr_assert_eq(ts_live_allocs(), before);
}
