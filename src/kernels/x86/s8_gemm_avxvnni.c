/*
 * int8 GEMM micro-kernel for AVX-VNNI (256-bit vpdpbusd, no AVX-512): tiles
 * of up to 6 rows x 16 columns (two vectors of 8 int32 accumulators per
 * row), unsigned A (X + 128) by signed weights, four depths per instruction.
 * Layouts and contract: kernels/s8_gemm.h (lanes 8, kgroup 4, a_elem 1).
 * The same scheme as the AVX-512 VNNI kernel, at half the width.
 */
#include <immintrin.h>
#include <string.h>

#include "kernels/s8_gemm.h"
#include "kernels/x86/s8_requant_avx2.h"

#define MR_MAX 6
#define NV_MAX 2

/* x + 128 as unsigned bytes, K padded with zeros to kp (rows laid out
 * alike are flipped as one run, whatever lies between K and kp). */
void kiln_s8_gemm_pack_a_6x16_avxvnni(const int8_t *x, size_t x_stride, int32_t rows, int32_t k,
                                      int32_t kp, void *a, size_t a_stride) {
  const __m256i flip = _mm256_set1_epi8((char)0x80);
  if (x_stride == a_stride) {
    const size_t n = (size_t)rows * a_stride;
    uint8_t *dst = a;
    size_t d = 0;
    for (; d + 32 <= n; d += 32)
      _mm256_storeu_si256((__m256i *)(dst + d),
                          _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(x + d)), flip));
    for (; d < n; d++) dst[d] = (uint8_t)(x[d] ^ 0x80);
    return;
  }
  for (int32_t r = 0; r < rows; r++) {
    const int8_t *src = x + (size_t)r * x_stride;
    uint8_t *dst = (uint8_t *)a + (size_t)r * a_stride;
    int32_t d = 0;
    for (; d + 32 <= k; d += 32)
      _mm256_storeu_si256((__m256i *)(dst + d),
                          _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(src + d)), flip));
    for (; d < k; d++) dst[d] = (uint8_t)(src[d] ^ 0x80);
    for (; d < kp; d++) dst[d] = 0;
  }
}

/* acc += dot products of the 4-byte groups of x (unsigned) and w (signed).
 * In asm because gcc 12 otherwise copies the accumulators through memory
 * on every iteration of the depth loop. */
static inline __m256i dpbusd(__m256i acc, __m256i x, __m256i w) {
  __asm__("%{vex%} vpdpbusd %2, %1, %0" : "+x"(acc) : "x"(x), "x"(w));
  return acc;
}

static inline __attribute__((always_inline)) void tile(const int mr, const int nv,
                                                       const kiln_s8_gemm *g, const uint8_t *a,
                                                       size_t a_stride, int32_t n0, int32_t cols,
                                                       int8_t *c, size_t c_stride) {
  const size_t group_bytes = (size_t)g->kp * 8;
  const uint8_t *b = (const uint8_t *)g->b + (size_t)(n0 / 8) * group_bytes;
  const int32_t blocks = g->kp / 4;
  __m256i acc[MR_MAX][NV_MAX];
#pragma GCC unroll 6
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
#pragma GCC unroll 6
    for (int i = 0; i < mr; i++) {
      int32_t quad;
      memcpy(&quad, a + (size_t)i * a_stride + (size_t)q * 4, 4);
      const __m256i x = _mm256_set1_epi32(quad);
#pragma GCC unroll 2
      for (int j = 0; j < nv; j++) acc[i][j] = dpbusd(acc[i][j], x, w[j]);
    }
  }
  s8_rq_ymm p[NV_MAX];
#pragma GCC unroll 2
  for (int j = 0; j < nv; j++) p[j] = s8_rq_load_ymm(&g->rq, n0 + 8 * j);
  const __m256i zp = _mm256_set1_epi32(g->rq.out_zp);
  const __m128i lo = _mm_set1_epi8((char)g->rq.act_min), hi = _mm_set1_epi8((char)g->rq.act_max);
#pragma GCC unroll 6
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
#define TILES(nv) TILE(1, nv) TILE(2, nv) TILE(3, nv) TILE(4, nv) TILE(5, nv) TILE(6, nv)
TILES(1)
TILES(2)

/* By number of vectors, then rows. */
static const tile_fn tiles[NV_MAX][MR_MAX] = {
    {tile_1x1, tile_2x1, tile_3x1, tile_4x1, tile_5x1, tile_6x1},
    {tile_1x2, tile_2x2, tile_3x2, tile_4x2, tile_5x2, tile_6x2},
};

void kiln_s8_gemm_6x16_avxvnni(const kiln_s8_gemm *g, const void *a, size_t a_stride,
                               int32_t rows, int32_t n_begin, int32_t n_end, int8_t *c,
                               size_t c_stride) {
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

void kiln_s8_requant32_6x16_avxvnni(const kiln_s8_requant *rq, const int32_t *acc, int32_t n,
                                 int32_t *out) {
  const __m256i zp = _mm256_set1_epi32(rq->out_zp);
  for (int32_t i = 0; i < n; i += 8) {
    const s8_rq_ymm p = s8_rq_load_ymm(rq, i);
    const __m256i x = _mm256_add_epi32(_mm256_loadu_si256((const __m256i *)(acc + i)),
                                       _mm256_loadu_si256((const __m256i *)(rq->corr + i)));
    _mm256_storeu_si256((__m256i *)(out + i), _mm256_add_epi32(s8_mbqm_ymm(x, &p), zp));
  }
}
