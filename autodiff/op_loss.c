/*
 * op_loss.c - losses: cross-entropy on logits with integer targets, binary
 * cross-entropy (on logits and on probabilities) and mean squared error.
 *
 * Each computes per-element (or per-row) terms l_i and reduces them: SUM
 * gives sum_i l_i, MEAN divides by the number of counted terms, NONE keeps
 * them. Backward scales the per-term gradient by the upstream gradient (and
 * 1/count for MEAN).
 */
#include <inttypes.h>
#include <math.h>
#include <string.h>

#include "internal.h"
#include "split.h"
#include "kernels.h"

static ad_status check_reduction(ad_tape *t, const ad_node *n)
{
    int r = n->a.reduction;
    if (r != AD_REDUCE_MEAN && r != AD_REDUCE_SUM && r != AD_REDUCE_NONE)
        return ad_tape_fail(t, AD_ERR_ARG, "%s: unknown reduction %d", ad__ops[n->op].name, r);
    return AD_OK;
}

/* The upstream gradient of term i: g[i] for NONE, g[0] * scale otherwise. */
static double upstream(const ad_node *n, size_t i, double scale)
{
    int none = n->a.reduction == AD_REDUCE_NONE;
    size_t j = none ? i : 0;
    double g = n->out->dtype == AD_F32 ? ((const float *)n->out->grad)[j]
                                       : ((const double *)n->out->grad)[j];
    return none ? g : g * scale;
}

static double load(ad_dtype d, const void *p, size_t i)
{
    return d == AD_F32 ? (double)((const float *)p)[i] : ((const double *)p)[i];
}

static void store(ad_dtype d, void *p, size_t i, double v)
{
    if (d == AD_F32) ((float *)p)[i] = (float)v;
    else ((double *)p)[i] = v;
}

static void add_at(ad_dtype d, void *p, size_t i, double v)
{
    if (d == AD_F32) ((float *)p)[i] += (float)v;
    else ((double *)p)[i] += v;
}

/* ---- cross-entropy ------------------------------------------------------------------ */

ad_status ad__shape_cross_entropy(ad_tape *t, ad_node *n, ad_shape *out)
{
    ad_shape in = n->in[0]->shape;
    char s[AD__SHAPE_BUF];
    if (check_reduction(t, n) != AD_OK) return ad_tape_status(t);
    if (in.rank != 2)
        return ad_tape_fail(t, AD_ERR_RANK, "cross_entropy: logits must be [N, C], got %s",
                        ad__shape_str(in, s));
    if (!n->a.idx) return ad_tape_fail(t, AD_ERR_NULL, "cross_entropy: targets are NULL");
    if (n->a.n_idx != in.dim[0])
        return ad_tape_fail(t, AD_ERR_SHAPE, "cross_entropy: %" PRId64 " targets for logits %s",
                        n->a.n_idx, ad__shape_str(in, s));
    if (in.dim[0] == 0 || in.dim[1] == 0)
        return ad_tape_fail(t, AD_ERR_EMPTY, "cross_entropy: logits %s are empty",
                        ad__shape_str(in, s));
    int64_t counted = 0;
    for (int64_t i = 0; i < n->a.n_idx; i++) {
        int64_t c = n->a.idx[i];
        if (c == n->a.ignore_index) continue;
        if (c < 0 || c >= in.dim[1])
            return ad_tape_fail(t, AD_ERR_ARG, "cross_entropy: target %" PRId64 " of row %" PRId64
                            " is outside the %" PRId64 " classes", c, i, in.dim[1]);
        counted++;
    }
    if (counted == 0 && n->a.reduction == AD_REDUCE_MEAN)
        return ad_tape_fail(t, AD_ERR_EMPTY, "cross_entropy: every target is ignore_index %" PRId64
                        ", the mean is undefined", n->a.ignore_index);
    n->a.len = counted; /* MEAN divides by the counted rows */
    *out = n->a.reduction == AD_REDUCE_NONE ? ad_shape1(in.dim[0]) : ad_shape0();
    return AD_OK;
}

/*
 * Per row: m = max x, e_k = e^(x_k - m) (the vectorised kernel), s = sum e,
 * lse = m + log s, l = lse - x_c. saved keeps softmax(x) per row (p = e / s);
 * backward gives dx = g (p - onehot(c)).
 */
#define DEFINE_CE(T, EXP_NONPOS, LOG)                                                   \
    static double ce_fwd_##T(const T *x, T *p, const int64_t *tg, int64_t ig,          \
                             size_t rows, size_t cls, T *per_row)                      \
    {                                                                                  \
        double total = 0;                                                              \
        for (size_t r = 0; r < rows; r++) {                                            \
            const T *xr = x + r * cls;                                                 \
            T *pr = p + r * cls;                                                       \
            T m = xr[0], s = 0;                                                        \
            for (size_t k = 1; k < cls; k++) if (xr[k] > m) m = xr[k];                 \
            for (size_t k = 0; k < cls; k++) pr[k] = xr[k] - m;                        \
            EXP_NONPOS(cls, pr, pr);                                                   \
            for (size_t k = 0; k < cls; k++) s += pr[k];                               \
            T lse = m + LOG(s), inv = 1 / s;                                           \
            for (size_t k = 0; k < cls; k++) pr[k] *= inv;                             \
            T l = tg[r] == ig ? 0 : lse - xr[tg[r]];                                   \
            if (per_row) per_row[r] = l;                                               \
            total += l;                                                                \
        }                                                                              \
        return total;                                                                  \
    }

/* cppcheck takes s = 0 into LOG(s): s holds exp(0) = 1 from the row's maximum. */
// cppcheck-suppress invalidFunctionArg
DEFINE_CE(float, ad__exp_nonpos_f32, logf)
// cppcheck-suppress invalidFunctionArg
DEFINE_CE(double, ad__exp_nonpos_f64, log)

/*
 * Rows are independent: a large batch of them is cut into consecutive
 * ranges over the threads (split.h, the rule is AD__TUNE_ROWS_MIN_PER_THREAD
 * over the logits' elements). Split, forward writes each row's loss and the
 * total is summed over them in row order afterwards, the order of the one
 * loop, so the bits never depend on the thread count.
 */
typedef struct ce_job {
    const ad_node *n;
    void *per_row; /* forward: each row's loss, or NULL */
    void *gx;      /* backward */
    double scale;
} ce_job;

static void ce_fwd_range(void *ctx, size_t lo, size_t hi, int part)
{
    const ce_job *j = ctx;
    const ad_node *n = j->n;
    size_t cls = (size_t)n->in[0]->shape.dim[1];
    (void)part;
    if (n->out->dtype == AD_F32)
        (void)ce_fwd_float((const float *)n->in[0]->data + lo * cls, (float *)n->saved + lo * cls, n->a.idx + lo,
                           n->a.ignore_index, hi - lo, cls, (float *)j->per_row + lo);
    else
        (void)ce_fwd_double((const double *)n->in[0]->data + lo * cls, (double *)n->saved + lo * cls,
                            n->a.idx + lo, n->a.ignore_index, hi - lo, cls, (double *)j->per_row + lo);
}

static int ce_parts(const ad_node *n)
{
    return ad__split_parts((size_t)n->in[0]->shape.dim[0], n->in[0]->numel, AD__TUNE_ROWS_MIN_PER_THREAD);
}

ad_status ad__cross_entropy_fwd(ad_tape *t, ad_node *n)
{
    if (ad__keep_indices(t, n) != AD_OK) return ad_tape_status(t);
    size_t rows = (size_t)n->in[0]->shape.dim[0], cls = (size_t)n->in[0]->shape.dim[1];
    int none = n->a.reduction == AD_REDUCE_NONE, parts = ce_parts(n);
    ad_dtype d = n->out->dtype;
    n->saved = ad__saved_array(t, n, n->in[0]->numel, ad__dtype_size(d));
    if (!n->saved) return ad_tape_status(t);
    double total = 0;
    if (parts > 1) {
        ce_job j = {n, none ? n->out->data : ad__alloc_array(t, rows, ad__dtype_size(d)), NULL, 0};
        if (!j.per_row) return ad_tape_status(t);
        ad__split_run(rows, parts, 1, ce_fwd_range, &j);
        for (size_t r = 0; r < rows; r++) total += load(d, j.per_row, r);
    } else if (d == AD_F32) {
        total = ce_fwd_float(n->in[0]->data, n->saved, n->a.idx, n->a.ignore_index, rows, cls,
                             none ? n->out->data : NULL);
    } else {
        total = ce_fwd_double(n->in[0]->data, n->saved, n->a.idx, n->a.ignore_index, rows, cls,
                              none ? n->out->data : NULL);
    }
    if (!none) store(d, n->out->data, 0, n->a.reduction == AD_REDUCE_MEAN ? total / (double)n->a.len : total);
    return AD_OK;
}

/* dx = g (p - onehot(c)) per row, in double and rounded once into gx: the
 * class c's term is p_c - 1, every other p_k - 0 = p_k. */
#define DEFINE_CE_BWD(T)                                                                        static void ce_bwd_##T(const ce_job *j, size_t lo, size_t hi)                               {                                                                                               const ad_node *n = j->n;                                                                    size_t cls = (size_t)n->in[0]->shape.dim[1];                                                const T *p = n->saved;                                                                      T *gx = j->gx;                                                                              for (size_t r = lo; r < hi; r++) {                                                              int64_t c = n->a.idx[r];                                                                    if (c == n->a.ignore_index) continue;                                                       double g = upstream(n, r, j->scale);                                                        T *gr = gx + r * cls, old = gr[c];                                                          const T *pr = p + r * cls;                                                                  for (size_t k = 0; k < cls; k++) gr[k] += (T)(g * (double)pr[k]);                           gr[c] = old + (T)(g * ((double)pr[c] - 1.0));                                           }                                                                                       }
DEFINE_CE_BWD(float)
DEFINE_CE_BWD(double)

static void ce_bwd_range(void *ctx, size_t lo, size_t hi, int part)
{
    const ce_job *j = ctx;
    (void)part;
    if (j->n->out->dtype == AD_F32) ce_bwd_float(j, lo, hi);
    else ce_bwd_double(j, lo, hi);
}

void ad__cross_entropy_bwd(ad_tape *t, ad_node *n)
{
    void *gx = ad__grad(t, n->in[0]);
    if (!gx) return;
    ce_job j = {n, NULL, gx, n->a.reduction == AD_REDUCE_MEAN ? 1.0 / (double)n->a.len : 1.0};
    ad__split_run((size_t)n->in[0]->shape.dim[0], ce_parts(n), 1, ce_bwd_range, &j);
}

/* Writes the reduced tangent of a loss from its per-term tangents dl[0..count). */
static void store_reduced(const ad_node *n, void *dst, const double *dl, size_t count, double mean_of)
{
    ad_dtype d = n->out->dtype;
    if (n->a.reduction == AD_REDUCE_NONE) {
        for (size_t i = 0; i < count; i++) store(d, dst, i, dl[i]);
        return;
    }
    double total = 0;
    for (size_t i = 0; i < count; i++) total += dl[i];
    store(d, dst, 0, n->a.reduction == AD_REDUCE_MEAN ? total / mean_of : total);
}

/* Forward mode: dl_r = sum_k p_k dx_k - dx_c (0 for an ignored row), reduced. */
ad_status ad__cross_entropy_jvp(ad_tape *t, ad_node *n)
{
    size_t rows = (size_t)n->in[0]->shape.dim[0], cls = (size_t)n->in[0]->shape.dim[1];
    size_t es = ad__dtype_size(n->out->dtype), nx = n->in[0]->numel, ny = n->out->numel;
    if (!n->saved && nx) return ad__jvp_need_saved(t, n);
    const char *dx = ad__tan(t, n->in[0]);
    char *dy = ad__tan_new(t, n);
    double *dl = dy ? ad__alloc_array(t, rows ? rows : 1, sizeof *dl) : NULL;
    if (!dl) return ad_tape_status(t);
    ad_dtype d = n->out->dtype;
    for (size_t k = 0; k < (size_t)ad__tan_k(t); k++) {
        const void *xk = dx + k * nx * es;
        for (size_t r = 0; r < rows; r++) {
            int64_t c = n->a.idx[r];
            dl[r] = 0;
            if (c == n->a.ignore_index) continue;
            for (size_t j = 0; j < cls; j++) dl[r] += load(d, n->saved, r * cls + j) * load(d, xk, r * cls + j);
            dl[r] -= load(d, xk, r * cls + (size_t)c);
        }
        store_reduced(n, dy + k * ny * es, dl, rows, (double)n->a.len);
    }
    return AD_OK;
}

ad_tensor *ad_cross_entropy(ad_tape *t, ad_tensor *logits, const int64_t *targets, int64_t n,
                            int64_t ignore_index, ad_reduction reduction)
{
    ad__args args = {0};
    args.idx = targets;
    args.n_idx = n;
    args.ignore_index = ignore_index;
    args.reduction = (int)reduction;
    return ad__record(t, AD_OP_CROSS_ENTROPY, &logits, 1, &args);
}

/* ---- elementwise losses: bce_with_logits, bce, mse --------------------------------------- */

ad_status ad__shape_pair_loss(ad_tape *t, ad_node *n, ad_shape *out)
{
    ad_shape a = n->in[0]->shape, b = n->in[1]->shape;
    char sa[AD__SHAPE_BUF], sb[AD__SHAPE_BUF];
    const char *name = ad__ops[n->op].name;
    if (check_reduction(t, n) != AD_OK) return ad_tape_status(t);
    if (!ad_shape_equal(a, b))
        return ad_tape_fail(t, AD_ERR_SHAPE, "%s: input %s and target %s differ", name,
                        ad__shape_str(a, sa), ad__shape_str(b, sb));
    if (n->in[0]->numel == 0 && n->a.reduction == AD_REDUCE_MEAN)
        return ad_tape_fail(t, AD_ERR_EMPTY, "%s: the mean of %s (no elements) is undefined", name,
                        ad__shape_str(a, sa));
    if (n->op != AD_OP_MSE && n->in[1]->requires_grad)
        return ad_tape_fail(t, AD_ERR_ARG, "%s: targets must be constants (no gradient)", name);
    *out = n->a.reduction == AD_REDUCE_NONE ? a : ad_shape0();
    return AD_OK;
}

/* The loss term and its derivatives with respect to x (and y, for mse);
 * with `loss` 0 (backward) the logarithms of l are skipped and l is 0. */
typedef struct term {
    double l, dx, dy;
} term;

/* e = exp(-|x|) serves both branches of the stable sigmoid (exp(-x) for
 * x >= 0, exp(x) below) and the log1p term: one exp per element. */
static term bce_logits_term(double x, double y, int loss)
{
    double e = exp(-fabs(x));
    double s = x >= 0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
    term r = {loss ? fmax(x, 0.0) - x * y + log1p(e) : 0.0, s - y, 0.0};
    return r;
}

/* PyTorch clamps each log at -100 and bounds the backward denominator by 1e-12. */
static term bce_term(double p, double y, int loss)
{
    double l = 0.0;
    if (loss) {
        double lp = fmax(log(p), -100.0), l1p = fmax(log1p(-p), -100.0);
        l = -(y * lp + (1.0 - y) * l1p);
    }
    term r = {l, (p - y) / fmax((1.0 - p) * p, 1e-12), 0.0};
    return r;
}

static term mse_term(double x, double y)
{
    term r = {(x - y) * (x - y), 2.0 * (x - y), -2.0 * (x - y)};
    return r;
}

static term pair_term(ad__op op, double x, double y, int loss)
{
    switch (op) {
    case AD_OP_BCE_WITH_LOGITS: return bce_logits_term(x, y, loss);
    case AD_OP_BCE: return bce_term(x, y, loss);
    default: return mse_term(x, y);
    }
}

static ad_status pair_fwd(ad_tape *t, ad_node *n)
{
    (void)t;
    ad_dtype d = n->out->dtype;
    size_t count = n->in[0]->numel;
    double total = 0;
    for (size_t i = 0; i < count; i++) {
        term r = pair_term(n->op, load(d, n->in[0]->data, i), load(d, n->in[1]->data, i), 1);
        if (n->a.reduction == AD_REDUCE_NONE) store(d, n->out->data, i, r.l);
        total += r.l;
    }
    if (n->a.reduction == AD_REDUCE_MEAN) total /= (double)count;
    if (n->a.reduction != AD_REDUCE_NONE) store(d, n->out->data, 0, total);
    return AD_OK;
}

static void pair_bwd(ad_tape *t, ad_node *n)
{
    void *gx = ad__grad(t, n->in[0]);
    void *gy = n->op == AD_OP_MSE ? ad__grad(t, n->in[1]) : NULL;
    if (!gx && !gy) return;
    ad_dtype d = n->out->dtype;
    size_t count = n->in[0]->numel;
    double scale = n->a.reduction == AD_REDUCE_MEAN ? 1.0 / (double)count : 1.0;
    for (size_t i = 0; i < count; i++) {
        term r = pair_term(n->op, load(d, n->in[0]->data, i), load(d, n->in[1]->data, i), 0);
        double g = upstream(n, i, scale);
        if (gx) add_at(d, gx, i, g * r.dx);
        if (gy) add_at(d, gy, i, g * r.dy);
    }
}

/*
 * Forward mode of the pair losses, with dx, dy the tangents of input and
 * target (either may be zero), from each loss's own formula:
 *   bce_with_logits: dl = (sigmoid(x) - y) dx - x dy
 *   bce:             dl = (p - y) / (p (1 - p)) dp - (log p - log(1 - p)) dy,
 *                    the denominator bounded by 1e-12 and each log clamped at
 *                    -100 as in the loss itself
 *   mse:             dl = 2 (x - y) (dx - dy)
 */
static double pair_dot(ad__op op, double x, double y, double dx, double dy)
{
    switch (op) {
    case AD_OP_BCE_WITH_LOGITS: {
        double s = x >= 0 ? 1.0 / (1.0 + exp(-x)) : exp(x) / (1.0 + exp(x));
        return (s - y) * dx - x * dy;
    }
    case AD_OP_BCE:
        return (x - y) / fmax(x * (1.0 - x), 1e-12) * dx - (fmax(log(x), -100.0) - fmax(log1p(-x), -100.0)) * dy;
    default: return 2.0 * (x - y) * (dx - dy);
    }
}

static ad_status pair_jvp(ad_tape *t, ad_node *n)
{
    ad_dtype d = n->out->dtype;
    size_t count = n->in[0]->numel, es = ad__dtype_size(d), ny = n->out->numel;
    const char *tx = ad__tan(t, n->in[0]), *ty = ad__tan(t, n->in[1]);
    char *dst = ad__tan_new(t, n);
    double *dl = dst ? ad__alloc_array(t, count ? count : 1, sizeof *dl) : NULL;
    if (!dl) return ad_tape_status(t);
    for (size_t k = 0; k < (size_t)ad__tan_k(t); k++) {
        for (size_t i = 0; i < count; i++)
            dl[i] = pair_dot(n->op, load(d, n->in[0]->data, i), load(d, n->in[1]->data, i),
                             tx ? load(d, tx + k * count * es, i) : 0.0, ty ? load(d, ty + k * count * es, i) : 0.0);
        store_reduced(n, dst + k * ny * es, dl, count, (double)count);
    }
    return AD_OK;
}
ad_status ad__bce_with_logits_jvp(ad_tape *t, ad_node *n) { return pair_jvp(t, n); }
ad_status ad__bce_jvp(ad_tape *t, ad_node *n) { return pair_jvp(t, n); }
ad_status ad__mse_jvp(ad_tape *t, ad_node *n) { return pair_jvp(t, n); }

ad_status ad__bce_with_logits_fwd(ad_tape *t, ad_node *n) { return pair_fwd(t, n); }
void ad__bce_with_logits_bwd(ad_tape *t, ad_node *n) { pair_bwd(t, n); }
ad_status ad__bce_fwd(ad_tape *t, ad_node *n) { return pair_fwd(t, n); }
void ad__bce_bwd(ad_tape *t, ad_node *n) { pair_bwd(t, n); }
ad_status ad__mse_fwd(ad_tape *t, ad_node *n) { return pair_fwd(t, n); }
void ad__mse_bwd(ad_tape *t, ad_node *n) { pair_bwd(t, n); }

static ad_tensor *pair_loss(ad_tape *t, ad__op op, ad_tensor *x, ad_tensor *y, ad_reduction r)
{
    ad_tensor *in[2] = {x, y};
    ad__args args = {0};
    args.reduction = (int)r;
    return ad__record(t, op, in, 2, &args);
}

ad_tensor *ad_bce_with_logits(ad_tape *t, ad_tensor *logits, ad_tensor *targets,
                              ad_reduction reduction)
{
    return pair_loss(t, AD_OP_BCE_WITH_LOGITS, logits, targets, reduction);
}

ad_tensor *ad_bce(ad_tape *t, ad_tensor *probs, ad_tensor *targets, ad_reduction reduction)
{
    return pair_loss(t, AD_OP_BCE, probs, targets, reduction);
}

ad_tensor *ad_mse(ad_tape *t, ad_tensor *pred, ad_tensor *target, ad_reduction reduction)
{
    return pair_loss(t, AD_OP_MSE, pred, target, reduction);
}
