/*
 * The edge compiler on a real model: the shared float SSD MobileNet V2,
 * with TFLite_Detection_PostProcess appended, quantized to int8 by kiln
 * (random calibration inputs, so no photos are needed), compiled for the
 * Edge TPU over USB 3: every op mapped but the output-edge DEQUANTIZEs and
 * the post-processing; on-chip + off-chip == the mapped ops' parameters.
 * Co-compiled with a second int8 model that does not fit the remaining
 * memory, in both orders; and split into segments that, run one after the
 * other in kiln, give the whole model's int8 outputs bit for bit.
 */
#include <jansson.h>

#include "compile/compile_int.h"
#include "kiln/detect.h"
#include "kiln/quant.h"
#include "test_compile_util.h"

/* The shared float SSD, optionally with post-processing, quantized. */
static kiln_model *int8_ssd(bool postprocess, kiln_dtype io) {
  kiln_model *f = NULL, *q8 = NULL;
  kiln_quantizer *q = NULL;
  kiln_error err;
  float *x = NULL;
  if (kiln_model_load(test_model_path("ssd_mobilenet_v2_oidv4_fp16.tflite"), &f, &err) != KILN_OK) goto fail;
  if (postprocess) {
    kiln_detect_config cfg = kiln_detect_config_default300();
    if (kiln_detect_add_postprocess(f, &cfg, &err) != KILN_OK) goto fail;
  }
  kiln_quant_options opt = kiln_quant_options_default();
  opt.io_dtype = io;
  if (kiln_quantizer_create(f, &opt, &q, &err) != KILN_OK) goto fail;
  const int64_t n = kiln_tensor_elements(&f->tensors[f->inputs[0]]);
  x = malloc((size_t)n * sizeof *x);
  test_rng rng = {11};
  for (int s = 0; s < 2; s++) {
    for (int64_t i = 0; i < n; i++) x[i] = test_rand_float(&rng, -1.0f, 1.0f);
    const float *inputs[1] = {x};
    if (kiln_quantizer_add_inputs(q, inputs, &err) != KILN_OK) goto fail;
  }
  if (kiln_quantizer_finish(q, &q8, &err) != KILN_OK) goto fail;
  goto done;
fail:
  fprintf(stderr, "int8 SSD: %s\n", err.msg);
done:
  free(x);
  kiln_quantizer_free(q);
  kiln_model_free(f);
  return q8;
}

static char dir[64];
static char ssd_pp[256], ssd_raw[256];

static void test_ssd_edgetpu(void) {
  kiln_target *t = cu_target("edgetpu-usb3");
  REQUIRE(t && ssd_pp[0]);
  const char *paths[] = {ssd_pp};
  kiln_compile_result *r = NULL;
  kiln_error err;
  REQUIRE(kiln_compile(paths, 1, t, NULL, &r, &err) == KILN_OK);
  const kiln_compiled_model *cm = &r->models[0];
  int dequantize = 0, post = 0;
  for (int32_t i = 0; i < cm->n_ops; i++) {
    const kiln_compiled_op *op = &cm->ops[i];
    if (strcmp(op->type, "DEQUANTIZE") == 0) {
      dequantize++;
      CHECK(!op->on_device && strcmp(op->status, STATUS_DTYPE) == 0);
    } else if (strcmp(op->type, "TFLite_Detection_PostProcess") == 0) {
      post++;
      CHECK(!op->on_device && strcmp(op->status, STATUS_DTYPE) == 0 && strstr(op->reason, "always runs on the CPU"));
      CHECK(i == cm->n_ops - 1 && op->param_bytes > 0); /* its anchors */
    } else {
      CHECK_MSG(op->on_device, "op %d %s: %s: %s", (int)i, op->type, op->status, op->reason);
    }
  }
  CHECK(dequantize == 2 && post == 1);
  CHECK(cm->device_ops == cm->n_ops - 3 && cm->cpu_ops == 3 && cm->subgraphs == 1);
  CHECK(strcmp(cm->ops[cm->first_cpu_op].type, "DEQUANTIZE") == 0);
  /* About 4.8 MiB of parameters: all cached in 7 MiB, nothing streamed. */
  CHECK(cm->device_param_bytes > 4 * 1024 * 1024 && cm->on_chip_bytes == cm->device_param_bytes);
  CHECK(cm->off_chip_bytes == 0 && r->on_chip_remaining == 7340032 - cm->on_chip_bytes);
  CHECK(cm->cpu_param_bytes == cm->ops[cm->n_ops - 1].param_bytes);
  cu_check_invariants(cm);
  CHECK(cm->latency_seconds > 1e-3 && cm->latency_seconds < 20e-3);
  /* Over USB 2 the image costs ~8 ms more; PCIe is the fastest link. */
  double lat[3];
  const char *links[] = {"edgetpu-usb2", "edgetpu-usb3", "edgetpu-pcie"};
  for (int i = 0; i < 3; i++) {
    kiln_target *lt = cu_target(links[i]);
    kiln_compile_result *lr = NULL;
    REQUIRE(lt && kiln_compile(paths, 1, lt, NULL, &lr, &err) == KILN_OK);
    lat[i] = lr->models[0].latency_seconds;
    CHECK(lr->models[0].device_ops == cm->device_ops && lr->models[0].on_chip_bytes == cm->on_chip_bytes);
    kiln_compile_free(lr);
    kiln_target_free(lt);
  }
  CHECK(lat[0] > lat[1] + 5e-3 && lat[1] > lat[2]);
  kiln_compile_free(r);
  kiln_target_free(t);
}

/* Float inputs and outputs: the QUANTIZE at the input edge also runs on
 * the CPU without cutting the graph. */
static void test_ssd_float_io(void) {
  kiln_model *m = int8_ssd(true, KILN_F32);
  REQUIRE(m);
  const char *path = cu_save(m, dir, "ssd_float_io", 2);
  kiln_target *t = cu_target("edgetpu-usb3");
  REQUIRE(t);
  kiln_compile_result *r = NULL;
  kiln_error err;
  REQUIRE(kiln_compile(&path, 1, t, NULL, &r, &err) == KILN_OK);
  const kiln_compiled_model *cm = &r->models[0];
  CHECK(strcmp(cm->ops[0].type, "QUANTIZE") == 0 && !cm->ops[0].on_device);
  CHECK(strcmp(cm->ops[0].status, STATUS_UNSPECIFIED) == 0);
  CHECK(cm->device_ops == cm->n_ops - 4 && cm->ops[1].on_device);
  cu_check_invariants(cm);
  kiln_compile_free(r);
  kiln_target_free(t);
}

/* On-chip bytes of the longest prefix of the device ops that fits. */
static int64_t prefix_fit(const kiln_compiled_model *cm, int64_t budget) {
  int64_t used = 0;
  for (int32_t i = 0; i < cm->n_ops; i++) {
    if (!cm->ops[i].on_device) continue;
    if (used + cm->ops[i].param_bytes > budget) break;
    used += cm->ops[i].param_bytes;
  }
  return used;
}

static void test_cocompile_with_ssd(void) {
  const int32_t outs[] = {2048, 1536}; /* two ~3 MiB layers */
  char big[256];
  snprintf(big, sizeof big, "%s", cu_save(cu_fc_chain(1536, outs, 2, 9), dir, "big", 3));
  kiln_target *t = cu_target("edgetpu-usb3");
  REQUIRE(t);
  kiln_compile_result *sb = NULL, *bs = NULL;
  kiln_error err;
  const char *order1[] = {ssd_pp, big}, *order2[] = {big, ssd_pp};
  REQUIRE(kiln_compile(order1, 2, t, NULL, &sb, &err) == KILN_OK);
  REQUIRE(kiln_compile(order2, 2, t, NULL, &bs, &err) == KILN_OK);
  const kiln_compiled_model *ssd1 = &sb->models[0], *big2 = &sb->models[1];
  const kiln_compiled_model *big1 = &bs->models[0], *ssd2 = &bs->models[1];
  const int64_t budget = 7340032;
  /* First in line: cached whole. Second: what is left, as a prefix. */
  CHECK(ssd1->on_chip_bytes == ssd1->device_param_bytes && big1->on_chip_bytes == big1->device_param_bytes);
  CHECK(big2->on_chip_bytes == prefix_fit(big2, budget - ssd1->on_chip_bytes));
  CHECK(ssd2->on_chip_bytes == prefix_fit(ssd2, budget - big1->on_chip_bytes));
  /* The order matters: each model gets more cached when it comes first. */
  CHECK_MSG(ssd1->on_chip_bytes > ssd2->on_chip_bytes && big1->on_chip_bytes > big2->on_chip_bytes,
            "ssd %lld vs %lld, big %lld vs %lld", (long long)ssd1->on_chip_bytes, (long long)ssd2->on_chip_bytes,
            (long long)big1->on_chip_bytes, (long long)big2->on_chip_bytes);
  CHECK(ssd2->off_chip_bytes > 0 && big2->off_chip_bytes > 0);
  CHECK(sb->on_chip_used <= budget && bs->on_chip_used <= budget);
  for (int i = 0; i < 2; i++) {
    cu_check_invariants(&sb->models[i]);
    cu_check_invariants(&bs->models[i]);
  }
  /* Streaming costs time: the SSD is slower when it comes second. */
  CHECK(ssd2->latency_seconds > ssd1->latency_seconds);
  CHECK(sb->models[0].caching_token == sb->models[1].caching_token);
  char *json = kiln_compile_report_json(sb);
  REQUIRE(json);
  json_t *j = json_loads(json, 0, NULL);
  CHECK(j && json_is_true(json_object_get(j, "co_compiled")) && json_array_size(json_object_get(j, "models")) == 2);
  json_decref(j);
  kiln_free(json);
  kiln_compile_free(sb);
  kiln_compile_free(bs);
  kiln_target_free(t);
}

/* The raw-output int8 SSD in 3 segments (by parameter size) and in 2 (at a
 * named tensor): run in sequence in kiln, the outputs equal the whole
 * model's bit for bit. */
static void test_ssd_segments(void) {
  kiln_target *t = cu_target("edgetpu-usb3");
  REQUIRE(t && ssd_raw[0]);
  kiln_model *whole = NULL;
  kiln_error err;
  REQUIRE(kiln_model_load(ssd_raw, &whole, &err) == KILN_OK);
  const kiln_tensor *in = &whole->tensors[whole->inputs[0]];
  size_t in_bytes = kiln_tensor_bytes(in);
  int8_t *x = malloc(in_bytes);
  test_rng rng = {21};
  for (size_t i = 0; i < in_bytes; i++) x[i] = (int8_t)test_rand_int(&rng, -128, 127);
  cu_outputs ref = {0};
  REQUIRE(cu_run_chain(&whole, 1, x, in_bytes, &ref) == 0);
  CHECK(ref.n == 2);

  const char *cut_name = whole->tensors[whole->ops[30].outputs[0]].name;
  const char *names[] = {cut_name};
  kiln_compile_options by_params = {.num_segments = 3}, by_name = {.intermediate_tensors = names,
                                                                   .n_intermediate_tensors = 1};
  const kiln_compile_options *opts[] = {&by_params, &by_name};
  for (int v = 0; v < 2; v++) {
    kiln_compile_result *r = NULL;
    REQUIRE(kiln_compile((const char *[]){ssd_raw}, 1, t, opts[v], &r, &err) == KILN_OK);
    const int n = v == 0 ? 3 : 2;
    REQUIRE(r->n_models == n && r->segments == n);
    kiln_model *segs[3];
    int64_t total = 0, largest_op = 0;
    for (int k = 0; k < n; k++) {
      segs[k] = r->models[k].model;
      total += r->models[k].param_bytes;
      for (int32_t i = 0; i < r->models[k].n_ops; i++)
        if (r->models[k].ops[i].param_bytes > largest_op) largest_op = r->models[k].ops[i].param_bytes;
      cu_check_invariants(&r->models[k]);
      CHECK(r->models[k].device_ops == r->models[k].n_ops);
    }
    if (v == 0) {
      /* Roughly equal: each within one layer of a third. */
      for (int k = 0; k < n; k++)
        CHECK_MSG(llabs(r->models[k].param_bytes - total / 3) <= largest_op, "segment %d: %lld of %lld", k,
                  (long long)r->models[k].param_bytes, (long long)total);
    } else {
      CHECK(r->models[0].n_ops == 31);
    }
    cu_outputs chained = {0};
    REQUIRE(cu_run_chain(segs, n, x, in_bytes, &chained) == 0);
    CHECK_MSG(cu_outputs_equal(&ref, &chained), "%d segments differ from the whole model", n);
    cu_outputs_free(&chained);
    CHECK(r->set_fps > 1.0 / r->set_latency_seconds); /* pipelined throughput */
    kiln_compile_free(r);
  }
  cu_outputs_free(&ref);
  free(x);
  kiln_model_free(whole);
  kiln_target_free(t);
}

int main(void) {
  snprintf(dir, sizeof dir, "%s", cu_tmpdir());
  kiln_model *pp = int8_ssd(true, KILN_I8), *raw = int8_ssd(false, KILN_I8);
  if (pp) snprintf(ssd_pp, sizeof ssd_pp, "%s", cu_save(pp, dir, "ssd_pp_int8", 0));
  if (raw) snprintf(ssd_raw, sizeof ssd_raw, "%s", cu_save(raw, dir, "ssd_int8", 1));
  RUN(test_ssd_edgetpu);
  RUN(test_ssd_float_io);
  RUN(test_cocompile_with_ssd);
  RUN(test_ssd_segments);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", dir);
  return test_summary();
}
