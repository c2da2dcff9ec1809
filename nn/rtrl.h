/**
 * @file
 * rtrl.h - real-time recurrent learning: gradients online, step by step.
 *
 * RTRL (Williams & Zipser 1989) carries the influence matrices dh_t/dθ (and
 * dc_t/dθ for an LSTM) forward with the state, so that every step gives the
 * gradient of that step's loss with respect to all the cell's parameters,
 * without keeping the sequence. Each step records the cell on a scratch tape
 * and runs forward mode (ad_jvp) with one direction per parameter element,
 * so it works for any cell, built-in or custom, whose ops have forward-mode
 * rules. Memory does not grow with the sequence: O(H P) for the influence
 * (plus O(P^2) for the unit seeds) with P parameter elements; time is
 * O(H^2 P) per step. It beats BPTT on streams that never end and on tiny nets.
 *
 *     nn_rtrl *r = nn_rtrl_new(&cell, B, &err);
 *     for (;;) {                                   // x_t arrives
 *         nn_rtrl_step(r, x_t, loss_fn, ctx, &loss, &err); // adds dL_t/dθ to the grads
 *         nn_optim_step(opt);  nn_params_zero_grad(ps);
 *     }
 *     nn_rtrl_free(r);
 */
#ifndef UNROLL_NN_RTRL_H
#define UNROLL_NN_RTRL_H

#include "../autodiff/autodiff.h"
#include "cell.h"

#ifdef __cplusplus
extern "C" {
#endif

/** An RTRL learner: a cell, its influence matrices and the current state (opaque). */
typedef struct nn_rtrl nn_rtrl;

/** Records a step's loss L_t (a scalar) on t from the new state h (and c). */
typedef ad_tensor *(*nn_rtrl_loss_fn)(ad_tape *t, const nn_state *state, void *ctx);

/**
 * Online gradients for `cell` (kept by pointer: it must outlive the handle)
 * at batch size `batch`, from a zero initial state and zero influence.
 * Returns NULL on error (err set): AD_ERR_NULL, AD_ERR_ARG (batch < 1, a cell
 * without parameters), AD_ERR_NOMEM. Free with nn_rtrl_free().
 */
NN_API nn_rtrl *nn_rtrl_new(const nn_cell *cell, int64_t batch, ad_error *err);

/** Frees the handle and its scratch tape; NULL is ignored. */
NN_API void nn_rtrl_free(nn_rtrl *r);

/**
 * One step: h_t = cell(x_t, h_{t-1}) from `x` ([B, I] values in the cell's
 * dtype, copied), then L_t = loss(state_t); adds dL_t/dθ (through the whole
 * past, via the influence matrices) into the parameters' gradients and writes
 * L_t to *loss_out (may be NULL). The influence and state move on to step t.
 * Errors: AD_ERR_NULL, AD_ERR_NOT_SCALAR (the loss), and the tape's errors
 * of the step (message copied to err); after an error the state is unchanged.
 */
NN_API ad_status nn_rtrl_step(nn_rtrl *r, const void *x, nn_rtrl_loss_fn loss, void *ctx, double *loss_out,
                              ad_error *err);

/** Bytes the handle holds (influence, seeds, state and its tape's arena): constant over a stream. */
NN_API size_t nn_rtrl_bytes(const nn_rtrl *r);

#ifdef __cplusplus
}
#endif
#endif
