/**
 * @file
 * threads.h - how many threads the matrix products may use, a runner of
 * independent tasks on those threads (data-parallel training), and which
 * instruction-set variant of the kernels runs.
 *
 * A build configured with UNROLL_WITH_OPENMP=ON can split large matrix
 * products (forward and backward) and the large elementwise loops of a tape
 * (the fused cells, cross-entropy, copies, new gradients' zeroing, long
 * norms) over several threads. Threading is an
 * explicit opt-in: the count starts at 1 whatever OMP_NUM_THREADS says, so
 * results and timings never depend on the environment. Every product and
 * loop computes each output element in the same order for any thread count,
 * so results are bit-identical with 1, 2 or 16 threads.
 *
 *     if (ad_set_num_threads(2) != AD_OK) ...n was below 1
 *     ...                          // train as usual
 *     int used = ad_get_num_threads();   // 1 in a build without OpenMP
 */
#ifndef UNROLL_AD_THREADS_H
#define UNROLL_AD_THREADS_H

#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

/**
 * Sets the number of threads the matrix products may use to `n` (1 by
 * default); the large elementwise loops of a tape (docs/performance.md,
 * "Loops over independent elements on threads") and the flat loops of nn/
 * over a parameter block (nn_optim_step(), nn_params_accumulate_grads(),
 * nn_params_zero_grad()) use as many. Returns AD_ERR_ARG and leaves the count unchanged when `n` < 1.
 * In a build without OpenMP any `n` >= 1 is accepted and ignored: everything
 * runs on the calling thread and ad_get_num_threads() stays 1. The setting is
 * process-wide, like a BLAS library's thread count, and meant to be made once
 * before training; products too small to gain from threads run on one thread
 * whatever the setting.
 */
AD_API ad_status ad_set_num_threads(int n);

/**
 * The number of threads the matrix products may use: the last count accepted
 * by ad_set_num_threads() (1 until then), or always 1 in a build without
 * OpenMP.
 */
AD_API int ad_get_num_threads(void);

/**
 * Runs task(ctx, i) for i = 0 .. n_tasks-1 on up to ad_get_num_threads()
 * threads (a static schedule), and returns when all are done; in a build
 * without OpenMP, or with one thread, they run in order on the calling
 * thread, as they do when called from inside a task (so the flat loops of
 * nn/ called by a task stay on its thread). Tasks must be independent: each
 * its own tape and, for training, its own parameter replica
 * (nn_params_replica()); products inside a task run on that task's thread. Since no task's arithmetic depends on which
 * thread runs it, results are the same for any thread count when the work is
 * split into the same tasks. Errors: AD_ERR_NULL (task), AD_ERR_ARG
 * (n_tasks < 0).
 */
AD_API ad_status ad_parallel_run(int n_tasks, void (*task)(void *ctx, int i), void *ctx);

/**
 * The name of the kernel variant this process runs: "avx512" (AVX-512 F,
 * VL, BW, DQ and FMA), "avx2" (AVX2 and FMA) or "generic" (the build's own
 * flags). A portable x86-64 build (UNROLL_NATIVE=OFF) picks the best variant
 * the CPU supports at the first kernel call; the environment variable
 * UNROLL_CPU=generic (or avx2, avx512) set
 * before that call chooses instead, and a name the CPU cannot run means
 * "generic". Other builds have "generic" only. The string is static; the
 * answer never changes within a process (docs/performance.md).
 */
AD_API const char *ad_kernel_variant(void);

#ifdef __cplusplus
}
#endif
#endif
