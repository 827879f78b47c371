/*
 * kernels/ref/elementwise_ref.h: reference kernels of the elementwise family
 * (see kernels/kernels.h): ADD, SUB, MUL with broadcasting, PRELU, the
 * activations RELU, RELU6, RELU_N1_TO_1, LEAKY_RELU, HARD_SWISH, LOGISTIC,
 * TANH, and SOFTMAX; each for f32, s8 (int8) and u8 (uint8), quantized
 * per tensor (real = scale * (q - zero_point)).
 *
 * Quantized results are bit-exact with TFLite's reference kernels (what
 * LiteRT runs with the BUILTIN_REF op resolver), float results follow the
 * same float expressions. Each `*_init` function computes, from scales and
 * zero points, the parameters its kernels take, exactly as the op's TFLite
 * Prepare does; it returns false when TFLite would refuse (or abort on) the
 * quantization. The kernels never allocate and never fail.
 *
 * Layout: tensors are dense and row-major. Unary kernels see n elements;
 * binary kernels see a kiln_bcast describing a numpy-style broadcast of two
 * shapes of rank <= KILN_BCAST_MAX_RANK.
 */
#ifndef KILN_KERNELS_REF_ELEMENTWISE_REF_H
#define KILN_KERNELS_REF_ELEMENTWISE_REF_H

#include <stdbool.h>
#include <stdint.h>

#define KILN_BCAST_MAX_RANK 6

/* ---- Broadcasting ---- */

/* The broadcast of two row-major shapes, dimensions aligned on the right.
 * stride1/stride2 give, per output dimension, the element stride of each
 * input (0 where that input has extent 1 and is repeated). */
typedef struct kiln_bcast {
  int32_t rank;                           /* output rank: max of the input ranks */
  int32_t shape[KILN_BCAST_MAX_RANK];     /* output shape */
  int64_t stride1[KILN_BCAST_MAX_RANK];
  int64_t stride2[KILN_BCAST_MAX_RANK];
  int64_t count;                          /* output elements (0 if any extent is 0) */
} kiln_bcast;

/* Fills *out with the broadcast of shape1 (rank1) and shape2 (rank2).
 * Returns false if a rank exceeds KILN_BCAST_MAX_RANK, an extent is
 * negative, or two aligned extents differ with neither equal to 1. */
bool kiln_bcast_init(int32_t rank1, const int32_t *shape1, int32_t rank2, const int32_t *shape2,
                     kiln_bcast *out);

/* ---- ADD, SUB, MUL ----
 * in1, in2: inputs of the shapes b was made from; out: b->count elements of
 * the shape b->shape. */

/* Parameters of quantized ADD and SUB (TFLite add.cc / sub.cc Prepare): each
 * input is rescaled to a common scale with 20 bits of headroom, summed, and
 * rescaled to the output. */
typedef struct kiln_addsub_q {
  int32_t left_shift; /* 20 */
  int32_t in1_offset, in2_offset; /* minus the input zero points */
  int32_t in1_multiplier, in2_multiplier;
  int32_t in1_shift, in2_shift; /* <= 0 */
  int32_t out_multiplier;
  int32_t out_shift; /* <= 0 */
  int32_t out_offset; /* output zero point */
  int32_t act_min, act_max; /* output clamp (fused activation) */
} kiln_addsub_q;

/* Computes *p. act_min/act_max are the quantized output bounds of the
 * fused activation. Returns false when the output rescale would be >= 1
 * (out_scale <= max(in_scale) / 2^19), which TFLite cannot run. */
bool kiln_addsub_q_init(float in1_scale, int32_t in1_zero_point, float in2_scale,
                        int32_t in2_zero_point, float out_scale, int32_t out_zero_point,
                        int32_t act_min, int32_t act_max, kiln_addsub_q *p);

/* Parameters of quantized MUL: (in1 - zp1) * (in2 - zp2) rescaled by
 * in1_scale * in2_scale / out_scale. */
typedef struct kiln_mul_q {
  int32_t in1_offset, in2_offset; /* minus the input zero points */
  int32_t out_multiplier, out_shift;
  int32_t out_offset;
  int32_t act_min, act_max;
} kiln_mul_q;

/* Returns false when the rescale is 2^30 or more. */
bool kiln_mul_q_init(float in1_scale, int32_t in1_zero_point, float in2_scale,
                     int32_t in2_zero_point, float out_scale, int32_t out_zero_point,
                     int32_t act_min, int32_t act_max, kiln_mul_q *p);

/* Float kernels clamp to [act_min, act_max] as TFLite's
 * ActivationFunctionWithMinMax does (so +-inf become +-FLT_MAX when the
 * bounds are +-FLT_MAX). */
void kiln_f32_add_ref(const kiln_bcast *b, const float *in1, const float *in2, float *out,
                      float act_min, float act_max);
void kiln_f32_sub_ref(const kiln_bcast *b, const float *in1, const float *in2, float *out,
                      float act_min, float act_max);
void kiln_f32_mul_ref(const kiln_bcast *b, const float *in1, const float *in2, float *out,
                      float act_min, float act_max);
void kiln_s8_add_ref(const kiln_bcast *b, const int8_t *in1, const int8_t *in2, int8_t *out,
                     const kiln_addsub_q *p);
void kiln_u8_add_ref(const kiln_bcast *b, const uint8_t *in1, const uint8_t *in2, uint8_t *out,
                     const kiln_addsub_q *p);
void kiln_s8_sub_ref(const kiln_bcast *b, const int8_t *in1, const int8_t *in2, int8_t *out,
                     const kiln_addsub_q *p);
void kiln_u8_sub_ref(const kiln_bcast *b, const uint8_t *in1, const uint8_t *in2, uint8_t *out,
                     const kiln_addsub_q *p);
void kiln_s8_mul_ref(const kiln_bcast *b, const int8_t *in1, const int8_t *in2, int8_t *out,
                     const kiln_mul_q *p);
void kiln_u8_mul_ref(const kiln_bcast *b, const uint8_t *in1, const uint8_t *in2, uint8_t *out,
                     const kiln_mul_q *p);

/* ---- PRELU: out = in >= 0 ? in : in * alpha, alpha broadcast ---- */

typedef struct kiln_prelu_q {
  int32_t in_offset, alpha_offset; /* minus the zero points */
  int32_t out_offset;
  int32_t pos_multiplier, pos_shift; /* in_scale / out_scale */
  int32_t neg_multiplier, neg_shift; /* in_scale * alpha_scale / out_scale */
} kiln_prelu_q;

/* Returns false when a rescale is 2^30 or more. */
bool kiln_prelu_q_init(float in_scale, int32_t in_zero_point, float alpha_scale,
                       int32_t alpha_zero_point, float out_scale, int32_t out_zero_point,
                       kiln_prelu_q *p);

/* in2 is alpha; b broadcasts input and alpha. */
void kiln_f32_prelu_ref(const kiln_bcast *b, const float *in, const float *alpha, float *out);
void kiln_s8_prelu_ref(const kiln_bcast *b, const int8_t *in, const int8_t *alpha, int8_t *out,
                       const kiln_prelu_q *p);
void kiln_u8_prelu_ref(const kiln_bcast *b, const uint8_t *in, const uint8_t *alpha,
                       uint8_t *out, const kiln_prelu_q *p);

/* ---- RELU, RELU6, RELU_N1_TO_1 ----
 * in, out: n elements. */

void kiln_f32_relu_ref(int64_t n, const float *in, float *out);
void kiln_f32_relu6_ref(int64_t n, const float *in, float *out);
void kiln_f32_relu_n1_to_1_ref(int64_t n, const float *in, float *out);

/* Quantized RELU family: requantize by in_scale / out_scale, then clamp to
 * [act_min, act_max] (TFLite activations.cc QuantizedReluX). */
typedef struct kiln_relu_q {
  int32_t in_zero_point, out_zero_point;
  int32_t multiplier, shift;
  int32_t act_min, act_max;
} kiln_relu_q;

/* act_min/act_max: the quantized bounds of the activation on the output.
 * Returns false when the rescale is 2^30 or more. */
bool kiln_relu_q_init(float in_scale, int32_t in_zero_point, float out_scale,
                      int32_t out_zero_point, int32_t act_min, int32_t act_max, kiln_relu_q *p);
void kiln_s8_relu_ref(int64_t n, const int8_t *in, int8_t *out, const kiln_relu_q *p);
void kiln_u8_relu_ref(int64_t n, const uint8_t *in, uint8_t *out, const kiln_relu_q *p);

/* ---- LEAKY_RELU: out = in > 0 ? in : in * alpha ---- */

typedef struct kiln_leaky_relu_q {
  int32_t in_zero_point, out_zero_point;
  int32_t identity_multiplier, identity_shift; /* in_scale / out_scale */
  int32_t alpha_multiplier, alpha_shift;       /* in_scale * alpha / out_scale, >= 0 */
  bool alpha_negative;                         /* the alpha product is negated */
} kiln_leaky_relu_q;

/* Returns false when a rescale is 2^30 or more in magnitude. */
bool kiln_leaky_relu_q_init(float in_scale, int32_t in_zero_point, float out_scale,
                            int32_t out_zero_point, float alpha, kiln_leaky_relu_q *p);
void kiln_f32_leaky_relu_ref(int64_t n, const float *in, float *out, float alpha);
void kiln_s8_leaky_relu_ref(int64_t n, const int8_t *in, int8_t *out, const kiln_leaky_relu_q *p);
void kiln_u8_leaky_relu_ref(int64_t n, const uint8_t *in, uint8_t *out,
                            const kiln_leaky_relu_q *p);

/* ---- HARD_SWISH: out = in * relu6(in + 3) / 6 ---- */

/* TFLite HardSwishParams, computed as activations.cc HardSwishPrepare. */
typedef struct kiln_hard_swish_q {
  int32_t in_zero_point, out_zero_point;
  int16_t reluish_multiplier;  /* Q15 */
  int32_t reluish_exponent;
  int16_t output_multiplier;   /* Q15 */
  int32_t output_exponent;     /* <= 0 */
} kiln_hard_swish_q;

/* Returns false when TFLite refuses the scales (output exponent > 0) or the
 * reluish exponent exceeds 31. */
bool kiln_hard_swish_q_init(float in_scale, int32_t in_zero_point, float out_scale,
                            int32_t out_zero_point, kiln_hard_swish_q *p);
void kiln_f32_hard_swish_ref(int64_t n, const float *in, float *out);
void kiln_s8_hard_swish_ref(int64_t n, const int8_t *in, int8_t *out, const kiln_hard_swish_q *p);
void kiln_u8_hard_swish_ref(int64_t n, const uint8_t *in, uint8_t *out,
                            const kiln_hard_swish_q *p);

/* ---- LOGISTIC, TANH ----
 * Float: TFLite's reference expressions. Quantized: TFLite's reference path
 * is a 256-entry table filled at prepare time from the float function
 * (LUTPopulate), then a lookup per element. */

void kiln_f32_logistic_ref(int64_t n, const float *in, float *out);
void kiln_f32_tanh_ref(int64_t n, const float *in, float *out);

/* The float transforms the quantized tables are made of:
 * 1 / (1 + expf(-x)) and tanhf(x). */
float kiln_logistic_table_fn(float x);
float kiln_tanh_table_fn(float x);

/* Fills a table mapping every quantized input to fn of its real value,
 * requantized. s8 tables are indexed by (uint8_t)x. */
void kiln_s8_lut_init(float in_scale, int32_t in_zero_point, float out_scale,
                      int32_t out_zero_point, float (*fn)(float), int8_t lut[256]);
void kiln_u8_lut_init(float in_scale, int32_t in_zero_point, float out_scale,
                      int32_t out_zero_point, float (*fn)(float), uint8_t lut[256]);
void kiln_s8_lut_ref(int64_t n, const int8_t *in, int8_t *out, const int8_t lut[256]);
void kiln_u8_lut_ref(int64_t n, const uint8_t *in, uint8_t *out, const uint8_t lut[256]);

/* ---- SOFTMAX along the last axis ----
 * in, out: outer * depth elements, softmax over each run of depth. */

void kiln_f32_softmax_ref(int64_t outer, int32_t depth, const float *in, float *out, float beta);

/* TFLite's quantized softmax parameters (PreprocessSoftmaxScaling and
 * CalculateInputRadius with 5 integer bits). Output is always scale 1/256
 * with zero point at the type's minimum. */
typedef struct kiln_softmax_q {
  int32_t input_multiplier;
  int32_t input_left_shift;
  int32_t diff_min;
  /* exp(beta * in_scale * -d) in Q0.31 for the 256 possible differences
   * d = max - x of 8-bit inputs, exactly as TFLite computes each one (the
   * rescale and gemmlowp's exp_on_negative_values); 0 where -d < diff_min,
   * whose elements the reference skips. Filled by kiln_softmax_q_init. */
  int32_t exp_of_diff[256];
} kiln_softmax_q;

/* Returns false when beta * in_scale * 2^26 <= 1 (TFLite cannot run it). */
bool kiln_softmax_q_init(float beta, float in_scale, kiln_softmax_q *p);

/* Where TFLite would abort (a row whose sum of exponentials reaches 512,
 * possible only in rows of more than 511 elements), these write the type's
 * minimum for that row. */
void kiln_s8_softmax_ref(int64_t outer, int32_t depth, const int8_t *in, int8_t *out,
                         const kiln_softmax_q *p);
void kiln_u8_softmax_ref(int64_t outer, int32_t depth, const uint8_t *in, uint8_t *out,
                         const kiln_softmax_q *p);

/* ---- L2_NORMALIZATION along the last axis (l2norm_ref.c) ----
 * in, out: outer * depth elements; each run of depth is divided by its L2
 * norm. Float: x / max(sqrt(sum x^2), 1e-6), summed in order in float.
 * Quantized: the sum of squared differences to the input zero point (int32,
 * wrapping like TFLite's; the op refuses depths where it could wrap), its
 * inverse square root as a fixed-point multiplier
 * (kiln_inv_sqrt_multiplier), each difference rescaled by it. The output
 * has scale 1/128 and zero point 0 (int8) or 128 (uint8), whatever the
 * input's. */

/* TFLite GetInvSqrtQuantizedMultiplierExp(input, reverse_shift = -1): a
 * multiplier and a shift <= 0 with 1/sqrt(input) ~ multiplier * 2^(shift -
 * 31); input <= 1 gives INT32_MAX and 0. input >= 0. */
void kiln_inv_sqrt_multiplier(int32_t input, int32_t *multiplier, int *shift);

void kiln_f32_l2norm_ref(int64_t outer, int32_t depth, const float *in, float *out);
void kiln_s8_l2norm_ref(int64_t outer, int32_t depth, const int8_t *in, int8_t *out,
                        int32_t in_zero_point);
void kiln_u8_l2norm_ref(int64_t outer, int32_t depth, const uint8_t *in, uint8_t *out,
                        int32_t in_zero_point);

#endif
