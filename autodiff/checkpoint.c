/*
 * checkpoint.c - checkpointed regions (ad_checkpoint): the region runs on a
 * scratch tape, only its outputs are recorded on the tape (one "checkpoint"
 * node per output, whose inputs are the region's inputs), and backward
 * re-runs the region on the scratch tape and backpropagates through it.
 */
#include "checkpoint.h"

#include <stdio.h>
#include <string.h>

#include "internal.h"

/* What the output nodes of one region share (arena memory of the tape). */
typedef struct ad__ckpt {
    ad_checkpoint_fn fn;
    void *ctx;
    int n_in, n_out;
    ad_tensor **in;   /* the region's inputs on the tape */
    ad_tensor **out;  /* its outputs on the tape */
    ad_tensor **tmp;  /* the scratch run's outputs while the nodes are recorded */
    ad_rng *rng;
    ad_rng rng_state; /* the RNG's state before the first run */
    char label[AD__LABEL_SIZE];
    unsigned done_pass; /* the backward pass that already ran the recomputation */
    /* The temporal copies the region uses, in recording order: their
     * parameters and, once backward has re-run the region, their gradient
     * norms (ad_tape_copies, the gradient-flow report). */
    struct ad__region_copy *copies;
    size_t n_copies;
} ad__ckpt;

/* One copy used inside a region: a few words, and a tensor of the tape
 * standing for it only once someone asks for it (ad_tape_copies). */
typedef struct ad__region_copy {
    ad_param *param;
    ad_tensor *x; /* NULL until asked for */
    double sq;    /* the copy's squared gradient norm, valid in backward pass `pass` */
    unsigned pass;
} ad__region_copy;

size_t ad__checkpoint_n_copies(const ad_node *n)
{
    const ad__ckpt *c = n->a.custom_ctx;
    return n->a.axis == 0 ? c->n_copies : 0; /* listed once, at the first output node */
}

const ad_param *ad__checkpoint_copy_param(const ad_node *n, size_t j)
{
    const ad__ckpt *c = n->a.custom_ctx;
    return c->copies[j].param;
}

/* The stand-in shows the record's norm as a NORMS tape shows a copy's. */
static void show_norm(const ad__region_copy *r)
{
    r->x->grad = NULL, r->x->grad_sq = r->sq, r->x->grad_pass = r->pass;
}

ad_tensor *ad__checkpoint_copy(const ad_tape *t, const ad_node *n, size_t j)
{
    ad__ckpt *c = n->a.custom_ctx;
    ad__region_copy *r = &c->copies[j];
    if (r->x) return r->x;
    /* made on first request, in the arena that reset clears: a cache of the
     * record, not a change of what the tape computes */
    ad_tape *tape = (ad_tape *)(uintptr_t)t;
    ad_tensor *x = ad__alloc(tape, sizeof *x);
    if (!x) return NULL;
    memset(x, 0, sizeof *x);
    x->dtype = r->param->value.dtype, x->shape = r->param->value.shape, x->numel = r->param->value.numel;
    x->param = r->param, x->data = r->param->value.data;
    x->tape = tape, x->node = (ad_node *)(uintptr_t)n, x->requires_grad = 1, x->in_region = 1;
    r->x = x;
    show_norm(r);
    return x;
}

/* The records of the copies the first run made on s. */
static ad_status stand_ins(ad_tape *t, ad_tape *s, ad__ckpt *c)
{
    /* a NONE tape records nothing per copy: no records either */
    size_t n = ad__tape_copy_grads(t) == AD_COPY_GRADS_NONE ? 0 : ad__tape_copies_of(s, NULL, NULL, 0);
    if (n == 0) return AD_OK;
    ad_tensor **in_s = ad__alloc_array(s, n, sizeof *in_s); /* gone with s's reset */
    c->copies = ad__alloc_array(t, n, sizeof *c->copies);
    if (!in_s) return ad_tape_fail(t, ad__status(s), "checkpoint: %s", ad_tape_message(s));
    if (!c->copies) return ad__status(t);
    ad__tape_copies_of(s, NULL, in_s, n);
    for (size_t j = 0; j < n; j++) {
        if (!in_s[j]) return ad_tape_fail(t, ad__status(s), "checkpoint: %s", ad_tape_message(s));
        c->copies[j] = (ad__region_copy){in_s[j]->param, NULL, 0.0, 0};
    }
    c->n_copies = n;
    return AD_OK;
}

/* After the region's backward on s: each copy's norm to its record. */
static ad_status pass_norms(ad_tape *t, ad_tape *s, ad__ckpt *c)
{
    if (ad__tape_copy_grads(t) == AD_COPY_GRADS_NONE) return AD_OK;
    size_t n = ad__tape_copies_of(s, NULL, NULL, 0);
    if (n != c->n_copies)
        return ad_tape_fail(t, AD_ERR_MISMATCH,
                            "checkpoint: the recomputation used %zu temporal copies, the first run %zu "
                            "(the region must do the same each time)", n, c->n_copies);
    if (n == 0) return AD_OK;
    ad_tensor **in_s = ad__alloc_array(s, n, sizeof *in_s); /* gone with s's reset */
    if (!in_s) return ad_tape_fail(t, ad__status(s), "checkpoint: %s", ad_tape_message(s));
    ad__tape_copies_of(s, NULL, in_s, n);
    for (size_t j = 0; j < n; j++) {
        double norm = 0;
        if (!in_s[j]) return ad_tape_fail(t, ad__status(s), "checkpoint: %s", ad_tape_message(s));
        ad_tensor_grad_norm(in_s[j], &norm, NULL);
        ad__region_copy *r = &c->copies[j];
        r->sq = norm * norm, r->pass = ad__tape_pass(t);
        if (r->x) show_norm(r);
    }
    return AD_OK;
}

/*
 * After the region's backward on s: each output's gradient becomes dL/dy_k
 * as a plain recording would have it, the upstream gradient plus what flows
 * back to y_k from the region's later outputs (a segment's states: the
 * gradient-flow report reads |dL/dh_t| from them). Backward on t has already
 * used the upstream part; nothing on t reads these buffers again.
 */
static void whole_output_grads(ad_tape *t, ad_tape *s, ad__ckpt *c)
{
    for (int k = 0; k < c->n_out; k++) {
        ad_tensor *y = c->out[k], *ys = c->tmp[k];
        if (!y || !y->requires_grad || !ys || ys->grad_pass != ad__tape_pass(s) || !ys->grad) continue;
        void *g = ad__grad(t, y);
        if (!g) return;
        memcpy(g, ys->grad, y->numel * ad__dtype_size(y->dtype));
    }
}

void ad__scratch_free(ad_tape *t)
{
    ad_tape_free(t->scratch);
    t->scratch = NULL;
}

/* The scratch tape of t, made on first use with t's allocator and modes. */
static ad_tape *scratch_of(ad_tape *t)
{
    if (!t->scratch) {
        ad_tape_options o = {0};
        ad__arena_options(t, &o);
        o.copy_grads = ad__tape_copy_grads(t);
        o.release_grads = ad__tape_releases_grads(t);
        o.fast_off = ad__tape_fast_off(t);
        t->scratch = ad_tape_new(&o);
        if (!t->scratch) {
            ad_tape_fail(t, AD_ERR_NOMEM, "checkpoint: cannot allocate the scratch tape");
            return NULL;
        }
    }
    ad_tape *s = t->scratch;
    ad_tape_reset(s);
    ad_tape_set_anomaly(s, ad__tape_anomaly(t));
    ad_tape_set_grad_enabled(s, ad__tape_grad_enabled(t));
    return s;
}

/* Runs the region on s from the tape's inputs; outputs in c->tmp. */
static ad_status run_region(ad_tape *t, ad_tape *s, ad__ckpt *c, ad_tensor **sin, const char *when)
{
    ad_tape_set_label(s, c->label);
    for (int i = 0; i < c->n_in; i++) {
        ad_tensor *x = c->in[i];
        sin[i] = x->requires_grad ? ad_variable(s, x->dtype, x->shape, x->data)
                                  : ad_from_data(s, x->dtype, x->shape, x->data);
        if (!sin[i]) break;
    }
    for (int k = 0; k < c->n_out; k++) c->tmp[k] = NULL;
    ad_status st = ad__status(s);
    if (st == AD_OK) st = c->fn(s, c->ctx, sin, c->n_in, c->tmp, c->n_out);
    if (ad__status(s) != AD_OK)
        return ad_tape_fail(t, ad__status(s), "checkpoint: region failed (%s): %s", when, ad_tape_message(s));
    if (st != AD_OK)
        return ad_tape_fail(t, st, "checkpoint: the region returned %s (%s)", ad_status_name(st), when);
    for (int k = 0; k < c->n_out; k++) {
        ad_tensor *y = c->tmp[k];
        if (!y) return ad_tape_fail(t, AD_ERR_NULL, "checkpoint: the region left output %d NULL", k);
        if (y->tape != s)
            return ad_tape_fail(t, AD_ERR_FOREIGN, "checkpoint: output %d is not a tensor of the region's tape", k);
        if (y->dtype != c->in[0]->dtype)
            return ad_tape_fail(t, AD_ERR_DTYPE, "checkpoint: output %d is %s but input 0 is %s", k,
                            ad_dtype_name(y->dtype), ad_dtype_name(c->in[0]->dtype));
    }
    return AD_OK;
}

ad_status ad_checkpoint(ad_tape *t, ad_checkpoint_fn fn, void *ctx, ad_tensor *const *inputs, int n_in,
                        ad_tensor **outputs, int n_out, const ad_checkpoint_options *opts)
{
    if (!t) return AD_ERR_NULL;
    if (ad__status(t) != AD_OK) return ad__status(t);
    if (!fn) return ad_tape_fail(t, AD_ERR_NULL, "checkpoint: fn is NULL");
    if (!outputs) return ad_tape_fail(t, AD_ERR_NULL, "checkpoint: outputs is NULL");
    if (n_out < 1) return ad_tape_fail(t, AD_ERR_EMPTY, "checkpoint: n_out = %d (at least 1 output)", n_out);
    if (!inputs) return ad_tape_fail(t, AD_ERR_NULL, "checkpoint: inputs is NULL");
    if (n_in < 1) return ad_tape_fail(t, AD_ERR_EMPTY, "checkpoint: n_in = %d (at least 1 input)", n_in);
    for (int i = 0; i < n_in; i++) {
        if (!inputs[i]) return ad_tape_fail(t, AD_ERR_NULL, "checkpoint: input %d is NULL", i);
        if (inputs[i]->tape != t)
            return ad_tape_fail(t, AD_ERR_FOREIGN, "checkpoint: input %d is not a tensor of this tape", i);
        if (ad__data_released(inputs[i]))
            return ad_tape_fail(t, AD_ERR_STATE, "checkpoint: input %d's data was released", i);
    }
    for (int k = 0; k < n_out; k++) outputs[k] = NULL;
    if (!ad__tape_grad_enabled(t)) { /* nothing to recompute: the region runs on t itself */
        ad_status st = fn(t, ctx, inputs, n_in, outputs, n_out);
        if (ad__status(t) != AD_OK) return ad__status(t);
        if (st != AD_OK) return ad_tape_fail(t, st, "checkpoint: the region returned %s", ad_status_name(st));
        return AD_OK;
    }

    ad__ckpt *c = ad__alloc_zero(t, sizeof *c);
    if (!c) return ad__status(t);
    c->fn = fn, c->ctx = ctx, c->n_in = n_in, c->n_out = n_out;
    c->in = ad__alloc_array(t, (size_t)n_in, sizeof *c->in);
    c->out = ad__alloc_array(t, (size_t)n_out, sizeof *c->out);
    c->tmp = ad__alloc_array(t, (size_t)n_out, sizeof *c->tmp);
    if (!c->in || !c->out || !c->tmp) return ad__status(t);
    for (int i = 0; i < n_in; i++) c->in[i] = inputs[i];
    snprintf(c->label, sizeof c->label, "%s", (opts && opts->label) ? opts->label : ad__tape_label(t));
    if (opts && opts->rng) c->rng = opts->rng, c->rng_state = *opts->rng;

    ad_tape *s = scratch_of(t);
    if (!s) return ad__status(t);
    ad_tensor **sin = ad__alloc_array(t, (size_t)n_in, sizeof *sin);
    if (!sin) return ad__status(t);
    /* The first run records nothing that needs a gradient on s. */
    ad_tape_set_grad_enabled(s, 0);
    ad_status st = run_region(t, s, c, sin, "first run");
    if (st != AD_OK) {
        ad_tape_reset(s);
        return st;
    }
    st = stand_ins(t, s, c);
    for (int k = 0; st == AD_OK && k < n_out; k++) {
        ad__args a;
        memset(&a, 0, sizeof a);
        a.custom_ctx = c;
        a.axis = k;
        c->out[k] = ad__record(t, AD_OP_CHECKPOINT, inputs, n_in, &a);
        if (!c->out[k]) break;
    }
    ad_tape_reset(s);
    if (ad__status(t) != AD_OK) return ad__status(t);
    for (int k = 0; k < n_out; k++) outputs[k] = c->out[k];
    return AD_OK;
}

ad_status ad__shape_checkpoint(ad_tape *t, ad_node *n, ad_shape *out)
{
    (void)t;
    const ad__ckpt *c = n->a.custom_ctx;
    *out = c->tmp[n->a.axis]->shape;
    return AD_OK;
}

ad_status ad__checkpoint_fwd(ad_tape *t, ad_node *n)
{
    const ad__ckpt *c = n->a.custom_ctx;
    const ad_tensor *y = c->tmp[n->a.axis];
    memcpy(n->out->data, y->data, y->numel * ad__dtype_size(y->dtype));
    /* parameters used inside the region make the output need a gradient too */
    n->out->requires_grad = (unsigned char)ad__tape_grad_enabled(t);
    return AD_OK;
}

/* The first output node backward reaches re-runs the region for all of them. */
void ad__checkpoint_bwd(ad_tape *t, ad_node *n)
{
    ad__ckpt *c = n->a.custom_ctx;
    if (c->done_pass == ad__tape_pass(t)) return;
    c->done_pass = ad__tape_pass(t);
    ad_tape *s = scratch_of(t);
    if (!s) return;
    ad_tensor **sin = ad__alloc_array(t, (size_t)c->n_in, sizeof *sin);
    if (!sin) return;
    ad_rng now;
    if (c->rng) now = *c->rng, *c->rng = c->rng_state;
    ad_tape_set_grad_enabled(s, 1);
    ad_status st = run_region(t, s, c, sin, "recomputation");
    if (c->rng) *c->rng = now;
    if (st != AD_OK) {
        ad_tape_reset(s);
        return;
    }
    /* root = sum_k sum(y_k * g_k): its gradient with respect to y_k is g_k exactly */
    ad_tensor *root = NULL;
    for (int k = 0; k < c->n_out && ad__status(s) == AD_OK; k++) {
        ad_tensor *y = c->out[k];
        if (!c->tmp[k] || !c->tmp[k]->requires_grad) continue;
        c->tmp[k]->grad_pinned = 1; /* its whole gradient is read after backward (below) */
        if (!y || !y->requires_grad || y->grad_pass != ad__tape_pass(t) || !y->grad) continue;
        ad_tensor *g = ad_from_data(s, y->dtype, y->shape, y->grad);
        ad_tensor *term = ad_sum(s, ad_mul(s, c->tmp[k], g), AD_AXIS_ALL, 0);
        root = root ? ad_add(s, root, term) : term;
    }
    if (ad__status(s) == AD_OK && root) ad_backward(s, root, NULL);
    if (ad__status(s) == AD_OK && root) whole_output_grads(t, s, c);
    if (ad__status(s) != AD_OK) {
        ad_tape_fail(t, ad__status(s), "checkpoint: recomputation failed: %s", ad_tape_message(s));
        ad_tape_reset(s);
        return;
    }
    if (pass_norms(t, s, c) != AD_OK) {
        ad_tape_reset(s);
        return;
    }
    if (root)
        for (int i = 0; i < c->n_in; i++) {
            ad_tensor *x = c->in[i], *sx = sin[i];
            if (!x->requires_grad || sx->grad_pass != ad__tape_pass(s) || !sx->grad) continue;
            void *g = ad__grad(t, x);
            if (!g) break;
            if (x->dtype == AD_F32) {
                float *d = g;
                const float *v = sx->grad;
                for (size_t j = 0; j < x->numel; j++) d[j] += v[j];
            } else {
                double *d = g;
                const double *v = sx->grad;
                for (size_t j = 0; j < x->numel; j++) d[j] += v[j];
            }
        }
    ad_tape_reset(s);
}

ad_status ad__checkpoint_jvp(ad_tape *t, ad_node *n)
{
    return ad_tape_fail(t, AD_ERR_STATE,
                    "jvp: checkpoint (node %zu): forward mode through a checkpointed region is not "
                    "supported; record the region without ad_checkpoint for ad_jvp",
                    n->index);
}
