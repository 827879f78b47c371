/*
 * kernels/dwconv.h: optimized DEPTHWISE_CONV_2D kernels (depth multiplier 1,
 * square 3x3 or 5x5 filters, any stride and padding, dilation 1), NHWC,
 * vectorized across channels, for float32 and int8.
 *
 * Packed weights (filled once at prepare by kiln_dw_pack_*): channels are cut
 * into tiles of `tile` channels (the vector width of the kernel: 8 for AVX2,
 * 16 for AVX-512); tile t holds, each row `tile` values wide, channels past
 * the last one zero:
 *   float32: bias; the k*k taps (tap = fy * k + fx).
 *   int8 (all int32): bias + input_offset * (sum of the taps) (the input
 *     zero point folded in, wrapping modulo 2^32); the k*k taps, each weight
 *     in the low 16 bits with the high 16 bits zero (an exact 16x16-bit
 *     product with vpmaddwd); then per channel the requantization: the
 *     multiplier, the left shift max(shift, 0), the right shift
 *     max(-shift, 0), its mask 2^right - 1 and that mask >> 1.
 *
 * Arithmetic: the float kernels add the products in the reference kernel's
 * order (taps by row, then column; out-of-image taps skipped; then the bias)
 * with separate multiplies and adds, so their results equal the reference's.
 * The int8 kernels accumulate (input - input_zp) * filter in wrapping int32
 * (padding taps read the input zero point, so they contribute 0) and
 * requantize with TFLite's MultiplyByQuantizedMultiplier, bit-exact with
 * kiln_s8_depthwise_conv2d_ref.
 *
 * A kernel computes output rows [oy0, oy1) of channels [c0, c1) of one image:
 * in [in_h, in_w, channels], out [out_h, out_w, channels]; c0 is a multiple of
 * the tile, c1 a multiple of the tile or the channel count.
 */
#ifndef KILN_KERNELS_DWCONV_H
#define KILN_KERNELS_DWCONV_H

#include <stddef.h>
#include <stdint.h>

typedef struct kiln_dw_shape {
  int32_t in_h, in_w, channels;
  int32_t out_h, out_w;
  int32_t stride_h, stride_w;
  int32_t pad_h, pad_w; /* before the first row / column */
  int32_t k;            /* filter height = width: 3 or 5 */
} kiln_dw_shape;

typedef struct kiln_dw_f32_params {
  kiln_dw_shape s;
  const float *packed; /* tiles as above */
  float act_min, act_max;
} kiln_dw_f32_params;

typedef struct kiln_dw_s8_params {
  kiln_dw_shape s;
  const int32_t *packed; /* tiles as above */
  const int8_t *zp_row;  /* in_w * channels copies of the input zero point (padding rows) */
  int32_t input_zp;
  int32_t output_zp;
  int32_t act_min, act_max;
} kiln_dw_s8_params;

typedef void (*kiln_dw_f32_fn)(const kiln_dw_f32_params *p, const float *in, float *out,
                               int32_t oy0, int32_t oy1, int32_t c0, int32_t c1);
typedef void (*kiln_dw_s8_fn)(const kiln_dw_s8_params *p, const int8_t *in, int8_t *out,
                              int32_t oy0, int32_t oy1, int32_t c0, int32_t c1);

/* The kernels of one instruction set. */
typedef struct kiln_dw_kernels {
  uint32_t isa; /* kernels/cpu.h bits it needs */
  int32_t tile; /* channels per vector */
  kiln_dw_f32_fn f32_3x3, f32_5x5;
  kiln_dw_s8_fn s8_3x3, s8_5x5;
} kiln_dw_kernels;

/* Tables, best first, ending with NULL (just NULL where no ISA is compiled
 * in). Prepare takes the first whose isa bits are all available. */
extern const kiln_dw_kernels *const kiln_dw_tables[];
#if defined(__x86_64__)
extern const kiln_dw_kernels kiln_dw_avx512; /* kernels/x86/dw_conv_avx512.c */
extern const kiln_dw_kernels kiln_dw_avx2;   /* kernels/x86/dw_conv_avx2.c */
#endif

/* Floats / int32s of the packed weights for `channels` channels. */
size_t kiln_dw_packed_f32_count(int32_t channels, int32_t k, int32_t tile);
size_t kiln_dw_packed_s8_count(int32_t channels, int32_t k, int32_t tile);

/* Packs filter [1, k, k, channels] and bias [channels] (NULL: zero) into
 * dst (kiln_dw_packed_f32_count floats). */
void kiln_dw_pack_f32(int32_t channels, int32_t k, int32_t tile, const float *filter,
                      const float *bias, float *dst);
/* Packs int8 filter and int32 bias (NULL: zero) with the input offset
 * (-input zero point) folded in, and the per-channel multiplier / shift. */
void kiln_dw_pack_s8(int32_t channels, int32_t k, int32_t tile, const int8_t *filter,
                     const int32_t *bias, int32_t input_offset, const int32_t *multiplier,
                     const int32_t *shift, int32_t *dst);

#endif
