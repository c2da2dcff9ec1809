/*
 * gradcheck.c - backward against central finite differences, in f64.
 */
#include "gradcheck.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

typedef struct check {
    ad_graph_fn graph;
    void *ctx;
    ad_tape *tape;
    double *v; /* fixed weights reducing a non-scalar output */
    size_t out_numel;
    ad_error *err;
    size_t evaluations;
} check;

/* Copies the tape's error into err and returns it. */
static ad_status graph_error(check *c)
{
    ad_status st = ad_tape_status(c->tape);
    if (st == AD_OK) st = AD_ERR_NULL;
    return ad_error_set(c->err, st, "gradcheck: the graph failed: %s",
                         st == AD_ERR_NULL && ad_tape_status(c->tape) == AD_OK
                             ? "it returned NULL without an error"
                             : ad_tape_message(c->tape));
}

/* One forward evaluation of the graph on a fresh tape, gradients off. */
static ad_tensor *run_forward(check *c)
{
    ad_tape_reset(c->tape);
    int was = ad_tape_set_grad_enabled(c->tape, 0);
    ad_tensor *out = c->graph(c->tape, c->ctx);
    ad_tape_set_grad_enabled(c->tape, was);
    c->evaluations++;
    return out;
}

/* f = sum(v * out) of one evaluation. */
static ad_status evaluate(check *c, double *f)
{
    ad_tensor *out = run_forward(c);
    if (!out) return graph_error(c);
    const double *y = ad_tensor_f64(out);
    if (!y || ad_tensor_numel(out) != c->out_numel)
        return ad_error_set(c->err, AD_ERR_STATE,
                             "gradcheck: the graph's output changed between evaluations");
    double s = 0;
    for (size_t i = 0; i < c->out_numel; i++) s += c->v ? c->v[i] * y[i] : y[i];
    *f = s;
    return AD_OK;
}

static double central(check *c, ad_status *st, double *x, double eps)
{
    double orig = *x, fp = 0, fm = 0;
    *x = orig + eps;
    *st = evaluate(c, &fp);
    if (*st == AD_OK) {
        *x = orig - eps;
        *st = evaluate(c, &fm);
    }
    *x = orig;
    return (fp - fm) / (2 * eps);
}

/* Records one element's comparison in the entry if it is the worst so far. */
static void compare(ad_gradcheck_entry *e, size_t index, double a, double num,
                    const ad_gradcheck_options *o, double *worst_margin)
{
    double abs_err = fabs(a - num);
    double margin = abs_err - (o->atol + o->rtol * fabs(num));
    if (!(margin <= 0)) e->passed = 0; /* NaN fails too */
    if (index == 0 || margin > *worst_margin || isnan(margin)) {
        *worst_margin = isnan(margin) ? INFINITY : margin;
        e->worst_index = index;
        e->analytic = a;
        e->numerical = num;
        e->abs_err = abs_err;
        e->rel_err = abs_err / fmax(fabs(num), 1e-300);
    }
}

/* Runs the graph once with gradients and backward; copies each param's gradient into grads. */
static ad_status analytic(check *c, ad_param *const *params, size_t n, double **grads)
{
    ad_tape_reset(c->tape);
    ad_tensor *out = c->graph(c->tape, c->ctx);
    c->evaluations++;
    if (!out) return graph_error(c);
    if (ad_tensor_dtype(out) != AD_F64)
        return ad_error_set(c->err, AD_ERR_DTYPE, "gradcheck: the graph's output is %s; f64 needed",
                             ad_dtype_name(ad_tensor_dtype(out)));
    c->out_numel = ad_tensor_numel(out);
    ad_tensor *up = NULL;
    if (c->out_numel != 1) {
        up = ad_from_data(c->tape, AD_F64, ad_tensor_shape(out), c->v);
        if (!up) return graph_error(c);
    } else {
        c->v = NULL;
    }
    /* Backward adds into the parameters' gradients: start them from zero and
     * put the caller's values back afterwards. */
    for (size_t i = 0; i < n; i++) {
        double *g = ad_tensor_f64(ad_param_grad(params[i]));
        size_t len = ad_tensor_numel(ad_param_grad(params[i]));
        memcpy(grads[i], g, len * sizeof *g);
        memset(g, 0, len * sizeof *g);
    }
    ad_status st = ad_backward(c->tape, out, up);
    for (size_t i = 0; i < n; i++) {
        double *g = ad_tensor_f64(ad_param_grad(params[i]));
        size_t len = ad_tensor_numel(ad_param_grad(params[i]));
        for (size_t k = 0; k < len; k++) {
            double fresh = g[k];
            g[k] = grads[i][k];
            grads[i][k] = fresh;
        }
    }
    if (st == AD_ERR_STATE) { /* output independent of every parameter: all zero */
        for (size_t i = 0; i < n; i++)
            memset(grads[i], 0, ad_tensor_numel(ad_param_grad(params[i])) * sizeof(double));
        return AD_OK;
    }
    if (st != AD_OK) return graph_error(c);
    return AD_OK;
}

static ad_status check_args(ad_graph_fn graph, ad_param *const *params, size_t n,
                            ad_gradcheck_report *report, ad_error *err)
{
    if (!graph || !params || !report)
        return ad_error_set(err, AD_ERR_NULL, "gradcheck: %s is NULL",
                             !graph ? "graph" : !params ? "params" : "report");
    if (n == 0 || n > AD_GRADCHECK_MAX_PARAMS)
        return ad_error_set(err, AD_ERR_ARG, "gradcheck: %zu parameters (1..%d allowed)", n,
                             AD_GRADCHECK_MAX_PARAMS);
    for (size_t i = 0; i < n; i++) {
        if (!params[i]) return ad_error_set(err, AD_ERR_NULL, "gradcheck: params[%zu] is NULL", i);
        if (ad_tensor_dtype(ad_param_value(params[i])) != AD_F64)
            return ad_error_set(err, AD_ERR_DTYPE,
                                 "gradcheck: parameter '%s' is f32; gradcheck needs f64 "
                                 "(f32 central differences hide errors of several percent)",
                                 ad_param_name(params[i]));
    }
    return AD_OK;
}

static void defaults(const ad_gradcheck_options *in, ad_gradcheck_options *o)
{
    ad_gradcheck_options z = {0};
    *o = in ? *in : z;
    if (o->eps <= 0) o->eps = 1e-6;
    if (o->atol <= 0) o->atol = 1e-5;
    if (o->rtol <= 0) o->rtol = 1e-3;
    if (o->projections <= 0) o->projections = 4;
}

/* Compares every element (or, in fast mode, random projections) of one parameter. */
static ad_status check_param(check *c, ad_param *p, const double *grad,
                             const ad_gradcheck_options *o, ad_rng *rng, double *u,
                             ad_gradcheck_entry *e)
{
    double *x = ad_tensor_f64(ad_param_value(p));
    size_t len = ad_tensor_numel(ad_param_value(p));
    double worst = -INFINITY;
    ad_status st = AD_OK;
    snprintf(e->name, sizeof e->name, "%s", ad_param_name(p));
    e->passed = 1;
    if (!o->fast) {
        for (size_t k = 0; k < len && st == AD_OK; k++) {
            double num = central(c, &st, &x[k], o->eps);
            if (st == AD_OK) compare(e, k, grad[k], num, o, &worst);
        }
        return st;
    }
    double *dir = u, *save = u + len; /* u holds 2 len doubles */
    for (int j = 0; j < o->projections && st == AD_OK && len; j++) {
        double a = 0, fp = 0, fm = 0;
        for (size_t k = 0; k < len; k++) {
            dir[k] = 2 * ad_rng_uniform(rng) - 1;
            a += grad[k] * dir[k];
            save[k] = x[k];
        }
        for (size_t k = 0; k < len; k++) x[k] = save[k] + o->eps * dir[k];
        st = evaluate(c, &fp);
        if (st == AD_OK) {
            for (size_t k = 0; k < len; k++) x[k] = save[k] - o->eps * dir[k];
            st = evaluate(c, &fm);
        }
        for (size_t k = 0; k < len; k++) x[k] = save[k];
        if (st == AD_OK) compare(e, (size_t)j, a, (fp - fm) / (2 * o->eps), o, &worst);
    }
    return st;
}

static void free_all(double **grads, size_t n, double *u, double *v)
{
    for (size_t i = 0; i < n; i++) free(grads[i]);
    free(u);
    free(v);
}

/* Draws the fixed output weights once the output size is known (first run without v). */
static ad_status draw_weights(check *c, ad_rng *rng)
{
    ad_tensor *out = run_forward(c);
    if (!out) return graph_error(c);
    size_t len = ad_tensor_numel(out);
    if (len <= 1) return AD_OK;
    c->v = malloc(len * sizeof *c->v);
    if (!c->v) return ad_error_set(c->err, AD_ERR_NOMEM, "gradcheck: out of memory");
    for (size_t i = 0; i < len; i++) c->v[i] = 2 * ad_rng_uniform(rng) - 1;
    return AD_OK;
}

ad_status ad_gradcheck(ad_graph_fn graph, void *ctx, ad_param *const *params, size_t n,
                       const ad_gradcheck_options *opts, ad_gradcheck_report *report,
                       ad_error *err)
{
    ad_status st = check_args(graph, params, n, report, err);
    if (st != AD_OK) return st;
    memset(report, 0, sizeof *report);
    ad_gradcheck_options o;
    defaults(opts, &o);
    ad_rng rng;
    ad_rng_seed(&rng, o.seed, 0x67726164u);
    check c = {graph, ctx, ad_tape_new(NULL), NULL, 0, err, 0};
    double *grads[AD_GRADCHECK_MAX_PARAMS] = {0};
    size_t max_len = 0;
    double *u = NULL;
    if (!c.tape) return ad_error_set(err, AD_ERR_NOMEM, "gradcheck: out of memory");
    for (size_t i = 0; i < n; i++) {
        size_t len = ad_tensor_numel(ad_param_value(params[i]));
        grads[i] = malloc((len ? len : 1) * sizeof(double));
        if (!grads[i]) st = AD_ERR_NOMEM;
        if (len > max_len) max_len = len;
    }
    if (st == AD_OK) {
        u = malloc((2 * max_len + 1) * sizeof *u);
        if (!u) st = AD_ERR_NOMEM;
    }
    if (st == AD_ERR_NOMEM) ad_error_set(err, AD_ERR_NOMEM, "gradcheck: out of memory");
    if (st == AD_OK) st = draw_weights(&c, &rng);
    if (st == AD_OK) st = analytic(&c, params, n, grads);
    for (size_t i = 0; i < n && st == AD_OK; i++) {
        st = check_param(&c, params[i], grads[i], &o, &rng, u, &report->entries[i]);
        report->count = i + 1;
    }
    report->evaluations = c.evaluations;
    report->passed = st == AD_OK;
    for (size_t i = 0; i < report->count; i++) report->passed &= report->entries[i].passed;
    ad_tape_free(c.tape);
    free_all(grads, n, u, c.v);
    if (st != AD_OK) return st;
    if (!report->passed) {
        for (size_t i = 0; i < report->count; i++) {
            const ad_gradcheck_entry *e = &report->entries[i];
            if (e->passed) continue;
            return ad_error_set(err, AD_ERR_MISMATCH,
                                 "gradcheck: '%s'[%zu]: analytic %.10g, numerical %.10g", e->name,
                                 e->worst_index, e->analytic, e->numerical);
        }
    }
    ad_error_set(err, AD_OK, NULL);
    return AD_OK;
}

/* ---- one temporal copy ------------------------------------------------------------------ */

/* Runs graph with backward and copies the gradient of `param`'s copy-th copy into a. */
static ad_status copy_analytic(check *c, ad_param *param, size_t copy, double *a)
{
    ad_tape_reset(c->tape);
    ad_tensor *out = c->graph(c->tape, c->ctx);
    c->evaluations++;
    if (!out) return graph_error(c);
    if (ad_tensor_dtype(out) != AD_F64)
        return ad_error_set(c->err, AD_ERR_DTYPE, "gradcheck_copy: the graph's output is f32; f64 needed");
    c->out_numel = ad_tensor_numel(out);
    ad_tensor *up = c->out_numel != 1 ? ad_from_data(c->tape, AD_F64, ad_tensor_shape(out), c->v) : NULL;
    if (c->out_numel != 1 && !up) return graph_error(c);
    size_t n = ad_tape_copies(c->tape, param, NULL, 0);
    if (copy >= n)
        return ad_error_set(c->err, AD_ERR_ARG, "gradcheck_copy: '%s' has %zu copies on the tape, "
                             "copy %zu asked for", ad_param_name(param), n, copy);
    ad_tensor *g = ad_param_grad(param);
    size_t len = ad_tensor_numel(g);
    double *keep = malloc((len ? len : 1) * sizeof *keep);
    ad_tensor **copies = malloc(n * sizeof *copies);
    ad_status st = keep && copies ? AD_OK : AD_ERR_NOMEM;
    if (st == AD_OK) {
        memcpy(keep, ad_tensor_f64(g), len * sizeof *keep); /* backward adds into it */
        st = ad_backward(c->tape, out, up);
        memcpy(ad_tensor_f64(g), keep, len * sizeof *keep);
        ad_tape_copies(c->tape, param, copies, n);
        const double *cg = st == AD_OK ? ad_tensor_grad_f64(copies[copy]) : NULL;
        for (size_t k = 0; k < len; k++) a[k] = cg ? cg[k] : 0.0; /* no gradient: all zero */
        if (st == AD_ERR_STATE) st = AD_OK;
        else if (st != AD_OK) st = graph_error(c);
    } else {
        ad_error_set(c->err, AD_ERR_NOMEM, "gradcheck_copy: out of memory");
    }
    free(keep);
    free(copies);
    return st;
}

ad_status ad_gradcheck_copy(ad_graph_fn graph, void *ctx, ad_param *param, size_t copy,
                            const ad_gradcheck_options *opts, ad_gradcheck_entry *entry,
                            ad_error *err)
{
    if (!entry) return ad_error_set(err, AD_ERR_NULL, "gradcheck_copy: entry is NULL");
    ad_gradcheck_report dummy;
    ad_status st = check_args(graph, &param, 1, &dummy, err);
    if (st != AD_OK) return st;
    memset(entry, 0, sizeof *entry);
    ad_gradcheck_options o;
    defaults(opts, &o);
    ad_rng rng;
    ad_rng_seed(&rng, o.seed, 0x67726164u);
    check c = {graph, ctx, ad_tape_new(NULL), NULL, 0, err, 0};
    size_t len = ad_tensor_numel(ad_param_value(param));
    double *a = malloc((len ? len : 1) * sizeof *a);
    if (!c.tape || !a) st = ad_error_set(err, AD_ERR_NOMEM, "gradcheck_copy: out of memory");
    if (st == AD_OK) st = draw_weights(&c, &rng);
    if (st == AD_OK) st = copy_analytic(&c, param, copy, a);
    snprintf(entry->name, sizeof entry->name, "%s", ad_param_name(param));
    entry->passed = 1;
    double worst = -INFINITY;
    for (size_t k = 0; k < len && st == AD_OK; k++) {
        double fp = 0, fm = 0;
        ad__tape_set_probe(c.tape, param, copy, k, o.eps);
        st = evaluate(&c, &fp);
        ad__tape_set_probe(c.tape, param, copy, k, -o.eps);
        if (st == AD_OK) st = evaluate(&c, &fm);
        if (st == AD_OK) compare(entry, k, a[k], (fp - fm) / (2 * o.eps), &o, &worst);
    }
    ad_tape_free(c.tape);
    free(a);
    free(c.v);
    if (st != AD_OK) return st;
    if (!entry->passed)
        return ad_error_set(err, AD_ERR_MISMATCH, "gradcheck_copy: '%s' copy %zu [%zu]: analytic %.10g, "
                             "numerical %.10g", entry->name, copy, entry->worst_index,
                             entry->analytic, entry->numerical);
    return ad_error_set(err, AD_OK, NULL);
}

void ad_gradcheck_print(const ad_gradcheck_report *report, FILE *out)
{
    if (!report || !out) return;
    for (size_t i = 0; i < report->count; i++) {
        const ad_gradcheck_entry *e = &report->entries[i];
        fprintf(out, "  %-16s %s  worst [%zu]: analytic %+.10e numerical %+.10e abs %.2e rel %.2e\n",
                e->name, e->passed ? "ok  " : "FAIL", e->worst_index, e->analytic, e->numerical,
                e->abs_err, e->rel_err);
    }
    fprintf(out, "gradcheck: %s (%zu parameters, %zu evaluations)\n",
            report->passed ? "passed" : "FAILED", report->count, report->evaluations);
}
