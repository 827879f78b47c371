/*
 * kernels/dwconv.h: optimized DEPTHWISE_CONV_2D kernels (depth multiplier 1,
 * square 3x3 or 5x5 filters, any stride and padding, dilation 1), NHWC,
 * vectorized across channels, for float32 and int8.
 *
 * Packed weights (filled once at prepare by kiln_dw_pack_*): channels are cut
 * into tiles of `tile` channels (the vector width of the kernel: 4 for NEON,
 * 8 for AVX2, 16 for AVX-512); tile t holds, each row `tile` values wide,
 * channels past the last one zero:
 *   float32: bias; the k*k taps (tap = fy * k + fx).
 *   int8 (all int32): bias + input_offset * (sum of the taps) (the input
 *     zero point folded in, wrapping modulo 2^32); the k*k taps, each weight
 *     in the low 16 bits with the high 16 bits zero (an exact 16x16-bit
 *     product with vpmaddwd); then per channel the requantization: the
 *     multiplier, the left shift max(shift, 0), the right shift
 *     max(-shift, 0), its mask 2^right - 1 and that mask >> 1.
 *
 * int8 3x3 "dot4" layout (kiln_dw_pack_s8_dot4), for kernels that multiply
 * four unsigned input bytes by four signed weights per 32-bit lane
 * (vpdpbusd): the kernel reads the input as x + 128 (x ^ 0x80) and puts the
 * same channel of four consecutive input rows in the four bytes of a lane.
 * Tile t (channels [t * tile, t * tile + tile)) holds 16 rows of `tile`
 * int32 words (word j: channel t * tile + j; channels past the last one
 * zero, with right shift 1):
 *   0: bias + (input_offset - 128) * (sum of the taps), modulo 2^32, plus
 *     2^31 in the fast form below (the accumulator then holds acc + 2^31,
 *     an unsigned number);
 *   1-3: the taps of filter column fx = 0, 1, 2 for the first output row
 *     of a pair: bytes (w[0][fx], w[1][fx], w[2][fx], 0) of each word;
 *   4-6: for the second output row (input rows one lower):
 *     bytes (0, w[0][fx], w[1][fx], w[2][fx]);
 *   7: the multiplier M (fast form: 2M, as uint32); 8: row 7's words of the
 *     odd channels in the even words (word 2i: channel 2i + 1; odd words 0);
 *   9-15: the requantization (right = max(-shift, 0), left = max(shift, 0))
 *     in one of two forms, both exact one-step 64-bit versions of
 *     MultiplyByQuantizedMultiplier (the doubling high multiply's nudge and
 *     the rounding division's half and tie break folded; nested floors of
 *     power-of-two divisions compose):
 *   fast (kiln_dw_s8_params.rq_fast), when every channel with a nonzero
 *     multiplier has shift in [-23, 0] and |bias| + 255 * sum |taps| < 2^29
 *     (so that nothing below overflows): 9: right; 10, 11: 2R - 2^32 * M
 *     modulo 2^64 for the even / odd channels (int64, tile / 2 each), with
 *     R = 2^30 + (right > 0 ? 2^(30 + right) : 0) + out_zp * 2^(31 + right);
 *     12: U = right > 0 ? 2^(right - 1) + out_zp * 2^right : INT32_MIN.
 *     The unsigned product (acc + 2^31) * 2M plus row 10 / 11 is
 *     2 * (acc * M + R) modulo 2^64; its high 32 bits are
 *     y = floor((acc * M + R) / 2^31), the doubling high multiply plus
 *     2^(right - 1) + out_zp * 2^right, and
 *       MultiplyByQuantizedMultiplier(acc) + out_zp = (y - (y < U)) >> right
 *     (y < U where the high multiply is negative: ties round down there);
 *   general: 9: left; 10, 11: R of the even / odd channels (int64), R =
 *     2^30 + (right > 0 ? 2^(30 + right) : 0); 12, 13: 31 + right (int64);
 *     14, 15: T (int64): 2^31 where right > 0, else 0. With p = (acc <<
 *     left, wrapping in 32 bits) * M,
 *       MultiplyByQuantizedMultiplier(acc) =
 *         floor((p + R - (p < 0 ? T : 0)) / 2^(31 + right))
 *     (p < 0 stands for the high multiply's sign, which differs only where
 *     that is 0 and so is the result); the kernel adds out_zp after.
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

#include <stdbool.h>
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
  bool rq_fast; /* dot4 layout: the fast requantization form */
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

/* An int8 3x3 kernel taking the dot4 layout. */
typedef struct kiln_dw_dot4_kernel {
  const char *name; /* "s8_dw_3x3_avx512vnni" */
  uint32_t isa;     /* kernels/cpu.h bits it needs */
  int32_t tile;     /* channels per vector */
  kiln_dw_s8_fn s8_3x3;
} kiln_dw_dot4_kernel;

/* Tables, best first, ending with NULL (just NULL where no ISA is compiled
 * in). Prepare takes the first whose isa bits are all available, for an int8
 * 3x3 filter first from kiln_dw_dot4_tables. */
extern const kiln_dw_kernels *const kiln_dw_tables[];
extern const kiln_dw_dot4_kernel *const kiln_dw_dot4_tables[];
#if defined(__x86_64__)
extern const kiln_dw_dot4_kernel kiln_dw_dot4_avx512vnni; /* kernels/x86/dw_s8_3x3_avx512vnni.c */
extern const kiln_dw_dot4_kernel kiln_dw_dot4_avxvnni;    /* kernels/x86/dw_s8_3x3_avxvnni.c */
extern const kiln_dw_kernels kiln_dw_avx512; /* kernels/x86/dw_conv_avx512.c */
extern const kiln_dw_kernels kiln_dw_avx2;   /* kernels/x86/dw_conv_avx2.c */
#elif defined(__aarch64__)
extern const kiln_dw_kernels kiln_dw_neon; /* kernels/arm/dw_conv_neon.c */
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

/* int32 words of the dot4 packing of `channels` channels. */
size_t kiln_dw_packed_s8_dot4_count(int32_t channels, int32_t tile);
/* Packs a 3x3 int8 filter [1, 3, 3, channels] and int32 bias (NULL: zero)
 * in the dot4 layout, with the per-channel multiplier (in [0, 2^31)) and
 * shift (in [-31, 31]) and the output zero point (in [-128, 127]). Returns
 * whether it took the fast requantization form (kiln_dw_s8_params.rq_fast). */
bool kiln_dw_pack_s8_dot4(int32_t channels, int32_t tile, const int8_t *filter,
                          const int32_t *bias, int32_t input_offset, const int32_t *multiplier,
                          const int32_t *shift, int32_t output_zp, int32_t *dst);

#endif
