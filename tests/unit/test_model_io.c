/*
 * Tests of the TFLite reader and writer: read -> write -> read gives the same
 * graph for every shared model and for a built model using every option
 * table kiln writes; every prefix of a small model and random byte flips of
 * real models are refused (or read) cleanly, never crash (run under ASan).
 */
#include <stdlib.h>
#include <string.h>

#include "base/file.h"
#include "kiln/model.h"
#include "testutil.h"

static bool same_quant(const kiln_quant *a, const kiln_quant *b) {
  if (a->count != b->count) return false;
  if (a->count == 0) return true;
  if (a->count > 1 && a->axis != b->axis) return false;
  return memcmp(a->scale, b->scale, (size_t)a->count * sizeof(float)) == 0 &&
         memcmp(a->zero_point, b->zero_point, (size_t)a->count * sizeof(int32_t)) == 0;
}

/* Compares two graphs field by field; reports the first difference. */
static bool same_graph(const kiln_model *a, const kiln_model *b) {
  if (a->n_tensors != b->n_tensors || a->n_ops != b->n_ops || a->n_inputs != b->n_inputs ||
      a->n_outputs != b->n_outputs || a->n_metadata != b->n_metadata) {
    fprintf(stderr, "counts differ\n");
    return false;
  }
  if (strcmp(a->description, b->description) != 0) return false;
  for (int32_t i = 0; i < a->n_tensors; i++) {
    const kiln_tensor *x = &a->tensors[i], *y = &b->tensors[i];
    bool ok = strcmp(x->name, y->name) == 0 && x->dtype == y->dtype && x->rank == y->rank &&
              memcmp(x->shape, y->shape, (size_t)x->rank * sizeof(int32_t)) == 0 &&
              same_quant(&x->quant, &y->quant) && x->data_bytes == y->data_bytes &&
              (!x->data) == (!y->data) && x->flags == y->flags &&
              (!x->data || memcmp(x->data, y->data, x->data_bytes) == 0);
    if (!ok) {
      fprintf(stderr, "tensor %d '%s' differs\n", (int)i, x->name);
      return false;
    }
  }
  for (int32_t i = 0; i < a->n_ops; i++) {
    const kiln_op *x = &a->ops[i], *y = &b->ops[i];
    bool ok = x->code == y->code && x->version == y->version && x->n_inputs == y->n_inputs &&
              x->n_outputs == y->n_outputs &&
              memcmp(x->inputs, y->inputs, (size_t)x->n_inputs * 4) == 0 &&
              memcmp(x->outputs, y->outputs, (size_t)x->n_outputs * 4) == 0 &&
              memcmp(&x->options, &y->options, sizeof x->options) == 0 &&
              (!x->custom_code) == (!y->custom_code) &&
              (!x->custom_code || strcmp(x->custom_code, y->custom_code) == 0) &&
              x->custom_options_bytes == y->custom_options_bytes &&
              (!x->custom_options_bytes ||
               memcmp(x->custom_options, y->custom_options, x->custom_options_bytes) == 0);
    if (!ok) {
      fprintf(stderr, "op %d (%s) differs\n", (int)i, kiln_opcode_name(x->code));
      return false;
    }
  }
  for (int32_t i = 0; i < a->n_inputs; i++)
    if (a->inputs[i] != b->inputs[i]) return false;
  for (int32_t i = 0; i < a->n_outputs; i++)
    if (a->outputs[i] != b->outputs[i]) return false;
  for (int32_t i = 0; i < a->n_metadata; i++) {
    if (strcmp(a->metadata[i].name, b->metadata[i].name) != 0 ||
        a->metadata[i].bytes != b->metadata[i].bytes ||
        memcmp(a->metadata[i].data, b->metadata[i].data, a->metadata[i].bytes) != 0)
      return false;
  }
  return true;
}

/* Serializes m, parses the bytes back and compares. */
static void check_round_trip(const kiln_model *m, const char *what) {
  kiln_error err;
  uint8_t *bytes;
  size_t size;
  kiln_status s = kiln_model_serialize(m, &bytes, &size, &err);
  CHECK_MSG(s == KILN_OK, "%s: serialize: %s", what, err.msg);
  if (s != KILN_OK) return;
  CHECK(size > 8 && memcmp(bytes + 4, "TFL3", 4) == 0);
  kiln_model *back;
  s = kiln_model_parse(bytes, size, true, what, &back, &err);
  CHECK_MSG(s == KILN_OK, "%s: parse back: %s", what, err.msg);
  if (s == KILN_OK) {
    CHECK_MSG(same_graph(m, back), "%s: graph changed in round trip", what);
    kiln_model_free(back);
  }
  kiln_free(bytes);
}

static const char *shared_models[] = {
    "ssd_mobilenet_v2_oidv4_fp16.tflite", "face_detection_short_range.tflite",
    "face_detection_full_range.tflite",   "palm_detection_lite.tflite",
    "hand_landmark_lite.tflite",          "selfie_segmentation.tflite",
};

static void test_shared_models_round_trip(void) {
  for (size_t k = 0; k < sizeof shared_models / sizeof shared_models[0]; k++) {
    const char *path = test_model_path(shared_models[k]);
    kiln_mapped_file f;
    kiln_error err;
    REQUIRE(kiln_file_map(path, &f, &err) == KILN_OK);
    kiln_model *m;
    kiln_status s = kiln_model_parse(f.data, f.size, false, path, &m, &err);
    CHECK_MSG(s == KILN_OK, "%s", err.msg);
    if (s == KILN_OK) {
      CHECK(m->n_ops > 0 && m->n_inputs == 1 && m->n_outputs >= 1);
      check_round_trip(m, shared_models[k]); /* as read: fp16 weights, DEQUANTIZE ops */
      CHECK(kiln_model_simplify(m, &err) == KILN_OK);
      for (int32_t i = 0; i < m->n_ops; i++) CHECK(m->ops[i].code != KILN_OP_DEQUANTIZE);
      check_round_trip(m, shared_models[k]); /* simplified: f32 weights */
      kiln_model_free(m);
    }
    kiln_file_unmap(&f);
  }
}

static void test_ssd_simplify(void) {
  kiln_model *m;
  kiln_error err;
  REQUIRE(kiln_model_load(test_model_path("ssd_mobilenet_v2_oidv4_fp16.tflite"), &m, &err) == KILN_OK);
  int conv = 0, dw = 0, dq = 0;
  for (int32_t i = 0; i < m->n_ops; i++) {
    conv += m->ops[i].code == KILN_OP_CONV_2D;
    dw += m->ops[i].code == KILN_OP_DEPTHWISE_CONV_2D;
    dq += m->ops[i].code == KILN_OP_DEQUANTIZE;
  }
  CHECK(conv == 55 && dw == 17 && dq == 0);
  const kiln_tensor *in = &m->tensors[m->inputs[0]];
  CHECK(strcmp(in->name, "normalized_input_image_tensor") == 0);
  CHECK(in->dtype == KILN_F32 && in->rank == 4 && in->shape[1] == 300 && in->shape[3] == 3);
  /* Every conv weight is now a float32 constant. */
  for (int32_t i = 0; i < m->n_ops; i++) {
    if (m->ops[i].code != KILN_OP_CONV_2D) continue;
    const kiln_tensor *w = &m->tensors[m->ops[i].inputs[1]];
    CHECK(w->dtype == KILN_F32 && w->data != NULL && ((uintptr_t)w->data & 15) == 0);
  }
  kiln_model_free(m);
}

/* A small model exercising every option table and feature the writer has. */
static kiln_model *build_small_model(void) {
  kiln_model *m;
  kiln_error err;
  if (kiln_model_new(&m, &err) != KILN_OK) return NULL;
  int32_t s4[4] = {1, 5, 5, 3}, w_shape[4] = {4, 3, 3, 3}, b_shape[1] = {4}, o_shape[4] = {1, 3, 3, 4};
  float scales[4] = {0.01f, 0.02f, 1e-6f, 1.0f};
  int32_t zps[4] = {0, 0, 0, 0};
  kiln_quant in_q = {1, 0, (float[]){0.05f}, (int32_t[]){-128}};
  kiln_quant w_q = {4, 0, scales, zps};
  int8_t w[108];
  for (int i = 0; i < 108; i++) w[i] = (int8_t)(i * 7 - 100);
  int32_t bias[4] = {1, -2, 300, -40000};
  int32_t in = kiln_model_add_tensor(m, "input/x", KILN_I8, 4, s4, &in_q, NULL, &err);
  int32_t wt = kiln_model_add_tensor(m, "w", KILN_I8, 4, w_shape, &w_q, w, &err);
  int32_t bt = kiln_model_add_tensor(m, "b", KILN_I32, 1, b_shape, NULL, bias, &err);
  int32_t out = kiln_model_add_tensor(m, "conv", KILN_I8, 4, o_shape, &in_q, NULL, &err);
  kiln_op_options conv = {.type = KILN_OPTS_CONV2D, .padding = KILN_PAD_VALID, .stride_w = 2,
                          .stride_h = 1, .dilation_w = 1, .dilation_h = 2,
                          .activation = KILN_ACT_RELU6, .new_shape_count = -1};
  kiln_model_add_op(m, KILN_OP_CONV_2D, NULL, (int32_t[]){in, wt, bt}, 3, &out, 1, &conv, NULL, 0, &err);
  int32_t r_shape[2] = {1, 36};
  int32_t resh = kiln_model_add_tensor(m, "reshaped", KILN_I8, 2, r_shape, &in_q, NULL, &err);
  kiln_op_options ro = {.type = KILN_OPTS_RESHAPE, .new_shape_count = 2, .new_shape = {1, 36}};
  kiln_model_add_op(m, KILN_OP_RESHAPE, NULL, &out, 1, &resh, 1, &ro, NULL, 0, &err);
  int32_t sq = kiln_model_add_tensor(m, "squeezed", KILN_I8, 1, (int32_t[]){36}, &in_q, NULL, &err);
  kiln_op_options so = {.type = KILN_OPTS_SQUEEZE, .squeeze_dims_count = 1, .squeeze_dims = {0},
                        .new_shape_count = -1};
  kiln_model_add_op(m, KILN_OP_SQUEEZE, NULL, &resh, 1, &sq, 1, &so, NULL, 0, &err);
  int32_t sm = kiln_model_add_tensor(m, "softmax", KILN_I8, 1, (int32_t[]){36}, &in_q, NULL, &err);
  kiln_op_options smo = {.type = KILN_OPTS_SOFTMAX, .beta = 0.75f, .new_shape_count = -1};
  kiln_model_add_op(m, KILN_OP_SOFTMAX, NULL, &sq, 1, &sm, 1, &smo, NULL, 0, &err);
  int32_t cu = kiln_model_add_tensor(m, "custom_out", KILN_F32, 1, (int32_t[]){36}, NULL, NULL, &err);
  const uint8_t custom_opts[5] = {1, 2, 3, 4, 5};
  kiln_model_add_op(m, KILN_OP_CUSTOM, "MyCustomOp", (int32_t[]){sm, -1}, 2, &cu, 1, NULL,
                    custom_opts, sizeof custom_opts, &err);
  kiln_model_set_io(m, &in, 1, &cu, 1, &err);
  return m;
}

static void test_built_model_round_trip(void) {
  kiln_model *m = build_small_model();
  REQUIRE(m != NULL);
  REQUIRE(m->n_ops == 5 && m->n_tensors == 8);
  check_round_trip(m, "built");
  kiln_model_free(m);
}

static void test_every_prefix_is_refused(void) {
  kiln_model *m = build_small_model();
  REQUIRE(m != NULL);
  kiln_error err;
  uint8_t *bytes;
  size_t size;
  REQUIRE(kiln_model_serialize(m, &bytes, &size, &err) == KILN_OK);
  kiln_model_free(m);
  int refused = 0;
  for (size_t n = 0; n < size; n++) {
    /* An exact-size heap copy so ASan sees any read past the prefix. */
    uint8_t *prefix = malloc(n ? n : 1);
    memcpy(prefix, bytes, n);
    kiln_model *p;
    kiln_status s = kiln_model_parse(prefix, n, false, "prefix", &p, &err);
    if (s == KILN_OK) {
      kiln_model_free(p);
    } else {
      refused++;
      CHECK(s == KILN_ERR_FORMAT);
      CHECK(strncmp(err.msg, "prefix: ", 8) == 0);
    }
    free(prefix);
  }
  /* Every proper prefix loses the trailing buffers, so all must fail. */
  CHECK_MSG(refused == (int)size, "%d of %zu prefixes refused", refused, size);
  kiln_free(bytes);
}

static void flip_test(const char *path, int flips, uint64_t seed) {
  kiln_mapped_file f;
  kiln_error err;
  if (kiln_file_map(path, &f, &err) != KILN_OK) {
    CHECK_MSG(0, "%s", err.msg);
    return;
  }
  test_rng rng = {seed};
  uint8_t *copy = malloc(f.size);
  int ok = 0, refused = 0;
  for (int k = 0; k < flips; k++) {
    memcpy(copy, f.data, f.size);
    /* Flip 1-4 bytes, biased to the flatbuffer metadata at the front and
     * end where offsets and vtables live. */
    int nflip = test_rand_int(&rng, 1, 4);
    for (int j = 0; j < nflip; j++) {
      size_t pos;
      uint32_t pick = test_rand_u32(&rng) % 3;
      if (pick == 0) pos = test_rand_u32(&rng) % (f.size < 4096 ? f.size : 4096);
      else if (pick == 1) pos = f.size - 1 - test_rand_u32(&rng) % (f.size < 65536 ? f.size : 65536);
      else pos = test_rand_u32(&rng) % f.size;
      copy[pos] ^= (uint8_t)test_rand_int(&rng, 1, 255);
    }
    kiln_model *m;
    kiln_status s = kiln_model_parse(copy, f.size, false, "flipped", &m, &err);
    if (s == KILN_OK) {
      ok++;
      /* Whatever was read must also be safe to simplify and write. */
      if (kiln_model_simplify(m, &err) == KILN_OK) {
        uint8_t *bytes;
        size_t size;
        if (kiln_model_serialize(m, &bytes, &size, &err) == KILN_OK) kiln_free(bytes);
      }
      kiln_model_free(m);
    } else {
      refused++;
      CHECK(err.msg[0] != '\0');
    }
  }
  fprintf(stderr, "  %s: %d flipped copies read, %d refused\n", path, ok, refused);
  CHECK(ok + refused == flips);
  free(copy);
  kiln_file_unmap(&f);
}

static void test_random_byte_flips(void) {
  flip_test(test_model_path("face_detection_short_range.tflite"), 1500, 1);
  flip_test(test_model_path("selfie_segmentation.tflite"), 500, 2);
}

static void test_error_messages(void) {
  kiln_model *m = build_small_model();
  REQUIRE(m != NULL);
  kiln_error err;
  uint8_t *bytes;
  size_t size;
  REQUIRE(kiln_model_serialize(m, &bytes, &size, &err) == KILN_OK);
  kiln_model_free(m);
  /* Point tensor 1's buffer index far away: find the tensor table's buffer
   * field by re-serializing with a patched model instead of guessing bytes. */
  kiln_model *p;
  REQUIRE(kiln_model_parse(bytes, size, true, "small.tflite", &p, &err) == KILN_OK);
  kiln_model_free(p);
  /* Not a flatbuffer at all. */
  const char junk[] = "this is not a model";
  CHECK(kiln_model_parse(junk, sizeof junk, false, "junk.tflite", &p, &err) == KILN_ERR_FORMAT);
  CHECK(strstr(err.msg, "junk.tflite: ") == err.msg);
  /* Missing file. */
  CHECK(kiln_model_load("/nonexistent/model.tflite", &p, &err) == KILN_ERR_IO);
  CHECK(strstr(err.msg, "/nonexistent/model.tflite") != NULL);
  kiln_free(bytes);
}

int main(void) {
  RUN(test_shared_models_round_trip);
  RUN(test_ssd_simplify);
  RUN(test_built_model_round_trip);
  RUN(test_every_prefix_is_refused);
  RUN(test_random_byte_flips);
  RUN(test_error_messages);
  return test_summary();
}
