/*
 * int8 matrix-vector products for plain ARM64 NEON (see kernels/s8_fc.h;
 * kgroup 16, a_offset 0): SMULL / SMULL2 multiply 16 signed input bytes by
 * 16 signed weights into exact int16 products (|product| <= 2^14) and
 * SADALP adds them in pairs into four int32 lanes. Eight weight rows share
 * each 16-byte load of the input; a row's lanes are added at the end.
 */
#include <arm_neon.h>
#include <string.h>

#include "kernels/s8_fc.h"

void kiln_s8_fc_convert_s8_neon(const int8_t *x, int32_t k, int32_t kp, uint8_t *a) {
  memcpy(a, x, (size_t)k);
  memset(a + k, 0, (size_t)(kp - k));
}

#define ROWS 8

/* s + the 16 products of w and x, in pairs. */
static inline int32x4_t mul_add16(int32x4_t s, int8x16_t w, int8x16_t x) {
  s = vpadalq_s16(s, vmull_s8(vget_low_s8(w), vget_low_s8(x)));
  return vpadalq_s16(s, vmull_high_s8(w, x));
}

void kiln_s8_fc_dot_neon(const int8_t *w, const uint8_t *a, int32_t kp, int32_t rows,
                         int32_t *acc) {
  const int8_t *x = (const int8_t *)a;
  int32_t r = 0;
  for (; r + ROWS <= rows; r += ROWS) {
    const int8_t *w0 = w + (size_t)r * (size_t)kp;
    int32x4_t s[ROWS];
#pragma GCC unroll 8
    for (int i = 0; i < ROWS; i++) s[i] = vdupq_n_s32(0);
    for (int32_t k = 0; k < kp; k += 16) {
      const int8x16_t xv = vld1q_s8(x + k);
#pragma GCC unroll 8
      for (int i = 0; i < ROWS; i++)
        s[i] = mul_add16(s[i], vld1q_s8(w0 + (size_t)i * (size_t)kp + (size_t)k), xv);
    }
#pragma GCC unroll 8
    for (int i = 0; i < ROWS; i++) acc[r + i] = vaddvq_s32(s[i]);
  }
  for (; r < rows; r++) {
    const int8_t *w0 = w + (size_t)r * (size_t)kp;
    int32x4_t s = vdupq_n_s32(0);
    for (int32_t k = 0; k < kp; k += 16) s = mul_add16(s, vld1q_s8(w0 + k), vld1q_s8(x + k));
    acc[r] = vaddvq_s32(s);
  }
}
