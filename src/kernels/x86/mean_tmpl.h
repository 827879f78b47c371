/*
 * kernels/x86/mean_tmpl.h: the MEAN-over-height-and-width kernels of
 * kernels/misc_fast.h over the vector operations of misc_vec_avx2.h /
 * misc_vec_avx512.h (included by mean_fast_avx2.c and mean_fast_avx512.c).
 *
 * Each channel vector adds the image's pixels in order (the reference's
 * order for floats), then floats divide by the pixel count and int8 sums
 * (wrapping int32) lose zp * count and are requantized with the multiplier
 * that has 1 / count folded in.
 */
#include <stddef.h>
#include <stdint.h>

#include "kernels/misc_fast.h"

#define MEAN_INLINE static inline __attribute__((always_inline))

MEAN_INLINE VF mean_f32_sum(const float *in, int32_t hw, size_t stride, int32_t n) {
  VF acc = VF_ZERO();
  for (int32_t i = 0; i < hw; i++) {
    const float *src = in + (size_t)i * stride;
    acc = VF_ADD(acc, n == VT ? VF_LOAD(src) : VF_LOADN(src, n));
  }
  return acc;
}

void KX(kiln_f32_mean_hw)(int32_t hw, int32_t channels, const float *in, float *out, int32_t c0,
                          int32_t c1) {
  const VF count = VF_SET1((float)hw);
  for (int32_t c = c0; c < c1; c += VT) {
    const int32_t n = c1 - c < VT ? c1 - c : VT;
    if (n == VT) {
      VF_STORE(out + c, VF_DIV(mean_f32_sum(in + c, hw, (size_t)channels, VT), count));
    } else {
      VF_STOREN(out + c, VF_DIV(mean_f32_sum(in + c, hw, (size_t)channels, n), count), n);
    }
  }
}

MEAN_INLINE VI mean_s8_sum(const int8_t *in, int32_t hw, size_t stride, int32_t n) {
  VI acc = VI_SET1(0);
  for (int32_t i = 0; i < hw; i++) {
    const int8_t *src = in + (size_t)i * stride;
    acc = VI_ADD(acc, n == VT ? VI_LOAD_S8(src) : VI_LOAD_S8N(src, n));
  }
  return acc;
}

void KX(kiln_s8_mean_hw)(const kiln_mean_q *q, int32_t hw, int32_t channels, const int8_t *in,
                         int8_t *out, int32_t c0, int32_t c1) {
  const int32_t right = q->shift < 0 ? -q->shift : 0;
  const int32_t mask = (int32_t)(((int64_t)1 << right) - 1);
  const VI mult = VI_SET1(q->multiplier), left = VI_SET1(q->shift > 0 ? q->shift : 0);
  const VI vright = VI_SET1(right), vmask = VI_SET1(mask), half = VI_SET1(mask >> 1);
  const VI zp_count = VI_SET1(q->zp_times_count), out_zp = VI_SET1(q->out_zp);
  const VI lo = VI_SET1(-128), hi = VI_SET1(127);
  for (int32_t c = c0; c < c1; c += VT) {
    const int32_t n = c1 - c < VT ? c1 - c : VT;
    const VI sum = n == VT ? mean_s8_sum(in + c, hw, (size_t)channels, VT)
                           : mean_s8_sum(in + c, hw, (size_t)channels, n);
    VI v = VI_MBQM(VI_SUB(sum, zp_count), mult, left, vright, vmask, half);
    v = VI_MIN(VI_MAX(VI_ADD(v, out_zp), lo), hi);
    if (n == VT)
      VI_STORE_S8(out + c, v);
    else
      VI_STORE_S8N(out + c, v, n);
  }
}
