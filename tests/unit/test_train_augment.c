/* Box-aware augmentation: flips move pixels and boxes alike (float and
 * RGB8, twice is the identity); crop / resize maps boxes by the window and
 * clips or drops them by the documented rules, keeping labels aligned;
 * resampling an identity window reproduces the image; random crop and
 * scale jitter windows respect their ranges and repeat with the seed;
 * colour jitter with zero amounts is the identity and stays in range. */
#include <math.h>
#include <string.h>

#include "kiln/train.h"
#include "testutil.h"

#define NEAR(a, b) (fabs((double)(a) - (double)(b)) < 1e-4)

static void test_hflip(void) {
  float px[2 * 3 * 2] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
  kiln_fimage img = {px, 2, 3, 2};
  float xyxy[8] = {0.5f, 0.0f, 1.5f, 2.0f, 2.0f, 1.0f, 3.0f, 2.0f};
  int32_t labels[2] = {4, 7};
  kiln_boxes boxes = {xyxy, labels, 2};
  kiln_aug_hflip(&img, &boxes);
  const float want[12] = {5, 6, 3, 4, 1, 2, 11, 12, 9, 10, 7, 8};
  CHECK(memcmp(px, want, sizeof want) == 0);
  CHECK(NEAR(xyxy[0], 1.5) && NEAR(xyxy[2], 2.5) && NEAR(xyxy[1], 0.0) && NEAR(xyxy[3], 2.0));
  CHECK(NEAR(xyxy[4], 0.0) && NEAR(xyxy[6], 1.0) && labels[0] == 4 && boxes.count == 2);

  kiln_image rgb;
  kiln_error err;
  REQUIRE(kiln_image_create(3, 2, &rgb, &err) == KILN_OK);
  for (int i = 0; i < 18; i++) rgb.pixels[i] = (uint8_t)i;
  float b[4] = {0.0f, 0.0f, 1.0f, 1.0f};
  kiln_boxes one = {b, NULL, 1};
  kiln_aug_hflip_rgb8(&rgb, &one);
  CHECK(rgb.pixels[0] == 6 && rgb.pixels[6] == 0 && rgb.pixels[3] == 3 && rgb.pixels[9] == 15);
  CHECK(NEAR(b[0], 2.0) && NEAR(b[2], 3.0));
  kiln_aug_hflip_rgb8(&rgb, &one);
  for (int i = 0; i < 18; i++) CHECK(rgb.pixels[i] == i);
  CHECK(NEAR(b[0], 0.0) && NEAR(b[2], 1.0));
  kiln_image_free(&rgb);
}

static void test_crop_boxes(void) {
  enum { W = 20, H = 10 };
  static float px[H * W];
  for (int i = 0; i < H * W; i++) px[i] = (float)i;
  kiln_fimage src = {px, H, W, 1};
  static float out[5 * 10];
  kiln_fimage dst = {out, 5, 10, 1};
  /* window x 4..14, y 2..7 (10 x 5) into 10 x 5: a plain shift. */
  const float window[4] = {4, 2, 10, 5};
  float xyxy[5 * 4] = {
      5, 3, 8, 6,     /* inside: shifted to 1,1,4,4 */
      0, 0, 6, 4,     /* 2 of 6 wide x 2 of 4 high inside: 4/24 visible -> dropped */
      12, 5, 16, 9,   /* 2 of 4 x 2 of 4 = 1/4 visible: kept at 0.25, clipped */
      14.5f, 3, 18, 6, /* outside */
      4, 2, 14.5f, 2.5f /* inside but only half a pixel high after clipping */
  };
  int32_t labels[5] = {0, 1, 2, 3, 4};
  kiln_boxes boxes = {xyxy, labels, 5};
  kiln_error err;
  REQUIRE(kiln_aug_crop_resize(&src, NULL, window, 0.0f, &dst, &boxes, 0.25f, &err) == KILN_OK);
  REQUIRE(boxes.count == 2);
  CHECK(labels[0] == 0 && labels[1] == 2);
  CHECK(NEAR(xyxy[0], 1) && NEAR(xyxy[1], 1) && NEAR(xyxy[2], 4) && NEAR(xyxy[3], 4));
  CHECK(NEAR(xyxy[4], 8) && NEAR(xyxy[5], 3) && NEAR(xyxy[6], 10) && NEAR(xyxy[7], 5));
  /* A shift by whole pixels copies pixels exactly. */
  CHECK(out[0] == px[2 * W + 4] && out[5 * 10 - 1] == px[6 * W + 13]);

  /* Scaling: window 0..20 x 0..10 into 10 x 5 halves coordinates. */
  float b[4] = {2, 2, 12, 8};
  kiln_boxes one = {b, NULL, 1};
  const float whole[4] = {0, 0, W, H};
  REQUIRE(kiln_aug_crop_resize(&src, NULL, whole, 0.0f, &dst, &one, 0.5f, &err) == KILN_OK);
  CHECK(one.count == 1 && NEAR(b[0], 1) && NEAR(b[1], 1) && NEAR(b[2], 6) && NEAR(b[3], 4));
  /* Averaging 2x2 blocks: output (0,0) samples the source at (0.5, 0.5). */
  CHECK(NEAR(out[0], (px[0] + px[1] + px[W] + px[W + 1]) / 4.0));

  /* Identity window reproduces the image; RGB8 source agrees with float. */
  kiln_image rgb;
  REQUIRE(kiln_image_create(W, H, &rgb, &err) == KILN_OK);
  static float fpx[H * W * 3], o1[H * W * 3], o2[H * W * 3];
  for (int i = 0; i < H * W * 3; i++) rgb.pixels[i] = (uint8_t)(i * 7), fpx[i] = (float)(uint8_t)(i * 7);
  kiln_fimage fsrc = {fpx, H, W, 3}, d1 = {o1, H, W, 3}, d2 = {o2, H, W, 3};
  REQUIRE(kiln_aug_crop_resize(&fsrc, NULL, whole, 0.0f, &d1, NULL, 0.5f, &err) == KILN_OK);
  REQUIRE(kiln_aug_crop_resize(NULL, &rgb, whole, 0.0f, &d2, NULL, 0.5f, &err) == KILN_OK);
  CHECK(memcmp(o1, fpx, sizeof o1) == 0 && memcmp(o1, o2, sizeof o1) == 0);
  /* Outside the source: the fill value. */
  const float beyond[4] = {-40, 0, 20, 10};
  REQUIRE(kiln_aug_crop_resize(NULL, &rgb, beyond, 128.0f, &d2, NULL, 0.5f, &err) == KILN_OK);
  CHECK(o2[0] == 128.0f);
  CHECK(kiln_aug_crop_resize(&src, NULL, whole, 0.0f, &d1, NULL, 0.5f, &err) ==
        KILN_ERR_INVALID_ARG);
  kiln_image_free(&rgb);
}

static void test_windows(void) {
  kiln_rng a, b;
  kiln_rng_seed(&a, 5);
  kiln_rng_seed(&b, 5);
  for (int i = 0; i < 200; i++) {
    float w[4], w2[4];
    kiln_aug_random_crop_window(&a, 64, 48, 0.08f, 1.0f, 0.75f, 1.333f, w);
    kiln_aug_random_crop_window(&b, 64, 48, 0.08f, 1.0f, 0.75f, 1.333f, w2);
    CHECK(memcmp(w, w2, sizeof w) == 0);
    CHECK(w[0] >= 0 && w[1] >= 0 && w[0] + w[2] <= 64.001f && w[1] + w[3] <= 48.001f);
    const float area = w[2] * w[3] / (64.0f * 48.0f), ratio = w[2] / w[3];
    CHECK(area >= 0.079f && area <= 1.001f && ratio >= 0.749f && ratio <= 1.334f);
    kiln_aug_scale_jitter_window(&a, 64, 48, 32, 32, 0.5f, 2.0f, w);
    kiln_aug_scale_jitter_window(&b, 64, 48, 32, 32, 0.5f, 2.0f, w2);
    CHECK(memcmp(w, w2, sizeof w) == 0);
    /* The window covers out / f pixels with f = fit * s, fit = 0.5. */
    const float f = 32.0f / w[2];
    CHECK(NEAR(w[2], w[3]) && f >= 0.5f * 0.5f - 1e-4f && f <= 0.5f * 2.0f + 1e-4f);
    CHECK(w[0] >= 0 && w[1] >= 0);
    if (64 * f > 32) CHECK(w[0] + w[2] <= 64.01f);
  }
}

static void test_color(void) {
  float px[4 * 3] = {0.1f, 0.2f, 0.3f, 0.9f, 0.5f, 0.0f, 1.0f, 1.0f, 1.0f, 0.4f, 0.4f, 0.4f};
  float copy[12];
  memcpy(copy, px, sizeof px);
  kiln_fimage img = {px, 2, 2, 3};
  kiln_rng r;
  kiln_rng_seed(&r, 1);
  kiln_aug_color_jitter(&img, &r, 0.0f, 0.0f, 0.0f, 1.0f);
  for (int i = 0; i < 12; i++) CHECK(NEAR(px[i], copy[i]));
  for (int k = 0; k < 50; k++) {
    kiln_aug_color_jitter(&img, &r, 0.4f, 0.4f, 0.4f, 1.0f);
    for (int i = 0; i < 12; i++) CHECK(px[i] >= 0.0f && px[i] <= 1.0f);
  }
  /* A grey pixel stays grey under saturation and contrast. */
  CHECK(NEAR(px[9], px[10]) && NEAR(px[10], px[11]));
  kiln_image rgb;
  kiln_error err;
  REQUIRE(kiln_image_create(2, 1, &rgb, &err) == KILN_OK);
  const uint8_t v[6] = {10, 200, 30, 255, 0, 128};
  memcpy(rgb.pixels, v, 6);
  REQUIRE(kiln_aug_color_jitter_rgb8(&rgb, &r, 0.0f, 0.0f, 0.0f, &err) == KILN_OK);
  CHECK(memcmp(rgb.pixels, v, 6) == 0);
  kiln_image_free(&rgb);
}

int main(void) {
  RUN(test_hflip);
  RUN(test_crop_boxes);
  RUN(test_windows);
  RUN(test_color);
  return test_summary();
}
