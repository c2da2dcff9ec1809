/*
 * replay.c - running a recorded tape's forward again (ad_tape_replay), for
 * loops whose graph is the same every step: the nodes, their shapes, their
 * output buffers and what they save stay; only the values are computed
 * again, from the leaves' and parameters' present data.
 *
 * The replay point: the first backward after the last recorded node marks
 * where the arena stood; a replay returns the arena there, so the memory of
 * the passes in between (gradients, packed weights, scratch) is reused and a
 * loop of replays runs in constant memory. Forwards of a replay reuse the
 * buffers their first run saved (ad__saved_array); what else they take is
 * past the point.
 */
#include "internal.h"

void ad__replay_mark(ad_tape *t)
{
    ad__replay_point *r = &t->replay;
    size_t n;
    ad__tape_nodes(t, &n);
    if (r->marked && r->nodes == n) return;
    r->marked = 1;
    r->checked = 0;
    r->nodes = n;
    r->arena = ad__arena_where(t);
}

/* Fails the tape at the first node a replay cannot run again: a
 * checkpointed region records its steps on a scratch tape at each run, and
 * a training dropout forgot its generator once its mask was drawn. */
static ad_status check_nodes(ad_tape *t, ad_node *const *nodes, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        const ad_node *n = nodes[i];
        if (n->op == AD_OP_CHECKPOINT)
            return ad_tape_fail(t, AD_ERR_STATE,
                                "tape_replay: node %zu is a checkpointed region, which records on a scratch "
                                "tape at each run; record the tape again instead",
                                i);
        if (n->op == AD_OP_DROPOUT && ad__dropout_draws(n))
            return ad_tape_fail(t, AD_ERR_STATE,
                                "tape_replay: node %zu is a dropout in training, whose generator is not kept "
                                "after it drew its mask; record the tape again instead",
                                i);
    }
    return AD_OK;
}

ad_status ad_tape_replay(ad_tape *t)
{
    if (!t) return AD_ERR_NULL;
    if (ad__status(t) != AD_OK) return ad__status(t);
    size_t count;
    ad_node *const *nodes = ad__tape_nodes(t, &count);
    if (count == 0) return ad_tape_fail(t, AD_ERR_EMPTY, "tape_replay: the tape holds no nodes (record them first)");
    if (ad__tape_probing(t))
        return ad_tape_fail(t, AD_ERR_STATE, "tape_replay: a gradient check probes this tape's parameter copies");
    ad__replay_point *r = &t->replay;
    if (r->marked && r->nodes == count) {
        ad__arena_rewind(t, &r->arena);
    } else { /* nodes recorded since the last backward: their memory stays */
        ad__replay_mark(t);
    }
    if (!r->checked) {
        if (check_nodes(t, nodes, count) != AD_OK) return ad__status(t);
        r->checked = 1;
    }
    /* What lived past the point is gone: the buffers handed back, the
     * stacked rows, the packed weights (the values change), the Gram scratch
     * and forward mode's tangents. The new pass makes every gradient of a
     * tape tensor from before stale. */
    ad__pool_reset(t);
    ad__stack_reset(t);
    ad__packs_reset(t);
    ad__gram_reset(t);
    ad__tangents_reset(t);
    ad__tape_next_pass(t);
    int anomaly = ad__tape_anomaly(t);
    for (size_t i = 0; i < count; i++) {
        ad_node *n = nodes[i];
        if (n->n_in == 0) continue; /* leaves: their data is the present value */
        if (ad__ops[n->op].forward(t, n) != AD_OK || ad__status(t) != AD_OK) return ad__status(t);
        if (anomaly) {
            ad__check_forward_anomaly(t, n);
            if (ad__status(t) != AD_OK) return ad__status(t);
        }
    }
    return AD_OK;
}
