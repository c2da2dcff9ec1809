/*
 * test_dot.c - DOT export: one box per op with its shape and label, each
 * parameter drawn once and tied to every temporal copy of it.
 */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testsupport.h"

static size_t count(const char *s, const char *needle)
{
    size_t n = 0;
    for (const char *p = strstr(s, needle); p; p = strstr(p + 1, needle)) n++;
    return n;
}

Test(dot, draws_parameters_once_with_their_copies)
{
    long before = ts_live_allocs();
    ad_param *w = ad_param_new("rnn.weight_hh_l0", AD_F64, ad_shape2(3, 3), NULL);
    ad_tape *t = ad_tape_new(NULL);
    ad_tensor *h = ad_zeros(t, AD_F64, ad_shape2(1, 3));
    for (int step = 0; step < 3; step++) {
        char label[32];
        snprintf(label, sizeof label, "rnn t=%d", step);
        ad_tape_set_label(t, label);
        h = ad_tanh(t, ad_matmul(t, h, ad_use(t, w), 0));
    }
    cr_assert_not_null(h);
    char path[] = "/tmp/unroll_dot_XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    ad_error err;
    cr_assert_eq(ad_tape_save_dot(t, path, &err), AD_OK, "%s", err.msg);
    size_t size;
    char *buf = ts_read_file(path, &size);
    cr_assert_not_null(buf, "%s", path);
    buf = realloc(buf, size + 1);
    buf[size] = '\0';
    unlink(path);
    cr_assert(strncmp(buf, "digraph tape {", 14) == 0);
    cr_assert_eq(count(buf, "label=\"rnn.weight_hh_l0 [3,3]\""), 1, "%s", buf);
    cr_assert_eq(count(buf, "[style=dashed, label=\"copy\"]"), 3, "%s", buf);
    cr_assert_eq(count(buf, "matmul [1,3]\\nrnn t="), 3, "%s", buf);
    cr_assert(strstr(buf, "tanh [1,3]\\nrnn t=2"), "%s", buf);

    /* The FILE writer gives the same text. */
    FILE *f = tmpfile();
    cr_assert_eq(ad_tape_write_dot(t, f, &err), AD_OK);
    cr_assert_eq((size_t)ftell(f), size);
    fclose(f);
    free(buf);

    cr_assert_eq(ad_tape_write_dot(NULL, stdout, &err), AD_ERR_NULL);
    cr_assert_eq(ad_tape_write_dot(t, NULL, &err), AD_ERR_NULL);
    cr_assert_eq(ad_tape_save_dot(t, NULL, &err), AD_ERR_NULL);
    cr_assert_eq(ad_tape_save_dot(t, "/nonexistent-dir/g.dot", &err), AD_ERR_IO);
    ad_tape_free(t);
    ad_param_free(w);
    cr_assert_eq(ts_live_allocs(), before);
}
