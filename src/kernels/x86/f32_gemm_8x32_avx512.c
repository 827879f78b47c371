/*
 * f32 GEMM micro-kernel, up to 8 rows x 32 columns per step, AVX-512F
 * (contract and packed layout in kernels/f32_gemm.h; nr 32, lanes 8).
 *
 * a  [ks][mr] row pointers, each to kc floats
 * w  packed panels: [width float bias][k][width weights], width 32 (8, 16
 *    or 24 for a narrow last panel), weights float (kiln_f32_gemm_8x32_avx512)
 *    or half (..._f16, converted with vcvtph2ps); best 64-byte aligned, any
 *    alignment works
 * c  [mr rows, c_stride apart] x [nc]
 *
 * Each row keeps two zmm accumulators per panel (16 in all at mr 8),
 * started from the bias; for each of the ks runs the kernel takes the rows'
 * pointers, then every depth step broadcasts one A value per row and
 * multiply-adds it with the panel's two B vectors. A last panel of 8 or 24
 * columns uses a ymm for its last 8 rather than a half-empty zmm. The
 * epilogue clamps and stores with a mask on the last panel's columns.
 */
#include <immintrin.h>

#include "kernels/f32_gemm.h"

#define MR 8
#define NR 32

/* 16 or 8 weights at w, float or half. */
static inline __attribute__((always_inline)) __m512 load16(const char *w, const int half) {
  return half ? _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)w))
              : _mm512_loadu_ps((const float *)(const void *)w);
}

static inline __attribute__((always_inline)) __m256 load8(const char *w, const int half) {
  return half ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)w))
              : _mm256_loadu_ps((const float *)(const void *)w);
}

/* The first `cols` of 16 lanes (none when cols <= 0). */
static inline __attribute__((always_inline)) __mmask16 lane_mask(int32_t cols) {
  if (cols <= 0) return 0;
  return cols >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << cols) - 1u);
}

/* Per-row code for rows 0..MR-1; rows past `rows` (a constant after
 * inlining) compile to nothing. Named variables rather than arrays keep
 * every compiler's register allocation honest. Accumulators: a and b are
 * the zmm vectors of columns 0-15 and 16-31, h the ymm of a last 8. */
#define EACH_ROW(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7)

#define ROW_START(i)                             \
  __m512 acc##i##a = bias_a, acc##i##b = bias_b; \
  __m256 acc##i##h = bias_h;                     \
  const float *row##i = a[0];

#define ROW_POINTER(i) \
  if (rows > i) row##i = a[i];

#define ROW_FMA(i)                                                                  \
  if (rows > i) {                                                                   \
    const __m512 x = _mm512_set1_ps(row##i[d]);                                     \
    if (nz > 0) acc##i##a = _mm512_fmadd_ps(x, b_a, acc##i##a);                     \
    if (nz > 1) acc##i##b = _mm512_fmadd_ps(x, b_b, acc##i##b);                     \
    if (nh) acc##i##h = _mm256_fmadd_ps(_mm512_castps512_ps256(x), b_h, acc##i##h); \
  }

/* max/min return their second operand when one is NaN: NaN passes the
 * clamp, as in the reference's comparisons. */
#define ROW_STORE(i)                                                                      \
  if (rows > i) {                                                                         \
    float *out = c + (size_t)(i) * c_stride;                                              \
    if (nz > 0)                                                                           \
      _mm512_mask_storeu_ps(out, m_a, _mm512_min_ps(vmax, _mm512_max_ps(vmin, acc##i##a))); \
    if (nz > 1)                                                                           \
      _mm512_mask_storeu_ps(out + 16, m_b,                                                \
                            _mm512_min_ps(vmax, _mm512_max_ps(vmin, acc##i##b)));         \
    if (nh)                                                                               \
      _mm256_mask_storeu_ps(out + 16 * nz, m_h,                                           \
                            _mm256_min_ps(hmax, _mm256_max_ps(hmin, acc##i##h)));         \
  }

/* One panel for `rows` rows, nz zmm vectors (16 columns each) and nh (0 or
 * 1) ymm vectors of 8 columns after them, weights of `half` or float; all
 * four are constants after inlining. cols valid columns
 * (<= 16 * nz + 8 * nh). */
static inline __attribute__((always_inline)) void panel(const int rows, const int nz, const int nh,
                                                        const int half, int32_t cols, int32_t kc,
                                                        int32_t ks, const float *const *a,
                                                        const char *w, float *c, size_t c_stride,
                                                        float min, float max) {
  const __m512 vmin = _mm512_set1_ps(min), vmax = _mm512_set1_ps(max);
  const __m256 hmin = _mm256_set1_ps(min), hmax = _mm256_set1_ps(max);
  const size_t width = (size_t)(16 * nz + 8 * nh), size = half ? 2 : 4;
  const __m512 bias_a = nz > 0 ? load16(w, 0) : _mm512_setzero_ps();
  const __m512 bias_b = nz > 1 ? load16(w + 64, 0) : bias_a;
  const __m256 bias_h = nh ? load8(w + 64 * nz, 0) : _mm256_setzero_ps();
  EACH_ROW(ROW_START)
  w += width * sizeof(float);
  for (int32_t t = 0; t < ks; t++, a += rows) {
    EACH_ROW(ROW_POINTER)
    for (int32_t d = 0; d < kc; d++) {
      const __m512 b_a = nz > 0 ? load16(w, half) : bias_a;
      const __m512 b_b = nz > 1 ? load16(w + 16 * size, half) : bias_b;
      const __m256 b_h = nh ? load8(w + 16 * size * nz, half) : bias_h;
      w += width * size;
      EACH_ROW(ROW_FMA)
    }
  }
  const __mmask16 m_a = lane_mask(cols), m_b = lane_mask(cols - 16);
  const __mmask8 m_h = (__mmask8)lane_mask(cols - 16 * nz);
  EACH_ROW(ROW_STORE)
}

/* All panels of nc columns for `rows` rows: full panels of 32, then a last
 * one of 8, 16, 24 or 32. */
static inline __attribute__((always_inline)) void panels(const int rows, const int half, int32_t nc,
                                                         int32_t kc, int32_t ks,
                                                         const float *const *a, const char *w,
                                                         float *c, size_t c_stride, float min,
                                                         float max) {
  const size_t panel_bytes = kiln_f32_gemm_panel_bytes(NR, kc * ks, half);
  for (; nc >= NR; nc -= NR) {
    panel(rows, 2, 0, half, NR, kc, ks, a, w, c, c_stride, min, max);
    w += panel_bytes;
    c += NR;
  }
  if (nc > 24)
    panel(rows, 2, 0, half, nc, kc, ks, a, w, c, c_stride, min, max);
  else if (nc > 16)
    panel(rows, 1, 1, half, nc, kc, ks, a, w, c, c_stride, min, max);
  else if (nc > 8)
    panel(rows, 1, 0, half, nc, kc, ks, a, w, c, c_stride, min, max);
  else if (nc > 0)
    panel(rows, 0, 1, half, nc, kc, ks, a, w, c, c_stride, min, max);
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
    ROWS_CASE(7)
    ROWS_CASE(8)
    default:
      break;
  }
}

void kiln_f32_gemm_8x32_avx512(int32_t mr, int32_t nc, int32_t kc, int32_t ks,
                               const float *const *a, const void *w, float *c, size_t c_stride,
                               float min, float max) {
  gemm(0, mr, nc, kc, ks, a, w, c, c_stride, min, max);
}

void kiln_f32_gemm_8x32_avx512_f16(int32_t mr, int32_t nc, int32_t kc, int32_t ks,
                                   const float *const *a, const void *w, float *c, size_t c_stride,
                                   float min, float max) {
  gemm(1, mr, nc, kc, ks, a, w, c, c_stride, min, max);
}
