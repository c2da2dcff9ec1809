/*
 * state_dict.c - loading a folder of .npy files or a safetensors file into a
 * parameter set by name, in three passes: gather the source's keys and
 * shapes, map and match them (filling the report), and only when nothing is
 * wrong convert every matched entry and then copy them all, so that a
 * failure at any point leaves the model as it was.
 */
#define _POSIX_C_SOURCE 200809L
#include "state_dict.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "safetensors.h"

typedef struct src_entry {
    char *key;
    ad_shape shape;
    int is_int;
    ad_tensor *npy;  /* a float .npy entry, loaded */
    size_t st_index; /* a safetensors entry */
    char name[AD_NAME_SIZE];
    int skip;
    ad_param *param;
    ad_tensor *value; /* converted to the set's dtype before copying */
} src_entry;

typedef struct source {
    src_entry *e;
    size_t n, cap;
    nn_safetensors *st;
} source;

static void source_free(source *s)
{
    for (size_t i = 0; i < s->n; i++) {
        free(s->e[i].key);
        ad_tensor_free(s->e[i].npy);
        ad_tensor_free(s->e[i].value);
    }
    free(s->e);
    nn_safetensors_free(s->st);
}

static src_entry *push(source *s, const char *key, ad_error *err)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 32;
        src_entry *e = realloc(s->e, cap * sizeof *e);
        if (!e) return ad_error_set(err, AD_ERR_NOMEM, "state_dict: out of memory"), NULL;
        s->e = e, s->cap = cap;
    }
    src_entry *e = &s->e[s->n];
    memset(e, 0, sizeof *e);
    e->key = malloc(strlen(key) + 1);
    if (!e->key) return ad_error_set(err, AD_ERR_NOMEM, "state_dict: out of memory"), NULL;
    strcpy(e->key, key);
    s->n++;
    return e;
}

static int by_key(const void *a, const void *b)
{
    return strcmp(((const src_entry *)a)->key, ((const src_entry *)b)->key);
}

/* Every "<key>.npy" in dir (names starting with '.' are left out: they are
 * no state dict's, and atomic saves use such temporary names). */
static ad_status gather_npy_dir(source *s, const char *dir, ad_error *err)
{
    DIR *d = opendir(dir);
    if (!d) return ad_error_set(err, AD_ERR_IO, "state_dict: cannot open the folder '%s'", dir);
    ad_status st = AD_OK;
    struct dirent *de;
    while (st == AD_OK && (de = readdir(d))) {
        size_t len = strlen(de->d_name);
        if (de->d_name[0] == '.' || len <= 4 || strcmp(de->d_name + len - 4, ".npy") != 0) continue;
        char path[4096], key[1024];
        if (len - 4 >= sizeof key || snprintf(path, sizeof path, "%s/%s", dir, de->d_name) >= (int)sizeof path) {
            st = ad_error_set(err, AD_ERR_ARG, "state_dict: path of '%.80s' is too long", de->d_name);
            break;
        }
        memcpy(key, de->d_name, len - 4);
        key[len - 4] = '\0';
        src_entry *e = push(s, key, err);
        if (!e) {
            st = AD_ERR_NOMEM;
            break;
        }
        ad_error local;
        e->npy = ad_npy_load(path, &local);
        if (e->npy) {
            e->shape = ad_tensor_shape(e->npy);
            continue;
        }
        ad_itensor *ints = local.code == AD_ERR_DTYPE ? ad_npy_load_ints(path, NULL) : NULL;
        if (!ints) {
            st = ad_error_set(err, local.code, "%s", local.msg);
            break;
        }
        e->is_int = 1;
        e->shape = ad_itensor_shape(ints);
        ad_itensor_free(ints);
    }
    closedir(d);
    /* readdir's order is the file system's: sort for a stable report. */
    if (st == AD_OK && s->n) qsort(s->e, s->n, sizeof *s->e, by_key);
    return st;
}

static ad_status gather_safetensors(source *s, const char *path, ad_error *err)
{
    s->st = nn_safetensors_open(path, err);
    if (!s->st) return err ? err->code : AD_ERR_FORMAT;
    for (size_t i = 0; i < nn_safetensors_count(s->st); i++) {
        src_entry *e = push(s, nn_safetensors_name(s->st, i), err);
        if (!e) return AD_ERR_NOMEM;
        e->st_index = i;
        e->shape = nn_safetensors_shape(s->st, i);
        e->is_int = nn_safetensors_is_int(s->st, i);
    }
    return AD_OK;
}

static ad_status map_name(src_entry *e, const nn_load_options *o, ad_error *err)
{
    if (o->rename) {
        e->name[0] = '\0';
        if (!o->rename(e->key, e->name, sizeof e->name, o->rename_ctx)) e->skip = 1;
        e->name[sizeof e->name - 1] = '\0';
        return AD_OK;
    }
    const char *k = e->key;
    size_t sp = o->strip_prefix ? strlen(o->strip_prefix) : 0;
    if (sp && strncmp(k, o->strip_prefix, sp) == 0) k += sp;
    int n = snprintf(e->name, sizeof e->name, "%s%s", o->add_prefix ? o->add_prefix : "", k);
    if (n < 0 || (size_t)n >= sizeof e->name)
        return ad_error_set(err, AD_ERR_ARG, "state_dict: '%.80s' maps to a name longer than %d bytes", e->key,
                            AD_NAME_SIZE - 1);
    return AD_OK;
}

static char *dup(const char *s)
{
    char *d = malloc(strlen(s) + 1);
    if (d) strcpy(d, s);
    return d;
}

/* Appends the lists of the report; 0 on allocation failure. */
static int fill_report(nn_load_report *r, const nn_params *ps, const source *s, const unsigned char *matched)
{
    size_t np = nn_params_count(ps);
    r->missing = calloc(np ? np : 1, sizeof *r->missing);
    r->unexpected = calloc(s->n ? s->n : 1, sizeof *r->unexpected);
    r->mismatched = calloc(s->n ? s->n : 1, sizeof *r->mismatched);
    if (!r->missing || !r->unexpected || !r->mismatched) return 0;
    for (size_t i = 0; i < np; i++)
        if (!matched[i] && !(r->missing[r->n_missing++] = dup(ad_param_name(nn_params_at(ps, i))))) return 0;
    for (size_t i = 0; i < s->n; i++) {
        const src_entry *e = &s->e[i];
        if (e->skip) continue;
        if (!e->param) {
            if (!(r->unexpected[r->n_unexpected++] = dup(e->key))) return 0;
            continue;
        }
        ad_shape want = ad_tensor_shape(ad_param_value(e->param));
        if (e->is_int || !ad_shape_equal(e->shape, want)) {
            nn_load_mismatch *m = &r->mismatched[r->n_mismatched++];
            m->file_shape = e->shape, m->model_shape = want, m->file_is_int = e->is_int;
            if (!(m->name = dup(e->name))) return 0;
        }
    }
    return 1;
}

/* Matches keys with parameters; `matched` marks the parameters found. */
static ad_status match(nn_params *ps, source *s, const nn_load_options *o, unsigned char *matched, ad_error *err)
{
    size_t np = nn_params_count(ps);
    for (size_t i = 0; i < s->n; i++) {
        src_entry *e = &s->e[i];
        ad_status st = map_name(e, o, err);
        if (st != AD_OK) return st;
        if (e->skip || !(e->param = nn_params_get(ps, e->name))) continue;
        for (size_t k = 0; k < np; k++)
            if (nn_params_at(ps, k) == e->param) {
                if (matched[k])
                    return ad_error_set(err, AD_ERR_DUPLICATE, "state_dict: two keys map to '%s' (one is '%.80s')",
                                        e->name, e->key);
                matched[k] = 1;
            }
    }
    return AD_OK;
}

/* The error a filled report means, or AD_OK. */
static ad_status verdict(const nn_load_report *r, int strict, ad_error *err)
{
    if (r->n_mismatched) {
        const nn_load_mismatch *m = &r->mismatched[0];
        char a[64], b[64];
        if (m->file_is_int)
            return ad_error_set(err, AD_ERR_DTYPE, "state_dict: '%s' holds integers in the file (%zu mismatched)",
                                m->name, r->n_mismatched);
        return ad_error_set(err, AD_ERR_SHAPE, "state_dict: '%s' has shape %s in the file, %s in the model (%zu "
                            "mismatched)", m->name, ad_shape_format(m->file_shape, a, sizeof a),
                            ad_shape_format(m->model_shape, b, sizeof b), r->n_mismatched);
    }
    if (strict && (r->n_missing || r->n_unexpected))
        return ad_error_set(err, AD_ERR_MISMATCH, "state_dict: %zu missing (first '%.60s'), %zu unexpected (first "
                            "'%.60s')", r->n_missing, r->n_missing ? r->missing[0] : "", r->n_unexpected,
                            r->n_unexpected ? r->unexpected[0] : "");
    return AD_OK;
}

/* Converts every matched entry to the set's dtype, then copies them all. */
static ad_status apply(nn_params *ps, source *s, nn_load_report *r, ad_error *err)
{
    ad_dtype dt = nn_params_dtype(ps);
    for (size_t i = 0; i < s->n; i++) {
        src_entry *e = &s->e[i];
        if (e->skip || !e->param) continue;
        if (s->st) {
            e->value = nn_safetensors_tensor(s->st, e->st_index, dt, err);
        } else {
            e->value = ad_tensor_new(dt, e->shape, err);
            for (size_t k = 0; e->value && k < ad_tensor_numel(e->npy); k++) {
                double v = ad_tensor_get(e->npy, k);
                if (dt == AD_F32) ad_tensor_f32(e->value)[k] = (float)v;
                else ad_tensor_f64(e->value)[k] = v;
            }
        }
        if (!e->value) return err ? err->code : AD_ERR_NOMEM;
    }
    for (size_t i = 0; i < s->n; i++) {
        src_entry *e = &s->e[i];
        if (e->skip || !e->param) continue;
        memcpy(ad_tensor_data(ad_param_value(e->param)), ad_tensor_data(e->value),
               ad_tensor_numel(e->value) * ad_dtype_size(dt));
        r->n_loaded++;
    }
    return AD_OK;
}

ad_status nn_params_load_state_dict(nn_params *ps, const char *path, const nn_load_options *opts,
                                    nn_load_report *report, ad_error *err)
{
    nn_load_report local = {0};
    nn_load_report *r = report ? report : &local;
    memset(r, 0, sizeof *r);
    if (!ps || !path) return ad_error_set(err, AD_ERR_NULL, "state_dict: %s is NULL", !ps ? "set" : "path");
    nn_load_options none = {0};
    const nn_load_options *o = opts ? opts : &none;
    source s = {0};
    struct stat sb;
    ad_status st = stat(path, &sb) == 0 && S_ISDIR(sb.st_mode) ? gather_npy_dir(&s, path, err)
                                                               : gather_safetensors(&s, path, err);
    unsigned char *matched = NULL;
    if (st == AD_OK) {
        matched = calloc(nn_params_count(ps) ? nn_params_count(ps) : 1, 1);
        if (!matched) {
            ad_error_set(err, AD_ERR_NOMEM, "state_dict: out of memory");
            st = AD_ERR_NOMEM;
        } else {
            st = match(ps, &s, o, matched, err);
        }
    }
    if (st == AD_OK && !fill_report(r, ps, &s, matched))
        st = ad_error_set(err, AD_ERR_NOMEM, "state_dict: out of memory");
    if (st == AD_OK) st = verdict(r, o->strict, err);
    if (st == AD_OK) st = apply(ps, &s, r, err);
    free(matched);
    source_free(&s);
    if (st != AD_OK) r->n_loaded = 0;
    if (!report) nn_load_report_free(&local);
    return st == AD_OK ? ad_error_set(err, AD_OK, NULL) : st;
}

void nn_load_report_free(nn_load_report *r)
{
    if (!r) return;
    for (size_t i = 0; r->missing && i < r->n_missing; i++) free(r->missing[i]);
    for (size_t i = 0; r->unexpected && i < r->n_unexpected; i++) free(r->unexpected[i]);
    for (size_t i = 0; r->mismatched && i < r->n_mismatched; i++) free(r->mismatched[i].name);
    free(r->missing);
    free(r->unexpected);
    free(r->mismatched);
    memset(r, 0, sizeof *r);
}
