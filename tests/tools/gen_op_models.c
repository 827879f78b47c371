/*
 * gen_op_models: writes one small .tflite model per test case with kiln's
 * writer (random weights and quantization parameters from a fixed seed,
 * with edge cases: zero points at their limits, per-axis scales spanning
 * 1e-6..1, saturating output scales, every fused activation), plus a
 * manifest. tests/conformance/test_ops.py runs each model in LiteRT's
 * reference kernels and in kiln and requires int8/uint8 outputs to be
 * bit-identical and float outputs to agree within 1e-5 of their range.
 *
 * usage: gen_op_models OUT_DIR [SEED]
 * manifest line: NAME KIND   (KIND: exact | float)
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "kiln/interp.h"
#include "kiln/model.h"
#include "testutil.h"

typedef struct gen {
  const char *dir;
  FILE *manifest;
  test_rng rng;
  kiln_model *m;
  kiln_error err;
  int count;
  int failures;
  int32_t inputs[8];
  int n_inputs;
} gen;

/* ---- Random parameters ---- */

static float log_uniform(gen *g, float lo, float hi) {
  return expf(test_rand_float(&g->rng, logf(lo), logf(hi)));
}

/* A zero point for dtype: sometimes at the limits, else random. */
static int32_t pick_zp(gen *g, kiln_dtype dt) {
  int32_t lo = dt == KILN_U8 ? 0 : -128, hi = dt == KILN_U8 ? 255 : 127;
  switch (test_rand_int(&g->rng, 0, 5)) {
    case 0: return lo;
    case 1: return hi;
    default: return test_rand_int(&g->rng, lo, hi);
  }
}

static void begin(gen *g) {
  if (kiln_model_new(&g->m, &g->err) != KILN_OK) {
    fprintf(stderr, "gen: %s\n", g->err.msg);
    exit(1);
  }
  g->n_inputs = 0;
}

static void finish(gen *g, const char *name, int32_t output, const char *kind) {
  kiln_model_set_io(g->m, g->inputs, g->n_inputs, &output, 1, &g->err);
  char path[4096];
  snprintf(path, sizeof path, "%s/%s.tflite", g->dir, name);
  if (kiln_model_save(g->m, path, &g->err) != KILN_OK) {
    fprintf(stderr, "gen: %s: %s\n", name, g->err.msg);
    g->failures++;
  } else {
    fprintf(g->manifest, "%s %s\n", name, kind);
    g->count++;
  }
  kiln_model_free(g->m);
  g->m = NULL;
}

static int32_t tensor(gen *g, const char *name, kiln_dtype dt, int rank, const int32_t *shape,
                      float scale, int32_t zp, const void *data) {
  kiln_quant q = {1, 0, &scale, &zp};
  bool quantized = dt == KILN_I8 || dt == KILN_U8;
  int32_t t = kiln_model_add_tensor(g->m, name, dt, rank, shape, quantized ? &q : NULL, data, &g->err);
  if (t < 0) {
    fprintf(stderr, "gen: %s\n", g->err.msg);
    exit(1);
  }
  return t;
}

static int32_t input(gen *g, const char *name, kiln_dtype dt, int rank, const int32_t *shape,
                     float scale, int32_t zp) {
  int32_t t = tensor(g, name, dt, rank, shape, scale, zp, NULL);
  g->inputs[g->n_inputs++] = t;
  return t;
}

static int32_t op(gen *g, int32_t code, const int32_t *ins, int n_ins, int32_t out,
                  const kiln_op_options *o) {
  kiln_op_options none = {.new_shape_count = -1};
  if (kiln_model_add_op(g->m, code, NULL, ins, n_ins, &out, 1, o ? o : &none, NULL, 0, &g->err) < 0) {
    fprintf(stderr, "gen: %s\n", g->err.msg);
    exit(1);
  }
  return out;
}

static int64_t count(int rank, const int32_t *shape) {
  int64_t n = 1;
  for (int i = 0; i < rank; i++) n *= shape[i];
  return n;
}

static const char *dt_tag(kiln_dtype dt) {
  return dt == KILN_F32 ? "f32" : dt == KILN_I8 ? "s8" : "u8";
}

static const char *kind_of(kiln_dtype dt) { return dt == KILN_F32 ? "float" : "exact"; }

/* ---- Output calibration ----
 * A quantized case's output scale and zero point are chosen like a
 * post-training quantizer would: a float copy of the model (dequantized
 * weights and biases) runs in kiln on random inputs spanning the quantized
 * inputs' real ranges, and the output's observed range (widened to include
 * 0) sets them. `squeeze` < 1 narrows the range so outputs saturate. */

static float real_of(const kiln_tensor *t, int64_t i, int32_t c) {
  float s = t->quant.scale[c];
  int32_t z = t->quant.zero_point[c];
  switch (t->dtype) {
    case KILN_I8: return s * (float)(((const int8_t *)t->data)[i] - z);
    case KILN_U8: return s * (float)(((const uint8_t *)t->data)[i] - z);
    case KILN_I32: return s * (float)(((const int32_t *)t->data)[i] - z);
    default: return 0;
  }
}

static kiln_model *float_clone(const kiln_model *q, const int32_t *inputs, int n_inputs,
                               int32_t output) {
  kiln_model *f;
  kiln_error err;
  if (kiln_model_new(&f, &err) != KILN_OK) return NULL;
  for (int32_t i = 0; i < q->n_tensors; i++) {
    const kiln_tensor *t = &q->tensors[i];
    bool quantized = t->quant.count > 0 && (t->dtype == KILN_I8 || t->dtype == KILN_U8 ||
                                            (t->dtype == KILN_I32 && t->data));
    if (!quantized) {
      kiln_model_add_tensor(f, t->name, t->dtype, t->rank, t->shape, NULL, t->data, &err);
      continue;
    }
    float *data = NULL;
    if (t->data) {
      int64_t n = kiln_tensor_elements(t), inner = 1;
      for (int32_t d = t->quant.axis + 1; d < t->rank; d++) inner *= t->shape[d];
      data = malloc((size_t)(n ? n : 1) * sizeof *data);
      for (int64_t k = 0; k < n; k++) {
        int32_t c = t->quant.count > 1 ? (int32_t)((k / inner) % t->shape[t->quant.axis]) : 0;
        data[k] = real_of(t, k, c);
      }
    }
    kiln_model_add_tensor(f, t->name, KILN_F32, t->rank, t->shape, NULL, data, &err);
    free(data);
  }
  for (int32_t i = 0; i < q->n_ops; i++) {
    const kiln_op *o = &q->ops[i];
    kiln_model_add_op(f, o->code, o->custom_code, o->inputs, o->n_inputs, o->outputs, o->n_outputs,
                      &o->options, o->custom_options, o->custom_options_bytes, &err);
  }
  kiln_model_set_io(f, inputs, n_inputs, &output, 1, &err);
  return f;
}

static void calibrate(gen *g, int32_t out, float squeeze) {
  kiln_model *f = float_clone(g->m, g->inputs, g->n_inputs, out);
  kiln_interp *it;
  if (!f || kiln_interp_create(f, NULL, &it, &g->err) != KILN_OK) {
    fprintf(stderr, "gen: calibration: %s\n", g->err.msg);
    exit(1);
  }
  float lo = 0, hi = 0;
  for (int rep = 0; rep < 4; rep++) {
    for (int32_t k = 0; k < g->n_inputs; k++) {
      const kiln_tensor *qt = &g->m->tensors[g->inputs[k]];
      kiln_tensor_view v = kiln_interp_input(it, k);
      int32_t qmin = qt->dtype == KILN_U8 ? 0 : -128, qmax = qt->dtype == KILN_U8 ? 255 : 127;
      float *x = v.data;
      for (size_t e = 0; e < v.bytes / 4; e++)
        x[e] = qt->quant.scale[0] * (float)(test_rand_int(&g->rng, qmin, qmax) - qt->quant.zero_point[0]);
    }
    kiln_interp_invoke(it, &g->err);
    kiln_tensor_view o = kiln_interp_tensor(it, out);
    const float *y = o.data;
    for (size_t e = 0; e < o.bytes / 4; e++) {
      if (y[e] < lo) lo = y[e];
      if (y[e] > hi) hi = y[e];
    }
  }
  kiln_interp_free(it);
  kiln_model_free(f);
  kiln_tensor *t = &g->m->tensors[out];
  int32_t qmin = t->dtype == KILN_U8 ? 0 : -128, qmax = t->dtype == KILN_U8 ? 255 : 127;
  lo *= squeeze;
  hi *= squeeze;
  float scale = (hi - lo) / (float)(qmax - qmin);
  if (!(scale > 1e-9f)) scale = 1e-3f;
  int32_t zp = qmin - (int32_t)lroundf(lo / scale);
  t->quant.scale[0] = scale;
  t->quant.zero_point[0] = zp < qmin ? qmin : (zp > qmax ? qmax : zp);
}

/* ---- Conv family ---- */

typedef struct conv_case {
  int n, h, w, cin, cout, kh, kw, stride_h, stride_w, dil_h, dil_w, mult;
  kiln_padding pad;
  kiln_activation act;
  bool bias;
} conv_case;

/* Weights of a conv-like op with out channels `oc` along axis qaxis. */
static int32_t weights(gen *g, kiln_dtype dt, int rank, const int32_t *shape, int qaxis, int oc,
                       bool per_axis, float *w_scale_mean) {
  int64_t n = count(rank, shape);
  int32_t t;
  if (dt == KILN_F32) {
    float *w = malloc((size_t)n * sizeof *w);
    for (int64_t i = 0; i < n; i++) w[i] = test_rand_float(&g->rng, -1.0f, 1.0f);
    t = kiln_model_add_tensor(g->m, "weights", dt, rank, shape, NULL, w, &g->err);
    free(w);
    *w_scale_mean = 1.0f;
    return t;
  }
  uint8_t *w = malloc((size_t)n);
  /* uint8 weights: a zero point near the middle keeps the accumulator's
   * mean small, so outputs spread instead of sitting at one clamp. */
  int32_t wzp = dt == KILN_U8 ? test_rand_int(&g->rng, 100, 155) : 0;
  for (int64_t i = 0; i < n; i++) {
    int32_t v = dt == KILN_I8 ? test_rand_int(&g->rng, -127, 127) : test_rand_int(&g->rng, 0, 255);
    w[i] = (uint8_t)v;
  }
  int nq = per_axis ? oc : 1;
  float *scales = malloc((size_t)nq * sizeof *scales);
  int32_t *zps = calloc((size_t)nq, sizeof *zps);
  float sum = 0;
  for (int i = 0; i < nq; i++) {
    /* Per-axis scales span 1e-6..1; the first and last channel hit the ends. */
    scales[i] = i == 0 && nq > 2 ? 1e-6f : (i == nq - 1 && nq > 2 ? 1.0f : log_uniform(g, 1e-3f, 0.05f));
    zps[i] = wzp;
    sum += scales[i];
  }
  *w_scale_mean = sum / (float)nq;
  kiln_quant q = {nq, qaxis, scales, zps};
  t = kiln_model_add_tensor(g->m, "weights", dt, rank, shape, &q, w, &g->err);
  free(w);
  free(scales);
  free(zps);
  return t;
}

static int32_t bias_tensor(gen *g, kiln_dtype dt, int oc, float in_scale, const kiln_tensor *w,
                           bool saturating) {
  int32_t shape[1] = {oc};
  if (dt == KILN_F32) {
    float *b = malloc((size_t)oc * sizeof *b);
    for (int i = 0; i < oc; i++) b[i] = test_rand_float(&g->rng, -2.0f, 2.0f);
    int32_t t = kiln_model_add_tensor(g->m, "bias", KILN_F32, 1, shape, NULL, b, &g->err);
    free(b);
    return t;
  }
  int32_t *b = malloc((size_t)oc * sizeof *b);
  float *scales = malloc((size_t)oc * sizeof *scales);
  int32_t *zps = calloc((size_t)oc, sizeof *zps);
  for (int i = 0; i < oc; i++) {
    b[i] = test_rand_int(&g->rng, -20000, 20000);
    if (i == 1 && saturating) b[i] = 2000000000; /* the accumulator saturates */
    scales[i] = in_scale * w->quant.scale[w->quant.count > 1 ? i : 0];
  }
  kiln_quant q = {w->quant.count > 1 ? oc : 1, 0, scales, zps};
  int32_t t = kiln_model_add_tensor(g->m, "bias", KILN_I32, 1, shape, &q, b, &g->err);
  free(b);
  free(scales);
  free(zps);
  return t;
}

static int out_size(int in, int k, int stride, int dil, kiln_padding pad) {
  int ek = (k - 1) * dil + 1;
  return pad == KILN_PAD_SAME ? (in + stride - 1) / stride : (in - ek + stride) / stride;
}

static void gen_conv(gen *g, const char *name, kiln_dtype dt, const conv_case *c, bool depthwise) {
  begin(g);
  float in_scale = dt == KILN_F32 ? 0 : log_uniform(g, 0.005f, 0.1f);
  int32_t in_shape[4] = {c->n, c->h, c->w, c->cin};
  int32_t izp = dt == KILN_U8 && c->act != KILN_ACT_NONE ? test_rand_int(&g->rng, 110, 145) : pick_zp(g, dt);
  int32_t in = input(g, "input", dt, 4, in_shape, in_scale, izp);
  int oc = depthwise ? c->cin * c->mult : c->cout;
  int32_t w_shape[4] = {depthwise ? 1 : oc, c->kh, c->kw, depthwise ? oc : c->cin};
  float wmean;
  int32_t w = weights(g, dt, 4, w_shape, depthwise ? 3 : 0, oc, dt == KILN_I8, &wmean);
  int32_t b = c->bias ? bias_tensor(g, dt, oc, in_scale, &g->m->tensors[w], strstr(name, "_sat") != NULL) : -1;
  int oh = out_size(c->h, c->kh, c->stride_h, c->dil_h, c->pad);
  int ow = out_size(c->w, c->kw, c->stride_w, c->dil_w, c->pad);
  int32_t out_shape[4] = {c->n, oh, ow, oc};
  /* Output scale near the accumulator's spread, times 0.05..20 so some
   * cases saturate and some use few levels. */
  int depth = c->kh * c->kw * (depthwise ? 1 : c->cin);
  float out_scale = dt == KILN_F32 ? 0
                    : in_scale * wmean * 70.0f * sqrtf((float)depth) * log_uniform(g, 0.05f, 20.0f);
  int32_t out = tensor(g, "output", dt, 4, out_shape, out_scale, pick_zp(g, dt), NULL);
  kiln_op_options o = {.new_shape_count = -1, .padding = c->pad, .stride_w = c->stride_w,
                       .stride_h = c->stride_h, .dilation_w = c->dil_w, .dilation_h = c->dil_h,
                       .activation = c->act};
  o.type = depthwise ? KILN_OPTS_DEPTHWISE_CONV2D : KILN_OPTS_CONV2D;
  if (depthwise) o.depth_multiplier = c->mult;
  op(g, depthwise ? KILN_OP_DEPTHWISE_CONV_2D : KILN_OP_CONV_2D, (int32_t[]){in, w, b}, 3, out, &o);
  if (dt != KILN_F32) calibrate(g, out, strstr(name, "_sat") ? 0.3f : 1.0f);
  finish(g, name, out, kind_of(dt));
}

static void gen_conv_cases(gen *g) {
  static const conv_case cases[] = {
      {1, 7, 7, 3, 5, 3, 3, 1, 1, 1, 1, 1, KILN_PAD_SAME, KILN_ACT_NONE, true},
      {1, 8, 9, 17, 9, 3, 3, 2, 2, 1, 1, 1, KILN_PAD_SAME, KILN_ACT_RELU, true},
      {2, 6, 5, 4, 7, 1, 1, 1, 1, 1, 1, 1, KILN_PAD_VALID, KILN_ACT_RELU6, true},
      {1, 11, 10, 5, 3, 3, 2, 1, 2, 2, 1, 1, KILN_PAD_VALID, KILN_ACT_RELU_N1_TO_1, true},
      {1, 9, 9, 8, 16, 5, 5, 2, 1, 1, 2, 1, KILN_PAD_SAME, KILN_ACT_NONE, true},
      {1, 1, 1, 33, 10, 1, 1, 1, 1, 1, 1, 1, KILN_PAD_VALID, KILN_ACT_NONE, true},
      {1, 10, 10, 3, 4, 3, 3, 2, 2, 1, 1, 1, KILN_PAD_VALID, KILN_ACT_RELU6, true},
  };
  static const conv_case dw_cases[] = {
      {1, 7, 7, 3, 0, 3, 3, 1, 1, 1, 1, 1, KILN_PAD_SAME, KILN_ACT_NONE, true},
      {1, 9, 8, 17, 0, 3, 3, 2, 2, 1, 1, 1, KILN_PAD_SAME, KILN_ACT_RELU6, true},
      {2, 6, 6, 5, 0, 5, 5, 1, 1, 1, 1, 2, KILN_PAD_SAME, KILN_ACT_RELU, true},
      {1, 12, 11, 4, 0, 3, 3, 1, 2, 2, 2, 3, KILN_PAD_VALID, KILN_ACT_NONE, true},
      {1, 10, 10, 8, 0, 5, 5, 2, 2, 1, 1, 1, KILN_PAD_VALID, KILN_ACT_RELU_N1_TO_1, true},
  };
  const kiln_dtype dts[3] = {KILN_I8, KILN_U8, KILN_F32};
  char name[128];
  for (int d = 0; d < 3; d++) {
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
      snprintf(name, sizeof name, "conv2d_%s_%zu%s", dt_tag(dts[d]), i, i == 0 ? "_sat" : "");
      gen_conv(g, name, dts[d], &cases[i], false);
    }
    for (size_t i = 0; i < sizeof dw_cases / sizeof dw_cases[0]; i++) {
      snprintf(name, sizeof name, "depthwise_%s_%zu%s", dt_tag(dts[d]), i, i == 0 ? "_sat" : "");
      gen_conv(g, name, dts[d], &dw_cases[i], true);
    }
  }
}

static void gen_fc(gen *g, const char *name, kiln_dtype dt, int batch, int in_depth, int units,
                   bool bias, bool keep_dims, kiln_activation act) {
  begin(g);
  float in_scale = dt == KILN_F32 ? 0 : log_uniform(g, 0.005f, 0.1f);
  /* keep_num_dims keeps every input dimension but the last, which must
   * then equal in_depth; otherwise the input is flattened to [-1, in_depth]. */
  int32_t in_shape[3] = {batch, keep_dims ? 1 : 2, keep_dims ? in_depth : in_depth / 2};
  int32_t izp = dt == KILN_U8 && act != KILN_ACT_NONE ? test_rand_int(&g->rng, 110, 145) : pick_zp(g, dt);
  int32_t in = input(g, "input", dt, 3, in_shape, in_scale, izp);
  int32_t w_shape[2] = {units, in_depth};
  float wmean;
  int32_t w = weights(g, dt, 2, w_shape, 0, units, false, &wmean);
  int32_t b = bias ? bias_tensor(g, dt, units, in_scale, &g->m->tensors[w], false) : -1;
  int32_t out_shape[3] = {batch, keep_dims ? 1 : units, units};
  int out_rank = keep_dims ? 3 : 2;
  float out_scale = dt == KILN_F32 ? 0 : in_scale * wmean * 60.0f * sqrtf((float)in_depth) * log_uniform(g, 0.1f, 10.0f);
  int32_t out = tensor(g, "output", dt, out_rank, out_shape, out_scale, pick_zp(g, dt), NULL);
  kiln_op_options o = {.type = KILN_OPTS_FULLY_CONNECTED, .new_shape_count = -1, .activation = act,
                       .keep_num_dims = keep_dims};
  op(g, KILN_OP_FULLY_CONNECTED, (int32_t[]){in, w, b}, 3, out, &o);
  if (dt != KILN_F32) calibrate(g, out, 1.0f);
  finish(g, name, out, kind_of(dt));
}

static void gen_fc_cases(gen *g) {
  const kiln_dtype dts[3] = {KILN_I8, KILN_U8, KILN_F32};
  char name[128];
  for (int d = 0; d < 3; d++) {
    snprintf(name, sizeof name, "fc_%s_0", dt_tag(dts[d]));
    gen_fc(g, name, dts[d], 1, 34, 7, true, false, KILN_ACT_NONE);
    snprintf(name, sizeof name, "fc_%s_1", dt_tag(dts[d]));
    gen_fc(g, name, dts[d], 3, 16, 19, false, false, KILN_ACT_RELU);
    snprintf(name, sizeof name, "fc_%s_2", dt_tag(dts[d]));
    gen_fc(g, name, dts[d], 2, 20, 5, true, true, KILN_ACT_RELU);
    /* Many outputs: the reference's double-precision rescale meets exact
     * rounding ties here that small cases never do. */
    snprintf(name, sizeof name, "fc_%s_3", dt_tag(dts[d]));
    gen_fc(g, name, dts[d], 16, 512, 600, true, false, KILN_ACT_NONE);
  }
}

/* TRANSPOSE_CONV(output_shape, weights OHWI, input, bias). */
static void gen_transpose_conv(gen *g, const char *name, kiln_dtype dt, int h, int w, int cin,
                               int cout, int k, int stride, kiln_padding pad) {
  begin(g);
  float in_scale = dt == KILN_F32 ? 0 : log_uniform(g, 0.005f, 0.1f);
  int32_t in = input(g, "input", dt, 4, (int32_t[]){1, h, w, cin}, in_scale, pick_zp(g, dt));
  int oh = pad == KILN_PAD_SAME ? h * stride : (h - 1) * stride + k;
  int ow = pad == KILN_PAD_SAME ? w * stride : (w - 1) * stride + k;
  int32_t out_shape[4] = {1, oh, ow, cout};
  int32_t shape_t = kiln_model_add_tensor(g->m, "output_shape", KILN_I32, 1, (int32_t[]){4}, NULL,
                                          out_shape, &g->err);
  float wmean;
  int32_t wt = weights(g, dt, 4, (int32_t[]){cout, k, k, cin}, 0, cout, dt == KILN_I8, &wmean);
  int32_t b = bias_tensor(g, dt, cout, in_scale, &g->m->tensors[wt], false);
  int32_t out = tensor(g, "output", dt, 4, out_shape, in_scale * wmean * 100.0f, pick_zp(g, dt), NULL);
  kiln_op_options o = {.type = KILN_OPTS_TRANSPOSE_CONV, .new_shape_count = -1, .padding = pad,
                       .stride_w = stride, .stride_h = stride};
  op(g, KILN_OP_TRANSPOSE_CONV, (int32_t[]){shape_t, wt, in, b}, 4, out, &o);
  if (dt != KILN_F32) calibrate(g, out, 1.0f);
  finish(g, name, out, kind_of(dt));
}

static void gen_transpose_conv_cases(gen *g) {
  const kiln_dtype dts[3] = {KILN_I8, KILN_U8, KILN_F32};
  char name[128];
  for (int d = 0; d < 3; d++) {
    snprintf(name, sizeof name, "transpose_conv_%s_0", dt_tag(dts[d]));
    gen_transpose_conv(g, name, dts[d], 4, 5, 3, 6, 3, 2, KILN_PAD_SAME);
    snprintf(name, sizeof name, "transpose_conv_%s_1", dt_tag(dts[d]));
    gen_transpose_conv(g, name, dts[d], 3, 3, 7, 2, 2, 2, KILN_PAD_VALID);
    snprintf(name, sizeof name, "transpose_conv_%s_2", dt_tag(dts[d]));
    gen_transpose_conv(g, name, dts[d], 5, 4, 4, 5, 4, 1, KILN_PAD_SAME);
  }
}

/* ---- Elementwise and activations ---- */

static void gen_binary(gen *g, const char *name, int32_t code, kiln_dtype dt, int rank,
                       const int32_t *a_shape, const int32_t *b_shape, kiln_activation act) {
  begin(g);
  float sa = log_uniform(g, 0.005f, 0.03f), sb = log_uniform(g, 0.005f, 0.03f);
  int32_t a = input(g, "a", dt, rank, a_shape, sa, pick_zp(g, dt));
  int32_t b = input(g, "b", dt, rank, b_shape, sb, pick_zp(g, dt));
  int32_t out_shape[KILN_MAX_RANK];
  for (int i = 0; i < rank; i++) out_shape[i] = a_shape[i] > b_shape[i] ? a_shape[i] : b_shape[i];
  float so = code == KILN_OP_MUL ? sa * sb * 128.0f * log_uniform(g, 0.1f, 10.0f)
                                 : (sa > sb ? sa : sb) * log_uniform(g, 0.5f, 4.0f);
  int32_t out = tensor(g, "output", dt, rank, out_shape, so, pick_zp(g, dt), NULL);
  kiln_op_options o = {.new_shape_count = -1, .activation = act};
  o.type = code == KILN_OP_ADD ? KILN_OPTS_ADD : code == KILN_OP_SUB ? KILN_OPTS_SUB : KILN_OPTS_MUL;
  op(g, code, (int32_t[]){a, b}, 2, out, &o);
  if (dt != KILN_F32) calibrate(g, out, strstr(name, "_sat") ? 0.3f : 1.0f);
  finish(g, name, out, kind_of(dt));
}

static void gen_binary_cases(gen *g) {
  static const int32_t codes[3] = {KILN_OP_ADD, KILN_OP_SUB, KILN_OP_MUL};
  static const char *names[3] = {"add", "sub", "mul"};
  const kiln_dtype dts[3] = {KILN_I8, KILN_U8, KILN_F32};
  char name[128];
  for (int c = 0; c < 3; c++) {
    for (int d = 0; d < 3; d++) {
      snprintf(name, sizeof name, "%s_%s_same", names[c], dt_tag(dts[d]));
      gen_binary(g, name, codes[c], dts[d], 4, (int32_t[]){1, 5, 6, 7}, (int32_t[]){1, 5, 6, 7}, KILN_ACT_NONE);
      snprintf(name, sizeof name, "%s_%s_bcast", names[c], dt_tag(dts[d]));
      gen_binary(g, name, codes[c], dts[d], 4, (int32_t[]){2, 5, 1, 7}, (int32_t[]){1, 1, 6, 7}, KILN_ACT_RELU6);
      snprintf(name, sizeof name, "%s_%s_scalar_sat", names[c], dt_tag(dts[d]));
      gen_binary(g, name, codes[c], dts[d], 3, (int32_t[]){3, 4, 9}, (int32_t[]){1, 1, 1}, KILN_ACT_RELU);
    }
  }
}

/* A unary op (activations, softmax, quantize...) on a [1,h,w,c] tensor. */
static void gen_unary(gen *g, const char *name, int32_t code, kiln_dtype in_dt, kiln_dtype out_dt,
                      float in_scale, int32_t in_zp, float out_scale, int32_t out_zp,
                      const kiln_op_options *o, bool calib) {
  begin(g);
  int32_t shape[4] = {1, 3, 5, 11};
  int32_t in = input(g, "input", in_dt, 4, shape, in_scale, in_zp);
  int32_t out = tensor(g, "output", out_dt, 4, shape, out_scale, out_zp, NULL);
  op(g, code, &in, 1, out, o);
  if (calib && out_dt != KILN_F32) calibrate(g, out, 1.0f);
  finish(g, name, out, kind_of(out_dt == KILN_F32 && in_dt == KILN_F32 ? KILN_F32 : KILN_I8));
}

/* L2_NORMALIZATION along the last axis; depths 2 and 1 give small sums of
 * squares (with depth 1, 0 and 1 too: the inverse square root's special
 * cases and its largest left shifts), 1280 a MobileNet embedding. */
static void gen_l2norm_cases(gen *g) {
  static const int32_t shapes[4][4] = {{1, 3, 5, 11}, {1, 8, 6, 2}, {3, 7, 1, 0}, {2, 1280, 0, 0}};
  static const int ranks[4] = {4, 4, 3, 2};
  const kiln_dtype dts[3] = {KILN_I8, KILN_U8, KILN_F32};
  kiln_op_options o = {.type = KILN_OPTS_L2NORM, .new_shape_count = -1};
  char name[128];
  for (int d = 0; d < 3; d++)
    for (int k = 0; k < 4; k++) {
      kiln_dtype dt = dts[d];
      begin(g);
      float si = dt == KILN_F32 ? 0 : log_uniform(g, 0.001f, 0.5f);
      int32_t in = input(g, "input", dt, ranks[k], shapes[k], si, pick_zp(g, dt));
      int32_t out = tensor(g, "output", dt, ranks[k], shapes[k], 1.0f / 128.0f,
                           dt == KILN_U8 ? 128 : 0, NULL);
      op(g, KILN_OP_L2_NORMALIZATION, &in, 1, out, &o);
      /* depth 1: every output is +-1, saturated, so few distinct values */
      snprintf(name, sizeof name, "l2norm_%s_%d%s", dt_tag(dt), k, k == 2 ? "_sat" : "");
      finish(g, name, out, kind_of(dt));
    }
}

static void gen_activation_cases(gen *g) {
  const kiln_dtype dts[3] = {KILN_I8, KILN_U8, KILN_F32};
  char name[128];
  for (int d = 0; d < 3; d++) {
    kiln_dtype dt = dts[d];
    int32_t zmin = dt == KILN_U8 ? 0 : -128, zmax = dt == KILN_U8 ? 255 : 127;
    for (int k = 0; k < 2; k++) {
      float si = log_uniform(g, 0.01f, 0.2f);
      int32_t zi = k ? zmax - 20 : pick_zp(g, dt);
      /* RELU family: free output parameters (calibrated) in case 0, the
       * activation's natural range with a zero point at a limit in case 1. */
      struct { int32_t code; const char *tag; float so; int32_t zo; bool calib; } acts[] = {
          {KILN_OP_RELU, "relu", si * log_uniform(g, 0.3f, 3.0f), zmin, k == 0},
          {KILN_OP_RELU6, "relu6", 6.0f / 255.0f, zmin, k == 0},
          {KILN_OP_RELU_N1_TO_1, "relu_n1_to_1", 2.0f / 255.0f, (zmin + zmax + 1) / 2, k == 0},
          {KILN_OP_HARD_SWISH, "hard_swish", si, 0, true},
          {KILN_OP_LOGISTIC, "logistic", 1.0f / 256.0f, dt == KILN_U8 ? 0 : -128, false},
          {KILN_OP_TANH, "tanh", 1.0f / 128.0f, dt == KILN_U8 ? 128 : 0, false},
      };
      for (size_t a = 0; a < sizeof acts / sizeof acts[0]; a++) {
        snprintf(name, sizeof name, "%s_%s_%d", acts[a].tag, dt_tag(dt), k);
        gen_unary(g, name, acts[a].code, dt, dt, si, zi, acts[a].so, acts[a].zo, NULL, acts[a].calib);
      }
      kiln_op_options lo = {.type = KILN_OPTS_LEAKY_RELU, .new_shape_count = -1,
                            .alpha = k ? 0.2f : 0.01f};
      snprintf(name, sizeof name, "leaky_relu_%s_%d", dt_tag(dt), k);
      gen_unary(g, name, KILN_OP_LEAKY_RELU, dt, dt, si, zi, si, 0, &lo, true);
      kiln_op_options so = {.type = KILN_OPTS_SOFTMAX, .new_shape_count = -1, .beta = k ? 0.5f : 1.0f};
      snprintf(name, sizeof name, "softmax_%s_%d", dt_tag(dt), k);
      gen_unary(g, name, KILN_OP_SOFTMAX, dt, dt, si * (k ? 4.0f : 1.0f), zi, 1.0f / 256.0f,
                dt == KILN_U8 ? 0 : -128, &so, false);
    }
  }
}

static void gen_prelu_cases(gen *g) {
  const kiln_dtype dts[3] = {KILN_I8, KILN_U8, KILN_F32};
  char name[128];
  for (int d = 0; d < 3; d++) {
    kiln_dtype dt = dts[d];
    begin(g);
    float si = log_uniform(g, 0.01f, 0.2f);
    int32_t shape[4] = {1, 4, 5, 6};
    int32_t in = input(g, "input", dt, 4, shape, si, pick_zp(g, dt));
    int32_t a_shape[3] = {1, 1, 6};
    float alpha_f[6];
    uint8_t alpha_q[6];
    float sa = 0.004f;
    int32_t za = dt == KILN_U8 ? 100 : -20;
    for (int i = 0; i < 6; i++) {
      alpha_f[i] = test_rand_float(&g->rng, -0.5f, 0.5f);
      int32_t q = za + (int32_t)lroundf(alpha_f[i] / sa);
      alpha_q[i] = (uint8_t)q;
    }
    int32_t alpha = tensor(g, "alpha", dt, 3, a_shape, sa, za, dt == KILN_F32 ? (void *)alpha_f : (void *)alpha_q);
    int32_t out = tensor(g, "output", dt, 4, shape, si * 1.3f, pick_zp(g, dt), NULL);
    op(g, KILN_OP_PRELU, (int32_t[]){in, alpha}, 2, out, NULL);
    if (dt != KILN_F32) calibrate(g, out, 1.0f);
    snprintf(name, sizeof name, "prelu_%s", dt_tag(dt));
    finish(g, name, out, kind_of(dt));
  }
}

/* ---- Pooling, reductions, shapes ---- */

static void gen_pool_cases(gen *g) {
  const kiln_dtype dts[3] = {KILN_I8, KILN_U8, KILN_F32};
  static const struct { int h, w, c, fh, fw, sh, sw; kiln_padding pad; kiln_activation act; } cs[] = {
      {8, 8, 5, 2, 2, 2, 2, KILN_PAD_VALID, KILN_ACT_NONE},
      {7, 9, 3, 3, 3, 2, 2, KILN_PAD_SAME, KILN_ACT_RELU6},
      {5, 6, 17, 5, 6, 1, 1, KILN_PAD_VALID, KILN_ACT_NONE},
      {6, 6, 4, 3, 3, 1, 1, KILN_PAD_SAME, KILN_ACT_RELU},
  };
  char name[128];
  for (int d = 0; d < 3; d++) {
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
      for (int max = 0; max < 2; max++) {
        begin(g);
        kiln_dtype dt = dts[d];
        /* Inputs and output share parameters; a small scale and a zero
         * point inside the range make the fused RELU/RELU6 clamp only part
         * of the values (RELU6's top, 6, stays near the type's maximum). */
        float s = log_uniform(g, 0.006f, 0.02f);
        int32_t zp = dt == KILN_U8 ? test_rand_int(&g->rng, 30, 110) : test_rand_int(&g->rng, -100, -20);
        int32_t shape[4] = {1, cs[i].h, cs[i].w, cs[i].c};
        int32_t in = input(g, "input", dt, 4, shape, s, zp);
        int32_t oshape[4] = {1, out_size(cs[i].h, cs[i].fh, cs[i].sh, 1, cs[i].pad),
                             out_size(cs[i].w, cs[i].fw, cs[i].sw, 1, cs[i].pad), cs[i].c};
        int32_t out = tensor(g, "output", dt, 4, oshape, s, zp, NULL);
        kiln_op_options o = {.type = KILN_OPTS_POOL2D, .new_shape_count = -1, .padding = cs[i].pad,
                             .stride_w = cs[i].sw, .stride_h = cs[i].sh, .filter_w = cs[i].fw,
                             .filter_h = cs[i].fh, .activation = cs[i].act};
        op(g, max ? KILN_OP_MAX_POOL_2D : KILN_OP_AVERAGE_POOL_2D, &in, 1, out, &o);
        snprintf(name, sizeof name, "%s_pool_%s_%zu", max ? "max" : "avg", dt_tag(dt), i);
        finish(g, name, out, kind_of(dt));
      }
    }
  }
}

static void gen_mean(gen *g, const char *name, kiln_dtype dt, const int32_t *axes, int n_axes,
                     bool keep, bool same_q) {
  begin(g);
  float s = log_uniform(g, 0.01f, 0.2f);
  int32_t zp = pick_zp(g, dt);
  int32_t shape[4] = {2, 5, 7, 6};
  int32_t in = input(g, "input", dt, 4, shape, s, zp);
  int32_t axes_shape[1] = {n_axes};
  int32_t ax = kiln_model_add_tensor(g->m, "axes", KILN_I32, 1, axes_shape, NULL, axes, &g->err);
  int32_t oshape[4];
  int orank = 0;
  for (int d = 0; d < 4; d++) {
    bool reduced = false;
    for (int k = 0; k < n_axes; k++) reduced |= axes[k] == d || axes[k] == d - 4;
    if (!reduced) oshape[orank++] = shape[d];
    else if (keep) oshape[orank++] = 1;
  }
  int32_t out = tensor(g, "output", dt, orank, oshape, same_q ? s : s * log_uniform(g, 0.3f, 3.0f),
                       same_q ? zp : pick_zp(g, dt), NULL);
  kiln_op_options o = {.type = KILN_OPTS_REDUCER, .new_shape_count = -1, .keep_dims = keep};
  op(g, KILN_OP_MEAN, (int32_t[]){in, ax}, 2, out, &o);
  if (dt != KILN_F32 && !same_q) calibrate(g, out, 1.0f);
  finish(g, name, out, kind_of(dt));
}

static void gen_mean_cases(gen *g) {
  const kiln_dtype dts[3] = {KILN_I8, KILN_U8, KILN_F32};
  char name[128];
  for (int d = 0; d < 3; d++) {
    for (int same = 0; same < 2; same++) {
      snprintf(name, sizeof name, "mean_%s_hw_keep_%d", dt_tag(dts[d]), same);
      gen_mean(g, name, dts[d], (int32_t[]){1, 2}, 2, true, same);
      snprintf(name, sizeof name, "mean_%s_hw_drop_%d", dt_tag(dts[d]), same);
      gen_mean(g, name, dts[d], (int32_t[]){1, 2}, 2, false, same);
      snprintf(name, sizeof name, "mean_%s_last_%d", dt_tag(dts[d]), same);
      gen_mean(g, name, dts[d], (int32_t[]){-1}, 1, true, same);
    }
  }
}

static void gen_concat_cases(gen *g) {
  const kiln_dtype dts[3] = {KILN_I8, KILN_U8, KILN_F32};
  char name[128];
  for (int d = 0; d < 3; d++) {
    for (int axis = -1; axis < 3; axis++) {
      begin(g);
      kiln_dtype dt = dts[d];
      int32_t sa[4] = {1, 3, 4, 5}, sb[4] = {1, 3, 4, 5};
      int real_axis = axis < 0 ? 3 : axis;
      sb[real_axis] = 2;
      /* LiteRT requires int8 inputs and output to share scale and zero
       * point; uint8 (and axis 0 here) covers equal parameters too. */
      bool same = axis == 0 || dt == KILN_I8;
      float s1 = log_uniform(g, 0.01f, 0.2f), s2 = same ? s1 : log_uniform(g, 0.01f, 0.2f);
      int32_t z1 = pick_zp(g, dt), z2 = same ? z1 : pick_zp(g, dt);
      int32_t a = input(g, "a", dt, 4, sa, s1, z1);
      int32_t b = input(g, "b", dt, 4, sb, s2, z2);
      int32_t so[4] = {1, 3, 4, 5};
      so[real_axis] += 2;
      int32_t out = tensor(g, "output", dt, 4, so, same ? s1 : log_uniform(g, 0.01f, 0.2f),
                           same ? z1 : pick_zp(g, dt), NULL);
      kiln_op_options o = {.type = KILN_OPTS_CONCATENATION, .new_shape_count = -1, .axis = axis};
      op(g, KILN_OP_CONCATENATION, (int32_t[]){a, b}, 2, out, &o);
      snprintf(name, sizeof name, "concat_%s_axis%d", dt_tag(dt), axis);
      finish(g, name, out, kind_of(dt));
    }
  }
}

static void gen_shape_cases(gen *g) {
  const kiln_dtype dts[3] = {KILN_I8, KILN_U8, KILN_F32};
  char name[128];
  for (int d = 0; d < 3; d++) {
    kiln_dtype dt = dts[d];
    float s = 0.05f;
    int32_t zp = pick_zp(g, dt);
    /* RESHAPE with a shape tensor containing -1. */
    begin(g);
    int32_t in = input(g, "input", dt, 4, (int32_t[]){1, 2, 3, 4}, s, zp);
    int32_t shp = kiln_model_add_tensor(g->m, "shape", KILN_I32, 1, (int32_t[]){2}, NULL,
                                        (int32_t[]){-1, 6}, &g->err);
    int32_t out = tensor(g, "output", dt, 2, (int32_t[]){4, 6}, s, zp, NULL);
    kiln_op_options ro = {.type = KILN_OPTS_RESHAPE, .new_shape_count = 2, .new_shape = {4, 6}};
    op(g, KILN_OP_RESHAPE, (int32_t[]){in, shp}, 2, out, &ro);
    snprintf(name, sizeof name, "reshape_%s", dt_tag(dt));
    finish(g, name, out, kind_of(dt));
    /* SQUEEZE */
    begin(g);
    in = input(g, "input", dt, 4, (int32_t[]){1, 3, 1, 4}, s, zp);
    out = tensor(g, "output", dt, 3, (int32_t[]){1, 3, 4}, s, zp, NULL);
    kiln_op_options sq = {.type = KILN_OPTS_SQUEEZE, .new_shape_count = -1, .squeeze_dims_count = 1,
                          .squeeze_dims = {-2}};
    op(g, KILN_OP_SQUEEZE, &in, 1, out, &sq);
    snprintf(name, sizeof name, "squeeze_%s", dt_tag(dt));
    finish(g, name, out, kind_of(dt));
    /* PAD and PADV2 */
    for (int v2 = 0; v2 < 2; v2++) {
      begin(g);
      in = input(g, "input", dt, 4, (int32_t[]){1, 3, 4, 2}, s, zp);
      int32_t pads = kiln_model_add_tensor(g->m, "paddings", KILN_I32, 2, (int32_t[]){4, 2}, NULL,
                                           (int32_t[]){0, 0, 1, 2, 0, 3, 1, 0}, &g->err);
      int32_t ins[3] = {in, pads, -1};
      int n_in = 2;
      if (v2) {
        uint8_t cq = (uint8_t)(dt == KILN_U8 ? 200 : 77);
        float cf = 0.75f;
        ins[2] = tensor(g, "constant", dt, 0, NULL, s, zp, dt == KILN_F32 ? (void *)&cf : (void *)&cq);
        n_in = 3;
      }
      out = tensor(g, "output", dt, 4, (int32_t[]){1, 6, 7, 3}, s, zp, NULL);
      kiln_op_options po = {.type = v2 ? KILN_OPTS_PADV2 : KILN_OPTS_PAD, .new_shape_count = -1};
      op(g, v2 ? KILN_OP_PADV2 : KILN_OP_PAD, ins, n_in, out, &po);
      snprintf(name, sizeof name, "pad%s_%s", v2 ? "v2" : "", dt_tag(dt));
      finish(g, name, out, kind_of(dt));
    }
  }
}

static void gen_resize_cases(gen *g) {
  const kiln_dtype dts[3] = {KILN_I8, KILN_U8, KILN_F32};
  static const int32_t sizes[3][2] = {{7, 9}, {3, 2}, {10, 10}};
  char name[128];
  for (int d = 0; d < 3; d++) {
    for (int nn = 0; nn < 2; nn++) {
      for (int mode = 0; mode < 3; mode++) { /* plain, align_corners, half_pixel_centers */
        for (int sz = 0; sz < 3; sz++) {
          begin(g);
          kiln_dtype dt = dts[d];
          float s = 0.03f;
          int32_t zp = pick_zp(g, dt);
          int32_t in = input(g, "input", dt, 4, (int32_t[]){1, 4, 5, 3}, s, zp);
          int32_t size = kiln_model_add_tensor(g->m, "size", KILN_I32, 1, (int32_t[]){2}, NULL,
                                               sizes[sz], &g->err);
          int32_t out = tensor(g, "output", dt, 4, (int32_t[]){1, sizes[sz][0], sizes[sz][1], 3}, s, zp, NULL);
          kiln_op_options o = {.new_shape_count = -1, .align_corners = mode == 1,
                               .half_pixel_centers = mode == 2};
          o.type = nn ? KILN_OPTS_RESIZE_NEAREST_NEIGHBOR : KILN_OPTS_RESIZE_BILINEAR;
          op(g, nn ? KILN_OP_RESIZE_NEAREST_NEIGHBOR : KILN_OP_RESIZE_BILINEAR,
             (int32_t[]){in, size}, 2, out, &o);
          snprintf(name, sizeof name, "resize_%s_%s_m%d_s%d", nn ? "nearest" : "bilinear", dt_tag(dt), mode, sz);
          finish(g, name, out, kind_of(dt));
        }
      }
    }
  }
}

static void gen_quantize_cases(gen *g) {
  char name[128];
  kiln_op_options qo = {.type = KILN_OPTS_QUANTIZE, .new_shape_count = -1};
  kiln_op_options dqo = {.type = KILN_OPTS_DEQUANTIZE, .new_shape_count = -1};
  const kiln_dtype q8[2] = {KILN_I8, KILN_U8};
  for (int d = 0; d < 2; d++) {
    for (int k = 0; k < 2; k++) {
      snprintf(name, sizeof name, "quantize_f32_%s_%d", dt_tag(q8[d]), k);
      gen_unary(g, name, KILN_OP_QUANTIZE, KILN_F32, q8[d], 0, 0, log_uniform(g, 0.002f, 0.05f),
                pick_zp(g, q8[d]), &qo, false);
      snprintf(name, sizeof name, "dequantize_%s_f32_%d", dt_tag(q8[d]), k);
      gen_unary(g, name, KILN_OP_DEQUANTIZE, q8[d], KILN_F32, log_uniform(g, 0.002f, 0.5f),
                pick_zp(g, q8[d]), 0, 0, &dqo, false);
      snprintf(name, sizeof name, "requantize_%s_s8_%d", dt_tag(q8[d]), k);
      float rs = log_uniform(g, 0.01f, 0.1f);
      gen_unary(g, name, KILN_OP_QUANTIZE, q8[d], KILN_I8, rs, pick_zp(g, q8[d]),
                rs * log_uniform(g, 0.4f, 2.5f), test_rand_int(&g->rng, -40, 40), &qo, false);
    }
  }
  snprintf(name, sizeof name, "requantize_s8_u8");
  gen_unary(g, name, KILN_OP_QUANTIZE, KILN_I8, KILN_U8, 0.02f, -3, 0.02f, 125, &qo, false);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: gen_op_models OUT_DIR [SEED]\n");
    return 2;
  }
  gen g;
  memset(&g, 0, sizeof g);
  g.dir = argv[1];
  g.rng.s = argc > 2 ? strtoull(argv[2], NULL, 10) : 20261121;
  if (mkdir(g.dir, 0755) != 0 && errno != EEXIST) {
    perror(g.dir);
    return 1;
  }
  char path[4096];
  snprintf(path, sizeof path, "%s/manifest.txt", g.dir);
  g.manifest = fopen(path, "w");
  if (!g.manifest) {
    perror(path);
    return 1;
  }
  gen_conv_cases(&g);
  gen_fc_cases(&g);
  gen_transpose_conv_cases(&g);
  gen_binary_cases(&g);
  gen_activation_cases(&g);
  gen_l2norm_cases(&g);
  gen_prelu_cases(&g);
  gen_pool_cases(&g);
  gen_mean_cases(&g);
  gen_concat_cases(&g);
  gen_shape_cases(&g);
  gen_resize_cases(&g);
  gen_quantize_cases(&g);
  fclose(g.manifest);
  fprintf(stderr, "gen_op_models: wrote %d models to %s (%d failed)\n", g.count, g.dir, g.failures);
  return g.failures ? 1 : 0;
}
