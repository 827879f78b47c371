/*
 * kernels/x86/dw_s8_3x3_avx512vnni.c: int8 3x3 depthwise conv
 * (kernels/dwconv.h, dot4 layout) with AVX-512 VNNI: 16 channels per vector.
 * The loops are in dw_dot4_tmpl.h; here are the vector operations.
 *
 * A column vector takes the four rows' 16 bytes into the 128-bit lanes
 * (three inserts), vpermd makes lane m hold dword m (channels 4m..4m+3) of
 * every row, vpshufb transposes each lane's 4x4 bytes, and a xor adds 128.
 * Requantization takes one of the one-step 64-bit forms of kernels/dwconv.h:
 * the fast one (vpmuludq of the even and odd lanes of acc + 2^31, a masked
 * vpshufd gathering the high halves, the tie fix-up and an arithmetic
 * shift; the output zero point is in the rounding term), or the general one
 * (left shift, vpsravq by 31 + right). The store saturates to int8
 * (vpmovsdb), the clamp of the fast form when the clamp is the int8 range.
 */
#include <immintrin.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/cpu.h"
#include "kernels/dwconv.h"

#define INL static inline __attribute__((always_inline))
#define DV __m512i
#define DV_N 16
#define DOT4_KERNEL dw_s8_3x3_avx512vnni

/* Per-group constants (kernels/dwconv.h dot4 rows 7-15) and the clamp;
 * r9..r15 are rows 9-15, read as the form says. */
typedef struct dv_rq {
  __m512i mult, mult_odd, r9, r10, r11, r12, r13, r14, r15;
  __m512i out_zp, lo, hi, one;
} dv_rq;

/* Input row pointers at the group's first channel (rows outside the image
 * point into zp_row), the transposing permutation and shuffle, the x + 128
 * flip, the padding column's vector and the group's channel mask. */
typedef struct col_src {
  const int8_t *rows[4];
  __m512i perm, ctl, flip, pad;
  __mmask16 mask;
} col_src;

INL __m512i dv_load(const int32_t *w) { return _mm512_loadu_si512(w); }

INL __m512i dv_dot(__m512i acc, __m512i v, __m512i w) { return _mm512_dpbusd_epi32(acc, v, w); }

INL dv_rq dv_load_rq(const kiln_dw_s8_params *p, const int32_t *w) {
  dv_rq q;
  q.mult = dv_load(w + 16 * 7);
  q.mult_odd = dv_load(w + 16 * 8);
  q.r9 = dv_load(w + 16 * 9);
  q.r10 = dv_load(w + 16 * 10);
  q.r11 = dv_load(w + 16 * 11);
  q.r12 = dv_load(w + 16 * 12);
  q.r13 = dv_load(w + 16 * 13);
  q.r14 = dv_load(w + 16 * 14);
  q.r15 = dv_load(w + 16 * 15);
  q.out_zp = _mm512_set1_epi32(p->output_zp);
  q.lo = _mm512_set1_epi32(p->act_min);
  q.hi = _mm512_set1_epi32(p->act_max);
  q.one = _mm512_set1_epi32(1);
  return q;
}

INL void dv_src_init(col_src *src, const kiln_dw_s8_params *p) {
  /* Dword 4m + r of the permuted vector is dword m of lane (row) r; byte
   * 4j + r of a lane after the shuffle is byte 4r + j before it. */
  src->perm = _mm512_set_epi32(15, 11, 7, 3, 14, 10, 6, 2, 13, 9, 5, 1, 12, 8, 4, 0);
  src->ctl = _mm512_set4_epi32(0x0f0b0703, 0x0e0a0602, 0x0d090501, 0x0c080400);
  /* Opaque to the compiler: clang would otherwise merge vpermd and vpshufb
   * into a longer sequence of 256-bit shuffles. */
  __asm__("" : "+v"(src->perm), "+v"(src->ctl));
  src->flip = _mm512_set1_epi8(-128);
  src->pad = _mm512_set1_epi8((char)(p->input_zp ^ 0x80));
}

INL void dv_src_group(col_src *src, int32_t n) { src->mask = (__mmask16)((1u << n) - 1u); }

INL __m128i load16(const col_src *src, const int8_t *p, bool tail) {
  return tail ? _mm_maskz_loadu_epi8(src->mask, p)
              : _mm_loadu_si128((const __m128i *)(const void *)p);
}

/* The column vector of input column ix (elements apart: cs); a fourth row
 * that is not needed is left undefined (its weights are 0). */
INL __m512i column(const col_src *src, int32_t ix, int32_t in_w, size_t cs, int32_t nrows,
                   bool tail) {
  if ((uint32_t)ix >= (uint32_t)in_w) return src->pad;
  const size_t off = (size_t)ix * cs;
  __m512i v = _mm512_castsi128_si512(load16(src, src->rows[0] + off, tail));
  v = _mm512_inserti32x4(v, load16(src, src->rows[1] + off, tail), 1);
  v = _mm512_inserti32x4(v, load16(src, src->rows[2] + off, tail), 2);
  if (nrows == 4) v = _mm512_inserti32x4(v, load16(src, src->rows[3] + off, tail), 3);
  v = _mm512_shuffle_epi8(_mm512_permutexvar_epi32(src->perm, v), src->ctl);
  return _mm512_xor_si512(v, src->flip);
}

INL __m512i requant(__m512i acc, const dv_rq *q, bool general, bool clamp) {
  if (!general) {
    /* acc holds acc + 2^31: the high halves of 2 * (acc * M + R) are y. */
    const __m512i pe = _mm512_add_epi64(_mm512_mul_epu32(acc, q->mult), q->r10);
    const __m512i po =
        _mm512_add_epi64(_mm512_mul_epu32(_mm512_srli_epi64(acc, 32), q->mult_odd), q->r11);
    __m512i y = _mm512_mask_shuffle_epi32(po, 0x5555, pe, _MM_PERM_CDAB);
    y = _mm512_mask_sub_epi32(y, _mm512_cmplt_epi32_mask(y, q->r12), y, q->one);
    y = _mm512_srav_epi32(y, q->r9);
    return clamp ? _mm512_min_epi32(_mm512_max_epi32(y, q->lo), q->hi) : y;
  }
  acc = _mm512_sllv_epi32(acc, q->r9);
  const __m512i pe = _mm512_mul_epi32(acc, q->mult);
  const __m512i po = _mm512_mul_epi32(_mm512_srli_epi64(acc, 32), q->mult_odd);
  __m512i se = _mm512_add_epi64(pe, q->r10);
  __m512i so = _mm512_add_epi64(po, q->r11);
  se = _mm512_mask_sub_epi64(se, _mm512_movepi64_mask(pe), se, q->r14);
  so = _mm512_mask_sub_epi64(so, _mm512_movepi64_mask(po), so, q->r15);
  se = _mm512_srav_epi64(se, q->r12);
  so = _mm512_srav_epi64(so, q->r13);
  __m512i v = _mm512_mask_shuffle_epi32(se, 0xAAAA, so, _MM_PERM_CDAB);
  v = _mm512_add_epi32(v, q->out_zp);
  return _mm512_min_epi32(_mm512_max_epi32(v, q->lo), q->hi);
}

INL void store(int8_t *dst, __m512i v, const col_src *src, bool tail) {
  if (tail)
    _mm512_mask_cvtsepi32_storeu_epi8(dst, src->mask, v);
  else {
    /* Converted in a register: clang would store with vpmovsdb itself, which
     * is slow on AMD. */
    __m128i b = _mm512_cvtsepi32_epi8(v);
    __asm__("" : "+v"(b));
    _mm_storeu_si128((__m128i *)(void *)dst, b);
  }
}

#include "kernels/x86/dw_dot4_tmpl.h"

const kiln_dw_dot4_kernel kiln_dw_dot4_avx512vnni = {
    "s8_dw_3x3_avx512vnni", KILN_ISA_AVX512 | KILN_ISA_AVX512VNNI, 16, dw_s8_3x3_avx512vnni};
