/*
 * COCO box evaluation (kiln_eval_detect) on small cases computed by hand
 * with COCOeval's rules: perfect detections, a false positive above the
 * true one, duplicates, IoU exactly on a threshold, area ranges (from the
 * box or the annotation), crowd regions, ties in score within and across
 * images, the 100-per-image cap, empty inputs, several classes, argument
 * errors and allocation failures. The randomized comparison with
 * pycocotools itself is tests/conformance/test_eval_coco.py.
 */
#include <math.h>
#include <string.h>

#include "kiln/eval.h"
#include "testutil.h"

#define EPS 1e-9

static kiln_eval_gt gt(int64_t image, int32_t cat, double x, double y, double w, double h) {
  return (kiln_eval_gt){.image = image, .category = cat, .x = x, .y = y, .w = w, .h = h, .area = -1};
}

static kiln_eval_det det(int64_t image, int32_t cat, double score, double x, double y, double w,
                         double h) {
  return (kiln_eval_det){.image = image, .category = cat, .score = score, .x = x, .y = y, .w = w, .h = h};
}

static bool near(double a, double b) { return fabs(a - b) <= EPS; }

static kiln_status eval(const kiln_eval_gt *g, int64_t ng, const kiln_eval_det *d, int64_t nd,
                        int32_t k, kiln_eval_detection *out) {
  kiln_error err = {0};
  kiln_status s = kiln_eval_detect(g, ng, d, nd, k, out, &err);
  if (s != KILN_OK) fprintf(stderr, "kiln_eval_detect: %s\n", err.msg);
  return s;
}

static void test_thresholds(void) {
  kiln_eval_detection d;
  kiln_eval_gt g = gt(1, 0, 0, 0, 10, 10);
  REQUIRE(eval(&g, 1, NULL, 0, 1, &d) == KILN_OK);
  CHECK(d.iou_thresholds[0] == 0.5 && d.iou_thresholds[5] == 0.75 && d.iou_thresholds[9] == 0.95);
  /* numpy.linspace(.5, .95, 10)[8] is 0.8999999999999999, not 0.9 */
  CHECK(d.iou_thresholds[8] < 0.9 && d.iou_thresholds[8] > 0.8999999999999);
  CHECK(d.recall_thresholds[0] == 0 && d.recall_thresholds[100] == 1.0);
  CHECK(d.recall_thresholds[35] > 0.35); /* 0.35000000000000003 in numpy */
  CHECK(d.max_dets[0] == 1 && d.max_dets[1] == 10 && d.max_dets[2] == 100);
  kiln_eval_detection_free(&d);
}

static void test_perfect(void) {
  const kiln_eval_gt g[3] = {gt(1, 0, 10, 10, 50, 50), gt(1, 0, 100, 100, 40, 60), gt(2, 0, 5, 5, 60, 40)};
  const kiln_eval_det d[3] = {det(2, 0, 0.7, 5, 5, 60, 40), det(1, 0, 0.9, 10, 10, 50, 50),
                              det(1, 0, 0.8, 100, 100, 40, 60)};
  kiln_eval_detection e;
  REQUIRE(eval(g, 3, d, 3, 1, &e) == KILN_OK);
  CHECK(e.n_images == 2);
  CHECK(near(e.stats[KILN_EVAL_AP], 1) && near(e.stats[KILN_EVAL_AP50], 1));
  CHECK(near(e.stats[KILN_EVAL_AP75], 1));
  CHECK(e.stats[KILN_EVAL_AP_SMALL] == -1 && e.stats[KILN_EVAL_AP_LARGE] == -1); /* all medium */
  CHECK(near(e.stats[KILN_EVAL_AP_MEDIUM], 1));
  CHECK(near(e.stats[KILN_EVAL_AR1], 2.0 / 3.0)); /* one detection of image 1 counts */
  CHECK(near(e.stats[KILN_EVAL_AR10], 1) && near(e.stats[KILN_EVAL_AR100], 1));
  CHECK(e.stats[KILN_EVAL_AR_SMALL] == -1 && near(e.stats[KILN_EVAL_AR_MEDIUM], 1));
  CHECK(near(e.class_ap[0], 1) && near(e.class_ap50[0], 1) && e.class_gt[0] == 3 && e.class_dets[0] == 3);
  for (int r = 0; r < KILN_EVAL_N_RECALL; r++) {
    CHECK(near(e.precision[kiln_eval_precision_index(&e, 0, r, 0, KILN_EVAL_AREA_ALL, 2)], 1));
    /* the curve's operating points: recall 1/3 needs the 0.9 box, 2/3 the 0.8, 1 the 0.7 */
    const double want = r <= 33 ? 0.9 : (r <= 66 ? 0.8 : 0.7);
    CHECK_MSG(e.pr_scores[r] == want, "r %d: %g", r, e.pr_scores[r]);
  }
  kiln_eval_detection_free(&e);
}

/* One ground truth; a false positive scores above the true positive. */
static void test_false_positive_first(void) {
  const kiln_eval_gt g = gt(7, 0, 0, 0, 100, 100);
  const kiln_eval_det d[2] = {det(7, 0, 0.8, 0, 0, 100, 100), det(7, 0, 0.9, 300, 300, 50, 50)};
  kiln_eval_detection e;
  REQUIRE(eval(&g, 1, d, 2, 1, &e) == KILN_OK);
  /* ranks: FP (p 0, r 0), TP (p 1/2, r 1); made monotone: 1/2 at every recall */
  CHECK(near(e.stats[KILN_EVAL_AP], 0.5) && near(e.stats[KILN_EVAL_AP50], 0.5));
  /* the FP is medium: ignored in the large range, where only the large
   * ground truth counts; the medium range has no ground truth at all */
  CHECK(near(e.stats[KILN_EVAL_AP_LARGE], 1));
  CHECK(e.stats[KILN_EVAL_AP_MEDIUM] == -1);
  CHECK(near(e.stats[KILN_EVAL_AR1], 0) && near(e.stats[KILN_EVAL_AR10], 1));
  kiln_eval_detection_free(&e);
}

/* Duplicates: a loose box (IoU 0.6) above an exact one. At IoU .50, .55
 * and .60 the loose box takes the ground truth and the exact one is a false
 * positive after it (AP 1); above .60 the loose box is a false positive
 * before the match (AP 1/2): 0.65 over the ten thresholds. */
static void test_duplicates(void) {
  const kiln_eval_gt g = gt(1, 0, 0, 0, 100, 100);
  const kiln_eval_det d[3] = {det(1, 0, 0.9, 0, 0, 60, 100), det(1, 0, 0.8, 0, 0, 100, 100),
                              det(1, 0, 0.7, 0, 0, 100, 100)};
  kiln_eval_detection e;
  REQUIRE(eval(&g, 1, d, 3, 1, &e) == KILN_OK);
  CHECK(near(e.class_ap[0], 0.65));
  CHECK(near(e.class_ap50[0], 1) && near(e.class_ap75[0], 0.5));
  CHECK(near(e.stats[KILN_EVAL_AR100], 1));
  kiln_eval_detection_free(&e);
}

/* IoU exactly 0.5 matches at the .50 threshold only; just below matches
 * nowhere. */
static void test_iou_boundary(void) {
  const kiln_eval_gt g[2] = {gt(1, 0, 0, 0, 100, 100), gt(2, 0, 0, 0, 100, 100)};
  kiln_eval_det d = det(1, 0, 0.9, 0, 0, 50, 100);
  kiln_eval_detection e;
  REQUIRE(eval(g, 1, &d, 1, 1, &e) == KILN_OK);
  CHECK(near(e.stats[KILN_EVAL_AP50], 1) && near(e.stats[KILN_EVAL_AP75], 0));
  CHECK(near(e.stats[KILN_EVAL_AP], 0.1) && near(e.stats[KILN_EVAL_AR100], 0.1));
  kiln_eval_detection_free(&e);
  d.w = 49.99;
  REQUIRE(eval(g, 1, &d, 1, 1, &e) == KILN_OK);
  CHECK(near(e.stats[KILN_EVAL_AP50], 0) && near(e.stats[KILN_EVAL_AP], 0));
  kiln_eval_detection_free(&e);
  /* IoU 17/20 = 0.85: numpy's threshold is 0.85 exactly, so it matches 8 of 10 */
  d.w = 85;
  REQUIRE(eval(g, 1, &d, 1, 1, &e) == KILN_OK);
  CHECK(near(e.stats[KILN_EVAL_AP], 0.8));
  kiln_eval_detection_free(&e);
  /* boxes that only touch do not overlap */
  d = det(2, 0, 0.9, 100, 0, 100, 100);
  REQUIRE(eval(g, 2, &d, 1, 1, &e) == KILN_OK);
  CHECK(near(e.stats[KILN_EVAL_AP50], 0) && near(e.stats[KILN_EVAL_AR100], 0));
  kiln_eval_detection_free(&e);
}

/* A small box found, a large one missed. */
static void test_areas(void) {
  kiln_eval_gt g[2] = {gt(1, 0, 0, 0, 10, 10), gt(1, 0, 200, 200, 120, 120)};
  const kiln_eval_det d = det(1, 0, 0.9, 0, 0, 10, 10);
  kiln_eval_detection e;
  REQUIRE(eval(g, 2, &d, 1, 1, &e) == KILN_OK);
  /* all: recall 1/2 at precision 1 -> recall thresholds 0..0.50 -> 51/101 */
  CHECK(near(e.stats[KILN_EVAL_AP], 51.0 / 101.0));
  CHECK(near(e.stats[KILN_EVAL_AP_SMALL], 1) && near(e.stats[KILN_EVAL_AP_LARGE], 0));
  CHECK(e.stats[KILN_EVAL_AP_MEDIUM] == -1);
  CHECK(near(e.stats[KILN_EVAL_AR100], 0.5) && near(e.stats[KILN_EVAL_AR_SMALL], 1) &&
        near(e.stats[KILN_EVAL_AR_LARGE], 0));
  kiln_eval_detection_free(&e);
  /* the annotation's area (e.g. a thin mask) decides the range, not w*h;
   * ranges include their ends: area 32^2 is small and medium */
  g[1].area = 32.0 * 32.0;
  REQUIRE(eval(g, 2, &d, 1, 1, &e) == KILN_OK);
  CHECK(near(e.stats[KILN_EVAL_AP_SMALL], 51.0 / 101.0) && near(e.stats[KILN_EVAL_AP_MEDIUM], 0));
  CHECK(e.stats[KILN_EVAL_AP_LARGE] == -1);
  kiln_eval_detection_free(&e);
}

/* An unmatched detection outside an area range is ignored in that range. */
static void test_detection_area_ignored(void) {
  const kiln_eval_gt g = gt(1, 0, 0, 0, 50, 50); /* medium */
  const kiln_eval_det d[2] = {det(1, 0, 0.9, 300, 300, 10, 10), det(1, 0, 0.8, 0, 0, 50, 50)};
  kiln_eval_detection e;
  REQUIRE(eval(&g, 1, d, 2, 1, &e) == KILN_OK);
  CHECK(near(e.stats[KILN_EVAL_AP], 0.5) && near(e.stats[KILN_EVAL_AP_MEDIUM], 1));
  kiln_eval_detection_free(&e);
}

/* A detection matched to a crowd region is neither true nor false, and a
 * crowd region may take several detections. IoU against a crowd box is
 * intersection / detection area. */
static void test_crowd(void) {
  kiln_eval_gt g[2] = {gt(1, 0, 0, 0, 50, 50), gt(1, 0, 200, 0, 300, 300)};
  g[1].iscrowd = true;
  const kiln_eval_det d[3] = {det(1, 0, 0.9, 210, 10, 20, 20), det(1, 0, 0.85, 250, 50, 30, 30),
                              det(1, 0, 0.8, 0, 0, 50, 50)};
  kiln_eval_detection e;
  REQUIRE(eval(g, 2, d, 3, 1, &e) == KILN_OK);
  CHECK(near(e.stats[KILN_EVAL_AP], 1) && e.class_gt[0] == 1);
  kiln_eval_detection_free(&e);
  g[1].iscrowd = false; /* now two regular boxes: the small ones are false positives */
  REQUIRE(eval(g, 2, d, 3, 1, &e) == KILN_OK);
  CHECK(e.stats[KILN_EVAL_AP] < 0.5 && e.class_gt[0] == 2);
  kiln_eval_detection_free(&e);
}

/* Equal scores keep their input order within an image, and order by image
 * id across images. */
static void test_ties(void) {
  const kiln_eval_gt g = gt(3, 0, 0, 0, 50, 50);
  kiln_eval_det d[2] = {det(3, 0, 0.5, 100, 100, 50, 50), det(3, 0, 0.5, 0, 0, 50, 50)};
  kiln_eval_detection e;
  REQUIRE(eval(&g, 1, d, 2, 1, &e) == KILN_OK);
  CHECK(near(e.stats[KILN_EVAL_AP], 0.5)); /* FP first */
  kiln_eval_detection_free(&e);
  const kiln_eval_det swapped[2] = {d[1], d[0]};
  REQUIRE(eval(&g, 1, swapped, 2, 1, &e) == KILN_OK);
  CHECK(near(e.stats[KILN_EVAL_AP], 1)); /* TP first */
  kiln_eval_detection_free(&e);
  d[0].image = 5; /* FP on a later image: the TP on image 3 ranks first */
  REQUIRE(eval(&g, 1, d, 2, 1, &e) == KILN_OK);
  CHECK(near(e.stats[KILN_EVAL_AP], 1));
  kiln_eval_detection_free(&e);
  d[0].image = 2; /* FP on an earlier image ranks first */
  REQUIRE(eval(&g, 1, d, 2, 1, &e) == KILN_OK);
  CHECK(near(e.stats[KILN_EVAL_AP], 0.5) && e.n_images == 2);
  kiln_eval_detection_free(&e);
}

/* Only the 100 best detections per image and class are evaluated. */
static void test_max_dets(void) {
  kiln_eval_det d[101];
  for (int i = 0; i < 100; i++) d[i] = det(1, 0, 0.9, 500 + i, 500, 20, 20);
  d[100] = det(1, 0, 0.1, 0, 0, 50, 50);
  const kiln_eval_gt g = gt(1, 0, 0, 0, 50, 50);
  kiln_eval_detection e;
  REQUIRE(eval(&g, 1, d, 101, 1, &e) == KILN_OK);
  CHECK(near(e.stats[KILN_EVAL_AR100], 0) && near(e.stats[KILN_EVAL_AP], 0));
  CHECK(e.class_dets[0] == 101);
  kiln_eval_detection_free(&e);
  REQUIRE(eval(&g, 1, d + 1, 100, 1, &e) == KILN_OK); /* 99 FPs, then the TP */
  CHECK(near(e.stats[KILN_EVAL_AR100], 1) && near(e.stats[KILN_EVAL_AR10], 0));
  CHECK(near(e.stats[KILN_EVAL_AP], 0.01));
  kiln_eval_detection_free(&e);
  /* the cap is per class: another class's detections do not push it out */
  kiln_eval_det mixed[101];
  memcpy(mixed, d, sizeof d);
  for (int i = 0; i < 100; i++) mixed[i].category = 1;
  REQUIRE(eval(&g, 1, mixed, 101, 2, &e) == KILN_OK);
  CHECK(near(e.stats[KILN_EVAL_AP], 1) && e.class_ap[1] == -1);
  kiln_eval_detection_free(&e);
}

static void test_empty(void) {
  kiln_eval_detection e;
  REQUIRE(eval(NULL, 0, NULL, 0, 3, &e) == KILN_OK);
  for (int i = 0; i < KILN_EVAL_N_STATS; i++) CHECK(e.stats[i] == -1);
  CHECK(e.class_ap[0] == -1 && e.class_ap50[2] == -1 && e.n_images == 0);
  kiln_eval_detection_free(&e);
  /* detections without any ground truth: still undefined */
  const kiln_eval_det d = det(1, 1, 0.9, 0, 0, 10, 10);
  REQUIRE(eval(NULL, 0, &d, 1, 3, &e) == KILN_OK);
  CHECK(e.stats[KILN_EVAL_AP] == -1 && e.class_dets[1] == 1);
  kiln_eval_detection_free(&e);
  /* ground truth without detections: 0 where there is ground truth */
  const kiln_eval_gt g = gt(1, 2, 0, 0, 50, 50);
  REQUIRE(eval(&g, 1, NULL, 0, 3, &e) == KILN_OK);
  CHECK(e.stats[KILN_EVAL_AP] == 0 && e.stats[KILN_EVAL_AR100] == 0 && e.stats[KILN_EVAL_AP_MEDIUM] == 0);
  CHECK(e.stats[KILN_EVAL_AP_SMALL] == -1 && e.class_ap[2] == 0 && e.class_ap[0] == -1);
  CHECK(e.pr_scores[2 * KILN_EVAL_N_RECALL] == 0 && e.pr_scores[0] == -1);
  kiln_eval_detection_free(&e);
}

/* Class 0 perfect, class 1 AP 1/2, class 2 only false positives without
 * ground truth (left out), class 3 absent; a class 1 box on class 0's
 * ground truth matches nothing. */
static void test_classes(void) {
  const kiln_eval_gt g[3] = {gt(1, 0, 0, 0, 50, 50), gt(1, 1, 100, 100, 50, 50), gt(2, 1, 0, 0, 40, 40)};
  const kiln_eval_det d[6] = {
      det(1, 0, 0.6, 0, 0, 50, 50),     det(1, 1, 0.9, 0, 0, 50, 50),  det(1, 1, 0.5, 100, 100, 50, 50),
      det(2, 1, 0.4, 0, 0, 40, 40),     det(2, 2, 0.99, 0, 0, 40, 40), det(1, 1, 0.95, 300, 300, 40, 40)};
  kiln_eval_detection e;
  REQUIRE(eval(g, 3, d, 6, 4, &e) == KILN_OK);
  /* class 1: FP .95, FP .9, TP .5, TP .4: precision 1/3, 1/2 -> monotone 1/2 */
  CHECK(near(e.class_ap[0], 1) && near(e.class_ap[1], 0.5));
  CHECK(e.class_ap[2] == -1 && e.class_ap[3] == -1 && e.class_gt[2] == 0 && e.class_dets[2] == 1);
  CHECK(near(e.stats[KILN_EVAL_AP], 0.75) && near(e.stats[KILN_EVAL_AP50], 0.75));
  CHECK(near(e.class_ar100[1], 1));
  /* class 1's curve: precision 1/2 everywhere; recall 1/2 is reached by
   * the .5 box, anything above by the .4 box */
  CHECK(near(e.precision[kiln_eval_precision_index(&e, 0, 50, 1, KILN_EVAL_AREA_ALL, 2)], 0.5));
  CHECK(e.pr_scores[KILN_EVAL_N_RECALL + 50] == 0.5 && e.pr_scores[KILN_EVAL_N_RECALL + 51] == 0.4);
  kiln_eval_detection_free(&e);
}

static void test_errors(void) {
  kiln_eval_detection e;
  kiln_error err = {0};
  kiln_eval_gt g = gt(1, 4, 0, 0, 10, 10);
  CHECK(kiln_eval_detect(&g, 1, NULL, 0, 4, &e, &err) == KILN_ERR_INVALID_ARG);
  CHECK(strstr(err.msg, "ground truth 0: category 4 outside [0, 4)") != NULL);
  CHECK(e.precision == NULL && e.n_classes == 0);
  g = gt(1, 0, 0, 0, -1, 10);
  CHECK(kiln_eval_detect(&g, 1, NULL, 0, 1, &e, &err) == KILN_ERR_INVALID_ARG);
  CHECK(strstr(err.msg, "width -1 is negative") != NULL);
  g = gt(1, 0, 0, 0, 1, 1);
  g.area = NAN;
  CHECK(kiln_eval_detect(&g, 1, NULL, 0, 1, &e, &err) == KILN_ERR_INVALID_ARG);
  kiln_eval_det d[2] = {det(1, 0, 0.5, 0, 0, 1, 1), det(1, 0, NAN, 0, 0, 1, 1)};
  CHECK(kiln_eval_detect(NULL, 0, d, 2, 1, &e, &err) == KILN_ERR_INVALID_ARG);
  CHECK(strstr(err.msg, "detection 1: score nan is not finite") != NULL);
  d[1].score = 0.5;
  d[1].y = INFINITY;
  CHECK(kiln_eval_detect(NULL, 0, d, 2, 1, &e, &err) == KILN_ERR_INVALID_ARG);
  CHECK(strstr(err.msg, "detection 1: y inf") != NULL);
  CHECK(kiln_eval_detect(NULL, 0, NULL, 0, 0, &e, &err) == KILN_ERR_INVALID_ARG);
  CHECK(kiln_eval_detect(NULL, 3, NULL, 0, 1, &e, &err) == KILN_ERR_INVALID_ARG);
}

/* ---- Allocation failures ---- */

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
  const kiln_eval_gt g[2] = {gt(1, 0, 0, 0, 50, 50), gt(2, 1, 0, 0, 10, 10)};
  const kiln_eval_det d[2] = {det(1, 0, 0.9, 0, 0, 50, 50), det(2, 1, 0.8, 0, 0, 10, 10)};
  const kiln_allocator a = {fail_alloc, fail_realloc, plain_free, NULL};
  int failures_seen = 0;
  for (int n = 0; n < 100; n++) {
    kiln_set_allocator(&a);
    alloc_countdown = n;
    kiln_eval_detection e;
    kiln_error err = {0};
    kiln_status s = kiln_eval_detect(g, 2, d, 2, 2, &e, &err);
    kiln_set_allocator(NULL);
    if (s == KILN_OK) {
      CHECK(near(e.stats[KILN_EVAL_AP], 1));
      kiln_eval_detection_free(&e);
      break;
    }
    failures_seen++;
    CHECK(s == KILN_ERR_NOMEM && e.precision == NULL && strstr(err.msg, "out of memory"));
  }
  CHECK(failures_seen > 10);
}

int main(void) {
  RUN(test_thresholds);
  RUN(test_perfect);
  RUN(test_false_positive_first);
  RUN(test_duplicates);
  RUN(test_iou_boundary);
  RUN(test_areas);
  RUN(test_detection_area_ignored);
  RUN(test_crowd);
  RUN(test_ties);
  RUN(test_max_dets);
  RUN(test_empty);
  RUN(test_classes);
  RUN(test_errors);
  RUN(test_alloc_failures);
  return test_summary();
}
