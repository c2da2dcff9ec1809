/*
 * from_pytorch.c - the code of docs/guide.md, "Sequence tensors and dropout,
 * coming from PyTorch": a 2-layer LSTM over one batch-first [B, T, I] tensor
 * with dropout between the layers (torch.nn.LSTM(I, H, num_layers=2,
 * dropout=0.3, batch_first=True)), a linear head and the cross-entropy of
 * every step. It then computes the same loss and gradients with the array
 * form (nn_unroll_layers() over T step inputs, time-major rows and targets,
 * the same rng seed and so the same dropout masks) and exits 1 unless they
 * agree to 1e-12.
 *
 *     ./from_pytorch
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <unroll/nn/nn.h>

enum { B = 3, T = 5, I = 4, H = 6, V = 7, SEED = 2024 };

static int fail_tape(ad_tape *t)
{
    fprintf(stderr, "from_pytorch: %s\n", ad_tape_message(t));
    return 1;
}

/* The tensor form, as the guide shows it; the loss and the gradients out. */
static int tensor_form(nn_cell *cells, nn_linear head, nn_params *ps, const double *xv, const int64_t *targets,
                       double *loss_out, double *grads)
{
    ad_rng rng;
    ad_rng_seed(&rng, SEED, 0);
    ad_tape *t = ad_tape_new(NULL);
    ad_tensor *x = ad_from_f64(t, AD_F64, ad_shape3(B, T, I), xv);
    /* guide-snippet begin from_pytorch */
    nn_unroll_options o = {.batch_first = 1, .dropout = 0.3, .train = 1, .rng = &rng};
    ad_tensor *y;                                 /* x: [B, T, I] -> y: [B, T, H] */
    nn_state lasts[2];                            /* each layer's final (h, c) */
    nn_unroll_layers_seq(t, cells, 2, x, &o, &y, lasts);
    ad_tensor *logits = nn_linear_forward(t, &head, ad_reshape(t, y, ad_shape2(B * T, H)));
    ad_tensor *loss = ad_cross_entropy(t, logits, targets, B * T, -1, AD_REDUCE_MEAN);
    /* guide-snippet end */
    nn_params_zero_grad(ps);
    if (!loss || ad_backward(t, loss, NULL) != AD_OK) return fail_tape(t);
    *loss_out = ad_tensor_item(loss);
    size_t n;
    const double *g = nn_params_grads(ps, &n);
    memcpy(grads, g, n * sizeof *g);
    ad_tape_free(t);
    return 0;
}

/* The array form: T inputs [B, I], the states concatenated step-major, the
 * targets reordered to match. */
static int array_form(nn_cell *cells, nn_linear head, nn_params *ps, const double *xv, const int64_t *targets,
                      double *loss_out, double *grads)
{
    ad_error err;
    ad_rng rng;
    ad_rng_seed(&rng, SEED, 0);
    ad_tape *t = ad_tape_new(NULL);
    ad_tensor *xs[T], *hs[T];
    double step[B * I];
    for (int k = 0; k < T; k++) {
        for (int b = 0; b < B; b++) memcpy(step + b * I, xv + (b * T + k) * I, I * sizeof *step);
        xs[k] = ad_from_f64(t, AD_F64, ad_shape2(B, I), step);
    }
    nn_state outs[T];
    nn_unroll_options o = {.dropout = 0.3, .train = 1, .rng = &rng};
    if (nn_unroll_layers(t, cells, 2, xs, T, &o, outs, NULL) != AD_OK) return fail_tape(t);
    for (int k = 0; k < T; k++) hs[k] = outs[k].h;
    int64_t tm[B * T];
    if (nn_targets_time_major(targets, B, T, tm, &err) != AD_OK)
        return fprintf(stderr, "from_pytorch: %s\n", err.msg), 1;
    ad_tensor *logits = nn_linear_forward(t, &head, ad_concat(t, hs, T, 0));
    ad_tensor *loss = ad_cross_entropy(t, logits, tm, B * T, -1, AD_REDUCE_MEAN);
    nn_params_zero_grad(ps);
    if (!loss || ad_backward(t, loss, NULL) != AD_OK) return fail_tape(t);
    *loss_out = ad_tensor_item(loss);
    size_t n;
    const double *g = nn_params_grads(ps, &n);
    memcpy(grads, g, n * sizeof *g);
    ad_tape_free(t);
    return 0;
}

int main(void)
{
    ad_error err;
    nn_params *ps = nn_params_new(AD_F64, &err);
    nn_cell cells[2];
    nn_linear head;
    if (!ps) return fprintf(stderr, "from_pytorch: %s\n", err.msg), 1;
    for (int l = 0; l < 2; l++)
        if (nn_cell_create(&cells[l], ps, "rnn",
                           &(nn_cell_options){.kind = NN_CELL_LSTM, .layer = l, .input_size = l ? H : I, .hidden_size = H},
                           &err) != AD_OK)
            return fprintf(stderr, "from_pytorch: %s\n", err.msg), 1;
    if (nn_linear_create(&head, ps, "fc", H, V, 1, &err) != AD_OK)
        return fprintf(stderr, "from_pytorch: %s\n", err.msg), 1;
    ad_rng rng;
    ad_rng_seed(&rng, 1, 0);
    for (int l = 0; l < 2; l++) nn_cell_init_pytorch(&cells[l], &rng);
    nn_linear_init_pytorch(&head, &rng);
    double x[B * T * I];
    int64_t targets[B * T]; /* batch-major, as targets.reshape(B * T) */
    for (int i = 0; i < B * T * I; i++) x[i] = 2.0 * ad_rng_uniform(&rng) - 1.0;
    for (int i = 0; i < B * T; i++) targets[i] = (int64_t)(ad_rng_uniform(&rng) * V) % V;

    size_t n;
    nn_params_grads(ps, &n);
    double *g_tensor = malloc(n * sizeof *g_tensor), *g_array = malloc(n * sizeof *g_array);
    double l_tensor = 0, l_array = 0;
    if (!g_tensor || !g_array) return fprintf(stderr, "from_pytorch: out of memory\n"), 1;
    if (tensor_form(cells, head, ps, x, targets, &l_tensor, g_tensor) ||
        array_form(cells, head, ps, x, targets, &l_array, g_array))
        return 1;
    double worst = 0;
    for (size_t i = 0; i < n; i++) worst = fmax(worst, fabs(g_tensor[i] - g_array[i]));
    printf("loss: tensor form %.15f, array form %.15f\n", l_tensor, l_array);
    printf("largest gradient difference over %zu parameters: %.3g\n", n, worst);
    int ok = fabs(l_tensor - l_array) <= 1e-12 && worst <= 1e-12 && isfinite(l_tensor) && l_tensor > 0;
    free(g_tensor);
    free(g_array);
    nn_params_free(ps);
    if (!ok) return fprintf(stderr, "from_pytorch: the tensor and array forms differ\n"), 1;
    printf("the tensor form equals the array form\n");
    return 0;
}
