/*
 * compile/compile_int.h: internals of the edge compiler (kiln/compile.h):
 * the parsed target, op mapping, parameter caching and estimates,
 * segmentation and reports. One file per step:
 *   target.c   targets/NAME.json -> kiln_target (every field validated)
 *   opmap.c    per op: runs on the device or the CPU, status and reason
 *   plan.c     parameter bytes per op, on-chip caching, MACs, estimates
 *   segment.c  cut points and standalone segment models
 *   report.c   text report (the Edge TPU compiler's lines) and JSON
 *   compile.c  kiln_compile / kiln_compile_write
 */
#ifndef KILN_COMPILE_INT_H
#define KILN_COMPILE_INT_H

#include <jansson.h>

#include "kiln/compile.h"

/* The Edge TPU compiler's per-op status strings. */
#define STATUS_NOT_SUPPORTED "Operation not supported"
#define STATUS_DTYPE "Operation is working on an unsupported data type"
#define STATUS_UNSPECIFIED \
  "Operation is otherwise supported, but not mapped due to some unspecified limitation"
#define STATUS_SUBGRAPH "More than one subgraph is not supported"
#define STATUS_RANK "Tensor has unsupported rank (up to 3 innermost dimensions mapped)"

/* Op-specific limits a target's op table can name (docs/compiler.md). */
typedef enum limit_kind {
  LIMIT_NO_FUSED_ACTIVATION,
  LIMIT_XY_ONLY,
  LIMIT_INPUT_1D,
  LIMIT_OUTPUT_1D,
  LIMIT_MAX_INPUT_ELEMENTS,
  LIMIT_CONSTANT_INPUT,
  LIMIT_STRIDES_ONE,
  LIMIT_LEADING_ONES_ONLY,
  LIMIT_DEFAULT_WEIGHTS_FORMAT,
  LIMIT_CONSTANT_ZERO_PAD_ONLY,
  LIMIT_BATCH_ONE,
  LIMIT_COUNT
} limit_kind;

typedef struct target_limit {
  limit_kind kind;
  int64_t value; /* max_input_elements, constant_input */
  char *reason;
} target_limit;

typedef struct target_rule {
  char *op;       /* builtin name or custom code */
  bool custom;
  bool supported;
  const char *status; /* for unsupported ops: one of the STATUS_ strings */
  char *reason;       /* unsupported ops */
  int32_t n_limits;
  target_limit *limits;
} target_rule;

struct kiln_target {
  char *path;
  char *name, *description, *device_name, *mapped_status;
  bool is_cpu;
  int64_t param_memory_bytes; /* -1: none (CPU) */
  double param_read_bytes_per_s;
  double link_bytes_per_s; /* 0: no link (CPU) */
  double macs_per_s, float_macs_per_s;
  double op_overhead_s, inference_overhead_s;
  uint32_t dtype_mask; /* bit (1 << kiln_dtype) */
  int32_t max_innermost_dims; /* 0: no limit */
  bool single_subgraph;
  kiln_target *host; /* estimates CPU ops; NULL: this target itself */
  int32_t n_rules;
  target_rule *rules;
};

/* Names of the limits, indexed by limit_kind. */
extern const char *const compile_limit_names[LIMIT_COUNT];

/* The rule for an op, or NULL when the target's table lacks it. */
const target_rule *target_rule_for(const kiln_target *t, const kiln_op *op);
/* The op's type as reports show it: builtin name or custom code. */
const char *compile_op_type(const kiln_op *op);

/* opmap.c: fills on_device, status and reason of every op of cm and
 * first_cpu_op, device_ops, cpu_ops, subgraphs, quantized. Strings point
 * into the target or into cm's model pool. */
kiln_status compile_map_ops(const kiln_target *t, kiln_compiled_model *cm, kiln_error *err);

/* plan.c: parameter bytes per op, MACs. */
void compile_count_params(kiln_compiled_model *cm);
/* Fills on-chip/off-chip bytes of models[0..n) in order from one budget
 * (shared) or one budget each; returns the bytes used in total. */
int64_t compile_cache(const kiln_target *t, kiln_compiled_model *models, int32_t n, bool shared);
/* Estimates each op's time and the model's latency from the on/off-chip
 * split already filled in. */
void compile_estimate(const kiln_target *t, kiln_compiled_model *cm);

/* segment.c: cut positions for n segments of roughly equal parameter
 * bytes, or after the ops producing the named tensors. */
kiln_status compile_cuts_by_params(const kiln_compiled_model *cm, int32_t n_segments, int32_t *cuts,
                                   kiln_error *err);
kiln_status compile_cuts_by_tensors(const kiln_model *m, const char *const *names, int32_t n,
                                    int32_t *cuts, int32_t *n_cuts, kiln_error *err);

/* report.c */
json_t *compile_model_json(const kiln_compile_result *r, int32_t i, bool for_metadata);
/* "604.50KiB", as the Edge TPU compiler prints sizes. */
void compile_format_bytes(char *buf, size_t cap, int64_t bytes);

#endif
