/*
 * runtime/op.h: the contract between the interpreter and each operator.
 *
 * An operator implementation is a prepare function and an eval function.
 *   prepare: runs once when the interpreter is created. It checks dtypes,
 *     shapes, quantization and options (refusing anything unsupported with a
 *     message), computes output shapes (kiln_prepare_set_output_shape checks
 *     them against the shapes the model declares), precomputes everything
 *     invoke needs (requantization multipliers, tables, packed weights) into
 *     memory from kiln_prepare_alloc, and states the scratch bytes it needs.
 *   eval: runs on every invoke. It never allocates and cannot fail: anything
 *     that could go wrong was refused in prepare. It calls kernels (which see
 *     only buffers, shapes and precomputed parameters, never the graph).
 *
 * Each family file (ops_conv.c, ops_pool.c, ...) exports a table of
 * kiln_op_reg entries ending with {-1}; registry.c joins the tables.
 */
#ifndef KILN_RUNTIME_OP_H
#define KILN_RUNTIME_OP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/threadpool.h"
#include "kiln/base.h"
#include "kiln/model.h"

/* A tensor as the interpreter sees it. data points into the activation
 * arena, or at constant data (is_const: kernels must not write it). */
typedef struct kiln_rt_tensor {
  const char *name;
  kiln_dtype dtype;
  int32_t rank;
  int32_t shape[KILN_MAX_RANK];
  const kiln_quant *quant; /* never NULL; count 0 when not quantized */
  void *data;
  size_t bytes;
  bool is_const;
} kiln_rt_tensor;

typedef struct kiln_node {
  const kiln_op *op;
  int32_t index; /* operator index in the model */
  int32_t n_inputs, n_outputs;
  kiln_rt_tensor **inputs; /* NULL entries for absent optional inputs */
  kiln_rt_tensor **outputs;
  void *params;         /* the op's prepared parameters (from prepare) */
  size_t scratch_bytes; /* scratch the op's eval needs per thread (set by prepare) */
} kiln_node;

typedef struct kiln_prepare_ctx kiln_prepare_ctx;

/* Zeroed, 64-byte aligned memory that lives as long as the interpreter.
 * NULL on failure (return kiln_prepare_nomem). */
void *kiln_prepare_alloc(kiln_prepare_ctx *ctx, size_t bytes);

/* Fails the prepare with a message prefixed "op N (NAME): ". */
kiln_status kiln_prepare_fail(kiln_prepare_ctx *ctx, kiln_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
kiln_status kiln_prepare_nomem(kiln_prepare_ctx *ctx);

/* Sets an output's shape. When the model declares a shape for the tensor,
 * the two must agree (else a format error naming both). */
kiln_status kiln_prepare_set_output_shape(kiln_prepare_ctx *ctx, kiln_rt_tensor *t, int32_t rank,
                                          const int32_t *shape);

/* Packed data of a node: derived from its constants only (packed weights
 * with what is folded into them), so a bundle (kiln/bundle.h) stores it and
 * an interpreter created from the bundle uses it without packing again.
 * kiln_prepare_packed(ctx, bytes, isa, &pk) gives the node's next packed
 * blob, 64-byte aligned and bytes long, laid out for the kernels of ISA bits
 * isa (what a CPU needs to run it): either new zeroed memory the op fills
 * (pk->fill == pk->data; the op may set pk->info, a word it wants back with
 * the data, e.g. a layout flag), or the blob stored in the bundle (pk->fill
 * NULL: read-only, already filled, pk->info as it was set). A stored blob of
 * another size or for other kernels fails the prepare. The packing must
 * depend only on the node's constants and parameters and on the kernel
 * chosen from kiln_prepare_isa, never on the thread count. */
typedef struct kiln_packed {
  const void *data;
  void *fill;
  size_t bytes;
  uint32_t info;
  uint32_t isa;
} kiln_packed;
kiln_status kiln_prepare_packed(kiln_prepare_ctx *ctx, size_t bytes, uint32_t isa,
                                kiln_packed **out);
/* The stored blob kiln_prepare_packed would return next, without taking it
 * (NULL when there is none), for ops whose size depends on pk->info. */
const kiln_packed *kiln_prepare_packed_peek(kiln_prepare_ctx *ctx);

/* Which kernels prepare should choose (KILN_KERNELS=ref forces reference). */
bool kiln_prepare_force_ref(const kiln_prepare_ctx *ctx);
/* ISA bits prepare may use (kernels/cpu.h): 0 when forced to reference. */
uint32_t kiln_prepare_isa(const kiln_prepare_ctx *ctx);
/* Threads invoke will run with (>= 1). */
int32_t kiln_prepare_threads(const kiln_prepare_ctx *ctx);

/* What eval gets besides its node. Work may be split over the pool with
 * kiln_threadpool_run (base/threadpool.h); results must not depend on the
 * number of threads. Thread t's scratch is scratch + t * scratch_stride,
 * each at least node->scratch_bytes and 64-byte aligned. */
typedef struct kiln_eval_ctx {
  void *scratch;
  size_t scratch_stride;
  kiln_threadpool *pool; /* NULL: run single-threaded */
  int32_t n_threads;
} kiln_eval_ctx;

typedef struct kiln_op_impl {
  kiln_status (*prepare)(kiln_node *node, kiln_prepare_ctx *ctx);
  void (*eval)(const kiln_node *node, const kiln_eval_ctx *ctx);
} kiln_op_impl;

typedef struct kiln_op_reg {
  int32_t code;            /* builtin code; KILN_OP_CUSTOM with custom_code; -1 ends a table */
  const char *custom_code; /* custom op name, else NULL */
  kiln_op_impl impl;
} kiln_op_reg;

/* Family tables (each ends with an entry whose code is -1). */
extern const kiln_op_reg kiln_ops_conv[];        /* CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, ... */
extern const kiln_op_reg kiln_ops_pool[];        /* AVERAGE/MAX_POOL_2D, MEAN */
extern const kiln_op_reg kiln_ops_elementwise[]; /* ADD, SUB, MUL, activations, SOFTMAX, L2_NORMALIZATION */
extern const kiln_op_reg kiln_ops_shape[];       /* CONCATENATION, RESHAPE, PAD, RESIZE, (DE)QUANTIZE */
extern const kiln_op_reg kiln_ops_detect[];      /* TFLite_Detection_PostProcess */

/* The implementation for an op, or NULL when kiln has none. */
const kiln_op_impl *kiln_op_lookup(int32_t code, const char *custom_code);

/* ---- Helpers shared by op implementations ---- */

/* Elements of a runtime tensor. */
int64_t kiln_rt_elements(const kiln_rt_tensor *t);

/* Output clamp bounds for a fused activation on a quantized output
 * (TFLite CalculateActivationRangeQuantized), for int8/uint8/int32 outputs. */
void kiln_activation_range_q(kiln_activation act, const kiln_rt_tensor *out, int32_t *lo,
                             int32_t *hi);
/* Float clamp bounds for a fused activation (CalculateActivationRange). */
void kiln_activation_range_f(kiln_activation act, float *lo, float *hi);

#endif
