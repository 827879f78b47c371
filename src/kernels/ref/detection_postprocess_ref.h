/*
 * kernels/ref/detection_postprocess_ref.h: the TFLite_Detection_PostProcess
 * custom op (SSD box decoding + non-maximum suppression), reproducing
 * tflite/kernels/detection_postprocess.cc as LiteRT 2.x runs it with one
 * thread: same float/double arithmetic, same candidate order (stable sort by
 * score, ties by anchor index), same libstdc++ partial_sort tie order for the
 * classes of one anchor, same stable merge across classes.
 *
 * Shapes (N anchors, Cb = score columns per anchor, C = num_classes, Cb - C
 * is the label offset: 1 when column 0 is background, else 0):
 *   encodings [N][enc_stride]   (ty, tx, th, tw, ...) float
 *   anchors   [N][4]            (ycenter, xcenter, h, w) float
 *   boxes     [N][4]            decoded (ymin, xmin, ymax, xmax)
 *   scores    [N][Cb]           float scores (already through sigmoid etc.)
 *   outputs: out_boxes [S][4], out_classes [S], out_scores [S] with
 *   S = max_detections * max_classes_per_detection; the return value is
 *   num_detections.
 */
#ifndef KILN_KERNELS_REF_DETECTION_POSTPROCESS_REF_H
#define KILN_KERNELS_REF_DETECTION_POSTPROCESS_REF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct kiln_detpp_params {
  int32_t num_boxes;                 /* N >= 1 */
  int32_t num_classes;               /* C >= 1, classes scored */
  int32_t num_classes_with_bg;       /* Cb, C or C + 1 */
  int32_t max_detections;            /* >= 1 */
  int32_t max_classes_per_detection; /* >= 1, fast NMS only */
  int32_t detections_per_class;      /* >= 1, regular NMS only */
  bool use_regular_nms;
  float score_threshold; /* candidates have score >= this */
  float iou_threshold;   /* in (0, 1]; suppress when IoU > this */
} kiln_detpp_params;

/* Decodes n boxes (faster R-CNN box coder; scales y, x, h, w). */
void kiln_f32_detection_decode_ref(const float *encodings, int32_t enc_stride,
                                   const float *anchors, int32_t n, float y_scale, float x_scale,
                                   float h_scale, float w_scale, float *boxes);

/* Scratch bytes kiln_f32_detection_nms_ref needs for p. */
size_t kiln_detection_nms_scratch_bytes(const kiln_detpp_params *p);

/* Multi-class NMS on decoded boxes, TFLite's fast variant (each anchor
 * scored by its best class; up to max_classes_per_detection classes per
 * kept box) or regular variant (per-class NMS, merged by score). Fills all
 * S output slots (unused ones with zeros) and returns the detection count
 * (boxes kept: each owns max_classes_per_detection slots in the fast
 * variant, one slot in the regular one). scratch: at least
 * kiln_detection_nms_scratch_bytes(p) bytes, 16-byte aligned. */
int32_t kiln_f32_detection_nms_ref(const kiln_detpp_params *p, const float *boxes,
                                   const float *scores, void *scratch, float *out_boxes,
                                   float *out_classes, float *out_scores);

/* Dequantizes n uint8/int8 values as TFLite's detection_postprocess does:
 * ((float)q - zero_point) * scale, in float. */
void kiln_u8_detection_dequantize_ref(const uint8_t *q, size_t n, int32_t zero_point, float scale,
                                      float *out);
void kiln_s8_detection_dequantize_ref(const int8_t *q, size_t n, int32_t zero_point, float scale,
                                      float *out);

#endif
