/*
 * test_npy.c - .npy files: NumPy-written fixtures load with the right
 * values, unroll's files read back, every refused case gives its status, and
 * truncating or corrupting a file never crashes or allocates beyond its size.
 * Fixtures: tests/data/npy, written by tests/data/make_fixtures.py.
 */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testsupport.h"
#include "../autodiff/fileio.h"

#define NPY(name) UNROLL_TEST_DATA "/npy/" name

/* The fixtures hold v[i] = 0.5 i - 1. */
static void expect_ramp(ad_tensor *x, ad_dtype dtype, ad_shape shape)
{
    cr_assert_not_null(x);
    cr_assert_eq(ad_tensor_dtype(x), dtype);
    cr_assert(ad_shape_equal(ad_tensor_shape(x), shape));
    for (size_t i = 0; i < ad_tensor_numel(x); i++) {
        double v = dtype == AD_F32 ? ad_tensor_f32(x)[i] : ad_tensor_f64(x)[i];
        cr_assert_eq(v, 0.5 * (double)i - 1, "element %zu is %g", i, v);
    }
}

Test(npy, loads_numpy_files)
{
    long before = ts_live_allocs();
    struct {
        const char *path;
        ad_dtype dtype;
        ad_shape shape;
    } good[] = {
        {NPY("f32_2x3.npy"), AD_F32, ad_shape2(2, 3)},
        {NPY("f64_2x1x3x2.npy"), AD_F64, ad_shape4(2, 1, 3, 2)},
        {NPY("f64_scalar.npy"), AD_F64, ad_shape0()},
        {NPY("f64_5.npy"), AD_F64, ad_shape1(5)},
        {NPY("f32_0x3.npy"), AD_F32, ad_shape2(0, 3)},
        {NPY("f64_3x2_v2.npy"), AD_F64, ad_shape2(3, 2)},
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        ad_error err;
        ad_tensor *x = ad_npy_load(good[i].path, &err);
        cr_assert_not_null(x, "%s: %s", good[i].path, err.msg);
        expect_ramp(x, good[i].dtype, good[i].shape);
        ad_tensor_free(x);
    }
    cr_assert_eq(ts_live_allocs(), before);
}

Test(npy, refuses_what_it_does_not_support)
{
    long before = ts_live_allocs();
    struct {
        const char *path;
        ad_status want;
        const char *fragment;
    } bad[] = {
        {NPY("bad_big_endian.npy"), AD_ERR_FORMAT, "big-endian"},
        {NPY("bad_fortran.npy"), AD_ERR_FORMAT, "Fortran order"},
        {NPY("bad_int32.npy"), AD_ERR_DTYPE, "holds integers ('<i4'): read it with ad_npy_read_ints()"},
        {NPY("bad_int16.npy"), AD_ERR_DTYPE, "'<i2' is not supported"},
        {NPY("bad_rank5.npy"), AD_ERR_RANK, "rank above 4"},
        {NPY("no_such_file.npy"), AD_ERR_IO, "cannot open"},
        {UNROLL_TEST_DATA "/make_fixtures.py", AD_ERR_FORMAT, "bad magic"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ad_error err;
        cr_assert_null(ad_npy_load(bad[i].path, &err), "%s loaded", bad[i].path);
        cr_assert_eq(err.code, bad[i].want, "%s: %s", bad[i].path, err.msg);
        cr_assert(strstr(err.msg, bad[i].fragment), "%s: '%s'", bad[i].path, err.msg);
    }
    cr_assert_eq(ts_live_allocs(), before);
}

static void *slurp(const char *path, size_t *size)
{
    void *buf;
    cr_assert_eq(ad__file_read_all(path, 1 << 20, &buf, size, NULL), AD_OK);
    return buf;
}

Test(npy, every_truncation_and_byte_flip_is_caught)
{
    long before = ts_live_allocs();
    size_t size;
    unsigned char *b = slurp(NPY("f32_2x3.npy"), &size);
    size_t data_off = size - 6 * sizeof(float);
    for (size_t cut = 0; cut < size; cut++) {
        ad_error err;
        cr_assert_null(ad_npy_read(b, cut, &err), "truncated at %zu loaded", cut);
        cr_assert_eq(err.code, AD_ERR_FORMAT, "cut %zu: %s", cut, err.msg);
    }
    unsigned char *c = malloc(size);
    for (size_t at = 0; at < size; at++) {
        memcpy(c, b, size);
        c[at] ^= 0xFF;
        ad_error err;
        ad_tensor *x = ad_npy_read(c, size, &err);
        if (at < data_off) {
            cr_assert_null(x, "flipping header byte %zu was not detected", at);
            cr_assert_neq(err.code, AD_OK);
        } else {
            cr_assert_not_null(x, "a data byte flip is a valid file: %s", err.msg);
        }
        ad_tensor_free(x);
    }
    free(c);
    free(b);
    cr_assert_eq(ts_live_allocs(), before);
}

/* A header claiming a huge shape must fail on the size check, not on malloc. */
Test(npy, sizes_are_bounded_by_the_file)
{
    long before = ts_live_allocs();
    const char *h1 = "{'descr': '<f8', 'fortran_order': False, 'shape': (4000000000, 4000000000), }";
    const char *h2 = "{'descr': '<f8', 'fortran_order': False, 'shape': (1000000000000,), }";
    const char *hs[2] = {h1, h2};
    ad_status want[2] = {AD_ERR_OVERFLOW, AD_ERR_FORMAT};
    for (int k = 0; k < 2; k++) {
        unsigned char buf[256] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0};
        size_t len = strlen(hs[k]) + 1;
        buf[8] = (unsigned char)len;
        memcpy(buf + 10, hs[k], len - 1);
        buf[10 + len - 1] = '\n';
        long allocs = ts_total_allocs();
        ad_error err;
        cr_assert_null(ad_npy_read(buf, 10 + len + 16, &err));
        cr_assert_eq(err.code, want[k], "%s", err.msg);
        cr_assert_eq(ts_total_allocs(), allocs, "allocated for an impossible size");
    }
    /* A version 2.0 header length of 1 GiB is refused up front. */
    unsigned char big[16] = {0x93, 'N', 'U', 'M', 'P', 'Y', 2, 0, 0, 0, 0, 0x40};
    ad_error err;
    cr_assert_null(ad_npy_read(big, sizeof big, &err));
    cr_assert(strstr(err.msg, "exceeds"), "%s", err.msg);
    cr_assert_eq(ts_live_allocs(), before);
}

Test(npy, save_and_load_round_trip)
{
    long before = ts_live_allocs();
    char path[] = "/tmp/unroll_npy_XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    close(fd);
    ad_shape shapes[] = {ad_shape0(), ad_shape1(7), ad_shape2(3, 1), ad_shape3(2, 0, 2),
                         ad_shape4(1, 2, 3, 4)};
    for (int d = 0; d < 2; d++)
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            ad_dtype dtype = d ? AD_F64 : AD_F32;
            ad_tensor *x = ad_tensor_new(dtype, shapes[s], NULL);
            for (size_t i = 0; i < ad_tensor_numel(x); i++) {
                if (d) ad_tensor_f64(x)[i] = 1.0 / 3.0 * (double)i - 2.0;
                else ad_tensor_f32(x)[i] = 1.0f / 3.0f * (float)i - 2.0f;
            }
            ad_error err;
            cr_assert_eq(ad_npy_save(path, x, &err), AD_OK, "%s", err.msg);
            ad_tensor *y = ad_npy_load(path, &err);
            cr_assert_not_null(y, "%s", err.msg);
            cr_assert_eq(ad_tensor_dtype(y), dtype);
            cr_assert(ad_shape_equal(ad_tensor_shape(y), shapes[s]));
            size_t bytes = ad_tensor_numel(x) * ad_dtype_size(dtype);
            cr_assert_eq(memcmp(ad_tensor_data(x), ad_tensor_data(y), bytes), 0);
            ad_tensor_free(x);
            ad_tensor_free(y);
        }
    unlink(path);
    cr_assert_eq(ts_live_allocs(), before);
}

/* The header text is NumPy's own dict layout, and data starts 64-byte aligned. */
Test(npy, writes_numpy_header_layout)
{
    ad_tensor *x = ad_tensor_new(AD_F64, ad_shape1(5), NULL);
    void *buf;
    size_t size;
    cr_assert_eq(ad_npy_write(x, &buf, &size, NULL), AD_OK);
    const char *want = "{'descr': '<f8', 'fortran_order': False, 'shape': (5,), }";
    cr_assert_eq(memcmp((char *)buf + 10, want, strlen(want)), 0);
    cr_assert_eq((size - 5 * sizeof(double)) % 64, 0);
    cr_assert_eq(((char *)buf)[size - 5 * sizeof(double) - 1], '\n');
    free(buf);
    ad_tensor_free(x);
}

Test(npy, load_into_checks_shape_and_dtype)
{
    long before = ts_live_allocs();
    ad_error err;
    ad_param *p = ad_param_new("w", AD_F32, ad_shape2(2, 3), NULL);
    cr_assert_eq(ad_npy_load_into(NPY("f32_2x3.npy"), ad_param_value(p), &err), AD_OK, "%s",
                 err.msg);
    expect_ramp(ad_param_value(p), AD_F32, ad_shape2(2, 3));
    ad_tensor *wrong = ad_tensor_new(AD_F32, ad_shape2(3, 2), NULL);
    cr_assert_eq(ad_npy_load_into(NPY("f32_2x3.npy"), wrong, &err), AD_ERR_SHAPE);
    cr_assert(strstr(err.msg, "has shape [2,3], the tensor [3,2]"), "%s", err.msg);
    cr_assert_eq(ad_tensor_f32(wrong)[0], 0.0f, "a failed load leaves the tensor unchanged");
    ad_tensor *f64 = ad_tensor_new(AD_F64, ad_shape2(2, 3), NULL);
    cr_assert_eq(ad_npy_load_into(NPY("f32_2x3.npy"), f64, &err), AD_ERR_DTYPE);
    cr_assert_eq(ad_npy_load_into(NPY("f32_2x3.npy"), NULL, &err), AD_ERR_NULL);
    cr_assert_eq(ad_npy_load_into(NPY("missing.npy"), f64, NULL), AD_ERR_IO);
    ad_tensor_free(wrong);
    ad_tensor_free(f64);
    ad_param_free(p);
    cr_assert_eq(ts_live_allocs(), before);
}

Test(npy, bad_arguments)
{
    long before = ts_live_allocs();
    ad_error err;
    ad_tensor *x = ad_tensor_new(AD_F32, ad_shape1(2), NULL);
    void *buf;
    size_t size;
    cr_assert_null(ad_npy_load(NULL, &err));
    cr_assert_eq(err.code, AD_ERR_NULL);
    cr_assert_null(ad_npy_read(NULL, 10, &err));
    cr_assert_eq(err.code, AD_ERR_NULL);
    cr_assert_eq(ad_npy_save(NULL, x, &err), AD_ERR_NULL);
    cr_assert_eq(ad_npy_save("/tmp/x.npy", NULL, &err), AD_ERR_NULL);
    cr_assert_eq(ad_npy_write(x, NULL, &size, &err), AD_ERR_NULL);
    cr_assert_eq(ad_npy_write(NULL, &buf, &size, &err), AD_ERR_NULL);
    cr_assert_eq(ad_npy_save("/nonexistent-dir/x.npy", x, &err), AD_ERR_IO);
    cr_assert(strstr(err.msg, "temporary file"), "%s", err.msg);
    cr_assert_eq(ad__file_read_all(NULL, 1, &buf, &size, &err), AD_ERR_NULL);
    cr_assert_eq(ad__file_read_all(NPY("f64_5.npy"), 8, &buf, &size, &err), AD_ERR_FORMAT);
    cr_assert_eq(ad__file_read_all(UNROLL_TEST_DATA, 1 << 20, &buf, &size, &err), AD_ERR_IO);
    cr_assert_eq(ad__file_write_atomic(NULL, "", 0, &err), AD_ERR_NULL);
    ad_tensor_free(x);
    cr_assert_eq(ts_live_allocs(), before);
}

/* A released tape tensor has no buffer to load into: the load is refused
 * like ad_npy_write's, not a copy into NULL. */
Test(npy, load_into_a_released_tensor_is_refused)
{
    long before = ts_live_allocs();
    ad_tape *t = ad_tape_new(NULL);
    ad_param *w = ad_param_new("w", AD_F32, ad_shape2(2, 3), NULL);
    ad_tensor *x = ad_mul_scalar(t, ad_use(t, w), 2.0);
    cr_assert_eq(ad_tape_release(t, x), AD_OK, "%s", ad_tape_message(t));
    ad_error err;
    cr_assert_eq(ad_npy_load_into(NPY("f32_2x3.npy"), x, &err), AD_ERR_STATE);
    cr_assert(strstr(err.msg, "was released"), "%s", err.msg);
    cr_assert_eq(ad_npy_load_into(NPY("f32_2x3.npy"), x, NULL), AD_ERR_STATE);
    ad_tape_free(t);
    ad_param_free(w);
    cr_assert_eq(ts_live_allocs(), before);
}

/* A named pipe (or any file that is not a regular one) is refused at once:
 * opening one for reading would wait for a writer forever. */
Test(npy, a_named_pipe_is_refused_without_blocking, .timeout = 20)
{
    long before = ts_live_allocs();
    char dir[] = "/tmp/unroll_fifo_XXXXXX", path[64];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/x.npy", dir);
    cr_assert_eq(mkfifo(path, 0600), 0);
    ad_error err;
    cr_assert_null(ad_npy_load(path, &err));
    cr_assert_eq(err.code, AD_ERR_IO, "%s", err.msg);
    cr_assert(strstr(err.msg, "not a regular file"), "%s", err.msg);
    ad_tensor *x = ad_tensor_new(AD_F32, ad_shape1(2), NULL);
    cr_assert_eq(ad_npy_load_into(path, x, &err), AD_ERR_IO);
    void *buf;
    size_t size;
    cr_assert_eq(ad__file_read_all(path, 1 << 20, &buf, &size, &err), AD_ERR_IO);
    cr_assert_eq(ad__file_read_all("/dev/zero", 1 << 20, &buf, &size, &err), AD_ERR_IO);
    ad_tensor_free(x);
    unlink(path);
    rmdir(dir);
    cr_assert_eq(ts_live_allocs(), before);
}

static unsigned mode_of(const char *path)
{
    struct stat st;
    cr_assert_eq(stat(path, &st), 0, "%s", path);
    return (unsigned)(st.st_mode & 07777);
}

/* Saved files get the mode fopen() would give a new file, 0666 less the
 * umask, whatever the temporary file was created with. */
Test(npy, saved_files_get_the_mode_fopen_gives)
{
    long before = ts_live_allocs();
    char dir[] = "/tmp/unroll_mode_XXXXXX", path[64], raw[64];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/x.npy", dir);
    snprintf(raw, sizeof raw, "%s/raw.bin", dir);
    ad_tensor *x = ad_tensor_new(AD_F32, ad_shape1(3), NULL);
    static const unsigned masks[] = {022, 027, 077, 002, 0};
    mode_t old = umask(022);
    for (size_t i = 0; i < sizeof masks / sizeof masks[0]; i++) {
        umask((mode_t)masks[i]);
        unlink(path);
        cr_assert_eq(ad_npy_save(path, x, NULL), AD_OK);
        cr_assert_eq(mode_of(path), 0666u & ~masks[i], "umask %03o: mode %03o", masks[i], mode_of(path));
        cr_assert_eq(ad_npy_save(path, x, NULL), AD_OK, "replacing");
        cr_assert_eq(mode_of(path), 0666u & ~masks[i], "umask %03o, replaced: mode %03o", masks[i], mode_of(path));
        cr_assert_eq(ad__file_write_atomic(raw, "abc", 3, NULL), AD_OK);
        cr_assert_eq(mode_of(raw), 0666u & ~masks[i]);
    }
    umask(old);
    ad_tensor_free(x);
    unlink(path);
    unlink(raw);
    cr_assert_eq(rmdir(dir), 0, "no temporary file is left in the folder");
    cr_assert_eq(ts_live_allocs(), before);
}
