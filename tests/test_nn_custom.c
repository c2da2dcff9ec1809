/*
 * test_nn_custom.c - a cell written by the user (the minimal gated unit of
 * docs/guide.md) gets BPTT from the generic unroller with no extra code:
 * its gradients pass an f64 gradient check through a masked, unrolled batch,
 * and the per-step copies sum to the parameter gradients.
 */
#include <criterion/criterion.h>

#include "nn/nn.h"
#include "testsupport.h"

/* u = sigmoid(x Wu + h Uu), h' = u*h + (1-u)*tanh(x Wc + h Uc) */
static ad_status mgu_step(ad_tape *t, const nn_cell *c, ad_tensor *x, const nn_state *prev,
                          nn_state *next)
{
    ad_tensor *u = ad_sigmoid(t, ad_add(t, ad_matmul(t, x, ad_use(t, c->w[0]), 0),
                                        ad_matmul(t, prev->h, ad_use(t, c->w[1]), 0)));
    ad_tensor *cand = ad_tanh(t, ad_add(t, ad_matmul(t, x, ad_use(t, c->w[2]), 0),
                                        ad_matmul(t, prev->h, ad_use(t, c->w[3]), 0)));
    ad_tensor *one_minus_u = ad_add_scalar(t, ad_neg(t, u), 1.0);
    next->h = ad_add(t, ad_mul(t, u, prev->h), ad_mul(t, one_minus_u, cand));
    return ad_tape_status(t);
}

enum { I = 2, H = 3, B = 2, T = 5 };

typedef struct ctx {
    nn_cell cell;
    double x[T * B * I];
} ctx;

static ad_tensor *graph(ad_tape *t, void *vc)
{
    ctx *c = vc;
    ad_tensor *xs[T];
    for (int k = 0; k < T; k++) xs[k] = ad_from_data(t, AD_F64, ad_shape2(B, I), c->x + k * B * I);
    int64_t lengths[B] = {T, 3};
    nn_unroll_options o = {0};
    o.lengths = lengths;
    nn_state outs[T], last;
    if (nn_unroll(t, &c->cell, xs, T, &o, outs, &last) != AD_OK) return NULL;
    return ad_sum(t, ad_mul(t, last.h, last.h), AD_AXIS_ALL, 0);
}

Test(nn_custom, user_cell_gets_bptt)
{
    long before = ts_live_allocs();
    nn_params *ps = nn_params_new(AD_F64, NULL);
    ctx c = {.cell = {.name = "mgu", .input_size = I, .hidden_size = H, .step = mgu_step, .n_w = 4}};
    const char *names[4] = {"mgu.Wu", "mgu.Uu", "mgu.Wc", "mgu.Uc"};
    for (int i = 0; i < 4; i++)
        c.cell.w[i] = nn_params_add(ps, names[i], i % 2 ? ad_shape2(H, H) : ad_shape2(I, H), NULL);
    ad_rng rng;
    ad_rng_seed(&rng, 4, 0);
    nn_params_init_uniform(ps, &rng, -0.8, 0.8);
    ts_fill_uniform(c.x, T * B * I, 5, -1, 1);

    ad_gradcheck_report rep;
    ad_error err;
    ad_status st = ad_gradcheck(graph, &c, c.cell.w, 4, NULL, &rep, &err);
    if (st != AD_OK) ad_gradcheck_print(&rep, stderr);
    cr_assert_eq(st, AD_OK, "%s", err.msg);

    ad_tape *t = ad_tape_new(NULL);
    nn_params_zero_grad(ps);
    cr_assert_eq(ad_backward(t, graph(t, &c), NULL), AD_OK, "%s", ad_tape_message(t));
    for (int i = 0; i < 4; i++) {
        ad_tensor *copies[T];
        cr_assert_eq(ad_tape_copies(t, c.cell.w[i], copies, T), T);
        ad_tensor *g = ad_param_grad(c.cell.w[i]);
        for (size_t e = 0; e < ad_tensor_numel(g); e++) {
            double s = 0;
            for (int k = T - 1; k >= 0; k--) s += ad_tensor_grad_f64(copies[k])[e];
            cr_assert_eq(s, ad_tensor_f64(g)[e]);
        }
    }
    ad_tape_free(t);
    nn_params_free(ps);
    cr_assert_eq(ts_live_allocs(), before);
}
