/*
 * arena.c - the tape's memory: chunks from the user's allocator, bumped
 * through and kept across resets, so that a warmed-up training loop
 * allocates nothing.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define ALIGN AD__ALIGN

static void *default_alloc(void *ctx, size_t n)
{
    (void)ctx;
    return malloc(n);
}

static void default_free(void *ctx, void *p)
{
    (void)ctx;
    free(p);
}

void ad__arena_init(ad_tape *t, const ad_tape_options *o)
{
    ad__arena *a = &t->arena;
    a->alloc = o->alloc ? o->alloc : default_alloc;
    a->free = o->alloc ? o->free : default_free;
    a->ctx = o->alloc_ctx;
    a->chunk_bytes = o->chunk_bytes ? o->chunk_bytes : AD__TUNE_DEFAULT_CHUNK;
}

void ad__arena_options(const ad_tape *t, ad_tape_options *o)
{
    o->alloc = t->arena.alloc, o->free = t->arena.free, o->alloc_ctx = t->arena.ctx;
    o->chunk_bytes = t->arena.chunk_bytes;
}

void *ad__heap_alloc(ad_tape *t, size_t bytes) { return t->arena.alloc(t->arena.ctx, bytes); }

void ad__heap_free(ad_tape *t, void *p)
{
    if (p) t->arena.free(t->arena.ctx, p);
}

void ad__arena_reset(ad_tape *t)
{
    ad__arena *a = &t->arena;
    for (ad__chunk *c = a->first; c; c = c->next) c->used = 0;
    a->cur = a->first;
    a->used_before_cur = 0;
}

ad__arena_mark ad__arena_where(const ad_tape *t)
{
    const ad__arena *a = &t->arena;
    ad__arena_mark m = {a->cur, a->cur ? a->cur->used : 0, a->used_before_cur};
    return m;
}

void ad__arena_rewind(ad_tape *t, const ad__arena_mark *m)
{
    ad__arena *a = &t->arena;
    if (!m->cur) { /* the mark was taken before the first chunk */
        ad__arena_reset(t);
        return;
    }
    /* Chunks after the mark's stay on the list, emptied, for the same path
     * through them again (as after a reset). */
    for (ad__chunk *c = m->cur->next; c; c = c->next) c->used = 0;
    a->cur = m->cur;
    a->cur->used = m->used;
    a->used_before_cur = m->used_before;
}

void ad__arena_free(ad_tape *t)
{
    ad__chunk *c = t->arena.first;
    while (c) {
        ad__chunk *next = c->next;
        ad__heap_free(t, c->raw);
        c = next;
    }
    t->arena.first = t->arena.cur = NULL;
}

size_t ad__arena_bytes_used(const ad_tape *t)
{
    return t->arena.cur ? t->arena.used_before_cur + t->arena.cur->used : 0;
}

size_t ad__arena_bytes_reserved(const ad_tape *t) { return t->arena.reserved; }

/* Inserts a new chunk of at least `bytes` after cur (or first). */
static ad__chunk *new_chunk(ad_tape *t, size_t bytes)
{
    ad__arena *a = &t->arena;
    size_t cap = bytes > a->chunk_bytes ? bytes : a->chunk_bytes;
    size_t total;
    if (cap > SIZE_MAX - sizeof(ad__chunk) - ALIGN) return NULL;
    total = sizeof(ad__chunk) + ALIGN + cap;
    void *raw = ad__heap_alloc(t, total);
    if (!raw) return NULL;
    ad__chunk *c = raw;
    c->raw = raw;
    uintptr_t p = (uintptr_t)((unsigned char *)raw + sizeof(ad__chunk));
    c->base = (unsigned char *)((p + ALIGN - 1) & ~(uintptr_t)(ALIGN - 1));
    c->cap = cap;
    c->used = 0;
    if (!a->cur) {
        c->next = a->first;
        a->first = c;
    } else {
        c->next = a->cur->next;
        a->cur->next = c;
    }
    a->reserved += cap;
    return c;
}

void *ad__alloc(ad_tape *t, size_t bytes)
{
    ad__arena *a = &t->arena;
    if (bytes > SIZE_MAX - ALIGN) {
        ad_tape_fail(t, AD_ERR_OVERFLOW, "arena: request of %zu bytes overflows", bytes);
        return NULL;
    }
    size_t need = (bytes + ALIGN - 1) & ~(size_t)(ALIGN - 1);
    if (need == 0) need = ALIGN;
    if (a->cur && a->cur->cap - a->cur->used >= need) {
        void *p = a->cur->base + a->cur->used;
        a->cur->used += need;
        return p;
    }
    /* Move on to the next kept chunk if it fits; identical steps then take
     * identical paths, so a warmed-up loop never allocates. */
    ad__chunk *next = a->cur ? a->cur->next : a->first;
    if (!next || next->cap < need) {
        next = new_chunk(t, need);
        if (!next) {
            ad_tape_fail(t, AD_ERR_NOMEM, "arena: cannot allocate a chunk for %zu bytes", bytes);
            return NULL;
        }
    }
    if (a->cur) a->used_before_cur += a->cur->used;
    a->cur = next;
    next->used = need;
    return next->base;
}

void *ad__alloc_zero(ad_tape *t, size_t bytes)
{
    void *p = ad__alloc(t, bytes);
    if (p) memset(p, 0, bytes);
    return p;
}

void *ad__alloc_array(ad_tape *t, size_t count, size_t size)
{
    size_t bytes;
    if (!ad__mul_size(count, size, &bytes)) {
        ad_tape_fail(t, AD_ERR_OVERFLOW, "arena: %zu x %zu bytes overflows", count, size);
        return NULL;
    }
    return ad__alloc(t, bytes);
}
