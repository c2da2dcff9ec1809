#include "testsupport.h"

#include <criterion/alloc.h>
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef TS_SHARED_LIBS
void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
void __real_free(void *p);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t n);
void __wrap_free(void *p);

/* Atomic: tests of ad_parallel_run allocate from several threads. */
static _Atomic long live, total, fail_at, fired;

/* Decides whether this allocation is the one to fail. */
static int should_fail(void)
{
    if (fail_at <= 0) return 0;
    if (--fail_at == 0) {
        fired = 1;
        return 1;
    }
    return 0;
}

void *__wrap_malloc(size_t n)
{
    if (should_fail()) return NULL;
    void *p = __real_malloc(n);
    if (p) {
        live++;
        total++;
    }
    return p;
}

void *__wrap_calloc(size_t n, size_t size)
{
    if (should_fail()) return NULL;
    void *p = __real_calloc(n, size);
    if (p) {
        live++;
        total++;
    }
    return p;
}

void *__wrap_realloc(void *p, size_t n)
{
    if (should_fail()) return NULL;
    void *q = __real_realloc(p, n);
    if (q && !p) {
        live++;
        total++;
    }
    return q;
}

void __wrap_free(void *p)
{
    if (p) live--;
    __real_free(p);
}

long ts_live_allocs(void) { return live; }
long ts_total_allocs(void) { return total; }
#else
/* A shared build: the allocator is not wrapped (see tests/CMakeLists.txt). */
static long fail_at, fired;
long ts_live_allocs(void) { return 0; }
long ts_total_allocs(void) { return 0; }
#endif

void ts_fail_alloc_at(long n)
{
#ifdef TS_SHARED_LIBS
    if (n > 0) cr_skip_test("allocation failures cannot be injected into a shared library "
                            "(--wrap reaches only what is linked statically)");
#endif
    fail_at = n;
    fired = 0;
}

int ts_fail_alloc_fired(void) { return (int)fired; }

void *ts_counting_alloc_fn(void *ctx, size_t n)
{
    ts_counting_alloc *c = ctx;
    c->attempts++;
    if (c->fail_at && c->attempts == c->fail_at) return NULL;
    void *p = malloc(n);
    if (p) c->calls++;
    return p;
}

void ts_counting_free_fn(void *ctx, void *p)
{
    ts_counting_alloc *c = ctx;
    if (p) c->frees++;
    free(p);
}

ad_tape_options ts_counting_options(ts_counting_alloc *c)
{
    ad_tape_options o = {0};
    o.alloc = ts_counting_alloc_fn;
    o.free = ts_counting_free_fn;
    o.alloc_ctx = c;
    return o;
}

double ts_rel_diff(double a, double b)
{
    double m = fmax(fabs(a), fabs(b));
    if (m < 1e-300) return 0.0;
    return fabs(a - b) / m;
}

void ts_fill_uniform(double *x, size_t n, uint64_t seed, double lo, double hi)
{
    ad_rng r;
    ad_rng_seed(&r, seed, 7);
    for (size_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * ad_rng_uniform(&r);
}

void *ts_read_file(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, n = 0, got;
    unsigned char *buf = malloc(cap);
    while (buf && (got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            unsigned char *bigger = realloc(buf, cap * 2);
            if (!bigger) free(buf);
            buf = bigger, cap *= 2;
        }
    }
    if (buf && ferror(f)) free(buf), buf = NULL;
    fclose(f);
    *size = n;
    return buf;
}

/* Asserts that `got` is NULL and the tape failed with `want` and `fragment`. */
static void expect_tape_error(ad_tape *t, ad_tensor *got, const char *name, ad_status want, const char *fragment)
{
    cr_assert_null(got, "%s: returned a tensor", name);
    cr_assert_eq(ad_tape_status(t), want, "%s: status %s (%s)", name, ad_status_name(ad_tape_status(t)),
                 ad_tape_message(t));
    cr_assert(strstr(ad_tape_message(t), fragment), "%s: message '%s'", name, ad_tape_message(t));
}

void ts_expect_tape_errors(ad_tensor *(*call)(ad_tape *t, int i), const ts_bad_case *cases, int n)
{
    for (int i = 0; i < n; i++) {
        ad_tape *t = ad_tape_new(NULL);
        expect_tape_error(t, call(t, i), cases[i].name, cases[i].want, cases[i].fragment);
        ad_tape_free(t);
    }
}

void ts_expect_bad_calls(const ts_bad_call *cases, int n)
{
    for (int i = 0; i < n; i++) {
        ad_tape *t = ad_tape_new(NULL);
        expect_tape_error(t, cases[i].call(t), cases[i].name, cases[i].want, cases[i].fragment);
        ad_tape_free(t);
    }
}

static void free_row_numbers(struct criterion_test_params *p) { cr_free(p->params); }

struct criterion_test_params ts_row_numbers(size_t n)
{
    size_t *numbers = cr_malloc(n * sizeof *numbers);
    if (!numbers) { /* before any test runs: no test to fail, so stop loudly */
        fprintf(stderr, "testsupport: no memory for %zu row numbers\n", n);
        abort();
    }
    for (size_t i = 0; i < n; i++) numbers[i] = i;
    return cr_make_param_array(size_t, numbers, n, free_row_numbers);
}
