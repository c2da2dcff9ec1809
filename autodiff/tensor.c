/*
 * tensor.c - shapes, heap tensors, parameters and element access.
 */
#include "tensor.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Half the bits of size_t: a product of two such numbers cannot overflow. */
#define HALF_BITS (sizeof(size_t) * 4)

int ad__mul_size(size_t a, size_t b, size_t *out)
{
    /* The division is only needed when an operand has high bits set. */
    if (((a | b) >> HALF_BITS) != 0 && a != 0 && b > SIZE_MAX / a) return 0;
    *out = a * b;
    return 1;
}

ad_status ad_shape_numel(ad_shape s, size_t *numel)
{
    if (s.rank < 0 || s.rank > AD_MAX_RANK) return AD_ERR_RANK;
    size_t n = 1;
    for (int i = 0; i < s.rank; i++) {
        if (s.dim[i] < 0) return AD_ERR_ARG;
        if ((uint64_t)s.dim[i] > SIZE_MAX || !ad__mul_size(n, (size_t)s.dim[i], &n))
            return AD_ERR_OVERFLOW;
    }
    /* The byte size of the largest dtype must fit too. */
    size_t bytes;
    if (!ad__mul_size(n, sizeof(double), &bytes)) return AD_ERR_OVERFLOW;
    if (numel) *numel = n;
    return AD_OK;
}

int ad_shape_equal(ad_shape a, ad_shape b)
{
    if (a.rank != b.rank) return 0;
    for (int i = 0; i < a.rank && i < AD_MAX_RANK; i++)
        if (a.dim[i] != b.dim[i]) return 0;
    return 1;
}

char *ad_shape_format(ad_shape s, char *buf, size_t size)
{
    if (!buf || size == 0) return buf;
    size_t used = 0;
    int rank = s.rank < 0 ? 0 : (s.rank > AD_MAX_RANK ? AD_MAX_RANK : s.rank);
    used += (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < rank && used < size; i++)
        used += (size_t)snprintf(buf + used, size - used, i ? ",%lld" : "%lld",
                                 (long long)s.dim[i]);
    if (used < size) snprintf(buf + used, size - used, "]");
    return buf;
}

const char *ad__shape_str(ad_shape s, char buf[AD__SHAPE_BUF])
{
    return ad_shape_format(s, buf, AD__SHAPE_BUF);
}

int ad__axis(int axis, int rank)
{
    if (axis < 0) axis += rank;
    return (axis >= 0 && axis < rank) ? axis : -1;
}

size_t ad_dtype_size(ad_dtype dtype)
{
    switch (dtype) {
    case AD_F32: return sizeof(float);
    case AD_F64: return sizeof(double);
    }
    return 0;
}

const char *ad_dtype_name(ad_dtype dtype)
{
    switch (dtype) {
    case AD_F32: return "f32";
    case AD_F64: return "f64";
    }
    return "invalid";
}

/* Validates dtype and shape for a new tensor; fills numel and bytes. */
static ad_status check_new(const char *fn, ad_dtype dtype, ad_shape shape, size_t *numel,
                           size_t *bytes, ad_error *err)
{
    if (ad_dtype_size(dtype) == 0)
        return ad_error_set(err, AD_ERR_DTYPE, "%s: invalid dtype %d", fn, (int)dtype);
    ad_status st = ad_shape_numel(shape, numel);
    if (st != AD_OK) {
        char b[AD__SHAPE_BUF];
        return ad_error_set(err, st, "%s: invalid shape %s (rank %d): %s", fn,
                             ad__shape_str(shape, b), shape.rank, ad_status_str(st));
    }
    *bytes = *numel * ad_dtype_size(dtype);
    return AD_OK;
}

ad_tensor *ad_tensor_new(ad_dtype dtype, ad_shape shape, ad_error *err)
{
    size_t numel = 0, bytes = 0;
    if (check_new("tensor_new", dtype, shape, &numel, &bytes, err) != AD_OK) return NULL;
    ad_tensor *x = calloc(1, sizeof *x);
    void *data = calloc(bytes ? bytes : 1, 1);
    if (!x || !data) {
        free(x);
        free(data);
        ad_error_set(err, AD_ERR_NOMEM, "tensor_new: cannot allocate %zu bytes", bytes);
        return NULL;
    }
    x->dtype = dtype;
    x->shape = shape;
    x->numel = numel;
    x->data = data;
    x->owns_data = 1;
    x->is_heap = 1;
    ad_error_set(err, AD_OK, NULL);
    return x;
}

void ad_tensor_free(ad_tensor *x)
{
    if (!x || !x->is_heap) return;
    if (x->owns_data) free(x->data);
    free(x);
}

ad_dtype ad_tensor_dtype(const ad_tensor *x) { return x ? x->dtype : AD_F32; }

ad_shape ad_tensor_shape(const ad_tensor *x) { return x ? x->shape : ad_shape0(); }

int ad_tensor_rank(const ad_tensor *x) { return x ? x->shape.rank : 0; }

int64_t ad_tensor_dim(const ad_tensor *x, int axis)
{
    if (!x) return 0;
    int a = ad__axis(axis, x->shape.rank);
    return a < 0 ? 0 : x->shape.dim[a];
}

size_t ad_tensor_numel(const ad_tensor *x) { return x ? x->numel : 0; }

/* A released tensor's buffer belongs to other tensors now: no data to show. */
static int readable(const ad_tensor *x) { return x && !ad__data_released(x); }

float *ad_tensor_f32(ad_tensor *x) { return (readable(x) && x->dtype == AD_F32) ? x->data : NULL; }

double *ad_tensor_f64(ad_tensor *x) { return (readable(x) && x->dtype == AD_F64) ? x->data : NULL; }

void *ad_tensor_data(ad_tensor *x) { return readable(x) ? x->data : NULL; }

int ad__has_grad(const ad_tensor *x)
{
    if (!x || !x->grad) return 0;
    if (!x->tape) return 1; /* parameter gradient view */
    return x->grad_pass == ad__tape_pass(x->tape);
}

float *ad_tensor_grad_f32(ad_tensor *x)
{
    if (ad__grad_dropped(x, "tensor_grad_f32")) return NULL;
    return (ad__has_grad(x) && x->dtype == AD_F32) ? x->grad : NULL;
}

double *ad_tensor_grad_f64(ad_tensor *x)
{
    if (ad__grad_dropped(x, "tensor_grad_f64")) return NULL;
    return (ad__has_grad(x) && x->dtype == AD_F64) ? x->grad : NULL;
}

static double element(ad_dtype dtype, const void *data, size_t i)
{
    return dtype == AD_F32 ? (double)((const float *)data)[i] : ((const double *)data)[i];
}

double ad_tensor_get(const ad_tensor *x, size_t i)
{
    if (!readable(x) || i >= x->numel) return NAN;
    return element(x->dtype, x->data, i);
}

double ad_tensor_grad_get(const ad_tensor *x, size_t i)
{
    if (ad__grad_dropped(x, "tensor_grad_get")) return NAN;
    if (!ad__has_grad(x) || i >= x->numel) return NAN;
    return element(x->dtype, x->grad, i);
}

double ad_tensor_item(const ad_tensor *x)
{
    if (!x || x->numel != 1) return NAN;
    return element(x->dtype, x->data, 0);
}

/* ---- parameters ------------------------------------------------------------------- */

static ad_param *param_make(const char *fn, const char *name, ad_dtype dtype, ad_shape shape,
                            void *data, void *grad, ad_error *err)
{
    size_t numel = 0, bytes = 0;
    if (!name) {
        ad_error_set(err, AD_ERR_NULL, "%s: name is NULL", fn);
        return NULL;
    }
    if (strlen(name) >= AD_NAME_SIZE) {
        ad_error_set(err, AD_ERR_ARG, "%s: name '%.20s...' is longer than %d bytes", fn, name,
                      AD_NAME_SIZE - 1);
        return NULL;
    }
    if (check_new(fn, dtype, shape, &numel, &bytes, err) != AD_OK) return NULL;
    ad_param *p = calloc(1, sizeof *p);
    if (!p) {
        ad_error_set(err, AD_ERR_NOMEM, "%s: cannot allocate parameter '%s'", fn, name);
        return NULL;
    }
    if (!data) {
        size_t n = bytes ? bytes : 1;
        data = calloc(n, 1);
        grad = calloc(n, 1);
        if (!data || !grad) {
            free(data);
            free(grad);
            free(p);
            ad_error_set(err, AD_ERR_NOMEM, "%s: cannot allocate %zu bytes for '%s'", fn,
                          bytes, name);
            return NULL;
        }
        p->owns_storage = 1;
    }
    memcpy(p->name, name, strlen(name) + 1);
    ad_tensor *views[2] = {&p->value, &p->grad};
    void *bufs[2] = {data, grad};
    for (int i = 0; i < 2; i++) {
        views[i]->dtype = dtype;
        views[i]->shape = shape;
        views[i]->numel = numel;
        views[i]->data = bufs[i];
        views[i]->param = p;
    }
    p->value.grad = grad; /* so the value view reads as "has a gradient" */
    ad_error_set(err, AD_OK, NULL);
    return p;
}

ad_param *ad_param_new(const char *name, ad_dtype dtype, ad_shape shape, ad_error *err)
{
    return param_make("param_new", name, dtype, shape, NULL, NULL, err);
}

ad_param *ad_param_view(const char *name, ad_dtype dtype, ad_shape shape, void *data, void *grad,
                        ad_error *err)
{
    if (!data || !grad) {
        ad_error_set(err, AD_ERR_NULL, "param_view: %s storage is NULL", data ? "grad" : "data");
        return NULL;
    }
    return param_make("param_view", name, dtype, shape, data, grad, err);
}

ad_status ad_param_rebind(ad_param *p, void *data, void *grad, ad_error *err)
{
    if (!p || !data || !grad)
        return ad_error_set(err, AD_ERR_NULL, "param_rebind: %s is NULL",
                             !p ? "parameter" : !data ? "data" : "grad");
    if (p->owns_storage)
        return ad_error_set(err, AD_ERR_STATE, "param_rebind: '%s' owns its storage (not a view)",
                             p->name);
    p->value.data = data;
    p->value.grad = grad;
    p->grad.data = grad;
    return ad_error_set(err, AD_OK, NULL);
}

void ad_param_free(ad_param *p)
{
    if (!p) return;
    if (p->owns_storage) {
        free(p->value.data);
        free(p->grad.data);
    }
    free(p);
}

ad_tensor *ad_param_value(ad_param *p) { return p ? &p->value : NULL; }

ad_tensor *ad_param_grad(ad_param *p) { return p ? &p->grad : NULL; }

const char *ad_param_name(const ad_param *p) { return p ? p->name : ""; }

void ad_param_zero_grad(ad_param *p)
{
    if (p) memset(p->grad.data, 0, p->grad.numel * ad_dtype_size(p->grad.dtype));
}

ad_param *ad_tensor_param(const ad_tensor *x) { return x ? x->param : NULL; }

int ad__all_finite(ad_dtype dtype, const void *data, size_t n)
{
    if (dtype == AD_F32) {
        const float *v = data;
        for (size_t i = 0; i < n; i++)
            if (!isfinite(v[i])) return 0;
    } else {
        const double *v = data;
        for (size_t i = 0; i < n; i++)
            if (!isfinite(v[i])) return 0;
    }
    return 1;
}
