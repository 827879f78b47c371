/*
 * kernels/ref/activation_ref.c: reference kernels of the one-input
 * activations: RELU, RELU6, RELU_N1_TO_1, LEAKY_RELU, HARD_SWISH, LOGISTIC
 * and TANH (see elementwise_ref.h for the contracts).
 *
 * Quantized arithmetic follows TFLite's reference path as registered by
 * BuiltinRefOpResolver: activations.cc QuantizedReluX, reference
 * leaky_relu.h, hard_swish.h, and for LOGISTIC/TANH the 256-entry tables of
 * LUTPopulate. Float expressions are TFLite's, operation for operation, so
 * that results round the same way.
 */
#include <math.h>

#include "kernels/fixedpoint.h"
#include "kernels/quant_math.h"
#include "kernels/ref/elementwise_ref.h"

/* ---- RELU, RELU6, RELU_N1_TO_1 ---- */

void kiln_f32_relu_ref(int64_t n, const float *in, float *out) {
  for (int64_t i = 0; i < n; i++) out[i] = in[i] < 0.0f ? 0.0f : in[i];
}

void kiln_f32_relu6_ref(int64_t n, const float *in, float *out) {
  /* NaN stays NaN, as LiteRT computes it. */
  for (int64_t i = 0; i < n; i++) {
    const float x = in[i];
    out[i] = x > 6.0f ? 6.0f : (x < 0.0f ? 0.0f : x);
  }
}

void kiln_f32_relu_n1_to_1_ref(int64_t n, const float *in, float *out) {
  for (int64_t i = 0; i < n; i++) {
    const float x = in[i];
    out[i] = x > 1.0f ? 1.0f : (x < -1.0f ? -1.0f : x);
  }
}

/* TFLite QuantizeMultiplier of a float-computed rescale; false unless the
 * rescale is finite, >= 0 and the shift at most 30. */
static bool quantize_rescale(float real, int32_t *multiplier, int32_t *shift) {
  if (!isfinite(real) || real < 0) return false;
  int s;
  kiln_quantize_multiplier((double)real, multiplier, &s);
  if (s > 30) return false;
  *shift = s;
  return true;
}

bool kiln_relu_q_init(float in_scale, int32_t in_zero_point, float out_scale,
                      int32_t out_zero_point, int32_t act_min, int32_t act_max, kiln_relu_q *p) {
  if (!(out_scale > 0)) return false;
  p->in_zero_point = in_zero_point;
  p->out_zero_point = out_zero_point;
  p->act_min = act_min;
  p->act_max = act_max;
  return quantize_rescale(in_scale / out_scale, &p->multiplier, &p->shift);
}

static inline int32_t relu_q(int32_t x, const kiln_relu_q *p) {
  const int32_t v = p->out_zero_point +
                    kiln_mul_by_quantized_multiplier(x - p->in_zero_point, p->multiplier, p->shift);
  return kiln_clamp_i32(v, p->act_min, p->act_max);
}

void kiln_s8_relu_ref(int64_t n, const int8_t *in, int8_t *out, const kiln_relu_q *p) {
  for (int64_t i = 0; i < n; i++) out[i] = (int8_t)relu_q(in[i], p);
}

void kiln_u8_relu_ref(int64_t n, const uint8_t *in, uint8_t *out, const kiln_relu_q *p) {
  for (int64_t i = 0; i < n; i++) out[i] = (uint8_t)relu_q(in[i], p);
}

/* ---- LEAKY_RELU ---- */

bool kiln_leaky_relu_q_init(float in_scale, int32_t in_zero_point, float out_scale,
                            int32_t out_zero_point, float alpha, kiln_leaky_relu_q *p) {
  if (!(out_scale > 0) || !isfinite(alpha)) return false;
  p->in_zero_point = in_zero_point;
  p->out_zero_point = out_zero_point;
  /* TFLite quantizes the signed alpha rescale, then the kernel multiplies by
   * its magnitude and negates the product. */
  const float real_alpha = in_scale * alpha / out_scale;
  p->alpha_negative = real_alpha < 0;
  if (!quantize_rescale(p->alpha_negative ? -real_alpha : real_alpha, &p->alpha_multiplier,
                        &p->alpha_shift))
    return false;
  return quantize_rescale(in_scale / out_scale, &p->identity_multiplier, &p->identity_shift);
}

static inline int32_t leaky_relu_q(int32_t x, const kiln_leaky_relu_q *p, int32_t qmin,
                                   int32_t qmax) {
  const int32_t in = x - p->in_zero_point;
  int32_t out = p->out_zero_point;
  if (in >= 0) {
    out += kiln_mul_by_quantized_multiplier(in, p->identity_multiplier, p->identity_shift);
  } else {
    const int32_t scaled = kiln_mul_by_quantized_multiplier(in, p->alpha_multiplier, p->alpha_shift);
    out += p->alpha_negative ? -scaled : scaled;
  }
  return kiln_clamp_i32(out, qmin, qmax);
}

void kiln_f32_leaky_relu_ref(int64_t n, const float *in, float *out, float alpha) {
  for (int64_t i = 0; i < n; i++) out[i] = in[i] > 0 ? in[i] : in[i] * alpha;
}

void kiln_s8_leaky_relu_ref(int64_t n, const int8_t *in, int8_t *out, const kiln_leaky_relu_q *p) {
  for (int64_t i = 0; i < n; i++) out[i] = (int8_t)leaky_relu_q(in[i], p, INT8_MIN, INT8_MAX);
}

void kiln_u8_leaky_relu_ref(int64_t n, const uint8_t *in, uint8_t *out,
                            const kiln_leaky_relu_q *p) {
  for (int64_t i = 0; i < n; i++) out[i] = (uint8_t)leaky_relu_q(in[i], p, 0, UINT8_MAX);
}

/* ---- HARD_SWISH ---- */

/* TFLite DownScaleInt32ToInt16Multiplier: Q31 -> Q15 with rounding. */
static int16_t downscale_multiplier(int32_t m) {
  if (m >= INT32_MAX - (1 << 15)) return INT16_MAX;
  return (int16_t)((m + (1 << 15)) >> 16);
}

bool kiln_hard_swish_q_init(float in_scale, int32_t in_zero_point, float out_scale,
                            int32_t out_zero_point, kiln_hard_swish_q *p) {
  if (!(in_scale > 0) || !(out_scale > 0) || !isfinite(in_scale) || !isfinite(out_scale))
    return false;
  p->in_zero_point = in_zero_point;
  p->out_zero_point = out_zero_point;
  const float hires_input_scale = (1.0f / 128.0f) * in_scale;
  const float reluish_scale = 3.0f / 32768.0f;
  const float output_multiplier = hires_input_scale / out_scale;
  const float reluish_multiplier = hires_input_scale / reluish_scale;
  if (!isfinite(output_multiplier) || !isfinite(reluish_multiplier)) return false;
  int32_t m32;
  int exponent;
  kiln_quantize_multiplier((double)output_multiplier, &m32, &exponent);
  p->output_multiplier = downscale_multiplier(m32);
  p->output_exponent = exponent;
  kiln_quantize_multiplier((double)reluish_multiplier, &m32, &exponent);
  p->reluish_multiplier = downscale_multiplier(m32);
  p->reluish_exponent = exponent;
  return p->output_exponent <= 0 && p->reluish_exponent <= 31;
}

static inline int32_t hard_swish_q(int32_t x, const kiln_hard_swish_q *p, int32_t qmin,
                                   int32_t qmax) {
  const int16_t input_value = (int16_t)(x - p->in_zero_point);
  /* Move the significant bits up: the input on a 128x finer scale. */
  const int16_t hires = (int16_t)(input_value * (1 << 7));
  /* The input on the output scale, before the final right shift. */
  const int16_t preshift_output_scale = kiln_srdhm16(hires, p->output_multiplier);
  /* "reluish": the input rescaled so that 3.0 maps to 32768, saturating,
   * then mapped from [-1, 1] to [0, 1]. */
  int16_t reluish = hires;
  if (p->reluish_exponent > 0)
    reluish = kiln_saturating_left_shift16(reluish, p->reluish_exponent - 1);
  reluish = kiln_srdhm16(reluish, p->reluish_multiplier);
  if (p->reluish_exponent > 0) reluish = kiln_saturating_left_shift16(reluish, 1);
  if (p->reluish_exponent < 0) reluish = kiln_rounding_divide_by_pot16(reluish, -p->reluish_exponent);
  reluish = (int16_t)((reluish + (1 << 15)) >> 1);
  const int16_t preshift_output = kiln_sdhm16(reluish, preshift_output_scale);
  int16_t v = kiln_rounding_divide_by_pot16(preshift_output, -p->output_exponent);
  v = (int16_t)(v + p->out_zero_point);
  return v < qmin ? qmin : (v > qmax ? qmax : v);
}

void kiln_f32_hard_swish_ref(int64_t n, const float *in, float *out) {
  for (int64_t i = 0; i < n; i++) {
    const float x = in[i];
    /* x * std::min(6.f, std::max(0.f, x + 3)) / 6 */
    const float t = x + 3.0f;
    const float relu = 0.0f < t ? t : 0.0f;
    const float relu6 = relu < 6.0f ? relu : 6.0f;
    out[i] = x * relu6 / 6.0f;
  }
}

void kiln_s8_hard_swish_ref(int64_t n, const int8_t *in, int8_t *out, const kiln_hard_swish_q *p) {
  for (int64_t i = 0; i < n; i++) out[i] = (int8_t)hard_swish_q(in[i], p, INT8_MIN, INT8_MAX);
}

void kiln_u8_hard_swish_ref(int64_t n, const uint8_t *in, uint8_t *out,
                            const kiln_hard_swish_q *p) {
  for (int64_t i = 0; i < n; i++) out[i] = (uint8_t)hard_swish_q(in[i], p, 0, UINT8_MAX);
}

/* ---- LOGISTIC, TANH ---- */

void kiln_f32_logistic_ref(int64_t n, const float *in, float *out) {
  const float cutoff_upper = 16.619047164916992188f;
  const float cutoff_lower = -9.0f;
  for (int64_t i = 0; i < n; i++) {
    const float x = in[i];
    if (x > cutoff_upper)
      out[i] = 1.0f;
    else if (x < cutoff_lower)
      out[i] = expf(x);
    else
      out[i] = 1.0f / (1.0f + expf(-x));
  }
}

void kiln_f32_tanh_ref(int64_t n, const float *in, float *out) {
  for (int64_t i = 0; i < n; i++) out[i] = tanhf(in[i]);
}

float kiln_logistic_table_fn(float x) { return 1.0f / (1.0f + expf(-x)); }

float kiln_tanh_table_fn(float x) { return tanhf(x); }

/* TFLite LUTPopulateInt8 for the value range [qmin, qmax]; the table is
 * indexed by the low 8 bits of the quantized input. */
static void lut_init(float in_scale, int32_t in_zero_point, float out_scale,
                     int32_t out_zero_point, float (*fn)(float), int32_t qmin, int32_t qmax,
                     uint8_t lut[256]) {
  const float inverse_scale = 1 / out_scale;
  for (int32_t v = qmin; v <= qmax; v++) {
    const float dequantized = in_scale * (float)(v - in_zero_point);
    const float transformed = fn(dequantized);
    const float rescaled = roundf(transformed * inverse_scale);
    const float shifted = rescaled + (float)out_zero_point;
    /* Out-of-range values only arise from non-finite transforms; clamp
     * before converting so that the conversion is defined. */
    int32_t q;
    if (!(shifted >= (float)qmin))
      q = qmin;
    else if (shifted > (float)qmax)
      q = qmax;
    else
      q = (int32_t)shifted;
    lut[(uint8_t)v] = (uint8_t)q;
  }
}

void kiln_s8_lut_init(float in_scale, int32_t in_zero_point, float out_scale,
                      int32_t out_zero_point, float (*fn)(float), int8_t lut[256]) {
  lut_init(in_scale, in_zero_point, out_scale, out_zero_point, fn, INT8_MIN, INT8_MAX,
           (uint8_t *)lut);
}

void kiln_u8_lut_init(float in_scale, int32_t in_zero_point, float out_scale,
                      int32_t out_zero_point, float (*fn)(float), uint8_t lut[256]) {
  lut_init(in_scale, in_zero_point, out_scale, out_zero_point, fn, 0, UINT8_MAX, lut);
}

void kiln_s8_lut_ref(int64_t n, const int8_t *in, int8_t *out, const int8_t lut[256]) {
  for (int64_t i = 0; i < n; i++) out[i] = lut[(uint8_t)in[i]];
}

void kiln_u8_lut_ref(int64_t n, const uint8_t *in, uint8_t *out, const uint8_t lut[256]) {
  for (int64_t i = 0; i < n; i++) out[i] = lut[in[i]];
}
