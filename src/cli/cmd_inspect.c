/* kiln inspect MODEL|BUNDLE [--json]: inputs, outputs, ops by type,
 * parameters and the planned activation arena; for a CPU bundle, what it
 * holds and whether this CPU can run it. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "kiln/bundle.h"
#include "kiln/interp.h"
#include "kiln/model.h"

static const char *help =
    "usage: kiln inspect MODEL|BUNDLE [--json]\n\n"
    "Shows a .tflite model's inputs and outputs (name, dtype, shape, quantization), its ops by\n"
    "type, its parameter count and bytes, and the activation arena kiln plans for it. If kiln\n"
    "cannot run the model, says why. For a CPU bundle (kiln compile --target cpu): the\n"
    "instruction set it was packed for and whether this CPU can run it, and per model its\n"
    "inputs and outputs, ops, stored model and packed weight bytes, own arena and scratch,\n"
    "then the one arena the models share and the bytes that saves.\n\n"
    "  --json   print one JSON object instead of text\n";

typedef struct op_count {
  const char *name;
  int count;
} op_count;

static const char *op_label(const kiln_op *op) {
  return op->code == KILN_OP_CUSTOM ? op->custom_code : kiln_opcode_name(op->code);
}

static int count_ops(const kiln_model *m, op_count *counts) {
  int n = 0;
  for (int32_t i = 0; i < m->n_ops; i++) {
    const char *name = op_label(&m->ops[i]);
    int k = 0;
    while (k < n && strcmp(counts[k].name, name) != 0) k++;
    if (k == n) counts[n++] = (op_count){name, 0};
    counts[k].count++;
  }
  for (int a = 1; a < n; a++) /* by count, descending; stable */
    for (int b = a; b > 0 && counts[b].count > counts[b - 1].count; b--) {
      op_count t = counts[b];
      counts[b] = counts[b - 1];
      counts[b - 1] = t;
    }
  return n;
}

static json_t *tensor_json(const kiln_tensor *t) {
  json_t *shape = json_array();
  for (int32_t i = 0; i < t->rank; i++) json_array_append_new(shape, json_integer(t->shape[i]));
  json_t *o = json_pack("{s:s, s:s, s:o}", "name", t->name, "dtype", kiln_dtype_name(t->dtype),
                        "shape", shape);
  if (t->quant.count > 0) {
    json_t *q = json_object();
    if (t->quant.count == 1) {
      json_object_set_new(q, "scale", json_real(t->quant.scale[0]));
      json_object_set_new(q, "zero_point", json_integer(t->quant.zero_point[0]));
    } else {
      json_object_set_new(q, "axis", json_integer(t->quant.axis));
      json_object_set_new(q, "channels", json_integer(t->quant.count));
    }
    json_object_set_new(o, "quantization", q);
  }
  return o;
}

static void print_tensor(const kiln_tensor *t, int index) {
  printf("  %d  %-40s %-8s [", index, t->name, kiln_dtype_name(t->dtype));
  for (int32_t i = 0; i < t->rank; i++) printf(i ? ",%d" : "%d", (int)t->shape[i]);
  printf("]");
  if (t->quant.count == 1)
    printf("  scale %.6g zero_point %d", (double)t->quant.scale[0], (int)t->quant.zero_point[0]);
  else if (t->quant.count > 1)
    printf("  per-axis scales on axis %d (%d)", (int)t->quant.axis, (int)t->quant.count);
  printf("\n");
}

static json_t *bundle_json(const char *path, const kiln_bundle *b, const kiln_bundle_info *info,
                           const kiln_error *run_err) {
  json_t *models = json_array();
  for (int32_t i = 0; i < info->n_models; i++) {
    const kiln_bundle_model_info *mi = &info->models[i];
    const kiln_model *m = kiln_bundle_model(b, i);
    json_t *ins = json_array(), *outs = json_array();
    for (int32_t k = 0; k < m->n_inputs; k++) json_array_append_new(ins, tensor_json(&m->tensors[m->inputs[k]]));
    for (int32_t k = 0; k < m->n_outputs; k++) json_array_append_new(outs, tensor_json(&m->tensors[m->outputs[k]]));
    json_array_append_new(models, json_pack("{s:s, s:o, s:o, s:i, s:I, s:I, s:I, s:I, s:I}", "name", mi->name,
                                            "inputs", ins, "outputs", outs, "op_count", (int)mi->n_ops,
                                            "model_bytes", (json_int_t)mi->model_bytes, "packed_bytes",
                                            (json_int_t)mi->packed_bytes, "prepared_params_bytes",
                                            (json_int_t)mi->params_bytes, "arena_bytes", (json_int_t)mi->arena_bytes,
                                            "scratch_bytes", (json_int_t)mi->scratch_bytes));
  }
  json_t *root = json_pack("{s:s, s:I, s:s, s:b}", "bundle", path, "file_bytes", (json_int_t)info->file_bytes,
                           "isa", info->isa_name, "runnable", run_err == NULL);
  if (run_err) json_object_set_new(root, "not_runnable_reason", json_string(run_err->msg));
  json_object_set_new(root, "models", models);
  json_object_set_new(root, "shared_arena_bytes", json_integer((json_int_t)info->shared_arena_bytes));
  json_object_set_new(root, "separate_arena_bytes", json_integer((json_int_t)info->sum_arena_bytes));
  json_object_set_new(root, "saved_bytes", json_integer((json_int_t)info->saved_bytes));
  return root;
}

static void print_bundle(const char *path, const kiln_bundle *b, const kiln_bundle_info *info,
                         const kiln_error *run_err) {
  printf("bundle: %s (%zu bytes), weights packed for %s kernels\n", path, info->file_bytes, info->isa_name);
  printf("this CPU: %s%s\n", run_err ? "cannot run it: " : "ready", run_err ? run_err->msg : "");
  printf("models: %d\n", (int)info->n_models);
  for (int32_t i = 0; i < info->n_models; i++) {
    const kiln_bundle_model_info *mi = &info->models[i];
    const kiln_model *m = kiln_bundle_model(b, i);
    printf("%d: %s: %d ops, model %zu bytes, packed weights %zu bytes, prepared params %zu bytes, arena %zu bytes, "
           "scratch %zu bytes\n",
           (int)i, mi->name, (int)mi->n_ops, mi->model_bytes, mi->packed_bytes, mi->params_bytes, mi->arena_bytes,
           mi->scratch_bytes);
    printf(" inputs:\n");
    for (int32_t k = 0; k < m->n_inputs; k++) print_tensor(&m->tensors[m->inputs[k]], (int)k);
    printf(" outputs:\n");
    for (int32_t k = 0; k < m->n_outputs; k++) print_tensor(&m->tensors[m->outputs[k]], (int)k);
  }
  printf("shared arena: %zu bytes (separately %zu bytes: saves %zu bytes)\n", info->shared_arena_bytes,
         info->sum_arena_bytes, info->saved_bytes);
}

/* Opened with the reference kernels (which need no particular CPU) to show
 * what it holds; opened again as it would run to say whether it can. */
static int inspect_bundle(const char *path, bool json) {
  kiln_error err;
  kiln_bundle *b;
  kiln_interp_options opt = {.n_threads = 1, .force_ref = true};
  if (kiln_bundle_open(path, &opt, &b, &err) != KILN_OK) return cli_error("inspect", &err);
  kiln_bundle_info info;
  kiln_bundle_get_info(b, &info);
  kiln_bundle *runs;
  kiln_error run_err;
  opt.force_ref = false;
  const bool ok = kiln_bundle_open(path, &opt, &runs, &run_err) == KILN_OK;
  if (ok) kiln_bundle_free(runs);
  if (json) {
    json_t *root = bundle_json(path, b, &info, ok ? NULL : &run_err);
    char *s = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (s) puts(s);
    free(s);
    json_decref(root);
  } else {
    print_bundle(path, b, &info, ok ? NULL : &run_err);
  }
  kiln_bundle_free(b);
  return CLI_OK;
}

int cmd_inspect(int argc, char **argv) {
  cli_args a = {argc, argv, 1, "inspect"};
  const char *path = NULL;
  bool json = false;
  while (a.i < argc) {
    if (cli_flag(&a, "--help") || cli_flag(&a, "-h")) {
      fputs(help, stdout);
      return CLI_OK;
    }
    if (cli_flag(&a, "--json")) {
      json = true;
    } else if (argv[a.i][0] == '-') {
      return cli_usage_error("inspect", "unknown option '%s'", argv[a.i]);
    } else if (!path) {
      path = argv[a.i++];
    } else {
      return cli_usage_error("inspect", "unexpected argument '%s'", argv[a.i]);
    }
  }
  if (!path) return cli_usage_error("inspect", "missing MODEL");
  if (kiln_bundle_detect(path)) return inspect_bundle(path, json);

  kiln_error err;
  kiln_model *m;
  if (kiln_model_load(path, &m, &err) != KILN_OK) return cli_error("inspect", &err);

  op_count *counts = calloc((size_t)m->n_ops + 1, sizeof *counts);
  if (!counts) {
    kiln_model_free(m);
    fprintf(stderr, "kiln inspect: out of memory\n");
    return CLI_FAIL;
  }
  int n_types = count_ops(m, counts);
  int64_t params, param_bytes;
  kiln_model_param_stats(m, &params, &param_bytes);

  kiln_interp *it = NULL;
  kiln_error run_err;
  kiln_status rs = kiln_interp_create(m, NULL, &it, &run_err);
  kiln_memory_stats mem = {0};
  if (rs == KILN_OK) mem = kiln_interp_memory(it);

  if (json) {
    json_t *root = json_object();
    json_object_set_new(root, "model", json_string(path));
    json_object_set_new(root, "description", json_string(m->description));
    json_t *ins = json_array(), *outs = json_array(), *ops = json_object();
    for (int32_t i = 0; i < m->n_inputs; i++) json_array_append_new(ins, tensor_json(&m->tensors[m->inputs[i]]));
    for (int32_t i = 0; i < m->n_outputs; i++) json_array_append_new(outs, tensor_json(&m->tensors[m->outputs[i]]));
    for (int k = 0; k < n_types; k++) json_object_set_new(ops, counts[k].name, json_integer(counts[k].count));
    json_object_set_new(root, "inputs", ins);
    json_object_set_new(root, "outputs", outs);
    json_object_set_new(root, "op_count", json_integer(m->n_ops));
    json_object_set_new(root, "ops", ops);
    json_object_set_new(root, "tensors", json_integer(m->n_tensors));
    json_object_set_new(root, "parameters", json_integer(params));
    json_object_set_new(root, "parameter_bytes", json_integer(param_bytes));
    json_object_set_new(root, "runnable", json_boolean(rs == KILN_OK));
    if (rs == KILN_OK) {
      json_object_set_new(root, "arena_bytes", json_integer((json_int_t)mem.arena_bytes));
      json_object_set_new(root, "arena_unplanned_bytes", json_integer((json_int_t)mem.unplanned_bytes));
      json_object_set_new(root, "scratch_bytes", json_integer((json_int_t)mem.scratch_bytes));
      json_object_set_new(root, "prepared_params_bytes", json_integer((json_int_t)mem.params_bytes));
    } else {
      json_object_set_new(root, "not_runnable_reason", json_string(run_err.msg));
    }
    char *s = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (s) puts(s);
    free(s);
    json_decref(root);
  } else {
    printf("model: %s\n", path);
    if (m->description[0]) printf("description: %s\n", m->description);
    printf("inputs:\n");
    for (int32_t i = 0; i < m->n_inputs; i++) print_tensor(&m->tensors[m->inputs[i]], (int)i);
    printf("outputs:\n");
    for (int32_t i = 0; i < m->n_outputs; i++) print_tensor(&m->tensors[m->outputs[i]], (int)i);
    printf("ops: %d\n", (int)m->n_ops);
    for (int k = 0; k < n_types; k++) printf("  %-28s %d\n", counts[k].name, counts[k].count);
    printf("tensors: %d\n", (int)m->n_tensors);
    printf("parameters: %lld (%lld bytes)\n", (long long)params, (long long)param_bytes);
    if (rs == KILN_OK) {
      printf("arena: %zu bytes (%zu without lifetime overlap), scratch %zu bytes, prepared params %zu bytes\n",
             mem.arena_bytes, mem.unplanned_bytes, mem.scratch_bytes, mem.params_bytes);
    } else {
      printf("runnable: no: %s\n", run_err.msg);
    }
  }
  kiln_interp_free(it);
  free(counts);
  kiln_model_free(m);
  return CLI_OK;
}
