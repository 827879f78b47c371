/*
 * kernels/x86/dw_s8_3x3_avxvnni.c: int8 3x3 depthwise conv
 * (kernels/dwconv.h, dot4 layout) with AVX-VNNI (256-bit vpdpbusd, no
 * AVX-512): 8 channels per vector. The loops are in dw_dot4_tmpl.h; here
 * are the vector operations.
 *
 * A column vector takes the four rows' 8 bytes into the four 64-bit lanes,
 * vpermd makes 128-bit lane m hold dword m (channels 4m..4m+3) of every row,
 * vpshufb transposes each lane's 4x4 bytes, and a xor adds 128.
 * Requantization takes one of the one-step 64-bit forms of kernels/dwconv.h:
 * the fast one (vpmuludq of the even and odd lanes of acc + 2^31, the high
 * halves gathered by vpshufd and a blend, the tie fix-up and an arithmetic
 * shift; the output zero point is in the rounding term), or the general one
 * (left shift, a 64-bit arithmetic shift by 31 + right made of logical
 * shifts of the one's complement). The store saturates to int8 (two packs),
 * the clamp of the fast form when the clamp is the int8 range.
 */
#include <immintrin.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "kernels/cpu.h"
#include "kernels/dwconv.h"

#define INL static inline __attribute__((always_inline))
#define DV __m256i
#define DV_N 8
#define DOT4_KERNEL dw_s8_3x3_avxvnni

/* Per-group constants (kernels/dwconv.h dot4 rows 7-15) and the clamp;
 * r9..r15 are rows 9-15, read as the form says. */
typedef struct dv_rq {
  __m256i mult, mult_odd, r9, r10, r11, r12, r13, r14, r15;
  __m256i out_zp, lo, hi;
} dv_rq;

/* Input row pointers at the group's first channel (rows outside the image
 * point into zp_row), the transposing permutation and shuffle, the x + 128
 * flip, the padding column's vector and the group's channel count. */
typedef struct col_src {
  const int8_t *rows[4];
  __m256i perm, ctl, flip, pad;
  int32_t n;
} col_src;

INL __m256i dv_load(const int32_t *w) {
  return _mm256_loadu_si256((const __m256i *)(const void *)w);
}

INL __m256i dv_dot(__m256i acc, __m256i v, __m256i w) { return _mm256_dpbusd_avx_epi32(acc, v, w); }

INL dv_rq dv_load_rq(const kiln_dw_s8_params *p, const int32_t *w) {
  dv_rq q;
  q.mult = dv_load(w + 8 * 7);
  q.mult_odd = dv_load(w + 8 * 8);
  q.r9 = dv_load(w + 8 * 9);
  q.r10 = dv_load(w + 8 * 10);
  q.r11 = dv_load(w + 8 * 11);
  q.r12 = dv_load(w + 8 * 12);
  q.r13 = dv_load(w + 8 * 13);
  q.r14 = dv_load(w + 8 * 14);
  q.r15 = dv_load(w + 8 * 15);
  q.out_zp = _mm256_set1_epi32(p->output_zp);
  q.lo = _mm256_set1_epi32(p->act_min);
  q.hi = _mm256_set1_epi32(p->act_max);
  return q;
}

INL void dv_src_init(col_src *src, const kiln_dw_s8_params *p) {
  /* Dword 4m + r of the permuted vector is dword m of row r; byte 4j + r of
   * a lane after the shuffle is byte 4r + j before it. */
  src->perm = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
  src->ctl = _mm256_setr_epi32(0x0c080400, 0x0d090501, 0x0e0a0602, 0x0f0b0703, 0x0c080400,
                               0x0d090501, 0x0e0a0602, 0x0f0b0703);
  /* Opaque to the compiler, which could otherwise merge the two shuffles
   * into a longer sequence. */
  __asm__("" : "+x"(src->perm), "+x"(src->ctl));
  src->flip = _mm256_set1_epi8(-128);
  src->pad = _mm256_set1_epi8((char)(p->input_zp ^ 0x80));
}

INL void dv_src_group(col_src *src, int32_t n) { src->n = n; }

/* 8 bytes (the tail's n, the rest 0) in the low half. */
INL __m128i load8(const col_src *src, const int8_t *p, bool tail) {
  if (!tail) return _mm_loadl_epi64((const __m128i *)(const void *)p);
  uint64_t bytes = 0;
  memcpy(&bytes, p, (size_t)src->n);
  return _mm_cvtsi64_si128((int64_t)bytes);
}

/* The column vector of input column ix (elements apart: cs); a fourth row
 * that is not needed reads as 0 (its weights are 0). */
INL __m256i column(const col_src *src, int32_t ix, int32_t in_w, size_t cs, int32_t nrows,
                   bool tail) {
  if ((uint32_t)ix >= (uint32_t)in_w) return src->pad;
  const size_t off = (size_t)ix * cs;
  const __m128i r0 = load8(src, src->rows[0] + off, tail);
  const __m128i r01 = _mm_unpacklo_epi64(r0, load8(src, src->rows[1] + off, tail));
  const __m128i r3 = nrows == 4 ? load8(src, src->rows[3] + off, tail) : _mm_setzero_si128();
  const __m128i r23 = _mm_unpacklo_epi64(load8(src, src->rows[2] + off, tail), r3);
  __m256i v = _mm256_inserti128_si256(_mm256_castsi128_si256(r01), r23, 1);
  v = _mm256_shuffle_epi8(_mm256_permutevar8x32_epi32(v, src->perm), src->ctl);
  return _mm256_xor_si256(v, src->flip);
}

/* x >> s (arithmetic) per 64-bit lane, 0 <= s < 64. */
INL __m256i srav64(__m256i x, __m256i s) {
  const __m256i sign = _mm256_cmpgt_epi64(_mm256_setzero_si256(), x);
  return _mm256_xor_si256(_mm256_srlv_epi64(_mm256_xor_si256(x, sign), s), sign);
}

INL __m256i requant(__m256i acc, const dv_rq *q, bool general, bool clamp) {
  if (!general) {
    /* acc holds acc + 2^31: the high halves of 2 * (acc * M + R) are y. */
    const __m256i pe = _mm256_add_epi64(_mm256_mul_epu32(acc, q->mult), q->r10);
    const __m256i po =
        _mm256_add_epi64(_mm256_mul_epu32(_mm256_srli_epi64(acc, 32), q->mult_odd), q->r11);
    __m256i y = _mm256_blend_epi32(_mm256_shuffle_epi32(pe, 0xB1), po, 0xAA);
    y = _mm256_add_epi32(y, _mm256_cmpgt_epi32(q->r12, y));
    y = _mm256_srav_epi32(y, q->r9);
    return clamp ? _mm256_min_epi32(_mm256_max_epi32(y, q->lo), q->hi) : y;
  }
  const __m256i zero = _mm256_setzero_si256();
  acc = _mm256_sllv_epi32(acc, q->r9);
  const __m256i pe = _mm256_mul_epi32(acc, q->mult);
  const __m256i po = _mm256_mul_epi32(_mm256_srli_epi64(acc, 32), q->mult_odd);
  __m256i se = _mm256_add_epi64(pe, q->r10);
  __m256i so = _mm256_add_epi64(po, q->r11);
  se = _mm256_sub_epi64(se, _mm256_and_si256(_mm256_cmpgt_epi64(zero, pe), q->r14));
  so = _mm256_sub_epi64(so, _mm256_and_si256(_mm256_cmpgt_epi64(zero, po), q->r15));
  se = srav64(se, q->r12);
  so = srav64(so, q->r13);
  __m256i v = _mm256_blend_epi32(se, _mm256_shuffle_epi32(so, 0xB1), 0xAA);
  v = _mm256_add_epi32(v, q->out_zp);
  return _mm256_min_epi32(_mm256_max_epi32(v, q->lo), q->hi);
}

INL void store(int8_t *dst, __m256i v, const col_src *src, bool tail) {
  /* Saturating packs leave lanes 0-3 in bytes 0-3 and lanes 4-7 in bytes
   * 16-19. */
  __m256i b = _mm256_packs_epi32(v, v);
  b = _mm256_packs_epi16(b, b);
  const __m128i r = _mm_unpacklo_epi32(_mm256_castsi256_si128(b), _mm256_extracti128_si256(b, 1));
  if (!tail) {
    _mm_storel_epi64((__m128i *)(void *)dst, r);
    return;
  }
  const uint64_t bytes = (uint64_t)_mm_cvtsi128_si64(r);
  memcpy(dst, &bytes, (size_t)src->n);
}

#include "kernels/x86/dw_dot4_tmpl.h"

const kiln_dw_dot4_kernel kiln_dw_dot4_avxvnni = {"s8_dw_3x3_avxvnni",
                                                  KILN_ISA_AVX2 | KILN_ISA_AVXVNNI, 8,
                                                  dw_s8_3x3_avxvnni};
