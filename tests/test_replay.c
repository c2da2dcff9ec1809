/*
 * test_replay.c - ad_tape_replay: a training loop that records its step once
 * and replays it gives, to the bit, the losses and parameters of the loop
 * that records every step (an Elman net on each copy_grads / release_grads
 * mode, a graph of ops that save data, view, list many inputs or are
 * released, a custom op, an LSTM unrolled by nn_unroll); new leaf data is
 * read; the memory stays constant; gradients of the old pass are stale; a
 * gradient check passes through a graph that replays; bad uses are refused.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include <unroll/nn/nn.h>

#include "testsupport.h"

enum { STEPS = 6 };

/* A net whose step is recorded by `build`, trained by SGD. */
typedef struct net {
    nn_params *ps;
    ad_dtype dt;
    ad_rng rng;      /* dropout's */
    double x[256];   /* a variable's data, changed between steps by `feed` */
    ad_tensor *xv;   /* that variable, on the tape */
    nn_cell cell;    /* the LSTM of build_lstm */
} net;

typedef ad_tensor *(*build_fn)(ad_tape *t, net *n);

/* Writes the step's input into the variable in place (replay) or keeps it for
 * the next recording. */
static void feed(net *n, int step, int replaying)
{
    for (int i = 0; i < 256; i++) n->x[i] = sin(0.37 * (i + 1) * (step + 1));
    if (!replaying || !n->xv) return;
    size_t numel = ad_tensor_numel(n->xv);
    for (size_t i = 0; i < numel; i++) {
        if (n->dt == AD_F32) ad_tensor_f32(n->xv)[i] = (float)n->x[i];
        else ad_tensor_f64(n->xv)[i] = n->x[i];
    }
}

/* STEPS steps of SGD; each step's loss in losses[]. replay: record the first
 * step, replay the others. */
static void train(net *n, build_fn build, const ad_tape_options *to, int replay, double *losses)
{
    ad_tape *t = ad_tape_new(to);
    cr_assert_not_null(t);
    nn_optim_config cfg = nn_optim_defaults(NN_OPTIM_SGD);
    cfg.lr = 0.05;
    nn_optim *opt = nn_optim_new(n->ps, &cfg, NULL);
    cr_assert_not_null(opt);
    ad_tensor *loss = NULL;
    for (int s = 0; s < STEPS; s++) {
        nn_params_zero_grad(n->ps);
        feed(n, s, replay && s > 0);
        if (replay && s > 0) {
            cr_assert_eq(ad_tape_replay(t), AD_OK, "step %d: %s", s, ad_tape_message(t));
        } else {
            ad_tape_reset(t);
            loss = build(t, n);
            cr_assert_not_null(loss, "%s", ad_tape_message(t));
        }
        losses[s] = ad_tensor_get(loss, 0);
        cr_assert_eq(ad_backward(t, loss, NULL), AD_OK, "step %d: %s", s, ad_tape_message(t));
        cr_assert_eq(nn_optim_step(opt, NULL), AD_OK);
    }
    nn_optim_free(opt);
    ad_tape_free(t);
}

static void net_init(net *n, ad_dtype dt)
{
    memset(n, 0, sizeof *n);
    n->dt = dt;
    n->ps = nn_params_new(dt, NULL);
    cr_assert_not_null(n->ps);
    ad_rng_seed(&n->rng, 11, 3);
}

static void net_fill(net *n)
{
    ad_rng r;
    ad_rng_seed(&r, 5, 0);
    nn_params_init_uniform(n->ps, &r, -0.7, 0.7);
}

/* Trains two identical nets, recording every step and replaying, and asserts
 * equal losses and parameters, to the bit. */
static void expect_replay_equal(void (*make)(net *n, ad_dtype dt), build_fn build, ad_dtype dt,
                                const ad_tape_options *to, const char *what)
{
    net a, b;
    make(&a, dt);
    make(&b, dt);
    double la[STEPS], lb[STEPS];
    train(&a, build, to, 0, la);
    train(&b, build, to, 1, lb);
    for (int s = 0; s < STEPS; s++)
        cr_assert(la[s] == lb[s], "%s: step %d: loss %.17g recorded, %.17g replayed", what, s, la[s], lb[s]);
    cr_assert(la[0] != la[STEPS - 1], "%s: the training changed nothing", what);
    size_t na, nb;
    const void *va = nn_params_values(a.ps, &na), *vb = nn_params_values(b.ps, &nb);
    cr_assert_eq(na, nb);
    cr_assert(memcmp(va, vb, na * ad_dtype_size(dt)) == 0, "%s: the parameters differ", what);
    nn_params_free(a.ps);
    nn_params_free(b.ps);
}

/* ---- W1's net: an Elman sequence node, a head, BCE ------------------------------------ */

static void make_elman(net *n, ad_dtype dt)
{
    net_init(n, dt);
    nn_params_add(n->ps, "wx", ad_shape2(3, 4), NULL);
    nn_params_add(n->ps, "b", ad_shape1(4), NULL);
    nn_params_add(n->ps, "wh", ad_shape2(4, 4), NULL);
    nn_params_add(n->ps, "wy", ad_shape2(4, 1), NULL);
    nn_params_add(n->ps, "by", ad_shape1(1), NULL);
    net_fill(n);
}

static ad_tensor *build_elman(ad_tape *t, net *n)
{
    static const double onehot[9] = {1, 0, 0, 0, 1, 0, 0, 0, 1}, targets[3] = {1, 0, 1};
    nn_params *ps = n->ps;
    ad_tensor *x = ad_from_f64(t, n->dt, ad_shape2(3, 3), onehot);
    ad_tensor *gx = ad_addmm(t, ad_use(t, nn_params_get(ps, "b")), x, ad_use(t, nn_params_get(ps, "wx")), 0);
    ad_tensor *h = ad_rnn_sequence(t, gx, ad_zeros(t, n->dt, ad_shape2(1, 4)), ad_use(t, nn_params_get(ps, "wh")),
                                   AD_RNN_TANH, 0);
    ad_tensor *z = ad_addmm(t, ad_use(t, nn_params_get(ps, "by")), h, ad_use(t, nn_params_get(ps, "wy")), 0);
    return ad_bce_with_logits(t, z, ad_from_f64(t, n->dt, ad_shape2(3, 1), targets), AD_REDUCE_SUM);
}

Test(replay, equals_recording_every_step_on_every_tape_mode)
{
    static const struct {
        ad_copy_grads copy;
        int release;
    } modes[] = {{AD_COPY_GRADS_KEEP, 0}, {AD_COPY_GRADS_KEEP, 1}, {AD_COPY_GRADS_NORMS, 0},
                 {AD_COPY_GRADS_NORMS, 1}, {AD_COPY_GRADS_NONE, 0}, {AD_COPY_GRADS_NONE, 1}};
    long before = ts_live_allocs();
    for (int d = 0; d < 2; d++)
        for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
            ad_tape_options to = {.copy_grads = modes[i].copy, .release_grads = modes[i].release};
            char what[64];
            snprintf(what, sizeof what, "%s, %s, release %d", d ? "f64" : "f32", ad_copy_grads_name(modes[i].copy),
                     modes[i].release);
            expect_replay_equal(make_elman, build_elman, d ? AD_F64 : AD_F32, &to, what);
        }
    cr_assert_eq(ts_live_allocs(), before);
}

/* ---- a net whose weights the kernel packs once per pass ---------------------------------- */

enum { WT = 4, WB = 8, WI = 5, WH = 16, WV = 3 };

static void make_wide(net *n, ad_dtype dt)
{
    net_init(n, dt);
    nn_params_add(n->ps, "wx", ad_shape2(WI, WH), NULL);
    nn_params_add(n->ps, "wh", ad_shape2(WH, WH), NULL);
    nn_params_add(n->ps, "wy", ad_shape2(WH, WV), NULL);
    net_fill(n);
}

static ad_tensor *build_wide(ad_tape *t, net *n)
{
    int64_t targets[WT * WB];
    for (int i = 0; i < WT * WB; i++) targets[i] = (i * 7) % WV;
    nn_params *ps = n->ps;
    n->xv = ad_from_f64(t, n->dt, ad_shape2(WT * WB, WI), n->x); /* rewritten by feed */
    ad_tensor *gx = ad_matmul(t, n->xv, ad_use(t, nn_params_get(ps, "wx")), 0);
    ad_tensor *h = ad_rnn_sequence(t, gx, ad_zeros(t, n->dt, ad_shape2(WB, WH)), ad_use(t, nn_params_get(ps, "wh")),
                                   AD_RNN_TANH, 0);
    ad_tensor *z = ad_matmul(t, h, ad_use(t, nn_params_get(ps, "wy")), 0);
    return ad_cross_entropy(t, z, targets, WT * WB, -1, AD_REDUCE_MEAN);
}

Test(replay, equals_recording_with_weights_packed_anew_each_pass)
{
    long before = ts_live_allocs();
    ad_tape_options norms = {.copy_grads = AD_COPY_GRADS_NORMS, .release_grads = 1}, none = {.copy_grads = AD_COPY_GRADS_NONE};
    expect_replay_equal(make_wide, build_wide, AD_F32, &norms, "wide f32, norms + release");
    expect_replay_equal(make_wide, build_wide, AD_F64, &none, "wide f64, none");
    cr_assert_eq(ts_live_allocs(), before);
}

/* ---- ops that save data, view, list many inputs or are released ------------------------- */

static void make_mixed(net *n, ad_dtype dt)
{
    net_init(n, dt);
    nn_params_add(n->ps, "w1", ad_shape2(5, 8), NULL);
    nn_params_add(n->ps, "b1", ad_shape1(8), NULL);
    nn_params_add(n->ps, "w2", ad_shape2(8, 9), NULL);
    nn_params_add(n->ps, "whh", ad_shape2(3, 9), NULL);
    nn_params_add(n->ps, "bhh", ad_shape1(9), NULL);
    nn_params_add(n->ps, "wy", ad_shape2(3, 4), NULL);
    nn_params_add(n->ps, "by", ad_shape1(4), NULL);
    net_fill(n);
}

/* x [6,5] (a constant) -> addmm -> layer norm -> dropout -> four column
 * slices concatenated back -> x W2, halved (the product released) -> a GRU
 * sequence of T=3, B=2, H=3 -> head -> cross-entropy. */
static ad_tensor *build_mixed(ad_tape *t, net *n)
{
    static const int64_t targets[6] = {0, 3, 1, 2, 3, 0};
    nn_params *ps = n->ps;
    ad_dtype dt = n->dt;
    ad_tensor *x = n->xv = ad_from_f64(t, dt, ad_shape2(6, 5), n->x); /* a constant, rewritten by feed */
    ad_tensor *h = ad_addmm(t, ad_use(t, nn_params_get(ps, "b1")), x, ad_use(t, nn_params_get(ps, "w1")), 0);
    ad_tensor *d = ad_dropout(t, ad_layer_norm(t, h, 1e-5), 0.25, 0, &n->rng); /* evaluation: identity */
    ad_tensor *parts[4];
    for (int i = 0; i < 4; i++) parts[i] = ad_slice(t, d, 1, 2 * i, 2);
    ad_tensor *cat = ad_concat(t, parts, 4, 1);
    ad_tensor *gx = ad_matmul(t, cat, ad_use(t, nn_params_get(ps, "w2")), 0);
    ad_tensor *half = ad_mul_scalar(t, gx, 0.5);
    if (ad_tape_status(t) == AD_OK) cr_assert_eq(ad_tape_release(t, gx), AD_OK, "%s", ad_tape_message(t));
    ad_tensor *s = ad_gru_sequence(t, half, ad_zeros(t, dt, ad_shape2(2, 3)), ad_use(t, nn_params_get(ps, "whh")),
                                   ad_use(t, nn_params_get(ps, "bhh")), 0);
    ad_tensor *z = ad_addmm(t, ad_use(t, nn_params_get(ps, "by")), s, ad_use(t, nn_params_get(ps, "wy")), 0);
    return ad_cross_entropy(t, z, targets, 6, -1, AD_REDUCE_MEAN);
}

Test(replay, equals_recording_with_saved_data_views_released_and_new_inputs)
{
    long before = ts_live_allocs();
    ad_tape_options keep = {0}, lean = {.copy_grads = AD_COPY_GRADS_NORMS, .release_grads = 1};
    expect_replay_equal(make_mixed, build_mixed, AD_F64, &keep, "mixed f64, keep");
    expect_replay_equal(make_mixed, build_mixed, AD_F64, &lean, "mixed f64, norms + release");
    expect_replay_equal(make_mixed, build_mixed, AD_F32, &lean, "mixed f32, norms + release");
    cr_assert_eq(ts_live_allocs(), before);
}

/* ---- a user's op ---------------------------------------------------------------------- */

/* y = c x^2, c from the op's context: a custom op's forward runs again on replay. */
static ad_status square_shape(void *ctx, ad_tensor *const *in, int n, ad_shape *out, char *msg, size_t size)
{
    (void)ctx, (void)n, (void)msg, (void)size;
    *out = ad_tensor_shape(in[0]);
    return AD_OK;
}

static void set_element(ad_tensor *x, size_t i, double v)
{
    if (ad_tensor_dtype(x) == AD_F32) ad_tensor_f32(x)[i] = (float)v;
    else ad_tensor_f64(x)[i] = v;
}

static void square_forward(void *ctx, ad_tensor *const *in, int n, ad_tensor *out)
{
    (void)n;
    double c = *(const double *)ctx;
    for (size_t i = 0; i < ad_tensor_numel(out); i++) {
        double v = ad_tensor_get(in[0], i);
        set_element(out, i, c * v * v);
    }
}

static void square_backward(void *ctx, ad_tensor *const *in, int n, ad_tensor *out, ad_tensor *gout,
                            ad_tensor *const *gin)
{
    (void)n, (void)out;
    double c = *(const double *)ctx;
    if (!gin[0]) return;
    for (size_t i = 0; i < ad_tensor_numel(gout); i++)
        set_element(gin[0], i, ad_tensor_get(gin[0], i) + 2 * c * ad_tensor_get(in[0], i) * ad_tensor_get(gout, i));
}

static const ad_custom_op square_op = {"scaled_square", 1, square_shape, square_forward, square_backward, NULL};
static double square_scale = 0.75;

static void make_custom(net *n, ad_dtype dt)
{
    net_init(n, dt);
    nn_params_add(n->ps, "w", ad_shape2(4, 3), NULL);
    net_fill(n);
}

/* mean(c (x W)^2 * x W), x [5,4] a constant rewritten by feed. */
static ad_tensor *build_custom(ad_tape *t, net *n)
{
    ad_tensor *x = n->xv = ad_from_f64(t, n->dt, ad_shape2(5, 4), n->x);
    ad_tensor *v = ad_matmul(t, x, ad_use(t, nn_params_get(n->ps, "w")), 0);
    ad_tensor *sq = ad_custom(t, &square_op, &square_scale, &v, 1);
    return ad_mean(t, ad_mul(t, sq, v), AD_AXIS_ALL, 0);
}

Test(replay, equals_recording_through_a_custom_op)
{
    long before = ts_live_allocs();
    ad_tape_options lean = {.copy_grads = AD_COPY_GRADS_NORMS, .release_grads = 1};
    expect_replay_equal(make_custom, build_custom, AD_F64, &(ad_tape_options){0}, "custom f64, keep");
    expect_replay_equal(make_custom, build_custom, AD_F32, &lean, "custom f32, norms + release");
    cr_assert_eq(ts_live_allocs(), before);
}

/* ---- an LSTM through nn_unroll ----------------------------------------------------------- */

static void make_lstm(net *n, ad_dtype dt)
{
    net_init(n, dt);
    nn_cell_options co = {.kind = NN_CELL_LSTM, .input_size = 2, .hidden_size = 3};
    cr_assert_eq(nn_cell_create(&n->cell, n->ps, "lstm", &co, NULL), AD_OK);
    net_fill(n);
}

static ad_tensor *build_lstm(ad_tape *t, net *n)
{
    ad_tensor *xs[4];
    n->xv = ad_variable(t, AD_F64, ad_shape2(4 * 2, 2), n->x); /* one block, sliced per step */
    for (int s = 0; s < 4; s++) xs[s] = ad_slice(t, n->xv, 0, 2 * s, 2);
    nn_unroll_options o = {.hoist_input = 1};
    nn_state outs[4];
    if (nn_unroll(t, &n->cell, xs, 4, &o, outs, NULL) != AD_OK) return NULL;
    ad_tensor *loss = NULL;
    for (int s = 0; s < 4; s++) {
        ad_tensor *l = ad_sum(t, ad_tanh(t, outs[s].h), AD_AXIS_ALL, 0);
        loss = loss ? ad_add(t, loss, l) : l;
    }
    return loss;
}

Test(replay, equals_recording_an_nn_unroll_of_an_lstm)
{
    long before = ts_live_allocs();
    ad_tape_options keep = {0}, lean = {.copy_grads = AD_COPY_GRADS_NORMS, .release_grads = 1};
    expect_replay_equal(make_lstm, build_lstm, AD_F64, &keep, "lstm, keep");
    expect_replay_equal(make_lstm, build_lstm, AD_F64, &lean, "lstm, norms + release");
    cr_assert_eq(ts_live_allocs(), before);
}

/* ---- memory, stale gradients, forward only, nodes added later ------------------------------ */

Test(replay, runs_in_constant_memory)
{
    net n;
    make_elman(&n, AD_F64);
    ad_tape *t = ad_tape_new(&(ad_tape_options){.copy_grads = AD_COPY_GRADS_NORMS, .release_grads = 1});
    ad_tensor *loss = build_elman(t, &n);
    cr_assert_eq(ad_backward(t, loss, NULL), AD_OK);
    size_t used = ad_tape_bytes_used(t), reserved = ad_tape_bytes_reserved(t);
    long allocs = ts_total_allocs();
    for (int s = 0; s < 50; s++) {
        cr_assert_eq(ad_tape_replay(t), AD_OK, "%s", ad_tape_message(t));
        cr_assert_eq(ad_backward(t, loss, NULL), AD_OK, "%s", ad_tape_message(t));
        cr_assert_eq(ad_tape_bytes_used(t), used, "replay %d: %zu bytes used, %zu after the first pass", s,
                     ad_tape_bytes_used(t), used);
    }
    cr_assert_eq(ad_tape_bytes_reserved(t), reserved);
#ifndef TS_SHARED_LIBS
    cr_assert_eq(ts_total_allocs(), allocs, "the replays allocated");
#else
    (void)allocs;
#endif
    ad_tape_free(t);
    nn_params_free(n.ps);
}

Test(replay, makes_the_old_gradients_stale_and_backward_gives_them_again)
{
    ad_tape *t = ad_tape_new(NULL);
    double xd[4] = {1, -2, 0.5, 3};
    ad_tensor *x = ad_variable(t, AD_F64, ad_shape1(4), xd);
    ad_tensor *y = ad_tanh(t, x);
    ad_tensor *loss = ad_sum(t, ad_mul(t, y, y), AD_AXIS_ALL, 0);
    cr_assert_eq(ad_backward(t, loss, NULL), AD_OK);
    double g0 = ad_tensor_grad_f64(y)[1];
    cr_assert_eq(ad_tape_replay(t), AD_OK);
    cr_assert_null(ad_tensor_grad_f64(y), "a gradient of the pass before the replay is still readable");
    cr_assert(isnan(ad_tensor_grad_get(y, 1)));
    cr_assert_eq(ad_tape_status(t), AD_OK, "no gradient in this pass is not an error");
    ad_tape_free(t);

    /* new data in the variable: the values and gradients of that data */
    t = ad_tape_new(NULL);
    x = ad_variable(t, AD_F64, ad_shape1(4), xd);
    y = ad_tanh(t, x);
    loss = ad_sum(t, ad_mul(t, y, y), AD_AXIS_ALL, 0);
    cr_assert_eq(ad_backward(t, loss, NULL), AD_OK);
    ad_tensor_f64(x)[1] = 0.25;
    cr_assert_eq(ad_tape_replay(t), AD_OK);
    cr_assert(ad_tensor_f64(y)[1] == tanh(0.25));
    cr_assert(ad_tensor_get(loss, 0) == tanh(1) * tanh(1) + tanh(0.25) * tanh(0.25) + tanh(0.5) * tanh(0.5) +
                                            tanh(3) * tanh(3));
    cr_assert_eq(ad_backward(t, loss, NULL), AD_OK);
    cr_assert(ad_tensor_grad_f64(y)[1] == 2 * tanh(0.25) && ad_tensor_grad_f64(y)[1] != g0);
    double th = tanh(0.25);
    cr_assert(fabs(ad_tensor_grad_f64(x)[1] - 2 * th * (1 - th * th)) < 1e-15);
    ad_tape_free(t);
}

Test(replay, runs_a_forward_only_tape_and_nodes_recorded_after_backward)
{
    ad_error err;
    ad_param *w = ad_param_new("w", AD_F64, ad_shape2(2, 2), &err);
    double *wv = ad_tensor_f64(ad_param_value(w));
    wv[0] = 1, wv[1] = 2, wv[2] = 3, wv[3] = 4;
    ad_tape *t = ad_tape_new(NULL);
    double xd[2] = {1, 1};
    ad_tensor *y = ad_matmul(t, ad_from_f64(t, AD_F64, ad_shape2(1, 2), xd), ad_use(t, w), 0);
    cr_assert(ad_tensor_f64(y)[0] == 4 && ad_tensor_f64(y)[1] == 6);
    wv[0] = 10; /* forward only: replays read the parameter's new values */
    for (int r = 0; r < 3; r++) cr_assert_eq(ad_tape_replay(t), AD_OK);
    cr_assert(ad_tensor_f64(y)[0] == 13 && ad_tensor_f64(y)[1] == 6);
    size_t used = ad_tape_bytes_used(t);
    cr_assert_eq(ad_tape_replay(t), AD_OK);
    cr_assert_eq(ad_tape_bytes_used(t), used);

    /* a backward, then more ops: the replay keeps them and reruns them too */
    ad_tensor *s = ad_sum(t, y, AD_AXIS_ALL, 0);
    cr_assert_eq(ad_backward(t, s, NULL), AD_OK);
    ad_tensor *s2 = ad_mul_scalar(t, s, 3.0);
    wv[3] = 0;
    cr_assert_eq(ad_tape_replay(t), AD_OK, "%s", ad_tape_message(t));
    cr_assert(ad_tensor_get(s2, 0) == 3.0 * (13 + 2));
    ad_param_zero_grad(w);
    cr_assert_eq(ad_backward(t, s2, NULL), AD_OK);
    cr_assert(ad_tensor_f64(ad_param_grad(w))[0] == 3.0 && ad_tensor_f64(ad_param_grad(w))[3] == 3.0);
    ad_tape_free(t);
    ad_param_free(w);
}

/* ---- what replay refuses ---------------------------------------------------------------- */

static ad_status region(ad_tape *t, void *ctx, ad_tensor *const *in, int n_in, ad_tensor **out, int n_out)
{
    (void)ctx, (void)n_in, (void)n_out;
    out[0] = ad_tanh(t, in[0]);
    return ad_tape_status(t);
}

Test(replay, refuses_null_empty_errored_checkpointed_and_dropout_tapes)
{
    long before = ts_live_allocs();
    cr_assert_eq(ad_tape_replay(NULL), AD_ERR_NULL);

    ad_tape *t = ad_tape_new(NULL);
    cr_assert_eq(ad_tape_replay(t), AD_ERR_EMPTY);
    cr_assert(strstr(ad_tape_message(t), "tape_replay: the tape holds no nodes"), "%s", ad_tape_message(t));

    ad_tape_reset(t); /* a tape in error stays as it is */
    ad_tensor *a = ad_zeros(t, AD_F64, ad_shape1(3));
    cr_assert_null(ad_add(t, a, ad_zeros(t, AD_F64, ad_shape1(4))));
    size_t nodes = ad_tape_size(t);
    cr_assert_eq(ad_tape_replay(t), AD_ERR_SHAPE);
    cr_assert_eq(ad_tape_size(t), nodes);

    ad_tape_reset(t);
    double xd[2] = {0.5, -1};
    ad_tensor *x = ad_variable(t, AD_F64, ad_shape1(2), xd), *y = NULL;
    cr_assert_eq(ad_checkpoint(t, region, NULL, &x, 1, &y, 1, NULL), AD_OK);
    cr_assert_eq(ad_tape_replay(t), AD_ERR_STATE);
    cr_assert(strstr(ad_tape_message(t), "checkpointed region"), "%s", ad_tape_message(t));

    ad_tape_reset(t);
    ad_rng rng;
    ad_rng_seed(&rng, 1, 0);
    x = ad_variable(t, AD_F64, ad_shape1(2), xd);
    cr_assert_not_null(ad_dropout(t, x, 0.5, 1, &rng));
    cr_assert_eq(ad_tape_replay(t), AD_ERR_STATE);
    cr_assert(strstr(ad_tape_message(t), "node 1 is a dropout in training"), "%s", ad_tape_message(t));

    /* after a reset the same tape records and replays */
    ad_tape_reset(t);
    x = ad_variable(t, AD_F64, ad_shape1(2), xd);
    y = ad_tanh(t, x);
    cr_assert_eq(ad_tape_replay(t), AD_OK, "%s", ad_tape_message(t));
    ad_tape_free(t);
    cr_assert_eq(ts_live_allocs(), before);
}

/* sum(tanh(x W)), recorded and then replayed before it is returned. */
static ad_tensor *replaying_graph(ad_tape *t, void *ctx)
{
    static const double x[6] = {0.3, -0.8, 1.1, 0.4, -0.2, 0.9};
    ad_tensor *y = ad_sum(t, ad_tanh(t, ad_matmul(t, ad_from_f64(t, AD_F64, ad_shape2(2, 3), x),
                                                  ad_use(t, ctx), 0)), AD_AXIS_ALL, 0);
    return y && ad_tape_replay(t) == AD_OK ? y : NULL;
}

Test(replay, gradcheck_passes_through_it_and_a_per_copy_probe_is_refused)
{
    long before = ts_live_allocs();
    ad_param *w = ad_param_new("w", AD_F64, ad_shape2(3, 2), NULL);
    cr_assert_not_null(w);
    static const double wd[6] = {0.5, -0.4, 0.3, 0.7, -0.6, 0.2};
    memcpy(ad_tensor_f64(ad_param_value(w)), wd, sizeof wd);
    ad_gradcheck_report rep;
    ad_error err;
    cr_assert_eq(ad_gradcheck(replaying_graph, w, &w, 1, NULL, &rep, &err), AD_OK, "%s", err.msg);
    cr_assert(rep.passed && rep.evaluations > 0);
    ad_gradcheck_entry e;
    cr_assert_eq(ad_gradcheck_copy(replaying_graph, w, w, 0, NULL, &e, &err), AD_ERR_STATE);
    cr_assert(strstr(err.msg, "tape_replay: a gradient check probes this tape's parameter copies"), "%s", err.msg);
    ad_param_free(w);
    cr_assert_eq(ts_live_allocs(), before);
}

Test(replay, reports_a_non_finite_value_in_anomaly_mode)
{
    ad_tape *t = ad_tape_new(NULL);
    ad_tape_set_anomaly(t, 1);
    double xd[2] = {0.5, 2};
    ad_tensor *x = ad_variable(t, AD_F64, ad_shape1(2), xd);
    ad_tensor *y = ad_log(t, x);
    cr_assert_not_null(y);
    ad_tensor_f64(x)[1] = -1;
    cr_assert_eq(ad_tape_replay(t), AD_ERR_NONFINITE);
    cr_assert(strstr(ad_tape_message(t), "log"), "%s", ad_tape_message(t));
    ad_tape_free(t);
}
