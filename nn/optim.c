/*
 * optim.c - PyTorch's optimizer updates over a flat parameter block, the
 * learning-rate schedules and gradient clipping.
 *
 * Each update is written per element in the order PyTorch's single-tensor
 * implementation applies it (the files under torch/optim), so f64 trajectories agree
 * to rounding.
 */
#include "optim.h"

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

static double sgd(nn_optim *o, size_t i, double p, double g, int64_t t)
{
    const nn_optim_config *c = &o->cfg;
    if (c->weight_decay != 0) g += c->weight_decay * p;
    if (c->momentum != 0) {
        double *buf = &o->state[0][i];
        *buf = t == 1 ? g : c->momentum * *buf + (1 - c->dampening) * g;
        g = c->nesterov ? g + c->momentum * *buf : *buf;
    }
    return p - c->lr * g;
}

static double adagrad(nn_optim *o, size_t i, double p, double g, int64_t t)
{
    const nn_optim_config *c = &o->cfg;
    if (c->weight_decay != 0) g += c->weight_decay * p;
    double clr = c->lr / (1 + (double)(t - 1) * c->lr_decay);
    double *sum = &o->state[0][i];
    *sum += g * g;
    return p - clr * (g / (sqrt(*sum) + c->eps));
}

static double rmsprop(nn_optim *o, size_t i, double p, double g, int64_t t)
{
    (void)t;
    const nn_optim_config *c = &o->cfg;
    if (c->weight_decay != 0) g += c->weight_decay * p;
    double *sq = &o->state[0][i], *buf = &o->state[1][i], *ga = &o->state[2][i];
    *sq = c->alpha * *sq + (1 - c->alpha) * g * g;
    double avg;
    if (c->centered) {
        *ga = c->alpha * *ga + (1 - c->alpha) * g;
        avg = sqrt(*sq - *ga * *ga) + c->eps;
    } else {
        avg = sqrt(*sq) + c->eps;
    }
    if (c->momentum > 0) {
        *buf = c->momentum * *buf + g / avg;
        return p - c->lr * *buf;
    }
    return p - c->lr * (g / avg);
}

static double adam(nn_optim *o, size_t i, double p, double g, int64_t t)
{
    const nn_optim_config *c = &o->cfg;
    if (c->kind == NN_OPTIM_ADAMW) p *= 1 - c->lr * c->weight_decay;
    else if (c->weight_decay != 0) g += c->weight_decay * p;
    double *m = &o->state[0][i], *v = &o->state[1][i];
    *m = c->beta1 * *m + (1 - c->beta1) * g;
    *v = c->beta2 * *v + (1 - c->beta2) * g * g;
    (void)t;
    double step_size = c->lr / o->bc1;
    double denom = sqrt(*v) / sqrt(o->bc2) + c->eps;
    return p - step_size * (*m / denom);
}

static double update(nn_optim *o, size_t i, double p, double g, int64_t t)
{
    switch (o->cfg.kind) {
    case NN_OPTIM_SGD: return sgd(o, i, p, g, t);
    case NN_OPTIM_ADAGRAD: return adagrad(o, i, p, g, t);
    case NN_OPTIM_RMSPROP: return rmsprop(o, i, p, g, t);
    default: return adam(o, i, p, g, t);
    }
}

/* Gradient element i as double. */
static double grad_at(const void *g, ad_dtype d, size_t i)
{
    return d == AD_F32 ? (double)((const float *)g)[i] : ((const double *)g)[i];
}

ad_status nn_optim_step(nn_optim *o, ad_error *err)
{
    if (!o) return ad_error_set(err, AD_ERR_NULL, "optim_step: optimizer is NULL");
    size_t n;
    void *v = nn_params_values(o->ps, &n);
    const void *g = nn_params_grads(o->ps, &n);
    if (n != o->numel)
        return ad_error_set(err, AD_ERR_STATE, "optim_step: parameters were added after the optimizer was made");
    ad_dtype d = nn_params_dtype(o->ps);
    for (size_t i = 0; i < n; i++)
        if (!isfinite(grad_at(g, d, i)))
            return ad_error_set(err, AD_ERR_NONFINITE, "optim_step: a gradient is NaN or infinite; "
                           "update refused, parameters and state unchanged");
    int64_t t = ++o->steps;
    o->bc1 = 1 - pow(o->cfg.beta1, (double)t); /* once per step, not per element */
    o->bc2 = 1 - pow(o->cfg.beta2, (double)t);
    for (size_t i = 0; i < n; i++) {
        if (d == AD_F32) {
            float *p = v;
            p[i] = (float)update(o, i, p[i], grad_at(g, d, i), t);
        } else {
            double *p = v;
            p[i] = update(o, i, p[i], grad_at(g, d, i), t);
        }
    }
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

ad_status nn_clip_grad_norm(nn_params *ps, double max_norm, double *norm, ad_error *err)
{
    if (!ps) return ad_error_set(err, AD_ERR_NULL, "clip_grad_norm: parameter set is NULL");
    if (!(max_norm > 0)) return ad_error_set(err, AD_ERR_ARG, "clip_grad_norm: max_norm must be > 0");
    size_t n;
    void *g = nn_params_grads(ps, &n);
    ad_dtype d = nn_params_dtype(ps);
    double s = 0;
    for (size_t i = 0; i < n; i++) s += grad_at(g, d, i) * grad_at(g, d, i);
    double total = sqrt(s);
    if (norm) *norm = total;
    if (!isfinite(total))
        return ad_error_set(err, AD_ERR_NONFINITE, "clip_grad_norm: the gradient norm is not finite; "
                       "gradients left unchanged");
    if (total > max_norm) {
        double scale = max_norm / total;
        for (size_t i = 0; i < n; i++) {
            if (d == AD_F32) ((float *)g)[i] = (float)(((float *)g)[i] * scale);
            else ((double *)g)[i] *= scale;
        }
    }
    return ad_error_set(err, AD_OK, NULL);
}

ad_status nn_clip_grad_value(nn_params *ps, double clip, ad_error *err)
{
    if (!ps) return ad_error_set(err, AD_ERR_NULL, "clip_grad_value: parameter set is NULL");
    if (!(clip > 0)) return ad_error_set(err, AD_ERR_ARG, "clip_grad_value: clip must be > 0");
    size_t n;
    void *g = nn_params_grads(ps, &n);
    ad_dtype d = nn_params_dtype(ps);
    for (size_t i = 0; i < n; i++)
        if (isnan(grad_at(g, d, i)))
            return ad_error_set(err, AD_ERR_NONFINITE, "clip_grad_value: a gradient is NaN; gradients left unchanged");
    for (size_t i = 0; i < n; i++) {
        double v = fmin(fmax(grad_at(g, d, i), -clip), clip);
        if (d == AD_F32) ((float *)g)[i] = (float)v;
        else ((double *)g)[i] = v;
    }
    return ad_error_set(err, AD_OK, NULL);
}
