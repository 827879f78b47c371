/*
 * kernels/x86/dw_dot4_tmpl.h: the loops of the int8 3x3 depthwise kernels
 * with the dot4 layout (kernels/dwconv.h), written once over the vector
 * operations of the including file (dw_s8_3x3_avx512vnni.c,
 * dw_s8_3x3_avxvnni.c), which defines before including it:
 *   DV, DV_N          the vector type and its int32 lanes (the tile)
 *   DOT4_KERNEL       the name of the kernel function to define
 *   dv_rq, dv_load_rq(p, w)       a group's requantization constants
 *   col_src           row pointers rows[4] and what column() needs;
 *                     dv_src_init(src, p), dv_src_group(src, n) (n channels)
 *   dv_load(w), dv_dot(acc, v, w) loading packed words; vpdpbusd
 *   column(src, ix, in_w, cs, nrows, tail)  a column vector (below)
 *   requant(acc, q, general, clamp)  requantized outputs: the general or the
 *                     fast form, clamped or left to the store's saturation
 *   store(dst, v, src, tail)         saturated to int8, DV_N (or the tail's) bytes
 *
 * For each output column the kernel builds, per filter column, a "column
 * vector": 32-bit lane j holds channel c + j of the (up to) four input rows
 * the output rows read, one byte per row, each as x + 128. One vpdpbusd per
 * filter column multiplies a column vector by the packed taps of that
 * column, so 3 instructions compute a 3x3 window. With stride 1 two output
 * rows are computed together from four input rows (the second row's taps
 * sit one byte higher), and column vectors move along the row in registers,
 * each built one output ahead of its first use and used by the three
 * outputs that read it. The int32 sums wrap like the reference's; the
 * (x + 128) * w excess and the input zero point are in the packed bias, and
 * padding reads the input zero point (rows from zp_row, columns as a
 * constant), whose products the bias cancels.
 *
 * A call computes output rows [oy0, oy1) of channels [c0, c1): rows in
 * pairs (stride 1) or singly, each pass over the channel groups one after
 * another; each output's sum and requantization are the same however the
 * rows and channels are split.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/dwconv.h"

/* How a group's outputs are requantized: the fast form with or without the
 * clamp (skipped when the clamp is the int8 range: the store saturates), or
 * the general form. */
typedef enum rq_mode { RQ_FAST, RQ_FAST_CLAMP, RQ_GENERAL } rq_mode;

/* One row (pair == false) or two rows (pair, stride 1) of one group:
 * out0 / out1 at the group's first channel, w the group's packed words. */
INL void group_rows(const kiln_dw_s8_params *p, const col_src *src, const int32_t *w,
                    const dv_rq *q, int8_t *out0, int8_t *out1, bool pair, int32_t stride,
                    bool tail, rq_mode mode) {
  const kiln_dw_shape *s = &p->s;
  const size_t cs = (size_t)s->channels;
  const int32_t in_w = s->in_w, out_w = s->out_w, nrows = pair ? 4 : 3;
  const DV bias = dv_load(w);
  DV w0[3], w1[3];
  for (int32_t fx = 0; fx < 3; fx++) {
    w0[fx] = dv_load(w + DV_N * (1 + fx));
    w1[fx] = dv_load(w + DV_N * (4 + fx));
  }
  int32_t ix = -s->pad_w;
  DV va = column(src, ix, in_w, cs, nrows, tail);
  DV vb = column(src, ix + 1, in_w, cs, nrows, tail);
  DV vc = column(src, ix + 2, in_w, cs, nrows, tail);
  for (int32_t ox = 0; ox < out_w; ox++, ix += stride) {
    DV vd = va, ve = vb;
    if (stride <= 2) vd = column(src, ix + 3, in_w, cs, nrows, tail);
    if (stride == 2) ve = column(src, ix + 4, in_w, cs, nrows, tail);
    const DV a0 = dv_dot(dv_dot(dv_dot(bias, va, w0[0]), vb, w0[1]), vc, w0[2]);
    store(out0 + (size_t)ox * cs, requant(a0, q, mode == RQ_GENERAL, mode != RQ_FAST), src, tail);
    if (pair) {
      const DV a1 = dv_dot(dv_dot(dv_dot(bias, va, w1[0]), vb, w1[1]), vc, w1[2]);
      store(out1 + (size_t)ox * cs, requant(a1, q, mode == RQ_GENERAL, mode != RQ_FAST), src,
            tail);
    }
    if (stride == 1) {
      va = vb;
      vb = vc;
      vc = vd;
    } else if (stride == 2) {
      va = vc;
      vb = vd;
      vc = ve;
    } else {
      va = column(src, ix + stride, in_w, cs, nrows, tail);
      vb = column(src, ix + stride + 1, in_w, cs, nrows, tail);
      vc = column(src, ix + stride + 2, in_w, cs, nrows, tail);
    }
  }
}

/* group_rows with the stride and the tail made constants where it pays. */
INL void group_rows_any(const kiln_dw_s8_params *p, const col_src *src, const int32_t *w,
                        const dv_rq *q, int8_t *out0, int8_t *out1, bool pair, bool tail,
                        rq_mode mode) {
  const int32_t stride = p->s.stride_w;
  if (tail)
    group_rows(p, src, w, q, out0, out1, pair, stride, true, mode);
  else if (stride == 1)
    group_rows(p, src, w, q, out0, out1, pair, 1, false, mode);
  else if (stride == 2)
    group_rows(p, src, w, q, out0, out1, pair, 2, false, mode);
  else
    group_rows(p, src, w, q, out0, out1, pair, stride, false, mode);
}

INL void dw_dot4_rows(const kiln_dw_s8_params *p, const int8_t *in, int8_t *out, int32_t oy0,
                      int32_t oy1, int32_t c0, int32_t c1, rq_mode mode) {
  const kiln_dw_shape *s = &p->s;
  const size_t in_row = (size_t)s->in_w * (size_t)s->channels;
  const size_t out_row = (size_t)s->out_w * (size_t)s->channels;
  col_src src;
  dv_src_init(&src, p);
  for (int32_t oy = oy0; oy < oy1;) {
    const bool pair = s->stride_h == 1 && oy + 1 < oy1;
    const int32_t iy0 = oy * s->stride_h - s->pad_h;
    const int8_t *rows[4];
    for (int32_t r = 0; r < 4; r++) {
      const int32_t iy = iy0 + r;
      rows[r] = iy >= 0 && iy < s->in_h ? in + (size_t)iy * in_row : p->zp_row;
    }
    for (int32_t c = c0; c < c1; c += DV_N) {
      const bool tail = c1 - c < DV_N;
      dv_src_group(&src, tail ? c1 - c : DV_N);
      for (int32_t r = 0; r < 4; r++) src.rows[r] = rows[r] + c;
      const int32_t *w = p->packed + (size_t)(c / DV_N) * 16 * DV_N;
      const dv_rq q = dv_load_rq(p, w);
      int8_t *out0 = out + (size_t)oy * out_row + (size_t)c;
      if (pair)
        group_rows_any(p, &src, w, &q, out0, out0 + out_row, true, tail, mode);
      else
        group_rows_any(p, &src, w, &q, out0, out0, false, tail, mode);
    }
    oy += pair ? 2 : 1;
  }
}

static void DOT4_KERNEL(const kiln_dw_s8_params *p, const int8_t *in, int8_t *out, int32_t oy0,
                        int32_t oy1, int32_t c0, int32_t c1) {
  if (!p->rq_fast)
    dw_dot4_rows(p, in, out, oy0, oy1, c0, c1, RQ_GENERAL);
  else if (p->act_min == -128 && p->act_max == 127)
    dw_dot4_rows(p, in, out, oy0, oy1, c0, c1, RQ_FAST);
  else
    dw_dot4_rows(p, in, out, oy0, oy1, c0, c1, RQ_FAST_CLAMP);
}
