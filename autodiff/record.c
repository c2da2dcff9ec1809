/*
 * record.c - the gate every op goes through: the node list, the labels
 * nodes carry, one arena block per node and its output, the input checks,
 * the shape rule, the forward and the data backward will read.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

#define ALIGN AD__ALIGN

void ad__nodes_free(ad_tape *t)
{
    ad__heap_free(t, t->nodes.at);
    t->nodes.at = NULL;
}

void ad_tape_set_label(ad_tape *t, const char *label)
{
    if (!t) return;
    if (!label) label = "";
    snprintf(t->nodes.label, sizeof t->nodes.label, "%s", label);
    t->nodes.label_copy = NULL; /* copied into the arena when the next node needs it */
}

/* ---- nodes ------------------------------------------------------------------------ */

/* Doubles the node list; 0 after failing the tape. */
static AD__COLD int grow_nodes(ad_tape *t)
{
    size_t cap = t->nodes.cap ? t->nodes.cap * 2 : 256;
    size_t bytes;
    if (!ad__mul_size(cap, sizeof *t->nodes.at, &bytes)) {
        ad_tape_fail(t, AD_ERR_OVERFLOW, "tape: node list of %zu entries overflows", cap);
        return 0;
    }
    ad_node **nodes = ad__heap_alloc(t, bytes);
    if (!nodes) {
        ad_tape_fail(t, AD_ERR_NOMEM, "tape: cannot grow the node list to %zu entries", cap);
        return 0;
    }
    if (t->nodes.n) memcpy(nodes, t->nodes.at, t->nodes.n * sizeof *nodes);
    ad__heap_free(t, t->nodes.at);
    t->nodes.at = nodes;
    t->nodes.cap = cap;
    return 1;
}

static inline int push_node(ad_tape *t, ad_node *n)
{
    if (t->nodes.n == t->nodes.cap && !grow_nodes(t)) return 0;
    n->index = t->nodes.n;
    t->nodes.at[t->nodes.n++] = n;
    return 1;
}

/* The arena copy of the tape's label, made once per label; NULL on failure. */
static AD__COLD const char *copy_label(ad_tape *t)
{
    if (!t->nodes.label_copy) {
        size_t len = strlen(t->nodes.label) + 1;
        char *copy = ad__alloc(t, len);
        if (!copy) return NULL;
        memcpy(copy, t->nodes.label, len);
        t->nodes.label_copy = copy;
    }
    return t->nodes.label_copy;
}

static inline const char *node_label(ad_tape *t) { return t->nodes.label[0] ? copy_label(t) : NULL; }

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
    if (!blk || (t->nodes.label[0] && !label)) return NULL;
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
    out->in_region = 0;
    out->view_of = NULL;
    n->op = op;
    n->n_in = 0;
    n->in = n->in_inline;
    n->out = out;
    if (args) copy_small(&n->a, args, sizeof n->a);
    else memset(&n->a, 0, sizeof n->a);
    n->saved = NULL;
    n->label = label;
    n->index = t->nodes.n; /* its place once appended; anomaly messages name it */
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
    if (!t || ad__status(t) != AD_OK) return NULL;
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
    out->requires_grad = (op == AD_OP_VARIABLE) && ad__tape_grad_enabled(t);
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
    out->requires_grad = (unsigned char)ad__tape_grad_enabled(t);
    n->a.shape = out->shape;
    if (!push_node(t, n)) return NULL;
    if (ad__tape_probes(t, p)) { /* gradient checks only */
        void *probed = ad__tape_probe(t, p);
        if (ad__status(t) != AD_OK) return NULL;
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
static inline void keep_for_backward(unsigned keeps, ad_node *n, ad_tensor *const *in, int n_in)
{
    if (keeps & AD__KEEPS_OUT) n->out->data_needed = 1;
    unsigned mask = (keeps & AD__KEEPS_ALL_IN) ? ~0u : keeps & 0x3fu;
    for (int i = 0; mask && i < n_in; i++, mask >>= 1)
        if (mask & 1u) {
            in[i]->data_needed = 1;
            if (in[i]->view_of) in[i]->view_of->data_needed = 1;
        }
}

ad_tensor *ad__record(ad_tape *t, ad__op op, ad_tensor *const *in, int n_in, const ad__args *args)
{
    if (!t || ad__status(t) != AD_OK) return NULL;
    /* The same conditions as check_inputs, tested in one pass that also
     * collects whether any input needs a gradient and counts the uses of
     * each (a copy read by one op gets its whole gradient from that op,
     * copy_grads.c). A failed input list fails the tape, so uses counted
     * before the bad input are never read. */
    const ad__op_def *def = &ad__ops[op];
    int arity = def->arity;
    int ok = in && n_in >= 1 && (arity < 0 || n_in == arity) && in[0], needs_grad = 0;
    ad_dtype dtype = ok ? in[0]->dtype : AD_F32;
    for (int i = 0; ok && i < n_in; i++) {
        ad_tensor *x = in[i];
        ok = x && x->tape == t && x->dtype == dtype && !ad__data_released(x);
        if (!ok) break;
        needs_grad |= x->requires_grad;
        x->uses = x->uses ? 2 : 1;
    }
    if (!ok) {
        fail_inputs(t, op, in, n_in, args);
        return NULL;
    }

    /* The shape rule sees the node with the caller's inputs; the output's
     * data is allocated once the shape is known. */
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
    if (def->shape(t, n, &out->shape) != AD_OK) return NULL;
    if (!shape_numel(t, op, out->shape, &numel)) return NULL;
    out->numel = numel;
    if (!n->a.view) { /* a view's forward points data into input 0 */
        size_t bytes = numel * ad__dtype_size(dtype);
        out->data = ad__pool_take(t, bytes);
        if (!out->data) out->data = ad__bump(t, bytes);
        if (!out->data) return NULL;
    }
    if (n_in > AD__INLINE_IN) { /* the caller's list may not outlive the call */
        n->in = ad__alloc_array(t, (size_t)n_in, sizeof *n->in);
        if (!n->in) return NULL;
        for (int i = 0; i < n_in; i++) n->in[i] = in[i];
    }
    out->requires_grad = (unsigned char)(needs_grad && ad__tape_grad_enabled(t));
    if (def->forward(t, n) != AD_OK || ad__status(t) != AD_OK) return NULL;
    keep_for_backward(def->keeps, n, in, n_in);
    if (ad__tape_anomaly(t)) {
        ad__check_forward_anomaly(t, n);
        if (ad__status(t) != AD_OK) return NULL;
    }
    if (!push_node(t, n)) return NULL;
    return out;
}
