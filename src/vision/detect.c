/*
 * SSD detection post-processing on buffers (kiln/detect.h): box decoding,
 * score conversion, NMS, and reading a post-processed model's outputs.
 *
 * Decoding and NMS are the TFLite_Detection_PostProcess reference kernel
 * (kernels/ref/detection_postprocess_ref.h) so that raw-output decoding
 * here and the op inside a model agree exactly: class-agnostic NMS is the
 * op's fast NMS with one class per detection, class-aware NMS its regular
 * NMS. These functions allocate their temporaries (kiln_malloc).
 */
#include <math.h>
#include <string.h>

#include "kernels/ref/detection_postprocess_ref.h"
#include "kiln/detect.h"

kiln_detect_config kiln_detect_config_default300(void) {
  kiln_detect_config c;
  memset(&c, 0, sizeof c);
  c.anchors = kiln_ssd_anchor_config_default300();
  c.y_scale = 10.0f;
  c.x_scale = 10.0f;
  c.h_scale = 5.0f;
  c.w_scale = 5.0f;
  c.score_fn = KILN_SCORE_SIGMOID;
  c.background_class = true;
  c.score_threshold = 0.6f;
  c.iou_threshold = 0.4f;
  c.max_detections = 10;
  c.class_agnostic = true;
  c.detections_per_class = 100;
  return c;
}

void kiln_detect_decode_boxes(const float *encodings, const float *anchors, int32_t n,
                              const kiln_detect_config *cfg, float *boxes) {
  kiln_f32_detection_decode_ref(encodings, 4, anchors, n, cfg->y_scale, cfg->x_scale,
                                cfg->h_scale, cfg->w_scale, boxes);
}

void kiln_detect_scores(const float *logits, int32_t n, int32_t n_classes, kiln_score_fn fn,
                        float *scores) {
  const size_t total = (size_t)n * (size_t)n_classes;
  if (fn == KILN_SCORE_SIGMOID) {
    for (size_t i = 0; i < total; i++) scores[i] = 1.0f / (1.0f + expf(-logits[i]));
  } else if (fn == KILN_SCORE_SOFTMAX) {
    for (int32_t a = 0; a < n; a++) {
      const float *x = logits + (size_t)a * (size_t)n_classes;
      float *y = scores + (size_t)a * (size_t)n_classes;
      float top = x[0];
      for (int32_t c = 1; c < n_classes; c++) top = x[c] > top ? x[c] : top;
      float sum = 0.0f;
      for (int32_t c = 0; c < n_classes; c++) {
        y[c] = expf(x[c] - top);
        sum += y[c];
      }
      for (int32_t c = 0; c < n_classes; c++) y[c] = y[c] / sum;
    }
  } else if (scores != logits) {
    memmove(scores, logits, total * sizeof *scores);
  }
}

/* The NMS settings of cfg, checked, as the kernel's parameters. */
static kiln_status nms_params(const kiln_detect_config *cfg, int32_t n, int32_t n_classes,
                              kiln_detpp_params *p, kiln_error *err) {
  if (!cfg) return kiln_fail(err, KILN_ERR_INVALID_ARG, "detect: NULL config");
  const int32_t background = cfg->background_class ? 1 : 0;
  if (n < 1 || n_classes < 1 + background)
    return kiln_fail(err, KILN_ERR_INVALID_ARG,
                     "detect: %d anchors and %d classes (%s background column)", (int)n,
                     (int)n_classes, background ? "with a" : "without");
  if ((int64_t)n * n_classes > INT32_MAX)
    return kiln_fail(err, KILN_ERR_INVALID_ARG, "detect: %d anchors x %d classes is too large",
                     (int)n, (int)n_classes);
  if (cfg->max_detections < 1 || cfg->max_detections > (1 << 20))
    return kiln_fail(err, KILN_ERR_INVALID_ARG, "detect: max_detections %d",
                     (int)cfg->max_detections);
  if (!cfg->class_agnostic && cfg->detections_per_class < 1)
    return kiln_fail(err, KILN_ERR_INVALID_ARG, "detect: detections_per_class %d",
                     (int)cfg->detections_per_class);
  if (!(cfg->iou_threshold > 0.0f && cfg->iou_threshold <= 1.0f))
    return kiln_fail(err, KILN_ERR_INVALID_ARG, "detect: iou_threshold %g is not in (0, 1]",
                     (double)cfg->iou_threshold);
  if (isnan(cfg->score_threshold))
    return kiln_fail(err, KILN_ERR_INVALID_ARG, "detect: score_threshold is NaN");
  memset(p, 0, sizeof *p);
  p->num_boxes = n;
  p->num_classes = n_classes - background;
  p->num_classes_with_bg = n_classes;
  p->max_detections = cfg->max_detections;
  p->max_classes_per_detection = 1;
  p->detections_per_class = cfg->class_agnostic ? 1 : cfg->detections_per_class;
  p->use_regular_nms = !cfg->class_agnostic;
  p->score_threshold = cfg->score_threshold;
  p->iou_threshold = cfg->iou_threshold;
  return KILN_OK;
}

kiln_status kiln_detect_nms(const float *boxes, const float *scores, int32_t n, int32_t n_classes,
                            const kiln_detect_config *cfg, kiln_detection *out, int32_t capacity,
                            int32_t *n_out, kiln_error *err) {
  *n_out = 0;
  kiln_detpp_params p;
  kiln_status st = nms_params(cfg, n, n_classes, &p, err);
  if (st != KILN_OK) return st;
  if (capacity < 0)
    return kiln_fail(err, KILN_ERR_INVALID_ARG, "detect: capacity %d", (int)capacity);
  const size_t slots = (size_t)p.max_detections;
  void *scratch = kiln_malloc(kiln_detection_nms_scratch_bytes(&p));
  float *res = kiln_malloc(slots * 6 * sizeof(float));
  if (!scratch || !res) {
    kiln_free(scratch);
    kiln_free(res);
    return kiln_fail(err, KILN_ERR_NOMEM, "detect: out of memory (%d anchors)", (int)n);
  }
  float *res_boxes = res, *res_classes = res + 4 * slots, *res_scores = res + 5 * slots;
  const int32_t count =
      kiln_f32_detection_nms_ref(&p, boxes, scores, scratch, res_boxes, res_classes, res_scores);
  const int32_t offset = n_classes - p.num_classes;
  int32_t written = 0;
  for (int32_t i = 0; i < count && written < capacity; i++) {
    kiln_detection *d = &out[written++];
    d->class_id = (int32_t)res_classes[i] + offset;
    d->score = res_scores[i];
    d->ymin = res_boxes[4 * i + 0];
    d->xmin = res_boxes[4 * i + 1];
    d->ymax = res_boxes[4 * i + 2];
    d->xmax = res_boxes[4 * i + 3];
  }
  *n_out = written;
  kiln_free(scratch);
  kiln_free(res);
  return KILN_OK;
}

kiln_status kiln_detect_decode(const float *box_encodings, const float *class_logits, int32_t n,
                               int32_t n_classes, const float *anchors,
                               const kiln_detect_config *cfg, kiln_detection *out,
                               int32_t capacity, int32_t *n_out, kiln_error *err) {
  *n_out = 0;
  kiln_detpp_params p;
  kiln_status st = nms_params(cfg, n, n_classes, &p, err);
  if (st != KILN_OK) return st;
  if (cfg->score_fn != KILN_SCORE_SIGMOID && cfg->score_fn != KILN_SCORE_SOFTMAX &&
      cfg->score_fn != KILN_SCORE_NONE)
    return kiln_fail(err, KILN_ERR_INVALID_ARG, "detect: score_fn %d", (int)cfg->score_fn);
  float *boxes = kiln_malloc((size_t)n * 4 * sizeof(float));
  float *scores = kiln_malloc((size_t)n * (size_t)n_classes * sizeof(float));
  if (!boxes || !scores) {
    st = kiln_fail(err, KILN_ERR_NOMEM, "detect: out of memory (%d anchors)", (int)n);
  } else {
    kiln_detect_decode_boxes(box_encodings, anchors, n, cfg, boxes);
    kiln_detect_scores(class_logits, n, n_classes, cfg->score_fn, scores);
    st = kiln_detect_nms(boxes, scores, n, n_classes, cfg, out, capacity, n_out, err);
  }
  kiln_free(boxes);
  kiln_free(scores);
  return st;
}

kiln_status kiln_detect_read_postprocessed(const float *boxes, const float *classes,
                                           const float *scores, const float *count, int32_t slots,
                                           int32_t classes_per_detection, int32_t class_offset,
                                           kiln_detection *out, int32_t capacity, int32_t *n_out,
                                           kiln_error *err) {
  *n_out = 0;
  if (slots < 0 || classes_per_detection < 1 || capacity < 0)
    return kiln_fail(err, KILN_ERR_INVALID_ARG,
                     "detections: %d slots, %d classes per detection, capacity %d", (int)slots,
                     (int)classes_per_detection, (int)capacity);
  const float c = count[0];
  const int32_t max_boxes = slots / classes_per_detection;
  if (!(c >= 0.0f && c <= (float)max_boxes) || c != floorf(c))
    return kiln_fail(err, KILN_ERR_FORMAT,
                     "detections: count %g is not a whole number in [0, %d]", (double)c,
                     (int)max_boxes);
  const int32_t entries = (int32_t)c * classes_per_detection;
  int32_t written = 0;
  for (int32_t i = 0; i < entries && written < capacity; i++) {
    const float cls = classes[i];
    if (!(fabsf(cls) < 16777216.0f) || cls != floorf(cls))
      return kiln_fail(err, KILN_ERR_FORMAT, "detections: class %g of slot %d is not a whole number",
                       (double)cls, (int)i);
    kiln_detection *d = &out[written++];
    d->class_id = (int32_t)cls + class_offset;
    d->score = scores[i];
    d->ymin = boxes[4 * i + 0];
    d->xmin = boxes[4 * i + 1];
    d->ymax = boxes[4 * i + 2];
    d->xmax = boxes[4 * i + 3];
  }
  *n_out = written;
  return KILN_OK;
}
