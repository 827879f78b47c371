/*
 * kernels/ref/l2norm_ref.c: reference L2_NORMALIZATION along the last axis
 * (see elementwise_ref.h for the contracts).
 *
 * Float follows TFLite's reference_ops::L2Normalization (epsilon 1e-6).
 * int8 is reference_integer_ops::L2Normalization: the inverse square root
 * of the row's sum of squares comes from GetInvSqrtQuantizedMultiplierExp
 * (five Newton-Raphson steps in Q3.28), and each difference to the zero
 * point is multiplied by it with 7 more bits of left shift (output scale
 * 1/128). uint8 is reference_ops' version: 128 * difference multiplied by
 * it, plus 128.
 */
#include <math.h>

#include "kernels/fixedpoint.h"
#include "kernels/quant_math.h"
#include "kernels/ref/elementwise_ref.h"

static int leading_zeros(uint32_t x) {
  int n = 0;
  while (n < 32 && !(x & (0x80000000u >> n))) n++;
  return n;
}

void kiln_inv_sqrt_multiplier(int32_t input, int32_t *multiplier, int *shift) {
  if (input <= 1) {
    /* 0 (invalid) and 1 (would overflow below) as TFLite treats them. */
    *multiplier = INT32_MAX;
    *shift = 0;
    return;
  }
  int right = 11;
  while (input >= (1 << 29)) {
    input /= 4;
    right++;
  }
  const int left_pairs = (leading_zeros((uint32_t)input) - 1) / 2 - 1;
  right -= left_pairs;
  input = kiln_shl_wrap(input, 2 * left_pairs); /* now in [2^27, 2^29) */
  /* Newton-Raphson for 1/sqrt(a) with 3 integer bits: x <- 1.5 x - a/2 x^3,
   * from x = 1, where a = input / 2^29 (so the result is sqrt(2) too big,
   * fixed by the final multiplication by sqrt(2)/2). */
  const int32_t a = input >> 1;
  const int32_t half_a = kiln_fp_mul_pot(a, -1);
  const int32_t three_halves = (1 << 28) + (1 << 27);
  int32_t x = kiln_fp_one(3);
  for (int i = 0; i < 5; i++) {
    const int32_t x3 = kiln_fp_rescale(kiln_srdhm(kiln_srdhm(x, x), x), 9, 3);
    x = kiln_fp_rescale(kiln_fp_sub(kiln_srdhm(three_halves, x), kiln_srdhm(half_a, x3)), 6, 3);
  }
  const int32_t half_sqrt_2 = 1518500250; /* sqrt(2) / 2 with 0 integer bits */
  int32_t m = kiln_srdhm(x, half_sqrt_2);
  if (right < 0) {
    m = kiln_shl_wrap(m, -right);
    right = 0;
  }
  *multiplier = m;
  *shift = -right;
}

void kiln_f32_l2norm_ref(int64_t outer, int32_t depth, const float *in, float *out) {
  for (int64_t r = 0; r < outer; r++) {
    const float *x = in + r * depth;
    float *y = out + r * depth;
    float squared = 0.0f;
    for (int32_t c = 0; c < depth; c++) squared += x[c] * x[c];
    float norm = sqrtf(squared);
    norm = norm < 1e-6f ? 1e-6f : norm;
    for (int32_t c = 0; c < depth; c++) y[c] = x[c] / norm;
  }
}

/* The row's sum of squared differences, wrapping like TFLite's int32 sum. */
static int32_t sum_of_squares(int32_t depth, const void *row, bool is_signed, int32_t zp) {
  uint32_t acc = 0;
  for (int32_t c = 0; c < depth; c++) {
    const int32_t v = (is_signed ? ((const int8_t *)row)[c] : ((const uint8_t *)row)[c]) - zp;
    acc += (uint32_t)(v * v);
  }
  return (int32_t)acc;
}

void kiln_s8_l2norm_ref(int64_t outer, int32_t depth, const int8_t *in, int8_t *out,
                        int32_t in_zero_point) {
  for (int64_t r = 0; r < outer; r++) {
    const int8_t *x = in + r * depth;
    int8_t *y = out + r * depth;
    int32_t multiplier;
    int shift;
    kiln_inv_sqrt_multiplier(sum_of_squares(depth, x, true, in_zero_point), &multiplier, &shift);
    for (int32_t c = 0; c < depth; c++) {
      const int32_t v = kiln_mul_by_quantized_multiplier(x[c] - in_zero_point, multiplier, shift + 7);
      y[c] = (int8_t)kiln_clamp_i32(v, INT8_MIN, INT8_MAX);
    }
  }
}

void kiln_u8_l2norm_ref(int64_t outer, int32_t depth, const uint8_t *in, uint8_t *out,
                        int32_t in_zero_point) {
  for (int64_t r = 0; r < outer; r++) {
    const uint8_t *x = in + r * depth;
    uint8_t *y = out + r * depth;
    int32_t multiplier;
    int shift;
    kiln_inv_sqrt_multiplier(sum_of_squares(depth, x, false, in_zero_point), &multiplier, &shift);
    for (int32_t c = 0; c < depth; c++) {
      const int32_t v = kiln_mul_by_quantized_multiplier_smaller_than_one(
          128 * (x[c] - in_zero_point), multiplier, shift);
      y[c] = (uint8_t)kiln_clamp_i32(128 + v, 0, UINT8_MAX);
    }
  }
}
