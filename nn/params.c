/*
 * params.c - named parameter set: uthash index over an ordered array of
 * parameters that are views into two growable blocks (values, gradients).
 */
#include "params.h"

#include "internal.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HASH_NONFATAL_OOM 1
#include <uthash.h>

typedef struct entry {
    char name[AD_NAME_SIZE];
    ad_param *param;
    size_t offset; /* in elements, into both blocks */
    size_t numel;
    UT_hash_handle hh;
} entry;

struct nn_params {
    ad_dtype dtype;
    entry **order; /* registration order */
    size_t count, cap;
    entry *index; /* uthash head, keyed by name */
    char *values, *grads;
    size_t numel;
    int oom; /* set by uthash when it cannot grow */
    nn_params *origin;       /* a replica's set: values are origin's, not owned */
    int is_replica;          /* stays set when the origin is freed first */
    nn_params **replicas;    /* a set's live replicas, re-pointed when its blocks move */
    size_t n_replicas, cap_replicas;
};

#undef uthash_nonfatal_oom
#define uthash_nonfatal_oom(e) (ps->oom = 1)

nn_params *nn_params_new(ad_dtype dtype, ad_error *err)
{
    if (ad_dtype_size(dtype) == 0) {
        ad_error_set(err, AD_ERR_DTYPE, "params: invalid dtype");
        return NULL;
    }
    nn_params *ps = calloc(1, sizeof *ps);
    if (!ps) {
        ad_error_set(err, AD_ERR_NOMEM, "params: out of memory");
        return NULL;
    }
    ps->dtype = dtype;
    ad_error_set(err, AD_OK, NULL);
    return ps;
}

void nn_params_free(nn_params *ps)
{
    if (!ps) return;
    nn_params *origin = ps->origin;
    for (size_t i = 0; origin && i < origin->n_replicas; i++)
        if (origin->replicas[i] == ps) origin->replicas[i] = origin->replicas[--origin->n_replicas];
    /* Replicas outliving their set keep no pointer to it; their values are
     * gone with it (they may only be freed). */
    for (size_t i = 0; i < ps->n_replicas; i++) {
        ps->replicas[i]->origin = NULL;
        ps->replicas[i]->values = NULL;
    }
    free(ps->replicas);
    HASH_CLEAR(hh, ps->index);
    for (size_t i = 0; i < ps->count; i++) {
        ad_param_free(ps->order[i]->param);
        free(ps->order[i]);
    }
    free(ps->order);
    if (!ps->is_replica) free(ps->values);
    free(ps->grads);
    free(ps);
}

/* Points every replica's values at the set's (new) value block: parameters
 * are only appended, so each keeps its offset. A replica of a set that grew
 * is stale all the same (nn_params_accumulate_grads refuses it), but it
 * never reads freed memory. */
static void repoint_replicas(nn_params *ps)
{
    size_t es = ad_dtype_size(ps->dtype);
    for (size_t i = 0; i < ps->n_replicas; i++) {
        nn_params *r = ps->replicas[i];
        for (size_t k = 0; k < r->count; k++) {
            entry *e = r->order[k];
            ad_param_rebind(e->param, ps->values + e->offset * es, r->grads + e->offset * es, NULL);
        }
        r->values = ps->values;
    }
}

/* Moves both blocks to new storage of `numel` elements (zero-filled beyond the
 * old end) and re-points every parameter; on failure nothing changes. */
static int grow_blocks(nn_params *ps, size_t numel)
{
    size_t es = ad_dtype_size(ps->dtype), bytes;
    if (__builtin_mul_overflow(numel, es, &bytes)) return 0;
    char *v = calloc(bytes ? bytes : 1, 1), *g = calloc(bytes ? bytes : 1, 1);
    if (!v || !g) {
        free(v);
        free(g);
        return 0;
    }
    if (ps->numel) {
        memcpy(v, ps->values, ps->numel * es);
        memcpy(g, ps->grads, ps->numel * es);
    }
    for (size_t i = 0; i < ps->count; i++) {
        entry *e = ps->order[i];
        ad_param_rebind(e->param, v + e->offset * es, g + e->offset * es, NULL);
    }
    free(ps->values);
    free(ps->grads);
    ps->values = v;
    ps->grads = g;
    repoint_replicas(ps);
    return 1;
}

ad_param *nn_params_add(nn_params *ps, const char *name, ad_shape shape, ad_error *err)
{
    if (!ps || !name) {
        ad_error_set(err, AD_ERR_NULL, "params_add: %s is NULL", !ps ? "set" : "name");
        return NULL;
    }
    if (ps->is_replica) {
        ad_error_set(err, AD_ERR_STATE, "params_add: '%s': a replica takes no parameters of its own", name);
        return NULL;
    }
    if (strlen(name) >= AD_NAME_SIZE || name[0] == '\0') {
        ad_error_set(err, AD_ERR_ARG, "params_add: name '%.40s' is empty or too long", name);
        return NULL;
    }
    if (nn_params_get(ps, name)) {
        ad_error_set(err, AD_ERR_DUPLICATE, "params_add: '%s' is already registered", name);
        return NULL;
    }
    size_t numel, total;
    ad_status st = ad_shape_numel(shape, &numel);
    if (st != AD_OK || __builtin_add_overflow(ps->numel, numel, &total)) {
        ad_error_set(err, st != AD_OK ? st : AD_ERR_OVERFLOW, "params_add: '%s': invalid shape", name);
        return NULL;
    }
    entry *e = calloc(1, sizeof *e);
    if (ps->count == ps->cap) {
        size_t cap = ps->cap ? ps->cap * 2 : 16;
        entry **o = realloc(ps->order, cap * sizeof *o);
        if (o) {
            ps->order = o;
            ps->cap = cap;
        }
    }
    if (!e || ps->count == ps->cap || !grow_blocks(ps, total)) {
        free(e);
        ad_error_set(err, AD_ERR_NOMEM, "params_add: out of memory adding '%s'", name);
        return NULL;
    }
    size_t es = ad_dtype_size(ps->dtype);
    e->param = ad_param_view(name, ps->dtype, shape, ps->values + ps->numel * es,
                             ps->grads + ps->numel * es, err);
    if (!e->param) {
        free(e);
        return NULL;
    }
    memcpy(e->name, name, strlen(name) + 1);
    e->offset = ps->numel;
    e->numel = numel;
    ps->oom = 0;
    HASH_ADD_STR(ps->index, name, e);
    if (ps->oom) {
        ad_param_free(e->param);
        free(e);
        ad_error_set(err, AD_ERR_NOMEM, "params_add: out of memory indexing '%s'", name);
        return NULL;
    }
    ps->order[ps->count++] = e;
    ps->numel = total;
    ad_error_set(err, AD_OK, NULL);
    return e->param;
}

ad_param *nn_params_get(const nn_params *ps, const char *name)
{
    if (!ps || !name) return NULL;
    entry *e = NULL;
    HASH_FIND_STR(ps->index, name, e);
    return e ? e->param : NULL;
}

static void shape_text(ad_shape s, char *buf, size_t cap)
{
    size_t n = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < s.rank && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, i ? ",%lld" : "%lld", (long long)s.dim[i]);
    if (n < cap) snprintf(buf + n, cap - n, "]");
}

ad_param *nn_params_find(const nn_params *ps, const char *name, ad_shape shape, ad_error *err)
{
    if (!ps || !name) {
        ad_error_set(err, AD_ERR_NULL, "params_find: %s is NULL", !ps ? "set" : "name");
        return NULL;
    }
    ad_param *p = nn_params_get(ps, name);
    if (!p) {
        ad_error_set(err, AD_ERR_NOT_FOUND, "params_find: no parameter '%s'", name);
        return NULL;
    }
    ad_shape have = ad_tensor_shape(ad_param_value(p));
    if (!ad_shape_equal(have, shape)) {
        char a[64], b[64], msg[160];
        shape_text(have, a, sizeof a);
        shape_text(shape, b, sizeof b);
        snprintf(msg, sizeof msg, "has shape %s, expected %s", a, b);
        ad_error_set(err, AD_ERR_SHAPE, "params_find: '%s' %s", name, msg);
        return NULL;
    }
    ad_error_set(err, AD_OK, NULL);
    return p;
}

size_t nn_params_count(const nn_params *ps) { return ps ? ps->count : 0; }

ad_param *nn_params_at(const nn_params *ps, size_t i)
{
    return ps && i < ps->count ? ps->order[i]->param : NULL;
}

ad_dtype nn_params_dtype(const nn_params *ps) { return ps ? ps->dtype : AD_F32; }

void *nn_params_values(nn_params *ps, size_t *numel)
{
    if (numel) *numel = ps ? ps->numel : 0;
    return ps ? ps->values : NULL;
}

void *nn_params_grads(nn_params *ps, size_t *numel)
{
    if (numel) *numel = ps ? ps->numel : 0;
    return ps ? ps->grads : NULL;
}

static void zero_range(void *ctx, size_t lo, size_t hi, int part)
{
    nn_params *ps = ctx;
    size_t es = ad_dtype_size(ps->dtype);
    (void)part;
    memset(ps->grads + lo * es, 0, (hi - lo) * es);
}

void nn_params_zero_grad(nn_params *ps)
{
    if (ps && ps->grads) nn__flat_run(ps->numel, nn__flat_parts(ps->numel), zero_range, ps);
}

/* ---- initialisation ---------------------------------------------------------------- */

static void fill(ad_param *p, ad_rng *rng, int normal, double a, double b)
{
    if (!p || !rng) return;
    ad_tensor *v = ad_param_value(p);
    for (size_t i = 0; i < ad_tensor_numel(v); i++) {
        double x = normal ? ad_rng_normal(rng) * a : a + (b - a) * ad_rng_uniform(rng);
        if (ad_tensor_dtype(v) == AD_F32) ad_tensor_f32(v)[i] = (float)x;
        else ad_tensor_f64(v)[i] = x;
    }
}

void nn_init_uniform(ad_param *p, ad_rng *rng, double lo, double hi) { fill(p, rng, 0, lo, hi); }

void nn_init_normal(ad_param *p, ad_rng *rng, double std) { fill(p, rng, 1, std, 0); }

void nn_init_xavier_uniform(ad_param *p, ad_rng *rng)
{
    ad_tensor *v = ad_param_value(p);
    if (!v || ad_tensor_rank(v) != 2) return;
    double b = sqrt(6.0 / (double)(ad_tensor_dim(v, 0) + ad_tensor_dim(v, 1)));
    fill(p, rng, 0, -b, b);
}

void nn_params_init_uniform(nn_params *ps, ad_rng *rng, double lo, double hi)
{
    for (size_t i = 0; i < nn_params_count(ps); i++) nn_init_uniform(nn_params_at(ps, i), rng, lo, hi);
}

/* ---- .npy folders ------------------------------------------------------------------- */

static int npy_path(char *buf, size_t cap, const char *dir, const char *name)
{
    return snprintf(buf, cap, "%s/%s.npy", dir, name) < (int)cap;
}

/* A name becomes "<dir>/<name>.npy": one with a path separator or ".." could
 * reach outside the folder, so the folder functions refuse it (checkpoints,
 * which store names as data, take any name). */
static ad_status check_file_names(const nn_params *ps, const char *fn, ad_error *err)
{
    for (size_t i = 0; i < ps->count; i++) {
        const char *name = ps->order[i]->name;
        if (strchr(name, '/') || strchr(name, '\\') || strstr(name, ".."))
            return ad_error_set(err, AD_ERR_ARG, "%s: '%s' cannot be a file name in a .npy folder (it holds "
                                "'/', '\\' or '..')", fn, name);
    }
    return AD_OK;
}

/* The first element of f64 `src` that is finite but too large for a float
 * (it would load as infinity), or -1. */
static int64_t beyond_f32(ad_tensor *src)
{
    for (size_t i = 0; i < ad_tensor_numel(src); i++) {
        double x = ad_tensor_f64(src)[i];
        if (isfinite(x) && isinf((float)x)) return (int64_t)i;
    }
    return -1;
}

/* Copies src into dst converting between f32 and f64. */
static void convert(ad_tensor *dst, ad_tensor *src)
{
    for (size_t i = 0; i < ad_tensor_numel(src); i++) {
        double x = ad_tensor_get(src, i);
        if (ad_tensor_dtype(dst) == AD_F32) ad_tensor_f32(dst)[i] = (float)x;
        else ad_tensor_f64(dst)[i] = x;
    }
}

ad_status nn_params_load_npy_dir(nn_params *ps, const char *dir, ad_error *err)
{
    if (!ps || !dir) return ad_error_set(err, AD_ERR_NULL, "params_load: %s is NULL", !ps ? "set" : "dir");
    ad_status named = check_file_names(ps, "params_load", err);
    if (named != AD_OK) return named;
    ad_tensor **loaded = calloc(ps->count ? ps->count : 1, sizeof *loaded);
    if (!loaded) return ad_error_set(err, AD_ERR_NOMEM, "params_load: out of memory");
    ad_status st = AD_OK;
    for (size_t i = 0; i < ps->count && st == AD_OK; i++) {
        char path[4096];
        ad_tensor *want = ad_param_value(ps->order[i]->param);
        if (!npy_path(path, sizeof path, dir, ps->order[i]->name)) {
            st = ad_error_set(err, AD_ERR_ARG, "params_load: path of '%s' in '%s' is too long", ps->order[i]->name, dir);
            break;
        }
        loaded[i] = ad_npy_load(path, err);
        if (!loaded[i]) {
            st = err ? err->code : AD_ERR_IO;
        } else if (!ad_shape_equal(ad_tensor_shape(loaded[i]), ad_tensor_shape(want))) {
            char a[64], b[64], msg[160];
            shape_text(ad_tensor_shape(loaded[i]), a, sizeof a);
            shape_text(ad_tensor_shape(want), b, sizeof b);
            snprintf(msg, sizeof msg, "file has shape %s, the model %s", a, b);
            st = ad_error_set(err, AD_ERR_SHAPE, "params_load: '%s': %s", ps->order[i]->name, msg);
        } else if (ps->dtype == AD_F32 && ad_tensor_dtype(loaded[i]) == AD_F64 && beyond_f32(loaded[i]) >= 0) {
            int64_t at = beyond_f32(loaded[i]);
            st = ad_error_set(err, AD_ERR_NONFINITE, "params_load: '%s': element %lld is %g, beyond the range of "
                              "f32 (it would load as infinity)", ps->order[i]->name, (long long)at,
                              ad_tensor_f64(loaded[i])[at]);
        }
    }
    if (st == AD_OK)
        for (size_t i = 0; i < ps->count; i++) convert(ad_param_value(ps->order[i]->param), loaded[i]);
    for (size_t i = 0; i < ps->count; i++) ad_tensor_free(loaded[i]);
    free(loaded);
    if (st == AD_OK) ad_error_set(err, AD_OK, NULL);
    return st;
}

ad_status nn_params_save_npy_dir(const nn_params *ps, const char *dir, ad_error *err)
{
    if (!ps || !dir) return ad_error_set(err, AD_ERR_NULL, "params_save: %s is NULL", !ps ? "set" : "dir");
    ad_status named = check_file_names(ps, "params_save", err);
    if (named != AD_OK) return named;
    for (size_t i = 0; i < ps->count; i++) {
        char path[4096];
        if (!npy_path(path, sizeof path, dir, ps->order[i]->name))
            return ad_error_set(err, AD_ERR_ARG, "params_save: path of '%s' in '%s' is too long",
                        ps->order[i]->name, dir);
        ad_status st = ad_npy_save(path, ad_param_value(ps->order[i]->param), err);
        if (st != AD_OK) return st;
    }
    ad_error_set(err, AD_OK, NULL);
    return AD_OK;
}

/* ---- replicas for data-parallel training --------------------------------------------- */

nn_params *nn_params_replica(nn_params *ps, ad_error *err)
{
    if (!ps) {
        ad_error_set(err, AD_ERR_NULL, "params_replica: set is NULL");
        return NULL;
    }
    if (ps->is_replica) {
        ad_error_set(err, AD_ERR_ARG, "params_replica: the set is itself a replica; replicate its origin");
        return NULL;
    }
    if (ps->n_replicas == ps->cap_replicas) {
        size_t cap = ps->cap_replicas ? 2 * ps->cap_replicas : 4;
        nn_params **list = realloc(ps->replicas, cap * sizeof *list);
        if (!list) {
            ad_error_set(err, AD_ERR_NOMEM, "params_replica: out of memory");
            return NULL;
        }
        ps->replicas = list;
        ps->cap_replicas = cap;
    }
    nn_params *r = nn_params_new(ps->dtype, err);
    for (size_t i = 0; r && i < ps->count; i++)
        if (!nn_params_add(r, ps->order[i]->name, ad_tensor_shape(ad_param_value(ps->order[i]->param)), err)) {
            nn_params_free(r);
            return NULL;
        }
    if (!r) return NULL;
    /* Point every value at the origin's storage; the replica keeps its gradients. */
    size_t es = ad_dtype_size(ps->dtype);
    for (size_t i = 0; i < r->count; i++) {
        entry *e = r->order[i];
        ad_param_rebind(e->param, ps->values + e->offset * es, r->grads + e->offset * es, NULL);
    }
    free(r->values);
    r->values = ps->values;
    r->origin = ps;
    r->is_replica = 1;
    ps->replicas[ps->n_replicas++] = r;
    ad_error_set(err, AD_OK, NULL);
    return r;
}

#define DEFINE_ADD_INTO(T)                                                   \
    static void add_into_##T(size_t n, const T *src, T *dst)                 \
    {                                                                        \
        for (size_t i = 0; i < n; i++) dst[i] += src[i];                     \
    }
DEFINE_ADD_INTO(float)
DEFINE_ADD_INTO(double)

typedef struct add_job {
    nn_params *dst;
    const nn_params *src;
} add_job;

/* dst's gradients [lo, hi) += src's. The blocks are malloc'd storage of the
 * set's dtype, held as char * for byte offsets; the casts give them back
 * their type. */
static void add_range(void *ctx, size_t lo, size_t hi, int part)
{
    add_job *j = ctx;
    (void)part;
    // cppcheck-suppress invalidPointerCast
    if (j->dst->dtype == AD_F32) add_into_float(hi - lo, (const float *)j->src->grads + lo, (float *)j->dst->grads + lo);
    // cppcheck-suppress invalidPointerCast
    else add_into_double(hi - lo, (const double *)j->src->grads + lo, (double *)j->dst->grads + lo);
}

ad_status nn_params_accumulate_grads(nn_params *dst, const nn_params *replica, ad_error *err)
{
    if (!dst || !replica)
        return ad_error_set(err, AD_ERR_NULL, "params_accumulate_grads: %s is NULL", !dst ? "set" : "replica");
    if (replica->origin != dst)
        return ad_error_set(err, AD_ERR_ARG, "params_accumulate_grads: the second set is not a replica of the first");
    if (replica->values != dst->values || replica->numel != dst->numel)
        return ad_error_set(err, AD_ERR_STATE, "params_accumulate_grads: parameters were added to the set after "
                            "the replica was made; make the replica again");
    add_job j = {dst, replica};
    nn__flat_run(dst->numel, nn__flat_parts(dst->numel), add_range, &j);
    return ad_error_set(err, AD_OK, NULL);
}
