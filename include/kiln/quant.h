/*
 * kiln/quant.h: post-training full-integer quantization (float .tflite ->
 * int8 .tflite following the TFLite int8 specification).
 *
 *   kiln_quantizer *q;
 *   kiln_quant_options opt = kiln_quant_options_default();
 *   kiln_quantizer_create(float_model, &opt, &q, &err);
 *   for each calibration image:  kiln_quantizer_add_image(q, &img, NULL, &err);
 *   kiln_model *int8;
 *   kiln_quantizer_finish(q, &int8, &err);      // uses the ranges seen so far
 *   kiln_model_save(int8, "model_int8.tflite", &err);
 *   kiln_quant_evaluate(float_model, int8, held_out, n, NULL, &report, &err);
 *
 * Calibration runs kiln's float interpreter and records every activation
 * tensor's range and histogram; range selection is min/max, a percentile
 * of |x| mass, or entropy (the clipping that minimises the KL divergence
 * between the float histogram and its 8-bit quantization). Weights are
 * symmetric int8 per output channel (or per tensor), biases int32 with
 * scale input_scale * weight_scale, activations asymmetric int8. LOGISTIC,
 * SOFTMAX, TANH and L2_NORMALIZATION outputs get the spec's fixed parameters; ops that only
 * move data (RESHAPE, SQUEEZE, PAD, pooling, RESIZE, CONCATENATION) share
 * one set of parameters between inputs and output, chosen from the union of
 * their ranges. TFLite_Detection_PostProcess stays float, fed through
 * DEQUANTIZE, as in Coral's detection models.
 */
#ifndef KILN_QUANT_H
#define KILN_QUANT_H

#include <stdbool.h>
#include <stdint.h>

#include "kiln/base.h"
#include "kiln/image.h"
#include "kiln/model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum kiln_calib_method {
  KILN_CALIB_MINMAX = 0,
  KILN_CALIB_PERCENTILE = 1,
  KILN_CALIB_ENTROPY = 2
} kiln_calib_method;

typedef struct kiln_quant_options {
  kiln_calib_method method;
  float percentile;      /* for KILN_CALIB_PERCENTILE: mass kept, e.g. 99.99 */
  bool per_channel;      /* conv / depthwise / FC weights per output channel */
  kiln_dtype io_dtype;   /* KILN_I8, KILN_U8 or KILN_F32 model inputs/outputs */
  bool allow_float;      /* keep ops that cannot be int8 in float (else fail) */
  kiln_image_norm norm;  /* image -> float input normalization */
  bool has_norm;         /* false: kiln_image_norm_for_input's default */
  int32_t n_threads;     /* calibration interpreter threads (0: all cores) */
} kiln_quant_options;

/* minmax, per-channel, int8 I/O, no float fallback, default normalization. */
kiln_quant_options kiln_quant_options_default(void);

typedef struct kiln_quantizer kiln_quantizer;

/* Prepares calibration of a float model. Refuses (naming them) models that
 * are already quantized and ops kiln cannot quantize (unless
 * allow_float). The model must outlive the quantizer. */
kiln_status kiln_quantizer_create(const kiln_model *float_model, const kiln_quant_options *opt,
                                  kiln_quantizer **out, kiln_error *err);
/* Runs one image (decoded, resized and normalized as at inference) through
 * the float model and records every activation's range. */
kiln_status kiln_quantizer_add_image(kiln_quantizer *q, const kiln_image *img, kiln_error *err);
/* Runs raw float inputs (one buffer per model input, in order, each of the
 * input's element count) through the float model. */
kiln_status kiln_quantizer_add_inputs(kiln_quantizer *q, const float *const *inputs,
                                      kiln_error *err);
/* Samples seen so far. */
int32_t kiln_quantizer_samples(const kiln_quantizer *q);
/* Builds the int8 model from the ranges seen (at least one sample). */
kiln_status kiln_quantizer_finish(kiln_quantizer *q, kiln_model **out, kiln_error *err);
void kiln_quantizer_free(kiln_quantizer *q);

/* Range and parameters chosen for one activation tensor (for reports). */
typedef struct kiln_quant_tensor_info {
  const char *name;
  float observed_min, observed_max; /* over calibration */
  float range_min, range_max;       /* after range selection and sharing */
  float scale;
  int32_t zero_point;
  bool fixed;                       /* set by the op's spec, not calibrated */
} kiln_quant_tensor_info;

/* The activation tensors the last kiln_quantizer_finish quantized; *out
 * points into the quantizer. */
int32_t kiln_quantizer_tensor_info(const kiln_quantizer *q, const kiln_quant_tensor_info **out);

/* Ops left in float by allow_float, as "op N (NAME): reason" lines; *out
 * points into the quantizer. */
int32_t kiln_quantizer_float_ops(const kiln_quantizer *q, const char *const **out);

/* Float vs int8 agreement of each output over held-out samples. */
typedef struct kiln_quant_output_eval {
  const char *name;
  double sqnr_db;   /* 10 log10(sum f^2 / sum (f - q)^2) over all samples */
  double cosine;    /* cosine similarity of the flattened outputs */
  double max_abs_error;
} kiln_quant_output_eval;

typedef struct kiln_quant_eval {
  int32_t samples;
  int32_t n_outputs;
  kiln_quant_output_eval *outputs; /* kiln_malloc'd; free with kiln_quant_eval_free */
} kiln_quant_eval;

/* Runs both models on held-out images (float model with norm, or its
 * default; int8 model's input filled from the same float input values) and
 * compares their outputs (the int8 model's dequantized). */
kiln_status kiln_quant_evaluate(const kiln_model *float_model, const kiln_model *int8_model,
                                const kiln_image *images, int32_t n_images,
                                const kiln_image_norm *norm, kiln_quant_eval *out,
                                kiln_error *err);
/* As kiln_quant_evaluate, on raw float values of the (single) input: one
 * buffer of its element count per sample. */
kiln_status kiln_quant_evaluate_inputs(const kiln_model *float_model, const kiln_model *int8_model,
                                       const float *const *inputs, int32_t n_samples,
                                       kiln_quant_eval *out, kiln_error *err);
void kiln_quant_eval_free(kiln_quant_eval *e);

#ifdef __cplusplus
}
#endif
#endif
