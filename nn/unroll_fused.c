/*
 * unroll_fused.c - nn_unroll_options.fuse_steps: each hoisted block of an
 * Elman or GRU layer's steps as one ad_rnn_sequence / ad_gru_sequence node.
 *
 * Step by step, a block of nb steps records a slice of the block's
 * projection, copies of W_hh and b_hh, h W_hh^T + b_hh and the gates: 5 nb
 * nodes, whose recording costs more than their arithmetic in a small net.
 * Fused, it records the copies once, the sequence node, and one view per
 * step for outs: about nb + 4 (the Elman cell adds b_hh to the block's
 * projection once; the GRU's node takes it, as r multiplies it). The states
 * and gradients equal the step-by-step unroll's up to rounding (the Elman
 * b_hh joins gx before h W_hh^T, and W_hh's gradient is one product over
 * the block): tests/test_nn_fuse_steps.c.
 */
#include <stdio.h>

#include "internal.h"
#include "unroll.h"

ad_status nn__fuse_check(ad_tape *t, const nn_cell *cell, const nn_unroll_options *o)
{
    const char *why = NULL;
    if (cell->kind != NN_CELL_RNN_TANH && cell->kind != NN_CELL_RNN_RELU && cell->kind != NN_CELL_GRU)
        why = "a built-in Elman or GRU cell";
    else if (cell->step != nn_builtin_step) why = "the built-in step (the cell's step is replaced)";
    else if (!o->hoist_input) why = "hoist_input";
    else if (o->lengths) why = "no lengths (masked steps run one by one)";
    else if (o->reverse) why = "the forward direction (not reverse)";
    else if (o->recompute || o->step_loss || o->loss) why = "store-all (not recompute or step_loss)";
    if (!why) return AD_OK;
    return ad_tape_fail(t, AD_ERR_ARG, "unroll %s: fuse_steps needs %s", cell->name, why);
}

ad_status nn__fused_block(ad_tape *t, const nn_cell *cell, ad_tensor *gx, int first, int nb, int64_t batch,
                          nn_state *outs, nn_state *h)
{
    char label[AD_NAME_SIZE + 32];
    snprintf(label, sizeof label, "%s t=%d..%d", cell->name, first, first + nb - 1);
    ad_tape_set_label(t, label);
    ad_tensor *w = ad_use(t, cell->w[1]); /* W_hh, then b_hh: the order of the step-by-step copies */
    ad_tensor *b = cell->has_bias ? ad_use(t, cell->w[3]) : NULL, *pre = gx, *states;
    if (cell->kind == NN_CELL_GRU) {
        if (!b) b = ad_zeros(t, ad_tensor_dtype(gx), ad_shape1(3 * (int64_t)cell->hidden_size));
        states = ad_gru_sequence(t, gx, h->h, w, b, AD_TRANS_B);
    } else {
        if (b) pre = ad_add(t, gx, b);
        states = ad_rnn_sequence(t, pre, h->h, w, cell->kind == NN_CELL_RNN_RELU ? AD_RNN_RELU : AD_RNN_TANH,
                                 AD_TRANS_B);
    }
    /* the sequence keeps its states, not its input: b_hh's sum goes back */
    if (pre != gx && ad_tape_status(t) == AD_OK) ad_tape_release(t, pre);
    for (int k = 0; k < nb && ad_tape_status(t) == AD_OK; k++) {
        ad_tensor *hk = nb == 1 ? states : ad_slice(t, states, 0, (int64_t)k * batch, batch);
        if (outs) outs[first + k] = (nn_state){hk, NULL};
        if (k == nb - 1) h->h = hk;
    }
    return ad_tape_status(t);
}
