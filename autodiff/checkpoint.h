/**
 * @file
 * checkpoint.h - recomputation of a region of a computation (ad_checkpoint).
 *
 * A region recorded with ad_checkpoint() keeps only its inputs and outputs on
 * the tape; backward re-runs it on a scratch tape and propagates the outputs'
 * gradients through that recomputation. Memory is traded for one more
 * forward of the region. See docs/guide.md, "Checkpointed regions".
 */
#ifndef UNROLL_AD_CHECKPOINT_H
#define UNROLL_AD_CHECKPOINT_H

#include "export.h"
#include "rng.h"
#include "status.h"
#include "tape.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/** A region of a computation recorded under ad_checkpoint(). It reads inputs[0..n_in),
 *  records any ops on tape t (built-in or custom ops, temporal copies of parameters via
 *  ad_use(t, p), cells, nested ad_checkpoint calls) and stores n_out results in
 *  outputs[]. It must be deterministic given its inputs and ctx (ad_checkpoint saves and
 *  restores any RNG state it is told about: see ad_checkpoint_options::rng). Returns AD_OK
 *  or an error. */
typedef ad_status (*ad_checkpoint_fn)(ad_tape *t, void *ctx, ad_tensor *const *inputs, int n_in,
                                      ad_tensor **outputs, int n_out);

/** Options of ad_checkpoint() (NULL = defaults). */
typedef struct ad_checkpoint_options {
    ad_rng *rng;       /**< an RNG the region draws from (dropout): its state is saved before
                            the first run and restored for the recomputation; NULL: none */
    const char *label; /**< label for the region's nodes (anomaly mode, errors); NULL: caller's */
} ad_checkpoint_options;

/** Runs fn on tape t without keeping its intermediates: only inputs and outputs stay on t
 *  (outputs are new tensors on t, valid until ad_tape_reset). During backward, fn is re-run
 *  on a scratch tape (bit-identical forward), and the outputs' gradients are propagated
 *  through it into the inputs' gradients and the parameters' gradients. ctx must stay
 *  valid until backward has run. With gradients disabled (ad_tape_set_grad_enabled) fn
 *  simply runs on t. Errors (sticky tape errors): AD_ERR_NULL, AD_ERR_EMPTY (n_in < 1 or
 *  n_out < 1), AD_ERR_DTYPE (an output of another dtype than input 0), the region's own
 *  error (with its step label), AD_ERR_NOMEM. */
AD_API ad_status ad_checkpoint(ad_tape *t, ad_checkpoint_fn fn, void *ctx, ad_tensor *const *inputs,
                               int n_in, ad_tensor **outputs, int n_out,
                               const ad_checkpoint_options *opts);

#ifdef __cplusplus
}
#endif
#endif
