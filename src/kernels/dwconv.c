/* Weight packing and the kernel tables of the optimized depthwise conv
 * (see kernels/dwconv.h). */
#include "kernels/dwconv.h"

#include <string.h>

const kiln_dw_kernels *const kiln_dw_tables[] = {
#if defined(__x86_64__)
    &kiln_dw_avx512,
    &kiln_dw_avx2,
#elif defined(__aarch64__)
    &kiln_dw_neon,
#endif
    NULL,
};

const kiln_dw_dot4_kernel *const kiln_dw_dot4_tables[] = {
#if defined(__x86_64__)
    &kiln_dw_dot4_avx512vnni,
    &kiln_dw_dot4_avxvnni,
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

size_t kiln_dw_packed_s8_dot4_count(int32_t channels, int32_t tile) {
  return tiles(channels, tile) * 16 * (size_t)tile;
}

/* Whether the fast requantization form applies (kernels/dwconv.h). */
static bool dot4_fast(int32_t channels, const int8_t *filter, const int32_t *bias,
                      const int32_t *multiplier, const int32_t *shift) {
  for (int32_t c = 0; c < channels; c++) {
    if (multiplier[c] != 0 && (shift[c] < -23 || shift[c] > 0)) return false;
    int64_t bound = bias ? (bias[c] < 0 ? -(int64_t)bias[c] : bias[c]) : 0;
    for (int32_t tap = 0; tap < 9; tap++) {
      const int32_t w = filter[(size_t)tap * (size_t)channels + (size_t)c];
      bound += 255 * (w < 0 ? -w : w);
    }
    if (bound >= (int64_t)1 << 29) return false;
  }
  return true;
}

/* Taps of channel c as the bytes of one word: rows 0..2 of filter column fx
 * in bytes b0..b0+2 (the other byte 0). */
static int32_t dot4_word(const int8_t *filter, int32_t channels, int32_t c, int32_t fx,
                         int32_t b0) {
  uint32_t word = 0;
  for (int32_t fy = 0; fy < 3; fy++) {
    const uint8_t w = (uint8_t)filter[(size_t)(fy * 3 + fx) * (size_t)channels + (size_t)c];
    word |= (uint32_t)w << (8 * (b0 + fy));
  }
  return (int32_t)word;
}

/* Rows 9-15 of one channel (word j of the tile at t) in the fast form. */
static void dot4_rq_fast(int32_t *t, int32_t j, int32_t tile, int32_t mult, int32_t right,
                         int32_t zp) {
  const size_t t32 = (size_t)tile;
  int64_t *r2 = (int64_t *)(void *)(t - j + 10 * t32);
  const size_t slot = (size_t)(j % 2) * (t32 / 2) + (size_t)(j / 2);
  const int64_t r = ((int64_t)1 << 30) + (right > 0 ? (int64_t)1 << (30 + right) : 0) +
                    (int64_t)zp * ((int64_t)1 << (31 + right));
  /* Modulo 2^64, like the kernel's sum. */
  r2[slot] = (int64_t)((uint64_t)(2 * r) - ((uint64_t)(uint32_t)mult << 32));
  t[9 * t32] = right;
  t[12 * t32] = right > 0 ? (int32_t)(((int64_t)1 << (right - 1)) + (int64_t)zp * (1 << right))
                          : INT32_MIN;
}

/* Rows 9-15 of one channel in the general form. */
static void dot4_rq_general(int32_t *t, int32_t j, int32_t tile, int32_t left, int32_t right) {
  const size_t t32 = (size_t)tile;
  int64_t *rq = (int64_t *)(void *)(t - j + 10 * t32);
  const size_t slot = (size_t)(j % 2) * (t32 / 2) + (size_t)(j / 2);
  rq[slot] = ((int64_t)1 << 30) + (right > 0 ? (int64_t)1 << (30 + right) : 0);
  rq[t32 + slot] = 31 + right;
  rq[2 * t32 + slot] = right > 0 ? (int64_t)1 << 31 : 0;
  t[9 * t32] = left;
}

bool kiln_dw_pack_s8_dot4(int32_t channels, int32_t tile, const int8_t *filter,
                          const int32_t *bias, int32_t input_offset, const int32_t *multiplier,
                          const int32_t *shift, int32_t output_zp, int32_t *dst) {
  const size_t n = kiln_dw_packed_s8_dot4_count(channels, tile);
  memset(dst, 0, n * sizeof *dst);
  const bool fast = dot4_fast(channels, filter, bias, multiplier, shift);
  const size_t t32 = (size_t)tile;
  for (int32_t c = 0; c < (int32_t)(n / 16); c++) {
    const int32_t j = c % tile;
    int32_t *t = dst + (size_t)(c / tile) * 16 * t32 + (size_t)j;
    const bool real = c < channels;
    /* Zero multipliers (and padded channels) take right shift 1: the
     * result is the zero point whatever the shift. */
    const int32_t s = real && multiplier[c] != 0 ? shift[c] : -1;
    const int32_t mult = real ? multiplier[c] : 0;
    if (fast)
      dot4_rq_fast(t, j, tile, mult, s < 0 ? -s : 0, real ? output_zp : 0);
    else
      dot4_rq_general(t, j, tile, s > 0 ? s : 0, s < 0 ? -s : 0);
    if (!real) continue;
    uint32_t folded_bias = bias ? (uint32_t)bias[c] : 0u;
    for (int32_t tap = 0; tap < 9; tap++)
      folded_bias += (uint32_t)(input_offset - 128) *
                     (uint32_t)(int32_t)filter[(size_t)tap * (size_t)channels + (size_t)c];
    t[0] = (int32_t)(folded_bias + (fast ? (uint32_t)1 << 31 : 0u));
    for (int32_t fx = 0; fx < 3; fx++) {
      t[(size_t)(1 + fx) * t32] = dot4_word(filter, channels, c, fx, 0);
      t[(size_t)(4 + fx) * t32] = dot4_word(filter, channels, c, fx, 1);
    }
    const int32_t m_word = fast ? (int32_t)((uint32_t)mult * 2u) : mult;
    t[7 * t32] = m_word;
    if (j % 2) t[8 * t32 - 1] = m_word;
  }
  return fast;
}
