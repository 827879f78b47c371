/*
 * On-device learning, the math (kiln/ondevice.h): weight imprinting as
 * libcoral's ImprintingEngine (class weight = normalized sum of the class's
 * embeddings, kept classes resumed from row x stored norm) and softmax
 * regression as libcoral's SoftmaxRegressionModel (plain minibatch SGD on
 * the mean cross-entropy), both in float on the extracted embeddings.
 *
 * The SGD keeps W class-major ([classes][D], the FULLY_CONNECTED layout):
 * logits and gradients are then dot products and axpys along D, runs of
 * 1280 floats for MobileNet, summed in a fixed order, so results depend
 * only on the inputs and the seed.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "kiln/train.h"
#include "train/ondevice_int.h"
#include "train/pipeline_int.h"

kiln_sgd_options kiln_sgd_options_default(void) {
  kiln_sgd_options o = {500, 100, 3.0f, 0.01f, 0};
  return o;
}

void od_normalize_rows(float *rows, int32_t n, int32_t d, float *norms) {
  for (int32_t i = 0; i < n; i++) {
    float *r = rows + (size_t)i * d;
    double sq = 0.0;
    for (int32_t j = 0; j < d; j++) sq += (double)r[j] * r[j];
    const double norm = sqrt(sq);
    if (norms) norms[i] = (float)norm;
    if (norm > 0.0)
      for (int32_t j = 0; j < d; j++) r[j] = (float)(r[j] / norm);
  }
}

void od_quantize_symmetric(const float *w, int64_t n, int8_t *q, float *scale) {
  float max = 0.0f;
  for (int64_t i = 0; i < n; i++) max = fabsf(w[i]) > max ? fabsf(w[i]) : max;
  *scale = max > 0.0f ? max / 127.0f : 1.0f;
  for (int64_t i = 0; i < n; i++) {
    const float v = roundf(w[i] / *scale);
    q[i] = (int8_t)(v > 127.0f ? 127 : (v < -127.0f ? -127 : (int32_t)v));
  }
}

void od_int8_params(float lo, float hi, float *scale, int32_t *zero_point) {
  lo = lo < 0.0f ? lo : 0.0f;
  hi = hi > 0.0f ? hi : 0.0f;
  if (hi - lo < 1e-6f) hi = lo + 1e-6f;
  *scale = (hi - lo) / 255.0f;
  const float zp = roundf(-128.0f - lo / *scale);
  *zero_point = zp < -128.0f ? -128 : (zp > 127.0f ? 127 : (int32_t)zp);
}

kiln_status od_check_samples(const kiln_ondevice_samples *s, int32_t dim, const bool *has_row,
                             kiln_error *err) {
  if (!s || s->n < 0 || s->n_classes < 1 || !s->class_names || (s->n > 0 && (!s->embeddings || !s->labels)))
    return kiln_fail(err, KILN_ERR_INVALID_ARG, "samples: %d samples of %d classes",
                     s ? (int)s->n : 0, s ? (int)s->n_classes : 0);
  int32_t *count = kiln_calloc((size_t)s->n_classes, sizeof *count);
  if (!count) return kiln_fail(err, KILN_ERR_NOMEM, "samples: %d classes", (int)s->n_classes);
  kiln_status st = KILN_OK;
  for (int32_t i = 0; i < s->n && st == KILN_OK; i++) {
    if (s->labels[i] < 0 || s->labels[i] >= s->n_classes) {
      st = kiln_fail(err, KILN_ERR_INVALID_ARG, "sample %d: label %d is not in [0, %d)", (int)i,
                     (int)s->labels[i], (int)s->n_classes);
      break;
    }
    count[s->labels[i]]++;
    const float *e = s->embeddings + (size_t)i * dim;
    for (int32_t j = 0; j < dim; j++)
      if (!isfinite(e[j])) {
        st = kiln_fail(err, KILN_ERR_INVALID_ARG, "sample %d: embedding value %d is %g", (int)i,
                       (int)j, (double)e[j]);
        break;
      }
  }
  for (int32_t c = 0; c < s->n_classes && st == KILN_OK; c++) {
    const char *name = s->class_names[c];
    if (!name || !name[0] || strchr(name, '\n'))
      st = kiln_fail(err, KILN_ERR_INVALID_ARG, "class %d: the name is empty or has a line break",
                     (int)c);
    for (int32_t k = 0; k < c && st == KILN_OK; k++)
      if (strcmp(s->class_names[k], name) == 0)
        st = kiln_fail(err, KILN_ERR_INVALID_ARG, "classes %d and %d are both named '%s'", (int)k,
                       (int)c, name);
    if (st == KILN_OK && count[c] == 0 && !(has_row && has_row[c]))
      st = kiln_fail(err, KILN_ERR_INVALID_ARG, "class '%s' has no training samples", name);
  }
  kiln_free(count);
  return st;
}

static double dot_d(const float *a, const float *b, int32_t n) {
  double sum = 0.0;
  for (int32_t j = 0; j < n; j++) sum += (double)a[j] * b[j];
  return sum;
}

/* ---- Imprinting ---- */

double od_fit_scale(const float *cos, const int32_t *y, const bool *use, int32_t n, int32_t classes) {
  /* mean over the used samples of logsumexp(s cos_i) - s cos_iy: convex in
   * s, so a golden-section search finds its minimum on the interval. */
  double lo = OD_SCALE_MIN, hi = OD_SCALE_MAX;
  int32_t used = 0;
  for (int32_t i = 0; i < n; i++) used += use[i];
  if (used == 0) return KILN_IMPRINT_DEFAULT_SCALE;
  const double g = 0.6180339887498949;
  double a = hi - g * (hi - lo), b = lo + g * (hi - lo), fa = 0, fb = 0;
  for (int it = 0; it < 80; it++) {
    for (int k = 0; k < 2; k++) {
      const double sc = k ? b : a;
      double f = 0.0;
      for (int32_t i = 0; i < n; i++) {
        if (!use[i]) continue;
        const float *ci = cos + (size_t)i * classes;
        double max = -INFINITY, sum = 0.0;
        for (int32_t c = 0; c < classes; c++) max = sc * ci[c] > max ? sc * ci[c] : max;
        for (int32_t c = 0; c < classes; c++) sum += exp(sc * ci[c] - max);
        f += max + log(sum) - sc * ci[y[i]];
      }
      if (k) fb = f;
      else fa = f;
    }
    if (fa <= fb) {
      hi = b;
      b = a;
      a = hi - g * (hi - lo);
    } else {
      lo = a;
      a = b;
      b = lo + g * (hi - lo);
    }
  }
  return 0.5 * (lo + hi);
}

/* Cosines of every sample with every class row, the sample's own class
 * left out of its row (leave-one-out: the row without the sample, from the
 * sum), so that they show how new images will score. use[i] is false for
 * samples that are alone in their class (no row without them). */
static void imprint_cosines(const float *rows, const float *norms, int32_t classes, int32_t d,
                            const kiln_ondevice_samples *s, const int32_t *map, float *cos,
                            bool *use) {
  for (int32_t i = 0; i < s->n; i++) {
    const float *e = s->embeddings + (size_t)i * d;
    const int32_t y = map[s->labels[i]];
    use[i] = false;
    for (int32_t c = 0; c < classes; c++) {
      const double dot = dot_d(rows + (size_t)c * d, e, d);
      cos[(size_t)i * classes + c] = (float)dot;
      if (c != y || !(norms[c] > 0.0f)) continue;
      /* |sum - e|^2 = |sum|^2 - 2 sum.e + e.e, with sum = norm * row */
      const double ee = dot_d(e, e, d), se = norms[c] * dot;
      const double rest = (double)norms[c] * norms[c] - 2.0 * se + ee;
      if (rest > 1e-6) {
        cos[(size_t)i * classes + c] = (float)((se - ee) / sqrt(rest));
        use[i] = true;
      }
    }
  }
}

kiln_status kiln_ondevice_imprint(const kiln_ondevice *od, const kiln_ondevice_samples *s,
                                  bool keep_classes, kiln_model **out, kiln_error *err) {
  *out = NULL;
  if (keep_classes && !od->imprinting)
    return kiln_fail(err, KILN_ERR_INVALID_ARG,
                     "keeping classes needs an imprinting classifier (L2_NORMALIZATION -> "
                     "FULLY_CONNECTED -> MUL -> SOFTMAX); this base model has no imprinted classes");
  if (!s || s->n_classes < 1)
    return kiln_fail(err, KILN_ERR_INVALID_ARG, "imprinting needs at least one class");
  const int32_t d = od->dim, kept = keep_classes ? od->n_classes : 0;
  int32_t *map = kiln_malloc((size_t)s->n_classes * sizeof *map);        /* sample class -> output */
  bool *has_row = kiln_calloc((size_t)s->n_classes, sizeof *has_row);
  const char **names = kiln_malloc(((size_t)kept + s->n_classes) * sizeof *names);
  double *sums = kiln_calloc(((size_t)kept + s->n_classes) * d, sizeof *sums);
  float *rows = kiln_malloc(((size_t)kept + s->n_classes) * d * sizeof *rows);
  float *norms = kiln_calloc((size_t)kept + s->n_classes, sizeof *norms);
  float *cos = NULL, *bias = NULL;
  bool *use = NULL;
  char *desc = NULL;
  kiln_status st = KILN_OK;
  if (!map || !has_row || !names || !sums || !rows || !norms) {
    st = kiln_fail(err, KILN_ERR_NOMEM, "imprinting %d classes", (int)(kept + s->n_classes));
    goto done;
  }
  int32_t classes = kept;
  for (int32_t c = 0; c < kept; c++) names[c] = od->names[c];
  for (int32_t c = 0; c < s->n_classes; c++) {
    map[c] = -1;
    for (int32_t k = 0; k < kept && map[c] < 0 && s->class_names && s->class_names[c]; k++)
      if (strcmp(od->names[k], s->class_names[c]) == 0) map[c] = k;
    has_row[c] = map[c] >= 0;
    if (map[c] < 0) {
      map[c] = classes;
      names[classes++] = s->class_names ? s->class_names[c] : NULL;
    }
  }
  if ((st = od_check_samples(s, d, has_row, err)) != KILN_OK) goto done;
  /* Kept classes resume from their rows: an imprinted class's sum is its
   * normalized row times the stored norm (libcoral LoadExistingClasses). */
  for (int32_t c = 0; c < kept; c++) {
    const float scale = od->sum_norms[c] > 0.0f ? od->sum_norms[c] : 1.0f;
    for (int32_t j = 0; j < d; j++) sums[(size_t)c * d + j] = (double)od->rows[(size_t)c * d + j] * scale;
  }
  for (int32_t i = 0; i < s->n; i++) {
    const int32_t c = map[s->labels[i]];
    if (c < kept && !(od->sum_norms[c] > 0.0f)) {
      st = kiln_fail(err, KILN_ERR_INVALID_ARG,
                     "class '%s' is one of the base model's classes that were not imprinted "
                     "(its training metadata does not list it), so it cannot take new images",
                     od->names[c]);
      goto done;
    }
    const float *e = s->embeddings + (size_t)i * d;
    for (int32_t j = 0; j < d; j++) sums[(size_t)c * d + j] += e[j];
  }
  for (size_t k = 0; k < (size_t)classes * d; k++) rows[k] = (float)sums[k];
  /* Rows of imprinted and new classes are normalized; a kept class that was
   * not imprinted keeps its row as it was. */
  size_t desc_cap = (size_t)classes * 48 + 1, at = 0;
  desc = kiln_malloc(desc_cap);
  if (!desc) {
    st = kiln_fail(err, KILN_ERR_NOMEM, "imprinting metadata");
    goto done;
  }
  desc[0] = '\0';
  for (int32_t c = 0; c < classes; c++) {
    if (c < kept && !(od->sum_norms[c] > 0.0f)) continue;
    od_normalize_rows(rows + (size_t)c * d, 1, d, &norms[c]);
    at += (size_t)snprintf(desc + at, desc_cap - at, "%d %f\n", (int)c, (double)norms[c]);
  }
  /* Leave-one-out cosines: the scale (learned as in Qi et al. unless the
   * base classifier has one) and, for int8, the FC output range. */
  cos = kiln_malloc((size_t)s->n * classes * sizeof *cos + 1);
  use = kiln_malloc((size_t)s->n + 1);
  bias = kiln_malloc((size_t)classes * sizeof *bias);
  if (!cos || !use || !bias) {
    st = kiln_fail(err, KILN_ERR_NOMEM, "imprinting: %d samples", (int)s->n);
    goto done;
  }
  int32_t *y = kiln_malloc((size_t)s->n * sizeof *y + 1);
  if (!y) {
    st = kiln_fail(err, KILN_ERR_NOMEM, "imprinting: %d samples", (int)s->n);
    goto done;
  }
  for (int32_t i = 0; i < s->n; i++) y[i] = map[s->labels[i]];
  imprint_cosines(rows, norms, classes, d, s, map, cos, use);
  const float scale = od->imprinting ? od->scale : (float)od_fit_scale(cos, y, use, s->n, classes);
  kiln_free(y);
  float lo = 0.0f;
  for (size_t k = 0; k < (size_t)s->n * classes; k++) lo = cos[k] < lo || k == 0 ? cos[k] : lo;
  /* int8: the FC outputs cosine - offset. Cosines of pooled ReLU features
   * crowd near 1 (0.95-0.99 between an image and every class here), where
   * libcoral's fixed 1/128 steps tie the best classes; a common offset
   * changes no SOFTMAX output but lets the output range start just below
   * the lowest cosine seen (0 must stay representable), and the range ends
   * at 1, the largest cosine possible. */
  const float offset = lo - OD_COSINE_MARGIN > 0.0f ? lo - OD_COSINE_MARGIN : 0.0f;
  for (int32_t c = 0; c < classes; c++) bias[c] = -offset;
  const bool q = od->dtype == KILN_I8;
  od_head h = {.imprint = true, .classes = classes, .w = rows, .b = q ? bias : NULL,
               .scale = scale, .logit_min = q ? (lo - OD_COSINE_MARGIN) - offset : 0.0f,
               .logit_max = 1.0f - offset, .names = names, .description = desc};
  st = od_build_model(od, &h, out, err);
done:
  kiln_free(map);
  kiln_free(has_row);
  kiln_free(names);
  kiln_free(sums);
  kiln_free(rows);
  kiln_free(norms);
  kiln_free(desc);
  kiln_free(cos);
  kiln_free(use);
  kiln_free(bias);
  return st;
}

/* ---- Softmax regression ---- */

/* Dot product of two runs of n floats, in 8 interleaved partial sums. */
static float dot(const float *a, const float *b, int32_t n) {
  float acc[8] = {0};
  int32_t j = 0;
  for (; j + 8 <= n; j += 8)
    for (int k = 0; k < 8; k++) acc[k] += a[j + k] * b[j + k];
  for (; j < n; j++) acc[0] += a[j] * b[j];
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

/* logits[c] = w[c] . x + b[c]; then probabilities in place of p (may be
 * NULL). Returns the sample's cross-entropy for label y. */
static double forward(const float *x, int32_t d, int32_t classes, const float *w, const float *b,
                      int32_t y, float *logits, float *p) {
  float max = -INFINITY;
  for (int32_t c = 0; c < classes; c++) {
    logits[c] = dot(w + (size_t)c * d, x, d) + b[c];
    max = logits[c] > max ? logits[c] : max;
  }
  double sum = 0.0;
  for (int32_t c = 0; c < classes; c++) sum += exp((double)(logits[c] - max));
  if (p)
    for (int32_t c = 0; c < classes; c++) p[c] = (float)(exp((double)(logits[c] - max)) / sum);
  return log(sum) - (double)(logits[y] - max);
}

void od_evaluate(const float *x, const int32_t *y, int32_t n, int32_t d, int32_t classes,
                 const float *w, const float *b, double *loss, double *accuracy, float *logit_min,
                 float *logit_max) {
  float logits[4096];
  double total = 0.0;
  int64_t correct = 0;
  float lo = INFINITY, hi = -INFINITY;
  for (int32_t i = 0; i < n; i++) {
    total += forward(x + (size_t)i * d, d, classes, w, b, y[i], logits, NULL);
    int32_t best = 0;
    for (int32_t c = 0; c < classes; c++) {
      best = logits[c] > logits[best] ? c : best;
      lo = logits[c] < lo ? logits[c] : lo;
      hi = logits[c] > hi ? logits[c] : hi;
    }
    correct += best == y[i];
  }
  if (loss) *loss = n ? total / n : 0.0;
  if (accuracy) *accuracy = n ? (double)correct / n : 0.0;
  if (logit_min) *logit_min = n ? lo : 0.0f;
  if (logit_max) *logit_max = n ? hi : 0.0f;
}

/* A standard normal value (Box-Muller on two uniforms). */
static float normal(kiln_rng *rng) {
  const double u1 = 1.0 - (double)kiln_rng_uniform(rng), u2 = (double)kiln_rng_uniform(rng);
  return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

#define SGD_MAX_CLASSES 4096

kiln_status od_sgd_fit(const float *x, const int32_t *y, int32_t n, int32_t d, int32_t classes,
                       const kiln_sgd_options *opt, float *w, float *b, kiln_sgd_result *res,
                       kiln_error *err) {
  if (opt->iterations < 1 || opt->iterations > 10000000 || opt->batch < 1 || opt->batch > 1000000 ||
      !(opt->lr > 0.0f) || !isfinite(opt->lr) || !(opt->weight_scale >= 0.0f) ||
      !isfinite(opt->weight_scale))
    return kiln_fail(err, KILN_ERR_INVALID_ARG,
                     "SGD options: %d iterations, batch %d, lr %g, weight scale %g (need >= 1, >= "
                     "1, > 0, >= 0)", (int)opt->iterations, (int)opt->batch, (double)opt->lr,
                     (double)opt->weight_scale);
  if (n < 1 || classes < 1 || classes > SGD_MAX_CLASSES)
    return kiln_fail(err, KILN_ERR_INVALID_ARG, "SGD: %d samples of %d classes (at most %d)",
                     (int)n, (int)classes, SGD_MAX_CLASSES);
  const int32_t batch = opt->batch;
  float *grad_w = kiln_malloc((size_t)classes * d * sizeof *grad_w);
  float *dl = kiln_malloc((size_t)batch * classes * sizeof *dl); /* dLoss/dlogits per sample */
  int32_t *idx = kiln_malloc((size_t)batch * sizeof *idx);
  if (!grad_w || !dl || !idx) {
    kiln_free(grad_w);
    kiln_free(dl);
    kiln_free(idx);
    return kiln_fail(err, KILN_ERR_NOMEM, "SGD: %d x %d weights, batch %d", (int)classes, (int)d,
                     (int)batch);
  }
  kiln_rng rng;
  kiln_rng_seed(&rng, opt->seed);
  for (size_t k = 0; k < (size_t)classes * d; k++) w[k] = normal(&rng) * opt->weight_scale;
  for (int32_t c = 0; c < classes; c++) b[c] = 0.0f;
  kiln_sgd_result r;
  od_evaluate(x, y, n, d, classes, w, b, &r.initial_loss, NULL, NULL, NULL);
  float logits[SGD_MAX_CLASSES];
  for (int32_t it = 0; it < opt->iterations; it++) {
    for (int32_t i = 0; i < batch; i++) idx[i] = (int32_t)kiln_rng_below(&rng, (uint32_t)n);
    /* d(mean CE)/d logits = (softmax - onehot) / batch */
    for (int32_t i = 0; i < batch; i++) {
      float *g = dl + (size_t)i * classes;
      forward(x + (size_t)idx[i] * d, d, classes, w, b, y[idx[i]], logits, g);
      g[y[idx[i]]] -= 1.0f;
      for (int32_t c = 0; c < classes; c++) g[c] /= (float)batch;
    }
    memset(grad_w, 0, (size_t)classes * d * sizeof *grad_w);
    for (int32_t i = 0; i < batch; i++) {
      const float *xi = x + (size_t)idx[i] * d;
      for (int32_t c = 0; c < classes; c++) {
        const float g = dl[(size_t)i * classes + c];
        float *gw = grad_w + (size_t)c * d;
        for (int32_t j = 0; j < d; j++) gw[j] += g * xi[j];
      }
    }
    for (int32_t c = 0; c < classes; c++) {
      float gb = 0.0f;
      for (int32_t i = 0; i < batch; i++) gb += dl[(size_t)i * classes + c];
      b[c] -= opt->lr * gb;
    }
    for (size_t k = 0; k < (size_t)classes * d; k++) w[k] -= opt->lr * grad_w[k];
  }
  od_evaluate(x, y, n, d, classes, w, b, &r.final_loss, &r.train_accuracy, &r.logit_min,
              &r.logit_max);
  if (res) *res = r;
  kiln_free(grad_w);
  kiln_free(dl);
  kiln_free(idx);
  return KILN_OK;
}

kiln_status kiln_ondevice_retrain_last(const kiln_ondevice *od, const kiln_ondevice_samples *s,
                                       const kiln_sgd_options *opt, kiln_model **out,
                                       kiln_sgd_result *res, kiln_error *err) {
  *out = NULL;
  kiln_status st = od_check_samples(s, od->dim, NULL, err);
  if (st != KILN_OK) return st;
  const kiln_sgd_options def = kiln_sgd_options_default();
  if (!opt) opt = &def;
  float *w = kiln_malloc((size_t)s->n_classes * od->dim * sizeof *w);
  float *b = kiln_malloc((size_t)s->n_classes * sizeof *b);
  kiln_sgd_result r;
  if (!w || !b) {
    st = kiln_fail(err, KILN_ERR_NOMEM, "retrain-last: %d classes", (int)s->n_classes);
  } else if ((st = od_sgd_fit(s->embeddings, s->labels, s->n, od->dim, s->n_classes, opt, w, b,
                              &r, err)) == KILN_OK) {
    od_head h = {.imprint = false, .classes = s->n_classes, .w = w, .b = b,
                 .logit_min = r.logit_min, .logit_max = r.logit_max, .names = s->class_names,
                 .description = "kiln: last-layer softmax regression on embeddings"};
    st = od_build_model(od, &h, out, err);
    if (res) *res = r;
  }
  kiln_free(w);
  kiln_free(b);
  return st;
}
