/*
 * safetensors.c - strict reader and writer of safetensors files.
 *
 * Reading validates everything up front, so the accessors cannot fail on
 * the file's account: the header size against the real size, the JSON
 * (json.c), each entry's keys and values, each byte size against its shape,
 * and that the entries' [begin, end) ranges tile the data buffer exactly
 * (sorted by offset, each begins where the previous ended, the last ends at
 * the end of the file). Tiling refuses overlaps, gaps and trailing bytes in
 * one rule, and is what the format's own reader requires.
 */
#include "safetensors.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

typedef struct st_dtype {
    const char *name;
    size_t size;
    int is_int;
    ad_itype itype;
} st_dtype;

enum { DT_F32, DT_F64, DT_BF16, DT_F16, DT_I64, DT_I32, DT_U8, DT_BOOL, DT_COUNT };

static const st_dtype dtypes[DT_COUNT] = {
    [DT_F32] = {"F32", 4, 0, AD_I64},   [DT_F64] = {"F64", 8, 0, AD_I64},
    [DT_BF16] = {"BF16", 2, 0, AD_I64}, [DT_F16] = {"F16", 2, 0, AD_I64},
    [DT_I64] = {"I64", 8, 1, AD_I64},   [DT_I32] = {"I32", 4, 1, AD_I32},
    [DT_U8] = {"U8", 1, 1, AD_U8},      [DT_BOOL] = {"BOOL", 1, 1, AD_BOOL},
};

typedef struct st_entry {
    const char *name;
    int dt;
    ad_shape shape;
    size_t numel;
    uint64_t begin, end;
} st_entry;

struct nn_safetensors {
    unsigned char *buf; /* the whole file */
    const unsigned char *data;
    size_t data_len;
    nn__json_doc doc;
    st_entry *e;
    size_t n;
    size_t meta; /* node of the "__metadata__" object, 0 if none */
};

/* ---- reading ---------------------------------------------------------------------- */

static const nn__json *member(const nn__json_doc *d, const nn__json *obj, const char *key)
{
    for (size_t c = obj->child; c; c = d->nodes[c].next)
        if (strcmp(d->nodes[c].key, key) == 0 && strlen(key) == d->nodes[c].key_len) return &d->nodes[c];
    return NULL;
}

static ad_status parse_entry(nn_safetensors *st, const nn__json *v, st_entry *e, ad_error *err)
{
    const nn__json_doc *d = &st->doc;
    const char *nm = e->name;
    if (v->type != NN__JSON_OBJECT)
        return ad_error_set(err, AD_ERR_FORMAT, "safetensors: '%.80s' is not an object", nm);
    const nn__json *dt = member(d, v, "dtype"), *sh = member(d, v, "shape"), *off = member(d, v, "data_offsets");
    if (!dt || !sh || !off || v->count != 3)
        return ad_error_set(err, AD_ERR_FORMAT,
                            "safetensors: '%.80s' must have exactly 'dtype', 'shape' and 'data_offsets'", nm);
    if (dt->type != NN__JSON_STRING)
        return ad_error_set(err, AD_ERR_FORMAT, "safetensors: '%.80s': 'dtype' is not a string", nm);
    e->dt = -1;
    for (int k = 0; k < DT_COUNT; k++)
        if (strcmp(dt->str, dtypes[k].name) == 0 && dt->len == strlen(dtypes[k].name)) e->dt = k;
    if (e->dt < 0)
        return ad_error_set(err, AD_ERR_DTYPE,
                            "safetensors: '%.80s': dtype '%.16s' is not supported (F32, F64, BF16, F16, I64, "
                            "I32, U8, BOOL)", nm, dt->str);
    if (sh->type != NN__JSON_ARRAY)
        return ad_error_set(err, AD_ERR_FORMAT, "safetensors: '%.80s': 'shape' is not an array", nm);
    if (sh->count > AD_MAX_RANK)
        return ad_error_set(err, AD_ERR_RANK, "safetensors: '%.80s': rank %zu is above %d", nm, sh->count,
                            AD_MAX_RANK);
    memset(&e->shape, 0, sizeof e->shape);
    for (size_t c = sh->child; c; c = d->nodes[c].next) {
        uint64_t x;
        if (!nn__json_uint(&d->nodes[c], &x))
            return ad_error_set(err, AD_ERR_FORMAT, "safetensors: '%.80s': a size is not a non-negative integer",
                                nm);
        e->shape.dim[e->shape.rank++] = (int64_t)x;
    }
    ad_status s = ad_shape_numel(e->shape, &e->numel);
    if (s != AD_OK) return ad_error_set(err, AD_ERR_OVERFLOW, "safetensors: '%.80s': shape is too large", nm);
    if (off->type != NN__JSON_ARRAY || off->count != 2 || !nn__json_uint(&d->nodes[off->child], &e->begin) ||
        !nn__json_uint(&d->nodes[d->nodes[off->child].next], &e->end))
        return ad_error_set(err, AD_ERR_FORMAT, "safetensors: '%.80s': 'data_offsets' is not [begin, end]", nm);
    if (e->begin > e->end || e->end > st->data_len)
        return ad_error_set(err, AD_ERR_FORMAT,
                            "safetensors: '%.80s': offsets [%" PRIu64 ", %" PRIu64 "] outside the %zu data bytes",
                            nm, e->begin, e->end, st->data_len);
    size_t bytes;
    if (__builtin_mul_overflow(e->numel, dtypes[e->dt].size, &bytes) || bytes != e->end - e->begin) {
        char b[64];
        return ad_error_set(err, AD_ERR_FORMAT,
                            "safetensors: '%.80s': %s %s needs %zu bytes, offsets give %" PRIu64, nm,
                            dtypes[e->dt].name, ad_shape_format(e->shape, b, sizeof b),
                            e->numel * dtypes[e->dt].size, e->end - e->begin);
    }
    if (e->dt == DT_BOOL)
        for (size_t i = 0; i < e->numel; i++)
            if (st->data[e->begin + i] > 1)
                return ad_error_set(err, AD_ERR_FORMAT, "safetensors: '%.80s': boolean element %zu is %u", nm, i,
                                    (unsigned)st->data[e->begin + i]);
    return AD_OK;
}

static ad_status parse_metadata(nn_safetensors *st, size_t node, ad_error *err)
{
    const nn__json_doc *d = &st->doc;
    if (d->nodes[node].type != NN__JSON_OBJECT)
        return ad_error_set(err, AD_ERR_FORMAT, "safetensors: '__metadata__' is not an object");
    for (size_t c = d->nodes[node].child; c; c = d->nodes[c].next)
        if (d->nodes[c].type != NN__JSON_STRING)
            return ad_error_set(err, AD_ERR_FORMAT, "safetensors: metadata '%.80s' is not a string",
                                d->nodes[c].key);
    st->meta = node;
    return AD_OK;
}

typedef struct span {
    uint64_t begin, end;
    size_t i;
} span;

static int span_cmp(const void *a, const void *b)
{
    const span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return (x->end > y->end) - (x->end < y->end);
}

/* The entries must tile [0, data_len): see the top of this file. */
static ad_status check_tiling(nn_safetensors *st, ad_error *err)
{
    span *s = malloc((st->n ? st->n : 1) * sizeof *s);
    if (!s) return ad_error_set(err, AD_ERR_NOMEM, "safetensors: out of memory");
    for (size_t i = 0; i < st->n; i++) s[i] = (span){st->e[i].begin, st->e[i].end, i};
    qsort(s, st->n, sizeof *s, span_cmp);
    uint64_t at = 0;
    ad_status r = AD_OK;
    for (size_t k = 0; k < st->n && r == AD_OK; k++) {
        if (s[k].begin < at)
            r = ad_error_set(err, AD_ERR_FORMAT, "safetensors: '%.80s' overlaps '%.80s'", st->e[s[k].i].name,
                             st->e[s[k - 1].i].name);
        else if (s[k].begin > at)
            r = ad_error_set(err, AD_ERR_FORMAT, "safetensors: %" PRIu64 " unused bytes before '%.80s'",
                             s[k].begin - at, st->e[s[k].i].name);
        at = s[k].end;
    }
    if (r == AD_OK && at != st->data_len)
        r = ad_error_set(err, AD_ERR_FORMAT, "safetensors: %" PRIu64 " unexpected bytes after the last tensor",
                         (uint64_t)st->data_len - at);
    free(s);
    return r;
}

/* Takes ownership of buf (the whole file). */
static nn_safetensors *parse(unsigned char *buf, size_t size, ad_error *err)
{
    if (size < 8) {
        free(buf);
        ad_error_set(err, AD_ERR_FORMAT, "safetensors: %zu bytes is too short for the header size", size);
        return NULL;
    }
    uint64_t n = 0;
    for (int b = 0; b < 8; b++) n |= (uint64_t)buf[b] << (8 * b);
    ad_status r = AD_OK;
    if (n > size - 8)
        r = ad_error_set(err, AD_ERR_FORMAT, "safetensors: header size %" PRIu64 " exceeds the file (%zu bytes)",
                         n, size);
    else if (n > NN_SAFETENSORS_MAX_HEADER)
        r = ad_error_set(err, AD_ERR_FORMAT, "safetensors: header size %" PRIu64 " exceeds the %u allowed", n,
                         NN_SAFETENSORS_MAX_HEADER);
    else if (n < 2 || buf[8] != '{')
        r = ad_error_set(err, AD_ERR_FORMAT, "safetensors: the header is not a JSON object");
    nn_safetensors *st = r == AD_OK ? calloc(1, sizeof *st) : NULL;
    if (r == AD_OK && !st) r = ad_error_set(err, AD_ERR_NOMEM, "safetensors: out of memory");
    if (r != AD_OK) {
        free(buf);
        return NULL;
    }
    st->buf = buf;
    st->data = buf + 8 + n;
    st->data_len = size - 8 - (size_t)n;
    r = nn__json_parse((const char *)buf + 8, (size_t)n, &st->doc, err);
    if (r == AD_OK && st->doc.nodes[0].type != NN__JSON_OBJECT)
        r = ad_error_set(err, AD_ERR_FORMAT, "safetensors: the header is not a JSON object");
    const nn__json_doc *d = &st->doc;
    if (r == AD_OK) {
        st->e = calloc(d->nodes[0].count ? d->nodes[0].count : 1, sizeof *st->e);
        if (!st->e) r = ad_error_set(err, AD_ERR_NOMEM, "safetensors: out of memory");
    }
    for (size_t c = r == AD_OK ? d->nodes[0].child : 0; c && r == AD_OK; c = d->nodes[c].next) {
        const nn__json *v = &d->nodes[c];
        if (strcmp(v->key, "__metadata__") == 0 && v->key_len == 12) {
            r = parse_metadata(st, c, err);
        } else if (v->key_len == 0 || strlen(v->key) != v->key_len) {
            r = ad_error_set(err, AD_ERR_FORMAT, "safetensors: a tensor name is empty or holds a NUL");
        } else {
            st->e[st->n].name = v->key;
            r = parse_entry(st, v, &st->e[st->n], err);
            st->n++;
        }
    }
    if (r == AD_OK) r = check_tiling(st, err);
    if (r != AD_OK) {
        nn_safetensors_free(st);
        return NULL;
    }
    ad_error_set(err, AD_OK, NULL);
    return st;
}

nn_safetensors *nn_safetensors_read(const void *data, size_t size, ad_error *err)
{
    if (!data) {
        ad_error_set(err, AD_ERR_NULL, "safetensors: data is NULL");
        return NULL;
    }
    unsigned char *copy = malloc(size ? size : 1);
    if (!copy) {
        ad_error_set(err, AD_ERR_NOMEM, "safetensors: cannot allocate %zu bytes", size);
        return NULL;
    }
    memcpy(copy, data, size);
    return parse(copy, size, err);
}

/* Files larger than this are refused before reading. */
#define ST_MAX_FILE ((size_t)1 << 40)

nn_safetensors *nn_safetensors_open(const char *path, ad_error *err)
{
    void *buf;
    size_t size;
    if (ad__file_read_all(path, ST_MAX_FILE, &buf, &size, err) != AD_OK) return NULL;
    nn_safetensors *st = parse(buf, size, err);
    if (!st && err) {
        size_t used = strlen(err->msg);
        snprintf(err->msg + used, sizeof err->msg - used, " (in '%s')", path);
    }
    return st;
}

void nn_safetensors_free(nn_safetensors *st)
{
    if (!st) return;
    nn__json_free(&st->doc);
    free(st->e);
    free(st->buf);
    free(st);
}

/* ---- accessors -------------------------------------------------------------------- */

size_t nn_safetensors_count(const nn_safetensors *st) { return st ? st->n : 0; }

const char *nn_safetensors_name(const nn_safetensors *st, size_t i)
{
    return st && i < st->n ? st->e[i].name : NULL;
}

long nn_safetensors_find(const nn_safetensors *st, const char *name)
{
    for (size_t i = 0; st && name && i < st->n; i++)
        if (strcmp(st->e[i].name, name) == 0) return (long)i;
    return -1;
}

const char *nn_safetensors_dtype(const nn_safetensors *st, size_t i)
{
    return st && i < st->n ? dtypes[st->e[i].dt].name : NULL;
}

int nn_safetensors_is_int(const nn_safetensors *st, size_t i)
{
    return st && i < st->n ? dtypes[st->e[i].dt].is_int : 0;
}

ad_shape nn_safetensors_shape(const nn_safetensors *st, size_t i)
{
    return st && i < st->n ? st->e[i].shape : ad_shape0();
}

static uint64_t get_le(const unsigned char *p, size_t n)
{
    uint64_t v = 0;
    for (size_t b = 0; b < n; b++) v |= (uint64_t)p[b] << (8 * b);
    return v;
}

/* IEEE half to double, exactly (every half is a double): subnormals,
 * infinities and NaN included. */
static double half_value(unsigned h)
{
    unsigned e = h >> 10 & 0x1F, m = h & 0x3FF;
    double v;
    if (e == 0) v = (double)m / 1024.0 / 16384.0; /* m * 2^-24 */
    else if (e == 31) v = m ? (double)NAN : (double)INFINITY;
    else v = (1.0 + (double)m / 1024.0) * ldexp(1.0, (int)e - 15);
    return h & 0x8000 ? -v : v;
}

static double element(int dt, const unsigned char *p)
{
    uint64_t v = get_le(p, dtypes[dt].size);
    union {
        uint32_t u;
        float f;
    } f32;
    union {
        uint64_t u;
        double d;
    } f64;
    switch (dt) {
    case DT_F32: f32.u = (uint32_t)v; return f32.f;
    case DT_F64: f64.u = v; return f64.d;
    case DT_BF16: f32.u = (uint32_t)v << 16; return f32.f; /* bf16 is the top half of an f32 */
    default: return half_value((unsigned)v);
    }
}

ad_tensor *nn_safetensors_tensor(const nn_safetensors *st, size_t i, ad_dtype dtype, ad_error *err)
{
    if (!st) {
        ad_error_set(err, AD_ERR_NULL, "safetensors: file is NULL");
        return NULL;
    }
    if (i >= st->n) {
        ad_error_set(err, AD_ERR_ARG, "safetensors: entry %zu of %zu", i, st->n);
        return NULL;
    }
    const st_entry *e = &st->e[i];
    if (dtypes[e->dt].is_int) {
        ad_error_set(err, AD_ERR_DTYPE, "safetensors: '%.80s' holds integers (%s): read it with "
                     "nn_safetensors_ints()", e->name, dtypes[e->dt].name);
        return NULL;
    }
    ad_tensor *x = ad_tensor_new(dtype, e->shape, err);
    if (!x) return NULL;
    const unsigned char *p = st->data + e->begin;
    size_t es = dtypes[e->dt].size;
    for (size_t k = 0; k < e->numel; k++) {
        double v = element(e->dt, p + k * es);
        if (dtype == AD_F32) ad_tensor_f32(x)[k] = (float)v;
        else ad_tensor_f64(x)[k] = v;
    }
    return x;
}

ad_itensor *nn_safetensors_ints(const nn_safetensors *st, size_t i, ad_error *err)
{
    if (!st) {
        ad_error_set(err, AD_ERR_NULL, "safetensors: file is NULL");
        return NULL;
    }
    if (i >= st->n) {
        ad_error_set(err, AD_ERR_ARG, "safetensors: entry %zu of %zu", i, st->n);
        return NULL;
    }
    const st_entry *e = &st->e[i];
    if (!dtypes[e->dt].is_int) {
        ad_error_set(err, AD_ERR_DTYPE, "safetensors: '%.80s' holds floats (%s): read it with "
                     "nn_safetensors_tensor()", e->name, dtypes[e->dt].name);
        return NULL;
    }
    ad_itensor *x = ad_itensor_new(dtypes[e->dt].itype, e->shape, err);
    if (!x) return NULL;
    size_t es = dtypes[e->dt].size;
    for (size_t k = 0; k < e->numel; k++) {
        uint64_t v = get_le(st->data + e->begin + k * es, es);
        ad_itensor_data(x)[k] = es == 4 ? (int64_t)(int32_t)(uint32_t)v : (int64_t)v;
    }
    return x;
}

size_t nn_safetensors_metadata_count(const nn_safetensors *st)
{
    return st && st->meta ? st->doc.nodes[st->meta].count : 0;
}

const char *nn_safetensors_metadata_at(const nn_safetensors *st, size_t i, const char **value)
{
    if (value) *value = NULL;
    if (!st || !st->meta) return NULL;
    size_t c = st->doc.nodes[st->meta].child;
    for (size_t k = 0; c && k < i; k++) c = st->doc.nodes[c].next;
    if (!c) return NULL;
    if (value) *value = st->doc.nodes[c].str;
    return st->doc.nodes[c].key;
}

const char *nn_safetensors_metadata(const nn_safetensors *st, const char *key)
{
    if (!st || !st->meta || !key) return NULL;
    const nn__json *m = member(&st->doc, &st->doc.nodes[st->meta], key);
    return m ? m->str : NULL;
}
