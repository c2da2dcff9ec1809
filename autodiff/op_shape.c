/*
 * op_shape.c - ops that move elements without arithmetic: reshape, permute
 * (transpose), concat, slice (split), row gather; plus where and dropout,
 * which select elements.
 *
 * Backward of each is the same movement in reverse, adding into the input
 * gradient (a row gathered twice receives both rows' gradients).
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "split.h"

/* ---- reshape ---------------------------------------------------------------------- */

ad_status ad__shape_reshape(ad_tape *t, ad_node *n, ad_shape *out)
{
    ad_shape in = n->in[0]->shape, want = n->a.shape;
    char si[AD__SHAPE_BUF], sw[AD__SHAPE_BUF];
    if (want.rank < 0 || want.rank > AD_MAX_RANK)
        return ad_tape_fail(t, AD_ERR_RANK, "reshape: rank %d is outside 0..%d", want.rank,
                        AD_MAX_RANK);
    int infer = -1;
    size_t known = 1;
    for (int i = 0; i < want.rank; i++) {
        if (want.dim[i] == -1 && infer < 0) {
            infer = i;
            continue;
        }
        if (want.dim[i] < 0 || !ad__mul_size(known, (size_t)want.dim[i], &known))
            return ad_tape_fail(t, AD_ERR_ARG, "reshape: %s to %s: bad size %" PRId64,
                            ad__shape_str(in, si), ad__shape_str(want, sw), want.dim[i]);
    }
    size_t numel = n->in[0]->numel;
    if (infer >= 0) {
        if (known == 0 || numel % known != 0)
            return ad_tape_fail(t, AD_ERR_SHAPE, "reshape: %s to %s: cannot infer the -1 size",
                            ad__shape_str(in, si), ad__shape_str(want, sw));
        want.dim[infer] = (int64_t)(numel / known);
        known = numel;
    }
    if (known != numel)
        return ad_tape_fail(t, AD_ERR_SHAPE, "reshape: %s to %s: %zu elements cannot become %zu",
                        ad__shape_str(in, si), ad__shape_str(want, sw), numel, known);
    for (int i = want.rank; i < AD_MAX_RANK; i++) want.dim[i] = 0;
    n->a.shape = want;
    n->a.view = 1; /* the elements stay where they are: share them instead of copying */
    *out = want;
    return AD_OK;
}

ad_status ad__reshape_fwd(ad_tape *t, ad_node *n)
{
    (void)t;
    n->out->view_of = n->in[0]->view_of ? n->in[0]->view_of : n->in[0];
    n->out->data = n->in[0]->data;
    return AD_OK;
}

/* Runs this short take a loop of known short length, which the compiler
 * unrolls: the vectorised loop's set-up and run-time checks cost more than
 * the additions (a recurrent net's rows of 3 hidden units). The sums are the
 * same either way. */
#define SHORT_RUN 8

#define DEFINE_ADD_INTO(T)                                              \
    static void add_into_##T(T *y, const T *x, size_t n)               \
    {                                                                   \
        if (n <= SHORT_RUN) {                                           \
            for (size_t i = 0; i < n; i++) y[i] += x[i];                \
            return;                                                     \
        }                                                               \
        for (size_t i = 0; i < n; i++) y[i] += x[i];                    \
    }
DEFINE_ADD_INTO(float)
DEFINE_ADD_INTO(double)

/* Adds src into dst over n elements of the given dtype. */
static void add_into(ad_dtype d, void *dst, const void *src, size_t n)
{
    if (d == AD_F32) add_into_float(dst, src, n);
    else add_into_double(dst, src, n);
}

/*
 * The copies of the shape ops: `rows` runs of `run` elements, run o read
 * from src + (idx ? idx[o] : o) * ss and copied (add = 0) or added (add = 1,
 * backward) to dst + o * ds, strides in elements. A large move is cut into
 * consecutive ranges of elements over the threads (split.h, the rule is
 * AD__TUNE_COPY_MIN_PER_THREAD); each element is copied or added alone, so
 * the bits never depend on the split.
 */
typedef struct runs {
    ad_dtype dtype;
    int add;
    char *dst;
    const char *src;
    size_t ds, ss, run, rows;
    const int64_t *idx;
} runs;

static void runs_range(void *ctx, size_t lo, size_t hi, int part)
{
    const runs *r = ctx;
    size_t es = ad__dtype_size(r->dtype), o = lo ? lo / r->run : 0, j = lo ? lo % r->run : 0;
    (void)part;
    for (size_t k = lo; k < hi; o++, j = 0) {
        size_t w = r->run - j < hi - k ? r->run - j : hi - k, from = r->idx ? (size_t)r->idx[o] : o;
        char *d = r->dst + (o * r->ds + j) * es;
        const char *src = r->src + (from * r->ss + j) * es;
        if (r->add) add_into(r->dtype, d, src, w);
        else memcpy(d, src, w * es);
        k += w;
    }
}

static inline void move_runs(const runs *r)
{
    size_t n = r->rows * r->run, es = ad__dtype_size(r->dtype);
    int parts = ad__split_parts(n, n * es, AD__TUNE_COPY_MIN_PER_THREAD);
    if (parts > 1) {
        ad__split_run(n, parts, AD__TUNE_FLAT_ALIGN, runs_range, (void *)r);
        return;
    }
    for (size_t o = 0; o < r->rows; o++) { /* the tiny nets' short runs: no range arithmetic */
        char *d = r->dst + o * r->ds * es;
        const char *src = r->src + (r->idx ? (size_t)r->idx[o] : o) * r->ss * es;
        if (r->add) add_into(r->dtype, d, src, r->run);
        else memcpy(d, src, r->run * es);
    }
}

/* One contiguous block of n elements added into dst. */
static void add_block(ad_dtype d, void *dst, const void *src, size_t n)
{
    runs r = {d, 1, dst, src, n, n, n, 1, NULL};
    move_runs(&r);
}

void ad__reshape_bwd(ad_tape *t, ad_node *n)
{
    void *gx = ad__grad(t, n->in[0]);
    if (gx) add_block(n->out->dtype, gx, n->out->grad, n->out->numel);
}

ad_tensor *ad_reshape(ad_tape *t, ad_tensor *x, ad_shape shape)
{
    ad__args args = {0};
    args.shape = shape;
    return ad__record(t, AD_OP_RESHAPE, &x, 1, &args);
}

/* ---- permute -------------------------------------------------------------------------- */

ad_status ad__shape_permute(ad_tape *t, ad_node *n, ad_shape *out)
{
    ad_shape in = n->in[0]->shape;
    int seen[AD_MAX_RANK] = {0};
    char s[AD__SHAPE_BUF];
    for (int i = 0; i < in.rank; i++) {
        int p = n->a.perm[i];
        if (p < 0 || p >= in.rank || seen[p])
            return ad_tape_fail(t, AD_ERR_ARG, "permute: %s: the axis order is not a permutation of 0..%d",
                            ad__shape_str(in, s), in.rank - 1);
        seen[p] = 1;
    }
    ad_shape o = in;
    for (int i = 0; i < in.rank; i++) o.dim[i] = in.dim[n->a.perm[i]];
    *out = o;
    return AD_OK;
}

/*
 * Output strides expressed in input elements: walking the output in order,
 * axis i of the output steps the input by in_stride[perm[i]]. Padded to four
 * axes (size 1) so one loop nest serves every rank.
 */
typedef struct walk4 {
    int64_t dim[AD_MAX_RANK];
    int64_t step[AD_MAX_RANK];
} walk4;

static walk4 permute_walk(ad_shape in, const int *perm)
{
    int64_t stride[AD_MAX_RANK];
    int64_t acc = 1;
    for (int i = in.rank - 1; i >= 0; i--) {
        stride[i] = acc;
        acc *= in.dim[i];
    }
    walk4 w;
    int off = AD_MAX_RANK - in.rank;
    for (int i = 0; i < AD_MAX_RANK; i++) {
        w.dim[i] = 1;
        w.step[i] = 0;
    }
    for (int i = 0; i < in.rank; i++) {
        w.dim[off + i] = in.dim[perm[i]];
        /* perm is a permutation of 0..rank-1 (checked by the shape rule), so
         * every stride it reads was set above; cppcheck cannot see that. */
        // cppcheck-suppress uninitvar
        w.step[off + i] = stride[perm[i]];
    }
    return w;
}

/* BODY sees o (flat output index) and s (flat input index). */
#define FOR_WALK(w, BODY)                                                          \
    do {                                                                           \
        size_t o = 0;                                                              \
        for (int64_t i0 = 0; i0 < (w).dim[0]; i0++)                                \
            for (int64_t i1 = 0; i1 < (w).dim[1]; i1++)                            \
                for (int64_t i2 = 0; i2 < (w).dim[2]; i2++)                        \
                    for (int64_t i3 = 0; i3 < (w).dim[3]; i3++, o++) {             \
                        int64_t s = i0 * (w).step[0] + i1 * (w).step[1] +          \
                                    i2 * (w).step[2] + i3 * (w).step[3];           \
                        BODY;                                                      \
                    }                                                              \
    } while (0)

ad_status ad__permute_fwd(ad_tape *t, ad_node *n)
{
    (void)t;
    walk4 w = permute_walk(n->in[0]->shape, n->a.perm);
    if (n->out->dtype == AD_F32) {
        const float *x = n->in[0]->data;
        float *y = n->out->data;
        FOR_WALK(w, y[o] = x[s]);
    } else {
        const double *x = n->in[0]->data;
        double *y = n->out->data;
        FOR_WALK(w, y[o] = x[s]);
    }
    return AD_OK;
}

void ad__permute_bwd(ad_tape *t, ad_node *n)
{
    void *gx = ad__grad(t, n->in[0]);
    if (!gx) return;
    walk4 w = permute_walk(n->in[0]->shape, n->a.perm);
    if (n->out->dtype == AD_F32) {
        const float *g = n->out->grad;
        float *gi = gx;
        FOR_WALK(w, gi[s] += g[o]);
    } else {
        const double *g = n->out->grad;
        double *gi = gx;
        FOR_WALK(w, gi[s] += g[o]);
    }
}

ad_tensor *ad_permute(ad_tape *t, ad_tensor *x, const int *perm)
{
    if (!t || !x) return ad__record(t, AD_OP_PERMUTE, &x, 1, NULL); /* reports the NULL */
    if (!perm) {
        ad_tape_fail(t, AD_ERR_NULL, "permute: perm is NULL");
        return NULL;
    }
    ad__args args = {0};
    for (int i = 0; i < x->shape.rank && i < AD_MAX_RANK; i++) args.perm[i] = perm[i];
    return ad__record(t, AD_OP_PERMUTE, &x, 1, &args);
}

ad_tensor *ad_transpose(ad_tape *t, ad_tensor *x, int a0, int a1)
{
    if (!t || ad_tape_status(t) != AD_OK) return NULL;
    if (!x) return ad__record(t, AD_OP_PERMUTE, &x, 1, NULL);
    int rank = x->shape.rank;
    int i0 = ad__axis(a0, rank), i1 = ad__axis(a1, rank);
    if (i0 < 0 || i1 < 0) {
        char s[AD__SHAPE_BUF];
        ad_tape_fail(t, AD_ERR_ARG, "transpose: axes %d and %d are out of range for %s", a0, a1,
                 ad__shape_str(x->shape, s));
        return NULL;
    }
    int perm[AD_MAX_RANK] = {0, 1, 2, 3};
    perm[i0] = i1;
    perm[i1] = i0;
    return ad_permute(t, x, perm);
}

/* ---- concat and slice: [outer, len, inner] blocks ----------------------------------------- */

static void outer_inner(ad_shape s, int axis, size_t *outer, size_t *inner)
{
    *outer = 1;
    *inner = 1;
    for (int i = 0; i < axis; i++) *outer *= (size_t)s.dim[i];
    for (int i = axis + 1; i < s.rank; i++) *inner *= (size_t)s.dim[i];
}

ad_status ad__shape_concat(ad_tape *t, ad_node *n, ad_shape *out)
{
    ad_shape first = n->in[0]->shape;
    char s0[AD__SHAPE_BUF], si[AD__SHAPE_BUF];
    int axis = ad__axis(n->a.axis, first.rank);
    if (axis < 0)
        return ad_tape_fail(t, AD_ERR_ARG, "concat: axis %d is out of range for %s", n->a.axis,
                        ad__shape_str(first, s0));
    ad_shape o = first;
    for (int k = 1; k < n->n_in; k++) {
        ad_shape s = n->in[k]->shape;
        int ok = s.rank == first.rank;
        for (int i = 0; ok && i < s.rank; i++) ok = i == axis || s.dim[i] == first.dim[i];
        if (!ok)
            return ad_tape_fail(t, AD_ERR_SHAPE, "concat: input %d %s does not match input 0 %s "
                            "outside axis %d", k, ad__shape_str(s, si), ad__shape_str(first, s0), axis);
        o.dim[axis] += s.dim[axis];
    }
    n->a.axis = axis;
    *out = o;
    return AD_OK;
}

/* The moves of a concat's inputs, in order (dst NULL: an input without a
 * gradient). */
static void pieces_range(void *ctx, size_t lo, size_t hi, int part)
{
    const runs *r = ctx;
    for (size_t k = lo; k < hi; k++)
        if (r[k].dst) runs_range((void *)&r[k], 0, r[k].rows * r[k].run, part);
}

typedef struct span {
    uintptr_t lo, hi;
} span;

static int span_cmp(const void *a, const void *b)
{
    uintptr_t x = ((const span *)a)->lo, y = ((const span *)b)->lo;
    return (x > y) - (x < y);
}

/* Whether the moves write disjoint bytes: backward's inputs may share a
 * gradient (concat(x, x), or two copies of one weight whose gradient goes
 * straight to the parameter), and those additions must not run at once. */
static int writes_disjoint(ad_tape *t, const runs *r, size_t count)
{
    span *sp = ad__alloc_array(t, count, sizeof *sp);
    if (!sp) return 0;
    size_t m = 0, es = ad__dtype_size(r[0].dtype);
    for (size_t k = 0; k < count; k++)
        if (r[k].dst && r[k].rows && r[k].run) {
            uintptr_t lo = (uintptr_t)r[k].dst;
            sp[m].lo = lo;
            sp[m++].hi = lo + ((r[k].rows - 1) * r[k].ds + r[k].run) * es;
        }
    qsort(sp, m, sizeof *sp, span_cmp);
    for (size_t k = 1; k < m; k++)
        if (sp[k].lo < sp[k - 1].hi) return 0;
    return 1;
}

/*
 * Forward copies each input into its columns of the output; backward adds
 * the output gradient's columns into each input's. Many small inputs (the
 * states of an unroll, joined along axis 0) are split over the threads by
 * input, a few large ones each by its elements.
 */
static ad_status concat_moves(ad_tape *t, ad_node *n, int bwd)
{
    size_t es = ad__dtype_size(n->out->dtype), outer, inner, off = 0;
    outer_inner(n->out->shape, n->a.axis, &outer, &inner);
    size_t row = (size_t)n->out->shape.dim[n->a.axis] * inner, count = (size_t)n->n_in;
    int parts = ad__split_parts(count, n->out->numel * es, AD__TUNE_COPY_MIN_PER_THREAD);
    int by_input = parts > 1 && count >= (size_t)2 * (size_t)parts;
    runs *r = by_input ? ad__alloc_array(t, count, sizeof *r) : NULL;
    if (by_input && !r) return ad_tape_status(t);
    for (size_t k = 0; k < count; k++) {
        size_t piece = (size_t)n->in[k]->shape.dim[n->a.axis] * inner;
        runs rk = {n->out->dtype, bwd, NULL, NULL, bwd ? piece : row, bwd ? row : piece, piece, outer, NULL};
        if (bwd) rk.dst = ad__grad(t, n->in[k]), rk.src = (const char *)n->out->grad + off * es;
        else rk.dst = (char *)n->out->data + off * es, rk.src = n->in[k]->data;
        off += piece;
        if (r) r[k] = rk;
        else if (rk.dst) move_runs(&rk);
    }
    if (!r) return AD_OK;
    if (!bwd || writes_disjoint(t, r, count)) {
        ad__split_run(count, parts, 1, pieces_range, r);
        return AD_OK;
    }
    for (size_t k = 0; k < count; k++)
        if (r[k].dst) move_runs(&r[k]);
    return AD_OK;
}

ad_status ad__concat_fwd(ad_tape *t, ad_node *n) { return concat_moves(t, n, 0); }

void ad__concat_bwd(ad_tape *t, ad_node *n) { (void)concat_moves(t, n, 1); }

ad_tensor *ad_concat(ad_tape *t, ad_tensor *const *xs, int n, int axis)
{
    ad__args args = {0};
    args.axis = axis;
    return ad__record(t, AD_OP_CONCAT, xs, n, &args);
}

ad_status ad__shape_slice(ad_tape *t, ad_node *n, ad_shape *out)
{
    ad_shape in = n->in[0]->shape;
    char s[AD__SHAPE_BUF];
    int axis = ad__axis(n->a.axis, in.rank);
    if (axis < 0)
        return ad_tape_fail(t, AD_ERR_ARG, "slice: axis %d is out of range for %s", n->a.axis,
                        ad__shape_str(in, s));
    if (n->a.start < 0 || n->a.len < 0 || n->a.start > in.dim[axis] ||
        n->a.len > in.dim[axis] - n->a.start) {
        int64_t end;
        if (__builtin_add_overflow(n->a.start, n->a.len, &end)) /* no int64 end to print */
            return ad_tape_fail(t, AD_ERR_ARG, "slice: [%" PRId64 ", %" PRId64 " + %" PRId64 ") is outside axis %d of %s",
                            n->a.start, n->a.start, n->a.len, axis, ad__shape_str(in, s));
        return ad_tape_fail(t, AD_ERR_ARG, "slice: [%" PRId64 ", %" PRId64 ") is outside axis %d of %s",
                        n->a.start, end, axis, ad__shape_str(in, s));
    }
    n->a.axis = axis;
    *out = in;
    out->dim[axis] = n->a.len;
    size_t outer, inner;
    outer_inner(in, axis, &outer, &inner);
    n->a.view = outer == 1; /* one contiguous block: share it instead of copying */
    return AD_OK;
}

/* Elements per unit of the axis of a view slice (one block, outer == 1):
 * its numel over its length; 0 for an empty slice, which reads nothing. */
static size_t view_inner(const ad_node *n)
{
    return n->a.len ? n->out->numel / (size_t)n->a.len : 0;
}

ad_status ad__slice_fwd(ad_tape *t, ad_node *n)
{
    (void)t;
    size_t es = ad__dtype_size(n->out->dtype), outer, inner;
    if (n->a.view) {
        n->out->view_of = n->in[0]->view_of ? n->in[0]->view_of : n->in[0];
        n->out->data = (char *)n->in[0]->data + (size_t)n->a.start * view_inner(n) * es;
        return AD_OK;
    }
    outer_inner(n->in[0]->shape, n->a.axis, &outer, &inner);
    size_t row = (size_t)n->in[0]->shape.dim[n->a.axis] * inner;
    size_t piece = (size_t)n->a.len * inner, off = (size_t)n->a.start * inner;
    runs r = {n->out->dtype, 0, n->out->data, (const char *)n->in[0]->data + off * es, piece, row, piece, outer, NULL};
    move_runs(&r);
    return AD_OK;
}

void ad__slice_bwd(ad_tape *t, ad_node *n)
{
    char *gx = ad__grad(t, n->in[0]);
    if (!gx) return;
    size_t es = ad__dtype_size(n->out->dtype), outer, inner;
    if (n->a.view) { /* one block: its gradient adds into one run of gx */
        size_t off = (size_t)n->a.start * view_inner(n);
        add_block(n->out->dtype, gx + off * es, n->out->grad, n->out->numel);
        return;
    }
    outer_inner(n->in[0]->shape, n->a.axis, &outer, &inner);
    size_t row = (size_t)n->in[0]->shape.dim[n->a.axis] * inner;
    size_t piece = (size_t)n->a.len * inner, off = (size_t)n->a.start * inner;
    runs r = {n->out->dtype, 1, gx + off * es, n->out->grad, row, piece, piece, outer, NULL};
    move_runs(&r);
}

ad_tensor *ad_slice(ad_tape *t, ad_tensor *x, int axis, int64_t start, int64_t len)
{
    ad__args args = {0};
    args.axis = axis;
    args.start = start;
    args.len = len;
    return ad__record(t, AD_OP_SLICE, &x, 1, &args);
}

ad_status ad_split(ad_tape *t, ad_tensor *x, int axis, int n, const int64_t *sizes,
                   ad_tensor **out)
{
    if (!t) return AD_ERR_NULL;
    if (ad_tape_status(t) != AD_OK) return ad_tape_status(t);
    if (!x || !sizes || !out)
        return ad_tape_fail(t, AD_ERR_NULL, "split: %s is NULL", !x ? "x" : !sizes ? "sizes" : "out");
    if (n < 1) return ad_tape_fail(t, AD_ERR_EMPTY, "split: no pieces requested");
    int ax = ad__axis(axis, x->shape.rank);
    char s[AD__SHAPE_BUF];
    if (ax < 0)
        return ad_tape_fail(t, AD_ERR_ARG, "split: axis %d is out of range for %s", axis,
                        ad__shape_str(x->shape, s));
    int64_t total = 0;
    for (int i = 0; i < n; i++) {
        if (sizes[i] < 0 || sizes[i] > x->shape.dim[ax] - total)
            return ad_tape_fail(t, AD_ERR_SHAPE, "split: sizes exceed axis %d of %s", ax,
                            ad__shape_str(x->shape, s));
        total += sizes[i];
    }
    if (total != x->shape.dim[ax])
        return ad_tape_fail(t, AD_ERR_SHAPE, "split: sizes add up to %" PRId64 ", axis %d of %s has %" PRId64,
                        total, ax, ad__shape_str(x->shape, s), x->shape.dim[ax]);
    int64_t start = 0;
    for (int i = 0; i < n; i++) {
        out[i] = ad_slice(t, x, ax, start, sizes[i]);
        if (!out[i]) return ad_tape_status(t);
        start += sizes[i];
    }
    return AD_OK;
}

/* ---- gather_rows ------------------------------------------------------------------------- */

ad_status ad__shape_gather_rows(ad_tape *t, ad_node *n, ad_shape *out)
{
    ad_shape in = n->in[0]->shape;
    char s[AD__SHAPE_BUF];
    if (in.rank != 2)
        return ad_tape_fail(t, AD_ERR_RANK, "gather_rows: the table must be [V, D], got %s",
                        ad__shape_str(in, s));
    if (!n->a.idx) return ad_tape_fail(t, AD_ERR_NULL, "gather_rows: indices are NULL");
    if (n->a.n_idx < 1) return ad_tape_fail(t, AD_ERR_EMPTY, "gather_rows: no indices");
    for (int64_t i = 0; i < n->a.n_idx; i++)
        if (n->a.idx[i] < 0 || n->a.idx[i] >= in.dim[0])
            return ad_tape_fail(t, AD_ERR_ARG, "gather_rows: index %" PRId64 " at position %" PRId64
                            " is outside the %" PRId64 " rows of %s", n->a.idx[i], i, in.dim[0],
                            ad__shape_str(in, s));
    *out = ad_shape2(n->a.n_idx, in.dim[1]);
    return AD_OK;
}


ad_status ad__keep_indices(ad_tape *t, ad_node *n)
{
    int64_t *idx = ad__alloc_array(t, (size_t)n->a.n_idx, sizeof *idx);
    if (!idx) return ad_tape_status(t);
    memcpy(idx, n->a.idx, (size_t)n->a.n_idx * sizeof *idx);
    n->a.idx = idx;
    return AD_OK;
}

ad_status ad__gather_rows_fwd(ad_tape *t, ad_node *n)
{
    if (ad__keep_indices(t, n) != AD_OK) return ad_tape_status(t);
    size_t row = (size_t)n->out->shape.dim[1];
    runs r = {n->out->dtype, 0, n->out->data, n->in[0]->data, row, row, row, (size_t)n->a.n_idx, n->a.idx};
    move_runs(&r);
    return AD_OK;
}

void ad__gather_rows_bwd(ad_tape *t, ad_node *n)
{
    char *gx = ad__grad(t, n->in[0]);
    if (!gx) return;
    size_t d = (size_t)n->out->shape.dim[1], es = ad__dtype_size(n->out->dtype);
    const char *g = n->out->grad;
    for (int64_t i = 0; i < n->a.n_idx; i++)
        add_into(n->out->dtype, gx + (size_t)n->a.idx[i] * d * es, g + (size_t)i * d * es, d);
}

ad_tensor *ad_gather_rows(ad_tape *t, ad_tensor *table, const int64_t *idx, int64_t n)
{
    ad__args args = {0};
    args.idx = idx;
    args.n_idx = n;
    return ad__record(t, AD_OP_GATHER_ROWS, &table, 1, &args);
}

/* ---- where ------------------------------------------------------------------------------- */

/* cond broadcasts to a's shape: cond's strides over a's four padded axes. */
static walk4 cond_walk(ad_shape cond, ad_shape out)
{
    walk4 w;
    int oc = AD_MAX_RANK - cond.rank, oo = AD_MAX_RANK - out.rank;
    int64_t acc = 1;
    for (int i = AD_MAX_RANK - 1; i >= 0; i--) {
        int64_t dc = i < oc ? 1 : cond.dim[i - oc];
        w.dim[i] = i < oo ? 1 : out.dim[i - oo];
        w.step[i] = dc == 1 ? 0 : acc;
        acc *= dc;
    }
    return w;
}

ad_status ad__shape_where(ad_tape *t, ad_node *n, ad_shape *out)
{
    ad_shape c = n->in[0]->shape, a = n->in[1]->shape, b = n->in[2]->shape;
    char sc[AD__SHAPE_BUF], sa[AD__SHAPE_BUF], sb[AD__SHAPE_BUF];
    if (!ad_shape_equal(a, b))
        return ad_tape_fail(t, AD_ERR_SHAPE, "where: a %s and b %s differ", ad__shape_str(a, sa),
                        ad__shape_str(b, sb));
    int ok = c.rank <= a.rank;
    for (int i = 0; ok && i < c.rank; i++) {
        int64_t dc = c.dim[c.rank - 1 - i], da = a.dim[a.rank - 1 - i];
        ok = dc == 1 || dc == da;
    }
    if (!ok)
        return ad_tape_fail(t, AD_ERR_SHAPE, "where: cond %s does not broadcast to %s",
                        ad__shape_str(c, sc), ad__shape_str(a, sa));
    if (n->in[0]->requires_grad)
        return ad_tape_fail(t, AD_ERR_ARG, "where: cond must be a constant (no gradient)");
    *out = a;
    return AD_OK;
}

#define WHERE_LOOP(T, BODY)                                      \
    do {                                                         \
        const T *c = n->in[0]->data;                             \
        walk4 w = cond_walk(n->in[0]->shape, n->out->shape);     \
        FOR_WALK(w, BODY);                                       \
    } while (0)

ad_status ad__where_fwd(ad_tape *t, ad_node *n)
{
    (void)t;
    if (n->out->dtype == AD_F32) {
        const float *a = n->in[1]->data, *b = n->in[2]->data;
        float *y = n->out->data;
        WHERE_LOOP(float, y[o] = c[s] != 0 ? a[o] : b[o]);
    } else {
        const double *a = n->in[1]->data, *b = n->in[2]->data;
        double *y = n->out->data;
        WHERE_LOOP(double, y[o] = c[s] != 0 ? a[o] : b[o]);
    }
    return AD_OK;
}

void ad__where_bwd(ad_tape *t, ad_node *n)
{
    for (int k = 1; k <= 2; k++) {
        void *gk = ad__grad(t, n->in[k]);
        if (!gk) continue;
        int take = k == 1; /* a receives where cond holds, b elsewhere */
        if (n->out->dtype == AD_F32) {
            const float *g = n->out->grad;
            float *gi = gk;
            WHERE_LOOP(float, if ((c[s] != 0) == take) gi[o] += g[o]);
        } else {
            const double *g = n->out->grad;
            double *gi = gk;
            WHERE_LOOP(double, if ((c[s] != 0) == take) gi[o] += g[o]);
        }
    }
}

/*
 * Forward mode of the shape ops: each is linear in its data (a reshape, a
 * permutation, a join, a slice, a row gather; where picks between a and b
 * with a fixed condition), so its tangent is its own forward on the tangents.
 */
ad_status ad__reshape_jvp(ad_tape *t, ad_node *n) { return ad__jvp_linear(t, n, 0); }
ad_status ad__permute_jvp(ad_tape *t, ad_node *n) { return ad__jvp_linear(t, n, 0); }
ad_status ad__concat_jvp(ad_tape *t, ad_node *n) { return ad__jvp_linear(t, n, 0); }
ad_status ad__slice_jvp(ad_tape *t, ad_node *n) { return ad__jvp_linear(t, n, 0); }
ad_status ad__gather_rows_jvp(ad_tape *t, ad_node *n) { return ad__jvp_linear(t, n, 0); }
/* The condition keeps its data (bit 0): no tangent flows through it. */
ad_status ad__where_jvp(ad_tape *t, ad_node *n) { return ad__jvp_linear(t, n, 1u); }

ad_tensor *ad_where(ad_tape *t, ad_tensor *cond, ad_tensor *a, ad_tensor *b)
{
    ad_tensor *in[3] = {cond, a, b};
    return ad__record(t, AD_OP_WHERE, in, 3, NULL);
}

/* ---- dropout ---------------------------------------------------------------------------- */

/* saved: the per-element factor (0 or 1/(1-p)) in the tensor's dtype, NULL when identity. */
static ad_status dropout_draw(ad_tape *t, ad_node *n)
{
    size_t count = n->out->numel;
    double p = n->a.scalar;
    if (!ad__dropout_draws(n)) {
        memcpy(n->out->data, n->in[0]->data, count * ad__dtype_size(n->out->dtype));
        return AD_OK;
    }
    n->saved = ad__saved_array(t, n, count, ad__dtype_size(n->out->dtype));
    if (!n->saved) return ad_tape_status(t);
    double keep = 1.0 / (1.0 - p);
    for (size_t i = 0; i < count; i++) {
        double f = ad_rng_uniform(n->a.rng) < p ? 0.0 : keep;
        if (n->out->dtype == AD_F32) {
            ((float *)n->saved)[i] = (float)f;
            ((float *)n->out->data)[i] = ((const float *)n->in[0]->data)[i] * (float)f;
        } else {
            ((double *)n->saved)[i] = f;
            ((double *)n->out->data)[i] = ((const double *)n->in[0]->data)[i] * f;
        }
    }
    return AD_OK;
}

int ad__dropout_draws(const ad_node *n) { return n->a.flags && n->a.scalar != 0.0; }

/* Only forward may draw: the node forgets the rng once its mask is made. */
ad_status ad__dropout_fwd(ad_tape *t, ad_node *n)
{
    ad_status st = dropout_draw(t, n);
    n->a.rng = NULL;
    return st;
}

void ad__dropout_bwd(ad_tape *t, ad_node *n)
{
    void *gx = ad__grad(t, n->in[0]);
    if (!gx) return;
    size_t count = n->out->numel;
    if (!n->saved) {
        add_block(n->out->dtype, gx, n->out->grad, count);
        return;
    }
    if (n->out->dtype == AD_F32) {
        const float *g = n->out->grad, *f = n->saved;
        float *gi = gx;
        for (size_t i = 0; i < count; i++) gi[i] += g[i] * f[i];
    } else {
        const double *g = n->out->grad, *f = n->saved;
        double *gi = gx;
        for (size_t i = 0; i < count; i++) gi[i] += g[i] * f[i];
    }
}

/* Forward mode: the same saved factors times the tangent (identity without them). */
ad_status ad__dropout_jvp(ad_tape *t, ad_node *n)
{
    size_t count = n->out->numel, es = ad__dtype_size(n->out->dtype);
    const char *d = ad__tan(t, n->in[0]);
    char *dy = ad__tan_new(t, n);
    if (!dy) return ad_tape_status(t);
    for (size_t k = 0; k < (size_t)ad__tan_k(t); k++) {
        const void *dk = d + k * count * es;
        void *yk = dy + k * count * es;
        if (!n->saved) memcpy(yk, dk, count * es);
        else if (n->out->dtype == AD_F32)
            for (size_t i = 0; i < count; i++)
                ((float *)yk)[i] = ((const float *)dk)[i] * ((const float *)n->saved)[i];
        else
            for (size_t i = 0; i < count; i++)
                ((double *)yk)[i] = ((const double *)dk)[i] * ((const double *)n->saved)[i];
    }
    return AD_OK;
}

ad_tensor *ad_dropout(ad_tape *t, ad_tensor *x, double p, int train, ad_rng *rng)
{
    if (!t || ad_tape_status(t) != AD_OK) return NULL;
    if (!x) return ad__record(t, AD_OP_DROPOUT, &x, 1, NULL);
    if (!(p >= 0.0 && p < 1.0)) {
        ad_tape_fail(t, AD_ERR_ARG, "dropout: p = %g is outside [0, 1)", p);
        return NULL;
    }
    if (train && p > 0.0 && !rng) {
        ad_tape_fail(t, AD_ERR_NULL, "dropout: training needs an rng");
        return NULL;
    }
    ad__args args = {0};
    args.scalar = p;
    args.flags = train != 0;
    args.rng = rng;
    return ad__record(t, AD_OP_DROPOUT, &x, 1, &args);
}
