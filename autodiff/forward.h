/**
 * @file
 * forward.h - forward mode on a recorded tape: Jacobian-vector products J u.
 *
 * Backward walks the tape in reverse and gives v^T J; ad_jvp() walks the same
 * recorded nodes forward with tangents and gives J u for K directions u at
 * once (each op's forward-mode rule sits next to its backward). Seeds are
 * tangents of leaves: variables, constants, one temporal copy, or every copy
 * of a parameter. Every later tensor then has K tangents:
 *
 *     ad_tensor *w = ad_use(t, W), *y = ad_tanh(t, ad_matmul(t, x, w, 0));
 *     ad_tangent_seed s = {NULL, W, u};        // u: K * numel(W) doubles
 *     if (ad_jvp(t, &s, 1, K) == AD_OK) {
 *         const double *dy = ad_tensor_tangent(y, 0); // J u_0, shaped like y
 *     }
 *
 * Tangents live in the tape's arena until the next ad_jvp() or reset.
 */
#ifndef UNROLL_AD_FORWARD_H
#define UNROLL_AD_FORWARD_H

#include <stddef.h>

#include "status.h"
#include "tape.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/** The largest number of directions of one ad_jvp() walk. */
#define AD_JVP_MAX_K 4096

/**
 * The tangent of one leaf: set `x` (a variable, constant or temporal copy
 * recorded on the tape) or `param` (every temporal copy of it on the tape),
 * not both. `dot` holds K blocks of numel elements in the leaf's dtype,
 * direction k at element k * numel; the caller keeps ownership (it is copied).
 */
typedef struct ad_tangent_seed {
    ad_tensor *x;      /**< a leaf of the tape, or NULL when param is set */
    ad_param *param;   /**< a parameter whose every copy gets the tangent, or NULL */
    const void *dot;   /**< K * numel elements of the leaf's dtype */
} ad_tangent_seed;

/**
 * Forward mode over what is recorded on t: from the seeds' tangents (unseeded
 * leaves have zero tangents; two seeds of one leaf add up), computes the K
 * tangents J u_k of every recorded tensor in one walk, f32 or f64 (the
 * tangents have their tensor's dtype). Detach stops tangents as it stops
 * gradients; no-grad regions do not. Replaces the tangents of an earlier walk.
 * Errors (tape errors): AD_ERR_NULL, AD_ERR_FOREIGN, AD_ERR_ARG (k outside
 * 1..AD_JVP_MAX_K, a seed that is not a leaf, both or neither of x and
 * param), AD_ERR_DTYPE, AD_ERR_STATE (a custom op without a jvp callback, or
 * data a rule needs that the tape no longer holds, naming the op), AD_ERR_NOMEM.
 */
AD_API ad_status ad_jvp(ad_tape *t, const ad_tangent_seed *seeds, size_t n_seeds, int k);

/**
 * The k-th tangent of x from the last ad_jvp() on its tape: numel(x)
 * elements of x's dtype (float or double), shaped like x, valid until the
 * next ad_jvp() or reset. NULL when the tangent is zero (x does not depend on
 * a seed, or was recorded after the walk), for k out of range, for a NULL or
 * heap tensor, or when no walk ran since the reset.
 */
AD_API const void *ad_tensor_tangent(const ad_tensor *x, int k);

#ifdef __cplusplus
}
#endif
#endif
