/*
 * kernels/s8_fc.h: int8 FULLY_CONNECTED as matrix-vector products, the fast
 * path of runtime/fast_conv_s8.c. TFLite's reference FULLY_CONNECTED
 * rescales each int32 accumulator in double precision (kiln_fc_requant), so
 * the kernels here only produce exact int32 accumulators and the rescale
 * stays scalar (one per output, a negligible share of the work).
 *
 *   acc[o] = corr[o] + sum_k W[o][k] * A[k],  A[k] = X[k] + a_offset
 *
 * W: int8 rows [N][kp], K padded with zeros to kp (a multiple of kgroup).
 * A: the input row converted by kern->convert (VNNI kernels take unsigned
 * bytes X + 128, a_offset 128; others take X as is), kp bytes.
 * corr[o] = bias[o] + (input_offset - a_offset) * sum_k W[o][k], so acc is
 * the reference accumulator exactly, modulo 2^32 as the reference's int32.
 */
#ifndef KILN_KERNELS_S8_FC_H
#define KILN_KERNELS_S8_FC_H

#include <stddef.h>
#include <stdint.h>

typedef struct kiln_s8_fc_kernel {
  const char *name;
  uint32_t isa;     /* kernels/cpu.h bits required */
  int32_t kgroup;   /* kp is K rounded up to this */
  int32_t a_offset; /* added to X by convert */
  /* a[k] = x[k] + a_offset for k < K, 0 up to kp. */
  void (*convert)(const int8_t *x, int32_t k, int32_t kp, uint8_t *a);
  /* acc[r] = sum_k w[r * kp + k] * a[k] for r < rows (corr not added). */
  void (*dot)(const int8_t *w, const uint8_t *a, int32_t kp, int32_t rows, int32_t *acc);
} kiln_s8_fc_kernel;

/* The best kernel whose ISA bits are all in isa, or NULL. */
const kiln_s8_fc_kernel *kiln_s8_fc_select(uint32_t isa);
/* Every kernel compiled in (for tests), *count entries. */
const kiln_s8_fc_kernel *kiln_s8_fc_kernels(int32_t *count);

void kiln_s8_fc_convert_u8_avx512vnni(const int8_t *x, int32_t k, int32_t kp, uint8_t *a);
void kiln_s8_fc_dot_avx512vnni(const int8_t *w, const uint8_t *a, int32_t kp, int32_t rows, int32_t *acc);
void kiln_s8_fc_convert_s8_avx2(const int8_t *x, int32_t k, int32_t kp, uint8_t *a);
void kiln_s8_fc_dot_avx2(const int8_t *w, const uint8_t *a, int32_t kp, int32_t rows, int32_t *acc);
void kiln_s8_fc_convert_s8_neondot(const int8_t *x, int32_t k, int32_t kp, uint8_t *a);
void kiln_s8_fc_dot_neondot(const int8_t *w, const uint8_t *a, int32_t kp, int32_t rows,
                            int32_t *acc);
void kiln_s8_fc_convert_s8_neon(const int8_t *x, int32_t k, int32_t kp, uint8_t *a);
void kiln_s8_fc_dot_neon(const int8_t *w, const uint8_t *a, int32_t kp, int32_t rows, int32_t *acc);

#endif
