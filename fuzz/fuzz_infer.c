/* fuzz/fuzz_infer.c: the Open Inference Protocol v2 infer request parser of
 * `kiln serve` (serve_infer_parse, which serve_run_infer calls) on a real
 * interpreter's inputs and outputs.
 *
 * Input layout: byte 0 picks the model (bit 0) and the form (bit 1);
 *   bit 1 clear: the rest is the JSON body (no Inference-Header-Content-Length);
 *   bit 1 set:   bytes 1-2 are Inference-Header-Content-Length (uint16,
 *                little-endian), the rest is the body: that many bytes of
 *                JSON header, then the binary tensor data.
 * Models (built once per process with the C builder API, outputs "y"):
 *   0: ADD of "a" and "b", FP32 [1,4];
 *   1: ADD of "a" and "b", INT8 [2,2] (scale 0.5, zero point 0). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiln/interp.h"
#include "kiln/model.h"
#include "serve/serve_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static kiln_interp *g_it[2];

static kiln_interp *build(kiln_dtype dt, const int32_t shape[2]) {
  kiln_error err;
  kiln_model *m;
  kiln_interp *it = NULL;
  float scale = 0.5f;
  int32_t zero = 0;
  kiln_quant q = {1, 0, &scale, &zero};
  const kiln_quant *quant = dt == KILN_I8 ? &q : NULL;
  if (kiln_model_new(&m, &err) != KILN_OK) abort();
  int32_t a = kiln_model_add_tensor(m, "a", dt, 2, shape, quant, NULL, &err);
  int32_t b = kiln_model_add_tensor(m, "b", dt, 2, shape, quant, NULL, &err);
  int32_t y = kiln_model_add_tensor(m, "y", dt, 2, shape, quant, NULL, &err);
  kiln_op_options o = {.type = KILN_OPTS_ADD, .new_shape_count = -1};
  int32_t ins[2] = {a, b};
  if (a < 0 || b < 0 || y < 0 || kiln_model_add_op(m, KILN_OP_ADD, NULL, ins, 2, &y, 1, &o, NULL, 0, &err) < 0 ||
      kiln_model_set_io(m, ins, 2, &y, 1, &err) != KILN_OK || kiln_interp_create(m, NULL, &it, &err) != KILN_OK) {
    fprintf(stderr, "fuzz_infer: building the %s model: %s\n", kiln_dtype_name(dt), err.msg);
    abort();
  }
  return it; /* the model stays alive with the interpreter for the process */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!g_it[0]) {
    g_it[0] = build(KILN_F32, (const int32_t[2]){1, 4});
    g_it[1] = build(KILN_I8, (const int32_t[2]){2, 2});
  }
  if (size < 1) return 0;
  kiln_interp *it = g_it[data[0] & 1];
  int64_t header_len = -1;
  size_t skip = 1;
  if (data[0] & 2) {
    if (size < 3) return 0;
    header_len = data[1] | (int64_t)data[2] << 8;
    skip = 3;
  }
  serve_infer_plan plan;
  serve_response resp = {0};
  if (serve_infer_parse(it, "m", data + skip, size - skip, header_len, &plan, &resp)) {
    if (!plan.root || plan.n_out < 1 || plan.n_out > kiln_interp_output_count(it) || resp.body) abort();
    for (int32_t k = 0; k < plan.n_out; k++)
      if (plan.picks[k].index < 0 || plan.picks[k].index >= kiln_interp_output_count(it)) abort();
    json_decref(plan.root);
  } else if (resp.status != 400 || !resp.body || !strstr(resp.body, "\"error\"")) {
    abort(); /* a refused request always gets a 400 saying why */
  }
  serve_response_clear(&resp);
  return 0;
}
