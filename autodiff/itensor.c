/*
 * itensor.c - integer tensors: a shape, the file type and int64_t values.
 */
#include "itensor.h"

#include <inttypes.h>
#include <stdlib.h>

#include "internal.h"

struct ad_itensor {
    ad_itype type;
    ad_shape shape;
    size_t numel;
    int64_t *data;
};

const char *ad_itype_name(ad_itype type)
{
    switch (type) {
    case AD_I64: return "i64";
    case AD_I32: return "i32";
    case AD_U8: return "u8";
    case AD_BOOL: return "bool";
    }
    return "invalid";
}

ad_itensor *ad_itensor_new(ad_itype type, ad_shape shape, ad_error *err)
{
    if (type < AD_I64 || type > AD_BOOL) {
        ad_error_set(err, AD_ERR_DTYPE, "itensor_new: invalid integer type %d", (int)type);
        return NULL;
    }
    size_t numel;
    ad_status st = ad_shape_numel(shape, &numel);
    if (st != AD_OK) {
        char b[AD__SHAPE_BUF];
        ad_error_set(err, st, "itensor_new: invalid shape %s", ad__shape_str(shape, b));
        return NULL;
    }
    ad_itensor *x = calloc(1, sizeof *x);
    int64_t *data = calloc(numel ? numel : 1, sizeof *data);
    if (!x || !data) {
        free(x);
        free(data);
        ad_error_set(err, AD_ERR_NOMEM, "itensor_new: cannot allocate %zu elements", numel);
        return NULL;
    }
    x->type = type;
    x->shape = shape;
    for (int i = shape.rank; i < AD_MAX_RANK; i++) x->shape.dim[i] = 0;
    x->numel = numel;
    x->data = data;
    ad_error_set(err, AD_OK, NULL);
    return x;
}

void ad_itensor_free(ad_itensor *x)
{
    if (!x) return;
    free(x->data);
    free(x);
}

int64_t *ad_itensor_data(ad_itensor *x) { return x ? x->data : NULL; }

ad_itype ad_itensor_type(const ad_itensor *x) { return x ? x->type : AD_I64; }

ad_shape ad_itensor_shape(const ad_itensor *x) { return x ? x->shape : ad_shape0(); }

size_t ad_itensor_numel(const ad_itensor *x) { return x ? x->numel : 0; }

ad_status ad_itensor_check_range(const ad_itensor *x, ad_error *err)
{
    if (!x) return ad_error_set(err, AD_ERR_NULL, "itensor: tensor is NULL");
    int64_t lo = INT64_MIN, hi = INT64_MAX;
    if (x->type == AD_I32) lo = INT32_MIN, hi = INT32_MAX;
    else if (x->type == AD_U8) lo = 0, hi = 255;
    else if (x->type == AD_BOOL) lo = 0, hi = 1;
    for (size_t i = 0; i < x->numel; i++)
        if (x->data[i] < lo || x->data[i] > hi)
            return ad_error_set(err, AD_ERR_ARG,
                                 "itensor: element %zu is %" PRId64 ", outside %s's range %" PRId64
                                 "..%" PRId64,
                                 i, x->data[i], ad_itype_name(x->type), lo, hi);
    return ad_error_set(err, AD_OK, NULL);
}
