/*
 * kernels/misc_fast.h: optimized kernels for ADD, PRELU, AVERAGE_POOL_2D,
 * MAX_POOL_2D, MEAN over height and width, and RESIZE_BILINEAR, float32 and
 * int8, vectorized (kernels/{x86,arm}/{add,prelu,pool,mean,resize}_fast_*.c).
 * Each computes exactly what its reference kernel in kernels/ref/ computes: int8
 * bit for bit, float32 with the reference's operations in the reference's
 * order (so equal results, within 1e-5 relative at worst). Kernels take a
 * range of outputs so the runtime can split an op over threads; an output's
 * arithmetic never depends on the range it falls in.
 *
 * Tensors are NHWC where the op is spatial. Prepare picks a table with
 * kiln_misc_pick(kiln_prepare_isa(ctx)).
 */
#ifndef KILN_KERNELS_MISC_FAST_H
#define KILN_KERNELS_MISC_FAST_H

#include <stdbool.h>
#include <stdint.h>

#include "kernels/ref/elementwise_ref.h"
#include "kernels/ref/pool_ref.h"

/* ---- ADD ----
 * One run of n outputs: out[i] = a[i * sa] + b[i * sb] with sa, sb each 0
 * (a broadcast value) or 1; then the fused activation clamp (float) or
 * TFLite's quantized add (int8, kiln_addsub_q from kiln_addsub_q_init). */
typedef void kiln_f32_add_fn(int64_t n, const float *a, int64_t sa, const float *b, int64_t sb,
                             float *out, float act_min, float act_max);
typedef void kiln_s8_add_fn(int64_t n, const int8_t *a, int64_t sa, const int8_t *b, int64_t sb,
                            int8_t *out, const kiln_addsub_q *p);

/* ---- PRELU ----
 * One run of n outputs: out[i] = prelu(x[i * sx], alpha[i * sa]), sx, sa
 * each 0 or 1; int8 with kiln_prelu_q from kiln_prelu_q_init. */
typedef void kiln_f32_prelu_fn(int64_t n, const float *x, int64_t sx, const float *alpha,
                               int64_t sa, float *out);
typedef void kiln_s8_prelu_fn(int64_t n, const int8_t *x, int64_t sx, const int8_t *alpha,
                              int64_t sa, int8_t *out, const kiln_prelu_q *p);

/* ---- AVERAGE_POOL_2D, MAX_POOL_2D ----
 * in [N, H, W, C] (in_shape), out [N, OH, OW, C] (out_shape); computes the
 * output rows [r0, r1) of the N * OH rows, all channels. The int8 average
 * divides in float, exact while the window has at most
 * KILN_POOL_S8_MAX_WINDOW cells (prepare checks). */
#define KILN_POOL_S8_MAX_WINDOW 65536
typedef void kiln_f32_pool_fn(const kiln_pool_params *p, const int32_t in_shape[4], const float *in,
                              const int32_t out_shape[4], float *out, int64_t r0, int64_t r1);
typedef void kiln_s8_pool_fn(const kiln_pool_params *p, const int32_t in_shape[4], const int8_t *in,
                             const int32_t out_shape[4], int8_t *out, int64_t r0, int64_t r1);

/* ---- MEAN over H and W of one image ----
 * in [hw, channels], out [channels]; computes channels [c0, c1). */
typedef struct kiln_mean_q {
  int32_t zp_times_count; /* input zero point * hw, modulo 2^32 */
  int32_t multiplier;     /* from kiln_mean_q_multiplier */
  int32_t shift;          /* -31 .. 30 */
  int32_t out_zp;
} kiln_mean_q;
typedef void kiln_f32_mean_hw_fn(int32_t hw, int32_t channels, const float *in, float *out,
                                 int32_t c0, int32_t c1);
typedef void kiln_s8_mean_hw_fn(const kiln_mean_q *q, int32_t hw, int32_t channels,
                                const int8_t *in, int8_t *out, int32_t c0, int32_t c1);

/* ---- RESIZE_BILINEAR ----
 * Source coordinates per output row / column, filled at prepare by
 * kiln_resize_axis_f32 / _s8. Kernels compute output rows [r0, r1) of the
 * batch * out_h rows. */
typedef struct kiln_resize_plan {
  int32_t batch, in_h, in_w, channels, out_h, out_w;
  const int32_t *y_lo, *y_hi; /* [out_h] source rows */
  const int32_t *x_lo, *x_hi; /* [out_w] source columns */
  const float *fy, *fx;       /* float: weight of the hi row / column (1 - it for lo) */
  const int32_t *qy, *qx;     /* int8: the same in units of 2^-10 */
} kiln_resize_plan;
typedef void kiln_f32_resize_fn(const kiln_resize_plan *rp, const float *in, float *out, int64_t r0,
                                int64_t r1);
typedef void kiln_s8_resize_fn(const kiln_resize_plan *rp, const int8_t *in, int8_t *out,
                               int64_t r0, int64_t r1);

/* TFLite's source coordinates for one axis of `in` -> `out` samples (as
 * kiln_*_resize_bilinear_ref computes them): lo, hi and frac [out]. */
void kiln_resize_axis_f32(int32_t in, int32_t out, bool align_corners, bool half_pixel_centers,
                          int32_t *lo, int32_t *hi, float *frac);
void kiln_resize_axis_s8(int32_t in, int32_t out, bool align_corners, bool half_pixel_centers,
                         int32_t *lo, int32_t *hi, int32_t *frac);

/* ---- The vector requantization itself ----
 * out[i] = MultiplyByQuantizedMultiplier(x[i], mult[i], shift[i]) with the
 * code every int8 kernel above inlines; exposed so tests can reach operands
 * no model produces (INT32_MIN * INT32_MIN). -31 <= shift <= 30. */
typedef void kiln_requant_fn(int32_t n, const int32_t *x, const int32_t *mult, const int32_t *shift,
                             int32_t *out);

/* The kernels of one instruction set. */
typedef struct kiln_misc_kernels {
  uint32_t isa; /* kernels/cpu.h bits it needs */
  kiln_f32_add_fn *f32_add;
  kiln_s8_add_fn *s8_add;
  kiln_f32_prelu_fn *f32_prelu;
  kiln_s8_prelu_fn *s8_prelu;
  kiln_f32_pool_fn *f32_avg_pool, *f32_max_pool;
  kiln_s8_pool_fn *s8_avg_pool, *s8_max_pool;
  kiln_f32_mean_hw_fn *f32_mean_hw;
  kiln_s8_mean_hw_fn *s8_mean_hw;
  kiln_f32_resize_fn *f32_resize_bilinear;
  kiln_s8_resize_fn *s8_resize_bilinear;
  kiln_requant_fn *requant;
} kiln_misc_kernels;

/* The kernels each ISA file defines (kernels/{x86,arm}/<op>_fast_<isa>.c), in
 * table order. */
#define KILN_MISC_KERNEL_LIST(X, isa)                   \
  X(kiln_f32_add_fn, kiln_f32_add_##isa)                \
  X(kiln_s8_add_fn, kiln_s8_add_##isa)                  \
  X(kiln_f32_prelu_fn, kiln_f32_prelu_##isa)            \
  X(kiln_s8_prelu_fn, kiln_s8_prelu_##isa)              \
  X(kiln_f32_pool_fn, kiln_f32_avg_pool_##isa)          \
  X(kiln_f32_pool_fn, kiln_f32_max_pool_##isa)          \
  X(kiln_s8_pool_fn, kiln_s8_avg_pool_##isa)            \
  X(kiln_s8_pool_fn, kiln_s8_max_pool_##isa)            \
  X(kiln_f32_mean_hw_fn, kiln_f32_mean_hw_##isa)        \
  X(kiln_s8_mean_hw_fn, kiln_s8_mean_hw_##isa)          \
  X(kiln_f32_resize_fn, kiln_f32_resize_bilinear_##isa) \
  X(kiln_s8_resize_fn, kiln_s8_resize_bilinear_##isa)   \
  X(kiln_requant_fn, kiln_requant_##isa)

#if defined(__x86_64__)
#define KILN_MISC_DECLARE(type, name) type name;
KILN_MISC_KERNEL_LIST(KILN_MISC_DECLARE, avx512)
KILN_MISC_KERNEL_LIST(KILN_MISC_DECLARE, avx2)
#undef KILN_MISC_DECLARE
#elif defined(__aarch64__)
#define KILN_MISC_DECLARE(type, name) type name;
KILN_MISC_KERNEL_LIST(KILN_MISC_DECLARE, neon)
#undef KILN_MISC_DECLARE
#endif

/* Tables, best first, ending with NULL. */
extern const kiln_misc_kernels *const kiln_misc_tables[];

/* The first table whose ISA bits are all in isa, or NULL. */
const kiln_misc_kernels *kiln_misc_pick(uint32_t isa);

#endif
