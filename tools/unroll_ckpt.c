/*
 * unroll-ckpt - inspect and convert the files unroll reads and writes.
 *
 *     unroll-ckpt info PATH          a checkpoint, a .safetensors file, an .npy file or a folder of them
 *     unroll-ckpt convert SRC DST    between a checkpoint, a .safetensors file and a folder of .npy files
 *
 * The kind of a path: a folder (or a name ending in '/') is a folder of .npy
 * files, one per parameter (<name>.npy); a name ending in ".npy" is one
 * array, one ending in ".safetensors" a safetensors file; anything else is a
 * checkpoint. Converting writes the parameters
 * only (a checkpoint's optimizer and training state stay behind). Exit
 * status 0 on success, 1 with a one-line message on bad or corrupt input,
 * 2 on a usage error.
 */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unroll/nn/nn.h>

typedef enum kind { KIND_CHECKPOINT, KIND_NPY, KIND_FOLDER, KIND_SAFETENSORS } kind;

static int ends_with(const char *s, const char *tail)
{
    size_t n = strlen(s), m = strlen(tail);
    return n >= m && strcmp(s + n - m, tail) == 0;
}

static kind kind_of(const char *path)
{
    struct stat st;
    if (ends_with(path, "/") || (stat(path, &st) == 0 && S_ISDIR(st.st_mode))) return KIND_FOLDER;
    if (ends_with(path, ".npy")) return KIND_NPY;
    if (ends_with(path, ".safetensors")) return KIND_SAFETENSORS;
    return KIND_CHECKPOINT;
}

static int fail(const char *what, const ad_error *err)
{
    fprintf(stderr, "unroll-ckpt: %s: %s\n", what, err->msg);
    return 1;
}

static void shape_text(ad_shape s, char *out, size_t cap) { ad_shape_format(s, out, cap); }

static void print_params(nn_params *ps)
{
    for (size_t i = 0; i < nn_params_count(ps); i++) {
        ad_param *p = nn_params_at(ps, i);
        ad_tensor *v = ad_param_value(p);
        char s[96];
        shape_text(ad_tensor_shape(v), s, sizeof s);
        printf("  %-40s %s %s\n", ad_param_name(p), ad_dtype_name(ad_tensor_dtype(v)), s);
    }
}

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void free_names(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
}

/* The .npy files of a folder, sorted, as parameter names (without ".npy"). */
static char **folder_names(const char *dir, size_t *n, ad_error *err)
{
    DIR *d = opendir(dir);
    if (!d) {
        ad_error_set(err, AD_ERR_IO, "cannot open folder '%s': %s", dir, strerror(errno));
        return NULL;
    }
    char **names = NULL;
    size_t count = 0, cap = 0;
    struct dirent *e;
    int nomem = 0;
    while (!nomem && (e = readdir(d))) {
        if (!ends_with(e->d_name, ".npy") || strlen(e->d_name) == 4) continue;
        if (count == cap) {
            cap = cap ? 2 * cap : 16;
            char **grown = realloc(names, cap * sizeof *names);
            if (!grown) {
                nomem = 1;
                break;
            }
            names = grown;
        }
        size_t len = strlen(e->d_name) - 4;
        if (!(names[count] = malloc(len + 1))) {
            nomem = 1;
            break;
        }
        memcpy(names[count], e->d_name, len);
        names[count++][len] = '\0';
    }
    closedir(d);
    if (nomem) {
        free_names(names, count);
        ad_error_set(err, AD_ERR_NOMEM, "out of memory listing '%s'", dir);
        *n = 0;
        return NULL;
    }
    if (count > 1) qsort(names, count, sizeof *names, by_name);
    *n = count;
    if (count == 0) ad_error_set(err, AD_ERR_EMPTY, "no .npy files in '%s'", dir);
    return names;
}


/* A folder of .npy files as a parameter set: every file's name, shape and
 * values; f32 when every file is f32, else f64 (lossless). */
static nn_params *read_folder(const char *dir, ad_error *err)
{
    size_t n = 0;
    char **names = folder_names(dir, &n, err);
    if (!names || n == 0) {
        free_names(names, n);
        return NULL;
    }
    ad_shape *shapes = calloc(n, sizeof *shapes);
    ad_dtype dt = AD_F32;
    for (size_t i = 0; shapes && i < n; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s.npy", dir, names[i]);
        ad_tensor *x = ad_npy_load(path, err);
        if (!x) {
            free(shapes);
            free_names(names, n);
            return NULL;
        }
        shapes[i] = ad_tensor_shape(x);
        if (ad_tensor_dtype(x) == AD_F64) dt = AD_F64;
        ad_tensor_free(x);
    }
    nn_params *ps = shapes ? nn_params_new(dt, err) : NULL;
    for (size_t i = 0; ps && i < n; i++)
        if (!nn_params_add(ps, names[i], shapes[i], err)) {
            nn_params_free(ps);
            ps = NULL;
        }
    if (ps && nn_params_load_npy_dir(ps, dir, err) != AD_OK) {
        nn_params_free(ps);
        ps = NULL;
    }
    if (!shapes) ad_error_set(err, AD_ERR_NOMEM, "out of memory");
    free(shapes);
    free_names(names, n);
    return ps;
}

/* A safetensors file's float tensors as a parameter set (f32 when every
 * tensor is F32, else f64, which holds F16 and BF16 exactly); integer
 * tensors are not parameters and are refused. */
static nn_params *read_safetensors(const char *path, ad_error *err)
{
    nn_safetensors *st = nn_safetensors_open(path, err);
    if (!st) return NULL;
    size_t n = nn_safetensors_count(st);
    ad_dtype dt = AD_F32;
    for (size_t i = 0; i < n; i++) {
        if (nn_safetensors_is_int(st, i)) {
            ad_error_set(err, AD_ERR_DTYPE, "'%s' holds integers (%s); a parameter set holds floats",
                         nn_safetensors_name(st, i), nn_safetensors_dtype(st, i));
            nn_safetensors_free(st);
            return NULL;
        }
        if (strcmp(nn_safetensors_dtype(st, i), "F32") != 0) dt = AD_F64;
    }
    nn_params *ps = nn_params_new(dt, err);
    for (size_t i = 0; ps && i < n; i++) {
        ad_param *p = nn_params_add(ps, nn_safetensors_name(st, i), nn_safetensors_shape(st, i), err);
        ad_tensor *x = p ? nn_safetensors_tensor(st, i, dt, err) : NULL;
        if (!x) {
            nn_params_free(ps);
            ps = NULL;
            break;
        }
        size_t bytes = ad_tensor_numel(x) * ad_dtype_size(dt);
        if (bytes) memcpy(ad_tensor_data(ad_param_value(p)), ad_tensor_data(x), bytes);
        ad_tensor_free(x);
    }
    nn_safetensors_free(st);
    return ps;
}

static int info_safetensors(const char *path)
{
    ad_error err;
    nn_safetensors *st = nn_safetensors_open(path, &err);
    if (!st) return fail(path, &err);
    size_t n = nn_safetensors_count(st), n_meta = nn_safetensors_metadata_count(st);
    printf("%s: safetensors, %zu tensors, %zu metadata entries, header and offsets checked\n", path, n, n_meta);
    for (size_t i = 0; i < n; i++) {
        char s[96];
        shape_text(nn_safetensors_shape(st, i), s, sizeof s);
        printf("  %-40s %s %s\n", nn_safetensors_name(st, i), nn_safetensors_dtype(st, i), s);
    }
    for (size_t k = 0; k < n_meta; k++) {
        const char *value = NULL, *key = nn_safetensors_metadata_at(st, k, &value);
        printf("  metadata %s = %s\n", key, value ? value : "");
    }
    nn_safetensors_free(st);
    return 0;
}

static const char *optim_name(nn_optim_kind k)
{
    static const char *names[] = {"sgd", "adagrad", "rmsprop", "adam", "adamw"};
    return (unsigned)k < sizeof names / sizeof names[0] ? names[k] : "unknown";
}

static int info_checkpoint(const char *path)
{
    ad_error err;
    nn_checkpoint_info in;
    nn_params *ps = nn_checkpoint_read_params(path, &in, &err);
    if (!ps) return fail(path, &err);
    printf("%s: unroll checkpoint, format version %d, %llu bytes, checksums ok\n", path, in.version,
           (unsigned long long)in.file_bytes);
    printf("parameters: %zu (%s)\n", in.n_params, ad_dtype_name(in.dtype));
    print_params(ps);
    if (in.has_optim)
        printf("optimizer: %s, lr %g, %lld steps, %d state buffer(s) of %llu elements\n", optim_name(in.optim_kind),
               in.lr, (long long)in.optim_steps, in.optim_buffers, (unsigned long long)in.optim_numel);
    else
        printf("optimizer: none\n");
    if (in.has_train)
        printf("training state: step %lld, rng %s, schedule %s\n", (long long)in.train.step,
               in.train.has_rng ? "saved" : "none", in.train.has_schedule ? "saved" : "none");
    else
        printf("training state: none\n");
    nn_params_free(ps);
    return 0;
}

static int info(const char *path)
{
    ad_error err;
    switch (kind_of(path)) {
    case KIND_NPY: {
        ad_tensor *x = ad_npy_load(path, &err);
        if (!x) return fail(path, &err);
        char s[96];
        shape_text(ad_tensor_shape(x), s, sizeof s);
        printf("%s: .npy array, %s %s, %zu elements\n", path, ad_dtype_name(ad_tensor_dtype(x)), s,
               ad_tensor_numel(x));
        ad_tensor_free(x);
        return 0;
    }
    case KIND_FOLDER: {
        nn_params *ps = read_folder(path, &err);
        if (!ps) return fail(path, &err);
        printf("%s: folder of %zu .npy arrays (%s)\n", path, nn_params_count(ps), ad_dtype_name(nn_params_dtype(ps)));
        print_params(ps);
        nn_params_free(ps);
        return 0;
    }
    case KIND_SAFETENSORS:
        return info_safetensors(path);
    default:
        return info_checkpoint(path);
    }
}

static int convert(const char *src, const char *dst)
{
    ad_error err;
    kind ks = kind_of(src), kd = kind_of(dst);
    if (ks == KIND_NPY || kd == KIND_NPY) {
        fprintf(stderr, "unroll-ckpt: convert: a single .npy array is not a parameter set; "
                        "convert to or from a folder of .npy files\n");
        return 1;
    }
    nn_params *ps = ks == KIND_FOLDER ? read_folder(src, &err)
                  : ks == KIND_SAFETENSORS ? read_safetensors(src, &err)
                  : nn_checkpoint_read_params(src, NULL, &err);
    if (!ps) return fail(src, &err);
    ad_status st;
    if (kd == KIND_FOLDER) {
        if (mkdir(dst, 0777) != 0 && errno != EEXIST) {
            fprintf(stderr, "unroll-ckpt: %s: cannot create the folder: %s\n", dst, strerror(errno));
            nn_params_free(ps);
            return 1;
        }
        st = nn_params_save_npy_dir(ps, dst, &err);
    } else if (kd == KIND_SAFETENSORS) {
        st = nn_params_save_safetensors(ps, dst, NULL, 0, &err);
    } else {
        st = nn_checkpoint_save(dst, ps, NULL, NULL, &err);
    }
    if (st == AD_OK) printf("%s -> %s: %zu parameters\n", src, dst, nn_params_count(ps));
    nn_params_free(ps);
    return st == AD_OK ? 0 : fail(dst, &err);
}

static int usage(FILE *out, int status)
{
    fprintf(out, "usage: unroll-ckpt info PATH\n"
                 "       unroll-ckpt convert SRC DST\n"
                 "PATH, SRC, DST: a checkpoint, a .safetensors file, a folder of .npy files (a folder, or a\n"
                 "name ending in '/'), or (info only) an .npy file. convert writes the parameters only.\n");
    return status;
}

int main(int argc, char **argv)
{
    if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) return usage(stdout, 0);
    if (argc == 2 && !strcmp(argv[1], "--version")) {
        printf("unroll-ckpt %s\n", ad_version());
        return 0;
    }
    if (argc == 3 && !strcmp(argv[1], "info")) return info(argv[2]);
    if (argc == 4 && !strcmp(argv[1], "convert")) return convert(argv[2], argv[3]);
    return usage(stderr, 2);
}
