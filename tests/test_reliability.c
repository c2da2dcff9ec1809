/*
 * test_reliability.c - the failure modes a long training run meets, tried
 * exhaustively rather than by example:
 * - every truncation length and every single-bit flip of a small checkpoint
 *   is refused, with the model, the optimizer and the training state
 *   untouched bit for bit;
 * - a process saving checkpoints in a loop, killed with SIGKILL at random
 *   moments, always leaves a file that loads and is one complete checkpoint:
 *   the last one it finished or the one it was writing;
 * - a failure of every single allocation of a training step (LSTM unroll,
 *   loss, backward, clipping, Adam), of checkpoint save and load and of .npy
 *   loading is a clean status with nothing leaked and nothing half-changed,
 *   and the same tape then runs the step to the exact same result.
 */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <unroll/nn/nn.h>
#include "testsupport.h"

enum { IN = 3, HID = 4, OUT = 3, BATCH = 2, T = 3 };

/* An LSTM cell and a linear head, f32, with an Adam optimizer. */
typedef struct model {
    nn_params *ps;
    nn_cell cell;
    nn_linear head;
    nn_optim *opt;
} model;

static void model_init(model *m, uint64_t seed)
{
    m->ps = nn_params_new(AD_F32, NULL);
    cr_assert_not_null(m->ps);
    cr_assert_eq(nn_cell_create(&m->cell, m->ps, "lstm", &(nn_cell_options){.kind = NN_CELL_LSTM, .input_size = IN, .hidden_size = HID}, NULL), AD_OK);
    cr_assert_eq(nn_linear_create(&m->head, m->ps, "head", HID, OUT, 1, NULL), AD_OK);
    ad_rng rng;
    ad_rng_seed(&rng, seed, 0);
    nn_cell_init_pytorch(&m->cell, &rng);
    nn_linear_init_pytorch(&m->head, &rng);
    nn_optim_config cfg = nn_optim_defaults(NN_OPTIM_ADAM);
    cfg.lr = 0.01;
    m->opt = nn_optim_new(m->ps, &cfg, NULL);
    cr_assert_not_null(m->opt);
}

static void model_free(model *m)
{
    nn_optim_free(m->opt);
    nn_params_free(m->ps);
}

/* A copy of everything a load may change, to compare bit for bit. */
typedef struct snapshot {
    float values[512];
    double moments[2][512];
    size_t n;
    int64_t steps;
    double lr;
} snapshot;

static void take(model *m, snapshot *s)
{
    memset(s, 0, sizeof *s);
    float *v = nn_params_values(m->ps, &s->n);
    cr_assert(s->n <= 512);
    memcpy(s->values, v, s->n * sizeof *v);
    for (int k = 0; k < 2; k++) memcpy(s->moments[k], nn_optim_state(m->opt, k, NULL, NULL), s->n * sizeof(double));
    s->steps = nn_optim_steps(m->opt);
    s->lr = nn_optim_config_of(m->opt)->lr;
}

static int same(model *m, const snapshot *s)
{
    snapshot now;
    take(m, &now);
    return memcmp(&now, s, sizeof now) == 0;
}

/*
 * One training step on fixed data: zero the gradients, unroll the LSTM over
 * T steps, cross-entropy of the head at the last step, backward, clip the
 * global norm, Adam. Returns the first failing status.
 */
static ad_status train_step(model *m, ad_tape *t, uint64_t data_seed)
{
    ad_tape_reset(t);
    nn_params_zero_grad(m->ps);
    ad_rng rng;
    ad_rng_seed(&rng, data_seed, 3);
    ad_tensor *xs[T];
    for (int k = 0; k < T; k++) xs[k] = ad_rand_normal(t, &rng, AD_F32, ad_shape2(BATCH, IN), 0, 1);
    int64_t target[BATCH] = {1, 2};
    nn_state last;
    ad_status st = nn_unroll(t, &m->cell, xs, T, NULL, NULL, &last);
    if (st != AD_OK) return st;
    ad_tensor *loss = ad_cross_entropy(t, nn_linear_forward(t, &m->head, last.h), target, BATCH, -1,
                                       AD_REDUCE_MEAN);
    if (!loss) return ad_tape_status(t);
    st = ad_backward(t, loss, NULL);
    if (st != AD_OK) return st;
    double norm;
    st = nn_clip_grad_norm(m->ps, 0.5, &norm, NULL);
    if (st != AD_OK) return st;
    return nn_optim_step(m->opt, NULL);
}

/* A model after a few real steps, so that its moments are not zero. */
static void trained_model(model *m, uint64_t seed)
{
    model_init(m, seed);
    ad_tape *t = ad_tape_new(NULL);
    for (int s = 0; s < 3; s++) cr_assert_eq(train_step(m, t, 100 + (uint64_t)s), AD_OK, "%s", ad_tape_message(t));
    ad_tape_free(t);
}

static char dir[64];

static void make_dir(void)
{
    snprintf(dir, sizeof dir, "/tmp/unroll_rel_XXXXXX");
    cr_assert_not_null(mkdtemp(dir), "mkdtemp: %s", strerror(errno));
}

/* Removes the folder and every file in it; returns how many files there were. */
static int remove_dir(void)
{
    int files = 0;
    DIR *d = opendir(dir);
    if (!d) return 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        char p[512];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        unlink(p);
        files++;
    }
    closedir(d);
    rmdir(dir);
    return files;
}

/* A new file each time: rewriting one in place makes ext4 flush it on close
 * (auto_da_alloc), which costs milliseconds per call. */
static void write_bytes(const char *path, const void *data, size_t n)
{
    unlink(path);
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    if (n) cr_assert_eq(fwrite(data, 1, n, f), n);
    cr_assert_eq(fclose(f), 0);
}

/* ---- every truncation, every bit flip --------------------------------------------------- */

Test(reliability, every_truncation_and_bit_flip_of_a_checkpoint_is_refused, .timeout = 600)
{
    long before = ts_live_allocs();
    make_dir();
    char path[128];
    snprintf(path, sizeof path, "%s/small.ckpt", dir);
    model src, dst;
    trained_model(&src, 1);
    nn_train_state ts = {.step = 3, .has_rng = 1, .has_schedule = 1};
    ad_rng_seed(&ts.rng, 5, 1);
    ts.schedule.kind = NN_SCHEDULE_STEP;
    ts.schedule.base_lr = 0.01;
    ts.schedule.step_size = 10;
    ts.schedule.gamma = 0.5;
    cr_assert_eq(nn_checkpoint_save(path, src.ps, src.opt, &ts, NULL), AD_OK);
    size_t size;
    void *file = ts_read_file(path, &size);
    cr_assert_not_null(file, "%s", path);
    unsigned char *orig = file, *copy = malloc(size + 8);
    cr_assert_not_null(copy);

    trained_model(&dst, 2); /* different values and moments from src's */
    snapshot want;
    take(&dst, &want);
    nn_train_state untouched, got;
    memset(&untouched, 0x5C, sizeof untouched);
    long refused = 0;
    for (size_t cut = 0; cut < size; cut++) {
        write_bytes(path, orig, cut);
        ad_error err;
        memcpy(&got, &untouched, sizeof got);
        ad_status st = nn_checkpoint_load(path, dst.ps, dst.opt, &got, &err);
        cr_assert_eq(st, AD_ERR_FORMAT, "truncated to %zu of %zu bytes: %s (%s)", cut, size,
                     ad_status_name(st), err.msg);
        cr_assert(err.msg[0] != '\0');
        cr_assert(same(&dst, &want), "truncated to %zu bytes: the model or optimizer changed", cut);
        cr_assert(memcmp(&got, &untouched, sizeof got) == 0, "truncated to %zu: training state changed", cut);
        refused++;
    }
    /* Bytes appended to a complete file are refused too. */
    memcpy(copy, orig, size);
    memset(copy + size, 0, 8);
    for (size_t extra = 1; extra <= 8; extra++) {
        write_bytes(path, copy, size + extra);
        ad_status st = nn_checkpoint_load(path, dst.ps, dst.opt, &got, NULL);
        cr_assert_eq(st, AD_ERR_FORMAT, "%zu bytes appended: %s", extra, ad_status_name(st));
        cr_assert(same(&dst, &want));
        refused++;
    }
    for (size_t bit = 0; bit < 8 * size; bit++) {
        memcpy(copy, orig, size);
        copy[bit / 8] ^= (unsigned char)(1u << (bit % 8));
        write_bytes(path, copy, size);
        ad_error err;
        memcpy(&got, &untouched, sizeof got);
        ad_status st = nn_checkpoint_load(path, dst.ps, dst.opt, &got, &err);
        cr_assert_eq(st, AD_ERR_FORMAT, "bit %zu of byte %zu flipped: %s (%s)", bit % 8, bit / 8,
                     ad_status_name(st), err.msg);
        cr_assert(same(&dst, &want), "bit %zu flipped: the model or optimizer changed", bit);
        cr_assert(memcmp(&got, &untouched, sizeof got) == 0, "bit %zu flipped: training state changed", bit);
        refused++;
    }
    cr_log_info("checkpoint of %zu bytes: %ld corrupt variants refused", size, refused);

    /* The intact file still loads, and gives exactly src. */
    write_bytes(path, orig, size);
    cr_assert_eq(nn_checkpoint_load(path, dst.ps, dst.opt, &got, NULL), AD_OK);
    snapshot a, b;
    take(&src, &a);
    take(&dst, &b);
    cr_assert(memcmp(&a, &b, sizeof a) == 0, "the intact checkpoint did not restore src");
    cr_assert_eq(got.step, 3);
    cr_assert_eq(got.rng.state, ts.rng.state);
    free(orig);
    free(copy);
    model_free(&src);
    model_free(&dst);
    remove_dir();
    cr_assert_eq(ts_live_allocs(), before);
}

/* ---- kill -9 during saves --------------------------------------------------------------- */

/*
 * The content of checkpoint number i: every value, moment and the step count
 * are functions of i, so a file's number (its training step) says exactly
 * what the rest of it must hold.
 */
static void fill_generation(model *m, int64_t i)
{
    size_t n;
    float *v = nn_params_values(m->ps, &n);
    for (size_t k = 0; k < n; k++) v[k] = (float)i + 0.001f * (float)k;
    for (int s = 0; s < 2; s++) {
        double *st = nn_optim_state(m->opt, s, NULL, NULL);
        for (size_t k = 0; k < n; k++) st[k] = (double)i * (s + 1) + 1e-6 * (double)k;
    }
    nn_optim_set_steps(m->opt, i);
}

static int is_generation(model *m, int64_t i)
{
    model want;
    model_init(&want, 9);
    fill_generation(&want, i);
    snapshot a, b;
    take(&want, &a);
    take(m, &b);
    model_free(&want);
    return memcmp(&a, &b, sizeof a) == 0;
}

/* The child: saves generations first, first + 1, ... until killed, reporting
 * each finished save on fd. */
static void saver(const char *path, int64_t first, int fd)
{
    model m;
    model_init(&m, 9);
    for (int64_t i = first; i < first + 100000; i++) {
        fill_generation(&m, i);
        nn_train_state ts = {.step = i};
        if (nn_checkpoint_save(path, m.ps, m.opt, &ts, NULL) != AD_OK) _exit(3);
        if (write(fd, &i, sizeof i) != (ssize_t)sizeof i) _exit(4);
        if (getppid() == 1) _exit(0); /* the test is gone */
    }
    _exit(0);
}

Test(reliability, a_save_killed_at_any_moment_leaves_a_complete_checkpoint, .timeout = 600)
{
    enum { TRIALS = 50 };
    long before = ts_live_allocs();
    make_dir();
    char path[128];
    snprintf(path, sizeof path, "%s/run.ckpt", dir);
    model m;
    model_init(&m, 9);
    fill_generation(&m, 0);
    nn_train_state ts0 = {.step = 0};
    cr_assert_eq(nn_checkpoint_save(path, m.ps, m.opt, &ts0, NULL), AD_OK);

    /* How long one save takes here, so that the kills fall before, inside and
     * after saves alike. */
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (int i = 0; i < 5; i++) cr_assert_eq(nn_checkpoint_save(path, m.ps, m.opt, &ts0, NULL), AD_OK);
    clock_gettime(CLOCK_MONOTONIC, &b);
    long save_us = ((b.tv_sec - a.tv_sec) * 1000000L + (b.tv_nsec - a.tv_nsec) / 1000) / 5 + 1;

    ad_rng rng;
    ad_rng_seed(&rng, 2026, 12);
    int64_t on_disk = 0; /* the generation the file holds */
    int newer = 0, older = 0;
    for (int trial = 0; trial < TRIALS; trial++) {
        int fds[2];
        cr_assert_eq(pipe(fds), 0);
        fflush(NULL);
        pid_t pid = fork();
        cr_assert(pid >= 0, "fork: %s", strerror(errno));
        if (pid == 0) {
            close(fds[0]);
            saver(path, on_disk + 1, fds[1]);
        }
        close(fds[1]);
        /* Up to about 6 saves' time: some kills come before the first save ends. */
        long delay = (long)ad_rng_below(&rng, (uint32_t)(6 * save_us + 200));
        struct timespec d = {delay / 1000000L, (delay % 1000000L) * 1000L};
        nanosleep(&d, NULL);
        cr_assert_eq(kill(pid, SIGKILL), 0);
        int status;
        cr_assert_eq(waitpid(pid, &status, 0), pid);
        cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
                  "trial %d: the saver ended by itself (status %d)", trial, status);
        int64_t finished = on_disk, i;
        while (read(fds[0], &i, sizeof i) == (ssize_t)sizeof i) finished = i;
        close(fds[0]);

        ad_error err;
        nn_train_state got;
        ad_status st = nn_checkpoint_load(path, m.ps, m.opt, &got, &err);
        cr_assert_eq(st, AD_OK, "trial %d (killed after %ld us): the file does not load: %s", trial,
                     delay, err.msg);
        cr_assert(got.step == finished || got.step == finished + 1,
                  "trial %d: the file holds generation %lld; the saver had finished %lld",
                  trial, (long long)got.step, (long long)finished);
        cr_assert(is_generation(&m, got.step), "trial %d: generation %lld is not complete", trial,
                  (long long)got.step);
        if (got.step == finished + 1) newer++;
        else older++;
        on_disk = got.step;
    }
    cr_log_info("%d kills (one save: %ld us): %d left the save being written, %d the last "
                "finished one; %lld generations saved", TRIALS, save_us, newer, older, (long long)on_disk);
    model_free(&m);
    remove_dir();
    cr_assert_eq(ts_live_allocs(), before);
}

/* ---- every allocation fails once ------------------------------------------------------- */

/*
 * Runs `body` with its k-th allocation failing, for k = 1, 2, ... until a
 * run makes all its allocations; `body` asserts what must hold after a
 * failure and returns whether the injected failure fired. Returns how many
 * allocations the body makes.
 */
static long every_allocation(int (*body)(long k))
{
    long k = 1;
    for (; k < 100000; k++)
        if (!body(k)) break;
    cr_assert(k < 100000, "never got past the allocations");
    return k - 1;
}

/* The reference: one clean training step from seed 4's trained model. */
static snapshot step_ref;

static int training_step_body(long k)
{
    long before = ts_live_allocs();
    model m;
    trained_model(&m, 4);
    ad_tape *t = ad_tape_new(&(ad_tape_options){.chunk_bytes = 2048});
    cr_assert_not_null(t);
    snapshot untouched;
    take(&m, &untouched);
    ts_fail_alloc_at(k);
    ad_status st = train_step(&m, t, 200);
    int fired = ts_fail_alloc_fired();
    ts_fail_alloc_at(0);
    if (fired) {
        cr_assert_eq(st, AD_ERR_NOMEM, "allocation %ld failed: %s (%s)", k, ad_status_name(st),
                     ad_tape_message(t));
        cr_assert(same(&m, &untouched), "allocation %ld failed: the step changed the model", k);
        /* The same tape runs the step again, to the same result. */
        st = train_step(&m, t, 200);
        cr_assert_eq(st, AD_OK, "after allocation %ld failed, the tape is unusable: %s", k,
                     ad_tape_message(t));
    } else {
        cr_assert_eq(st, AD_OK, "%s", ad_tape_message(t));
    }
    cr_assert(same(&m, &step_ref), "allocation %ld: the step's result differs", k);
    ad_tape_free(t);
    model_free(&m);
    cr_assert_eq(ts_live_allocs(), before, "allocation %ld failed: leak", k);
    return fired;
}

Test(reliability, every_allocation_of_a_training_step_can_fail, .timeout = 600)
{
    model m;
    trained_model(&m, 4);
    ad_tape *t = ad_tape_new(&(ad_tape_options){.chunk_bytes = 2048});
    cr_assert_eq(train_step(&m, t, 200), AD_OK);
    take(&m, &step_ref);
    ad_tape_free(t);
    model_free(&m);
    long n = every_allocation(training_step_body);
    cr_assert(n > 3, "a fresh tape's step should allocate chunks; made %ld allocations", n);
    cr_log_info("training step: each of its %ld allocations failed once", n);
}

static char ckpt_path[128];
static snapshot saved;

static int save_body(long k)
{
    long before = ts_live_allocs();
    model m;
    trained_model(&m, 6);
    nn_train_state ts = {.step = 99};
    ts_fail_alloc_at(k);
    ad_error err;
    ad_status st = nn_checkpoint_save(ckpt_path, m.ps, m.opt, &ts, &err);
    int fired = ts_fail_alloc_fired();
    ts_fail_alloc_at(0);
    model_free(&m);
    /* Whatever happened, the file is one complete checkpoint. */
    model_init(&m, 1);
    nn_train_state got;
    cr_assert_eq(nn_checkpoint_load(ckpt_path, m.ps, m.opt, &got, NULL), AD_OK);
    if (fired) {
        cr_assert_eq(st, AD_ERR_NOMEM, "allocation %ld failed: %s (%s)", k, ad_status_name(st), err.msg);
        cr_assert(err.msg[0] != '\0');
        cr_assert(same(&m, &saved) && got.step == 1, "allocation %ld failed: the previous file changed", k);
    } else {
        cr_assert_eq(st, AD_OK, "%s", err.msg);
        cr_assert_eq(got.step, 99);
    }
    model_free(&m);
    cr_assert_eq(ts_live_allocs(), before, "allocation %ld failed: leak", k);
    return fired;
}

Test(reliability, every_allocation_of_a_checkpoint_save_can_fail, .timeout = 600)
{
    make_dir();
    snprintf(ckpt_path, sizeof ckpt_path, "%s/save.ckpt", dir);
    model m;
    trained_model(&m, 5);
    nn_train_state ts = {.step = 1};
    cr_assert_eq(nn_checkpoint_save(ckpt_path, m.ps, m.opt, &ts, NULL), AD_OK);
    take(&m, &saved);
    model_free(&m);
    /* Each run that fails must leave the step-1 file; the last, clean one
     * replaces it. */
    long n = every_allocation(save_body);
    cr_assert(n >= 1);
    cr_log_info("checkpoint save: each of its %ld allocations failed once", n);
    remove_dir();
}

static int load_body(long k)
{
    long before = ts_live_allocs();
    model m;
    trained_model(&m, 7);
    snapshot untouched;
    take(&m, &untouched);
    nn_train_state got, blank;
    memset(&blank, 0x3C, sizeof blank);
    memcpy(&got, &blank, sizeof got);
    ad_error err;
    ts_fail_alloc_at(k);
    ad_status st = nn_checkpoint_load(ckpt_path, m.ps, m.opt, &got, &err);
    int fired = ts_fail_alloc_fired();
    ts_fail_alloc_at(0);
    if (fired) {
        cr_assert_eq(st, AD_ERR_NOMEM, "allocation %ld failed: %s (%s)", k, ad_status_name(st), err.msg);
        cr_assert(same(&m, &untouched), "allocation %ld failed: the load changed the model", k);
        cr_assert(memcmp(&got, &blank, sizeof got) == 0);
        st = nn_checkpoint_load(ckpt_path, m.ps, m.opt, &got, &err);
    }
    cr_assert_eq(st, AD_OK, "%s", err.msg);
    cr_assert(same(&m, &saved));
    cr_assert_eq(got.step, 1);
    model_free(&m);
    cr_assert_eq(ts_live_allocs(), before, "allocation %ld failed: leak", k);
    return fired;
}

Test(reliability, every_allocation_of_a_checkpoint_load_can_fail, .timeout = 600)
{
    make_dir();
    snprintf(ckpt_path, sizeof ckpt_path, "%s/load.ckpt", dir);
    model m;
    trained_model(&m, 5);
    nn_train_state ts = {.step = 1};
    cr_assert_eq(nn_checkpoint_save(ckpt_path, m.ps, m.opt, &ts, NULL), AD_OK);
    take(&m, &saved);
    model_free(&m);
    long n = every_allocation(load_body);
    cr_assert(n >= 1);
    cr_log_info("checkpoint load: each of its %ld allocations failed once", n);
    remove_dir();
}

static char npy_path[128];

static int npy_load_body(long k)
{
    long before = ts_live_allocs();
    ad_error err;
    ts_fail_alloc_at(k);
    ad_tensor *x = ad_npy_load(npy_path, &err);
    int fired = ts_fail_alloc_fired();
    ts_fail_alloc_at(0);
    if (fired) {
        cr_assert_null(x, "allocation %ld failed, yet a tensor came back", k);
        cr_assert_eq(err.code, AD_ERR_NOMEM, "allocation %ld failed: %s (%s)", k, ad_status_name(err.code), err.msg);
    } else {
        cr_assert_not_null(x, "%s", err.msg);
        cr_assert_eq(ad_tensor_numel(x), 6);
        cr_assert_eq(ad_tensor_f64(x)[5], 2.5);
    }
    ad_tensor_free(x);

    /* Into an existing tensor: on failure it keeps its values. */
    ad_tensor *dst = ad_tensor_new(AD_F64, ad_shape2(2, 3), NULL);
    for (int i = 0; i < 6; i++) ad_tensor_f64(dst)[i] = -7;
    ts_fail_alloc_at(k);
    ad_status st = ad_npy_load_into(npy_path, dst, &err);
    int fired_into = ts_fail_alloc_fired();
    ts_fail_alloc_at(0);
    if (fired_into) {
        cr_assert_eq(st, AD_ERR_NOMEM, "load_into, allocation %ld failed: %s", k, ad_status_name(st));
        for (int i = 0; i < 6; i++) cr_assert_eq(ad_tensor_f64(dst)[i], -7);
    } else {
        cr_assert_eq(st, AD_OK, "%s", err.msg);
        cr_assert_eq(ad_tensor_f64(dst)[5], 2.5);
    }
    ad_tensor_free(dst);
    cr_assert_eq(ts_live_allocs(), before, "allocation %ld failed: leak", k);
    return fired || fired_into;
}

static int npy_dir_body(long k)
{
    long before = ts_live_allocs();
    model m;
    trained_model(&m, 8);
    snapshot untouched;
    take(&m, &untouched);
    ad_error err;
    ts_fail_alloc_at(k);
    ad_status st = nn_params_load_npy_dir(m.ps, dir, &err);
    int fired = ts_fail_alloc_fired();
    ts_fail_alloc_at(0);
    if (fired) {
        cr_assert_eq(st, AD_ERR_NOMEM, "allocation %ld failed: %s (%s)", k, ad_status_name(st), err.msg);
        cr_assert(same(&m, &untouched), "allocation %ld failed: the load changed the model", k);
    } else {
        cr_assert_eq(st, AD_OK, "%s", err.msg);
        size_t n;
        float *v = nn_params_values(m.ps, &n);
        cr_assert(memcmp(v, saved.values, n * sizeof *v) == 0);
    }
    model_free(&m);
    cr_assert_eq(ts_live_allocs(), before, "allocation %ld failed: leak", k);
    return fired;
}

Test(reliability, every_allocation_of_an_npy_load_can_fail, .timeout = 600)
{
    make_dir();
    snprintf(npy_path, sizeof npy_path, "%s/x.npy", dir);
    ad_tensor *x = ad_tensor_new(AD_F64, ad_shape2(2, 3), NULL);
    for (int i = 0; i < 6; i++) ad_tensor_f64(x)[i] = 0.5 * i;
    cr_assert_eq(ad_npy_save(npy_path, x, NULL), AD_OK);
    ad_tensor_free(x);
    long n = every_allocation(npy_load_body);
    cr_log_info(".npy load: each of its %ld allocations failed once", n);
    cr_assert(n >= 1);

    model m;
    trained_model(&m, 5);
    cr_assert_eq(nn_params_save_npy_dir(m.ps, dir, NULL), AD_OK);
    take(&m, &saved);
    model_free(&m);
    n = every_allocation(npy_dir_body);
    cr_log_info(".npy folder load: each of its %ld allocations failed once", n);
    cr_assert(n >= 6, "one file per parameter: at least 6 allocations, made %ld", n);
    remove_dir();
}
