/*
 * kernels/x86/add_tmpl.h: the ADD kernels of kernels/misc_fast.h over the
 * vector operations of misc_vec_avx2.h / misc_vec_avx512.h (included by
 * add_fast_avx2.c and add_fast_avx512.c).
 *
 * Float: a + b, then min(max(x, act_min), act_max) as the reference clamps.
 * int8: each input (q - zp) << 20 is rescaled to the common scale, the two
 * are summed and rescaled to the output (TFLite's quantized add); a
 * broadcast input's rescaled value is computed once per run, in scalar code
 * with the same arithmetic.
 */
#include <stdint.h>

#include "kernels/misc_fast.h"
#include "kernels/quant_math.h"

#define ADD_INLINE static inline __attribute__((always_inline))

/* The float run with the strides known (0 or 1) at compile time. */
ADD_INLINE void f32_add_run(int64_t n, const float *a, int64_t sa, const float *b, int64_t sb,
                            float *out, float act_min, float act_max) {
  const VF lo = VF_SET1(act_min), hi = VF_SET1(act_max);
  const VF va = VF_SET1(*a), vb = VF_SET1(*b);
  for (int64_t i = 0; i < n; i += VT) {
    const int32_t r = n - i < VT ? (int32_t)(n - i) : VT;
    const VF x = sa ? (r == VT ? VF_LOAD(a + i) : VF_LOADN(a + i, r)) : va;
    const VF y = sb ? (r == VT ? VF_LOAD(b + i) : VF_LOADN(b + i, r)) : vb;
    const VF v = VF_MIN(hi, VF_MAX(lo, VF_ADD(x, y)));
    if (r == VT)
      VF_STORE(out + i, v);
    else
      VF_STOREN(out + i, v, r);
  }
}

void KX(kiln_f32_add)(int64_t n, const float *a, int64_t sa, const float *b, int64_t sb, float *out,
                      float act_min, float act_max) {
  if (sa && sb)
    f32_add_run(n, a, 1, b, 1, out, act_min, act_max);
  else if (sa)
    f32_add_run(n, a, 1, b, 0, out, act_min, act_max);
  else if (sb)
    f32_add_run(n, a, 0, b, 1, out, act_min, act_max);
  else
    f32_add_run(n, a, 0, b, 0, out, act_min, act_max);
}

/* The vectors of one rescale by multiplier * 2^shift, shift <= 0. */
typedef struct add_rq {
  VI mult, left, right, mask, half;
} add_rq;

static inline add_rq add_rq_make(int32_t mult, int32_t left, int32_t shift) {
  const int32_t right = -shift;
  const int32_t mask = (int32_t)(((int64_t)1 << right) - 1);
  add_rq r = {VI_SET1(mult), VI_SET1(left), VI_SET1(right), VI_SET1(mask), VI_SET1(mask >> 1)};
  return r;
}

static inline VI add_rescale(VI x, const add_rq *r) {
  return VI_MBQM(x, r->mult, r->left, r->right, r->mask, r->half);
}

/* One input's rescaled value, as the reference computes it. */
static inline int32_t add_scaled_one(int32_t q, int32_t offset, int32_t left, int32_t mult,
                                     int32_t shift) {
  return kiln_mul_by_quantized_multiplier_smaller_than_one(kiln_shl_wrap(offset + q, left), mult,
                                                           shift);
}

/* out = clamp(rescale_out(s1 + s2) + zp); s1 / s2 either computed from
 * loaded values or the broadcast value's. */
static inline VI add_finish(VI s1, VI s2, const add_rq *out_rq, VI out_zp, VI lo, VI hi) {
  const VI v = VI_ADD(add_rescale(VI_ADD(s1, s2), out_rq), out_zp);
  return VI_MIN(VI_MAX(v, lo), hi);
}

ADD_INLINE void s8_add_run(int64_t n, const int8_t *a, int64_t sa, const int8_t *b, int64_t sb,
                           int8_t *out, const kiln_addsub_q *p) {
  const add_rq rq1 = add_rq_make(p->in1_multiplier, p->left_shift, p->in1_shift);
  const add_rq rq2 = add_rq_make(p->in2_multiplier, p->left_shift, p->in2_shift);
  const add_rq rqo = add_rq_make(p->out_multiplier, 0, p->out_shift);
  const VI off1 = VI_SET1(p->in1_offset), off2 = VI_SET1(p->in2_offset);
  const VI out_zp = VI_SET1(p->out_offset), lo = VI_SET1(p->act_min), hi = VI_SET1(p->act_max);
  /* A broadcast input's rescaled value, once. */
  const VI fixed1 = VI_SET1(
      sa ? 0 : add_scaled_one(*a, p->in1_offset, p->left_shift, p->in1_multiplier, p->in1_shift));
  const VI fixed2 = VI_SET1(
      sb ? 0 : add_scaled_one(*b, p->in2_offset, p->left_shift, p->in2_multiplier, p->in2_shift));
  for (int64_t i = 0; i < n; i += VT) {
    const int32_t r = n - i < VT ? (int32_t)(n - i) : VT;
    VI s1 = fixed1, s2 = fixed2;
    if (sa)
      s1 = add_rescale(VI_ADD(r == VT ? VI_LOAD_S8(a + i) : VI_LOAD_S8N(a + i, r), off1), &rq1);
    if (sb)
      s2 = add_rescale(VI_ADD(r == VT ? VI_LOAD_S8(b + i) : VI_LOAD_S8N(b + i, r), off2), &rq2);
    const VI v = add_finish(s1, s2, &rqo, out_zp, lo, hi);
    if (r == VT)
      VI_STORE_S8(out + i, v);
    else
      VI_STORE_S8N(out + i, v, r);
  }
}

void KX(kiln_s8_add)(int64_t n, const int8_t *a, int64_t sa, const int8_t *b, int64_t sb,
                     int8_t *out, const kiln_addsub_q *p) {
  if (sa && sb)
    s8_add_run(n, a, 1, b, 1, out, p);
  else if (sa)
    s8_add_run(n, a, 1, b, 0, out, p);
  else if (sb)
    s8_add_run(n, a, 0, b, 1, out, p);
  else
    s8_add_run(n, a, 0, b, 0, out, p);
}
