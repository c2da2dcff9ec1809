/*
 * unroll_recompute.c - nn_unroll() with recomputation and a per-step loss.
 *
 * The steps follow a schedule of nn_recompute_plan.h (a tree of segments).
 * A checkpointed segment is one ad_checkpoint() region: its inputs are the
 * carried state (h, c) and the segment's inputs xs[begin..end), its outputs
 * the segment's last state, its summed step_loss terms (when asked) and its
 * steps' states (only when the caller wants outs). Inside a region the
 * children of the segment run in order (nested regions), and the steps
 * between them run plainly, with the hoisted input projection computed per
 * run of plain steps. The regions' context lives in a buffer on the tape, so
 * it stays valid until backward has re-run them.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "recompute_plan.h"
#include "internal.h"
#include "unroll.h"

typedef struct rc_shared rc_shared;

/* The context of one checkpointed segment (on the tape). */
typedef struct rc_call {
    rc_shared *s;
    int node;
} rc_call;

struct rc_shared {
    const nn_cell *cell;
    nn_step_loss_fn step_loss;
    void *loss_ctx;
    int hoist;       /* built-in cell with hoist_input */
    int ns;          /* state tensors: 1 (h) or 2 (h, c) */
    int want_states; /* regions output every step's state */
    int T, reverse;  /* position k of the schedule is step T-1-k when reversed */
    int64_t *lengths; /* a copy of the options' lengths (batch entries), or NULL */
    int n;           /* nodes */
    nn_recompute_segment *node;
    rc_call *call;
};

/* The state after step `step`, its loss term added to *loss. */
static ad_status after_step(ad_tape *t, rc_shared *s, int step, const nn_state *h, ad_tensor **loss)
{
    if (!s->step_loss) return ad_tape_status(t);
    ad_tensor *term = s->step_loss(t, s->loss_ctx, step, h);
    if (ad_tape_status(t) != AD_OK) return ad_tape_status(t);
    if (!term)
        return ad_tape_fail(t, AD_ERR_NULL, "unroll %s: step_loss returned NULL at t=%d", s->cell->name, step);
    if (ad_tensor_numel(term) != 1)
        return ad_tape_fail(t, AD_ERR_SHAPE, "unroll %s: step_loss at t=%d must return one element, got %zu",
                            s->cell->name, step, ad_tensor_numel(term));
    *loss = *loss ? ad_add(t, *loss, term) : term;
    return ad_tape_status(t);
}

/* The step at position k of the schedule. */
static int step_at(const rc_shared *s, int k) { return s->reverse ? s->T - 1 - k : k; }

/* Plain steps at positions a..b-1 (xin[k - base] is position k's input),
 * masked as in the store-all unroll (nn__mask_step). */
static ad_status plain_steps(ad_tape *t, rc_shared *s, ad_tensor *const *xin, int base, int a, int b,
                             nn_state *h, nn_state *states, ad_tensor **loss)
{
    if (a >= b) return ad_tape_status(t);
    const nn_cell *cell = s->cell;
    ad_tensor *gx = NULL;
    int64_t batch = ad_tensor_dim(xin[a - base], 0);
    if (s->hoist) {
        for (int k = a; k < b; k++) {
            ad_tensor *x = xin[k - base];
            if (ad_tensor_rank(x) != 2 || ad_tensor_dim(x, 0) != batch || ad_tensor_dim(x, 1) != cell->input_size)
                return ad_tape_fail(t, AD_ERR_SHAPE, "%s: x must be [B, %d] at every step (t=%d differs)",
                                    cell->name, cell->input_size, k);
        }
        gx = nn_cell_input_projection(t, cell, ad_concat(t, xin + (a - base), b - a, 0));
        if (ad_tape_status(t) != AD_OK) return ad_tape_status(t);
    }
    for (int k = a; k < b; k++) {
        int step = step_at(s, k);
        char label[AD_NAME_SIZE + 16];
        snprintf(label, sizeof label, "%s t=%d", cell->name, step);
        ad_tape_set_label(t, label);
        nn_state next;
        ad_status st = gx ? nn_cell_step_projected(t, cell, ad_slice(t, gx, 0, (int64_t)(k - a) * batch, batch), h, &next)
                          : nn_cell_step(t, cell, xin[k - base], h, &next);
        if (st != AD_OK) return st;
        if (nn__mask_step(t, s->lengths, batch, step, h, &next) != AD_OK) return ad_tape_status(t);
        *h = next;
        if (states) states[k - base] = next;
        if (after_step(t, s, step, h, loss) != AD_OK) return ad_tape_status(t);
    }
    ad_tape_set_label(t, NULL);
    if (gx) ad_tape_release(t, gx);
    return ad_tape_status(t);
}

static ad_status region_fn(ad_tape *t, void *ctx, ad_tensor *const *in, int n_in, ad_tensor **out, int n_out);

/* Steps begin..end-1 of node `parent` (-1: the whole sequence): its children
 * in order, plain steps between them. xin[k - base] is step k's input, and
 * states[k - base] (when kept) receives its state. */
static ad_status run_range(ad_tape *t, rc_shared *s, int parent, int base, int begin, int end,
                           ad_tensor *const *xin, nn_state *h, nn_state *states, ad_tensor **loss)
{
    int cur = begin;
    for (int j = parent + 1; j < s->n; j++) {
        const nn_recompute_segment *g = &s->node[j];
        if (g->parent != parent) continue;
        if (plain_steps(t, s, xin, base, cur, g->begin, h, states, loss) != AD_OK) return ad_tape_status(t);
        if (!g->checkpointed) {
            if (run_range(t, s, j, base, g->begin, g->end, xin, h, states, loss) != AD_OK) return ad_tape_status(t);
        } else {
            int L = g->end - g->begin, ns = s->ns;
            int n_in = ns + L, n_out = ns + (s->step_loss ? 1 : 0) + (s->want_states ? L * ns : 0);
            ad_tensor **buf = malloc(sizeof *buf * (size_t)(n_in + n_out));
            if (!buf) return ad_tape_fail(t, AD_ERR_NOMEM, "unroll %s: out of memory", s->cell->name);
            ad_tensor **rin = buf, **rout = buf + n_in;
            rin[0] = h->h;
            if (ns == 2) rin[1] = h->c;
            for (int k = 0; k < L; k++) rin[ns + k] = xin[g->begin + k - base];
            char label[AD_NAME_SIZE + 32];
            snprintf(label, sizeof label, "%s t=%d..%d", s->cell->name, step_at(s, g->begin), step_at(s, g->end - 1));
            ad_checkpoint_options co = {.label = label};
            ad_status st = ad_checkpoint(t, region_fn, &s->call[j], rin, n_in, rout, n_out, &co);
            if (st == AD_OK) {
                h->h = rout[0];
                if (ns == 2) h->c = rout[1];
                int o = ns;
                if (s->step_loss) {
                    *loss = *loss ? ad_add(t, *loss, rout[o]) : rout[o];
                    o++;
                }
                if (s->want_states)
                    for (int k = 0; k < L; k++) {
                        states[g->begin + k - base].h = rout[o + k * ns];
                        states[g->begin + k - base].c = ns == 2 ? rout[o + k * ns + 1] : NULL;
                    }
            }
            free(buf);
            if (st != AD_OK || ad_tape_status(t) != AD_OK) return ad_tape_status(t);
        }
        cur = g->end;
    }
    return plain_steps(t, s, xin, base, cur, end, h, states, loss);
}

/* One checkpointed segment: in = h (, c), xs[begin..end); out = its last
 * state, its summed loss (with step_loss), its steps' states (want_states). */
static ad_status region_fn(ad_tape *t, void *ctx, ad_tensor *const *in, int n_in, ad_tensor **out, int n_out)
{
    (void)n_in, (void)n_out;
    rc_call *c = ctx;
    rc_shared *s = c->s;
    const nn_recompute_segment *g = &s->node[c->node];
    int L = g->end - g->begin, ns = s->ns;
    nn_state h = {in[0], ns == 2 ? in[1] : NULL};
    nn_state *states = NULL;
    if (s->want_states && !(states = malloc(sizeof *states * (size_t)L)))
        return ad_tape_fail(t, AD_ERR_NOMEM, "unroll %s: out of memory", s->cell->name);
    ad_tensor *loss = NULL;
    ad_status st = run_range(t, s, c->node, g->begin, g->begin, g->end, in + ns, &h, states, &loss);
    if (st == AD_OK) {
        out[0] = h.h;
        if (ns == 2) out[1] = h.c;
        int o = ns;
        if (s->step_loss) out[o++] = loss;
        if (states)
            for (int k = 0; k < L; k++) {
                out[o + k * ns] = states[k].h;
                if (ns == 2) out[o + k * ns + 1] = states[k].c;
            }
    }
    free(states);
    return st != AD_OK ? st : ad_tape_status(t);
}

/* The options this path cannot follow yet, as a clear error. */
static ad_status check_options(ad_tape *t, const nn_cell *cell, const nn_unroll_options *o)
{
    const char *name = cell->name;
    if (o->recompute < NN_RECOMPUTE_OFF || o->recompute > NN_RECOMPUTE_SLOTS)
        return ad_tape_fail(t, AD_ERR_ARG, "unroll %s: recompute = %d is not an nn_recompute_mode", name,
                            o->recompute);
    if (o->recompute == NN_RECOMPUTE_SEGMENTS && o->segments < 0)
        return ad_tape_fail(t, AD_ERR_ARG, "unroll %s: recompute segments = %d is negative", name, o->segments);
    if (o->recompute == NN_RECOMPUTE_SLOTS && o->slots < 1)
        return ad_tape_fail(t, AD_ERR_ARG, "unroll %s: recompute slots = %d, need at least 1", name, o->slots);
    if (o->step_loss && !o->loss)
        return ad_tape_fail(t, AD_ERR_NULL, "unroll %s: step_loss is set but loss (its output) is NULL", name);
    if (o->loss && !o->step_loss)
        return ad_tape_fail(t, AD_ERR_NULL, "unroll %s: loss is requested but step_loss is NULL", name);
    return AD_OK;
}

/* The regions' context, in a buffer owned by the tape (so it lives until
 * backward has re-run them): the plan's nodes and a copy of the lengths. */
static rc_shared *make_shared(ad_tape *t, const nn_cell *cell, const nn_unroll_options *o, int T, int64_t batch,
                              const nn_recompute_plan *plan, int want_states)
{
    size_t nl = o->lengths ? (size_t)batch : 0;
    size_t bytes = sizeof(rc_shared) + nl * sizeof(int64_t) +
                   (size_t)plan->n * (sizeof(rc_call) + sizeof(nn_recompute_segment));
    ad_tensor *store = ad_zeros(t, AD_F64, ad_shape1((int64_t)((bytes + 7) / 8)));
    if (!store) {
        if (ad_tape_status(t) == AD_OK) ad_tape_fail(t, AD_ERR_NOMEM, "unroll %s: out of memory", cell->name);
        return NULL;
    }
    rc_shared *s = (rc_shared *)(void *)ad_tensor_f64(store);
    s->lengths = nl ? (int64_t *)(void *)(s + 1) : NULL;
    s->call = (rc_call *)(void *)((int64_t *)(void *)(s + 1) + nl);
    s->node = (nn_recompute_segment *)(s->call + plan->n);
    if (nl) memcpy(s->lengths, o->lengths, nl * sizeof(int64_t));
    s->cell = cell;
    s->step_loss = o->step_loss;
    s->loss_ctx = o->step_loss_ctx;
    s->hoist = o->hoist_input && cell->kind != NN_CELL_CUSTOM;
    s->ns = cell->has_c ? 2 : 1;
    s->want_states = want_states;
    s->T = T;
    s->reverse = o->reverse != 0;
    s->n = plan->n;
    if (plan->n) memcpy(s->node, plan->node, sizeof *s->node * (size_t)plan->n);
    for (int j = 0; j < plan->n; j++) s->call[j] = (rc_call){s, j};
    return s;
}

/* Runs the schedule over positions 0..T-1. Reversed, position k reads
 * xs[T-1-k] and its state goes to outs[T-1-k]: arrays in position order are
 * made for the run (the regions copy what they keep). */
static ad_status run_positions(ad_tape *t, rc_shared *s, ad_tensor *const *xs, nn_state *h, nn_state *outs,
                               ad_tensor **loss)
{
    int T = s->T;
    if (!s->reverse) return run_range(t, s, -1, 0, 0, T, xs, h, outs, loss);
    ad_tensor **xr = malloc(sizeof *xr * (size_t)T);
    nn_state *sr = outs ? malloc(sizeof *sr * (size_t)T) : NULL;
    if (!xr || (outs && !sr)) {
        free(xr);
        free(sr);
        return ad_tape_fail(t, AD_ERR_NOMEM, "unroll %s: out of memory", s->cell->name);
    }
    for (int k = 0; k < T; k++) xr[k] = xs[T - 1 - k];
    if (run_range(t, s, -1, 0, 0, T, xr, h, sr, loss) == AD_OK && outs)
        for (int k = 0; k < T; k++) outs[T - 1 - k] = sr[k];
    free(xr);
    free(sr);
    return ad_tape_status(t);
}

ad_status nn__unroll_recompute(ad_tape *t, const nn_cell *cell, ad_tensor *const *xs, int T,
                               const nn_unroll_options *o, nn_state h, nn_state *outs, nn_state *last)
{
    if (check_options(t, cell, o) != AD_OK) return ad_tape_status(t);
    if (o->loss) *o->loss = NULL;
    nn_recompute_plan plan = {0};
    ad_error err;
    ad_status st = AD_OK;
    if (o->recompute == NN_RECOMPUTE_SEGMENTS) st = nn_recompute_plan_segments(T, o->segments, &plan, &err);
    else if (o->recompute == NN_RECOMPUTE_SLOTS) st = nn_recompute_plan_slots(T, o->slots, &plan, &err);
    if (st != AD_OK) return ad_tape_fail(t, st, "unroll %s: %s", cell->name, err.msg);
    rc_shared *s = make_shared(t, cell, o, T, ad_tensor_dim(xs[0], 0), &plan, outs != NULL);
    nn_recompute_plan_free(&plan);
    if (!s) return ad_tape_status(t);
    ad_tensor *loss = NULL;
    run_positions(t, s, xs, &h, outs, &loss);
    ad_tape_set_label(t, NULL);
    if (ad_tape_status(t) != AD_OK) return ad_tape_status(t);
    if (last) *last = h;
    if (o->loss) *o->loss = loss;
    return AD_OK;
}
