/*
 * op_leaf.c - tensors with no inputs (constants, variables, temporal copies
 * of parameters) and detach.
 */
#include <string.h>

#include "internal.h"

ad_status ad__shape_leaf(ad_tape *t, ad_node *n, ad_shape *out)
{
    (void)t;
    *out = n->a.shape;
    return AD_OK;
}

ad_status ad__shape_same(ad_tape *t, ad_node *n, ad_shape *out)
{
    (void)t;
    *out = n->in[0]->shape;
    return AD_OK;
}

/* Leaves are filled by their constructors. */
ad_status ad__leaf_fwd(ad_tape *t, ad_node *n)
{
    (void)t;
    (void)n;
    return AD_OK;
}

/* A constant or variable: its gradient is the result, nothing flows further. */
void ad__leaf_bwd(ad_tape *t, ad_node *n)
{
    (void)t;
    (void)n;
}

/* A leaf's tangent is its seed (or zero), set by ad_jvp before the walk;
 * never reached, since a leaf has no inputs. */
ad_status ad__leaf_jvp(ad_tape *t, ad_node *n)
{
    (void)t;
    (void)n;
    return AD_OK;
}

ad_status ad__param_fwd(ad_tape *t, ad_node *n)
{
    (void)t;
    (void)n;
    return AD_OK;
}

/* Temporal copy: dL/dW += dL/dW^(t). The copy's own gradient stays readable
 * (copy_grads = keep) or only its norm (norms: copy_grads.c). */
void ad__param_bwd(ad_tape *t, ad_node *n)
{
    if (ad__tape_lean_copies(t)) {
        ad__copy_add(t, n->out);
        return;
    }
    ad_tensor *copy = n->out;
    ad_param *p = copy->param;
    if (copy->dtype == AD_F32) {
        float *g = p->grad.data;
        const float *gc = copy->grad;
        for (size_t i = 0; i < copy->numel; i++) g[i] += gc[i];
    } else {
        double *g = p->grad.data;
        const double *gc = copy->grad;
        for (size_t i = 0; i < copy->numel; i++) g[i] += gc[i];
    }
}

/* A copy's tangent is its seed, or the parameter's (ad_jvp); never reached. */
ad_status ad__param_jvp(ad_tape *t, ad_node *n) { return ad__leaf_jvp(t, n); }

ad_status ad__detach_fwd(ad_tape *t, ad_node *n)
{
    (void)t;
    memcpy(n->out->data, n->in[0]->data, n->out->numel * ad__dtype_size(n->out->dtype));
    n->out->requires_grad = 0;
    return AD_OK;
}

/* Never reached: a detached tensor does not require gradients. */
void ad__detach_bwd(ad_tape *t, ad_node *n)
{
    (void)t;
    (void)n;
}

/* Detach stops tangents as it stops gradients: its tangent stays zero. */
ad_status ad__detach_jvp(ad_tape *t, ad_node *n)
{
    (void)t;
    (void)n;
    return AD_OK;
}

ad_tensor *ad_detach(ad_tape *t, ad_tensor *x)
{
    return ad__record(t, AD_OP_DETACH, &x, 1, NULL);
}

/* ---- constructors ------------------------------------------------------------------ */

static void fill(ad_tensor *x, double value)
{
    if (x->dtype == AD_F32) {
        float *v = x->data;
        for (size_t i = 0; i < x->numel; i++) v[i] = (float)value;
    } else {
        double *v = x->data;
        for (size_t i = 0; i < x->numel; i++) v[i] = value;
    }
}

ad_tensor *ad_full(ad_tape *t, ad_dtype dtype, ad_shape shape, double value)
{
    ad_tensor *x = ad__leaf(t, AD_OP_CONST, dtype, shape);
    if (x) fill(x, value);
    return x;
}

ad_tensor *ad_zeros(ad_tape *t, ad_dtype dtype, ad_shape shape)
{
    return ad_full(t, dtype, shape, 0.0);
}

ad_tensor *ad_ones(ad_tape *t, ad_dtype dtype, ad_shape shape)
{
    return ad_full(t, dtype, shape, 1.0);
}

static ad_tensor *leaf_copy(ad_tape *t, ad__op op, ad_dtype dtype, ad_shape shape,
                            const void *data, const char *fn)
{
    if (t && ad_tape_status(t) == AD_OK && !data) {
        ad_tape_fail(t, AD_ERR_NULL, "%s: data is NULL", fn);
        return NULL;
    }
    ad_tensor *x = ad__leaf(t, op, dtype, shape);
    if (x && x->numel) memcpy(x->data, data, x->numel * ad__dtype_size(dtype));
    return x;
}

ad_tensor *ad_from_data(ad_tape *t, ad_dtype dtype, ad_shape shape, const void *data)
{
    return leaf_copy(t, AD_OP_CONST, dtype, shape, data, "from_data");
}

ad_tensor *ad_variable(ad_tape *t, ad_dtype dtype, ad_shape shape, const void *data)
{
    return leaf_copy(t, AD_OP_VARIABLE, dtype, shape, data, "variable");
}

ad_tensor *ad_from_f64(ad_tape *t, ad_dtype dtype, ad_shape shape, const double *data)
{
    if (t && ad_tape_status(t) == AD_OK && !data) {
        ad_tape_fail(t, AD_ERR_NULL, "from_f64: data is NULL");
        return NULL;
    }
    ad_tensor *x = ad__leaf(t, AD_OP_CONST, dtype, shape);
    if (!x) return NULL;
    if (dtype == AD_F32) {
        float *v = x->data;
        for (size_t i = 0; i < x->numel; i++) v[i] = (float)data[i];
    } else {
        memcpy(x->data, data, x->numel * sizeof(double));
    }
    return x;
}

ad_tensor *ad_constant(ad_tape *t, const ad_tensor *x)
{
    if (t && ad_tape_status(t) == AD_OK && !x) {
        ad_tape_fail(t, AD_ERR_NULL, "constant: tensor is NULL");
        return NULL;
    }
    if (!x) return NULL;
    return leaf_copy(t, AD_OP_CONST, x->dtype, x->shape, x->data, "constant");
}

static ad_tensor *random_leaf(ad_tape *t, ad_rng *rng, ad_dtype dtype, ad_shape shape,
                              double a, double b, int normal, const char *fn)
{
    if (t && ad_tape_status(t) == AD_OK && !rng) {
        ad_tape_fail(t, AD_ERR_NULL, "%s: rng is NULL", fn);
        return NULL;
    }
    ad_tensor *x = ad__leaf(t, AD_OP_CONST, dtype, shape);
    if (!x) return NULL;
    for (size_t i = 0; i < x->numel; i++) {
        double v = normal ? a + b * ad_rng_normal(rng) : a + (b - a) * ad_rng_uniform(rng);
        if (dtype == AD_F32)
            ((float *)x->data)[i] = (float)v;
        else
            ((double *)x->data)[i] = v;
    }
    return x;
}

ad_tensor *ad_rand_uniform(ad_tape *t, ad_rng *rng, ad_dtype dtype, ad_shape shape, double lo,
                           double hi)
{
    return random_leaf(t, rng, dtype, shape, lo, hi, 0, "rand_uniform");
}

ad_tensor *ad_rand_normal(ad_tape *t, ad_rng *rng, ad_dtype dtype, ad_shape shape, double mean,
                          double std)
{
    return random_leaf(t, rng, dtype, shape, mean, std, 1, "rand_normal");
}

/* ---- temporal copies ----------------------------------------------------------------- */

ad_tensor *ad_use(ad_tape *t, ad_param *p)
{
    if (!t || ad__status(t) != AD_OK) return NULL;
    if (!p) {
        ad_tape_fail(t, AD_ERR_NULL, "use: parameter is NULL");
        return NULL;
    }
    return ad__copy_leaf(t, p);
}

size_t ad__tape_copies_of(const ad_tape *t, const ad_param *p, ad_tensor **out, size_t cap)
{
    size_t count, found = 0;
    ad_node *const *nodes = ad__tape_nodes(t, &count);
    for (size_t i = 0; i < count; i++) {
        ad_node *n = nodes[i];
        if (n->op == AD_OP_PARAM && (!p || n->out->param == p)) {
            if (out && found < cap) out[found] = n->out;
            found++;
        } else if (n->op == AD_OP_CHECKPOINT) {
            size_t m = ad__checkpoint_n_copies(n);
            for (size_t j = 0; j < m; j++) {
                if (p && ad__checkpoint_copy_param(n, j) != p) continue;
                if (out && found < cap) out[found] = ad__checkpoint_copy(t, n, j);
                found++;
            }
        }
    }
    return found;
}

size_t ad_tape_copies(const ad_tape *t, const ad_param *p, ad_tensor **out, size_t cap)
{
    if (!t || !p) return 0;
    return ad__tape_copies_of(t, p, out, cap);
}
