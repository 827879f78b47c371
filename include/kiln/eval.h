/*
 * kiln/eval.h: evaluation metrics on given predictions and ground truth.
 * Nothing here runs a model: the trainer, `kiln eval` and the studio run
 * their models and hand the answers to these functions, so every report
 * counts the same way.
 *
 * Classification: accuracy, top-k accuracy, per-class precision, recall,
 * F1 and support, the confusion matrix, macro and weighted averages.
 *
 *   kiln_eval_classification c;
 *   kiln_eval_classify(labels, NULL, scores, n, n_classes, 5, &c, &err);
 *   printf("%.4f top-5 %.4f\n", c.accuracy, c.top_k_accuracy);
 *   kiln_eval_classification_free(&c);
 *
 * Detection: COCO box evaluation computed exactly as pycocotools' COCOeval
 * (iouType 'bbox', default parameters): the 12 summary numbers, per-class
 * AP@[.5:.95] and AP@.5, and per-class precision/recall curves.
 *
 *   kiln_eval_detection d;
 *   kiln_eval_detect(gts, n_gt, dets, n_det, n_classes, &d, &err);
 *   printf("mAP %.4f  mAP@.5 %.4f\n", d.stats[KILN_EVAL_AP], d.stats[KILN_EVAL_AP50]);
 *   json_t *report;
 *   kiln_eval_detection_to_json(&d, class_names, &report, &err);
 *   kiln_eval_detection_free(&d);
 *
 * Boxes are COCO's [x, y, w, h] in pixels (left, top, width, height), in
 * double precision so that results read from JSON evaluate bit for bit as
 * in pycocotools. A corner box (xmin, ymin, xmax, ymax) converts as
 * x = xmin, y = ymin, w = xmax - xmin, h = ymax - ymin.
 *
 * The JSON functions return jansson objects (link jansson, include
 * <jansson.h> to use them); undefined values (-1 below) become null.
 */
#ifndef KILN_EVAL_H
#define KILN_EVAL_H

#include <stdbool.h>
#include <stdint.h>

#include "kiln/base.h"

#ifdef __cplusplus
extern "C" {
#endif

struct json_t;

/* ---- Classification ---- */

typedef struct kiln_eval_class_metrics {
  int64_t support;   /* samples whose true label is the class */
  int64_t predicted; /* samples predicted as the class */
  int64_t correct;   /* true positives */
  double precision;  /* correct / predicted, 0 when nothing was predicted */
  double recall;     /* correct / support, 0 when the class has no samples */
  double f1;         /* 2 correct / (support + predicted), 0 when both are 0 */
} kiln_eval_class_metrics;

typedef struct kiln_eval_classification {
  int32_t n_classes;
  int64_t n_samples;
  double accuracy;       /* fraction with predicted == label */
  int32_t top_k;         /* k of top_k_accuracy; 0 when not computed */
  double top_k_accuracy; /* fraction whose label ranks among the k best
                            scores; -1 when not computed */
  /* Averages of precision, recall and F1 over the classes that occur as a
   * label or a prediction (macro: plain mean; weighted: by support), as
   * scikit-learn's precision_recall_fscore_support. */
  double macro_precision, macro_recall, macro_f1;
  double weighted_precision, weighted_recall, weighted_f1;
  kiln_eval_class_metrics *classes; /* [n_classes] */
  int64_t *confusion; /* [n_classes][n_classes]: row = true label, column = prediction */
} kiln_eval_classification;

/* Evaluates n predictions of n_classes classes. labels[i] is sample i's true
 * class. Give either predicted (the predicted class of each sample) or scores
 * ([n][n_classes], row-major, higher is more likely; the prediction is the
 * best score, the lowest class index among equal best scores), not both.
 * top_k > 0 (scores only, at most n_classes) also computes top-k accuracy:
 * a sample counts when fewer than k classes rank before its label, ranking
 * by score and then by class index (so top-1 equals accuracy).
 * Returns KILN_ERR_INVALID_ARG (naming the sample and value) for n < 1,
 * n_classes < 1, a label or prediction out of range, a NaN score or a bad
 * top_k; KILN_ERR_NOMEM. On success *out owns its arrays (free with
 * kiln_eval_classification_free); on failure *out is zeroed. */
kiln_status kiln_eval_classify(const int32_t *labels, const int32_t *predicted,
                               const float *scores, int64_t n, int32_t n_classes,
                               int32_t top_k, kiln_eval_classification *out, kiln_error *err);

/* Frees the arrays of an evaluation (zeroed or filled); zeroes it. */
void kiln_eval_classification_free(kiln_eval_classification *c);

/* The evaluation as a new JSON object (caller owns the reference):
 *   {"task": "classification", "samples", "accuracy", "top_k",
 *    "top_k_accuracy", "macro": {"precision", "recall", "f1"}, "weighted": {...},
 *    "classes": [{"id", "name", "support", "predicted", "correct",
 *                 "precision", "recall", "f1"}],
 *    "confusion_matrix": [[row of true class 0], ...]}
 * class_names may be NULL or hold NULL entries ("name" is then left out);
 * "top_k" and "top_k_accuracy" are null when not computed.
 * Returns KILN_ERR_NOMEM when jansson cannot allocate. */
kiln_status kiln_eval_classification_to_json(const kiln_eval_classification *c,
                                             const char *const *class_names,
                                             struct json_t **out, kiln_error *err);

/* ---- Detection (COCO) ---- */

/* A ground-truth box. Crowd boxes (iscrowd) are ignore regions: a detection
 * matched to one counts as neither a true nor a false positive, and several
 * detections may match the same crowd box (IoU against a crowd box divides
 * the intersection by the detection's area). */
typedef struct kiln_eval_gt {
  int64_t image;      /* any image id; images are ordered by id */
  int32_t category;   /* class index, 0 <= category < n_classes */
  double x, y, w, h;  /* box in pixels: left, top, width, height (w, h >= 0) */
  double area;        /* area for the small/medium/large ranges (COCO's
                         annotation "area", e.g. the mask's); < 0: w * h */
  bool iscrowd;
} kiln_eval_gt;

/* A detection; its area for the size ranges is always w * h. */
typedef struct kiln_eval_det {
  int64_t image;
  int32_t category;
  double score;
  double x, y, w, h;
} kiln_eval_det;

/* COCOeval's default parameters. */
#define KILN_EVAL_N_IOU 10     /* IoU thresholds .50:.05:.95 */
#define KILN_EVAL_N_RECALL 101 /* recall thresholds 0:.01:1 */
#define KILN_EVAL_N_AREA 4     /* all, small (< 32^2), medium, large (> 96^2) */
#define KILN_EVAL_N_MAXDET 3   /* 1, 10, 100 detections per image */

typedef enum kiln_eval_area {
  KILN_EVAL_AREA_ALL = 0,    /* [0, 1e5^2] */
  KILN_EVAL_AREA_SMALL = 1,  /* [0, 32^2] */
  KILN_EVAL_AREA_MEDIUM = 2, /* [32^2, 96^2] */
  KILN_EVAL_AREA_LARGE = 3   /* [96^2, 1e5^2] (ranges include both ends) */
} kiln_eval_area;

/* Indices of kiln_eval_detection.stats, in COCOeval.stats order. */
typedef enum kiln_eval_stat {
  KILN_EVAL_AP = 0,   /* AP @[.50:.95], all areas, 100 detections */
  KILN_EVAL_AP50,     /* AP @.50 */
  KILN_EVAL_AP75,     /* AP @.75 */
  KILN_EVAL_AP_SMALL, /* AP @[.50:.95], small */
  KILN_EVAL_AP_MEDIUM,
  KILN_EVAL_AP_LARGE,
  KILN_EVAL_AR1,      /* AR @[.50:.95], all areas, 1 detection per image */
  KILN_EVAL_AR10,
  KILN_EVAL_AR100,
  KILN_EVAL_AR_SMALL, /* AR @[.50:.95], small, 100 detections */
  KILN_EVAL_AR_MEDIUM,
  KILN_EVAL_AR_LARGE,
  KILN_EVAL_N_STATS
} kiln_eval_stat;

typedef struct kiln_eval_detection {
  int32_t n_classes;
  int64_t n_images; /* distinct image ids among the ground truth and detections */
  double iou_thresholds[KILN_EVAL_N_IOU];       /* as numpy.linspace(.5, .95, 10) */
  double recall_thresholds[KILN_EVAL_N_RECALL]; /* as numpy.linspace(0, 1, 101) */
  int32_t max_dets[KILN_EVAL_N_MAXDET];         /* 1, 10, 100 */
  double stats[KILN_EVAL_N_STATS]; /* -1 when no class has ground truth */
  /* COCOeval.eval['precision'] and ['recall']: row-major
   * precision[t][r][k][a][m] and recall[t][k][a][m] (t IoU threshold,
   * r recall threshold, k class, a kiln_eval_area, m max_dets index);
   * -1 where class k has no non-crowd ground truth in area a. Index them
   * with kiln_eval_precision_index / kiln_eval_recall_index. */
  double *precision;
  double *recall;
  /* Per class, over all areas and 100 detections per image (-1 when the
   * class has no non-crowd ground truth): */
  double *class_ap;    /* [k] AP @[.50:.95] */
  double *class_ap50;  /* [k] AP @.50 */
  double *class_ap75;  /* [k] AP @.75 */
  double *class_ar100; /* [k] AR @[.50:.95] */
  /* The precision/recall curve of class k at IoU .50: precision is
   * precision[0][r][k][ALL][100]; pr_scores[k * KILN_EVAL_N_RECALL + r] is
   * the score of the detection that reaches recall threshold r (the
   * operating point), 0 where the recall is never reached, -1 for a class
   * without ground truth (COCOeval.eval['scores']). */
  double *pr_scores;
  int64_t *class_gt;   /* [k] non-crowd ground-truth boxes */
  int64_t *class_dets; /* [k] detections (before the 100-per-image cap) */
} kiln_eval_detection;

/* Position of precision[t][r][k][a][m] in kiln_eval_detection.precision. */
static inline int64_t kiln_eval_precision_index(const kiln_eval_detection *d, int t, int r, int k,
                                                int a, int m) {
  return ((((int64_t)t * KILN_EVAL_N_RECALL + r) * d->n_classes + k) * KILN_EVAL_N_AREA + a) *
             KILN_EVAL_N_MAXDET + m;
}

/* Position of recall[t][k][a][m] in kiln_eval_detection.recall. */
static inline int64_t kiln_eval_recall_index(const kiln_eval_detection *d, int t, int k, int a,
                                             int m) {
  return (((int64_t)t * d->n_classes + k) * KILN_EVAL_N_AREA + a) * KILN_EVAL_N_MAXDET + m;
}

/* Evaluates detections against ground truth as pycocotools' COCOeval with
 * iouType 'bbox' would on the same boxes, with the image ids sorted and
 * category k being the k-th category id in sorted order:
 *  - per image and class, detections are ordered by descending score
 *    (stable: equal scores keep their order in dets) and the first 100 kept;
 *  - for each area range and IoU threshold t, each detection in turn takes
 *    the unmatched ground truth of highest IoU >= t (the later one on equal
 *    IoU; boxes outside the area range or crowd only when no regular one
 *    matches); detections matched to those, and unmatched detections outside
 *    the range, are ignored;
 *  - per class, area range and cap of 1/10/100 detections per image, all
 *    images' detections are ordered by descending score (ties by image id,
 *    then by the order above), precision is made non-increasing and read at
 *    the 101 recall thresholds (first rank whose recall reaches it, 0 past
 *    the largest recall);
 *  - classes without non-crowd ground truth get -1 and are left out of the
 *    means; with ground truth but no detections they count as 0.
 * gts and dets may be NULL when their count is 0.
 * Returns KILN_ERR_INVALID_ARG, naming the box and value, for n_classes < 1,
 * a category out of range, a non-finite coordinate, score or area, or a
 * negative width or height; KILN_ERR_NOMEM. On success *out owns its arrays
 * (free with kiln_eval_detection_free); on failure *out is zeroed. */
kiln_status kiln_eval_detect(const kiln_eval_gt *gts, int64_t n_gt, const kiln_eval_det *dets,
                             int64_t n_det, int32_t n_classes, kiln_eval_detection *out,
                             kiln_error *err);

/* Frees the arrays of an evaluation (zeroed or filled); zeroes it. */
void kiln_eval_detection_free(kiln_eval_detection *d);

/* The evaluation as a new JSON object (caller owns the reference):
 *   {"task": "detection", "images", "classes",
 *    "summary": {"AP", "AP50", "AP75", "APs", "APm", "APl",
 *                "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"},
 *    "iou_thresholds": [10], "recall_thresholds": [101],
 *    "per_class": [{"id", "name", "ground_truth", "detections",
 *                   "ap", "ap50", "ap75", "ar100",
 *                   "pr_curve": {"iou": 0.5, "precision": [101], "score": [101]}}]}
 * (pr_curve's points are at "recall_thresholds"). Values of -1 are null, as
 * is the pr_curve of a class without ground truth. class_names may be NULL
 * or hold NULL entries ("name" is then left out). Returns KILN_ERR_NOMEM
 * when jansson cannot allocate. */
kiln_status kiln_eval_detection_to_json(const kiln_eval_detection *d,
                                        const char *const *class_names, struct json_t **out,
                                        kiln_error *err);

#ifdef __cplusplus
}
#endif
#endif
