/*
 * kernels/ref/softmax_ref.c: reference SOFTMAX along the last axis (see
 * elementwise_ref.h for the contracts).
 *
 * Float follows TFLite reference_ops::Softmax expression for expression.
 * The quantized kernel is TFLite's fixed-point softmax: differences to the
 * row maximum are rescaled by beta * input_scale into Q5.26, exponentiated
 * with gemmlowp's exp_on_negative_values, summed in Q12.19, and each
 * exponential is multiplied by the fixed-point reciprocal of the sum.
 */
#include <float.h>
#include <math.h>

#include "kernels/fixedpoint.h"
#include "kernels/quant_math.h"
#include "kernels/ref/elementwise_ref.h"

enum {
  SCALED_DIFF_INTEGER_BITS = 5, /* Q5.26 input to exp */
  ACCUM_INTEGER_BITS = 12,      /* Q12.19 sum of exponentials */
  OUTPUT_BITS = 8
};

void kiln_f32_softmax_ref(int64_t outer, int32_t depth, const float *in, float *out, float beta) {
  for (int64_t r = 0; r < outer; r++) {
    const float *x = in + r * depth;
    float *y = out + r * depth;
    float max = -FLT_MAX;
    for (int32_t c = 0; c < depth; c++) max = max < x[c] ? x[c] : max;
    float sum = 0.0f;
    for (int32_t c = 0; c < depth; c++) {
      const float e = expf((x[c] - max) * beta);
      y[c] = e;
      sum += e;
    }
    for (int32_t c = 0; c < depth; c++) y[c] = y[c] / sum;
  }
}

bool kiln_softmax_q_init(float beta, float in_scale, kiln_softmax_q *p) {
  /* TFLite PreprocessSoftmaxScaling with 5 integer bits (double rounding). */
  const double max_real_multiplier = (double)(((int64_t)1 << 31) - 1);
  double real = (double)beta * (double)in_scale * (double)(1 << (31 - SCALED_DIFF_INTEGER_BITS));
  if (!(real > 1.0) || !isfinite(real)) return false;
  if (real > max_real_multiplier) real = max_real_multiplier;
  int shift;
  kiln_quantize_multiplier(real, &p->input_multiplier, &shift);
  p->input_left_shift = shift;
  /* TFLite CalculateInputRadius(5, shift, 31): the largest difference whose
   * rescaled value still fits. */
  const double max_input_rescaled = 1.0 * ((1 << SCALED_DIFF_INTEGER_BITS) - 1) *
                                    (double)((int64_t)1 << (31 - SCALED_DIFF_INTEGER_BITS)) /
                                    (double)((int64_t)1 << shift);
  p->diff_min = -(int32_t)floor(max_input_rescaled);
  /* Every 8-bit difference's exponential, computed once: the kernel then
   * looks each one up instead of evaluating the fixed-point exp per
   * element (the same numbers, far fewer instructions). */
  for (int32_t d = 0; d < 256; d++) {
    const int32_t diff = -d;
    p->exp_of_diff[d] =
        diff >= p->diff_min
            ? kiln_fp_exp_on_negative_values(
                  kiln_mul_by_quantized_multiplier_greater_than_one(diff, p->input_multiplier,
                                                                    p->input_left_shift),
                  SCALED_DIFF_INTEGER_BITS)
            : 0;
  }
  return true;
}

/* exp(beta * in_scale * diff) in Q0.31 for a difference to the row maximum
 * (-255 <= diff <= 0) that is >= diff_min. */
static inline int32_t exp_of_diff(int32_t diff, const kiln_softmax_q *p) { return p->exp_of_diff[-diff]; }

/* The element c of a row of int8 (is_signed) or uint8 values. */
static inline int32_t load_q(const void *row, int32_t c, bool is_signed) {
  return is_signed ? ((const int8_t *)row)[c] : ((const uint8_t *)row)[c];
}

/* Softmax of one row of int8 (is_signed) or uint8 values. Each element is
 * read before its output is written, so in == out is allowed. */
static void softmax_row_q(int32_t depth, const void *in, void *out, bool is_signed,
                          const kiln_softmax_q *p) {
  const int32_t qmin = is_signed ? INT8_MIN : 0;
  const int32_t qmax = is_signed ? INT8_MAX : UINT8_MAX;
  int32_t max = qmin;
  for (int32_t c = 0; c < depth; c++) {
    const int32_t v = load_q(in, c, is_signed);
    max = v > max ? v : max;
  }
  int32_t sum = 0; /* Q12.19, wrapping like TFLite's plain int32 add */
  for (int32_t c = 0; c < depth; c++) {
    const int32_t diff = load_q(in, c, is_signed) - max;
    if (diff >= p->diff_min)
      sum = kiln_fp_add(sum, kiln_fp_rescale(exp_of_diff(diff, p), 0, ACCUM_INTEGER_BITS));
  }
  int num_bits_over_unit;
  const int32_t shifted_scale = kiln_fp_reciprocal(sum, ACCUM_INTEGER_BITS, &num_bits_over_unit);
  /* TFLite checks 0 <= exponent <= 31 and aborts otherwise; kiln writes
   * qmin for the row instead. */
  const int exponent = num_bits_over_unit + 31 - OUTPUT_BITS;
  const bool exponent_ok = exponent >= 0 && exponent <= 31;
  for (int32_t c = 0; c < depth; c++) {
    const int32_t diff = load_q(in, c, is_signed) - max;
    int32_t v = qmin;
    if (exponent_ok && diff >= p->diff_min) {
      const int32_t unsat =
          kiln_rounding_divide_by_pot(kiln_srdhm(shifted_scale, exp_of_diff(diff, p)), exponent);
      v = kiln_clamp_i32(unsat + qmin, qmin, qmax);
    }
    if (is_signed)
      ((int8_t *)out)[c] = (int8_t)v;
    else
      ((uint8_t *)out)[c] = (uint8_t)v;
  }
}

void kiln_s8_softmax_ref(int64_t outer, int32_t depth, const int8_t *in, int8_t *out,
                         const kiln_softmax_q *p) {
  for (int64_t r = 0; r < outer; r++) softmax_row_q(depth, in + r * depth, out + r * depth, true, p);
}

void kiln_u8_softmax_ref(int64_t outer, int32_t depth, const uint8_t *in, uint8_t *out,
                         const kiln_softmax_q *p) {
  for (int64_t r = 0; r < outer; r++) softmax_row_q(depth, in + r * depth, out + r * depth, false, p);
}
