/*
 * eval_coco: runs kiln's COCO box evaluation (kiln_eval_detect) on a JSON
 * file and prints the report (kiln_eval_detection_to_json) with the full
 * precision and recall arrays added, for tests/conformance/test_eval_coco.py
 * to compare with pycocotools. A test tool, not part of the product.
 *
 * usage: eval_coco INPUT.json
 * input: {"categories": [id, ...],
 *         "annotations": [{"image_id", "category_id", "bbox": [x, y, w, h],
 *                          "area" (optional: w * h), "iscrowd" (optional)}],
 *         "detections": [{"image_id", "category_id", "bbox", "score"}]}
 * Category ids map to class indices in ascending order, as COCOeval orders
 * them; "category_ids" in the output lists them by class index.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiln/eval.h"

static int cmp_i64(const void *pa, const void *pb) {
  const int64_t a = *(const int64_t *)pa, b = *(const int64_t *)pb;
  return a < b ? -1 : (a > b);
}

static int fail(const char *msg, size_t index) {
  fprintf(stderr, "eval_coco: %s (item %zu)\n", msg, index);
  return 0;
}

/* Class index of a category id, or -1. */
static int32_t class_of(const int64_t *ids, int32_t n, json_t *id) {
  if (!json_is_integer(id)) return -1;
  const int64_t v = json_integer_value(id);
  const int64_t *p = bsearch(&v, ids, (size_t)n, sizeof *ids, cmp_i64);
  return p ? (int32_t)(p - ids) : -1;
}

static int read_box(json_t *item, double v[4]) {
  json_t *bbox = json_object_get(item, "bbox");
  if (!json_is_array(bbox) || json_array_size(bbox) != 4) return 0;
  for (size_t j = 0; j < 4; j++) {
    json_t *x = json_array_get(bbox, j);
    if (!json_is_number(x)) return 0;
    v[j] = json_number_value(x);
  }
  return 1;
}

static int read_gts(json_t *arr, const int64_t *ids, int32_t n_classes, kiln_eval_gt *out) {
  size_t i;
  json_t *a;
  json_array_foreach(arr, i, a) {
    double v[4];
    json_t *image = json_object_get(a, "image_id"), *area = json_object_get(a, "area");
    out[i].category = class_of(ids, n_classes, json_object_get(a, "category_id"));
    if (!json_is_integer(image) || out[i].category < 0 || !read_box(a, v))
      return fail("bad annotation", i);
    out[i].image = json_integer_value(image);
    out[i].x = v[0];
    out[i].y = v[1];
    out[i].w = v[2];
    out[i].h = v[3];
    out[i].area = json_is_number(area) ? json_number_value(area) : -1;
    out[i].iscrowd = json_is_true(json_object_get(a, "iscrowd")) ||
                     json_integer_value(json_object_get(a, "iscrowd")) != 0;
  }
  return 1;
}

static int read_dets(json_t *arr, const int64_t *ids, int32_t n_classes, kiln_eval_det *out) {
  size_t i;
  json_t *d;
  json_array_foreach(arr, i, d) {
    double v[4];
    json_t *image = json_object_get(d, "image_id"), *score = json_object_get(d, "score");
    out[i].category = class_of(ids, n_classes, json_object_get(d, "category_id"));
    if (!json_is_integer(image) || out[i].category < 0 || !json_is_number(score) || !read_box(d, v))
      return fail("bad detection", i);
    out[i].image = json_integer_value(image);
    out[i].score = json_number_value(score);
    out[i].x = v[0];
    out[i].y = v[1];
    out[i].w = v[2];
    out[i].h = v[3];
  }
  return 1;
}

static json_t *array_of(const double *v, int64_t n) {
  json_t *arr = json_array();
  for (int64_t i = 0; arr && i < n; i++)
    if (json_array_append_new(arr, json_real(v[i])) != 0) {
      json_decref(arr);
      return NULL;
    }
  return arr;
}

/* Adds the raw arrays and the id mapping to kiln's report and prints it. */
static int print_report(const kiln_eval_detection *d, const int64_t *ids) {
  json_t *report = NULL;
  kiln_error err = {0};
  if (kiln_eval_detection_to_json(d, NULL, &report, &err) != KILN_OK) return fail(err.msg, 0);
  const int64_t k = d->n_classes;
  json_t *cat_ids = json_array();
  for (int64_t i = 0; cat_ids && i < k; i++) json_array_append_new(cat_ids, json_integer(ids[i]));
  int ok = json_object_set_new(report, "category_ids", cat_ids) == 0 &&
           json_object_set_new(report, "precision",
                               array_of(d->precision, KILN_EVAL_N_IOU * KILN_EVAL_N_RECALL * k *
                                                          KILN_EVAL_N_AREA * KILN_EVAL_N_MAXDET)) == 0 &&
           json_object_set_new(report, "recall",
                               array_of(d->recall, KILN_EVAL_N_IOU * k * KILN_EVAL_N_AREA *
                                                       KILN_EVAL_N_MAXDET)) == 0 &&
           json_dumpf(report, stdout, JSON_COMPACT | JSON_REAL_PRECISION(17)) == 0;
  json_decref(report);
  return ok ? 1 : fail("cannot write the report", 0);
}

static int run(json_t *root) {
  json_t *cats = json_object_get(root, "categories"), *anns = json_object_get(root, "annotations");
  json_t *dets_json = json_object_get(root, "detections");
  if (!json_is_array(cats) || json_array_size(cats) == 0 || !json_is_array(anns) ||
      !json_is_array(dets_json))
    return fail("needs categories, annotations and detections arrays", 0);
  const int32_t n_classes = (int32_t)json_array_size(cats);
  const size_t n_gt = json_array_size(anns), n_det = json_array_size(dets_json);
  int64_t *ids = calloc((size_t)n_classes, sizeof *ids);
  kiln_eval_gt *gts = calloc(n_gt + 1, sizeof *gts);
  kiln_eval_det *dets = calloc(n_det + 1, sizeof *dets);
  int ok = ids && gts && dets;
  for (int32_t i = 0; ok && i < n_classes; i++) {
    json_t *id = json_array_get(cats, (size_t)i);
    ok = json_is_integer(id) || fail("category ids must be integers", (size_t)i);
    ids[i] = json_integer_value(id);
  }
  if (ok) qsort(ids, (size_t)n_classes, sizeof *ids, cmp_i64);
  ok = ok && read_gts(anns, ids, n_classes, gts) && read_dets(dets_json, ids, n_classes, dets);
  kiln_eval_detection d;
  kiln_error err = {0};
  if (ok && kiln_eval_detect(gts, (int64_t)n_gt, dets, (int64_t)n_det, n_classes, &d, &err) != KILN_OK)
    ok = fail(err.msg, 0);
  else if (ok) {
    ok = print_report(&d, ids);
    kiln_eval_detection_free(&d);
  }
  free(ids);
  free(gts);
  free(dets);
  return ok;
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: eval_coco INPUT.json\n");
    return 2;
  }
  json_error_t jerr;
  json_t *root = json_load_file(argv[1], 0, &jerr);
  if (!root) {
    fprintf(stderr, "eval_coco: %s:%d: %s\n", argv[1], jerr.line, jerr.text);
    return 1;
  }
  const int ok = run(root);
  json_decref(root);
  return ok ? 0 : 1;
}
