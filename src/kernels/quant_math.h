/*
 * kernels/quant_math.h: the fixed-point requantization arithmetic of the
 * TFLite int8 specification, bit-exact with TFLite's reference kernels
 * (gemmlowp's SaturatingRoundingDoublingHighMul and RoundingDivideByPOT,
 * TFLite's QuantizeMultiplier and MultiplyByQuantizedMultiplier with the
 * default double rounding).
 *
 * Every int8/uint8 kernel rescales its int32 accumulators through these, so
 * kernels, the runtime's prepare step and the quantizer agree exactly.
 */
#ifndef KILN_KERNELS_QUANT_MATH_H
#define KILN_KERNELS_QUANT_MATH_H

#include <math.h>
#include <stdint.h>

/* (a * b * 2) >> 32 with rounding to nearest; saturates the one overflow
 * case (INT32_MIN * INT32_MIN). */
static inline int32_t kiln_srdhm(int32_t a, int32_t b) {
  if (a == b && a == INT32_MIN) return INT32_MAX;
  const int64_t ab = (int64_t)a * (int64_t)b;
  const int64_t nudge = ab >= 0 ? (1 << 30) : (1 - (1 << 30));
  return (int32_t)((ab + nudge) / ((int64_t)1 << 31));
}

/* x / 2^exponent rounded to nearest, ties away from zero; 0 <= exponent.
 * Past 31 the result is 0 (|x| / 2^32 < 1/2): only a model with an absurd
 * scale ratio gets there, and it must not reach undefined shifts. */
static inline int32_t kiln_rounding_divide_by_pot(int32_t x, int exponent) {
  if (exponent > 31) return 0;
  const int32_t mask = (int32_t)(((int64_t)1 << exponent) - 1);
  const int32_t remainder = x & mask;
  const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
  return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

/* x * 2^left with two's-complement wrap-around, as TFLite's int32 multiply
 * behaves on every platform it runs on (without C's signed-overflow UB). */
static inline int32_t kiln_shl_wrap(int32_t x, int left) {
  if (left > 31) return 0; /* x * 2^32k wraps to 0 */
  return (int32_t)((uint32_t)x << left);
}

/* TFLite MultiplyByQuantizedMultiplier: x * multiplier * 2^(shift - 31). */
static inline int32_t kiln_mul_by_quantized_multiplier(int32_t x, int32_t multiplier, int shift) {
  const int left = shift > 0 ? shift : 0;
  const int right = shift > 0 ? 0 : -shift;
  return kiln_rounding_divide_by_pot(kiln_srdhm(kiln_shl_wrap(x, left), multiplier), right);
}

/* TFLite MultiplyByQuantizedMultiplierSmallerThanOneExp (shift <= 0). */
static inline int32_t kiln_mul_by_quantized_multiplier_smaller_than_one(int32_t x,
                                                                        int32_t multiplier,
                                                                        int shift) {
  return kiln_rounding_divide_by_pot(kiln_srdhm(x, multiplier), -shift);
}

/* TFLite MultiplyByQuantizedMultiplierGreaterThanOne (left_shift >= 0). */
static inline int32_t kiln_mul_by_quantized_multiplier_greater_than_one(int32_t x,
                                                                        int32_t multiplier,
                                                                        int left_shift) {
  return kiln_srdhm(kiln_shl_wrap(x, left_shift), multiplier);
}

/* TFLite QuantizeMultiplier: real = multiplier * 2^(shift - 31) with
 * multiplier in [2^30, 2^31) (or 0). Multipliers below about 2^-31 flush
 * to zero. real must be finite and >= 0. */
static inline void kiln_quantize_multiplier(double real, int32_t *multiplier, int *shift) {
  if (real == 0.0 || real != real) { /* NaN from corrupt scales: no UB, a zero multiplier */
    *multiplier = 0;
    *shift = 0;
    return;
  }
  if (real > 1e300 || real < -1e300) { /* infinite (e.g. a huge product of scales): a shift */
    *multiplier = INT32_MAX;          /* no caller accepts, so prepare refuses the op */
    *shift = 1024;
    return;
  }
  int exp = 0;
  const double q = frexp(real, &exp);
  int64_t q_fixed = (int64_t)round(q * (double)((int64_t)1 << 31));
  if (q_fixed == ((int64_t)1 << 31)) {
    q_fixed /= 2;
    ++exp;
  }
  if (exp < -31) {
    exp = 0;
    q_fixed = 0;
  }
  *multiplier = (int32_t)q_fixed;
  *shift = exp;
}

/* TFLite's float -> int rounding (std::round: halves away from zero). */
static inline float kiln_round_f(float x) { return roundf(x); }

/* TFLite's static_cast<int32_t>(round(x)) as its x86 builds compute it:
 * values outside int32 (and NaN) become INT32_MIN, the conversion
 * instruction's "integer indefinite" result. */
static inline int32_t kiln_round_to_i32_x86(double x) {
  const double r = round(x);
  return (r >= -2147483648.0 && r < 2147483648.0) ? (int32_t)r : INT32_MIN;
}

/* The accumulator rescale of TFLite's reference FULLY_CONNECTED:
 * clamp(round(acc * scale) + out_zp) with int32 wrap-around on the add. */
static inline int32_t kiln_fc_requant(int32_t acc, double scale, int32_t out_zp, int32_t lo,
                                      int32_t hi) {
  const int32_t v = (int32_t)((uint32_t)kiln_round_to_i32_x86((double)acc * scale) + (uint32_t)out_zp);
  return v < lo ? lo : (v > hi ? hi : v);
}

static inline int32_t kiln_clamp_i32(int32_t x, int32_t lo, int32_t hi) {
  return x < lo ? lo : (x > hi ? hi : x);
}

#endif
