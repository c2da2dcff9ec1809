/*
 * safetensors_write.c - encoding tensors as a safetensors image.
 *
 * The header is built as text in a growing buffer: names and metadata are
 * JSON-escaped (quote, backslash and control characters; other UTF-8 is
 * written as it is, after checking it is valid), and the header is padded
 * with spaces so that the data buffer starts 8-byte aligned, as the
 * format's own writer does.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "safetensors.h"

typedef struct text {
    char *s;
    size_t len, cap;
    int oom;
} text;

static void add(text *t, const char *s, size_t n)
{
    if (t->oom) return;
    if (t->len + n + 1 > t->cap) {
        size_t cap = t->cap ? t->cap : 256;
        while (cap < t->len + n + 1) cap *= 2;
        char *p = realloc(t->s, cap);
        if (!p) {
            t->oom = 1;
            return;
        }
        t->s = p, t->cap = cap;
    }
    memcpy(t->s + t->len, s, n);
    t->len += n;
    t->s[t->len] = '\0';
}

static void addf(text *t, const char *fmt, ...)
{
    char b[96];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b, sizeof b, fmt, ap);
    va_end(ap);
    add(t, b, (size_t)n);
}

static void add_string(text *t, const char *s)
{
    add(t, "\"", 1);
    for (const char *p = s; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            add(t, e, 2);
        } else if (c < 0x20) {
            addf(t, "\\u%04x", c);
        } else {
            add(t, p, 1);
        }
    }
    add(t, "\"", 1);
}

static const char *type_name(const nn_safetensors_entry *e, size_t *es)
{
    if (e->tensor) {
        *es = ad_dtype_size(ad_tensor_dtype(e->tensor));
        return ad_tensor_dtype(e->tensor) == AD_F32 ? "F32" : "F64";
    }
    static const char *names[] = {"I64", "I32", "U8", "BOOL"};
    static const size_t sizes[] = {8, 4, 1, 1};
    ad_itype ty = ad_itensor_type(e->ints);
    *es = sizes[ty];
    return names[ty];
}

/* Every name and key present, UTF-8, unique; metadata pairs strings. */
static ad_status check(const nn_safetensors_entry *entries, size_t n, const char *const *meta, size_t n_meta,
                       ad_error *err)
{
    for (size_t i = 0; i < n; i++) {
        const nn_safetensors_entry *e = &entries[i];
        if (!e->name) return ad_error_set(err, AD_ERR_NULL, "safetensors_write: entry %zu has no name", i);
        if (!e->name[0] || !nn__utf8_valid(e->name, strlen(e->name)) || strcmp(e->name, "__metadata__") == 0)
            return ad_error_set(err, AD_ERR_ARG, "safetensors_write: entry %zu: name '%.80s' is empty, not "
                                "UTF-8 or reserved", i, e->name);
        if (!e->tensor == !e->ints)
            return ad_error_set(err, AD_ERR_ARG, "safetensors_write: '%.80s' needs exactly one of tensor and ints",
                                e->name);
        if (e->ints && ad_itensor_check_range(e->ints, err) != AD_OK) return err ? err->code : AD_ERR_ARG;
        for (size_t k = 0; k < i; k++)
            if (strcmp(entries[k].name, e->name) == 0)
                return ad_error_set(err, AD_ERR_DUPLICATE, "safetensors_write: '%.80s' twice", e->name);
    }
    if (n_meta && !meta) return ad_error_set(err, AD_ERR_NULL, "safetensors_write: metadata is NULL");
    for (size_t i = 0; i < 2 * n_meta; i++) {
        if (!meta[i]) return ad_error_set(err, AD_ERR_NULL, "safetensors_write: metadata string %zu is NULL", i);
        if (!nn__utf8_valid(meta[i], strlen(meta[i])))
            return ad_error_set(err, AD_ERR_ARG, "safetensors_write: metadata string %zu is not UTF-8", i);
        if (i % 2 == 0)
            for (size_t k = 0; k < i; k += 2)
                if (strcmp(meta[k], meta[i]) == 0)
                    return ad_error_set(err, AD_ERR_DUPLICATE, "safetensors_write: metadata key '%.80s' twice",
                                        meta[i]);
    }
    return AD_OK;
}

static void put_element(unsigned char *o, const nn_safetensors_entry *e, size_t k, size_t es)
{
    uint64_t v;
    if (e->ints) {
        v = (uint64_t)ad_itensor_data((ad_itensor *)e->ints)[k];
    } else if (es == 4) {
        union {
            float f;
            uint32_t u;
        } c = {ad_tensor_f32((ad_tensor *)e->tensor)[k]};
        v = c.u;
    } else {
        union {
            double d;
            uint64_t u;
        } c = {ad_tensor_f64((ad_tensor *)e->tensor)[k]};
        v = c.u;
    }
    for (size_t b = 0; b < es; b++) o[b] = (unsigned char)(v >> (8 * b));
}

ad_status nn_safetensors_write(const nn_safetensors_entry *entries, size_t n, const char *const *metadata,
                               size_t n_meta, void **out, size_t *size, ad_error *err)
{
    if ((!entries && n) || !out || !size)
        return ad_error_set(err, AD_ERR_NULL, "safetensors_write: %s is NULL", !out || !size ? "output" : "entries");
    ad_status st = check(entries, n, metadata, n_meta, err);
    if (st != AD_OK) return st;
    text h = {0};
    add(&h, "{", 1);
    if (n_meta) {
        add(&h, "\"__metadata__\":{", 16);
        for (size_t i = 0; i < n_meta; i++) {
            if (i) add(&h, ",", 1);
            add_string(&h, metadata[2 * i]);
            add(&h, ":", 1);
            add_string(&h, metadata[2 * i + 1]);
        }
        add(&h, "}", 1);
    }
    uint64_t at = 0;
    for (size_t i = 0; i < n; i++) {
        const nn_safetensors_entry *e = &entries[i];
        size_t es;
        const char *dt = type_name(e, &es);
        ad_shape s = e->tensor ? ad_tensor_shape(e->tensor) : ad_itensor_shape(e->ints);
        size_t numel = e->tensor ? ad_tensor_numel(e->tensor) : ad_itensor_numel(e->ints);
        if (i || n_meta) add(&h, ",", 1);
        add_string(&h, e->name);
        addf(&h, ":{\"dtype\":\"%s\",\"shape\":[", dt);
        for (int d = 0; d < s.rank; d++) addf(&h, d ? ",%" PRId64 : "%" PRId64, s.dim[d]);
        addf(&h, "],\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}", at, at + (uint64_t)(numel * es));
        at += (uint64_t)(numel * es);
    }
    add(&h, "}", 1);
    while (!h.oom && h.len % 8) add(&h, " ", 1);
    size_t total = 8 + h.len + (size_t)at;
    unsigned char *b = h.oom ? NULL : malloc(total);
    if (!b) {
        free(h.s);
        return ad_error_set(err, AD_ERR_NOMEM, "safetensors_write: out of memory");
    }
    for (int k = 0; k < 8; k++) b[k] = (unsigned char)((uint64_t)h.len >> (8 * k));
    memcpy(b + 8, h.s, h.len);
    unsigned char *o = b + 8 + h.len;
    for (size_t i = 0; i < n; i++) {
        size_t es, numel = entries[i].tensor ? ad_tensor_numel(entries[i].tensor) : ad_itensor_numel(entries[i].ints);
        type_name(&entries[i], &es);
        for (size_t k = 0; k < numel; k++, o += es) put_element(o, &entries[i], k, es);
    }
    free(h.s);
    *out = b;
    *size = total;
    return ad_error_set(err, AD_OK, NULL);
}

ad_status nn_safetensors_save(const char *path, const nn_safetensors_entry *entries, size_t n,
                              const char *const *metadata, size_t n_meta, ad_error *err)
{
    if (!path) return ad_error_set(err, AD_ERR_NULL, "safetensors_save: path is NULL");
    void *buf = NULL;
    size_t size = 0;
    ad_status st = nn_safetensors_write(entries, n, metadata, n_meta, &buf, &size, err);
    if (st != AD_OK) return st;
    st = ad__file_write_atomic(path, buf, size, err);
    free(buf);
    return st;
}

ad_status nn_params_save_safetensors(const nn_params *ps, const char *path, const char *const *metadata,
                                     size_t n_meta, ad_error *err)
{
    if (!ps) return ad_error_set(err, AD_ERR_NULL, "safetensors_save: parameter set is NULL");
    size_t n = nn_params_count(ps);
    nn_safetensors_entry *e = calloc(n ? n : 1, sizeof *e);
    if (!e) return ad_error_set(err, AD_ERR_NOMEM, "safetensors_save: out of memory");
    for (size_t i = 0; i < n; i++) {
        ad_param *p = nn_params_at(ps, i);
        e[i].name = ad_param_name(p);
        e[i].tensor = ad_param_value(p);
    }
    ad_status st = nn_safetensors_save(path, e, n, metadata, n_meta, err);
    free(e);
    return st;
}
