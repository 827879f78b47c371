/*
 * Fast int8 CONV_2D and FULLY_CONNECTED (see runtime/fast_conv.h). A conv
 * becomes an int8 GEMM with per-channel requantization (kernels/s8_gemm.h),
 * rows = output pixels, columns = output channels, depth = filter taps x
 * input channels. FULLY_CONNECTED, whose reference rescales in double
 * precision, runs matrix-vector products for exact int32 accumulators
 * (kernels/s8_fc.h) and rescales each output like the reference.
 *
 * Prepare packs the weights and folds bias and zero points for the kernel
 * kiln_s8_gemm_select picks from kiln_prepare_isa, and plans the tiling;
 * it leaves the reference kernel in place (fn NULL) when no kernel fits
 * this CPU, the weights or bias are not constant, the conv is grouped, the
 * weights have a zero point, the input zero point is outside int8, or a
 * multiplier or shift is outside what the kernels reproduce exactly.
 *
 * Eval splits the output into tiles of whole rows x a range of columns; the
 * tile count depends only on the shape. Each task packs its rows of A into
 * its thread's scratch (after an im2col for convs other than 1x1 stride 1,
 * padding with the input zero point, which contributes 0 as the reference's
 * skipped taps do) and runs the micro-kernel, which writes the tile's
 * outputs directly. Results are bit-identical to kiln_s8_conv2d_ref /
 * kiln_s8_fully_connected_ref for any thread count.
 */
#include <string.h>

#include "kernels/quant_math.h"
#include "kernels/s8_fc.h"
#include "kernels/s8_gemm.h"
#include "runtime/fast_conv.h"

/* ---- CONV_2D: int8 GEMM ---- */

/* Rows of packed A a tile keeps at most (its bytes stay about L1-sized). */
#define PANEL_BUDGET_BYTES 32768
/* Multiply-adds per task below which splitting further does not pay. */
#define TASK_MIN_MACS 262144
#define MAX_TASKS 32

typedef struct s8_plan {
  const kiln_s8_gemm_kernel *kern;
  kiln_s8_gemm gemm;
  kiln_conv_params conv; /* im2col geometry (convs that need it) */
  bool im2col;           /* else X's rows are the input's rows */
  int8_t pad;            /* input zero point */
  int64_t m;             /* rows */
  int32_t tile_rows, tile_cols, tiles_m, tiles_n;
  size_t x_stride;     /* bytes between rows of X (input or im2col rows) */
  size_t a_stride;     /* bytes between packed rows of A */
  size_t panel_offset; /* of packed A in a thread's scratch, after im2col rows */
} s8_plan;

typedef struct s8_job {
  const s8_plan *plan;
  const int8_t *input;
  int8_t *output;
  const kiln_eval_ctx *ctx;
} s8_job;

static size_t align64(size_t x) { return (x + 63) / 64 * 64; }

static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

/* Chooses tile sizes for an m x n x k product: enough tasks to share the
 * work (a count from the shape only), whole rows first, then columns in
 * multiples of the kernel's tile width. */
static void plan_tiles(s8_plan *pl) {
  const kiln_s8_gemm_kernel *kern = pl->kern;
  const int64_t m = pl->m, n = pl->gemm.n;
  const int64_t work = m * n * pl->gemm.k;
  int64_t target = work / TASK_MIN_MACS;
  if (target < 1) target = 1;
  if (target > MAX_TASKS) target = MAX_TASKS;
  int64_t budget = (int64_t)(PANEL_BUDGET_BYTES / pl->a_stride) / kern->mr * kern->mr;
  if (budget < kern->mr) budget = kern->mr;
  if (budget > 16 * kern->mr) budget = 16 * kern->mr;
  int64_t rows = ceil_div(ceil_div(m, target), kern->mr) * kern->mr;
  if (rows > budget) rows = budget;
  if (rows > m) rows = m;
  pl->tile_rows = (int32_t)rows;
  pl->tiles_m = (int32_t)ceil_div(m, rows);
  pl->tile_cols = (int32_t)n;
  pl->tiles_n = 1;
  if (pl->tiles_m < target) {
    const int64_t blocks = ceil_div(n, kern->nr);
    const int64_t per_tile = ceil_div(blocks, ceil_div(target, pl->tiles_m));
    pl->tile_cols = (int32_t)(per_tile * kern->nr);
    pl->tiles_n = (int32_t)ceil_div(n, pl->tile_cols);
  }
}

static void s8_task(void *arg, int32_t task, int32_t thread) {
  const s8_job *job = arg;
  const s8_plan *pl = job->plan;
  const int64_t m0 = (int64_t)(task / pl->tiles_n) * pl->tile_rows;
  const int32_t rows = (int32_t)(pl->m - m0 < pl->tile_rows ? pl->m - m0 : pl->tile_rows);
  const int32_t n0 = task % pl->tiles_n * pl->tile_cols;
  const int32_t n1 = pl->gemm.n - n0 < pl->tile_cols ? pl->gemm.n : n0 + pl->tile_cols;
  uint8_t *scratch = (uint8_t *)job->ctx->scratch + (size_t)thread * job->ctx->scratch_stride;
  void *a = scratch + pl->panel_offset;
  const int8_t *x = job->input + (size_t)m0 * pl->x_stride;
  if (pl->im2col) {
    /* Byte-wide A is packed in place, over the im2col rows. */
    int8_t *rows_out = pl->kern->a_elem == 1 ? (int8_t *)a : (int8_t *)scratch;
    kiln_s8_im2col(&pl->conv, job->input, pl->pad, m0, rows, rows_out, pl->x_stride);
    x = rows_out;
  }
  pl->kern->pack_a(x, pl->x_stride, rows, pl->gemm.k, pl->gemm.kp, a, pl->a_stride);
  const size_t n = (size_t)pl->gemm.n;
  pl->kern->run(&pl->gemm, a, pl->a_stride, rows, n0, n1, job->output + (size_t)m0 * n, n);
}

static void s8_eval(const kiln_node *node, const void *plan, const kiln_eval_ctx *ctx) {
  const s8_plan *pl = plan;
  s8_job job = {pl, node->inputs[0]->data, node->outputs[0]->data, ctx};
  kiln_threadpool_run(ctx->pool, s8_task, &job, pl->tiles_m * pl->tiles_n);
}

/* Constant weights and (absent or constant) bias: what packing needs. */
static bool constant_operands(const kiln_node *node) {
  const kiln_rt_tensor *w = node->inputs[1];
  const kiln_rt_tensor *bias = node->n_inputs > 2 ? node->inputs[2] : NULL;
  return w->is_const && w->data && (!bias || (bias->is_const && bias->data));
}

/* Packs the product, plans its tiles and raises the node's scratch. conv:
 * the geometry of a conv whose rows need an im2col, else NULL (the rows of
 * X are the input's, k bytes apart). */
static kiln_status make_plan(kiln_prepare_ctx *ctx, kiln_node *node,
                             const kiln_s8_gemm_kernel *kern, const kiln_conv_params *conv,
                             int64_t m, int32_t n, int32_t k, int32_t input_offset,
                             const int32_t *mult, const int32_t *shift, int32_t out_zp,
                             int32_t act_min, int32_t act_max, s8_plan **plan_out) {
  s8_plan *pl = kiln_prepare_alloc(ctx, sizeof *pl);
  if (!pl) return kiln_prepare_nomem(ctx);
  kiln_packed *pk;
  kiln_status s = kiln_prepare_packed(ctx, kiln_s8_gemm_bytes(kern, n, k), kern->isa, &pk);
  if (s != KILN_OK) return s;
  const kiln_rt_tensor *bias = node->n_inputs > 2 ? node->inputs[2] : NULL;
  if (pk->fill)
    kiln_s8_gemm_init(kern, n, k, node->inputs[1]->data, bias ? bias->data : NULL, input_offset,
                      mult, shift, out_zp, act_min, act_max, pk->fill, &pl->gemm);
  else
    kiln_s8_gemm_attach(kern, n, k, mult, shift, out_zp, act_min, act_max, pk->data, &pl->gemm);
  pl->kern = kern;
  pl->m = m;
  pl->pad = (int8_t)-input_offset;
  pl->a_stride = (size_t)pl->gemm.kp * (size_t)kern->a_elem;
  pl->x_stride = (size_t)k;
  pl->im2col = conv != NULL;
  if (conv) {
    pl->conv = *conv;
    /* Byte-wide A: im2col straight into the packed rows, packed in place. */
    if (kern->a_elem == 1) pl->a_stride = kiln_s8_im2col_stride(conv, pl->a_stride);
    pl->x_stride = kern->a_elem == 1 ? pl->a_stride : kiln_s8_im2col_stride(conv, (size_t)k);
  }
  plan_tiles(pl);
  /* Per thread: im2col rows (unless written into packed A), then packed A. */
  const bool separate = pl->im2col && kern->a_elem != 1;
  pl->panel_offset =
      separate ? align64((size_t)pl->tile_rows * pl->x_stride + KILN_S8_IM2COL_SLACK) : 0;
  const size_t bytes =
      pl->panel_offset + (size_t)pl->tile_rows * pl->a_stride + KILN_S8_IM2COL_SLACK;
  if (bytes > node->scratch_bytes) node->scratch_bytes = bytes;
  *plan_out = pl;
  return KILN_OK;
}

kiln_status kiln_fast_conv2d_s8_prepare(kiln_prepare_ctx *ctx, kiln_node *node,
                                        const kiln_conv_params *p, kiln_fast_fn *fn,
                                        const void **plan) {
  *fn = NULL;
  *plan = NULL;
  const kiln_s8_gemm_kernel *kern = kiln_s8_gemm_select(kiln_prepare_isa(ctx));
  /* Padding is the input zero point as an int8, which needs it in range. */
  const bool pad_ok = p->input_offset >= -INT8_MAX && p->input_offset <= -INT8_MIN;
  if (!kern || p->groups != 1 || p->filter_offset != 0 || !pad_ok || !constant_operands(node) ||
      !kiln_s8_gemm_supported(p->multiplier, p->shift, p->out_c))
    return KILN_OK;
  const int64_t k = (int64_t)p->filter_h * p->filter_w * p->in_c;
  const int64_t m = (int64_t)p->batch * p->out_h * p->out_w;
  if (k < 1 || k > INT32_MAX / 4 || m < 1 || p->out_c < 1) return KILN_OK;
  /* 1x1 stride-1 convs read the input's rows directly. */
  const bool direct = p->filter_h == 1 && p->filter_w == 1 && p->stride_h == 1 &&
                      p->stride_w == 1 && p->pad_h == 0 && p->pad_w == 0;
  s8_plan *pl = NULL;
  kiln_status s = make_plan(ctx, node, kern, direct ? NULL : p, m, p->out_c, (int32_t)k,
                            p->input_offset, p->multiplier, p->shift, p->output_offset,
                            p->act_min, p->act_max, &pl);
  if (s != KILN_OK) return s;
  *fn = s8_eval;
  *plan = pl;
  return KILN_OK;
}

/* ---- FULLY_CONNECTED: matrix-vector products (kernels/s8_fc.h) ---- */

#define FC_BLOCK 64 /* output channels per task */

typedef struct fc_plan {
  const kiln_s8_fc_kernel *kern;
  const int8_t *w;      /* [n][kp] */
  const int32_t *corr;  /* [n] */
  const double *scale;  /* [n] */
  int32_t batch, n, k, kp, blocks;
  int32_t out_zp, act_min, act_max;
} fc_plan;

typedef struct fc_job {
  const fc_plan *plan;
  const int8_t *input;
  int8_t *output;
  const kiln_eval_ctx *ctx;
} fc_job;

static void fc_task(void *arg, int32_t task, int32_t thread) {
  const fc_job *job = arg;
  const fc_plan *pl = job->plan;
  const int32_t b = task / pl->blocks, n0 = task % pl->blocks * FC_BLOCK;
  const int32_t rows = pl->n - n0 < FC_BLOCK ? pl->n - n0 : FC_BLOCK;
  uint8_t *a = (uint8_t *)job->ctx->scratch + (size_t)thread * job->ctx->scratch_stride;
  int32_t acc[FC_BLOCK];
  pl->kern->convert(job->input + (size_t)b * (size_t)pl->k, pl->k, pl->kp, a);
  pl->kern->dot(pl->w + (size_t)n0 * (size_t)pl->kp, a, pl->kp, rows, acc);
  int8_t *out = job->output + (size_t)b * (size_t)pl->n + n0;
  for (int32_t r = 0; r < rows; r++) {
    const int32_t sum = (int32_t)((uint32_t)acc[r] + (uint32_t)pl->corr[n0 + r]);
    out[r] = (int8_t)kiln_fc_requant(sum, pl->scale[n0 + r], pl->out_zp, pl->act_min, pl->act_max);
  }
}

static void fc_eval(const kiln_node *node, const void *plan, const kiln_eval_ctx *ctx) {
  const fc_plan *pl = plan;
  fc_job job = {pl, node->inputs[0]->data, node->outputs[0]->data, ctx};
  kiln_threadpool_run(ctx->pool, fc_task, &job, pl->batch * pl->blocks);
}

kiln_status kiln_fast_fc_s8_prepare(kiln_prepare_ctx *ctx, kiln_node *node,
                                    const kiln_fc_params *p, kiln_fast_fn *fn, const void **plan) {
  *fn = NULL;
  *plan = NULL;
  const kiln_s8_fc_kernel *kern = kiln_s8_fc_select(kiln_prepare_isa(ctx));
  if (!kern || p->filter_offset != 0 || !constant_operands(node) || p->batch < 1 ||
      p->out_depth < 1 || p->in_depth < 1 || p->in_depth > INT32_MAX / 2)
    return KILN_OK;
  fc_plan *pl = kiln_prepare_alloc(ctx, sizeof *pl);
  if (!pl) return kiln_prepare_nomem(ctx);
  const int32_t kp = (p->in_depth + kern->kgroup - 1) / kern->kgroup * kern->kgroup;
  /* One packed blob: the rows of W [n][kp], then corr [n]. */
  const size_t w_bytes = align64((size_t)p->out_depth * (size_t)kp);
  kiln_packed *pk;
  kiln_status s =
      kiln_prepare_packed(ctx, w_bytes + (size_t)p->out_depth * sizeof(int32_t), kern->isa, &pk);
  if (s != KILN_OK) return s;
  int8_t *w = pk->fill;
  int32_t *corr = pk->fill ? (int32_t *)(void *)((uint8_t *)pk->fill + w_bytes) : NULL;
  const int8_t *src = node->inputs[1]->data;
  const kiln_rt_tensor *bias = node->n_inputs > 2 ? node->inputs[2] : NULL;
  const int32_t *b = bias ? bias->data : NULL;
  for (int32_t o = 0; pk->fill && o < p->out_depth; o++) {
    const int8_t *row = src + (size_t)o * (size_t)p->in_depth;
    uint32_t sum = 0;
    for (int32_t k = 0; k < p->in_depth; k++) sum += (uint32_t)(int32_t)row[k];
    memcpy(w + (size_t)o * (size_t)kp, row, (size_t)p->in_depth);
    /* bias + (input_offset - a_offset) * sum(W), modulo 2^32 like the
     * reference's int32 accumulator. */
    corr[o] = (int32_t)((b ? (uint32_t)b[o] : 0u) +
                        (uint32_t)(p->input_offset - kern->a_offset) * sum);
  }
  pl->kern = kern;
  pl->w = pk->data;
  pl->corr = (const int32_t *)(const void *)((const uint8_t *)pk->data + w_bytes);
  pl->scale = p->scale;
  pl->batch = p->batch;
  pl->n = p->out_depth;
  pl->k = p->in_depth;
  pl->kp = kp;
  pl->blocks = (p->out_depth + FC_BLOCK - 1) / FC_BLOCK;
  pl->out_zp = p->output_offset;
  pl->act_min = p->act_min;
  pl->act_max = p->act_max;
  if ((size_t)kp + 64 > node->scratch_bytes) node->scratch_bytes = (size_t)kp + 64;
  *fn = fc_eval;
  *plan = pl;
  return KILN_OK;
}
