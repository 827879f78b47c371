/*
 * Tests of kiln_detect_add_postprocess (vision/detect_model.c): on a small
 * raw-output SSD model with the shared SSD's 1917 anchors, the added
 * LOGISTIC + TFLite_Detection_PostProcess tail gives exactly what
 * kiln_detect_decode gives on the raw outputs (class-aware and agnostic);
 * the graph's new tensors, names and custom options (bytes equal to what
 * flexbuffers' Builder writes in TF's converter order); a serialize/parse
 * round trip; and refusals.
 */
#include <math.h>
#include <string.h>

#include "kiln/detect.h"
#include "kiln/interp.h"
#include "kiln/model.h"
#include "testutil.h"

/* Python flexbuffers.Builder, TF converter order: max_detections=10,
 * max_classes_per_detection=1, num_classes=23, nms_score_threshold=0.6f,
 * nms_iou_threshold=0.4f, y/x_scale=10, h/w_scale=5, use_regular_nms=0. */
static const uint8_t default_options[217] = {
    0x6d, 0x61, 0x78, 0x5f, 0x64, 0x65, 0x74, 0x65, 0x63, 0x74, 0x69, 0x6f, 0x6e, 0x73, 0x00, 0x6d,
    0x61, 0x78, 0x5f, 0x63, 0x6c, 0x61, 0x73, 0x73, 0x65, 0x73, 0x5f, 0x70, 0x65, 0x72, 0x5f, 0x64,
    0x65, 0x74, 0x65, 0x63, 0x74, 0x69, 0x6f, 0x6e, 0x00, 0x6e, 0x75, 0x6d, 0x5f, 0x63, 0x6c, 0x61,
    0x73, 0x73, 0x65, 0x73, 0x00, 0x6e, 0x6d, 0x73, 0x5f, 0x73, 0x63, 0x6f, 0x72, 0x65, 0x5f, 0x74,
    0x68, 0x72, 0x65, 0x73, 0x68, 0x6f, 0x6c, 0x64, 0x00, 0x6e, 0x6d, 0x73, 0x5f, 0x69, 0x6f, 0x75,
    0x5f, 0x74, 0x68, 0x72, 0x65, 0x73, 0x68, 0x6f, 0x6c, 0x64, 0x00, 0x79, 0x5f, 0x73, 0x63, 0x61,
    0x6c, 0x65, 0x00, 0x78, 0x5f, 0x73, 0x63, 0x61, 0x6c, 0x65, 0x00, 0x68, 0x5f, 0x73, 0x63, 0x61,
    0x6c, 0x65, 0x00, 0x77, 0x5f, 0x73, 0x63, 0x61, 0x6c, 0x65, 0x00, 0x75, 0x73, 0x65, 0x5f, 0x72,
    0x65, 0x67, 0x75, 0x6c, 0x61, 0x72, 0x5f, 0x6e, 0x6d, 0x73, 0x00, 0x0a, 0x21, 0x7e, 0x8e, 0x46,
    0x5b, 0x68, 0x17, 0x20, 0x31, 0x3a, 0x00, 0x00, 0x0c, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00,
    0x0a, 0x00, 0x00, 0x00, 0x00, 0x00, 0xa0, 0x40, 0x01, 0x00, 0x00, 0x00, 0x0a, 0x00, 0x00, 0x00,
    0xcd, 0xcc, 0xcc, 0x3e, 0x9a, 0x99, 0x19, 0x3f, 0x17, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0xa0, 0x40, 0x00, 0x00, 0x20, 0x41, 0x00, 0x00, 0x20, 0x41, 0x0e, 0x06, 0x06, 0x0e,
    0x0e, 0x06, 0x06, 0x0e, 0x0e, 0x0e, 0x32, 0x26, 0x01};

#define N_ANCHORS 1917
#define N_CLASSES 24

/* Two graph inputs reshaped (unchanged) into the raw outputs a TF SSD
 * export names raw_outputs/box_encodings and raw_outputs/class_predictions. */
static kiln_model *raw_model(int32_t n, int32_t classes) {
  kiln_model *m = NULL;
  kiln_error err;
  if (kiln_model_new(&m, &err) != KILN_OK) return NULL;
  const int32_t enc_shape[3] = {1, n, 4}, cls_shape[3] = {1, n, classes};
  const int32_t in0 = kiln_model_add_tensor(m, "enc_in", KILN_F32, 3, enc_shape, NULL, NULL, &err);
  const int32_t in1 = kiln_model_add_tensor(m, "logits_in", KILN_F32, 3, cls_shape, NULL, NULL, &err);
  const int32_t out0 = kiln_model_add_tensor(m, "raw_outputs/box_encodings", KILN_F32, 3,
                                             enc_shape, NULL, NULL, &err);
  const int32_t out1 = kiln_model_add_tensor(m, "raw_outputs/class_predictions", KILN_F32, 3,
                                             cls_shape, NULL, NULL, &err);
  kiln_op_options o;
  memset(&o, 0, sizeof o);
  o.type = KILN_OPTS_RESHAPE;
  o.new_shape_count = 3;
  memcpy(o.new_shape, enc_shape, sizeof enc_shape);
  const int32_t ins[2] = {in0, in1}, outs[2] = {out0, out1};
  if (kiln_model_add_op(m, KILN_OP_RESHAPE, NULL, &in0, 1, &out0, 1, &o, NULL, 0, &err) < 0)
    goto fail;
  memcpy(o.new_shape, cls_shape, sizeof cls_shape);
  if (kiln_model_add_op(m, KILN_OP_RESHAPE, NULL, &in1, 1, &out1, 1, &o, NULL, 0, &err) < 0 ||
      kiln_model_set_io(m, ins, 2, outs, 2, &err) != KILN_OK)
    goto fail;
  return m;
fail:
  kiln_model_free(m);
  return NULL;
}

/* Inputs with a few strong detections among weak ones. Logits stay inside
 * (-9, 16.6), where TFLite's float LOGISTIC is exactly 1 / (1 + exp(-x)). */
static void make_inputs(test_rng *rng, float *enc, float *logits) {
  for (int32_t i = 0; i < N_ANCHORS * 4; i++) enc[i] = test_rand_float(rng, -1.5f, 1.5f);
  for (int32_t i = 0; i < N_ANCHORS * N_CLASSES; i++) {
    logits[i] = test_rand_float(rng, -8.0f, -1.0f);
    if (test_rand_int(rng, 0, 400) == 0) logits[i] = test_rand_float(rng, 0.0f, 8.0f);
  }
}

static kiln_status run_postprocessed(const kiln_model *m, const float *enc, const float *logits,
                                     int32_t slots, kiln_detection *d, int32_t *n,
                                     kiln_error *err) {
  kiln_interp *it = NULL;
  kiln_status st = kiln_interp_create(m, NULL, &it, err);
  if (st != KILN_OK) return st;
  kiln_tensor_view in0 = kiln_interp_input(it, 0), in1 = kiln_interp_input(it, 1);
  memcpy(in0.data, enc, in0.bytes);
  memcpy(in1.data, logits, in1.bytes);
  st = kiln_interp_invoke(it, err);
  if (st == KILN_OK) {
    st = kiln_detect_read_postprocessed(kiln_interp_output(it, 0).data,
                                        kiln_interp_output(it, 1).data,
                                        kiln_interp_output(it, 2).data,
                                        kiln_interp_output(it, 3).data, slots, 1, 1, d, slots, n,
                                        err);
  }
  kiln_interp_free(it);
  return st;
}

static bool same_detections(const kiln_detection *a, int32_t na, const kiln_detection *b,
                            int32_t nb) {
  if (na != nb) return false;
  for (int32_t i = 0; i < na; i++) {
    if (a[i].class_id != b[i].class_id || a[i].score != b[i].score || a[i].ymin != b[i].ymin ||
        a[i].xmin != b[i].xmin || a[i].ymax != b[i].ymax || a[i].xmax != b[i].xmax)
      return false;
  }
  return true;
}

static void test_matches_decode(void) {
  float *enc = malloc(sizeof(float) * N_ANCHORS * 4);
  float *logits = malloc(sizeof(float) * N_ANCHORS * N_CLASSES);
  REQUIRE(enc && logits);
  float *anchors = NULL;
  int32_t n_anchors = 0;
  kiln_error err;
  kiln_detect_config cfg = kiln_detect_config_default300();
  REQUIRE(kiln_ssd_anchors_generate(&cfg.anchors, &anchors, &n_anchors, &err) == KILN_OK);
  test_rng rng = {8};
  for (int variant = 0; variant < 4; variant++) {
    cfg = kiln_detect_config_default300();
    cfg.class_agnostic = variant % 2 == 0;
    cfg.max_detections = variant < 2 ? 10 : 40;
    cfg.score_threshold = variant < 2 ? 0.6f : 0.5f;
    cfg.detections_per_class = variant == 3 ? 3 : 100;
    make_inputs(&rng, enc, logits);
    kiln_model *m = raw_model(N_ANCHORS, N_CLASSES);
    REQUIRE(m);
    const int32_t ops_before = m->n_ops, tensors_before = m->n_tensors;
    REQUIRE(kiln_detect_add_postprocess(m, &cfg, &err) == KILN_OK);
    CHECK(m->n_ops == ops_before + 2 && m->n_tensors == tensors_before + 6);
    kiln_detection got[40], want[40];
    int32_t n_got = 0, n_want = 0;
    REQUIRE(run_postprocessed(m, enc, logits, cfg.max_detections, got, &n_got, &err) == KILN_OK);
    REQUIRE(kiln_detect_decode(enc, logits, N_ANCHORS, N_CLASSES, anchors, &cfg, want, 40, &n_want,
                               &err) == KILN_OK);
    CHECK_MSG(n_want >= 3, "variant %d: only %d detections", variant, (int)n_want);
    CHECK_MSG(same_detections(got, n_got, want, n_want), "variant %d: %d vs %d detections",
              variant, (int)n_got, (int)n_want);

    /* Through the writer and reader: same model, same results. */
    uint8_t *bytes = NULL;
    size_t size = 0;
    REQUIRE(kiln_model_serialize(m, &bytes, &size, &err) == KILN_OK);
    kiln_model *back = NULL;
    REQUIRE(kiln_model_parse(bytes, size, true, "round trip", &back, &err) == KILN_OK);
    kiln_detection again[40];
    int32_t n_again = 0;
    REQUIRE(run_postprocessed(back, enc, logits, cfg.max_detections, again, &n_again, &err) ==
            KILN_OK);
    CHECK(same_detections(again, n_again, got, n_got));
    kiln_model_free(back);
    kiln_free(bytes);
    kiln_model_free(m);
  }
  kiln_free(anchors);
  free(enc);
  free(logits);
}

static void test_graph_shape(void) {
  kiln_model *m = raw_model(N_ANCHORS, N_CLASSES);
  REQUIRE(m);
  kiln_error err;
  const kiln_detect_config cfg = kiln_detect_config_default300();
  REQUIRE(kiln_detect_add_postprocess(m, &cfg, &err) == KILN_OK);
  REQUIRE(m->n_outputs == 4 && m->n_inputs == 2);
  static const char *names[4] = {"TFLite_Detection_PostProcess", "TFLite_Detection_PostProcess:1",
                                 "TFLite_Detection_PostProcess:2",
                                 "TFLite_Detection_PostProcess:3"};
  for (int i = 0; i < 4; i++) {
    const kiln_tensor *t = &m->tensors[m->outputs[i]];
    CHECK(strcmp(t->name, names[i]) == 0 && t->dtype == KILN_F32);
  }
  CHECK(m->tensors[m->outputs[0]].rank == 3 && m->tensors[m->outputs[0]].shape[1] == 10 &&
        m->tensors[m->outputs[0]].shape[2] == 4);
  CHECK(m->tensors[m->outputs[3]].rank == 1 && m->tensors[m->outputs[3]].shape[0] == 1);
  const kiln_op *logistic = &m->ops[m->n_ops - 2], *pp = &m->ops[m->n_ops - 1];
  CHECK(logistic->code == KILN_OP_LOGISTIC);
  CHECK(strcmp(m->tensors[logistic->outputs[0]].name, "convert_scores") == 0);
  CHECK(strcmp(m->tensors[logistic->inputs[0]].name, "raw_outputs/class_predictions") == 0);
  CHECK(pp->code == KILN_OP_CUSTOM && strcmp(pp->custom_code, "TFLite_Detection_PostProcess") == 0);
  REQUIRE(pp->n_inputs == 3 && pp->n_outputs == 4);
  CHECK(strcmp(m->tensors[pp->inputs[0]].name, "raw_outputs/box_encodings") == 0);
  CHECK(pp->inputs[1] == logistic->outputs[0]);
  const kiln_tensor *anchors = &m->tensors[pp->inputs[2]];
  CHECK(strcmp(anchors->name, "anchors") == 0 && anchors->data && anchors->rank == 2 &&
        anchors->shape[0] == N_ANCHORS && anchors->shape[1] == 4);
  float *want = NULL;
  int32_t n = 0;
  REQUIRE(kiln_ssd_anchors_generate(&cfg.anchors, &want, &n, &err) == KILN_OK);
  CHECK(anchors->data_bytes == sizeof(float) * 4 * N_ANCHORS &&
        memcmp(anchors->data, want, anchors->data_bytes) == 0);
  kiln_free(want);
  CHECK_MSG(pp->custom_options_bytes == sizeof default_options &&
                memcmp(pp->custom_options, default_options, sizeof default_options) == 0,
            "custom options: %zu bytes", pp->custom_options_bytes);
  /* Adding it twice is refused: the model no longer has raw outputs. */
  CHECK(kiln_detect_add_postprocess(m, &cfg, &err) == KILN_ERR_INVALID_ARG);
  CHECK(strstr(err.msg, "4 outputs") != NULL);
  kiln_model_free(m);
}

static void test_score_functions(void) {
  kiln_error err;
  kiln_detect_config cfg = kiln_detect_config_default300();
  cfg.score_fn = KILN_SCORE_SOFTMAX;
  kiln_model *m = raw_model(N_ANCHORS, N_CLASSES);
  REQUIRE(m);
  REQUIRE(kiln_detect_add_postprocess(m, &cfg, &err) == KILN_OK);
  const kiln_op *sm = &m->ops[m->n_ops - 2];
  CHECK(sm->code == KILN_OP_SOFTMAX && sm->options.beta == 1.0f);
  kiln_interp *it = NULL;
  CHECK_MSG(kiln_interp_create(m, NULL, &it, &err) == KILN_OK, "%s", err.msg);
  kiln_interp_free(it);
  kiln_model_free(m);

  cfg.score_fn = KILN_SCORE_NONE;
  m = raw_model(N_ANCHORS, N_CLASSES);
  REQUIRE(m);
  const int32_t ops_before = m->n_ops;
  REQUIRE(kiln_detect_add_postprocess(m, &cfg, &err) == KILN_OK);
  CHECK(m->n_ops == ops_before + 1);
  CHECK(strcmp(m->tensors[m->ops[m->n_ops - 1].inputs[1]].name,
               "raw_outputs/class_predictions") == 0);
  kiln_model_free(m);
}

static void test_refusals(void) {
  kiln_error err;
  kiln_detect_config cfg = kiln_detect_config_default300();
  kiln_model *m = raw_model(100, 5);
  REQUIRE(m);
  const int32_t tensors = m->n_tensors, ops = m->n_ops;
  CHECK(kiln_detect_add_postprocess(m, &cfg, &err) == KILN_ERR_INVALID_ARG);
  CHECK_MSG(strstr(err.msg, "100 anchors") && strstr(err.msg, "1917"), "%s", err.msg);
  CHECK(m->n_tensors == tensors && m->n_ops == ops && m->n_outputs == 2);
  kiln_model_free(m);

  m = raw_model(N_ANCHORS, 1);
  REQUIRE(m);
  CHECK(kiln_detect_add_postprocess(m, &cfg, &err) == KILN_ERR_INVALID_ARG);
  CHECK(strstr(err.msg, "class columns") != NULL);
  kiln_model_free(m);

  m = raw_model(N_ANCHORS, N_CLASSES);
  REQUIRE(m);
  cfg.iou_threshold = 0.0f;
  CHECK(kiln_detect_add_postprocess(m, &cfg, &err) == KILN_ERR_INVALID_ARG);
  cfg = kiln_detect_config_default300();
  cfg.h_scale = 0.0f;
  CHECK(kiln_detect_add_postprocess(m, &cfg, &err) == KILN_ERR_INVALID_ARG);
  cfg = kiln_detect_config_default300();
  const int32_t one_output = m->outputs[0];
  const int32_t inputs[2] = {m->inputs[0], m->inputs[1]};
  REQUIRE(kiln_model_set_io(m, inputs, 2, &one_output, 1, &err) == KILN_OK);
  CHECK(kiln_detect_add_postprocess(m, &cfg, &err) == KILN_ERR_INVALID_ARG);
  CHECK(strstr(err.msg, "1 outputs") != NULL);
  kiln_model_free(m);
}

/* An allocator that fails the Nth allocation from now on. */
typedef struct failing {
  int countdown;
  int failed;
} failing;

static void *fail_alloc(size_t bytes, void *ctx) {
  failing *f = ctx;
  if (f->countdown-- == 0) {
    f->failed++;
    return NULL;
  }
  return malloc(bytes);
}
static void *fail_realloc(void *ptr, size_t bytes, void *ctx) {
  failing *f = ctx;
  if (f->countdown-- == 0) {
    f->failed++;
    return NULL;
  }
  return realloc(ptr, bytes);
}
static void fail_free(void *ptr, void *ctx) {
  (void)ctx;
  free(ptr);
}

/* Every allocation add_postprocess makes fails in turn: it reports
 * KILN_ERR_NOMEM (or succeeds when the failure hits nothing), never
 * crashes or leaks (the sanitizer build checks leaks). */
static void test_allocation_failures(void) {
  const kiln_detect_config cfg = kiln_detect_config_default300();
  int nomem = 0, ok = 0;
  for (int nth = 0; nth < 200; nth++) {
    kiln_model *m = raw_model(N_ANCHORS, N_CLASSES);
    REQUIRE(m);
    failing f = {nth, 0};
    const kiln_allocator a = {fail_alloc, fail_realloc, fail_free, &f};
    kiln_set_allocator(&a);
    kiln_error err;
    const kiln_status st = kiln_detect_add_postprocess(m, &cfg, &err);
    kiln_set_allocator(NULL);
    CHECK_MSG(st == KILN_OK || st == KILN_ERR_NOMEM, "failing allocation %d: status %d: %s", nth,
              (int)st, err.msg);
    if (st == KILN_ERR_NOMEM) nomem++;
    if (st == KILN_OK) {
      ok++;
      CHECK(f.failed == 0);
    }
    kiln_model_free(m);
    if (f.failed == 0) break; /* every allocation has been failed once */
  }
  CHECK(nomem >= 3 && ok == 1);
}

int main(void) {
  RUN(test_matches_decode);
  RUN(test_allocation_failures);
  RUN(test_graph_shape);
  RUN(test_score_functions);
  RUN(test_refusals);
  return test_summary();
}
