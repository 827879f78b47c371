/*
 * kernels/x86/resize_tmpl.h: the RESIZE_BILINEAR kernels of
 * kernels/misc_fast.h over the vector operations of misc_vec_avx2.h /
 * misc_vec_avx512.h (included by resize_fast_avx2.c and resize_fast_avx512.c).
 *
 * Per output pixel the four source pixels and weights come from the plan;
 * each channel vector then evaluates the reference's expression: float
 * v00 * (1 - dy) * (1 - dx) + v10 * dy * (1 - dx) + v01 * (1 - dy) * dx +
 * v11 * dy * dx + 0 term by term (no fused multiply-add); int8 the 10-bit
 * fixed-point sum (at most 2^29 in magnitude, so int32 lanes hold it) plus
 * +-2^19, divided by 2^20 truncating.
 */
#include <stddef.h>
#include <stdint.h>

#include "kernels/misc_fast.h"

#define RESIZE_INLINE static inline __attribute__((always_inline))

/* Pointers to the four source pixels of output (r, x): r is the row index in
 * batch * out_h. */
typedef struct resize_src {
  size_t p00, p10, p01, p11; /* element offsets of (lo,lo) (hi,lo) (lo,hi) (hi,hi), y first */
} resize_src;

RESIZE_INLINE resize_src resize_source(const kiln_resize_plan *rp, int64_t b, int32_t y,
                                       int32_t x) {
  const size_t C = (size_t)rp->channels;
  const size_t row_lo = ((size_t)b * (size_t)rp->in_h + (size_t)rp->y_lo[y]) * (size_t)rp->in_w;
  const size_t row_hi = ((size_t)b * (size_t)rp->in_h + (size_t)rp->y_hi[y]) * (size_t)rp->in_w;
  resize_src s;
  s.p00 = (row_lo + (size_t)rp->x_lo[x]) * C;
  s.p10 = (row_hi + (size_t)rp->x_lo[x]) * C;
  s.p01 = (row_lo + (size_t)rp->x_hi[x]) * C;
  s.p11 = (row_hi + (size_t)rp->x_hi[x]) * C;
  return s;
}

RESIZE_INLINE VF resize_f32_vec(const float *in, const resize_src *s, int32_t c, VF wy0, VF wy1,
                                VF wx0, VF wx1, int32_t n) {
  const VF v00 = n == VT ? VF_LOAD(in + s->p00 + c) : VF_LOADN(in + s->p00 + c, n);
  const VF v10 = n == VT ? VF_LOAD(in + s->p10 + c) : VF_LOADN(in + s->p10 + c, n);
  const VF v01 = n == VT ? VF_LOAD(in + s->p01 + c) : VF_LOADN(in + s->p01 + c, n);
  const VF v11 = n == VT ? VF_LOAD(in + s->p11 + c) : VF_LOADN(in + s->p11 + c, n);
  const VF a = VF_MUL(VF_MUL(v00, wy0), wx0);
  const VF b = VF_MUL(VF_MUL(v10, wy1), wx0);
  const VF cc = VF_MUL(VF_MUL(v01, wy0), wx1);
  const VF d = VF_MUL(VF_MUL(v11, wy1), wx1);
  return VF_ADD(VF_ADD(VF_ADD(VF_ADD(a, b), cc), d), VF_ZERO());
}

void KX(kiln_f32_resize_bilinear)(const kiln_resize_plan *rp, const float *in, float *out,
                                  int64_t r0, int64_t r1) {
  const int32_t C = rp->channels;
  for (int64_t r = r0; r < r1; r++) {
    const int64_t b = r / rp->out_h;
    const int32_t y = (int32_t)(r % rp->out_h);
    const float dy = rp->fy[y];
    const VF wy0 = VF_SET1(1.0f - dy), wy1 = VF_SET1(dy);
    float *dst = out + (size_t)r * (size_t)rp->out_w * (size_t)C;
    for (int32_t x = 0; x < rp->out_w; x++, dst += C) {
      const resize_src s = resize_source(rp, b, y, x);
      const float dx = rp->fx[x];
      const VF wx0 = VF_SET1(1.0f - dx), wx1 = VF_SET1(dx);
      int32_t c = 0;
      for (; c + VT <= C; c += VT)
        VF_STORE(dst + c, resize_f32_vec(in, &s, c, wy0, wy1, wx0, wx1, VT));
      if (c < C) VF_STOREN(dst + c, resize_f32_vec(in, &s, c, wy0, wy1, wx0, wx1, C - c), C - c);
    }
  }
}

RESIZE_INLINE VI resize_s8_vec(const int8_t *in, const resize_src *s, int32_t c, VI w00, VI w10,
                               VI w01, VI w11, int32_t n) {
  const VI v00 = n == VT ? VI_LOAD_S8(in + s->p00 + c) : VI_LOAD_S8N(in + s->p00 + c, n);
  const VI v10 = n == VT ? VI_LOAD_S8(in + s->p10 + c) : VI_LOAD_S8N(in + s->p10 + c, n);
  const VI v01 = n == VT ? VI_LOAD_S8(in + s->p01 + c) : VI_LOAD_S8N(in + s->p01 + c, n);
  const VI v11 = n == VT ? VI_LOAD_S8(in + s->p11 + c) : VI_LOAD_S8N(in + s->p11 + c, n);
  const VI sum = VI_ADD(VI_ADD(VI_MULLO(v00, w00), VI_MULLO(v10, w10)),
                        VI_ADD(VI_MULLO(v01, w01), VI_MULLO(v11, w11)));
  /* + 2^19 when sum > 0, else - 2^19; then divide by 2^20 truncating
   * toward zero: negative values get 2^20 - 1 added before the shift. */
  const VI half = VI_SET1(1 << 19);
  const VI t = VI_ADD(VI_SUB(sum, half), VI_IF_GT0(sum, VI_ADD(half, half)));
  return VI_SRAI(VI_ADD(t, VI_SRLI(VI_SRAI(t, 31), 12)), 20);
}

void KX(kiln_s8_resize_bilinear)(const kiln_resize_plan *rp, const int8_t *in, int8_t *out,
                                 int64_t r0, int64_t r1) {
  const int32_t C = rp->channels;
  for (int64_t r = r0; r < r1; r++) {
    const int64_t b = r / rp->out_h;
    const int32_t y = (int32_t)(r % rp->out_h);
    const int32_t wy1 = rp->qy[y], wy0 = (1 << 10) - wy1;
    int8_t *dst = out + (size_t)r * (size_t)rp->out_w * (size_t)C;
    for (int32_t x = 0; x < rp->out_w; x++, dst += C) {
      const resize_src s = resize_source(rp, b, y, x);
      const int32_t wx1 = rp->qx[x], wx0 = (1 << 10) - wx1;
      const VI w00 = VI_SET1(wy0 * wx0), w10 = VI_SET1(wy1 * wx0);
      const VI w01 = VI_SET1(wy0 * wx1), w11 = VI_SET1(wy1 * wx1);
      int32_t c = 0;
      for (; c + VT <= C; c += VT)
        VI_STORE_S8(dst + c, resize_s8_vec(in, &s, c, w00, w10, w01, w11, VT));
      if (c < C) VI_STORE_S8N(dst + c, resize_s8_vec(in, &s, c, w00, w10, w01, w11, C - c), C - c);
    }
  }
}
