/*
 * make_corpus.c - writes the seed corpora of the fuzz targets under the
 * folder given (tests/fuzz/corpus): valid files made with the library, plus a
 * few hand-written .npy headers that take the reader's other branches. The
 * seeds are committed; rerun this after a format change:
 *
 *     build/tests/fuzz/fuzz_make_corpus tests/fuzz/corpus
 */
#define _POSIX_C_SOURCE 200809L
#include "fuzz.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *root;

static void put(const char *target, const char *name, const void *data, size_t size)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", root, target);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/%s/%s", root, target, name);
    if (fuzz_write_file(path, data, size) != 0) {
        fprintf(stderr, "make_corpus: cannot write %s\n", path);
        exit(1);
    }
}

static void put_npy(const char *name, ad_dtype dtype, ad_shape shape, uint64_t seed)
{
    ad_tensor *x = ad_tensor_new(dtype, shape, NULL);
    ad_rng rng;
    ad_rng_seed(&rng, seed, 0);
    for (size_t i = 0; i < ad_tensor_numel(x); i++) {
        double v = ad_rng_uniform(&rng) - 0.5;
        if (dtype == AD_F32) ad_tensor_f32(x)[i] = (float)v;
        else ad_tensor_f64(x)[i] = v;
    }
    void *img;
    size_t n;
    if (ad_npy_write(x, &img, &n, NULL) != AD_OK) exit(1);
    put("npy", name, img, n);
    free(img);
    ad_tensor_free(x);
}

/* A .npy image with a header of our own: version major.0, 8 bytes of data. */
static void put_raw_npy(const char *name, int major, const char *dict)
{
    unsigned char buf[512];
    size_t hl = strlen(dict), at = 0;
    memcpy(buf, "\x93NUMPY", 6);
    buf[6] = (unsigned char)major;
    buf[7] = 0;
    at = 8;
    for (int i = 0; i < (major == 1 ? 2 : 4); i++) buf[at++] = (unsigned char)(hl >> (8 * i));
    memcpy(buf + at, dict, hl);
    at += hl;
    memset(buf + at, 0x3f, 8); /* 8 bytes of data */
    put("npy", name, buf, at + 8);
}

static void put_checkpoints(void)
{
    fuzz_model m;
    fuzz_model_new(&m, 5);
    nn_train_state ts = {.step = 42, .has_rng = 1, .has_schedule = 1};
    ad_rng_seed(&ts.rng, 9, 2);
    ts.schedule.kind = NN_SCHEDULE_COSINE;
    ts.schedule.base_lr = 0.01;
    ts.schedule.t_max = 100;
    struct { const char *name; int opt, train; } kinds[] = {
        {"full.ckpt", 1, 1}, {"params_only.ckpt", 0, 0}, {"params_optim.ckpt", 1, 0}};
    for (int k = 0; k < 3; k++) {
        char path[4200];
        snprintf(path, sizeof path, "%s/seed.ckpt", fuzz_scratch_dir());
        if (nn_checkpoint_save(path, m.ps, kinds[k].opt ? m.opt : NULL, kinds[k].train ? &ts : NULL,
                               NULL) != AD_OK)
            exit(1);
        void *data;
        size_t n;
        if (ad__file_read_all(path, 1 << 20, &data, &n, NULL) != AD_OK) exit(1);
        put("checkpoint", kinds[k].name, data, n);
        put("checkpoint_crc", kinds[k].name, data, n);
        free(data);
    }
    fuzz_model_free(&m);
}

/* The model's files joined by FUZZ_NPY_DIR_SEP; `skip` leaves one out, `bad`
 * gives one the wrong shape. */
static void put_npy_dir(const char *name, int skip, int bad)
{
    fuzz_model m;
    fuzz_model_new(&m, 7);
    unsigned char *all = NULL;
    size_t len = 0;
    for (size_t i = 0; i < nn_params_count(m.ps); i++) {
        ad_tensor *v = ad_param_value(nn_params_at(m.ps, i));
        ad_tensor *w = NULL;
        if ((int)i == bad) {
            w = ad_tensor_new(AD_F64, ad_shape1(5), NULL);
            v = w;
        }
        void *img = NULL;
        size_t n = 0;
        if ((int)i != skip && ad_npy_write(v, &img, &n, NULL) != AD_OK) exit(1);
        size_t sep = i ? strlen(FUZZ_NPY_DIR_SEP) : 0;
        unsigned char *grown = realloc(all, len + sep + n + 1);
        if (!grown) exit(1);
        all = grown;
        memcpy(all + len, FUZZ_NPY_DIR_SEP, sep);
        if (n) memcpy(all + len + sep, img, n);
        len += sep + n;
        free(img);
        ad_tensor_free(w);
    }
    put("npy_dir", name, all, len);
    free(all);
    fuzz_model_free(&m);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s <corpus folder>\n", argv[0]);
        return 2;
    }
    root = argv[1];
    mkdir(root, 0755);
    put_npy("f32_2x3.npy", AD_F32, ad_shape2(2, 3), 1);
    put_npy("f64_scalar.npy", AD_F64, ad_shape0(), 2);
    put_npy("f64_rank4.npy", AD_F64, ad_shape4(1, 2, 1, 2), 3);
    put_npy("f32_empty.npy", AD_F32, ad_shape2(0, 3), 4);
    put_raw_npy("v2_header.npy", 2, "{'descr': '<f8', 'fortran_order': False, 'shape': (1,), }      \n");
    put_raw_npy("fortran.npy", 1, "{'descr': '<f4', 'fortran_order': True, 'shape': (2,), }        \n");
    put_raw_npy("big_endian.npy", 1, "{'descr': '>f8', 'fortran_order': False, 'shape': (1,), }     \n");
    put_raw_npy("int32.npy", 1, "{\"descr\": \"<i4\", \"fortran_order\": False, \"shape\": (2,)}      \n");
    put_raw_npy("rank5.npy", 1, "{'shape': (1, 1, 1, 1, 2), 'fortran_order': False, 'descr': '<f4'}\n");
    put_checkpoints();
    put_npy_dir("all.bin", -1, -1);
    put_npy_dir("missing_one.bin", 2, -1);
    put_npy_dir("bad_shape.bin", -1, 4);
    return 0;
}
