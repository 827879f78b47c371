/*
 * runtime/planner.h: the activation memory planner. Given each buffer's
 * size and its lifetime (first and last op that touches it), places buffers
 * in one arena so that buffers alive at the same time never overlap, greedy
 * by decreasing size, each at the lowest fitting offset (tflite-micro's
 * GreedyMemoryPlanner idea). Offsets are multiples of KILN_PLAN_ALIGN.
 */
#ifndef KILN_RUNTIME_PLANNER_H
#define KILN_RUNTIME_PLANNER_H

#include <stddef.h>
#include <stdint.h>

#include "kiln/base.h"

#define KILN_PLAN_ALIGN 64

typedef struct kiln_plan_item {
  size_t bytes;
  int32_t first, last; /* inclusive op-index lifetime */
  size_t offset;       /* result */
} kiln_plan_item;

/* Assigns offsets; *arena_bytes receives the arena size needed. */
kiln_status kiln_plan_memory(kiln_plan_item *items, int32_t n, size_t *arena_bytes,
                             kiln_error *err);

#endif
