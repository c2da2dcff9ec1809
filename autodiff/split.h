/*
 * split.h - loops over independent elements (or rows) cut into consecutive
 * ranges, one per thread of ad_set_num_threads(). Never installed.
 *
 * When every element of a loop depends on that element alone, cutting
 * [0, n) into ranges computes each element by the same arithmetic as one
 * loop over the whole, so results are bit-identical for any thread count.
 * The rule of how many parts is here and only here: at most the thread
 * count, at most AD__SPLIT_MAX_PARTS, at most one per `min_work` of work
 * (a threshold of tuning.h). Inside an ad_parallel_run task (a shard) the
 * parts run in order on the task's thread, as ad_parallel_run runs nested
 * tasks, so the bits are the same there too. With one
 * thread (the default), or in a build without OpenMP, the loop runs whole
 * on the calling thread.
 *
 * Used by the elementwise loops of a tape (the fused cells, cross-entropy,
 * the binary ops, the shape ops' copies, new gradients' zeroing, bias rows
 * and sums, weight packing, long sums of squares: docs/performance.md has
 * the table) and, through nn/internal.h, by the flat loops of nn/ over a
 * parameter block (the optimizer update, gradients summed from replicas,
 * zeroing).
 */
#ifndef UNROLL_AD_SPLIT_H
#define UNROLL_AD_SPLIT_H

#include <stddef.h>

/* The most parts a loop is split into (callers may keep a flag per part). */
#define AD__SPLIT_MAX_PARTS 64

/* fn(ctx, lo, hi, part): the loop's units [lo, hi), part `part` of the split. */
typedef void (*ad__split_fn)(void *ctx, size_t lo, size_t hi, int part);

int ad__split_parts_threads(size_t units, size_t work, size_t min_work);
void ad__split_run_threads(size_t units, int parts, size_t align, ad__split_fn fn, void *ctx);

/* How many parts a loop over `units` units (elements, rows) doing `work`
 * in all (elements touched, say) uses: 1 when a part would get less than
 * `min_work`, or there is one thread. Inline, so that the many small ops of
 * a tiny net decide with one comparison. */
static inline int ad__split_parts(size_t units, size_t work, size_t min_work)
{
    if (work / 2 < min_work || units < 2) return 1;
    return ad__split_parts_threads(units, work, min_work);
}

/* Runs fn over [0, units) cut into `parts` consecutive ranges (from
 * ad__split_parts()), each on its own thread, and returns when all are
 * done. Every boundary but the last is a multiple of `align` units (>= 1),
 * so that, with align a cache line of elements, no two threads write one
 * line. One part is a direct call of fn. */
static inline void ad__split_run(size_t units, int parts, size_t align, ad__split_fn fn, void *ctx)
{
    if (parts <= 1) fn(ctx, 0, units, 0);
    else ad__split_run_threads(units, parts, align, fn, ctx);
}

#endif
