/*
 * SSD multiple-grid anchors (kiln/detect.h): the TF Object Detection API's
 * create_ssd_anchors layout with MediaPipe SsdAnchorsCalculator's float
 * arithmetic, operation for operation, so the anchors equal the ones
 * MediaPipe feeds its SSD decoders bit for bit.
 *
 * Order: layer groups (consecutive layers with one stride share a grid),
 * then rows, then columns, then the group's anchor specs (each layer's
 * aspect ratios, then its interpolated-scale anchor).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "kiln/detect.h"

/* Anchors per cell of one grid: at most every layer's ratios plus one. */
#define MAX_SPECS (KILN_SSD_MAX_LAYERS * (KILN_SSD_MAX_ASPECT_RATIOS + 1))
/* Bounds that keep every count and index well inside int32. */
#define MAX_ANCHORS (1 << 26)
#define MAX_GRID 65536

kiln_ssd_anchor_config kiln_ssd_anchor_config_default300(void) {
  kiln_ssd_anchor_config c;
  memset(&c, 0, sizeof c);
  c.num_layers = 6;
  c.min_scale = 0.2f;
  c.max_scale = 0.95f;
  c.input_height = 300;
  c.input_width = 300;
  static const int32_t strides[6] = {16, 32, 64, 128, 256, 512};
  memcpy(c.strides, strides, sizeof strides);
  static const float ratios[5] = {1.0f, 2.0f, 0.5f, 3.0f, 0.3333f};
  c.n_aspect_ratios = 5;
  memcpy(c.aspect_ratios, ratios, sizeof ratios);
  c.interpolated_scale_aspect_ratio = 1.0f;
  c.anchor_offset_x = 0.5f;
  c.anchor_offset_y = 0.5f;
  c.reduce_boxes_in_lowest_layer = true;
  c.fixed_anchor_size = false;
  return c;
}

/* MediaPipe CalculateScale, including its float/double mix. */
static float layer_scale(float min_scale, float max_scale, int32_t index, int32_t n) {
  if (n == 1) return (min_scale + max_scale) * 0.5f;
  const float span = max_scale - min_scale;
  const double step = (double)span * 1.0 * (double)index;
  const float denom = (float)n - 1.0f;
  return (float)((double)min_scale + step / (double)denom);
}

static bool finite_positive(float v) { return isfinite(v) && v > 0.0f; }

static kiln_status check_config(const kiln_ssd_anchor_config *c, kiln_error *err) {
  if (!c) return kiln_fail(err, KILN_ERR_INVALID_ARG, "anchor config: NULL");
  if (c->num_layers < 1 || c->num_layers > KILN_SSD_MAX_LAYERS)
    return kiln_fail(err, KILN_ERR_INVALID_ARG, "anchor config: num_layers %d not in [1, %d]",
                     (int)c->num_layers, KILN_SSD_MAX_LAYERS);
  if (c->n_aspect_ratios < 0 || c->n_aspect_ratios > KILN_SSD_MAX_ASPECT_RATIOS)
    return kiln_fail(err, KILN_ERR_INVALID_ARG,
                     "anchor config: n_aspect_ratios %d not in [0, %d]", (int)c->n_aspect_ratios,
                     KILN_SSD_MAX_ASPECT_RATIOS);
  for (int32_t i = 0; i < c->n_aspect_ratios; i++) {
    if (!finite_positive(c->aspect_ratios[i]))
      return kiln_fail(err, KILN_ERR_INVALID_ARG, "anchor config: aspect_ratios[%d] = %g",
                       (int)i, (double)c->aspect_ratios[i]);
  }
  if (!finite_positive(c->min_scale) || !finite_positive(c->max_scale))
    return kiln_fail(err, KILN_ERR_INVALID_ARG, "anchor config: scales %g..%g must be > 0",
                     (double)c->min_scale, (double)c->max_scale);
  if (!isfinite(c->interpolated_scale_aspect_ratio) || c->interpolated_scale_aspect_ratio < 0.0f)
    return kiln_fail(err, KILN_ERR_INVALID_ARG,
                     "anchor config: interpolated_scale_aspect_ratio %g",
                     (double)c->interpolated_scale_aspect_ratio);
  if (!isfinite(c->anchor_offset_x) || !isfinite(c->anchor_offset_y))
    return kiln_fail(err, KILN_ERR_INVALID_ARG, "anchor config: anchor offsets must be finite");
  for (int32_t i = 0; i < c->num_layers; i++) {
    if (c->strides[i] <= 0)
      return kiln_fail(err, KILN_ERR_INVALID_ARG, "anchor config: strides[%d] = %d", (int)i,
                       (int)c->strides[i]);
    const int32_t fh = c->feature_map_height[i], fw = c->feature_map_width[i];
    if ((fh == 0) != (fw == 0) || fh < 0 || fw < 0 || fh > MAX_GRID || fw > MAX_GRID)
      return kiln_fail(err, KILN_ERR_INVALID_ARG, "anchor config: feature map %d is %dx%d",
                       (int)i, (int)fh, (int)fw);
    const int64_t max_input = (int64_t)MAX_GRID * c->strides[i];
    if (fh == 0 && (c->input_height <= 0 || c->input_width <= 0 ||
                    c->input_height > max_input || c->input_width > max_input))
      return kiln_fail(err, KILN_ERR_INVALID_ARG,
                       "anchor config: input %dx%d cannot give layer %d's feature map",
                       (int)c->input_height, (int)c->input_width, (int)i);
  }
  return KILN_OK;
}

/* The anchor specs (height, width) of the grid that starts at layer
 * `first`; returns the layer after the group. */
static void push_spec(float *ratios, float *scales, int32_t *n, float ratio, float scale) {
  ratios[*n] = ratio;
  scales[*n] = scale;
  (*n)++;
}

static int32_t group_specs(const kiln_ssd_anchor_config *c, int32_t first, float *heights,
                           float *widths, int32_t *n_specs) {
  float ratios[MAX_SPECS], scales[MAX_SPECS];
  int32_t n = 0;
  int32_t last = first;
  while (last < c->num_layers && c->strides[last] == c->strides[first]) {
    const float scale = layer_scale(c->min_scale, c->max_scale, last, c->num_layers);
    if (last == 0 && c->reduce_boxes_in_lowest_layer) {
      push_spec(ratios, scales, &n, 1.0f, 0.1f);
      push_spec(ratios, scales, &n, 2.0f, scale);
      push_spec(ratios, scales, &n, 0.5f, scale);
    } else {
      for (int32_t r = 0; r < c->n_aspect_ratios; r++)
        push_spec(ratios, scales, &n, c->aspect_ratios[r], scale);
      if (c->interpolated_scale_aspect_ratio > 0.0f) {
        const float next = last == c->num_layers - 1
                               ? 1.0f
                               : layer_scale(c->min_scale, c->max_scale, last + 1, c->num_layers);
        const float product = scale * next;
        push_spec(ratios, scales, &n, c->interpolated_scale_aspect_ratio, sqrtf(product));
      }
    }
    last++;
  }
  for (int32_t i = 0; i < n; i++) {
    const float root = sqrtf(ratios[i]);
    heights[i] = scales[i] / root;
    widths[i] = scales[i] * root;
  }
  *n_specs = n;
  return last;
}

static void grid_size(const kiln_ssd_anchor_config *c, int32_t layer, int32_t *h, int32_t *w) {
  if (c->feature_map_height[layer] > 0) {
    *h = c->feature_map_height[layer];
    *w = c->feature_map_width[layer];
    return;
  }
  const float stride = (float)c->strides[layer];
  *h = (int32_t)ceilf(1.0f * (float)c->input_height / stride);
  *w = (int32_t)ceilf(1.0f * (float)c->input_width / stride);
}

/* Counts the anchors, and writes them when out is non-NULL. */
static int64_t walk(const kiln_ssd_anchor_config *c, float *out) {
  int64_t count = 0;
  int32_t layer = 0;
  while (layer < c->num_layers) {
    float heights[MAX_SPECS], widths[MAX_SPECS];
    int32_t n_specs = 0;
    const int32_t next = group_specs(c, layer, heights, widths, &n_specs);
    int32_t gh, gw;
    grid_size(c, layer, &gh, &gw);
    if (!out) {
      count += (int64_t)gh * gw * n_specs;
      if (count > MAX_ANCHORS) return count;
    } else {
      for (int32_t y = 0; y < gh; y++) {
        for (int32_t x = 0; x < gw; x++) {
          const float yc = ((float)y + c->anchor_offset_y) * 1.0f / (float)gh;
          const float xc = ((float)x + c->anchor_offset_x) * 1.0f / (float)gw;
          for (int32_t s = 0; s < n_specs; s++) {
            float *a = out + 4 * count++;
            a[0] = yc;
            a[1] = xc;
            a[2] = c->fixed_anchor_size ? 1.0f : heights[s];
            a[3] = c->fixed_anchor_size ? 1.0f : widths[s];
          }
        }
      }
    }
    layer = next;
  }
  return count;
}

kiln_status kiln_ssd_anchor_count(const kiln_ssd_anchor_config *cfg, int32_t *count,
                                  kiln_error *err) {
  kiln_status st = check_config(cfg, err);
  if (st != KILN_OK) return st;
  const int64_t n = walk(cfg, NULL);
  if (n <= 0)
    return kiln_fail(err, KILN_ERR_INVALID_ARG, "anchor config: yields no anchors");
  if (n > MAX_ANCHORS)
    return kiln_fail(err, KILN_ERR_INVALID_ARG, "anchor config: more than %d anchors",
                     MAX_ANCHORS);
  *count = (int32_t)n;
  return KILN_OK;
}

kiln_status kiln_ssd_anchors_generate(const kiln_ssd_anchor_config *cfg, float **out,
                                      int32_t *count, kiln_error *err) {
  *out = NULL;
  *count = 0;
  int32_t n = 0;
  kiln_status st = kiln_ssd_anchor_count(cfg, &n, err);
  if (st != KILN_OK) return st;
  float *anchors = kiln_calloc((size_t)n * 4, sizeof *anchors);
  if (!anchors) return kiln_fail(err, KILN_ERR_NOMEM, "anchors: out of memory (%d)", (int)n);
  walk(cfg, anchors);
  *out = anchors;
  *count = n;
  return KILN_OK;
}

kiln_status kiln_ssd_anchor_config_infer(int32_t n_anchors, int32_t input_height,
                                         int32_t input_width, kiln_ssd_anchor_config *out,
                                         kiln_error *err) {
  kiln_ssd_anchor_config c = kiln_ssd_anchor_config_default300();
  if (input_height > 0 && input_width > 0) {
    c.input_height = input_height;
    c.input_width = input_width;
  }
  int32_t expected = 0;
  kiln_status st = kiln_ssd_anchor_count(&c, &expected, err);
  if (st != KILN_OK) return st;
  if (expected != n_anchors)
    return kiln_fail(err, KILN_ERR_UNSUPPORTED,
                     "%d anchors do not match the standard SSD layout for a %dx%d input (%d "
                     "anchors); give the anchor configuration explicitly",
                     (int)n_anchors, (int)c.input_height, (int)c.input_width, (int)expected);
  *out = c;
  return KILN_OK;
}
