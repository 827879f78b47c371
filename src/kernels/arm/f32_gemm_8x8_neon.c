/*
 * f32 GEMM micro-kernel, up to 8 rows x 8 columns per step, ARM64 NEON FMLA
 * (contract and packed layout in kernels/f32_gemm.h; nr 8, lanes 4).
 *
 * a  [ks][mr] row pointers, each to kc floats
 * w  packed panels: [width float bias][k][width weights], width 8 (4 for a
 *    narrow last panel), weights float (kiln_f32_gemm_8x8_neon) or half
 *    (..._f16, widened with FCVTL: exact); any alignment
 * c  [mr rows, c_stride apart] x [nc]
 *
 * Each row keeps two float32x4 accumulators per panel (16 in all at mr 8),
 * started from the bias. Depth goes four at a time: one 128-bit load per row
 * gives its next four A values, and each depth's B row (two vectors) meets
 * them through FMLA by lane (8 A + 16 accumulators + 2 B of the 32
 * registers); the last kc % 4 depths go one at a time. Every step is one
 * fused multiply-add in increasing depth order, as the contract asks. The
 * epilogue clamps with FMAX / FMIN (NaN passes, as in the reference) and
 * stores the last panel's columns through a small buffer.
 */
#include <arm_neon.h>
#include <string.h>

#include "kernels/f32_gemm.h"

#define MR 8
#define NR 8
#define F32_INLINE static inline __attribute__((always_inline))

/* 4 weights at w, float or half. */
F32_INLINE float32x4_t load4(const char *w, const int half) {
  if (half) {
    uint16_t h[4];
    memcpy(h, w, sizeof h);
    return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(h)));
  }
  return vld1q_f32((const float *)(const void *)w);
}

F32_INLINE void store(float *out, float32x4_t v, int32_t cols, float32x4_t vmin, float32x4_t vmax) {
  v = vminq_f32(vmaxq_f32(v, vmin), vmax);
  if (cols >= 4) {
    vst1q_f32(out, v);
  } else if (cols > 0) {
    float buf[4];
    vst1q_f32(buf, v);
    memcpy(out, buf, (size_t)cols * sizeof *buf);
  }
}

/* Per-row code for rows 0..MR-1; rows past `rows` (a constant after
 * inlining) compile to nothing. Named variables rather than arrays keep
 * every compiler's register allocation honest. */
#define EACH_ROW(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7)

#define ROW_START(i)                                \
  float32x4_t acc##i##a = bias0, acc##i##b = bias1; \
  const float *row##i = a[0];                       \
  float32x4_t x##i = vdupq_n_f32(0.0f);

#define ROW_POINTER(i) \
  if (rows > i) row##i = a[i];

#define ROW_LOAD4(i) \
  if (rows > i) x##i = vld1q_f32(row##i + d);

#define ROW_FMA_LANE(i, l)                                           \
  if (rows > i) {                                                    \
    acc##i##a = vfmaq_laneq_f32(acc##i##a, b0, x##i, l);             \
    if (nv > 1) acc##i##b = vfmaq_laneq_f32(acc##i##b, b1, x##i, l); \
  }
#define ROW_FMA_LANE0(i) ROW_FMA_LANE(i, 0)
#define ROW_FMA_LANE1(i) ROW_FMA_LANE(i, 1)
#define ROW_FMA_LANE2(i) ROW_FMA_LANE(i, 2)
#define ROW_FMA_LANE3(i) ROW_FMA_LANE(i, 3)

#define ROW_FMA_ONE(i)                                             \
  if (rows > i) {                                                  \
    acc##i##a = vfmaq_n_f32(acc##i##a, b0, row##i[d]);             \
    if (nv > 1) acc##i##b = vfmaq_n_f32(acc##i##b, b1, row##i[d]); \
  }

#define ROW_STORE(i)                                             \
  if (rows > i) {                                                \
    float *out = c + c_stride * (size_t)(i);                       \
    store(out, acc##i##a, cols, vmin, vmax);                     \
    if (nv > 1) store(out + 4, acc##i##b, cols - 4, vmin, vmax); \
  }

/* The next depth's B row into b0 (and b1), w moved past it. */
#define LOAD_B()                                                  \
  const float32x4_t b0 = load4(w, half);                          \
  const float32x4_t b1 = nv > 1 ? load4(w + 4 * size, half) : b0; \
  w += width * size;

/* One panel for `rows` rows and nv vectors of 4 columns, weights of `half`
 * or float (all three constants after inlining); cols valid columns
 * (<= nv * 4). */
F32_INLINE void panel(const int rows, const int nv, const int half, int32_t cols, int32_t kc,
                      int32_t ks, const float *const *a, const char *w, float *c, size_t c_stride,
                      float32x4_t vmin, float32x4_t vmax) {
  const size_t width = (size_t)nv * 4, size = half ? 2 : 4;
  const float32x4_t bias0 = load4(w, 0);
  const float32x4_t bias1 = nv > 1 ? load4(w + 16, 0) : bias0;
  EACH_ROW(ROW_START)
  w += width * sizeof(float);
  for (int32_t t = 0; t < ks; t++, a += rows) {
    EACH_ROW(ROW_POINTER)
    int32_t d = 0;
    for (; d + 4 <= kc; d += 4) {
      EACH_ROW(ROW_LOAD4){LOAD_B() EACH_ROW(ROW_FMA_LANE0)} {LOAD_B() EACH_ROW(ROW_FMA_LANE1)} {
          LOAD_B() EACH_ROW(ROW_FMA_LANE2)} {
        LOAD_B()
        EACH_ROW(ROW_FMA_LANE3)
      }
    }
    for (; d < kc; d++) {
      LOAD_B()
      EACH_ROW(ROW_FMA_ONE)
    }
  }
  EACH_ROW(ROW_STORE)
}

/* All panels of nc columns for `rows` rows. */
F32_INLINE void panels(const int rows, const int half, int32_t nc, int32_t kc, int32_t ks,
                       const float *const *a, const char *w, float *c, size_t c_stride, float min,
                       float max) {
  const float32x4_t vmin = vdupq_n_f32(min), vmax = vdupq_n_f32(max);
  const size_t panel_bytes = kiln_f32_gemm_panel_bytes(NR, kc * ks, half);
  for (; nc >= NR; nc -= NR) {
    panel(rows, 2, half, NR, kc, ks, a, w, c, c_stride, vmin, vmax);
    w += panel_bytes;
    c += NR;
  }
  if (nc > 4)
    panel(rows, 2, half, nc, kc, ks, a, w, c, c_stride, vmin, vmax);
  else if (nc > 0)
    panel(rows, 1, half, nc, kc, ks, a, w, c, c_stride, vmin, vmax);
}

#define ROWS_CASE(n)                                          \
  case n:                                                     \
    panels(n, half, nc, kc, ks, a, w, c, c_stride, min, max); \
    break;

/* The kernel for weights of `half` (a constant after inlining). */
F32_INLINE void gemm(const int half, int32_t mr, int32_t nc, int32_t kc, int32_t ks,
                     const float *const *a, const char *w, float *c, size_t c_stride, float min,
                     float max) {
  switch (mr) {
    ROWS_CASE(1)
    ROWS_CASE(2)
    ROWS_CASE(3)
    ROWS_CASE(4)
    ROWS_CASE(5)
    ROWS_CASE(6)
    ROWS_CASE(7)
    ROWS_CASE(8)
    default:
      break;
  }
}

void kiln_f32_gemm_8x8_neon(int32_t mr, int32_t nc, int32_t kc, int32_t ks, const float *const *a,
                            const void *w, float *c, size_t c_stride, float min, float max) {
  gemm(0, mr, nc, kc, ks, a, w, c, c_stride, min, max);
}

void kiln_f32_gemm_8x8_neon_f16(int32_t mr, int32_t nc, int32_t kc, int32_t ks,
                                const float *const *a, const void *w, float *c, size_t c_stride,
                                float min, float max) {
  gemm(1, mr, nc, kc, ks, a, w, c, c_stride, min, max);
}
