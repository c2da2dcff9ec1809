/*
 * tbptt.c - the TBPTT(k1, k2) driver.
 *
 * State S_s is the state after s steps (S_0 the initial state). The driver
 * keeps the values of the last min(k2, steps) + 1 states in a ring (host memory, f64),
 * so the segment ending at step e can start from S_{e-k2} as a constant.
 */
#include "tbptt.h"
#include "unroll.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct ring {
    double *v;      /* min(k2, steps) + 1 slots of `per` values: h then c */
    size_t bh, bc;  /* batch * (the size of h), batch * H (c; 0 without one) */
    size_t per;     /* bh + bc */
    int64_t slots;
} ring;

static double *slot(ring *r, int64_t s) { return r->v + (size_t)(s % r->slots) * r->per; }

/* Copies the state's values (f32 or f64) into a ring slot. */
static void keep_state(ring *r, int64_t s, const nn_state *st)
{
    double *d = slot(r, s);
    for (size_t i = 0; i < r->bh; i++) d[i] = ad_tensor_get(st->h, i);
    for (size_t i = 0; st->c && i < r->bc; i++) d[r->bh + i] = ad_tensor_get(st->c, i);
}

/* S_s as constants on the tape. */
static ad_status load_state(ad_tape *t, const nn_cell *cell, ring *r, int64_t s, int64_t batch,
                            nn_state *out)
{
    ad_dtype dt = ad_tensor_dtype(ad_param_value(nn_cell_weight(cell, 0)));
    out->h = ad_from_f64(t, dt, ad_shape2(batch, nn_cell_output_size(cell)), slot(r, s));
    out->c = cell->has_c ? ad_from_f64(t, dt, ad_shape2(batch, cell->hidden_size), slot(r, s) + r->bh) : NULL;
    return ad_tape_status(t);
}

static ad_status tape_err(ad_tape *t, ad_error *err)
{
    ad_status st = ad_tape_status(t);
    if (st == AD_OK) st = AD_ERR_STATE;
    char msg[300];
    snprintf(msg, sizeof msg, "tbptt: %s", ad_tape_message(t));
    return ad_error_set(err, st, "%s", msg);
}

/* Records steps [s0, e) from *h, keeping every state in the ring; *total
 * gets the sum of the losses of steps >= first_loss (NULL: none). */
static ad_status steps_plain(ad_tape *t, const nn_cell *cell, ring *r, int64_t s0, int64_t e, int64_t first_loss,
                             nn_tbptt_input_fn input, nn_tbptt_loss_fn loss, void *ctx, nn_state *h,
                             ad_tensor **total)
{
    for (int64_t s = s0; s < e; s++) {
        char label[AD_NAME_SIZE + 24];
        snprintf(label, sizeof label, "%s t=%lld", cell->name, (long long)s);
        ad_tape_set_label(t, label);
        nn_state next;
        ad_tensor *x = input(t, s, ctx);
        if (!x && ad_tape_status(t) == AD_OK) ad_tape_fail(t, AD_ERR_NULL, "input of step %lld is NULL", (long long)s);
        if (!x || nn_cell_step(t, cell, x, h, &next) != AD_OK) return ad_tape_status(t);
        *h = next;
        keep_state(r, s + 1, h);
        if (s < first_loss) continue;
        ad_tensor *l = loss(t, h, s, ctx);
        if (ad_tape_status(t) != AD_OK) return ad_tape_status(t);
        if (l) *total = *total ? ad_add(t, *total, l) : l;
    }
    ad_tape_set_label(t, NULL);
    return ad_tape_status(t);
}

/* The caller's loss as nn_unroll's step_loss: it also keeps each state in
 * the ring (again, with the same values, when a region is recomputed), and
 * a step without a loss adds an exact zero. */
typedef struct step_loss_ctx {
    ring *r;
    int64_t s0, first_loss;
    nn_tbptt_loss_fn loss;
    void *ctx;
    ad_dtype dtype;
    int any; /* some step had a loss */
} step_loss_ctx;

static ad_tensor *step_loss(ad_tape *t, void *vc, int step, const nn_state *h)
{
    step_loss_ctx *c = vc;
    int64_t s = c->s0 + step;
    keep_state(c->r, s + 1, h);
    ad_tensor *l = s < c->first_loss ? NULL : c->loss(t, h, s, c->ctx);
    if (ad_tape_status(t) != AD_OK) return NULL;
    if (!l) return ad_zeros(t, c->dtype, ad_shape0());
    c->any = 1;
    return l;
}

/* Steps [s0, e) through nn_unroll with the options' recomputation: the
 * inputs are made first, the losses are summed by the unroller. *lc is the
 * head's context, which the regions read again in backward: it lives in the
 * caller, which runs backward. */
static ad_status steps_recompute(ad_tape *t, const nn_cell *cell, const nn_tbptt_options *o, ring *r, int64_t s0,
                                 int64_t e, int64_t first_loss, nn_tbptt_input_fn input, nn_tbptt_loss_fn loss,
                                 void *ctx, step_loss_ctx *lc, nn_state *h, ad_tensor **total)
{
    int n = (int)(e - s0);
    ad_tensor **xs = malloc(sizeof *xs * (size_t)n);
    if (!xs) return ad_tape_fail(t, AD_ERR_NOMEM, "out of memory for %d inputs", n);
    for (int k = 0; k < n && ad_tape_status(t) == AD_OK; k++)
        if (!(xs[k] = input(t, s0 + k, ctx)) && ad_tape_status(t) == AD_OK)
            ad_tape_fail(t, AD_ERR_NULL, "input of step %lld is NULL", (long long)(s0 + k));
    *lc = (step_loss_ctx){r, s0, first_loss, loss, ctx, ad_tensor_dtype(h->h), 0};
    nn_unroll_options uo = {.h0 = h, .recompute = o->recompute, .segments = o->segments, .slots = o->slots,
                            .step_loss = step_loss, .step_loss_ctx = lc, .loss = total};
    nn_state last;
    if (ad_tape_status(t) == AD_OK && nn_unroll(t, cell, xs, n, &uo, NULL, &last) == AD_OK) {
        *h = last;
        if (!lc->any) *total = NULL;
    }
    free(xs);
    return ad_tape_status(t);
}

/* One segment: steps [s0, e) from S_{s0}; losses of steps >= first_loss. */
static ad_status segment(ad_tape *t, const nn_cell *cell, nn_params *ps, const nn_tbptt_options *o,
                         ring *r, int64_t s0, int64_t e, int64_t first_loss,
                         nn_tbptt_input_fn input, nn_tbptt_loss_fn loss, void *ctx, double *value,
                         ad_error *err)
{
    ad_tape_reset(t);
    nn_state h;
    if (load_state(t, cell, r, s0, o->batch, &h) != AD_OK) return tape_err(t, err);
    ad_tensor *total = NULL;
    step_loss_ctx lc; /* read by the recomputation during backward below */
    ad_status st = o->recompute ? steps_recompute(t, cell, o, r, s0, e, first_loss, input, loss, ctx, &lc, &h, &total)
                                : steps_plain(t, cell, r, s0, e, first_loss, input, loss, ctx, &h, &total);
    if (st != AD_OK) return tape_err(t, err);
    *value = 0;
    if (!total) return AD_OK; /* no loss in this segment: nothing to backpropagate */
    if (ps) nn_params_zero_grad(ps);
    if (ad_backward(t, total, NULL) != AD_OK) return tape_err(t, err);
    *value = ad_tensor_item(total);
    return AD_OK;
}

ad_status nn_tbptt_run(ad_tape *t, const nn_cell *cell, nn_params *ps, const nn_tbptt_options *o,
                       nn_tbptt_input_fn input, nn_tbptt_loss_fn loss, nn_tbptt_update_fn update,
                       void *ctx, ad_error *err)
{
    if (!t || !cell || !o || !input || !loss)
        return ad_error_set(err, AD_ERR_NULL, "tbptt: tape, cell, options, input or loss is NULL");
    if (o->k1 < 1 || o->k2 < o->k1)
        return ad_error_set(err, AD_ERR_ARG, "tbptt: needs k2 >= k1 >= 1");
    if (o->steps < 1) return ad_error_set(err, AD_ERR_EMPTY, "tbptt: empty sequence");
    if (o->recompute < NN_RECOMPUTE_OFF || o->recompute > NN_RECOMPUTE_SLOTS)
        return ad_error_set(err, AD_ERR_ARG, "tbptt: recompute = %d is not an nn_recompute_mode", o->recompute);
    if (o->recompute == NN_RECOMPUTE_SEGMENTS && o->segments < 0)
        return ad_error_set(err, AD_ERR_ARG, "tbptt: recompute segments = %d is negative", o->segments);
    if (o->recompute == NN_RECOMPUTE_SLOTS && o->slots < 1)
        return ad_error_set(err, AD_ERR_ARG, "tbptt: recompute slots = %d, need at least 1", o->slots);
    if (o->batch < 1 || cell->n_w < 1 || !nn_cell_weight(cell, 0))
        return ad_error_set(err, AD_ERR_ARG, "tbptt: batch must be >= 1 and the cell must have weights");
    size_t bh = (size_t)o->batch * (size_t)nn_cell_output_size(cell);
    size_t bc = cell->has_c ? (size_t)o->batch * (size_t)cell->hidden_size : 0;
    /* States S_0..S_steps: a ring of more than `steps` slots never wraps, so
     * k2 beyond the sequence needs no more (and k2 + 1 is not computed in int). */
    ring r = {NULL, bh, bc, bh + bc, (o->k2 < o->steps ? (int64_t)o->k2 : o->steps) + 1};
    size_t ring_numel;
    r.v = __builtin_mul_overflow((size_t)r.slots, r.per, &ring_numel) ? NULL : calloc(ring_numel, sizeof *r.v);
    if (!r.v) return ad_error_set(err, AD_ERR_NOMEM, "tbptt: out of memory");
    if (o->h0) memcpy(r.v, o->h0, bh * sizeof *r.v);
    if (o->c0 && cell->has_c) memcpy(r.v + bh, o->c0, bc * sizeof *r.v);
    ad_status st = AD_OK;
    int64_t seg = 0;
    for (int64_t e = o->k1 < o->steps ? o->k1 : o->steps; st == AD_OK; seg++) {
        int64_t first_loss = seg * (int64_t)o->k1; /* the steps new to this segment */
        /* k2 steps back from the segment's nominal end (first_loss + k1), so a
         * short last segment with k1 = k2 is just the remaining steps */
        int64_t s0 = first_loss + o->k1 - o->k2 > 0 ? first_loss + o->k1 - o->k2 : 0;
        double value = 0;
        st = segment(t, cell, ps, o, &r, s0, e, first_loss, input, loss, ctx, &value, err);
        if (st == AD_OK && update) {
            st = update(seg, value, ctx);
            if (st != AD_OK) ad_error_set(err, st, "tbptt: the update callback stopped the run");
        }
        if (e == o->steps) break;
        e = e + o->k1 < o->steps ? e + o->k1 : o->steps;
    }
    free(r.v);
    if (st == AD_OK) ad_error_set(err, AD_OK, NULL);
    return st;
}
