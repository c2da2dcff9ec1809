/*
 * op_custom.c - user-defined ops: forward and backward callbacks given at
 * run time, recorded on the tape like any built-in.
 */
#include <string.h>

#include "internal.h"

static const char *custom_name(const ad_node *n)
{
    return ad__op_name(n->op, &n->a);
}

ad_status ad__shape_custom(ad_tape *t, ad_node *n, ad_shape *out)
{
    char msg[200] = "";
    const ad_custom_op *op = n->a.custom;
    ad_status st = op->shape(n->a.custom_ctx, n->in, n->n_in, out, msg, sizeof msg);
    if (st != AD_OK)
        return ad_tape_fail(t, st, "%s: %s", custom_name(n), msg[0] ? msg : ad_status_str(st));
    if (out->rank < 0 || out->rank > AD_MAX_RANK)
        return ad_tape_fail(t, AD_ERR_RANK, "%s: the shape callback returned rank %d",
                        custom_name(n), out->rank);
    return AD_OK;
}

ad_status ad__custom_fwd(ad_tape *t, ad_node *n)
{
    (void)t;
    n->a.custom->forward(n->a.custom_ctx, n->in, n->n_in, n->out);
    return AD_OK;
}

/* A tensor header over a gradient buffer, so the callback sees plain tensors. */
static ad_tensor *grad_view(ad_tape *t, ad_tensor *x, void *grad)
{
    ad_tensor *v = ad__alloc(t, sizeof *v);
    if (!v) return NULL;
    memset(v, 0, sizeof *v);
    v->dtype = x->dtype;
    v->shape = x->shape;
    v->numel = x->numel;
    v->data = grad;
    return v;
}

/* The callback adds dL/din[i] = (dout/din[i])^T gout into gin[i]. */
void ad__custom_bwd(ad_tape *t, ad_node *n)
{
    ad_tensor *gin[AD_CUSTOM_MAX_IN] = {0};
    ad_tensor *gout = grad_view(t, n->out, n->out->grad);
    if (!gout) return;
    for (int i = 0; i < n->n_in; i++) {
        void *g = ad__grad(t, n->in[i]);
        if (ad_tape_status(t) != AD_OK) return;
        if (g && !(gin[i] = grad_view(t, n->in[i], g))) return;
    }
    n->a.custom->backward(n->a.custom_ctx, n->in, n->n_in, n->out, gout, gin);
}

/* Forward mode: the callback's tout = sum_i (dout/din[i]) tin[i], per direction. */
ad_status ad__custom_jvp(ad_tape *t, ad_node *n)
{
    if (!n->a.custom->jvp)
        return ad_tape_fail(t, AD_ERR_STATE, "jvp: custom op %s has no jvp callback; forward mode cannot pass it",
                        custom_name(n));
    char *dy = ad__tan_new(t, n);
    if (!dy) return ad_tape_status(t);
    size_t es = ad__dtype_size(n->out->dtype);
    ad_tensor *tin[AD_CUSTOM_MAX_IN] = {0};
    for (int k = 0; k < ad__tan_k(t); k++) {
        for (int i = 0; i < n->n_in; i++) {
            char *p = ad__tan(t, n->in[i]);
            tin[i] = NULL;
            if (p && !(tin[i] = grad_view(t, n->in[i], p + (size_t)k * n->in[i]->numel * es)))
                return ad_tape_status(t);
        }
        ad_tensor *tout = grad_view(t, n->out, dy + (size_t)k * n->out->numel * es);
        if (!tout) return ad_tape_status(t);
        n->a.custom->jvp(n->a.custom_ctx, n->in, n->n_in, n->out, tin, tout);
    }
    return AD_OK;
}

ad_tensor *ad_custom(ad_tape *t, const ad_custom_op *op, void *ctx, ad_tensor *const *in, int n)
{
    if (!t || ad_tape_status(t) != AD_OK) return NULL;
    if (!op || !op->shape || !op->forward || !op->backward) {
        ad_tape_fail(t, AD_ERR_NULL, "custom: %s", !op ? "op is NULL"
                                              : "the op lacks a shape, forward or backward callback");
        return NULL;
    }
    ad__args args = {0};
    args.custom = op;
    args.custom_ctx = ctx;
    const char *name = ad__op_name(AD_OP_CUSTOM, &args);
    if (op->arity < 1 || op->arity > AD_CUSTOM_MAX_IN || n != op->arity) {
        ad_tape_fail(t, AD_ERR_ARG, "%s: given %d inputs; arity is %d (1..%d allowed)", name, n,
                 op->arity, AD_CUSTOM_MAX_IN);
        return NULL;
    }
    return ad__record(t, AD_OP_CUSTOM, in, n, &args);
}
