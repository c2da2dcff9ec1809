/*
 * test_npy_int.c - integer .npy files ('<i8', '<i4', '|u1', '|b1') as
 * ad_itensor: NumPy-written fixtures load with their exact values (the
 * extremes of each type), unroll writes the same bytes NumPy does, refused
 * files give their status, every truncation and header byte flip is caught,
 * sizes are bounded by the file, and out-of-range values are not written.
 * Fixtures: tests/data/npy, written by tests/data/make_fixtures.py.
 */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testsupport.h"

#define NPY(name) UNROLL_TEST_DATA "/npy/" name

static void *slurp(const char *path, size_t *size)
{
    void *buf = ts_read_file(path, size);
    cr_assert_not_null(buf, "%s", path);
    return buf;
}

Test(npy_int, loads_numpy_integer_files)
{
    long before = ts_live_allocs();
    static const int64_t i64[] = {INT64_MIN, -1, 0, 1, ((int64_t)1 << 40) + 3, INT64_MAX};
    static const int64_t i32[] = {INT32_MIN, -1, 7, INT32_MAX};
    static const int64_t u8[] = {0, 1, 200, 255};
    static const int64_t b1[] = {1, 0, 1};
    static const int64_t sc[] = {-42};
    static const int64_t v2[] = {5, -6, 7, -8};
    struct {
        const char *path;
        ad_itype type;
        ad_shape shape;
        const int64_t *want;
    } good[] = {
        {NPY("i64_2x3.npy"), AD_I64, ad_shape2(2, 3), i64},
        {NPY("i32_4.npy"), AD_I32, ad_shape1(4), i32},
        {NPY("u8_2x2.npy"), AD_U8, ad_shape2(2, 2), u8},
        {NPY("b1_3.npy"), AD_BOOL, ad_shape1(3), b1},
        {NPY("i64_0.npy"), AD_I64, ad_shape1(0), NULL},
        {NPY("i64_scalar.npy"), AD_I64, ad_shape0(), sc},
        {NPY("i64_2x2_v2.npy"), AD_I64, ad_shape2(2, 2), v2},
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        ad_error err;
        ad_itensor *x = ad_npy_load_ints(good[i].path, &err);
        cr_assert_not_null(x, "%s: %s", good[i].path, err.msg);
        cr_assert_eq(ad_itensor_type(x), good[i].type, "%s", good[i].path);
        cr_assert(ad_shape_equal(ad_itensor_shape(x), good[i].shape), "%s", good[i].path);
        for (size_t k = 0; k < ad_itensor_numel(x); k++)
            cr_assert_eq(ad_itensor_data(x)[k], good[i].want[k], "%s[%zu] = %lld", good[i].path, k,
                         (long long)ad_itensor_data(x)[k]);
        ad_itensor_free(x);
    }
    cr_assert_eq(ts_live_allocs(), before);
}

Test(npy_int, refuses_what_it_does_not_support)
{
    long before = ts_live_allocs();
    struct {
        const char *path;
        ad_status want;
        const char *fragment;
    } bad[] = {
        {NPY("f64_5.npy"), AD_ERR_DTYPE, "holds floats ('<f8'): read it with ad_npy_read()"},
        {NPY("bad_int16.npy"), AD_ERR_DTYPE, "'<i2' is not supported"},
        {NPY("bad_i8_big_endian.npy"), AD_ERR_FORMAT, "big-endian data ('>i8')"},
        {NPY("bad_rank5.npy"), AD_ERR_RANK, "rank above 4"},
        {NPY("no_such_file.npy"), AD_ERR_IO, "cannot open"},
        {UNROLL_TEST_DATA "/make_fixtures.py", AD_ERR_FORMAT, "bad magic"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ad_error err;
        cr_assert_null(ad_npy_load_ints(bad[i].path, &err), "%s loaded", bad[i].path);
        cr_assert_eq(err.code, bad[i].want, "%s: %s", bad[i].path, err.msg);
        cr_assert(strstr(err.msg, bad[i].fragment), "%s: '%s'", bad[i].path, err.msg);
    }
    /* A '|b1' element must be 0 or 1, as NumPy writes them. */
    size_t size;
    unsigned char *b = slurp(NPY("b1_3.npy"), &size);
    b[size - 2] = 2;
    ad_error err;
    cr_assert_null(ad_npy_read_ints(b, size, &err));
    cr_assert_eq(err.code, AD_ERR_FORMAT);
    cr_assert(strstr(err.msg, "boolean element 1 is the byte 2"), "%s", err.msg);
    free(b);
    cr_assert_eq(ts_live_allocs(), before);
}

/* Every prefix of a file is refused, and so is every header byte flipped;
 * for booleans every data byte flipped too (0 and 1 become 0xFF, 0xFE). */
Test(npy_int, every_truncation_and_byte_flip_is_caught)
{
    long before = ts_live_allocs();
    const char *files[] = {NPY("i64_2x3.npy"), NPY("b1_3.npy"), NPY("i32_4.npy"), NPY("u8_2x2.npy")};
    const size_t data_bytes[] = {6 * 8, 3, 4 * 4, 4};
    for (int f = 0; f < 4; f++) {
        size_t size;
        unsigned char *b = slurp(files[f], &size);
        for (size_t cut = 0; cut < size; cut++) {
            ad_error err;
            cr_assert_null(ad_npy_read_ints(b, cut, &err), "%s truncated at %zu loaded", files[f], cut);
            cr_assert_eq(err.code, AD_ERR_FORMAT, "cut %zu: %s", cut, err.msg);
        }
        unsigned char *c = malloc(size);
        size_t data_off = size - data_bytes[f];
        for (size_t at = 0; at < size; at++) {
            memcpy(c, b, size);
            c[at] ^= 0xFF;
            ad_error err;
            ad_itensor *x = ad_npy_read_ints(c, size, &err);
            if (at < data_off || f == 1) {
                cr_assert_null(x, "%s: flipping byte %zu was not detected", files[f], at);
                cr_assert_neq(err.code, AD_OK);
            } else {
                cr_assert_not_null(x, "a data byte flip is a valid file: %s", err.msg);
            }
            ad_itensor_free(x);
        }
        free(c);
        free(b);
    }
    cr_assert_eq(ts_live_allocs(), before);
}

Test(npy_int, sizes_are_bounded_by_the_file)
{
    long before = ts_live_allocs();
    const char *h = "{'descr': '<i8', 'fortran_order': False, 'shape': (1000000000000,), }";
    unsigned char buf[256] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0};
    size_t len = strlen(h) + 1;
    buf[8] = (unsigned char)len;
    memcpy(buf + 10, h, len - 1);
    buf[10 + len - 1] = '\n';
    long allocs = ts_total_allocs();
    ad_error err;
    cr_assert_null(ad_npy_read_ints(buf, 10 + len + 16, &err));
    cr_assert_eq(err.code, AD_ERR_FORMAT, "%s", err.msg);
    cr_assert(strstr(err.msg, "truncated data"), "%s", err.msg);
    cr_assert_eq(ts_total_allocs(), allocs, "allocated for an impossible size");
    cr_assert_eq(ts_live_allocs(), before);
}

/* A read file written back is byte for byte the file NumPy wrote (rank 0 and
 * 1, where NumPy's shape text has no spaces to differ in); every type and
 * rank round-trips through unroll's own files. */
Test(npy_int, round_trips_with_numpy)
{
    long before = ts_live_allocs();
    const char *same[] = {NPY("i32_4.npy"), NPY("b1_3.npy"), NPY("i64_scalar.npy"), NPY("i64_0.npy")};
    for (int f = 0; f < 4; f++) {
        size_t size, out_size;
        unsigned char *b = slurp(same[f], &size);
        ad_itensor *x = ad_npy_read_ints(b, size, NULL);
        cr_assert_not_null(x);
        void *out;
        cr_assert_eq(ad_npy_write_ints(x, &out, &out_size, NULL), AD_OK);
        cr_assert_eq(out_size, size, "%s", same[f]);
        cr_assert_eq(memcmp(out, b, size), 0, "%s: unroll's bytes differ from NumPy's", same[f]);
        free(out);
        free(b);
        ad_itensor_free(x);
    }
    char path[] = "/tmp/unroll_npy_int_XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    close(fd);
    ad_shape shapes[] = {ad_shape0(), ad_shape1(7), ad_shape3(2, 0, 2), ad_shape4(1, 2, 3, 2)};
    const int64_t lo[] = {INT64_MIN, INT32_MIN, 0, 0}, hi[] = {INT64_MAX, INT32_MAX, 255, 1};
    for (int ty = AD_I64; ty <= AD_BOOL; ty++)
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            ad_itensor *x = ad_itensor_new((ad_itype)ty, shapes[s], NULL);
            int64_t *v = ad_itensor_data(x);
            for (size_t i = 0; i < ad_itensor_numel(x); i++)
                v[i] = i % 3 == 0 ? lo[ty] : i % 3 == 1 ? hi[ty] : (int64_t)(i % 2);
            ad_error err;
            cr_assert_eq(ad_npy_save_ints(path, x, &err), AD_OK, "%s", err.msg);
            ad_itensor *y = ad_npy_load_ints(path, &err);
            cr_assert_not_null(y, "%s", err.msg);
            cr_assert_eq((int)ad_itensor_type(y), (int)ty);
            cr_assert(ad_shape_equal(ad_itensor_shape(y), shapes[s]));
            for (size_t i = 0; i < ad_itensor_numel(x); i++) cr_assert_eq(ad_itensor_data(y)[i], v[i]);
            ad_itensor_free(x);
            ad_itensor_free(y);
        }
    unlink(path);
    cr_assert_eq(ts_live_allocs(), before);
}

Test(npy_int, values_outside_the_type_are_not_written)
{
    long before = ts_live_allocs();
    const ad_itype types[] = {AD_I32, AD_I32, AD_U8, AD_U8, AD_BOOL};
    const int64_t values[] = {(int64_t)INT32_MAX + 1, (int64_t)INT32_MIN - 1, 256, -1, 2};
    const char *fragments[] = {"is 2147483648, outside i32", "is -2147483649, outside i32",
                               "is 256, outside u8", "is -1, outside u8", "is 2, outside bool"};
    for (int k = 0; k < 5; k++) {
        ad_itensor *x = ad_itensor_new(types[k], ad_shape1(3), NULL);
        ad_itensor_data(x)[1] = values[k];
        void *out = NULL;
        size_t size = 0;
        ad_error err;
        cr_assert_eq(ad_npy_write_ints(x, &out, &size, &err), AD_ERR_ARG);
        cr_assert(strstr(err.msg, "element 1") && strstr(err.msg, fragments[k]), "%s", err.msg);
        cr_assert_null(out);
        cr_assert_eq(ad_npy_save_ints("/tmp/unroll_never_written.npy", x, &err), AD_ERR_ARG);
        cr_assert_eq(access("/tmp/unroll_never_written.npy", F_OK), -1);
        ad_itensor_free(x);
    }
    cr_assert_eq(ts_live_allocs(), before);
}

Test(npy_int, bad_arguments)
{
    long before = ts_live_allocs();
    ad_error err;
    ad_itensor *x = ad_itensor_new(AD_I64, ad_shape1(2), NULL);
    void *buf;
    size_t size;
    cr_assert_null(ad_itensor_new((ad_itype)7, ad_shape1(2), &err));
    cr_assert_eq(err.code, AD_ERR_DTYPE);
    cr_assert_null(ad_itensor_new(AD_I64, ad_shape1(-1), &err));
    cr_assert_eq(err.code, AD_ERR_ARG);
    ad_shape r5 = {5, {1, 1, 1, 1}};
    cr_assert_null(ad_itensor_new(AD_I64, r5, &err));
    cr_assert_eq(err.code, AD_ERR_RANK);
    cr_assert_null(ad_npy_load_ints(NULL, &err));
    cr_assert_eq(err.code, AD_ERR_NULL);
    cr_assert_null(ad_npy_read_ints(NULL, 10, &err));
    cr_assert_eq(err.code, AD_ERR_NULL);
    cr_assert_eq(ad_npy_save_ints(NULL, x, &err), AD_ERR_NULL);
    cr_assert_eq(ad_npy_save_ints("/tmp/x.npy", NULL, &err), AD_ERR_NULL);
    cr_assert_eq(ad_npy_write_ints(x, NULL, &size, &err), AD_ERR_NULL);
    cr_assert_eq(ad_npy_write_ints(NULL, &buf, &size, &err), AD_ERR_NULL);
    cr_assert_eq(ad_npy_save_ints("/nonexistent-dir/x.npy", x, &err), AD_ERR_IO);
    cr_assert_eq(ad_itensor_check_range(NULL, &err), AD_ERR_NULL);
    cr_assert_null(ad_itensor_data(NULL));
    cr_assert_eq(ad_itensor_numel(NULL), 0);
    cr_assert_eq(ad_itensor_shape(NULL).rank, 0);
    cr_assert_str_eq(ad_itype_name(AD_BOOL), "bool");
    cr_assert_str_eq(ad_itype_name((ad_itype)9), "invalid");
    ad_itensor_free(NULL);
    ad_itensor_free(x);
    cr_assert_eq(ts_live_allocs(), before);
}

Test(npy_int, allocation_failures_are_reported)
{
#ifdef TS_SHARED_LIBS
    cr_skip_test("allocation failures cannot be injected into a shared library");
#else
    long before = ts_live_allocs();
    size_t size;
    unsigned char *b = slurp(NPY("i64_2x3.npy"), &size);
    for (long n = 1; n <= 2; n++) {
        ad_error err;
        ts_fail_alloc_at(n);
        cr_assert_null(ad_npy_read_ints(b, size, &err), "allocation %ld", n);
        cr_assert_eq(err.code, AD_ERR_NOMEM, "%s", err.msg);
        ts_fail_alloc_at(0);
    }
    ad_itensor *x = ad_npy_read_ints(b, size, NULL);
    void *out;
    ad_error err;
    ts_fail_alloc_at(1);
    cr_assert_eq(ad_npy_write_ints(x, &out, &size, &err), AD_ERR_NOMEM);
    ts_fail_alloc_at(0);
    ad_itensor_free(x);
    free(b);
    cr_assert_eq(ts_live_allocs(), before);
#endif
}
