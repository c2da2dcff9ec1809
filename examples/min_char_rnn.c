/*
 * min_char_rnn.c - the second textbook case as written: a character model in
 * the min-char-rnn form (column vectors, W_xh, W_hh, W_hy, b_h, b_y, softmax
 * cross-entropy summed over the steps), trained with truncated BPTT over
 * segments of k steps and Adagrad, as the original does.
 *
 * On the first segment it prints the engine's gradients next to the
 * hand-derived ones (nn/bptt_ref.c, docs/derivations.md section 2), then
 * trains and samples.
 *
 *     ./build/min_char_rnn [--steps N] [--data PATH]
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <unroll/nn/nn.h>

#ifndef UNROLL_EXAMPLE_DATA
#define UNROLL_EXAMPLE_DATA "examples/data"
#endif

enum { H = 64, K = 25 };

typedef struct run {
    nn_case2_params p;
    nn_params *ps;
    int64_t *ids;
    int V;
    size_t n;
    int64_t segments, max_segments;
    nn_optim *opt;
    double smooth;
} run;

/* Row form of h_t = tanh(W_xh x_t + W_hh h_{t-1} + b_h), the state as a [1, H] row. */
static ad_status step_fn(ad_tape *t, const nn_cell *c, ad_tensor *x, const nn_state *prev, nn_state *next)
{
    ad_tensor *b = ad_reshape(t, ad_use(t, c->w[2]), ad_shape1(H));
    next->h = ad_tanh(t, ad_add(t, ad_add(t, ad_matmul(t, x, ad_use(t, c->w[0]), AD_TRANS_B),
                                          ad_matmul(t, prev->h, ad_use(t, c->w[1]), AD_TRANS_B)), b));
    return ad_tape_status(t);
}

static ad_tensor *input_fn(ad_tape *t, int64_t step, void *vr)
{
    run *r = vr;
    ad_tensor *x = ad_zeros(t, AD_F64, ad_shape2(1, r->V));
    if (x) ad_tensor_f64(x)[r->ids[step]] = 1;
    return x;
}

static ad_tensor *loss_fn(ad_tape *t, const nn_state *h, int64_t step, void *vr)
{
    run *r = vr;
    ad_tensor *y = ad_add(t, ad_matmul(t, h->h, ad_use(t, r->p.W_hy), AD_TRANS_B),
                          ad_reshape(t, ad_use(t, r->p.b_y), ad_shape1(r->V)));
    int64_t tg = r->ids[step + 1];
    return ad_cross_entropy(t, y, &tg, 1, -1, AD_REDUCE_SUM);
}

/* The first segment: engine gradients next to the reference's. */
static double compare_first_segment(run *r)
{
    size_t n;
    const double *eng = nn_params_grads(r->ps, &n);
    double *ref = malloc(n * sizeof *ref), loss, max_diff = 0;
    int64_t H64 = H, V = r->V;
    nn_case2_weights w = {ad_tensor_f64(ad_param_value(r->p.W_xh)), ad_tensor_f64(ad_param_value(r->p.W_hh)),
                          ad_tensor_f64(ad_param_value(r->p.W_hy)), ad_tensor_f64(ad_param_value(r->p.b_h)),
                          ad_tensor_f64(ad_param_value(r->p.b_y))};
    nn_case2_weights g = {ref, ref + H64 * V, ref + H64 * V + H64 * H64, ref + 2 * H64 * V + H64 * H64,
                          ref + 2 * H64 * V + H64 * H64 + H64};
    if (!ref || nn_ref_case2(r->V, H, &w, r->ids, r->ids + 1, K, NULL, &loss, &g, NULL, NULL, NULL) != AD_OK) {
        free(ref);
        return INFINITY;
    }
    const char *names[5] = {"W_xh", "W_hh", "W_hy", "b_h", "b_y"};
    size_t off = 0;
    printf("first segment (%d steps): engine vs hand-derived gradient, first elements\n", K);
    for (int k = 0; k < 5; k++) {
        size_t len = ad_tensor_numel(ad_param_value(nn_params_at(r->ps, (size_t)k)));
        printf("  %-5s", names[k]);
        for (size_t i = 0; i < 3; i++) printf("  %+.12e|%+.12e", eng[off + i], ref[off + i]);
        printf("\n");
        off += len;
    }
    for (size_t i = 0; i < n; i++) max_diff = fmax(max_diff, fabs(eng[i] - ref[i]));
    printf("  max |engine - reference| over all %zu gradient elements = %.3e\n", n, max_diff);
    free(ref);
    return max_diff;
}

static ad_status update_fn(int64_t seg, double loss, void *vr)
{
    run *r = vr;
    (void)seg; /* numbered per pass over the text; r->segments counts them all */
    if (r->segments == 0 && !(compare_first_segment(r) < 1e-10)) return AD_ERR_MISMATCH;
    nn_clip_grad_value(r->ps, 5.0, NULL); /* min-char-rnn clips each element to [-5, 5] */
    if (nn_optim_step(r->opt, NULL) != AD_OK) return AD_ERR_NONFINITE;
    r->smooth = r->segments == 0 ? loss : 0.99 * r->smooth + 0.01 * loss;
    if (r->segments % 1000 == 0) printf("segment %6lld  smooth loss %.3f\n", (long long)r->segments, r->smooth);
    return ++r->segments >= r->max_segments ? AD_ERR_STATE : AD_OK; /* AD_ERR_STATE: done */
}

/* Samples n characters from the model, starting from character `seed`. */
static void sample(run *r, const unsigned char *chars, int seed, int n, ad_rng *rng)
{
    ad_tape *t = ad_tape_new(NULL);
    ad_tape_set_grad_enabled(t, 0);
    double h[H] = {0};
    int id = seed;
    printf("--- sample ---\n");
    for (int i = 0; i < n && t; i++) {
        ad_tape_reset(t);
        nn_state prev = {ad_from_data(t, AD_F64, ad_shape2(1, H), h), NULL}, next;
        nn_cell cell = {.name = "rnn", .input_size = r->V, .hidden_size = H, .step = step_fn, .n_w = 3,
                        .w = {r->p.W_xh, r->p.W_hh, r->p.b_h}};
        r->ids[r->n] = id; /* a scratch slot past the text for input_fn */
        if (nn_cell_step(t, &cell, input_fn(t, (int64_t)r->n, r), &prev, &next) != AD_OK) break;
        ad_tensor *y = ad_add(t, ad_matmul(t, next.h, ad_use(t, r->p.W_hy), AD_TRANS_B),
                              ad_reshape(t, ad_use(t, r->p.b_y), ad_shape1(r->V)));
        ad_tensor *p = ad_softmax(t, y, 1);
        if (!p) break;
        double u = ad_rng_uniform(rng), acc = 0;
        id = r->V - 1;
        for (int v = 0; v < r->V; v++)
            if (u < (acc += ad_tensor_f64(p)[v])) {
                id = v;
                break;
            }
        putchar(chars[id]);
        memcpy(h, ad_tensor_f64(next.h), sizeof h);
    }
    printf("\n--- end of sample ---\n");
    ad_tape_free(t);
}

/* Reads the whole file at `path` into a new malloc'd buffer (free it) of
 * *size bytes. NULL on failure, with errno saying why. Plain stdio: the
 * library's file reader is its own, not part of its API. */
static void *read_file(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0, got;
    unsigned char *buf = malloc(cap);
    while (buf && (got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n < cap) continue;
        unsigned char *bigger = realloc(buf, cap *= 2);
        if (!bigger) free(buf);
        buf = bigger;
    }
    int saved = errno;
    if (buf && ferror(f)) free(buf), buf = NULL;
    fclose(f);
    errno = saved;
    *size = n;
    return buf;
}

int main(int argc, char **argv)
{
    const char *path = UNROLL_EXAMPLE_DATA "/corpus.txt";
    long max_segments = 10000;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--data") && i + 1 < argc) path = argv[++i];
        else if (!strcmp(argv[i], "--steps") && i + 1 < argc) max_segments = atol(argv[++i]);
        else {
            fprintf(stderr, "usage: min_char_rnn [--steps N] [--data PATH]\n");
            return 2;
        }
    }
    size_t size;
    ad_error err;
    if (max_segments < 1) {
        fprintf(stderr, "min_char_rnn: --steps must be >= 1\n");
        return 2;
    }
    void *text = read_file(path, &size);
    if (!text) {
        fprintf(stderr, "min_char_rnn: cannot read '%s': %s\n", path, strerror(errno));
        return 1;
    }
    run r = {.n = size, .max_segments = max_segments};
    unsigned char chars[256];
    int index[256] = {0}, seen[256] = {0};
    for (size_t i = 0; i < size; i++) seen[((unsigned char *)text)[i]] = 1;
    for (int c = 0; c < 256; c++)
        if (seen[c]) index[c] = r.V, chars[r.V++] = (unsigned char)c;
    r.ids = malloc((size + 1) * sizeof *r.ids);
    int status = 1;
    if (!r.ids || size < K + 1) {
        fprintf(stderr, "min_char_rnn: '%s' is too short or memory ran out\n", path);
        goto done;
    }
    for (size_t i = 0; i < size; i++) r.ids[i] = index[((unsigned char *)text)[i]];
    r.ps = nn_params_new(AD_F64, NULL);
    r.p.W_xh = nn_params_add(r.ps, "W_xh", ad_shape2(H, r.V), NULL);
    r.p.W_hh = nn_params_add(r.ps, "W_hh", ad_shape2(H, H), NULL);
    r.p.W_hy = nn_params_add(r.ps, "W_hy", ad_shape2(r.V, H), NULL);
    r.p.b_h = nn_params_add(r.ps, "b_h", ad_shape2(H, 1), NULL);
    r.p.b_y = nn_params_add(r.ps, "b_y", ad_shape2(r.V, 1), NULL);
    ad_rng rng;
    ad_rng_seed(&rng, 1, 0);
    nn_init_normal(r.p.W_xh, &rng, 0.01); /* min-char-rnn: randn * 0.01, zero biases */
    nn_init_normal(r.p.W_hh, &rng, 0.01);
    nn_init_normal(r.p.W_hy, &rng, 0.01);
    nn_optim_config cfg = nn_optim_defaults(NN_OPTIM_ADAGRAD);
    cfg.lr = 0.1;
    cfg.eps = 1e-8;
    r.opt = nn_optim_new(r.ps, &cfg, &err);
    nn_cell cell = {.name = "rnn", .input_size = r.V, .hidden_size = H, .step = step_fn, .n_w = 3,
                    .w = {r.p.W_xh, r.p.W_hh, r.p.b_h}};
    ad_tape *t = ad_tape_new(NULL);
    nn_tbptt_options o = {.k1 = K, .k2 = K, .steps = (int64_t)size - 1, .batch = 1};
    printf("min-char-rnn: %zu characters, vocabulary %d, hidden %d, segments of %d steps\n", size, r.V, H, K);
    ad_status st = r.opt && t ? AD_OK : AD_ERR_NOMEM;
    while (st == AD_OK) /* passes over the text until max_segments updates */
        st = nn_tbptt_run(t, &cell, r.ps, &o, input_fn, loss_fn, update_fn, &r, &err);
    ad_tape_free(t);
    if (st == AD_ERR_MISMATCH) fprintf(stderr, "min_char_rnn: engine and reference disagree\n");
    else if (st != AD_ERR_STATE) fprintf(stderr, "min_char_rnn: %s\n", err.msg);
    else {
        printf("after %lld segments: smooth loss %.3f\n", (long long)r.segments, r.smooth);
        sample(&r, chars, r.ids[0], 200, &rng);
        status = 0;
    }
done:
    nn_optim_free(r.opt);
    nn_params_free(r.ps);
    free(r.ids);
    free(text);
    return status;
}
