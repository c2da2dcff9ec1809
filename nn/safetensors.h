/**
 * @file
 * safetensors.h - safetensors files, the format PyTorch and Hugging Face
 * users exchange weights in.
 *
 * A file is an 8-byte little-endian header size N, N bytes of a JSON object
 * {name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__":
 * {key: value}} and then the data buffer, which the tensors (row-major,
 * little-endian, offsets relative to the buffer) tile exactly. Reading is
 * strict (docs/formats.md): the header size is bounded by the file, the JSON
 * is parsed by a strict parser of this library, and overlapping, out-of-range
 * or gapped offsets, duplicate names, unknown dtypes, sizes that disagree
 * with shapes and trailing bytes are refused. Float entries (F32, F64, and
 * BF16/F16 converted exactly) read as ad_tensor of either dtype; integer ones
 * (I64, I32, U8, BOOL) as ad_itensor.
 *
 *     ad_error err;
 *     nn_safetensors *st = nn_safetensors_open("model.safetensors", &err);
 *     if (!st) { fprintf(stderr, "%s\n", err.msg); return 1; }
 *     for (size_t i = 0; i < nn_safetensors_count(st); i++)
 *         printf("%s %s\n", nn_safetensors_name(st, i), nn_safetensors_dtype(st, i));
 *     ad_tensor *w = nn_safetensors_tensor(st, 0, AD_F64, &err);
 *     ...
 *     ad_tensor_free(w);
 *     nn_safetensors_free(st);
 *
 * Loading such a file into a model by name is nn_params_load_state_dict()
 * (state_dict.h); saving one is nn_params_save_safetensors().
 */
#ifndef UNROLL_NN_SAFETENSORS_H
#define UNROLL_NN_SAFETENSORS_H

#include <stddef.h>

#include "../autodiff/autodiff.h"
#include "params.h"

#ifdef __cplusplus
extern "C" {
#endif

/** The largest header accepted, in bytes (the size the format's own reader allows). */
#define NN_SAFETENSORS_MAX_HEADER (100u * 1024u * 1024u)

/** A parsed safetensors file: entries in file order and the metadata. */
typedef struct nn_safetensors nn_safetensors;

/**
 * Parses a whole safetensors image of `size` bytes (copied; the caller keeps
 * `data`). Returns NULL with err (may be NULL) set to AD_ERR_NULL,
 * AD_ERR_FORMAT (bad header size, JSON, entry, offsets or trailing bytes),
 * AD_ERR_DUPLICATE (a name twice), AD_ERR_DTYPE (an unknown dtype),
 * AD_ERR_RANK (above 4), AD_ERR_OVERFLOW or AD_ERR_NOMEM. Never reads outside
 * the image or allocates more than a small multiple of its size.
 */
NN_API nn_safetensors *nn_safetensors_read(const void *data, size_t size, ad_error *err);

/** Opens the file at `path` (see nn_safetensors_read(); also AD_ERR_IO). */
NN_API nn_safetensors *nn_safetensors_open(const char *path, ad_error *err);

/** Frees a parsed file; NULL is ignored. */
NN_API void nn_safetensors_free(nn_safetensors *st);

/** Number of tensors (the metadata is not one). */
NN_API size_t nn_safetensors_count(const nn_safetensors *st);

/** The name of entry i, in the header's order; NULL past the end. */
NN_API const char *nn_safetensors_name(const nn_safetensors *st, size_t i);

/** The index of the entry called `name`, or -1. */
NN_API long nn_safetensors_find(const nn_safetensors *st, const char *name);

/** The dtype of entry i as the file spells it ("F32", "BF16", "I64", ...); NULL past the end. */
NN_API const char *nn_safetensors_dtype(const nn_safetensors *st, size_t i);

/** 1 when entry i holds integers (I64, I32, U8, BOOL), 0 for floats or past the end. */
NN_API int nn_safetensors_is_int(const nn_safetensors *st, size_t i);

/** The shape of entry i (rank 0 past the end). */
NN_API ad_shape nn_safetensors_shape(const nn_safetensors *st, size_t i);

/**
 * Entry i as a new heap tensor of `dtype` (free with ad_tensor_free()),
 * converting F32, F64, BF16 and F16 values (BF16 and F16 are exact in
 * either dtype). Errors: AD_ERR_NULL, AD_ERR_ARG (i past the end),
 * AD_ERR_DTYPE (an integer entry), AD_ERR_NOMEM.
 */
NN_API ad_tensor *nn_safetensors_tensor(const nn_safetensors *st, size_t i, ad_dtype dtype, ad_error *err);

/** Entry i, an integer entry, as a new ad_itensor (AD_ERR_DTYPE for a float one). */
NN_API ad_itensor *nn_safetensors_ints(const nn_safetensors *st, size_t i, ad_error *err);

/** Number of "__metadata__" pairs. */
NN_API size_t nn_safetensors_metadata_count(const nn_safetensors *st);

/** The i-th metadata key and value, in file order; NULL past the end (value may be NULL). */
NN_API const char *nn_safetensors_metadata_at(const nn_safetensors *st, size_t i, const char **value);

/** The metadata value of `key`, or NULL. */
NN_API const char *nn_safetensors_metadata(const nn_safetensors *st, const char *key);

/** One tensor to write: a float tensor or (when `tensor` is NULL) an integer one. */
typedef struct nn_safetensors_entry {
    const char *name;         /**< the tensor's name in the file */
    const ad_tensor *tensor;  /**< written as F32 or F64 */
    const ad_itensor *ints;   /**< written as I64, I32, U8 or BOOL after its type */
} nn_safetensors_entry;

/**
 * Encodes n entries and `n_meta` metadata pairs (`metadata[2k]` the key,
 * `metadata[2k+1]` the value; may be NULL when n_meta is 0) as a safetensors
 * image in a new malloc'd buffer *out of *size bytes, tensors in the given
 * order, the header padded with spaces to a multiple of 8 bytes. Errors:
 * AD_ERR_NULL, AD_ERR_ARG (an empty name, a name or string that is not
 * UTF-8, "__metadata__" as a name, an entry with neither or both tensors),
 * AD_ERR_DUPLICATE (a name or key twice), AD_ERR_NOMEM. Tensors must hold
 * their data (heap tensors, parameter values, tape tensors not released).
 */
NN_API ad_status nn_safetensors_write(const nn_safetensors_entry *entries, size_t n,
                                      const char *const *metadata, size_t n_meta, void **out,
                                      size_t *size, ad_error *err);

/** nn_safetensors_write() to `path`, replaced atomically (also AD_ERR_IO). */
NN_API ad_status nn_safetensors_save(const char *path, const nn_safetensors_entry *entries, size_t n,
                                     const char *const *metadata, size_t n_meta, ad_error *err);

/**
 * Saves every parameter of `ps` by name, in registration order, as F32 or
 * F64 (the set's dtype), with optional metadata as in nn_safetensors_write().
 * PyTorch reads it with safetensors.torch.load_file(). Errors: those of
 * nn_safetensors_save().
 */
NN_API ad_status nn_params_save_safetensors(const nn_params *ps, const char *path,
                                            const char *const *metadata, size_t n_meta, ad_error *err);

#ifdef __cplusplus
}
#endif
#endif
