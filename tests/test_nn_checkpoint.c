/*
 * test_nn_checkpoint.c - checkpoints: round trip, exact resume, every
 * truncation and every single-byte flip detected with the model untouched,
 * differences from the model reported, bad arguments.
 */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <unroll/nn/nn.h>
#include "testsupport.h"
#include "../nn/internal.h"

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

/* The same parameters, registered cell first or head first. */
static void model_init_ordered(model *m, uint64_t seed, int head_first)
{
    m->ps = nn_params_new(AD_F64, NULL);
    if (head_first) nn_linear_create(&m->head, m->ps, "head", 4, 3, 1, NULL);
    nn_cell_create(&m->cell, m->ps, "rnn", &(nn_cell_options){.kind = NN_CELL_RNN_TANH, .input_size = 3, .hidden_size = 4}, NULL);
    if (!head_first) nn_linear_create(&m->head, m->ps, "head", 4, 3, 1, NULL);
    ad_rng rng;
    ad_rng_seed(&rng, seed, 0);
    nn_cell_init_pytorch(&m->cell, &rng);
    nn_linear_init_pytorch(&m->head, &rng);
    nn_optim_config cfg = nn_optim_defaults(NN_OPTIM_ADAM);
    cfg.lr = 0.05;
    m->opt = nn_optim_new(m->ps, &cfg, NULL);
}

static void model_init(model *m, uint64_t seed) { model_init_ordered(m, seed, 0); }

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
    cr_assert_eq(ad__file_read_all(path, 1 << 20, &file, &size, NULL), AD_OK);
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
    cr_assert(strstr(err.msg, "'enc.w' differs: file f64 [2,3], model f64 [3,2]"), "%s", err.msg);
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
    cr_assert_eq(nn__crc32(0, "123456789", 9), 0xCBF43926u, "the standard CRC-32 check value");
    nn_optim_free(opt);
    nn_optim_free(other);
    nn_params_free(a);
    nn_params_free(b);
    unlink(path);
    cr_assert_eq(ts_live_allocs(), before);
}

/* Where parameter `name` starts in the set's flat block. */
static size_t offset_of(nn_params *ps, const char *name)
{
    size_t off = 0;
    for (size_t i = 0; i < nn_params_count(ps); i++) {
        ad_param *p = nn_params_at(ps, i);
        if (strcmp(ad_param_name(p), name) == 0) return off;
        off += ad_tensor_numel(ad_param_value(p));
    }
    cr_assert_fail("no parameter '%s'", name);
    return 0;
}

/* A model that registers the same parameters in another order gets every
 * optimizer moment on the parameter of the same name, and then trains on
 * exactly like the model that was saved. */
Test(nn_checkpoint, optimizer_state_follows_the_parameter_names)
{
    long before = ts_live_allocs();
    make_path();
    ad_tape *t = ad_tape_new(NULL);
    model a, b;
    model_init_ordered(&a, 1, 0);
    model_init_ordered(&b, 2, 1);
    cr_assert_str_eq(ad_param_name(nn_params_at(b.ps, 0)), "head.weight", "b registers the head first");
    ad_rng ra;
    ad_rng_seed(&ra, 77, 0);
    for (int s = 0; s < 3; s++) train_step(&a, t, &ra);
    ad_error err;
    cr_assert_eq(nn_checkpoint_save(path, a.ps, a.opt, NULL, &err), AD_OK, "%s", err.msg);
    cr_assert_eq(nn_checkpoint_load(path, b.ps, b.opt, NULL, &err), AD_OK, "%s", err.msg);
    int count;
    size_t numel;
    nn_optim_state(a.opt, 0, &numel, &count);
    cr_assert_eq(count, 2, "Adam keeps two moments");
    for (size_t i = 0; i < nn_params_count(a.ps); i++) {
        ad_param *p = nn_params_at(a.ps, i);
        const char *name = ad_param_name(p);
        size_t n = ad_tensor_numel(ad_param_value(p)), oa = offset_of(a.ps, name), ob = offset_of(b.ps, name);
        const double *va = nn_params_values(a.ps, NULL), *vb = nn_params_values(b.ps, NULL);
        cr_assert_eq(memcmp(va + oa, vb + ob, n * sizeof *va), 0, "values of '%s'", name);
        for (int k = 0; k < count; k++) {
            const double *sa = nn_optim_state(a.opt, k, NULL, NULL), *sb = nn_optim_state(b.opt, k, NULL, NULL);
            for (size_t e = 0; e < n; e++)
                cr_assert_eq(sa[oa + e], sb[ob + e], "moment %d of '%s'[%zu]: %g in the model, %g saved", k,
                             name, e, sb[ob + e], sa[oa + e]);
        }
    }
    /* one more step on the same batch: the same weights, name by name */
    ad_rng rb = ra;
    train_step(&a, t, &ra);
    train_step(&b, t, &rb);
    for (size_t i = 0; i < nn_params_count(a.ps); i++) {
        ad_tensor *va = ad_param_value(nn_params_at(a.ps, i));
        ad_tensor *vb = ad_param_value(nn_params_get(b.ps, ad_param_name(nn_params_at(a.ps, i))));
        cr_assert_eq(memcmp(ad_tensor_f64(va), ad_tensor_f64(vb), ad_tensor_numel(va) * sizeof(double)), 0,
                     "'%s' after the resumed step", ad_param_name(nn_params_at(a.ps, i)));
    }
    model_free(&a);
    model_free(&b);
    ad_tape_free(t);
    unlink(path);
    cr_assert_eq(ts_live_allocs(), before);
}

/* An optimizer is saved only with the parameter set it updates (and of the
 * size it was made for): anything else would write a file that cannot be
 * loaded back. Nothing is written then. */
Test(nn_checkpoint, save_refuses_an_optimizer_of_another_set)
{
    long before = ts_live_allocs();
    make_path();
    unlink(path);
    nn_params *a = nn_params_new(AD_F32, NULL), *b = nn_params_new(AD_F32, NULL);
    nn_params_add(a, "w", ad_shape2(2, 2), NULL);
    nn_params_add(b, "w", ad_shape2(2, 2), NULL);
    nn_params_add(b, "v", ad_shape1(3), NULL);
    nn_optim_config cfg = nn_optim_defaults(NN_OPTIM_ADAM);
    nn_optim *ob = nn_optim_new(b, &cfg, NULL), *oa = nn_optim_new(a, &cfg, NULL);
    ad_error err;
    cr_assert_eq(nn_checkpoint_save(path, a, ob, NULL, &err), AD_ERR_ARG);
    cr_assert(strstr(err.msg, "another parameter set"), "%s", err.msg);
    cr_assert_neq(access(path, F_OK), 0, "nothing was written");
    cr_assert_eq(nn_checkpoint_save(path, a, oa, NULL, &err), AD_OK, "%s", err.msg);
    cr_assert_eq(nn_checkpoint_load(path, a, ob, NULL, &err), AD_ERR_ARG, "loading refuses it too");
    cr_assert(strstr(err.msg, "another parameter set"), "%s", err.msg);
    /* a set that grew after its optimizer was made */
    nn_params_add(a, "late", ad_shape1(2), NULL);
    unlink(path);
    cr_assert_eq(nn_checkpoint_save(path, a, oa, NULL, &err), AD_ERR_STATE);
    cr_assert(strstr(err.msg, "since the optimizer was made"), "%s", err.msg);
    cr_assert_neq(access(path, F_OK), 0, "nothing was written");
    nn_optim_free(oa);
    nn_optim_free(ob);
    nn_params_free(a);
    nn_params_free(b);
    cr_assert_eq(ts_live_allocs(), before);
}

/* ---- values a file may not hold ------------------------------------------------------ */

static uint64_t le_get(const unsigned char *b, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++) v |= (uint64_t)b[i] << (8 * i);
    return v;
}

static void le_put(unsigned char *b, uint64_t v, int n)
{
    for (int i = 0; i < n; i++) b[i] = (unsigned char)(v >> (8 * i));
}

/* The payload offset of the section tagged `tag` (docs/formats.md). */
static size_t section_payload(const unsigned char *b, size_t size, uint32_t tag)
{
    for (size_t at = 32; at + 16 <= size - 4; at += 16 + le_get(b + at + 8, 8) + 4)
        if (le_get(b + at, 4) == tag) return at + 16;
    cr_assert_fail("no section %08x", tag);
    return 0;
}

/* Recomputes every checksum after a field was patched, so that only the
 * value itself is wrong. */
static void reseal(unsigned char *b, size_t size)
{
    for (size_t at = 32; at + 16 <= size - 4;) {
        uint64_t len = le_get(b + at + 8, 8);
        le_put(b + at + 16 + len, nn__crc32(0, b + at + 16, len), 4);
        at += 16 + len + 4;
    }
    le_put(b + size - 4, nn__crc32(0, b, size - 4), 4);
}

enum { SEC_OPTIM = 0x4D54504F, SEC_TRAIN = 0x54535254 };

/* One patched field: section, offset in its payload, width, the new bits. */
typedef struct patch_case {
    uint32_t section;
    size_t offset;
    int width;
    uint64_t bits;
    const char *fragment;
} patch_case;

static uint64_t f64_bits(double v)
{
    uint64_t u;
    memcpy(&u, &v, sizeof u);
    return u;
}

Test(nn_checkpoint, values_out_of_range_are_refused_on_load)
{
    long before = ts_live_allocs();
    make_path();
    nn_params *ps = nn_params_new(AD_F32, NULL);
    nn_params_add(ps, "w", ad_shape1(2), NULL);
    nn_optim_config cfg = nn_optim_defaults(NN_OPTIM_ADAM);
    nn_optim *opt = nn_optim_new(ps, &cfg, NULL);
    nn_train_state ts = {.step = 3, .has_rng = 1, .has_schedule = 1,
                         .schedule = {.kind = NN_SCHEDULE_STEP, .base_lr = 0.1, .step_size = 10, .gamma = 0.5}};
    ad_rng_seed(&ts.rng, 5, 0);
    ad_error err;
    cr_assert_eq(nn_checkpoint_save(path, ps, opt, &ts, &err), AD_OK, "%s", err.msg);
    void *file;
    size_t size;
    cr_assert_eq(ad__file_read_all(path, 1 << 20, &file, &size, NULL), AD_OK);
    unsigned char *orig = file, *copy = malloc(size);
    /* optimizer payload: kind 4, lr 8, steps 8, count 4, numel 8, state;
     * training payload: step 8, has_rng 1, rng 8 + 8, has_schedule 1, kind 4,
     * base_lr 8, step_size 8, gamma 8, t_max 8, eta_min 8, warmup 8, start_factor 8 */
    const patch_case cases[] = {
        {SEC_OPTIM, 4, 8, f64_bits(NAN), "learning rate"},
        {SEC_OPTIM, 4, 8, f64_bits(-1.0), "learning rate"},
        {SEC_OPTIM, 4, 8, f64_bits(INFINITY), "learning rate"},
        {SEC_OPTIM, 12, 8, (uint64_t)1 << 60, "step count"},
        {SEC_OPTIM, 32, 8, f64_bits(NAN), "optimizer state"},
        {SEC_OPTIM, 32 + 8 * 3, 8, f64_bits(-1.0), "optimizer state"},
        {SEC_TRAIN, 0, 8, (uint64_t)1 << 60, "step"},
        {SEC_TRAIN, 17, 8, 42, "RNG"},
        {SEC_TRAIN, 30, 8, f64_bits(NAN), "schedule"},
        {SEC_TRAIN, 30, 8, f64_bits(-0.5), "schedule"},
        {SEC_TRAIN, 38, 8, 0, "schedule"},
        {SEC_TRAIN, 46, 8, f64_bits(INFINITY), "schedule"},
        {SEC_TRAIN, 54, 8, (uint64_t)-5, "schedule"},
        {SEC_TRAIN, 78, 8, f64_bits(NAN), "schedule"},
    };
    float *v = nn_params_values(ps, NULL);
    v[0] = -7; /* sentinel: a refused load leaves it */
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const patch_case *c = &cases[i];
        memcpy(copy, orig, size);
        le_put(copy + section_payload(copy, size, c->section) + c->offset, c->bits, c->width);
        reseal(copy, size);
        write_bytes(copy, size);
        nn_train_state got = {.step = 42};
        ad_status st = nn_checkpoint_load(path, ps, opt, &got, &err);
        cr_assert_eq(st, AD_ERR_FORMAT, "case %zu: %s (%s)", i, ad_status_name(st), err.msg);
        cr_assert(strstr(err.msg, c->fragment), "case %zu: %s", i, err.msg);
        cr_assert_eq(got.step, 42, "case %zu", i);
        cr_assert_eq(v[0], -7.0f, "case %zu changed the model", i);
        cr_assert_eq(nn_optim_steps(opt), 0, "case %zu changed the optimizer", i);
    }
    /* the untouched file loads, and a save refuses what a load would */
    write_bytes(orig, size);
    cr_assert_eq(nn_checkpoint_load(path, ps, opt, &ts, &err), AD_OK, "%s", err.msg);
    nn_optim_set_lr(opt, NAN);
    cr_assert_eq(nn_checkpoint_save(path, ps, opt, NULL, &err), AD_ERR_ARG);
    cr_assert(strstr(err.msg, "learning rate"), "%s", err.msg);
    nn_optim_set_lr(opt, 0.1);
    ts.schedule.step_size = 0;
    cr_assert_eq(nn_checkpoint_save(path, ps, opt, &ts, &err), AD_ERR_ARG);
    cr_assert(strstr(err.msg, "schedule"), "%s", err.msg);
    free(orig);
    free(copy);
    nn_optim_free(opt);
    nn_params_free(ps);
    unlink(path);
    cr_assert_eq(ts_live_allocs(), before);
}

/* Many differences: the message lists whole differences, each with both
 * shapes, says how many it left out, and fits ad_error. */
Test(nn_checkpoint, long_mismatch_messages_keep_whole_differences)
{
    long before = ts_live_allocs();
    make_path();
    nn_params *a = nn_params_new(AD_F64, NULL), *b = nn_params_new(AD_F64, NULL);
    char name[64];
    for (int i = 0; i < 8; i++) {
        snprintf(name, sizeof name, "encoder.layer%d.attention_projection.weight", i);
        nn_params_add(a, name, ad_shape2(12, 34), NULL);
        nn_params_add(b, name, ad_shape2(34, 12), NULL);
    }
    cr_assert_eq(nn_checkpoint_save(path, a, NULL, NULL, NULL), AD_OK);
    ad_error err;
    cr_assert_eq(nn_checkpoint_load(path, b, NULL, NULL, &err), AD_ERR_MISMATCH);
    cr_assert(strlen(err.msg) < sizeof err.msg);
    cr_assert(strstr(err.msg, "8 difference(s)"), "%s", err.msg);
    cr_assert(strstr(err.msg, "'encoder.layer0.attention_projection.weight' differs: file f64 [12,34], "
                              "model f64 [34,12]"), "%s", err.msg);
    int listed = 0;
    for (const char *p = err.msg; (p = strstr(p, "' differs: ")); p++) listed++;
    int whole = 0;
    for (const char *p = err.msg; (p = strstr(p, "model f64 [34,12]")); p++) whole++;
    cr_assert(listed >= 1 && listed == whole, "%d listed, %d whole: %s", listed, whole, err.msg);
    char more[32];
    snprintf(more, sizeof more, "and %d more", 8 - listed);
    cr_assert(strstr(err.msg, more), "'%s' missing: %s", more, err.msg);
    nn_params_free(a);
    nn_params_free(b);
    unlink(path);
    cr_assert_eq(ts_live_allocs(), before);
}

Test(nn_checkpoint, a_named_pipe_is_refused_without_blocking, .timeout = 20)
{
    long before = ts_live_allocs();
    char dir[] = "/tmp/unroll_ckfifo_XXXXXX", fifo[64];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(fifo, sizeof fifo, "%s/model.ckpt", dir);
    cr_assert_eq(mkfifo(fifo, 0600), 0);
    nn_params *ps = nn_params_new(AD_F32, NULL);
    nn_params_add(ps, "w", ad_shape1(2), NULL);
    ad_error err;
    cr_assert_eq(nn_checkpoint_load(fifo, ps, NULL, NULL, &err), AD_ERR_IO);
    cr_assert(strstr(err.msg, "not a regular file"), "%s", err.msg);
    nn_params_free(ps);
    unlink(fifo);
    rmdir(dir);
    cr_assert_eq(ts_live_allocs(), before);
}

static void touch(const char *p, time_t mtime)
{
    FILE *f = fopen(p, "wb");
    cr_assert_not_null(f, "%s", p);
    fputs("left by a killed save", f);
    fclose(f);
    struct timespec ts[2] = {{mtime, 0}, {mtime, 0}};
    cr_assert_eq(utimensat(AT_FDCWD, p, ts, AT_SYMLINK_NOFOLLOW), 0, "%s", p);
}

/* A save removes the temporaries an interrupted earlier save of the same
 * target left behind (regular files of the library's own pattern, older
 * than the process) and nothing else. */
Test(nn_checkpoint, a_save_removes_stale_temporaries_of_its_target)
{
    long before = ts_live_allocs();
    char dir[] = "/tmp/unroll_stale_XXXXXX", target[64], p[128];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(target, sizeof target, "%s/model.ckpt", dir);
    time_t old = time(NULL) - 3600, future = time(NULL) + 3600;
    static const char *const stale[] = {"AbC123", "zzzzzz", "000000"};
    static const char *const kept[] = {"AbC12", "AbC1234", "AbC-23", "NeW456", "Dir123", "Lnk123"};
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s.tmp.%s", target, stale[i]);
        touch(p, old);
    }
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s.tmp.%s", target, kept[i]);
        touch(p, old); /* not the pattern */
    }
    snprintf(p, sizeof p, "%s.tmp.NeW456", target);
    touch(p, future); /* newer than the process: perhaps another save under way */
    snprintf(p, sizeof p, "%s.tmp.Dir123", target);
    cr_assert_eq(mkdir(p, 0700), 0);
    snprintf(p, sizeof p, "%s/elsewhere", dir);
    touch(p, old);
    char link[128];
    snprintf(link, sizeof link, "%s.tmp.Lnk123", target);
    cr_assert_eq(symlink(p, link), 0);
    snprintf(p, sizeof p, "%s/other.ckpt.tmp.AbC123", dir);
    touch(p, old); /* another target's */
    nn_params *ps = nn_params_new(AD_F32, NULL);
    nn_params_add(ps, "w", ad_shape1(2), NULL);
    ad_error err;
    cr_assert_eq(nn_checkpoint_save(target, ps, NULL, NULL, &err), AD_OK, "%s", err.msg);
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s.tmp.%s", target, stale[i]);
        cr_assert_neq(access(p, F_OK), 0, "%s was left", p);
    }
    struct stat st;
    for (int i = 0; i < 6; i++) {
        snprintf(p, sizeof p, "%s.tmp.%s", target, kept[i]);
        cr_assert_eq(lstat(p, &st), 0, "%s was removed", p);
    }
    snprintf(p, sizeof p, "%s/other.ckpt.tmp.AbC123", dir);
    cr_assert_eq(access(p, F_OK), 0, "another target's temporary was removed");
    snprintf(p, sizeof p, "%s/elsewhere", dir);
    cr_assert_eq(access(p, F_OK), 0, "a symbolic link was followed");
    cr_assert_eq(nn_checkpoint_load(target, ps, NULL, NULL, &err), AD_OK, "%s", err.msg);
    /* clean up */
    for (int i = 0; i < 6; i++) {
        snprintf(p, sizeof p, "%s.tmp.%s", target, kept[i]);
        if (i == 4) rmdir(p);
        else unlink(p);
    }
    snprintf(p, sizeof p, "%s/other.ckpt.tmp.AbC123", dir);
    unlink(p);
    snprintf(p, sizeof p, "%s/elsewhere", dir);
    unlink(p);
    unlink(target);
    cr_assert_eq(rmdir(dir), 0, "the folder holds nothing else");
    nn_params_free(ps);
    cr_assert_eq(ts_live_allocs(), before);
}

Test(nn_checkpoint, read_without_the_model)
{
    make_path();
    long before = ts_live_allocs();
    model m;
    model_init(&m, 3);
    ad_tape *t = ad_tape_new(NULL);
    ad_rng rng;
    ad_rng_seed(&rng, 5, 0);
    for (int i = 0; i < 3; i++) train_step(&m, t, &rng);
    nn_train_state ts = {.step = 3, .rng = rng, .has_rng = 1};
    ad_error err;
    cr_assert_eq(nn_checkpoint_save(path, m.ps, m.opt, &ts, &err), AD_OK, "%s", err.msg);
    nn_checkpoint_info in;
    nn_params *ps = nn_checkpoint_read_params(path, &in, &err);
    cr_assert_not_null(ps, "%s", err.msg);
    cr_assert_eq(in.n_params, nn_params_count(m.ps));
    cr_assert_eq(in.dtype, AD_F64);
    cr_assert(in.has_optim && in.optim_kind == NN_OPTIM_ADAM && in.optim_steps == 3 && in.lr == 0.05);
    cr_assert_eq(in.optim_buffers, 2);
    cr_assert(in.has_train && in.train.step == 3 && in.train.has_rng && in.train.rng.state == rng.state);
    for (size_t i = 0; i < nn_params_count(ps); i++) { /* the file's order and values, bit for bit */
        ad_param *a = nn_params_at(ps, i), *b = nn_params_at(m.ps, i);
        cr_assert_str_eq(ad_param_name(a), ad_param_name(b));
        ad_tensor *va = ad_param_value(a), *vb = ad_param_value(b);
        cr_assert(ad_shape_equal(ad_tensor_shape(va), ad_tensor_shape(vb)));
        cr_assert_eq(memcmp(ad_tensor_data(va), ad_tensor_data(vb), ad_tensor_numel(va) * sizeof(double)), 0);
    }
    nn_params_free(ps);
    /* a parameters-only file */
    cr_assert_eq(nn_checkpoint_save(path, m.ps, NULL, NULL, &err), AD_OK);
    ps = nn_checkpoint_read_params(path, &in, &err);
    cr_assert(ps && !in.has_optim && !in.has_train);
    nn_params_free(ps);
    /* bad inputs: nothing is returned, the message says why */
    cr_assert_null(nn_checkpoint_read_params(NULL, &in, &err));
    cr_assert_eq(err.code, AD_ERR_NULL);
    cr_assert_null(nn_checkpoint_read_params("/tmp/unroll_no_such_file.ckpt", NULL, &err));
    cr_assert_eq(err.code, AD_ERR_IO);
    cr_assert_null(nn_checkpoint_read_params(UNROLL_SOURCE_DIR "/README.md", NULL, &err));
    cr_assert_eq(err.code, AD_ERR_FORMAT);
    cr_assert(strstr(err.msg, "bad magic"), "%s", err.msg);
    ad_tape_free(t);
    model_free(&m);
    unlink(path);
    cr_assert_eq(ts_live_allocs(), before);
}
