/*
 * test_threads.c - the thread count of the matrix products: its API contract,
 * and that results are bit-identical for any thread count (each C element is
 * summed in the same order whichever thread computes it), both for single
 * products that are split over a team and for a whole training step, and
 * that the flat loops over a parameter set (optimizer, gradient sums,
 * zeroing) split over threads leave the same parameters after several steps.
 *
 * In a build without OpenMP every count runs one thread, so an identity
 * check would compare one thread with one thread: those tests skip there,
 * visibly. UNROLL_TEST_OPENMP marks the build in which they are real
 * (scripts/test.sh runs this file in one).
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../nn/internal.h"
#include "kernels.h"
#include <unroll/nn/nn.h>
#include "testsupport.h"

#if defined(UNROLL_TEST_OPENMP)
enum { MAX_THREADS_USED = 3 };
#define SKIP_WITHOUT_OPENMP() ((void)0)
#else
enum { MAX_THREADS_USED = 1 };
#define SKIP_WITHOUT_OPENMP() cr_skip_test("built without OpenMP: one thread would be compared with itself")
#endif

Test(threads, the_default_is_one_thread) { cr_assert_eq(ad_get_num_threads(), 1); }

Test(threads, a_valid_count_is_used_when_threads_exist)
{
    cr_assert_eq(ad_set_num_threads(3), AD_OK);
    cr_assert_eq(ad_get_num_threads(), MAX_THREADS_USED);
    cr_assert_eq(ad_set_num_threads(1), AD_OK);
    cr_assert_eq(ad_get_num_threads(), 1);
}

Test(threads, a_count_below_one_is_refused_and_changes_nothing)
{
    cr_assert_eq(ad_set_num_threads(3), AD_OK);
    int before = ad_get_num_threads();
    int bad[] = {0, -3};
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(ad_set_num_threads(bad[i]), AD_ERR_ARG, "n = %d", bad[i]);
        cr_assert_eq(ad_get_num_threads(), before, "n = %d", bad[i]);
    }
}

/* One product case: every transpose case and accumulate, both dtypes, on
 * 1, 2 and 3 threads. */
static void check_gemm_identity(size_t m, size_t n, size_t k)
{
    size_t na = m * k, nb = k * n, nc = m * n;
    double *a = malloc(na * sizeof *a), *b = malloc(nb * sizeof *b), *c0 = malloc(nc * sizeof *c0);
    double *d[3];
    float *af = malloc(na * sizeof *af), *bf = malloc(nb * sizeof *bf), *f[3];
    for (int t = 0; t < 3; t++) d[t] = malloc(nc * sizeof *d[t]), f[t] = malloc(nc * sizeof *f[t]);
    ts_fill_uniform(a, na, 11, -1, 1);
    ts_fill_uniform(b, nb, 12, -1, 1);
    ts_fill_uniform(c0, nc, 13, -1, 1);
    for (size_t i = 0; i < na; i++) af[i] = (float)a[i];
    for (size_t i = 0; i < nb; i++) bf[i] = (float)b[i];
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
            for (int acc = 0; acc < 2; acc++) {
                for (int t = 0; t < 3; t++) {
                    cr_assert_eq(ad_set_num_threads(t + 1), AD_OK);
                    for (size_t i = 0; i < nc; i++) d[t][i] = c0[i], f[t][i] = (float)c0[i];
                    ad__gemm_f64(ta, tb, m, n, k, a, b, d[t], acc);
                    ad__gemm_f32(ta, tb, m, n, k, af, bf, f[t], acc);
                }
                for (int t = 1; t < 3; t++) {
                    cr_assert(!memcmp(d[0], d[t], nc * sizeof *d[0]), "f64 %zux%zux%zu ta%d tb%d acc%d: %d threads differ",
                              m, n, k, ta, tb, acc, t + 1);
                    cr_assert(!memcmp(f[0], f[t], nc * sizeof *f[0]), "f32 %zux%zux%zu ta%d tb%d acc%d: %d threads differ",
                              m, n, k, ta, tb, acc, t + 1);
                }
            }
    for (int t = 0; t < 3; t++) free(d[t]), free(f[t]);
    free(a), free(b), free(c0), free(af), free(bf);
}

/* Shapes above the threading threshold: the recurrent step and its
 * gradients, edges of every size in rows and columns, several cache panels. */
Test(threads, gemm_is_bit_identical_for_1_2_and_3_threads)
{
    SKIP_WITHOUT_OPENMP();
    long before = ts_live_allocs();
    size_t shapes[][3] = {{32, 256, 256}, {256, 256, 32}, {33, 300, 70}, {7, 513, 129},
                          {500, 65, 64},  {65, 256, 520}, {97, 37, 300}, {13, 1031, 40}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        check_gemm_identity(shapes[s][0], shapes[s][1], shapes[s][2]);
    cr_assert_eq(ts_live_allocs(), before);
}

enum { B = 32, D = 64, H = 192, STEPS = 4 };

static void count_hit(void *ctx, int i) { ((int *)ctx)[i]++; }

/* h = tanh(x_s W + h U + b) over STEPS steps from h = 0, loss = sum(h * h);
 * the products ([32,64]x[64,192], [32,192]x[192,192] and their gradients)
 * are above the threading threshold. */
static ad_status rnn_rows(ad_tape *t, ad_dtype dt, ad_param *const *p, const double *xs, int row0, int rows)
{
    ad_tensor *h = ad_zeros(t, dt, ad_shape2(rows, H));
    for (int s = 0; s < STEPS; s++) {
        ad_tensor *x = ad_from_f64(t, dt, ad_shape2(rows, D), xs + ((size_t)s * B + (size_t)row0) * D);
        ad_tensor *z = ad_add(t, ad_matmul(t, x, ad_use(t, p[0]), 0), ad_matmul(t, h, ad_use(t, p[1]), 0));
        h = ad_tanh(t, ad_add(t, z, ad_use(t, p[2])));
    }
    ad_tensor *loss = ad_sum(t, ad_mul(t, h, h), AD_AXIS_ALL, 0);
    if (!loss) return ad_tape_status(t);
    return ad_backward(t, loss, NULL);
}

static ad_status rnn_step(ad_tape *t, ad_dtype dt, ad_param *const *p, const double *xs)
{
    return rnn_rows(t, dt, p, xs, 0, B);
}

/* The gradients of W, U and b after one step on `threads` threads, copied
 * into g (of size D*H + H*H + H elements of the dtype). */
static void rnn_grads(ad_dtype dt, int threads, const double *xs, unsigned char *g)
{
    ad_shape shapes[3] = {ad_shape2(D, H), ad_shape2(H, H), ad_shape1(H)};
    const char *names[3] = {"W", "U", "b"};
    ad_param *p[3];
    for (int i = 0; i < 3; i++) {
        p[i] = ad_param_new(names[i], dt, shapes[i], NULL);
        cr_assert_not_null(p[i]);
        ad_tensor *v = ad_param_value(p[i]);
        for (size_t j = 0; j < ad_tensor_numel(v); j++) {
            double x = 0.2 * xs[(j * 7 + (size_t)i) % (STEPS * B * D)];
            if (dt == AD_F32) ad_tensor_f32(v)[j] = (float)x;
            else ad_tensor_f64(v)[j] = x;
        }
    }
    cr_assert_eq(ad_set_num_threads(threads), AD_OK);
    ad_tape *t = ad_tape_new(NULL);
    cr_assert_eq(rnn_step(t, dt, p, xs), AD_OK, "%s", ad_tape_message(t));
    size_t off = 0, es = dt == AD_F32 ? sizeof(float) : sizeof(double);
    for (int i = 0; i < 3; i++) {
        ad_tensor *gi = ad_param_grad(p[i]);
        void *data = dt == AD_F32 ? (void *)ad_tensor_f32(gi) : (void *)ad_tensor_f64(gi);
        memcpy(g + off, data, ad_tensor_numel(gi) * es);
        off += ad_tensor_numel(gi) * es;
    }
    ad_tape_free(t);
    for (int i = 0; i < 3; i++) ad_param_free(p[i]);
}

Test(threads, a_training_step_gives_bit_identical_gradients_on_1_and_2_threads)
{
    SKIP_WITHOUT_OPENMP();
    long before = ts_live_allocs();
    size_t nx = (size_t)STEPS * B * D, ng = (size_t)D * H + (size_t)H * H + H;
    double *xs = malloc(nx * sizeof *xs);
    unsigned char *g1 = malloc(ng * sizeof(double)), *g2 = malloc(ng * sizeof(double));
    ts_fill_uniform(xs, nx, 5, -1, 1);
    ad_dtype dts[2] = {AD_F32, AD_F64};
    for (int d = 0; d < 2; d++) {
        size_t bytes = ng * (dts[d] == AD_F32 ? sizeof(float) : sizeof(double));
        rnn_grads(dts[d], 1, xs, g1);
        rnn_grads(dts[d], 2, xs, g2);
        cr_assert(!memcmp(g1, g2, bytes), "%s gradients differ between 1 and 2 threads", d ? "f64" : "f32");
    }
    free(xs), free(g1), free(g2);
    cr_assert_eq(ts_live_allocs(), before);
}

/* ---- data-parallel steps: shards of the batch on replicas ---------------------------- */

Test(threads, parallel_run_runs_every_task_once)
{
    int hits[7] = {0};
    for (int threads = 1; threads <= 2; threads++) {
        cr_assert_eq(ad_set_num_threads(threads), AD_OK);
        memset(hits, 0, sizeof hits);
        cr_assert_eq(ad_parallel_run(7, count_hit, hits), AD_OK);
        for (int i = 0; i < 7; i++) cr_assert_eq(hits[i], 1, "task %d on %d threads", i, threads);
    }
    cr_assert_eq(ad_parallel_run(0, count_hit, hits), AD_OK, "no tasks is no work");
    cr_assert_eq(ad_parallel_run(-1, count_hit, hits), AD_ERR_ARG);
    cr_assert_eq(ad_parallel_run(3, NULL, hits), AD_ERR_NULL);
    ad_set_num_threads(1);
}

enum { SHARDS = 2 };

typedef struct shard_job {
    ad_dtype dt;
    nn_params *replica[SHARDS];
    ad_tape *tape[SHARDS];
    const double *xs;
    ad_status st[SHARDS];
} shard_job;

static void shard_task(void *ctx, int i)
{
    shard_job *j = ctx;
    ad_param *p[3] = {nn_params_at(j->replica[i], 0), nn_params_at(j->replica[i], 1), nn_params_at(j->replica[i], 2)};
    nn_params_zero_grad(j->replica[i]);
    j->st[i] = rnn_rows(j->tape[i], j->dt, p, j->xs, i * (B / SHARDS), B / SHARDS);
}

/* The net's parameters W [D, H], U [H, H], b [H], drawn from one seed. */
static nn_params *rnn_params(ad_dtype dt)
{
    nn_params *ps = nn_params_new(dt, NULL);
    ad_shape shapes[3] = {ad_shape2(D, H), ad_shape2(H, H), ad_shape1(H)};
    const char *names[3] = {"W", "U", "b"};
    for (int i = 0; i < 3; i++) cr_assert_not_null(nn_params_add(ps, names[i], shapes[i], NULL));
    ad_rng rng;
    ad_rng_seed(&rng, 9, 0);
    nn_params_init_uniform(ps, &rng, -0.15, 0.15);
    return ps;
}

/* The set's gradients after a step: sharded over replicas (on `threads`
 * threads) or, with threads 0, the whole batch on one tape. */
static void sharded_grads(ad_dtype dt, int threads, const double *xs, double *g, size_t *n)
{
    nn_params *ps = rnn_params(dt);
    nn_params_zero_grad(ps);
    if (threads == 0) {
        ad_tape *t = ad_tape_new(NULL);
        ad_param *p[3] = {nn_params_at(ps, 0), nn_params_at(ps, 1), nn_params_at(ps, 2)};
        cr_assert_eq(rnn_step(t, dt, p, xs), AD_OK);
        ad_tape_free(t);
    } else {
        shard_job j = {dt, {NULL}, {NULL}, xs, {AD_OK}};
        for (int i = 0; i < SHARDS; i++) {
            j.replica[i] = nn_params_replica(ps, NULL);
            j.tape[i] = ad_tape_new(NULL);
            cr_assert(j.replica[i] && j.tape[i]);
        }
        cr_assert_eq(ad_set_num_threads(threads), AD_OK);
        cr_assert_eq(ad_parallel_run(SHARDS, shard_task, &j), AD_OK);
        ad_set_num_threads(1);
        for (int i = 0; i < SHARDS; i++) {
            cr_assert_eq(j.st[i], AD_OK, "%s", ad_tape_message(j.tape[i]));
            cr_assert_eq(nn_params_accumulate_grads(ps, j.replica[i], NULL), AD_OK);
            ad_tape_free(j.tape[i]);
            nn_params_free(j.replica[i]);
        }
    }
    const void *gr = nn_params_grads(ps, n);
    for (size_t i = 0; i < *n; i++) g[i] = dt == AD_F32 ? ((const float *)gr)[i] : ((const double *)gr)[i];
    nn_params_free(ps);
}

/* Shards on replicas give the same gradients on 1 and 2 threads to the bit
 * (with OpenMP), and the whole-batch gradients within rounding (always). */
static void sharded_check(int compare_threads)
{
    long before = ts_live_allocs();
    size_t nx = (size_t)STEPS * B * D, ng = (size_t)D * H + (size_t)H * H + H, n;
    double *xs = malloc(nx * sizeof *xs), *g[3];
    for (int i = 0; i < 3; i++) g[i] = malloc(ng * sizeof(double));
    ts_fill_uniform(xs, nx, 6, -1, 1);
    ad_dtype dts[2] = {AD_F32, AD_F64};
    for (int d = 0; d < 2; d++) {
        for (int threads = 0; threads < 3; threads++) sharded_grads(dts[d], threads, xs, g[threads], &n);
        cr_assert_eq(n, ng);
        if (compare_threads)
            cr_assert(!memcmp(g[1], g[2], ng * sizeof(double)), "%s: shards differ between 1 and 2 threads",
                      d ? "f64" : "f32");
        /* normwise: sums of 16 rows twice instead of 32 once, which cancel in places */
        double tol = d ? 1e-12 : 1e-4, scale = 0;
        for (size_t i = 0; i < ng; i++) scale = fabs(g[0][i]) > scale ? fabs(g[0][i]) : scale;
        for (size_t i = 0; i < ng; i++)
            cr_assert(fabs(g[1][i] - g[0][i]) <= tol * scale, "%s grad %zu: sharded %.9g, whole %.9g (scale %.3g)",
                      d ? "f64" : "f32", i, g[1][i], g[0][i], scale);
    }
    free(xs);
    for (int i = 0; i < 3; i++) free(g[i]);
    cr_assert_eq(ts_live_allocs(), before);
}

Test(threads, sharded_step_equals_the_whole_batch) { sharded_check(0); }

Test(threads, sharded_step_is_bit_identical_on_1_and_2_threads)
{
    SKIP_WITHOUT_OPENMP();
    sharded_check(1);
}

/* ---- flat loops over the parameter block (autodiff/split.c) ------------------------ */

static void count_range(void *ctx, size_t lo, size_t hi, int part)
{
    unsigned char *hits = ctx;
    (void)part;
    for (size_t i = lo; i < hi; i++) hits[i]++;
}

/* Every element is visited once, whatever the count and thread count, and
 * small blocks are not split. */
Test(threads, a_flat_split_covers_every_element_once)
{
    size_t sizes[] = {0, 1, 16383, 32768, 32769, 49344, 100003};
    for (int threads = 1; threads <= 3; threads++) {
        cr_assert_eq(ad_set_num_threads(threads), AD_OK);
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
            size_t n = sizes[s];
            int parts = nn__flat_parts(n);
            cr_assert(parts >= 1 && parts <= MAX_THREADS_USED, "n %zu: %d parts", n, parts);
            if (n < 32768) cr_assert_eq(parts, 1, "n %zu is too small to split", n);
            unsigned char *hits = calloc(n ? n : 1, 1);
            nn__flat_run(n, parts, count_range, hits);
            for (size_t i = 0; i < n; i++) cr_assert_eq(hits[i], 1, "n %zu, %d threads: element %zu", n, threads, i);
            free(hits);
        }
    }
    ad_set_num_threads(1);
}

enum { TRAIN_STEPS = 3, N_KINDS = 6 };

/* Optimizer i of the identity test: every update loop, with its options on. */
static nn_optim_config kind_config(int i)
{
    nn_optim_kind kinds[N_KINDS] = {NN_OPTIM_SGD, NN_OPTIM_SGD, NN_OPTIM_ADAGRAD, NN_OPTIM_RMSPROP, NN_OPTIM_ADAM,
                                    NN_OPTIM_ADAMW};
    nn_optim_config c = nn_optim_defaults(kinds[i]);
    c.lr = 0.01;
    if (kinds[i] == NN_OPTIM_SGD) c.momentum = 0.9, c.nesterov = i == 1, c.weight_decay = 1e-3;
    if (kinds[i] == NN_OPTIM_RMSPROP) c.momentum = 0.5, c.centered = 1;
    if (kinds[i] == NN_OPTIM_ADAM) c.weight_decay = 1e-3;
    return c;
}

/* The values and optimizer state after TRAIN_STEPS steps of rnn_rows on
 * `threads` threads, copied into out as doubles: the whole batch on one tape
 * (shards 0), or SHARDS shards on replicas run by ad_parallel_run and summed
 * in shard order. Everything in the step (products, gradient sums, zeroing,
 * the update) runs with the thread count set. Returns the count copied. */
static size_t trained(ad_dtype dt, int kind, int shards, int threads, const double *xs, double *out)
{
    nn_params *ps = rnn_params(dt);
    nn_optim_config cfg = kind_config(kind);
    nn_optim *opt = nn_optim_new(ps, &cfg, NULL);
    shard_job j = {dt, {NULL}, {NULL}, xs, {AD_OK}};
    for (int i = 0; i < SHARDS; i++) {
        j.replica[i] = shards ? nn_params_replica(ps, NULL) : NULL;
        j.tape[i] = ad_tape_new(NULL);
    }
    cr_assert_not_null(opt);
    cr_assert_eq(ad_set_num_threads(threads), AD_OK);
    for (int step = 0; step < TRAIN_STEPS; step++) {
        nn_params_zero_grad(ps);
        if (!shards) {
            ad_tape_reset(j.tape[0]);
            ad_param *p[3] = {nn_params_at(ps, 0), nn_params_at(ps, 1), nn_params_at(ps, 2)};
            cr_assert_eq(rnn_step(j.tape[0], dt, p, xs), AD_OK, "%s", ad_tape_message(j.tape[0]));
        } else {
            for (int i = 0; i < SHARDS; i++) ad_tape_reset(j.tape[i]);
            cr_assert_eq(ad_parallel_run(SHARDS, shard_task, &j), AD_OK);
            for (int i = 0; i < SHARDS; i++) {
                cr_assert_eq(j.st[i], AD_OK, "%s", ad_tape_message(j.tape[i]));
                cr_assert_eq(nn_params_accumulate_grads(ps, j.replica[i], NULL), AD_OK);
            }
        }
        cr_assert_eq(nn_optim_step(opt, NULL), AD_OK);
    }
    ad_set_num_threads(1);
    size_t n, k = 0;
    const void *v = nn_params_values(ps, &n);
    for (size_t i = 0; i < n; i++) out[k++] = dt == AD_F32 ? ((const float *)v)[i] : ((const double *)v)[i];
    for (int s = 0; s < 3; s++) {
        size_t m = 0;
        int count = 0;
        const double *st = nn_optim_state(opt, s, &m, &count);
        if (s >= count || !st) break;
        memcpy(out + k, st, m * sizeof *st);
        k += m;
    }
    for (int i = 0; i < SHARDS; i++) {
        ad_tape_free(j.tape[i]);
        nn_params_free(j.replica[i]);
    }
    nn_optim_free(opt);
    nn_params_free(ps);
    return k;
}

typedef struct nested_job {
    size_t n;
    unsigned char *hits[2];
} nested_job;

static void nested_task(void *ctx, int i)
{
    nested_job *j = ctx;
    nn__flat_run(j->n, nn__flat_parts(j->n), count_range, j->hits[i]);
}

/* A flat loop inside an ad_parallel_run task (a replica zeroed by its
 * shard) runs on the task's thread and still covers its block once. */
Test(threads, a_flat_split_inside_a_task_covers_every_element_once)
{
    nested_job j = {100003, {calloc(100003, 1), calloc(100003, 1)}};
    cr_assert_eq(ad_set_num_threads(2), AD_OK);
    cr_assert_eq(ad_parallel_run(2, nested_task, &j), AD_OK);
    ad_set_num_threads(1);
    for (int t = 0; t < 2; t++) {
        for (size_t i = 0; i < j.n; i++) cr_assert_eq(j.hits[t][i], 1, "task %d: element %zu", t, i);
        free(j.hits[t]);
    }
}

/* Parameters and optimizer state after several steps are the same to the
 * bit on 1, 2 and 3 threads, for the whole batch and for shards, with every
 * optimizer: the split of the update and of the gradient sums changes no
 * element's arithmetic. */
Test(threads, training_steps_leave_bit_identical_parameters_on_1_2_and_3_threads, .timeout = 300)
{
    SKIP_WITHOUT_OPENMP();
    long before = ts_live_allocs();
    size_t nx = (size_t)STEPS * B * D, ng = (size_t)D * H + (size_t)H * H + H, cap = ng * 4;
    double *xs = malloc(nx * sizeof *xs), *r[3];
    for (int t = 0; t < 3; t++) r[t] = malloc(cap * sizeof *r[t]);
    ts_fill_uniform(xs, nx, 7, -1, 1);
    ad_dtype dts[2] = {AD_F32, AD_F64};
    for (int d = 0; d < 2; d++)
        for (int kind = 0; kind < N_KINDS; kind++)
            for (int shards = 0; shards < 2; shards++) {
                size_t n[3];
                for (int t = 0; t < 3; t++) n[t] = trained(dts[d], kind, shards, t + 1, xs, r[t]);
                for (int t = 1; t < 3; t++) {
                    cr_assert_eq(n[t], n[0]);
                    cr_assert(!memcmp(r[0], r[t], n[0] * sizeof *r[0]), "%s, optimizer %d, %s: %d threads differ",
                              d ? "f64" : "f32", kind, shards ? "shards" : "whole batch", t + 1);
                }
            }
    free(xs);
    for (int t = 0; t < 3; t++) free(r[t]);
    cr_assert_eq(ts_live_allocs(), before);
}

/* A non-finite gradient in the last part of a split block still refuses the
 * whole update: nothing changes in any part. */
Test(threads, a_split_update_refuses_a_non_finite_gradient_in_any_part)
{
    nn_params *ps = nn_params_new(AD_F32, NULL);
    cr_assert_not_null(nn_params_add(ps, "w", ad_shape1(100000), NULL));
    nn_optim_config cfg = nn_optim_defaults(NN_OPTIM_ADAM);
    nn_optim *opt = nn_optim_new(ps, &cfg, NULL);
    size_t n;
    float *v = nn_params_values(ps, &n), *g = nn_params_grads(ps, &n);
    for (size_t i = 0; i < n; i++) v[i] = 1, g[i] = 0.5f;
    g[n - 1] = NAN;
    cr_assert_eq(ad_set_num_threads(2), AD_OK);
    ad_error err;
    cr_assert_eq(nn_optim_step(opt, &err), AD_ERR_NONFINITE);
    ad_set_num_threads(1);
    cr_assert(strstr(err.msg, "NaN or infinite"), "%s", err.msg);
    cr_assert_eq(nn_optim_steps(opt), 0);
    for (size_t i = 0; i < n; i++) cr_assert_eq(v[i], 1.0f, "element %zu changed", i);
    nn_optim_free(opt);
    nn_params_free(ps);
}

/* ---- the elementwise work of one tape over the threads (split.h) --------------------- */

/* A recurrent net whose every op of the step is large enough to be split
 * over up to 3 threads (checked against the rules of tuning.h below): the
 * input projection of all steps at once (gathered rows plus a bias row, or
 * a product), each step's rows of it a view, the fused cell, the states
 * joined by concat and gated elementwise, the head and cross-entropy over
 * every token. B is odd so that no split is
 * even, H = 400 so that rows end inside a vector. */
enum { NB = 33, NH = 400, NT = 8, NV = 65 };

typedef struct split_net {
    int kind; /* 0 Elman tanh, 1 Elman relu, 2 LSTM, 3 GRU, 4 Elman tanh, 5 GRU as one sequence node */
    int gather;
    ad_param *p[6]; /* W_x [NV, G NH], W_h [NH, G NH], b [G NH], b_h [G NH], W_y [NH, NV], b_y [NV] */
} split_net;

static int64_t split_gates(int kind) { return kind == 2 ? 4 : kind == 3 || kind == 5 ? 3 : 1; }

static void split_net_init(split_net *s, ad_dtype dt, int kind, int gather)
{
    int64_t g = split_gates(kind) * NH;
    ad_shape shapes[6] = {ad_shape2(NV, g), ad_shape2(NH, g), ad_shape1(g), ad_shape1(g), ad_shape2(NH, NV), ad_shape1(NV)};
    s->kind = kind, s->gather = gather;
    for (int i = 0; i < 6; i++) {
        s->p[i] = ad_param_new("p", dt, shapes[i], NULL);
        cr_assert_not_null(s->p[i]);
        ad_tensor *v = ad_param_value(s->p[i]);
        size_t n = ad_tensor_numel(v);
        double *x = malloc(n * sizeof *x);
        ts_fill_uniform(x, n, 11 + (uint64_t)i, -0.15, 0.15);
        for (size_t j = 0; j < n; j++) {
            if (dt == AD_F32) ad_tensor_f32(v)[j] = (float)x[j];
            else ad_tensor_f64(v)[j] = x[j];
        }
        free(x);
    }
}

/* One forward and backward on `threads` threads; the loss and every
 * parameter gradient are appended to out as bytes. Returns the bytes. */
static size_t split_net_run(split_net *s, ad_dtype dt, ad_copy_grads copy, int threads, const int64_t *ids,
                            unsigned char *out)
{
    ad_tape_options o = {0};
    o.copy_grads = copy, o.release_grads = copy != AD_COPY_GRADS_KEEP;
    ad_tape *t = ad_tape_new(&o);
    cr_assert_eq(ad_set_num_threads(threads), AD_OK);
    for (int i = 0; i < 6; i++) ad_param_zero_grad(s->p[i]);
    int64_t n = (int64_t)NT * NB;
    ad_tensor *proj;
    if (s->gather) {
        proj = ad_add(t, ad_gather_rows(t, ad_use(t, s->p[0]), ids, n), ad_use(t, s->p[2]));
    } else {
        ad_tensor *x = ad_zeros(t, dt, ad_shape2(n, NV));
        for (int64_t r = 0; r < n; r++) {
            if (dt == AD_F32) ad_tensor_f32(x)[r * NV + ids[r]] = 1.0f;
            else ad_tensor_f64(x)[r * NV + ids[r]] = 1.0;
        }
        proj = ad_addmm(t, ad_use(t, s->p[2]), x, ad_use(t, s->p[0]), 0);
    }
    ad_tensor *wh = ad_use(t, s->p[1]);
    ad_tensor *h = ad_zeros(t, dt, ad_shape2(NB, NH)), *c = ad_zeros(t, dt, ad_shape2(NB, NH)), *hs[NT];
    for (int k = 0; k < NT && s->kind < 4; k++) {
        ad_tensor *gx = ad_slice(t, proj, 0, (int64_t)k * NB, NB);
        if (s->kind == 3) {
            h = ad_gru_cell(t, gx, ad_addmm(t, ad_use(t, s->p[3]), h, wh, 0), h);
        } else if (s->kind == 2) {
            ad_tensor *gh = ad_matmul(t, h, wh, 0);
            c = ad_lstm_cell_state(t, gx, gh, c);
            h = ad_lstm_cell_output(t, gx, gh, c);
        } else {
            h = ad_rnn_cell(t, gx, ad_matmul(t, h, wh, 0), s->kind ? AD_RNN_RELU : AD_RNN_TANH);
        }
        hs[k] = h;
    }
    ad_tensor *states = s->kind == 4   ? ad_rnn_sequence(t, proj, h, wh, AD_RNN_TANH, 0)
                        : s->kind == 5 ? ad_gru_sequence(t, proj, h, wh, ad_use(t, s->p[3]), 0)
                                       : ad_concat(t, hs, NT, 0);
    ad_tensor *gated = ad_mul(t, states, ad_sigmoid(t, states)); /* the flat form of a binary op */
    ad_tensor *logits = ad_addmm(t, ad_use(t, s->p[5]), gated, ad_use(t, s->p[4]), 0);
    ad_tensor *loss = ad_cross_entropy(t, logits, ids + 1, n, -100, AD_REDUCE_MEAN);
    cr_assert_not_null(loss, "%s", ad_tape_message(t));
    cr_assert_eq(ad_backward(t, loss, NULL), AD_OK, "%s", ad_tape_message(t));
    ad_set_num_threads(1);
    size_t es = dt == AD_F32 ? sizeof(float) : sizeof(double), off = 0;
    memcpy(out, dt == AD_F32 ? (void *)ad_tensor_f32(loss) : (void *)ad_tensor_f64(loss), es);
    off += es;
    /* the norms of large gradients (released ones on the NORMS tape): long
     * sums of squares, split by chunks */
    ad_tensor *normed[3] = {proj, states, logits};
    for (int i = 0; i < 3; i++) {
        double norm;
        cr_assert_eq(ad_tensor_grad_norm(normed[i], &norm, NULL), AD_OK);
        memcpy(out + off, &norm, sizeof norm);
        off += sizeof norm;
    }
    for (int i = 0; i < 6; i++) {
        if (i == 3 && s->kind != 3 && s->kind != 5) continue;
        ad_tensor *gi = ad_param_grad(s->p[i]);
        size_t bytes = ad_tensor_numel(gi) * es;
        memcpy(out + off, dt == AD_F32 ? (void *)ad_tensor_f32(gi) : (void *)ad_tensor_f64(gi), bytes);
        off += bytes;
    }
    ad_tape_free(t);
    return off;
}

/* The sizes above are split by the rules of tuning.h: otherwise the test
 * below would compare one thread with itself. */
static void assert_the_net_is_split(int threads, int kind)
{
    size_t n = (size_t)NT * NB;
    cr_assert_eq(ad_set_num_threads(threads), AD_OK);
    size_t cell_work = (size_t)NB * (size_t)(split_gates(kind) * NH);
    cr_assert_eq(ad__split_parts(NB, cell_work, AD__TUNE_CELL_MIN_PER_THREAD), threads, "cell ops, kind %d", kind);
    cr_assert_eq(ad__split_parts(n, n * NV, AD__TUNE_ROWS_MIN_PER_THREAD), threads, "cross-entropy");
    size_t state_bytes = (size_t)NB * NH * sizeof(float) * NT;
    cr_assert_eq(ad__split_parts(NT, state_bytes, AD__TUNE_COPY_MIN_PER_THREAD), threads, "concat");
    cr_assert(NT >= 2 * threads, "concat splits by input only with two per thread");
    size_t proj_bytes = n * (size_t)(split_gates(kind) * NH) * sizeof(float);
    cr_assert(proj_bytes / AD__TUNE_COPY_MIN_PER_THREAD >= (size_t)threads && proj_bytes > 2 * 16384 * sizeof(float),
              "the projection's gradient norm is summed in chunks over the threads");
    ad_set_num_threads(1);
}

/* Every fused cell and the Elman sequence op, the shape ops' copies and
 * additions, the zeroing of new gradients and cross-entropy, split over 2
 * and 3 threads, give the loss and gradients of one thread to the bit, in
 * f32 and f64, on a tape that keeps its copies' gradients and on one that
 * keeps norms and releases them. */
Test(threads, a_tapes_elementwise_work_is_bit_identical_on_1_2_and_3_threads, .timeout = 300)
{
    SKIP_WITHOUT_OPENMP();
    long before = ts_live_allocs();
    int64_t *ids = malloc(((size_t)NT * NB + 1) * sizeof *ids);
    for (size_t i = 0; i < (size_t)NT * NB + 1; i++) ids[i] = (int64_t)((i * 37 + 5) % NV);
    size_t cap = (size_t)4 * NH * NV * 8 + (size_t)2 * 4 * NH * NH * 8;
    unsigned char *r[3];
    for (int k = 0; k < 3; k++) r[k] = malloc(cap);
    ad_dtype dts[2] = {AD_F32, AD_F64};
    ad_copy_grads copies[2] = {AD_COPY_GRADS_KEEP, AD_COPY_GRADS_NORMS};
    for (int kind = 0; kind < 6; kind++) {
        for (int th = 2; th <= 3; th++) assert_the_net_is_split(th, kind);
        for (int d = 0; d < 2; d++)
            for (int cg = 0; cg < 2; cg++) {
                split_net s;
                split_net_init(&s, dts[d], kind, cg); /* the gather form with the NORMS tape */
                size_t n[3];
                for (int th = 0; th < 3; th++) n[th] = split_net_run(&s, dts[d], copies[cg], th + 1, ids, r[th]);
                for (int th = 1; th < 3; th++) {
                    cr_assert_eq(n[th], n[0]);
                    cr_assert(!memcmp(r[0], r[th], n[0]), "cell kind %d, %s, %s: %d threads differ from 1", kind,
                              d ? "f64" : "f32", cg ? "norms, gather" : "keep, product", th + 1);
                }
                for (int i = 0; i < 6; i++) ad_param_free(s.p[i]);
            }
    }
    for (int k = 0; k < 3; k++) free(r[k]);
    free(ids);
    cr_assert_eq(ts_live_allocs(), before);
}

/* A concat of one tensor with itself, large enough to split by input: the
 * inputs share one gradient, so their additions must not run at once (each
 * element of the gradient is exactly the number of uses). */
Test(threads, a_concat_of_one_tensor_with_itself_adds_every_use)
{
    SKIP_WITHOUT_OPENMP();
    long before = ts_live_allocs();
    ad_param *x = ad_param_new("x", AD_F32, ad_shape2(NB, NH), NULL);
    cr_assert_not_null(x);
    for (int threads = 1; threads <= 3; threads++) {
        ad_param_zero_grad(x);
        ad_tape *t = ad_tape_new(NULL);
        cr_assert_eq(ad_set_num_threads(threads), AD_OK);
        ad_tensor *y = ad_tanh(t, ad_use(t, x)), *ys[NT];
        for (int k = 0; k < NT; k++) ys[k] = k % 2 ? y : ad_use(t, x);
        ad_tensor *loss = ad_sum(t, ad_concat(t, ys, NT, 0), AD_AXIS_ALL, 0);
        cr_assert_eq(ad_backward(t, loss, NULL), AD_OK, "%s", ad_tape_message(t));
        ad_set_num_threads(1);
        const float *g = ad_tensor_f32(ad_param_grad(x));
        for (size_t i = 0; i < (size_t)NB * NH; i++) /* x = 0: tanh' = 1; 4 uses through y, 4 direct */
            cr_assert_eq(g[i], 8.0f, "%d threads: element %zu is %g", threads, i, (double)g[i]);
        ad_tape_free(t);
    }
    ad_param_free(x);
    cr_assert_eq(ts_live_allocs(), before);
}
