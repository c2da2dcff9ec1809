/*
 * unroll_bench.c - the benchmark workloads of bench/README.md (W1 tiny, W2
 * char-rnn, W3/W4/W4g batched Elman/LSTM/GRU, W6 memory), one CSV row per
 * measurement:
 *
 *     workload,variant,dtype,threads,median_us_per_step,tokens_per_s,peak_mib
 *
 * "One step" is forward over the unrolled sequence, backward and the
 * optimizer update. Each measurement warms up, then times single steps until
 * --repeat steps or --seconds have passed, and reports the median.
 * peak_mib is the peak resident set from the first step on minus the
 * resident set before it (VmHWM after writing 5 to /proc/self/clear_refs),
 * so it includes the tape's arena; it is read after the warm-up and the
 * first 4,096 timed steps (or all of them, when fewer), before the array of
 * step times grows.
 *
 *     ./build/bench/unroll_bench --data ../shared/data/tinyshakespeare.txt
 *     ./build/bench/unroll_bench --workload W4 --dtype f64 --repeat 20
 *     ./build-omp/bench/unroll_bench --workload W3 --threads 2   (UNROLL_WITH_OPENMP=ON)
 *     ./build-omp/bench/unroll_bench --workload W3 --threads 2 --shards 2
 *
 * --shards S splits the batch of W3/W4/W4g into S equal shards, each run on
 * its own tape and parameter replica (ad_parallel_run), their gradients summed
 * in shard order: data-parallel training, the same results for any --threads.
 *
 * In a build with UNROLL_WITH_MPI=ON, --mpi splits the global batch of
 * W3/W4/W4g over the ranks of `mpirun -np N` (nn/dist.h: every rank draws
 * the same 32 offsets and takes its share, gradients are averaged over the
 * ranks in rank order); rank 0 prints, tokens/s counts the global batch, and
 * the share of the step spent averaging gradients goes to stderr. The ranks
 * run a fixed number of steps (--repeat, default 20), since a time limit
 * could end them at different steps.
 *
 *     mpirun -np 2 ./build-mpi/bench/unroll_bench --workload W4 --mpi 1 --data ...
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <unroll/nn/nn.h>
#ifdef UNROLL_BENCH_MPI
#include <mpi.h>
#include <unroll/nn/dist.h>
#endif

typedef struct opts {
    const char *workload, *data;
    ad_dtype dtype;
    int threads, repeat, shards, mpi;
    long seq; /* W6: one sequence length instead of 100 and 1000 (0) */
    long proj_block; /* steps per block of the hoisted input projection (0: the whole sequence) */
    double seconds;
    int w6_recompute_only; /* W6: only the rnn-recompute and lstm-recompute rows */
    int fused_sequence; /* each block's steps as one sequence node: 0 none, 1 Elman (default), 2 Elman and GRU */
    int replay; /* W1: record the step once and replay it (ad_tape_replay): 1 (default) or 0 */
} opts;

/* --mpi: the context, and the time spent averaging gradients (µs). */
static struct {
    void *dist; /* nn_dist *, NULL without --mpi */
    int rank, size;
    double average_us;
} mpi = {NULL, 0, 1, 0.0};

/* ---- timing and memory ------------------------------------------------------------------ */

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return 1e6 * (double)ts.tv_sec + 1e-3 * (double)ts.tv_nsec;
}

/* VmRSS or VmHWM from /proc/self/status in KiB; 0 when unavailable. */
static long proc_kib(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = 0;
    size_t n = strlen(key);
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, key, n)) v = strtol(line + n + 1, NULL, 10);
    if (f) fclose(f);
    return v;
}

static void reset_peak(void)
{
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (f) {
        fputs("5", f);
        fclose(f);
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* A workload: `step` runs one training step and returns 0 on success. */
typedef struct workload {
    const char *name, *variant;
    double tokens; /* tokens per step (T * B) */
    int (*step)(void *ctx);
    void *ctx;
} workload;

static int measure(const workload *w, const opts *o)
{
    /* Without --repeat the steps of the whole --seconds are timed (the array
     * grows), as kann_peer does: a capped count would time W1 for only tens
     * of milliseconds, where one slow phase of the machine sets the median.
     * The first block is touched before the memory baseline. */
    size_t limit = o->repeat > 0 ? (size_t)o->repeat : SIZE_MAX, cap = o->repeat > 0 ? limit : 4096;
    double *t = malloc(cap * sizeof *t);
    if (!t) return 1;
    memset(t, 0, cap * sizeof *t);
    /* Memory counts from before the first step, so the tape's arena is in it. */
    long rss0 = proc_kib("VmRSS:");
    reset_peak();
    for (int i = 0; i < 3; i++) /* warm-up: the tape reaches its steady size */
        if (w->step(w->ctx) != 0) {
            free(t);
            return 1;
        }
    double start = now_us();
    size_t n = 0;
    mpi.average_us = 0.0;
    long peak = -1;
    while (n < limit && (n < 3 || mpi.dist || now_us() - start < o->seconds * 1e6)) {
        if (n == cap) { /* the peak of the steps, read before the times' array grows */
            if (peak < 0) peak = proc_kib("VmHWM:");
            double *more = realloc(t, 2 * cap * sizeof *t);
            if (!more) {
                free(t);
                return 1;
            }
            t = more, cap *= 2;
        }
        double t0 = now_us();
        if (w->step(w->ctx) != 0) {
            free(t);
            return 1;
        }
        t[n++] = now_us() - t0;
    }
    if (peak < 0) peak = proc_kib("VmHWM:");
    qsort(t, (size_t)n, sizeof *t, cmp_double);
    double med = n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
    if (mpi.dist && mpi.rank == 0)
        fprintf(stderr, "unroll_bench: %s %s on %d ranks: %.1f %% of the step averaging gradients\n",
                w->name, w->variant, mpi.size, 100.0 * mpi.average_us / (now_us() - start));
    if (mpi.rank == 0)
        printf("%s,%s,%s,%d,%.2f,%.0f,%.1f\n", w->name, w->variant, o->dtype == AD_F32 ? "f32" : "f64",
           o->threads, med, w->tokens / (med * 1e-6), peak > rss0 ? (double)(peak - rss0) / 1024.0 : 0.0);
    fflush(stdout);
    free(t);
    return 0;
}

/* ---- the data ----------------------------------------------------------------------------- */

typedef struct text {
    int64_t *ids;
    size_t n;
    int vocab;
} text;

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

/* Token id = rank of the byte value among the bytes present. A missing file
 * gives a synthetic text of 65 symbols so the bench still runs. */
static int load_text(const char *path, text *tx)
{
    void *buf = NULL;
    size_t size = 0;
    int rank[256], seen[256] = {0};
    if (path && !(buf = read_file(path, &size))) {
        fprintf(stderr, "unroll_bench: cannot read '%s': %s\n", path, strerror(errno));
        return 0;
    }
    if (!buf) {
        size = 1 << 20;
        buf = malloc(size);
        if (!buf) return 0;
        ad_rng r;
        ad_rng_seed(&r, 7, 0);
        for (size_t i = 0; i < size; i++) ((unsigned char *)buf)[i] = (unsigned char)(32 + ad_rng_below(&r, 65));
    }
    const unsigned char *b = buf;
    for (size_t i = 0; i < size; i++) seen[b[i]] = 1;
    tx->vocab = 0;
    for (int c = 0; c < 256; c++) rank[c] = seen[c] ? tx->vocab++ : -1;
    tx->ids = malloc(size * sizeof *tx->ids);
    if (!tx->ids) {
        free(buf);
        return 0;
    }
    for (size_t i = 0; i < size; i++) tx->ids[i] = rank[b[i]];
    tx->n = size;
    free(buf);
    return 1;
}

/* ---- a row-form recurrent layer: x_t W_x + h W_h + b, as the workloads define it ---------- */

typedef struct rnet {
    nn_params *ps;
    ad_param *Wx, *Wh, *b, *bh, *Wy, *by; /* bh: GRU's b_h */
    nn_cell_kind kind;
    int V, H, T, B, gather;
    int proj_block; /* steps per hoisted-projection block, 0 for one block of T (forward_backward) */
    int via_unroll; /* W6 rows: through nn_unroll (forward_backward_unroll) */
    int recompute;  /* with via_unroll: sqrt(T) recomputed segments (-recompute rows) */
    ad_tensor *copy[5]; /* via_unroll store-all: one copy each of W_x, b, W_h, W_y, b_y for every step */
    ad_tape *tape;
    nn_optim *opt;
    ad_rng rng;
    const text *tx;
    size_t pos; /* W2: the pointer into the text */
    double *hcarry; /* W2: the carried state */
    int64_t *ids;
    ad_tensor **all_h; /* the T states of a step, for the output head */
    int fused_sequence; /* as opts: one ad_rnn_sequence (1, 2) / ad_gru_sequence (2) node per block of steps */
    ad_tensor **blocks; /* with fused_sequence: each block's states [steps B, H] */
    int replay;         /* W1: the step's graph is recorded once, then replayed */
    ad_tensor *recorded_loss; /* with replay: the loss of the recorded step */
    int clip_value, bce;
    double loss_scale;      /* 1, or 1/shards for a shard's share of the mean */
    int n_shards;           /* batched workloads: the batch split over replicas */
    int global_B, b0;       /* --mpi: the global batch, and this rank's first column */
    struct rnet *shards;
} rnet;

static int gates(nn_cell_kind k) { return k == NN_CELL_LSTM ? 4 : k == NN_CELL_GRU ? 3 : 1; }

/* X W_x + b for n one-hot rows: a dense [n,V] x [V,GH] product with the bias
 * (one addmm node), or a row gather plus the bias. */
static ad_tensor *input_proj(rnet *r, const int64_t *ids, int64_t n)
{
    ad_tape *t = r->tape;
    ad_tensor *w = ad_use(t, r->Wx);
    if (r->gather) return ad_add(t, ad_gather_rows(t, w, ids, n), ad_use(t, r->b));
    ad_tensor *x = ad_zeros(t, nn_params_dtype(r->ps), ad_shape2(n, r->V));
    if (!x) return NULL;
    for (int64_t b = 0; b < n; b++) {
        if (nn_params_dtype(r->ps) == AD_F32) ad_tensor_f32(x)[b * r->V + ids[b]] = 1.0f;
        else ad_tensor_f64(x)[b * r->V + ids[b]] = 1.0;
    }
    return ad_addmm(t, ad_use(t, r->b), x, w, 0);
}

/* One step from gx = x_t W_x + b (the rows of step t of the hoisted
 * projection) and wh, the tape's one copy of W_h; the gates are the fused
 * cell ops. */
static nn_state step(rnet *r, ad_tensor *gx, ad_tensor *wh, nn_state s)
{
    ad_tape *t = r->tape;
    nn_state n = {NULL, NULL};
    if (r->kind == NN_CELL_GRU) {
        /* b holds b_x of [r z n], bh the b_h of PyTorch's form (b_hn inside
         * r's product): gh = h W_h + b_h is one addmm, which the GRU's
         * backward reads. */
        n.h = ad_gru_cell(t, gx, ad_addmm(t, ad_use(t, r->bh), s.h, wh, 0), s.h);
        return n;
    }
    ad_tensor *gh = ad_matmul(t, s.h, wh, 0);
    if (r->kind == NN_CELL_RNN_TANH) {
        n.h = ad_rnn_cell(t, gx, gh, AD_RNN_TANH);
    } else {
        n.c = ad_lstm_cell_state(t, gx, gh, s.c);
        n.h = ad_lstm_cell_output(t, gx, gh, n.c);
    }
    /* No backward reads h W_h: its buffer goes back to the tape for the
     * next step. */
    if (ad_tape_status(t) == AD_OK) ad_tape_release(t, gh);
    return n;
}

static int rnet_init(rnet *r, nn_cell_kind kind, int V, int H, int T, int B, int n_out, ad_dtype dt)
{
    memset(r, 0, sizeof *r);
    r->kind = kind, r->V = V, r->H = H, r->T = T, r->B = B;
    int64_t G = gates(kind) * (int64_t)H;
    r->ps = nn_params_new(dt, NULL);
    r->Wx = nn_params_add(r->ps, "W_x", ad_shape2(V, G), NULL);
    r->Wh = nn_params_add(r->ps, "W_h", ad_shape2(H, G), NULL);
    r->b = nn_params_add(r->ps, "b", ad_shape1(G), NULL);
    if (kind == NN_CELL_GRU) r->bh = nn_params_add(r->ps, "b_h", ad_shape1(G), NULL);
    r->Wy = nn_params_add(r->ps, "W_y", ad_shape2(H, n_out), NULL);
    r->by = nn_params_add(r->ps, "b_y", ad_shape1(n_out), NULL);
    ad_rng_seed(&r->rng, 1, 0);
    double k = 1.0 / sqrt((double)H);
    nn_params_init_uniform(r->ps, &r->rng, -k, k);
    ad_tape_options to = {0};
    to.copy_grads = AD_COPY_GRADS_NORMS;   /* a training loop that does not read per-copy gradients */
    to.release_grads = 1; /* nor intermediate ones */
    r->tape = ad_tape_new(&to);
    r->ids = malloc((size_t)(T + 1) * (size_t)B * sizeof *r->ids);
    r->all_h = malloc((size_t)T * sizeof *r->all_h);
    r->blocks = malloc((size_t)T * sizeof *r->blocks);
    r->loss_scale = 1.0;
    return r->ps && r->by && r->tape && r->ids && r->all_h && r->blocks;
}

/* Splits r's batch over n replicas (each B/n columns, its own tape). */
static int rnet_shard(rnet *r, int n)
{
    if (n <= 1) return 1;
    if (r->B % n != 0) {
        fprintf(stderr, "unroll_bench: --shards %d does not divide the batch of %d\n", n, r->B);
        return 0;
    }
    r->shards = calloc((size_t)n, sizeof *r->shards);
    if (!r->shards) return 0;
    r->n_shards = n;
    for (int i = 0; i < n; i++) {
        rnet *sh = &r->shards[i];
        *sh = *r;
        sh->n_shards = 0, sh->shards = NULL, sh->opt = NULL, sh->hcarry = NULL;
        sh->B = r->B / n;
        sh->loss_scale = 1.0 / n;
        sh->ps = nn_params_replica(r->ps, NULL);
        ad_tape_options to = {0};
        to.copy_grads = AD_COPY_GRADS_NORMS;
        to.release_grads = 1;
        sh->tape = ad_tape_new(&to);
        sh->ids = malloc((size_t)(r->T + 1) * (size_t)sh->B * sizeof *sh->ids);
        sh->all_h = malloc((size_t)r->T * sizeof *sh->all_h);
        sh->blocks = malloc((size_t)r->T * sizeof *sh->blocks);
        if (!sh->ps || !sh->tape || !sh->ids || !sh->all_h || !sh->blocks) return 0;
        sh->Wx = nn_params_get(sh->ps, "W_x"), sh->Wh = nn_params_get(sh->ps, "W_h");
        sh->b = nn_params_get(sh->ps, "b"), sh->bh = nn_params_get(sh->ps, "b_h");
        sh->Wy = nn_params_get(sh->ps, "W_y"), sh->by = nn_params_get(sh->ps, "b_y");
    }
    return 1;
}

static void rnet_free(rnet *r)
{
    for (int i = 0; r->shards && i < r->n_shards; i++) {
        ad_tape_free(r->shards[i].tape);
        nn_params_free(r->shards[i].ps);
        free(r->shards[i].ids);
        free(r->shards[i].all_h);
        free(r->shards[i].blocks);
    }
    free(r->shards);
    ad_tape_free(r->tape);
    nn_optim_free(r->opt);
    nn_params_free(r->ps);
    free(r->ids);
    free(r->all_h);
    free(r->blocks);
    free(r->hcarry);
}

/* The T states [T B, H], step-major: the fused blocks joined (one block is
 * itself), or the steps' states. */
static ad_tensor *all_states(rnet *r, int fused, int n_blocks)
{
    if (!fused) return ad_concat(r->tape, r->all_h, r->T, 0);
    return n_blocks == 1 ? r->blocks[0] : ad_concat(r->tape, r->blocks, n_blocks, 0);
}

/* Forward over T steps from ids [(T+1) x B] (targets are the next row), backward, update. */
/*
 * Forward over T steps from ids [(T+1) x B] (targets are the next row),
 * backward, update. The input projection of all T*B tokens is one product
 * (or gather) and the output projection and loss one more, so only h W_h
 * and the gates run per step.
 */
static int forward_backward_unroll(rnet *r);

static int forward_backward(rnet *r, const double *targets_bce)
{
    if (r->via_unroll) return forward_backward_unroll(r);
    ad_tape *t = r->tape;
    ad_dtype dt = nn_params_dtype(r->ps);
    if (r->recorded_loss) { /* W1's inputs and targets are the same every step */
        nn_params_zero_grad(r->ps);
        if (ad_tape_replay(t) != AD_OK || ad_backward(t, r->recorded_loss, NULL) != AD_OK) {
            fprintf(stderr, "unroll_bench: %s\n", ad_tape_message(t));
            return 1;
        }
        return 0;
    }
    ad_tape_reset(t);
    nn_params_zero_grad(r->ps);
    ad_shape hs = ad_shape2(r->B, r->H);
    nn_state s = {r->hcarry ? ad_from_f64(t, dt, hs, r->hcarry) : ad_zeros(t, dt, hs),
                  r->kind == NN_CELL_LSTM ? ad_zeros(t, dt, hs) : NULL};
    int64_t TB = (int64_t)r->T * r->B;
    ad_tensor **all_h = r->all_h;
    ad_tensor *wh = ad_use(t, r->Wh); /* one copy serves every step */
    /* x W_x + b for a block of steps' tokens at once (the bias added once
     * per block, not per step), released once the block's steps have read it;
     * in backward each block's gradient is complete, used by its product and
     * released before the next block's is written, so no [T B, G H] buffer
     * exists in a long unroll. One block of T when proj_block is 0 or >= T. */
    int blk = r->proj_block > 0 && r->proj_block < r->T ? r->proj_block : r->T;
    ad_tensor *block_loss = NULL;
    int fused = (r->fused_sequence >= 1 && r->kind == NN_CELL_RNN_TANH) ||
                (r->fused_sequence >= 2 && r->kind == NN_CELL_GRU);
    int n_blocks = 0;
    for (int k0 = 0; k0 < r->T; k0 += blk) {
        int nb = r->T - k0 < blk ? r->T - k0 : blk;
        ad_tensor *gx = input_proj(r, r->ids + (size_t)k0 * r->B, (int64_t)nb * r->B);
        if (fused) { /* the block's states [nb B, H], step-major */
            ad_tensor *seq = r->blocks[n_blocks++] = r->kind == NN_CELL_GRU
                                                         ? ad_gru_sequence(t, gx, s.h, wh, ad_use(t, r->bh), 0)
                                                         : ad_rnn_sequence(t, gx, s.h, wh, AD_RNN_TANH, 0);
            if (blk < r->T && !r->bce) /* the per-step heads below read each step's rows */
                for (int k = k0; k < k0 + nb; k++) all_h[k] = ad_slice(t, seq, 0, (int64_t)(k - k0) * r->B, r->B);
            if (k0 + nb < r->T || r->hcarry) s.h = ad_slice(t, seq, 0, (int64_t)(nb - 1) * r->B, r->B);
        } else {
            for (int k = k0; k < k0 + nb; k++) {
                s = step(r, ad_slice(t, gx, 0, (int64_t)(k - k0) * r->B, r->B), wh, s);
                all_h[k] = s.h;
            }
        }
        if (ad_tape_status(t) == AD_OK) ad_tape_release(t, gx); /* read by the steps only */
        /* Several blocks: the head and the loss (summed) of each of the
         * block's steps too, read from the step's state (no concatenated
         * copy), so the states' gradients are one block's at most. */
        if (blk < r->T && !r->bce)
            for (int k = k0; k < k0 + nb; k++) {
                ad_tensor *zk = ad_addmm(t, ad_use(t, r->by), all_h[k], ad_use(t, r->Wy), 0);
                ad_tensor *lk = ad_cross_entropy(t, zk, r->ids + (size_t)(k + 1) * r->B, r->B, -1, AD_REDUCE_SUM);
                if (ad_tape_status(t) == AD_OK) ad_tape_release(t, zk); /* as below */
                block_loss = block_loss ? ad_add(t, block_loss, lk) : lk;
            }
    }
    ad_tensor *loss;
    if (block_loss) { /* the mean over the T B tokens, as one block's loss is */
        loss = ad_mul_scalar(t, block_loss, (r->B == 1 ? 1.0 : 1.0 / (double)TB) * r->loss_scale);
    } else if (r->bce) {
        ad_tensor *z = ad_addmm(t, ad_use(t, r->by), all_states(r, fused, n_blocks), ad_use(t, r->Wy), 0);
        ad_tensor *d = ad_from_f64(t, dt, ad_shape2(r->T, 1), targets_bce);
        /* the sigmoid output and BCE as the one stable fused op (log1p(exp(-|z|))) */
        loss = ad_bce_with_logits(t, z, d, AD_REDUCE_SUM);
    } else {
        ad_tensor *hcat = all_states(r, fused, n_blocks); /* [T*B, H], step-major */
        ad_tensor *z = ad_addmm(t, ad_use(t, r->by), hcat, ad_use(t, r->Wy), 0);
        loss = ad_cross_entropy(t, z, r->ids + r->B, TB, -1, r->B == 1 ? AD_REDUCE_SUM : AD_REDUCE_MEAN);
        /* The loss's backward reads its saved probabilities, not the logits:
         * their [T B, V] buffer goes back to the tape (reused for their gradient). */
        if (ad_tape_status(t) == AD_OK) ad_tape_release(t, z);
        if (r->loss_scale != 1.0) loss = ad_mul_scalar(t, loss, r->loss_scale);
    }
    if (!loss || ad_backward(t, loss, NULL) != AD_OK) {
        fprintf(stderr, "unroll_bench: %s\n", ad_tape_message(t));
        return 1;
    }
    if (r->hcarry)
        for (size_t i = 0; i < (size_t)r->H; i++) r->hcarry[i] = ad_tensor_get(s.h, i);
    if (r->replay) r->recorded_loss = loss;
    return 0;
}

/* ---- W6: the same net as forward_backward, through nn_unroll ------------------------------ */

enum { C_WX, C_B, C_WH, C_WY, C_BY };

/* Parameter p (copy slot i) on t: the step's own copy, or under store-all
 * the one copy every step shares (fewer nodes; recomputed segments run on
 * scratch tapes, so they take their own). */
static ad_tensor *weight(ad_tape *t, rnet *r, int i, ad_param *p)
{
    return r->copy[i] ? r->copy[i] : ad_use(t, p);
}

/* The rnet as a custom cell: x is [B, 1] holding each row's token id, so the
 * inputs cost T B numbers; the step gathers x W_x + b and runs the fused
 * gates as step() does. */
static ad_status rc_cell_step(ad_tape *t, const nn_cell *cell, ad_tensor *x, const nn_state *prev, nn_state *next)
{
    rnet *r = cell->ctx;
    int64_t ids[256];
    for (int b = 0; b < r->B; b++) ids[b] = (int64_t)ad_tensor_get(x, (size_t)b);
    ad_tensor *rows = ad_gather_rows(t, weight(t, r, C_WX, r->Wx), ids, r->B);
    ad_tensor *gx = ad_add(t, rows, weight(t, r, C_B, r->b));
    ad_tensor *gh = ad_matmul(t, prev->h, weight(t, r, C_WH, r->Wh), 0);
    if (r->kind == NN_CELL_RNN_TANH) {
        next->h = ad_rnn_cell(t, gx, gh, AD_RNN_TANH);
        next->c = NULL;
    } else {
        next->c = ad_lstm_cell_state(t, gx, gh, prev->c);
        next->h = ad_lstm_cell_output(t, gx, gh, next->c);
    }
    /* No backward reads the gathered rows, the pre-activations or h W_h
     * (the fused gates keep what they need): their buffers go back to the
     * tape for the next step, so a store-all unroll keeps only the states. */
    ad_tensor *done[3] = {rows, gx, gh};
    for (int i = 0; i < 3 && ad_tape_status(t) == AD_OK; i++) ad_tape_release(t, done[i]);
    return ad_tape_status(t);
}

/* The head and the cross-entropy (summed over the batch) of one step. */
static ad_tensor *rc_step_loss(ad_tape *t, void *ctx, int k, const nn_state *h)
{
    rnet *r = ctx;
    ad_tensor *z = ad_addmm(t, weight(t, r, C_BY, r->by), h->h, weight(t, r, C_WY, r->Wy), 0);
    ad_tensor *l = ad_cross_entropy(t, z, r->ids + (size_t)(k + 1) * r->B, r->B, -1, AD_REDUCE_SUM);
    if (ad_tape_status(t) == AD_OK) ad_tape_release(t, z);
    return l;
}

/* forward_backward's net and loss (the mean over the T B tokens) through
 * nn_unroll, the head and loss of each step in step_loss (nothing of size
 * T B V but the loss's saved probabilities is kept): store-all, or with
 * r->recompute over ceil(sqrt(T)) recomputed segments, each step's head and
 * loss inside its segment. The inputs are the token ids ([B, 1] per step),
 * so the tape holds no one-hot rows. */
static int forward_backward_unroll(rnet *r)
{
    ad_tape *t = r->tape;
    ad_dtype dt = nn_params_dtype(r->ps);
    ad_tape_reset(t);
    nn_params_zero_grad(r->ps);
    if (r->B > 256) return 1;
    ad_shape hs = ad_shape2(r->B, r->H);
    nn_state h0 = {ad_zeros(t, dt, hs), r->kind == NN_CELL_LSTM ? ad_zeros(t, dt, hs) : NULL};
    ad_param *ps[5] = {r->Wx, r->b, r->Wh, r->Wy, r->by};
    for (int i = 0; i < 5; i++) r->copy[i] = r->recompute ? NULL : ad_use(t, ps[i]);
    nn_cell cell = {.name = "w6", .input_size = 1, .hidden_size = r->H, .has_c = r->kind == NN_CELL_LSTM,
                    .step = rc_cell_step, .ctx = r};
    for (int k = 0; k < r->T; k++) {
        ad_tensor *x = ad_zeros(t, dt, ad_shape2(r->B, 1));
        if (!x) break;
        for (int b = 0; b < r->B; b++) {
            double id = (double)r->ids[(size_t)k * r->B + b];
            if (dt == AD_F32) ad_tensor_f32(x)[b] = (float)id;
            else ad_tensor_f64(x)[b] = id;
        }
        r->all_h[k] = x; /* the inputs, in all_h's array */
    }
    ad_tensor *sum = NULL;
    nn_unroll_options o = {.h0 = &h0, .recompute = r->recompute ? NN_RECOMPUTE_SEGMENTS : NN_RECOMPUTE_OFF,
                           .step_loss = rc_step_loss,
                           .step_loss_ctx = r, .loss = &sum};
    nn_state last;
    ad_tensor *loss = NULL;
    if (ad_tape_status(t) == AD_OK && nn_unroll(t, &cell, r->all_h, r->T, &o, NULL, &last) == AD_OK)
        loss = ad_mul_scalar(t, sum, r->B == 1 ? 1.0 : 1.0 / ((double)r->T * r->B));
    if (!loss || ad_backward(t, loss, NULL) != AD_OK) {
        fprintf(stderr, "unroll_bench: %s\n", ad_tape_message(t));
        return 1;
    }
    return 0;
}

/* Shard i: its columns of the batch's ids, forward and backward on its tape
 * and replica. */
static void shard_task(void *ctx, int i)
{
    rnet *r = ctx, *sh = &r->shards[i];
    for (int k = 0; k <= r->T; k++)
        memcpy(sh->ids + (size_t)k * sh->B, r->ids + (size_t)k * r->B + (size_t)i * sh->B, (size_t)sh->B * sizeof *sh->ids);
    sh->loss_scale = forward_backward(sh, NULL) ? -1.0 : 1.0 / r->n_shards; /* < 0 marks a failure */
}

/* One training step: forward and backward (on every shard, then their
 * gradients summed in shard order), clipping, the optimizer. */
static int train_step(rnet *r, const double *targets_bce)
{
    if (!r->n_shards) {
        if (forward_backward(r, targets_bce)) return 1;
    } else {
        if (ad_parallel_run(r->n_shards, shard_task, r) != AD_OK) return 1;
        nn_params_zero_grad(r->ps);
        for (int i = 0; i < r->n_shards; i++)
            if (r->shards[i].loss_scale < 0 || nn_params_accumulate_grads(r->ps, r->shards[i].ps, NULL) != AD_OK)
                return 1;
    }
#ifdef UNROLL_BENCH_MPI
    if (mpi.dist && r->global_B) {
        double t0 = now_us();
        if (nn_dist_average_grads(mpi.dist, r->ps, NULL) != AD_OK) return 1;
        mpi.average_us += now_us() - t0;
    }
#endif
    if (r->clip_value) nn_clip_grad_value(r->ps, 5.0, NULL);
    return nn_optim_step(r->opt, NULL) != AD_OK;
}

/* ---- the workloads ------------------------------------------------------------------------- */

static const double w1_targets[3] = {1, 0, 1};

static int w1_step(void *ctx) { return train_step(ctx, w1_targets); }

static int w2_step(void *ctx)
{
    rnet *r = ctx;
    if (r->pos + (size_t)r->T + 1 > r->tx->n) { /* wrap: back to the start, state reset */
        r->pos = 0;
        memset(r->hcarry, 0, (size_t)r->H * sizeof *r->hcarry);
    }
    memcpy(r->ids, r->tx->ids + r->pos, (size_t)(r->T + 1) * sizeof *r->ids);
    r->pos += (size_t)r->T;
    return train_step(r, NULL);
}

static int batched_step(void *ctx)
{
    rnet *r = ctx;
    /* With --mpi every rank draws the global batch's offsets and keeps its columns. */
    int global = r->global_B ? r->global_B : r->B;
    /* A text shorter than T + 2 tokens (W6 at long T) is read cyclically
     * from a random offset; a longer one never wraps, as before. */
    size_t n = r->tx->n, span = n > (size_t)r->T + 1 ? n - (size_t)r->T - 1 : n;
    for (int g = 0; g < global; g++) {
        size_t o = (size_t)ad_rng_below(&r->rng, (uint32_t)(span < UINT32_MAX ? span : UINT32_MAX));
        int b = g - r->b0;
        if (b < 0 || b >= r->B) continue;
        for (int k = 0; k <= r->T; k++) r->ids[(size_t)k * r->B + b] = r->tx->ids[(o + (size_t)k) % n];
    }
    return train_step(r, NULL);
}

static int run_one(const char *name, const opts *o, const text *tx)
{
    rnet r;
    int gather_variants = 1, rc = 0;
    nn_optim_config cfg;
    if (!strcmp(name, "W1")) {
        if (!rnet_init(&r, NN_CELL_RNN_TANH, 3, 3, 3, 1, 1, o->dtype)) return 1;
        r.bce = 1;
        r.fused_sequence = o->fused_sequence;
        r.replay = o->replay;
        for (int k = 0; k <= 3; k++) r.ids[k] = k % 3; /* inputs 0, 1, 2 */
        cfg = nn_optim_defaults(NN_OPTIM_SGD);
        cfg.lr = 0.1;
        r.opt = nn_optim_new(r.ps, &cfg, NULL);
        workload w = {"W1", "dense-onehot", 3, w1_step, &r};
        rc = measure(&w, o);
        rnet_free(&r);
        return rc;
    }
    if (!strcmp(name, "W2")) gather_variants = 2;
    else if (strcmp(name, "W3") && strcmp(name, "W4") && strcmp(name, "W4g")) return 2;
    else gather_variants = 2;
    for (int g = 0; g < gather_variants && rc == 0; g++) {
        int w2 = !strcmp(name, "W2");
        nn_cell_kind kind = !strcmp(name, "W4") ? NN_CELL_LSTM : !strcmp(name, "W4g") ? NN_CELL_GRU : NN_CELL_RNN_TANH;
        int H = w2 ? 100 : 256, T = w2 ? 25 : 64, B = w2 ? 1 : 32;
        int ranks = mpi.dist && !w2 ? mpi.size : 1;
        if (B % ranks != 0) {
            if (mpi.rank == 0) fprintf(stderr, "unroll_bench: %d ranks do not divide the batch of %d\n", ranks, B);
            return 1;
        }
        if (!rnet_init(&r, kind, tx->vocab, H, T, B / ranks, tx->vocab, o->dtype)) return 1;
        if (ranks > 1) r.global_B = B, r.b0 = mpi.rank * (B / ranks);
        r.gather = g;
        r.proj_block = (int)o->proj_block;
        r.fused_sequence = o->fused_sequence;
        r.tx = tx;
        if (w2) {
            r.hcarry = calloc((size_t)H, sizeof *r.hcarry);
            r.clip_value = 1;
            cfg = nn_optim_defaults(NN_OPTIM_ADAGRAD);
            cfg.lr = 0.1;
            cfg.eps = 1e-8;
        } else {
            cfg = nn_optim_defaults(NN_OPTIM_ADAM);
            cfg.lr = 2e-3;
        }
        r.opt = nn_optim_new(r.ps, &cfg, NULL);
        int shards = w2 ? 1 : o->shards;
        if (!rnet_shard(&r, shards)) {
            rnet_free(&r);
            return 1;
        }
        char variant[48];
        snprintf(variant, sizeof variant, "%s%s", g ? "gather" : "dense-onehot", shards > 1 ? "-shards" : "");
        if (shards > 1) snprintf(variant + strlen(variant), sizeof variant - strlen(variant), "%d", shards);
        if (ranks > 1 || mpi.dist)
            snprintf(variant + strlen(variant), sizeof variant - strlen(variant), "-mpi%d", ranks);
        workload w = {name, variant, (double)T * B, w2 ? w2_step : batched_step, &r};
        rc = measure(&w, o);
        rnet_free(&r);
    }
    return rc;
}

/* W6: one forward + backward of W3 and W4 at T = 100 and 1000 (or --seq T, any
 * length: a text shorter than T + 2 tokens is read cyclically); peak memory is
 * the metric. */
static int run_w6(const opts *o, const text *tx)
{
    nn_cell_kind kinds[2] = {NN_CELL_RNN_TANH, NN_CELL_LSTM};
    int Ts[2] = {100, 1000}, n_T = 2;
    if (o->seq > 0) Ts[0] = (int)o->seq, n_T = 1;
    /* k = 0, 1: store-all rnn, lstm; k = 2, 3: rnn-recompute, lstm-recompute */
    for (int k = o->w6_recompute_only ? 2 : 0; k < 4; k++)
        for (int i = 0; i < n_T; i++) {
            rnet r;
            if (!rnet_init(&r, kinds[k % 2], tx->vocab, 256, Ts[i], 32, tx->vocab, o->dtype)) {
                fprintf(stderr, "unroll_bench: W6 at T = %d: out of memory\n", Ts[i]);
                rnet_free(&r);
                return 1;
            }
            r.tx = tx;
            r.proj_block = (int)o->proj_block;
            r.via_unroll = 1;
            r.recompute = k >= 2;
            nn_optim_config cfg = nn_optim_defaults(NN_OPTIM_SGD);
            r.opt = nn_optim_new(r.ps, &cfg, NULL);
            char variant[48];
            snprintf(variant, sizeof variant, "%s%s-T%d", k % 2 ? "lstm" : "rnn", k >= 2 ? "-recompute" : "", Ts[i]);
            workload w = {"W6", variant, (double)Ts[i] * 32, batched_step, &r};
            opts one = *o;
            if (one.repeat <= 0 || one.repeat > 3) one.repeat = 3;
            int rc = measure(&w, &one);
            rnet_free(&r);
            if (rc) return rc;
        }
    return 0;
}

static void usage(void)
{
    fprintf(stderr, "usage: unroll_bench [--workload W1|W2|W3|W4|W4g|W6|all] [--dtype f32|f64]\n"
                    "                    [--threads N] [--shards S] [--data PATH] [--repeat N] [--seconds S]\n"
                    "                    [--seq T] (W6 at one length T instead of 100 and 1000)\n"
                    "                    [--recompute-only 1] (W6: only the rnn-recompute and lstm-recompute rows)\n"
                    "                    [--proj-block N] (steps per block of the hoisted input projection;\n"
                    "                    default 64, 0 for the whole sequence at once)\n"
                    "                    [--fused-sequence 0|1|2] (each block's steps as one sequence node:\n"
                    "                    0 none, 1 Elman nets (default), 2 Elman and GRU nets)\n"
                    "                    [--replay 0|1] (W1: record the step once and replay it, 1 (default),\n"
                    "                    or record every step, 0)\n"
                    "                    [--mpi 1] (a build with UNROLL_WITH_MPI=ON, under mpirun)\n");
}

int main(int argc, char **argv)
{
    opts o = {"all", NULL, AD_F32, 1, 0, 1, 0, 0, 64, 2.0, 0, 1, 1};
    for (int i = 1; i < argc; i += 2) { /* --option value pairs */
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) {
            usage();
            return 2;
        }
        if (!strcmp(a, "--workload")) o.workload = v;
        else if (!strcmp(a, "--dtype") && (!strcmp(v, "f32") || !strcmp(v, "f64"))) o.dtype = strcmp(v, "f32") ? AD_F64 : AD_F32;
        else if (!strcmp(a, "--threads")) o.threads = atoi(v);
        else if (!strcmp(a, "--shards") && atoi(v) >= 1) o.shards = atoi(v);
        else if (!strcmp(a, "--data")) o.data = v;
        else if (!strcmp(a, "--repeat")) o.repeat = atoi(v);
        else if (!strcmp(a, "--seconds")) o.seconds = atof(v);
        else if (!strcmp(a, "--mpi")) o.mpi = atoi(v);
        else if (!strcmp(a, "--fused-sequence") && atoi(v) >= 0 && atoi(v) <= 2) o.fused_sequence = atoi(v);
        else if (!strcmp(a, "--replay") && (!strcmp(v, "0") || !strcmp(v, "1"))) o.replay = atoi(v);
        else if (!strcmp(a, "--recompute-only")) {
            o.w6_recompute_only = atoi(v) != 0;
        } else if (!strcmp(a, "--proj-block")) {
            char *end;
            o.proj_block = strtol(v, &end, 10);
            if (*end || o.proj_block < 0 || o.proj_block > 10000000) {
                fprintf(stderr, "unroll_bench: --proj-block '%s': steps per block must be an integer in 0..10000000\n", v);
                return 2;
            }
        }
        else if (!strcmp(a, "--seq")) {
            char *end;
            o.seq = strtol(v, &end, 10);
            if (*end || o.seq < 1 || o.seq > 10000000) {
                fprintf(stderr, "unroll_bench: --seq '%s': the W6 sequence length must be an integer in 1..10000000\n", v);
                return 2;
            }
        }
        else {
            usage();
            return 2;
        }
    }
    if (ad_set_num_threads(o.threads) != AD_OK) {
        fprintf(stderr, "unroll_bench: --threads must be at least 1\n");
        return 2;
    }
    if (ad_get_num_threads() != o.threads) /* the CSV reports the count actually used */
        fprintf(stderr, "unroll_bench: this build runs 1 thread (configure with UNROLL_WITH_OPENMP=ON for more)\n");
    o.threads = ad_get_num_threads();
    const char *known[] = {"all", "W1", "W2", "W3", "W4", "W4g", "W6"};
    int valid = 0;
    for (int i = 0; i < 7; i++) valid |= !strcmp(o.workload, known[i]);
    if (!valid) {
        fprintf(stderr, "unroll_bench: unknown workload '%s'\n", o.workload);
        usage();
        return 2;
    }
    if (o.mpi) {
#ifdef UNROLL_BENCH_MPI
        MPI_Init(&argc, &argv);
        ad_error err;
        mpi.dist = nn_dist_new(NULL, &err);
        if (!mpi.dist) {
            fprintf(stderr, "unroll_bench: %s\n", err.msg);
            MPI_Finalize();
            return 1;
        }
        mpi.rank = nn_dist_rank(mpi.dist), mpi.size = nn_dist_size(mpi.dist);
        if (o.repeat <= 0) o.repeat = 20;
#else
        fprintf(stderr, "unroll_bench: --mpi needs a build with UNROLL_WITH_MPI=ON\n");
        return 2;
#endif
    }
    text tx;
    if (!load_text(o.data, &tx)) return 1;
    if (!o.data) fprintf(stderr, "unroll_bench: no --data, using a synthetic text of 65 symbols\n");
    if (mpi.rank == 0) printf("workload,variant,dtype,threads,median_us_per_step,tokens_per_s,peak_mib\n");
    const char *all[5] = {"W1", "W2", "W3", "W4", "W4g"};
    int rc = 0;
    for (int i = 0; i < 5 && rc == 0; i++)
        if (!strcmp(o.workload, "all") || !strcmp(o.workload, all[i])) rc = run_one(all[i], &o, &tx);
    if (rc == 0 && (!strcmp(o.workload, "all") || !strcmp(o.workload, "W6"))) rc = run_w6(&o, &tx);
    free(tx.ids);
#ifdef UNROLL_BENCH_MPI
    if (mpi.dist) {
        nn_dist_free(mpi.dist);
        MPI_Finalize();
    }
#endif
    return rc;
}
