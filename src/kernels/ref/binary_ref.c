/*
 * kernels/ref/binary_ref.c: reference kernels with two broadcast inputs:
 * ADD, SUB, MUL and PRELU (see elementwise_ref.h for the contracts).
 *
 * The arithmetic per element follows TFLite's reference kernels
 * (reference/add.h, sub.h, mul.h, prelu.h and their integer_ops versions);
 * the loop walks the output row by row, the last dimension innermost, with
 * per-input strides that are 0 along broadcast dimensions.
 */
#include <math.h>
#include <stddef.h>

#include "kernels/quant_math.h"
#include "kernels/ref/elementwise_ref.h"

bool kiln_bcast_init(int32_t rank1, const int32_t *shape1, int32_t rank2, const int32_t *shape2,
                     kiln_bcast *out) {
  if (rank1 < 0 || rank2 < 0 || rank1 > KILN_BCAST_MAX_RANK || rank2 > KILN_BCAST_MAX_RANK)
    return false;
  const int32_t rank = rank1 > rank2 ? rank1 : rank2;
  int32_t ext1[KILN_BCAST_MAX_RANK], ext2[KILN_BCAST_MAX_RANK];
  out->rank = rank;
  out->count = 1;
  for (int32_t i = 0; i < rank; i++) {
    ext1[i] = i < rank - rank1 ? 1 : shape1[i - (rank - rank1)];
    ext2[i] = i < rank - rank2 ? 1 : shape2[i - (rank - rank2)];
    if (ext1[i] < 0 || ext2[i] < 0) return false;
    if (ext1[i] != ext2[i] && ext1[i] != 1 && ext2[i] != 1) return false;
    out->shape[i] = ext1[i] == 1 ? ext2[i] : ext1[i];
    out->count *= out->shape[i];
  }
  int64_t s1 = 1, s2 = 1;
  for (int32_t i = rank - 1; i >= 0; i--) {
    out->stride1[i] = ext1[i] == out->shape[i] ? s1 : 0;
    out->stride2[i] = ext2[i] == out->shape[i] ? s2 : 0;
    s1 *= ext1[i];
    s2 *= ext2[i];
  }
  return true;
}

/* Position of one output row (the last dimension) and its input offsets. */
typedef struct row_iter {
  int32_t index[KILN_BCAST_MAX_RANK]; /* index of the row in the outer dimensions */
  int64_t off1, off2, off_out;
  int64_t n, s1, s2; /* row length and the inputs' strides along it */
} row_iter;

static bool row_begin(const kiln_bcast *b, row_iter *it) {
  if (b->count == 0) return false;
  for (int32_t i = 0; i < KILN_BCAST_MAX_RANK; i++) it->index[i] = 0;
  it->off1 = it->off2 = it->off_out = 0;
  if (b->rank == 0) {
    it->n = 1;
    it->s1 = it->s2 = 0;
  } else {
    it->n = b->shape[b->rank - 1];
    it->s1 = b->stride1[b->rank - 1];
    it->s2 = b->stride2[b->rank - 1];
  }
  return true;
}

/* Advances to the next row; false after the last one. */
static bool row_next(const kiln_bcast *b, row_iter *it) {
  it->off_out += it->n;
  for (int32_t d = b->rank - 2; d >= 0; d--) {
    it->off1 += b->stride1[d];
    it->off2 += b->stride2[d];
    if (++it->index[d] < b->shape[d]) return true;
    it->index[d] = 0;
    it->off1 -= b->stride1[d] * b->shape[d];
    it->off2 -= b->stride2[d] * b->shape[d];
  }
  return false;
}

/* out[...] = elem(in1[...], in2[...], params) over the broadcast b. */
#define BCAST_APPLY(b, in1, in2, out, elem, params)                                   \
  do {                                                                                \
    row_iter it_;                                                                     \
    if (!row_begin((b), &it_)) break;                                                 \
    do {                                                                              \
      for (int64_t i_ = 0; i_ < it_.n; i_++)                                          \
        (out)[it_.off_out + i_] =                                                     \
            elem((in1)[it_.off1 + i_ * it_.s1], (in2)[it_.off2 + i_ * it_.s2], params); \
    } while (row_next((b), &it_));                                                    \
  } while (0)

/* ---- Float ---- */

typedef struct f32_clamp {
  float lo, hi;
} f32_clamp;

/* std::min(std::max(x, lo), hi), NaN-for-NaN as in TFLite. */
static inline float clamp_f(float x, const f32_clamp *c) {
  const float y = x < c->lo ? c->lo : x;
  return c->hi < y ? c->hi : y;
}

static inline float f32_add_one(float a, float b, const f32_clamp *c) { return clamp_f(a + b, c); }
static inline float f32_sub_one(float a, float b, const f32_clamp *c) { return clamp_f(a - b, c); }
static inline float f32_mul_one(float a, float b, const f32_clamp *c) { return clamp_f(a * b, c); }

void kiln_f32_add_ref(const kiln_bcast *b, const float *in1, const float *in2, float *out,
                      float act_min, float act_max) {
  const f32_clamp c = {act_min, act_max};
  BCAST_APPLY(b, in1, in2, out, f32_add_one, &c);
}

void kiln_f32_sub_ref(const kiln_bcast *b, const float *in1, const float *in2, float *out,
                      float act_min, float act_max) {
  const f32_clamp c = {act_min, act_max};
  BCAST_APPLY(b, in1, in2, out, f32_sub_one, &c);
}

void kiln_f32_mul_ref(const kiln_bcast *b, const float *in1, const float *in2, float *out,
                      float act_min, float act_max) {
  const f32_clamp c = {act_min, act_max};
  BCAST_APPLY(b, in1, in2, out, f32_mul_one, &c);
}

/* ---- Quantized ADD and SUB ---- */

bool kiln_addsub_q_init(float in1_scale, int32_t in1_zero_point, float in2_scale,
                        int32_t in2_zero_point, float out_scale, int32_t out_zero_point,
                        int32_t act_min, int32_t act_max, kiln_addsub_q *p) {
  if (!(in1_scale > 0) || !(in2_scale > 0) || !(out_scale > 0) || !isfinite(in1_scale) ||
      !isfinite(in2_scale) || !isfinite(out_scale))
    return false;
  p->left_shift = 20;
  p->in1_offset = -in1_zero_point;
  p->in2_offset = -in2_zero_point;
  p->out_offset = out_zero_point;
  p->act_min = act_min;
  p->act_max = act_max;
  const double twice_max_input_scale = 2.0 * (double)(in1_scale > in2_scale ? in1_scale : in2_scale);
  const double real_in1 = (double)in1_scale / twice_max_input_scale;
  const double real_in2 = (double)in2_scale / twice_max_input_scale;
  const double real_out =
      twice_max_input_scale / ((double)(1 << p->left_shift) * (double)out_scale);
  if (!(real_out < 1.0)) return false;
  int shift1, shift2, shift_out;
  kiln_quantize_multiplier(real_in1, &p->in1_multiplier, &shift1);
  kiln_quantize_multiplier(real_in2, &p->in2_multiplier, &shift2);
  kiln_quantize_multiplier(real_out, &p->out_multiplier, &shift_out);
  if (shift1 > 0 || shift2 > 0 || shift_out > 0) return false;
  p->in1_shift = shift1;
  p->in2_shift = shift2;
  p->out_shift = shift_out;
  return true;
}

/* One quantized ADD (sign 1) or SUB (sign -1) element, before the cast. */
static inline int32_t addsub_q(int32_t a, int32_t b, const kiln_addsub_q *p, int sign) {
  const int32_t shifted1 = kiln_shl_wrap(p->in1_offset + a, p->left_shift);
  const int32_t shifted2 = kiln_shl_wrap(p->in2_offset + b, p->left_shift);
  const int32_t scaled1 =
      kiln_mul_by_quantized_multiplier_smaller_than_one(shifted1, p->in1_multiplier, p->in1_shift);
  const int32_t scaled2 =
      kiln_mul_by_quantized_multiplier_smaller_than_one(shifted2, p->in2_multiplier, p->in2_shift);
  const int32_t raw = sign > 0 ? scaled1 + scaled2 : scaled1 - scaled2;
  const int32_t out =
      kiln_mul_by_quantized_multiplier_smaller_than_one(raw, p->out_multiplier, p->out_shift) +
      p->out_offset;
  return kiln_clamp_i32(out, p->act_min, p->act_max);
}

static inline int8_t s8_add_one(int8_t a, int8_t b, const kiln_addsub_q *p) {
  return (int8_t)addsub_q(a, b, p, 1);
}
static inline uint8_t u8_add_one(uint8_t a, uint8_t b, const kiln_addsub_q *p) {
  return (uint8_t)addsub_q(a, b, p, 1);
}
static inline int8_t s8_sub_one(int8_t a, int8_t b, const kiln_addsub_q *p) {
  return (int8_t)addsub_q(a, b, p, -1);
}
static inline uint8_t u8_sub_one(uint8_t a, uint8_t b, const kiln_addsub_q *p) {
  return (uint8_t)addsub_q(a, b, p, -1);
}

void kiln_s8_add_ref(const kiln_bcast *b, const int8_t *in1, const int8_t *in2, int8_t *out,
                     const kiln_addsub_q *p) {
  BCAST_APPLY(b, in1, in2, out, s8_add_one, p);
}

void kiln_u8_add_ref(const kiln_bcast *b, const uint8_t *in1, const uint8_t *in2, uint8_t *out,
                     const kiln_addsub_q *p) {
  BCAST_APPLY(b, in1, in2, out, u8_add_one, p);
}

void kiln_s8_sub_ref(const kiln_bcast *b, const int8_t *in1, const int8_t *in2, int8_t *out,
                     const kiln_addsub_q *p) {
  BCAST_APPLY(b, in1, in2, out, s8_sub_one, p);
}

void kiln_u8_sub_ref(const kiln_bcast *b, const uint8_t *in1, const uint8_t *in2, uint8_t *out,
                     const kiln_addsub_q *p) {
  BCAST_APPLY(b, in1, in2, out, u8_sub_one, p);
}

/* ---- Quantized MUL ---- */

/* TFLite QuantizeMultiplier of a float-computed rescale; false unless the
 * rescale is finite and the shift at most 30. */
static bool quantize_rescale(float real, int32_t *multiplier, int32_t *shift) {
  if (!isfinite(real) || real < 0) return false;
  int s;
  kiln_quantize_multiplier((double)real, multiplier, &s);
  if (s > 30) return false;
  *shift = s;
  return true;
}

bool kiln_mul_q_init(float in1_scale, int32_t in1_zero_point, float in2_scale,
                     int32_t in2_zero_point, float out_scale, int32_t out_zero_point,
                     int32_t act_min, int32_t act_max, kiln_mul_q *p) {
  if (!(out_scale > 0)) return false;
  p->in1_offset = -in1_zero_point;
  p->in2_offset = -in2_zero_point;
  p->out_offset = out_zero_point;
  p->act_min = act_min;
  p->act_max = act_max;
  /* TFLite computes the product and quotient in float. */
  const float real = in1_scale * in2_scale / out_scale;
  return quantize_rescale(real, &p->out_multiplier, &p->out_shift);
}

static inline int32_t mul_q(int32_t a, int32_t b, const kiln_mul_q *p) {
  const int32_t prod = (p->in1_offset + a) * (p->in2_offset + b);
  const int32_t out =
      p->out_offset + kiln_mul_by_quantized_multiplier(prod, p->out_multiplier, p->out_shift);
  return kiln_clamp_i32(out, p->act_min, p->act_max);
}

static inline int8_t s8_mul_one(int8_t a, int8_t b, const kiln_mul_q *p) {
  return (int8_t)mul_q(a, b, p);
}
static inline uint8_t u8_mul_one(uint8_t a, uint8_t b, const kiln_mul_q *p) {
  return (uint8_t)mul_q(a, b, p);
}

void kiln_s8_mul_ref(const kiln_bcast *b, const int8_t *in1, const int8_t *in2, int8_t *out,
                     const kiln_mul_q *p) {
  BCAST_APPLY(b, in1, in2, out, s8_mul_one, p);
}

void kiln_u8_mul_ref(const kiln_bcast *b, const uint8_t *in1, const uint8_t *in2, uint8_t *out,
                     const kiln_mul_q *p) {
  BCAST_APPLY(b, in1, in2, out, u8_mul_one, p);
}

/* ---- PRELU ---- */

bool kiln_prelu_q_init(float in_scale, int32_t in_zero_point, float alpha_scale,
                       int32_t alpha_zero_point, float out_scale, int32_t out_zero_point,
                       kiln_prelu_q *p) {
  if (!(out_scale > 0)) return false;
  p->in_offset = -in_zero_point;
  p->alpha_offset = -alpha_zero_point;
  p->out_offset = out_zero_point;
  const float real_pos = in_scale / out_scale;
  const float real_neg = in_scale * alpha_scale / out_scale;
  return quantize_rescale(real_pos, &p->pos_multiplier, &p->pos_shift) &&
         quantize_rescale(real_neg, &p->neg_multiplier, &p->neg_shift);
}

static inline float f32_prelu_one(float x, float alpha, const void *unused) {
  (void)unused;
  return x >= 0.0f ? x : x * alpha;
}

/* One quantized PRELU element before clamping to the type's range. */
static inline int32_t prelu_q(int32_t x, int32_t alpha, const kiln_prelu_q *p) {
  const int32_t in = p->in_offset + x;
  int32_t out;
  if (in >= 0) {
    out = kiln_mul_by_quantized_multiplier(in, p->pos_multiplier, p->pos_shift);
  } else {
    out = kiln_mul_by_quantized_multiplier(in * (p->alpha_offset + alpha), p->neg_multiplier,
                                           p->neg_shift);
  }
  return out + p->out_offset;
}

static inline int8_t s8_prelu_one(int8_t x, int8_t alpha, const kiln_prelu_q *p) {
  return (int8_t)kiln_clamp_i32(prelu_q(x, alpha, p), INT8_MIN, INT8_MAX);
}
static inline uint8_t u8_prelu_one(uint8_t x, uint8_t alpha, const kiln_prelu_q *p) {
  return (uint8_t)kiln_clamp_i32(prelu_q(x, alpha, p), 0, UINT8_MAX);
}

void kiln_f32_prelu_ref(const kiln_bcast *b, const float *in, const float *alpha, float *out) {
  BCAST_APPLY(b, in, alpha, out, f32_prelu_one, NULL);
}

void kiln_s8_prelu_ref(const kiln_bcast *b, const int8_t *in, const int8_t *alpha, int8_t *out,
                       const kiln_prelu_q *p) {
  BCAST_APPLY(b, in, alpha, out, s8_prelu_one, p);
}

void kiln_u8_prelu_ref(const kiln_bcast *b, const uint8_t *in, const uint8_t *alpha,
                       uint8_t *out, const kiln_prelu_q *p) {
  BCAST_APPLY(b, in, alpha, out, u8_prelu_one, p);
}
