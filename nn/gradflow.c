/*
 * gradflow.c - per-step gradient norms of states and temporal copies.
 */
#include "gradflow.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ||sum of the m copies of one step||: copies[0..m-1] are that step's uses,
 * each with its gradient kept (copy_grads = keep) or none (not reached, 0). */
static double group_norm(ad_tensor *const *copies, size_t m)
{
    double s = 0;
    for (size_t i = 0; i < ad_tensor_numel(copies[0]); i++) {
        double g = 0;
        for (size_t k = 0; k < m; k++) {
            const float *g32 = ad_tensor_dtype(copies[k]) == AD_F32 ? ad_tensor_grad_f32(copies[k]) : NULL;
            const double *g64 = ad_tensor_dtype(copies[k]) == AD_F64 ? ad_tensor_grad_f64(copies[k]) : NULL;
            g += g32 ? (double)g32[i] : g64 ? g64[i] : 0.0;
        }
        s += g * g;
    }
    return sqrt(s);
}

/* The norm of step k's m copies of weight w into *norm. One copy per step
 * reads the norm whatever the mode; several need their gradients kept. */
static ad_status step_norm(const ad_tape *t, ad_tensor *const *copies, size_t m, const char *name,
                           double *norm, ad_error *err)
{
    if (m == 1) {
        ad_error e;
        ad_status st = ad_tensor_grad_norm(copies[0], norm, &e);
        if (st != AD_OK) return ad_error_set(err, st, "grad_flow: '%s': %s", name, e.msg);
        return AD_OK;
    }
    ad_copy_grads mode = ad_tape_mode(t).copy_grads;
    if (mode != AD_COPY_GRADS_KEEP)
        return ad_error_set(err, AD_ERR_STATE,
                            "grad_flow: '%s' is used %zu times per step, and the norm of a step's sum of "
                            "copies needs their gradients, which this tape does not keep (copy_grads = %s)",
                            name, m, ad_copy_grads_name(mode));
    *norm = group_norm(copies, m);
    return AD_OK;
}

/* ||dL/dh_t|| into *norm: 0 when no gradient reached h_t (or it is NULL). */
static ad_status state_norm(const ad_tensor *h, int step, double *norm, ad_error *err)
{
    *norm = 0;
    if (!h) return AD_OK;
    ad_error e;
    ad_status st = ad_tensor_grad_norm(h, norm, &e);
    if (st != AD_OK) return ad_error_set(err, st, "grad_flow: h at step %d: %s", step, e.msg);
    return AD_OK;
}

static ad_status fail_collect(nn_grad_flow *out, ad_tensor **copies, ad_status st)
{
    free(copies);
    nn_grad_flow_free(out);
    return st;
}

ad_status nn_grad_flow_collect(const ad_tape *t, const nn_cell *cell, const nn_state *outs, int T,
                               const nn_unroll_options *opts, nn_grad_flow *out, ad_error *err)
{
    if (!t || !cell || !outs || !out) return ad_error_set(err, AD_ERR_NULL, "grad_flow: an argument is NULL");
    if (T < 1) return ad_error_set(err, AD_ERR_EMPTY, "grad_flow: no steps");
    memset(out, 0, sizeof *out);
    if (ad_tape_mode(t).copy_grads == AD_COPY_GRADS_NONE)
        return ad_error_set(err, AD_ERR_STATE,
                            "grad_flow: this tape records nothing per copy (copy_grads = none); "
                            "record with copy_grads = norms (or keep)");
    int reverse = opts && opts->reverse;
    size_t n_w = cell->n_w > 0 ? (size_t)cell->n_w : 1;
    out->rows = calloc((size_t)T, sizeof *out->rows);
    out->norms = calloc((size_t)T * n_w, sizeof *out->norms);
    out->names = calloc(n_w, sizeof *out->names);
    size_t cap = (size_t)T * 4;
    ad_tensor **copies = malloc(cap * sizeof *copies);
    if (!out->rows || !out->norms || !out->names || !copies)
        return fail_collect(out, copies, ad_error_set(err, AD_ERR_NOMEM, "grad_flow: out of memory"));
    out->steps = T;
    out->n_w = cell->n_w;
    for (int k = 0; k < T; k++) {
        out->rows[k].step = k;
        out->rows[k].w_norm = out->norms + (size_t)k * n_w;
        ad_status st = state_norm(outs[k].h, k, &out->rows[k].h_norm, err);
        if (st != AD_OK) return fail_collect(out, copies, st);
    }
    for (int w = 0; w < cell->n_w; w++) {
        snprintf(out->names[w], sizeof out->names[w], "%s", ad_param_name(nn_cell_weight(cell, w)));
        size_t n = ad_tape_copies(t, nn_cell_weight(cell, w), copies, cap);
        if (n == 0 || n % (size_t)T != 0 || n > cap)
            return fail_collect(out, copies,
                                ad_error_set(err, AD_ERR_MISMATCH,
                                             "grad_flow: '%s' has %zu temporal copies on the tape, "
                                             "not a multiple of %d steps (up to 4 uses per step)",
                                             out->names[w], n, T));
        size_t m = n / (size_t)T;
        for (int k = 0; k < T; k++) {
            int step = reverse ? T - 1 - k : k; /* copies are in recording order */
            ad_status st = step_norm(t, copies + (size_t)k * m, m, out->names[w], &out->rows[step].w_norm[w], err);
            if (st != AD_OK) return fail_collect(out, copies, st);
        }
    }
    free(copies);
    return ad_error_set(err, AD_OK, NULL);
}

void nn_grad_flow_free(nn_grad_flow *flow)
{
    if (!flow) return;
    free(flow->rows);
    free(flow->norms);
    free(flow->names);
    flow->rows = NULL;
    flow->norms = NULL;
    flow->names = NULL;
    flow->steps = 0;
}

void nn_grad_flow_print(const nn_grad_flow *f, FILE *out)
{
    if (!f || !out || !f->rows) return;
    fprintf(out, "%6s %12s", "step", "|dL/dh_t|");
    for (int w = 0; w < f->n_w; w++) fprintf(out, " %22.22s", f->names[w]);
    fputc('\n', out);
    for (int k = 0; k < f->steps; k++) {
        fprintf(out, "%6d %12.4e", f->rows[k].step, f->rows[k].h_norm);
        for (int w = 0; w < f->n_w; w++) fprintf(out, " %22.4e", f->rows[k].w_norm[w]);
        fputc('\n', out);
    }
}

ad_status nn_grad_flow_write_csv(const nn_grad_flow *f, FILE *out)
{
    if (!f || !out) return AD_ERR_NULL;
    fprintf(out, "step,h");
    for (int w = 0; w < f->n_w; w++) fprintf(out, ",%s", f->names[w]);
    fputc('\n', out);
    for (int k = 0; k < f->steps; k++) {
        fprintf(out, "%d,%.17g", f->rows[k].step, f->rows[k].h_norm);
        for (int w = 0; w < f->n_w; w++) fprintf(out, ",%.17g", f->rows[k].w_norm[w]);
        fputc('\n', out);
    }
    return ferror(out) ? AD_ERR_IO : AD_OK;
}
