/*
 * Tests of the NEON requantization primitives every ARM64 int8 kernel
 * inlines (kernels/arm/requant_neon.h) against kernels/quant_math.h:
 * SQRDMULH against kiln_srdhm on the edge products (INT32_MIN * INT32_MIN
 * included) and random ones; kiln_rdbp_neon against
 * kiln_rounding_divide_by_pot for every exponent 0..31 on every x within
 * 2^16 of 0, of INT32_MIN and of INT32_MAX, on both sides of every rounding
 * boundary of random multiples of 2^exponent, and on random x;
 * kiln_mbqm_neon against kiln_mul_by_quantized_multiplier on random and
 * edge triples. Built for ARM64 only (tests/CMakeLists.txt).
 */
#include <arm_neon.h>
#include <stdio.h>

#include "kernels/arm/requant_neon.h"
#include "kernels/quant_math.h"
#include "testutil.h"

/* Four lanes at once: x[0..3] against the scalar reference; counts and
 * reports mismatches. */
static int64_t g_bad;

static void check_rdbp4(const int32_t x[4], int32_t e) {
  int32_t got[4];
  vst1q_s32(got, kiln_rdbp_neon(vld1q_s32(x), vdupq_n_s32(-e)));
  for (int i = 0; i < 4; i++) {
    const int32_t want = kiln_rounding_divide_by_pot(x[i], e);
    if (got[i] != want && g_bad++ < 5)
      fprintf(stderr, "rdbp(%d, %d) = %d, reference %d\n", (int)x[i], (int)e, (int)got[i],
              (int)want);
  }
}

/* Every x in [lo, lo + count) (count a multiple of 4) for exponent e. */
static void rdbp_range(int64_t lo, int64_t count, int32_t e) {
  for (int64_t v = lo; v < lo + count; v += 4) {
    const int32_t x[4] = {(int32_t)v, (int32_t)(v + 1), (int32_t)(v + 2), (int32_t)(v + 3)};
    check_rdbp4(x, e);
  }
}

static void test_rounding_divide(void) {
  g_bad = 0;
  test_rng rng = {11};
  for (int32_t e = 0; e <= 31; e++) {
    rdbp_range(-(1 << 16), 1 << 17, e);
    rdbp_range(INT32_MIN, 1 << 16, e);
    rdbp_range((int64_t)INT32_MAX + 1 - (1 << 16), 1 << 16, e);
    /* Both sides of the ties of random multiples of 2^e. */
    for (int32_t trial = 0; trial < 2000; trial++) {
      const int64_t r = (int32_t)test_rand_u32(&rng);
      const int64_t base = r - (int64_t)((uint64_t)r & (((uint64_t)1 << e) - 1));
      const int64_t tie = base + (e > 0 ? (int64_t)1 << (e - 1) : 0);
      int32_t x[4];
      for (int i = 0; i < 4; i++) {
        int64_t v = tie + i - 2;
        if (v < INT32_MIN) v = INT32_MIN;
        if (v > INT32_MAX) v = INT32_MAX;
        x[i] = (int32_t)v;
      }
      check_rdbp4(x, e);
    }
    for (int32_t trial = 0; trial < 20000; trial++) {
      const int32_t x[4] = {(int32_t)test_rand_u32(&rng), (int32_t)test_rand_u32(&rng),
                            (int32_t)test_rand_u32(&rng) >> (trial % 32),
                            -((int32_t)(test_rand_u32(&rng) >> 1) >> (trial % 31))};
      check_rdbp4(x, e);
    }
  }
  CHECK_MSG(g_bad == 0, "%lld rounding divides differ", (long long)g_bad);
}

static void test_doubling_high_mul(void) {
  static const int32_t edge[] = {
      INT32_MIN, INT32_MIN + 1, -(1 << 30), -2,         -1,          0,     1,      2,
      1 << 30,   INT32_MAX - 1, INT32_MAX,  1518500250, -1518500250, 46341, -46341, 3};
  const int32_t n = (int32_t)(sizeof edge / sizeof edge[0]);
  int64_t bad = 0;
  test_rng rng = {12};
  for (int32_t trial = 0; trial < n * n + 400000; trial++) {
    int32_t a[4], b[4], got[4];
    for (int i = 0; i < 4; i++) {
      if (trial < n * n) {
        a[i] = edge[trial / n];
        b[i] = edge[(trial % n + i) % n];
      } else {
        a[i] = (int32_t)test_rand_u32(&rng) >> (test_rand_u32(&rng) % 32);
        b[i] = (int32_t)test_rand_u32(&rng);
      }
    }
    vst1q_s32(got, vqrdmulhq_s32(vld1q_s32(a), vld1q_s32(b)));
    for (int i = 0; i < 4; i++) {
      const int32_t want = kiln_srdhm(a[i], b[i]);
      if (got[i] != want && bad++ < 5)
        fprintf(stderr, "srdhm(%d, %d) = %d, reference %d\n", (int)a[i], (int)b[i], (int)got[i],
                (int)want);
    }
  }
  CHECK_MSG(bad == 0, "%lld doubling high multiplies differ", (long long)bad);
  /* The saturating case itself. */
  int32_t sat[4];
  vst1q_s32(sat, vqrdmulhq_s32(vdupq_n_s32(INT32_MIN), vdupq_n_s32(INT32_MIN)));
  CHECK(sat[0] == INT32_MAX && kiln_srdhm(INT32_MIN, INT32_MIN) == INT32_MAX);
}

static void test_multiply_by_quantized_multiplier(void) {
  static const int32_t edge_x[] = {INT32_MIN, INT32_MIN + 1, -1, 0, 1, INT32_MAX, 1 << 30, -3};
  static const int32_t edge_m[] = {INT32_MIN, INT32_MAX, 1 << 30, 0, 1, -1, 1518500250, 7};
  int64_t bad = 0;
  test_rng rng = {13};
  for (int32_t trial = 0; trial < 64 * 62 + 300000; trial++) {
    int32_t x[4], m[4], left[4], neg_right[4], got[4], shift[4];
    for (int i = 0; i < 4; i++) {
      if (trial < 64 * 62) {
        x[i] = edge_x[(trial + i) % 8];
        m[i] = edge_m[trial / 8 % 8];
        shift[i] = trial / 64 - 31; /* -31 .. 30 */
      } else {
        x[i] = (int32_t)test_rand_u32(&rng) >> (test_rand_u32(&rng) % 32);
        m[i] = trial % 3 ? test_rand_int(&rng, 1 << 30, INT32_MAX) : (int32_t)test_rand_u32(&rng);
        shift[i] = test_rand_int(&rng, -31, 30);
      }
      left[i] = shift[i] > 0 ? shift[i] : 0;
      neg_right[i] = shift[i] > 0 ? 0 : shift[i];
    }
    vst1q_s32(got,
              kiln_mbqm_neon(vld1q_s32(x), vld1q_s32(m), vld1q_s32(left), vld1q_s32(neg_right)));
    for (int i = 0; i < 4; i++) {
      const int32_t want = kiln_mul_by_quantized_multiplier(x[i], m[i], shift[i]);
      if (got[i] != want && bad++ < 5)
        fprintf(stderr, "mbqm(%d, %d, %d) = %d, reference %d\n", (int)x[i], (int)m[i],
                (int)shift[i], (int)got[i], (int)want);
    }
  }
  CHECK_MSG(bad == 0, "%lld requantizations differ", (long long)bad);
}

int main(void) {
  RUN(test_doubling_high_mul);
  RUN(test_rounding_divide);
  RUN(test_multiply_by_quantized_multiplier);
  return test_summary();
}
