/*
 * op_elementwise.c - elementwise ops: broadcasting binary ops, scalar ops and
 * unary functions.
 *
 * Broadcasting follows NumPy: shapes are aligned at their last axis, and an
 * axis of size 1 (or a missing one) stretches to the other operand's size.
 * Backward sums the gradient over the stretched axes.
 */
#include <math.h>
#include <string.h>

#include "internal.h"
#include "split.h"
#include "kernels.h"

/* ---- broadcasting ----------------------------------------------------------------- */

/* Four axes (left-padded with 1) and each operand's strides, 0 where it stretches. */
typedef struct bcast {
    int64_t dim[AD_MAX_RANK];
    int64_t sa[AD_MAX_RANK];
    int64_t sb[AD_MAX_RANK];
} bcast;

static int64_t padded(ad_shape s, int axis)
{
    int off = AD_MAX_RANK - s.rank;
    return axis < off ? 1 : s.dim[axis - off];
}

static void strides_of(ad_shape s, const int64_t *dim, int64_t *st)
{
    int64_t acc = 1;
    for (int i = AD_MAX_RANK - 1; i >= 0; i--) {
        int64_t d = padded(s, i);
        st[i] = (d == 1 && dim[i] != 1) ? 0 : acc;
        acc *= d;
    }
}

static void bcast_make(ad_shape out, ad_shape a, ad_shape b, bcast *bc)
{
    for (int i = 0; i < AD_MAX_RANK; i++) bc->dim[i] = padded(out, i);
    strides_of(a, bc->dim, bc->sa);
    strides_of(b, bc->dim, bc->sb);
}

ad_status ad__shape_broadcast(ad_tape *t, ad_node *n, ad_shape *out)
{
    ad_shape a = n->in[0]->shape, b = n->in[1]->shape;
    if (ad_shape_equal(a, b)) { /* the common case: nothing stretches */
        *out = a;
        for (int i = a.rank; i < AD_MAX_RANK; i++) out->dim[i] = 0;
        return AD_OK;
    }
    int rank = a.rank > b.rank ? a.rank : b.rank;
    out->rank = rank;
    for (int i = 0; i < AD_MAX_RANK; i++) out->dim[i] = 0;
    for (int i = 0; i < rank; i++) {
        int axis = AD_MAX_RANK - rank + i;
        int64_t da = padded(a, axis), db = padded(b, axis);
        if (da != db && da != 1 && db != 1) {
            char sa[AD__SHAPE_BUF], sb[AD__SHAPE_BUF];
            return ad_tape_fail(t, AD_ERR_SHAPE, "%s: %s and %s: shapes do not broadcast",
                            ad__ops[n->op].name, ad__shape_str(a, sa), ad__shape_str(b, sb));
        }
        out->dim[i] = da == 1 ? db : da;
    }
    return AD_OK;
}

/*
 * FOR_BCAST walks the four broadcast axes with flat indices o (output), ia and
 * ib (operands) and runs BODY for each element.
 */
#define FOR_BCAST(bc, ...)                                                          \
    do {                                                                            \
        size_t o = 0;                                                               \
        for (int64_t i0 = 0; i0 < (bc).dim[0]; i0++)                                \
            for (int64_t i1 = 0; i1 < (bc).dim[1]; i1++)                            \
                for (int64_t i2 = 0; i2 < (bc).dim[2]; i2++) {                      \
                    int64_t ba = i0 * (bc).sa[0] + i1 * (bc).sa[1] + i2 * (bc).sa[2]; \
                    int64_t bb = i0 * (bc).sb[0] + i1 * (bc).sb[1] + i2 * (bc).sb[2]; \
                    for (int64_t i3 = 0; i3 < (bc).dim[3]; i3++, o++) {             \
                        int64_t ia = ba + i3 * (bc).sa[3];                          \
                        int64_t ib = bb + i3 * (bc).sb[3];                          \
                        __VA_ARGS__;                                                \
                    }                                                               \
                }                                                                   \
    } while (0)

/*
 * One forward and one backward per binary op and dtype, from the formula.
 * DA and DB are the partial derivatives with respect to a and b, in terms of
 * x = a[ia], y = b[ib].
 */
#define DEFINE_BINARY(NAME, T, EXPR, DA, DB)                                            \
    static void NAME##_fwd_##T(const bcast *bc, const T *a, const T *b, T *out)        \
    {                                                                                  \
        FOR_BCAST(*bc, { T x = a[ia], y = b[ib]; out[o] = (EXPR); });                   \
    }                                                                                  \
    static void NAME##_bwd_##T(const bcast *bc, const T *a, const T *b, const T *g,    \
                               T *ga, T *gb)                                           \
    {                                                                                  \
        if (ga) FOR_BCAST(*bc, { T x = a[ia], y = b[ib]; (void)x; (void)y; ga[ia] += g[o] * (DA); }); \
        if (gb) FOR_BCAST(*bc, { T x = a[ia], y = b[ib]; (void)x; (void)y; gb[ib] += g[o] * (DB); }); \
    }                                                                                  \
    /* Operands of the output's size: one flat loop, the same arithmetic. */           \
    static void NAME##_flat_fwd_##T(size_t len, const T *a, const T *b, T *out)        \
    {                                                                                  \
        for (size_t o = 0; o < len; o++) {                                             \
            T x = a[o], y = b[o];                                                      \
            out[o] = (EXPR);                                                           \
        }                                                                              \
    }                                                                                  \
    static void NAME##_flat_bwd_##T(size_t len, const T *a, const T *b, const T *g,    \
                                    T *ga, T *gb)                                      \
    {                                                                                  \
        if (ga)                                                                        \
            for (size_t o = 0; o < len; o++) {                                         \
                T x = a[o], y = b[o];                                                  \
                (void)x, (void)y;                                                      \
                ga[o] += g[o] * (DA);                                                  \
            }                                                                          \
        if (gb)                                                                        \
            for (size_t o = 0; o < len; o++) {                                         \
                T x = a[o], y = b[o];                                                  \
                (void)x, (void)y;                                                      \
                gb[o] += g[o] * (DB);                                                  \
            }                                                                          \
    }                                                                                  \
    /* a of the output's size, b one row of `cols` repeated over `rows` rows: the      \
     * broadcasting loop's order (rows outer), without its strides. Rows are `ld`     \
     * apart, so that backward can take b's gradient a range of columns at a time.    \
     */                                                                                \
    static void NAME##_row_fwd_##T(size_t rows, size_t cols, const T *a, const T *b, T *out) \
    {                                                                                  \
        for (size_t r = 0; r < rows; r++)                                              \
            for (size_t j = 0; j < cols; j++) {                                        \
                T x = a[r * cols + j], y = b[j];                                       \
                out[r * cols + j] = (EXPR);                                            \
            }                                                                          \
    }                                                                                  \
    static void NAME##_row_bwd_##T(size_t rows, size_t cols, size_t ld, const T *a,    \
                                   const T *b, const T *g, T *ga, T *gb)               \
    {                                                                                  \
        if (ga)                                                                        \
            for (size_t r = 0; r < rows; r++)                                          \
                for (size_t j = 0; j < cols; j++) {                                    \
                    T x = a[r * ld + j], y = b[j];                                     \
                    (void)x, (void)y;                                                  \
                    ga[r * ld + j] += g[r * ld + j] * (DA);                            \
                }                                                                      \
        if (gb)                                                                        \
            for (size_t r = 0; r < rows; r++)                                          \
                for (size_t j = 0; j < cols; j++) {                                    \
                    T x = a[r * ld + j], y = b[j];                                     \
                    (void)x, (void)y;                                                  \
                    gb[j] += g[r * ld + j] * (DB);                                     \
                }                                                                      \
    }

#define DEFINE_BINARY_BOTH(NAME, EXPR, DA, DB)    \
    DEFINE_BINARY(NAME, float, EXPR, DA, DB)      \
    DEFINE_BINARY(NAME, double, EXPR, DA, DB)

/* d(x+y) = dx + dy; d(x-y) = dx - dy; d(xy) = y dx + x dy; d(x/y) = dx/y - x dy/y^2 */
DEFINE_BINARY_BOTH(add, x + y, 1, 1)
DEFINE_BINARY_BOTH(sub, x - y, 1, -1)
DEFINE_BINARY_BOTH(mul, x * y, y, x)
DEFINE_BINARY_BOTH(div, x / y, 1 / y, -x / (y * y))

/*
 * When both operands have as many elements as the output, neither is
 * stretched (an operand of the output's size can differ from it only by
 * leading axes of 1), so the flat loops give exactly the broadcasting result.
 */
static int same_size(const ad_node *n)
{
    return n->in[0]->numel == n->out->numel && n->in[1]->numel == n->out->numel;
}

/*
 * A bias: input 0 of the output's size and input 1 a single row along the
 * last axis (shape [c] or [1,..,1,c]) stretched over all the rows. Returns the
 * row length c, or 0 for any other case.
 */
static size_t row_bias(const ad_node *n)
{
    const ad_tensor *a = n->in[0], *b = n->in[1], *y = n->out;
    if (a->numel != y->numel || y->shape.rank < 1) return 0;
    int64_t cols = y->shape.dim[y->shape.rank - 1];
    if (b->shape.rank < 1 || b->shape.dim[b->shape.rank - 1] != cols || (size_t)cols != b->numel)
        return 0;
    return (size_t)cols;
}

/*
 * The flat and the bias forms run over the threads when large (split.h; the
 * rule is AD__TUNE_COPY_MIN_PER_THREAD over the output's bytes): the flat
 * form in ranges of elements, the bias form's forward and a's gradient in
 * ranges of rows, b's gradient in ranges of columns, each column summed over
 * the rows in their order. Every element goes through the one loop's
 * arithmetic, so the bits never depend on the thread count. The general
 * broadcast stays on one thread.
 */
typedef struct binary_job {
    const ad_node *n;
    void *ga, *gb; /* backward: the operands' gradients, either NULL */
    size_t cols;   /* the bias form's row length; 0 for the flat form */
} binary_job;

static int binary_parts(const ad_node *n, size_t units)
{
    return ad__split_parts(units, n->out->numel * ad__dtype_size(n->out->dtype), AD__TUNE_COPY_MIN_PER_THREAD);
}

/* Offsets into the operands of element (or row) lo. */
#define AT(T, p, i) ((p) ? (T *)(p) + (i) : NULL)

#define DEFINE_BINARY_RANGES(NAME, T)                                                                \
    static void NAME##_fwd_range_##T(const binary_job *j, size_t lo, size_t hi)                     \
    {                                                                                                \
        const T *a = j->n->in[0]->data, *b = j->n->in[1]->data;                                      \
        T *out = j->n->out->data;                                                                    \
        if (!j->cols) NAME##_flat_fwd_##T(hi - lo, a + lo, b + lo, out + lo);                        \
        else NAME##_row_fwd_##T(hi - lo, j->cols, a + lo * j->cols, b, out + lo * j->cols);          \
    }                                                                                                \
    static void NAME##_bwd_range_##T(const binary_job *j, size_t lo, size_t hi)                     \
    {                                                                                                \
        const T *a = j->n->in[0]->data, *b = j->n->in[1]->data, *g = j->n->out->grad;                \
        if (!j->cols) NAME##_flat_bwd_##T(hi - lo, a + lo, b + lo, g + lo, AT(T, j->ga, lo), AT(T, j->gb, lo)); \
        else NAME##_row_bwd_##T(hi - lo, j->cols, j->cols, a + lo * j->cols, b, g + lo * j->cols,   \
                                AT(T, j->ga, lo * j->cols), NULL);                                   \
    }                                                                                                \
    /* b's gradient, columns [lo, hi) */                                                             \
    static void NAME##_bias_range_##T(const binary_job *j, size_t lo, size_t hi)                    \
    {                                                                                                \
        const T *a = j->n->in[0]->data, *b = j->n->in[1]->data, *g = j->n->out->grad;                \
        NAME##_row_bwd_##T(j->n->out->numel / j->cols, hi - lo, j->cols, a + lo, b + lo, g + lo, NULL, \
                           (T *)j->gb + lo);                                                         \
    }

#define BINARY_RANGE_FN(NAME, WHAT)                                                     \
    static void NAME##_##WHAT##_range(void *ctx, size_t lo, size_t hi, int part)        \
    {                                                                                   \
        const binary_job *j = ctx;                                                      \
        (void)part;                                                                     \
        if (j->n->out->dtype == AD_F32) NAME##_##WHAT##_range_float(j, lo, hi);         \
        else NAME##_##WHAT##_range_double(j, lo, hi);                                   \
    }

#define BINARY_ENTRY(NAME)                                                              \
    DEFINE_BINARY_RANGES(NAME, float)                                                   \
    DEFINE_BINARY_RANGES(NAME, double)                                                  \
    BINARY_RANGE_FN(NAME, fwd)                                                          \
    BINARY_RANGE_FN(NAME, bwd)                                                          \
    BINARY_RANGE_FN(NAME, bias)                                                         \
    ad_status ad__##NAME##_fwd(ad_tape *t, ad_node *n)                                  \
    {                                                                                   \
        (void)t;                                                                        \
        const void *a = n->in[0]->data, *b = n->in[1]->data;                            \
        int flat = same_size(n);                                                        \
        binary_job j = {n, NULL, NULL, flat ? 0 : row_bias(n)};                         \
        if (flat || j.cols) {                                                           \
            size_t units = j.cols ? n->out->numel / j.cols : n->out->numel;             \
            ad__split_run(units, binary_parts(n, units), j.cols ? 1 : 16, NAME##_fwd_range, &j); \
            return AD_OK;                                                               \
        }                                                                               \
        bcast bc;                                                                       \
        bcast_make(n->out->shape, n->in[0]->shape, n->in[1]->shape, &bc);               \
        if (n->out->dtype == AD_F32) NAME##_fwd_float(&bc, a, b, n->out->data);         \
        else NAME##_fwd_double(&bc, a, b, n->out->data);                                \
        return AD_OK;                                                                   \
    }                                                                                   \
    void ad__##NAME##_bwd(ad_tape *t, ad_node *n)                                       \
    {                                                                                   \
        const void *a = n->in[0]->data, *b = n->in[1]->data, *g = n->out->grad;         \
        void *ga = ad__grad(t, n->in[0]), *gb = ad__grad(t, n->in[1]);                  \
        int flat = same_size(n);                                                        \
        binary_job j = {n, ga, gb, flat ? 0 : row_bias(n)};                             \
        if (flat || j.cols) {                                                           \
            size_t units = j.cols ? n->out->numel / j.cols : n->out->numel;             \
            if (ga || !j.cols)                                                          \
                ad__split_run(units, binary_parts(n, units), j.cols ? 1 : 16, NAME##_bwd_range, &j); \
            if (gb && j.cols)                                                           \
                ad__split_run(j.cols, binary_parts(n, j.cols), 16, NAME##_bias_range, &j); \
            return;                                                                     \
        }                                                                               \
        bcast bc;                                                                       \
        bcast_make(n->out->shape, n->in[0]->shape, n->in[1]->shape, &bc);               \
        if (n->out->dtype == AD_F32) NAME##_bwd_float(&bc, a, b, g, ga, gb);            \
        else NAME##_bwd_double(&bc, a, b, g, ga, gb);                                   \
    }                                                                                   \
    ad_tensor *ad_##NAME(ad_tape *t, ad_tensor *a, ad_tensor *b)                        \
    {                                                                                   \
        ad_tensor *in[2] = {a, b};                                                      \
        return ad__record(t, AD_OP_##NAME##_ID, in, 2, NULL);                           \
    }

#define AD_OP_add_ID AD_OP_ADD
#define AD_OP_sub_ID AD_OP_SUB
#define AD_OP_mul_ID AD_OP_MUL
#define AD_OP_div_ID AD_OP_DIV

BINARY_ENTRY(add)
BINARY_ENTRY(sub)
BINARY_ENTRY(mul)
BINARY_ENTRY(div)

/*
 * Forward mode. add and sub are linear: their own forward on the tangents.
 * For mul and div, DOT is the output's tangent in terms of x = a[ia],
 * y = b[ib] and their tangents dx, dy (zero for an operand without one),
 * written from the formula, not from backward's partials.
 */
#define DEFINE_BINARY_JVP(NAME, T, DOT)                                                   \
    static void NAME##_jvp_##T(const bcast *bc, const T *a, const T *b, const T *ta,      \
                               const T *tb, T *out)                                       \
    {                                                                                     \
        FOR_BCAST(*bc, {                                                                  \
            T x = a[ia], y = b[ib], dx = ta ? ta[ia] : 0, dy = tb ? tb[ib] : 0;           \
            out[o] = (DOT);                                                               \
        });                                                                               \
    }
#define BINARY_JVP_ENTRY(NAME, DOT)                                                       \
    DEFINE_BINARY_JVP(NAME, float, DOT)                                                   \
    DEFINE_BINARY_JVP(NAME, double, DOT)                                                  \
    ad_status ad__##NAME##_jvp(ad_tape *t, ad_node *n)                                    \
    {                                                                                     \
        size_t es = ad__dtype_size(n->out->dtype), na = n->in[0]->numel,                  \
               nb = n->in[1]->numel, ny = n->out->numel;                                  \
        const char *ta = ad__tan(t, n->in[0]), *tb = ad__tan(t, n->in[1]);                \
        char *out = ad__tan_new(t, n);                                                    \
        if (!out) return ad_tape_status(t);                                               \
        bcast bc;                                                                         \
        bcast_make(n->out->shape, n->in[0]->shape, n->in[1]->shape, &bc);                 \
        for (size_t k = 0; k < (size_t)ad__tan_k(t); k++) {                               \
            const void *da = ta ? ta + k * na * es : NULL, *db = tb ? tb + k * nb * es : NULL; \
            if (n->out->dtype == AD_F32)                                                  \
                NAME##_jvp_float(&bc, n->in[0]->data, n->in[1]->data, da, db,             \
                                 (float *)(void *)(out + k * ny * es));                   \
            else                                                                          \
                NAME##_jvp_double(&bc, n->in[0]->data, n->in[1]->data, da, db,            \
                                  (double *)(void *)(out + k * ny * es));                 \
        }                                                                                 \
        return AD_OK;                                                                     \
    }

ad_status ad__add_jvp(ad_tape *t, ad_node *n) { return ad__jvp_linear(t, n, 0); }
ad_status ad__sub_jvp(ad_tape *t, ad_node *n) { return ad__jvp_linear(t, n, 0); }
/* d(xy) = dx y + x dy;  d(x/y) = (dx y - x dy) / y^2 */
BINARY_JVP_ENTRY(mul, dx * y + x * dy)
BINARY_JVP_ENTRY(div, dx / y - x * dy / (y * y))

/* ---- unary and scalar ops --------------------------------------------------------- */

/*
 * One forward and one backward per unary op and dtype. FWD computes y from x
 * (and the scalar c); DX is dy/dx in terms of x, y and c.
 */
#define DEFINE_UNARY_FWD(NAME, T, FWD)                                                  \
    static void NAME##_fwd_##T(size_t len, const T *in, T *out, T c)                    \
    {                                                                                   \
        (void)c;                                                                        \
        for (size_t i = 0; i < len; i++) {                                              \
            T x = in[i];                                                                \
            out[i] = (FWD);                                                             \
        }                                                                               \
    }
#define DEFINE_UNARY_BWD(NAME, T, DX)                                                   \
    static void NAME##_bwd_##T(size_t len, const T *in, const T *out, const T *g, T *gx, T c) \
    {                                                                                   \
        (void)c;                                                                        \
        for (size_t i = 0; i < len; i++) {                                              \
            T x = in[i], y = out[i];                                                    \
            (void)x;                                                                    \
            (void)y;                                                                    \
            gx[i] += g[i] * (DX);                                                       \
        }                                                                               \
    }
#define DEFINE_UNARY(NAME, T, FWD, DX) DEFINE_UNARY_FWD(NAME, T, FWD) DEFINE_UNARY_BWD(NAME, T, DX)

#define UNARY_ENTRY(NAME, OP)                                                          \
    ad_status ad__##NAME##_fwd(ad_tape *t, ad_node *n)                                 \
    {                                                                                  \
        (void)t;                                                                       \
        if (n->out->dtype == AD_F32)                                                   \
            NAME##_fwd_float(n->out->numel, n->in[0]->data, n->out->data,              \
                             (float)n->a.scalar);                                      \
        else                                                                           \
            NAME##_fwd_double(n->out->numel, n->in[0]->data, n->out->data, n->a.scalar); \
        return AD_OK;                                                                  \
    }                                                                                  \
    void ad__##NAME##_bwd(ad_tape *t, ad_node *n)                                      \
    {                                                                                  \
        void *gx = ad__grad(t, n->in[0]);                                              \
        if (!gx) return;                                                               \
        if (n->out->dtype == AD_F32)                                                   \
            NAME##_bwd_float(n->out->numel, n->in[0]->data, n->out->data, n->out->grad, gx, \
                             (float)n->a.scalar);                                      \
        else                                                                           \
            NAME##_bwd_double(n->out->numel, n->in[0]->data, n->out->data, n->out->grad, gx, \
                              n->a.scalar);                                            \
    }

#define DEFINE_UNARY_OP(NAME, OP, FWD_F, FWD_D, DX)  \
    DEFINE_UNARY(NAME, float, FWD_F, DX)             \
    DEFINE_UNARY(NAME, double, FWD_D, DX)            \
    UNARY_ENTRY(NAME, OP)

/* The same with the forward taken by vectorised array kernels (kernels.h). */
#define DEFINE_UNARY_OP_VEC(NAME, OP, KERNEL_F, KERNEL_D, DX)                            \
    static void NAME##_fwd_float(size_t len, const float *in, float *out, float c)       \
    {                                                                                    \
        (void)c;                                                                         \
        KERNEL_F(len, in, out);                                                          \
    }                                                                                    \
    static void NAME##_fwd_double(size_t len, const double *in, double *out, double c)   \
    {                                                                                    \
        (void)c;                                                                         \
        KERNEL_D(len, in, out);                                                          \
    }                                                                                    \
    DEFINE_UNARY_BWD(NAME, float, DX)                                                    \
    DEFINE_UNARY_BWD(NAME, double, DX)                                                   \
    UNARY_ENTRY(NAME, OP)

/* d(x+c) = dx;  d(cx) = c dx;  d(x^c) = c x^(c-1) dx */
DEFINE_UNARY_OP(add_scalar, ADD_SCALAR, x + c, x + c, 1)
DEFINE_UNARY_OP(mul_scalar, MUL_SCALAR, x * c, x * c, c)
DEFINE_UNARY_OP(pow_scalar, POW_SCALAR, powf(x, c), pow(x, c), c * pow(x, c - 1))
/* d(-x) = -dx;  d e^x = e^x dx = y dx;  d ln x = dx / x;  d sqrt x = dx / (2 y) */
DEFINE_UNARY_OP(neg, NEG, -x, -x, -1)
DEFINE_UNARY_OP(exp, EXP, expf(x), exp(x), y)
DEFINE_UNARY_OP(log, LOG, logf(x), log(x), 1 / x)
DEFINE_UNARY_OP(sqrt, SQRT, sqrtf(x), sqrt(x), 1 / (2 * y))
/* d|x| = sign(x) dx, taken as 0 at 0 (PyTorch's choice) */
DEFINE_UNARY_OP(abs, ABS, fabsf(x), fabs(x), (x > 0) - (x < 0))
/* d tanh x = (1 - tanh^2 x) dx: reuse the saved output */
DEFINE_UNARY_OP_VEC(tanh, TANH, ad__tanh_f32, ad__tanh_f64, 1 - y * y)
/* d s(x) = s (1 - s) dx */
DEFINE_UNARY_OP_VEC(sigmoid, SIGMOID, ad__sigmoid_f32, ad__sigmoid_f64, y * (1 - y))
/* d relu = [x > 0] dx (0 at 0) */
DEFINE_UNARY_OP(relu, RELU, x > 0 ? x : 0, x > 0 ? x : 0, x > 0)

/*
 * softplus(x) = log(1 + e^x) as max(x, 0) + log1p(e^-|x|): e^-|x| <= 1 never
 * overflows, and log1p keeps the small tail for large |x| (where log(1 + e)
 * rounds to 0). Its derivative is sigmoid(x), in the two-branch form: with
 * e = e^-|x|, 1 / (1 + e) for x >= 0 and e / (1 + e) below.
 */
static float sigmoid_of_f32(float x)
{
    float e = expf(-fabsf(x));
    return x >= 0 ? 1 / (1 + e) : e / (1 + e);
}
static double sigmoid_of_f64(double x)
{
    double e = exp(-fabs(x));
    return x >= 0 ? 1 / (1 + e) : e / (1 + e);
}
#define SIGMOID_OF(x) _Generic((x), float: sigmoid_of_f32, default: sigmoid_of_f64)(x)
DEFINE_UNARY_OP(softplus, SOFTPLUS, (x > 0 ? x : 0) + log1pf(expf(-fabsf(x))),
                (x > 0 ? x : 0) + log1p(exp(-fabs(x))), SIGMOID_OF(x))

/*
 * Forward mode of the unary ops: DOT is the output's tangent in terms of x,
 * y, the scalar c and the input's tangent d, from the formula.
 */
#define UNARY_JVP(NAME, DOT)                                                             \
    static void NAME##_jvp_float(size_t len, const float *in, const float *out,          \
                                 const float *td, float *dst, float c)                   \
    {                                                                                    \
        for (size_t i = 0; i < len; i++) {                                               \
            float x = in[i], y = out[i], d = td[i];                                      \
            (void)x, (void)y, (void)c;                                                   \
            dst[i] = (DOT);                                                              \
        }                                                                                \
    }                                                                                    \
    static void NAME##_jvp_double(size_t len, const double *in, const double *out,       \
                                  const double *td, double *dst, double c)               \
    {                                                                                    \
        for (size_t i = 0; i < len; i++) {                                               \
            double x = in[i], y = out[i], d = td[i];                                     \
            (void)x, (void)y, (void)c;                                                   \
            dst[i] = (DOT);                                                              \
        }                                                                                \
    }                                                                                    \
    ad_status ad__##NAME##_jvp(ad_tape *t, ad_node *n)                                   \
    {                                                                                    \
        size_t len = n->out->numel, es = ad__dtype_size(n->out->dtype);                  \
        const char *td = ad__tan(t, n->in[0]);                                           \
        char *dst = ad__tan_new(t, n);                                                   \
        if (!dst) return ad_tape_status(t);                                              \
        for (size_t k = 0; k < (size_t)ad__tan_k(t); k++) {                              \
            if (n->out->dtype == AD_F32)                                                 \
                NAME##_jvp_float(len, n->in[0]->data, n->out->data,                      \
                                 (const float *)(const void *)(td + k * len * es),       \
                                 (float *)(void *)(dst + k * len * es), (float)n->a.scalar); \
            else                                                                         \
                NAME##_jvp_double(len, n->in[0]->data, n->out->data,                     \
                                  (const double *)(const void *)(td + k * len * es),     \
                                  (double *)(void *)(dst + k * len * es), n->a.scalar);  \
        }                                                                                \
        return AD_OK;                                                                    \
    }

UNARY_JVP(add_scalar, d)
UNARY_JVP(mul_scalar, c * d)
UNARY_JVP(pow_scalar, c * pow(x, c - 1) * d)
UNARY_JVP(neg, -d)
UNARY_JVP(exp, y * d)
UNARY_JVP(log, d / x)
UNARY_JVP(sqrt, d / (2 * y))
UNARY_JVP(abs, x > 0 ? d : x < 0 ? -d : 0)
UNARY_JVP(tanh, (1 - y * y) * d)
UNARY_JVP(sigmoid, y * (1 - y) * d)
UNARY_JVP(relu, x > 0 ? d : 0)
UNARY_JVP(softplus, SIGMOID_OF(x) * d)

static ad_tensor *unary(ad_tape *t, ad__op op, ad_tensor *x, double c)
{
    ad__args args = {0};
    args.scalar = c;
    return ad__record(t, op, &x, 1, &args);
}

ad_tensor *ad_add_scalar(ad_tape *t, ad_tensor *x, double c) { return unary(t, AD_OP_ADD_SCALAR, x, c); }
ad_tensor *ad_mul_scalar(ad_tape *t, ad_tensor *x, double c) { return unary(t, AD_OP_MUL_SCALAR, x, c); }
ad_tensor *ad_pow_scalar(ad_tape *t, ad_tensor *x, double p) { return unary(t, AD_OP_POW_SCALAR, x, p); }
ad_tensor *ad_neg(ad_tape *t, ad_tensor *x) { return unary(t, AD_OP_NEG, x, 0); }
ad_tensor *ad_exp(ad_tape *t, ad_tensor *x) { return unary(t, AD_OP_EXP, x, 0); }
ad_tensor *ad_log(ad_tape *t, ad_tensor *x) { return unary(t, AD_OP_LOG, x, 0); }
ad_tensor *ad_sqrt(ad_tape *t, ad_tensor *x) { return unary(t, AD_OP_SQRT, x, 0); }
ad_tensor *ad_abs(ad_tape *t, ad_tensor *x) { return unary(t, AD_OP_ABS, x, 0); }
ad_tensor *ad_tanh(ad_tape *t, ad_tensor *x) { return unary(t, AD_OP_TANH, x, 0); }
ad_tensor *ad_sigmoid(ad_tape *t, ad_tensor *x) { return unary(t, AD_OP_SIGMOID, x, 0); }
ad_tensor *ad_relu(ad_tape *t, ad_tensor *x) { return unary(t, AD_OP_RELU, x, 0); }
ad_tensor *ad_softplus(ad_tape *t, ad_tensor *x) { return unary(t, AD_OP_SOFTPLUS, x, 0); }
