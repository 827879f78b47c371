/*
 * kernels/x86/dw_tmpl.h: the depthwise conv kernels of kernels/dwconv.h,
 * written once over the vector operations of misc_vec_avx2.h /
 * misc_vec_avx512.h (VT channels per vector, which is also the packing
 * tile; KX(name) gives the exported names), included by dw_conv_avx2.c and
 * dw_conv_avx512.c.
 *
 * Loop order: for each output row, for each channel tile, the tile's bias and
 * taps are loaded once and the row's pixels are computed left to right.
 * Pixels whose window lies inside the image columns take a path without
 * checks; the others skip (float) or read the zero point for (int8) the
 * columns outside. Rows outside the image are skipped (float) or read from
 * a row of zero points (int8), so each output's arithmetic is the same
 * whoever computes it and however the rows and channels are split.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/dwconv.h"

#define DW_INLINE static inline __attribute__((always_inline))
#define DW_MAXK 5

/* Output columns [*x_lo, *x_hi) whose k-wide window lies inside the input. */
DW_INLINE void dw_interior(const kiln_dw_shape *s, int32_t *x_lo, int32_t *x_hi) {
  int32_t lo = (s->pad_w + s->stride_w - 1) / s->stride_w;
  const int32_t last = s->in_w - s->k + s->pad_w; /* largest ix0 + pad_w that fits */
  int32_t hi = last >= 0 ? last / s->stride_w + 1 : 0;
  if (lo > s->out_w) lo = s->out_w;
  if (hi > s->out_w) hi = s->out_w;
  if (hi < lo) hi = lo;
  *x_lo = lo;
  *x_hi = hi;
}

/* ---- float32 ---- */

/* One output pixel of one tile: rows[fy] points at the tile's channels of
 * input row fy (NULL outside the image); the window starts at column ix0,
 * which for interior pixels is inside the image, at element offset off. */
DW_INLINE VF dw_f32_pixel(const float *const *rows, int32_t ix0, size_t off, int32_t in_w,
                          size_t cs, const VF *w, VF bias, int32_t k, bool interior, int32_t n) {
  VF acc = VF_ZERO();
#pragma GCC unroll 5
  for (int32_t fy = 0; fy < k; fy++) {
    if (!rows[fy]) continue;
    const float *win = interior ? rows[fy] + off : rows[fy];
#pragma GCC unroll 5
    for (int32_t fx = 0; fx < k; fx++) {
      const int32_t ix = ix0 + fx;
      if (!interior && (ix < 0 || ix >= in_w)) continue;
      const float *src = win + (size_t)(interior ? fx : ix) * cs;
      acc = VF_ADD(acc, VF_MUL(n == VT ? VF_LOAD(src) : VF_LOADN(src, n), w[fy * k + fx]));
    }
  }
  return VF_ADD(acc, bias);
}

/* Output pixels [ox0, ox1) of one row of one tile (n channels). */
DW_INLINE void dw_f32_span(const kiln_dw_f32_params *p, const float *const *rows, float *orow,
                           const VF *w, VF bias, int32_t ox0, int32_t ox1, int32_t k, bool interior,
                           int32_t n) {
  const kiln_dw_shape *s = &p->s;
  const VF lo = VF_SET1(p->act_min), hi = VF_SET1(p->act_max);
  const size_t cs = (size_t)s->channels, step = (size_t)s->stride_w * cs;
  /* Interior only: the window's first column is >= 0. */
  size_t off = interior ? (size_t)(ox0 * s->stride_w - s->pad_w) * cs : 0;
  for (int32_t ox = ox0; ox < ox1; ox++, off += step) {
    const int32_t ix0 = ox * s->stride_w - s->pad_w;
    VF v = dw_f32_pixel(rows, ix0, off, s->in_w, cs, w, bias, k, interior, n);
    v = VF_MIN(hi, VF_MAX(lo, v));
    float *dst = orow + (size_t)ox * cs;
    if (n == VT)
      VF_STORE(dst, v);
    else
      VF_STOREN(dst, v, n);
  }
}

/* One output row of one tile (n channels). */
DW_INLINE void dw_f32_row(const kiln_dw_f32_params *p, const float *const *rows, float *orow,
                          const float *wt, int32_t x_lo, int32_t x_hi, int32_t k, int32_t n) {
  const VF bias = VF_LOAD(wt);
  VF w[DW_MAXK * DW_MAXK];
#pragma GCC unroll 25
  for (int32_t t = 0; t < k * k; t++) w[t] = VF_LOAD(wt + (size_t)(1 + t) * VT);
  dw_f32_span(p, rows, orow, w, bias, 0, x_lo, k, false, n);
  dw_f32_span(p, rows, orow, w, bias, x_lo, x_hi, k, true, n);
  dw_f32_span(p, rows, orow, w, bias, x_hi, p->s.out_w, k, false, n);
}

DW_INLINE void dw_f32(const kiln_dw_f32_params *p, const float *in, float *out, int32_t oy0,
                      int32_t oy1, int32_t c0, int32_t c1, int32_t k) {
  const kiln_dw_shape *s = &p->s;
  const size_t in_row = (size_t)s->in_w * (size_t)s->channels;
  const size_t out_row = (size_t)s->out_w * (size_t)s->channels;
  const size_t tile_floats = (size_t)(1 + k * k) * VT;
  int32_t x_lo, x_hi;
  dw_interior(s, &x_lo, &x_hi);
  for (int32_t oy = oy0; oy < oy1; oy++) {
    const int32_t iy0 = oy * s->stride_h - s->pad_h;
    for (int32_t c = c0; c < c1; c += VT) {
      const float *rows[DW_MAXK];
      for (int32_t fy = 0; fy < k; fy++) {
        const int32_t iy = iy0 + fy;
        rows[fy] = iy >= 0 && iy < s->in_h ? in + (size_t)iy * in_row + (size_t)c : NULL;
      }
      const float *wt = p->packed + (size_t)(c / VT) * tile_floats;
      float *orow = out + (size_t)oy * out_row + (size_t)c;
      if (c1 - c >= VT)
        dw_f32_row(p, rows, orow, wt, x_lo, x_hi, k, VT);
      else
        dw_f32_row(p, rows, orow, wt, x_lo, x_hi, k, c1 - c);
    }
  }
}

void KX(kiln_f32_dw_3x3)(const kiln_dw_f32_params *p, const float *in, float *out, int32_t oy0,
                         int32_t oy1, int32_t c0, int32_t c1) {
  dw_f32(p, in, out, oy0, oy1, c0, c1, 3);
}

void KX(kiln_f32_dw_5x5)(const kiln_dw_f32_params *p, const float *in, float *out, int32_t oy0,
                         int32_t oy1, int32_t c0, int32_t c1) {
  dw_f32(p, in, out, oy0, oy1, c0, c1, 5);
}

/* ---- int8 ---- */

/* One output pixel of one tile, arguments as for dw_f32_pixel except that
 * rows outside the image point into the zero-point row. Columns outside the
 * image read the zero point too: every tap adds x * w, and the zp * w of
 * padding taps is cancelled by the folded bias. */
DW_INLINE VI dw_s8_pixel(const int8_t *const *rows, int32_t ix0, size_t off, int32_t in_w,
                         size_t cs, const VI *w, VI acc, VI zp, int32_t k, bool interior,
                         int32_t n) {
#pragma GCC unroll 5
  for (int32_t fy = 0; fy < k; fy++) {
    const int8_t *win = interior ? rows[fy] + off : rows[fy];
#pragma GCC unroll 5
    for (int32_t fx = 0; fx < k; fx++) {
      const int32_t ix = ix0 + fx;
      VI x = zp;
      if (interior || (ix >= 0 && ix < in_w)) {
        const int8_t *src = win + (size_t)(interior ? fx : ix) * cs;
        x = n == VT ? VI_LOAD_S8(src) : VI_LOAD_S8N(src, n);
      }
      acc = VI_ADD(acc, VI_MADD(x, w[fy * k + fx]));
    }
  }
  return acc;
}

/* The requantization vectors of one tile. */
typedef struct dw_rq {
  VI mult, left, right, mask, half;
} dw_rq;

DW_INLINE void dw_s8_span(const kiln_dw_s8_params *p, const int8_t *const *rows, int8_t *orow,
                          const VI *w, VI bias, const dw_rq *rq, int32_t ox0, int32_t ox1,
                          int32_t k, bool interior, int32_t n) {
  const kiln_dw_shape *s = &p->s;
  const VI lo = VI_SET1(p->act_min), hi = VI_SET1(p->act_max);
  const VI out_zp = VI_SET1(p->output_zp), in_zp = VI_SET1(p->input_zp);
  const size_t cs = (size_t)s->channels, step = (size_t)s->stride_w * cs;
  size_t off = interior ? (size_t)(ox0 * s->stride_w - s->pad_w) * cs : 0;
  for (int32_t ox = ox0; ox < ox1; ox++, off += step) {
    const int32_t ix0 = ox * s->stride_w - s->pad_w;
    const VI acc = dw_s8_pixel(rows, ix0, off, s->in_w, cs, w, bias, in_zp, k, interior, n);
    VI v = VI_ADD(VI_MBQM(acc, rq->mult, rq->left, rq->right, rq->mask, rq->half), out_zp);
    v = VI_MIN(VI_MAX(v, lo), hi);
    int8_t *dst = orow + (size_t)ox * cs;
    if (n == VT)
      VI_STORE_S8(dst, v);
    else
      VI_STORE_S8N(dst, v, n);
  }
}

DW_INLINE void dw_s8_row(const kiln_dw_s8_params *p, const int8_t *const *rows, int8_t *orow,
                         const int32_t *wt, int32_t x_lo, int32_t x_hi, int32_t k, int32_t n) {
  const VI bias = VI_LOAD(wt);
  VI w[DW_MAXK * DW_MAXK];
#pragma GCC unroll 25
  for (int32_t t = 0; t < k * k; t++) w[t] = VI_LOAD(wt + (size_t)(1 + t) * VT);
  const int32_t *q = wt + (size_t)(1 + k * k) * VT;
  const dw_rq rq = {VI_LOAD(q), VI_LOAD(q + VT), VI_LOAD(q + 2 * VT), VI_LOAD(q + 3 * VT),
                    VI_LOAD(q + 4 * VT)};
  dw_s8_span(p, rows, orow, w, bias, &rq, 0, x_lo, k, false, n);
  dw_s8_span(p, rows, orow, w, bias, &rq, x_lo, x_hi, k, true, n);
  dw_s8_span(p, rows, orow, w, bias, &rq, x_hi, p->s.out_w, k, false, n);
}

DW_INLINE void dw_s8(const kiln_dw_s8_params *p, const int8_t *in, int8_t *out, int32_t oy0,
                     int32_t oy1, int32_t c0, int32_t c1, int32_t k) {
  const kiln_dw_shape *s = &p->s;
  const size_t in_row = (size_t)s->in_w * (size_t)s->channels;
  const size_t out_row = (size_t)s->out_w * (size_t)s->channels;
  const size_t tile_words = (size_t)(6 + k * k) * VT;
  int32_t x_lo, x_hi;
  dw_interior(s, &x_lo, &x_hi);
  for (int32_t oy = oy0; oy < oy1; oy++) {
    const int32_t iy0 = oy * s->stride_h - s->pad_h;
    for (int32_t c = c0; c < c1; c += VT) {
      const int8_t *rows[DW_MAXK];
      for (int32_t fy = 0; fy < k; fy++) {
        const int32_t iy = iy0 + fy;
        rows[fy] = (iy >= 0 && iy < s->in_h ? in + (size_t)iy * in_row : p->zp_row) + c;
      }
      const int32_t *wt = p->packed + (size_t)(c / VT) * tile_words;
      int8_t *orow = out + (size_t)oy * out_row + (size_t)c;
      if (c1 - c >= VT)
        dw_s8_row(p, rows, orow, wt, x_lo, x_hi, k, VT);
      else
        dw_s8_row(p, rows, orow, wt, x_lo, x_hi, k, c1 - c);
    }
  }
}

void KX(kiln_s8_dw_3x3)(const kiln_dw_s8_params *p, const int8_t *in, int8_t *out, int32_t oy0,
                        int32_t oy1, int32_t c0, int32_t c1) {
  dw_s8(p, in, out, oy0, oy1, c0, c1, 3);
}

void KX(kiln_s8_dw_5x5)(const kiln_dw_s8_params *p, const int8_t *in, int8_t *out, int32_t oy0,
                        int32_t oy1, int32_t c0, int32_t c1) {
  dw_s8(p, in, out, oy0, oy1, c0, c1, 5);
}
