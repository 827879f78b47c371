/*
 * Tests of the one-input activation reference kernels (kernels/ref/
 * activation_ref.c): RELU, RELU6, RELU_N1_TO_1, LEAKY_RELU, HARD_SWISH,
 * LOGISTIC and TANH for f32, s8 and u8.
 *
 * Quantized RELU-family and LEAKY_RELU results are compared with an
 * independent computation from TFLite's specification; the LOGISTIC/TANH
 * tables with TFLite's LUTPopulate formula; and all quantized results,
 * HARD_SWISH included, are checked to be within 1 LSB of the real-valued
 * function (bit-exactness with LiteRT is covered by
 * test_kernels_elementwise_golden). Every quantized kernel sees all 256
 * input values for each swept (scale, zero point) pair. Float kernels are
 * compared with double-precision loops.
 */
#include <float.h>
#include <math.h>

#include "kernels/ref/elementwise_ref.h"
#include "testutil.h"

/* ---- The specification, written independently of kernels/ ---- */

static int64_t floor_div_pot(int64_t x, int e) {
  const int64_t d = (int64_t)1 << e;
  return x >= 0 ? x / d : -((-x + d - 1) / d);
}

static int32_t spec_srdhm(int32_t a, int32_t b) {
  if (a == INT32_MIN && b == INT32_MIN) return INT32_MAX;
  return (int32_t)floor_div_pot((int64_t)a * b + ((int64_t)1 << 30), 31);
}

static int32_t spec_round_div(int64_t x, int e) {
  if (e == 0) return (int32_t)x;
  const int64_t half = (int64_t)1 << (e - 1);
  return (int32_t)(x >= 0 ? floor_div_pot(x + half, e) : -floor_div_pot(-x + half, e));
}

static void spec_quantize(double real, int32_t *m, int *shift) {
  *m = 0;
  *shift = 0;
  if (real == 0) return;
  int s = 0;
  while (real >= 1.0) real /= 2, s++;
  while (real < 0.5) real *= 2, s--;
  int64_t q = llround(real * 2147483648.0);
  if (q == ((int64_t)1 << 31)) q /= 2, s++;
  if (s < -31) return;
  *m = (int32_t)q;
  *shift = s;
}

static int32_t spec_mbqm(int32_t x, int32_t m, int shift) {
  int64_t shifted = (int64_t)x * ((int64_t)1 << (shift > 0 ? shift : 0));
  shifted = (int64_t)(int32_t)(uint32_t)(uint64_t)shifted;
  return spec_round_div(spec_srdhm((int32_t)shifted, m), shift < 0 ? -shift : 0);
}

static int32_t clampi(int32_t x, int32_t lo, int32_t hi) { return x < lo ? lo : (x > hi ? hi : x); }

static int32_t spec_bound(float real, float scale, int32_t zp, int32_t qmin, int32_t qmax) {
  const double v = (double)zp + (double)roundf(real / scale);
  return v < qmin ? qmin : (v > qmax ? qmax : (int32_t)v);
}

static int32_t quantize_real(double real, float scale, int32_t zp, int32_t lo, int32_t hi) {
  const double v = real / scale + zp;
  if (v < lo) return lo;
  if (v > hi) return hi;
  return (int32_t)lround(v);
}

/* ---- Sweep helpers ---- */

typedef struct qcase {
  bool is_signed;
  int32_t qmin, qmax;
  float in_scale, out_scale;
  int32_t in_zp, out_zp;
  int8_t in[256];  /* every value of the type, as raw bytes */
  int8_t out[256];
} qcase;

static int32_t random_zp(test_rng *rng, int32_t qmin, int32_t qmax) {
  const int pick = test_rand_int(rng, 0, 3);
  return pick == 0 ? qmin : (pick == 1 ? qmax : test_rand_int(rng, qmin, qmax));
}

/* A case with scales 10^[-3, 1] (output relative to input by 10^[lo, hi]). */
static void random_case(test_rng *rng, bool is_signed, double rel_lo, double rel_hi, qcase *c) {
  c->is_signed = is_signed;
  c->qmin = is_signed ? -128 : 0;
  c->qmax = is_signed ? 127 : 255;
  c->in_scale = (float)pow(10.0, test_rand_float(rng, -3, 1));
  c->out_scale = c->in_scale * (float)pow(10.0, test_rand_float(rng, (float)rel_lo, (float)rel_hi));
  c->in_zp = random_zp(rng, c->qmin, c->qmax);
  c->out_zp = random_zp(rng, c->qmin, c->qmax);
  for (int i = 0; i < 256; i++) c->in[i] = (int8_t)(uint8_t)i;
}

static int32_t in_value(const qcase *c, int i) {
  return c->is_signed ? c->in[i] : (uint8_t)c->in[i];
}
static int32_t out_value(const qcase *c, int i) {
  return c->is_signed ? c->out[i] : (uint8_t)c->out[i];
}
static double in_real(const qcase *c, int i) {
  return c->in_scale * (double)(in_value(c, i) - c->in_zp);
}

/* ---- RELU family ---- */

static void test_f32_relu_family(void) {
  test_rng rng = {41};
  float in[1000], out[1000];
  for (int i = 0; i < 1000; i++) in[i] = test_rand_float(&rng, -10, 10);
  in[0] = 0.0f, in[1] = 6.0f, in[2] = -1.0f, in[3] = 1.0f, in[4] = INFINITY, in[5] = -INFINITY;
  kiln_f32_relu_ref(1000, in, out);
  for (int i = 0; i < 1000; i++) CHECK(out[i] == (float)fmax(0.0, in[i]));
  kiln_f32_relu6_ref(1000, in, out);
  for (int i = 0; i < 1000; i++) CHECK(out[i] == (float)fmin(6.0, fmax(0.0, in[i])));
  kiln_f32_relu_n1_to_1_ref(1000, in, out);
  for (int i = 0; i < 1000; i++) CHECK(out[i] == (float)fmin(1.0, fmax(-1.0, in[i])));
  /* NaN passes through RELU6 as in LiteRT. */
  const float nan_in = NAN;
  float nan_out = 0;
  kiln_f32_relu6_ref(1, &nan_in, &nan_out);
  CHECK(isnan(nan_out));
}

static void test_quantized_relu_family(void) {
  test_rng rng = {42};
  int cases = 0;
  for (int trial = 0; trial < 600; trial++) {
    qcase c;
    random_case(&rng, trial % 2 == 0, -1.5, 1.5, &c);
    const int act = trial % 3; /* 0 RELU, 1 RELU6, 2 RELU_N1_TO_1 */
    const float lo_real = act == 2 ? -1.0f : 0.0f;
    const int32_t lo = spec_bound(lo_real, c.out_scale, c.out_zp, c.qmin, c.qmax);
    const int32_t hi = act == 0 ? c.qmax
                                : spec_bound(act == 1 ? 6.0f : 1.0f, c.out_scale, c.out_zp,
                                             c.qmin, c.qmax);
    kiln_relu_q p;
    REQUIRE(kiln_relu_q_init(c.in_scale, c.in_zp, c.out_scale, c.out_zp, lo, hi, &p));
    if (c.is_signed)
      kiln_s8_relu_ref(256, c.in, c.out, &p);
    else
      kiln_u8_relu_ref(256, (const uint8_t *)c.in, (uint8_t *)c.out, &p);
    int32_t m;
    int sh;
    spec_quantize((double)(c.in_scale / c.out_scale), &m, &sh);
    for (int i = 0; i < 256; i++) {
      const int32_t x = in_value(&c, i);
      const int32_t want = clampi(c.out_zp + spec_mbqm(x - c.in_zp, m, sh), lo, hi);
      CHECK_MSG(out_value(&c, i) == want, "act %d trial %d x %d: got %d want %d", act, trial,
                (int)x, (int)out_value(&c, i), (int)want);
      double real = in_real(&c, i);
      real = real < lo_real ? lo_real : real;
      if (act == 1) real = real > 6 ? 6 : real;
      if (act == 2) real = real > 1 ? 1 : real;
      CHECK(abs(out_value(&c, i) - quantize_real(real, c.out_scale, c.out_zp, lo, hi)) <= 1);
    }
    cases++;
  }
  CHECK(cases == 600);
  kiln_relu_q p;
  CHECK(!kiln_relu_q_init(1.0f, 0, 1e-10f, 0, -128, 127, &p)); /* rescale >= 2^30 */
}

/* ---- LEAKY_RELU ---- */

static void test_leaky_relu(void) {
  test_rng rng = {43};
  const float alphas[] = {0.1f, 0.2f, 0.01f, 0.0f, 1.0f, 1.5f, 3.0f, -0.3f, -0.5f, -2.0f};
  float fin[512], fout[512];
  for (int i = 0; i < 512; i++) fin[i] = test_rand_float(&rng, -20, 20);
  for (size_t k = 0; k < sizeof alphas / sizeof alphas[0]; k++) {
    const float alpha = alphas[k];
    kiln_f32_leaky_relu_ref(512, fin, fout, alpha);
    for (int i = 0; i < 512; i++)
      CHECK(fout[i] == (fin[i] > 0 ? fin[i] : (float)((double)fin[i] * alpha)));
    for (int trial = 0; trial < 60; trial++) {
      qcase c;
      random_case(&rng, trial % 2 == 0, -1, 1, &c);
      kiln_leaky_relu_q p;
      REQUIRE(kiln_leaky_relu_q_init(c.in_scale, c.in_zp, c.out_scale, c.out_zp, alpha, &p));
      if (c.is_signed)
        kiln_s8_leaky_relu_ref(256, c.in, c.out, &p);
      else
        kiln_u8_leaky_relu_ref(256, (const uint8_t *)c.in, (uint8_t *)c.out, &p);
      /* TFLite: the identity and |alpha| rescales, the alpha product
       * negated when alpha < 0. */
      const float real_alpha = c.in_scale * alpha / c.out_scale;
      int32_t mi, ma;
      int si, sa;
      spec_quantize((double)(c.in_scale / c.out_scale), &mi, &si);
      spec_quantize(fabs((double)real_alpha), &ma, &sa);
      for (int i = 0; i < 256; i++) {
        const int32_t x = in_value(&c, i) - c.in_zp;
        int32_t v;
        if (x >= 0) {
          v = spec_mbqm(x, mi, si);
        } else {
          v = spec_mbqm(x, ma, sa);
          if (real_alpha < 0) v = -v;
        }
        const int32_t want = clampi(c.out_zp + v, c.qmin, c.qmax);
        CHECK_MSG(out_value(&c, i) == want, "alpha %g trial %d x %d: got %d want %d",
                  (double)alpha, trial, (int)x, (int)out_value(&c, i), (int)want);
        const double real = x >= 0 ? in_real(&c, i) : in_real(&c, i) * alpha;
        CHECK(abs(out_value(&c, i) - quantize_real(real, c.out_scale, c.out_zp, c.qmin, c.qmax)) <=
              1);
      }
    }
  }
}

/* ---- HARD_SWISH ---- */

static double hard_swish(double x) { return x * fmin(6.0, fmax(0.0, x + 3.0)) / 6.0; }

static void test_hard_swish(void) {
  test_rng rng = {44};
  float fin[1000], fout[1000];
  for (int i = 0; i < 1000; i++) fin[i] = test_rand_float(&rng, -8, 8);
  fin[0] = -3.0f, fin[1] = 3.0f, fin[2] = 0.0f;
  kiln_f32_hard_swish_ref(1000, fin, fout);
  for (int i = 0; i < 1000; i++) {
    const double want = hard_swish(fin[i]);
    CHECK(fabs(fout[i] - want) <= 1e-6 * fabs(want) + 1e-7);
  }
  int worst = 0, cases = 0;
  for (int trial = 0; trial < 1000; trial++) {
    qcase c;
    /* Output scales from the input's / 200 (the finest TFLite accepts is
     * / 256) to 10x coarser. */
    random_case(&rng, trial % 2 == 0, -2.3, 1, &c);
    kiln_hard_swish_q p;
    if (!kiln_hard_swish_q_init(c.in_scale, c.in_zp, c.out_scale, c.out_zp, &p)) {
      CHECK(c.out_scale < c.in_scale / 128.0f); /* refused only when the output is too fine */
      continue;
    }
    if (c.is_signed)
      kiln_s8_hard_swish_ref(256, c.in, c.out, &p);
    else
      kiln_u8_hard_swish_ref(256, (const uint8_t *)c.in, (uint8_t *)c.out, &p);
    for (int i = 0; i < 256; i++) {
      const int32_t want =
          quantize_real(hard_swish(in_real(&c, i)), c.out_scale, c.out_zp, c.qmin, c.qmax);
      const int err = abs(out_value(&c, i) - want);
      worst = err > worst ? err : worst;
      CHECK_MSG(err <= 1, "trial %d x %d: got %d, real value quantizes to %d", trial,
                (int)in_value(&c, i), (int)out_value(&c, i), (int)want);
    }
    cases++;
  }
  CHECK(cases > 700);
  CHECK(worst == 1); /* TFLite's fixed-point hard-swish is not exact */
  kiln_hard_swish_q p;
  CHECK(!kiln_hard_swish_q_init(1.0f, 0, 1.0f / 300.0f, 0, &p));
}

/* ---- LOGISTIC, TANH ---- */

static void test_f32_logistic_tanh(void) {
  test_rng rng = {45};
  float in[2000], out[2000];
  for (int i = 0; i < 2000; i++) in[i] = test_rand_float(&rng, -30, 30);
  kiln_f32_logistic_ref(2000, in, out);
  for (int i = 0; i < 2000; i++) {
    const double want = 1.0 / (1.0 + exp(-(double)in[i]));
    /* TFLite's reference uses exp(x) below -9 and 1 above 16.6. */
    const double tol = in[i] < -9 ? 2e-4 * want : 1e-6 * want + 1e-7;
    CHECK_MSG(fabs(out[i] - want) <= tol, "logistic(%g) = %g, want %g", (double)in[i],
              (double)out[i], want);
  }
  kiln_f32_tanh_ref(2000, in, out);
  for (int i = 0; i < 2000; i++) CHECK(fabs(out[i] - tanh(in[i])) <= 1e-6 * fabs(tanh(in[i])) + 1e-7);
}

static double logistic_d(double x) { return 1.0 / (1.0 + exp(-x)); }

/* The tables against TFLite's LUTPopulate formula (float arithmetic) and
 * against the real function. */
static void check_table(test_rng *rng, bool is_logistic) {
  for (int trial = 0; trial < 400; trial++) {
    qcase c;
    random_case(rng, trial % 2 == 0, 0, 0, &c);
    c.in_scale = (float)pow(10.0, test_rand_float(rng, -3, 0.5));
    c.out_scale = is_logistic ? 1.0f / 256 : 1.0f / 128;
    c.out_zp = is_logistic ? c.qmin : (c.is_signed ? 0 : 128);
    float (*fn)(float) = is_logistic ? kiln_logistic_table_fn : kiln_tanh_table_fn;
    if (c.is_signed) {
      int8_t lut[256];
      kiln_s8_lut_init(c.in_scale, c.in_zp, c.out_scale, c.out_zp, fn, lut);
      kiln_s8_lut_ref(256, c.in, c.out, lut);
    } else {
      uint8_t lut[256];
      kiln_u8_lut_init(c.in_scale, c.in_zp, c.out_scale, c.out_zp, fn, lut);
      kiln_u8_lut_ref(256, (const uint8_t *)c.in, (uint8_t *)c.out, lut);
    }
    for (int i = 0; i < 256; i++) {
      const float x = c.in_scale * (float)(in_value(&c, i) - c.in_zp);
      const float f = is_logistic ? 1.0f / (1.0f + expf(-x)) : tanhf(x);
      const int32_t want = clampi((int32_t)(roundf(f * (1.0f / c.out_scale)) + (float)c.out_zp),
                                  c.qmin, c.qmax);
      CHECK_MSG(out_value(&c, i) == want, "%s trial %d x %d: got %d want %d",
                is_logistic ? "logistic" : "tanh", trial, (int)in_value(&c, i),
                (int)out_value(&c, i), (int)want);
      const double real = is_logistic ? logistic_d(in_real(&c, i)) : tanh(in_real(&c, i));
      CHECK(abs(out_value(&c, i) - quantize_real(real, c.out_scale, c.out_zp, c.qmin, c.qmax)) <=
            1);
    }
  }
}

static void test_logistic_table(void) {
  test_rng rng = {46};
  check_table(&rng, true);
}

static void test_tanh_table(void) {
  test_rng rng = {47};
  check_table(&rng, false);
}

int main(void) {
  RUN(test_f32_relu_family);
  RUN(test_quantized_relu_family);
  RUN(test_leaky_relu);
  RUN(test_hard_swish);
  RUN(test_f32_logistic_tanh);
  RUN(test_logistic_table);
  RUN(test_tanh_table);
  return test_summary();
}
