/*
 * CPU bundles (kiln/bundle.h, runtime/bundle*.c): written from .tflite
 * files, opened, and invoked, every output must be bit-identical to
 * kiln_model_load + kiln_interp_create of the same file on the same inputs
 * (int8 and float, the packed weights of every fast path: int8 GEMM conv,
 * dot4 and 5x5 depthwise, int8 FC, float GEMM with half and float panels,
 * float depthwise), alone and co-compiled, invoked in turn on the shared
 * arena; the shared SSD too. The bundle's interpreters must pack nothing
 * (all comes from the file), and the shared arena is the largest own arena.
 * Then damaged bundles: byte flips, truncations, trailing bytes, another
 * version, byte order, architecture or instruction set, and records that
 * are consistent with the checksum but not with the file, must be refused
 * with a message naming the problem, never crash (also under ASan).
 *
 * The process then runs itself again once per other kernel set this CPU
 * has (KILN_ISA_MASK), in the same directory; each run also leaves an int8
 * bundle packed for its kernels, which this process (with every kernel)
 * opens: it must run on the bundle's kernels with the same results.
 */
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kernels/cpu.h"
#include "kiln/bundle.h"
#include "kiln/interp.h"
#include "kiln/model.h"
#include "runtime/bundle_format.h"
#include "runtime/interp_int.h"
#include "testutil.h"

extern char **environ;

static char dir[256];

static const char *tmp_path(int slot, const char *name) {
  static char paths[4][320];
  snprintf(paths[slot], sizeof paths[slot], "%s/%s", dir, name);
  return paths[slot];
}

/* ---- Small models from the builder ---- */

typedef struct net {
  kiln_model *m;
  test_rng rng;
  kiln_error err;
  int bad;
} net;

static int32_t add_tensor(net *n, kiln_dtype dt, int32_t rank, const int32_t *shape,
                          const kiln_quant *q, const void *data) {
  char name[32];
  snprintf(name, sizeof name, "t%d", (int)n->m->n_tensors);
  int32_t t = kiln_model_add_tensor(n->m, name, dt, rank, shape, q, data, &n->err);
  if (t < 0) n->bad++;
  return t;
}

typedef enum kind { CONV, DEPTHWISE, FC } kind;

/* Appends a conv (SAME padding), depthwise (multiplier 1) or FC layer on
 * tensor in, with random weights (float: multiples of 1/256, exact halves,
 * when halves is set) and bias; int8 layers get per-channel weight scales
 * and the output quantization (out_scale, out_zp). Returns the output. */
static int32_t layer(net *n, int32_t in, kind k, int32_t cout, int32_t ksize, int32_t stride,
                     float out_scale, int32_t out_zp, bool halves) {
  const kiln_tensor src = n->m->tensors[in];
  const bool f32 = src.dtype == KILN_F32;
  const int32_t cin = src.shape[src.rank - 1];
  if (k == DEPTHWISE) cout = cin;
  const int32_t depth = k == FC ? (int32_t)kiln_tensor_elements(&src) : ksize * ksize * cin;
  const int32_t per_out = k == DEPTHWISE ? ksize * ksize : depth;
  const size_t n_w = (size_t)cout * (size_t)per_out;
  float *wf = calloc(n_w, sizeof *wf), *bf = calloc((size_t)cout, sizeof *bf);
  int8_t *wq = calloc(n_w, 1);
  int32_t *bq = calloc((size_t)cout, sizeof *bq), *zps = calloc((size_t)cout, sizeof *zps);
  float *ws = calloc((size_t)cout, sizeof *ws), *bs = calloc((size_t)cout, sizeof *bs);
  int32_t out = -1;
  if (!wf || !bf || !wq || !bq || !zps || !ws || !bs) goto done;
  for (size_t i = 0; i < n_w; i++) {
    wq[i] = (int8_t)test_rand_int(&n->rng, -127, 127);
    wf[i] = halves ? (float)test_rand_int(&n->rng, -128, 128) / 256.0f
                   : test_rand_float(&n->rng, -0.5f, 0.5f);
  }
  const float in_scale = f32 ? 1.0f : src.quant.scale[0];
  for (int32_t c = 0; c < cout; c++) {
    ws[c] = test_rand_float(&n->rng, 0.002f, 0.02f);
    bs[c] = in_scale * ws[c];
    bq[c] = test_rand_int(&n->rng, -3000, 3000);
    bf[c] = test_rand_float(&n->rng, -0.2f, 0.2f);
  }
  int32_t wshape[4] = {cout, ksize, ksize, cin}, bshape[1] = {cout}, oshape[4] = {1, 1, 1, 1};
  if (k == DEPTHWISE) wshape[0] = 1, wshape[3] = cout;
  if (k == FC) wshape[1] = depth;
  kiln_quant wqnt = {cout, k == DEPTHWISE ? 3 : 0, ws, zps}, bqnt = {cout, 0, bs, zps};
  kiln_quant oq = {1, 0, &out_scale, &out_zp};
  const int32_t w = add_tensor(n, f32 ? KILN_F32 : KILN_I8, k == FC ? 2 : 4, wshape,
                               f32 ? NULL : &wqnt, f32 ? (void *)wf : (void *)wq);
  const int32_t b = add_tensor(n, f32 ? KILN_F32 : KILN_I32, 1, bshape, f32 ? NULL : &bqnt,
                               f32 ? (void *)bf : (void *)bq);
  if (k == FC) {
    oshape[1] = cout;
    out = add_tensor(n, src.dtype, 2, oshape, f32 ? NULL : &oq, NULL);
  } else {
    oshape[1] = (src.shape[1] + stride - 1) / stride;
    oshape[2] = (src.shape[2] + stride - 1) / stride;
    oshape[3] = cout;
    out = add_tensor(n, src.dtype, 4, oshape, f32 ? NULL : &oq, NULL);
  }
  kiln_op_options o;
  memset(&o, 0, sizeof o);
  o.type = k == CONV ? KILN_OPTS_CONV2D : k == DEPTHWISE ? KILN_OPTS_DEPTHWISE_CONV2D
                                                          : KILN_OPTS_FULLY_CONNECTED;
  o.padding = KILN_PAD_SAME;
  o.stride_w = o.stride_h = stride;
  o.dilation_w = o.dilation_h = 1;
  o.depth_multiplier = 1;
  o.activation = k == FC ? KILN_ACT_NONE : KILN_ACT_RELU6;
  const int32_t code = k == CONV ? KILN_OP_CONV_2D : k == DEPTHWISE ? KILN_OP_DEPTHWISE_CONV_2D
                                                                    : KILN_OP_FULLY_CONNECTED;
  const int32_t ins[3] = {in, w, b};
  if (kiln_model_add_op(n->m, code, NULL, ins, 3, &out, 1, &o, NULL, 0, &n->err) < 0) n->bad++;
done:
  free(wf), free(bf), free(wq), free(bq), free(zps), free(ws), free(bs);
  return out;
}

/* Writes a small model to path: which 0: int8 3x3 conv, dot4 depthwise,
 * 1x1 conv, FC; 1: int8 5x5 stride-2 conv, 5x5 depthwise, FC; 2: float
 * 3x3 conv (half weights), depthwise, 1x1 conv (float weights), FC. */
static bool write_model(int which, const char *path) {
  net n = {NULL, {0x5eed + (uint64_t)which}, {0}, 0};
  if (kiln_model_new(&n.m, &n.err) != KILN_OK) return false;
  const bool f32 = which == 2;
  float in_scale = 0.05f;
  int32_t in_zp = -3;
  kiln_quant iq = {1, 0, &in_scale, &in_zp};
  const int32_t ishape[4] = {1, which == 1 ? 20 : 12, which == 1 ? 20 : 12, which == 1 ? 4 : 8};
  int32_t t = add_tensor(&n, f32 ? KILN_F32 : KILN_I8, 4, ishape, f32 ? NULL : &iq, NULL);
  const int32_t input = t;
  if (which == 0) {
    t = layer(&n, t, CONV, 16, 3, 1, 0.08f, -128, false);
    t = layer(&n, t, DEPTHWISE, 0, 3, 2, 0.06f, -120, false);
    t = layer(&n, t, CONV, 24, 1, 1, 0.1f, 3, false);
    t = layer(&n, t, FC, 10, 0, 0, 0.2f, 0, false);
  } else if (which == 1) {
    t = layer(&n, t, CONV, 12, 5, 2, 0.07f, -100, false);
    t = layer(&n, t, DEPTHWISE, 0, 5, 1, 0.05f, -128, false);
    t = layer(&n, t, FC, 7, 0, 0, 0.3f, 10, false);
  } else {
    t = layer(&n, t, CONV, 16, 3, 1, 0, 0, true);
    t = layer(&n, t, DEPTHWISE, 0, 3, 2, 0, 0, false);
    t = layer(&n, t, CONV, 20, 1, 1, 0, 0, false);
    t = layer(&n, t, FC, 5, 0, 0, 0, 0, true);
  }
  bool ok = n.bad == 0 && kiln_model_set_io(n.m, &input, 1, &t, 1, &n.err) == KILN_OK &&
            kiln_model_save(n.m, path, &n.err) == KILN_OK;
  if (!ok) fprintf(stderr, "building model %d: %s\n", which, n.err.msg);
  kiln_model_free(n.m);
  return ok;
}

/* ---- Running ---- */

static void fill_inputs(kiln_interp *it, uint64_t seed) {
  test_rng r = {seed};
  for (int32_t i = 0; i < kiln_interp_input_count(it); i++) {
    kiln_tensor_view v = kiln_interp_input(it, i);
    const size_t size = kiln_dtype_size(v.dtype), count = size ? v.bytes / size : 0;
    for (size_t k = 0; k < count; k++) {
      if (v.dtype == KILN_F32)
        ((float *)v.data)[k] = test_rand_float(&r, -1.0f, 1.0f);
      else
        memset((uint8_t *)v.data + k * size, (int)test_rand_u32(&r), size);
    }
  }
}

/* Invokes it on inputs from seed and compares its outputs byte for byte
 * with those of ref after the same. */
static bool same_outputs(kiln_interp *ref, kiln_interp *it, uint64_t seed) {
  kiln_error err;
  fill_inputs(ref, seed);
  fill_inputs(it, seed);
  if (kiln_interp_invoke(ref, &err) != KILN_OK || kiln_interp_invoke(it, &err) != KILN_OK)
    return false;
  bool same = kiln_interp_output_count(ref) == kiln_interp_output_count(it);
  for (int32_t i = 0; same && i < kiln_interp_output_count(ref); i++) {
    kiln_tensor_view a = kiln_interp_output(ref, i), b = kiln_interp_output(it, i);
    same = a.bytes == b.bytes && a.dtype == b.dtype && memcmp(a.data, b.data, a.bytes) == 0;
  }
  return same;
}

typedef struct separate {
  kiln_model *m;
  kiln_interp *it;
} separate;

static bool open_separate(const char *path, int32_t threads, separate *s) {
  kiln_error err;
  kiln_interp_options opt = {.n_threads = threads};
  s->it = NULL;
  if (kiln_model_load(path, &s->m, &err) != KILN_OK) return false;
  return kiln_interp_create(s->m, &opt, &s->it, &err) == KILN_OK;
}

static void close_separate(separate *s) {
  kiln_interp_free(s->it);
  kiln_model_free(s->m);
}

/* Writes a bundle of paths, opens it and checks every model against its
 * separate interpreter, invoked in turn (twice round, so each model runs
 * after the others overwrote the shared arena), plus the memory figures. */
static void check_bundle(const char *const *paths, int32_t n, const char *out) {
  kiln_error err;
  kiln_bundle_info info;
  REQUIRE(kiln_bundle_write(paths, n, out, &info, &err) == KILN_OK);
  CHECK(kiln_bundle_detect(out));
  CHECK(!kiln_bundle_detect(paths[0]));
  CHECK(info.n_models == n);
  kiln_bundle *b;
  kiln_interp_options opt = {.n_threads = 2};
  REQUIRE(kiln_bundle_open(out, &opt, &b, &err) == KILN_OK);
  REQUIRE(kiln_bundle_model_count(b) == n);
  CHECK(kiln_bundle_interp(b, n) == NULL && kiln_bundle_interp(b, -1) == NULL);
  kiln_bundle_info opened;
  kiln_bundle_get_info(b, &opened);
  CHECK(memcmp(&opened, &info, sizeof info) == 0);
  separate sep[KILN_BUNDLE_MAX_MODELS];
  size_t max_arena = 0, sum_arena = 0;
  bool all_open = true;
  for (int32_t i = 0; i < n; i++) all_open &= open_separate(paths[i], 1, &sep[i]);
  for (int32_t i = 0; all_open && i < n; i++) {
    const kiln_memory_stats mem = kiln_interp_memory(sep[i].it);
    kiln_interp *it = kiln_bundle_interp(b, i);
    CHECK_MSG(info.models[i].arena_bytes == mem.arena_bytes, "model %d: %zu vs %zu", (int)i,
              info.models[i].arena_bytes, mem.arena_bytes);
    CHECK(kiln_interp_memory(it).arena_bytes == mem.arena_bytes);
    CHECK(info.models[i].packed_bytes > 0);
    /* Everything packed came from the file: the interpreter packed nothing. */
    CHECK(kiln_interp_packed(it) == NULL);
    CHECK(kiln_interp_packed(sep[i].it) != NULL);
    CHECK(strchr(info.models[i].name, '/') == NULL && info.models[i].name[0] != '\0');
    if (mem.arena_bytes > max_arena) max_arena = mem.arena_bytes;
    sum_arena += mem.arena_bytes;
  }
  CHECK(info.shared_arena_bytes == max_arena);
  CHECK(info.sum_arena_bytes == sum_arena);
  CHECK(info.shared_arena_bytes <= info.sum_arena_bytes);
  CHECK(info.saved_bytes == info.sum_arena_bytes - info.shared_arena_bytes);
  CHECK(n == 1 || info.saved_bytes > 0);
  for (int round = 0; all_open && round < 2; round++)
    for (int32_t i = 0; i < n; i++)
      CHECK_MSG(same_outputs(sep[i].it, kiln_bundle_interp(b, i), 100 + (uint64_t)(round * 7 + i)),
                "%s: model %d differs in round %d", out, (int)i, round);
  CHECK(all_open);
  for (int32_t i = 0; i < n; i++) close_separate(&sep[i]);
  kiln_bundle_free(b);
}

static void test_single_models(void) {
  for (int which = 0; which < 3; which++) {
    char name[32];
    snprintf(name, sizeof name, "m%d.tflite", which);
    const char *path = tmp_path(0, name);
    REQUIRE(write_model(which, path));
    const char *paths[1] = {path};
    check_bundle(paths, 1, tmp_path(1, "single.kbundle"));
  }
}

static void test_co_compiled(void) {
  const char *a = tmp_path(0, "m0.tflite"), *b = tmp_path(1, "m1.tflite");
  const char *c = tmp_path(2, "m2.tflite");
  const char *paths[3] = {a, b, c};
  check_bundle(paths, 3, tmp_path(3, "three.kbundle"));
}

static void test_shared_ssd(void) {
  const char *paths[2] = {test_model_path("ssd_mobilenet_v2_oidv4_fp16.tflite"),
                          tmp_path(1, "m0.tflite")};
  check_bundle(paths, 2, tmp_path(2, "ssd.kbundle"));
}

/* force_ref: the bundle's packed data is unused and results equal the
 * reference kernels'. */
static void test_force_ref(void) {
  kiln_error err;
  const char *paths[1] = {tmp_path(0, "m0.tflite")};
  REQUIRE(kiln_bundle_write(paths, 1, tmp_path(1, "ref.kbundle"), NULL, &err) == KILN_OK);
  kiln_interp_options opt = {.n_threads = 1, .force_ref = true};
  kiln_bundle *b;
  REQUIRE(kiln_bundle_open(tmp_path(1, "ref.kbundle"), &opt, &b, &err) == KILN_OK);
  separate sep;
  kiln_error e2;
  REQUIRE(kiln_model_load(paths[0], &sep.m, &e2) == KILN_OK);
  REQUIRE(kiln_interp_create(sep.m, &opt, &sep.it, &e2) == KILN_OK);
  CHECK(kiln_interp_isa(kiln_bundle_interp(b, 0)) == 0);
  CHECK(same_outputs(sep.it, kiln_bundle_interp(b, 0), 9));
  close_separate(&sep);
  kiln_bundle_free(b);
}

static void test_write_errors(void) {
  kiln_error err;
  const char *out = tmp_path(1, "never.kbundle");
  const char *missing[1] = {tmp_path(0, "no-such-model.tflite")};
  CHECK(kiln_bundle_write(missing, 1, out, NULL, &err) == KILN_ERR_IO);
  CHECK(strstr(err.msg, "no-such-model.tflite") != NULL);
  CHECK(kiln_bundle_write(missing, 0, out, NULL, &err) == KILN_ERR_INVALID_ARG);
  /* Not a model at all: the reader's message, and no file written. */
  const char *junk = tmp_path(2, "junk.tflite");
  FILE *f = fopen(junk, "wb");
  REQUIRE(f);
  fputs("definitely not a flatbuffer", f);
  fclose(f);
  const char *bad[1] = {junk};
  CHECK(kiln_bundle_write(bad, 1, out, NULL, &err) == KILN_ERR_FORMAT);
  CHECK(strstr(err.msg, "junk.tflite") != NULL);
  CHECK(access(out, F_OK) != 0);
  kiln_bundle *b;
  CHECK(kiln_bundle_open(tmp_path(3, "absent.kbundle"), NULL, &b, &err) == KILN_ERR_IO);
  CHECK(kiln_bundle_open(junk, NULL, &b, &err) == KILN_ERR_FORMAT && b == NULL);
  CHECK(strstr(err.msg, "not a kiln bundle") != NULL);
}

/* ---- Damaged bundles ---- */

static uint8_t *read_all(const char *path, size_t *size) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  uint8_t *d = n > 0 ? malloc((size_t)n) : NULL;
  if (d && fread(d, 1, (size_t)n, f) != (size_t)n) {
    free(d);
    d = NULL;
  }
  fclose(f);
  *size = (size_t)n;
  return d;
}

static void rehash(uint8_t *d, size_t size) {
  kiln_bundle_header h;
  memcpy(&h, d, sizeof h);
  h.checksum = kiln_bundle_checksum(d, size);
  memcpy(d, &h, sizeof h);
}

/* Writes bytes as a bundle and opens it: returns the status, *msg the
 * message. A success is opened and invoked once too. */
static kiln_status try_open(const uint8_t *d, size_t size, char *msg, size_t cap) {
  const char *path = tmp_path(3, "damaged.kbundle");
  FILE *f = fopen(path, "wb");
  if (!f) return KILN_ERR_INTERNAL;
  if (size) fwrite(d, 1, size, f);
  fclose(f);
  kiln_error err;
  memset(&err, 0, sizeof err);
  kiln_bundle *b = NULL;
  kiln_interp_options opt = {.n_threads = 1};
  kiln_status s = kiln_bundle_open(path, &opt, &b, &err);
  snprintf(msg, cap, "%s", s == KILN_OK ? "" : err.msg);
  if (s == KILN_OK) {
    for (int32_t i = 0; i < kiln_bundle_model_count(b); i++) {
      fill_inputs(kiln_bundle_interp(b, i), 1);
      kiln_interp_invoke(kiln_bundle_interp(b, i), &err);
    }
    kiln_bundle_free(b);
  } else if (strncmp(msg, path, strlen(path)) != 0) {
    fprintf(stderr, "message does not start with the path: %s\n", msg);
    return KILN_ERR_INTERNAL;
  }
  return s;
}

/* The damage must be refused with status want and words in the message. */
static void expect_refused(const uint8_t *d, size_t size, kiln_status want, const char *words,
                           const char *what) {
  char msg[KILN_ERROR_MSG_MAX];
  kiln_status s = try_open(d, size, msg, sizeof msg);
  CHECK_MSG(s == want && strstr(msg, words) != NULL, "%s: status %d, message '%s'", what, (int)s,
            msg);
}

static void test_damaged(void) {
  const char *a = tmp_path(0, "m0.tflite"), *c = tmp_path(1, "m2.tflite");
  const char *paths[2] = {a, c};
  kiln_error err;
  REQUIRE(kiln_bundle_write(paths, 2, tmp_path(2, "good.kbundle"), NULL, &err) == KILN_OK);
  size_t size;
  uint8_t *good = read_all(tmp_path(2, "good.kbundle"), &size);
  REQUIRE(good && size > 4096);
  uint8_t *d = malloc(size + 1);
  REQUIRE(d);
  kiln_bundle_header h;
  memcpy(&h, good, sizeof h);
  char msg[KILN_ERROR_MSG_MAX];
  REQUIRE(try_open(good, size, msg, sizeof msg) == KILN_OK);

  /* Truncations and trailing bytes. */
  const size_t cuts[] = {0, 5, 8, 40, 63, 64, 300, size / 2, size - 1};
  for (size_t k = 0; k < sizeof cuts / sizeof cuts[0]; k++)
    expect_refused(good, cuts[k], KILN_ERR_FORMAT, cuts[k] < 8 ? "not a kiln bundle" : "truncated",
                   "truncated");
  memcpy(d, good, size);
  d[size] = 0;
  expect_refused(d, size + 1, KILN_ERR_FORMAT, "header says", "trailing byte");

  /* Header fields checked before the checksum. */
  memcpy(d, good, size);
  d[0] ^= 0x20;
  expect_refused(d, size, KILN_ERR_FORMAT, "not a kiln bundle", "magic");
  kiln_bundle_header x = h;
  x.version = 7;
  memcpy(d, &x, sizeof x);
  expect_refused(d, size, KILN_ERR_FORMAT, "version 7", "version");
  x = h;
  x.byte_order = 0x04030201u;
  memcpy(d, &x, sizeof x);
  expect_refused(d, size, KILN_ERR_FORMAT, "other byte order", "byte order");

  /* Flips anywhere else: the checksum. */
  test_rng r = {77};
  for (int k = 0; k < 60; k++) {
    memcpy(d, good, size);
    /* Past the checksum and the size (checked first). */
    const size_t at = k == 0 ? size - 1 : 32 + (size_t)test_rand_u32(&r) % (size - 32);
    d[at] ^= (uint8_t)(1u << test_rand_int(&r, 0, 7));
    expect_refused(d, size, KILN_ERR_FORMAT, "checksum", "flip");
  }

  /* Another instruction set or architecture (checksum made right). */
  const uint32_t lacking = KILN_BUNDLE_ARCH == KILN_BUNDLE_ARCH_ARM64 ? KILN_ISA_AVX2 : KILN_ISA_NEON;
  x = h;
  x.isa_required |= lacking;
  memcpy(d, good, size);
  memcpy(d, &x, sizeof x);
  rehash(d, size);
  expect_refused(d, size, KILN_ERR_UNSUPPORTED, "lacks", "isa");
  /* A writer with more kernels, whose blobs need none of its extra ones. */
  x = h;
  x.isa |= lacking;
  memcpy(d, &x, sizeof x);
  rehash(d, size);
  CHECK(try_open(d, size, msg, sizeof msg) == KILN_OK);
  if (h.isa_required != 0) {
    x = h;
    x.arch = KILN_BUNDLE_ARCH == KILN_BUNDLE_ARCH_ARM64 ? KILN_BUNDLE_ARCH_X86_64
                                                       : KILN_BUNDLE_ARCH_ARM64;
    memcpy(d, &x, sizeof x);
    rehash(d, size);
    expect_refused(d, size, KILN_ERR_UNSUPPORTED, "write it again on this machine", "arch");
  }

  /* Records consistent with the checksum but not with the file. */
  kiln_bundle_model_rec rec;
  memcpy(&rec, good + h.models_offset, sizeof rec);
  REQUIRE(rec.n_packed > 0);
  kiln_bundle_model_rec y = rec;
  y.model_bytes = size;
  memcpy(d, good, size);
  memcpy(d + h.models_offset, &y, sizeof y);
  rehash(d, size);
  expect_refused(d, size, KILN_ERR_FORMAT, "inconsistent record", "model range");
  kiln_bundle_packed_rec pr;
  memcpy(&pr, good + rec.packed_offset, sizeof pr);
  pr.bytes += 64;
  memcpy(d, good, size);
  memcpy(d + rec.packed_offset, &pr, sizeof pr);
  rehash(d, size);
  expect_refused(d, size, KILN_ERR_FORMAT, "packed data 0 in the bundle", "blob size");
  uint64_t far = rec.arena_bytes;
  memcpy(d, good, size);
  for (int32_t t = 0; t < rec.n_tensors; t++) {
    uint64_t o;
    memcpy(&o, good + rec.offsets_offset + (uint64_t)t * 8, 8);
    if (o != KILN_BUNDLE_NO_OFFSET) {
      memcpy(d + rec.offsets_offset + (uint64_t)t * 8, &far, 8);
      break;
    }
  }
  rehash(d, size);
  expect_refused(d, size, KILN_ERR_FORMAT, "memory plan", "plan offset");

  /* Random flips in the header, records and tables with the checksum made
   * right: refused or run, never a crash. */
  uint64_t first_model = rec.model_offset;
  for (int k = 0; k < 300; k++) {
    memcpy(d, good, size);
    const size_t at = 24 + (size_t)test_rand_u32(&r) % (first_model - 24);
    d[at] ^= (uint8_t)(1u << test_rand_int(&r, 0, 7));
    rehash(d, size);
    CHECK(try_open(d, size, msg, sizeof msg) != KILN_ERR_INTERNAL);
  }
  free(d);
  free(good);
}

/* ---- Other kernel sets ---- */

/* The kernel sets worth a run of their own here: one bit set per packed
 * layout (kernels/s8_gemm.h, f32_gemm.h, dwconv.h), below the CPU's. */
static const uint32_t masks[] = {KILN_ISA_AVX2, KILN_ISA_AVX2 | KILN_ISA_AVXVNNI,
                                 KILN_ISA_AVX2 | KILN_ISA_AVX512, KILN_ISA_NEON};

static const char *masked_name(uint32_t isa) {
  static char name[64];
  snprintf(name, sizeof name, "masked-%x.kbundle", (unsigned)isa);
  return name;
}

/* In a run with KILN_ISA_MASK: the int8 models packed for these kernels. */
static void test_write_masked(void) {
  kiln_error err;
  kiln_bundle_info info;
  const char *paths[2] = {tmp_path(0, "m0.tflite"), tmp_path(1, "m1.tflite")};
  REQUIRE(kiln_bundle_write(paths, 2, tmp_path(2, masked_name(kiln_cpu_isa())), &info, &err) ==
          KILN_OK);
  CHECK(info.isa != 0 && (info.isa & ~kiln_cpu_isa()) == 0);
}

/* Runs this test again with only the ISA bits of mask, in this directory. */
static int run_masked(const char *self, uint32_t mask) {
  char var[32];
  snprintf(var, sizeof var, "KILN_ISA_MASK=%x", (unsigned)mask);
  size_t n_env = 0;
  while (environ[n_env]) n_env++;
  char **env = calloc(n_env + 2, sizeof *env);
  if (!env) return -1;
  size_t j = 0;
  for (size_t i = 0; i < n_env; i++)
    if (strncmp(environ[i], "KILN_ISA_MASK=", 14) != 0) env[j++] = environ[i];
  env[j++] = var;
  env[j] = NULL;
  char *argv[] = {(char *)self, dir, NULL};
  pid_t pid;
  int status = -1;
  if (posix_spawn(&pid, self, NULL, NULL, argv, env) == 0 && waitpid(pid, &status, 0) == pid &&
      WIFEXITED(status))
    status = WEXITSTATUS(status);
  else
    status = -1;
  free(env);
  return status;
}

/* A bundle packed for fewer kernels than this CPU has runs on those. */
static void open_masked(uint32_t mask) {
  kiln_error err;
  kiln_bundle *b;
  kiln_interp_options opt = {.n_threads = 2};
  REQUIRE(kiln_bundle_open(tmp_path(2, masked_name(mask)), &opt, &b, &err) == KILN_OK);
  const char *paths[2] = {tmp_path(0, "m0.tflite"), tmp_path(1, "m1.tflite")};
  for (int32_t i = 0; i < 2; i++) {
    separate sep;
    REQUIRE(open_separate(paths[i], 1, &sep));
    CHECK(kiln_interp_isa(kiln_bundle_interp(b, i)) == mask);
    CHECK(kiln_interp_packed(kiln_bundle_interp(b, i)) == NULL);
    CHECK_MSG(same_outputs(sep.it, kiln_bundle_interp(b, i), 50 + (uint64_t)i),
              "model %d packed for %x", (int)i, (unsigned)mask);
    close_separate(&sep);
  }
  kiln_bundle_free(b);
  remove(tmp_path(2, masked_name(mask)));
}

static void test_other_kernels(const char *self) {
  for (size_t k = 0; k < sizeof masks / sizeof masks[0]; k++) {
    if ((masks[k] & kiln_cpu_isa()) != masks[k] || masks[k] == kiln_cpu_isa()) continue;
    fprintf(stderr, "-- again with KILN_ISA_MASK=%x\n", (unsigned)masks[k]);
    CHECK_MSG(run_masked(self, masks[k]) == 0, "the run with mask %x failed", (unsigned)masks[k]);
    open_masked(masks[k]);
  }
}

/* argv[1]: the directory of the run that started this one. */
int main(int argc, char **argv) {
  const char *tmp = getenv("TMPDIR");
  const bool child = argc > 1;
  if (child) {
    snprintf(dir, sizeof dir, "%s", argv[1]);
  } else {
    snprintf(dir, sizeof dir, "%s/kiln-bundle-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir)) {
      fprintf(stderr, "cannot create a directory under %s\n", tmp && *tmp ? tmp : "/tmp");
      return 1;
    }
  }
  char isa[96];
  kiln_bundle_isa_name(kiln_cpu_isa(), isa, sizeof isa);
  fprintf(stderr, "kernels: %s\n", isa);
  RUN(test_single_models);
  RUN(test_co_compiled);
  RUN(test_shared_ssd);
  RUN(test_force_ref);
  RUN(test_write_errors);
  RUN(test_damaged);
  if (child) {
    RUN(test_write_masked);
    return test_summary();
  }
  test_other_kernels(argv[0]);
  const char *names[] = {"m0.tflite", "m1.tflite", "m2.tflite", "single.kbundle", "three.kbundle",
                         "ssd.kbundle", "ref.kbundle", "junk.tflite", "good.kbundle",
                         "damaged.kbundle"};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) remove(tmp_path(0, names[i]));
  rmdir(dir);
  return test_summary();
}
