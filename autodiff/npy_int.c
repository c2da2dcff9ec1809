/*
 * npy_int.c - integer .npy files ('<i8', '<i4', '|u1', '|b1') as ad_itensor.
 *
 * The header is parsed and checked against the file's size by the same code
 * as the float files (npy.c); here only the elements are converted. Bytes
 * are assembled explicitly in little-endian order, so no host byte order or
 * alignment question arises.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fileio.h"
#include "internal.h"
#include "npy.h"

static int64_t get_le(const unsigned char *p, size_t n)
{
    uint64_t v = 0;
    for (size_t b = 0; b < n; b++) v |= (uint64_t)p[b] << (8 * b);
    if (n == 4) return (int64_t)(int32_t)(uint32_t)v; /* sign-extend */
    return (int64_t)v;
}

static void put_le(unsigned char *p, size_t n, int64_t x)
{
    uint64_t v = (uint64_t)x;
    for (size_t b = 0; b < n; b++) p[b] = (unsigned char)(v >> (8 * b));
}

static ad_itype itype_of(ad__npy_elem e)
{
    return e == AD__NPY_I4 ? AD_I32 : e == AD__NPY_U1 ? AD_U8 : e == AD__NPY_B1 ? AD_BOOL : AD_I64;
}

ad_itensor *ad_npy_read_ints(const void *data, size_t size, ad_error *err)
{
    if (!data) {
        ad_error_set(err, AD_ERR_NULL, "npy: data is NULL");
        return NULL;
    }
    ad__npy_info h;
    memset(&h, 0, sizeof h);
    if (ad__npy_inspect(data, size, &h, err) != AD_OK) return NULL;
    if (h.elem == AD__NPY_F4 || h.elem == AD__NPY_F8) {
        ad_error_set(err, AD_ERR_DTYPE, "npy: the file holds floats ('%s'): read it with ad_npy_read()",
                      ad__npy_descr(h.elem));
        return NULL;
    }
    const unsigned char *src = (const unsigned char *)data + h.data_off;
    if (h.elem == AD__NPY_B1)
        for (size_t i = 0; i < h.numel; i++)
            if (src[i] > 1) {
                ad_error_set(err, AD_ERR_FORMAT, "npy: boolean element %zu is the byte %u, not 0 or 1", i,
                              (unsigned)src[i]);
                return NULL;
            }
    ad_itensor *x = ad_itensor_new(itype_of(h.elem), h.shape, err);
    if (!x) return NULL;
    int64_t *v = ad_itensor_data(x);
    for (size_t i = 0; i < h.numel; i++) v[i] = get_le(src + i * h.elem_size, h.elem_size);
    ad_error_set(err, AD_OK, NULL);
    return x;
}

static void *read_ints(const void *data, size_t size, ad_error *err) { return ad_npy_read_ints(data, size, err); }

/* Bounded and named as the float files are (npy.c). */
ad_itensor *ad_npy_load_ints(const char *path, ad_error *err) { return ad__npy_load_with(path, read_ints, err); }

ad_status ad_npy_write_ints(const ad_itensor *x, void **out, size_t *size, ad_error *err)
{
    if (!x || !out || !size)
        return ad_error_set(err, AD_ERR_NULL, "npy: %s is NULL", !x ? "tensor" : "output");
    ad_status st = ad_itensor_check_range(x, err);
    if (st != AD_OK) return st;
    static const ad__npy_elem elems[] = {AD__NPY_I8, AD__NPY_I4, AD__NPY_U1, AD__NPY_B1};
    static const size_t sizes[] = {8, 4, 1, 1};
    ad_itype type = ad_itensor_type(x);
    size_t n = ad_itensor_numel(x), total, off;
    unsigned char *b = ad__npy_begin(elems[type], ad_itensor_shape(x), n, &total, &off, err);
    if (!b) return AD_ERR_NOMEM;
    const int64_t *v = ad_itensor_data((ad_itensor *)x);
    for (size_t i = 0; i < n; i++) put_le(b + off + i * sizes[type], sizes[type], v[i]);
    *out = b;
    *size = total;
    return ad_error_set(err, AD_OK, NULL);
}

ad_status ad_npy_save_ints(const char *path, const ad_itensor *x, ad_error *err)
{
    if (!path) return ad_error_set(err, AD_ERR_NULL, "npy: path is NULL");
    void *buf = NULL;
    size_t size = 0;
    ad_status st = ad_npy_write_ints(x, &buf, &size, err);
    if (st != AD_OK) return st;
    st = ad__file_write_atomic(path, buf, size, err);
    free(buf);
    return st;
}
