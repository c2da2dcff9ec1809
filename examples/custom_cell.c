/*
 * custom_cell.c - a recurrent cell written in a few lines of engine ops (a
 * minimal gated unit), gradient-checked one temporal copy at a time, then
 * trained with the generic unroller on a small task: read a sequence of
 * numbers and output their mean.
 *
 *     u  = sigmoid(x W_u + h U_u + b_u)        the gate
 *     h' = u * h + (1 - u) * tanh(x W_c + h U_c + b_c)
 *
 * Run: ./build/custom_cell
 */
#include <math.h>
#include <stdio.h>

#include <unroll/nn/nn.h>

enum { I = 1, H = 8, T = 12, B = 32, STEPS = 300 };

/* ---- the cell: this is all a user writes ----------------------------------------------- */

static ad_tensor *affine(ad_tape *t, ad_tensor *x, ad_tensor *h, ad_param *const *w)
{
    return ad_add(t, ad_add(t, ad_matmul(t, x, ad_use(t, w[0]), 0), ad_matmul(t, h, ad_use(t, w[1]), 0)),
                  ad_use(t, w[2]));
}

static ad_status mgu_step(ad_tape *t, const nn_cell *c, ad_tensor *x, const nn_state *prev,
                          nn_state *next)
{
    ad_tensor *u = ad_sigmoid(t, affine(t, x, prev->h, c->w));
    ad_tensor *cand = ad_tanh(t, affine(t, x, prev->h, c->w + 3));
    next->h = ad_add(t, ad_mul(t, u, prev->h), ad_mul(t, ad_add_scalar(t, ad_neg(t, u), 1.0), cand));
    return ad_tape_status(t);
}

static int make_cell(nn_cell *cell, nn_params *ps, ad_rng *rng)
{
    static const char *names[6] = {"mgu.W_u", "mgu.U_u", "mgu.b_u", "mgu.W_c", "mgu.U_c", "mgu.b_c"};
    ad_shape shapes[3] = {ad_shape2(I, H), ad_shape2(H, H), ad_shape1(H)};
    *cell = (nn_cell){.name = "mgu", .input_size = I, .hidden_size = H, .step = mgu_step, .n_w = 6};
    for (int i = 0; i < 6; i++) {
        cell->w[i] = nn_params_add(ps, names[i], shapes[i % 3], NULL);
        if (!cell->w[i]) return 0;
        nn_init_uniform(cell->w[i], rng, -0.5, 0.5);
    }
    return 1;
}

/* ---- the task --------------------------------------------------------------------------- */

typedef struct task {
    nn_cell cell;
    nn_linear out;
    double x[T * B], y[B];
} task;

static void draw(task *k, ad_rng *rng)
{
    for (int b = 0; b < B; b++) {
        double s = 0;
        for (int t = 0; t < T; t++) s += k->x[t * B + b] = 2 * ad_rng_uniform(rng) - 1;
        k->y[b] = s / T;
    }
}

static ad_tensor *loss_of(ad_tape *t, void *vk)
{
    task *k = vk;
    ad_dtype dt = ad_tensor_dtype(ad_param_value(k->cell.w[0]));
    ad_tensor *xs[T];
    for (int s = 0; s < T; s++) xs[s] = ad_from_f64(t, dt, ad_shape2(B, I), k->x + s * B);
    nn_state last;
    if (nn_unroll(t, &k->cell, xs, T, NULL, NULL, &last) != AD_OK) return NULL;
    ad_tensor *pred = nn_linear_forward(t, &k->out, last.h);
    return ad_mse(t, pred, ad_from_f64(t, dt, ad_shape2(B, 1), k->y), AD_REDUCE_MEAN);
}

int main(void)
{
    ad_rng rng;
    ad_rng_seed(&rng, 3, 0);
    nn_params *ps = nn_params_new(AD_F64, NULL);
    task k;
    if (!make_cell(&k.cell, ps, &rng) || nn_linear_create(&k.out, ps, "out", H, 1, 1, NULL) != AD_OK) {
        fprintf(stderr, "custom_cell: cannot build the model\n");
        return 1;
    }
    nn_linear_init_pytorch(&k.out, &rng);
    draw(&k, &rng);

    /* 1. Each temporal copy's gradient against finite differences on that copy alone. */
    printf("per-copy gradient check (f64), worst element per weight and step:\n");
    int failed = 0;
    const size_t steps[2] = {1, T - 1}; /* at t = 0 the state is 0, so U's copy has no gradient */
    for (int w = 0; w < k.cell.n_w; w++)
        for (int j = 0; j < 2; j++) {
            size_t step = steps[j];
            ad_gradcheck_entry e;
            ad_error err;
            ad_status st = ad_gradcheck_copy(loss_of, &k, k.cell.w[w], step, NULL, &e, &err);
            printf("  %-8s t=%-2zu %s  analytic %+.6e numerical %+.6e\n", e.name, step,
                   st == AD_OK ? "ok  " : "FAIL", e.analytic, e.numerical);
            failed |= st != AD_OK;
        }

    /* 2. Training: Adam on fresh batches. */
    nn_optim_config cfg = nn_optim_defaults(NN_OPTIM_ADAM);
    cfg.lr = 0.02;
    nn_optim *opt = nn_optim_new(ps, &cfg, NULL);
    ad_tape *t = ad_tape_new(NULL);
    double first = 0, loss = 0;
    for (int s = 0; s < STEPS; s++) {
        ad_tape_reset(t);
        nn_params_zero_grad(ps);
        draw(&k, &rng);
        ad_tensor *l = loss_of(t, &k);
        if (!l || ad_backward(t, l, NULL) != AD_OK || nn_optim_step(opt, NULL) != AD_OK) {
            fprintf(stderr, "custom_cell: %s\n", ad_tape_message(t));
            return 1;
        }
        loss = ad_tensor_item(l);
        if (s == 0) first = loss;
        if (s % 50 == 0 || s == STEPS - 1) printf("step %3d  mse %.5f\n", s, loss);
    }
    printf("mse %.5f -> %.5f (predicting 0 gives about %.5f)\n", first, loss, 1.0 / (3.0 * T));
    ad_tape_free(t);
    nn_optim_free(opt);
    nn_params_free(ps);
    return failed || !(loss < 0.2 * first) ? 1 : 0;
}
