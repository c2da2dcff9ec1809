/*
 * stacked_grads.c - stacked weight gradients: on a lean tape the weight
 * gradient of a per-step product is not computed at its step; the steps'
 * rows are stacked and multiplied in one product per few thousand rows,
 * which reads each weight-sized gradient block once instead of once per step.
 */
#include <string.h>

#include "internal.h"
#include "kernels.h"

/* AD__TUNE_STACK_ROWS rows make one stacked product (which steps are
 * stacked: ad__defer_weight_grad in internal.h). */
#define STACK_ROWS AD__TUNE_STACK_ROWS

struct ad__deferred {
    ad_param *param;
    void *dst; /* the gradient added into: the parameter's, or a shared copy's buffer */
    const void *a, *g;
    ad_tensor *out; /* whose gradient g is: released once used (release_grads) */
    size_t m, k, n;
    int ta, tb, done;
    unsigned char was_pinned; /* out's gradient was pinned before: it stays so */
};

void ad__stack_init(ad_tape *t) { t->stack.on = ad__tape_fast(t, AD_FAST_STACKED_GRADS); }

void ad__stack_free(ad_tape *t)
{
    ad__heap_free(t, t->stack.rec);
    t->stack.rec = NULL;
}


int ad__stack_weight_grad(ad_tape *t, ad_tensor *b, const void *a, int ta, ad_tensor *out, size_t m,
                          size_t k, size_t n, int tb, void *dst)
{
    if (t->stack.n == t->stack.cap) { /* grows to its steady size once */
        size_t cap = t->stack.cap ? 2 * t->stack.cap : 256, bytes;
        if (!ad__mul_size(cap, sizeof *t->stack.rec, &bytes)) return 0;
        ad__deferred *d = ad__heap_alloc(t, bytes);
        if (!d) return 0; /* computed now instead */
        if (t->stack.n) memcpy(d, t->stack.rec, t->stack.n * sizeof *d);
        ad__heap_free(t, t->stack.rec);
        t->stack.rec = d;
        t->stack.cap = cap;
    }
    ad__deferred *d = &t->stack.rec[t->stack.n++];
    d->param = b->param, d->dst = dst, d->a = a, d->g = out->grad, d->out = out;
    d->was_pinned = out->grad_pinned;
    out->grad_pinned = 1; /* read again when the stack is computed */
    d->m = m, d->k = k, d->n = n, d->ta = ta, d->tb = tb, d->done = 0;
    /* Long unrolls: compute what is stacked every few thousand rows, so that
     * the steps' gradients it reads need not all stay until the end. */
    t->stack.rows += m;
    if (t->stack.rows >= 2 * STACK_ROWS) ad__stack_flush(t);
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
    ad__product p = {d->param->grad.dtype == AD_F64, 1, 0, d->k, d->n, rows, sa, sg, d->dst, 1, NULL, NULL};
    if (d->tb) p.m = d->n, p.n = d->k, p.a = sg, p.b = sa;
    ad__gemm(&p);
}

static int same_group(const ad__deferred *x, const ad__deferred *y)
{
    return x->dst == y->dst && x->tb == y->tb && x->k == y->k && x->n == y->n;
}

/* Runs the deferred products: per parameter, the steps' rows stacked in
 * the order they were recorded, STACK_ROWS at a time. */
void ad__stack_flush(ad_tape *t)
{
    for (size_t i = 0; i < t->stack.n; i++) {
        ad__deferred *first = &t->stack.rec[i];
        if (first->done) continue;
        size_t es = ad__dtype_size(first->param->grad.dtype), total = 0;
        for (size_t j = i; j < t->stack.n; j++)
            if (!t->stack.rec[j].done && same_group(first, &t->stack.rec[j])) total += t->stack.rec[j].m;
        size_t cap = total < STACK_ROWS ? total : STACK_ROWS, rows = 0;
        size_t bytes = cap * (first->k + first->n) * es;
        if (bytes > t->stack.bytes) { /* one buffer for every flush until the tape is reset */
            t->stack.buf = ad__alloc(t, bytes);
            t->stack.bytes = t->stack.buf ? bytes : 0;
        }
        if (!t->stack.buf) return; /* the tape is in error (out of memory) */
        char *sa = t->stack.buf, *sg = sa + cap * first->k * es;
        for (size_t j = i; j < t->stack.n; j++) {
            ad__deferred *d = &t->stack.rec[j];
            if (d->done || !same_group(first, d)) continue;
            if (rows + d->m > cap) {
                stacked_product(first, rows, sa, sg);
                rows = 0;
            }
            for (size_t r = 0; r < d->m; r++) op_a_row(d, r, es, sa + (rows + r) * d->k * es);
            memcpy(sg + rows * d->n * es, d->g, d->m * d->n * es);
            rows += d->m;
            d->done = 1;
            d->out->grad_pinned = d->was_pinned;
            if (ad__tape_releases_grads(t)) ad__release_grad(t, d->out);
        }
        if (rows) stacked_product(first, rows, sa, sg);
    }
    t->stack.n = 0;
    t->stack.rows = 0;
}
