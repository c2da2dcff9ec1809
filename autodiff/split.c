/*
 * split.c - the split of split.h. It calls only the public thread API, so
 * a shared unroll_nn compiles its own (hidden) copy, as it does fileio.c.
 */
#include "split.h"

#include "threads.h"

int ad__split_parts_threads(size_t units, size_t work, size_t min_work)
{
    size_t want = (size_t)ad_get_num_threads();
    if (min_work > 0 && want > work / min_work) want = work / min_work;
    if (want > units) want = units;
    if (want > AD__SPLIT_MAX_PARTS) want = AD__SPLIT_MAX_PARTS;
    return want < 2 ? 1 : (int)want;
}

/* Start of part i of `parts` over n units: a multiple of align (or n
 * itself), non-decreasing in i. */
static size_t part_start(size_t n, int parts, size_t align, int i)
{
    if (i >= parts) return n;
    size_t k = (size_t)i, m = (size_t)parts; /* n k / m without overflow: (n % m) k < m^2 */
    size_t lo = (n / m * k + n % m * k / m) / align * align;
    return lo < n ? lo : n;
}

typedef struct split_job {
    size_t n, align;
    int parts;
    ad__split_fn fn;
    void *ctx;
} split_job;

static void split_task(void *ctx, int i)
{
    split_job *j = ctx;
    size_t lo = part_start(j->n, j->parts, j->align, i), hi = part_start(j->n, j->parts, j->align, i + 1);
    if (lo < hi) j->fn(j->ctx, lo, hi, i);
}

void ad__split_run_threads(size_t units, int parts, size_t align, ad__split_fn fn, void *ctx)
{
    split_job j = {units, align ? align : 1, parts, fn, ctx};
    (void)ad_parallel_run(parts, split_task, &j); /* fn and parts >= 0 are given: it cannot fail */
}
