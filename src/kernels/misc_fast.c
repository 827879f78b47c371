/* The kernel tables of kernels/misc_fast.h and the prepare-time coordinate
 * computation of the optimized RESIZE_BILINEAR. */
#include "kernels/misc_fast.h"

#include <math.h>
#include <stddef.h>

#include "kernels/cpu.h"

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

#if defined(__x86_64__)
#define KILN_MISC_ENTRY(type, name) name,
static const kiln_misc_kernels misc_avx512 = {KILN_ISA_AVX512,
                                              KILN_MISC_KERNEL_LIST(KILN_MISC_ENTRY, avx512)};
static const kiln_misc_kernels misc_avx2 = {KILN_ISA_AVX2,
                                            KILN_MISC_KERNEL_LIST(KILN_MISC_ENTRY, avx2)};
#undef KILN_MISC_ENTRY
#elif defined(__aarch64__)
#define KILN_MISC_ENTRY(type, name) name,
static const kiln_misc_kernels misc_neon = {KILN_ISA_NEON,
                                            KILN_MISC_KERNEL_LIST(KILN_MISC_ENTRY, neon)};
#undef KILN_MISC_ENTRY
#endif

const kiln_misc_kernels *const kiln_misc_tables[] = {
#if defined(__x86_64__)
    &misc_avx512,
    &misc_avx2,
#elif defined(__aarch64__)
    &misc_neon,
#endif
    NULL,
};

const kiln_misc_kernels *kiln_misc_pick(uint32_t isa) {
  for (const kiln_misc_kernels *const *t = kiln_misc_tables; *t; t++)
    if (((*t)->isa & isa) == (*t)->isa) return *t;
  return NULL;
}

/* ---- RESIZE_BILINEAR coordinates (kernels/ref/resize_ref.c's formulas) ---- */

static float bilinear_scale(int32_t in, int32_t out, bool align_corners) {
  if (align_corners && out > 1) return (float)(in - 1) / (float)(out - 1);
  return (float)in / (float)out;
}

void kiln_resize_axis_f32(int32_t in, int32_t out, bool align_corners, bool half_pixel_centers,
                          int32_t *lo, int32_t *hi, float *frac) {
  const float scale = bilinear_scale(in, out, align_corners);
  for (int32_t i = 0; i < out; i++) {
    float pos;
    if (half_pixel_centers) {
      const float centered = ((float)i + 0.5f) * scale;
      pos = centered - 0.5f;
    } else {
      pos = (float)i * scale;
    }
    const int32_t fl = (int32_t)floorf(pos);
    const int32_t ce = (int32_t)ceilf(pos);
    lo[i] = fl > 0 ? fl : 0;
    hi[i] = ce < in - 1 ? ce : in - 1;
    frac[i] = pos - (float)lo[i];
  }
}

void kiln_resize_axis_s8(int32_t in, int32_t out, bool align_corners, bool half_pixel_centers,
                         int32_t *lo, int32_t *hi, int32_t *frac) {
  const int32_t scale = align_corners && out > 1
                            ? ((1 << 10) * (in - 1) + (out - 1) / 2) / (out - 1)
                            : ((1 << 10) * in + out / 2) / out;
  for (int32_t i = 0; i < out; i++) {
    const int32_t pos = half_pixel_centers ? i * scale + scale / 2 - (1 << 9) : i * scale;
    const int32_t l = pos / (1 << 10);
    const int32_t h = (pos + (1 << 10) - 1) / (1 << 10);
    lo[i] = l > 0 ? l : 0;
    hi[i] = h < in - 1 ? h : in - 1;
    frac[i] = pos - (1 << 10) * lo[i];
  }
}
