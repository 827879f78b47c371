/* Model surgery of the training pipeline (kiln/trainer.h): sub-models cut at
 * a tensor (exact ops and tensors on a built graph; on the shared SSD the
 * cut model's output equals the full model's tensor bit for bit), tensor
 * lookup by a part of a fused name, metadata (labels and input
 * normalization) through serialize/parse, and dequantizing an int8 model
 * made by kiln's quantizer. */
#include <math.h>
#include <string.h>

#include "kiln/interp.h"
#include "kiln/quant.h"
#include "kiln/trainer.h"
#include "testutil.h"

static kiln_op_options opts(uint8_t type) {
  kiln_op_options o;
  memset(&o, 0, sizeof o);
  o.type = type;
  o.new_shape_count = -1;
  return o;
}

/* input [1,4,4,3] -> CONV 1x1 (2) "a" -> ADD(a, a) "b"; a -> MEAN "c";
 * outputs b and c. */
static kiln_model *branchy(void) {
  kiln_model *m;
  kiln_error err;
  if (kiln_model_new(&m, &err) != KILN_OK) return NULL;
  float w[6] = {1, 2, 3, -1, 0, 1}, b[2] = {0.5f, -0.5f};
  int32_t in = kiln_model_add_tensor(m, "input", KILN_F32, 4, (int32_t[]){1, 4, 4, 3}, NULL, NULL, &err);
  int32_t wt = kiln_model_add_tensor(m, "w", KILN_F32, 4, (int32_t[]){2, 1, 1, 3}, NULL, w, &err);
  int32_t bt = kiln_model_add_tensor(m, "bias", KILN_F32, 1, (int32_t[]){2}, NULL, b, &err);
  int32_t a = kiln_model_add_tensor(m, "a", KILN_F32, 4, (int32_t[]){1, 4, 4, 2}, NULL, NULL, &err);
  int32_t bb = kiln_model_add_tensor(m, "b", KILN_F32, 4, (int32_t[]){1, 4, 4, 2}, NULL, NULL, &err);
  int32_t axes = kiln_model_add_tensor(m, "axes", KILN_I32, 1, (int32_t[]){2}, NULL, (int32_t[]){1, 2}, &err);
  int32_t c = kiln_model_add_tensor(m, "c", KILN_F32, 2, (int32_t[]){1, 2}, NULL, NULL, &err);
  kiln_op_options conv = opts(KILN_OPTS_CONV2D);
  conv.stride_w = conv.stride_h = conv.dilation_w = conv.dilation_h = 1;
  conv.activation = KILN_ACT_RELU;
  kiln_op_options add = opts(KILN_OPTS_ADD), mean = opts(KILN_OPTS_REDUCER);
  kiln_model_add_op(m, KILN_OP_CONV_2D, NULL, (int32_t[]){in, wt, bt}, 3, &a, 1, &conv, NULL, 0, &err);
  kiln_model_add_op(m, KILN_OP_ADD, NULL, (int32_t[]){a, a}, 2, &bb, 1, &add, NULL, 0, &err);
  kiln_model_add_op(m, KILN_OP_MEAN, NULL, (int32_t[]){a, axes}, 2, &c, 1, &mean, NULL, 0, &err);
  if (kiln_model_set_io(m, &in, 1, (int32_t[]){bb, c}, 2, &err) != KILN_OK) {
    kiln_model_free(m);
    return NULL;
  }
  return m;
}

static void test_submodel_ops(void) {
  kiln_model *m = branchy(), *sub = NULL;
  REQUIRE(m);
  kiln_error err;
  REQUIRE(kiln_trainer_submodel(m, kiln_model_find_tensor(m, "a"), &sub, &err) == KILN_OK);
  CHECK(sub->n_ops == 1 && sub->ops[0].code == KILN_OP_CONV_2D);
  CHECK(sub->n_tensors == 4); /* input, w, bias, a */
  CHECK(sub->n_outputs == 1 && strcmp(sub->tensors[sub->outputs[0]].name, "a") == 0);
  CHECK(sub->n_inputs == 1 && strcmp(sub->tensors[sub->inputs[0]].name, "input") == 0);
  const kiln_tensor *w = &sub->tensors[kiln_model_find_tensor(sub, "w")];
  CHECK(w->data && ((const float *)w->data)[1] == 2.0f);
  kiln_model_free(sub);
  REQUIRE(kiln_trainer_submodel(m, kiln_model_find_tensor(m, "b"), &sub, &err) == KILN_OK);
  CHECK(sub->n_ops == 2 && sub->ops[1].code == KILN_OP_ADD && sub->n_tensors == 5);
  CHECK(kiln_model_find_tensor(sub, "c") < 0 && kiln_model_find_tensor(sub, "axes") < 0);
  /* the cut model runs and gives the full model's values */
  kiln_interp *full, *cut;
  REQUIRE(kiln_interp_create(m, NULL, &full, &err) == KILN_OK);
  REQUIRE(kiln_interp_create(sub, NULL, &cut, &err) == KILN_OK);
  test_rng r = {7};
  float *x1 = kiln_interp_input(full, 0).data, *x2 = kiln_interp_input(cut, 0).data;
  for (int i = 0; i < 48; i++) x1[i] = x2[i] = test_rand_float(&r, -1, 1);
  REQUIRE(kiln_interp_invoke(full, &err) == KILN_OK && kiln_interp_invoke(cut, &err) == KILN_OK);
  CHECK(memcmp(kiln_interp_output(full, 0).data, kiln_interp_output(cut, 0).data, 32 * sizeof(float)) == 0);
  kiln_interp_free(full);
  kiln_interp_free(cut);
  kiln_model_free(sub);
  /* constants and bad indices are refused */
  CHECK(kiln_trainer_submodel(m, kiln_model_find_tensor(m, "w"), &sub, &err) == KILN_ERR_INVALID_ARG && !sub);
  CHECK(kiln_trainer_submodel(m, 99, &sub, &err) == KILN_ERR_INVALID_ARG);
  kiln_model_free(m);
}

static void test_submodel_ssd(void) {
  kiln_error err;
  kiln_model *m, *sub;
  REQUIRE(kiln_model_load(test_model_path("ssd_mobilenet_v2_oidv4_fp16.tflite"), &m, &err) == KILN_OK);
  const int32_t f = kiln_trainer_find_tensor(m, "FeatureExtractor/MobilenetV2/Conv_1/Relu6");
  REQUIRE(f >= 0);
  CHECK(m->tensors[f].shape[1] == 10 && m->tensors[f].shape[3] == 1280);
  /* a part shared by several fused names is ambiguous; an unknown name is -1 */
  CHECK(kiln_trainer_find_tensor(m, "FeatureExtractor/MobilenetV2/expanded_conv_5/project/Conv2D") < 0);
  CHECK(kiln_trainer_find_tensor(m, "no such tensor") < 0);
  CHECK(kiln_trainer_find_tensor(m, m->tensors[f].name) == f);
  REQUIRE(kiln_trainer_submodel(m, f, &sub, &err) == KILN_OK);
  CHECK(sub->n_ops < m->n_ops);
  for (int32_t o = 0; o < sub->n_ops; o++) {
    CHECK(sub->ops[o].code != KILN_OP_RESHAPE && sub->ops[o].code != KILN_OP_CONCATENATION);
    for (int32_t k = 0; k < sub->ops[o].n_outputs; k++)
      CHECK(strstr(sub->tensors[sub->ops[o].outputs[k]].name, "BoxPredictor") == NULL ||
            strstr(sub->tensors[sub->ops[o].outputs[k]].name, "FeatureExtractor") != NULL);
  }
  /* the feature map of the cut model equals the full model's, bit for bit:
   * in the full model it is consumed by later ops, so mark it as an extra
   * graph output to read it after invoke */
  int32_t outs[3] = {m->outputs[0], m->outputs[1], f};
  REQUIRE(kiln_model_set_io(m, m->inputs, 1, outs, 3, &err) == KILN_OK);
  kiln_interp_options io = {.n_threads = 2};
  kiln_interp *full, *cut;
  REQUIRE(kiln_interp_create(m, &io, &full, &err) == KILN_OK);
  REQUIRE(kiln_interp_create(sub, &io, &cut, &err) == KILN_OK);
  test_rng r = {11};
  float *x1 = kiln_interp_input(full, 0).data, *x2 = kiln_interp_input(cut, 0).data;
  for (int i = 0; i < 300 * 300 * 3; i++) x1[i] = x2[i] = test_rand_float(&r, -1, 1);
  REQUIRE(kiln_interp_invoke(full, &err) == KILN_OK && kiln_interp_invoke(cut, &err) == KILN_OK);
  CHECK(kiln_interp_output(cut, 0).bytes == 100 * 1280 * sizeof(float));
  CHECK(memcmp(kiln_interp_output(full, 2).data, kiln_interp_output(cut, 0).data,
               100 * 1280 * sizeof(float)) == 0);
  kiln_interp_free(full);
  kiln_interp_free(cut);
  kiln_model_free(sub);
  kiln_model_free(m);
}

static void test_metadata(void) {
  kiln_model *m = branchy(), *back = NULL;
  REQUIRE(m);
  kiln_error err;
  const char *labels[3] = {"cat", "dog", "sea lion"};
  REQUIRE(kiln_trainer_set_labels(m, labels, 3, &err) == KILN_OK);
  kiln_image_norm norm = {{127.5f, 100.0f, 3.25f}, {127.5f, 64.0f, 0.5f}};
  REQUIRE(kiln_trainer_set_norm(m, &norm, &err) == KILN_OK);
  const char *two[2] = {"a", "b"};
  REQUIRE(kiln_trainer_set_labels(m, two, 2, &err) == KILN_OK); /* replaces */
  REQUIRE(kiln_trainer_set_labels(m, labels, 3, &err) == KILN_OK);
  CHECK(m->n_metadata == 2);
  const kiln_metadata *md = kiln_trainer_get_metadata(m, "kiln_labels");
  REQUIRE(md);
  CHECK(md->bytes == 17 && memcmp(md->data, "cat\ndog\nsea lion\n", 17) == 0);
  uint8_t *bytes;
  size_t size;
  REQUIRE(kiln_model_serialize(m, &bytes, &size, &err) == KILN_OK);
  REQUIRE(kiln_model_parse(bytes, size, true, "metadata", &back, &err) == KILN_OK);
  kiln_free(bytes);
  char **names;
  int32_t n;
  REQUIRE(kiln_trainer_get_labels(back, &names, &n, &err) == KILN_OK);
  CHECK(n == 3 && names && strcmp(names[2], "sea lion") == 0 && strcmp(names[0], "cat") == 0);
  kiln_trainer_labels_free(names, n);
  kiln_image_norm got;
  REQUIRE(kiln_trainer_get_norm(back, &got));
  CHECK(memcmp(&got, &norm, sizeof got) == 0);
  kiln_model_free(back);
  /* bad entries */
  CHECK(kiln_trainer_set_labels(m, (const char *[]){"x", ""}, 2, &err) == KILN_ERR_INVALID_ARG);
  REQUIRE(kiln_trainer_set_metadata(m, "kiln_labels", "a\n\nb\n", 5, &err) == KILN_OK);
  CHECK(kiln_trainer_get_labels(m, &names, &n, &err) == KILN_ERR_FORMAT && !names);
  CHECK(strstr(err.msg, "line 2 is empty") != NULL);
  REQUIRE(kiln_trainer_set_metadata(m, "kiln_input_norm", "{\"mean\": [1, 2]}", 16, &err) == KILN_OK);
  CHECK(!kiln_trainer_get_norm(m, &got));
  kiln_model *plain = branchy();
  REQUIRE(plain);
  CHECK(kiln_trainer_get_labels(plain, &names, &n, &err) == KILN_OK && n == 0 && !names);
  kiln_model_free(plain);
  kiln_model_free(m);
}

/* input [1,8,8,3] -> CONV 3x3 (4) relu6 -> DEPTHWISE 3x3 -> MEAN -> FC 3 -> SOFTMAX */
static kiln_model *small_float(void) {
  kiln_model *m;
  kiln_error err;
  if (kiln_model_new(&m, &err) != KILN_OK) return NULL;
  test_rng r = {3};
  float w1[4 * 9 * 3], b1[4], w2[9 * 4], b2[4], w3[3 * 4], b3[3];
  for (size_t i = 0; i < sizeof w1 / 4; i++) w1[i] = test_rand_float(&r, -0.5f, 0.5f);
  for (size_t i = 0; i < sizeof w2 / 4; i++) w2[i] = test_rand_float(&r, -0.5f, 0.5f);
  for (size_t i = 0; i < sizeof w3 / 4; i++) w3[i] = test_rand_float(&r, -1, 1);
  for (int i = 0; i < 4; i++) b1[i] = b2[i] = 0.1f * (float)i;
  for (int i = 0; i < 3; i++) b3[i] = 0.0f;
  int32_t t[12];
  t[0] = kiln_model_add_tensor(m, "input", KILN_F32, 4, (int32_t[]){1, 8, 8, 3}, NULL, NULL, &err);
  t[1] = kiln_model_add_tensor(m, "w1", KILN_F32, 4, (int32_t[]){4, 3, 3, 3}, NULL, w1, &err);
  t[2] = kiln_model_add_tensor(m, "b1", KILN_F32, 1, (int32_t[]){4}, NULL, b1, &err);
  t[3] = kiln_model_add_tensor(m, "c1", KILN_F32, 4, (int32_t[]){1, 8, 8, 4}, NULL, NULL, &err);
  t[4] = kiln_model_add_tensor(m, "w2", KILN_F32, 4, (int32_t[]){1, 3, 3, 4}, NULL, w2, &err);
  t[5] = kiln_model_add_tensor(m, "b2", KILN_F32, 1, (int32_t[]){4}, NULL, b2, &err);
  t[6] = kiln_model_add_tensor(m, "c2", KILN_F32, 4, (int32_t[]){1, 8, 8, 4}, NULL, NULL, &err);
  t[7] = kiln_model_add_tensor(m, "axes", KILN_I32, 1, (int32_t[]){2}, NULL, (int32_t[]){1, 2}, &err);
  t[8] = kiln_model_add_tensor(m, "mean", KILN_F32, 2, (int32_t[]){1, 4}, NULL, NULL, &err);
  t[9] = kiln_model_add_tensor(m, "w3", KILN_F32, 2, (int32_t[]){3, 4}, NULL, w3, &err);
  t[10] = kiln_model_add_tensor(m, "b3", KILN_F32, 1, (int32_t[]){3}, NULL, b3, &err);
  t[11] = kiln_model_add_tensor(m, "logits", KILN_F32, 2, (int32_t[]){1, 3}, NULL, NULL, &err);
  int32_t sm = kiln_model_add_tensor(m, "scores", KILN_F32, 2, (int32_t[]){1, 3}, NULL, NULL, &err);
  kiln_op_options c = opts(KILN_OPTS_CONV2D);
  c.stride_w = c.stride_h = c.dilation_w = c.dilation_h = 1;
  c.activation = KILN_ACT_RELU6;
  kiln_op_options d = opts(KILN_OPTS_DEPTHWISE_CONV2D);
  d.stride_w = d.stride_h = d.dilation_w = d.dilation_h = d.depth_multiplier = 1;
  kiln_op_options mean = opts(KILN_OPTS_REDUCER), fc = opts(KILN_OPTS_FULLY_CONNECTED),
                  soft = opts(KILN_OPTS_SOFTMAX);
  soft.beta = 1.0f;
  kiln_model_add_op(m, KILN_OP_CONV_2D, NULL, (int32_t[]){t[0], t[1], t[2]}, 3, &t[3], 1, &c, NULL, 0, &err);
  kiln_model_add_op(m, KILN_OP_DEPTHWISE_CONV_2D, NULL, (int32_t[]){t[3], t[4], t[5]}, 3, &t[6], 1, &d, NULL, 0, &err);
  kiln_model_add_op(m, KILN_OP_MEAN, NULL, (int32_t[]){t[6], t[7]}, 2, &t[8], 1, &mean, NULL, 0, &err);
  kiln_model_add_op(m, KILN_OP_FULLY_CONNECTED, NULL, (int32_t[]){t[8], t[9], t[10]}, 3, &t[11], 1, &fc, NULL, 0, &err);
  kiln_model_add_op(m, KILN_OP_SOFTMAX, NULL, &t[11], 1, &sm, 1, &soft, NULL, 0, &err);
  if (kiln_model_set_io(m, &t[0], 1, &sm, 1, &err) != KILN_OK) {
    kiln_model_free(m);
    return NULL;
  }
  return m;
}

static void test_dequantize(void) {
  kiln_model *fm = small_float(), *qm = NULL, *dq = NULL;
  REQUIRE(fm);
  kiln_error err;
  kiln_quantizer *q;
  REQUIRE(kiln_quantizer_create(fm, NULL, &q, &err) == KILN_OK);
  test_rng r = {5};
  float x[192];
  const float *inputs[1] = {x};
  for (int s = 0; s < 16; s++) {
    for (int i = 0; i < 192; i++) x[i] = test_rand_float(&r, -1, 1);
    REQUIRE(kiln_quantizer_add_inputs(q, inputs, &err) == KILN_OK);
  }
  REQUIRE(kiln_quantizer_finish(q, &qm, &err) == KILN_OK);
  kiln_quantizer_free(q);
  kiln_image_norm norm;
  REQUIRE(kiln_trainer_dequantize(qm, &dq, &norm, &err) == KILN_OK);
  const kiln_tensor *qin = &qm->tensors[qm->inputs[0]];
  REQUIRE(qin->dtype == KILN_I8);
  CHECK(fabsf(norm.mean[0] - (float)(qin->quant.zero_point[0] + 128)) < 1e-6f);
  CHECK(fabsf(norm.std[1] * qin->quant.scale[0] - 1.0f) < 1e-6f);
  for (int32_t t = 0; t < dq->n_tensors; t++)
    CHECK(dq->tensors[t].dtype == KILN_F32 || (dq->tensors[t].dtype == KILN_I32 && dq->tensors[t].data));
  for (int32_t o = 0; o < dq->n_ops; o++)
    CHECK(dq->ops[o].code != KILN_OP_QUANTIZE && dq->ops[o].code != KILN_OP_DEQUANTIZE);
  CHECK(dq->n_ops == fm->n_ops);
  /* the dequantized model computes nearly what the float model does */
  kiln_interp *a, *b;
  REQUIRE(kiln_interp_create(fm, NULL, &a, &err) == KILN_OK);
  REQUIRE(kiln_interp_create(dq, NULL, &b, &err) == KILN_OK);
  double worst = 0.0;
  for (int s = 0; s < 8; s++) {
    for (int i = 0; i < 192; i++) x[i] = test_rand_float(&r, -1, 1);
    memcpy(kiln_interp_input(a, 0).data, x, sizeof x);
    memcpy(kiln_interp_input(b, 0).data, x, sizeof x);
    REQUIRE(kiln_interp_invoke(a, &err) == KILN_OK && kiln_interp_invoke(b, &err) == KILN_OK);
    const float *ya = kiln_interp_output(a, 0).data, *yb = kiln_interp_output(b, 0).data;
    for (int k = 0; k < 3; k++) worst = fmax(worst, fabs((double)ya[k] - yb[k]));
  }
  CHECK_MSG(worst < 0.02, "float vs dequantized: %g", worst);
  kiln_interp_free(a);
  kiln_interp_free(b);
  kiln_model_free(dq);
  kiln_model_free(qm);
  kiln_model_free(fm);
}

int main(void) {
  RUN(test_submodel_ops);
  RUN(test_submodel_ssd);
  RUN(test_metadata);
  RUN(test_dequantize);
  return test_summary();
}
