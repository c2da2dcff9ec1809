/*
 * release.c - buffers handed back to the tape for reuse: intermediate
 * gradients once backward has used them (release_grads) and op outputs a
 * caller gives back with ad_tape_release(); and the lazily made gradient
 * buffers of a backward pass, which take a handed-back buffer of their size
 * when there is one.
 */
#include <string.h>

#include "internal.h"
#include "split.h"

void ad__pool_init(ad_tape *t, int release_grads) { t->pool.release_grads = release_grads; }

/* The free list of buffers of `bytes`, or NULL. */
static void **free_list(ad_tape *t, size_t bytes)
{
    ad__buffer_pool *p = &t->pool;
    for (int i = 0; i < p->n_lists; i++)
        if (p->list[i].bytes == bytes) return &p->list[i].head;
    return NULL;
}

/* Puts a buffer of `bytes` on its free list; 0 when it cannot (too small,
 * too many sizes), and then the buffer simply stays unused until reset. */
static int give_back(ad_tape *t, void *buf, size_t bytes)
{
    ad__buffer_pool *p = &t->pool;
    if (bytes < sizeof(void *)) return 0;
    void **head = free_list(t, bytes);
    if (!head && p->n_lists < AD__FREE_CLASSES) {
        p->list[p->n_lists].bytes = bytes;
        p->list[p->n_lists].head = NULL;
        head = &p->list[p->n_lists++].head;
    }
    if (!head) return 0;
    memcpy(buf, head, sizeof *head); /* the buffer links to the old head */
    *head = buf;
    return 1;
}

int ad__give_back_grad(ad_tape *t, ad_tensor *x)
{
    if (!x->grad || !give_back(t, x->grad, x->numel * ad__dtype_size(x->dtype))) return 0;
    x->grad = NULL;
    return 1;
}

void ad__release_grad(ad_tape *t, ad_tensor *x)
{
    if (!x->grad || x->grad_pinned) return;
    /* before give_back, which writes the free list's link into the buffer */
    x->grad_sq = ad__sum_squares(x->dtype, x->grad, x->numel);
    ad__give_back_grad(t, x);
}

ad_status ad_tape_release(ad_tape *t, ad_tensor *x)
{
    if (!t) return AD_ERR_NULL;
    if (ad__status(t) != AD_OK) return ad__status(t);
    if (!x) return ad_tape_fail(t, AD_ERR_NULL, "tape_release: tensor is NULL");
    if (x->tape != t) return ad_tape_fail(t, AD_ERR_FOREIGN, "tape_release: the tensor is not on this tape");
    const char *op = ad__ops[x->node->op].name;
    char sh[AD__SHAPE_BUF];
    if (x->node->n_in == 0 || x->param)
        return ad_tape_fail(t, AD_ERR_ARG, "tape_release: %s %s is a leaf; only op outputs can be released", op,
                            ad__shape_str(x->shape, sh));
    if (x->view_of)
        return ad_tape_fail(t, AD_ERR_ARG, "tape_release: %s %s is a view; release the tensor it views", op,
                            ad__shape_str(x->shape, sh));
    if (x->data_needed)
        return ad_tape_fail(t, AD_ERR_STATE, "tape_release: %s %s: the backward of a recorded op reads it", op,
                            ad__shape_str(x->shape, sh));
    if (x->released) return AD_OK;
    x->released = 1;
    if (x->numel >= AD__RELEASE_MIN) /* smaller ones are not worth a list */
        give_back(t, x->data, x->numel * ad__dtype_size(x->dtype));
    return AD_OK;
}

/* The slow half of ad__grad: a new zeroed buffer for this pass. A buffer of
 * up to one alignment unit is a whole 64-byte block, zeroed with a
 * fixed-size store the compiler inlines. */
static void zero_range(void *ctx, size_t lo, size_t hi, int part)
{
    (void)part;
    memset((char *)ctx + lo, 0, hi - lo);
}

void *ad__grad_new(ad_tape *t, ad_tensor *x)
{
    size_t bytes = x->numel * ad__dtype_size(x->dtype);
    void *g = ad__pool_take(t, bytes);
    if (!g) g = ad__bump(t, bytes);
    if (!g) return NULL;
    if (bytes <= AD__ALIGN) {
        memset(g, 0, AD__ALIGN);
    } else { /* a large one over the threads (split.h), in 64-byte lines */
        int parts = ad__split_parts(bytes, bytes, AD__TUNE_COPY_MIN_PER_THREAD);
        ad__split_run(bytes, parts, 64, zero_range, g);
    }
    x->grad = g;
    x->grad_pass = ad__tape_pass(t);
    x->grad_sq = 0;
    return g;
}
