/*
 * Tests of train/ssd_graph.c on the shared SSD: the predictor layout found
 * (maps, channels, anchors per cell, kernels, anchor offsets), the frozen
 * body's outputs, and the exported graph: outputs and shapes, unchanged box
 * predictors giving bit-identical box encodings, new class predictors
 * giving what the trained heads compute on the body's feature maps, the
 * post-processing tail on top, and the refusals for graphs that do not fit.
 */
#include <math.h>
#include <string.h>

#include "kiln/detect.h"
#include "kiln/interp.h"
#include "kiln/train.h"
#include "testutil.h"
#include "train/ssd_int.h"

#define SSD "ssd_mobilenet_v2_oidv4_fp16.tflite"

static kiln_model *load_ssd(void) {
  kiln_model *m = NULL;
  kiln_error err;
  if (kiln_model_load(test_model_path(SSD), &m, &err) != KILN_OK) {
    fprintf(stderr, "%s\n", err.msg);
    return NULL;
  }
  return m;
}

static void test_layout(void) {
  kiln_model *m = load_ssd();
  REQUIRE(m);
  ssd_layout l;
  kiln_error err;
  REQUIRE(ssd_layout_find(m, &l, &err) == KILN_OK);
  CHECK(l.n_heads == 6 && l.n_anchors == 1917 && l.n_columns == 24);
  CHECK(l.input_h == 300 && l.input_w == 300 && l.class_final_reshape == -1);
  const int32_t size[6] = {19, 10, 5, 3, 2, 1}, chans[6] = {576, 1280, 512, 256, 256, 128};
  const int32_t first[6] = {0, 1083, 1683, 1833, 1887, 1911};
  for (int k = 0; k < 6; k++) {
    const ssd_head *h = &l.heads[k];
    CHECK(h->h == size[k] && h->w == size[k] && h->c == chans[k]);
    CHECK(h->anchors_per_cell == (k == 0 ? 3 : 6));
    CHECK(h->first_anchor == first[k]);
    CHECK(h->kernel_h == 1 && h->kernel_w == 1);
    CHECK(strstr(m->tensors[m->ops[h->box_op].outputs[0]].name, "BoxEncodingPredictor"));
    CHECK(strstr(m->tensors[m->ops[h->class_op].outputs[0]].name, "ClassPredictor"));
  }
  CHECK(strcmp(m->tensors[l.box_output].name, "raw_outputs/box_encodings") == 0);
  kiln_model_free(m);
}

/* A head net as the trainer builds it: the pretrained box predictor and a
 * class predictor of `cols` columns with the engine's random init. */
static kiln_net *make_head(const kiln_model *m, const ssd_head *h, int32_t cols, uint64_t seed) {
  kiln_net *net = NULL;
  kiln_error err;
  if (kiln_net_create(h->h, h->w, h->c, &net, &err) != KILN_OK) return NULL;
  kiln_conv_spec spec = {.filters = h->anchors_per_cell * 4, .kernel_h = 1, .kernel_w = 1,
                         .padding = h->padding, .bias = true};
  kiln_net_conv(net, 0, &spec);
  spec.filters = h->anchors_per_cell * cols;
  kiln_net_conv(net, 0, &spec);
  if (kiln_net_finalize(net, 1, 1, seed, &err) != KILN_OK) {
    kiln_net_free(net);
    return NULL;
  }
  int64_t n;
  float *w = kiln_net_param(net, 1, KILN_PARAM_WEIGHT, &n);
  memcpy(w, m->tensors[m->ops[h->box_op].inputs[1]].data, (size_t)n * sizeof(float));
  float *b = kiln_net_param(net, 1, KILN_PARAM_BIAS, &n);
  memcpy(b, m->tensors[m->ops[h->box_op].inputs[2]].data, (size_t)n * sizeof(float));
  b = kiln_net_param(net, 2, KILN_PARAM_BIAS, &n);
  for (int64_t i = 0; i < n; i++) b[i] = 0.01f * (float)i;
  return net;
}

static void random_input(kiln_interp *it, uint64_t seed) {
  kiln_tensor_view in = kiln_interp_input(it, 0);
  test_rng rng = {seed};
  float *x = in.data;
  for (size_t i = 0; i < in.bytes / sizeof(float); i++) x[i] = test_rand_float(&rng, -1, 1);
}

static void test_export(void) {
  enum { COLS = 3 };
  kiln_model *base = load_ssd(), *copy = NULL, *body = NULL;
  kiln_interp *ib = NULL, *ie = NULL, *ibody = NULL;
  kiln_net *heads[KILN_SSD_MAX_LAYERS] = {0};
  kiln_error err;
  ssd_layout l;
  REQUIRE(base);
  REQUIRE(ssd_model_copy(base, &copy, &err) == KILN_OK);
  REQUIRE(ssd_layout_find(copy, &l, &err) == KILN_OK);
  for (int k = 0; k < l.n_heads; k++) {
    heads[k] = make_head(copy, &l.heads[k], COLS, 100 + (uint64_t)k);
    REQUIRE(heads[k]);
  }
  REQUIRE(ssd_model_copy(base, &body, &err) == KILN_OK);
  REQUIRE(ssd_make_body(body, &l, &err) == KILN_OK);
  CHECK(body->n_outputs == 6);
  for (int k = 0; k < 6; k++) {
    const kiln_tensor *t = &body->tensors[body->outputs[k]];
    CHECK(t->shape[1] == l.heads[k].h && t->shape[3] == l.heads[k].c);
  }
  CHECK(body->n_ops < copy->n_ops - 12); /* the 12 predictor convs and what follows are gone */
  const int32_t base_ops = copy->n_ops;
  REQUIRE(ssd_export_heads(copy, &l, heads, COLS, &err) == KILN_OK);
  CHECK(copy->n_ops == base_ops);
  REQUIRE(copy->n_outputs == 2);
  const kiln_tensor *bo = &copy->tensors[copy->outputs[0]], *co = &copy->tensors[copy->outputs[1]];
  CHECK(strcmp(bo->name, "raw_outputs/box_encodings") == 0);
  CHECK(strcmp(co->name, "raw_outputs/class_predictions") == 0);
  CHECK(bo->rank == 3 && bo->shape[1] == 1917 && bo->shape[2] == 4);
  CHECK(co->rank == 3 && co->shape[1] == 1917 && co->shape[2] == COLS);
  int64_t params_base, params_export, bytes;
  kiln_model_param_stats(base, &params_base, &bytes);
  kiln_model_param_stats(copy, &params_export, &bytes);
  /* The old class predictors (24 columns) are dropped, the new ones (3) added. */
  int64_t class_delta = 0;
  for (int k = 0; k < 6; k++)
    class_delta += (int64_t)l.heads[k].anchors_per_cell * (24 - COLS) * (l.heads[k].c + 1);
  CHECK(params_base - params_export == class_delta);

  REQUIRE(kiln_interp_create(base, NULL, &ib, &err) == KILN_OK);
  REQUIRE(kiln_interp_create(copy, NULL, &ie, &err) == KILN_OK);
  REQUIRE(kiln_interp_create(body, NULL, &ibody, &err) == KILN_OK);
  random_input(ib, 5);
  random_input(ie, 5);
  random_input(ibody, 5);
  REQUIRE(kiln_interp_invoke(ib, &err) == KILN_OK);
  REQUIRE(kiln_interp_invoke(ie, &err) == KILN_OK);
  REQUIRE(kiln_interp_invoke(ibody, &err) == KILN_OK);
  const kiln_tensor_view b0 = kiln_interp_output(ib, 0), b1 = kiln_interp_output(ie, 0);
  CHECK(b0.bytes == b1.bytes && memcmp(b0.data, b1.data, b0.bytes) == 0);
  /* Class logits: the heads run on the body's feature maps, in anchor order. */
  const float *logits = kiln_interp_output(ie, 1).data;
  float worst = 0.0f, largest = 0.0f;
  for (int k = 0; k < 6; k++) {
    const kiln_tensor_view f = kiln_interp_output(ibody, k);
    memcpy(kiln_net_act(heads[k], 0), f.data, f.bytes);
    kiln_net_forward(heads[k], 1, false);
    const float *y = kiln_net_act(heads[k], 2);
    const int64_t n = (int64_t)l.heads[k].h * l.heads[k].w * l.heads[k].anchors_per_cell * COLS;
    const float *want = logits + (size_t)l.heads[k].first_anchor * COLS;
    for (int64_t i = 0; i < n; i++) {
      worst = fmaxf(worst, fabsf(y[i] - want[i]));
      largest = fmaxf(largest, fabsf(want[i]));
    }
  }
  CHECK_MSG(worst <= 1e-5f * fmaxf(1.0f, largest), "class logits differ by %g (largest %g)",
            (double)worst, (double)largest);

  /* The Coral-style tail on top: four outputs, the class input has COLS columns. */
  kiln_detect_config cfg;
  REQUIRE(kiln_ssd_detect_config(copy, &cfg, &err) == KILN_OK);
  CHECK(cfg.score_threshold == 0.05f && cfg.max_detections == 25 && !cfg.class_agnostic);
  REQUIRE(kiln_detect_add_postprocess(copy, &cfg, &err) == KILN_OK);
  CHECK(copy->n_outputs == 4);
  kiln_interp *ipp = NULL;
  REQUIRE(kiln_interp_create(copy, NULL, &ipp, &err) == KILN_OK);
  random_input(ipp, 5);
  CHECK(kiln_interp_invoke(ipp, &err) == KILN_OK);
  CHECK(kiln_interp_output(ipp, 0).shape[1] == 25);
  kiln_interp_free(ipp);
  /* Serialized and read back unchanged in structure. */
  uint8_t *bytes_out = NULL;
  size_t size = 0;
  kiln_model *back = NULL;
  REQUIRE(kiln_model_serialize(copy, &bytes_out, &size, &err) == KILN_OK);
  CHECK(kiln_model_parse(bytes_out, size, true, "exported", &back, &err) == KILN_OK);
  if (back) CHECK(back->n_ops == copy->n_ops && back->n_outputs == 4);
  kiln_model_free(back);
  kiln_free(bytes_out);

  for (int k = 0; k < KILN_SSD_MAX_LAYERS; k++) kiln_net_free(heads[k]);
  kiln_interp_free(ib);
  kiln_interp_free(ie);
  kiln_interp_free(ibody);
  kiln_model_free(body);
  kiln_model_free(copy);
  kiln_model_free(base);
}

static void test_refusals(void) {
  kiln_model *base = load_ssd(), *copy = NULL;
  REQUIRE(base);
  kiln_error err;
  ssd_layout l;
  /* A stride-2 predictor. */
  REQUIRE(ssd_model_copy(base, &copy, &err) == KILN_OK);
  REQUIRE(ssd_layout_find(copy, &l, &err) == KILN_OK);
  copy->ops[l.heads[2].class_op].options.stride_h = 2;
  CHECK(ssd_layout_find(copy, &l, &err) == KILN_ERR_UNSUPPORTED);
  CHECK_MSG(strstr(err.msg, "BoxPredictor_2/ClassPredictor") && strstr(err.msg, "stride 2x1"),
            "%s", err.msg);
  kiln_model_free(copy);
  /* A post-processed model. */
  REQUIRE(ssd_model_copy(base, &copy, &err) == KILN_OK);
  kiln_detect_config cfg = kiln_detect_config_default300();
  REQUIRE(kiln_detect_add_postprocess(copy, &cfg, &err) == KILN_OK);
  CHECK(ssd_layout_find(copy, &l, &err) == KILN_ERR_UNSUPPORTED);
  CHECK_MSG(strstr(err.msg, "TFLite_Detection_PostProcess"), "%s", err.msg);
  CHECK(kiln_ssd_detect_config(copy, &cfg, &err) == KILN_ERR_UNSUPPORTED);
  kiln_model_free(copy);
  /* Outputs that do not come from a concatenation of predictors: the body. */
  REQUIRE(ssd_model_copy(base, &copy, &err) == KILN_OK);
  REQUIRE(ssd_layout_find(copy, &l, &err) == KILN_OK);
  const int32_t outs[2] = {l.heads[0].feature, l.heads[1].feature};
  REQUIRE(kiln_model_set_io(copy, copy->inputs, 1, outs, 2, &err) == KILN_OK);
  CHECK(ssd_layout_find(copy, &l, &err) == KILN_ERR_UNSUPPORTED);
  kiln_model_free(copy);
  kiln_model_free(base);
}

int main(void) {
  RUN(test_layout);
  RUN(test_export);
  RUN(test_refusals);
  return test_summary();
}
