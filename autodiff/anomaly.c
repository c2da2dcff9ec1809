/*
 * anomaly.c - locating the first NaN/Inf.
 *
 * With anomaly mode on, the gate checks each op's output after forward and
 * backward checks each input gradient after the op's backward. The message
 * names the op, the node index and its label (the nn layer labels nodes with
 * the cell and time step, e.g. "lstm.cell t=17"), which is usually enough to
 * find the culprit without a debugger.
 */
#include <stdio.h>

#include "internal.h"

static void fail_anomaly(ad_tape *t, ad_node *n, const char *pass, const char *what)
{
    ad_tape_fail(t, AD_ERR_NONFINITE, "anomaly: %s (node %zu%s%s%s) produced NaN/Inf in %s %s",
             ad__op_name(n->op, &n->a), n->index, n->label ? ", label '" : "",
             n->label ? n->label : "", n->label ? "'" : "", pass, what);
}

void ad__check_forward_anomaly(ad_tape *t, ad_node *n)
{
    if (!ad__all_finite(n->out->dtype, n->out->data, n->out->numel))
        fail_anomaly(t, n, "forward", "output");
}

void ad__check_backward_anomaly(ad_tape *t, ad_node *n)
{
    for (int i = 0; i < n->n_in; i++) {
        ad_tensor *x = n->in[i];
        if (!ad__has_grad(x) || !x->tape) continue;
        if (!ad__all_finite(x->dtype, x->grad, x->numel)) {
            char what[48];
            snprintf(what, sizeof what, "gradient of input %d", i);
            fail_anomaly(t, n, "backward", what);
            return;
        }
    }
}
