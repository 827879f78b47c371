/*
 * kernels/x86/dw_requant_avx2.h: TFLite's fixed-point requantization on 8
 * int32 lanes (AVX2), bit-exact with kernels/quant_math.h; the arithmetic is
 * explained in dw_requant_avx512.h. Only for files compiled with the AVX2
 * flags (*_avx2.c).
 */
#ifndef KILN_KERNELS_X86_DW_REQUANT_AVX2_H
#define KILN_KERNELS_X86_DW_REQUANT_AVX2_H

#include <immintrin.h>
#include <stdint.h>

static inline __m256i kiln_srdhm_avx2(__m256i a, __m256i b) {
  const __m256i nudge = _mm256_set1_epi64x((int64_t)1 << 30);
  const __m256i even = _mm256_srli_epi64(_mm256_add_epi64(_mm256_mul_epi32(a, b), nudge), 31);
  const __m256i odd = _mm256_slli_epi64(
      _mm256_add_epi64(_mm256_mul_epi32(_mm256_srli_epi64(a, 32), _mm256_srli_epi64(b, 32)), nudge),
      1);
  const __m256i r = _mm256_blend_epi32(even, odd, 0xAA);
  /* INT32_MIN (only from INT32_MIN * INT32_MIN) becomes INT32_MAX: x ^ -1. */
  return _mm256_xor_si256(r, _mm256_cmpeq_epi32(r, _mm256_set1_epi32(INT32_MIN)));
}

/* x / 2^e rounded half away from zero; mask = 2^e - 1, half = mask >> 1. */
static inline __m256i kiln_rdbp_avx2(__m256i x, __m256i e, __m256i mask, __m256i half) {
  const __m256i threshold = _mm256_add_epi32(half, _mm256_srli_epi32(x, 31));
  const __m256i up = _mm256_cmpgt_epi32(_mm256_and_si256(x, mask), threshold);
  return _mm256_sub_epi32(_mm256_srav_epi32(x, e), up);
}

static inline __m256i kiln_mbqm_avx2(__m256i x, __m256i mult, __m256i left, __m256i e, __m256i mask,
                                     __m256i half) {
  return kiln_rdbp_avx2(kiln_srdhm_avx2(_mm256_sllv_epi32(x, left), mult), e, mask, half);
}

#endif
