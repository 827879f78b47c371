/*
 * studio/api_try.c: "Try it": POST /api/models/{id}/try runs a model version
 * of the project on one picture sent as the raw body (JPEG or PNG, at most
 * the 1 MiB of a JSON body) and answers with what `kiln detect --json` or
 * `kiln classify --json` print for it. ?model=int8 (default) or float. The
 * picture is not stored.
 */
#include <stdio.h>
#include <string.h>

#include "kiln/vision.h"
#include "studio/http_int.h"

#define TRY_MAX_BOXES 50
#define TRY_TOP_K 5

/* The blob of one of the model's artifacts; false when it has none. */
static bool artifact_path(studio_req *r, const char *name, char *path, size_t n) {
  sqlite3_stmt *q;
  bool found = false;
  if (sqlite3_prepare_v2(r->db, "SELECT blob_hash FROM model_artifacts WHERE model_id = ? AND name = ?", -1, &q,
                         NULL) != SQLITE_OK)
    return false;
  sqlite3_bind_int64(q, 1, r->ids[0]);
  sqlite3_bind_text(q, 2, name, -1, SQLITE_STATIC);
  if (sqlite3_step(q) == SQLITE_ROW) {
    studio_blob_path(r->st->data_dir, studio_col_text(q, 0), path, n);
    found = true;
  }
  sqlite3_finalize(q);
  return found;
}

static bool project_detects(studio_req *r) {
  sqlite3_stmt *q;
  bool detect = false;
  if (sqlite3_prepare_v2(r->db, "SELECT task FROM projects WHERE id = ?", -1, &q, NULL) != SQLITE_OK) return false;
  sqlite3_bind_int64(q, 1, r->project);
  if (sqlite3_step(q) == SQLITE_ROW) detect = strcmp(studio_col_text(q, 0), "detect") == 0;
  sqlite3_finalize(q);
  return detect;
}

enum MHD_Result api_model_try(studio_req *r) {
  const char *which = studio_query(r, "model");
  if (!which) which = "int8";
  if (strcmp(which, "int8") != 0 && strcmp(which, "float") != 0)
    return studio_reply_error(r, 400, "model: '%s' is neither int8 nor float", which);
  if (!r->body_len) return studio_reply_error(r, 400, "body: send a JPEG or PNG picture");
  char model_path[STUDIO_PATH_MAX], labels_path[STUDIO_PATH_MAX], artifact[32];
  snprintf(artifact, sizeof artifact, "model_%s.tflite", which);
  if (!artifact_path(r, artifact, model_path, sizeof model_path))
    return studio_reply_error(r, 404, "model %lld has no artifact '%s'", (long long)r->ids[0], artifact);
  bool has_labels = artifact_path(r, "labels.txt", labels_path, sizeof labels_path);
  bool detect = project_detects(r);

  kiln_error err;
  kiln_image img = {0};
  if (kiln_image_decode_memory(r->body, r->body_len, "picture", NULL, &img, &err) != KILN_OK)
    return studio_reply_error(r, 400, "%s", err.msg);
  kiln_labels *labels = NULL;
  kiln_model *m = NULL;
  kiln_interp *it = NULL;
  kiln_detector *det = NULL;
  json_t *out = NULL;
  kiln_vision_timing timing = {0};
  kiln_interp_options opt = {.n_threads = 1};
  if ((has_labels && kiln_labels_load(labels_path, &labels, &err) != KILN_OK) ||
      kiln_model_load(model_path, &m, &err) != KILN_OK || kiln_interp_create(m, &opt, &it, &err) != KILN_OK)
    goto fail;
  if (detect) {
    kiln_detect_config cfg = kiln_detect_config_default300();
    cfg.score_threshold = 0.5f;
    cfg.iou_threshold = 0.4f;
    cfg.max_detections = TRY_MAX_BOXES;
    kiln_box boxes[TRY_MAX_BOXES];
    int32_t n = 0;
    if (kiln_detector_create(it, m, &cfg, &det, &err) != KILN_OK ||
        kiln_detector_run(det, &img, NULL, boxes, TRY_MAX_BOXES, &n, &timing, &err) != KILN_OK ||
        kiln_detect_result_json(&img, boxes, n, labels, 0.0, &timing, &out, &err) != KILN_OK)
      goto fail;
  } else {
    kiln_class_score scores[TRY_TOP_K];
    int32_t n = 0;
    if (kiln_classify_run(it, &img, NULL, TRY_TOP_K, scores, &n, &timing, &err) != KILN_OK ||
        kiln_classify_result_json(&img, scores, n, labels, &timing, &out, &err) != KILN_OK)
      goto fail;
  }
  kiln_detector_free(det);
  kiln_interp_free(it);
  kiln_model_free(m);
  kiln_labels_free(labels);
  kiln_image_free(&img);
  json_object_set_new(out, "model", json_string(which));
  return studio_reply_json(r, 200, out);
fail:
  kiln_detector_free(det);
  kiln_interp_free(it);
  kiln_model_free(m);
  kiln_labels_free(labels);
  kiln_image_free(&img);
  return studio_reply_fail(r, &err);
}
