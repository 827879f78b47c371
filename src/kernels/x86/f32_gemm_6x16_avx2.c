/*
 * f32 GEMM micro-kernel, up to 6 rows x 16 columns per step, AVX2 + FMA
 * (contract and packed layout in kernels/f32_gemm.h; nr 16, lanes 8).
 *
 * a  [ks][mr] row pointers, each to kc floats
 * w  packed panels: [width float bias][k][width weights], width 16 (8 for
 *    a narrow last panel), weights float (kiln_f32_gemm_6x16_avx2) or half
 *    (..._f16, converted with vcvtph2ps); best 32-byte aligned, any
 *    alignment works
 * c  [mr rows, c_stride apart] x [nc]
 *
 * Each row keeps two ymm accumulators per panel (12 in all at mr 6, with
 * the two B vectors and one broadcast: 15 of the 16 registers), started
 * from the bias. The epilogue clamps and stores the last panel's columns
 * with a lane mask.
 */
#include <immintrin.h>

#include "kernels/f32_gemm.h"

#define MR 6
#define NR 16

/* 8 weights at w, float or half. */
static inline __attribute__((always_inline)) __m256 load8(const char *w, const int half) {
  return half ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)w))
              : _mm256_loadu_ps((const float *)(const void *)w);
}

/* All-ones in the first `cols` of 8 lanes (none when cols <= 0). */
static inline __attribute__((always_inline)) __m256i lane_mask(int32_t cols) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(cols), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

static inline __attribute__((always_inline)) void store(float *out, __m256 v, int32_t cols,
                                                        __m256 vmin, __m256 vmax) {
  /* max/min return their second operand when one is NaN: NaN passes, as
   * in the reference's comparisons. */
  v = _mm256_min_ps(vmax, _mm256_max_ps(vmin, v));
  if (cols >= 8)
    _mm256_storeu_ps(out, v);
  else if (cols > 0)
    _mm256_maskstore_ps(out, lane_mask(cols), v);
}

/* Per-row code for rows 0..MR-1; rows past `rows` (a constant after
 * inlining) compile to nothing. Named variables rather than arrays keep
 * every compiler's register allocation honest. */
#define EACH_ROW(X) X(0) X(1) X(2) X(3) X(4) X(5)

#define ROW_START(i)                           \
  __m256 acc##i##a = bias0, acc##i##b = bias1; \
  const float *row##i = a[0];

#define ROW_POINTER(i) \
  if (rows > i) row##i = a[i];

#define ROW_FMA(i)                                             \
  if (rows > i) {                                              \
    const __m256 x = _mm256_broadcast_ss(&row##i[d]);          \
    acc##i##a = _mm256_fmadd_ps(x, b0, acc##i##a);             \
    if (nv > 1) acc##i##b = _mm256_fmadd_ps(x, b1, acc##i##b); \
  }

#define ROW_STORE(i)                                             \
  if (rows > i) {                                                \
    float *out = c + (size_t)(i) * c_stride;                       \
    store(out, acc##i##a, cols, vmin, vmax);                     \
    if (nv > 1) store(out + 8, acc##i##b, cols - 8, vmin, vmax); \
  }

/* One panel for `rows` rows and nv vectors of 8 columns, weights of
 * `half` or float (all three constants after inlining); cols valid columns
 * (<= nv * 8). */
static inline __attribute__((always_inline)) void panel(const int rows, const int nv,
                                                        const int half, int32_t cols, int32_t kc,
                                                        int32_t ks, const float *const *a,
                                                        const char *w, float *c, size_t c_stride,
                                                        __m256 vmin, __m256 vmax) {
  const size_t width = (size_t)nv * 8, size = half ? 2 : 4;
  const __m256 bias0 = load8(w, 0);
  const __m256 bias1 = nv > 1 ? load8(w + 32, 0) : bias0;
  EACH_ROW(ROW_START)
  w += width * sizeof(float);
  for (int32_t t = 0; t < ks; t++, a += rows) {
    EACH_ROW(ROW_POINTER)
    for (int32_t d = 0; d < kc; d++) {
      const __m256 b0 = load8(w, half);
      const __m256 b1 = nv > 1 ? load8(w + 8 * size, half) : b0;
      w += width * size;
      EACH_ROW(ROW_FMA)
    }
  }
  EACH_ROW(ROW_STORE)
}

/* All panels of nc columns for `rows` rows. */
static inline __attribute__((always_inline)) void panels(const int rows, const int half, int32_t nc,
                                                         int32_t kc, int32_t ks,
                                                         const float *const *a, const char *w,
                                                         float *c, size_t c_stride, float min,
                                                         float max) {
  const __m256 vmin = _mm256_set1_ps(min), vmax = _mm256_set1_ps(max);
  const size_t panel_bytes = kiln_f32_gemm_panel_bytes(NR, kc * ks, half);
  for (; nc >= NR; nc -= NR) {
    panel(rows, 2, half, NR, kc, ks, a, w, c, c_stride, vmin, vmax);
    w += panel_bytes;
    c += NR;
  }
  if (nc > 8)
    panel(rows, 2, half, nc, kc, ks, a, w, c, c_stride, vmin, vmax);
  else if (nc > 0)
    panel(rows, 1, half, nc, kc, ks, a, w, c, c_stride, vmin, vmax);
}

#define ROWS_CASE(n)                                          \
  case n:                                                     \
    panels(n, half, nc, kc, ks, a, w, c, c_stride, min, max); \
    break;

/* The kernel for weights of `half` (a constant after inlining). */
static inline __attribute__((always_inline)) void gemm(const int half, int32_t mr, int32_t nc,
                                                       int32_t kc, int32_t ks,
                                                       const float *const *a, const char *w,
                                                       float *c, size_t c_stride, float min,
                                                       float max) {
  switch (mr) {
    ROWS_CASE(1)
    ROWS_CASE(2)
    ROWS_CASE(3)
    ROWS_CASE(4)
    ROWS_CASE(5)
    ROWS_CASE(6)
    default:
      break;
  }
}

void kiln_f32_gemm_6x16_avx2(int32_t mr, int32_t nc, int32_t kc, int32_t ks, const float *const *a,
                             const void *w, float *c, size_t c_stride, float min, float max) {
  gemm(0, mr, nc, kc, ks, a, w, c, c_stride, min, max);
}

void kiln_f32_gemm_6x16_avx2_f16(int32_t mr, int32_t nc, int32_t kc, int32_t ks,
                                 const float *const *a, const void *w, float *c, size_t c_stride,
                                 float min, float max) {
  gemm(1, mr, nc, kc, ks, a, w, c, c_stride, min, max);
}
