/**
 * @file
 * autodiff.h - the umbrella header of unroll's reverse-mode engine.
 *
 *     #include <unroll/autodiff/autodiff.h>
 *
 * brings in tensors and parameters (tensor.h), the tape and backward
 * (tape.h), forward mode (forward.h), the ops (ops.h), the random generator (rng.h), status codes
 * (status.h), integer tensors (itensor.h), gradient checking (gradcheck.h), DOT export (dot.h), checkpointed regions (checkpoint.h), .npy
 * files (npy.h) and the thread count of the matrix products (threads.h). See
 * docs/guide.md for a tour.
 */
#ifndef UNROLL_AD_AUTODIFF_H
#define UNROLL_AD_AUTODIFF_H

#include "status.h"
#include "rng.h"
#include "tensor.h"
#include "itensor.h"
#include "tape.h"
#include "ops.h"
#include "forward.h"
#include "gradcheck.h"
#include "npy.h"
#include "dot.h"
#include "checkpoint.h"
#include "threads.h"

#endif
