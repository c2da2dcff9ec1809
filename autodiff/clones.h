/*
 * clones.h - AD__CLONES: a loop function compiled once per instruction set in
 * a portable build, the copy chosen by the loader for the CPU (GCC/Clang
 * target_clones). Never installed.
 *
 * For loops outside the dispatched kernels (cpu.c) that a small step spends
 * real time in: the optimizer update and the sums of squares of the norms.
 * They use no multiply-add contraction (only kernels.c and kernels_act.c
 * are built with it) and only correctly rounded operations (+, -, *, /,
 * sqrt), each element by itself or in fixed lanes, so every copy gives the
 * same bits; UNROLL_CPU, which picks the kernels, does not apply. A native
 * build (UNROLL_NATIVE=ON) is compiled for its machine already: there the
 * macro is empty, as everywhere CMake does not define UNROLL_CLONE_LOOPS.
 */
#ifndef UNROLL_AD_CLONES_H
#define UNROLL_AD_CLONES_H

#if defined(UNROLL_CLONE_LOOPS) && (defined(__GNUC__) || defined(__clang__))
#define AD__CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define AD__CLONES
#endif

#endif
