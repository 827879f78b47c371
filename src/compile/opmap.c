/*
 * Op mapping: for each op, in execution order, whether the target runs it
 * and, when not, the Edge TPU compiler's status string and a reason naming
 * the tensor or limit. Checks, in this order: the target's op table, tensor
 * dtypes, static shapes, rank (only the innermost dims may be > 1), the op's
 * limits; then, for single-subgraph targets, whether an input comes from an
 * op on the CPU (the device would need a second subgraph). The QUANTIZE of
 * a float graph input is the input edge: it runs on the CPU and does not
 * stop the device (docs/compiler.md).
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "compile/compile_int.h"

typedef struct why {
  char msg[400];
} why;

static const char *fail(why *w, const char *status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static const char *fail(why *w, const char *status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(w->msg, sizeof w->msg, fmt, ap);
  va_end(ap);
  return status;
}

static const kiln_tensor *tensor_at(const kiln_model *m, const kiln_op *op, int32_t i, bool output) {
  int32_t n = output ? op->n_outputs : op->n_inputs;
  if (i < 0 || i >= n) return NULL;
  int32_t idx = output ? op->outputs[i] : op->inputs[i];
  return idx >= 0 ? &m->tensors[idx] : NULL;
}

static void shape_str(const kiln_tensor *t, char *buf, size_t cap) {
  size_t n = (size_t)snprintf(buf, cap, "[");
  for (int32_t d = 0; d < t->rank && n < cap; d++)
    n += (size_t)snprintf(buf + n, cap - n, "%s%d", d ? "," : "", (int)t->shape[d]);
  if (n < cap) snprintf(buf + n, cap - n, "]");
}

static bool const_int(const kiln_tensor *t, int64_t i, int64_t *v) {
  if (!t->data || i < 0 || i >= kiln_tensor_elements(t)) return false;
  if (t->dtype == KILN_I32) *v = ((const int32_t *)t->data)[i];
  else if (t->dtype == KILN_I64) *v = ((const int64_t *)t->data)[i];
  else return false;
  return true;
}

static void dtype_list(uint32_t mask, char *buf, size_t cap) {
  static const kiln_dtype all[] = {KILN_I8, KILN_U8, KILN_I16, KILN_I32, KILN_F32, KILN_F16, KILN_I64, KILN_BOOL};
  size_t n = 0;
  buf[0] = '\0';
  for (size_t i = 0; i < sizeof all / sizeof all[0] && n < cap; i++)
    if (mask & (1u << all[i])) n += (size_t)snprintf(buf + n, cap - n, "%s%s", n ? "/" : "", kiln_dtype_name(all[i]));
}

/* Dtype, static shape and rank of every tensor the op touches. */
static const char *check_tensors(const kiln_target *t, const kiln_model *m, const kiln_op *op, why *w) {
  for (int pass = 0; pass < 2; pass++) {
    int32_t n = pass ? op->n_outputs : op->n_inputs;
    for (int32_t i = 0; i < n; i++) {
      const kiln_tensor *x = tensor_at(m, op, i, pass == 1);
      if (!x) continue;
      bool constant = x->data != NULL;
      uint32_t allowed = t->dtype_mask | (constant ? 1u << KILN_I32 : 0u);
      if (!(allowed & (1u << x->dtype))) {
        char list[80];
        dtype_list(t->dtype_mask, list, sizeof list);
        return fail(w, STATUS_DTYPE, "%s %d '%s' is %s (%s takes %s)", pass ? "output" : "input", (int)i,
                    x->name, kiln_dtype_name(x->dtype), t->device_name, list);
      }
      if (constant) continue;
      char shape[96];
      shape_str(x, shape, sizeof shape);
      for (int32_t d = 0; d < x->rank; d++)
        if (x->shape[d] <= 0)
          return fail(w, STATUS_UNSPECIFIED, "tensor '%s' %s has a dynamic or empty dimension (shapes must be static)",
                      x->name, shape);
      if (t->max_innermost_dims > 0)
        for (int32_t d = 0; d < x->rank - t->max_innermost_dims; d++)
          if (x->shape[d] > 1)
            return fail(w, STATUS_RANK, "tensor '%s' %s: dimension %d is %d, outside the %d innermost",
                        x->name, shape, (int)d, (int)x->shape[d], (int)t->max_innermost_dims);
    }
  }
  return NULL;
}

/* Only the innermost dimension of x may be > 1 (from dimension `from`). */
static bool only_last(const kiln_tensor *x, int32_t keep) {
  for (int32_t d = 0; d < x->rank - keep; d++)
    if (x->shape[d] > 1) return false;
  return true;
}

/* MEAN/SUM axes or PAD paddings: only x and y, the two dims before the
 * innermost (height and width of NHWC / HWC). */
static bool xy_only(const kiln_model *m, const kiln_op *op, char *detail, size_t cap) {
  const kiln_tensor *in = tensor_at(m, op, 0, false), *arg = tensor_at(m, op, 1, false);
  if (!in || !arg || !arg->data) {
    snprintf(detail, cap, "the %s are not constant", op->code == KILN_OP_PAD || op->code == KILN_OP_PADV2 ? "paddings" : "axes");
    return false;
  }
  const int32_t r = in->rank;
  const bool pad = op->code == KILN_OP_PAD || op->code == KILN_OP_PADV2 || op->code == 100 /* MIRROR_PAD */;
  if (pad) {
    for (int32_t d = 0; d < r; d++) {
      int64_t before = 0, after = 0;
      if (!const_int(arg, 2 * d, &before) || !const_int(arg, 2 * d + 1, &after)) {
        snprintf(detail, cap, "paddings are not an int32 [%d,2] constant", (int)r);
        return false;
      }
      if ((before || after) && d != r - 3 && d != r - 2) {
        snprintf(detail, cap, "pads dimension %d", (int)d);
        return false;
      }
    }
    return true;
  }
  for (int64_t i = 0; i < kiln_tensor_elements(arg); i++) {
    int64_t a = 0;
    if (!const_int(arg, i, &a)) {
      snprintf(detail, cap, "axes are not int32");
      return false;
    }
    if (a < 0) a += r;
    if (a != r - 3 && a != r - 2) {
      snprintf(detail, cap, "reduces dimension %d", (int)a);
      return false;
    }
  }
  return true;
}

static bool leading_ones_only(const kiln_model *m, const kiln_op *op) {
  const kiln_tensor *in = tensor_at(m, op, 0, false);
  if (!in) return false;
  int32_t first_big = in->rank;
  for (int32_t d = 0; d < in->rank; d++)
    if (in->shape[d] > 1) {
      first_big = d;
      break;
    }
  if (op->options.squeeze_dims_count == 0) {
    for (int32_t d = first_big; d < in->rank; d++)
      if (in->shape[d] == 1) return false;
    return true;
  }
  for (int32_t i = 0; i < op->options.squeeze_dims_count; i++) {
    int32_t d = op->options.squeeze_dims[i] < 0 ? op->options.squeeze_dims[i] + in->rank : op->options.squeeze_dims[i];
    if (d >= first_big) return false;
  }
  return true;
}

/* A constant input only as one of two inputs, all zeros (the zero point). */
static bool zero_pad_only(const kiln_model *m, const kiln_op *op) {
  for (int32_t i = 0; i < op->n_inputs; i++) {
    const kiln_tensor *x = tensor_at(m, op, i, false);
    if (!x || !x->data) continue;
    if (op->n_inputs != 2) return false;
    int32_t zp = x->quant.count > 0 ? x->quant.zero_point[0] : 0;
    int64_t n = kiln_tensor_elements(x);
    for (int64_t k = 0; k < n; k++) {
      int32_t v;
      if (x->dtype == KILN_I8) v = ((const int8_t *)x->data)[k];
      else if (x->dtype == KILN_U8) v = ((const uint8_t *)x->data)[k];
      else return false;
      if (v != zp) return false;
    }
  }
  return true;
}

static bool check_limit(const kiln_model *m, const kiln_op *op, const target_limit *l, char *detail, size_t cap) {
  const kiln_tensor *in = tensor_at(m, op, 0, false), *out = tensor_at(m, op, 0, true);
  char shape[96] = "";
  detail[0] = '\0';
  switch (l->kind) {
    case LIMIT_NO_FUSED_ACTIVATION:
      if (op->options.activation == KILN_ACT_NONE) return true;
      snprintf(detail, cap, "fused activation %d", (int)op->options.activation);
      return false;
    case LIMIT_XY_ONLY: return xy_only(m, op, detail, cap);
    case LIMIT_INPUT_1D:
    case LIMIT_OUTPUT_1D: {
      const kiln_tensor *x = l->kind == LIMIT_INPUT_1D ? in : out;
      if (x && only_last(x, 1)) return true;
      if (x) shape_str(x, shape, sizeof shape);
      snprintf(detail, cap, "%s %s", l->kind == LIMIT_INPUT_1D ? "input" : "output", shape);
      return false;
    }
    case LIMIT_MAX_INPUT_ELEMENTS:
      if (in && kiln_tensor_elements(in) <= l->value) return true;
      snprintf(detail, cap, "%lld elements", in ? (long long)kiln_tensor_elements(in) : 0LL);
      return false;
    case LIMIT_CONSTANT_INPUT: {
      const kiln_tensor *x = tensor_at(m, op, (int32_t)l->value, false);
      if (x && x->data) return true;
      snprintf(detail, cap, "input %d is %s", (int)l->value, x ? "computed" : "absent");
      return false;
    }
    case LIMIT_STRIDES_ONE: {
      const kiln_tensor *s = tensor_at(m, op, 3, false);
      if (!s || !s->data) {
        snprintf(detail, cap, "strides are not constant");
        return false;
      }
      for (int64_t i = 0; i < kiln_tensor_elements(s); i++) {
        int64_t v = 0;
        if (!const_int(s, i, &v) || v != 1) {
          snprintf(detail, cap, "stride %lld of dimension %lld", (long long)v, (long long)i);
          return false;
        }
      }
      return true;
    }
    case LIMIT_LEADING_ONES_ONLY: return leading_ones_only(m, op);
    case LIMIT_DEFAULT_WEIGHTS_FORMAT:
      if (op->options.weights_format == 0) return true;
      snprintf(detail, cap, "weights format %d", (int)op->options.weights_format);
      return false;
    case LIMIT_CONSTANT_ZERO_PAD_ONLY: return zero_pad_only(m, op);
    case LIMIT_BATCH_ONE:
      if ((!in || only_last(in, 3)) && (!out || only_last(out, 3))) return true;
      if (in) shape_str(in, shape, sizeof shape);
      snprintf(detail, cap, "input %s", shape);
      return false;
    case LIMIT_COUNT: break;
  }
  return false;
}

/* Everything about the op itself (not where its inputs come from). */
static const char *check_op(const kiln_target *t, const kiln_model *m, const kiln_op *op, why *w) {
  const target_rule *rule = target_rule_for(t, op);
  if (!rule) return fail(w, STATUS_NOT_SUPPORTED, "%s is not in %s's op table", compile_op_type(op), t->name);
  if (!rule->supported) return fail(w, rule->status, "%s", rule->reason);
  const char *status = check_tensors(t, m, op, w);
  if (status) return status;
  for (int32_t i = 0; i < rule->n_limits; i++) {
    char detail[160];
    if (!check_limit(m, op, &rule->limits[i], detail, sizeof detail))
      return fail(w, STATUS_UNSPECIFIED, "%s%s%s%s", rule->limits[i].reason, detail[0] ? " (" : "", detail,
                  detail[0] ? ")" : "");
  }
  return NULL;
}

/* The QUANTIZE of a float graph input to int8/uint8. */
static bool is_input_edge(const kiln_model *m, const kiln_op *op, const int32_t *producer) {
  if (op->code != KILN_OP_QUANTIZE || op->n_inputs < 1 || op->n_outputs < 1 || op->inputs[0] < 0) return false;
  const kiln_tensor *in = &m->tensors[op->inputs[0]], *out = &m->tensors[op->outputs[0]];
  return in->dtype == KILN_F32 && !in->data && producer[op->inputs[0]] < 0 &&
         (out->dtype == KILN_I8 || out->dtype == KILN_U8);
}

static char *keep(kiln_model *m, const char *s) {
  size_t n = strlen(s) + 1;
  char *p = kiln_model_alloc(m, n);
  if (p) memcpy(p, s, n);
  return p;
}

kiln_status compile_map_ops(const kiln_target *t, kiln_compiled_model *cm, kiln_error *err) {
  kiln_model *m = cm->model;
  int32_t *producer = kiln_malloc((size_t)(m->n_tensors ? m->n_tensors : 1) * sizeof *producer);
  bool *edge = kiln_calloc((size_t)(m->n_ops ? m->n_ops : 1), sizeof *edge);
  if (!producer || !edge) {
    kiln_free(producer);
    kiln_free(edge);
    return kiln_fail(err, KILN_ERR_NOMEM, "%s: out of memory", cm->source_path);
  }
  for (int32_t i = 0; i < m->n_tensors; i++) producer[i] = -1;
  for (int32_t i = 0; i < m->n_ops; i++)
    for (int32_t k = 0; k < m->ops[i].n_outputs; k++) producer[m->ops[i].outputs[k]] = i;
  cm->first_cpu_op = -1;
  cm->device_ops = cm->cpu_ops = 0;
  for (int32_t i = 0; i < m->n_ops; i++) {
    const kiln_op *op = &m->ops[i];
    kiln_compiled_op *co = &cm->ops[i];
    why w = {""};
    const char *status = NULL;
    if (!t->is_cpu && is_input_edge(m, op, producer)) {
      edge[i] = true;
      status = fail(&w, STATUS_UNSPECIFIED, "QUANTIZE of the float input '%s' runs on the CPU (input edge: the %s takes %s)",
                    m->tensors[op->inputs[0]].name, t->device_name, "int8/uint8");
    } else {
      status = check_op(t, m, op, &w);
    }
    for (int32_t k = 0; !status && t->single_subgraph && k < op->n_inputs; k++) {
      int32_t x = op->inputs[k];
      if (x < 0 || m->tensors[x].data || producer[x] < 0) continue;
      int32_t p = producer[x];
      if (!cm->ops[p].on_device && !edge[p])
        status = fail(&w, STATUS_SUBGRAPH, "input '%s' comes from op %d (%s), which runs on the CPU: the %s runs one subgraph",
                      m->tensors[x].name, (int)p, compile_op_type(&m->ops[p]), t->device_name);
    }
    co->on_device = status == NULL;
    co->status = status ? status : t->mapped_status;
    co->reason = NULL;
    if (status && !(co->reason = keep(m, w.msg))) {
      kiln_free(producer);
      kiln_free(edge);
      return kiln_fail(err, KILN_ERR_NOMEM, "%s: out of memory", cm->source_path);
    }
    if (co->on_device) cm->device_ops++;
    else cm->cpu_ops++;
    if (!co->on_device && !edge[i] && cm->first_cpu_op < 0) cm->first_cpu_op = i;
  }
  cm->subgraphs = cm->device_ops > 0 ? 1 : 0;
  cm->quantized = false;
  for (int32_t i = 0; i < m->n_tensors; i++)
    if (!m->tensors[i].data && (m->tensors[i].dtype == KILN_I8 || m->tensors[i].dtype == KILN_U8)) cm->quantized = true;
  kiln_free(producer);
  kiln_free(edge);
  return KILN_OK;
}
