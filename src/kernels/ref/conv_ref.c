/*
 * Reference CONV_2D and DEPTHWISE_CONV_2D kernels (float32, int8, uint8) and
 * the pure functions that compute conv parameters from shapes and scales.
 * Loop orders and arithmetic follow TFLite's reference kernels
 * (reference_ops::Conv, reference_integer_ops::ConvPerChannel,
 * reference_ops::DepthwiseConv, reference_integer_ops::DepthwiseConvPerChannel)
 * so results are bit-identical; see conv_ref.h for shapes and layouts.
 */
#include <math.h>
#include <stddef.h>

#include "kernels/quant_math.h"
#include "kernels/ref/conv_ref.h"

/* The int32 accumulator of TFLite's kernels wraps modulo 2^32; kiln sums in
 * 64 bits (no undefined overflow) and wraps once at the end, which gives the
 * same value. */
static inline int32_t wrap_i32(int64_t v) { return (int32_t)(uint32_t)(uint64_t)v; }

/* TFLite ActivationFunctionWithMinMax: min(max(x, lo), hi); NaN passes. */
static inline float clamp_f(float x, float lo, float hi) {
  x = x < lo ? lo : x;
  return hi < x ? hi : x;
}

static inline size_t nhwc(int32_t h, int32_t w, int32_t c, int32_t b, int32_t y, int32_t x,
                          int32_t ch) {
  return (((size_t)b * (size_t)h + (size_t)y) * (size_t)w + (size_t)x) * (size_t)c + (size_t)ch;
}

/* Requantizes a wrapped accumulator of output channel oc. */
static inline int32_t requantize(const kiln_conv_params *p, int64_t acc, int32_t oc) {
  int32_t v = kiln_mul_by_quantized_multiplier(wrap_i32(acc), p->multiplier[oc], p->shift[oc]);
  v += p->output_offset;
  return kiln_clamp_i32(v, p->act_min, p->act_max);
}

/* ---- CONV_2D ---- */

void kiln_f32_conv2d_ref(const kiln_conv_params *p, const float *input, const float *filter,
                         const float *bias, float *output) {
  const int32_t filter_c = p->in_c / p->groups;
  const int32_t per_group = p->out_c / p->groups;
  for (int32_t b = 0; b < p->batch; b++) {
    for (int32_t oy = 0; oy < p->out_h; oy++) {
      const int32_t iy0 = oy * p->stride_h - p->pad_h;
      for (int32_t ox = 0; ox < p->out_w; ox++) {
        const int32_t ix0 = ox * p->stride_w - p->pad_w;
        for (int32_t oc = 0; oc < p->out_c; oc++) {
          const int32_t group = oc / per_group;
          float total = 0.0f;
          for (int32_t fy = 0; fy < p->filter_h; fy++) {
            const int32_t iy = iy0 + p->dilation_h * fy;
            if (iy < 0 || iy >= p->in_h) continue;
            for (int32_t fx = 0; fx < p->filter_w; fx++) {
              const int32_t ix = ix0 + p->dilation_w * fx;
              if (ix < 0 || ix >= p->in_w) continue;
              const float *in = input + nhwc(p->in_h, p->in_w, p->in_c, b, iy, ix,
                                             group * filter_c);
              const float *f = filter + nhwc(p->filter_h, p->filter_w, filter_c, oc, fy, fx, 0);
              for (int32_t ic = 0; ic < filter_c; ic++) total += in[ic] * f[ic];
            }
          }
          const float bias_value = bias ? bias[oc] : 0.0f;
          output[nhwc(p->out_h, p->out_w, p->out_c, b, oy, ox, oc)] =
              clamp_f(total + bias_value, p->float_min, p->float_max);
        }
      }
    }
  }
}

/* int8 and uint8 differ only in element types and in the filter offset
 * (always 0 for symmetric int8 weights), so one macro writes both. */
#define KILN_CONV2D_Q(name, T)                                                                \
  void name(const kiln_conv_params *p, const T *input, const T *filter, const int32_t *bias, \
            T *output) {                                                                      \
    const int32_t filter_c = p->in_c / p->groups;                                             \
    const int32_t per_group = p->out_c / p->groups;                                           \
    for (int32_t b = 0; b < p->batch; b++) {                                                  \
      for (int32_t oy = 0; oy < p->out_h; oy++) {                                             \
        const int32_t iy0 = oy * p->stride_h - p->pad_h;                                      \
        for (int32_t ox = 0; ox < p->out_w; ox++) {                                           \
          const int32_t ix0 = ox * p->stride_w - p->pad_w;                                    \
          for (int32_t oc = 0; oc < p->out_c; oc++) {                                         \
            const int32_t group = oc / per_group;                                             \
            int64_t acc = 0;                                                                  \
            for (int32_t fy = 0; fy < p->filter_h; fy++) {                                    \
              const int32_t iy = iy0 + p->dilation_h * fy;                                    \
              if (iy < 0 || iy >= p->in_h) continue;                                          \
              for (int32_t fx = 0; fx < p->filter_w; fx++) {                                  \
                const int32_t ix = ix0 + p->dilation_w * fx;                                  \
                if (ix < 0 || ix >= p->in_w) continue;                                        \
                const T *in = input + nhwc(p->in_h, p->in_w, p->in_c, b, iy, ix,              \
                                           group * filter_c);                                 \
                const T *f = filter + nhwc(p->filter_h, p->filter_w, filter_c, oc, fy, fx, 0); \
                for (int32_t ic = 0; ic < filter_c; ic++)                                     \
                  acc += ((int32_t)f[ic] + p->filter_offset) *                                \
                         ((int32_t)in[ic] + p->input_offset);                                 \
              }                                                                               \
            }                                                                                 \
            if (bias) acc += bias[oc];                                                        \
            output[nhwc(p->out_h, p->out_w, p->out_c, b, oy, ox, oc)] =                      \
                (T)requantize(p, acc, oc);                                                    \
          }                                                                                   \
        }                                                                                     \
      }                                                                                       \
    }                                                                                         \
  }

KILN_CONV2D_Q(kiln_s8_conv2d_ref, int8_t)
KILN_CONV2D_Q(kiln_u8_conv2d_ref, uint8_t)
#undef KILN_CONV2D_Q

/* ---- DEPTHWISE_CONV_2D ---- */

void kiln_f32_depthwise_conv2d_ref(const kiln_conv_params *p, const float *input,
                                   const float *filter, const float *bias, float *output) {
  const int32_t m_count = p->depth_multiplier;
  for (int32_t b = 0; b < p->batch; b++) {
    for (int32_t oy = 0; oy < p->out_h; oy++) {
      const int32_t iy0 = oy * p->stride_h - p->pad_h;
      for (int32_t ox = 0; ox < p->out_w; ox++) {
        const int32_t ix0 = ox * p->stride_w - p->pad_w;
        for (int32_t ic = 0; ic < p->in_c; ic++) {
          for (int32_t m = 0; m < m_count; m++) {
            const int32_t oc = ic * m_count + m;
            float total = 0.0f;
            for (int32_t fy = 0; fy < p->filter_h; fy++) {
              const int32_t iy = iy0 + p->dilation_h * fy;
              if (iy < 0 || iy >= p->in_h) continue;
              for (int32_t fx = 0; fx < p->filter_w; fx++) {
                const int32_t ix = ix0 + p->dilation_w * fx;
                if (ix < 0 || ix >= p->in_w) continue;
                total += input[nhwc(p->in_h, p->in_w, p->in_c, b, iy, ix, ic)] *
                         filter[nhwc(p->filter_h, p->filter_w, p->out_c, 0, fy, fx, oc)];
              }
            }
            const float bias_value = bias ? bias[oc] : 0.0f;
            output[nhwc(p->out_h, p->out_w, p->out_c, b, oy, ox, oc)] =
                clamp_f(total + bias_value, p->float_min, p->float_max);
          }
        }
      }
    }
  }
}

#define KILN_DEPTHWISE_Q(name, T)                                                             \
  void name(const kiln_conv_params *p, const T *input, const T *filter, const int32_t *bias, \
            T *output) {                                                                      \
    const int32_t m_count = p->depth_multiplier;                                              \
    for (int32_t b = 0; b < p->batch; b++) {                                                  \
      for (int32_t oy = 0; oy < p->out_h; oy++) {                                             \
        const int32_t iy0 = oy * p->stride_h - p->pad_h;                                      \
        for (int32_t ox = 0; ox < p->out_w; ox++) {                                           \
          const int32_t ix0 = ox * p->stride_w - p->pad_w;                                    \
          for (int32_t ic = 0; ic < p->in_c; ic++) {                                          \
            for (int32_t m = 0; m < m_count; m++) {                                           \
              const int32_t oc = ic * m_count + m;                                            \
              int64_t acc = 0;                                                                \
              for (int32_t fy = 0; fy < p->filter_h; fy++) {                                  \
                const int32_t iy = iy0 + p->dilation_h * fy;                                  \
                if (iy < 0 || iy >= p->in_h) continue;                                        \
                for (int32_t fx = 0; fx < p->filter_w; fx++) {                                \
                  const int32_t ix = ix0 + p->dilation_w * fx;                                \
                  if (ix < 0 || ix >= p->in_w) continue;                                      \
                  const int32_t in = input[nhwc(p->in_h, p->in_w, p->in_c, b, iy, ix, ic)];   \
                  const int32_t f =                                                           \
                      filter[nhwc(p->filter_h, p->filter_w, p->out_c, 0, fy, fx, oc)];        \
                  acc += (f + p->filter_offset) * (in + p->input_offset);                     \
                }                                                                             \
              }                                                                               \
              if (bias) acc += bias[oc];                                                      \
              output[nhwc(p->out_h, p->out_w, p->out_c, b, oy, ox, oc)] =                    \
                  (T)requantize(p, acc, oc);                                                  \
            }                                                                                 \
          }                                                                                   \
        }                                                                                     \
      }                                                                                       \
    }                                                                                         \
  }

KILN_DEPTHWISE_Q(kiln_s8_depthwise_conv2d_ref, int8_t)
KILN_DEPTHWISE_Q(kiln_u8_depthwise_conv2d_ref, uint8_t)
#undef KILN_DEPTHWISE_Q

/* ---- Parameters ---- */

int64_t kiln_conv_out_size(bool same_padding, int32_t in, int32_t filter, int32_t stride,
                           int32_t dilation) {
  const int64_t effective = ((int64_t)filter - 1) * dilation + 1;
  /* C division truncates toward zero, as TFLite's int division does. */
  if (same_padding) return ((int64_t)in + stride - 1) / stride;
  return ((int64_t)in + stride - effective) / stride;
}

int32_t kiln_conv_pad(int32_t stride, int32_t dilation, int32_t in, int32_t filter, int32_t out,
                      int32_t *offset) {
  const int64_t effective = ((int64_t)filter - 1) * dilation + 1;
  int64_t total = ((int64_t)out - 1) * stride + effective - in;
  if (total < 0) total = 0;
  *offset = (int32_t)(total % 2);
  return (int32_t)(total / 2);
}

void kiln_conv_multiplier(float input_scale, float filter_scale, float output_scale,
                          int32_t *multiplier, int32_t *shift) {
  const double real = (double)input_scale * (double)filter_scale / (double)output_scale;
  int s = 0;
  kiln_quantize_multiplier(real, multiplier, &s);
  *shift = s;
}

void kiln_conv_multiplier_legacy(float input_scale, float filter_scale, float output_scale,
                                 int32_t *multiplier, int32_t *shift) {
  const float product = input_scale * filter_scale; /* in float, as TFLite */
  const double real = (double)product / (double)output_scale;
  int s = 0;
  kiln_quantize_multiplier(real, multiplier, &s);
  *shift = s;
}

bool kiln_conv_bias_scale_ok(float input_scale, float filter_scale, float bias_scale,
                             float output_scale) {
  const double product = (double)input_scale * (double)filter_scale;
  const double diff = fabs(product - (double)bias_scale);
  return diff / (double)output_scale <= 0.02;
}

int64_t kiln_transpose_conv_bias_out_size(bool same_padding, int32_t in, int32_t filter,
                                          int32_t stride, int32_t *pad) {
  int64_t total = 0;
  if (same_padding) {
    total = (int64_t)filter - (in - 1) % stride - 1;
    if (total < 0) total = 0;
  }
  *pad = (int32_t)(total / 2);
  return (int64_t)stride * (in - 1) + filter - total;
}
