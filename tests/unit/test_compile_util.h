/*
 * test_compile_util.h: small int8 models built with the model builder for
 * the compiler's tests (test_compile*.c), and a temporary directory.
 */
#ifndef KILN_TEST_COMPILE_UTIL_H
#define KILN_TEST_COMPILE_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kiln/compile.h"
#include "kiln/interp.h"
#include "kiln/model.h"
#include "testutil.h"

/* The shipped targets directory (tests/data/../../targets). */
static inline const char *cu_targets_dir(void) {
  static char dir[4096];
  snprintf(dir, sizeof dir, "%s", test_data_path("../../targets"));
  return dir;
}

static inline char *cu_tmpdir(void) {
  static char templ[64];
  snprintf(templ, sizeof templ, "/tmp/kiln-compile-XXXXXX");
  return mkdtemp(templ);
}

static inline kiln_target *cu_target(const char *name) {
  kiln_error err;
  kiln_target *t = NULL;
  if (kiln_target_open(cu_targets_dir(), name, &t, &err) != KILN_OK) fprintf(stderr, "target %s: %s\n", name, err.msg);
  return t;
}

static inline int32_t cu_act(kiln_model *m, const char *name, kiln_dtype dt, int rank, const int32_t *shape) {
  float scale = 0.05f;
  int32_t zero = 0;
  kiln_quant q = {1, 0, &scale, &zero};
  kiln_error err;
  return kiln_model_add_tensor(m, name, dt, rank, shape, dt == KILN_F32 ? NULL : &q, NULL, &err);
}

/* Random int8 weights [o, ...] and int32 biases [o]. */
static inline int32_t cu_weights(kiln_model *m, const char *name, int rank, const int32_t *shape, test_rng *rng) {
  int64_t n = 1;
  for (int i = 0; i < rank; i++) n *= shape[i];
  int8_t *w = malloc((size_t)n);
  for (int64_t i = 0; i < n; i++) w[i] = (int8_t)test_rand_int(rng, -127, 127);
  float s = 0.01f;
  int32_t z = 0;
  kiln_quant q = {1, 0, &s, &z};
  kiln_error err;
  int32_t t = kiln_model_add_tensor(m, name, KILN_I8, rank, shape, &q, w, &err);
  free(w);
  return t;
}

static inline int32_t cu_bias(kiln_model *m, const char *name, int32_t n, test_rng *rng) {
  int32_t *b = malloc((size_t)n * sizeof *b);
  for (int32_t i = 0; i < n; i++) b[i] = test_rand_int(rng, -1000, 1000);
  float s = 0.05f * 0.01f;
  int32_t z = 0;
  kiln_quant q = {1, 0, &s, &z};
  kiln_error err;
  int32_t t = kiln_model_add_tensor(m, name, KILN_I32, 1, (int32_t[]){n}, &q, b, &err);
  free(b);
  return t;
}

/* 3x3 SAME conv, stride 1, on an NHWC int8 tensor [1,h,w,cin]. */
static inline int32_t cu_conv(kiln_model *m, int32_t in, int32_t h, int32_t w, int32_t cin, int32_t cout, const char *name,
                       test_rng *rng) {
  char buf[96];
  snprintf(buf, sizeof buf, "%s/weights", name);
  int32_t wt = cu_weights(m, buf, 4, (int32_t[]){cout, 3, 3, cin}, rng);
  snprintf(buf, sizeof buf, "%s/bias", name);
  int32_t b = cu_bias(m, buf, cout, rng);
  int32_t out = cu_act(m, name, KILN_I8, 4, (int32_t[]){1, h, w, cout});
  kiln_op_options o = {.type = KILN_OPTS_CONV2D, .padding = KILN_PAD_SAME, .stride_w = 1, .stride_h = 1,
                       .dilation_w = 1, .dilation_h = 1, .new_shape_count = -1};
  kiln_error err;
  kiln_model_add_op(m, KILN_OP_CONV_2D, NULL, (int32_t[]){in, wt, b}, 3, &out, 1, &o, NULL, 0, &err);
  return out;
}

/* Fully connected [1,in_f] -> [1,out_f]. */
static inline int32_t cu_fc(kiln_model *m, int32_t in, int32_t in_f, int32_t out_f, const char *name, test_rng *rng) {
  char buf[96];
  snprintf(buf, sizeof buf, "%s/weights", name);
  int32_t wt = cu_weights(m, buf, 2, (int32_t[]){out_f, in_f}, rng);
  snprintf(buf, sizeof buf, "%s/bias", name);
  int32_t b = cu_bias(m, buf, out_f, rng);
  int32_t out = cu_act(m, name, KILN_I8, 2, (int32_t[]){1, out_f});
  kiln_op_options o = {.type = KILN_OPTS_FULLY_CONNECTED, .new_shape_count = -1};
  kiln_error err;
  kiln_model_add_op(m, KILN_OP_FULLY_CONNECTED, NULL, (int32_t[]){in, wt, b}, 3, &out, 1, &o, NULL, 0, &err);
  return out;
}

/* A one-input elementwise op (HARD_SWISH, LEAKY_RELU, RELU, LOGISTIC). */
static inline int32_t cu_unary(kiln_model *m, int32_t code, int32_t in, const char *name) {
  const kiln_tensor t = m->tensors[in]; /* a copy: adding a tensor may move the array */
  int32_t out = cu_act(m, name, t.dtype, t.rank, t.shape);
  kiln_op_options o = {.new_shape_count = -1};
  if (code == KILN_OP_LEAKY_RELU) {
    o.type = KILN_OPTS_LEAKY_RELU;
    o.alpha = 0.1f;
  } else if (code == KILN_OP_HARD_SWISH) {
    o.type = KILN_OPTS_HARD_SWISH;
  }
  kiln_error err;
  kiln_model_add_op(m, code, NULL, &in, 1, &out, 1, &o, NULL, 0, &err);
  return out;
}

/* Saves m to dir/name.tflite (static path buffer per slot) and frees it. */
static inline const char *cu_save(kiln_model *m, const char *dir, const char *name, int slot) {
  static char paths[4][4200];
  snprintf(paths[slot], sizeof paths[slot], "%s/%s.tflite", dir, name);
  kiln_error err;
  if (kiln_model_save(m, paths[slot], &err) != KILN_OK) fprintf(stderr, "save %s: %s\n", name, err.msg);
  kiln_model_free(m);
  return paths[slot];
}

/* A chain of FC layers [1,width] -> ... with the given output widths. */
static inline kiln_model *cu_fc_chain(int32_t width, const int32_t *outs, int n, uint64_t seed) {
  kiln_model *m;
  kiln_error err;
  if (kiln_model_new(&m, &err) != KILN_OK) return NULL;
  test_rng rng = {seed};
  int32_t in = cu_act(m, "input", KILN_I8, 2, (int32_t[]){1, width});
  int32_t x = in, w = width;
  for (int i = 0; i < n; i++) {
    char name[32];
    snprintf(name, sizeof name, "fc%d", i);
    x = cu_fc(m, x, w, outs[i], name, &rng);
    w = outs[i];
  }
  kiln_model_set_io(m, &in, 1, &x, 1, &err);
  return m;
}

static inline int64_t cu_sum_params(const kiln_compiled_model *cm, bool on_device) {
  int64_t s = 0;
  for (int32_t i = 0; i < cm->n_ops; i++)
    if (cm->ops[i].on_device == on_device) s += cm->ops[i].param_bytes;
  return s;
}

/* The invariants every compiled model must satisfy. */
static inline void cu_check_invariants(const kiln_compiled_model *cm) {
  int64_t on = 0, off = 0;
  for (int32_t i = 0; i < cm->n_ops; i++) {
    const kiln_compiled_op *op = &cm->ops[i];
    CHECK(op->on_chip_bytes + op->off_chip_bytes == (op->on_device ? op->param_bytes : 0));
    on += op->on_chip_bytes;
    off += op->off_chip_bytes;
  }
  CHECK(on == cm->on_chip_bytes && off == cm->off_chip_bytes);
  CHECK_MSG(cm->on_chip_bytes + cm->off_chip_bytes == cm->device_param_bytes, "%lld + %lld != %lld",
            (long long)cm->on_chip_bytes, (long long)cm->off_chip_bytes, (long long)cm->device_param_bytes);
  CHECK(cm->device_param_bytes == cu_sum_params(cm, true));
  CHECK(cm->cpu_param_bytes == cu_sum_params(cm, false));
  int64_t params, bytes;
  kiln_model_param_stats(cm->model, &params, &bytes);
  CHECK_MSG(cm->device_param_bytes + cm->cpu_param_bytes + cm->unused_param_bytes == bytes, "%lld + %lld + %lld != %lld",
            (long long)cm->device_param_bytes, (long long)cm->cpu_param_bytes, (long long)cm->unused_param_bytes,
            (long long)bytes);
  CHECK(cm->param_bytes == bytes);
  CHECK(cm->device_ops + cm->cpu_ops == cm->n_ops);
}

/* Named tensors passed between models. */
typedef struct cu_outputs {
  int n;
  char names[32][1024];
  void *data[32];
  size_t bytes[32];
} cu_outputs;

static inline void cu_outputs_free(cu_outputs *o) {
  for (int i = 0; i < o->n; i++) free(o->data[i]);
  o->n = 0;
}

static inline bool cu_outputs_equal(const cu_outputs *a, const cu_outputs *b) {
  if (a->n != b->n || a->n == 0) return false;
  for (int i = 0; i < a->n; i++)
    if (strcmp(a->names[i], b->names[i]) != 0 || a->bytes[i] != b->bytes[i] ||
        memcmp(a->data[i], b->data[i], a->bytes[i]) != 0)
      return false;
  return true;
}

/* Runs models in sequence in kiln, each one's inputs taken by name from the
 * previous one's outputs (the first gets `input`); fills out with the last
 * model's outputs. 0 on success. */
static inline int cu_run_chain(kiln_model **models, int n, const void *input, size_t in_bytes, cu_outputs *out) {
  cu_outputs cur = {0};
  snprintf(cur.names[0], sizeof cur.names[0], "%s", models[0]->tensors[models[0]->inputs[0]].name);
  cur.data[0] = malloc(in_bytes);
  memcpy(cur.data[0], input, in_bytes);
  cur.bytes[0] = in_bytes;
  cur.n = 1;
  kiln_error err;
  for (int s = 0; s < n; s++) {
    kiln_interp *it;
    if (kiln_interp_create(models[s], NULL, &it, &err) != KILN_OK) {
      fprintf(stderr, "model %d of the chain: %s\n", s, err.msg);
      cu_outputs_free(&cur);
      return -1;
    }
    for (int32_t i = 0; i < kiln_interp_input_count(it); i++) {
      kiln_tensor_view v = kiln_interp_input(it, i);
      int k = 0;
      while (k < cur.n && strcmp(cur.names[k], v.name) != 0) k++;
      if (k == cur.n || cur.bytes[k] != v.bytes) {
        fprintf(stderr, "model %d of the chain: input '%s' not among the previous outputs\n", s, v.name);
        kiln_interp_free(it);
        cu_outputs_free(&cur);
        return -1;
      }
      memcpy(v.data, cur.data[k], v.bytes);
    }
    kiln_status st = kiln_interp_invoke(it, &err);
    cu_outputs_free(&cur);
    cur.n = kiln_interp_output_count(it) < 32 ? kiln_interp_output_count(it) : 32;
    for (int i = 0; i < cur.n; i++) {
      kiln_tensor_view v = kiln_interp_output(it, i);
      snprintf(cur.names[i], sizeof cur.names[i], "%s", v.name);
      cur.data[i] = malloc(v.bytes ? v.bytes : 1);
      memcpy(cur.data[i], v.data, v.bytes);
      cur.bytes[i] = v.bytes;
    }
    kiln_interp_free(it);
    if (st != KILN_OK) {
      cu_outputs_free(&cur);
      return -1;
    }
  }
  *out = cur;
  return 0;
}

#endif
