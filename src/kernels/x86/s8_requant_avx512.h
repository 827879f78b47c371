/*
 * kernels/x86/s8_requant_avx512.h: the int8 GEMM's requantization on 16
 * int32 lanes (AVX-512F/BW), bit-exact with kiln_mul_by_quantized_multiplier
 * (kernels/quant_math.h) for multipliers in [0, 2^31); for files compiled
 * with AVX-512 flags only.
 *
 * With y = SaturatingRoundingDoublingHighMul(x << left, mult):
 *   the reference nudges the 64-bit product p by 2^30 or 1 - 2^30 by its sign
 *   and divides by 2^31 truncating toward zero; both cases equal
 *   floor((p + 2^30) / 2^31), taken here from vpmuldq products of the even
 *   and odd lanes. The saturating case (both factors INT32_MIN) cannot occur
 *   with a non-negative multiplier.
 *   RoundingDivideByPOT(y, right) rounds halves away from zero, which is
 *   sign(y) * ((|y| + half) >> right) with |y| and the sum taken unsigned
 *   (|INT32_MIN| = 2^31 and half <= 2^30 fit in 32 bits).
 */
#ifndef KILN_KERNELS_X86_S8_REQUANT_AVX512_H
#define KILN_KERNELS_X86_S8_REQUANT_AVX512_H

#include <immintrin.h>
#include <stdint.h>

#include "kernels/s8_gemm.h"

/* Requantization parameters of 16 consecutive columns. */
typedef struct s8_rq_zmm {
  __m512i mult, mult_odd, left, right, half;
} s8_rq_zmm;

/* Columns [n, n + 16); n a multiple of 16. */
static inline s8_rq_zmm s8_rq_load_zmm(const kiln_s8_requant *rq, int32_t n) {
  s8_rq_zmm p;
  p.mult = _mm512_loadu_si512(rq->mult + n);
  p.mult_odd = _mm512_loadu_si512(rq->mult + n + 1); /* odd lanes' multipliers, even slots */
  p.left = _mm512_loadu_si512(rq->left + n);
  p.right = _mm512_loadu_si512(rq->right + n);
  p.half = _mm512_loadu_si512(rq->half + n);
  return p;
}

/* MultiplyByQuantizedMultiplier(x, mult, shift) per lane. */
static inline __m512i s8_mbqm_zmm(__m512i x, const s8_rq_zmm *p) {
  const __m512i nudge = _mm512_set1_epi64((int64_t)1 << 30);
  x = _mm512_sllv_epi32(x, p->left);
  __m512i even = _mm512_mul_epi32(x, p->mult);
  __m512i odd = _mm512_mul_epi32(_mm512_srli_epi64(x, 32), p->mult_odd);
  even = _mm512_srli_epi64(_mm512_add_epi64(even, nudge), 31); /* y in the low halves */
  odd = _mm512_add_epi64(odd, nudge);
  odd = _mm512_add_epi64(odd, odd); /* y in the high halves */
  const __m512i y = _mm512_mask_blend_epi32(0xAAAA, even, odd);
  const __m512i mag =
      _mm512_srlv_epi32(_mm512_add_epi32(_mm512_abs_epi32(y), p->half), p->right);
  return _mm512_mask_sub_epi32(mag, _mm512_movepi32_mask(y), _mm512_setzero_si512(), mag);
}

/* The one-step 64-bit requantization of kernels/s8_gemm.h (rq->wide) of 16
 * consecutive columns. */
typedef struct s8_rqw_zmm {
  __m512i mult, mult_odd, round_even, round_odd, shift_even, shift_odd;
} s8_rqw_zmm;

/* Columns [n, n + 16); n a multiple of 16. */
static inline s8_rqw_zmm s8_rqw_load_zmm(const kiln_s8_requant *rq, int32_t n) {
  const int64_t *group = rq->wide + (size_t)n * 2;
  s8_rqw_zmm p;
  p.mult = _mm512_loadu_si512(rq->mult + n);
  p.mult_odd = _mm512_loadu_si512(rq->mult + n + 1);
  p.round_even = _mm512_loadu_si512(group);
  p.round_odd = _mm512_loadu_si512(group + 8);
  p.shift_even = _mm512_loadu_si512(group + 16);
  p.shift_odd = _mm512_loadu_si512(group + 24);
  return p;
}

/* MultiplyByQuantizedMultiplier(x, mult, shift) + out_zp per lane. The odd
 * lanes' sums are shifted by right - 1 so that the result lands in the high
 * half of each 64-bit lane (nested floors compose), where a blend picks it. */
static inline __m512i s8_mbqmw_zmm(__m512i x, const s8_rqw_zmm *p) {
  const __m512i tie = _mm512_set1_epi64((int64_t)1 << 31);
  const __m512i pe = _mm512_mul_epi32(x, p->mult);
  const __m512i po = _mm512_mul_epi32(_mm512_srli_epi64(x, 32), p->mult_odd);
  __m512i even = _mm512_add_epi64(pe, p->round_even);
  __m512i odd = _mm512_add_epi64(po, p->round_odd);
  even = _mm512_mask_sub_epi64(even, _mm512_movepi64_mask(pe), even, tie);
  odd = _mm512_mask_sub_epi64(odd, _mm512_movepi64_mask(po), odd, tie);
  even = _mm512_srav_epi64(even, p->shift_even);
  odd = _mm512_srav_epi64(odd, p->shift_odd);
  return _mm512_mask_blend_epi32(0xAAAA, even, odd);
}

/* v saturated to int8 and clamped to [lo, hi]. */
static inline __m128i s8_clamp_zmm(__m512i v, __m128i lo, __m128i hi) {
  return _mm_min_epi8(_mm_max_epi8(_mm512_cvtsepi32_epi8(v), lo), hi);
}

/* v + zero point (wrapping), saturated to int8 and clamped to [lo, hi]. */
static inline __m128i s8_out_zmm(__m512i v, __m512i zp, __m128i lo, __m128i hi) {
  return s8_clamp_zmm(_mm512_add_epi32(v, zp), lo, hi);
}

#endif
