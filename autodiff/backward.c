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

    ad__replay_mark(t); /* where a replay of this tape returns the arena to */
    ad__tape_next_pass(t);
    ad__stack_begin(t);
    if (root->param && ad__tape_lean_copies(t)) { /* the loss is a copy itself: add into p */
        ad_tensor *g = &root->param->grad;
        double sq = 0;
        for (size_t i = 0; i < root->numel; i++) {
            double v = upstream ? ad_tensor_get(upstream, i) : 1.0;
            if (g->dtype == AD_F32) ((float *)g->data)[i] += (float)v;
            else ((double *)g->data)[i] += v;
            sq += v * v;
        }
        if (ad__tape_copy_grads(t) == AD_COPY_GRADS_NORMS) root->grad_sq = sq, root->grad = NULL, root->grad_pass = ad__tape_pass(t);
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

    size_t n_nodes;
    ad_node *const *nodes = ad__tape_nodes(t, &n_nodes);
    unsigned pass = ad__tape_pass(t);
    for (size_t i = root->node->index + 1; i-- > 0;) {
        ad_node *n = nodes[i];
        const ad_tensor *y = n->out;
        if (!y->requires_grad || y->grad_pass != pass || !y->grad) continue;
        ad__ops[n->op].backward(t, n);
        if (ad__status(t) != AD_OK) return ad__status(t);
        if (ad__tape_anomaly(t)) {
            ad__check_backward_anomaly(t, n);
            if (ad__status(t) != AD_OK) return ad__status(t);
        }
        /* every consumer of n's output came later on the tape: its gradient is
         * complete and used. Buffers of a few elements are not worth the lists. */
        if (ad__tape_releases_grads(t) && n->n_in > 0 && y->numel >= AD__RELEASE_MIN) ad__release_grad(t, n->out);
    }
    ad__stack_flush(t);
    return ad__status(t);
}
