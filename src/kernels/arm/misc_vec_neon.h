/*
 * kernels/arm/misc_vec_neon.h: the vector operations the kernel templates
 * (kernels/x86/{dw,add,prelu,pool,mean,resize,requant}_tmpl.h, whose list of
 * operations is in kernels/x86/misc_vec_avx512.h) are written in, for ARM64
 * Advanced SIMD: 4 float or int32 lanes; partial vectors go through a small
 * buffer. Included only by the kernels/arm/ files named *_neon.c.
 *
 * Each operation has the x86 one's exact semantics, so the templates compute
 * what they compute on x86: VF_MIN / VF_MAX are compare-and-select (the
 * second operand when unordered, as minps / maxps), not fmin / fmax;
 * VI_MADD(x, w) multiplies by the int16 in w's low half (vpmaddwd on the
 * depthwise packing, whose weights have a zero high half); VI_MBQM is
 * TFLite's MultiplyByQuantizedMultiplier through SQRDMULH
 * (kernels/arm/requant_neon.h).
 */
#ifndef KILN_KERNELS_ARM_MISC_VEC_NEON_H
#define KILN_KERNELS_ARM_MISC_VEC_NEON_H

#include <arm_neon.h>
#include <stdint.h>
#include <string.h>

#include "kernels/arm/requant_neon.h"

/* The templates' VI_MBQM: kiln_mbqm_neon of requant_neon.h; mask and half
 * (the x86 formulation's) are not needed here. */
static inline int32x4_t kiln_mbqm5_neon(int32x4_t x, int32x4_t mult, int32x4_t left,
                                        int32x4_t right, int32x4_t mask, int32x4_t half) {
  (void)mask;
  (void)half;
  return kiln_mbqm_neon(x, mult, left, vnegq_s32(right));
}

static inline float32x4_t kiln_loadn_f32_neon(const float *p, int32_t n) {
  float buf[4] = {0};
  memcpy(buf, p, (size_t)n * sizeof *buf);
  return vld1q_f32(buf);
}

static inline void kiln_storen_f32_neon(float *p, float32x4_t v, int32_t n) {
  float buf[4];
  vst1q_f32(buf, v);
  memcpy(p, buf, (size_t)n * sizeof *buf);
}

static inline int32x4_t kiln_widen_s8x4_neon(int32_t bytes) {
  const int8x8_t b = vreinterpret_s8_s32(vdup_n_s32(bytes));
  return vmovl_s16(vget_low_s16(vmovl_s8(b)));
}

static inline int32x4_t kiln_load_s8x4_neon(const int8_t *p) {
  int32_t bytes;
  memcpy(&bytes, p, sizeof bytes);
  return kiln_widen_s8x4_neon(bytes);
}

static inline int32x4_t kiln_load_s8n_neon(const int8_t *p, int32_t n) {
  int32_t bytes = 0;
  memcpy(&bytes, p, (size_t)n);
  return kiln_widen_s8x4_neon(bytes);
}

/* Four int32 lanes (already within int8) to four bytes, in order. */
static inline int32_t kiln_pack_s8x4_neon(int32x4_t v) {
  const int16x4_t h = vqmovn_s32(v);
  const int8x8_t b = vqmovn_s16(vcombine_s16(h, h));
  return vget_lane_s32(vreinterpret_s32_s8(b), 0);
}

static inline void kiln_store_s8x4_neon(int8_t *p, int32x4_t v) {
  const int32_t bytes = kiln_pack_s8x4_neon(v);
  memcpy(p, &bytes, sizeof bytes);
}

static inline void kiln_store_s8n_neon(int8_t *p, int32x4_t v, int32_t n) {
  const int32_t bytes = kiln_pack_s8x4_neon(v);
  memcpy(p, &bytes, (size_t)n);
}

#define VT 4
#define KX(name) name##_neon

#define VF float32x4_t
#define VF_ZERO() vdupq_n_f32(0.0f)
#define VF_SET1(x) vdupq_n_f32(x)
#define VF_LOAD(p) vld1q_f32(p)
#define VF_LOADN(p, n) kiln_loadn_f32_neon(p, n)
#define VF_STORE(p, v) vst1q_f32(p, v)
#define VF_STOREN(p, v, n) kiln_storen_f32_neon(p, v, n)
#define VF_ADD vaddq_f32
#define VF_MUL vmulq_f32
#define VF_DIV vdivq_f32
#define VF_MIN(a, b) kiln_min_f32_neon(a, b)
#define VF_MAX(a, b) kiln_max_f32_neon(a, b)
#define VF_SELECT_GE0(x, a, b) vbslq_f32(vcgezq_f32(x), a, b)

/* a < b ? a : b and a > b ? a : b (b when either is NaN). */
static inline float32x4_t kiln_min_f32_neon(float32x4_t a, float32x4_t b) {
  return vbslq_f32(vcltq_f32(a, b), a, b);
}
static inline float32x4_t kiln_max_f32_neon(float32x4_t a, float32x4_t b) {
  return vbslq_f32(vcgtq_f32(a, b), a, b);
}

#define VI int32x4_t
#define VI_SET1(x) vdupq_n_s32(x)
#define VI_LOAD(p) vld1q_s32(p)
#define VI_LOAD_S8(p) kiln_load_s8x4_neon(p)
#define VI_LOAD_S8N(p, n) kiln_load_s8n_neon(p, n)
#define VI_STORE_S8(p, v) kiln_store_s8x4_neon(p, v)
#define VI_STORE_S8N(p, v, n) kiln_store_s8n_neon(p, v, n)
#define VI_ADD vaddq_s32
#define VI_SUB vsubq_s32
#define VI_SRAI(x, n) vshrq_n_s32(x, n)
#define VI_SRLI(x, n) vreinterpretq_s32_u32(vshrq_n_u32(vreinterpretq_u32_s32(x), n))
#define VI_MULLO vmulq_s32
#define VI_MADD(x, w) vmulq_s32(x, vshrq_n_s32(vshlq_n_s32(w, 16), 16))
#define VI_MIN vminq_s32
#define VI_MAX vmaxq_s32
#define VI_IF_GT0(x, v) vandq_s32(vreinterpretq_s32_u32(vcgtzq_s32(x)), v)
#define VI_SELECT_GE0(x, a, b) vbslq_s32(vcgezq_s32(x), a, b)
#define VI_MBQM kiln_mbqm5_neon
#define VI_TO_VF vcvtq_f32_s32
#define VF_TO_VI_TRUNC vcvtq_s32_f32

#endif
