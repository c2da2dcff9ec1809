/*
 * copy_grads.c - what a tape keeps of its temporal copies' gradients
 * (ad_tape_options.copy_grads), and reading what a mode dropped.
 *
 * KEEP gives every copy a buffer (op_leaf.c adds it into the parameter).
 * NONE hands the parameter's gradient to every op that asks for a copy's.
 * NORMS keeps no buffer past a copy's backward but records the copy's
 * ||dL/dW^(t)||^2 as it goes into the parameter, in one of two ways:
 *
 * - A copy read by one product only (a cell's weight at one step, the common
 *   case) gets its whole gradient op(A)^T G from that product, and
 *   ||op(A)^T G||_F^2 = sum_{r,s} (a_r . a_s) (g_r . g_s) over the m rows a_r
 *   of op(A) and g_r of G (the Frobenius product of the Gram matrices A A^T
 *   and G G^T). With few rows this costs a fraction of the product, needs no
 *   gradient buffer (two m x m matrices of scratch), and leaves the product
 *   free to go straight into the parameter or into the stack of weight
 *   gradients computed at the end of backward.
 * - Any other copy gets a buffer as under KEEP; its backward adds it into the
 *   parameter, summing squares on the way (two flops per element), and gives
 *   the buffer back for the next gradient of that size.
 *
 * Either way the recorded norm is that of the copy's whole gradient, so a
 * report built from the norms equals KEEP's up to rounding.
 */
#include <math.h>

#include "clones.h"
#include "internal.h"
#include "kernels.h"
#include "split.h"

/* The Gram form takes m^2 (k + n) multiply-adds (the kernel fills both
 * halves of each symmetric matrix) against the product's m k n: with
 * m (k + n) <= k n it costs no more than the product, and with the few rows
 * of a time step (32 in W3/W4) far less. The row limit (tuning.h) keeps the
 * m^2 pairs few where k and n are large. */
static int gram_pays(size_t m, size_t k, size_t n)
{
    return m <= AD__TUNE_GRAM_MAX_ROWS && m * (k + n) <= k * n;
}

/*
 * Dot products in double, in sixteen partial sums in fixed lanes, which the
 * compiler maps onto four vector registers without reordering any sum (four
 * independent chains hide the latency of the multiply-adds). Fewer than 16
 * elements only ever reach lane 0, and the reduction adds zeros to it: the
 * short loop and one `+ 0.0` (which turns -0 into +0 as the reduction does)
 * give the same bits without the lanes.
 *
 * A long one (more than DOT_CHUNK elements: the gradient of a whole
 * unroll's input projection) is cut into chunks that depend on its length
 * alone, at most DOT_MAX_CHUNKS of them; each chunk's lanes start from zero,
 * the chunks' lanes are added in chunk order, then reduced. The chunks run
 * over the threads (split.h) and the order of every sum is the same for any
 * thread count.
 */
enum { LANES = 16, DOT_CHUNK = 16384, DOT_MAX_CHUNKS = 64 };

static double reduce_lanes(double *l)
{
    for (int w = LANES / 2; w > 0; w /= 2) /* pairwise, lane j with lane j + w */
        for (int j = 0; j < w; j++) l[j] += l[j + w];
    return l[0];
}

typedef struct dot_job {
    const void *x, *y;
    size_t len, chunk;
    double (*lanes)[LANES];
} dot_job;

#define DEFINE_DOT(T)                                                                     \
    AD__CLONES static void lanes_##T(const T *x, const T *y, size_t len, double *l)       \
    {                                                                                     \
        size_t i = 0;                                                                     \
        for (; i + LANES <= len; i += LANES)                                              \
            for (int j = 0; j < LANES; j++) l[j] += (double)x[i + j] * (double)y[i + j];  \
        for (; i < len; i++) l[0] += (double)x[i] * (double)y[i];                         \
    }                                                                                     \
    static void chunks_##T(void *ctx, size_t lo, size_t hi, int part)                     \
    {                                                                                     \
        const dot_job *j = ctx;                                                           \
        (void)part;                                                                       \
        for (size_t c = lo; c < hi; c++) {                                                \
            size_t at = c * j->chunk, n = j->len - at < j->chunk ? j->len - at : j->chunk; \
            for (int k = 0; k < LANES; k++) j->lanes[c][k] = 0;                           \
            lanes_##T((const T *)j->x + at, (const T *)j->y + at, n, j->lanes[c]);       \
        }                                                                                 \
    }                                                                                     \
    static double dot_##T(const T *x, const T *y, size_t len)                             \
    {                                                                                     \
        if (len < LANES) {                                                                \
            double s = 0;                                                                 \
            for (size_t i = 0; i < len; i++) s += (double)x[i] * (double)y[i];            \
            return s + 0.0;                                                               \
        }                                                                                 \
        double l[LANES] = {0};                                                            \
        if (len <= DOT_CHUNK) {                                                           \
            lanes_##T(x, y, len, l);                                                      \
            return reduce_lanes(l);                                                       \
        }                                                                                 \
        double lanes[DOT_MAX_CHUNKS][LANES];                                              \
        size_t chunk = (len + DOT_MAX_CHUNKS - 1) / DOT_MAX_CHUNKS;                       \
        chunk = chunk < DOT_CHUNK ? DOT_CHUNK : (chunk + LANES - 1) / LANES * LANES;      \
        size_t count = (len + chunk - 1) / chunk;                                         \
        dot_job j = {x, y, len, chunk, lanes};                                            \
        size_t bytes = len * sizeof(T);                                                   \
        ad__split_run(count, ad__split_parts(count, bytes, AD__TUNE_COPY_MIN_PER_THREAD), 1, \
                      chunks_##T, &j);                                                    \
        for (size_t c = 0; c < count; c++)                                                \
            for (int k = 0; k < LANES; k++) l[k] += lanes[c][k];                          \
        return reduce_lanes(l);                                                           \
    }
DEFINE_DOT(float)
DEFINE_DOT(double)

/*
 * ||op(A)^T G||^2 = <A A^T, G G^T>_F with op(A) [m, k] (`a` stored [k, m]
 * when ta) and G [m, n]: the two m x m Gram matrices come from the kernel
 * (in the tape's dtype, like the product they stand for) into a scratch
 * buffer the tape keeps until reset, and their Frobenius product is summed
 * in double. -1 when the scratch cannot be had (the tape is then in error).
 */
static double gram_sq(ad_tape *t, ad_dtype dt, const void *a, int ta, const void *g, size_t m, size_t k,
                      size_t n)
{
    size_t es = ad__dtype_size(dt), bytes = 2 * m * m * es;
    if (bytes > t->gram.bytes) { /* grows to the largest step's size once per tape */
        t->gram.buf = ad__alloc(t, bytes);
        t->gram.bytes = t->gram.buf ? bytes : 0;
        if (!t->gram.buf) return -1;
    }
    char *ga = t->gram.buf, *gg = ga + m * m * es;
    ad__product aa = {dt == AD_F64, ta, !ta, m, m, k, a, a, ga, 0, NULL, NULL}; /* op(A) op(A)^T */
    ad__product ggt = {dt == AD_F64, 0, 1, m, m, n, g, g, gg, 0, NULL, NULL};   /* G G^T */
    ad__gemm(&aa);
    ad__gemm(&ggt);
    return dt == AD_F32 ? dot_float((const float *)(const void *)ga, (const float *)(const void *)gg, m * m)
                        : dot_double((const double *)(const void *)ga, (const double *)(const void *)gg, m * m);
}

double ad__sum_squares(ad_dtype dtype, const void *data, size_t n)
{
    return dtype == AD_F32 ? dot_float(data, data, n) : dot_double(data, data, n);
}

void *ad__copy_grad(ad_tape *t, ad_tensor *x)
{
    if (ad__tape_copy_grads(t) == AD_COPY_GRADS_NONE) return x->param->grad.data;
    if (x->grad_pass == ad__tape_pass(t) && x->grad) return x->grad;
    return ad__grad_new(t, x);
}

void *ad__weight_grad(ad_tape *t, ad_tensor *b, const void *a, int ta, const void *g, size_t m, size_t k,
                      size_t n, int *direct)
{
    *direct = 0;
    if (ad__tape_copy_grads(t) == AD_COPY_GRADS_NONE || (b->uses == 1 && b->grad_pass != ad__tape_pass(t) && gram_pays(m, k, n))) {
        if (ad__tape_copy_grads(t) == AD_COPY_GRADS_NORMS) {
            b->grad_sq = gram_sq(t, b->dtype, a, ta, g, m, k, n);
            if (b->grad_sq < 0) return NULL;
            b->grad = NULL; /* recorded, with no buffer */
            b->grad_pass = ad__tape_pass(t);
        }
        *direct = 1;
        return b->param->grad.data;
    }
    return ad__copy_grad(t, b);
}

/* g += gc, returning ||gc||^2 as dot_T sums it: under 16 elements in one
 * pass (dot_T's short loop), else a pass that vectorises and dot_T's
 * sixteen fixed lanes (one pass with running sums was bound by the latency
 * of their additions). */
#define DEFINE_ADD_TO(T)                                                        \
    static double add_to_##T(T *restrict g, const T *restrict gc, size_t len)   \
    {                                                                           \
        if (len < 16) {                                                         \
            double s = 0;                                                       \
            for (size_t i = 0; i < len; i++) {                                  \
                g[i] += gc[i];                                                  \
                s += (double)gc[i] * (double)gc[i];                             \
            }                                                                   \
            return s + 0.0;                                                     \
        }                                                                       \
        for (size_t i = 0; i < len; i++) g[i] += gc[i];                         \
        return dot_##T(gc, gc, len);                                            \
    }
DEFINE_ADD_TO(float)
DEFINE_ADD_TO(double)

/* The copy's norm is summed in the order KEEP's norms are (ad__sum_squares). */
void ad__copy_add(ad_tape *t, ad_tensor *copy)
{
    if (ad__tape_copy_grads(t) != AD_COPY_GRADS_NORMS || !copy->grad) return;
    /* products stacked into this buffer are computed before it is read */
    if (ad__stack_pending(t)) ad__stack_flush(t);
    size_t len = copy->numel;
    copy->grad_sq = copy->dtype == AD_F32 ? add_to_float(copy->param->grad.data, copy->grad, len)
                                          : add_to_double(copy->param->grad.data, copy->grad, len);
    ad__give_back_grad(t, copy); /* no op reads it again: every consumer came later on the tape */
}

int ad__grad_dropped(const ad_tensor *x, const char *fn)
{
    ad_tape *t = x ? x->tape : NULL;
    if (!t) return 0;
    char sh[AD__SHAPE_BUF];
    if (x->in_region) {
        ad_tape_fail(t, AD_ERR_STATE,
                     "%s: this copy of '%s' was used inside a checkpointed region (ad_checkpoint), "
                     "whose gradients are recomputed and not kept; ad_tensor_grad_norm reads the copy's norm",
                     fn, x->param->name);
        return 1;
    }
    if (x->param && ad__tape_copy_grads(t) != AD_COPY_GRADS_KEEP) {
        ad_tape_fail(t, AD_ERR_STATE, "%s: copy gradients are not kept on this tape (copy_grads = %s)%s", fn,
                 ad_copy_grads_name(ad__tape_copy_grads(t)),
                 ad__tape_copy_grads(t) == AD_COPY_GRADS_NORMS ? "; ad_tensor_grad_norm reads the copy's norm" : "");
        return 1;
    }
    if (!x->grad && x->grad_pass == ad__tape_pass(t)) {
        ad_tape_fail(t, AD_ERR_STATE,
                 "%s: the gradient of %s %s was released during backward (release_grads = 1); "
                 "ad_tensor_grad_norm reads its norm",
                 fn, ad__ops[x->node->op].name, ad__shape_str(x->shape, sh));
        return 1;
    }
    return 0;
}

ad_status ad_tensor_grad_norm(const ad_tensor *x, double *norm, ad_error *err)
{
    if (!x || !norm) return ad_error_set(err, AD_ERR_NULL, "tensor_grad_norm: %s is NULL", !x ? "tensor" : "norm");
    const ad_tape *t = x->tape;
    *norm = 0;
    if (t && x->param && ad__tape_copy_grads(t) == AD_COPY_GRADS_NONE)
        return ad_error_set(err, AD_ERR_STATE,
                             "tensor_grad_norm: this tape records nothing per copy (copy_grads = none); "
                             "use copy_grads = norms or keep");
    if (ad__has_grad(x)) *norm = sqrt(ad__sum_squares(x->dtype, x->grad, x->numel));
    else if (t && x->grad_pass == ad__tape_pass(t)) *norm = sqrt(x->grad_sq); /* recorded by the mode that dropped it */
    return ad_error_set(err, AD_OK, NULL);
}
