/*
 * The float -> int8 graph rewrite (kiln_quantizer_finish).
 *
 * 1. Ranges: every tracked activation gets its method's range; ops that
 *    only move data tie their inputs and output into one group (union-
 *    find) that shares the union of the members' ranges; LOGISTIC, SOFTMAX,
 *    TANH and L2_NORMALIZATION outputs have the spec's fixed parameters.
 * 2. Graph: ops are emitted in order. An int8 op gets int8 versions of its
 *    inputs (weights symmetric per channel, biases int32 at input_scale *
 *    weight_scale, other constants per tensor); an op that stays float gets
 *    float versions. A tensor needed in the other representation than its
 *    producer's gets a QUANTIZE or DEQUANTIZE right before its first use.
 *    Graph inputs and outputs take the requested I/O type, converted at the
 *    edges.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "quant/quant_int.h"

typedef struct builder {
  kiln_quantizer *q;
  const kiln_model *src;
  kiln_model *dst;
  kiln_error *err;
  int32_t *group;   /* union-find parent per source tensor */
  float *lo, *hi;   /* per group root */
  bool *fixed;      /* per group root: fixed parameters */
  float *scale;     /* per source tensor, after grouping */
  int32_t *zp;
  int32_t *map_q;   /* source tensor -> int8 tensor in dst (-1: none yet) */
  int32_t *map_f;   /* source tensor -> float tensor in dst */
  int8_t *native;   /* 0 none, 1 int8, 2 float: representation its producer makes */
} builder;

static int32_t find(int32_t *parent, int32_t x) {
  while (parent[x] != x) {
    parent[x] = parent[parent[x]];
    x = parent[x];
  }
  return x;
}

static void unite(builder *b, int32_t x, int32_t y) {
  x = find(b->group, x);
  y = find(b->group, y);
  if (x != y) b->group[y] = x;
}

static bool shares_params(int32_t code) {
  switch (code) {
    case KILN_OP_RESHAPE: case KILN_OP_SQUEEZE: case KILN_OP_MAX_POOL_2D:
    case KILN_OP_AVERAGE_POOL_2D: case KILN_OP_PAD: case KILN_OP_PADV2:
    case KILN_OP_RESIZE_BILINEAR: case KILN_OP_RESIZE_NEAREST_NEIGHBOR:
    case KILN_OP_CONCATENATION:
      return true;
    default:
      return false;
  }
}

/* Data inputs of a parameter-sharing op (CONCATENATION: all; PADV2: the
 * input and its constant value; others: input 0). */
static int32_t shared_inputs(const kiln_op *op) {
  if (op->code == KILN_OP_CONCATENATION) return op->n_inputs;
  if (op->code == KILN_OP_PADV2) return 3;
  return 1;
}

static bool fixed_output(int32_t code, float *scale, int32_t *zp) {
  switch (code) {
    case KILN_OP_LOGISTIC: case KILN_OP_SOFTMAX: *scale = 1.0f / 256.0f; *zp = -128; return true;
    case KILN_OP_TANH: case KILN_OP_L2_NORMALIZATION: *scale = 1.0f / 128.0f; *zp = 0; return true;
    default: return false;
  }
}

static kiln_status choose_params(builder *b) {
  const kiln_model *m = b->src;
  kiln_quantizer *q = b->q;
  const int32_t n = m->n_tensors;
  for (int32_t t = 0; t < n; t++) {
    b->group[t] = t;
    b->lo[t] = 0;
    b->hi[t] = 0;
  }
  for (int32_t i = 0; i < m->n_ops; i++) {
    const kiln_op *op = &m->ops[i];
    if (q->float_op[i] || !shares_params(op->code)) continue;
    for (int32_t k = 0; k < shared_inputs(op) && k < op->n_inputs; k++)
      if (op->inputs[k] >= 0) unite(b, op->outputs[0], op->inputs[k]);
  }
  /* Fixed parameters claim their group. */
  for (int32_t i = 0; i < m->n_ops; i++) {
    float s;
    int32_t z;
    if (!q->float_op[i] && fixed_output(m->ops[i].code, &s, &z)) {
      int32_t r = find(b->group, m->ops[i].outputs[0]);
      b->fixed[r] = true;
      b->scale[r] = s;
      b->zp[r] = z;
    }
  }
  /* Union of member ranges per group: calibrated activations, and float
   * constants tied into a group (a concatenated or padding constant). */
  for (int32_t t = 0; t < n; t++) {
    const kiln_tensor *tt = &m->tensors[t];
    float lo = 0, hi = 0;
    if (q->stats[t].tracked && q->stats[t].seen) {
      kiln_stats_range(&q->stats[t], &q->opt, &lo, &hi);
    } else if (tt->data && tt->dtype == KILN_F32) {
      const float *d = tt->data;
      for (int64_t k = 0; k < kiln_tensor_elements(tt); k++) {
        lo = d[k] < lo ? d[k] : lo;
        hi = d[k] > hi ? d[k] : hi;
      }
    } else {
      continue;
    }
    int32_t r = find(b->group, t);
    b->lo[r] = lo < b->lo[r] ? lo : b->lo[r];
    b->hi[r] = hi > b->hi[r] ? hi : b->hi[r];
  }
  for (int32_t t = 0; t < n; t++) {
    int32_t r = find(b->group, t);
    if (r == t && !b->fixed[r]) kiln_quant_params_for_range(b->lo[r], b->hi[r], &b->scale[r], &b->zp[r]);
  }
  for (int32_t t = 0; t < n; t++) {
    int32_t r = find(b->group, t);
    b->scale[t] = b->scale[r];
    b->zp[t] = b->zp[r];
  }
  /* Report every calibrated activation. */
  q->info = kiln_calloc((size_t)n + 1, sizeof *q->info);
  if (!q->info) return kiln_fail(b->err, KILN_ERR_NOMEM, "out of memory");
  q->n_info = 0;
  for (int32_t t = 0; t < n; t++) {
    if (!q->stats[t].tracked || !q->stats[t].seen) continue;
    int32_t r = find(b->group, t);
    kiln_quant_tensor_info *info = &q->info[q->n_info++];
    info->name = m->tensors[t].name;
    info->observed_min = q->stats[t].min;
    info->observed_max = q->stats[t].max;
    info->range_min = b->fixed[r] ? b->scale[t] * (float)(-128 - b->zp[t]) : b->lo[r];
    info->range_max = b->fixed[r] ? b->scale[t] * (float)(127 - b->zp[t]) : b->hi[r];
    info->scale = b->scale[t];
    info->zero_point = b->zp[t];
    info->fixed = b->fixed[r];
  }
  return KILN_OK;
}

/* ---- Emitting tensors ---- */

static int32_t add_tensor(builder *b, const char *name, const char *suffix, kiln_dtype dt,
                          const kiln_tensor *like, const kiln_quant *quant, const void *data) {
  char full[512];
  snprintf(full, sizeof full, "%s%s", name, suffix ? suffix : "");
  return kiln_model_add_tensor(b->dst, full, dt, like->rank, like->shape, quant, data, b->err);
}

static int32_t add_q8(builder *b, int32_t t, const char *suffix, kiln_dtype dt) {
  float s = b->scale[t];
  int32_t z = b->zp[t] + (dt == KILN_U8 ? 128 : 0);
  kiln_quant qp = {1, 0, &s, &z};
  return add_tensor(b, b->src->tensors[t].name, suffix, dt, &b->src->tensors[t], &qp, NULL);
}

static int32_t emit_op(builder *b, int32_t code, const char *custom, const int32_t *in, int32_t n_in,
                       const int32_t *out, int32_t n_out, const kiln_op_options *opt,
                       const kiln_op *src_op, int32_t version) {
  int32_t idx = kiln_model_add_op(b->dst, code, custom, in, n_in, out, n_out, opt,
                                  src_op ? src_op->custom_options : NULL,
                                  src_op ? src_op->custom_options_bytes : 0, b->err);
  if (idx >= 0) b->dst->ops[idx].version = version;
  return idx;
}

static const kiln_op_options no_options = {.new_shape_count = -1};

/* int8 version of activation t, converting a float-native one. */
static int32_t get_q(builder *b, int32_t t) {
  if (b->map_q[t] >= 0) return b->map_q[t];
  if (b->map_f[t] < 0) {
    kiln_fail(b->err, KILN_ERR_INTERNAL, "tensor '%s' is used before it is produced",
              b->src->tensors[t].name);
    return -1;
  }
  int32_t q = add_q8(b, t, "/quantized", KILN_I8);
  if (q < 0) return -1;
  kiln_op_options o = no_options;
  o.type = KILN_OPTS_QUANTIZE;
  if (emit_op(b, KILN_OP_QUANTIZE, NULL, &b->map_f[t], 1, &q, 1, &o, NULL, 1) < 0) return -1;
  return b->map_q[t] = q;
}

/* float version of activation t, converting an int8-native one. */
static int32_t get_f(builder *b, int32_t t) {
  if (b->map_f[t] >= 0) return b->map_f[t];
  if (b->map_q[t] < 0) {
    kiln_fail(b->err, KILN_ERR_INTERNAL, "tensor '%s' is used before it is produced",
              b->src->tensors[t].name);
    return -1;
  }
  int32_t f = add_tensor(b, b->src->tensors[t].name, "/dequantized", KILN_F32, &b->src->tensors[t], NULL, NULL);
  if (f < 0) return -1;
  kiln_op_options o = no_options;
  o.type = KILN_OPTS_DEQUANTIZE;
  if (emit_op(b, KILN_OP_DEQUANTIZE, NULL, &b->map_q[t], 1, &f, 1, &o, NULL, 2) < 0) return -1;
  return b->map_f[t] = f;
}

/* Symmetric int8 weights, per channel along axis (or per tensor). */
static int32_t quantize_weights(builder *b, int32_t t, int32_t axis, bool per_channel,
                                float **scales_out) {
  const kiln_tensor *w = &b->src->tensors[t];
  const float *d = w->data;
  const int64_t n = kiln_tensor_elements(w);
  int32_t channels = per_channel ? w->shape[axis] : 1;
  int64_t inner = 1;
  for (int32_t k = axis + 1; k < w->rank; k++) inner *= w->shape[k];
  float *scales = kiln_model_alloc(b->dst, (size_t)channels * sizeof(float));
  int32_t *zps = kiln_model_alloc(b->dst, (size_t)channels * sizeof(int32_t));
  int8_t *q = kiln_model_alloc(b->dst, (size_t)n);
  if (!scales || !zps || !q) {
    kiln_fail(b->err, KILN_ERR_NOMEM, "out of memory quantizing '%s'", w->name);
    return -1;
  }
  float *maxabs = scales;
  for (int64_t k = 0; k < n; k++) {
    int32_t c = per_channel ? (int32_t)((k / inner) % channels) : 0;
    float a = fabsf(d[k]);
    if (a > maxabs[c]) maxabs[c] = a;
  }
  for (int32_t c = 0; c < channels; c++) scales[c] = maxabs[c] > 0 ? maxabs[c] / 127.0f : 1.0f;
  for (int64_t k = 0; k < n; k++) {
    int32_t c = per_channel ? (int32_t)((k / inner) % channels) : 0;
    long v = lroundf(d[k] / scales[c]);
    q[k] = (int8_t)(v < -127 ? -127 : (v > 127 ? 127 : v));
  }
  kiln_quant qp = {channels, per_channel ? axis : 0, scales, zps};
  int32_t idx = add_tensor(b, w->name, NULL, KILN_I8, w, &qp, q);
  if (idx >= 0) *scales_out = b->dst->tensors[idx].quant.scale;
  return idx;
}

/* int32 bias at scale input_scale * weight_scale[c]; a zero bias of
 * `channels` when the source has none (LiteRT requires it for convs). */
static int32_t quantize_bias(builder *b, int32_t t, float in_scale, const float *w_scales,
                             int32_t n_wscales, int32_t channels, const char *name) {
  const kiln_tensor *bt = t >= 0 ? &b->src->tensors[t] : NULL;
  float *scales = kiln_model_alloc(b->dst, (size_t)channels * sizeof(float));
  int32_t *zps = kiln_model_alloc(b->dst, (size_t)channels * sizeof(int32_t));
  int32_t *q = kiln_model_alloc(b->dst, (size_t)channels * sizeof(int32_t));
  if (!scales || !zps || !q) {
    kiln_fail(b->err, KILN_ERR_NOMEM, "out of memory quantizing a bias");
    return -1;
  }
  const float *d = bt ? bt->data : NULL;
  for (int32_t c = 0; c < channels; c++) {
    scales[c] = in_scale * w_scales[n_wscales > 1 ? c : 0];
    double v = d ? nearbyint((double)d[c] / (double)scales[c]) : 0.0;
    q[c] = v < (double)INT32_MIN ? INT32_MIN : (v > (double)INT32_MAX ? INT32_MAX : (int32_t)v);
  }
  kiln_quant qp = {n_wscales > 1 ? channels : 1, 0, scales, zps};
  int32_t shape[1] = {channels};
  char full[512];
  snprintf(full, sizeof full, "%s", bt ? bt->name : name);
  return kiln_model_add_tensor(b->dst, full, KILN_I32, 1, shape, &qp, q, b->err);
}

/* An int8 constant quantized with its group's parameters. */
static int32_t quantize_constant(builder *b, int32_t t) {
  const kiln_tensor *c = &b->src->tensors[t];
  const float *d = c->data;
  const int64_t n = kiln_tensor_elements(c);
  int8_t *q = kiln_model_alloc(b->dst, (size_t)(n ? n : 1));
  if (!q) {
    kiln_fail(b->err, KILN_ERR_NOMEM, "out of memory quantizing '%s'", c->name);
    return -1;
  }
  for (int64_t k = 0; k < n; k++) {
    long v = lroundf(d[k] / b->scale[t]) + b->zp[t];
    q[k] = (int8_t)(v < -128 ? -128 : (v > 127 ? 127 : v));
  }
  kiln_quant qp = {1, 0, &b->scale[t], &b->zp[t]};
  return add_tensor(b, c->name, NULL, KILN_I8, c, &qp, q);
}

/* TFLite op versions for the int8 forms kiln writes (op_version.cc). */
static int32_t int8_version(int32_t code) {
  switch (code) {
    case KILN_OP_CONV_2D: case KILN_OP_DEPTHWISE_CONV_2D: return 3;
    case KILN_OP_FULLY_CONNECTED: return 4;
    case KILN_OP_TRANSPOSE_CONV: return 3;
    case KILN_OP_RESHAPE: case KILN_OP_SQUEEZE: case KILN_OP_HARD_SWISH: case KILN_OP_PRELU:
    case KILN_OP_RELU_N1_TO_1:
      return 1; /* not versioned by dtype */
    default: return 2;
  }
}

/* Source input k of an int8 op, in dst: weights, biases and constants are
 * quantized for their role; activations converted as needed. */
static int32_t int8_input(builder *b, const kiln_op *op, int32_t k, float **w_scales,
                          int32_t *n_wscales) {
  int32_t t = op->inputs[k];
  if (t < 0) return -1;
  const kiln_tensor *tt = &b->src->tensors[t];
  if (!tt->data || tt->dtype != KILN_F32) {
    if (tt->data) { /* int32 shapes, axes, paddings, sizes */
      if (b->map_f[t] < 0) b->map_f[t] = add_tensor(b, tt->name, NULL, tt->dtype, tt, NULL, tt->data);
      return b->map_f[t];
    }
    return get_q(b, t);
  }
  const int32_t code = op->code;
  const bool weights_slot = (k == 1 && (code == KILN_OP_CONV_2D || code == KILN_OP_DEPTHWISE_CONV_2D ||
                                        code == KILN_OP_FULLY_CONNECTED || code == KILN_OP_TRANSPOSE_CONV));
  if (weights_slot) {
    int32_t axis = code == KILN_OP_DEPTHWISE_CONV_2D ? 3 : 0;
    bool per_channel = b->q->opt.per_channel && code != KILN_OP_FULLY_CONNECTED;
    int32_t idx = quantize_weights(b, t, axis, per_channel, w_scales);
    *n_wscales = per_channel ? tt->shape[axis] : 1;
    return idx;
  }
  return quantize_constant(b, t);
}

static bool is_bias_slot(const kiln_op *op, int32_t k) {
  switch (op->code) {
    case KILN_OP_CONV_2D: case KILN_OP_DEPTHWISE_CONV_2D: case KILN_OP_FULLY_CONNECTED: return k == 2;
    case KILN_OP_TRANSPOSE_CONV: return k == 3;
    default: return false;
  }
}

static kiln_status emit_int8_op(builder *b, int32_t i) {
  const kiln_op *op = &b->src->ops[i];
  int32_t in[16];
  int32_t n_in = op->n_inputs;
  if (n_in > 15) return kiln_fail(b->err, KILN_ERR_UNSUPPORTED, "op %d has %d inputs", (int)i, (int)n_in);
  float *w_scales = NULL;
  int32_t n_wscales = 0;
  for (int32_t k = 0; k < n_in; k++) {
    in[k] = -1;
    if (is_bias_slot(op, k)) continue; /* after the weights */
    in[k] = int8_input(b, op, k, &w_scales, &n_wscales);
    if (in[k] < 0 && op->inputs[k] >= 0) return b->err->status ? b->err->status : KILN_ERR_INTERNAL;
  }
  bool needs_bias = op->code == KILN_OP_CONV_2D || op->code == KILN_OP_DEPTHWISE_CONV_2D ||
                    op->code == KILN_OP_TRANSPOSE_CONV || (op->code == KILN_OP_FULLY_CONNECTED && n_in > 2 && op->inputs[2] >= 0);
  if (needs_bias) {
    int32_t slot = op->code == KILN_OP_TRANSPOSE_CONV ? 3 : 2;
    int32_t data_in = op->code == KILN_OP_TRANSPOSE_CONV ? op->inputs[2] : op->inputs[0];
    int32_t w = op->inputs[1];
    int32_t channels = op->code == KILN_OP_DEPTHWISE_CONV_2D ? b->src->tensors[w].shape[3]
                                                             : b->src->tensors[w].shape[0];
    int32_t bias_src = slot < n_in ? op->inputs[slot] : -1;
    if (bias_src >= 0 && !b->src->tensors[bias_src].data)
      return kiln_fail(b->err, KILN_ERR_UNSUPPORTED, "op %d (%s): the bias is not a constant", (int)i,
                       kiln_opcode_name(op->code));
    char name[300];
    snprintf(name, sizeof name, "%s/bias", b->src->tensors[op->outputs[0]].name);
    in[slot] = quantize_bias(b, bias_src, b->scale[data_in], w_scales, n_wscales, channels, name);
    if (in[slot] < 0) return b->err->status;
    if (slot >= n_in) n_in = slot + 1;
  }
  int32_t t_out = op->outputs[0];
  int32_t out = add_q8(b, t_out, NULL, KILN_I8);
  if (out < 0) return b->err->status;
  b->map_q[t_out] = out;
  b->native[t_out] = 1;
  if (emit_op(b, op->code, op->custom_code, in, n_in, &out, 1, &op->options, op, int8_version(op->code)) < 0)
    return b->err->status;
  return KILN_OK;
}

static kiln_status emit_float_op(builder *b, int32_t i) {
  const kiln_op *op = &b->src->ops[i];
  int32_t in[16], out[8];
  if (op->n_inputs > 16 || op->n_outputs > 8)
    return kiln_fail(b->err, KILN_ERR_UNSUPPORTED, "op %d has too many operands", (int)i);
  for (int32_t k = 0; k < op->n_inputs; k++) {
    int32_t t = op->inputs[k];
    if (t < 0) {
      in[k] = -1;
      continue;
    }
    const kiln_tensor *tt = &b->src->tensors[t];
    if (tt->data) {
      if (b->map_f[t] < 0) b->map_f[t] = add_tensor(b, tt->name, NULL, tt->dtype, tt, NULL, tt->data);
      in[k] = b->map_f[t];
    } else {
      in[k] = get_f(b, t);
    }
    if (in[k] < 0) return b->err->status ? b->err->status : KILN_ERR_INTERNAL;
  }
  for (int32_t k = 0; k < op->n_outputs; k++) {
    int32_t t = op->outputs[k];
    out[k] = add_tensor(b, b->src->tensors[t].name, NULL, b->src->tensors[t].dtype, &b->src->tensors[t], NULL, NULL);
    if (out[k] < 0) return b->err->status;
    b->map_f[t] = out[k];
    b->native[t] = 2;
  }
  if (emit_op(b, op->code, op->custom_code, in, op->n_inputs, out, op->n_outputs, &op->options, op, op->version) < 0)
    return b->err->status;
  return KILN_OK;
}

static bool consumed_by_int8(const builder *b, int32_t t) {
  for (int32_t i = 0; i < b->src->n_ops; i++) {
    if (b->q->float_op[i]) continue;
    for (int32_t k = 0; k < b->src->ops[i].n_inputs; k++)
      if (b->src->ops[i].inputs[k] == t) return true;
  }
  return false;
}

static kiln_status emit_inputs(builder *b, int32_t *inputs) {
  const kiln_model *m = b->src;
  const kiln_dtype io = b->q->opt.io_dtype;
  kiln_op_options qo = no_options;
  qo.type = KILN_OPTS_QUANTIZE;
  for (int32_t i = 0; i < m->n_inputs; i++) {
    int32_t t = m->inputs[i];
    if (!consumed_by_int8(b, t) || io == KILN_F32) {
      inputs[i] = b->map_f[t] = add_tensor(b, m->tensors[t].name, NULL, KILN_F32, &m->tensors[t], NULL, NULL);
      if (inputs[i] < 0) return b->err->status;
      b->native[t] = 2;
      continue; /* int8 consumers get a QUANTIZE on first use */
    }
    if (io == KILN_I8) {
      inputs[i] = b->map_q[t] = add_q8(b, t, NULL, KILN_I8);
      if (inputs[i] < 0) return b->err->status;
    } else { /* uint8 in, requantized to the internal int8 tensor */
      inputs[i] = add_q8(b, t, NULL, KILN_U8);
      int32_t q = add_q8(b, t, "/int8", KILN_I8);
      if (inputs[i] < 0 || q < 0) return b->err->status;
      if (emit_op(b, KILN_OP_QUANTIZE, NULL, &inputs[i], 1, &q, 1, &qo, NULL, 2) < 0) return b->err->status;
      b->map_q[t] = q;
    }
    b->native[t] = 1;
  }
  return KILN_OK;
}

static kiln_status emit_outputs(builder *b, int32_t *outputs) {
  const kiln_model *m = b->src;
  const kiln_dtype io = b->q->opt.io_dtype;
  for (int32_t i = 0; i < m->n_outputs; i++) {
    int32_t t = m->outputs[i];
    if (b->native[t] != 1 || io == KILN_I8) {
      outputs[i] = b->native[t] == 1 ? b->map_q[t] : b->map_f[t];
      continue;
    }
    /* Rename the internal int8 tensor; the edge tensor keeps the name. */
    int32_t internal = b->map_q[t];
    char renamed[512];
    snprintf(renamed, sizeof renamed, "%s/int8", m->tensors[t].name);
    b->dst->tensors[internal].name = kiln_model_alloc(b->dst, strlen(renamed) + 1);
    if (!b->dst->tensors[internal].name) return kiln_fail(b->err, KILN_ERR_NOMEM, "out of memory");
    memcpy((char *)b->dst->tensors[internal].name, renamed, strlen(renamed) + 1);
    kiln_op_options o = no_options;
    if (io == KILN_U8) {
      outputs[i] = add_q8(b, t, NULL, KILN_U8);
      o.type = KILN_OPTS_QUANTIZE;
      if (outputs[i] < 0 || emit_op(b, KILN_OP_QUANTIZE, NULL, &internal, 1, &outputs[i], 1, &o, NULL, 2) < 0)
        return b->err->status;
    } else {
      outputs[i] = add_tensor(b, m->tensors[t].name, NULL, KILN_F32, &m->tensors[t], NULL, NULL);
      o.type = KILN_OPTS_DEQUANTIZE;
      if (outputs[i] < 0 || emit_op(b, KILN_OP_DEQUANTIZE, NULL, &internal, 1, &outputs[i], 1, &o, NULL, 2) < 0)
        return b->err->status;
    }
  }
  return KILN_OK;
}

kiln_status kiln_quantizer_finish(kiln_quantizer *q, kiln_model **out, kiln_error *err) {
  *out = NULL;
  if (q->samples == 0)
    return kiln_fail(err, KILN_ERR_INVALID_ARG, "no calibration samples were added");
  const kiln_model *m = q->model;
  const int32_t n = m->n_tensors;
  builder b;
  memset(&b, 0, sizeof b);
  b.q = q;
  b.src = m;
  b.err = err;
  b.group = kiln_calloc((size_t)n + 1, sizeof *b.group);
  b.lo = kiln_calloc((size_t)n + 1, sizeof *b.lo);
  b.hi = kiln_calloc((size_t)n + 1, sizeof *b.hi);
  b.fixed = kiln_calloc((size_t)n + 1, sizeof *b.fixed);
  b.scale = kiln_calloc((size_t)n + 1, sizeof *b.scale);
  b.zp = kiln_calloc((size_t)n + 1, sizeof *b.zp);
  b.map_q = kiln_calloc((size_t)n + 1, sizeof *b.map_q);
  b.map_f = kiln_calloc((size_t)n + 1, sizeof *b.map_f);
  b.native = kiln_calloc((size_t)n + 1, sizeof *b.native);
  int32_t *inputs = kiln_calloc((size_t)m->n_inputs + 1, sizeof *inputs);
  int32_t *outputs = kiln_calloc((size_t)m->n_outputs + 1, sizeof *outputs);
  kiln_free(q->info);
  q->info = NULL;
  kiln_status s = KILN_OK;
  if (!b.group || !b.lo || !b.hi || !b.fixed || !b.scale || !b.zp || !b.map_q || !b.map_f ||
      !b.native || !inputs || !outputs)
    s = kiln_fail(err, KILN_ERR_NOMEM, "out of memory");
  if (s == KILN_OK) s = kiln_model_new(&b.dst, err);
  if (s == KILN_OK) {
    for (int32_t t = 0; t < n; t++) b.map_q[t] = b.map_f[t] = -1;
    s = choose_params(&b);
  }
  if (s == KILN_OK) s = emit_inputs(&b, inputs);
  for (int32_t i = 0; s == KILN_OK && i < m->n_ops; i++)
    s = q->float_op[i] ? emit_float_op(&b, i) : emit_int8_op(&b, i);
  if (s == KILN_OK) s = emit_outputs(&b, outputs);
  if (s == KILN_OK) s = kiln_model_set_io(b.dst, inputs, m->n_inputs, outputs, m->n_outputs, err);
  if (s == KILN_OK) {
    char desc[256];
    snprintf(desc, sizeof desc, "kiln int8 (%s calibration, %d samples)",
             q->opt.method == KILN_CALIB_MINMAX ? "minmax" : q->opt.method == KILN_CALIB_PERCENTILE ? "percentile" : "entropy",
             (int)q->samples);
    char *d = kiln_model_alloc(b.dst, strlen(desc) + 1);
    if (d) {
      memcpy(d, desc, strlen(desc) + 1);
      b.dst->description = d;
    }
    *out = b.dst;
    b.dst = NULL;
  }
  kiln_model_free(b.dst);
  kiln_free(b.group);
  kiln_free(b.lo);
  kiln_free(b.hi);
  kiln_free(b.fixed);
  kiln_free(b.scale);
  kiln_free(b.zp);
  kiln_free(b.map_q);
  kiln_free(b.map_f);
  kiln_free(b.native);
  kiln_free(inputs);
  kiln_free(outputs);
  return s;
}
