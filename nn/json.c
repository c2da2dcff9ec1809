/*
 * json.c - a small strict JSON parser for safetensors headers.
 *
 * The input comes from files that may be corrupt or hostile, so the parser
 * accepts RFC 8259 and nothing more, never reads past `len`, and bounds its
 * memory before parsing: every value takes at least one byte of input, so
 * `len` nodes suffice, and a decoded string is never longer than its escaped
 * form, so `len` bytes (plus one NUL per string) hold them all. Nesting is
 * limited, so the recursion depth is too.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

typedef struct parser {
    const unsigned char *p, *start, *end;
    nn__json_doc *doc;
    size_t cap, used_str;
    ad_error *err;
} parser;

static ad_status fail(parser *ps, const char *what)
{
    return ad_error_set(ps->err, AD_ERR_FORMAT, "json: %s at byte %zu", what,
                        (size_t)(ps->p - ps->start));
}

static void skip_ws(parser *ps)
{
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
        ps->p++;
}

/* Length of the UTF-8 sequence at s (at most n bytes), 0 when invalid. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    if (c < 0x80) return 1;
    size_t k;
    unsigned cp, min;
    if (c >= 0xC2 && c <= 0xDF) k = 2, cp = c & 0x1F, min = 0x80;
    else if (c >= 0xE0 && c <= 0xEF) k = 3, cp = c & 0x0F, min = 0x800;
    else if (c >= 0xF0 && c <= 0xF4) k = 4, cp = c & 0x07, min = 0x10000;
    else return 0;
    if (n < k) return 0;
    for (size_t i = 1; i < k; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = cp << 6 | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return k;
}

int nn__utf8_valid(const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < len;) {
        size_t k = utf8_seq(u + i, len - i);
        if (!k) return 0;
        i += k;
    }
    return 1;
}

static int hex4(const unsigned char *s, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned c = s[i], d;
        if (c >= '0' && c <= '9') d = c - '0';
        else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
        else return 0;
        v = v << 4 | d;
    }
    *out = v;
    return 1;
}

static size_t put_utf8(char *o, unsigned cp)
{
    if (cp < 0x80) return (size_t)(o[0] = (char)cp, 1);
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | cp >> 6), o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | cp >> 12), o[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | cp >> 18), o[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    o[2] = (char)(0x80 | (cp >> 6 & 0x3F)), o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* A string at ps->p (the opening quote), decoded into the string pool. */
static ad_status parse_string(parser *ps, const char **out, size_t *out_len)
{
    char *o = ps->doc->strings + ps->used_str, *o0 = o;
    ps->p++;
    for (;;) {
        if (ps->p >= ps->end) return fail(ps, "unterminated string");
        unsigned c = *ps->p;
        if (c == '"') break;
        if (c < 0x20) return fail(ps, "control character in a string");
        if (c != '\\') {
            size_t k = utf8_seq(ps->p, (size_t)(ps->end - ps->p));
            if (!k) return fail(ps, "invalid UTF-8 in a string");
            memcpy(o, ps->p, k);
            o += k, ps->p += k;
            continue;
        }
        if (ps->end - ps->p < 2) return fail(ps, "unterminated escape");
        c = ps->p[1];
        static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
        const char *hit = c ? strchr(from, (int)c) : NULL;
        if (hit) {
            *o++ = to[hit - from];
            ps->p += 2;
            continue;
        }
        unsigned cp, lo;
        if (c != 'u' || ps->end - ps->p < 6 || !hex4(ps->p + 2, &cp)) return fail(ps, "bad escape");
        ps->p += 6;
        if (cp >= 0xDC00 && cp <= 0xDFFF) return fail(ps, "lone low surrogate");
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (ps->end - ps->p < 6 || ps->p[0] != '\\' || ps->p[1] != 'u' || !hex4(ps->p + 2, &lo) ||
                lo < 0xDC00 || lo > 0xDFFF)
                return fail(ps, "lone high surrogate");
            ps->p += 6;
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        }
        o += put_utf8(o, cp);
    }
    ps->p++;
    *o = '\0';
    *out = o0;
    *out_len = (size_t)(o - o0);
    ps->used_str += *out_len + 1;
    return AD_OK;
}

static int digit(parser *ps) { return ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9'; }

static ad_status parse_number(parser *ps, nn__json *n)
{
    const unsigned char *s = ps->p;
    if (ps->p < ps->end && *ps->p == '-') ps->p++;
    if (!digit(ps)) return fail(ps, "bad number");
    if (*ps->p == '0') {
        ps->p++;
        if (digit(ps)) return fail(ps, "leading zero in a number");
    } else {
        while (digit(ps)) ps->p++;
    }
    if (ps->p < ps->end && *ps->p == '.') {
        ps->p++;
        if (!digit(ps)) return fail(ps, "bad fraction");
        while (digit(ps)) ps->p++;
    }
    if (ps->p < ps->end && (*ps->p == 'e' || *ps->p == 'E')) {
        ps->p++;
        if (ps->p < ps->end && (*ps->p == '+' || *ps->p == '-')) ps->p++;
        if (!digit(ps)) return fail(ps, "bad exponent");
        while (digit(ps)) ps->p++;
    }
    n->type = NN__JSON_NUMBER;
    n->str = (const char *)s;
    n->len = (size_t)(ps->p - s);
    return AD_OK;
}

static ad_status parse_value(parser *ps, size_t at, int depth);

static int key_cmp(const void *a, const void *b)
{
    const nn__json *x = *(const nn__json *const *)a, *y = *(const nn__json *const *)b;
    size_t n = x->key_len < y->key_len ? x->key_len : y->key_len;
    int c = memcmp(x->key, y->key, n);
    return c ? c : (x->key_len > y->key_len) - (x->key_len < y->key_len);
}

/* Duplicate keys are found by sorting (a comparison per pair would make a
 * header of many keys a quadratic hang). */
static ad_status check_duplicates(parser *ps, size_t at)
{
    nn__json_doc *d = ps->doc;
    size_t n = d->nodes[at].count;
    if (n < 2) return AD_OK;
    const nn__json **keys = malloc(n * sizeof *keys);
    if (!keys) return ad_error_set(ps->err, AD_ERR_NOMEM, "json: out of memory checking %zu keys", n);
    size_t k = 0;
    for (size_t c = d->nodes[at].child; c; c = d->nodes[c].next) keys[k++] = &d->nodes[c];
    qsort(keys, n, sizeof *keys, key_cmp);
    ad_status st = AD_OK;
    for (size_t i = 1; i < n && st == AD_OK; i++)
        if (key_cmp(&keys[i - 1], &keys[i]) == 0)
            st = ad_error_set(ps->err, AD_ERR_DUPLICATE, "json: duplicate key '%.80s' in an object",
                              keys[i]->key);
    free(keys);
    return st;
}

/* Members of an object or elements of an array, after the opening bracket. */
static ad_status parse_children(parser *ps, size_t at, int depth, int object)
{
    nn__json_doc *d = ps->doc;
    size_t last = 0;
    char close = object ? '}' : ']';
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == close) {
        ps->p++;
        return AD_OK;
    }
    for (;;) {
        const char *key = NULL;
        size_t key_len = 0;
        skip_ws(ps);
        if (object) {
            if (ps->p >= ps->end || *ps->p != '"') return fail(ps, "expected a key");
            ad_status st = parse_string(ps, &key, &key_len);
            if (st != AD_OK) return st;
            skip_ws(ps);
            if (ps->p >= ps->end || *ps->p != ':') return fail(ps, "expected ':'");
            ps->p++;
        }
        size_t child = d->count;
        ad_status st = parse_value(ps, child, depth + 1);
        if (st != AD_OK) return st;
        d->nodes[child].key = key;
        d->nodes[child].key_len = key_len;
        if (last) d->nodes[last].next = child;
        else d->nodes[at].child = child;
        last = child;
        d->nodes[at].count++;
        skip_ws(ps);
        if (ps->p < ps->end && *ps->p == ',') {
            ps->p++;
            continue;
        }
        if (ps->p < ps->end && *ps->p == close) {
            ps->p++;
            return object ? check_duplicates(ps, at) : AD_OK;
        }
        return fail(ps, object ? "expected ',' or '}'" : "expected ',' or ']'");
    }
}

static int word(parser *ps, const char *w)
{
    size_t n = strlen(w);
    if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, w, n) != 0) return 0;
    ps->p += n;
    return 1;
}

/* Parses one value into node `at` (the next free node). */
static ad_status parse_value(parser *ps, size_t at, int depth)
{
    if (depth > NN__JSON_MAX_DEPTH) return fail(ps, "nesting too deep");
    skip_ws(ps);
    if (ps->p >= ps->end) return fail(ps, "expected a value");
    if (at >= ps->cap) return fail(ps, "too many values"); /* unreachable: a value takes a byte */
    nn__json *n = &ps->doc->nodes[at];
    memset(n, 0, sizeof *n);
    ps->doc->count = at + 1;
    switch (*ps->p) {
    case '{':
    case '[': {
        int object = *ps->p == '{';
        n->type = object ? NN__JSON_OBJECT : NN__JSON_ARRAY;
        ps->p++;
        return parse_children(ps, at, depth, object);
    }
    case '"':
        n->type = NN__JSON_STRING;
        return parse_string(ps, &n->str, &n->len);
    case 't': n->type = NN__JSON_TRUE; return word(ps, "true") ? AD_OK : fail(ps, "bad literal");
    case 'f': n->type = NN__JSON_FALSE; return word(ps, "false") ? AD_OK : fail(ps, "bad literal");
    case 'n': n->type = NN__JSON_NULL; return word(ps, "null") ? AD_OK : fail(ps, "bad literal");
    default: return parse_number(ps, n);
    }
}

ad_status nn__json_parse(const char *text, size_t len, nn__json_doc *doc, ad_error *err)
{
    if (!doc) return ad_error_set(err, AD_ERR_NULL, "json: document is NULL");
    memset(doc, 0, sizeof *doc);
    if (!text) return ad_error_set(err, AD_ERR_NULL, "json: text is NULL");
    if (len == 0) return ad_error_set(err, AD_ERR_FORMAT, "json: empty text");
    size_t node_bytes;
    if (__builtin_mul_overflow(len, sizeof(nn__json), &node_bytes) || len > SIZE_MAX / 2)
        return ad_error_set(err, AD_ERR_OVERFLOW, "json: text too long");
    doc->nodes = malloc(node_bytes);
    doc->strings = malloc(len + 1);
    if (!doc->nodes || !doc->strings) {
        nn__json_free(doc);
        return ad_error_set(err, AD_ERR_NOMEM, "json: cannot allocate for %zu bytes of text", len);
    }
    parser ps = {(const unsigned char *)text, (const unsigned char *)text,
                 (const unsigned char *)text + len, doc, len, 0, err};
    ad_status st = parse_value(&ps, 0, 0);
    if (st == AD_OK) {
        skip_ws(&ps);
        if (ps.p != ps.end) st = fail(&ps, "unexpected text after the value");
    }
    if (st != AD_OK) {
        nn__json_free(doc);
        return st;
    }
    return ad_error_set(err, AD_OK, NULL);
}

void nn__json_free(nn__json_doc *doc)
{
    if (!doc) return;
    free(doc->nodes);
    free(doc->strings);
    memset(doc, 0, sizeof *doc);
}

int nn__json_uint(const nn__json *n, uint64_t *out)
{
    if (!n || n->type != NN__JSON_NUMBER || n->len == 0 || n->len > 19) return 0;
    uint64_t v = 0;
    for (size_t i = 0; i < n->len; i++) {
        char c = n->str[i];
        if (c < '0' || c > '9') return 0;
        v = v * 10 + (uint64_t)(c - '0');
    }
    if (v > (uint64_t)INT64_MAX) return 0;
    *out = v;
    return 1;
}
