/*
 * kernels/x86/prelu_tmpl.h: the PRELU kernels of kernels/misc_fast.h over
 * the vector operations of misc_vec_avx2.h / misc_vec_avx512.h (included by
 * prelu_fast_avx2.c and prelu_fast_avx512.c).
 *
 * Float: x >= 0 ? x : x * alpha (NaN takes the product, as in the
 * reference). int8: both of the reference's branches are computed, the
 * input's rescale when x - zp >= 0 and the rescaled product with alpha
 * otherwise, and one is kept per lane; then the output zero point and the
 * clamp to int8.
 */
#include <stdint.h>

#include "kernels/misc_fast.h"

#define PRELU_INLINE static inline __attribute__((always_inline))

PRELU_INLINE void f32_prelu_run(int64_t n, const float *x, int64_t sx, const float *alpha,
                                int64_t sa, float *out) {
  const VF vx = VF_SET1(*x), va = VF_SET1(*alpha);
  for (int64_t i = 0; i < n; i += VT) {
    const int32_t r = n - i < VT ? (int32_t)(n - i) : VT;
    const VF v = sx ? (r == VT ? VF_LOAD(x + i) : VF_LOADN(x + i, r)) : vx;
    const VF a = sa ? (r == VT ? VF_LOAD(alpha + i) : VF_LOADN(alpha + i, r)) : va;
    const VF y = VF_SELECT_GE0(v, v, VF_MUL(v, a));
    if (r == VT)
      VF_STORE(out + i, y);
    else
      VF_STOREN(out + i, y, r);
  }
}

void KX(kiln_f32_prelu)(int64_t n, const float *x, int64_t sx, const float *alpha, int64_t sa,
                        float *out) {
  if (sx && sa)
    f32_prelu_run(n, x, 1, alpha, 1, out);
  else if (sx)
    f32_prelu_run(n, x, 1, alpha, 0, out);
  else if (sa)
    f32_prelu_run(n, x, 0, alpha, 1, out);
  else
    f32_prelu_run(n, x, 0, alpha, 0, out);
}

/* The vectors of one rescale by multiplier * 2^shift. */
typedef struct prelu_rq {
  VI mult, left, right, mask, half;
} prelu_rq;

PRELU_INLINE prelu_rq prelu_rq_make(int32_t mult, int32_t shift) {
  const int32_t right = shift < 0 ? -shift : 0;
  const int32_t mask = (int32_t)(((int64_t)1 << right) - 1);
  prelu_rq r = {VI_SET1(mult), VI_SET1(shift > 0 ? shift : 0), VI_SET1(right), VI_SET1(mask),
                VI_SET1(mask >> 1)};
  return r;
}

PRELU_INLINE void s8_prelu_run(int64_t n, const int8_t *x, int64_t sx, const int8_t *alpha,
                               int64_t sa, int8_t *out, const kiln_prelu_q *p) {
  const prelu_rq pos = prelu_rq_make(p->pos_multiplier, p->pos_shift);
  const prelu_rq neg = prelu_rq_make(p->neg_multiplier, p->neg_shift);
  const VI in_off = VI_SET1(p->in_offset), alpha_off = VI_SET1(p->alpha_offset);
  const VI out_off = VI_SET1(p->out_offset), lo = VI_SET1(-128), hi = VI_SET1(127);
  const VI vx = VI_SET1(*x), va = VI_SET1(*alpha);
  for (int64_t i = 0; i < n; i += VT) {
    const int32_t r = n - i < VT ? (int32_t)(n - i) : VT;
    const VI xv = sx ? (r == VT ? VI_LOAD_S8(x + i) : VI_LOAD_S8N(x + i, r)) : vx;
    const VI av = sa ? (r == VT ? VI_LOAD_S8(alpha + i) : VI_LOAD_S8N(alpha + i, r)) : va;
    const VI in = VI_ADD(in_off, xv);
    const VI up = VI_MBQM(in, pos.mult, pos.left, pos.right, pos.mask, pos.half);
    const VI down = VI_MBQM(VI_MULLO(in, VI_ADD(alpha_off, av)), neg.mult, neg.left, neg.right,
                            neg.mask, neg.half);
    const VI y = VI_MIN(VI_MAX(VI_ADD(VI_SELECT_GE0(in, up, down), out_off), lo), hi);
    if (r == VT)
      VI_STORE_S8(out + i, y);
    else
      VI_STORE_S8N(out + i, y, r);
  }
}

void KX(kiln_s8_prelu)(int64_t n, const int8_t *x, int64_t sx, const int8_t *alpha, int64_t sa,
                       int8_t *out, const kiln_prelu_q *p) {
  if (sx && sa)
    s8_prelu_run(n, x, 1, alpha, 1, out, p);
  else if (sx)
    s8_prelu_run(n, x, 1, alpha, 0, out, p);
  else if (sa)
    s8_prelu_run(n, x, 0, alpha, 1, out, p);
  else
    s8_prelu_run(n, x, 0, alpha, 0, out, p);
}
