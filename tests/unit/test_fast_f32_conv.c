/*
 * Tests of the fast float32 CONV_2D and FULLY_CONNECTED paths
 * (runtime/fast_conv_f32.c) through the interpreter: one-op models built
 * with the model builder run with the default kernels at 1, 2 and 3 threads
 * and with the reference kernels (force_ref); the results must agree within
 * 1e-5 of the output's magnitude and be identical for every thread count.
 * The sweep covers 1x1 (direct) and windowed (indirect) convs, odd channel
 * counts, strides, dilation, SAME/VALID padding, batch 2, fewer rows than a
 * kernel's tile, several tasks per op, every fused activation, absent bias,
 * weights that are exactly halves (packed as halves) or not, and a grouped
 * conv (which stays on the reference).
 *
 * Every GEMM kernel this CPU can run is exercised: the sweep runs with the
 * kernel chosen by default, then the test runs itself once per other
 * kernel with KILN_ISA_MASK set to that kernel's ISA bits (the mask is read
 * once per process), and the child checks it selected that kernel.
 */
#include <math.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "base/half.h"
#include "kernels/cpu.h"
#include "kernels/f32_gemm.h"
#include "kernels/ref/conv_ref.h"
#include "kiln/interp.h"
#include "kiln/model.h"
#include "testutil.h"

extern char **environ;

typedef struct conv_case {
  int32_t batch, in_h, in_w, in_c, out_c, filter_h, filter_w;
  int32_t stride_h, stride_w, dilation_h, dilation_w;
  kiln_padding padding;
  kiln_activation act;
  bool bias;
  int32_t groups;
  bool halves; /* weights exactly representable as halves (packed as such) */
} conv_case;

typedef struct fc_case {
  int32_t batch, in_depth, out_depth;
  kiln_activation act;
  bool bias;
  bool halves;
} fc_case;

static const kiln_activation acts[] = {KILN_ACT_NONE, KILN_ACT_RELU, KILN_ACT_RELU_N1_TO_1,
                                       KILN_ACT_RELU6};

static int32_t add_tensor(kiln_model *m, const char *name, int32_t rank, const int32_t *shape,
                          const float *data) {
  kiln_error err;
  kiln_quant none = {0, 0, NULL, NULL};
  int32_t t = kiln_model_add_tensor(m, name, KILN_F32, rank, shape, &none, data, &err);
  if (t < 0) fprintf(stderr, "add_tensor: %s\n", err.msg);
  return t;
}

/* Fills n floats in [-1, 1), rounded to halves when `halves`. */
static float *random_floats(test_rng *r, size_t n, bool halves) {
  float *v = malloc(n * sizeof *v);
  for (size_t i = 0; v && i < n; i++) {
    v[i] = test_rand_float(r, -1.0f, 1.0f);
    if (halves) v[i] = kiln_half_to_float(kiln_float_to_half(v[i]));
  }
  return v;
}

/* Runs a one-input one-output model on `input`; returns the output
 * (malloc'd, *count elements) or NULL, and the interpreter's prepared
 * parameter bytes (where packed weights live). */
static float *run_model(const kiln_model *m, int32_t threads, bool force_ref, const float *input,
                        size_t *count, size_t *params_bytes) {
  kiln_interp_options opt = {threads, force_ref, false};
  kiln_interp *it = NULL;
  kiln_error err;
  if (kiln_interp_create(m, &opt, &it, &err) != KILN_OK) {
    fprintf(stderr, "create: %s\n", err.msg);
    return NULL;
  }
  *params_bytes = kiln_interp_memory(it).params_bytes;
  kiln_tensor_view in = kiln_interp_input(it, 0);
  memcpy(in.data, input, in.bytes);
  float *out = NULL;
  if (kiln_interp_invoke(it, &err) == KILN_OK) {
    kiln_tensor_view o = kiln_interp_output(it, 0);
    out = malloc(o.bytes);
    if (out) memcpy(out, o.data, o.bytes);
    *count = o.bytes / sizeof(float);
  } else {
    fprintf(stderr, "invoke: %s\n", err.msg);
  }
  kiln_interp_free(it);
  return out;
}

/* The reference result, then the default kernels at 1, 2 and 3 threads:
 * within 1e-5 of the output's magnitude, and identical across threads.
 * packed_bytes: the least the fast path's packed weights take (0 when the
 * op must stay on the reference); the default kernels' prepared parameters
 * must exceed the reference's by that much, which shows the fast path ran. */
static void compare_paths(const kiln_model *m, const float *input, size_t packed_bytes,
                          const char *what) {
  size_t n_ref = 0, ref_params = 0;
  float *ref = run_model(m, 1, true, input, &n_ref, &ref_params);
  REQUIRE(ref);
  double magnitude = 1e-6;
  for (size_t i = 0; i < n_ref; i++)
    if (fabs(ref[i]) > magnitude) magnitude = fabs(ref[i]);
  float *first = NULL;
  for (int32_t threads = 1; threads <= 3; threads++) {
    size_t n = 0, params = 0;
    float *got = run_model(m, threads, false, input, &n, &params);
    if (kiln_f32_gemm_select(kiln_cpu_isa()))
      CHECK_MSG(packed_bytes ? params >= ref_params + packed_bytes : params == ref_params,
                "%s: prepared %zu bytes, reference %zu: the fast path %s", what, params,
                ref_params, packed_bytes ? "did not run" : "ran");
    CHECK_MSG(got && n == n_ref, "%s: no output at %d threads", what, (int)threads);
    if (!got || n != n_ref) {
      free(got);
      continue;
    }
    size_t worst = 0;
    for (size_t i = 0; i < n; i++)
      if (fabs(got[i] - ref[i]) > fabs(got[worst] - ref[worst])) worst = i;
    CHECK_MSG(fabs(got[worst] - ref[worst]) <= 1e-5 * magnitude,
              "%s, %d threads: element %zu is %.8g, reference %.8g (magnitude %g)", what,
              (int)threads, worst, (double)got[worst], (double)ref[worst], magnitude);
    if (!first) {
      first = got;
      continue;
    }
    CHECK_MSG(memcmp(first, got, n * sizeof *got) == 0, "%s: %d threads differ from 1 thread", what,
              (int)threads);
    free(got);
  }
  free(first);
  free(ref);
}

static void check_conv(const conv_case *c, test_rng *r) {
  const bool same = c->padding == KILN_PAD_SAME;
  const int64_t out_h = kiln_conv_out_size(same, c->in_h, c->filter_h, c->stride_h, c->dilation_h);
  const int64_t out_w = kiln_conv_out_size(same, c->in_w, c->filter_w, c->stride_w, c->dilation_w);
  const int32_t filter_c = c->in_c / c->groups;
  const int32_t in_shape[4] = {c->batch, c->in_h, c->in_w, c->in_c};
  const int32_t f_shape[4] = {c->out_c, c->filter_h, c->filter_w, filter_c};
  const int32_t b_shape[1] = {c->out_c};
  const int32_t out_shape[4] = {c->batch, (int32_t)out_h, (int32_t)out_w, c->out_c};
  const size_t in_n = (size_t)c->batch * c->in_h * c->in_w * c->in_c;
  float *input = random_floats(r, in_n, false);
  float *filter =
      random_floats(r, (size_t)c->out_c * c->filter_h * c->filter_w * filter_c, c->halves);
  float *bias = random_floats(r, (size_t)c->out_c, false);
  kiln_model *m = NULL;
  kiln_error err;
  REQUIRE(input && filter && bias && kiln_model_new(&m, &err) == KILN_OK);
  const int32_t in = add_tensor(m, "in", 4, in_shape, NULL);
  const int32_t f = add_tensor(m, "filter", 4, f_shape, filter);
  const int32_t b = c->bias ? add_tensor(m, "bias", 1, b_shape, bias) : -1;
  const int32_t out = add_tensor(m, "out", 4, out_shape, NULL);
  kiln_op_options opt;
  memset(&opt, 0, sizeof opt);
  opt.type = KILN_OPTS_CONV2D;
  opt.padding = c->padding;
  opt.stride_h = c->stride_h;
  opt.stride_w = c->stride_w;
  opt.dilation_h = c->dilation_h;
  opt.dilation_w = c->dilation_w;
  opt.activation = c->act;
  const int32_t inputs[3] = {in, f, b};
  CHECK(kiln_model_add_op(m, KILN_OP_CONV_2D, NULL, inputs, 3, &out, 1, &opt, NULL, 0, &err) >= 0);
  CHECK(kiln_model_set_io(m, &in, 1, &out, 1, &err) == KILN_OK);
  char what[200];
  snprintf(what, sizeof what,
           "conv in %dx%dx%dx%d out_c %d filter %dx%d stride %dx%d dilation %dx%d %s act %d%s "
           "groups %d%s",
           (int)c->batch, (int)c->in_h, (int)c->in_w, (int)c->in_c, (int)c->out_c, (int)c->filter_h,
           (int)c->filter_w, (int)c->stride_h, (int)c->stride_w, (int)c->dilation_h,
           (int)c->dilation_w, same ? "SAME" : "VALID", (int)c->act, c->bias ? "" : " no bias",
           (int)c->groups, c->halves ? " half weights" : "");
  const size_t weights = (size_t)c->out_c * c->filter_h * c->filter_w * filter_c;
  compare_paths(m, input, c->groups == 1 ? weights * (c->halves ? 2 : 4) : 0, what);
  kiln_model_free(m);
  free(input);
  free(filter);
  free(bias);
}

static conv_case conv(int32_t batch, int32_t h, int32_t w, int32_t in_c, int32_t out_c, int32_t fh,
                      int32_t fw, int32_t stride, kiln_padding padding) {
  conv_case c = {batch,  h, w, in_c,    out_c,         fh,   fw, stride,
                 stride, 1, 1, padding, KILN_ACT_NONE, true, 1,  false};
  return c;
}

/* 1x1 stride 1: A is the input itself. */
static void test_conv_1x1(void) {
  test_rng r = {11};
  const conv_case cases[] = {
      conv(1, 5, 7, 3, 17, 1, 1, 1, KILN_PAD_SAME),
      conv(2, 4, 4, 33, 40, 1, 1, 1, KILN_PAD_VALID),
      conv(1, 3, 3, 64, 64, 1, 1, 1, KILN_PAD_SAME),
      conv(1, 1, 2, 16, 7, 1, 1, 1, KILN_PAD_SAME),
      conv(1, 1, 1, 128, 24, 1, 1, 1, KILN_PAD_SAME),
      conv(1, 9, 11, 24, 144, 1, 1, 1, KILN_PAD_SAME),
      conv(1, 13, 13, 40, 48, 1, 1, 1, KILN_PAD_SAME),
      conv(2, 3, 5, 1, 1, 1, 1, 1, KILN_PAD_SAME),
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    for (size_t a = 0; a < sizeof acts / sizeof acts[0]; a++) {
      conv_case c = cases[i];
      c.act = acts[a];
      c.bias = a != 2;
      c.halves = a % 2 == 1;
      check_conv(&c, &r);
    }
  }
}

/* Windows through the indirection: padding, strides, dilation, batch. */
static void test_conv_windows(void) {
  test_rng r = {12};
  conv_case cases[] = {
      conv(1, 9, 9, 3, 32, 3, 3, 2, KILN_PAD_SAME),
      conv(1, 8, 8, 3, 32, 3, 3, 2, KILN_PAD_SAME),
      conv(1, 7, 6, 5, 17, 3, 3, 1, KILN_PAD_SAME),
      conv(2, 7, 6, 5, 17, 3, 3, 1, KILN_PAD_VALID),
      conv(1, 10, 9, 4, 33, 5, 5, 1, KILN_PAD_SAME),
      conv(1, 10, 9, 4, 9, 5, 5, 2, KILN_PAD_VALID),
      conv(1, 5, 5, 19, 48, 3, 3, 2, KILN_PAD_SAME),
      conv(1, 3, 3, 64, 40, 3, 3, 2, KILN_PAD_SAME),
      conv(2, 6, 7, 8, 24, 1, 1, 2, KILN_PAD_SAME),
      conv(1, 6, 7, 8, 16, 2, 3, 1, KILN_PAD_SAME),
      conv(1, 2, 2, 8, 5, 3, 3, 1, KILN_PAD_SAME),
      conv(1, 1, 1, 7, 65, 3, 3, 2, KILN_PAD_SAME),
      conv(1, 12, 11, 6, 20, 3, 3, 1, KILN_PAD_SAME),
      conv(2, 12, 11, 6, 20, 3, 2, 1, KILN_PAD_VALID),
  };
  cases[9].stride_h = 2; /* unequal strides */
  cases[12].dilation_h = cases[12].dilation_w = 2;
  cases[13].dilation_h = 2;
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    for (size_t a = 0; a < sizeof acts / sizeof acts[0]; a++) {
      conv_case c = cases[i];
      c.act = acts[a];
      c.bias = a != 1;
      c.halves = a >= 2;
      check_conv(&c, &r);
    }
  }
}

/* Shapes that make several tasks: many rows, and weights wide enough to
 * split the columns into several L2-sized ranges. */
static void test_conv_tasks(void) {
  test_rng r = {13};
  conv_case cases[] = {
      conv(1, 40, 40, 32, 48, 1, 1, 1, KILN_PAD_SAME),
      conv(1, 20, 20, 40, 72, 3, 3, 1, KILN_PAD_SAME),
      conv(1, 4, 5, 1024, 200, 1, 1, 1, KILN_PAD_SAME),
      conv(2, 5, 5, 128, 96, 3, 3, 2, KILN_PAD_SAME),
  };
  cases[1].act = KILN_ACT_RELU6;
  cases[2].halves = cases[3].halves = true;
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_conv(&cases[i], &r);
}

/* A grouped conv keeps the reference kernel and still runs. */
static void test_conv_grouped(void) {
  test_rng r = {14};
  conv_case c = conv(1, 6, 6, 8, 12, 3, 3, 1, KILN_PAD_SAME);
  c.groups = 4;
  check_conv(&c, &r);
}

static void check_fc(const fc_case *c, test_rng *r) {
  const int32_t in_shape[2] = {c->batch, c->in_depth};
  const int32_t w_shape[2] = {c->out_depth, c->in_depth};
  const int32_t b_shape[1] = {c->out_depth};
  const int32_t out_shape[2] = {c->batch, c->out_depth};
  float *input = random_floats(r, (size_t)c->batch * c->in_depth, false);
  float *weights = random_floats(r, (size_t)c->out_depth * c->in_depth, c->halves);
  float *bias = random_floats(r, (size_t)c->out_depth, false);
  kiln_model *m = NULL;
  kiln_error err;
  REQUIRE(input && weights && bias && kiln_model_new(&m, &err) == KILN_OK);
  const int32_t in = add_tensor(m, "in", 2, in_shape, NULL);
  const int32_t w = add_tensor(m, "weights", 2, w_shape, weights);
  const int32_t b = c->bias ? add_tensor(m, "bias", 1, b_shape, bias) : -1;
  const int32_t out = add_tensor(m, "out", 2, out_shape, NULL);
  kiln_op_options opt;
  memset(&opt, 0, sizeof opt);
  opt.type = KILN_OPTS_FULLY_CONNECTED;
  opt.activation = c->act;
  const int32_t inputs[3] = {in, w, b};
  CHECK(kiln_model_add_op(m, KILN_OP_FULLY_CONNECTED, NULL, inputs, 3, &out, 1, &opt, NULL, 0,
                          &err) >= 0);
  CHECK(kiln_model_set_io(m, &in, 1, &out, 1, &err) == KILN_OK);
  char what[120];
  snprintf(what, sizeof what, "fc batch %d in %d out %d act %d%s%s", (int)c->batch,
           (int)c->in_depth, (int)c->out_depth, (int)c->act, c->bias ? "" : " no bias",
           c->halves ? " half weights" : "");
  compare_paths(m, input, (size_t)c->out_depth * c->in_depth * (c->halves ? 2 : 4), what);
  kiln_model_free(m);
  free(input);
  free(weights);
  free(bias);
}

static void test_fc(void) {
  test_rng r = {15};
  const fc_case cases[] = {
      {1, 1, 1, KILN_ACT_NONE, true, false},           {1, 7, 10, KILN_ACT_RELU, true, true},
      {3, 64, 33, KILN_ACT_RELU6, false, false},       {2, 1024, 256, KILN_ACT_NONE, true, true},
      {9, 100, 17, KILN_ACT_RELU_N1_TO_1, true, true}, {20, 33, 65, KILN_ACT_RELU, false, false},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_fc(&cases[i], &r);
}

/* Runs this test again with KILN_ISA_MASK set to the ISA bits of each
 * available kernel other than the default one; the child checks it
 * selected that kernel. */
static void test_other_kernels(const char *self) {
  const kiln_f32_gemm_kernel *chosen = kiln_f32_gemm_select(kiln_cpu_isa());
  for (int32_t i = 0; i < kiln_f32_gemm_kernel_count(); i++) {
    const kiln_f32_gemm_kernel *kern = kiln_f32_gemm_kernel_at(i);
    if (kern == chosen) continue;
    if ((kern->isa & kiln_cpu_isa()) != kern->isa) {
      fprintf(stderr, "  skipping %s (CPU lacks it)\n", kern->name);
      continue;
    }
    char mask[16];
    snprintf(mask, sizeof mask, "%x", (unsigned)kern->isa);
    setenv("KILN_ISA_MASK", mask, 1);
    setenv("TEST_F32_KERNEL", kern->name, 1);
    fprintf(stderr, "  running with KILN_ISA_MASK=%s (%s)\n", mask, kern->name);
    char *argv[] = {(char *)self, NULL};
    pid_t pid;
    int status = 0;
    const int rc = posix_spawn(&pid, self, NULL, NULL, argv, environ);
    CHECK_MSG(rc == 0, "posix_spawn failed (%d)", rc);
    if (rc == 0) {
      CHECK(waitpid(pid, &status, 0) == pid);
      CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "%s: child failed", kern->name);
    }
    unsetenv("KILN_ISA_MASK");
    unsetenv("TEST_F32_KERNEL");
  }
}

/* RUN for a test taking one argument. */
#define RUN_ARG(fn, arg)                                                         \
  do {                                                                           \
    int before_ = test_failures;                                                 \
    fn(arg);                                                                     \
    fprintf(stderr, "%s %s\n", test_failures == before_ ? "ok  " : "FAIL", #fn); \
  } while (0)

static void run_sweep(void) {
  RUN(test_conv_1x1);
  RUN(test_conv_windows);
  RUN(test_conv_tasks);
  RUN(test_conv_grouped);
  RUN(test_fc);
}

int main(int argc, char **argv) {
  (void)argc;
  const kiln_f32_gemm_kernel *kern = kiln_f32_gemm_select(kiln_cpu_isa());
  fprintf(stderr, "GEMM kernel: %s\n", kern ? kern->name : "none (reference only)");
  const char *expect = getenv("TEST_F32_KERNEL");
  if (expect) {
    /* A child: the mask must have selected the named kernel. */
    CHECK_MSG(kern && strcmp(kern->name, expect) == 0, "selected %s, expected %s",
              kern ? kern->name : "none", expect);
    run_sweep();
    return test_summary();
  }
  run_sweep();
  RUN_ARG(test_other_kernels, argv[0]);
  return test_summary();
}
