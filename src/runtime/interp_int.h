/*
 * runtime/interp_int.h: the interpreter's private state, shared by the
 * runtime's own files (interp.c, prepare.c, planner.c, bundle*.c).
 */
#ifndef KILN_RUNTIME_INTERP_INT_H
#define KILN_RUNTIME_INTERP_INT_H

#include "base/pool.h"
#include "kiln/interp.h"
#include "runtime/op.h"

/* A packed blob (runtime/op.h) with its place: the op and the order of the
 * blob within the op's prepare. */
typedef struct kiln_packed_rec {
  kiln_packed pk;
  int32_t op, seq;
  struct kiln_packed_rec *next; /* the interpreter's list of what it packed */
} kiln_packed_rec;

/* No arena offset: the tensor is not in the activation arena. */
#define KILN_NO_OFFSET SIZE_MAX

/* How a bundle (runtime/bundle*.c) has an interpreter created: with the
 * bundle's instruction set, packed blobs and memory plan, a shared thread
 * pool, and the arena and scratch supplied afterwards. */
typedef struct kiln_interp_setup {
  uint32_t isa;                  /* ISA bits prepare may use (the bundle's) */
  const kiln_packed_rec *stored; /* sorted by op, then seq */
  int32_t n_stored;
  const size_t *arena_offsets;   /* [n_tensors] offsets or KILN_NO_OFFSET; NULL: plan here */
  size_t arena_bytes;            /* with arena_offsets: the plan's arena size */
  kiln_threadpool *threads;      /* shared, not freed by the interpreter; NULL: own */
  bool defer_memory;             /* no arena or scratch until kiln_interp_bind_memory */
} kiln_interp_setup;

struct kiln_prepare_ctx {
  const kiln_model *model;
  const kiln_node *node;
  kiln_pool *pool; /* persistent memory of the interpreter */
  kiln_error *err;
  bool force_ref;
  int32_t n_threads;
  uint32_t isa;                  /* ISA bits prepare may use */
  const kiln_packed_rec *stored; /* stored blobs (sorted), from a bundle */
  int32_t n_stored, stored_pos;
  int32_t seq;                   /* blobs the current node has taken */
  size_t stored_bytes;           /* bytes of stored blobs taken */
  kiln_packed_rec **record_tail; /* where the next new blob is listed */
};

/* kiln_interp_create with a bundle's setup (NULL: as kiln_interp_create). */
kiln_status kiln_interp_create_setup(const kiln_model *model, const kiln_interp_options *options,
                                     const kiln_interp_setup *setup, kiln_interp **out,
                                     kiln_error *err);
/* For an interpreter created with defer_memory: points its tensors into
 * arena (at least its arena_bytes) and its ops at scratch (n_threads *
 * scratch_stride bytes, scratch_stride >= its scratch_bytes, 64-aligned). */
void kiln_interp_bind_memory(kiln_interp *interp, uint8_t *arena, uint8_t *scratch,
                             size_t scratch_stride);
/* Per tensor: its offset in the activation arena, or KILN_NO_OFFSET. */
const size_t *kiln_interp_arena_offsets(const kiln_interp *interp);
/* What prepare packed (not blobs taken from a bundle), in prepare order. */
const kiln_packed_rec *kiln_interp_packed(const kiln_interp *interp);
/* The ISA bits its prepare used (0: reference kernels). */
uint32_t kiln_interp_isa(const kiln_interp *interp);
int32_t kiln_interp_threads(const kiln_interp *interp);

#endif
