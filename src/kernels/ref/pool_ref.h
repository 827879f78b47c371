/*
 * kernels/ref/pool_ref.h: reference kernels of the pool family (see
 * kernels/kernels.h): AVERAGE_POOL_2D, MAX_POOL_2D and MEAN.
 *
 * Bit-exact with TFLite's reference kernels (reference/pooling.h,
 * reference/integer_ops/pooling.h, reference/reduce.h): the same summation
 * order for floats, the same integer rounding for quantized averages, and the
 * same fixed-point rescaling for quantized means.
 *
 * Pooling tensors are NHWC: input [N, H, W, C], output [N, OH, OW, C].
 * Quantized pooling requires input and output to share scale and zero point
 * (TFLite's contract), so the kernels only see clamp bounds.
 */
#ifndef KILN_KERNELS_REF_POOL_REF_H
#define KILN_KERNELS_REF_POOL_REF_H

#include <stdbool.h>
#include <stdint.h>

/* Geometry and clamp bounds of one 2-D pooling window. pad_h / pad_w are the
 * top and left padding (TFLite's padding_values.height / width). */
typedef struct kiln_pool_params {
  int32_t stride_h, stride_w;
  int32_t filter_h, filter_w;
  int32_t pad_h, pad_w;
  float act_min_f, act_max_f; /* float kernels */
  int32_t act_min, act_max;   /* quantized kernels, in output units */
} kiln_pool_params;

/* TFLite ComputeOutSize for dilation 1: SAME -> ceil(in / stride), VALID ->
 * (in + stride - filter) / stride (C division; may be <= 0, which callers
 * must refuse). same_padding selects SAME. stride must be > 0. */
int32_t kiln_pool_out_size(bool same_padding, int32_t in, int32_t filter, int32_t stride);

/* TFLite ComputePaddingWithOffset: the leading (top/left) padding. */
int32_t kiln_pool_padding(int32_t in, int32_t filter, int32_t stride, int32_t out);

/* Average pooling. in_shape = [N, H, W, C]; out_shape = [N, OH, OW, C].
 * Padding cells are excluded from the count. Quantized: sum of raw values,
 * divided with rounding (int8: halves away from zero; uint8: halves up),
 * then clamped to [act_min, act_max]. Every window must overlap the input,
 * which SAME and VALID padding guarantee. */
void kiln_f32_avg_pool_ref(const kiln_pool_params *p, const int32_t in_shape[4], const float *in,
                           const int32_t out_shape[4], float *out);
void kiln_s8_avg_pool_ref(const kiln_pool_params *p, const int32_t in_shape[4], const int8_t *in,
                          const int32_t out_shape[4], int8_t *out);
void kiln_u8_avg_pool_ref(const kiln_pool_params *p, const int32_t in_shape[4], const uint8_t *in,
                          const int32_t out_shape[4], uint8_t *out);

/* Max pooling; NaN inputs are skipped as std::max skips them in TFLite. */
void kiln_f32_max_pool_ref(const kiln_pool_params *p, const int32_t in_shape[4], const float *in,
                           const int32_t out_shape[4], float *out);
void kiln_s8_max_pool_ref(const kiln_pool_params *p, const int32_t in_shape[4], const int8_t *in,
                          const int32_t out_shape[4], int8_t *out);
void kiln_u8_max_pool_ref(const kiln_pool_params *p, const int32_t in_shape[4], const uint8_t *in,
                          const int32_t out_shape[4], uint8_t *out);

/* ---- MEAN over a set of axes ----
 * shape: the input's rank dims (rank <= 6; rank 0 is a scalar). axis_mask:
 * bit d set when dimension d is reduced. The output holds the kept
 * dimensions in order (keep_dims only changes its declared shape, not its
 * layout). When the reduced element count is zero the outputs are NaN
 * (float) or 0 (quantized), as TFLite leaves them. */

/* Sums the reduced elements in input order (float, like TFLite), then
 * divides by their count. */
void kiln_f32_mean_ref(int32_t rank, const int32_t *shape, uint32_t axis_mask, const float *in,
                       float *out);

/* Folds 1/count into the requantization multiplier exactly as TFLite's
 * QuantizedMeanOrSum does. multiplier/shift come from
 * kiln_quantize_multiplier(in_scale / out_scale); count >= 1. */
void kiln_mean_q_multiplier(int32_t multiplier, int shift, int64_t count, int32_t *mean_multiplier,
                            int *mean_shift);

/* Quantized mean: int32 wrapping sum, minus in_zp * count, rescaled by the
 * multiplier from kiln_mean_q_multiplier, plus out_zp, clamped to the type. */
void kiln_s8_mean_ref(int32_t rank, const int32_t *shape, uint32_t axis_mask, const int8_t *in,
                      int32_t in_zp, int32_t multiplier, int shift, int32_t out_zp, int8_t *out);
void kiln_u8_mean_ref(int32_t rank, const int32_t *shape, uint32_t axis_mask, const uint8_t *in,
                      int32_t in_zp, int32_t multiplier, int shift, int32_t out_zp, uint8_t *out);

#endif
