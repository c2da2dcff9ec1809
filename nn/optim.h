/**
 * @file
 * optim.h - optimizers, learning-rate schedules and gradient clipping.
 *
 * The optimizers implement PyTorch's update formulas and defaults (SGD with
 * momentum, dampening, Nesterov and weight decay; Adagrad; RMSprop, centered
 * or not, with momentum; Adam; AdamW) as one flat loop over a parameter
 * set's value and gradient blocks. Their state (moment buffers, step count)
 * lives in flat arrays that checkpoints save.
 *
 *     nn_optim_config cfg = nn_optim_defaults(NN_OPTIM_ADAM);
 *     cfg.lr = 3e-3;
 *     nn_optim *opt = nn_optim_new(ps, &cfg, &err);
 *     for (...) {
 *         nn_params_zero_grad(ps);
 *         ... forward, ad_backward ...
 *         double norm;
 *         if (nn_clip_grad_norm(ps, 5.0, &norm, &err) != AD_OK) continue;  // non-finite: skip
 *         nn_optim_step(opt, &err);
 *     }
 *     nn_optim_free(opt);
 */
#ifndef UNROLL_NN_OPTIM_H
#define UNROLL_NN_OPTIM_H

#include <stddef.h>
#include <stdint.h>

#include "params.h"

#ifdef __cplusplus
extern "C" {
#endif

/** The optimizers. */
typedef enum nn_optim_kind {
    /** SGD with optional momentum, dampening, Nesterov and weight decay. */
    NN_OPTIM_SGD = 0,
    /** Adagrad. */
    NN_OPTIM_ADAGRAD,
    /** RMSprop, centered or not, with optional momentum. */
    NN_OPTIM_RMSPROP,
    /** Adam. */
    NN_OPTIM_ADAM,
    /** AdamW: Adam with decoupled weight decay. */
    NN_OPTIM_ADAMW
} nn_optim_kind;

/** Hyper-parameters; nn_optim_defaults() gives PyTorch's defaults for a kind. */
typedef struct nn_optim_config {
    /** Which optimizer. */
    nn_optim_kind kind;
    /** The learning rate. */
    double lr;
    double weight_decay; /**< L2 added to the gradient; AdamW: decoupled decay */
    double momentum;     /**< SGD, RMSprop */
    double dampening;    /**< SGD */
    int nesterov;        /**< SGD (needs momentum > 0 and dampening 0) */
    /**@{*/
    double beta1, beta2; /**< Adam, AdamW */
    /**@}*/
    double eps;          /**< Adam/AdamW 1e-8, RMSprop 1e-8, Adagrad 1e-10 */
    double alpha;        /**< RMSprop smoothing constant (0.99) */
    int centered;        /**< RMSprop */
    double lr_decay;     /**< Adagrad */
    double initial_accumulator_value; /**< Adagrad */
} nn_optim_config;

/**
 * PyTorch's defaults: SGD lr 1e-3 (PyTorch requires one; pick yours);
 * Adagrad lr 1e-2, eps 1e-10; RMSprop lr 1e-2, alpha 0.99, eps 1e-8; Adam lr
 * 1e-3, betas (0.9, 0.999), eps 1e-8; AdamW the same with weight_decay 1e-2.
 */
NN_API nn_optim_config nn_optim_defaults(nn_optim_kind kind);

/** An optimizer bound to one parameter set. */
typedef struct nn_optim nn_optim;

/**
 * A new optimizer for `ps` (whose parameters must all be registered). Errors:
 * AD_ERR_NULL, AD_ERR_ARG (a negative or otherwise invalid hyper-parameter,
 * Nesterov without momentum or with dampening), AD_ERR_NOMEM.
 */
NN_API nn_optim *nn_optim_new(nn_params *ps, const nn_optim_config *cfg, ad_error *err);

/** Frees the optimizer (not the parameters); NULL is ignored. */
NN_API void nn_optim_free(nn_optim *opt);

/**
 * One update from the gradients in the set. A non-finite gradient refuses
 * the update with AD_ERR_NONFINITE, leaving parameters and state untouched.
 * With ad_set_num_threads(n > 1) a large set is updated in n ranges on n
 * threads; every element's arithmetic is the same, so are the results.
 */
NN_API ad_status nn_optim_step(nn_optim *opt, ad_error *err);

/** Sets the learning rate used by the next steps (schedules call this). */
NN_API void nn_optim_set_lr(nn_optim *opt, double lr);

/** The current configuration. */
NN_API const nn_optim_config *nn_optim_config_of(const nn_optim *opt);

/** Number of updates applied so far. */
NN_API int64_t nn_optim_steps(const nn_optim *opt);

/** The parameter set the optimizer updates (the one given to nn_optim_new()), or NULL for NULL. */
NN_API nn_params *nn_optim_params(const nn_optim *opt);

/**
 * The optimizer's state as `count` flat f64 buffers of `numel` elements each
 * (for Adam, the first and second moments), for checkpoints. *count may be 0.
 */
NN_API double *nn_optim_state(nn_optim *opt, int index, size_t *numel, int *count);

/** Restores the step counter (with the buffers from nn_optim_state()). */
NN_API void nn_optim_set_steps(nn_optim *opt, int64_t steps);

/* ---- learning-rate schedules -------------------------------------------------------- */

/** Kinds of schedules (PyTorch's StepLR, CosineAnnealingLR, LinearLR). */
typedef enum nn_schedule_kind {
    /** lr = base */
    NN_SCHEDULE_CONSTANT = 0,
    NN_SCHEDULE_STEP,   /**< lr = base * gamma^floor(t / step_size) */
    NN_SCHEDULE_COSINE, /**< lr = eta_min + (base - eta_min)(1 + cos(pi t / t_max)) / 2 */
    NN_SCHEDULE_WARMUP  /**< linear warm-up: base * (start + (1 - start) min(t, warmup) / warmup) */
} nn_schedule_kind;

/** A schedule as plain data. */
typedef struct nn_schedule {
    /** Which schedule. */
    nn_schedule_kind kind;
    /** The learning rate the schedule starts from (base above). */
    double base_lr;
    int64_t step_size; /**< STEP */
    double gamma;      /**< STEP */
    int64_t t_max;     /**< COSINE */
    double eta_min;    /**< COSINE */
    int64_t warmup;    /**< WARMUP: steps to reach base_lr */
    double start_factor; /**< WARMUP: factor at t = 0 (PyTorch's default 1/3) */
} nn_schedule;

/** The learning rate at step t (t = 0 before the first update). */
NN_API double nn_schedule_lr(const nn_schedule *s, int64_t t);

/* ---- clipping ---------------------------------------------------------------------------- */

/**
 * Clips by global norm: with n = ||all gradients||_2 > max_norm, scales every
 * gradient by max_norm / n (so the new norm is max_norm). Writes n (before
 * clipping) to *norm (may be NULL). A non-finite n is AD_ERR_NONFINITE and
 * leaves the gradients untouched. Errors also: AD_ERR_NULL, AD_ERR_ARG
 * (max_norm <= 0).
 */
NN_API ad_status nn_clip_grad_norm(nn_params *ps, double max_norm, double *norm, ad_error *err);

/** Clamps every gradient element to [-clip, clip] (clip > 0). NaN gradients are AD_ERR_NONFINITE. */
NN_API ad_status nn_clip_grad_value(nn_params *ps, double clip, ad_error *err);

#ifdef __cplusplus
}
#endif
#endif
