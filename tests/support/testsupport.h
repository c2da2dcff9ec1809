/*
 * testsupport.h - helpers shared by the test files.
 *
 * The test binaries are linked with --wrap for malloc, calloc, realloc and
 * free, so every allocation the library makes passes through here. Tests use
 * this to prove there is no leak (live count back to its start value) and to
 * make the n-th allocation fail.
 */
#ifndef UNROLL_TESTSUPPORT_H
#define UNROLL_TESTSUPPORT_H

#include <criterion/parameterized.h>
#include <stddef.h>
#include <stdint.h>

#include <unroll/autodiff/autodiff.h>

/* Allocations made through malloc/calloc/realloc and not yet freed. */
long ts_live_allocs(void);

/* Total successful allocations since the process started. */
long ts_total_allocs(void);

/* Makes the n-th allocation from now fail (1 = the next one); 0 disables. */
void ts_fail_alloc_at(long n);

/* Whether an injected failure has happened since the last ts_fail_alloc_at. */
int ts_fail_alloc_fired(void);

/* A tape allocator hook that counts calls and can fail the n-th. */
typedef struct ts_counting_alloc {
    long calls;   /* successful allocations */
    long frees;
    long fail_at; /* 0: never fail; n: fail the n-th call */
    long attempts;
} ts_counting_alloc;

void *ts_counting_alloc_fn(void *ctx, size_t n);
void ts_counting_free_fn(void *ctx, void *p);

/* Tape options that route all tape memory through `c`. */
ad_tape_options ts_counting_options(ts_counting_alloc *c);

/* Relative difference |a-b| / max(|a|,|b|,tiny). */
double ts_rel_diff(double a, double b);

/* Fills an f64 buffer with uniform values in [lo, hi) from a seed. */
void ts_fill_uniform(double *x, size_t n, uint64_t seed, double lo, double hi);

/* The whole file at `path` in a new malloc'd buffer (free it), its length in
 * *size; NULL when it cannot be read. Plain stdio, so that tests of the public
 * API need not reach into the library's own file reader. */
void *ts_read_file(const char *path, size_t *size);

/* One bad-input case of a tape op: what the tape's status and message must be. */
typedef struct ts_bad_case {
    const char *name;
    ad_status want;
    const char *fragment; /* must occur in the tape's message */
} ts_bad_case;

/*
 * For each case i, calls call(t, i) on a fresh tape and asserts that it
 * returned NULL with status cases[i].want and a message holding
 * cases[i].fragment.
 */
void ts_expect_tape_errors(ad_tensor *(*call)(ad_tape *t, int i), const ts_bad_case *cases, int n);

/* A bad-input case that carries its call (made on a fresh tape). */
typedef struct ts_bad_call {
    const char *name;
    ad_status want;
    const char *fragment; /* must occur in the tape's message */
    ad_tensor *(*call)(ad_tape *t);
} ts_bad_call;

/* ts_expect_tape_errors for cases that carry their calls. */
void ts_expect_bad_calls(const ts_bad_call *cases, int n);

/*
 * The row numbers 0..n-1 as the parameters of a parameterized test.
 *
 * Criterion runs each parameterized case in a re-executed child and hands it
 * a byte copy of its parameter: a pointer into the binary (a function, a
 * string literal) does not survive that (the child is loaded elsewhere). A
 * family test therefore keeps its rows, calls included, in a static table and
 * is parameterized over row numbers: `const row *r = &rows[*i];`.
 */
struct criterion_test_params ts_row_numbers(size_t n);

#endif
