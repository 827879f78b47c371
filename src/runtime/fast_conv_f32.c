/*
 * Fast float32 CONV_2D and FULLY_CONNECTED (see runtime/fast_conv.h): both
 * become C[M x N] = clamp(A[M x K] * B[K x N] + bias) on a GEMM micro-kernel
 * (kernels/f32_gemm.h) with weights packed at prepare.
 *
 *   FULLY_CONNECTED  M = batch, K = in_depth, A = the input rows.
 *   CONV_2D 1x1, stride 1 (no padding possible): M = batch * H * W pixels,
 *                    K = in_c, A = the NHWC input itself.
 *   other CONV_2D    M = batch * out_h * out_w, K = filter_h * filter_w *
 *                    in_c, read through an indirection of each window's
 *                    runs of taps (kernels/f32_gemm.h), built per group of
 *                    rows in the thread's scratch: the run pointers, and
 *                    room for copies of windows cut by padding.
 * Weights that are all exactly halves (fp16 models: their weights were
 * halves before the load-time DEQUANTIZE folding) are packed as halves,
 * which halves the weight bytes streamed per invoke and changes no result.
 * Grouped convs, weights or biases computed at run time stay on the
 * reference kernels.
 *
 * Work split: the M rows are cut into "row groups" of at most mr rows and
 * near-equal size (so no group is a thin remainder), the N columns into
 * panels. A task is a range of row groups times a range of panels; the task
 * grid depends only on the shape (a panel range's weights sized for L2, and
 * enough tasks to share among threads). Every output element is computed by
 * the same kernel arithmetic wherever it falls, so results are identical
 * for any thread count.
 */
#include <stdbool.h>
#include <stdint.h>

#include "kernels/f32_gemm.h"
#include "runtime/fast_conv.h"

/* Weight bytes a task's panel range may span (half of a 1 MiB L2). */
#define PANEL_BLOCK_BYTES (512 * 1024)
/* Multiply-adds per task to aim for, and the most tasks for one op. */
#define TASK_MACS (1 << 20)
#define MAX_TASKS 64

typedef struct f32_gemm_plan {
  const kiln_f32_gemm_kernel *kern;
  kiln_conv_params conv; /* geometry for the indirection */
  bool indirect;         /* conv windows (else A's rows are the input's) */
  int32_t run_taps;      /* taps per run of the indirection */
  const float *zeros;    /* kc zeros: the runs in padding */
  size_t edge_offset;    /* scratch bytes before the copies of cut windows */
  const void *packed;    /* kiln_f32_gemm_pack layout */
  bool half;             /* packed weights are halves (exactly the model's) */
  int64_t m;
  int32_t n, k;
  int32_t kc, ks;      /* k = ks runs of kc floats */
  int64_t groups;      /* row groups: ceil(m / kern->mr) */
  int32_t m_tiles;     /* tasks along M (ranges of row groups) */
  int32_t n_tiles;     /* tasks along N */
  int32_t n_tile_cols; /* columns per N task, a multiple of kern->nr */
  float min, max;
} f32_gemm_plan;

typedef struct gemm_job {
  const f32_gemm_plan *plan;
  const float *input;
  float *output;
  char *scratch;
  size_t scratch_stride;
} gemm_job;

/* First row of row group g (groups split m as evenly as integers allow). */
static int64_t group_row(const f32_gemm_plan *pl, int64_t g) { return g * pl->m / pl->groups; }

static void gemm_task(void *ctx, int32_t task, int32_t thread) {
  const gemm_job *job = ctx;
  const f32_gemm_plan *pl = job->plan;
  const int32_t nt = task / pl->m_tiles, mt = task % pl->m_tiles;
  const int32_t n0 = nt * pl->n_tile_cols;
  const int32_t cols = pl->n - n0 < pl->n_tile_cols ? pl->n - n0 : pl->n_tile_cols;
  const void *w = (const char *)pl->packed + kiln_f32_gemm_panel_bytes(n0, pl->k, pl->half);
  const kiln_f32_gemm_fn fn = pl->half ? pl->kern->fn_f16 : pl->kern->fn;
  const int64_t g0 = mt * pl->groups / pl->m_tiles, g1 = (mt + 1) * pl->groups / pl->m_tiles;
  /* Row pointers: on the stack for direct rows, else in the thread's
   * scratch followed by room for copies of cut windows. */
  const float *direct[KILN_F32_GEMM_MAX_MR];
  const float **a = direct;
  float *edge = NULL;
  if (pl->indirect) {
    char *scratch = job->scratch + (size_t)thread * job->scratch_stride;
    a = (const float **)(void *)scratch;
    edge = (float *)(void *)(scratch + pl->edge_offset);
  }
  for (int64_t g = g0; g < g1; g++) {
    const int64_t r0 = group_row(pl, g);
    const int32_t rows = (int32_t)(group_row(pl, g + 1) - r0);
    if (pl->indirect) {
      kiln_f32_conv_indirection(&pl->conv, pl->run_taps, job->input, pl->zeros, edge, r0, rows,
                                a);
    } else {
      for (int32_t i = 0; i < rows; i++) direct[i] = job->input + (size_t)(r0 + i) * (size_t)pl->k;
    }
    fn(rows, cols, pl->kc, pl->ks, a, w, job->output + (size_t)r0 * (size_t)pl->n + (size_t)n0,
       (size_t)pl->n, pl->min, pl->max);
  }
}

static void run_plan(const f32_gemm_plan *pl, const float *input, float *output,
                     const kiln_eval_ctx *ctx) {
  gemm_job job = {pl, input, output, ctx->scratch, ctx->scratch_stride};
  const int32_t tasks = pl->m_tiles * pl->n_tiles;
  if (tasks == 1)
    gemm_task(&job, 0, 0);
  else
    kiln_threadpool_run(ctx->pool, gemm_task, &job, tasks);
}

static void conv_eval(const kiln_node *node, const void *plan, const kiln_eval_ctx *ctx) {
  run_plan(plan, node->inputs[0]->data, node->outputs[0]->data, ctx);
}

/* The task grid of an m x n x k product (shape only, see the top). */
static void plan_tiles(f32_gemm_plan *pl) {
  const int32_t nr = pl->kern->nr;
  const int32_t panels = (pl->n + nr - 1) / nr;
  const size_t panel_bytes = kiln_f32_gemm_panel_bytes(nr, pl->k, pl->half);
  int32_t per_block = (int32_t)(PANEL_BLOCK_BYTES / panel_bytes);
  if (per_block < 1) per_block = 1;
  pl->n_tiles = (panels + per_block - 1) / per_block;
  const int32_t per_tile = (panels + pl->n_tiles - 1) / pl->n_tiles;
  pl->n_tile_cols = per_tile * nr;
  pl->n_tiles = (panels + per_tile - 1) / per_tile;

  pl->groups = (pl->m + pl->kern->mr - 1) / pl->kern->mr;
  const double macs = (double)pl->m * (double)pl->n * (double)pl->k;
  double want = macs / TASK_MACS;
  if (want > MAX_TASKS) want = MAX_TASKS;
  int64_t m_tiles = (int64_t)(want / pl->n_tiles + 0.5);
  if (m_tiles < 1) m_tiles = 1;
  if (m_tiles > pl->groups) m_tiles = pl->groups;
  pl->m_tiles = (int32_t)m_tiles;
}

/* Packs weights [n][k] and bias and fills the plan's GEMM fields. */
static kiln_status plan_gemm(kiln_prepare_ctx *ctx, const kiln_f32_gemm_kernel *kern, int64_t m,
                             int32_t n, int32_t k, const kiln_rt_tensor *weights,
                             const kiln_rt_tensor *bias, float min, float max,
                             f32_gemm_plan **out) {
  f32_gemm_plan *pl = kiln_prepare_alloc(ctx, sizeof *pl);
  if (!pl) return kiln_prepare_nomem(ctx);
  /* A stored blob says whether it holds halves (info 1), which spares the
   * scan of the weights. */
  const kiln_packed *stored = kiln_prepare_packed_peek(ctx);
  pl->half = stored ? stored->info == 1
                    : kiln_f32_gemm_halves_exact(weights->data, (size_t)n * (size_t)k);
  kiln_packed *pk;
  kiln_status s =
      kiln_prepare_packed(ctx, kiln_f32_gemm_packed_bytes(kern, n, k, pl->half), kern->isa, &pk);
  if (s != KILN_OK) return s;
  if (pk->fill) {
    kiln_f32_gemm_pack(kern, n, k, weights->data, bias ? bias->data : NULL, pl->half, pk->fill);
    pk->info = pl->half;
  }
  pl->kern = kern;
  pl->packed = pk->data;
  pl->m = m;
  pl->n = n;
  pl->k = pl->kc = k;
  pl->ks = 1;
  pl->min = min;
  pl->max = max;
  plan_tiles(pl);
  *out = pl;
  return KILN_OK;
}

/* Weights and bias the plan can pack: constant and present. */
static bool packable(const kiln_rt_tensor *weights, const kiln_rt_tensor *bias) {
  return weights->is_const && weights->data && (!bias || (bias->is_const && bias->data));
}

static const kiln_rt_tensor *bias_input(const kiln_node *node) {
  return node->n_inputs > 2 ? node->inputs[2] : NULL;
}

kiln_status kiln_fast_conv2d_f32_prepare(kiln_prepare_ctx *ctx, kiln_node *node,
                                         const kiln_conv_params *p, kiln_fast_fn *fn,
                                         const void **plan) {
  *fn = NULL;
  *plan = NULL;
  const kiln_f32_gemm_kernel *kern = kiln_f32_gemm_select(kiln_prepare_isa(ctx));
  const kiln_rt_tensor *filter = node->inputs[1], *bias = bias_input(node);
  if (!kern || p->groups != 1 || !packable(filter, bias)) return KILN_OK;
  const int64_t k64 = (int64_t)p->filter_h * p->filter_w * p->in_c;
  if (k64 > INT32_MAX / 2) return KILN_OK;
  const int32_t k = (int32_t)k64;
  const int64_t m = (int64_t)p->batch * p->out_h * p->out_w;
  f32_gemm_plan *pl;
  kiln_status s =
      plan_gemm(ctx, kern, m, p->out_c, k, filter, bias, p->float_min, p->float_max, &pl);
  if (s != KILN_OK) return s;
  pl->conv = *p;
  pl->indirect = !(p->filter_h == 1 && p->filter_w == 1 && p->stride_h == 1 && p->stride_w == 1 &&
                   p->pad_h == 0 && p->pad_w == 0);
  if (pl->indirect) {
    /* A row of taps is one run when it is contiguous in the input. */
    pl->run_taps = p->dilation_w == 1 ? p->filter_w : 1;
    pl->kc = pl->run_taps * p->in_c;
    pl->ks = k / pl->kc;
    float *zeros = kiln_prepare_alloc(ctx, (size_t)pl->kc * sizeof *zeros);
    if (!zeros) return kiln_prepare_nomem(ctx);
    pl->zeros = zeros;
    pl->edge_offset = ((size_t)pl->ks * (size_t)kern->mr * sizeof(const float *) + 63) / 64 * 64;
    size_t bytes = pl->edge_offset;
    if (pl->run_taps > 1) bytes += (size_t)kern->mr * (size_t)k * sizeof(float);
    if (node->scratch_bytes < bytes) node->scratch_bytes = bytes;
  }
  *fn = conv_eval;
  *plan = pl;
  return KILN_OK;
}

kiln_status kiln_fast_fc_f32_prepare(kiln_prepare_ctx *ctx, kiln_node *node,
                                     const kiln_fc_params *p, kiln_fast_fn *fn, const void **plan) {
  *fn = NULL;
  *plan = NULL;
  const kiln_f32_gemm_kernel *kern = kiln_f32_gemm_select(kiln_prepare_isa(ctx));
  const kiln_rt_tensor *weights = node->inputs[1], *bias = bias_input(node);
  if (!kern || !packable(weights, bias)) return KILN_OK;
  f32_gemm_plan *pl;
  kiln_status s = plan_gemm(ctx, kern, p->batch, p->out_depth, p->in_depth, weights, bias,
                            p->float_min, p->float_max, &pl);
  if (s != KILN_OK) return s;
  *fn = conv_eval;
  *plan = pl;
  return KILN_OK;
}
