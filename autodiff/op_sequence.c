/*
 * op_sequence.c - a whole recurrence in one node: Elman (ad_rnn_sequence)
 * and GRU (ad_gru_sequence, below, built the same way).
 *
 * h_k = act(gx_k + h_{k-1} op(W)) for k = 1..T, gx_k the k-th block of B
 * rows of gx [T B, H], h_0 [B, H]. The node computes what T steps of
 * ad_matmul and ad_rnn_cell on slices of gx, concatenated, compute: the same
 * products (with the same packed weight) and the same gates, in the same
 * order, so its states and the gradients of gx and h_0 are the step-by-step
 * graph's bit for bit, from one node instead of 3 T + 1. Tiny nets spend
 * more on recording nodes than on their arithmetic; this is where that cost
 * goes away, and batched ones save the copies of slicing and joining.
 *
 * One difference: backward sums the weight's gradient over all steps in
 * one product instead of one per step, so that gradient agrees with the
 * step-by-step graph's to rounding, not to the bit.
 *
 * Backward keeps h_0, W and the output (the states). n->saved holds a
 * [B, H] plane of scratch: h_{k-1} op(W) of the step being computed, then
 * in backward the state's gradient; backward takes [T B, H] more for the
 * pre-activations' gradients the weight's needs.
 * Derivation: docs/derivations.md, "Elman sequence".
 */
#include <string.h>

#include "internal.h"
#include "kernels.h"

/* The node's sizes: T steps of B rows, H units, element size es. */
typedef struct seq {
    int f32, relu, tb;
    size_t T, B, H, step, es;
} seq;

static seq seq_of(const ad_node *n)
{
    seq s;
    s.f32 = n->out->dtype == AD_F32;
    s.relu = n->a.activation == AD_RNN_RELU;
    s.tb = (n->a.flags & AD_TRANS_B) != 0;
    s.B = (size_t)n->in[1]->shape.dim[0];
    s.H = (size_t)n->in[1]->shape.dim[1];
    s.T = (size_t)n->out->shape.dim[0] / s.B;
    s.step = s.B * s.H;
    s.es = ad__dtype_size(n->out->dtype);
    return s;
}

/* gx's rows a whole, non-zero number of steps of h0's B rows, h0 not empty. */
static ad_status check_steps(ad_tape *t, const ad_node *n, ad_shape x, ad_shape h)
{
    const char *name = ad__ops[n->op].name;
    char sx[AD__SHAPE_BUF], sh[AD__SHAPE_BUF];
    if (h.dim[0] == 0 || h.dim[1] == 0)
        return ad_tape_fail(t, AD_ERR_EMPTY, "%s: state h0 %s is empty", name, ad__shape_str(h, sh));
    if (x.dim[0] == 0)
        return ad_tape_fail(t, AD_ERR_EMPTY, "%s: gx %s is an empty sequence", name, ad__shape_str(x, sx));
    if (x.dim[0] % h.dim[0])
        return ad_tape_fail(t, AD_ERR_SHAPE, "%s: gx %s is not a whole number of steps of %lld rows (h0 %s)", name,
                            ad__shape_str(x, sx), (long long)h.dim[0], ad__shape_str(h, sh));
    return AD_OK;
}

/* gx [T B, H], h0 [B, H], w [H, H] -> [T B, H]. */
ad_status ad__shape_rnn_sequence(ad_tape *t, ad_node *n, ad_shape *out)
{
    ad_shape x = n->in[0]->shape, h = n->in[1]->shape, w = n->in[2]->shape;
    char sx[AD__SHAPE_BUF], sh[AD__SHAPE_BUF], sw[AD__SHAPE_BUF];
    if (n->a.activation != AD_RNN_TANH && n->a.activation != AD_RNN_RELU)
        return ad_tape_fail(t, AD_ERR_ARG, "rnn_sequence: unknown activation %d", n->a.activation);
    if (n->a.flags & ~AD_TRANS_B)
        return ad_tape_fail(t, AD_ERR_ARG, "rnn_sequence: flags %d: only AD_TRANS_B applies", n->a.flags);
    if (x.rank != 2 || h.rank != 2 || w.rank != 2 || h.dim[1] != x.dim[1] || w.dim[0] != x.dim[1] ||
        w.dim[1] != x.dim[1])
        return ad_tape_fail(t, AD_ERR_SHAPE, "rnn_sequence: gx %s, h0 %s, w_hh %s: gx must be [T B, H], h0 [B, H] "
                            "and w_hh [H, H]", ad__shape_str(x, sx), ad__shape_str(h, sh), ad__shape_str(w, sw));
    if (check_steps(t, n, x, h) != AD_OK) return ad_tape_status(t);
    *out = x;
    return AD_OK;
}

/* Block k of T blocks of `step` elements; BLOCK keeps a NULL p NULL. */
#define AT(s, p, k) ((char *)(p) + (k) * (s).step * (s).es)
#define BLOCK(s, p, k) ((p) ? AT(s, p, k) : NULL) /* p may be NULL */

/* c (+)= a op(b) (+ a bias row) for a step's product with the weight: a
 * [B, H] state times [H, G H] for G gates (G = 1 Elman, 3 GRU; tb: the
 * transposed weight), or in backward a [B, G H] gradient times op(b)^T
 * (G = 1 only, tb flipped). packed and bias may be NULL. */
static void step_product(const seq *s, size_t gates, int tb, const void *a, const void *b, const void *packed,
                         const void *bias, void *c, int accumulate)
{
    ad__product p = {!s->f32, 0, tb, s->B, gates * s->H, s->H, a, b, c, accumulate, bias, packed};
    ad__gemm(&p);
}

ad_status ad__rnn_sequence_fwd(ad_tape *t, ad_node *n)
{
    seq s = seq_of(n);
    const ad_tensor *w = n->in[2];
    const void *packed = ad__packed_for(t, w, s.tb, s.H, s.H, s.B);
    n->saved = ad__saved_array(t, n, s.step, s.es);
    if (!n->saved || ad__status(t) != AD_OK) return ad__status(t);
    const void *prev = n->in[1]->data;
    for (size_t k = 0; k < s.T; k++) {
        step_product(&s, 1, s.tb, prev, w->data, packed, NULL, n->saved, 0);
        ad__rnn_gates_fwd(s.f32, s.relu, s.step, AT(s, n->in[0]->data, k), n->saved, AT(s, n->out->data, k));
        prev = AT(s, n->out->data, k);
    }
    return AD_OK;
}

/* dst = 0 + src (as adding into a new zeroed gradient makes it: -0 becomes +0). */
static void start_from(const seq *s, void *dst, const void *src)
{
    if (s->f32)
        for (size_t i = 0; i < s->step; i++) ((float *)dst)[i] = 0.0f + ((const float *)src)[i];
    else
        for (size_t i = 0; i < s->step; i++) ((double *)dst)[i] = 0.0 + ((const double *)src)[i];
}

/* dW += h_{k-1}^T dz_k summed over the steps, dz_k [B, G H] for G gates,
 * as two products over all of them (h_0's rows, then the states' first
 * T - 1 blocks, which are contiguous): far faster than T products of B rows
 * each. With op the transpose, dW += dz_k^T h_{k-1}. */
static void weight_grad(const seq *s, const ad_node *n, size_t gates, const char *dz, void *gw)
{
    const char *h0 = n->in[1]->data, *states = n->out->data;
    size_t rest = (s->T - 1) * s->B, wide = gates * s->H;
    ad__product p = {!s->f32, 1, 0, s->tb ? wide : s->H, s->tb ? s->H : wide, s->B, s->tb ? (const void *)dz : h0,
                     s->tb ? (const void *)h0 : dz, gw, 1, NULL, NULL};
    ad__gemm(&p);
    if (!rest) return;
    const char *dz1 = dz + gates * s->step * s->es;
    p.k = rest;
    p.a = s->tb ? (const void *)dz1 : states;
    p.b = s->tb ? (const void *)states : dz1;
    ad__gemm(&p);
}

/*
 * Backward through time, step T down to 1, as the step-by-step graph runs
 * it: dh_k = G_k + dz_{k+1} op(W)^T, dz_k = act'(h_k) dh_k (into gx's rows
 * k), dh_0 = dz_1 op(W)^T; then dW from every step's dz_k at once.
 */
void ad__rnn_sequence_bwd(ad_tape *t, ad_node *n)
{
    seq s = seq_of(n);
    ad_tensor *w = n->in[2];
    void *ggx = ad__grad(t, n->in[0]), *gh0 = ad__grad(t, n->in[1]), *gw = ad__grad(t, w);
    const void *packed = ad__packed_for(t, w, !s.tb, s.H, s.H, s.B);
    /* every step's dz when dW needs them, else one step's */
    char *dzs = ad__alloc_array(t, gw ? s.T * s.step : s.step, s.es);
    if (ad__status(t) != AD_OK) return;
    char *dh = n->saved;
    start_from(&s, dh, AT(s, n->out->grad, s.T - 1));
    for (size_t k = s.T; k-- > 0;) {
        char *dz = gw ? AT(s, dzs, k) : dzs;
        memset(dz, 0, s.step * s.es);
        ad__rnn_gates_bwd(s.f32, s.relu, s.step, AT(s, n->out->data, k), dh, BLOCK(s, ggx, k), dz);
        void *gprev = k ? dh : gh0;
        if (k) start_from(&s, dh, AT(s, n->out->grad, k - 1));
        if (gprev) step_product(&s, 1, !s.tb, dz, w->data, packed, NULL, gprev, 1);
    }
    if (gw) weight_grad(&s, n, 1, dzs, gw);
}

/* Forward mode, direction by direction and step by step:
 * dh_k = act'(h_k) (dgx_k + dh_{k-1} op(W) + h_{k-1} op(dW)). */
ad_status ad__rnn_sequence_jvp(ad_tape *t, ad_node *n)
{
    seq s = seq_of(n);
    const ad_tensor *x = n->in[0], *h0 = n->in[1], *w = n->in[2];
    char *dy = ad__tan_new(t, n), *acc = ad__alloc_array(t, s.step, s.es);
    if (!dy || !acc) return ad_tape_status(t);
    const char *dx = ad__tan(t, x), *dh0 = ad__tan(t, h0), *dw = ad__tan(t, w);
    for (size_t d = 0; d < (size_t)ad__tan_k(t); d++) {
        char *yd = dy + d * n->out->numel * s.es;
        const char *xd = dx ? dx + d * x->numel * s.es : NULL, *wd = dw ? dw + d * w->numel * s.es : NULL;
        const char *tprev = dh0 ? dh0 + d * h0->numel * s.es : NULL;
        for (size_t k = 0; k < s.T; k++) {
            const void *prev = k ? AT(s, n->out->data, k - 1) : h0->data;
            memset(acc, 0, s.step * s.es);
            if (tprev) step_product(&s, 1, s.tb, tprev, w->data, NULL, NULL, acc, 1);
            if (wd) step_product(&s, 1, s.tb, prev, wd, NULL, NULL, acc, 1);
            ad__rnn_gates_jvp(s.f32, s.relu, s.step, AT(s, n->out->data, k), BLOCK(s, xd, k), acc, AT(s, yd, k));
            tprev = AT(s, yd, k);
        }
    }
    return AD_OK;
}

/* ---- GRU: h_k = gru(gx_k, h_{k-1} op(W) + b, h_{k-1}) ----------------------------------- */

/* dst[i] += src[i] over n elements. */
static void add_into(const seq *s, size_t n, void *dst, const void *src)
{
    if (s->f32)
        for (size_t i = 0; i < n; i++) ((float *)dst)[i] += ((const float *)src)[i];
    else
        for (size_t i = 0; i < n; i++) ((double *)dst)[i] += ((const double *)src)[i];
}

/*
 * The GRU's n->saved: every step's hidden projection gh_k = h_{k-1} op(W) + b
 * ([T B, 3H], which the gates' backward reads), then every step's three
 * [B, H] planes r, z, n.
 */
#define GRU_GH(s, n, k) ((char *)(n)->saved + (k) * 3 * (s).step * (s).es)
#define GRU_PLANES(s, n, k) ((char *)(n)->saved + ((s).T * 3 * (s).step + (k) * 3 * (s).step) * (s).es)

/* gx [T B, 3H], h0 [B, H], w [H, 3H] ([3H, H] with AD_TRANS_B), b [3H] or [1, 3H] -> [T B, H]. */
ad_status ad__shape_gru_sequence(ad_tape *t, ad_node *n, ad_shape *out)
{
    ad_shape x = n->in[0]->shape, h = n->in[1]->shape, w = n->in[2]->shape, b = n->in[3]->shape;
    char sx[AD__SHAPE_BUF], sh[AD__SHAPE_BUF], sw[AD__SHAPE_BUF], sb[AD__SHAPE_BUF];
    if (n->a.flags & ~AD_TRANS_B)
        return ad_tape_fail(t, AD_ERR_ARG, "gru_sequence: flags %d: only AD_TRANS_B applies", n->a.flags);
    int64_t H = h.rank == 2 ? h.dim[1] : -1, G = 3 * H;
    int tb = (n->a.flags & AD_TRANS_B) != 0;
    int w_ok = w.rank == 2 && w.dim[0] == (tb ? G : H) && w.dim[1] == (tb ? H : G);
    int b_ok = (b.rank == 1 && b.dim[0] == G) || (b.rank == 2 && b.dim[0] == 1 && b.dim[1] == G);
    if (x.rank != 2 || h.rank != 2 || x.dim[1] != G || !w_ok || !b_ok)
        return ad_tape_fail(t, AD_ERR_SHAPE, "gru_sequence: gx %s, h0 %s, w_hh %s, b_hh %s: gx must be [T B, 3H], "
                            "h0 [B, H], w_hh [H, 3H] ([3H, H] with AD_TRANS_B) and b_hh [3H]", ad__shape_str(x, sx),
                            ad__shape_str(h, sh), ad__shape_str(w, sw), ad__shape_str(b, sb));
    if (check_steps(t, n, x, h) != AD_OK) return ad_tape_status(t);
    *out = ad_shape2(x.dim[0], H);
    return AD_OK;
}

ad_status ad__gru_sequence_fwd(ad_tape *t, ad_node *n)
{
    seq s = seq_of(n);
    const ad_tensor *w = n->in[2];
    const void *packed = ad__packed_for(t, w, s.tb, 3 * s.H, s.H, s.B);
    n->saved = ad__saved_array(t, n, 6 * s.T * s.step, s.es);
    if (!n->saved || ad__status(t) != AD_OK) return ad__status(t);
    const void *prev = n->in[1]->data;
    for (size_t k = 0; k < s.T; k++) {
        char *gh = GRU_GH(s, n, k), *y = AT(s, n->out->data, k);
        step_product(&s, 3, s.tb, prev, w->data, packed, n->in[3]->data, gh, 0);
        ad__gru_gates(s.f32, 0, (int64_t)s.B, (int64_t)s.H, (const char *)n->in[0]->data + k * 3 * s.step * s.es, gh,
                      prev, y, GRU_PLANES(s, n, k), NULL, NULL, NULL, NULL);
        prev = y;
    }
    return AD_OK;
}

/*
 * Backward through time as the step-by-step graph (ad_addmm and ad_gru_cell
 * per step) runs it: the gates' backward adds dh_k z_k into dh_{k-1} (which
 * starts as G_{k-1}) and writes dgh_k, then dh_{k-1} += dgh_k op(W)^T; at
 * the end dW from every step's dgh_k at once (db step by step, as the
 * step-by-step graph sums it).
 */
void ad__gru_sequence_bwd(ad_tape *t, ad_node *n)
{
    seq s = seq_of(n);
    ad_tensor *w = n->in[2];
    char *ggx = ad__grad(t, n->in[0]);
    void *gh0 = ad__grad(t, n->in[1]), *gw = ad__grad(t, w), *gb = ad__grad(t, n->in[3]);
    const void *packed = ad__packed_for(t, w, !s.tb, s.H, 3 * s.H, s.B);
    /* dgh_k of every step; two [B, H] state gradients; one step's dgx */
    char *dgh = ad__alloc_array(t, 3 * s.T * s.step, s.es), *dh = ad__alloc_array(t, 5 * s.step, s.es);
    if (ad__status(t) != AD_OK) return;
    char *cur = dh, *next = dh + s.step * s.es, *dgx = dh + 2 * s.step * s.es;
    start_from(&s, cur, AT(s, n->out->grad, s.T - 1));
    for (size_t k = s.T; k-- > 0;) {
        const void *prev = k ? AT(s, n->out->data, k - 1) : n->in[1]->data;
        void *gprev = k ? next : gh0;
        char *dghk = dgh + k * 3 * s.step * s.es;
        memset(dghk, 0, 3 * s.step * s.es); /* here, not all at once: the step's rows stay in cache */
        if (k) start_from(&s, next, AT(s, n->out->grad, k - 1));
        /* The gates add into a zeroed [B, 3H] that stays in cache, then it
         * goes into gx's rows in one pass (a slice's backward in the
         * step-by-step graph: the same bits). Adding into gx's large
         * gradient itself, long since zeroed and evicted, stalls the gates. */
        if (ggx) memset(dgx, 0, 3 * s.step * s.es);
        ad__gru_gates(s.f32, 1, (int64_t)s.B, (int64_t)s.H, (const char *)n->in[0]->data + k * 3 * s.step * s.es,
                      GRU_GH(s, n, k), prev, AT(s, n->out->data, k), GRU_PLANES(s, n, k), cur, ggx ? dgx : NULL,
                      dghk, gprev);
        if (ggx) add_into(&s, 3 * s.step, ggx + k * 3 * s.step * s.es, dgx);
        /* b's gradient step by step, as addmm's: the same sums in the same order */
        if (gb) ad__column_sums(s.f32, s.B, 3 * s.H, dghk, gb);
        if (gprev) {
            ad__product p = {!s.f32, 0, !s.tb, s.B, s.H, 3 * s.H, dghk, w->data, gprev, 1, NULL, packed};
            ad__gemm(&p);
        }
        char *swap = cur;
        cur = next, next = swap;
    }
    if (gw) weight_grad(&s, n, 3, dgh, gw);
}

/* Forward mode: dgh_k = dh_{k-1} op(W) + h_{k-1} op(dW) + db, then the
 * GRU cell's rule with dgx_k, dgh_k and dh_{k-1}. */
ad_status ad__gru_sequence_jvp(ad_tape *t, ad_node *n)
{
    seq s = seq_of(n);
    const ad_tensor *x = n->in[0], *h0 = n->in[1], *w = n->in[2], *b = n->in[3];
    char *dy = ad__tan_new(t, n), *acc = ad__alloc_array(t, 3 * s.step, s.es);
    if (!dy || !acc) return ad_tape_status(t);
    const char *dx = ad__tan(t, x), *dh0 = ad__tan(t, h0), *dw = ad__tan(t, w), *db = ad__tan(t, b);
    size_t G = 3 * s.H;
    for (size_t d = 0; d < (size_t)ad__tan_k(t); d++) {
        char *yd = dy + d * n->out->numel * s.es;
        const char *xd = dx ? dx + d * x->numel * s.es : NULL, *wd = dw ? dw + d * w->numel * s.es : NULL;
        const char *bd = db ? db + d * G * s.es : NULL, *tprev = dh0 ? dh0 + d * h0->numel * s.es : NULL;
        for (size_t k = 0; k < s.T; k++) {
            const void *prev = k ? AT(s, n->out->data, k - 1) : h0->data;
            memset(acc, 0, 3 * s.step * s.es);
            if (tprev) step_product(&s, 3, s.tb, tprev, w->data, NULL, NULL, acc, 1);
            if (wd) step_product(&s, 3, s.tb, prev, wd, NULL, NULL, acc, 1);
            for (size_t r = 0; bd && r < s.B; r++)
                for (size_t j = 0; j < G; j++) {
                    if (s.f32) ((float *)(void *)acc)[r * G + j] += ((const float *)(const void *)bd)[j];
                    else ((double *)(void *)acc)[r * G + j] += ((const double *)(const void *)bd)[j];
                }
            ad__gru_gates_jvp(s.f32, (int64_t)s.B, (int64_t)s.H, GRU_GH(s, n, k), prev, GRU_PLANES(s, n, k),
                              xd ? xd + k * 3 * s.step * s.es : NULL, acc, tprev, AT(s, yd, k));
            tprev = AT(s, yd, k);
        }
    }
    return AD_OK;
}

ad_tensor *ad_gru_sequence(ad_tape *t, ad_tensor *gx, ad_tensor *h0, ad_tensor *w_hh, ad_tensor *b_hh, int flags)
{
    ad__args args = {0};
    args.flags = flags;
    ad_tensor *in[4] = {gx, h0, w_hh, b_hh};
    return ad__record(t, AD_OP_GRU_SEQUENCE, in, 4, &args);
}

ad_tensor *ad_rnn_sequence(ad_tape *t, ad_tensor *gx, ad_tensor *h0, ad_tensor *w_hh, ad_rnn_activation activation,
                           int flags)
{
    ad__args args = {0};
    args.activation = (int)activation;
    args.flags = flags;
    ad_tensor *in[3] = {gx, h0, w_hh};
    return ad__record(t, AD_OP_RNN_SEQUENCE, in, 3, &args);
}
