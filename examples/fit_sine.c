/*
 * fit_sine.c - the engine on its own: fit y = sin(x) with a one-hidden-layer
 * net, training with plain gradient descent (the step recorded once and
 * replayed, ad_tape_replay), then check the gradients against finite
 * differences.
 *
 *     ./fit_sine            # prints the loss falling and a gradcheck report
 */
#include <math.h>
#include <stdio.h>

#include <unroll/autodiff/autodiff.h>

enum { N = 32, H = 16 };

typedef struct model {
    ad_param *w1, *b1, *w2, *b2;
    double x[N], y[N];
} model;

/* pred = tanh(x W1 + b1) W2 + b2; loss = mean (pred - y)^2 */
static ad_tensor *loss_graph(ad_tape *t, void *ctx)
{
    model *m = ctx;
    ad_dtype dt = ad_tensor_dtype(ad_param_value(m->w1));
    ad_tensor *x = ad_from_f64(t, dt, ad_shape2(N, 1), m->x);
    ad_tensor *y = ad_from_f64(t, dt, ad_shape2(N, 1), m->y);
    ad_tensor *h = ad_tanh(t, ad_add(t, ad_matmul(t, x, ad_use(t, m->w1), 0), ad_use(t, m->b1)));
    ad_tensor *pred = ad_add(t, ad_matmul(t, h, ad_use(t, m->w2), 0), ad_use(t, m->b2));
    return ad_mse(t, pred, y, AD_REDUCE_MEAN);
}

static int make_model(model *m, ad_rng *rng)
{
    ad_error err;
    m->w1 = ad_param_new("W1", AD_F64, ad_shape2(1, H), &err);
    m->b1 = ad_param_new("b1", AD_F64, ad_shape1(H), &err);
    m->w2 = ad_param_new("W2", AD_F64, ad_shape2(H, 1), &err);
    m->b2 = ad_param_new("b2", AD_F64, ad_shape1(1), &err);
    if (!m->w1 || !m->b1 || !m->w2 || !m->b2) {
        fprintf(stderr, "fit_sine: %s\n", err.msg);
        return 0;
    }
    ad_param *all[4] = {m->w1, m->b1, m->w2, m->b2};
    for (int p = 0; p < 4; p++) {
        ad_tensor *v = ad_param_value(all[p]);
        for (size_t i = 0; i < ad_tensor_numel(v); i++)
            ad_tensor_f64(v)[i] = 0.8 * (2 * ad_rng_uniform(rng) - 1);
    }
    for (int i = 0; i < N; i++) {
        m->x[i] = -3.0 + 6.0 * i / (N - 1);
        m->y[i] = sin(m->x[i]);
    }
    return 1;
}

int main(void)
{
    ad_rng rng;
    ad_rng_seed(&rng, 1, 0);
    model m = {0};
    int ok = make_model(&m, &rng);
    ad_param *all[4] = {m.w1, m.b1, m.w2, m.b2};
    ad_tape *t = ad_tape_new(NULL);
    double lr = 0.1, loss = NAN;
    if (!ok || !t) ok = 0;
    else {
        /* guide-snippet begin replay */
        ad_tensor *l = loss_graph(t, &m); /* recorded once: every step runs the same ops */
        for (int step = 0; step <= 3000; step++) {
            if (step > 0 && ad_tape_replay(t) != AD_OK) break; /* the ops again, on the new values */
            if (ad_backward(t, l, NULL) != AD_OK) break;
            loss = ad_tensor_item(l);
            if (step % 500 == 0) printf("step %4d  loss %.6f\n", step, loss);
            for (int p = 0; p < 4; p++) { /* plain gradient descent, in place */
                double *v = ad_tensor_f64(ad_param_value(all[p]));
                double *g = ad_tensor_f64(ad_param_grad(all[p]));
                for (size_t i = 0; i < ad_tensor_numel(ad_param_value(all[p])); i++) v[i] -= lr * g[i];
                ad_param_zero_grad(all[p]);
            }
        }
        /* guide-snippet end */
        if (ad_tape_status(t) != AD_OK) {
            fprintf(stderr, "fit_sine: %s\n", ad_tape_message(t));
            ok = 0;
        }
    }
    if (ok) {
        ad_gradcheck_report rep;
        ad_error err;
        ad_status st = ad_gradcheck(loss_graph, &m, all, 4, NULL, &rep, &err);
        printf("\ngradient check of the trained model (f64 central differences):\n");
        ad_gradcheck_print(&rep, stdout);
        ok = st == AD_OK && loss < 0.01;
    }
    ad_tape_free(t);
    for (int p = 0; p < 4; p++) ad_param_free(all[p]);
    return ok ? 0 : 1;
}
