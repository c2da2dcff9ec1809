/*
 * char_rnn.c - a character-level language model: embedding, stacked
 * Elman/LSTM/GRU layers and a linear head, trained with truncated BPTT on a
 * text file, with validation loss, checkpoints, a loss CSV (and a plot when
 * gnuplot is installed) and sampled text at the end.
 *
 *     ./build/char_rnn                          # the shipped corpus, under a minute
 *     ./build/char_rnn --data ../shared/data/tinyshakespeare.txt --cell lstm --steps 2000
 *     ./build/char_rnn --help
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <unroll/nn/nn.h>

#ifndef UNROLL_EXAMPLE_DATA
#define UNROLL_EXAMPLE_DATA "examples/data"
#endif

typedef struct options {
    const char *data, *cell, *optim, *checkpoint, *csv;
    int hidden, layers, seq, batch, every, sample, resume;
    long steps;
    double lr, clip, temperature;
    unsigned long long seed;
} options;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: char_rnn [options]\n"
            "  --data PATH        text file to train on (default: the shipped corpus)\n"
            "  --cell rnn|lstm|gru  recurrent cell (default lstm)\n"
            "  --hidden N         hidden size (default 128)\n"
            "  --layers N         stacked layers (default 1)\n"
            "  --seq N            truncation length k of TBPTT(k, k) (default 32)\n"
            "  --batch N          parallel streams (default 16)\n"
            "  --steps N          optimizer updates (default 400)\n"
            "  --optim NAME       sgd|adagrad|rmsprop|adam|adamw (default adam)\n"
            "  --lr X             learning rate (default 0.005)\n"
            "  --clip X           clip gradients to global norm X, 0 = off (default 5)\n"
            "  --seed N           random seed (default 1)\n"
            "  --checkpoint PATH  save a checkpoint there every --every updates and at the end\n"
            "  --every N          checkpoint and validation interval (default 100)\n"
            "  --resume           start from --checkpoint when it exists\n"
            "  --sample N         characters to sample at the end (default 300)\n"
            "  --temperature X    sampling temperature (default 0.8)\n"
            "  --csv PATH         one row per logged update: step,loss,val_loss,lr,tokens_per_s\n"
            "  --help             this text\n");
}

/* Parses a whole number in [lo, hi]; 0 on error. */
static int parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < lo || v > hi) return 0;
    *out = v;
    return 1;
}

static int parse_double(const char *s, double lo, double hi, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (*s == '\0' || *end != '\0' || !(v >= lo && v <= hi)) return 0;
    *out = v;
    return 1;
}

/* Returns 0 on success, 1 for --help, -1 with a message printed on bad arguments. */
static int parse_args(int argc, char **argv, options *o)
{
    *o = (options){UNROLL_EXAMPLE_DATA "/corpus.txt", "lstm", "adam", NULL, NULL,
                   128, 1, 32, 16, 100, 300, 0, 400, 0.005, 5.0, 0.8, 1};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long n;
        int ok = 1, takes = 1;
        static const char *valued = " --data --cell --optim --checkpoint --csv --hidden --layers --seq"
                                    " --batch --every --sample --steps --seed --lr --clip --temperature ";
        char key[40];
        snprintf(key, sizeof key, " %.30s ", a);
        if (!strcmp(a, "--help")) return 1;
        else if (!strcmp(a, "--resume")) o->resume = 1, takes = 0;
        else if (!strstr(valued, key)) {
            fprintf(stderr, "char_rnn: unknown option '%s' (see --help)\n", a);
            return -1;
        } else if (!v) ok = 0;
        else if (!strcmp(a, "--data")) o->data = v;
        else if (!strcmp(a, "--cell")) o->cell = v, ok = !strcmp(v, "rnn") || !strcmp(v, "lstm") || !strcmp(v, "gru");
        else if (!strcmp(a, "--optim")) o->optim = v;
        else if (!strcmp(a, "--checkpoint")) o->checkpoint = v;
        else if (!strcmp(a, "--csv")) o->csv = v;
        else if (!strcmp(a, "--hidden")) ok = parse_long(v, 1, 4096, &n), o->hidden = (int)n;
        else if (!strcmp(a, "--layers")) ok = parse_long(v, 1, 8, &n), o->layers = (int)n;
        else if (!strcmp(a, "--seq")) ok = parse_long(v, 1, 10000, &n), o->seq = (int)n;
        else if (!strcmp(a, "--batch")) ok = parse_long(v, 1, 4096, &n), o->batch = (int)n;
        else if (!strcmp(a, "--every")) ok = parse_long(v, 1, 1000000000, &n), o->every = (int)n;
        else if (!strcmp(a, "--sample")) ok = parse_long(v, 0, 1000000, &n), o->sample = (int)n;
        else if (!strcmp(a, "--steps")) ok = parse_long(v, 0, 1000000000, &o->steps);
        else if (!strcmp(a, "--seed")) ok = parse_long(v, 0, 2147483647, &n), o->seed = (unsigned long long)n;
        else if (!strcmp(a, "--lr")) ok = parse_double(v, 0, 10, &o->lr);
        else if (!strcmp(a, "--clip")) ok = parse_double(v, 0, 1e9, &o->clip);
        else ok = parse_double(v, 1e-3, 100, &o->temperature); /* --temperature */
        if (!ok) {
            fprintf(stderr, "char_rnn: bad or missing value for %s (see --help)\n", a);
            return -1;
        }
        i += takes;
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
    int emb = o->hidden < 64 ? o->hidden : 64;
    memset(m, 0, sizeof *m);
    m->ps = nn_params_new(AD_F32, &err);
    m->n_layers = o->layers;
    m->hidden = o->hidden;
    int ok = m->ps && nn_embedding_create(&m->emb, m->ps, "emb", vocab, emb, &err) == AD_OK;
    for (int l = 0; ok && l < o->layers; l++)
        ok = nn_cell_create(&m->layers[l], m->ps, o->cell, &(nn_cell_options){.kind = kind, .layer = l, .input_size = l ? o->hidden : emb, .hidden_size = o->hidden}, &err) == AD_OK;
    ok = ok && nn_linear_create(&m->head, m->ps, "head", o->hidden, vocab, 1, &err) == AD_OK;
    if (!ok) {
        fprintf(stderr, "char_rnn: %s\n", err.msg);
        return 0;
    }
    nn_embedding_init_pytorch(&m->emb, rng);
    for (int l = 0; l < o->layers; l++) nn_cell_init_pytorch(&m->layers[l], rng);
    nn_linear_init_pytorch(&m->head, rng);
    m->stack = (nn_cell){.kind = NN_CELL_CUSTOM, .input_size = emb,
                         .hidden_size = o->layers * o->hidden, .has_c = kind == NN_CELL_LSTM,
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

typedef struct trainer {
    const options *o;
    corpus *c;
    model *m;
    nn_optim *opt;
    ad_rng rng;
    size_t stream_len; /* the training text is cut into `batch` streams of this length */
    long step;         /* optimizer updates so far */
    double loss_avg;   /* running mean loss per character */
    double t0, last_draw;
    long tokens;
    FILE *csv;
    int tty;
} trainer;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static ad_tensor *input_fn(ad_tape *t, int64_t step, void *vc)
{
    trainer *tr = vc;
    int64_t ids[4096];
    for (int b = 0; b < tr->o->batch; b++) ids[b] = tr->c->ids[(size_t)b * tr->stream_len + (size_t)step];
    return nn_embedding_forward(t, &tr->m->emb, ids, tr->o->batch);
}

static ad_tensor *loss_fn(ad_tape *t, const nn_state *h, int64_t step, void *vc)
{
    trainer *tr = vc;
    int64_t tg[4096];
    for (int b = 0; b < tr->o->batch; b++) tg[b] = tr->c->ids[(size_t)b * tr->stream_len + (size_t)step + 1];
    ad_tensor *logits = nn_linear_forward(t, &tr->m->head, top(t, tr->m, h->h));
    /* mean over the batch and the k steps of a segment: scale each step by 1/k */
    return ad_mul_scalar(t, ad_cross_entropy(t, logits, tg, tr->o->batch, -1, AD_REDUCE_MEAN),
                         1.0 / tr->o->seq);
}

/* Mean cross-entropy per character on the held-out text (one stream, state carried). */
static double validate(trainer *tr, ad_tape *t)
{
    const corpus *c = tr->c;
    size_t n = c->n - c->n_train;
    if (n < 2) return NAN;
    nn_state h;
    double total = 0;
    size_t counted = 0;
    int was = ad_tape_set_grad_enabled(t, 0);
    float *hv = NULL, *cv = NULL;
    size_t H = (size_t)tr->m->stack.hidden_size;
    hv = calloc(H, sizeof *hv), cv = calloc(H, sizeof *cv);
    for (size_t s = 0; s + 1 < n && hv && cv; s += (size_t)tr->o->seq) {
        ad_tape_reset(t);
        h.h = ad_from_data(t, AD_F32, ad_shape2(1, (int64_t)H), hv);
        h.c = tr->m->stack.has_c ? ad_from_data(t, AD_F32, ad_shape2(1, (int64_t)H), cv) : NULL;
        for (size_t k = s; k < s + (size_t)tr->o->seq && k + 1 < n; k++) {
            int64_t id = c->ids[c->n_train + k], tg = c->ids[c->n_train + k + 1];
            nn_state next;
            if (nn_cell_step(t, &tr->m->stack, nn_embedding_forward(t, &tr->m->emb, &id, 1), &h, &next) != AD_OK)
                break;
            h = next;
            ad_tensor *l = ad_cross_entropy(t, nn_linear_forward(t, &tr->m->head, top(t, tr->m, h.h)),
                                            &tg, 1, -1, AD_REDUCE_SUM);
            if (!l) break;
            total += ad_tensor_item(l);
            counted++;
        }
        if (ad_tape_status(t) != AD_OK) break;
        memcpy(hv, ad_tensor_f32(h.h), H * sizeof *hv);
        if (h.c) memcpy(cv, ad_tensor_f32(h.c), H * sizeof *cv);
    }
    free(hv), free(cv);
    ad_tape_set_grad_enabled(t, was);
    return counted ? total / (double)counted : NAN;
}

static void progress(trainer *tr, int force)
{
    double t = now();
    if (!force && t - tr->last_draw < 0.1) return; /* at most 10 updates a second */
    tr->last_draw = t;
    double rate = tr->tokens / fmax(t - tr->t0, 1e-9);
    double eta = tr->step ? (t - tr->t0) / (double)tr->step * (double)(tr->o->steps - tr->step) : 0;
    int width = 30, done = tr->o->steps ? (int)(width * tr->step / tr->o->steps) : width;
    fprintf(stderr, "\r[%.*s%*s] step %ld/%ld  loss %.4f  %.0f chars/s  ETA %.0fs ", done,
            "##############################", width - done, "", tr->step, tr->o->steps,
            tr->loss_avg, rate, eta);
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

/* After each segment: clip, update, log, checkpoint; stop when enough updates are done. */
static ad_status update_fn(int64_t segment, double loss, void *vc)
{
    (void)segment;
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
    tr->tokens += (long)tr->o->batch * tr->o->seq;
    tr->loss_avg = tr->step == 1 ? loss : 0.95 * tr->loss_avg + 0.05 * loss;
    long log_every = tr->o->steps >= 20 ? tr->o->steps / 20 : 1;
    int logged = tr->step % log_every == 0 || tr->step == tr->o->steps;
    if (tr->tty) progress(tr, tr->step == tr->o->steps);
    else if (logged) printf("step %6ld  loss %.4f\n", tr->step, tr->loss_avg);
    if (tr->csv && logged)
        fprintf(tr->csv, "%ld,%.6f,,%.6g,%.0f\n", tr->step, loss, nn_optim_config_of(tr->opt)->lr,
                tr->tokens / fmax(now() - tr->t0, 1e-9));
    if (tr->o->checkpoint && tr->step % tr->o->every == 0 && save_checkpoint(tr) != AD_OK) return AD_ERR_IO;
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

static void plot(const char *csv)
{
    if (system("command -v gnuplot >/dev/null 2>&1") != 0) {
        printf("loss curve: gnuplot is not installed, plot skipped (the data is in %s)\n", csv);
        return;
    }
    char cmd[1200];
    snprintf(cmd, sizeof cmd,
             "gnuplot -e \"set terminal png size 800,500; set output '%s.png'; set datafile separator ',';"
             " set xlabel 'step'; set ylabel 'loss'; plot '%s' every ::1 using 1:2 with lines title 'loss'\"",
             csv, csv);
    if (system(cmd) == 0) printf("loss curve: %s.png\n", csv);
    else printf("loss curve: gnuplot failed, plot skipped\n");
}

static nn_optim_kind optim_kind(const char *name, int *ok)
{
    *ok = 1;
    if (!strcmp(name, "sgd")) return NN_OPTIM_SGD;
    if (!strcmp(name, "adagrad")) return NN_OPTIM_ADAGRAD;
    if (!strcmp(name, "rmsprop")) return NN_OPTIM_RMSPROP;
    if (!strcmp(name, "adamw")) return NN_OPTIM_ADAMW;
    *ok = !strcmp(name, "adam");
    return NN_OPTIM_ADAM;
}

int main(int argc, char **argv)
{
    options o;
    int r = parse_args(argc, argv, &o);
    if (r == 1) {
        usage(stdout);
        return 0;
    }
    if (r < 0) return 2;
    int ok, status = 1;
    nn_optim_kind kind = optim_kind(o.optim, &ok);
    if (!ok) {
        fprintf(stderr, "char_rnn: unknown optimizer '%s' (sgd|adagrad|rmsprop|adam|adamw)\n", o.optim);
        return 2;
    }
    corpus c = {0};
    model m = {0};
    trainer tr = {.o = &o, .c = &c, .m = &m, .tty = isatty(2)};
    ad_tape *t = NULL;
    ad_error err;
    if (!load_corpus(o.data, &c)) goto done;
    if (c.n_train < (size_t)o.batch * ((size_t)o.seq + 1)) {
        fprintf(stderr, "char_rnn: '%s' is too short for --batch %d --seq %d\n", o.data, o.batch, o.seq);
        goto done;
    }
    ad_rng_seed(&tr.rng, o.seed, 0);
    if (!build_model(&m, &o, c.vocab, &tr.rng)) goto done;
    nn_optim_config cfg = nn_optim_defaults(kind);
    cfg.lr = o.lr;
    tr.opt = nn_optim_new(m.ps, &cfg, &err);
    if (!tr.opt) {
        fprintf(stderr, "char_rnn: %s\n", err.msg);
        goto done;
    }
    if (o.resume && access(o.checkpoint, F_OK) == 0) {
        nn_train_state ts;
        if (nn_checkpoint_load(o.checkpoint, m.ps, tr.opt, &ts, &err) != AD_OK) {
            fprintf(stderr, "char_rnn: cannot resume from '%s': %s\n", o.checkpoint, err.msg);
            goto done;
        }
        tr.step = (long)ts.step;
        if (ts.has_rng) tr.rng = ts.rng;
        printf("resumed from %s at step %ld\n", o.checkpoint, tr.step);
    }
    if (o.csv) {
        tr.csv = fopen(o.csv, "w");
        if (!tr.csv) {
            fprintf(stderr, "char_rnn: cannot write '%s'\n", o.csv);
            goto done;
        }
        fprintf(tr.csv, "step,loss,val_loss,lr,tokens_per_s\n");
    }
    size_t n_params;
    nn_params_values(m.ps, &n_params);
    printf("corpus %s: %zu characters (%zu for training), vocabulary %d\n", o.data, c.n, c.n_train, c.vocab);
    printf("model: %d x %s(%d), %zu parameters; TBPTT(%d, %d), batch %d, %s lr %g\n", o.layers,
           o.cell, o.hidden, n_params, o.seq, o.seq, o.batch, o.optim, o.lr);
    /* A training loop that reads neither per-copy nor intermediate gradients:
     * the lean options save memory and time (docs/guide.md). */
    ad_tape_options tape_opts = {0};
    tape_opts.lean_copies = 1;
    tape_opts.release_grads = 1;
    t = ad_tape_new(&tape_opts);
    tr.stream_len = c.n_train / (size_t)o.batch;
    tr.t0 = now();
    nn_tbptt_options to = {.k1 = o.seq, .k2 = o.seq, .steps = (int64_t)tr.stream_len - 1, .batch = o.batch};
    ad_status st = t ? AD_OK : AD_ERR_NOMEM;
    while (tr.step < o.steps && st == AD_OK) { /* one pass over the streams per call */
        st = nn_tbptt_run(t, &m.stack, m.ps, &to, input_fn, loss_fn, update_fn, &tr, &err);
        if (st == AD_ERR_STATE && tr.step >= o.steps) st = AD_OK;
    }
    if (tr.tty) fputc('\n', stderr);
    if (st != AD_OK) {
        fprintf(stderr, "char_rnn: %s\n", err.msg);
        goto done;
    }
    double secs = now() - tr.t0, val = validate(&tr, t);
    printf("trained %ld steps in %.1f s (%.0f chars/s); train loss %.4f, validation loss %.4f\n",
           tr.step, secs, tr.tokens / fmax(secs, 1e-9), tr.loss_avg, val);
    if (tr.csv) fprintf(tr.csv, "%ld,%.6f,%.6f,%.6g,\n", tr.step, tr.loss_avg, val, cfg.lr);
    if (o.checkpoint && save_checkpoint(&tr) != AD_OK) goto done;
    if (o.sample > 0) sample_text(&tr, t, o.sample);
    status = 0;
done:
    if (tr.csv) {
        fclose(tr.csv);
        if (status == 0) plot(o.csv);
    }
    ad_tape_free(t);
    nn_optim_free(tr.opt);
    nn_params_free(m.ps);
    free(c.ids);
    return status;
}
