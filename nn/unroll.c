/*
 * unroll.c - the generic unroller, stacked and bidirectional layers.
 */
#include "unroll.h"
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>

/* [B, 1] constant: 1 where step `step` is valid for the row, 0 where padded;
 * NULL (and *all_valid set) when every row is valid. */
static ad_tensor *step_mask(ad_tape *t, ad_dtype dtype, const int64_t *lengths, int64_t batch,
                            int step, int *all_valid)
{
    *all_valid = 1;
    for (int64_t b = 0; b < batch; b++)
        if (step >= lengths[b]) *all_valid = 0;
    if (*all_valid) return NULL;
    ad_tensor *m = ad_zeros(t, dtype, ad_shape2(batch, 1));
    if (!m) return NULL;
    for (int64_t b = 0; b < batch; b++) {
        double v = step < lengths[b] ? 1.0 : 0.0;
        if (dtype == AD_F32) ad_tensor_f32(m)[b] = (float)v;
        else ad_tensor_f64(m)[b] = v;
    }
    return m;
}

ad_status nn__mask_step(ad_tape *t, const int64_t *lengths, int64_t batch, int step, const nn_state *prev,
                        nn_state *next)
{
    if (!lengths) return ad_tape_status(t);
    int all_valid = 1;
    ad_tensor *m = step_mask(t, ad_tensor_dtype(next->h), lengths, batch, step, &all_valid);
    if (!all_valid) {
        next->h = ad_where(t, m, next->h, prev->h);
        if (next->c) next->c = ad_where(t, m, next->c, prev->c);
    }
    return ad_tape_status(t);
}

/* The input at step k: xs[k], or the previous layer's state in outs[k].h. */
static ad_tensor *input_at(ad_tensor *const *xs, const nn_state *outs, int k)
{
    return xs ? xs[k] : outs[k].h;
}

static ad_status check_args(ad_tape *t, const nn_cell *cell, ad_tensor *const *xs,
                            const nn_state *from, int T, const nn_unroll_options *o)
{
    if (!cell || (!xs && !from))
        return ad_tape_fail(t, AD_ERR_NULL, "unroll: %s is NULL", !cell ? "cell" : "xs");
    if (T < 1) return ad_tape_fail(t, AD_ERR_EMPTY, "unroll %s: empty sequence (T = %d)", cell->name, T);
    for (int k = 0; k < T; k++)
        if (!input_at(xs, from, k))
            return ad_tape_fail(t, AD_ERR_NULL, "unroll %s: input at t=%d is NULL", cell->name, k);
    ad_tensor *x0 = input_at(xs, from, 0);
    if (ad_tensor_rank(x0) != 2)
        return ad_tape_fail(t, AD_ERR_SHAPE, "unroll %s: inputs must be [B, %d], got rank %d",
                            cell->name, cell->input_size, ad_tensor_rank(x0));
    if (o->lengths)
        for (int64_t b = 0; b < ad_tensor_dim(x0, 0); b++)
            if (o->lengths[b] < 1 || o->lengths[b] > T)
                return ad_tape_fail(t, AD_ERR_ARG, "unroll %s: length %lld of row %lld is outside 1..%d",
                                    cell->name, (long long)o->lengths[b], (long long)b, T);
    return AD_OK;
}

int nn__hoist_block(const nn_unroll_options *o, int T)
{
    int blk = o->hoist_block > 0 ? o->hoist_block : NN_UNROLL_HOIST_BLOCK;
    return blk < T ? blk : T;
}

/* The most inputs one concat takes here: longer blocks are joined in groups. */
enum { CONCAT_GROUP = 256 };

ad_tensor *nn__project_block(ad_tape *t, const nn_cell *cell, ad_tensor *const *xs, const nn_state *from,
                             int first, int n, int64_t batch)
{
    ad_tensor *parts[CONCAT_GROUP], *all = NULL;
    for (int k0 = 0; k0 < n; k0 += CONCAT_GROUP) {
        int m = n - k0 < CONCAT_GROUP ? n - k0 : CONCAT_GROUP;
        for (int k = 0; k < m; k++) {
            ad_tensor *x = parts[k] = input_at(xs, from, k0 + k);
            if (ad_tensor_rank(x) != 2 || ad_tensor_dim(x, 0) != batch || ad_tensor_dim(x, 1) != cell->input_size) {
                ad_tape_fail(t, AD_ERR_SHAPE, "%s: x must be [B, %d] at every step (t=%d differs)", cell->name,
                             cell->input_size, first + k0 + k);
                return NULL;
            }
        }
        ad_tensor *g = m == 1 ? parts[0] : ad_concat(t, parts, m, 0);
        all = all ? ad_concat(t, (ad_tensor *[]){all, g}, 2, 0) : g;
    }
    return nn_cell_input_projection(t, cell, all);
}

/* One step of the unroller: its state from gx (the step's rows of a hoisted
 * block) or from its input, masked where padded. */
static ad_status one_step(ad_tape *t, const nn_cell *cell, ad_tensor *const *xs, nn_state *outs,
                          const nn_unroll_options *o, ad_tensor *gx, int step, int64_t batch, nn_state *h)
{
    char label[AD_NAME_SIZE + 16];
    snprintf(label, sizeof label, "%s t=%d", cell->name, step);
    ad_tape_set_label(t, label);
    nn_state next;
    ad_status st = gx ? nn_cell_step_projected(t, cell, gx, h, &next)
                      : nn_cell_step(t, cell, input_at(xs, outs, step), h, &next);
    if (st != AD_OK) return st;
    if (nn__mask_step(t, o->lengths, batch, step, h, &next) != AD_OK) return ad_tape_status(t);
    *h = next;
    if (outs) outs[step] = *h;
    return ad_tape_status(t);
}

/*
 * The unroller. Inputs come from xs, or (stacked layers) from outs[k].h,
 * which step k reads before it overwrites outs[k] with its own state.
 */
static ad_status run(ad_tape *t, const nn_cell *cell, ad_tensor *const *xs, int T,
                     const nn_unroll_options *opts, nn_state *outs, nn_state *last)
{
    if (!t) return AD_ERR_NULL;
    if (ad_tape_status(t) != AD_OK) return ad_tape_status(t);
    nn_unroll_options o = {0};
    if (opts) o = *opts;
    if (check_args(t, cell, xs, outs, T, &o) != AD_OK) return ad_tape_status(t);
    if (o.hoist_block < 0)
        return ad_tape_fail(t, AD_ERR_ARG, "unroll %s: hoist_block = %d is negative", cell->name, o.hoist_block);
    int64_t batch = ad_tensor_dim(input_at(xs, outs, 0), 0);
    if (o.fuse_steps && nn__fuse_check(t, cell, &o) != AD_OK) return ad_tape_status(t);
    nn_state h;
    if (o.h0) h = *o.h0;
    else if (nn_cell_zero_state(t, cell, batch, &h) != AD_OK) return ad_tape_status(t);
    /* recomputation, and the per-step loss: unroll_recompute.c */
    if (o.recompute || o.step_loss || o.loss) return nn__unroll_recompute(t, cell, 1, xs, T, &o, &h, outs, last);
    int hoist = o.hoist_input && cell->kind != NN_CELL_CUSTOM;
    int blk = hoist ? nn__hoist_block(&o, T) : T;
    /* Blocks of processing order k; reversed, a block is steps T-k0-nb..T-k0-1. */
    for (int k0 = 0; k0 < T && ad_tape_status(t) == AD_OK; k0 += blk) {
        int nb = T - k0 < blk ? T - k0 : blk, lo = o.reverse ? T - k0 - nb : k0;
        /* Stacked layers read outs[lo..].h here, before this block's steps overwrite them. */
        ad_tensor *gx = hoist ? nn__project_block(t, cell, xs ? xs + lo : NULL, xs ? NULL : outs + lo, lo, nb, batch)
                              : NULL;
        if (o.fuse_steps) nn__fused_block(t, cell, gx, lo, nb, batch, outs, &h); /* unroll_fused.c */
        for (int k = k0; k < k0 + nb && !o.fuse_steps && ad_tape_status(t) == AD_OK; k++) {
            int step = o.reverse ? T - 1 - k : k;
            ad_tensor *g = gx ? ad_slice(t, gx, 0, (int64_t)(step - lo) * batch, batch) : NULL;
            one_step(t, cell, xs, outs, &o, g, step, batch, &h);
        }
        /* The steps read the block through views, and no gate's backward
         * needs it: its buffer is free for the next block (and, in backward,
         * for its gradient of the same size). */
        if (gx && ad_tape_status(t) == AD_OK) ad_tape_release(t, gx);
    }
    ad_tape_set_label(t, NULL);
    if (last && ad_tape_status(t) == AD_OK) *last = h;
    return ad_tape_status(t);
}

/* [batch, n]: zeros, plus the [1, n] parameter p broadcast over the rows. */
static ad_tensor *broadcast_state(ad_tape *t, const nn_cell *cell, ad_tensor *zeros, ad_param *p)
{
    if (!p) return zeros;
    ad_shape s = ad_tensor_shape(ad_param_value(p));
    int64_t n = ad_tensor_dim(zeros, 1);
    if (s.rank != 2 || s.dim[0] != 1 || s.dim[1] != n) {
        ad_tape_fail(t, AD_ERR_SHAPE, "%s: learnable initial state '%s' must be [1, %lld]", cell->name,
                     ad_param_name(p), (long long)n);
        return NULL;
    }
    return ad_add(t, zeros, ad_use(t, p));
}

ad_status nn_initial_state(ad_tape *t, const nn_cell *cell, int64_t batch, ad_param *h0,
                           ad_param *c0, nn_state *out)
{
    if (nn_cell_zero_state(t, cell, batch, out) != AD_OK) return ad_tape_status(t);
    out->h = broadcast_state(t, cell, out->h, h0);
    if (cell->has_c) out->c = broadcast_state(t, cell, out->c, c0);
    return ad_tape_status(t);
}

ad_status nn_unroll(ad_tape *t, const nn_cell *cell, ad_tensor *const *xs, int T,
                    const nn_unroll_options *opts, nn_state *outs, nn_state *last)
{
    if (t && !xs) return ad_tape_fail(t, AD_ERR_NULL, "unroll: xs is NULL");
    return run(t, cell, xs, T, opts, outs, last);
}

/* Whether the options ask for dropout, which must then be well-formed. */
static ad_status check_dropout(ad_tape *t, const nn_unroll_options *o)
{
    if (!(o->dropout >= 0.0 && o->dropout < 1.0))
        return ad_tape_fail(t, AD_ERR_ARG, "unroll_layers: dropout %g is outside [0, 1)", o->dropout);
    if (o->train && o->dropout > 0.0 && !o->rng)
        return ad_tape_fail(t, AD_ERR_NULL, "unroll_layers: dropout %g in training needs an rng",
                            o->dropout);
    return AD_OK;
}

/*
 * Dropout on one layer's outputs, which the next layer reads as its inputs:
 * a fresh mask at every step, or (variational) one [B, H] mask, drawn once,
 * for all of them. The layer's final state (lasts) is not dropped.
 */
static void drop_outputs(ad_tape *t, const nn_unroll_options *o, nn_state *outs, int T)
{
    if (!o->train || o->dropout == 0.0) return;
    ad_tensor *mask = NULL;
    if (o->variational) {
        ad_tensor *h = outs[0].h;
        mask = ad_dropout(t, ad_ones(t, ad_tensor_dtype(h), ad_tensor_shape(h)), o->dropout, 1, o->rng);
    }
    for (int k = 0; k < T; k++)
        outs[k].h = mask ? ad_mul(t, outs[k].h, mask) : ad_dropout(t, outs[k].h, o->dropout, 1, o->rng);
}

/* nn_unroll_layers() with recompute or step_loss: every layer in each
 * segment (unroll_recompute.c), from opts->h0 or zero states. */
static ad_status layers_recompute(ad_tape *t, const nn_cell *cells, int n_layers, ad_tensor *const *xs, int T,
                                  const nn_unroll_options *o, nn_state *outs, nn_state *lasts)
{
    if (check_args(t, &cells[0], xs, NULL, T, o) != AD_OK) return ad_tape_status(t);
    for (int l = 1; l < n_layers; l++)
        if (cells[l].input_size != nn_cell_output_size(&cells[l - 1]))
            return ad_tape_fail(t, AD_ERR_SHAPE, "unroll_layers: layer %d (%s) takes %d inputs, layer %d gives %d", l,
                                cells[l].name, cells[l].input_size, l - 1, nn_cell_output_size(&cells[l - 1]));
    nn_state *h0 = malloc(sizeof *h0 * (size_t)n_layers);
    if (!h0) return ad_tape_fail(t, AD_ERR_NOMEM, "unroll_layers: out of memory");
    int64_t batch = ad_tensor_dim(xs[0], 0);
    for (int l = 0; l < n_layers; l++) {
        if (o->h0) h0[l] = o->h0[l];
        else if (nn_cell_zero_state(t, &cells[l], batch, &h0[l]) != AD_OK) break;
    }
    if (ad_tape_status(t) == AD_OK) nn__unroll_recompute(t, cells, n_layers, xs, T, o, h0, outs, lasts);
    free(h0);
    return ad_tape_status(t);
}

ad_status nn_unroll_layers(ad_tape *t, const nn_cell *cells, int n_layers, ad_tensor *const *xs,
                           int T, const nn_unroll_options *opts, nn_state *outs, nn_state *lasts)
{
    if (!t) return AD_ERR_NULL;
    int rc = opts && (opts->recompute || opts->step_loss || opts->loss); /* outs optional */
    if (!cells || (!outs && !rc) || !xs)
        return ad_tape_fail(t, AD_ERR_NULL, "unroll_layers: %s is NULL",
                            !cells ? "cells" : !xs ? "xs" : "outs");
    if (n_layers < 1) return ad_tape_fail(t, AD_ERR_EMPTY, "unroll_layers: no layers");
    nn_unroll_options o = {0};
    if (opts) o = *opts;
    if (check_dropout(t, &o) != AD_OK) return ad_tape_status(t);
    if (o.recompute || o.step_loss || o.loss) return layers_recompute(t, cells, n_layers, xs, T, &o, outs, lasts);
    for (int l = 0; l < n_layers; l++) {
        o.h0 = opts && opts->h0 ? &opts->h0[l] : NULL;
        nn_state last;
        if (run(t, &cells[l], l == 0 ? xs : NULL, T, &o, outs, &last) != AD_OK) break;
        if (lasts) lasts[l] = last;
        if (l + 1 < n_layers) drop_outputs(t, &o, outs, T);
    }
    return ad_tape_status(t);
}

ad_status nn_unroll_bidirectional(ad_tape *t, const nn_cell *fwd, const nn_cell *bwd,
                                  ad_tensor *const *xs, int T, const nn_unroll_options *opts,
                                  nn_state *outs_fwd, nn_state *outs_bwd, ad_tensor **cat)
{
    if (!t) return AD_ERR_NULL;
    if (!outs_fwd || !outs_bwd || !cat || !xs)
        return ad_tape_fail(t, AD_ERR_NULL, "unroll_bidirectional: an output array or xs is NULL");
    nn_unroll_options o = {0};
    if (opts) o = *opts;
    if (o.step_loss || o.loss)
        return ad_tape_fail(t, AD_ERR_ARG, "unroll_bidirectional: step_loss is not supported with bidirectional "
                                           "layers (a step's output needs both directions: put the head after "
                                           "the layer; recompute works)");
    if (o.fuse_steps)
        return ad_tape_fail(t, AD_ERR_ARG, "unroll_bidirectional: fuse_steps needs the forward direction (the "
                                           "backward one runs in reverse)");
    o.reverse = 0;
    o.h0 = opts && opts->h0 ? &opts->h0[0] : NULL;
    if (run(t, fwd, xs, T, &o, outs_fwd, NULL) != AD_OK) return ad_tape_status(t);
    o.reverse = 1;
    o.h0 = opts && opts->h0 ? &opts->h0[1] : NULL;
    if (run(t, bwd, xs, T, &o, outs_bwd, NULL) != AD_OK) return ad_tape_status(t);
    for (int k = 0; k < T; k++) {
        ad_tensor *pair[2] = {outs_fwd[k].h, outs_bwd[k].h};
        cat[k] = ad_concat(t, pair, 2, 1);
    }
    return ad_tape_status(t);
}
