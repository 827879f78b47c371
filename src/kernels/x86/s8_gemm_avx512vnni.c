/*
 * int8 GEMM micro-kernel for AVX-512 VNNI: tiles of up to 8 rows x 32
 * columns (two vectors of 16 int32 accumulators per row), vpdpbusd of
 * unsigned A (X + 128) by signed weights, four depths per instruction.
 * Layouts and contract: kernels/s8_gemm.h (lanes 16, kgroup 4, a_elem 1).
 *
 * Per tile: the accumulators start at corr (bias and offsets); for each
 * 4-deep block, each row's 4 bytes of A are broadcast and multiplied into
 * the 16 columns of each weight vector; then each vector is requantized in
 * place (kernels/x86/s8_requant_avx512.h, the one-step form where the
 * parameters allow), and the saturating packs narrow two rows (or four
 * single-vector rows) at once to int8. A last block narrower than its
 * vectors goes through a buffer, so stores never pass the last column.
 */
#include <immintrin.h>
#include <string.h>

#include "kernels/s8_gemm.h"
#include "kernels/x86/s8_requant_avx512.h"

#define MR_MAX 8
#define NV_MAX 2

/* Flips the sign bit of n bytes (x + 128 as unsigned). */
static void flip_bytes(const int8_t *x, uint8_t *a, size_t n) {
  const __m512i flip = _mm512_set1_epi8((char)0x80);
  size_t d = 0;
  for (; d + 64 <= n; d += 64)
    _mm512_storeu_si512(a + d, _mm512_xor_si512(_mm512_loadu_si512(x + d), flip));
  if (d < n) {
    const __mmask64 tail = _cvtu64_mask64((1ull << (n - d)) - 1);
    const __m512i v = _mm512_xor_si512(_mm512_maskz_loadu_epi8(tail, x + d), flip);
    _mm512_mask_storeu_epi8(a + d, tail, v);
  }
}

/* x + 128 as unsigned bytes, K padded with zeros to kp (rows laid out
 * alike are flipped as one run, whatever lies between K and kp). */
void kiln_s8_gemm_pack_a_8x32_avx512vnni(const int8_t *x, size_t x_stride, int32_t rows,
                                         int32_t k, int32_t kp, void *a, size_t a_stride) {
  if (x_stride == a_stride) {
    flip_bytes(x, a, (size_t)rows * a_stride);
    return;
  }
  const __m512i flip = _mm512_set1_epi8((char)0x80);
  for (int32_t r = 0; r < rows; r++) {
    const int8_t *src = x + (size_t)r * x_stride;
    uint8_t *dst = (uint8_t *)a + (size_t)r * a_stride;
    int32_t d = 0;
    for (; d + 64 <= k; d += 64)
      _mm512_storeu_si512(dst + d, _mm512_xor_si512(_mm512_loadu_si512(src + d), flip));
    if (d < kp) {
      /* The tail: the last k - d bytes flipped, zeros up to kp. */
      const __mmask64 in = _cvtu64_mask64(k - d >= 64 ? ~0ull : (1ull << (k - d)) - 1);
      const __mmask64 out = _cvtu64_mask64(kp - d >= 64 ? ~0ull : (1ull << (kp - d)) - 1);
      const __m512i v = _mm512_xor_si512(_mm512_maskz_loadu_epi8(in, src + d), flip);
      _mm512_mask_storeu_epi8(dst + d, out, _mm512_maskz_mov_epi8(in, v));
    }
  }
}

/* acc += dot products of the 4-byte groups of x (unsigned) and w (signed).
 * In asm because gcc 12 copies the intrinsic's accumulators between
 * registers on every iteration of the depth loop (a third slower). */
static inline __m512i dpbusd(__m512i acc, __m512i x, __m512i w) {
  __asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(x), "v"(w));
  return acc;
}

/* One 4-deep block q of a tile: acc[i][j] += A row i's 4 bytes times the
 * 16 columns of weight vector j. */
static inline __attribute__((always_inline)) void block(const int mr, const int nv,
                                                        const uint8_t *a, size_t a_stride,
                                                        const uint8_t *b, size_t group_bytes,
                                                        int32_t q, __m512i acc[MR_MAX][NV_MAX]) {
  __m512i w[NV_MAX];
#pragma GCC unroll 2
  for (int j = 0; j < nv; j++)
    w[j] = _mm512_loadu_si512(b + (size_t)j * group_bytes + (size_t)q * 64);
#pragma GCC unroll 8
  for (int i = 0; i < mr; i++) {
    int32_t quad;
    memcpy(&quad, a + (size_t)i * a_stride + (size_t)q * 4, 4);
    const __m512i x = _mm512_set1_epi32(quad);
#pragma GCC unroll 2
    for (int j = 0; j < nv; j++) acc[i][j] = dpbusd(acc[i][j], x, w[j]);
  }
}

/* Stores rows i and i + 1 (skipped when second is false) of a 2-vector
 * tile: 32 int8 each, from requantized int32 vectors r0 = (v0, v1) and
 * r1, clamped to [lo, hi] when clamp. The saturating packs interleave
 * 4-column pieces of the four vectors per 128-bit lane; one dword
 * permutation puts each row back in order. */
static inline void store_rows2(int8_t *dst, size_t c_stride, __m512i r0v0, __m512i r0v1,
                               __m512i r1v0, __m512i r1v1, bool second, bool clamp, __m512i lo,
                               __m512i hi) {
  const __m512i order = _mm512_set_epi32(15, 11, 7, 3, 14, 10, 6, 2, 13, 9, 5, 1, 12, 8, 4, 0);
  __m512i b = _mm512_permutexvar_epi32(
      order, _mm512_packs_epi16(_mm512_packs_epi32(r0v0, r0v1), _mm512_packs_epi32(r1v0, r1v1)));
  if (clamp) b = _mm512_min_epi8(_mm512_max_epi8(b, lo), hi);
  _mm256_storeu_si256((__m256i *)dst, _mm512_castsi512_si256(b));
  if (second) _mm256_storeu_si256((__m256i *)(dst + c_stride), _mm512_extracti64x4_epi64(b, 1));
}

/* Stores rows i .. i + 3 (those below mr - i) of a 1-vector tile: 16 int8
 * each, packed and reordered as in store_rows2. */
static inline void store_rows1(int8_t *dst, size_t c_stride, __m512i v0, __m512i v1, __m512i v2,
                               __m512i v3, int rows, bool clamp, __m512i lo, __m512i hi) {
  const __m512i order = _mm512_set_epi32(15, 11, 7, 3, 14, 10, 6, 2, 13, 9, 5, 1, 12, 8, 4, 0);
  __m512i b = _mm512_permutexvar_epi32(
      order, _mm512_packs_epi16(_mm512_packs_epi32(v0, v1), _mm512_packs_epi32(v2, v3)));
  if (clamp) b = _mm512_min_epi8(_mm512_max_epi8(b, lo), hi);
  _mm_storeu_si128((__m128i *)dst, _mm512_castsi512_si128(b));
  if (rows > 1) _mm_storeu_si128((__m128i *)(dst + c_stride), _mm512_extracti32x4_epi32(b, 1));
  if (rows > 2) _mm_storeu_si128((__m128i *)(dst + 2 * c_stride), _mm512_extracti32x4_epi32(b, 2));
  if (rows > 3) _mm_storeu_si128((__m128i *)(dst + 3 * c_stride), _mm512_extracti32x4_epi32(b, 3));
}

/* Rows [0, mr) x columns [n0, n0 + 16 * nv) into c (row stride c_stride,
 * column n0 at c[0]); requantized through g->rq.wide when wide. */
static inline __attribute__((always_inline)) void tile(const int mr, const int nv, const bool wide,
                                                       const kiln_s8_gemm *g, const uint8_t *a,
                                                       size_t a_stride, int32_t n0, int8_t *c,
                                                       size_t c_stride) {
  const size_t group_bytes = (size_t)g->kp * 16;
  const uint8_t *b = (const uint8_t *)g->b + (size_t)(n0 / 16) * group_bytes;
  const int32_t blocks = g->kp / 4;
  /* Small tiles keep several partial sums per output over interleaved
   * depth blocks, so that enough vpdpbusd chains are in flight; the
   * partial sums are added at the end (exact modulo 2^32, like the rest). */
  const int ways = mr * nv <= 2 ? 4 : mr * nv <= 4 ? 2 : 1;
  __m512i acc[4][MR_MAX][NV_MAX];
#pragma GCC unroll 2
  for (int j = 0; j < nv; j++) {
    const __m512i corr = _mm512_loadu_si512(g->rq.corr + n0 + 16 * j);
#pragma GCC unroll 8
    for (int i = 0; i < mr; i++) {
      acc[0][i][j] = corr;
#pragma GCC unroll 4
      for (int v = 1; v < ways; v++) acc[v][i][j] = _mm512_setzero_si512();
    }
  }
  int32_t q = 0;
  for (; q + ways <= blocks; q += ways) {
#pragma GCC unroll 4
    for (int v = 0; v < ways; v++) block(mr, nv, a, a_stride, b, group_bytes, q + v, acc[v]);
  }
  for (; q < blocks; q++) block(mr, nv, a, a_stride, b, group_bytes, q, acc[0]);
#pragma GCC unroll 4
  for (int v = 1; v < ways; v++) {
#pragma GCC unroll 8
    for (int i = 0; i < mr; i++) {
#pragma GCC unroll 2
      for (int j = 0; j < nv; j++) acc[0][i][j] = _mm512_add_epi32(acc[0][i][j], acc[v][i][j]);
    }
  }
  /* Requantize in place (the zero point included), a column vector at a
   * time so only its parameters are live. */
#pragma GCC unroll 2
  for (int j = 0; j < nv; j++) {
    if (wide) {
      const s8_rqw_zmm p = s8_rqw_load_zmm(&g->rq, n0 + 16 * j);
#pragma GCC unroll 8
      for (int i = 0; i < mr; i++) acc[0][i][j] = s8_mbqmw_zmm(acc[0][i][j], &p);
    } else {
      const s8_rq_zmm p = s8_rq_load_zmm(&g->rq, n0 + 16 * j);
      const __m512i zp = _mm512_set1_epi32(g->rq.out_zp);
#pragma GCC unroll 8
      for (int i = 0; i < mr; i++)
        acc[0][i][j] = _mm512_add_epi32(s8_mbqm_zmm(acc[0][i][j], &p), zp);
    }
  }
  /* The saturating packs clamp to int8; a narrower range needs max / min. */
  const bool clamp = g->rq.act_min > INT8_MIN || g->rq.act_max < INT8_MAX;
  const __m512i lo = _mm512_set1_epi8((char)g->rq.act_min);
  const __m512i hi = _mm512_set1_epi8((char)g->rq.act_max);
  if (nv == 2) {
#pragma GCC unroll 4
    for (int i = 0; i < mr; i += 2) {
      const int k = i + 1 < mr ? i + 1 : i;
      store_rows2(c + (size_t)i * c_stride, c_stride, acc[0][i][0], acc[0][i][1], acc[0][k][0],
                  acc[0][k][1], i + 1 < mr, clamp, lo, hi);
    }
  } else {
#pragma GCC unroll 2
    for (int i = 0; i < mr; i += 4) {
      const int last = mr - 1;
      store_rows1(c + (size_t)i * c_stride, c_stride, acc[0][i][0],
                  acc[0][i + 1 <= last ? i + 1 : last][0], acc[0][i + 2 <= last ? i + 2 : last][0],
                  acc[0][i + 3 <= last ? i + 3 : last][0], mr - i, clamp, lo, hi);
    }
  }
}

typedef void (*tile_fn)(const kiln_s8_gemm *g, const uint8_t *a, size_t a_stride, int32_t n0,
                        int8_t *c, size_t c_stride);

#define TILE(mr, nv)                                                                       \
  static void tile_##mr##x##nv(const kiln_s8_gemm *g, const uint8_t *a, size_t a_stride,    \
                               int32_t n0, int8_t *c, size_t c_stride) {                    \
    tile(mr, nv, false, g, a, a_stride, n0, c, c_stride);                                   \
  }                                                                                         \
  static void tile_##mr##x##nv##_wide(const kiln_s8_gemm *g, const uint8_t *a,              \
                                      size_t a_stride, int32_t n0, int8_t *c, size_t c_stride) { \
    tile(mr, nv, true, g, a, a_stride, n0, c, c_stride);                                    \
  }
#define TILES(nv) TILE(1, nv) TILE(2, nv) TILE(3, nv) TILE(4, nv) TILE(5, nv) TILE(6, nv) \
  TILE(7, nv) TILE(8, nv)
TILES(1)
TILES(2)

#define ROW_TILES(nv, suffix)                                                                 \
  {tile_1x##nv##suffix, tile_2x##nv##suffix, tile_3x##nv##suffix, tile_4x##nv##suffix,       \
   tile_5x##nv##suffix, tile_6x##nv##suffix, tile_7x##nv##suffix, tile_8x##nv##suffix}
/* By requantization (general, wide), number of vectors, then rows. */
static const tile_fn tiles[2][NV_MAX][MR_MAX] = {
    {ROW_TILES(1, ), ROW_TILES(2, )},
    {ROW_TILES(1, _wide), ROW_TILES(2, _wide)},
};

void kiln_s8_gemm_8x32_avx512vnni(const kiln_s8_gemm *g, const void *a, size_t a_stride,
                                  int32_t rows, int32_t n_begin, int32_t n_end, int8_t *c,
                                  size_t c_stride) {
  for (int32_t n0 = n_begin; n0 < n_end; n0 += 16 * NV_MAX) {
    const int32_t cols = n_end - n0 < 16 * NV_MAX ? n_end - n0 : 16 * NV_MAX;
    const int32_t nv = (cols + 15) / 16;
    const tile_fn *by_rows = tiles[g->rq.wide != NULL][nv - 1];
    for (int32_t r = 0; r < rows; r += MR_MAX) {
      const int32_t mr = rows - r < MR_MAX ? rows - r : MR_MAX;
      const uint8_t *a_rows = (const uint8_t *)a + (size_t)r * a_stride;
      int8_t *c_rows = c + (size_t)r * c_stride + n0;
      if (cols == 16 * nv) {
        by_rows[mr - 1](g, a_rows, a_stride, n0, c_rows, c_stride);
        continue;
      }
      /* A partial last block goes through a buffer. */
      int8_t part[MR_MAX * 16 * NV_MAX];
      by_rows[mr - 1](g, a_rows, a_stride, n0, part, 16 * NV_MAX);
      for (int32_t i = 0; i < mr; i++)
        memcpy(c_rows + (size_t)i * c_stride, part + i * 16 * NV_MAX, (size_t)cols);
    }
  }
}

void kiln_s8_requant32_8x32_avx512vnni(const kiln_s8_requant *rq, const int32_t *acc, int32_t n,
                                       int32_t *out) {
  const __m512i zp = _mm512_set1_epi32(rq->out_zp);
  for (int32_t i = 0; i < n; i += 16) {
    const __m512i x =
        _mm512_add_epi32(_mm512_loadu_si512(acc + i), _mm512_loadu_si512(rq->corr + i));
    __m512i v;
    if (rq->wide) {
      const s8_rqw_zmm p = s8_rqw_load_zmm(rq, i);
      v = s8_mbqmw_zmm(x, &p);
    } else {
      const s8_rq_zmm p = s8_rq_load_zmm(rq, i);
      v = _mm512_add_epi32(s8_mbqm_zmm(x, &p), zp);
    }
    _mm512_storeu_si512(out + i, v);
  }
}
