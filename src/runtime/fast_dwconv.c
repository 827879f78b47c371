/*
 * Optimized DEPTHWISE_CONV_2D (see runtime/fast_conv.h): depth multiplier 1,
 * square 3x3 or 5x5 filters, dilation 1, any stride and padding, constant
 * filter and bias. Prepare packs the weights for the best kernel table of
 * kernels/dwconv.h the CPU offers (for int8 3x3 first a dot4 kernel) and
 * splits the output into tasks: chunks of output rows (over all images)
 * times chunks of channel tiles. Each output element is computed the same
 * way whichever task holds it, so the result does not depend on the thread
 * count.
 */
#include <string.h>

#include "kernels/dwconv.h"
#include "runtime/fast_conv.h"

/* One of f32_fn / s8_fn is set, with its parameters. */
typedef struct dw_plan {
  kiln_dw_f32_params f32;
  kiln_dw_s8_params s8;
  kiln_dw_f32_fn f32_fn;
  kiln_dw_s8_fn s8_fn;
  int32_t batch;
  int32_t row_unit;                /* rows are split in multiples of this */
  int32_t row_chunks, tile_chunks; /* tasks = row_chunks * tile_chunks */
  int32_t tile, n_tiles;
} dw_plan;

typedef struct dw_job {
  const dw_plan *plan;
  const void *in;
  void *out;
} dw_job;

/* The kernel table to use, or NULL when this node has no fast path. */
static const kiln_dw_kernels *choose(kiln_prepare_ctx *ctx, const kiln_node *node,
                                     const kiln_conv_params *p) {
  if (p->depth_multiplier != 1 || p->dilation_h != 1 || p->dilation_w != 1) return NULL;
  if (p->filter_h != p->filter_w || (p->filter_h != 3 && p->filter_h != 5)) return NULL;
  if (!node->inputs[1]->is_const || !node->inputs[1]->data) return NULL;
  const kiln_rt_tensor *bias = node->n_inputs > 2 ? node->inputs[2] : NULL;
  if (bias && (!bias->is_const || !bias->data)) return NULL;
  const uint32_t isa = kiln_prepare_isa(ctx);
  for (const kiln_dw_kernels *const *t = kiln_dw_tables; *t; t++)
    if (((*t)->isa & isa) == (*t)->isa) return *t;
  return NULL;
}

/* row_unit: the rows the kernel computes together (dot4: pairs at stride
 * 1), so that tasks keep them together. */
static void fill_common(kiln_prepare_ctx *ctx, const kiln_conv_params *p, int32_t tile,
                        int32_t row_unit, kiln_dw_shape *s, dw_plan *plan) {
  s->in_h = p->in_h;
  s->in_w = p->in_w;
  s->channels = p->in_c;
  s->out_h = p->out_h;
  s->out_w = p->out_w;
  s->stride_h = p->stride_h;
  s->stride_w = p->stride_w;
  s->pad_h = p->pad_h;
  s->pad_w = p->pad_w;
  s->k = p->filter_h;
  plan->batch = p->batch;
  plan->row_unit = row_unit;
  plan->tile = tile;
  plan->n_tiles = (p->in_c + tile - 1) / tile;
  /* About four tasks per thread; channel tiles are split too when there are
   * few rows (late layers: 7x7 or 14x14 with hundreds of channels). */
  const int32_t threads = kiln_prepare_threads(ctx);
  const int64_t units = ((int64_t)p->batch * p->out_h + row_unit - 1) / row_unit;
  if (threads <= 1) {
    plan->row_chunks = plan->tile_chunks = 1;
    return;
  }
  const int32_t target = 4 * threads;
  plan->row_chunks = units < target ? (int32_t)units : target;
  int32_t tc = (target + plan->row_chunks - 1) / plan->row_chunks;
  plan->tile_chunks = tc < plan->n_tiles ? tc : plan->n_tiles;
}

/* The task's rows [*r0, *r1) of batch * out_h and channels [*c0, *c1). */
static void task_range(const dw_plan *plan, int32_t out_h, int32_t channels, int32_t task,
                       int64_t *r0, int64_t *r1, int32_t *c0, int32_t *c1) {
  const int64_t rows = (int64_t)plan->batch * out_h;
  const int64_t units = (rows + plan->row_unit - 1) / plan->row_unit;
  const int32_t ri = task / plan->tile_chunks, ci = task % plan->tile_chunks;
  *r0 = units * ri / plan->row_chunks * plan->row_unit;
  *r1 = units * (ri + 1) / plan->row_chunks * plan->row_unit;
  if (*r1 > rows) *r1 = rows;
  const int32_t t0 = (int32_t)((int64_t)plan->n_tiles * ci / plan->tile_chunks);
  const int32_t t1 = (int32_t)((int64_t)plan->n_tiles * (ci + 1) / plan->tile_chunks);
  *c0 = t0 * plan->tile;
  *c1 = t1 * plan->tile < channels ? t1 * plan->tile : channels;
}

/* Runs the task's rows, image by image. */
static void dw_task(void *arg, int32_t task, int32_t thread) {
  (void)thread;
  const dw_job *job = arg;
  const dw_plan *plan = job->plan;
  const kiln_dw_shape *s = plan->f32_fn ? &plan->f32.s : &plan->s8.s;
  int64_t r0, r1;
  int32_t c0, c1;
  task_range(plan, s->out_h, s->channels, task, &r0, &r1, &c0, &c1);
  const size_t in_image = (size_t)s->in_h * (size_t)s->in_w * (size_t)s->channels;
  const size_t out_image = (size_t)s->out_h * (size_t)s->out_w * (size_t)s->channels;
  for (int64_t r = r0; r < r1;) {
    const int64_t b = r / s->out_h;
    const int32_t oy0 = (int32_t)(r - b * s->out_h);
    const int32_t oy1 = r1 - b * s->out_h < s->out_h ? (int32_t)(r1 - b * s->out_h) : s->out_h;
    if (plan->f32_fn)
      plan->f32_fn(&plan->f32, (const float *)job->in + (size_t)b * in_image,
                   (float *)job->out + (size_t)b * out_image, oy0, oy1, c0, c1);
    else
      plan->s8_fn(&plan->s8, (const int8_t *)job->in + (size_t)b * in_image,
                  (int8_t *)job->out + (size_t)b * out_image, oy0, oy1, c0, c1);
    r += oy1 - oy0;
  }
}

static void dw_eval(const kiln_node *node, const void *plan_v, const kiln_eval_ctx *ctx) {
  const dw_plan *plan = plan_v;
  dw_job job = {plan, node->inputs[0]->data, node->outputs[0]->data};
  kiln_threadpool_run(ctx->pool, dw_task, &job, plan->row_chunks * plan->tile_chunks);
}

kiln_status kiln_fast_depthwise_f32_prepare(kiln_prepare_ctx *ctx, kiln_node *node,
                                            const kiln_conv_params *p, kiln_fast_fn *fn,
                                            const void **plan_out) {
  *fn = NULL;
  *plan_out = NULL;
  const kiln_dw_kernels *k = choose(ctx, node, p);
  if (!k) return KILN_OK;
  dw_plan *plan = kiln_prepare_alloc(ctx, sizeof *plan);
  if (!plan) return kiln_prepare_nomem(ctx);
  fill_common(ctx, p, k->tile, 1, &plan->f32.s, plan);
  const size_t n = kiln_dw_packed_f32_count(p->in_c, p->filter_h, k->tile);
  kiln_packed *pk;
  kiln_status s = kiln_prepare_packed(ctx, n * sizeof(float), k->isa, &pk);
  if (s != KILN_OK) return s;
  const kiln_rt_tensor *bias = node->n_inputs > 2 ? node->inputs[2] : NULL;
  if (pk->fill)
    kiln_dw_pack_f32(p->in_c, p->filter_h, k->tile, node->inputs[1]->data,
                     bias ? bias->data : NULL, pk->fill);
  plan->f32.packed = pk->data;
  plan->f32.act_min = p->float_min;
  plan->f32.act_max = p->float_max;
  plan->f32_fn = p->filter_h == 3 ? k->f32_3x3 : k->f32_5x5;
  *fn = dw_eval;
  *plan_out = plan;
  return KILN_OK;
}

/* The dot4 kernel for an int8 3x3 node, or NULL: its requantization takes
 * multipliers in [0, 2^31) and shifts in [-31, 31]. */
static const kiln_dw_dot4_kernel *choose_dot4(kiln_prepare_ctx *ctx, const kiln_conv_params *p) {
  if (p->filter_h != 3) return NULL;
  for (int32_t c = 0; c < p->in_c; c++)
    if (p->multiplier[c] < 0 || p->shift[c] < -31 || p->shift[c] > 31) return NULL;
  const uint32_t isa = kiln_prepare_isa(ctx);
  for (const kiln_dw_dot4_kernel *const *t = kiln_dw_dot4_tables; *t; t++)
    if (((*t)->isa & isa) == (*t)->isa) return *t;
  return NULL;
}

kiln_status kiln_fast_depthwise_s8_prepare(kiln_prepare_ctx *ctx, kiln_node *node,
                                           const kiln_conv_params *p, kiln_fast_fn *fn,
                                           const void **plan_out) {
  *fn = NULL;
  *plan_out = NULL;
  const kiln_dw_kernels *k = choose(ctx, node, p);
  if (!k) return KILN_OK;
  const kiln_dw_dot4_kernel *dot4 = choose_dot4(ctx, p);
  dw_plan *plan = kiln_prepare_alloc(ctx, sizeof *plan);
  if (!plan) return kiln_prepare_nomem(ctx);
  fill_common(ctx, p, dot4 ? dot4->tile : k->tile, dot4 && p->stride_h == 1 ? 2 : 1,
              &plan->s8.s, plan);
  const size_t n = dot4 ? kiln_dw_packed_s8_dot4_count(p->in_c, dot4->tile)
                        : kiln_dw_packed_s8_count(p->in_c, p->filter_h, k->tile);
  /* The dot4 kernel's layout, or the table's; the table must run here too. */
  const uint32_t isa = k->isa | (dot4 ? dot4->isa : 0);
  kiln_packed *pk;
  kiln_status s = kiln_prepare_packed(ctx, n * sizeof(int32_t), isa, &pk);
  if (s != KILN_OK) return s;
  const size_t zp_bytes = (size_t)p->in_w * (size_t)p->in_c;
  int8_t *zp_row = kiln_prepare_alloc(ctx, zp_bytes);
  if (!zp_row) return kiln_prepare_nomem(ctx);
  const kiln_rt_tensor *bias = node->n_inputs > 2 ? node->inputs[2] : NULL;
  const int32_t *bias_data = bias ? bias->data : NULL;
  if (dot4) {
    /* info: whether the packing took the fast requantization. */
    if (pk->fill)
      pk->info = kiln_dw_pack_s8_dot4(p->in_c, dot4->tile, node->inputs[1]->data, bias_data,
                                      p->input_offset, p->multiplier, p->shift,
                                      p->output_offset, pk->fill);
    plan->s8.rq_fast = pk->info == 1;
    plan->s8_fn = dot4->s8_3x3;
  } else {
    if (pk->fill)
      kiln_dw_pack_s8(p->in_c, p->filter_h, k->tile, node->inputs[1]->data, bias_data,
                      p->input_offset, p->multiplier, p->shift, pk->fill);
    plan->s8.rq_fast = false;
    plan->s8_fn = p->filter_h == 3 ? k->s8_3x3 : k->s8_5x5;
  }
  memset(zp_row, -p->input_offset, zp_bytes);
  plan->s8.packed = pk->data;
  plan->s8.zp_row = zp_row;
  plan->s8.input_zp = -p->input_offset;
  plan->s8.output_zp = p->output_offset;
  plan->s8.act_min = p->act_min;
  plan->s8.act_max = p->act_max;
  *fn = dw_eval;
  *plan_out = plan;
  return KILN_OK;
}
