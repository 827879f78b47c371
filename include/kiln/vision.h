/*
 * kiln/vision.h: image in, answers out. Wraps an interpreter with the steps
 * every application repeats: fill the input from a decoded image, invoke,
 * read the outputs as classes or boxes in the original image's pixels.
 * `kiln classify`, `kiln detect` and the model server use these.
 *
 *   kiln_detector *det;
 *   kiln_detector_create(interp, model, NULL, &det, &err);  // raw SSD or post-processed
 *   kiln_box dets[20]; int32_t n;
 *   kiln_detector_run(det, &image, NULL, dets, 20, &n, &timing, &err);
 *   kiln_detector_free(det);
 */
#ifndef KILN_VISION_H
#define KILN_VISION_H

#include <stdbool.h>
#include <stdint.h>

#include "kiln/base.h"
#include "kiln/detect.h"
#include "kiln/image.h"
#include "kiln/interp.h"
#include "kiln/model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The normalization that matches a model input by default: float inputs
 * get x/127.5 - 1 ([-1, 1]); uint8/int8 inputs get the pixels themselves
 * (uint8 q = x, int8 q = x - 128), the convention of quantized image models,
 * whose quantization parameters already encode their normalization. */
kiln_image_norm kiln_image_norm_for_input(const kiln_tensor_view *input);

/* The "kiln_input_norm" metadata kiln writes into the models it trains
 * ({"mean": [m0, m1, m2], "std": [s0, s1, s2]}); false when absent or invalid. */
bool kiln_model_input_norm(const kiln_model *model, kiln_image_norm *norm);

/* Fills an interpreter input from an image (stretched to the input size),
 * with norm, or kiln_image_norm_for_input when norm is NULL. */
kiln_status kiln_vision_set_input(kiln_interp *interp, int32_t input, const kiln_image *img,
                                  const kiln_image_norm *norm, kiln_error *err);

/* Copies an output of any float or quantized dtype to floats (dequantized
 * with its per-tensor scale and zero point). n must equal its elements. */
kiln_status kiln_vision_output_float(kiln_interp *interp, int32_t output, float *dst, int64_t n,
                                     kiln_error *err);

typedef struct kiln_vision_timing {
  double preprocess_ms; /* resize + normalize into the input tensor */
  double invoke_ms;
  double postprocess_ms;
} kiln_vision_timing;

/* ---- Labels ---- */

typedef struct kiln_labels kiln_labels;

/* Reads a label file: one label per line (line i is class i), or lines of
 * "ID LABEL" / "ID: LABEL" (Coral style). Blank lines count as classes in
 * the first form. */
kiln_status kiln_labels_load(const char *path, kiln_labels **out, kiln_error *err);
/* The same from bytes in memory; name prefixes error messages. */
kiln_status kiln_labels_parse(const void *bytes, size_t size, const char *name, kiln_labels **out,
                              kiln_error *err);
/* The labels kiln embeds in the models it writes (metadata "kiln_labels",
 * labels.txt's bytes); *out stays NULL when the model has none. */
kiln_status kiln_labels_from_model(const kiln_model *model, kiln_labels **out, kiln_error *err);
/* The label of class_id, or NULL when the file has none for it. */
const char *kiln_labels_get(const kiln_labels *labels, int32_t class_id);
/* True when line/class 0 names a background class ("???", "background"). */
bool kiln_labels_has_background(const kiln_labels *labels);
void kiln_labels_free(kiln_labels *labels);

/* ---- Classification ---- */

typedef struct kiln_class_score {
  int32_t class_id;
  float score;
} kiln_class_score;

/* Runs a classifier (one output of [1, C] or [C] scores) on img and returns
 * the top_k classes, best first. Quantized outputs are dequantized; float
 * outputs that are not already probabilities (any value outside [0, 1])
 * get a softmax. */
kiln_status kiln_classify_run(kiln_interp *interp, const kiln_image *img,
                              const kiln_image_norm *norm, int32_t top_k, kiln_class_score *out,
                              int32_t *n_out, kiln_vision_timing *timing, kiln_error *err);

/* ---- Detection ---- */

/* A detection in pixels of the original image (clipped to it). */
typedef struct kiln_box {
  /* Column of the model's class tensor, background column 0 included: 1 is
   * the first real class, for raw and post-processed models alike (a label
   * file whose line 0 is "???"/"background" is indexed by it directly; one
   * without a background line by class_id - 1). */
  int32_t class_id;
  float score;
  float xmin, ymin, xmax, ymax;
} kiln_box;

typedef struct kiln_detector kiln_detector;

/* Prepares detection for a model run by interp (model is the same graph).
 * Recognises two layouts: raw SSD outputs (two float or quantized outputs,
 * box encodings [1,N,4] and class logits [1,N,C], decoded with cfg's
 * anchors when they number N, else the standard SSD layout inferred from N
 * and the input size) and a model ending in TFLite_Detection_PostProcess
 * (its four outputs). cfg NULL means kiln_detect_config_default300
 * (thresholds, NMS, box coder). */
kiln_status kiln_detector_create(kiln_interp *interp, const kiln_model *model,
                                 const kiln_detect_config *cfg, kiln_detector **out,
                                 kiln_error *err);
/* True when the model already ends in TFLite_Detection_PostProcess. */
bool kiln_detector_is_postprocessed(const kiln_detector *det);
/* Changes the score threshold (both layouts; for post-processed models
 * detections below it are dropped after the op). */
void kiln_detector_set_threshold(kiln_detector *det, float score_threshold);
/* Runs detection on img; writes up to capacity boxes, best first. */
kiln_status kiln_detector_run(kiln_detector *det, const kiln_image *img,
                              const kiln_image_norm *norm, kiln_box *out, int32_t capacity,
                              int32_t *n_out, kiln_vision_timing *timing, kiln_error *err);
void kiln_detector_free(kiln_detector *det);

/* ---- JSON ----
 * The answers as `kiln classify --json` and `kiln detect --json` print them
 * and the model server returns them (jansson objects: link jansson and
 * include <jansson.h> to use them). Labels may be NULL. All return
 * KILN_ERR_NOMEM when jansson cannot allocate; *out is then NULL. */
struct json_t;

/* [{"label", "class_id", "score", "box": {"xmin", "ymin", "xmax", "ymax"}}, ...]:
 * label from labels by kiln_video_box_label's rule, else "class N". */
kiln_status kiln_detections_json(const kiln_box *boxes, int32_t n, const kiln_labels *labels,
                                 struct json_t **out, kiln_error *err);
/* {"image": {"width", "height"}, "detections": [...], "timing_ms": {"decode",
 * "preprocess", "invoke", "postprocess"}}; decode_ms is the image decoding. */
kiln_status kiln_detect_result_json(const kiln_image *img, const kiln_box *boxes, int32_t n,
                                    const kiln_labels *labels, double decode_ms,
                                    const kiln_vision_timing *timing, struct json_t **out,
                                    kiln_error *err);
/* {"image": {"width", "height"}, "classes": [{"class_id", "score", "label"}, ...],
 * "timing_ms": {"preprocess", "invoke", "postprocess"}}; "label" only for
 * classes the label file names (kiln_labels_get(labels, class_id)). */
kiln_status kiln_classify_result_json(const kiln_image *img, const kiln_class_score *scores,
                                      int32_t n, const kiln_labels *labels,
                                      const kiln_vision_timing *timing, struct json_t **out,
                                      kiln_error *err);

#ifdef __cplusplus
}
#endif
#endif
