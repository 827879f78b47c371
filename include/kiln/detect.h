/*
 * kiln/detect.h: SSD object-detection post-processing: anchor generation,
 * box decoding, score conversion, non-maximum suppression, reading the
 * outputs of a model that ends in TFLite_Detection_PostProcess, and adding
 * that op to a model that does not.
 *
 *   kiln_detect_config cfg = kiln_detect_config_default300();
 *   float *anchors; int32_t n_anchors;
 *   kiln_ssd_anchors_generate(&cfg.anchors, &anchors, &n_anchors, &err);
 *   // boxes: raw_outputs/box_encodings [1,1917,4]
 *   // logits: raw_outputs/class_predictions [1,1917,24]
 *   kiln_detection dets[10]; int32_t n;
 *   kiln_detect_decode(boxes, logits, n_anchors, 24, anchors, &cfg, dets, 10, &n, &err);
 *   for (int32_t i = 0; i < n; i++)  // sorted by score, best first
 *     printf("%s %.2f\n", labels[dets[i].class_id], dets[i].score);
 *   kiln_free(anchors);
 *
 * Coordinates are normalized to [0, 1] of the model input (not clipped):
 * anchors are (ycenter, xcenter, h, w), boxes (ymin, xmin, ymax, xmax).
 * Class ids are column indices of the model's class tensor, so with a
 * background column 0 the first real class is 1 (the line number in a
 * label file whose line 0 is the background).
 *
 * Decoding and NMS use TFLite_Detection_PostProcess's arithmetic and
 * ordering, so kiln_detect_decode on raw outputs and the post-processed
 * model from kiln_detect_add_postprocess give the same detections when fed
 * the same scores.
 */
#ifndef KILN_DETECT_H
#define KILN_DETECT_H

#include <stdbool.h>
#include <stdint.h>

#include "kiln/base.h"
#include "kiln/model.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KILN_SSD_MAX_LAYERS 8
#define KILN_SSD_MAX_ASPECT_RATIOS 8

/* SSD multiple-grid anchors, as the TF Object Detection API's
 * create_ssd_anchors / MultipleGridAnchorGenerator makes them and with
 * MediaPipe's SsdAnchorsCalculator arithmetic (float, bit for bit). Layer i
 * has feature map ceil(input / strides[i]) (or feature_map_* when nonzero)
 * and scale min + (max - min) * i / (num_layers - 1) ((min + max) / 2 with
 * one layer). Each cell gets one anchor per aspect ratio at the layer's
 * scale, plus (when interpolated_scale_aspect_ratio > 0) one of that aspect
 * ratio at sqrt(scale * next scale) (next scale 1.0 after the last layer).
 * reduce_boxes_in_lowest_layer gives layer 0 three fixed anchors instead:
 * (scale 0.1, aspect 1), (scale, 2), (scale, 0.5). Consecutive layers with
 * the same stride share one grid (their anchors interleave per cell).
 * Anchor h = scale / sqrt(aspect), w = scale * sqrt(aspect); centers
 * ((x + anchor_offset_x) / width, (y + anchor_offset_y) / height); with
 * fixed_anchor_size h = w = 1. */
typedef struct kiln_ssd_anchor_config {
  int32_t num_layers;
  float min_scale, max_scale;
  int32_t input_height, input_width;
  int32_t strides[KILN_SSD_MAX_LAYERS];
  int32_t feature_map_height[KILN_SSD_MAX_LAYERS]; /* 0: from the stride */
  int32_t feature_map_width[KILN_SSD_MAX_LAYERS];
  int32_t n_aspect_ratios;
  float aspect_ratios[KILN_SSD_MAX_ASPECT_RATIOS];
  float interpolated_scale_aspect_ratio; /* 0: no extra anchor */
  float anchor_offset_x, anchor_offset_y;
  bool reduce_boxes_in_lowest_layer;
  bool fixed_anchor_size;
} kiln_ssd_anchor_config;

/* The shared SSD MobileNet V2's anchors (MediaPipe's
 * object_detection_oid_v4 graph): 6 layers, strides 16..512 on a 300x300
 * input (maps 19, 10, 5, 3, 2, 1), scales 0.2..0.95, aspect ratios 1, 2,
 * 0.5, 3, 0.3333, interpolated aspect 1, offsets 0.5, reduced lowest layer:
 * 1917 anchors. */
kiln_ssd_anchor_config kiln_ssd_anchor_config_default300(void);

/* The standard layout (default300's layers and ratios) for an input of
 * input_height x input_width (<= 0: 300x300), provided it yields exactly
 * n_anchors anchors; KILN_ERR_UNSUPPORTED naming both counts otherwise. */
kiln_status kiln_ssd_anchor_config_infer(int32_t n_anchors, int32_t input_height,
                                         int32_t input_width, kiln_ssd_anchor_config *out,
                                         kiln_error *err);

/* Checks cfg and counts its anchors. KILN_ERR_INVALID_ARG for a bad config
 * (layers, strides, sizes, scales or ratios out of range), naming the field. */
kiln_status kiln_ssd_anchor_count(const kiln_ssd_anchor_config *cfg, int32_t *count,
                                  kiln_error *err);

/* Generates the anchors: *out is kiln_malloc'd [*count][4] (ycenter,
 * xcenter, h, w), layer by layer, rows top to bottom, columns left to
 * right, the anchors of one cell consecutive. Caller frees with kiln_free. */
kiln_status kiln_ssd_anchors_generate(const kiln_ssd_anchor_config *cfg, float **out,
                                      int32_t *count, kiln_error *err);

typedef enum kiln_score_fn {
  KILN_SCORE_SIGMOID = 0, /* 1 / (1 + exp(-x)) per class (float) */
  KILN_SCORE_SOFTMAX = 1, /* softmax over all columns of an anchor, background included */
  KILN_SCORE_NONE = 2     /* the class tensor already holds scores */
} kiln_score_fn;

typedef struct kiln_detect_config {
  kiln_ssd_anchor_config anchors;
  /* Faster R-CNN box coder: encodings (ty, tx, th, tw); ycenter = ty /
   * y_scale * anchor h + anchor ycenter, h = exp(th / h_scale) * anchor h. */
  float y_scale, x_scale, h_scale, w_scale;
  kiln_score_fn score_fn;
  bool background_class; /* column 0 is background and never detected */
  float score_threshold; /* keep scores >= this */
  float iou_threshold;   /* suppress a box whose IoU with a kept one is > this; (0, 1] */
  int32_t max_detections;
  /* true: one NMS over all classes, each anchor scored by its best class
   * (TFLite's fast NMS with one class per detection); false: NMS per class,
   * at most detections_per_class each, merged by score (TFLite's regular
   * NMS). */
  bool class_agnostic;
  int32_t detections_per_class;
} kiln_detect_config;

/* default300 anchors, box coder 10/10/5/5, sigmoid, background column,
 * score >= 0.6, IoU 0.4, at most 10 detections, class-agnostic (as
 * MediaPipe runs the shared SSD), detections_per_class 100. */
kiln_detect_config kiln_detect_config_default300(void);

typedef struct kiln_detection {
  int32_t class_id;
  float score;
  float ymin, xmin, ymax, xmax;
} kiln_detection;

/* Decodes n box encodings [n][4] (ty, tx, th, tw) against anchors [n][4]
 * with cfg's scales into boxes [n][4] (ymin, xmin, ymax, xmax), with
 * TFLite_Detection_PostProcess's arithmetic (double intermediates). */
void kiln_detect_decode_boxes(const float *encodings, const float *anchors, int32_t n,
                              const kiln_detect_config *cfg, float *boxes);

/* Converts logits [n][n_classes] to scores [n][n_classes] with fn (float
 * math; sigmoid as MediaPipe computes it). scores may be logits (in place). */
void kiln_detect_scores(const float *logits, int32_t n, int32_t n_classes, kiln_score_fn fn,
                        float *scores);

/* NMS on decoded boxes [n][4] and scores [n][n_classes] (cfg: background
 * column, thresholds, class_agnostic, max_detections, detections_per_class).
 * Writes up to `capacity` detections to out, best score first, ties in
 * TFLite's order; *n_out is the number written. KILN_ERR_INVALID_ARG for a
 * bad config or size, KILN_ERR_NOMEM. */
kiln_status kiln_detect_nms(const float *boxes, const float *scores, int32_t n, int32_t n_classes,
                            const kiln_detect_config *cfg, kiln_detection *out, int32_t capacity,
                            int32_t *n_out, kiln_error *err);

/* The whole pipeline on a raw-output model's buffers: box encodings [n][4],
 * class logits [n][n_classes], anchors [n][4] (kiln_ssd_anchors_generate).
 * decode_boxes + scores + nms. */
kiln_status kiln_detect_decode(const float *box_encodings, const float *class_logits, int32_t n,
                               int32_t n_classes, const float *anchors,
                               const kiln_detect_config *cfg, kiln_detection *out,
                               int32_t capacity, int32_t *n_out, kiln_error *err);

/* Reads a TFLite_Detection_PostProcess model's outputs: boxes [slots][4],
 * classes [slots], scores [slots], count [1]. classes_per_detection is the
 * op's max_classes_per_detection: count boxes each own that many
 * consecutive slots, all read (the model's num_classes must be at least
 * that, as in every TF export; 1 is the usual value). Detections come out
 * in the model's order (best first for one class per detection).
 * class_offset is added to each class (1 for a model whose class tensor
 * had a background column, giving kiln_detect_decode's ids). At most
 * capacity are written; *n_out is the number written. KILN_ERR_FORMAT when
 * count is not a whole number in [0, slots / classes_per_detection] or a
 * class is not a whole number. */
kiln_status kiln_detect_read_postprocessed(const float *boxes, const float *classes,
                                           const float *scores, const float *count, int32_t slots,
                                           int32_t classes_per_detection, int32_t class_offset,
                                           kiln_detection *out, int32_t capacity, int32_t *n_out,
                                           kiln_error *err);

/* Turns a raw-output SSD model (two float outputs, box encodings [1,N,4]
 * and class logits [1,N,C]; N must equal cfg's anchor count) into a
 * post-processed one, as TF's exporter builds them: appends a LOGISTIC (or
 * SOFTMAX) op on the logits ("convert_scores"), a constant anchors tensor
 * ("anchors") and a TFLite_Detection_PostProcess op whose flexbuffer
 * options carry cfg's box coder and NMS settings (use_regular_nms =
 * !class_agnostic, max_classes_per_detection 1). Its four float outputs,
 * named "TFLite_Detection_PostProcess" (boxes [1,M,4]), ":1" (classes
 * [1,M]), ":2" (scores [1,M]) and ":3" (count [1]) with M =
 * max_detections, replace the graph outputs. On failure the model may hold
 * tensors that nothing uses. */
kiln_status kiln_detect_add_postprocess(kiln_model *model, const kiln_detect_config *cfg,
                                        kiln_error *err);

#ifdef __cplusplus
}
#endif
#endif
