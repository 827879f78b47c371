/*
 * kernels/ref/shape_ref.h: reference kernels of the shape family (see
 * kernels/kernels.h): CONCATENATION, PAD/PADV2, RESIZE_BILINEAR,
 * RESIZE_NEAREST_NEIGHBOR, QUANTIZE, DEQUANTIZE, and IEEE half <-> float
 * conversion. RESHAPE and SQUEEZE need no kernel (a byte copy).
 *
 * Bit-exact with TFLite's reference kernels (reference/concatenation.h,
 * pad.h, resize_bilinear.h, resize_nearest_neighbor.h, quantize.h,
 * requantize.h, dequantize.h), including their float/double intermediates.
 * Implemented in shape_ref.c (concat, pad), resize_ref.c and quantize_ref.c.
 */
#ifndef KILN_KERNELS_REF_SHAPE_REF_H
#define KILN_KERNELS_REF_SHAPE_REF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- CONCATENATION ----
 * The output is outer blocks; block k holds, for each input i in order,
 * input i's k-th chunk of chunk_bytes[i] bytes (chunk = size of the concat
 * axis in input i times the product of the dimensions after the axis, times
 * the element size). outer = product of the dimensions before the axis. */
void kiln_concat_ref(int32_t n_inputs, const void *const *inputs, const int64_t *chunk_bytes,
                     int64_t outer, void *out);

/* How one uint8 input is brought to the output's quantization
 * (TFLite ConcatenationWithScaling): copied when its scale and zero point
 * equal the output's, else q_out = round(q * scale + bias) + out_zp clamped
 * to [0, 255], all in float, with scale = in_scale * (1 / out_scale) and
 * bias = -in_zp * scale. */
typedef struct kiln_u8_rescale {
  bool copy;
  float scale;
  float bias;
} kiln_u8_rescale;

/* Fills r for one input from the two quantizations. */
kiln_u8_rescale kiln_u8_rescale_make(float in_scale, int32_t in_zp, float out_scale,
                                     int32_t out_zp);

/* uint8 concatenation with per-input rescaling; chunks are in elements. */
void kiln_u8_concat_ref(int32_t n_inputs, const uint8_t *const *inputs, const int64_t *chunk,
                        int64_t outer, const kiln_u8_rescale *rescale, int32_t out_zp,
                        uint8_t *out);

/* ---- PAD ----
 * in_shape: rank dims (0 < rank <= 6). before/after: padding per dimension
 * (>= 0). Output dims are in_shape[d] + before[d] + after[d]; padding cells
 * hold the elem_size bytes at pad_value. */
void kiln_pad_ref(int32_t rank, const int32_t *in_shape, const int32_t *before,
                  const int32_t *after, size_t elem_size, const void *in, const void *pad_value,
                  void *out);

/* ---- RESIZE ----
 * in_shape = [N, H, W, C]; output [N, out_h, out_w, C]. For bilinear,
 * align_corners and half_pixel_centers are not both set. */
void kiln_f32_resize_bilinear_ref(const int32_t in_shape[4], const float *in, int32_t out_h,
                                  int32_t out_w, bool align_corners, bool half_pixel_centers,
                                  float *out);
/* uint8 uses TFLite's float interpolation, adding 0.5 and truncating. */
void kiln_u8_resize_bilinear_ref(const int32_t in_shape[4], const uint8_t *in, int32_t out_h,
                                 int32_t out_w, bool align_corners, bool half_pixel_centers,
                                 uint8_t *out);
/* int8 uses TFLite's 10-bit fixed-point interpolation (ResizeBilinearInteger). */
void kiln_s8_resize_bilinear_ref(const int32_t in_shape[4], const int8_t *in, int32_t out_h,
                                 int32_t out_w, bool align_corners, bool half_pixel_centers,
                                 int8_t *out);

/* True when TFLite's fixed-point source coordinates stay inside an input
 * dimension of size in for every output index (for some extreme upscales
 * the rounded 10-bit scale steps past the last row, where TFLite reads
 * outside the tensor; kiln refuses those sizes). */
bool kiln_resize_bilinear_fixed_in_bounds(int32_t in, int32_t out, bool align_corners,
                                          bool half_pixel_centers);

/* Nearest neighbor for any element size (a copy of elem_size * C bytes per
 * output pixel), TFLite GetNearestNeighbor rounding. */
void kiln_resize_nearest_ref(const int32_t in_shape[4], size_t elem_size, const void *in,
                             int32_t out_h, int32_t out_w, bool align_corners,
                             bool half_pixel_centers, void *out);

/* ---- QUANTIZE ----
 * float -> int8/uint8: q = (int32)round(x / scale) + zero_point clamped to
 * the type (float division, halves away from zero). As in LiteRT on x86,
 * NaN, infinities and quotients beyond int32 convert to INT32_MIN, so they
 * give the type's minimum, or its maximum when a negative zero point wraps
 * the sum around. */
void kiln_f32_quantize_s8_ref(int64_t n, const float *in, float scale, int32_t zero_point,
                              int8_t *out);
void kiln_f32_quantize_u8_ref(int64_t n, const float *in, float scale, int32_t zero_point,
                              uint8_t *out);

/* Per-axis variants: the tensor is [outer, axis_dim, inner] and channel c
 * uses scale[c], zero_point[c]. */
void kiln_f32_quantize_s8_per_axis_ref(int64_t outer, int32_t axis_dim, int64_t inner,
                                       const float *in, const float *scale,
                                       const int32_t *zero_point, int8_t *out);
void kiln_f32_quantize_u8_per_axis_ref(int64_t outer, int32_t axis_dim, int64_t inner,
                                       const float *in, const float *scale,
                                       const int32_t *zero_point, uint8_t *out);

/* Requantization between 8-bit types (TFLite Requantize):
 * out = clamp(MultiplyByQuantizedMultiplier(q - in_zp, multiplier, shift)
 * + out_zp), with multiplier/shift from kiln_quantize_multiplier of
 * in_scale / out_scale. */
void kiln_s8_requantize_s8_ref(int64_t n, const int8_t *in, int32_t in_zp, int32_t multiplier,
                               int shift, int32_t out_zp, int8_t *out);
void kiln_s8_requantize_u8_ref(int64_t n, const int8_t *in, int32_t in_zp, int32_t multiplier,
                               int shift, int32_t out_zp, uint8_t *out);
void kiln_u8_requantize_s8_ref(int64_t n, const uint8_t *in, int32_t in_zp, int32_t multiplier,
                               int shift, int32_t out_zp, int8_t *out);
void kiln_u8_requantize_u8_ref(int64_t n, const uint8_t *in, int32_t in_zp, int32_t multiplier,
                               int shift, int32_t out_zp, uint8_t *out);

/* ---- DEQUANTIZE ----
 * Per tensor: x = (float)((double)scale * (q - zero_point)). */
void kiln_s8_dequantize_ref(int64_t n, const int8_t *in, float scale, int32_t zero_point,
                            float *out);
void kiln_u8_dequantize_ref(int64_t n, const uint8_t *in, float scale, int32_t zero_point,
                            float *out);
void kiln_s16_dequantize_ref(int64_t n, const int16_t *in, float scale, int32_t zero_point,
                             float *out);
/* Per axis ([outer, axis_dim, inner]): x = scale[c] * (float)(q - zp[c]). */
void kiln_s8_dequantize_per_axis_ref(int64_t outer, int32_t axis_dim, int64_t inner,
                                     const int8_t *in, const float *scale,
                                     const int32_t *zero_point, float *out);
void kiln_u8_dequantize_per_axis_ref(int64_t outer, int32_t axis_dim, int64_t inner,
                                     const uint8_t *in, const float *scale,
                                     const int32_t *zero_point, float *out);
/* IEEE half (binary16 bit patterns) to float, exactly. */
void kiln_f16_dequantize_ref(int64_t n, const uint16_t *in, float *out);


#endif
