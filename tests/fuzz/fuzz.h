/*
 * fuzz.h - what the fuzz targets share: the libFuzzer entry point, the small
 * model whose checkpoints and .npy folders they load, and a scratch folder.
 *
 * Each fuzz_<target>.c defines LLVMFuzzerTestOneInput(). Built with clang's
 * -fsanitize=fuzzer it is a libFuzzer binary (UNROLL_BUILD_FUZZ); linked with
 * replay.c it is a plain program that runs every file of a corpus once, which
 * is how the normal test build replays the committed corpora. A target
 * reports a broken invariant with abort(), which both drivers see as a crash.
 * The harness reads files and repairs checksums with the libraries' own
 * internals (nn/internal.h), so in a shared build it links their static copies.
 */
#ifndef UNROLL_FUZZ_H
#define UNROLL_FUZZ_H

#include <stddef.h>
#include <stdint.h>

#include <unroll/autodiff/autodiff.h>
#include <unroll/nn/nn.h>

#include "../../nn/internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The fuzzed model: "lstm" (an LSTM cell, 2 inputs, 2 hidden units) and "head"
 * (a 2 -> 3 linear layer), f32, seeded values; with an Adam optimizer. */
typedef struct fuzz_model {
    nn_params *ps;
    nn_cell cell;
    nn_linear head;
    nn_optim *opt;
} fuzz_model;

/* Builds the model (NULL fields on failure; fuzz_model_free() is safe then). */
void fuzz_model_new(fuzz_model *m, uint64_t seed);
void fuzz_model_free(fuzz_model *m);

/* Whether every value, optimizer moment and step of a equals b's bit for bit. */
int fuzz_model_equal(fuzz_model *a, fuzz_model *b);

/* Separates the files of one fuzz_npy_dir input. */
#define FUZZ_NPY_DIR_SEP "--unroll-npy-dir--"

/* A folder private to this process (made on first use, under $TMPDIR or /tmp). */
const char *fuzz_scratch_dir(void);

/* Writes `size` bytes to `path` (plainly, not atomically); 0 on success. */
int fuzz_write_file(const char *path, const void *data, size_t size);

#endif
