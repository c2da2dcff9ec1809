/**
 * @file
 * dot.h - Graphviz DOT export of a tape.
 *
 * One box per recorded op, labelled with its name, output shape and the
 * tape label it was recorded under (e.g. "lstm.cell t=17"); edges run from
 * inputs to the op. Each parameter is drawn once, as an ellipse, with a
 * dashed edge to every temporal copy of it, so a weight shared across time
 * steps is visibly one weight.
 *
 *     ad_tape_save_dot(tape, "graph.dot", &err);
 *     // dot -Tsvg graph.dot > graph.svg
 */
#ifndef UNROLL_AD_DOT_H
#define UNROLL_AD_DOT_H

#include <stdio.h>

#include "status.h"
#include "tape.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Writes the tape as a DOT digraph to `out`. Errors: AD_ERR_NULL, AD_ERR_IO. */
AD_API ad_status ad_tape_write_dot(const ad_tape *t, FILE *out, ad_error *err);

/** Writes the tape as a DOT digraph to the file at `path` (replaced atomically). */
AD_API ad_status ad_tape_save_dot(const ad_tape *t, const char *path, ad_error *err);

#ifdef __cplusplus
}
#endif
#endif
