/*
 * Tests of the TFLite_Detection_PostProcess op (runtime/ops_detect.c and
 * kernels/ref/detection_postprocess_ref.c) through the interpreter, on
 * one-op models built with the model API: outputs recorded from LiteRT
 * 2.3.0 on inputs full of ties (the exact tie order of its libstdc++
 * partial_sort and merge), random inputs against a naive NMS, quantized
 * inputs against the float path on dequantized values, and prepare's
 * refusals with their messages.
 */
#include <math.h>
#include <string.h>

#include "kiln/detect.h"
#include "kiln/interp.h"
#include "kiln/model.h"
#include "model/flexbuf.h"
#include "testutil.h"

typedef struct pp_options {
  int64_t max_detections, max_classes_per_detection, detections_per_class, num_classes;
  bool use_regular_nms;
  float score_threshold, iou_threshold;
} pp_options;

/* Custom options as TF's converter writes them, plus an optional extra
 * entry (or one left out) for the refusal tests. */
static uint8_t *write_options(const pp_options *o, const char *skip, const kiln_flex_entry *extra,
                              size_t *size) {
  kiln_flex_entry e[14];
  size_t n = 0;
  e[n++] = (kiln_flex_entry){"max_detections", KILN_FLEX_ENTRY_INT, o->max_detections, 0, false};
  e[n++] = (kiln_flex_entry){"max_classes_per_detection", KILN_FLEX_ENTRY_INT,
                             o->max_classes_per_detection, 0, false};
  e[n++] = (kiln_flex_entry){"detections_per_class", KILN_FLEX_ENTRY_INT,
                             o->detections_per_class, 0, false};
  e[n++] = (kiln_flex_entry){"use_regular_nms", KILN_FLEX_ENTRY_BOOL, 0, 0, o->use_regular_nms};
  e[n++] = (kiln_flex_entry){"nms_score_threshold", KILN_FLEX_ENTRY_FLOAT, 0, o->score_threshold,
                             false};
  e[n++] = (kiln_flex_entry){"nms_iou_threshold", KILN_FLEX_ENTRY_FLOAT, 0, o->iou_threshold,
                             false};
  e[n++] = (kiln_flex_entry){"num_classes", KILN_FLEX_ENTRY_INT, o->num_classes, 0, false};
  e[n++] = (kiln_flex_entry){"y_scale", KILN_FLEX_ENTRY_FLOAT, 0, 10.0, false};
  e[n++] = (kiln_flex_entry){"x_scale", KILN_FLEX_ENTRY_FLOAT, 0, 10.0, false};
  e[n++] = (kiln_flex_entry){"h_scale", KILN_FLEX_ENTRY_FLOAT, 0, 5.0, false};
  e[n++] = (kiln_flex_entry){"w_scale", KILN_FLEX_ENTRY_FLOAT, 0, 5.0, false};
  size_t kept = 0;
  for (size_t i = 0; i < n; i++) {
    if (skip && strcmp(e[i].key, skip) == 0) continue;
    if (extra && strcmp(e[i].key, extra->key) == 0) continue;
    e[kept++] = e[i];
  }
  if (extra) e[kept++] = *extra;
  uint8_t *bytes = NULL;
  kiln_error err;
  if (kiln_flex_write_map(e, kept, &bytes, size, &err) != KILN_OK) return NULL;
  return bytes;
}

typedef struct pp_model {
  int32_t n, cb, enc_width;
  kiln_dtype enc_dtype, cls_dtype, anc_dtype, out_dtype;
  float q_scale[3];
  int32_t q_zp[3];
  const void *anchors; /* NULL: anchors become a graph input */
  int32_t slots;       /* declared output slots */
} pp_model;

static kiln_model *build(const pp_model *pm, const uint8_t *options, size_t options_bytes) {
  kiln_model *m = NULL;
  kiln_error err;
  if (kiln_model_new(&m, &err) != KILN_OK) return NULL;
  kiln_quant q[3];
  for (int i = 0; i < 3; i++) {
    q[i] = (kiln_quant){1, 0, (float *)&pm->q_scale[i], (int32_t *)&pm->q_zp[i]};
  }
  const kiln_dtype dt[3] = {pm->enc_dtype, pm->cls_dtype, pm->anc_dtype};
  const int32_t enc_shape[3] = {1, pm->n, pm->enc_width}, cls_shape[3] = {1, pm->n, pm->cb};
  const int32_t anc_shape[2] = {pm->n, 4};
  const int32_t t0 = kiln_model_add_tensor(m, "box_encodings", dt[0], 3, enc_shape,
                                           dt[0] == KILN_F32 ? NULL : &q[0], NULL, &err);
  const int32_t t1 = kiln_model_add_tensor(m, "class_predictions", dt[1], 3, cls_shape,
                                           dt[1] == KILN_F32 ? NULL : &q[1], NULL, &err);
  const int32_t t2 = kiln_model_add_tensor(m, "anchors", dt[2], 2, anc_shape,
                                           dt[2] == KILN_F32 ? NULL : &q[2], pm->anchors, &err);
  const int32_t s = pm->slots;
  const int32_t box_shape[3] = {1, s, 4}, vec_shape[2] = {1, s}, one[1] = {1};
  const int32_t o0 = kiln_model_add_tensor(m, "TFLite_Detection_PostProcess", pm->out_dtype, 3,
                                           box_shape, NULL, NULL, &err);
  const int32_t o1 = kiln_model_add_tensor(m, "TFLite_Detection_PostProcess:1", KILN_F32, 2,
                                           vec_shape, NULL, NULL, &err);
  const int32_t o2 = kiln_model_add_tensor(m, "TFLite_Detection_PostProcess:2", KILN_F32, 2,
                                           vec_shape, NULL, NULL, &err);
  const int32_t o3 = kiln_model_add_tensor(m, "TFLite_Detection_PostProcess:3", KILN_F32, 1, one,
                                           NULL, NULL, &err);
  const int32_t ins[3] = {t0, t1, t2}, outs[4] = {o0, o1, o2, o3};
  if (t0 < 0 || t1 < 0 || t2 < 0 || o0 < 0 || o1 < 0 || o2 < 0 || o3 < 0 ||
      kiln_model_add_op(m, KILN_OP_CUSTOM, "TFLite_Detection_PostProcess", ins, 3, outs, 4, NULL,
                        options, options_bytes, &err) < 0 ||
      kiln_model_set_io(m, ins, pm->anchors ? 2 : 3, outs, 4, &err) != KILN_OK) {
    kiln_model_free(m);
    return NULL;
  }
  return m;
}

typedef struct pp_result {
  float *boxes, *classes, *scores;
  int32_t count;
} pp_result;

/* Runs the model on enc and cls (raw bytes of the model's input types);
 * copies the outputs into res (arrays of pm->slots entries). */
static kiln_status run(const pp_model *pm, const uint8_t *options, size_t options_bytes,
                       const void *enc, const void *cls, pp_result *res, kiln_error *err) {
  kiln_model *m = build(pm, options, options_bytes);
  if (!m) return kiln_fail(err, KILN_ERR_INTERNAL, "test model build failed");
  kiln_interp *it = NULL;
  kiln_status st = kiln_interp_create(m, NULL, &it, err);
  if (st == KILN_OK) {
    kiln_tensor_view in0 = kiln_interp_input(it, 0), in1 = kiln_interp_input(it, 1);
    memcpy(in0.data, enc, in0.bytes);
    memcpy(in1.data, cls, in1.bytes);
    st = kiln_interp_invoke(it, err);
  }
  if (st == KILN_OK && res) {
    const size_t s = (size_t)pm->slots;
    memcpy(res->boxes, kiln_interp_output(it, 0).data, s * 4 * sizeof(float));
    memcpy(res->classes, kiln_interp_output(it, 1).data, s * sizeof(float));
    memcpy(res->scores, kiln_interp_output(it, 2).data, s * sizeof(float));
    res->count = (int32_t)((const float *)kiln_interp_output(it, 3).data)[0];
  }
  kiln_interp_free(it);
  kiln_model_free(m);
  return st;
}

/* ---- Outputs recorded from LiteRT 2.3.0 (tests/tools-style ad hoc run,
 * BUILTIN resolver, one thread; zero encodings so boxes are the anchors) ---- */

static void test_litert_fast_nms_ties(void) {
  static const float anchors[24] = {0.1f,  0.5f, 0.1f, 0.1f, 0.25f, 0.5f, 0.1f, 0.1f,
                                    0.4f,  0.5f, 0.1f, 0.1f, 0.55f, 0.5f, 0.1f, 0.1f,
                                    0.7f,  0.5f, 0.1f, 0.1f, 0.85f, 0.5f, 0.1f, 0.1f};
  static const float scores[42] = {
      0.0f, 0.5f, 0.5f, 0.9f, 0.5f, 0.5f, 0.1f, 0.0f, 0.3f, 0.3f, 0.3f, 0.3f, 0.3f, 0.3f,
      0.9f, 0.2f, 0.7f, 0.7f, 0.2f, 0.7f, 0.7f, 0.0f, 0.6f, 0.1f, 0.6f, 0.6f, 0.1f, 0.6f,
      0.0f, 0.8f, 0.8f, 0.8f, 0.8f, 0.8f, 0.8f, 0.0f, 0.1f, 0.2f, 0.3f, 0.3f, 0.2f, 0.1f};
  static const float enc[24] = {0};
  const pp_options o = {5, 4, 100, 6, false, 0.25f, 0.5f};
  size_t ob = 0;
  uint8_t *opts = write_options(&o, NULL, NULL, &ob);
  REQUIRE(opts);
  const pp_model pm = {6, 7, 4, KILN_F32, KILN_F32, KILN_F32, KILN_F32, {0}, {0}, anchors, 20};
  float boxes[80], classes[20], sc[20];
  pp_result r = {boxes, classes, sc, 0};
  kiln_error err;
  REQUIRE(run(&pm, opts, ob, enc, scores, &r, &err) == KILN_OK);
  static const float want_classes[20] = {2, 0, 1, 3, 1, 3, 0, 2, 4, 1, 5, 2, 0, 3, 5, 2, 1, 3, 0, 2};
  static const float want_scores[20] = {0.9f, 0.5f, 0.5f, 0.5f, 0.8f, 0.8f, 0.8f, 0.8f, 0.7f, 0.7f,
                                        0.7f, 0.7f, 0.6f, 0.6f, 0.6f, 0.6f, 0.3f, 0.3f, 0.3f, 0.3f};
  static const float want_ymin[5] = {0.05f, 0.65f, 0.35f, 0.5f, 0.2f};
  CHECK(r.count == 5);
  for (int i = 0; i < 20; i++) {
    CHECK_MSG(classes[i] == want_classes[i], "slot %d: class %g, LiteRT %g", i, (double)classes[i],
              (double)want_classes[i]);
    CHECK(sc[i] == want_scores[i]);
    CHECK(boxes[4 * i] == want_ymin[i / 4]);
  }
  kiln_free(opts);
}

static void test_litert_regular_nms_ties(void) {
  static const float anchors[16] = {0.2f, 0.2f, 0.2f, 0.2f, 0.21f, 0.2f, 0.2f, 0.2f,
                                    0.6f, 0.6f, 0.2f, 0.2f, 0.8f,  0.2f, 0.1f, 0.1f};
  static const float scores[16] = {0.0f, 0.5f, 0.7f, 0.5f, 0.0f, 0.7f, 0.7f, 0.5f,
                                   0.0f, 0.5f, 0.5f, 0.5f, 0.0f, 0.7f, 0.2f, 0.9f};
  static const float enc[16] = {0};
  const pp_options o = {6, 1, 2, 3, true, 0.4f, 0.5f};
  size_t ob = 0;
  uint8_t *opts = write_options(&o, NULL, NULL, &ob);
  REQUIRE(opts);
  const pp_model pm = {4, 4, 4, KILN_F32, KILN_F32, KILN_F32, KILN_F32, {0}, {0}, anchors, 6};
  float boxes[24], classes[6], sc[6];
  pp_result r = {boxes, classes, sc, 0};
  kiln_error err;
  REQUIRE(run(&pm, opts, ob, enc, scores, &r, &err) == KILN_OK);
  static const float want_classes[6] = {2, 0, 0, 1, 1, 2};
  static const float want_scores[6] = {0.9f, 0.7f, 0.7f, 0.7f, 0.5f, 0.5f};
  static const float want_ymin[6] = {0.75f, 0.11f, 0.75f, 0.1f, 0.5f, 0.1f};
  CHECK(r.count == 6);
  for (int i = 0; i < 6; i++) {
    CHECK_MSG(classes[i] == want_classes[i] && sc[i] == want_scores[i] &&
                  fabsf(boxes[4 * i] - want_ymin[i]) < 1e-7f,
              "slot %d: class %g score %g ymin %g", i, (double)classes[i], (double)sc[i],
              (double)boxes[4 * i]);
  }
  kiln_free(opts);
}

/* ---- Random inputs against the naive definition ---- */

static float naive_iou(const float *a, const float *b) {
  const float area_a = (a[2] - a[0]) * (a[3] - a[1]), area_b = (b[2] - b[0]) * (b[3] - b[1]);
  if (area_a <= 0 || area_b <= 0) return 0.0f;
  const float ih = fminf(a[2], b[2]) - fmaxf(a[0], b[0]);
  const float iw = fminf(a[3], b[3]) - fmaxf(a[1], b[1]);
  const float inter = (ih > 0 ? ih : 0.0f) * (iw > 0 ? iw : 0.0f);
  const float sum = area_a + area_b;
  return inter / (sum - inter);
}

/* Fast NMS with several classes per detection, checked the naive way:
 * which anchors survive (best-class score, greedy), and per kept anchor the
 * classes in descending score order (order among equal scores unchecked:
 * it is libstdc++'s heap order, covered by the LiteRT case above). */
static void test_fast_multi_class_random(void) {
  test_rng rng = {31};
  for (int iter = 0; iter < 120; iter++) {
    const int32_t n = test_rand_int(&rng, 1, 40), classes = test_rand_int(&rng, 1, 6);
    const int32_t cb = classes + 1, mcpd = test_rand_int(&rng, 1, 4);
    const int32_t max_det = test_rand_int(&rng, 1, 8);
    const pp_options o = {max_det, mcpd, 100, classes, false,
                          (float)test_rand_int(&rng, 0, 3) / 8.0f, 0.5f};
    float *anchors = malloc(sizeof(float) * 4 * (size_t)n);
    float *enc = malloc(sizeof(float) * 4 * (size_t)n);
    float *scores = malloc(sizeof(float) * (size_t)(n * cb));
    float *decoded = malloc(sizeof(float) * 4 * (size_t)n);
    const int32_t slots = max_det * mcpd;
    float *ob = malloc(sizeof(float) * 4 * (size_t)slots), *oc = malloc(sizeof(float) * (size_t)slots);
    float *os = malloc(sizeof(float) * (size_t)slots);
    REQUIRE(anchors && enc && scores && decoded && ob && oc && os);
    for (int32_t a = 0; a < n; a++) {
      anchors[4 * a + 0] = (float)test_rand_int(&rng, 1, 9) / 10.0f;
      anchors[4 * a + 1] = (float)test_rand_int(&rng, 1, 9) / 10.0f;
      anchors[4 * a + 2] = anchors[4 * a + 3] = (float)test_rand_int(&rng, 1, 3) / 10.0f;
      for (int k = 0; k < 4; k++) enc[4 * a + k] = test_rand_float(&rng, -1.0f, 1.0f);
      for (int32_t k = 0; k < cb; k++) scores[a * cb + k] = (float)test_rand_int(&rng, 0, 8) / 8.0f;
    }
    size_t obytes = 0;
    uint8_t *opts = write_options(&o, NULL, NULL, &obytes);
    const pp_model pm = {n, cb, 4, KILN_F32, KILN_F32, KILN_F32, KILN_F32, {0}, {0}, anchors, slots};
    pp_result r = {ob, oc, os, 0};
    kiln_error err;
    REQUIRE(opts && run(&pm, opts, obytes, enc, scores, &r, &err) == KILN_OK);
    kiln_detect_config cfg = kiln_detect_config_default300();
    kiln_detect_decode_boxes(enc, anchors, n, &cfg, decoded);
    /* Naive: best non-background score per anchor, candidates by (score
     * desc, anchor asc), greedy. */
    int32_t kept[64], n_kept = 0;
    bool used[64] = {false};
    for (;;) {
      int32_t best = -1;
      float best_s = 0;
      for (int32_t a = 0; a < n; a++) {
        if (used[a]) continue;
        float s = scores[a * cb + 1];
        for (int32_t k = 2; k < cb; k++) s = scores[a * cb + k] > s ? scores[a * cb + k] : s;
        if (s < o.score_threshold) continue;
        if (best < 0 || s > best_s) {
          best = a;
          best_s = s;
        }
      }
      if (best < 0 || n_kept == max_det) break;
      used[best] = true;
      bool keep = true;
      for (int32_t j = 0; j < n_kept && keep; j++)
        keep = naive_iou(decoded + 4 * best, decoded + 4 * kept[j]) <= o.iou_threshold;
      if (keep) kept[n_kept++] = best;
    }
    CHECK_MSG(r.count == n_kept, "iter %d: count %d, naive %d", iter, (int)r.count, (int)n_kept);
    const int32_t ncat = mcpd < classes ? mcpd : classes;
    for (int32_t d = 0; d < n_kept && d < r.count; d++) {
      const int32_t a = kept[d];
      float prev = INFINITY;
      bool seen[8] = {false};
      for (int32_t c = 0; c < mcpd; c++) {
        const int32_t slot = d * mcpd + c;
        if (c >= ncat) {
          CHECK(oc[slot] == 0 && os[slot] == 0);
          continue;
        }
        CHECK(memcmp(ob + 4 * slot, decoded + 4 * a, 4 * sizeof(float)) == 0);
        const int32_t k = (int32_t)oc[slot];
        REQUIRE(k >= 0 && k < classes && !seen[k]);
        seen[k] = true;
        CHECK(os[slot] == scores[a * cb + 1 + k] && os[slot] <= prev);
        prev = os[slot];
        /* No class left out scores higher than the last one listed. */
        if (c == ncat - 1) {
          for (int32_t j = 0; j < classes; j++)
            if (!seen[j]) CHECK(scores[a * cb + 1 + j] <= prev);
        }
      }
    }
    for (int32_t slot = r.count * mcpd; slot < slots; slot++) CHECK(oc[slot] == 0 && os[slot] == 0);
    free(anchors);
    free(enc);
    free(scores);
    free(decoded);
    free(ob);
    free(oc);
    free(os);
    kiln_free(opts);
  }
}

/* uint8 and int8 inputs give exactly what the float path gives on the
 * dequantized values ((q - zero point) * scale in float). */
static void test_quantized_inputs(void) {
  test_rng rng = {5};
  for (int iter = 0; iter < 40; iter++) {
    const bool s8 = iter & 1;
    const int32_t n = test_rand_int(&rng, 1, 30), classes = test_rand_int(&rng, 1, 5);
    const int32_t cb = classes + (iter % 3 ? 1 : 0), width = iter % 4 == 0 ? 6 : 4;
    const kiln_dtype qt = s8 ? KILN_I8 : KILN_U8;
    const float qs[3] = {0.05f, 1.0f / 255.0f, 1.0f / 255.0f};
    const int32_t qz[3] = {s8 ? 3 : 128, s8 ? -128 : 0, s8 ? -128 : 0};
    uint8_t qenc[30 * 6], qcls[30 * 6], qanc[30 * 4];
    float fenc[30 * 6], fcls[30 * 6], fanc[30 * 4];
    for (int32_t i = 0; i < n * width; i++) qenc[i] = (uint8_t)test_rand_u32(&rng);
    for (int32_t i = 0; i < n * cb; i++) qcls[i] = (uint8_t)(test_rand_int(&rng, 0, 4) * 60);
    for (int32_t a = 0; a < n; a++) {
      for (int k = 0; k < 2; k++) qanc[4 * a + k] = (uint8_t)test_rand_u32(&rng);
      for (int k = 2; k < 4; k++) {
        const int32_t v = test_rand_int(&rng, 10, 100) + qz[2];
        qanc[4 * a + k] = (uint8_t)(s8 ? (uint8_t)(int8_t)v : (uint8_t)v);
      }
    }
#define DQ(buf, i, which) \
  (((float)(s8 ? (int32_t)(int8_t)(buf)[i] : (int32_t)(buf)[i]) - (float)qz[which]) * qs[which])
    for (int32_t i = 0; i < n * width; i++) fenc[i] = DQ(qenc, i, 0);
    for (int32_t i = 0; i < n * cb; i++) fcls[i] = DQ(qcls, i, 1);
    for (int32_t i = 0; i < n * 4; i++) fanc[i] = DQ(qanc, i, 2);
#undef DQ
    const pp_options o = {5, 2, 3, classes, iter % 5 < 2, 0.2f, 0.5f};
    size_t obytes = 0;
    uint8_t *opts = write_options(&o, NULL, NULL, &obytes);
    REQUIRE(opts);
    pp_model pq = {n, cb, width, qt, qt, qt, KILN_F32, {qs[0], qs[1], qs[2]}, {qz[0], qz[1], qz[2]},
                   qanc, 10};
    pp_model pf = {n, cb, width, KILN_F32, KILN_F32, KILN_F32, KILN_F32, {0}, {0}, fanc, 10};
    float b1[40], c1[10], s1[10], b2[40], c2[10], s2[10];
    pp_result r1 = {b1, c1, s1, 0}, r2 = {b2, c2, s2, 0};
    kiln_error err;
    REQUIRE(run(&pq, opts, obytes, qenc, qcls, &r1, &err) == KILN_OK);
    REQUIRE(run(&pf, opts, obytes, fenc, fcls, &r2, &err) == KILN_OK);
    CHECK(r1.count == r2.count);
    CHECK(memcmp(b1, b2, sizeof b1) == 0 && memcmp(c1, c2, sizeof c1) == 0 &&
          memcmp(s1, s2, sizeof s1) == 0);
    kiln_free(opts);
  }
}

/* ---- Refusals ---- */

static kiln_status try_prepare(const pp_model *pm, const pp_options *o, const char *skip,
                               const kiln_flex_entry *extra, kiln_error *err) {
  size_t obytes = 0;
  uint8_t *opts = write_options(o, skip, extra, &obytes);
  kiln_model *m = build(pm, opts, obytes);
  kiln_free(opts);
  if (!m) return kiln_fail(err, KILN_ERR_INTERNAL, "test model build failed");
  kiln_interp *it = NULL;
  kiln_status st = kiln_interp_create(m, NULL, &it, err);
  kiln_interp_free(it);
  kiln_model_free(m);
  return st;
}

static void expect_refusal(const pp_model *pm, const pp_options *o, const char *skip,
                           const kiln_flex_entry *extra, const char *text) {
  kiln_error err;
  memset(&err, 0, sizeof err);
  const kiln_status st = try_prepare(pm, o, skip, extra, &err);
  CHECK_MSG(st != KILN_OK && strstr(err.msg, text) && strstr(err.msg, "TFLite_Detection_PostProcess"),
            "expected a refusal mentioning '%s', got status %d: %s", text, (int)st, err.msg);
}

static void test_refusals(void) {
  static const float anchors[8] = {0.5f, 0.5f, 0.2f, 0.2f, 0.3f, 0.3f, 0.1f, 0.1f};
  static const float bad_anchors[8] = {0.5f, 0.5f, 0.2f, 0.2f, 0.3f, 0.3f, -0.1f, 0.1f};
  const pp_options good = {3, 1, 100, 2, false, 0.1f, 0.5f};
  const pp_model pm = {2, 3, 4, KILN_F32, KILN_F32, KILN_F32, KILN_F32, {0}, {0}, anchors, 3};
  kiln_error err;
  CHECK(try_prepare(&pm, &good, NULL, NULL, &err) == KILN_OK);
  /* TF-internal attributes are ignored, as TFLite ignores them. */
  const kiln_flex_entry internal = {"_output_quantized", KILN_FLEX_ENTRY_BOOL, 0, 0, true};
  CHECK(try_prepare(&pm, &good, NULL, &internal, &err) == KILN_OK);
  /* Without detections_per_class / use_regular_nms the defaults apply. */
  CHECK(try_prepare(&pm, &good, "detections_per_class", NULL, &err) == KILN_OK);
  CHECK(try_prepare(&pm, &good, "use_regular_nms", NULL, &err) == KILN_OK);

  expect_refusal(&pm, &good, "num_classes", NULL, "option num_classes is missing");
  expect_refusal(&pm, &good, "y_scale", NULL, "option y_scale is missing");
  const kiln_flex_entry unknown = {"nms_iou_treshold", KILN_FLEX_ENTRY_FLOAT, 0, 0.5, false};
  expect_refusal(&pm, &good, NULL, &unknown, "unknown option 'nms_iou_treshold'");
  const kiln_flex_entry float_int = {"max_detections", KILN_FLEX_ENTRY_FLOAT, 0, 2.5, false};
  expect_refusal(&pm, &good, NULL, &float_int, "not an integer");
  const kiln_flex_entry zero_scale = {"h_scale", KILN_FLEX_ENTRY_FLOAT, 0, 0.0, false};
  expect_refusal(&pm, &good, NULL, &zero_scale, "h_scale");
  pp_options o = good;
  o.iou_threshold = 0.0f;
  expect_refusal(&pm, &o, NULL, NULL, "nms_iou_threshold");
  o = good;
  o.iou_threshold = 1.5f;
  expect_refusal(&pm, &o, NULL, NULL, "not in (0, 1]");
  o = good;
  o.max_detections = 0;
  expect_refusal(&pm, &o, NULL, NULL, "max_detections 0");
  o = good;
  o.use_regular_nms = true;
  o.detections_per_class = 0;
  expect_refusal(&pm, &o, NULL, NULL, "detections_per_class");
  o = good;
  o.num_classes = 4;
  expect_refusal(&pm, &o, NULL, NULL, "3 columns; num_classes 4");

  pp_model p2 = pm;
  p2.anchors = bad_anchors;
  expect_refusal(&p2, &good, NULL, NULL, "negative size");
  p2 = pm;
  p2.anchors = NULL;
  expect_refusal(&p2, &good, NULL, NULL, "must be a constant");
  p2 = pm;
  p2.enc_dtype = KILN_I16;
  p2.q_scale[0] = 1.0f;
  expect_refusal(&p2, &good, NULL, NULL, "supported: float32, uint8, int8");
  p2 = pm;
  p2.out_dtype = KILN_I32;
  expect_refusal(&p2, &good, NULL, NULL, "expected float32");
  p2 = pm;
  p2.slots = 4;
  expect_refusal(&p2, &good, NULL, NULL, "declared");
  p2 = pm;
  p2.enc_width = 3;
  expect_refusal(&p2, &good, NULL, NULL, "E >= 4");

  /* Options that are not a flexbuffer at all. */
  static const uint8_t junk[5] = {1, 2, 3, 4, 5};
  kiln_model *m = build(&pm, junk, sizeof junk);
  REQUIRE(m);
  kiln_interp *it = NULL;
  CHECK(kiln_interp_create(m, NULL, &it, &err) == KILN_ERR_FORMAT);
  CHECK_MSG(strstr(err.msg, "custom options: flexbuffer") != NULL, "%s", err.msg);
  kiln_interp_free(it);
  kiln_model_free(m);
  m = build(&pm, NULL, 0);
  REQUIRE(m);
  CHECK(kiln_interp_create(m, NULL, &it, &err) == KILN_ERR_FORMAT);
  CHECK(strstr(err.msg, "no custom options") != NULL);
  kiln_interp_free(it);
  kiln_model_free(m);
}

int main(void) {
  RUN(test_litert_fast_nms_ties);
  RUN(test_litert_regular_nms_ties);
  RUN(test_fast_multi_class_random);
  RUN(test_quantized_inputs);
  RUN(test_refusals);
  return test_summary();
}
