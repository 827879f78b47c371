/*
 * int8 matrix-vector products for ARM64 with the dot product extension
 * (see kernels/s8_fc.h; kgroup 16, a_offset 0): SDOT multiplies 16 signed
 * input bytes by 16 signed weights into four int32 lanes, exact. Eight
 * weight rows share each 16-byte load of the input (eight independent
 * accumulators); a row's lanes are added at the end.
 */
#include <arm_neon.h>
#include <string.h>

#include "kernels/s8_fc.h"

void kiln_s8_fc_convert_s8_neondot(const int8_t *x, int32_t k, int32_t kp, uint8_t *a) {
  memcpy(a, x, (size_t)k);
  memset(a + k, 0, (size_t)(kp - k));
}

#define ROWS 8

void kiln_s8_fc_dot_neondot(const int8_t *w, const uint8_t *a, int32_t kp, int32_t rows,
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
        s[i] = vdotq_s32(s[i], vld1q_s8(w0 + (size_t)i * (size_t)kp + (size_t)k), xv);
    }
#pragma GCC unroll 8
    for (int i = 0; i < ROWS; i++) acc[r + i] = vaddvq_s32(s[i]);
  }
  for (; r < rows; r++) {
    const int8_t *w0 = w + (size_t)r * (size_t)kp;
    int32x4_t s = vdupq_n_s32(0);
    for (int32_t k = 0; k < kp; k += 16) s = vdotq_s32(s, vld1q_s8(w0 + k), vld1q_s8(x + k));
    acc[r] = vaddvq_s32(s);
  }
}
