/* Weight packing and the kernel tables of the optimized depthwise conv
 * (see kernels/dwconv.h). */
#include "kernels/dwconv.h"

#include <string.h>

const kiln_dw_kernels *const kiln_dw_tables[] = {
#if defined(__x86_64__)
    &kiln_dw_avx512,
    &kiln_dw_avx2,
#endif
    NULL,
};

static size_t tiles(int32_t channels, int32_t tile) {
  return (size_t)((channels + tile - 1) / tile);
}

size_t kiln_dw_packed_f32_count(int32_t channels, int32_t k, int32_t tile) {
  return tiles(channels, tile) * (size_t)(1 + k * k) * (size_t)tile;
}

size_t kiln_dw_packed_s8_count(int32_t channels, int32_t k, int32_t tile) {
  return tiles(channels, tile) * (size_t)(6 + k * k) * (size_t)tile;
}

void kiln_dw_pack_f32(int32_t channels, int32_t k, int32_t tile, const float *filter,
                      const float *bias, float *dst) {
  memset(dst, 0, kiln_dw_packed_f32_count(channels, k, tile) * sizeof *dst);
  for (int32_t c = 0; c < channels; c++) {
    float *t = dst + (size_t)(c / tile) * (size_t)(1 + k * k) * (size_t)tile + c % tile;
    t[0] = bias ? bias[c] : 0.0f;
    for (int32_t tap = 0; tap < k * k; tap++)
      t[(size_t)(1 + tap) * (size_t)tile] = filter[(size_t)tap * (size_t)channels + (size_t)c];
  }
}

void kiln_dw_pack_s8(int32_t channels, int32_t k, int32_t tile, const int8_t *filter,
                     const int32_t *bias, int32_t input_offset, const int32_t *multiplier,
                     const int32_t *shift, int32_t *dst) {
  memset(dst, 0, kiln_dw_packed_s8_count(channels, k, tile) * sizeof *dst);
  const size_t kk = (size_t)k * (size_t)k;
  for (int32_t c = 0; c < channels; c++) {
    int32_t *t = dst + (size_t)(c / tile) * (6 + kk) * (size_t)tile + c % tile;
    /* bias + input_offset * sum(w), modulo 2^32 like the accumulator. */
    uint32_t folded = bias ? (uint32_t)bias[c] : 0u;
    for (size_t tap = 0; tap < kk; tap++) {
      const int32_t w = filter[tap * (size_t)channels + (size_t)c];
      folded += (uint32_t)(input_offset * w);
      t[(1 + tap) * (size_t)tile] = (int32_t)(uint16_t)(int16_t)w;
    }
    t[0] = (int32_t)folded;
    const int32_t right = shift[c] < 0 ? -shift[c] : 0;
    const int32_t mask = (int32_t)(((int64_t)1 << right) - 1);
    int32_t *q = t + (1 + kk) * (size_t)tile;
    q[0] = multiplier[c];
    q[tile] = shift[c] > 0 ? shift[c] : 0;
    q[2 * tile] = right;
    q[3 * tile] = mask;
    q[4 * tile] = mask >> 1;
  }
}
