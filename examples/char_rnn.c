/*
 * char_rnn.c - a character-level language model: embedding, stacked
 * Elman/LSTM/GRU layers and a linear head, trained with truncated BPTT on a
 * text file, with validation loss, checkpoints, a loss CSV (and a plot when
 * gnuplot is installed) and sampled text at the end; --grad-flow PATH draws
 * the gradient flow of the last update.
 *
 *     ./build/char_rnn                          # 300 KB of Shakespeare, about a minute
 *     ./build/char_rnn --data ../shared/data/tinyshakespeare.txt --cell gru --steps 5000
 *     ./build/char_rnn --help
 *
 * In a build with UNROLL_WITH_MPI=ON it also trains data-parallel under
 * mpirun (docs/distributed.md): --batch is the global batch, split over the
 * ranks, and rank 0 alone prints, writes the CSV and the checkpoints.
 *     mpirun -np 2 ./build-mpi/char_rnn --batch 16 --dtype f64
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <unroll/nn/nn.h>
#ifdef UNROLL_CHAR_RNN_MPI
#include <unroll/nn/dist.h>
#endif

#ifndef UNROLL_EXAMPLE_DATA
#define UNROLL_EXAMPLE_DATA "examples/data"
#endif

enum { RESUME_NO, RESUME_IF_PRESENT, RESUME_REQUIRED };

typedef struct options {
    const char *data, *cell, *optim, *checkpoint, *csv, *grad_flow, *dtype;
    long hidden, layers, seq, batch, every, sample, steps, seed;
    double lr, clip, temperature;
    int resume;
} options;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: char_rnn [options]\n"
            "  --data PATH        text file to train on (default: the shipped Shakespeare excerpt)\n"
            "  --cell rnn|lstm|gru  recurrent cell (default lstm)\n"
            "  --dtype f32|f64    parameter and activation precision (default f32)\n"
            "  --hidden N         hidden size, 1..4096 (default 128)\n"
            "  --layers N         stacked layers, 1..8 (default 1)\n"
            "  --seq N            truncation length k of TBPTT(k, k), 1..10000 (default 32)\n"
            "  --batch N          parallel streams, 1..4096 (default 16); under mpirun the global\n"
            "                     batch, a multiple of the rank count, split over the ranks\n"
            "  --steps N          optimizer updates in all, counting those before a resume (default 2500)\n"
            "  --optim NAME       sgd|adagrad|rmsprop|adam|adamw (default adam)\n"
            "  --lr X             learning rate, 0..10 (default 0.005)\n"
            "  --clip X           clip gradients to global norm X, 0 = off (default 5)\n"
            "  --seed N           random seed (default 1)\n"
            "  --checkpoint PATH  save a checkpoint there every --every updates and at the end\n"
            "  --every N          validation (and checkpoint) interval in updates (default 250)\n"
            "  --resume           start from --checkpoint when it exists, else start fresh (with a note)\n"
            "  --resume=required  start from --checkpoint, and fail when it does not exist\n"
            "  --sample N         characters to sample at the end (default 300)\n"
            "  --temperature X    sampling temperature, 0.001..100 (default 0.8)\n"
            "  --csv PATH         one row per logged update: step,train_loss,val_loss,lr,tokens_per_s;\n"
            "                     train_loss is that update's own loss (the console shows a smoothed one),\n"
            "                     val_loss is filled every --every updates; a resumed run continues the file\n"
            "  --grad-flow PATH   a PNG of the last update's gradient flow in the first layer (gnuplot)\n"
            "  --help             this text\n"
            "Losses are mean cross-entropies in nats per character.\n");
}

/* ---- options: one table row per option, so every message can name the valid values ---- */

typedef enum { OPT_PATH, OPT_CHOICE, OPT_WHOLE, OPT_REAL } opt_kind;

typedef struct opt_def {
    const char *name;
    opt_kind kind;
    double lo, hi;       /* OPT_WHOLE, OPT_REAL */
    const char *choices; /* OPT_CHOICE: "a|b|c" */
    size_t offset;       /* of the field in options */
} opt_def;

#define OPT(name, kind, lo, hi, choices, field) {name, kind, lo, hi, choices, offsetof(options, field)}
static const opt_def opt_defs[] = {
    OPT("--data", OPT_PATH, 0, 0, NULL, data),
    OPT("--cell", OPT_CHOICE, 0, 0, "rnn|lstm|gru", cell),
    OPT("--optim", OPT_CHOICE, 0, 0, "sgd|adagrad|rmsprop|adam|adamw", optim),
    OPT("--dtype", OPT_CHOICE, 0, 0, "f32|f64", dtype),
    OPT("--checkpoint", OPT_PATH, 0, 0, NULL, checkpoint),
    OPT("--csv", OPT_PATH, 0, 0, NULL, csv),
    OPT("--grad-flow", OPT_PATH, 0, 0, NULL, grad_flow),
    OPT("--hidden", OPT_WHOLE, 1, 4096, NULL, hidden),
    OPT("--layers", OPT_WHOLE, 1, 8, NULL, layers),
    OPT("--seq", OPT_WHOLE, 1, 10000, NULL, seq),
    OPT("--batch", OPT_WHOLE, 1, 4096, NULL, batch), /* the step functions keep ids on the stack */
    OPT("--steps", OPT_WHOLE, 0, 1e9, NULL, steps),
    OPT("--every", OPT_WHOLE, 1, 1e9, NULL, every),
    OPT("--sample", OPT_WHOLE, 0, 1e6, NULL, sample),
    OPT("--seed", OPT_WHOLE, 0, 2147483647, NULL, seed),
    OPT("--lr", OPT_REAL, 0, 10, NULL, lr),
    OPT("--clip", OPT_REAL, 0, 1e9, NULL, clip),
    OPT("--temperature", OPT_REAL, 1e-3, 100, NULL, temperature),
};

/* What a valid value of `d` looks like, for messages. */
static const char *expected(const opt_def *d, char *buf, size_t size)
{
    if (d->kind == OPT_PATH) snprintf(buf, size, "a path");
    else if (d->kind == OPT_CHOICE) snprintf(buf, size, "one of %s", d->choices);
    else if (d->kind == OPT_WHOLE) snprintf(buf, size, "a whole number in [%.0f, %.0f]", d->lo, d->hi);
    else snprintf(buf, size, "a number in [%g, %g]", d->lo, d->hi);
    return buf;
}

static int is_choice(const char *v, const char *choices)
{
    size_t n = strlen(v);
    for (const char *c = choices; n && *c;) {
        const char *bar = strchr(c, '|');
        size_t len = bar ? (size_t)(bar - c) : strlen(c);
        if (len == n && !strncmp(c, v, n)) return 1;
        c += len + (bar != NULL);
    }
    return 0;
}

/* Stores v into the field of `d`; 0 when v is not a valid value. */
static int set_option(options *o, const opt_def *d, const char *v)
{
    char *field = (char *)o + d->offset, *end;
    errno = 0;
    if (d->kind == OPT_PATH || d->kind == OPT_CHOICE) {
        if (*v == '\0' || (d->kind == OPT_CHOICE && !is_choice(v, d->choices))) return 0;
        memcpy(field, &v, sizeof v);
    } else if (d->kind == OPT_WHOLE) {
        long n = strtol(v, &end, 10);
        if (*v == '\0' || *end != '\0' || errno || n < (long)d->lo || n > (long)d->hi) return 0;
        memcpy(field, &n, sizeof n);
    } else {
        double x = strtod(v, &end);
        if (*v == '\0' || *end != '\0' || !(x >= d->lo && x <= d->hi)) return 0;
        memcpy(field, &x, sizeof x);
    }
    return 1;
}

/* Returns 0 on success, 1 for --help, -1 with a one-line message printed on bad arguments. */
static int parse_args(int argc, char **argv, options *o)
{
    *o = (options){.data = UNROLL_EXAMPLE_DATA "/shakespeare.txt", .cell = "lstm", .optim = "adam", .dtype = "f32",
                   .hidden = 128, .layers = 1, .seq = 32, .batch = 16, .every = 250, .sample = 300,
                   .steps = 2500, .seed = 1, .lr = 0.005, .clip = 5.0, .temperature = 0.8};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help")) return 1;
        if (!strcmp(a, "--resume")) { o->resume = RESUME_IF_PRESENT; continue; }
        if (!strcmp(a, "--resume=required")) { o->resume = RESUME_REQUIRED; continue; }
        if (!strncmp(a, "--resume=", 9)) {
            fprintf(stderr, "char_rnn: '%s': expected --resume or --resume=required\n", a);
            return -1;
        }
        const opt_def *d = NULL;
        for (size_t k = 0; k < sizeof opt_defs / sizeof *opt_defs; k++)
            if (!strcmp(a, opt_defs[k].name)) d = &opt_defs[k];
        if (!d) {
            fprintf(stderr, "char_rnn: unknown option '%s' (see --help)\n", a);
            return -1;
        }
        char want[80];
        if (i + 1 >= argc) {
            fprintf(stderr, "char_rnn: %s needs a value: %s\n", a, expected(d, want, sizeof want));
            return -1;
        }
        if (!set_option(o, d, argv[++i])) {
            fprintf(stderr, "char_rnn: %s '%s': expected %s\n", a, argv[i], expected(d, want, sizeof want));
            return -1;
        }
    }
    if (o->resume && !o->checkpoint) {
        fprintf(stderr, "char_rnn: --resume needs --checkpoint PATH\n");
        return -1;
    }
    return 0;
}

/* ---- the text -------------------------------------------------------------------------- */

typedef struct corpus {
    int64_t *ids; /* the text as vocabulary indices */
    size_t n, n_train;
    unsigned char chars[256]; /* index -> byte */
    int vocab;
} corpus;

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

static int load_corpus(const char *path, corpus *c)
{
    size_t size;
    void *buf = read_file(path, &size);
    if (!buf) {
        fprintf(stderr, "char_rnn: cannot read '%s': %s\n", path, strerror(errno));
        return 0;
    }
    int index[256], seen[256] = {0};
    const unsigned char *b = buf;
    for (size_t i = 0; i < size; i++) seen[b[i]] = 1;
    c->vocab = 0;
    for (int ch = 0; ch < 256; ch++) {
        index[ch] = seen[ch] ? c->vocab : -1;
        if (seen[ch]) c->chars[c->vocab++] = (unsigned char)ch;
    }
    c->ids = malloc((size ? size : 1) * sizeof *c->ids);
    if (!c->ids) {
        free(buf);
        fprintf(stderr, "char_rnn: out of memory\n");
        return 0;
    }
    for (size_t i = 0; i < size; i++) c->ids[i] = index[b[i]];
    free(buf);
    c->n = size;
    c->n_train = size - size / 10; /* the last tenth is held out */
    return 1;
}

/* ---- the model: a stack of cells seen as one cell ------------------------------------------ */

typedef struct model {
    nn_params *ps;
    ad_dtype dtype; /* of the parameters and of every activation */
    nn_embedding emb;
    nn_cell layers[8];
    int n_layers, hidden;
    nn_cell stack; /* state = the layers' states side by side: [B, layers * hidden] */
    nn_linear head;
} model;

/* One step of every layer; layer l's state is columns [l H, (l+1) H) of the stacked state. */
static ad_status stack_step(ad_tape *t, const nn_cell *cell, ad_tensor *x, const nn_state *prev,
                            nn_state *next)
{
    const model *m = cell->ctx;
    ad_tensor *hs[8], *cs[8];
    for (int l = 0; l < m->n_layers; l++) {
        nn_state p = {ad_slice(t, prev->h, 1, (int64_t)l * m->hidden, m->hidden),
                      prev->c ? ad_slice(t, prev->c, 1, (int64_t)l * m->hidden, m->hidden) : NULL}, n;
        if (nn_cell_step(t, &m->layers[l], x, &p, &n) != AD_OK) return ad_tape_status(t);
        hs[l] = n.h, cs[l] = n.c, x = n.h;
    }
    next->h = m->n_layers == 1 ? hs[0] : ad_concat(t, hs, m->n_layers, 1);
    next->c = !cell->has_c ? NULL : m->n_layers == 1 ? cs[0] : ad_concat(t, cs, m->n_layers, 1);
    return ad_tape_status(t);
}

static int build_model(model *m, const options *o, int vocab, ad_rng *rng)
{
    ad_error err;
    nn_cell_kind kind = !strcmp(o->cell, "rnn") ? NN_CELL_RNN_TANH
                        : !strcmp(o->cell, "gru") ? NN_CELL_GRU : NN_CELL_LSTM;
    int hidden = (int)o->hidden, emb = hidden < 64 ? hidden : 64;
    memset(m, 0, sizeof *m);
    m->dtype = !strcmp(o->dtype, "f64") ? AD_F64 : AD_F32;
    m->ps = nn_params_new(m->dtype, &err);
    m->n_layers = (int)o->layers;
    m->hidden = hidden;
    int ok = m->ps && nn_embedding_create(&m->emb, m->ps, "emb", vocab, emb, &err) == AD_OK;
    for (int l = 0; ok && l < o->layers; l++)
        ok = nn_cell_create(&m->layers[l], m->ps, o->cell, &(nn_cell_options){.kind = kind, .layer = l, .input_size = l ? hidden : emb, .hidden_size = hidden}, &err) == AD_OK;
    ok = ok && nn_linear_create(&m->head, m->ps, "head", hidden, vocab, 1, &err) == AD_OK;
    if (!ok) {
        fprintf(stderr, "char_rnn: %s\n", err.msg);
        return 0;
    }
    nn_embedding_init_pytorch(&m->emb, rng);
    for (int l = 0; l < o->layers; l++) nn_cell_init_pytorch(&m->layers[l], rng);
    nn_linear_init_pytorch(&m->head, rng);
    m->stack = (nn_cell){.kind = NN_CELL_CUSTOM, .input_size = emb,
                         .hidden_size = m->n_layers * hidden, .has_c = kind == NN_CELL_LSTM,
                         .step = stack_step, .n_w = 1, .ctx = m};
    snprintf(m->stack.name, sizeof m->stack.name, "%s", o->cell);
    m->stack.w[0] = m->layers[0].w[0];
    return 1;
}

/* The top layer's state: the last `hidden` columns. */
static ad_tensor *top(ad_tape *t, const model *m, ad_tensor *h)
{
    return ad_slice(t, h, 1, (int64_t)(m->n_layers - 1) * m->hidden, m->hidden);
}

/* ---- training ------------------------------------------------------------------------------ */

enum { VAL_STREAMS = 16, VAL_CHUNK = 64 };

typedef struct trainer {
    const options *o;
    corpus *c;
    model *m;
    nn_optim *opt;
    ad_rng rng;
    ad_tape *val_tape;   /* validation's own tape, gradients off */
    size_t stream_len;   /* the training text is cut into `batch` streams of this length */
    size_t offset;       /* where in the streams the current pass starts (after a resume) */
    int64_t pass_steps;  /* steps of the current nn_tbptt_run call */
    long step;           /* optimizer updates so far, counting those before a resume */
    long updates;        /* optimizer updates in this run */
    double loss_avg;     /* smoothed loss per character over this run's updates */
    double val_loss;     /* the latest validation loss, NAN before the first */
    double t0, val_secs, last_draw;
    long tokens;         /* characters trained on in this run */
    FILE *csv;
    int tty;
    ad_tape *tape;       /* --grad-flow: the training tape and the states of the current segment */
    nn_state *flow_h;
    void *dist;          /* nn_dist * in an MPI build, else NULL */
    int rank, ranks;     /* this process's rank and the rank count (0 and 1 without MPI) */
    int64_t b0, nb;      /* this rank's streams [b0, b0 + nb) of the global batch */
    int agreed;          /* a failure was already agreed on by every rank */
    double *carry;       /* [2, batch, W]: h then c of every stream after the latest segment (this
                          * rank's rows; all rows after carry_gather); W = the stacked state width */
    const double *h0, *c0; /* the first pass's initial state after a resume (this rank's rows), or NULL */
} trainer;

/* ---- the ranks: without MPI, one rank and every call a no-op ------------------------------- */

/* Joins the ranks of mpirun; 0 (message printed) when MPI fails. */
static int dist_start(trainer *tr)
{
    tr->ranks = 1;
#ifdef UNROLL_CHAR_RNN_MPI
    ad_error err;
    if (!(tr->dist = nn_dist_new(&(nn_dist_options){.init = 1}, &err))) {
        fprintf(stderr, "char_rnn: %s\n", err.msg);
        return 0;
    }
    tr->rank = nn_dist_rank(tr->dist), tr->ranks = nn_dist_size(tr->dist);
#endif
    return 1;
}

static void dist_end(trainer *tr)
{
#ifdef UNROLL_CHAR_RNN_MPI
    nn_dist_free(tr->dist);
#endif
    tr->dist = NULL;
}

/* Every rank passes its status and gets the lowest failing rank's (AD_OK when none failed). */
static ad_status dist_agree(trainer *tr, ad_status st, ad_error *err)
{
#ifdef UNROLL_CHAR_RNN_MPI
    if (tr->dist) {
        st = nn_dist_agree(tr->dist, st, err);
        if (st != AD_OK) tr->agreed = 1;
    }
#else
    (void)tr, (void)err;
#endif
    return st;
}

/* Rank 0's weights and optimizer state on every rank, after a check that the models match. */
static ad_status dist_sync(trainer *tr, ad_error *err)
{
#ifdef UNROLL_CHAR_RNN_MPI
    if (tr->dist) {
        ad_status st = nn_dist_check_params(tr->dist, tr->m->ps, err);
        if (st == AD_OK) st = nn_dist_broadcast_params(tr->dist, tr->m->ps, err);
        if (st == AD_OK) st = nn_dist_broadcast_optim(tr->dist, tr->opt, err);
        return st;
    }
#else
    (void)tr, (void)err;
#endif
    return AD_OK;
}

/* Every stream's carried state in tr->carry on every rank: each rank's rows
 * with the others zero, summed in rank order (exact: one term is not zero)
 * by nn_dist_average and scaled back by the rank count (exact for 2^k ranks,
 * within one rounding otherwise). Collective. */
static ad_status carry_gather(trainer *tr, ad_error *err)
{
#ifdef UNROLL_CHAR_RNN_MPI
    if (tr->dist && tr->ranks > 1) {
        size_t W = (size_t)tr->m->stack.hidden_size, B = (size_t)tr->o->batch, n = 2 * B * W;
        for (size_t half = 0; half < 2; half++)
            for (size_t b = 0; b < B; b++)
                if ((int64_t)b < tr->b0 || (int64_t)b >= tr->b0 + tr->nb)
                    memset(tr->carry + (half * B + b) * W, 0, W * sizeof *tr->carry);
        ad_status st = nn_dist_average(tr->dist, tr->carry, n, err);
        for (size_t i = 0; st == AD_OK && i < n; i++) tr->carry[i] *= (double)tr->ranks;
        return st;
    }
#else
    (void)tr, (void)err;
#endif
    return AD_OK;
}

/* The gradients and the loss averaged over the ranks (each rank's loss is the mean over its streams). */
static ad_status dist_average(trainer *tr, double *loss, ad_error *err)
{
#ifdef UNROLL_CHAR_RNN_MPI
    if (tr->dist) {
        ad_status st = nn_dist_average_grads(tr->dist, tr->m->ps, err);
        return st == AD_OK ? nn_dist_average(tr->dist, loss, 1, err) : st;
    }
#else
    (void)tr, (void)loss, (void)err;
#endif
    return AD_OK;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Seconds spent training in this run, validation excluded, so chars/s measures training. */
static double train_secs(const trainer *tr)
{
    return fmax(now() - tr->t0 - tr->val_secs, 1e-9);
}

/* Steps in the segment holding pass step s: k, or fewer in a pass's last segment. */
static int64_t segment_len(const trainer *tr, int64_t s)
{
    int64_t k = tr->o->seq, start = s / k * k;
    return tr->pass_steps - start < k ? tr->pass_steps - start : k;
}

static ad_tensor *input_fn(ad_tape *t, int64_t step, void *vc)
{
    trainer *tr = vc;
    int64_t ids[4096];
    for (int64_t b = 0; b < tr->nb; b++)
        ids[b] = tr->c->ids[(size_t)(tr->b0 + b) * tr->stream_len + tr->offset + (size_t)step];
    return nn_embedding_forward(t, &tr->m->emb, ids, tr->nb);
}

static ad_tensor *loss_fn(ad_tape *t, const nn_state *h, int64_t step, void *vc)
{
    trainer *tr = vc;
    int64_t tg[4096];
    if (tr->flow_h) tr->tape = t, tr->flow_h[step % tr->o->seq] = *h;
    for (int64_t b = 0; b < tr->nb; b++)
        tg[b] = tr->c->ids[(size_t)(tr->b0 + b) * tr->stream_len + tr->offset + (size_t)step + 1];
    if ((step + 1) % tr->o->seq == 0 || step + 1 == tr->pass_steps) { /* the state the next segment starts from */
        size_t W = (size_t)tr->m->stack.hidden_size, B = (size_t)tr->o->batch, row0 = (size_t)tr->b0 * W;
        for (size_t i = 0; i < (size_t)tr->nb * W; i++) {
            tr->carry[row0 + i] = ad_tensor_get(h->h, i);
            if (h->c) tr->carry[B * W + row0 + i] = ad_tensor_get(h->c, i);
        }
    }
    ad_tensor *logits = nn_linear_forward(t, &tr->m->head, top(t, tr->m, h->h));
    /* mean over the batch and the steps of a segment, so a pass's shorter last
     * segment reports (and steps with) a loss per character like the others */
    return ad_mul_scalar(t, ad_cross_entropy(t, logits, tg, tr->nb, -1, AD_REDUCE_MEAN),
                         1.0 / (double)segment_len(tr, step));
}

/* Sums the cross-entropy of `steps` steps of `streams` held-out streams of `len`
 * characters from position s, the state carried in hv/cv; 0 on a tape error. */
static int validate_chunk(trainer *tr, size_t s, size_t steps, int streams, size_t len, void *hv,
                          void *cv, double *total)
{
    ad_tape *t = tr->val_tape;
    const corpus *c = tr->c;
    int64_t H = tr->m->stack.hidden_size;
    ad_tape_reset(t);
    ad_dtype dt = tr->m->dtype;
    nn_state h = {ad_from_data(t, dt, ad_shape2(streams, H), hv),
                  tr->m->stack.has_c ? ad_from_data(t, dt, ad_shape2(streams, H), cv) : NULL};
    for (size_t k = s; k < s + steps; k++) {
        int64_t ids[VAL_STREAMS], tg[VAL_STREAMS];
        for (int b = 0; b < streams; b++) {
            ids[b] = c->ids[c->n_train + (size_t)b * len + k];
            tg[b] = c->ids[c->n_train + (size_t)b * len + k + 1];
        }
        nn_state next;
        if (nn_cell_step(t, &tr->m->stack, nn_embedding_forward(t, &tr->m->emb, ids, streams), &h, &next) != AD_OK)
            return 0;
        h = next;
        ad_tensor *l = ad_cross_entropy(t, nn_linear_forward(t, &tr->m->head, top(t, tr->m, h.h)), tg,
                                        streams, -1, AD_REDUCE_SUM);
        if (!l) return 0;
        *total += ad_tensor_item(l);
    }
    size_t bytes = (size_t)streams * (size_t)H * ad_dtype_size(dt);
    memcpy(hv, ad_tensor_data(h.h), bytes);
    if (h.c) memcpy(cv, ad_tensor_data(h.c), bytes);
    return 1;
}

/* Mean cross-entropy per character on the held-out text, read as up to
 * VAL_STREAMS parallel streams (a batch is far faster than one long stream)
 * with the state carried along each; NAN when there is too little text. */
static double validate(trainer *tr)
{
    double t0 = now();
    size_t n = tr->c->n - tr->c->n_train;
    int streams = n / 512 < 1 ? 1 : n / 512 > VAL_STREAMS ? VAL_STREAMS : (int)(n / 512);
    size_t len = n / (size_t)streams, H = (size_t)tr->m->stack.hidden_size, es = ad_dtype_size(tr->m->dtype);
    if (len < 2 || !tr->val_tape) return NAN;
    void *hv = calloc((size_t)streams * H, es), *cv = calloc((size_t)streams * H, es);
    double total = 0;
    int ok = hv && cv;
    for (size_t s = 0; ok && s + 1 < len; s += VAL_CHUNK)
        ok = validate_chunk(tr, s, s + VAL_CHUNK < len - 1 ? VAL_CHUNK : len - 1 - s, streams, len, hv, cv,
                            &total);
    if (!ok) fprintf(stderr, "\nchar_rnn: validation failed: %s\n", hv && cv ? ad_tape_message(tr->val_tape) : "out of memory");
    free(hv), free(cv);
    tr->val_secs += now() - t0;
    return ok ? total / (double)((len - 1) * (size_t)streams) : NAN;
}

/* A loss for the console: 4 decimals, or "n/a" when there is none. */
static const char *loss_str(double v, char buf[16])
{
    if (isnan(v)) snprintf(buf, 16, "n/a");
    else snprintf(buf, 16, "%.4f", v);
    return buf;
}

static void progress(trainer *tr, int force)
{
    double t = now();
    if (!force && t - tr->last_draw < 0.1) return; /* at most 10 updates a second */
    tr->last_draw = t;
    /* this run's rate and updates, so a resumed run's ETA and chars/s are its own */
    double secs = train_secs(tr), rate = (double)tr->tokens / secs;
    double eta = tr->updates ? secs / (double)tr->updates * (double)(tr->o->steps - tr->step) : 0;
    int width = 30, done = tr->o->steps ? (int)(width * tr->step / tr->o->steps) : width;
    fprintf(stderr, "\r[%.*s%*s] step %ld/%ld  smoothed train loss %.4f  %.0f chars/s  ETA %.0fs ", done,
            "##############################", width - done, "", tr->step, tr->o->steps, tr->loss_avg,
            rate, eta);
    fflush(stderr);
}

/* Where the streams' carried state of checkpoint `path` goes. */
static void carry_path(const char *path, char *out, size_t size)
{
    snprintf(out, size, "%s.carry.safetensors", path);
}

/* Rank 0, after carry_gather: the carried state (PATH.carry.safetensors, with
 * its step, written before the checkpoint), then the checkpoint, each atomically. */
static ad_status save_checkpoint(trainer *tr)
{
    ad_error err;
    size_t W = (size_t)tr->m->stack.hidden_size, B = (size_t)tr->o->batch;
    char path[4096], step[32];
    carry_path(tr->o->checkpoint, path, sizeof path);
    snprintf(step, sizeof step, "%ld", tr->step);
    const char *meta[] = {"step", step};
    ad_tensor *h = ad_tensor_new(AD_F64, ad_shape2((int64_t)B, (int64_t)W), &err), *c = NULL;
    if (h && tr->m->stack.has_c) c = ad_tensor_new(AD_F64, ad_shape2((int64_t)B, (int64_t)W), &err);
    ad_status st = h && (c || !tr->m->stack.has_c) ? AD_OK : err.code;
    if (st == AD_OK) {
        memcpy(ad_tensor_f64(h), tr->carry, B * W * sizeof *tr->carry);
        if (c) memcpy(ad_tensor_f64(c), tr->carry + B * W, B * W * sizeof *tr->carry);
        nn_safetensors_entry e[] = {{.name = "h", .tensor = h}, {.name = "c", .tensor = c}};
        st = nn_safetensors_save(path, e, c ? 2 : 1, meta, 1, &err);
    }
    ad_tensor_free(h);
    ad_tensor_free(c);
    if (st != AD_OK) {
        fprintf(stderr, "\nchar_rnn: %s\n", err.msg);
        return st;
    }
    nn_train_state ts = {.step = tr->step, .rng = tr->rng, .has_rng = 1};
    if (nn_checkpoint_save(tr->o->checkpoint, tr->m->ps, tr->opt, &ts, &err) != AD_OK) {
        fprintf(stderr, "\nchar_rnn: %s\n", err.msg);
        return err.code;
    }
    return AD_OK;
}

/* The console line and the CSV row of an update; validated says whether val_loss is new. */
static void report(trainer *tr, double loss, int logged, int validated)
{
    char a[16], v[16];
    if (tr->tty) {
        if (validated) /* a line of its own above the bar, padded over the bar's width */
            fprintf(stderr, "\rstep %6ld  smoothed train loss %s  validation loss %s%40s\n", tr->step,
                    loss_str(tr->loss_avg, a), loss_str(tr->val_loss, v), "");
        progress(tr, validated || tr->step == tr->o->steps);
    } else if (logged) {
        printf("step %6ld  smoothed train loss %s", tr->step, loss_str(tr->loss_avg, a));
        if (validated) printf("  validation loss %s", loss_str(tr->val_loss, v));
        putchar('\n');
        fflush(stdout);
    }
    if (!tr->csv || !logged) return;
    fprintf(tr->csv, "%ld,%.6f,", tr->step, loss);
    if (validated && !isnan(tr->val_loss)) fprintf(tr->csv, "%.6f", tr->val_loss);
    fprintf(tr->csv, ",%.6g,%.0f\n", nn_optim_config_of(tr->opt)->lr, (double)tr->tokens / train_secs(tr));
}

/* --grad-flow: the last update's report for the first layer (h is the stacked
 * state of all layers), drawn as a PNG; a note when it cannot be. */
static void draw_grad_flow(trainer *tr, int64_t segment)
{
    int T = (int)segment_len(tr, segment * tr->o->seq);
    char title[200];
    snprintf(title, sizeof title, "char_rnn: gradient flow in layer 0 (%s, %ld layers) at update %ld", tr->o->cell,
             tr->o->layers, tr->step + 1);
    nn_grad_flow f;
    ad_error err;
    ad_status st = nn_grad_flow_collect(tr->tape, &tr->m->layers[0], tr->flow_h, T, NULL, &f, &err);
    if (st == AD_OK) {
        st = nn_grad_flow_write_png(&f, tr->o->grad_flow, &(nn_grad_flow_plot_options){.title = title}, &err);
        nn_grad_flow_free(&f);
    }
    if (tr->tty) fputc('\n', stderr);
    if (st == AD_OK) printf("gradient flow: %s\n", tr->o->grad_flow);
    else printf("gradient flow: picture skipped: %s\n", err.msg);
}

/* After each segment: clip, update, log, validate, checkpoint; stop when enough updates are done. */
static ad_status update_fn(int64_t segment, double loss, void *vc)
{
    trainer *tr = vc;
    ad_error err;
    if (tr->flow_h && tr->rank == 0 && tr->step + 1 == tr->o->steps) draw_grad_flow(tr, segment);
    /* every rank reaches this point or has failed: agree before the collectives of the average */
    ad_status st = dist_agree(tr, AD_OK, &err);
    if (st == AD_OK) st = dist_average(tr, &loss, &err);
    if (st != AD_OK) {
        fprintf(stderr, "\nchar_rnn: %s\n", err.msg);
        tr->agreed = 1;
        return st;
    }
    if (tr->o->clip > 0 && nn_clip_grad_norm(tr->m->ps, tr->o->clip, NULL, &err) != AD_OK) {
        fprintf(stderr, "\nchar_rnn: step %ld skipped: %s\n", tr->step, err.msg);
        return AD_OK;
    }
    if (nn_optim_step(tr->opt, &err) != AD_OK) {
        fprintf(stderr, "\nchar_rnn: step %ld skipped: %s\n", tr->step, err.msg);
        return AD_OK;
    }
    tr->step++;
    tr->updates++;
    tr->tokens += tr->o->batch * (long)segment_len(tr, segment * tr->o->seq);
    /* an exponential average started at this run's first update: a resumed
     * run has no earlier average to continue, and starting from 0 would
     * understate the loss for the next hundred updates */
    tr->loss_avg = tr->updates == 1 ? loss : 0.95 * tr->loss_avg + 0.05 * loss;
    long log_every = tr->o->steps >= 20 ? tr->o->steps / 20 : 1;
    int last = tr->step == tr->o->steps, validated = last || tr->step % tr->o->every == 0;
    if (validated && tr->rank == 0) tr->val_loss = validate(tr); /* the same on every rank */
    report(tr, loss, validated || last || tr->step % log_every == 0, validated);
    /* the last update's checkpoint is written once, after the loop */
    if (tr->o->checkpoint && !last && tr->step % tr->o->every == 0) {
        if ((st = carry_gather(tr, &err)) != AD_OK) {
            fprintf(stderr, "\nchar_rnn: %s\n", err.msg);
            tr->agreed = 1; /* a collective: every rank failed it */
            return st;
        }
        if (tr->rank == 0 && save_checkpoint(tr) != AD_OK) return AD_ERR_IO;
    }
    return tr->step >= tr->o->steps ? AD_ERR_STATE : AD_OK; /* AD_ERR_STATE here means: done */
}

/* ---- sampling -------------------------------------------------------------------------------- */

static void sample_text(trainer *tr, ad_tape *t, int count)
{
    const model *m = tr->m;
    int64_t id = tr->c->ids[0];
    int was = ad_tape_set_grad_enabled(t, 0);
    size_t H = (size_t)m->stack.hidden_size, es = ad_dtype_size(m->dtype);
    void *hv = calloc(H, es), *cv = calloc(H, es);
    printf("--- sample (temperature %.2f) ---\n%c", tr->o->temperature, tr->c->chars[id]);
    for (int i = 0; i < count && hv && cv; i++) {
        ad_tape_reset(t);
        nn_state h = {ad_from_data(t, m->dtype, ad_shape2(1, (int64_t)H), hv),
                      m->stack.has_c ? ad_from_data(t, m->dtype, ad_shape2(1, (int64_t)H), cv) : NULL}, next;
        if (nn_cell_step(t, &m->stack, nn_embedding_forward(t, &m->emb, &id, 1), &h, &next) != AD_OK) break;
        ad_tensor *logits = nn_linear_forward(t, &m->head, top(t, m, next.h));
        ad_tensor *prob = ad_softmax(t, ad_mul_scalar(t, logits, 1.0 / tr->o->temperature), 1);
        if (!prob) break;
        double u = ad_rng_uniform(&tr->rng), acc = 0;
        id = tr->c->vocab - 1;
        for (int v = 0; v < tr->c->vocab; v++) {
            acc += ad_tensor_get(prob, (size_t)v);
            if (u < acc) {
                id = v;
                break;
            }
        }
        putchar(tr->c->chars[id]);
        memcpy(hv, ad_tensor_data(next.h), H * es);
        if (next.c) memcpy(cv, ad_tensor_data(next.c), H * es);
    }
    printf("\n--- end of sample ---\n");
    free(hv), free(cv);
    ad_tape_set_grad_enabled(t, was);
}

/* ---- the loss CSV and its plot ---------------------------------------------------------------- */

static const char csv_header[] = "step,train_loss,val_loss,lr,tokens_per_s\n";

/* Opens the CSV for writing from its header. A resumed run keeps the rows of
 * the earlier run up to the checkpoint's step and drops later ones (written
 * after the checkpoint, they would be repeated), so the file stays one
 * continuous run. */
static FILE *open_csv(const char *path, int resumed, long resume_step)
{
    void *old = NULL;
    size_t size = 0;
    if (resumed && access(path, F_OK) == 0 && !(old = read_file(path, &size)))
        fprintf(stderr, "char_rnn: cannot read the earlier rows of %s, starting it anew: %s\n", path,
                strerror(errno));
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "char_rnn: cannot write '%s': %s\n", path, strerror(errno));
        free(old);
        return NULL;
    }
    fputs(csv_header, f);
    size_t hl = sizeof csv_header - 1;
    const char *p = old, *end = p ? p + size : NULL;
    if (p && (size < hl || memcmp(p, csv_header, hl) != 0)) {
        fprintf(stderr, "char_rnn: %s is not a loss CSV of this program, starting it anew\n", path);
        p = end;
    }
    for (p = p ? p + hl : p; p && p < end;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl) break; /* a row cut short by a crash */
        char *after;
        long step = strtol(p, &after, 10);
        if (after != p && *after == ',' && step >= 1 && step <= resume_step) fwrite(p, 1, (size_t)(nl + 1 - p), f);
        p = nl + 1;
    }
    free(old);
    return f;
}

/* Plots the CSV to CSV.png with gnuplot (nn_gnuplot_run: no shell, so no
 * path needs shell quoting); skipped with a note when gnuplot is not installed. */
static void plot(const char *csv)
{
    char q[2048], script[5000];
    if (nn_gnuplot_quote(csv, q, sizeof q) != AD_OK) {
        printf("loss curve: the path is too long for gnuplot, plot skipped\n");
        return;
    }
    snprintf(script, sizeof script,
             "set terminal png size 800,500; set output '%s.png'; set datafile separator ',';"
             " set key autotitle columnhead; set xlabel 'step'; set ylabel 'loss per character';"
             " plot '%s' using 1:2 with lines title 'train loss (raw)',"
             " '' using 1:3 with linespoints title 'validation loss'",
             q, q);
    ad_error err;
    ad_status st = nn_gnuplot_run(script, &err);
    if (st == AD_ERR_NOT_FOUND)
        printf("loss curve: gnuplot is not installed, plot skipped (the data is in %s)\n", csv);
    else if (st != AD_OK)
        printf("loss curve: plot skipped: %s\n", err.msg);
    else
        printf("loss curve: %s.png\n", csv);
}

/* ---- the program ------------------------------------------------------------------------------ */

static nn_optim_kind optim_kind(const char *name)
{
    if (!strcmp(name, "sgd")) return NN_OPTIM_SGD;
    if (!strcmp(name, "adagrad")) return NN_OPTIM_ADAGRAD;
    if (!strcmp(name, "rmsprop")) return NN_OPTIM_RMSPROP;
    if (!strcmp(name, "adamw")) return NN_OPTIM_ADAMW;
    return NN_OPTIM_ADAM; /* parse_args let nothing else through */
}

/* The carried state of the resumed checkpoint's step into tr->carry (every
 * row), so the first pass continues each stream from where it stopped; when
 * the file is missing or is not of that step and batch, a note says the
 * streams restart from zero. */
static void load_carry(trainer *tr)
{
    char path[4096];
    carry_path(tr->o->checkpoint, path, sizeof path);
    size_t W = (size_t)tr->m->stack.hidden_size, B = (size_t)tr->o->batch;
    ad_error err;
    nn_safetensors *f = nn_safetensors_open(path, &err);
    const char *step = f ? nn_safetensors_metadata(f, "step") : NULL;
    long ih = f ? nn_safetensors_find(f, "h") : -1, ic = f ? nn_safetensors_find(f, "c") : -1;
    char want[32];
    snprintf(want, sizeof want, "%ld", tr->step);
    ad_tensor *h = NULL, *c = NULL;
    int ok = step && !strcmp(step, want) && ih >= 0 && (ic >= 0) == tr->m->stack.has_c &&
             (h = nn_safetensors_tensor(f, (size_t)ih, AD_F64, &err)) != NULL &&
             (ic < 0 || (c = nn_safetensors_tensor(f, (size_t)ic, AD_F64, &err)) != NULL) &&
             ad_tensor_numel(h) == B * W && (!c || ad_tensor_numel(c) == B * W);
    if (ok) {
        memcpy(tr->carry, ad_tensor_f64(h), B * W * sizeof *tr->carry);
        if (c) memcpy(tr->carry + B * W, ad_tensor_f64(c), B * W * sizeof *tr->carry);
        tr->h0 = tr->carry + (size_t)tr->b0 * W;
        tr->c0 = c ? tr->carry + B * W + (size_t)tr->b0 * W : NULL;
    } else {
        printf("note: no carried state of step %ld and batch %zu in %s: the streams restart from zero\n",
               tr->step, B, path);
    }
    ad_tensor_free(h);
    ad_tensor_free(c);
    nn_safetensors_free(f);
}

/* Loads the checkpoint when asked to; 0 (message printed) when the run cannot go on. */
static int resume(trainer *tr, int *resumed)
{
    const options *o = tr->o;
    ad_error err;
    *resumed = 0;
    if (!o->resume) return 1;
    if (access(o->checkpoint, F_OK) != 0) {
        if (o->resume == RESUME_REQUIRED) {
            fprintf(stderr, "char_rnn: --resume=required: no checkpoint at '%s'\n", o->checkpoint);
            return 0;
        }
        printf("no checkpoint at %s yet: starting fresh (--resume=required would stop here)\n", o->checkpoint);
        return 1;
    }
    nn_train_state ts;
    if (nn_checkpoint_load(o->checkpoint, tr->m->ps, tr->opt, &ts, &err) != AD_OK) {
        fprintf(stderr, "char_rnn: cannot resume from '%s': %s\n", o->checkpoint, err.msg);
        return 0;
    }
    tr->step = (long)ts.step;
    if (ts.has_rng) tr->rng = ts.rng;
    *resumed = 1;
    printf("resumed from %s at step %ld\n", o->checkpoint, tr->step);
    load_carry(tr);
    return 1;
}

/* Everything train() needs, in order; 0 (message printed) on failure. */
static int setup(trainer *tr, const options *o)
{
    ad_error err;
    corpus *c = tr->c;
    if (!load_corpus(o->data, c)) return 0;
    size_t need = (size_t)o->batch * ((size_t)o->seq + 1);
    if (c->n_train < need) {
        fprintf(stderr, "char_rnn: '%s' has %zu training characters; --batch %ld --seq %ld need at least %zu\n",
                o->data, c->n_train, o->batch, o->seq, need);
        return 0;
    }
    ad_rng_seed(&tr->rng, (unsigned long long)o->seed, 0);
    if (!build_model(tr->m, o, c->vocab, &tr->rng)) return 0;
    nn_optim_config cfg = nn_optim_defaults(optim_kind(o->optim));
    cfg.lr = o->lr;
    tr->opt = nn_optim_new(tr->m->ps, &cfg, &err);
    if (!tr->opt) {
        fprintf(stderr, "char_rnn: %s\n", err.msg);
        return 0;
    }
    tr->carry = calloc(2 * (size_t)o->batch * (size_t)tr->m->stack.hidden_size, sizeof *tr->carry);
    if (!tr->carry) {
        fprintf(stderr, "char_rnn: out of memory\n");
        return 0;
    }
    int resumed;
    if (!resume(tr, &resumed)) return 0;
    if (o->csv && tr->rank == 0 && !(tr->csv = open_csv(o->csv, resumed, tr->step))) return 0;
    tr->val_tape = ad_tape_new(NULL);
    if (tr->val_tape) ad_tape_set_grad_enabled(tr->val_tape, 0);
    size_t n_params;
    nn_params_values(tr->m->ps, &n_params);
    printf("corpus %s: %zu characters (%zu for training, %zu held out for validation), vocabulary %d\n",
           o->data, c->n, c->n_train, c->n - c->n_train, c->vocab);
    printf("model: %ld x %s(%ld), %zu parameters (%s); TBPTT(%ld, %ld), batch %ld, %s lr %g\n", o->layers,
           o->cell, o->hidden, n_params, o->dtype, o->seq, o->seq, o->batch, o->optim, o->lr);
    if (tr->ranks > 1)
        printf("data-parallel: %d ranks, %lld streams each\n", tr->ranks, (long long)tr->nb);
    return tr->val_tape != NULL || (fprintf(stderr, "char_rnn: out of memory\n"), 0);
}

/* Trains up to --steps updates in passes over the streams; a resumed run
 * starts its first pass at the segment where the earlier run stopped. */
static ad_status train(trainer *tr, ad_tape *t, ad_error *err)
{
    const options *o = tr->o;
    int64_t per_pass = ((int64_t)tr->stream_len - 1 + o->seq - 1) / o->seq; /* updates in a pass */
    tr->offset = (size_t)(tr->step % per_pass * o->seq);
    tr->t0 = now();
    ad_status st = AD_OK;
    while (tr->step < o->steps && st == AD_OK) {
        tr->pass_steps = (int64_t)(tr->stream_len - 1 - tr->offset);
        /* a pass starts from zero; a resumed one from the streams' carried state */
        nn_tbptt_options to = {.k1 = (int)o->seq, .k2 = (int)o->seq, .steps = tr->pass_steps, .batch = tr->nb,
                               .h0 = tr->offset ? tr->h0 : NULL, .c0 = tr->offset ? tr->c0 : NULL};
        st = nn_tbptt_run(t, &tr->m->stack, tr->m->ps, &to, input_fn, loss_fn, update_fn, tr, err);
        if (st == AD_ERR_STATE && tr->step >= o->steps) st = AD_OK;
        tr->offset = 0;
        tr->h0 = tr->c0 = NULL;
    }
    if (tr->tty && tr->updates) fputc('\n', stderr);
    return st;
}

/* The closing lines: what this run did, its losses. */
static void summary(trainer *tr)
{
    char a[16], v[16];
    if (tr->rank != 0) return;
    if (!tr->updates) {
        tr->val_loss = validate(tr);
        printf("nothing to train: at step %ld of --steps %ld; validation loss %s\n", tr->step, tr->o->steps,
               loss_str(tr->val_loss, v));
        return;
    }
    printf("trained steps %ld..%ld in %.1f s (%.0f chars/s); smoothed train loss %s, validation loss %s\n",
           tr->step - tr->updates + 1, tr->step, train_secs(tr), (double)tr->tokens / train_secs(tr),
           loss_str(tr->loss_avg, a), loss_str(tr->val_loss, v));
}

int main(int argc, char **argv)
{
    options o;
    int r = parse_args(argc, argv, &o), status = 1;
    if (r == 1) {
        usage(stdout);
        return 0;
    }
    if (r < 0) return 2;
    corpus c = {0};
    model m = {0};
    trainer tr = {.o = &o, .c = &c, .m = &m, .val_loss = NAN, .nb = o.batch};
    ad_error err;
    if (!dist_start(&tr)) return 1;
    tr.tty = tr.rank == 0 && isatty(2);
    if (tr.rank != 0 && !freopen("/dev/null", "w", stdout)) { /* rank 0 alone reports */
        fprintf(stderr, "char_rnn: rank %d: cannot silence its output: %s\n", tr.rank, strerror(errno));
        dist_end(&tr);
        return 1;
    }
#ifdef UNROLL_CHAR_RNN_MPI
    /* the same on every rank: a global batch the ranks cannot share fails everywhere */
    if (tr.dist && nn_dist_shard(tr.dist, o.batch, &tr.b0, &tr.nb, &err) != AD_OK) {
        fprintf(stderr, "char_rnn: --batch %ld: %s\n", o.batch, err.msg);
        dist_end(&tr);
        return 1;
    }
#endif
    /* A training loop that reads neither per-copy nor intermediate gradients:
     * the lean options save memory and time (docs/guide.md). */
    ad_tape_options tape_opts = {0};
    tape_opts.copy_grads = AD_COPY_GRADS_NORMS;
    tape_opts.release_grads = 1;
    ad_tape *t = NULL;
    /* each step that can fail on one rank alone ends with every rank agreeing on its status */
    int ok = setup(&tr, &o);
    if (ok && !(t = ad_tape_new(&tape_opts))) {
        fprintf(stderr, "char_rnn: out of memory\n");
        ok = 0;
    }
    err = (ad_error){.code = ok ? AD_OK : AD_ERR_STATE};
    if (!ok) snprintf(err.msg, sizeof err.msg, "it could not start: its message above says why");
    if (dist_agree(&tr, err.code, &err) != AD_OK) {
        if (ok) fprintf(stderr, "char_rnn: %s\n", err.msg); /* another rank's failure */
        goto done;
    }
    if (dist_sync(&tr, &err) != AD_OK) {
        fprintf(stderr, "char_rnn: %s\n", err.msg);
        goto done;
    }
    if (o.grad_flow && !(tr.flow_h = calloc((size_t)o.seq, sizeof *tr.flow_h))) {
        fprintf(stderr, "char_rnn: out of memory\n");
        goto done;
    }
    tr.stream_len = c.n_train / (size_t)o.batch;
    ad_status st = train(&tr, t, &err);
    if (st != AD_OK && !tr.agreed) fprintf(stderr, "char_rnn: %s\n", err.msg);
    if (!tr.agreed && dist_agree(&tr, st, &err) != AD_OK) {
        if (st == AD_OK) fprintf(stderr, "char_rnn: %s\n", err.msg);
        goto done;
    }
    if (st != AD_OK) goto done;
    summary(&tr);
    st = o.checkpoint && tr.updates ? carry_gather(&tr, &err) : AD_OK;
    if (st != AD_OK) fprintf(stderr, "char_rnn: %s\n", err.msg);
    else if (o.checkpoint && tr.updates && tr.rank == 0) st = save_checkpoint(&tr);
    if (dist_agree(&tr, st, &err) != AD_OK) {
        if (st == AD_OK) fprintf(stderr, "char_rnn: %s\n", err.msg);
        goto done;
    }
    if (o.sample > 0 && tr.rank == 0) sample_text(&tr, t, (int)o.sample);
    status = 0;
done:
    if (tr.csv && fclose(tr.csv) != 0 && status == 0) {
        fprintf(stderr, "char_rnn: cannot write '%s': %s\n", o.csv, strerror(errno));
        status = 1;
    }
    if (tr.csv && status == 0 && tr.updates) plot(o.csv);
    ad_tape_free(t);
    ad_tape_free(tr.val_tape);
    free(tr.flow_h);
    nn_optim_free(tr.opt);
    nn_params_free(m.ps);
    free(c.ids);
    free(tr.carry);
    dist_end(&tr);
    return status;
}
