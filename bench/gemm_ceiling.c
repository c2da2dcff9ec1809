/*
 * gemm_ceiling: the GEMM-bound ceiling of the batched workloads W3/W4/W4g
 * (bench/README.md, WORKLOADS.md). Every matrix product of one training step
 * (forward: the hoisted input projection, the per-step recurrent products
 * [B,H]x[H,G*H], the head; backward: their transposed products) is timed at
 * its own shape, and the ceiling is the step's token count over the summed
 * product time: what the step would reach if it did nothing but its GEMMs.
 *
 * Kernels: "builtin" is the engine's own matrix product (ad__gemm_*, the
 * entry point every ad_matmul reaches, with its run-time CPU dispatch);
 * "openblas" is cblas_?gemm on one thread, present only in a build with
 * UNROLL_BENCH_CBLAS=ON (the default build does not depend on a BLAS).
 * The built-in kernel runs the two recurrent products whose B is the weight
 * W_h as the engine does, with B packed once (ad__gemm_prepacked_*); the
 * packing itself, once per step, is left out of the ceiling.
 *
 *     ./build/bench/gemm_ceiling [--dtype f32|f64] [--seconds S] [--workloads W3,W4,W4g]
 *
 * Output: CSV rows "gemm,<workload>,<product>,<kernel>,<dtype>,m,n,k,ta,tb,count,gflops"
 * and "ceiling,<workload>,<kernel>,<dtype>,gflop_per_step,tokens_per_s"; with
 * both kernels, a further ceiling row of kernel "best" takes each product at
 * the faster kernel's rate for its shape (the strictest ceiling).
 */
#define _POSIX_C_SOURCE 200809L
#include "../autodiff/kernels.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef UNROLL_BENCH_CBLAS
#include <cblas.h>
void openblas_set_num_threads(int n);
#endif

typedef struct product {
    const char *name;
    int ta, tb;
    size_t m, n, k;
    int count;  /* how many times one step runs it */
    int packed; /* B is a weight reused over the steps: the built-in kernel packs it once */
} product;

enum { V = 65, H = 256, T = 64, B = 32, MAX_PRODUCTS = 8 };

/* The products of one W3/W4/W4g step with G gate blocks (1, 4, 3). */
static int step_products(int G, product *p)
{
    size_t TB = (size_t)T * B, GH = (size_t)G * H;
    product list[MAX_PRODUCTS] = {
        {"fwd_input_proj", 0, 0, TB, GH, V, 1, 0},  /* one-hot x W_x, hoisted over T */
        {"fwd_recurrent", 0, 0, B, GH, H, T, 1},    /* h_{t-1} W_h */
        {"fwd_head", 0, 0, TB, V, H, 1, 0},         /* h W_y */
        {"bwd_head_dh", 0, 1, TB, H, V, 1, 0},      /* dlogits W_y^T */
        {"bwd_head_dw", 1, 0, H, V, TB, 1, 0},      /* h^T dlogits */
        {"bwd_recurrent_dh", 0, 1, B, H, GH, T, 1}, /* dgates W_h^T */
        {"bwd_recurrent_dw", 1, 0, H, GH, B, T, 0}, /* h_{t-1}^T dgates */
        {"bwd_input_dw", 1, 0, V, GH, TB, 1, 0},    /* one-hot^T dgates */
    };
    memcpy(p, list, sizeof list);
    return MAX_PRODUCTS;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void run(int kernel, int f64, const product *p, void *a, void *b, void *c, void *packed)
{
    if (kernel == 0 && packed) {
        if (f64)
            ad__gemm_prepacked_f64(p->ta, p->tb, p->m, p->n, p->k, a, b, packed, c, 0);
        else
            ad__gemm_prepacked_f32(p->ta, p->tb, p->m, p->n, p->k, a, b, packed, c, 0);
        return;
    }
    if (kernel == 0) {
        if (f64)
            ad__gemm_f64(p->ta, p->tb, p->m, p->n, p->k, a, b, c, 0);
        else
            ad__gemm_f32(p->ta, p->tb, p->m, p->n, p->k, a, b, c, 0);
        return;
    }
#ifdef UNROLL_BENCH_CBLAS
    int m = (int)p->m, n = (int)p->n, k = (int)p->k;
    enum CBLAS_TRANSPOSE ta = p->ta ? CblasTrans : CblasNoTrans, tb = p->tb ? CblasTrans : CblasNoTrans;
    int lda = p->ta ? m : k, ldb = p->tb ? k : n;
    if (f64)
        cblas_dgemm(CblasRowMajor, ta, tb, m, n, k, 1.0, a, lda, b, ldb, 0.0, c, n);
    else
        cblas_sgemm(CblasRowMajor, ta, tb, m, n, k, 1.0f, a, lda, b, ldb, 0.0f, c, n);
#endif
}

/* Seconds per product, the best of 5 batches of about seconds/5 each. */
static double time_product(int kernel, int f64, const product *p, double seconds)
{
    size_t es = f64 ? sizeof(double) : sizeof(float);
    size_t na = p->m * p->k, nb = p->k * p->n, nc = p->m * p->n;
    void *a = malloc(na * es), *b = malloc(nb * es), *c = malloc(nc * es);
    if (!a || !b || !c) {
        free(a), free(b), free(c);
        return -1;
    }
    for (size_t i = 0; i < na; i++)
        f64 ? (void)(((double *)a)[i] = 0.001 * (double)(i % 97)) : (void)(((float *)a)[i] = 0.001f * (float)(i % 97));
    for (size_t i = 0; i < nb; i++)
        f64 ? (void)(((double *)b)[i] = 0.002 * (double)(i % 89)) : (void)(((float *)b)[i] = 0.002f * (float)(i % 89));
    void *packed = NULL;
    size_t np = kernel == 0 && p->packed ? ad__gemm_packed_count(f64, p->n, p->k) : 0;
    if (np) {
        packed = malloc(np * es);
        if (!packed) {
            free(a), free(b), free(c);
            return -1;
        }
        if (f64)
            ad__gemm_pack_f64(p->tb, p->n, p->k, b, packed);
        else
            ad__gemm_pack_f32(p->tb, p->n, p->k, b, packed);
    }
    run(kernel, f64, p, a, b, c, packed); /* warm up (and the CPU dispatch) */
    double best = -1;
    for (int round = 0; round < 5; round++) {
        long reps = 0;
        double t0 = now(), t;
        do {
            run(kernel, f64, p, a, b, c, packed);
            reps++;
            t = now() - t0;
        } while (t < seconds / 5);
        double per = t / (double)reps;
        if (best < 0 || per < best) best = per;
    }
    free(a), free(b), free(c), free(packed);
    return best;
}

int main(int argc, char **argv)
{
    int f64 = 0;
    double seconds = 0.25;
    const char *workloads = "W3,W4,W4g";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--dtype") && i + 1 < argc && (!strcmp(argv[i + 1], "f32") || !strcmp(argv[i + 1], "f64")))
            f64 = !strcmp(argv[++i], "f64");
        else if (!strcmp(argv[i], "--seconds") && i + 1 < argc && atof(argv[i + 1]) > 0)
            seconds = atof(argv[++i]);
        else if (!strcmp(argv[i], "--workloads") && i + 1 < argc)
            workloads = argv[++i];
        else {
            fprintf(stderr, "usage: gemm_ceiling [--dtype f32|f64] [--seconds S] [--workloads W3,W4,W4g]\n");
            return 2;
        }
    }
#ifdef UNROLL_BENCH_CBLAS
    openblas_set_num_threads(1);
    int kernels = 2;
#else
    int kernels = 1;
#endif
    const char *kname[2] = {"builtin", "openblas"};
    const char *dt = f64 ? "f64" : "f32";
    struct { const char *name; int G; } wl[3] = {{"W3", 1}, {"W4", 4}, {"W4g", 3}};
    printf("row,workload,product,kernel,dtype,m,n,k,ta,tb,count,gflops\n");
    for (int w = 0; w < 3; w++) {
        char tag[8];
        snprintf(tag, sizeof tag, "%s,", wl[w].name);
        char list[64];
        snprintf(list, sizeof list, "%s,", workloads);
        if (!strstr(list, tag) || (strstr(list, tag) != list && strstr(list, tag)[-1] != ',')) continue;
        product p[MAX_PRODUCTS];
        int np = step_products(wl[w].G, p);
        double best[MAX_PRODUCTS] = {0}, flop = 0;
        for (int kern = 0; kern < kernels; kern++) {
            double step_s = 0;
            flop = 0;
            for (int i = 0; i < np; i++) {
                double s = time_product(kern, f64, &p[i], seconds);
                if (s <= 0) {
                    fprintf(stderr, "gemm_ceiling: out of memory\n");
                    return 1;
                }
                double f = 2.0 * (double)p[i].m * (double)p[i].n * (double)p[i].k;
                printf("gemm,%s,%s,%s,%s,%zu,%zu,%zu,%d,%d,%d,%.2f\n", wl[w].name, p[i].name, kname[kern], dt,
                       p[i].m, p[i].n, p[i].k, p[i].ta, p[i].tb, p[i].count, f / s * 1e-9);
                step_s += s * p[i].count;
                flop += f * p[i].count;
                if (kern == 0 || s < best[i]) best[i] = s;
            }
            printf("ceiling,%s,%s,%s,%.3f,%.0f\n", wl[w].name, kname[kern], dt, flop * 1e-9, (double)T * B / step_s);
            fflush(stdout);
        }
        if (kernels > 1) { /* every product at the faster kernel's rate for its shape */
            double step_s = 0;
            for (int i = 0; i < np; i++) step_s += best[i] * p[i].count;
            printf("ceiling,%s,best,%s,%.3f,%.0f\n", wl[w].name, dt, flop * 1e-9, (double)T * B / step_s);
            fflush(stdout);
        }
    }
    return 0;
}
