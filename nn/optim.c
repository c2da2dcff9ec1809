/*
 * optim.c - PyTorch's optimizer updates over a flat parameter block, the
 * learning-rate schedules and gradient clipping.
 *
 * Each update is written per element in the order PyTorch's single-tensor
 * implementation applies it (the files under torch/optim), so f64 trajectories agree
 * to rounding.
 */
#include "optim.h"

#include "internal.h"
#include "../autodiff/clones.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NN_OPTIM_MAX_STATE 3

struct nn_optim {
    nn_params *ps;
    nn_optim_config cfg;
    int64_t steps;
    double bc1, bc2; /* Adam's bias corrections 1 - beta^t of the current step */
    size_t numel;
    int n_state;
    double *state[NN_OPTIM_MAX_STATE]; /* meaning per kind, see state_count() */
};

nn_optim_config nn_optim_defaults(nn_optim_kind kind)
{
    nn_optim_config c;
    memset(&c, 0, sizeof c);
    c.kind = kind;
    c.lr = 1e-3;
    c.beta1 = 0.9;
    c.beta2 = 0.999;
    c.eps = 1e-8;
    c.alpha = 0.99;
    switch (kind) {
    case NN_OPTIM_ADAGRAD: c.lr = 1e-2, c.eps = 1e-10; break;
    case NN_OPTIM_RMSPROP: c.lr = 1e-2; break;
    case NN_OPTIM_ADAMW: c.weight_decay = 1e-2; break;
    default: break;
    }
    return c;
}

/*
 * State buffers: SGD [momentum buffer]; Adagrad [sum of squares]; RMSprop
 * [square average, momentum buffer, gradient average]; Adam/AdamW [first
 * moment, second moment].
 */
static int state_count(nn_optim_kind k)
{
    switch (k) {
    case NN_OPTIM_SGD: return 1;
    case NN_OPTIM_ADAGRAD: return 1;
    case NN_OPTIM_RMSPROP: return 3;
    default: return 2;
    }
}

static const char *check_config(const nn_optim_config *c)
{
    if (c->kind < NN_OPTIM_SGD || c->kind > NN_OPTIM_ADAMW) return "unknown optimizer kind";
    if (!(c->lr >= 0)) return "lr must be >= 0";
    if (!(c->weight_decay >= 0)) return "weight_decay must be >= 0";
    if (!(c->momentum >= 0)) return "momentum must be >= 0";
    if (!(c->eps >= 0)) return "eps must be >= 0";
    if (c->kind == NN_OPTIM_SGD && c->nesterov && (c->momentum <= 0 || c->dampening != 0))
        return "Nesterov momentum needs momentum > 0 and dampening 0";
    if ((c->kind == NN_OPTIM_ADAM || c->kind == NN_OPTIM_ADAMW) &&
        !(c->beta1 >= 0 && c->beta1 < 1 && c->beta2 >= 0 && c->beta2 < 1))
        return "betas must lie in [0, 1)";
    if (c->kind == NN_OPTIM_RMSPROP && !(c->alpha >= 0)) return "alpha must be >= 0";
    if (c->kind == NN_OPTIM_ADAGRAD && !(c->lr_decay >= 0 && c->initial_accumulator_value >= 0))
        return "lr_decay and initial_accumulator_value must be >= 0";
    return NULL;
}

nn_optim *nn_optim_new(nn_params *ps, const nn_optim_config *cfg, ad_error *err)
{
    if (!ps || !cfg) {
        ad_error_set(err, AD_ERR_NULL, "optim_new: parameter set or config is NULL");
        return NULL;
    }
    const char *bad = check_config(cfg);
    if (bad) {
        char msg[128];
        snprintf(msg, sizeof msg, "optim_new: %s", bad);
        ad_error_set(err, AD_ERR_ARG, "%s", msg);
        return NULL;
    }
    nn_optim *o = calloc(1, sizeof *o);
    if (!o) {
        ad_error_set(err, AD_ERR_NOMEM, "optim_new: out of memory");
        return NULL;
    }
    o->ps = ps;
    o->cfg = *cfg;
    nn_params_values(ps, &o->numel);
    o->n_state = state_count(cfg->kind);
    for (int i = 0; i < o->n_state; i++) {
        o->state[i] = calloc(o->numel ? o->numel : 1, sizeof(double));
        if (!o->state[i]) {
            nn_optim_free(o);
            ad_error_set(err, AD_ERR_NOMEM, "optim_new: out of memory");
            return NULL;
        }
    }
    if (cfg->kind == NN_OPTIM_ADAGRAD)
        for (size_t i = 0; i < o->numel; i++) o->state[0][i] = cfg->initial_accumulator_value;
    ad_error_set(err, AD_OK, NULL);
    return o;
}

void nn_optim_free(nn_optim *o)
{
    if (!o) return;
    for (int i = 0; i < NN_OPTIM_MAX_STATE; i++) free(o->state[i]);
    free(o);
}

void nn_optim_set_lr(nn_optim *o, double lr)
{
    if (o) o->cfg.lr = lr;
}

const nn_optim_config *nn_optim_config_of(const nn_optim *o) { return o ? &o->cfg : NULL; }

int64_t nn_optim_steps(const nn_optim *o) { return o ? o->steps : 0; }

nn_params *nn_optim_params(const nn_optim *o) { return o ? o->ps : NULL; }

void nn_optim_set_steps(nn_optim *o, int64_t steps)
{
    if (o && steps >= 0) o->steps = steps;
}

double *nn_optim_state(nn_optim *o, int index, size_t *numel, int *count)
{
    if (count) *count = o ? o->n_state : 0;
    if (numel) *numel = o ? o->numel : 0;
    return o && index >= 0 && index < o->n_state ? o->state[index] : NULL;
}

/* ---- the updates (step t counts from 1) --------------------------------------------------- */

/*
 * Each optimizer is one loop per dtype over the flat block: the kind and the
 * dtype are chosen once per call, and the options (weight decay, momentum,
 * ...) are loop-invariant tests the compiler hoists, so the loops vectorise.
 * Arithmetic is in double whatever the dtype, as before: a float parameter
 * is widened, updated and rounded back once.
 */
#define DEFINE_UPDATES(T)                                                                    \
    static void sgd_##T(nn_optim *o, T *restrict p, const T *restrict g, size_t n, int64_t t, size_t off)      \
    {                                                                                        \
        const nn_optim_config *c = &o->cfg;                                                  \
        const double lr = c->lr, wd = c->weight_decay, mom = c->momentum;                    \
        const double keep = 1 - c->dampening;                                                \
        const int nesterov = c->nesterov, first = t == 1;                                    \
        double *restrict buf = o->state[0] + off;                                            \
        for (size_t i = 0; i < n; i++) {                                                     \
            double pi = p[i], gi = g[i];                                                     \
            if (wd != 0) gi += wd * pi;                                                      \
            if (mom != 0) {                                                                  \
                buf[i] = first ? gi : mom * buf[i] + keep * gi;                              \
                gi = nesterov ? gi + mom * buf[i] : buf[i];                                  \
            }                                                                                \
            p[i] = (T)(pi - lr * gi);                                                        \
        }                                                                                    \
    }                                                                                        \
    static void adagrad_##T(nn_optim *o, T *restrict p, const T *restrict g, size_t n, int64_t t, size_t off)  \
    {                                                                                        \
        const nn_optim_config *c = &o->cfg;                                                  \
        const double wd = c->weight_decay, eps = c->eps;                                     \
        const double clr = c->lr / (1 + (double)(t - 1) * c->lr_decay);                      \
        double *restrict sum = o->state[0] + off;                                            \
        for (size_t i = 0; i < n; i++) {                                                     \
            double pi = p[i], gi = g[i];                                                     \
            if (wd != 0) gi += wd * pi;                                                      \
            sum[i] += gi * gi;                                                               \
            p[i] = (T)(pi - clr * (gi / (sqrt(sum[i]) + eps)));                              \
        }                                                                                    \
    }                                                                                        \
    static void rmsprop_##T(nn_optim *o, T *restrict p, const T *restrict g, size_t n, size_t off)             \
    {                                                                                        \
        const nn_optim_config *c = &o->cfg;                                                  \
        const double lr = c->lr, wd = c->weight_decay, mom = c->momentum;                    \
        const double alpha = c->alpha, eps = c->eps;                                         \
        const int centered = c->centered;                                                    \
        double *restrict sq = o->state[0] + off, *restrict buf = o->state[1] + off;          \
        double *restrict ga = o->state[2] + off;                                             \
        for (size_t i = 0; i < n; i++) {                                                     \
            double pi = p[i], gi = g[i], avg;                                                \
            if (wd != 0) gi += wd * pi;                                                      \
            sq[i] = alpha * sq[i] + (1 - alpha) * gi * gi;                                   \
            if (centered) {                                                                  \
                ga[i] = alpha * ga[i] + (1 - alpha) * gi;                                    \
                avg = sqrt(sq[i] - ga[i] * ga[i]) + eps;                                     \
            } else {                                                                         \
                avg = sqrt(sq[i]) + eps;                                                     \
            }                                                                                \
            if (mom > 0) {                                                                   \
                buf[i] = mom * buf[i] + gi / avg;                                            \
                p[i] = (T)(pi - lr * buf[i]);                                                \
            } else {                                                                         \
                p[i] = (T)(pi - lr * (gi / avg));                                            \
            }                                                                                \
        }                                                                                    \
    }                                                                                        \
    static void adam_##T(nn_optim *o, T *restrict p, const T *restrict g, size_t n, size_t off)                \
    {                                                                                        \
        const nn_optim_config *c = &o->cfg;                                                  \
        const double wd = c->weight_decay, b1 = c->beta1, b2 = c->beta2, eps = c->eps;       \
        const double decay = 1 - c->lr * wd, step_size = c->lr / o->bc1;                     \
        const double sqrt_bc2 = sqrt(o->bc2);                                                \
        const int decoupled = c->kind == NN_OPTIM_ADAMW;                                     \
        double *restrict m = o->state[0] + off, *restrict v = o->state[1] + off;             \
        for (size_t i = 0; i < n; i++) {                                                     \
            double pi = p[i], gi = g[i];                                                     \
            if (decoupled) pi *= decay;                                                      \
            else if (wd != 0) gi += wd * pi;                                                 \
            m[i] = b1 * m[i] + (1 - b1) * gi;                                                \
            v[i] = b2 * v[i] + (1 - b2) * gi * gi;                                           \
            double denom = sqrt(v[i]) / sqrt_bc2 + eps;                                      \
            p[i] = (T)(pi - step_size * (m[i] / denom));                                     \
        }                                                                                    \
    }                                                                                        \
    AD__CLONES static void update_##T(nn_optim *o, T *restrict p, const T *restrict g, size_t n, int64_t t, size_t off)   \
    {                                                                                        \
        switch (o->cfg.kind) {                                                               \
        case NN_OPTIM_SGD: sgd_##T(o, p, g, n, t, off); break;                               \
        case NN_OPTIM_ADAGRAD: adagrad_##T(o, p, g, n, t, off); break;                       \
        case NN_OPTIM_RMSPROP: rmsprop_##T(o, p, g, n, off); break;                          \
        default: adam_##T(o, p, g, n, off); break;                                           \
        }                                                                                    \
    }                                                                                        \
    /* 1 when no element is NaN or infinite: a branch-free pass that vectorises. */          \
    AD__CLONES static int all_finite_##T(const T *g, size_t n)                                          \
    {                                                                                        \
        int bad = 0;                                                                         \
        for (size_t i = 0; i < n; i++) bad |= !isfinite(g[i]);                               \
        return !bad;                                                                         \
    }                                                                                        \
    AD__CLONES static int any_nan_##T(const T *g, size_t n)                                             \
    {                                                                                        \
        int bad = 0;                                                                         \
        for (size_t i = 0; i < n; i++) bad |= isnan(g[i]);                                   \
        return bad;                                                                          \
    }

DEFINE_UPDATES(float)
DEFINE_UPDATES(double)

/* One flat loop of a step, over the elements [lo, hi) of part `part`:
 * first the finite check (a flag per part), then the update. */
typedef struct step_job {
    nn_optim *o;
    void *v;
    const void *g;
    int64_t t;
    int f32, check;
    unsigned char bad[NN__FLAT_MAX_PARTS];
} step_job;

static void step_range(void *ctx, size_t lo, size_t hi, int part)
{
    step_job *j = ctx;
    /* The blocks are float or double storage of the set's dtype. */
    float *vf = j->v;
    double *vd = j->v;
    const float *gf = j->g;
    const double *gd = j->g;
    if (j->check) j->bad[part] = !(j->f32 ? all_finite_float(gf + lo, hi - lo) : all_finite_double(gd + lo, hi - lo));
    else if (j->f32) update_float(j->o, vf + lo, gf + lo, hi - lo, j->t, lo);
    else update_double(j->o, vd + lo, gd + lo, hi - lo, j->t, lo);
}

ad_status nn_optim_step(nn_optim *o, ad_error *err)
{
    if (!o) return ad_error_set(err, AD_ERR_NULL, "optim_step: optimizer is NULL");
    size_t n;
    void *v = nn_params_values(o->ps, &n);
    const void *g = nn_params_grads(o->ps, &n);
    if (n != o->numel)
        return ad_error_set(err, AD_ERR_STATE, "optim_step: parameters were added after the optimizer was made");
    /* Every element's update reads only its own value, gradient and state:
     * split over the threads (autodiff/split.c), the bits are those of one loop. */
    int parts = nn__flat_parts(n);
    step_job j = {.o = o, .v = v, .g = g, .f32 = nn_params_dtype(o->ps) == AD_F32, .check = 1};
    nn__flat_run(n, parts, step_range, &j);
    for (int i = 0; i < parts; i++)
        if (j.bad[i])
            return ad_error_set(err, AD_ERR_NONFINITE, "optim_step: a gradient is NaN or infinite; "
                                "update refused, parameters and state unchanged");
    j.t = ++o->steps;
    if (o->cfg.kind == NN_OPTIM_ADAM || o->cfg.kind == NN_OPTIM_ADAMW) {
        o->bc1 = 1 - pow(o->cfg.beta1, (double)j.t); /* once per step, not per element */
        o->bc2 = 1 - pow(o->cfg.beta2, (double)j.t);
    }
    j.check = 0;
    nn__flat_run(n, parts, step_range, &j);
    return ad_error_set(err, AD_OK, NULL);
}

/* ---- schedules ---------------------------------------------------------------------------- */

double nn_schedule_lr(const nn_schedule *s, int64_t t)
{
    if (!s) return NAN;
    if (t < 0) t = 0;
    switch (s->kind) {
    case NN_SCHEDULE_STEP:
        return s->step_size > 0 ? s->base_lr * pow(s->gamma, (double)(t / s->step_size)) : s->base_lr;
    case NN_SCHEDULE_COSINE: {
        if (s->t_max <= 0) return s->base_lr;
        const double pi = 3.14159265358979323846;
        return s->eta_min + (s->base_lr - s->eta_min) * (1 + cos(pi * (double)t / (double)s->t_max)) / 2;
    }
    case NN_SCHEDULE_WARMUP: {
        if (s->warmup <= 0) return s->base_lr;
        double done = (double)(t < s->warmup ? t : s->warmup) / (double)s->warmup;
        return s->base_lr * (s->start_factor + (1 - s->start_factor) * done);
    }
    default: return s->base_lr;
    }
}

/* ---- clipping ---------------------------------------------------------------------------- */

/* The sum of squares in index order (a fixed order, so the norm does not
 * depend on how the loop is compiled). */
static double sum_squares_float(const float *g, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)g[i] * (double)g[i];
    return s;
}

static double sum_squares_double(const double *g, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++) s += g[i] * g[i];
    return s;
}

ad_status nn_clip_grad_norm(nn_params *ps, double max_norm, double *norm, ad_error *err)
{
    if (!ps) return ad_error_set(err, AD_ERR_NULL, "clip_grad_norm: parameter set is NULL");
    if (!(max_norm > 0)) return ad_error_set(err, AD_ERR_ARG, "clip_grad_norm: max_norm must be > 0");
    size_t n;
    void *g = nn_params_grads(ps, &n);
    int f32 = nn_params_dtype(ps) == AD_F32;
    double total = sqrt(f32 ? sum_squares_float(g, n) : sum_squares_double(g, n));
    if (norm) *norm = total;
    if (!isfinite(total))
        return ad_error_set(err, AD_ERR_NONFINITE, "clip_grad_norm: the gradient norm is not finite; "
                       "gradients left unchanged");
    if (total > max_norm) {
        double scale = max_norm / total;
        if (f32) {
            float *gf = g;
            for (size_t i = 0; i < n; i++) gf[i] = (float)(gf[i] * scale);
        } else {
            double *gd = g;
            for (size_t i = 0; i < n; i++) gd[i] *= scale;
        }
    }
    return ad_error_set(err, AD_OK, NULL);
}

/*
 * Without NaNs, fmin(fmax(x, -clip), clip) is these two comparisons. For
 * float gradients they run in float against clip rounded to float: no float
 * lies strictly between clip and its rounding, so the result is the same as
 * clamping in double and rounding.
 */
/* Each element into [-hi, hi]. */
#define DEFINE_CLAMP(T)                                                  \
    AD__CLONES static void clamp_##T(T *g, size_t n, T hi)               \
    {                                                                    \
        for (size_t i = 0; i < n; i++) {                                 \
            T x = g[i] < -hi ? -hi : g[i];                               \
            g[i] = x > hi ? hi : x;                                      \
        }                                                                \
    }
DEFINE_CLAMP(float)
DEFINE_CLAMP(double)

ad_status nn_clip_grad_value(nn_params *ps, double clip, ad_error *err)
{
    if (!ps) return ad_error_set(err, AD_ERR_NULL, "clip_grad_value: parameter set is NULL");
    if (!(clip > 0)) return ad_error_set(err, AD_ERR_ARG, "clip_grad_value: clip must be > 0");
    size_t n;
    void *g = nn_params_grads(ps, &n);
    int f32 = nn_params_dtype(ps) == AD_F32;
    /* Check first, so that a refusal leaves every gradient as it was. */
    if (f32 ? any_nan_float(g, n) : any_nan_double(g, n))
        return ad_error_set(err, AD_ERR_NONFINITE, "clip_grad_value: a gradient is NaN; gradients left unchanged");
    if (f32) clamp_float(g, n, (float)clip);
    else clamp_double(g, n, clip);
    return ad_error_set(err, AD_OK, NULL);
}
