/*
 * test_checkpoint.c - checkpointed regions (ad_checkpoint): gradients equal
 * the plainly recorded computation's, the recomputed forward is
 * bit-identical, dropout masks come back from the saved RNG state, regions
 * nest, and errors (at the first run or only at recomputation) are clear
 * tape errors with nothing leaked.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include <unroll/nn/nn.h>
#include "testsupport.h"

enum { B = 3, I = 4, H = 5 };

/* ---- (a) an MLP region: y = tanh(x W1) W2, with dropout when ctx says ---- */

typedef struct mlp {
    ad_param *w1, *w2;
    ad_rng *rng; /* dropout's generator, or NULL */
    int fail;    /* 1: the region returns an error */
    int calls;
} mlp;

static ad_status mlp_fn(ad_tape *t, void *ctx, ad_tensor *const *in, int n_in, ad_tensor **out, int n_out)
{
    (void)n_in;
    (void)n_out;
    mlp *m = ctx;
    m->calls++;
    if (m->fail) return AD_ERR_ARG;
    ad_tensor *h = ad_tanh(t, ad_matmul(t, in[0], ad_use(t, m->w1), 0));
    if (m->rng) h = ad_dropout(t, h, 0.3, 1, m->rng);
    out[0] = ad_matmul(t, h, ad_use(t, m->w2), 0);
    return ad_tape_status(t);
}

/* Two checkpointed MLP layers in a row, or the same recorded plainly; the
 * loss is sum(y^2). Fills the gradients of x, w1 and w2 and returns the
 * forward outputs' data copied into y. */
static const ad_tape_options *run_opts; /* the tape's modes, NULL: defaults */

static void mlp_run(int ckpt, int nested, mlp *m, const double *xd, double *y, double *gx)
{
    ad_tape *t = ad_tape_new(run_opts);
    ad_param_zero_grad(m->w1);
    ad_param_zero_grad(m->w2);
    ad_tensor *x = ad_variable(t, AD_F64, ad_shape2(B, I), xd);
    ad_tensor *cur = x;
    for (int l = 0; l < 2; l++) {
        ad_tensor *o[1];
        if (ckpt) {
            ad_checkpoint_options co = {.rng = m->rng, .label = "layer"};
            cr_assert_eq(ad_checkpoint(t, mlp_fn, m, &cur, 1, o, 1, &co), AD_OK, "%s", ad_tape_message(t));
        } else {
            cr_assert_eq(mlp_fn(t, m, &cur, 1, o, 1), AD_OK);
        }
        cur = ad_reshape(t, o[0], ad_shape2(B, I));
        (void)nested;
    }
    memcpy(y, ad_tensor_f64(cur), sizeof(double) * B * I);
    ad_tensor *loss = ad_sum(t, ad_mul(t, cur, cur), AD_AXIS_ALL, 0);
    cr_assert_eq(ad_backward(t, loss, NULL), AD_OK, "%s", ad_tape_message(t));
    memcpy(gx, ad_tensor_grad_f64(x), sizeof(double) * B * I);
    ad_tape_free(t);
}

static void make_mlp(mlp *m)
{
    memset(m, 0, sizeof *m);
    m->w1 = ad_param_new("w1", AD_F64, ad_shape2(I, H), NULL);
    m->w2 = ad_param_new("w2", AD_F64, ad_shape2(H, I), NULL);
    ts_fill_uniform(ad_tensor_f64(ad_param_value(m->w1)), I * H, 1, -0.8, 0.8);
    ts_fill_uniform(ad_tensor_f64(ad_param_value(m->w2)), H * I, 2, -0.8, 0.8);
}

static void free_mlp(mlp *m)
{
    ad_param_free(m->w1);
    ad_param_free(m->w2);
}

static void expect_close(const double *a, const double *b, size_t n, const char *what)
{
    for (size_t i = 0; i < n; i++)
        cr_assert(ts_rel_diff(a[i], b[i]) <= 1e-12, "%s[%zu]: %.17g vs %.17g", what, i, a[i], b[i]);
}

static void compare_mlp(ad_rng *rng)
{
    long before = ts_live_allocs();
    mlp m;
    make_mlp(&m);
    double xd[B * I], y0[B * I], y1[B * I], g0[B * I], g1[B * I], w1p[I * H], w2p[H * I];
    ts_fill_uniform(xd, B * I, 3, -1, 1);
    ad_rng start = {0};
    if (rng) start = *rng, m.rng = rng;
    mlp_run(0, 0, &m, xd, y0, g0);
    memcpy(w1p, ad_tensor_f64(ad_param_grad(m.w1)), sizeof w1p);
    memcpy(w2p, ad_tensor_f64(ad_param_grad(m.w2)), sizeof w2p);
    if (rng) *rng = start;
    m.calls = 0;
    mlp_run(1, 0, &m, xd, y1, g1);
    cr_assert_eq(m.calls, 4, "two regions, each run twice (forward, recomputation): %d", m.calls);
    cr_assert_eq(memcmp(y0, y1, sizeof y0), 0, "the checkpointed forward is bit-identical");
    expect_close(g0, g1, B * I, "dL/dx");
    expect_close(w1p, ad_tensor_f64(ad_param_grad(m.w1)), I * H, "dL/dw1");
    expect_close(w2p, ad_tensor_f64(ad_param_grad(m.w2)), H * I, "dL/dw2");
    free_mlp(&m);
    cr_assert_eq(ts_live_allocs(), before, "no leak");
}

Test(checkpoint, mlp_region_equals_plain) { compare_mlp(NULL); }

Test(checkpoint, norms_and_release_grads_modes)
{
    ad_tape_options o = {.copy_grads = AD_COPY_GRADS_NORMS, .release_grads = 1};
    run_opts = &o;
    compare_mlp(NULL);
    o.copy_grads = AD_COPY_GRADS_NONE;
    compare_mlp(NULL);
    run_opts = NULL;
}

Test(checkpoint, dropout_mask_reproduced_from_rng)
{
    ad_rng rng;
    ad_rng_seed(&rng, 42, 7);
    compare_mlp(&rng);
}

/* ---- (b) an Elman / LSTM / GRU segment of a few steps through nn cells ---- */

enum { SEG = 4, T = 12, MAXT = 200 };

typedef struct seg {
    const nn_cell *cell;
    ad_tensor **xs; /* the steps' inputs, on the outer tape */
    int t0, lstm;
} seg;

/* inputs: h (and c); outputs: the segment's last h (and c) */
static ad_status seg_fn(ad_tape *t, void *ctx, ad_tensor *const *in, int n_in, ad_tensor **out, int n_out)
{
    (void)n_in;
    (void)n_out;
    seg *s = ctx;
    nn_state st = {in[0], s->lstm ? in[1] : NULL};
    for (int k = 0; k < SEG; k++) {
        nn_state next;
        ad_tensor *x = ad_constant(t, s->xs[s->t0 + k]);
        ad_status rc = nn_builtin_step(t, s->cell, x, &st, &next);
        if (rc != AD_OK) return rc;
        st = next;
    }
    out[0] = st.h;
    if (s->lstm) out[1] = st.c;
    return ad_tape_status(t);
}

/* When set, cell_run writes every copy's gradient norm there (weights in
 * order, copies in recording order) and their count to *cell_norms_n. */
static double *cell_norms;
static size_t *cell_norms_n;
static const ad_tape_options *cell_opts;

static void cell_run(nn_cell_kind kind, int ckpt, int nt, double *grads, size_t *n_grads, double *hout, size_t *bytes)
{
    nn_params *ps = nn_params_new(AD_F64, NULL);
    nn_cell cell;
    cr_assert_eq(nn_cell_create(&cell, ps, "c", &(nn_cell_options){.kind = kind, .input_size = I, .hidden_size = H},
                                NULL),
                 AD_OK);
    ad_rng rng;
    ad_rng_seed(&rng, 5, 1);
    nn_cell_init_pytorch(&cell, &rng);
    ad_tape *t = ad_tape_new(cell_opts);
    ad_tensor *xs[MAXT];
    for (int k = 0; k < nt; k++) xs[k] = ad_rand_normal(t, &rng, AD_F64, ad_shape2(B, I), 0, 1);
    int lstm = kind == NN_CELL_LSTM;
    double h0d[B * H];
    ts_fill_uniform(h0d, B * H, 9, -0.5, 0.5);
    ad_tensor *h = ad_variable(t, AD_F64, ad_shape2(B, H), h0d);
    ad_tensor *c = lstm ? ad_variable(t, AD_F64, ad_shape2(B, H), h0d) : NULL;
    ad_tensor *h0 = h, *c0 = c;
    seg segs[MAXT / SEG];
    for (int g = 0; g < nt / SEG; g++) {
        segs[g] = (seg){&cell, xs, g * SEG, lstm};
        ad_tensor *in[2] = {h, c}, *out[2] = {NULL, NULL};
        if (ckpt)
            cr_assert_eq(ad_checkpoint(t, seg_fn, &segs[g], in, 1 + lstm, out, 1 + lstm, NULL), AD_OK, "%s",
                         ad_tape_message(t));
        else
            cr_assert_eq(seg_fn(t, &segs[g], in, 1 + lstm, out, 1 + lstm), AD_OK);
        h = out[0], c = out[1];
    }
    if (bytes) *bytes = ad_tape_bytes_used(t);
    memcpy(hout, ad_tensor_f64(h), sizeof(double) * B * H);
    ad_tensor *loss = ad_sum(t, ad_tanh(t, h), AD_AXIS_ALL, 0);
    if (lstm) loss = ad_add(t, loss, ad_sum(t, ad_mul(t, c, c), AD_AXIS_ALL, 0));
    cr_assert_eq(ad_backward(t, loss, NULL), AD_OK, "%s", ad_tape_message(t));
    size_t n = 0;
    for (int i = 0; i < B * H; i++) grads[n++] = ad_tensor_grad_f64(h0)[i];
    if (lstm)
        for (int i = 0; i < B * H; i++) grads[n++] = ad_tensor_grad_f64(c0)[i];
    for (size_t p = 0; p < nn_params_count(ps); p++) {
        ad_param *w = nn_params_at(ps, p);
        for (size_t i = 0; i < ad_tensor_numel(ad_param_grad(w)); i++) grads[n++] = ad_tensor_f64(ad_param_grad(w))[i];
    }
    *n_grads = n;
    if (cell_norms) {
        size_t k = 0;
        for (int w = 0; w < cell.n_w; w++) {
            ad_tensor *copies[MAXT * 2];
            size_t nc = ad_tape_copies(t, nn_cell_weight(&cell, w), copies, MAXT * 2);
            cr_assert_eq(nc, (size_t)nt, "one copy of '%s' per step, in regions or not",
                         ad_param_name(nn_cell_weight(&cell, w)));
            for (size_t j = 0; j < nc; j++)
                cr_assert_eq(ad_tensor_grad_norm(copies[j], &cell_norms[k++], NULL), AD_OK);
        }
        *cell_norms_n = k;
    }
    ad_tape_free(t);
    nn_params_free(ps);
}

static void compare_cell(nn_cell_kind kind)
{
    long before = ts_live_allocs();
    static double g0[4096], g1[4096];
    double h0[B * H], h1[B * H];
    size_t n0, n1;
    cell_run(kind, 0, T, g0, &n0, h0, NULL);
    cell_run(kind, 1, T, g1, &n1, h1, NULL);
    cr_assert_eq(n0, n1);
    cr_assert_eq(memcmp(h0, h1, sizeof h0), 0, "the checkpointed forward is bit-identical");
    expect_close(g0, g1, n0, "gradient");
    cr_assert_eq(ts_live_allocs(), before, "no leak");
}

Test(checkpoint, elman_segments_equal_plain) { compare_cell(NN_CELL_RNN_TANH); }
Test(checkpoint, lstm_segments_equal_plain) { compare_cell(NN_CELL_LSTM); }
Test(checkpoint, gru_segments_equal_plain) { compare_cell(NN_CELL_GRU); }

/*
 * The temporal copies used inside regions are listed by ad_tape_copies() in
 * recording order, and after backward each holds its copy's gradient norm:
 * the same norms as the plain recording's copies, on a KEEP and a NORMS tape.
 * Their gradients themselves are not kept: reading one is AD_ERR_STATE.
 */
static void compare_copy_norms(nn_cell_kind kind, const ad_tape_options *o)
{
    static double g0[4096], g1[4096], n0[4 * 4 * T], n1[4 * 4 * T];
    double h0[B * H], h1[B * H];
    size_t ng0, ng1, c0, c1;
    cell_opts = o, cell_norms_n = &c0, cell_norms = n0;
    cell_run(kind, 0, T, g0, &ng0, h0, NULL);
    cell_norms_n = &c1, cell_norms = n1;
    cell_run(kind, 1, T, g1, &ng1, h1, NULL);
    cell_opts = NULL, cell_norms = NULL, cell_norms_n = NULL;
    cr_assert_eq(c0, c1);
    cr_assert(c0 >= 4 * (size_t)T, "every weight has its T copies");
    for (size_t j = 0; j < c0; j++)
        cr_assert(fabs(n1[j] - n0[j]) <= 1e-12 * fabs(n0[j]) + 1e-15, "copy %zu: region %.17g, plain %.17g", j, n1[j],
                  n0[j]);
}

Test(checkpoint, copies_inside_regions_keep_their_norms)
{
    long before = ts_live_allocs();
    compare_copy_norms(NN_CELL_LSTM, NULL);
    compare_copy_norms(NN_CELL_GRU, &(ad_tape_options){.copy_grads = AD_COPY_GRADS_NORMS, .release_grads = 1});
    cr_assert_eq(ts_live_allocs(), before, "no leak");
}

Test(checkpoint, a_copy_inside_a_region_has_no_gradient_to_read)
{
    long before = ts_live_allocs();
    mlp m;
    make_mlp(&m);
    double xd[B * I];
    ts_fill_uniform(xd, B * I, 3, -1, 1);
    ad_tape *t = ad_tape_new(NULL);
    ad_tensor *x = ad_variable(t, AD_F64, ad_shape2(B, I), xd), *o[1];
    cr_assert_eq(ad_checkpoint(t, mlp_fn, &m, &x, 1, o, 1, NULL), AD_OK, "%s", ad_tape_message(t));
    cr_assert_eq(ad_backward(t, ad_sum(t, ad_mul(t, o[0], o[0]), AD_AXIS_ALL, 0), NULL), AD_OK);
    ad_tensor *copy[2];
    cr_assert_eq(ad_tape_copies(t, m.w1, copy, 2), 1u);
    double norm = 0;
    cr_assert_eq(ad_tensor_grad_norm(copy[0], &norm, NULL), AD_OK);
    cr_assert(norm > 0, "the copy's norm arrived");
    cr_assert_null(ad_tensor_grad_f64(copy[0]));
    cr_assert_eq(ad_tape_status(t), AD_ERR_STATE);
    cr_assert(strstr(ad_tape_message(t), "checkpointed region"), "%s", ad_tape_message(t));
    ad_tape_free(t);
    free_mlp(&m);
    cr_assert_eq(ts_live_allocs(), before, "no leak");
}

/* ---- memory: a T=200 Elman unroll in checkpointed segments ---- */

Test(checkpoint, segments_keep_fewer_bytes)
{
    /* T=200 steps in segments of SEG steps; the plain tape keeps every step's
     * intermediates, the checkpointed one the inputs and the segments' states */
    static double g[2][4096];
    double h[2][B * H];
    size_t n[2], plain, ck;
    cell_run(NN_CELL_RNN_TANH, 0, MAXT, g[0], &n[0], h[0], &plain);
    cell_run(NN_CELL_RNN_TANH, 1, MAXT, g[1], &n[1], h[1], &ck);
    cr_log_info("T=%d Elman: checkpointed tape %zu bytes, plain %zu", MAXT, ck, plain);
    cr_assert(3 * ck < plain, "checkpointed %zu bytes, plain %zu", ck, plain);
    cr_assert_eq(memcmp(h[0], h[1], sizeof h[0]), 0);
    expect_close(g[0], g[1], n[0], "gradient");
}

/* ---- errors ---- */

static ad_status ident_fn(ad_tape *t, void *ctx, ad_tensor *const *in, int n_in, ad_tensor **out, int n_out)
{
    (void)ctx, (void)n_in, (void)n_out;
    out[0] = ad_tanh(t, in[0]);
    return ad_tape_status(t);
}

Test(checkpoint, bad_arguments)
{
    long before = ts_live_allocs();
    ad_tensor *out[1];
    cr_assert_eq(ad_checkpoint(NULL, ident_fn, NULL, NULL, 1, out, 1, NULL), AD_ERR_NULL);
    ad_tape *t = ad_tape_new(NULL);
    ad_tensor *x = ad_ones(t, AD_F64, ad_shape1(3));
    cr_assert_eq(ad_checkpoint(t, NULL, NULL, &x, 1, out, 1, NULL), AD_ERR_NULL);
    cr_assert(strstr(ad_tape_message(t), "fn is NULL"));
    ad_tape_reset(t);
    x = ad_ones(t, AD_F64, ad_shape1(3));
    cr_assert_eq(ad_checkpoint(t, ident_fn, NULL, NULL, 1, out, 1, NULL), AD_ERR_NULL);
    ad_tape_reset(t);
    x = ad_ones(t, AD_F64, ad_shape1(3));
    cr_assert_eq(ad_checkpoint(t, ident_fn, NULL, &x, 1, out, 0, NULL), AD_ERR_EMPTY);
    cr_assert(strstr(ad_tape_message(t), "n_out"));
    ad_tape_reset(t);
    ad_tensor *nul = NULL;
    cr_assert_eq(ad_checkpoint(t, ident_fn, NULL, &nul, 1, out, 1, NULL), AD_ERR_NULL);
    cr_assert(strstr(ad_tape_message(t), "input 0 is NULL"));
    ad_tape_free(t);
    cr_assert_eq(ts_live_allocs(), before, "no leak");
}

Test(checkpoint, region_error_at_first_run)
{
    long before = ts_live_allocs();
    mlp m;
    make_mlp(&m);
    m.fail = 1;
    ad_tape *t = ad_tape_new(NULL);
    ad_tensor *x = ad_ones(t, AD_F64, ad_shape2(B, I)), *out[1];
    cr_assert_eq(ad_checkpoint(t, mlp_fn, &m, &x, 1, out, 1, NULL), AD_ERR_ARG);
    cr_assert(strstr(ad_tape_message(t), "checkpoint: the region returned"), "%s", ad_tape_message(t));
    ad_tape_free(t);
    free_mlp(&m);
    cr_assert_eq(ts_live_allocs(), before, "no leak");
}

Test(checkpoint, region_error_only_at_recomputation)
{
    long before = ts_live_allocs();
    mlp m;
    make_mlp(&m);
    ad_tape *t = ad_tape_new(NULL);
    double xd[B * I];
    ts_fill_uniform(xd, B * I, 3, -1, 1);
    ad_tensor *x = ad_variable(t, AD_F64, ad_shape2(B, I), xd), *out[1];
    cr_assert_eq(ad_checkpoint(t, mlp_fn, &m, &x, 1, out, 1, &(ad_checkpoint_options){.label = "seg 3"}), AD_OK);
    m.fail = 1; /* the context changed before backward */
    ad_status st = ad_backward(t, ad_sum(t, out[0], AD_AXIS_ALL, 0), NULL);
    cr_assert_eq(st, AD_ERR_ARG);
    cr_assert(strstr(ad_tape_message(t), "checkpoint: the region returned"), "%s", ad_tape_message(t));
    cr_assert(strstr(ad_tape_message(t), "recomputation"), "%s", ad_tape_message(t));
    ad_tape_free(t);
    free_mlp(&m);
    cr_assert_eq(ts_live_allocs(), before, "no leak");
}

Test(checkpoint, no_grad_runs_the_region_on_the_tape)
{
    long before = ts_live_allocs();
    mlp m;
    make_mlp(&m);
    ad_tape *t = ad_tape_new(NULL);
    ad_tape_set_grad_enabled(t, 0);
    ad_tensor *x = ad_ones(t, AD_F64, ad_shape2(B, I)), *out[1];
    cr_assert_eq(ad_checkpoint(t, mlp_fn, &m, &x, 1, out, 1, NULL), AD_OK);
    cr_assert_eq(m.calls, 1);
    cr_assert_eq(ad_tensor_shape(out[0]).dim[1], I);
    ad_tape_free(t);
    free_mlp(&m);
    cr_assert_eq(ts_live_allocs(), before, "no leak");
}

/* ---- (e) nested regions: a region whose body is itself checkpointed ---- */

static ad_status outer_fn(ad_tape *t, void *ctx, ad_tensor *const *in, int n_in, ad_tensor **out, int n_out)
{
    (void)n_in, (void)n_out;
    ad_tensor *o[1];
    ad_status st = ad_checkpoint(t, mlp_fn, ctx, in, 1, o, 1, NULL);
    if (st != AD_OK) return st;
    out[0] = ad_sigmoid(t, o[0]);
    return ad_tape_status(t);
}

Test(checkpoint, nested_regions_equal_plain)
{
    long before = ts_live_allocs();
    mlp m;
    make_mlp(&m);
    double xd[B * I], y[2][B * I], gx[2][B * I], gw[2][I * H];
    ts_fill_uniform(xd, B * I, 3, -1, 1);
    for (int ck = 0; ck < 2; ck++) {
        ad_param_zero_grad(m.w1);
        ad_param_zero_grad(m.w2);
        ad_tape *t = ad_tape_new(NULL);
        ad_tensor *x = ad_variable(t, AD_F64, ad_shape2(B, I), xd), *o[1];
        if (ck) cr_assert_eq(ad_checkpoint(t, outer_fn, &m, &x, 1, o, 1, NULL), AD_OK, "%s", ad_tape_message(t));
        else {
            cr_assert_eq(mlp_fn(t, &m, &x, 1, o, 1), AD_OK);
            o[0] = ad_sigmoid(t, o[0]);
        }
        memcpy(y[ck], ad_tensor_f64(o[0]), sizeof y[ck]);
        cr_assert_eq(ad_backward(t, ad_sum(t, ad_mul(t, o[0], o[0]), AD_AXIS_ALL, 0), NULL), AD_OK, "%s",
                     ad_tape_message(t));
        memcpy(gx[ck], ad_tensor_grad_f64(x), sizeof gx[ck]);
        memcpy(gw[ck], ad_tensor_f64(ad_param_grad(m.w1)), sizeof gw[ck]);
        ad_tape_free(t);
    }
    cr_assert_eq(memcmp(y[0], y[1], sizeof y[0]), 0, "bit-identical forward");
    expect_close(gx[0], gx[1], B * I, "dL/dx");
    expect_close(gw[0], gw[1], I * H, "dL/dw1");
    free_mlp(&m);
    cr_assert_eq(ts_live_allocs(), before, "no leak");
}

/* ---- anomaly mode: a NaN inside the region names the region's label ---- */

static ad_status log_fn(ad_tape *t, void *ctx, ad_tensor *const *in, int n_in, ad_tensor **out, int n_out)
{
    (void)ctx, (void)n_in, (void)n_out;
    out[0] = ad_log(t, in[0]);
    return ad_tape_status(t);
}

Test(checkpoint, anomaly_names_the_step)
{
    long before = ts_live_allocs();
    ad_tape *t = ad_tape_new(NULL);
    cr_assert_not_null(t);
    ad_tape_set_anomaly(t, 1);
    ad_tensor *x = ad_full(t, AD_F64, ad_shape1(3), -1.0), *out[1];
    cr_assert_neq(ad_checkpoint(t, log_fn, NULL, &x, 1, out, 1, &(ad_checkpoint_options){.label = "seg t=7"}),
                  AD_OK);
    cr_assert(strstr(ad_tape_message(t), "log"), "%s", ad_tape_message(t));
    cr_assert(strstr(ad_tape_message(t), "seg t=7"), "%s", ad_tape_message(t));
    ad_tape_free(t);
    cr_assert_eq(ts_live_allocs(), before, "no leak");
}

/* ---- allocation failure during the recomputation ---- */

Test(checkpoint, out_of_memory_at_recomputation)
{
    long before = ts_live_allocs();
    mlp m;
    make_mlp(&m);
    double xd[B * I];
    ts_fill_uniform(xd, B * I, 3, -1, 1);
    int fired = 0;
    for (long k = 1; k <= 12; k++) {
        ts_counting_alloc c = {0};
        ad_tape_options o = ts_counting_options(&c);
        o.chunk_bytes = 1024; /* small chunks: the recomputation allocates */
        ad_tape *t = ad_tape_new(&o);
        ad_tensor *x = ad_variable(t, AD_F64, ad_shape2(B, I), xd), *out[1];
        cr_assert_eq(ad_checkpoint(t, mlp_fn, &m, &x, 1, out, 1, NULL), AD_OK, "%s", ad_tape_message(t));
        ad_tensor *loss = ad_sum(t, out[0], AD_AXIS_ALL, 0);
        c.fail_at = c.attempts + k;
        ad_status st = ad_backward(t, loss, NULL);
        if (c.attempts >= c.fail_at) {
            /* the outer tape's own gradients fail plainly; inside the region the
             * message says the recomputation failed */
            cr_assert_eq(st, AD_ERR_NOMEM, "k=%ld: %s", k, ad_tape_message(t));
            if (strstr(ad_tape_message(t), "recomputation")) fired++;
        } else {
            cr_assert_eq(st, AD_OK);
        }
        ad_tape_free(t);
        cr_assert_eq(c.calls, c.frees, "k=%ld: every tape allocation freed", k);
    }
    cr_assert(fired > 0, "no allocation failure was injected during the recomputation");
    free_mlp(&m);
    cr_assert_eq(ts_live_allocs(), before, "no leak");
}

/* ---- f64 finite-difference gradcheck through a checkpointed region ---- */

static ad_tensor *ckpt_graph(ad_tape *t, void *ctx)
{
    mlp *m = ctx;
    double xd[B * I];
    ts_fill_uniform(xd, B * I, 3, -1, 1);
    ad_tensor *x = ad_variable(t, AD_F64, ad_shape2(B, I), xd), *o[1];
    if (ad_checkpoint(t, mlp_fn, m, &x, 1, o, 1, NULL) != AD_OK) return NULL;
    return ad_tanh(t, o[0]);
}

Test(checkpoint, gradcheck_through_region)
{
    long before = ts_live_allocs();
    mlp m;
    make_mlp(&m);
    ad_param *ps[2] = {m.w1, m.w2};
    ad_gradcheck_report rep;
    ad_error err;
    ad_status st = ad_gradcheck(ckpt_graph, &m, ps, 2, NULL, &rep, &err);
    if (st == AD_ERR_MISMATCH) ad_gradcheck_print(&rep, stderr);
    cr_assert_eq(st, AD_OK, "%s", err.msg);
    free_mlp(&m);
    cr_assert_eq(ts_live_allocs(), before, "no leak");
}
