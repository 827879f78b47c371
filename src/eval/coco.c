/*
 * COCO box evaluation (kiln_eval_detect), computing what pycocotools'
 * COCOeval (iouType 'bbox', default Params) computes, step for step so
 * that the floating-point results agree:
 *
 *  1. Boxes are grouped by class, then image (ids ascending); a group's
 *     detections are sorted by descending score, stably, and cut to 100.
 *  2. IoU as pycocotools' bbIou: w = min(x1+w1, x2+w2) - max(x1, x2) (and
 *     likewise h), 0 unless both are > 0, then i / (a_det + a_gt - i), or
 *     i / a_det against a crowd box.
 *  3. Per area range, ground truth outside the range or crowd is ignored
 *     and placed after the rest (stably); per IoU threshold t each
 *     detection, best score first, scans the ground truth: skip matched
 *     non-crowd boxes, stop at the ignored ones once holding a regular
 *     match, take any IoU >= t not below the best so far (COCOeval caps t
 *     at 1 - 1e-10, which changes nothing for thresholds up to .95).
 *     A detection matched to an ignored box is ignored, as is an unmatched
 *     one whose area (w * h) is outside the range.
 *  4. Per class, area and cap m, the groups' first m detections are merged
 *     by descending score (stably, groups in image order); running counts
 *     of true and false positives over the non-ignored ones give
 *     recall = tp / n_gt and precision = tp / (tp + fp + 2^-52) at every
 *     rank; precision is made non-increasing from the right, and at recall
 *     threshold r the precision of the first rank with recall >= r is
 *     taken (0 when none).
 *  5. Summaries are means of the entries that are not -1.
 * Thresholds are computed as numpy.linspace computes them (i * step +
 * start, the last set to stop), so that IoUs landing exactly on a threshold
 * decide the same way. Products and sums are kept in separate statements
 * so that no compiler contracts them into fused multiply-adds.
 */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kiln/eval.h"

#define MAX_DETS_CAP 100 /* the largest of max_dets: detections kept per group */

static const double k_area_lo[KILN_EVAL_N_AREA] = {0.0, 0.0, 32.0 * 32.0, 96.0 * 96.0};
static const double k_area_hi[KILN_EVAL_N_AREA] = {1e5 * 1e5, 32.0 * 32.0, 96.0 * 96.0, 1e5 * 1e5};

/* ---- Validation and ordering ---- */

static kiln_status check_box(const char *what, int64_t i, int32_t category, int32_t n_classes,
                             const double v[4], kiln_error *err) {
  static const char *const names[4] = {"x", "y", "width", "height"};
  if (category < 0 || category >= n_classes)
    return kiln_fail(err, KILN_ERR_INVALID_ARG, "%s %lld: category %d outside [0, %d)", what,
                     (long long)i, (int)category, (int)n_classes);
  for (int j = 0; j < 4; j++) {
    if (!isfinite(v[j]))
      return kiln_fail(err, KILN_ERR_INVALID_ARG, "%s %lld: %s %g is not finite", what,
                       (long long)i, names[j], v[j]);
    if (j >= 2 && v[j] < 0)
      return kiln_fail(err, KILN_ERR_INVALID_ARG, "%s %lld: %s %g is negative", what,
                       (long long)i, names[j], v[j]);
  }
  return KILN_OK;
}

static kiln_status check_inputs(const kiln_eval_gt *gts, int64_t n_gt, const kiln_eval_det *dets,
                                int64_t n_det, int32_t n_classes, kiln_error *err) {
  if (n_classes < 1)
    return kiln_fail(err, KILN_ERR_INVALID_ARG, "detection evaluation: %d classes", (int)n_classes);
  if (n_gt < 0 || n_det < 0 || (n_gt > 0 && !gts) || (n_det > 0 && !dets))
    return kiln_fail(err, KILN_ERR_INVALID_ARG,
                     "detection evaluation: bad box arrays (%lld ground truth, %lld detections)",
                     (long long)n_gt, (long long)n_det);
  for (int64_t i = 0; i < n_gt; i++) {
    const kiln_eval_gt *g = &gts[i];
    const double v[4] = {g->x, g->y, g->w, g->h};
    kiln_status s = check_box("ground truth", i, g->category, n_classes, v, err);
    if (s != KILN_OK) return s;
    if (isnan(g->area) || isinf(g->area))
      return kiln_fail(err, KILN_ERR_INVALID_ARG, "ground truth %lld: area %g is not finite",
                       (long long)i, g->area);
  }
  for (int64_t i = 0; i < n_det; i++) {
    const kiln_eval_det *d = &dets[i];
    const double v[4] = {d->x, d->y, d->w, d->h};
    kiln_status s = check_box("detection", i, d->category, n_classes, v, err);
    if (s != KILN_OK) return s;
    if (!isfinite(d->score))
      return kiln_fail(err, KILN_ERR_INVALID_ARG, "detection %lld: score %g is not finite",
                       (long long)i, d->score);
  }
  return KILN_OK;
}

/* Sort keys: class, image, then (detections) descending score, then input
 * order, which makes qsort as stable as numpy's mergesort. */
typedef struct box_key {
  int32_t category;
  int64_t image;
  double score; /* 0 for ground truth */
  int64_t index;
} box_key;

static int cmp_box_key(const void *pa, const void *pb) {
  const box_key *a = pa, *b = pb;
  if (a->category != b->category) return a->category < b->category ? -1 : 1;
  if (a->image != b->image) return a->image < b->image ? -1 : 1;
  if (a->score != b->score) return a->score > b->score ? -1 : 1;
  return a->index < b->index ? -1 : (a->index > b->index);
}

static bool same_group(const box_key *a, const box_key *b) {
  return a->category == b->category && a->image == b->image;
}

static int cmp_i64(const void *pa, const void *pb) {
  const int64_t a = *(const int64_t *)pa, b = *(const int64_t *)pb;
  return a < b ? -1 : (a > b);
}

/* A ranked detection of one class: descending score, then slot order
 * (slots are numbered by image, then rank within the image). */
typedef struct ranked {
  double score;
  int64_t slot;
} ranked;

static int cmp_ranked(const void *pa, const void *pb) {
  const ranked *a = pa, *b = pb;
  if (a->score != b->score) return a->score > b->score ? -1 : 1;
  return a->slot < b->slot ? -1 : (a->slot > b->slot);
}

/* ---- Evaluation state ---- */

/* One image's boxes of one class: ranges of gt_keys / det_keys. */
typedef struct group {
  int64_t gt_begin, n_gt;
  int64_t det_begin, n_det; /* n_det <= MAX_DETS_CAP */
  int64_t slot;             /* the class's slot of the group's first detection */
} group;

typedef struct coco {
  const kiln_eval_gt *gts;
  const kiln_eval_det *dets;
  int64_t n_gt, n_det;
  int64_t stride; /* slots of the class with the most (after the cap) */
  kiln_eval_detection *out;
  box_key *gt_keys, *det_keys;
  group *groups;
  /* per class, indexed by slot: */
  int32_t *slot_rank;
  uint8_t *matched; /* [area][iou][slot] */
  uint8_t *ignored; /* [area][iou][slot] */
  ranked *order;
  int64_t n_gt_ok[KILN_EVAL_N_AREA]; /* non-ignored ground truth of the class */
  /* per group: */
  double *iou;        /* [det][gt] */
  uint8_t *gt_ignore; /* [gt] */
  uint8_t *gt_used;   /* [gt] matched at the current threshold */
  int64_t *gt_order;  /* regular ground truth first */
  /* per accumulation: */
  double *rc, *pr, *sc;
} coco;

static void linspace(double start, double stop, int n, double *y) {
  const double step = (stop - start) / (double)(n - 1);
  for (int i = 0; i < n; i++) {
    y[i] = (double)i * step;
    y[i] += start;
  }
  y[n - 1] = stop;
}

/* pycocotools' bbIou for detection d against ground truth g. */
static double box_iou(const kiln_eval_det *d, const kiln_eval_gt *g) {
  const double da = d->w * d->h;
  const double ga = g->w * g->h;
  const double w = fmin(d->w + d->x, g->w + g->x) - fmax(d->x, g->x);
  if (w <= 0) return 0;
  const double h = fmin(d->h + d->y, g->h + g->y) - fmax(d->y, g->y);
  if (h <= 0) return 0;
  const double inter = w * h;
  double uni = da + ga;
  uni -= inter;
  return inter / (g->iscrowd ? da : uni);
}

static double gt_area(const kiln_eval_gt *g) { return g->area < 0 ? g->w * g->h : g->area; }

/* Step 3 for one group and area range: fills matched/ignored of its slots. */
static void match_group(coco *c, const group *grp, int a) {
  const int64_t G = grp->n_gt, D = grp->n_det;
  const double lo = k_area_lo[a], hi = k_area_hi[a];
  int64_t n_order = 0;
  for (int64_t j = 0; j < G; j++) {
    const kiln_eval_gt *g = &c->gts[c->gt_keys[grp->gt_begin + j].index];
    const double area = gt_area(g);
    c->gt_ignore[j] = g->iscrowd || area < lo || area > hi;
    if (!c->gt_ignore[j]) c->gt_order[n_order++] = j;
  }
  c->n_gt_ok[a] += n_order;
  for (int64_t j = 0; j < G; j++)
    if (c->gt_ignore[j]) c->gt_order[n_order++] = j;

  for (int t = 0; t < KILN_EVAL_N_IOU; t++) {
    const size_t base = ((size_t)a * KILN_EVAL_N_IOU + (size_t)t) * (size_t)c->stride + (size_t)grp->slot;
    uint8_t *matched = c->matched + base, *ignored = c->ignored + base;
    memset(c->gt_used, 0, (size_t)G);
    const double thr = c->out->iou_thresholds[t];
    for (int64_t d = 0; d < D; d++) {
      double best = thr;
      int64_t m = -1;
      for (int64_t o = 0; o < G; o++) {
        const int64_t j = c->gt_order[o];
        const kiln_eval_gt *g = &c->gts[c->gt_keys[grp->gt_begin + j].index];
        if (c->gt_used[j] && !g->iscrowd) continue;
        if (m > -1 && !c->gt_ignore[m] && c->gt_ignore[j]) break;
        const double v = c->iou[d * G + j];
        if (v < best) continue;
        best = v;
        m = j;
      }
      matched[d] = m >= 0;
      ignored[d] = m >= 0 && c->gt_ignore[m];
      if (m >= 0) c->gt_used[m] = 1;
    }
    for (int64_t d = 0; d < D; d++) {
      const kiln_eval_det *det = &c->dets[c->det_keys[grp->det_begin + d].index];
      const double area = det->w * det->h;
      if (!matched[d] && (area < lo || area > hi)) ignored[d] = 1;
    }
  }
}

/* Steps 1-3 for one group: IoUs, then matching in each area range. */
static void evaluate_group(coco *c, const group *grp) {
  for (int64_t d = 0; d < grp->n_det; d++) {
    const int64_t slot = grp->slot + d;
    const kiln_eval_det *det = &c->dets[c->det_keys[grp->det_begin + d].index];
    c->slot_rank[slot] = (int32_t)d;
    c->order[slot] = (ranked){det->score, slot};
    for (int64_t j = 0; j < grp->n_gt; j++)
      c->iou[d * grp->n_gt + j] = box_iou(det, &c->gts[c->gt_keys[grp->gt_begin + j].index]);
  }
  for (int a = 0; a < KILN_EVAL_N_AREA; a++) match_group(c, grp, a);
}

/* Step 4 for class k, area a, cap index m, threshold t over n_slots. */
static void accumulate_one(coco *c, int32_t k, int a, int m, int t, int64_t n_slots) {
  kiln_eval_detection *out = c->out;
  const int32_t cap = out->max_dets[m];
  const size_t base = ((size_t)a * KILN_EVAL_N_IOU + (size_t)t) * (size_t)c->stride;
  const double n_gt = (double)c->n_gt_ok[a];
  int64_t nd = 0, tp = 0, fp = 0;
  for (int64_t i = 0; i < n_slots; i++) {
    const int64_t slot = c->order[i].slot;
    if (c->slot_rank[slot] >= cap) continue;
    if (!c->ignored[base + (size_t)slot]) {
      if (c->matched[base + (size_t)slot]) tp++;
      else fp++;
    }
    double den = (double)fp + (double)tp;
    den += DBL_EPSILON;
    c->rc[nd] = (double)tp / n_gt;
    c->pr[nd] = (double)tp / den;
    c->sc[nd] = c->order[i].score;
    nd++;
  }
  out->recall[kiln_eval_recall_index(out, t, k, a, m)] = nd ? c->rc[nd - 1] : 0.0;
  for (int64_t i = nd - 1; i > 0; i--)
    if (c->pr[i] > c->pr[i - 1]) c->pr[i - 1] = c->pr[i];
  const bool curve = t == 0 && a == KILN_EVAL_AREA_ALL && m == KILN_EVAL_N_MAXDET - 1;
  int64_t i = 0;
  for (int r = 0; r < KILN_EVAL_N_RECALL; r++) {
    while (i < nd && c->rc[i] < out->recall_thresholds[r]) i++;
    out->precision[kiln_eval_precision_index(out, t, r, k, a, m)] = i < nd ? c->pr[i] : 0.0;
    if (curve) out->pr_scores[(int64_t)k * KILN_EVAL_N_RECALL + r] = i < nd ? c->sc[i] : 0.0;
  }
}

/* Splits class k's sorted boxes into groups by image; returns the count and
 * the number of detection slots. */
static int64_t make_groups(coco *c, int64_t gt_begin, int64_t gt_end, int64_t det_begin,
                           int64_t det_end, int64_t *n_slots) {
  int64_t n = 0, slots = 0, gi = gt_begin, di = det_begin;
  while (gi < gt_end || di < det_end) {
    int64_t image;
    if (gi < gt_end && di < det_end)
      image = c->gt_keys[gi].image < c->det_keys[di].image ? c->gt_keys[gi].image : c->det_keys[di].image;
    else image = gi < gt_end ? c->gt_keys[gi].image : c->det_keys[di].image;
    group *g = &c->groups[n++];
    g->gt_begin = gi;
    while (gi < gt_end && c->gt_keys[gi].image == image) gi++;
    g->n_gt = gi - g->gt_begin;
    g->det_begin = di;
    while (di < det_end && c->det_keys[di].image == image) di++;
    g->n_det = di - g->det_begin < MAX_DETS_CAP ? di - g->det_begin : MAX_DETS_CAP;
    g->slot = slots;
    slots += g->n_det;
  }
  *n_slots = slots;
  return n;
}

static void evaluate_class(coco *c, int32_t k, int64_t gt_begin, int64_t gt_end, int64_t det_begin,
                           int64_t det_end) {
  int64_t n_slots = 0;
  const int64_t n_groups = make_groups(c, gt_begin, gt_end, det_begin, det_end, &n_slots);
  memset(c->n_gt_ok, 0, sizeof c->n_gt_ok);
  for (int64_t i = 0; i < n_groups; i++) evaluate_group(c, &c->groups[i]);
  qsort(c->order, (size_t)n_slots, sizeof *c->order, cmp_ranked);
  for (int a = 0; a < KILN_EVAL_N_AREA; a++) {
    if (c->n_gt_ok[a] == 0) continue; /* stays -1 */
    for (int m = 0; m < KILN_EVAL_N_MAXDET; m++)
      for (int t = 0; t < KILN_EVAL_N_IOU; t++) accumulate_one(c, k, a, m, t, n_slots);
  }
  c->out->class_gt[k] = c->n_gt_ok[KILN_EVAL_AREA_ALL];
  c->out->class_dets[k] = det_end - det_begin;
}

/* Mean of the precision (ap) or recall entries that are not -1, over one
 * IoU threshold (t >= 0) or all, one area, one cap, one class (k >= 0) or
 * all: COCOeval.summarize's _summarize. */
static double mean_of(const kiln_eval_detection *d, bool ap, int t, int32_t k, int a, int m) {
  double sum = 0;
  int64_t n = 0;
  const int t0 = t >= 0 ? t : 0, t1 = t >= 0 ? t + 1 : KILN_EVAL_N_IOU;
  const int32_t k0 = k >= 0 ? k : 0, k1 = k >= 0 ? k + 1 : d->n_classes;
  for (int ti = t0; ti < t1; ti++)
    for (int r = 0; r < (ap ? KILN_EVAL_N_RECALL : 1); r++)
      for (int32_t ki = k0; ki < k1; ki++) {
        const double v = ap ? d->precision[kiln_eval_precision_index(d, ti, r, ki, a, m)]
                            : d->recall[kiln_eval_recall_index(d, ti, ki, a, m)];
        if (v > -1) {
          sum += v;
          n++;
        }
      }
  return n ? sum / (double)n : -1.0;
}

static void summarize(kiln_eval_detection *d) {
  const int all = KILN_EVAL_AREA_ALL, m100 = KILN_EVAL_N_MAXDET - 1, t75 = 5;
  double *s = d->stats;
  s[KILN_EVAL_AP] = mean_of(d, true, -1, -1, all, m100);
  s[KILN_EVAL_AP50] = mean_of(d, true, 0, -1, all, m100);
  s[KILN_EVAL_AP75] = mean_of(d, true, t75, -1, all, m100);
  s[KILN_EVAL_AP_SMALL] = mean_of(d, true, -1, -1, KILN_EVAL_AREA_SMALL, m100);
  s[KILN_EVAL_AP_MEDIUM] = mean_of(d, true, -1, -1, KILN_EVAL_AREA_MEDIUM, m100);
  s[KILN_EVAL_AP_LARGE] = mean_of(d, true, -1, -1, KILN_EVAL_AREA_LARGE, m100);
  s[KILN_EVAL_AR1] = mean_of(d, false, -1, -1, all, 0);
  s[KILN_EVAL_AR10] = mean_of(d, false, -1, -1, all, 1);
  s[KILN_EVAL_AR100] = mean_of(d, false, -1, -1, all, m100);
  s[KILN_EVAL_AR_SMALL] = mean_of(d, false, -1, -1, KILN_EVAL_AREA_SMALL, m100);
  s[KILN_EVAL_AR_MEDIUM] = mean_of(d, false, -1, -1, KILN_EVAL_AREA_MEDIUM, m100);
  s[KILN_EVAL_AR_LARGE] = mean_of(d, false, -1, -1, KILN_EVAL_AREA_LARGE, m100);
  for (int32_t k = 0; k < d->n_classes; k++) {
    d->class_ap[k] = mean_of(d, true, -1, k, all, m100);
    d->class_ap50[k] = mean_of(d, true, 0, k, all, m100);
    d->class_ap75[k] = mean_of(d, true, t75, k, all, m100);
    d->class_ar100[k] = mean_of(d, false, -1, k, all, m100);
  }
}

/* ---- Allocation ---- */

static bool alloc_output(kiln_eval_detection *d, int32_t n_classes) {
  const size_t k = (size_t)n_classes;
  const size_t n_prec =
      (size_t)KILN_EVAL_N_IOU * KILN_EVAL_N_RECALL * k * KILN_EVAL_N_AREA * KILN_EVAL_N_MAXDET;
  const size_t n_rec = (size_t)KILN_EVAL_N_IOU * k * KILN_EVAL_N_AREA * KILN_EVAL_N_MAXDET;
  d->precision = kiln_malloc(n_prec * sizeof(double));
  d->recall = kiln_malloc(n_rec * sizeof(double));
  d->pr_scores = kiln_malloc(k * KILN_EVAL_N_RECALL * sizeof(double));
  d->class_ap = kiln_malloc(k * sizeof(double));
  d->class_ap50 = kiln_malloc(k * sizeof(double));
  d->class_ap75 = kiln_malloc(k * sizeof(double));
  d->class_ar100 = kiln_malloc(k * sizeof(double));
  d->class_gt = kiln_calloc(k, sizeof(int64_t));
  d->class_dets = kiln_calloc(k, sizeof(int64_t));
  if (!d->precision || !d->recall || !d->pr_scores || !d->class_ap || !d->class_ap50 ||
      !d->class_ap75 || !d->class_ar100 || !d->class_gt || !d->class_dets)
    return false;
  for (size_t i = 0; i < n_prec; i++) d->precision[i] = -1;
  for (size_t i = 0; i < n_rec; i++) d->recall[i] = -1;
  for (size_t i = 0; i < k * KILN_EVAL_N_RECALL; i++) d->pr_scores[i] = -1;
  return true;
}

static void free_scratch(coco *c) {
  kiln_free(c->gt_keys);
  kiln_free(c->det_keys);
  kiln_free(c->groups);
  kiln_free(c->slot_rank);
  kiln_free(c->matched);
  kiln_free(c->ignored);
  kiln_free(c->order);
  kiln_free(c->iou);
  kiln_free(c->gt_ignore);
  kiln_free(c->gt_used);
  kiln_free(c->gt_order);
  kiln_free(c->rc);
  kiln_free(c->pr);
  kiln_free(c->sc);
}

/* Scratch sizes from the sorted keys: the most ground truth of one group,
 * the most boxes of one class (which bounds its groups), and in c->stride
 * the most detection slots of one class (its groups' detections after the
 * cap). */
static void scratch_sizes(coco *c, size_t *max_group_gt, size_t *max_boxes) {
  *max_group_gt = 1;
  *max_boxes = 1;
  c->stride = 1;
  int64_t gi = 0, di = 0;
  for (int32_t k = 0; k < c->out->n_classes; k++) {
    const int64_t g0 = gi, d0 = di;
    int64_t run = 0, slots = 0;
    for (; gi < c->n_gt && c->gt_keys[gi].category == k; gi++) {
      run = gi > g0 && same_group(&c->gt_keys[gi], &c->gt_keys[gi - 1]) ? run + 1 : 1;
      if ((size_t)run > *max_group_gt) *max_group_gt = (size_t)run;
    }
    for (; di < c->n_det && c->det_keys[di].category == k; di++) {
      run = di > d0 && same_group(&c->det_keys[di], &c->det_keys[di - 1]) ? run + 1 : 1;
      if (run <= MAX_DETS_CAP) slots++;
    }
    if ((size_t)(gi - g0 + di - d0) > *max_boxes) *max_boxes = (size_t)(gi - g0 + di - d0);
    if (slots > c->stride) c->stride = slots;
  }
}

/* Sort keys, the distinct image count, and the scratch of scratch_sizes. */
static bool prepare(coco *c) {
  const size_t n_gt = (size_t)c->n_gt, n_det = (size_t)c->n_det;
  c->gt_keys = kiln_malloc((n_gt ? n_gt : 1) * sizeof *c->gt_keys);
  c->det_keys = kiln_malloc((n_det ? n_det : 1) * sizeof *c->det_keys);
  int64_t *images = kiln_malloc((n_gt + n_det ? n_gt + n_det : 1) * sizeof *images);
  if (!c->gt_keys || !c->det_keys || !images) {
    kiln_free(images);
    return false;
  }
  for (size_t i = 0; i < n_gt; i++) {
    c->gt_keys[i] = (box_key){c->gts[i].category, c->gts[i].image, 0.0, (int64_t)i};
    images[i] = c->gts[i].image;
  }
  for (size_t i = 0; i < n_det; i++) {
    c->det_keys[i] = (box_key){c->dets[i].category, c->dets[i].image, c->dets[i].score, (int64_t)i};
    images[n_gt + i] = c->dets[i].image;
  }
  qsort(c->gt_keys, n_gt, sizeof *c->gt_keys, cmp_box_key);
  qsort(c->det_keys, n_det, sizeof *c->det_keys, cmp_box_key);
  qsort(images, n_gt + n_det, sizeof *images, cmp_i64);
  for (size_t i = 0; i < n_gt + n_det; i++)
    if (i == 0 || images[i] != images[i - 1]) c->out->n_images++;
  kiln_free(images);

  size_t max_group_gt, max_boxes;
  scratch_sizes(c, &max_group_gt, &max_boxes);
  const size_t slots = (size_t)c->stride, flags = (size_t)KILN_EVAL_N_AREA * KILN_EVAL_N_IOU * slots;
  c->groups = kiln_malloc(max_boxes * sizeof *c->groups);
  c->slot_rank = kiln_malloc(slots * sizeof *c->slot_rank);
  c->matched = kiln_malloc(flags);
  c->ignored = kiln_malloc(flags);
  c->order = kiln_malloc(slots * sizeof *c->order);
  c->iou = kiln_malloc(max_group_gt * MAX_DETS_CAP * sizeof *c->iou);
  c->gt_ignore = kiln_malloc(max_group_gt);
  c->gt_used = kiln_malloc(max_group_gt);
  c->gt_order = kiln_malloc(max_group_gt * sizeof *c->gt_order);
  c->rc = kiln_malloc(slots * sizeof *c->rc);
  c->pr = kiln_malloc(slots * sizeof *c->pr);
  c->sc = kiln_malloc(slots * sizeof *c->sc);
  return c->groups && c->slot_rank && c->matched && c->ignored && c->order &&
         c->iou && c->gt_ignore && c->gt_used && c->gt_order && c->rc && c->pr && c->sc;
}

kiln_status kiln_eval_detect(const kiln_eval_gt *gts, int64_t n_gt, const kiln_eval_det *dets,
                             int64_t n_det, int32_t n_classes, kiln_eval_detection *out,
                             kiln_error *err) {
  memset(out, 0, sizeof *out);
  kiln_status s = check_inputs(gts, n_gt, dets, n_det, n_classes, err);
  if (s != KILN_OK) return s;
  out->n_classes = n_classes;
  linspace(0.5, 0.95, KILN_EVAL_N_IOU, out->iou_thresholds);
  linspace(0.0, 1.0, KILN_EVAL_N_RECALL, out->recall_thresholds);
  out->max_dets[0] = 1;
  out->max_dets[1] = 10;
  out->max_dets[2] = MAX_DETS_CAP;
  coco c = {.gts = gts, .dets = dets, .n_gt = n_gt, .n_det = n_det, .out = out};
  if (!alloc_output(out, n_classes) || !prepare(&c)) {
    free_scratch(&c);
    kiln_eval_detection_free(out);
    return kiln_fail(err, KILN_ERR_NOMEM,
                     "detection evaluation: out of memory (%lld ground truth, %lld detections, %d classes)",
                     (long long)n_gt, (long long)n_det, (int)n_classes);
  }
  int64_t gi = 0, di = 0;
  for (int32_t k = 0; k < n_classes; k++) {
    const int64_t g0 = gi, d0 = di;
    while (gi < n_gt && c.gt_keys[gi].category == k) gi++;
    while (di < n_det && c.det_keys[di].category == k) di++;
    evaluate_class(&c, k, g0, gi, d0, di);
  }
  free_scratch(&c);
  summarize(out);
  return KILN_OK;
}

void kiln_eval_detection_free(kiln_eval_detection *d) {
  if (!d) return;
  kiln_free(d->precision);
  kiln_free(d->recall);
  kiln_free(d->pr_scores);
  kiln_free(d->class_ap);
  kiln_free(d->class_ap50);
  kiln_free(d->class_ap75);
  kiln_free(d->class_ar100);
  kiln_free(d->class_gt);
  kiln_free(d->class_dets);
  memset(d, 0, sizeof *d);
}
