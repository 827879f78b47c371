/*
 * test_fast_dw_harness.h: what the fast-path tests (test_fast_dw*.c,
 * test_fast_misc*.c) share: building one-op models, running them through
 * kiln_interp with the default kernels at 1, 2 and 3 threads and comparing
 * with the reference kernels (force_ref), and running the whole test once per
 * ISA variant in a child process with KILN_ISA_MASK set to that variant.
 *
 * Whether a fast path was taken is seen from the interpreter's prepared
 * parameter bytes: a fast path's plan (packed weights, tables) adds to them.
 */
#ifndef KILN_TEST_FAST_DW_HARNESS_H
#define KILN_TEST_FAST_DW_HARNESS_H

#include <math.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "kernels/cpu.h"
#include "kiln/interp.h"
#include "kiln/model.h"
#include "testutil.h"

extern char **environ;

/* Adds a tensor; qcount 0: not quantized. Returns its index (-1 on error,
 * message printed). */
static inline int32_t fx_tensor(kiln_model *m, const char *name, kiln_dtype dt, int32_t rank,
                                const int32_t *shape, int32_t qcount, const float *scale,
                                const int32_t *zp, int32_t axis, const void *data) {
  kiln_quant q = {qcount, axis, (float *)scale, (int32_t *)zp};
  kiln_error err;
  const int32_t t = kiln_model_add_tensor(m, name, dt, rank, shape, &q, data, &err);
  if (t < 0) fprintf(stderr, "add_tensor %s: %s\n", name, err.msg);
  return t;
}

/* Runs the model (inputs already set with kiln_model_set_io) with the given
 * options on the input contents `inputs` (one buffer per model input, of the
 * tensor's bytes) and copies output 0 into out (out_bytes). Returns false
 * (message printed) when it cannot be created or run. */
static inline bool fx_run(const kiln_model *m, const kiln_interp_options *opt,
                          const void *const *inputs, void *out, size_t out_bytes,
                          size_t *params_bytes) {
  kiln_interp *it = NULL;
  kiln_error err;
  if (kiln_interp_create(m, opt, &it, &err) != KILN_OK) {
    fprintf(stderr, "create: %s\n", err.msg);
    return false;
  }
  for (int32_t i = 0; i < kiln_interp_input_count(it); i++) {
    kiln_tensor_view v = kiln_interp_input(it, i);
    memcpy(v.data, inputs[i], v.bytes);
  }
  bool ok = kiln_interp_invoke(it, &err) == KILN_OK;
  if (!ok) fprintf(stderr, "invoke: %s\n", err.msg);
  kiln_tensor_view o = kiln_interp_output(it, 0);
  if (ok && o.bytes != out_bytes) {
    fprintf(stderr, "output has %zu bytes, expected %zu\n", o.bytes, out_bytes);
    ok = false;
  }
  if (ok) memcpy(out, o.data, out_bytes);
  if (params_bytes) *params_bytes = kiln_interp_memory(it).params_bytes;
  kiln_interp_free(it);
  return ok;
}

/* Counts outputs of the fast run that differ from the reference's: int8 /
 * uint8 must be identical, float32 within 1e-5 relative (NaN matching NaN). */
static inline int64_t fx_diff(kiln_dtype dt, const void *got, const void *want, size_t bytes,
                              const char *label) {
  int64_t bad = 0;
  if (dt == KILN_F32) {
    const float *g = got, *w = want;
    for (size_t i = 0; i < bytes / 4; i++) {
      const bool same =
          (isnan(g[i]) && isnan(w[i])) || fabsf(g[i] - w[i]) <= 1e-5f * fmaxf(1.0f, fabsf(w[i]));
      if (!same && bad++ == 0)
        fprintf(stderr, "%s: element %zu is %.9g, reference %.9g\n", label, i, (double)g[i],
                (double)w[i]);
    }
  } else {
    const uint8_t *g = got, *w = want;
    for (size_t i = 0; i < bytes; i++)
      if (g[i] != w[i] && bad++ == 0)
        fprintf(stderr, "%s: byte %zu is %d, reference %d\n", label, i, (int)(int8_t)g[i],
                (int)(int8_t)w[i]);
  }
  return bad;
}

/* What fx_check saw: whether the default kernels prepared more parameter
 * bytes than the reference (a fast plan), and whether all runs matched. */
typedef struct fx_outcome {
  bool ran;
  bool fast;
} fx_outcome;

/* Runs the model with force_ref (1 thread) and with the default kernels at
 * 1, 2 and 3 threads, checking each against the reference. */
static inline fx_outcome fx_check(const kiln_model *m, const void *const *inputs,
                                  kiln_dtype out_dtype, size_t out_bytes, const char *label) {
  fx_outcome r = {false, false};
  void *want = malloc(out_bytes), *got = malloc(out_bytes);
  if (!want || !got) {
    free(want);
    free(got);
    CHECK(!"out of memory");
    return r;
  }
  kiln_interp_options ref = {0};
  ref.n_threads = 1;
  ref.force_ref = true;
  size_t ref_params = 0, fast_params = 0;
  bool ok = fx_run(m, &ref, inputs, want, out_bytes, &ref_params);
  CHECK_MSG(ok, "%s: reference run failed", label);
  for (int32_t threads = 1; ok && threads <= 3; threads++) {
    kiln_interp_options opt = {0};
    opt.n_threads = threads;
    memset(got, 0x5a, out_bytes);
    ok = fx_run(m, &opt, inputs, got, out_bytes, &fast_params);
    CHECK_MSG(ok, "%s: run with %d threads failed", label, (int)threads);
    if (!ok) break;
    char what[256];
    snprintf(what, sizeof what, "%s, %d threads", label, (int)threads);
    const int64_t bad = fx_diff(out_dtype, got, want, out_bytes, what);
    CHECK_MSG(bad == 0, "%s: %lld of %zu outputs differ", what, (long long)bad,
              out_dtype == KILN_F32 ? out_bytes / 4 : out_bytes);
  }
  r.ran = ok;
  r.fast = fast_params > ref_params;
  free(want);
  free(got);
  return r;
}

/* Fills n bytes with random int8 values in [lo, hi]. */
static inline void fx_fill_s8(test_rng *rng, int8_t *p, size_t n, int32_t lo, int32_t hi) {
  for (size_t i = 0; i < n; i++) p[i] = (int8_t)test_rand_int(rng, lo, hi);
}

/* Fills n floats uniformly in [lo, hi), about one in 200 NaN (the
 * reference's NaN handling must be kept too). */
static inline void fx_fill_f32(test_rng *rng, float *p, size_t n, float lo, float hi) {
  for (size_t i = 0; i < n; i++)
    p[i] = test_rand_int(rng, 0, 199) == 0 ? NAN : test_rand_float(rng, lo, hi);
}

/* True in a child started by fx_main, where a fast path is expected to be
 * taken wherever it applies. */
static inline bool fx_fast_expected(void) { return getenv("KILN_FAST_TEST_CHILD") != NULL; }

/* A tensor of a one-op model: float32 or per-tensor int8. */
typedef struct fx_tspec {
  int32_t rank;
  int32_t shape[6];
  float scale;
  int32_t zp;
} fx_tspec;

static inline size_t fx_elements(const fx_tspec *t) {
  size_t n = 1;
  for (int32_t i = 0; i < t->rank; i++) n *= (size_t)t->shape[i];
  return n;
}

/* Builds input tensors ins[0..n_in), constant tensors (consts, taken as
 * extra op inputs after them, e.g. MEAN's axes), the output and the op;
 * fills the inputs randomly and checks the model. */
static inline void fx_check_op(kiln_dtype dt, int32_t code, const kiln_op_options *o,
                               const fx_tspec *ins, int32_t n_in, const fx_tspec *out,
                               const int32_t *const_i32, int32_t n_const, bool expect_fast,
                               test_rng *rng, const char *label) {
  kiln_model *m = NULL;
  kiln_error err;
  REQUIRE(kiln_model_new(&m, &err) == KILN_OK);
  const bool q = dt == KILN_I8;
  const size_t esize = q ? 1 : 4;
  int32_t tin[8], ops_in[9];
  void *bufs[8] = {NULL};
  for (int32_t i = 0; i < n_in; i++) {
    char name[16];
    snprintf(name, sizeof name, "in%d", (int)i);
    tin[i] =
        fx_tensor(m, name, dt, ins[i].rank, ins[i].shape, q, &ins[i].scale, &ins[i].zp, 0, NULL);
    ops_in[i] = tin[i];
    const size_t n = fx_elements(&ins[i]);
    bufs[i] = malloc(n * esize + 1);
    REQUIRE(bufs[i]);
    if (q)
      fx_fill_s8(rng, bufs[i], n, -128, 127);
    else
      fx_fill_f32(rng, bufs[i], n, -4.0f, 4.0f);
  }
  if (n_const > 0)
    ops_in[n_in] = fx_tensor(m, "const", KILN_I32, 1, &n_const, 0, NULL, NULL, 0, const_i32);
  const int32_t to =
      fx_tensor(m, "out", dt, out->rank, out->shape, q, &out->scale, &out->zp, 0, NULL);
  REQUIRE(kiln_model_add_op(m, code, NULL, ops_in, n_in + (n_const > 0), &to, 1, o, NULL, 0,
                            &err) >= 0);
  REQUIRE(kiln_model_set_io(m, tin, n_in, &to, 1, &err) == KILN_OK);
  const fx_outcome r = fx_check(m, (const void *const *)bufs, dt, fx_elements(out) * esize, label);
  if (r.ran && fx_fast_expected())
    CHECK_MSG(r.fast == expect_fast, "%s: fast path %s", label, r.fast ? "taken" : "not taken");
  for (int32_t i = 0; i < n_in; i++) free(bufs[i]);
  kiln_model_free(m);
}

static inline fx_tspec fx_t4(int32_t n, int32_t h, int32_t w, int32_t c) {
  fx_tspec t = {4, {n, h, w, c}, 0.05f, 0};
  return t;
}

/* The test's main: in a child (KILN_FAST_TEST_CHILD set) runs `run_all`;
 * otherwise starts itself once per variant in `isa_variants` (0-terminated)
 * that this CPU offers, with KILN_ISA_MASK limiting it to that variant, and
 * fails if any child fails. With no variant available it runs `run_all`
 * here (the default kernels are then the reference ones). */
static inline int fx_main(char **argv, const uint32_t *isa_variants, void (*run_all)(void)) {
  if (getenv("KILN_FAST_TEST_CHILD")) {
    fprintf(stderr, "-- child with KILN_ISA_MASK=%s\n", getenv("KILN_ISA_MASK"));
    run_all();
    return test_summary();
  }
  unsetenv("KILN_KERNELS");
  const uint32_t cpu = kiln_cpu_isa();
  int children = 0;
  for (const uint32_t *v = isa_variants; *v; v++) {
    if ((*v & cpu) != *v) {
      fprintf(stderr, "-- skipping %s: not available here\n", kiln_isa_name(*v));
      continue;
    }
    char mask[16];
    snprintf(mask, sizeof mask, "%x", (unsigned)*v);
    setenv("KILN_ISA_MASK", mask, 1);
    setenv("KILN_FAST_TEST_CHILD", "1", 1);
    pid_t pid;
    int status = 0;
    test_checks++;
    if (posix_spawn(&pid, argv[0], NULL, NULL, argv, environ) != 0 ||
        waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      test_failures++;
      fprintf(stderr, "FAIL variant %s (status %d)\n", kiln_isa_name(*v), status);
    }
    children++;
  }
  unsetenv("KILN_FAST_TEST_CHILD");
  if (children == 0) run_all();
  return test_summary();
}

#endif
