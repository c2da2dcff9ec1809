/*
 * char_rnn.c - a character-level language model: embedding, stacked
 * Elman/LSTM/GRU layers and a linear head, trained with truncated BPTT on a
 * text file, with validation loss, checkpoints, a loss CSV (and a plot when
 * gnuplot is installed) and sampled text at the end.
 *
 *     ./build/char_rnn                          # 300 KB of Shakespeare, about a minute
 *     ./build/char_rnn --data ../shared/data/tinyshakespeare.txt --cell gru --steps 5000
 *     ./build/char_rnn --help
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <spawn.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <unroll/nn/nn.h>

#ifndef UNROLL_EXAMPLE_DATA
#define UNROLL_EXAMPLE_DATA "examples/data"
#endif

extern char **environ; /* for posix_spawnp: gnuplot gets our environment */

enum { RESUME_NO, RESUME_IF_PRESENT, RESUME_REQUIRED };

typedef struct options {
    const char *data, *cell, *optim, *checkpoint, *csv;
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
            "  --hidden N         hidden size, 1..4096 (default 128)\n"
            "  --layers N         stacked layers, 1..8 (default 1)\n"
            "  --seq N            truncation length k of TBPTT(k, k), 1..10000 (default 32)\n"
            "  --batch N          parallel streams, 1..4096 (default 16)\n"
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
    OPT("--checkpoint", OPT_PATH, 0, 0, NULL, checkpoint),
    OPT("--csv", OPT_PATH, 0, 0, NULL, csv),
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
    *o = (options){.data = UNROLL_EXAMPLE_DATA "/shakespeare.txt", .cell = "lstm", .optim = "adam",
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

static int load_corpus(const char *path, corpus *c)
{
    void *buf;
    size_t size;
    ad_error err;
    if (ad_file_read_all(path, (size_t)1 << 30, &buf, &size, &err) != AD_OK) {
        fprintf(stderr, "char_rnn: %s\n", err.msg);
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
    m->ps = nn_params_new(AD_F32, &err);
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
} trainer;

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
    for (long b = 0; b < tr->o->batch; b++)
        ids[b] = tr->c->ids[(size_t)b * tr->stream_len + tr->offset + (size_t)step];
    return nn_embedding_forward(t, &tr->m->emb, ids, tr->o->batch);
}

static ad_tensor *loss_fn(ad_tape *t, const nn_state *h, int64_t step, void *vc)
{
    trainer *tr = vc;
    int64_t tg[4096];
    for (long b = 0; b < tr->o->batch; b++)
        tg[b] = tr->c->ids[(size_t)b * tr->stream_len + tr->offset + (size_t)step + 1];
    ad_tensor *logits = nn_linear_forward(t, &tr->m->head, top(t, tr->m, h->h));
    /* mean over the batch and the steps of a segment, so a pass's shorter last
     * segment reports (and steps with) a loss per character like the others */
    return ad_mul_scalar(t, ad_cross_entropy(t, logits, tg, tr->o->batch, -1, AD_REDUCE_MEAN),
                         1.0 / (double)segment_len(tr, step));
}

/* Sums the cross-entropy of `steps` steps of `streams` held-out streams of `len`
 * characters from position s, the state carried in hv/cv; 0 on a tape error. */
static int validate_chunk(trainer *tr, size_t s, size_t steps, int streams, size_t len, float *hv,
                          float *cv, double *total)
{
    ad_tape *t = tr->val_tape;
    const corpus *c = tr->c;
    int64_t H = tr->m->stack.hidden_size;
    ad_tape_reset(t);
    nn_state h = {ad_from_data(t, AD_F32, ad_shape2(streams, H), hv),
                  tr->m->stack.has_c ? ad_from_data(t, AD_F32, ad_shape2(streams, H), cv) : NULL};
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
    memcpy(hv, ad_tensor_f32(h.h), (size_t)streams * (size_t)H * sizeof *hv);
    if (h.c) memcpy(cv, ad_tensor_f32(h.c), (size_t)streams * (size_t)H * sizeof *cv);
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
    size_t len = n / (size_t)streams, H = (size_t)tr->m->stack.hidden_size;
    if (len < 2 || !tr->val_tape) return NAN;
    float *hv = calloc((size_t)streams * H, sizeof *hv), *cv = calloc((size_t)streams * H, sizeof *cv);
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

static ad_status save_checkpoint(trainer *tr)
{
    ad_error err;
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

/* After each segment: clip, update, log, validate, checkpoint; stop when enough updates are done. */
static ad_status update_fn(int64_t segment, double loss, void *vc)
{
    trainer *tr = vc;
    ad_error err;
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
    if (validated) tr->val_loss = validate(tr);
    report(tr, loss, validated || last || tr->step % log_every == 0, validated);
    /* the last update's checkpoint is written once, after the loop */
    if (tr->o->checkpoint && !last && tr->step % tr->o->every == 0 && save_checkpoint(tr) != AD_OK)
        return AD_ERR_IO;
    return tr->step >= tr->o->steps ? AD_ERR_STATE : AD_OK; /* AD_ERR_STATE here means: done */
}

/* ---- sampling -------------------------------------------------------------------------------- */

static void sample_text(trainer *tr, ad_tape *t, int count)
{
    const model *m = tr->m;
    int64_t id = tr->c->ids[0];
    int was = ad_tape_set_grad_enabled(t, 0);
    size_t H = (size_t)m->stack.hidden_size;
    float *hv = calloc(H, sizeof *hv), *cv = calloc(H, sizeof *cv);
    printf("--- sample (temperature %.2f) ---\n%c", tr->o->temperature, tr->c->chars[id]);
    for (int i = 0; i < count && hv && cv; i++) {
        ad_tape_reset(t);
        nn_state h = {ad_from_data(t, AD_F32, ad_shape2(1, (int64_t)H), hv),
                      m->stack.has_c ? ad_from_data(t, AD_F32, ad_shape2(1, (int64_t)H), cv) : NULL}, next;
        if (nn_cell_step(t, &m->stack, nn_embedding_forward(t, &m->emb, &id, 1), &h, &next) != AD_OK) break;
        ad_tensor *logits = nn_linear_forward(t, &m->head, top(t, m, next.h));
        ad_tensor *prob = ad_softmax(t, ad_mul_scalar(t, logits, 1.0 / tr->o->temperature), 1);
        if (!prob) break;
        double u = ad_rng_uniform(&tr->rng), acc = 0;
        id = tr->c->vocab - 1;
        for (int v = 0; v < tr->c->vocab; v++) {
            acc += ad_tensor_f32(prob)[v];
            if (u < acc) {
                id = v;
                break;
            }
        }
        putchar(tr->c->chars[id]);
        memcpy(hv, ad_tensor_f32(next.h), H * sizeof *hv);
        if (next.c) memcpy(cv, ad_tensor_f32(next.c), H * sizeof *cv);
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
    ad_error err;
    if (resumed && access(path, F_OK) == 0 && ad_file_read_all(path, (size_t)1 << 30, &old, &size, &err) != AD_OK)
        fprintf(stderr, "char_rnn: cannot read the earlier rows of %s, starting it anew: %s\n", path, err.msg);
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

/* Writes `s` into a gnuplot single-quoted string, where '' stands for one quote. */
static int gnuplot_quote(const char *s, char *out, size_t size)
{
    size_t j = 0;
    for (; *s; s++) {
        if (j + 3 > size) return 0;
        if (*s == '\'') out[j++] = '\'';
        out[j++] = *s;
    }
    out[j] = '\0';
    return 1;
}

/* Plots the CSV to CSV.png with gnuplot, run directly (no shell, so no path
 * needs shell quoting); skipped with a note when gnuplot is not installed. */
static void plot(const char *csv)
{
    char q[2048], script[5000], prog[] = "gnuplot", dash_e[] = "-e";
    if (!gnuplot_quote(csv, q, sizeof q)) {
        printf("loss curve: the path is too long for gnuplot, plot skipped\n");
        return;
    }
    snprintf(script, sizeof script,
             "set terminal png size 800,500; set output '%s.png'; set datafile separator ',';"
             " set key autotitle columnhead; set xlabel 'step'; set ylabel 'loss per character';"
             " plot '%s' using 1:2 with lines title 'train loss (raw)',"
             " '' using 1:3 with linespoints title 'validation loss'",
             q, q);
    char *args[] = {prog, dash_e, script, NULL};
    pid_t pid;
    int rc = posix_spawnp(&pid, prog, NULL, NULL, args, environ), ws = 0;
    if (rc == ENOENT) {
        printf("loss curve: gnuplot is not installed, plot skipped (the data is in %s)\n", csv);
        return;
    }
    if (rc != 0 || waitpid(pid, &ws, 0) != pid || !WIFEXITED(ws) || WEXITSTATUS(ws) != 0)
        printf("loss curve: gnuplot failed (%s), plot skipped\n", rc ? strerror(rc) : "see its message");
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
    int resumed;
    if (!resume(tr, &resumed)) return 0;
    if (o->csv && !(tr->csv = open_csv(o->csv, resumed, tr->step))) return 0;
    tr->val_tape = ad_tape_new(NULL);
    if (tr->val_tape) ad_tape_set_grad_enabled(tr->val_tape, 0);
    size_t n_params;
    nn_params_values(tr->m->ps, &n_params);
    printf("corpus %s: %zu characters (%zu for training, %zu held out for validation), vocabulary %d\n",
           o->data, c->n, c->n_train, c->n - c->n_train, c->vocab);
    printf("model: %ld x %s(%ld), %zu parameters; TBPTT(%ld, %ld), batch %ld, %s lr %g\n", o->layers,
           o->cell, o->hidden, n_params, o->seq, o->seq, o->batch, o->optim, o->lr);
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
        nn_tbptt_options to = {.k1 = (int)o->seq, .k2 = (int)o->seq, .steps = tr->pass_steps, .batch = o->batch};
        st = nn_tbptt_run(t, &tr->m->stack, tr->m->ps, &to, input_fn, loss_fn, update_fn, tr, err);
        if (st == AD_ERR_STATE && tr->step >= o->steps) st = AD_OK;
        tr->offset = 0;
    }
    if (tr->tty && tr->updates) fputc('\n', stderr);
    return st;
}

/* The closing lines: what this run did, its losses. */
static void summary(trainer *tr)
{
    char a[16], v[16];
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
    trainer tr = {.o = &o, .c = &c, .m = &m, .tty = isatty(2), .val_loss = NAN};
    ad_error err;
    /* A training loop that reads neither per-copy nor intermediate gradients:
     * the lean options save memory and time (docs/guide.md). */
    ad_tape_options tape_opts = {0};
    tape_opts.copy_grads = AD_COPY_GRADS_NORMS;
    tape_opts.release_grads = 1;
    ad_tape *t = NULL;
    if (!setup(&tr, &o)) goto done;
    if (!(t = ad_tape_new(&tape_opts))) {
        fprintf(stderr, "char_rnn: out of memory\n");
        goto done;
    }
    tr.stream_len = c.n_train / (size_t)o.batch;
    if (train(&tr, t, &err) != AD_OK) {
        fprintf(stderr, "char_rnn: %s\n", err.msg);
        goto done;
    }
    summary(&tr);
    if (o.checkpoint && tr.updates && save_checkpoint(&tr) != AD_OK) goto done;
    if (o.sample > 0) sample_text(&tr, t, (int)o.sample);
    status = 0;
done:
    if (tr.csv && fclose(tr.csv) != 0 && status == 0) {
        fprintf(stderr, "char_rnn: cannot write '%s': %s\n", o.csv, strerror(errno));
        status = 1;
    }
    if (tr.csv && status == 0 && tr.updates) plot(o.csv);
    ad_tape_free(t);
    ad_tape_free(tr.val_tape);
    nn_optim_free(tr.opt);
    nn_params_free(m.ps);
    free(c.ids);
    return status;
}
