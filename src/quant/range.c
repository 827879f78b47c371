/*
 * Activation statistics and range selection for calibration.
 *
 * Each tracked tensor keeps its min/max and a histogram of values over
 * [-bound, bound] in KILN_HIST_BINS bins. The bound starts at the first
 * sample's largest magnitude (rounded up to a power of two) and doubles as
 * larger values arrive; doubling merges bin pairs into the middle half, so
 * one pass over the calibration data suffices.
 *
 * Methods: minmax takes [min, max]; percentile cuts (100 - p)/2 % of the
 * mass from each tail; entropy scales the min/max range by the factor whose
 * 8-bit quantization of the histogram has the least KL divergence from the
 * histogram itself (the TensorRT criterion, searched over one scale factor
 * so asymmetric ranges keep their shape).
 */
#include <math.h>
#include <string.h>

#include "quant/quant_int.h"

static float pow2_ceil(float x) {
  int e;
  float m = frexpf(x, &e);
  (void)m;
  return ldexpf(1.0f, e); /* >= x */
}

static void double_bound(kiln_tensor_stats *s) {
  uint64_t merged[KILN_HIST_BINS];
  memset(merged, 0, sizeof merged);
  for (int k = 0; k < KILN_HIST_BINS; k++) merged[KILN_HIST_BINS / 4 + k / 2] += s->hist[k];
  memcpy(s->hist, merged, sizeof merged);
  s->bound *= 2.0f;
}

kiln_status kiln_stats_add(kiln_tensor_stats *s, const float *x, int64_t n, kiln_error *err) {
  if (n <= 0) return KILN_OK;
  float lo = x[0], hi = x[0];
  for (int64_t i = 1; i < n; i++) {
    lo = x[i] < lo ? x[i] : lo;
    hi = x[i] > hi ? x[i] : hi;
  }
  if (!isfinite(lo) || !isfinite(hi))
    return kiln_fail(err, KILN_ERR_FORMAT, "the float model produced a non-finite value");
  if (!s->hist) {
    s->hist = kiln_calloc(KILN_HIST_BINS, sizeof *s->hist);
    if (!s->hist) return kiln_fail(err, KILN_ERR_NOMEM, "out of memory for calibration histograms");
    float m = fmaxf(fabsf(lo), fabsf(hi));
    s->bound = m > 0.0f ? pow2_ceil(m) : 1.0f;
    s->min = lo;
    s->max = hi;
    s->seen = true;
  }
  s->min = lo < s->min ? lo : s->min;
  s->max = hi > s->max ? hi : s->max;
  float m = fmaxf(fabsf(lo), fabsf(hi));
  while (m >= s->bound) double_bound(s);
  const float inv_width = (float)KILN_HIST_BINS / (2.0f * s->bound);
  for (int64_t i = 0; i < n; i++) {
    int32_t b = (int32_t)((x[i] + s->bound) * inv_width);
    b = b < 0 ? 0 : (b >= KILN_HIST_BINS ? KILN_HIST_BINS - 1 : b);
    s->hist[b]++;
  }
  s->count += (uint64_t)n;
  return KILN_OK;
}

/* Value at the low edge of bin b. */
static float bin_edge(const kiln_tensor_stats *s, int32_t b) {
  return -s->bound + 2.0f * s->bound * (float)b / (float)KILN_HIST_BINS;
}

static void percentile_range(const kiln_tensor_stats *s, float p, float *lo, float *hi) {
  const double tail = (1.0 - (double)p / 100.0) / 2.0 * (double)s->count;
  double acc = 0;
  int32_t b_lo = 0, b_hi = KILN_HIST_BINS - 1;
  for (int32_t b = 0; b < KILN_HIST_BINS; b++) {
    acc += (double)s->hist[b];
    if (acc > tail) {
      b_lo = b;
      break;
    }
  }
  acc = 0;
  for (int32_t b = KILN_HIST_BINS - 1; b >= 0; b--) {
    acc += (double)s->hist[b];
    if (acc > tail) {
      b_hi = b;
      break;
    }
  }
  *lo = fmaxf(s->min, bin_edge(s, b_lo));
  *hi = fminf(s->max, bin_edge(s, b_hi + 1));
}

/* KL(P || Q), the TensorRT criterion: P is the histogram restricted to
 * bins [b0, b1) with the mass outside folded into the edge bins (what the
 * clipped tensor holds); Q quantizes the unclipped slice to 256 levels,
 * spreading each level's mass uniformly over its non-empty bins (what 8 bits
 * can represent). Building Q from the slice before folding makes clipping
 * cost something: without it the divergence falls as the range shrinks. */
static double clipped_kl(const uint64_t *hist, int32_t b0, int32_t b1, double *p, double *q) {
  const int32_t n = b1 - b0;
  if (n <= 0) return INFINITY;
  for (int32_t i = 0; i < n; i++) p[i] = (double)hist[b0 + i];
  const int32_t levels = 256;
  for (int32_t l = 0; l < levels; l++) {
    int32_t s = (int32_t)((int64_t)l * n / levels), e = (int32_t)((int64_t)(l + 1) * n / levels);
    if (e <= s) continue;
    double mass = 0;
    int32_t nonzero = 0;
    for (int32_t i = s; i < e; i++) {
      mass += p[i];
      nonzero += p[i] > 0;
    }
    for (int32_t i = s; i < e; i++) q[i] = p[i] > 0 ? mass / nonzero : 0;
  }
  for (int32_t b = 0; b < b0; b++) p[0] += (double)hist[b];
  for (int32_t b = b1; b < KILN_HIST_BINS; b++) p[n - 1] += (double)hist[b];
  double sum_p = 0, sum_q = 0;
  for (int32_t i = 0; i < n; i++) {
    sum_p += p[i];
    sum_q += q[i];
  }
  if (sum_p <= 0 || sum_q <= 0) return INFINITY;
  double kl = 0;
  for (int32_t i = 0; i < n; i++) {
    if (p[i] <= 0) continue;
    const double pi = p[i] / sum_p;
    /* A bin P needs that Q left empty (the folded edges): TensorRT's
     * smoothing, a small mass instead of an infinite divergence. */
    const double qi = q[i] > 0 ? q[i] / sum_q : 1e-4 / (double)n;
    kl += pi * log(pi / qi);
  }
  return kl;
}

static void entropy_range(const kiln_tensor_stats *s, float *lo, float *hi) {
  const float full_lo = fminf(0.0f, s->min), full_hi = fmaxf(0.0f, s->max);
  const float width = 2.0f * s->bound / (float)KILN_HIST_BINS;
  double p[KILN_HIST_BINS], q[KILN_HIST_BINS];
  double best = INFINITY;
  float best_alpha = 1.0f;
  for (int k = 100; k >= 5; k--) {
    const float alpha = (float)k / 100.0f;
    int32_t b0 = (int32_t)floorf((alpha * full_lo + s->bound) / width);
    int32_t b1 = (int32_t)ceilf((alpha * full_hi + s->bound) / width);
    b0 = b0 < 0 ? 0 : b0;
    b1 = b1 > KILN_HIST_BINS ? KILN_HIST_BINS : b1;
    if (b1 - b0 < 256) break; /* fewer bins than levels: no information left */
    double kl = clipped_kl(s->hist, b0, b1, p, q);
    if (kl < best) {
      best = kl;
      best_alpha = alpha;
    }
  }
  *lo = best_alpha * full_lo;
  *hi = best_alpha * full_hi;
}

void kiln_stats_range(const kiln_tensor_stats *s, const kiln_quant_options *opt, float *lo,
                      float *hi) {
  float a = s->min, b = s->max;
  if (s->seen && s->count > 0) {
    if (opt->method == KILN_CALIB_PERCENTILE) percentile_range(s, opt->percentile, &a, &b);
    else if (opt->method == KILN_CALIB_ENTROPY) entropy_range(s, &a, &b);
  }
  *lo = fminf(0.0f, a);
  *hi = fmaxf(0.0f, b);
}

void kiln_quant_params_for_range(float lo, float hi, float *scale, int32_t *zero_point) {
  lo = fminf(lo, 0.0f);
  hi = fmaxf(hi, 0.0f);
  if (hi - lo < 1e-8f) hi = lo + 1e-8f; /* a constant-zero tensor */
  const float s = (hi - lo) / 255.0f;
  /* The zero point that maps lo to -128, nudged to an integer in range
   * (TFLite's ChooseQuantizationParams). */
  const double zp_from_min = -128.0 - (double)lo / (double)s;
  const double zp_from_max = 127.0 - (double)hi / (double)s;
  const double err_min = fabs(-128.0) + fabs((double)lo / (double)s);
  const double err_max = fabs(127.0) + fabs((double)hi / (double)s);
  double zp = err_min < err_max ? zp_from_min : zp_from_max;
  long z = lround(zp);
  *scale = s;
  *zero_point = (int32_t)(z < -128 ? -128 : (z > 127 ? 127 : z));
}
