/*
 * kernels/arm/requant_neon.h: TFLite's fixed-point requantization on 4
 * int32 lanes (ARM64 NEON), bit-exact with kernels/quant_math.h; what every
 * ARM64 int8 kernel inlines. Tested exhaustively-ish by
 * tests/unit/test_neon_requant.c.
 */
#ifndef KILN_KERNELS_ARM_REQUANT_NEON_H
#define KILN_KERNELS_ARM_REQUANT_NEON_H

#include <arm_neon.h>

/* RoundingDivideByPOT(x, right) lane by lane (x / 2^right rounded to
 * nearest, ties away from zero), bit-exact with kiln_rounding_divide_by_pot;
 * neg_right = -right, 0 <= right <= 31. SRSHL by -right rounds ties up,
 * (x + 2^(right-1)) >> right without overflow; so a negative x first loses 1
 * (saturating; only when right > 0, which puts the sign bit in x & neg_right):
 * its ties then round down, and no other negative value crosses a rounding
 * boundary. */
static inline int32x4_t kiln_rdbp_neon(int32x4_t x, int32x4_t neg_right) {
  const int32x4_t fixup = vshrq_n_s32(vandq_s32(x, neg_right), 31);
  return vrshlq_s32(vqaddq_s32(x, fixup), neg_right);
}

/* MultiplyByQuantizedMultiplier lane by lane:
 * RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(x << left, mult),
 * right), bit-exact with kiln_mul_by_quantized_multiplier; 0 <= left,
 * right <= 31, neg_right = -right. The shift left wraps (SSHL, as
 * kiln_shl_wrap). SQRDMULH computes (2 a b + 2^31) >> 32 =
 * floor((a b + 2^30) / 2^31), which equals gemmlowp's truncating
 * (a b + (a b >= 0 ? 2^30 : 1 - 2^30)) / 2^31 for every product, and
 * saturates INT32_MIN * INT32_MIN to INT32_MAX as gemmlowp does. */
static inline int32x4_t kiln_mbqm_neon(int32x4_t x, int32x4_t mult, int32x4_t left,
                                       int32x4_t neg_right) {
  return kiln_rdbp_neon(vqrdmulhq_s32(vshlq_s32(x, left), mult), neg_right);
}

#endif
