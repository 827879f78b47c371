/*
 * kernels/ref/conv_ref.h: reference kernels of the conv family (see
 * kernels/kernels.h): CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED,
 * TRANSPOSE_CONV and MediaPipe's Convolution2DTransposeBias, for float32,
 * int8 (per-axis symmetric int8 weights, int32 bias) and uint8 (asymmetric,
 * per-tensor uint8 weights, int32 bias).
 *
 * The int8/uint8 kernels are bit-exact with TFLite's reference kernels
 * (reference_integer_ops::ConvPerChannel, DepthwiseConvPerChannel,
 * FullyConnected(PerChannel), TransposeConv; reference_ops::Conv,
 * DepthwiseConv, FullyConnected, TransposeConv for uint8): the int32
 * accumulator wraps modulo 2^32 exactly as TFLite's does, is rescaled by
 * kiln_mul_by_quantized_multiplier, offset by the output zero point and
 * clamped. The float kernels add their products in TFLite's order.
 *
 * A kernel sees only buffers and a params struct, which prepare fills once
 * (the helpers at the end of this header compute its numbers from tensor
 * shapes and scales, exactly as TFLite's Prepare functions do), and which an
 * optimized kernel can take unchanged. Kernels never allocate and never fail;
 * every check belongs to prepare.
 *
 * Layouts: activations NHWC; CONV_2D and TRANSPOSE_CONV filters OHWI
 * [out_c, filter_h, filter_w, in_c / groups]; DEPTHWISE_CONV_2D filters
 * [1, filter_h, filter_w, out_c]; FULLY_CONNECTED weights [out_depth,
 * in_depth]; biases [out_c]. All row-major.
 */
#ifndef KILN_KERNELS_REF_CONV_REF_H
#define KILN_KERNELS_REF_CONV_REF_H

#include <stdbool.h>
#include <stdint.h>

/* Geometry and requantization parameters of the spatial conv kernels
 * (conv2d, depthwise_conv2d, transpose_conv). Fields a kernel does not use
 * are ignored (e.g. groups by depthwise, dilation by transpose_conv, the
 * quantized fields by float kernels). */
typedef struct kiln_conv_params {
  int32_t batch;
  int32_t in_h, in_w, in_c;
  int32_t out_h, out_w, out_c;
  int32_t filter_h, filter_w;
  int32_t groups;           /* conv2d: in_c / filter input channels (1: ordinary) */
  int32_t depth_multiplier; /* depthwise: out_c / in_c */
  int32_t stride_h, stride_w;
  int32_t dilation_h, dilation_w; /* 1: none (transpose_conv: always 1) */
  /* Padding before the first row / column. TFLite's asymmetric SAME padding
   * puts the odd extra row / column after the last: bottom padding is
   * pad_h + pad_h_offset, right padding pad_w + pad_w_offset. The reference
   * kernels only need pad_h and pad_w; the offsets are for kernels that
   * materialize the padding. */
  int32_t pad_h, pad_w;
  int32_t pad_h_offset, pad_w_offset;
  /* Quantized kernels only. real = scale * (q - zero_point). */
  int32_t input_offset;  /* -input zero point */
  int32_t filter_offset; /* -filter zero point (uint8 only; int8 filters are symmetric) */
  int32_t output_offset; /* output zero point */
  /* Per output channel [out_c]: acc * multiplier * 2^(shift - 31) (see
   * kiln_mul_by_quantized_multiplier); uint8 repeats one value. */
  const int32_t *multiplier;
  const int32_t *shift;
  int32_t act_min, act_max; /* quantized output clamp (fused activation) */
  /* Float kernels only: output clamp (fused activation). */
  float float_min, float_max;
} kiln_conv_params;

/* Parameters of the fully connected kernels. */
typedef struct kiln_fc_params {
  int32_t batch;     /* rows: input elements / in_depth */
  int32_t in_depth;  /* accumulation depth (weights' second dimension) */
  int32_t out_depth; /* units (weights' first dimension) */
  int32_t input_offset;  /* -input zero point */
  int32_t filter_offset; /* -weights zero point (per-tensor weights; 0 per-channel) */
  int32_t output_offset; /* output zero point */
  /* [out_depth]: double(input scale) * double(weight scale) / double(output
   * scale); per-tensor weights repeat one value. TFLite's reference
   * FULLY_CONNECTED (int8 and uint8, per-tensor and per-channel) rescales
   * the int32 accumulator with this in double precision and rounds once,
   * unlike CONV_2D's fixed-point multiplier. */
  const double *scale;
  int32_t act_min, act_max;
  float float_min, float_max;
} kiln_fc_params;

/* ---- CONV_2D ----
 * input  [batch, in_h, in_w, in_c]
 * filter [out_c, filter_h, filter_w, in_c / groups]; output channel o reads
 *        input channels [g * in_c/groups, (g+1) * in_c/groups) with
 *        g = o / (out_c / groups)
 * bias   [out_c] or NULL
 * output [batch, out_h, out_w, out_c] */
void kiln_f32_conv2d_ref(const kiln_conv_params *p, const float *input, const float *filter,
                         const float *bias, float *output);
void kiln_s8_conv2d_ref(const kiln_conv_params *p, const int8_t *input, const int8_t *filter,
                        const int32_t *bias, int8_t *output);
void kiln_u8_conv2d_ref(const kiln_conv_params *p, const uint8_t *input, const uint8_t *filter,
                        const int32_t *bias, uint8_t *output);

/* ---- DEPTHWISE_CONV_2D ----
 * input  [batch, in_h, in_w, in_c]
 * filter [1, filter_h, filter_w, out_c], out_c = in_c * depth_multiplier;
 *        output channel o = i * depth_multiplier + m reads input channel i
 * bias   [out_c] or NULL
 * output [batch, out_h, out_w, out_c] */
void kiln_f32_depthwise_conv2d_ref(const kiln_conv_params *p, const float *input,
                                   const float *filter, const float *bias, float *output);
void kiln_s8_depthwise_conv2d_ref(const kiln_conv_params *p, const int8_t *input,
                                  const int8_t *filter, const int32_t *bias, int8_t *output);
void kiln_u8_depthwise_conv2d_ref(const kiln_conv_params *p, const uint8_t *input,
                                  const uint8_t *filter, const int32_t *bias, uint8_t *output);

/* ---- FULLY_CONNECTED ----
 * input   [batch, in_depth] (any shape with that many elements, row-major)
 * weights [out_depth, in_depth]
 * bias    [out_depth] or NULL
 * output  [batch, out_depth] */
void kiln_f32_fully_connected_ref(const kiln_fc_params *p, const float *input,
                                  const float *weights, const float *bias, float *output);
void kiln_s8_fully_connected_ref(const kiln_fc_params *p, const int8_t *input,
                                 const int8_t *weights, const int32_t *bias, int8_t *output);
void kiln_u8_fully_connected_ref(const kiln_fc_params *p, const uint8_t *input,
                                 const uint8_t *weights, const int32_t *bias, uint8_t *output);

/* ---- TRANSPOSE_CONV (builtin) ----
 * input   [batch, in_h, in_w, in_c]
 * filter  [out_c, filter_h, filter_w, in_c]
 * bias    [out_c] or NULL
 * scratch [batch * out_h * out_w * out_c] int32 (quantized kernels only;
 *         contents on entry do not matter)
 * output  [batch, out_h, out_w, out_c]
 * Input pixel (y, x) adds filter tap (fy, fx) into output pixel
 * (y * stride_h - pad_h + fy, x * stride_w - pad_w + fx) when that lies
 * inside the output. The float kernel sums into a zeroed output, then adds
 * the bias, then clamps to [float_min, float_max]. */
void kiln_f32_transpose_conv_ref(const kiln_conv_params *p, const float *input,
                                 const float *filter, const float *bias, float *output);
void kiln_s8_transpose_conv_ref(const kiln_conv_params *p, const int8_t *input,
                                const int8_t *filter, const int32_t *bias, int32_t *scratch,
                                int8_t *output);
void kiln_u8_transpose_conv_ref(const kiln_conv_params *p, const uint8_t *input,
                                const uint8_t *filter, const int32_t *bias, int32_t *scratch,
                                uint8_t *output);

/* ---- MediaPipe Convolution2DTransposeBias (float only) ----
 * Shapes as kiln_f32_transpose_conv_ref, bias required. Differs in the order
 * of the float sums: the output starts as the bias and the products are
 * added to it; no clamp. */
void kiln_f32_transpose_conv_bias_ref(const kiln_conv_params *p, const float *input,
                                      const float *filter, const float *bias, float *output);

/* ---- Parameters from shapes and scales (pure functions) ---- */

/* TFLite ComputeOutSize: output length of a window of `filter` taps spaced
 * `dilation` apart, moved by `stride` over `in` positions, with SAME
 * (same_padding) or VALID padding. Computed in 64 bits; may be <= 0 when
 * the window does not fit (the caller refuses that). stride >= 1,
 * dilation >= 1. */
int64_t kiln_conv_out_size(bool same_padding, int32_t in, int32_t filter, int32_t stride,
                           int32_t dilation);

/* TFLite ComputePaddingWithOffset: padding before the first position for an
 * output of length `out`; *offset receives the extra padding after the last
 * (0 or 1). */
int32_t kiln_conv_pad(int32_t stride, int32_t dilation, int32_t in, int32_t filter, int32_t out,
                      int32_t *offset);

/* Per-channel requantization multiplier, as TFLite's
 * PopulateConvolutionQuantizationParams computes it for each output
 * channel: QuantizeMultiplier(double(input_scale) * double(filter_scale) /
 * double(output_scale)). Used by int8 conv, depthwise, transpose conv and
 * per-channel fully connected (per-tensor int8 weights broadcast their one
 * scale). */
void kiln_conv_multiplier(float input_scale, float filter_scale, float output_scale,
                          int32_t *multiplier, int32_t *shift);

/* The legacy per-tensor multiplier of TFLite's GetQuantizedConvolutionMultipler:
 * the scales' product is taken in float, then divided in double:
 * QuantizeMultiplier(double(float(input_scale * filter_scale)) /
 * double(output_scale)). Used by uint8 conv/depthwise/transpose conv and by
 * per-tensor (int8 or uint8) fully connected. */
void kiln_conv_multiplier_legacy(float input_scale, float filter_scale, float output_scale,
                                 int32_t *multiplier, int32_t *shift);

/* TFLite's check (in GetQuantizedConvolutionMultipler, wherever the legacy
 * multiplier is used with a bias) that the bias scale matches
 * input_scale * filter_scale: |double(in) * double(filter) - double(bias)| /
 * double(out) <= 0.02. */
bool kiln_conv_bias_scale_ok(float input_scale, float filter_scale, float bias_scale,
                             float output_scale);

/* Geometry of MediaPipe's Convolution2DTransposeBias along one axis: with
 * SAME padding the total padding is max(0, filter - (in - 1) % stride - 1),
 * with VALID 0; the output length is stride * (in - 1) + filter - total and
 * the kernel pads total / 2 before the first position. in >= 1, stride >= 1.
 * Returns the output length (64 bits); *pad receives total / 2. */
int64_t kiln_transpose_conv_bias_out_size(bool same_padding, int32_t in, int32_t filter,
                                          int32_t stride, int32_t *pad);

#endif
