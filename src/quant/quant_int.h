/*
 * quant/quant_int.h: the quantizer's private state, shared by calib.c
 * (collecting activation statistics), range.c (choosing ranges) and
 * convert.c (writing the int8 graph).
 */
#ifndef KILN_QUANT_QUANT_INT_H
#define KILN_QUANT_QUANT_INT_H

#include "kiln/interp.h"
#include "kiln/quant.h"

/* Histogram bins over [-bound, bound]; must be a multiple of 4 so the
 * range can double by merging bin pairs. */
#define KILN_HIST_BINS 4096

typedef struct kiln_tensor_stats {
  bool tracked;  /* a float activation (graph input or op output) */
  bool seen;     /* at least one value recorded */
  float min, max;
  float bound;   /* histogram covers [-bound, bound] */
  uint64_t *hist; /* [KILN_HIST_BINS], NULL until seen */
  uint64_t count;
} kiln_tensor_stats;

struct kiln_quantizer {
  const kiln_model *model;
  kiln_quant_options opt;
  kiln_interp *interp;
  kiln_tensor_stats *stats; /* [model->n_tensors] */
  int32_t samples;
  bool observe_nomem;       /* the observer ran out of memory (sticky) */
  bool *float_op;           /* [n_ops]: op stays float */
  char **float_reasons;     /* "op N (NAME): reason" for float ops */
  int32_t n_float_reasons;
  kiln_quant_tensor_info *info; /* filled by finish */
  int32_t n_info;
};

/* Records the values of tensor t (n floats) in its statistics. */
kiln_status kiln_stats_add(kiln_tensor_stats *s, const float *x, int64_t n, kiln_error *err);

/* The [lo, hi] range (containing 0) a method selects from the statistics. */
void kiln_stats_range(const kiln_tensor_stats *s, const kiln_quant_options *opt, float *lo,
                      float *hi);

/* int8 scale and zero point covering [lo, hi] (lo <= 0 <= hi), TFLite's
 * nudged asymmetric choice. */
void kiln_quant_params_for_range(float lo, float hi, float *scale, int32_t *zero_point);

/* Whether kiln can run an op of this code in int8 (with float inputs
 * converted), and why not. */
bool kiln_quant_op_supported(const kiln_op *op, const char **why);

#endif
