/* int8 matrix-vector products with AVX-512 VNNI (see kernels/s8_fc.h):
 * vpdpbusd multiplies the unsigned input bytes (X + 128) by signed weights;
 * four weight rows share each 64-byte load of the input. */
#include <immintrin.h>
#include <string.h>

#include "kernels/s8_fc.h"

void kiln_s8_fc_convert_u8_avx512vnni(const int8_t *x, int32_t k, int32_t kp, uint8_t *a) {
  int32_t i = 0;
  const __m512i flip = _mm512_set1_epi8((char)0x80);
  for (; i + 64 <= k; i += 64)
    _mm512_storeu_si512((void *)(a + i), _mm512_xor_si512(_mm512_loadu_si512((const void *)(x + i)), flip));
  for (; i < k; i++) a[i] = (uint8_t)(x[i] ^ 0x80);
  memset(a + k, 0, (size_t)(kp - k));
}

static int32_t hsum(__m512i v) { return _mm512_reduce_add_epi32(v); }

void kiln_s8_fc_dot_avx512vnni(const int8_t *w, const uint8_t *a, int32_t kp, int32_t rows, int32_t *acc) {
  int32_t r = 0;
  for (; r + 4 <= rows; r += 4) {
    const int8_t *w0 = w + (size_t)r * (size_t)kp;
    __m512i s0 = _mm512_setzero_si512(), s1 = s0, s2 = s0, s3 = s0;
    for (int32_t k = 0; k < kp; k += 64) {
      const __m512i x = _mm512_loadu_si512((const void *)(a + k));
      s0 = _mm512_dpbusd_epi32(s0, x, _mm512_loadu_si512((const void *)(w0 + k)));
      s1 = _mm512_dpbusd_epi32(s1, x, _mm512_loadu_si512((const void *)(w0 + kp + k)));
      s2 = _mm512_dpbusd_epi32(s2, x, _mm512_loadu_si512((const void *)(w0 + 2 * (size_t)kp + k)));
      s3 = _mm512_dpbusd_epi32(s3, x, _mm512_loadu_si512((const void *)(w0 + 3 * (size_t)kp + k)));
    }
    acc[r] = hsum(s0);
    acc[r + 1] = hsum(s1);
    acc[r + 2] = hsum(s2);
    acc[r + 3] = hsum(s3);
  }
  for (; r < rows; r++) {
    const int8_t *w0 = w + (size_t)r * (size_t)kp;
    __m512i s0 = _mm512_setzero_si512();
    for (int32_t k = 0; k < kp; k += 64)
      s0 = _mm512_dpbusd_epi32(s0, _mm512_loadu_si512((const void *)(a + k)),
                               _mm512_loadu_si512((const void *)(w0 + k)));
    acc[r] = hsum(s0);
  }
}
