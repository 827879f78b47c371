/*
 * kernels/ref/resize_ref.c: reference RESIZE_BILINEAR and
 * RESIZE_NEAREST_NEIGHBOR (see shape_ref.h). Float and uint8 bilinear use
 * TFLite's float formula term by term (no fused multiply-add); int8 uses its
 * 10-bit fixed-point formula (ResizeBilinearInteger, double rounding).
 */
#include <math.h>
#include <string.h>

#include "kernels/ref/shape_ref.h"

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

/* Source coordinate of an output index and its two neighbors (TFLite
 * ComputeInterpolationValues, float). */
typedef struct coord_f {
  float pos;
  int32_t lo, hi;
} coord_f;

static float bilinear_scale(int32_t in, int32_t out, bool align_corners) {
  if (align_corners && out > 1) return (float)(in - 1) / (float)(out - 1);
  return (float)in / (float)out;
}

static coord_f coord_float(int32_t value, float scale, bool half_pixel_centers, int32_t in) {
  coord_f c;
  if (half_pixel_centers) {
    const float centered = ((float)value + 0.5f) * scale;
    c.pos = centered - 0.5f;
  } else {
    c.pos = (float)value * scale;
  }
  const int32_t fl = (int32_t)floorf(c.pos);
  const int32_t ce = (int32_t)ceilf(c.pos);
  c.lo = fl > 0 ? fl : 0;
  c.hi = ce < in - 1 ? ce : in - 1;
  return c;
}

/* float -> int32 as x86's cvttss2si (TFLite's static_cast on x86). */
static int32_t f32_to_i32_x86(float x) {
  if (!(x > -2147483904.0f && x < 2147483648.0f)) return INT32_MIN;
  return (int32_t)x;
}

/* The interpolated value at one output pixel for one channel, in float,
 * evaluated in TFLite's order. v00 = (y0, x0), v10 = (y1, x0), v01 = (y0, x1). */
static float lerp2(float v00, float v10, float v01, float v11, const coord_f *y, const coord_f *x,
                   float rounding_offset) {
  const float dy = y->pos - (float)y->lo;
  const float dx = x->pos - (float)x->lo;
  const float a = v00 * (1.0f - dy) * (1.0f - dx);
  const float b = v10 * dy * (1.0f - dx);
  const float c = v01 * (1.0f - dy) * dx;
  const float d = v11 * dy * dx;
  return a + b + c + d + rounding_offset;
}

static size_t nhwc(const int32_t s[4], int32_t b, int32_t y, int32_t x, int32_t c) {
  return (((size_t)b * (size_t)s[1] + (size_t)y) * (size_t)s[2] + (size_t)x) * (size_t)s[3] +
         (size_t)c;
}

#define BILINEAR_FLOAT_LOOP(store)                                              \
  const float hs = bilinear_scale(in_shape[1], out_h, align_corners);           \
  const float ws = bilinear_scale(in_shape[2], out_w, align_corners);           \
  const int32_t out_shape[4] = {in_shape[0], out_h, out_w, in_shape[3]};        \
  for (int32_t b = 0; b < in_shape[0]; b++)                                     \
    for (int32_t y = 0; y < out_h; y++) {                                       \
      const coord_f cy = coord_float(y, hs, half_pixel_centers, in_shape[1]);   \
      for (int32_t x = 0; x < out_w; x++) {                                     \
        const coord_f cx = coord_float(x, ws, half_pixel_centers, in_shape[2]); \
        for (int32_t c = 0; c < in_shape[3]; c++) {                             \
          const float v00 = (float)in[nhwc(in_shape, b, cy.lo, cx.lo, c)];      \
          const float v10 = (float)in[nhwc(in_shape, b, cy.hi, cx.lo, c)];      \
          const float v01 = (float)in[nhwc(in_shape, b, cy.lo, cx.hi, c)];      \
          const float v11 = (float)in[nhwc(in_shape, b, cy.hi, cx.hi, c)];      \
          store;                                                                \
        }                                                                       \
      }                                                                         \
    }

void kiln_f32_resize_bilinear_ref(const int32_t in_shape[4], const float *in, int32_t out_h,
                                  int32_t out_w, bool align_corners, bool half_pixel_centers,
                                  float *out) {
  BILINEAR_FLOAT_LOOP(out[nhwc(out_shape, b, y, x, c)] = lerp2(v00, v10, v01, v11, &cy, &cx, 0.0f))
}

void kiln_u8_resize_bilinear_ref(const int32_t in_shape[4], const uint8_t *in, int32_t out_h,
                                 int32_t out_w, bool align_corners, bool half_pixel_centers,
                                 uint8_t *out) {
  /* TFLite's static_cast<uint8_t>(float): a 32-bit truncation, low byte kept. */
  BILINEAR_FLOAT_LOOP(
      out[nhwc(out_shape, b, y, x, c)] =
          (uint8_t)((uint32_t)f32_to_i32_x86(lerp2(v00, v10, v01, v11, &cy, &cx, 0.5f)) & 0xffu))
}

/* ---- int8: 10-bit fixed point ---- */

static int32_t fixed_scale(int32_t in, int32_t out, bool align_corners) {
  if (align_corners && out > 1) return ((1 << 10) * (in - 1) + (out - 1) / 2) / (out - 1);
  return ((1 << 10) * in + out / 2) / out;
}

typedef struct coord_q {
  int32_t pos; /* source coordinate * 2^10 */
  int32_t lo, hi;
} coord_q;

static coord_q coord_fixed(int32_t value, int32_t scale_10, bool half_pixel_centers, int32_t in) {
  coord_q c;
  if (half_pixel_centers)
    c.pos = value * scale_10 + scale_10 / 2 - (1 << 9);
  else
    c.pos = value * scale_10;
  const int32_t lo = c.pos / (1 << 10);
  const int32_t hi = (c.pos + (1 << 10) - 1) / (1 << 10);
  c.lo = lo > 0 ? lo : 0;
  c.hi = hi < in - 1 ? hi : in - 1;
  return c;
}

bool kiln_resize_bilinear_fixed_in_bounds(int32_t in, int32_t out, bool align_corners,
                                          bool half_pixel_centers) {
  if (in < 1 || out < 1 || in >= (1 << 20) || out >= (1 << 20)) return false;
  const int32_t scale_10 = fixed_scale(in, out, align_corners);
  const coord_q last = coord_fixed(out - 1, scale_10, half_pixel_centers, in);
  return last.lo <= in - 1;
}

void kiln_s8_resize_bilinear_ref(const int32_t in_shape[4], const int8_t *in, int32_t out_h,
                                 int32_t out_w, bool align_corners, bool half_pixel_centers,
                                 int8_t *out) {
  const int32_t hs = fixed_scale(in_shape[1], out_h, align_corners);
  const int32_t ws = fixed_scale(in_shape[2], out_w, align_corners);
  const int32_t out_shape[4] = {in_shape[0], out_h, out_w, in_shape[3]};
  for (int32_t b = 0; b < in_shape[0]; b++)
    for (int32_t y = 0; y < out_h; y++) {
      const coord_q cy = coord_fixed(y, hs, half_pixel_centers, in_shape[1]);
      const int64_t wy1 = cy.pos - (1 << 10) * cy.lo; /* weight of row hi, * 2^10 */
      const int64_t wy0 = (1 << 10) - wy1;
      for (int32_t x = 0; x < out_w; x++) {
        const coord_q cx = coord_fixed(x, ws, half_pixel_centers, in_shape[2]);
        const int64_t wx1 = cx.pos - (1 << 10) * cx.lo;
        const int64_t wx0 = (1 << 10) - wx1;
        for (int32_t c = 0; c < in_shape[3]; c++) {
          const int64_t sum = in[nhwc(in_shape, b, cy.lo, cx.lo, c)] * wy0 * wx0 +
                              in[nhwc(in_shape, b, cy.hi, cx.lo, c)] * wy1 * wx0 +
                              in[nhwc(in_shape, b, cy.lo, cx.hi, c)] * wy0 * wx1 +
                              in[nhwc(in_shape, b, cy.hi, cx.hi, c)] * wy1 * wx1;
          const int64_t round = sum > 0 ? (1 << 19) : -(1 << 19);
          out[nhwc(out_shape, b, y, x, c)] = (int8_t)((sum + round) / (1 << 20));
        }
      }
    }
}

/* ---- nearest neighbor ---- */

static int32_t nearest(int32_t value, int32_t in, int32_t out, bool align_corners,
                       bool half_pixel_centers) {
  const float scale =
      (align_corners && out > 1) ? (float)(in - 1) / (float)(out - 1) : (float)in / (float)out;
  const float offset = half_pixel_centers ? 0.5f : 0.0f;
  const float pos = ((float)value + offset) * scale;
  int32_t v = align_corners ? (int32_t)roundf(pos) : (int32_t)floorf(pos);
  if (v > in - 1) v = in - 1;
  if (half_pixel_centers && v < 0) v = 0;
  return v;
}

void kiln_resize_nearest_ref(const int32_t in_shape[4], size_t elem_size, const void *in,
                             int32_t out_h, int32_t out_w, bool align_corners,
                             bool half_pixel_centers, void *out) {
  const uint8_t *src = in;
  uint8_t *dst = out;
  const size_t pixel = (size_t)in_shape[3] * elem_size;
  const size_t row = (size_t)in_shape[2] * pixel;
  const size_t image = (size_t)in_shape[1] * row;
  for (int32_t b = 0; b < in_shape[0]; b++) {
    for (int32_t y = 0; y < out_h; y++) {
      const int32_t iy = nearest(y, in_shape[1], out_h, align_corners, half_pixel_centers);
      for (int32_t x = 0; x < out_w; x++) {
        const int32_t ix = nearest(x, in_shape[2], out_w, align_corners, half_pixel_centers);
        memcpy(dst, src + (size_t)b * image + (size_t)iy * row + (size_t)ix * pixel, pixel);
        dst += pixel;
      }
    }
  }
}
