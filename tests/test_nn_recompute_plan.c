/*
 * test_nn_recompute_plan.c - recomputation schedules: every step is covered once,
 * the slot count is never exceeded, the binomial schedule reaches revolve's
 * optimal number of forward steps, T <= s + 1 recomputes nothing; bad input.
 */
#include <criterion/criterion.h>
#include <string.h>

#include <unroll/nn/nn.h>
#include "testsupport.h"

/* Children of node p (or of the top level for p = -1) partition [a, b) in order; recurses. */
static void check_cover(const nn_recompute_plan *s, int p, int a, int b)
{
    int at = a;
    for (int i = p + 1; i < s->n && s->node[i].begin < b; i++) { /* preorder: a subtree is contiguous */
        const nn_recompute_segment *n = &s->node[i];
        if (n->parent != p) continue;
        cr_assert_eq(n->begin, at, "node %d begins at %d, expected %d", i, n->begin, at);
        cr_assert_gt(n->end, n->begin);
        cr_assert_eq(n->depth, (p < 0 ? 0 : s->node[p].depth) + n->checkpointed);
        int has_children = i + 1 < s->n && s->node[i + 1].parent == i;
        if (n->checkpointed && has_children) check_cover(s, i, n->begin, n->end);
        at = n->end;
    }
    cr_assert_eq(at, b, "children of %d end at %d, expected %d", p, at, b);
}

/*
 * Revolve's accounting of a level: to reverse child i the states at the
 * boundaries before it are held (i slots); a plain leaf of l steps holds its
 * l - 1 inner states. *advances counts forward steps that are not reverse
 * steps: each child but the last is stepped through once to reach the next
 * boundary, a plain leaf advances l - 1 steps.
 */
static int peak_slots(const nn_recompute_plan *s, int p, long *advances)
{
    int peak = 0, held = 0, last = -1, end = p < 0 ? s->T : s->node[p].end;
    for (int i = p + 1; i < s->n && s->node[i].begin < end; i++)
        if (s->node[i].parent == p) last = i;
    for (int i = p + 1; i < s->n && s->node[i].begin < end; i++) {
        const nn_recompute_segment *n = &s->node[i];
        if (n->parent != p) continue;
        int len = n->end - n->begin;
        int inner = n->checkpointed ? peak_slots(s, i, advances) : len - 1;
        if (!n->checkpointed) *advances += len - 1;
        if (i != last) *advances += len;
        if (held + inner > peak) peak = held + inner;
        held++;
    }
    return peak;
}

static long binom(int n, int k)
{
    long v = 1;
    for (int i = 1; i <= k; i++) v = v * (n - k + i) / i;
    return v;
}

/* Griewank & Walther: with beta(s, r-1) < l <= beta(s, r), t(l, s) = r l - beta(s + 1, r - 1). */
static long revolve_optimum(int l, int s)
{
    int r = 0;
    while (binom(s + r, s) < l) r++;
    return r * (long)l - binom(s + 1 + r - 1, s + 1);
}

Test(recompute_plan, sqrt_segments_cover_and_recompute_each_step_once)
{
    static const int Ts[] = {1, 2, 3, 10, 99, 1000, 100000};
    for (size_t k = 0; k < sizeof Ts / sizeof *Ts; k++) {
        nn_recompute_plan s;
        cr_assert_eq(nn_recompute_plan_segments(Ts[k], 0, &s, NULL), AD_OK);
        int want = 0;
        while (want * want < Ts[k]) want++;
        cr_assert_eq(s.n, want, "T=%d: %d segments, expected %d", Ts[k], s.n, want);
        check_cover(&s, -1, 0, Ts[k]);
        for (int i = 0; i < s.n; i++) {
            int len = s.node[i].end - s.node[i].begin;
            cr_assert(len == Ts[k] / want || len == Ts[k] / want + 1);
        }
        cr_assert_eq(nn_recompute_plan_reruns(&s), Ts[k]);
        nn_recompute_plan_free(&s);
    }
    nn_recompute_plan s;
    cr_assert_eq(nn_recompute_plan_segments(1000, 32, &s, NULL), AD_OK);
    cr_assert_eq(s.n, 32);
    cr_assert_eq(s.node[0].end, 32); /* 1000 = 8 * 32 + 24 * 31 */
    cr_assert_eq(s.node[31].end - s.node[31].begin, 31);
    nn_recompute_plan_free(&s);
    cr_assert_eq(nn_recompute_plan_segments(5, 9, &s, NULL), AD_OK); /* more segments than steps */
    cr_assert_eq(s.n, 5);
    nn_recompute_plan_free(&s);
}

Test(recompute_plan, slots_cover_fit_and_reach_the_revolve_optimum)
{
    long before = ts_live_allocs();
    for (int slots = 1; slots <= 6; slots++)
        for (int T = 1; T <= 300; T++) {
            nn_recompute_plan s;
            cr_assert_eq(nn_recompute_plan_slots(T, slots, &s, NULL), AD_OK);
            check_cover(&s, -1, 0, T);
            long adv = 0;
            int peak = peak_slots(&s, -1, &adv);
            cr_assert_leq(peak, slots, "T=%d s=%d: %d slots used", T, slots, peak);
            cr_assert_eq(adv, revolve_optimum(T, slots), "T=%d s=%d: %ld forward steps, optimum %ld", T, slots,
                         adv, revolve_optimum(T, slots));
            if (T <= slots + 1) {
                cr_assert_eq(s.n, 1);
                cr_assert_eq(s.node[0].checkpointed, 0);
                cr_assert_eq(nn_recompute_plan_reruns(&s), 0);
            } else {
                cr_assert_gt(nn_recompute_plan_reruns(&s), 0);
            }
            nn_recompute_plan_free(&s);
        }
    cr_assert_eq(ts_live_allocs(), before);
}

Test(recompute_plan, slots_known_small_cases)
{
    /* One slot: every reversal restarts from the start, l (l - 1) / 2 forward steps; the others
     * worked by hand from t(l, s) = min over m of m + t(m, s) + t(l - m, s - 1). */
    static const struct { int T, s; long adv; } rows[] = {
        {2, 1, 1}, {3, 1, 3}, {4, 1, 6}, {5, 1, 10}, {4, 3, 3}, {6, 2, 8}, {10, 2, 20}, {10, 3, 15},
    };
    for (size_t k = 0; k < sizeof rows / sizeof *rows; k++) {
        nn_recompute_plan s;
        cr_assert_eq(nn_recompute_plan_slots(rows[k].T, rows[k].s, &s, NULL), AD_OK);
        long adv = 0;
        peak_slots(&s, -1, &adv);
        cr_assert_eq(adv, rows[k].adv, "T=%d s=%d: %ld", rows[k].T, rows[k].s, adv);
        nn_recompute_plan_free(&s);
    }
    /* A long sequence with few slots stays shallow and small. */
    nn_recompute_plan s;
    cr_assert_eq(nn_recompute_plan_slots(100000, 8, &s, NULL), AD_OK);
    check_cover(&s, -1, 0, 100000);
    long adv = 0;
    cr_assert_leq(peak_slots(&s, -1, &adv), 8);
    cr_assert_eq(adv, revolve_optimum(100000, 8));
    nn_recompute_plan_free(&s);
}

Test(recompute_plan, bad_input)
{
    nn_recompute_plan s;
    ad_error e;
    cr_assert_eq(nn_recompute_plan_segments(10, 0, NULL, &e), AD_ERR_NULL);
    cr_assert(strstr(e.msg, "out"));
    cr_assert_eq(nn_recompute_plan_segments(0, 0, &s, &e), AD_ERR_EMPTY);
    cr_assert(strstr(e.msg, "T = 0"));
    cr_assert_eq(nn_recompute_plan_segments(-3, 0, &s, &e), AD_ERR_EMPTY);
    cr_assert_eq(nn_recompute_plan_segments(10, -1, &s, &e), AD_ERR_ARG);
    cr_assert(strstr(e.msg, "segments = -1"));
    cr_assert_eq(nn_recompute_plan_slots(10, 0, &s, &e), AD_ERR_ARG);
    cr_assert(strstr(e.msg, "slots = 0"));
    cr_assert_eq(nn_recompute_plan_slots(0, 3, &s, &e), AD_ERR_EMPTY);
    cr_assert_eq(nn_recompute_plan_slots(10, 3, NULL, &e), AD_ERR_NULL);
    cr_assert_eq(s.n, 0);
    cr_assert_null(s.node);
    cr_assert_eq(nn_recompute_plan_reruns(NULL), 0);
    nn_recompute_plan_free(NULL);
}

Test(recompute_plan, allocation_failure_is_reported_and_leaks_nothing)
{
#ifdef TS_SHARED_LIBS
    cr_skip("allocation failures cannot be injected into a shared library");
#else
    long before = ts_live_allocs();
    nn_recompute_plan s;
    ad_error e;
    ts_fail_alloc_at(2);
    ad_status st = nn_recompute_plan_slots(1000, 4, &s, &e);
    ts_fail_alloc_at(0);
    cr_assert_eq(st, AD_ERR_NOMEM);
    cr_assert_null(s.node);
    cr_assert_eq(ts_live_allocs(), before);
#endif
}
