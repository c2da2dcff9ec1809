/**
 * @file
 * recompute_plan.h - how a long sequence is cut into recomputed segments.
 *
 * A schedule for T steps is a tree of segments of [0,T). A checkpointed
 * segment keeps only its input and output states during the forward pass and
 * is run again during backward; a plain segment records its steps. Two
 * schedules are built here:
 *
 * - nn_recompute_plan_segments(): k equal checkpointed segments side by side
 *   (k = ceil(sqrt(T)) by default, Chen et al. 2016): every step runs twice.
 * - nn_recompute_plan_slots(): the binomial schedule of Griewank & Walther's
 *   revolve for s checkpoint slots (the segment's starting state counts as
 *   one), as nested segments. With r the least repetition number such that
 *   l <= beta(s, r) = C(s + r, s), revolve needs t(l, s) = r l -
 *   beta(s + 1, r - 1) forward steps; a segment of length l is split at m
 *   with m in [beta(s, r-2), beta(s, r-1)] and l - m in [beta(s-1, r-1),
 *   beta(s-1, r)], which reaches that optimum: the left part is reversed
 *   later with s slots, the rest with s - 1 (the state at m holds one). A
 *   segment of l <= s + 1 steps is plain: nothing in it is recomputed.
 *
 *     nn_recompute_plan sch;
 *     nn_recompute_plan_slots(10000, 8, &sch, &err);
 *     for (int i = 0; i < sch.n; i++)      // preorder: parents before children
 *         use(sch.node[i].begin, sch.node[i].end, sch.node[i].parent);
 *     nn_recompute_plan_free(&sch);
 */
#ifndef UNROLL_NN_RECOMPUTE_PLAN_H
#define UNROLL_NN_RECOMPUTE_PLAN_H

#include "../autodiff/autodiff.h"

#ifdef __cplusplus
extern "C" {
#endif

/** One segment [begin, end) of a schedule. */
typedef struct nn_recompute_segment {
    /** First step of the segment. */
    int begin;
    /** One past the last step of the segment. */
    int end;
    /** Index of the enclosing checkpointed segment in nn_recompute_plan.node, -1 at the top level. */
    int parent;
    /** 1: the segment runs under a checkpoint (its steps are run again in backward); 0: plain steps. */
    int checkpointed;
    /** Checkpoint slots the segment may use when it is reversed, its starting state included (revolve's s; 0 in the equal-segment plan). */
    int slots;
    /** Number of enclosing checkpointed segments, the node itself included if checkpointed. */
    int depth;
} nn_recompute_segment;

/** A schedule: segments in preorder (a node's children follow it, left to right). */
typedef struct nn_recompute_plan {
    /** Number of steps covered. */
    int T;
    /** Number of nodes in node[]. */
    int n;
    /** The nodes (owned; free with nn_recompute_plan_free). */
    nn_recompute_segment *node;
} nn_recompute_plan;

/**
 * Cuts [0,T) into `segments` checkpointed segments of equal length (the
 * first T % segments are one step longer); segments = 0 means ceil(sqrt(T)),
 * and a count above T is cut to T. Fills *out (free it with
 * nn_recompute_plan_free). Returns AD_ERR_NULL for out NULL, AD_ERR_EMPTY for
 * T < 1, AD_ERR_ARG for segments < 0, AD_ERR_NOMEM.
 */
NN_API ad_status nn_recompute_plan_segments(int T, int segments, nn_recompute_plan *out, ad_error *err);

/**
 * The binomial (revolve) schedule of [0,T) for `slots` checkpoint slots, as
 * nested checkpointed segments (see the file comment for the split rule).
 * T <= slots + 1 gives one plain segment (nothing is recomputed). Returns
 * AD_ERR_NULL for out NULL, AD_ERR_EMPTY for T < 1, AD_ERR_ARG for slots < 1,
 * AD_ERR_NOMEM.
 */
NN_API ad_status nn_recompute_plan_slots(int T, int slots, nn_recompute_plan *out, ad_error *err);

/**
 * Steps run again during backward when every checkpointed segment is re-run
 * once: the sum of the checkpointed segments' lengths (a step nested d deep
 * runs d extra times). 0 for NULL.
 */
NN_API long nn_recompute_plan_reruns(const nn_recompute_plan *s);

/** Frees the nodes of *s and zeroes it; NULL is allowed. */
NN_API void nn_recompute_plan_free(nn_recompute_plan *s);

#ifdef __cplusplus
}
#endif
#endif
