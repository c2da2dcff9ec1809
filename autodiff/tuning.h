/*
 * tuning.h - every tuning threshold of the engine, in one place. Never
 * installed.
 *
 * Each one changes only speed or memory, never a value: the paths on either
 * side of it compute the same numbers (their tests compare them). The
 * figures they were set by are those of the machine in docs/performance.md
 * (2-core Zen 3, 1 MiB L2 per core; the GEMM's blocking re-measured on Zen 5,
 * 48 KiB L1d).
 */
#ifndef UNROLL_AD_TUNING_H
#define UNROLL_AD_TUNING_H

/* ---- arena and buffers (tape.c) ---------------------------------------------- */

/* Bytes of an arena chunk when the caller gives none: a step of the
 * benchmark nets fits in a few, and fewer chunks mean fewer allocator calls. */
#define AD__TUNE_DEFAULT_CHUNK ((size_t)1 << 20)

/* Elements: a smaller gradient is not released (release_grads) nor its data
 * given back: a free list for it would cost more than the bytes it saves. */
#define AD__RELEASE_MIN 64

/* Size classes of released buffers a tape keeps lists for; a buffer of a
 * further size stays where it is (recurrent nets use a handful of sizes). */
#define AD__FREE_CLASSES 16

/* ---- products (op_matmul.c, kernels.c) --------------------------------------- */

/* Weights a tape packs for the kernel once and reuses (one per layer and
 * gate block of the nets benchmarked); a further weight is packed per call. */
#define AD__PACKED_WEIGHTS 8

/* Products of fewer rows than this (one micro-kernel row block) do not
 * have their weight packed and cached: the kernel's own pass over B costs
 * no more than the packing. */
#define AD__TUNE_PACK_MIN_ROWS 6

/* A product at most this small (each side <= 64 and m n k <= 256: textbook
 * 3x3 weights, single rows) runs as a plain loop, cheaper than the kernel's
 * blocking and packing. */
#define AD__TUNE_SMALL_SIDE 64
#define AD__TUNE_SMALL_WORK 256

/* Rows of C outside the register blocks (few-row products, the edges) run
 * with each row's accumulators in registers over all of k when k is at least
 * this; below it the plain loop over memory costs less than the set-up (an
 * outer product, k = 1, is one pass either way). */
#define AD__TUNE_ROW_MIN_K 8

/* Blocking of the GEMM: a panel of B, KC rows by as many columns as fit in
 * AD__TUNE_GEMM_PANEL_BYTES (256 x 256 in f32, 256 x 128 in f64), stays in
 * the 1 MiB L2 while every row block of A streams past it, and a strip of it
 * (KC x NR: 32 KiB with AVX-512) with the A block (8 x KC, 8 KiB) fits the
 * 48 KiB L1. The panel is on the stack of the thread computing (an OpenMP
 * thread, an ad_parallel_run task), so it stays at the 256 KiB the f64 panel
 * always had. On Zen 5 KC = 256 measured a few per cent above KC = 128 and
 * KC = 192 on the W3/W4/W4g shapes, and k = 256 products run in one block. */
#define AD__TUNE_GEMM_KC 256
#define AD__TUNE_GEMM_PANEL_BYTES ((size_t)256 * 1024)

/* The least multiply-adds (m n k) worth a thread: on the 2-core machine
 * 32x64x64 (1.3e5) ran slower on 2 threads than on 1 and 32x128x128
 * (5.2e5) faster, so a second thread needs m n k >= 2 * 2^18. */
#define AD__TUNE_THREAD_MIN_WORK 262144.0

/* Elements of a flat parameter block below which a thread is not worth
 * waking for the flat loops over it (nn/internal.h over split.c: the optimizer update,
 * gradient accumulation from replicas, zeroing): 16384 Adam updates
 * take ~10 us on one core (bench/serial_tail), waking the team and meeting
 * at its end a few. Boundaries fall
 * on multiples of AD__TUNE_FLAT_ALIGN elements, a 64-byte cache line of f32
 * (two of f64), so no two threads write one line. */
#define AD__TUNE_FLAT_MIN_PER_THREAD ((size_t)16384)
#define AD__TUNE_FLAT_ALIGN ((size_t)16)

/* ---- elementwise work on the threads (split.h) -------------------------------- */

/* The least work per thread worth a split of the elementwise loops of one
 * op: waking the team and meeting at its end cost 0.4 us back to back on
 * the 2-core Zen 5 (a thread that has gone to sleep, more), so each part
 * should take a few times that on one thread.
 * Elements of gx ([B, G H]) for a fused cell op (op_cell.c): the GRU cell's
 * forward takes 0.36 ns per element of gx on one thread (8.8 us for a
 * [32, 768] step of W4g), so 4096 elements are about 1.5 us. W3, W4 and W4g
 * on 2 threads ran within noise of each other with all three thresholds a
 * quarter of these and four times these (bench/README.md, "Two threads"). */
#define AD__TUNE_CELL_MIN_PER_THREAD ((size_t)4096)
/* Elements of the logits for a loss over rows (op_loss.c: cross-entropy,
 * an exponential and a few passes per element, about as dear). */
#define AD__TUNE_ROWS_MIN_PER_THREAD ((size_t)4096)
/* Bytes for a copy of the shape ops (op_shape.c: concat, slice, gather's
 * rows, their backward's additions) or the zeroing of a new gradient
 * (release.c): 64 KiB move in 1.5-2 us. */
#define AD__TUNE_COPY_MIN_PER_THREAD ((size_t)65536)

/* ---- lean copies' weight gradients (stacked_grads.c, copy_grads.c) ---------- */

/* Steps of fewer than this many rows have their weight gradient stacked and
 * run as one product at the end of backward, which reads each gradient
 * block once instead of once per step ... */
#define AD__TUNE_STACK_MAX_ROWS 512
/* ... for weights of at least this many elements: smaller ones stay in
 * cache between steps, and their stack would cost more memory than it saves
 * time. */
#define AD__TUNE_STACK_MIN_WEIGHT 4096
/* Into the buffer of a copy every step shares (NORMS), only steps of fewer
 * than this many rows are stacked: their products run as outer products
 * (W2: one row per step, 25 products of 100x100x1 each reading and writing
 * the whole gradient block; stacked, W2 ran 1.2x faster), while a 32-row
 * step's product already runs at the kernel's rate into the buffer and
 * stacking only added the copying (W3 and W4g 3-9 % slower). */
#define AD__TUNE_STACK_SHARED_MAX_ROWS 16
/* Rows of one stacked product. Backward computes what is stacked every
 * 2 x this many rows, so the steps' gradients it pins and the stacking
 * buffer stay below a few MiB in an unroll of any length (1 MiB pinned and
 * 1 MiB of buffer for the W6 Elman net): 512-row products run at the
 * GEMM's full rate, as 2048-row ones did. */
#define AD__TUNE_STACK_ROWS 512

/* Copies' norms (copy_grads = norms) take the Gram form, m^2 (k + n)
 * multiply-adds against the product's m k n, for at most this many rows:
 * the limit keeps the m^2 pairs few where k and n are large. */
#define AD__TUNE_GRAM_MAX_ROWS 64

#endif
