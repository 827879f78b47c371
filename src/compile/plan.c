/*
 * Parameters, caching and the performance estimate (docs/compiler.md).
 *
 * An op's parameters are the constant tensors it is the first op to use
 * (weights, biases, shapes), so every constant of the model belongs to
 * exactly one op or to none ("unused"): ops' bytes + unused == the model's
 * constant bytes.
 *
 * Caching, like the Edge TPU compiler: the mapped ops' parameters go to
 * on-chip memory in execution order, a layer whole or not at all; the first
 * layer that does not fit ends caching, and it and every later layer are
 * streamed over the host link on every inference. Co-compiled models fill
 * one budget in command-line order. On a CPU target (no on-chip memory)
 * every parameter is resident in host memory.
 *
 * Per op on the device: max(MACs / MAC rate, on-chip bytes / read rate) +
 * streamed bytes / link rate + per-op overhead. Ops on the CPU use the host
 * target's rates. Plus the activations crossing the link (the device's
 * inputs and outputs) and the per-inference overhead.
 */
#include <string.h>

#include "compile/compile_int.h"

static int64_t dim(const kiln_tensor *t, int32_t d) {
  return t && d >= 0 && d < t->rank ? t->shape[d] : 1;
}

static const kiln_tensor *in_at(const kiln_model *m, const kiln_op *op, int32_t i) {
  return i < op->n_inputs && op->inputs[i] >= 0 ? &m->tensors[op->inputs[i]] : NULL;
}

/* Multiply-accumulates of conv-like ops; elements touched for the rest. */
static int64_t op_macs(const kiln_model *m, const kiln_op *op) {
  const kiln_tensor *out = op->n_outputs > 0 ? &m->tensors[op->outputs[0]] : NULL;
  const int64_t out_elems = out ? kiln_tensor_elements(out) : 0;
  const kiln_tensor *w = in_at(m, op, 1);
  switch (op->code) {
    case KILN_OP_CONV_2D:
      if (w && w->rank == 4) return out_elems * dim(w, 1) * dim(w, 2) * dim(w, 3);
      break;
    case KILN_OP_DEPTHWISE_CONV_2D:
      if (w && w->rank == 4) return out_elems * dim(w, 1) * dim(w, 2);
      break;
    case KILN_OP_FULLY_CONNECTED:
      if (w && w->rank >= 1) return out_elems * dim(w, w->rank - 1);
      break;
    case KILN_OP_TRANSPOSE_CONV: {
      const kiln_tensor *x = in_at(m, op, 2);
      if (w && w->rank == 4 && x) return kiln_tensor_elements(x) * dim(w, 0) * dim(w, 1) * dim(w, 2);
      break;
    }
    case KILN_OP_AVERAGE_POOL_2D:
    case KILN_OP_MAX_POOL_2D:
      return out_elems * (op->options.filter_w > 0 ? op->options.filter_w : 1) *
             (op->options.filter_h > 0 ? op->options.filter_h : 1);
    default:
      break;
  }
  int64_t ins = 0, outs = 0;
  for (int32_t i = 0; i < op->n_inputs; i++) {
    const kiln_tensor *x = in_at(m, op, i);
    if (x && !x->data) ins += kiln_tensor_elements(x);
  }
  for (int32_t i = 0; i < op->n_outputs; i++) outs += kiln_tensor_elements(&m->tensors[op->outputs[i]]);
  return ins > outs ? ins : outs;
}

void compile_count_params(kiln_compiled_model *cm) {
  const kiln_model *m = cm->model;
  int64_t params = 0;
  kiln_model_param_stats(m, &params, &cm->param_bytes);
  /* A tensor belongs to its first user: mark claimed ones by walking ops in
   * order and checking earlier ops' inputs (models are small enough). */
  int64_t claimed = 0;
  for (int32_t i = 0; i < m->n_ops; i++) {
    const kiln_op *op = &m->ops[i];
    cm->ops[i].param_bytes = 0;
    cm->ops[i].macs = op_macs(m, op);
    for (int32_t k = 0; k < op->n_inputs; k++) {
      int32_t x = op->inputs[k];
      if (x < 0 || !m->tensors[x].data) continue;
      bool seen = false;
      for (int32_t j = 0; j < i && !seen; j++)
        for (int32_t q = 0; q < m->ops[j].n_inputs && !seen; q++) seen = m->ops[j].inputs[q] == x;
      for (int32_t q = 0; q < k && !seen; q++) seen = op->inputs[q] == x;
      if (seen) continue;
      cm->ops[i].param_bytes += (int64_t)m->tensors[x].data_bytes;
    }
    claimed += cm->ops[i].param_bytes;
  }
  cm->unused_param_bytes = cm->param_bytes - claimed;
}

int64_t compile_cache(const kiln_target *t, kiln_compiled_model *models, int32_t n, bool shared) {
  int64_t used = 0, remaining = t->param_memory_bytes;
  bool open = true;
  for (int32_t mi = 0; mi < n; mi++) {
    kiln_compiled_model *cm = &models[mi];
    if (!shared) {
      remaining = t->param_memory_bytes;
      open = true;
    }
    cm->on_chip_bytes = cm->off_chip_bytes = cm->device_param_bytes = cm->cpu_param_bytes = 0;
    for (int32_t i = 0; i < cm->n_ops; i++) {
      kiln_compiled_op *op = &cm->ops[i];
      op->on_chip_bytes = op->off_chip_bytes = 0;
      if (!op->on_device) {
        cm->cpu_param_bytes += op->param_bytes;
        continue;
      }
      cm->device_param_bytes += op->param_bytes;
      if (t->param_memory_bytes < 0 || (open && op->param_bytes <= remaining)) {
        op->on_chip_bytes = op->param_bytes;
        if (t->param_memory_bytes >= 0) remaining -= op->param_bytes;
      } else {
        open = false;
        op->off_chip_bytes = op->param_bytes;
      }
      cm->on_chip_bytes += op->on_chip_bytes;
      cm->off_chip_bytes += op->off_chip_bytes;
    }
    used += cm->on_chip_bytes;
  }
  return used;
}

static bool is_float_op(const kiln_model *m, const kiln_op *op) {
  return op->n_outputs > 0 && m->tensors[op->outputs[0]].dtype == KILN_F32;
}

static double max2(double a, double b) { return a > b ? a : b; }

void compile_estimate(const kiln_target *t, kiln_compiled_model *cm) {
  const kiln_model *m = cm->model;
  const kiln_target *host = t->host ? t->host : t;
  cm->device_seconds = cm->cpu_seconds = 0;
  for (int32_t i = 0; i < cm->n_ops; i++) {
    kiln_compiled_op *op = &cm->ops[i];
    const bool fl = is_float_op(m, &m->ops[i]);
    if (op->on_device) {
      double compute = (double)op->macs / (fl ? t->float_macs_per_s : t->macs_per_s);
      double read = (double)op->on_chip_bytes / t->param_read_bytes_per_s;
      double stream = t->link_bytes_per_s > 0 ? (double)op->off_chip_bytes / t->link_bytes_per_s : 0;
      op->seconds = max2(compute, read) + stream + t->op_overhead_s;
      cm->device_seconds += op->seconds;
    } else {
      double compute = (double)op->macs / (fl ? host->float_macs_per_s : host->macs_per_s);
      double read = (double)op->param_bytes / host->param_read_bytes_per_s;
      op->seconds = max2(compute, read) + host->op_overhead_s;
      cm->cpu_seconds += op->seconds;
    }
  }
  /* Activations crossing the link: device inputs from the host (graph
   * inputs or CPU ops) and device outputs the host needs, once each. */
  cm->link_in_bytes = cm->link_out_bytes = 0;
  if (t->link_bytes_per_s > 0) {
    for (int32_t x = 0; x < m->n_tensors; x++) {
      const kiln_tensor *tt = &m->tensors[x];
      if (tt->data) continue;
      int32_t producer = -1;
      bool dev_reads = false, host_reads = false;
      for (int32_t i = 0; i < m->n_ops; i++) {
        const kiln_op *op = &m->ops[i];
        for (int32_t k = 0; k < op->n_outputs; k++)
          if (op->outputs[k] == x) producer = i;
        for (int32_t k = 0; k < op->n_inputs; k++)
          if (op->inputs[k] == x) *(cm->ops[i].on_device ? &dev_reads : &host_reads) = true;
      }
      for (int32_t k = 0; k < m->n_outputs; k++) host_reads |= m->outputs[k] == x;
      const bool dev_writes = producer >= 0 && cm->ops[producer].on_device;
      if (dev_reads && !dev_writes) cm->link_in_bytes += (int64_t)kiln_tensor_bytes(tt);
      if (dev_writes && host_reads) cm->link_out_bytes += (int64_t)kiln_tensor_bytes(tt);
    }
  }
  cm->transfer_seconds =
      t->link_bytes_per_s > 0 ? (double)(cm->link_in_bytes + cm->link_out_bytes) / t->link_bytes_per_s : 0;
  cm->overhead_seconds = cm->device_ops > 0 || t->is_cpu ? t->inference_overhead_s : 0;
  cm->latency_seconds = cm->device_seconds + cm->cpu_seconds + cm->transfer_seconds + cm->overhead_seconds;
}
