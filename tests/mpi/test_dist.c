/*
 * test_dist.c - the data-parallel context (nn/dist.h), run under
 * `mpiexec -n 2`. A plain program (Criterion forks, which MPI forbids): each
 * check prints one line on rank 0 and the program ends with
 * "N passed, N failed"; every rank must agree that a check passed.
 *
 * The model is a small LSTM (I = 3, H = 4) with a linear head, in f64, on a
 * global batch of B = 4 rows of T = 6 steps whose inputs depend only on the
 * global row and step; the loss is the mean squared error of the head at
 * the last step against fixed targets. Each rank takes its shard of rows.
 *
 * Usage: test_dist WORK_DIR (for the checkpoint of the resume check)
 */
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unroll/nn/dist.h>
#include <unroll/nn/nn.h>

enum { I = 3, H = 4, O = 2, T = 6, B = 4, STEPS = 20 };

static int rank_, passed, failed;

typedef struct model {
    nn_params *ps;
    nn_cell lstm;
    nn_linear head;
    nn_optim *opt;
} model;

static void model_new(model *m, ad_dtype dt, uint64_t seed, int hidden)
{
    ad_error err;
    m->ps = nn_params_new(dt, &err);
    if (!m->ps || nn_cell_create(&m->lstm, m->ps, "lstm", &(nn_cell_options){.kind = NN_CELL_LSTM, .input_size = I, .hidden_size = hidden}, &err) ||
        nn_linear_create(&m->head, m->ps, "head", hidden, O, 1, &err)) {
        fprintf(stderr, "test_dist: %s\n", err.msg);
        MPI_Abort(MPI_COMM_WORLD, 2); /* the test's own set-up, not the library's */
    }
    ad_rng rng;
    ad_rng_seed(&rng, seed, 0);
    nn_cell_init_pytorch(&m->lstm, &rng);
    nn_linear_init_pytorch(&m->head, &rng);
    nn_optim_config cfg = nn_optim_defaults(NN_OPTIM_ADAM);
    cfg.lr = 0.01;
    m->opt = nn_optim_new(m->ps, &cfg, &err);
}

static void model_free(model *m)
{
    nn_optim_free(m->opt);
    nn_params_free(m->ps);
}

/* Gradients of the mean loss over global rows [b0, b0 + nb) into m->ps. */
static ad_status shard_grads(model *m, int64_t b0, int64_t nb)
{
    ad_dtype dt = nn_params_dtype(m->ps);
    nn_params_zero_grad(m->ps);
    ad_tape *t = ad_tape_new(NULL);
    ad_tensor *xs[T];
    double x[B * I], y[B * O];
    for (int s = 0; s < T; s++) {
        for (int64_t b = 0; b < nb; b++)
            for (int i = 0; i < I; i++) x[b * I + i] = sin(0.3 * (double)(b0 + b) + 0.7 * s + 1.1 * i);
        xs[s] = ad_from_f64(t, dt, ad_shape2(nb, I), x);
    }
    for (int64_t b = 0; b < nb; b++)
        for (int o = 0; o < O; o++) y[b * O + o] = cos(0.5 * (double)(b0 + b) + o);
    nn_state last;
    ad_status st = nn_unroll(t, &m->lstm, xs, T, NULL, NULL, &last);
    ad_tensor *loss = ad_mse(t, nn_linear_forward(t, &m->head, last.h), ad_from_f64(t, dt, ad_shape2(nb, O), y),
                             AD_REDUCE_MEAN);
    if (st == AD_OK) st = ad_backward(t, loss, NULL);
    ad_tape_free(t);
    return st;
}

/* `steps` Adam steps, over d's ranks (d NULL: this process alone, whole batch). */
static ad_status train(nn_dist *d, model *m, int steps)
{
    ad_error err;
    int64_t b0 = 0, nb = B;
    if (d && nn_dist_shard(d, B, &b0, &nb, &err) != AD_OK) return err.code;
    for (int k = 0; k < steps; k++) {
        ad_status st = shard_grads(m, b0, nb);
        if (d) st = nn_dist_agree(d, st, &err);
        if (st == AD_OK && d) st = nn_dist_average_grads(d, m->ps, &err);
        if (st == AD_OK) st = nn_optim_step(m->opt, &err);
        if (st != AD_OK) return st;
    }
    return AD_OK;
}

static double max_rel_diff(nn_params *a, nn_params *b, int grads)
{
    size_t n = 0, nb = 0;
    double *x = grads ? nn_params_grads(a, &n) : nn_params_values(a, &n);
    double *y = grads ? nn_params_grads(b, &nb) : nn_params_values(b, &nb);
    if (n != nb) return INFINITY;
    double worst = 0, scale = 0;
    for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(y[i]));
    for (size_t i = 0; i < n; i++) worst = fmax(worst, fabs(x[i] - y[i]) / fmax(scale, 1e-300));
    return worst;
}

/* One check: passes only when it passes on every rank. */
static void check(int ok, const char *what, double figure)
{
    int all = 0;
    MPI_Allreduce(&ok, &all, 1, MPI_INT, MPI_LAND, MPI_COMM_WORLD);
    if (all) passed++;
    else failed++;
    if (rank_ == 0) printf("%s %s (%.3g)\n", all ? "ok  " : "FAIL", what, figure);
    if (!ok) fprintf(stderr, "rank %d: FAIL %s (%.3g)\n", rank_, what, figure);
}

/* Whether every rank holds the same bytes. */
static int same_everywhere(const void *data, size_t bytes)
{
    unsigned long h = 5381;
    for (size_t i = 0; i < bytes; i++) h = h * 33 + ((const unsigned char *)data)[i];
    unsigned long lo = h, hi = h;
    MPI_Allreduce(&h, &lo, 1, MPI_UNSIGNED_LONG, MPI_MIN, MPI_COMM_WORLD);
    MPI_Allreduce(&h, &hi, 1, MPI_UNSIGNED_LONG, MPI_MAX, MPI_COMM_WORLD);
    return lo == hi;
}

static void test_check_and_broadcast(nn_dist *d)
{
    ad_error err;
    model m, ref, other;
    model_new(&m, AD_F64, 1 + (uint64_t)rank_, H); /* every rank its own initial weights */
    model_new(&ref, AD_F64, 1, H);
    check(nn_dist_check_params(d, m.ps, &err) == AD_OK, "parameter sets match", 0);
    check(nn_dist_broadcast_params(d, m.ps, &err) == AD_OK, "broadcast returns AD_OK", 0);
    check(max_rel_diff(m.ps, ref.ps, 0) == 0, "broadcast gives rank 0's weights, bit for bit",
          max_rel_diff(m.ps, ref.ps, 0));

    /* optimizer state: rank 0 has taken 3 steps, the others none */
    if (rank_ == 0) train(NULL, &ref, 3);
    model_free(&m);
    model_new(&m, AD_F64, 1, H);
    if (rank_ == 0) train(NULL, &m, 3);
    ad_status st = nn_dist_broadcast_optim(d, m.opt, &err);
    size_t n1 = 0, n2 = 0;
    int c1 = 0, c2 = 0;
    nn_optim_state(m.opt, 0, &n1, &c1);
    nn_optim_state(ref.opt, 0, &n2, &c2);
    int same = st == AD_OK && nn_optim_steps(m.opt) == 3 && n1 == n2 && c1 == c2 && c1 == 2;
    if (rank_ == 0) {
        for (int k = 0; k < c1 && same; k++)
            same = memcmp(nn_optim_state(m.opt, k, NULL, NULL), nn_optim_state(ref.opt, k, NULL, NULL),
                          n1 * sizeof(double)) == 0;
    }
    for (int k = 0; k < c1 && same; k++)
        same = same_everywhere(nn_optim_state(m.opt, k, NULL, NULL), n1 * sizeof(double));
    check(same, "optimizer state (step count, Adam moments) broadcast from rank 0", 0);

    /* a rank whose set differs: every rank gets AD_ERR_MISMATCH naming it */
    model_new(&other, AD_F64, 1, rank_ == 1 ? H + 1 : H);
    st = nn_dist_check_params(d, other.ps, &err);
    check(st == AD_ERR_MISMATCH && strstr(err.msg, "rank 1"), "a different parameter set on rank 1 is refused on every rank", 0);
    st = nn_dist_broadcast_optim(d, other.opt, &err);
    check(st == AD_ERR_MISMATCH, "a different optimizer on rank 1 is refused on every rank", 0);
    model_free(&other);
    model_free(&m);
    model_free(&ref);
}

static void test_average_equals_joint_batch(nn_dist *d)
{
    ad_error err;
    model m, whole;
    model_new(&m, AD_F64, 3, H);
    model_new(&whole, AD_F64, 3, H);
    int64_t b0, nb;
    ad_status st = nn_dist_shard(d, B, &b0, &nb, &err);
    if (st == AD_OK) st = shard_grads(&m, b0, nb);
    if (st == AD_OK) st = nn_dist_average_grads(d, m.ps, &err);
    shard_grads(&whole, 0, B);
    double diff = max_rel_diff(m.ps, whole.ps, 1);
    check(st == AD_OK && diff <= 1e-12, "averaged shard gradients equal the whole batch's (f64, <= 1e-12)", diff);
    size_t n;
    double *g = nn_params_grads(m.ps, &n);
    check(same_everywhere(g, n * sizeof *g), "every rank holds the same averaged gradients, bit for bit", 0);
    model_free(&m);
    model_free(&whole);

    /* f32 sets average the same way */
    model_new(&m, AD_F32, 3, H);
    st = shard_grads(&m, b0, nb);
    if (st == AD_OK) st = nn_dist_average_grads(d, m.ps, &err);
    float *gf = nn_params_grads(m.ps, &n);
    check(st == AD_OK && same_everywhere(gf, n * sizeof *gf), "f32 gradients average to the same bits on every rank", 0);
    model_free(&m);

    double v[2] = {1.0 + rank_, 10.0 * rank_};
    st = nn_dist_average(d, v, 2, &err);
    double want0 = 0, want1 = 0;
    for (int r = 0; r < nn_dist_size(d); r++) want0 += 1.0 + r, want1 += 10.0 * r;
    want0 /= nn_dist_size(d), want1 /= nn_dist_size(d);
    check(st == AD_OK && v[0] == want0 && v[1] == want1, "losses average over ranks", v[0]);
}

static void test_training(nn_dist *d, const char *work)
{
    ad_error err;
    model a, b, one;
    model_new(&a, AD_F64, 5, H);
    model_new(&b, AD_F64, 5, H);
    model_new(&one, AD_F64, 5, H);
    ad_status sa = train(d, &a, STEPS), sb = train(d, &b, STEPS), s1 = train(NULL, &one, STEPS);
    double diff = max_rel_diff(a.ps, one.ps, 0);
    check(sa == AD_OK && s1 == AD_OK && diff <= 1e-10,
          "20 Adam steps on 2 ranks give the weights of 1 rank on the whole batch (f64, <= 1e-10)", diff);
    check(sb == AD_OK && max_rel_diff(a.ps, b.ps, 0) == 0, "a repeated run gives bit-identical weights", 0);
    size_t n;
    double *w = nn_params_values(a.ps, &n);
    check(same_everywhere(w, n * sizeof *w), "every rank ends with the same weights, bit for bit", 0);

    /* stop after 10 steps at 2 ranks, rank 0 saves; resume at 2 ranks and at 1 rank */
    char path[1024];
    snprintf(path, sizeof path, "%s/dist.ckpt", work);
    model half, again, alone;
    model_new(&half, AD_F64, 5, H);
    ad_status st = train(d, &half, STEPS / 2);
    if (nn_dist_rank(d) == 0 && st == AD_OK) st = nn_checkpoint_save(path, half.ps, half.opt, NULL, &err);
    st = nn_dist_agree(d, st, &err);
    check(st == AD_OK, "rank 0 saves a checkpoint that every rank then sees", 0);
    model_new(&again, AD_F64, 99, H);
    model_new(&alone, AD_F64, 99, H);
    ad_status l1 = nn_checkpoint_load(path, again.ps, again.opt, NULL, &err);
    ad_status l2 = nn_checkpoint_load(path, alone.ps, alone.opt, NULL, &err);
    st = train(d, &again, STEPS / 2);
    check(l1 == AD_OK && st == AD_OK && max_rel_diff(again.ps, a.ps, 0) == 0,
          "resumed at 2 ranks, the run continues bit for bit", max_rel_diff(again.ps, a.ps, 0));
    MPI_Comm self;
    MPI_Comm_split(MPI_COMM_WORLD, rank_, 0, &self); /* each rank alone: a 1-rank job */
    nn_dist *d1 = nn_dist_new(&(nn_dist_options){.comm = &self}, &err);
    st = d1 ? train(d1, &alone, STEPS / 2) : err.code;
    diff = max_rel_diff(alone.ps, a.ps, 0);
    check(l2 == AD_OK && st == AD_OK && nn_dist_size(d1) == 1 && diff <= 1e-10,
          "a 2-rank checkpoint resumed at 1 rank continues the same trajectory (<= 1e-10)", diff);
    nn_dist_free(d1);
    MPI_Comm_free(&self);
    model_free(&half), model_free(&again), model_free(&alone);
    model_free(&a), model_free(&b), model_free(&one);
}

static void test_failures_and_bad_inputs(nn_dist *d)
{
    ad_error err;
    ad_status local = AD_OK;
    ad_error_set(&err, AD_OK, NULL);
    if (rank_ == 1) local = ad_error_set(&err, AD_ERR_IO, "cannot read shard-1.txt");
    ad_status st = nn_dist_agree(d, local, &err);
    check(st == AD_ERR_IO && strstr(err.msg, "rank 1") && strstr(err.msg, "shard-1.txt"),
          "a failure on rank 1 reaches every rank with its status and message", 0);
    check(nn_dist_agree(d, AD_OK, &err) == AD_OK, "the next step agrees again", 0);

    int64_t b0, nb;
    st = nn_dist_shard(d, 5, &b0, &nb, &err);
    check(st == AD_ERR_ARG && strstr(err.msg, "5") && strstr(err.msg, "2 ranks"),
          "a global batch not divisible by the ranks is refused, naming both", 0);
    check(nn_dist_shard(d, 0, &b0, &nb, &err) == AD_ERR_ARG, "an empty global batch is refused", 0);
    st = nn_dist_shard(d, 6, &b0, &nb, &err);
    check(st == AD_OK && nb == 3 && b0 == 3 * rank_, "shards are consecutive rows in rank order", (double)nb);
    check(nn_dist_shard(d, 4, NULL, &nb, &err) == AD_ERR_NULL, "shard: NULL begin", 0);
    check(nn_dist_check_params(d, NULL, &err) == AD_ERR_NULL, "check_params: NULL set", 0);
    check(nn_dist_broadcast_params(NULL, NULL, &err) == AD_ERR_NULL, "broadcast_params: NULL", 0);
    check(nn_dist_broadcast_optim(d, NULL, &err) == AD_ERR_NULL, "broadcast_optim: NULL", 0);
    check(nn_dist_average_grads(d, NULL, &err) == AD_ERR_NULL, "average_grads: NULL", 0);
    check(nn_dist_average(d, NULL, 3, &err) == AD_ERR_NULL, "average: NULL values", 0);
    check(nn_dist_agree(NULL, AD_OK, &err) == AD_ERR_NULL, "agree: NULL context", 0);
    check(nn_dist_rank(NULL) == 0 && nn_dist_size(NULL) == 1, "rank and size of NULL", 0);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    const char *work = argc > 1 ? argv[1] : ".";
    if (rank_ == 0) mkdir(work, 0777);
    MPI_Barrier(MPI_COMM_WORLD);
    ad_error err;
    nn_dist *d = nn_dist_new(NULL, &err);
    if (!d) {
        fprintf(stderr, "test_dist: %s\n", err.msg);
        MPI_Finalize();
        return 1;
    }
    check(nn_dist_size(d) == 2, "runs on 2 ranks", nn_dist_size(d));
    if (nn_dist_size(d) == 2) {
        test_check_and_broadcast(d);
        test_average_equals_joint_batch(d);
        test_training(d, work);
        test_failures_and_bad_inputs(d);
    }
    nn_dist_free(d);
    if (rank_ == 0) printf("%d passed, %d failed\n", passed, failed);
    MPI_Finalize();
    return failed ? 1 : 0;
}
