/*
 * kernels/f32_gemm.h: float32 GEMM micro-kernels for CONV_2D and
 * FULLY_CONNECTED, the layout of their packed weights, and the indirection that
 * turns a conv into a GEMM.
 *
 * The product is C[M x N] = clamp(A[M x K] * B[K x N] + bias[N], min, max):
 * A's rows are input pixels (or a conv's windows), B is the weights
 * transposed, N the output channels. The micro-kernels read A indirectly,
 * as XNNPACK's IGEMM does: depth K = ks * kc is ks runs of kc contiguous
 * floats, and each row gives one pointer per run. For a 1x1 conv or a fully
 * connected layer ks = 1 and the pointer is the input row; for a conv's
 * window the runs are its rows of taps (or single taps), pointing into the
 * input, so no im2col copy is made except of windows cut by padding.
 *
 * Packed weights (kiln_f32_gemm_pack): the N columns are cut into panels of
 * kern->nr columns; the last panel is narrower when N is not a multiple of
 * nr, rounded up to a multiple of kern->lanes (the vector width). A panel of
 * width w is w float bias values followed by K rows of w weights (row k
 * holds B[k][n0 .. n0 + w)), padded with zeros past N. The weights are
 * float, or IEEE half when every weight is a half exactly (the common fp16
 * model: its weights were halves before they were dequantized); the kernel
 * then reads half the bytes and converts them back without loss, so both
 * layouts give identical results. Panels follow each other: column n0's
 * panel starts kiln_f32_gemm_panel_bytes(n0, K, half) bytes in, and
 * full-width panels are 64-byte aligned when packed is.
 *
 * Micro-kernel contract (kiln_f32_gemm_fn; fn reads float weights, fn_f16
 * half weights):
 *   fn(mr, nc, kc, ks, a, w, c, c_stride, min, max)
 *   a  [ks][mr] pointers: row i's depth t * kc + d is a[t * mr + i][d]
 *   w  the packed panels (K = ks * kc) covering nc columns, starting at a
 *      panel boundary
 *   c  [mr rows, c_stride apart] x [nc]  written, nothing past nc
 *   1 <= mr <= kern->mr, nc >= 1, kc >= 1, ks >= 1.
 * Each output is bias + sum over depth in increasing order of a * b, each
 * step one fused multiply-add, then clamped to [min, max]. A row's result
 * does not depend on mr or on which panels a call covers, so any split of
 * the output over calls (and threads) gives identical results.
 *
 * Kernels are listed best first by kiln_f32_gemm_kernel_at; prepare takes
 * kiln_f32_gemm_select(isa) and falls back to the reference conv when it is
 * NULL (no kernel for this CPU, or reference kernels forced).
 */
#ifndef KILN_KERNELS_F32_GEMM_H
#define KILN_KERNELS_F32_GEMM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/ref/conv_ref.h"

typedef void (*kiln_f32_gemm_fn)(int32_t mr, int32_t nc, int32_t kc, int32_t ks,
                                 const float *const *a, const void *w, float *c, size_t c_stride,
                                 float min, float max);

typedef struct kiln_f32_gemm_kernel {
  const char *name;        /* "f32_gemm_8x32_avx512" */
  uint32_t isa;            /* ISA bits it needs (kernels/cpu.h) */
  int32_t mr;              /* most rows per call */
  int32_t nr;              /* panel width */
  int32_t lanes;           /* vector width; the last panel is a multiple of it */
  kiln_f32_gemm_fn fn;     /* float weights */
  kiln_f32_gemm_fn fn_f16; /* half weights */
} kiln_f32_gemm_kernel;

/* X(tile_isa, isa bits, mr, nr, lanes) for every micro-kernel, best first;
 * kernel tile_isa is the functions kiln_f32_gemm_<tile_isa> and
 * kiln_f32_gemm_<tile_isa>_f16 in kernels/{x86,arm}/f32_gemm_<tile_isa>.c. */
#if defined(__x86_64__)
#define KILN_F32_GEMM_KERNELS(X)            \
  X(8x32_avx512, KILN_ISA_AVX512, 8, 32, 8) \
  X(6x16_avx2, KILN_ISA_AVX2, 6, 16, 8)
#elif defined(__aarch64__)
#define KILN_F32_GEMM_KERNELS(X) X(8x8_neon, KILN_ISA_NEON, 8, 8, 4)
#else
#define KILN_F32_GEMM_KERNELS(X)
#endif

#define KILN_F32_GEMM_DECLARE(tile_isa, isa, mr, nr, lanes)                                      \
  void kiln_f32_gemm_##tile_isa(int32_t mr_, int32_t nc, int32_t kc, int32_t ks,                 \
                                const float *const *a, const void *w, float *c, size_t c_stride, \
                                float min, float max);                                           \
  void kiln_f32_gemm_##tile_isa##_f16(int32_t mr_, int32_t nc, int32_t kc, int32_t ks,           \
                                      const float *const *a, const void *w, float *c,            \
                                      size_t c_stride, float min, float max);
KILN_F32_GEMM_KERNELS(KILN_F32_GEMM_DECLARE)
#undef KILN_F32_GEMM_DECLARE

/* No kernel takes more rows than this. */
#define KILN_F32_GEMM_MAX_MR 16

/* The kernels of this build, best first: i in [0, count). */
int32_t kiln_f32_gemm_kernel_count(void);
const kiln_f32_gemm_kernel *kiln_f32_gemm_kernel_at(int32_t i);
/* The best kernel whose ISA bits are all in isa; NULL if none (isa 0). */
const kiln_f32_gemm_kernel *kiln_f32_gemm_select(uint32_t isa);

/* True when every one of the n floats is exactly an IEEE half. */
bool kiln_f32_gemm_halves_exact(const float *v, size_t n);
/* Bytes before the panel of column n0 (a multiple of kern->nr): each
 * column takes a float bias and k weights. */
static inline size_t kiln_f32_gemm_panel_bytes(int32_t n0, int32_t k, bool half) {
  return (size_t)n0 * (sizeof(float) + (size_t)k * (half ? 2u : sizeof(float)));
}
/* Bytes of packed weights for an n x k product (see the layout above). */
size_t kiln_f32_gemm_packed_bytes(const kiln_f32_gemm_kernel *kern, int32_t n, int32_t k,
                                  bool half);
/* Packs weights [n][k] (row-major: output channel, then depth) and bias [n]
 * (NULL: zeros) into packed[kiln_f32_gemm_packed_bytes(kern, n, k, half)];
 * half weights only when kiln_f32_gemm_halves_exact holds for them. */
void kiln_f32_gemm_pack(const kiln_f32_gemm_kernel *kern, int32_t n, int32_t k,
                        const float *weights, const float *bias, bool half, void *packed);

/* The indirection of output pixels [m0, m0 + rows) of a CONV_2D (groups 1).
 * A window's K = filter_h * filter_w * in_c floats are cut into runs of
 * run_taps consecutive taps along x (kc = run_taps * in_c floats each, in
 * OHWI filter order): run_taps is 1, or filter_w when dilation_w is 1 (a
 * row of taps is then contiguous in the input). a[j * rows + r] is run j of
 * output pixel m0 + r: a pointer into the input, `zeros` (at least kc zero
 * floats) when every tap of the run is in padding, or, when only some are,
 * a copy with zeros in edge[r * K ...] (edge holds rows * K floats).
 * Output pixel m is (b, oy, ox) with m = (b * out_h + oy) * out_w + ox.
 * input [batch, in_h, in_w, in_c]; a [filter_h * filter_w / run_taps * rows]. */
void kiln_f32_conv_indirection(const kiln_conv_params *p, int32_t run_taps, const float *input,
                               const float *zeros, float *edge, int64_t m0, int32_t rows,
                               const float **a);

#endif
