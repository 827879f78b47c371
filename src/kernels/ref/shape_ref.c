/*
 * kernels/ref/shape_ref.c: reference CONCATENATION and PAD (see
 * shape_ref.h). Both move bytes, except uint8 concatenation of inputs whose
 * quantization differs from the output's, which rescales in float exactly
 * as TFLite's ConcatenationWithScaling.
 */
#include "kernels/ref/shape_ref.h"

#include <math.h>
#include <string.h>

#include "kernels/quant_math.h"

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

#define PAD_MAX_RANK 6

void kiln_concat_ref(int32_t n_inputs, const void *const *inputs, const int64_t *chunk_bytes,
                     int64_t outer, void *out) {
  uint8_t *dst = out;
  for (int64_t k = 0; k < outer; k++) {
    for (int32_t i = 0; i < n_inputs; i++) {
      const uint8_t *src = (const uint8_t *)inputs[i] + k * chunk_bytes[i];
      memcpy(dst, src, (size_t)chunk_bytes[i]);
      dst += chunk_bytes[i];
    }
  }
}

kiln_u8_rescale kiln_u8_rescale_make(float in_scale, int32_t in_zp, float out_scale,
                                     int32_t out_zp) {
  kiln_u8_rescale r;
  r.copy = in_zp == out_zp && in_scale == out_scale;
  const float inverse_out_scale = 1.0f / out_scale;
  r.scale = in_scale * inverse_out_scale;
  r.bias = (float)-in_zp * r.scale;
  return r;
}

/* float -> int32 as x86's cvttss2si does it (what TFLite's static_cast
 * compiles to): truncation, with NaN and out-of-range values giving
 * INT32_MIN. */
static int32_t f32_to_i32_x86(float x) {
  if (!(x > -2147483904.0f && x < 2147483648.0f)) return INT32_MIN;
  return (int32_t)x;
}

void kiln_u8_concat_ref(int32_t n_inputs, const uint8_t *const *inputs, const int64_t *chunk,
                        int64_t outer, const kiln_u8_rescale *rescale, int32_t out_zp,
                        uint8_t *out) {
  uint8_t *dst = out;
  for (int64_t k = 0; k < outer; k++) {
    for (int32_t i = 0; i < n_inputs; i++) {
      const uint8_t *src = inputs[i] + k * chunk[i];
      const kiln_u8_rescale *r = &rescale[i];
      if (r->copy) {
        memcpy(dst, src, (size_t)chunk[i]);
      } else {
        for (int64_t j = 0; j < chunk[i]; j++) {
          /* Separate statements: no fused multiply-add, as in TFLite. */
          const float scaled = (float)src[j] * r->scale;
          const float shifted = scaled + r->bias;
          const int32_t v = f32_to_i32_x86(roundf(shifted)) + out_zp;
          dst[j] = (uint8_t)kiln_clamp_i32(v, 0, 255);
        }
      }
      dst += chunk[i];
    }
  }
}

/* ---- PAD ---- */

typedef struct pad_plan {
  int32_t rank;
  const int32_t *in_shape, *before, *after;
  int64_t out_block[PAD_MAX_RANK + 1]; /* elements of one output slice below dim d */
  int64_t in_block[PAD_MAX_RANK + 1];
  size_t elem;
  const uint8_t *pad_value;
} pad_plan;

static void fill(const pad_plan *p, uint8_t *dst, int64_t count) {
  for (int64_t i = 0; i < count; i++) memcpy(dst + (size_t)i * p->elem, p->pad_value, p->elem);
}

/* Writes the output slice of dimension d from the matching input slice. */
static void pad_dim(const pad_plan *p, int32_t d, const uint8_t *src, uint8_t *dst) {
  const size_t out_step = (size_t)p->out_block[d + 1] * p->elem;
  const size_t in_step = (size_t)p->in_block[d + 1] * p->elem;
  fill(p, dst, (int64_t)p->before[d] * p->out_block[d + 1]);
  dst += (size_t)p->before[d] * out_step;
  if (d == p->rank - 1) {
    memcpy(dst, src, (size_t)p->in_shape[d] * p->elem);
    dst += (size_t)p->in_shape[d] * p->elem;
  } else {
    for (int32_t i = 0; i < p->in_shape[d]; i++) {
      pad_dim(p, d + 1, src, dst);
      src += in_step;
      dst += out_step;
    }
  }
  fill(p, dst, (int64_t)p->after[d] * p->out_block[d + 1]);
}

void kiln_pad_ref(int32_t rank, const int32_t *in_shape, const int32_t *before,
                  const int32_t *after, size_t elem_size, const void *in, const void *pad_value,
                  void *out) {
  pad_plan p;
  p.rank = rank;
  p.in_shape = in_shape;
  p.before = before;
  p.after = after;
  p.elem = elem_size;
  p.pad_value = pad_value;
  p.out_block[rank] = 1;
  p.in_block[rank] = 1;
  for (int32_t d = rank - 1; d >= 0; d--) {
    p.out_block[d] = p.out_block[d + 1] * (in_shape[d] + before[d] + after[d]);
    p.in_block[d] = p.in_block[d + 1] * in_shape[d];
  }
  pad_dim(&p, 0, in, out);
}
