/*
 * gradcheck_exact.c - backward against forward mode: v^T (J u) = (v^T J) u.
 *
 * Both sides are exact derivatives of the same recorded graph, computed by
 * independent rules (each op's backward and its forward-mode rule), so they
 * agree to rounding for any graph; a wrong backward shows at once, however
 * small, instead of hiding under a finite difference's truncation error.
 * One recording, one backward with upstream v, and one forward walk of K
 * directions per parameter. Derivation: docs/derivations.md, "Forward mode".
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "forward.h"
#include "gradcheck.h"
#include "internal.h"

typedef struct exact {
    ad_tape *tape;
    ad_tensor *out;
    double *v; /* upstream weights, one per output element */
    ad_rng rng;
    ad_gradcheck_options o;
    ad_error *err;
} exact;

static ad_status tape_error(exact *c, const char *what)
{
    ad_status st = ad_tape_status(c->tape);
    if (st == AD_OK) st = AD_ERR_NULL;
    return ad_error_set(c->err, st, "gradcheck_exact: %s: %s", what,
                         ad_tape_status(c->tape) == AD_OK ? "the graph returned NULL without an error"
                                                          : ad_tape_message(c->tape));
}

static void exact_defaults(const ad_gradcheck_options *in, ad_gradcheck_options *o)
{
    ad_gradcheck_options z = {0};
    *o = in ? *in : z;
    if (o->atol < 0) o->atol = 0;
    if (o->rtol <= 0) o->rtol = 1e-12;
    if (o->projections <= 0) o->projections = 4;
}

/* Records the graph, draws v and runs backward with upstream v; parameters'
 * gradients hold v^T J of this recording only, the callers' values being
 * restored by the caller (saved in `keep`). */
static ad_status record(exact *c, ad_graph_fn graph, void *ctx)
{
    c->out = graph(c->tape, ctx);
    if (!c->out) return tape_error(c, "the graph failed");
    if (ad_tensor_dtype(c->out) != AD_F64)
        return ad_error_set(c->err, AD_ERR_DTYPE, "gradcheck_exact: the graph's output is %s; f64 needed",
                             ad_dtype_name(ad_tensor_dtype(c->out)));
    size_t len = ad_tensor_numel(c->out);
    c->v = ad__alloc_array(c->tape, len ? len : 1, sizeof *c->v);
    if (!c->v) return tape_error(c, "allocation");
    for (size_t i = 0; i < len; i++) c->v[i] = ad_rng_normal(&c->rng);
    ad_tensor *up = ad_from_data(c->tape, AD_F64, ad_tensor_shape(c->out), c->v);
    if (!up) return tape_error(c, "allocation");
    ad_status st = ad_backward(c->tape, c->out, up);
    if (st == AD_ERR_STATE) { /* no parameter reaches the output: every gradient is zero */
        ad__tape_clear_error(c->tape);
        return AD_ERR_STATE;
    }
    return st == AD_OK ? AD_OK : tape_error(c, "backward failed");
}

/*
 * Compares, for K random u, the reverse side (v^T J) u = sum g u with the
 * forward side v^T (J u) from one ad_jvp walk seeded by `seed` (whose dot
 * this fills). Each difference is measured against the larger of the two
 * values and the sums of absolute terms of both dot products, so that a
 * result cancelling to near zero is not judged against itself.
 */
static ad_status compare_side(exact *c, ad_tangent_seed *seed, const double *g, size_t len,
                              ad_gradcheck_entry *e)
{
    int K = c->o.projections;
    size_t ny = ad_tensor_numel(c->out);
    double *u = ad__alloc_array(c->tape, (size_t)K * (len ? len : 1), sizeof *u);
    double *rev = ad__alloc_array(c->tape, 2 * (size_t)K, sizeof *rev);
    if (!u || !rev) return tape_error(c, "allocation");
    for (int k = 0; k < K; k++) {
        double r = 0, mag = 0;
        for (size_t i = 0; i < len; i++) {
            double x = ad_rng_normal(&c->rng);
            u[(size_t)k * len + i] = x;
            r += g ? g[i] * x : 0;
            mag += g ? fabs(g[i] * x) : 0;
        }
        rev[2 * k] = r, rev[2 * k + 1] = mag;
    }
    seed->dot = u;
    if (ad_jvp(c->tape, seed, 1, K) != AD_OK) return tape_error(c, "forward mode failed");
    e->passed = 1;
    double worst = -INFINITY;
    for (int k = 0; k < K; k++) {
        const double *dy = ad_tensor_tangent(c->out, k);
        double f = 0, mag = 0;
        for (size_t i = 0; dy && i < ny; i++) f += c->v[i] * dy[i], mag += fabs(c->v[i] * dy[i]);
        double r = rev[2 * k], scale = fmax(fmax(fabs(f), fabs(r)), fmax(mag, rev[2 * k + 1]));
        double abs_err = fabs(f - r), tol = c->o.atol + c->o.rtol * scale;
        double margin = abs_err - tol;
        if (!(margin <= 0)) e->passed = 0;
        if (k == 0 || margin > worst || isnan(margin)) {
            worst = isnan(margin) ? INFINITY : margin;
            e->worst_index = (size_t)k;
            e->analytic = r;
            e->numerical = f;
            e->abs_err = abs_err;
            e->rel_err = abs_err / fmax(scale, 1e-300);
        }
    }
    return AD_OK;
}

static ad_status check_params(ad_param *const *params, size_t n, ad_error *err)
{
    for (size_t i = 0; i < n; i++) {
        if (!params[i]) return ad_error_set(err, AD_ERR_NULL, "gradcheck_exact: params[%zu] is NULL", i);
        if (ad_tensor_dtype(ad_param_value(params[i])) != AD_F64)
            return ad_error_set(err, AD_ERR_DTYPE, "gradcheck_exact: parameter '%s' is f32; the check needs f64",
                                 ad_param_name(params[i]));
    }
    return AD_OK;
}

/* Saves each parameter's gradient into keep[i] and zeroes it (dir 0), or
 * puts the saved values back (dir 1) leaving this check's in keep[i]. */
static void swap_grads(ad_param *const *params, size_t n, double **keep)
{
    for (size_t i = 0; i < n; i++) {
        double *g = ad_tensor_f64(ad_param_grad(params[i]));
        size_t len = ad_tensor_numel(ad_param_grad(params[i]));
        for (size_t j = 0; j < len; j++) {
            double x = g[j];
            g[j] = keep[i][j];
            keep[i][j] = x;
        }
    }
}

static ad_status run(exact *c, ad_graph_fn graph, void *ctx, ad_param *const *params, size_t n,
                     ad_gradcheck_report *report)
{
    double *keep[AD_GRADCHECK_MAX_PARAMS];
    for (size_t i = 0; i < n; i++) {
        size_t len = ad_tensor_numel(ad_param_grad(params[i]));
        if (!(keep[i] = ad__alloc_zero(c->tape, (len ? len : 1) * sizeof(double))))
            return tape_error(c, "allocation");
    }
    swap_grads(params, n, keep);
    ad_status st = record(c, graph, ctx);
    swap_grads(params, n, keep); /* keep[i] now holds v^T J */
    if (st != AD_OK && st != AD_ERR_STATE) return st;
    int none = st == AD_ERR_STATE;
    report->passed = 1;
    report->count = n;
    report->evaluations = 1;
    for (size_t i = 0; i < n; i++) {
        ad_gradcheck_entry *e = &report->entries[i];
        memset(e, 0, sizeof *e);
        snprintf(e->name, sizeof e->name, "%s", ad_param_name(params[i]));
        ad_tangent_seed seed = {NULL, params[i], NULL};
        st = compare_side(c, &seed, none ? NULL : keep[i], ad_tensor_numel(ad_param_value(params[i])), e);
        if (st != AD_OK) return st;
        report->passed &= e->passed;
    }
    return report->passed ? AD_OK : AD_ERR_MISMATCH;
}

ad_status ad_gradcheck_exact(ad_graph_fn graph, void *ctx, ad_param *const *params, size_t n,
                             const ad_gradcheck_options *opts, ad_gradcheck_report *report, ad_error *err)
{
    if (!graph || !params || !report)
        return ad_error_set(err, AD_ERR_NULL, "gradcheck_exact: %s is NULL",
                             !graph ? "graph" : !params ? "params" : "report");
    if (n == 0 || n > AD_GRADCHECK_MAX_PARAMS)
        return ad_error_set(err, AD_ERR_ARG, "gradcheck_exact: %zu parameters (1..%d allowed)", n,
                             AD_GRADCHECK_MAX_PARAMS);
    ad_status st = check_params(params, n, err);
    if (st != AD_OK) return st;
    exact c = {0};
    exact_defaults(opts, &c.o);
    if (c.o.projections > AD_JVP_MAX_K)
        return ad_error_set(err, AD_ERR_ARG, "gradcheck_exact: %d projections (1..%d allowed)",
                             c.o.projections, AD_JVP_MAX_K);
    c.err = err;
    ad_rng_seed(&c.rng, c.o.seed, 7);
    if (!(c.tape = ad_tape_new(NULL))) return ad_error_set(err, AD_ERR_NOMEM, "gradcheck_exact: no memory for a tape");
    st = run(&c, graph, ctx, params, n, report);
    ad_tape_free(c.tape);
    return st;
}

ad_status ad_gradcheck_exact_copy(ad_graph_fn graph, void *ctx, ad_param *param, size_t copy,
                                  const ad_gradcheck_options *opts, ad_gradcheck_entry *entry, ad_error *err)
{
    if (!graph || !param || !entry)
        return ad_error_set(err, AD_ERR_NULL, "gradcheck_exact_copy: %s is NULL",
                             !graph ? "graph" : !param ? "param" : "entry");
    ad_status st = check_params(&param, 1, err);
    if (st != AD_OK) return st;
    exact c = {0};
    exact_defaults(opts, &c.o);
    if (c.o.projections > AD_JVP_MAX_K)
        return ad_error_set(err, AD_ERR_ARG, "gradcheck_exact_copy: %d projections (1..%d allowed)",
                             c.o.projections, AD_JVP_MAX_K);
    c.err = err;
    ad_rng_seed(&c.rng, c.o.seed, 7);
    if (!(c.tape = ad_tape_new(NULL))) return ad_error_set(err, AD_ERR_NOMEM, "gradcheck_exact_copy: no memory for a tape");
    double *keep = NULL;
    size_t len = ad_tensor_numel(ad_param_grad(param));
    if (!(keep = ad__alloc_zero(c.tape, (len ? len : 1) * sizeof(double)))) {
        ad_tape_free(c.tape);
        return ad_error_set(err, AD_ERR_NOMEM, "gradcheck_exact_copy: no memory");
    }
    swap_grads(&param, 1, &keep);
    st = record(&c, graph, ctx);
    swap_grads(&param, 1, &keep);
    memset(entry, 0, sizeof *entry);
    snprintf(entry->name, sizeof entry->name, "%s", ad_param_name(param));
    if (st == AD_OK || st == AD_ERR_STATE) {
        size_t count = ad_tape_copies(c.tape, param, NULL, 0);
        ad_tensor **copies = count ? ad__alloc_array(c.tape, count, sizeof *copies) : NULL;
        if (copy >= count) {
            st = ad_error_set(err, AD_ERR_ARG, "gradcheck_exact_copy: copy %zu of '%s' asked; the graph records %zu",
                               copy, ad_param_name(param), count);
        } else if (!copies) {
            st = tape_error(&c, "allocation");
        } else {
            ad_tape_copies(c.tape, param, copies, count);
            ad_tangent_seed seed = {copies[copy], NULL, NULL};
            const double *g = st == AD_OK ? ad_tensor_grad_f64(copies[copy]) : NULL;
            st = compare_side(&c, &seed, g, ad_tensor_numel(copies[copy]), entry);
            if (st == AD_OK && !entry->passed) st = AD_ERR_MISMATCH;
        }
    }
    ad_tape_free(c.tape);
    return st;
}
