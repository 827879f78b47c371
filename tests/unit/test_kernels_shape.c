/*
 * test_kernels_shape.c: the reference shape-family kernels (shape_ref.h)
 * against independent computations written here from TFLite's definitions:
 * CONCATENATION (with uint8 rescaling), PAD, RESIZE_BILINEAR (every
 * align_corners/half_pixel_centers combination, float/uint8/int8),
 * RESIZE_NEAREST_NEIGHBOR, QUANTIZE and requantization, DEQUANTIZE, and the
 * IEEE half conversions (exhaustively over all 65536 half patterns).
 */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/quant_math.h"
#include "kernels/ref/shape_ref.h"
#include "base/half.h"
#include "testutil.h"

static int32_t pick_zp(test_rng *r, int32_t lo, int32_t hi) {
  switch (test_rand_int(r, 0, 2)) {
    case 0:
      return lo;
    case 1:
      return hi;
    default:
      return test_rand_int(r, lo, hi);
  }
}

static uint32_t fbits(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}

static float from_bits(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}

/* Row-major coordinates of flat index i. */
static void coords(int64_t i, int32_t rank, const int32_t *shape, int32_t *c) {
  for (int32_t d = rank - 1; d >= 0; d--) {
    c[d] = (int32_t)(i % shape[d]);
    i /= shape[d];
  }
}

static int64_t flat(int32_t rank, const int32_t *shape, const int32_t *c) {
  int64_t i = 0;
  for (int32_t d = 0; d < rank; d++) i = i * shape[d] + c[d];
  return i;
}

/* float -> int32 as x86 converts (TFLite's static_cast there). */
static int32_t x86_int(float x) {
  if (isnan(x) || x >= 2147483648.0f || x < -2147483648.0f) return INT32_MIN;
  return (int32_t)x;
}

/* ---- CONCATENATION ---- */

static void test_concat_sweep(void) {
  test_rng r = {31337};
  for (int it = 0; it < 400; it++) {
    const int u8 = it % 2;
    const int32_t rank = test_rand_int(&r, 1, 5);
    int32_t base[5];
    for (int32_t d = 0; d < rank; d++) base[d] = test_rand_int(&r, 1, 4);
    const int32_t axis = test_rand_int(&r, 0, rank - 1);
    const int32_t n = test_rand_int(&r, 1, 4);
    int32_t shapes[4][5], out_shape[5];
    uint8_t *ins[4];
    int64_t sizes[4], chunk[4];
    float scales[4];
    int32_t zps[4];
    kiln_u8_rescale rs[4];
    const float out_scale = test_rand_float(&r, 0.01f, 0.3f);
    const int32_t out_zp = pick_zp(&r, 0, 255);
    memcpy(out_shape, base, sizeof base);
    out_shape[axis] = 0;
    int64_t inner = 1, outer = 1;
    for (int32_t d = axis + 1; d < rank; d++) inner *= base[d];
    for (int32_t d = 0; d < axis; d++) outer *= base[d];
    for (int32_t i = 0; i < n; i++) {
      memcpy(shapes[i], base, sizeof base);
      shapes[i][axis] = test_rand_int(&r, 1, 3);
      out_shape[axis] += shapes[i][axis];
      sizes[i] = 1;
      for (int32_t d = 0; d < rank; d++) sizes[i] *= shapes[i][d];
      ins[i] = malloc((size_t)sizes[i] * 4);
      for (int64_t k = 0; k < sizes[i] * 4; k++) ins[i][k] = (uint8_t)test_rand_int(&r, 0, 255);
      const int same = test_rand_int(&r, 0, 2) == 0;
      scales[i] = same ? out_scale : out_scale * test_rand_float(&r, 0.1f, 8.0f);
      zps[i] = same ? out_zp : pick_zp(&r, 0, 255);
      rs[i] = kiln_u8_rescale_make(scales[i], zps[i], out_scale, out_zp);
      CHECK(rs[i].copy == same);
      chunk[i] = shapes[i][axis] * inner * (u8 ? 1 : 4);
    }
    int64_t total = 1;
    for (int32_t d = 0; d < rank; d++) total *= out_shape[d];
    uint8_t *out = malloc((size_t)total * 4);
    if (u8)
      kiln_u8_concat_ref(n, (const uint8_t *const *)ins, chunk, outer, rs, out_zp, out);
    else
      kiln_concat_ref(n, (const void *const *)ins, chunk, outer, out);
    int bad = 0;
    for (int64_t o = 0; o < total; o++) {
      int32_t c[5] = {0};
      coords(o, rank, out_shape, c);
      int32_t i = 0;
      while (c[axis] >= shapes[i][axis]) c[axis] -= shapes[i++][axis];
      const int64_t k = flat(rank, shapes[i], c);
      if (!u8) {
        if (memcmp(out + o * 4, ins[i] + k * 4, 4) != 0) bad++;
        continue;
      }
      int32_t want = ins[i][k];
      if (!(zps[i] == out_zp && scales[i] == out_scale)) {
        /* q * (s_in / s_out) - zp_in * (s_in / s_out), in float, rounded. */
        const float s = scales[i] * (1.0f / out_scale);
        const float bias = (float)-zps[i] * s;
        const float v = (float)ins[i][k] * s;
        want = kiln_clamp_i32(x86_int(roundf(v + bias)) + out_zp, 0, 255);
        /* Within one step of the exact rescaled value. */
        const double exact = (double)scales[i] / out_scale * (ins[i][k] - zps[i]) + out_zp;
        const double clamped = exact < 0 ? 0 : exact > 255 ? 255 : exact;
        if (fabs(out[o] - clamped) > 0.51) bad++;
      }
      if (out[o] != want) bad++;
    }
    CHECK_MSG(bad == 0, "concat %d: %d wrong (u8 %d rank %d axis %d n %d)", it, bad, u8, (int)rank,
              (int)axis, (int)n);
    for (int32_t i = 0; i < n; i++) free(ins[i]);
    free(out);
  }
}

/* Every uint8 value under every input zero point, for scale pairs whose
 * ratio is not exact in float: the float rounding of scale and bias shows. */
static void test_concat_u8_rescale_exhaustive(void) {
  static const float pairs[][2] = {
      {0.1f, 0.3f}, {0.3f, 0.1f}, {0.0123f, 0.0456f}, {1.0f, 0.7f}, {0.02f, 0.02000001f}};
  uint8_t in[256], out[256];
  for (int i = 0; i < 256; i++) in[i] = (uint8_t)i;
  int bad = 0;
  for (size_t p = 0; p < sizeof pairs / sizeof pairs[0]; p++) {
    for (int32_t zp = 0; zp < 256; zp++) {
      const int32_t out_zp = (zp * 7 + 3) % 256;
      const kiln_u8_rescale rs = kiln_u8_rescale_make(pairs[p][0], zp, pairs[p][1], out_zp);
      const uint8_t *ins[1] = {in};
      const int64_t chunk[1] = {256};
      kiln_u8_concat_ref(1, ins, chunk, 1, &rs, out_zp, out);
      const float s = pairs[p][0] * (1.0f / pairs[p][1]);
      const float bias = (float)-zp * s;
      for (int i = 0; i < 256; i++) {
        const float v = (float)i * s;
        if (out[i] != kiln_clamp_i32(x86_int(roundf(v + bias)) + out_zp, 0, 255)) bad++;
      }
    }
  }
  CHECK_MSG(bad == 0, "%d rescaled values differ", bad);
}

/* ---- PAD ---- */

static void test_pad_sweep(void) {
  test_rng r = {4242};
  for (int it = 0; it < 300; it++) {
    const int32_t rank = test_rand_int(&r, 1, 6);
    const size_t elem = (size_t[]){1, 2, 4, 8}[test_rand_int(&r, 0, 3)];
    int32_t in_shape[6], before[6], after[6], out_shape[6];
    int64_t nin = 1, nout = 1;
    for (int32_t d = 0; d < rank; d++) {
      in_shape[d] = test_rand_int(&r, rank > 4 ? 1 : 0, rank > 4 ? 3 : 4);
      before[d] = test_rand_int(&r, 0, 2);
      after[d] = test_rand_int(&r, 0, 2);
      out_shape[d] = in_shape[d] + before[d] + after[d];
      nin *= in_shape[d];
      nout *= out_shape[d];
    }
    uint8_t *in = malloc((size_t)nin * elem + 1), *out = malloc((size_t)nout * elem + 1);
    uint8_t value[8];
    for (size_t k = 0; k < (size_t)nin * elem; k++) in[k] = (uint8_t)test_rand_int(&r, 0, 255);
    for (size_t k = 0; k < 8; k++) value[k] = (uint8_t)test_rand_int(&r, 0, 255);
    kiln_pad_ref(rank, in_shape, before, after, elem, in, value, out);
    int bad = 0;
    for (int64_t o = 0; o < nout; o++) {
      int32_t c[6] = {0};
      coords(o, rank, out_shape, c);
      int inside = 1;
      for (int32_t d = 0; d < rank; d++) {
        c[d] -= before[d];
        if (c[d] < 0 || c[d] >= in_shape[d]) inside = 0;
      }
      const uint8_t *want = inside ? in + flat(rank, in_shape, c) * elem : value;
      if (memcmp(out + o * elem, want, elem) != 0) bad++;
    }
    CHECK_MSG(bad == 0, "pad %d: %d wrong (rank %d elem %zu)", it, bad, (int)rank, elem);
    free(in);
    free(out);
  }
}

/* ---- RESIZE ---- */

enum { T_F32, T_S8, T_U8 };

/* TFLite's source coordinate for output index v (float formulation). */
static float src_pos(int32_t v, int32_t in, int32_t out, int align, int half) {
  const float scale =
      (align && out > 1) ? (float)(in - 1) / (float)(out - 1) : (float)in / (float)out;
  if (half) {
    const float t = ((float)v + 0.5f) * scale;
    return t - 0.5f;
  }
  return (float)v * scale;
}

static void check_bilinear(test_rng *r, int type, int32_t n, int32_t h, int32_t w, int32_t c,
                           int32_t oh, int32_t ow, int align, int half) {
  const int32_t is[4] = {n, h, w, c};
  const size_t nin = (size_t)n * h * w * c, nout = (size_t)n * oh * ow * c;
  float *fin = malloc(nin * 4), *fout = malloc(nout * 4);
  uint8_t *qin = malloc(nin), *qout = malloc(nout);
  for (size_t i = 0; i < nin; i++) {
    fin[i] = test_rand_float(r, -10.0f, 10.0f);
    qin[i] = (uint8_t)test_rand_int(r, 0, 255);
  }
  if (type == T_F32)
    kiln_f32_resize_bilinear_ref(is, fin, oh, ow, align, half, fout);
  else if (type == T_U8)
    kiln_u8_resize_bilinear_ref(is, qin, oh, ow, align, half, qout);
  else
    kiln_s8_resize_bilinear_ref(is, (int8_t *)qin, oh, ow, align, half, (int8_t *)qout);
  /* int8: scales in 1/1024 units, rounded (ResizeBilinearInteger). */
  const int32_t hs10 =
      (align && oh > 1) ? (1024 * (h - 1) + (oh - 1) / 2) / (oh - 1) : (1024 * h + oh / 2) / oh;
  const int32_t ws10 =
      (align && ow > 1) ? (1024 * (w - 1) + (ow - 1) / 2) / (ow - 1) : (1024 * w + ow / 2) / ow;
  int bad = 0;
  for (int32_t b = 0; b < n; b++)
    for (int32_t y = 0; y < oh; y++)
      for (int32_t x = 0; x < ow; x++)
        for (int32_t ch = 0; ch < c; ch++) {
          const size_t o = (((size_t)b * oh + y) * ow + x) * c + ch;
          if (type == T_S8) {
            const int32_t py = half ? y * hs10 + hs10 / 2 - 512 : y * hs10;
            const int32_t px = half ? x * ws10 + ws10 / 2 - 512 : x * ws10;
            int32_t y0 = py / 1024, x0 = px / 1024; /* C division, then clamp */
            int32_t y1 = (py + 1023) / 1024, x1 = (px + 1023) / 1024;
            y0 = y0 < 0 ? 0 : y0, x0 = x0 < 0 ? 0 : x0;
            y1 = y1 > h - 1 ? h - 1 : y1, x1 = x1 > w - 1 ? w - 1 : x1;
            const int64_t fy = py - 1024 * y0, fx = px - 1024 * x0;
#define Q(yy, xx) ((int64_t)(int8_t)qin[(((size_t)b * h + (yy)) * w + (xx)) * c + ch])
            const int64_t s = Q(y0, x0) * (1024 - fy) * (1024 - fx) + Q(y1, x0) * fy * (1024 - fx) +
                              Q(y0, x1) * (1024 - fy) * fx + Q(y1, x1) * fy * fx;
#undef Q
            /* Divide by 2^20 rounding halves away from zero. */
            const int64_t mag = s < 0 ? -s : s;
            const int64_t q = (mag + (1 << 19)) >> 20;
            const int32_t want = (int32_t)(s < 0 ? -q : q);
            if ((int8_t)qout[o] != want) bad++;
            continue;
          }
          const float py = src_pos(y, h, oh, align, half), px = src_pos(x, w, ow, align, half);
          int32_t y0 = (int32_t)floorf(py), x0 = (int32_t)floorf(px);
          int32_t y1 = (int32_t)ceilf(py), x1 = (int32_t)ceilf(px);
          y0 = y0 < 0 ? 0 : y0, x0 = x0 < 0 ? 0 : x0;
          y1 = y1 > h - 1 ? h - 1 : y1, x1 = x1 > w - 1 ? w - 1 : x1;
          const float dy = py - (float)y0, dx = px - (float)x0;
#define V(yy, xx)                                                    \
  (type == T_F32 ? fin[(((size_t)b * h + (yy)) * w + (xx)) * c + ch] \
                 : (float)qin[(((size_t)b * h + (yy)) * w + (xx)) * c + ch])
          const float t00 = V(y0, x0) * (1.0f - dy) * (1.0f - dx);
          const float t10 = V(y1, x0) * dy * (1.0f - dx);
          const float t01 = V(y0, x1) * (1.0f - dy) * dx;
          const float t11 = V(y1, x1) * dy * dx;
          const float lo = fminf(fminf(V(y0, x0), V(y1, x0)), fminf(V(y0, x1), V(y1, x1)));
          const float hi = fmaxf(fmaxf(V(y0, x0), V(y1, x0)), fmaxf(V(y0, x1), V(y1, x1)));
#undef V
          const float sum = t00 + t10 + t01 + t11;
          if (type == T_F32) {
            if (fbits(fout[o]) != fbits(sum + 0.0f)) bad++;
            if (fout[o] < lo - 1e-4f || fout[o] > hi + 1e-4f) bad++; /* a convex combination */
          } else {
            if (qout[o] != (uint8_t)x86_int(sum + 0.5f)) bad++;
          }
        }
  CHECK_MSG(bad == 0, "bilinear type %d %dx%d -> %dx%d align %d half %d: %d wrong", type, (int)h,
            (int)w, (int)oh, (int)ow, align, half, bad);
  free(fin);
  free(fout);
  free(qin);
  free(qout);
}

static void test_bilinear_sweep(void) {
  test_rng r = {8080};
  static const int modes[3][2] = {{0, 0}, {1, 0}, {0, 1}};
  for (int it = 0; it < 450; it++) {
    const int type = it % 3;
    const int *m = modes[(it / 3) % 3];
    int32_t h = test_rand_int(&r, 1, 9), w = test_rand_int(&r, 1, 9);
    int32_t oh = test_rand_int(&r, 1, 24), ow = test_rand_int(&r, 1, 24);
    check_bilinear(&r, type, test_rand_int(&r, 1, 2), h, w, test_rand_int(&r, 1, 3), oh, ow, m[0],
                   m[1]);
  }
}

/* Same-size resize without align/half is the identity for every type. */
static void test_bilinear_identity(void) {
  test_rng r = {5};
  const int32_t is[4] = {1, 5, 7, 2};
  float f[70], fo[70];
  uint8_t q[70], qo[70];
  int8_t s[70], so[70];
  for (int i = 0; i < 70; i++) {
    f[i] = test_rand_float(&r, -3, 3);
    q[i] = (uint8_t)test_rand_int(&r, 0, 255);
    s[i] = (int8_t)test_rand_int(&r, -128, 127);
  }
  kiln_f32_resize_bilinear_ref(is, f, 5, 7, false, false, fo);
  kiln_u8_resize_bilinear_ref(is, q, 5, 7, false, false, qo);
  kiln_s8_resize_bilinear_ref(is, s, 5, 7, false, false, so);
  CHECK(memcmp(f, fo, sizeof f) == 0);
  CHECK(memcmp(q, qo, sizeof q) == 0);
  CHECK(memcmp(s, so, sizeof s) == 0);
}

static void test_bilinear_fixed_bounds(void) {
  CHECK(kiln_resize_bilinear_fixed_in_bounds(3, 8, false, false));
  CHECK(kiln_resize_bilinear_fixed_in_bounds(3, 8, false, true));
  CHECK(kiln_resize_bilinear_fixed_in_bounds(1, 4096, false, true));
  /* 3 -> 2047: the 10-bit scale rounds 1.5007 up to 2, so the last source
   * row lands at 3 with half-pixel centers: past the input. */
  CHECK(!kiln_resize_bilinear_fixed_in_bounds(3, 2047, false, true));
  CHECK(!kiln_resize_bilinear_fixed_in_bounds(3, 2047, false, false));
  CHECK(!kiln_resize_bilinear_fixed_in_bounds(1 << 21, 2, false, false));
}

static void test_nearest_sweep(void) {
  test_rng r = {1234};
  for (int it = 0; it < 400; it++) {
    const int align = it % 2, half = (it / 2) % 2;
    const int32_t n = test_rand_int(&r, 1, 2), h = test_rand_int(&r, 1, 9),
                  w = test_rand_int(&r, 1, 9);
    const int32_t c = test_rand_int(&r, 1, 3), oh = test_rand_int(&r, 1, 25),
                  ow = test_rand_int(&r, 1, 25);
    const size_t elem = (size_t[]){1, 2, 4}[test_rand_int(&r, 0, 2)];
    const int32_t is[4] = {n, h, w, c};
    const size_t nin = (size_t)n * h * w * c * elem, nout = (size_t)n * oh * ow * c * elem;
    uint8_t *in = malloc(nin), *out = malloc(nout);
    for (size_t i = 0; i < nin; i++) in[i] = (uint8_t)test_rand_int(&r, 0, 255);
    kiln_resize_nearest_ref(is, elem, in, oh, ow, align, half, out);
    int bad = 0;
    for (int32_t b = 0; b < n; b++)
      for (int32_t y = 0; y < oh; y++)
        for (int32_t x = 0; x < ow; x++) {
          int32_t src[2];
          const int32_t v[2] = {y, x}, insz[2] = {h, w}, outsz[2] = {oh, ow};
          for (int k = 0; k < 2; k++) {
            const float scale = (align && outsz[k] > 1)
                                    ? (float)(insz[k] - 1) / (float)(outsz[k] - 1)
                                    : (float)insz[k] / (float)outsz[k];
            const float p = ((float)v[k] + (half ? 0.5f : 0.0f)) * scale;
            int32_t s = align ? (int32_t)roundf(p) : (int32_t)floorf(p);
            if (s > insz[k] - 1) s = insz[k] - 1;
            if (half && s < 0) s = 0;
            src[k] = s;
          }
          const size_t px = (size_t)c * elem;
          if (memcmp(out + (((size_t)b * oh + y) * ow + x) * px,
                     in + (((size_t)b * h + src[0]) * w + src[1]) * px, px) != 0)
            bad++;
        }
    CHECK_MSG(bad == 0, "nearest %dx%d -> %dx%d align %d half %d: %d wrong", (int)h, (int)w,
              (int)oh, (int)ow, align, half, bad);
    free(in);
    free(out);
  }
}

/* ---- QUANTIZE / requantize / DEQUANTIZE ---- */

static void test_quantize_sweep(void) {
  test_rng r = {2718};
  float x[512];
  int8_t s8[512];
  uint8_t u8[512];
  for (int it = 0; it < 200; it++) {
    const float scale = expf(test_rand_float(&r, -9.0f, 2.0f));
    const float mag = (float[]){0.01f, 1.0f, 100.0f, 1e12f}[test_rand_int(&r, 0, 3)];
    for (int i = 0; i < 512; i++) x[i] = test_rand_float(&r, -1.0f, 1.0f) * mag;
    x[0] = NAN, x[1] = INFINITY, x[2] = -INFINITY, x[3] = 0.5f * scale, x[4] = -0.5f * scale;
    x[5] = 1.5f * scale, x[6] = -0.0f, x[7] = 3e9f * scale;
    const int32_t zs = pick_zp(&r, -128, 127), zu = pick_zp(&r, 0, 255);
    kiln_f32_quantize_s8_ref(512, x, scale, zs, s8);
    kiln_f32_quantize_u8_ref(512, x, scale, zu, u8);
    int bad = 0;
    for (int i = 0; i < 512; i++) {
      /* round(x / scale) in float, converted as x86 does, + zp wrapping. */
      const int32_t q = x86_int(roundf(x[i] / scale));
      const int32_t ws = kiln_clamp_i32((int32_t)((int64_t)q + zs), -128, 127);
      const int64_t su = (int64_t)q + zu;
      const int32_t wu = kiln_clamp_i32((int32_t)su, 0, 255);
      if (s8[i] != ws || u8[i] != wu) bad++;
      /* In range, the value is the nearest step. */
      if (isfinite(x[i]) && fabsf(x[i] / scale) < 1000.0f) {
        const double err = fabs(((double)s8[i] - zs) * scale - x[i]);
        if (s8[i] > -128 && s8[i] < 127 && err > (0.5 + 1e-4) * scale) bad++;
      }
    }
    /* NaN converts to INT32_MIN; a negative zero point wraps it high. */
    CHECK(s8[0] == (zs < 0 ? 127 : -128) && u8[0] == 0);
    CHECK(s8[1] == (zs < 0 ? 127 : -128) && s8[2] == (zs < 0 ? 127 : -128));
    CHECK(s8[3] == kiln_clamp_i32(zs + 1, -128, 127) && s8[4] == kiln_clamp_i32(zs - 1, -128, 127));
    CHECK_MSG(bad == 0, "quantize %d: %d wrong (scale %g)", it, bad, (double)scale);
  }
}

static void test_quantize_per_axis(void) {
  test_rng r = {77};
  const int32_t outer = 3, axis_dim = 4, inner = 5;
  float x[60], scale[4];
  int32_t zp[4];
  int8_t s8[60];
  uint8_t u8[60];
  for (int i = 0; i < 60; i++) x[i] = test_rand_float(&r, -20, 20);
  for (int c = 0; c < 4; c++)
    scale[c] = test_rand_float(&r, 0.01f, 0.5f), zp[c] = test_rand_int(&r, -20, 20);
  kiln_f32_quantize_s8_per_axis_ref(outer, axis_dim, inner, x, scale, zp, s8);
  for (int c = 0; c < 4; c++) zp[c] += 128;
  kiln_f32_quantize_u8_per_axis_ref(outer, axis_dim, inner, x, scale, zp, u8);
  int bad = 0;
  for (int i = 0; i < 60; i++) {
    const int c = (i / inner) % axis_dim;
    int8_t one;
    uint8_t uone;
    kiln_f32_quantize_s8_ref(1, &x[i], scale[c], zp[c] - 128, &one);
    kiln_f32_quantize_u8_ref(1, &x[i], scale[c], zp[c], &uone);
    if (one != s8[i] || uone != u8[i]) bad++;
  }
  CHECK(bad == 0);
}

/* floor(a / 2^k) for any sign. */
static int64_t floor_shift(int64_t a, int k) {
  const int64_t d = (int64_t)1 << k;
  return a >= 0 ? a / d : -((-a + d - 1) / d);
}

/* TFLite MultiplyByQuantizedMultiplier in 64-bit arithmetic: the doubling
 * high multiply rounds halves up, the power-of-two divide rounds halves away
 * from zero. */
static int32_t spec_mul(int32_t x, int32_t m, int shift) {
  const int left = shift > 0 ? shift : 0, right = shift > 0 ? 0 : -shift;
  const int64_t xl = (int64_t)(int32_t)((uint32_t)x << left);
  const int64_t hi = floor_shift(xl * (int64_t)m + ((int64_t)1 << 30), 31);
  if (right == 0) return (int32_t)hi;
  const int64_t mag = hi < 0 ? -hi : hi;
  const int64_t q = (mag + ((int64_t)1 << (right - 1))) >> right;
  return (int32_t)(hi < 0 ? -q : q);
}

static void test_requantize_sweep(void) {
  test_rng r = {1618};
  int8_t s_in[256], s_out[256];
  uint8_t u_in[256], u_out[256];
  for (int i = 0; i < 256; i++) s_in[i] = (int8_t)(i - 128), u_in[i] = (uint8_t)i;
  for (int it = 0; it < 300; it++) {
    const float in_scale = test_rand_float(&r, 0.01f, 0.2f);
    const float ratio = it % 3 == 0 ? 1.0f : expf(test_rand_float(&r, -4.0f, 4.0f));
    const float out_scale = in_scale / ratio;
    int32_t m;
    int s;
    kiln_quantize_multiplier((double)in_scale / (double)out_scale, &m, &s);
    const int in_signed = it % 2, out_signed = (it / 2) % 2;
    const int32_t in_zp = in_signed ? pick_zp(&r, -128, 127) : pick_zp(&r, 0, 255);
    const int32_t out_zp = out_signed ? pick_zp(&r, -128, 127) : pick_zp(&r, 0, 255);
    if (in_signed && out_signed) kiln_s8_requantize_s8_ref(256, s_in, in_zp, m, s, out_zp, s_out);
    if (in_signed && !out_signed) kiln_s8_requantize_u8_ref(256, s_in, in_zp, m, s, out_zp, u_out);
    if (!in_signed && out_signed) kiln_u8_requantize_s8_ref(256, u_in, in_zp, m, s, out_zp, s_out);
    if (!in_signed && !out_signed) kiln_u8_requantize_u8_ref(256, u_in, in_zp, m, s, out_zp, u_out);
    int bad = 0;
    const int32_t lo = out_signed ? -128 : 0, hi = out_signed ? 127 : 255;
    for (int i = 0; i < 256; i++) {
      const int32_t q = in_signed ? s_in[i] : u_in[i];
      const int32_t got = out_signed ? s_out[i] : u_out[i];
      const int32_t want = kiln_clamp_i32(spec_mul(q - in_zp, m, s) + out_zp, lo, hi);
      if (got != want) bad++;
      const double exact = (double)(q - in_zp) * in_scale / out_scale + out_zp;
      const double ce = exact < lo ? lo : exact > hi ? hi : exact;
      /* Two roundings: at most 0.5 + 0.25 steps from the exact value. */
      if (fabs(got - ce) > 0.75 + 1e-3) bad++;
    }
    CHECK_MSG(bad == 0, "requantize %d: %d wrong (ratio %g)", it, bad, (double)ratio);
  }
}

static void test_dequantize(void) {
  test_rng r = {31};
  int8_t s8[256];
  uint8_t u8[256];
  int16_t s16[256];
  float out[256];
  for (int i = 0; i < 256; i++) {
    s8[i] = (int8_t)(i - 128), u8[i] = (uint8_t)i;
    s16[i] = (int16_t)test_rand_int(&r, -32768, 32767);
  }
  for (int it = 0; it < 100; it++) {
    const float scale = expf(test_rand_float(&r, -12.0f, 3.0f));
    const int32_t zs = pick_zp(&r, -128, 127), zu = pick_zp(&r, 0, 255),
                  z16 = test_rand_int(&r, -300, 300);
    int bad = 0;
    kiln_s8_dequantize_ref(256, s8, scale, zs, out);
    for (int i = 0; i < 256; i++) bad += out[i] != (float)((double)scale * (s8[i] - zs));
    kiln_u8_dequantize_ref(256, u8, scale, zu, out);
    for (int i = 0; i < 256; i++) bad += out[i] != (float)((double)scale * (u8[i] - zu));
    kiln_s16_dequantize_ref(256, s16, scale, z16, out);
    for (int i = 0; i < 256; i++) bad += out[i] != (float)((double)scale * (s16[i] - z16));
    CHECK(bad == 0);
  }
  /* Per axis: [outer 4, channels 8, inner 8] over all 256 int8 values. */
  float scales[8];
  int32_t zps[8];
  for (int c = 0; c < 8; c++)
    scales[c] = expf(test_rand_float(&r, -8, 0)), zps[c] = test_rand_int(&r, -5, 5);
  kiln_s8_dequantize_per_axis_ref(4, 8, 8, s8, scales, zps, out);
  int bad = 0;
  for (int i = 0; i < 256; i++)
    bad += out[i] != scales[(i / 8) % 8] * (float)(s8[i] - zps[(i / 8) % 8]);
  for (int c = 0; c < 8; c++) zps[c] += 128;
  kiln_u8_dequantize_per_axis_ref(4, 8, 8, u8, scales, zps, out);
  for (int i = 0; i < 256; i++)
    bad += out[i] != scales[(i / 8) % 8] * (float)(u8[i] - zps[(i / 8) % 8]);
  CHECK(bad == 0);
}

/* ---- IEEE half ---- */

/* The value of a finite half pattern, from the format's definition. */
static double half_value(uint16_t h) {
  const int e = (h >> 10) & 31, m = h & 1023;
  const double v = e == 0 ? ldexp(m, -24) : ldexp(1024 + m, e - 25);
  return (h & 0x8000) ? -v : v;
}

static void test_f16_to_f32_exhaustive(void) {
  int bad = 0;
  float buf[1];
  for (uint32_t h = 0; h < 65536; h++) {
    const float f = kiln_half_to_float((uint16_t)h);
    const int e = (h >> 10) & 31, m = h & 1023;
    const int neg = (h & 0x8000) != 0;
    if (e == 31 && m == 0) {
      if (!isinf(f) || (signbit(f) != 0) != neg) bad++;
    } else if (e == 31) {
      /* NaN: sign kept, payload in the top mantissa bits. */
      if (!isnan(f) || (signbit(f) != 0) != neg || ((fbits(f) >> 13) & 1023) != (uint32_t)m) bad++;
    } else {
      if ((double)f != half_value((uint16_t)h) || (signbit(f) != 0) != neg) bad++;
    }
    const uint16_t hh = (uint16_t)h;
    kiln_f16_dequantize_ref(1, &hh, buf);
    if (fbits(buf[0]) != fbits(f)) bad++;
  }
  CHECK_MSG(bad == 0, "%d half patterns convert wrongly", bad);
}

/* The half nearest to x >= 0 (ties to an even pattern), by search over the
 * ordered finite patterns; 0x7c00 stands for 65536 so rounding past 65504
 * lands on infinity. */
static uint16_t nearest_half(double x) {
  if (x >= 65536.0) return 0x7c00;
  uint32_t lo = 0, hi = 0x7c00;
  while (hi - lo > 1) {
    const uint32_t mid = (lo + hi) / 2;
    if (half_value((uint16_t)mid) <= x)
      lo = mid;
    else
      hi = mid;
  }
  const double vl = half_value((uint16_t)lo),
               vh = hi == 0x7c00 ? 65536.0 : half_value((uint16_t)hi);
  if (x - vl < vh - x) return (uint16_t)lo;
  if (x - vl > vh - x) return (uint16_t)hi;
  return (uint16_t)((lo & 1) ? hi : lo);
}

static int check_f32_to_f16(float f) {
  const uint16_t got = kiln_float_to_half(f);
  if (isnan(f))
    return ((got & 0x7c00) == 0x7c00 && (got & 0x3ff) && ((got >> 15) == (fbits(f) >> 31))) ? 0 : 1;
  const uint16_t sign = (uint16_t)((fbits(f) >> 16) & 0x8000);
  const uint16_t want = (uint16_t)(sign | (isinf(f) ? 0x7c00 : nearest_half(fabs((double)f))));
  return got == want ? 0 : 1;
}

static void test_f32_to_f16(void) {
  int bad = 0;
  for (uint32_t h = 0; h < 65536; h++) {
    const float f = kiln_half_to_float((uint16_t)h);
    if (isnan(f)) {
      bad += check_f32_to_f16(f);
      continue;
    }
    if (kiln_float_to_half(f) != h) bad++; /* every half round-trips */
    if ((h & 0x7fff) < 0x7c00) {
      /* The midpoint to the next pattern and the floats just around it. */
      const double next =
          (h & 0x7fff) == 0x7bff ? 65536.0 : fabs(half_value((uint16_t)((h & 0x7fff) + 1)));
      const double mid = (fabs((double)f) + next) / 2;
      const float fm = (float)(h & 0x8000 ? -mid : mid);
      bad += check_f32_to_f16(fm);
      bad += check_f32_to_f16(nextafterf(fm, 0.0f));
      bad += check_f32_to_f16(nextafterf(fm, fm > 0 ? INFINITY : -INFINITY));
    }
  }
  /* Float patterns across every exponent, every 4099th one. */
  for (uint64_t u = 0; u < 0x100000000ull; u += 4099)
    bad += check_f32_to_f16(from_bits((uint32_t)u));
  CHECK(kiln_float_to_half(65504.0f) == 0x7bff);
  CHECK(kiln_float_to_half(65519.996f) == 0x7bff);
  CHECK(kiln_float_to_half(65520.0f) == 0x7c00);
  CHECK(kiln_float_to_half(-1e10f) == 0xfc00);
  CHECK(kiln_float_to_half(5.9604645e-8f) == 0x0001);
  CHECK(kiln_float_to_half(2.9802322e-8f) == 0x0000); /* half the smallest: ties to even 0 */
  CHECK(kiln_float_to_half(2.9802326e-8f) == 0x0001);
  CHECK(kiln_float_to_half(-0.0f) == 0x8000);
  CHECK(kiln_float_to_half(1e-40f) == 0x0000);
  CHECK_MSG(bad == 0, "%d floats convert wrongly", bad);
}

int main(void) {
  RUN(test_concat_sweep);
  RUN(test_concat_u8_rescale_exhaustive);
  RUN(test_pad_sweep);
  RUN(test_bilinear_sweep);
  RUN(test_bilinear_identity);
  RUN(test_bilinear_fixed_bounds);
  RUN(test_nearest_sweep);
  RUN(test_quantize_sweep);
  RUN(test_quantize_per_axis);
  RUN(test_requantize_sweep);
  RUN(test_dequantize);
  RUN(test_f16_to_f32_exhaustive);
  RUN(test_f32_to_f16);
  return test_summary();
}
