/*
 * test_nn_safetensors.c - safetensors files: a file written by the fixture
 * script (struct + json, the published layout) reads with exact values for
 * every dtype (BF16 and F16 converted), its metadata and escaped names;
 * unroll's files read back; every malformed header, offset layout, dtype,
 * duplicate and trailing byte is refused with its status; every truncation
 * and header byte flip is caught; and the strict JSON parser accepts RFC 8259
 * and nothing else. Fixtures: tests/data/safetensors.
 */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <unroll/nn/nn.h>
#include "testsupport.h"
#include "../nn/internal.h"

#define ST(name) UNROLL_TEST_DATA "/safetensors/" name

static void *slurp(const char *path, size_t *size)
{
    void *buf;
    cr_assert_eq(ad__file_read_all(path, 1 << 20, &buf, size, NULL), AD_OK, "%s", path);
    return buf;
}

static float bf16_of(float f)
{
    union {
        float f;
        uint32_t u;
    } c = {f};
    c.u &= 0xFFFF0000u;
    return c.f;
}

Test(safetensors, reads_the_fixture_scripts_file)
{
    long before = ts_live_allocs();
    ad_error err;
    nn_safetensors *st = nn_safetensors_open(ST("basic.safetensors"), &err);
    cr_assert_not_null(st, "%s", err.msg);
    cr_assert_eq(nn_safetensors_count(st), 7);
    cr_assert_str_eq(nn_safetensors_name(st, 0), "w.f32");
    cr_assert_str_eq(nn_safetensors_dtype(st, 3), "BF16");
    ad_tensor *w = nn_safetensors_tensor(st, 0, AD_F64, &err);
    cr_assert(ad_shape_equal(ad_tensor_shape(w), ad_shape2(2, 3)));
    for (int i = 0; i < 6; i++) cr_assert_eq(ad_tensor_f64(w)[i], 0.5 * i - 1);
    ad_tensor_free(w);
    w = nn_safetensors_tensor(st, 1, AD_F32, &err);
    for (int i = 0; i < 3; i++) cr_assert_eq(ad_tensor_f32(w)[i], 0.5f * (float)i - 1);
    ad_tensor_free(w);
    ad_itensor *ids = nn_safetensors_ints(st, 2, &err);
    cr_assert_not_null(ids, "%s", err.msg);
    const int64_t want_ids[] = {3, -1, (int64_t)1 << 40, 0};
    for (int i = 0; i < 4; i++) cr_assert_eq(ad_itensor_data(ids)[i], want_ids[i]);
    ad_itensor_free(ids);
    const float bf[] = {1.0f, -2.5f, 3.140625f, bf16_of(1e-3f)};
    w = nn_safetensors_tensor(st, 3, AD_F32, &err);
    for (int i = 0; i < 4; i++) cr_assert_eq(ad_tensor_f32(w)[i], bf[i], "bf16 %d: %g", i, ad_tensor_f32(w)[i]);
    ad_tensor_free(w);
    w = nn_safetensors_tensor(st, 4, AD_F64, &err);
    const double hf[] = {0.5, -65504.0, ldexp(1.0, -24), INFINITY, -0.0};
    for (int i = 0; i < 5; i++) cr_assert_eq(ad_tensor_f64(w)[i], hf[i], "f16 %d: %g", i, ad_tensor_f64(w)[i]);
    cr_assert(signbit(ad_tensor_f64(w)[4]));
    ad_tensor_free(w);
    cr_assert(ad_shape_equal(nn_safetensors_shape(st, 5), ad_shape2(0, 3)));
    cr_assert_eq(nn_safetensors_find(st, "esc\"aped.\xc3\xa9"), 6);
    cr_assert(ad_shape_equal(nn_safetensors_shape(st, 6), ad_shape0()));
    cr_assert_eq(nn_safetensors_metadata_count(st), 2);
    cr_assert_str_eq(nn_safetensors_metadata(st, "format"), "pt");
    cr_assert_str_eq(nn_safetensors_metadata(st, "note"), "caf\xc3\xa9 \xe2\x9c\x93");
    const char *v;
    cr_assert_str_eq(nn_safetensors_metadata_at(st, 1, &v), "note");
    cr_assert_null(nn_safetensors_metadata_at(st, 2, &v));
    /* the wrong accessor for the kind of entry */
    cr_assert_null(nn_safetensors_ints(st, 0, &err));
    cr_assert_eq(err.code, AD_ERR_DTYPE);
    cr_assert_null(nn_safetensors_tensor(st, 2, AD_F64, &err));
    cr_assert(strstr(err.msg, "holds integers (I64)"), "%s", err.msg);
    cr_assert_null(nn_safetensors_tensor(st, 7, AD_F64, &err));
    cr_assert_eq(err.code, AD_ERR_ARG);
    nn_safetensors_free(st);
    cr_assert_eq(ts_live_allocs(), before);
}

/* Reading the fixture and writing it back through unroll gives a file that
 * reads the same (names, dtypes, shapes, values, metadata). */
Test(safetensors, writes_what_it_reads)
{
    long before = ts_live_allocs();
    ad_error err;
    nn_params *ps = nn_params_new(AD_F64, NULL);
    ad_param *a = nn_params_add(ps, "lstm.weight_ih_l0", ad_shape2(8, 3), NULL);
    ad_param *b = nn_params_add(ps, "fc.bias", ad_shape1(2), NULL);
    for (int i = 0; i < 24; i++) ad_tensor_f64(ad_param_value(a))[i] = 1.0 / 3 * i - 4;
    ad_tensor_f64(ad_param_value(b))[1] = -1e300;
    char path[] = "/tmp/unroll_st_XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    const char *meta[] = {"format", "pt", "k\"\n", "v\\"};
    cr_assert_eq(nn_params_save_safetensors(ps, path, meta, 2, &err), AD_OK, "%s", err.msg);
    nn_safetensors *st = nn_safetensors_open(path, &err);
    cr_assert_not_null(st, "%s", err.msg);
    cr_assert_eq(nn_safetensors_count(st), 2);
    cr_assert_str_eq(nn_safetensors_name(st, 0), "lstm.weight_ih_l0");
    cr_assert_str_eq(nn_safetensors_dtype(st, 0), "F64");
    ad_tensor *x = nn_safetensors_tensor(st, 0, AD_F64, NULL);
    cr_assert_eq(memcmp(ad_tensor_data(x), ad_tensor_data(ad_param_value(a)), 24 * 8), 0);
    ad_tensor_free(x);
    x = nn_safetensors_tensor(st, 1, AD_F64, NULL);
    cr_assert_eq(ad_tensor_f64(x)[1], -1e300);
    ad_tensor_free(x);
    cr_assert_str_eq(nn_safetensors_metadata(st, "k\"\n"), "v\\");
    nn_safetensors_free(st);
    /* integer entries of every type, and the header is 8-byte aligned */
    ad_itensor *ints[4];
    nn_safetensors_entry e[4];
    const char *names[] = {"a", "b", "c", "d"};
    for (int ty = 0; ty < 4; ty++) {
        ints[ty] = ad_itensor_new((ad_itype)ty, ad_shape1(3), NULL);
        ad_itensor_data(ints[ty])[0] = 1;
        ad_itensor_data(ints[ty])[2] = ty == 3 ? 1 : ty == 2 ? 255 : -5;
        e[ty] = (nn_safetensors_entry){names[ty], NULL, ints[ty]};
    }
    void *buf;
    size_t size;
    cr_assert_eq(nn_safetensors_write(e, 4, NULL, 0, &buf, &size, &err), AD_OK, "%s", err.msg);
    cr_assert_eq(((unsigned char *)buf)[0] % 8, 0);
    st = nn_safetensors_read(buf, size, &err);
    cr_assert_not_null(st, "%s", err.msg);
    const char *dts[] = {"I64", "I32", "U8", "BOOL"};
    for (int ty = 0; ty < 4; ty++) {
        cr_assert_str_eq(nn_safetensors_dtype(st, (size_t)ty), dts[ty]);
        ad_itensor *y = nn_safetensors_ints(st, (size_t)ty, NULL);
        cr_assert_eq((int)ad_itensor_type(y), ty);
        for (int i = 0; i < 3; i++) cr_assert_eq(ad_itensor_data(y)[i], ad_itensor_data(ints[ty])[i]);
        ad_itensor_free(y);
        ad_itensor_free(ints[ty]);
    }
    nn_safetensors_free(st);
    free(buf);
    unlink(path);
    nn_params_free(ps);
    cr_assert_eq(ts_live_allocs(), before);
}

/* A file from a header text and `data` bytes of zeros. */
static unsigned char *make_file(const char *header, size_t data, size_t *size)
{
    size_t n = strlen(header);
    *size = 8 + n + data;
    unsigned char *b = calloc(1, *size);
    for (int k = 0; k < 8; k++) b[k] = (unsigned char)((uint64_t)n >> (8 * k));
    memcpy(b + 8, header, n);
    return b;
}

typedef struct bad_row {
    char header[200];
    size_t data;
    ad_status want;
    char fragment[64];
} bad_row;

static bad_row bad_rows[] = {
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 12, AD_ERR_FORMAT, "4 unexpected bytes after"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, AD_ERR_FORMAT, "overlaps"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, AD_ERR_FORMAT, "4 unused bytes before 'a'"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,16]}}", 8, AD_ERR_FORMAT, "outside the 8 data bytes"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, AD_ERR_FORMAT, "needs 12 bytes"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", 8, AD_ERR_FORMAT, "outside"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, AD_ERR_DUPLICATE, "duplicate key 'a'"},
    {"{\"a\":{\"dtype\":\"I16\",\"shape\":[1],\"data_offsets\":[0,2]}}", 2, AD_ERR_DTYPE, "dtype 'I16' is not supported"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1],\"data_offsets\":[0,4]}}", 4, AD_ERR_RANK, "rank 5"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, AD_ERR_FORMAT, "not a non-negative integer"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1.0],\"data_offsets\":[0,4]}}", 4, AD_ERR_FORMAT, "not a non-negative integer"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":1}}", 4, AD_ERR_FORMAT, "exactly 'dtype'"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, AD_ERR_FORMAT, "exactly 'dtype'"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4, AD_ERR_FORMAT, "not [begin, end]"},
    {"{\"a\":[1]}", 0, AD_ERR_FORMAT, "is not an object"},
    {"{\"__metadata__\":{\"k\":1}}", 0, AD_ERR_FORMAT, "metadata 'k' is not a string"},
    {"{\"__metadata__\":[]}", 0, AD_ERR_FORMAT, "'__metadata__' is not an object"},
    {"{\"\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, AD_ERR_FORMAT, "name is empty"},
    {"{\"a\\u0000b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, AD_ERR_FORMAT, "holds a NUL"},
    {"{\"a\":{\"dtype\":\"BOOL\",\"shape\":[1],\"data_offsets\":[0,1]}}  ", 1, AD_OK, ""},
    {"[1]", 0, AD_ERR_FORMAT, "not a JSON object"},
    {" {}", 0, AD_ERR_FORMAT, "not a JSON object"},
    {"{},", 0, AD_ERR_FORMAT, "unexpected text after the value"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],}}", 4, AD_ERR_FORMAT, "expected a key"},
    {"{}", 0, AD_OK, ""},
};

ParameterizedTestParameters(safetensors, refuses_bad_files)
{
    return cr_make_param_array(bad_row, bad_rows, sizeof bad_rows / sizeof bad_rows[0]);
}

ParameterizedTest(bad_row *row, safetensors, refuses_bad_files)
{
    long before = ts_live_allocs();
    size_t size;
    unsigned char *b = make_file(row->header, row->data, &size);
    ad_error err;
    nn_safetensors *st = nn_safetensors_read(b, size, &err);
    cr_assert_eq(err.code, row->want, "%s: %s", row->header, err.msg);
    if (row->want == AD_OK) cr_assert_not_null(st);
    else cr_assert_null(st);
    cr_assert(strstr(err.msg, row->fragment), "%s: '%s'", row->header, err.msg);
    nn_safetensors_free(st);
    free(b);
    cr_assert_eq(ts_live_allocs(), before);
}

Test(safetensors, header_size_is_bounded_by_the_file)
{
    long before = ts_live_allocs();
    unsigned char b[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, '{', '}'};
    long allocs = ts_total_allocs();
    ad_error err;
    cr_assert_null(nn_safetensors_read(b, sizeof b, &err));
    cr_assert(strstr(err.msg, "exceeds the file"), "%s", err.msg);
    cr_assert(ts_total_allocs() - allocs <= 1, "only the copy of the image may be allocated");
    cr_assert_null(nn_safetensors_read(b, 7, &err));
    cr_assert(strstr(err.msg, "too short"), "%s", err.msg);
    /* a BOOL byte other than 0/1 */
    size_t size;
    unsigned char *f = make_file("{\"a\":{\"dtype\":\"BOOL\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, &size);
    f[size - 1] = 2;
    cr_assert_null(nn_safetensors_read(f, size, &err));
    cr_assert(strstr(err.msg, "boolean element 0 is 2"), "%s", err.msg);
    free(f);
    cr_assert_eq(ts_live_allocs(), before);
}

Test(safetensors, every_truncation_and_header_byte_flip_is_caught)
{
    long before = ts_live_allocs();
    size_t size;
    unsigned char *b = slurp(ST("basic.safetensors"), &size);
    uint64_t n = 0;
    for (int k = 0; k < 8; k++) n |= (uint64_t)b[k] << (8 * k);
    for (size_t cut = 0; cut < size; cut++) {
        ad_error err;
        nn_safetensors *st = nn_safetensors_read(b, cut, &err);
        cr_assert_null(st, "truncated at %zu loaded", cut);
        cr_assert_neq(err.code, AD_OK);
    }
    unsigned char *c = malloc(size);
    size_t caught = 0, flips = 0;
    for (size_t at = 0; at < 8 + n; at++) {
        memcpy(c, b, size);
        c[at] ^= 0xFF;
        ad_error err;
        nn_safetensors *st = nn_safetensors_read(c, size, &err);
        flips++;
        caught += st == NULL;
        nn_safetensors_free(st);
    }
    /* Every flip of the JSON text breaks it (0xFF-flipped ASCII is never
     * valid UTF-8), and so does every flip of the header size. */
    cr_assert_eq(caught, flips, "%zu of %zu header byte flips loaded", flips - caught, flips);
    free(c);
    free(b);
    cr_assert_eq(ts_live_allocs(), before);
}

Test(safetensors, allocation_failures_are_reported)
{
#ifdef TS_SHARED_LIBS
    cr_skip_test("allocation failures cannot be injected into a shared library");
#else
    long before = ts_live_allocs();
    size_t size;
    unsigned char *b = slurp(ST("basic.safetensors"), &size);
    int failed = 0;
    for (long k = 1; k < 40; k++) {
        ad_error err;
        ts_fail_alloc_at(k);
        nn_safetensors *st = nn_safetensors_read(b, size, &err);
        int fired = ts_fail_alloc_fired();
        ts_fail_alloc_at(0);
        if (!fired) {
            cr_assert_not_null(st);
            nn_safetensors_free(st);
            break;
        }
        cr_assert_null(st, "allocation %ld failed but the read succeeded", k);
        cr_assert_eq(err.code, AD_ERR_NOMEM, "allocation %ld: %s", k, err.msg);
        failed++;
    }
    cr_assert(failed >= 3);
    free(b);
    cr_assert_eq(ts_live_allocs(), before);
#endif
}

Test(safetensors, bad_arguments)
{
    long before = ts_live_allocs();
    ad_error err;
    void *buf;
    size_t size;
    cr_assert_null(nn_safetensors_read(NULL, 8, &err));
    cr_assert_eq(err.code, AD_ERR_NULL);
    cr_assert_null(nn_safetensors_open(NULL, &err));
    cr_assert_eq(err.code, AD_ERR_NULL);
    cr_assert_null(nn_safetensors_open(ST("missing.safetensors"), &err));
    cr_assert_eq(err.code, AD_ERR_IO);
    cr_assert_null(nn_safetensors_open(UNROLL_TEST_DATA "/make_fixtures.py", &err));
    cr_assert_eq(err.code, AD_ERR_FORMAT);
    cr_assert_null(nn_safetensors_tensor(NULL, 0, AD_F64, &err));
    cr_assert_eq(err.code, AD_ERR_NULL);
    cr_assert_null(nn_safetensors_ints(NULL, 0, &err));
    cr_assert_eq(nn_safetensors_count(NULL), 0);
    cr_assert_null(nn_safetensors_name(NULL, 0));
    cr_assert_eq(nn_safetensors_find(NULL, "a"), -1);
    cr_assert_null(nn_safetensors_metadata(NULL, "a"));
    ad_tensor *x = ad_tensor_new(AD_F32, ad_shape1(2), NULL);
    ad_itensor *i = ad_itensor_new(AD_U8, ad_shape1(1), NULL);
    nn_safetensors_entry ok = {"x", x, NULL};
    cr_assert_eq(nn_safetensors_write(&ok, 1, NULL, 0, NULL, &size, &err), AD_ERR_NULL);
    cr_assert_eq(nn_safetensors_write(NULL, 1, NULL, 0, &buf, &size, &err), AD_ERR_NULL);
    nn_safetensors_entry bad[][2] = {
        {{NULL, x, NULL}, {"y", x, NULL}},
        {{"", x, NULL}, {"y", x, NULL}},
        {{"__metadata__", x, NULL}, {"y", x, NULL}},
        {{"\xff", x, NULL}, {"y", x, NULL}},
        {{"x", x, i}, {"y", x, NULL}},
        {{"x", NULL, NULL}, {"y", x, NULL}},
        {{"x", x, NULL}, {"x", x, NULL}},
    };
    ad_status want[] = {AD_ERR_NULL, AD_ERR_ARG, AD_ERR_ARG, AD_ERR_ARG, AD_ERR_ARG, AD_ERR_ARG, AD_ERR_DUPLICATE};
    for (size_t k = 0; k < sizeof want / sizeof want[0]; k++)
        cr_assert_eq(nn_safetensors_write(bad[k], 2, NULL, 0, &buf, &size, &err), want[k], "row %zu: %s", k, err.msg);
    ad_itensor_data(i)[0] = 300;
    nn_safetensors_entry range = {"i", NULL, i};
    cr_assert_eq(nn_safetensors_write(&range, 1, NULL, 0, &buf, &size, &err), AD_ERR_ARG);
    const char *dup[] = {"k", "a", "k", "b"};
    cr_assert_eq(nn_safetensors_write(&ok, 1, dup, 2, &buf, &size, &err), AD_ERR_DUPLICATE);
    const char *nul[] = {"k", NULL};
    cr_assert_eq(nn_safetensors_write(&ok, 1, nul, 1, &buf, &size, &err), AD_ERR_NULL);
    cr_assert_eq(nn_safetensors_write(&ok, 1, NULL, 1, &buf, &size, &err), AD_ERR_NULL);
    cr_assert_eq(nn_safetensors_save(NULL, &ok, 1, NULL, 0, &err), AD_ERR_NULL);
    cr_assert_eq(nn_safetensors_save("/nonexistent-dir/x.safetensors", &ok, 1, NULL, 0, &err), AD_ERR_IO);
    cr_assert_eq(nn_params_save_safetensors(NULL, "/tmp/x.safetensors", NULL, 0, &err), AD_ERR_NULL);
    ad_tensor_free(x);
    ad_itensor_free(i);
    cr_assert_eq(ts_live_allocs(), before);
}

/* ---- the JSON parser ---------------------------------------------------------------- */

typedef struct json_row {
    char text[80];
    ad_status want;
} json_row;

static json_row json_rows[] = {
    {"{\"a\":[1,-0,2.5e-3,true,false,null,\"\\u00e9\\ud83d\\ude00\\n\"]}", AD_OK},
    {" \t\r\n[] ", AD_OK}, {"\"x\"", AD_OK}, {"0", AD_OK}, {"{\"a\":{\"a\":1}}", AD_OK},
    {"", AD_ERR_FORMAT}, {"[1,]", AD_ERR_FORMAT}, {"{\"a\":1,}", AD_ERR_FORMAT}, {"01", AD_ERR_FORMAT},
    {"1.", AD_ERR_FORMAT}, {".5", AD_ERR_FORMAT}, {"1e", AD_ERR_FORMAT}, {"-", AD_ERR_FORMAT},
    {"+1", AD_ERR_FORMAT}, {"tru", AD_ERR_FORMAT}, {"nul", AD_ERR_FORMAT}, {"[1 2]", AD_ERR_FORMAT},
    {"\"a\tb\"", AD_ERR_FORMAT}, {"\"\\x\"", AD_ERR_FORMAT}, {"\"\\ud800\"", AD_ERR_FORMAT},
    {"\"\\udc00\"", AD_ERR_FORMAT}, {"\"\\u12\"", AD_ERR_FORMAT}, {"\"\xc0\xaf\"", AD_ERR_FORMAT},
    {"\"\xed\xa0\x80\"", AD_ERR_FORMAT}, {"\"\xf5\x80\x80\x80\"", AD_ERR_FORMAT}, {"\"abc", AD_ERR_FORMAT},
    {"{1:2}", AD_ERR_FORMAT}, {"{\"a\" 1}", AD_ERR_FORMAT}, {"[1]x", AD_ERR_FORMAT}, {"/**/1", AD_ERR_FORMAT},
    {"{\"a\":1,\"b\":2,\"a\":3}", AD_ERR_DUPLICATE}, {"'a'", AD_ERR_FORMAT}, {"NaN", AD_ERR_FORMAT},
    {"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]", AD_ERR_FORMAT},
};

ParameterizedTestParameters(json, strict_rfc8259)
{
    return cr_make_param_array(json_row, json_rows, sizeof json_rows / sizeof json_rows[0]);
}

ParameterizedTest(json_row *row, json, strict_rfc8259)
{
    long before = ts_live_allocs();
    nn__json_doc d;
    ad_error err;
    ad_status st = nn__json_parse(row->text, strlen(row->text), &d, &err);
    cr_assert_eq(st, row->want, "'%s': %s", row->text, err.msg);
    nn__json_free(&d);
    cr_assert_eq(ts_live_allocs(), before);
}

Test(json, decodes_strings_and_numbers)
{
    const char *text = "{\"k\\u00e9\":[\"\\ud83d\\ude00\\\"\",9223372036854775807,9223372036854775808,1e3]}";
    nn__json_doc d;
    cr_assert_eq(nn__json_parse(text, strlen(text), &d, NULL), AD_OK);
    const nn__json *arr = &d.nodes[d.nodes[0].child];
    cr_assert_str_eq(arr->key, "k\xc3\xa9");
    cr_assert_eq(arr->count, 4);
    const nn__json *s = &d.nodes[arr->child];
    cr_assert_str_eq(s->str, "\xf0\x9f\x98\x80\"");
    uint64_t v;
    cr_assert(nn__json_uint(&d.nodes[s->next], &v));
    cr_assert_eq(v, (uint64_t)INT64_MAX);
    cr_assert(!nn__json_uint(&d.nodes[d.nodes[s->next].next], &v), "2^63 is out of range");
    cr_assert(!nn__json_uint(&d.nodes[d.nodes[d.nodes[s->next].next].next], &v), "1e3 is not an integer");
    nn__json_free(&d);
    cr_assert_eq(nn__json_parse(NULL, 1, &d, NULL), AD_ERR_NULL);
    cr_assert_eq(nn__json_parse("1", 1, NULL, NULL), AD_ERR_NULL);
}
