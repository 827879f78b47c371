/*
 * Tests of the conv-family reference kernels (kernels/ref/conv_ref.h).
 *
 * Integer kernels are compared bit for bit with an independent computation
 * written here from the TFLite quantization spec: int64 accumulation of
 * (q_filter - zp_filter) * (q_input - zp_input) plus bias, then the
 * documented requantization (x * 2^left, rounding doubling high multiply
 * with ties toward +infinity, rounding right shift with ties away from zero,
 * written with floor division instead of gemmlowp's nudges), zero point,
 * clamp. Float kernels are compared with a double-precision loop. Shapes
 * are swept with the seeded RNG: odd sizes and channel counts, 1x1 and
 * larger filters, strides 1-3, dilation, SAME and VALID, groups, depth
 * multipliers 1-3, batch 1-2; zero points at their limits, per-axis scales
 * spanning 1e-6..1, and biases that saturate.
 */
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/ref/conv_ref.h"
#include "testutil.h"

static test_rng rng = {0x5eed0c0471ull};

/* ---- The spec, written independently of the kernels ---- */

static int64_t floor_div(int64_t a, int64_t b) { /* b > 0 */
  int64_t q = a / b;
  return (a % b != 0 && a < 0) ? q - 1 : q;
}

/* real = multiplier * 2^(shift - 31), multiplier in [2^30, 2^31). */
static void spec_quantize_multiplier(double real, int32_t *multiplier, int32_t *shift) {
  if (real == 0.0) {
    *multiplier = 0;
    *shift = 0;
    return;
  }
  int e = 0;
  double frac = frexp(real, &e); /* real = frac * 2^e, frac in [0.5, 1) */
  int64_t m = llround(ldexp(frac, 31));
  if (m == ((int64_t)1 << 31)) {
    m >>= 1;
    e++;
  }
  if (e < -31) {
    m = 0;
    e = 0;
  }
  *multiplier = (int32_t)m;
  *shift = e;
}

/* x * multiplier * 2^(shift - 31) the TFLite way (x already wrapped to
 * 32 bits). */
static int32_t spec_requantize(int32_t x, int32_t multiplier, int32_t shift) {
  const int left = shift > 0 ? shift : 0, right = shift > 0 ? 0 : -shift;
  const int32_t y = (int32_t)(uint32_t)((uint64_t)(int64_t)x << left);
  /* High half of 2*y*M, rounded to nearest, ties toward +infinity. */
  const int64_t high = floor_div((int64_t)y * multiplier + ((int64_t)1 << 30), (int64_t)1 << 31);
  if (right == 0) return (int32_t)high;
  const int64_t half = (int64_t)1 << (right - 1);
  /* Divide by 2^right, ties away from zero. */
  return (int32_t)(high >= 0 ? (high + half) >> right : -((-high + half) >> right));
}

static int32_t spec_output(int64_t acc, int32_t mult, int32_t shift, int32_t zp, int32_t lo,
                           int32_t hi) {
  int32_t v = spec_requantize((int32_t)acc, mult, shift) + zp;
  return v < lo ? lo : (v > hi ? hi : v);
}

/* TFLite ComputeOutSize / ComputePaddingWithOffset, from padding.h. */
static int32_t spec_out_size(bool same, int32_t in, int32_t f, int32_t s, int32_t d) {
  int32_t eff = (f - 1) * d + 1;
  return same ? (in + s - 1) / s : (in + s - eff) / s;
}
static int32_t spec_pad(int32_t s, int32_t d, int32_t in, int32_t f, int32_t out, int32_t *off) {
  int32_t total = (out - 1) * s + (f - 1) * d + 1 - in;
  if (total < 0) total = 0;
  *off = total % 2;
  return total / 2;
}

/* ---- Random data ---- */

static int32_t pick_zp(bool s8) {
  const int32_t lo = s8 ? -128 : 0, hi = s8 ? 127 : 255;
  switch (test_rand_int(&rng, 0, 3)) {
    case 0: return lo;
    case 1: return hi;
    default: return test_rand_int(&rng, lo, hi);
  }
}

static float log_uniform(float lo, float hi) {
  return expf(test_rand_float(&rng, logf(lo), logf(hi)));
}

static void fill_q(void *buf, size_t n, bool s8) {
  for (size_t i = 0; i < n; i++) {
    if (s8) ((int8_t *)buf)[i] = (int8_t)test_rand_int(&rng, -128, 127);
    else ((uint8_t *)buf)[i] = (uint8_t)test_rand_int(&rng, 0, 255);
  }
}

static int32_t q_at(const void *buf, size_t i, bool s8) {
  return s8 ? ((const int8_t *)buf)[i] : ((const uint8_t *)buf)[i];
}

static void fill_f(float *buf, size_t n) {
  for (size_t i = 0; i < n; i++) buf[i] = test_rand_float(&rng, -1.0f, 1.0f);
}

/* Per-channel multipliers from random scales: filter scales log-uniform in
 * 1e-6..1 (or one shared), output scale set so the largest channel's
 * products span about `gain` output steps. */
static void pick_multipliers(int32_t channels, bool per_channel, int64_t depth, int32_t *mult,
                             int32_t *shift, float gain) {
  float in_scale = log_uniform(1e-3f, 1.0f);
  float fs[512];
  float max_fs = 0.0f;
  for (int32_t c = 0; c < channels; c++) {
    fs[c] = per_channel || c == 0 ? log_uniform(1e-6f, 1.0f) : fs[0];
    if (fs[c] > max_fs) max_fs = fs[c];
  }
  float out_scale = in_scale * max_fs * 128.0f * sqrtf((float)depth) / gain;
  for (int32_t c = 0; c < channels; c++)
    spec_quantize_multiplier((double)in_scale * fs[c] / out_scale, &mult[c], &shift[c]);
}

static void pick_clamp(bool s8, int32_t zp, int32_t *lo, int32_t *hi) {
  const int32_t qmin = s8 ? -128 : 0, qmax = s8 ? 127 : 255;
  switch (test_rand_int(&rng, 0, 3)) {
    case 0: *lo = zp; *hi = qmax; break; /* RELU-like */
    case 1:
      *lo = test_rand_int(&rng, qmin, zp);
      *hi = test_rand_int(&rng, zp, qmax);
      break;
    default: *lo = qmin; *hi = qmax; break;
  }
}

static int32_t *random_bias(int32_t n, bool big) {
  int32_t *b = malloc((size_t)n * sizeof *b);
  for (int32_t i = 0; i < n; i++)
    b[i] = big ? test_rand_int(&rng, -(1 << 28), 1 << 28) : test_rand_int(&rng, -5000, 5000);
  return b;
}

/* ---- Conv geometry cases ---- */

typedef struct geom {
  int32_t batch, in_h, in_w, in_c, out_c, fh, fw, sh, sw, dh, dw, groups, mult;
  bool same;
} geom;

/* Random geometry; depthwise picks a depth multiplier, conv maybe groups.
 * Retries until the VALID window fits. */
static void random_geom(geom *g, bool depthwise, kiln_conv_params *p) {
  do {
    g->batch = test_rand_int(&rng, 1, 2);
    g->in_h = test_rand_int(&rng, 1, 9);
    g->in_w = test_rand_int(&rng, 1, 9);
    g->fh = test_rand_int(&rng, 1, 4);
    g->fw = test_rand_int(&rng, 1, 4);
    g->sh = test_rand_int(&rng, 1, 3);
    g->sw = test_rand_int(&rng, 1, 2);
    g->dh = test_rand_int(&rng, 0, 3) == 0 ? 2 : 1;
    g->dw = test_rand_int(&rng, 0, 3) == 0 ? test_rand_int(&rng, 2, 3) : 1;
    g->same = test_rand_int(&rng, 0, 1) == 1;
  } while (spec_out_size(g->same, g->in_h, g->fh, g->sh, g->dh) < 1 ||
           spec_out_size(g->same, g->in_w, g->fw, g->sw, g->dw) < 1);
  g->groups = 1;
  g->mult = 1;
  if (depthwise) {
    g->in_c = test_rand_int(&rng, 1, 13);
    g->mult = test_rand_int(&rng, 1, 3);
    g->out_c = g->in_c * g->mult;
  } else {
    g->groups = test_rand_int(&rng, 0, 3) == 0 ? test_rand_int(&rng, 2, 3) : 1;
    g->in_c = g->groups * test_rand_int(&rng, 1, 7);
    g->out_c = g->groups * test_rand_int(&rng, 1, 6);
  }
  memset(p, 0, sizeof *p);
  p->batch = g->batch;
  p->in_h = g->in_h;
  p->in_w = g->in_w;
  p->in_c = g->in_c;
  p->out_c = g->out_c;
  p->filter_h = g->fh;
  p->filter_w = g->fw;
  p->groups = g->groups;
  p->depth_multiplier = g->mult;
  p->stride_h = g->sh;
  p->stride_w = g->sw;
  p->dilation_h = g->dh;
  p->dilation_w = g->dw;
  p->out_h = spec_out_size(g->same, g->in_h, g->fh, g->sh, g->dh);
  p->out_w = spec_out_size(g->same, g->in_w, g->fw, g->sw, g->dw);
  p->pad_h = spec_pad(g->sh, g->dh, g->in_h, g->fh, p->out_h, &p->pad_h_offset);
  p->pad_w = spec_pad(g->sw, g->dw, g->in_w, g->fw, p->out_w, &p->pad_w_offset);
}

static size_t in_size(const kiln_conv_params *p) {
  return (size_t)p->batch * p->in_h * p->in_w * p->in_c;
}
static size_t out_size(const kiln_conv_params *p) {
  return (size_t)p->batch * p->out_h * p->out_w * p->out_c;
}
static size_t idx4(int32_t d1, int32_t d2, int32_t d3, int32_t a, int32_t b, int32_t c,
                   int32_t d) {
  return (((size_t)a * d1 + b) * d2 + c) * d3 + d;
}

/* Visits the taps of output (b, oy, ox, oc) of a conv (depthwise or not):
 * for each in-bounds tap calls back with input and filter element indices. */
typedef void (*tap_fn)(void *ctx, size_t in_index, size_t filter_index);
static void conv_taps(const kiln_conv_params *p, bool depthwise, int32_t b, int32_t oy,
                      int32_t ox, int32_t oc, tap_fn fn, void *ctx) {
  const int32_t fc = depthwise ? 1 : p->in_c / p->groups;
  const int32_t first_ic = depthwise ? oc / p->depth_multiplier : (oc / (p->out_c / p->groups)) * fc;
  for (int32_t fy = 0; fy < p->filter_h; fy++) {
    for (int32_t fx = 0; fx < p->filter_w; fx++) {
      int32_t iy = oy * p->stride_h - p->pad_h + fy * p->dilation_h;
      int32_t ix = ox * p->stride_w - p->pad_w + fx * p->dilation_w;
      if (iy < 0 || ix < 0 || iy >= p->in_h || ix >= p->in_w) continue;
      for (int32_t k = 0; k < fc; k++) {
        size_t ii = idx4(p->in_h, p->in_w, p->in_c, b, iy, ix, first_ic + k);
        size_t fi = depthwise ? idx4(p->filter_h, p->filter_w, p->out_c, 0, fy, fx, oc)
                              : idx4(p->filter_h, p->filter_w, fc, oc, fy, fx, k);
        fn(ctx, ii, fi);
      }
    }
  }
}

typedef struct q_acc {
  const void *in, *f;
  bool s8;
  int32_t in_zp, f_zp;
  int64_t acc;
} q_acc;
static void q_tap(void *ctx, size_t ii, size_t fi) {
  q_acc *a = ctx;
  a->acc += (int64_t)(q_at(a->f, fi, a->s8) - a->f_zp) * (q_at(a->in, ii, a->s8) - a->in_zp);
}

typedef struct f_acc {
  const float *in, *f;
  double sum, mag;
} f_acc;
static void f_tap(void *ctx, size_t ii, size_t fi) {
  f_acc *a = ctx;
  double prod = (double)a->in[ii] * (double)a->f[fi];
  a->sum += prod;
  a->mag += fabs(prod);
}

/* One random quantized conv or depthwise case. */
static void run_q_spatial(bool depthwise, bool s8) {
  geom g;
  kiln_conv_params p;
  random_geom(&g, depthwise, &p);
  const size_t nf = depthwise ? (size_t)g.fh * g.fw * g.out_c
                              : (size_t)g.out_c * g.fh * g.fw * (g.in_c / g.groups);
  void *in = malloc(in_size(&p)), *f = malloc(nf), *out = malloc(out_size(&p));
  int32_t mult[64], shift[64];
  fill_q(in, in_size(&p), s8);
  fill_q(f, nf, s8);
  const int32_t in_zp = pick_zp(s8), out_zp = pick_zp(s8), f_zp = s8 ? 0 : pick_zp(false);
  const int64_t depth = (int64_t)g.fh * g.fw * (depthwise ? 1 : g.in_c / g.groups);
  const bool saturate = test_rand_int(&rng, 0, 4) == 0;
  pick_multipliers(g.out_c, s8 && test_rand_int(&rng, 0, 2) != 0, depth, mult, shift,
                   saturate ? 2000.0f : test_rand_float(&rng, 2.0f, 60.0f));
  int32_t *bias = test_rand_int(&rng, 0, 4) == 0 ? NULL : random_bias(g.out_c, saturate);
  p.input_offset = -in_zp;
  p.filter_offset = -f_zp;
  p.output_offset = out_zp;
  p.multiplier = mult;
  p.shift = shift;
  pick_clamp(s8, out_zp, &p.act_min, &p.act_max);

  if (depthwise && s8) kiln_s8_depthwise_conv2d_ref(&p, in, f, bias, out);
  else if (depthwise) kiln_u8_depthwise_conv2d_ref(&p, in, f, bias, out);
  else if (s8) kiln_s8_conv2d_ref(&p, in, f, bias, out);
  else kiln_u8_conv2d_ref(&p, in, f, bias, out);

  size_t bad = 0, first = 0;
  int32_t want_first = 0;
  for (int32_t b = 0; b < p.batch; b++)
    for (int32_t oy = 0; oy < p.out_h; oy++)
      for (int32_t ox = 0; ox < p.out_w; ox++)
        for (int32_t oc = 0; oc < p.out_c; oc++) {
          q_acc a = {in, f, s8, in_zp, f_zp, 0};
          conv_taps(&p, depthwise, b, oy, ox, oc, q_tap, &a);
          if (bias) a.acc += bias[oc];
          int32_t want =
              spec_output(a.acc, mult[oc], shift[oc], out_zp, p.act_min, p.act_max);
          size_t oi = idx4(p.out_h, p.out_w, p.out_c, b, oy, ox, oc);
          if (q_at(out, oi, s8) != want && bad++ == 0) {
            first = oi;
            want_first = want;
          }
        }
  CHECK_MSG(bad == 0,
            "%s %s: %zu of %zu outputs differ (first at %zu: got %d want %d); in %dx%dx%dx%d "
            "filter %dx%d out_c %d stride %dx%d dilation %dx%d groups %d mult %d %s",
            s8 ? "s8" : "u8", depthwise ? "depthwise" : "conv", bad, out_size(&p), first,
            q_at(out, first, s8), want_first, g.batch, g.in_h, g.in_w, g.in_c, g.fh, g.fw,
            g.out_c, g.sh, g.sw, g.dh, g.dw, g.groups, g.mult, g.same ? "SAME" : "VALID");
  free(in);
  free(f);
  free(out);
  free(bias);
}

static void run_f_spatial(bool depthwise) {
  geom g;
  kiln_conv_params p;
  random_geom(&g, depthwise, &p);
  const size_t nf = depthwise ? (size_t)g.fh * g.fw * g.out_c
                              : (size_t)g.out_c * g.fh * g.fw * (g.in_c / g.groups);
  float *in = malloc(in_size(&p) * sizeof(float)), *f = malloc(nf * sizeof(float));
  float *out = malloc(out_size(&p) * sizeof(float));
  float *bias = NULL;
  fill_f(in, in_size(&p));
  fill_f(f, nf);
  if (test_rand_int(&rng, 0, 3) != 0) {
    bias = malloc((size_t)g.out_c * sizeof(float));
    fill_f(bias, (size_t)g.out_c);
  }
  const int act = test_rand_int(&rng, 0, 2);
  p.float_min = act == 0 ? -INFINITY : (act == 1 ? 0.0f : -0.5f);
  p.float_max = act == 0 ? INFINITY : (act == 1 ? INFINITY : 0.5f);
  if (depthwise) kiln_f32_depthwise_conv2d_ref(&p, in, f, bias, out);
  else kiln_f32_conv2d_ref(&p, in, f, bias, out);
  size_t bad = 0;
  for (int32_t b = 0; b < p.batch; b++)
    for (int32_t oy = 0; oy < p.out_h; oy++)
      for (int32_t ox = 0; ox < p.out_w; ox++)
        for (int32_t oc = 0; oc < p.out_c; oc++) {
          f_acc a = {in, f, 0.0, 0.0};
          conv_taps(&p, depthwise, b, oy, ox, oc, f_tap, &a);
          double want = a.sum + (bias ? bias[oc] : 0.0);
          double mag = a.mag + (bias ? fabs(bias[oc]) : 0.0);
          want = want < p.float_min ? p.float_min : (want > p.float_max ? p.float_max : want);
          float got = out[idx4(p.out_h, p.out_w, p.out_c, b, oy, ox, oc)];
          if (!(fabs(got - want) <= 1e-5 * mag + 1e-7)) bad++;
        }
  CHECK_MSG(bad == 0, "f32 %s: %zu of %zu outputs differ beyond 1e-5", depthwise ? "depthwise" : "conv",
            bad, out_size(&p));
  free(in);
  free(f);
  free(out);
  free(bias);
}

static void test_conv2d_s8(void) {
  for (int i = 0; i < 150; i++) run_q_spatial(false, true);
}
static void test_conv2d_u8(void) {
  for (int i = 0; i < 150; i++) run_q_spatial(false, false);
}
static void test_depthwise_s8(void) {
  for (int i = 0; i < 150; i++) run_q_spatial(true, true);
}
static void test_depthwise_u8(void) {
  for (int i = 0; i < 150; i++) run_q_spatial(true, false);
}
static void test_conv2d_f32(void) {
  for (int i = 0; i < 100; i++) run_f_spatial(false);
}
static void test_depthwise_f32(void) {
  for (int i = 0; i < 100; i++) run_f_spatial(true);
}

/* ---- Fully connected ---- */

static void run_q_fc(bool s8) {
  kiln_fc_params p;
  memset(&p, 0, sizeof p);
  p.batch = test_rand_int(&rng, 1, 3);
  p.in_depth = test_rand_int(&rng, 1, 40);
  p.out_depth = test_rand_int(&rng, 1, 17);
  const size_t ni = (size_t)p.batch * p.in_depth, nw = (size_t)p.out_depth * p.in_depth;
  const size_t no = (size_t)p.batch * p.out_depth;
  void *in = malloc(ni), *w = malloc(nw), *out = malloc(no);
  fill_q(in, ni, s8);
  fill_q(w, nw, s8);
  const bool per_channel = s8 && test_rand_int(&rng, 0, 1) == 1;
  /* Per-tensor weights may carry a zero point (TFLite applies it). */
  const int32_t in_zp = pick_zp(s8), out_zp = pick_zp(s8);
  const int32_t w_zp = per_channel ? 0 : (test_rand_int(&rng, 0, 1) ? pick_zp(s8) : 0);
  const bool saturate = test_rand_int(&rng, 0, 4) == 0;
  /* The reference rescales in double: scales of 2^-k make exact .5 ties
   * (rounded away from zero), others random; a saturating case overflows
   * int32, which TFLite's x86 conversion turns into INT32_MIN. */
  double scale[32];
  for (int32_t o = 0; o < p.out_depth; o++) {
    const int32_t pick = test_rand_int(&rng, 0, 2);
    const double s = pick == 0 ? ldexp(1.0, -test_rand_int(&rng, 1, 12))
                               : (double)test_rand_float(&rng, 1e-5f, 0.05f);
    scale[o] = per_channel || o == 0 ? s : scale[0];
  }
  if (saturate) scale[0] = 1e6;
  int32_t *bias = test_rand_int(&rng, 0, 4) == 0 ? NULL : random_bias(p.out_depth, saturate);
  p.input_offset = -in_zp;
  p.filter_offset = -w_zp;
  p.output_offset = out_zp;
  p.scale = scale;
  pick_clamp(s8, out_zp, &p.act_min, &p.act_max);
  if (s8) kiln_s8_fully_connected_ref(&p, in, w, bias, out);
  else kiln_u8_fully_connected_ref(&p, in, w, bias, out);
  size_t bad = 0;
  for (int32_t b = 0; b < p.batch; b++)
    for (int32_t o = 0; o < p.out_depth; o++) {
      int64_t acc = bias ? bias[o] : 0;
      for (int32_t d = 0; d < p.in_depth; d++)
        acc += (int64_t)(q_at(w, (size_t)o * p.in_depth + d, s8) - w_zp) *
               (q_at(in, (size_t)b * p.in_depth + d, s8) - in_zp);
      const double r = round((double)(int32_t)(uint32_t)(uint64_t)acc * scale[o]);
      int64_t v = (r >= -2147483648.0 && r < 2147483648.0) ? (int64_t)r : INT32_MIN;
      v = (int32_t)(uint32_t)(v + out_zp);
      const int32_t want = (int32_t)(v < p.act_min ? p.act_min : (v > p.act_max ? p.act_max : v));
      if (q_at(out, (size_t)b * p.out_depth + o, s8) != want) bad++;
    }
  CHECK_MSG(bad == 0, "%s fc: %zu of %zu outputs differ (batch %d in %d out %d)", s8 ? "s8" : "u8",
            bad, no, p.batch, p.in_depth, p.out_depth);
  free(in);
  free(w);
  free(out);
  free(bias);
}

static void test_fc_q(void) {
  for (int i = 0; i < 200; i++) run_q_fc(i % 2 == 0);
}

static void test_fc_f32(void) {
  for (int i = 0; i < 100; i++) {
    kiln_fc_params p;
    memset(&p, 0, sizeof p);
    p.batch = test_rand_int(&rng, 1, 3);
    p.in_depth = test_rand_int(&rng, 1, 70);
    p.out_depth = test_rand_int(&rng, 1, 17);
    p.float_min = i % 3 == 0 ? 0.0f : -INFINITY;
    p.float_max = i % 3 == 0 ? 6.0f : INFINITY;
    float *in = malloc((size_t)p.batch * p.in_depth * sizeof(float));
    float *w = malloc((size_t)p.out_depth * p.in_depth * sizeof(float));
    float *b = malloc((size_t)p.out_depth * sizeof(float));
    float *out = malloc((size_t)p.batch * p.out_depth * sizeof(float));
    fill_f(in, (size_t)p.batch * p.in_depth);
    fill_f(w, (size_t)p.out_depth * p.in_depth);
    fill_f(b, (size_t)p.out_depth);
    const bool has_bias = i % 4 != 0;
    kiln_f32_fully_connected_ref(&p, in, w, has_bias ? b : NULL, out);
    size_t bad = 0;
    for (int32_t r = 0; r < p.batch; r++)
      for (int32_t o = 0; o < p.out_depth; o++) {
        double sum = has_bias ? b[o] : 0.0, mag = has_bias ? fabs(b[o]) : 0.0;
        for (int32_t d = 0; d < p.in_depth; d++) {
          double prod = (double)in[r * p.in_depth + d] * w[o * p.in_depth + d];
          sum += prod;
          mag += fabs(prod);
        }
        sum = sum < p.float_min ? p.float_min : (sum > p.float_max ? p.float_max : sum);
        if (!(fabs(out[r * p.out_depth + o] - sum) <= 1e-5 * mag + 1e-7)) bad++;
      }
    CHECK_MSG(bad == 0, "f32 fc: %zu outputs differ", bad);
    free(in);
    free(w);
    free(b);
    free(out);
  }
}

/* ---- Transpose conv ---- */

/* Random transpose conv geometry: TFLite's padding from the output extent. */
static void random_transpose(kiln_conv_params *p) {
  memset(p, 0, sizeof *p);
  p->batch = test_rand_int(&rng, 1, 2);
  p->in_h = test_rand_int(&rng, 1, 6);
  p->in_w = test_rand_int(&rng, 1, 6);
  p->in_c = test_rand_int(&rng, 1, 7);
  p->out_c = test_rand_int(&rng, 1, 6);
  p->filter_h = test_rand_int(&rng, 1, 4);
  p->filter_w = test_rand_int(&rng, 1, 4);
  p->stride_h = test_rand_int(&rng, 1, 3);
  p->stride_w = test_rand_int(&rng, 1, 2);
  p->groups = p->depth_multiplier = p->dilation_h = p->dilation_w = 1;
  const bool same = test_rand_int(&rng, 0, 1) == 1;
  /* TF's output size for the padding, sometimes one more (TFLite accepts any). */
  p->out_h = same ? p->in_h * p->stride_h : (p->in_h - 1) * p->stride_h + p->filter_h;
  p->out_w = same ? p->in_w * p->stride_w : (p->in_w - 1) * p->stride_w + p->filter_w;
  p->out_h += test_rand_int(&rng, 0, 3) == 0;
  int32_t ch = spec_out_size(same, p->out_h, p->filter_h, p->stride_h, 1);
  int32_t cw = spec_out_size(same, p->out_w, p->filter_w, p->stride_w, 1);
  p->pad_h = spec_pad(p->stride_h, 1, p->out_h, p->filter_h, ch, &p->pad_h_offset);
  p->pad_w = spec_pad(p->stride_w, 1, p->out_w, p->filter_w, cw, &p->pad_w_offset);
}

/* Visits the (input, filter) pairs reaching output (b, oy, ox, oc), as a
 * gather: iy * stride - pad + fy == oy. */
static void transpose_taps(const kiln_conv_params *p, int32_t b, int32_t oy, int32_t ox,
                           int32_t oc, tap_fn fn, void *ctx) {
  for (int32_t iy = 0; iy < p->in_h; iy++)
    for (int32_t ix = 0; ix < p->in_w; ix++) {
      int32_t fy = oy - (iy * p->stride_h - p->pad_h), fx = ox - (ix * p->stride_w - p->pad_w);
      if (fy < 0 || fx < 0 || fy >= p->filter_h || fx >= p->filter_w) continue;
      for (int32_t ic = 0; ic < p->in_c; ic++)
        fn(ctx, idx4(p->in_h, p->in_w, p->in_c, b, iy, ix, ic),
           idx4(p->filter_h, p->filter_w, p->in_c, oc, fy, fx, ic));
    }
}

static void test_transpose_q(void) {
  for (int i = 0; i < 150; i++) {
    const bool s8 = i % 2 == 0;
    kiln_conv_params p;
    random_transpose(&p);
    const size_t nf = (size_t)p.out_c * p.filter_h * p.filter_w * p.in_c;
    void *in = malloc(in_size(&p)), *f = malloc(nf), *out = malloc(out_size(&p));
    int32_t *scratch = malloc(out_size(&p) * sizeof(int32_t));
    memset(scratch, 0x5a, out_size(&p) * sizeof(int32_t)); /* contents must not matter */
    fill_q(in, in_size(&p), s8);
    fill_q(f, nf, s8);
    const int32_t in_zp = pick_zp(s8), out_zp = pick_zp(s8), f_zp = s8 ? 0 : pick_zp(false);
    int32_t mult[16], shift[16];
    const bool saturate = test_rand_int(&rng, 0, 4) == 0;
    pick_multipliers(p.out_c, s8 && i % 4 == 0, (int64_t)p.in_c * 4, mult, shift,
                     saturate ? 2000.0f : test_rand_float(&rng, 2.0f, 60.0f));
    int32_t *bias = i % 5 == 0 ? NULL : random_bias(p.out_c, saturate);
    p.input_offset = -in_zp;
    p.filter_offset = -f_zp;
    p.output_offset = out_zp;
    p.multiplier = mult;
    p.shift = shift;
    pick_clamp(s8, out_zp, &p.act_min, &p.act_max);
    if (s8) kiln_s8_transpose_conv_ref(&p, in, f, bias, scratch, out);
    else kiln_u8_transpose_conv_ref(&p, in, f, bias, scratch, out);
    size_t bad = 0;
    for (int32_t b = 0; b < p.batch; b++)
      for (int32_t oy = 0; oy < p.out_h; oy++)
        for (int32_t ox = 0; ox < p.out_w; ox++)
          for (int32_t oc = 0; oc < p.out_c; oc++) {
            q_acc a = {in, f, s8, in_zp, f_zp, 0};
            transpose_taps(&p, b, oy, ox, oc, q_tap, &a);
            if (bias) a.acc += bias[oc];
            int32_t want = spec_output(a.acc, mult[oc], shift[oc], out_zp, p.act_min, p.act_max);
            if (q_at(out, idx4(p.out_h, p.out_w, p.out_c, b, oy, ox, oc), s8) != want) bad++;
          }
    CHECK_MSG(bad == 0, "%s transpose conv: %zu of %zu outputs differ (in %dx%dx%d filter %dx%d "
              "stride %dx%d out %dx%dx%d pad %d,%d)",
              s8 ? "s8" : "u8", bad, out_size(&p), p.in_h, p.in_w, p.in_c, p.filter_h,
              p.filter_w, p.stride_h, p.stride_w, p.out_h, p.out_w, p.out_c, p.pad_h, p.pad_w);
    free(in);
    free(f);
    free(out);
    free(scratch);
    free(bias);
  }
}

static void test_transpose_f32(void) {
  for (int i = 0; i < 100; i++) {
    const bool mediapipe = i % 2 == 1;
    kiln_conv_params p;
    random_transpose(&p);
    const size_t nf = (size_t)p.out_c * p.filter_h * p.filter_w * p.in_c;
    float *in = malloc(in_size(&p) * sizeof(float)), *f = malloc(nf * sizeof(float));
    float *out = malloc(out_size(&p) * sizeof(float)), *bias = malloc((size_t)p.out_c * 4);
    fill_f(in, in_size(&p));
    fill_f(f, nf);
    fill_f(bias, (size_t)p.out_c);
    const bool has_bias = mediapipe || i % 4 != 0;
    p.float_min = mediapipe || i % 3 ? -INFINITY : 0.0f;
    p.float_max = mediapipe || i % 3 ? INFINITY : 6.0f;
    if (mediapipe) kiln_f32_transpose_conv_bias_ref(&p, in, f, bias, out);
    else kiln_f32_transpose_conv_ref(&p, in, f, has_bias ? bias : NULL, out);
    size_t bad = 0;
    for (int32_t b = 0; b < p.batch; b++)
      for (int32_t oy = 0; oy < p.out_h; oy++)
        for (int32_t ox = 0; ox < p.out_w; ox++)
          for (int32_t oc = 0; oc < p.out_c; oc++) {
            f_acc a = {in, f, 0.0, 0.0};
            transpose_taps(&p, b, oy, ox, oc, f_tap, &a);
            double want = a.sum + (has_bias ? bias[oc] : 0.0);
            double mag = a.mag + (has_bias ? fabs(bias[oc]) : 0.0);
            want = want < p.float_min ? p.float_min : (want > p.float_max ? p.float_max : want);
            float got = out[idx4(p.out_h, p.out_w, p.out_c, b, oy, ox, oc)];
            if (!(fabs(got - want) <= 1e-5 * mag + 1e-7)) bad++;
          }
    CHECK_MSG(bad == 0, "f32 transpose conv%s: %zu outputs differ", mediapipe ? " (bias)" : "",
              bad);
    free(in);
    free(f);
    free(out);
    free(bias);
  }
}

/* The float kernels add in TFLite's order (products, then bias) and
 * MediaPipe's (bias, then products). Two channels of one pixel reaching one
 * output: TFLite computes (a + a) + 1, MediaPipe (1 + a) + a, which differ
 * in float for a = 3e-8. */
static void test_transpose_bias_order(void) {
  kiln_conv_params p;
  memset(&p, 0, sizeof p);
  p.batch = p.in_h = p.in_w = p.out_h = p.out_w = p.out_c = p.filter_h = p.filter_w = 1;
  p.in_c = 2;
  p.stride_h = p.stride_w = p.groups = p.depth_multiplier = p.dilation_h = p.dilation_w = 1;
  p.float_min = -INFINITY;
  p.float_max = INFINITY;
  const float in[2] = {1.0f, 1.0f}, f[2] = {3e-8f, 3e-8f}, bias[1] = {1.0f};
  float out_tfl[1], out_mp[1];
  kiln_f32_transpose_conv_ref(&p, in, f, bias, out_tfl);
  kiln_f32_transpose_conv_bias_ref(&p, in, f, bias, out_mp);
  const volatile float a = 3e-8f, one = 1.0f;
  const float tfl = (a + a) + one, mp = (one + a) + a;
  CHECK(tfl != mp);
  CHECK(out_tfl[0] == tfl);
  CHECK(out_mp[0] == mp);
}

/* ---- Parameter helpers ---- */

static void test_out_size_and_pad(void) {
  int32_t off = -1;
  CHECK(kiln_conv_out_size(true, 7, 3, 2, 1) == 4);
  CHECK(kiln_conv_out_size(false, 7, 3, 2, 1) == 3);
  CHECK(kiln_conv_out_size(false, 7, 3, 2, 2) == 2); /* effective filter 5 */
  CHECK(kiln_conv_out_size(false, 2, 3, 1, 1) == 0); /* does not fit */
  CHECK(kiln_conv_out_size(true, 1, 5, 3, 4) == 1);
  CHECK(kiln_conv_pad(2, 1, 7, 3, 4, &off) == 1 && off == 0);
  CHECK(kiln_conv_pad(2, 1, 8, 3, 4, &off) == 0 && off == 1);
  CHECK(kiln_conv_pad(1, 2, 5, 3, 5, &off) == 2 && off == 0);
  CHECK(kiln_conv_pad(2, 1, 7, 3, 3, &off) == 0 && off == 0); /* VALID: negative total -> 0 */
  CHECK(kiln_conv_pad(1, 1, 4, 4, 4, &off) == 1 && off == 1);
  /* Sweep against the test's own transcription of padding.h. */
  for (int i = 0; i < 500; i++) {
    bool same = test_rand_int(&rng, 0, 1);
    int32_t in = test_rand_int(&rng, 1, 40), f = test_rand_int(&rng, 1, 7);
    int32_t s = test_rand_int(&rng, 1, 4), d = test_rand_int(&rng, 1, 3);
    int32_t out = (int32_t)kiln_conv_out_size(same, in, f, s, d);
    CHECK(out == spec_out_size(same, in, f, s, d));
    if (out < 1) continue;
    int32_t o1, o2;
    CHECK(kiln_conv_pad(s, d, in, f, out, &o1) == spec_pad(s, d, in, f, out, &o2) && o1 == o2);
  }
}

static void test_transpose_bias_geometry(void) {
  int32_t pad = -1;
  /* The selfie segmentation model: 128 -> 256 with a 2x2 filter, stride 2. */
  CHECK(kiln_transpose_conv_bias_out_size(true, 128, 2, 2, &pad) == 256 && pad == 0);
  /* total = max(0, 3 - (5-1)%2 - 1) = 2: out 2*4+3-2 = 9, pad 1. */
  CHECK(kiln_transpose_conv_bias_out_size(true, 5, 3, 2, &pad) == 9 && pad == 1);
  /* total = 3 - 1 - 1 = 1: out 8, pad 0. */
  CHECK(kiln_transpose_conv_bias_out_size(true, 4, 3, 2, &pad) == 8 && pad == 0);
  /* total = 4 - 0 - 1 = 3: out 1*(6-1)+4-3 = 6, pad 1. */
  CHECK(kiln_transpose_conv_bias_out_size(true, 6, 4, 1, &pad) == 6 && pad == 1);
  /* filter smaller than the stride: total = max(0, 1 - 2 - 1) = 0. */
  CHECK(kiln_transpose_conv_bias_out_size(true, 4, 1, 3, &pad) == 10 && pad == 0);
  CHECK(kiln_transpose_conv_bias_out_size(false, 5, 3, 2, &pad) == 11 && pad == 0);
}

static void test_multipliers(void) {
  int32_t m, s, em, es;
  /* Exact powers of two. */
  kiln_conv_multiplier(0.5f, 0.25f, 1.0f, &m, &s);
  CHECK(m == (1 << 30) && s == -2);
  kiln_conv_multiplier(1.0f, 1.0f, 0.25f, &m, &s);
  CHECK(m == (1 << 30) && s == 3);
  kiln_conv_multiplier(1.0f, 0.0f, 0.25f, &m, &s);
  CHECK(m == 0 && s == 0);
  /* Tiny ratios flush to zero below 2^-32. */
  kiln_conv_multiplier(1e-6f, 1e-6f, 1.0f, &m, &s);
  CHECK(m == 0 && s == 0);
  int legacy_differs = 0;
  for (int i = 0; i < 2000; i++) {
    float a = log_uniform(1e-4f, 1.0f), b = log_uniform(1e-6f, 1.0f), c = log_uniform(1e-4f, 1.0f);
    kiln_conv_multiplier(a, b, c, &m, &s);
    spec_quantize_multiplier((double)a * (double)b / (double)c, &em, &es);
    CHECK(m == em && s == es);
    int32_t lm, ls;
    kiln_conv_multiplier_legacy(a, b, c, &lm, &ls);
    const float prod = a * b;
    spec_quantize_multiplier((double)prod / (double)c, &em, &es);
    CHECK(lm == em && ls == es);
    legacy_differs += lm != m || ls != s;
  }
  /* The float product really does change some multipliers. */
  CHECK(legacy_differs > 0);

  CHECK(kiln_conv_bias_scale_ok(0.5f, 0.01f, 0.005f, 0.1f));
  CHECK(kiln_conv_bias_scale_ok(0.5f, 0.01f, 0.005f + 0.0019f, 0.1f));
  CHECK(!kiln_conv_bias_scale_ok(0.5f, 0.01f, 0.005f + 0.0021f, 0.1f));
  CHECK(!kiln_conv_bias_scale_ok(0.5f, 0.01f, 0.0f, 0.01f)); /* unquantized bias */
}

/* The requantization corner cases against the spec transcription (the spec
 * itself is pinned by hand-computed values). */
static void test_spec_requantize(void) {
  CHECK(spec_requantize(3, 1 << 30, 0) == 2);    /* 1.5 -> 2 */
  CHECK(spec_requantize(-3, 1 << 30, 0) == -1);  /* -1.5: doubling high mul ties up */
  CHECK(spec_requantize(3, 1 << 30, -1) == 1);   /* (3*0.5=1.5 -> 2) / 2 = 1 */
  CHECK(spec_requantize(-6, 1 << 30, -1) == -2); /* -3 / 2 = -1.5 -> -2 */
  CHECK(spec_requantize(5, 1 << 30, 2) == 10);   /* 5 * 4 * 0.5 */
  CHECK(spec_requantize(100, 0, 0) == 0);
}

int main(void) {
  RUN(test_spec_requantize);
  RUN(test_out_size_and_pad);
  RUN(test_transpose_bias_geometry);
  RUN(test_multipliers);
  RUN(test_conv2d_s8);
  RUN(test_conv2d_u8);
  RUN(test_conv2d_f32);
  RUN(test_depthwise_s8);
  RUN(test_depthwise_u8);
  RUN(test_depthwise_f32);
  RUN(test_fc_q);
  RUN(test_fc_f32);
  RUN(test_transpose_q);
  RUN(test_transpose_f32);
  RUN(test_transpose_bias_order);
  return test_summary();
}
