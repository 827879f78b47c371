/*
 * kiln/interp.h: the interpreter. Create once (validates every op, computes
 * shapes and quantization parameters, plans the activation arena), then
 * invoke any number of times; invoke never allocates.
 *
 *   kiln_interp *it;
 *   if (kiln_interp_create(model, NULL, &it, &err) != KILN_OK) ...
 *   kiln_tensor_view in = kiln_interp_input(it, 0);
 *   memcpy(in.data, pixels, in.bytes);
 *   kiln_interp_invoke(it, &err);
 *   kiln_tensor_view out = kiln_interp_output(it, 0);
 *   kiln_interp_free(it);
 *
 * The model must outlive the interpreter. One interpreter is not safe to
 * invoke from two threads at once; create one per thread instead (they may
 * share the model).
 */
#ifndef KILN_INTERP_H
#define KILN_INTERP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kiln/base.h"
#include "kiln/model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kiln_interp kiln_interp;

/* Called after each op during invoke (for calibration and debugging): the
 * op's outputs are readable with kiln_interp_tensor until the next op runs.
 * It must not invoke the interpreter. */
typedef void (*kiln_op_observer)(void *ctx, kiln_interp *interp, int32_t op_index);

typedef struct kiln_interp_options {
  int32_t n_threads;  /* 0: all cores */
  bool force_ref;     /* reference kernels only (also KILN_KERNELS=ref) */
  bool profile;       /* record per-op times on each invoke */
  kiln_op_observer observer; /* NULL: none */
  void *observer_ctx;
} kiln_interp_options;

/* A tensor of a prepared interpreter: its description and its memory. */
typedef struct kiln_tensor_view {
  const char *name;
  kiln_dtype dtype;
  int32_t rank;
  const int32_t *shape;
  const kiln_quant *quant;
  void *data;
  size_t bytes;
} kiln_tensor_view;

/* Prepares model for execution. Refuses (KILN_ERR_UNSUPPORTED) any op,
 * dtype or option kiln does not implement, naming the op and its index.
 * options may be NULL for defaults. */
kiln_status kiln_interp_create(const kiln_model *model, const kiln_interp_options *options,
                               kiln_interp **out, kiln_error *err);

/* Runs the graph on the current input contents. */
kiln_status kiln_interp_invoke(kiln_interp *interp, kiln_error *err);

int32_t kiln_interp_input_count(const kiln_interp *interp);
int32_t kiln_interp_output_count(const kiln_interp *interp);
kiln_tensor_view kiln_interp_input(kiln_interp *interp, int32_t i);
kiln_tensor_view kiln_interp_output(kiln_interp *interp, int32_t i);
/* Any tensor by model index (activations are only meaningful for tensors
 * still live at the end of invoke: inputs, outputs and constants). */
kiln_tensor_view kiln_interp_tensor(kiln_interp *interp, int32_t tensor_index);

/* Bytes of the activation arena (all non-constant tensors, overlapped by
 * lifetime), of per-op scratch, and of prepared per-op parameters. */
typedef struct kiln_memory_stats {
  size_t arena_bytes;
  size_t scratch_bytes;
  size_t params_bytes;
  size_t unplanned_bytes; /* sum of all activation sizes without overlap */
} kiln_memory_stats;
kiln_memory_stats kiln_interp_memory(const kiln_interp *interp);

/* Per-op profile of the last invoke (options.profile). */
typedef struct kiln_op_profile {
  int32_t op_index;
  const char *op_name;
  double ms;
} kiln_op_profile;
/* Returns the number of ops; *out points into the interpreter. */
int32_t kiln_interp_profile(const kiln_interp *interp, const kiln_op_profile **out);

void kiln_interp_free(kiln_interp *interp);

/* The machine as kiln's kernels see it: online CPUs (the default thread
 * count) and the instruction sets the optimized kernels use here, e.g.
 * "avx2+fma avx512 avx512vnni" (after KILN_ISA_MASK). */
int32_t kiln_system_cpus(void);
void kiln_system_isa(char *buf, int cap);

#ifdef __cplusplus
}
#endif
#endif
