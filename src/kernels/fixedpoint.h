/*
 * kernels/fixedpoint.h: gemmlowp-style fixed-point arithmetic on int32 raw
 * values, bit-exact with the scalar path of gemmlowp's fixedpoint.h (which
 * TFLite's reference kernels use) and with the int16 helpers of TFLite's
 * hard-swish kernel.
 *
 * A fixed-point value is an int32 `raw` together with a number of integer
 * bits k (0 <= k <= 30): it represents raw / 2^(31 - k), so the range is
 * [-2^k, 2^k). gemmlowp carries k in the type (FixedPoint<int32_t, k>); here
 * it is a function argument. The product of a k1-bit and a k2-bit value is
 * kiln_srdhm(a, b) with k1 + k2 integer bits.
 *
 * Where gemmlowp's plain integer adds may overflow (undefined in C), these
 * helpers wrap in two's complement, which is what the compiled gemmlowp code
 * does on every target TFLite runs on.
 */
#ifndef KILN_KERNELS_FIXEDPOINT_H
#define KILN_KERNELS_FIXEDPOINT_H

#include <stdint.h>

#include "kernels/quant_math.h"

/* a + b and a - b with two's-complement wrap-around. */
static inline int32_t kiln_fp_add(int32_t a, int32_t b) {
  return (int32_t)((uint32_t)a + (uint32_t)b);
}
static inline int32_t kiln_fp_sub(int32_t a, int32_t b) {
  return (int32_t)((uint32_t)a - (uint32_t)b);
}

/* The raw value of 1.0 with k integer bits (the largest value when k = 0). */
static inline int32_t kiln_fp_one(int k) { return k == 0 ? INT32_MAX : (int32_t)1 << (31 - k); }

/* The raw value of 2^exponent with k integer bits (gemmlowp ConstantPOT);
 * requires 0 <= 31 - k + exponent < 31. */
static inline int32_t kiln_fp_constant_pot(int k, int exponent) {
  return (int32_t)1 << (31 - k + exponent);
}

/* (a + b) / 2 rounded to nearest, halves away from zero (gemmlowp
 * RoundingHalfSum, ARM VRHADD). */
static inline int32_t kiln_fp_rounding_half_sum(int32_t a, int32_t b) {
  const int64_t sum = (int64_t)a + (int64_t)b;
  const int64_t sign = sum >= 0 ? 1 : -1;
  return (int32_t)((sum + sign) / 2);
}

/* x * 2^exponent: saturating for exponent > 0, rounding to nearest for
 * exponent < 0 (gemmlowp SaturatingRoundingMultiplyByPOT); -31 <= exponent
 * <= 30. */
static inline int32_t kiln_fp_mul_pot(int32_t x, int exponent) {
  if (exponent == 0) return x;
  if (exponent < 0) return kiln_rounding_divide_by_pot(x, -exponent);
  const int32_t threshold = (int32_t)(((int64_t)1 << (31 - exponent)) - 1);
  if (x > threshold) return INT32_MAX;
  if (x < -threshold) return INT32_MIN;
  return kiln_shl_wrap(x, exponent);
}

/* Changes a value's integer bits from k_src to k_dst (gemmlowp Rescale). */
static inline int32_t kiln_fp_rescale(int32_t raw, int k_src, int k_dst) {
  return kiln_fp_mul_pot(raw, k_src - k_dst);
}

/* exp(a) for a in [-1/4, 0), a and result with 0 integer bits. */
static inline int32_t kiln_fp_exp_on_interval_between_negative_one_quarter_and_0_excl(int32_t a) {
  const int32_t constant_term = 1895147668;     /* exp(-1/8) */
  const int32_t constant_1_over_3 = 715827883; /* 1/3 */
  /* Taylor expansion around -1/8: x = a + 1/8. */
  const int32_t x = kiln_fp_add(a, kiln_fp_constant_pot(0, -3));
  const int32_t x2 = kiln_srdhm(x, x);
  const int32_t x3 = kiln_srdhm(x2, x);
  const int32_t x4 = kiln_srdhm(x2, x2);
  const int32_t x4_over_4 = kiln_fp_mul_pot(x4, -2);
  const int32_t x4_over_24_plus_x3_over_6_plus_x2_over_2 = kiln_fp_mul_pot(
      kiln_fp_add(kiln_srdhm(kiln_fp_add(x4_over_4, x3), constant_1_over_3), x2), -1);
  return kiln_fp_add(constant_term,
                     kiln_srdhm(constant_term,
                                kiln_fp_add(x, x4_over_24_plus_x3_over_6_plus_x2_over_2)));
}

/* exp(a) for a <= 0 with k integer bits (0 <= k <= 29); the result has 0
 * integer bits (exp(0) gives the largest raw value, INT32_MAX). gemmlowp
 * exp_on_negative_values. */
static inline int32_t kiln_fp_exp_on_negative_values(int32_t a, int k) {
  static const int32_t barrel[7] = {
      1672461947, /* exp(-1/4) */
      1302514674, /* exp(-1/2) */
      790015084,  /* exp(-1) */
      290630308,  /* exp(-2) */
      39332535,   /* exp(-4) */
      720401,     /* exp(-8) */
      242,        /* exp(-16) */
  };
  const int frac_bits = 31 - k;
  const int32_t one_quarter = kiln_fp_constant_pot(k, -2);
  const int32_t mask = one_quarter - 1;
  const int32_t a_mod_quarter_minus_one_quarter = kiln_fp_sub(a & mask, one_quarter);
  int32_t result = kiln_fp_exp_on_interval_between_negative_one_quarter_and_0_excl(
      kiln_fp_rescale(a_mod_quarter_minus_one_quarter, k, 0));
  const int32_t remainder = kiln_fp_sub(a_mod_quarter_minus_one_quarter, a);
  /* Multiply in exp(-2^e) for each bit e of the remainder, e = -2 .. 4. */
  for (int e = -2; e <= 4; e++) {
    if (k > e && (remainder & ((int32_t)1 << (frac_bits + e))))
      result = kiln_srdhm(result, barrel[e + 2]);
  }
  if (k > 5) {
    const int32_t clamp = -((int32_t)1 << (36 - k)); /* -32.0 */
    if (a < clamp) result = 0;
  }
  if (a == 0) result = kiln_fp_one(0);
  return result;
}

/* 1 / (1 + a) for a in [0, 1), argument and result with 0 integer bits
 * (three Newton-Raphson steps). gemmlowp one_over_one_plus_x_for_x_in_0_1. */
static inline int32_t kiln_fp_one_over_one_plus_x_for_x_in_0_1(int32_t a) {
  const int32_t half_denominator = kiln_fp_rounding_half_sum(a, kiln_fp_one(0));
  const int32_t constant_48_over_17 = 1515870810;      /* 2 integer bits */
  const int32_t constant_neg_32_over_17 = -1010580540; /* 2 integer bits */
  int32_t x = kiln_fp_add(constant_48_over_17, kiln_srdhm(half_denominator, constant_neg_32_over_17));
  for (int i = 0; i < 3; i++) {
    const int32_t half_denominator_times_x = kiln_srdhm(half_denominator, x);
    const int32_t one_minus_half_denominator_times_x =
        kiln_fp_sub(kiln_fp_one(2), half_denominator_times_x);
    x = kiln_fp_add(x, kiln_fp_rescale(kiln_srdhm(x, one_minus_half_denominator_times_x), 4, 2));
  }
  /* x / 2 with 2 integer bits is x with 1 integer bit: rescale from 1 to 0. */
  return kiln_fp_rescale(x, 1, 0);
}

/* The reciprocal of a positive x with x_integer_bits integer bits, as a
 * 0-integer-bit value r and *num_bits_over_unit such that 1/x = r *
 * 2^-num_bits_over_unit (TFLite GetReciprocal). x must be > 0. */
static inline int32_t kiln_fp_reciprocal(int32_t x, int x_integer_bits, int *num_bits_over_unit) {
  int headroom_plus_one = 0;
  while (headroom_plus_one < 32 && !((uint32_t)x & (0x80000000u >> headroom_plus_one)))
    headroom_plus_one++;
  *num_bits_over_unit = x_integer_bits - headroom_plus_one;
  const uint32_t shifted = headroom_plus_one < 32 ? (uint32_t)x << headroom_plus_one : 0u;
  const int32_t shifted_sum_minus_one = (int32_t)(shifted - 0x80000000u);
  return kiln_fp_one_over_one_plus_x_for_x_in_0_1(shifted_sum_minus_one);
}

/* ---- int16 helpers of TFLite's quantized hard-swish ---- */

/* gemmlowp SaturatingRoundingDoublingHighMul on int16 (ARM VQRDMULH.S16). */
static inline int16_t kiln_srdhm16(int16_t a, int16_t b) {
  if (a == b && a == INT16_MIN) return INT16_MAX;
  const int32_t ab = (int32_t)a * (int32_t)b;
  const int32_t nudge = ab >= 0 ? (1 << 14) : (1 - (1 << 14));
  return (int16_t)((ab + nudge) / (1 << 15));
}

/* Like kiln_srdhm16 but truncating toward zero (ARM SQDMULH.S16). */
static inline int16_t kiln_sdhm16(int16_t a, int16_t b) {
  if (a == b && a == INT16_MIN) return INT16_MAX;
  const int32_t ab = (int32_t)a * (int32_t)b;
  return (int16_t)(ab / (1 << 15));
}

/* gemmlowp RoundingDivideByPOT instantiated for int16, 0 <= exponent <=
 * 31, including its behaviour for exponents of 16 and more (the mask is
 * then truncated to 16 bits). */
static inline int16_t kiln_rounding_divide_by_pot16(int16_t x, int exponent) {
  const int16_t mask = (int16_t)(uint16_t)((((uint64_t)1 << exponent) - 1) & 0xFFFFu);
  const int16_t remainder = (int16_t)(x & mask);
  const int16_t threshold = (int16_t)((mask >> 1) + (x < 0 ? 1 : 0));
  return (int16_t)((x >> exponent) + (remainder > threshold ? 1 : 0));
}

/* value * 2^amount saturated to int16 (TFLite SaturatingLeftShift);
 * 0 <= amount <= 30. */
static inline int16_t kiln_saturating_left_shift16(int16_t value, int amount) {
  int64_t result = (int64_t)value * ((int64_t)1 << amount);
  if (result > INT16_MAX) result = INT16_MAX;
  if (result < INT16_MIN) result = INT16_MIN;
  return (int16_t)result;
}

#endif
