/*
 * adding_problem.c - the adding problem (Hochreiter & Schmidhuber): each step
 * reads a value in [0, 1) and a marker; exactly two steps are marked, one in
 * each half of the sequence, and the target at the end is the sum of the two
 * marked values. Predicting the mean sum 1 gives an MSE of about 0.167.
 *
 * An Elman net and an LSTM of the same width are trained side by side; the
 * gradient-flow report then shows how much gradient reaches each step: for
 * the Elman net it vanishes long before the first marked value.
 *
 *     ./build/adding_problem                 # T = 50, about a minute
 *     ./build/adding_problem --T 100 --steps 3000
 *     ./build/adding_problem --png-dir docs/img   # where gradflow_{elman,lstm}.png go
 *
 * It ends by drawing each net's report as gradflow_elman.png and
 * gradflow_lstm.png (in the current directory unless --png-dir is given),
 * skipped with a note when gnuplot is not installed.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <unroll/nn/nn.h>

enum { B = 32, H = 32, I = 2 };

typedef struct net {
    nn_params *ps;
    nn_cell cell;
    nn_linear out;
    nn_optim *opt;
} net;

static int net_init(net *n, nn_cell_kind kind, const char *name, ad_rng *rng)
{
    n->ps = nn_params_new(AD_F32, NULL);
    if (!n->ps || nn_cell_create(&n->cell, n->ps, name, &(nn_cell_options){.kind = kind, .input_size = I, .hidden_size = H}, NULL) != AD_OK ||
        nn_linear_create(&n->out, n->ps, "out", H, 1, 1, NULL) != AD_OK)
        return 0;
    nn_cell_init_pytorch(&n->cell, rng);
    nn_linear_init_pytorch(&n->out, rng);
    nn_optim_config cfg = nn_optim_defaults(NN_OPTIM_ADAM);
    cfg.lr = 0.01;
    n->opt = nn_optim_new(n->ps, &cfg, NULL);
    return n->opt != NULL;
}

/* A batch: x[t][b][0] the value, x[t][b][1] the marker; y[b] the sum. */
static void draw(float *x, float *y, int T, ad_rng *rng)
{
    for (int b = 0; b < B; b++) {
        int m1 = (int)ad_rng_below(rng, (uint32_t)(T / 2)), m2 = T / 2 + (int)ad_rng_below(rng, (uint32_t)(T - T / 2));
        y[b] = 0;
        for (int t = 0; t < T; t++) {
            float v = (float)ad_rng_uniform(rng), mark = t == m1 || t == m2;
            x[((size_t)t * B + b) * I] = v;
            x[((size_t)t * B + b) * I + 1] = mark;
            if (mark) y[b] += v;
        }
    }
}

/* Records the net on t; returns the MSE and fills outs (T states) for the report. */
static ad_tensor *run(ad_tape *t, net *n, const float *x, const float *y, int T, nn_state *outs)
{
    ad_tensor **xs = malloc((size_t)T * sizeof *xs);
    if (!xs) return NULL;
    for (int s = 0; s < T; s++) xs[s] = ad_from_data(t, AD_F32, ad_shape2(B, I), x + (size_t)s * B * I);
    nn_state last;
    ad_status st = nn_unroll(t, &n->cell, xs, T, NULL, outs, &last);
    free(xs);
    if (st != AD_OK) return NULL;
    return ad_mse(t, nn_linear_forward(t, &n->out, last.h), ad_from_data(t, AD_F32, ad_shape2(B, 1), y),
                  AD_REDUCE_MEAN);
}

int main(int argc, char **argv)
{
    int T = 50, steps = 1500;
    const char *png_dir = ".";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--T") && i + 1 < argc) T = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--png-dir") && i + 1 < argc) png_dir = argv[++i];
        else {
            fprintf(stderr, "usage: adding_problem [--T N] [--steps N] [--png-dir DIR]\n");
            return 2;
        }
    }
    if (T < 4 || steps < 1) {
        fprintf(stderr, "adding_problem: needs --T >= 4 and --steps >= 1\n");
        return 2;
    }
    ad_rng rng;
    ad_rng_seed(&rng, 12, 0);
    net nets[2];
    const char *names[2] = {"elman", "lstm"};
    if (!net_init(&nets[0], NN_CELL_RNN_TANH, names[0], &rng) || !net_init(&nets[1], NN_CELL_LSTM, names[1], &rng)) {
        fprintf(stderr, "adding_problem: cannot build the nets\n");
        return 1;
    }
    float *x = malloc((size_t)T * B * I * sizeof *x), y[B];
    nn_state *outs = malloc((size_t)T * sizeof *outs);
    ad_tape *t = ad_tape_new(NULL);
    double avg[2] = {0, 0};
    printf("adding problem, T = %d, batch %d, hidden %d; predicting 1 gives MSE ~0.167\n", T, B, H);
    for (int s = 1; s <= steps && x && outs && t; s++) {
        draw(x, y, T, &rng);
        for (int k = 0; k < 2; k++) {
            ad_tape_reset(t);
            nn_params_zero_grad(nets[k].ps);
            ad_tensor *l = run(t, &nets[k], x, y, T, outs);
            if (!l || ad_backward(t, l, NULL) != AD_OK) {
                fprintf(stderr, "adding_problem: %s\n", ad_tape_message(t));
                return 1;
            }
            nn_clip_grad_norm(nets[k].ps, 1.0, NULL, NULL);
            nn_optim_step(nets[k].opt, NULL);
            avg[k] = s == 1 ? ad_tensor_item(l) : 0.98 * avg[k] + 0.02 * ad_tensor_item(l);
        }
        if (s % (steps / 10 ? steps / 10 : 1) == 0)
            printf("step %5d   MSE elman %.4f   lstm %.4f\n", s, avg[0], avg[1]);
    }
    /* Gradient flow on a fresh batch: ||dL/dh_t|| at every step. */
    draw(x, y, T, &rng);
    printf("\ngradient reaching each step, ||dL/dh_t||:\n%6s %12s %12s\n", "t", "elman", "lstm");
    nn_grad_flow flow[2];
    for (int k = 0; k < 2; k++) {
        ad_tape_reset(t);
        ad_tensor *l = run(t, &nets[k], x, y, T, outs);
        ad_error err;
        if (!l || ad_backward(t, l, NULL) != AD_OK ||
            nn_grad_flow_collect(t, &nets[k].cell, outs, T, NULL, &flow[k], &err) != AD_OK) {
            fprintf(stderr, "adding_problem: gradient flow failed\n");
            return 1;
        }
    }
    for (int s = 0; s < T; s += (T >= 10 ? T / 10 : 1))
        printf("%6d %12.3e %12.3e\n", s, flow[0].rows[s].h_norm, flow[1].rows[s].h_norm);
    printf("%6d %12.3e %12.3e\n", T - 1, flow[0].rows[T - 1].h_norm, flow[1].rows[T - 1].h_norm);
    double ratio[2];
    for (int k = 0; k < 2; k++) ratio[k] = flow[k].rows[0].h_norm / flow[k].rows[T - 1].h_norm;
    printf("first/last step gradient ratio: elman %.2e, lstm %.2e\n", ratio[0], ratio[1]);
    printf("final MSE: elman %.4f, lstm %.4f\n", avg[0], avg[1]);
    for (int k = 0; k < 2; k++) {
        char png[4096], title[128];
        snprintf(png, sizeof png, "%s/gradflow_%s.png", png_dir, names[k]);
        snprintf(title, sizeof title, "adding problem, T = %d: gradient flow in the %s net after %d updates", T,
                 names[k], steps);
        ad_error err;
        if (nn_grad_flow_write_png(&flow[k], png, &(nn_grad_flow_plot_options){.title = title}, &err) == AD_OK)
            printf("gradient-flow picture: %s\n", png);
        else
            printf("gradient-flow picture skipped: %s\n", err.msg);
    }
    for (int k = 0; k < 2; k++) {
        nn_grad_flow_free(&flow[k]);
        nn_optim_free(nets[k].opt);
        nn_params_free(nets[k].ps);
    }
    ad_tape_free(t);
    free(x);
    free(outs);
    return 0;
}
