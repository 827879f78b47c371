/*
 * Conv, depthwise conv and dense layers of the training engine, forward and
 * backward, and the scratch and partial-sum sizes they need.
 *
 * Conv (x [n, H, W, Ci], weights OHWI [Co, kh, kw, Ci], y [n, OH, OW, Co]),
 * K = kh * kw * Ci, R = OH * OW rows per sample, as GEMMs over tiles of
 * whole samples (train_sample_tiles, M = samples * R rows):
 *   forward  Y[M x Co]  = Xcol[M x K] * W^T            (+ bias)
 *   dW tile  P[Co x K]  = dY^T[Co x M] * Xcol[M x K]   summed over tiles in order
 *   dX       dXcol      = dY[M x Co] * W[Co x K], scattered back (col2im)
 * Xcol is the tile's im2col (row (oy, ox), column (ky, kx, ci), zeros in
 * padding) in the thread's scratch; a 1x1 stride-1 conv uses x itself.
 * With one of kiln's float GEMM micro-kernels (net->gemm) the forward runs
 * on it instead, reading windows through the runtime's indirection (no
 * im2col) with weights and bias packed once per forward: 5390 against 4550
 * images/s for a whole training step of the Fashion-MNIST net on one
 * AVX-512 core (bench/train/README.md).
 * Depthwise convs (weights [kh, kw, C * mult], output channel ci * mult + j)
 * run directly, vectorized over channels. Dense (x [n, I], weights [O, I])
 * is one GEMM per tile of output columns (forward, dW) or input columns
 * (dX). Every tile is a fixed function of the shapes and n, and partial
 * weight gradients are added in tile order: results do not depend on the
 * thread count.
 */
#include <math.h>
#include <string.h>

#include "kernels/cpu.h"
#include "kernels/f32_gemm.h"
#include "train/net_int.h"

#define DENSE_TILE_COLS 64

static bool pointwise(const train_layer *l) {
  return l->kh == 1 && l->kw == 1 && l->sh == 1 && l->sw == 1 && l->pad_t == 0 && l->pad_l == 0;
}

static int64_t conv_k(const kiln_net *net, const train_layer *l) {
  return (int64_t)l->kh * l->kw * train_input(net, l, 0)->c;
}

size_t train_conv_scratch(const kiln_net *net, const train_layer *l) {
  if (l->kind != KILN_LAYER_CONV) return 0;
  /* kiln's kernel: mr * ks run pointers and mr windows cut by padding. */
  const size_t indirect = (size_t)KILN_F32_GEMM_MAX_MR * (size_t)l->kh * l->kw * 2 +
                          (size_t)KILN_F32_GEMM_MAX_MR * (size_t)conv_k(net, l);
  if (pointwise(l)) return indirect;
  int32_t per_tile;
  train_sample_tiles(net->max_batch, (int64_t)l->h * l->w, &per_tile);
  const size_t col = (size_t)per_tile * (size_t)l->h * (size_t)l->w * (size_t)conv_k(net, l);
  return col > indirect ? col : indirect;
}

/* Floats of one tile's partial sums (weights then biases, or BN sums). */
static size_t partial_stride(const train_layer *l) {
  if (l->kind == KILN_LAYER_BATCHNORM) return ((size_t)l->c * 2 + 15) / 16 * 16;
  return ((size_t)(l->w_count + l->b_count) + 15) / 16 * 16;
}

/* Tiles of a BN's statistics: chunks of TRAIN_CHUNK_ROWS pixels. */
static int32_t bn_tiles(int64_t pixels) {
  return (int32_t)((pixels + TRAIN_CHUNK_ROWS - 1) / TRAIN_CHUNK_ROWS);
}

size_t train_layer_partials(const kiln_net *net, const train_layer *l) {
  int32_t per_tile;
  switch (l->kind) {
  case KILN_LAYER_CONV:
  case KILN_LAYER_DWCONV:
    return (size_t)train_sample_tiles(net->max_batch, (int64_t)l->h * l->w, &per_tile) *
           partial_stride(l);
  case KILN_LAYER_BATCHNORM:
    return (size_t)bn_tiles((int64_t)net->max_batch * l->h * l->w) * partial_stride(l);
  default:
    return 0;
  }
}

/* Adds the tiles' partial weight and bias gradients into the layer's
 * gradients (a tile holds w_count weights, then b_count biases). */
static void reduce_weight_tiles(kiln_net *net, const train_layer *l, int32_t tiles) {
  train_reduce_tiles(net, net->partials, partial_stride(l), tiles, l->w_count,
                     net->grads + l->w_off);
  if (l->b_count)
    train_reduce_tiles(net, net->partials + l->w_count, partial_stride(l), tiles, l->b_count,
                       net->grads + l->b_off);
}

/* ---- conv ---- */

typedef struct conv_job {
  kiln_net *net;
  const train_layer *l, *src;
  int32_t n, per_tile;
  int64_t k;
  bool want_dw, want_dx;
} conv_job;

/* im2col of samples [s0, s0 + count) into col [count * R x K]. */
static void im2col(const conv_job *j, const float *x, int32_t count, float *col) {
  const train_layer *l = j->l, *src = j->src;
  const int32_t ci = src->c;
  const size_t run = (size_t)ci * sizeof(float);
  for (int32_t s = 0; s < count; s++) {
    const float *xs = x + (size_t)s * (size_t)train_size(src);
    for (int32_t oy = 0; oy < l->h; oy++)
      for (int32_t ox = 0; ox < l->w; ox++) {
        float *row = col + ((size_t)(s * l->h + oy) * l->w + ox) * (size_t)j->k;
        for (int32_t ky = 0; ky < l->kh; ky++) {
          const int32_t iy = oy * l->sh - l->pad_t + ky * l->dh;
          for (int32_t kx = 0; kx < l->kw; kx++, row += ci) {
            const int32_t ix = ox * l->sw - l->pad_l + kx * l->dw;
            if (iy < 0 || iy >= src->h || ix < 0 || ix >= src->w) {
              memset(row, 0, run);
            } else {
              const float *p = xs + ((size_t)iy * src->w + ix) * ci;
              if (ci < 8)
                for (int32_t c = 0; c < ci; c++) row[c] = p[c];
              else
                memcpy(row, p, run);
            }
          }
        }
      }
  }
}

/* dx of samples [s0, s0 + count) += col2im(col). */
static void col2im_add(const conv_job *j, const float *col, int32_t count, float *dx) {
  const train_layer *l = j->l, *src = j->src;
  const int32_t ci = src->c;
  for (int32_t s = 0; s < count; s++) {
    float *dxs = dx + (size_t)s * (size_t)train_size(src);
    for (int32_t oy = 0; oy < l->h; oy++)
      for (int32_t ox = 0; ox < l->w; ox++) {
        const float *row = col + ((size_t)(s * l->h + oy) * l->w + ox) * (size_t)j->k;
        for (int32_t ky = 0; ky < l->kh; ky++) {
          const int32_t iy = oy * l->sh - l->pad_t + ky * l->dh;
          for (int32_t kx = 0; kx < l->kw; kx++, row += ci) {
            const int32_t ix = ox * l->sw - l->pad_l + kx * l->dw;
            if (iy < 0 || iy >= src->h || ix < 0 || ix >= src->w) continue;
            float *d = dxs + ((size_t)iy * src->w + ix) * ci;
            for (int32_t c = 0; c < ci; c++) d[c] += row[c];
          }
        }
      }
  }
}

/* The tile's samples: first and count. */
static int32_t tile_samples(const conv_job *j, int32_t task, int32_t *s0) {
  *s0 = task * j->per_tile;
  return j->n - *s0 < j->per_tile ? j->n - *s0 : j->per_tile;
}

/* The conv's geometry as the runtime's kernels take it. */
static kiln_conv_params conv_params(const train_layer *l, const train_layer *src, int32_t n) {
  kiln_conv_params p;
  memset(&p, 0, sizeof p);
  p.batch = n;
  p.in_h = src->h;
  p.in_w = src->w;
  p.in_c = src->c;
  p.out_h = l->h;
  p.out_w = l->w;
  p.out_c = l->c;
  p.filter_h = l->kh;
  p.filter_w = l->kw;
  p.groups = 1;
  p.stride_h = l->sh;
  p.stride_w = l->sw;
  p.dilation_h = l->dh;
  p.dilation_w = l->dw;
  p.pad_h = l->pad_t;
  p.pad_w = l->pad_l;
  return p;
}

/* Forward on kiln's GEMM micro-kernel (kernels/f32_gemm.h): the windows are
 * read through an indirection (no im2col), the weights packed once per
 * forward with the bias. Each output row's sum is the kernel's, whatever
 * the grouping, so tiles do not change results. */
static void conv_forward_kiln_task(void *ctx, int32_t task, int32_t thread) {
  const conv_job *j = ctx;
  const train_layer *l = j->l, *src = j->src;
  kiln_net *net = j->net;
  const kiln_f32_gemm_kernel *kern = net->gemm;
  int32_t s0;
  const int32_t count = tile_samples(j, task, &s0);
  const int64_t rows_per = (int64_t)l->h * l->w;
  const int64_t m_begin = (int64_t)s0 * rows_per, m_end = m_begin + count * rows_per;
  const float *x = train_act(net, src);
  float *y = train_act(net, l);
  const int32_t run_taps = l->dw == 1 ? l->kw : 1;
  const int32_t kc = pointwise(l) ? (int32_t)j->k : run_taps * src->c;
  const int32_t ks = (int32_t)(j->k / kc);
  char *scratch = (char *)(net->scratch + (size_t)thread * net->scratch_per_thread);
  const float **a = (const float **)(void *)scratch;
  float *edge = (float *)(void *)(scratch + KILN_F32_GEMM_MAX_MR * (size_t)ks * sizeof(float *));
  const kiln_conv_params p = conv_params(l, src, j->n);
  for (int64_t m0 = m_begin; m0 < m_end; m0 += kern->mr) {
    const int32_t rows = (int32_t)(m_end - m0 < kern->mr ? m_end - m0 : kern->mr);
    if (pointwise(l))
      for (int32_t r = 0; r < rows; r++) a[r] = x + (size_t)(m0 + r) * (size_t)j->k;
    else
      kiln_f32_conv_indirection(&p, run_taps, x, net->zeros, edge, m0, rows, a);
    kern->fn(rows, l->c, kc, ks, a, net->packed, y + (size_t)m0 * l->c, (size_t)l->c, -INFINITY,
             INFINITY);
  }
}

static void conv_forward_task(void *ctx, int32_t task, int32_t thread) {
  const conv_job *j = ctx;
  const train_layer *l = j->l, *src = j->src;
  kiln_net *net = j->net;
  int32_t s0;
  const int32_t count = tile_samples(j, task, &s0);
  const int32_t rows = count * l->h * l->w, co = l->c;
  const float *x = train_act(net, src) + (size_t)s0 * (size_t)train_size(src);
  float *y = train_act(net, l) + (size_t)s0 * (size_t)train_size(l);
  const float *col = x;
  if (!pointwise(l)) {
    float *scratch = net->scratch + (size_t)thread * net->scratch_per_thread;
    im2col(j, x, count, scratch);
    col = scratch;
  }
  train_sgemm(false, true, rows, co, (int32_t)j->k, 1.0f, col, (int32_t)j->k,
              net->params + l->w_off, (int32_t)j->k, 0.0f, y, co);
  if (l->has_bias) {
    const float *b = net->params + l->b_off;
    for (int32_t r = 0; r < rows; r++)
      for (int32_t c = 0; c < co; c++) y[(size_t)r * co + c] += b[c];
  }
}

void train_conv_forward(kiln_net *net, const train_layer *l, int32_t n) {
  conv_job j = {net, l, train_input(net, l, 0), n, 0, conv_k(net, l), false, false};
  int32_t tiles = train_sample_tiles(n, (int64_t)l->h * l->w, &j.per_tile);
  if (net->gemm) {
    kiln_f32_gemm_pack(net->gemm, l->c, (int32_t)j.k, net->params + l->w_off,
                       l->has_bias ? net->params + l->b_off : NULL, false, net->packed);
    train_parallel(net, conv_forward_kiln_task, &j, tiles);
  } else {
    train_parallel(net, conv_forward_task, &j, tiles);
  }
}

size_t train_conv_packed_bytes(const kiln_net *net, const train_layer *l) {
  if (l->kind != KILN_LAYER_CONV || !net->gemm) return 0;
  return kiln_f32_gemm_packed_bytes(net->gemm, l->c, (int32_t)conv_k(net, l), false);
}

static void conv_backward_task(void *ctx, int32_t task, int32_t thread) {
  const conv_job *j = ctx;
  const train_layer *l = j->l, *src = j->src;
  kiln_net *net = j->net;
  int32_t s0;
  const int32_t count = tile_samples(j, task, &s0);
  const int32_t rows = count * l->h * l->w, co = l->c, k = (int32_t)j->k;
  const float *x = train_act(net, src) + (size_t)s0 * (size_t)train_size(src);
  const float *dy = train_dact(net, l) + (size_t)s0 * (size_t)train_size(l);
  const float *w = net->params + l->w_off;
  float *scratch = net->scratch + (size_t)thread * net->scratch_per_thread;
  if (j->want_dw) {
    const float *col = x;
    if (!pointwise(l)) {
      im2col(j, x, count, scratch);
      col = scratch;
    }
    float *part = net->partials + (size_t)task * partial_stride(l);
    train_sgemm(true, false, co, k, rows, 1.0f, dy, co, col, k, 0.0f, part, k);
    if (l->has_bias) {
      float *db = part + (size_t)co * k;
      memset(db, 0, (size_t)co * sizeof(float));
      for (int32_t r = 0; r < rows; r++)
        for (int32_t c = 0; c < co; c++) db[c] += dy[(size_t)r * co + c];
    }
  }
  if (j->want_dx) {
    float *dx = train_dact(net, src) + (size_t)s0 * (size_t)train_size(src);
    if (pointwise(l)) {
      train_sgemm(false, false, rows, k, co, 1.0f, dy, co, w, k, 1.0f, dx, k);
    } else {
      train_sgemm(false, false, rows, k, co, 1.0f, dy, co, w, k, 0.0f, scratch, k);
      col2im_add(j, scratch, count, dx);
    }
  }
}

void train_conv_backward(kiln_net *net, const train_layer *l, int32_t n) {
  const train_layer *src = train_input(net, l, 0);
  conv_job j = {net, l, src, n, 0, conv_k(net, l), l->trainable, src->needs_grad};
  if (!j.want_dw && !j.want_dx) return;
  int32_t tiles = train_sample_tiles(n, (int64_t)l->h * l->w, &j.per_tile);
  train_parallel(net, conv_backward_task, &j, tiles);
  if (j.want_dw) reduce_weight_tiles(net, l, tiles);
}

/* ---- depthwise conv ---- */

static void dw_forward_task(void *ctx, int32_t task, int32_t thread) {
  (void)thread;
  const conv_job *j = ctx;
  const train_layer *l = j->l, *src = j->src;
  kiln_net *net = j->net;
  int32_t s0;
  const int32_t count = tile_samples(j, task, &s0);
  const int32_t ci = src->c, co = l->c, mult = l->mult;
  const float *w = net->params + l->w_off;
  const float *b = l->has_bias ? net->params + l->b_off : NULL;
  for (int32_t s = s0; s < s0 + count; s++) {
    const float *x = train_act(net, src) + (size_t)s * (size_t)train_size(src);
    float *y = train_act(net, l) + (size_t)s * (size_t)train_size(l);
    for (int32_t oy = 0; oy < l->h; oy++)
      for (int32_t ox = 0; ox < l->w; ox++) {
        float *o = y + ((size_t)oy * l->w + ox) * co;
        for (int32_t c = 0; c < co; c++) o[c] = b ? b[c] : 0.0f;
        for (int32_t ky = 0; ky < l->kh; ky++) {
          const int32_t iy = oy * l->sh - l->pad_t + ky * l->dh;
          if (iy < 0 || iy >= src->h) continue;
          for (int32_t kx = 0; kx < l->kw; kx++) {
            const int32_t ix = ox * l->sw - l->pad_l + kx * l->dw;
            if (ix < 0 || ix >= src->w) continue;
            const float *xp = x + ((size_t)iy * src->w + ix) * ci;
            const float *wp = w + ((size_t)ky * l->kw + kx) * co;
            if (mult == 1) {
              for (int32_t c = 0; c < co; c++) o[c] += xp[c] * wp[c];
            } else {
              for (int32_t c = 0; c < ci; c++)
                for (int32_t m = 0; m < mult; m++) o[c * mult + m] += xp[c] * wp[c * mult + m];
            }
          }
        }
      }
  }
}

void train_dwconv_forward(kiln_net *net, const train_layer *l, int32_t n) {
  conv_job j = {net, l, train_input(net, l, 0), n, 0, 0, false, false};
  int32_t tiles = train_sample_tiles(n, (int64_t)l->h * l->w, &j.per_tile);
  train_parallel(net, dw_forward_task, &j, tiles);
}

static void dw_backward_task(void *ctx, int32_t task, int32_t thread) {
  (void)thread;
  const conv_job *j = ctx;
  const train_layer *l = j->l, *src = j->src;
  kiln_net *net = j->net;
  int32_t s0;
  const int32_t count = tile_samples(j, task, &s0);
  const int32_t ci = src->c, co = l->c, mult = l->mult;
  const float *w = net->params + l->w_off;
  float *part = net->partials + (size_t)task * partial_stride(l);
  float *db = j->want_dw && l->has_bias ? part + l->w_count : NULL;
  if (j->want_dw) memset(part, 0, (size_t)(l->w_count + l->b_count) * sizeof(float));
  for (int32_t s = s0; s < s0 + count; s++) {
    const float *x = train_act(net, src) + (size_t)s * (size_t)train_size(src);
    float *dx = j->want_dx ? train_dact(net, src) + (size_t)s * (size_t)train_size(src) : NULL;
    const float *dy = train_dact(net, l) + (size_t)s * (size_t)train_size(l);
    for (int32_t oy = 0; oy < l->h; oy++)
      for (int32_t ox = 0; ox < l->w; ox++) {
        const float *g = dy + ((size_t)oy * l->w + ox) * co;
        if (db)
          for (int32_t c = 0; c < co; c++) db[c] += g[c];
        for (int32_t ky = 0; ky < l->kh; ky++) {
          const int32_t iy = oy * l->sh - l->pad_t + ky * l->dh;
          if (iy < 0 || iy >= src->h) continue;
          for (int32_t kx = 0; kx < l->kw; kx++) {
            const int32_t ix = ox * l->sw - l->pad_l + kx * l->dw;
            if (ix < 0 || ix >= src->w) continue;
            const size_t in_at = ((size_t)iy * src->w + ix) * ci;
            const size_t tap = ((size_t)ky * l->kw + kx) * co;
            const float *xp = x + in_at;
            if (j->want_dw) {
              float *dw = part + tap;
              for (int32_t c = 0; c < ci; c++)
                for (int32_t m = 0; m < mult; m++) dw[c * mult + m] += xp[c] * g[c * mult + m];
            }
            if (dx) {
              const float *wp = w + tap;
              float *d = dx + in_at;
              for (int32_t c = 0; c < ci; c++)
                for (int32_t m = 0; m < mult; m++) d[c] += g[c * mult + m] * wp[c * mult + m];
            }
          }
        }
      }
  }
}

void train_dwconv_backward(kiln_net *net, const train_layer *l, int32_t n) {
  const train_layer *src = train_input(net, l, 0);
  conv_job j = {net, l, src, n, 0, 0, l->trainable, src->needs_grad};
  if (!j.want_dw && !j.want_dx) return;
  int32_t tiles = train_sample_tiles(n, (int64_t)l->h * l->w, &j.per_tile);
  train_parallel(net, dw_backward_task, &j, tiles);
  if (j.want_dw) reduce_weight_tiles(net, l, tiles);
}

/* ---- dense ---- */

typedef struct dense_job {
  kiln_net *net;
  const train_layer *l, *src;
  int32_t n, in_f;
} dense_job;

static void dense_forward_task(void *ctx, int32_t task, int32_t thread) {
  (void)thread;
  const dense_job *j = ctx;
  const train_layer *l = j->l;
  kiln_net *net = j->net;
  const int32_t o0 = task * DENSE_TILE_COLS;
  const int32_t cols = l->c - o0 < DENSE_TILE_COLS ? l->c - o0 : DENSE_TILE_COLS;
  const float *x = train_act(net, j->src);
  float *y = train_act(net, l);
  train_sgemm(false, true, j->n, cols, j->in_f, 1.0f, x, j->in_f,
              net->params + l->w_off + (size_t)o0 * j->in_f, j->in_f, 0.0f, y + o0, l->c);
  if (l->has_bias) {
    const float *b = net->params + l->b_off + o0;
    for (int32_t r = 0; r < j->n; r++)
      for (int32_t c = 0; c < cols; c++) y[(size_t)r * l->c + o0 + c] += b[c];
  }
}

static int32_t col_tiles(int32_t cols) { return (cols + DENSE_TILE_COLS - 1) / DENSE_TILE_COLS; }

void train_dense_forward(kiln_net *net, const train_layer *l, int32_t n) {
  const train_layer *src = train_input(net, l, 0);
  dense_job j = {net, l, src, n, (int32_t)train_size(src)};
  train_parallel(net, dense_forward_task, &j, col_tiles(l->c));
}

/* Tasks [0, out_tiles): dW and db of a tile of output units; then tiles of
 * input columns for dX. */
typedef struct dense_back_job {
  dense_job d;
  int32_t out_tiles; /* 0 when the layer is frozen */
} dense_back_job;

static void dense_backward_task(void *ctx, int32_t task, int32_t thread) {
  (void)thread;
  const dense_back_job *bj = ctx;
  const dense_job *j = &bj->d;
  const train_layer *l = j->l;
  kiln_net *net = j->net;
  const float *dy = train_dact(net, l);
  const int32_t in_f = j->in_f, out_f = l->c;
  if (task < bj->out_tiles) {
    const int32_t o0 = task * DENSE_TILE_COLS;
    const int32_t cols = out_f - o0 < DENSE_TILE_COLS ? out_f - o0 : DENSE_TILE_COLS;
    train_sgemm(true, false, cols, in_f, j->n, 1.0f, dy + o0, out_f, train_act(net, j->src),
                in_f, 0.0f, net->grads + l->w_off + (size_t)o0 * in_f, in_f);
    if (l->has_bias) {
      float *db = net->grads + l->b_off + o0;
      for (int32_t c = 0; c < cols; c++) db[c] = 0.0f;
      for (int32_t r = 0; r < j->n; r++)
        for (int32_t c = 0; c < cols; c++) db[c] += dy[(size_t)r * out_f + o0 + c];
    }
    return;
  }
  const int32_t i0 = (task - bj->out_tiles) * DENSE_TILE_COLS;
  const int32_t cols = in_f - i0 < DENSE_TILE_COLS ? in_f - i0 : DENSE_TILE_COLS;
  train_sgemm(false, false, j->n, cols, out_f, 1.0f, dy, out_f, net->params + l->w_off + i0, in_f,
              1.0f, train_dact(net, j->src) + i0, in_f);
}

void train_dense_backward(kiln_net *net, const train_layer *l, int32_t n) {
  const train_layer *src = train_input(net, l, 0);
  dense_back_job j = {{net, l, src, n, (int32_t)train_size(src)}, 0};
  j.out_tiles = l->trainable ? col_tiles(l->c) : 0;
  const int32_t in_tiles = src->needs_grad ? col_tiles(j.d.in_f) : 0;
  train_parallel(net, dense_backward_task, &j, j.out_tiles + in_tiles);
}
