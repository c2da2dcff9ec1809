/*
 * gradcheck_three_ways.c - one Elman step checked by finite differences and
 * exactly by forward mode, then the same with a custom op whose backward is
 * off by a relative 1e-7: finite differences pass it, the exact check does not.
 * docs/guide.md, "Three ways to check a gradient", walks through it.
 */
#include <stdio.h>

#include <unroll/autodiff/autodiff.h>

typedef struct model {
    ad_param *wx, *wh;
    const ad_custom_op *scale; /* applied to h W_h, or NULL */
} model;

static ad_status same(void *ctx, ad_tensor *const *in, int n, ad_shape *out, char *msg, size_t m)
{
    (void)ctx, (void)n, (void)msg, (void)m;
    *out = ad_tensor_shape(in[0]);
    return AD_OK;
}
static void twice(void *ctx, ad_tensor *const *in, int n, ad_tensor *out)
{
    (void)ctx, (void)n;
    for (size_t i = 0; i < ad_tensor_numel(out); i++) ad_tensor_f64(out)[i] = 2 * ad_tensor_f64(in[0])[i];
}
static void twice_bwd_off(void *ctx, ad_tensor *const *in, int n, ad_tensor *out, ad_tensor *g, ad_tensor *const *gin)
{
    (void)ctx, (void)in, (void)n, (void)out;
    for (size_t i = 0; gin[0] && i < ad_tensor_numel(g); i++)
        ad_tensor_f64(gin[0])[i] += 2 * (1 + 1e-7) * ad_tensor_f64(g)[i]; /* the bug */
}
static void twice_jvp(void *ctx, ad_tensor *const *in, int n, ad_tensor *out, ad_tensor *const *tin, ad_tensor *tout)
{
    (void)ctx, (void)in, (void)n, (void)out;
    for (size_t i = 0; i < ad_tensor_numel(tout); i++)
        ad_tensor_f64(tout)[i] = tin[0] ? 2 * ad_tensor_f64(tin[0])[i] : 0;
}
static const ad_custom_op twice_op = {"twice", 1, same, twice, twice_bwd_off, twice_jvp};

/* Three steps of h = tanh(x W_x + h W_h), loss sum(h^2). */
static ad_tensor *graph(ad_tape *t, void *vm)
{
    model *m = vm;
    static const double xs[3][2] = {{0.5, -1.0}, {0.25, 0.75}, {-0.5, 0.1}};
    ad_tensor *h = ad_zeros(t, AD_F64, ad_shape2(1, 3));
    for (int k = 0; k < 3; k++) {
        ad_tensor *x = ad_from_data(t, AD_F64, ad_shape2(1, 2), xs[k]);
        ad_tensor *rec = ad_matmul(t, h, ad_use(t, m->wh), 0);
        if (m->scale) rec = ad_custom(t, m->scale, NULL, &rec, 1);
        h = ad_tanh(t, ad_add(t, ad_matmul(t, x, ad_use(t, m->wx), 0), rec));
    }
    return ad_sum(t, ad_mul(t, h, h), AD_AXIS_ALL, 0);
}

static int check(model *m, const char *what)
{
    ad_param *ps[2] = {m->wx, m->wh};
    ad_gradcheck_report fd, ex;
    ad_error err;
    ad_status s1 = ad_gradcheck(graph, m, ps, 2, NULL, &fd, &err);
    ad_status s2 = ad_gradcheck_exact(graph, m, ps, 2, NULL, &ex, &err);
    if ((s1 != AD_OK && s1 != AD_ERR_MISMATCH) || (s2 != AD_OK && s2 != AD_ERR_MISMATCH)) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    printf("%-22s finite differences: %-8s (worst rel %.1e)   exact: %-8s (worst rel %.1e)\n", what,
           s1 == AD_OK ? "pass" : "MISMATCH", fd.entries[1].rel_err, s2 == AD_OK ? "pass" : "MISMATCH",
           ex.entries[1].rel_err);
    return (s1 == AD_OK) + 2 * (s2 == AD_OK);
}

int main(void)
{
    ad_error err;
    model m = {ad_param_new("W_x", AD_F64, ad_shape2(2, 3), &err), ad_param_new("W_h", AD_F64, ad_shape2(3, 3), &err),
               NULL};
    if (!m.wx || !m.wh) return fprintf(stderr, "%s\n", err.msg), 1;
    ad_rng rng;
    ad_rng_seed(&rng, 1, 0);
    for (int i = 0; i < 6; i++) ad_tensor_f64(ad_param_value(m.wx))[i] = ad_rng_uniform(&rng) - 0.5;
    for (int i = 0; i < 9; i++) ad_tensor_f64(ad_param_value(m.wh))[i] = ad_rng_uniform(&rng) - 0.5;
    int right = check(&m, "Elman step:");
    m.scale = &twice_op;
    int buggy = check(&m, "with a 1e-7 bug:");
    ad_param_free(m.wx);
    ad_param_free(m.wh);
    /* Expected: both pass the right model; only the exact check fails the buggy one. */
    return right == 3 && buggy == 1 ? 0 : 1;
}
