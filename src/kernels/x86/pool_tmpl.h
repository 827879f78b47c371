/*
 * kernels/x86/pool_tmpl.h: the AVERAGE_POOL_2D and MAX_POOL_2D kernels of
 * kernels/misc_fast.h over the vector operations of misc_vec_avx2.h /
 * misc_vec_avx512.h (included by pool_fast_avx2.c and pool_fast_avx512.c).
 *
 * For each output pixel the window is clipped to the input as the reference
 * clips it, and each channel vector sums (or takes the maximum of) the
 * window's cells row by row, the reference's order. Float averages divide by
 * the cell count; int8 averages round the integer quotient half away from
 * zero through an exact float division (|sum| + count < 2^24).
 */
#include <float.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/misc_fast.h"

#define POOL_INLINE static inline __attribute__((always_inline))

/* The window of one output pixel, clipped to the input. */
typedef struct pool_win {
  int32_t iy, ix;   /* input position of filter cell (0, 0) */
  int32_t fy0, fy1; /* filter rows inside the input */
  int32_t fx0, fx1; /* filter columns inside the input */
} pool_win;

POOL_INLINE pool_win pool_window(const kiln_pool_params *p, const int32_t in_shape[4], int32_t oy,
                                 int32_t ox) {
  pool_win w;
  w.iy = oy * p->stride_h - p->pad_h;
  w.ix = ox * p->stride_w - p->pad_w;
  w.fy0 = w.iy < 0 ? -w.iy : 0;
  w.fx0 = w.ix < 0 ? -w.ix : 0;
  w.fy1 = p->filter_h < in_shape[1] - w.iy ? p->filter_h : in_shape[1] - w.iy;
  w.fx1 = p->filter_w < in_shape[2] - w.ix ? p->filter_w : in_shape[2] - w.ix;
  return w;
}

/* Element (b, y, x, 0) of an NHWC tensor. */
POOL_INLINE size_t pool_at(const int32_t s[4], int64_t b, int32_t y, int32_t x) {
  return (((size_t)b * (size_t)s[1] + (size_t)y) * (size_t)s[2] + (size_t)x) * (size_t)s[3];
}

/* Float window sum (avg) or maximum of n channels at `in` (cell (0, 0) of
 * the clipped window). */
POOL_INLINE VF pool_f32_window(const float *in, const pool_win *w, size_t row, size_t col,
                               bool is_max, int32_t n) {
  VF acc = is_max ? VF_SET1(-FLT_MAX) : VF_ZERO();
  for (int32_t fy = w->fy0; fy < w->fy1; fy++)
    for (int32_t fx = w->fx0; fx < w->fx1; fx++) {
      const float *src = in + (size_t)fy * row + (size_t)fx * col;
      const VF v = n == VT ? VF_LOAD(src) : VF_LOADN(src, n);
      acc = is_max ? VF_MAX(v, acc) : VF_ADD(acc, v);
    }
  return acc;
}

POOL_INLINE void pool_f32(const kiln_pool_params *p, const int32_t in_shape[4], const float *in,
                          const int32_t out_shape[4], float *out, int64_t r0, int64_t r1,
                          bool is_max) {
  const int32_t C = in_shape[3];
  const size_t row = (size_t)in_shape[2] * (size_t)C, col = (size_t)C;
  const VF lo = VF_SET1(p->act_min_f), hi = VF_SET1(p->act_max_f);
  for (int64_t r = r0; r < r1; r++) {
    const int64_t b = r / out_shape[1];
    const int32_t oy = (int32_t)(r % out_shape[1]);
    for (int32_t ox = 0; ox < out_shape[2]; ox++) {
      const pool_win w = pool_window(p, in_shape, oy, ox);
      const float *src = in + pool_at(in_shape, b, w.iy + w.fy0, w.ix + w.fx0);
      const pool_win rel = {0, 0, 0, w.fy1 - w.fy0, 0, w.fx1 - w.fx0};
      const VF count = VF_SET1((float)((w.fy1 - w.fy0) * (w.fx1 - w.fx0)));
      float *dst = out + pool_at(out_shape, b, oy, ox);
      for (int32_t c = 0; c < C; c += VT) {
        const int32_t n = C - c < VT ? C - c : VT;
        VF v = n == VT ? pool_f32_window(src + c, &rel, row, col, is_max, VT)
                       : pool_f32_window(src + c, &rel, row, col, is_max, n);
        if (!is_max) v = VF_DIV(v, count);
        v = VF_MIN(hi, VF_MAX(lo, v));
        if (n == VT)
          VF_STORE(dst + c, v);
        else
          VF_STOREN(dst + c, v, n);
      }
    }
  }
}

void KX(kiln_f32_avg_pool)(const kiln_pool_params *p, const int32_t in_shape[4], const float *in,
                           const int32_t out_shape[4], float *out, int64_t r0, int64_t r1) {
  pool_f32(p, in_shape, in, out_shape, out, r0, r1, false);
}

void KX(kiln_f32_max_pool)(const kiln_pool_params *p, const int32_t in_shape[4], const float *in,
                           const int32_t out_shape[4], float *out, int64_t r0, int64_t r1) {
  pool_f32(p, in_shape, in, out_shape, out, r0, r1, true);
}

POOL_INLINE VI pool_s8_window(const int8_t *in, const pool_win *w, size_t row, size_t col,
                              bool is_max, int32_t n) {
  VI acc = VI_SET1(is_max ? -128 : 0);
  for (int32_t fy = w->fy0; fy < w->fy1; fy++)
    for (int32_t fx = w->fx0; fx < w->fx1; fx++) {
      const int8_t *src = in + (size_t)fy * row + (size_t)fx * col;
      const VI v = n == VT ? VI_LOAD_S8(src) : VI_LOAD_S8N(src, n);
      acc = is_max ? VI_MAX(acc, v) : VI_ADD(acc, v);
    }
  return acc;
}

/* (sum + count / 2) / count for sum > 0, (sum - count / 2) / count
 * otherwise, truncating: the reference's rounding. */
POOL_INLINE VI pool_s8_divide(VI sum, int32_t count) {
  const VI half = VI_SET1(count / 2);
  const VI num = VI_ADD(VI_SUB(sum, half), VI_IF_GT0(sum, VI_ADD(half, half)));
  return VF_TO_VI_TRUNC(VF_DIV(VI_TO_VF(num), VF_SET1((float)count)));
}

POOL_INLINE void pool_s8(const kiln_pool_params *p, const int32_t in_shape[4], const int8_t *in,
                         const int32_t out_shape[4], int8_t *out, int64_t r0, int64_t r1,
                         bool is_max) {
  const int32_t C = in_shape[3];
  const size_t row = (size_t)in_shape[2] * (size_t)C, col = (size_t)C;
  const VI lo = VI_SET1(p->act_min), hi = VI_SET1(p->act_max);
  for (int64_t r = r0; r < r1; r++) {
    const int64_t b = r / out_shape[1];
    const int32_t oy = (int32_t)(r % out_shape[1]);
    for (int32_t ox = 0; ox < out_shape[2]; ox++) {
      const pool_win w = pool_window(p, in_shape, oy, ox);
      const int8_t *src = in + pool_at(in_shape, b, w.iy + w.fy0, w.ix + w.fx0);
      const pool_win rel = {0, 0, 0, w.fy1 - w.fy0, 0, w.fx1 - w.fx0};
      const int32_t count = (w.fy1 - w.fy0) * (w.fx1 - w.fx0);
      int8_t *dst = out + pool_at(out_shape, b, oy, ox);
      for (int32_t c = 0; c < C; c += VT) {
        const int32_t n = C - c < VT ? C - c : VT;
        VI v = n == VT ? pool_s8_window(src + c, &rel, row, col, is_max, VT)
                       : pool_s8_window(src + c, &rel, row, col, is_max, n);
        if (!is_max) v = pool_s8_divide(v, count);
        v = VI_MIN(VI_MAX(v, lo), hi);
        if (n == VT)
          VI_STORE_S8(dst + c, v);
        else
          VI_STORE_S8N(dst + c, v, n);
      }
    }
  }
}

void KX(kiln_s8_avg_pool)(const kiln_pool_params *p, const int32_t in_shape[4], const int8_t *in,
                          const int32_t out_shape[4], int8_t *out, int64_t r0, int64_t r1) {
  pool_s8(p, in_shape, in, out_shape, out, r0, r1, false);
}

void KX(kiln_s8_max_pool)(const kiln_pool_params *p, const int32_t in_shape[4], const int8_t *in,
                          const int32_t out_shape[4], int8_t *out, int64_t r0, int64_t r1) {
  pool_s8(p, in_shape, in, out_shape, out, r0, r1, true);
}
