/* The int8 GEMM kernel table, weight packing, requantization parameters and
 * im2col (see kernels/s8_gemm.h). Portable C; the micro-kernels are in
 * kernels/x86/s8_gemm_*.c and kernels/arm/s8_gemm_*.c. */
#include "kernels/s8_gemm.h"

#include <string.h>

#include "kernels/cpu.h"

#define KERNEL_ENTRY(tile_isa, isa_bits, mr_, nr_, lanes_, kgroup_, a_elem_, a_offset_, wide_) \
  {"s8_gemm_" #tile_isa,                                                                    \
   isa_bits,                                                                                \
   mr_,                                                                                     \
   nr_,                                                                                     \
   lanes_,                                                                                  \
   kgroup_,                                                                                 \
   a_elem_,                                                                                 \
   a_offset_,                                                                               \
   wide_,                                                                                   \
   kiln_s8_gemm_pack_a_##tile_isa,                                                          \
   kiln_s8_gemm_##tile_isa,                                                                 \
   kiln_s8_requant32_##tile_isa},

static const kiln_s8_gemm_kernel kernels[] = {
    KILN_S8_GEMM_KERNELS(KERNEL_ENTRY){NULL, 0, 0, 0, 0, 0, 0, 0, false, NULL, NULL, NULL},
};

int32_t kiln_s8_gemm_kernel_count(void) {
  return (int32_t)(sizeof kernels / sizeof kernels[0]) - 1;
}

const kiln_s8_gemm_kernel *kiln_s8_gemm_kernel_at(int32_t i) {
  return i >= 0 && i < kiln_s8_gemm_kernel_count() ? &kernels[i] : NULL;
}

const kiln_s8_gemm_kernel *kiln_s8_gemm_select(uint32_t isa) {
  for (int32_t i = 0; i < kiln_s8_gemm_kernel_count(); i++)
    if ((kernels[i].isa & isa) == kernels[i].isa) return &kernels[i];
  return NULL;
}

bool kiln_s8_gemm_supported(const int32_t *mult, const int32_t *shift, int32_t n) {
  for (int32_t i = 0; i < n; i++)
    if (mult[i] < 0 || shift[i] < -31 || shift[i] > 31) return false;
  return true;
}

static size_t round_up(size_t x, size_t to) { return (x + to - 1) / to * to; }

static int32_t padded_columns(const kiln_s8_gemm_kernel *kern, int32_t n) {
  return (int32_t)round_up((size_t)n, (size_t)kern->lanes);
}

/* Bytes of one int32 requantization array (n_pad + 1 values). */
static size_t array_bytes(const kiln_s8_gemm_kernel *kern, int32_t n) {
  return round_up(((size_t)padded_columns(kern, n) + 1) * sizeof(int32_t), 64);
}

size_t kiln_s8_requant_bytes(const kiln_s8_gemm_kernel *kern, int32_t n) {
  const size_t wide =
      kern->wide_requant ? (size_t)padded_columns(kern, n) * 2 * sizeof(int64_t) : 0;
  return 5 * array_bytes(kern, n) + wide;
}

/* Whether the one-step 64-bit requantization applies (kernels/s8_gemm.h).
 * A zero multiplier (a scale ratio flushed to 0) gives the zero point whatever
 * its shift, so its shift does not count. */
static bool wide_applies(const kiln_s8_gemm_kernel *kern, int32_t n, const int32_t *mult,
                         const int32_t *shift, int32_t out_zp) {
  if (!kern->wide_requant || out_zp < -128 || out_zp > 127) return false;
  for (int32_t i = 0; i < n; i++)
    if (mult[i] != 0 && (shift[i] < -23 || shift[i] > -1)) return false;
  return true;
}

void kiln_s8_requant_fill(const kiln_s8_gemm_kernel *kern, int32_t n, const int32_t *bias,
                          const int32_t *mult, const int32_t *shift, int32_t out_zp,
                          int32_t act_min, int32_t act_max, void *mem, kiln_s8_requant *rq) {
  const int32_t n_pad = padded_columns(kern, n);
  const size_t bytes = array_bytes(kern, n);
  int32_t *arrays[5];
  for (int32_t i = 0; i < 5; i++) arrays[i] = (int32_t *)((uint8_t *)mem + (size_t)i * bytes);
  for (int32_t i = 0; i <= n_pad; i++) {
    const bool real = i < n;
    const int32_t s = real ? shift[i] : 0;
    arrays[0][i] = real && bias ? bias[i] : 0;
    arrays[1][i] = real ? mult[i] : 0;
    arrays[2][i] = s > 0 ? s : 0;
    arrays[3][i] = s > 0 ? 0 : -s;
    arrays[4][i] = arrays[3][i] > 0 ? (int32_t)((uint32_t)1 << (arrays[3][i] - 1)) : 0;
  }
  rq->corr = arrays[0];
  rq->mult = arrays[1];
  rq->left = arrays[2];
  rq->right = arrays[3];
  rq->half = arrays[4];
  rq->wide = NULL;
  rq->out_zp = out_zp;
  rq->act_min = act_min;
  rq->act_max = act_max;
  if (!wide_applies(kern, n, mult, shift, out_zp)) return;
  int64_t *wide = (int64_t *)((uint8_t *)mem + 5 * bytes);
  const int32_t lanes = kern->lanes, half_lanes = lanes / 2;
  for (int32_t i = 0; i < n_pad; i++) {
    /* Zero multipliers and padded columns take right 1 (any would do;
     * padded columns' results are dropped). */
    const int32_t right = i < n && mult[i] != 0 ? -shift[i] : 1;
    const int64_t zp = i < n ? out_zp : 0;
    int64_t *group = wide + (size_t)(i / lanes) * 2 * (size_t)lanes;
    const int32_t slot = (i % lanes % 2) * half_lanes + i % lanes / 2;
    group[slot] =
        ((int64_t)1 << 30) + ((int64_t)1 << (30 + right)) + zp * ((int64_t)1 << (31 + right));
    group[lanes + slot] = i % 2 ? right - 1 : 31 + right;
  }
  rq->wide = wide;
}

/* Weights into the packed layout of kernels/s8_gemm.h. */
static void pack_b(const kiln_s8_gemm_kernel *kern, int32_t n, int32_t k, int32_t kp,
                   int32_t n_pad, const int8_t *w, void *out) {
  const int32_t lanes = kern->lanes, kg = kern->kgroup;
  const size_t blocks = (size_t)kp / (size_t)kg;
  for (int32_t col = 0; col < n_pad; col++) {
    const int32_t g = col / lanes, l = col % lanes;
    for (int32_t d = 0; d < kp; d++) {
      const int32_t v = col < n && d < k ? w[(size_t)col * (size_t)k + (size_t)d] : 0;
      const size_t q = (size_t)(d / kg), t = (size_t)(d % kg);
      const size_t at = (((size_t)g * blocks + q) * (size_t)lanes + (size_t)l) * (size_t)kg + t;
      if (kern->a_elem == 2) ((int16_t *)out)[at] = (int16_t)v;
      else ((int8_t *)out)[at] = (int8_t)v;
    }
  }
}

static size_t packed_b_bytes(const kiln_s8_gemm_kernel *kern, int32_t n, int32_t kp) {
  return round_up((size_t)padded_columns(kern, n) * (size_t)kp * (size_t)kern->a_elem, 64);
}

static int32_t padded_depth(const kiln_s8_gemm_kernel *kern, int32_t k) {
  return (int32_t)round_up((size_t)k, (size_t)kern->kgroup);
}

size_t kiln_s8_gemm_bytes(const kiln_s8_gemm_kernel *kern, int32_t n, int32_t k) {
  return packed_b_bytes(kern, n, padded_depth(kern, k)) + kiln_s8_requant_bytes(kern, n);
}

void kiln_s8_gemm_init(const kiln_s8_gemm_kernel *kern, int32_t n, int32_t k,
                       const int8_t *weights, const int32_t *bias, int32_t input_offset,
                       const int32_t *mult, const int32_t *shift, int32_t out_zp,
                       int32_t act_min, int32_t act_max, void *mem, kiln_s8_gemm *g) {
  const int32_t kp = padded_depth(kern, k);
  uint8_t *base = mem;
  pack_b(kern, n, k, kp, padded_columns(kern, n), weights, base);
  kiln_s8_requant_fill(kern, n, bias, mult, shift, out_zp, act_min, act_max,
                       base + packed_b_bytes(kern, n, kp), &g->rq);
  /* corr = bias + (input_offset - a_offset) * sum(W), modulo 2^32. */
  int32_t *corr = (int32_t *)g->rq.corr;
  const uint32_t offset = (uint32_t)input_offset - (uint32_t)kern->a_offset;
  for (int32_t col = 0; col < n; col++) {
    uint32_t sum = 0;
    for (int32_t d = 0; d < k; d++)
      sum += (uint32_t)(int32_t)weights[(size_t)col * (size_t)k + (size_t)d];
    corr[col] = (int32_t)((uint32_t)corr[col] + offset * sum);
  }
  g->n = n;
  g->k = k;
  g->kp = kp;
  g->b = base;
}

void kiln_s8_gemm_attach(const kiln_s8_gemm_kernel *kern, int32_t n, int32_t k,
                         const int32_t *mult, const int32_t *shift, int32_t out_zp,
                         int32_t act_min, int32_t act_max, const void *mem, kiln_s8_gemm *g) {
  const int32_t kp = padded_depth(kern, k);
  const uint8_t *base = mem;
  const uint8_t *rq = base + packed_b_bytes(kern, n, kp);
  const size_t bytes = array_bytes(kern, n);
  g->rq.corr = (const int32_t *)(const void *)rq;
  g->rq.mult = (const int32_t *)(const void *)(rq + bytes);
  g->rq.left = (const int32_t *)(const void *)(rq + 2 * bytes);
  g->rq.right = (const int32_t *)(const void *)(rq + 3 * bytes);
  g->rq.half = (const int32_t *)(const void *)(rq + 4 * bytes);
  g->rq.wide = wide_applies(kern, n, mult, shift, out_zp)
                   ? (const int64_t *)(const void *)(rq + 5 * bytes)
                   : NULL;
  g->rq.out_zp = out_zp;
  g->rq.act_min = act_min;
  g->rq.act_max = act_max;
  g->n = n;
  g->k = k;
  g->kp = kp;
  g->b = base;
}

/* ---- im2col ---- */

/* One output pixel's taps of one filter row (line: that input row) tap by
 * tap: the general case of the borders and of dilated filters. */
static void im2col_taps(const kiln_conv_params *p, const int8_t *line, int32_t ix0, int8_t pad,
                        int8_t *dst) {
  const size_t c = (size_t)p->in_c;
  for (int32_t fx = 0; fx < p->filter_w; fx++, dst += c) {
    const int32_t ix = ix0 + fx * p->dilation_w;
    if (ix < 0 || ix >= p->in_w) memset(dst, pad, c);
    else memcpy(dst, line + (size_t)ix * c, c);
  }
}

/* Output pixels [ox0, ox0 + n) of output row oy of one image into rows of
 * out (stride apart), filter row by filter row. Where the window lies inside
 * the image horizontally and is not dilated, a filter row's taps are one run
 * of filter_w * in_c input bytes; a run of at most 16 bytes moves as one
 * 16-byte copy where the source allows it, the bytes past the run landing in
 * the next filter row's place (written later) or, for the last one, in the
 * row's slack (stride >= K - run + 16, see kiln_s8_im2col_stride). */
static void im2col_segment(const kiln_conv_params *p, const int8_t *image, const int8_t *input_end,
                           const int8_t *pad16, int32_t oy, int32_t ox0, int32_t n, int8_t *out,
                           size_t stride) {
  const size_t c = (size_t)p->in_c, run = (size_t)p->filter_w * c;
  const size_t line_bytes = (size_t)p->in_w * c, step = (size_t)p->stride_w * c;
  const int32_t span_w = (p->filter_w - 1) * p->dilation_w + 1;
  /* Pixels [lo, hi) of the segment have their window inside horizontally. */
  int32_t lo = 0, hi = 0;
  if (p->dilation_w == 1) {
    while (lo < n && (ox0 + lo) * p->stride_w - p->pad_w < 0) lo++;
    hi = n;
    while (hi > lo && (ox0 + hi - 1) * p->stride_w - p->pad_w + span_w > p->in_w) hi--;
  }
  for (int32_t fy = 0; fy < p->filter_h; fy++) {
    const int32_t iy = oy * p->stride_h - p->pad_h + fy * p->dilation_h;
    int8_t *dst = out + (size_t)fy * run;
    if (iy < 0 || iy >= p->in_h) {
      for (int32_t i = 0; i < n; i++) {
        if (run <= 16) memcpy(dst + (size_t)i * stride, pad16, 16);
        else memset(dst + (size_t)i * stride, pad16[0], run);
      }
      continue;
    }
    const int8_t *line = image + (size_t)iy * line_bytes;
    for (int32_t i = 0; i < lo; i++)
      im2col_taps(p, line, (ox0 + i) * p->stride_w - p->pad_w, pad16[0], dst + (size_t)i * stride);
    if (hi > lo) {
      const int8_t *src = line + (size_t)((ox0 + lo) * p->stride_w - p->pad_w) * c;
      int8_t *d = dst + (size_t)lo * stride;
      int32_t i = lo;
      if (run <= 16)
        for (; i < hi && src + 16 <= input_end; i++, src += step, d += stride) memcpy(d, src, 16);
      for (; i < hi; i++, src += step, d += stride) memcpy(d, src, run);
    }
    for (int32_t i = hi > lo ? hi : lo; i < n; i++)
      im2col_taps(p, line, (ox0 + i) * p->stride_w - p->pad_w, pad16[0], dst + (size_t)i * stride);
  }
}

size_t kiln_s8_im2col_stride(const kiln_conv_params *p, size_t min_stride) {
  const size_t run = (size_t)p->filter_w * (size_t)p->in_c;
  const size_t k = (size_t)p->filter_h * run;
  const size_t need = run <= 16 ? k - run + 16 : k;
  return need > min_stride ? (need + 3) / 4 * 4 : min_stride;
}

void kiln_s8_im2col(const kiln_conv_params *p, const int8_t *input, int8_t pad, int64_t m0,
                    int32_t rows, int8_t *out, size_t out_stride) {
  const size_t image_bytes = (size_t)p->in_h * (size_t)p->in_w * (size_t)p->in_c;
  const int8_t *input_end = input + (size_t)p->batch * image_bytes;
  int8_t pad16[16];
  memset(pad16, pad, sizeof pad16);
  const int64_t plane = (int64_t)p->out_h * p->out_w;
  int32_t b = (int32_t)(m0 / plane);
  int32_t oy = (int32_t)(m0 % plane / p->out_w), ox = (int32_t)(m0 % p->out_w);
  for (int32_t r = 0; r < rows;) {
    const int32_t n = rows - r < p->out_w - ox ? rows - r : p->out_w - ox;
    im2col_segment(p, input + (size_t)b * image_bytes, input_end, pad16, oy, ox, n,
                   out + (size_t)r * out_stride, out_stride);
    r += n;
    ox += n;
    if (ox == p->out_w) {
      ox = 0;
      if (++oy == p->out_h) {
        oy = 0;
        b++;
      }
    }
  }
}
