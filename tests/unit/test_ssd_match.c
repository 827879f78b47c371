/*
 * Tests of train/ssd_match.c: IoU, anchor matching (threshold matches,
 * forced best anchors and their tie rule, ignore regions) on hand-built
 * anchors, and box-target encoding against hand-computed values and as the
 * inverse of kiln_detect_decode_boxes on the shared SSD's anchors.
 */
#include <math.h>
#include <string.h>

#include "kiln/detect.h"
#include "testutil.h"
#include "train/ssd_int.h"

static void test_iou(void) {
  const float a[4] = {0, 0, 2, 2}, b[4] = {1, 1, 3, 3}, c[4] = {2, 2, 3, 3}, e[4] = {1, 1, 1, 3};
  CHECK(fabsf(ssd_iou(a, b) - 1.0f / 7.0f) < 1e-7f);
  CHECK(ssd_iou(a, a) == 1.0f);
  CHECK(ssd_iou(a, c) == 0.0f); /* touching corners */
  CHECK(ssd_iou(a, e) == 0.0f); /* empty box */
}

/* Quadrant anchors of a unit image plus one covering all of it. */
static const float quadrants[5][4] = {
    {0.25f, 0.25f, 0.5f, 0.5f}, {0.25f, 0.75f, 0.5f, 0.5f}, {0.75f, 0.25f, 0.5f, 0.5f},
    {0.75f, 0.75f, 0.5f, 0.5f}, {0.5f, 0.5f, 1.0f, 1.0f}};

static void test_corners(void) {
  float c[5][4];
  ssd_anchor_corners(&quadrants[0][0], 5, &c[0][0]);
  const float want[5][4] = {{0, 0, 0.5f, 0.5f}, {0, 0.5f, 0.5f, 1},  {0.5f, 0, 1, 0.5f},
                            {0.5f, 0.5f, 1, 1}, {0, 0, 1, 1}};
  CHECK(memcmp(c, want, sizeof c) == 0);
}

static void test_match_rules(void) {
  float corners[5][4];
  ssd_anchor_corners(&quadrants[0][0], 5, &corners[0][0]);
  /* Box 0 overlaps anchor 0 by 0.25 / 0.3 = 0.83 (a threshold match) and
   * the full anchor by 0.3. Box 1 is small inside anchor 3 (IoU 0.25): only
   * forced. Box 2 equals box 1: its best anchor is box 1's, so it gets none
   * (the earlier box keeps a forced anchor). The ignore box covers anchor 2. */
  const float boxes[3][4] = {{0, 0, 0.5f, 0.6f}, {0.55f, 0.55f, 0.8f, 0.8f},
                             {0.55f, 0.55f, 0.8f, 0.8f}};
  const float ignore[1][4] = {{0.5f, 0, 1, 0.5f}};
  int32_t match[5];
  const int32_t pos = ssd_match(&corners[0][0], 5, &boxes[0][0], 3, &ignore[0][0], 1, 0.5f, match);
  const int32_t want[5] = {0, SSD_NEGATIVE, SSD_IGNORED, 1, SSD_NEGATIVE};
  CHECK(pos == 2);
  CHECK(memcmp(match, want, sizeof want) == 0);

  /* A threshold match below 0.5 does not count; at exactly the threshold it does. */
  const float half[1][4] = {{0, 0, 0.5f, 1.0f}}; /* IoU 0.5 with anchor 0 and anchor 4 */
  ssd_match(&corners[0][0], 5, &half[0][0], 1, NULL, 0, 0.5f, match);
  CHECK(match[0] == 0 && match[1] == 0 && match[4] == 0);
  CHECK(match[2] == SSD_NEGATIVE && match[3] == SSD_NEGATIVE);
  ssd_match(&corners[0][0], 5, &half[0][0], 1, NULL, 0, 0.51f, match);
  CHECK(match[0] == 0); /* forced: the first of the tied best anchors */
  CHECK(match[1] == SSD_NEGATIVE && match[4] == SSD_NEGATIVE);

  /* A forced match beats a better threshold match; among boxes forcing the
   * same anchor the first wins. */
  const float ab[2][4] = {{0, 0, 0.4f, 0.4f}, {0, 0, 0.5f, 0.5f}};
  ssd_match(&corners[0][0], 5, &ab[0][0], 2, NULL, 0, 0.5f, match);
  CHECK(match[0] == 0);
  const float ba[2][4] = {{0, 0, 0.5f, 0.5f}, {0, 0, 0.4f, 0.4f}};
  ssd_match(&corners[0][0], 5, &ba[0][0], 2, NULL, 0, 0.5f, match);
  CHECK(match[0] == 0);
  /* A box overlapping nothing forces nothing; no boxes: all negative. */
  const float off[1][4] = {{2, 2, 3, 3}};
  CHECK(ssd_match(&corners[0][0], 5, &off[0][0], 1, NULL, 0, 0.5f, match) == 0);
  CHECK(ssd_match(&corners[0][0], 5, NULL, 0, NULL, 0, 0.5f, match) == 0);
  for (int i = 0; i < 5; i++) CHECK(match[i] == SSD_NEGATIVE);
}

static void test_encode_by_hand(void) {
  kiln_detect_config cfg = kiln_detect_config_default300();
  const float anchor[4] = {0.5f, 0.5f, 0.2f, 0.4f};
  const float box[4] = {0.4f, 0.3f, 0.7f, 0.9f}; /* centre (0.55, 0.6), size 0.3 x 0.6 */
  float t[4];
  ssd_encode_box(box, anchor, &cfg, t);
  CHECK(fabsf(t[0] - 2.5f) < 1e-5f); /* 10 * 0.05 / 0.2 */
  CHECK(fabsf(t[1] - 2.5f) < 1e-5f); /* 10 * 0.1 / 0.4 */
  CHECK(fabsf(t[2] - 5.0f * logf(1.5f)) < 1e-5f);
  CHECK(fabsf(t[3] - 5.0f * logf(1.5f)) < 1e-5f);
  ssd_encode_box(box, anchor, &(kiln_detect_config){.y_scale = 1, .x_scale = 1, .h_scale = 1,
                                                    .w_scale = 1},
                 t);
  CHECK(fabsf(t[0] - 0.25f) < 1e-6f && fabsf(t[2] - logf(1.5f)) < 1e-6f);
}

/* Targets decode back to the boxes through kiln_detect_decode_boxes, and
 * a box equal to an anchor matches it with zero targets. */
static void test_round_trip(void) {
  kiln_detect_config cfg = kiln_detect_config_default300();
  float *anchors = NULL;
  int32_t n = 0;
  kiln_error err;
  REQUIRE(kiln_ssd_anchors_generate(&cfg.anchors, &anchors, &n, &err) == KILN_OK);
  REQUIRE(n == 1917);
  float *corners = kiln_malloc((size_t)n * 4 * sizeof(float));
  int32_t *match = kiln_malloc((size_t)n * sizeof(int32_t));
  REQUIRE(corners && match);
  ssd_anchor_corners(anchors, n, corners);
  test_rng rng = {7};
  float worst = 0.0f;
  for (int trial = 0; trial < 200; trial++) {
    float box[4], enc[4], dec[4];
    box[0] = test_rand_float(&rng, 0.0f, 0.8f);
    box[1] = test_rand_float(&rng, 0.0f, 0.8f);
    box[2] = box[0] + test_rand_float(&rng, 0.02f, 0.2f);
    box[3] = box[1] + test_rand_float(&rng, 0.02f, 0.2f);
    const int32_t pos = ssd_match(corners, n, box, 1, NULL, 0, 0.5f, match);
    CHECK(pos >= 1);
    for (int32_t i = 0; i < n; i++) {
      if (match[i] != 0) continue;
      CHECK(ssd_iou(corners + 4 * i, box) > 0.0f);
      ssd_encode_box(box, anchors + 4 * i, &cfg, enc);
      kiln_detect_decode_boxes(enc, anchors + 4 * i, 1, &cfg, dec);
      for (int k = 0; k < 4; k++) worst = fmaxf(worst, fabsf(dec[k] - box[k]));
    }
  }
  CHECK_MSG(worst < 2e-6f, "round trip error %g", (double)worst);
  /* Anchor 1000 as a box: matched to itself (IoU 1, forced first), zero targets. */
  const float *a = anchors + 4 * 1000;
  const float box[4] = {a[0] - a[2] / 2, a[1] - a[3] / 2, a[0] + a[2] / 2, a[1] + a[3] / 2};
  ssd_match(corners, n, box, 1, NULL, 0, 0.5f, match);
  CHECK(match[1000] == 0);
  float enc[4];
  ssd_encode_box(box, a, &cfg, enc);
  for (int k = 0; k < 4; k++) CHECK(fabsf(enc[k]) < 1e-5f);
  kiln_free(corners);
  kiln_free(match);
  kiln_free(anchors);
}

int main(void) {
  RUN(test_iou);
  RUN(test_corners);
  RUN(test_match_rules);
  RUN(test_encode_by_hand);
  RUN(test_round_trip);
  return test_summary();
}
