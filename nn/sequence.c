/*
 * sequence.c - the unrollers over sequence tensors ([T, B, I] or batch-first
 * [B, T, I]), as PyTorch's recurrent modules take them, built on the array
 * form of unroll.c.
 */
#include "unroll.h"

#include <stdlib.h>

/* The step inputs of a [T, B, I] tensor: one reshape to [T B, I] and row
 * slices of it, which are views (contiguous blocks), not copies. */
static ad_status step_views(ad_tape *t, const nn_cell *cell, ad_tensor *x, const nn_unroll_options *o,
                            ad_tensor **xs, int64_t *T_out, int64_t *B_out)
{
    const char *fn = o->batch_first ? "unroll_seq (batch_first)" : "unroll_seq";
    if (ad_tensor_rank(x) != 3)
        return ad_tape_fail(t, AD_ERR_SHAPE, "%s %s: x must be %s, got rank %d", fn, cell->name,
                            o->batch_first ? "[B, T, I]" : "[T, B, I]", ad_tensor_rank(x));
    if (o->batch_first) x = ad_transpose(t, x, 0, 1); /* one copy into time-major order */
    int64_t T = ad_tensor_dim(x, 0), B = ad_tensor_dim(x, 1), I = ad_tensor_dim(x, 2);
    if (T < 1) return ad_tape_fail(t, AD_ERR_EMPTY, "%s %s: empty sequence (T = 0)", fn, cell->name);
    if (I != cell->input_size)
        return ad_tape_fail(t, AD_ERR_SHAPE, "%s %s: the input size is %lld, the cell takes %d", fn,
                            cell->name, (long long)I, cell->input_size);
    ad_tensor *rows = ad_reshape(t, x, ad_shape2(T * B, I));
    for (int64_t k = 0; k < T; k++) xs[k] = ad_slice(t, rows, 0, k * B, B);
    *T_out = T;
    *B_out = B;
    return ad_tape_status(t);
}

/* [T, B, H] (or [B, T, H]) from the states of T steps. */
static ad_tensor *gather_states(ad_tape *t, const nn_state *outs, int64_t T, int64_t B, int batch_first,
                                ad_tensor **scratch)
{
    for (int64_t k = 0; k < T; k++) scratch[k] = outs[k].h;
    ad_tensor *rows = ad_concat(t, scratch, (int)T, 0); /* [T B, H], step-major */
    int64_t H = ad_tensor_dim(rows, 1);
    ad_tensor *y = ad_reshape(t, rows, ad_shape3(T, B, H));
    return batch_first ? ad_transpose(t, y, 0, 1) : y;
}

/* The work shared by both forms: n_layers 0 means a single nn_unroll(). */
static ad_status unroll_seq(ad_tape *t, const nn_cell *cells, int n_layers, ad_tensor *x,
                            const nn_unroll_options *opts, ad_tensor **y, nn_state *last)
{
    if (!t) return AD_ERR_NULL;
    if (ad_tape_status(t) != AD_OK) return ad_tape_status(t);
    if (!cells || !x || !y)
        return ad_tape_fail(t, AD_ERR_NULL, "unroll_seq: %s is NULL", !cells ? "cell" : !x ? "x" : "y");
    nn_unroll_options o = {0};
    if (opts) o = *opts;
    int64_t T0 = ad_tensor_dim(x, o.batch_first ? 1 : 0);
    if (T0 > (int64_t)1 << 30)
        return ad_tape_fail(t, AD_ERR_ARG, "unroll_seq: %lld steps is more than one call handles", (long long)T0);
    size_t n = T0 > 0 ? (size_t)T0 : 1;
    ad_tensor **xs = malloc(n * sizeof *xs);
    nn_state *outs = malloc(n * sizeof *outs);
    if (!xs || !outs) {
        free(xs);
        free(outs);
        return ad_tape_fail(t, AD_ERR_NOMEM, "unroll_seq: out of memory for %zu steps", n);
    }
    int64_t T = 0, B = 0;
    if (step_views(t, &cells[0], x, &o, xs, &T, &B) == AD_OK) {
        ad_status st = n_layers == 0 ? nn_unroll(t, cells, xs, (int)T, &o, outs, last)
                                     : nn_unroll_layers(t, cells, n_layers, xs, (int)T, &o, outs, last);
        if (st == AD_OK) *y = gather_states(t, outs, T, B, o.batch_first, xs);
    }
    free(xs);
    free(outs);
    return ad_tape_status(t);
}

ad_status nn_unroll_seq(ad_tape *t, const nn_cell *cell, ad_tensor *x, const nn_unroll_options *opts,
                        ad_tensor **y, nn_state *last)
{
    return unroll_seq(t, cell, 0, x, opts, y, last);
}

ad_status nn_unroll_layers_seq(ad_tape *t, const nn_cell *cells, int n_layers, ad_tensor *x,
                               const nn_unroll_options *opts, ad_tensor **y, nn_state *lasts)
{
    if (t && n_layers < 1) return ad_tape_fail(t, AD_ERR_EMPTY, "unroll_layers_seq: no layers");
    return unroll_seq(t, cells, n_layers, x, opts, y, lasts);
}

ad_status nn_targets_time_major(const int64_t *targets, int64_t B, int64_t T, int64_t *out, ad_error *err)
{
    if (!targets || !out)
        return ad_error_set(err, AD_ERR_NULL, "nn_targets_time_major: %s is NULL", !targets ? "targets" : "out");
    if (B < 1 || T < 1)
        return ad_error_set(err, AD_ERR_ARG, "nn_targets_time_major: B = %lld and T = %lld must be at least 1",
                            (long long)B, (long long)T);
    for (int64_t b = 0; b < B; b++)
        for (int64_t k = 0; k < T; k++) out[k * B + b] = targets[b * T + k];
    return ad_error_set(err, AD_OK, NULL);
}
