/*
 * forward.c - forward mode: the recorded tape walked forward with tangents.
 *
 * The tape is topologically ordered, so one loop over its nodes suffices:
 * a node whose inputs all have zero tangents is skipped, any other runs its
 * op's rule (the jvp column of op_table.c). Each tangent is K contiguous
 * blocks of the tensor's numel, so the rules run K-wide products where they
 * have products. Derivations: docs/derivations.md, "Forward mode".
 */
#include "forward.h"

#include <string.h>

#include "internal.h"

void *ad__tan_new(ad_tape *t, ad_node *n)
{
    size_t count;
    if (!ad__mul_size((size_t)t->fwd.k, n->out->numel, &count)) {
        ad_tape_fail(t, AD_ERR_NOMEM, "jvp: %s: %d tangents of %zu elements overflow", ad__ops[n->op].name,
                 t->fwd.k, n->out->numel);
        return NULL;
    }
    void *buf = ad__alloc_array(t, count ? count : 1, ad__dtype_size(n->out->dtype));
    if (!buf) return NULL;
    memset(buf, 0, (count ? count : 1) * ad__dtype_size(n->out->dtype));
    t->fwd.at[n->index] = buf;
    return buf;
}

ad_status ad__jvp_need_saved(ad_tape *t, const ad_node *n)
{
    return ad_tape_fail(t, AD_ERR_STATE, "jvp: %s (node %zu): the data its forward-mode rule reads was not kept",
                    ad__ops[n->op].name, n->index);
}

/*
 * A linear op's tangent is the op applied to the tangents: the node's own
 * forward runs on tensor headers whose data are direction k's tangents (a
 * zero block for an input without one). The headers drop the parameter link
 * so that no product caches a packed copy of a tangent buffer.
 */
ad_status ad__jvp_linear(ad_tape *t, ad_node *n, unsigned fixed)
{
    size_t es = ad__dtype_size(n->out->dtype), biggest = 1;
    char *out = ad__tan_new(t, n);
    ad_tensor *hdr = out ? ad__alloc_array(t, (size_t)n->n_in + 1, sizeof *hdr) : NULL;
    ad_tensor **ptr = hdr ? ad__alloc_array(t, (size_t)n->n_in, sizeof *ptr) : NULL;
    if (!ptr) return ad_tape_status(t);
    for (int i = 0; i < n->n_in; i++)
        if (n->in[i]->numel > biggest) biggest = n->in[i]->numel;
    void *zero = ad__alloc_zero(t, biggest * es);
    if (!zero) return ad_tape_status(t);
    for (int k = 0; k < t->fwd.k; k++) {
        for (int i = 0; i < n->n_in; i++) {
            const ad_tensor *x = n->in[i];
            char *tx = ad__tan(t, x);
            hdr[i] = *x;
            hdr[i].param = NULL;
            hdr[i].view_of = NULL;
            hdr[i].released = 0;
            if (!((fixed >> i) & 1u)) hdr[i].data = tx ? tx + (size_t)k * x->numel * es : zero;
            ptr[i] = &hdr[i];
        }
        ad_tensor *o = &hdr[n->n_in];
        *o = *n->out;
        o->param = NULL;
        o->view_of = NULL;
        char *dst = out + (size_t)k * n->out->numel * es;
        o->data = dst;
        ad_node f = *n;
        f.in = ptr;
        f.out = o;
        f.saved = NULL;
        ad_status st = ad__ops[n->op].forward(t, &f);
        if (st != AD_OK || ad_tape_status(t) != AD_OK) return ad_tape_status(t);
        if (o->data != dst) memcpy(dst, o->data, n->out->numel * es); /* a view's forward */
    }
    return AD_OK;
}

/* The data n's rule reads (its row's keeps, as for backward) must be there. */
static ad_status check_kept(ad_tape *t, const ad_node *n)
{
    unsigned keeps = ad__ops[n->op].keeps;
    const char *name = n->op == AD_OP_CUSTOM && n->a.custom->name ? n->a.custom->name : ad__ops[n->op].name;
    if ((keeps & AD__KEEPS_OUT) && ad__data_released(n->out))
        return ad_tape_fail(t, AD_ERR_STATE, "jvp: %s (node %zu): its output's data was released (ad_tape_release)",
                        name, n->index);
    for (int i = 0; i < n->n_in; i++)
        if (((keeps & AD__KEEPS_ALL_IN) || (i < 6 && ((keeps >> i) & 1u))) && ad__data_released(n->in[i]))
            return ad_tape_fail(t, AD_ERR_STATE, "jvp: %s (node %zu): input %d's data was released (ad_tape_release)",
                            name, n->index, i);
    return AD_OK;
}

static ad_status check_seed(ad_tape *t, const ad_tangent_seed *s, size_t i)
{
    if ((s->x == NULL) == (s->param == NULL))
        return ad_tape_fail(t, AD_ERR_ARG, "jvp: seed %zu: set exactly one of x and param", i);
    if (!s->dot) return ad_tape_fail(t, AD_ERR_NULL, "jvp: seed %zu: dot is NULL", i);
    if (s->x && s->x->tape != t)
        return ad_tape_fail(t, AD_ERR_FOREIGN, "jvp: seed %zu: the tensor is not on this tape", i);
    if (s->x && s->x->node->n_in != 0) {
        char sh[AD__SHAPE_BUF];
        return ad_tape_fail(t, AD_ERR_ARG, "jvp: seed %zu: %s %s is not a leaf (seed variables, constants or copies)",
                        i, ad__ops[s->x->node->op].name, ad__shape_str(s->x->shape, sh));
    }
    return AD_OK;
}

/* Adds seed s's tangents into leaf x's. */
static ad_status seed_leaf(ad_tape *t, ad_tensor *x, const void *dot)
{
    size_t es = ad__dtype_size(x->dtype), count = (size_t)t->fwd.k * x->numel;
    void *have = ad__tan(t, x);
    if (!have) {
        if (!(have = ad__tan_new(t, x->node))) return ad_tape_status(t);
        memcpy(have, dot, count * es);
    } else if (x->dtype == AD_F32) {
        for (size_t i = 0; i < count; i++) ((float *)have)[i] += ((const float *)dot)[i];
    } else {
        for (size_t i = 0; i < count; i++) ((double *)have)[i] += ((const double *)dot)[i];
    }
    return AD_OK;
}

static ad_status apply_seeds(ad_tape *t, const ad_tangent_seed *seeds, size_t n_seeds)
{
    for (size_t i = 0; i < n_seeds; i++) {
        const ad_tangent_seed *s = &seeds[i];
        if (s->x) {
            if (seed_leaf(t, s->x, s->dot) != AD_OK) return ad_tape_status(t);
            continue;
        }
        size_t count;
        ad_node *const *nodes = ad__tape_nodes(t, &count);
        for (size_t j = 0; j < count; j++) {
            ad_tensor *x = nodes[j]->out;
            if (nodes[j]->op == AD_OP_PARAM && x->param == s->param &&
                seed_leaf(t, x, s->dot) != AD_OK)
                return ad_tape_status(t);
        }
    }
    return AD_OK;
}

ad_status ad_jvp(ad_tape *t, const ad_tangent_seed *seeds, size_t n_seeds, int k)
{
    if (!t) return AD_ERR_NULL;
    if (ad__status(t) != AD_OK) return ad__status(t);
    if (k < 1 || k > AD_JVP_MAX_K)
        return ad_tape_fail(t, AD_ERR_ARG, "jvp: k = %d directions (1..%d allowed)", k, AD_JVP_MAX_K);
    if (!seeds && n_seeds) return ad_tape_fail(t, AD_ERR_NULL, "jvp: seeds is NULL");
    for (size_t i = 0; i < n_seeds; i++)
        if (check_seed(t, &seeds[i], i) != AD_OK) return ad__status(t);
    ad__tangents_reset(t);
    size_t count;
    ad_node *const *nodes = ad__tape_nodes(t, &count);
    void **table = ad__alloc_array(t, count ? count : 1, sizeof *table);
    if (!table) return ad__status(t);
    memset(table, 0, (count ? count : 1) * sizeof *table);
    t->fwd.at = table;
    t->fwd.n = count;
    t->fwd.k = k;
    if (apply_seeds(t, seeds, n_seeds) != AD_OK) return ad__status(t);
    for (size_t j = 0; j < count; j++) {
        ad_node *n = nodes[j];
        int reached = 0;
        for (int i = 0; i < n->n_in && !reached; i++) reached = ad__tan(t, n->in[i]) != NULL;
        if (!reached) continue;
        if (check_kept(t, n) != AD_OK || ad__ops[n->op].jvp(t, n) != AD_OK) return ad__status(t);
    }
    return ad__status(t);
}

const void *ad_tensor_tangent(const ad_tensor *x, int k)
{
    if (!x || !x->tape || !x->node) return NULL;
    const ad_tape *t = x->tape;
    if (k < 0 || k >= t->fwd.k) return NULL;
    const char *buf = ad__tan(t, x);
    return buf ? buf + (size_t)k * x->numel * ad__dtype_size(x->dtype) : NULL;
}
