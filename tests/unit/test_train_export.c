/* Export of trained nets (kiln_net_export): batch norm folding equals the
 * unfolded inference forward, and exported models run in kiln's
 * interpreter with outputs equal to the engine's inference-mode forward
 * within 1e-4, for nets covering every exportable layer (conv with and
 * without a folded batch norm and fused ReLU / ReLU6, depthwise with
 * multiplier, a standalone batch norm, hard-swish, pools with SAME and
 * VALID padding, global pooling, add with a fused ReLU, reshape, flatten,
 * dropout, dense with a fused ReLU, softmax). The models are also
 * serialized and re-read. With KILN_TRAIN_EXPORT_DIR set, each case
 * writes NAME.tflite, NAME.inputs.bin and NAME.expected.bin there for
 * bench/train/check_export.py (LiteRT). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kiln/interp.h"
#include "kiln/train.h"
#include "testutil.h"

#define BATCH 4

static test_rng rng = {0xe4b0};

/* A few training steps so batch norm statistics and weights are not at
 * their initial values. */
static void train_a_little(kiln_net *net, int32_t out) {
  kiln_layer_info in = kiln_net_layer(net, 0), o = kiln_net_layer(net, out);
  const int64_t n_in = (int64_t)BATCH * in.h * in.w * in.c;
  const int64_t n_out = (int64_t)BATCH * o.h * o.w * o.c;
  kiln_optim opt = kiln_optim_default(KILN_OPTIM_SGD, 0.05f);
  for (int step = 0; step < 4; step++) {
    float *x = kiln_net_act(net, 0);
    for (int64_t i = 0; i < n_in; i++) x[i] = test_rand_float(&rng, -1.0f, 2.0f);
    kiln_net_forward(net, BATCH, true);
    float *g = kiln_net_grad(net, out);
    for (int64_t i = 0; i < n_out; i++) g[i] = test_rand_float(&rng, -0.1f, 0.1f);
    kiln_net_backward(net, BATCH);
    kiln_net_update(net, &opt, NULL);
  }
}

static void write_file(const char *dir, const char *name, const char *ext, const void *data,
                       size_t bytes) {
  char path[1024];
  snprintf(path, sizeof path, "%s/%s.%s", dir, name, ext);
  FILE *f = fopen(path, "wb");
  if (!f) return;
  fwrite(data, 1, bytes, f);
  fclose(f);
}

/* Exports net (output layer out), runs BATCH fresh inputs through both and
 * compares. */
static void check_export(const char *name, kiln_net *net, int32_t out, bool softmax) {
  train_a_little(net, out);
  kiln_export_options opts = {1, {out}, softmax};
  kiln_model *model;
  kiln_error err;
  if (kiln_net_export(net, &opts, &model, &err) != KILN_OK) {
    CHECK_MSG(0, "%s: %s", name, err.msg);
    return;
  }
  /* Through the writer and reader, as a saved model would be. */
  uint8_t *bytes;
  size_t size;
  REQUIRE(kiln_model_serialize(model, &bytes, &size, &err) == KILN_OK);
  kiln_model *loaded;
  REQUIRE(kiln_model_parse(bytes, size, true, name, &loaded, &err) == KILN_OK);
  kiln_interp *it;
  if (kiln_interp_create(loaded, NULL, &it, &err) != KILN_OK) {
    CHECK_MSG(0, "%s: %s", name, err.msg);
    kiln_model_free(loaded);
    kiln_model_free(model);
    kiln_free(bytes);
    return;
  }
  kiln_layer_info in = kiln_net_layer(net, 0), o = kiln_net_layer(net, out);
  const int64_t in_size = (int64_t)in.h * in.w * in.c, out_size = (int64_t)o.h * o.w * o.c;
  float *x = kiln_net_act(net, 0);
  for (int64_t i = 0; i < BATCH * in_size; i++) x[i] = test_rand_float(&rng, -1.0f, 2.0f);
  float *inputs = malloc((size_t)(BATCH * in_size) * sizeof *inputs);
  float *expected = malloc((size_t)(BATCH * out_size) * sizeof *expected);
  REQUIRE(inputs && expected);
  memcpy(inputs, x, (size_t)(BATCH * in_size) * sizeof *inputs);
  kiln_net_forward(net, BATCH, false);
  memcpy(expected, kiln_net_act(net, out), (size_t)(BATCH * out_size) * sizeof *expected);
  if (softmax)
    for (int b = 0; b < BATCH; b++) {
      float *e = expected + b * out_size, mx = e[0];
      double sum = 0.0;
      for (int64_t k = 1; k < out_size; k++) mx = fmaxf(mx, e[k]);
      for (int64_t k = 0; k < out_size; k++) sum += exp((double)e[k] - mx);
      for (int64_t k = 0; k < out_size; k++) e[k] = (float)(exp((double)e[k] - mx) / sum);
    }
  double worst = 0.0;
  for (int b = 0; b < BATCH; b++) {
    kiln_tensor_view vin = kiln_interp_input(it, 0);
    REQUIRE(vin.bytes == (size_t)in_size * sizeof(float));
    memcpy(vin.data, inputs + b * in_size, vin.bytes);
    REQUIRE(kiln_interp_invoke(it, &err) == KILN_OK);
    kiln_tensor_view vo = kiln_interp_output(it, 0);
    REQUIRE(vo.bytes == (size_t)out_size * sizeof(float));
    const float *got = vo.data;
    for (int64_t k = 0; k < out_size; k++) {
      const float e = expected[b * out_size + k];
      const double d = fabs((double)got[k] - e) / fmax(1.0, fabs((double)e));
      if (d > worst) worst = d;
    }
  }
  CHECK_MSG(worst <= 1e-4, "%s: interpreter differs from the engine by %.3g", name, worst);
  const char *dir = getenv("KILN_TRAIN_EXPORT_DIR");
  if (dir) {
    write_file(dir, name, "tflite", bytes, size);
    write_file(dir, name, "inputs.bin", inputs, (size_t)(BATCH * in_size) * sizeof(float));
    write_file(dir, name, "expected.bin", expected, (size_t)(BATCH * out_size) * sizeof(float));
  }
  free(inputs);
  free(expected);
  kiln_interp_free(it);
  kiln_model_free(loaded);
  kiln_model_free(model);
  kiln_free(bytes);
}

static kiln_net *finalize(kiln_net *net) {
  kiln_error err;
  if (kiln_net_finalize(net, BATCH, 2, 11, &err) != KILN_OK) {
    fprintf(stderr, "%s\n", err.msg);
    kiln_net_free(net);
    return NULL;
  }
  return net;
}

/* A MobileNet-like block net ending in global pooling and dense layers. */
static void test_mobile_block(void) {
  kiln_net *net;
  kiln_error err;
  REQUIRE(kiln_net_create(12, 11, 3, &net, &err) == KILN_OK);
  kiln_conv_spec stem = {.filters = 8, .kernel_h = 3, .kernel_w = 3, .stride_h = 2,
                         .stride_w = 2};
  int32_t x = kiln_net_conv(net, 0, &stem);
  x = kiln_net_batchnorm(net, x, 0.5f, 1e-3f);
  x = kiln_net_activation(net, x, KILN_LAYER_RELU6);
  kiln_conv_spec dw = {.filters = 2, .kernel_h = 3, .kernel_w = 3, .dilation_h = 2,
                       .dilation_w = 2};
  int32_t y = kiln_net_dwconv(net, x, &dw);
  y = kiln_net_batchnorm(net, y, 0.5f, 1e-3f);
  y = kiln_net_activation(net, y, KILN_LAYER_RELU);
  kiln_conv_spec pw = {.filters = 8, .kernel_h = 1, .kernel_w = 1, .bias = true};
  y = kiln_net_conv(net, y, &pw);
  y = kiln_net_activation(net, y, KILN_LAYER_HSWISH);
  y = kiln_net_batchnorm(net, y, 0.5f, 1e-3f); /* standalone: a 1x1 depthwise */
  x = kiln_net_add(net, x, y);
  x = kiln_net_activation(net, x, KILN_LAYER_RELU);
  x = kiln_net_pool(net, x, KILN_LAYER_AVGPOOL, 3, 3, 2, 2, KILN_PAD_SAME);
  x = kiln_net_global_avgpool(net, x);
  x = kiln_net_dropout(net, x, 0.2f);
  x = kiln_net_dense(net, x, 16, true);
  x = kiln_net_activation(net, x, KILN_LAYER_RELU);
  x = kiln_net_dense(net, x, 5, true);
  REQUIRE(finalize(net));
  check_export("mobile_block", net, x, true);
  kiln_net_free(net);
}

/* The Fashion-MNIST style net: VALID convs, max pools, flatten, dense. */
static void test_small_cnn(void) {
  kiln_net *net;
  kiln_error err;
  REQUIRE(kiln_net_create(14, 14, 1, &net, &err) == KILN_OK);
  kiln_conv_spec c = {.filters = 6, .kernel_h = 3, .kernel_w = 3, .padding = KILN_PAD_VALID,
                      .bias = true};
  int32_t x = kiln_net_conv(net, 0, &c);
  x = kiln_net_activation(net, x, KILN_LAYER_RELU);
  x = kiln_net_pool(net, x, KILN_LAYER_MAXPOOL, 2, 2, 2, 2, KILN_PAD_VALID);
  c.filters = 10;
  c.bias = false;
  x = kiln_net_conv(net, x, &c);
  x = kiln_net_batchnorm(net, x, 0.5f, 1e-5f);
  x = kiln_net_activation(net, x, KILN_LAYER_RELU);
  x = kiln_net_pool(net, x, KILN_LAYER_MAXPOOL, 3, 3, 2, 2, KILN_PAD_SAME);
  x = kiln_net_flatten(net, x);
  x = kiln_net_dense(net, x, 12, true);
  x = kiln_net_activation(net, x, KILN_LAYER_RELU);
  x = kiln_net_reshape(net, x, 2, 2, 3);
  x = kiln_net_dense(net, x, 4, true);
  REQUIRE(finalize(net));
  check_export("small_cnn", net, x, false);
  kiln_net_free(net);
}

/* Folding: conv + BN (inference) equals the conv with folded weights. */
static void test_fold(void) {
  kiln_net *net;
  kiln_error err;
  REQUIRE(kiln_net_create(5, 5, 3, &net, &err) == KILN_OK);
  kiln_conv_spec c = {.filters = 4, .kernel_h = 3, .kernel_w = 3, .bias = true};
  int32_t conv = kiln_net_conv(net, 0, &c);
  int32_t bn = kiln_net_batchnorm(net, conv, 0.3f, 1e-3f);
  REQUIRE(kiln_net_finalize(net, 2, 1, 3, &err) == KILN_OK);
  train_a_little(net, bn);
  float w[4 * 27], b[4];
  REQUIRE(kiln_net_fold_batchnorm(net, conv, bn, w, b, &err) == KILN_OK);
  CHECK(kiln_net_fold_batchnorm(net, bn, conv, w, b, &err) == KILN_ERR_INVALID_ARG);
  float *x = kiln_net_act(net, 0);
  for (int i = 0; i < 2 * 75; i++) x[i] = test_rand_float(&rng, -1.0f, 1.0f);
  kiln_net_forward(net, 2, false);
  float expect[2 * 25 * 4];
  memcpy(expect, kiln_net_act(net, bn), sizeof expect);
  /* Put the folded weights into the conv: its output is now the BN's. */
  memcpy(kiln_net_param(net, conv, KILN_PARAM_WEIGHT, NULL), w, sizeof w);
  memcpy(kiln_net_param(net, conv, KILN_PARAM_BIAS, NULL), b, sizeof b);
  kiln_net_forward(net, 2, false);
  const float *got = kiln_net_act(net, conv);
  double worst = 0.0;
  for (int i = 0; i < 2 * 25 * 4; i++) worst = fmax(worst, fabs((double)got[i] - expect[i]));
  CHECK_MSG(worst < 1e-5, "folded conv differs by %.3g", worst);
  kiln_net_free(net);
}

int main(void) {
  RUN(test_fold);
  RUN(test_mobile_block);
  RUN(test_small_cnn);
  return test_summary();
}
