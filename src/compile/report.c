/*
 * Reports of a compilation. The text starts with the Edge TPU compiler's
 * own lines, word for word (docs/compiler.md lists them), so scripts
 * written for edgetpu_compiler's output read kiln's; kiln's extras follow:
 * why ops run on the CPU, the per-layer caching table, the estimate, and
 * the co-compilation or segment summary. The JSON report carries the same
 * figures for programs (the studio).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compile/compile_int.h"

typedef struct sbuf {
  char *s;
  size_t len, cap;
  bool failed;
} sbuf;

static void put(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(sbuf *b, const char *fmt, ...) {
  if (b->failed) return;
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->s ? b->s + b->len : NULL, b->s ? b->cap - b->len : 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
      b->failed = true;
      return;
    }
    if (b->s && b->len + (size_t)n < b->cap) {
      b->len += (size_t)n;
      return;
    }
    size_t cap = (b->cap ? b->cap * 2 : 4096) + (size_t)n;
    char *s = kiln_realloc(b->s, cap);
    if (!s) {
      b->failed = true;
      return;
    }
    b->s = s;
    b->cap = cap;
  }
}

static char *finish(sbuf *b) {
  if (b->failed || !b->s) {
    kiln_free(b->s);
    return NULL;
  }
  return b->s;
}

void compile_format_bytes(char *buf, size_t cap, int64_t bytes) {
  if (bytes >= 1024 * 1024) snprintf(buf, cap, "%.2fMiB", (double)bytes / (1024.0 * 1024.0));
  else if (bytes >= 1024) snprintf(buf, cap, "%.2fKiB", (double)bytes / 1024.0);
  else snprintf(buf, cap, "%.2fB", (double)bytes);
}

/* Formatted sizes for one printf call (a few slots). */
typedef struct sizes {
  char s[6][32];
} sizes;

static const char *sz(sizes *z, int slot, int64_t bytes) {
  compile_format_bytes(z->s[slot], sizeof z->s[slot], bytes);
  return z->s[slot];
}

static int64_t remaining_for(const kiln_compile_result *r, const kiln_compiled_model *cm) {
  if (r->on_chip_capacity < 0) return 0;
  return r->co_compiled ? r->on_chip_remaining : r->on_chip_capacity - cm->on_chip_bytes;
}

static void edgetpu_lines(sbuf *b, const kiln_compile_result *r, const kiln_compiled_model *cm) {
  const kiln_target *t = r->target;
  sizes z;
  put(b, "Input model: %s\n", cm->source_path);
  put(b, "Input size: %s\n", sz(&z, 0, (int64_t)cm->source_bytes));
  if (cm->output_path) {
    put(b, "Output model: %s\n", cm->output_path);
    put(b, "Output size: %s\n", sz(&z, 0, (int64_t)cm->output_bytes));
  } else {
    put(b, "Output model: (none: %s)\n",
        !cm->quantized && !t->is_cpu ? "the model is not quantized" : "not written yet");
    put(b, "Output size: %s\n", sz(&z, 0, 0));
  }
  if (t->is_cpu) {
    put(b, "Parameters in host memory: %s\n", sz(&z, 0, cm->on_chip_bytes));
    put(b, "Total number of operations: %d\n", (int)cm->n_ops);
    put(b, "Number of operations that will run on CPU: %d\n", (int)cm->device_ops);
    put(b, "Number of operations kiln cannot run: %d\n", (int)cm->cpu_ops);
  } else {
    put(b, "On-chip memory used for caching model parameters: %s\n", sz(&z, 0, cm->on_chip_bytes));
    put(b, "On-chip memory remaining for caching model parameters: %s\n", sz(&z, 0, remaining_for(r, cm)));
    put(b, "Off-chip memory used for streaming uncached model parameters: %s\n", sz(&z, 0, cm->off_chip_bytes));
    put(b, "Number of %s subgraphs: %d\n", t->device_name, (int)cm->subgraphs);
    put(b, "Total number of operations: %d\n", (int)cm->n_ops);
    put(b, "Number of operations that will run on %s: %d\n", t->device_name, (int)cm->device_ops);
    put(b, "Number of operations that will run on CPU: %d\n", (int)cm->cpu_ops);
  }
  put(b, "\n%-31s%-11s%s\n\n", "Operator", "Count", "Status");
  /* One row per (type, status), in order of first appearance. */
  for (int32_t i = 0; i < cm->n_ops; i++) {
    const kiln_compiled_op *op = &cm->ops[i];
    bool seen = false;
    for (int32_t j = 0; j < i && !seen; j++)
      seen = strcmp(cm->ops[j].type, op->type) == 0 && strcmp(cm->ops[j].status, op->status) == 0;
    if (seen) continue;
    int count = 0;
    for (int32_t j = i; j < cm->n_ops; j++)
      count += strcmp(cm->ops[j].type, op->type) == 0 && strcmp(cm->ops[j].status, op->status) == 0;
    put(b, "%-31s%-11d%s\n", op->type, count, op->status);
  }
}

static void kiln_lines(sbuf *b, const kiln_compile_result *r, const kiln_compiled_model *cm) {
  const kiln_target *t = r->target;
  const kiln_target *host = t->host ? t->host : t;
  sizes z;
  put(b, "\nkiln: %s on %s (%s)\n", cm->name, t->name, t->description);
  if (!cm->quantized && !t->is_cpu)
    put(b, "The model is not quantized: nothing runs on the %s. Run `kiln quantize %s --calib IMAGES --out "
           "MODEL_int8.tflite` first.\n", t->device_name, cm->source_path);
  if (cm->first_cpu_op >= 0 && !t->is_cpu) {
    const kiln_compiled_op *op = &cm->ops[cm->first_cpu_op];
    put(b, "The %s stops at op %d (%s): %s: %s\n", t->device_name, (int)op->index, op->type, op->status, op->reason);
  }
  if (cm->cpu_ops > 0) {
    put(b, "Ops %s:\n", t->is_cpu ? "kiln cannot run" : "on the CPU");
    for (int32_t i = 0; i < cm->n_ops; i++)
      if (!cm->ops[i].on_device)
        put(b, "  op %-4d %-28s %s\n", (int)i, cm->ops[i].type, cm->ops[i].reason);
  }
  if (t->param_memory_bytes >= 0)
    put(b, "Parameter caching (on-chip budget %s; layers cached whole in execution order, the first that does "
           "not fit and all after it streamed):\n", sz(&z, 0, t->param_memory_bytes));
  else
    put(b, "Parameters per layer (all resident in host memory):\n");
  put(b, "  %-5s %-28s %-9s %10s %10s %10s %14s %10s\n", "op", "type", "where", "params", "on-chip", "off-chip",
      "MACs", "est. us");
  for (int32_t i = 0; i < cm->n_ops; i++) {
    const kiln_compiled_op *op = &cm->ops[i];
    put(b, "  %-5d %-28s %-9s %10lld %10lld %10lld %14lld %10.1f\n", (int)i, op->type,
        op->on_device ? t->device_name : "CPU", (long long)op->param_bytes, (long long)op->on_chip_bytes,
        (long long)op->off_chip_bytes, (long long)op->macs, op->seconds * 1e6);
  }
  put(b, "Parameters: on the %s %s = on-chip %s + off-chip %s; on the CPU %s; unused %s; model total %s (%lld bytes)\n",
      t->device_name, sz(&z, 0, cm->device_param_bytes), sz(&z, 1, cm->on_chip_bytes), sz(&z, 2, cm->off_chip_bytes),
      sz(&z, 3, cm->cpu_param_bytes), sz(&z, 4, cm->unused_param_bytes), sz(&z, 5, cm->param_bytes),
      (long long)cm->param_bytes);
  put(b, "Estimate (docs/compiler.md): %.3f ms per inference, %.1f FPS\n", cm->latency_seconds * 1e3,
      cm->latency_seconds > 0 ? 1.0 / cm->latency_seconds : 0.0);
  put(b, "  %s ops %.3f ms (%d ops)", t->device_name, cm->device_seconds * 1e3, (int)cm->device_ops);
  if (!t->is_cpu) {
    put(b, ", CPU ops %.3f ms (%d ops, %s figures)", cm->cpu_seconds * 1e3, (int)cm->cpu_ops, host->name);
    put(b, ", activations over the link %.3f ms (%s in, %s out)", cm->transfer_seconds * 1e3,
        sz(&z, 0, cm->link_in_bytes), sz(&z, 1, cm->link_out_bytes));
  }
  put(b, ", per-inference overhead %.3f ms\n", cm->overhead_seconds * 1e3);
}

static void set_lines(sbuf *b, const kiln_compile_result *r) {
  sizes z;
  if (r->segments > 0) {
    double slowest = 0;
    for (int32_t i = 0; i < r->n_models; i++)
      if (r->models[i].latency_seconds > slowest) slowest = r->models[i].latency_seconds;
    put(b, "\nkiln: %d segments, one %s each, pipelined: %.3f ms end to end, %.1f FPS (slowest segment %.3f ms)\n",
        (int)r->segments, r->target->device_name, r->set_latency_seconds * 1e3, r->set_fps, slowest * 1e3);
    return;
  }
  if (!r->co_compiled) return;
  if (r->target->is_cpu) {
    put(b, "\nkiln: %d models compiled together: one inference of each in turn %.3f ms (%.1f per second)\n",
        (int)r->n_models, r->set_latency_seconds * 1e3, r->set_fps);
    return;
  }
  put(b, "\nkiln: %d co-compiled models, caching token 0x%016llx (on-chip memory filled in command-line order)\n",
      (int)r->n_models, (unsigned long long)r->models[0].caching_token);
  put(b, "  %-32s %12s %12s %12s %10s %14s\n", "model", "on-chip", "off-chip", "latency ms", "FPS", "alone on-chip");
  for (int32_t i = 0; i < r->n_models; i++) {
    const kiln_compiled_model *cm = &r->models[i];
    put(b, "  %-32s %12s %12s %12.3f %10.1f %14s\n", cm->name, sz(&z, 0, cm->on_chip_bytes),
        sz(&z, 1, cm->off_chip_bytes), cm->latency_seconds * 1e3,
        cm->latency_seconds > 0 ? 1.0 / cm->latency_seconds : 0.0, sz(&z, 2, cm->alone_on_chip_bytes));
  }
  if (r->on_chip_capacity >= 0)
    put(b, "  On-chip memory used: %s of %s\n", sz(&z, 0, r->on_chip_used), sz(&z, 1, r->on_chip_capacity));
  put(b, "  One inference of each in turn: %.3f ms (%.1f per second); compiled separately, where each switch "
         "reloads the cached parameters: %.3f ms\n",
      r->set_latency_seconds * 1e3, r->set_fps, r->separate_latency_seconds * 1e3);
}

char *kiln_compile_model_report_text(const kiln_compile_result *r, int32_t model) {
  sbuf b = {0};
  put(&b, "Model compiled successfully in %.0f ms.\n\n", r->compile_ms);
  edgetpu_lines(&b, r, &r->models[model]);
  kiln_lines(&b, r, &r->models[model]);
  set_lines(&b, r);
  return finish(&b);
}

char *kiln_compile_report_text(const kiln_compile_result *r) {
  sbuf b = {0};
  put(&b, "Model compiled successfully in %.0f ms.\n", r->compile_ms);
  for (int32_t i = 0; i < r->n_models; i++) {
    put(&b, "\n");
    edgetpu_lines(&b, r, &r->models[i]);
  }
  for (int32_t i = 0; i < r->n_models; i++) kiln_lines(&b, r, &r->models[i]);
  set_lines(&b, r);
  if (r->bundle_path)
    put(&b,
        "\nkiln: CPU bundle %s (%lld bytes): one activation arena of %lld bytes shared by %d model(s) "
        "instead of %lld; saves %lld bytes\n",
        r->bundle_path, (long long)r->bundle_file_bytes, (long long)r->bundle_shared_arena_bytes, (int)r->n_models,
        (long long)r->bundle_sum_arena_bytes, (long long)r->bundle_saved_bytes);
  return finish(&b);
}

static json_t *op_json(const kiln_compiled_op *op) {
  return json_pack("{s:i, s:s, s:b, s:s, s:s?, s:I, s:I, s:I, s:I, s:f}", "index", (int)op->index, "type", op->type,
                   "on_device", op->on_device, "status", op->status, "reason", op->reason, "param_bytes",
                   (json_int_t)op->param_bytes, "on_chip_bytes", (json_int_t)op->on_chip_bytes, "off_chip_bytes",
                   (json_int_t)op->off_chip_bytes, "macs", (json_int_t)op->macs, "estimate_us", op->seconds * 1e6);
}

json_t *compile_model_json(const kiln_compile_result *r, int32_t i, bool for_metadata) {
  const kiln_compiled_model *cm = &r->models[i];
  char token[24];
  snprintf(token, sizeof token, "0x%016llx", (unsigned long long)cm->caching_token);
  json_t *j = json_object();
  json_object_set_new(j, "name", json_string(cm->name));
  json_object_set_new(j, "target", json_string(r->target->name));
  json_object_set_new(j, "input_model", json_string(cm->source_path));
  json_object_set_new(j, "input_bytes", json_integer((json_int_t)cm->source_bytes));
  if (!for_metadata) {
    json_object_set_new(j, "output_model", cm->output_path ? json_string(cm->output_path) : json_null());
    json_object_set_new(j, "output_bytes", json_integer((json_int_t)cm->output_bytes));
  }
  json_object_set_new(j, "caching_token", json_string(token));
  json_object_set_new(j, "quantized", json_boolean(cm->quantized));
  json_object_set_new(j, "subgraphs", json_integer(cm->subgraphs));
  json_object_set_new(j, "total_ops", json_integer(cm->n_ops));
  json_object_set_new(j, "device_ops", json_integer(cm->device_ops));
  json_object_set_new(j, "cpu_ops", json_integer(cm->cpu_ops));
  json_object_set_new(j, "first_cpu_op", cm->first_cpu_op >= 0 ? op_json(&cm->ops[cm->first_cpu_op]) : json_null());
  json_object_set_new(j, "params", json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "total_bytes",
                                             (json_int_t)cm->param_bytes, "device_bytes",
                                             (json_int_t)cm->device_param_bytes, "cpu_bytes",
                                             (json_int_t)cm->cpu_param_bytes, "unused_bytes",
                                             (json_int_t)cm->unused_param_bytes, "on_chip_bytes",
                                             (json_int_t)cm->on_chip_bytes, "off_chip_bytes",
                                             (json_int_t)cm->off_chip_bytes, "on_chip_remaining_bytes",
                                             (json_int_t)remaining_for(r, cm)));
  json_object_set_new(j, "estimate", json_pack("{s:f, s:f, s:f, s:f, s:f, s:f, s:I, s:I, s:f, s:I}", "latency_ms",
                                               cm->latency_seconds * 1e3, "fps",
                                               cm->latency_seconds > 0 ? 1.0 / cm->latency_seconds : 0.0,
                                               "device_ms", cm->device_seconds * 1e3, "cpu_ms", cm->cpu_seconds * 1e3,
                                               "transfer_ms", cm->transfer_seconds * 1e3, "overhead_ms",
                                               cm->overhead_seconds * 1e3, "link_in_bytes",
                                               (json_int_t)cm->link_in_bytes, "link_out_bytes",
                                               (json_int_t)cm->link_out_bytes, "alone_latency_ms",
                                               cm->alone_latency_seconds * 1e3, "alone_on_chip_bytes",
                                               (json_int_t)cm->alone_on_chip_bytes));
  json_t *counts = json_array(), *ops = json_array();
  for (int32_t k = 0; k < cm->n_ops; k++) {
    const kiln_compiled_op *op = &cm->ops[k];
    json_array_append_new(ops, op_json(op));
    bool seen = false;
    for (int32_t q = 0; q < k && !seen; q++)
      seen = strcmp(cm->ops[q].type, op->type) == 0 && strcmp(cm->ops[q].status, op->status) == 0;
    if (seen) continue;
    int count = 0;
    for (int32_t q = k; q < cm->n_ops; q++)
      count += strcmp(cm->ops[q].type, op->type) == 0 && strcmp(cm->ops[q].status, op->status) == 0;
    json_array_append_new(counts, json_pack("{s:s, s:i, s:s}", "operator", op->type, "count", count, "status",
                                            op->status));
  }
  json_object_set_new(j, "operators", counts);
  json_object_set_new(j, "ops", ops);
  return j;
}

char *kiln_compile_report_json(const kiln_compile_result *r) {
  json_t *j = json_object();
  const kiln_target *t = r->target;
  json_object_set_new(j, "target", json_pack("{s:s, s:s, s:s, s:s}", "name", t->name, "description", t->description,
                                             "kind", t->is_cpu ? "cpu" : "accelerator", "file", t->path));
  json_object_set_new(j, "compile_ms", json_real(r->compile_ms));
  json_object_set_new(j, "co_compiled", json_boolean(r->co_compiled));
  json_object_set_new(j, "segments", json_integer(r->segments));
  json_object_set_new(j, "on_chip_capacity_bytes",
                      r->on_chip_capacity >= 0 ? json_integer((json_int_t)r->on_chip_capacity) : json_null());
  json_object_set_new(j, "on_chip_used_bytes", json_integer((json_int_t)r->on_chip_used));
  json_object_set_new(j, "on_chip_remaining_bytes", json_integer((json_int_t)r->on_chip_remaining));
  json_object_set_new(j, "set", json_pack("{s:f, s:f, s:f}", "latency_ms", r->set_latency_seconds * 1e3, "fps",
                                          r->set_fps, "separate_latency_ms", r->separate_latency_seconds * 1e3));
  json_object_set_new(j, "unquantized_models", json_integer(r->unquantized_models));
  json_object_set_new(j, "bundle", r->bundle_path ? json_string(r->bundle_path) : json_null());
  if (r->bundle_path)
    json_object_set_new(j, "bundle_memory",
                        json_pack("{s:I, s:I, s:I, s:I}", "file_bytes", (json_int_t)r->bundle_file_bytes,
                                  "shared_arena_bytes", (json_int_t)r->bundle_shared_arena_bytes, "sum_arena_bytes",
                                  (json_int_t)r->bundle_sum_arena_bytes, "saved_bytes",
                                  (json_int_t)r->bundle_saved_bytes));
  json_t *models = json_array();
  for (int32_t i = 0; i < r->n_models; i++) json_array_append_new(models, compile_model_json(r, i, false));
  json_object_set_new(j, "models", models);
  char *text = json_dumps(j, JSON_INDENT(2) | JSON_REAL_PRECISION(6));
  json_decref(j);
  if (!text) return NULL;
  char *out = kiln_strdup(text);
  free(text);
  return out;
}
