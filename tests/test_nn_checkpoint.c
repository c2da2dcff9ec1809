/*
 * test_nn_checkpoint.c - checkpoints: round trip, exact resume, every
 * truncation and every single-byte flip detected with the model untouched,
 * differences from the model reported, bad arguments.
 */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <unroll/nn/nn.h>
#include "testsupport.h"

static char path[64];

static void make_path(void)
{
    snprintf(path, sizeof path, "/tmp/unroll_ckpt_%d.bin", (int)getpid());
}

/* A tiny model: Elman cell + linear head, trained on fixed random sequences. */
typedef struct model {
    nn_params *ps;
    nn_cell cell;
    nn_linear head;
    nn_optim *opt;
} model;

static void model_init(model *m, uint64_t seed)
{
    m->ps = nn_params_new(AD_F64, NULL);
    nn_cell_create(&m->cell, NN_CELL_RNN_TANH, m->ps, "rnn", 0, 0, 3, 4, 1, NULL);
    nn_linear_create(&m->head, m->ps, "head", 4, 3, 1, NULL);
    ad_rng rng;
    ad_rng_seed(&rng, seed, 0);
    nn_cell_init_pytorch(&m->cell, &rng);
    nn_linear_init_pytorch(&m->head, &rng);
    nn_optim_config cfg = nn_optim_defaults(NN_OPTIM_ADAM);
    cfg.lr = 0.05;
    m->opt = nn_optim_new(m->ps, &cfg, NULL);
}

static void model_free(model *m)
{
    nn_optim_free(m->opt);
    nn_params_free(m->ps);
}

/* One training step on a batch drawn from rng (the data RNG is training state). */
static void train_step(model *m, ad_tape *t, ad_rng *rng)
{
    ad_tape_reset(t);
    nn_params_zero_grad(m->ps);
    ad_tensor *xs[4];
    int64_t tg[2];
    for (int k = 0; k < 4; k++) xs[k] = ad_rand_normal(t, rng, AD_F64, ad_shape2(2, 3), 0, 1);
    for (int b = 0; b < 2; b++) tg[b] = ad_rng_below(rng, 3);
    nn_state last;
    cr_assert_eq(nn_unroll(t, &m->cell, xs, 4, NULL, NULL, &last), AD_OK);
    ad_tensor *loss = ad_cross_entropy(t, nn_linear_forward(t, &m->head, last.h), tg, 2, -100,
                                       AD_REDUCE_MEAN);
    cr_assert_eq(ad_backward(t, loss, NULL), AD_OK, "%s", ad_tape_message(t));
    cr_assert_eq(nn_optim_step(m->opt, NULL), AD_OK);
}

Test(nn_checkpoint, resume_is_bit_identical)
{
    long before = ts_live_allocs();
    make_path();
    enum { N = 7 };
    ad_tape *t = ad_tape_new(NULL);
    /* 2N steps in one go */
    model a;
    model_init(&a, 1);
    ad_rng ra;
    ad_rng_seed(&ra, 77, 0);
    for (int s = 0; s < 2 * N; s++) train_step(&a, t, &ra);
    /* N steps, save, load into a fresh model (different init), N more */
    model b;
    model_init(&b, 1);
    ad_rng rb;
    ad_rng_seed(&rb, 77, 0);
    for (int s = 0; s < N; s++) train_step(&b, t, &rb);
    nn_train_state ts = {.step = N, .rng = rb, .has_rng = 1};
    ad_error err;
    cr_assert_eq(nn_checkpoint_save(path, b.ps, b.opt, &ts, &err), AD_OK, "%s", err.msg);
    model_free(&b);
    model c;
    model_init(&c, 999);
    nn_train_state back;
    memset(&back, 0, sizeof back);
    cr_assert_eq(nn_checkpoint_load(path, c.ps, c.opt, &back, &err), AD_OK, "%s", err.msg);
    cr_assert_eq(back.step, N);
    cr_assert_eq(back.has_rng, 1);
    for (int s = 0; s < N; s++) train_step(&c, t, &back.rng);
    size_t n;
    const double *wa = nn_params_values(a.ps, &n), *wc = nn_params_values(c.ps, &n);
    cr_assert_eq(memcmp(wa, wc, n * sizeof *wa), 0, "weights after resume differ");
    cr_assert_eq(nn_optim_steps(c.opt), 2 * N);
    model_free(&a);
    model_free(&c);
    ad_tape_free(t);
    unlink(path);
    cr_assert_eq(ts_live_allocs(), before);
}

static void write_bytes(const unsigned char *b, size_t n)
{
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    if (n) fwrite(b, 1, n, f);
    fclose(f);
}

Test(nn_checkpoint, every_truncation_and_byte_flip_is_an_error)
{
    long before = ts_live_allocs();
    make_path();
    nn_params *ps = nn_params_new(AD_F32, NULL);
    nn_params_add(ps, "w", ad_shape2(2, 2), NULL);
    nn_params_add(ps, "b", ad_shape1(2), NULL);
    size_t n;
    float *v = nn_params_values(ps, &n);
    for (size_t i = 0; i < n; i++) v[i] = (float)i + 0.5f;
    nn_optim_config cfg = nn_optim_defaults(NN_OPTIM_SGD);
    cfg.momentum = 0.9;
    nn_optim *opt = nn_optim_new(ps, &cfg, NULL);
    nn_train_state ts = {.step = 3, .has_rng = 1};
    ad_rng_seed(&ts.rng, 5, 0);
    cr_assert_eq(nn_checkpoint_save(path, ps, opt, &ts, NULL), AD_OK);
    void *file;
    size_t size;
    cr_assert_eq(ad_file_read_all(path, 1 << 20, &file, &size, NULL), AD_OK);
    unsigned char *orig = file, *copy = malloc(size);
    for (size_t i = 0; i < n; i++) v[i] = -1; /* sentinel: a failed load must leave it */
    nn_train_state untouched = {.step = 42};
    for (size_t cut = 0; cut < size; cut++) {
        write_bytes(orig, cut);
        ad_error err;
        nn_train_state got = untouched;
        ad_status st = nn_checkpoint_load(path, ps, opt, &got, &err);
        cr_assert_eq(st, AD_ERR_FORMAT, "truncated at %zu: %s (%s)", cut, ad_status_name(st), err.msg);
        cr_assert_eq(got.step, 42);
    }
    for (size_t at = 0; at < size; at++) {
        memcpy(copy, orig, size);
        copy[at] ^= 0x5A;
        write_bytes(copy, size);
        ad_error err;
        ad_status st = nn_checkpoint_load(path, ps, opt, NULL, &err);
        cr_assert_eq(st, AD_ERR_FORMAT, "byte %zu flipped: %s (%s)", at, ad_status_name(st), err.msg);
    }
    for (size_t i = 0; i < n; i++) cr_assert_eq(v[i], -1.0f, "a failed load changed the model");
    cr_assert_eq(nn_optim_steps(opt), 0);
    write_bytes(orig, size);
    cr_assert_eq(nn_checkpoint_load(path, ps, opt, NULL, NULL), AD_OK);
    cr_assert_eq(v[3], 3.5f);
    free(orig);
    free(copy);
    nn_optim_free(opt);
    nn_params_free(ps);
    unlink(path);
    cr_assert_eq(ts_live_allocs(), before);
}

Test(nn_checkpoint, differences_from_the_model_are_listed)
{
    long before = ts_live_allocs();
    make_path();
    nn_params *a = nn_params_new(AD_F64, NULL);
    nn_params_add(a, "enc.w", ad_shape2(2, 3), NULL);
    nn_params_add(a, "enc.b", ad_shape1(3), NULL);
    nn_params_add(a, "old", ad_shape1(1), NULL);
    cr_assert_eq(nn_checkpoint_save(path, a, NULL, NULL, NULL), AD_OK);
    nn_params *b = nn_params_new(AD_F64, NULL);
    nn_params_add(b, "enc.w", ad_shape2(3, 2), NULL);
    nn_params_add(b, "enc.b", ad_shape1(3), NULL);
    nn_params_add(b, "new", ad_shape1(1), NULL);
    ad_error err;
    cr_assert_eq(nn_checkpoint_load(path, b, NULL, NULL, &err), AD_ERR_MISMATCH);
    cr_assert(strstr(err.msg, "'enc.w' differs in shape"), "%s", err.msg);
    cr_assert(strstr(err.msg, "'old' is in the file, not in the model"), "%s", err.msg);
    cr_assert(strstr(err.msg, "'new' is in the model, not in the file"), "%s", err.msg);
    nn_optim_config cfg = nn_optim_defaults(NN_OPTIM_ADAM);
    nn_optim *opt = nn_optim_new(a, &cfg, NULL);
    cr_assert_eq(nn_checkpoint_load(path, a, opt, NULL, &err), AD_ERR_MISMATCH);
    cr_assert(strstr(err.msg, "no optimizer state"), "%s", err.msg);
    cr_assert_eq(nn_checkpoint_save(path, a, opt, NULL, NULL), AD_OK);
    nn_optim_config sgd = nn_optim_defaults(NN_OPTIM_SGD);
    nn_optim *other = nn_optim_new(a, &sgd, NULL);
    cr_assert_eq(nn_checkpoint_load(path, a, other, NULL, &err), AD_ERR_MISMATCH);
    cr_assert_eq(nn_checkpoint_load(NULL, a, NULL, NULL, &err), AD_ERR_NULL);
    cr_assert_eq(nn_checkpoint_load("/nonexistent/x.ckpt", a, NULL, NULL, &err), AD_ERR_IO);
    cr_assert_eq(nn_checkpoint_save("/nonexistent/x.ckpt", a, NULL, NULL, &err), AD_ERR_IO);
    cr_assert_eq(nn_checkpoint_save(path, NULL, NULL, NULL, &err), AD_ERR_NULL);
    cr_assert_eq(nn_crc32(0, "123456789", 9), 0xCBF43926u, "the standard CRC-32 check value");
    nn_optim_free(opt);
    nn_optim_free(other);
    nn_params_free(a);
    nn_params_free(b);
    unlink(path);
    cr_assert_eq(ts_live_allocs(), before);
}
