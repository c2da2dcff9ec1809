/*
 * sentiment.c - the first textbook case: a many-to-one Elman net over one-hot
 * words, trained with plain gradient descent, its gradients checked against
 * the hand derivation (nn/bptt_ref.c, docs/derivations.md section 1).
 *
 *     O_t = tanh(x_t W_i + O_{t-1} W_h),  yhat = sigmoid(O_T W_o),  BCE loss
 *
 * Vocabulary: cat, mat, rat (one-hot rows); hidden size 3. A sentence is
 * "positive" (y = 1) when it ends with "cat". Run: ./build/sentiment
 */
#include <math.h>
#include <stdio.h>

#include <unroll/nn/nn.h>

enum { V = 3, H = 3, N_SENT = 6, MAX_T = 4, STEPS = 300 };

static const char *words[V] = {"cat", "mat", "rat"};

typedef struct sentence {
    int len;
    int w[MAX_T];
    double y;
} sentence;

static const sentence data[N_SENT] = {
    {3, {1, 2, 0}, 1}, {2, {2, 1}, 0}, {4, {0, 1, 2, 0}, 1},
    {3, {0, 2, 1}, 0}, {2, {1, 0}, 1}, {3, {0, 0, 2}, 0},
};

static void one_hot(const sentence *s, double *x)
{
    for (int t = 0; t < s->len; t++)
        for (int v = 0; v < V; v++) x[t * V + v] = s->w[t] == v;
}

static void print_sentence(const sentence *s)
{
    for (int t = 0; t < s->len; t++) printf("%s%s", t ? " " : "", words[s->w[t]]);
}

int main(void)
{
    ad_error err;
    nn_params *ps = nn_params_new(AD_F64, &err);
    ad_param *W_i = nn_params_add(ps, "W_i", ad_shape2(V, H), &err);
    ad_param *W_h = nn_params_add(ps, "W_h", ad_shape2(H, H), &err);
    ad_param *W_o = nn_params_add(ps, "W_o", ad_shape2(H, 1), &err);
    if (!W_o) {
        fprintf(stderr, "sentiment: %s\n", err.msg);
        return 1;
    }
    ad_rng rng;
    ad_rng_seed(&rng, 2026, 0);
    nn_params_init_uniform(ps, &rng, -0.5, 0.5);

    /* 1. Every element of every weight's gradient, engine next to reference, for the first sentence. */
    double max_diff = 0, x[MAX_T * V];
    one_hot(&data[0], x);
    double ref[V * H + H * H + H], ref_loss;
    nn_case1_weights wv = {ad_tensor_f64(ad_param_value(W_i)), ad_tensor_f64(ad_param_value(W_h)),
                           ad_tensor_f64(ad_param_value(W_o))};
    nn_case1_weights gr = {ref, ref + V * H, ref + V * H + H * H};
    ad_tape *t = ad_tape_new(NULL);
    ad_tensor *l0 = nn_case1_loss(t, W_i, W_h, W_o, x, data[0].len, data[0].y, NULL);
    if (nn_ref_case1(V, H, &wv, x, data[0].len, data[0].y, &ref_loss, &gr, &err) != AD_OK || !l0 ||
        ad_backward(t, l0, NULL) != AD_OK) {
        fprintf(stderr, "sentiment: %s%s\n", err.msg, ad_tape_message(t));
        return 1;
    }
    printf("dL/dW for \"");
    print_sentence(&data[0]);
    printf("\": engine | hand-derived reference\n");
    ad_param *ws[3] = {W_i, W_h, W_o};
    const double *refs[3] = {gr.W_i, gr.W_h, gr.W_o};
    for (int k = 0; k < 3; k++) {
        const double *eg = ad_tensor_f64(ad_param_grad(ws[k]));
        for (size_t e = 0; e < ad_tensor_numel(ad_param_grad(ws[k])); e++) {
            printf("  %s[%zu]  %+.15e | %+.15e\n", ad_param_name(ws[k]), e, eg[e], refs[k][e]);
            if (fabs(eg[e] - refs[k][e]) > max_diff) max_diff = fabs(eg[e] - refs[k][e]);
        }
    }

    /* 2. The checker on every sentence: the worst element per weight. */
    printf("gradients, engine vs hand-derived reference (worst element per weight):\n");
    for (int i = 0; i < N_SENT; i++) {
        nn_check_report rep;
        one_hot(&data[i], x);
        if (nn_check_case1(W_i, W_h, W_o, x, data[i].len, data[i].y, &rep, &err) != AD_OK) {
            fprintf(stderr, "sentiment: %s\n", err.msg);
            return 1;
        }
        printf("sentence \"");
        print_sentence(&data[i]);
        printf("\" (y = %g)\n", data[i].y);
        for (size_t k = 0; k < rep.count; k++)
            printf("  %-4s [%zu]  engine %+.12e  reference %+.12e\n", rep.entries[k].name,
                   rep.entries[k].worst_index, rep.entries[k].engine, rep.entries[k].reference);
        if (rep.max_abs_err > max_diff) max_diff = rep.max_abs_err;
    }

    /* 3. Gradient descent on the summed loss. */
    size_t n;
    double *w = nn_params_values(ps, &n), *g = nn_params_grads(ps, &n);
    for (int step = 0; step <= STEPS; step++) {
        nn_params_zero_grad(ps);
        double total = 0;
        for (int i = 0; i < N_SENT; i++) {
            ad_tape_reset(t);
            one_hot(&data[i], x);
            ad_tensor *loss = nn_case1_loss(t, W_i, W_h, W_o, x, data[i].len, data[i].y, NULL);
            if (!loss || ad_backward(t, loss, NULL) != AD_OK) {
                fprintf(stderr, "sentiment: %s\n", ad_tape_message(t));
                return 1;
            }
            total += ad_tensor_item(loss);
        }
        if (step % 50 == 0) printf("step %3d  loss %.6f\n", step, total / N_SENT);
        for (size_t k = 0; k < n; k++) w[k] -= 0.5 * g[k];
    }

    /* 4. Predictions, and the check once more on the trained weights. */
    for (int i = 0; i < N_SENT; i++) {
        nn_check_report rep;
        one_hot(&data[i], x);
        nn_check_case1(W_i, W_h, W_o, x, data[i].len, data[i].y, &rep, &err);
        if (rep.max_abs_err > max_diff) max_diff = rep.max_abs_err;
        printf("\"");
        print_sentence(&data[i]);
        double e = exp(-rep.engine_loss); /* the loss is -log p(label) */
        printf("\": p(positive) = %.3f (label %g)\n", data[i].y == 1 ? e : 1 - e, data[i].y);
    }
    ad_tape_free(t);
    nn_params_free(ps);
    printf("max |engine - reference| = %.3e\n", max_diff);
    return max_diff < 1e-12 ? 0 : 1;
}
