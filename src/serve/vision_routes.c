/* The image endpoints on a worker's interpreter: POST /v1/models/{m}:classify
 * and :detect (a JPEG or PNG body, or a multipart `file` part) answering
 * with the JSON of `kiln classify --json` / `kiln detect --json`, and
 * TF-Serving's :predict, {"instances": [{"b64": ...}, ...]} (or AutoML's
 * {"image_bytes": {"b64": ...}, "key": ...}), answering
 * {"predictions": [...]}, one such object per instance. */
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "serve/serve_int.h"

/* Runs the model on one encoded image; the kiln JSON answer or NULL with
 * the response set to the error. */
static json_t *run_image(serve_slot *slot, serve_request *r, const uint8_t *bytes, size_t len,
                         const char *what) {
  serve_model *m = slot->model;
  kiln_error err;
  kiln_image img = {0};
  kiln_image_options iopt = {(uint64_t)m->srv->opt.max_pixels};
  double t0 = serve_now();
  kiln_status s = kiln_image_decode_memory(bytes, len, what, &iopt, &img, &err);
  if (s != KILN_OK) {
    serve_error(&r->resp, s == KILN_ERR_LIMIT ? 413 : s == KILN_ERR_NOMEM ? 503 : 400, "%s", err.msg);
    return NULL;
  }
  double decode_ms = (serve_now() - t0) * 1e3;
  kiln_vision_timing timing;
  json_t *out = NULL;
  if (m->kind == SERVE_DETECTOR) {
    kiln_box boxes[SERVE_MAX_BOXES];
    int32_t n = 0;
    kiln_detector_set_threshold(slot->det, r->has_threshold ? r->threshold : 0.5f);
    s = kiln_detector_run(slot->det, &img, NULL, boxes, r->max_boxes, &n, &timing, &err);
    if (s == KILN_OK) s = kiln_detect_result_json(&img, boxes, n, m->labels, decode_ms, &timing, &out, &err);
  } else {
    kiln_class_score scores[SERVE_MAX_TOP];
    int32_t n = 0;
    s = kiln_classify_run(slot->interp, &img, NULL, r->top, scores, &n, &timing, &err);
    if (s == KILN_OK) s = kiln_classify_result_json(&img, scores, n, m->labels, &timing, &out, &err);
  }
  kiln_image_free(&img);
  if (s != KILN_OK) serve_error(&r->resp, serve_status_for(s), "%s", err.msg);
  return out;
}

/* The image bytes of one :predict instance: {"b64": S} or
 * {"image_bytes": {"b64": S}}. */
static const char *instance_b64(const json_t *inst, size_t *len) {
  const json_t *b64 = json_object_get(inst, "b64");
  if (!b64) b64 = json_object_get(json_object_get(inst, "image_bytes"), "b64");
  *len = json_string_length(b64);
  return json_string_value(b64);
}

uint8_t *serve_predict_image(const json_t *inst, size_t index, size_t *n, serve_response *resp) {
  size_t len;
  const char *b64 = instance_b64(inst, &len);
  if (!json_is_object(inst) || !b64) {
    serve_error(resp, 400, "instances[%zu]: want {\"b64\": BASE64} or {\"image_bytes\": {\"b64\": BASE64}}", index);
    return NULL;
  }
  size_t cap = len / 4 * 3 + 3;
  uint8_t *bytes = kiln_malloc(cap);
  if (!bytes) {
    serve_error(resp, 503, "out of memory");
    return NULL;
  }
  const char *end = NULL;
  int rc = sodium_base642bin(bytes, cap, b64, len, " \t\r\n", n, &end, sodium_base64_VARIANT_ORIGINAL);
  if (rc != 0 || end != b64 + len)
    rc = sodium_base642bin(bytes, cap, b64, len, " \t\r\n", n, &end, sodium_base64_VARIANT_URLSAFE);
  if (rc != 0 || end != b64 + len) {
    serve_error(resp, 400, "instances[%zu]: b64 is not valid base64 (at character %td)", index,
                end ? end - b64 : (ptrdiff_t)0);
    kiln_free(bytes);
    return NULL;
  }
  return bytes;
}

json_t *serve_predict_parse(const uint8_t *body, size_t len, serve_response *resp) {
  json_error_t jerr;
  json_t *root = json_loadb((const char *)body, len, JSON_REJECT_DUPLICATES, &jerr);
  if (!root) {
    serve_error(resp, 400, "invalid JSON: %s (line %d, column %d)", jerr.text, jerr.line, jerr.column);
    return NULL;
  }
  const json_t *instances = json_object_get(root, "instances");
  size_t n = json_array_size(instances);
  if (!json_is_array(instances) || n == 0 || n > SERVE_MAX_INSTANCES) {
    serve_error(resp, 400, "want {\"instances\": [...]} with 1 to %d images", SERVE_MAX_INSTANCES);
    json_decref(root);
    return NULL;
  }
  return root;
}

static json_t *predict_one(serve_slot *slot, serve_request *r, const json_t *inst, size_t index) {
  size_t n = 0;
  uint8_t *bytes = serve_predict_image(inst, index, &n, &r->resp);
  if (!bytes) return NULL;
  char what[48];
  snprintf(what, sizeof what, "instances[%zu]", index);
  json_t *out = run_image(slot, r, bytes, n, what);
  const json_t *key = json_object_get(inst, "key");
  if (out && key) json_object_set(out, "key", (json_t *)key);
  kiln_free(bytes);
  return out;
}

static void predict(serve_slot *slot, serve_request *r) {
  json_t *root = serve_predict_parse(r->body, r->len, &r->resp);
  if (!root) return;
  const json_t *instances = json_object_get(root, "instances");
  size_t n = json_array_size(instances);
  json_t *preds = json_array();
  bool ok = preds != NULL;
  if (!ok) serve_error(&r->resp, 503, "out of memory");
  for (size_t i = 0; ok && i < n; i++) {
    json_t *p = predict_one(slot, r, json_array_get(instances, i), i);
    ok = p != NULL;
    if (ok && json_array_append_new(preds, p) != 0) {
      serve_error(&r->resp, 503, "out of memory");
      ok = false;
    }
  }
  json_decref(root);
  if (ok) serve_json(&r->resp, 200, json_pack("{s:o}", "predictions", preds));
  else json_decref(preds);
}

void serve_run_vision(serve_slot *slot, serve_request *r) {
  if (r->endpoint == SERVE_PREDICT) {
    predict(slot, r);
    return;
  }
  json_t *out = run_image(slot, r, r->body, r->len, "request body");
  if (out) serve_json(&r->resp, 200, out);
}
