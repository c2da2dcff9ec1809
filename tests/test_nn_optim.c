/*
 * test_nn_optim.c - optimizers against PyTorch trajectories (f64, 1e-12
 * relative; tests/data/optim from tests/data/make_fixtures.py), schedules
 * against PyTorch's schedulers, clipping, and refusals.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <unroll/nn/nn.h>
#include "testsupport.h"

static ad_tensor *load(const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/optim/%s.npy", UNROLL_TEST_DATA, name);
    ad_error err;
    ad_tensor *x = ad_npy_load(path, &err);
    cr_assert_not_null(x, "%s", err.msg);
    return x;
}

typedef struct optim_case {
    const char *name;
    nn_optim_kind kind;
    double lr, momentum, dampening, weight_decay, lr_decay, init_acc;
    int nesterov, centered;
} optim_case;

static const optim_case cases[] = {
    {"sgd", NN_OPTIM_SGD, 0.1, 0, 0, 0, 0, 0, 0, 0},
    {"sgd_momentum", NN_OPTIM_SGD, 0.1, 0.9, 0.1, 0.01, 0, 0, 0, 0},
    {"sgd_nesterov", NN_OPTIM_SGD, 0.05, 0.9, 0, 0, 0, 0, 1, 0},
    {"adagrad", NN_OPTIM_ADAGRAD, 0.1, 0, 0, 0.01, 0.01, 0.1, 0, 0},
    {"rmsprop", NN_OPTIM_RMSPROP, 0.01, 0, 0, 0, 0, 0, 0, 0},
    {"rmsprop_centered", NN_OPTIM_RMSPROP, 0.01, 0.9, 0, 0.01, 0, 0, 0, 1},
    {"adam", NN_OPTIM_ADAM, 0.01, 0, 0, 0.01, 0, 0, 0, 0},
    {"adamw", NN_OPTIM_ADAMW, 0.01, 0, 0, 0.1, 0, 0, 0, 0},
};

static int ids[sizeof cases / sizeof cases[0]];

ParameterizedTestParameters(nn_optim, matches_pytorch)
{
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) ids[i] = (int)i;
    return cr_make_param_array(int, ids, sizeof cases / sizeof cases[0]);
}

ParameterizedTest(int *id, nn_optim, matches_pytorch)
{
    const optim_case *c = &cases[*id];
    long before = ts_live_allocs();
    ad_tensor *a = load("a"), *cc = load("c"), *p0 = load("p0"), *traj = load(c->name);
    nn_params *ps = nn_params_new(AD_F64, NULL);
    nn_params_add(ps, "w", ad_shape2(3, 4), NULL);
    nn_params_add(ps, "b", ad_shape1(5), NULL);
    size_t n;
    double *p = nn_params_values(ps, &n), *g = nn_params_grads(ps, &n);
    cr_assert_eq(n, 17);
    memcpy(p, ad_tensor_f64(p0), n * sizeof *p);
    nn_optim_config cfg = nn_optim_defaults(c->kind);
    cfg.lr = c->lr, cfg.momentum = c->momentum, cfg.dampening = c->dampening;
    cfg.weight_decay = c->weight_decay, cfg.lr_decay = c->lr_decay;
    cfg.initial_accumulator_value = c->init_acc, cfg.nesterov = c->nesterov, cfg.centered = c->centered;
    ad_error err;
    nn_optim *opt = nn_optim_new(ps, &cfg, &err);
    cr_assert_not_null(opt, "%s", err.msg);
    int steps = (int)ad_tensor_dim(traj, 0);
    for (int s = 0; s < steps; s++) {
        for (size_t i = 0; i < n; i++) g[i] = ad_tensor_f64(a)[i] * (p[i] - ad_tensor_f64(cc)[i]);
        cr_assert_eq(nn_optim_step(opt, &err), AD_OK, "%s", err.msg);
        const double *want = ad_tensor_f64(traj) + (size_t)s * n;
        for (size_t i = 0; i < n; i++)
            cr_assert(fabs(p[i] - want[i]) <= 1e-12 * fabs(want[i]) + 1e-15,
                      "%s step %d [%zu]: %.17g, PyTorch %.17g", c->name, s + 1, i, p[i], want[i]);
    }
    cr_assert_eq(nn_optim_steps(opt), steps);
    nn_optim_free(opt);
    nn_params_free(ps);
    ad_tensor *all[] = {a, cc, p0, traj};
    for (int i = 0; i < 4; i++) ad_tensor_free(all[i]);
    cr_assert_eq(ts_live_allocs(), before);
}

Test(nn_optim, schedules_match_pytorch)
{
    nn_schedule st = {NN_SCHEDULE_STEP, 0.1, 3, 0.5, 0, 0, 0, 0};
    nn_schedule co = {NN_SCHEDULE_COSINE, 0.1, 0, 0, 10, 0.001, 0, 0};
    nn_schedule wu = {NN_SCHEDULE_WARMUP, 0.1, 0, 0, 0, 0, 4, 1.0 / 3.0};
    const nn_schedule *s[3] = {&st, &co, &wu};
    const char *names[3] = {"sched_step", "sched_cosine", "sched_warmup"};
    for (int k = 0; k < 3; k++) {
        ad_tensor *want = load(names[k]);
        for (int64_t t = 0; t < (int64_t)ad_tensor_numel(want); t++) {
            double w = ad_tensor_f64(want)[t], got = nn_schedule_lr(s[k], t);
            cr_assert(fabs(got - w) <= 1e-12 * w, "%s t=%lld: %.17g, PyTorch %.17g", names[k],
                      (long long)t, got, w);
        }
        ad_tensor_free(want);
    }
}

Test(nn_optim, clip_by_norm_and_value)
{
    long before = ts_live_allocs();
    nn_params *ps = nn_params_new(AD_F64, NULL);
    nn_params_add(ps, "a", ad_shape1(2), NULL);
    nn_params_add(ps, "b", ad_shape1(1), NULL);
    size_t n;
    double *g = nn_params_grads(ps, &n);
    g[0] = 3, g[1] = 4, g[2] = 12; /* norm 13 */
    double norm;
    ad_error err;
    cr_assert_eq(nn_clip_grad_norm(ps, 6.5, &norm, &err), AD_OK);
    cr_assert_eq(norm, 13.0);
    cr_assert_float_eq(sqrt(g[0] * g[0] + g[1] * g[1] + g[2] * g[2]), 6.5, 1e-15);
    cr_assert_eq(g[0], 1.5);
    cr_assert_eq(nn_clip_grad_norm(ps, 100, &norm, &err), AD_OK);
    cr_assert_eq(g[0], 1.5, "below max_norm: unchanged");
    cr_assert_eq(nn_clip_grad_value(ps, 2, &err), AD_OK);
    cr_assert_eq(g[2], 2.0);
    cr_assert_eq(g[1], 2.0);
    cr_assert_eq(g[0], 1.5);
    g[1] = INFINITY;
    cr_assert_eq(nn_clip_grad_norm(ps, 1, &norm, &err), AD_ERR_NONFINITE);
    cr_assert_eq(g[0], 1.5, "refused: gradients untouched");
    g[1] = NAN;
    cr_assert_eq(nn_clip_grad_value(ps, 1, &err), AD_ERR_NONFINITE);
    cr_assert_eq(nn_clip_grad_norm(ps, 0, &norm, &err), AD_ERR_ARG);
    cr_assert_eq(nn_clip_grad_norm(NULL, 1, &norm, &err), AD_ERR_NULL);
    nn_params_free(ps);
    cr_assert_eq(ts_live_allocs(), before);
}

Test(nn_optim, non_finite_gradient_refuses_the_update)
{
    long before = ts_live_allocs();
    nn_params *ps = nn_params_new(AD_F32, NULL);
    nn_params_add(ps, "w", ad_shape1(3), NULL);
    size_t n;
    float *p = nn_params_values(ps, &n), *g = nn_params_grads(ps, &n);
    p[0] = 1, p[1] = 2, p[2] = 3;
    g[0] = 0.5f, g[1] = NAN, g[2] = 1;
    nn_optim_config cfg = nn_optim_defaults(NN_OPTIM_ADAM);
    ad_error err;
    nn_optim *opt = nn_optim_new(ps, &cfg, &err);
    cr_assert_eq(nn_optim_step(opt, &err), AD_ERR_NONFINITE);
    cr_assert(strstr(err.msg, "update refused"), "%s", err.msg);
    cr_assert_eq(p[0], 1.0f);
    cr_assert_eq(nn_optim_steps(opt), 0);
    int count;
    double *m = nn_optim_state(opt, 0, &n, &count);
    cr_assert_eq(count, 2);
    cr_assert_eq(m[0], 0.0, "state untouched");
    g[1] = 0;
    cr_assert_eq(nn_optim_step(opt, &err), AD_OK);
    cr_assert(p[0] < 1.0f);
    nn_optim_free(opt);
    nn_params_free(ps);
    cr_assert_eq(ts_live_allocs(), before);
}

Test(nn_optim, bad_configs)
{
    nn_params *ps = nn_params_new(AD_F64, NULL);
    nn_params_add(ps, "w", ad_shape1(3), NULL);
    ad_error err;
    nn_optim_config c = nn_optim_defaults(NN_OPTIM_SGD);
    c.nesterov = 1;
    cr_assert_null(nn_optim_new(ps, &c, &err));
    cr_assert_eq(err.code, AD_ERR_ARG);
    cr_assert(strstr(err.msg, "Nesterov"), "%s", err.msg);
    c = nn_optim_defaults(NN_OPTIM_ADAM);
    c.beta2 = 1.0;
    cr_assert_null(nn_optim_new(ps, &c, &err));
    cr_assert_eq(err.code, AD_ERR_ARG);
    c.beta2 = 0.999;
    c.lr = -1;
    cr_assert_null(nn_optim_new(ps, &c, &err));
    cr_assert_null(nn_optim_new(NULL, &c, &err));
    cr_assert_eq(err.code, AD_ERR_NULL);
    c.lr = 0.1;
    nn_optim *opt = nn_optim_new(ps, &c, &err);
    nn_params_add(ps, "late", ad_shape1(1), NULL);
    cr_assert_eq(nn_optim_step(opt, &err), AD_ERR_STATE);
    cr_assert_eq(nn_optim_step(NULL, &err), AD_ERR_NULL);
    nn_optim_free(opt);
    nn_params_free(ps);
}

/* A whole training step (LSTM unroll, loss, backward, clipping, Adam) performs
 * no allocation once the tape has warmed up. */
Test(nn_optim, training_steps_allocate_nothing_after_warm_up)
{
    nn_params *ps = nn_params_new(AD_F32, NULL);
    nn_cell cell;
    nn_linear head;
    nn_cell_create(&cell, ps, "lstm", &(nn_cell_options){.kind = NN_CELL_LSTM, .input_size = 4, .hidden_size = 16}, NULL);
    nn_linear_create(&head, ps, "head", 16, 5, 1, NULL);
    ad_rng rng;
    ad_rng_seed(&rng, 3, 0);
    nn_cell_init_pytorch(&cell, &rng);
    nn_linear_init_pytorch(&head, &rng);
    nn_optim_config cfg = nn_optim_defaults(NN_OPTIM_ADAM);
    nn_optim *opt = nn_optim_new(ps, &cfg, NULL);
    ad_tape *t = ad_tape_new(NULL);
    long after_warm_up = 0;
    for (int step = 0; step < 6; step++) {
        if (step == 2) after_warm_up = ts_total_allocs();
        ad_tape_reset(t);
        nn_params_zero_grad(ps);
        ad_tensor *xs[10];
        for (int k = 0; k < 10; k++) xs[k] = ad_rand_normal(t, &rng, AD_F32, ad_shape2(3, 4), 0, 1);
        nn_unroll_options o = {0};
        o.hoist_input = step % 2;
        nn_state outs[10];
        cr_assert_eq(nn_unroll(t, &cell, xs, 10, &o, outs, NULL), AD_OK);
        int64_t tg[3] = {1, 4, 0};
        ad_tensor *loss = ad_cross_entropy(t, nn_linear_forward(t, &head, outs[9].h), tg, 3, -1, AD_REDUCE_MEAN);
        cr_assert_eq(ad_backward(t, loss, NULL), AD_OK, "%s", ad_tape_message(t));
        cr_assert_eq(nn_clip_grad_norm(ps, 1.0, NULL, NULL), AD_OK);
        cr_assert_eq(nn_optim_step(opt, NULL), AD_OK);
    }
    cr_assert_eq(ts_total_allocs(), after_warm_up, "%ld allocations in steady state",
                 ts_total_allocs() - after_warm_up);
    ad_tape_free(t);
    nn_optim_free(opt);
    nn_params_free(ps);
}

Test(nn_optim, accessors_and_schedules_bad_inputs)
{
    cr_assert(isnan(nn_schedule_lr(NULL, 0)));
    nn_schedule s = {NN_SCHEDULE_STEP, 0.1, 0, 0.5, 0, 0, 0, 0};
    cr_assert_eq(nn_schedule_lr(&s, 5), 0.1, "step_size 0: constant");
    cr_assert_eq(nn_schedule_lr(&s, -3), 0.1);
    int count = 7;
    size_t n = 7;
    cr_assert_null(nn_optim_state(NULL, 0, &n, &count));
    cr_assert_eq(count, 0);
    cr_assert_eq(n, 0);
    cr_assert_null(nn_optim_config_of(NULL));
    cr_assert_eq(nn_optim_steps(NULL), 0);
    nn_optim_set_lr(NULL, 1.0);
    nn_optim_set_steps(NULL, 3);
    nn_params *ps = nn_params_new(AD_F64, NULL);
    nn_params_add(ps, "w", ad_shape1(2), NULL);
    nn_optim_config cfg = nn_optim_defaults(NN_OPTIM_RMSPROP);
    nn_optim *opt = nn_optim_new(ps, &cfg, NULL);
    cr_assert_null(nn_optim_state(opt, 3, &n, &count), "RMSprop has 3 buffers: 0..2");
    cr_assert_eq(count, 3);
    nn_optim_set_steps(opt, -1);
    cr_assert_eq(nn_optim_steps(opt), 0, "a negative step count is ignored");
    nn_optim_free(opt);
    nn_params_free(ps);
}

/* f32 parameters: each update is the f64 formula applied to the widened
 * values and rounded once, element for element (37 elements: vector loop and
 * tail). Reference: the per-element formulas of SGD with momentum, Adagrad
 * and Adam, written out here. */
Test(nn_optim, f32_updates_are_the_f64_formulas_rounded)
{
    enum { N = 37, STEPS = 3 };
    nn_optim_kind kinds[3] = {NN_OPTIM_SGD, NN_OPTIM_ADAGRAD, NN_OPTIM_ADAM};
    for (int k = 0; k < 3; k++) {
        nn_params *ps = nn_params_new(AD_F32, NULL);
        nn_params_add(ps, "w", ad_shape1(N), NULL);
        size_t n;
        float *p = nn_params_values(ps, &n), *g = nn_params_grads(ps, &n);
        double s0[N] = {0}, s1[N] = {0};
        float want[N];
        for (int i = 0; i < N; i++) p[i] = want[i] = (float)sin(i + 1.0);
        nn_optim_config c = nn_optim_defaults(kinds[k]);
        c.lr = 0.05, c.weight_decay = 0.01, c.momentum = kinds[k] == NN_OPTIM_SGD ? 0.9 : 0;
        nn_optim *opt = nn_optim_new(ps, &c, NULL);
        for (int t = 1; t <= STEPS; t++) {
            for (int i = 0; i < N; i++) g[i] = (float)(3 * cos(i * 0.7 + t));
            double bc1 = 1 - pow(c.beta1, t), bc2 = 1 - pow(c.beta2, t);
            for (int i = 0; i < N; i++) {
                double x = want[i], gi = (double)g[i] + c.weight_decay * x;
                if (kinds[k] == NN_OPTIM_SGD) {
                    s0[i] = t == 1 ? gi : c.momentum * s0[i] + gi;
                    x -= c.lr * s0[i];
                } else if (kinds[k] == NN_OPTIM_ADAGRAD) {
                    s0[i] += gi * gi;
                    x -= c.lr * (gi / (sqrt(s0[i]) + c.eps));
                } else {
                    s0[i] = c.beta1 * s0[i] + (1 - c.beta1) * gi;
                    s1[i] = c.beta2 * s1[i] + (1 - c.beta2) * gi * gi;
                    x -= c.lr / bc1 * (s0[i] / (sqrt(s1[i]) / sqrt(bc2) + c.eps));
                }
                want[i] = (float)x;
            }
            cr_assert_eq(nn_optim_step(opt, NULL), AD_OK);
            for (int i = 0; i < N; i++)
                cr_assert_eq(p[i], want[i], "kind %d step %d [%d]: %.9g, want %.9g", k, t, i, p[i], want[i]);
        }
        nn_optim_free(opt);
        nn_params_free(ps);
    }
}

/* f32 clipping by value equals clamping in double and rounding, also for a
 * bound float cannot hold; a NaN in the last (tail) element refuses and
 * leaves every gradient as it was. */
Test(nn_optim, f32_clip_value_and_refusals_in_the_tail)
{
    enum { N = 37 };
    nn_params *ps = nn_params_new(AD_F32, NULL);
    nn_params_add(ps, "w", ad_shape1(N), NULL);
    size_t n;
    float *g = nn_params_grads(ps, &n), before[N];
    const double clip = 0.1;
    for (int i = 0; i < N; i++) g[i] = before[i] = (float)(0.3 * sin(i * 1.3));
    g[5] = before[5] = 0.1f, g[6] = before[6] = -0.1f, g[7] = before[7] = -0.0f;
    cr_assert_eq(nn_clip_grad_value(ps, clip, NULL), AD_OK);
    for (int i = 0; i < N; i++) {
        float want = (float)fmin(fmax((double)before[i], -clip), clip);
        cr_assert_eq(g[i], want, "[%d]: %.9g, want %.9g", i, g[i], want);
        cr_assert_eq(signbit(g[i]), signbit(want));
        before[i] = g[i];
    }
    g[N - 1] = before[N - 1] = NAN;
    ad_error err;
    cr_assert_eq(nn_clip_grad_value(ps, clip, &err), AD_ERR_NONFINITE);
    for (int i = 0; i < N - 1; i++) cr_assert_eq(g[i], before[i], "refused: [%d] untouched", i);
    g[N - 1] = INFINITY;
    cr_assert_eq(nn_clip_grad_value(ps, clip, &err), AD_OK, "infinity is clamped");
    cr_assert_eq(g[N - 1], (float)clip);
    g[N - 1] = -INFINITY;
    nn_optim_config c = nn_optim_defaults(NN_OPTIM_ADAM);
    nn_optim *opt = nn_optim_new(ps, &c, NULL);
    float *p = nn_params_values(ps, &n);
    p[0] = 2;
    cr_assert_eq(nn_optim_step(opt, &err), AD_ERR_NONFINITE);
    cr_assert_eq(p[0], 2.0f);
    cr_assert_eq(nn_optim_steps(opt), 0);
    nn_optim_free(opt);
    nn_params_free(ps);
}

/* The update of a float parameter, written out as nn/optim.c computes it (in
 * double, rounded back once): Adagrad (no weight decay) and Adam. */
static float ref_adagrad(float p, float g, double *sum, double lr, int64_t t, double lr_decay, double eps)
{
    double clr = lr / (1 + (double)(t - 1) * lr_decay), gi = g;
    *sum += gi * gi;
    return (float)((double)p - clr * (gi / (sqrt(*sum) + eps)));
}

static float ref_adam(float p, float g, double *m, double *v, const nn_optim_config *c, int64_t t)
{
    double bc1 = 1 - pow(c->beta1, (double)t), bc2 = 1 - pow(c->beta2, (double)t), gi = g;
    *m = c->beta1 * *m + (1 - c->beta1) * gi;
    *v = c->beta2 * *v + (1 - c->beta2) * gi * gi;
    double denom = sqrt(*v) / sqrt(bc2) + c->eps;
    return (float)((double)p - c->lr / bc1 * (*m / denom));
}

/* Whatever instruction set the update runs on (a portable build picks one
 * copy of the loops per CPU: autodiff/clones.h), its bits are those of the
 * plain loop above, over a block long enough for every vector width and
 * its remainder, for 3 steps; value clipping too. */
Test(nn_optim, updates_have_the_plain_loops_bits)
{
    long before = ts_live_allocs();
    enum { N = 1003 };
    for (int kind = 0; kind < 2; kind++) {
        nn_params *ps = nn_params_new(AD_F32, NULL);
        nn_params_add(ps, "w", ad_shape1(N), NULL);
        size_t n;
        float *p = nn_params_values(ps, &n), *g = nn_params_grads(ps, &n);
        double r[N], sum[N] = {0}, mom[N] = {0}, var[N] = {0};
        float want[N];
        ts_fill_uniform(r, N, 91 + (uint64_t)kind, -1, 1);
        for (int i = 0; i < N; i++) p[i] = want[i] = (float)r[i];
        nn_optim_config cfg = nn_optim_defaults(kind ? NN_OPTIM_ADAM : NN_OPTIM_ADAGRAD);
        cfg.lr = 0.05;
        ad_error err;
        nn_optim *opt = nn_optim_new(ps, &cfg, &err);
        cr_assert_not_null(opt, "%s", err.msg);
        for (int64_t t = 1; t <= 3; t++) {
            for (int i = 0; i < N; i++) g[i] = (float)(8.0 * r[(i * 7 + t) % N]);
            cr_assert_eq(nn_clip_grad_value(ps, 5.0, &err), AD_OK, "%s", err.msg);
            for (int i = 0; i < N; i++) {
                float gi = (float)(8.0 * r[(i * 7 + t) % N]);
                gi = gi < -5.0f ? -5.0f : gi > 5.0f ? 5.0f : gi;
                cr_assert(g[i] == gi, "clip [%d]: %.9g, want %.9g", i, (double)g[i], (double)gi);
                want[i] = kind ? ref_adam(want[i], gi, &mom[i], &var[i], &cfg, t)
                               : ref_adagrad(want[i], gi, &sum[i], cfg.lr, t, cfg.lr_decay, cfg.eps);
            }
            cr_assert_eq(nn_optim_step(opt, &err), AD_OK, "%s", err.msg);
            cr_assert(!memcmp(p, want, sizeof want), "%s step %lld: the update differs from the plain loop",
                      kind ? "adam" : "adagrad", (long long)t);
        }
        nn_optim_free(opt);
        nn_params_free(ps);
    }
    cr_assert_eq(ts_live_allocs(), before);
}
