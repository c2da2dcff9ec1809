/*
 * recompute_plan.c - segment trees for recomputation: equal segments and the
 * binomial (revolve) schedule.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "recompute_plan.h"

typedef struct builder {
    nn_recompute_plan *s;
    int cap;
} builder;

static int push(builder *b, int begin, int end, int parent, int ckpt, int slots, int depth)
{
    if (b->s->n == b->cap) {
        int cap = b->cap ? 2 * b->cap : 16;
        nn_recompute_segment *p = realloc(b->s->node, (size_t)cap * sizeof *p);
        if (!p) return -1;
        b->s->node = p;
        b->cap = cap;
    }
    b->s->node[b->s->n] = (nn_recompute_segment){begin, end, parent, ckpt, slots, depth};
    return b->s->n++;
}

static ad_status check(const char *fn, int T, nn_recompute_plan *out, ad_error *err)
{
    if (!out) return ad_error_set(err, AD_ERR_NULL, "%s: out is NULL", fn);
    memset(out, 0, sizeof *out);
    if (T < 1) return ad_error_set(err, AD_ERR_EMPTY, "%s: T = %d: the sequence is empty", fn, T);
    return AD_OK;
}

static ad_status nomem(nn_recompute_plan *out, const char *fn, ad_error *err)
{
    nn_recompute_plan_free(out);
    return ad_error_set(err, AD_ERR_NOMEM, "%s: out of memory", fn);
}

ad_status nn_recompute_plan_segments(int T, int segments, nn_recompute_plan *out, ad_error *err)
{
    ad_status st = check("nn_recompute_plan_segments", T, out, err);
    if (st) return st;
    if (segments < 0)
        return ad_error_set(err, AD_ERR_ARG, "nn_recompute_plan_segments: segments = %d is negative", segments);
    int k = segments;
    if (k == 0)
        while ((int64_t)k * k < T) k++;
    if (k > T) k = T;
    builder b = {out, 0};
    out->T = T;
    for (int i = 0, at = 0; i < k; i++) {
        int len = T / k + (i < T % k);
        if (push(&b, at, at + len, -1, 1, 0, 1) < 0) return nomem(out, "nn_recompute_plan_segments", err);
        at += len;
    }
    return AD_OK;
}

/* beta(s, r) = C(s + r, s), saturated at 2^40 (far above any int T). */
static int64_t beta(int s, int r)
{
    const int64_t cap = (int64_t)1 << 40;
    int64_t v = 1;
    int k = s < r ? s : r, n = s + r;
    for (int i = 1; i <= k; i++) {
        v = v * (n - k + i) / i; /* exact: a product of i consecutive integers over i! */
        if (v > cap) return cap;
    }
    return v;
}

/*
 * Revolve's rule. t(l, s) = r l - beta(s + 1, r - 1) forward steps are
 * optimal for beta(s, r - 1) < l <= beta(s, r) (t is continuous in l at the
 * interval ends). Splitting at m costs m + t(m, s) + t(l - m, s - 1); with
 * m in [beta(s, r - 2), beta(s, r - 1)] and l - m in [beta(s - 1, r - 1),
 * beta(s - 1, r)] that is r l - beta(s + 1, r - 2) - beta(s, r - 1), the
 * optimum (Pascal's rule). The largest such m is taken.
 */
static int split(int l, int s)
{
    int r = 1;
    while (beta(s, r) < l) r++;
    int64_t hi = beta(s, r - 1), right = (int64_t)l - beta(s - 1, r - 1);
    return (int)(hi < right ? hi : right);
}

/* Appends the children of a segment [a, b) reversed with s >= 1 slots. */
static int level(builder *bd, int a, int b, int s, int parent, int depth)
{
    while (a < b) {
        int l = b - a;
        if (l <= s + 1) /* every state fits: record the steps */
            return push(bd, a, b, parent, 0, s > 0 ? s : 0, depth) < 0 ? -1 : 0;
        int m = split(l, s);
        int id = push(bd, a, a + m, parent, 1, s, depth + 1);
        if (id < 0 || level(bd, a, a + m, s, id, depth + 1) < 0) return -1;
        a += m;
        s--; /* the left part's output holds one slot while the rest is reversed */
    }
    return 0;
}

ad_status nn_recompute_plan_slots(int T, int slots, nn_recompute_plan *out, ad_error *err)
{
    ad_status st = check("nn_recompute_plan_slots", T, out, err);
    if (st) return st;
    if (slots < 1)
        return ad_error_set(err, AD_ERR_ARG, "nn_recompute_plan_slots: slots = %d: at least one slot is needed", slots);
    builder b = {out, 0};
    out->T = T;
    if (level(&b, 0, T, slots, -1, 0) < 0) return nomem(out, "nn_recompute_plan_slots", err);
    return AD_OK;
}

long nn_recompute_plan_reruns(const nn_recompute_plan *s)
{
    long n = 0;
    if (!s) return 0;
    for (int i = 0; i < s->n; i++)
        if (s->node[i].checkpointed) n += s->node[i].end - s->node[i].begin;
    return n;
}

void nn_recompute_plan_free(nn_recompute_plan *s)
{
    if (!s) return;
    free(s->node);
    memset(s, 0, sizeof *s);
}
