/*
 * Reference FULLY_CONNECTED kernels (float32, int8, uint8), bit-exact with
 * TFLite's reference_ops::FullyConnected and
 * reference_integer_ops::FullyConnected / FullyConnectedPerChannel in the
 * form LiteRT's reference kernel type runs them: the int32 accumulator is
 * rescaled in double precision with one rounding (kiln_fc_requant), not
 * with the fixed-point multiplier CONV_2D uses. The int8 kernel serves both
 * per-tensor weights (one scale repeated, filter offset applied as TFLite
 * does for backward compatibility) and per-channel weights (filter offset
 * 0). See conv_ref.h for shapes.
 */
#include <stddef.h>

#include "kernels/quant_math.h"
#include "kernels/ref/conv_ref.h"

static inline int32_t wrap_i32(int64_t v) { return (int32_t)(uint32_t)(uint64_t)v; }

static inline float clamp_f(float x, float lo, float hi) {
  x = x < lo ? lo : x;
  return hi < x ? hi : x;
}

void kiln_f32_fully_connected_ref(const kiln_fc_params *p, const float *input,
                                  const float *weights, const float *bias, float *output) {
  for (int32_t b = 0; b < p->batch; b++) {
    const float *in = input + (size_t)b * (size_t)p->in_depth;
    for (int32_t o = 0; o < p->out_depth; o++) {
      const float *w = weights + (size_t)o * (size_t)p->in_depth;
      float total = 0.0f;
      for (int32_t d = 0; d < p->in_depth; d++) total += in[d] * w[d];
      const float bias_value = bias ? bias[o] : 0.0f;
      output[(size_t)b * (size_t)p->out_depth + (size_t)o] =
          clamp_f(total + bias_value, p->float_min, p->float_max);
    }
  }
}

#define KILN_FC_Q(name, T)                                                                    \
  void name(const kiln_fc_params *p, const T *input, const T *weights, const int32_t *bias,  \
            T *output) {                                                                      \
    for (int32_t b = 0; b < p->batch; b++) {                                                  \
      const T *in = input + (size_t)b * (size_t)p->in_depth;                                  \
      for (int32_t o = 0; o < p->out_depth; o++) {                                            \
        const T *w = weights + (size_t)o * (size_t)p->in_depth;                               \
        int64_t acc = 0;                                                                      \
        for (int32_t d = 0; d < p->in_depth; d++)                                             \
          acc += ((int32_t)w[d] + p->filter_offset) * ((int32_t)in[d] + p->input_offset);     \
        if (bias) acc += bias[o];                                                             \
        const int32_t v = kiln_fc_requant(wrap_i32(acc), p->scale[o], p->output_offset,       \
                                          p->act_min, p->act_max);                            \
        output[(size_t)b * (size_t)p->out_depth + (size_t)o] = (T)v;                          \
      }                                                                                       \
    }                                                                                         \
  }

KILN_FC_Q(kiln_s8_fully_connected_ref, int8_t)
KILN_FC_Q(kiln_u8_fully_connected_ref, uint8_t)
#undef KILN_FC_Q
