/*
 * kernels/x86/requant_tmpl.h: kiln_requant_fn of kernels/misc_fast.h (the
 * vector MultiplyByQuantizedMultiplier every int8 kernel here inlines, on
 * arrays, for the tests) over the vector operations of misc_vec_avx2.h /
 * misc_vec_avx512.h.
 */
#include <stdint.h>
#include <string.h>

#include "kernels/misc_fast.h"

void KX(kiln_requant)(int32_t n, const int32_t *x, const int32_t *mult, const int32_t *shift,
                      int32_t *out) {
  for (int32_t i = 0; i < n; i += VT) {
    const int32_t m = n - i < VT ? n - i : VT;
    int32_t xs[VT] = {0}, ms[VT] = {0}, left[VT] = {0}, right[VT] = {0}, mask[VT] = {0},
            half[VT] = {0}, res[VT];
    memcpy(xs, x + i, (size_t)m * sizeof *xs);
    memcpy(ms, mult + i, (size_t)m * sizeof *ms);
    for (int32_t j = 0; j < m; j++) {
      const int32_t s = shift[i + j];
      left[j] = s > 0 ? s : 0;
      right[j] = s < 0 ? -s : 0;
      mask[j] = (int32_t)(((int64_t)1 << right[j]) - 1);
      half[j] = mask[j] >> 1;
    }
    const VI v = VI_MBQM(VI_LOAD(xs), VI_LOAD(ms), VI_LOAD(left), VI_LOAD(right), VI_LOAD(mask),
                         VI_LOAD(half));
    memcpy(res, &v, sizeof res);
    memcpy(out + i, res, (size_t)m * sizeof *res);
  }
}
