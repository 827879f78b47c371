/*
 * Operator implementations: pool family (see runtime/op.h): AVERAGE_POOL_2D,
 * MAX_POOL_2D and MEAN, for float32, int8 and uint8.
 *
 * Prepare follows TFLite's pooling.cc and reduce.cc Prepare: output sizes
 * from the padding mode, quantized pooling only with matching input/output
 * quantization, MEAN axes from a constant int32 tensor, and the MEAN
 * requantization multiplier (with 1/count folded in) computed once.
 *
 * Float32 and int8 pooling, and MEAN over height and width of NHWC tensors,
 * take the vectorized kernels of kernels/misc_fast.h when the CPU has them,
 * split over threads by output rows (pooling) or images and channel blocks
 * (MEAN).
 */
#include <math.h>

#include "kernels/misc_fast.h"
#include "kernels/quant_math.h"
#include "kernels/ref/pool_ref.h"
#include "runtime/op.h"

static kiln_status check_arity(kiln_node *node, kiln_prepare_ctx *ctx, int32_t n_inputs) {
  if (node->n_inputs != n_inputs || node->n_outputs != 1)
    return kiln_prepare_fail(ctx, KILN_ERR_FORMAT, "expects %d inputs and 1 output, has %d and %d",
                             (int)n_inputs, (int)node->n_inputs, (int)node->n_outputs);
  for (int32_t i = 0; i < n_inputs; i++)
    if (!node->inputs[i])
      return kiln_prepare_fail(ctx, KILN_ERR_FORMAT, "input %d is missing", (int)i);
  return KILN_OK;
}

/* float32, int8 or uint8, the same for input and output; quantized tensors
 * must carry per-tensor quantization. */
static kiln_status check_types(kiln_prepare_ctx *ctx, const kiln_rt_tensor *in,
                               const kiln_rt_tensor *out) {
  if (in->dtype != KILN_F32 && in->dtype != KILN_I8 && in->dtype != KILN_U8)
    return kiln_prepare_fail(ctx, KILN_ERR_UNSUPPORTED,
                             "input '%s' is %s; supported: float32, int8, uint8", in->name,
                             kiln_dtype_name(in->dtype));
  if (out->dtype != in->dtype)
    return kiln_prepare_fail(ctx, KILN_ERR_FORMAT, "output '%s' is %s but input '%s' is %s",
                             out->name, kiln_dtype_name(out->dtype), in->name,
                             kiln_dtype_name(in->dtype));
  if (in->dtype != KILN_F32) {
    if (in->quant->count != 1 || out->quant->count != 1)
      return kiln_prepare_fail(ctx, KILN_ERR_UNSUPPORTED,
                               "quantized input '%s' and output '%s' need per-tensor quantization",
                               in->name, out->name);
  }
  return KILN_OK;
}

static kiln_status check_activation(kiln_prepare_ctx *ctx, kiln_activation act) {
  if (act == KILN_ACT_NONE || act == KILN_ACT_RELU || act == KILN_ACT_RELU6 ||
      act == KILN_ACT_RELU_N1_TO_1)
    return KILN_OK;
  return kiln_prepare_fail(ctx, KILN_ERR_UNSUPPORTED, "fused activation %d is not supported",
                           (int)act);
}

/* ---- AVERAGE_POOL_2D, MAX_POOL_2D ---- */

/* The optimized path: kernels and chunks of the N * OH output rows. */
typedef struct pool_fast {
  const kiln_misc_kernels *k;
  int32_t n_tasks;
} pool_fast;

typedef struct pool_op {
  kiln_pool_params p;
  int32_t in_shape[4], out_shape[4];
  const pool_fast *fast; /* NULL: reference kernels */
} pool_op;

/* Tasks for `items` independent pieces of work: about four per thread. */
static int32_t task_count(const kiln_prepare_ctx *ctx, int64_t items) {
  const int32_t threads = kiln_prepare_threads(ctx);
  if (threads <= 1 || items <= 1) return 1;
  return items < 4 * threads ? (int32_t)items : 4 * threads;
}

static kiln_status prepare_pool(kiln_node *node, kiln_prepare_ctx *ctx) {
  kiln_status s = check_arity(node, ctx, 1);
  if (s != KILN_OK) return s;
  const kiln_rt_tensor *in = node->inputs[0];
  kiln_rt_tensor *out = node->outputs[0];
  const kiln_op_options *o = &node->op->options;
  if ((s = check_types(ctx, in, out)) != KILN_OK) return s;
  if ((s = check_activation(ctx, o->activation)) != KILN_OK) return s;
  if (in->rank != 4)
    return kiln_prepare_fail(ctx, KILN_ERR_FORMAT, "input '%s' has rank %d, expected 4 (NHWC)",
                             in->name, (int)in->rank);
  if (o->stride_h <= 0 || o->stride_w <= 0 || o->filter_h <= 0 || o->filter_w <= 0)
    return kiln_prepare_fail(ctx, KILN_ERR_FORMAT, "stride %dx%d and filter %dx%d must be positive",
                             (int)o->stride_h, (int)o->stride_w, (int)o->filter_h,
                             (int)o->filter_w);
  if (o->padding != KILN_PAD_SAME && o->padding != KILN_PAD_VALID)
    return kiln_prepare_fail(ctx, KILN_ERR_FORMAT, "unknown padding %d", (int)o->padding);
  for (int32_t d = 0; d < 4; d++)
    if (in->shape[d] <= 0)
      return kiln_prepare_fail(ctx, KILN_ERR_UNSUPPORTED, "input '%s' has an empty dimension %d",
                               in->name, (int)d);
  if (in->dtype != KILN_F32) {
    /* TFLite's contract for quantized pooling (pooling.cc Prepare). */
    const float ds = in->quant->scale[0] - out->quant->scale[0];
    if (fabsf(ds) > 1e-6f || in->quant->zero_point[0] != out->quant->zero_point[0])
      return kiln_prepare_fail(ctx, KILN_ERR_UNSUPPORTED,
                               "input '%s' (scale %g, zero point %d) and output '%s' (scale %g, "
                               "zero point %d) must share quantization",
                               in->name, (double)in->quant->scale[0], (int)in->quant->zero_point[0],
                               out->name, (double)out->quant->scale[0],
                               (int)out->quant->zero_point[0]);
  }

  pool_op *op = kiln_prepare_alloc(ctx, sizeof *op);
  if (!op) return kiln_prepare_nomem(ctx);
  const bool same = o->padding == KILN_PAD_SAME;
  const int32_t oh = kiln_pool_out_size(same, in->shape[1], o->filter_h, o->stride_h);
  const int32_t ow = kiln_pool_out_size(same, in->shape[2], o->filter_w, o->stride_w);
  if (oh <= 0 || ow <= 0)
    return kiln_prepare_fail(
        ctx, KILN_ERR_FORMAT, "filter %dx%d with VALID padding does not fit input %dx%d",
        (int)o->filter_h, (int)o->filter_w, (int)in->shape[1], (int)in->shape[2]);
  op->p.stride_h = o->stride_h;
  op->p.stride_w = o->stride_w;
  op->p.filter_h = o->filter_h;
  op->p.filter_w = o->filter_w;
  op->p.pad_h = kiln_pool_padding(in->shape[1], o->filter_h, o->stride_h, oh);
  op->p.pad_w = kiln_pool_padding(in->shape[2], o->filter_w, o->stride_w, ow);
  for (int32_t d = 0; d < 4; d++) op->in_shape[d] = in->shape[d];
  op->out_shape[0] = in->shape[0];
  op->out_shape[1] = oh;
  op->out_shape[2] = ow;
  op->out_shape[3] = in->shape[3];
  if ((s = kiln_prepare_set_output_shape(ctx, out, 4, op->out_shape)) != KILN_OK) return s;
  if (in->dtype == KILN_F32)
    kiln_activation_range_f(o->activation, &op->p.act_min_f, &op->p.act_max_f);
  else
    kiln_activation_range_q(o->activation, out, &op->p.act_min, &op->p.act_max);
  const kiln_misc_kernels *k = kiln_misc_pick(kiln_prepare_isa(ctx));
  const bool s8_ok = (int64_t)o->filter_h * o->filter_w <= KILN_POOL_S8_MAX_WINDOW;
  if (k && (in->dtype == KILN_F32 || (in->dtype == KILN_I8 && s8_ok))) {
    pool_fast *f = kiln_prepare_alloc(ctx, sizeof *f);
    if (!f) return kiln_prepare_nomem(ctx);
    f->k = k;
    f->n_tasks = task_count(ctx, (int64_t)op->out_shape[0] * oh);
    op->fast = f;
  }
  node->params = op;
  return KILN_OK;
}

typedef struct pool_job {
  const pool_op *op;
  bool is_max;
  kiln_dtype dtype;
  const void *in;
  void *out;
} pool_job;

static void pool_task(void *arg, int32_t task, int32_t thread) {
  (void)thread;
  const pool_job *j = arg;
  const pool_op *op = j->op;
  const int64_t rows = (int64_t)op->out_shape[0] * op->out_shape[1];
  const int64_t r0 = rows * task / op->fast->n_tasks, r1 = rows * (task + 1) / op->fast->n_tasks;
  const kiln_misc_kernels *k = op->fast->k;
  if (j->dtype == KILN_F32)
    (j->is_max ? k->f32_max_pool : k->f32_avg_pool)(&op->p, op->in_shape, j->in, op->out_shape,
                                                    j->out, r0, r1);
  else
    (j->is_max ? k->s8_max_pool : k->s8_avg_pool)(&op->p, op->in_shape, j->in, op->out_shape,
                                                  j->out, r0, r1);
}

/* Runs the fast kernels if prepare chose them; false otherwise. */
static bool pool_run_fast(const kiln_node *node, const kiln_eval_ctx *ctx, bool is_max) {
  const pool_op *op = node->params;
  if (!op->fast) return false;
  pool_job job = {op, is_max, node->inputs[0]->dtype, node->inputs[0]->data,
                  node->outputs[0]->data};
  kiln_threadpool_run(ctx->pool, pool_task, &job, op->fast->n_tasks);
  return true;
}

static void eval_avg_pool(const kiln_node *node, const kiln_eval_ctx *ctx) {
  if (pool_run_fast(node, ctx, false)) return;
  const pool_op *op = node->params;
  const void *in = node->inputs[0]->data;
  void *out = node->outputs[0]->data;
  switch (node->inputs[0]->dtype) {
    case KILN_F32:
      kiln_f32_avg_pool_ref(&op->p, op->in_shape, in, op->out_shape, out);
      break;
    case KILN_I8:
      kiln_s8_avg_pool_ref(&op->p, op->in_shape, in, op->out_shape, out);
      break;
    default:
      kiln_u8_avg_pool_ref(&op->p, op->in_shape, in, op->out_shape, out);
      break;
  }
}

static void eval_max_pool(const kiln_node *node, const kiln_eval_ctx *ctx) {
  if (pool_run_fast(node, ctx, true)) return;
  const pool_op *op = node->params;
  const void *in = node->inputs[0]->data;
  void *out = node->outputs[0]->data;
  switch (node->inputs[0]->dtype) {
    case KILN_F32:
      kiln_f32_max_pool_ref(&op->p, op->in_shape, in, op->out_shape, out);
      break;
    case KILN_I8:
      kiln_s8_max_pool_ref(&op->p, op->in_shape, in, op->out_shape, out);
      break;
    default:
      kiln_u8_max_pool_ref(&op->p, op->in_shape, in, op->out_shape, out);
      break;
  }
}

/* ---- MEAN ---- */

/* The optimized MEAN over H and W of [N, H, W, C]: tasks are images times
 * blocks of channels. */
typedef struct mean_fast {
  const kiln_misc_kernels *k;
  kiln_mean_q q;
  int32_t n_tasks, channel_blocks;
} mean_fast;

typedef struct mean_op {
  int32_t rank;
  int32_t shape[KILN_MAX_RANK];
  uint32_t axis_mask;
  int32_t in_zp, out_zp;
  int32_t multiplier;
  int shift;
  const mean_fast *fast; /* NULL: reference kernels */
} mean_op;

#define MEAN_BLOCK 64 /* channels per block when a MEAN is split */

/* Resolves the constant axis tensor into a bit mask (negative axes count
 * from the end, repeats are ignored), as TFLite's ResolveAxis. */
static kiln_status mean_axes(kiln_prepare_ctx *ctx, const kiln_rt_tensor *axis, int32_t rank,
                             uint32_t *mask) {
  if (axis->dtype != KILN_I32)
    return kiln_prepare_fail(ctx, KILN_ERR_FORMAT, "axis tensor '%s' is %s, expected int32",
                             axis->name, kiln_dtype_name(axis->dtype));
  if (!axis->is_const || !axis->data)
    return kiln_prepare_fail(ctx, KILN_ERR_UNSUPPORTED,
                             "axis tensor '%s' is not constant; kiln needs constant axes",
                             axis->name);
  if (axis->rank > 1)
    return kiln_prepare_fail(ctx, KILN_ERR_FORMAT, "axis tensor '%s' has rank %d, expected 0 or 1",
                             axis->name, (int)axis->rank);
  const int64_t n = kiln_rt_elements(axis);
  const int32_t *a = axis->data;
  *mask = 0;
  if (rank == 0) return KILN_OK; /* TFLite ignores the axes of a scalar */
  for (int64_t i = 0; i < n; i++) {
    const int32_t d = a[i] < 0 ? a[i] + rank : a[i];
    if (d < 0 || d >= rank)
      return kiln_prepare_fail(ctx, KILN_ERR_FORMAT, "axis %d is out of range for rank %d",
                               (int)a[i], (int)rank);
    *mask |= 1u << d;
  }
  return KILN_OK;
}

static kiln_status prepare_mean(kiln_node *node, kiln_prepare_ctx *ctx) {
  kiln_status s = check_arity(node, ctx, 2);
  if (s != KILN_OK) return s;
  const kiln_rt_tensor *in = node->inputs[0];
  kiln_rt_tensor *out = node->outputs[0];
  if ((s = check_types(ctx, in, out)) != KILN_OK) return s;
  mean_op *op = kiln_prepare_alloc(ctx, sizeof *op);
  if (!op) return kiln_prepare_nomem(ctx);
  if ((s = mean_axes(ctx, node->inputs[1], in->rank, &op->axis_mask)) != KILN_OK) return s;

  op->rank = in->rank;
  int32_t out_shape[KILN_MAX_RANK];
  int32_t out_rank = 0;
  int64_t count = 1;
  for (int32_t d = 0; d < in->rank; d++) {
    op->shape[d] = in->shape[d];
    const bool reduced = (op->axis_mask >> d) & 1u;
    if (reduced) count *= in->shape[d];
    if (!reduced)
      out_shape[out_rank++] = in->shape[d];
    else if (node->op->options.keep_dims)
      out_shape[out_rank++] = 1;
  }
  if ((s = kiln_prepare_set_output_shape(ctx, out, out_rank, out_shape)) != KILN_OK) return s;

  if (in->dtype != KILN_F32) {
    op->in_zp = in->quant->zero_point[0];
    op->out_zp = out->quant->zero_point[0];
    int32_t multiplier;
    int shift;
    kiln_quantize_multiplier((double)in->quant->scale[0] / (double)out->quant->scale[0],
                             &multiplier, &shift);
    if (count > 0) kiln_mean_q_multiplier(multiplier, shift, count, &op->multiplier, &op->shift);
  }
  const kiln_misc_kernels *k = kiln_misc_pick(kiln_prepare_isa(ctx));
  const bool hw = in->rank == 4 && op->axis_mask == 0x6u && count > 0;
  const bool shift_ok = op->shift >= -31 && op->shift <= 30;
  if (k && hw && (in->dtype == KILN_F32 || (in->dtype == KILN_I8 && shift_ok))) {
    mean_fast *f = kiln_prepare_alloc(ctx, sizeof *f);
    if (!f) return kiln_prepare_nomem(ctx);
    f->k = k;
    f->q.zp_times_count = (int32_t)(uint32_t)((uint64_t)(int64_t)op->in_zp * (uint64_t)count);
    f->q.multiplier = op->multiplier;
    f->q.shift = op->shift;
    f->q.out_zp = op->out_zp;
    f->channel_blocks = (in->shape[3] + MEAN_BLOCK - 1) / MEAN_BLOCK;
    f->n_tasks = task_count(ctx, (int64_t)in->shape[0] * f->channel_blocks);
    op->fast = f;
  }
  node->params = op;
  return KILN_OK;
}

typedef struct mean_job {
  const mean_op *op;
  kiln_dtype dtype;
  const void *in;
  void *out;
} mean_job;

static void mean_task(void *arg, int32_t task, int32_t thread) {
  (void)thread;
  const mean_job *j = arg;
  const mean_op *op = j->op;
  const mean_fast *f = op->fast;
  const int32_t C = op->shape[3], hw = op->shape[1] * op->shape[2];
  const int64_t items = (int64_t)op->shape[0] * f->channel_blocks;
  const int64_t i1 = items * (task + 1) / f->n_tasks;
  for (int64_t i = items * task / f->n_tasks; i < i1; i++) {
    const int64_t b = i / f->channel_blocks;
    const int32_t c0 = (int32_t)(i % f->channel_blocks) * MEAN_BLOCK;
    const int32_t c1 = c0 + MEAN_BLOCK < C ? c0 + MEAN_BLOCK : C;
    const size_t in_off = (size_t)b * (size_t)hw * (size_t)C, out_off = (size_t)b * (size_t)C;
    if (j->dtype == KILN_F32)
      f->k->f32_mean_hw(hw, C, (const float *)j->in + in_off, (float *)j->out + out_off, c0, c1);
    else
      f->k->s8_mean_hw(&f->q, hw, C, (const int8_t *)j->in + in_off, (int8_t *)j->out + out_off,
                       c0, c1);
  }
}

static void eval_mean(const kiln_node *node, const kiln_eval_ctx *ctx) {
  const mean_op *op = node->params;
  const void *in = node->inputs[0]->data;
  void *out = node->outputs[0]->data;
  if (op->fast) {
    mean_job job = {op, node->inputs[0]->dtype, in, out};
    kiln_threadpool_run(ctx->pool, mean_task, &job, op->fast->n_tasks);
    return;
  }
  switch (node->inputs[0]->dtype) {
    case KILN_F32:
      kiln_f32_mean_ref(op->rank, op->shape, op->axis_mask, in, out);
      break;
    case KILN_I8:
      kiln_s8_mean_ref(op->rank, op->shape, op->axis_mask, in, op->in_zp, op->multiplier, op->shift,
                       op->out_zp, out);
      break;
    default:
      kiln_u8_mean_ref(op->rank, op->shape, op->axis_mask, in, op->in_zp, op->multiplier, op->shift,
                       op->out_zp, out);
      break;
  }
}

const kiln_op_reg kiln_ops_pool[] = {
    {KILN_OP_AVERAGE_POOL_2D, NULL, {prepare_pool, eval_avg_pool}},
    {KILN_OP_MAX_POOL_2D, NULL, {prepare_pool, eval_max_pool}},
    {KILN_OP_MEAN, NULL, {prepare_mean, eval_mean}},
    {-1, NULL, {NULL, NULL}},
};
