/*
 * Anchor matching and box-target encoding for SSD training
 * (train/ssd_int.h), as the TF Object Detection API's ArgMaxMatcher and
 * FasterRcnnBoxCoder do them, so that targets decode back to the ground
 * truth through kiln_detect_decode_boxes (kiln/detect.h).
 */
#include <math.h>

#include "train/ssd_int.h"

void ssd_anchor_corners(const float *anchors, int32_t n, float *corners) {
  for (int32_t i = 0; i < n; i++) {
    const float *a = anchors + (size_t)i * 4;
    float *c = corners + (size_t)i * 4;
    c[0] = a[0] - 0.5f * a[2];
    c[1] = a[1] - 0.5f * a[3];
    c[2] = a[0] + 0.5f * a[2];
    c[3] = a[1] + 0.5f * a[3];
  }
}

float ssd_iou(const float *a, const float *b) {
  const float area_a = (a[2] - a[0]) * (a[3] - a[1]), area_b = (b[2] - b[0]) * (b[3] - b[1]);
  if (!(area_a > 0.0f) || !(area_b > 0.0f)) return 0.0f;
  /* Plain comparisons: fminf / fmaxf are library calls without fast math. */
  const float ih = (a[2] < b[2] ? a[2] : b[2]) - (a[0] > b[0] ? a[0] : b[0]);
  const float iw = (a[3] < b[3] ? a[3] : b[3]) - (a[1] > b[1] ? a[1] : b[1]);
  if (ih <= 0.0f || iw <= 0.0f) return 0.0f;
  const float inter = ih * iw;
  return inter / (area_a + area_b - inter);
}

int32_t ssd_match(const float *corners, int32_t n, const float *boxes, int32_t n_boxes,
                  const float *ignore, int32_t n_ignore, float iou_threshold, int32_t *match) {
  for (int32_t i = 0; i < n; i++) {
    const float *c = corners + (size_t)i * 4;
    float best = 0.0f;
    int32_t best_box = SSD_NEGATIVE;
    for (int32_t g = 0; g < n_boxes; g++) {
      const float iou = ssd_iou(c, boxes + (size_t)g * 4);
      if (iou > best) {
        best = iou;
        best_box = g;
      }
    }
    match[i] = best >= iou_threshold ? best_box : SSD_NEGATIVE;
  }
  /* Forced matches: each box's best anchor, marked -3 - box while they are
   * made. An anchor forced by an earlier box keeps it; a forced match wins
   * over a threshold match. */
  for (int32_t g = 0; g < n_boxes; g++) {
    const float *b = boxes + (size_t)g * 4;
    float best = 0.0f;
    int32_t best_anchor = -1;
    for (int32_t i = 0; i < n; i++) {
      const float iou = ssd_iou(corners + (size_t)i * 4, b);
      if (iou > best) {
        best = iou;
        best_anchor = i;
      }
    }
    if (best_anchor >= 0 && match[best_anchor] > SSD_IGNORED) match[best_anchor] = -3 - g;
  }
  int32_t positives = 0;
  for (int32_t i = 0; i < n; i++) {
    if (match[i] < SSD_IGNORED) match[i] = -3 - match[i];
    if (match[i] >= 0) {
      positives++;
      continue;
    }
    for (int32_t g = 0; g < n_ignore; g++)
      if (ssd_iou(corners + (size_t)i * 4, ignore + (size_t)g * 4) >= iou_threshold) {
        match[i] = SSD_IGNORED;
        break;
      }
  }
  return positives;
}

void ssd_encode_box(const float *box, const float *anchor, const kiln_detect_config *cfg,
                    float *out) {
  const double eps = 1e-8;
  const double ha = (double)anchor[2] + eps, wa = (double)anchor[3] + eps;
  const double h = (double)box[2] - box[0] + eps, w = (double)box[3] - box[1] + eps;
  const double yc = 0.5 * ((double)box[0] + box[2]), xc = 0.5 * ((double)box[1] + box[3]);
  out[0] = (float)((yc - anchor[0]) / ha * cfg->y_scale);
  out[1] = (float)((xc - anchor[1]) / wa * cfg->x_scale);
  out[2] = (float)(log(h / ha) * cfg->h_scale);
  out[3] = (float)(log(w / wa) * cfg->w_scale);
}
