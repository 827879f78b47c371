/*
 * runtime/interp_int.h: the interpreter's private state, shared by the
 * runtime's own files (interp.c, prepare.c, planner.c).
 */
#ifndef KILN_RUNTIME_INTERP_INT_H
#define KILN_RUNTIME_INTERP_INT_H

#include "base/pool.h"
#include "runtime/op.h"

struct kiln_prepare_ctx {
  const kiln_model *model;
  const kiln_node *node;
  kiln_pool *pool; /* persistent memory of the interpreter */
  kiln_error *err;
  bool force_ref;
  int32_t n_threads;
};

#endif
