/*
 * checkpoint.c - the checkpoint format of docs/formats.md: write into a
 * buffer and replace the file atomically; read the whole file, check every
 * CRC and every size, match names and shapes, and only then copy.
 */
#include "checkpoint.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static const char magic[8] = {'U', 'N', 'R', 'L', 'C', 'K', 'P', 'T'};
enum { HEADER_SIZE = 32, TAG_PARAMS = 0x4D524150, TAG_OPTIM = 0x4D54504F, TAG_TRAIN = 0x54535254 };

uint32_t nn__crc32(uint32_t crc, const void *data, size_t n)
{
    const unsigned char *p = data;
    crc = ~crc;
    for (size_t i = 0; i < n; i++) {
        crc ^= p[i];
        for (int k = 0; k < 8; k++) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
    }
    return ~crc;
}

/* ---- values a checkpoint may hold (checked on save and on load) ------------------------- */

/* Step counts above 2^53 are not exact in the double arithmetic of the
 * schedules and of Adam's bias corrections: no real run gets there. */
#define MAX_STEPS ((int64_t)1 << 53)

/* The state buffer of an optimizer that holds a running sum or average of
 * squared gradients, which is never negative (see the updates in optim.c),
 * or -1. */
static int squares_buffer(uint32_t kind)
{
    switch (kind) {
    case NN_OPTIM_ADAGRAD:
    case NN_OPTIM_RMSPROP: return 0;
    case NN_OPTIM_ADAM:
    case NN_OPTIM_ADAMW: return 1;
    default: return -1;
    }
}

/* Whether the optimizer's scalars are usable; why not in `why`. */
static int optim_scalars_ok(double lr, int64_t steps, char *why, size_t cap)
{
    if (!(isfinite(lr) && lr >= 0)) {
        snprintf(why, cap, "the learning rate %g is not a finite number >= 0", lr);
        return 0;
    }
    if (steps < 0 || steps > MAX_STEPS) {
        snprintf(why, cap, "the step count %lld is outside 0..2^53", (long long)steps);
        return 0;
    }
    return 1;
}

static int state_value_ok(uint32_t kind, int buffer, uint64_t i, double v, char *why, size_t cap)
{
    if (isfinite(v) && (v >= 0 || squares_buffer(kind) != buffer)) return 1;
    snprintf(why, cap, "optimizer state %d element %llu is %g (%s)", buffer, (unsigned long long)i, v,
             isfinite(v) ? "a sum of squares, never negative" : "not finite");
    return 0;
}

static int schedule_ok(const nn_schedule *s, char *why, size_t cap)
{
    const double reals[4] = {s->base_lr, s->gamma, s->eta_min, s->start_factor};
    const char *const real_names[4] = {"base_lr", "gamma", "eta_min", "start_factor"};
    const int64_t counts[3] = {s->step_size, s->t_max, s->warmup};
    const char *const count_names[3] = {"step_size", "t_max", "warmup"};
    if ((unsigned)s->kind > NN_SCHEDULE_WARMUP) {
        snprintf(why, cap, "schedule: unknown kind %d", (int)s->kind);
        return 0;
    }
    for (int i = 0; i < 4; i++)
        if (!isfinite(reals[i])) {
            snprintf(why, cap, "schedule: %s is %g, not a finite number", real_names[i], reals[i]);
            return 0;
        }
    for (int i = 0; i < 3; i++)
        if (counts[i] < 0 || counts[i] > MAX_STEPS) {
            snprintf(why, cap, "schedule: %s %lld is outside 0..2^53", count_names[i], (long long)counts[i]);
            return 0;
        }
    const char *bad = s->base_lr < 0 ? "base_lr must be >= 0"
                    : s->kind == NN_SCHEDULE_STEP && s->step_size < 1 ? "a STEP schedule needs step_size >= 1"
                    : s->kind == NN_SCHEDULE_STEP && s->gamma < 0 ? "a STEP schedule needs gamma >= 0"
                    : s->kind == NN_SCHEDULE_COSINE && s->t_max < 1 ? "a COSINE schedule needs t_max >= 1"
                    : s->kind == NN_SCHEDULE_COSINE && s->eta_min < 0 ? "a COSINE schedule needs eta_min >= 0"
                    : s->kind == NN_SCHEDULE_WARMUP && !(s->start_factor >= 0 && s->start_factor <= 1)
                        ? "a WARMUP schedule needs start_factor in [0, 1]" : NULL;
    if (bad) snprintf(why, cap, "schedule: %s", bad);
    return bad == NULL;
}

static int train_ok(const nn_train_state *t, char *why, size_t cap)
{
    if (t->step < 0 || t->step > MAX_STEPS) {
        snprintf(why, cap, "the training step %lld is outside 0..2^53", (long long)t->step);
        return 0;
    }
    if (t->has_rng && !(t->rng.inc & 1)) {
        snprintf(why, cap, "the RNG's stream increment %llu is even (a seeded RNG's is odd)",
                 (unsigned long long)t->rng.inc);
        return 0;
    }
    return !t->has_schedule || schedule_ok(&t->schedule, why, cap);
}

/* An optimizer is saved and loaded only with the set it updates, at the size
 * it was made for: its state is laid out over that set's block. */
static ad_status check_optim_owner(const nn_optim *opt, nn_params *ps, ad_error *err)
{
    size_t have, numel;
    nn_params_values(ps, &have);
    nn_optim_state((nn_optim *)opt, 0, &numel, NULL); /* reads only */
    if (nn_optim_params(opt) != ps)
        return ad_error_set(err, AD_ERR_ARG, "checkpoint: the optimizer updates another parameter set than the one given");
    if (numel != have)
        return ad_error_set(err, AD_ERR_STATE, "checkpoint: the parameter set has %zu elements, %zu when the optimizer "
                            "was made: parameters were added since the optimizer was made", have, numel);
    return AD_OK;
}

/* ---- writing: a growing little-endian buffer ------------------------------------------- */

typedef struct buf {
    unsigned char *p;
    size_t len, cap;
    int failed;
} buf;

static void put(buf *b, const void *src, size_t n)
{
    if (b->failed) return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n) cap *= 2;
        unsigned char *q = realloc(b->p, cap);
        if (!q) {
            b->failed = 1;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->len, src, n);
    b->len += n;
}

/* Integers are written byte by byte, little-endian whatever the host. */
static void put_uint(buf *b, uint64_t v, int bytes)
{
    unsigned char tmp[8];
    for (int i = 0; i < bytes; i++) tmp[i] = (unsigned char)(v >> (8 * i));
    put(b, tmp, (size_t)bytes);
}

static void put_f64(buf *b, double v)
{
    uint64_t u;
    memcpy(&u, &v, sizeof u);
    put_uint(b, u, 8);
}

/* Section framing: tag, reserved, payload length (patched), payload, CRC. */
static size_t begin_section(buf *b, uint32_t tag)
{
    put_uint(b, tag, 4);
    put_uint(b, 0, 4);
    put_uint(b, 0, 8);
    return b->len;
}

static void end_section(buf *b, size_t start)
{
    if (b->failed) return;
    uint64_t len = b->len - start;
    for (int i = 0; i < 8; i++) b->p[start - 8 + i] = (unsigned char)(len >> (8 * i));
    put_uint(b, nn__crc32(0, b->p + start, b->len - start), 4);
}

/* Tensor elements as little-endian bytes. */
static void put_elements(buf *b, ad_tensor *v)
{
    size_t n = ad_tensor_numel(v);
    for (size_t i = 0; i < n; i++) {
        if (ad_tensor_dtype(v) == AD_F32) {
            uint32_t u;
            memcpy(&u, &ad_tensor_f32(v)[i], 4);
            put_uint(b, u, 4);
        } else {
            put_f64(b, ad_tensor_f64(v)[i]);
        }
    }
}

static void write_params(buf *b, nn_params *ps)
{
    size_t s = begin_section(b, TAG_PARAMS);
    put_uint(b, nn_params_count(ps), 4);
    for (size_t i = 0; i < nn_params_count(ps); i++) {
        ad_param *p = nn_params_at(ps, i);
        ad_tensor *v = ad_param_value(p);
        size_t len = strlen(ad_param_name(p));
        put_uint(b, len, 2);
        put(b, ad_param_name(p), len);
        put_uint(b, (uint64_t)ad_tensor_dtype(v), 1);
        put_uint(b, (uint64_t)ad_tensor_rank(v), 1);
        for (int d = 0; d < ad_tensor_rank(v); d++) put_uint(b, (uint64_t)ad_tensor_dim(v, d), 8);
        put_elements(b, v);
    }
    end_section(b, s);
}

static void write_optim(buf *b, const nn_optim *opt)
{
    nn_optim *o = (nn_optim *)opt; /* nn_optim_state only reads here */
    int count;
    size_t numel;
    nn_optim_state(o, 0, &numel, &count);
    size_t s = begin_section(b, TAG_OPTIM);
    put_uint(b, (uint64_t)nn_optim_config_of(o)->kind, 4);
    put_f64(b, nn_optim_config_of(o)->lr);
    put_uint(b, (uint64_t)nn_optim_steps(o), 8);
    put_uint(b, (uint64_t)count, 4);
    put_uint(b, numel, 8);
    for (int k = 0; k < count; k++) {
        const double *st = nn_optim_state(o, k, NULL, NULL);
        for (size_t i = 0; i < numel; i++) put_f64(b, st[i]);
    }
    end_section(b, s);
}

static void write_train(buf *b, const nn_train_state *ts)
{
    size_t s = begin_section(b, TAG_TRAIN);
    put_uint(b, (uint64_t)ts->step, 8);
    put_uint(b, ts->has_rng != 0, 1);
    put_uint(b, ts->rng.state, 8);
    put_uint(b, ts->rng.inc, 8);
    put_uint(b, ts->has_schedule != 0, 1);
    const nn_schedule *sc = &ts->schedule;
    put_uint(b, (uint64_t)sc->kind, 4);
    put_f64(b, sc->base_lr);
    put_uint(b, (uint64_t)sc->step_size, 8);
    put_f64(b, sc->gamma);
    put_uint(b, (uint64_t)sc->t_max, 8);
    put_f64(b, sc->eta_min);
    put_uint(b, (uint64_t)sc->warmup, 8);
    put_f64(b, sc->start_factor);
    end_section(b, s);
}

ad_status nn_checkpoint_save(const char *path, nn_params *ps, const nn_optim *opt,
                             const nn_train_state *ts, ad_error *err)
{
    if (!path || !ps) return ad_error_set(err, AD_ERR_NULL, "checkpoint: save: path or parameter set is NULL");
    /* What a load would refuse is not written. */
    char why[160];
    ad_status st = opt ? check_optim_owner(opt, ps, err) : AD_OK;
    if (st != AD_OK) return st;
    if (opt) {
        nn_optim *o = (nn_optim *)opt; /* nn_optim_state only reads here */
        int count;
        size_t numel;
        uint32_t kind = (uint32_t)nn_optim_config_of(o)->kind;
        nn_optim_state(o, 0, &numel, &count);
        int ok = optim_scalars_ok(nn_optim_config_of(o)->lr, nn_optim_steps(o), why, sizeof why);
        for (int k = 0; ok && k < count; k++)
            for (size_t i = 0; ok && i < numel; i++) ok = state_value_ok(kind, k, i, nn_optim_state(o, k, NULL, NULL)[i], why, sizeof why);
        if (!ok) return ad_error_set(err, AD_ERR_ARG, "checkpoint: save: %s", why);
    }
    if (ts && !train_ok(ts, why, sizeof why)) return ad_error_set(err, AD_ERR_ARG, "checkpoint: save: %s", why);
    buf b = {NULL, 0, 0, 0};
    put(&b, magic, sizeof magic);
    put_uint(&b, NN_CHECKPOINT_VERSION, 4);
    put_uint(&b, 1u + (opt != NULL) + (ts != NULL), 4);
    put_uint(&b, 0, 8); /* total size, patched below */
    put_uint(&b, 0, 4);
    put_uint(&b, 0, 4); /* header CRC, patched below */
    write_params(&b, ps);
    if (opt) write_optim(&b, opt);
    if (ts) write_train(&b, ts);
    put_uint(&b, 0, 4); /* whole-file CRC, patched below */
    if (b.failed) {
        free(b.p);
        return ad_error_set(err, AD_ERR_NOMEM, "checkpoint: save: out of memory");
    }
    for (int i = 0; i < 8; i++) b.p[16 + i] = (unsigned char)((uint64_t)b.len >> (8 * i));
    uint32_t hc = nn__crc32(0, b.p, 28), fc;
    for (int i = 0; i < 4; i++) b.p[28 + i] = (unsigned char)(hc >> (8 * i));
    fc = nn__crc32(0, b.p, b.len - 4);
    for (int i = 0; i < 4; i++) b.p[b.len - 4 + i] = (unsigned char)(fc >> (8 * i));
    st = ad__file_write_atomic(path, b.p, b.len, err);
    free(b.p);
    return st;
}

/* ---- reading: a bounds-checked cursor ------------------------------------------------------ */

typedef struct cur {
    const unsigned char *p, *end;
    int bad; /* read past the end */
} cur;

static uint64_t get_uint(cur *c, int bytes)
{
    if (c->bad || (size_t)(c->end - c->p) < (size_t)bytes) {
        c->bad = 1;
        return 0;
    }
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++) v |= (uint64_t)c->p[i] << (8 * i);
    c->p += bytes;
    return v;
}

static double get_f64(cur *c)
{
    uint64_t u = get_uint(c, 8);
    double v;
    memcpy(&v, &u, sizeof v);
    return v;
}

static const unsigned char *get_bytes(cur *c, uint64_t n)
{
    if (c->bad || (uint64_t)(c->end - c->p) < n) {
        c->bad = 1;
        return NULL;
    }
    const unsigned char *q = c->p;
    c->p += n;
    return q;
}

/* The sections found in a validated file. */
typedef struct plan {
    cur params, optim, train;
    int has_params, has_optim, has_train;
} plan;

static ad_status read_frame(const unsigned char *data, size_t size, plan *pl, ad_error *err)
{
    if (size < HEADER_SIZE + 4) return ad_error_set(err, AD_ERR_FORMAT, "checkpoint: file too short to be a checkpoint");
    if (memcmp(data, magic, sizeof magic) != 0) return ad_error_set(err, AD_ERR_FORMAT, "checkpoint: not a checkpoint (bad magic)");
    cur h = {data + 8, data + HEADER_SIZE, 0};
    uint32_t version = (uint32_t)get_uint(&h, 4), sections = (uint32_t)get_uint(&h, 4);
    uint64_t total = get_uint(&h, 8);
    get_uint(&h, 4);
    uint32_t hcrc = (uint32_t)get_uint(&h, 4);
    if (hcrc != nn__crc32(0, data, 28)) return ad_error_set(err, AD_ERR_FORMAT, "checkpoint: header checksum mismatch (corrupt file)");
    if (version != NN_CHECKPOINT_VERSION) {
        char m[96];
        snprintf(m, sizeof m, "format version %u is not supported (this library reads %d)", version,
                 NN_CHECKPOINT_VERSION);
        return ad_error_set(err, AD_ERR_FORMAT, "checkpoint: %s", m);
    }
    if (total != size) {
        char m[128];
        snprintf(m, sizeof m, "file has %zu bytes, its header says %llu (truncated or extended)", size,
                 (unsigned long long)total);
        return ad_error_set(err, AD_ERR_FORMAT, "checkpoint: %s", m);
    }
    cur f = {data + size - 4, data + size, 0};
    if ((uint32_t)get_uint(&f, 4) != nn__crc32(0, data, size - 4))
        return ad_error_set(err, AD_ERR_FORMAT, "checkpoint: file checksum mismatch (corrupt file)");
    if (sections < 1 || sections > 3) return ad_error_set(err, AD_ERR_FORMAT, "checkpoint: bad section count");
    cur c = {data + HEADER_SIZE, data + size - 4, 0};
    memset(pl, 0, sizeof *pl);
    for (uint32_t s = 0; s < sections; s++) {
        uint32_t tag = (uint32_t)get_uint(&c, 4);
        get_uint(&c, 4);
        uint64_t len = get_uint(&c, 8);
        const unsigned char *payload = get_bytes(&c, len);
        uint32_t crc = (uint32_t)get_uint(&c, 4);
        if (c.bad) return ad_error_set(err, AD_ERR_FORMAT, "checkpoint: a section runs past the end of the file");
        if (crc != nn__crc32(0, payload, len)) return ad_error_set(err, AD_ERR_FORMAT, "checkpoint: section checksum mismatch");
        cur body = {payload, payload + len, 0};
        int *seen = tag == TAG_PARAMS ? &pl->has_params : tag == TAG_OPTIM ? &pl->has_optim
                  : tag == TAG_TRAIN ? &pl->has_train : NULL;
        if (!seen || *seen) return ad_error_set(err, AD_ERR_FORMAT, "checkpoint: unknown or repeated section");
        *seen = 1;
        if (tag == TAG_PARAMS) pl->params = body;
        else if (tag == TAG_OPTIM) pl->optim = body;
        else pl->train = body;
    }
    if (c.p != c.end) return ad_error_set(err, AD_ERR_FORMAT, "checkpoint: unexpected bytes after the last section");
    if (!pl->has_params) return ad_error_set(err, AD_ERR_FORMAT, "checkpoint: no parameter section");
    return AD_OK;
}

/* The mismatch message lists whole differences while they fit in ad_error
 * next to its prefix and "; and N more"; the first is listed whatever its
 * length (ad_error_set then cuts it at a space). */
enum { DIFF_BUDGET = AD_ERROR_MSG_SIZE - 1 - sizeof "checkpoint: 9999 difference(s) from the model: " -
                     sizeof "; and 9999 more" };

static void note_diff(char *list, int *count, int *listed, const char *what)
{
    size_t len = strlen(list), sep = *listed ? 2 : 0, add = strlen(what);
    if (*listed == *count && (*listed == 0 || len + sep + add <= DIFF_BUDGET)) {
        if (add > AD_ERROR_MSG_SIZE - 1 - len - sep) add = AD_ERROR_MSG_SIZE - 1 - len - sep;
        memcpy(list + len, "; ", sep);
        memcpy(list + len + sep, what, add);
        list[len + sep + add] = '\0';
        (*listed)++;
    }
    (*count)++;
}

static void shape_text(ad_shape s, char *out, size_t cap)
{
    size_t n = (size_t)snprintf(out, cap, "[");
    for (int i = 0; i < s.rank && n < cap; i++)
        n += (size_t)snprintf(out + n, cap - n, i ? ",%lld" : "%lld", (long long)s.dim[i]);
    if (n < cap) snprintf(out + n, cap - n, "]");
}

/* Matches the file's tensors with the model: every name, dtype and shape.
 * file_off[k] receives where the model's k-th parameter starts in the
 * file's flat block (the layout of the optimizer section). Copies when `apply`. */
static ad_status match_params(cur c, nn_params *ps, int apply, size_t *file_off, ad_error *err)
{
    char diffs[AD_ERROR_MSG_SIZE] = "";
    int n_diffs = 0, n_listed = 0;
    uint64_t at = 0; /* elements before this tensor in the file */
    uint32_t count = (uint32_t)get_uint(&c, 4);
    size_t np = nn_params_count(ps); /* once: the analyzer cannot tell it does not change */
    if (count > np + (uint64_t)(c.end - c.p)) return ad_error_set(err, AD_ERR_FORMAT, "checkpoint: bad tensor count");
    for (size_t k = 0; k < np; k++) file_off[k] = SIZE_MAX;
    for (uint32_t i = 0; i < count && !c.bad; i++) {
        char name[AD_NAME_SIZE + 1], what[512];
        uint64_t len = get_uint(&c, 2);
        const unsigned char *nm = get_bytes(&c, len);
        unsigned dtype = (unsigned)get_uint(&c, 1), rank = (unsigned)get_uint(&c, 1);
        if (c.bad || len == 0 || len > AD_NAME_SIZE - 1 || dtype > AD_F64 || rank > AD_MAX_RANK) {
            c.bad = 1;
            break;
        }
        memcpy(name, nm, len);
        name[len] = '\0';
        ad_shape shape = {(int)rank, {0, 0, 0, 0}};
        for (unsigned d = 0; d < rank; d++) shape.dim[d] = (int64_t)get_uint(&c, 8);
        size_t numel;
        if (c.bad || ad_shape_numel(shape, &numel) != AD_OK) {
            c.bad = 1;
            break;
        }
        size_t es = dtype == AD_F32 ? 4 : 8;
        if (numel > (size_t)(c.end - c.p) / es) {
            c.bad = 1;
            break;
        }
        const unsigned char *data = get_bytes(&c, numel * es);
        uint64_t start = at;
        at += numel;
        ad_param *p = nn_params_get(ps, name);
        if (!p) {
            snprintf(what, sizeof what, "'%s' is in the file, not in the model", name);
            note_diff(diffs, &n_diffs, &n_listed, what);
            continue;
        }
        for (size_t k = 0; k < np; k++)
            if (nn_params_at(ps, k) == p) {
                if (file_off[k] != SIZE_MAX) c.bad = 1; /* a name twice */
                file_off[k] = (size_t)start;
            }
        ad_tensor *v = ad_param_value(p);
        if ((ad_dtype)dtype != ad_tensor_dtype(v) || !ad_shape_equal(shape, ad_tensor_shape(v))) {
            char fs[128], ms[128];
            shape_text(shape, fs, sizeof fs);
            shape_text(ad_tensor_shape(v), ms, sizeof ms);
            snprintf(what, sizeof what, "'%s' differs: file %s %s, model %s %s", name, ad_dtype_name((ad_dtype)dtype),
                     fs, ad_dtype_name(ad_tensor_dtype(v)), ms);
            note_diff(diffs, &n_diffs, &n_listed, what);
            continue;
        }
        if (apply) {
            cur e = {data, data + numel * es, 0};
            for (size_t k = 0; k < numel; k++) {
                uint64_t u = get_uint(&e, (int)es);
                if (es == 4) {
                    uint32_t u32 = (uint32_t)u;
                    memcpy(&ad_tensor_f32(v)[k], &u32, 4);
                } else {
                    memcpy(&ad_tensor_f64(v)[k], &u, 8);
                }
            }
        }
    }
    if (!c.bad && c.p != c.end) c.bad = 1;
    for (size_t k = 0; k < np && !c.bad; k++)
        if (file_off[k] == SIZE_MAX) {
            char what[AD_NAME_SIZE + 64];
            snprintf(what, sizeof what, "'%s' is in the model, not in the file", ad_param_name(nn_params_at(ps, k)));
            note_diff(diffs, &n_diffs, &n_listed, what);
        }
    if (c.bad) return ad_error_set(err, AD_ERR_FORMAT, "checkpoint: malformed parameter section");
    if (n_diffs > n_listed)
        return ad_error_set(err, AD_ERR_MISMATCH, "checkpoint: %d difference(s) from the model: %s; and %d more",
                            n_diffs, diffs, n_diffs - n_listed);
    if (n_diffs) return ad_error_set(err, AD_ERR_MISMATCH, "checkpoint: %d difference(s) from the model: %s", n_diffs, diffs);
    return AD_OK;
}

/* Element j of a block of little-endian doubles. */
static double f64_at(const unsigned char *block, uint64_t j)
{
    cur e = {block + 8 * j, block + 8 * j + 8, 0};
    return get_f64(&e);
}

/* The state is restored parameter by parameter, by name: the file's block
 * follows the saved set's order, which need not be the model's. */
static ad_status match_optim(cur c, nn_optim *opt, nn_params *ps, const size_t *file_off, int apply, ad_error *err)
{
    uint32_t kind = (uint32_t)get_uint(&c, 4);
    double lr = get_f64(&c);
    int64_t steps = (int64_t)get_uint(&c, 8);
    uint32_t count = (uint32_t)get_uint(&c, 4);
    uint64_t numel = get_uint(&c, 8);
    int have;
    size_t want_numel;
    char why[160];
    nn_optim_state(opt, 0, &want_numel, &have);
    if (c.bad || count > 3 || numel > (uint64_t)(c.end - c.p) / 8 ||
        (uint64_t)(c.end - c.p) != (uint64_t)count * numel * 8)
        return ad_error_set(err, AD_ERR_FORMAT, "checkpoint: malformed optimizer section");
    if (kind != (uint32_t)nn_optim_config_of(opt)->kind || count != (uint32_t)have || numel != want_numel)
        return ad_error_set(err, AD_ERR_MISMATCH, "checkpoint: the optimizer in the file differs (kind or size) from the one given");
    if (!optim_scalars_ok(lr, steps, why, sizeof why))
        return ad_error_set(err, AD_ERR_FORMAT, "checkpoint: optimizer section: %s", why);
    const unsigned char *block = c.p;
    if (!apply) {
        for (uint32_t k = 0; k < count; k++)
            for (uint64_t i = 0; i < numel; i++)
                if (!state_value_ok(kind, (int)k, i, f64_at(block, k * numel + i), why, sizeof why))
                    return ad_error_set(err, AD_ERR_FORMAT, "checkpoint: %s", why);
        return AD_OK;
    }
    size_t at = 0; /* where parameter k starts in the model's block */
    for (size_t k = 0; k < nn_params_count(ps); k++) {
        size_t n = ad_tensor_numel(ad_param_value(nn_params_at(ps, k)));
        for (uint32_t b = 0; b < count; b++) {
            double *st = nn_optim_state(opt, (int)b, NULL, NULL);
            for (size_t i = 0; i < n; i++) st[at + i] = f64_at(block, b * numel + file_off[k] + i);
        }
        at += n;
    }
    nn_optim_set_steps(opt, steps);
    nn_optim_set_lr(opt, lr);
    return AD_OK;
}

static ad_status match_train(cur c, nn_train_state *ts, int apply, ad_error *err)
{
    nn_train_state t;
    memset(&t, 0, sizeof t);
    t.step = (int64_t)get_uint(&c, 8);
    t.has_rng = (int)get_uint(&c, 1);
    t.rng.state = get_uint(&c, 8);
    t.rng.inc = get_uint(&c, 8);
    t.has_schedule = (int)get_uint(&c, 1);
    uint32_t kind = (uint32_t)get_uint(&c, 4);
    t.schedule.kind = (nn_schedule_kind)(kind <= NN_SCHEDULE_WARMUP ? kind : 0);
    t.schedule.base_lr = get_f64(&c);
    t.schedule.step_size = (int64_t)get_uint(&c, 8);
    t.schedule.gamma = get_f64(&c);
    t.schedule.t_max = (int64_t)get_uint(&c, 8);
    t.schedule.eta_min = get_f64(&c);
    t.schedule.warmup = (int64_t)get_uint(&c, 8);
    t.schedule.start_factor = get_f64(&c);
    if (c.bad || c.p != c.end || t.step < 0 || t.has_rng > 1 || t.has_schedule > 1 || kind > NN_SCHEDULE_WARMUP)
        return ad_error_set(err, AD_ERR_FORMAT, "checkpoint: malformed training-state section");
    char why[160];
    if (!train_ok(&t, why, sizeof why))
        return ad_error_set(err, AD_ERR_FORMAT, "checkpoint: training-state section: %s", why);
    if (apply) *ts = t;
    return AD_OK;
}

ad_status nn_checkpoint_load(const char *path, nn_params *ps, nn_optim *opt, nn_train_state *ts,
                             ad_error *err)
{
    if (!path || !ps) return ad_error_set(err, AD_ERR_NULL, "checkpoint: load: path or parameter set is NULL");
    ad_status st = opt ? check_optim_owner(opt, ps, err) : AD_OK;
    if (st != AD_OK) return st;
    void *data;
    size_t size;
    st = ad__file_read_all(path, (size_t)1 << 40, &data, &size, err);
    if (st != AD_OK) return st;
    size_t *file_off = malloc((nn_params_count(ps) + 1) * sizeof *file_off);
    if (!file_off) {
        free(data);
        return ad_error_set(err, AD_ERR_NOMEM, "checkpoint: out of memory");
    }
    plan pl;
    st = read_frame(data, size, &pl, err);
    if (st == AD_OK && opt && !pl.has_optim)
        st = ad_error_set(err, AD_ERR_MISMATCH, "checkpoint: the file holds no optimizer state");
    if (st == AD_OK && ts && !pl.has_train)
        st = ad_error_set(err, AD_ERR_MISMATCH, "checkpoint: the file holds no training state");
    /* Two passes: validate everything, then apply. */
    for (int apply = 0; apply <= 1 && st == AD_OK; apply++) {
        st = match_params(pl.params, ps, apply, file_off, err);
        if (st == AD_OK && opt) st = match_optim(pl.optim, opt, ps, file_off, apply, err);
        if (st == AD_OK && ts) st = match_train(pl.train, ts, apply, err);
    }
    free(file_off);
    free(data);
    if (st == AD_OK && err) {
        err->code = AD_OK;
        err->msg[0] = '\0';
    }
    return st;
}

/* ---- reading a checkpoint without its model --------------------------------------------- */

/* A new set holding the file's own list of tensors (names, shapes, file
 * order), still zero: what match_params() then fills. */
static nn_params *params_of_file(cur c, ad_error *err)
{
    uint32_t count = (uint32_t)get_uint(&c, 4);
    nn_params *ps = NULL;
    for (uint32_t i = 0; i < count && !c.bad; i++) {
        char name[AD_NAME_SIZE + 1];
        uint64_t len = get_uint(&c, 2);
        const unsigned char *nm = get_bytes(&c, len);
        unsigned dtype = (unsigned)get_uint(&c, 1), rank = (unsigned)get_uint(&c, 1);
        if (c.bad || len == 0 || len > AD_NAME_SIZE - 1 || dtype > AD_F64 || rank > AD_MAX_RANK) break;
        memcpy(name, nm, len);
        name[len] = '\0';
        ad_shape shape = {(int)rank, {0, 0, 0, 0}};
        for (unsigned d = 0; d < rank; d++) shape.dim[d] = (int64_t)get_uint(&c, 8);
        size_t numel, es = dtype == AD_F32 ? 4 : 8;
        if (c.bad || ad_shape_numel(shape, &numel) != AD_OK || numel > (size_t)(c.end - c.p) / es) break;
        get_bytes(&c, numel * es);
        if (!ps && !(ps = nn_params_new((ad_dtype)dtype, err))) return NULL;
        if (nn_params_dtype(ps) != (ad_dtype)dtype) {
            nn_params_free(ps);
            ad_error_set(err, AD_ERR_FORMAT, "checkpoint: the parameters mix f32 and f64");
            return NULL;
        }
        ad_error e;
        if (!nn_params_add(ps, name, shape, &e)) {
            nn_params_free(ps);
            ad_error_set(err, e.code == AD_ERR_NOMEM ? AD_ERR_NOMEM : AD_ERR_FORMAT, "checkpoint: %s", e.msg);
            return NULL;
        }
    }
    if (c.bad || c.p != c.end) {
        nn_params_free(ps);
        ad_error_set(err, AD_ERR_FORMAT, "checkpoint: malformed parameter section");
        return NULL;
    }
    return ps ? ps : nn_params_new(AD_F32, err);
}

/* The optimizer section's scalars (kind, lr, steps, buffer layout). */
static ad_status optim_summary(cur c, nn_checkpoint_info *info, ad_error *err)
{
    uint32_t kind = (uint32_t)get_uint(&c, 4);
    info->lr = get_f64(&c);
    info->optim_steps = (int64_t)get_uint(&c, 8);
    info->optim_buffers = (int)get_uint(&c, 4);
    info->optim_numel = get_uint(&c, 8);
    if (c.bad || kind > NN_OPTIM_ADAMW)
        return ad_error_set(err, AD_ERR_FORMAT, "checkpoint: malformed optimizer section");
    info->optim_kind = (nn_optim_kind)kind;
    return AD_OK;
}

nn_params *nn_checkpoint_read_params(const char *path, nn_checkpoint_info *info, ad_error *err)
{
    if (!path) {
        ad_error_set(err, AD_ERR_NULL, "checkpoint: read: path is NULL");
        return NULL;
    }
    void *data;
    size_t size;
    if (ad__file_read_all(path, (size_t)1 << 40, &data, &size, err) != AD_OK) return NULL;
    nn_checkpoint_info in;
    memset(&in, 0, sizeof in);
    in.version = NN_CHECKPOINT_VERSION;
    in.file_bytes = size;
    plan pl;
    memset(&pl, 0, sizeof pl); /* read_frame() fills it, or fails */
    nn_params *ps = NULL;
    size_t *file_off = NULL;
    ad_status st = read_frame(data, size, &pl, err);
    if (st == AD_OK && !(ps = params_of_file(pl.params, err))) st = err ? err->code : AD_ERR_FORMAT;
    if (st == AD_OK && !(file_off = malloc((nn_params_count(ps) + 1) * sizeof *file_off)))
        st = ad_error_set(err, AD_ERR_NOMEM, "checkpoint: out of memory");
    if (st == AD_OK) st = match_params(pl.params, ps, 1, file_off, err);
    if (st == AD_OK && (in.has_optim = pl.has_optim)) st = optim_summary(pl.optim, &in, err);
    if (st == AD_OK && (in.has_train = pl.has_train)) st = match_train(pl.train, &in.train, 1, err);
    free(file_off);
    free(data);
    if (st != AD_OK) {
        nn_params_free(ps);
        return NULL;
    }
    in.n_params = nn_params_count(ps);
    in.dtype = nn_params_dtype(ps);
    if (info) *info = in;
    ad_error_set(err, AD_OK, NULL);
    return ps;
}
