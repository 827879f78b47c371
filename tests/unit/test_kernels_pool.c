/*
 * test_kernels_pool.c: the reference pool kernels (pool_ref.h) against
 * independent computations written here from TFLite's definitions:
 * AVERAGE_POOL_2D / MAX_POOL_2D over random shapes, filters, strides,
 * paddings, activations and zero points at the limits; MEAN over random
 * ranks, axes (negative, repeated), keep_dims and quantizations with scale
 * ratios above and below 1. Seeded, so failures reproduce.
 */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/quant_math.h"
#include "kernels/ref/pool_ref.h"
#include "kiln/model.h"
#include "testutil.h"

enum { T_F32, T_S8, T_U8 };

static int32_t tmin(int t) { return t == T_S8 ? -128 : 0; }
static int32_t tmax(int t) { return t == T_S8 ? 127 : 255; }

/* A zero point at one of the type's limits or random in between. */
static int32_t pick_zp(test_rng *r, int t) {
  switch (test_rand_int(r, 0, 2)) {
    case 0:
      return tmin(t);
    case 1:
      return tmax(t);
    default:
      return test_rand_int(r, tmin(t), tmax(t));
  }
}

/* ---- pooling ---- */

/* Expected value of one pooling output computed from the definition: the
 * window [oy*s - pad, +filter) intersected with the image. */
typedef struct pool_case {
  int type, avg, same, act;
  int32_t n, h, w, c, fh, fw, sh, sw;
  int32_t zp;
  float scale;
} pool_case;

static int32_t out_dim(int same, int32_t in, int32_t f, int32_t s) {
  return same ? (in + s - 1) / s : (in - f) / s + 1;
}

static int32_t lead_pad(int32_t in, int32_t f, int32_t s, int32_t out) {
  int32_t total = (out - 1) * s + f - in;
  return total > 0 ? total / 2 : 0;
}

/* Clamp bounds from the activation on the real axis, quantized with the
 * output's scale (TFLite CalculateActivationRange[Quantized]). */
static void act_bounds_q(const pool_case *pc, int32_t *lo, int32_t *hi) {
  double a = -INFINITY, b = INFINITY;
  if (pc->act == KILN_ACT_RELU) a = 0;
  if (pc->act == KILN_ACT_RELU6) a = 0, b = 6;
  if (pc->act == KILN_ACT_RELU_N1_TO_1) a = -1, b = 1;
  *lo = tmin(pc->type);
  *hi = tmax(pc->type);
  if (isfinite(a)) {
    int32_t q = pc->zp + (int32_t)roundf((float)a / pc->scale);
    if (q > *lo) *lo = q;
  }
  if (isfinite(b)) {
    int32_t q = pc->zp + (int32_t)roundf((float)b / pc->scale);
    if (q < *hi) *hi = q;
  }
}

static void act_bounds_f(int act, float *lo, float *hi) {
  *lo = -FLT_MAX;
  *hi = FLT_MAX;
  if (act == KILN_ACT_RELU) *lo = 0;
  if (act == KILN_ACT_RELU6) *lo = 0, *hi = 6;
  if (act == KILN_ACT_RELU_N1_TO_1) *lo = -1, *hi = 1;
}

static void run_pool_case(test_rng *r, const pool_case *pc) {
  const int32_t oh = out_dim(pc->same, pc->h, pc->fh, pc->sh);
  const int32_t ow = out_dim(pc->same, pc->w, pc->fw, pc->sw);
  const int32_t ph = lead_pad(pc->h, pc->fh, pc->sh, oh);
  const int32_t pw = lead_pad(pc->w, pc->fw, pc->sw, ow);
  const size_t nin = (size_t)pc->n * pc->h * pc->w * pc->c;
  const size_t nout = (size_t)pc->n * oh * ow * pc->c;
  const size_t esz = pc->type == T_F32 ? 4 : 1;
  uint8_t *in = malloc(nin * esz), *out = malloc(nout * esz);
  float *fin = (float *)(void *)in;
  for (size_t i = 0; i < nin; i++) {
    if (pc->type == T_F32)
      fin[i] = test_rand_float(r, -8.0f, 8.0f);
    else if (pc->type == T_S8)
      ((int8_t *)in)[i] = (int8_t)test_rand_int(r, -128, 127);
    else
      in[i] = (uint8_t)test_rand_int(r, 0, 255);
  }
  kiln_pool_params p = {pc->sh, pc->sw, pc->fh, pc->fw, ph, pw, 0, 0, 0, 0};
  act_bounds_f(pc->act, &p.act_min_f, &p.act_max_f);
  if (pc->type != T_F32) act_bounds_q(pc, &p.act_min, &p.act_max);
  CHECK(kiln_pool_out_size(pc->same, pc->h, pc->fh, pc->sh) == oh);
  CHECK(kiln_pool_padding(pc->h, pc->fh, pc->sh, oh) == ph);
  const int32_t is[4] = {pc->n, pc->h, pc->w, pc->c}, os[4] = {pc->n, oh, ow, pc->c};
  if (pc->avg) {
    if (pc->type == T_F32)
      kiln_f32_avg_pool_ref(&p, is, fin, os, (float *)(void *)out);
    else if (pc->type == T_S8)
      kiln_s8_avg_pool_ref(&p, is, (int8_t *)in, os, (int8_t *)out);
    else
      kiln_u8_avg_pool_ref(&p, is, in, os, out);
  } else {
    if (pc->type == T_F32)
      kiln_f32_max_pool_ref(&p, is, fin, os, (float *)(void *)out);
    else if (pc->type == T_S8)
      kiln_s8_max_pool_ref(&p, is, (int8_t *)in, os, (int8_t *)out);
    else
      kiln_u8_max_pool_ref(&p, is, in, os, out);
  }
  int bad = 0;
  for (int32_t b = 0; b < pc->n; b++)
    for (int32_t y = 0; y < oh; y++)
      for (int32_t x = 0; x < ow; x++)
        for (int32_t c = 0; c < pc->c; c++) {
          /* Visit every filter cell, skipping those outside the image. */
          double fsum = 0;
          float ftotal = 0, fmax = -FLT_MAX;
          int64_t isum = 0;
          int32_t imax = INT32_MIN, count = 0;
          for (int32_t fy = 0; fy < pc->fh; fy++)
            for (int32_t fx = 0; fx < pc->fw; fx++) {
              const int32_t iy = y * pc->sh - ph + fy, ix = x * pc->sw - pw + fx;
              if (iy < 0 || iy >= pc->h || ix < 0 || ix >= pc->w) continue;
              const size_t k = (((size_t)b * pc->h + iy) * pc->w + ix) * pc->c + c;
              count++;
              if (pc->type == T_F32) {
                ftotal += fin[k];
                fsum += fin[k];
                if (fin[k] > fmax) fmax = fin[k];
              } else {
                const int32_t v = pc->type == T_S8 ? ((int8_t *)in)[k] : in[k];
                isum += v;
                if (v > imax) imax = v;
              }
            }
          const size_t o = (((size_t)b * oh + y) * ow + x) * pc->c + c;
          if (pc->type == T_F32) {
            float want = pc->avg ? ftotal / (float)count : fmax;
            want = fminf(fmaxf(want, p.act_min_f), p.act_max_f);
            const float got = ((float *)(void *)out)[o];
            if (got != want) bad++;
            /* The float average is also within rounding of the exact mean. */
            if (pc->avg && pc->act == KILN_ACT_NONE && fabs(got - fsum / count) > 1e-4) bad++;
          } else {
            int32_t want = pc->avg ? (int32_t)round((double)isum / count) : imax;
            want = kiln_clamp_i32(want, p.act_min, p.act_max);
            const int32_t got = pc->type == T_S8 ? ((int8_t *)out)[o] : out[o];
            if (got != want) bad++;
          }
        }
  CHECK_MSG(bad == 0, "%d wrong: type %d avg %d same %d act %d in %dx%dx%dx%d f %dx%d s %dx%d", bad,
            pc->type, pc->avg, pc->same, pc->act, (int)pc->n, (int)pc->h, (int)pc->w, (int)pc->c,
            (int)pc->fh, (int)pc->fw, (int)pc->sh, (int)pc->sw);
  free(in);
  free(out);
}

static void test_pool_sweep(void) {
  test_rng r = {20240601};
  static const int acts[] = {KILN_ACT_NONE, KILN_ACT_RELU, KILN_ACT_RELU6, KILN_ACT_RELU_N1_TO_1};
  for (int i = 0; i < 600; i++) {
    pool_case pc;
    pc.type = test_rand_int(&r, T_F32, T_U8);
    pc.avg = i % 2;
    pc.same = test_rand_int(&r, 0, 1);
    pc.act = acts[test_rand_int(&r, 0, 3)];
    pc.n = test_rand_int(&r, 1, 2);
    pc.h = test_rand_int(&r, 1, 13);
    pc.w = test_rand_int(&r, 1, 13);
    pc.c = test_rand_int(&r, 1, 5);
    pc.fh = test_rand_int(&r, 1, 5);
    pc.fw = test_rand_int(&r, 1, 5);
    pc.sh = test_rand_int(&r, 1, 3);
    pc.sw = test_rand_int(&r, 1, 3);
    if (!pc.same && (pc.fh > pc.h || pc.fw > pc.w)) pc.same = 1;
    pc.zp = pc.type == T_F32 ? 0 : pick_zp(&r, pc.type);
    pc.scale = test_rand_float(&r, 0.005f, 0.2f);
    run_pool_case(&r, &pc);
  }
}

/* Rounding of quantized averages on hand-picked windows: 2 cells summing
 * to an odd value are exact halves. */
static void test_avg_pool_rounding(void) {
  const int32_t is[4] = {1, 1, 2, 1}, os[4] = {1, 1, 1, 1};
  kiln_pool_params p = {1, 2, 1, 2, 0, 0, 0, 0, -128, 127};
  const int8_t cases[][3] = {{1, 2, 2},   {-1, -2, -2},       {-1, 2, 1},
                             {1, -2, -1}, {-128, -127, -128}, {127, 126, 127},
                             {0, 1, 1},   {0, -1, -1},        {3, 3, 3}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    int8_t out = 0;
    kiln_s8_avg_pool_ref(&p, is, cases[i], os, &out);
    CHECK_MSG(out == cases[i][2], "avg(%d, %d) = %d, want %d", cases[i][0], cases[i][1], out,
              cases[i][2]);
  }
  /* uint8 halves round up; a 3-cell window: 1/3 and 2/3 round to 0 and 1. */
  const uint8_t u[2] = {4, 5};
  uint8_t uo = 0;
  p.act_min = 0;
  p.act_max = 255;
  kiln_u8_avg_pool_ref(&p, is, u, os, &uo);
  CHECK(uo == 5);
  const int32_t is3[4] = {1, 1, 3, 1};
  p.filter_w = 3;
  p.stride_w = 3;
  const uint8_t u3a[3] = {0, 0, 1}, u3b[3] = {0, 1, 1};
  kiln_u8_avg_pool_ref(&p, is3, u3a, os, &uo);
  CHECK(uo == 0);
  kiln_u8_avg_pool_ref(&p, is3, u3b, os, &uo);
  CHECK(uo == 1);
}

/* NaN is skipped by max pooling (TFLite's std::max keeps the running max)
 * and propagates through average pooling and the clamp. */
static void test_float_specials(void) {
  const int32_t is[4] = {1, 1, 3, 1}, os[4] = {1, 1, 1, 1};
  kiln_pool_params p = {1, 3, 1, 3, 0, 0, -FLT_MAX, FLT_MAX, 0, 0};
  const float v[3] = {NAN, 2.0f, -1.0f};
  float out = 0;
  kiln_f32_max_pool_ref(&p, is, v, os, &out);
  CHECK(out == 2.0f);
  kiln_f32_avg_pool_ref(&p, is, v, os, &out);
  CHECK(isnan(out));
  p.act_min_f = 0.0f;
  p.act_max_f = 6.0f;
  kiln_f32_avg_pool_ref(&p, is, v, os, &out);
  CHECK(isnan(out));
  const float big[3] = {INFINITY, 1.0f, 1.0f};
  kiln_f32_max_pool_ref(&p, is, big, os, &out);
  CHECK(out == 6.0f);
}

/* ---- MEAN ---- */

/* floor(a / 2^k) for any sign. */
static int64_t floor_shift(int64_t a, int k) {
  const int64_t d = (int64_t)1 << k;
  return a >= 0 ? a / d : -((-a + d - 1) / d);
}

/* TFLite MultiplyByQuantizedMultiplier written out with 64-bit arithmetic:
 * (x * 2^left) * m / 2^31 rounded to nearest with halves going up (gemmlowp's
 * doubling high multiply), then divided by 2^right rounding to nearest with
 * halves away from zero. */
static int32_t spec_mul(int32_t x, int32_t m, int shift) {
  const int left = shift > 0 ? shift : 0, right = shift > 0 ? 0 : -shift;
  const int64_t xl = (int64_t)(int32_t)((uint32_t)x << left);
  int64_t hi;
  if (xl == INT32_MIN && m == INT32_MIN)
    hi = INT32_MAX;
  else
    hi = floor_shift(xl * (int64_t)m + ((int64_t)1 << 30), 31);
  if (right == 0) return (int32_t)hi;
  const int64_t mag = hi < 0 ? -hi : hi;
  const int64_t q = (mag + ((int64_t)1 << (right - 1))) >> right; /* halves away from zero */
  return (int32_t)(hi < 0 ? -q : q);
}

typedef struct mean_case {
  int type;
  int32_t rank, shape[6];
  int32_t n_axes, axes[8];
  float in_scale, out_scale;
  int32_t in_zp, out_zp;
} mean_case;

static void run_mean_case(test_rng *r, const mean_case *mc) {
  uint32_t mask = 0;
  for (int32_t i = 0; i < mc->n_axes && mc->rank > 0; i++)
    mask |= 1u << ((mc->axes[i] + mc->rank) % mc->rank);
  int64_t nin = 1, nout = 1, count = 1;
  for (int32_t d = 0; d < mc->rank; d++) {
    nin *= mc->shape[d];
    if (mask >> d & 1)
      count *= mc->shape[d];
    else
      nout *= mc->shape[d];
  }
  float *fin = malloc((size_t)nin * sizeof *fin), *fout = malloc((size_t)nout * sizeof *fout);
  float *facc = calloc((size_t)nout, sizeof *facc);
  int32_t *qin = malloc((size_t)nin * sizeof *qin);
  int64_t *qacc = calloc((size_t)nout, sizeof *qacc);
  uint8_t *in8 = malloc((size_t)nin), *out8 = malloc((size_t)nout);
  for (int64_t i = 0; i < nin; i++) {
    fin[i] = test_rand_float(r, -50.0f, 50.0f);
    qin[i] = test_rand_int(r, tmin(mc->type), tmax(mc->type));
    in8[i] = (uint8_t)qin[i];
  }
  /* Walk the input in row-major order, accumulating into the output index
   * made of the kept coordinates (the reference's Reduce loop). */
  for (int64_t i = 0; i < nin; i++) {
    int64_t rem = i, oidx = 0, ostride = 1;
    for (int32_t d = mc->rank - 1; d >= 0; d--) {
      const int64_t coord = rem % mc->shape[d];
      rem /= mc->shape[d];
      if (!(mask >> d & 1)) {
        oidx += coord * ostride;
        ostride *= mc->shape[d];
      }
    }
    facc[oidx] += fin[i];
    qacc[oidx] += qin[i];
  }
  int bad = 0;
  if (mc->type == T_F32) {
    kiln_f32_mean_ref(mc->rank, mc->shape, mask, fin, fout);
    for (int64_t o = 0; o < nout; o++) {
      const float want = facc[o] / (float)count;
      if (fout[o] != want) bad++;
    }
  } else {
    int32_t m0, m;
    int s0, s;
    kiln_quantize_multiplier((double)mc->in_scale / (double)mc->out_scale, &m0, &s0);
    kiln_mean_q_multiplier(m0, s0, count, &m, &s);
    /* The folded multiplier: floor(m0 * 2^k / count) with k = min(floor(log2
     * count), 32, 31 + s0), and shift s0 - k. */
    int k = 0;
    while (((int64_t)2 << k) <= count) k++;
    if (k > 32) k = 32;
    if (k > 31 + s0) k = 31 + s0;
    CHECK(m == (int32_t)(((int64_t)m0 << k) / count) && s == s0 - k);
    if (mc->type == T_S8)
      kiln_s8_mean_ref(mc->rank, mc->shape, mask, (int8_t *)in8, mc->in_zp, m, s, mc->out_zp,
                       (int8_t *)out8);
    else
      kiln_u8_mean_ref(mc->rank, mc->shape, mask, in8, mc->in_zp, m, s, mc->out_zp, out8);
    for (int64_t o = 0; o < nout; o++) {
      const int32_t shifted = (int32_t)(qacc[o] - (int64_t)mc->in_zp * count);
      const int32_t want =
          kiln_clamp_i32(spec_mul(shifted, m, s) + mc->out_zp, tmin(mc->type), tmax(mc->type));
      const int32_t got = mc->type == T_S8 ? (int8_t)out8[o] : out8[o];
      if (got != want) bad++;
      /* And within a step or two of the real mean. */
      const double real = mc->in_scale * ((double)qacc[o] / count - mc->in_zp);
      const double q = real / mc->out_scale + mc->out_zp;
      const double qc = q < tmin(mc->type)   ? tmin(mc->type)
                        : q > tmax(mc->type) ? tmax(mc->type)
                                             : q;
      if (fabs(got - qc) > 1.01 + 2e-6 * fabs(q)) bad++;
    }
  }
  CHECK_MSG(bad == 0, "%d wrong: type %d rank %d mask %x count %lld scales %g/%g zps %d/%d", bad,
            mc->type, (int)mc->rank, mask, (long long)count, (double)mc->in_scale,
            (double)mc->out_scale, (int)mc->in_zp, (int)mc->out_zp);
  free(fin);
  free(fout);
  free(facc);
  free(qin);
  free(qacc);
  free(in8);
  free(out8);
}

static void test_mean_sweep(void) {
  test_rng r = {777};
  for (int i = 0; i < 800; i++) {
    mean_case mc;
    memset(&mc, 0, sizeof mc);
    mc.type = test_rand_int(&r, T_F32, T_U8);
    mc.rank = test_rand_int(&r, 0, 6);
    for (int32_t d = 0; d < mc.rank; d++) mc.shape[d] = test_rand_int(&r, 1, mc.rank > 4 ? 3 : 6);
    mc.n_axes = mc.rank ? test_rand_int(&r, 1, mc.rank + 1) : 0;
    for (int32_t k = 0; k < mc.n_axes; k++) mc.axes[k] = test_rand_int(&r, -mc.rank, mc.rank - 1);
    if (i % 5 == 0 && mc.rank == 4) { /* the global-average-pool shape */
      mc.n_axes = 2;
      mc.axes[0] = 1;
      mc.axes[1] = 2;
    }
    if (mc.type != T_F32) {
      mc.in_scale = test_rand_float(&r, 0.002f, 0.3f);
      mc.in_zp = pick_zp(&r, mc.type);
      switch (test_rand_int(&r, 0, 2)) {
        case 0:
          mc.out_scale = mc.in_scale;
          mc.out_zp = mc.in_zp;
          break;
        case 1:
          mc.out_scale = mc.in_scale * test_rand_float(&r, 0.05f, 1.0f);
          mc.out_zp = pick_zp(&r, mc.type);
          break;
        default:
          mc.out_scale = mc.in_scale * test_rand_float(&r, 1.0f, 30.0f);
          mc.out_zp = pick_zp(&r, mc.type);
          break;
      }
    }
    run_mean_case(&r, &mc);
  }
}

/* Large reductions and extreme ratios reach TFLite's clamps on the folded
 * shift (k limited by 31 + shift) and saturate the output. */
static void test_mean_large(void) {
  test_rng r = {99};
  const float ratios[] = {1e-7f, 1e-4f, 0.5f, 1.0f, 7.0f, 3000.0f};
  for (size_t i = 0; i < sizeof ratios / sizeof ratios[0]; i++) {
    mean_case mc;
    memset(&mc, 0, sizeof mc);
    mc.type = i % 2 ? T_S8 : T_U8;
    mc.rank = 4;
    mc.shape[0] = 1, mc.shape[1] = 61, mc.shape[2] = 67, mc.shape[3] = 3;
    mc.n_axes = 2, mc.axes[0] = -3, mc.axes[1] = 2;
    mc.in_scale = 0.05f;
    mc.out_scale = 0.05f / ratios[i];
    mc.in_zp = pick_zp(&r, mc.type);
    mc.out_zp = pick_zp(&r, mc.type);
    run_mean_case(&r, &mc);
  }
}

static void test_mean_empty(void) {
  const int32_t shape[2] = {3, 0};
  float out[3] = {0};
  int8_t q[3] = {5, 5, 5};
  kiln_f32_mean_ref(2, shape, 2u, NULL, out);
  CHECK(isnan(out[0]) && isnan(out[2]));
  kiln_s8_mean_ref(2, shape, 2u, NULL, 0, 1 << 30, 1, 0, q);
  CHECK(q[0] == 0 && q[2] == 0);
}

int main(void) {
  RUN(test_pool_sweep);
  RUN(test_avg_pool_rounding);
  RUN(test_float_specials);
  RUN(test_mean_sweep);
  RUN(test_mean_large);
  RUN(test_mean_empty);
  return test_summary();
}
