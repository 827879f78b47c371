/*
 * kernels/x86/dw_requant_avx512.h: TFLite's fixed-point requantization on
 * 16 int32 lanes (AVX-512F/BW), bit-exact with kernels/quant_math.h. Only
 * for files compiled with the AVX-512 flags (*_avx512.c).
 *
 * SaturatingRoundingDoublingHighMul: the rounded high half of 2 * a * b is
 * (a * b + 2^30) >> 31 for either sign of the product (the reference's
 * sign-dependent nudge followed by a division truncating toward zero gives
 * the same value), taken from 64-bit lane products (vpmuldq on the even and
 * odd lanes). The one overflow, INT32_MIN * INT32_MIN, is the only product
 * whose result lands on INT32_MIN, which is replaced by INT32_MAX.
 * RoundingDivideByPOT: (x >> e) + (remainder > (mask >> 1) + (x < 0)).
 */
#ifndef KILN_KERNELS_X86_DW_REQUANT_AVX512_H
#define KILN_KERNELS_X86_DW_REQUANT_AVX512_H

#include <immintrin.h>
#include <stdint.h>

static inline __m512i kiln_srdhm_avx512(__m512i a, __m512i b) {
  const __m512i nudge = _mm512_set1_epi64((int64_t)1 << 30);
  const __m512i even = _mm512_srli_epi64(_mm512_add_epi64(_mm512_mul_epi32(a, b), nudge), 31);
  const __m512i odd = _mm512_slli_epi64(
      _mm512_add_epi64(_mm512_mul_epi32(_mm512_srli_epi64(a, 32), _mm512_srli_epi64(b, 32)), nudge),
      1);
  const __m512i r = _mm512_mask_blend_epi32(0xAAAA, even, odd);
  const __mmask16 overflow = _mm512_cmpeq_epi32_mask(r, _mm512_set1_epi32(INT32_MIN));
  return _mm512_mask_mov_epi32(r, overflow, _mm512_set1_epi32(INT32_MAX));
}

/* x / 2^e rounded half away from zero; mask = 2^e - 1, half = mask >> 1. */
static inline __m512i kiln_rdbp_avx512(__m512i x, __m512i e, __m512i mask, __m512i half) {
  const __m512i threshold = _mm512_add_epi32(half, _mm512_srli_epi32(x, 31));
  const __mmask16 up = _mm512_cmpgt_epi32_mask(_mm512_and_si512(x, mask), threshold);
  const __m512i q = _mm512_srav_epi32(x, e);
  return _mm512_mask_sub_epi32(q, up, q, _mm512_set1_epi32(-1));
}

/* MultiplyByQuantizedMultiplier with per-lane multiplier, left shift
 * max(shift, 0) and right shift e = max(-shift, 0) (mask, half as above). */
static inline __m512i kiln_mbqm_avx512(__m512i x, __m512i mult, __m512i left, __m512i e,
                                       __m512i mask, __m512i half) {
  return kiln_rdbp_avx512(kiln_srdhm_avx512(_mm512_sllv_epi32(x, left), mult), e, mask, half);
}

#endif
