/*
 * Reference TRANSPOSE_CONV kernels (float32, int8 per-channel, uint8) and
 * MediaPipe's Convolution2DTransposeBias (float32). All use TFLite's
 * "scatter" order: each input pixel adds its products into the output
 * pixels it reaches, looping batch, in_y, in_x, in_c, filter_y, filter_x,
 * out_c, so float sums happen in TFLite's (and MediaPipe's) order. See
 * conv_ref.h for shapes.
 */
#include <stddef.h>
#include <string.h>

#include "kernels/quant_math.h"
#include "kernels/ref/conv_ref.h"

static inline size_t nhwc(int32_t h, int32_t w, int32_t c, int32_t b, int32_t y, int32_t x,
                          int32_t ch) {
  return (((size_t)b * (size_t)h + (size_t)y) * (size_t)w + (size_t)x) * (size_t)c + (size_t)ch;
}

static inline float clamp_f(float x, float lo, float hi) {
  x = x < lo ? lo : x;
  return hi < x ? hi : x;
}

static size_t out_elements(const kiln_conv_params *p) {
  return (size_t)p->batch * (size_t)p->out_h * (size_t)p->out_w * (size_t)p->out_c;
}

/* output += input (*) filter in scatter order; output already initialized. */
static void scatter_f32(const kiln_conv_params *p, const float *input, const float *filter,
                        float *output) {
  for (int32_t b = 0; b < p->batch; b++) {
    for (int32_t iy = 0; iy < p->in_h; iy++) {
      for (int32_t ix = 0; ix < p->in_w; ix++) {
        for (int32_t ic = 0; ic < p->in_c; ic++) {
          const float in = input[nhwc(p->in_h, p->in_w, p->in_c, b, iy, ix, ic)];
          const int32_t oy0 = iy * p->stride_h - p->pad_h;
          const int32_t ox0 = ix * p->stride_w - p->pad_w;
          for (int32_t fy = 0; fy < p->filter_h; fy++) {
            const int32_t oy = oy0 + fy;
            if (oy < 0 || oy >= p->out_h) continue;
            for (int32_t fx = 0; fx < p->filter_w; fx++) {
              const int32_t ox = ox0 + fx;
              if (ox < 0 || ox >= p->out_w) continue;
              float *out = output + nhwc(p->out_h, p->out_w, p->out_c, b, oy, ox, 0);
              for (int32_t oc = 0; oc < p->out_c; oc++)
                out[oc] += in * filter[nhwc(p->filter_h, p->filter_w, p->in_c, oc, fy, fx, ic)];
            }
          }
        }
      }
    }
  }
}

void kiln_f32_transpose_conv_ref(const kiln_conv_params *p, const float *input,
                                 const float *filter, const float *bias, float *output) {
  const size_t n = out_elements(p);
  for (size_t i = 0; i < n; i++) output[i] = 0.0f;
  scatter_f32(p, input, filter, output);
  for (size_t i = 0; i < n; i++) {
    float v = output[i];
    if (bias) v += bias[i % (size_t)p->out_c];
    output[i] = clamp_f(v, p->float_min, p->float_max);
  }
}

void kiln_f32_transpose_conv_bias_ref(const kiln_conv_params *p, const float *input,
                                      const float *filter, const float *bias, float *output) {
  const size_t n = out_elements(p);
  for (size_t i = 0; i < n; i++) output[i] = bias[i % (size_t)p->out_c];
  scatter_f32(p, input, filter, output);
}

/* scratch += (input + input_offset) * (filter + filter_offset), as uint32 so
 * the sums wrap modulo 2^32 like TFLite's int32 scratch buffer. */
#define KILN_SCATTER_Q(name, T)                                                                \
  static void name(const kiln_conv_params *p, const T *input, const T *filter,                \
                   uint32_t *scratch) {                                                        \
    for (int32_t b = 0; b < p->batch; b++) {                                                   \
      for (int32_t iy = 0; iy < p->in_h; iy++) {                                               \
        for (int32_t ix = 0; ix < p->in_w; ix++) {                                             \
          for (int32_t ic = 0; ic < p->in_c; ic++) {                                           \
            const int32_t in =                                                                 \
                (int32_t)input[nhwc(p->in_h, p->in_w, p->in_c, b, iy, ix, ic)] + p->input_offset; \
            const int32_t oy0 = iy * p->stride_h - p->pad_h;                                   \
            const int32_t ox0 = ix * p->stride_w - p->pad_w;                                   \
            for (int32_t fy = 0; fy < p->filter_h; fy++) {                                     \
              const int32_t oy = oy0 + fy;                                                     \
              if (oy < 0 || oy >= p->out_h) continue;                                          \
              for (int32_t fx = 0; fx < p->filter_w; fx++) {                                   \
                const int32_t ox = ox0 + fx;                                                   \
                if (ox < 0 || ox >= p->out_w) continue;                                        \
                uint32_t *acc = scratch + nhwc(p->out_h, p->out_w, p->out_c, b, oy, ox, 0);    \
                for (int32_t oc = 0; oc < p->out_c; oc++) {                                    \
                  const int32_t f =                                                            \
                      (int32_t)filter[nhwc(p->filter_h, p->filter_w, p->in_c, oc, fy, fx, ic)] + \
                      p->filter_offset;                                                        \
                  acc[oc] += (uint32_t)(in * f);                                               \
                }                                                                              \
              }                                                                                \
            }                                                                                  \
          }                                                                                    \
        }                                                                                      \
      }                                                                                        \
    }                                                                                          \
  }

KILN_SCATTER_Q(scatter_s8, int8_t)
KILN_SCATTER_Q(scatter_u8, uint8_t)
#undef KILN_SCATTER_Q

#define KILN_TRANSPOSE_CONV_Q(name, scatter, T)                                               \
  void name(const kiln_conv_params *p, const T *input, const T *filter, const int32_t *bias, \
            int32_t *scratch, T *output) {                                                    \
    const size_t n = out_elements(p);                                                         \
    uint32_t *acc = (uint32_t *)scratch;                                                      \
    memset(acc, 0, n * sizeof *acc);                                                          \
    scatter(p, input, filter, acc);                                                           \
    for (size_t i = 0; i < n; i++) {                                                          \
      const int32_t oc = (int32_t)(i % (size_t)p->out_c);                                     \
      uint32_t sum = acc[i];                                                                  \
      if (bias) sum += (uint32_t)bias[oc];                                                    \
      int32_t v = kiln_mul_by_quantized_multiplier((int32_t)sum, p->multiplier[oc],           \
                                                   p->shift[oc]);                             \
      output[i] = (T)kiln_clamp_i32(v + p->output_offset, p->act_min, p->act_max);            \
    }                                                                                         \
  }

KILN_TRANSPOSE_CONV_Q(kiln_s8_transpose_conv_ref, scatter_s8, int8_t)
KILN_TRANSPOSE_CONV_Q(kiln_u8_transpose_conv_ref, scatter_u8, uint8_t)
#undef KILN_TRANSPOSE_CONV_Q
