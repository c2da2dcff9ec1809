/*
 * A program that uses unroll the way a user's project does, through the
 * installed headers: a tiny LSTM (I = 3, H = 4, T = 5) in f64, forward,
 * backward and a gradient check of every weight. Prints the version and the
 * loss; exits 0 only when the gradients pass the check. Built by
 * tests/consumer/run.sh through find_package, pkg-config, add_subdirectory
 * and the Debian package.
 */
#include <stdio.h>
#include <string.h>
#include <unroll/autodiff/autodiff.h>
#include <unroll/nn/nn.h>
#include <unroll/version.h>

enum { I = 3, H = 4, T = 5, B = 2 };

typedef struct model {
    nn_params *ps;
    nn_cell lstm;
} model;

static ad_tensor *loss_graph(ad_tape *t, void *ctx)
{
    model *m = ctx;
    ad_tensor *xs[T];
    for (int s = 0; s < T; s++) {
        double x[B * I];
        for (int i = 0; i < B * I; i++) x[i] = 0.1 * (i + 1) - 0.05 * s;
        xs[s] = ad_from_data(t, AD_F64, ad_shape2(B, I), x);
    }
    nn_state outs[T];
    if (nn_unroll(t, &m->lstm, xs, T, NULL, outs, NULL) != AD_OK) return NULL;
    return ad_sum(t, ad_mul(t, outs[T - 1].h, outs[T - 1].h), AD_AXIS_ALL, 0);
}

int main(void)
{
    if (strcmp(ad_version(), UNROLL_VERSION_STRING) != 0) {
        fprintf(stderr, "app: library %s, headers %s\n", ad_version(), UNROLL_VERSION_STRING);
        return 1;
    }
    ad_error err;
    model m;
    m.ps = nn_params_new(AD_F64, &err);
    if (!m.ps || nn_cell_create(&m.lstm, m.ps, "lstm", &(nn_cell_options){.kind = NN_CELL_LSTM, .input_size = I, .hidden_size = H}, &err) != AD_OK) {
        fprintf(stderr, "app: %s\n", err.msg);
        nn_params_free(m.ps);
        return 1;
    }
    ad_rng rng;
    ad_rng_seed(&rng, 7, 0);
    nn_cell_init_pytorch(&m.lstm, &rng);

    ad_tape *t = ad_tape_new(NULL);
    ad_tensor *loss = loss_graph(t, &m);
    ad_status st = loss ? ad_backward(t, loss, NULL) : ad_tape_status(t);
    if (st != AD_OK) {
        fprintf(stderr, "app: %s\n", ad_tape_message(t));
        ad_tape_free(t);
        nn_params_free(m.ps);
        return 1;
    }
    printf("unroll %s: loss %.12f\n", ad_version(), ad_tensor_item(loss));
    ad_tape_free(t);

    ad_param *ws[16];
    size_t n = nn_params_count(m.ps);
    for (size_t i = 0; i < n; i++) ws[i] = nn_params_at(m.ps, i);
    ad_gradcheck_report rep;
    st = ad_gradcheck(loss_graph, &m, ws, n, NULL, &rep, &err);
    ad_gradcheck_print(&rep, stdout);
    nn_params_free(m.ps);
    return st == AD_OK && rep.passed ? 0 : 1;
}
