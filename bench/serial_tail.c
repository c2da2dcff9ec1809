/*
 * serial_tail.c - times what a data-parallel step does after its shards:
 * zeroing the model's gradients, summing two replicas' into them in shard
 * order and one Adam update (nn_params_zero_grad, nn_params_accumulate_grads,
 * nn_optim_step), on 1 and on N threads, for the parameter counts of W3, W4
 * and W4g (H = 256, vocabulary 65). These loops are split over the threads of
 * ad_set_num_threads() (autodiff/split.c); in unroll_bench --shards they are
 * the part of the step outside ad_parallel_run.
 *
 *     ./build-omp/bench/serial_tail            (UNROLL_WITH_OPENMP=ON; 2 threads)
 *     ./build-omp/bench/serial_tail 3 1000     (3 threads, 1000 repetitions)
 *
 * Prints one CSV row per parameter count and thread count: the median, 10th
 * and 90th percentile of the time of the tail in microseconds.
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include <unroll/autodiff/autodiff.h>
#include <unroll/nn/nn.h>

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e6 + (double)t.tv_nsec * 1e-3;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The tail on `threads` threads, `reps` times; 0 on success. */
static int time_tail(nn_params *ps, nn_params *const *replica, nn_optim *opt, int threads, int reps, double *t)
{
    if (ad_set_num_threads(threads) != AD_OK) return 1;
    for (int i = 0; i < reps; i++) {
        double t0 = now_us();
        nn_params_zero_grad(ps);
        for (int s = 0; s < 2; s++)
            if (nn_params_accumulate_grads(ps, replica[s], NULL) != AD_OK) return 1;
        if (nn_optim_step(opt, NULL) != AD_OK) return 1;
        t[i] = now_us() - t0;
    }
    qsort(t, (size_t)reps, sizeof *t, cmp_double);
    return 0;
}

/* One model of `numel` f32 parameters with two replicas; prints its rows. */
static int run(const char *name, int64_t numel, int threads, int reps, double *t)
{
    nn_params *ps = nn_params_new(AD_F32, NULL);
    nn_params *replica[2] = {NULL, NULL};
    nn_optim *opt = NULL;
    int rc = 1;
    if (!ps || !nn_params_add(ps, "w", ad_shape1(numel), NULL)) goto done;
    ad_rng rng;
    ad_rng_seed(&rng, 1, 0);
    nn_params_init_uniform(ps, &rng, -0.1, 0.1);
    for (int s = 0; s < 2; s++) {
        size_t n;
        if (!(replica[s] = nn_params_replica(ps, NULL))) goto done;
        float *g = nn_params_grads(replica[s], &n);
        for (size_t k = 0; k < n; k++) g[k] = 1e-3f * (float)(k % 97) - 0.05f;
    }
    nn_optim_config cfg = nn_optim_defaults(NN_OPTIM_ADAM);
    if (!(opt = nn_optim_new(ps, &cfg, NULL))) goto done;
    int counts[2] = {1, threads};
    for (int c = 0; c < (threads > 1 ? 2 : 1); c++) {
        if (time_tail(ps, replica, opt, counts[c], reps, t)) goto done;
        printf("%s,%lld,%d,%.1f,%.1f,%.1f\n", name, (long long)numel, ad_get_num_threads(), t[reps / 2],
               t[reps / 10], t[reps * 9 / 10]);
    }
    rc = 0;
done:
    nn_optim_free(opt);
    for (int s = 0; s < 2; s++) nn_params_free(replica[s]);
    nn_params_free(ps);
    ad_set_num_threads(1);
    return rc;
}

int main(int argc, char **argv)
{
    int threads = argc > 1 ? atoi(argv[1]) : 2, reps = argc > 2 ? atoi(argv[2]) : 400;
    if (threads < 1 || reps < 10) {
        fprintf(stderr, "usage: serial_tail [threads >= 1] [repetitions >= 10]\n");
        return 2;
    }
    double *t = malloc((size_t)reps * sizeof *t);
    if (!t) return 1;
    /* Wx [65, G H], Wh [256, G H], b [G H], Wy [256, 65], by [65] with G gates. */
    const char *names[3] = {"W3", "W4", "W4g"};
    int gates[3] = {1, 4, 3}, rc = 0;
    printf("workload,params,threads,median_us,p10_us,p90_us\n");
    for (int w = 0; w < 3 && rc == 0; w++) {
        int64_t gh = 256 * gates[w];
        rc = run(names[w], 65 * gh + 256 * gh + gh + 256 * 65 + 65, threads, reps, t);
    }
    free(t);
    return rc;
}
