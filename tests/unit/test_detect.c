/*
 * Tests of vision/detect.c: box decoding against the box-coder formula,
 * score conversion, NMS (class-aware and class-agnostic) against a naive
 * greedy implementation on random boxes with many tied scores and
 * duplicate boxes, the full decode pipeline, and reading post-processed
 * outputs.
 */
#include <math.h>
#include <string.h>

#include "kiln/detect.h"
#include "testutil.h"

/* ---- Naive reference NMS ---- */

static float naive_iou(const float *a, const float *b) {
  const float area_a = (a[2] - a[0]) * (a[3] - a[1]);
  const float area_b = (b[2] - b[0]) * (b[3] - b[1]);
  if (area_a <= 0 || area_b <= 0) return 0.0f;
  const float ih = fminf(a[2], b[2]) - fmaxf(a[0], b[0]);
  const float iw = fminf(a[3], b[3]) - fmaxf(a[1], b[1]);
  const float inter = (ih > 0 ? ih : 0.0f) * (iw > 0 ? iw : 0.0f);
  const float sum = area_a + area_b;
  return inter / (sum - inter);
}

typedef struct cand {
  int32_t anchor, cls;
  float score;
} cand;

/* Greedy NMS over candidates already ordered best first: keeps a candidate
 * unless a kept one overlaps it by more than iou; stops at limit. */
static int32_t greedy(const cand *c, int32_t n, const float *boxes, float iou, int32_t limit,
                      cand *kept) {
  int32_t k = 0;
  for (int32_t i = 0; i < n && k < limit; i++) {
    bool keep = true;
    for (int32_t j = 0; j < k && keep; j++)
      keep = naive_iou(boxes + 4 * c[i].anchor, boxes + 4 * kept[j].anchor) <= iou;
    if (keep) kept[k++] = c[i];
  }
  return k;
}

/* Insertion sort by score descending; equal scores keep their order. */
static void sort_by_score(cand *c, int32_t n) {
  for (int32_t i = 1; i < n; i++) {
    const cand x = c[i];
    int32_t j = i;
    while (j > 0 && c[j - 1].score < x.score) {
      c[j] = c[j - 1];
      j--;
    }
    c[j] = x;
  }
}

/* Detections as TFLite's NMS defines them, computed the obvious way. */
static int32_t naive_nms(const float *boxes, const float *scores, int32_t n, int32_t n_classes,
                         const kiln_detect_config *cfg, cand *out) {
  const int32_t first = cfg->background_class ? 1 : 0;
  cand *c = malloc(sizeof *c * (size_t)n * (size_t)n_classes);
  cand *kept = malloc(sizeof *kept * (size_t)n * (size_t)n_classes);
  int32_t total = 0;
  if (cfg->class_agnostic) {
    int32_t m = 0;
    for (int32_t a = 0; a < n; a++) {
      int32_t best = first;
      for (int32_t k = first + 1; k < n_classes; k++)
        if (scores[a * n_classes + k] > scores[a * n_classes + best]) best = k;
      const float s = scores[a * n_classes + best];
      if (s >= cfg->score_threshold) c[m++] = (cand){a, best, s};
    }
    sort_by_score(c, m);
    total = greedy(c, m, boxes, cfg->iou_threshold, cfg->max_detections, out);
  } else {
    int32_t n_all = 0;
    for (int32_t k = first; k < n_classes; k++) {
      int32_t m = 0;
      for (int32_t a = 0; a < n; a++) {
        const float s = scores[a * n_classes + k];
        if (s >= cfg->score_threshold) c[m++] = (cand){a, k, s};
      }
      sort_by_score(c, m);
      const int32_t limit = cfg->detections_per_class < cfg->max_detections
                                ? cfg->detections_per_class
                                : cfg->max_detections;
      n_all += greedy(c, m, boxes, cfg->iou_threshold, limit, kept + n_all);
    }
    /* Class order, then selection order, is the tie order: a stable sort. */
    sort_by_score(kept, n_all);
    total = n_all < cfg->max_detections ? n_all : cfg->max_detections;
    memcpy(out, kept, sizeof *out * (size_t)total);
  }
  free(c);
  free(kept);
  return total;
}

/* ---- Tests ---- */

static void test_decode_boxes(void) {
  kiln_detect_config cfg = kiln_detect_config_default300();
  const float anchors[8] = {0.5f, 0.4f, 0.2f, 0.1f, 0.1f, 0.9f, 0.05f, 0.3f};
  const float enc[8] = {0.0f, 0.0f, 0.0f, 0.0f, 1.0f, -2.0f, 0.5f, -1.5f};
  float boxes[8];
  kiln_detect_decode_boxes(enc, anchors, 2, &cfg, boxes);
  /* Zero encodings give the anchor itself. */
  CHECK(fabsf(boxes[0] - 0.4f) < 1e-7f && fabsf(boxes[1] - 0.35f) < 1e-7f);
  CHECK(fabsf(boxes[2] - 0.6f) < 1e-7f && fabsf(boxes[3] - 0.45f) < 1e-7f);
  /* ycenter = 1/10*0.05 + 0.1, h = exp(0.5/5)*0.05; x: -2/10*0.3 + 0.9, exp(-1.5/5)*0.3. */
  const double yc = 0.1 * 0.05 + 0.1, h = exp(0.1) * 0.05;
  const double xc = -0.2 * 0.3 + 0.9, w = exp(-0.3) * 0.3;
  CHECK(fabs(boxes[4] - (yc - h / 2)) < 1e-6 && fabs(boxes[6] - (yc + h / 2)) < 1e-6);
  CHECK(fabs(boxes[5] - (xc - w / 2)) < 1e-6 && fabs(boxes[7] - (xc + w / 2)) < 1e-6);
  /* The float results are the double formula rounded once per quantity. */
  const float hf = (float)(0.5 * exp(0.5 / 5.0) * (double)0.05f);
  CHECK(boxes[4] == (float)((double)1.0f / 10.0 * (double)0.05f + (double)0.1f) - hf);
}

static void test_scores(void) {
  const float logits[6] = {0.0f, 2.0f, -3.0f, 1.0f, 1.0f, 1.0f};
  float s[6];
  kiln_detect_scores(logits, 2, 3, KILN_SCORE_SIGMOID, s);
  CHECK(s[0] == 0.5f);
  CHECK(fabsf(s[1] - 0.880797f) < 1e-6f && fabsf(s[2] - 0.0474259f) < 1e-6f);
  kiln_detect_scores(logits, 2, 3, KILN_SCORE_SOFTMAX, s);
  const double z = 1.0 + exp(2.0) + exp(-3.0);
  CHECK(fabs(s[0] - 1.0 / z) < 1e-6 && fabs(s[1] - exp(2.0) / z) < 1e-6);
  CHECK(fabsf(s[3] - 1.0f / 3) < 1e-6f && fabsf(s[5] - 1.0f / 3) < 1e-6f);
  CHECK(fabsf(s[0] + s[1] + s[2] - 1.0f) < 1e-6f);
  kiln_detect_scores(logits, 2, 3, KILN_SCORE_NONE, s);
  CHECK(memcmp(s, logits, sizeof s) == 0);
  /* Large logits stay finite under softmax. */
  const float big[2] = {1000.0f, 999.0f};
  kiln_detect_scores(big, 1, 2, KILN_SCORE_SOFTMAX, s);
  CHECK(fabs(s[0] - 1.0 / (1.0 + exp(-1.0))) < 1e-6);
}

/* Random boxes on a coarse grid (duplicates and zero-area boxes happen)
 * and scores from a few levels (ties happen). */
static void random_case(test_rng *rng, int32_t n, int32_t n_classes, float *boxes, float *scores,
                        bool coarse) {
  for (int32_t a = 0; a < n; a++) {
    const float y = (float)test_rand_int(rng, 0, 8) / 10.0f;
    const float x = (float)test_rand_int(rng, 0, 8) / 10.0f;
    boxes[4 * a + 0] = y;
    boxes[4 * a + 1] = x;
    boxes[4 * a + 2] = y + (float)test_rand_int(rng, 0, 4) / 10.0f;
    boxes[4 * a + 3] = x + (float)test_rand_int(rng, 1, 4) / 10.0f;
    for (int32_t k = 0; k < n_classes; k++)
      scores[a * n_classes + k] = coarse ? (float)test_rand_int(rng, 0, 8) / 8.0f
                                         : test_rand_float(rng, 0.0f, 1.0f);
  }
}

static void test_nms_vs_naive(void) {
  test_rng rng = {2024};
  int cases = 0, with_results = 0;
  for (int iter = 0; iter < 3000; iter++) {
    const int32_t n = test_rand_int(&rng, 1, 60);
    const int32_t n_classes = test_rand_int(&rng, 2, 6);
    float *boxes = malloc(sizeof(float) * 4 * (size_t)n);
    float *scores = malloc(sizeof(float) * (size_t)(n * n_classes));
    REQUIRE(boxes && scores);
    random_case(&rng, n, n_classes, boxes, scores, iter % 3 != 0);
    kiln_detect_config cfg = kiln_detect_config_default300();
    cfg.background_class = test_rand_u32(&rng) & 1;
    cfg.class_agnostic = test_rand_u32(&rng) & 1;
    cfg.score_threshold = (float)test_rand_int(&rng, 0, 4) / 8.0f;
    cfg.iou_threshold = (float)test_rand_int(&rng, 1, 10) / 10.0f;
    cfg.max_detections = test_rand_int(&rng, 1, 20);
    cfg.detections_per_class = test_rand_int(&rng, 1, 8);
    kiln_detection got[32];
    cand want[64];
    int32_t n_got = -1;
    kiln_error err;
    REQUIRE(kiln_detect_nms(boxes, scores, n, n_classes, &cfg, got, 32, &n_got, &err) == KILN_OK);
    const int32_t n_want = naive_nms(boxes, scores, n, n_classes, &cfg, want);
    CHECK_MSG(n_got == n_want, "iter %d: %d detections, naive %d", iter, (int)n_got,
              (int)n_want);
    for (int32_t i = 0; i < n_got && i < n_want; i++) {
      const float *b = boxes + 4 * want[i].anchor;
      const bool same = got[i].class_id == want[i].cls && got[i].score == want[i].score &&
                        got[i].ymin == b[0] && got[i].xmin == b[1] && got[i].ymax == b[2] &&
                        got[i].xmax == b[3];
      CHECK_MSG(same, "iter %d det %d: class %d score %g vs anchor %d class %d score %g", iter,
                (int)i, (int)got[i].class_id, (double)got[i].score, (int)want[i].anchor,
                (int)want[i].cls, (double)want[i].score);
      if (!same) break;
    }
    /* Sorted by score, best first. */
    for (int32_t i = 1; i < n_got; i++) CHECK(got[i - 1].score >= got[i].score);
    cases++;
    if (n_got > 1) with_results++;
    free(boxes);
    free(scores);
  }
  CHECK(with_results > cases / 3);
}

static void test_nms_ties_by_anchor_and_class(void) {
  /* Four disjoint boxes, all scores equal: anchors in index order; with
   * per-class NMS, classes in index order within equal scores. */
  const float boxes[16] = {0, 0, 0.1f, 0.1f, 0.2f, 0.2f, 0.3f, 0.3f,
                           0.4f, 0.4f, 0.5f, 0.5f, 0.6f, 0.6f, 0.7f, 0.7f};
  float scores[12];
  for (int i = 0; i < 12; i++) scores[i] = 0.5f;
  kiln_detect_config cfg = kiln_detect_config_default300();
  cfg.score_threshold = 0.1f;
  cfg.max_detections = 8;
  kiln_detection d[8];
  int32_t n = 0;
  kiln_error err;
  REQUIRE(kiln_detect_nms(boxes, scores, 4, 3, &cfg, d, 8, &n, &err) == KILN_OK);
  REQUIRE(n == 4);
  for (int i = 0; i < 4; i++) CHECK(d[i].class_id == 1 && d[i].ymin == boxes[4 * i]);
  cfg.class_agnostic = false;
  REQUIRE(kiln_detect_nms(boxes, scores, 4, 3, &cfg, d, 8, &n, &err) == KILN_OK);
  REQUIRE(n == 8);
  for (int i = 0; i < 8; i++) {
    CHECK(d[i].class_id == 1 + i / 4);
    CHECK(d[i].ymin == boxes[4 * (i % 4)]);
  }
  /* Identical boxes: only the first survives (IoU 1 > any threshold < 1). */
  const float same[8] = {0.1f, 0.1f, 0.5f, 0.5f, 0.1f, 0.1f, 0.5f, 0.5f};
  const float s2[4] = {0.0f, 0.7f, 0.0f, 0.7f};
  cfg.class_agnostic = true;
  REQUIRE(kiln_detect_nms(same, s2, 2, 2, &cfg, d, 8, &n, &err) == KILN_OK);
  CHECK(n == 1 && d[0].class_id == 1);
  /* IoU threshold 1 keeps identical boxes (IoU is not > 1). */
  cfg.iou_threshold = 1.0f;
  REQUIRE(kiln_detect_nms(same, s2, 2, 2, &cfg, d, 8, &n, &err) == KILN_OK);
  CHECK(n == 2);
  /* Capacity truncates, keeping the best. */
  REQUIRE(kiln_detect_nms(same, s2, 2, 2, &cfg, d, 1, &n, &err) == KILN_OK);
  CHECK(n == 1);
}

static void test_nms_bad_args(void) {
  const float boxes[4] = {0, 0, 1, 1};
  const float scores[2] = {0.1f, 0.9f};
  kiln_detection d[1];
  int32_t n = 5;
  kiln_error err;
  kiln_detect_config cfg = kiln_detect_config_default300();
  cfg.iou_threshold = 0.0f;
  CHECK(kiln_detect_nms(boxes, scores, 1, 2, &cfg, d, 1, &n, &err) == KILN_ERR_INVALID_ARG);
  CHECK(n == 0 && strstr(err.msg, "iou_threshold") != NULL);
  cfg = kiln_detect_config_default300();
  CHECK(kiln_detect_nms(boxes, scores, 1, 1, &cfg, d, 1, &n, &err) == KILN_ERR_INVALID_ARG);
  cfg.max_detections = 0;
  CHECK(kiln_detect_nms(boxes, scores, 1, 2, &cfg, d, 1, &n, &err) == KILN_ERR_INVALID_ARG);
  cfg = kiln_detect_config_default300();
  cfg.class_agnostic = false;
  cfg.detections_per_class = 0;
  CHECK(kiln_detect_nms(boxes, scores, 1, 2, &cfg, d, 1, &n, &err) == KILN_ERR_INVALID_ARG);
  cfg = kiln_detect_config_default300();
  cfg.score_threshold = NAN;
  CHECK(kiln_detect_nms(boxes, scores, 1, 2, &cfg, d, 1, &n, &err) == KILN_ERR_INVALID_ARG);
}

/* The whole pipeline on anchors of the shared SSD: an encoding of zero on
 * one anchor with a high logit gives exactly that anchor's box. */
static void test_decode_pipeline(void) {
  kiln_detect_config cfg = kiln_detect_config_default300();
  float *anchors = NULL;
  int32_t n = 0;
  kiln_error err;
  REQUIRE(kiln_ssd_anchors_generate(&cfg.anchors, &anchors, &n, &err) == KILN_OK);
  const int32_t classes = 24;
  float *enc = calloc((size_t)n * 4, sizeof(float));
  float *logits = malloc(sizeof(float) * (size_t)n * classes);
  REQUIRE(enc && logits);
  for (int32_t i = 0; i < n * classes; i++) logits[i] = -6.0f;
  logits[1500 * classes + 7] = 3.0f;           /* anchor 1500, class 7 */
  logits[100 * classes + 0] = 9.0f;            /* background: never detected */
  logits[200 * classes + 3] = 0.2f;            /* below 0.6 after sigmoid */
  logits[1916 * classes + 12] = 1.0f;          /* the big last anchor */
  enc[1916 * 4 + 2] = 5.0f * logf(0.5f);      /* half its height */
  kiln_detection d[10];
  int32_t nd = 0;
  REQUIRE(kiln_detect_decode(enc, logits, n, classes, anchors, &cfg, d, 10, &nd, &err) == KILN_OK);
  REQUIRE(nd == 2);
  CHECK(d[0].class_id == 7 && fabsf(d[0].score - 1.0f / (1.0f + expf(-3.0f))) < 1e-7f);
  const float *a = anchors + 4 * 1500;
  CHECK(fabsf(d[0].ymin - (a[0] - a[2] / 2)) < 1e-6f && fabsf(d[0].xmax - (a[1] + a[3] / 2)) < 1e-6f);
  CHECK(d[1].class_id == 12);
  CHECK(fabsf((d[1].ymax - d[1].ymin) - sqrtf(0.95f) / 2) < 1e-5f);
  CHECK(fabsf((d[1].xmax - d[1].xmin) - sqrtf(0.95f)) < 1e-5f);
  free(enc);
  free(logits);
  kiln_free(anchors);
}

static void test_read_postprocessed(void) {
  const float boxes[12] = {0.1f, 0.2f, 0.3f, 0.4f, 0.5f, 0.5f, 0.6f, 0.6f, 0, 0, 0, 0};
  const float classes[3] = {4.0f, 0.0f, 0.0f};
  const float scores[3] = {0.9f, 0.7f, 0.0f};
  float count = 2.0f;
  kiln_detection d[3];
  int32_t n = 0;
  kiln_error err;
  REQUIRE(kiln_detect_read_postprocessed(boxes, classes, scores, &count, 3, 1, 1, d, 3, &n,
                                         &err) == KILN_OK);
  REQUIRE(n == 2);
  CHECK(d[0].class_id == 5 && d[0].score == 0.9f && d[0].ymin == 0.1f && d[0].xmax == 0.4f);
  CHECK(d[1].class_id == 1 && d[1].ymax == 0.6f);
  count = 2.5f;
  CHECK(kiln_detect_read_postprocessed(boxes, classes, scores, &count, 3, 1, 1, d, 3, &n, &err) ==
        KILN_ERR_FORMAT);
  count = 4.0f;
  CHECK(kiln_detect_read_postprocessed(boxes, classes, scores, &count, 3, 1, 1, d, 3, &n, &err) ==
        KILN_ERR_FORMAT);
  count = NAN;
  CHECK(kiln_detect_read_postprocessed(boxes, classes, scores, &count, 3, 1, 1, d, 3, &n, &err) ==
        KILN_ERR_FORMAT);
  /* Two classes per detection: one box owns slots 0 and 1. */
  count = 1.0f;
  REQUIRE(kiln_detect_read_postprocessed(boxes, classes, scores, &count, 3, 2, 0, d, 3, &n,
                                         &err) == KILN_OK);
  CHECK(n == 2 && d[0].class_id == 4 && d[1].class_id == 0);
  const float bad_classes[3] = {0.5f, 0, 0};
  CHECK(kiln_detect_read_postprocessed(boxes, bad_classes, scores, &count, 3, 1, 0, d, 3, &n,
                                       &err) == KILN_ERR_FORMAT);
}

int main(void) {
  RUN(test_decode_boxes);
  RUN(test_scores);
  RUN(test_nms_vs_naive);
  RUN(test_nms_ties_by_anchor_and_class);
  RUN(test_nms_bad_args);
  RUN(test_decode_pipeline);
  RUN(test_read_postprocessed);
  return test_summary();
}
