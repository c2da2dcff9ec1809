/*
 * op_cell.c - fused gate ops of the built-in recurrent cells.
 *
 * Each takes the two projections of a step separately, gx = x W_ih^T + b_ih
 * and gh = h W_hh^T + b_hh ([B, G H]), and the previous state ([B, H]), so
 * the gate pre-activations are never stored: one node replaces the split,
 * the adds, the activations and the products of the op-by-op cell, and
 * backward writes each gate's gradient straight into the gradients of gx and
 * gh. The activations backward needs are kept in n->saved, one [B, H] plane
 * per gate. The Elman cell, act(gx + gh), needs nothing beyond its output.
 * Derivations: docs/derivations.md, "Fused cell gates".
 */
#include <math.h>

#include "internal.h"
#include "kernels.h"
#include "split.h"

/* Activations in place over n elements: the vectorised kernels. */
static void sigmoid_float(size_t n, float *p) { ad__sigmoid_f32(n, p, p); }
static void tanh_float(size_t n, float *p) { ad__tanh_f32(n, p, p); }
static void sigmoid_double(size_t n, double *p) { ad__sigmoid_f64(n, p, p); }
static void tanh_double(size_t n, double *p) { ad__tanh_f64(n, p, p); }

/* Gates per cell: the G of [B, G H]. */
static int64_t gates_of(ad__op op) { return op == AD_OP_GRU_CELL ? 3 : 4; }

/* gx and gh [B, G H], state [B, H] -> out [B, H]. */
ad_status ad__shape_cell(ad_tape *t, ad_node *n, ad_shape *out)
{
    ad_shape x = n->in[0]->shape, h = n->in[1]->shape, s = n->in[2]->shape;
    int64_t g = gates_of(n->op);
    char sx[AD__SHAPE_BUF], sh[AD__SHAPE_BUF], ss[AD__SHAPE_BUF];
    int ok = x.rank == 2 && h.rank == 2 && s.rank == 2 && x.dim[0] == h.dim[0] &&
             x.dim[1] == h.dim[1] && s.dim[0] == x.dim[0] && x.dim[1] == g * s.dim[1];
    if (!ok)
        return ad_tape_fail(t, AD_ERR_SHAPE, "%s: gx %s, gh %s, state %s: the projections must both be "
                        "[B, %lldH] for a state [B, H]", ad__ops[n->op].name, ad__shape_str(x, sx),
                        ad__shape_str(h, sh), ad__shape_str(s, ss), (long long)g);
    if (s.dim[0] == 0 || s.dim[1] == 0)
        return ad_tape_fail(t, AD_ERR_EMPTY, "%s: state %s is empty", ad__ops[n->op].name, ad__shape_str(s, ss));
    *out = s;
    return AD_OK;
}

/* Saved planes of n, each B*H elements of the node's dtype. */
static ad_status keep_planes(ad_tape *t, ad_node *n, size_t planes)
{
    n->saved = ad__saved_array(t, n, planes * n->out->numel, ad_dtype_size(n->out->dtype));
    return n->saved ? AD_OK : ad_tape_status(t);
}

/*
 * Backward computes a gate's gradient for a run of at most CHUNK columns
 * of one row into a local array, then adds it into the gradients of gx and
 * gh (either may be NULL) with the loops below: with the stores kept apart
 * from the loads of the saved planes, both loops vectorise.
 */
enum { CHUNK = 128 };
#define DEFINE_ADD_ROW(T)                                                                       \
    static void add_row_##T(T *restrict dst, const T *restrict d, int64_t n)                   \
    {                                                                                          \
        for (int64_t j = 0; j < n; j++) dst[j] += d[j];                                        \
    }                                                                                          \
    static void add_gate_##T(T *gx, T *gh, int64_t at, const T *d, int64_t n)                  \
    {                                                                                          \
        if (gx) add_row_##T(gx + at, d, n);                                                    \
        if (gh) add_row_##T(gh + at, d, n);                                                    \
    }
DEFINE_ADD_ROW(float)
DEFINE_ADD_ROW(double)

/* plane[b, j] = gx[b, gate H + j] + gh[b, gate H + j] for [B, G H] projections. */
#define DEFINE_GATE_SUM(T)                                                                      \
    static void gate_sum_##T(int64_t B, int64_t H, int64_t G, int64_t gate, const T *gx,       \
                             const T *gh, T *plane)                                            \
    {                                                                                          \
        for (int64_t b = 0; b < B; b++) {                                                      \
            const T *x = gx + (b * G + gate) * H, *h = gh + (b * G + gate) * H;                \
            for (int64_t j = 0; j < H; j++) plane[b * H + j] = x[j] + h[j];                    \
        }                                                                                      \
    }
DEFINE_GATE_SUM(float)
DEFINE_GATE_SUM(double)

/*
 * LSTM state: [i f g o] = gx + gh, c' = sigmoid(f) c + sigmoid(i) tanh(g).
 * Saved: sigmoid(i), sigmoid(f), tanh(g). The o block is lstm_cell_output's.
 */
#define DEFINE_LSTM_STATE(T)                                                                     \
    static void lstm_state_fwd_##T(int64_t B, int64_t H, const T *gx, const T *gh, const T *c,  \
                                   T *out, T *si, T *sf, T *tg)                                \
    {                                                                                           \
        size_t bh = (size_t)(B * H);                                                            \
        gate_sum_##T(B, H, 4, 0, gx, gh, si);                                                   \
        gate_sum_##T(B, H, 4, 1, gx, gh, sf);                                                   \
        gate_sum_##T(B, H, 4, 2, gx, gh, tg);                                                   \
        sigmoid_##T(bh, si);                                                                    \
        sigmoid_##T(bh, sf);                                                                    \
        tanh_##T(bh, tg);                                                                       \
        for (size_t k = 0; k < bh; k++) out[k] = sf[k] * c[k] + si[k] * tg[k];                  \
    }                                                                                           \
    /* dc += g sf;  di = g tg si(1-si);  df = g c sf(1-sf);  dg = g si (1-tg^2) */              \
    static void lstm_state_bwd_##T(int64_t B, int64_t H, const T *c, const T *si, const T *sf,  \
                                   const T *tg, const T *g, T *ggx, T *ggh, T *gc)              \
    {                                                                                           \
        T di[CHUNK], df[CHUNK], dg[CHUNK];                                                      \
        for (int64_t b = 0; b < B; b++)                                                         \
            for (int64_t j0 = 0; j0 < H; j0 += CHUNK) {                                         \
                int64_t w = H - j0 < CHUNK ? H - j0 : CHUNK, k0 = b * H + j0, at = b * 4 * H + j0; \
                for (int64_t j = 0; j < w; j++) {                                               \
                    int64_t k = k0 + j;                                                         \
                    T gk = g[k];                                                                \
                    di[j] = gk * tg[k] * si[k] * (1 - si[k]);                                   \
                    df[j] = gk * c[k] * sf[k] * (1 - sf[k]);                                    \
                    dg[j] = gk * si[k] * (1 - tg[k] * tg[k]);                                   \
                }                                                                               \
                if (gc)                                                                         \
                    for (int64_t j = 0; j < w; j++) gc[k0 + j] += g[k0 + j] * sf[k0 + j];       \
                add_gate_##T(ggx, ggh, at, di, w);                                              \
                add_gate_##T(ggx, ggh, at + H, df, w);                                          \
                add_gate_##T(ggx, ggh, at + 2 * H, dg, w);                                      \
            }                                                                                   \
    }

/* LSTM output: h' = sigmoid(o) tanh(c'). Saved: sigmoid(o), tanh(c'). */
#define DEFINE_LSTM_OUTPUT(T)                                                                    \
    static void lstm_output_fwd_##T(int64_t B, int64_t H, const T *gx, const T *gh, const T *c, \
                                    T *out, T *so, T *tc)                                       \
    {                                                                                           \
        size_t bh = (size_t)(B * H);                                                            \
        gate_sum_##T(B, H, 4, 3, gx, gh, so);                                                   \
        sigmoid_##T(bh, so);                                                                    \
        for (size_t k = 0; k < bh; k++) tc[k] = c[k];                                           \
        tanh_##T(bh, tc);                                                                       \
        for (size_t k = 0; k < bh; k++) out[k] = so[k] * tc[k];                                 \
    }                                                                                           \
    /* do = g tc so(1-so);  dc' += g so (1-tc^2) */                                             \
    static void lstm_output_bwd_##T(int64_t B, int64_t H, const T *so, const T *tc, const T *g, \
                                    T *ggx, T *ggh, T *gc)                                      \
    {                                                                                           \
        T dout[CHUNK];                                                                          \
        for (int64_t b = 0; b < B; b++)                                                         \
            for (int64_t j0 = 0; j0 < H; j0 += CHUNK) {                                         \
                int64_t w = H - j0 < CHUNK ? H - j0 : CHUNK, k0 = b * H + j0;                   \
                for (int64_t j = 0; j < w; j++) {                                               \
                    int64_t k = k0 + j;                                                         \
                    dout[j] = g[k] * tc[k] * so[k] * (1 - so[k]);                               \
                }                                                                               \
                add_gate_##T(ggx, ggh, b * 4 * H + 3 * H + j0, dout, w);                        \
                if (gc)                                                                         \
                    for (int64_t j = 0; j < w; j++) {                                           \
                        int64_t k = k0 + j;                                                     \
                        gc[k] += g[k] * so[k] * (1 - tc[k] * tc[k]);                            \
                    }                                                                           \
            }                                                                                   \
    }

/*
 * GRU (PyTorch's equations): r = sigmoid(gx_r + gh_r), z = sigmoid(gx_z + gh_z),
 * n = tanh(gx_n + r gh_n), h' = n + z (h - n) = (1 - z) n + z h.
 * Saved: r, z, n.
 */
#define DEFINE_GRU(T)                                                                            \
    static void gru_fwd_##T(int64_t B, int64_t H, const T *gx, const T *gh, const T *hp,        \
                            T *out, T *r, T *z, T *nn)                                          \
    {                                                                                           \
        size_t bh = (size_t)(B * H);                                                            \
        gate_sum_##T(B, H, 3, 0, gx, gh, r);                                                    \
        gate_sum_##T(B, H, 3, 1, gx, gh, z);                                                    \
        sigmoid_##T(bh, r);                                                                     \
        sigmoid_##T(bh, z);                                                                     \
        for (int64_t b = 0; b < B; b++) {                                                       \
            const T *x = gx + b * 3 * H + 2 * H, *h = gh + b * 3 * H + 2 * H;                   \
            for (int64_t j = 0; j < H; j++) nn[b * H + j] = x[j] + r[b * H + j] * h[j];         \
        }                                                                                       \
        tanh_##T(bh, nn);                                                                       \
        for (size_t k = 0; k < bh; k++) out[k] = nn[k] + z[k] * (hp[k] - nn[k]);                \
    }                                                                                           \
    /* dh += g z;  dz = g (h - n);  dpn = g (1-z)(1-n^2) -> gx_n, and r dpn -> gh_n;           \
     * dr = dpn gh_n;  gate pre-activations: dz z(1-z), dr r(1-r) into gx and gh. */           \
    static void gru_bwd_##T(int64_t B, int64_t H, const T *gh, const T *hp, const T *r,         \
                            const T *z, const T *nn, const T *g, T *ggx, T *ggh, T *gprev)      \
    {                                                                                           \
        T dr[CHUNK], dz[CHUNK], dpn[CHUNK], rdpn[CHUNK];                                        \
        for (int64_t b = 0; b < B; b++)                                                         \
            for (int64_t j0 = 0; j0 < H; j0 += CHUNK) {                                         \
                int64_t w = H - j0 < CHUNK ? H - j0 : CHUNK, k0 = b * H + j0, at = b * 3 * H + j0; \
                for (int64_t j = 0; j < w; j++) {                                               \
                    int64_t k = k0 + j;                                                         \
                    T gk = g[k];                                                                \
                    T pn = gk * (1 - z[k]) * (1 - nn[k] * nn[k]);                               \
                    dpn[j] = pn;                                                                \
                    rdpn[j] = pn * r[k];                                                        \
                    dz[j] = gk * (hp[k] - nn[k]) * z[k] * (1 - z[k]);                           \
                    dr[j] = pn * gh[at + 2 * H + j] * r[k] * (1 - r[k]);                        \
                }                                                                               \
                if (gprev)                                                                      \
                    for (int64_t j = 0; j < w; j++) gprev[k0 + j] += g[k0 + j] * z[k0 + j];     \
                add_gate_##T(ggx, ggh, at, dr, w);                                              \
                add_gate_##T(ggx, ggh, at + H, dz, w);                                          \
                if (ggx) add_row_##T(ggx + at + 2 * H, dpn, w);                                 \
                if (ggh) add_row_##T(ggh + at + 2 * H, rdpn, w);                                \
            }                                                                                   \
    }

DEFINE_LSTM_STATE(float)
DEFINE_LSTM_STATE(double)
DEFINE_LSTM_OUTPUT(float)
DEFINE_LSTM_OUTPUT(double)
DEFINE_GRU(float)
DEFINE_GRU(double)

/* The entry points: dtype branch once per call; P(i) is saved plane i. */
#define B_ROWS(n) ((n)->out->shape.dim[0])
#define H_COLS(n) ((n)->out->shape.dim[1])
#define PLANE(T, n, i) ((T *)(n)->saved + (size_t)(i) * (n)->out->numel)
#define DATA(T, n, i) ((const T *)(n)->in[i]->data)

/* ---- Elman: h' = act(gx + gh), act = tanh or relu --------------------------------- */

ad_status ad__shape_rnn_cell(ad_tape *t, ad_node *n, ad_shape *out)
{
    ad_shape x = n->in[0]->shape, h = n->in[1]->shape;
    char sx[AD__SHAPE_BUF], sh[AD__SHAPE_BUF];
    if (n->a.activation != AD_RNN_TANH && n->a.activation != AD_RNN_RELU)
        return ad_tape_fail(t, AD_ERR_ARG, "rnn_cell: unknown activation %d", n->a.activation);
    if (x.rank != 2 || h.rank != 2 || x.dim[0] != h.dim[0] || x.dim[1] != h.dim[1])
        return ad_tape_fail(t, AD_ERR_SHAPE, "rnn_cell: gx %s and gh %s must both be [B, H]",
                        ad__shape_str(x, sx), ad__shape_str(h, sh));
    *out = x;
    return AD_OK;
}

/* d tanh = 1 - y^2, d relu = [y > 0]: both from the output alone. */
#define DEFINE_RNN(T)                                                                            \
    static void rnn_fwd_##T(size_t n, int relu, const T *gx, const T *gh, T *out)               \
    {                                                                                           \
        for (size_t k = 0; k < n; k++) out[k] = gx[k] + gh[k];                                  \
        if (relu)                                                                               \
            for (size_t k = 0; k < n; k++) out[k] = out[k] > 0 ? out[k] : 0;                    \
        else                                                                                    \
            tanh_##T(n, out);                                                                   \
    }                                                                                           \
    static void rnn_bwd_##T(size_t n, int relu, const T *y, const T *g, T *ggx, T *ggh)         \
    {                                                                                           \
        T d[CHUNK];                                                                             \
        for (size_t k0 = 0; k0 < n; k0 += CHUNK) {                                              \
            size_t w = n - k0 < CHUNK ? n - k0 : CHUNK;                                         \
            if (relu)                                                                           \
                for (size_t j = 0; j < w; j++) d[j] = y[k0 + j] > 0 ? g[k0 + j] : 0;            \
            else                                                                                \
                for (size_t j = 0; j < w; j++) d[j] = g[k0 + j] * (1 - y[k0 + j] * y[k0 + j]);  \
            add_gate_##T(ggx, ggh, (int64_t)k0, d, (int64_t)w);                                 \
        }                                                                                       \
    }
DEFINE_RNN(float)
DEFINE_RNN(double)

/*
 * Every op here computes row b of its output (and of its gradients) from
 * row b of its inputs alone, so a step's rows can be cut into consecutive
 * ranges, one per thread (split.h): each element goes through the same
 * arithmetic as with one thread, and the bits never depend on the thread
 * count. A range of rows is the op's kernel called on the rows' pointers
 * with B = the range's length (the Elman cell, elementwise, below: a range
 * of elements). The rule of when to split is AD__TUNE_CELL_MIN_PER_THREAD
 * (tuning.h).
 */
typedef struct cell_job {
    ad__op op;
    int f32, bwd;
    int64_t H, GH;         /* units, and the width of gx and gh (G H) */
    const void *x, *h, *s; /* gx, gh and the state ([B, G H], [B, G H], [B, H]) */
    void *out, *saved;     /* [B, H], and the saved planes */
    size_t plane;          /* elements of one saved plane (B H of the whole step) */
    const void *g;         /* backward: the gradient of out */
    void *gx, *gh, *gs;    /* backward: the gradients of gx, gh and the state, any NULL */
} cell_job;

/* Row b0 of a [B, w] array, NULL staying NULL; plane i of the saved ones. */
#define ROW(T, p, b0, w) ((p) ? (T *)(p) + (size_t)(b0) * (size_t)(w) : NULL)
#define SAVED(T, i) ((T *)j->saved + (size_t)(i) * j->plane + at_h)

/* One function per op and dtype, so that each computes only its own rows'
 * pointers (the tiny nets call them for a few elements). */
#define CELL_ROW_PTRS(T)                                                                           \
    int64_t H = j->H, GH = j->GH;                                                                  \
    size_t at_g = b0 * (size_t)GH, at_h = b0 * (size_t)H; /* element offsets of row b0 */         \
    const T *x = (const T *)j->x + at_g, *h = (const T *)j->h + at_g;                              \
    T *out = (T *)j->out + at_h, *ggx = ROW(T, j->gx, b0, GH), *ggh = ROW(T, j->gh, b0, GH);       \
    const T *g = j->bwd ? (const T *)j->g + at_h : NULL;
#define CELL_STATE_PTRS(T)                                                                         \
    const T *s = (const T *)j->s + at_h;                                                           \
    T *gs = ROW(T, j->gs, b0, H);

#define DEFINE_CELL_ROWS(T)                                                                        \
    static void lstm_state_rows_##T(const cell_job *j, size_t b0, int64_t B)                       \
    {                                                                                              \
        CELL_ROW_PTRS(T)                                                                           \
        CELL_STATE_PTRS(T)                                                                         \
        if (j->bwd) lstm_state_bwd_##T(B, H, s, SAVED(T, 0), SAVED(T, 1), SAVED(T, 2), g, ggx, ggh, gs); \
        else lstm_state_fwd_##T(B, H, x, h, s, out, SAVED(T, 0), SAVED(T, 1), SAVED(T, 2));         \
    }                                                                                              \
    static void lstm_output_rows_##T(const cell_job *j, size_t b0, int64_t B)                      \
    {                                                                                              \
        CELL_ROW_PTRS(T)                                                                           \
        CELL_STATE_PTRS(T)                                                                         \
        (void)x, (void)h;                                                                          \
        if (j->bwd) lstm_output_bwd_##T(B, H, SAVED(T, 0), SAVED(T, 1), g, ggx, ggh, gs);           \
        else lstm_output_fwd_##T(B, H, x, h, s, out, SAVED(T, 0), SAVED(T, 1));                     \
    }                                                                                              \
    static void gru_rows_##T(const cell_job *j, size_t b0, int64_t B)                              \
    {                                                                                              \
        CELL_ROW_PTRS(T)                                                                           \
        CELL_STATE_PTRS(T)                                                                         \
        if (j->bwd) gru_bwd_##T(B, H, h, s, SAVED(T, 0), SAVED(T, 1), SAVED(T, 2), g, ggx, ggh, gs); \
        else gru_fwd_##T(B, H, x, h, s, out, SAVED(T, 0), SAVED(T, 1), SAVED(T, 2));                \
    }
DEFINE_CELL_ROWS(float)
DEFINE_CELL_ROWS(double)

static void cell_range(void *ctx, size_t lo, size_t hi, int part)
{
    const cell_job *j = ctx;
    int64_t B = (int64_t)(hi - lo);
    (void)part;
    switch (j->op) {
    case AD_OP_LSTM_CELL_STATE:
        if (j->f32) lstm_state_rows_float(j, lo, B);
        else lstm_state_rows_double(j, lo, B);
        break;
    case AD_OP_LSTM_CELL_OUTPUT:
        if (j->f32) lstm_output_rows_float(j, lo, B);
        else lstm_output_rows_double(j, lo, B);
        break;
    default:
        if (j->f32) gru_rows_float(j, lo, B);
        else gru_rows_double(j, lo, B);
    }
}

/* Runs a job over its B rows, split over the threads when the step is large
 * enough. The work is gx's elements. */
static void run_rows(const cell_job *j, size_t rows)
{
    int parts = ad__split_parts(rows, rows * (size_t)j->GH, AD__TUNE_CELL_MIN_PER_THREAD);
    ad__split_run(rows, parts, 1, cell_range, (void *)j);
}

/* n's forward (bwd = 0) or backward. */
static void run_cell(const ad_node *n, int bwd, void *gx, void *gh, void *gs)
{
    cell_job j = {n->op, n->out->dtype == AD_F32, bwd, H_COLS(n), n->in[0]->shape.dim[1], n->in[0]->data,
                  n->in[1]->data, n->in[2]->data, n->out->data, n->saved, n->out->numel,
                  bwd ? n->out->grad : NULL, gx, gh, gs};
    run_rows(&j, (size_t)B_ROWS(n));
}

void ad__gru_gates(int f32, int bwd, int64_t B, int64_t H, const void *gx, const void *gh, const void *h, void *out,
                   void *saved, const void *g, void *ggx, void *ggh, void *gh_prev)
{
    cell_job j = {AD_OP_GRU_CELL, f32, bwd, H, 3 * H, gx, gh, h, out, saved, (size_t)(B * H), g, ggx, ggh, gh_prev};
    run_rows(&j, (size_t)B);
}

/* The Elman cell is elementwise: its split is over elements, on the
 * pointers themselves (the tiny nets of a few units call it most). */
typedef struct rnn_job {
    int f32, relu;
    const void *x, *h, *g; /* forward: gx, gh; backward: y and g */
    void *y, *gx, *gh;
} rnn_job;

static void rnn_fwd_range(void *ctx, size_t lo, size_t hi, int part)
{
    const rnn_job *j = ctx;
    (void)part;
    if (j->f32) rnn_fwd_float(hi - lo, j->relu, (const float *)j->x + lo, (const float *)j->h + lo, (float *)j->y + lo);
    else rnn_fwd_double(hi - lo, j->relu, (const double *)j->x + lo, (const double *)j->h + lo, (double *)j->y + lo);
}

static void rnn_bwd_range(void *ctx, size_t lo, size_t hi, int part)
{
    const rnn_job *j = ctx;
    (void)part;
    if (j->f32)
        rnn_bwd_float(hi - lo, j->relu, (const float *)j->y + lo, (const float *)j->g + lo, ROW(float, j->gx, lo, 1),
                      ROW(float, j->gh, lo, 1));
    else
        rnn_bwd_double(hi - lo, j->relu, (const double *)j->y + lo, (const double *)j->g + lo,
                       ROW(double, j->gx, lo, 1), ROW(double, j->gh, lo, 1));
}

/* Split over elements when the step is large enough (ad__split_parts). */
static int rnn_parts(size_t numel) { return ad__split_parts(numel, numel, AD__TUNE_CELL_MIN_PER_THREAD); }

void ad__rnn_gates_fwd(int f32, int relu, size_t numel, const void *gx, const void *gh, void *out)
{
    rnn_job j = {f32, relu, gx, gh, NULL, out, NULL, NULL};
    ad__split_run(numel, rnn_parts(numel), 16, rnn_fwd_range, &j);
}

void ad__rnn_gates_bwd(int f32, int relu, size_t numel, const void *y, const void *g, void *ggx, void *ggh)
{
    rnn_job j = {f32, relu, NULL, NULL, g, (void *)y, ggx, ggh};
    ad__split_run(numel, rnn_parts(numel), 16, rnn_bwd_range, &j);
}

ad_status ad__rnn_cell_fwd(ad_tape *t, ad_node *n)
{
    (void)t;
    ad__rnn_gates_fwd(n->out->dtype == AD_F32, n->a.activation == AD_RNN_RELU, n->out->numel, n->in[0]->data,
                      n->in[1]->data, n->out->data);
    return AD_OK;
}

void ad__rnn_cell_bwd(ad_tape *t, ad_node *n)
{
    void *gx = ad__grad(t, n->in[0]), *gh = ad__grad(t, n->in[1]);
    ad__rnn_gates_bwd(n->out->dtype == AD_F32, n->a.activation == AD_RNN_RELU, n->out->numel, n->out->data,
                      n->out->grad, gx, gh);
}

ad_tensor *ad_rnn_cell(ad_tape *t, ad_tensor *gx, ad_tensor *gh, ad_rnn_activation activation)
{
    ad__args args = {0};
    args.activation = (int)activation;
    ad_tensor *in[2] = {gx, gh};
    return ad__record(t, AD_OP_RNN_CELL, in, 2, &args);
}

/* ---- forward mode ------------------------------------------------------------------ */

/* Element i of a tangent block, zero for an input without tangents. */
#define TG(p, i) ((p) ? (p)[i] : 0)

/*
 * With a = gx + gh the gate pre-activations and d. the tangents (zero where
 * an input has none), from the forward equations (docs/derivations.md,
 * "Forward mode"):
 *   Elman:      dh' = act'(.) (dgx + dgh), act' = 1 - h'^2 or [h' > 0]
 *   LSTM state: dc' = sf dc + c sf(1-sf) da_f + tg si(1-si) da_i + si (1-tg^2) da_g
 *   LSTM out:   dh' = tc so(1-so) da_o + so (1-tc^2) dc'
 *   GRU:        dr = r(1-r) da_r, dz = z(1-z) da_z,
 *               dn = (1-n^2)(dgx_n + dr gh_n + r dgh_n),
 *               dh' = dn + dz (h - n) + z (dh - dn)
 */
#define DEFINE_CELL_JVP(T)                                                                        \
    static void rnn_jvp_##T(size_t n, int relu, const T *y, const T *dx, const T *dh, T *dy)     \
    {                                                                                            \
        for (size_t k = 0; k < n; k++) {                                                         \
            T s = TG(dx, k) + TG(dh, k);                                                         \
            dy[k] = relu ? (y[k] > 0 ? s : 0) : (1 - y[k] * y[k]) * s;                           \
        }                                                                                        \
    }                                                                                            \
    static void lstm_state_jvp_##T(int64_t B, int64_t H, const T *c, const T *si, const T *sf,   \
                                   const T *tg, const T *dx, const T *dh, const T *dc, T *dy)    \
    {                                                                                            \
        for (int64_t b = 0; b < B; b++)                                                          \
            for (int64_t j = 0; j < H; j++) {                                                    \
                int64_t k = b * H + j, at = b * 4 * H + j;                                       \
                T ai = TG(dx, at) + TG(dh, at), af = TG(dx, at + H) + TG(dh, at + H);            \
                T ag = TG(dx, at + 2 * H) + TG(dh, at + 2 * H);                                  \
                dy[k] = sf[k] * TG(dc, k) + c[k] * sf[k] * (1 - sf[k]) * af +                    \
                        tg[k] * si[k] * (1 - si[k]) * ai + si[k] * (1 - tg[k] * tg[k]) * ag;     \
            }                                                                                    \
    }                                                                                            \
    static void lstm_output_jvp_##T(int64_t B, int64_t H, const T *so, const T *tc, const T *dx, \
                                    const T *dh, const T *dc, T *dy)                             \
    {                                                                                            \
        for (int64_t b = 0; b < B; b++)                                                          \
            for (int64_t j = 0; j < H; j++) {                                                    \
                int64_t k = b * H + j, at = b * 4 * H + 3 * H + j;                               \
                T ao = TG(dx, at) + TG(dh, at);                                                  \
                dy[k] = tc[k] * so[k] * (1 - so[k]) * ao + so[k] * (1 - tc[k] * tc[k]) * TG(dc, k); \
            }                                                                                    \
    }                                                                                            \
    static void gru_jvp_##T(int64_t B, int64_t H, const T *gh, const T *hp, const T *r,          \
                            const T *z, const T *nn, const T *dx, const T *dh, const T *dp, T *dy) \
    {                                                                                            \
        for (int64_t b = 0; b < B; b++)                                                          \
            for (int64_t j = 0; j < H; j++) {                                                    \
                int64_t k = b * H + j, at = b * 3 * H + j;                                       \
                T dr = r[k] * (1 - r[k]) * (TG(dx, at) + TG(dh, at));                            \
                T dz = z[k] * (1 - z[k]) * (TG(dx, at + H) + TG(dh, at + H));                    \
                T dn = (1 - nn[k] * nn[k]) *                                                     \
                       (TG(dx, at + 2 * H) + dr * gh[at + 2 * H] + r[k] * TG(dh, at + 2 * H));   \
                dy[k] = dn + dz * (hp[k] - nn[k]) + z[k] * (TG(dp, k) - dn);                     \
            }                                                                                    \
    }
DEFINE_CELL_JVP(float)
DEFINE_CELL_JVP(double)

void ad__rnn_gates_jvp(int f32, int relu, size_t numel, const void *y, const void *dx, const void *dh, void *dy)
{
    if (f32) rnn_jvp_float(numel, relu, y, dx, dh, dy);
    else rnn_jvp_double(numel, relu, y, dx, dh, dy);
}

void ad__gru_gates_jvp(int f32, int64_t B, int64_t H, const void *gh, const void *h, const void *saved,
                       const void *dx, const void *dh, const void *dp, void *dy)
{
    size_t bh = (size_t)(B * H);
    if (f32) {
        const float *p = saved;
        gru_jvp_float(B, H, gh, h, p, p + bh, p + 2 * bh, dx, dh, dp, dy);
    } else {
        const double *p = saved;
        gru_jvp_double(B, H, gh, h, p, p + bh, p + 2 * bh, dx, dh, dp, dy);
    }
}

/* Direction k's block of input i's tangents (NULL when it has none). */
static const void *tan_block(ad_tape *t, const ad_node *n, int i, size_t k)
{
    const char *p = ad__tan(t, n->in[i]);
    return p ? p + k * n->in[i]->numel * ad__dtype_size(n->out->dtype) : NULL;
}

static ad_status cell_jvp(ad_tape *t, ad_node *n)
{
    if (n->op != AD_OP_RNN_CELL && !n->saved) return ad__jvp_need_saved(t, n);
    char *dy = ad__tan_new(t, n);
    if (!dy) return ad_tape_status(t);
    int f32 = n->out->dtype == AD_F32, relu = n->a.activation == AD_RNN_RELU;
    size_t ny = n->out->numel, es = ad__dtype_size(n->out->dtype);
    for (size_t k = 0; k < (size_t)ad__tan_k(t); k++) {
        const void *dx = tan_block(t, n, 0, k), *dh = tan_block(t, n, 1, k);
        const void *ds = n->n_in > 2 ? tan_block(t, n, 2, k) : NULL;
        void *yk = dy + k * ny * es;
        switch (n->op) {
        case AD_OP_RNN_CELL:
            ad__rnn_gates_jvp(f32, relu, ny, n->out->data, dx, dh, yk);
            break;
        case AD_OP_LSTM_CELL_STATE:
            if (f32) lstm_state_jvp_float(B_ROWS(n), H_COLS(n), DATA(float, n, 2), PLANE(float, n, 0),
                                          PLANE(float, n, 1), PLANE(float, n, 2), dx, dh, ds, yk);
            else lstm_state_jvp_double(B_ROWS(n), H_COLS(n), DATA(double, n, 2), PLANE(double, n, 0),
                                       PLANE(double, n, 1), PLANE(double, n, 2), dx, dh, ds, yk);
            break;
        case AD_OP_LSTM_CELL_OUTPUT:
            if (f32) lstm_output_jvp_float(B_ROWS(n), H_COLS(n), PLANE(float, n, 0), PLANE(float, n, 1), dx, dh, ds, yk);
            else lstm_output_jvp_double(B_ROWS(n), H_COLS(n), PLANE(double, n, 0), PLANE(double, n, 1), dx, dh, ds, yk);
            break;
        default:
            if (f32) gru_jvp_float(B_ROWS(n), H_COLS(n), DATA(float, n, 1), DATA(float, n, 2), PLANE(float, n, 0),
                                   PLANE(float, n, 1), PLANE(float, n, 2), dx, dh, ds, yk);
            else gru_jvp_double(B_ROWS(n), H_COLS(n), DATA(double, n, 1), DATA(double, n, 2), PLANE(double, n, 0),
                                PLANE(double, n, 1), PLANE(double, n, 2), dx, dh, ds, yk);
        }
    }
    return AD_OK;
}

ad_status ad__rnn_cell_jvp(ad_tape *t, ad_node *n) { return cell_jvp(t, n); }
ad_status ad__lstm_cell_state_jvp(ad_tape *t, ad_node *n) { return cell_jvp(t, n); }
ad_status ad__lstm_cell_output_jvp(ad_tape *t, ad_node *n) { return cell_jvp(t, n); }
ad_status ad__gru_cell_jvp(ad_tape *t, ad_node *n) { return cell_jvp(t, n); }

/* ---- LSTM and GRU entry points ------------------------------------------------------ */

ad_status ad__lstm_cell_state_fwd(ad_tape *t, ad_node *n)
{
    if (keep_planes(t, n, 3) != AD_OK) return ad_tape_status(t);
    run_cell(n, 0, NULL, NULL, NULL);
    return AD_OK;
}

ad_status ad__lstm_cell_output_fwd(ad_tape *t, ad_node *n)
{
    if (keep_planes(t, n, 2) != AD_OK) return ad_tape_status(t);
    run_cell(n, 0, NULL, NULL, NULL);
    return AD_OK;
}

ad_status ad__gru_cell_fwd(ad_tape *t, ad_node *n)
{
    if (keep_planes(t, n, 3) != AD_OK) return ad_tape_status(t);
    run_cell(n, 0, NULL, NULL, NULL);
    return AD_OK;
}

/* The gradients are had (allocated) here, on the calling thread. */
static void cell_bwd(ad_tape *t, ad_node *n)
{
    void *gx = ad__grad(t, n->in[0]), *gh = ad__grad(t, n->in[1]), *gs = ad__grad(t, n->in[2]);
    run_cell(n, 1, gx, gh, gs);
}

void ad__lstm_cell_state_bwd(ad_tape *t, ad_node *n) { cell_bwd(t, n); }
void ad__lstm_cell_output_bwd(ad_tape *t, ad_node *n) { cell_bwd(t, n); }
void ad__gru_cell_bwd(ad_tape *t, ad_node *n) { cell_bwd(t, n); }

static ad_tensor *cell(ad_tape *t, ad__op op, ad_tensor *gx, ad_tensor *gh, ad_tensor *state)
{
    ad_tensor *in[3] = {gx, gh, state};
    return ad__record(t, op, in, 3, NULL);
}

ad_tensor *ad_lstm_cell_state(ad_tape *t, ad_tensor *gx, ad_tensor *gh, ad_tensor *c)
{
    return cell(t, AD_OP_LSTM_CELL_STATE, gx, gh, c);
}

ad_tensor *ad_lstm_cell_output(ad_tape *t, ad_tensor *gx, ad_tensor *gh, ad_tensor *c_next)
{
    return cell(t, AD_OP_LSTM_CELL_OUTPUT, gx, gh, c_next);
}

ad_tensor *ad_gru_cell(ad_tape *t, ad_tensor *gx, ad_tensor *gh, ad_tensor *h)
{
    return cell(t, AD_OP_GRU_CELL, gx, gh, h);
}
