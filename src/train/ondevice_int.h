/*
 * train/ondevice_int.h: the pieces of on-device learning (kiln/ondevice.h)
 * shared by its files:
 *   ondevice_base.c   base-model analysis (extractor, imprinting head),
 *                     embedding extraction
 *   ondevice_learn.c  imprinting and softmax-regression math, the public
 *                     learning calls
 *   ondevice_head.c   the new layers appended to the extractor (int8 or
 *                     float), labels and metadata
 *   ondevice_run.c    dataset -> files (kiln_ondevice_run), extractors
 */
#ifndef KILN_TRAIN_ONDEVICE_INT_H
#define KILN_TRAIN_ONDEVICE_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "kiln/ondevice.h"

struct kiln_ondevice {
  const kiln_model *base;
  kiln_model *extractor;   /* base cut at the embedding */
  int32_t dim;             /* D */
  kiln_dtype dtype;        /* of the embedding: F32 or I8 */
  kiln_image_norm norm;
  bool imprinting;         /* form (b) */
  int32_t n_classes;       /* form (b) */
  float *rows;             /* [n_classes][dim]: the FC rows, dequantized */
  float *sum_norms;        /* [n_classes]: libcoral's norm of an imprinted class's
                            * embedding sum; 0 for a class it did not imprint */
  char **names;            /* [n_classes] */
  float scale;             /* MUL scale */
};

/* ---- Math (ondevice_learn.c) ---- */

/* Divides each of the n rows of d values by its L2 norm (computed in
 * double); norms[i] (may be NULL) gets it. A zero row stays zero. */
void od_normalize_rows(float *rows, int32_t n, int32_t d, float *norms);

/* Softmax regression by SGD (see kiln_sgd_options) on x[n][d] with labels
 * y[n] in [0, classes): w[classes][d] (class-major, the FC layout) and
 * b[classes] are initialized here and trained. res gets the losses,
 * training accuracy and logit range (may be NULL).
 * @retval KILN_ERR_INVALID_ARG  bad options
 * @retval KILN_ERR_NOMEM */
kiln_status od_sgd_fit(const float *x, const int32_t *y, int32_t n, int32_t d, int32_t classes,
                       const kiln_sgd_options *opt, float *w, float *b, kiln_sgd_result *res,
                       kiln_error *err);

/* Mean cross-entropy and accuracy of (w, b) on the samples, and the range
 * of every logit (any of the outputs may be NULL). */
void od_evaluate(const float *x, const int32_t *y, int32_t n, int32_t d, int32_t classes,
                 const float *w, const float *b, double *loss, double *accuracy, float *logit_min,
                 float *logit_max);

/* Imprinting: the scale s in [OD_SCALE_MIN, OD_SCALE_MAX] minimizing the
 * mean cross-entropy of softmax(s * cos_i) over the samples with use[i]
 * (cos[n][classes], y[n]); KILN_IMPRINT_DEFAULT_SCALE when none is used. */
#define OD_SCALE_MIN 1.0
#define OD_SCALE_MAX 100.0
double od_fit_scale(const float *cos, const int32_t *y, const bool *use, int32_t n, int32_t classes);
/* How far below the lowest training cosine an int8 imprinting layer's FC
 * output range starts. */
#define OD_COSINE_MARGIN 0.1f

/* Symmetric int8 per-tensor quantization: scale = max|w| / 127 (1 when all
 * are 0), q = round(w / scale). */
void od_quantize_symmetric(const float *w, int64_t n, int8_t *q, float *scale);
/* Asymmetric int8 parameters for the range [lo, hi] widened to hold 0. */
void od_int8_params(float lo, float hi, float *scale, int32_t *zero_point);

/* ---- New layers (ondevice_head.c) ---- */

typedef struct od_head {
  bool imprint;              /* FC + MUL + SOFTMAX, weights at scale 1/127 when
                              * they fit (unit rows); else FC + SOFTMAX */
  int32_t classes;
  const float *w;            /* [classes][dim] */
  const float *b;            /* [classes], or NULL for none */
  float scale;               /* imprint: the MUL scale */
  float logit_min, logit_max; /* int8: the FC output range (widened to hold 0) */
  const char *const *names;  /* [classes] */
  const char *description;   /* the model description (copied) */
} od_head;

/* The extractor + the new layers, with labels and the base's input
 * normalization as metadata. */
kiln_status od_build_model(const kiln_ondevice *od, const od_head *h, kiln_model **out,
                           kiln_error *err);

/* ---- Samples ---- */

/* Checks samples against the embedding size: labels in range, every class
 * with a sample (unless has_row[c]), finite values, distinct non-empty
 * names. has_row may be NULL. */
kiln_status od_check_samples(const kiln_ondevice_samples *s, int32_t dim, const bool *has_row,
                             kiln_error *err);

#endif
