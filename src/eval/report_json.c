/*
 * Evaluation reports as JSON (kiln_eval_classification_to_json,
 * kiln_eval_detection_to_json), for `kiln eval --json`, the training report
 * and the studio. Undefined values (-1 in the structs) become null. Every
 * jansson call is checked: the builders below turn any failed allocation
 * into one `ok = false` and the caller returns KILN_ERR_NOMEM.
 */
#include <jansson.h>

#include "kiln/eval.h"

/* A number, or null for the -1 that marks an undefined metric. */
static json_t *metric(double v) { return v == -1 ? json_null() : json_real(v); }

static void set(json_t *obj, const char *key, json_t *value, bool *ok) {
  if (json_object_set_new(obj, key, value) != 0) *ok = false;
}

static void append(json_t *arr, json_t *value, bool *ok) {
  if (json_array_append_new(arr, value) != 0) *ok = false;
}

static json_t *real_array(const double *v, int64_t n, int64_t stride, bool *ok) {
  json_t *arr = json_array();
  if (!arr) *ok = false;
  for (int64_t i = 0; arr && i < n; i++) append(arr, json_real(v[i * stride]), ok);
  return arr;
}

static void set_name(json_t *obj, const char *const *class_names, int32_t k, bool *ok) {
  if (class_names && class_names[k]) set(obj, "name", json_string(class_names[k]), ok);
}

static kiln_status finish(json_t *root, bool ok, const char *what, struct json_t **out,
                          kiln_error *err) {
  if (!ok || !root) {
    json_decref(root);
    return kiln_fail(err, KILN_ERR_NOMEM, "%s report: out of memory building JSON", what);
  }
  *out = root;
  return KILN_OK;
}

/* ---- Classification ---- */

static json_t *averages(double p, double r, double f1, bool *ok) {
  json_t *o = json_object();
  if (!o) *ok = false;
  if (o) {
    set(o, "precision", json_real(p), ok);
    set(o, "recall", json_real(r), ok);
    set(o, "f1", json_real(f1), ok);
  }
  return o;
}

static json_t *class_metrics(const kiln_eval_classification *c, const char *const *class_names,
                             bool *ok) {
  json_t *arr = json_array();
  if (!arr) *ok = false;
  for (int32_t k = 0; arr && k < c->n_classes; k++) {
    const kiln_eval_class_metrics *m = &c->classes[k];
    json_t *o = json_object();
    if (o) {
      set(o, "id", json_integer(k), ok);
      set_name(o, class_names, k, ok);
      set(o, "support", json_integer(m->support), ok);
      set(o, "predicted", json_integer(m->predicted), ok);
      set(o, "correct", json_integer(m->correct), ok);
      set(o, "precision", json_real(m->precision), ok);
      set(o, "recall", json_real(m->recall), ok);
      set(o, "f1", json_real(m->f1), ok);
    }
    append(arr, o, ok);
  }
  return arr;
}

static json_t *confusion_matrix(const kiln_eval_classification *c, bool *ok) {
  json_t *rows = json_array();
  if (!rows) *ok = false;
  for (int32_t i = 0; rows && i < c->n_classes; i++) {
    json_t *row = json_array();
    for (int32_t j = 0; row && j < c->n_classes; j++)
      append(row, json_integer(c->confusion[(int64_t)i * c->n_classes + j]), ok);
    append(rows, row, ok);
  }
  return rows;
}

kiln_status kiln_eval_classification_to_json(const kiln_eval_classification *c,
                                             const char *const *class_names,
                                             struct json_t **out, kiln_error *err) {
  *out = NULL;
  bool ok = true;
  json_t *root = json_object();
  if (root) {
    set(root, "task", json_string("classification"), &ok);
    set(root, "samples", json_integer(c->n_samples), &ok);
    set(root, "accuracy", json_real(c->accuracy), &ok);
    set(root, "top_k", c->top_k > 0 ? json_integer(c->top_k) : json_null(), &ok);
    set(root, "top_k_accuracy", metric(c->top_k_accuracy), &ok);
    set(root, "macro", averages(c->macro_precision, c->macro_recall, c->macro_f1, &ok), &ok);
    set(root, "weighted",
        averages(c->weighted_precision, c->weighted_recall, c->weighted_f1, &ok), &ok);
    set(root, "classes", class_metrics(c, class_names, &ok), &ok);
    set(root, "confusion_matrix", confusion_matrix(c, &ok), &ok);
  }
  return finish(root, ok, "classification", out, err);
}

/* ---- Detection ---- */

static const char *const k_stat_names[KILN_EVAL_N_STATS] = {
    "AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"};

static json_t *pr_curve(const kiln_eval_detection *d, int32_t k, bool *ok) {
  if (d->class_ap50[k] == -1) return json_null();
  json_t *o = json_object();
  if (!o) {
    *ok = false;
    return NULL;
  }
  const int m100 = KILN_EVAL_N_MAXDET - 1;
  const int64_t first = kiln_eval_precision_index(d, 0, 0, k, KILN_EVAL_AREA_ALL, m100);
  const int64_t stride = kiln_eval_precision_index(d, 0, 1, k, KILN_EVAL_AREA_ALL, m100) - first;
  const double *scores = d->pr_scores + (int64_t)k * KILN_EVAL_N_RECALL;
  set(o, "iou", json_real(d->iou_thresholds[0]), ok);
  set(o, "precision", real_array(d->precision + first, KILN_EVAL_N_RECALL, stride, ok), ok);
  set(o, "score", real_array(scores, KILN_EVAL_N_RECALL, 1, ok), ok);
  return o;
}

static json_t *per_class(const kiln_eval_detection *d, const char *const *class_names, bool *ok) {
  json_t *arr = json_array();
  if (!arr) *ok = false;
  for (int32_t k = 0; arr && k < d->n_classes; k++) {
    json_t *o = json_object();
    if (o) {
      set(o, "id", json_integer(k), ok);
      set_name(o, class_names, k, ok);
      set(o, "ground_truth", json_integer(d->class_gt[k]), ok);
      set(o, "detections", json_integer(d->class_dets[k]), ok);
      set(o, "ap", metric(d->class_ap[k]), ok);
      set(o, "ap50", metric(d->class_ap50[k]), ok);
      set(o, "ap75", metric(d->class_ap75[k]), ok);
      set(o, "ar100", metric(d->class_ar100[k]), ok);
      set(o, "pr_curve", pr_curve(d, k, ok), ok);
    }
    append(arr, o, ok);
  }
  return arr;
}

kiln_status kiln_eval_detection_to_json(const kiln_eval_detection *d,
                                        const char *const *class_names, struct json_t **out,
                                        kiln_error *err) {
  *out = NULL;
  bool ok = true;
  json_t *root = json_object(), *summary = json_object();
  if (!root || !summary) ok = false;
  if (ok) {
    set(root, "task", json_string("detection"), &ok);
    set(root, "images", json_integer(d->n_images), &ok);
    set(root, "classes", json_integer(d->n_classes), &ok);
    for (int i = 0; i < KILN_EVAL_N_STATS; i++) set(summary, k_stat_names[i], metric(d->stats[i]), &ok);
    set(root, "summary", summary, &ok);
    summary = NULL;
    set(root, "iou_thresholds", real_array(d->iou_thresholds, KILN_EVAL_N_IOU, 1, &ok), &ok);
    set(root, "recall_thresholds", real_array(d->recall_thresholds, KILN_EVAL_N_RECALL, 1, &ok), &ok);
    set(root, "per_class", per_class(d, class_names, &ok), &ok);
  }
  json_decref(summary);
  return finish(root, ok, "detection", out, err);
}
