/*
 * threads.c - the process-wide thread count of the matrix products and the
 * task runner of threads.h.
 *
 * Kept out of kernels.c because that file is compiled once per instruction-set
 * variant (see cpu.c): the count must exist once, whichever variant runs.
 * The kernels read it through ad_get_num_threads().
 */
#include "threads.h"

#if defined(UNROLL_WITH_OPENMP)
#include <omp.h>
#include <stdatomic.h>

/* Process-wide, like a BLAS library's thread count; atomic because other
 * threads may run products while one changes it. */
static atomic_int num_threads = 1;
#endif

ad_status ad_set_num_threads(int n)
{
    if (n < 1) return AD_ERR_ARG;
#if defined(UNROLL_WITH_OPENMP)
    atomic_store_explicit(&num_threads, n, memory_order_relaxed);
#endif
    return AD_OK;
}

int ad_get_num_threads(void)
{
#if defined(UNROLL_WITH_OPENMP)
    return atomic_load_explicit(&num_threads, memory_order_relaxed);
#else
    return 1;
#endif
}

ad_status ad_parallel_run(int n_tasks, void (*task)(void *ctx, int i), void *ctx)
{
    if (!task) return AD_ERR_NULL;
    if (n_tasks < 0) return AD_ERR_ARG;
    int nth = ad_get_num_threads() < n_tasks ? ad_get_num_threads() : n_tasks;
#if defined(UNROLL_WITH_OPENMP)
    /* Inside a task (a parallel region) the tasks run on its thread: a
     * nested team would only oversubscribe the cores (and does, should the
     * environment enable nesting). */
    if (nth > 1 && !omp_in_parallel()) {
#pragma omp parallel for num_threads(nth) schedule(static)
        for (int i = 0; i < n_tasks; i++) task(ctx, i);
        return AD_OK;
    }
#endif
    (void)nth;
    for (int i = 0; i < n_tasks; i++) task(ctx, i);
    return AD_OK;
}
