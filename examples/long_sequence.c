/*
 * long_sequence.c - one long unroll two ways: store-all and with
 * recomputation (docs/guide.md, "Long sequences"). An LSTM with a linear
 * head reads T = 10,000 steps of four counting streams and predicts each
 * next token; the per-step head and loss run inside the unroller
 * (step_loss), so nothing of size T B V is kept. The run prints the peak
 * memory each way and the largest relative difference of their gradients
 * (float64: equal up to rounding), trains a few steps with recomputation,
 * and prints a summary of the gradient-flow report of the last one.
 *
 * Run: ./build/long_sequence [T]
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>

#include <unroll/nn/nn.h>

enum { V = 12, E = 8, H = 48, B = 4 };

typedef struct model {
    nn_params *ps;
    nn_embedding emb;
    nn_cell lstm;
    nn_linear head;
    const int64_t *text; /* [T + 1][B], time-major token ids */
    int T;
} model;

/* One step's loss: predict the next token of every stream. */
static ad_tensor *step_loss(ad_tape *t, void *ctx, int step, const nn_state *h)
{
    model *m = ctx;
    return ad_cross_entropy(t, nn_linear_forward(t, &m->head, h->h), m->text + (size_t)(step + 1) * B, B, -1,
                            AD_REDUCE_MEAN);
}

/* Peak resident memory of the process so far, in MiB. */
static double peak_mib(void)
{
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return (double)u.ru_maxrss / 1024.0;
}

/* |dL/dh_t| and the recurrent weight's ||dL/dW_hh^(t)|| at a few steps. */
static void print_flow(const nn_grad_flow *f)
{
    printf("gradient flow (|dL/dh_t|, ||dL/d%s^(t)||):\n", f->names[1]);
    for (int k = 0; k < f->steps; k += f->steps / 5 > 0 ? f->steps / 5 : 1)
        printf("  t = %5d  %.3e  %.3e\n", k, f->rows[k].h_norm, f->rows[k].w_norm[1]);
    printf("  t = %5d  %.3e  %.3e\n", f->steps - 1, f->rows[f->steps - 1].h_norm, f->rows[f->steps - 1].w_norm[1]);
}

/* Forward and backward over the whole sequence; the parameters' gradients
 * stay in m->ps, the mean loss per step is returned (NAN on failure). With
 * `flow`, the steps' states are kept and the gradient-flow report of the
 * run is printed (it needs per-copy norms, and one W_ih copy per step: no
 * hoisting). */
static double forward_backward(model *m, nn_recompute_mode mode, int flow)
{
    ad_copy_grads keep = flow ? AD_COPY_GRADS_NORMS : AD_COPY_GRADS_NONE;
    ad_tape *t = ad_tape_new(&(ad_tape_options){.copy_grads = keep, .release_grads = 1});
    nn_state *outs = flow ? malloc((size_t)m->T * sizeof *outs) : NULL;
    ad_tensor **xs = malloc((size_t)m->T * sizeof *xs);
    double mean = NAN;
    if (!t || !xs || (flow && !outs)) goto done;
    nn_params_zero_grad(m->ps);
    for (int s = 0; s < m->T; s++) xs[s] = nn_embedding_forward(t, &m->emb, m->text + (size_t)s * B, B);
    ad_tensor *loss = NULL;
    nn_state last;
    nn_unroll_options o = {.hoist_input = !flow, .recompute = mode, .step_loss = step_loss, .step_loss_ctx = m,
                           .loss = &loss};
    if (nn_unroll(t, &m->lstm, xs, m->T, &o, outs, &last) == AD_OK && ad_backward(t, loss, NULL) == AD_OK)
        mean = ad_tensor_get(loss, 0) / m->T;
    else
        fprintf(stderr, "long_sequence: %s\n", ad_tape_message(t));
    nn_grad_flow f;
    ad_error err;
    if (flow && !isnan(mean)) {
        if (nn_grad_flow_collect(t, &m->lstm, outs, m->T, &o, &f, &err) == AD_OK) print_flow(&f);
        else fprintf(stderr, "long_sequence: %s\n", err.msg), mean = NAN;
        nn_grad_flow_free(&f);
    }
done:
    free(outs);
    free(xs);
    ad_tape_free(t);
    return mean;
}

/* The parameters' gradients, copied out (f64). */
static double *grads_copy(nn_params *ps, size_t *n)
{
    const double *g = nn_params_grads(ps, n);
    double *c = malloc(*n * sizeof *c);
    for (size_t i = 0; c && i < *n; i++) c[i] = g[i];
    return c;
}

int main(int argc, char **argv)
{
    int T = argc > 1 ? atoi(argv[1]) : 10000;
    if (T < 1 || T > 1000000) {
        fprintf(stderr, "long_sequence: T must be in 1..1000000, got '%s'\n", argv[1]);
        return 1;
    }
    model m = {.T = T};
    ad_error err;
    ad_rng rng;
    ad_rng_seed(&rng, 7, 0);
    int64_t *text = malloc((size_t)(T + 1) * B * sizeof *text);
    m.ps = nn_params_new(AD_F64, &err);
    if (!text || !m.ps || nn_embedding_create(&m.emb, m.ps, "emb", V, E, &err) != AD_OK ||
        nn_cell_create(&m.lstm, m.ps, "lstm", &(nn_cell_options){.kind = NN_CELL_LSTM, .input_size = E, .hidden_size = H},
                       &err) != AD_OK ||
        nn_linear_create(&m.head, m.ps, "head", H, V, 1, &err) != AD_OK) {
        fprintf(stderr, "long_sequence: %s\n", text && m.ps ? err.msg : "out of memory");
        nn_params_free(m.ps);
        free(text);
        return 1;
    }
    nn_params_init_uniform(m.ps, &rng, -0.2, 0.2);
    for (int s = 0; s <= T; s++) /* B streams counting up by 1, 2, 3 and 5 */
        for (int b = 0; b < B; b++) text[(size_t)s * B + b] = (s * (b == 3 ? 5 : b + 1)) % V;
    m.text = text;

    /* Recomputation first: the process's peak only grows, so each figure is
     * the growth its run added. */
    double before = peak_mib();
    double l_rc = forward_backward(&m, NN_RECOMPUTE_SEGMENTS, 0);
    double rc_mib = peak_mib() - before;
    size_t n;
    double *g_rc = grads_copy(m.ps, &n);
    before = peak_mib();
    double l_all = forward_backward(&m, NN_RECOMPUTE_OFF, 0);
    double all_mib = peak_mib() - before;
    const double *g_all = nn_params_grads(m.ps, &n);
    double worst = 0, scale = 0;
    for (size_t i = 0; g_rc && i < n; i++) scale = fmax(scale, fabs(g_all[i]));
    for (size_t i = 0; g_rc && i < n; i++) worst = fmax(worst, fabs(g_rc[i] - g_all[i]) / scale);
    int ok = g_rc && !isnan(l_rc) && !isnan(l_all) && worst <= 1e-12;
    printf("T = %d steps, LSTM H = %d, B = %d, float64\n", T, H, B);
    printf("store-all:     loss %.6f  peak +%.1f MiB\n", l_all, all_mib);
    printf("sqrt(T) segs:  loss %.6f  peak +%.1f MiB\n", l_rc, rc_mib);
    printf("max |g_recompute - g_store_all| / max |g| = %.2e %s\n", worst, ok ? "(equal up to rounding)" : "MISMATCH");

    /* A few training steps, each a whole-sequence forward and backward with recomputation. */
    nn_optim_config cfg = nn_optim_defaults(NN_OPTIM_ADAM);
    cfg.lr = 0.01;
    nn_optim *opt = nn_optim_new(m.ps, &cfg, &err);
    for (int it = 0; ok && opt && it < 5; it++) {
        double l = forward_backward(&m, NN_RECOMPUTE_SEGMENTS, it == 4);
        ok = !isnan(l) && nn_optim_step(opt, &err) == AD_OK;
        printf("train step %d  loss %.4f\n", it, l);
    }
    nn_optim_free(opt);
    free(g_rc);
    free(text);
    nn_params_free(m.ps);
    return ok ? 0 : 1;
}
