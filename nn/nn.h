/**
 * @file
 * nn.h - the umbrella header of unroll's network layer.
 *
 *     #include <unroll/nn/nn.h>
 *
 * brings in the engine (autodiff/autodiff.h), named parameter sets
 * (params.h), safetensors files (safetensors.h), state-dict loading (state_dict.h), recurrent cells (cell.h), the unroller (unroll.h) and the
 * hand-derived BPTT reference (bptt_ref.h). See docs/guide.md.
 */
#ifndef UNROLL_NN_NN_H
#define UNROLL_NN_NN_H

#include "../autodiff/autodiff.h"
#include "params.h"
#include "cell.h"
#include "unroll.h"
#include "bptt_ref.h"
#include "textbook.h"
#include "gradflow.h"
#include "plot.h"
#include "layers.h"
#include "optim.h"
#include "checkpoint.h"
#include "safetensors.h"
#include "state_dict.h"
#include "tbptt.h"
#include "rtrl.h"
#include "recompute_plan.h"

#endif
