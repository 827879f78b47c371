/*
 * kernels/ref/quantize_ref.c: reference QUANTIZE, requantization, DEQUANTIZE
 * and IEEE binary16 conversion (see shape_ref.h). The float/double
 * intermediates follow TFLite's reference/quantize.h, requantize.h and
 * dequantize.h exactly.
 */
#include <math.h>
#include <string.h>

#include "base/half.h"
#include "kernels/quant_math.h"
#include "kernels/ref/shape_ref.h"

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

/* ---- QUANTIZE ---- */

/* float -> int32 as x86's cvttss2si does it (what TFLite's static_cast
 * compiles to): truncation, with NaN and out-of-range values giving
 * INT32_MIN. */
static int32_t f32_to_i32_x86(float x) {
  if (!(x > -2147483904.0f && x < 2147483648.0f)) return INT32_MIN;
  return (int32_t)x;
}

/* TFLite AffineQuantize for one value, as LiteRT's x86 build computes it:
 * static_cast<int32_t>(round(x / scale)) + zero_point, clamped in int32.
 * NaN, infinities and values beyond int32 convert to INT32_MIN, and adding
 * a negative zero point then wraps around to near INT32_MAX; that is
 * reproduced so such inputs give what LiteRT gives. */
static int32_t quantize_one(float x, float scale, int32_t zero_point, int32_t qmin, int32_t qmax) {
  const int32_t q = f32_to_i32_x86(roundf(x / scale));
  const uint32_t sum = (uint32_t)q + (uint32_t)zero_point; /* wraps like the x86 add */
  const int32_t unclamped = sum < 0x80000000u ? (int32_t)sum : -(int32_t)(~sum) - 1;
  return kiln_clamp_i32(unclamped, qmin, qmax);
}

void kiln_f32_quantize_s8_ref(int64_t n, const float *in, float scale, int32_t zero_point,
                              int8_t *out) {
  for (int64_t i = 0; i < n; i++)
    out[i] = (int8_t)quantize_one(in[i], scale, zero_point, -128, 127);
}

void kiln_f32_quantize_u8_ref(int64_t n, const float *in, float scale, int32_t zero_point,
                              uint8_t *out) {
  for (int64_t i = 0; i < n; i++) out[i] = (uint8_t)quantize_one(in[i], scale, zero_point, 0, 255);
}

void kiln_f32_quantize_s8_per_axis_ref(int64_t outer, int32_t axis_dim, int64_t inner,
                                       const float *in, const float *scale,
                                       const int32_t *zero_point, int8_t *out) {
  for (int64_t o = 0; o < outer; o++)
    for (int32_t c = 0; c < axis_dim; c++)
      for (int64_t i = 0; i < inner; i++) {
        const int64_t k = (o * axis_dim + c) * inner + i;
        out[k] = (int8_t)quantize_one(in[k], scale[c], zero_point[c], -128, 127);
      }
}

void kiln_f32_quantize_u8_per_axis_ref(int64_t outer, int32_t axis_dim, int64_t inner,
                                       const float *in, const float *scale,
                                       const int32_t *zero_point, uint8_t *out) {
  for (int64_t o = 0; o < outer; o++)
    for (int32_t c = 0; c < axis_dim; c++)
      for (int64_t i = 0; i < inner; i++) {
        const int64_t k = (o * axis_dim + c) * inner + i;
        out[k] = (uint8_t)quantize_one(in[k], scale[c], zero_point[c], 0, 255);
      }
}

/* ---- requantization ---- */

static int32_t requantize_one(int32_t q, int32_t in_zp, int32_t multiplier, int shift,
                              int32_t out_zp, int32_t qmin, int32_t qmax) {
  const int32_t v = kiln_mul_by_quantized_multiplier(q - in_zp, multiplier, shift) + out_zp;
  return kiln_clamp_i32(v, qmin, qmax);
}

void kiln_s8_requantize_s8_ref(int64_t n, const int8_t *in, int32_t in_zp, int32_t multiplier,
                               int shift, int32_t out_zp, int8_t *out) {
  for (int64_t i = 0; i < n; i++)
    out[i] = (int8_t)requantize_one(in[i], in_zp, multiplier, shift, out_zp, -128, 127);
}

void kiln_s8_requantize_u8_ref(int64_t n, const int8_t *in, int32_t in_zp, int32_t multiplier,
                               int shift, int32_t out_zp, uint8_t *out) {
  for (int64_t i = 0; i < n; i++)
    out[i] = (uint8_t)requantize_one(in[i], in_zp, multiplier, shift, out_zp, 0, 255);
}

void kiln_u8_requantize_s8_ref(int64_t n, const uint8_t *in, int32_t in_zp, int32_t multiplier,
                               int shift, int32_t out_zp, int8_t *out) {
  for (int64_t i = 0; i < n; i++)
    out[i] = (int8_t)requantize_one(in[i], in_zp, multiplier, shift, out_zp, -128, 127);
}

void kiln_u8_requantize_u8_ref(int64_t n, const uint8_t *in, int32_t in_zp, int32_t multiplier,
                               int shift, int32_t out_zp, uint8_t *out) {
  for (int64_t i = 0; i < n; i++)
    out[i] = (uint8_t)requantize_one(in[i], in_zp, multiplier, shift, out_zp, 0, 255);
}

/* ---- DEQUANTIZE ---- */

void kiln_s8_dequantize_ref(int64_t n, const int8_t *in, float scale, int32_t zero_point,
                            float *out) {
  const double s = scale;
  for (int64_t i = 0; i < n; i++) out[i] = (float)(s * (double)(in[i] - zero_point));
}

void kiln_u8_dequantize_ref(int64_t n, const uint8_t *in, float scale, int32_t zero_point,
                            float *out) {
  const double s = scale;
  for (int64_t i = 0; i < n; i++) out[i] = (float)(s * (double)(in[i] - zero_point));
}

void kiln_s16_dequantize_ref(int64_t n, const int16_t *in, float scale, int32_t zero_point,
                             float *out) {
  const double s = scale;
  for (int64_t i = 0; i < n; i++) out[i] = (float)(s * (double)(in[i] - zero_point));
}

void kiln_s8_dequantize_per_axis_ref(int64_t outer, int32_t axis_dim, int64_t inner,
                                     const int8_t *in, const float *scale,
                                     const int32_t *zero_point, float *out) {
  for (int64_t o = 0; o < outer; o++)
    for (int32_t c = 0; c < axis_dim; c++)
      for (int64_t i = 0; i < inner; i++) {
        const int64_t k = (o * axis_dim + c) * inner + i;
        out[k] = scale[c] * (float)(in[k] - zero_point[c]);
      }
}

void kiln_u8_dequantize_per_axis_ref(int64_t outer, int32_t axis_dim, int64_t inner,
                                     const uint8_t *in, const float *scale,
                                     const int32_t *zero_point, float *out) {
  for (int64_t o = 0; o < outer; o++)
    for (int32_t c = 0; c < axis_dim; c++)
      for (int64_t i = 0; i < inner; i++) {
        const int64_t k = (o * axis_dim + c) * inner + i;
        out[k] = scale[c] * (float)(in[k] - zero_point[c]);
      }
}

void kiln_f16_dequantize_ref(int64_t n, const uint16_t *in, float *out) {
  for (int64_t i = 0; i < n; i++) out[i] = kiln_half_to_float(in[i]);
}

