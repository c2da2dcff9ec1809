/*
 * kernels.c - plain C11 kernels.
 *
 * GEMM: C[m,n] (+)= op(A) op(B), blocked so that a panel of B (KC rows by
 * NC columns) stays in cache while every row of A streams past it, with a
 * register micro-kernel of MR = 6 rows by NR columns (two SIMD vectors,
 * written with GCC/Clang vector extensions; a plain-array version elsewhere).
 * Built with -O3, -march=native under UNROLL_NATIVE, and FMA contraction for
 * this file only. B is packed into strips of NR columns ([KC, NR] each,
 * contiguous, on the stack) unless it is row-major with whole strips and
 * fits one panel, so every case runs the same micro-kernel with unit-stride
 * loads; the narrow last strip runs it on a register tile.
 *
 * Each C element is the sum over p in increasing order, block by block:
 * the order depends only on the shapes, never on timing or threads.
 */
#include "kernels.h"

#include <string.h>

enum { KC = 128, NC = 256, MR = 6 };

/*
 * The micro-kernel: C[0..MR, 0..NR) += A[0..MR, 0..kc) B[0..kc, 0..NR), with
 * A read through (lda_row, lda_col) strides and B row-major with stride ldb.
 * The accumulators live in a local array the compiler keeps in registers.
 */
#if defined(__GNUC__)
/* GCC/Clang vector extensions: NR = 2 vectors of VL lanes, MR = 6 rows, the
 * 12 accumulators in registers. */
#define DEFINE_VEC(NAME, T, NR) typedef T NAME##_vec __attribute__((vector_size(NR / 2 * sizeof(T))));
#define DEFINE_MICRO(NAME, T, NR, ROWS)                                                       \
    static void NAME##_micro##ROWS(size_t kc, const T *restrict a, size_t ar, size_t ac,      \
                                   const T *restrict b, size_t ldb, T *restrict c, size_t ldc) \
    {                                                                                         \
        enum { VL = NR / 2 };                                                                 \
        NAME##_vec acc[ROWS][2];                                                              \
        for (int r = 0; r < ROWS; r++) {                                                      \
            __builtin_memcpy(&acc[r][0], c + r * ldc, sizeof acc[r][0]);                      \
            __builtin_memcpy(&acc[r][1], c + r * ldc + VL, sizeof acc[r][1]);                 \
        }                                                                                     \
        for (size_t p = 0; p < kc; p++) {                                                     \
            NAME##_vec b0, b1;                                                                \
            __builtin_memcpy(&b0, b + p * ldb, sizeof b0);                                    \
            __builtin_memcpy(&b1, b + p * ldb + VL, sizeof b1);                               \
            for (int r = 0; r < ROWS; r++) {                                                  \
                T ar_p = a[r * ar + p * ac];                                                  \
                acc[r][0] += ar_p * b0;                                                       \
                acc[r][1] += ar_p * b1;                                                       \
            }                                                                                 \
        }                                                                                     \
        for (int r = 0; r < ROWS; r++) {                                                      \
            __builtin_memcpy(c + r * ldc, &acc[r][0], sizeof acc[r][0]);                      \
            __builtin_memcpy(c + r * ldc + VL, &acc[r][1], sizeof acc[r][1]);                 \
        }                                                                                     \
    }
#else
#define DEFINE_MICRO_PORTABLE(NAME, T, NR)                                                    \
    static void NAME##_micro6(size_t kc, const T *restrict a, size_t ar, size_t ac,            \
                             const T *restrict b, size_t ldb, T *restrict c, size_t ldc)      \
    {                                                                                         \
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
 * and each C element is still summed in the same order. Used inside
 * DEFINE_GEMM.
 */
#define ROW_BLOCK(NAME, T, NR, R)                                                             \
    do {                                                                                      \
        for (size_t s = 0; s * NR < nc; s++) {                                                \
            size_t w = nc - s * NR < NR ? nc - s * NR : NR;                                   \
            T *cs = c + i * n + j0 + s * NR;                                                  \
            const T *bs = bp + s * sstep;                                                     \
            if (w == NR) {                                                                    \
                NAME##_micro##R(kc, ap + i * ar, ar, ac, bs, ldb, cs, n);                     \
                continue;                                                                     \
            }                                                                                 \
            T tile[R * NR];                                                                   \
            for (size_t r = 0; r < R; r++)                                                    \
                for (size_t j = 0; j < NR; j++) tile[r * NR + j] = j < w ? cs[r * n + j] : 0; \
            NAME##_micro##R(kc, ap + i * ar, ar, ac, bs, ldb, tile, NR);                      \
            for (size_t r = 0; r < R; r++)                                                    \
                for (size_t j = 0; j < w; j++) cs[r * n + j] = tile[r * NR + j];              \
        }                                                                                     \
    } while (0)

#if defined(__GNUC__)
/* The rows left after the blocks of 6: vector micro-kernels of 4, 2 and 1 rows. */
#define REMAINDER_ROWS(NAME, T, NR)                                                              \
    do {                                                                                      \
        if (m - i >= 4) { ROW_BLOCK(NAME, T, NR, 4); i += 4; }                                \
        if (m - i >= 2) { ROW_BLOCK(NAME, T, NR, 2); i += 2; }                                \
        if (m - i >= 1) { ROW_BLOCK(NAME, T, NR, 1); i += 1; }                                \
    } while (0)
#else
#define REMAINDER_ROWS(NAME, T, NR) ((void)0)
#endif

#define DEFINE_GEMM(NAME, STORAGE, FN, T, NR)                                                              \
    /* The same for the edges (fewer rows or columns), one row at a time. */                 \
    static void NAME##_edge(size_t mr, size_t nr, size_t kc, const T *a, size_t ar,           \
                            size_t ac, const T *b, size_t ldb, T *c, size_t ldc)              \
    {                                                                                         \
        for (size_t r = 0; r < mr; r++)                                                       \
            for (size_t p = 0; p < kc; p++) {                                                 \
                T arp = a[r * ar + p * ac];                                                   \
                const T *bp = b + p * ldb;                                                    \
                for (size_t j = 0; j < nr; j++) c[r * ldc + j] += arp * bp[j];                \
            }                                                                                 \
    }                                                                                         \
    /* Few rows of C and B transposed: each C element a dot product, summed in 8 lanes     \
     * (a fixed order) so that the loop vectorises without reassociation. */                  \
    static void NAME##_dots(size_t m, size_t n, size_t k, const T *a, size_t ar, size_t ac,   \
                            const T *b, T *c)                                                 \
    {                                                                                         \
        for (size_t i = 0; i < m; i++)                                                        \
            for (size_t j = 0; j < n; j++) {                                                  \
                const T *bj = b + j * k;                                                      \
                T lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};                                         \
                size_t p = 0;                                                                 \
                if (ac == 1) {                                                                \
                    const T *ai = a + i * ar;                                                 \
                    for (; p + 8 <= k; p += 8)                                                \
                        for (int l = 0; l < 8; l++) lane[l] += ai[p + l] * bj[p + l];         \
                }                                                                             \
                T s = 0;                                                                      \
                for (; p < k; p++) s += a[i * ar + p * ac] * bj[p];                           \
                for (int l = 0; l < 8; l++) s += lane[l];                                     \
                c[i * n + j] += s;                                                            \
            }                                                                                 \
    }                                                                                         \
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
    STORAGE void FN(int trans_a, int trans_b, size_t m, size_t n, size_t k, const T *a, const T *b, \
              T *c, int accumulate)                                                           \
    {                                                                                         \
        if (!accumulate) memset(c, 0, m * n * sizeof(T));                                     \
        size_t ar = trans_a ? 1 : k, ac = trans_a ? m : 1; /* A(i,p) = a[i ar + p ac] */      \
        if (trans_b && m < MR) {                                                              \
            NAME##_dots(m, n, k, a, ar, ac, b, c);                                            \
            return;                                                                           \
        }                                                                                     \
        if (!trans_b && (m < MR || k < MR)) { /* vectors and outer products: stream rows */   \
            NAME##_edge(m, n, k, a, ar, ac, b, n, c, n);                                      \
            return;                                                                           \
        }                                                                                     \
        /* A row-major B of whole strips that fits one panel is read in place; otherwise \
         * B is packed, which also keeps a long row stride from thrashing the cache. */      \
        int pack = trans_b || n > NC || n % NR != 0;                                          \
        T panel[KC * NC];                                                                     \
        for (size_t j0 = 0; j0 < n; j0 += NC) {                                               \
            size_t nc = n - j0 < NC ? n - j0 : NC;                                            \
            for (size_t p0 = 0; p0 < k; p0 += KC) {                                           \
                size_t kc = k - p0 < KC ? k - p0 : KC;                                        \
                const T *bp = b + p0 * n + j0;                                                \
                size_t ldb = n, sstep = NR;                                                   \
                if (pack) {                                                                   \
                    NAME##_pack(trans_b, b, n, k, p0, kc, j0, nc, panel);                     \
                    bp = panel, ldb = NR, sstep = kc * NR;                                    \
                }                                                                             \
                const T *ap = a + p0 * ac;                                                    \
                size_t i = 0;                                                                 \
                for (; i + MR <= m; i += MR) ROW_BLOCK(NAME, T, NR, 6);                       \
                REMAINDER_ROWS(NAME, T, NR);                                                  \
                for (size_t s = 0; i < m && s * NR < nc; s++) /* rows left without vectors */ \
                    NAME##_edge(m - i, nc - s * NR < NR ? nc - s * NR : NR, kc, ap + i * ar, ar, ac, \
                                bp + s * sstep, ldb, c + i * n + j0 + s * NR, n);             \
            }                                                                                 \
        }                                                                                     \
    }

/* Two vectors per row of the micro-kernel: 256-bit with AVX, 128-bit otherwise. */
#if defined(__AVX__)
#define VEC_BYTES 32
#else
#define VEC_BYTES 16
#endif
#define NR_F32 (2 * VEC_BYTES / 4)
#define NR_F64 (2 * VEC_BYTES / 8)

#if defined(__GNUC__)
DEFINE_VEC(ad__gemm_f32, float, NR_F32)
DEFINE_VEC(ad__gemm_f64, double, NR_F64)
DEFINE_MICRO(ad__gemm_f32, float, NR_F32, 6)
DEFINE_MICRO(ad__gemm_f32, float, NR_F32, 4)
DEFINE_MICRO(ad__gemm_f32, float, NR_F32, 2)
DEFINE_MICRO(ad__gemm_f32, float, NR_F32, 1)
DEFINE_MICRO(ad__gemm_f64, double, NR_F64, 6)
DEFINE_MICRO(ad__gemm_f64, double, NR_F64, 4)
DEFINE_MICRO(ad__gemm_f64, double, NR_F64, 2)
DEFINE_MICRO(ad__gemm_f64, double, NR_F64, 1)
#else
DEFINE_MICRO_PORTABLE(ad__gemm_f32, float, NR_F32)
DEFINE_MICRO_PORTABLE(ad__gemm_f64, double, NR_F64)
#endif
#if defined(UNROLL_WITH_BLAS)
/* CBLAS for the products large enough to pay its call overhead; the built-in
 * kernel for the rest. Still deterministic for a given BLAS and thread count. */
#include <cblas.h>

DEFINE_GEMM(ad__gemm_f32, static, builtin_gemm_f32, float, NR_F32)
DEFINE_GEMM(ad__gemm_f64, static, builtin_gemm_f64, double, NR_F64)

#define BLAS_WORTH_IT(m, n, k) ((m) >= 8 && (n) >= 8 && (k) >= 8)

void ad__gemm_f32(int trans_a, int trans_b, size_t m, size_t n, size_t k, const float *a,
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

void ad__gemm_f64(int trans_a, int trans_b, size_t m, size_t n, size_t k, const double *a,
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
#else
DEFINE_GEMM(ad__gemm_f32, , ad__gemm_f32, float, NR_F32)
DEFINE_GEMM(ad__gemm_f64, , ad__gemm_f64, double, NR_F64)
#endif
