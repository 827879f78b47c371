/*
 * Running a kiln_net: forward and backward over the layers in order, the
 * pool helpers every layer uses (parallel tasks, tile-ordered reductions)
 * and the GEMM entry point.
 */
#include <cblas.h>
#include <string.h>

#include "train/net_int.h"

void train_parallel(kiln_net *net, kiln_task_fn fn, void *ctx, int32_t n_tasks) {
  if (n_tasks <= 0) return;
  if (n_tasks == 1 || net->n_threads <= 1) {
    for (int32_t t = 0; t < n_tasks; t++) fn(ctx, t, 0);
    return;
  }
  kiln_threadpool_run(net->pool, fn, ctx, n_tasks);
}

void train_sgemm(bool trans_a, bool trans_b, int32_t m, int32_t n, int32_t k, float alpha,
                 const float *a, int32_t lda, const float *b, int32_t ldb, float beta, float *c,
                 int32_t ldc) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0) {
    for (int32_t i = 0; i < m; i++)
      for (int32_t j = 0; j < n; j++) c[(size_t)i * ldc + j] *= beta;
    return;
  }
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
              m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

typedef struct reduce_job {
  const float *partials;
  size_t stride;
  int32_t tiles;
  int64_t count;
  float *out;
} reduce_job;

#define REDUCE_SPAN 4096

static void reduce_task(void *ctx, int32_t task, int32_t thread) {
  (void)thread;
  const reduce_job *j = ctx;
  const int64_t i0 = (int64_t)task * REDUCE_SPAN;
  const int64_t i1 = i0 + REDUCE_SPAN < j->count ? i0 + REDUCE_SPAN : j->count;
  float *out = j->out;
  memcpy(out + i0, j->partials + i0, (size_t)(i1 - i0) * sizeof(float));
  for (int32_t t = 1; t < j->tiles; t++) {
    const float *p = j->partials + (size_t)t * j->stride;
    for (int64_t i = i0; i < i1; i++) out[i] += p[i];
  }
}

void train_reduce_tiles(kiln_net *net, const float *partials, size_t stride, int32_t tiles,
                        int64_t count, float *out) {
  reduce_job job = {partials, stride, tiles, count, out};
  train_parallel(net, reduce_task, &job, (int32_t)((count + REDUCE_SPAN - 1) / REDUCE_SPAN));
}

void kiln_net_forward(kiln_net *net, int32_t n, bool training) {
  if (n > net->max_batch) n = net->max_batch;
  if (n < 1) return;
  if (training) {
    memset(net->dacts, 0, net->n_acts * sizeof(float));
    net->dropout_counter++;
  }
  for (int32_t i = 1; i < net->n_layers; i++) {
    train_layer *l = &net->layers[i];
    switch (l->kind) {
    case KILN_LAYER_CONV:
      train_conv_forward(net, l, n);
      break;
    case KILN_LAYER_DWCONV:
      train_dwconv_forward(net, l, n);
      break;
    case KILN_LAYER_DENSE:
      train_dense_forward(net, l, n);
      break;
    case KILN_LAYER_BATCHNORM:
      train_bn_forward(net, l, n, training);
      break;
    case KILN_LAYER_MAXPOOL:
    case KILN_LAYER_AVGPOOL:
    case KILN_LAYER_GLOBAL_AVGPOOL:
      train_pool_forward(net, l, n);
      break;
    default:
      train_eltwise_forward(net, l, n, training);
      break;
    }
  }
}

void kiln_net_backward(kiln_net *net, int32_t n) {
  if (n > net->max_batch) n = net->max_batch;
  if (n < 1) return;
  for (int32_t i = net->n_layers - 1; i >= 1; i--) {
    const train_layer *l = &net->layers[i];
    if (!l->needs_grad) continue;
    switch (l->kind) {
    case KILN_LAYER_CONV:
      train_conv_backward(net, l, n);
      break;
    case KILN_LAYER_DWCONV:
      train_dwconv_backward(net, l, n);
      break;
    case KILN_LAYER_DENSE:
      train_dense_backward(net, l, n);
      break;
    case KILN_LAYER_BATCHNORM:
      train_bn_backward(net, l, n);
      break;
    case KILN_LAYER_MAXPOOL:
    case KILN_LAYER_AVGPOOL:
    case KILN_LAYER_GLOBAL_AVGPOOL:
      train_pool_backward(net, l, n);
      break;
    default:
      train_eltwise_backward(net, l, n);
      break;
    }
  }
}
