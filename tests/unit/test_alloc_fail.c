/*
 * test_alloc_fail.c: allocation-failure injection (SQLite's fault
 * simulation). A test allocator installed with kiln_set_allocator fails
 * exactly the Nth allocation (kiln_malloc, kiln_calloc or kiln_realloc) of
 * an operation and counts the blocks still live, and the operation is run
 * once for every N from 1 until it completes without meeting the failure:
 *   - model load (read, validate, simplify) + interpreter create + invoke,
 *     of the shared face_detection_short_range.tflite and of a small model
 *     built here (conv, depthwise, mean, fully connected, softmax);
 *   - quantization of that small model and of face_detection_short_range
 *     (create, calibrate on two random samples, finish, serialize, invoke);
 *   - dataset import of the VOC, COCO, YOLO, AutoML, IDX and class-folder
 *     fixtures in tests/data/datasets and of voc.zip (extraction).
 * Each failing run must return KILN_ERR_NOMEM (or KILN_OK where kiln can do
 * without the memory) and leave no kiln block allocated (checked here, and
 * by LeakSanitizer in the ASan build for memory from other libraries).
 *
 * Cost: every N up to DENSE_LIMIT is tried; past it, about SPARSE_RUNS more
 * N spread evenly to the end, so a large model stays within a few seconds
 * while every early allocation (where the setup and error paths live) is
 * failed once.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kiln/data.h"
#include "kiln/interp.h"
#include "kiln/model.h"
#include "kiln/quant.h"
#include "testutil.h"

#define DENSE_LIMIT 2000
#define SPARSE_RUNS 300

/* ---- the failing allocator ---- */

typedef struct failing {
  atomic_long calls;  /* allocations so far (alloc and realloc) */
  long fail_at;       /* 1-based; 0: never */
  atomic_long failed; /* failures injected */
  atomic_long live;   /* blocks handed out and not yet freed */
} failing;

static bool should_fail(failing *f) {
  long n = atomic_fetch_add(&f->calls, 1) + 1;
  if (n != f->fail_at) return false;
  atomic_fetch_add(&f->failed, 1);
  return true;
}

static void *fail_alloc(size_t bytes, void *ctx) {
  failing *f = ctx;
  if (should_fail(f)) return NULL;
  void *p = malloc(bytes);
  if (p) atomic_fetch_add(&f->live, 1);
  return p;
}

static void *fail_realloc(void *ptr, size_t bytes, void *ctx) {
  failing *f = ctx;
  if (should_fail(f)) return NULL;
  void *p = realloc(ptr, bytes);
  if (p && !ptr) atomic_fetch_add(&f->live, 1);
  return p;
}

static void fail_free(void *ptr, void *ctx) {
  failing *f = ctx;
  atomic_fetch_sub(&f->live, 1);
  free(ptr);
}

/* An operation: everything it allocates it must free before returning. */
typedef kiln_status (*operation)(void *arg, kiln_error *err);

/* Runs op with allocation fail_at failing; fills *f. */
static kiln_status run_once(operation op, void *arg, long fail_at, failing *f, kiln_error *err) {
  atomic_store(&f->calls, 0);
  atomic_store(&f->failed, 0);
  atomic_store(&f->live, 0);
  f->fail_at = fail_at;
  const kiln_allocator a = {fail_alloc, fail_realloc, fail_free, f};
  memset(err, 0, sizeof *err);
  kiln_set_allocator(&a);
  kiln_status s = op(arg, err);
  kiln_set_allocator(NULL);
  return s;
}

/* Fails every allocation of op in turn (see the top of the file); returns
 * the number of allocations a clean run makes. */
static long fail_each(const char *what, operation op, void *arg) {
  failing f;
  kiln_error err;
  kiln_status s = run_once(op, arg, 0, &f, &err);
  CHECK_MSG(s == KILN_OK, "%s: clean run: %s", what, err.msg);
  CHECK_MSG(atomic_load(&f.live) == 0, "%s: clean run leaves %ld blocks", what,
            atomic_load(&f.live));
  const long total = atomic_load(&f.calls);
  if (s != KILN_OK) return 0;
  const long stride = total > DENSE_LIMIT ? (total - DENSE_LIMIT + SPARSE_RUNS - 1) / SPARSE_RUNS : 1;
  long runs = 0, nomem = 0, bad = 0;
  for (long n = 1; n <= total + 1; n += n < DENSE_LIMIT ? 1 : stride) {
    s = run_once(op, arg, n, &f, &err);
    runs++;
    const long live = atomic_load(&f.live);
    if (atomic_load(&f.failed) == 0) {
      /* past the last allocation: the operation completes (allocation
       * counts can vary a little with what failed before, so this can come
       * early only when n > total, never silently) */
      CHECK_MSG(s == KILN_OK && n > total, "%s: run %ld met no failure: %s", what, n, err.msg);
      break;
    }
    if (s == KILN_ERR_NOMEM) nomem++;
    if ((s != KILN_ERR_NOMEM && s != KILN_OK) || live != 0 ||
        (s == KILN_ERR_NOMEM && err.msg[0] == '\0')) {
      if (bad++ < 10)
        fprintf(stderr, "%s: allocation %ld of %ld failed: status %s, %ld blocks left: %s\n", what,
                n, total, kiln_status_str(s), live, err.msg);
    }
  }
  CHECK_MSG(bad == 0, "%s: %ld of %ld failure runs went wrong", what, bad, runs);
  CHECK_MSG(nomem > 0, "%s: no run reported KILN_ERR_NOMEM", what);
  fprintf(stderr, "%s: %ld allocations, %ld failure runs, %ld KILN_ERR_NOMEM\n", what, total, runs,
          nomem);
  return total;
}

/* ---- models ---- */

static kiln_op_options opts(uint8_t type) {
  kiln_op_options o;
  memset(&o, 0, sizeof o);
  o.type = type;
  o.new_shape_count = -1;
  return o;
}

/* [1,8,8,3] -> CONV 3x3 to 8 (RELU6) -> DEPTHWISE 3x3 (RELU) -> MEAN(1,2)
 * -> FULLY_CONNECTED to 4 -> SOFTMAX. */
static kiln_model *small_model(void) {
  kiln_model *m;
  kiln_error err;
  if (kiln_model_new(&m, &err) != KILN_OK) return NULL;
  test_rng r = {7};
  float cw[8 * 3 * 3 * 3], cb[8], dw[3 * 3 * 8], db[8], fw[4 * 8], fb[4];
  for (size_t i = 0; i < sizeof cw / sizeof cw[0]; i++) cw[i] = test_rand_float(&r, -1, 1);
  for (size_t i = 0; i < sizeof dw / sizeof dw[0]; i++) dw[i] = test_rand_float(&r, -1, 1);
  for (size_t i = 0; i < sizeof fw / sizeof fw[0]; i++) fw[i] = test_rand_float(&r, -1, 1);
  for (int i = 0; i < 8; i++) cb[i] = db[i] = test_rand_float(&r, 0, 0.2f);
  for (int i = 0; i < 4; i++) fb[i] = 0.1f * (float)i;
  int32_t t[12];
  t[0] = kiln_model_add_tensor(m, "image", KILN_F32, 4, (int32_t[]){1, 8, 8, 3}, NULL, NULL, &err);
  t[1] = kiln_model_add_tensor(m, "cw", KILN_F32, 4, (int32_t[]){8, 3, 3, 3}, NULL, cw, &err);
  t[2] = kiln_model_add_tensor(m, "cb", KILN_F32, 1, (int32_t[]){8}, NULL, cb, &err);
  t[3] = kiln_model_add_tensor(m, "conv", KILN_F32, 4, (int32_t[]){1, 8, 8, 8}, NULL, NULL, &err);
  t[4] = kiln_model_add_tensor(m, "dw", KILN_F32, 4, (int32_t[]){1, 3, 3, 8}, NULL, dw, &err);
  t[5] = kiln_model_add_tensor(m, "db", KILN_F32, 1, (int32_t[]){8}, NULL, db, &err);
  t[6] = kiln_model_add_tensor(m, "dwconv", KILN_F32, 4, (int32_t[]){1, 8, 8, 8}, NULL, NULL, &err);
  t[7] = kiln_model_add_tensor(m, "axes", KILN_I32, 1, (int32_t[]){2}, NULL, (int32_t[]){1, 2}, &err);
  t[8] = kiln_model_add_tensor(m, "pooled", KILN_F32, 2, (int32_t[]){1, 8}, NULL, NULL, &err);
  t[9] = kiln_model_add_tensor(m, "fw", KILN_F32, 2, (int32_t[]){4, 8}, NULL, fw, &err);
  t[10] = kiln_model_add_tensor(m, "fb", KILN_F32, 1, (int32_t[]){4}, NULL, fb, &err);
  t[11] = kiln_model_add_tensor(m, "logits", KILN_F32, 2, (int32_t[]){1, 4}, NULL, NULL, &err);
  int32_t probs = kiln_model_add_tensor(m, "probs", KILN_F32, 2, (int32_t[]){1, 4}, NULL, NULL, &err);
  kiln_op_options co = opts(KILN_OPTS_CONV2D);
  co.stride_w = co.stride_h = co.dilation_w = co.dilation_h = 1;
  co.padding = KILN_PAD_SAME;
  co.activation = KILN_ACT_RELU6;
  kiln_op_options dwo = opts(KILN_OPTS_DEPTHWISE_CONV2D);
  dwo.stride_w = dwo.stride_h = dwo.dilation_w = dwo.dilation_h = 1;
  dwo.padding = KILN_PAD_SAME;
  dwo.depth_multiplier = 1;
  dwo.activation = KILN_ACT_RELU;
  kiln_op_options mo = opts(KILN_OPTS_REDUCER), fo = opts(KILN_OPTS_FULLY_CONNECTED);
  kiln_op_options so = opts(KILN_OPTS_SOFTMAX);
  so.beta = 1.0f;
  bool ok = probs >= 0;
  for (int i = 0; i < 12; i++) ok = ok && t[i] >= 0;
  ok = ok && kiln_model_add_op(m, KILN_OP_CONV_2D, NULL, (int32_t[]){t[0], t[1], t[2]}, 3, &t[3], 1,
                               &co, NULL, 0, &err) >= 0;
  ok = ok && kiln_model_add_op(m, KILN_OP_DEPTHWISE_CONV_2D, NULL, (int32_t[]){t[3], t[4], t[5]}, 3,
                               &t[6], 1, &dwo, NULL, 0, &err) >= 0;
  ok = ok && kiln_model_add_op(m, KILN_OP_MEAN, NULL, (int32_t[]){t[6], t[7]}, 2, &t[8], 1, &mo,
                               NULL, 0, &err) >= 0;
  ok = ok && kiln_model_add_op(m, KILN_OP_FULLY_CONNECTED, NULL, (int32_t[]){t[8], t[9], t[10]}, 3,
                               &t[11], 1, &fo, NULL, 0, &err) >= 0;
  ok = ok && kiln_model_add_op(m, KILN_OP_SOFTMAX, NULL, &t[11], 1, &probs, 1, &so, NULL, 0,
                               &err) >= 0;
  ok = ok && kiln_model_set_io(m, &t[0], 1, &probs, 1, &err) == KILN_OK;
  if (!ok) {
    fprintf(stderr, "small model: %s\n", err.msg);
    kiln_model_free(m);
    return NULL;
  }
  return m;
}

/* Creates an interpreter on one thread, fills the inputs and invokes. */
static kiln_status create_and_invoke(const kiln_model *m, kiln_error *err) {
  kiln_interp_options io = {.n_threads = 1};
  kiln_interp *it;
  kiln_status s = kiln_interp_create(m, &io, &it, err);
  if (s != KILN_OK) return s;
  for (int32_t i = 0; i < kiln_interp_input_count(it); i++) {
    kiln_tensor_view v = kiln_interp_input(it, i);
    memset(v.data, 0, v.bytes);
  }
  s = kiln_interp_invoke(it, err);
  kiln_interp_free(it);
  return s;
}

static kiln_status op_load_file(void *arg, kiln_error *err) {
  kiln_model *m;
  kiln_status s = kiln_model_load(arg, &m, err);
  if (s != KILN_OK) return s;
  s = create_and_invoke(m, err);
  kiln_model_free(m);
  return s;
}

/* arg: a serialized model; parse (copying), simplify, create, invoke. */
typedef struct blob {
  uint8_t *bytes;
  size_t size;
} blob;

static kiln_status op_parse(void *arg, kiln_error *err) {
  const blob *b = arg;
  kiln_model *m;
  kiln_status s = kiln_model_parse(b->bytes, b->size, true, "small.tflite", &m, err);
  if (s == KILN_OK) s = kiln_model_simplify(m, err);
  if (s == KILN_OK) s = create_and_invoke(m, err);
  kiln_model_free(m);
  return s;
}

/* Calibrates a float model (one input) on two seeded random samples,
 * converts it, serializes the int8 model and runs it once. */
static kiln_status op_quantize(void *arg, kiln_error *err) {
  const kiln_model *fm = arg;
  kiln_quant_options qo = kiln_quant_options_default();
  qo.n_threads = 1;
  kiln_quantizer *q;
  kiln_status s = kiln_quantizer_create(fm, &qo, &q, err);
  if (s != KILN_OK) return s;
  const int64_t n = kiln_tensor_elements(&fm->tensors[fm->inputs[0]]);
  float *input = kiln_malloc((size_t)n * sizeof *input);
  if (!input) s = kiln_fail(err, KILN_ERR_NOMEM, "out of memory for the calibration input");
  test_rng r = {3};
  for (int k = 0; k < 2 && s == KILN_OK; k++) {
    for (int64_t i = 0; i < n; i++) input[i] = test_rand_float(&r, -1, 1);
    const float *inputs[1] = {input};
    s = kiln_quantizer_add_inputs(q, inputs, err);
  }
  kiln_free(input);
  kiln_model *qm = NULL;
  if (s == KILN_OK) s = kiln_quantizer_finish(q, &qm, err);
  kiln_quantizer_free(q);
  uint8_t *bytes = NULL;
  size_t size = 0;
  if (s == KILN_OK) s = kiln_model_serialize(qm, &bytes, &size, err);
  kiln_free(bytes);
  if (s == KILN_OK) s = create_and_invoke(qm, err);
  kiln_model_free(qm);
  return s;
}

static void test_model_load(void) {
  const char *path = test_model_path("face_detection_short_range.tflite");
  struct stat st;
  if (stat(path, &st) == 0) {
    fail_each("load face_detection_short_range", op_load_file, (void *)path);
  } else {
    /* the shared models are part of the test environment: say so loudly */
    CHECK_MSG(false, "%s is missing (set KILN_MODELS)", path);
  }
  kiln_model *m = small_model();
  REQUIRE(m);
  blob b = {NULL, 0};
  kiln_error err;
  kiln_status s = kiln_model_serialize(m, &b.bytes, &b.size, &err);
  kiln_model_free(m);
  REQUIRE(s == KILN_OK);
  fail_each("parse small model", op_parse, &b);
  kiln_free(b.bytes);
}

static void test_quantize(void) {
  kiln_model *m = small_model();
  REQUIRE(m);
  fail_each("quantize small model", op_quantize, m);
  kiln_model_free(m);
  kiln_error err;
  const char *path = test_model_path("face_detection_short_range.tflite");
  struct stat st;
  if (stat(path, &st) != 0) return; /* reported by test_model_load */
  REQUIRE(kiln_model_load(path, &m, &err) == KILN_OK);
  fail_each("quantize face_detection_short_range", op_quantize, m);
  kiln_model_free(m);
}

/* ---- datasets ---- */

static char g_temp[256];

static kiln_status op_import(void *arg, kiln_error *err) {
  kiln_data_options o = kiln_data_options_default();
  o.threads = 1;
  o.temp_dir = g_temp;
  kiln_dataset *ds = NULL;
  kiln_status s = kiln_data_import(arg, &o, &ds, err);
  if (s == KILN_OK) {
    kiln_data_summary sum;
    s = kiln_dataset_summarize(ds, &sum, err);
    if (s == KILN_OK) kiln_data_summary_free(&sum);
  }
  if (s == KILN_OK) {
    char *json = NULL;
    s = kiln_dataset_report_json(ds, &json, err);
    kiln_free(json);
  }
  kiln_dataset_free(ds);
  return s;
}

static void test_dataset_import(void) {
  snprintf(g_temp, sizeof g_temp, "%s/kiln-alloc-fail-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
  REQUIRE(mkdtemp(g_temp));
  static const char *const sets[] = {"voc", "coco", "yolo", "automl", "idx", "folders", "voc.zip"};
  for (size_t i = 0; i < sizeof sets / sizeof sets[0]; i++) {
    char path[512], what[64];
    snprintf(path, sizeof path, "%s", test_data_path("datasets"));
    snprintf(path + strlen(path), sizeof path - strlen(path), "/%s", sets[i]);
    snprintf(what, sizeof what, "import %s", sets[i]);
    fail_each(what, op_import, path);
  }
  CHECK_MSG(rmdir(g_temp) == 0, "%s: extracted archives left behind", g_temp);
}

int main(void) {
  RUN(test_model_load);
  RUN(test_quantize);
  RUN(test_dataset_import);
  return test_summary();
}
