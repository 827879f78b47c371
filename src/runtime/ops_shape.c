/*
 * Operator implementations: shape family (see runtime/op.h):
 * CONCATENATION, RESHAPE, SQUEEZE, PAD, PADV2, RESIZE_BILINEAR,
 * RESIZE_NEAREST_NEIGHBOR, QUANTIZE and DEQUANTIZE.
 *
 * Prepare follows the checks of TFLite's kernels (concatenation.cc,
 * reshape.cc, squeeze.cc, pad.cc, resize_*.cc, quantize.cc, dequantize.cc)
 * and adds kiln's own: shape-giving inputs (new shape, paddings, sizes) must
 * be constant, and ops that only move bytes must keep the quantization of
 * their input. Eval never fails and never allocates.
 *
 * Faster paths chosen at prepare: CONCATENATION copies large outputs with
 * several threads (byte ranges of the output), and float32 / int8
 * RESIZE_BILINEAR uses the vectorized kernels of kernels/misc_fast.h with
 * source coordinates computed once.
 */
#include <string.h>

#include "kernels/misc_fast.h"
#include "kernels/quant_math.h"
#include "kernels/ref/shape_ref.h"
#include "runtime/op.h"

/* ---- shared checks ---- */

static kiln_status check_counts(kiln_node *node, kiln_prepare_ctx *ctx, int32_t min_inputs,
                                int32_t max_inputs) {
  if (node->n_inputs < min_inputs || node->n_inputs > max_inputs || node->n_outputs != 1) {
    if (min_inputs == max_inputs)
      return kiln_prepare_fail(ctx, KILN_ERR_FORMAT,
                               "expects %d inputs and 1 output, has %d and %d", (int)min_inputs,
                               (int)node->n_inputs, (int)node->n_outputs);
    return kiln_prepare_fail(ctx, KILN_ERR_FORMAT,
                             "expects %d to %d inputs and 1 output, has %d and %d", (int)min_inputs,
                             (int)max_inputs, (int)node->n_inputs, (int)node->n_outputs);
  }
  for (int32_t i = 0; i < min_inputs; i++)
    if (!node->inputs[i])
      return kiln_prepare_fail(ctx, KILN_ERR_FORMAT, "input %d is missing", (int)i);
  return KILN_OK;
}

static bool same_quant(const kiln_rt_tensor *a, const kiln_rt_tensor *b) {
  const kiln_quant *x = a->quant, *y = b->quant;
  if (x->count != y->count) return false;
  if (x->count > 1 && x->axis != y->axis) return false;
  for (int32_t i = 0; i < x->count; i++)
    if (x->scale[i] != y->scale[i] || x->zero_point[i] != y->zero_point[i]) return false;
  return true;
}

/* Output has the input's dtype and quantization (ops that move bytes). */
static kiln_status check_same_type(kiln_prepare_ctx *ctx, const kiln_rt_tensor *in,
                                   const kiln_rt_tensor *out) {
  if (out->dtype != in->dtype)
    return kiln_prepare_fail(ctx, KILN_ERR_FORMAT, "output '%s' is %s but input '%s' is %s",
                             out->name, kiln_dtype_name(out->dtype), in->name,
                             kiln_dtype_name(in->dtype));
  if (!same_quant(in, out))
    return kiln_prepare_fail(ctx, KILN_ERR_UNSUPPORTED,
                             "output '%s' must have the quantization of input '%s'", out->name,
                             in->name);
  return KILN_OK;
}

static bool is_type(kiln_dtype t, const kiln_dtype *list, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (list[i] == t) return true;
  return false;
}

static kiln_status check_dtype(kiln_prepare_ctx *ctx, const kiln_rt_tensor *t,
                               const kiln_dtype *list, size_t n) {
  if (is_type(t->dtype, list, n)) return KILN_OK;
  return kiln_prepare_fail(ctx, KILN_ERR_UNSUPPORTED, "tensor '%s' has unsupported type %s",
                           t->name, kiln_dtype_name(t->dtype));
}

static kiln_status check_const(kiln_prepare_ctx *ctx, const kiln_rt_tensor *t, const char *what) {
  if (t->is_const && t->data) return KILN_OK;
  return kiln_prepare_fail(ctx, KILN_ERR_UNSUPPORTED,
                           "%s tensor '%s' is not constant; kiln needs it constant", what, t->name);
}

/* A quantized tensor's single scale/zero point; 0 zero point when none. */
static int32_t zero_point_of(const kiln_rt_tensor *t) {
  return t->quant->count ? t->quant->zero_point[0] : 0;
}

/* ---- CONCATENATION ---- */

/* The threaded copy: task t copies the output bytes [bound(t), bound(t + 1))
 * of the outer blocks of block_bytes each. */
typedef struct concat_fast {
  int32_t n_tasks;
  int64_t block_bytes;
} concat_fast;

typedef struct concat_op {
  int32_t n;
  int64_t outer;
  int64_t *chunk;           /* bytes, or elements when rescaling uint8 */
  kiln_u8_rescale *rescale; /* uint8 with quantization, else NULL */
  int32_t out_zp;
  const concat_fast *fast; /* threaded copy, or NULL */
} concat_op;

/* Outputs of at least this many bytes are copied by several threads. */
#define CONCAT_THREADED_BYTES (256 * 1024)

static const kiln_dtype concat_types[] = {KILN_F32,  KILN_F16, KILN_I32, KILN_I64,
                                          KILN_BOOL, KILN_I16, KILN_I8,  KILN_U8};

/* TFLite's quantization rules: int8 inputs share the output's scale and zero
 * point; int16 zero points are 0; uint8 inputs may differ and are rescaled. */
static kiln_status concat_check_quant(kiln_node *node, kiln_prepare_ctx *ctx, bool *rescale) {
  const kiln_rt_tensor *out = node->outputs[0];
  *rescale = false;
  for (int32_t i = 0; i < node->n_inputs; i++) {
    const kiln_rt_tensor *t = node->inputs[i];
    if (t->dtype == KILN_F32 || t->dtype == KILN_F16 || t->dtype == KILN_BOOL) continue;
    if (t->quant->count > 1 || out->quant->count > 1)
      return kiln_prepare_fail(ctx, KILN_ERR_UNSUPPORTED,
                               "per-axis quantized concatenation is not supported");
    if ((t->quant->count == 0) != (out->quant->count == 0))
      return kiln_prepare_fail(ctx, KILN_ERR_FORMAT,
                               "input '%s' and output '%s' disagree on being quantized", t->name,
                               out->name);
    if (t->quant->count == 0) continue;
    if (t->dtype == KILN_U8) {
      *rescale = true;
    } else if (t->dtype == KILN_I16) {
      if (t->quant->zero_point[0] != 0 || out->quant->zero_point[0] != 0)
        return kiln_prepare_fail(ctx, KILN_ERR_UNSUPPORTED, "int16 zero points must be 0");
    } else if (!same_quant(t, out)) {
      return kiln_prepare_fail(ctx, KILN_ERR_UNSUPPORTED,
                               "input '%s' (scale %g, zero point %d) must have the output's "
                               "quantization (scale %g, zero point %d) for %s",
                               t->name, (double)t->quant->scale[0], (int)t->quant->zero_point[0],
                               (double)out->quant->scale[0], (int)out->quant->zero_point[0],
                               kiln_dtype_name(t->dtype));
    }
  }
  return KILN_OK;
}

static kiln_status prepare_concat(kiln_node *node, kiln_prepare_ctx *ctx) {
  if (node->n_inputs < 1 || node->n_outputs != 1)
    return kiln_prepare_fail(ctx, KILN_ERR_FORMAT, "expects at least 1 input and 1 output");
  for (int32_t i = 0; i < node->n_inputs; i++)
    if (!node->inputs[i])
      return kiln_prepare_fail(ctx, KILN_ERR_FORMAT, "input %d is missing", (int)i);
  const kiln_rt_tensor *t0 = node->inputs[0];
  kiln_rt_tensor *out = node->outputs[0];
  const kiln_op_options *o = &node->op->options;
  kiln_status s = check_dtype(ctx, t0, concat_types, sizeof concat_types / sizeof *concat_types);
  if (s != KILN_OK) return s;
  if (o->activation != KILN_ACT_NONE)
    return kiln_prepare_fail(ctx, KILN_ERR_UNSUPPORTED,
                             "fused activation %d is not supported (TFLite requires NONE)",
                             (int)o->activation);
  if (t0->rank < 1)
    return kiln_prepare_fail(ctx, KILN_ERR_UNSUPPORTED, "scalar inputs are not supported");
  const int32_t axis = o->axis < 0 ? o->axis + t0->rank : o->axis;
  if (axis < 0 || axis >= t0->rank)
    return kiln_prepare_fail(ctx, KILN_ERR_FORMAT, "axis %d is out of range for rank %d",
                             (int)o->axis, (int)t0->rank);
  int32_t shape[KILN_MAX_RANK];
  memcpy(shape, t0->shape, sizeof shape);
  int64_t axis_sum = 0;
  for (int32_t i = 0; i < node->n_inputs; i++) {
    const kiln_rt_tensor *t = node->inputs[i];
    if (t->dtype != t0->dtype || t->rank != t0->rank)
      return kiln_prepare_fail(ctx, KILN_ERR_FORMAT,
                               "input %d '%s' (%s, rank %d) differs from input 0 (%s, rank %d)",
                               (int)i, t->name, kiln_dtype_name(t->dtype), (int)t->rank,
                               kiln_dtype_name(t0->dtype), (int)t0->rank);
    for (int32_t d = 0; d < t0->rank; d++)
      if (d != axis && t->shape[d] != t0->shape[d])
        return kiln_prepare_fail(ctx, KILN_ERR_FORMAT,
                                 "input %d '%s' has size %d in dimension %d, input 0 has %d",
                                 (int)i, t->name, (int)t->shape[d], (int)d, (int)t0->shape[d]);
    axis_sum += t->shape[axis];
  }
  if (axis_sum > INT32_MAX)
    return kiln_prepare_fail(ctx, KILN_ERR_LIMIT, "concatenated dimension is too large");
  shape[axis] = (int32_t)axis_sum;
  if (out->dtype != t0->dtype)
    return kiln_prepare_fail(ctx, KILN_ERR_FORMAT, "output '%s' is %s but inputs are %s", out->name,
                             kiln_dtype_name(out->dtype), kiln_dtype_name(t0->dtype));
  bool rescale;
  if ((s = concat_check_quant(node, ctx, &rescale)) != KILN_OK) return s;
  if ((s = kiln_prepare_set_output_shape(ctx, out, t0->rank, shape)) != KILN_OK) return s;

  concat_op *op = kiln_prepare_alloc(ctx, sizeof *op);
  if (!op) return kiln_prepare_nomem(ctx);
  op->n = node->n_inputs;
  op->chunk = kiln_prepare_alloc(ctx, (size_t)op->n * sizeof *op->chunk);
  if (!op->chunk) return kiln_prepare_nomem(ctx);
  op->outer = 1;
  for (int32_t d = 0; d < axis; d++) op->outer *= shape[d];
  int64_t inner = 1;
  for (int32_t d = axis + 1; d < t0->rank; d++) inner *= shape[d];
  const int64_t elem = rescale ? 1 : (int64_t)kiln_dtype_size(t0->dtype);
  for (int32_t i = 0; i < op->n; i++) op->chunk[i] = node->inputs[i]->shape[axis] * inner * elem;
  if (rescale) {
    op->rescale = kiln_prepare_alloc(ctx, (size_t)op->n * sizeof *op->rescale);
    if (!op->rescale) return kiln_prepare_nomem(ctx);
    op->out_zp = out->quant->zero_point[0];
    for (int32_t i = 0; i < op->n; i++) {
      const kiln_quant *q = node->inputs[i]->quant;
      op->rescale[i] =
          kiln_u8_rescale_make(q->scale[0], q->zero_point[0], out->quant->scale[0], op->out_zp);
    }
  }
  node->scratch_bytes = (size_t)op->n * sizeof(void *);
  int64_t block_bytes = 0;
  for (int32_t i = 0; i < op->n; i++) block_bytes += op->chunk[i];
  const int32_t threads = kiln_prepare_threads(ctx);
  if (!rescale && !kiln_prepare_force_ref(ctx) && threads > 1 &&
      block_bytes * op->outer >= CONCAT_THREADED_BYTES) {
    concat_fast *f = kiln_prepare_alloc(ctx, sizeof *f);
    if (!f) return kiln_prepare_nomem(ctx);
    f->n_tasks = 2 * threads;
    f->block_bytes = block_bytes;
    op->fast = f;
  }
  node->params = op;
  return KILN_OK;
}

typedef struct concat_job {
  const concat_op *op;
  const void *const *inputs;
  uint8_t *out;
} concat_job;

static int64_t concat_bound(const concat_op *op, int32_t t) {
  const int64_t total = op->fast->block_bytes * op->outer;
  if (t >= op->fast->n_tasks) return total;
  const int64_t b = (total * t / op->fast->n_tasks + 63) / 64 * 64;
  return b < total ? b : total;
}

/* Copies the task's output bytes chunk by chunk, as the reference does. */
static void concat_task(void *arg, int32_t task, int32_t thread) {
  (void)thread;
  const concat_job *j = arg;
  const concat_op *op = j->op;
  const int64_t p1 = concat_bound(op, task + 1);
  int64_t p = concat_bound(op, task);
  if (p >= p1) return;
  int64_t k = p / op->fast->block_bytes, within = p % op->fast->block_bytes;
  int32_t i = 0;
  while (within >= op->chunk[i]) within -= op->chunk[i++];
  while (p < p1) {
    const int64_t n = op->chunk[i] - within < p1 - p ? op->chunk[i] - within : p1 - p;
    memcpy(j->out + p, (const uint8_t *)j->inputs[i] + k * op->chunk[i] + within, (size_t)n);
    p += n;
    within = 0;
    if (++i == op->n) {
      i = 0;
      k++;
    }
  }
}

static void eval_concat(const kiln_node *node, const kiln_eval_ctx *ctx) {
  const concat_op *op = node->params;
  const void **ptrs = ctx->scratch;
  for (int32_t i = 0; i < op->n; i++) ptrs[i] = node->inputs[i]->data;
  if (op->fast) {
    concat_job job = {op, ptrs, node->outputs[0]->data};
    kiln_threadpool_run(ctx->pool, concat_task, &job, op->fast->n_tasks);
  } else if (op->rescale)
    kiln_u8_concat_ref(op->n, (const uint8_t *const *)ptrs, op->chunk, op->outer, op->rescale,
                       op->out_zp, node->outputs[0]->data);
  else
    kiln_concat_ref(op->n, ptrs, op->chunk, op->outer, node->outputs[0]->data);
}

/* ---- RESHAPE, SQUEEZE ---- */

/* TFLite ResizeOutput: one -1 is inferred from the input's element count,
 * treating zero-sized dimensions as TFLite does. */
static kiln_status reshape_infer(kiln_prepare_ctx *ctx, const kiln_rt_tensor *in, int32_t rank,
                                 int32_t *shape) {
  int64_t in_n = 1, in_nonzero = 1;
  for (int32_t d = 0; d < in->rank; d++) {
    /* A zero dimension lets the others grow past the reader's element bound
     * (2^40); refuse before the product of the non-zero ones overflows. */
    if (in->shape[d] != 0 && in_nonzero > ((int64_t)1 << 40) / in->shape[d])
      return kiln_prepare_fail(ctx, KILN_ERR_LIMIT, "input '%s' has over 2^40 elements in its non-zero dimensions",
                               in->name);
    in_n *= in->shape[d];
    if (in->shape[d] != 0) in_nonzero *= in->shape[d];
  }
  int64_t out_n = 1, out_nonzero = 1;
  int32_t stretch = -1;
  for (int32_t d = 0; d < rank; d++) {
    if (shape[d] == -1) {
      if (stretch >= 0)
        return kiln_prepare_fail(ctx, KILN_ERR_FORMAT, "new shape has more than one -1");
      stretch = d;
      continue;
    }
    if (shape[d] < 0)
      return kiln_prepare_fail(ctx, KILN_ERR_FORMAT, "new shape has dimension %d = %d", (int)d,
                               (int)shape[d]);
    /* as the reader bounds declared shapes (2^40 elements), so a hostile
     * new shape cannot overflow the products */
    if (shape[d] != 0 && out_nonzero > (INT64_C(1) << 40) / shape[d])
      return kiln_prepare_fail(ctx, KILN_ERR_FORMAT, "new shape has too many elements");
    if (shape[d] != 0) out_nonzero *= shape[d];
    out_n *= shape[d];
  }
  if (stretch >= 0) {
    const int64_t v = (in_n == 0 && out_n != 0) ? 0 : in_nonzero / out_nonzero;
    if (v > INT32_MAX)
      return kiln_prepare_fail(ctx, KILN_ERR_LIMIT, "inferred dimension is too large");
    shape[stretch] = (int32_t)v;
    out_n *= v;
  }
  if (out_n != in_n)
    return kiln_prepare_fail(ctx, KILN_ERR_FORMAT,
                             "new shape has %lld elements, input '%s' has %lld", (long long)out_n,
                             in->name, (long long)in_n);
  return KILN_OK;
}

static kiln_status prepare_reshape(kiln_node *node, kiln_prepare_ctx *ctx) {
  kiln_status s = check_counts(node, ctx, 1, 2);
  if (s != KILN_OK) return s;
  const kiln_rt_tensor *in = node->inputs[0];
  kiln_rt_tensor *out = node->outputs[0];
  if ((s = check_same_type(ctx, in, out)) != KILN_OK) return s;
  const kiln_rt_tensor *st = node->n_inputs == 2 ? node->inputs[1] : NULL;
  int32_t shape[KILN_MAX_RANK];
  int32_t rank;
  if (st && st->rank == 1 && st->dtype == KILN_I32) {
    /* TFLite prefers an int32 vector shape input over the options. */
    if ((s = check_const(ctx, st, "shape")) != KILN_OK) return s;
    if (st->shape[0] > KILN_MAX_RANK)
      return kiln_prepare_fail(ctx, KILN_ERR_UNSUPPORTED, "new shape has rank %d (kiln: <= %d)",
                               (int)st->shape[0], KILN_MAX_RANK);
    rank = st->shape[0];
    memcpy(shape, st->data, (size_t)rank * sizeof *shape);
  } else {
    const kiln_op_options *o = &node->op->options;
    rank = o->new_shape_count > 0 ? o->new_shape_count : 0;
    if (rank > KILN_MAX_RANK)
      return kiln_prepare_fail(ctx, KILN_ERR_UNSUPPORTED, "new shape has rank %d (kiln: <= %d)",
                               (int)rank, KILN_MAX_RANK);
    memcpy(shape, o->new_shape, (size_t)rank * sizeof *shape);
    if (rank == 1 && shape[0] == 0) rank = 0; /* legacy TFLite spelling of a scalar */
  }
  if ((s = reshape_infer(ctx, in, rank, shape)) != KILN_OK) return s;
  return kiln_prepare_set_output_shape(ctx, out, rank, shape);
}

static kiln_status prepare_squeeze(kiln_node *node, kiln_prepare_ctx *ctx) {
  kiln_status s = check_counts(node, ctx, 1, 1);
  if (s != KILN_OK) return s;
  const kiln_rt_tensor *in = node->inputs[0];
  kiln_rt_tensor *out = node->outputs[0];
  if ((s = check_same_type(ctx, in, out)) != KILN_OK) return s;
  const kiln_op_options *o = &node->op->options;
  bool squeeze[KILN_MAX_RANK] = {false};
  if (o->squeeze_dims_count <= 0) {
    for (int32_t d = 0; d < in->rank; d++) squeeze[d] = in->shape[d] == 1;
  } else {
    for (int32_t i = 0; i < o->squeeze_dims_count && i < KILN_MAX_RANK; i++) {
      const int32_t d = o->squeeze_dims[i] < 0 ? o->squeeze_dims[i] + in->rank : o->squeeze_dims[i];
      if (d < 0 || d >= in->rank || in->shape[d] != 1)
        return kiln_prepare_fail(ctx, KILN_ERR_FORMAT,
                                 "cannot squeeze dimension %d of input '%s' (rank %d)",
                                 (int)o->squeeze_dims[i], in->name, (int)in->rank);
      squeeze[d] = true;
    }
  }
  int32_t shape[KILN_MAX_RANK];
  int32_t rank = 0;
  for (int32_t d = 0; d < in->rank; d++)
    if (!squeeze[d]) shape[rank++] = in->shape[d];
  return kiln_prepare_set_output_shape(ctx, out, rank, shape);
}

static void eval_copy(const kiln_node *node, const kiln_eval_ctx *ctx) {
  (void)ctx;
  const kiln_rt_tensor *in = node->inputs[0];
  kiln_rt_tensor *out = node->outputs[0];
  if (out->data != in->data) memcpy(out->data, in->data, in->bytes);
}

/* ---- PAD, PADV2 ---- */

typedef struct pad_op {
  int32_t rank;
  int32_t in_shape[KILN_MAX_RANK], before[KILN_MAX_RANK], after[KILN_MAX_RANK];
  size_t elem;
  uint8_t value[8]; /* the pad value, unless taken from input 2 at eval */
  bool value_input; /* PADV2 with a non-constant value tensor */
} pad_op;

static const kiln_dtype pad_types[] = {KILN_F32,  KILN_F16, KILN_I32, KILN_I64,
                                       KILN_BOOL, KILN_I16, KILN_I8,  KILN_U8};

static kiln_status pad_read_paddings(kiln_prepare_ctx *ctx, const kiln_rt_tensor *p,
                                     const kiln_rt_tensor *in, pad_op *op) {
  kiln_status s = check_const(ctx, p, "paddings");
  if (s != KILN_OK) return s;
  if (p->dtype != KILN_I32 && p->dtype != KILN_I64)
    return kiln_prepare_fail(ctx, KILN_ERR_UNSUPPORTED,
                             "paddings '%s' are %s; expected int32/int64", p->name,
                             kiln_dtype_name(p->dtype));
  if (p->rank != 2 || p->shape[0] != in->rank || p->shape[1] != 2)
    return kiln_prepare_fail(ctx, KILN_ERR_FORMAT, "paddings '%s' must have shape [%d, 2]", p->name,
                             (int)in->rank);
  for (int32_t d = 0; d < in->rank; d++) {
    int64_t v[2];
    for (int k = 0; k < 2; k++)
      v[k] = p->dtype == KILN_I32 ? ((const int32_t *)p->data)[2 * d + k]
                                  : ((const int64_t *)p->data)[2 * d + k];
    if (v[0] < 0 || v[1] < 0 || v[0] > INT32_MAX || v[1] > INT32_MAX ||
        (int64_t)in->shape[d] + v[0] + v[1] > INT32_MAX)
      return kiln_prepare_fail(ctx, KILN_ERR_FORMAT,
                               "padding [%lld, %lld] of dimension %d is invalid", (long long)v[0],
                               (long long)v[1], (int)d);
    op->before[d] = (int32_t)v[0];
    op->after[d] = (int32_t)v[1];
  }
  return KILN_OK;
}

/* The pad value: PADV2's scalar input (same type; for quantized tensors the
 * output's scale and zero point), else 0 or the output's zero point. */
static kiln_status pad_value(kiln_node *node, kiln_prepare_ctx *ctx, pad_op *op) {
  const kiln_rt_tensor *out = node->outputs[0];
  const kiln_rt_tensor *cv = node->n_inputs >= 3 ? node->inputs[2] : NULL;
  memset(op->value, 0, sizeof op->value);
  if (cv) {
    if (cv->dtype != out->dtype || kiln_rt_elements(cv) != 1)
      return kiln_prepare_fail(ctx, KILN_ERR_FORMAT, "constant value '%s' must be one %s element",
                               cv->name, kiln_dtype_name(out->dtype));
    if (out->quant->count > 0 &&
        (out->dtype == KILN_U8 || out->dtype == KILN_I8 || out->dtype == KILN_I16)) {
      if (cv->quant->count != 1 || cv->quant->scale[0] != out->quant->scale[0] ||
          cv->quant->zero_point[0] != out->quant->zero_point[0])
        return kiln_prepare_fail(ctx, KILN_ERR_FORMAT,
                                 "constant value '%s' must have the output's quantization",
                                 cv->name);
    }
    if (cv->is_const && cv->data)
      memcpy(op->value, cv->data, op->elem);
    else
      op->value_input = true;
    return KILN_OK;
  }
  if (out->dtype == KILN_U8 ||
      ((out->dtype == KILN_I8 || out->dtype == KILN_I16) && out->quant->count > 0)) {
    const int32_t zp = zero_point_of(out);
    if (out->dtype == KILN_U8)
      op->value[0] = (uint8_t)zp;
    else if (out->dtype == KILN_I8)
      op->value[0] = (uint8_t)(int8_t)zp;
    else {
      const int16_t z16 = (int16_t)zp;
      memcpy(op->value, &z16, sizeof z16);
    }
  }
  return KILN_OK;
}

static kiln_status prepare_pad(kiln_node *node, kiln_prepare_ctx *ctx) {
  const int32_t min_inputs = node->op->code == KILN_OP_PADV2 ? 3 : 2;
  kiln_status s = check_counts(node, ctx, min_inputs, 3);
  if (s != KILN_OK) return s;
  const kiln_rt_tensor *in = node->inputs[0];
  kiln_rt_tensor *out = node->outputs[0];
  if ((s = check_dtype(ctx, in, pad_types, sizeof pad_types / sizeof *pad_types)) != KILN_OK)
    return s;
  if ((s = check_same_type(ctx, in, out)) != KILN_OK) return s;
  if (in->rank < 1)
    return kiln_prepare_fail(ctx, KILN_ERR_UNSUPPORTED, "padding a scalar is not supported");
  if (in->quant->count > 1)
    return kiln_prepare_fail(ctx, KILN_ERR_UNSUPPORTED, "per-axis quantized input '%s'", in->name);
  pad_op *op = kiln_prepare_alloc(ctx, sizeof *op);
  if (!op) return kiln_prepare_nomem(ctx);
  op->rank = in->rank;
  op->elem = kiln_dtype_size(in->dtype);
  memcpy(op->in_shape, in->shape, sizeof op->in_shape);
  if ((s = pad_read_paddings(ctx, node->inputs[1], in, op)) != KILN_OK) return s;
  if ((s = pad_value(node, ctx, op)) != KILN_OK) return s;
  int32_t shape[KILN_MAX_RANK];
  for (int32_t d = 0; d < in->rank; d++) shape[d] = in->shape[d] + op->before[d] + op->after[d];
  if ((s = kiln_prepare_set_output_shape(ctx, out, in->rank, shape)) != KILN_OK) return s;
  node->params = op;
  return KILN_OK;
}

static void eval_pad(const kiln_node *node, const kiln_eval_ctx *ctx) {
  (void)ctx;
  const pad_op *op = node->params;
  const void *value = op->value_input ? node->inputs[2]->data : op->value;
  kiln_pad_ref(op->rank, op->in_shape, op->before, op->after, op->elem, node->inputs[0]->data,
               value, node->outputs[0]->data);
}

/* ---- RESIZE_BILINEAR, RESIZE_NEAREST_NEIGHBOR ---- */

/* The optimized bilinear resize: kernels, source coordinates, and chunks of
 * the N * out_h output rows. */
typedef struct resize_fast {
  const kiln_misc_kernels *k;
  kiln_resize_plan plan;
  int32_t n_tasks;
} resize_fast;

typedef struct resize_op {
  int32_t in_shape[4];
  int32_t out_h, out_w;
  bool align_corners, half_pixel_centers;
  const resize_fast *fast; /* bilinear float32 / int8; NULL: reference */
} resize_op;

/* Source coordinates for the fast bilinear kernels. */
static kiln_status resize_fast_prepare(kiln_prepare_ctx *ctx, const kiln_rt_tensor *in,
                                       resize_op *op) {
  const kiln_misc_kernels *k = kiln_misc_pick(kiln_prepare_isa(ctx));
  if (!k) return KILN_OK;
  resize_fast *f = kiln_prepare_alloc(ctx, sizeof *f);
  if (!f) return kiln_prepare_nomem(ctx);
  f->k = k;
  kiln_resize_plan *rp = &f->plan;
  rp->batch = in->shape[0];
  rp->in_h = in->shape[1];
  rp->in_w = in->shape[2];
  rp->channels = in->shape[3];
  rp->out_h = op->out_h;
  rp->out_w = op->out_w;
  const size_t nh = (size_t)op->out_h, nw = (size_t)op->out_w;
  int32_t *y = kiln_prepare_alloc(ctx, 3 * nh * sizeof *y);
  int32_t *x = kiln_prepare_alloc(ctx, 3 * nw * sizeof *x);
  if (!y || !x) return kiln_prepare_nomem(ctx);
  rp->y_lo = y;
  rp->y_hi = y + nh;
  rp->x_lo = x;
  rp->x_hi = x + nw;
  if (in->dtype == KILN_F32) {
    float *fy = kiln_prepare_alloc(ctx, nh * sizeof *fy);
    float *fx = kiln_prepare_alloc(ctx, nw * sizeof *fx);
    if (!fy || !fx) return kiln_prepare_nomem(ctx);
    kiln_resize_axis_f32(rp->in_h, op->out_h, op->align_corners, op->half_pixel_centers, y,
                         y + nh, fy);
    kiln_resize_axis_f32(rp->in_w, op->out_w, op->align_corners, op->half_pixel_centers, x,
                         x + nw, fx);
    rp->fy = fy;
    rp->fx = fx;
  } else {
    kiln_resize_axis_s8(rp->in_h, op->out_h, op->align_corners, op->half_pixel_centers, y, y + nh,
                        y + 2 * nh);
    kiln_resize_axis_s8(rp->in_w, op->out_w, op->align_corners, op->half_pixel_centers, x, x + nw,
                        x + 2 * nw);
    rp->qy = y + 2 * nh;
    rp->qx = x + 2 * nw;
  }
  const int32_t threads = kiln_prepare_threads(ctx);
  const int64_t rows = (int64_t)rp->batch * rp->out_h;
  f->n_tasks = threads <= 1 ? 1 : (int32_t)(rows < 4 * threads ? rows : 4 * threads);
  op->fast = f;
  return KILN_OK;
}

static kiln_status prepare_resize(kiln_node *node, kiln_prepare_ctx *ctx, bool bilinear) {
  kiln_status s = check_counts(node, ctx, 2, 2);
  if (s != KILN_OK) return s;
  const kiln_rt_tensor *in = node->inputs[0];
  const kiln_rt_tensor *size = node->inputs[1];
  kiln_rt_tensor *out = node->outputs[0];
  const kiln_op_options *o = &node->op->options;
  static const kiln_dtype bilinear_types[] = {KILN_F32, KILN_U8, KILN_I8};
  static const kiln_dtype nearest_types[] = {KILN_F32, KILN_U8, KILN_I8, KILN_I16};
  s = bilinear ? check_dtype(ctx, in, bilinear_types, 3) : check_dtype(ctx, in, nearest_types, 4);
  if (s != KILN_OK) return s;
  if ((s = check_same_type(ctx, in, out)) != KILN_OK) return s;
  if (in->rank != 4)
    return kiln_prepare_fail(ctx, KILN_ERR_FORMAT, "input '%s' has rank %d, expected 4 (NHWC)",
                             in->name, (int)in->rank);
  if (size->dtype != KILN_I32 || size->rank != 1 || size->shape[0] != 2)
    return kiln_prepare_fail(ctx, KILN_ERR_FORMAT, "size '%s' must be an int32 tensor of shape [2]",
                             size->name);
  if ((s = check_const(ctx, size, "size")) != KILN_OK) return s;
  if (bilinear && o->align_corners && o->half_pixel_centers)
    return kiln_prepare_fail(ctx, KILN_ERR_FORMAT,
                             "align_corners and half_pixel_centers cannot both be set");
  resize_op *op = kiln_prepare_alloc(ctx, sizeof *op);
  if (!op) return kiln_prepare_nomem(ctx);
  const int32_t *hw = size->data;
  op->out_h = hw[0];
  op->out_w = hw[1];
  op->align_corners = o->align_corners;
  op->half_pixel_centers = o->half_pixel_centers;
  memcpy(op->in_shape, in->shape, sizeof op->in_shape);
  if (op->out_h <= 0 || op->out_w <= 0 || in->shape[1] <= 0 || in->shape[2] <= 0)
    return kiln_prepare_fail(ctx, KILN_ERR_FORMAT, "cannot resize %dx%d to %dx%d",
                             (int)in->shape[1], (int)in->shape[2], (int)op->out_h, (int)op->out_w);
  if (bilinear && in->dtype == KILN_I8 &&
      (!kiln_resize_bilinear_fixed_in_bounds(in->shape[1], op->out_h, op->align_corners,
                                             op->half_pixel_centers) ||
       !kiln_resize_bilinear_fixed_in_bounds(in->shape[2], op->out_w, op->align_corners,
                                             op->half_pixel_centers)))
    return kiln_prepare_fail(ctx, KILN_ERR_UNSUPPORTED,
                             "int8 resize %dx%d -> %dx%d exceeds TFLite's fixed-point range",
                             (int)in->shape[1], (int)in->shape[2], (int)op->out_h, (int)op->out_w);
  const int32_t shape[4] = {in->shape[0], op->out_h, op->out_w, in->shape[3]};
  if ((s = kiln_prepare_set_output_shape(ctx, out, 4, shape)) != KILN_OK) return s;
  if (bilinear && (in->dtype == KILN_F32 || in->dtype == KILN_I8) &&
      (s = resize_fast_prepare(ctx, in, op)) != KILN_OK)
    return s;
  node->params = op;
  return KILN_OK;
}

static kiln_status prepare_resize_bilinear(kiln_node *node, kiln_prepare_ctx *ctx) {
  return prepare_resize(node, ctx, true);
}

static kiln_status prepare_resize_nearest(kiln_node *node, kiln_prepare_ctx *ctx) {
  return prepare_resize(node, ctx, false);
}

typedef struct resize_job {
  const resize_op *op;
  bool s8;
  const void *in;
  void *out;
} resize_job;

static void resize_task(void *arg, int32_t task, int32_t thread) {
  (void)thread;
  const resize_job *j = arg;
  const resize_fast *f = j->op->fast;
  const int64_t rows = (int64_t)f->plan.batch * f->plan.out_h;
  const int64_t r0 = rows * task / f->n_tasks, r1 = rows * (task + 1) / f->n_tasks;
  if (j->s8)
    f->k->s8_resize_bilinear(&f->plan, j->in, j->out, r0, r1);
  else
    f->k->f32_resize_bilinear(&f->plan, j->in, j->out, r0, r1);
}

static void eval_resize_bilinear(const kiln_node *node, const kiln_eval_ctx *ctx) {
  const resize_op *op = node->params;
  const void *in = node->inputs[0]->data;
  void *out = node->outputs[0]->data;
  if (op->fast) {
    resize_job job = {op, node->inputs[0]->dtype == KILN_I8, in, out};
    kiln_threadpool_run(ctx->pool, resize_task, &job, op->fast->n_tasks);
    return;
  }
  switch (node->inputs[0]->dtype) {
    case KILN_F32:
      kiln_f32_resize_bilinear_ref(op->in_shape, in, op->out_h, op->out_w, op->align_corners,
                                   op->half_pixel_centers, out);
      break;
    case KILN_U8:
      kiln_u8_resize_bilinear_ref(op->in_shape, in, op->out_h, op->out_w, op->align_corners,
                                  op->half_pixel_centers, out);
      break;
    default:
      kiln_s8_resize_bilinear_ref(op->in_shape, in, op->out_h, op->out_w, op->align_corners,
                                  op->half_pixel_centers, out);
      break;
  }
}

static void eval_resize_nearest(const kiln_node *node, const kiln_eval_ctx *ctx) {
  (void)ctx;
  const resize_op *op = node->params;
  kiln_resize_nearest_ref(op->in_shape, kiln_dtype_size(node->inputs[0]->dtype),
                          node->inputs[0]->data, op->out_h, op->out_w, op->align_corners,
                          op->half_pixel_centers, node->outputs[0]->data);
}

/* ---- QUANTIZE, DEQUANTIZE ---- */

typedef struct quant_op {
  int64_t n;
  /* per-axis layout [outer, axis_dim, inner]; axis_dim 0 for per tensor */
  int64_t outer, inner;
  int32_t axis_dim;
  const float *scale;
  const int32_t *zero_point;
  int32_t in_zp, out_zp;
  int32_t multiplier; /* requantization */
  int shift;
} quant_op;

/* Fills the per-axis layout of t's quantization into op (axis_dim 0 when
 * t is quantized per tensor). */
static kiln_status quant_layout(kiln_prepare_ctx *ctx, const kiln_rt_tensor *t, quant_op *op) {
  const kiln_quant *q = t->quant;
  op->scale = q->scale;
  op->zero_point = q->zero_point;
  op->axis_dim = 0;
  op->outer = op->inner = 1;
  if (q->count <= 1) return KILN_OK;
  if (q->axis < 0 || q->axis >= t->rank || t->shape[q->axis] != q->count)
    return kiln_prepare_fail(ctx, KILN_ERR_FORMAT,
                             "tensor '%s': %d scales do not match dimension %d", t->name,
                             (int)q->count, (int)q->axis);
  for (int32_t d = 0; d < q->axis; d++) op->outer *= t->shape[d];
  for (int32_t d = q->axis + 1; d < t->rank; d++) op->inner *= t->shape[d];
  op->axis_dim = q->count;
  return KILN_OK;
}

static kiln_status prepare_quantize(kiln_node *node, kiln_prepare_ctx *ctx) {
  kiln_status s = check_counts(node, ctx, 1, 1);
  if (s != KILN_OK) return s;
  const kiln_rt_tensor *in = node->inputs[0];
  kiln_rt_tensor *out = node->outputs[0];
  static const kiln_dtype in_types[] = {KILN_F32, KILN_I8, KILN_U8};
  static const kiln_dtype out_types[] = {KILN_I8, KILN_U8};
  if ((s = check_dtype(ctx, in, in_types, 3)) != KILN_OK) return s;
  if ((s = check_dtype(ctx, out, out_types, 2)) != KILN_OK) return s;
  if (out->quant->count < 1)
    return kiln_prepare_fail(ctx, KILN_ERR_FORMAT, "output '%s' has no quantization", out->name);
  quant_op *op = kiln_prepare_alloc(ctx, sizeof *op);
  if (!op) return kiln_prepare_nomem(ctx);
  op->n = kiln_rt_elements(in);
  if (in->dtype == KILN_F32) {
    if ((s = quant_layout(ctx, out, op)) != KILN_OK) return s;
  } else {
    if (in->quant->count != 1 || out->quant->count != 1)
      return kiln_prepare_fail(ctx, KILN_ERR_UNSUPPORTED,
                               "requantization needs per-tensor quantization on '%s' and '%s'",
                               in->name, out->name);
    op->in_zp = in->quant->zero_point[0];
    op->out_zp = out->quant->zero_point[0];
    kiln_quantize_multiplier((double)in->quant->scale[0] / (double)out->quant->scale[0],
                             &op->multiplier, &op->shift);
    /* A shift past 30 would move the value out of 32 bits (undefined in
     * TFLite too); no real model has such a scale ratio. */
    if (op->shift > 30)
      return kiln_prepare_fail(ctx, KILN_ERR_UNSUPPORTED,
                               "requantization scale %g / %g of '%s' is too large",
                               (double)in->quant->scale[0], (double)out->quant->scale[0], in->name);
  }
  node->params = op;
  return kiln_prepare_set_output_shape(ctx, out, in->rank, in->shape);
}

static void eval_quantize(const kiln_node *node, const kiln_eval_ctx *ctx) {
  (void)ctx;
  const quant_op *op = node->params;
  const void *in = node->inputs[0]->data;
  void *out = node->outputs[0]->data;
  const bool to_s8 = node->outputs[0]->dtype == KILN_I8;
  switch (node->inputs[0]->dtype) {
    case KILN_F32:
      if (op->axis_dim == 0 && to_s8)
        kiln_f32_quantize_s8_ref(op->n, in, op->scale[0], op->zero_point[0], out);
      else if (op->axis_dim == 0)
        kiln_f32_quantize_u8_ref(op->n, in, op->scale[0], op->zero_point[0], out);
      else if (to_s8)
        kiln_f32_quantize_s8_per_axis_ref(op->outer, op->axis_dim, op->inner, in, op->scale,
                                          op->zero_point, out);
      else
        kiln_f32_quantize_u8_per_axis_ref(op->outer, op->axis_dim, op->inner, in, op->scale,
                                          op->zero_point, out);
      break;
    case KILN_I8:
      if (to_s8)
        kiln_s8_requantize_s8_ref(op->n, in, op->in_zp, op->multiplier, op->shift, op->out_zp, out);
      else
        kiln_s8_requantize_u8_ref(op->n, in, op->in_zp, op->multiplier, op->shift, op->out_zp, out);
      break;
    default:
      if (to_s8)
        kiln_u8_requantize_s8_ref(op->n, in, op->in_zp, op->multiplier, op->shift, op->out_zp, out);
      else
        kiln_u8_requantize_u8_ref(op->n, in, op->in_zp, op->multiplier, op->shift, op->out_zp, out);
      break;
  }
}

static kiln_status prepare_dequantize(kiln_node *node, kiln_prepare_ctx *ctx) {
  kiln_status s = check_counts(node, ctx, 1, 1);
  if (s != KILN_OK) return s;
  const kiln_rt_tensor *in = node->inputs[0];
  kiln_rt_tensor *out = node->outputs[0];
  static const kiln_dtype in_types[] = {KILN_I8, KILN_U8, KILN_I16, KILN_F16};
  if ((s = check_dtype(ctx, in, in_types, 4)) != KILN_OK) return s;
  if (out->dtype != KILN_F32)
    return kiln_prepare_fail(ctx, KILN_ERR_FORMAT, "output '%s' is %s, expected float32", out->name,
                             kiln_dtype_name(out->dtype));
  quant_op *op = kiln_prepare_alloc(ctx, sizeof *op);
  if (!op) return kiln_prepare_nomem(ctx);
  op->n = kiln_rt_elements(in);
  if (in->dtype != KILN_F16) {
    if (in->quant->count < 1)
      return kiln_prepare_fail(ctx, KILN_ERR_FORMAT, "input '%s' has no quantization", in->name);
    if ((s = quant_layout(ctx, in, op)) != KILN_OK) return s;
    if (op->axis_dim > 0 && in->dtype == KILN_I16)
      return kiln_prepare_fail(ctx, KILN_ERR_UNSUPPORTED,
                               "per-axis int16 dequantization is not supported (nor in TFLite)");
  }
  node->params = op;
  return kiln_prepare_set_output_shape(ctx, out, in->rank, in->shape);
}

static void eval_dequantize(const kiln_node *node, const kiln_eval_ctx *ctx) {
  (void)ctx;
  const quant_op *op = node->params;
  const void *in = node->inputs[0]->data;
  float *out = node->outputs[0]->data;
  switch (node->inputs[0]->dtype) {
    case KILN_F16:
      kiln_f16_dequantize_ref(op->n, in, out);
      break;
    case KILN_I16:
      kiln_s16_dequantize_ref(op->n, in, op->scale[0], op->zero_point[0], out);
      break;
    case KILN_I8:
      if (op->axis_dim == 0)
        kiln_s8_dequantize_ref(op->n, in, op->scale[0], op->zero_point[0], out);
      else
        kiln_s8_dequantize_per_axis_ref(op->outer, op->axis_dim, op->inner, in, op->scale,
                                        op->zero_point, out);
      break;
    default:
      if (op->axis_dim == 0)
        kiln_u8_dequantize_ref(op->n, in, op->scale[0], op->zero_point[0], out);
      else
        kiln_u8_dequantize_per_axis_ref(op->outer, op->axis_dim, op->inner, in, op->scale,
                                        op->zero_point, out);
      break;
  }
}

const kiln_op_reg kiln_ops_shape[] = {
    {KILN_OP_CONCATENATION, NULL, {prepare_concat, eval_concat}},
    {KILN_OP_RESHAPE, NULL, {prepare_reshape, eval_copy}},
    {KILN_OP_SQUEEZE, NULL, {prepare_squeeze, eval_copy}},
    {KILN_OP_PAD, NULL, {prepare_pad, eval_pad}},
    {KILN_OP_PADV2, NULL, {prepare_pad, eval_pad}},
    {KILN_OP_RESIZE_BILINEAR, NULL, {prepare_resize_bilinear, eval_resize_bilinear}},
    {KILN_OP_RESIZE_NEAREST_NEIGHBOR, NULL, {prepare_resize_nearest, eval_resize_nearest}},
    {KILN_OP_QUANTIZE, NULL, {prepare_quantize, eval_quantize}},
    {KILN_OP_DEQUANTIZE, NULL, {prepare_dequantize, eval_dequantize}},
    {-1, NULL, {NULL, NULL}},
};
