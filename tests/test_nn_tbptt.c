/*
 * test_nn_tbptt.c - the TBPTT(k1, k2) driver: against a PyTorch trajectory
 * (segment losses and final weights, tests/data/tbptt) for k1 = k2 and
 * k1 < k2, against the hand-derived truncated reference for the textbook
 * case 2, with recomputation (the same parameters as without), and its bad
 * inputs.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <unroll/nn/nn.h>
#include "testsupport.h"

/* ---- against PyTorch ------------------------------------------------------------------ */

typedef struct torch_ctx {
    nn_params *ps;
    nn_linear head;
    nn_optim *opt;
    ad_tensor *x, *losses;
    ad_itensor *targets; /* [steps, B] int64, as PyTorch wrote them */
    int64_t batch, in;
    int segments;
} torch_ctx;

static ad_tensor *torch_input(ad_tape *t, int64_t step, void *vc)
{
    torch_ctx *c = vc;
    return ad_from_data(t, AD_F64, ad_shape2(c->batch, c->in),
                        ad_tensor_f64(c->x) + step * c->batch * c->in);
}

static ad_tensor *torch_loss(ad_tape *t, const nn_state *h, int64_t step, void *vc)
{
    torch_ctx *c = vc;
    const int64_t *tg = ad_itensor_data(c->targets) + step * c->batch;
    return ad_cross_entropy(t, nn_linear_forward(t, &c->head, h->h), tg, c->batch, -100, AD_REDUCE_SUM);
}

static ad_status torch_update(int64_t seg, double loss, void *vc)
{
    torch_ctx *c = vc;
    double want = ad_tensor_f64(c->losses)[seg];
    cr_assert(fabs(loss - want) <= 1e-12 * fabs(want), "segment %lld loss %.17g, PyTorch %.17g",
              (long long)seg, loss, want);
    c->segments++;
    return nn_optim_step(c->opt, NULL);
}

static void torch_case(const char *name, int k1, int k2)
{
    char dir[512], file[600];
    snprintf(dir, sizeof dir, "%s/tbptt/%s", UNROLL_TEST_DATA, name);
    torch_ctx c;
    memset(&c, 0, sizeof c);
    snprintf(file, sizeof file, "%s/x.npy", dir);
    c.x = ad_npy_load(file, NULL);
    snprintf(file, sizeof file, "%s/targets.npy", dir);
    c.targets = ad_npy_load_ints(file, NULL);
    snprintf(file, sizeof file, "%s/losses.npy", dir);
    c.losses = ad_npy_load(file, NULL);
    cr_assert(c.x && c.targets && c.losses);
    int64_t steps = ad_tensor_dim(c.x, 0);
    c.batch = ad_tensor_dim(c.x, 1);
    c.in = ad_tensor_dim(c.x, 2);
    c.ps = nn_params_new(AD_F64, NULL);
    nn_cell cell;
    cr_assert_eq(nn_cell_create(&cell, c.ps, "rnn", &(nn_cell_options){.kind = NN_CELL_RNN_TANH, .input_size = (int)c.in, .hidden_size = 4}, NULL), AD_OK);
    nn_linear_create(&c.head, c.ps, "head", 4, 3, 1, NULL);
    snprintf(file, sizeof file, "%s/init", dir);
    ad_error err;
    cr_assert_eq(nn_params_load_npy_dir(c.ps, file, &err), AD_OK, "%s", err.msg);
    nn_optim_config cfg = nn_optim_defaults(NN_OPTIM_SGD);
    cfg.lr = 0.1;
    c.opt = nn_optim_new(c.ps, &cfg, NULL);
    ad_tape *t = ad_tape_new(NULL);
    nn_tbptt_options o = {.k1 = k1, .k2 = k2, .steps = steps, .batch = c.batch};
    cr_assert_eq(nn_tbptt_run(t, &cell, c.ps, &o, torch_input, torch_loss, torch_update, &c, &err),
                 AD_OK, "%s", err.msg);
    cr_assert_eq(c.segments, (int)ad_tensor_numel(c.losses));
    /* final weights */
    nn_params *want = nn_params_new(AD_F64, NULL);
    nn_cell wc;
    nn_linear wh;
    nn_cell_create(&wc, want, "rnn", &(nn_cell_options){.kind = NN_CELL_RNN_TANH, .input_size = (int)c.in, .hidden_size = 4}, NULL);
    nn_linear_create(&wh, want, "head", 4, 3, 1, NULL);
    snprintf(file, sizeof file, "%s/final", dir);
    cr_assert_eq(nn_params_load_npy_dir(want, file, &err), AD_OK, "%s", err.msg);
    size_t n;
    const double *got = nn_params_values(c.ps, &n), *w = nn_params_values(want, &n);
    for (size_t i = 0; i < n; i++)
        cr_assert(fabs(got[i] - w[i]) <= 1e-12 * fabs(w[i]) + 1e-15, "%s weight %zu: %.17g, PyTorch %.17g",
                  name, i, got[i], w[i]);
    ad_tape_free(t);
    nn_optim_free(c.opt);
    nn_params_free(c.ps);
    nn_params_free(want);
    ad_tensor_free(c.x), ad_itensor_free(c.targets), ad_tensor_free(c.losses);
}

Test(nn_tbptt, matches_pytorch)
{
    long before = ts_live_allocs();
    torch_case("k3_k3", 3, 3);
    torch_case("k2_k4", 2, 4);
    cr_assert_eq(ts_live_allocs(), before);
}

/* ---- against the hand-derived truncated reference (textbook case 2) ----------------------- */

enum { V = 4, H = 3, T = 10, K = 3 };
static const int64_t inputs[T] = {0, 1, 2, 3, 0, 1, 3, 2, 2, 1}, targets[T] = {1, 2, 3, 0, 1, 3, 2, 2, 1, 0};

/* Case 2 in row form: h = tanh(x W_xh^T + h W_hh^T + b_h); w = W_xh, W_hh, b_h. */
static ad_status case2_step(ad_tape *t, const nn_cell *c, ad_tensor *x, const nn_state *prev,
                            nn_state *next)
{
    ad_tensor *b = ad_reshape(t, ad_use(t, c->w[2]), ad_shape1(H));
    next->h = ad_tanh(t, ad_add(t, ad_add(t, ad_matmul(t, x, ad_use(t, c->w[0]), AD_TRANS_B),
                                          ad_matmul(t, prev->h, ad_use(t, c->w[1]), AD_TRANS_B)), b));
    return ad_tape_status(t);
}

typedef struct ref_ctx {
    nn_case2_params p;
    nn_params *ps;
    double sum[128], loss;
} ref_ctx;

static ad_tensor *ref_input(ad_tape *t, int64_t step, void *vc)
{
    (void)vc;
    double x[V] = {0};
    x[inputs[step]] = 1;
    return ad_from_data(t, AD_F64, ad_shape2(1, V), x);
}

static ad_tensor *ref_loss(ad_tape *t, const nn_state *h, int64_t step, void *vc)
{
    ref_ctx *c = vc;
    ad_tensor *y = ad_add(t, ad_matmul(t, h->h, ad_use(t, c->p.W_hy), AD_TRANS_B),
                          ad_reshape(t, ad_use(t, c->p.b_y), ad_shape1(V)));
    int64_t tg = targets[step];
    return ad_cross_entropy(t, y, &tg, 1, -100, AD_REDUCE_SUM);
}

static ad_status ref_update(int64_t seg, double loss, void *vc)
{
    (void)seg;
    ref_ctx *c = vc;
    size_t n;
    const double *g = nn_params_grads(c->ps, &n);
    for (size_t i = 0; i < n; i++) c->sum[i] += g[i];
    c->loss += loss;
    return AD_OK;
}

Test(nn_tbptt, equals_the_truncated_reference)
{
    long before = ts_live_allocs();
    ref_ctx c;
    memset(&c, 0, sizeof c);
    c.ps = nn_params_new(AD_F64, NULL);
    c.p.W_xh = nn_params_add(c.ps, "W_xh", ad_shape2(H, V), NULL);
    c.p.W_hh = nn_params_add(c.ps, "W_hh", ad_shape2(H, H), NULL);
    c.p.W_hy = nn_params_add(c.ps, "W_hy", ad_shape2(V, H), NULL);
    c.p.b_h = nn_params_add(c.ps, "b_h", ad_shape2(H, 1), NULL);
    c.p.b_y = nn_params_add(c.ps, "b_y", ad_shape2(V, 1), NULL);
    ad_rng rng;
    ad_rng_seed(&rng, 21, 0);
    nn_params_init_uniform(c.ps, &rng, -0.7, 0.7);
    nn_cell cell = {.name = "case2", .input_size = V, .hidden_size = H, .step = case2_step, .n_w = 3};
    cell.w[0] = c.p.W_xh, cell.w[1] = c.p.W_hh, cell.w[2] = c.p.b_h;
    ad_tape *t = ad_tape_new(NULL);
    nn_tbptt_options o = {.k1 = K, .k2 = K, .steps = T, .batch = 1};
    ad_error err;
    cr_assert_eq(nn_tbptt_run(t, &cell, c.ps, &o, ref_input, ref_loss, ref_update, &c, &err), AD_OK,
                 "%s", err.msg);
    double ref[128], loss;
    nn_case2_weights w = {ad_tensor_f64(ad_param_value(c.p.W_xh)), ad_tensor_f64(ad_param_value(c.p.W_hh)),
                          ad_tensor_f64(ad_param_value(c.p.W_hy)), ad_tensor_f64(ad_param_value(c.p.b_h)),
                          ad_tensor_f64(ad_param_value(c.p.b_y))};
    nn_case2_weights g = {ref, ref + H * V, ref + H * V + H * H, ref + 2 * H * V + H * H,
                          ref + 2 * H * V + H * H + H};
    cr_assert_eq(nn_ref_case2_truncated(V, H, &w, inputs, targets, T, K, NULL, &loss, &g, NULL, NULL), AD_OK);
    cr_assert(fabs(c.loss - loss) <= 1e-12 * loss);
    size_t n;
    nn_params_values(c.ps, &n);
    double scale = 0;
    for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(ref[i]));
    for (size_t i = 0; i < n; i++)
        cr_assert(fabs(c.sum[i] - ref[i]) <= 1e-12 * scale, "grad %zu: %.17g, reference %.17g", i,
                  c.sum[i], ref[i]);
    ad_tape_free(t);
    nn_params_free(c.ps);
    cr_assert_eq(ts_live_allocs(), before);
}

/* Runs case 2 under TBPTT(K, k2) and returns the summed loss and gradients. */
static void run_case2(int k2, ref_ctx *c)
{
    memset(c, 0, sizeof *c);
    c->ps = nn_params_new(AD_F64, NULL);
    c->p.W_xh = nn_params_add(c->ps, "W_xh", ad_shape2(H, V), NULL);
    c->p.W_hh = nn_params_add(c->ps, "W_hh", ad_shape2(H, H), NULL);
    c->p.W_hy = nn_params_add(c->ps, "W_hy", ad_shape2(V, H), NULL);
    c->p.b_h = nn_params_add(c->ps, "b_h", ad_shape2(H, 1), NULL);
    c->p.b_y = nn_params_add(c->ps, "b_y", ad_shape2(V, 1), NULL);
    ad_rng rng;
    ad_rng_seed(&rng, 21, 0);
    nn_params_init_uniform(c->ps, &rng, -0.7, 0.7);
    nn_cell cell = {.name = "case2", .input_size = V, .hidden_size = H, .step = case2_step, .n_w = 3};
    cell.w[0] = c->p.W_xh, cell.w[1] = c->p.W_hh, cell.w[2] = c->p.b_h;
    ad_tape *t = ad_tape_new(NULL);
    nn_tbptt_options o = {.k1 = K, .k2 = k2, .steps = T, .batch = 1};
    ad_error err;
    cr_assert_eq(nn_tbptt_run(t, &cell, c->ps, &o, ref_input, ref_loss, ref_update, c, &err), AD_OK,
                 "k2 = %d: %s", k2, err.msg);
    ad_tape_free(t);
    nn_params_free(c->ps);
}

/* k2 beyond the sequence (and beyond the last segment's nominal end) means
 * "back to the start": INT32_MAX gives what 2T gives, keeping only the
 * states the sequence has (no overflow of k2 + 1, no ring of 2^31 slots). */
Test(nn_tbptt, the_largest_k2_backpropagates_to_the_start)
{
    long before = ts_live_allocs();
    static ref_ctx whole, largest;
    run_case2(2 * T, &whole);
    run_case2(INT32_MAX, &largest);
    cr_assert_eq(largest.loss, whole.loss);
    for (size_t i = 0; i < sizeof whole.sum / sizeof whole.sum[0]; i++)
        cr_assert_eq(largest.sum[i], whole.sum[i], "gradient %zu: %.17g, k2 = 2T %.17g", i, largest.sum[i], whole.sum[i]);
    cr_assert_eq(ts_live_allocs(), before);
}

Test(nn_tbptt, bad_inputs)
{
    nn_params *ps = nn_params_new(AD_F64, NULL);
    nn_cell cell;
    nn_cell_create(&cell, ps, "gru", &(nn_cell_options){.kind = NN_CELL_GRU, .input_size = 2, .hidden_size = 2}, NULL);
    ad_tape *t = ad_tape_new(NULL);
    ad_error err;
    nn_tbptt_options o = {.k1 = 3, .k2 = 2, .steps = 5, .batch = 1};
    cr_assert_eq(nn_tbptt_run(t, &cell, ps, &o, ref_input, ref_loss, NULL, NULL, &err), AD_ERR_ARG);
    o.k2 = 3, o.steps = 0;
    cr_assert_eq(nn_tbptt_run(t, &cell, ps, &o, ref_input, ref_loss, NULL, NULL, &err), AD_ERR_EMPTY);
    o.steps = 5;
    cr_assert_eq(nn_tbptt_run(t, NULL, ps, &o, ref_input, ref_loss, NULL, NULL, &err), AD_ERR_NULL);
    /* an input of the wrong width is the cell's shape error, reported through err */
    cr_assert_eq(nn_tbptt_run(t, &cell, ps, &o, ref_input, ref_loss, NULL, NULL, &err), AD_ERR_SHAPE);
    cr_assert(strstr(err.msg, "gru.l0: x must be [B, 2]"), "%s", err.msg);
    ad_tape_free(t);
    nn_params_free(ps);
}

/* ---- with recomputation: the same parameters after every update ------------------------- */

enum { RB = 2, RI = 3, RH = 4, RSTEPS = 23 };

typedef struct rc_ctx {
    nn_params *ps;
    nn_linear head;
    nn_optim *opt;
    double x[RSTEPS * RB * RI];
    int updates;
} rc_ctx;

static ad_tensor *rc_input(ad_tape *t, int64_t step, void *vc)
{
    rc_ctx *c = vc;
    return ad_from_data(t, AD_F64, ad_shape2(RB, RI), c->x + step * RB * RI);
}

/* sum(tanh(head(h))^2) at steps that are not multiples of 3 (no loss there) */
static ad_tensor *rc_loss(ad_tape *t, const nn_state *h, int64_t step, void *vc)
{
    rc_ctx *c = vc;
    if (step % 3 == 0) return NULL;
    ad_tensor *y = ad_tanh(t, nn_linear_forward(t, &c->head, h->h));
    return ad_mul_scalar(t, ad_sum(t, ad_mul(t, y, y), AD_AXIS_ALL, 0), 1.0 + (double)step / 7.0);
}

static ad_status rc_update(int64_t seg, double loss, void *vc)
{
    (void)seg, (void)loss;
    rc_ctx *c = vc;
    c->updates++;
    return nn_optim_step(c->opt, NULL);
}

/* The parameters after a TBPTT run of the given cell and options. */
static void rc_train(nn_cell_kind kind, nn_tbptt_options o, double *out, size_t *n, int *updates)
{
    rc_ctx c;
    memset(&c, 0, sizeof c);
    c.ps = nn_params_new(AD_F64, NULL);
    nn_cell cell;
    cr_assert_eq(nn_cell_create(&cell, c.ps, "r", &(nn_cell_options){.kind = kind, .input_size = RI, .hidden_size = RH},
                                NULL), AD_OK);
    nn_linear_create(&c.head, c.ps, "head", RH, 3, 1, NULL);
    ad_rng rng;
    ad_rng_seed(&rng, 3, 4);
    nn_params_init_uniform(c.ps, &rng, -0.6, 0.6);
    ts_fill_uniform(c.x, RSTEPS * RB * RI, 21, -1.0, 1.0);
    nn_optim_config cfg = nn_optim_defaults(NN_OPTIM_SGD);
    cfg.lr = 0.2;
    c.opt = nn_optim_new(c.ps, &cfg, NULL);
    ad_tape *t = ad_tape_new(NULL);
    ad_error err;
    o.steps = RSTEPS, o.batch = RB;
    cr_assert_eq(nn_tbptt_run(t, &cell, c.ps, &o, rc_input, rc_loss, rc_update, &c, &err), AD_OK, "%s", err.msg);
    const double *v = nn_params_values(c.ps, n);
    memcpy(out, v, *n * sizeof *out);
    *updates = c.updates;
    ad_tape_free(t);
    nn_optim_free(c.opt);
    nn_params_free(c.ps);
}

static void rc_compare(nn_cell_kind kind, int k1, int k2, int mode, int segments, int slots)
{
    static double want[4096], got[4096];
    size_t n0, n1;
    int u0, u1;
    double h0[RB * RH];
    ts_fill_uniform(h0, RB * RH, 5, -0.5, 0.5);
    nn_tbptt_options o = {.k1 = k1, .k2 = k2, .h0 = h0, .c0 = h0};
    rc_train(kind, o, want, &n0, &u0);
    o.recompute = mode, o.segments = segments, o.slots = slots;
    rc_train(kind, o, got, &n1, &u1);
    cr_assert_eq(n0, n1);
    cr_assert_eq(u0, u1);
    cr_assert(u0 >= 5, "%d updates", u0);
    double scale = 0, diff = 0;
    for (size_t i = 0; i < n0; i++) {
        scale = fmax(scale, fabs(want[i]));
        diff = fmax(diff, fabs(want[i] - got[i]));
    }
    cr_assert(diff <= 1e-12 * scale, "k1 %d k2 %d mode %d: parameters differ by %.3g (scale %.3g)", k1, k2, mode, diff,
              scale);
}

Test(nn_tbptt, recompute_gives_the_same_parameters)
{
    long before = ts_live_allocs();
    const nn_cell_kind kinds[3] = {NN_CELL_RNN_TANH, NN_CELL_LSTM, NN_CELL_GRU};
    for (int i = 0; i < 3; i++) {
        rc_compare(kinds[i], 4, 4, NN_RECOMPUTE_SEGMENTS, 0, 0);
        rc_compare(kinds[i], 3, 7, NN_RECOMPUTE_SEGMENTS, 3, 0);
        rc_compare(kinds[i], 2, 9, NN_RECOMPUTE_SLOTS, 0, 2);
        rc_compare(kinds[i], 5, 5, NN_RECOMPUTE_SLOTS, 0, 1);
    }
    cr_assert_eq(ts_live_allocs(), before);
}

Test(nn_tbptt, bad_recompute_options)
{
    long before = ts_live_allocs();
    nn_params *ps = nn_params_new(AD_F64, NULL);
    nn_cell cell;
    nn_cell_create(&cell, ps, "gru", &(nn_cell_options){.kind = NN_CELL_GRU, .input_size = RI, .hidden_size = RH}, NULL);
    ad_tape *t = ad_tape_new(NULL);
    ad_error err;
    rc_ctx c;
    memset(&c, 0, sizeof c);
    nn_tbptt_options o = {.k1 = 3, .k2 = 3, .steps = 5, .batch = RB, .recompute = 5};
    cr_assert_eq(nn_tbptt_run(t, &cell, ps, &o, rc_input, rc_loss, NULL, &c, &err), AD_ERR_ARG);
    cr_assert(strstr(err.msg, "recompute = 5"), "%s", err.msg);
    o.recompute = NN_RECOMPUTE_SEGMENTS, o.segments = -1;
    cr_assert_eq(nn_tbptt_run(t, &cell, ps, &o, rc_input, rc_loss, NULL, &c, &err), AD_ERR_ARG);
    cr_assert(strstr(err.msg, "segments = -1"), "%s", err.msg);
    o.recompute = NN_RECOMPUTE_SLOTS, o.segments = 0, o.slots = 0;
    cr_assert_eq(nn_tbptt_run(t, &cell, ps, &o, rc_input, rc_loss, NULL, &c, &err), AD_ERR_ARG);
    cr_assert(strstr(err.msg, "slots = 0"), "%s", err.msg);
    ad_tape_free(t);
    nn_params_free(ps);
    cr_assert_eq(ts_live_allocs(), before);
}
