/**
 * @file
 * gradcheck.h - compare backward's gradients with central finite differences,
 * or exactly with forward mode (ad_gradcheck_exact).
 *
 * The graph to check is a function that records ops on a tape from temporal
 * copies of the parameters (ad_use) and returns its output. gradcheck runs it
 * once for backward, then again with each parameter element nudged by +-eps,
 * and compares. A non-scalar output is reduced to a scalar with fixed random
 * weights v (the check then covers v^T J, a random mix of every output).
 * Only f64 parameters are accepted: f32 central differences hide errors of
 * several percent.
 *
 *     static ad_tensor *graph(ad_tape *t, void *ctx) {
 *         ad_param **p = ctx;
 *         return ad_tanh(t, ad_matmul(t, ad_use(t, p[0]), ad_use(t, p[1]), 0));
 *     }
 *     ad_gradcheck_report rep;
 *     ad_status st = ad_gradcheck(graph, params, params, 2, NULL, &rep, &err);
 *     if (st == AD_ERR_MISMATCH) ad_gradcheck_print(&rep, stderr);
 */
#ifndef UNROLL_AD_GRADCHECK_H
#define UNROLL_AD_GRADCHECK_H

#include <stdint.h>
#include <stdio.h>

#include "status.h"
#include "tape.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/** The most parameters one gradcheck call reports on. */
#define AD_GRADCHECK_MAX_PARAMS 32

/** Records the graph on `t` (already reset) and returns its output, or NULL on error. */
typedef ad_tensor *(*ad_graph_fn)(ad_tape *t, void *ctx);

/** Options; zero fields take the defaults in brackets (PyTorch's gradcheck defaults). */
typedef struct ad_gradcheck_options {
    double eps;       /**< finite-difference step [1e-6] */
    double atol;      /**< absolute tolerance [1e-5] */
    double rtol;      /**< relative tolerance [1e-3]: pass when |a-n| <= atol + rtol |n| */
    int fast;         /**< 1: check random projections v^T J u instead of every element */
    int projections;  /**< fast mode: projections per parameter [4] */
    uint64_t seed;    /**< seed of v (and u in fast mode) [0 is a valid seed] */
} ad_gradcheck_options;

/** The worst element of one parameter (in fast mode, the worst projection). */
typedef struct ad_gradcheck_entry {
    char name[AD_NAME_SIZE]; /**< the parameter's name */
    size_t worst_index;      /**< flat index of the worst element (projection number in fast mode) */
    double analytic;         /**< backward's value there */
    double numerical;        /**< central difference there */
    double abs_err;          /**< |analytic - numerical| */
    double rel_err;          /**< abs_err / max(|numerical|, tiny) */
    int passed;              /**< every element within tolerance */
} ad_gradcheck_entry;

/** Result of a check: one entry per parameter, in the order given. */
typedef struct ad_gradcheck_report {
    int passed;   /**< all entries passed */
    size_t count; /**< entries used */
    size_t evaluations; /**< forward evaluations performed */
    /** The first `count` hold one parameter each. */
    ad_gradcheck_entry entries[AD_GRADCHECK_MAX_PARAMS];
} ad_gradcheck_report;

/**
 * Checks the gradients of graph(ctx) with respect to `params[0..n-1]` (f64,
 * 1 <= n <= AD_GRADCHECK_MAX_PARAMS). Parameter values are restored and
 * parameter gradients left as they were. `opts` may be NULL; `report` is
 * required; `err` may be NULL. Returns AD_OK when every element is within
 * tolerance, AD_ERR_MISMATCH when not, or the error of the graph (its tape
 * message is copied to err), AD_ERR_NULL, AD_ERR_ARG, AD_ERR_DTYPE (an f32
 * parameter or output), AD_ERR_NOMEM.
 */
AD_API ad_status ad_gradcheck(ad_graph_fn graph, void *ctx, ad_param *const *params, size_t n,
                       const ad_gradcheck_options *opts, ad_gradcheck_report *report,
                       ad_error *err);

/**
 * Per-copy gradient check: finite differences on one temporal copy alone.
 * The copy-th ad_use() of `param` in graph (0 = the first recorded, e.g. the
 * weight at step 0 of an unroll) is perturbed element by element while every
 * other use keeps the parameter's value, and the central difference is
 * compared with backward's gradient of that copy (dL/dW^(t)). Same options
 * and tolerances as ad_gradcheck(); the result goes to `entry`. Errors as
 * ad_gradcheck(), plus AD_ERR_ARG when the graph records fewer copies.
 */
AD_API ad_status ad_gradcheck_copy(ad_graph_fn graph, void *ctx, ad_param *param, size_t copy,
                            const ad_gradcheck_options *opts, ad_gradcheck_entry *entry,
                            ad_error *err);

/**
 * Exact gradient check: backward against forward mode on one recording. For
 * each parameter and `projections` random u (and one random v over the
 * output), compares (v^T J) u from backward with v^T (J u) from ad_jvp();
 * both are exact, so they agree to rounding for any graph. Passes when
 * |fwd - rev| <= atol + rtol * scale, scale the larger of both values and of
 * the sums of absolute terms of both dot products; defaults rtol 1e-12,
 * atol 0, 4 projections (eps and fast are not used). The report has entries
 * as ad_gradcheck()'s: analytic = reverse, numerical = forward. Errors as
 * ad_gradcheck(), plus the graph's AD_ERR_STATE when an op has no forward-mode
 * rule (a custom op without jvp).
 */
AD_API ad_status ad_gradcheck_exact(ad_graph_fn graph, void *ctx, ad_param *const *params, size_t n,
                                    const ad_gradcheck_options *opts, ad_gradcheck_report *report,
                                    ad_error *err);

/**
 * The exact check on one temporal copy: the copy-th ad_use() of `param`
 * alone gets the tangents u, and (v^T J) u uses backward's gradient of that
 * copy (dL/dW^(t)). Options and tolerances as ad_gradcheck_exact(); the
 * result goes to `entry`. Errors as ad_gradcheck_exact(), plus AD_ERR_ARG
 * when the graph records fewer copies.
 */
AD_API ad_status ad_gradcheck_exact_copy(ad_graph_fn graph, void *ctx, ad_param *param, size_t copy,
                                         const ad_gradcheck_options *opts, ad_gradcheck_entry *entry,
                                         ad_error *err);

/** Prints one line per parameter (name, status, worst element) and a verdict. */
AD_API void ad_gradcheck_print(const ad_gradcheck_report *report, FILE *out);

#ifdef __cplusplus
}
#endif
#endif
