/*
 * Losses of the training engine (kiln/train.h): softmax cross-entropy with
 * label smoothing, sigmoid binary cross-entropy, sigmoid focal loss and
 * smooth L1. Each writes its gradient and returns scale * the weighted sum,
 * computed in double in index order (deterministic, single-threaded: a loss
 * costs little beside the net).
 */
#include <math.h>

#include "kiln/train.h"

/* log(1 + e^x) without overflow. */
static double softplus(double x) { return x > 0 ? x + log1p(exp(-x)) : log1p(exp(x)); }

static double sigmoid(double x) {
  if (x >= 0) return 1.0 / (1.0 + exp(-x));
  const double e = exp(x);
  return e / (1.0 + e);
}

double kiln_loss_softmax_xent(const float *logits, const int32_t *labels, const float *weights,
                              int32_t rows, int32_t classes, float smoothing, float scale,
                              float *grad) {
  double total = 0.0;
  for (int32_t r = 0; r < rows; r++) {
    const float *x = logits + (size_t)r * classes;
    float *g = grad + (size_t)r * classes;
    const int32_t label = labels[r];
    const double w = weights ? weights[r] : 1.0;
    if (label < 0 || label >= classes || w == 0.0) {
      for (int32_t k = 0; k < classes; k++) g[k] = 0.0f;
      continue;
    }
    double max = x[0];
    for (int32_t k = 1; k < classes; k++)
      if (x[k] > max) max = x[k];
    double sum = 0.0;
    for (int32_t k = 0; k < classes; k++) sum += exp(x[k] - max);
    const double log_sum = log(sum);
    const double off = (double)smoothing / classes;
    double loss = 0.0;
    for (int32_t k = 0; k < classes; k++) {
      const double logp = x[k] - max - log_sum;
      const double t = off + (k == label ? 1.0 - smoothing : 0.0);
      loss -= t * logp;
      g[k] = (float)(scale * w * (exp(logp) - t));
    }
    total += w * loss;
  }
  return scale * total;
}

double kiln_loss_sigmoid_bce(const float *logits, const float *targets, const float *weights,
                             int64_t count, float scale, float *grad) {
  double total = 0.0;
  for (int64_t i = 0; i < count; i++) {
    const double x = logits[i], t = targets[i], w = weights ? weights[i] : 1.0;
    /* -t log p - (1 - t) log(1 - p) = softplus(x) - t x */
    total += w * (softplus(x) - t * x);
    grad[i] = (float)(scale * w * (sigmoid(x) - t));
  }
  return scale * total;
}

double kiln_loss_focal(const float *logits, const float *targets, const float *weights,
                       int64_t count, float alpha, float gamma, float scale, float *grad) {
  double total = 0.0;
  for (int64_t i = 0; i < count; i++) {
    const double x = logits[i], t = targets[i], w = weights ? weights[i] : 1.0;
    const double p = sigmoid(x);
    const double logp = -softplus(-x), log1mp = -softplus(x);
    const double a = alpha, g = gamma;
    const double q1 = pow(1.0 - p, g), q0 = pow(p, g);
    const double l1 = -a * q1 * logp, l0 = -(1.0 - a) * q0 * log1mp;
    const double d1 = a * q1 * (g * p * logp - (1.0 - p));
    const double d0 = (1.0 - a) * q0 * (p - g * (1.0 - p) * log1mp);
    total += w * (t * l1 + (1.0 - t) * l0);
    grad[i] = (float)(scale * w * (t * d1 + (1.0 - t) * d0));
  }
  return scale * total;
}

double kiln_loss_smooth_l1(const float *pred, const float *target, const float *weights,
                           int64_t count, float beta, float scale, float *grad) {
  double total = 0.0;
  for (int64_t i = 0; i < count; i++) {
    const double d = (double)pred[i] - target[i], w = weights ? weights[i] : 1.0;
    const double ad = fabs(d);
    double loss, dl;
    if (ad < beta) {
      loss = 0.5 * d * d / beta;
      dl = d / beta;
    } else {
      loss = ad - 0.5 * beta;
      dl = d > 0 ? 1.0 : -1.0;
    }
    total += w * loss;
    grad[i] = (float)(scale * w * dl);
  }
  return scale * total;
}
