/*
 * backward.c - the reverse sweep.
 *
 * The tape is already in topological order, so backward is a plain reverse
 * loop over the nodes (no recursion: unrolls of any length are safe for the
 * stack). Gradients of tape tensors are allocated lazily in the arena and
 * belong to one pass; parameters' gradients accumulate across passes.
 */
#include <string.h>

#include "internal.h"
#include "kernels.h"

/* ---- deferred weight gradients ------------------------------------------------------------ */

/* STACK_ROWS rows make one stacked product (which steps are stacked:
 * ad__defer_weight_grad in internal.h); the value and its why: tuning.h. */
enum { STACK_ROWS = AD__TUNE_STACK_ROWS };

typedef struct ad__deferred {
    ad_param *param;
    const void *a, *g;
    ad_tensor *out; /* whose gradient g is: released once used (release_grads) */
    size_t m, k, n;
    int ta, tb, done;
} ad__deferred;

static void flush_deferred(ad_tape *t);

int ad__stack_weight_grad(ad_tape *t, ad_tensor *b, const void *a, int ta, ad_tensor *out, size_t m,
                          size_t k, size_t n, int tb)
{
    if (t->n_deferred == t->cap_deferred) { /* grows to its steady size once */
        size_t cap = t->cap_deferred ? 2 * t->cap_deferred : 256, bytes;
        if (!ad__mul_size(cap, sizeof *t->deferred, &bytes)) return 0;
        ad__deferred *d = t->alloc(t->alloc_ctx, bytes);
        if (!d) return 0; /* computed now instead */
        if (t->n_deferred) memcpy(d, t->deferred, t->n_deferred * sizeof *d);
        if (t->deferred) t->free(t->alloc_ctx, t->deferred);
        t->deferred = d;
        t->cap_deferred = cap;
    }
    ad__deferred *d = &t->deferred[t->n_deferred++];
    d->param = b->param, d->a = a, d->g = out->grad, d->out = out;
    out->grad_pinned = 1; /* read again when the stack is computed */
    d->m = m, d->k = k, d->n = n, d->ta = ta, d->tb = tb, d->done = 0;
    /* Long unrolls: compute what is stacked every few thousand rows, so that
     * the steps' gradients it reads need not all stay until the end. */
    t->deferred_rows += m;
    if (t->deferred_rows >= 2 * STACK_ROWS) flush_deferred(t);
    return 1;
}

/* Row r of op(A) of record d into dst (k elements of size es). */
static void op_a_row(const ad__deferred *d, size_t r, size_t es, char *dst)
{
    const char *a = d->a;
    if (!d->ta) {
        memcpy(dst, a + r * d->k * es, d->k * es);
        return;
    }
    for (size_t c = 0; c < d->k; c++) memcpy(dst + c * es, a + (c * d->m + r) * es, es);
}

/* grad += A^T G over `rows` stacked rows (A [rows, k], G [rows, n]), or
 * G^T A when the parameter is used transposed. */
static void stacked_product(const ad__deferred *d, size_t rows, const void *sa, const void *sg)
{
    void *grad = d->param->grad.data;
    if (d->param->grad.dtype == AD_F32) {
        if (!d->tb) ad__gemm_f32(1, 0, d->k, d->n, rows, sa, sg, grad, 1);
        else ad__gemm_f32(1, 0, d->n, d->k, rows, sg, sa, grad, 1);
    } else {
        if (!d->tb) ad__gemm_f64(1, 0, d->k, d->n, rows, sa, sg, grad, 1);
        else ad__gemm_f64(1, 0, d->n, d->k, rows, sg, sa, grad, 1);
    }
}

static int same_group(const ad__deferred *x, const ad__deferred *y)
{
    return x->param == y->param && x->tb == y->tb && x->k == y->k && x->n == y->n;
}

/* Runs the deferred products: per parameter, the steps' rows stacked in
 * the order they were recorded, STACK_ROWS at a time. */
static void flush_deferred(ad_tape *t)
{
    for (size_t i = 0; i < t->n_deferred; i++) {
        ad__deferred *first = &t->deferred[i];
        if (first->done) continue;
        size_t es = ad__dtype_size(first->param->grad.dtype), total = 0;
        for (size_t j = i; j < t->n_deferred; j++)
            if (!t->deferred[j].done && same_group(first, &t->deferred[j])) total += t->deferred[j].m;
        size_t cap = total < STACK_ROWS ? total : STACK_ROWS, rows = 0;
        size_t bytes = cap * (first->k + first->n) * es;
        if (bytes > t->stack_bytes) { /* one buffer for every flush until the tape is reset */
            t->stack_buf = ad__alloc(t, bytes);
            t->stack_bytes = t->stack_buf ? bytes : 0;
        }
        if (!t->stack_buf) return; /* the tape is in error (out of memory) */
        char *sa = t->stack_buf, *sg = sa + cap * first->k * es;
        for (size_t j = i; j < t->n_deferred; j++) {
            ad__deferred *d = &t->deferred[j];
            if (d->done || !same_group(first, d)) continue;
            if (rows + d->m > cap) {
                stacked_product(first, rows, sa, sg);
                rows = 0;
            }
            for (size_t r = 0; r < d->m; r++) op_a_row(d, r, es, sa + (rows + r) * d->k * es);
            memcpy(sg + rows * d->n * es, d->g, d->m * d->n * es);
            rows += d->m;
            d->done = 1;
            d->out->grad_pinned = 0;
            if (t->release_grads) ad__release_grad(t, d->out);
        }
        if (rows) stacked_product(first, rows, sa, sg);
    }
    t->n_deferred = 0;
    t->deferred_rows = 0;
}


static ad_status check_root(ad_tape *t, ad_tensor *root, const ad_tensor *upstream)
{
    char b1[AD__SHAPE_BUF], b2[AD__SHAPE_BUF];
    if (ad_tape_status(t) != AD_OK) return ad_tape_status(t);
    if (!root) return ad_tape_fail(t, AD_ERR_NULL, "backward: root is NULL");
    if (root->tape != t) return ad_tape_fail(t, AD_ERR_FOREIGN, "backward: root is not on this tape");
    if (!root->requires_grad)
        return ad_tape_fail(t, AD_ERR_STATE,
                        "backward: root %s does not depend on any parameter or variable "
                        "(or was recorded with gradients disabled)",
                        ad__shape_str(root->shape, b1));
    if (!upstream) {
        if (root->numel != 1)
            return ad_tape_fail(t, AD_ERR_NOT_SCALAR,
                            "backward: root %s is not a scalar; give an upstream gradient",
                            ad__shape_str(root->shape, b1));
        return AD_OK;
    }
    if (!ad_shape_equal(upstream->shape, root->shape))
        return ad_tape_fail(t, AD_ERR_SHAPE, "backward: upstream %s differs from root %s",
                        ad__shape_str(upstream->shape, b1), ad__shape_str(root->shape, b2));
    if (upstream->dtype != root->dtype)
        return ad_tape_fail(t, AD_ERR_DTYPE, "backward: upstream is %s but root is %s",
                        ad_dtype_name(upstream->dtype), ad_dtype_name(root->dtype));
    return AD_OK;
}

ad_status ad_backward(ad_tape *t, ad_tensor *root, const ad_tensor *upstream)
{
    if (!t) return AD_ERR_NULL;
    if (check_root(t, root, upstream) != AD_OK) return ad_tape_status(t);

    ad__tape_next_pass(t);
    t->n_deferred = 0;
    t->deferred_rows = 0;
    if (root->param && ad__tape_lean_copies(t)) { /* the loss is a copy itself: add into p */
        ad_tensor *g = &root->param->grad;
        double sq = 0;
        for (size_t i = 0; i < root->numel; i++) {
            double v = upstream ? ad_tensor_get(upstream, i) : 1.0;
            if (g->dtype == AD_F32) ((float *)g->data)[i] += (float)v;
            else ((double *)g->data)[i] += v;
            sq += v * v;
        }
        if (t->copy_grads == AD_COPY_GRADS_NORMS) root->grad_sq = sq, root->grad = NULL, root->grad_pass = t->pass;
        return AD_OK;
    }
    void *seed = ad__grad(t, root);
    if (!seed) return ad_tape_status(t);
    size_t esize = ad__dtype_size(root->dtype);
    if (upstream) {
        memcpy(seed, upstream->data, root->numel * esize);
    } else if (root->dtype == AD_F32) {
        *(float *)seed = 1.0f;
    } else {
        *(double *)seed = 1.0;
    }

    ad_node *const *nodes = t->nodes;
    unsigned pass = t->pass;
    for (size_t i = root->node->index + 1; i-- > 0;) {
        ad_node *n = nodes[i];
        const ad_tensor *y = n->out;
        if (!y->requires_grad || y->grad_pass != pass || !y->grad) continue;
        ad__ops[n->op].backward(t, n);
        if (t->status != AD_OK) return t->status;
        if (t->anomaly) {
            ad__check_backward_anomaly(t, n);
            if (t->status != AD_OK) return t->status;
        }
        /* every consumer of n's output came later on the tape: its gradient is
         * complete and used. Buffers of a few elements are not worth the lists. */
        if (t->release_grads && n->n_in > 0 && y->numel >= AD__RELEASE_MIN) ad__release_grad(t, n->out);
    }
    flush_deferred(t);
    return t->status;
}
