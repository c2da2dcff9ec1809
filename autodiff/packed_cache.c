/*
 * packed_cache.c - weights packed for the kernel once per tape: an unroll
 * multiplies by the same recurrent weight at every step, forward and
 * backward, and packing it every time repeats the same copy T times.
 */
#include "internal.h"
#include "kernels.h"

void ad__packs_init(ad_tape *t) { t->packs.on = ad__tape_fast(t, AD_FAST_PACKED_WEIGHTS); }

const void *ad__packed_lookup(ad_tape *t, const ad_tensor *w, int trans, size_t n_cols, size_t k_rows, size_t m)
{
    ad__packed_cache *pc = &t->packs;
    if (ad__is_small_product(m, n_cols, k_rows)) return NULL;
    size_t count = ad__gemm_packed_count(w->dtype == AD_F64, n_cols, k_rows);
    if (!count) return NULL;
    for (int i = 0; i < pc->n; i++) {
        const ad__packed_weight *e = &pc->at[i];
        if (e->data == w->data && e->trans == trans && e->n == n_cols && e->k == k_rows) return e->packed;
    }
    if (pc->n == AD__PACKED_WEIGHTS) return NULL;
    void *buf = ad__alloc_array(t, count, ad__dtype_size(w->dtype));
    if (!buf) return NULL; /* the tape is in error */
    if (w->dtype == AD_F32) ad__gemm_pack_f32(trans, n_cols, k_rows, w->data, buf);
    else ad__gemm_pack_f64(trans, n_cols, k_rows, w->data, buf);
    ad__packed_weight *e = &pc->at[pc->n++];
    e->data = w->data, e->trans = trans, e->n = n_cols, e->k = k_rows, e->packed = buf;
    return buf;
}
