/*
 * kernels/arm/s8_gemm_neon.h: what the ARM64 int8 GEMM kernels
 * (s8_gemm_4x16_neondot.c, s8_gemm_2x8_neon.c) share: byte-wide A packing
 * (a_offset 0: A is X), the per-column requantization of 4 columns at a
 * time (kernels/arm/requant_neon.h, bit-exact with kernels/quant_math.h)
 * and the store of one row of results. Layouts and contract:
 * kernels/s8_gemm.h.
 */
#ifndef KILN_KERNELS_ARM_S8_GEMM_NEON_H
#define KILN_KERNELS_ARM_S8_GEMM_NEON_H

#include <arm_neon.h>
#include <stdint.h>
#include <string.h>

#include "kernels/arm/requant_neon.h"
#include "kernels/s8_gemm.h"

#define S8_INLINE static inline __attribute__((always_inline))

/* A = X: rows copied (x and a apart) unless packed in place (x == a, same
 * stride); copied rows get zeros from K to kp, rows in place keep what is
 * there (the weights are 0 past K). */
S8_INLINE void s8_neon_pack_a(const int8_t *x, size_t x_stride, int32_t rows, int32_t k, int32_t kp,
                              void *a, size_t a_stride) {
  if ((const void *)x == a && x_stride == a_stride) return;
  for (int32_t r = 0; r < rows; r++) {
    int8_t *dst = (int8_t *)a + (size_t)r * a_stride;
    memcpy(dst, x + (size_t)r * x_stride, (size_t)k);
    memset(dst + k, 0, (size_t)(kp - k));
  }
}

/* Requantization parameters of 4 consecutive columns. */
typedef struct s8_rq_neon {
  int32x4_t mult, left, neg_right;
} s8_rq_neon;

/* Columns [n, n + 4); n a multiple of 4. */
S8_INLINE s8_rq_neon s8_rq_load_neon(const kiln_s8_requant *rq, int32_t n) {
  s8_rq_neon p;
  p.mult = vld1q_s32(rq->mult + n);
  p.left = vld1q_s32(rq->left + n);
  p.neg_right = vnegq_s32(vld1q_s32(rq->right + n));
  return p;
}

/* MultiplyByQuantizedMultiplier(acc, mult, shift) + out_zp per lane (acc
 * with corr added; the zero point wraps). */
S8_INLINE int32x4_t s8_requant_neon(int32x4_t acc, const s8_rq_neon *p, int32x4_t zp) {
  return vaddq_s32(kiln_mbqm_neon(acc, p->mult, p->left, p->neg_right), zp);
}

/* nv (1..4, a constant after inlining) vectors of requantized results,
 * saturated to int8 in order and clamped to [lo, hi]; the first cols
 * (1..4 * nv) bytes stored at dst. */
S8_INLINE void s8_store_row_neon(int8_t *dst, const int32x4_t *v, const int nv, int8x16_t lo,
                                 int8x16_t hi, int32_t cols) {
  const int16x8_t h0 = vcombine_s16(vqmovn_s32(v[0]), vqmovn_s32(nv > 1 ? v[1] : v[0]));
  const int16x8_t h1 =
      nv > 2 ? vcombine_s16(vqmovn_s32(v[2]), vqmovn_s32(nv > 3 ? v[3] : v[2])) : h0;
  int8x16_t b = vcombine_s8(vqmovn_s16(h0), vqmovn_s16(h1));
  b = vminq_s8(vmaxq_s8(b, lo), hi);
  if (cols == 16) {
    vst1q_s8(dst, b);
  } else if (cols == 8) {
    vst1_s8(dst, vget_low_s8(b));
  } else {
    int8_t buf[16];
    vst1q_s8(buf, b);
    memcpy(dst, buf, (size_t)cols);
  }
}

/* kiln_s8_gemm_kernel.requant32: n a multiple of 4. */
S8_INLINE void s8_neon_requant32(const kiln_s8_requant *rq, const int32_t *acc, int32_t n,
                                 int32_t *out) {
  const int32x4_t zp = vdupq_n_s32(rq->out_zp);
  for (int32_t i = 0; i < n; i += 4) {
    const s8_rq_neon p = s8_rq_load_neon(rq, i);
    const int32x4_t x = vaddq_s32(vld1q_s32(acc + i), vld1q_s32(rq->corr + i));
    vst1q_s32(out + i, s8_requant_neon(x, &p, zp));
  }
}

#endif
