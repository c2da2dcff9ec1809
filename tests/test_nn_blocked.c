/*
 * test_nn_blocked.c - a long unroll in blocks equals the whole sequence.
 *
 * The W6 driver of bench/unroll_bench.c (forward_backward) hoists the input
 * projection per block of steps, releases each block once its steps have
 * read it, and runs the head and softmax-CE (summed, scaled to the mean) per
 * step, reading each step's state (no concatenation). This replays that pattern with the public API, f64, for an Elman
 * (tanh) and an LSTM layer, and checks that the loss and every parameter's
 * gradient equal the one-block run (the whole sequence at once) within
 * 1e-12 relative, that the blocked tape keeps less, and that nothing leaks.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>

#include <unroll/autodiff/autodiff.h>
#include <unroll/nn/nn.h>
#include "testsupport.h"

enum { NP = 5, B = 4, V = 7 };

/* The state size of run(): small for the equality checks, larger for the memory one. */
static int H = 8;

typedef struct result {
    double loss, *grad[NP];
    size_t numel[NP], bytes;
} result;

/* One forward + backward of T steps in blocks of blk (blk >= T: one block). */
static void run(int lstm, int T, int blk, result *res)
{
    int G = lstm ? 4 * H : H;
    nn_params *ps = nn_params_new(AD_F64, NULL);
    ad_param *p[NP] = {nn_params_add(ps, "W_x", ad_shape2(V, G), NULL), nn_params_add(ps, "W_h", ad_shape2(H, G), NULL),
                       nn_params_add(ps, "b", ad_shape1(G), NULL), nn_params_add(ps, "W_y", ad_shape2(H, V), NULL),
                       nn_params_add(ps, "b_y", ad_shape1(V), NULL)};
    cr_assert_not_null(p[NP - 1]);
    ad_rng rng;
    ad_rng_seed(&rng, 3, 0);
    nn_params_init_uniform(ps, &rng, -0.5, 0.5);
    ad_tape_options to = {0};
    to.release_grads = 1;
    ad_tape *t = ad_tape_new(&to);
    int64_t TB = (int64_t)T * B, *ids = malloc((size_t)(TB + B) * sizeof *ids);
    ad_tensor **all_h = malloc((size_t)T * sizeof *all_h);
    cr_assert(t && ids && all_h);
    for (int64_t i = 0; i < TB + B; i++) ids[i] = (int64_t)ad_rng_below(&rng, V);
    nn_params_zero_grad(ps);
    nn_state s = {ad_zeros(t, AD_F64, ad_shape2(B, H)), lstm ? ad_zeros(t, AD_F64, ad_shape2(B, H)) : NULL};
    ad_tensor *wh = ad_use(t, p[1]), *sum = NULL, *loss;
    for (int k0 = 0; k0 < T; k0 += blk) {
        int nb = T - k0 < blk ? T - k0 : blk;
        ad_tensor *x = ad_zeros(t, AD_F64, ad_shape2((int64_t)nb * B, V));
        cr_assert_not_null(x);
        for (int64_t i = 0; i < (int64_t)nb * B; i++) ad_tensor_f64(x)[i * V + ids[(int64_t)k0 * B + i]] = 1.0;
        ad_tensor *gx = ad_addmm(t, ad_use(t, p[2]), x, ad_use(t, p[0]), 0);
        for (int k = k0; k < k0 + nb; k++) {
            ad_tensor *g1 = ad_slice(t, gx, 0, (int64_t)(k - k0) * B, B), *gh = ad_matmul(t, s.h, wh, 0);
            nn_state n = {NULL, NULL};
            if (lstm) {
                n.c = ad_lstm_cell_state(t, g1, gh, s.c);
                n.h = ad_lstm_cell_output(t, g1, gh, n.c);
            } else {
                n.h = ad_rnn_cell(t, g1, gh, AD_RNN_TANH);
            }
            cr_assert_eq(ad_tape_release(t, gh), AD_OK, "%s", ad_tape_message(t));
            s = n;
            all_h[k] = s.h;
        }
        cr_assert_eq(ad_tape_release(t, gx), AD_OK, "%s", ad_tape_message(t));
        if (blk < T)
            for (int k = k0; k < k0 + nb; k++) { /* the head per step, read from the state */
                ad_tensor *z = ad_addmm(t, ad_use(t, p[4]), all_h[k], ad_use(t, p[3]), 0);
                ad_tensor *l = ad_cross_entropy(t, z, ids + (size_t)(k + 1) * B, B, -1, AD_REDUCE_SUM);
                cr_assert_eq(ad_tape_release(t, z), AD_OK, "%s", ad_tape_message(t));
                sum = sum ? ad_add(t, sum, l) : l;
            }
    }
    if (sum) {
        loss = ad_mul_scalar(t, sum, 1.0 / (double)TB);
    } else {
        ad_tensor *z = ad_addmm(t, ad_use(t, p[4]), ad_concat(t, all_h, T, 0), ad_use(t, p[3]), 0);
        loss = ad_cross_entropy(t, z, ids + B, TB, -1, AD_REDUCE_MEAN);
        cr_assert_eq(ad_tape_release(t, z), AD_OK, "%s", ad_tape_message(t));
    }
    cr_assert_eq(ad_backward(t, loss, NULL), AD_OK, "%s", ad_tape_message(t));
    res->loss = ad_tensor_get(loss, 0);
    res->bytes = ad_tape_bytes_used(t);
    for (int i = 0; i < NP; i++) {
        ad_tensor *g = ad_param_grad(p[i]);
        res->numel[i] = ad_tensor_numel(g);
        res->grad[i] = malloc(res->numel[i] * sizeof(double));
        cr_assert_not_null(res->grad[i]);
        for (size_t j = 0; j < res->numel[i]; j++) res->grad[i][j] = ad_tensor_f64(g)[j];
    }
    free(all_h);
    free(ids);
    ad_tape_free(t);
    nn_params_free(ps);
}

static void free_result(result *r)
{
    for (int i = 0; i < NP; i++) free(r->grad[i]);
}

/* max |a - b| / max |a| over each parameter's gradient, and the loss's relative difference. */
static double worst_diff(const result *a, const result *b)
{
    double worst = fabs(a->loss - b->loss) / fabs(a->loss);
    for (int i = 0; i < NP; i++) {
        double md = 0, mg = 0;
        for (size_t j = 0; j < a->numel[i]; j++) {
            md = fmax(md, fabs(a->grad[i][j] - b->grad[i][j]));
            mg = fmax(mg, fabs(a->grad[i][j]));
        }
        cr_assert_gt(mg, 0.0, "parameter %d has a zero gradient", i);
        worst = fmax(worst, md / mg);
    }
    return worst;
}

static void check_blocks(int lstm)
{
    long live = ts_live_allocs();
    enum { T = 50 };
    result whole;
    run(lstm, T, T, &whole);
    const int blocks[] = {1, 7, 16, 49};
    for (size_t i = 0; i < sizeof blocks / sizeof *blocks; i++) {
        result r;
        run(lstm, T, blocks[i], &r);
        double d = worst_diff(&whole, &r);
        cr_assert_leq(d, 1e-12, "%s, blocks of %d: relative difference %g", lstm ? "lstm" : "rnn", blocks[i], d);
        free_result(&r);
    }
    free_result(&whole);
    cr_assert_eq(ts_live_allocs(), live, "leaked %ld allocations", ts_live_allocs() - live);
}

Test(blocked_unroll, rnn_blocks_equal_whole) { check_blocks(0); }

Test(blocked_unroll, lstm_blocks_equal_whole) { check_blocks(1); }

/* The point of the blocks: the LSTM's [T B, 4H] projection and the states'
 * gradient are one block's, so the tape's arena is smaller. */
Test(blocked_unroll, lstm_blocks_keep_less)
{
    result whole, blocked;
    H = 64;
    run(1, 200, 200, &whole);
    run(1, 200, 16, &blocked);
    cr_assert_lt(blocked.bytes, whole.bytes * 9 / 10, "blocked %zu bytes, whole %zu", blocked.bytes, whole.bytes);
    free_result(&whole);
    free_result(&blocked);
}

/* Blocks of one step's tokens, as a per-step output head: T addmm of 32 rows
 * with a [64, 65] weight, whose weight gradients a lean tape stacks. When the
 * stack filled up inside one addmm's backward it was computed and (with
 * release_grads) gave that addmm's output gradient back before the bias's
 * column sums read it (a NULL read). The gradients must equal a plain tape's. */
static void per_step_head(int lean, double *gw, double *gb, size_t nw, size_t nb)
{
    enum { T = 200, R = 32, K = 64, C = 65 };
    nn_params *ps = nn_params_new(AD_F64, NULL);
    ad_param *w = nn_params_add(ps, "W_y", ad_shape2(K, C), NULL), *b = nn_params_add(ps, "b_y", ad_shape1(C), NULL);
    cr_assert(w && b);
    ad_rng rng;
    ad_rng_seed(&rng, 5, 0);
    nn_params_init_uniform(ps, &rng, -0.3, 0.3);
    ad_tape_options to = {0};
    to.copy_grads = lean ? AD_COPY_GRADS_NORMS : AD_COPY_GRADS_KEEP, to.release_grads = lean;
    ad_tape *t = ad_tape_new(&to);
    int64_t ids[R];
    double *x = malloc((size_t)R * K * sizeof *x);
    cr_assert(t && x);
    nn_params_zero_grad(ps);
    ad_tensor *loss = NULL;
    for (int k = 0; k < T; k++) {
        for (size_t i = 0; i < (size_t)R * K; i++) x[i] = ad_rng_uniform(&rng) - 0.5;
        for (int r = 0; r < R; r++) ids[r] = (int64_t)ad_rng_below(&rng, C);
        ad_tensor *z = ad_addmm(t, ad_use(t, b), ad_from_f64(t, AD_F64, ad_shape2(R, K), x), ad_use(t, w), 0);
        ad_tensor *l = ad_cross_entropy(t, z, ids, R, -1, AD_REDUCE_SUM);
        loss = loss ? ad_add(t, loss, l) : l;
    }
    cr_assert_eq(ad_backward(t, loss, NULL), AD_OK, "%s", ad_tape_message(t));
    for (size_t i = 0; i < nw; i++) gw[i] = ad_tensor_f64(ad_param_grad(w))[i];
    for (size_t i = 0; i < nb; i++) gb[i] = ad_tensor_f64(ad_param_grad(b))[i];
    free(x);
    ad_tape_free(t);
    nn_params_free(ps);
}

Test(blocked_unroll, per_step_head_on_lean_tape)
{
    enum { NW = 64 * 65, NB = 65 };
    static double w0[NW], b0[NB], w1[NW], b1[NB];
    long live = ts_live_allocs();
    per_step_head(0, w0, b0, NW, NB);
    per_step_head(1, w1, b1, NW, NB);
    double dw = 0, mw = 0, db = 0, mb = 0;
    for (size_t i = 0; i < NW; i++) dw = fmax(dw, fabs(w0[i] - w1[i])), mw = fmax(mw, fabs(w0[i]));
    for (size_t i = 0; i < NB; i++) db = fmax(db, fabs(b0[i] - b1[i])), mb = fmax(mb, fabs(b0[i]));
    cr_assert_gt(mw, 0.0);
    cr_assert_gt(mb, 0.0);
    cr_assert_leq(dw / mw, 1e-12, "weight gradient differs by %g", dw / mw);
    cr_assert_leq(db / mb, 1e-12, "bias gradient differs by %g", db / mb);
    cr_assert_eq(ts_live_allocs(), live, "leaked %ld allocations", ts_live_allocs() - live);
}
