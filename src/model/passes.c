/*
 * Load-time graph passes (kiln_model_simplify):
 *  - DEQUANTIZE of a constant (float16 weights, or int8/uint8/int16
 *    weight-only quantization) becomes a float32 constant;
 *  - RESHAPE and SQUEEZE of a constant become the constant with the new
 *    shape (the bytes are shared);
 *  - ops whose outputs nothing reads are dropped, then tensors nothing uses.
 * Graph inputs and outputs are never folded away.
 */
#include <string.h>

#include "base/half.h"
#include "model/model_int.h"

static bool is_graph_output(const kiln_model *m, int32_t t) {
  for (int32_t i = 0; i < m->n_outputs; i++)
    if (m->outputs[i] == t) return true;
  return false;
}

static bool is_graph_input(const kiln_model *m, int32_t t) {
  for (int32_t i = 0; i < m->n_inputs; i++)
    if (m->inputs[i] == t) return true;
  return false;
}

/* Float value of element i of a constant quantized or f16 tensor. */
static float dequant_element(const kiln_tensor *t, int64_t i, int32_t channel) {
  float scale = t->quant.count ? t->quant.scale[channel] : 1.0f;
  int32_t zp = t->quant.count ? t->quant.zero_point[channel] : 0;
  switch (t->dtype) {
    case KILN_F16: {
      uint16_t h;
      memcpy(&h, (const uint8_t *)t->data + 2 * i, 2);
      return kiln_half_to_float(h);
    }
    case KILN_I8: return scale * (float)(((const int8_t *)t->data)[i] - zp);
    case KILN_U8: return scale * (float)(((const uint8_t *)t->data)[i] - zp);
    case KILN_I16: {
      int16_t v;
      memcpy(&v, (const uint8_t *)t->data + 2 * i, 2);
      return scale * (float)(v - zp);
    }
    default: return 0.0f;
  }
}

static kiln_status fold_dequantize(kiln_model *m, kiln_op *op, kiln_error *err) {
  const kiln_tensor *in = &m->tensors[op->inputs[0]];
  kiln_tensor *out = &m->tensors[op->outputs[0]];
  int64_t n = kiln_tensor_elements(in);
  if (out->dtype != KILN_F32 || kiln_tensor_elements(out) != n) return KILN_OK; /* let prepare refuse */
  float *data = kiln_model_alloc(m, (size_t)n * sizeof(float));
  if (!data) return kiln_fail(err, KILN_ERR_NOMEM, "out of memory folding DEQUANTIZE");
  /* Per-axis channel of element i: (i / inner) % dim. */
  int64_t inner = 1, dim = 1;
  if (in->quant.count > 1) {
    for (int32_t d = in->quant.axis + 1; d < in->rank; d++) inner *= in->shape[d];
    dim = in->shape[in->quant.axis];
  }
  for (int64_t i = 0; i < n; i++)
    data[i] = dequant_element(in, i, in->quant.count > 1 ? (int32_t)((i / inner) % dim) : 0);
  out->data = data;
  out->data_bytes = (size_t)n * sizeof(float);
  return KILN_OK;
}

static bool foldable(const kiln_model *m, const kiln_op *op) {
  if (op->n_inputs < 1 || op->n_outputs != 1 || op->inputs[0] < 0) return false;
  const kiln_tensor *in = &m->tensors[op->inputs[0]];
  int32_t out = op->outputs[0];
  if (!in->data || m->tensors[out].data || is_graph_output(m, out) || is_graph_input(m, out))
    return false;
  switch (op->code) {
    case KILN_OP_DEQUANTIZE:
      return in->dtype == KILN_F16 || ((in->dtype == KILN_I8 || in->dtype == KILN_U8 ||
                                        in->dtype == KILN_I16) && in->quant.count > 0);
    case KILN_OP_RESHAPE:
    case KILN_OP_SQUEEZE:
      return m->tensors[out].dtype == in->dtype &&
             kiln_tensor_elements(&m->tensors[out]) == kiln_tensor_elements(in);
    default:
      return false;
  }
}

static kiln_status fold_constants(kiln_model *m, bool *removed, kiln_error *err) {
  for (int32_t i = 0; i < m->n_ops; i++) {
    kiln_op *op = &m->ops[i];
    if (!foldable(m, op)) continue;
    if (op->code == KILN_OP_DEQUANTIZE) {
      kiln_status s = fold_dequantize(m, op, err);
      if (s != KILN_OK) return s;
      if (!m->tensors[op->outputs[0]].data) continue;
    } else {
      kiln_tensor *out = &m->tensors[op->outputs[0]];
      const kiln_tensor *in = &m->tensors[op->inputs[0]];
      out->data = in->data;
      out->data_bytes = in->data_bytes;
    }
    removed[i] = true;
  }
  return KILN_OK;
}

/* Marks ops whose outputs are neither read nor graph outputs, repeatedly. */
static kiln_status drop_dead_ops(kiln_model *m, bool *removed, kiln_error *err) {
  int32_t *readers = kiln_calloc((size_t)m->n_tensors + 1, sizeof *readers);
  if (!readers) return kiln_fail(err, KILN_ERR_NOMEM, "out of memory");
  for (int32_t i = 0; i < m->n_ops; i++) {
    if (removed[i]) continue;
    for (int32_t k = 0; k < m->ops[i].n_inputs; k++)
      if (m->ops[i].inputs[k] >= 0) readers[m->ops[i].inputs[k]]++;
  }
  for (int32_t i = 0; i < m->n_outputs; i++) readers[m->outputs[i]]++;
  bool changed = true;
  while (changed) {
    changed = false;
    for (int32_t i = m->n_ops - 1; i >= 0; i--) {
      if (removed[i]) continue;
      const kiln_op *op = &m->ops[i];
      bool live = false;
      for (int32_t k = 0; k < op->n_outputs; k++)
        live |= readers[op->outputs[k]] > 0 || (m->tensors[op->outputs[k]].flags & KILN_TENSOR_VARIABLE);
      if (live) continue;
      removed[i] = true;
      changed = true;
      for (int32_t k = 0; k < op->n_inputs; k++)
        if (op->inputs[k] >= 0) readers[op->inputs[k]]--;
    }
  }
  kiln_free(readers);
  return KILN_OK;
}

static kiln_status compact(kiln_model *m, const bool *removed, kiln_error *err) {
  int32_t n_ops = 0;
  for (int32_t i = 0; i < m->n_ops; i++)
    if (!removed[i]) m->ops[n_ops++] = m->ops[i];
  m->n_ops = n_ops;

  int32_t *remap = kiln_calloc((size_t)m->n_tensors + 1, sizeof *remap);
  if (!remap) return kiln_fail(err, KILN_ERR_NOMEM, "out of memory");
  for (int32_t i = 0; i < m->n_ops; i++) {
    for (int32_t k = 0; k < m->ops[i].n_inputs; k++)
      if (m->ops[i].inputs[k] >= 0) remap[m->ops[i].inputs[k]] = 1;
    for (int32_t k = 0; k < m->ops[i].n_outputs; k++) remap[m->ops[i].outputs[k]] = 1;
  }
  for (int32_t i = 0; i < m->n_inputs; i++) remap[m->inputs[i]] = 1;
  for (int32_t i = 0; i < m->n_outputs; i++) remap[m->outputs[i]] = 1;
  int32_t n = 0;
  for (int32_t i = 0; i < m->n_tensors; i++) {
    if (!remap[i]) {
      remap[i] = -1;
      continue;
    }
    m->tensors[n] = m->tensors[i];
    remap[i] = n++;
  }
  m->n_tensors = n;
  for (int32_t i = 0; i < m->n_ops; i++) {
    for (int32_t k = 0; k < m->ops[i].n_inputs; k++)
      if (m->ops[i].inputs[k] >= 0) m->ops[i].inputs[k] = remap[m->ops[i].inputs[k]];
    for (int32_t k = 0; k < m->ops[i].n_outputs; k++)
      m->ops[i].outputs[k] = remap[m->ops[i].outputs[k]];
  }
  for (int32_t i = 0; i < m->n_inputs; i++) m->inputs[i] = remap[m->inputs[i]];
  for (int32_t i = 0; i < m->n_outputs; i++) m->outputs[i] = remap[m->outputs[i]];
  kiln_free(remap);
  return KILN_OK;
}

kiln_status kiln_model_simplify(kiln_model *m, kiln_error *err) {
  bool *removed = kiln_calloc((size_t)m->n_ops + 1, sizeof *removed);
  if (!removed) return kiln_fail(err, KILN_ERR_NOMEM, "out of memory");
  kiln_status s = fold_constants(m, removed, err);
  if (s == KILN_OK) s = drop_dead_ops(m, removed, err);
  if (s == KILN_OK) s = compact(m, removed, err);
  kiln_free(removed);
  return s;
}
