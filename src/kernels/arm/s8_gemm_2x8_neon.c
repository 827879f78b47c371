/*
 * int8 GEMM micro-kernel for plain ARM64 NEON (no dot product extension):
 * tiles of up to 2 rows x 8 columns, signed A (X itself, a_offset 0) by
 * signed weights. Layouts and contract: kernels/s8_gemm.h (lanes 8, kgroup
 * 8, a_elem 1): a weight block is 8 columns x 8 depths, 64 bytes.
 *
 * For each 8 depths, SMULL multiplies a row's 8 A bytes by a column's 8
 * weights into 8 exact int16 products (|product| <= 2^14), and SADALP adds
 * them in pairs into that (row, column)'s int32x4 of partial sums: 16
 * accumulators, 2 A and 4 weight registers. At the end ADDP folds each
 * column's four partial sums into one lane (8 columns: two vectors per
 * row), corr is added and the requantization is kernels/arm/s8_gemm_neon.h's.
 * Every step is exact modulo 2^32, so the result is the reference's.
 */
#include <arm_neon.h>

#include "kernels/arm/s8_gemm_neon.h"
#include "kernels/s8_gemm.h"

#define MR_MAX 2
#define NR 8

void kiln_s8_gemm_pack_a_2x8_neon(const int8_t *x, size_t x_stride, int32_t rows, int32_t k,
                                  int32_t kp, void *a, size_t a_stride) {
  s8_neon_pack_a(x, x_stride, rows, k, kp, a, a_stride);
}

/* Column sums of one row: columns 4h .. 4h + 3 from the partial sums
 * s[4h .. 4h + 3]. */
static inline int32x4_t fold4(int32x4_t s0, int32x4_t s1, int32x4_t s2, int32x4_t s3) {
  return vpaddq_s32(vpaddq_s32(s0, s1), vpaddq_s32(s2, s3));
}

static inline __attribute__((always_inline)) void tile(const int mr, const kiln_s8_gemm *g,
                                                       const int8_t *a, size_t a_stride, int32_t n0,
                                                       int32_t cols, int8_t *c, size_t c_stride) {
  const int8_t *b = (const int8_t *)g->b + (size_t)(n0 / NR) * (size_t)g->kp * NR;
  const int32_t blocks = g->kp / 8;
  int32x4_t acc[MR_MAX][NR];
#pragma GCC unroll 2
  for (int i = 0; i < mr; i++)
#pragma GCC unroll 8
    for (int l = 0; l < NR; l++) acc[i][l] = vdupq_n_s32(0);
  for (int32_t q = 0; q < blocks; q++, b += 8 * NR) {
    int8x8_t x[MR_MAX];
#pragma GCC unroll 2
    for (int i = 0; i < mr; i++) x[i] = vld1_s8(a + (size_t)i * a_stride + (size_t)q * 8);
#pragma GCC unroll 4
    for (int l = 0; l < NR; l += 2) {
      const int8x16_t w = vld1q_s8(b + (size_t)l * 8); /* columns l and l + 1 */
#pragma GCC unroll 2
      for (int i = 0; i < mr; i++) {
        acc[i][l] = vpadalq_s16(acc[i][l], vmull_s8(x[i], vget_low_s8(w)));
        acc[i][l + 1] = vpadalq_s16(acc[i][l + 1], vmull_s8(x[i], vget_high_s8(w)));
      }
    }
  }
  const s8_rq_neon p[2] = {s8_rq_load_neon(&g->rq, n0), s8_rq_load_neon(&g->rq, n0 + 4)};
  const int32x4_t corr0 = vld1q_s32(g->rq.corr + n0), corr1 = vld1q_s32(g->rq.corr + n0 + 4);
  const int32x4_t zp = vdupq_n_s32(g->rq.out_zp);
  const int8x16_t lo = vdupq_n_s8((int8_t)g->rq.act_min), hi = vdupq_n_s8((int8_t)g->rq.act_max);
#pragma GCC unroll 2
  for (int i = 0; i < mr; i++) {
    const int32x4_t s0 = fold4(acc[i][0], acc[i][1], acc[i][2], acc[i][3]);
    const int32x4_t s1 = fold4(acc[i][4], acc[i][5], acc[i][6], acc[i][7]);
    const int32x4_t v[2] = {s8_requant_neon(vaddq_s32(s0, corr0), &p[0], zp),
                            s8_requant_neon(vaddq_s32(s1, corr1), &p[1], zp)};
    s8_store_row_neon(c + (size_t)i * c_stride + (size_t)n0, v, 2, lo, hi, cols);
  }
}

static void tile_1(const kiln_s8_gemm *g, const int8_t *a, size_t a_stride, int32_t n0,
                   int32_t cols, int8_t *c, size_t c_stride) {
  tile(1, g, a, a_stride, n0, cols, c, c_stride);
}

static void tile_2(const kiln_s8_gemm *g, const int8_t *a, size_t a_stride, int32_t n0,
                   int32_t cols, int8_t *c, size_t c_stride) {
  tile(2, g, a, a_stride, n0, cols, c, c_stride);
}

void kiln_s8_gemm_2x8_neon(const kiln_s8_gemm *g, const void *a, size_t a_stride, int32_t rows,
                           int32_t n_begin, int32_t n_end, int8_t *c, size_t c_stride) {
  for (int32_t n0 = n_begin; n0 < n_end; n0 += NR) {
    const int32_t cols = n_end - n0 < NR ? n_end - n0 : NR;
    int32_t r = 0;
    for (; r + 2 <= rows; r += 2)
      tile_2(g, (const int8_t *)a + (size_t)r * a_stride, a_stride, n0, cols,
             c + (size_t)r * c_stride, c_stride);
    if (r < rows)
      tile_1(g, (const int8_t *)a + (size_t)r * a_stride, a_stride, n0, cols,
             c + (size_t)r * c_stride, c_stride);
  }
}

void kiln_s8_requant32_2x8_neon(const kiln_s8_requant *rq, const int32_t *acc, int32_t n,
                                int32_t *out) {
  s8_neon_requant32(rq, acc, n, out);
}
