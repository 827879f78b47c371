/*
 * Operator implementations of the conv family (see runtime/op.h):
 * CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, TRANSPOSE_CONV and MediaPipe's
 * custom Convolution2DTransposeBias.
 *
 * Prepare checks every tensor (dtype, rank, shape agreement, quantization),
 * computes the output shape and padding as TFLite's Prepare functions do
 * (ComputePaddingHeightWidth / ComputeOutSize), and the requantization
 * multipliers as TFLite's PopulateConvolutionQuantizationParams /
 * GetQuantizedConvolutionMultipler do (kernels/ref/conv_ref.h has the
 * arithmetic). Eval only picks the kernel for the dtype.
 *
 * Supported: float32; int8 activations with symmetric int8 weights
 * (per-tensor or per-output-channel) and int32 bias; uint8 activations with
 * per-tensor uint8 weights and int32 bias. Hybrid (float activations with
 * int8 weights), int16 activations, shuffled FC weights and fused TANH /
 * SIGN_BIT are refused.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "kernels/ref/conv_ref.h"
#include "runtime/fast_conv.h"
#include "runtime/op.h"

/* fast/plan: an optimized path chosen at prepare (runtime/fast_conv.h), or
 * NULL for the reference kernel. */
typedef struct conv_op {
  kiln_dtype dtype;
  kiln_conv_params p;
  kiln_fast_fn fast;
  const void *plan;
} conv_op;

typedef struct fc_op {
  kiln_dtype dtype;
  kiln_fc_params p;
  kiln_fast_fn fast;
  const void *plan;
} fc_op;

/* ---- Shared checks ---- */

/* Input k, which must be present. */
static kiln_status get_input(kiln_prepare_ctx *ctx, const kiln_node *node, int32_t k,
                             const char *what, kiln_rt_tensor **out) {
  if (k >= node->n_inputs || !node->inputs[k])
    return kiln_prepare_fail(ctx, KILN_ERR_FORMAT, "input %d (%s) is missing", (int)k, what);
  *out = node->inputs[k];
  return KILN_OK;
}

/* Input k if present (absent: index past the list or -1 in the model). */
static kiln_rt_tensor *optional_input(const kiln_node *node, int32_t k) {
  return k < node->n_inputs ? node->inputs[k] : NULL;
}

static kiln_status check_io_counts(kiln_prepare_ctx *ctx, const kiln_node *node, int32_t min_in,
                                   int32_t max_in) {
  if (node->n_inputs < min_in || node->n_inputs > max_in)
    return kiln_prepare_fail(ctx, KILN_ERR_FORMAT, "has %d inputs, expected %d to %d",
                             (int)node->n_inputs, (int)min_in, (int)max_in);
  if (node->n_outputs != 1)
    return kiln_prepare_fail(ctx, KILN_ERR_FORMAT, "has %d outputs, expected 1",
                             (int)node->n_outputs);
  return KILN_OK;
}

static kiln_status check_rank(kiln_prepare_ctx *ctx, const kiln_rt_tensor *t, const char *what,
                              int32_t rank) {
  if (t->rank != rank)
    return kiln_prepare_fail(ctx, KILN_ERR_FORMAT, "%s '%s' has rank %d, expected %d", what,
                             t->name, (int)t->rank, (int)rank);
  for (int32_t i = 0; i < t->rank; i++) {
    if (t->shape[i] < 1)
      return kiln_prepare_fail(ctx, KILN_ERR_UNSUPPORTED, "%s '%s' has empty dimension %d (%d)",
                               what, t->name, (int)i, (int)t->shape[i]);
  }
  return KILN_OK;
}

static kiln_status check_dtype(kiln_prepare_ctx *ctx, const kiln_rt_tensor *t, const char *what,
                               kiln_dtype want) {
  if (t->dtype != want)
    return kiln_prepare_fail(ctx, KILN_ERR_UNSUPPORTED, "%s '%s' is %s; with %s input it must be %s",
                             what, t->name, kiln_dtype_name(t->dtype),
                             want == KILN_I32 ? "quantized" : kiln_dtype_name(want),
                             kiln_dtype_name(want));
  return KILN_OK;
}

/* The activation dtype an op runs in, from its input; refuses the rest. */
static kiln_status check_input_dtype(kiln_prepare_ctx *ctx, const kiln_rt_tensor *input) {
  if (input->dtype == KILN_F32 || input->dtype == KILN_I8 || input->dtype == KILN_U8)
    return KILN_OK;
  return kiln_prepare_fail(ctx, KILN_ERR_UNSUPPORTED,
                           "input '%s' is %s; kiln supports float32, int8 and uint8", input->name,
                           kiln_dtype_name(input->dtype));
}

/* Weights must have the input's dtype (hybrid float x int8 is not supported). */
static kiln_status check_weights_dtype(kiln_prepare_ctx *ctx, const kiln_rt_tensor *input,
                                       const kiln_rt_tensor *weights, const char *what) {
  if (weights->dtype == input->dtype) return KILN_OK;
  if (input->dtype == KILN_F32 && (weights->dtype == KILN_I8 || weights->dtype == KILN_U8))
    return kiln_prepare_fail(ctx, KILN_ERR_UNSUPPORTED,
                             "%s '%s' is %s with float32 input: hybrid quantization is not "
                             "supported",
                             what, weights->name, kiln_dtype_name(weights->dtype));
  return kiln_prepare_fail(ctx, KILN_ERR_UNSUPPORTED, "%s '%s' is %s but input '%s' is %s", what,
                           weights->name, kiln_dtype_name(weights->dtype), input->name,
                           kiln_dtype_name(input->dtype));
}

static kiln_status check_activation(kiln_prepare_ctx *ctx, kiln_activation act) {
  switch (act) {
    case KILN_ACT_NONE:
    case KILN_ACT_RELU:
    case KILN_ACT_RELU_N1_TO_1:
    case KILN_ACT_RELU6: return KILN_OK;
    case KILN_ACT_TANH:
      return kiln_prepare_fail(ctx, KILN_ERR_UNSUPPORTED, "fused activation TANH is not supported");
    case KILN_ACT_SIGN_BIT:
      return kiln_prepare_fail(ctx, KILN_ERR_UNSUPPORTED,
                               "fused activation SIGN_BIT is not supported");
  }
  return kiln_prepare_fail(ctx, KILN_ERR_FORMAT, "unknown fused activation %d", (int)act);
}

static kiln_status check_padding(kiln_prepare_ctx *ctx, kiln_padding padding, bool *same) {
  if (padding != KILN_PAD_SAME && padding != KILN_PAD_VALID)
    return kiln_prepare_fail(ctx, KILN_ERR_FORMAT, "unknown padding %d (expected SAME or VALID)",
                             (int)padding);
  *same = padding == KILN_PAD_SAME;
  return KILN_OK;
}

static kiln_status check_strides(kiln_prepare_ctx *ctx, int32_t stride_h, int32_t stride_w) {
  if (stride_h < 1 || stride_w < 1)
    return kiln_prepare_fail(ctx, KILN_ERR_FORMAT, "strides %dx%d (h x w) must be >= 1",
                             (int)stride_h, (int)stride_w);
  return KILN_OK;
}

/* Per-tensor quantization of an int8/uint8 activation: one positive scale. */
static kiln_status check_act_quant(kiln_prepare_ctx *ctx, const kiln_rt_tensor *t,
                                   const char *what) {
  const kiln_quant *q = t->quant;
  if (q->count != 1)
    return kiln_prepare_fail(ctx, KILN_ERR_UNSUPPORTED,
                             "%s '%s' (%s) needs per-tensor quantization, has %d scales", what,
                             t->name, kiln_dtype_name(t->dtype), (int)q->count);
  if (!(q->scale[0] > 0.0f) || !isfinite(q->scale[0]))
    return kiln_prepare_fail(ctx, KILN_ERR_FORMAT, "%s '%s' has quantization scale %g", what,
                             t->name, (double)q->scale[0]);
  return KILN_OK;
}

/* A bias: dtype (float32, or int32 for quantized ops), `channels` elements,
 * zero points 0. */
static kiln_status check_bias(kiln_prepare_ctx *ctx, const kiln_rt_tensor *bias,
                              kiln_dtype input_dtype, int32_t channels) {
  if (!bias) return KILN_OK;
  kiln_status s =
      check_dtype(ctx, bias, "bias", input_dtype == KILN_F32 ? KILN_F32 : KILN_I32);
  if (s != KILN_OK) return s;
  if (kiln_rt_elements(bias) != channels)
    return kiln_prepare_fail(ctx, KILN_ERR_FORMAT, "bias '%s' has %lld elements, expected %d",
                             bias->name, (long long)kiln_rt_elements(bias), (int)channels);
  for (int32_t i = 0; i < bias->quant->count; i++) {
    if (input_dtype != KILN_F32 && bias->quant->zero_point[i] != 0)
      return kiln_prepare_fail(ctx, KILN_ERR_UNSUPPORTED, "bias '%s' has zero point %d, expected 0",
                               bias->name, (int)bias->quant->zero_point[i]);
  }
  return KILN_OK;
}

/* Multiplier arrays [channels] in the prepare pool. */
static kiln_status alloc_multipliers(kiln_prepare_ctx *ctx, int32_t channels, int32_t **mult,
                                     int32_t **shift) {
  *mult = kiln_prepare_alloc(ctx, (size_t)channels * sizeof **mult);
  *shift = kiln_prepare_alloc(ctx, (size_t)channels * sizeof **shift);
  if (!*mult || !*shift) return kiln_prepare_nomem(ctx);
  return KILN_OK;
}

/* A multiplier whose shift exceeds 30 would shift the accumulator past 32
 * bits (undefined in TFLite too); such a scale ratio is not a real model. */
static kiln_status check_shift(kiln_prepare_ctx *ctx, int32_t shift, float in_scale,
                               float filter_scale, float out_scale) {
  if (shift > 30)
    return kiln_prepare_fail(ctx, KILN_ERR_UNSUPPORTED,
                             "effective scale %g * %g / %g is too large to requantize",
                             (double)in_scale, (double)filter_scale, (double)out_scale);
  return KILN_OK;
}

/* int8 weights: symmetric (zero points 0), one scale or one per channel
 * along `axis`. Fills per-channel multipliers (TFLite
 * PopulateConvolutionQuantizationParams, double arithmetic). */
static kiln_status prepare_s8_weights(kiln_prepare_ctx *ctx, const kiln_rt_tensor *input,
                                      const kiln_rt_tensor *weights, const kiln_rt_tensor *output,
                                      int32_t axis, int32_t channels, const int32_t **mult_out,
                                      const int32_t **shift_out) {
  const kiln_quant *q = weights->quant;
  if (q->count != 1 && q->count != channels)
    return kiln_prepare_fail(ctx, KILN_ERR_UNSUPPORTED,
                             "weights '%s' have %d quantization scales, expected 1 or %d (one per "
                             "output channel)",
                             weights->name, (int)q->count, (int)channels);
  if (q->count > 1 && q->axis != axis)
    return kiln_prepare_fail(ctx, KILN_ERR_UNSUPPORTED,
                             "weights '%s' are quantized along axis %d, expected axis %d",
                             weights->name, (int)q->axis, (int)axis);
  for (int32_t i = 0; i < q->count; i++) {
    if (q->zero_point[i] != 0)
      return kiln_prepare_fail(ctx, KILN_ERR_UNSUPPORTED,
                               "int8 weights '%s' have zero point %d at channel %d; int8 weights "
                               "must be symmetric (zero point 0)",
                               weights->name, (int)q->zero_point[i], (int)i);
    if (!(q->scale[i] >= 0.0f) || !isfinite(q->scale[i]))
      return kiln_prepare_fail(ctx, KILN_ERR_FORMAT, "weights '%s' have scale %g at channel %d",
                               weights->name, (double)q->scale[i], (int)i);
  }
  int32_t *mult, *shift;
  kiln_status s = alloc_multipliers(ctx, channels, &mult, &shift);
  if (s != KILN_OK) return s;
  const float in_scale = input->quant->scale[0], out_scale = output->quant->scale[0];
  for (int32_t c = 0; c < channels; c++) {
    const float f_scale = q->scale[q->count > 1 ? c : 0];
    kiln_conv_multiplier(in_scale, f_scale, out_scale, &mult[c], &shift[c]);
    s = check_shift(ctx, shift[c], in_scale, f_scale, out_scale);
    if (s != KILN_OK) return s;
  }
  *mult_out = mult;
  *shift_out = shift;
  return KILN_OK;
}

/* The legacy per-tensor multiplier (uint8 ops, per-tensor fully connected):
 * float product of scales, TFLite's bias-scale check, one value repeated
 * over `channels`. */
static kiln_status prepare_legacy_multiplier(kiln_prepare_ctx *ctx, const kiln_rt_tensor *input,
                                             const kiln_rt_tensor *weights,
                                             const kiln_rt_tensor *bias,
                                             const kiln_rt_tensor *output, int32_t channels,
                                             const int32_t **mult_out, const int32_t **shift_out) {
  const float in_scale = input->quant->scale[0], out_scale = output->quant->scale[0];
  const float w_scale = weights->quant->scale[0];
  if (!(w_scale >= 0.0f) || !isfinite(w_scale))
    return kiln_prepare_fail(ctx, KILN_ERR_FORMAT, "weights '%s' have scale %g", weights->name,
                             (double)w_scale);
  if (bias) {
    /* TFLite reads the bias's per-tensor scale (0 when it has none). */
    const float b_scale = bias->quant->count == 1 ? bias->quant->scale[0] : 0.0f;
    if (!kiln_conv_bias_scale_ok(in_scale, w_scale, b_scale, out_scale))
      return kiln_prepare_fail(ctx, KILN_ERR_FORMAT,
                               "bias '%s' scale %g does not match input scale * weights scale = "
                               "%g (TFLite requires |difference| / output scale <= 0.02)",
                               bias->name, (double)b_scale, (double)in_scale * (double)w_scale);
  }
  int32_t m, sh;
  kiln_conv_multiplier_legacy(in_scale, w_scale, out_scale, &m, &sh);
  kiln_status s = check_shift(ctx, sh, in_scale, w_scale, out_scale);
  if (s != KILN_OK) return s;
  int32_t *mult, *shift;
  s = alloc_multipliers(ctx, channels, &mult, &shift);
  if (s != KILN_OK) return s;
  for (int32_t c = 0; c < channels; c++) {
    mult[c] = m;
    shift[c] = sh;
  }
  *mult_out = mult;
  *shift_out = shift;
  return KILN_OK;
}

/* uint8 weights: per-tensor only (TFLite's per-channel kernels need int8). */
static kiln_status check_u8_weights(kiln_prepare_ctx *ctx, const kiln_rt_tensor *weights) {
  if (weights->quant->count != 1)
    return kiln_prepare_fail(ctx, KILN_ERR_UNSUPPORTED,
                             "uint8 weights '%s' have %d quantization scales; uint8 needs "
                             "per-tensor weights (per-channel needs int8)",
                             weights->name, (int)weights->quant->count);
  return KILN_OK;
}

/* Quantization of a spatial conv op (conv, depthwise, transpose conv):
 * activations per-tensor, weights by dtype, multipliers, clamp bounds. */
static kiln_status prepare_conv_quant(kiln_prepare_ctx *ctx, const kiln_rt_tensor *input,
                                      const kiln_rt_tensor *weights, const kiln_rt_tensor *bias,
                                      const kiln_rt_tensor *output, kiln_activation act,
                                      int32_t axis, kiln_conv_params *p) {
  if (input->dtype == KILN_F32) {
    kiln_activation_range_f(act, &p->float_min, &p->float_max);
    return KILN_OK;
  }
  kiln_status s = check_act_quant(ctx, input, "input");
  if (s == KILN_OK) s = check_act_quant(ctx, output, "output");
  if (s != KILN_OK) return s;
  p->input_offset = -input->quant->zero_point[0];
  p->output_offset = output->quant->zero_point[0];
  if (input->dtype == KILN_I8) {
    s = prepare_s8_weights(ctx, input, weights, output, axis, p->out_c, &p->multiplier, &p->shift);
    p->filter_offset = 0;
  } else {
    s = check_u8_weights(ctx, weights);
    if (s == KILN_OK)
      s = prepare_legacy_multiplier(ctx, input, weights, bias, output, p->out_c, &p->multiplier,
                                    &p->shift);
    p->filter_offset = -weights->quant->zero_point[0];
  }
  if (s != KILN_OK) return s;
  kiln_activation_range_q(act, output, &p->act_min, &p->act_max);
  return KILN_OK;
}

/* Output length and padding of one spatial axis (TFLite
 * ComputePaddingHeightWidth); refuses windows that do not fit. */
static kiln_status conv_axis(kiln_prepare_ctx *ctx, const char *axis_name, bool same, int32_t in,
                             int32_t filter, int32_t stride, int32_t dilation, int32_t *out,
                             int32_t *pad, int32_t *offset) {
  const int64_t n = kiln_conv_out_size(same, in, filter, stride, dilation);
  const int64_t span = ((int64_t)filter - 1) * dilation + 1 + (int64_t)stride * in;
  if (n < 1)
    return kiln_prepare_fail(ctx, KILN_ERR_FORMAT,
                             "%s: input %d is smaller than the filter (%d taps, dilation %d) with "
                             "VALID padding",
                             axis_name, (int)in, (int)filter, (int)dilation);
  if (span > INT32_MAX / 2)
    return kiln_prepare_fail(ctx, KILN_ERR_UNSUPPORTED, "%s: filter %d, stride %d, input %d: too large",
                             axis_name, (int)filter, (int)stride, (int)in);
  *out = (int32_t)n;
  *pad = kiln_conv_pad(stride, dilation, in, filter, *out, offset);
  return KILN_OK;
}

static kiln_status dilations(kiln_prepare_ctx *ctx, const kiln_op_options *o, int32_t *dh,
                             int32_t *dw) {
  if (o->dilation_h < 1 || o->dilation_w < 1)
    return kiln_prepare_fail(ctx, KILN_ERR_FORMAT, "dilation %dx%d (h x w) must be >= 1",
                             (int)o->dilation_h, (int)o->dilation_w);
  *dh = o->dilation_h;
  *dw = o->dilation_w;
  return KILN_OK;
}

/* ---- CONV_2D and DEPTHWISE_CONV_2D ---- */

static kiln_status spatial_prepare(kiln_node *node, kiln_prepare_ctx *ctx, bool depthwise) {
  const kiln_op_options *o = &node->op->options;
  kiln_rt_tensor *input = NULL, *filter = NULL, *output;
  kiln_status s = check_io_counts(ctx, node, 2, 3);
  if (s == KILN_OK) s = get_input(ctx, node, 0, "input", &input);
  if (s == KILN_OK) s = get_input(ctx, node, 1, "filter", &filter);
  if (s != KILN_OK) return s;
  kiln_rt_tensor *bias = optional_input(node, 2);
  output = node->outputs[0];

  if ((s = check_input_dtype(ctx, input)) != KILN_OK) return s;
  if ((s = check_weights_dtype(ctx, input, filter, "filter")) != KILN_OK) return s;
  if ((s = check_dtype(ctx, output, "output", input->dtype)) != KILN_OK) return s;
  if ((s = check_rank(ctx, input, "input", 4)) != KILN_OK) return s;
  if ((s = check_rank(ctx, filter, "filter", 4)) != KILN_OK) return s;
  bool same = false;
  if ((s = check_padding(ctx, o->padding, &same)) != KILN_OK) return s;
  if ((s = check_strides(ctx, o->stride_h, o->stride_w)) != KILN_OK) return s;
  if ((s = check_activation(ctx, o->activation)) != KILN_OK) return s;

  conv_op *op = kiln_prepare_alloc(ctx, sizeof *op);
  if (!op) return kiln_prepare_nomem(ctx);
  kiln_conv_params *p = &op->p;
  op->dtype = input->dtype;
  p->batch = input->shape[0];
  p->in_h = input->shape[1];
  p->in_w = input->shape[2];
  p->in_c = input->shape[3];
  p->filter_h = filter->shape[1];
  p->filter_w = filter->shape[2];
  p->stride_h = o->stride_h;
  p->stride_w = o->stride_w;
  if ((s = dilations(ctx, o, &p->dilation_h, &p->dilation_w)) != KILN_OK) return s;
  p->groups = 1;
  p->depth_multiplier = 1;
  if (depthwise) {
    /* [1, H, W, in_c * M]. Like TFLite, the multiplier comes from the shapes;
     * the depth_multiplier option is not trusted (converters get it wrong). */
    p->out_c = filter->shape[3];
    if (filter->shape[0] != 1)
      return kiln_prepare_fail(ctx, KILN_ERR_FORMAT,
                               "depthwise filter '%s' has first dimension %d, expected 1",
                               filter->name, (int)filter->shape[0]);
    if (p->out_c % p->in_c != 0)
      return kiln_prepare_fail(ctx, KILN_ERR_FORMAT,
                               "depthwise filter '%s' has %d channels, not a multiple of the %d "
                               "input channels",
                               filter->name, (int)p->out_c, (int)p->in_c);
    p->depth_multiplier = p->out_c / p->in_c;
    if (bias && bias->rank != 1)
      return kiln_prepare_fail(ctx, KILN_ERR_FORMAT, "bias '%s' has rank %d, expected 1",
                               bias->name, (int)bias->rank);
  } else {
    /* OHWI; grouped when the input has a multiple of the filter's channels. */
    p->out_c = filter->shape[0];
    const int32_t filter_c = filter->shape[3];
    if (p->in_c % filter_c != 0)
      return kiln_prepare_fail(ctx, KILN_ERR_FORMAT,
                               "filter '%s' has %d input channels; input '%s' has %d, which is "
                               "not a multiple",
                               filter->name, (int)filter_c, input->name, (int)p->in_c);
    p->groups = p->in_c / filter_c;
    if (p->out_c % p->groups != 0)
      return kiln_prepare_fail(ctx, KILN_ERR_FORMAT,
                               "grouped conv: %d output channels do not split into %d groups",
                               (int)p->out_c, (int)p->groups);
  }
  if ((s = conv_axis(ctx, "height", same, p->in_h, p->filter_h, p->stride_h, p->dilation_h,
                     &p->out_h, &p->pad_h, &p->pad_h_offset)) != KILN_OK)
    return s;
  if ((s = conv_axis(ctx, "width", same, p->in_w, p->filter_w, p->stride_w, p->dilation_w,
                     &p->out_w, &p->pad_w, &p->pad_w_offset)) != KILN_OK)
    return s;
  if ((s = check_bias(ctx, bias, input->dtype, p->out_c)) != KILN_OK) return s;
  /* Per-axis weights: output channels are axis 0 of OHWI, axis 3 of 1HWO. */
  s = prepare_conv_quant(ctx, input, filter, bias, output, o->activation, depthwise ? 3 : 0, p);
  if (s != KILN_OK) return s;
  const int32_t shape[4] = {p->batch, p->out_h, p->out_w, p->out_c};
  if ((s = kiln_prepare_set_output_shape(ctx, output, 4, shape)) != KILN_OK) return s;
  if (kiln_prepare_isa(ctx)) {
    if (op->dtype == KILN_F32)
      s = depthwise ? kiln_fast_depthwise_f32_prepare(ctx, node, p, &op->fast, &op->plan)
                    : kiln_fast_conv2d_f32_prepare(ctx, node, p, &op->fast, &op->plan);
    else if (op->dtype == KILN_I8)
      s = depthwise ? kiln_fast_depthwise_s8_prepare(ctx, node, p, &op->fast, &op->plan)
                    : kiln_fast_conv2d_s8_prepare(ctx, node, p, &op->fast, &op->plan);
    if (s != KILN_OK) return s;
  }
  node->params = op;
  return KILN_OK;
}

static kiln_status conv2d_prepare(kiln_node *node, kiln_prepare_ctx *ctx) {
  return spatial_prepare(node, ctx, false);
}

static kiln_status depthwise_prepare(kiln_node *node, kiln_prepare_ctx *ctx) {
  return spatial_prepare(node, ctx, true);
}

static const void *bias_data(const kiln_node *node, int32_t k) {
  const kiln_rt_tensor *b = k < node->n_inputs ? node->inputs[k] : NULL;
  return b ? b->data : NULL;
}

static void conv2d_eval(const kiln_node *node, const kiln_eval_ctx *ctx) {
  const conv_op *op = node->params;
  if (op->fast) {
    op->fast(node, op->plan, ctx);
    return;
  }
  const void *in = node->inputs[0]->data, *f = node->inputs[1]->data, *b = bias_data(node, 2);
  void *out = node->outputs[0]->data;
  switch (op->dtype) {
    case KILN_F32: kiln_f32_conv2d_ref(&op->p, in, f, b, out); break;
    case KILN_I8: kiln_s8_conv2d_ref(&op->p, in, f, b, out); break;
    case KILN_U8: kiln_u8_conv2d_ref(&op->p, in, f, b, out); break;
    default: break; /* refused in prepare */
  }
}

static void depthwise_eval(const kiln_node *node, const kiln_eval_ctx *ctx) {
  const conv_op *op = node->params;
  if (op->fast) {
    op->fast(node, op->plan, ctx);
    return;
  }
  const void *in = node->inputs[0]->data, *f = node->inputs[1]->data, *b = bias_data(node, 2);
  void *out = node->outputs[0]->data;
  switch (op->dtype) {
    case KILN_F32: kiln_f32_depthwise_conv2d_ref(&op->p, in, f, b, out); break;
    case KILN_I8: kiln_s8_depthwise_conv2d_ref(&op->p, in, f, b, out); break;
    case KILN_U8: kiln_u8_depthwise_conv2d_ref(&op->p, in, f, b, out); break;
    default: break;
  }
}

/* ---- FULLY_CONNECTED ---- */

static kiln_status fc_quant(kiln_prepare_ctx *ctx, const kiln_rt_tensor *input,
                            const kiln_rt_tensor *weights, const kiln_rt_tensor *bias,
                            const kiln_rt_tensor *output, kiln_activation act, kiln_fc_params *p) {
  if (input->dtype == KILN_F32) {
    kiln_activation_range_f(act, &p->float_min, &p->float_max);
    return KILN_OK;
  }
  kiln_status s = check_act_quant(ctx, input, "input");
  if (s == KILN_OK) s = check_act_quant(ctx, output, "output");
  if (s != KILN_OK) return s;
  p->input_offset = -input->quant->zero_point[0];
  p->output_offset = output->quant->zero_point[0];
  const kiln_quant *q = weights->quant;
  if (q->count == 0)
    return kiln_prepare_fail(ctx, KILN_ERR_UNSUPPORTED, "weights '%s' are not quantized",
                             weights->name);
  /* The fixed-point multipliers are computed for TFLite's prepare-time
   * checks (weights, bias scale, shift range); the reference kernel itself
   * rescales with the double-precision scales below. */
  const int32_t *mult = NULL, *shift = NULL;
  const bool per_channel = input->dtype == KILN_I8 && q->count > 1;
  if (per_channel) {
    /* Per-channel: symmetric weights (TFLite ignores their zero point). */
    s = prepare_s8_weights(ctx, input, weights, output, 0, p->out_depth, &mult, &shift);
    p->filter_offset = 0;
  } else {
    /* Per-tensor (int8 or uint8): TFLite applies the weights' zero point
     * for backward compatibility. */
    if (input->dtype == KILN_U8) s = check_u8_weights(ctx, weights);
    if (s == KILN_OK)
      s = prepare_legacy_multiplier(ctx, input, weights, bias, output, p->out_depth, &mult, &shift);
    p->filter_offset = -q->zero_point[0];
  }
  if (s != KILN_OK) return s;
  double *scale = kiln_prepare_alloc(ctx, (size_t)p->out_depth * sizeof *scale);
  if (!scale) return kiln_prepare_nomem(ctx);
  const double in_scale = (double)input->quant->scale[0], out_scale = (double)output->quant->scale[0];
  for (int32_t c = 0; c < p->out_depth; c++)
    scale[c] = in_scale * (double)q->scale[per_channel ? c : 0] / out_scale;
  p->scale = scale;
  kiln_activation_range_q(act, output, &p->act_min, &p->act_max);
  return KILN_OK;
}

static kiln_status fc_prepare(kiln_node *node, kiln_prepare_ctx *ctx) {
  const kiln_op_options *o = &node->op->options;
  kiln_rt_tensor *input = NULL, *weights = NULL, *output;
  kiln_status s = check_io_counts(ctx, node, 2, 3);
  if (s == KILN_OK) s = get_input(ctx, node, 0, "input", &input);
  if (s == KILN_OK) s = get_input(ctx, node, 1, "weights", &weights);
  if (s != KILN_OK) return s;
  kiln_rt_tensor *bias = optional_input(node, 2);
  output = node->outputs[0];

  if (o->weights_format != 0)
    return kiln_prepare_fail(ctx, KILN_ERR_UNSUPPORTED,
                             "weights format %d (shuffled) is not supported, only DEFAULT",
                             (int)o->weights_format);
  if ((s = check_input_dtype(ctx, input)) != KILN_OK) return s;
  if ((s = check_weights_dtype(ctx, input, weights, "weights")) != KILN_OK) return s;
  if ((s = check_dtype(ctx, output, "output", input->dtype)) != KILN_OK) return s;
  if ((s = check_rank(ctx, weights, "weights", 2)) != KILN_OK) return s;
  if ((s = check_activation(ctx, o->activation)) != KILN_OK) return s;
  if (input->rank < 1)
    return kiln_prepare_fail(ctx, KILN_ERR_FORMAT, "input '%s' is a scalar", input->name);

  fc_op *op = kiln_prepare_alloc(ctx, sizeof *op);
  if (!op) return kiln_prepare_nomem(ctx);
  kiln_fc_params *p = &op->p;
  op->dtype = input->dtype;
  p->out_depth = weights->shape[0];
  p->in_depth = weights->shape[1];
  const int64_t n = kiln_rt_elements(input);
  if (n < 1 || n % p->in_depth != 0)
    return kiln_prepare_fail(ctx, KILN_ERR_FORMAT,
                             "input '%s' has %lld elements, not a multiple of the weights' %d "
                             "input columns",
                             input->name, (long long)n, (int)p->in_depth);
  if (n / p->in_depth > INT32_MAX)
    return kiln_prepare_fail(ctx, KILN_ERR_UNSUPPORTED, "input '%s' is too large", input->name);
  p->batch = (int32_t)(n / p->in_depth);
  if ((s = check_bias(ctx, bias, input->dtype, p->out_depth)) != KILN_OK) return s;
  if ((s = fc_quant(ctx, input, weights, bias, output, o->activation, p)) != KILN_OK) return s;

  int32_t shape[KILN_MAX_RANK];
  int32_t rank = 2;
  if (o->keep_num_dims) {
    if (input->shape[input->rank - 1] != p->in_depth)
      return kiln_prepare_fail(ctx, KILN_ERR_FORMAT,
                               "keep_num_dims: input '%s' last dimension %d differs from the "
                               "weights' %d input columns",
                               input->name, (int)input->shape[input->rank - 1], (int)p->in_depth);
    rank = input->rank;
    memcpy(shape, input->shape, sizeof shape);
    shape[rank - 1] = p->out_depth;
  } else {
    shape[0] = p->batch;
    shape[1] = p->out_depth;
  }
  if ((s = kiln_prepare_set_output_shape(ctx, output, rank, shape)) != KILN_OK) return s;
  if (kiln_prepare_isa(ctx)) {
    if (op->dtype == KILN_F32) s = kiln_fast_fc_f32_prepare(ctx, node, p, &op->fast, &op->plan);
    else if (op->dtype == KILN_I8) s = kiln_fast_fc_s8_prepare(ctx, node, p, &op->fast, &op->plan);
    if (s != KILN_OK) return s;
  }
  node->params = op;
  return KILN_OK;
}

static void fc_eval(const kiln_node *node, const kiln_eval_ctx *ctx) {
  const fc_op *op = node->params;
  if (op->fast) {
    op->fast(node, op->plan, ctx);
    return;
  }
  const void *in = node->inputs[0]->data, *w = node->inputs[1]->data, *b = bias_data(node, 2);
  void *out = node->outputs[0]->data;
  switch (op->dtype) {
    case KILN_F32: kiln_f32_fully_connected_ref(&op->p, in, w, b, out); break;
    case KILN_I8: kiln_s8_fully_connected_ref(&op->p, in, w, b, out); break;
    case KILN_U8: kiln_u8_fully_connected_ref(&op->p, in, w, b, out); break;
    default: break;
  }
}

/* ---- TRANSPOSE_CONV (builtin) ---- */

/* Padding as TFLite's transpose_conv Eval computes it: the conv padding of
 * a window over the *output* extent. */
static void transpose_axis(bool same, int32_t out, int32_t filter, int32_t stride, int32_t *pad,
                           int32_t *offset) {
  const int64_t conv_out = kiln_conv_out_size(same, out, filter, stride, 1);
  *pad = kiln_conv_pad(stride, 1, out, filter, (int32_t)conv_out, offset);
}

static kiln_status transpose_prepare(kiln_node *node, kiln_prepare_ctx *ctx) {
  const kiln_op_options *o = &node->op->options;
  kiln_rt_tensor *shape_t = NULL, *weights = NULL, *input = NULL, *output;
  kiln_status s = check_io_counts(ctx, node, 3, 4);
  if (s == KILN_OK) s = get_input(ctx, node, 0, "output_shape", &shape_t);
  if (s == KILN_OK) s = get_input(ctx, node, 1, "weights", &weights);
  if (s == KILN_OK) s = get_input(ctx, node, 2, "input", &input);
  if (s != KILN_OK) return s;
  kiln_rt_tensor *bias = optional_input(node, 3);
  output = node->outputs[0];

  if (shape_t->dtype != KILN_I32 || shape_t->rank != 1 || shape_t->shape[0] != 4)
    return kiln_prepare_fail(ctx, KILN_ERR_FORMAT,
                             "output_shape '%s' must be an int32 vector of 4 elements", shape_t->name);
  if (!shape_t->is_const || !shape_t->data)
    return kiln_prepare_fail(ctx, KILN_ERR_UNSUPPORTED,
                             "output_shape '%s' is computed at run time; kiln needs a constant",
                             shape_t->name);
  if ((s = check_input_dtype(ctx, input)) != KILN_OK) return s;
  if ((s = check_weights_dtype(ctx, input, weights, "weights")) != KILN_OK) return s;
  if ((s = check_dtype(ctx, output, "output", input->dtype)) != KILN_OK) return s;
  if ((s = check_rank(ctx, input, "input", 4)) != KILN_OK) return s;
  if ((s = check_rank(ctx, weights, "weights", 4)) != KILN_OK) return s;
  bool same = false;
  if ((s = check_padding(ctx, o->padding, &same)) != KILN_OK) return s;
  if ((s = check_strides(ctx, o->stride_h, o->stride_w)) != KILN_OK) return s;
  if ((s = check_activation(ctx, o->activation)) != KILN_OK) return s;

  int32_t out_shape[4];
  memcpy(out_shape, shape_t->data, sizeof out_shape);
  conv_op *op = kiln_prepare_alloc(ctx, sizeof *op);
  if (!op) return kiln_prepare_nomem(ctx);
  kiln_conv_params *p = &op->p;
  op->dtype = input->dtype;
  p->batch = input->shape[0];
  p->in_h = input->shape[1];
  p->in_w = input->shape[2];
  p->in_c = input->shape[3];
  p->out_h = out_shape[1];
  p->out_w = out_shape[2];
  p->out_c = weights->shape[0];
  p->filter_h = weights->shape[1];
  p->filter_w = weights->shape[2];
  p->groups = p->depth_multiplier = 1;
  p->stride_h = o->stride_h;
  p->stride_w = o->stride_w;
  p->dilation_h = p->dilation_w = 1;
  if (weights->shape[3] != p->in_c)
    return kiln_prepare_fail(ctx, KILN_ERR_FORMAT,
                             "weights '%s' have %d input channels, input '%s' has %d",
                             weights->name, (int)weights->shape[3], input->name, (int)p->in_c);
  if (out_shape[0] != p->batch || out_shape[3] != p->out_c || p->out_h < 1 || p->out_w < 1)
    return kiln_prepare_fail(ctx, KILN_ERR_FORMAT,
                             "output_shape [%d,%d,%d,%d] does not fit batch %d and %d output "
                             "channels",
                             (int)out_shape[0], (int)out_shape[1], (int)out_shape[2],
                             (int)out_shape[3], (int)p->batch, (int)p->out_c);
  if ((int64_t)p->in_h * p->stride_h + p->filter_h > INT32_MAX / 2 ||
      (int64_t)p->in_w * p->stride_w + p->filter_w > INT32_MAX / 2 ||
      (int64_t)p->out_h * p->stride_h + p->filter_h > INT32_MAX / 2 ||
      (int64_t)p->out_w * p->stride_w + p->filter_w > INT32_MAX / 2)
    return kiln_prepare_fail(ctx, KILN_ERR_UNSUPPORTED, "strides %dx%d: geometry too large",
                             (int)p->stride_h, (int)p->stride_w);
  transpose_axis(same, p->out_h, p->filter_h, p->stride_h, &p->pad_h, &p->pad_h_offset);
  transpose_axis(same, p->out_w, p->filter_w, p->stride_w, &p->pad_w, &p->pad_w_offset);
  if ((s = check_bias(ctx, bias, input->dtype, p->out_c)) != KILN_OK) return s;
  s = prepare_conv_quant(ctx, input, weights, bias, output, o->activation, 0, p);
  if (s != KILN_OK) return s;
  if ((s = kiln_prepare_set_output_shape(ctx, output, 4, out_shape)) != KILN_OK) return s;
  if (input->dtype != KILN_F32)
    node->scratch_bytes = (size_t)kiln_rt_elements(output) * sizeof(int32_t);
  node->params = op;
  return KILN_OK;
}

static void transpose_eval(const kiln_node *node, const kiln_eval_ctx *ctx) {
  const conv_op *op = node->params;
  const void *in = node->inputs[2]->data, *w = node->inputs[1]->data, *b = bias_data(node, 3);
  void *out = node->outputs[0]->data;
  switch (op->dtype) {
    case KILN_F32: kiln_f32_transpose_conv_ref(&op->p, in, w, b, out); break;
    case KILN_I8: kiln_s8_transpose_conv_ref(&op->p, in, w, b, ctx->scratch, out); break;
    case KILN_U8: kiln_u8_transpose_conv_ref(&op->p, in, w, b, ctx->scratch, out); break;
    default: break;
  }
}

/* ---- MediaPipe Convolution2DTransposeBias ---- */

/* custom_options are the raw bytes of MediaPipe's TfLiteTransposeConvParams
 * { int32 padding (TfLitePadding: 0 unknown, 1 SAME, 2 VALID); int32
 * stride_width; int32 stride_height; }, little-endian. */
#define MP_OPTIONS_BYTES 12

static int32_t read_le32(const uint8_t *b) {
  return (int32_t)((uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
                   (uint32_t)b[3] << 24);
}

static kiln_status mp_transpose_prepare(kiln_node *node, kiln_prepare_ctx *ctx) {
  const kiln_op *kop = node->op;
  kiln_rt_tensor *input = NULL, *weights = NULL, *bias = NULL, *output;
  kiln_status s = check_io_counts(ctx, node, 3, 3);
  if (s == KILN_OK) s = get_input(ctx, node, 0, "input", &input);
  if (s == KILN_OK) s = get_input(ctx, node, 1, "weights", &weights);
  if (s == KILN_OK) s = get_input(ctx, node, 2, "bias", &bias);
  if (s != KILN_OK) return s;
  output = node->outputs[0];
  if (kop->custom_options_bytes != MP_OPTIONS_BYTES || !kop->custom_options)
    return kiln_prepare_fail(ctx, KILN_ERR_UNSUPPORTED,
                             "custom options are %zu bytes; kiln reads only the %d-byte "
                             "{padding, stride_width, stride_height} layout",
                             kop->custom_options_bytes, MP_OPTIONS_BYTES);
  const int32_t padding = read_le32(kop->custom_options);
  const int32_t stride_w = read_le32(kop->custom_options + 4);
  const int32_t stride_h = read_le32(kop->custom_options + 8);
  if (padding != 1 && padding != 2)
    return kiln_prepare_fail(ctx, KILN_ERR_UNSUPPORTED,
                             "custom option padding %d is neither SAME (1) nor VALID (2)",
                             (int)padding);
  if ((s = check_strides(ctx, stride_h, stride_w)) != KILN_OK) return s;
  const bool same = padding == 1;

  if (input->dtype != KILN_F32)
    return kiln_prepare_fail(ctx, KILN_ERR_UNSUPPORTED, "input '%s' is %s; only float32 is supported",
                             input->name, kiln_dtype_name(input->dtype));
  if ((s = check_dtype(ctx, weights, "weights", KILN_F32)) != KILN_OK) return s;
  if ((s = check_dtype(ctx, bias, "bias", KILN_F32)) != KILN_OK) return s;
  if ((s = check_dtype(ctx, output, "output", KILN_F32)) != KILN_OK) return s;
  if ((s = check_rank(ctx, input, "input", 4)) != KILN_OK) return s;
  if ((s = check_rank(ctx, weights, "weights", 4)) != KILN_OK) return s;
  if ((s = check_rank(ctx, bias, "bias", 1)) != KILN_OK) return s;
  if (bias->shape[0] != weights->shape[0])
    return kiln_prepare_fail(ctx, KILN_ERR_FORMAT, "bias '%s' has %d elements, weights '%s' %d outputs",
                             bias->name, (int)bias->shape[0], weights->name, (int)weights->shape[0]);
  if (weights->shape[3] != input->shape[3])
    return kiln_prepare_fail(ctx, KILN_ERR_FORMAT,
                             "weights '%s' have %d input channels, input '%s' has %d",
                             weights->name, (int)weights->shape[3], input->name,
                             (int)input->shape[3]);

  conv_op *op = kiln_prepare_alloc(ctx, sizeof *op);
  if (!op) return kiln_prepare_nomem(ctx);
  kiln_conv_params *p = &op->p;
  op->dtype = KILN_F32;
  p->batch = input->shape[0];
  p->in_h = input->shape[1];
  p->in_w = input->shape[2];
  p->in_c = input->shape[3];
  p->out_c = weights->shape[0];
  p->filter_h = weights->shape[1];
  p->filter_w = weights->shape[2];
  p->groups = p->depth_multiplier = 1;
  p->stride_h = stride_h;
  p->stride_w = stride_w;
  p->dilation_h = p->dilation_w = 1;
  const int64_t out_h = kiln_transpose_conv_bias_out_size(same, p->in_h, p->filter_h, stride_h,
                                                          &p->pad_h);
  const int64_t out_w = kiln_transpose_conv_bias_out_size(same, p->in_w, p->filter_w, stride_w,
                                                          &p->pad_w);
  if (out_h < 1 || out_w < 1 || out_h > INT32_MAX / 4 || out_w > INT32_MAX / 4)
    return kiln_prepare_fail(ctx, KILN_ERR_UNSUPPORTED, "output would be %lldx%lld pixels",
                             (long long)out_h, (long long)out_w);
  p->out_h = (int32_t)out_h;
  p->out_w = (int32_t)out_w;
  p->float_min = -INFINITY;
  p->float_max = INFINITY;
  const int32_t shape[4] = {p->batch, p->out_h, p->out_w, p->out_c};
  if ((s = kiln_prepare_set_output_shape(ctx, output, 4, shape)) != KILN_OK) return s;
  node->params = op;
  return KILN_OK;
}

static void mp_transpose_eval(const kiln_node *node, const kiln_eval_ctx *ctx) {
  (void)ctx;
  const conv_op *op = node->params;
  kiln_f32_transpose_conv_bias_ref(&op->p, node->inputs[0]->data, node->inputs[1]->data,
                                   node->inputs[2]->data, node->outputs[0]->data);
}

const kiln_op_reg kiln_ops_conv[] = {
    {KILN_OP_CONV_2D, NULL, {conv2d_prepare, conv2d_eval}},
    {KILN_OP_DEPTHWISE_CONV_2D, NULL, {depthwise_prepare, depthwise_eval}},
    {KILN_OP_FULLY_CONNECTED, NULL, {fc_prepare, fc_eval}},
    {KILN_OP_TRANSPOSE_CONV, NULL, {transpose_prepare, transpose_eval}},
    {KILN_OP_CUSTOM, "Convolution2DTransposeBias", {mp_transpose_prepare, mp_transpose_eval}},
    {-1, NULL, {NULL, NULL}},
};
