/*
 * Batch norm, pooling and elementwise layers of the training engine
 * (activations, dropout, add, reshape), forward and backward.
 *
 * Batch norm statistics are sums over N*H*W pixels per channel: each tile of
 * TRAIN_CHUNK_ROWS pixels sums in float, and the tiles are added in tile
 * order in double. Pools and global pooling run per tile of whole samples;
 * elementwise layers per fixed span of values. Max pooling records each
 * output's winning tap (the first maximum in window order) for backward.
 * Dropout masks are a hash of (seed, training forward counter, value index),
 * so they need no storage and do not depend on the thread count.
 */
#include <math.h>
#include <string.h>

#include "train/net_int.h"

#define SPAN 16384

/* ---- batch norm ---- */

typedef struct bn_job {
  kiln_net *net;
  const train_layer *l;
  const float *x, *dy;
  float *y, *dx;
  int64_t rows;
  const float *mean, *invstd; /* [c] */
  const float *gamma, *beta;
  int pass; /* statistics: 0 sum x, 1 sum (x - mean)^2, 2 sum dy and dy * xhat */
  double k1, k2; /* backward: 1 / rows */
} bn_job;

static void bn_rows(const bn_job *j, int32_t task, int64_t *r0, int64_t *r1) {
  *r0 = (int64_t)task * TRAIN_CHUNK_ROWS;
  *r1 = *r0 + TRAIN_CHUNK_ROWS < j->rows ? *r0 + TRAIN_CHUNK_ROWS : j->rows;
}

static void bn_stat_task(void *ctx, int32_t task, int32_t thread) {
  (void)thread;
  const bn_job *j = ctx;
  const int32_t c = j->l->c;
  int64_t r0, r1;
  bn_rows(j, task, &r0, &r1);
  float *a = j->net->partials + (size_t)task * (((size_t)c * 2 + 15) / 16 * 16);
  float *b = a + c;
  memset(a, 0, 2 * (size_t)c * sizeof(float));
  for (int64_t r = r0; r < r1; r++) {
    const float *x = j->x + (size_t)r * c;
    if (j->pass == 0) {
      for (int32_t i = 0; i < c; i++) a[i] += x[i];
    } else if (j->pass == 1) {
      for (int32_t i = 0; i < c; i++) {
        const float d = x[i] - j->mean[i];
        a[i] += d * d;
      }
    } else {
      const float *g = j->dy + (size_t)r * c;
      for (int32_t i = 0; i < c; i++) {
        a[i] += g[i];
        b[i] += g[i] * (x[i] - j->mean[i]) * j->invstd[i];
      }
    }
  }
}

/* Runs a statistics pass and adds the tiles in order into sum_a, sum_b. */
static void bn_stats(bn_job *j, int pass, double *sum_a, double *sum_b) {
  const int32_t c = j->l->c;
  const int32_t tiles = (int32_t)((j->rows + TRAIN_CHUNK_ROWS - 1) / TRAIN_CHUNK_ROWS);
  const size_t stride = ((size_t)c * 2 + 15) / 16 * 16;
  j->pass = pass;
  train_parallel(j->net, bn_stat_task, j, tiles);
  for (int32_t i = 0; i < c; i++) sum_a[i] = sum_b[i] = 0.0;
  for (int32_t t = 0; t < tiles; t++) {
    const float *a = j->net->partials + (size_t)t * stride;
    for (int32_t i = 0; i < c; i++) {
      sum_a[i] += a[i];
      sum_b[i] += a[c + i];
    }
  }
}

static void bn_apply_task(void *ctx, int32_t task, int32_t thread) {
  (void)thread;
  const bn_job *j = ctx;
  const int32_t c = j->l->c;
  int64_t r0, r1;
  bn_rows(j, task, &r0, &r1);
  for (int64_t r = r0; r < r1; r++) {
    const float *x = j->x + (size_t)r * c;
    float *y = j->y + (size_t)r * c;
    for (int32_t i = 0; i < c; i++)
      y[i] = (x[i] - j->mean[i]) * j->invstd[i] * j->gamma[i] + j->beta[i];
  }
}

void train_bn_forward(kiln_net *net, train_layer *l, int32_t n, bool training) {
  const int32_t c = l->c;
  float *mean = net->acts + l->stat_off, *invstd = mean + c;
  float *run_mean = net->state + l->mean_off, *run_var = net->state + l->var_off;
  bn_job j = {net, l, train_act(net, train_input(net, l, 0)), NULL, train_act(net, l), NULL,
              (int64_t)n * l->h * l->w, mean, invstd, net->params + l->w_off,
              net->params + l->b_off, 0, 0.0, 0.0};
  l->bn_batch_stats = training && l->trainable;
  if (l->bn_batch_stats) {
    double *s1 = net->bn_sums, *s2 = s1 + c;
    const double m = (double)j.rows;
    bn_stats(&j, 0, s1, s2);
    for (int32_t i = 0; i < c; i++) mean[i] = (float)(s1[i] / m);
    bn_stats(&j, 1, s1, s2);
    const float mom = l->momentum;
    for (int32_t i = 0; i < c; i++) {
      const double var = s1[i] / m;
      invstd[i] = (float)(1.0 / sqrt(var + l->eps));
      const double unbiased = j.rows > 1 ? s1[i] / (m - 1.0) : var;
      run_mean[i] = (1.0f - mom) * run_mean[i] + mom * mean[i];
      run_var[i] = (1.0f - mom) * run_var[i] + mom * (float)unbiased;
    }
  }
  if (!l->bn_batch_stats) {
    for (int32_t i = 0; i < c; i++) {
      mean[i] = run_mean[i];
      invstd[i] = (float)(1.0 / sqrt((double)run_var[i] + l->eps));
    }
  }
  train_parallel(net, bn_apply_task, &j, (int32_t)((j.rows + TRAIN_CHUNK_ROWS - 1) / TRAIN_CHUNK_ROWS));
}

/* dx += gamma * invstd * (dy - k1 * sum_dy - xhat * k2 * sum_dy_xhat),
 * k1 = k2 = 1 / rows with batch statistics, 0 with running ones. */
typedef struct bn_back_job {
  bn_job b;
  const float *sum_dy, *sum_dyx; /* [c] as float */
} bn_back_job;

static void bn_dx_task(void *ctx, int32_t task, int32_t thread) {
  (void)thread;
  const bn_back_job *bj = ctx;
  const bn_job *j = &bj->b;
  const int32_t c = j->l->c;
  int64_t r0, r1;
  bn_rows(j, task, &r0, &r1);
  for (int64_t r = r0; r < r1; r++) {
    const float *x = j->x + (size_t)r * c, *g = j->dy + (size_t)r * c;
    float *d = j->dx + (size_t)r * c;
    for (int32_t i = 0; i < c; i++) {
      const float xhat = (x[i] - j->mean[i]) * j->invstd[i];
      d[i] += j->gamma[i] * j->invstd[i] *
              (g[i] - (float)j->k1 * bj->sum_dy[i] - xhat * (float)j->k2 * bj->sum_dyx[i]);
    }
  }
}

void train_bn_backward(kiln_net *net, const train_layer *l, int32_t n) {
  const int32_t c = l->c;
  const train_layer *src = train_input(net, l, 0);
  float *mean = net->acts + l->stat_off;
  bn_back_job bj = {{net, l, train_act(net, src), train_dact(net, l), NULL,
                     src->needs_grad ? train_dact(net, src) : NULL, (int64_t)n * l->h * l->w,
                     mean, mean + c, net->params + l->w_off, net->params + l->b_off, 0, 0.0, 0.0},
                    NULL, NULL};
  bn_job *j = &bj.b;
  const int32_t tiles = (int32_t)((j->rows + TRAIN_CHUNK_ROWS - 1) / TRAIN_CHUNK_ROWS);
  if (!l->bn_batch_stats) {
    /* Frozen: statistics are constants, gamma and beta get no gradient. */
    if (!j->dx) return;
    bj.sum_dy = bj.sum_dyx = mean; /* any finite values: k1 = k2 = 0 */
    train_parallel(net, bn_dx_task, &bj, tiles);
    return;
  }
  double *s1 = net->bn_sums, *s2 = s1 + c;
  bn_stats(j, 2, s1, s2);
  float *dgamma = net->grads + l->w_off, *dbeta = net->grads + l->b_off;
  for (int32_t i = 0; i < c; i++) {
    dbeta[i] = (float)s1[i];
    dgamma[i] = (float)s2[i];
  }
  if (!j->dx) return;
  j->k1 = j->k2 = 1.0 / (double)j->rows;
  bj.sum_dy = dbeta;
  bj.sum_dyx = dgamma;
  train_parallel(net, bn_dx_task, &bj, tiles);
}

/* ---- pooling ---- */

typedef struct pool_job {
  kiln_net *net;
  const train_layer *l, *src;
  int32_t n, per_tile;
  bool backward;
} pool_job;

/* Window of output (oy, ox): valid tap ranges [y0, y1) x [x0, x1). */
static void window(const train_layer *l, const train_layer *src, int32_t oy, int32_t ox,
                   int32_t *y0, int32_t *y1, int32_t *x0, int32_t *x1) {
  const int32_t iy = oy * l->sh - l->pad_t, ix = ox * l->sw - l->pad_l;
  *y0 = iy < 0 ? 0 : iy;
  *y1 = iy + l->kh < src->h ? iy + l->kh : src->h;
  *x0 = ix < 0 ? 0 : ix;
  *x1 = ix + l->kw < src->w ? ix + l->kw : src->w;
}

/* best, tap [c]: a window's running maximum and the index of its first
 * tap (as a float, so the select vectorizes with the comparison), updated
 * with tap t's values xk [c]. */
static void max_update(const float *restrict xk, float t, float *restrict best,
                       float *restrict tap, int32_t c) {
  for (int32_t i = 0; i < c; i++) {
    const float v = xk[i], b = best[i], old = tap[i];
    const bool more = isgreater(v, b); /* quiet compare: if-converted, vectorized */
    best[i] = more ? v : b;
    tap[i] = more ? t : old;
  }
}

static void pool_sample(const pool_job *j, int32_t s) {
  const train_layer *l = j->l, *src = j->src;
  kiln_net *net = j->net;
  const int32_t c = l->c;
  const float *x = train_act(net, src) + (size_t)s * (size_t)train_size(src);
  float *y = train_act(net, l) + (size_t)s * (size_t)train_size(l);
  float *dx = train_dact(net, src) + (size_t)s * (size_t)train_size(src);
  const float *dy = train_dact(net, l) + (size_t)s * (size_t)train_size(l);
  if (l->kind == KILN_LAYER_GLOBAL_AVGPOOL) {
    const int32_t px = src->h * src->w;
    const float inv = 1.0f / (float)px;
    if (j->backward) {
      for (int32_t p = 0; p < px; p++)
        for (int32_t i = 0; i < c; i++) dx[(size_t)p * c + i] += dy[i] * inv;
    } else {
      for (int32_t i = 0; i < c; i++) y[i] = 0.0f;
      for (int32_t p = 0; p < px; p++)
        for (int32_t i = 0; i < c; i++) y[i] += x[(size_t)p * c + i];
      for (int32_t i = 0; i < c; i++) y[i] *= inv;
    }
    return;
  }
  if (l->kind == KILN_LAYER_MAXPOOL) {
    /* taps [h * w * c]: the winning tap of each output (row-major in its
     * clipped window). */
    float *taps = net->acts + l->stat_off + (size_t)s * (size_t)train_size(l);
    for (int32_t oy = 0; oy < l->h; oy++)
      for (int32_t ox = 0; ox < l->w; ox++) {
        int32_t y0, y1, x0, x1;
        window(l, src, oy, ox, &y0, &y1, &x0, &x1);
        const size_t at = ((size_t)oy * l->w + ox) * c;
        const int32_t ww = x1 - x0;
        if (j->backward) {
          for (int32_t i = 0; i < c; i++) {
            const int32_t t = (int32_t)taps[at + i];
            dx[((size_t)(y0 + t / ww) * src->w + (x0 + t % ww)) * c + i] += dy[at + i];
          }
          continue;
        }
        memcpy(y + at, x + ((size_t)y0 * src->w + x0) * c, (size_t)c * sizeof(float));
        memset(taps + at, 0, (size_t)c * sizeof(float));
        int32_t t = 0;
        for (int32_t iy = y0; iy < y1; iy++)
          for (int32_t ix = x0; ix < x1; ix++, t++)
            if (t) max_update(x + ((size_t)iy * src->w + ix) * c, (float)t, y + at, taps + at, c);
      }
    return;
  }
  for (int32_t oy = 0; oy < l->h; oy++)
    for (int32_t ox = 0; ox < l->w; ox++) {
      int32_t y0, y1, x0, x1;
      window(l, src, oy, ox, &y0, &y1, &x0, &x1);
      const size_t at = ((size_t)oy * l->w + ox) * c;
      const float inv = 1.0f / (float)((y1 - y0) * (x1 - x0));
      if (!j->backward)
        for (int32_t i = 0; i < c; i++) y[at + i] = 0.0f;
      for (int32_t iy = y0; iy < y1; iy++)
        for (int32_t ix = x0; ix < x1; ix++) {
          const size_t k = ((size_t)iy * src->w + ix) * c;
          if (j->backward)
            for (int32_t i = 0; i < c; i++) dx[k + i] += dy[at + i] * inv;
          else
            for (int32_t i = 0; i < c; i++) y[at + i] += x[k + i];
        }
      if (!j->backward)
        for (int32_t i = 0; i < c; i++) y[at + i] *= inv;
    }
}

static void pool_task(void *ctx, int32_t task, int32_t thread) {
  (void)thread;
  const pool_job *j = ctx;
  const int32_t s0 = task * j->per_tile;
  const int32_t s1 = s0 + j->per_tile < j->n ? s0 + j->per_tile : j->n;
  for (int32_t s = s0; s < s1; s++) pool_sample(j, s);
}

static void pool_run(kiln_net *net, const train_layer *l, int32_t n, bool backward) {
  pool_job j = {net, l, train_input(net, l, 0), n, 0, backward};
  const int32_t tiles = train_sample_tiles(n, train_size(j.src) / (j.src->c > 0 ? j.src->c : 1),
                                           &j.per_tile);
  train_parallel(net, pool_task, &j, tiles);
}

void train_pool_forward(kiln_net *net, const train_layer *l, int32_t n) {
  pool_run(net, l, n, false);
}

void train_pool_backward(kiln_net *net, const train_layer *l, int32_t n) {
  if (train_input(net, l, 0)->needs_grad) pool_run(net, l, n, true);
}

/* ---- elementwise ---- */

typedef struct elt_job {
  kiln_net *net;
  const train_layer *l;
  int64_t count;
  bool training, backward;
  float keep; /* dropout */
} elt_job;

/* Dropout keeps value `index` of training forward `seq` when this is true. */
static bool dropout_keep(uint64_t seed, uint64_t seq, uint64_t index, float keep) {
  uint64_t z = seed ^ (seq * 0x9E3779B97F4A7C15ull) ^ (index * 0xD1B54A32D192ED03ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return (float)(z >> 40) * (1.0f / 16777216.0f) < keep;
}

static void relu_fwd(const float *restrict x, float *restrict y, int64_t n, float cap) {
  for (int64_t i = 0; i < n; i++) {
    const float v = x[i] > 0.0f ? x[i] : 0.0f;
    y[i] = v < cap ? v : cap;
  }
}

static void relu_bwd(const float *restrict x, const float *restrict dy, float *restrict dx,
                     int64_t n, float cap) {
  for (int64_t i = 0; i < n; i++) {
    const float v = x[i], g = dy[i]; /* both loaded: the select vectorizes */
    dx[i] += ((v > 0.0f) & (v < cap)) != 0 ? g : 0.0f;
  }
}

static void hswish_fwd(const float *restrict x, float *restrict y, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    const float r = x[i] + 3.0f;
    const float c = r < 0.0f ? 0.0f : (r > 6.0f ? 6.0f : r);
    y[i] = x[i] * c * (1.0f / 6.0f);
  }
}

static void hswish_bwd(const float *restrict x, const float *restrict dy, float *restrict dx,
                       int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    const float v = x[i];
    const float d = v <= -3.0f ? 0.0f : v >= 3.0f ? 1.0f : (2.0f * v + 3.0f) * (1.0f / 6.0f);
    dx[i] += dy[i] * d;
  }
}

static void add_to(const float *restrict a, float *restrict out, int64_t n) {
  for (int64_t i = 0; i < n; i++) out[i] += a[i];
}

static void elt_task(void *ctx, int32_t task, int32_t thread) {
  (void)thread;
  const elt_job *j = ctx;
  const train_layer *l = j->l;
  kiln_net *net = j->net;
  const int64_t i0 = (int64_t)task * SPAN, i1 = i0 + SPAN < j->count ? i0 + SPAN : j->count;
  const int64_t n = i1 - i0;
  const train_layer *a = train_input(net, l, 0);
  const float *x = train_act(net, a) + i0;
  float *y = train_act(net, l) + i0;
  const float *dy = train_dact(net, l) + i0;
  float *dx = train_dact(net, a) + i0;
  if (j->backward && !a->needs_grad && l->kind != KILN_LAYER_ADD) return;
  switch (l->kind) {
  case KILN_LAYER_RELU:
  case KILN_LAYER_RELU6: {
    const float cap = l->kind == KILN_LAYER_RELU ? INFINITY : 6.0f;
    if (j->backward)
      relu_bwd(x, dy, dx, n, cap);
    else
      relu_fwd(x, y, n, cap);
    break;
  }
  case KILN_LAYER_HSWISH:
    if (j->backward)
      hswish_bwd(x, dy, dx, n);
    else
      hswish_fwd(x, y, n);
    break;
  case KILN_LAYER_DROPOUT:
    if (!j->training && !j->backward) {
      memcpy(y, x, (size_t)n * sizeof(float));
      break;
    }
    for (int64_t i = 0; i < n; i++) {
      const bool keep = dropout_keep(net->seed, l->dropout_seq, (uint64_t)(i0 + i), j->keep);
      const float m = keep ? 1.0f / j->keep : 0.0f;
      if (j->backward)
        dx[i] += dy[i] * m;
      else
        y[i] = x[i] * m;
    }
    break;
  case KILN_LAYER_ADD: {
    const train_layer *b = train_input(net, l, 1);
    if (!j->backward) {
      const float *xb = train_act(net, b) + i0;
      for (int64_t i = 0; i < n; i++) y[i] = x[i] + xb[i];
      break;
    }
    if (a->needs_grad) add_to(dy, dx, n);
    if (b->needs_grad) add_to(dy, train_dact(net, b) + i0, n);
    break;
  }
  default: /* reshape */
    if (j->backward)
      add_to(dy, dx, n);
    else
      memcpy(y, x, (size_t)n * sizeof(float));
    break;
  }
}

static void elt_run(kiln_net *net, const train_layer *l, int32_t n, bool training, bool backward) {
  elt_job j = {net, l, (int64_t)n * train_size(l), training, backward, 1.0f - l->rate};
  train_parallel(net, elt_task, &j, (int32_t)((j.count + SPAN - 1) / SPAN));
}

void train_eltwise_forward(kiln_net *net, train_layer *l, int32_t n, bool training) {
  if (l->kind == KILN_LAYER_DROPOUT && training) l->dropout_seq = net->dropout_counter;
  elt_run(net, l, n, training, false);
}

void train_eltwise_backward(kiln_net *net, const train_layer *l, int32_t n) {
  elt_run(net, l, n, true, true);
}
