/*
 * npy.c - strict reader and writer of NumPy .npy files (versions 1.0, 2.0).
 *
 * A file is: "\x93NUMPY", major, minor, header length (2 bytes LE in 1.0,
 * 4 in 2.0), an ASCII Python dict literal padded with spaces and ended by
 * '\n', then the raw elements. The dict must hold exactly 'descr',
 * 'fortran_order' and 'shape'. The header code is shared with the integer
 * files of npy_int.c.
 */
#include "npy.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fileio.h"
#include "internal.h"

static const char magic[6] = {'\x93', 'N', 'U', 'M', 'P', 'Y'};

/* ---- header parsing ------------------------------------------------------------------ */

typedef struct cursor {
    const char *p, *end;
} cursor;

static void skip_space(cursor *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t')) c->p++;
}

static int accept(cursor *c, char ch)
{
    skip_space(c);
    if (c->p < c->end && *c->p == ch) {
        c->p++;
        return 1;
    }
    return 0;
}

/* A quoted string (single or double quotes, no escapes) into out. */
static int parse_string(cursor *c, char *out, size_t cap)
{
    skip_space(c);
    if (c->p >= c->end || (*c->p != '\'' && *c->p != '"')) return 0;
    char q = *c->p++;
    size_t n = 0;
    while (c->p < c->end && *c->p != q) {
        if (n + 1 >= cap) return 0;
        out[n++] = *c->p++;
    }
    if (c->p >= c->end) return 0;
    c->p++;
    out[n] = '\0';
    return 1;
}

static int parse_word(cursor *c, const char *w)
{
    skip_space(c);
    size_t n = strlen(w);
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, w, n) != 0) return 0;
    c->p += n;
    return 1;
}

/* A non-negative decimal size, at most 2^62. */
static int parse_size(cursor *c, int64_t *out)
{
    skip_space(c);
    int64_t v = 0;
    int digits = 0;
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
        if (v > ((int64_t)1 << 62) / 10) return 0;
        v = v * 10 + (*c->p++ - '0');
        digits++;
    }
    *out = v;
    return digits > 0;
}

/* (a, b, ...) with an optional trailing comma; () is rank 0. */
static ad_status parse_shape(cursor *c, ad_shape *s, ad_error *err)
{
    if (!accept(c, '(')) return ad_error_set(err, AD_ERR_FORMAT, "npy: 'shape' is not a tuple");
    s->rank = 0;
    for (int i = 0; i < AD_MAX_RANK; i++) s->dim[i] = 0;
    while (!accept(c, ')')) {
        int64_t d;
        if (!parse_size(c, &d))
            return ad_error_set(err, AD_ERR_FORMAT, "npy: 'shape' holds a bad size");
        if (s->rank == AD_MAX_RANK)
            return ad_error_set(err, AD_ERR_RANK, "npy: rank above %d is not supported",
                                 AD_MAX_RANK);
        s->dim[s->rank++] = d;
        if (!accept(c, ',') && !(skip_space(c), c->p < c->end && *c->p == ')'))
            return ad_error_set(err, AD_ERR_FORMAT, "npy: 'shape' tuple is malformed");
    }
    return AD_OK;
}

/* The element types of .npy files that unroll reads: floats for tensors,
 * integers and booleans for ad_itensor (npy_int.c). */
static const struct {
    const char *descr;
    ad__npy_elem elem;
    size_t size;
} descrs[] = {
    {"<f4", AD__NPY_F4, 4}, {"<f8", AD__NPY_F8, 8}, {"<i8", AD__NPY_I8, 8},
    {"<i4", AD__NPY_I4, 4}, {"|u1", AD__NPY_U1, 1}, {"|b1", AD__NPY_B1, 1},
};

static ad_status parse_descr(const char *d, ad__npy_elem *elem, size_t *size, ad_error *err)
{
    for (size_t i = 0; i < sizeof descrs / sizeof descrs[0]; i++)
        if (strcmp(d, descrs[i].descr) == 0) {
            *elem = descrs[i].elem;
            *size = descrs[i].size;
            return AD_OK;
        }
    if (d[0] == '>')
        return ad_error_set(err, AD_ERR_FORMAT, "npy: big-endian data ('%s') is not supported", d);
    return ad_error_set(err, AD_ERR_DTYPE,
                         "npy: dtype '%s' is not supported (only '<f4', '<f8', '<i8', '<i4', '|u1', '|b1')",
                         d);
}

static ad_status parse_header(const char *text, size_t len, ad__npy_info *h, ad_error *err)
{
    if (len == 0 || text[len - 1] != '\n')
        return ad_error_set(err, AD_ERR_FORMAT, "npy: header does not end with a newline");
    cursor c = {text, text + len - 1};
    int seen_descr = 0, seen_fortran = 0, seen_shape = 0;
    if (!accept(&c, '{')) return ad_error_set(err, AD_ERR_FORMAT, "npy: header is not a dict");
    while (!accept(&c, '}')) {
        char key[32], val[32];
        if (!parse_string(&c, key, sizeof key) || !accept(&c, ':'))
            return ad_error_set(err, AD_ERR_FORMAT, "npy: header dict is malformed");
        if (strcmp(key, "descr") == 0 && !seen_descr++) {
            if (!parse_string(&c, val, sizeof val))
                return ad_error_set(err, AD_ERR_FORMAT, "npy: 'descr' is not a string");
            ad_status st = parse_descr(val, &h->elem, &h->elem_size, err);
            if (st != AD_OK) return st;
        } else if (strcmp(key, "fortran_order") == 0 && !seen_fortran++) {
            if (parse_word(&c, "True"))
                return ad_error_set(err, AD_ERR_FORMAT, "npy: Fortran order is not supported");
            if (!parse_word(&c, "False"))
                return ad_error_set(err, AD_ERR_FORMAT, "npy: 'fortran_order' is not a bool");
        } else if (strcmp(key, "shape") == 0 && !seen_shape++) {
            ad_status st = parse_shape(&c, &h->shape, err);
            if (st != AD_OK) return st;
        } else {
            return ad_error_set(err, AD_ERR_FORMAT, "npy: unexpected or repeated key '%s'", key);
        }
        if (!accept(&c, ',')) {
            if (!accept(&c, '}'))
                return ad_error_set(err, AD_ERR_FORMAT, "npy: header dict is malformed");
            break;
        }
    }
    skip_space(&c);
    if (c.p != c.end)
        return ad_error_set(err, AD_ERR_FORMAT, "npy: unexpected text after the header dict");
    if (!seen_descr || !seen_fortran || !seen_shape)
        return ad_error_set(err, AD_ERR_FORMAT, "npy: header lacks '%s'",
                             !seen_descr ? "descr" : !seen_fortran ? "fortran_order" : "shape");
    return AD_OK;
}

/* ---- reading ------------------------------------------------------------------------- */

static int host_is_little_endian(void)
{
    const uint16_t one = 1;
    return *(const unsigned char *)&one == 1;
}

/* Copies n elements of size es between little-endian file order and host order. */
static void copy_le(void *dst, const void *src, size_t n, size_t es)
{
    if (host_is_little_endian()) {
        memcpy(dst, src, n * es);
        return;
    }
    const unsigned char *s = src;
    unsigned char *d = dst;
    for (size_t i = 0; i < n; i++)
        for (size_t b = 0; b < es; b++) d[i * es + b] = s[i * es + es - 1 - b];
}

/* Validates the image and finds its header and data; nothing is allocated. */
ad_status ad__npy_inspect(const void *data, size_t size, ad__npy_info *h, ad_error *err)
{
    const unsigned char *b = data;
    if (size < 10 || memcmp(b, magic, sizeof magic) != 0)
        return ad_error_set(err, AD_ERR_FORMAT, "npy: not a .npy file (bad magic)");
    unsigned major = b[6], minor = b[7];
    size_t hlen, off;
    if (major == 1 && minor == 0) {
        hlen = (size_t)b[8] | (size_t)b[9] << 8;
        off = 10;
    } else if (major == 2 && minor == 0) {
        if (size < 12) return ad_error_set(err, AD_ERR_FORMAT, "npy: truncated header");
        hlen = (size_t)b[8] | (size_t)b[9] << 8 | (size_t)b[10] << 16 | (size_t)b[11] << 24;
        off = 12;
    } else {
        return ad_error_set(err, AD_ERR_FORMAT, "npy: format version %u.%u is not supported",
                             major, minor);
    }
    if (hlen > AD_NPY_MAX_HEADER)
        return ad_error_set(err, AD_ERR_FORMAT, "npy: header of %zu bytes exceeds the %d allowed",
                             hlen, AD_NPY_MAX_HEADER);
    if (hlen > size - off)
        return ad_error_set(err, AD_ERR_FORMAT, "npy: truncated header (%zu bytes, file has %zu)",
                             hlen, size - off);
    ad_status st = parse_header((const char *)b + off, hlen, h, err);
    if (st != AD_OK) return st;
    st = ad_shape_numel(h->shape, &h->numel);
    if (st != AD_OK) return ad_error_set(err, st, "npy: shape is too large");
    size_t bytes;
    if (!ad__mul_size(h->numel, h->elem_size, &bytes))
        return ad_error_set(err, AD_ERR_OVERFLOW, "npy: shape is too large");
    h->data_off = off + hlen;
    size_t have = size - h->data_off;
    char s[AD__SHAPE_BUF];
    if (have < bytes)
        return ad_error_set(err, AD_ERR_FORMAT, "npy: truncated data: shape %s needs %zu bytes, file has %zu",
                             ad__shape_str(h->shape, s), bytes, have);
    if (have > bytes)
        return ad_error_set(err, AD_ERR_FORMAT, "npy: %zu unexpected bytes after the data of shape %s",
                             have - bytes, ad__shape_str(h->shape, s));
    return AD_OK;
}

ad_tensor *ad_npy_read(const void *data, size_t size, ad_error *err)
{
    if (!data) {
        ad_error_set(err, AD_ERR_NULL, "npy: data is NULL");
        return NULL;
    }
    ad__npy_info h;
    memset(&h, 0, sizeof h);
    if (ad__npy_inspect(data, size, &h, err) != AD_OK) return NULL;
    if (h.elem != AD__NPY_F4 && h.elem != AD__NPY_F8) {
        ad_error_set(err, AD_ERR_DTYPE,
                      "npy: the file holds integers ('%s'): read it with ad_npy_read_ints()",
                      ad__npy_descr(h.elem));
        return NULL;
    }
    ad_dtype dtype = h.elem == AD__NPY_F4 ? AD_F32 : AD_F64;
    ad_tensor *x = ad_tensor_new(dtype, h.shape, err);
    if (!x) return NULL;
    copy_le(ad_tensor_data(x), (const unsigned char *)data + h.data_off, h.numel, h.elem_size);
    ad_error_set(err, AD_OK, NULL);
    return x;
}

/* A file can hold at most this much; larger ones are refused before reading. */
#define NPY_MAX_FILE ((size_t)1 << 40)

void *ad__npy_load_with(const char *path, void *(*read)(const void *, size_t, ad_error *), ad_error *err)
{
    void *buf;
    size_t size;
    if (ad__file_read_all(path, NPY_MAX_FILE, &buf, &size, err) != AD_OK) return NULL;
    void *x = read(buf, size, err);
    free(buf);
    if (!x && err) {
        char why[AD_ERROR_MSG_SIZE];
        memcpy(why, err->msg, sizeof why);
        ad_error_set(err, err->code, "%s (in '%s')", why, path);
    }
    return x;
}

static void *read_floats(const void *data, size_t size, ad_error *err) { return ad_npy_read(data, size, err); }

ad_tensor *ad_npy_load(const char *path, ad_error *err) { return ad__npy_load_with(path, read_floats, err); }

ad_status ad_npy_load_into(const char *path, ad_tensor *dst, ad_error *err)
{
    ad_error local;
    if (!err) err = &local;
    if (!dst) return ad_error_set(err, AD_ERR_NULL, "npy: destination tensor is NULL");
    if (ad__data_released(dst))
        return ad_error_set(err, AD_ERR_STATE, "npy: the destination tensor's data was released (ad_tape_release)");
    ad_tensor *x = ad_npy_load(path, err);
    if (!x) return err->code;
    ad_status st = AD_OK;
    char a[AD__SHAPE_BUF], b[AD__SHAPE_BUF];
    if (ad_tensor_dtype(x) != ad_tensor_dtype(dst))
        st = ad_error_set(err, AD_ERR_DTYPE, "npy: '%s' holds %s, the tensor is %s", path,
                           ad_dtype_name(ad_tensor_dtype(x)), ad_dtype_name(ad_tensor_dtype(dst)));
    else if (!ad_shape_equal(ad_tensor_shape(x), ad_tensor_shape(dst)))
        st = ad_error_set(err, AD_ERR_SHAPE, "npy: '%s' has shape %s, the tensor %s", path,
                           ad__shape_str(ad_tensor_shape(x), a),
                           ad__shape_str(ad_tensor_shape(dst), b));
    else
        memcpy(ad_tensor_data(dst), ad_tensor_data(x),
               ad_tensor_numel(x) * ad_dtype_size(ad_tensor_dtype(x)));
    ad_tensor_free(x);
    return st == AD_OK ? ad_error_set(err, AD_OK, NULL) : st;
}

/* ---- writing ------------------------------------------------------------------------- */

const char *ad__npy_descr(ad__npy_elem elem)
{
    for (size_t i = 0; i < sizeof descrs / sizeof descrs[0]; i++)
        if (descrs[i].elem == elem) return descrs[i].descr;
    return "?";
}

unsigned char *ad__npy_begin(ad__npy_elem elem, ad_shape shape, size_t numel, size_t *total,
                             size_t *data_off, ad_error *err)
{
    char dict[256];
    int n = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (",
                     ad__npy_descr(elem));
    for (int i = 0; i < shape.rank; i++)
        n += snprintf(dict + n, sizeof dict - (size_t)n, "%" PRId64 "%s", shape.dim[i],
                      (shape.rank == 1 || i + 1 < shape.rank) ? "," : "");
    n += snprintf(dict + n, sizeof dict - (size_t)n, "), }");
    /* Pad with spaces and a newline so the data starts on a 64-byte boundary. */
    size_t pre = 10, body = (size_t)n + 1;
    if (pre + body > 65535 + 10) pre = 12;
    size_t hlen = body + (64 - (pre + body) % 64) % 64, es = 0;
    for (size_t i = 0; i < sizeof descrs / sizeof descrs[0]; i++)
        if (descrs[i].elem == elem) es = descrs[i].size;
    *total = pre + hlen + numel * es;
    unsigned char *b = malloc(*total);
    if (!b) {
        ad_error_set(err, AD_ERR_NOMEM, "npy: cannot allocate %zu bytes", *total);
        return NULL;
    }
    memcpy(b, magic, sizeof magic);
    b[6] = pre == 10 ? 1 : 2;
    b[7] = 0;
    for (size_t i = 0; i < pre - 8; i++) b[8 + i] = (unsigned char)(hlen >> (8 * i));
    memset(b + pre, ' ', hlen);
    memcpy(b + pre, dict, (size_t)n);
    b[pre + hlen - 1] = '\n';
    *data_off = pre + hlen;
    return b;
}

ad_status ad_npy_write(const ad_tensor *x, void **out, size_t *size, ad_error *err)
{
    if (!x || !out || !size)
        return ad_error_set(err, AD_ERR_NULL, "npy: %s is NULL", !x ? "tensor" : "output");
    if (ad__data_released(x))
        return ad_error_set(err, AD_ERR_STATE, "npy: the tensor's data was released (ad_tape_release)");
    size_t total, off;
    unsigned char *b = ad__npy_begin(x->dtype == AD_F32 ? AD__NPY_F4 : AD__NPY_F8, x->shape,
                                     x->numel, &total, &off, err);
    if (!b) return AD_ERR_NOMEM;
    copy_le(b + off, x->data, x->numel, ad_dtype_size(x->dtype));
    *out = b;
    *size = total;
    return ad_error_set(err, AD_OK, NULL);
}

ad_status ad_npy_save(const char *path, const ad_tensor *x, ad_error *err)
{
    if (!path) return ad_error_set(err, AD_ERR_NULL, "npy: path is NULL");
    void *buf = NULL; /* set on success; initialised for gcc's flow analysis */
    size_t size = 0;
    ad_status st = ad_npy_write(x, &buf, &size, err);
    if (st != AD_OK) return st;
    st = ad__file_write_atomic(path, buf, size, err);
    free(buf);
    return st;
}
