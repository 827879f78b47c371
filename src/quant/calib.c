/*
 * Calibration (kiln/quant.h): a float interpreter with an observer that
 * records every float activation's statistics after each op.
 */
#include <stdio.h>
#include <string.h>

#include "kiln/vision.h"
#include "quant/quant_int.h"

kiln_quant_options kiln_quant_options_default(void) {
  kiln_quant_options o;
  memset(&o, 0, sizeof o);
  o.method = KILN_CALIB_MINMAX;
  o.percentile = 99.99f;
  o.per_channel = true;
  o.io_dtype = KILN_I8;
  o.norm = kiln_image_norm_default();
  return o;
}

static const char *op_label(const kiln_op *op) {
  return op->code == KILN_OP_CUSTOM && op->custom_code ? op->custom_code : kiln_opcode_name(op->code);
}

bool kiln_quant_op_supported(const kiln_op *op, const char **why) {
  switch (op->code) {
    case KILN_OP_CONV_2D: case KILN_OP_DEPTHWISE_CONV_2D: case KILN_OP_FULLY_CONNECTED:
    case KILN_OP_TRANSPOSE_CONV: case KILN_OP_ADD: case KILN_OP_SUB: case KILN_OP_MUL:
    case KILN_OP_AVERAGE_POOL_2D: case KILN_OP_MAX_POOL_2D: case KILN_OP_MEAN:
    case KILN_OP_CONCATENATION: case KILN_OP_RESHAPE: case KILN_OP_SQUEEZE: case KILN_OP_PAD:
    case KILN_OP_PADV2: case KILN_OP_RESIZE_BILINEAR: case KILN_OP_RESIZE_NEAREST_NEIGHBOR:
    case KILN_OP_SOFTMAX: case KILN_OP_LOGISTIC: case KILN_OP_TANH: case KILN_OP_RELU:
    case KILN_OP_RELU6: case KILN_OP_RELU_N1_TO_1: case KILN_OP_LEAKY_RELU: case KILN_OP_PRELU:
    case KILN_OP_HARD_SWISH: case KILN_OP_L2_NORMALIZATION:
      return true;
    case KILN_OP_CUSTOM:
      if (op->custom_code && strcmp(op->custom_code, "TFLite_Detection_PostProcess") == 0) {
        *why = "detection post-processing stays float (fed by DEQUANTIZE), as in Coral's models";
        return false;
      }
      *why = "kiln has no int8 kernel for this custom op";
      return false;
    default:
      *why = "kiln has no int8 kernel for this op";
      return false;
  }
}

static bool is_postprocess(const kiln_op *op) {
  return op->code == KILN_OP_CUSTOM && op->custom_code &&
         strcmp(op->custom_code, "TFLite_Detection_PostProcess") == 0;
}

static void observe(void *ctx, kiln_interp *it, int32_t op_index) {
  kiln_quantizer *q = ctx;
  const kiln_op *op = &q->model->ops[op_index];
  for (int32_t k = 0; k < op->n_outputs; k++) {
    int32_t t = op->outputs[k];
    kiln_tensor_stats *s = &q->stats[t];
    if (!s->tracked) continue;
    kiln_tensor_view v = kiln_interp_tensor(it, t);
    /* The observer cannot fail the invoke: a tensor that went untracked
     * (non-finite values) or observe_nomem surfaces in run_sample. */
    kiln_error ignored;
    kiln_status st = kiln_stats_add(s, v.data, (int64_t)(v.bytes / sizeof(float)), &ignored);
    if (st != KILN_OK) s->tracked = false;
    if (st == KILN_ERR_NOMEM) q->observe_nomem = true;
  }
}

static kiln_status check_float_model(const kiln_model *m, kiln_error *err) {
  for (int32_t i = 0; i < m->n_tensors; i++) {
    const kiln_tensor *t = &m->tensors[i];
    if (t->dtype == KILN_I8 || t->dtype == KILN_U8 || t->dtype == KILN_I16)
      return kiln_fail(err, KILN_ERR_INVALID_ARG,
                       "the model is already quantized (tensor %d '%s' is %s)", (int)i, t->name,
                       kiln_dtype_name(t->dtype));
  }
  for (int32_t i = 0; i < m->n_inputs; i++)
    if (m->tensors[m->inputs[i]].dtype != KILN_F32)
      return kiln_fail(err, KILN_ERR_UNSUPPORTED, "input %d '%s' is %s, not float32", (int)i,
                       m->tensors[m->inputs[i]].name, kiln_dtype_name(m->tensors[m->inputs[i]].dtype));
  return KILN_OK;
}

static kiln_status mark_float_ops(kiln_quantizer *q, kiln_error *err) {
  const kiln_model *m = q->model;
  q->float_op = kiln_calloc((size_t)m->n_ops + 1, sizeof *q->float_op);
  q->float_reasons = kiln_calloc((size_t)m->n_ops + 1, sizeof *q->float_reasons);
  if (!q->float_op || !q->float_reasons) return kiln_fail(err, KILN_ERR_NOMEM, "out of memory");
  for (int32_t i = 0; i < m->n_ops; i++) {
    const char *why = NULL;
    if (kiln_quant_op_supported(&m->ops[i], &why)) continue;
    q->float_op[i] = true;
    if (is_postprocess(&m->ops[i])) continue; /* float by design, not a fallback */
    char line[256];
    snprintf(line, sizeof line, "op %d (%s): %s", (int)i, op_label(&m->ops[i]), why);
    if (!q->opt.allow_float)
      return kiln_fail(err, KILN_ERR_UNSUPPORTED,
                       "%s; cannot make the model fully int8 (use --allow-float to keep it float)",
                       line);
    q->float_reasons[q->n_float_reasons] = kiln_strdup(line);
    if (!q->float_reasons[q->n_float_reasons]) return kiln_fail(err, KILN_ERR_NOMEM, "out of memory");
    q->n_float_reasons++;
  }
  return KILN_OK;
}

kiln_status kiln_quantizer_create(const kiln_model *model, const kiln_quant_options *opt,
                                  kiln_quantizer **out, kiln_error *err) {
  *out = NULL;
  kiln_status s = check_float_model(model, err);
  if (s != KILN_OK) return s;
  kiln_quantizer *q = kiln_calloc(1, sizeof *q);
  if (!q) return kiln_fail(err, KILN_ERR_NOMEM, "out of memory");
  q->model = model;
  q->opt = opt ? *opt : kiln_quant_options_default();
  if (q->opt.io_dtype != KILN_I8 && q->opt.io_dtype != KILN_U8 && q->opt.io_dtype != KILN_F32) {
    kiln_quantizer_free(q);
    return kiln_fail(err, KILN_ERR_INVALID_ARG, "input/output type must be int8, uint8 or float32");
  }
  if (q->opt.method == KILN_CALIB_PERCENTILE && !(q->opt.percentile > 50.0f && q->opt.percentile <= 100.0f)) {
    kiln_quantizer_free(q);
    return kiln_fail(err, KILN_ERR_INVALID_ARG, "percentile %g is not in (50, 100]", (double)q->opt.percentile);
  }
  q->stats = kiln_calloc((size_t)model->n_tensors + 1, sizeof *q->stats);
  if (!q->stats) {
    kiln_quantizer_free(q);
    return kiln_fail(err, KILN_ERR_NOMEM, "out of memory");
  }
  if ((s = mark_float_ops(q, err)) != KILN_OK) {
    kiln_quantizer_free(q);
    return s;
  }
  for (int32_t i = 0; i < model->n_inputs; i++) q->stats[model->inputs[i]].tracked = true;
  for (int32_t i = 0; i < model->n_ops; i++)
    for (int32_t k = 0; k < model->ops[i].n_outputs; k++) {
      int32_t t = model->ops[i].outputs[k];
      q->stats[t].tracked = model->tensors[t].dtype == KILN_F32;
    }
  kiln_interp_options io = {.n_threads = q->opt.n_threads, .observer = observe, .observer_ctx = q};
  if ((s = kiln_interp_create(model, &io, &q->interp, err)) != KILN_OK) {
    kiln_quantizer_free(q);
    return s;
  }
  *out = q;
  return KILN_OK;
}

/* Records the graph inputs, invokes (the observer records the rest) and
 * checks every tracked tensor is still healthy. */
static kiln_status run_sample(kiln_quantizer *q, kiln_error *err) {
  const kiln_model *m = q->model;
  for (int32_t i = 0; i < m->n_inputs; i++) {
    kiln_tensor_view v = kiln_interp_input(q->interp, i);
    kiln_status s = kiln_stats_add(&q->stats[m->inputs[i]], v.data, (int64_t)(v.bytes / sizeof(float)), err);
    if (s != KILN_OK) return s;
  }
  kiln_status s = kiln_interp_invoke(q->interp, err);
  if (s != KILN_OK) return s;
  if (q->observe_nomem)
    return kiln_fail(err, KILN_ERR_NOMEM, "out of memory for calibration histograms");
  for (int32_t i = 0; i < m->n_ops; i++)
    for (int32_t k = 0; k < m->ops[i].n_outputs; k++) {
      int32_t t = m->ops[i].outputs[k];
      if (m->tensors[t].dtype == KILN_F32 && !q->stats[t].tracked)
        return kiln_fail(err, KILN_ERR_FORMAT,
                         "op %d (%s) produced a non-finite value in '%s' during calibration", (int)i,
                         op_label(&m->ops[i]), m->tensors[t].name);
    }
  q->samples++;
  return KILN_OK;
}

kiln_status kiln_quantizer_add_image(kiln_quantizer *q, const kiln_image *img, kiln_error *err) {
  kiln_status s = kiln_vision_set_input(q->interp, 0, img, q->opt.has_norm ? &q->opt.norm : NULL, err);
  if (s != KILN_OK) return s;
  return run_sample(q, err);
}

kiln_status kiln_quantizer_add_inputs(kiln_quantizer *q, const float *const *inputs,
                                      kiln_error *err) {
  for (int32_t i = 0; i < q->model->n_inputs; i++) {
    kiln_tensor_view v = kiln_interp_input(q->interp, i);
    memcpy(v.data, inputs[i], v.bytes);
  }
  return run_sample(q, err);
}

int32_t kiln_quantizer_samples(const kiln_quantizer *q) { return q->samples; }

int32_t kiln_quantizer_tensor_info(const kiln_quantizer *q, const kiln_quant_tensor_info **out) {
  *out = q->info;
  return q->n_info;
}

int32_t kiln_quantizer_float_ops(const kiln_quantizer *q, const char *const **out) {
  *out = (const char *const *)q->float_reasons;
  return q->n_float_reasons;
}

void kiln_quantizer_free(kiln_quantizer *q) {
  if (!q) return;
  kiln_interp_free(q->interp);
  if (q->stats)
    for (int32_t i = 0; i < q->model->n_tensors; i++) kiln_free(q->stats[i].hist);
  kiln_free(q->stats);
  for (int32_t i = 0; i < q->n_float_reasons; i++) kiln_free(q->float_reasons[i]);
  kiln_free(q->float_reasons);
  kiln_free(q->float_op);
  kiln_free(q->info);
  kiln_free(q);
}
