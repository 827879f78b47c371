/*
 * int8 GEMM micro-kernel for ARM64 with the dot product extension (SDOT):
 * tiles of up to 4 rows x 16 columns (four vectors of 4 int32 accumulators
 * per row), signed A (X itself, a_offset 0) by signed weights, four depths
 * per instruction, exact. Layouts and contract: kernels/s8_gemm.h (lanes 4,
 * kgroup 4, a_elem 1): a weight block is 4 columns x 4 depths, one vector.
 *
 * Depth goes 16 at a time where it can: one 128-bit load per row gives its
 * next 16 A bytes, and SDOT by lane meets each 4-depth quarter with the
 * weight blocks of those depths (16 accumulators + 4 A + 4 weights of the 32
 * registers); the last kp % 16 depths go 4 at a time. Accumulators start
 * from corr; the requantization is kernels/arm/s8_gemm_neon.h's.
 */
#include <arm_neon.h>
#include <string.h>

#include "kernels/arm/s8_gemm_neon.h"
#include "kernels/s8_gemm.h"

#define MR_MAX 4
#define NV_MAX 4

void kiln_s8_gemm_pack_a_4x16_neondot(const int8_t *x, size_t x_stride, int32_t rows, int32_t k,
                                      int32_t kp, void *a, size_t a_stride) {
  s8_neon_pack_a(x, x_stride, rows, k, kp, a, a_stride);
}

/* acc[i][j] += the dot products of weight block qb of column group j with
 * the 4-byte quarter `lane` (a constant) of x[i], which holds A's depths
 * 4 * qb .. 4 * qb + 3 of row i. */
#define DOT_QUARTER(qb, lane)                                            \
  do {                                                                   \
    int8x16_t w[NV_MAX];                                                 \
    _Pragma("GCC unroll 4") for (int j = 0; j < nv; j++) w[j] =          \
        vld1q_s8(b + (size_t)j * group_bytes + 16 * (size_t)(qb));         \
    _Pragma("GCC unroll 4") for (int i = 0; i < mr; i++)                 \
        _Pragma("GCC unroll 4") for (int j = 0; j < nv; j++) acc[i][j] = \
            vdotq_laneq_s32(acc[i][j], w[j], x[i], lane);                \
  } while (0)

static inline __attribute__((always_inline)) void tile(const int mr, const int nv,
                                                       const kiln_s8_gemm *g, const int8_t *a,
                                                       size_t a_stride, int32_t n0, int32_t cols,
                                                       int8_t *c, size_t c_stride) {
  const size_t group_bytes = (size_t)g->kp * 4; /* 4 columns */
  const int8_t *b = (const int8_t *)g->b + (size_t)(n0 / 4) * group_bytes;
  const int32_t blocks = g->kp / 4;
  int32x4_t acc[MR_MAX][NV_MAX];
#pragma GCC unroll 4
  for (int i = 0; i < mr; i++)
#pragma GCC unroll 4
    for (int j = 0; j < nv; j++) acc[i][j] = vld1q_s32(g->rq.corr + n0 + 4 * j);
  int32_t q = 0;
  for (; q + 4 <= blocks; q += 4) {
    int8x16_t x[MR_MAX];
#pragma GCC unroll 4
    for (int i = 0; i < mr; i++) x[i] = vld1q_s8(a + (size_t)i * a_stride + (size_t)q * 4);
    DOT_QUARTER(q, 0);
    DOT_QUARTER(q + 1, 1);
    DOT_QUARTER(q + 2, 2);
    DOT_QUARTER(q + 3, 3);
  }
  for (; q < blocks; q++) {
    int8x16_t x[MR_MAX];
#pragma GCC unroll 4
    for (int i = 0; i < mr; i++) {
      int32_t quad;
      memcpy(&quad, a + (size_t)i * a_stride + (size_t)q * 4, sizeof quad);
      x[i] = vreinterpretq_s8_s32(vdupq_n_s32(quad));
    }
    DOT_QUARTER(q, 0);
  }
  s8_rq_neon p[NV_MAX];
#pragma GCC unroll 4
  for (int j = 0; j < nv; j++) p[j] = s8_rq_load_neon(&g->rq, n0 + 4 * j);
  const int32x4_t zp = vdupq_n_s32(g->rq.out_zp);
  const int8x16_t lo = vdupq_n_s8((int8_t)g->rq.act_min), hi = vdupq_n_s8((int8_t)g->rq.act_max);
#pragma GCC unroll 4
  for (int i = 0; i < mr; i++) {
    int32x4_t v[NV_MAX];
#pragma GCC unroll 4
    for (int j = 0; j < nv; j++) v[j] = s8_requant_neon(acc[i][j], &p[j], zp);
    s8_store_row_neon(c + (size_t)i * c_stride + (size_t)n0, v, nv, lo, hi, cols);
  }
}

typedef void (*tile_fn)(const kiln_s8_gemm *g, const int8_t *a, size_t a_stride, int32_t n0,
                        int32_t cols, int8_t *c, size_t c_stride);

#define TILE(mr, nv)                                                                    \
  static void tile_##mr##x##nv(const kiln_s8_gemm *g, const int8_t *a, size_t a_stride, \
                               int32_t n0, int32_t cols, int8_t *c, size_t c_stride) {  \
    tile(mr, nv, g, a, a_stride, n0, cols, c, c_stride);                                \
  }
#define TILES(nv) TILE(1, nv) TILE(2, nv) TILE(3, nv) TILE(4, nv)
TILES(1)
TILES(2)
TILES(3)
TILES(4)

/* By number of vectors, then rows. */
static const tile_fn tiles[NV_MAX][MR_MAX] = {
    {tile_1x1, tile_2x1, tile_3x1, tile_4x1},
    {tile_1x2, tile_2x2, tile_3x2, tile_4x2},
    {tile_1x3, tile_2x3, tile_3x3, tile_4x3},
    {tile_1x4, tile_2x4, tile_3x4, tile_4x4},
};

void kiln_s8_gemm_4x16_neondot(const kiln_s8_gemm *g, const void *a, size_t a_stride, int32_t rows,
                               int32_t n_begin, int32_t n_end, int8_t *c, size_t c_stride) {
  for (int32_t n0 = n_begin; n0 < n_end; n0 += 4 * NV_MAX) {
    const int32_t cols = n_end - n0 < 4 * NV_MAX ? n_end - n0 : 4 * NV_MAX;
    const tile_fn *by_rows = tiles[(cols + 3) / 4 - 1];
    for (int32_t r = 0; r < rows; r += MR_MAX) {
      const int32_t mr = rows - r < MR_MAX ? rows - r : MR_MAX;
      by_rows[mr - 1](g, (const int8_t *)a + (size_t)r * a_stride, a_stride, n0, cols,
                      c + (size_t)r * c_stride, c_stride);
    }
  }
}

void kiln_s8_requant32_4x16_neondot(const kiln_s8_requant *rq, const int32_t *acc, int32_t n,
                                    int32_t *out) {
  s8_neon_requant32(rq, acc, n, out);
}
