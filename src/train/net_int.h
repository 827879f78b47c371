/*
 * train/net_int.h: the inside of a kiln_net (kiln/train.h), shared by the
 * engine's files: the layer records, the size table and the one block.
 *
 * Block layout (offsets in floats, each region 64-byte aligned):
 *   params  [n_params]   trainable tensors of every layer, in layer order
 *   grads   [n_params]   their gradients (same offsets)
 *   moment1 [n_params]   SGD velocity / Adam first moment
 *   moment2 [n_params]   Adam second moment
 *   state   [n_state]    batch norm running mean and variance
 *   acts    [n_acts]     every layer's output for max_batch samples, plus
 *                        batch norm batch mean / inverse std and max pooling
 *                        winning taps
 *   dacts   [n_acts]     activation gradients (same offsets)
 *   scratch              per-thread im2col buffers, then per-tile partial
 *                        sums for weight-gradient and statistics reductions
 *   bn_sums              doubles: a batch norm's two per-channel sums
 *   packed, zeros        a conv's weights packed for kiln's GEMM kernel, and
 *                        zeros for the windows' runs in padding
 * A parameter tensor's offset is the same in params, grads and moments.
 */
#ifndef KILN_TRAIN_NET_INT_H
#define KILN_TRAIN_NET_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/threadpool.h"
#include "kernels/f32_gemm.h"
#include "kiln/train.h"

/* Rows (output pixels) a conv tile aims for: a tile is a run of whole
 * samples, so the tiles depend only on the shape and the batch size. */
#define TRAIN_TILE_ROWS 2048
/* Rows of a statistics / elementwise tile. */
#define TRAIN_CHUNK_ROWS 1024

typedef struct train_layer {
  kiln_layer_kind kind;
  int32_t in[2];
  int32_t h, w, c; /* output shape per sample */
  bool flat;
  bool trainable;
  bool needs_grad; /* some trainable parameter lies at or before this layer */
  /* conv, dwconv, pools */
  int32_t kh, kw, sh, sw, dh, dw;
  int32_t pad_t, pad_l; /* padding before the first row / column */
  kiln_padding padding;
  int32_t mult; /* dwconv depth multiplier */
  bool has_bias;
  float momentum, eps; /* batchnorm */
  bool bn_batch_stats; /* batchnorm: the last forward used the batch's statistics */
  float rate;          /* dropout */
  /* Offsets in floats (see the layout above); SIZE_MAX when absent. */
  size_t w_off, b_off;     /* params: weight / bias, or gamma / beta */
  int64_t w_count, b_count;
  size_t mean_off, var_off; /* state: running statistics */
  size_t act_off;           /* acts and dacts: output [max_batch * h * w * c] */
  size_t stat_off;          /* acts: batchnorm batch mean [c] then inverse std [c];
                               maxpool winning taps [max_batch * h * w * c] */
  uint64_t dropout_seq;     /* counter value of the last training forward */
} train_layer;

struct kiln_net {
  int32_t n_layers, cap_layers;
  train_layer *layers;
  kiln_error build_err; /* first builder error; status KILN_OK when none */
  bool finalized;
  int32_t max_batch;
  int32_t n_threads;
  kiln_threadpool *pool;
  /* size table (floats) */
  size_t n_params, n_state, n_acts;
  size_t scratch_per_thread; /* floats of im2col per thread */
  size_t partial_floats;     /* floats of per-tile partial sums */
  int32_t max_bn_c;          /* widest batch norm: bn_sums holds 2 * max_bn_c doubles */
  size_t block_bytes;
  float *block;
  float *params, *grads, *moment1, *moment2, *state, *acts, *dacts, *scratch, *partials;
  double *bn_sums;
  /* kiln's float GEMM micro-kernel for conv forwards (NULL: OpenBLAS with
   * im2col), its packed weights (packed_bytes, one conv at a time) and a
   * run of zeros for windows in padding (max_conv_kc floats). */
  const kiln_f32_gemm_kernel *gemm;
  void *packed;
  size_t packed_bytes;
  float *zeros;
  size_t zeros_floats;
  int64_t step;
  uint64_t seed;
  uint64_t dropout_counter;
};

/* The number of tiles of whole samples for n samples of `rows_per_sample`
 * rows, and the samples per tile. */
static inline int32_t train_sample_tiles(int32_t n, int64_t rows_per_sample, int32_t *per_tile) {
  int64_t per = TRAIN_TILE_ROWS / (rows_per_sample > 0 ? rows_per_sample : 1);
  if (per < 1) per = 1;
  if (per > n) per = n;
  *per_tile = (int32_t)per;
  return (int32_t)((n + per - 1) / per);
}

/* Output size and leading padding of one spatial dimension. */
void train_conv_geometry(int32_t in, int32_t kernel, int32_t stride, int32_t dilation,
                         kiln_padding padding, int32_t *out, int32_t *pad_before);

/* Floats of im2col scratch per thread and of partial sums a layer needs. */
size_t train_conv_scratch(const kiln_net *net, const train_layer *l);
size_t train_layer_partials(const kiln_net *net, const train_layer *l);
size_t train_conv_packed_bytes(const kiln_net *net, const train_layer *l);

/* Forward and backward of each layer kind (train/layers_*.c). n is the
 * batch; x/dx the input(s), y/dy the output. Backward accumulates into dx
 * (when dx is non-NULL) and overwrites parameter gradients. */
void train_conv_forward(kiln_net *net, const train_layer *l, int32_t n);
void train_conv_backward(kiln_net *net, const train_layer *l, int32_t n);
void train_dwconv_forward(kiln_net *net, const train_layer *l, int32_t n);
void train_dwconv_backward(kiln_net *net, const train_layer *l, int32_t n);
void train_dense_forward(kiln_net *net, const train_layer *l, int32_t n);
void train_dense_backward(kiln_net *net, const train_layer *l, int32_t n);
void train_bn_forward(kiln_net *net, train_layer *l, int32_t n, bool training);
void train_bn_backward(kiln_net *net, const train_layer *l, int32_t n);
void train_pool_forward(kiln_net *net, const train_layer *l, int32_t n);
void train_pool_backward(kiln_net *net, const train_layer *l, int32_t n);
void train_eltwise_forward(kiln_net *net, train_layer *l, int32_t n, bool training);
void train_eltwise_backward(kiln_net *net, const train_layer *l, int32_t n);

/* Pointers of a layer's tensors. */
static inline const train_layer *train_input(const kiln_net *net, const train_layer *l, int i) {
  return &net->layers[l->in[i]];
}
static inline int64_t train_size(const train_layer *l) { return (int64_t)l->h * l->w * l->c; }
static inline float *train_act(const kiln_net *net, const train_layer *l) {
  return net->acts + l->act_off;
}
static inline float *train_dact(const kiln_net *net, const train_layer *l) {
  return net->dacts + l->act_off;
}

/* Runs fn over n_tasks tasks on the net's pool (inline for one task). */
void train_parallel(kiln_net *net, kiln_task_fn fn, void *ctx, int32_t n_tasks);

/* Sums `tiles` partial vectors of `count` floats (tile t at
 * partials + t * stride) in tile order into out (overwriting), on the pool. */
void train_reduce_tiles(kiln_net *net, const float *partials, size_t stride, int32_t tiles,
                        int64_t count, float *out);

/* Row-major C[m x n] = alpha * op(A) * op(B) + beta * C (cblas_sgemm,
 * single-threaded: callers run it inside their tiles). */
void train_sgemm(bool trans_a, bool trans_b, int32_t m, int32_t n, int32_t k, float alpha,
                 const float *a, int32_t lda, const float *b, int32_t ldb, float beta, float *c,
                 int32_t ldc);

#endif
