/* Finite-difference gradient checks of every layer and loss of the training
 * engine: for a small net (batch 2) and a random projection r of its
 * output, L = sum r * y; backward's gradients of the input and of every
 * parameter must match central differences of L. Shapes cover stride 2,
 * dilation 2, SAME and VALID padding, asymmetric kernels and depth
 * multipliers, and both conv forward paths. Inputs of kinked functions (ReLU, max pooling) are kept away
 * from their kinks so the differences are meaningful. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kiln/train.h"
#include "testutil.h"
#include "train/net_int.h"

#define BATCH 2

static test_rng rng = {0x5eedULL};

typedef enum fill_mode { FILL_UNIFORM, FILL_AWAY_FROM_KINKS, FILL_DISTINCT } fill_mode;

/* L = sum r * y over the first BATCH samples of layer out, in double. */
static double objective(kiln_net *net, int32_t out, const float *r, uint64_t dropout_counter) {
  net->dropout_counter = dropout_counter;
  kiln_net_forward(net, BATCH, true);
  const float *y = kiln_net_act(net, out);
  kiln_layer_info info = kiln_net_layer(net, out);
  const int64_t count = (int64_t)BATCH * info.h * info.w * info.c;
  double sum = 0.0;
  for (int64_t i = 0; i < count; i++) sum += (double)r[i] * y[i];
  return sum;
}

/* Compares backward's gradient g[count] of values v[count] with central
 * differences; returns the worst relative error. */
static double compare(kiln_net *net, int32_t out, const float *r, uint64_t counter, float *v,
                      const float *g, int64_t count, float eps) {
  double worst = 0.0;
  for (int64_t i = 0; i < count; i++) {
    const float saved = v[i];
    v[i] = saved + eps;
    const double lp = objective(net, out, r, counter);
    v[i] = saved - eps;
    const double lm = objective(net, out, r, counter);
    v[i] = saved;
    const double num = (lp - lm) / (2.0 * (double)eps);
    const double scale = fmax(1.0, fmax(fabs(num), fabs((double)g[i])));
    const double e = fabs(num - g[i]) / scale;
    if (e > worst) worst = e;
  }
  return worst;
}

static void fill(float *v, int64_t count, fill_mode mode) {
  for (int64_t i = 0; i < count; i++) {
    float x = test_rand_float(&rng, -1.0f, 1.0f);
    if (mode == FILL_AWAY_FROM_KINKS) x = (x < 0 ? -1.0f : 1.0f) * (0.2f + 0.8f * fabsf(x));
    v[i] = x;
  }
  if (mode == FILL_DISTINCT) {
    /* A shuffled ladder: values 0.05 apart, so no max is near a tie. */
    for (int64_t i = 0; i < count; i++) v[i] = (float)i * 0.05f - (float)count * 0.025f;
    for (int64_t i = count - 1; i > 0; i--) {
      int64_t j = test_rand_int(&rng, 0, (int32_t)i);
      float t = v[i];
      v[i] = v[j];
      v[j] = t;
    }
  }
}

/* Checks the net's input and parameter gradients at its output layer. */
static void check_net(const char *name, kiln_net *net, int32_t out, fill_mode mode, float eps,
                      float scale_input) {
  kiln_error err;
  REQUIRE(kiln_net_set_trainable(net, 0, true, &err) == KILN_OK);
  if (kiln_net_finalize(net, BATCH, 1, 7, &err) != KILN_OK) {
    fprintf(stderr, "%s: %s\n", name, err.msg);
    CHECK(0);
    kiln_net_free(net);
    return;
  }
  kiln_layer_info in = kiln_net_layer(net, 0), o = kiln_net_layer(net, out);
  const int64_t n_in = (int64_t)BATCH * in.h * in.w * in.c;
  const int64_t n_out = (int64_t)BATCH * o.h * o.w * o.c;
  float *x = kiln_net_act(net, 0);
  fill(x, n_in, mode);
  for (int64_t i = 0; i < n_in; i++) x[i] *= scale_input;
  fill(net->params, (int64_t)net->n_params, FILL_UNIFORM);
  /* Batch norm running variances must stay positive. */
  for (size_t i = 0; i < net->n_state; i++) net->state[i] = 0.5f + 0.25f * (float)(i % 3);
  float *r = malloc((size_t)n_out * sizeof *r);
  float *gx = malloc((size_t)n_in * sizeof *gx);
  float *gp = malloc((net->n_params + 1) * sizeof *gp);
  REQUIRE(r && gx && gp);
  fill(r, n_out, FILL_UNIFORM);
  const uint64_t counter = 5;
  objective(net, out, r, counter);
  memcpy(kiln_net_grad(net, out), r, (size_t)n_out * sizeof *r);
  kiln_net_backward(net, BATCH);
  memcpy(gx, kiln_net_grad(net, 0), (size_t)n_in * sizeof *gx);
  memcpy(gp, net->grads, net->n_params * sizeof *gp);
  const double ex = compare(net, out, r, counter, x, gx, n_in, eps);
  /* Parameters: every tensor of the trainable layers. */
  double ep = 0.0;
  for (int32_t i = 1; i < kiln_net_layer_count(net); i++) {
    if (!kiln_net_layer(net, i).trainable) continue;
    for (int which = KILN_PARAM_WEIGHT; which <= KILN_PARAM_BETA; which++) {
      int64_t count;
      float *v = kiln_net_param(net, i, (kiln_param_kind)which, &count);
      if (!v) continue;
      double e = compare(net, out, r, counter, v, gp + (v - net->params), count, eps);
      if (e > ep) ep = e;
    }
  }
  CHECK_MSG(ex < 5e-3 && ep < 5e-3, "%s: input error %.2e, parameter error %.2e", name, ex, ep);
  free(r);
  free(gx);
  free(gp);
  kiln_net_free(net);
}

static kiln_net *new_net(int32_t h, int32_t w, int32_t c) {
  kiln_net *net = NULL;
  kiln_error err;
  if (kiln_net_create(h, w, c, &net, &err) != KILN_OK) return NULL;
  return net;
}

static void conv_case(const char *name, int32_t h, int32_t w, int32_t ci, kiln_conv_spec spec,
                      bool depthwise) {
  kiln_net *net = new_net(h, w, ci);
  REQUIRE(net);
  int32_t out = depthwise ? kiln_net_dwconv(net, 0, &spec) : kiln_net_conv(net, 0, &spec);
  check_net(name, net, out, FILL_UNIFORM, 1e-2f, 1.0f);
}

static void test_conv(void) {
  conv_case("conv 3x3 s1 same", 5, 6, 3,
            (kiln_conv_spec){.filters = 4, .kernel_h = 3, .kernel_w = 3, .bias = true}, false);
  conv_case("conv 3x3 s2 valid", 7, 6, 2,
            (kiln_conv_spec){.filters = 3, .kernel_h = 3, .kernel_w = 3, .stride_h = 2,
                             .stride_w = 2, .padding = KILN_PAD_VALID, .bias = true},
            false);
  conv_case("conv 3x3 s2 same", 6, 7, 2,
            (kiln_conv_spec){.filters = 3, .kernel_h = 3, .kernel_w = 3, .stride_h = 2,
                             .stride_w = 2, .bias = false},
            false);
  conv_case("conv 3x3 d2 same", 7, 7, 2,
            (kiln_conv_spec){.filters = 3, .kernel_h = 3, .kernel_w = 3, .dilation_h = 2,
                             .dilation_w = 2, .bias = true},
            false);
  conv_case("conv 2x3 s(2,1) same", 5, 5, 3,
            (kiln_conv_spec){.filters = 2, .kernel_h = 2, .kernel_w = 3, .stride_h = 2,
                             .bias = true},
            false);
  conv_case("conv 1x1", 4, 3, 5,
            (kiln_conv_spec){.filters = 6, .kernel_h = 1, .kernel_w = 1, .bias = true}, false);
  conv_case("conv 1x1 s2", 5, 5, 3,
            (kiln_conv_spec){.filters = 2, .kernel_h = 1, .kernel_w = 1, .stride_h = 2,
                             .stride_w = 2, .bias = true},
            false);
}

static void test_dwconv(void) {
  conv_case("dwconv 3x3 s1 same", 5, 6, 3,
            (kiln_conv_spec){.kernel_h = 3, .kernel_w = 3, .bias = true}, true);
  conv_case("dwconv 3x3 s2 valid x2", 7, 6, 2,
            (kiln_conv_spec){.filters = 2, .kernel_h = 3, .kernel_w = 3, .stride_h = 2,
                             .stride_w = 2, .padding = KILN_PAD_VALID, .bias = true},
            true);
  conv_case("dwconv 3x3 d2 same", 7, 7, 3,
            (kiln_conv_spec){.kernel_h = 3, .kernel_w = 3, .dilation_h = 2, .dilation_w = 2},
            true);
}

static void test_batchnorm(void) {
  kiln_net *net = new_net(3, 4, 3);
  REQUIRE(net);
  int32_t out = kiln_net_batchnorm(net, 0, 0.1f, 1e-3f);
  check_net("batchnorm train", net, out, FILL_UNIFORM, 1e-2f, 1.0f);

  net = new_net(3, 4, 3);
  REQUIRE(net);
  out = kiln_net_batchnorm(net, 0, 0.1f, 1e-3f);
  /* A frozen batch norm is affine in its input with running statistics;
   * a conv before it keeps a trainable parameter upstream. */
  kiln_conv_spec one = {.filters = 3, .kernel_h = 1, .kernel_w = 1, .bias = true};
  int32_t conv = kiln_net_conv(net, out, &one);
  kiln_error err;
  REQUIRE(kiln_net_set_trainable(net, out, false, &err) == KILN_OK);
  check_net("batchnorm frozen", net, conv, FILL_UNIFORM, 1e-2f, 1.0f);
}

static void act_case(const char *name, kiln_layer_kind kind, float scale) {
  kiln_net *net = new_net(3, 3, 4);
  REQUIRE(net);
  int32_t out = kiln_net_activation(net, 0, kind);
  check_net(name, net, out, FILL_AWAY_FROM_KINKS, 1e-3f, scale);
}

static void test_activations(void) {
  act_case("relu", KILN_LAYER_RELU, 1.0f);
  /* Scaled by 7: values in +-[1.4, 7], some above 6. Values near 6 or +-3
   * are rare; the tolerance is per element, so re-draws are not needed. */
  act_case("relu6", KILN_LAYER_RELU6, 7.0f);
  act_case("hswish", KILN_LAYER_HSWISH, 3.5f);
}

static void pool_case(const char *name, kiln_layer_kind kind, int32_t k, int32_t s,
                      kiln_padding pad) {
  kiln_net *net = new_net(5, 6, 3);
  REQUIRE(net);
  int32_t out = kind == KILN_LAYER_GLOBAL_AVGPOOL ? kiln_net_global_avgpool(net, 0)
                                                  : kiln_net_pool(net, 0, kind, k, k, s, s, pad);
  check_net(name, net, out, FILL_DISTINCT, 1e-3f, 1.0f);
}

static void test_pools(void) {
  pool_case("maxpool 2x2 s2 valid", KILN_LAYER_MAXPOOL, 2, 2, KILN_PAD_VALID);
  pool_case("maxpool 3x3 s2 same", KILN_LAYER_MAXPOOL, 3, 2, KILN_PAD_SAME);
  pool_case("avgpool 3x3 s2 same", KILN_LAYER_AVGPOOL, 3, 2, KILN_PAD_SAME);
  pool_case("avgpool 2x2 s1 valid", KILN_LAYER_AVGPOOL, 2, 1, KILN_PAD_VALID);
  pool_case("global avgpool", KILN_LAYER_GLOBAL_AVGPOOL, 0, 0, KILN_PAD_SAME);
}

static void test_dense_and_shapes(void) {
  kiln_net *net = new_net(2, 3, 4);
  REQUIRE(net);
  int32_t out = kiln_net_dense(net, 0, 5, true);
  check_net("dense", net, out, FILL_UNIFORM, 1e-2f, 1.0f);

  net = new_net(2, 3, 4);
  REQUIRE(net);
  out = kiln_net_dense(net, kiln_net_flatten(net, 0), 3, false);
  check_net("flatten + dense no bias", net, out, FILL_UNIFORM, 1e-2f, 1.0f);

  net = new_net(2, 3, 4);
  REQUIRE(net);
  out = kiln_net_reshape(net, 0, 4, 3, 2);
  kiln_conv_spec spec = {.filters = 2, .kernel_h = 3, .kernel_w = 3, .bias = true};
  out = kiln_net_conv(net, out, &spec);
  check_net("reshape + conv", net, out, FILL_UNIFORM, 1e-2f, 1.0f);

  /* Residual: input + conv(input), so the input gradient has two paths. */
  net = new_net(4, 4, 3);
  REQUIRE(net);
  kiln_conv_spec same = {.filters = 3, .kernel_h = 3, .kernel_w = 3, .bias = true};
  int32_t c = kiln_net_conv(net, 0, &same);
  out = kiln_net_add(net, 0, c);
  check_net("add residual", net, out, FILL_UNIFORM, 1e-2f, 1.0f);

  net = new_net(3, 4, 5);
  REQUIRE(net);
  out = kiln_net_dropout(net, 0, 0.3f);
  check_net("dropout", net, out, FILL_UNIFORM, 1e-2f, 1.0f);
}

/* A loss's gradient against central differences of its value. */
typedef double (*loss_fn)(const float *x, float *g, int64_t n, void *ctx);

static void check_loss(const char *name, loss_fn fn, void *ctx, float *x, int64_t n) {
  float *g = malloc((size_t)n * sizeof *g), *tmp = malloc((size_t)n * sizeof *tmp);
  REQUIRE(g && tmp);
  fn(x, g, n, ctx);
  double worst = 0.0;
  const float eps = 1e-3f;
  for (int64_t i = 0; i < n; i++) {
    const float saved = x[i];
    x[i] = saved + eps;
    const double lp = fn(x, tmp, n, ctx);
    x[i] = saved - eps;
    const double lm = fn(x, tmp, n, ctx);
    x[i] = saved;
    const double num = (lp - lm) / (2.0 * eps);
    const double e = fabs(num - g[i]) / fmax(1.0, fabs(num));
    if (e > worst) worst = e;
  }
  CHECK_MSG(worst < 1e-3, "%s: gradient error %.2e", name, worst);
  free(g);
  free(tmp);
}

typedef struct loss_ctx {
  const int32_t *labels;
  const float *targets, *weights;
  int32_t classes;
  float smoothing;
} loss_ctx;

static double xent_fn(const float *x, float *g, int64_t n, void *ctx) {
  const loss_ctx *c = ctx;
  return kiln_loss_softmax_xent(x, c->labels, c->weights, (int32_t)(n / c->classes), c->classes,
                                c->smoothing, 0.5f, g);
}
static double bce_fn(const float *x, float *g, int64_t n, void *ctx) {
  const loss_ctx *c = ctx;
  return kiln_loss_sigmoid_bce(x, c->targets, c->weights, n, 0.5f, g);
}
static double focal_fn(const float *x, float *g, int64_t n, void *ctx) {
  const loss_ctx *c = ctx;
  return kiln_loss_focal(x, c->targets, c->weights, n, 0.25f, 2.0f, 0.5f, g);
}
static double focal0_fn(const float *x, float *g, int64_t n, void *ctx) {
  const loss_ctx *c = ctx;
  return kiln_loss_focal(x, c->targets, c->weights, n, 0.5f, 0.0f, 1.0f, g);
}
static double sl1_fn(const float *x, float *g, int64_t n, void *ctx) {
  const loss_ctx *c = ctx;
  return kiln_loss_smooth_l1(x, c->targets, c->weights, n, 0.5f, 0.5f, g);
}

static void test_losses(void) {
  float x[24], t[24], w[24];
  int32_t labels[4] = {2, 0, -1, 5};
  for (int i = 0; i < 24; i++) {
    x[i] = test_rand_float(&rng, -3.0f, 3.0f);
    t[i] = i % 3 == 0 ? 1.0f : (i % 3 == 1 ? 0.0f : 0.3f);
    w[i] = test_rand_float(&rng, 0.5f, 1.5f);
  }
  loss_ctx c = {labels, t, w, 6, 0.1f};
  check_loss("softmax xent + smoothing", xent_fn, &c, x, 24);
  c.weights = NULL;
  c.smoothing = 0.0f;
  check_loss("softmax xent", xent_fn, &c, x, 24);
  c.weights = w;
  check_loss("sigmoid bce", bce_fn, &c, x, 24);
  check_loss("focal", focal_fn, &c, x, 24);
  /* Smooth L1 away from its kink at |d| = beta. */
  for (int i = 0; i < 24; i++)
    if (fabsf(fabsf(x[i] - t[i]) - 0.5f) < 0.01f) x[i] += 0.05f;
  check_loss("smooth l1", sl1_fn, &c, x, 24);

  /* Known values: focal with gamma 0 and alpha 0.5 is half the BCE; the
   * ignored row has zero gradient; a uniform softmax costs log(classes). */
  float g1[24], g2[24];
  double f = kiln_loss_focal(x, t, NULL, 24, 0.5f, 0.0f, 1.0f, g1);
  double b = kiln_loss_sigmoid_bce(x, t, NULL, 24, 1.0f, g2);
  CHECK(fabs(f - 0.5 * b) < 1e-9);
  check_loss("focal gamma 0", focal0_fn, &c, x, 24);
  float zeros[12] = {0};
  int32_t one[2] = {1, -1};
  double l = kiln_loss_softmax_xent(zeros, one, NULL, 2, 6, 0.0f, 1.0f, g1);
  CHECK(fabs(l - log(6.0)) < 1e-9);
  for (int k = 6; k < 12; k++) CHECK(g1[k] == 0.0f);
  float p[2] = {1.0f, -2.0f}, q[2] = {0.0f, 0.0f};
  double s = kiln_loss_smooth_l1(p, q, NULL, 2, 1.0f, 1.0f, g1);
  CHECK(fabs(s - (0.5 + 1.5)) < 1e-12);
  CHECK(g1[0] == 1.0f && g1[1] == -1.0f);
}

/* The conv forward's portable path (im2col + OpenBLAS), chosen at
 * finalize by KILN_KERNELS=ref. */
static void test_conv_ref_path(void) {
  setenv("KILN_KERNELS", "ref", 1);
  test_conv();
  unsetenv("KILN_KERNELS");
}

int main(void) {
  RUN(test_conv);
  RUN(test_conv_ref_path);
  RUN(test_dwconv);
  RUN(test_batchnorm);
  RUN(test_activations);
  RUN(test_pools);
  RUN(test_dense_and_shapes);
  RUN(test_losses);
  return test_summary();
}
