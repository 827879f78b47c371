/*
 * test_image_resize.c: bilinear resizing against a naive double-precision
 * implementation of the same definition (half-pixel centres, edge clamp),
 * and filling float32, uint8 and int8 input tensors: values against the
 * formulas, rounding of ties, clamping, layout, and the refusals.
 */
#include <math.h>
#include <string.h>

#include "kiln/image.h"
#include "test_image_util.h"
#include "testutil.h"

static void random_image(kiln_image *img, int w, int h, test_rng *rng) {
  kiln_error err;
  if (kiln_image_create(w, h, img, &err) != KILN_OK) abort();
  for (size_t i = 0; i < img->stride * (size_t)h; i++)
    img->pixels[i] = (uint8_t)test_rand_int(rng, 0, 255);
}

/* The definition, in double: the value before rounding. */
static double naive_bilinear(const kiln_image *s, int w, int h, int x, int y, int c) {
  double sx = (x + 0.5) * s->width / w - 0.5, sy = (y + 0.5) * s->height / h - 0.5;
  double fx0 = floor(sx), fy0 = floor(sy);
  double fx = sx - fx0, fy = sy - fy0;
  int x0 = (int)fx0, y0 = (int)fy0, x1 = x0 + 1, y1 = y0 + 1;
  x0 = x0 < 0 ? 0 : x0 > s->width - 1 ? s->width - 1 : x0;
  x1 = x1 < 0 ? 0 : x1 > s->width - 1 ? s->width - 1 : x1;
  y0 = y0 < 0 ? 0 : y0 > s->height - 1 ? s->height - 1 : y0;
  y1 = y1 < 0 ? 0 : y1 > s->height - 1 ? s->height - 1 : y1;
#define P(xx, yy) ((double)s->pixels[(size_t)(yy) * s->stride + 3 * (size_t)(xx) + (size_t)c])
  return (1 - fy) * ((1 - fx) * P(x0, y0) + fx * P(x1, y0)) +
         fy * ((1 - fx) * P(x0, y1) + fx * P(x1, y1));
#undef P
}

static void test_resize_vs_naive(void) {
  test_rng rng = {5};
  const int cases[][4] = {{1, 1, 1, 1},   {1, 1, 7, 5},     {7, 5, 1, 1},   {10, 10, 10, 10},
                          {4, 4, 8, 8},   {8, 8, 4, 4},     {13, 7, 300, 300}, {640, 480, 300, 300},
                          {300, 300, 640, 480}, {3, 200, 200, 3}, {99, 101, 37, 53}, {2, 2, 3, 3}};
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    int sw = cases[k][0], sh = cases[k][1], dw = cases[k][2], dh = cases[k][3];
    kiln_image src, dst;
    kiln_error err;
    random_image(&src, sw, sh, &rng);
    REQUIRE(kiln_image_resize_bilinear(&src, dw, dh, &dst, &err) == KILN_OK);
    CHECK(dst.width == dw && dst.height == dh && dst.stride == (size_t)dw * 3);
    double worst = 0;
    int exact = 0;
    for (int y = 0; y < dh; y++)
      for (int x = 0; x < dw; x++)
        for (int c = 0; c < 3; c++) {
          double v = naive_bilinear(&src, dw, dh, x, y, c);
          int got = dst.pixels[(size_t)y * dst.stride + 3 * (size_t)x + (size_t)c];
          double d = fabs(got - v);
          if (d > worst) worst = d;
          exact += got == (int)floor(v + 0.5);
        }
    /* Rounded to nearest: within half a level, plus float's error. */
    CHECK_MSG(worst <= 0.5 + 1e-3, "%dx%d -> %dx%d: off by %g", sw, sh, dw, dh, worst);
    CHECK_MSG(exact >= dw * dh * 3 * 99 / 100, "%dx%d -> %dx%d: %d of %d rounded as in double",
              sw, sh, dw, dh, exact, dw * dh * 3);
    kiln_image_free(&src);
    kiln_image_free(&dst);
  }
}

static void test_resize_known_values(void) {
  kiln_image src, dst;
  kiln_error err;
  REQUIRE(kiln_image_create(2, 1, &src, &err) == KILN_OK);
  memcpy(src.pixels, (uint8_t[]){0, 100, 255, 200, 0, 1}, 6);
  /* 2 -> 4 wide: sample points -0.25, 0.25, 0.75, 1.25 -> 0, .25, .75, 1;
   * 191.5 and 64.5 round up. */
  REQUIRE(kiln_image_resize_bilinear(&src, 4, 1, &dst, &err) == KILN_OK);
  static const uint8_t want[12] = {0, 100, 255, 50, 75, 192, 150, 25, 65, 200, 0, 1};
  CHECK_MSG(memcmp(dst.pixels, want, 12) == 0, "%d %d %d | %d %d %d | %d %d %d | %d %d %d",
            dst.pixels[0], dst.pixels[1], dst.pixels[2], dst.pixels[3], dst.pixels[4],
            dst.pixels[5], dst.pixels[6], dst.pixels[7], dst.pixels[8], dst.pixels[9],
            dst.pixels[10], dst.pixels[11]);
  kiln_image_free(&dst);
  /* Identity is a copy; 2 -> 1 averages. */
  REQUIRE(kiln_image_resize_bilinear(&src, 2, 1, &dst, &err) == KILN_OK);
  CHECK(memcmp(dst.pixels, src.pixels, 6) == 0);
  kiln_image_free(&dst);
  REQUIRE(kiln_image_resize_bilinear(&src, 1, 1, &dst, &err) == KILN_OK);
  CHECK(dst.pixels[0] == 100 && dst.pixels[1] == 50 && dst.pixels[2] == 128);
  kiln_image_free(&dst);

  CHECK(kiln_image_resize_bilinear(&src, 0, 5, &dst, &err) == KILN_ERR_INVALID_ARG);
  CHECK(dst.pixels == NULL);
  kiln_image empty = {0};
  CHECK(kiln_image_resize_bilinear(&empty, 5, 5, &dst, &err) == KILN_ERR_INVALID_ARG);
  kiln_image_free(&src);
}

/* ---- Tensors ---- */

static kiln_tensor_view view_of(kiln_dtype dtype, int32_t *shape, const kiln_quant *q, void *data,
                                size_t bytes) {
  return (kiln_tensor_view){"normalized_input_image_tensor", dtype, 4, shape, q, data, bytes};
}

static void test_tensor_float(void) {
  kiln_image img;
  kiln_error err;
  REQUIRE(kiln_image_create(4, 2, &img, &err) == KILN_OK);
  for (int i = 0; i < 24; i++) img.pixels[i] = (uint8_t)(i * 11);
  img.pixels[0] = 0;
  img.pixels[1] = 255;
  img.pixels[2] = 128;
  float t[2 * 4 * 3];
  int32_t shape[4] = {1, 2, 4, 3};
  kiln_tensor_view v = view_of(KILN_F32, shape, NULL, t, sizeof t);
  REQUIRE(kiln_image_to_tensor(&img, NULL, &v, &err) == KILN_OK);
  CHECK(t[0] == -1.0f && t[1] == 1.0f);
  CHECK(fabsf(t[2] - 0.5f / 127.5f) < 1e-7f);
  int bad = 0;
  for (int i = 0; i < 24; i++) bad += fabs(t[i] - (img.pixels[i] / 255.0 * 2 - 1)) > 1e-6;
  CHECK(bad == 0);

  kiln_image_norm norm = {{123.675f, 116.28f, 103.53f}, {58.395f, 57.12f, 57.375f}};
  REQUIRE(kiln_image_to_tensor(&img, &norm, &v, &err) == KILN_OK);
  bad = 0;
  for (int i = 0; i < 24; i++)
    bad += fabs(t[i] - (img.pixels[i] - norm.mean[i % 3]) / norm.std[i % 3]) > 1e-5;
  CHECK_MSG(bad == 0, "%d values off with per-channel mean/std", bad);
  kiln_image_free(&img);
}

static void test_tensor_quantized(void) {
  kiln_image img;
  kiln_error err;
  REQUIRE(kiln_image_create(16, 16, &img, &err) == KILN_OK);
  for (int i = 0; i < 256 * 3; i++) img.pixels[i] = (uint8_t)(i / 3); /* every value */
  int32_t shape[4] = {1, 16, 16, 3};
  uint8_t q8[16 * 16 * 3];

  /* uint8, scale 1/128, zero point 128 (the SSD MobileNet input). */
  float scale = 0.0078125f;
  int32_t zp = 128;
  kiln_quant qu = {1, 0, &scale, &zp};
  kiln_tensor_view v = view_of(KILN_U8, shape, &qu, q8, sizeof q8);
  REQUIRE(kiln_image_to_tensor(&img, NULL, &v, &err) == KILN_OK);
  CHECK(q8[0] == 0);            /* -1 -> -128 + 128 */
  CHECK(q8[3 * 255] == 255);    /* +1 -> 128 + 128 = 256, clamped */
  CHECK(q8[3 * 128] == 129);    /* 0.5/127.5*128 = 0.502 -> 1 */
  CHECK(q8[3 * 127] == 127);    /* -0.502 -> -1 */
  int bad = 0;
  for (int x = 0; x < 256; x++) {
    double real = (x - 127.5) / 127.5;
    long q = lround(real / 0.0078125) + 128;
    q = q < 0 ? 0 : q > 255 ? 255 : q;
    for (int c = 0; c < 3; c++) bad += q8[3 * x + c] != q;
  }
  CHECK_MSG(bad == 0, "%d uint8 values differ from round(real/scale)+zp", bad);
  /* mean = zero point, std = 1/scale passes raw pixels through. */
  kiln_image_norm raw = {{128, 128, 128}, {128, 128, 128}};
  REQUIRE(kiln_image_to_tensor(&img, &raw, &v, &err) == KILN_OK);
  bad = 0;
  for (int i = 0; i < 256 * 3; i++) bad += q8[i] != img.pixels[i];
  CHECK_MSG(bad == 0, "%d raw values changed", bad);

  /* int8 with ties: mean 0, std 1, scale 2: x/2 has halves, which round
   * away from zero (TFLite's round), and mean 255 makes them negative. */
  float s2 = 2.0f;
  int32_t zm = -128;
  kiln_quant qi = {1, 0, &s2, &zm};
  kiln_image_norm pos = {{0, 0, 0}, {1, 1, 1}}, neg = {{255, 255, 255}, {1, 1, 1}};
  v = view_of(KILN_I8, shape, &qi, q8, sizeof q8);
  REQUIRE(kiln_image_to_tensor(&img, &pos, &v, &err) == KILN_OK);
  const int8_t *s8 = (const int8_t *)q8;
  CHECK(s8[3 * 1] == 1 - 128);   /* 0.5 -> 1 */
  CHECK(s8[3 * 3] == 2 - 128);   /* 1.5 -> 2 */
  CHECK(s8[3 * 5] == 3 - 128);   /* 2.5 -> 3 (not banker's 2) */
  CHECK(s8[3 * 255] == 0);       /* 127.5 -> 128, + zero point -128 */
  REQUIRE(kiln_image_to_tensor(&img, &neg, &v, &err) == KILN_OK);
  CHECK(s8[3 * 254] == -128);    /* -0.5 -> -1, -129 clamped */
  zm = 0;
  REQUIRE(kiln_image_to_tensor(&img, &neg, &v, &err) == KILN_OK);
  CHECK(s8[3 * 254] == -1);      /* -0.5 -> -1 */
  CHECK(s8[3 * 250] == -3);      /* -2.5 -> -3 */
  CHECK(s8[3 * 0] == -128);      /* -127.5 -> -128 */
  CHECK(s8[3 * 255] == 0);
  bad = 0;
  for (int x = 0; x < 256; x++) {
    long q = lround((x - 255) / 2.0);
    q = q < -128 ? -128 : q > 127 ? 127 : q;
    for (int c = 0; c < 3; c++) bad += s8[3 * x + c] != q;
  }
  CHECK_MSG(bad == 0, "%d int8 values differ", bad);
  kiln_image_free(&img);
}

static void test_tensor_layout_and_resize(void) {
  test_rng rng = {11};
  kiln_image img, small;
  kiln_error err;
  random_image(&img, 37, 23, &rng);
  int32_t shape[4] = {1, 10, 12, 3};
  float t[10 * 12 * 3];
  kiln_tensor_view v = view_of(KILN_F32, shape, NULL, t, sizeof t);
  REQUIRE(kiln_image_to_tensor(&img, NULL, &v, &err) == KILN_OK);
  REQUIRE(kiln_image_resize_bilinear(&img, 12, 10, &small, &err) == KILN_OK);
  int bad = 0;
  for (int y = 0; y < 10; y++)
    for (int x = 0; x < 12; x++)
      for (int c = 0; c < 3; c++) {
        float want = (small.pixels[(size_t)y * small.stride + 3 * (size_t)x + (size_t)c] - 127.5f) / 127.5f;
        bad += t[(y * 12 + x) * 3 + c] != want; /* NHWC */
      }
  CHECK_MSG(bad == 0, "%d values differ from resize-then-normalize", bad);
  kiln_image_free(&small);
  kiln_image_free(&img);
}

static void test_tensor_refusals(void) {
  kiln_image img;
  kiln_error err;
  REQUIRE(kiln_image_create(8, 8, &img, &err) == KILN_OK);
  float t[8 * 8 * 4];
  float scale = 0.5f;
  int32_t zp = 0;
  kiln_quant q = {1, 0, &scale, &zp};

  int32_t s4[4] = {1, 8, 8, 4};
  kiln_tensor_view v = view_of(KILN_F32, s4, NULL, t, 8 * 8 * 4 * 4);
  CHECK(kiln_image_to_tensor(&img, NULL, &v, &err) == KILN_ERR_INVALID_ARG);
  CHECK_MSG(strstr(err.msg, "input tensor 'normalized_input_image_tensor': shape [1,8,8,4]") ==
                err.msg && strstr(err.msg, "[1,height,width,3]"), "%s", err.msg);
  int32_t batch2[4] = {2, 8, 8, 3};
  v = view_of(KILN_F32, batch2, NULL, t, 2 * 8 * 8 * 3 * 4);
  CHECK(kiln_image_to_tensor(&img, NULL, &v, &err) == KILN_ERR_INVALID_ARG);
  int32_t nchw[4] = {1, 3, 8, 8};
  v = view_of(KILN_F32, nchw, NULL, t, 8 * 8 * 3 * 4);
  CHECK(kiln_image_to_tensor(&img, NULL, &v, &err) == KILN_ERR_INVALID_ARG);
  CHECK_MSG(strstr(err.msg, "[1,3,8,8]"), "%s", err.msg);
  int32_t ok[4] = {1, 8, 8, 3};
  v = view_of(KILN_F32, ok, NULL, t, 8 * 8 * 3 * 4);
  v.rank = 3;
  CHECK(kiln_image_to_tensor(&img, NULL, &v, &err) == KILN_ERR_INVALID_ARG);
  v.rank = 4;
  v.bytes -= 4;
  CHECK(kiln_image_to_tensor(&img, NULL, &v, &err) == KILN_ERR_INVALID_ARG);
  CHECK_MSG(strstr(err.msg, "764 bytes") && strstr(err.msg, "768"), "%s", err.msg);
  v.bytes += 4;
  v.data = NULL;
  CHECK(kiln_image_to_tensor(&img, NULL, &v, &err) == KILN_ERR_INVALID_ARG);
  v.data = t;
  v.dtype = KILN_I16;
  v.bytes = 8 * 8 * 3 * 2;
  CHECK(kiln_image_to_tensor(&img, NULL, &v, &err) == KILN_ERR_UNSUPPORTED);
  CHECK_MSG(strstr(err.msg, "int16"), "%s", err.msg);
  v.dtype = KILN_I8;
  v.bytes = 8 * 8 * 3;
  CHECK(kiln_image_to_tensor(&img, NULL, &v, &err) == KILN_ERR_INVALID_ARG); /* no quant */
  CHECK_MSG(strstr(err.msg, "no quantization"), "%s", err.msg);
  kiln_quant none = {0, 0, NULL, NULL};
  v.quant = &none;
  CHECK(kiln_image_to_tensor(&img, NULL, &v, &err) == KILN_ERR_INVALID_ARG);
  float scales[3] = {1, 1, 1};
  int32_t zps[3] = {0, 0, 0};
  kiln_quant axis = {3, 3, scales, zps};
  v.quant = &axis;
  CHECK(kiln_image_to_tensor(&img, NULL, &v, &err) == KILN_ERR_INVALID_ARG);
  CHECK_MSG(strstr(err.msg, "per-axis"), "%s", err.msg);
  v.quant = &q;
  scale = 0;
  CHECK(kiln_image_to_tensor(&img, NULL, &v, &err) == KILN_ERR_INVALID_ARG);
  scale = 0.5f;
  zp = 200; /* outside int8 */
  CHECK(kiln_image_to_tensor(&img, NULL, &v, &err) == KILN_ERR_INVALID_ARG);
  zp = 0;
  CHECK(kiln_image_to_tensor(&img, NULL, &v, &err) == KILN_OK);
  kiln_image_norm bad_norm = {{0, 0, 0}, {1, 0, 1}};
  CHECK(kiln_image_to_tensor(&img, &bad_norm, &v, &err) == KILN_ERR_INVALID_ARG);
  CHECK_MSG(strstr(err.msg, "channel 1"), "%s", err.msg);
  kiln_image empty = {0};
  CHECK(kiln_image_to_tensor(&empty, NULL, &v, &err) == KILN_ERR_INVALID_ARG);
  kiln_image_free(&img);
}

int main(void) {
  RUN(test_resize_vs_naive);
  RUN(test_resize_known_values);
  RUN(test_tensor_float);
  RUN(test_tensor_quantized);
  RUN(test_tensor_layout_and_resize);
  RUN(test_tensor_refusals);
  return test_summary();
}
