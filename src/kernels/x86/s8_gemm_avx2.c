/*
 * int8 GEMM micro-kernel for AVX2 without VNNI: tiles of up to 4 rows x 16
 * columns (two vectors of 8 int32 accumulators per row). A and the weights
 * are int16 (X sign-extended, a_offset 0) and vpmaddwd multiplies pairs of
 * depths exactly (vpmaddubsw would saturate its int16 sums). Layouts and
 * contract: kernels/s8_gemm.h (lanes 8, kgroup 2, a_elem 2).
 */
#include <immintrin.h>
#include <string.h>

#include "kernels/s8_gemm.h"
#include "kernels/x86/s8_requant_avx2.h"

#define MR_MAX 4
#define NV_MAX 2

/* x sign-extended to int16, K padded with zeros to kp. */
void kiln_s8_gemm_pack_a_4x16_avx2(const int8_t *x, size_t x_stride, int32_t rows, int32_t k,
                                   int32_t kp, void *a, size_t a_stride) {
  for (int32_t r = 0; r < rows; r++) {
    const int8_t *src = x + (size_t)r * x_stride;
    int16_t *dst = (int16_t *)((uint8_t *)a + (size_t)r * a_stride);
    int32_t d = 0;
    for (; d + 16 <= k; d += 16)
      _mm256_storeu_si256((__m256i *)(dst + d),
                          _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(src + d))));
    for (; d < k; d++) dst[d] = src[d];
    for (; d < kp; d++) dst[d] = 0;
  }
}

static inline __attribute__((always_inline)) void tile(const int mr, const int nv,
                                                       const kiln_s8_gemm *g, const uint8_t *a,
                                                       size_t a_stride, int32_t n0, int32_t cols,
                                                       int8_t *c, size_t c_stride) {
  const size_t group_bytes = (size_t)g->kp * 16; /* 8 columns of int16 */
  const uint8_t *b = (const uint8_t *)g->b + (size_t)(n0 / 8) * group_bytes;
  const int32_t blocks = g->kp / 2;
  __m256i acc[MR_MAX][NV_MAX];
#pragma GCC unroll 4
  for (int i = 0; i < mr; i++) {
#pragma GCC unroll 2
    for (int j = 0; j < nv; j++)
      acc[i][j] = _mm256_loadu_si256((const __m256i *)(g->rq.corr + n0 + 8 * j));
  }
  for (int32_t q = 0; q < blocks; q++) {
    __m256i w[NV_MAX];
#pragma GCC unroll 2
    for (int j = 0; j < nv; j++)
      w[j] = _mm256_loadu_si256((const __m256i *)(b + (size_t)j * group_bytes + (size_t)q * 32));
#pragma GCC unroll 4
    for (int i = 0; i < mr; i++) {
      int32_t pair;
      memcpy(&pair, a + (size_t)i * a_stride + (size_t)q * 4, 4);
      const __m256i x = _mm256_set1_epi32(pair);
#pragma GCC unroll 2
      for (int j = 0; j < nv; j++)
        acc[i][j] = _mm256_add_epi32(acc[i][j], _mm256_madd_epi16(x, w[j]));
    }
  }
  s8_rq_ymm p[NV_MAX];
#pragma GCC unroll 2
  for (int j = 0; j < nv; j++) p[j] = s8_rq_load_ymm(&g->rq, n0 + 8 * j);
  const __m256i zp = _mm256_set1_epi32(g->rq.out_zp);
  const __m128i lo = _mm_set1_epi8((char)g->rq.act_min), hi = _mm_set1_epi8((char)g->rq.act_max);
#pragma GCC unroll 4
  for (int i = 0; i < mr; i++) {
    const __m256i v0 = s8_mbqm_ymm(acc[i][0], &p[0]);
    const __m256i v1 = nv > 1 ? s8_mbqm_ymm(acc[i][nv - 1], &p[nv - 1]) : v0;
    s8_store_cols(c + (size_t)i * c_stride + (size_t)n0, s8_out2_ymm(v0, v1, zp, lo, hi), cols);
  }
}

typedef void (*tile_fn)(const kiln_s8_gemm *g, const uint8_t *a, size_t a_stride, int32_t n0,
                        int32_t cols, int8_t *c, size_t c_stride);

#define TILE(mr, nv)                                                                        \
  static void tile_##mr##x##nv(const kiln_s8_gemm *g, const uint8_t *a, size_t a_stride,     \
                               int32_t n0, int32_t cols, int8_t *c, size_t c_stride) {       \
    tile(mr, nv, g, a, a_stride, n0, cols, c, c_stride);                                     \
  }
#define TILES(nv) TILE(1, nv) TILE(2, nv) TILE(3, nv) TILE(4, nv)
TILES(1)
TILES(2)

/* By number of vectors, then rows. */
static const tile_fn tiles[NV_MAX][MR_MAX] = {
    {tile_1x1, tile_2x1, tile_3x1, tile_4x1},
    {tile_1x2, tile_2x2, tile_3x2, tile_4x2},
};

void kiln_s8_gemm_4x16_avx2(const kiln_s8_gemm *g, const void *a, size_t a_stride, int32_t rows,
                            int32_t n_begin, int32_t n_end, int8_t *c, size_t c_stride) {
  for (int32_t n0 = n_begin; n0 < n_end; n0 += 8 * NV_MAX) {
    const int32_t cols = n_end - n0 < 8 * NV_MAX ? n_end - n0 : 8 * NV_MAX;
    const tile_fn *by_rows = tiles[(cols + 7) / 8 - 1];
    for (int32_t r = 0; r < rows; r += MR_MAX) {
      const int32_t mr = rows - r < MR_MAX ? rows - r : MR_MAX;
      by_rows[mr - 1](g, (const uint8_t *)a + (size_t)r * a_stride, a_stride, n0, cols,
                      c + (size_t)r * c_stride, c_stride);
    }
  }
}

void kiln_s8_requant32_4x16_avx2(const kiln_s8_requant *rq, const int32_t *acc, int32_t n,
                                 int32_t *out) {
  const __m256i zp = _mm256_set1_epi32(rq->out_zp);
  for (int32_t i = 0; i < n; i += 8) {
    const s8_rq_ymm p = s8_rq_load_ymm(rq, i);
    const __m256i x = _mm256_add_epi32(_mm256_loadu_si256((const __m256i *)(acc + i)),
                                       _mm256_loadu_si256((const __m256i *)(rq->corr + i)));
    _mm256_storeu_si256((__m256i *)(out + i), _mm256_add_epi32(s8_mbqm_ymm(x, &p), zp));
  }
}
