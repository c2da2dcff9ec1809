/*
 * internal.h - what the nn files share with each other. Never installed.
 *
 * Cross-file internals are prefixed nn__. Here: the strict JSON parser that
 * reads safetensors headers (json.c), the checkpoints' CRC-32, and (through
 * autodiff/fileio.h) the bounded reads and atomic writes of every file format.
 */
#ifndef UNROLL_NN_INTERNAL_H
#define UNROLL_NN_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "../autodiff/fileio.h"
#include "../autodiff/split.h"
#include "../autodiff/status.h"
#include "../autodiff/tuning.h"
#include "cell.h"

/* ---- The op-by-op gates (cell.c) ----------------------------------------------------- */

/*
 * The built-in step with the op-by-op gates (split, add, sigmoid, tanh, mul)
 * instead of the fused gate ops: a built-in cell whose `step` is set to this
 * records them, in nn_unroll's hoisted path too. Equal to nn_builtin_step
 * within rounding; the reference the fused gates are tested against.
 */
ad_status nn__builtin_step_plain(ad_tape *t, const nn_cell *cell, ad_tensor *x, const nn_state *prev,
                                 nn_state *next);

/* ---- fused Elman blocks (unroll_fused.c) -------------------------------------------- */

struct nn_unroll_options;

/* Whether nn_unroll_options.fuse_steps applies to cell under o: AD_OK, or
 * AD_ERR_ARG on the tape naming what it needs. The rule lives here only. */
ad_status nn__fuse_check(ad_tape *t, const nn_cell *cell, const struct nn_unroll_options *o);

/* Steps first..first+nb-1 of an Elman layer as one ad_rnn_sequence node from
 * gx, the block's hoisted input projection ([nb B, H], which the caller
 * releases), and the state *h, which becomes the last step's; each step's
 * state (a view) goes to outs[first + k] when outs is not NULL. */
ad_status nn__fused_block(ad_tape *t, const nn_cell *cell, ad_tensor *gx, int first, int nb, int64_t batch,
                          nn_state *outs, nn_state *h);

/* ---- flat loops over the threads (autodiff/split.c) --------------------------------- */

/* The flat loops over a parameter block (the optimizer update, gradients
 * summed from replicas, zeroing) are split over the threads by the engine's
 * split (autodiff/split.h), at most AD__SPLIT_MAX_PARTS parts (callers may
 * keep a flag per part), a part only per AD__TUNE_FLAT_MIN_PER_THREAD
 * elements, boundaries on AD__TUNE_FLAT_ALIGN elements (tuning.h). Every
 * element of these loops depends on that element alone: the bits are those
 * of one loop for any split. */
#define NN__FLAT_MAX_PARTS AD__SPLIT_MAX_PARTS
typedef ad__split_fn nn__flat_fn;

/* How many parts (threads) a flat loop over n elements uses. */
static inline int nn__flat_parts(size_t n)
{
    return ad__split_parts(n, n, AD__TUNE_FLAT_MIN_PER_THREAD);
}

/* Runs fn over [0, n) cut into `parts` consecutive ranges (from
 * nn__flat_parts(n)), each on its own thread, and returns when all are done. */
static inline void nn__flat_run(size_t n, int parts, nn__flat_fn fn, void *ctx)
{
    ad__split_run(n, parts, AD__TUNE_FLAT_ALIGN, fn, ctx);
}

/* ---- checksums (checkpoint.c) ------------------------------------------------------- */

/* CRC-32 (IEEE 802.3, as zlib's crc32) of `n` bytes, continuing from `crc`
 * (0 to start). nn__crc32(0, "123456789", 9) is 0xCBF43926. */
uint32_t nn__crc32(uint32_t crc, const void *data, size_t n);

/* ---- JSON (json.c) ------------------------------------------------------------------ */

typedef enum nn__json_type {
    NN__JSON_NULL,
    NN__JSON_FALSE,
    NN__JSON_TRUE,
    NN__JSON_NUMBER,
    NN__JSON_STRING,
    NN__JSON_ARRAY,
    NN__JSON_OBJECT
} nn__json_type;

/* One value. Children of an array or object are a chain: `child` is the
 * index of the first, `next` of the following sibling (0: none; node 0 is
 * the root, never a child). A member of an object has its key in key/key_len
 * (decoded, NUL-terminated). A string's `str` is decoded and NUL-terminated;
 * a number's is its text as written (not NUL-terminated). */
typedef struct nn__json {
    nn__json_type type;
    const char *str;
    size_t len;
    const char *key;
    size_t key_len;
    size_t child, next, count; /* count: number of children */
} nn__json;

typedef struct nn__json_doc {
    nn__json *nodes; /* nodes[0] is the root */
    size_t count;
    char *strings;   /* decoded keys and strings */
} nn__json_doc;

/* The deepest nesting accepted (safetensors headers need 3). */
#define NN__JSON_MAX_DEPTH 32

/*
 * Parses `len` bytes of `text` as one JSON value (RFC 8259, strictly: no
 * comments, trailing commas, leading zeros, unescaped control characters,
 * invalid UTF-8 or lone surrogates; nesting up to NN__JSON_MAX_DEPTH) with
 * only whitespace around it. Duplicate keys in an object are AD_ERR_DUPLICATE;
 * everything else wrong is AD_ERR_FORMAT with the byte offset. Memory is
 * bounded by a small multiple of len. On success free doc with
 * nn__json_free(); on failure doc is empty.
 */
ad_status nn__json_parse(const char *text, size_t len, nn__json_doc *doc, ad_error *err);

/* Frees a parsed document (an empty one is fine). */
void nn__json_free(nn__json_doc *doc);

/* The value of a number node that is a non-negative integer written without
 * fraction or exponent and at most 2^63 - 1; 0 when it is not one. */
int nn__json_uint(const nn__json *n, uint64_t *out);

/* 1 when the len bytes of s are valid UTF-8 (no overlong forms, surrogates
 * or code points above U+10FFFF). */
int nn__utf8_valid(const char *s, size_t len);

/* ---- recomputation in nn_unroll (unroll_recompute.c) ---------------------------------- */

struct ad_tape;
struct ad_tensor;
struct nn_cell;
struct nn_unroll_options;
struct nn_state;

/* Steps per block of the hoisted input projection for a T-step unroll
 * (o->hoist_block, or NN_UNROLL_HOIST_BLOCK when 0; at most T). */
int nn__hoist_block(const struct nn_unroll_options *o, int T);

/* x W_ih^T + b_ih of n steps at once ([n B, G H]): the inputs xs[0..n-1], or
 * (xs NULL) from[0..n-1].h, stacked; each must be [batch, I] (AD_ERR_SHAPE
 * naming the step first + k otherwise). NULL after an error on t. */
struct ad_tensor *nn__project_block(struct ad_tape *t, const struct nn_cell *cell, struct ad_tensor *const *xs,
                                    const struct nn_state *from, int first, int n, int64_t batch);

/* The masked step of variable-length batches (unroll.c): rows with
 * lengths[b] <= step keep *prev (ad_where on h and c), the others take
 * *next; nothing happens with lengths NULL or every row valid. */
ad_status nn__mask_step(struct ad_tape *t, const int64_t *lengths, int64_t batch, int step,
                        const struct nn_state *prev, struct nn_state *next);

/* nn_unroll() and nn_unroll_layers() with o->recompute or o->step_loss: L
 * layers (cells[0..L)) run segment by segment, every layer in each segment;
 * the arguments are checked (check_args, check_dropout), h0 holds L initial
 * states, outs (may be NULL) receives the top layer's states and lasts (may
 * be NULL) every layer's final state. Returns the tape's status. */
ad_status nn__unroll_recompute(struct ad_tape *t, const struct nn_cell *cells, int L, struct ad_tensor *const *xs,
                               int T, const struct nn_unroll_options *o, const struct nn_state *h0,
                               struct nn_state *outs, struct nn_state *lasts);

#endif
