/*
 * train/ssd_int.h: the inside of SSD transfer learning (kiln_ssd_train,
 * kiln/train.h), shared by the train/ssd_*.c files.
 *
 * A raw-output SSD is a frozen body (backbone and extra feature layers)
 * ending in feature maps, and on each map two predictor convolutions: box
 * encodings (A * 4 channels: A anchors per cell, 4 numbers each) and class
 * logits (A * C channels). Each predictor's output [1, h, w, A * X] is
 * reshaped to [1, h * w * A, (1,) X] and the maps are concatenated along
 * anchors, so anchor (y * w + x) * A + a of a map reads channels
 * a * X .. a * X + X - 1 of cell (y, x): rows top to bottom, columns left to
 * right, the anchors of a cell consecutive, maps in order, which is the
 * order kiln_ssd_anchors_generate makes them in.
 *
 * Coordinates in here follow kiln/detect.h: boxes (ymin, xmin, ymax, xmax)
 * and anchors (ycenter, xcenter, h, w), normalized to the model input.
 */
#ifndef KILN_TRAIN_SSD_INT_H
#define KILN_TRAIN_SSD_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "kiln/detect.h"
#include "kiln/interp.h"
#include "kiln/model.h"
#include "kiln/train.h"

/* One feature map and its two predictors, as found in a model. */
typedef struct ssd_head {
  int32_t feature;             /* tensor index of the feature map [1, h, w, c] */
  int32_t h, w, c;
  int32_t anchors_per_cell;    /* A */
  int32_t first_anchor;        /* index of this map's first anchor */
  int32_t box_op, class_op;    /* the CONV_2D ops */
  int32_t box_reshape, class_reshape; /* the RESHAPE ops after them */
  int32_t kernel_h, kernel_w;  /* both convs' (checked equal) */
  kiln_padding padding;
} ssd_head;

/* The predictor layout of a raw-output SSD. */
typedef struct ssd_layout {
  int32_t n_heads;
  ssd_head heads[KILN_SSD_MAX_LAYERS];
  int32_t n_anchors;           /* N, the sum of h * w * A */
  int32_t n_columns;           /* C, the class tensor's columns */
  int32_t box_output, class_output;  /* graph output tensors */
  int32_t box_concat, class_concat;  /* the CONCATENATION ops */
  int32_t class_final_reshape; /* RESHAPE between concat and output, or -1 */
  int32_t input_h, input_w;
} ssd_layout;

/* Finds the predictor layout of m (simplified: constant float weights).
 * KILN_ERR_UNSUPPORTED naming the op or tensor that does not fit the
 * pattern above (outputs, reshapes, concatenation, conv geometry: stride
 * and dilation 1, no fused activation, float32 constant weights and bias). */
kiln_status ssd_layout_find(const kiln_model *m, ssd_layout *out, kiln_error *err);

/* A simplified, independent copy of base (serialized and parsed back). */
kiln_status ssd_model_copy(const kiln_model *base, kiln_model **out, kiln_error *err);

/* Turns a copy (from ssd_model_copy) into the frozen body: its outputs
 * become the layout's feature maps, in head order, and everything after
 * them is dropped. */
kiln_status ssd_make_body(kiln_model *copy, const ssd_layout *layout, kiln_error *err);

/* Rewrites a copy (ssd_model_copy of the model the layout was found in,
 * same tensor indices) into the retrained detector: the box predictors get
 * the box conv (layer 1) of heads[i] and the class predictors the class
 * conv (layer 2), with n_columns columns per anchor; tensor shapes and
 * reshape targets on the class path follow. Then simplified. */
kiln_status ssd_export_heads(kiln_model *copy, const ssd_layout *layout, kiln_net *const *heads,
                             int32_t n_columns, kiln_error *err);

/* ---- Matching and targets (train/ssd_match.c) ---- */

#define SSD_NEGATIVE (-1) /* match[]: background */
#define SSD_IGNORED (-2)  /* match[]: neither positive nor negative */

/* Anchors [n][4] (ycenter, xcenter, h, w) -> corners [n][4]. */
void ssd_anchor_corners(const float *anchors, int32_t n, float *corners);

/* IoU of two (ymin, xmin, ymax, xmax) boxes; 0 when either is empty. */
float ssd_iou(const float *a, const float *b);

/* Matches anchors to ground truth as the TF Object Detection API's
 * ArgMaxMatcher with force_match_for_each_row: an anchor takes the box of
 * highest IoU (the first on ties) when that IoU >= iou_threshold; then each
 * box, in order, takes its own best anchor (the first on ties; skipped when
 * its best IoU is 0) unless an earlier box already took that anchor this
 * way. Anchors left unmatched whose IoU with an ignore box (crowd or
 * difficult) is >= iou_threshold are SSD_IGNORED, the rest SSD_NEGATIVE.
 * match[n] receives a box index or one of those. Returns the positives. */
int32_t ssd_match(const float *corners, int32_t n, const float *boxes, int32_t n_boxes,
                  const float *ignore, int32_t n_ignore, float iou_threshold, int32_t *match);

/* Faster R-CNN box coder (the inverse of kiln_detect_decode_boxes): box
 * (ymin, xmin, ymax, xmax) against anchor (ycenter, xcenter, h, w) ->
 * (ty, tx, th, tw) = (y_scale (yc - ya) / ha, x_scale (xc - xa) / wa,
 * h_scale log(h / ha), w_scale log(w / wa)), with 1e-8 added to every
 * height and width as TF's FasterRcnnBoxCoder does, computed in double. */
void ssd_encode_box(const float *box, const float *anchor, const kiln_detect_config *cfg,
                    float *out);

/* ---- Loss (train/ssd_loss.c) ---- */

typedef struct ssd_loss_params {
  float neg_pos_ratio;   /* hard negatives kept per positive */
  int32_t min_negatives; /* per image, when it has fewer positives */
  float box_weight;      /* localization loss weight */
} ssd_loss_params;

typedef struct ssd_loss_parts {
  double total, classification, localization;
  int64_t positives, negatives; /* anchors that entered the loss */
} ssd_loss_parts;

/* Per anchor: the summed sigmoid cross-entropy of its n_columns logits
 * against the one-hot target column (0 for background). */
void ssd_anchor_class_loss(const float *logits, const int32_t *target_column, int32_t n,
                           int32_t n_columns, float *loss);

typedef struct ssd_ranked {
  float loss;
  int32_t index;
} ssd_ranked;

/* Hard-negative mining for one image: every anchor whose match is >= 0
 * is selected, plus the n_neg SSD_NEGATIVE anchors of highest loss (ties:
 * lower index first), n_neg = min(negatives available, max(min_negatives,
 * floor(neg_pos_ratio * positives))). selected[n] gets 1 or 0; ranked[n]
 * is scratch. Returns n_neg. */
int32_t ssd_mine_negatives(const float *loss, const int32_t *match, int32_t n,
                           const ssd_loss_params *p, ssd_ranked *ranked, uint8_t *selected);

/* Buffers of ssd_loss for `images` images of n anchors. */
typedef struct ssd_loss_scratch {
  float *targets;       /* [images * n * n_columns] */
  float *class_weights; /* [images * n * n_columns] */
  float *box_weights;   /* [images * n * 4] */
  float *anchor_loss;   /* [n] */
  ssd_ranked *ranked;   /* [n] */
  uint8_t *selected;    /* [n] */
} ssd_loss_scratch;

/* The SSD loss over a batch of `images` images of n anchors: sigmoid
 * cross-entropy over all n_columns logits of the selected anchors (positives
 * and mined negatives; one-hot targets, column 0 for background) plus
 * box_weight * smooth L1 (beta 1) of the encodings of the positives against
 * box_targets, both divided by max(1, positives in the batch), as TF's SSD
 * with normalize_loss_by_num_matches. target_column[images * n] holds each
 * anchor's column (0 for background; anything for ignored anchors, which
 * never enter the loss) and match[images * n] the matches. Writes the
 * gradients of every logit and encoding (overwriting; 0 outside the loss). */
void ssd_loss(const float *logits, const float *encodings, const int32_t *match,
              const int32_t *target_column, const float *box_targets, int32_t images, int32_t n,
              int32_t n_columns, const ssd_loss_params *p, const ssd_loss_scratch *s,
              float *grad_logits, float *grad_encodings, ssd_loss_parts *parts);

/* ---- Checkpoints (train/ssd_checkpoint.c) ---- */

/* Where a run stands: the next step to take and the running sums of the
 * epoch in progress. */
typedef struct ssd_position {
  int64_t epoch;          /* epoch in progress */
  int64_t step;           /* next step within it */
  double sum_loss, sum_class, sum_box, sum_positives;
  int64_t images_done;    /* images of the epoch trained so far */
} ssd_position;

/* What a checkpoint must agree on to resume exactly. */
typedef struct ssd_run_key {
  uint64_t seed, caller_key;
  int32_t batch, epochs, n_columns, n_train;
} ssd_run_key;

/* Saves the heads' parameters, optimizer moments and steps, the key and
 * the position to path (atomically, CRC-32 at the end). */
kiln_status ssd_checkpoint_save(kiln_net *const *heads, int32_t n_heads, const ssd_run_key *key,
                                const ssd_position *pos, const char *path, kiln_error *err);

/* Restores them; KILN_ERR_FORMAT for a damaged file or other heads,
 * KILN_ERR_INVALID_ARG when the key differs (the message names the field). */
kiln_status ssd_checkpoint_load(kiln_net *const *heads, int32_t n_heads, const ssd_run_key *key,
                                ssd_position *pos, const char *path, kiln_error *err);

/* ---- The trainer (train/ssd_train.c runs it, train/ssd_sample.c feeds it) ---- */

struct kiln_dataset;

typedef struct ssd_trainer {
  const struct kiln_dataset *ds;
  kiln_ssd_train_options opt;
  ssd_layout layout;
  kiln_model *full;       /* simplified copy of the base: pretrained predictors, export */
  kiln_model *body;       /* the frozen body: outputs are the feature maps */
  kiln_interp *interp;    /* runs body */
  kiln_net *heads[KILN_SSD_MAX_LAYERS];
  int32_t n_anchors, n_columns; /* N, K + 1 */
  kiln_detect_config coder;     /* anchors config and box coder scales */
  float *anchors, *corners;     /* [N][4] centre form, corner form */
  int32_t *train;               /* dataset indices of the TRAIN images */
  int32_t n_train;
  bool augment;
  /* Feature cache (no augmentation): float16 per training image. */
  int64_t feature_floats;       /* all maps of one image */
  uint16_t *cache;              /* [n_train][feature_floats] */
  uint8_t *cached;              /* [n_train] */
  /* One image's work. */
  float *pixels;                /* [in_h][in_w][3] for augmentation */
  int32_t box_capacity;         /* most boxes of any training image */
  float *box_xyxy;              /* [box_capacity][4] pixels */
  int32_t *box_labels;          /* [box_capacity]: label, or -1 for ignore boxes */
  float *gt, *ignore;           /* [box_capacity][4] normalized (ymin, xmin, ymax, xmax) */
  int32_t *gt_labels;           /* [box_capacity] */
  /* One batch. */
  float *logits, *encodings;    /* [batch][N][K+1], [batch][N][4] */
  float *grad_logits, *grad_encodings;
  float *box_targets;           /* [batch][N][4] */
  int32_t *match, *columns;     /* [batch][N] */
  ssd_loss_scratch loss;
  double feature_seconds;
} ssd_trainer;

/* Puts training image train[index] (as epoch `epoch` augments it) into
 * batch slot `slot`: its feature maps into every head's input and its
 * matches, target columns and box targets into the batch arrays. */
kiln_status ssd_sample(ssd_trainer *t, int32_t index, int64_t epoch, int32_t slot,
                       kiln_error *err);

/* A 64-bit seed from a run seed and two counters (splitmix64 finalizer). */
uint64_t ssd_seed(uint64_t seed, uint64_t a, uint64_t b);

#endif
