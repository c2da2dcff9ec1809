/*
 * internal.h - what the autodiff files share with each other. Never installed.
 *
 * Cross-file internals are prefixed ad__. The layout of a node, the op table
 * and the one gate every op goes through (ad__record) live here.
 */
#ifndef UNROLL_AD_INTERNAL_H
#define UNROLL_AD_INTERNAL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "op_list.h"
#include "ops.h"
#include "status.h"
#include "tape.h"
#include "tensor.h"
#include "tuning.h"

/* Error and growth paths kept out of line, so that the common path of an op
 * is a short straight run. */
#if defined(__GNUC__)
#define AD__COLD __attribute__((noinline, cold))
#else
#define AD__COLD
#endif

/* ---- tensors and parameters ---------------------------------------------------- */

typedef struct ad_node ad_node;

struct ad_tensor {
    ad_dtype dtype;
    ad_shape shape;
    size_t numel;
    void *data;
    /* Tape tensors: arena gradient, valid only while grad_pass equals the
     * tape's pass (so each backward starts from zero without a sweep).
     * Parameter views: the parameter's gradient buffer. */
    void *grad;
    unsigned grad_pass;
    ad_tape *tape;     /* NULL for heap tensors and parameter views */
    ad_node *node;     /* the node that produced it (tape tensors) */
    ad_param *param;   /* set on temporal copies */
    unsigned char requires_grad;
    unsigned char owns_data; /* heap tensor whose data must be freed */
    unsigned char is_heap;   /* heap tensor header that ad_tensor_free may free */
    unsigned char grad_pinned; /* its gradient is read after its node's backward (stacked weight gradients) */
    unsigned char data_needed; /* a recorded op's backward reads the data: it cannot be released */
    unsigned char released;    /* ad_tape_release gave the data back; no op may read it */
    unsigned char uses;        /* ops recorded with it as an input: 0, 1 or 2 (two or more) */
    unsigned char in_region;   /* stands for a copy used inside a checkpointed region: only its norm is kept */
    ad_tensor *view_of;        /* a view's tensor that owns the data (slices of a block) */
    /* Sum of squares of the gradient, recorded when the tape's mode drops the
     * buffer (copy_grads = norms, release_grads); such a gradient has
     * grad_pass equal to the tape's pass and grad NULL (copy_grads.c). */
    double grad_sq;
};

struct ad_param {
    char name[AD_NAME_SIZE];
    ad_tensor value; /* views: data -> values */
    ad_tensor grad;  /* data -> gradient */
    int owns_storage;
};

/* ---- ops ------------------------------------------------------------------------- */

/* The enum of ops, generated from the one list (op_list.h). */
#define AD__OP_ENUM(ID, nm, arity, shape, fn, flags, keeps) AD_OP_##ID,
typedef enum ad__op {
    AD__OP_LIST(AD__OP_ENUM)
    AD_OP_COUNT
} ad__op;

/* Arguments an op keeps for forward and backward; each op uses a few fields.
 * The fields after `view` share storage: no op uses two of the groups, and a
 * node copies 64 bytes of arguments instead of all of them. Zero-initialising
 * an ad__args zeroes the union through its first member, which covers it. */
typedef struct ad__args {
    int axis;
    int keepdim;
    int flags;     /* matmul transposes (also rnn_sequence's) */
    int activation; /* rnn_cell, rnn_sequence: an ad_rnn_activation */
    int reduction; /* ad_reduction */
    int view;      /* set by a shape rule: the output shares input 0's data (no buffer) */
    union {
        struct {               /* slice: start, len; gather_rows: idx, n_idx; */
            int64_t start;     /* cross_entropy: idx, n_idx, ignore_index and */
            int64_t len;       /* len (the counted rows) */
            const int64_t *idx; /* copied into the arena */
            int64_t n_idx;
            int64_t ignore_index;
        };
        struct {           /* scalar ops: scalar; dropout: scalar (p) and rng, */
            double scalar; /* which only forward may use */
            ad_rng *rng;
        };
        int perm[AD_MAX_RANK]; /* permute */
        ad_shape shape;        /* leaves, reshape */
        struct {               /* custom */
            const ad_custom_op *custom;
            void *custom_ctx;
        };
    };
} ad__args;

/* Inputs are kept inline when few; concat may have many (arena array). */
#define AD__INLINE_IN 3

struct ad_node {
    ad__op op;
    int n_in;
    ad_tensor **in; /* points to in_inline or an arena array */
    ad_tensor *in_inline[AD__INLINE_IN];
    ad_tensor *out;
    ad__args a;
    void *saved;       /* what backward needs beyond inputs and output */
    const char *label; /* arena copy of the tape label at record time, or NULL */
    size_t index;      /* position on the tape */
};

/*
 * One row per op. shape: writes the output shape or fails the tape with a
 * message naming the op and shapes; it may set n->a.view, and then no
 * output buffer is allocated and forward points n->out->data into input 0. forward: computes n->out (already
 * allocated) and may allocate n->saved. backward: adds gradients of the
 * inputs that need them (ad__grad) given n->out->grad. jvp: writes the
 * tangents of n->out (ad__tan_new) from those of its inputs (ad__tan), for
 * each of the walk's directions; it reads only the data backward reads.
 */
typedef struct ad__op_def {
    const char *name;
    int arity; /* -1: any number >= 1 */
    ad_status (*shape)(ad_tape *t, ad_node *n, ad_shape *out);
    ad_status (*forward)(ad_tape *t, ad_node *n);
    void (*backward)(ad_tape *t, ad_node *n);
    ad_status (*jvp)(ad_tape *t, ad_node *n); /* forward mode: n->out's tangents (forward.c) */
    unsigned char keeps; /* the data backward reads: AD__KEEPS_* bits */
    unsigned char flags; /* AD__ROW_* bits */
} ad__op_def;

/* Bits of ad__op_def.flags. USER_NAMED: messages name a node of this op by
 * the name its arguments carry (a custom op's), see ad__op_name. */
#define AD__ROW_USER_NAMED 0x1u

/* The name messages, anomaly reports and DOT graphs give a node of op with
 * arguments a (may be NULL): a custom op's own name, else the row's. */
const char *ad__op_name(ad__op op, const ad__args *a);

/* Bits of ad__op_def.keeps: input i's data (i < 6), every input's, the output's. */
#define AD__KEEPS_IN(i) (1u << (i))
#define AD__KEEPS_ALL_IN 0x40u
#define AD__KEEPS_OUT 0x80u

extern const ad__op_def ad__ops[AD_OP_COUNT];

/* The gate: validates, shapes, allocates, runs forward, checks anomalies and
 * appends the node. Returns NULL (tape in error) on any failure. */
ad_tensor *ad__record(ad_tape *t, ad__op op, ad_tensor *const *in, int n_in, const ad__args *args);

/* Records a leaf of the given kind with uninitialised data. */
ad_tensor *ad__leaf(ad_tape *t, ad__op op, ad_dtype dtype, ad_shape shape);

/* Records a temporal copy of p (the node of ad_use): no buffer of its own, its
 * data aliases p's values (or a probed private copy, see ad__tape_set_probe).
 * t must be a tape not in error and p non-NULL. */
ad_tensor *ad__copy_leaf(ad_tape *t, ad_param *p);

/* ---- tape internals ----------------------------------------------------------------- */

/*
 * The tape is made of parts, one per mechanism, each written only by the
 * file that owns it (named at the part); every other file goes through that
 * file's functions or the inline accessors below, which exist so that the
 * checks every op and every backward step makes (status, pass, the arena's
 * fast path) stay inlined. tests/check_tape_parts.sh holds the files to
 * this.
 */
#define AD__ALIGN 64
#define AD__LABEL_SIZE 64
#define AD__MSG_SIZE 512

/* A chunk of arena memory; chunks form a list kept across resets. */
typedef struct ad__chunk {
    struct ad__chunk *next;
    void *raw; /* what the allocator returned */
    unsigned char *base;
    size_t cap;
    size_t used;
} ad__chunk;

/* The arena and the allocator behind it (arena.c). */
typedef struct ad__arena {
    void *(*alloc)(void *ctx, size_t n);
    void (*free)(void *ctx, void *ptr);
    void *ctx;
    size_t chunk_bytes;
    ad__chunk *first;
    ad__chunk *cur;
    size_t reserved;
    size_t used_before_cur; /* bytes used in chunks before cur */
} ad__arena;

/* A place in the arena (arena.c) that ad__arena_rewind returns to,
 * forgetting what was handed out after it. */
typedef struct ad__arena_mark {
    ad__chunk *cur;
    size_t used;
    size_t used_before;
} ad__arena_mark;

/* Where a replay returns the arena to (replay.c): the place the first
 * backward after the last recorded node started from. `nodes` is the node
 * count then; `checked` says the nodes were found replayable. */
typedef struct ad__replay_point {
    int marked;
    int checked;
    size_t nodes;
    ad__arena_mark arena;
} ad__replay_point;

/* The node list and the label new nodes carry (record.c). */
typedef struct ad__node_list {
    ad_node **at;
    size_t n, cap;
    char label[AD__LABEL_SIZE];
    const char *label_copy; /* arena copy of label, shared by nodes until it changes */
} ad__node_list;

/* Buffers handed back for reuse (release.c): one list per size, the first
 * bytes of a free buffer pointing to the next; cleared by a reset.
 * AD__FREE_CLASSES and AD__RELEASE_MIN: tuning.h. */
typedef struct ad__buffer_pool {
    int release_grads; /* intermediate gradient buffers are reused during backward */
    struct {
        size_t bytes;
        void *head;
    } list[AD__FREE_CLASSES];
    int n_lists;
} ad__buffer_pool;

/* Weight gradients of lean copies left for a stacked product (stacked_grads.c). */
typedef struct ad__deferred ad__deferred;
typedef struct ad__grad_stack {
    int on; /* the tape allows it (lean, not turned off) */
    ad__deferred *rec;
    size_t n, cap, rows;
    void *buf; /* arena buffer the stacked rows are copied into */
    size_t bytes;
} ad__grad_stack;

/* Weights packed for the kernel once per tape (packed_cache.c). */
typedef struct ad__packed_weight {
    const void *data;
    int trans;
    size_t n, k;
    void *packed;
} ad__packed_weight;
typedef struct ad__packed_cache {
    int on; /* the tape allows it (lean, not turned off) */
    int n;
    ad__packed_weight at[AD__PACKED_WEIGHTS];
} ad__packed_cache;

/* Forward mode (forward.c): per node, its output's tangents (K blocks of
 * numel elements) or NULL for a zero tangent; arena memory, so a reset
 * forgets them. */
typedef struct ad__tangents {
    void **at;
    size_t n;
    int k;
} ad__tangents;

/* Per-copy gradient checks (probe.c): the `copy`-th use of `param` (counted
 * from the last reset) sees element `index` shifted by `delta`; every other
 * use sees the parameter unchanged. */
typedef struct ad__probe {
    const ad_param *param;
    size_t copy, index, seen;
    double delta;
} ad__probe;

struct ad_tape {
    /* tape.c: the settings, the sticky error and the pass number */
    ad_status status;
    unsigned pass;
    int grad_enabled;
    int anomaly;
    ad_copy_grads copy_grads;
    int lean_copies; /* copy_grads is not KEEP: no per-copy gradient is kept */
    unsigned fast_off; /* AD_FAST_* paths turned off by the options */
    char msg[AD__MSG_SIZE];
    ad__arena arena;        /* arena.c */
    ad__node_list nodes;    /* record.c */
    ad__buffer_pool pool;   /* release.c */
    ad__grad_stack stack;   /* stacked_grads.c */
    ad__packed_cache packs; /* packed_cache.c */
    ad__tangents fwd;       /* forward.c */
    ad__probe probe;        /* probe.c */
    ad__replay_point replay; /* replay.c */
    struct {
        void *buf; /* arena scratch for the Gram form of copies' norms */
        size_t bytes;
    } gram;         /* copy_grads.c */
    ad_tape *scratch; /* checkpoint.c: where checkpointed regions run, made on first use */
};

/* Accessors of tape.c's part. */
static inline ad_status ad__status(const ad_tape *t) { return t->status; }
static inline unsigned ad__tape_pass(const ad_tape *t) { return t->pass; }
static inline int ad__tape_lean_copies(const ad_tape *t) { return t->lean_copies; }
static inline int ad__tape_anomaly(const ad_tape *t) { return t->anomaly; }
static inline int ad__tape_grad_enabled(const ad_tape *t) { return t->grad_enabled; }
static inline ad_copy_grads ad__tape_copy_grads(const ad_tape *t) { return t->copy_grads; }
static inline unsigned ad__tape_fast_off(const ad_tape *t) { return t->fast_off; }
/* Whether the lean-tape fast path `path` (an AD_FAST_* bit) is allowed. */
static inline int ad__tape_fast(const ad_tape *t, unsigned path) { return t->lean_copies && !(t->fast_off & path); }

/* The start of a new backward pass (tape.c). */
unsigned ad__tape_next_pass(ad_tape *t);
/* Clears the sticky error, for a caller that expected it and handled it (tape.c). */
void ad__tape_clear_error(ad_tape *t);

/* The node list of a tape (record.c; backward, DOT export, forward mode). */
static inline ad_node *const *ad__tape_nodes(const ad_tape *t, size_t *count)
{
    *count = t->nodes.n;
    return t->nodes.at;
}
/* The label new nodes get ("" for none; record.c). */
static inline const char *ad__tape_label(const ad_tape *t) { return t->nodes.label; }

/* The allocator of the tape (arena.c), for the few heap blocks outside the
 * arena (the node list, the stacked records, the scratch tape). */
void *ad__heap_alloc(ad_tape *t, size_t bytes);
void ad__heap_free(ad_tape *t, void *p);
/* Options for a tape with t's allocator and arena chunk size (arena.c). */
void ad__arena_options(const ad_tape *t, ad_tape_options *o);

/* Each part's set-up, reset (every buffer was arena memory) and teardown,
 * called by tape.c. */
void ad__arena_init(ad_tape *t, const ad_tape_options *o);
void ad__arena_reset(ad_tape *t);
void ad__arena_free(ad_tape *t);
ad__arena_mark ad__arena_where(const ad_tape *t);
void ad__arena_rewind(ad_tape *t, const ad__arena_mark *m);
size_t ad__arena_bytes_used(const ad_tape *t);
size_t ad__arena_bytes_reserved(const ad_tape *t);
void ad__nodes_free(ad_tape *t);
void ad__pool_init(ad_tape *t, int release_grads);
void ad__stack_init(ad_tape *t);
void ad__stack_free(ad_tape *t);
void ad__packs_init(ad_tape *t);
void ad__scratch_free(ad_tape *t);
/* The resets that only forget arena memory are inline: a training loop
 * resets its tape every step. */
static inline void ad__nodes_reset(ad_tape *t)
{
    t->nodes.n = 0;
    t->nodes.label[0] = '\0';
    t->nodes.label_copy = NULL;
}
static inline void ad__pool_reset(ad_tape *t) { t->pool.n_lists = 0; }
static inline void ad__stack_reset(ad_tape *t) { t->stack.buf = NULL, t->stack.bytes = 0; }
static inline void ad__packs_reset(ad_tape *t) { t->packs.n = 0; /* and the values may change now */ }
static inline void ad__gram_reset(ad_tape *t) { t->gram.buf = NULL, t->gram.bytes = 0; }
static inline void ad__tangents_reset(ad_tape *t) { t->fwd.at = NULL, t->fwd.n = 0; }
static inline void ad__probe_reset(ad_tape *t) { t->probe.seen = 0; }
static inline void ad__replay_reset(ad_tape *t) { t->replay.marked = 0; }
/* Where a replay will return to, taken by each backward whose tape gained
 * nodes since the last one (replay.c). */
void ad__replay_mark(ad_tape *t);

/* Whether x's data was handed back by ad_tape_release (its own, or that of
 * the tensor it views): nothing may read it any more. */
static inline int ad__data_released(const ad_tensor *x)
{
    return x->released || (x->view_of && x->view_of->released);
}

/* Element size of a dtype, 0 for an invalid one (ad_dtype_size, inlined). */
static inline size_t ad__dtype_size(ad_dtype d)
{
    return d == AD_F32 ? sizeof(float) : d == AD_F64 ? sizeof(double) : 0;
}

/* Arena allocation, 64-byte aligned, a multiple of 64 bytes and at least 64;
 * NULL after failing the tape with AD_ERR_NOMEM. ad__bump is its fast path,
 * inlined where nodes and gradients are made. */
void *ad__alloc(ad_tape *t, size_t bytes);
static inline void *ad__bump(ad_tape *t, size_t bytes)
{
    ad__chunk *c = t->arena.cur;
    /* need is 0 for bytes == 0 and when rounding up wraps (bytes within one
     * alignment unit of SIZE_MAX); need - 1 then wraps to SIZE_MAX, which no
     * chunk has free, so both go to ad__alloc with the rest. */
    size_t need = (bytes + AD__ALIGN - 1) & ~(size_t)(AD__ALIGN - 1);
    if (c && need - 1 < c->cap - c->used) {
        void *p = c->base + c->used;
        c->used += need;
        return p;
    }
    return ad__alloc(t, bytes);
}

/* A buffer of `bytes` handed back earlier (release.c), or NULL. Inline:
 * every op output and gradient of a training step asks. */
static inline void *ad__pool_take(ad_tape *t, size_t bytes)
{
    ad__buffer_pool *p = &t->pool;
    for (int i = 0; i < p->n_lists; i++) {
        if (p->list[i].bytes != bytes) continue;
        void *g = p->list[i].head;
        if (g) memcpy(&p->list[i].head, g, sizeof(void *)); /* the buffer's first bytes link to the next */
        return g;
    }
    return NULL;
}
/* Whether backward hands intermediate gradients back (release_grads). */
static inline int ad__tape_releases_grads(const ad_tape *t) { return t->pool.release_grads; }

/* The gradient buffer of x for the current backward pass, allocated and
 * zeroed on first use; NULL if x needs no gradient or on failure (tape set). */
void *ad__grad_new(ad_tape *t, ad_tensor *x);
void *ad__copy_grad(ad_tape *t, ad_tensor *x);
static inline void *ad__grad(ad_tape *t, ad_tensor *x)
{
    if (!x->requires_grad) return NULL;
    if (x->param && t->lean_copies) return ad__copy_grad(t, x); /* no kept per-copy buffer */
    if (x->grad_pass == t->pass && x->grad) return x->grad;
    return ad__grad_new(t, x);
}

/* ---- copy gradients by mode (copy_grads.c) ------------------------------------------ */

/* ad__grad for a copy on a tape that does not keep copies' gradients: the
 * parameter's gradient (NONE), or (NORMS) a buffer of the copy's own that
 * ad__copy_add adds into the parameter, recording its norm, and gives back.
 * (Declared above.) */

/* Where the weight gradient op(A)^T G (or G^T op(A) when tb) of a product
 * goes, for b a copy on a tape that does not keep copies' gradients (the
 * caller checked b->param and t->lean_copies). *direct is set when it is the
 * parameter's gradient itself: then the caller may stack it
 * (ad__defer_weight_grad), and on a NORMS tape its norm is already recorded
 * from the Gram matrices of op(A) and G. NULL only on failure. */
void *ad__weight_grad(ad_tape *t, ad_tensor *b, const void *a, int ta, const void *g, size_t m, size_t k,
                      size_t n, int *direct);

/* Temporal copy's backward on a NORMS tape: parameter += the copy's
 * gradient, its sum of squares recorded, the buffer given back. */
void ad__copy_add(ad_tape *t, ad_tensor *copy);

/* Sum of squares of n elements, in double; NaN and Inf propagate. */
double ad__sum_squares(ad_dtype dtype, const void *data, size_t n);

/* 1 (after setting AD_ERR_STATE on x's tape, naming the mode) when x's
 * gradient was dropped by its tape's mode; fn names the caller. */
int ad__grad_dropped(const ad_tensor *x, const char *fn);

/* Gives x's gradient buffer back to the free lists; 1 when it did (x->grad
 * is then NULL), 0 when the buffer stays (too small, too many sizes). */
int ad__give_back_grad(ad_tape *t, ad_tensor *x);


/* Gives x's gradient buffer back to the tape (release_grads): its bytes are
 * reused by the next gradient of that size; x's gradient reads as dropped,
 * its sum of squares recorded first. */
void ad__release_grad(ad_tape *t, ad_tensor *x);



/* vsnprintf into msg[cap], except that a message too long for it is cut at
 * the last space before the end and marked with "…", so that a reader never
 * takes a cut word or number for the whole one. */
void ad__format_message(char *msg, size_t cap, const char *fmt, va_list ap);

/* ad__alloc with the bytes zeroed. */
void *ad__alloc_zero(ad_tape *t, size_t bytes);
/* count * size with overflow check; fails the tape on overflow. */
void *ad__alloc_array(ad_tape *t, size_t count, size_t size);
/* What a forward saves for backward: a new arena array, or on a replay
 * (replay.c) the one the node's first forward made, which has its size. */
static inline void *ad__saved_array(ad_tape *t, ad_node *n, size_t count, size_t size)
{
    return n->saved ? n->saved : ad__alloc_array(t, count, size);
}


/* Whether x's gradient is valid for the latest backward pass of its tape. */
int ad__has_grad(const ad_tensor *x);

/* Anomaly check of n elements of dtype; returns 1 when all are finite. */
int ad__all_finite(ad_dtype dtype, const void *data, size_t n);

/* Formats a shape into a static-size buffer for messages. */
#define AD__SHAPE_BUF 64
const char *ad__shape_str(ad_shape s, char buf[AD__SHAPE_BUF]);

/* ---- .npy files (npy.c; integer files in npy_int.c) ------------------------------- */

typedef enum ad__npy_elem {
    AD__NPY_F4, AD__NPY_F8, AD__NPY_I8, AD__NPY_I4, AD__NPY_U1, AD__NPY_B1
} ad__npy_elem;

/* What a validated .npy image holds: its element type and size, shape, and
 * where its numel elements start. */
typedef struct ad__npy_info {
    ad__npy_elem elem;
    size_t elem_size;
    ad_shape shape;
    size_t numel, data_off;
} ad__npy_info;

/* Checks a whole .npy image (header, sizes against the real size); allocates nothing. */
ad_status ad__npy_inspect(const void *data, size_t size, ad__npy_info *info, ad_error *err);

/* Reads the file at `path` whole (bounded like every .npy file) and hands its
 * bytes to `read` (ad_npy_read or ad_npy_read_ints); a refusal's message then
 * names the file, cut at a word boundary when too long. */
void *ad__npy_load_with(const char *path, void *(*read)(const void *, size_t, ad_error *), ad_error *err);

/* The '<f8'-style descr of an element type. */
const char *ad__npy_descr(ad__npy_elem elem);

/* A malloc'd image of *total bytes with the header written; the caller
 * writes numel elements at *data_off. NULL with AD_ERR_NOMEM. */
unsigned char *ad__npy_begin(ad__npy_elem elem, ad_shape shape, size_t numel, size_t *total,
                             size_t *data_off, ad_error *err);

/* Overflow-checked size product; returns 0 on overflow. */
int ad__mul_size(size_t a, size_t b, size_t *out);

/* Normalises a possibly negative axis for a given rank; -1 if out of range. */
int ad__axis(int axis, int rank);

/* Copies n->a.idx (n->a.n_idx caller indices) into the arena, so the caller's
 * buffer may change after the op returns. */
ad_status ad__keep_indices(ad_tape *t, ad_node *n);

/* Shape rule of ops whose output has the shape of input 0 (unary, scalar, dropout). */
ad_status ad__shape_same(ad_tape *t, ad_node *n, ad_shape *out);

/*
 * Per-copy gradient checks: from now on (until changed; reset restarts the
 * count), the copy-th ad_use() of p on t gets a private copy of p's values
 * with element `index` shifted by delta. p NULL turns this off.
 */
void ad__tape_set_probe(ad_tape *t, const ad_param *p, size_t copy, size_t index, double delta);

/* The perturbed values for this use of p, or NULL when this use is not probed. */
void *ad__tape_probe(ad_tape *t, const ad_param *p);
/* Whether uses of p on t are being probed. */
static inline int ad__tape_probes(const ad_tape *t, const ad_param *p) { return t->probe.param == p; }
/* Whether dropout node n draws a mask (training, p > 0; op_shape.c). Its
 * generator is forgotten once drawn, so a replay cannot draw again. */
int ad__dropout_draws(const ad_node *n);
/* Whether some parameter's uses are probed (a gradient check's tape). */
static inline int ad__tape_probing(const ad_tape *t) { return t->probe.param != NULL; }

/*
 * The gradient of a parameter used as the right operand of a product, for a
 * copy on a lean tape: dB += op(A)^T G (or, when B is used transposed,
 * dB += G^T op(A)), with op(A) [m, k] (`a` stored [k, m] when ta) and
 * G = out's gradient [m, n]. When m is small (a time step's rows) it is not run now:
 * backward stacks the rows of every step and runs one product at its end,
 * which reads each gradient block once instead of once per step. dst is
 * the gradient the product adds into: the parameter's (a copy read by one
 * product), or the buffer of a copy several steps share (NORMS), whose own
 * backward computes what is stacked first (ad__copy_add). Returns 1 when
 * deferred, 0 when the caller must compute it.
 */
int ad__stack_weight_grad(ad_tape *t, ad_tensor *b, const void *a, int ta, ad_tensor *out, size_t m,
                          size_t k, size_t n, int tb, void *dst);
/* A backward pass starts with no stacked rows, and ends by computing what
 * is stacked (stacked_grads.c). */
static inline void ad__stack_begin(ad_tape *t) { t->stack.n = 0, t->stack.rows = 0; }
void ad__stack_flush(ad_tape *t);
/* Steps of fewer than AD__TUNE_STACK_MAX_ROWS rows are stacked (fewer than
 * AD__TUNE_STACK_SHARED_MAX_ROWS into a shared copy's buffer: `shared`), for
 * weights of at least AD__TUNE_STACK_MIN_WEIGHT elements (tuning.h says why). Inline,
 * so that the common refusal costs no call. */
static inline int ad__defer_weight_grad(ad_tape *t, ad_tensor *b, const void *a, int ta, ad_tensor *out,
                                        size_t m, size_t k, size_t n, int tb, void *dst, int shared)
{
    size_t max_rows = shared ? AD__TUNE_STACK_SHARED_MAX_ROWS : AD__TUNE_STACK_MAX_ROWS;
    if (!t->stack.on || !b->param || t->anomaly || m >= max_rows || k * n < AD__TUNE_STACK_MIN_WEIGHT)
        return 0;
    return ad__stack_weight_grad(t, b, a, ta, out, m, k, n, tb, dst);
}
/* Whether anything is stacked and not yet computed. */
static inline int ad__stack_pending(const ad_tape *t) { return t->stack.n != 0; }

/*
 * op(w) packed for the kernel (packed_cache.c), made on the first product
 * with w on this tape and kept until reset, for a parameter's copy on a tape
 * whose packed-weight path is on (AD_FAST_PACKED_WEIGHTS): the values do not
 * change between recording and backward. op(w) is [k_rows, n_cols] and the
 * product has m rows; NULL where the kernel packs for itself (few rows,
 * small products, CBLAS, a full cache) or after failing the tape.
 */
const void *ad__packed_lookup(ad_tape *t, const ad_tensor *w, int trans, size_t n_cols, size_t k_rows, size_t m);
/* Inline, so that the common refusal (a plain tape, a non-parameter, a
 * step's few rows) costs no call. */
static inline const void *ad__packed_for(ad_tape *t, const ad_tensor *w, int trans, size_t n_cols, size_t k_rows,
                                         size_t m)
{
    if (!t->packs.on || !w->param || m < AD__TUNE_PACK_MIN_ROWS) return NULL;
    return ad__packed_lookup(t, w, trans, n_cols, k_rows, m);
}

/*
 * The temporal copies on t in recording order, of parameter p (NULL: of
 * every parameter), into out[0..cap) (out may be NULL to count); the copies
 * used inside a checkpointed region come at its first output node, as the
 * tensors that keep their norms (op_leaf.c).
 */
size_t ad__tape_copies_of(const ad_tape *t, const ad_param *p, ad_tensor **out, size_t cap);
/* The copies used inside the region whose output node is n (checkpoint.c):
 * how many (for its first output node; none for the others), copy j's
 * parameter, and a tensor of t standing for copy j (its gradient norm
 * readable after backward; NULL after failing the tape). */
size_t ad__checkpoint_n_copies(const ad_node *n);
const ad_param *ad__checkpoint_copy_param(const ad_node *n, size_t j);
ad_tensor *ad__checkpoint_copy(const ad_tape *t, const ad_node *n, size_t j);

/* The Elman gates of one step over numel elements (op_cell.c), split over
 * the threads as ad_rnn_cell splits them; ad_rnn_sequence (op_sequence.c)
 * runs them step by step. Forward: out = act(gx + gh). Backward: adds
 * act'(y) g into ggx and ggh (either may be NULL). Forward mode:
 * dy = act'(y) (dx + dh) (dx, dh may be NULL for zero). */
void ad__rnn_gates_fwd(int f32, int relu, size_t numel, const void *gx, const void *gh, void *out);
void ad__rnn_gates_bwd(int f32, int relu, size_t numel, const void *y, const void *g, void *ggx, void *ggh);
void ad__rnn_gates_jvp(int f32, int relu, size_t numel, const void *y, const void *dx, const void *dh, void *dy);

/* out[j] += the sum of column j of g [rows, cols], each column in row order,
 * the columns split over the threads (op_matmul.c: addmm's bias gradient). */
void ad__column_sums(int f32, size_t rows, size_t cols, const void *g, void *out);

/* The GRU gates of one step of B rows (op_cell.c), split over the threads as
 * ad_gru_cell splits them, for ad_gru_sequence: gx, gh [B, 3H], h the
 * previous state, saved the step's three [B, H] planes (r, z, n). Forward
 * (bwd = 0) writes out and the planes; backward adds into ggx, ggh and
 * gh_prev (any may be NULL) from g. Forward mode: dy from the tangents dx,
 * dh of gx, gh and dp of h (any NULL for zero). */
void ad__gru_gates(int f32, int bwd, int64_t B, int64_t H, const void *gx, const void *gh, const void *h, void *out,
                   void *saved, const void *g, void *ggx, void *ggh, void *gh_prev);
void ad__gru_gates_jvp(int f32, int64_t B, int64_t H, const void *gh, const void *h, const void *saved,
                       const void *dx, const void *dh, const void *dp, void *dy);

/* Runs the anomaly check of backward over node n's input gradients. */
void ad__check_backward_anomaly(ad_tape *t, ad_node *n);

/* Runs the anomaly check of forward over node n's output. */
void ad__check_forward_anomaly(ad_tape *t, ad_node *n);

/* ---- forward mode (forward.c) ------------------------------------------------------- */

/* Directions of the current walk (the K of ad_jvp). */
static inline int ad__tan_k(const ad_tape *t) { return t->fwd.k; }

/* x's tangents (K blocks of x->numel elements of x's dtype), or NULL when
 * they are zero (x is not downstream of a seed). */
static inline void *ad__tan(const ad_tape *t, const ad_tensor *x)
{
    size_t i = x->node ? x->node->index : (size_t)-1;
    return i < t->fwd.n ? t->fwd.at[i] : NULL;
}

/* A zeroed tangent buffer for n->out, registered as its tangents; NULL after
 * failing the tape. */
void *ad__tan_new(ad_tape *t, ad_node *n);

/* The rule of an op linear in its inputs (sums, shapes, gathers, where): its
 * own forward applied to the inputs' tangents, zero for an input without
 * any. Inputs in the `fixed` bit mask keep their data (where's condition). */
ad_status ad__jvp_linear(ad_tape *t, ad_node *n, unsigned fixed);

/* AD_ERR_STATE naming the op when the saved data its rule reads is missing. */
ad_status ad__jvp_need_saved(ad_tape *t, const ad_node *n);

/* ---- op family entry points (referenced by the table in op_table.c) -------------------- */

/* Prototypes of every row's family code and shape rule, generated from the
 * list; ops sharing a shape rule or family code (leaves) declare it again,
 * which C allows. ad__shape_same is declared above. */
#define AD__DECLARE_OP(ID, nm, arity, shape, fn, flags, keeps) \
    ad_status ad__shape_##shape(ad_tape *t, ad_node *n, ad_shape *out); \
    ad_status ad__##fn##_fwd(ad_tape *t, ad_node *n);                 \
    void ad__##fn##_bwd(ad_tape *t, ad_node *n);                      \
    ad_status ad__##fn##_jvp(ad_tape *t, ad_node *n);
AD__OP_LIST(AD__DECLARE_OP)
#undef AD__DECLARE_OP

#endif
