/*
 * kernels/x86/misc_vec_avx2.h: the vector operations of the kernel
 * templates (see misc_vec_avx512.h for the list) for AVX2: 8 float or int32
 * lanes; partial float vectors use maskload / maskstore, partial int8
 * vectors go through a small buffer. Included only by *_avx2.c files.
 */
#ifndef KILN_KERNELS_X86_MISC_VEC_AVX2_H
#define KILN_KERNELS_X86_MISC_VEC_AVX2_H

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "kernels/x86/dw_requant_avx2.h"

/* Lanes [0, n) set. */
static inline __m256i kiln_lanes_below_avx2(int32_t n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

static inline __m256i kiln_load_s8x8_avx2(const int8_t *p) {
  return _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)p));
}

static inline __m256i kiln_load_s8n_avx2(const int8_t *p, int32_t n) {
  int8_t buf[8] = {0};
  memcpy(buf, p, (size_t)n);
  return kiln_load_s8x8_avx2(buf);
}

/* Eight int32 lanes (already within int8) to eight bytes, in order. */
static inline __m128i kiln_pack_s8x8_avx2(__m256i v) {
  const __m128i w = _mm_packs_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  return _mm_packs_epi16(w, w);
}

static inline void kiln_store_s8n_avx2(int8_t *p, __m256i v, int32_t n) {
  int8_t buf[16];
  _mm_storeu_si128((__m128i *)(void *)buf, kiln_pack_s8x8_avx2(v));
  memcpy(p, buf, (size_t)n);
}

#define VT 8
#define KX(name) name##_avx2

#define VF __m256
#define VF_ZERO() _mm256_setzero_ps()
#define VF_SET1(x) _mm256_set1_ps(x)
#define VF_LOAD(p) _mm256_loadu_ps(p)
#define VF_LOADN(p, n) _mm256_maskload_ps(p, kiln_lanes_below_avx2(n))
#define VF_STORE(p, v) _mm256_storeu_ps(p, v)
#define VF_STOREN(p, v, n) _mm256_maskstore_ps(p, kiln_lanes_below_avx2(n), v)
#define VF_ADD _mm256_add_ps
#define VF_MUL _mm256_mul_ps
#define VF_DIV _mm256_div_ps
#define VF_MIN _mm256_min_ps
#define VF_MAX _mm256_max_ps
#define VF_SELECT_GE0(x, a, b) \
  _mm256_blendv_ps(b, a, _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_GE_OQ))

#define VI __m256i
#define VI_SET1(x) _mm256_set1_epi32(x)
#define VI_LOAD(p) _mm256_loadu_si256((const __m256i *)(const void *)(p))
#define VI_LOAD_S8(p) kiln_load_s8x8_avx2(p)
#define VI_LOAD_S8N(p, n) kiln_load_s8n_avx2(p, n)
#define VI_STORE_S8(p, v) _mm_storel_epi64((__m128i *)(void *)(p), kiln_pack_s8x8_avx2(v))
#define VI_STORE_S8N(p, v, n) kiln_store_s8n_avx2(p, v, n)
#define VI_ADD _mm256_add_epi32
#define VI_SUB _mm256_sub_epi32
#define VI_SRAI _mm256_srai_epi32
#define VI_SRLI _mm256_srli_epi32
#define VI_MULLO _mm256_mullo_epi32
#define VI_MADD _mm256_madd_epi16
#define VI_MIN _mm256_min_epi32
#define VI_MAX _mm256_max_epi32
#define VI_IF_GT0(x, v) _mm256_and_si256(_mm256_cmpgt_epi32(x, _mm256_setzero_si256()), v)
#define VI_SELECT_GE0(x, a, b) \
  _mm256_blendv_epi8(a, b, _mm256_cmpgt_epi32(_mm256_setzero_si256(), x))
#define VI_MBQM kiln_mbqm_avx2
#define VI_TO_VF _mm256_cvtepi32_ps
#define VF_TO_VI_TRUNC _mm256_cvttps_epi32

#endif
