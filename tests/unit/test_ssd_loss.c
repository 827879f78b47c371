/*
 * Tests of train/ssd_loss.c: per-anchor class loss, hard-negative mining
 * (budget, minimum, ties, ignored anchors), and the batch loss against a
 * hand computation and finite differences of its value.
 */
#include <math.h>
#include <string.h>

#include "testutil.h"
#include "train/ssd_int.h"

static void test_anchor_loss(void) {
  const float logits[2][3] = {{0, 0, 0}, {2, -1, 0.5f}};
  const int32_t col[2] = {0, 2};
  float loss[2];
  ssd_anchor_class_loss(&logits[0][0], col, 2, 3, loss);
  CHECK(fabsf(loss[0] - 3.0f * logf(2.0f)) < 1e-6f);
  /* softplus(2) - 0 + softplus(-1) + softplus(0.5) - 0.5 */
  const double want = log1p(exp(2.0)) + log1p(exp(-1.0)) + log1p(exp(0.5)) - 0.5;
  CHECK(fabs(loss[1] - want) < 1e-6);
}

static void test_mining(void) {
  const ssd_loss_params p = {3.0f, 3, 1.0f};
  /* One positive (2), one ignored (5): 3 of the 8 negatives, highest loss
   * first; 0.7 appears twice for the last place, the lower index wins. */
  const float loss[10] = {0.1f, 0.9f, 5.0f, 0.7f, 0.2f, 9.0f, 0.7f, 0.3f, 0.05f, 0.8f};
  int32_t match[10];
  for (int i = 0; i < 10; i++) match[i] = SSD_NEGATIVE;
  match[2] = 0;
  match[5] = SSD_IGNORED;
  ssd_ranked ranked[10];
  uint8_t sel[10];
  CHECK(ssd_mine_negatives(loss, match, 10, &p, ranked, sel) == 3);
  const uint8_t want[10] = {0, 1, 1, 1, 0, 0, 0, 0, 0, 1};
  CHECK(memcmp(sel, want, sizeof want) == 0);
  /* No positives: the per-image minimum (3); anchor 2 is now a negative. */
  match[2] = SSD_NEGATIVE;
  CHECK(ssd_mine_negatives(loss, match, 10, &p, ranked, sel) == 3);
  const uint8_t want0[10] = {0, 1, 1, 0, 0, 0, 0, 0, 0, 1};
  CHECK(memcmp(sel, want0, sizeof want0) == 0);
  /* Three positives want 9 negatives; only 6 are left. */
  match[0] = match[1] = match[3] = 1;
  CHECK(ssd_mine_negatives(loss, match, 10, &p, ranked, sel) == 6);
  for (int i = 0; i < 10; i++) CHECK(sel[i] == (i != 5));
  /* Ratio 0 and minimum 0: positives only. */
  const ssd_loss_params none = {0.0f, 0, 1.0f};
  CHECK(ssd_mine_negatives(loss, match, 10, &none, ranked, sel) == 0);
  for (int i = 0; i < 10; i++) CHECK(sel[i] == (match[i] >= 0));
}

/* A batch of 2 images x 6 anchors x 3 columns. */
enum { IMAGES = 2, ANCHORS = 6, COLS = 3 };

typedef struct batch {
  float logits[IMAGES * ANCHORS * COLS], enc[IMAGES * ANCHORS * 4];
  float box_targets[IMAGES * ANCHORS * 4];
  int32_t match[IMAGES * ANCHORS], cols[IMAGES * ANCHORS];
  float targets[IMAGES * ANCHORS * COLS], cw[IMAGES * ANCHORS * COLS], bw[IMAGES * ANCHORS * 4];
  float anchor_loss[ANCHORS];
  ssd_ranked ranked[ANCHORS];
  uint8_t selected[ANCHORS];
} batch;

static ssd_loss_scratch scratch_of(batch *b) {
  return (ssd_loss_scratch){b->targets, b->cw, b->bw, b->anchor_loss, b->ranked, b->selected};
}

static void fill(batch *b) {
  test_rng rng = {11};
  for (int i = 0; i < IMAGES * ANCHORS * COLS; i++) b->logits[i] = test_rand_float(&rng, -3, 3);
  for (int i = 0; i < IMAGES * ANCHORS * 4; i++) {
    b->enc[i] = test_rand_float(&rng, -2, 2);
    b->box_targets[i] = 0.0f;
  }
  /* Image 0: anchors 1 (column 2) and 4 (column 1) positive, 3 ignored.
   * Image 1: no positives. */
  const int32_t match[IMAGES * ANCHORS] = {-1, 0, -1, SSD_IGNORED, 1, -1, -1, -1, -1, -1, -1, -1};
  memcpy(b->match, match, sizeof match);
  for (int i = 0; i < IMAGES * ANCHORS; i++) b->cols[i] = 0;
  b->cols[1] = 2;
  b->cols[4] = 1;
  b->cols[3] = 1; /* an ignored anchor's column must not matter */
  for (int k = 0; k < 4; k++) {
    b->box_targets[4 + k] = test_rand_float(&rng, -3, 3);
    b->box_targets[16 + k] = test_rand_float(&rng, -3, 3);
  }
}

static double bce(double x, double t) {
  return (x > 0 ? x + log1p(exp(-x)) : log1p(exp(x))) - t * x;
}

static double huber(double d) { return fabs(d) < 1 ? 0.5 * d * d : fabs(d) - 0.5; }

/* The loss by its definition, with the mined selection given. */
static double reference(const batch *b, const uint8_t *sel, double box_weight) {
  double cls = 0, loc = 0;
  int positives = 0;
  for (int i = 0; i < IMAGES * ANCHORS; i++) {
    if (b->match[i] >= 0) {
      positives++;
      for (int k = 0; k < 4; k++) loc += huber(b->enc[4 * i + k] - b->box_targets[4 * i + k]);
    }
    if (!sel[i]) continue;
    for (int k = 0; k < COLS; k++) cls += bce(b->logits[COLS * i + k], k == b->cols[i]);
  }
  return (cls + box_weight * loc) / positives;
}

static double loss_of(batch *b, const ssd_loss_params *p, float *gl, float *ge,
                      ssd_loss_parts *parts) {
  const ssd_loss_scratch s = scratch_of(b);
  ssd_loss(b->logits, b->enc, b->match, b->cols, b->box_targets, IMAGES, ANCHORS, COLS, p, &s,
           gl, ge, parts);
  return parts->total;
}

static void test_batch_loss(void) {
  batch b;
  fill(&b);
  const ssd_loss_params p = {1.0f, 3, 2.0f};
  float gl[IMAGES * ANCHORS * COLS], ge[IMAGES * ANCHORS * 4];
  ssd_loss_parts parts;
  const double total = loss_of(&b, &p, gl, ge, &parts);
  CHECK(parts.positives == 2);
  /* Image 0: 2 positives want 2 negatives but the minimum is 3; image 1: 3. */
  CHECK(parts.negatives == 6);
  /* The selection, recomputed: per image the top-3 negatives by class loss. */
  uint8_t sel[IMAGES * ANCHORS] = {0};
  for (int img = 0; img < IMAGES; img++) {
    float l[ANCHORS];
    ssd_anchor_class_loss(b.logits + img * ANCHORS * COLS, b.cols + img * ANCHORS, ANCHORS, COLS,
                          l);
    for (int pick = 0; pick < 3; pick++) {
      int best = -1;
      for (int i = 0; i < ANCHORS; i++)
        if (b.match[img * ANCHORS + i] == SSD_NEGATIVE && !sel[img * ANCHORS + i] &&
            (best < 0 || l[i] > l[best]))
          best = i;
      sel[img * ANCHORS + best] = 1;
    }
    for (int i = 0; i < ANCHORS; i++)
      if (b.match[img * ANCHORS + i] >= 0) sel[img * ANCHORS + i] = 1;
  }
  const double want = reference(&b, sel, 2.0);
  CHECK_MSG(fabs(total - want) < 1e-5 * want, "loss %g, by hand %g", total, want);
  CHECK(fabs(parts.classification + parts.localization - total) < 1e-9);
  /* Ignored and unselected anchors get no gradient; negatives no box gradient. */
  for (int i = 0; i < IMAGES * ANCHORS; i++) {
    for (int k = 0; k < COLS; k++)
      if (!sel[i]) CHECK(gl[COLS * i + k] == 0.0f);
    for (int k = 0; k < 4; k++)
      if (b.match[i] < 0) CHECK(ge[4 * i + k] == 0.0f);
  }
  /* Central differences of the loss (the selection is stable for small steps). */
  float worst = 0.0f;
  for (int i = 0; i < IMAGES * ANCHORS * COLS; i++) {
    const float x = b.logits[i], h = 1e-3f;
    float g2[IMAGES * ANCHORS * COLS], e2[IMAGES * ANCHORS * 4];
    ssd_loss_parts q;
    b.logits[i] = x + h;
    const double up = loss_of(&b, &p, g2, e2, &q);
    b.logits[i] = x - h;
    const double down = loss_of(&b, &p, g2, e2, &q);
    b.logits[i] = x;
    worst = fmaxf(worst, fabsf((float)((up - down) / (2 * h)) - gl[i]));
  }
  for (int i = 0; i < IMAGES * ANCHORS * 4; i++) {
    const float x = b.enc[i], h = 1e-3f;
    float g2[IMAGES * ANCHORS * COLS], e2[IMAGES * ANCHORS * 4];
    ssd_loss_parts q;
    b.enc[i] = x + h;
    const double up = loss_of(&b, &p, g2, e2, &q);
    b.enc[i] = x - h;
    const double down = loss_of(&b, &p, g2, e2, &q);
    b.enc[i] = x;
    worst = fmaxf(worst, fabsf((float)((up - down) / (2 * h)) - ge[i]));
  }
  CHECK_MSG(worst < 2e-3f, "largest gradient error %g", (double)worst);
}

static void test_no_positives(void) {
  batch b;
  fill(&b);
  for (int i = 0; i < IMAGES * ANCHORS; i++) {
    b.match[i] = SSD_NEGATIVE;
    b.cols[i] = 0;
  }
  const ssd_loss_params p = {3.0f, 2, 1.0f};
  float gl[IMAGES * ANCHORS * COLS], ge[IMAGES * ANCHORS * 4];
  ssd_loss_parts parts;
  loss_of(&b, &p, gl, ge, &parts);
  /* Normalized by max(1, 0): the sum over 2 negatives per image. */
  CHECK(parts.positives == 0 && parts.negatives == 4);
  CHECK(parts.localization == 0.0);
  CHECK(parts.classification > 0.0 && isfinite(parts.classification));
}

int main(void) {
  RUN(test_anchor_loss);
  RUN(test_mining);
  RUN(test_batch_loss);
  RUN(test_no_positives);
  return test_summary();
}
