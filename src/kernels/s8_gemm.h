/*
 * kernels/s8_gemm.h: int8 GEMM with per-column requantization, the engine of
 * the fast int8 CONV_2D and FULLY_CONNECTED (runtime/fast_conv_s8.c), its
 * packed layouts, and the im2col that turns a conv into a GEMM.
 *
 * The product: for each row m (an output pixel or FC batch row) and column n
 * (an output channel),
 *   acc[m][n] = bias[n] + sum_k W[n][k] * (X[m][k] + input_offset)
 *   C[m][n]   = clamp(MultiplyByQuantizedMultiplier(acc, mult[n], shift[n])
 *                     + out_zp, act_min, act_max)
 * with W symmetric int8 weights [N][K] (an OHWI filter's rows), X int8 rows
 * [M][K] (input pixels or im2col rows). acc wraps modulo 2^32 as the
 * reference kernels' accumulator does (every step below is exact modulo
 * 2^32, so wrapped results agree too), and the requantization is TFLite's
 * double rounding, bit-exact with kernels/quant_math.h for multipliers in
 * [0, 2^31) and shifts in [-31, 31] (what kiln_conv_multiplier produces;
 * kiln_s8_gemm_supported checks it). The one place the reference's C
 * arithmetic is undefined, int32 overflow of (requantized value + out_zp),
 * wraps here.
 *
 * The kernels compute sum_k W[n][k] * A[m][k] with A = X + a_offset (a
 * kernel constant: VNNI kernels take unsigned bytes, X + 128; the AVX2
 * kernel sign-extends X to int16, a_offset 0; the NEON kernels take X as
 * it is, a_offset 0), so prepare folds the rest
 * into one int32 per column: corr[n] = bias[n] + (input_offset - a_offset) *
 * sum_k W[n][k].
 *
 * Packed weights (kiln_s8_gemm_init): columns in groups of kern->lanes;
 * group g is kp / kgroup blocks, block q holding for each of the lanes
 * columns n = g * lanes + l the kgroup depths k = q * kgroup + t
 * (W[n][k] as an a_elem-byte integer: int8 or int16), zeros past N and K:
 *   packed[((g * kp / kgroup + q) * lanes + l) * kgroup + t]
 * so one vector load gives a kgroup-deep slice of lanes columns.
 * kp = K rounded up to kgroup. Group g starts at byte g * lanes * kp * a_elem.
 *
 * Packed rows of A (kern->pack_a): rows a_stride >= kp * a_elem bytes
 * apart, each kp elements of a_elem bytes: A[m][k] for k < K; what follows
 * up to kp is unspecified (the packed weights are 0 there).
 *
 * Micro-kernel contract (kern->run): computes C for `rows` rows of packed A
 * and the columns [n_begin, n_end) (n_begin a multiple of kern->nr, n_end a
 * multiple of kern->lanes or N); writes c[r * c_stride + n] for those and
 * nothing else. A result depends only on its row of A and its column, never
 * on how calls split the output, so results do not depend on the threads.
 */
#ifndef KILN_KERNELS_S8_GEMM_H
#define KILN_KERNELS_S8_GEMM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/ref/conv_ref.h"

/* Per-column requantization, arrays of n_pad = N rounded up to lanes, plus
 * one (mult is read at an offset of one column); padded columns are 0.
 *
 * wide: for kernels with wide_requant, when every shift of a nonzero
 * multiplier is in [-23, -1] and out_zp in [-128, 127] (else NULL), the
 * whole requantization as one 64-bit
 * step: with p = x * mult (x the accumulator, corr included), right =
 * -shift and D = 2^(31 + right),
 *   result + out_zp = floor((p + R - (p < 0 ? 2^31 : 0)) / D),
 *   R = 2^30 + 2^(30 + right) + out_zp * D
 * (the nudge of the doubling high multiply, the rounding half of the
 * division, the sign-dependent tie break and the zero point folded; exact
 * because nested floors of power-of-two divisions compose and |p + R| <
 * 2^63; p < 0 stands for the reference's "high product < 0", which differs
 * only where that product is 0 and the result 0 either way). Per group of
 * 16 columns, 32 int64: R of the 8 even columns of the group, R of the 8
 * odd ones, then shift counts: 31 + right for the even,
 * right - 1 for the odd (whose result is taken from the high 32 bits). */
typedef struct kiln_s8_requant {
  const int32_t *corr;  /* bias and offsets folded (see above) */
  const int32_t *mult;  /* multiplier in [0, 2^31) */
  const int32_t *left;  /* max(shift, 0) */
  const int32_t *right; /* max(-shift, 0) */
  const int32_t *half;  /* right > 0 ? 2^(right - 1) : 0 */
  const int64_t *wide;
  int32_t out_zp, act_min, act_max;
} kiln_s8_requant;

/* A prepared product: packed weights and requantization of N columns. */
typedef struct kiln_s8_gemm {
  int32_t n;     /* columns */
  int32_t k, kp; /* depth, and depth rounded up to the kernel's kgroup */
  const void *b; /* packed weights (layout above) */
  kiln_s8_requant rq;
} kiln_s8_gemm;

typedef struct kiln_s8_gemm_kernel {
  const char *name; /* "s8_gemm_8x32_avx512vnni" */
  uint32_t isa;     /* ISA bits it needs (kernels/cpu.h) */
  int32_t mr, nr;   /* rows and columns of its largest tile */
  int32_t lanes;    /* columns per packed group (the vector width) */
  int32_t kgroup;   /* depths per packed block */
  int32_t a_elem;   /* bytes per element of packed A and weights */
  int32_t a_offset; /* A = X + a_offset */
  bool wide_requant; /* uses kiln_s8_requant.wide where it is set */
  /* Packs `rows` rows of X (x_stride bytes apart, K int8 each) into A.
   * With a_elem 1 it may work in place (x == a, x_stride == a_stride). */
  void (*pack_a)(const int8_t *x, size_t x_stride, int32_t rows, int32_t k, int32_t kp,
                 void *a, size_t a_stride);
  /* The micro-kernel (contract above); c points at row 0, column 0. */
  void (*run)(const kiln_s8_gemm *g, const void *a, size_t a_stride, int32_t rows,
              int32_t n_begin, int32_t n_end, int8_t *c, size_t c_stride);
  /* The vector requantization alone, for tests: out[i] =
   * MultiplyByQuantizedMultiplier(acc[i] + corr[i], mult[i], shift[i]) +
   * out_zp for i < n (a multiple of lanes), not clamped; through rq->wide
   * where it is set. */
  void (*requant32)(const kiln_s8_requant *rq, const int32_t *acc, int32_t n, int32_t *out);
} kiln_s8_gemm_kernel;

/* X(tile_isa, isa bits, mr, nr, lanes, kgroup, a_elem, a_offset, wide) for every
 * kernel, best first; kernel tile_isa is kiln_s8_gemm_<tile_isa> in
 * kernels/{x86,arm}/s8_gemm_<tile_isa>.c. */
#if defined(__x86_64__)
#define KILN_S8_GEMM_KERNELS(X)                                                         \
  X(8x32_avx512vnni, KILN_ISA_AVX512 | KILN_ISA_AVX512VNNI, 8, 32, 16, 4, 1, 128, true) \
  X(6x16_avxvnni, KILN_ISA_AVX2 | KILN_ISA_AVXVNNI, 6, 16, 8, 4, 1, 128, false)          \
  X(4x16_avx2, KILN_ISA_AVX2, 4, 16, 8, 2, 2, 0, false)
#elif defined(__aarch64__)
#define KILN_S8_GEMM_KERNELS(X)                                                       \
  X(4x16_neondot, KILN_ISA_NEON | KILN_ISA_NEON_DOT, 4, 16, 4, 4, 1, 0, false)        \
  X(2x8_neon, KILN_ISA_NEON, 2, 8, 8, 8, 1, 0, false)
#else
#define KILN_S8_GEMM_KERNELS(X)
#endif

#define KILN_S8_GEMM_DECLARE(tile_isa, isa, mr, nr, lanes, kgroup, a_elem, a_offset, wide) \
  void kiln_s8_gemm_pack_a_##tile_isa(const int8_t *x, size_t x_stride, int32_t rows,      \
                                      int32_t k, int32_t kp, void *a, size_t a_stride);    \
  void kiln_s8_gemm_##tile_isa(const kiln_s8_gemm *g, const void *a, size_t a_stride,     \
                               int32_t rows, int32_t n_begin, int32_t n_end, int8_t *c,    \
                               size_t c_stride);                                           \
  void kiln_s8_requant32_##tile_isa(const kiln_s8_requant *rq, const int32_t *acc,        \
                                    int32_t n, int32_t *out);
KILN_S8_GEMM_KERNELS(KILN_S8_GEMM_DECLARE)
#undef KILN_S8_GEMM_DECLARE

/* The kernels of this build, best first: i in [0, count). */
int32_t kiln_s8_gemm_kernel_count(void);
const kiln_s8_gemm_kernel *kiln_s8_gemm_kernel_at(int32_t i);
/* The best kernel whose ISA bits are all in isa; NULL if none (isa 0). */
const kiln_s8_gemm_kernel *kiln_s8_gemm_select(uint32_t isa);

/* Whether the kernels reproduce the reference for these requantization
 * parameters: every multiplier in [0, 2^31) and shift in [-31, 31]. */
bool kiln_s8_gemm_supported(const int32_t *mult, const int32_t *shift, int32_t n);

/* Bytes of the memory kiln_s8_gemm_init fills for an n x k product. */
size_t kiln_s8_gemm_bytes(const kiln_s8_gemm_kernel *kern, int32_t n, int32_t k);
/* Fills g from weights [n][k], bias [n] (NULL: zeros), the input offset
 * (-input zero point), per-column multiplier and shift [n], the output zero
 * point and clamp; packed data goes to mem (kiln_s8_gemm_bytes(kern, n, k)
 * bytes; kernels need no alignment, a 64-byte aligned start keeps vectors on
 * cache lines), which g points into. */
void kiln_s8_gemm_init(const kiln_s8_gemm_kernel *kern, int32_t n, int32_t k,
                       const int8_t *weights, const int32_t *bias, int32_t input_offset,
                       const int32_t *mult, const int32_t *shift, int32_t out_zp,
                       int32_t act_min, int32_t act_max, void *mem, kiln_s8_gemm *g);

/* Fills g for memory that kiln_s8_gemm_init filled earlier with the same
 * kern, n, k, mult, shift and out_zp (a bundle's stored copy): reads
 * nothing from mem, only points g into it. */
void kiln_s8_gemm_attach(const kiln_s8_gemm_kernel *kern, int32_t n, int32_t k,
                         const int32_t *mult, const int32_t *shift, int32_t out_zp,
                         int32_t act_min, int32_t act_max, const void *mem, kiln_s8_gemm *g);

/* Bytes kiln_s8_requant_fill needs for n columns. */
size_t kiln_s8_requant_bytes(const kiln_s8_gemm_kernel *kern, int32_t n);
/* Fills rq for kern from multiplier and shift [n] and the output zero point
 * and clamp, arrays in mem (kiln_s8_requant_bytes); corr gets bias (NULL:
 * zeros) and kiln_s8_gemm_init adds the offsets. For kiln_s8_gemm_init and
 * tests. */
void kiln_s8_requant_fill(const kiln_s8_gemm_kernel *kern, int32_t n, const int32_t *bias,
                          const int32_t *mult, const int32_t *shift, int32_t out_zp,
                          int32_t act_min, int32_t act_max, void *mem, kiln_s8_requant *rq);

/* im2col rows [m0, m0 + rows) of an int8 CONV_2D (groups 1) into rows of
 * out, out_stride bytes apart (at least kiln_s8_im2col_stride(p, K)), K =
 * filter_h * filter_w * in_c, in the order of an OHWI filter's row:
 * out[r][(fy * filter_w + fx) * in_c + ic] is the input at output pixel
 * m0 + r's tap (fy, fx), channel ic, or pad (the input zero point) where the
 * tap falls in padding; what follows K in a row is unspecified. Output
 * pixel m is (b, oy, ox) with m = (b * out_h + oy) * out_w + ox. input
 * [batch, in_h, in_w, in_c]. out needs KILN_S8_IM2COL_SLACK bytes past
 * rows * out_stride (short runs are copied 16 bytes at a time). */
#define KILN_S8_IM2COL_SLACK 16
void kiln_s8_im2col(const kiln_conv_params *p, const int8_t *input, int8_t pad, int64_t m0,
                    int32_t rows, int8_t *out, size_t out_stride);
/* The smallest row stride >= min_stride (a multiple of 4 when larger) that
 * kiln_s8_im2col accepts: room for its 16-byte copies. */
size_t kiln_s8_im2col_stride(const kiln_conv_params *p, size_t min_stride);

#endif
