/*
 * Classification metrics (kiln_eval_classify): one pass over the samples
 * fills the confusion matrix (row = true label, column = prediction) and
 * the top-k count; everything else derives from the matrix. Zero divisions
 * give 0 and the averages cover the classes seen as a label or a
 * prediction, as scikit-learn reports them.
 */
#include <math.h>
#include <string.h>

#include "kiln/eval.h"

/* The best score's class: the lowest index among equal best scores. */
static int32_t argmax(const float *row, int32_t n_classes) {
  int32_t best = 0;
  for (int32_t c = 1; c < n_classes; c++)
    if (row[c] > row[best]) best = c;
  return best;
}

/* Classes ranking before `label`: a higher score, or an equal score and a
 * lower index. */
static int32_t rank_of(const float *row, int32_t n_classes, int32_t label) {
  int32_t before = 0;
  for (int32_t c = 0; c < n_classes; c++)
    if (row[c] > row[label] || (row[c] == row[label] && c < label)) before++;
  return before;
}

static kiln_status check_args(const int32_t *labels, const int32_t *predicted, const float *scores,
                              int64_t n, int32_t n_classes, int32_t top_k, kiln_error *err) {
  if (n < 1) return kiln_fail(err, KILN_ERR_INVALID_ARG, "classification: %lld samples", (long long)n);
  if (n_classes < 1)
    return kiln_fail(err, KILN_ERR_INVALID_ARG, "classification: %d classes", (int)n_classes);
  if (!labels) return kiln_fail(err, KILN_ERR_INVALID_ARG, "classification: no labels");
  if ((predicted == NULL) == (scores == NULL))
    return kiln_fail(err, KILN_ERR_INVALID_ARG,
                     "classification: give either predicted classes or scores");
  if (top_k < 0 || top_k > n_classes)
    return kiln_fail(err, KILN_ERR_INVALID_ARG, "classification: top_k %d outside [0, %d]",
                     (int)top_k, (int)n_classes);
  if (top_k > 0 && !scores)
    return kiln_fail(err, KILN_ERR_INVALID_ARG, "classification: top_k %d needs scores", (int)top_k);
  for (int64_t i = 0; i < n; i++) {
    if (labels[i] < 0 || labels[i] >= n_classes)
      return kiln_fail(err, KILN_ERR_INVALID_ARG, "classification: sample %lld: label %d outside [0, %d)",
                       (long long)i, (int)labels[i], (int)n_classes);
    if (predicted && (predicted[i] < 0 || predicted[i] >= n_classes))
      return kiln_fail(err, KILN_ERR_INVALID_ARG,
                       "classification: sample %lld: prediction %d outside [0, %d)", (long long)i,
                       (int)predicted[i], (int)n_classes);
    for (int32_t c = 0; scores && c < n_classes; c++)
      if (isnan(scores[i * n_classes + c]))
        return kiln_fail(err, KILN_ERR_INVALID_ARG, "classification: sample %lld: score of class %d is NaN",
                         (long long)i, (int)c);
  }
  return KILN_OK;
}

static double ratio(int64_t num, int64_t den) { return den > 0 ? (double)num / (double)den : 0.0; }

/* Per-class metrics and averages from the confusion matrix. */
static void summarize(kiln_eval_classification *c) {
  const int32_t k = c->n_classes;
  int64_t trace = 0, present = 0;
  double sum_p = 0, sum_r = 0, sum_f = 0, wsum_p = 0, wsum_r = 0, wsum_f = 0;
  for (int32_t i = 0; i < k; i++) {
    kiln_eval_class_metrics *m = &c->classes[i];
    for (int32_t j = 0; j < k; j++) {
      m->support += c->confusion[(int64_t)i * k + j];
      m->predicted += c->confusion[(int64_t)j * k + i];
    }
    m->correct = c->confusion[(int64_t)i * k + i];
    trace += m->correct;
    m->precision = ratio(m->correct, m->predicted);
    m->recall = ratio(m->correct, m->support);
    m->f1 = ratio(2 * m->correct, m->support + m->predicted);
    if (m->support > 0 || m->predicted > 0) {
      present++;
      sum_p += m->precision;
      sum_r += m->recall;
      sum_f += m->f1;
    }
    wsum_p += m->precision * (double)m->support;
    wsum_r += m->recall * (double)m->support;
    wsum_f += m->f1 * (double)m->support;
  }
  const double n = (double)c->n_samples;
  c->accuracy = (double)trace / n;
  c->macro_precision = sum_p / (double)present;
  c->macro_recall = sum_r / (double)present;
  c->macro_f1 = sum_f / (double)present;
  c->weighted_precision = wsum_p / n;
  c->weighted_recall = wsum_r / n;
  c->weighted_f1 = wsum_f / n;
}

kiln_status kiln_eval_classify(const int32_t *labels, const int32_t *predicted,
                               const float *scores, int64_t n, int32_t n_classes,
                               int32_t top_k, kiln_eval_classification *out, kiln_error *err) {
  memset(out, 0, sizeof *out);
  kiln_status s = check_args(labels, predicted, scores, n, n_classes, top_k, err);
  if (s != KILN_OK) return s;
  out->n_classes = n_classes;
  out->n_samples = n;
  out->top_k = top_k;
  out->top_k_accuracy = -1;
  out->classes = kiln_calloc((size_t)n_classes, sizeof *out->classes);
  out->confusion = kiln_calloc((size_t)n_classes * (size_t)n_classes, sizeof *out->confusion);
  if (!out->classes || !out->confusion) {
    kiln_eval_classification_free(out);
    return kiln_fail(err, KILN_ERR_NOMEM, "classification: out of memory for %d classes",
                     (int)n_classes);
  }
  int64_t in_top_k = 0;
  for (int64_t i = 0; i < n; i++) {
    const float *row = scores ? scores + i * n_classes : NULL;
    const int32_t pred = predicted ? predicted[i] : argmax(row, n_classes);
    out->confusion[(int64_t)labels[i] * n_classes + pred]++;
    if (top_k > 0 && rank_of(row, n_classes, labels[i]) < top_k) in_top_k++;
  }
  if (top_k > 0) out->top_k_accuracy = (double)in_top_k / (double)n;
  summarize(out);
  return KILN_OK;
}

void kiln_eval_classification_free(kiln_eval_classification *c) {
  if (!c) return;
  kiln_free(c->classes);
  kiln_free(c->confusion);
  memset(c, 0, sizeof *c);
}
