/*
 * The SSD training loss (train/ssd_int.h): sigmoid cross-entropy with
 * hard-negative mining for the classes, smooth L1 for the boxes, normalized
 * by the number of matched anchors, as the TF Object Detection API's SSD
 * MobileNet V2 configurations do (WeightedSigmoidClassificationLoss with a
 * background column, HardExampleMiner with 3 negatives per positive and 3
 * per image at least, WeightedSmoothL1LocalizationLoss with delta 1). The
 * miner's NMS at IoU 0.99 over the predicted boxes is left out: it only
 * skips an anchor whose predicted box all but coincides with a harder one's.
 *
 * The element losses and gradients come from the engine
 * (kiln_loss_sigmoid_bce, kiln_loss_smooth_l1) with per-element weights
 * that select the mined anchors and the positives.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "train/ssd_int.h"

/* -t log p - (1 - t) log(1 - p) = softplus(x) - t x, as the engine's BCE. */
static double bce(double x, double t) {
  const double softplus = x > 0 ? x + log1p(exp(-x)) : log1p(exp(x));
  return softplus - t * x;
}

void ssd_anchor_class_loss(const float *logits, const int32_t *target_column, int32_t n,
                           int32_t n_columns, float *loss) {
  for (int32_t i = 0; i < n; i++) {
    const float *x = logits + (size_t)i * n_columns;
    double sum = 0.0;
    for (int32_t k = 0; k < n_columns; k++) sum += bce(x[k], k == target_column[i] ? 1.0 : 0.0);
    loss[i] = (float)sum;
  }
}

static int by_loss(const void *a, const void *b) {
  const ssd_ranked *x = a, *y = b;
  if (x->loss != y->loss) return x->loss > y->loss ? -1 : 1;
  return (x->index > y->index) - (x->index < y->index);
}

int32_t ssd_mine_negatives(const float *loss, const int32_t *match, int32_t n,
                           const ssd_loss_params *p, ssd_ranked *ranked, uint8_t *selected) {
  int32_t positives = 0, negatives = 0;
  for (int32_t i = 0; i < n; i++) {
    selected[i] = match[i] >= 0;
    positives += match[i] >= 0;
    if (match[i] == SSD_NEGATIVE) ranked[negatives++] = (ssd_ranked){loss[i], i};
  }
  int64_t want = (int64_t)floor((double)p->neg_pos_ratio * positives);
  if (want < p->min_negatives) want = p->min_negatives;
  const int32_t take = (int32_t)(want < negatives ? want : negatives);
  if (take < negatives) qsort(ranked, (size_t)negatives, sizeof *ranked, by_loss);
  for (int32_t j = 0; j < take; j++) selected[ranked[j].index] = 1;
  return take;
}

void ssd_loss(const float *logits, const float *encodings, const int32_t *match,
              const int32_t *target_column, const float *box_targets, int32_t images, int32_t n,
              int32_t n_columns, const ssd_loss_params *p, const ssd_loss_scratch *s,
              float *grad_logits, float *grad_encodings, ssd_loss_parts *parts) {
  memset(parts, 0, sizeof *parts);
  const size_t per_image = (size_t)n * n_columns;
  for (int32_t b = 0; b < images; b++) {
    const int32_t *m = match + (size_t)b * n, *col = target_column + (size_t)b * n;
    ssd_anchor_class_loss(logits + b * per_image, col, n, n_columns, s->anchor_loss);
    parts->negatives += ssd_mine_negatives(s->anchor_loss, m, n, p, s->ranked, s->selected);
    float *t = s->targets + b * per_image, *cw = s->class_weights + b * per_image;
    float *bw = s->box_weights + (size_t)b * n * 4;
    for (int32_t i = 0; i < n; i++) {
      const float sel = s->selected[i] ? 1.0f : 0.0f, pos = m[i] >= 0 ? 1.0f : 0.0f;
      parts->positives += m[i] >= 0;
      for (int32_t k = 0; k < n_columns; k++) {
        t[(size_t)i * n_columns + k] = k == col[i] ? 1.0f : 0.0f;
        cw[(size_t)i * n_columns + k] = sel;
      }
      for (int32_t k = 0; k < 4; k++) bw[(size_t)i * 4 + k] = pos;
    }
  }
  const float norm = 1.0f / (float)(parts->positives > 0 ? parts->positives : 1);
  const int64_t count = (int64_t)images * n;
  parts->classification = kiln_loss_sigmoid_bce(logits, s->targets, s->class_weights,
                                                count * n_columns, norm, grad_logits);
  parts->localization = kiln_loss_smooth_l1(encodings, box_targets, s->box_weights, count * 4,
                                            1.0f, p->box_weight * norm, grad_encodings);
  parts->total = parts->classification + parts->localization;
}
