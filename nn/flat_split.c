/*
 * flat_split.c - the flat loops over a parameter set's blocks (the optimizer
 * update, gradients summed from replicas, zeroing) split over the
 * threads of ad_set_num_threads().
 *
 * Each element of these loops depends on that element alone, so cutting
 * [0, n) into consecutive ranges, one per thread, computes every element by
 * the same arithmetic as one loop over the whole: results are bit-identical
 * for any thread count. The split is in one place: how many parts (a block
 * below AD__TUNE_FLAT_MIN_PER_THREAD elements per thread stays on one),
 * and boundaries on multiples of AD__TUNE_FLAT_ALIGN elements, so two
 * threads never write one cache line. With one thread (the default), or in
 * a build without OpenMP, the loop runs whole on the calling thread.
 */
#include "internal.h"

#include "../autodiff/threads.h"
#include "../autodiff/tuning.h"

int nn__flat_parts(size_t n)
{
    size_t want = (size_t)ad_get_num_threads(), most = n / AD__TUNE_FLAT_MIN_PER_THREAD;
    if (want > most) want = most;
    if (want > NN__FLAT_MAX_PARTS) want = NN__FLAT_MAX_PARTS;
    return want < 2 ? 1 : (int)want;
}

/* Start of part i of `parts` over n elements: a multiple of the alignment
 * (or n itself), non-decreasing in i. */
static size_t part_start(size_t n, int parts, int i)
{
    if (i >= parts) return n;
    size_t k = (size_t)i, m = (size_t)parts; /* n k / m without overflow: (n % m) k < m^2 */
    size_t lo = (n / m * k + n % m * k / m) / AD__TUNE_FLAT_ALIGN * AD__TUNE_FLAT_ALIGN;
    return lo < n ? lo : n;
}

typedef struct flat_job {
    size_t n;
    int parts;
    nn__flat_fn fn;
    void *ctx;
} flat_job;

static void flat_task(void *ctx, int i)
{
    flat_job *j = ctx;
    size_t lo = part_start(j->n, j->parts, i), hi = part_start(j->n, j->parts, i + 1);
    if (lo < hi) j->fn(j->ctx, lo, hi, i);
}

void nn__flat_run(size_t n, int parts, nn__flat_fn fn, void *ctx)
{
    if (parts <= 1) {
        fn(ctx, 0, n, 0);
        return;
    }
    flat_job j = {n, parts, fn, ctx};
    (void)ad_parallel_run(parts, flat_task, &j); /* fn and parts >= 0 are given: it cannot fail */
}
