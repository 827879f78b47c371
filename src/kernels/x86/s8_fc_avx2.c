/* int8 matrix-vector products with AVX2 (see kernels/s8_fc.h): bytes are
 * sign-extended to int16 and multiplied pairwise with vpmaddwd (vpmaddubsw
 * could saturate); four weight rows share each widened input slice. */
#include <immintrin.h>
#include <string.h>

#include "kernels/s8_fc.h"

void kiln_s8_fc_convert_s8_avx2(const int8_t *x, int32_t k, int32_t kp, uint8_t *a) {
  memcpy(a, x, (size_t)k);
  memset(a + k, 0, (size_t)(kp - k));
}

static int32_t hsum(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
  return _mm_cvtsi128_si32(s);
}

static __m256i widen(const void *p) { return _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)p)); }

void kiln_s8_fc_dot_avx2(const int8_t *w, const uint8_t *a, int32_t kp, int32_t rows, int32_t *acc) {
  int32_t r = 0;
  for (; r + 4 <= rows; r += 4) {
    const int8_t *w0 = w + (size_t)r * (size_t)kp;
    __m256i s0 = _mm256_setzero_si256(), s1 = s0, s2 = s0, s3 = s0;
    for (int32_t k = 0; k < kp; k += 16) {
      const __m256i x = widen(a + k);
      s0 = _mm256_add_epi32(s0, _mm256_madd_epi16(x, widen(w0 + k)));
      s1 = _mm256_add_epi32(s1, _mm256_madd_epi16(x, widen(w0 + kp + k)));
      s2 = _mm256_add_epi32(s2, _mm256_madd_epi16(x, widen(w0 + 2 * (size_t)kp + k)));
      s3 = _mm256_add_epi32(s3, _mm256_madd_epi16(x, widen(w0 + 3 * (size_t)kp + k)));
    }
    acc[r] = hsum(s0);
    acc[r + 1] = hsum(s1);
    acc[r + 2] = hsum(s2);
    acc[r + 3] = hsum(s3);
  }
  for (; r < rows; r++) {
    const int8_t *w0 = w + (size_t)r * (size_t)kp;
    __m256i s0 = _mm256_setzero_si256();
    for (int32_t k = 0; k < kp; k += 16) s0 = _mm256_add_epi32(s0, _mm256_madd_epi16(widen(a + k), widen(w0 + k)));
    acc[r] = hsum(s0);
  }
}
