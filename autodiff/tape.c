/*
 * tape.c - the tape: arena, node list, sticky error and the op gate.
 */
#include "tape.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define DEFAULT_CHUNK AD__TUNE_DEFAULT_CHUNK
#define ALIGN AD__ALIGN

static void *default_alloc(void *ctx, size_t n)
{
    (void)ctx;
    return malloc(n);
}

static void default_free(void *ctx, void *p)
{
    (void)ctx;
    free(p);
}

ad_tape *ad_tape_new(const ad_tape_options *opts)
{
    ad_tape_options o = {0};
    if (opts) o = *opts;
    if ((o.alloc == NULL) != (o.free == NULL)) return NULL;
    if (o.copy_grads != AD_COPY_GRADS_KEEP && o.copy_grads != AD_COPY_GRADS_NORMS &&
        o.copy_grads != AD_COPY_GRADS_NONE)
        return NULL;
    if (!o.alloc) {
        o.alloc = default_alloc;
        o.free = default_free;
    }
    ad_tape *t = o.alloc(o.alloc_ctx, sizeof *t);
    if (!t) return NULL;
    memset(t, 0, sizeof *t);
    t->alloc = o.alloc;
    t->free = o.free;
    t->alloc_ctx = o.alloc_ctx;
    t->chunk_bytes = o.chunk_bytes ? o.chunk_bytes : DEFAULT_CHUNK;
    t->grad_enabled = 1;
    t->copy_grads = o.copy_grads;
    t->lean_copies = o.copy_grads != AD_COPY_GRADS_KEEP;
    t->release_grads = o.release_grads != 0;
    /* Tensors start with grad_pass 0: a pass that never equals it, so that a
     * gradient a mode dropped (grad_pass == pass, grad NULL) is never faked. */
    t->pass = 1;
    return t;
}

void ad_tape_free(ad_tape *t)
{
    if (!t) return;
    ad__chunk *c = t->first;
    while (c) {
        ad__chunk *next = c->next;
        t->free(t->alloc_ctx, c->raw);
        c = next;
    }
    if (t->nodes) t->free(t->alloc_ctx, t->nodes);
    if (t->deferred) t->free(t->alloc_ctx, t->deferred);
    ad_tape_free(t->scratch);
    t->free(t->alloc_ctx, t);
}

void ad_tape_reset(ad_tape *t)
{
    if (!t) return;
    for (ad__chunk *c = t->first; c; c = c->next) c->used = 0;
    t->cur = t->first;
    t->used_before_cur = 0;
    t->n_nodes = 0;
    t->status = AD_OK;
    t->msg[0] = '\0';
    t->label[0] = '\0';
    t->label_copy = NULL;
    t->probe_seen = 0;
    t->n_free_classes = 0; /* the released buffers were arena memory */
    t->stack_buf = NULL, t->stack_bytes = 0;
    t->gram_buf = NULL, t->gram_bytes = 0;
    t->n_packed = 0; /* packed weights were arena memory, and the values may change now */
    t->tangents = NULL, t->n_tangents = 0; /* arena memory too */
    t->pass++; /* invalidates every gradient of the old tensors */
}

ad_status ad_tape_status(const ad_tape *t) { return t ? t->status : AD_ERR_NULL; }

void ad__tape_set_probe(ad_tape *t, const ad_param *p, size_t copy, size_t index, double delta)
{
    t->probe_param = p;
    t->probe_copy = copy;
    t->probe_index = index;
    t->probe_delta = delta;
    t->probe_seen = 0;
}

void *ad__tape_probe(ad_tape *t, const ad_param *p)
{
    if (t->probe_param != p || t->probe_seen++ != t->probe_copy) return NULL;
    size_t es = ad__dtype_size(p->value.dtype);
    size_t bytes = p->value.numel * es;
    void *d = ad__alloc(t, bytes ? bytes : 1);
    if (!d) return NULL;
    memcpy(d, p->value.data, p->value.numel * es);
    if (t->probe_index < p->value.numel) {
        if (p->value.dtype == AD_F32) ((float *)d)[t->probe_index] += (float)t->probe_delta;
        else ((double *)d)[t->probe_index] += t->probe_delta;
    }
    return d;
}

const char *ad_tape_message(const ad_tape *t) { return t ? t->msg : "tape is NULL"; }

size_t ad_tape_size(const ad_tape *t) { return t ? t->n_nodes : 0; }

size_t ad_tape_bytes_used(const ad_tape *t)
{
    return (t && t->cur) ? t->used_before_cur + t->cur->used : 0;
}

size_t ad_tape_bytes_reserved(const ad_tape *t) { return t ? t->reserved : 0; }

int ad_tape_set_grad_enabled(ad_tape *t, int enabled)
{
    if (!t) return 0;
    int was = t->grad_enabled;
    t->grad_enabled = enabled != 0;
    return was;
}

int ad_tape_set_anomaly(ad_tape *t, int enabled)
{
    if (!t) return 0;
    int was = t->anomaly;
    t->anomaly = enabled != 0;
    return was;
}

ad_tape_modes ad_tape_mode(const ad_tape *t)
{
    ad_tape_modes m = {AD_COPY_GRADS_KEEP, 0, 0};
    if (!t) return m;
    m.copy_grads = t->copy_grads;
    m.release_grads = t->release_grads;
    m.anomaly = t->anomaly;
    return m;
}

const char *ad_copy_grads_name(ad_copy_grads mode)
{
    switch (mode) {
    case AD_COPY_GRADS_KEEP: return "keep";
    case AD_COPY_GRADS_NORMS: return "norms";
    case AD_COPY_GRADS_NONE: return "none";
    }
    return "?";
}

int ad__tape_lean_copies(const ad_tape *t) { return t->lean_copies; }

unsigned ad__tape_pass(const ad_tape *t) { return t->pass; }

unsigned ad__tape_next_pass(ad_tape *t) { return ++t->pass; }

void ad_tape_set_label(ad_tape *t, const char *label)
{
    if (!t) return;
    if (!label) label = "";
    snprintf(t->label, sizeof t->label, "%s", label);
    t->label_copy = NULL; /* copied into the arena when the next node needs it */
}

ad_node *const *ad__tape_nodes(const ad_tape *t, size_t *count)
{
    *count = t->n_nodes;
    return t->nodes;
}

ad_status ad_tape_fail(ad_tape *t, ad_status code, const char *fmt, ...)
{
    if (!t) return AD_ERR_NULL;
    if (t->status != AD_OK) return t->status;
    t->status = code;
    /* An error inside a labelled region (a time step of an unroll) says
     * where it happened: "add: input 1 is NULL (at lstm t=3)". */
    char suffix[AD__LABEL_SIZE + 8] = "";
    if (t->label[0]) snprintf(suffix, sizeof suffix, " (at %s)", t->label);
    size_t room = sizeof t->msg - strlen(suffix);
    va_list ap;
    va_start(ap, fmt);
    ad__format_message(t->msg, room, fmt, ap);
    va_end(ap);
    if (suffix[0] && !strstr(t->msg, t->label)) strcat(t->msg, suffix);
    return code;
}

/* ---- arena ------------------------------------------------------------------------ */

/* Inserts a new chunk of at least `bytes` after cur (or first). */
static ad__chunk *new_chunk(ad_tape *t, size_t bytes)
{
    size_t cap = bytes > t->chunk_bytes ? bytes : t->chunk_bytes;
    size_t total;
    if (cap > SIZE_MAX - sizeof(ad__chunk) - ALIGN) return NULL;
    total = sizeof(ad__chunk) + ALIGN + cap;
    void *raw = t->alloc(t->alloc_ctx, total);
    if (!raw) return NULL;
    ad__chunk *c = raw;
    c->raw = raw;
    uintptr_t p = (uintptr_t)((unsigned char *)raw + sizeof(ad__chunk));
    c->base = (unsigned char *)((p + ALIGN - 1) & ~(uintptr_t)(ALIGN - 1));
    c->cap = cap;
    c->used = 0;
    if (!t->cur) {
        c->next = t->first;
        t->first = c;
    } else {
        c->next = t->cur->next;
        t->cur->next = c;
    }
    t->reserved += cap;
    return c;
}

void *ad__alloc(ad_tape *t, size_t bytes)
{
    if (bytes > SIZE_MAX - ALIGN) {
        ad_tape_fail(t, AD_ERR_OVERFLOW, "arena: request of %zu bytes overflows", bytes);
        return NULL;
    }
    size_t need = (bytes + ALIGN - 1) & ~(size_t)(ALIGN - 1);
    if (need == 0) need = ALIGN;
    if (t->cur && t->cur->cap - t->cur->used >= need) {
        void *p = t->cur->base + t->cur->used;
        t->cur->used += need;
        return p;
    }
    /* Move on to the next kept chunk if it fits; identical steps then take
     * identical paths, so a warmed-up loop never allocates. */
    ad__chunk *next = t->cur ? t->cur->next : t->first;
    if (!next || next->cap < need) {
        next = new_chunk(t, need);
        if (!next) {
            ad_tape_fail(t, AD_ERR_NOMEM, "arena: cannot allocate a chunk for %zu bytes", bytes);
            return NULL;
        }
    }
    if (t->cur) t->used_before_cur += t->cur->used;
    t->cur = next;
    next->used = need;
    return next->base;
}

void *ad__alloc_zero(ad_tape *t, size_t bytes)
{
    void *p = ad__alloc(t, bytes);
    if (p) memset(p, 0, bytes);
    return p;
}

void *ad__alloc_array(ad_tape *t, size_t count, size_t size)
{
    size_t bytes;
    if (!ad__mul_size(count, size, &bytes)) {
        ad_tape_fail(t, AD_ERR_OVERFLOW, "arena: %zu x %zu bytes overflows", count, size);
        return NULL;
    }
    return ad__alloc(t, bytes);
}

/* The slow half of ad__grad: a new zeroed buffer for this pass. A buffer of
 * up to one alignment unit is a whole 64-byte block, zeroed with a
 * fixed-size store the compiler inlines. */
/* The free list of buffers of `bytes`, or NULL. */
static void **free_list(ad_tape *t, size_t bytes)
{
    for (int i = 0; i < t->n_free_classes; i++)
        if (t->free_grads[i].bytes == bytes) return &t->free_grads[i].head;
    return NULL;
}

/* Puts a buffer of `bytes` on its free list; 0 when it cannot (too small,
 * too many sizes), and then the buffer simply stays unused until reset. */
static int give_back(ad_tape *t, void *buf, size_t bytes)
{
    if (bytes < sizeof(void *)) return 0;
    void **head = free_list(t, bytes);
    if (!head && t->n_free_classes < AD__FREE_CLASSES) {
        t->free_grads[t->n_free_classes].bytes = bytes;
        t->free_grads[t->n_free_classes].head = NULL;
        head = &t->free_grads[t->n_free_classes++].head;
    }
    if (!head) return 0;
    memcpy(buf, head, sizeof *head); /* the buffer links to the old head */
    *head = buf;
    return 1;
}

int ad__give_back_grad(ad_tape *t, ad_tensor *x)
{
    if (!x->grad || !give_back(t, x->grad, x->numel * ad__dtype_size(x->dtype))) return 0;
    x->grad = NULL;
    return 1;
}

void ad__release_grad(ad_tape *t, ad_tensor *x)
{
    if (!x->grad || x->grad_pinned) return;
    /* before give_back, which writes the free list's link into the buffer */
    x->grad_sq = ad__sum_squares(x->dtype, x->grad, x->numel);
    ad__give_back_grad(t, x);
}

ad_status ad_tape_release(ad_tape *t, ad_tensor *x)
{
    if (!t) return AD_ERR_NULL;
    if (t->status != AD_OK) return t->status;
    if (!x) return ad_tape_fail(t, AD_ERR_NULL, "tape_release: tensor is NULL");
    if (x->tape != t) return ad_tape_fail(t, AD_ERR_FOREIGN, "tape_release: the tensor is not on this tape");
    const char *op = ad__ops[x->node->op].name;
    char sh[AD__SHAPE_BUF];
    if (x->node->n_in == 0 || x->param)
        return ad_tape_fail(t, AD_ERR_ARG, "tape_release: %s %s is a leaf; only op outputs can be released", op,
                        ad__shape_str(x->shape, sh));
    if (x->view_of)
        return ad_tape_fail(t, AD_ERR_ARG, "tape_release: %s %s is a view; release the tensor it views", op,
                        ad__shape_str(x->shape, sh));
    if (x->data_needed)
        return ad_tape_fail(t, AD_ERR_STATE, "tape_release: %s %s: the backward of a recorded op reads it", op,
                        ad__shape_str(x->shape, sh));
    if (x->released) return AD_OK;
    x->released = 1;
    if (x->numel >= AD__RELEASE_MIN) /* smaller ones are not worth a list */
        give_back(t, x->data, x->numel * ad__dtype_size(x->dtype));
    return AD_OK;
}

/* A released buffer of `bytes`, or NULL. */
static void *reuse_grad(ad_tape *t, size_t bytes)
{
    void **head = free_list(t, bytes);
    if (!head || !*head) return NULL;
    void *g = *head;
    memcpy(head, g, sizeof *head);
    return g;
}

void *ad__grad_new(ad_tape *t, ad_tensor *x)
{
    size_t bytes = x->numel * ad__dtype_size(x->dtype);
    void *g = t->n_free_classes ? reuse_grad(t, bytes) : NULL;
    if (!g) g = ad__bump(t, bytes);
    if (!g) return NULL;
    if (bytes <= ALIGN) memset(g, 0, ALIGN);
    else memset(g, 0, bytes);
    x->grad = g;
    x->grad_pass = t->pass;
    x->grad_sq = 0;
    return g;
}

/* ---- nodes ------------------------------------------------------------------------ */

/* Doubles the node list; 0 after failing the tape. */
static AD__COLD int grow_nodes(ad_tape *t)
{
    size_t cap = t->cap_nodes ? t->cap_nodes * 2 : 256;
    size_t bytes;
    if (!ad__mul_size(cap, sizeof *t->nodes, &bytes)) {
        ad_tape_fail(t, AD_ERR_OVERFLOW, "tape: node list of %zu entries overflows", cap);
        return 0;
    }
    ad_node **nodes = t->alloc(t->alloc_ctx, bytes);
    if (!nodes) {
        ad_tape_fail(t, AD_ERR_NOMEM, "tape: cannot grow the node list to %zu entries", cap);
        return 0;
    }
    if (t->n_nodes) memcpy(nodes, t->nodes, t->n_nodes * sizeof *nodes);
    if (t->nodes) t->free(t->alloc_ctx, t->nodes);
    t->nodes = nodes;
    t->cap_nodes = cap;
    return 1;
}

static inline int push_node(ad_tape *t, ad_node *n)
{
    if (t->n_nodes == t->cap_nodes && !grow_nodes(t)) return 0;
    n->index = t->n_nodes;
    t->nodes[t->n_nodes++] = n;
    return 1;
}

/* The arena copy of the tape's label, made once per label; NULL on failure. */
static AD__COLD const char *copy_label(ad_tape *t)
{
    if (!t->label_copy) {
        size_t len = strlen(t->label) + 1;
        char *copy = ad__alloc(t, len);
        if (!copy) return NULL;
        memcpy(copy, t->label, len);
        t->label_copy = copy;
    }
    return t->label_copy;
}

static inline const char *node_label(ad_tape *t) { return t->label[0] ? copy_label(t) : NULL; }

/* A node and its output header share one arena block; sizes rounded to the
 * alignment so that data placed after them stays aligned. */
#define ROUND_UP(x) (((x) + ALIGN - 1) / ALIGN * ALIGN)
#define NODE_BYTES ROUND_UP(sizeof(ad_node))
#define HEADER_BYTES (NODE_BYTES + ROUND_UP(sizeof(ad_tensor)))

/* Copies a small struct in 16-byte pieces, which compilers inline; a whole
 * struct assignment becomes a memcpy call or `rep movs`, which cost more than
 * the rest of a small node. */
static inline void copy_small(void *dst, const void *src, size_t size)
{
    unsigned char *d = dst;
    const unsigned char *s = src;
    size_t i = 0;
    for (; i + 16 <= size; i += 16) memcpy(d + i, s + i, 16);
    if (i < size) memcpy(d + i, s + i, size - i);
}

static AD__COLD void fail_block(ad_tape *t, ad__op op, size_t extra)
{
    ad_tape_fail(t, AD_ERR_OVERFLOW, "%s: output of %zu bytes overflows", ad__ops[op].name, extra);
}

/*
 * A node of op with its output header from one block of `extra` more bytes
 * (the output's data, when its size is already known). Every field is set:
 * the arena is not zeroed.
 */
static inline ad_node *node_block(ad_tape *t, ad__op op, ad_dtype dtype, const ad__args *args,
                                  size_t extra)
{
    if (extra > SIZE_MAX - HEADER_BYTES - ALIGN) {
        fail_block(t, op, extra);
        return NULL;
    }
    unsigned char *blk = ad__bump(t, HEADER_BYTES + extra);
    const char *label = node_label(t);
    if (!blk || (t->label[0] && !label)) return NULL;
    ad_node *n = (ad_node *)blk;
    ad_tensor *out = (ad_tensor *)(blk + NODE_BYTES);
    out->dtype = dtype;
    out->grad = NULL;
    out->grad_pass = 0;
    out->tape = t;
    out->node = n;
    out->param = NULL;
    out->requires_grad = 0;
    out->owns_data = 0;
    out->is_heap = 0;
    out->grad_pinned = 0;
    out->data_needed = 0;
    out->released = 0;
    out->uses = 0;
    out->view_of = NULL;
    n->op = op;
    n->n_in = 0;
    n->in = n->in_inline;
    n->out = out;
    if (args) copy_small(&n->a, args, sizeof n->a);
    else memset(&n->a, 0, sizeof n->a);
    n->saved = NULL;
    n->label = label;
    n->index = t->n_nodes; /* its place once appended; anomaly messages name it */
    return n;
}

/* The checked product for shapes the fast path of shape_numel does not take. */
static AD__COLD int checked_numel(ad_tape *t, ad__op op, ad_shape shape, size_t *numel)
{
    ad_status st = ad_shape_numel(shape, numel);
    if (st == AD_OK) return 1;
    char b[AD__SHAPE_BUF];
    ad_tape_fail(t, st, "%s: invalid shape %s: %s", ad__ops[op].name, ad__shape_str(shape, b),
             ad_status_str(st));
    return 0;
}

/* Numel of a valid shape, or 0 after failing the tape. */
static inline int shape_numel(ad_tape *t, ad__op op, ad_shape shape, size_t *numel)
{
    /* Fast path: up to 4 axes below 2^14 cannot overflow (2^56 elements of 8
     * bytes fit a 64-bit size_t); anything else takes the checked product. */
    if (sizeof(size_t) >= 8 && shape.rank >= 0 && shape.rank <= AD_MAX_RANK) {
        size_t n = 1;
        uint64_t any = 0; /* a negative axis sets the high bits */
        for (int i = 0; i < shape.rank; i++) {
            any |= (uint64_t)shape.dim[i];
            n *= (size_t)shape.dim[i];
        }
        if (any < ((uint64_t)1 << 14)) {
            *numel = n;
            return 1;
        }
    }
    return checked_numel(t, op, shape, numel);
}

static AD__COLD void fail_dtype(ad_tape *t, ad__op op, ad_dtype dtype)
{
    ad_tape_fail(t, AD_ERR_DTYPE, "%s: invalid dtype %d", ad__ops[op].name, (int)dtype);
}

ad_tensor *ad__leaf(ad_tape *t, ad__op op, ad_dtype dtype, ad_shape shape)
{
    if (!t || t->status != AD_OK) return NULL;
    size_t numel, esize = ad__dtype_size(dtype);
    if (!shape_numel(t, op, shape, &numel)) return NULL;
    if (esize == 0) {
        fail_dtype(t, op, dtype);
        return NULL;
    }
    ad_node *n = node_block(t, op, dtype, NULL, numel * esize);
    if (!n) return NULL;
    ad_tensor *out = n->out;
    out->shape = shape;
    out->numel = numel;
    out->data = (unsigned char *)n + HEADER_BYTES;
    n->a.shape = shape;
    out->requires_grad = (op == AD_OP_VARIABLE) && t->grad_enabled;
    if (!push_node(t, n)) return NULL;
    return out;
}

ad_tensor *ad__copy_leaf(ad_tape *t, ad_param *p)
{
    ad_dtype dtype = p->value.dtype;
    if (ad__dtype_size(dtype) == 0) {
        fail_dtype(t, AD_OP_PARAM, dtype);
        return NULL;
    }
    ad_node *n = node_block(t, AD_OP_PARAM, dtype, NULL, 0);
    if (!n) return NULL;
    ad_tensor *out = n->out;
    out->shape = p->value.shape;
    out->numel = p->value.numel;
    out->data = p->value.data;
    out->param = p;
    out->requires_grad = (unsigned char)t->grad_enabled;
    n->a.shape = out->shape;
    if (!push_node(t, n)) return NULL;
    if (t->probe_param == p) { /* gradient checks only */
        void *probed = ad__tape_probe(t, p);
        if (t->status != AD_OK) return NULL;
        if (probed) out->data = probed;
    }
    return out;
}

/* Checks the inputs of an op: non-NULL, on this tape, one dtype. */
static int check_inputs(ad_tape *t, const char *name, ad_tensor *const *in, int n_in)
{
    for (int i = 0; i < n_in; i++) {
        if (!in[i]) {
            ad_tape_fail(t, AD_ERR_NULL, "%s: input %d is NULL", name, i);
            return 0;
        }
        if (in[i]->tape != t) {
            ad_tape_fail(t, AD_ERR_FOREIGN, "%s: input %d is not a tensor of this tape%s", name, i,
                     in[i]->tape ? "" : " (copy heap tensors in with ad_constant)");
            return 0;
        }
        if (in[i]->dtype != in[0]->dtype) {
            ad_tape_fail(t, AD_ERR_DTYPE, "%s: input %d is %s but input 0 is %s", name, i,
                     ad_dtype_name(in[i]->dtype), ad_dtype_name(in[0]->dtype));
            return 0;
        }
        if (ad__data_released(in[i])) {
            ad_tape_fail(t, AD_ERR_STATE, "%s: input %d's data was released (ad_tape_release)", name, i);
            return 0;
        }
    }
    return 1;
}

/* The messages for a bad input list, in the order the checks are made;
 * reached only when ad__record's quick test of the inputs fails. */
static AD__COLD void fail_inputs(ad_tape *t, ad__op op, ad_tensor *const *in, int n_in,
                             const ad__args *args)
{
    if (!in && n_in > 0) {
        ad_tape_fail(t, AD_ERR_NULL, "%s: input list is NULL", ad__ops[op].name);
        return;
    }
    if (n_in < 1) {
        ad_tape_fail(t, AD_ERR_EMPTY, "%s: no inputs", ad__ops[op].name);
        return;
    }
    const char *name = ad__op_name(op, args);
    if (ad__ops[op].arity >= 0 && n_in != ad__ops[op].arity) {
        ad_tape_fail(t, AD_ERR_ARG, "%s: takes %d inputs, got %d", name, ad__ops[op].arity, n_in);
        return;
    }
    check_inputs(t, name, in, n_in);
}

/* Marks the data n's backward reads (its row's keeps), so that it is never
 * released; a view marks the tensor that owns its data too. */
static void keep_for_backward(ad_node *n, ad_tensor *const *in, int n_in)
{
    unsigned keeps = ad__ops[n->op].keeps;
    if (!keeps) return;
    if (keeps & AD__KEEPS_OUT) n->out->data_needed = 1;
    int all = (keeps & AD__KEEPS_ALL_IN) != 0;
    unsigned mask = keeps & 0x3fu;
    for (int i = 0; i < n_in && (all || mask >> i); i++)
        if (all || (mask >> i) & 1u) {
            in[i]->data_needed = 1;
            if (in[i]->view_of) in[i]->view_of->data_needed = 1;
        }
}

ad_tensor *ad__record(ad_tape *t, ad__op op, ad_tensor *const *in, int n_in, const ad__args *args)
{
    if (!t || t->status != AD_OK) return NULL;
    /* The same conditions as check_inputs, tested in one pass that also
     * collects whether any input needs a gradient. */
    int arity = ad__ops[op].arity;
    int ok = in && n_in >= 1 && (arity < 0 || n_in == arity) && in[0], needs_grad = 0;
    for (int i = 0; ok && i < n_in; i++) {
        const ad_tensor *x = in[i];
        ok = x && x->tape == t && x->dtype == in[0]->dtype && !ad__data_released(x);
        needs_grad |= ok && x->requires_grad;
    }
    /* a copy read by one op gets its whole gradient from that op (copy_grads.c) */
    for (int i = 0; ok && i < n_in; i++) in[i]->uses = in[i]->uses ? 2 : 1;
    if (!ok) {
        fail_inputs(t, op, in, n_in, args);
        return NULL;
    }

    /* The shape rule sees the node with the caller's inputs; the output's
     * data is allocated once the shape is known. */
    ad_dtype dtype = in[0]->dtype;
    ad_node *n = node_block(t, op, dtype, args, 0);
    if (!n) return NULL;
    n->n_in = n_in;
    if (n_in <= AD__INLINE_IN)
        for (int i = 0; i < n_in; i++) n->in_inline[i] = in[i];
    else
        n->in = (ad_tensor **)in;
    /* The shape rule writes the output's shape in place. */
    ad_tensor *out = n->out;
    size_t numel;
    if (ad__ops[op].shape(t, n, &out->shape) != AD_OK) return NULL;
    if (!shape_numel(t, op, out->shape, &numel)) return NULL;
    out->numel = numel;
    if (!n->a.view) { /* a view's forward points data into input 0 */
        size_t bytes = numel * ad__dtype_size(dtype);
        out->data = t->n_free_classes ? reuse_grad(t, bytes) : NULL;
        if (!out->data) out->data = ad__bump(t, bytes);
        if (!out->data) return NULL;
    }
    if (n_in > AD__INLINE_IN) { /* the caller's list may not outlive the call */
        n->in = ad__alloc_array(t, (size_t)n_in, sizeof *n->in);
        if (!n->in) return NULL;
        for (int i = 0; i < n_in; i++) n->in[i] = in[i];
    }
    out->requires_grad = (unsigned char)(needs_grad && t->grad_enabled);
    if (ad__ops[op].forward(t, n) != AD_OK || t->status != AD_OK) return NULL;
    keep_for_backward(n, in, n_in);
    if (t->anomaly) {
        ad__check_forward_anomaly(t, n);
        if (t->status != AD_OK) return NULL;
    }
    if (!push_node(t, n)) return NULL;
    return out;
}
