/*
 * Classification metrics (kiln_eval_classify) on a known confusion matrix
 * with hand-computed per-class precision/recall/F1, macro and weighted
 * averages; argmax and top-k with ties; classes seen only as predictions;
 * argument errors; allocation failures.
 */
#include <math.h>
#include <string.h>

#include "kiln/eval.h"
#include "testutil.h"

#define EPS 1e-12

static bool near(double a, double b) { return fabs(a - b) <= EPS; }

/* Expands a confusion matrix (row true, column predicted) into samples. */
static int64_t from_matrix(const int32_t *m, int32_t k, int32_t *labels, int32_t *preds) {
  int64_t n = 0;
  for (int32_t i = 0; i < k; i++)
    for (int32_t j = 0; j < k; j++)
      for (int32_t c = 0; c < m[i * k + j]; c++) {
        labels[n] = i;
        preds[n++] = j;
      }
  return n;
}

/* true\pred  0  1  2  3
 *    0       5  1  0  0   support 6
 *    1       2  3  1  0   support 6
 *    2       0  0  4  0   support 4
 *    3       0  0  0  0   never seen: left out of the macro average */
static void test_known_matrix(void) {
  const int32_t m[16] = {5, 1, 0, 0, 2, 3, 1, 0, 0, 0, 4, 0, 0, 0, 0, 0};
  int32_t labels[16], preds[16];
  const int64_t n = from_matrix(m, 4, labels, preds);
  REQUIRE(n == 16);
  kiln_eval_classification c;
  kiln_error err = {0};
  REQUIRE(kiln_eval_classify(labels, preds, NULL, n, 4, 0, &c, &err) == KILN_OK);
  for (int i = 0; i < 16; i++) CHECK(c.confusion[i] == m[i]);
  CHECK(near(c.accuracy, 12.0 / 16.0) && c.top_k == 0 && c.top_k_accuracy == -1);
  const double p[3] = {5.0 / 7.0, 3.0 / 4.0, 4.0 / 5.0}, r[3] = {5.0 / 6.0, 3.0 / 6.0, 1.0};
  const double f[3] = {10.0 / 13.0, 6.0 / 10.0, 8.0 / 9.0};
  const int64_t support[3] = {6, 6, 4}, predicted[3] = {7, 4, 5};
  for (int k = 0; k < 3; k++) {
    CHECK(c.classes[k].support == support[k] && c.classes[k].predicted == predicted[k]);
    CHECK(near(c.classes[k].precision, p[k]) && near(c.classes[k].recall, r[k]) &&
          near(c.classes[k].f1, f[k]));
  }
  CHECK(c.classes[3].support == 0 && c.classes[3].precision == 0 && c.classes[3].f1 == 0);
  CHECK(near(c.macro_precision, (p[0] + p[1] + p[2]) / 3));
  CHECK(near(c.macro_recall, (r[0] + r[1] + r[2]) / 3));
  CHECK(near(c.macro_f1, (f[0] + f[1] + f[2]) / 3));
  CHECK(near(c.weighted_precision, (6 * p[0] + 6 * p[1] + 4 * p[2]) / 16));
  CHECK(near(c.weighted_recall, c.accuracy)); /* always equal */
  CHECK(near(c.weighted_f1, (6 * f[0] + 6 * f[1] + 4 * f[2]) / 16));
  kiln_eval_classification_free(&c);
  CHECK(c.classes == NULL && c.confusion == NULL);
}

/* A class that is predicted but never the label counts in the macro
 * average with precision, recall and F1 of 0, and weighs 0 in the
 * weighted one. */
static void test_predicted_only_class(void) {
  const int32_t labels[4] = {0, 0, 1, 1}, preds[4] = {0, 2, 1, 1};
  kiln_eval_classification c;
  REQUIRE(kiln_eval_classify(labels, preds, NULL, 4, 3, 0, &c, NULL) == KILN_OK);
  CHECK(c.classes[2].predicted == 1 && c.classes[2].support == 0 && c.classes[2].precision == 0);
  /* class 0: p 1, r 1/2, f1 2/3; class 1: p 1, r 1, f1 1 */
  CHECK(near(c.macro_precision, 2.0 / 3.0) && near(c.macro_recall, 0.5));
  CHECK(near(c.macro_f1, (2.0 / 3.0 + 1.0) / 3.0));
  CHECK(near(c.weighted_precision, 1.0) && near(c.weighted_f1, (2 * 2.0 / 3.0 + 2 * 1.0) / 4));
  kiln_eval_classification_free(&c);
}

/* Scores: argmax with the lowest index among equal scores; top-k ranks by
 * score, then index. */
static void test_scores_top_k(void) {
  const float scores[4 * 4] = {
      0.1f, 0.7f, 0.1f, 0.1f, /* label 1: top-1 */
      0.4f, 0.3f, 0.2f, 0.1f, /* label 2: third */
      0.3f, 0.3f, 0.3f, 0.1f, /* label 2: tie, ranks third by index */
      0.5f, 0.5f, 0.0f, 0.0f, /* label 1: tie with class 0, second; argmax is 0 */
  };
  const int32_t labels[4] = {1, 2, 2, 1};
  kiln_eval_classification c;
  REQUIRE(kiln_eval_classify(labels, NULL, scores, 4, 4, 2, &c, NULL) == KILN_OK);
  CHECK(near(c.accuracy, 0.25) && c.top_k == 2 && near(c.top_k_accuracy, 0.5));
  CHECK(c.confusion[1 * 4 + 1] == 1 && c.confusion[2 * 4 + 0] == 2 && c.confusion[1 * 4 + 0] == 1);
  kiln_eval_classification_free(&c);
  REQUIRE(kiln_eval_classify(labels, NULL, scores, 4, 4, 3, &c, NULL) == KILN_OK);
  CHECK(near(c.top_k_accuracy, 1.0));
  kiln_eval_classification_free(&c);
  REQUIRE(kiln_eval_classify(labels, NULL, scores, 4, 4, 1, &c, NULL) == KILN_OK);
  CHECK(near(c.top_k_accuracy, c.accuracy));
  kiln_eval_classification_free(&c);
}

static void test_errors(void) {
  kiln_eval_classification c;
  kiln_error err = {0};
  const int32_t labels[2] = {0, 3}, preds[2] = {0, 1};
  const float scores[2 * 3] = {0.1f, 0.2f, 0.3f, 0.1f, NAN, 0.3f};
  CHECK(kiln_eval_classify(labels, preds, NULL, 2, 3, 0, &c, &err) == KILN_ERR_INVALID_ARG);
  CHECK(strstr(err.msg, "sample 1: label 3 outside [0, 3)") != NULL && c.classes == NULL);
  const int32_t ok_labels[2] = {0, 1}, bad_preds[2] = {0, -1};
  CHECK(kiln_eval_classify(ok_labels, bad_preds, NULL, 2, 3, 0, &c, &err) == KILN_ERR_INVALID_ARG);
  CHECK(strstr(err.msg, "sample 1: prediction -1") != NULL);
  CHECK(kiln_eval_classify(ok_labels, NULL, scores, 2, 3, 0, &c, &err) == KILN_ERR_INVALID_ARG);
  CHECK(strstr(err.msg, "sample 1: score of class 1 is NaN") != NULL);
  CHECK(kiln_eval_classify(ok_labels, preds, scores, 2, 3, 0, &c, &err) == KILN_ERR_INVALID_ARG);
  CHECK(kiln_eval_classify(ok_labels, NULL, NULL, 2, 3, 0, &c, &err) == KILN_ERR_INVALID_ARG);
  CHECK(kiln_eval_classify(ok_labels, preds, NULL, 2, 3, 1, &c, &err) == KILN_ERR_INVALID_ARG);
  CHECK(strstr(err.msg, "needs scores") != NULL);
  CHECK(kiln_eval_classify(ok_labels, NULL, scores, 1, 3, 4, &c, &err) == KILN_ERR_INVALID_ARG);
  CHECK(kiln_eval_classify(ok_labels, preds, NULL, 0, 3, 0, &c, &err) == KILN_ERR_INVALID_ARG);
  CHECK(kiln_eval_classify(ok_labels, preds, NULL, 2, 0, 0, &c, &err) == KILN_ERR_INVALID_ARG);
}

static int alloc_countdown;
static void *fail_alloc(size_t n, void *ctx) {
  (void)ctx;
  return alloc_countdown-- > 0 ? malloc(n) : NULL;
}
static void *fail_realloc(void *p, size_t n, void *ctx) {
  (void)ctx;
  return alloc_countdown-- > 0 ? realloc(p, n) : NULL;
}
static void plain_free(void *p, void *ctx) {
  (void)ctx;
  free(p);
}

static void test_alloc_failures(void) {
  const int32_t labels[3] = {0, 1, 1}, preds[3] = {0, 1, 0};
  const kiln_allocator a = {fail_alloc, fail_realloc, plain_free, NULL};
  for (int n = 0; n < 2; n++) {
    kiln_set_allocator(&a);
    alloc_countdown = n;
    kiln_eval_classification c;
    kiln_error err = {0};
    const kiln_status s = kiln_eval_classify(labels, preds, NULL, 3, 2, 0, &c, &err);
    kiln_set_allocator(NULL);
    CHECK(s == KILN_ERR_NOMEM && c.classes == NULL && c.confusion == NULL);
  }
}

int main(void) {
  RUN(test_known_matrix);
  RUN(test_predicted_only_class);
  RUN(test_scores_top_k);
  RUN(test_errors);
  RUN(test_alloc_failures);
  return test_summary();
}
