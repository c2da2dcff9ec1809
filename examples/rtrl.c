/*
 * rtrl.c - an Elman net (H = 16) learning a bit stream online with real-time
 * recurrent learning: at each step it sees a random bit and must output the
 * bit it saw one step before (a delayed copy). Every step updates the
 * weights from that step's gradient alone; no sequence is stored.
 *
 * First it checks RTRL against BPTT on a window of 12 steps (the sum of
 * RTRL's per-step gradients against BPTT's gradient of the summed loss) and
 * prints that difference as its last line: max |rtrl - bptt| = X.
 *
 *     ./build/rtrl [steps]      (default 3000)
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <unroll/nn/nn.h>

enum { H = 16 };

typedef struct task {
    double readout[H]; /* a fixed readout: the prediction is sigmoid(h . readout) */
    double target;
} task;

static ad_tensor *bce_loss(ad_tape *t, const nn_state *s, void *vt)
{
    task *k = vt;
    ad_tensor *r = ad_from_data(t, AD_F64, ad_shape2(H, 1), k->readout);
    ad_tensor *y = ad_from_data(t, AD_F64, ad_shape2(1, 1), &k->target);
    return ad_bce_with_logits(t, ad_matmul(t, s->h, r, 0), y, AD_REDUCE_MEAN);
}

/* max |sum of RTRL's step gradients - BPTT's gradient| over a window. */
static double check_window(nn_cell *cell, nn_params *ps, task *k, ad_rng *rng)
{
    enum { W = 12 };
    double bits[W + 1];
    for (int i = 0; i <= W; i++) bits[i] = (double)ad_rng_below(rng, 2);
    size_t P = 0;
    for (int i = 0; i < cell->n_w; i++) P += ad_tensor_numel(ad_param_grad(cell->w[i]));
    double *bptt = malloc(P * sizeof *bptt);
    if (!bptt) return INFINITY;
    nn_params_zero_grad(ps);
    ad_tape *t = ad_tape_new(NULL);
    nn_state s;
    nn_cell_zero_state(t, cell, 1, &s);
    ad_tensor *total = NULL;
    task kk[W];
    for (int i = 0; i < W; i++) {
        nn_state next = {0};
        nn_cell_step(t, cell, ad_from_data(t, AD_F64, ad_shape2(1, 1), &bits[i + 1]), &s, &next);
        kk[i] = *k;
        kk[i].target = bits[i];
        ad_tensor *l = bce_loss(t, &next, &kk[i]);
        total = total ? ad_add(t, total, l) : l;
        s = next;
    }
    if (ad_backward(t, total, NULL) != AD_OK) fprintf(stderr, "%s\n", ad_tape_message(t));
    ad_tape_free(t);
    size_t at = 0;
    for (int i = 0; i < cell->n_w; i++) {
        ad_tensor *g = ad_param_grad(cell->w[i]);
        memcpy(bptt + at, ad_tensor_f64(g), ad_tensor_numel(g) * sizeof *bptt);
        at += ad_tensor_numel(g);
    }
    nn_params_zero_grad(ps);
    ad_error err;
    nn_rtrl *r = nn_rtrl_new(cell, 1, &err);
    for (int i = 0; r && i < W; i++)
        if (nn_rtrl_step(r, &bits[i + 1], bce_loss, &kk[i], NULL, &err) != AD_OK) break;
    double worst = r ? 0 : INFINITY;
    at = 0;
    for (int i = 0; i < cell->n_w; i++) {
        ad_tensor *g = ad_param_grad(cell->w[i]);
        for (size_t e = 0; e < ad_tensor_numel(g); e++, at++)
            worst = fmax(worst, fabs(ad_tensor_f64(g)[e] - bptt[at]));
    }
    nn_rtrl_free(r);
    free(bptt);
    nn_params_zero_grad(ps);
    return worst;
}

int main(int argc, char **argv)
{
    int steps = argc > 1 ? atoi(argv[1]) : 3000;
    if (steps < 1) return fprintf(stderr, "usage: rtrl [steps >= 1]\n"), 2;
    ad_error err;
    nn_params *ps = nn_params_new(AD_F64, &err);
    nn_cell cell;
    nn_cell_options o = {.kind = NN_CELL_RNN_TANH, .input_size = 1, .hidden_size = H};
    if (!ps || nn_cell_create(&cell, ps, "rnn", &o, &err) != AD_OK) return fprintf(stderr, "%s\n", err.msg), 1;
    ad_rng rng;
    ad_rng_seed(&rng, 2026, 0);
    nn_cell_init_pytorch(&cell, &rng);
    task k;
    for (int i = 0; i < H; i++) k.readout[i] = ad_rng_normal(&rng);
    double diff = check_window(&cell, ps, &k, &rng);

    nn_rtrl *r = nn_rtrl_new(&cell, 1, &err);
    if (!r) return fprintf(stderr, "%s\n", err.msg), 1;
    double prev_bit = 0, avg = log(2.0), lr = 0.05;
    for (int step = 1; step <= steps; step++) {
        double bit = (double)ad_rng_below(&rng, 2), loss;
        k.target = prev_bit; /* output the bit seen one step ago */
        if (nn_rtrl_step(r, &bit, bce_loss, &k, &loss, &err) != AD_OK) return fprintf(stderr, "%s\n", err.msg), 1;
        for (int i = 0; i < cell.n_w; i++) { /* plain SGD, one update per step */
            double *w = ad_tensor_f64(ad_param_value(cell.w[i])), *g = ad_tensor_f64(ad_param_grad(cell.w[i]));
            for (size_t e = 0; e < ad_tensor_numel(ad_param_value(cell.w[i])); e++) w[e] -= lr * g[e], g[e] = 0;
        }
        avg = 0.99 * avg + 0.01 * loss;
        prev_bit = bit;
        if (step % 500 == 0 || step == steps) printf("step %5d  running loss %.4f (chance %.4f)\n", step, avg, log(2.0));
    }
    printf("rtrl memory: %zu bytes (it does not grow with the stream)\n", nn_rtrl_bytes(r));
    nn_rtrl_free(r);
    nn_params_free(ps);
    printf("max |rtrl - bptt| = %.3g\n", diff);
    return diff <= 1e-12 ? 0 : 1;
}
