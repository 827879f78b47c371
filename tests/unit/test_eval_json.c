/*
 * JSON reports of evaluations (kiln_eval_classification_to_json,
 * kiln_eval_detection_to_json): the documented keys and values, null for
 * undefined metrics, optional class names, a dump/load round trip, and
 * every jansson allocation failing in turn (KILN_ERR_NOMEM, nothing
 * leaked under the sanitizer build).
 */
#include <jansson.h>
#include <math.h>
#include <string.h>

#include "kiln/eval.h"
#include "testutil.h"

static double num(json_t *obj, const char *key) { return json_number_value(json_object_get(obj, key)); }

static void classification(kiln_eval_classification *c) {
  const int32_t labels[5] = {0, 0, 1, 2, 2};
  const int32_t preds[5] = {0, 1, 1, 2, 0};
  kiln_error err = {0};
  if (kiln_eval_classify(labels, preds, NULL, 5, 3, 0, c, &err) != KILN_OK)
    fprintf(stderr, "%s\n", err.msg);
}

static void test_classification_json(void) {
  kiln_eval_classification c;
  classification(&c);
  const char *names[3] = {"cat", NULL, "dog"};
  json_t *j = NULL;
  REQUIRE(kiln_eval_classification_to_json(&c, names, &j, NULL) == KILN_OK);
  CHECK(strcmp(json_string_value(json_object_get(j, "task")), "classification") == 0);
  CHECK(json_integer_value(json_object_get(j, "samples")) == 5);
  CHECK(fabs(num(j, "accuracy") - 0.6) < 1e-15);
  CHECK(json_is_null(json_object_get(j, "top_k")) && json_is_null(json_object_get(j, "top_k_accuracy")));
  CHECK(fabs(num(json_object_get(j, "macro"), "recall") - c.macro_recall) < 1e-15);
  CHECK(fabs(num(json_object_get(j, "weighted"), "f1") - c.weighted_f1) < 1e-15);
  json_t *classes = json_object_get(j, "classes");
  REQUIRE(json_array_size(classes) == 3);
  json_t *c0 = json_array_get(classes, 0), *c1 = json_array_get(classes, 1);
  CHECK(strcmp(json_string_value(json_object_get(c0, "name")), "cat") == 0);
  CHECK(json_object_get(c1, "name") == NULL && json_integer_value(json_object_get(c1, "id")) == 1);
  CHECK(json_integer_value(json_object_get(c0, "support")) == 2 &&
        json_integer_value(json_object_get(c0, "predicted")) == 2 &&
        json_integer_value(json_object_get(c0, "correct")) == 1);
  CHECK(fabs(num(c1, "precision") - 0.5) < 1e-15 && fabs(num(c1, "recall") - 1.0) < 1e-15);
  json_t *cm = json_object_get(j, "confusion_matrix");
  REQUIRE(json_array_size(cm) == 3);
  CHECK(json_integer_value(json_array_get(json_array_get(cm, 2), 0)) == 1);
  CHECK(json_integer_value(json_array_get(json_array_get(cm, 2), 2)) == 1);
  CHECK(json_integer_value(json_array_get(json_array_get(cm, 0), 2)) == 0);
  json_decref(j);
  kiln_eval_classification_free(&c);
}

static void detection(kiln_eval_detection *d) {
  /* class 0: one small box found; class 1: detections only; class 2: one
   * medium box missed */
  const kiln_eval_gt g[2] = {{.image = 1, .category = 0, .w = 10, .h = 10, .area = -1},
                             {.image = 1, .category = 2, .x = 50, .w = 50, .h = 50, .area = -1}};
  const kiln_eval_det dt[2] = {{.image = 1, .category = 0, .score = 0.75, .w = 10, .h = 10},
                               {.image = 2, .category = 1, .score = 0.5, .w = 10, .h = 10}};
  kiln_error err = {0};
  if (kiln_eval_detect(g, 2, dt, 2, 3, d, &err) != KILN_OK) fprintf(stderr, "%s\n", err.msg);
}

static void test_detection_json(void) {
  kiln_eval_detection d;
  detection(&d);
  json_t *j = NULL;
  REQUIRE(kiln_eval_detection_to_json(&d, NULL, &j, NULL) == KILN_OK);
  CHECK(strcmp(json_string_value(json_object_get(j, "task")), "detection") == 0);
  CHECK(json_integer_value(json_object_get(j, "images")) == 2 &&
        json_integer_value(json_object_get(j, "classes")) == 3);
  json_t *summary = json_object_get(j, "summary");
  CHECK(json_object_size(summary) == 12);
  CHECK(fabs(num(summary, "AP") - 0.5) < 1e-9 && fabs(num(summary, "APs") - 1.0) < 1e-9);
  CHECK(json_is_null(json_object_get(summary, "APl")) && json_is_null(json_object_get(summary, "ARl")));
  CHECK(fabs(num(summary, "ARm")) == 0 && json_is_real(json_object_get(summary, "ARm")));
  CHECK(json_array_size(json_object_get(j, "iou_thresholds")) == 10);
  json_t *rt = json_object_get(j, "recall_thresholds");
  CHECK(json_array_size(rt) == 101 && json_real_value(json_array_get(rt, 100)) == 1.0);
  json_t *pc = json_object_get(j, "per_class");
  REQUIRE(json_array_size(pc) == 3);
  json_t *k0 = json_array_get(pc, 0), *k1 = json_array_get(pc, 1), *k2 = json_array_get(pc, 2);
  CHECK(json_object_get(k0, "name") == NULL);
  CHECK(json_integer_value(json_object_get(k0, "ground_truth")) == 1 &&
        json_integer_value(json_object_get(k1, "detections")) == 1);
  CHECK(fabs(num(k0, "ap") - 1) < 1e-9 && fabs(num(k0, "ar100") - 1) < 1e-9);
  CHECK(json_is_null(json_object_get(k1, "ap")) && json_is_null(json_object_get(k1, "pr_curve")));
  CHECK(num(k2, "ap50") == 0 && json_is_real(json_object_get(k2, "ap50")));
  json_t *curve = json_object_get(k0, "pr_curve");
  CHECK(num(curve, "iou") == 0.5);
  json_t *prec = json_object_get(curve, "precision"), *score = json_object_get(curve, "score");
  REQUIRE(json_array_size(prec) == 101 && json_array_size(score) == 101);
  CHECK(fabs(json_real_value(json_array_get(prec, 100)) - 1) < 1e-9);
  CHECK(json_real_value(json_array_get(score, 100)) == 0.75);
  json_t *curve2 = json_object_get(k2, "pr_curve"); /* ground truth, no detections */
  CHECK(json_real_value(json_array_get(json_object_get(curve2, "precision"), 0)) == 0);

  /* dump and load back */
  char *text = json_dumps(j, JSON_COMPACT);
  REQUIRE(text != NULL);
  json_t *back = json_loads(text, 0, NULL);
  CHECK(back != NULL && json_equal(back, j));
  json_decref(back);
  free(text);
  json_decref(j);
  const char *names[3] = {"person", "car", "bike"};
  REQUIRE(kiln_eval_detection_to_json(&d, names, &j, NULL) == KILN_OK);
  json_t *bike = json_array_get(json_object_get(j, "per_class"), 2);
  CHECK(strcmp(json_string_value(json_object_get(bike, "name")), "bike") == 0);
  json_decref(j);
  kiln_eval_detection_free(&d);
}

/* ---- jansson allocation failures ---- */

static int json_countdown;
static void *json_fail_malloc(size_t n) { return json_countdown-- > 0 ? malloc(n) : NULL; }

static void test_json_alloc_failures(void) {
  kiln_eval_classification c;
  kiln_eval_detection d;
  classification(&c);
  detection(&d);
  for (int which = 0; which < 2; which++) {
    int failed = 0;
    for (int n = 0; n < 100000; n++) {
      json_set_alloc_funcs(json_fail_malloc, free);
      json_countdown = n;
      json_t *j = NULL;
      kiln_error err = {0};
      const kiln_status s = which == 0 ? kiln_eval_classification_to_json(&c, NULL, &j, &err)
                                       : kiln_eval_detection_to_json(&d, NULL, &j, &err);
      json_set_alloc_funcs(malloc, free);
      if (s == KILN_OK) {
        CHECK(j != NULL);
        json_decref(j);
        break;
      }
      failed++;
      CHECK(s == KILN_ERR_NOMEM && j == NULL && strstr(err.msg, "out of memory"));
    }
    CHECK_MSG(failed > 20, "report %d: %d allocations", which, failed);
  }
  kiln_eval_classification_free(&c);
  kiln_eval_detection_free(&d);
}

int main(void) {
  RUN(test_classification_json);
  RUN(test_detection_json);
  RUN(test_json_alloc_failures);
  return test_summary();
}
