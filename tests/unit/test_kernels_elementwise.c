/*
 * Tests of the broadcasting binary reference kernels (kernels/ref/
 * binary_ref.c): ADD, SUB, MUL and PRELU for f32, s8 and u8.
 *
 * Every quantized result is compared with an independent computation
 * written here from TFLite's specification (multipliers found by halving
 * and doubling, rounding written as floor divisions on int64), and checked
 * to be within 1 LSB of the real-valued result. Float kernels are compared
 * with double-precision loops. Broadcasting is checked against an index
 * mapping computed per output element. Shapes, scales (several orders of
 * magnitude), zero points (at the type limits and random) and fused
 * activations are swept with the seeded RNG.
 */
#include <float.h>
#include <math.h>
#include <string.h>

#include "kernels/ref/elementwise_ref.h"
#include "testutil.h"

/* ---- The specification, written independently of kernels/ ---- */

/* floor(x / 2^e) */
static int64_t floor_div_pot(int64_t x, int e) {
  const int64_t d = (int64_t)1 << e;
  return x >= 0 ? x / d : -((-x + d - 1) / d);
}

/* x * b / 2^31 rounded to nearest, ties toward +infinity, saturating the
 * single overflow (gemmlowp SaturatingRoundingDoublingHighMul). */
static int32_t spec_srdhm(int32_t a, int32_t b) {
  if (a == INT32_MIN && b == INT32_MIN) return INT32_MAX;
  return (int32_t)floor_div_pot((int64_t)a * b + ((int64_t)1 << 30), 31);
}

/* x / 2^e rounded to nearest, ties away from zero. */
static int32_t spec_round_div(int64_t x, int e) {
  if (e == 0) return (int32_t)x;
  const int64_t half = (int64_t)1 << (e - 1);
  return (int32_t)(x >= 0 ? floor_div_pot(x + half, e) : -floor_div_pot(-x + half, e));
}

/* real = m * 2^(shift - 31), m in [2^30, 2^31); 0 flushes below 2^-31. */
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

/* x * m * 2^(shift - 31) with TFLite's double rounding. A left shift that
 * leaves int32 wraps in two's complement (TFLite's int32 multiply). */
static int32_t spec_mbqm(int32_t x, int32_t m, int shift) {
  int64_t shifted = (int64_t)x * ((int64_t)1 << (shift > 0 ? shift : 0));
  shifted = (int64_t)(int32_t)(uint32_t)(uint64_t)shifted;
  return spec_round_div(spec_srdhm((int32_t)shifted, m), shift < 0 ? -shift : 0);
}

static int32_t clampi(int32_t x, int32_t lo, int32_t hi) { return x < lo ? lo : (x > hi ? hi : x); }

/* zero point + round(real / scale), limited to [qmin, qmax]. */
static int32_t spec_bound(float real, float scale, int32_t zp, int32_t qmin, int32_t qmax) {
  const double v = (double)zp + (double)roundf(real / scale);
  return v < qmin ? qmin : (v > qmax ? qmax : (int32_t)v);
}

/* Quantized bounds of a fused activation (TFLite CalculateActivationRange
 * Quantized): act 0 none, 1 relu, 2 relu_n1_to_1, 3 relu6. */
static void spec_act_range(int act, float scale, int32_t zp, int32_t qmin, int32_t qmax,
                           int32_t *lo, int32_t *hi) {
  *lo = act == 0 ? qmin : spec_bound(act == 2 ? -1.0f : 0.0f, scale, zp, qmin, qmax);
  *hi = act == 0 || act == 1 ? qmax : spec_bound(act == 2 ? 1.0f : 6.0f, scale, zp, qmin, qmax);
}

/* ---- Shapes ---- */

typedef struct shapes {
  int32_t rank1, rank2, rank_out;
  int32_t s1[6], s2[6], out[6];
  int64_t n1, n2, n_out;
} shapes;

/* Random broadcast-compatible shapes of rank up to max_rank: one input has
 * the output's rank, the other a random suffix of it; each dimension is
 * shared, or 1 in one of the inputs. */
static void random_shapes(test_rng *rng, int max_rank, shapes *s) {
  const int32_t r = test_rand_int(rng, 0, max_rank);
  s->rank_out = r;
  s->rank1 = r;
  s->rank2 = test_rand_int(rng, 0, r);
  if (test_rand_int(rng, 0, 1)) {
    s->rank1 = s->rank2;
    s->rank2 = r;
  }
  s->n1 = s->n2 = s->n_out = 1;
  for (int32_t i = 0; i < r; i++) {
    const int32_t d = test_rand_int(rng, 1, r > 4 ? 3 : 5);
    const int pattern = test_rand_int(rng, 0, 3); /* 1: input 1 has 1, 2: input 2 has 1 */
    const int32_t d1 = pattern == 1 ? 1 : d, d2 = pattern == 2 ? 1 : d;
    const bool has1 = i >= r - s->rank1, has2 = i >= r - s->rank2;
    if (has1) s->s1[i - (r - s->rank1)] = d1;
    if (has2) s->s2[i - (r - s->rank2)] = d2;
    s->out[i] = (has1 && d1 == d) || (has2 && d2 == d) ? d : 1;
    s->n_out *= s->out[i];
  }
  for (int32_t i = 0; i < s->rank1; i++) s->n1 *= s->s1[i];
  for (int32_t i = 0; i < s->rank2; i++) s->n2 *= s->s2[i];
}

/* Flat index into an input for output element `o` (row-major). */
static int64_t input_index(const shapes *s, int64_t o, int which) {
  const int32_t rank = which == 1 ? s->rank1 : s->rank2;
  const int32_t *dims = which == 1 ? s->s1 : s->s2;
  int64_t idx = 0, stride = 1;
  for (int32_t i = s->rank_out - 1; i >= 0; i--) {
    const int64_t coord = o % s->out[i];
    o /= s->out[i];
    const int32_t j = i - (s->rank_out - rank);
    if (j < 0) continue;
    idx += (dims[j] == 1 ? 0 : coord) * stride;
    stride *= dims[j];
  }
  return idx;
}

static void test_bcast_init(void) {
  kiln_bcast b;
  const int32_t a[4] = {2, 1, 4, 1}, c[3] = {3, 1, 5};
  REQUIRE(kiln_bcast_init(4, a, 3, c, &b));
  CHECK(b.rank == 4 && b.shape[0] == 2 && b.shape[1] == 3 && b.shape[2] == 4 && b.shape[3] == 5);
  CHECK(b.count == 120);
  CHECK(b.stride1[0] == 4 && b.stride1[1] == 0 && b.stride1[2] == 1 && b.stride1[3] == 0);
  CHECK(b.stride2[0] == 0 && b.stride2[1] == 5 && b.stride2[2] == 0 && b.stride2[3] == 1);
  const int32_t bad[2] = {3, 4}, bad2[1] = {3};
  CHECK(!kiln_bcast_init(2, bad, 1, bad2, &b));
  const int32_t seven[7] = {1, 1, 1, 1, 1, 1, 2};
  CHECK(!kiln_bcast_init(7, seven, 1, bad2, &b));
  const int32_t neg[1] = {-1};
  CHECK(!kiln_bcast_init(1, neg, 1, bad2, &b));
  /* Scalars and empty tensors. */
  REQUIRE(kiln_bcast_init(0, NULL, 0, NULL, &b));
  CHECK(b.rank == 0 && b.count == 1);
  const int32_t empty[2] = {0, 3};
  REQUIRE(kiln_bcast_init(2, empty, 1, bad2, &b));
  CHECK(b.count == 0 && b.shape[0] == 0);
  float x = 1, y = 2, out[4] = {7, 7, 7, 7};
  kiln_f32_add_ref(&b, &x, &y, out, -FLT_MAX, FLT_MAX);
  CHECK(out[0] == 7); /* nothing written */
}

/* ---- Float ---- */

static void test_f32_binary(void) {
  test_rng rng = {11};
  static float a[4096], b[4096], out[4096];
  for (int trial = 0; trial < 300; trial++) {
    shapes s;
    random_shapes(&rng, 6, &s);
    kiln_bcast bc;
    REQUIRE(kiln_bcast_init(s.rank1, s.s1, s.rank2, s.s2, &bc));
    REQUIRE(bc.count == s.n_out && bc.rank == s.rank_out);
    for (int32_t i = 0; i < s.rank_out; i++) CHECK(bc.shape[i] == s.out[i]);
    for (int64_t i = 0; i < s.n1; i++) a[i] = test_rand_float(&rng, -50, 50);
    for (int64_t i = 0; i < s.n2; i++) b[i] = test_rand_float(&rng, -50, 50);
    const int act = trial % 4;
    const float lo = act == 1 || act == 3 ? 0.0f : (act == 2 ? -1.0f : -FLT_MAX);
    const float hi = act == 3 ? 6.0f : (act == 2 ? 1.0f : FLT_MAX);
    for (int op = 0; op < 3; op++) {
      if (op == 0) kiln_f32_add_ref(&bc, a, b, out, lo, hi);
      if (op == 1) kiln_f32_sub_ref(&bc, a, b, out, lo, hi);
      if (op == 2) kiln_f32_mul_ref(&bc, a, b, out, lo, hi);
      for (int64_t o = 0; o < s.n_out; o++) {
        const double x = a[input_index(&s, o, 1)], y = b[input_index(&s, o, 2)];
        double want = op == 0 ? x + y : (op == 1 ? x - y : x * y);
        want = want < lo ? lo : (want > hi ? hi : want);
        CHECK_MSG(fabs(out[o] - want) <= 1e-6 * fabs(want) + 1e-30, "op %d trial %d: %g vs %g", op,
                  trial, (double)out[o], want);
      }
    }
  }
  /* Infinities clamp to the float range when there is no activation. */
  const int32_t one = 1;
  kiln_bcast bc;
  REQUIRE(kiln_bcast_init(1, &one, 1, &one, &bc));
  const float inf = INFINITY, z = 0;
  float r;
  kiln_f32_add_ref(&bc, &inf, &z, &r, -FLT_MAX, FLT_MAX);
  CHECK(r == FLT_MAX);
}

/* ---- Quantized ---- */

typedef struct qparams {
  float scale;
  int32_t zp;
} qparams;

static qparams random_q(test_rng *rng, bool is_signed, double lo_exp, double hi_exp) {
  qparams q;
  q.scale = (float)pow(10.0, lo_exp + (hi_exp - lo_exp) * test_rand_float(rng, 0, 1));
  const int32_t qmin = is_signed ? -128 : 0, qmax = is_signed ? 127 : 255;
  const int pick = test_rand_int(rng, 0, 3);
  q.zp = pick == 0 ? qmin : (pick == 1 ? qmax : test_rand_int(rng, qmin, qmax));
  return q;
}

/* Independent quantized ADD/SUB (sign +-1) of one element pair. */
static int32_t spec_addsub(int32_t x1, int32_t x2, qparams q1, qparams q2, qparams qo, int sign,
                           int32_t lo, int32_t hi) {
  const double twice_max = 2.0 * (double)(q1.scale > q2.scale ? q1.scale : q2.scale);
  int32_t m1, m2, mo;
  int sh1, sh2, sho;
  spec_quantize((double)q1.scale / twice_max, &m1, &sh1);
  spec_quantize((double)q2.scale / twice_max, &m2, &sh2);
  spec_quantize(twice_max / (1048576.0 * (double)qo.scale), &mo, &sho);
  const int32_t a = spec_mbqm((x1 - q1.zp) * (1 << 20), m1, sh1);
  const int32_t b = spec_mbqm((x2 - q2.zp) * (1 << 20), m2, sh2);
  return clampi(spec_mbqm(sign > 0 ? a + b : a - b, mo, sho) + qo.zp, lo, hi);
}

static int32_t spec_mul(int32_t x1, int32_t x2, qparams q1, qparams q2, qparams qo, int32_t lo,
                        int32_t hi) {
  int32_t m;
  int sh;
  spec_quantize((double)(q1.scale * q2.scale / qo.scale), &m, &sh);
  return clampi(spec_mbqm((x1 - q1.zp) * (x2 - q2.zp), m, sh) + qo.zp, lo, hi);
}

/* Round-to-nearest quantization of a real value, clamped. */
static int32_t quantize_real(double real, qparams q, int32_t lo, int32_t hi) {
  const double v = real / q.scale + q.zp;
  if (v < lo) return lo;
  if (v > hi) return hi;
  return (int32_t)lround(v);
}

static int32_t load(const void *p, int64_t i, bool is_signed) {
  return is_signed ? ((const int8_t *)p)[i] : ((const uint8_t *)p)[i];
}

static void fill(test_rng *rng, void *p, int64_t n, bool is_signed) {
  for (int64_t i = 0; i < n; i++) {
    if (is_signed)
      ((int8_t *)p)[i] = (int8_t)test_rand_int(rng, -128, 127);
    else
      ((uint8_t *)p)[i] = (uint8_t)test_rand_int(rng, 0, 255);
  }
}

static void test_quantized_binary(bool is_signed) {
  test_rng rng = {is_signed ? 21u : 22u};
  static int8_t a[4096], b[4096], out[4096];
  const int32_t qmin = is_signed ? -128 : 0, qmax = is_signed ? 127 : 255;
  int compared = 0, saturated = 0;
  for (int trial = 0; trial < 400; trial++) {
    shapes s;
    random_shapes(&rng, 6, &s);
    kiln_bcast bc;
    REQUIRE(kiln_bcast_init(s.rank1, s.s1, s.rank2, s.s2, &bc));
    fill(&rng, a, s.n1, is_signed);
    fill(&rng, b, s.n2, is_signed);
    const qparams q1 = random_q(&rng, is_signed, -4, 1);
    const qparams q2 = random_q(&rng, is_signed, -4, 1);
    /* Output scales from much finer (saturating) to much coarser. */
    qparams qo = random_q(&rng, is_signed, -4, 1);
    if (trial % 3 == 0) {
      const float m = q1.scale > q2.scale ? q1.scale : q2.scale;
      qo.scale = m * (float)pow(10.0, test_rand_float(&rng, -2, 1));
    }
    const int act = test_rand_int(&rng, 0, 3);
    for (int op = 0; op < 3; op++) {
      if (op == 2) /* MUL: the rescale from 1e-3 to 1e3 */
        qo.scale = q1.scale * q2.scale * (float)pow(10.0, test_rand_float(&rng, -3, 3));
      int32_t lo, hi;
      spec_act_range(act, qo.scale, qo.zp, qmin, qmax, &lo, &hi);
      if (op < 2) {
        kiln_addsub_q p;
        const bool ok = kiln_addsub_q_init(q1.scale, q1.zp, q2.scale, q2.zp, qo.scale, qo.zp, lo,
                                           hi, &p);
        const double max_scale = q1.scale > q2.scale ? q1.scale : q2.scale;
        CHECK(ok == (2.0 * max_scale / (1048576.0 * qo.scale) < 1.0));
        if (!ok) continue;
        if (is_signed)
          (op == 0 ? kiln_s8_add_ref : kiln_s8_sub_ref)(&bc, a, b, out, &p);
        else
          (op == 0 ? kiln_u8_add_ref : kiln_u8_sub_ref)(&bc, (uint8_t *)a, (uint8_t *)b,
                                                      (uint8_t *)out, &p);
      } else {
        kiln_mul_q p;
        REQUIRE(kiln_mul_q_init(q1.scale, q1.zp, q2.scale, q2.zp, qo.scale, qo.zp, lo, hi, &p));
        if (is_signed)
          kiln_s8_mul_ref(&bc, a, b, out, &p);
        else
          kiln_u8_mul_ref(&bc, (uint8_t *)a, (uint8_t *)b, (uint8_t *)out, &p);
      }
      for (int64_t o = 0; o < s.n_out; o++) {
        const int32_t x1 = load(a, input_index(&s, o, 1), is_signed);
        const int32_t x2 = load(b, input_index(&s, o, 2), is_signed);
        const int32_t got = load(out, o, is_signed);
        const int32_t want = op < 2 ? spec_addsub(x1, x2, q1, q2, qo, op == 0 ? 1 : -1, lo, hi)
                                    : spec_mul(x1, x2, q1, q2, qo, lo, hi);
        CHECK_MSG(got == want, "op %d trial %d element %lld: got %d want %d", op, trial,
                  (long long)o, (int)got, (int)want);
        const double r1 = q1.scale * (double)(x1 - q1.zp), r2 = q2.scale * (double)(x2 - q2.zp);
        const double real = op == 0 ? r1 + r2 : (op == 1 ? r1 - r2 : r1 * r2);
        const int32_t nearest = quantize_real(real, qo, lo, hi);
        CHECK_MSG(abs(got - nearest) <= 1, "op %d: %d is not within 1 of %d (real %g)", op,
                  (int)got, (int)nearest, real);
        saturated += got == lo || got == hi;
        compared++;
      }
    }
  }
  CHECK(compared > 10000);
  CHECK(saturated > 100); /* the sweep reaches the clamps */
}

static void test_s8_binary(void) { test_quantized_binary(true); }
static void test_u8_binary(void) { test_quantized_binary(false); }

/* An output scale at or below max(input scale) / 2^19 needs a rescale >= 1,
 * which TFLite's ADD cannot represent. */
static void test_addsub_limits(void) {
  kiln_addsub_q p;
  CHECK(!kiln_addsub_q_init(1.0f, 0, 1.0f, 0, 1.0f / 524288.0f, 0, -128, 127, &p));
  CHECK(kiln_addsub_q_init(1.0f, 0, 1.0f, 0, 1.1f / 524288.0f, 0, -128, 127, &p));
  CHECK(p.in1_shift <= 0 && p.out_shift <= 0 && p.left_shift == 20);
  CHECK(!kiln_addsub_q_init(0.0f, 0, 1.0f, 0, 1.0f, 0, -128, 127, &p));
  kiln_mul_q m;
  /* A rescale of 2^30 - 1 still runs; the left shift wraps in int32 as in
   * TFLite (LiteRT agrees on such a model). */
  REQUIRE(kiln_mul_q_init(1.0f, 0, 1.0f, 0, 1e-9f, 3, -128, 127, &m));
  CHECK(m.out_shift == 30);
  int8_t a[256], b[256], out[256];
  for (int i = 0; i < 256; i++) a[i] = (int8_t)(i - 128), b[i] = (int8_t)(127 - i);
  const int32_t n = 256;
  kiln_bcast bc;
  REQUIRE(kiln_bcast_init(1, &n, 1, &n, &bc));
  kiln_s8_mul_ref(&bc, a, b, out, &m);
  int32_t mult;
  int shift;
  spec_quantize((double)(1.0f * 1.0f / 1e-9f), &mult, &shift);
  for (int i = 0; i < 256; i++)
    CHECK(out[i] == clampi(spec_mbqm(a[i] * b[i], mult, shift) + 3, -128, 127));
  CHECK(!kiln_mul_q_init(1.0f, 0, 1.0f, 0, 1e-12f, 0, -128, 127, &m));
  CHECK(!kiln_mul_q_init(1.0f, 0, 1.0f, 0, 0.0f, 0, -128, 127, &m));
}

/* ---- PRELU ---- */

static void test_prelu(void) {
  test_rng rng = {31};
  static float fa[4096], fb[4096], fo[4096];
  static int8_t a[4096], b[4096], out[4096];
  for (int trial = 0; trial < 200; trial++) {
    shapes s;
    random_shapes(&rng, 5, &s);
    /* alpha broadcasts into the input's shape */
    s.rank2 = test_rand_int(&rng, 0, s.rank1);
    s.rank_out = s.rank1;
    s.n2 = 1;
    s.n_out = s.n1;
    for (int32_t i = 0; i < s.rank1; i++) s.out[i] = s.s1[i];
    for (int32_t i = 0; i < s.rank2; i++) {
      const int32_t d = s.s1[i + s.rank1 - s.rank2];
      s.s2[i] = test_rand_int(&rng, 0, 1) ? d : 1;
      s.n2 *= s.s2[i];
    }
    kiln_bcast bc;
    REQUIRE(kiln_bcast_init(s.rank1, s.s1, s.rank2, s.s2, &bc));
    REQUIRE(bc.count == s.n1);
    for (int64_t i = 0; i < s.n1; i++) fa[i] = test_rand_float(&rng, -10, 10);
    for (int64_t i = 0; i < s.n2; i++) fb[i] = test_rand_float(&rng, -1, 2);
    kiln_f32_prelu_ref(&bc, fa, fb, fo);
    for (int64_t o = 0; o < s.n1; o++) {
      const double x = fa[o], al = fb[input_index(&s, o, 2)];
      CHECK(fo[o] == (float)(x >= 0 ? x : x * al));
    }
    const bool is_signed = trial % 2 == 0;
    const int32_t qmin = is_signed ? -128 : 0, qmax = is_signed ? 127 : 255;
    fill(&rng, a, s.n1, is_signed);
    fill(&rng, b, s.n2, is_signed);
    const qparams qi = random_q(&rng, is_signed, -3, 0), qa = random_q(&rng, is_signed, -3, -1);
    const qparams qo = random_q(&rng, is_signed, -3, 0);
    kiln_prelu_q p;
    REQUIRE(kiln_prelu_q_init(qi.scale, qi.zp, qa.scale, qa.zp, qo.scale, qo.zp, &p));
    if (is_signed)
      kiln_s8_prelu_ref(&bc, a, b, out, &p);
    else
      kiln_u8_prelu_ref(&bc, (uint8_t *)a, (uint8_t *)b, (uint8_t *)out, &p);
    int32_t m1, m2;
    int sh1, sh2;
    spec_quantize((double)(qi.scale / qo.scale), &m1, &sh1);
    spec_quantize((double)(qi.scale * qa.scale / qo.scale), &m2, &sh2);
    for (int64_t o = 0; o < s.n1; o++) {
      const int32_t x = load(a, o, is_signed) - qi.zp;
      const int32_t al = load(b, input_index(&s, o, 2), is_signed) - qa.zp;
      const int32_t v = x >= 0 ? spec_mbqm(x, m1, sh1) : spec_mbqm(x * al, m2, sh2);
      const int32_t want = clampi(v + qo.zp, qmin, qmax);
      const int32_t got = load(out, o, is_signed);
      CHECK_MSG(got == want, "prelu trial %d: got %d want %d", trial, (int)got, (int)want);
      const double real = x >= 0 ? qi.scale * (double)x : qi.scale * (double)x * qa.scale * al;
      CHECK(abs(got - quantize_real(real, qo, qmin, qmax)) <= 1);
    }
  }
}

int main(void) {
  RUN(test_bcast_init);
  RUN(test_f32_binary);
  RUN(test_s8_binary);
  RUN(test_u8_binary);
  RUN(test_addsub_limits);
  RUN(test_prelu);
  return test_summary();
}
