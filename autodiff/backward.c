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

static ad_status check_root(ad_tape *t, ad_tensor *root, const ad_tensor *upstream)
{
    char b1[AD__SHAPE_BUF], b2[AD__SHAPE_BUF];
    if (ad_tape_status(t) != AD_OK) return ad_tape_status(t);
    if (!root) return ad__fail(t, AD_ERR_NULL, "backward: root is NULL");
    if (root->tape != t) return ad__fail(t, AD_ERR_FOREIGN, "backward: root is not on this tape");
    if (!root->requires_grad)
        return ad__fail(t, AD_ERR_STATE,
                        "backward: root %s does not depend on any parameter or variable "
                        "(or was recorded with gradients disabled)",
                        ad__shape_str(root->shape, b1));
    if (!upstream) {
        if (root->numel != 1)
            return ad__fail(t, AD_ERR_NOT_SCALAR,
                            "backward: root %s is not a scalar; give an upstream gradient",
                            ad__shape_str(root->shape, b1));
        return AD_OK;
    }
    if (!ad_shape_equal(upstream->shape, root->shape))
        return ad__fail(t, AD_ERR_SHAPE, "backward: upstream %s differs from root %s",
                        ad__shape_str(upstream->shape, b1), ad__shape_str(root->shape, b2));
    if (upstream->dtype != root->dtype)
        return ad__fail(t, AD_ERR_DTYPE, "backward: upstream is %s but root is %s",
                        ad_dtype_name(upstream->dtype), ad_dtype_name(root->dtype));
    return AD_OK;
}

ad_status ad_backward(ad_tape *t, ad_tensor *root, const ad_tensor *upstream)
{
    if (!t) return AD_ERR_NULL;
    if (check_root(t, root, upstream) != AD_OK) return ad_tape_status(t);

    ad__tape_next_pass(t);
    if (root->param && ad__tape_lean_copies(t)) { /* the loss is a copy itself: add into p */
        ad_tensor *g = &root->param->grad;
        for (size_t i = 0; i < root->numel; i++) {
            double v = upstream ? ad_tensor_get(upstream, i) : 1.0;
            if (g->dtype == AD_F32) ((float *)g->data)[i] += (float)v;
            else ((double *)g->data)[i] += v;
        }
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
    }
    return AD_OK;
}
