/*
 * Tests of SSD anchor generation (vision/anchors.c): the shared SSD's 1917
 * anchors against values recomputed here from the TF Object Detection API
 * formulas (in double), their order, count inference, MediaPipe-style
 * same-stride grids (BlazeFace's 896), and config validation.
 */
#include <math.h>
#include <string.h>

#include "kiln/detect.h"
#include "testutil.h"

static bool near(float a, double b) { return fabs((double)a - b) <= 1e-6 * (1.0 + fabs(b)); }

static bool anchor_is(const float *a, double yc, double xc, double h, double w) {
  return near(a[0], yc) && near(a[1], xc) && near(a[2], h) && near(a[3], w);
}

/* Scale of layer i of 6 between 0.2 and 0.95. */
static double scale_of(int i) { return i == 6 ? 1.0 : 0.2 + (0.95 - 0.2) * i / 5.0; }

static void test_default300(void) {
  kiln_ssd_anchor_config cfg = kiln_ssd_anchor_config_default300();
  float *a = NULL;
  int32_t n = 0;
  kiln_error err;
  REQUIRE(kiln_ssd_anchors_generate(&cfg, &a, &n, &err) == KILN_OK);
  REQUIRE(n == 1917);
  /* Layer 0 (19x19, reduced): (0.1, 1), (0.2, 2), (0.2, 0.5) per cell. */
  const double c0 = 0.5 / 19;
  CHECK(anchor_is(a + 0, c0, c0, 0.1, 0.1));
  CHECK(anchor_is(a + 4, c0, c0, 0.2 / sqrt(2.0), 0.2 * sqrt(2.0)));
  CHECK(anchor_is(a + 8, c0, c0, 0.2 / sqrt(0.5), 0.2 * sqrt(0.5)));
  /* Row-major cells: cell (y=2, x=5) starts at anchor 3 * (2 * 19 + 5). */
  const float *cell = a + 4 * 3 * (2 * 19 + 5);
  CHECK(anchor_is(cell, 2.5 / 19, 5.5 / 19, 0.1, 0.1));
  /* Last cell of layer 0. */
  CHECK(anchor_is(a + 4 * 1080, 18.5 / 19, 18.5 / 19, 0.1, 0.1));
  /* Layers 1..5: ratios 1, 2, 0.5, 3, 0.3333, then sqrt(s_i * s_i+1) at 1. */
  static const int grids[6] = {19, 10, 5, 3, 2, 1};
  static const double ratios[5] = {1.0, 2.0, 0.5, 3.0, 0.3333};
  int32_t start = 19 * 19 * 3;
  for (int layer = 1; layer < 6; layer++) {
    const int g = grids[layer];
    const double s = scale_of(layer), extra = sqrt(s * scale_of(layer + 1));
    /* First and last cell of the layer. */
    for (int which = 0; which < 2; which++) {
      const int y = which ? g - 1 : 0, x = which ? g - 1 : 0;
      const float *p = a + 4 * (start + 6 * (y * g + x));
      const double yc = (y + 0.5) / g, xc = (x + 0.5) / g;
      for (int r = 0; r < 5; r++) {
        CHECK_MSG(anchor_is(p + 4 * r, yc, xc, s / sqrt(ratios[r]), s * sqrt(ratios[r])),
                  "layer %d cell %d ratio %d: %g %g %g %g", layer, which, r, p[4 * r],
                  p[4 * r + 1], p[4 * r + 2], p[4 * r + 3]);
      }
      CHECK_MSG(anchor_is(p + 20, yc, xc, extra, extra), "layer %d extra anchor", layer);
    }
    start += g * g * 6;
  }
  CHECK(start == 1917);
  /* The very last anchor: 1x1 grid, interpolated scale sqrt(0.95 * 1). */
  CHECK(anchor_is(a + 4 * 1916, 0.5, 0.5, sqrt(0.95), sqrt(0.95)));
  /* Layer 1 first anchor, checked against literal numbers: scale 0.35. */
  CHECK(anchor_is(a + 4 * 1083, 0.05, 0.05, 0.35, 0.35));
  kiln_free(a);
}

static void test_infer(void) {
  kiln_ssd_anchor_config cfg;
  int32_t n = 0;
  kiln_error err;
  CHECK(kiln_ssd_anchor_config_infer(1917, 0, 0, &cfg, &err) == KILN_OK);
  CHECK(cfg.input_height == 300 && cfg.num_layers == 6);
  CHECK(kiln_ssd_anchor_config_infer(1917, 300, 300, &cfg, &err) == KILN_OK);
  /* 320x320 gives maps 20, 10, 5, 3, 2, 1: 1200 + 834 = 2034 anchors. */
  CHECK(kiln_ssd_anchor_config_infer(2034, 320, 320, &cfg, &err) == KILN_OK);
  CHECK(kiln_ssd_anchor_count(&cfg, &n, &err) == KILN_OK && n == 2034);
  CHECK(kiln_ssd_anchor_config_infer(2034, 0, 0, &cfg, &err) == KILN_ERR_UNSUPPORTED);
  CHECK_MSG(strstr(err.msg, "2034 anchors") && strstr(err.msg, "1917"), "%s", err.msg);
  CHECK(kiln_ssd_anchor_config_infer(896, 128, 128, &cfg, &err) == KILN_ERR_UNSUPPORTED);
}

/* BlazeFace short range (MediaPipe face_detection_short_range.pbtxt):
 * strides 8, 16, 16, 16 on 128x128, ratio 1, interpolated 1, fixed size:
 * the three stride-16 layers share one 8x8 grid with 6 anchors a cell. */
static void test_shared_stride_grid(void) {
  kiln_ssd_anchor_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.num_layers = 4;
  cfg.min_scale = 0.1484375f;
  cfg.max_scale = 0.75f;
  cfg.input_height = cfg.input_width = 128;
  cfg.strides[0] = 8;
  cfg.strides[1] = cfg.strides[2] = cfg.strides[3] = 16;
  cfg.n_aspect_ratios = 1;
  cfg.aspect_ratios[0] = 1.0f;
  cfg.interpolated_scale_aspect_ratio = 1.0f;
  cfg.anchor_offset_x = cfg.anchor_offset_y = 0.5f;
  cfg.fixed_anchor_size = true;
  float *a = NULL;
  int32_t n = 0;
  kiln_error err;
  REQUIRE(kiln_ssd_anchors_generate(&cfg, &a, &n, &err) == KILN_OK);
  CHECK(n == 896);
  CHECK(anchor_is(a, 0.5 / 16, 0.5 / 16, 1, 1));
  CHECK(anchor_is(a + 4, 0.5 / 16, 0.5 / 16, 1, 1));
  CHECK(anchor_is(a + 8, 0.5 / 16, 1.5 / 16, 1, 1));
  CHECK(anchor_is(a + 4 * 512, 0.5 / 8, 0.5 / 8, 1, 1));
  CHECK(anchor_is(a + 4 * 517, 0.5 / 8, 0.5 / 8, 1, 1));
  CHECK(anchor_is(a + 4 * 518, 0.5 / 8, 1.5 / 8, 1, 1));
  CHECK(anchor_is(a + 4 * 895, 7.5 / 8, 7.5 / 8, 1, 1));
  kiln_free(a);
  /* Without fixed size the shared grid interleaves the layers' scales. */
  cfg.fixed_anchor_size = false;
  REQUIRE(kiln_ssd_anchors_generate(&cfg, &a, &n, &err) == KILN_OK);
  const double s1 = 0.1484375 + (0.75 - 0.1484375) / 3.0, s2 = 0.1484375 + (0.75 - 0.1484375) * 2 / 3.0;
  CHECK(anchor_is(a + 4 * 512, 0.5 / 8, 0.5 / 8, s1, s1));
  CHECK(anchor_is(a + 4 * 514, 0.5 / 8, 0.5 / 8, s2, s2));
  CHECK(anchor_is(a + 4 * 517, 0.5 / 8, 0.5 / 8, sqrt(0.75), sqrt(0.75)));
  kiln_free(a);
}

static void test_explicit_feature_maps(void) {
  kiln_ssd_anchor_config cfg = kiln_ssd_anchor_config_default300();
  static const int32_t maps[6] = {20, 10, 5, 3, 2, 1};
  for (int i = 0; i < 6; i++) cfg.feature_map_height[i] = cfg.feature_map_width[i] = maps[i];
  int32_t n = 0;
  kiln_error err;
  CHECK(kiln_ssd_anchor_count(&cfg, &n, &err) == KILN_OK && n == 2034);
  /* A non-square grid: centers use each axis's own size. */
  cfg.feature_map_width[0] = 40;
  float *a = NULL;
  REQUIRE(kiln_ssd_anchors_generate(&cfg, &a, &n, &err) == KILN_OK);
  CHECK(n == 2034 + 20 * 20 * 3);
  CHECK(anchor_is(a + 4 * 3, 0.5 / 20, 1.5 / 40, 0.1, 0.1));
  kiln_free(a);
}

static void test_bad_configs(void) {
  kiln_error err;
  int32_t n;
  kiln_ssd_anchor_config cfg = kiln_ssd_anchor_config_default300();
  cfg.num_layers = 0;
  CHECK(kiln_ssd_anchor_count(&cfg, &n, &err) == KILN_ERR_INVALID_ARG);
  CHECK(strstr(err.msg, "num_layers") != NULL);
  cfg = kiln_ssd_anchor_config_default300();
  cfg.strides[3] = 0;
  CHECK(kiln_ssd_anchor_count(&cfg, &n, &err) == KILN_ERR_INVALID_ARG);
  CHECK(strstr(err.msg, "strides[3]") != NULL);
  cfg = kiln_ssd_anchor_config_default300();
  cfg.aspect_ratios[1] = -2.0f;
  CHECK(kiln_ssd_anchor_count(&cfg, &n, &err) == KILN_ERR_INVALID_ARG);
  cfg = kiln_ssd_anchor_config_default300();
  cfg.feature_map_height[2] = 4;
  CHECK(kiln_ssd_anchor_count(&cfg, &n, &err) == KILN_ERR_INVALID_ARG);
  cfg = kiln_ssd_anchor_config_default300();
  cfg.input_width = 0;
  CHECK(kiln_ssd_anchor_count(&cfg, &n, &err) == KILN_ERR_INVALID_ARG);
  cfg = kiln_ssd_anchor_config_default300();
  cfg.n_aspect_ratios = 0;
  cfg.interpolated_scale_aspect_ratio = 0.0f;
  cfg.reduce_boxes_in_lowest_layer = false;
  CHECK(kiln_ssd_anchor_count(&cfg, &n, &err) == KILN_ERR_INVALID_ARG);
  CHECK(strstr(err.msg, "no anchors") != NULL);
  cfg = kiln_ssd_anchor_config_default300();
  cfg.input_height = cfg.input_width = 2000000000;
  cfg.strides[0] = 1;
  float *a = (float *)&cfg;
  CHECK(kiln_ssd_anchors_generate(&cfg, &a, &n, &err) == KILN_ERR_INVALID_ARG);
  CHECK(a == NULL);
}

int main(void) {
  RUN(test_default300);
  RUN(test_infer);
  RUN(test_shared_stride_grid);
  RUN(test_explicit_feature_maps);
  RUN(test_bad_configs);
  return test_summary();
}
