/*
 * Model surgery for the training pipeline (kiln/trainer.h): metadata
 * entries (labels, input normalization), sub-models cut at a tensor, tensor
 * lookup by a part of a fused name, and dequantizing an int8 backbone.
 *
 * Everything here builds new models with the kiln_model builder; the source
 * model is never modified, except by kiln_trainer_set_metadata, whose new
 * entries live in the model's own pool (kiln_model_alloc), so they are
 * freed with it and written by kiln_model_save.
 */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "kiln/trainer.h"
#include "kiln/vision.h"

#define LABELS_ENTRY "kiln_labels"
#define NORM_ENTRY "kiln_input_norm"

kiln_status kiln_trainer_set_metadata(kiln_model *model, const char *name, const void *bytes,
                                      size_t n, kiln_error *err) {
  int32_t keep = 0;
  for (int32_t i = 0; i < model->n_metadata; i++)
    if (strcmp(model->metadata[i].name, name) != 0) keep++;
  kiln_metadata *list = kiln_model_alloc(model, (size_t)(keep + 1) * sizeof *list);
  char *name_copy = kiln_model_alloc(model, strlen(name) + 1);
  uint8_t *data = kiln_model_alloc(model, n ? n : 1);
  if (!list || !name_copy || !data)
    return kiln_fail(err, KILN_ERR_NOMEM, "metadata '%s': %zu bytes", name, n);
  int32_t k = 0;
  for (int32_t i = 0; i < model->n_metadata; i++)
    if (strcmp(model->metadata[i].name, name) != 0) list[k++] = model->metadata[i];
  memcpy(name_copy, name, strlen(name) + 1);
  if (n) memcpy(data, bytes, n);
  list[k].name = name_copy;
  list[k].data = data;
  list[k].bytes = n;
  model->metadata = list;
  model->n_metadata = keep + 1;
  return KILN_OK;
}

const kiln_metadata *kiln_trainer_get_metadata(const kiln_model *model, const char *name) {
  for (int32_t i = 0; i < model->n_metadata; i++)
    if (strcmp(model->metadata[i].name, name) == 0) return &model->metadata[i];
  return NULL;
}

kiln_status kiln_trainer_set_labels(kiln_model *model, const char *const *labels, int32_t n,
                                    kiln_error *err) {
  size_t bytes = 0;
  for (int32_t i = 0; i < n; i++) {
    if (!labels[i][0] || strchr(labels[i], '\n'))
      return kiln_fail(err, KILN_ERR_INVALID_ARG, "label %d '%s': empty or with a line break",
                       (int)i, labels[i]);
    bytes += strlen(labels[i]) + 1;
  }
  char *text = kiln_malloc(bytes ? bytes : 1);
  if (!text) return kiln_fail(err, KILN_ERR_NOMEM, "labels: %zu bytes", bytes);
  size_t at = 0;
  for (int32_t i = 0; i < n; i++) {
    const size_t len = strlen(labels[i]);
    memcpy(text + at, labels[i], len);
    text[at + len] = '\n';
    at += len + 1;
  }
  kiln_status s = kiln_trainer_set_metadata(model, LABELS_ENTRY, text, bytes, err);
  kiln_free(text);
  return s;
}

void kiln_trainer_labels_free(char **labels, int32_t n) {
  for (int32_t i = 0; labels && i < n; i++) kiln_free(labels[i]);
  kiln_free(labels);
}

kiln_status kiln_trainer_get_labels(const kiln_model *model, char ***labels, int32_t *n,
                                    kiln_error *err) {
  *labels = NULL;
  *n = 0;
  const kiln_metadata *md = kiln_trainer_get_metadata(model, LABELS_ENTRY);
  if (!md) return KILN_OK;
  const char *text = (const char *)md->data;
  size_t len = md->bytes;
  if (len && text[len - 1] == '\n') len--;
  if (len == 0) return kiln_fail(err, KILN_ERR_FORMAT, "metadata '%s' is empty", LABELS_ENTRY);
  if (memchr(text, '\0', len))
    return kiln_fail(err, KILN_ERR_FORMAT, "metadata '%s' holds a NUL byte", LABELS_ENTRY);
  int32_t lines = 1;
  for (size_t i = 0; i < len; i++) lines += text[i] == '\n';
  char **list = kiln_calloc((size_t)lines, sizeof *list);
  if (!list) return kiln_fail(err, KILN_ERR_NOMEM, "labels: %d lines", (int)lines);
  size_t start = 0;
  for (int32_t i = 0; i < lines; i++) {
    size_t end = start;
    while (end < len && text[end] != '\n') end++;
    size_t l = end - start;
    if (l && text[end - 1] == '\r') l--;
    if (l == 0) {
      kiln_trainer_labels_free(list, lines);
      return kiln_fail(err, KILN_ERR_FORMAT, "metadata '%s': line %d is empty", LABELS_ENTRY,
                       (int)i + 1);
    }
    list[i] = kiln_malloc(l + 1);
    if (!list[i]) {
      kiln_trainer_labels_free(list, lines);
      return kiln_fail(err, KILN_ERR_NOMEM, "labels: line %d", (int)i + 1);
    }
    memcpy(list[i], text + start, l);
    list[i][l] = '\0';
    start = end + 1;
  }
  *labels = list;
  *n = lines;
  return KILN_OK;
}

kiln_status kiln_trainer_set_norm(kiln_model *model, const kiln_image_norm *norm,
                                  kiln_error *err) {
  char text[256];
  snprintf(text, sizeof text, "{\"mean\": [%.9g, %.9g, %.9g], \"std\": [%.9g, %.9g, %.9g]}",
           (double)norm->mean[0], (double)norm->mean[1], (double)norm->mean[2],
           (double)norm->std[0], (double)norm->std[1], (double)norm->std[2]);
  return kiln_trainer_set_metadata(model, NORM_ENTRY, text, strlen(text), err);
}

bool kiln_trainer_get_norm(const kiln_model *model, kiln_image_norm *norm) {
  return kiln_model_input_norm(model, norm);
}

int32_t kiln_trainer_find_tensor(const kiln_model *model, const char *name) {
  int32_t exact = kiln_model_find_tensor(model, name);
  if (exact >= 0) return exact;
  const size_t n = strlen(name);
  int32_t found = -1;
  for (int32_t t = 0; t < model->n_tensors; t++) {
    const char *p = model->tensors[t].name;
    while (p) {
      const char *semi = strchr(p, ';');
      const size_t len = semi ? (size_t)(semi - p) : strlen(p);
      if (len == n && memcmp(p, name, n) == 0) {
        if (found >= 0 && found != t) return -1;
        found = t;
      }
      p = semi ? semi + 1 : NULL;
    }
  }
  return found;
}

/* Copies tensor t of src into dst with data (replaced by `data` when
 * non-NULL, with dtype `dtype`) and no quantization when drop_quant. */
static int32_t copy_tensor(kiln_model *dst, const kiln_tensor *t, kiln_dtype dtype,
                           const void *data, bool drop_quant, kiln_error *err) {
  const int32_t i = kiln_model_add_tensor(dst, t->name, dtype, t->rank, t->shape,
                                          drop_quant ? NULL : &t->quant,
                                          data ? data : t->data, err);
  if (i >= 0) dst->tensors[i].flags = t->flags;
  return i;
}

static int32_t copy_op(kiln_model *dst, const kiln_op *op, const int32_t *map, kiln_error *err) {
  int32_t in[16], out[16];
  if (op->n_inputs > 16 || op->n_outputs > 16) {
    kiln_fail(err, KILN_ERR_UNSUPPORTED, "op %s with %d inputs and %d outputs",
              kiln_opcode_name(op->code), (int)op->n_inputs, (int)op->n_outputs);
    return -1;
  }
  for (int32_t k = 0; k < op->n_inputs; k++) in[k] = op->inputs[k] < 0 ? -1 : map[op->inputs[k]];
  for (int32_t k = 0; k < op->n_outputs; k++) out[k] = map[op->outputs[k]];
  const int32_t i = kiln_model_add_op(dst, op->code, op->custom_code, in, op->n_inputs, out,
                                      op->n_outputs, &op->options, op->custom_options,
                                      op->custom_options_bytes, err);
  if (i >= 0) dst->ops[i].version = op->version;
  return i;
}

kiln_status kiln_trainer_submodel(const kiln_model *model, int32_t tensor, kiln_model **out,
                                  kiln_error *err) {
  *out = NULL;
  if (tensor < 0 || tensor >= model->n_tensors || model->tensors[tensor].data)
    return kiln_fail(err, KILN_ERR_INVALID_ARG, "submodel: tensor %d is not an activation",
                     (int)tensor);
  const int32_t nt = model->n_tensors;
  bool *need_t = kiln_calloc((size_t)nt, sizeof *need_t);
  bool *need_op = kiln_calloc((size_t)model->n_ops + 1, sizeof *need_op);
  int32_t *map = kiln_malloc((size_t)nt * sizeof *map);
  kiln_model *m = NULL;
  kiln_status s = KILN_OK;
  if (!need_t || !need_op || !map) {
    s = kiln_fail(err, KILN_ERR_NOMEM, "submodel: %d tensors", (int)nt);
    goto done;
  }
  need_t[tensor] = true;
  for (int32_t o = model->n_ops - 1; o >= 0; o--) {
    const kiln_op *op = &model->ops[o];
    for (int32_t k = 0; k < op->n_outputs && !need_op[o]; k++) need_op[o] = need_t[op->outputs[k]];
    if (!need_op[o]) continue;
    for (int32_t k = 0; k < op->n_inputs; k++)
      if (op->inputs[k] >= 0) need_t[op->inputs[k]] = true;
    for (int32_t k = 0; k < op->n_outputs; k++) need_t[op->outputs[k]] = true;
  }
  int32_t inputs[8], n_in = 0;
  for (int32_t i = 0; i < model->n_inputs; i++)
    if (need_t[model->inputs[i]] && n_in < 8) inputs[n_in++] = model->inputs[i];
  if (n_in == 0) {
    s = kiln_fail(err, KILN_ERR_INVALID_ARG, "submodel: tensor '%s' does not depend on an input",
                  model->tensors[tensor].name);
    goto done;
  }
  if ((s = kiln_model_new(&m, err)) != KILN_OK) goto done;
  m->description = model->description;
  for (int32_t t = 0; t < nt; t++) {
    map[t] = -1;
    if (!need_t[t]) continue;
    map[t] = copy_tensor(m, &model->tensors[t], model->tensors[t].dtype, NULL, false, err);
    if (map[t] < 0) {
      s = err ? err->status : KILN_ERR_INTERNAL;
      goto done;
    }
  }
  for (int32_t o = 0; o < model->n_ops; o++)
    if (need_op[o] && copy_op(m, &model->ops[o], map, err) < 0) {
      s = err ? err->status : KILN_ERR_INTERNAL;
      goto done;
    }
  for (int32_t i = 0; i < n_in; i++) inputs[i] = map[inputs[i]];
  s = kiln_model_set_io(m, inputs, n_in, &map[tensor], 1, err);
done:
  kiln_free(need_t);
  kiln_free(need_op);
  kiln_free(map);
  if (s != KILN_OK) {
    kiln_model_free(m);
    return s;
  }
  *out = m;
  return KILN_OK;
}

/* Dequantizes a constant tensor's values to floats ([elements]). */
static kiln_status dequantize_constant(const kiln_tensor *t, float *dst, kiln_error *err) {
  const int64_t n = kiln_tensor_elements(t);
  const kiln_quant *q = &t->quant;
  if (q->count > 1 && (q->axis < 0 || q->axis >= t->rank || t->shape[q->axis] != q->count))
    return kiln_fail(err, KILN_ERR_FORMAT, "tensor '%s': %d scales along axis %d", t->name,
                     (int)q->count, (int)q->axis);
  int64_t inner = 1;
  for (int32_t d = q->count > 1 ? q->axis + 1 : t->rank; d < t->rank; d++) inner *= t->shape[d];
  for (int64_t i = 0; i < n; i++) {
    const int32_t c = q->count > 1 ? (int32_t)((i / inner) % q->count) : 0;
    int64_t v;
    switch (t->dtype) {
    case KILN_I8: v = ((const int8_t *)t->data)[i]; break;
    case KILN_U8: v = ((const uint8_t *)t->data)[i]; break;
    case KILN_I32: v = ((const int32_t *)t->data)[i]; break;
    default:
      return kiln_fail(err, KILN_ERR_UNSUPPORTED, "tensor '%s': quantized %s constant", t->name,
                       kiln_dtype_name(t->dtype));
    }
    dst[i] = (float)((double)q->scale[c] * (double)(v - q->zero_point[c]));
  }
  return KILN_OK;
}

/* The tensor an op's output stands for after QUANTIZE/DEQUANTIZE are
 * removed: follows alias[] to its root. */
static int32_t root_of(const int32_t *alias, int32_t t) {
  while (alias[t] != t) t = alias[t];
  return t;
}

kiln_status kiln_trainer_dequantize(const kiln_model *model, kiln_model **out,
                                    kiln_image_norm *norm, kiln_error *err) {
  *out = NULL;
  const int32_t nt = model->n_tensors;
  int32_t *alias = kiln_malloc((size_t)nt * sizeof *alias);
  int32_t *map = kiln_malloc((size_t)nt * sizeof *map);
  kiln_model *m = NULL;
  float *values = NULL;
  kiln_status s = KILN_OK;
  if (!alias || !map) {
    s = kiln_fail(err, KILN_ERR_NOMEM, "dequantize: %d tensors", (int)nt);
    goto done;
  }
  for (int32_t t = 0; t < nt; t++) alias[t] = t;
  for (int32_t o = 0; o < model->n_ops; o++) {
    const kiln_op *op = &model->ops[o];
    if ((op->code == KILN_OP_QUANTIZE || op->code == KILN_OP_DEQUANTIZE) && op->n_inputs == 1 &&
        op->n_outputs == 1)
      alias[op->outputs[0]] = op->inputs[0];
  }
  *norm = kiln_image_norm_default();
  const kiln_tensor *in0 = &model->tensors[root_of(alias, model->inputs[0])];
  if ((in0->dtype == KILN_I8 || in0->dtype == KILN_U8) && in0->quant.count == 1 &&
      in0->quant.scale[0] > 0.0f)
    for (int c = 0; c < 3; c++) {
      norm->mean[c] = (float)in0->quant.zero_point[0] + (in0->dtype == KILN_I8 ? 128.0f : 0.0f);
      norm->std[c] = 1.0f / in0->quant.scale[0];
    }
  if ((s = kiln_model_new(&m, err)) != KILN_OK) goto done;
  m->description = model->description;
  for (int32_t t = 0; t < nt; t++) {
    map[t] = -1;
    if (alias[t] != t) continue;
    const kiln_tensor *x = &model->tensors[t];
    const bool quantized = x->quant.count > 0;
    if (x->data && quantized && x->dtype != KILN_F32) {
      values = kiln_malloc((size_t)kiln_tensor_elements(x) * sizeof(float) + 1);
      if (!values) {
        s = kiln_fail(err, KILN_ERR_NOMEM, "dequantize: tensor '%s'", x->name);
        goto done;
      }
      if ((s = dequantize_constant(x, values, err)) != KILN_OK) goto done;
      map[t] = copy_tensor(m, x, KILN_F32, values, true, err);
      kiln_free(values);
      values = NULL;
    } else if (!x->data && (x->dtype == KILN_I8 || x->dtype == KILN_U8)) {
      if (x->quant.count > 1) {
        s = kiln_fail(err, KILN_ERR_UNSUPPORTED, "dequantize: activation '%s' is quantized per axis",
                      x->name);
        goto done;
      }
      map[t] = copy_tensor(m, x, KILN_F32, NULL, true, err);
    } else if (!x->data && x->dtype != KILN_F32 && quantized) {
      s = kiln_fail(err, KILN_ERR_UNSUPPORTED, "dequantize: activation '%s' is %s",
                    x->name, kiln_dtype_name(x->dtype));
      goto done;
    } else {
      map[t] = copy_tensor(m, x, x->dtype, NULL, quantized && !x->data, err);
    }
    if (map[t] < 0) {
      s = err ? err->status : KILN_ERR_INTERNAL;
      goto done;
    }
  }
  for (int32_t t = 0; t < nt; t++)
    if (alias[t] != t) map[t] = map[root_of(alias, t)];
  for (int32_t o = 0; o < model->n_ops; o++) {
    const kiln_op *op = &model->ops[o];
    if (op->n_outputs == 1 && alias[op->outputs[0]] != op->outputs[0]) continue;
    if (copy_op(m, op, map, err) < 0) {
      s = err ? err->status : KILN_ERR_INTERNAL;
      goto done;
    }
  }
  int32_t ins[8], outs[8];
  if (model->n_inputs > 8 || model->n_outputs > 8) {
    s = kiln_fail(err, KILN_ERR_UNSUPPORTED, "dequantize: %d inputs, %d outputs",
                  (int)model->n_inputs, (int)model->n_outputs);
    goto done;
  }
  for (int32_t i = 0; i < model->n_inputs; i++) ins[i] = map[model->inputs[i]];
  for (int32_t i = 0; i < model->n_outputs; i++) outs[i] = map[model->outputs[i]];
  s = kiln_model_set_io(m, ins, model->n_inputs, outs, model->n_outputs, err);
done:
  kiln_free(values);
  kiln_free(alias);
  kiln_free(map);
  if (s != KILN_OK) {
    kiln_model_free(m);
    return s;
  }
  *out = m;
  return KILN_OK;
}
