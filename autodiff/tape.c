/*
 * tape.c - the tape itself: its settings and modes, the sticky error, the
 * pass number, and the life cycle of its parts (each part's own file sets
 * it up, resets and frees it).
 */
#include "tape.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

/* The AD_FAST_* bits ad_tape_options.fast_off may hold. */
#define FAST_ALL (AD_FAST_PACKED_WEIGHTS | AD_FAST_STACKED_GRADS)

ad_tape *ad_tape_new(const ad_tape_options *opts)
{
    ad_tape_options o = {0};
    if (opts) o = *opts;
    if ((o.alloc == NULL) != (o.free == NULL)) return NULL;
    if (o.copy_grads != AD_COPY_GRADS_KEEP && o.copy_grads != AD_COPY_GRADS_NORMS &&
        o.copy_grads != AD_COPY_GRADS_NONE)
        return NULL;
    if (o.fast_off & ~(unsigned)FAST_ALL) return NULL;
    ad_tape boot = {0}; /* the allocator, before the tape exists */
    ad__arena_init(&boot, &o);
    ad_tape *t = ad__heap_alloc(&boot, sizeof *t);
    if (!t) return NULL;
    memcpy(t, &boot, sizeof *t);
    t->grad_enabled = 1;
    t->copy_grads = o.copy_grads;
    t->lean_copies = o.copy_grads != AD_COPY_GRADS_KEEP;
    t->fast_off = o.fast_off;
    ad__pool_init(t, o.release_grads != 0);
    ad__stack_init(t);
    ad__packs_init(t);
    /* Tensors start with grad_pass 0: a pass that never equals it, so that a
     * gradient a mode dropped (grad_pass == pass, grad NULL) is never faked. */
    t->pass = 1;
    return t;
}

void ad_tape_free(ad_tape *t)
{
    if (!t) return;
    ad__arena_free(t);
    ad__nodes_free(t);
    ad__stack_free(t);
    ad__scratch_free(t);
    ad__heap_free(t, t);
}

void ad_tape_reset(ad_tape *t)
{
    if (!t) return;
    ad__arena_reset(t);
    ad__nodes_reset(t);
    ad__pool_reset(t);
    ad__stack_reset(t);
    ad__packs_reset(t); /* and the values may change now */
    ad__gram_reset(t);
    ad__tangents_reset(t);
    ad__probe_reset(t);
    ad__replay_reset(t);
    t->status = AD_OK;
    t->msg[0] = '\0';
    t->pass++; /* invalidates every gradient of the old tensors */
}

ad_status ad_tape_status(const ad_tape *t) { return t ? t->status : AD_ERR_NULL; }

const char *ad_tape_message(const ad_tape *t) { return t ? t->msg : "tape is NULL"; }

size_t ad_tape_size(const ad_tape *t)
{
    size_t n = 0;
    if (t) ad__tape_nodes(t, &n);
    return n;
}

size_t ad_tape_bytes_used(const ad_tape *t) { return t ? ad__arena_bytes_used(t) : 0; }

size_t ad_tape_bytes_reserved(const ad_tape *t) { return t ? ad__arena_bytes_reserved(t) : 0; }

int ad_tape_set_grad_enabled(ad_tape *t, int enabled)
{
    if (!t) return 0;
    int was = t->grad_enabled;
    t->grad_enabled = enabled != 0;
    return was;
}

int ad_tape_set_anomaly(ad_tape *t, int enabled)
{
    if (!t) return 0;
    int was = t->anomaly;
    t->anomaly = enabled != 0;
    return was;
}

ad_tape_modes ad_tape_mode(const ad_tape *t)
{
    ad_tape_modes m = {AD_COPY_GRADS_KEEP, 0, 0, 0};
    if (!t) return m;
    m.copy_grads = t->copy_grads;
    m.release_grads = ad__tape_releases_grads(t);
    m.anomaly = t->anomaly;
    /* the stacked gradients step aside in anomaly mode (ad__defer_weight_grad) */
    if (ad__tape_fast(t, AD_FAST_PACKED_WEIGHTS)) m.fast_paths |= AD_FAST_PACKED_WEIGHTS;
    if (ad__tape_fast(t, AD_FAST_STACKED_GRADS) && !t->anomaly) m.fast_paths |= AD_FAST_STACKED_GRADS;
    return m;
}

const char *ad_copy_grads_name(ad_copy_grads mode)
{
    switch (mode) {
    case AD_COPY_GRADS_KEEP: return "keep";
    case AD_COPY_GRADS_NORMS: return "norms";
    case AD_COPY_GRADS_NONE: return "none";
    }
    return "?";
}

unsigned ad__tape_next_pass(ad_tape *t) { return ++t->pass; }

void ad__tape_clear_error(ad_tape *t)
{
    t->status = AD_OK;
    t->msg[0] = '\0';
}

ad_status ad_tape_fail(ad_tape *t, ad_status code, const char *fmt, ...)
{
    if (!t) return AD_ERR_NULL;
    if (t->status != AD_OK) return t->status;
    t->status = code;
    /* An error inside a labelled region (a time step of an unroll) says
     * where it happened: "add: input 1 is NULL (at lstm t=3)". */
    const char *label = ad__tape_label(t);
    char suffix[AD__LABEL_SIZE + 8] = "";
    if (label[0]) snprintf(suffix, sizeof suffix, " (at %s)", label);
    size_t room = sizeof t->msg - strlen(suffix);
    va_list ap;
    va_start(ap, fmt);
    ad__format_message(t->msg, room, fmt, ap);
    va_end(ap);
    if (suffix[0] && !strstr(t->msg, label)) strcat(t->msg, suffix);
    return code;
}
