/*
 * Tests of SOFTMAX (kernels/ref/softmax_ref.c) and of the gemmlowp-style
 * fixed-point helpers it is built on (kernels/fixedpoint.h).
 *
 * The fixed-point functions are checked against the real functions they
 * approximate over their whole input ranges, and the primitives (rounding
 * half sum, saturating power-of-two multiply, int16 rounding) against
 * formulas written here. Float softmax is compared with a double-precision
 * loop; quantized softmax, whose only definition is TFLite's integer
 * algorithm, is checked to be within 1 LSB of the real softmax over swept
 * depths, input scales (several orders of magnitude), betas and zero
 * points (bit-exactness with LiteRT: test_kernels_elementwise_golden).
 */
#include <float.h>
#include <math.h>
#include <string.h>

#include "kernels/fixedpoint.h"
#include "kernels/ref/elementwise_ref.h"
#include "testutil.h"

static double to_real(int32_t raw, int k) { return raw / ldexp(1.0, 31 - k); }

/* ---- Fixed-point primitives ---- */

static void test_primitives(void) {
  test_rng rng = {51};
  for (int i = 0; i < 100000; i++) {
    const int32_t a = (int32_t)test_rand_u32(&rng), b = (int32_t)test_rand_u32(&rng);
    /* (a + b) / 2, halves away from zero */
    const int64_t sum = (int64_t)a + b;
    const int64_t half = sum >= 0 ? (sum + 1) / 2 : -((-sum + 1) / 2);
    CHECK(kiln_fp_rounding_half_sum(a, b) == half);
    /* x * 2^e saturating, e > 0 */
    const int e = test_rand_int(&rng, 1, 30);
    const int64_t wide = (int64_t)a * ((int64_t)1 << e);
    const int32_t sat = wide > INT32_MAX ? INT32_MAX : (wide < INT32_MIN ? INT32_MIN : (int32_t)wide);
    /* gemmlowp saturates at |x| > 2^(31-e) - 1, which differs from exact
     * saturation only for x = -2^(31-e): it gives INT32_MIN either way. */
    CHECK(kiln_fp_mul_pot(a, e) == sat);
    CHECK(kiln_fp_rescale(a, 5, 5) == a);
  }
  CHECK(kiln_fp_mul_pot(-3, -1) == -2 && kiln_fp_mul_pot(3, -1) == 2 && kiln_fp_mul_pot(5, -2) == 1);
  CHECK(kiln_fp_one(0) == INT32_MAX && kiln_fp_one(2) == (1 << 29));
  /* int16 helpers against the definitions */
  for (int a = -32768; a <= 32767; a += 7) {
    for (int b = -32768; b <= 32767; b += 1031) {
      const int32_t ab = a * b;
      int32_t want = (a == -32768 && b == -32768) ? 32767 : (ab + (ab >= 0 ? 16384 : 1 - 16384)) / 32768;
      CHECK(kiln_srdhm16((int16_t)a, (int16_t)b) == want);
      want = (a == -32768 && b == -32768) ? 32767 : ab / 32768;
      CHECK(kiln_sdhm16((int16_t)a, (int16_t)b) == want);
    }
    for (int e = 0; e <= 15; e++) {
      /* nearest, halves away from zero */
      const double q = a / ldexp(1.0, e);
      const int32_t want = (int32_t)(q >= 0 ? floor(q + 0.5) : -floor(-q + 0.5));
      CHECK(kiln_rounding_divide_by_pot16((int16_t)a, e) == want);
    }
    const int64_t shifted = (int64_t)a * 8;
    CHECK(kiln_saturating_left_shift16((int16_t)a, 3) ==
          (shifted > 32767 ? 32767 : (shifted < -32768 ? -32768 : shifted)));
  }
  /* gemmlowp's int16 RoundingDivideByPOT truncates its mask to 16 bits for
   * exponents >= 16: (x >> e) + (x > -1 + (x < 0)). */
  CHECK(kiln_rounding_divide_by_pot16(0, 16) == 1);
  CHECK(kiln_rounding_divide_by_pot16(100, 20) == 1);
  CHECK(kiln_rounding_divide_by_pot16(-1, 16) == -1);
  CHECK(kiln_rounding_divide_by_pot16(-100, 16) == -1);
}

/* ---- Fixed-point functions against the real ones ----
 * Bounds: gemmlowp's exp is a 4th-order Taylor polynomial on [-1/4, 0]
 * (error up to (1/8)^5 / 120 ~ 2.3e-7); the divisions are three
 * Newton-Raphson steps in Q2.29 (a few units of 2^-29). */

static void test_exp_on_negative_values(void) {
  test_rng rng = {52};
  const int ks[] = {0, 1, 2, 3, 4, 5, 6, 8, 12, 20};
  double worst = 0;
  for (size_t j = 0; j < sizeof ks / sizeof ks[0]; j++) {
    const int k = ks[j];
    for (int i = 0; i < 20000; i++) {
      int32_t a = -(int32_t)(test_rand_u32(&rng) >> 1);
      if (i < 64) a = -(i << (31 - k > 6 ? 31 - k - 6 : 0)); /* small exact steps */
      const double x = to_real(a, k);
      const double got = to_real(kiln_fp_exp_on_negative_values(a, k), 0);
      double want = exp(x);
      if (k > 5 && x < -32) want = 0; /* gemmlowp clamps below -32 */
      const double err = fabs(got - want);
      worst = err > worst ? err : worst;
      CHECK_MSG(err < 3e-7, "exp(%.9g) with %d integer bits: %.12g vs %.12g", x, k, got, want);
    }
  }
  CHECK(kiln_fp_exp_on_negative_values(0, 5) == INT32_MAX);
  CHECK(worst > 0);
}

static void test_one_over_one_plus_x(void) {
  test_rng rng = {53};
  for (int i = 0; i < 100000; i++) {
    const int32_t a = (int32_t)(test_rand_u32(&rng) >> 1);
    const double x = to_real(a, 0);
    CHECK(fabs(to_real(kiln_fp_one_over_one_plus_x_for_x_in_0_1(a), 0) - 1.0 / (1.0 + x)) < 4e-9);
    /* reciprocal of a positive value with 12 integer bits */
    const int32_t s = (int32_t)(test_rand_u32(&rng) >> 1) | 1;
    int bits;
    const int32_t r = kiln_fp_reciprocal(s, 12, &bits);
    CHECK(fabs(to_real(r, 0) * ldexp(1.0, -bits) * to_real(s, 12) - 1.0) < 6e-9);
  }
}

/* ---- Softmax ---- */

static void test_f32_softmax(void) {
  test_rng rng = {55};
  static float in[4096], out[4096];
  const float betas[] = {1.0f, 0.5f, 2.0f, 1e-3f, 10.0f};
  for (int trial = 0; trial < 200; trial++) {
    const int32_t depth = test_rand_int(&rng, 1, 300);
    const int64_t outer = test_rand_int(&rng, 1, 4096 / depth < 5 ? 4096 / depth : 5);
    const float beta = betas[trial % 5];
    const float spread = test_rand_float(&rng, 0.1f, 30.0f);
    for (int64_t i = 0; i < outer * depth; i++) in[i] = test_rand_float(&rng, -spread, spread);
    kiln_f32_softmax_ref(outer, depth, in, out, beta);
    for (int64_t r = 0; r < outer; r++) {
      const float *x = in + r * depth;
      double max = -INFINITY, sum = 0, total = 0;
      for (int32_t c = 0; c < depth; c++) max = x[c] > max ? x[c] : max;
      for (int32_t c = 0; c < depth; c++) sum += exp(((double)x[c] - max) * beta);
      for (int32_t c = 0; c < depth; c++) {
        const double want = exp(((double)x[c] - max) * beta) / sum;
        CHECK_MSG(fabs(out[r * depth + c] - want) <= 1e-5 * want + 1e-7, "%g vs %g",
                  (double)out[r * depth + c], want);
        total += out[r * depth + c];
      }
      CHECK(fabs(total - 1.0) < 1e-4);
    }
  }
}

static void test_softmax_params(void) {
  kiln_softmax_q p;
  /* beta * scale * 2^26 <= 1 cannot be represented by TFLite. */
  CHECK(!kiln_softmax_q_init(1.0f, 1.0f / 67108864.0f, &p));
  REQUIRE(kiln_softmax_q_init(1.0f, 0.1f, &p));
  /* 0.1 * 2^26 = 6710886.4 = 0.8 * 2^23 */
  CHECK(p.input_left_shift == 23);
  CHECK(p.input_multiplier == (int32_t)llround((double)0.1f * 67108864.0 / 8388608.0 * 2147483648.0));
  CHECK(p.diff_min == -(int32_t)floor(31.0 * 67108864.0 / 8388608.0));
  /* Huge rescales are capped at 2^31 - 1: then only the maximum survives. */
  REQUIRE(kiln_softmax_q_init(100.0f, 100.0f, &p));
  CHECK(p.input_left_shift == 31 && p.input_multiplier == INT32_MAX && p.diff_min == 0);
}

static int32_t load(const void *p, int64_t i, bool is_signed) {
  return is_signed ? ((const int8_t *)p)[i] : ((const uint8_t *)p)[i];
}

static void check_quantized_softmax(bool is_signed) {
  test_rng rng = {is_signed ? 56u : 57u};
  static int8_t in[4096], out[4096], out2[4096];
  const int32_t qmin = is_signed ? -128 : 0, qmax = is_signed ? 127 : 255;
  const float betas[] = {1.0f, 0.5f, 2.0f, 0.1f};
  int rows = 0, zeros = 0;
  for (int trial = 0; trial < 600; trial++) {
    const int32_t depth = test_rand_int(&rng, 1, trial % 10 == 0 ? 400 : 60);
    const int64_t outer = test_rand_int(&rng, 1, 4);
    const float beta = betas[trial % 4];
    /* Input scales from 1e-2 (flat rows) to 10 (one-hot rows); the row sum
     * stays below 512, where TFLite's kernel is defined. */
    const float scale = (float)pow(10.0, test_rand_float(&rng, -2, 1));
    for (int64_t i = 0; i < outer * depth; i++) {
      const int32_t v = test_rand_int(&rng, qmin, qmax);
      if (is_signed)
        in[i] = (int8_t)v;
      else
        ((uint8_t *)in)[i] = (uint8_t)v;
    }
    kiln_softmax_q p;
    REQUIRE(kiln_softmax_q_init(beta, scale, &p));
    if (is_signed) {
      kiln_s8_softmax_ref(outer, depth, in, out, &p);
      memcpy(out2, in, (size_t)(outer * depth));
      kiln_s8_softmax_ref(outer, depth, out2, out2, &p); /* in place */
    } else {
      kiln_u8_softmax_ref(outer, depth, (uint8_t *)in, (uint8_t *)out, &p);
      memcpy(out2, in, (size_t)(outer * depth));
      kiln_u8_softmax_ref(outer, depth, (uint8_t *)out2, (uint8_t *)out2, &p);
    }
    CHECK(memcmp(out, out2, (size_t)(outer * depth)) == 0);
    for (int64_t r = 0; r < outer; r++) {
      int32_t max = qmin;
      for (int32_t c = 0; c < depth; c++) {
        const int32_t v = load(in, r * depth + c, is_signed);
        max = v > max ? v : max;
      }
      double sum = 0;
      for (int32_t c = 0; c < depth; c++)
        sum += exp((double)beta * scale * (load(in, r * depth + c, is_signed) - max));
      if (sum >= 511) continue;
      for (int32_t c = 0; c < depth; c++) {
        const int32_t diff = load(in, r * depth + c, is_signed) - max;
        const double real = exp((double)beta * scale * diff) / sum;
        double v = real * 256.0 + qmin;
        v = v > qmax ? qmax : v;
        const int32_t nearest = (int32_t)lround(v);
        const int32_t got = load(out, r * depth + c, is_signed);
        CHECK_MSG(abs(got - nearest) <= 1, "depth %d scale %g beta %g diff %d: got %d want %d",
                  (int)depth, (double)scale, (double)beta, (int)diff, (int)got, (int)nearest);
        zeros += got == qmin;
      }
      rows++;
    }
  }
  CHECK(rows > 1000);
  CHECK(zeros > 100);
}

static void test_s8_softmax(void) { check_quantized_softmax(true); }
static void test_u8_softmax(void) { check_quantized_softmax(false); }

/* Rows whose exponentials sum to 512 or more make TFLite abort; kiln writes
 * the minimum for such a row instead of failing. */
static void test_softmax_sum_limit(void) {
  static int8_t in[600], out[600];
  memset(in, 5, sizeof in);
  kiln_softmax_q p;
  REQUIRE(kiln_softmax_q_init(1.0f, 0.1f, &p));
  kiln_s8_softmax_ref(1, 600, in, out, &p);
  for (int i = 0; i < 600; i++) CHECK(out[i] == -128);
  /* 511 equal values still work: each gets 256/511 of one, rounds to 1. */
  kiln_s8_softmax_ref(1, 511, in, out, &p);
  for (int i = 0; i < 511; i++) CHECK(out[i] == -128 + 1 || out[i] == -128);
}

int main(void) {
  RUN(test_primitives);
  RUN(test_exp_on_negative_values);
  RUN(test_one_over_one_plus_x);
  RUN(test_f32_softmax);
  RUN(test_softmax_params);
  RUN(test_s8_softmax);
  RUN(test_u8_softmax);
  RUN(test_softmax_sum_limit);
  return test_summary();
}
