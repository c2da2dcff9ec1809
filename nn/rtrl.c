/*
 * rtrl.c - real-time recurrent learning through forward mode.
 *
 * With s_t = (h_t, c_t) = f(x_t, s_{t-1}; θ), the influence M_t = ds_t/dθ
 * obeys M_t = (∂f/∂s) M_{t-1} + ∂f/∂θ, and dL_t/dθ = (∂L_t/∂s_t) M_t. One
 * forward-mode walk of the step's tape with P directions (direction k: the
 * column k of M_{t-1} on the previous state, the unit vector e_k on the
 * parameters) computes both: the tangents of s_t are M_t's columns and the
 * tangent of L_t is dL_t/dθ_k. Derivation: docs/derivations.md, "RTRL".
 */
#include "rtrl.h"

#include <stdlib.h>
#include <string.h>

struct nn_rtrl {
    const nn_cell *cell;
    ad_tape *tape;
    ad_dtype dtype;
    size_t es, B, Hs, Hc, P; /* Hc: 0 without a cell state */
    void *h, *c;             /* the state: B*Hs and B*Hc elements */
    void *mh, *mc;           /* influence: P blocks of B*Hs (B*Hc) */
    void **seeds;            /* n_w entries: P blocks of each parameter's numel, unit vectors */
    int n_seeds;
    size_t bytes;
};

static void *grab(nn_rtrl *r, size_t count)
{
    size_t n = (count ? count : 1) * r->es;
    r->bytes += n;
    return calloc(1, n);
}

void nn_rtrl_free(nn_rtrl *r)
{
    if (!r) return;
    ad_tape_free(r->tape);
    free(r->h), free(r->c), free(r->mh), free(r->mc);
    if (r->seeds)
        for (int i = 0; i < r->n_seeds; i++) free(r->seeds[i]);
    free(r->seeds);
    free(r);
}

/* Seed i: direction k is e_k restricted to parameter i (zero outside it). */
static void fill_unit_seeds(nn_rtrl *r)
{
    size_t off = 0;
    for (int i = 0; i < r->cell->n_w; i++) {
        if (i >= r->n_seeds || !r->seeds[i]) return; /* not reached: rtrl_new filled every seed */
        size_t len = ad_tensor_numel(ad_param_value(nn_cell_weight(r->cell, i)));
        for (size_t j = 0; j < len; j++) {
            size_t at = (off + j) * len + j;
            if (r->dtype == AD_F32) ((float *)r->seeds[i])[at] = 1.0f;
            else ((double *)r->seeds[i])[at] = 1.0;
        }
        off += len;
    }
}

nn_rtrl *nn_rtrl_new(const nn_cell *cell, int64_t batch, ad_error *err)
{
    if (!cell) return ad_error_set(err, AD_ERR_NULL, "rtrl_new: cell is NULL"), NULL;
    if (batch < 1 || cell->n_w < 1 || !nn_cell_weight(cell, 0))
        return ad_error_set(err, AD_ERR_ARG, "rtrl_new: batch %lld and %d parameters (need >= 1 each)",
                            (long long)batch, cell->n_w), NULL;
    for (int i = 0; i < cell->n_w; i++)
        if (!nn_cell_weight(cell, i))
            return ad_error_set(err, AD_ERR_ARG, "rtrl_new: %s: parameter %d of %d is NULL or beyond w[] (set params)",
                                cell->name, i, cell->n_w), NULL;
    nn_rtrl *r = calloc(1, sizeof *r);
    if (!r) return ad_error_set(err, AD_ERR_NOMEM, "rtrl_new: out of memory"), NULL;
    r->cell = cell;
    r->dtype = ad_tensor_dtype(ad_param_value(nn_cell_weight(cell, 0)));
    r->es = ad_dtype_size(r->dtype);
    r->B = (size_t)batch;
    r->Hs = (size_t)nn_cell_output_size(cell);
    r->Hc = cell->has_c ? (size_t)cell->hidden_size : 0;
    for (int i = 0; i < cell->n_w; i++) r->P += ad_tensor_numel(ad_param_value(nn_cell_weight(cell, i)));
    r->tape = ad_tape_new(NULL);
    r->h = grab(r, r->B * r->Hs);
    r->c = grab(r, r->B * r->Hc);
    r->mh = grab(r, r->P * r->B * r->Hs);
    r->mc = grab(r, r->P * r->B * r->Hc);
    r->seeds = calloc((size_t)cell->n_w, sizeof *r->seeds);
    if (r->seeds) r->n_seeds = cell->n_w;
    int ok = r->tape && r->h && r->c && r->mh && r->mc && r->seeds;
    for (int i = 0; ok && i < cell->n_w; i++)
        ok = (r->seeds[i] = grab(r, r->P * ad_tensor_numel(ad_param_value(nn_cell_weight(cell, i))))) != NULL;
    if (!ok) {
        nn_rtrl_free(r);
        return ad_error_set(err, AD_ERR_NOMEM, "rtrl_new: out of memory"), NULL;
    }
    fill_unit_seeds(r);
    return r;
}

/* Copies direction k's tangents of x into block k of m (zero when none). */
static void take_influence(nn_rtrl *r, ad_tensor *x, void *m, size_t len)
{
    for (size_t k = 0; k < r->P; k++) {
        const void *d = ad_tensor_tangent(x, (int)k);
        char *dst = (char *)m + k * len * r->es;
        if (d) memcpy(dst, d, len * r->es);
        else memset(dst, 0, len * r->es);
    }
}

/* Adds the tangents of the scalar loss, dL/dθ_k, into the parameters' gradients. */
static void add_gradients(nn_rtrl *r, ad_tensor *loss)
{
    size_t k = 0;
    for (int i = 0; i < r->cell->n_w; i++) {
        ad_tensor *g = ad_param_grad(nn_cell_weight(r->cell, i));
        for (size_t j = 0; j < ad_tensor_numel(g); j++, k++) {
            const void *d = ad_tensor_tangent(loss, (int)k);
            if (!d) continue;
            if (r->dtype == AD_F32) ad_tensor_f32(g)[j] += *(const float *)d;
            else ad_tensor_f64(g)[j] += *(const double *)d;
        }
    }
}

static ad_status tape_error(nn_rtrl *r, ad_error *err)
{
    ad_status st = ad_tape_status(r->tape);
    return ad_error_set(err, st == AD_OK ? AD_ERR_NULL : st, "rtrl_step: %s",
                        st == AD_OK ? "the loss function returned NULL" : ad_tape_message(r->tape));
}

ad_status nn_rtrl_step(nn_rtrl *r, const void *x, nn_rtrl_loss_fn loss, void *ctx, double *loss_out, ad_error *err)
{
    if (!r || !x || !loss)
        return ad_error_set(err, AD_ERR_NULL, "rtrl_step: %s is NULL", !r ? "handle" : !x ? "x" : "loss");
    if (r->P > AD_JVP_MAX_K)
        return ad_error_set(err, AD_ERR_ARG, "rtrl_step: %zu parameter elements; forward mode takes %d directions",
                            r->P, AD_JVP_MAX_K);
    ad_tape *t = r->tape;
    ad_tape_reset(t);
    nn_state prev = {ad_variable(t, r->dtype, ad_shape2((int64_t)r->B, (int64_t)r->Hs), r->h), NULL}, next = {0};
    if (r->Hc) prev.c = ad_variable(t, r->dtype, ad_shape2((int64_t)r->B, (int64_t)r->Hc), r->c);
    ad_tensor *xt = ad_from_data(t, r->dtype, ad_shape2((int64_t)r->B, r->cell->input_size), x);
    if (!xt || nn_cell_step(t, r->cell, xt, &prev, &next) != AD_OK) return tape_error(r, err);
    ad_tensor *l = loss(t, &next, ctx);
    if (!l) return tape_error(r, err);
    if (ad_tensor_numel(l) != 1)
        return ad_error_set(err, AD_ERR_NOT_SCALAR, "rtrl_step: the loss has %zu elements; a scalar needed",
                            ad_tensor_numel(l));
    ad_tangent_seed *seeds = malloc(((size_t)r->cell->n_w + 2) * sizeof *seeds);
    if (!seeds) return ad_error_set(err, AD_ERR_NOMEM, "rtrl_step: out of memory");
    size_t n = 0;
    seeds[n++] = (ad_tangent_seed){prev.h, NULL, r->mh};
    if (prev.c) seeds[n++] = (ad_tangent_seed){prev.c, NULL, r->mc};
    for (int i = 0; i < r->cell->n_w; i++) seeds[n++] = (ad_tangent_seed){NULL, nn_cell_weight(r->cell, i), r->seeds[i]};
    ad_status jst = ad_jvp(t, seeds, n, (int)r->P);
    free(seeds);
    if (jst != AD_OK) return tape_error(r, err);
    add_gradients(r, l);
    take_influence(r, next.h, r->mh, r->B * r->Hs);
    memcpy(r->h, ad_tensor_data(next.h), r->B * r->Hs * r->es);
    if (r->Hc) {
        take_influence(r, next.c, r->mc, r->B * r->Hc);
        memcpy(r->c, ad_tensor_data(next.c), r->B * r->Hc * r->es);
    }
    if (loss_out) *loss_out = ad_tensor_get(l, 0);
    return AD_OK;
}

size_t nn_rtrl_bytes(const nn_rtrl *r)
{
    return r ? r->bytes + sizeof *r + ad_tape_bytes_reserved(r->tape) : 0;
}
