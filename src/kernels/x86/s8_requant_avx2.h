/*
 * kernels/x86/s8_requant_avx2.h: the int8 GEMM's requantization on 8 int32
 * lanes (AVX2), bit-exact with kiln_mul_by_quantized_multiplier
 * (kernels/quant_math.h) for multipliers in [0, 2^31), and the store of a
 * row of results; for files compiled with AVX2 flags only. The arithmetic is
 * that of kernels/x86/s8_requant_avx512.h (see there why it is exact), with
 * vpsignd restoring the sign.
 */
#ifndef KILN_KERNELS_X86_S8_REQUANT_AVX2_H
#define KILN_KERNELS_X86_S8_REQUANT_AVX2_H

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "kernels/s8_gemm.h"

/* Requantization parameters of 8 consecutive columns. */
typedef struct s8_rq_ymm {
  __m256i mult, mult_odd, left, right, half;
} s8_rq_ymm;

/* Columns [n, n + 8); n a multiple of 8. */
static inline s8_rq_ymm s8_rq_load_ymm(const kiln_s8_requant *rq, int32_t n) {
  s8_rq_ymm p;
  p.mult = _mm256_loadu_si256((const __m256i *)(rq->mult + n));
  p.mult_odd = _mm256_loadu_si256((const __m256i *)(rq->mult + n + 1));
  p.left = _mm256_loadu_si256((const __m256i *)(rq->left + n));
  p.right = _mm256_loadu_si256((const __m256i *)(rq->right + n));
  p.half = _mm256_loadu_si256((const __m256i *)(rq->half + n));
  return p;
}

/* MultiplyByQuantizedMultiplier(x, mult, shift) per lane. */
static inline __m256i s8_mbqm_ymm(__m256i x, const s8_rq_ymm *p) {
  const __m256i nudge = _mm256_set1_epi64x((int64_t)1 << 30);
  x = _mm256_sllv_epi32(x, p->left);
  __m256i even = _mm256_mul_epi32(x, p->mult);
  __m256i odd = _mm256_mul_epi32(_mm256_srli_epi64(x, 32), p->mult_odd);
  even = _mm256_srli_epi64(_mm256_add_epi64(even, nudge), 31); /* y in the low halves */
  odd = _mm256_add_epi64(odd, nudge);
  odd = _mm256_add_epi64(odd, odd); /* y in the high halves */
  const __m256i y = _mm256_blend_epi32(even, odd, 0xAA);
  const __m256i mag =
      _mm256_srlv_epi32(_mm256_add_epi32(_mm256_abs_epi32(y), p->half), p->right);
  return _mm256_sign_epi32(mag, y); /* mag is 0 where y is */
}

/* Two vectors of results + zero point (wrapping), saturated to int8 in
 * order (v0's 8 then v1's 8) and clamped to [lo, hi]. */
static inline __m128i s8_out2_ymm(__m256i v0, __m256i v1, __m256i zp, __m128i lo, __m128i hi) {
  __m256i w = _mm256_packs_epi32(_mm256_add_epi32(v0, zp), _mm256_add_epi32(v1, zp));
  w = _mm256_permute4x64_epi64(w, 0xD8);
  const __m128i b = _mm_packs_epi16(_mm256_castsi256_si128(w), _mm256_extracti128_si256(w, 1));
  return _mm_min_epi8(_mm_max_epi8(b, lo), hi);
}

/* Stores the first cols (1..16) bytes of v at dst. */
static inline void s8_store_cols(int8_t *dst, __m128i v, int32_t cols) {
  if (cols == 16) {
    _mm_storeu_si128((__m128i *)dst, v);
  } else if (cols == 8) {
    _mm_storel_epi64((__m128i *)dst, v);
  } else {
    int8_t tmp[16];
    _mm_storeu_si128((__m128i *)tmp, v);
    memcpy(dst, tmp, (size_t)cols);
  }
}

#endif
