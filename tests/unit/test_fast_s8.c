/*
 * The fast int8 CONV_2D and FULLY_CONNECTED (runtime/fast_conv_s8.c over
 * kernels/s8_gemm.h) against the reference kernels, through the
 * interpreter: one-op models built with the model builder run with default
 * kernels at 1, 2 and 3 threads and with force_ref, and every output must be
 * bit-identical. Shapes sweep depths that are not multiples of 4, 16 or 64,
 * output channels that are not multiples of the tile, fewer rows than a
 * tile, 1x1 / 3x3 / 5x5 filters, strides 1 and 2, dilation 2, SAME and VALID
 * padding, batch 2, a first layer (3 input channels) and FC batches;
 * quantization sweeps input zero points -128, 127 and others, per-axis
 * scales from 1e-6 to 1 (right shifts up to 31 and left shifts) and a
 * channel whose multiplier flushes to 0, biases at the int32 limits (the
 * accumulator wraps) and every fused activation.
 *
 * The process runs the sweep with the CPU's best kernel, then re-runs itself
 * once per other kernel this CPU supports with KILN_ISA_MASK set to that
 * kernel's ISA bits, so every compiled kernel goes through the whole path.
 */
#include <math.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "kernels/cpu.h"
#include "kernels/s8_gemm.h"
#include "kiln/interp.h"
#include "kiln/model.h"
#include "testutil.h"

extern char **environ;

/* ---- Quantization choices ---- */

typedef enum scales {
  SCALES_TYPICAL, /* real multipliers ~1e-3..0.3: the one-step requantization */
  SCALES_WIDE,    /* per-channel 1e-6..1 with a small output scale: shifts -31..+7 */
  SCALES_TINY     /* right shifts near 31 */
} scales;

typedef struct quant_case {
  int32_t in_zp, out_zp;
  scales sc;
  bool big_bias; /* biases at the int32 limits */
  kiln_activation act;
} quant_case;

static const quant_case quant_cases[] = {
    {-128, 5, SCALES_TYPICAL, false, KILN_ACT_RELU6},
    {127, -128, SCALES_TYPICAL, false, KILN_ACT_NONE},
    {3, 127, SCALES_WIDE, false, KILN_ACT_RELU},
    {-7, -3, SCALES_TINY, false, KILN_ACT_RELU_N1_TO_1},
    {0, 0, SCALES_TYPICAL, true, KILN_ACT_NONE},
};
#define N_QUANT (sizeof quant_cases / sizeof quant_cases[0])

/* ---- Building one-op models ---- */

typedef struct model_spec {
  bool fc;
  int32_t batch, in_h, in_w, in_c, out_c;
  int32_t fh, fw, stride, dilation;
  kiln_padding padding;
  bool per_tensor; /* FC: one weight scale */
} model_spec;

static float log_uniform(test_rng *r, float lo, float hi) {
  return expf(test_rand_float(r, logf(lo), logf(hi)));
}

/* Builds the model for spec s and quantization q (weights, biases and
 * scales from seed); *out_h, *out_w get the output's spatial size. */
static kiln_model *build(const model_spec *s, const quant_case *q, uint64_t seed, int32_t *out_h,
                         int32_t *out_w) {
  test_rng r = {seed};
  kiln_model *m = NULL;
  kiln_error err;
  if (kiln_model_new(&m, &err) != KILN_OK) return NULL;
  const int32_t k = s->fc ? s->in_h * s->in_w * s->in_c : s->fh * s->fw * s->in_c;
  const int32_t n = s->out_c;
  float in_scale = 0.05f, out_scale = 0.1f;
  float *f_scale = calloc((size_t)n, sizeof *f_scale);
  float *b_scale = calloc((size_t)n, sizeof *b_scale);
  int32_t *f_zp = calloc((size_t)n, sizeof *f_zp), *b_zp = calloc((size_t)n, sizeof *b_zp);
  int8_t *w = malloc((size_t)n * (size_t)k);
  int32_t *bias = malloc((size_t)n * sizeof *bias);
  if (!f_scale || !b_scale || !f_zp || !b_zp || !w || !bias) {
    kiln_model_free(m);
    m = NULL;
    goto done;
  }
  if (q->sc == SCALES_WIDE) out_scale = 0.01f;
  if (q->sc == SCALES_TINY) out_scale = 50.0f;
  const float f_common = log_uniform(&r, 0.001f, 0.02f);
  for (int32_t i = 0; i < n; i++) {
    f_scale[i] = s->per_tensor ? f_common
                 : q->sc == SCALES_TYPICAL ? log_uniform(&r, 0.001f, 0.02f)
                 : q->sc == SCALES_WIDE    ? log_uniform(&r, 1e-6f, 1.0f)
                                           : log_uniform(&r, 1e-6f, 1e-5f);
    /* A channel whose scale is so small that its multiplier flushes to 0
     * (shift 0): it outputs the zero point. */
    if (q->sc == SCALES_TYPICAL && !s->per_tensor && n > 2 && i == n / 2) f_scale[i] = 1e-12f;
    b_scale[i] = in_scale * f_scale[i];
    bias[i] = q->big_bias ? (test_rand_int(&r, 0, 1) ? INT32_MAX - test_rand_int(&r, 0, 1000)
                                                     : INT32_MIN + test_rand_int(&r, 0, 1000))
                          : test_rand_int(&r, -20000, 20000);
  }
  for (size_t i = 0; i < (size_t)n * (size_t)k; i++) w[i] = (int8_t)test_rand_int(&r, -127, 127);
  /* Some extreme weights and an all-(-127) channel for sums near the limits. */
  for (int32_t d = 0; d < k; d++) w[d] = -127;
  int32_t in_zp = q->in_zp, out_zp = q->out_zp;
  kiln_quant qi = {1, 0, &in_scale, &in_zp}, qo = {1, 0, &out_scale, &out_zp};
  kiln_quant qf = {s->per_tensor ? 1 : n, 0, f_scale, f_zp};
  kiln_quant qb = {s->per_tensor ? 1 : n, 0, b_scale, b_zp};
  int32_t t_in, t_w, t_b, t_out;
  if (s->fc) {
    const int32_t ishape[2] = {s->batch, k}, wshape[2] = {n, k}, bshape[1] = {n};
    const int32_t oshape[2] = {s->batch, n};
    t_in = kiln_model_add_tensor(m, "in", KILN_I8, 2, ishape, &qi, NULL, &err);
    t_w = kiln_model_add_tensor(m, "w", KILN_I8, 2, wshape, &qf, w, &err);
    t_b = kiln_model_add_tensor(m, "b", KILN_I32, 1, bshape, &qb, bias, &err);
    t_out = kiln_model_add_tensor(m, "out", KILN_I8, 2, oshape, &qo, NULL, &err);
    *out_h = *out_w = 1;
  } else {
    const bool same = s->padding == KILN_PAD_SAME;
    *out_h = (int32_t)kiln_conv_out_size(same, s->in_h, s->fh, s->stride, s->dilation);
    *out_w = (int32_t)kiln_conv_out_size(same, s->in_w, s->fw, s->stride, s->dilation);
    const int32_t ishape[4] = {s->batch, s->in_h, s->in_w, s->in_c};
    const int32_t wshape[4] = {n, s->fh, s->fw, s->in_c}, bshape[1] = {n};
    const int32_t oshape[4] = {s->batch, *out_h, *out_w, n};
    t_in = kiln_model_add_tensor(m, "in", KILN_I8, 4, ishape, &qi, NULL, &err);
    t_w = kiln_model_add_tensor(m, "w", KILN_I8, 4, wshape, &qf, w, &err);
    t_b = kiln_model_add_tensor(m, "b", KILN_I32, 1, bshape, &qb, bias, &err);
    t_out = kiln_model_add_tensor(m, "out", KILN_I8, 4, oshape, &qo, NULL, &err);
  }
  kiln_op_options o;
  memset(&o, 0, sizeof o);
  o.activation = q->act;
  if (s->fc) {
    o.type = KILN_OPTS_FULLY_CONNECTED;
  } else {
    o.type = KILN_OPTS_CONV2D;
    o.padding = s->padding;
    o.stride_h = o.stride_w = s->stride;
    o.dilation_h = o.dilation_w = s->dilation;
  }
  const int32_t inputs[3] = {t_in, t_w, t_b};
  if (t_in < 0 || t_w < 0 || t_b < 0 || t_out < 0 ||
      kiln_model_add_op(m, s->fc ? KILN_OP_FULLY_CONNECTED : KILN_OP_CONV_2D, NULL, inputs, 3,
                        &t_out, 1, &o, NULL, 0, &err) < 0 ||
      kiln_model_set_io(m, &t_in, 1, &t_out, 1, &err) != KILN_OK) {
    fprintf(stderr, "building the model: %s\n", err.msg);
    kiln_model_free(m);
    m = NULL;
  }
done:
  free(f_scale);
  free(b_scale);
  free(f_zp);
  free(b_zp);
  free(w);
  free(bias);
  return m;
}

/* ---- Running ---- */

/* Runs m on input (bytes) with the options; copies the output to out (bytes
 * out_bytes) and the scratch bytes to *scratch. false on failure. */
static bool run(const kiln_model *m, const kiln_interp_options *opt, const int8_t *input,
                size_t in_bytes, int8_t *out, size_t out_bytes, size_t *scratch) {
  kiln_interp *it = NULL;
  kiln_error err;
  if (kiln_interp_create(m, opt, &it, &err) != KILN_OK) {
    fprintf(stderr, "create: %s\n", err.msg);
    return false;
  }
  kiln_tensor_view vin = kiln_interp_input(it, 0), vout = kiln_interp_output(it, 0);
  bool ok = vin.bytes == in_bytes && vout.bytes == out_bytes;
  if (ok) {
    memcpy(vin.data, input, in_bytes);
    ok = kiln_interp_invoke(it, &err) == KILN_OK;
    if (ok) memcpy(out, vout.data, out_bytes);
  }
  *scratch = kiln_interp_memory(it).scratch_bytes;
  kiln_interp_free(it);
  return ok;
}

static int g_cases;

static void check_case(const model_spec *s, const quant_case *q, uint64_t seed) {
  int32_t out_h = 0, out_w = 0;
  kiln_model *m = build(s, q, seed, &out_h, &out_w);
  CHECK(m != NULL);
  if (!m) return;
  const size_t in_bytes = (size_t)s->batch * (size_t)s->in_h * (size_t)s->in_w * (size_t)s->in_c;
  const size_t out_bytes = (size_t)s->batch * (size_t)out_h * (size_t)out_w * (size_t)s->out_c;
  int8_t *input = malloc(in_bytes), *want = malloc(out_bytes), *got = malloc(out_bytes);
  CHECK(input && want && got);
  if (input && want && got) {
    test_rng r = {seed ^ 0x9e3779b97f4a7c15ull};
    for (size_t i = 0; i < in_bytes; i++) {
      const int32_t pick = test_rand_int(&r, 0, 9);
      input[i] = (int8_t)(pick == 0 ? -128 : pick == 1 ? 127 : test_rand_int(&r, -128, 127));
    }
    kiln_interp_options ref = {1, true, false};
    size_t scratch = 0;
    CHECK(run(m, &ref, input, in_bytes, want, out_bytes, &scratch));
    for (int32_t threads = 1; threads <= 3; threads++) {
      kiln_interp_options fast = {threads, false, false};
      memset(got, 0x55, out_bytes);
      const bool ok = run(m, &fast, input, in_bytes, got, out_bytes, &scratch);
      CHECK(ok);
      size_t bad = 0, first = 0;
      for (size_t i = out_bytes; i-- > 0;)
        if (got[i] != want[i]) {
          bad++;
          first = i;
        }
      CHECK_MSG(ok && bad == 0,
                "%s %dx%dx%dx%d -> %d f%dx%d s%d d%d %s, in_zp %d out_zp %d scales %d bias %s "
                "act %d, %d threads: %zu of %zu differ (first at %zu: %d, expected %d)",
                s->fc ? "FC" : "CONV", (int)s->batch, (int)s->in_h, (int)s->in_w, (int)s->in_c,
                (int)s->out_c, (int)s->fh, (int)s->fw, (int)s->stride, (int)s->dilation,
                s->padding == KILN_PAD_SAME ? "SAME" : "VALID", (int)q->in_zp, (int)q->out_zp,
                (int)q->sc, q->big_bias ? "big" : "small", (int)q->act, (int)threads, bad,
                out_bytes, first, got[first], want[first]);
      /* The fast path ran (it always needs scratch for packed rows). */
      if (kiln_s8_gemm_select(kiln_cpu_isa())) CHECK_MSG(scratch > 0, "fast path not taken");
    }
    g_cases++;
  }
  free(input);
  free(want);
  free(got);
  kiln_model_free(m);
}

static void sweep(const model_spec *specs, size_t n_specs) {
  for (size_t i = 0; i < n_specs; i++)
    for (size_t j = 0; j < N_QUANT; j++) check_case(&specs[i], &quant_cases[j], 1000u * i + j);
}

/* ---- The sweeps ---- */

#define CONV(b, h, w, c, oc, f, s, d, pad) \
  {false, b, h, w, c, oc, f, f, s, d, pad, false}

static void test_conv_1x1(void) {
  static const model_spec specs[] = {
      CONV(1, 5, 7, 16, 32, 1, 1, 1, KILN_PAD_SAME),   /* K 16, N 32: whole tiles */
      CONV(1, 3, 3, 5, 17, 1, 1, 1, KILN_PAD_VALID),   /* K 5, N 17 */
      CONV(1, 1, 1, 3, 1, 1, 1, 1, KILN_PAD_SAME),     /* one row, one column */
      CONV(1, 2, 3, 100, 40, 1, 1, 1, KILN_PAD_SAME),  /* K 100: not a multiple of 64 */
      CONV(1, 9, 9, 96, 24, 1, 1, 1, KILN_PAD_VALID),  /* N 24 */
      CONV(1, 30, 30, 24, 72, 1, 1, 1, KILN_PAD_SAME), /* many row tiles */
      CONV(1, 2, 2, 64, 300, 1, 1, 1, KILN_PAD_SAME),  /* few rows, columns split */
      CONV(1, 8, 8, 24, 16, 1, 2, 1, KILN_PAD_SAME),   /* 1x1 stride 2: gathered rows */
      CONV(2, 5, 4, 19, 33, 1, 1, 1, KILN_PAD_VALID),  /* batch 2 */
  };
  sweep(specs, sizeof specs / sizeof specs[0]);
}

static void test_conv_spatial(void) {
  static const model_spec specs[] = {
      CONV(1, 6, 5, 3, 8, 3, 1, 1, KILN_PAD_SAME),      /* first-layer-like, K 27 */
      CONV(1, 17, 16, 3, 32, 3, 2, 1, KILN_PAD_SAME),   /* first layer, stride 2 */
      CONV(1, 7, 7, 13, 35, 3, 1, 1, KILN_PAD_SAME),    /* K 117 */
      CONV(1, 11, 11, 17, 20, 3, 2, 1, KILN_PAD_VALID), /* stride 2 VALID */
      CONV(1, 8, 8, 6, 10, 5, 1, 1, KILN_PAD_VALID),    /* 5x5 */
      CONV(1, 9, 9, 4, 33, 5, 2, 1, KILN_PAD_SAME),     /* 5x5 stride 2, asymmetric padding */
      CONV(1, 9, 9, 8, 16, 3, 1, 2, KILN_PAD_SAME),     /* dilation 2 */
      CONV(1, 10, 9, 5, 7, 3, 2, 2, KILN_PAD_VALID),    /* dilation 2, stride 2 */
      CONV(2, 6, 6, 7, 19, 3, 1, 1, KILN_PAD_SAME),     /* batch 2 */
      CONV(1, 5, 5, 70, 70, 3, 1, 1, KILN_PAD_SAME),    /* K 630 */
      CONV(1, 3, 2, 2, 5, 3, 1, 1, KILN_PAD_SAME),      /* a window mostly padding */
  };
  sweep(specs, sizeof specs / sizeof specs[0]);
}

#define FC(b, in, out, per_tensor) {true, b, 1, 1, in, out, 1, 1, 1, 1, KILN_PAD_VALID, per_tensor}

static void test_fully_connected(void) {
  static const model_spec specs[] = {
      FC(1, 64, 10, false),   FC(3, 100, 37, false), FC(2, 7, 3, false),
      FC(1, 1280, 1001, false), FC(5, 33, 130, true), FC(9, 256, 24, true),
      FC(40, 200, 50, false),
  };
  sweep(specs, sizeof specs / sizeof specs[0]);
}

/* ---- Every kernel ---- */

/* Runs this test again with only kern's ISA bits; returns its exit status. */
static int run_with_kernel(const char *self, const kiln_s8_gemm_kernel *kern) {
  char mask[32];
  snprintf(mask, sizeof mask, "KILN_ISA_MASK=%x", (unsigned)kern->isa);
  size_t n_env = 0;
  while (environ[n_env]) n_env++;
  char **env = calloc(n_env + 2, sizeof *env);
  if (!env) return -1;
  size_t j = 0;
  for (size_t i = 0; i < n_env; i++)
    if (strncmp(environ[i], "KILN_ISA_MASK=", 14) != 0) env[j++] = environ[i];
  env[j++] = mask;
  env[j] = NULL;
  char *argv[] = {(char *)self, NULL};
  pid_t pid;
  int status = -1;
  if (posix_spawn(&pid, self, NULL, NULL, argv, env) == 0 &&
      waitpid(pid, &status, 0) == pid && WIFEXITED(status))
    status = WEXITSTATUS(status);
  else
    status = -1;
  free(env);
  return status;
}

static void test_other_kernels(const char *self) {
  const kiln_s8_gemm_kernel *best = kiln_s8_gemm_select(kiln_cpu_isa());
  for (int32_t i = 0; i < kiln_s8_gemm_kernel_count(); i++) {
    const kiln_s8_gemm_kernel *kern = kiln_s8_gemm_kernel_at(i);
    if (kern == best || (kern->isa & kiln_cpu_isa()) != kern->isa) continue;
    fprintf(stderr, "-- again with %s only\n", kern->name);
    CHECK_MSG(run_with_kernel(self, kern) == 0, "the sweep with %s failed", kern->name);
  }
}

int main(int argc, char **argv) {
  (void)argc;
  const kiln_s8_gemm_kernel *kern = kiln_s8_gemm_select(kiln_cpu_isa());
  fprintf(stderr, "kernel: %s\n", kern ? kern->name : "none (reference only)");
  RUN(test_conv_1x1);
  RUN(test_conv_spatial);
  RUN(test_fully_connected);
  fprintf(stderr, "%d cases\n", g_cases);
  if (!getenv("KILN_ISA_MASK")) test_other_kernels(argv[0]);
  return test_summary();
}
