/*
 * unroll_recompute.c - nn_unroll() and nn_unroll_layers() with
 * recomputation and a per-step loss.
 *
 * The steps follow a schedule of nn_recompute_plan.h (a tree of segments
 * over the processing positions: position k is step T-1-k when reversed).
 * A checkpointed segment is one ad_checkpoint() region that runs every layer
 * over its steps: its inputs are the carried state (h, c) of every layer,
 * the variational dropout masks and the segment's inputs xs, its outputs
 * the last states, the summed step_loss terms (when asked) and the top
 * layer's states (only when the caller wants outs). So a stack keeps only
 * the boundary states of each layer, not every step's output of the lower
 * layers. Inside a region the children of the segment run in order (nested
 * regions), and the steps between them run plainly, layer after layer, with
 * the hoisted input projection computed per run of plain steps. The
 * regions' context lives in a buffer on the tape, so it stays valid until
 * backward has re-run them.
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
    const nn_cell *cells;
    int L;           /* layers: every segment runs all of them */
    nn_step_loss_fn step_loss;
    void *loss_ctx;
    int hoist;       /* hoist_input (built-in cells only) */
    int block;       /* positions per block of the hoisted projection */
    int nst;         /* state tensors of all layers: 1 (h) or 2 (h, c) each */
    int want_states; /* regions output every step's state of the top layer */
    int T, reverse;  /* position k of the schedule is step T-1-k when reversed */
    int64_t *lengths; /* a copy of the options' lengths (batch entries), or NULL */
    double p;        /* dropout between layers (0: none) */
    int n_vmask;     /* variational masks (L-1), region inputs; 0 otherwise */
    ad_rng *rng_at;  /* per-step dropout: the rng before the mask of layer l, step k at [l T + k] */
    int n;           /* nodes */
    nn_recompute_segment *node;
    rc_call *call;
};

/* What a run over positions reads and writes. */
typedef struct rc_io {
    ad_tensor *const *xin;   /* xin[k - base]: position k's input */
    int base;
    ad_tensor *const *vmask; /* the variational masks (n_vmask), or NULL */
    nn_state *hs;            /* the carried state of every layer */
    nn_state *states;        /* the top layer's state at position k in states[k - base], or NULL */
    ad_tensor **loss;        /* the summed step_loss terms */
} rc_io;

static int ns_of(const nn_cell *c) { return c->has_c ? 2 : 1; }

/* The carried states as a flat tensor list (layer by layer: h, then c), and back. */
static void pack_states(const rc_shared *s, const nn_state *hs, ad_tensor **flat)
{
    for (int l = 0, i = 0; l < s->L; l++) {
        flat[i++] = hs[l].h;
        if (s->cells[l].has_c) flat[i++] = hs[l].c;
    }
}

static void unpack_states(const rc_shared *s, ad_tensor *const *flat, nn_state *hs)
{
    for (int l = 0, i = 0; l < s->L; l++) {
        hs[l].h = flat[i++];
        hs[l].c = s->cells[l].has_c ? flat[i++] : NULL;
    }
}

/* The state after step `step`, its loss term added to *loss. */
static ad_status after_step(ad_tape *t, rc_shared *s, int step, const nn_state *h, ad_tensor **loss)
{
    if (!s->step_loss) return ad_tape_status(t);
    const char *name = s->cells[s->L - 1].name;
    ad_tensor *term = s->step_loss(t, s->loss_ctx, step, h);
    if (ad_tape_status(t) != AD_OK) return ad_tape_status(t);
    if (!term) return ad_tape_fail(t, AD_ERR_NULL, "unroll %s: step_loss returned NULL at t=%d", name, step);
    if (ad_tensor_numel(term) != 1)
        return ad_tape_fail(t, AD_ERR_SHAPE, "unroll %s: step_loss at t=%d must return one element, got %zu",
                            name, step, ad_tensor_numel(term));
    *loss = *loss ? ad_add(t, *loss, term) : term;
    return ad_tape_status(t);
}

/* The step at position k of the schedule. */
static int step_at(const rc_shared *s, int k) { return s->reverse ? s->T - 1 - k : k; }

/* Layer l over positions a..b-1 (x[k - a] is position k's input), masked
 * as in the store-all unroll (nn__mask_step); out[k - a] gets the states. */
static ad_status layer_steps(ad_tape *t, rc_shared *s, const rc_io *io, int l, ad_tensor *const *x, int a, int b,
                             nn_state *h, nn_state *out)
{
    const nn_cell *cell = &s->cells[l];
    int64_t batch = ad_tensor_dim(x[0], 0);
    int hoist = s->hoist && cell->kind != NN_CELL_CUSTOM; /* as the store-all unroll: built-in cells only */
    if (hoist)
        for (int k = a; k < b; k++)
            if (ad_tensor_rank(x[k - a]) != 2 || ad_tensor_dim(x[k - a], 0) != batch ||
                ad_tensor_dim(x[k - a], 1) != cell->input_size)
                return ad_tape_fail(t, AD_ERR_SHAPE, "%s: x must be [B, %d] at every step (t=%d differs)",
                                    cell->name, cell->input_size, step_at(s, k));
    /* with hoisting, the input projection per block of s->block positions, released after them */
    int blk = hoist ? s->block : b - a;
    for (int k0 = a; k0 < b; k0 += blk) {
        int nb = b - k0 < blk ? b - k0 : blk;
        ad_tensor *gx = hoist ? nn__project_block(t, cell, x + (k0 - a), NULL, k0, nb, batch) : NULL;
        if (ad_tape_status(t) != AD_OK) return ad_tape_status(t);
        for (int k = k0; k < k0 + nb; k++) {
            int step = step_at(s, k);
            char label[AD_NAME_SIZE + 16];
            snprintf(label, sizeof label, "%s t=%d", cell->name, step);
            ad_tape_set_label(t, label);
            nn_state next;
            ad_status st = gx ? nn_cell_step_projected(t, cell, ad_slice(t, gx, 0, (int64_t)(k - k0) * batch, batch),
                                                       h, &next)
                              : nn_cell_step(t, cell, x[k - a], h, &next);
            if (st != AD_OK) return st;
            if (nn__mask_step(t, s->lengths, batch, step, h, &next) != AD_OK) return ad_tape_status(t);
            *h = out[k - a] = next;
            if (l + 1 < s->L) continue;
            /* The top layer's state and loss term at once: the head's
             * backward then comes just before the step's, so only one
             * step's dL/dh is live (all T at once otherwise). */
            if (io->states) io->states[k - io->base] = next;
            if (after_step(t, s, step, &next, io->loss) != AD_OK) return ad_tape_status(t);
        }
        ad_tape_set_label(t, NULL);
        if (gx) ad_tape_release(t, gx);
    }
    return ad_tape_status(t);
}

/* Layer l's outputs as the next layer's inputs: dropped as the store-all
 * unroll drops them (the same masks: each per-step mask draws from the rng
 * state that step's mask started from there). */
static void drop_between(ad_tape *t, const rc_shared *s, const rc_io *io, int l, int a, int b,
                         const nn_state *out, ad_tensor **next_in)
{
    if (!next_in) return; /* one layer: nothing above it */
    for (int k = a; k < b; k++) {
        ad_tensor *h = out[k - a].h;
        if (s->p == 0.0) {
            next_in[k - a] = h;
        } else if (s->n_vmask) {
            next_in[k - a] = ad_mul(t, h, io->vmask[l]);
        } else {
            ad_rng r = s->rng_at[(size_t)l * (size_t)s->T + (size_t)step_at(s, k)];
            next_in[k - a] = ad_dropout(t, h, s->p, 1, &r);
        }
    }
}

/* Plain steps at positions a..b-1: every layer in turn over them, the top
 * layer with its states and step_loss terms step by step. */
static ad_status plain_steps(ad_tape *t, rc_shared *s, const rc_io *io, int a, int b)
{
    if (a >= b) return ad_tape_status(t);
    int n = b - a;
    ad_tensor **in = s->L > 1 ? calloc((size_t)n, sizeof *in) : NULL;
    nn_state *out = calloc((size_t)n, sizeof *out);
    if (!out || (s->L > 1 && !in)) {
        free(in);
        free(out);
        return ad_tape_fail(t, AD_ERR_NOMEM, "unroll %s: out of memory", s->cells[0].name);
    }
    for (int l = 0; l < s->L && ad_tape_status(t) == AD_OK; l++) {
        ad_tensor *const *x = l == 0 ? io->xin + (a - io->base) : in; /* in is set whenever l > 0 */
        if (!x || layer_steps(t, s, io, l, x, a, b, &io->hs[l], out) != AD_OK) break;
        if (l + 1 < s->L) drop_between(t, s, io, l, a, b, out, in);
    }
    free(in);
    free(out);
    return ad_tape_status(t);
}

static ad_status region_fn(ad_tape *t, void *ctx, ad_tensor *const *in, int n_in, ad_tensor **out, int n_out);

/* Region sizes of a segment of L steps: inputs (states, masks, xs) and
 * outputs (states, loss, the top layer's states). */
static int region_inputs(const rc_shared *s, int L) { return s->nst + s->n_vmask + L; }

static int top_ns(const rc_shared *s) { return ns_of(&s->cells[s->L - 1]); }

static int region_outputs(const rc_shared *s, int L)
{
    return s->nst + (s->step_loss ? 1 : 0) + (s->want_states ? L * top_ns(s) : 0);
}

/* Node j as one checkpointed region from the carried states. */
static ad_status checkpointed(ad_tape *t, rc_shared *s, const rc_io *io, int j)
{
    const nn_recompute_segment *g = &s->node[j];
    int L = g->end - g->begin, n_in = region_inputs(s, L), n_out = region_outputs(s, L), tn = top_ns(s);
    ad_tensor **buf = malloc(sizeof *buf * (size_t)(n_in + n_out));
    if (!buf) return ad_tape_fail(t, AD_ERR_NOMEM, "unroll %s: out of memory", s->cells[0].name);
    ad_tensor **rin = buf, **rout = buf + n_in;
    pack_states(s, io->hs, rin);
    for (int i = 0; i < s->n_vmask; i++) rin[s->nst + i] = io->vmask[i];
    for (int k = 0; k < L; k++) rin[s->nst + s->n_vmask + k] = io->xin[g->begin + k - io->base];
    char label[AD_NAME_SIZE + 32];
    snprintf(label, sizeof label, "%s t=%d..%d", s->cells[0].name, step_at(s, g->begin), step_at(s, g->end - 1));
    ad_checkpoint_options co = {.label = label};
    ad_status st = ad_checkpoint(t, region_fn, &s->call[j], rin, n_in, rout, n_out, &co);
    if (st == AD_OK) {
        unpack_states(s, rout, io->hs);
        int o = s->nst;
        if (s->step_loss) {
            *io->loss = *io->loss ? ad_add(t, *io->loss, rout[o]) : rout[o];
            o++;
        }
        for (int k = 0; s->want_states && io->states && k < L; k++) {
            io->states[g->begin + k - io->base].h = rout[o + k * tn];
            io->states[g->begin + k - io->base].c = tn == 2 ? rout[o + k * tn + 1] : NULL;
        }
    }
    free(buf);
    return ad_tape_status(t);
}

/* Positions begin..end-1 of node `parent` (-1: the whole sequence): its
 * children in order, plain steps between them. */
static ad_status run_range(ad_tape *t, rc_shared *s, int parent, int begin, int end, const rc_io *io)
{
    int cur = begin;
    for (int j = parent + 1; j < s->n; j++) {
        const nn_recompute_segment *g = &s->node[j];
        if (g->parent != parent) continue;
        if (plain_steps(t, s, io, cur, g->begin) != AD_OK) return ad_tape_status(t);
        if (g->checkpointed ? checkpointed(t, s, io, j) : run_range(t, s, j, g->begin, g->end, io))
            return ad_tape_status(t);
        cur = g->end;
    }
    return plain_steps(t, s, io, cur, end);
}

/* One checkpointed segment: in = every layer's state, the variational masks,
 * xs[begin..end); out = the last states, the summed loss (with step_loss),
 * the top layer's states (want_states). */
static ad_status region_fn(ad_tape *t, void *ctx, ad_tensor *const *in, int n_in, ad_tensor **out, int n_out)
{
    (void)n_in, (void)n_out;
    rc_call *c = ctx;
    rc_shared *s = c->s;
    const nn_recompute_segment *g = &s->node[c->node];
    int L = g->end - g->begin, tn = top_ns(s);
    nn_state *hs = malloc(sizeof *hs * (size_t)s->L);
    nn_state *states = s->want_states ? malloc(sizeof *states * (size_t)L) : NULL;
    if (!hs || (s->want_states && !states)) {
        free(hs);
        free(states);
        return ad_tape_fail(t, AD_ERR_NOMEM, "unroll %s: out of memory", s->cells[0].name);
    }
    unpack_states(s, in, hs);
    ad_tensor *loss = NULL;
    rc_io io = {in + s->nst + s->n_vmask, g->begin, in + s->nst, hs, states, &loss};
    ad_status st = run_range(t, s, c->node, g->begin, g->end, &io);
    if (st == AD_OK) {
        pack_states(s, hs, out);
        int o = s->nst;
        if (s->step_loss) out[o++] = loss;
        for (int k = 0; states && k < L; k++) {
            out[o + k * tn] = states[k].h;
            if (tn == 2) out[o + k * tn + 1] = states[k].c;
        }
    }
    free(hs);
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
 * backward has re-run them): the plan's nodes, a copy of the lengths and
 * the per-step dropout rng states. */
static rc_shared *make_shared(ad_tape *t, const nn_cell *cells, int L, const nn_unroll_options *o, int T,
                              int64_t batch, const nn_recompute_plan *plan, int want_states)
{
    int drop = L > 1 && o->train && o->dropout > 0.0;
    size_t nl = o->lengths ? (size_t)batch : 0, nr = drop && !o->variational ? (size_t)(L - 1) * (size_t)T : 0;
    size_t bytes = sizeof(rc_shared) + nl * sizeof(int64_t) + nr * sizeof(ad_rng) +
                   (size_t)plan->n * (sizeof(rc_call) + sizeof(nn_recompute_segment));
    ad_tensor *store = ad_zeros(t, AD_F64, ad_shape1((int64_t)((bytes + 7) / 8)));
    if (!store) {
        if (ad_tape_status(t) == AD_OK) ad_tape_fail(t, AD_ERR_NOMEM, "unroll %s: out of memory", cells[0].name);
        return NULL;
    }
    rc_shared *s = (rc_shared *)(void *)ad_tensor_f64(store);
    s->lengths = nl ? (int64_t *)(void *)(s + 1) : NULL;
    s->rng_at = nr ? (ad_rng *)(void *)((int64_t *)(void *)(s + 1) + nl) : NULL;
    s->call = (rc_call *)(void *)((ad_rng *)(void *)((int64_t *)(void *)(s + 1) + nl) + nr);
    s->node = (nn_recompute_segment *)(s->call + plan->n);
    if (nl) memcpy(s->lengths, o->lengths, nl * sizeof(int64_t));
    s->cells = cells;
    s->L = L;
    s->step_loss = o->step_loss;
    s->loss_ctx = o->step_loss_ctx;
    s->hoist = o->hoist_input != 0;
    s->block = nn__hoist_block(o, T);
    for (int l = 0; l < L; l++) s->nst += ns_of(&cells[l]);
    s->want_states = want_states;
    s->T = T;
    s->reverse = o->reverse != 0;
    s->p = drop ? o->dropout : 0.0;
    s->n_vmask = drop && o->variational ? L - 1 : 0;
    s->n = plan->n;
    if (plan->n) memcpy(s->node, plan->node, sizeof *s->node * (size_t)plan->n);
    for (int j = 0; j < plan->n; j++) s->call[j] = (rc_call){s, j};
    return s;
}

/*
 * The dropout masks between layers, drawn as the store-all unroll draws them
 * (layer by layer, then step by step in time order, each element one
 * ad_rng_uniform as ad_dropout does): variational masks are drawn here, on
 * the tape (they become region inputs); for per-step masks the rng state
 * before each mask is kept in s->rng_at and the masks are drawn inside the
 * regions from a copy of it, so the recomputation redraws the same ones.
 * The caller's rng ends where the store-all unroll leaves it.
 */
static ad_status draw_dropout(ad_tape *t, rc_shared *s, ad_rng *rng, ad_dtype dtype, int64_t batch,
                              ad_tensor **vmask)
{
    for (int l = 0; l + 1 < s->L && s->p > 0.0; l++) {
        ad_shape sh = ad_shape2(batch, nn_cell_output_size(&s->cells[l]));
        if (s->n_vmask) {
            vmask[l] = ad_dropout(t, ad_ones(t, dtype, sh), s->p, 1, rng);
            continue;
        }
        for (int k = 0; k < s->T; k++) {
            s->rng_at[(size_t)l * (size_t)s->T + (size_t)k] = *rng;
            for (int64_t i = 0; i < sh.dim[0] * sh.dim[1]; i++) (void)ad_rng_uniform(rng);
        }
    }
    return ad_tape_status(t);
}

/* Runs the schedule over positions 0..T-1. Reversed, position k reads
 * xs[T-1-k] and its state goes to outs[T-1-k]: arrays in position order are
 * made for the run (the regions copy what they keep). */
static ad_status run_positions(ad_tape *t, rc_shared *s, ad_tensor *const *xs, rc_io *io, nn_state *outs)
{
    int T = s->T;
    io->base = 0;
    io->xin = xs;
    io->states = outs;
    if (!s->reverse) return run_range(t, s, -1, 0, T, io);
    ad_tensor **xr = malloc(sizeof *xr * (size_t)T);
    nn_state *sr = outs ? malloc(sizeof *sr * (size_t)T) : NULL;
    if (!xr || (outs && !sr)) {
        free(xr);
        free(sr);
        return ad_tape_fail(t, AD_ERR_NOMEM, "unroll %s: out of memory", s->cells[0].name);
    }
    for (int k = 0; k < T; k++) xr[k] = xs[T - 1 - k];
    io->xin = xr;
    io->states = sr;
    if (run_range(t, s, -1, 0, T, io) == AD_OK && outs)
        for (int k = 0; k < T; k++) outs[T - 1 - k] = sr[k];
    free(xr);
    free(sr);
    return ad_tape_status(t);
}

ad_status nn__unroll_recompute(ad_tape *t, const nn_cell *cells, int L, ad_tensor *const *xs, int T,
                               const nn_unroll_options *o, const nn_state *h0, nn_state *outs, nn_state *lasts)
{
    if (check_options(t, &cells[L - 1], o) != AD_OK) return ad_tape_status(t);
    if (o->fuse_steps && nn__fuse_check(t, &cells[0], o) != AD_OK) return ad_tape_status(t); /* refused here */
    if (o->loss) *o->loss = NULL;
    nn_recompute_plan plan = {0};
    ad_error err;
    ad_status st = AD_OK;
    if (o->recompute == NN_RECOMPUTE_SEGMENTS) st = nn_recompute_plan_segments(T, o->segments, &plan, &err);
    else if (o->recompute == NN_RECOMPUTE_SLOTS) st = nn_recompute_plan_slots(T, o->slots, &plan, &err);
    if (st != AD_OK) return ad_tape_fail(t, st, "unroll %s: %s", cells[0].name, err.msg);
    int64_t batch = ad_tensor_dim(xs[0], 0);
    rc_shared *s = make_shared(t, cells, L, o, T, batch, &plan, outs != NULL);
    nn_recompute_plan_free(&plan);
    if (!s) return ad_tape_status(t);
    nn_state *hs = malloc(sizeof *hs * (size_t)L);
    ad_tensor **vmask = malloc(sizeof *vmask * (size_t)L);
    if (!hs || !vmask) {
        free(hs);
        free(vmask);
        return ad_tape_fail(t, AD_ERR_NOMEM, "unroll %s: out of memory", cells[0].name);
    }
    memcpy(hs, h0, sizeof *hs * (size_t)L);
    ad_tensor *loss = NULL;
    rc_io io = {.vmask = vmask, .hs = hs, .loss = &loss};
    if (draw_dropout(t, s, o->rng, ad_tensor_dtype(h0[0].h), batch, vmask) == AD_OK)
        run_positions(t, s, xs, &io, outs);
    ad_tape_set_label(t, NULL);
    if (ad_tape_status(t) == AD_OK) {
        if (lasts) memcpy(lasts, hs, sizeof *hs * (size_t)L);
        if (o->loss) *o->loss = loss;
    }
    free(hs);
    free(vmask);
    return ad_tape_status(t);
}
