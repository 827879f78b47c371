/*
 * kernels/x86/misc_vec_avx512.h: the vector operations the kernel templates
 * (dw_tmpl.h, add_tmpl.h, pool_tmpl.h, mean_tmpl.h, resize_tmpl.h) are
 * written in, for AVX-512 F/BW/DQ/VL: 16 float or int32 lanes, masked loads
 * and stores for partial vectors. Included only by *_avx512.c files.
 *
 *   VT                  lanes per vector
 *   KX(name)            name##_avx512 (the exported kernel names)
 *   VF                  float vector: VF_ZERO(), VF_SET1, VF_LOAD(p), VF_LOADN(p, n)
 *                       (first n lanes, rest 0), VF_STORE, VF_STOREN(p, v, n),
 *                       VF_ADD, VF_MUL, VF_DIV, VF_MIN(a, b) = a < b ? a : b,
 *                       VF_MAX(a, b) = a > b ? a : b (minps / maxps: b when NaN),
 *                       VF_SELECT_GE0(x, a, b) = x >= 0 ? a : b (b when x is NaN)
 *   VI                  int32 vector: VI_SET1, VI_LOAD(p) (int32s), VI_LOAD_S8(p) /
 *                       VI_LOAD_S8N(p, n) (int8s widened), VI_STORE_S8(p, v) /
 *                       VI_STORE_S8N(p, v, n) (lanes within int8 narrowed),
 *                       VI_ADD, VI_SUB, VI_SRAI / VI_SRLI (by a constant), VI_MULLO,
 *                       VI_MADD (vpmaddwd), VI_MIN, VI_MAX,
 *                       VI_IF_GT0(x, v) (v where x > 0, else 0),
 *                       VI_SELECT_GE0(x, a, b) (x >= 0 ? a : b),
 *                       VI_MBQM(x, mult, left, right, mask, half) (dw_requant_*.h),
 *                       VI_TO_VF (exact below 2^24), VF_TO_VI_TRUNC
 */
#ifndef KILN_KERNELS_X86_MISC_VEC_AVX512_H
#define KILN_KERNELS_X86_MISC_VEC_AVX512_H

#include <immintrin.h>

#include "kernels/x86/dw_requant_avx512.h"

#define VT 16
#define KX(name) name##_avx512
#define VMASK(n) ((__mmask16)((1u << (n)) - 1u))

#define VF __m512
#define VF_ZERO() _mm512_setzero_ps()
#define VF_SET1(x) _mm512_set1_ps(x)
#define VF_LOAD(p) _mm512_loadu_ps(p)
#define VF_LOADN(p, n) _mm512_maskz_loadu_ps(VMASK(n), p)
#define VF_STORE(p, v) _mm512_storeu_ps(p, v)
#define VF_STOREN(p, v, n) _mm512_mask_storeu_ps(p, VMASK(n), v)
#define VF_ADD _mm512_add_ps
#define VF_MUL _mm512_mul_ps
#define VF_DIV _mm512_div_ps
#define VF_MIN _mm512_min_ps
#define VF_MAX _mm512_max_ps
#define VF_SELECT_GE0(x, a, b) \
  _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_GE_OQ), b, a)

#define VI __m512i
#define VI_SET1(x) _mm512_set1_epi32(x)
#define VI_LOAD(p) _mm512_loadu_si512(p)
#define VI_LOAD_S8(p) _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(const void *)(p)))
#define VI_LOAD_S8N(p, n) _mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(VMASK(n), p))
#define VI_STORE_S8(p, v) _mm_storeu_si128((__m128i *)(void *)(p), _mm512_cvtsepi32_epi8(v))
#define VI_STORE_S8N(p, v, n) _mm_mask_storeu_epi8(p, VMASK(n), _mm512_cvtsepi32_epi8(v))
#define VI_ADD _mm512_add_epi32
#define VI_SUB _mm512_sub_epi32
#define VI_SRAI _mm512_srai_epi32
#define VI_SRLI _mm512_srli_epi32
#define VI_MULLO _mm512_mullo_epi32
#define VI_MADD _mm512_madd_epi16
#define VI_MIN _mm512_min_epi32
#define VI_MAX _mm512_max_epi32
#define VI_IF_GT0(x, v) \
  _mm512_maskz_mov_epi32(_mm512_cmpgt_epi32_mask(x, _mm512_setzero_si512()), v)
#define VI_SELECT_GE0(x, a, b) \
  _mm512_mask_blend_epi32(_mm512_cmpge_epi32_mask(x, _mm512_setzero_si512()), b, a)
#define VI_MBQM kiln_mbqm_avx512
#define VI_TO_VF _mm512_cvtepi32_ps
#define VF_TO_VI_TRUNC _mm512_cvttps_epi32

#endif
