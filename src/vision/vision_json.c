/* The JSON answers of classification and detection, shared by
 * `kiln classify --json`, `kiln detect --json` and the model server so
 * that all three print the same shape. */
#include <jansson.h>

#include "kiln/video.h"
#include "kiln/vision.h"

static kiln_status nomem(kiln_error *err, json_t *partial, json_t **out) {
  json_decref(partial);
  *out = NULL;
  return kiln_fail(err, KILN_ERR_NOMEM, "out of memory building JSON");
}

kiln_status kiln_detections_json(const kiln_box *boxes, int32_t n, const kiln_labels *labels,
                                 json_t **out, kiln_error *err) {
  json_t *dets = json_array();
  if (!dets) return nomem(err, NULL, out);
  for (int32_t i = 0; i < n; i++) {
    char name[64];
    const kiln_box *b = &boxes[i];
    json_t *d = json_pack("{s:s, s:i, s:f, s:{s:f, s:f, s:f, s:f}}", "label",
                          kiln_video_box_label(labels, b->class_id, name, sizeof name),
                          "class_id", (int)b->class_id, "score", (double)b->score, "box",
                          "xmin", (double)b->xmin, "ymin", (double)b->ymin, "xmax",
                          (double)b->xmax, "ymax", (double)b->ymax);
    if (!d || json_array_append_new(dets, d) != 0) return nomem(err, dets, out);
  }
  *out = dets;
  return KILN_OK;
}

kiln_status kiln_detect_result_json(const kiln_image *img, const kiln_box *boxes, int32_t n,
                                    const kiln_labels *labels, double decode_ms,
                                    const kiln_vision_timing *timing, json_t **out,
                                    kiln_error *err) {
  json_t *dets;
  if (kiln_detections_json(boxes, n, labels, &dets, err) != KILN_OK) return nomem(err, NULL, out);
  json_t *root = json_pack("{s:{s:i, s:i}, s:o, s:{s:f, s:f, s:f, s:f}}", "image", "width",
                           (int)img->width, "height", (int)img->height, "detections", dets,
                           "timing_ms", "decode", decode_ms, "preprocess", timing->preprocess_ms,
                           "invoke", timing->invoke_ms, "postprocess", timing->postprocess_ms);
  if (!root) return nomem(err, NULL, out); /* "o" steals dets even on failure */
  *out = root;
  return KILN_OK;
}

kiln_status kiln_classify_result_json(const kiln_image *img, const kiln_class_score *scores,
                                      int32_t n, const kiln_labels *labels,
                                      const kiln_vision_timing *timing, json_t **out,
                                      kiln_error *err) {
  json_t *classes = json_array();
  if (!classes) return nomem(err, NULL, out);
  for (int32_t i = 0; i < n; i++) {
    json_t *c = json_pack("{s:i, s:f}", "class_id", (int)scores[i].class_id, "score",
                          (double)scores[i].score);
    if (!c) return nomem(err, classes, out);
    const char *l = kiln_labels_get(labels, scores[i].class_id);
    if (l && json_object_set_new(c, "label", json_string(l)) != 0) {
      json_decref(c);
      return nomem(err, classes, out);
    }
    if (json_array_append_new(classes, c) != 0) return nomem(err, classes, out);
  }
  json_t *root = json_pack("{s:{s:i, s:i}, s:o, s:{s:f, s:f, s:f}}", "image", "width",
                           (int)img->width, "height", (int)img->height, "classes", classes,
                           "timing_ms", "preprocess", timing->preprocess_ms, "invoke",
                           timing->invoke_ms, "postprocess", timing->postprocess_ms);
  if (!root) return nomem(err, NULL, out);
  *out = root;
  return KILN_OK;
}
