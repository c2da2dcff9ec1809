/**
 * @file
 * tape.h - the explicit context that records operations and owns their memory.
 *
 * Every op takes the tape first, computes its result at once and appends a
 * node to the tape. ad_backward() walks the nodes in reverse. The tape owns an
 * arena: every tensor an op makes lives there until ad_tape_reset(), which
 * frees them all in O(1) while keeping the memory, so a training loop that has
 * warmed up performs no allocation at all.
 *
 * Errors are sticky: the first failing call records a status and a message on
 * the tape; from then on every op returns NULL, so a caller checks once.
 *
 *     ad_tape *t = ad_tape_new(NULL);
 *     for (int step = 0; step < n_steps; step++) {
 *         ad_tensor *w = ad_use(t, W);                 // temporal copy of W
 *         ad_tensor *x = ad_from_data(t, AD_F32, ad_shape2(1, 3), xs);
 *         ad_tensor *loss = ad_sum(t, ad_tanh(t, ad_matmul(t, x, w, 0)), AD_AXIS_ALL, 0);
 *         if (ad_backward(t, loss, NULL) != AD_OK)
 *             fprintf(stderr, "%s\n", ad_tape_message(t));
 *         ...                                          // optimizer step on W
 *         ad_tape_reset(t);
 *     }
 *     ad_tape_free(t);
 */
#ifndef UNROLL_AD_TAPE_H
#define UNROLL_AD_TAPE_H

#include <stddef.h>

#include "rng.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/** A tape: records ops, owns an arena. Not thread-safe; use one per thread. */
typedef struct ad_tape ad_tape;

/**
 * What backward keeps of each temporal copy's gradient dL/dW^(t) (ad_use()).
 * The parameter's gradient (the sum over its copies) is computed in every
 * mode; the modes differ in what else stays readable after backward.
 */
typedef enum ad_copy_grads {
    /** Every copy keeps its own gradient buffer, readable with
     * ad_tensor_grad_f32/f64 until reset (the default). */
    AD_COPY_GRADS_KEEP = 0,
    /** Each copy's gradient norm ||dL/dW^(t)|| is recorded as backward adds
     * the copy into its parameter (ad_tensor_grad_norm(), the gradient-flow
     * report); the gradient itself is not kept. */
    AD_COPY_GRADS_NORMS = 1,
    /** Nothing per copy: gradients go straight into the parameters. */
    AD_COPY_GRADS_NONE = 2
} ad_copy_grads;

/**
 * The speed paths of a lean tape (copy_grads NORMS or NONE), each of which
 * can be turned off on its own with ad_tape_options.fast_off; each computes
 * what the plain path computes (docs/performance.md).
 */
typedef enum ad_fast_path {
    /** Each parameter used in products is packed for the kernel once per
     * tape (until reset) instead of once per product; the products are bit
     * for bit the same. */
    AD_FAST_PACKED_WEIGHTS = 1u << 0,
    /** The weight gradients of per-step products (under 512 rows, weights of
     * 4096 elements or more) are stacked and computed in one product per
     * few thousand rows, outside anomaly mode; equal up to summation order. */
    AD_FAST_STACKED_GRADS = 1u << 1
} ad_fast_path;

/**
 * Options for ad_tape_new(); a zero-filled struct (or NULL) means defaults.
 * The allocator hooks serve all the tape's own memory (arena chunks and the
 * node list); both or neither must be set.
 */
typedef struct ad_tape_options {
    size_t chunk_bytes;                  /**< arena chunk size; 0 means 1 MiB */
    void *(*alloc)(void *ctx, size_t n); /**< NULL means malloc */
    void (*free)(void *ctx, void *ptr);  /**< NULL means free */
    void *alloc_ctx;                     /**< passed to alloc and free */
    /**
     * What is kept of each temporal copy's gradient (ad_copy_grads). The
     * modes that do not keep it (NORMS, NONE) also turn on the lean-tape
     * speed paths (ad_fast_path; each can be turned off with fast_off):
     * parameter values must then not change between recording and backward
     * (they must not anyway, for the gradients to be right). The parameters'
     * gradients equal KEEP's up to summation order.
     */
    ad_copy_grads copy_grads;
    /**
     * 1: backward hands each intermediate tensor's gradient buffer back to the
     * tape as soon as the op that produced the tensor has used it, and reuses
     * it for a later gradient of the same size, so that backward keeps about
     * one time step's gradients live instead of all of them. Gradients of
     * parameters and of leaves (variables, constants, copies) are kept, and
     * so are those under 64 elements. A released gradient's norm is recorded
     * first and stays readable with ad_tensor_grad_norm(); reading the
     * gradient itself fails with AD_ERR_STATE.
     */
    int release_grads;
    /**
     * AD_FAST_* bits (ad_fast_path): lean-tape speed paths turned off; 0 leaves
     * every one that applies on. Any other bit makes ad_tape_new() fail.
     */
    unsigned fast_off;
} ad_tape_options;

/** The modes a tape runs in (ad_tape_mode()). */
typedef struct ad_tape_modes {
    ad_copy_grads copy_grads; /**< what is kept of the temporal copies' gradients */
    int release_grads;        /**< 1 when intermediate gradient buffers are released */
    int anomaly;              /**< 1 when anomaly detection is on */
    unsigned fast_paths;      /**< AD_FAST_* bits of the speed paths in use now */
} ad_tape_modes;

/**
 * A new empty tape, or NULL when `opts` is inconsistent (only one hook set,
 * a copy_grads value that is not an ad_copy_grads) or the first allocation
 * fails. Free with ad_tape_free().
 */
AD_API ad_tape *ad_tape_new(const ad_tape_options *opts);

/**
 * The modes tape t runs in: what it keeps of copies' gradients, whether it
 * releases intermediate gradients, whether anomaly detection is on. Code that
 * reads per-copy gradients can check copy_grads first; a NULL tape reads as
 * the defaults.
 */
AD_API ad_tape_modes ad_tape_mode(const ad_tape *t);

/** The name of a copy_grads mode ("keep", "norms", "none"), "?" for others. */
AD_API const char *ad_copy_grads_name(ad_copy_grads mode);

/** Frees the tape and every tensor on it; NULL is ignored. */
AD_API void ad_tape_free(ad_tape *t);

/**
 * Forgets every node and tensor in O(1), keeping the arena's memory for
 * reuse, and clears the error. Parameters keep their accumulated gradients.
 * Labels, grad mode and anomaly mode keep their settings.
 */
AD_API void ad_tape_reset(ad_tape *t);

/**
 * Runs the forward of every op recorded on t again, in order, from the
 * present values of its leaves and parameters, and leaves the tape ready for
 * another ad_backward(). For a loop whose graph is the same every step:
 * record it once, then per step replay, backward, update. Recording's input
 * checks, shape rules, node building and allocations are skipped; the
 * results are the ones recording again would give, to the bit.
 *
 * What a replay reads anew: parameters' values (an optimizer's update) and the
 * data of variables and constants written in place through ad_tensor_f32() /
 * ad_tensor_f64(). What stays as recorded: shapes, scalars, integer
 * indices (gather_rows, cross_entropy's targets), which tensors require
 * gradients.
 *
 * Memory: the arena goes back to where it stood when the first backward after
 * the last recorded op began, so a loop of replays runs in constant memory;
 * every gradient of a tape tensor from before is stale (the parameters'
 * gradients are theirs and accumulate as always). Errors, each a tape error:
 * AD_ERR_EMPTY (no nodes), AD_ERR_STATE for a tape holding a checkpointed
 * region (ad_checkpoint) or a dropout in training (neither keeps what its
 * next run needs), or under a gradient check's probe, and whatever an
 * op's forward reports (AD_ERR_NONFINITE in anomaly mode). A tape already in
 * error returns its status; NULL returns AD_ERR_NULL.
 */
AD_API ad_status ad_tape_replay(ad_tape *t);

/** The first error recorded since the last reset (AD_OK if none; AD_ERR_NULL for NULL). */
AD_API ad_status ad_tape_status(const ad_tape *t);

/** The message of the first error ("" if none). Valid until the next reset. */
AD_API const char *ad_tape_message(const ad_tape *t);

/**
 * Records an error on the tape as an op would (the first error wins; later
 * ops return NULL). For code built on the engine (layers, custom cells) that
 * detects bad input itself. Returns the tape's status afterwards; a NULL tape
 * returns AD_ERR_NULL.
 */
AD_API ad_status ad_tape_fail(ad_tape *t, ad_status code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/** Number of nodes recorded since the last reset. */
AD_API size_t ad_tape_size(const ad_tape *t);

/**
 * Gives x's data buffer back to the tape, which reuses it for later tensors
 * (op outputs and gradients) of the same size: for an op output that no
 * later op will read and whose data no recorded op's backward needs, such as
 * a cell's projections once its fused gates have run (nn/cell.c does this).
 * The engine knows which data each op's backward reads and refuses the rest:
 * AD_ERR_STATE when a recorded op's backward reads x, AD_ERR_ARG for a leaf
 * (variables, constants, parameter copies) or a view (release the tensor it
 * views), AD_ERR_NULL / AD_ERR_FOREIGN; each is a tape error. Afterwards
 * ad_tensor_data(x) is NULL, ad_tensor_get(x, i) NaN, ad_npy_write refuses x
 * (AD_ERR_STATE) and an op given x (or a view of it) fails with
 * AD_ERR_STATE; x's gradient is unaffected. Releasing twice is allowed.
 */
AD_API ad_status ad_tape_release(ad_tape *t, ad_tensor *x);

/** Bytes of arena memory handed out since the last reset. */
AD_API size_t ad_tape_bytes_used(const ad_tape *t);

/** Bytes of arena memory the tape holds (kept across resets). */
AD_API size_t ad_tape_bytes_reserved(const ad_tape *t);

/**
 * Turns gradient recording on (1) or off (0) for the ops that follow and
 * returns the previous setting. With recording off, results do not require
 * gradients (a no_grad region):
 *
 *     int was = ad_tape_set_grad_enabled(t, 0); ...; ad_tape_set_grad_enabled(t, was);
 */
AD_API int ad_tape_set_grad_enabled(ad_tape *t, int enabled);

/**
 * Turns anomaly detection on or off and returns the previous setting: the
 * one way to set it (a new tape starts with it off), for the whole tape or
 * for a region:
 *
 *     int was = ad_tape_set_anomaly(t, 1); ...; ad_tape_set_anomaly(t, was);
 *
 * When on, the first op whose forward output or backward input-gradient holds NaN
 * or Inf sets AD_ERR_NONFINITE with a message naming the op, the node index,
 * the pass (forward/backward) and the node's label.
 */
AD_API int ad_tape_set_anomaly(ad_tape *t, int enabled);

/**
 * Sets the label attached to the nodes recorded from now on (e.g.
 * "lstm.cell t=17"; NULL or "" for none). The text is copied onto the tape;
 * at most 63 bytes are kept. The label is cleared by ad_tape_reset().
 */
AD_API void ad_tape_set_label(ad_tape *t, const char *label);

/* ---- leaves: tensors with no inputs ---------------------------------------- */

/** A constant tensor of zeros on `t`. Shapes may be empty (numel 0). */
AD_API ad_tensor *ad_zeros(ad_tape *t, ad_dtype dtype, ad_shape shape);

/** A constant tensor of ones on `t`. */
AD_API ad_tensor *ad_ones(ad_tape *t, ad_dtype dtype, ad_shape shape);

/** A constant tensor on `t` with every element `value`. */
AD_API ad_tensor *ad_full(ad_tape *t, ad_dtype dtype, ad_shape shape, double value);

/** A constant tensor on `t` holding a copy of `data` (numel elements of `dtype`). */
AD_API ad_tensor *ad_from_data(ad_tape *t, ad_dtype dtype, ad_shape shape, const void *data);

/** A constant tensor on `t` converted from `data` (numel doubles) to `dtype`. */
AD_API ad_tensor *ad_from_f64(ad_tape *t, ad_dtype dtype, ad_shape shape, const double *data);

/** A copy on `t` of any tensor (heap, parameter view or another tape's) as a constant. */
AD_API ad_tensor *ad_constant(ad_tape *t, const ad_tensor *x);

/**
 * A leaf on `t` holding a copy of `data` that does require gradients, so that
 * dL/dx can be read with ad_tensor_grad_f64() after backward (e.g. the
 * gradient with respect to an input or an initial state).
 */
AD_API ad_tensor *ad_variable(ad_tape *t, ad_dtype dtype, ad_shape shape, const void *data);

/** A constant tensor of independent uniform draws in [lo, hi) from `rng`. */
AD_API ad_tensor *ad_rand_uniform(ad_tape *t, ad_rng *rng, ad_dtype dtype, ad_shape shape, double lo,
                           double hi);

/** A constant tensor of independent normal draws N(mean, std^2) from `rng`. */
AD_API ad_tensor *ad_rand_normal(ad_tape *t, ad_rng *rng, ad_dtype dtype, ad_shape shape, double mean,
                          double std);

/**
 * A temporal copy of parameter `p`: a leaf that aliases the parameter's
 * storage (no copy). Each call records a new copy; ad_backward() gives each
 * copy its own gradient and adds it into the parameter's gradient, so the
 * parameter's gradient is the sum of its copies' gradients. What stays
 * readable until the next reset depends on the tape's copy_grads mode: the
 * gradient (KEEP), its norm (NORMS, ad_tensor_grad_norm()) or nothing (NONE).
 */
AD_API ad_tensor *ad_use(ad_tape *t, ad_param *p);

/** The parameter `x` is a temporal copy of, or NULL. */
AD_API ad_param *ad_tensor_param(const ad_tensor *x);

/**
 * Writes up to `cap` temporal copies of `p` recorded on `t`, in recording
 * order, to `out` (may be NULL when cap is 0) and returns how many there are.
 */
AD_API size_t ad_tape_copies(const ad_tape *t, const ad_param *p, ad_tensor **out, size_t cap);

/* ---- backward ---------------------------------------------------------------- */

/**
 * Reverse sweep from `root`. With `upstream` NULL, root must have one element
 * and is seeded with 1; otherwise `upstream` (same shape and dtype as root,
 * on any tape or the heap) is the seed dL/droot. Fresh gradients are computed
 * for every tape tensor (readable until reset); parameters' gradients are
 * accumulated (+=) until ad_param_zero_grad(). Iterative, so chains of any
 * length work. Returns the tape's status; errors: AD_ERR_NULL, AD_ERR_FOREIGN,
 * AD_ERR_NOT_SCALAR, AD_ERR_SHAPE, AD_ERR_DTYPE, AD_ERR_STATE (root does not
 * require gradients), AD_ERR_NOMEM, AD_ERR_NONFINITE (anomaly mode).
 */
AD_API ad_status ad_backward(ad_tape *t, ad_tensor *root, const ad_tensor *upstream);

#ifdef __cplusplus
}
#endif
#endif
