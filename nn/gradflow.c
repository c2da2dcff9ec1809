/*
 * gradflow.c - per-step gradient norms of states and temporal copies.
 */
#include "gradflow.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static double grad_norm(const ad_tensor *x)
{
    double s = 0;
    for (size_t i = 0; i < ad_tensor_numel(x); i++) {
        double g = ad_tensor_grad_get(x, i);
        if (!isnan(g)) s += g * g;
    }
    return sqrt(s);
}

/* ||sum of the m copies of one step||: copies[0..m-1] are that step's uses. */
static double group_norm(ad_tensor *const *copies, size_t m)
{
    double s = 0;
    for (size_t i = 0; i < ad_tensor_numel(copies[0]); i++) {
        double g = 0;
        for (size_t k = 0; k < m; k++) {
            double v = ad_tensor_grad_get(copies[k], i);
            if (!isnan(v)) g += v;
        }
        s += g * g;
    }
    return sqrt(s);
}

ad_status nn_grad_flow_collect(const ad_tape *t, const nn_cell *cell, const nn_state *outs, int T,
                               const nn_unroll_options *opts, nn_grad_flow *out, ad_error *err)
{
    if (!t || !cell || !outs || !out) return ad_error_set(err, AD_ERR_NULL, "grad_flow: an argument is NULL");
    if (T < 1) return ad_error_set(err, AD_ERR_EMPTY, "grad_flow: no steps");
    memset(out, 0, sizeof *out);
    int reverse = opts && opts->reverse;
    out->rows = calloc((size_t)T, sizeof *out->rows);
    size_t cap = (size_t)T * 4;
    ad_tensor **copies = malloc(cap * sizeof *copies);
    if (!out->rows || !copies) {
        free(copies);
        nn_grad_flow_free(out);
        return ad_error_set(err, AD_ERR_NOMEM, "grad_flow: out of memory");
    }
    out->steps = T;
    out->n_w = cell->n_w;
    for (int k = 0; k < T; k++) {
        out->rows[k].step = k;
        out->rows[k].h_norm = outs[k].h ? grad_norm(outs[k].h) : 0;
    }
    for (int w = 0; w < cell->n_w; w++) {
        snprintf(out->names[w], sizeof out->names[w], "%s", ad_param_name(cell->w[w]));
        size_t n = ad_tape_copies(t, cell->w[w], copies, cap);
        if (n == 0 || n % (size_t)T != 0 || n > cap) {
            char msg[200];
            snprintf(msg, sizeof msg, "grad_flow: '%s' has %zu temporal copies on the tape, "
                     "not a multiple of %d steps (up to 4 uses per step)", out->names[w], n, T);
            free(copies);
            nn_grad_flow_free(out);
            return ad_error_set(err, AD_ERR_MISMATCH, "%s", msg);
        }
        size_t m = n / (size_t)T;
        for (int k = 0; k < T; k++) {
            int step = reverse ? T - 1 - k : k; /* copies are in recording order */
            out->rows[step].w_norm[w] = group_norm(copies + (size_t)k * m, m);
        }
    }
    free(copies);
    return ad_error_set(err, AD_OK, NULL);
}

void nn_grad_flow_free(nn_grad_flow *flow)
{
    if (!flow) return;
    free(flow->rows);
    flow->rows = NULL;
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
