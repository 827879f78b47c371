/* Greedy lifetime-aware arena planner (see runtime/planner.h). O(n^2) in the
 * number of buffers, which is a few hundred for real models. */
#include "runtime/planner.h"

#include <stdlib.h>

static size_t align_up(size_t x) { return (x + KILN_PLAN_ALIGN - 1) / KILN_PLAN_ALIGN * KILN_PLAN_ALIGN; }

/* Sorts item pointers by decreasing size, then first use, then position. */
static int by_size_desc(const void *a, const void *b) {
  const kiln_plan_item *x = *(const kiln_plan_item *const *)a;
  const kiln_plan_item *y = *(const kiln_plan_item *const *)b;
  if (x->bytes != y->bytes) return x->bytes < y->bytes ? 1 : -1;
  if (x->first != y->first) return x->first < y->first ? -1 : 1;
  return x < y ? -1 : (x > y ? 1 : 0);
}

static int by_offset(const void *a, const void *b) {
  const kiln_plan_item *x = *(const kiln_plan_item *const *)a;
  const kiln_plan_item *y = *(const kiln_plan_item *const *)b;
  return x->offset < y->offset ? -1 : (x->offset > y->offset ? 1 : 0);
}

kiln_status kiln_plan_memory(kiln_plan_item *items, int32_t n, size_t *arena_bytes,
                             kiln_error *err) {
  *arena_bytes = 0;
  if (n == 0) return KILN_OK;
  kiln_plan_item **order = kiln_calloc((size_t)n, sizeof *order);
  const kiln_plan_item **placed = kiln_calloc((size_t)n, sizeof *placed);
  const kiln_plan_item **conf = kiln_calloc((size_t)n, sizeof *conf);
  if (!order || !placed || !conf) {
    kiln_free(order);
    kiln_free(placed);
    kiln_free(conf);
    return kiln_fail(err, KILN_ERR_NOMEM, "out of memory planning %d buffers", (int)n);
  }
  for (int32_t i = 0; i < n; i++) order[i] = &items[i];
  qsort(order, (size_t)n, sizeof *order, by_size_desc);
  int32_t n_placed = 0;
  size_t total = 0;
  for (int32_t k = 0; k < n; k++) {
    kiln_plan_item *it = order[k];
    size_t need = align_up(it->bytes);
    /* Buffers overlapping in time, by offset; take the first gap that fits. */
    int32_t n_live = 0;
    for (int32_t j = 0; j < n_placed; j++)
      if (placed[j]->first <= it->last && it->first <= placed[j]->last) conf[n_live++] = placed[j];
    qsort(conf, (size_t)n_live, sizeof *conf, by_offset);
    size_t offset = 0;
    for (int32_t j = 0; j < n_live; j++) {
      if (conf[j]->offset >= offset + need) break;
      size_t end = conf[j]->offset + align_up(conf[j]->bytes);
      if (end > offset) offset = end;
    }
    it->offset = offset;
    if (offset + need > total) total = offset + need;
    placed[n_placed++] = it;
  }
  kiln_free(order);
  kiln_free(placed);
  kiln_free(conf);
  *arena_bytes = total;
  return KILN_OK;
}
