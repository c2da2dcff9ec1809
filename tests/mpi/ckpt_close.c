/*
 * ckpt_close.c - are two checkpoints the same training state to a tolerance?
 * For the char_rnn runs of the MPI build (tests/mpi/char_rnn_mpi.cmake): the
 * same command line at 1 and at 2 ranks must give the same weights.
 *
 *     ckpt_close A.ckpt B.ckpt TOL
 *
 * Compares the parameter names, shapes and dtype, the training step and the
 * optimizer's update count exactly, and the values to TOL relative:
 * max |a - b| over all values, divided by max |a|. Prints that figure, then
 * "1 passed, 0 failed" and exits 0, or "0 passed, 1 failed" and exits 1.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unroll/nn/nn.h>

static int fail(const char *fmt, const char *a, const char *b)
{
    fprintf(stderr, "ckpt_close: ");
    fprintf(stderr, fmt, a, b);
    fprintf(stderr, "\n0 passed, 1 failed\n");
    return 1;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: ckpt_close A.ckpt B.ckpt TOL\n");
        return 2;
    }
    double tol = strtod(argv[3], NULL);
    nn_checkpoint_info ia, ib;
    ad_error err;
    nn_params *a = nn_checkpoint_read_params(argv[1], &ia, &err);
    if (!a) return fail("%s: %s", argv[1], err.msg);
    nn_params *b = nn_checkpoint_read_params(argv[2], &ib, &err);
    if (!b) {
        nn_params_free(a);
        return fail("%s: %s", argv[2], err.msg);
    }
    int status = 1;
    size_t na, nb;
    const char *why = NULL;
    if (nn_params_count(a) != nn_params_count(b) || nn_params_dtype(a) != nn_params_dtype(b))
        why = "the parameter sets differ (count or dtype)";
    for (size_t i = 0; !why && i < nn_params_count(a); i++) {
        const ad_param *pa = nn_params_at(a, i), *pb = nn_params_at(b, i);
        if (strcmp(ad_param_name(pa), ad_param_name(pb)) != 0 ||
            ad_tensor_numel(ad_param_value((ad_param *)pa)) != ad_tensor_numel(ad_param_value((ad_param *)pb)))
            why = "a parameter's name or size differs";
    }
    if (!why && (ia.has_train != ib.has_train || ia.train.step != ib.train.step))
        why = "the training steps differ";
    if (!why && (ia.has_optim != ib.has_optim || ia.optim_steps != ib.optim_steps))
        why = "the optimizer update counts differ";
    if (why) {
        fail("%s vs %s: %s", argv[1], argv[2]);
        fprintf(stderr, "(%s)\n", why);
        goto done;
    }
    void *va = nn_params_values(a, &na), *vb = nn_params_values(b, &nb);
    int f64 = nn_params_dtype(a) == AD_F64;
    double diff = 0, scale = 0;
    for (size_t i = 0; i < na; i++) {
        double x = f64 ? ((double *)va)[i] : ((float *)va)[i], y = f64 ? ((double *)vb)[i] : ((float *)vb)[i];
        diff = fmax(diff, fabs(x - y));
        scale = fmax(scale, fabs(x));
        if (isnan(x) != isnan(y)) diff = INFINITY;
    }
    double rel = scale > 0 ? diff / scale : diff;
    printf("ckpt_close: %zu values, step %lld, max |a - b| / max |a| = %.3g (tolerance %g)\n", na,
           (long long)ia.train.step, rel, tol);
    if (rel <= tol) {
        printf("1 passed, 0 failed\n");
        status = 0;
    } else {
        printf("0 passed, 1 failed\n");
    }
done:
    nn_params_free(a);
    nn_params_free(b);
    return status;
}
