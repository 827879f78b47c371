/*
 * kernels/ref/pool_ref.c: reference AVERAGE_POOL_2D, MAX_POOL_2D and MEAN
 * (see pool_ref.h for the contracts). The loops follow TFLite's reference
 * kernels so float sums accumulate in the same order.
 */
#include "kernels/ref/pool_ref.h"

#include <float.h>
#include <math.h>
#include <stddef.h>

#include "kernels/quant_math.h"

#define MEAN_MAX_RANK 6

int32_t kiln_pool_out_size(bool same_padding, int32_t in, int32_t filter, int32_t stride) {
  if (same_padding) return (in + stride - 1) / stride;
  return (in + stride - filter) / stride;
}

int32_t kiln_pool_padding(int32_t in, int32_t filter, int32_t stride, int32_t out) {
  int32_t total = (out - 1) * stride + filter - in;
  return total > 0 ? total / 2 : 0;
}

/* The window of output (oy, ox) clipped to the input: filter rows
 * [*fy0, *fy1) and columns [*fx0, *fx1) starting at input (*iy, *ix). */
typedef struct window {
  int32_t iy, ix;   /* input coordinates of filter cell (0, 0) */
  int32_t fy0, fy1; /* filter rows inside the input */
  int32_t fx0, fx1; /* filter columns inside the input */
} window;

static window pool_window(const kiln_pool_params *p, int32_t in_h, int32_t in_w, int32_t oy,
                          int32_t ox) {
  window w;
  w.iy = oy * p->stride_h - p->pad_h;
  w.ix = ox * p->stride_w - p->pad_w;
  w.fy0 = w.iy < 0 ? -w.iy : 0;
  w.fx0 = w.ix < 0 ? -w.ix : 0;
  w.fy1 = p->filter_h < in_h - w.iy ? p->filter_h : in_h - w.iy;
  w.fx1 = p->filter_w < in_w - w.ix ? p->filter_w : in_w - w.ix;
  return w;
}

/* Offset of element (b, y, x, c) in an NHWC tensor. */
static size_t nhwc(const int32_t s[4], int32_t b, int32_t y, int32_t x, int32_t c) {
  return (((size_t)b * (size_t)s[1] + (size_t)y) * (size_t)s[2] + (size_t)x) * (size_t)s[3] +
         (size_t)c;
}

/* TFLite ActivationFunctionWithMinMax: std::min(std::max(x, lo), hi), which
 * lets NaN through. */
static float clamp_f(float x, float lo, float hi) {
  x = x < lo ? lo : x;
  return hi < x ? hi : x;
}

void kiln_f32_avg_pool_ref(const kiln_pool_params *p, const int32_t in_shape[4], const float *in,
                           const int32_t out_shape[4], float *out) {
  for (int32_t b = 0; b < out_shape[0]; b++)
    for (int32_t oy = 0; oy < out_shape[1]; oy++)
      for (int32_t ox = 0; ox < out_shape[2]; ox++) {
        const window w = pool_window(p, in_shape[1], in_shape[2], oy, ox);
        for (int32_t c = 0; c < out_shape[3]; c++) {
          float total = 0.0f;
          float count = 0.0f;
          for (int32_t fy = w.fy0; fy < w.fy1; fy++)
            for (int32_t fx = w.fx0; fx < w.fx1; fx++) {
              total += in[nhwc(in_shape, b, w.iy + fy, w.ix + fx, c)];
              count += 1.0f;
            }
          out[nhwc(out_shape, b, oy, ox, c)] = clamp_f(total / count, p->act_min_f, p->act_max_f);
        }
      }
}

/* Sum of the raw quantized values in a window and their count. */
#define WINDOW_SUM(in, in_shape, w, b, c, acc, count)                  \
  do {                                                                 \
    for (int32_t fy = (w).fy0; fy < (w).fy1; fy++)                     \
      for (int32_t fx = (w).fx0; fx < (w).fx1; fx++) {                 \
        (acc) += (in)[nhwc(in_shape, b, (w).iy + fy, (w).ix + fx, c)]; \
        (count)++;                                                     \
      }                                                                \
  } while (0)

void kiln_s8_avg_pool_ref(const kiln_pool_params *p, const int32_t in_shape[4], const int8_t *in,
                          const int32_t out_shape[4], int8_t *out) {
  for (int32_t b = 0; b < out_shape[0]; b++)
    for (int32_t oy = 0; oy < out_shape[1]; oy++)
      for (int32_t ox = 0; ox < out_shape[2]; ox++) {
        const window w = pool_window(p, in_shape[1], in_shape[2], oy, ox);
        for (int32_t c = 0; c < out_shape[3]; c++) {
          int32_t acc = 0, count = 0;
          WINDOW_SUM(in, in_shape, w, b, c, acc, count);
          /* Rounds halves away from zero (C division truncates). */
          acc = acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count;
          out[nhwc(out_shape, b, oy, ox, c)] = (int8_t)kiln_clamp_i32(acc, p->act_min, p->act_max);
        }
      }
}

void kiln_u8_avg_pool_ref(const kiln_pool_params *p, const int32_t in_shape[4], const uint8_t *in,
                          const int32_t out_shape[4], uint8_t *out) {
  for (int32_t b = 0; b < out_shape[0]; b++)
    for (int32_t oy = 0; oy < out_shape[1]; oy++)
      for (int32_t ox = 0; ox < out_shape[2]; ox++) {
        const window w = pool_window(p, in_shape[1], in_shape[2], oy, ox);
        for (int32_t c = 0; c < out_shape[3]; c++) {
          int32_t acc = 0, count = 0;
          WINDOW_SUM(in, in_shape, w, b, c, acc, count);
          acc = (acc + count / 2) / count;
          out[nhwc(out_shape, b, oy, ox, c)] = (uint8_t)kiln_clamp_i32(acc, p->act_min, p->act_max);
        }
      }
}

void kiln_f32_max_pool_ref(const kiln_pool_params *p, const int32_t in_shape[4], const float *in,
                           const int32_t out_shape[4], float *out) {
  for (int32_t b = 0; b < out_shape[0]; b++)
    for (int32_t oy = 0; oy < out_shape[1]; oy++)
      for (int32_t ox = 0; ox < out_shape[2]; ox++) {
        const window w = pool_window(p, in_shape[1], in_shape[2], oy, ox);
        for (int32_t c = 0; c < out_shape[3]; c++) {
          float m = -FLT_MAX;
          for (int32_t fy = w.fy0; fy < w.fy1; fy++)
            for (int32_t fx = w.fx0; fx < w.fx1; fx++) {
              const float v = in[nhwc(in_shape, b, w.iy + fy, w.ix + fx, c)];
              m = m < v ? v : m;
            }
          out[nhwc(out_shape, b, oy, ox, c)] = clamp_f(m, p->act_min_f, p->act_max_f);
        }
      }
}

#define QUANT_MAX_POOL(T, lowest)                                                            \
  for (int32_t b = 0; b < out_shape[0]; b++)                                                 \
    for (int32_t oy = 0; oy < out_shape[1]; oy++)                                            \
      for (int32_t ox = 0; ox < out_shape[2]; ox++) {                                        \
        const window w = pool_window(p, in_shape[1], in_shape[2], oy, ox);                   \
        for (int32_t c = 0; c < out_shape[3]; c++) {                                         \
          int32_t m = (lowest);                                                              \
          for (int32_t fy = w.fy0; fy < w.fy1; fy++)                                         \
            for (int32_t fx = w.fx0; fx < w.fx1; fx++) {                                     \
              const int32_t v = in[nhwc(in_shape, b, w.iy + fy, w.ix + fx, c)];              \
              m = m < v ? v : m;                                                             \
            }                                                                                \
          out[nhwc(out_shape, b, oy, ox, c)] = (T)kiln_clamp_i32(m, p->act_min, p->act_max); \
        }                                                                                    \
      }

void kiln_s8_max_pool_ref(const kiln_pool_params *p, const int32_t in_shape[4], const int8_t *in,
                          const int32_t out_shape[4], int8_t *out) {
  QUANT_MAX_POOL(int8_t, -128)
}

void kiln_u8_max_pool_ref(const kiln_pool_params *p, const int32_t in_shape[4], const uint8_t *in,
                          const int32_t out_shape[4], uint8_t *out) {
  QUANT_MAX_POOL(uint8_t, 0)
}

/* ---- MEAN ---- */

/* The input split into kept and reduced dimensions, each with its input
 * stride, walked as two odometers. */
typedef struct mean_split {
  int32_t n_keep, n_red;
  int32_t keep_dim[MEAN_MAX_RANK], red_dim[MEAN_MAX_RANK];
  int64_t keep_stride[MEAN_MAX_RANK], red_stride[MEAN_MAX_RANK];
  int64_t n_out;   /* product of kept dims */
  int64_t n_inner; /* product of reduced dims: the count per output */
} mean_split;

static mean_split split_axes(int32_t rank, const int32_t *shape, uint32_t axis_mask) {
  mean_split s = {0};
  s.n_out = 1;
  s.n_inner = 1;
  int64_t stride = 1;
  /* Strides are computed from the last dimension; dims are stored in order. */
  int64_t strides[MEAN_MAX_RANK];
  for (int32_t d = rank - 1; d >= 0; d--) {
    strides[d] = stride;
    stride *= shape[d];
  }
  for (int32_t d = 0; d < rank; d++) {
    if (axis_mask & (1u << d)) {
      s.red_dim[s.n_red] = shape[d];
      s.red_stride[s.n_red++] = strides[d];
      s.n_inner *= shape[d];
    } else {
      s.keep_dim[s.n_keep] = shape[d];
      s.keep_stride[s.n_keep++] = strides[d];
      s.n_out *= shape[d];
    }
  }
  return s;
}

/* Advances a row-major odometer over dims and returns the updated offset. */
static int64_t odometer_next(int32_t n, const int32_t *dim, const int64_t *stride, int32_t *idx,
                             int64_t offset) {
  for (int32_t d = n - 1; d >= 0; d--) {
    idx[d]++;
    offset += stride[d];
    if (idx[d] < dim[d]) return offset;
    offset -= stride[d] * dim[d];
    idx[d] = 0;
  }
  return offset;
}

void kiln_f32_mean_ref(int32_t rank, const int32_t *shape, uint32_t axis_mask, const float *in,
                       float *out) {
  const mean_split s = split_axes(rank, shape, axis_mask);
  int32_t keep_idx[MEAN_MAX_RANK] = {0};
  int64_t base = 0;
  for (int64_t o = 0; o < s.n_out; o++) {
    if (s.n_inner == 0) {
      out[o] = NAN;
    } else {
      int32_t red_idx[MEAN_MAX_RANK] = {0};
      int64_t off = 0;
      float sum = 0.0f;
      for (int64_t i = 0; i < s.n_inner; i++) {
        sum += in[base + off];
        off = odometer_next(s.n_red, s.red_dim, s.red_stride, red_idx, off);
      }
      out[o] = sum / (float)s.n_inner;
    }
    base = odometer_next(s.n_keep, s.keep_dim, s.keep_stride, keep_idx, base);
  }
}

void kiln_mean_q_multiplier(int32_t multiplier, int shift, int64_t count, int32_t *mean_multiplier,
                            int *mean_shift) {
  /* floor(log2(count)), limited so the shifted multiplier fits in 63 bits
   * and the final shift stays >= -31 (TFLite's clamps). */
  int extra = 0;
  while (extra < 62 && ((int64_t)1 << (extra + 1)) <= count) extra++;
  if (extra > 32) extra = 32;
  if (extra > 31 + shift) extra = 31 + shift;
  if (extra < 0) extra = 0; /* unreachable: kiln_quantize_multiplier gives shift >= -31 */
  *mean_multiplier = (int32_t)(((int64_t)multiplier << extra) / count);
  *mean_shift = shift - extra;
}

/* Two's-complement reinterpretation without implementation-defined casts. */
static int32_t wrap_i32(int64_t x) {
  const uint32_t u = (uint32_t)((uint64_t)x & 0xffffffffu);
  return u < 0x80000000u ? (int32_t)u : -(int32_t)(~u) - 1;
}

#define QUANT_MEAN(T, qmin, qmax)                                                              \
  const mean_split s = split_axes(rank, shape, axis_mask);                                     \
  int32_t keep_idx[MEAN_MAX_RANK] = {0};                                                       \
  int64_t base = 0;                                                                            \
  for (int64_t o = 0; o < s.n_out; o++) {                                                      \
    if (s.n_inner == 0) {                                                                      \
      out[o] = 0;                                                                              \
    } else {                                                                                   \
      int32_t red_idx[MEAN_MAX_RANK] = {0};                                                    \
      int64_t off = 0;                                                                         \
      uint32_t sum = 0;                                                                        \
      for (int64_t i = 0; i < s.n_inner; i++) {                                                \
        sum += (uint32_t)(int32_t)in[base + off];                                              \
        off = odometer_next(s.n_red, s.red_dim, s.red_stride, red_idx, off);                   \
      }                                                                                        \
      const int32_t shifted = wrap_i32((int64_t)wrap_i32(sum) - (int64_t)in_zp * s.n_inner);   \
      const int32_t v = kiln_mul_by_quantized_multiplier(shifted, multiplier, shift) + out_zp; \
      out[o] = (T)kiln_clamp_i32(v, qmin, qmax);                                               \
    }                                                                                          \
    base = odometer_next(s.n_keep, s.keep_dim, s.keep_stride, keep_idx, base);                 \
  }

void kiln_s8_mean_ref(int32_t rank, const int32_t *shape, uint32_t axis_mask, const int8_t *in,
                      int32_t in_zp, int32_t multiplier, int shift, int32_t out_zp, int8_t *out) {
  QUANT_MEAN(int8_t, -128, 127)
}

void kiln_u8_mean_ref(int32_t rank, const int32_t *shape, uint32_t axis_mask, const uint8_t *in,
                      int32_t in_zp, int32_t multiplier, int shift, int32_t out_zp, uint8_t *out) {
  QUANT_MEAN(uint8_t, 0, 255)
}
