/*
 * probe.c - per-copy gradient checks: one use of a parameter on a tape sees
 * a private, perturbed copy of its values (ad_gradcheck_copies).
 */
#include <string.h>

#include "internal.h"

void ad__tape_set_probe(ad_tape *t, const ad_param *p, size_t copy, size_t index, double delta)
{
    t->probe.param = p;
    t->probe.copy = copy;
    t->probe.index = index;
    t->probe.delta = delta;
    t->probe.seen = 0;
}

void *ad__tape_probe(ad_tape *t, const ad_param *p)
{
    ad__probe *pr = &t->probe;
    if (pr->param != p || pr->seen++ != pr->copy) return NULL;
    size_t es = ad__dtype_size(p->value.dtype);
    size_t bytes = p->value.numel * es;
    void *d = ad__alloc(t, bytes ? bytes : 1);
    if (!d) return NULL;
    memcpy(d, p->value.data, p->value.numel * es);
    if (pr->index < p->value.numel) {
        if (p->value.dtype == AD_F32) ((float *)d)[pr->index] += (float)pr->delta;
        else ((double *)d)[pr->index] += pr->delta;
    }
    return d;
}
