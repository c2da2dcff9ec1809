/*
 * kernels.c - plain C11 kernels: the matrix products.
 *
 * Compiled once per instruction-set variant (cpu.c explains which and how
 * one is chosen): everything here is static except this variant's table of
 * entry points, ad__gemm_kernels_<variant>.
 *
 * GEMM: C[m,n] (+)= op(A) op(B), blocked so that a panel of B (KC rows by
 * NC columns) stays in cache while every row of A streams past it, with a
 * register micro-kernel of MR rows (8 with AVX-512, else 6) by NR columns
 * (two SIMD vectors, written with GCC/Clang vector extensions; a plain-array
 * version elsewhere).
 * Built with -O3, -march=native under UNROLL_NATIVE (else the variant's
 * instruction set), and FMA contraction for this file only. B is packed
 * into strips of NR columns ([KC, NR] each, contiguous, on the stack) unless it is row-major with whole strips and
 * fits one panel, so every case runs the same micro-kernel with unit-stride
 * loads; the narrow last strip runs it on a register tile. The panel is on the
 * stack of the thread using it: under UNROLL_WITH_OPENMP a large product is
 * split into disjoint rectangles of C, one per thread.
 *
 * Each C element is the sum over p in increasing order, block by block:
 * the order depends only on the shapes, never on timing or threads.
 */
#include "kernels.h"

#include <string.h>

#include "split.h"
#include "threads.h"

#include "tuning.h"

/* Two vectors per row of the micro-kernel: 512-bit with AVX-512, 256-bit
 * with AVX, 128-bit otherwise. NR (the strip width) follows in each dtype. */
#if defined(__AVX512F__)
#define VEC_BYTES 64
#elif defined(__AVX__)
#define VEC_BYTES 32
#else
#define VEC_BYTES 16
#endif
#define NR_F32 (2 * VEC_BYTES / 4)
#define NR_F64 (2 * VEC_BYTES / 8)

/* MR is the micro-kernel's row count. With AVX-512 (32 vector registers)
 * 8 rows of 2 accumulators measured faster than 6 and than 12 (24
 * accumulators) on every product shape of W3/W4/W4g; 16 registers (AVX,
 * SSE) hold 6 rows. MIN_ROWS: products of fewer rows skip the blocked kernel
 * (a plain loop or dot products); it stays at 6 whatever MR is, so every
 * variant takes the same path for a shape. The block sizes are tuning.h's:
 * KC rows of B, and as many columns (a multiple of NR) as fit the panel. */
#if defined(__GNUC__) && defined(__AVX512F__)
#define MR_ROWS 8
#else
#define MR_ROWS 6
#endif
enum { KC = AD__TUNE_GEMM_KC, MR = MR_ROWS, MIN_ROWS = 6 };
#define PANEL_COLS(T, NR) (AD__TUNE_GEMM_PANEL_BYTES / (KC * sizeof(T)) / (NR) * (NR))

/*
 * Threads. A large product is split into disjoint rectangles of C, one per
 * thread of a team (a static schedule), each computed exactly as one thread
 * would compute it, so the result never depends on the thread count. The
 * count itself lives in threads.c (this file exists once per variant).
 */
#if defined(UNROLL_WITH_OPENMP)
#include <omp.h>

#define PARALLEL_TEAM _Pragma("omp parallel num_threads(nth)")
static int team_member(void) { return omp_get_thread_num(); }
static int team_count(void) { return omp_get_num_threads(); }
#else
#define PARALLEL_TEAM
static int team_member(void) { return 0; }
static int team_count(void) { return 1; }
#endif

/* The least multiply-adds (m n k) worth a thread: waking a team and meeting
 * at its end costs a few microseconds (the figures are in tuning.h). */
#define THREAD_MIN_WORK AD__TUNE_THREAD_MIN_WORK

/* How many threads to use for an m x n x k product with NR-column tiles. */
static int team_size(size_t m, size_t n, size_t k, size_t nr)
{
#if defined(UNROLL_WITH_OPENMP)
    if (omp_in_parallel()) return 1; /* inside an ad_parallel_run task */
#endif
    double want = (double)ad_get_num_threads(), work = (double)m * (double)n * (double)k;
    double units = (double)((m + MR - 1) / MR), col_units = (double)((n + nr - 1) / nr);
    if (col_units > units) units = col_units;
    if (want > work / THREAD_MIN_WORK) want = work / THREAD_MIN_WORK;
    if (want > units) want = units;
    return want < 2 ? 1 : (int)want;
}

/* A rectangle of C: rows [i0, i1), columns [j0, j1). */
typedef struct c_tile {
    size_t i0, i1, j0, j1;
} c_tile;

/*
 * The rectangle member t of a team of nth computes: a balanced share of the
 * NR-column tiles, or of the MR-row blocks when that gives a smaller largest
 * share. Boundaries fall on multiples of NR (of MR) or at the end, so each
 * element goes through the same micro-kernel or edge loop as with one thread.
 */
static c_tile tile_of(size_t m, size_t n, size_t nr, int t, int nth)
{
    size_t cols = (n + nr - 1) / nr, rows = (m + MR - 1) / MR, u = (size_t)nth;
    c_tile g = {0, m, 0, n};
    if (nth <= 1) return g;
    if ((cols + u - 1) / u * nr * m <= (rows + u - 1) / u * MR * n) {
        g.j0 = cols * (size_t)t / u * nr;
        g.j1 = cols * (size_t)(t + 1) / u * nr;
        if (g.j1 > n) g.j1 = n;
    } else {
        g.i0 = rows * (size_t)t / u * MR;
        g.i1 = rows * (size_t)(t + 1) / u * MR;
        if (g.i1 > m) g.i1 = m;
    }
    return g;
}

/*
 * The micro-kernel: C[0..MR, 0..NR) += A[0..MR, 0..kc) B[0..kc, 0..NR), with
 * A read through (lda_row, lda_col) strides and B row-major with stride ldb.
 * The accumulators live in a local array the compiler keeps in registers.
 */
#if defined(__GNUC__)
/* GCC/Clang vector extensions: a vector is half a strip (VL = NR / 2 lanes).
 * NAME_microROWS covers the whole strip (NV = 2 vectors a row), NAME_halfROWS
 * its first half (NV = 1), for a last strip of at most NR / 2 columns; the
 * ROWS x NV accumulators stay in registers. */
#define DEFINE_VEC(NAME, T, NR) typedef T NAME##_vec __attribute__((vector_size(NR / 2 * sizeof(T))));
#define DEFINE_MICRO(NAME, T, NR, ROWS, NV, KIND)                                             \
    __attribute__((unused)) /* the row counts MR does not use */                             \
    static void NAME##_##KIND##ROWS(size_t kc, const T *restrict a, size_t ar, size_t ac,     \
                                    const T *restrict b, size_t ldb, T *restrict c, size_t ldc, \
                                    int zero)                                                 \
    {                                                                                         \
        enum { VL = NR / 2 };                                                                 \
        NAME##_vec acc[ROWS][NV];                                                             \
        for (int r = 0; r < ROWS; r++)                                                        \
            for (int v = 0; v < NV; v++) {                                                    \
                if (zero) acc[r][v] = (NAME##_vec){0};                                        \
                else __builtin_memcpy(&acc[r][v], c + r * ldc + v * VL, sizeof acc[r][v]);    \
            }                                                                                 \
        for (size_t p = 0; p < kc; p++) {                                                     \
            NAME##_vec bv[NV];                                                                \
            for (int v = 0; v < NV; v++) __builtin_memcpy(&bv[v], b + p * ldb + v * VL, sizeof bv[v]); \
            for (int r = 0; r < ROWS; r++) {                                                  \
                T ar_p = a[r * ar + p * ac];                                                  \
                for (int v = 0; v < NV; v++) acc[r][v] += ar_p * bv[v];                       \
            }                                                                                 \
        }                                                                                     \
        for (int r = 0; r < ROWS; r++)                                                        \
            for (int v = 0; v < NV; v++) __builtin_memcpy(c + r * ldc + v * VL, &acc[r][v], sizeof acc[r][v]); \
    }
#else
#define DEFINE_MICRO_PORTABLE(NAME, T, NR)                                                    \
    static void NAME##_micro6(size_t kc, const T *restrict a, size_t ar, size_t ac,            \
                             const T *restrict b, size_t ldb, T *restrict c, size_t ldc,      \
                             int zero)                                                        \
    {                                                                                         \
        (void)zero; /* C was zeroed first: KERNEL_ZEROES is 0 */                              \
        T c0[NR], c1[NR], c2[NR], c3[NR], c4[NR], c5[NR];                                     \
        for (int j = 0; j < NR; j++) {                                                        \
            c0[j] = c[j], c1[j] = c[ldc + j], c2[j] = c[2 * ldc + j], c3[j] = c[3 * ldc + j]; \
            c4[j] = c[4 * ldc + j], c5[j] = c[5 * ldc + j];                                   \
        }                                                                                     \
        for (size_t p = 0; p < kc; p++) {                                                     \
            const T *restrict bp = b + p * ldb;                                               \
            T a0 = a[p * ac], a1 = a[ar + p * ac], a2 = a[2 * ar + p * ac], a3 = a[3 * ar + p * ac]; \
            T a4 = a[4 * ar + p * ac], a5 = a[5 * ar + p * ac];                               \
            for (int j = 0; j < NR; j++) {                                                    \
                T bj = bp[j];                                                                 \
                c0[j] += a0 * bj, c1[j] += a1 * bj, c2[j] += a2 * bj, c3[j] += a3 * bj;       \
                c4[j] += a4 * bj, c5[j] += a5 * bj;                                           \
            }                                                                                 \
        }                                                                                     \
        for (int j = 0; j < NR; j++) {                                                        \
            c[j] = c0[j], c[ldc + j] = c1[j], c[2 * ldc + j] = c2[j], c[3 * ldc + j] = c3[j]; \
            c[4 * ldc + j] = c4[j], c[5 * ldc + j] = c5[j];                                   \
        }                                                                                     \
    }
#endif

/*
 * R rows of C from row i against the strips of the B panel: strip s (NR
 * columns) starts at bp + s * sstep with row stride ldb. A full strip goes
 * through the micro-kernel on C itself; the last, narrower one through a
 * register tile copied in and out, so the edge runs at the kernel's speed
 * and each C element is still summed in the same order. A last strip of at
 * most NR / 2 columns (the 1 column left of the head's 65 with NR = 32) runs
 * the one-vector kernel, half the work of a whole strip. Used inside
 * DEFINE_GEMM.
 */
#define ROW_BLOCK(NAME, T, NR, R)                                                             \
    do {                                                                                      \
        for (size_t s = 0; s * NR < nc; s++) {                                                \
            size_t w = nc - s * NR < NR ? nc - s * NR : NR;                                   \
            T *cs = c + i * n + j0 + s * NR;                                                  \
            const T *bs = bp + s * sstep;                                                     \
            if (w == NR) {                                                                    \
                NAME##_micro##R(kc, ap + i * ar, ar, ac, bs, ldb, cs, n, zero);               \
                continue;                                                                     \
            }                                                                                 \
            T tile[R * NR];                                                                   \
            size_t tw = w <= NR / 2 ? NR / 2 : NR; /* the columns the kernel reads */         \
            for (size_t r = 0; !zero && r < R; r++)                                           \
                for (size_t j = 0; j < tw; j++) tile[r * NR + j] = j < w ? cs[r * n + j] : 0; \
            if (tw < NR) NAME##_half##R(kc, ap + i * ar, ar, ac, bs, ldb, tile, NR, zero);    \
            else NAME##_micro##R(kc, ap + i * ar, ar, ac, bs, ldb, tile, NR, zero);           \
            for (size_t r = 0; r < R; r++)                                                    \
                for (size_t j = 0; j < w; j++) cs[r * n + j] = tile[r * NR + j];              \
        }                                                                                     \
    } while (0)

/* ROW_BLOCK with R a macro (MR_ROWS) expanded first. */
#define ROW_BLOCK_OF(NAME, T, NR, R) ROW_BLOCK(NAME, T, NR, R)

#if defined(__GNUC__)
/* The rows left after the blocks of MR (6 or 8): vector micro-kernels of 4,
 * 2 and 1 rows, so every remainder runs at vector speed. */
#define REMAINDER_ROWS(NAME, T, NR)                                                           \
    do {                                                                                      \
        if (i1 - i >= 4) { ROW_BLOCK(NAME, T, NR, 4); i += 4; }                               \
        if (i1 - i >= 2) { ROW_BLOCK(NAME, T, NR, 2); i += 2; }                               \
        if (i1 - i >= 1) { ROW_BLOCK(NAME, T, NR, 1); i += 1; }                               \
    } while (0)
#else
#define REMAINDER_ROWS(NAME, T, NR) ((void)0)
#endif

/* Whether the micro-kernels start a product that overwrites C (accumulate 0)
 * from zero in registers at its first block of k, instead of C being zeroed
 * first and read back: one pass less over C, which is larger than the L2 in
 * W4's input projection. fma(a, b, +0) rounds as a*b + 0 from memory does,
 * so the bits are the same. Only where every row goes through a vector
 * kernel (the remainder kernels exist). */
#if defined(__GNUC__)
#define DEFINE_DOTS(NAME, T)                                                                  \
    /* Few rows of C and B transposed: each C element a dot product, summed in 8 lanes     \
     * (a fixed order) so that the loop vectorises without reassociation; eight columns    \
     * at a time, eight independent chains that share the loads of A's row. */              \
    static void NAME##_dots(size_t m, size_t n, size_t k, const T *a, size_t ar, size_t ac,   \
                            const T *b, T *c)                                                 \
    {                                                                                         \
        typedef T lanes __attribute__((vector_size(8 * sizeof(T))));                          \
        for (size_t i = 0; i < m; i++)                                                        \
            for (size_t j = 0; j < n; j += 8) {                                               \
                size_t nj = n - j < 8 ? n - j : 8;                                            \
                lanes acc[8] = {{0}};                                                         \
                size_t p = 0;                                                                 \
                if (ac == 1) {                                                                \
                    const T *ai = a + i * ar;                                                 \
                    for (; p + 8 <= k; p += 8) {                                              \
                        lanes x, y;                                                           \
                        __builtin_memcpy(&x, ai + p, sizeof x);                               \
                        for (size_t q = 0; q < 8; q++) {                                      \
                            if (q >= nj) break;                                               \
                            __builtin_memcpy(&y, b + (j + q) * k + p, sizeof y);              \
                            acc[q] += x * y;                                                  \
                        }                                                                     \
                    }                                                                         \
                }                                                                             \
                for (size_t q = 0; q < nj; q++) {                                             \
                    const T *bj = b + (j + q) * k;                                            \
                    T s = 0;                                                                  \
                    for (size_t r = p; r < k; r++) s += a[i * ar + r * ac] * bj[r];           \
                    for (int l = 0; l < 8; l++) s += acc[q][l];                               \
                    c[i * n + j + q] += s;                                                    \
                }                                                                             \
            }                                                                                 \
    }
#else
#define DEFINE_DOTS(NAME, T)                                                                  \
    /* Few rows of C and B transposed: each C element a dot product, summed in 8 lanes     \
     * (a fixed order, the GCC/Clang version's). */                                          \
    static void NAME##_dots(size_t m, size_t n, size_t k, const T *a, size_t ar, size_t ac,   \
                            const T *b, T *c)                                                 \
    {                                                                                         \
        for (size_t i = 0; i < m; i++)                                                        \
            for (size_t j = 0; j < n; j++) {                                                  \
                const T *bj = b + j * k;                                                      \
                T lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};                                         \
                size_t p = 0;                                                                 \
                if (ac == 1)                                                                  \
                    for (; p + 8 <= k; p += 8)                                                \
                        for (int l = 0; l < 8; l++) lane[l] += a[i * ar + p + l] * bj[p + l]; \
                T s = 0;                                                                      \
                for (; p < k; p++) s += a[i * ar + p * ac] * bj[p];                           \
                for (int l = 0; l < 8; l++) s += lane[l];                                     \
                c[i * n + j] += s;                                                            \
            }                                                                                 \
    }
#endif

#if defined(__GNUC__)
#define KERNEL_ZEROES 1
#else
#define KERNEL_ZEROES 0
#endif

#define DEFINE_GEMM(NAME, STORAGE, FN, T, NR)                                                              \
    /* The same for the edges (fewer rows or columns), one row at a time. */                 \
    static void NAME##_edge(size_t mr, size_t nr, size_t kc, const T *a, size_t ar,           \
                            size_t ac, const T *b, size_t ldb, T *c, size_t ldc)              \
    {                                                                                         \
        if (kc >= AD__TUNE_ROW_MIN_K) {                                                       \
            for (size_t r = 0; r < mr; r++) NAME##_row(nr, kc, a + r * ar, ac, b, ldb, c + r * ldc); \
            return;                                                                           \
        }                                                                                     \
        for (size_t r = 0; r < mr; r++)                                                       \
            for (size_t p = 0; p < kc; p++) {                                                 \
                T arp = a[r * ar + p * ac];                                                   \
                const T *bp = b + p * ldb;                                                    \
                for (size_t j = 0; j < nr; j++) c[r * ldc + j] += arp * bp[j];                \
            }                                                                                 \
    }                                                                                         \
    DEFINE_DOTS(NAME, T)                                                                      \
    /* Packs B(p0.., j0..) ([kc, nc] of op(B)) into strips of NR columns, each      \
     * [kc, NR] row-major and contiguous, the last one padded with zeros. */                 \
    static void NAME##_pack(int trans_b, const T *b, size_t n, size_t k, size_t p0, size_t kc, \
                            size_t j0, size_t nc, T *panel)                                   \
    {                                                                                         \
        for (size_t s = 0; s * NR < nc; s++) {                                                \
            T *dst = panel + s * kc * NR;                                                     \
            size_t jb = j0 + s * NR, w = nc - s * NR < NR ? nc - s * NR : NR;                 \
            if (trans_b) { /* B stored [n,k]: each column of op(B) is contiguous */           \
                for (size_t j = 0; j < NR; j++)                                               \
                    for (size_t p = 0; p < kc; p++)                                           \
                        dst[p * NR + j] = j < w ? b[(jb + j) * k + p0 + p] : 0;               \
            } else if (w == NR) {                                                             \
                for (size_t p = 0; p < kc; p++)                                               \
                    for (size_t j = 0; j < NR; j++) dst[p * NR + j] = b[(p0 + p) * n + jb + j]; \
            } else {                                                                          \
                for (size_t p = 0; p < kc; p++)                                               \
                    for (size_t j = 0; j < NR; j++)                                           \
                        dst[p * NR + j] = j < w ? b[(p0 + p) * n + jb + j] : 0;               \
            }                                                                                 \
        }                                                                                     \
    }                                                                                         \
    /* The rectangle g of C: panels of at most NC columns from g.j0, blocks of KC     \
     * along p, row blocks from g.i0. The row blocks and the NR-column strips fall on  \
     * the same rows and columns as for the whole of C (see tile_of), so every        \
     * element goes through the same kernel and the same sums as with one thread.     \
     * A row-major B of whole strips that fits one panel is read in place; otherwise  \
     * B is packed, which also keeps a long row stride from thrashing the cache. */   \
    static void NAME##_tile(int trans_b, size_t n, size_t k, const T *a, size_t ar,           \
                            size_t ac, const T *b, const T *prepacked, T *c, c_tile g,        \
                            int accumulate)                                                   \
    {                                                                                         \
        enum { NC = PANEL_COLS(T, NR) };                                                      \
        T panel[KC * NC];                                                                     \
        size_t i1 = g.i1;                                                                     \
        int pack = !prepacked && (trans_b || n > NC || n % NR != 0);                          \
        if (!accumulate && !KERNEL_ZEROES)                                                    \
            for (size_t r = g.i0; r < g.i1; r++) memset(c + r * n + g.j0, 0, (g.j1 - g.j0) * sizeof(T)); \
        for (size_t j0 = g.j0; j0 < g.j1; j0 += NC) {                                         \
            size_t nc = g.j1 - j0 < NC ? g.j1 - j0 : NC;                                      \
            for (size_t p0 = 0; p0 < k; p0 += KC) {                                           \
                size_t kc = k - p0 < KC ? k - p0 : KC;                                        \
                const T *bp = b + p0 * n + j0;                                                \
                size_t ldb = n, sstep = NR;                                                   \
                if (prepacked) { /* whole strips of k rows: see ad__gemm_pack_f32 */          \
                    bp = prepacked + j0 / NR * k * NR + p0 * NR, ldb = NR, sstep = k * NR;    \
                } else if (pack) {                                                            \
                    NAME##_pack(trans_b, b, n, k, p0, kc, j0, nc, panel);                     \
                    bp = panel, ldb = NR, sstep = kc * NR;                                    \
                }                                                                             \
                const T *ap = a + p0 * ac;                                                    \
                int zero = KERNEL_ZEROES && !accumulate && p0 == 0;                           \
                size_t i = g.i0;                                                              \
                for (; i + MR <= i1; i += MR) ROW_BLOCK_OF(NAME, T, NR, MR_ROWS);                      \
                REMAINDER_ROWS(NAME, T, NR);                                                  \
                for (size_t s = 0; i < i1 && s * NR < nc; s++) /* rows left without vectors */ \
                    NAME##_edge(i1 - i, nc - s * NR < NR ? nc - s * NR : NR, kc, ap + i * ar, ar, ac, \
                                bp + s * sstep, ldb, c + i * n + j0 + s * NR, n);             \
            }                                                                                 \
        }                                                                                     \
    }                                                                                         \
    static void NAME##_run(int trans_a, int trans_b, size_t m, size_t n, size_t k, const T *a, \
                           const T *b, const T *prepacked, T *c, int accumulate)             \
    {                                                                                         \
        size_t ar = trans_a ? 1 : k, ac = trans_a ? m : 1; /* A(i,p) = a[i ar + p ac] */      \
        if ((trans_b && m < MIN_ROWS) || (!trans_b && (m < MIN_ROWS || k < MIN_ROWS))) {                        \
            if (!accumulate) memset(c, 0, m * n * sizeof(T));                                 \
            if (trans_b) NAME##_dots(m, n, k, a, ar, ac, b, c);                               \
            else NAME##_edge(m, n, k, a, ar, ac, b, n, c, n); /* vectors, outer products */   \
            return;                                                                           \
        }                                                                                     \
        int nth = team_size(m, n, k, NR);                                                     \
        if (nth == 1) {                                                                       \
            NAME##_tile(trans_b, n, k, a, ar, ac, b, prepacked, c, tile_of(m, n, NR, 0, 1), accumulate); \
            return;                                                                           \
        }                                                                                     \
        PARALLEL_TEAM                                                                         \
        NAME##_tile(trans_b, n, k, a, ar, ac, b, prepacked, c,                                \
                    tile_of(m, n, NR, team_member(), team_count()), accumulate);              \
    }                                                                                         \
    STORAGE void FN(int trans_a, int trans_b, size_t m, size_t n, size_t k, const T *a, const T *b, \
              T *c, int accumulate)                                                           \
    {                                                                                         \
        NAME##_run(trans_a, trans_b, m, n, k, a, b, NULL, c, accumulate);                     \
    }

#if defined(__GNUC__)
/* Every row count ROW_BLOCK uses (MR_ROWS, and the remainders'), whole strips
 * and half strips. */
#define DEFINE_MICROS(NAME, T, NR)                                                            \
    DEFINE_VEC(NAME, T, NR)                                                                   \
    DEFINE_MICRO(NAME, T, NR, 8, 2, micro) DEFINE_MICRO(NAME, T, NR, 8, 1, half)               \
    DEFINE_MICRO(NAME, T, NR, 6, 2, micro) DEFINE_MICRO(NAME, T, NR, 6, 1, half)               \
    DEFINE_MICRO(NAME, T, NR, 4, 2, micro) DEFINE_MICRO(NAME, T, NR, 4, 1, half)               \
    DEFINE_MICRO(NAME, T, NR, 2, 2, micro) DEFINE_MICRO(NAME, T, NR, 2, 1, half)               \
    DEFINE_MICRO(NAME, T, NR, 1, 2, micro) DEFINE_MICRO(NAME, T, NR, 1, 1, half)
DEFINE_MICROS(ad__gemm_f32, float, NR_F32)
DEFINE_MICROS(ad__gemm_f64, double, NR_F64)

/*
 * One row of C, NV >= 1 whole vectors and `tail` (< VL) further columns
 * wide, against a row-major B: c[j] += sum_p a[p ac] b[p ldb + j]. The
 * accumulators stay in registers for the whole of k, so each p costs a load
 * and a multiply-add per vector and no store (the plain loop loaded and
 * stored the row at every p, a chain through memory). The tail columns ride
 * in one more vector over the row's last VL columns (overlapping the last
 * whole vector, so nothing is read past the row). It is written back whole,
 * after the others: its overlapping lanes went through the same start
 * values and multiply-adds as the last whole vector's, so they hold the same
 * bits. Each element is still its start value plus the terms in increasing p.
 */
#define DEFINE_ROW(NAME, T, NR, NV)                                                            \
    static void NAME##_row##NV(size_t k, const T *restrict a, size_t ac, const T *restrict b,  \
                               size_t ldb, T *restrict c, size_t tail)                         \
    {                                                                                          \
        enum { VL = NR / 2 };                                                                  \
        size_t last = NV * VL + tail - VL; /* the tail vector's first column */                \
        NAME##_vec acc[NV + 1];                                                                \
        for (int v = 0; v < NV; v++) __builtin_memcpy(&acc[v], c + v * VL, sizeof acc[v]);     \
        __builtin_memcpy(&acc[NV], c + last, sizeof acc[NV]);                                  \
        for (size_t p = 0; p < k; p++) {                                                       \
            T x = a[p * ac];                                                                   \
            const T *bp = b + p * ldb;                                                         \
            for (int v = 0; v < NV; v++) {                                                     \
                NAME##_vec bv;                                                                 \
                __builtin_memcpy(&bv, bp + v * VL, sizeof bv);                                 \
                acc[v] += x * bv;                                                              \
            }                                                                                  \
            if (tail) {                                                                        \
                NAME##_vec bt;                                                                 \
                __builtin_memcpy(&bt, bp + last, sizeof bt);                                   \
                acc[NV] += x * bt;                                                             \
            }                                                                                  \
        }                                                                                      \
        for (int v = 0; v < NV; v++) __builtin_memcpy(c + v * VL, &acc[v], sizeof acc[v]);     \
        if (tail) __builtin_memcpy(c + last, &acc[NV], sizeof acc[NV]);                        \
    }
#define DEFINE_ROWS(NAME, T, NR)                                                               \
    DEFINE_ROW(NAME, T, NR, 1) DEFINE_ROW(NAME, T, NR, 2) DEFINE_ROW(NAME, T, NR, 3)           \
    DEFINE_ROW(NAME, T, NR, 4) DEFINE_ROW(NAME, T, NR, 5) DEFINE_ROW(NAME, T, NR, 6)           \
    DEFINE_ROW(NAME, T, NR, 7)                                                                 \
    /* Columns [0, w) of one row in chunks of 7 vectors and less (8 accumulators  \
     * with the tail's). */                                                                    \
    static void NAME##_row(size_t w, size_t k, const T *a, size_t ac, const T *b, size_t ldb,  \
                           T *c)                                                               \
    {                                                                                          \
        enum { VL = NR / 2 };                                                                  \
        size_t j = 0;                                                                          \
        for (; j + 8 * VL <= w; j += 7 * VL) NAME##_row7(k, a, ac, b + j, ldb, c + j, 0);      \
        size_t tail = (w - j) % VL;                                                            \
        switch ((w - j) / VL) {                                                                \
        case 7: NAME##_row7(k, a, ac, b + j, ldb, c + j, tail); break;                         \
        case 6: NAME##_row6(k, a, ac, b + j, ldb, c + j, tail); break;                         \
        case 5: NAME##_row5(k, a, ac, b + j, ldb, c + j, tail); break;                         \
        case 4: NAME##_row4(k, a, ac, b + j, ldb, c + j, tail); break;                         \
        case 3: NAME##_row3(k, a, ac, b + j, ldb, c + j, tail); break;                         \
        case 2: NAME##_row2(k, a, ac, b + j, ldb, c + j, tail); break;                         \
        case 1: NAME##_row1(k, a, ac, b + j, ldb, c + j, tail); break;                         \
        default: /* fewer columns than a vector: the plain loop, a column at a time */         \
            for (size_t q = j; q < w; q++) {                                                   \
                T sum = c[q];                                                                  \
                for (size_t p = 0; p < k; p++) sum += a[p * ac] * b[p * ldb + q];              \
                c[q] = sum;                                                                    \
            }                                                                                  \
        }                                                                                      \
    }
DEFINE_ROWS(ad__gemm_f32, float, NR_F32)
DEFINE_ROWS(ad__gemm_f64, double, NR_F64)
#else
DEFINE_MICRO_PORTABLE(ad__gemm_f32, float, NR_F32)
DEFINE_MICRO_PORTABLE(ad__gemm_f64, double, NR_F64)
/* One row of C against a row-major B, the plain loop. */
#define DEFINE_ROWS_PORTABLE(NAME, T)                                                          \
    static void NAME##_row(size_t w, size_t k, const T *a, size_t ac, const T *b, size_t ldb,  \
                           T *c)                                                               \
    {                                                                                          \
        for (size_t p = 0; p < k; p++) {                                                       \
            T x = a[p * ac];                                                                   \
            for (size_t j = 0; j < w; j++) c[j] += x * b[p * ldb + j];                         \
        }                                                                                      \
    }
DEFINE_ROWS_PORTABLE(ad__gemm_f32, float)
DEFINE_ROWS_PORTABLE(ad__gemm_f64, double)
/* No narrower kernel here: the last strip runs the whole one. */
#define ad__gemm_f32_half6 ad__gemm_f32_micro6
#define ad__gemm_f64_half6 ad__gemm_f64_micro6
#endif
#if defined(UNROLL_WITH_BLAS)
/* CBLAS for the products large enough to pay its call overhead; the built-in
 * kernel for the rest. Still deterministic for a given BLAS and thread count. */
#include <cblas.h>

DEFINE_GEMM(ad__gemm_f32, static, builtin_gemm_f32, float, NR_F32)
DEFINE_GEMM(ad__gemm_f64, static, builtin_gemm_f64, double, NR_F64)

#define BLAS_WORTH_IT(m, n, k) ((m) >= 8 && (n) >= 8 && (k) >= 8)

static void gemm_f32(int trans_a, int trans_b, size_t m, size_t n, size_t k, const float *a,
                     const float *b, float *c, int accumulate)
{
    if (!BLAS_WORTH_IT(m, n, k)) {
        builtin_gemm_f32(trans_a, trans_b, m, n, k, a, b, c, accumulate);
        return;
    }
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
                (int)m, (int)n, (int)k, 1.0f, a, trans_a ? (int)m : (int)k, b, trans_b ? (int)k : (int)n,
                accumulate ? 1.0f : 0.0f, c, (int)n);
}

static void gemm_f64(int trans_a, int trans_b, size_t m, size_t n, size_t k, const double *a,
                     const double *b, double *c, int accumulate)
{
    if (!BLAS_WORTH_IT(m, n, k)) {
        builtin_gemm_f64(trans_a, trans_b, m, n, k, a, b, c, accumulate);
        return;
    }
    cblas_dgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
                (int)m, (int)n, (int)k, 1.0, a, trans_a ? (int)m : (int)k, b, trans_b ? (int)k : (int)n,
                accumulate ? 1.0 : 0.0, c, (int)n);
}

/* CBLAS packs for itself: nothing is prepacked. */
static size_t packed_count(int f64, size_t n, size_t k)
{
    (void)f64, (void)n, (void)k;
    return 0;
}
static void pack_f32(int trans_b, size_t n, size_t k, const float *b, float *packed)
{
    (void)trans_b, (void)n, (void)k, (void)b, (void)packed;
}
static void pack_f64(int trans_b, size_t n, size_t k, const double *b, double *packed)
{
    (void)trans_b, (void)n, (void)k, (void)b, (void)packed;
}
static void prepacked_f32(int trans_a, int trans_b, size_t m, size_t n, size_t k, const float *a,
                          const float *b, const float *packed, float *c, int accumulate)
{
    (void)packed;
    gemm_f32(trans_a, trans_b, m, n, k, a, b, c, accumulate);
}
static void prepacked_f64(int trans_a, int trans_b, size_t m, size_t n, size_t k, const double *a,
                          const double *b, const double *packed, double *c, int accumulate)
{
    (void)packed;
    gemm_f64(trans_a, trans_b, m, n, k, a, b, c, accumulate);
}
#else
DEFINE_GEMM(ad__gemm_f32, static, gemm_f32, float, NR_F32)
DEFINE_GEMM(ad__gemm_f64, static, gemm_f64, double, NR_F64)

static size_t packed_count(int f64, size_t n, size_t k)
{
    size_t nr = f64 ? NR_F64 : NR_F32;
    return (n + nr - 1) / nr * nr * k;
}
/* All of op(B) as NR-column strips of k rows each, strip s at s k NR: one
 * panel of the whole matrix, the layout the kernel reads when prepacked. A
 * large one (a weight packed once per tape) is packed a range of strips per
 * thread (split.h); each strip is the same copy either way. */
typedef struct pack_job {
    int trans_b, f64;
    size_t n, k;
    const void *b;
    void *packed;
} pack_job;

static void pack_range(void *ctx, size_t lo, size_t hi, int part)
{
    const pack_job *j = ctx;
    size_t nr = j->f64 ? NR_F64 : NR_F32, j0 = lo * nr, j1 = hi * nr < j->n ? hi * nr : j->n;
    (void)part;
    if (j->f64) ad__gemm_f64_pack(j->trans_b, j->b, j->n, j->k, 0, j->k, j0, j1 - j0, (double *)j->packed + j0 * j->k);
    else ad__gemm_f32_pack(j->trans_b, j->b, j->n, j->k, 0, j->k, j0, j1 - j0, (float *)j->packed + j0 * j->k);
}

static void pack_all(int f64, int trans_b, size_t n, size_t k, const void *b, void *packed)
{
    size_t nr = f64 ? NR_F64 : NR_F32, strips = (n + nr - 1) / nr;
    pack_job j = {trans_b, f64, n, k, b, packed};
    size_t bytes = n * k * (f64 ? sizeof(double) : sizeof(float));
    ad__split_run(strips, ad__split_parts(strips, bytes, AD__TUNE_COPY_MIN_PER_THREAD), 1, pack_range, &j);
}
static void pack_f32(int trans_b, size_t n, size_t k, const float *b, float *packed)
{
    pack_all(0, trans_b, n, k, b, packed);
}
static void pack_f64(int trans_b, size_t n, size_t k, const double *b, double *packed)
{
    pack_all(1, trans_b, n, k, b, packed);
}
static void prepacked_f32(int trans_a, int trans_b, size_t m, size_t n, size_t k, const float *a,
                          const float *b, const float *packed, float *c, int accumulate)
{
    ad__gemm_f32_run(trans_a, trans_b, m, n, k, a, b, packed, c, accumulate);
}
static void prepacked_f64(int trans_a, int trans_b, size_t m, size_t n, size_t k, const double *a,
                          const double *b, const double *packed, double *c, int accumulate)
{
    ad__gemm_f64_run(trans_a, trans_b, m, n, k, a, b, packed, c, accumulate);
}
#endif

/* This variant's entry points; cpu.c picks one variant's table per process. */
const ad__gemm_kernels AD__VARIANT(ad__gemm_kernels) = {
    .packed_count = packed_count,
    .f32 = gemm_f32,
    .f64 = gemm_f64,
    .pack_f32 = pack_f32,
    .pack_f64 = pack_f64,
    .prepacked_f32 = prepacked_f32,
    .prepacked_f64 = prepacked_f64,
};
