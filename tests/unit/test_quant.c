/* Quantizer internals: zero-point choice, histogram growth, and the three
 * range-selection methods on distributions with known answers. */
#include <math.h>
#include <string.h>

#include "quant/quant_int.h"
#include "testutil.h"

static void test_params_for_range(void) {
  float s;
  int32_t z;
  kiln_quant_params_for_range(-1.0f, 1.0f, &s, &z);
  CHECK(fabsf(s - 2.0f / 255.0f) < 1e-9f && (z == 0 || z == -1));
  kiln_quant_params_for_range(0.0f, 6.0f, &s, &z); /* ReLU6: zero at the bottom */
  CHECK(fabsf(s - 6.0f / 255.0f) < 1e-9f && z == -128);
  kiln_quant_params_for_range(-5.0f, 0.0f, &s, &z);
  CHECK(z == 127);
  kiln_quant_params_for_range(2.0f, 3.0f, &s, &z); /* widened to include 0 */
  CHECK(fabsf(s - 3.0f / 255.0f) < 1e-9f && z == -128);
  kiln_quant_params_for_range(0.0f, 0.0f, &s, &z); /* a constant zero tensor */
  CHECK(s > 0.0f && z >= -128 && z <= 127);
  /* Zero is exactly representable: real 0 maps to an integer. */
  test_rng rng = {5};
  for (int i = 0; i < 1000; i++) {
    float lo = -test_rand_float(&rng, 0.0f, 10.0f), hi = test_rand_float(&rng, 0.01f, 10.0f);
    kiln_quant_params_for_range(lo, hi, &s, &z);
    CHECK(z >= -128 && z <= 127);
    /* The nudged zero point loses at most half a step at either end. */
    CHECK(s * (float)(127 - z) >= hi - 0.51f * s);
    CHECK(s * (float)(-128 - z) <= lo + 0.51f * s);
  }
}

static void test_histogram_growth(void) {
  kiln_tensor_stats st;
  memset(&st, 0, sizeof st);
  st.tracked = true;
  kiln_error err;
  float small[4] = {-0.5f, 0.25f, 0.1f, 0.0f};
  REQUIRE(kiln_stats_add(&st, small, 4, &err) == KILN_OK);
  float bound0 = st.bound;
  float big[2] = {100.0f, -37.0f};
  REQUIRE(kiln_stats_add(&st, big, 2, &err) == KILN_OK);
  CHECK(st.bound > 100.0f && st.bound > bound0 && st.count == 6);
  uint64_t total = 0;
  for (int b = 0; b < KILN_HIST_BINS; b++) total += st.hist[b];
  CHECK(total == 6);
  CHECK(st.min == -37.0f && st.max == 100.0f);
  float bad[1] = {NAN};
  CHECK(kiln_stats_add(&st, bad, 1, &err) == KILN_ERR_FORMAT);
  kiln_free(st.hist);
}

/* A Laplace-like heavy tail: most values in [-1, 1], a few outliers at 50. */
static void fill_heavy_tail(kiln_tensor_stats *st) {
  memset(st, 0, sizeof *st);
  st->tracked = true;
  test_rng rng = {9};
  float x[1000];
  kiln_error err;
  for (int rep = 0; rep < 100; rep++) {
    for (int i = 0; i < 1000; i++) {
      float u = test_rand_float(&rng, 1e-6f, 1.0f);
      x[i] = (test_rand_u32(&rng) & 1 ? 1.0f : -1.0f) * -logf(u) * 0.3f;
    }
    if (rep == 0) x[0] = 50.0f;
    kiln_stats_add(st, x, 1000, &err);
  }
}

static void test_methods(void) {
  kiln_tensor_stats st;
  fill_heavy_tail(&st);
  kiln_quant_options opt = kiln_quant_options_default();
  float lo, hi;
  opt.method = KILN_CALIB_MINMAX;
  kiln_stats_range(&st, &opt, &lo, &hi);
  CHECK(hi == 50.0f && lo == st.min);
  opt.method = KILN_CALIB_PERCENTILE;
  opt.percentile = 99.9f;
  kiln_stats_range(&st, &opt, &lo, &hi);
  CHECK_MSG(hi > 1.0f && hi < 5.0f && lo < -1.0f && lo > -5.0f, "percentile range [%g, %g]", (double)lo, (double)hi);
  opt.method = KILN_CALIB_ENTROPY;
  kiln_stats_range(&st, &opt, &lo, &hi);
  CHECK_MSG(hi < 50.0f && lo <= 0.0f, "entropy clips the outlier: [%g, %g]", (double)lo, (double)hi);
  kiln_free(st.hist);
}

int main(void) {
  RUN(test_params_for_range);
  RUN(test_histogram_growth);
  RUN(test_methods);
  return test_summary();
}
