/*
 * The edge compiler (kiln/compile.h) on small models built with the model
 * builder: target files (the shipped ones, the CPU target against kiln's
 * runtime, every kind of bad field), op mapping (an unsupported op in the
 * middle, limits, dtype, rank, the input edge), parameter caching and
 * co-compilation order, segments run in kiln, bad options, written files.
 */
#include <jansson.h>
#include <sys/stat.h>

#include "compile/compile_int.h"
#include "kiln/interp.h"
#include "runtime/op.h"
#include "test_compile_util.h"

static void test_shipped_targets(void) {
  const char *names[] = {"edgetpu-usb3", "edgetpu-usb2", "edgetpu-pcie", "cpu"};
  double link[3];
  for (int i = 0; i < 4; i++) {
    kiln_target *t = cu_target(names[i]);
    REQUIRE(t);
    CHECK(strcmp(kiln_target_name(t), names[i]) == 0);
    CHECK(kiln_target_is_cpu(t) == (i == 3));
    if (i < 3) {
      CHECK(t->param_memory_bytes == 7340032);
      CHECK(t->macs_per_s == 2e12);
      CHECK(t->single_subgraph && t->max_innermost_dims == 3);
      CHECK(t->dtype_mask == ((1u << KILN_I8) | (1u << KILN_U8)));
      CHECK(t->host && t->host->is_cpu && strcmp(t->host->name, "cpu") == 0);
      link[i] = t->link_bytes_per_s;
    } else {
      CHECK(t->param_memory_bytes == -1 && t->link_bytes_per_s == 0 && !t->host);
    }
    kiln_target_free(t);
  }
  CHECK(link[1] < link[0] && link[0] < link[2]); /* USB 2 < USB 3 < PCIe */
  kiln_error err;
  char *list = kiln_target_list(cu_targets_dir(), &err);
  REQUIRE(list);
  CHECK(strcmp(list, "cpu, edgetpu-pcie, edgetpu-usb2, edgetpu-usb3") == 0);
  kiln_free(list);
}

/* cpu.json lists exactly the ops kiln's runtime implements. */
static void test_cpu_target_matches_runtime(void) {
  kiln_target *t = cu_target("cpu");
  REQUIRE(t);
  for (int32_t code = 0; code < 256; code++) {
    if (code == KILN_OP_CUSTOM || strcmp(kiln_opcode_name(code), "UNKNOWN") == 0) continue;
    kiln_op op = {.code = code};
    const target_rule *r = target_rule_for(t, &op);
    bool listed = r && r->supported;
    CHECK_MSG(listed == (kiln_op_lookup(code, NULL) != NULL), "%s: cpu.json %s, runtime %s", kiln_opcode_name(code),
              listed ? "yes" : "no", kiln_op_lookup(code, NULL) ? "yes" : "no");
  }
  const kiln_op_reg *const families[] = {kiln_ops_conv, kiln_ops_pool, kiln_ops_elementwise, kiln_ops_shape,
                                         kiln_ops_detect};
  for (size_t f = 0; f < sizeof families / sizeof families[0]; f++)
    for (const kiln_op_reg *reg = families[f]; reg->code >= 0; reg++) {
      if (reg->code != KILN_OP_CUSTOM) continue;
      kiln_op op = {.code = KILN_OP_CUSTOM, .custom_code = reg->custom_code};
      CHECK_MSG(target_rule_for(t, &op) != NULL, "custom op %s missing from cpu.json", reg->custom_code);
    }
  for (int32_t i = 0; i < t->n_rules; i++)
    if (t->rules[i].custom) CHECK_MSG(kiln_op_lookup(KILN_OP_CUSTOM, t->rules[i].op), "%s", t->rules[i].op);
  kiln_target_free(t);
}

/* Writes the shipped edgetpu-usb3 target changed by `edit` into dir and
 * expects loading to fail with a message naming the file and `field`. */
static void expect_bad_target(const char *dir, void (*edit)(json_t *), const char *field, const char *what) {
  char src[4200], path[4200];
  snprintf(src, sizeof src, "%s/edgetpu-usb3.json", cu_targets_dir());
  snprintf(path, sizeof path, "%s/bad.json", dir);
  json_t *j = json_load_file(src, 0, NULL);
  REQUIRE(j);
  edit(j);
  REQUIRE(json_dump_file(j, path, 0) == 0);
  json_decref(j);
  kiln_target *t = NULL;
  kiln_error err;
  kiln_status s = kiln_target_load(path, &t, &err);
  CHECK_MSG(s != KILN_OK && !t, "%s: loaded", field);
  if (s != KILN_OK) {
    CHECK_MSG(strstr(err.msg, "bad.json") && strstr(err.msg, field) && strstr(err.msg, what), "%s", err.msg);
  }
  kiln_target_free(t);
}

static void drop_macs(json_t *j) { json_object_del(j, "macs_per_s"); }
static void string_macs(json_t *j) { json_object_set_new(j, "macs_per_s", json_string("fast")); }
static void negative_link(json_t *j) { json_object_set_new(j, "link_bytes_per_s", json_real(-1)); }
static void null_memory(json_t *j) { json_object_set_new(j, "parameter_memory_bytes", json_null()); }
static void unknown_field(json_t *j) { json_object_set_new(j, "mac_rate", json_real(1)); }
static void bad_dtype(json_t *j) { json_object_set_new(j, "dtypes", json_pack("[s, s]", "int8", "int4")); }
static void bad_op_name(json_t *j) {
  json_object_set_new(json_object_get(j, "ops"), "CONV2D", json_pack("{s:b}", "supported", 1));
}
static void bad_limit(json_t *j) {
  json_t *l = json_array_get(json_object_get(json_object_get(json_object_get(j, "ops"), "SOFTMAX"), "limits"), 1);
  json_object_set_new(l, "limit", json_string("max_elements"));
}
static void bad_limit_value(json_t *j) {
  json_t *l = json_array_get(json_object_get(json_object_get(json_object_get(j, "ops"), "SOFTMAX"), "limits"), 1);
  json_object_set_new(l, "value", json_string("16000"));
}
static void unsupported_without_reason(json_t *j) {
  json_object_del(json_object_get(json_object_get(j, "ops"), "LEAKY_RELU"), "reason");
}
static void missing_host(json_t *j) { json_object_set_new(j, "host_target", json_string("no-such-cpu")); }

static void test_target_errors(void) {
  char dir[64];
  snprintf(dir, sizeof dir, "%s", cu_tmpdir());
  char cmd[4400];
  snprintf(cmd, sizeof cmd, "cp %s/cpu.json %s/", cu_targets_dir(), dir);
  REQUIRE(system(cmd) == 0);
  expect_bad_target(dir, drop_macs, "macs_per_s", "missing");
  expect_bad_target(dir, string_macs, "macs_per_s", "expected a number");
  expect_bad_target(dir, negative_link, "link_bytes_per_s", "> 0");
  expect_bad_target(dir, null_memory, "parameter_memory_bytes", "expected an integer");
  expect_bad_target(dir, unknown_field, "mac_rate", "unknown field");
  expect_bad_target(dir, bad_dtype, "dtypes[1]", "expected a dtype name");
  expect_bad_target(dir, bad_op_name, "ops.CONV2D", "not a TFLite builtin operator name");
  expect_bad_target(dir, bad_limit, "ops.SOFTMAX.limits[1].limit", "unknown limit 'max_elements'");
  expect_bad_target(dir, bad_limit_value, "ops.SOFTMAX.limits[1].value", "expected an integer");
  expect_bad_target(dir, unsupported_without_reason, "ops.LEAKY_RELU.reason", "expected a non-empty string");
  expect_bad_target(dir, missing_host, "host_target", "no-such-cpu");

  /* Not JSON, and not there at all. */
  char path[128];
  snprintf(path, sizeof path, "%s/broken.json", dir);
  FILE *f = fopen(path, "w");
  REQUIRE(f);
  fputs("{\"name\": \"x\",\n", f);
  fclose(f);
  kiln_target *t = NULL;
  kiln_error err;
  CHECK(kiln_target_load(path, &t, &err) == KILN_ERR_FORMAT && strstr(err.msg, "broken.json: line 2"));
  CHECK(kiln_target_open(cu_targets_dir(), "edgetpu-usb4", &t, &err) == KILN_ERR_INVALID_ARG);
  CHECK_MSG(strstr(err.msg, "unknown target 'edgetpu-usb4'") && strstr(err.msg, "cpu, edgetpu-pcie, edgetpu-usb2, edgetpu-usb3"),
            "%s", err.msg);
  CHECK(kiln_target_open(cu_targets_dir(), "/no/such/target.json", &t, &err) == KILN_ERR_IO && strstr(err.msg, "/no/such/target.json"));
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  CHECK(system(cmd) == 0);
}

static kiln_compile_result *compile_one(const char *path, const char *target_name, kiln_target **t) {
  *t = cu_target(target_name);
  if (!*t) return NULL;
  kiln_compile_result *r = NULL;
  kiln_error err;
  if (kiln_compile(&path, 1, *t, NULL, &r, &err) != KILN_OK) fprintf(stderr, "compile %s: %s\n", path, err.msg);
  return r;
}

/* int8 conv -> ACT -> conv -> conv on [1,8,8,c]. */
static kiln_model *middle_model(int32_t act_code) {
  kiln_model *m;
  kiln_error err;
  if (kiln_model_new(&m, &err) != KILN_OK) return NULL;
  test_rng rng = {7};
  int32_t in = cu_act(m, "input", KILN_I8, 4, (int32_t[]){1, 8, 8, 3});
  int32_t x = cu_conv(m, in, 8, 8, 3, 16, "conv0", &rng);
  x = cu_unary(m, act_code, x, "act");
  x = cu_conv(m, x, 8, 8, 16, 16, "conv1", &rng);
  x = cu_conv(m, x, 8, 8, 16, 8, "conv2", &rng);
  kiln_model_set_io(m, &in, 1, &x, 1, &err);
  return m;
}

static void test_unsupported_in_middle(void) {
  char dir[64];
  snprintf(dir, sizeof dir, "%s", cu_tmpdir());
  const int32_t codes[] = {KILN_OP_HARD_SWISH, KILN_OP_LEAKY_RELU};
  for (int c = 0; c < 2; c++) {
    const char *path = cu_save(middle_model(codes[c]), dir, "middle", 0);
    kiln_target *t;
    kiln_compile_result *r = compile_one(path, "edgetpu-usb3", &t);
    REQUIRE(r);
    const kiln_compiled_model *cm = &r->models[0];
    REQUIRE(cm->n_ops == 4);
    CHECK(cm->ops[0].on_device && strcmp(cm->ops[0].status, "Mapped to Edge TPU") == 0 && !cm->ops[0].reason);
    CHECK(!cm->ops[1].on_device && strcmp(cm->ops[1].status, STATUS_NOT_SUPPORTED) == 0);
    CHECK_MSG(strstr(cm->ops[1].reason, kiln_opcode_name(codes[c])), "%s", cm->ops[1].reason);
    for (int i = 2; i < 4; i++) {
      CHECK(!cm->ops[i].on_device && strcmp(cm->ops[i].status, STATUS_SUBGRAPH) == 0);
      CHECK(cm->ops[i].reason && strstr(cm->ops[i].reason, "runs on the CPU"));
    }
    CHECK(strstr(cm->ops[2].reason, "op 1 ("));
    CHECK(cm->first_cpu_op == 1 && cm->device_ops == 1 && cm->cpu_ops == 3 && cm->subgraphs == 1);
    CHECK(cm->on_chip_bytes == cm->ops[0].param_bytes && cm->off_chip_bytes == 0);
    CHECK(cm->cpu_param_bytes == cm->ops[2].param_bytes + cm->ops[3].param_bytes && cm->cpu_param_bytes > 0);
    cu_check_invariants(cm);
    char *text = kiln_compile_report_text(r);
    REQUIRE(text);
    CHECK(strstr(text, "Number of operations that will run on Edge TPU: 1\n"));
    CHECK(strstr(text, "Number of operations that will run on CPU: 3\n"));
    char row[128];
    snprintf(row, sizeof row, "\n%-31s%-11d%s\n", kiln_opcode_name(codes[c]), 1, STATUS_NOT_SUPPORTED);
    CHECK_MSG(strstr(text, row), "%s", text);
    snprintf(row, sizeof row, "\n%-31s%-11d%s\n", "CONV_2D", 2, STATUS_SUBGRAPH);
    CHECK(strstr(text, row));
    CHECK(strstr(text, "The Edge TPU stops at op 1 ("));
    kiln_free(text);
    kiln_compile_free(r);
    kiln_target_free(t);

    /* The CPU target runs everything. */
    r = compile_one(path, "cpu", &t);
    REQUIRE(r);
    CHECK(r->models[0].device_ops == 4 && r->models[0].cpu_ops == 0);
    CHECK(r->models[0].on_chip_bytes == r->models[0].param_bytes);
    kiln_compile_free(r);
    kiln_target_free(t);
  }
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  CHECK(system(cmd) == 0);
}

/* Builds a one-op model: op(code, inputs of the given shapes) -> out. */
static kiln_model *one_op(int32_t code, kiln_dtype dt, int rank, const int32_t *shape, int n_inputs,
                          const kiln_op_options *opt) {
  kiln_model *m;
  kiln_error err;
  if (kiln_model_new(&m, &err) != KILN_OK) return NULL;
  int32_t ins[2];
  for (int i = 0; i < n_inputs; i++) ins[i] = cu_act(m, i ? "input1" : "input0", dt, rank, shape);
  int32_t out = cu_act(m, "output", dt, rank, shape);
  kiln_op_options none = {.new_shape_count = -1};
  kiln_model_add_op(m, code, NULL, ins, n_inputs, &out, 1, opt ? opt : &none, NULL, 0, &err);
  kiln_model_set_io(m, ins, n_inputs, &out, 1, &err);
  return m;
}

static void expect_status(kiln_model *m, const char *dir, const char *status, const char *in_reason) {
  const char *path = cu_save(m, dir, "one", 1);
  kiln_target *t;
  kiln_compile_result *r = compile_one(path, "edgetpu-usb3", &t);
  REQUIRE(r);
  const kiln_compiled_op *op = &r->models[0].ops[0];
  if (!status) {
    CHECK_MSG(op->on_device, "%s: %s", op->type, op->reason);
  } else {
    CHECK_MSG(!op->on_device && strcmp(op->status, status) == 0, "%s: %s", op->type, op->status);
    CHECK_MSG(op->reason && strstr(op->reason, in_reason), "%s: %s", op->type, op->reason ? op->reason : "(null)");
  }
  kiln_compile_free(r);
  kiln_target_free(t);
}

static void test_limits(void) {
  char dir[64];
  snprintf(dir, sizeof dir, "%s", cu_tmpdir());
  kiln_op_options softmax = {.type = KILN_OPTS_SOFTMAX, .beta = 1.0f, .new_shape_count = -1};
  expect_status(one_op(KILN_OP_SOFTMAX, KILN_I8, 2, (int32_t[]){1, 1000}, 1, &softmax), dir, NULL, NULL);
  expect_status(one_op(KILN_OP_SOFTMAX, KILN_I8, 2, (int32_t[]){1, 20000}, 1, &softmax), dir, STATUS_UNSPECIFIED,
                "at most 16000 elements (20000 elements)");
  expect_status(one_op(KILN_OP_SOFTMAX, KILN_I8, 2, (int32_t[]){4, 100}, 1, &softmax), dir, STATUS_UNSPECIFIED,
                "1-D");
  kiln_op_options add = {.type = KILN_OPTS_ADD, .new_shape_count = -1};
  expect_status(one_op(KILN_OP_ADD, KILN_I8, 4, (int32_t[]){1, 4, 4, 8}, 2, &add), dir, NULL, NULL);
  expect_status(one_op(KILN_OP_ADD, KILN_I8, 4, (int32_t[]){2, 4, 4, 8}, 2, &add), dir, STATUS_RANK,
                "dimension 0 is 2");
  expect_status(one_op(KILN_OP_ADD, KILN_F32, 4, (int32_t[]){1, 4, 4, 8}, 2, &add), dir, STATUS_DTYPE,
                "is float32 (Edge TPU takes int8/uint8)");
  kiln_op_options pool = {.type = KILN_OPTS_POOL2D, .padding = KILN_PAD_SAME, .stride_w = 1, .stride_h = 1,
                          .filter_w = 2, .filter_h = 2, .activation = KILN_ACT_RELU6, .new_shape_count = -1};
  expect_status(one_op(KILN_OP_MAX_POOL_2D, KILN_I8, 4, (int32_t[]){1, 4, 4, 8}, 1, &pool), dir, STATUS_UNSPECIFIED,
                "fused activation");
  pool.activation = KILN_ACT_NONE;
  expect_status(one_op(KILN_OP_MAX_POOL_2D, KILN_I8, 4, (int32_t[]){1, 4, 4, 8}, 1, &pool), dir, NULL, NULL);
  kiln_op_options none = {.new_shape_count = -1};
  expect_status(one_op(KILN_OP_RELU, KILN_I8, 4, (int32_t[]){1, 4, 4, 8}, 1, &none), dir, NULL, NULL);
  expect_status(one_op(98 /* LEAKY_RELU */, KILN_I8, 4, (int32_t[]){1, 4, 4, 8}, 1, &(kiln_op_options){
                  .type = KILN_OPTS_LEAKY_RELU, .alpha = 0.2f, .new_shape_count = -1}), dir, STATUS_NOT_SUPPORTED, "LEAKY_RELU");
  expect_status(one_op(39 /* TRANSPOSE: supported but no options kiln writes */, KILN_I8, 2, (int32_t[]){1, 4}, 1, &none),
                dir, NULL, NULL);
  expect_status(one_op(8 /* FLOOR: not in the table */, KILN_I8, 2, (int32_t[]){1, 4}, 1, &none), dir,
                STATUS_NOT_SUPPORTED, "FLOOR is not in edgetpu-usb3's op table");
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  CHECK(system(cmd) == 0);
}

/* float input -> QUANTIZE -> conv -> DEQUANTIZE: the edges run on the CPU,
 * the conv on the device; and an independent branch after a CPU op stays
 * on the device (one subgraph is about data flow). */
static void test_edges_and_branches(void) {
  char dir[64];
  snprintf(dir, sizeof dir, "%s", cu_tmpdir());
  kiln_model *m;
  kiln_error err;
  REQUIRE(kiln_model_new(&m, &err) == KILN_OK);
  test_rng rng = {3};
  int32_t in = cu_act(m, "input", KILN_F32, 4, (int32_t[]){1, 8, 8, 3});
  int32_t q = cu_act(m, "quantized", KILN_I8, 4, (int32_t[]){1, 8, 8, 3});
  kiln_op_options none = {.new_shape_count = -1};
  kiln_model_add_op(m, KILN_OP_QUANTIZE, NULL, &in, 1, &q, 1, &none, NULL, 0, &err);
  int32_t c = cu_conv(m, q, 8, 8, 3, 8, "conv", &rng);
  int32_t f = cu_act(m, "output", KILN_F32, 4, (int32_t[]){1, 8, 8, 8});
  kiln_model_add_op(m, KILN_OP_DEQUANTIZE, NULL, &c, 1, &f, 1, &none, NULL, 0, &err);
  kiln_model_set_io(m, &in, 1, &f, 1, &err);
  const char *path = cu_save(m, dir, "edges", 0);
  kiln_target *t;
  kiln_compile_result *r = compile_one(path, "edgetpu-usb3", &t);
  REQUIRE(r);
  const kiln_compiled_model *cm = &r->models[0];
  CHECK(!cm->ops[0].on_device && strcmp(cm->ops[0].status, STATUS_UNSPECIFIED) == 0 && strstr(cm->ops[0].reason, "input edge"));
  CHECK(cm->ops[1].on_device);
  CHECK(!cm->ops[2].on_device && strcmp(cm->ops[2].status, STATUS_DTYPE) == 0);
  CHECK(cm->first_cpu_op == 2 && cm->quantized && r->unquantized_models == 0);
  /* The device reads the quantized input and writes the conv output. */
  CHECK(cm->link_in_bytes == 8 * 8 * 3 && cm->link_out_bytes == 8 * 8 * 8);
  cu_check_invariants(cm);
  kiln_compile_free(r);
  kiln_target_free(t);

  /* conv0 -> HARD_SWISH -> conv1, and conv0 -> conv2 (independent). */
  REQUIRE(kiln_model_new(&m, &err) == KILN_OK);
  in = cu_act(m, "input", KILN_I8, 4, (int32_t[]){1, 8, 8, 3});
  int32_t x = cu_conv(m, in, 8, 8, 3, 8, "conv0", &rng);
  int32_t h = cu_unary(m, KILN_OP_HARD_SWISH, x, "hswish");
  int32_t y = cu_conv(m, h, 8, 8, 8, 8, "conv1", &rng);
  int32_t z = cu_conv(m, x, 8, 8, 8, 8, "conv2", &rng);
  kiln_model_set_io(m, &in, 1, (int32_t[]){y, z}, 2, &err);
  path = cu_save(m, dir, "branches", 0);
  r = compile_one(path, "edgetpu-usb3", &t);
  REQUIRE(r);
  cm = &r->models[0];
  CHECK(cm->ops[0].on_device && !cm->ops[1].on_device && !cm->ops[2].on_device && cm->ops[3].on_device);
  CHECK(strcmp(cm->ops[2].status, STATUS_SUBGRAPH) == 0 && cm->first_cpu_op == 1);
  kiln_compile_free(r);
  kiln_target_free(t);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  CHECK(system(cmd) == 0);
}

/* FC layers of 4 MiB, 4 MiB and 32 KiB against the 7 MiB budget: the first
 * is cached, the second does not fit, and the third, though it would fit,
 * is streamed too (caching stops at the first layer that does not fit). */
static void test_caching(void) {
  char dir[64];
  snprintf(dir, sizeof dir, "%s", cu_tmpdir());
  const int32_t outs[] = {2048, 2048, 16};
  const char *path = cu_save(cu_fc_chain(2048, outs, 3, 1), dir, "fc", 0);
  kiln_target *t;
  kiln_compile_result *r = compile_one(path, "edgetpu-usb3", &t);
  REQUIRE(r);
  const kiln_compiled_model *cm = &r->models[0];
  REQUIRE(cm->n_ops == 3 && cm->device_ops == 3);
  const int64_t big = 2048 * 2048 + 2048 * 4, small = 16 * 2048 + 16 * 4;
  CHECK(cm->ops[0].param_bytes == big && cm->ops[1].param_bytes == big && cm->ops[2].param_bytes == small);
  CHECK(cm->ops[0].on_chip_bytes == big && cm->ops[0].off_chip_bytes == 0);
  CHECK(cm->ops[1].on_chip_bytes == 0 && cm->ops[1].off_chip_bytes == big);
  CHECK(cm->ops[2].on_chip_bytes == 0 && cm->ops[2].off_chip_bytes == small);
  CHECK(r->on_chip_used == big && r->on_chip_remaining == 7340032 - big);
  cu_check_invariants(cm);
  /* Streaming 4 MiB over USB 3 (350 MB/s) costs about 12 ms. */
  CHECK(cm->ops[1].seconds > (double)big / 3.5e8 && cm->latency_seconds > cm->device_seconds);
  char *text = kiln_compile_report_text(r);
  REQUIRE(text);
  CHECK(strstr(text, "On-chip memory used for caching model parameters: 4.01MiB\n"));
  CHECK(strstr(text, "On-chip memory remaining for caching model parameters: 2.99MiB\n"));
  CHECK(strstr(text, "Off-chip memory used for streaming uncached model parameters: 4.04MiB\n"));
  kiln_free(text);
  kiln_compile_free(r);
  kiln_target_free(t);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  CHECK(system(cmd) == 0);
}

/* A (one 3 MiB layer) and B (two 3 MiB layers) share 7 MiB: A then B
 * caches A and B's first layer; B then A caches B whole and nothing of A. */
static void test_cocompile_order(void) {
  char dir[64];
  snprintf(dir, sizeof dir, "%s", cu_tmpdir());
  const int32_t a_outs[] = {1536}, b_outs[] = {2048, 1536};
  char a[256], b[256];
  snprintf(a, sizeof a, "%s", cu_save(cu_fc_chain(2048, a_outs, 1, 2), dir, "a", 0));
  snprintf(b, sizeof b, "%s", cu_save(cu_fc_chain(1536, b_outs, 2, 3), dir, "b", 1));
  kiln_target *t = cu_target("edgetpu-usb3");
  REQUIRE(t);
  const int64_t a0 = 1536 * 2048 + 1536 * 4, b0 = 2048 * 1536 + 2048 * 4, b1 = 1536 * 2048 + 1536 * 4;
  kiln_error err;
  kiln_compile_result *ab = NULL, *ba = NULL;
  const char *order_ab[] = {a, b}, *order_ba[] = {b, a};
  REQUIRE(kiln_compile(order_ab, 2, t, NULL, &ab, &err) == KILN_OK);
  REQUIRE(kiln_compile(order_ba, 2, t, NULL, &ba, &err) == KILN_OK);
  CHECK(ab->co_compiled && ab->n_models == 2);
  CHECK(ab->models[0].on_chip_bytes == a0 && ab->models[1].on_chip_bytes == b0 && ab->models[1].off_chip_bytes == b1);
  CHECK(ba->models[0].on_chip_bytes == b0 + b1 && ba->models[1].on_chip_bytes == 0 && ba->models[1].off_chip_bytes == a0);
  CHECK(ab->on_chip_used == a0 + b0 && ba->on_chip_used == b0 + b1);
  /* Alone, each would be cached whole. */
  CHECK(ab->models[0].alone_on_chip_bytes == a0 && ab->models[1].alone_on_chip_bytes == b0 + b1);
  CHECK(ab->models[0].caching_token == ab->models[1].caching_token);
  CHECK(ab->models[0].caching_token != ba->models[0].caching_token);
  for (int i = 0; i < 2; i++) {
    cu_check_invariants(&ab->models[i]);
    cu_check_invariants(&ba->models[i]);
  }
  CHECK(ab->set_latency_seconds > 0 && ab->set_fps > 0 && ab->separate_latency_seconds > 0);
  char *text = kiln_compile_report_text(ab);
  REQUIRE(text);
  CHECK(strstr(text, "2 co-compiled models, caching token 0x"));
  kiln_free(text);
  kiln_compile_free(ab);
  kiln_compile_free(ba);
  kiln_target_free(t);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  CHECK(system(cmd) == 0);
}

/* conv0 -> conv1 -> conv2 -> ADD(conv2, conv0): conv0's output crosses
 * segments 1 and 2 when every op is its own segment. */
static void test_split_skip_connection(void) {
  kiln_model *m;
  kiln_error err;
  REQUIRE(kiln_model_new(&m, &err) == KILN_OK);
  test_rng rng = {5};
  int32_t in = cu_act(m, "input", KILN_I8, 4, (int32_t[]){1, 6, 6, 4});
  int32_t c0 = cu_conv(m, in, 6, 6, 4, 8, "conv0", &rng);
  int32_t c1 = cu_conv(m, c0, 6, 6, 8, 8, "conv1", &rng);
  int32_t c2 = cu_conv(m, c1, 6, 6, 8, 8, "conv2", &rng);
  int32_t sum = cu_act(m, "sum", KILN_I8, 4, (int32_t[]){1, 6, 6, 8});
  kiln_op_options add = {.type = KILN_OPTS_ADD, .new_shape_count = -1};
  kiln_model_add_op(m, KILN_OP_ADD, NULL, (int32_t[]){c2, c0}, 2, &sum, 1, &add, NULL, 0, &err);
  kiln_model_set_io(m, &in, 1, &sum, 1, &err);
  kiln_model *segs[4] = {0};
  const int32_t cuts[] = {1, 2, 3};
  REQUIRE(kiln_compile_split(m, cuts, 3, segs, &err) == KILN_OK);
  for (int s = 0; s < 4; s++) REQUIRE(segs[s] && segs[s]->n_ops == 1);
  /* Segment k's inputs are segment k-1's outputs, in order. */
  for (int s = 1; s < 4; s++) {
    REQUIRE(segs[s]->n_inputs == segs[s - 1]->n_outputs);
    for (int32_t i = 0; i < segs[s]->n_inputs; i++)
      CHECK(strcmp(segs[s]->tensors[segs[s]->inputs[i]].name, segs[s - 1]->tensors[segs[s - 1]->outputs[i]].name) == 0);
  }
  CHECK(segs[1]->n_inputs == 1 && segs[1]->n_outputs == 2); /* conv0 passes through */
  CHECK(segs[2]->n_inputs == 2 && segs[2]->n_outputs == 2);
  CHECK(segs[3]->n_outputs == 1 && strcmp(segs[3]->tensors[segs[3]->outputs[0]].name, "sum") == 0);
  int8_t x[6 * 6 * 4];
  for (size_t i = 0; i < sizeof x; i++) x[i] = (int8_t)test_rand_int(&rng, -128, 127);
  cu_outputs whole = {0}, chained = {0};
  REQUIRE(cu_run_chain(&m, 1, x, sizeof x, &whole) == 0);
  REQUIRE(cu_run_chain(segs, 4, x, sizeof x, &chained) == 0);
  CHECK(cu_outputs_equal(&whole, &chained));
  /* Each segment survives the writer and reader. */
  for (int s = 0; s < 4; s++) {
    uint8_t *bytes;
    size_t size;
    kiln_model *back = NULL;
    CHECK(kiln_model_serialize(segs[s], &bytes, &size, &err) == KILN_OK);
    CHECK(kiln_model_parse(bytes, size, true, "segment", &back, &err) == KILN_OK);
    CHECK(back && back->n_inputs == segs[s]->n_inputs && back->n_outputs == segs[s]->n_outputs);
    kiln_model_free(back);
    kiln_free(bytes);
  }
  cu_outputs_free(&whole);
  cu_outputs_free(&chained);
  for (int s = 0; s < 4; s++) kiln_model_free(segs[s]);
  CHECK(kiln_compile_split(m, (int32_t[]){2, 2}, 2, segs, &err) == KILN_ERR_INVALID_ARG);
  CHECK(kiln_compile_split(m, (int32_t[]){4}, 1, segs, &err) == KILN_ERR_INVALID_ARG);
  kiln_model_free(m);
}

static void test_bad_options(void) {
  char dir[64];
  snprintf(dir, sizeof dir, "%s", cu_tmpdir());
  const char *path = cu_save(middle_model(KILN_OP_RELU), dir, "m", 0);
  kiln_target *t = cu_target("edgetpu-usb3");
  REQUIRE(t);
  kiln_compile_result *r = NULL;
  kiln_error err;
  kiln_compile_options o = {.num_segments = 5};
  CHECK(kiln_compile(&path, 1, t, &o, &r, &err) == KILN_ERR_INVALID_ARG && !r);
  CHECK_MSG(strstr(err.msg, "m.tflite: cannot split 4 ops into 5 segments"), "%s", err.msg);
  o.num_segments = 4;
  CHECK(kiln_compile(&path, 1, t, &o, &r, &err) == KILN_OK && r && r->n_models == 4 && r->segments == 4);
  kiln_compile_free(r);
  r = NULL;
  const char *names[] = {"conv0", "nope", "nada"};
  kiln_compile_options by_name = {.intermediate_tensors = names, .n_intermediate_tensors = 3};
  CHECK(kiln_compile(&path, 1, t, &by_name, &r, &err) == KILN_ERR_INVALID_ARG && !r);
  CHECK_MSG(strstr(err.msg, "'nope', 'nada'") && strstr(err.msg, "m.tflite"), "%s", err.msg);
  by_name.n_intermediate_tensors = 1;
  CHECK(kiln_compile(&path, 1, t, &by_name, &r, &err) == KILN_OK && r && r->n_models == 2);
  CHECK(r && r->models[0].n_ops == 1 && strcmp(r->models[0].name, "m_segment_0_of_2") == 0);
  kiln_compile_free(r);
  r = NULL;
  const char *last[] = {"conv2"}, *input[] = {"input"};
  by_name.intermediate_tensors = last;
  CHECK(kiln_compile(&path, 1, t, &by_name, &r, &err) == KILN_ERR_INVALID_ARG && strstr(err.msg, "last op"));
  by_name.intermediate_tensors = input;
  CHECK(kiln_compile(&path, 1, t, &by_name, &r, &err) == KILN_ERR_INVALID_ARG && strstr(err.msg, "not computed by an op"));
  const char *two[] = {path, path};
  o.num_segments = 2;
  CHECK(kiln_compile(two, 2, t, &o, &r, &err) == KILN_ERR_INVALID_ARG && strstr(err.msg, "exclude each other"));
  CHECK(kiln_compile(two, 2, t, NULL, &r, &err) == KILN_ERR_INVALID_ARG && strstr(err.msg, "two models named 'm'"));
  /* A corrupt model: the reader's message, naming the file. */
  char bad[128];
  snprintf(bad, sizeof bad, "%s/corrupt.tflite", dir);
  FILE *f = fopen(bad, "wb");
  REQUIRE(f);
  fputs("this is not a flatbuffer at all, just some text", f);
  fclose(f);
  const char *bad_path = bad;
  CHECK(kiln_compile(&bad_path, 1, t, NULL, &r, &err) == KILN_ERR_FORMAT && strstr(err.msg, "corrupt.tflite"));
  snprintf(bad, sizeof bad, "%s/missing.tflite", dir);
  CHECK(kiln_compile(&bad_path, 1, t, NULL, &r, &err) == KILN_ERR_IO && strstr(err.msg, "missing.tflite"));
  kiln_target_free(t);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  CHECK(system(cmd) == 0);
}

static void test_write_outputs(void) {
  char dir[64];
  snprintf(dir, sizeof dir, "%s", cu_tmpdir());
  const char *path = cu_save(middle_model(KILN_OP_RELU), dir, "relu", 0);
  kiln_target *t;
  kiln_compile_result *r = compile_one(path, "edgetpu-pcie", &t);
  REQUIRE(r);
  CHECK(r->models[0].device_ops == 4);
  char out[128];
  snprintf(out, sizeof out, "%s/out/nested", dir);
  kiln_error err;
  REQUIRE(kiln_compile_write(r, out, &err) == KILN_OK);
  char expect[256];
  snprintf(expect, sizeof expect, "%s/relu_edgetpu-pcie.tflite", out);
  CHECK(r->models[0].output_path && strcmp(r->models[0].output_path, expect) == 0 && r->models[0].output_bytes > 0);
  kiln_model *m = NULL;
  REQUIRE(kiln_model_load(expect, &m, &err) == KILN_OK);
  kiln_interp *it;
  CHECK(kiln_interp_create(m, NULL, &it, &err) == KILN_OK);
  kiln_interp_free(it);
  const kiln_metadata *md = NULL;
  for (int32_t i = 0; i < m->n_metadata; i++)
    if (strcmp(m->metadata[i].name, "kiln_compile") == 0) md = &m->metadata[i];
  REQUIRE(md);
  json_t *j = json_loadb((const char *)md->data, md->bytes, 0, NULL);
  REQUIRE(j);
  CHECK(strcmp(json_string_value(json_object_get(j, "target")), "edgetpu-pcie") == 0);
  CHECK(json_integer_value(json_object_get(j, "device_ops")) == 4);
  CHECK(json_array_size(json_object_get(j, "ops")) == 4);
  json_decref(j);
  kiln_model_free(m);
  snprintf(expect, sizeof expect, "%s/relu_edgetpu-pcie.log", out);
  struct stat st;
  CHECK(stat(expect, &st) == 0 && st.st_size > 500);
  snprintf(expect, sizeof expect, "%s/report.json", out);
  j = json_load_file(expect, 0, NULL);
  CHECK(j && json_array_size(json_object_get(j, "models")) == 1);
  json_decref(j);
  kiln_compile_free(r);
  kiln_target_free(t);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  CHECK(system(cmd) == 0);
}

typedef struct failing {
  int countdown;
  int failed;
} failing;

static void *fail_alloc(size_t bytes, void *ctx) {
  failing *f = ctx;
  if (f->countdown-- == 0) {
    f->failed++;
    return NULL;
  }
  return malloc(bytes);
}
static void *fail_realloc(void *ptr, size_t bytes, void *ctx) {
  failing *f = ctx;
  if (f->countdown-- == 0) {
    f->failed++;
    return NULL;
  }
  return realloc(ptr, bytes);
}
static void fail_free(void *ptr, void *ctx) {
  (void)ctx;
  free(ptr);
}

/* Every allocation of target loading, compiling (with segments), the
 * reports and writing fails in turn: an error (or success when the failure
 * hit nothing), never a crash or a leak (the sanitizer build checks). */
static void test_allocation_failures(void) {
  char dir[64];
  snprintf(dir, sizeof dir, "%s", cu_tmpdir());
  const char *path = cu_save(middle_model(KILN_OP_HARD_SWISH), dir, "m", 0);
  char out[128];
  snprintf(out, sizeof out, "%s/out", dir);
  int ok = 0, failed = 0;
  for (int nth = 0; nth < 5000 && ok == 0; nth++) {
    failing f = {nth, 0};
    const kiln_allocator a = {fail_alloc, fail_realloc, fail_free, &f};
    kiln_set_allocator(&a);
    kiln_error err;
    kiln_target *t = NULL;
    kiln_compile_result *r = NULL;
    kiln_compile_options o = {.num_segments = 2};
    kiln_status s = kiln_target_open(cu_targets_dir(), "edgetpu-usb3", &t, &err);
    if (s == KILN_OK) s = kiln_compile(&path, 1, t, &o, &r, &err);
    if (s == KILN_OK) s = kiln_compile_write(r, out, &err);
    char *text = s == KILN_OK ? kiln_compile_report_text(r) : NULL;
    if (s == KILN_OK && !text) s = KILN_ERR_NOMEM;
    kiln_free(text);
    kiln_compile_free(r);
    kiln_target_free(t);
    kiln_set_allocator(NULL);
    if (f.failed == 0) {
      CHECK_MSG(s == KILN_OK, "%s", err.msg);
      ok++;
    } else {
      CHECK_MSG(s != KILN_OK, "allocation %d failed unnoticed", nth);
      failed++;
    }
  }
  CHECK(ok == 1 && failed > 100);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  CHECK(system(cmd) == 0);
}

int main(void) {
  RUN(test_shipped_targets);
  RUN(test_cpu_target_matches_runtime);
  RUN(test_target_errors);
  RUN(test_unsupported_in_middle);
  RUN(test_limits);
  RUN(test_edges_and_branches);
  RUN(test_caching);
  RUN(test_cocompile_order);
  RUN(test_split_skip_connection);
  RUN(test_bad_options);
  RUN(test_write_outputs);
  RUN(test_allocation_failures);
  return test_summary();
}
