/*
 * layer_norm_lstm.c - a layer-normalised LSTM (Ba, Kiros and Hinton 2016) as
 * a custom cell: a few engine ops in a step function, and the generic
 * unroller gives it BPTT. Each gate pre-activation is normalised per
 * product, and the cell state before its tanh:
 *
 *     [i f g o] = LN(x W_x) a_x + b_x + LN(h W_h) a_h + b_h
 *     c' = sigmoid(f) c + sigmoid(i) tanh(g)
 *     h' = sigmoid(o) tanh(LN(c') a_c + b_c)
 *
 * The program checks every gradient against central differences (f64, a
 * short masked batch), then trains the cell to output the running mean of
 * its input and prints the loss before and after.
 *
 * Run: ./build/layer_norm_lstm
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unroll/nn/nn.h>

enum { I = 2, H = 8, B = 4, T = 12 };

typedef struct ln_lstm {
    nn_cell cell;
    nn_layer_norm ln_x, ln_h, ln_c; /* the gains a_x, a_h, a_c and the biases b_x, b_h, b_c */
    nn_params *ps;
} ln_lstm;

static ad_status ln_lstm_step(ad_tape *t, const nn_cell *c, ad_tensor *x, const nn_state *prev, nn_state *next)
{
    const ln_lstm *m = c->ctx;
    ad_tensor *gx = nn_layer_norm_forward(t, &m->ln_x, ad_matmul(t, x, ad_use(t, c->w[0]), 0));
    ad_tensor *gh = nn_layer_norm_forward(t, &m->ln_h, ad_matmul(t, prev->h, ad_use(t, c->w[1]), 0));
    ad_tensor *gates = ad_add(t, gx, gh); /* the layer norms' biases are the gates' */
    ad_tensor *q[4]; /* i f g o, PyTorch's order */
    if (ad_split(t, gates, 1, 4, (int64_t[]){H, H, H, H}, q) != AD_OK) return ad_tape_status(t);
    next->c = ad_add(t, ad_mul(t, ad_sigmoid(t, q[1]), prev->c), ad_mul(t, ad_sigmoid(t, q[0]), ad_tanh(t, q[2])));
    next->h = ad_mul(t, ad_sigmoid(t, q[3]), ad_tanh(t, nn_layer_norm_forward(t, &m->ln_c, next->c)));
    return ad_tape_status(t);
}

static ad_status ln_lstm_create(ln_lstm *m, ad_dtype dt, ad_error *err)
{
    memset(m, 0, sizeof *m);
    if (!(m->ps = nn_params_new(dt, err))) return err->code;
    nn_cell *c = &m->cell;
    snprintf(c->name, sizeof c->name, "ln_lstm");
    c->kind = NN_CELL_CUSTOM;
    c->input_size = I, c->hidden_size = H, c->has_c = 1;
    c->step = ln_lstm_step;
    c->ctx = m;
    c->w[0] = nn_params_add(m->ps, "ln_lstm.W_x", ad_shape2(I, 4 * H), err);
    c->w[1] = nn_params_add(m->ps, "ln_lstm.W_h", ad_shape2(H, 4 * H), err);
    c->n_w = 2;
    if (!c->w[1] || nn_layer_norm_create(&m->ln_x, m->ps, "ln_lstm.ln_x", 4 * H, 1e-5, 1, err) != AD_OK ||
        nn_layer_norm_create(&m->ln_h, m->ps, "ln_lstm.ln_h", 4 * H, 1e-5, 1, err) != AD_OK ||
        nn_layer_norm_create(&m->ln_c, m->ps, "ln_lstm.ln_c", H, 1e-5, 1, err) != AD_OK)
        return err->code;
    /* the layer norms' gains and biases are cell parameters too (gradient-flow reports list them) */
    const nn_layer_norm *ln[3] = {&m->ln_x, &m->ln_h, &m->ln_c};
    for (int i = 0; i < 3; i++) c->w[2 + 2 * i] = ln[i]->weight, c->w[3 + 2 * i] = ln[i]->bias;
    c->n_w = 8;
    ad_rng rng;
    ad_rng_seed(&rng, 3, 0);
    double k = 1.0 / sqrt((double)H);
    for (int i = 0; i < 2; i++) nn_init_uniform(c->w[i], &rng, -k, k);
    return AD_OK;
}

/* The task: at every step, the mean of the inputs so far (first feature). */
typedef struct task {
    ln_lstm *m;
    nn_linear head;
    double x[T * B * I], y[T * B];
    int64_t lengths[B];
} task;

static ad_tensor *loss_graph(ad_tape *t, void *ctx)
{
    task *k = ctx;
    ad_dtype dt = nn_params_dtype(k->m->ps);
    ad_tensor *xs[T];
    for (int s = 0; s < T; s++) xs[s] = ad_from_f64(t, dt, ad_shape2(B, I), k->x + s * B * I);
    nn_state outs[T];
    nn_unroll_options o = {.lengths = k->lengths};
    if (nn_unroll(t, &k->m->cell, xs, T, &o, outs, NULL) != AD_OK) return NULL;
    ad_tensor *loss = NULL;
    for (int s = 0; s < T; s++) {
        ad_tensor *l = ad_mse(t, nn_linear_forward(t, &k->head, outs[s].h),
                              ad_from_f64(t, dt, ad_shape2(B, 1), k->y + s * B), AD_REDUCE_MEAN);
        loss = loss ? ad_add(t, loss, l) : l;
    }
    return ad_mul_scalar(t, loss, 1.0 / T);
}

static void make_task(task *k, ad_rng *rng)
{
    for (int b = 0; b < B; b++) {
        double sum = 0;
        for (int s = 0; s < T; s++) {
            double v = 2 * ad_rng_uniform(rng) - 1;
            k->x[(s * B + b) * I] = v;
            k->x[(s * B + b) * I + 1] = 1.0;
            sum += v;
            k->y[s * B + b] = sum / (s + 1);
        }
        k->lengths[b] = T;
    }
}

int main(void)
{
    ad_error err;
    ln_lstm m;
    task k = {.m = &m};
    ad_rng rng;
    ad_rng_seed(&rng, 7, 0);
    if (ln_lstm_create(&m, AD_F64, &err) != AD_OK ||
        nn_linear_create(&k.head, m.ps, "head", H, 1, 1, &err) != AD_OK) {
        fprintf(stderr, "layer_norm_lstm: %s\n", err.msg);
        nn_params_free(m.ps);
        return 1;
    }
    nn_linear_init_pytorch(&k.head, &rng);
    make_task(&k, &rng);

    /* 1. every gradient against central differences, on a masked batch */
    k.lengths[1] = 7, k.lengths[3] = 3;
    ad_param *all[16];
    size_t n = nn_params_count(m.ps);
    for (size_t i = 0; i < n; i++) all[i] = nn_params_at(m.ps, i);
    ad_gradcheck_report rep;
    ad_status st = ad_gradcheck(loss_graph, &k, all, n, NULL, &rep, &err);
    ad_gradcheck_print(&rep, stdout);
    if (st != AD_OK) {
        fprintf(stderr, "layer_norm_lstm: gradcheck: %s\n", err.msg);
        nn_params_free(m.ps);
        return 1;
    }
    for (int b = 0; b < B; b++) k.lengths[b] = T;

    /* 2. training with Adam on fresh batches */
    nn_optim_config cfg = nn_optim_defaults(NN_OPTIM_ADAM);
    cfg.lr = 0.01;
    nn_optim *opt = nn_optim_new(m.ps, &cfg, &err);
    ad_tape *t = ad_tape_new(NULL);
    double first = 0, last = 0;
    for (int step = 0; step < 300 && st == AD_OK; step++) {
        make_task(&k, &rng);
        ad_tape_reset(t);
        nn_params_zero_grad(m.ps);
        ad_tensor *loss = loss_graph(t, &k);
        st = loss ? ad_backward(t, loss, NULL) : ad_tape_status(t);
        if (st == AD_OK) st = nn_optim_step(opt, &err);
        if (st == AD_OK) {
            last = ad_tensor_item(loss);
            if (step == 0) first = last;
            if (step % 100 == 0) printf("step %3d  loss %.5f\n", step, last);
        }
    }
    if (st != AD_OK) fprintf(stderr, "layer_norm_lstm: %s\n", ad_tape_message(t));
    else printf("running mean: loss %.5f at the first step, %.5f after 300\n", first, last);
    ad_tape_free(t);
    nn_optim_free(opt);
    nn_params_free(m.ps);
    return st == AD_OK && last < first ? 0 : 1;
}
