/*
 * Tests of the conv-family operators (runtime/ops_conv.c) through the
 * interpreter: prepare's output shapes, padding and quantization parameters
 * on small built models with hand-computed results, and its refusals (each
 * unsupported or inconsistent model is refused with a message naming the
 * problem). Bit-exactness against LiteRT is checked separately on generated
 * one-op models (see the conv helper's report).
 */
#include <math.h>
#include <string.h>

#include "kernels/ref/conv_ref.h"
#include "kiln/interp.h"
#include "kiln/model.h"
#include "testutil.h"

/* ---- Building models ---- */

typedef struct qparams {
  float scale[8];
  int32_t zp[8];
  int32_t count, axis;
} qparams;

static kiln_quant as_quant(qparams *q) {
  kiln_quant k = {q->count, q->axis, q->scale, q->zp};
  return k;
}

static int32_t add(kiln_model *m, const char *name, kiln_dtype dt, int32_t rank,
                   const int32_t *shape, qparams *q, const void *data) {
  kiln_quant k = {0, 0, NULL, NULL};
  if (q) k = as_quant(q);
  kiln_error err;
  int32_t t = kiln_model_add_tensor(m, name, dt, rank, shape, &k, data, &err);
  if (t < 0) fprintf(stderr, "add_tensor: %s\n", err.msg);
  return t;
}

/* Creates an interpreter; returns its status, message in err. */
static kiln_status create(kiln_model *m, int32_t in, int32_t out, kiln_interp **it,
                          kiln_error *err) {
  *it = NULL;
  kiln_status s = kiln_model_set_io(m, &in, 1, &out, 1, err);
  if (s != KILN_OK) return s;
  return kiln_interp_create(m, NULL, it, err);
}

/* Expects creation to fail with `status` and a message containing `needle`. */
static void expect_refused(kiln_model *m, int32_t in, int32_t out, kiln_status status,
                           const char *needle) {
  kiln_interp *it = NULL;
  kiln_error err;
  memset(&err, 0, sizeof err);
  kiln_status s = create(m, in, out, &it, &err);
  CHECK_MSG(s == status, "status %s, expected %s (%s)", kiln_status_str(s),
            kiln_status_str(status), err.msg);
  CHECK_MSG(s == KILN_OK || strstr(err.msg, needle) != NULL, "message '%s' lacks '%s'", err.msg,
            needle);
  kiln_interp_free(it);
}

/* A quantized conv or depthwise model with knobs the refusal tests turn. */
typedef struct conv_spec {
  int32_t code;
  kiln_dtype dtype, filter_dtype;
  int32_t in_shape[4], filter_shape[4], out_shape[4];
  qparams in_q, filter_q, out_q, bias_q;
  bool bias;
  kiln_op_options opt;
} conv_spec;

static conv_spec s8_conv_spec(void) {
  conv_spec c;
  memset(&c, 0, sizeof c);
  c.code = KILN_OP_CONV_2D;
  c.dtype = c.filter_dtype = KILN_I8;
  memcpy(c.in_shape, (int32_t[4]){1, 3, 3, 2}, sizeof c.in_shape);
  memcpy(c.filter_shape, (int32_t[4]){2, 2, 2, 2}, sizeof c.filter_shape);
  memcpy(c.out_shape, (int32_t[4]){1, 3, 3, 2}, sizeof c.out_shape);
  c.in_q = (qparams){{0.5f}, {-1}, 1, 0};
  c.filter_q = (qparams){{1.0f / 512, 1.0f / 1024}, {0, 0}, 2, 0};
  c.out_q = (qparams){{0.5f}, {3}, 1, 0};
  c.bias_q = (qparams){{0.5f / 512, 0.5f / 1024}, {0, 0}, 2, 0};
  c.bias = true;
  c.opt.type = KILN_OPTS_CONV2D;
  c.opt.padding = KILN_PAD_SAME;
  c.opt.stride_h = c.opt.stride_w = 1;
  c.opt.dilation_h = c.opt.dilation_w = 1;
  c.opt.activation = KILN_ACT_RELU6;
  return c;
}

static const int8_t conv_input[18] = {-128, 127, 5, -7, 0, 33, -1, 99, 12, -45, 64, -64, 7, 8, -9, 10, 127, -128};
static const int8_t conv_filter[16] = {1, -2, 3, -4, 5, -6, 7, -8, -127, 127, 100, -100, 50, -50, 1, 0};
static const int32_t conv_bias[2] = {40, -300};

static kiln_model *build_conv(conv_spec *c, int32_t *in, int32_t *out) {
  kiln_model *m = NULL;
  kiln_error err;
  if (kiln_model_new(&m, &err) != KILN_OK) return NULL;
  const bool q = c->dtype != KILN_F32;
  const size_t fsize = (size_t)c->filter_shape[0] * c->filter_shape[1] * c->filter_shape[2] *
                       c->filter_shape[3];
  static int8_t filter[4096];
  static float ffilter[4096], fbias[64];
  static int32_t bias[64];
  for (size_t i = 0; i < fsize && i < 4096; i++) {
    filter[i] = conv_filter[i % 16];
    ffilter[i] = conv_filter[i % 16] / 128.0f;
  }
  const int32_t oc = c->code == KILN_OP_DEPTHWISE_CONV_2D ? c->filter_shape[3] : c->filter_shape[0];
  for (int32_t i = 0; i < oc && i < 64; i++) {
    bias[i] = conv_bias[i % 2];
    fbias[i] = conv_bias[i % 2] / 1000.0f;
  }
  *in = add(m, "in", c->dtype, 4, c->in_shape, q ? &c->in_q : NULL, NULL);
  int32_t f = add(m, "filter", c->filter_dtype, 4, c->filter_shape,
                  c->filter_dtype != KILN_F32 ? &c->filter_q : NULL,
                  c->filter_dtype == KILN_F32 ? (const void *)ffilter : (const void *)filter);
  int32_t b = -1;
  if (c->bias) {
    int32_t bshape[1] = {oc};
    b = add(m, "bias", q ? KILN_I32 : KILN_F32, 1, bshape, q ? &c->bias_q : NULL,
            q ? (const void *)bias : (const void *)fbias);
  }
  *out = add(m, "out", c->dtype, 4, c->out_shape, q ? &c->out_q : NULL, NULL);
  int32_t inputs[3] = {*in, f, b};
  if (kiln_model_add_op(m, c->code, NULL, inputs, 3, out, 1, &c->opt, NULL, 0, &err) < 0)
    fprintf(stderr, "add_op: %s\n", err.msg);
  return m;
}

/* ---- Results ---- */

/* The int8 conv runs and its output equals the hand-derived parameters fed
 * to the kernel directly: SAME 2x2 filter on 3x3 pads 0 before and 1 after;
 * multipliers 0.5 * 2^-9 / 0.5 = 2^30 * 2^(-8 - 31) and 2^30 * 2^(-9 - 31);
 * RELU6 at scale 0.5, zero point 3 clamps to [3, 15]. */
static void test_conv_s8_runs(void) {
  conv_spec c = s8_conv_spec();
  int32_t in, out;
  kiln_model *m = build_conv(&c, &in, &out);
  REQUIRE(m);
  kiln_interp *it;
  kiln_error err;
  kiln_status s = create(m, in, out, &it, &err);
  CHECK_MSG(s == KILN_OK, "%s", err.msg);
  if (s != KILN_OK) {
    kiln_model_free(m);
    return;
  }
  kiln_tensor_view vin = kiln_interp_input(it, 0);
  REQUIRE(vin.bytes == sizeof conv_input);
  memcpy(vin.data, conv_input, sizeof conv_input);
  CHECK(kiln_interp_invoke(it, &err) == KILN_OK);
  kiln_tensor_view vout = kiln_interp_output(it, 0);

  kiln_conv_params p;
  memset(&p, 0, sizeof p);
  p.batch = 1;
  p.in_h = p.in_w = p.out_h = p.out_w = 3;
  p.in_c = p.out_c = 2;
  p.filter_h = p.filter_w = 2;
  p.groups = p.depth_multiplier = p.stride_h = p.stride_w = p.dilation_h = p.dilation_w = 1;
  p.pad_h = p.pad_w = 0;
  p.pad_h_offset = p.pad_w_offset = 1;
  p.input_offset = 1;
  p.output_offset = 3;
  const int32_t mult[2] = {1 << 30, 1 << 30}, shift[2] = {-8, -9};
  p.multiplier = mult;
  p.shift = shift;
  p.act_min = 3;
  p.act_max = 15;
  int8_t want[18];
  int8_t filter[16];
  memcpy(filter, conv_filter, sizeof filter);
  kiln_s8_conv2d_ref(&p, conv_input, filter, conv_bias, want);
  REQUIRE(vout.bytes == sizeof want);
  CHECK(memcmp(vout.data, want, sizeof want) == 0);
  /* The clamp is active: not every output is at a bound, some are. */
  int at_bound = 0, inside = 0;
  for (int i = 0; i < 18; i++) {
    int8_t v = ((int8_t *)vout.data)[i];
    at_bound += v == 3 || v == 15;
    inside += v > 3 && v < 15;
  }
  CHECK(at_bound > 0 && inside > 0);
  kiln_interp_free(it);
  kiln_model_free(m);
}

/* The declared output shape must match the computed one. */
static void test_conv_output_shape_checked(void) {
  conv_spec c = s8_conv_spec();
  c.opt.padding = KILN_PAD_VALID; /* computes 2x2, declared 3x3 */
  int32_t in, out;
  kiln_model *m = build_conv(&c, &in, &out);
  expect_refused(m, in, out, KILN_ERR_FORMAT, "[1,2,2,2]");
  kiln_model_free(m);
  c.out_shape[1] = c.out_shape[2] = 2;
  m = build_conv(&c, &in, &out);
  expect_refused(m, in, out, KILN_OK, "");
  kiln_model_free(m);
  /* Stride 2 with dilation 2 over 7x7 SAME: out 4x4. */
  c = s8_conv_spec();
  c.in_shape[1] = c.in_shape[2] = 7;
  c.out_shape[1] = c.out_shape[2] = 4;
  c.opt.stride_h = c.opt.stride_w = 2;
  c.opt.dilation_h = c.opt.dilation_w = 2;
  m = build_conv(&c, &in, &out);
  expect_refused(m, in, out, KILN_OK, "");
  kiln_model_free(m);
}

/* Each refused variant of the int8 conv. */
static void test_conv_refusals(void) {
  int32_t in, out;
  kiln_model *m;
  conv_spec c;

  c = s8_conv_spec();
  c.filter_q.zp[1] = 2;
  m = build_conv(&c, &in, &out);
  expect_refused(m, in, out, KILN_ERR_UNSUPPORTED, "zero point 2");
  kiln_model_free(m);

  c = s8_conv_spec();
  c.opt.activation = KILN_ACT_TANH;
  m = build_conv(&c, &in, &out);
  expect_refused(m, in, out, KILN_ERR_UNSUPPORTED, "TANH");
  kiln_model_free(m);

  c = s8_conv_spec();
  c.opt.activation = KILN_ACT_SIGN_BIT;
  m = build_conv(&c, &in, &out);
  expect_refused(m, in, out, KILN_ERR_UNSUPPORTED, "SIGN_BIT");
  kiln_model_free(m);

  c = s8_conv_spec();
  c.filter_q.count = 3; /* 3 scales for 2 output channels */
  c.filter_q.scale[2] = 0.5f;
  m = build_conv(&c, &in, &out);
  expect_refused(m, in, out, KILN_ERR_UNSUPPORTED, "3 quantization scales");
  kiln_model_free(m);

  c = s8_conv_spec();
  c.filter_q.axis = 3; /* per-axis along input channels */
  m = build_conv(&c, &in, &out);
  expect_refused(m, in, out, KILN_ERR_UNSUPPORTED, "axis 3");
  kiln_model_free(m);

  c = s8_conv_spec();
  c.dtype = KILN_F32;
  c.filter_dtype = KILN_I8;
  m = build_conv(&c, &in, &out);
  expect_refused(m, in, out, KILN_ERR_UNSUPPORTED, "hybrid");
  kiln_model_free(m);

  c = s8_conv_spec();
  c.bias_q.zp[0] = 5;
  m = build_conv(&c, &in, &out);
  expect_refused(m, in, out, KILN_ERR_UNSUPPORTED, "zero point 5");
  kiln_model_free(m);

  c = s8_conv_spec();
  c.opt.stride_w = 0;
  m = build_conv(&c, &in, &out);
  expect_refused(m, in, out, KILN_ERR_FORMAT, "strides");
  kiln_model_free(m);

  c = s8_conv_spec();
  c.opt.padding = (kiln_padding)7;
  m = build_conv(&c, &in, &out);
  expect_refused(m, in, out, KILN_ERR_FORMAT, "padding 7");
  kiln_model_free(m);

  c = s8_conv_spec(); /* VALID 4x4 window on a 3x3 input */
  c.filter_shape[1] = c.filter_shape[2] = 4;
  c.opt.padding = KILN_PAD_VALID;
  m = build_conv(&c, &in, &out);
  expect_refused(m, in, out, KILN_ERR_FORMAT, "smaller than the filter");
  kiln_model_free(m);

  c = s8_conv_spec(); /* input channels 2, filter 3 */
  c.filter_shape[3] = 3;
  m = build_conv(&c, &in, &out);
  expect_refused(m, in, out, KILN_ERR_FORMAT, "not a multiple");
  kiln_model_free(m);

  c = s8_conv_spec(); /* 4 input channels in 2 groups, 3 outputs */
  c.in_shape[3] = 4;
  c.filter_shape[0] = 3;
  c.out_shape[3] = 3;
  c.filter_q.count = 1;
  c.bias = false;
  m = build_conv(&c, &in, &out);
  expect_refused(m, in, out, KILN_ERR_FORMAT, "2 groups");
  kiln_model_free(m);

  c = s8_conv_spec(); /* grouped conv that splits: accepted */
  c.in_shape[3] = 4;
  c.filter_q.count = 1;
  m = build_conv(&c, &in, &out);
  expect_refused(m, in, out, KILN_OK, "");
  kiln_model_free(m);

  c = s8_conv_spec();
  c.dtype = c.filter_dtype = KILN_I16;
  m = build_conv(&c, &in, &out);
  expect_refused(m, in, out, KILN_ERR_UNSUPPORTED, "int16");
  kiln_model_free(m);
}

/* uint8 conv: per-tensor weights with a zero point; TFLite's bias-scale
 * check; per-axis uint8 refused. */
static void test_conv_u8(void) {
  conv_spec c = s8_conv_spec();
  c.dtype = c.filter_dtype = KILN_U8;
  c.in_q.zp[0] = 128;
  c.out_q.zp[0] = 255;
  c.filter_q = (qparams){{0.25f}, {131}, 1, 0};
  c.bias_q = (qparams){{0.125f}, {0}, 1, 0}; /* = 0.5 * 0.25 */
  int32_t in, out;
  kiln_model *m = build_conv(&c, &in, &out);
  expect_refused(m, in, out, KILN_OK, "");
  kiln_model_free(m);

  c.bias_q.scale[0] = 0.2f; /* |0.125 - 0.2| / 1.0 > 0.02 */
  m = build_conv(&c, &in, &out);
  expect_refused(m, in, out, KILN_ERR_FORMAT, "0.02");
  kiln_model_free(m);

  c.bias_q.scale[0] = 0.125f;
  c.filter_q = (qparams){{0.25f, 0.5f}, {131, 131}, 2, 0};
  m = build_conv(&c, &in, &out);
  expect_refused(m, in, out, KILN_ERR_UNSUPPORTED, "per-tensor");
  kiln_model_free(m);
}

/* Depthwise: multiplier from shapes, per-axis along axis 3 only. */
static void test_depthwise(void) {
  conv_spec c = s8_conv_spec();
  c.code = KILN_OP_DEPTHWISE_CONV_2D;
  c.opt.type = KILN_OPTS_DEPTHWISE_CONV2D;
  memcpy(c.filter_shape, (int32_t[4]){1, 2, 2, 6}, sizeof c.filter_shape);
  c.out_shape[3] = 6; /* depth multiplier 3 */
  c.filter_q = (qparams){{0.25f, 0.125f, 0.5f, 0.01f, 1.0f, 0.3f}, {0}, 6, 3};
  c.bias_q.count = 1;
  int32_t in, out;
  kiln_model *m = build_conv(&c, &in, &out);
  expect_refused(m, in, out, KILN_OK, "");
  kiln_model_free(m);

  c.filter_q.axis = 0;
  m = build_conv(&c, &in, &out);
  expect_refused(m, in, out, KILN_ERR_UNSUPPORTED, "axis 0");
  kiln_model_free(m);

  c.filter_q.axis = 3;
  c.filter_shape[3] = 5; /* not a multiple of 2 input channels */
  c.out_shape[3] = 5;
  c.filter_q.count = 1;
  m = build_conv(&c, &in, &out);
  expect_refused(m, in, out, KILN_ERR_FORMAT, "not a multiple");
  kiln_model_free(m);

  c.filter_shape[3] = 6;
  c.out_shape[3] = 6;
  c.filter_shape[0] = 2;
  m = build_conv(&c, &in, &out);
  expect_refused(m, in, out, KILN_ERR_FORMAT, "first dimension 2");
  kiln_model_free(m);
}

/* ---- Fully connected ---- */

static kiln_model *build_fc(int32_t in_rank, const int32_t *in_shape, int32_t units,
                            int32_t depth, int32_t out_rank, const int32_t *out_shape,
                            const kiln_op_options *opt, bool bias, int32_t *in, int32_t *out) {
  kiln_model *m = NULL;
  kiln_error err;
  if (kiln_model_new(&m, &err) != KILN_OK) return NULL;
  static float w[4096], b[64];
  for (int i = 0; i < 4096; i++) w[i] = (float)((i * 7) % 11 - 5) / 8.0f;
  for (int i = 0; i < 64; i++) b[i] = (float)i / 4.0f;
  int32_t wshape[2] = {units, depth}, bshape[1] = {units};
  *in = add(m, "in", KILN_F32, in_rank, in_shape, NULL, NULL);
  int32_t wt = add(m, "w", KILN_F32, 2, wshape, NULL, w);
  int32_t bt = bias ? add(m, "b", KILN_F32, 1, bshape, NULL, b) : -1;
  *out = add(m, "out", KILN_F32, out_rank, out_shape, NULL, NULL);
  int32_t inputs[3] = {*in, wt, bt};
  kiln_model_add_op(m, KILN_OP_FULLY_CONNECTED, NULL, inputs, 3, out, 1, opt, NULL, 0, &err);
  return m;
}

static void test_fc(void) {
  kiln_op_options opt;
  memset(&opt, 0, sizeof opt);
  opt.type = KILN_OPTS_FULLY_CONNECTED;
  int32_t in, out;
  const int32_t in_shape[3] = {2, 3, 4};
  /* Flattened: 6 rows of 4. */
  kiln_model *m = build_fc(3, in_shape, 5, 4, 2, (int32_t[2]){6, 5}, &opt, true, &in, &out);
  expect_refused(m, in, out, KILN_OK, "");
  kiln_model_free(m);
  /* keep_num_dims keeps [2, 3, units]. */
  opt.keep_num_dims = true;
  m = build_fc(3, in_shape, 5, 4, 3, (int32_t[3]){2, 3, 5}, &opt, false, &in, &out);
  expect_refused(m, in, out, KILN_OK, "");
  kiln_model_free(m);
  m = build_fc(3, in_shape, 5, 4, 2, (int32_t[2]){6, 5}, &opt, false, &in, &out);
  expect_refused(m, in, out, KILN_ERR_FORMAT, "[2,3,5]");
  kiln_model_free(m);
  /* keep_num_dims needs the last input dimension to be the depth. */
  m = build_fc(3, (int32_t[3]){2, 4, 3}, 5, 4, 3, (int32_t[3]){2, 4, 5}, &opt, false, &in, &out);
  expect_refused(m, in, out, KILN_ERR_FORMAT, "keep_num_dims");
  kiln_model_free(m);
  opt.keep_num_dims = false;
  /* 24 elements do not split into rows of 5. */
  m = build_fc(3, in_shape, 5, 5, 2, (int32_t[2]){4, 5}, &opt, false, &in, &out);
  expect_refused(m, in, out, KILN_ERR_FORMAT, "not a multiple");
  kiln_model_free(m);
  opt.weights_format = 1;
  m = build_fc(3, in_shape, 5, 4, 2, (int32_t[2]){6, 5}, &opt, false, &in, &out);
  expect_refused(m, in, out, KILN_ERR_UNSUPPORTED, "shuffled");
  kiln_model_free(m);
  opt.weights_format = 0;
  opt.activation = KILN_ACT_TANH;
  m = build_fc(3, in_shape, 5, 4, 2, (int32_t[2]){6, 5}, &opt, false, &in, &out);
  expect_refused(m, in, out, KILN_ERR_UNSUPPORTED, "TANH");
  kiln_model_free(m);

  /* A run: one row, RELU6, bias; checked against a hand loop. */
  opt.activation = KILN_ACT_RELU6;
  m = build_fc(2, (int32_t[2]){1, 4}, 3, 4, 2, (int32_t[2]){1, 3}, &opt, true, &in, &out);
  kiln_interp *it;
  kiln_error err;
  REQUIRE(create(m, in, out, &it, &err) == KILN_OK);
  const float x[4] = {1.0f, -2.0f, 3.0f, 8.0f};
  memcpy(kiln_interp_input(it, 0).data, x, sizeof x);
  REQUIRE(kiln_interp_invoke(it, &err) == KILN_OK);
  const float *y = kiln_interp_output(it, 0).data;
  for (int o = 0; o < 3; o++) {
    float acc = 0.0f;
    for (int d = 0; d < 4; d++) acc += x[d] * ((float)(((o * 4 + d) * 7) % 11 - 5) / 8.0f);
    acc += (float)o / 4.0f;
    acc = acc < 0.0f ? 0.0f : (acc > 6.0f ? 6.0f : acc);
    CHECK_MSG(y[o] == acc, "fc output %d: %g vs %g", o, (double)y[o], (double)acc);
  }
  kiln_interp_free(it);
  kiln_model_free(m);
}

/* ---- Transpose conv ---- */

static kiln_model *build_tconv(bool const_shape, const int32_t *out_shape, kiln_padding pad,
                               int32_t stride, int32_t *in, int32_t *out) {
  kiln_model *m = NULL;
  kiln_error err;
  if (kiln_model_new(&m, &err) != KILN_OK) return NULL;
  static float w[3 * 3 * 3 * 2];
  for (int i = 0; i < 54; i++) w[i] = (float)(i % 5) - 2.0f;
  int32_t four[1] = {4};
  int32_t shape_t = add(m, "oshape", KILN_I32, 1, four, NULL, const_shape ? out_shape : NULL);
  int32_t wt = add(m, "w", KILN_F32, 4, (int32_t[4]){3, 3, 3, 2}, NULL, w);
  *in = add(m, "in", KILN_F32, 4, (int32_t[4]){1, 4, 4, 2}, NULL, NULL);
  *out = add(m, "out", KILN_F32, 4, out_shape, NULL, NULL);
  kiln_op_options opt;
  memset(&opt, 0, sizeof opt);
  opt.type = KILN_OPTS_TRANSPOSE_CONV;
  opt.padding = pad;
  opt.stride_h = opt.stride_w = stride;
  int32_t inputs[3] = {shape_t, wt, *in};
  kiln_model_add_op(m, KILN_OP_TRANSPOSE_CONV, NULL, inputs, 3, out, 1, &opt, NULL, 0, &err);
  if (!const_shape) { /* output_shape as a second graph input */
    int32_t ins[2] = {*in, shape_t};
    kiln_model_set_io(m, ins, 2, out, 1, &err);
  }
  return m;
}

static void test_transpose_conv(void) {
  int32_t in, out;
  const int32_t shape8[4] = {1, 8, 8, 3};
  kiln_model *m = build_tconv(true, shape8, KILN_PAD_SAME, 2, &in, &out);
  expect_refused(m, in, out, KILN_OK, "");
  kiln_model_free(m);
  const int32_t bad_c[4] = {1, 8, 8, 4};
  m = build_tconv(true, bad_c, KILN_PAD_SAME, 2, &in, &out);
  expect_refused(m, in, out, KILN_ERR_FORMAT, "output_shape");
  kiln_model_free(m);
  m = build_tconv(false, shape8, KILN_PAD_SAME, 2, &in, &out);
  kiln_interp *it = NULL;
  kiln_error err;
  CHECK(kiln_interp_create(m, NULL, &it, &err) == KILN_ERR_UNSUPPORTED &&
        strstr(err.msg, "constant") != NULL);
  kiln_interp_free(it);
  kiln_model_free(m);
}

/* ---- MediaPipe Convolution2DTransposeBias ---- */

static kiln_model *build_mp(const void *opts, size_t opts_bytes, const int32_t *out_shape,
                            int32_t *in, int32_t *out) {
  kiln_model *m = NULL;
  kiln_error err;
  if (kiln_model_new(&m, &err) != KILN_OK) return NULL;
  static float w[2 * 3 * 3 * 2], b[2] = {0.5f, -0.25f};
  for (int i = 0; i < 36; i++) w[i] = (float)(i % 7) / 4.0f - 0.75f;
  *in = add(m, "in", KILN_F32, 4, (int32_t[4]){1, 5, 4, 2}, NULL, NULL);
  int32_t wt = add(m, "w", KILN_F32, 4, (int32_t[4]){2, 3, 3, 2}, NULL, w);
  int32_t bt = add(m, "b", KILN_F32, 1, (int32_t[1]){2}, NULL, b);
  *out = add(m, "out", KILN_F32, 4, out_shape, NULL, NULL);
  int32_t inputs[3] = {*in, wt, bt};
  kiln_model_add_op(m, KILN_OP_CUSTOM, "Convolution2DTransposeBias", inputs, 3, out, 1, NULL,
                    opts, opts_bytes, &err);
  return m;
}

static void test_mediapipe_transpose(void) {
  /* SAME, stride 2: height 5 -> 2*4 + 3 - max(0, 3 - 0 - 1) = 9; width
   * 4 -> 2*3 + 3 - (3 - 1 - 1) = 8. Little-endian {1, 2, 2}. */
  const uint8_t same2[12] = {1, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0};
  int32_t in, out;
  kiln_model *m = build_mp(same2, 12, (int32_t[4]){1, 9, 8, 2}, &in, &out);
  kiln_interp *it;
  kiln_error err;
  kiln_status s = create(m, in, out, &it, &err);
  CHECK_MSG(s == KILN_OK, "%s", err.msg);
  if (s == KILN_OK) {
    /* A zero input leaves exactly the bias. */
    kiln_tensor_view vin = kiln_interp_input(it, 0);
    memset(vin.data, 0, vin.bytes);
    CHECK(kiln_interp_invoke(it, &err) == KILN_OK);
    const float *y = kiln_interp_output(it, 0).data;
    CHECK(y[0] == 0.5f && y[1] == -0.25f && y[9 * 8 * 2 - 1] == -0.25f);
    kiln_interp_free(it);
  }
  kiln_model_free(m);
  /* VALID, stride w 1, stride h 2: 2*4 + 3 = 11, 1*3 + 3 = 6. */
  const uint8_t valid[12] = {2, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0};
  m = build_mp(valid, 12, (int32_t[4]){1, 11, 6, 2}, &in, &out);
  expect_refused(m, in, out, KILN_OK, "");
  kiln_model_free(m);
  const uint8_t longer[16] = {1, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0};
  m = build_mp(longer, 16, (int32_t[4]){1, 9, 8, 2}, &in, &out);
  expect_refused(m, in, out, KILN_ERR_UNSUPPORTED, "16 bytes");
  kiln_model_free(m);
  const uint8_t unknown_pad[12] = {0, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0};
  m = build_mp(unknown_pad, 12, (int32_t[4]){1, 9, 8, 2}, &in, &out);
  expect_refused(m, in, out, KILN_ERR_UNSUPPORTED, "padding 0");
  kiln_model_free(m);
  const uint8_t zero_stride[12] = {1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0};
  m = build_mp(zero_stride, 12, (int32_t[4]){1, 9, 8, 2}, &in, &out);
  expect_refused(m, in, out, KILN_ERR_FORMAT, "strides");
  kiln_model_free(m);
}

/* The shared selfie model's Convolution2DTransposeBias prepares: 128x128x16
 * to 256x256x1, as its declared output shape says. */
static void test_selfie_model(void) {
  kiln_model *m = NULL;
  kiln_error err;
  if (kiln_model_load(test_model_path("selfie_segmentation.tflite"), &m, &err) != KILN_OK) {
    fprintf(stderr, "skipping: %s\n", err.msg);
    CHECK(true);
    return;
  }
  int found = 0;
  for (int32_t i = 0; i < m->n_ops; i++) {
    const kiln_op *op = &m->ops[i];
    if (op->code != KILN_OP_CUSTOM) continue;
    found++;
    CHECK(strcmp(op->custom_code, "Convolution2DTransposeBias") == 0);
    CHECK(op->custom_options_bytes == 12);
    const kiln_tensor *o = &m->tensors[op->outputs[0]];
    CHECK(o->rank == 4 && o->shape[1] == 256 && o->shape[2] == 256 && o->shape[3] == 1);
  }
  CHECK(found == 1);
  kiln_interp *it = NULL;
  kiln_status s = kiln_interp_create(m, NULL, &it, &err);
  /* Other families' ops may still be missing; this op must not be the cause. */
  CHECK_MSG(s == KILN_OK || strstr(err.msg, "Convolution2DTransposeBias") == NULL, "%s", err.msg);
  kiln_interp_free(it);
  kiln_model_free(m);
}

int main(void) {
  RUN(test_conv_s8_runs);
  RUN(test_conv_output_shape_checked);
  RUN(test_conv_refusals);
  RUN(test_conv_u8);
  RUN(test_depthwise);
  RUN(test_fc);
  RUN(test_transpose_conv);
  RUN(test_mediapipe_transpose);
  RUN(test_selfie_model);
  return test_summary();
}
