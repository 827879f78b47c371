/*
 * Tests of the ARM64 int8 GEMM and FULLY_CONNECTED kernels
 * (kernels/arm/s8_gemm_*.c, s8_fc_*.c) called directly, every NEON kernel
 * this CPU can run (under qemu-user: the SDOT ones and the plain SMULL /
 * SADALP ones, in one process).
 *
 * GEMM: packed with kiln_s8_gemm_init, rows packed by the kernel's pack_a
 * from separate rows and in place, run over all columns and over column
 * ranges split at tile boundaries. Every output must equal the scalar
 * product requantized with kernels/quant_math.h (weights and inputs over
 * the whole int8 range, -128 included; multipliers over [0, 2^31), shifts
 * over [-31, 31], zero points and clamps at their limits; depths, columns
 * and rows around every tile and block size), and nothing past a row's
 * columns may be written.
 *
 * FC: convert then dot for row counts and depths around the row group and
 * kgroup, against the exact int32 sums; nothing past the rows is written.
 *
 * Built for ARM64 only (tests/CMakeLists.txt).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu.h"
#include "kernels/quant_math.h"
#include "kernels/s8_fc.h"
#include "kernels/s8_gemm.h"
#include "testutil.h"

#define MAX_K 100
#define MAX_N 40
#define MAX_ROWS 9
#define STRIDE_PAD 5 /* extra bytes per packed row (junk in place) */
#define GUARD 0x5a

/* One product's operands and what the reference makes of them. */
typedef struct gemm_case {
  int32_t rows, n, k;
  int8_t x[MAX_ROWS * MAX_K];
  int8_t w[MAX_N * MAX_K];
  int32_t bias[MAX_N], mult[MAX_N], shift[MAX_N];
  int32_t input_offset, out_zp, act_min, act_max;
  int8_t want[MAX_ROWS * MAX_N];
} gemm_case;

static int8_t rand_s8(test_rng *r) {
  const int32_t pick = test_rand_int(r, 0, 9);
  return (int8_t)(pick == 0 ? -128 : pick == 1 ? 127 : test_rand_int(r, -128, 127));
}

static void make_case(test_rng *r, int32_t rows, int32_t n, int32_t k, gemm_case *g) {
  g->rows = rows;
  g->n = n;
  g->k = k;
  for (int32_t i = 0; i < rows * k; i++) g->x[i] = rand_s8(r);
  for (int32_t i = 0; i < n * k; i++) g->w[i] = rand_s8(r);
  for (int32_t j = 0; j < n; j++) {
    g->bias[j] =
        test_rand_int(r, 0, 7) == 0 ? (int32_t)test_rand_u32(r) : test_rand_int(r, -50000, 50000);
    g->mult[j] = test_rand_int(r, 0, 9) == 0 ? 0 : test_rand_int(r, 1 << 30, INT32_MAX);
    const int32_t kind = test_rand_int(r, 0, 3);
    g->shift[j] = kind == 0 ? test_rand_int(r, -31, 31) : test_rand_int(r, -12, -5);
  }
  g->input_offset = test_rand_int(r, 0, 3) == 0 ? 128 : test_rand_int(r, -127, 128);
  g->out_zp = test_rand_int(r, 0, 3) == 0 ? -128 : test_rand_int(r, -128, 127);
  g->act_min = test_rand_int(r, 0, 1) ? -128 : test_rand_int(r, -128, 0);
  g->act_max = test_rand_int(r, 0, 1) ? 127 : test_rand_int(r, g->act_min, 127);
  for (int32_t m = 0; m < rows; m++)
    for (int32_t j = 0; j < n; j++) {
      uint32_t acc = (uint32_t)g->bias[j];
      for (int32_t d = 0; d < k; d++)
        acc += (uint32_t)((int32_t)g->w[j * k + d] * ((int32_t)g->x[m * k + d] + g->input_offset));
      const int32_t v = kiln_mul_by_quantized_multiplier((int32_t)acc, g->mult[j], g->shift[j]);
      const int32_t out = (int32_t)((uint32_t)v + (uint32_t)g->out_zp);
      g->want[m * n + j] = (int8_t)kiln_clamp_i32(out, g->act_min, g->act_max);
    }
}

/* Runs kern on g; rows are packed from separate rows or in place; the
 * columns go in one call or split at `split` (a multiple of kern->nr).
 * Returns the number of wrong bytes (reported). */
static int64_t run_case(const kiln_s8_gemm_kernel *kern, const gemm_case *g, bool in_place,
                        int32_t split) {
  static uint8_t mem[1 << 16];
  static int8_t a[MAX_ROWS * (MAX_K + 16 + STRIDE_PAD)];
  static int8_t c[MAX_ROWS * (MAX_N + 3)];
  if (kiln_s8_gemm_bytes(kern, g->n, g->k) > sizeof mem) return -1;
  kiln_s8_gemm prod;
  kiln_s8_gemm_init(kern, g->n, g->k, g->w, g->bias, g->input_offset, g->mult, g->shift, g->out_zp,
                    g->act_min, g->act_max, mem, &prod);
  const size_t a_stride = (size_t)prod.kp + STRIDE_PAD;
  memset(a, 0x77, sizeof a);
  if (in_place) {
    for (int32_t m = 0; m < g->rows; m++)
      memcpy(a + (size_t)m * a_stride, g->x + m * g->k, (size_t)g->k);
    kern->pack_a(a, a_stride, g->rows, g->k, prod.kp, a, a_stride);
  } else {
    kern->pack_a(g->x, (size_t)g->k, g->rows, g->k, prod.kp, a, a_stride);
  }
  const size_t c_stride = (size_t)g->n + 3;
  memset(c, GUARD, sizeof c);
  if (split > 0 && split < g->n) {
    kern->run(&prod, a, a_stride, g->rows, 0, split, c, c_stride);
    kern->run(&prod, a, a_stride, g->rows, split, g->n, c, c_stride);
  } else {
    kern->run(&prod, a, a_stride, g->rows, 0, g->n, c, c_stride);
  }
  int64_t bad = 0;
  for (int32_t m = 0; m < g->rows; m++) {
    for (int32_t j = 0; j < g->n; j++) {
      const int8_t got = c[(size_t)m * c_stride + (size_t)j], want = g->want[m * g->n + j];
      if (got != want && bad++ == 0)
        fprintf(stderr, "%s rows %d n %d k %d%s split %d: [%d][%d] = %d, reference %d\n",
                kern->name, (int)g->rows, (int)g->n, (int)g->k, in_place ? " in place" : "",
                (int)split, (int)m, (int)j, (int)got, (int)want);
    }
    for (size_t j = (size_t)g->n; j < c_stride; j++)
      if (c[(size_t)m * c_stride + j] != (int8_t)GUARD && bad++ == 0)
        fprintf(stderr, "%s: row %d written past column %d\n", kern->name, (int)m, (int)g->n);
  }
  return bad;
}

/* The NEON kernels of this build that this CPU runs. */
static int32_t neon_kernels(const kiln_s8_gemm_kernel **out, int32_t cap) {
  int32_t count = 0;
  for (int32_t i = 0; i < kiln_s8_gemm_kernel_count() && count < cap; i++) {
    const kiln_s8_gemm_kernel *kern = kiln_s8_gemm_kernel_at(i);
    if ((kern->isa & (KILN_ISA_NEON | KILN_ISA_NEON_DOT)) &&
        (kern->isa & kiln_cpu_isa()) == kern->isa)
      out[count++] = kern;
  }
  return count;
}

static void test_sweep(void) {
  static const int32_t depths[] = {1, 3, 4, 5, 8, 12, 15, 16, 17, 31, 33, 48, 64, 100};
  static const int32_t columns[] = {1, 3, 4, 5, 8, 9, 12, 15, 16, 17, 31, 33, 40};
  static const int32_t row_counts[] = {1, 2, 3, 4, 5, 7, 9};
  const kiln_s8_gemm_kernel *kerns[8];
  const int32_t n_kerns = neon_kernels(kerns, 8);
  /* Both ARM64 kernels are always built; SDOT's where the CPU has it. */
  CHECK(n_kerns == ((kiln_cpu_isa() & KILN_ISA_NEON_DOT) ? 2 : 1));
  static gemm_case g;
  test_rng r = {21};
  for (size_t di = 0; di < sizeof depths / sizeof depths[0]; di++)
    for (size_t ci = 0; ci < sizeof columns / sizeof columns[0]; ci++)
      for (size_t ri = 0; ri < sizeof row_counts / sizeof row_counts[0]; ri++) {
        make_case(&r, row_counts[ri], columns[ci], depths[di], &g);
        for (int32_t ki = 0; ki < n_kerns; ki++) {
          const kiln_s8_gemm_kernel *kern = kerns[ki];
          const int32_t variant = (int32_t)(di + ci + ri) % 3;
          const int64_t bad = run_case(kern, &g, variant == 1, variant == 2 ? kern->nr : 0);
          CHECK_MSG(bad == 0, "%s rows %d n %d k %d: %lld bytes wrong", kern->name, (int)g.rows,
                    (int)g.n, (int)g.k, (long long)bad);
        }
      }
  for (int32_t ki = 0; ki < n_kerns; ki++) fprintf(stderr, "-- tested %s\n", kerns[ki]->name);
}

static void test_fc(void) {
  static const int32_t depths[] = {1, 7, 15, 16, 17, 33, 64, 100, 1000};
  static const int32_t row_counts[] = {1, 3, 7, 8, 9, 16, 17, 30};
  static int8_t x[1000], w[30 * 1008];
  static uint8_t a[1008];
  static int32_t acc[32];
  int32_t count = 0, tested = 0;
  const kiln_s8_fc_kernel *all = kiln_s8_fc_kernels(&count);
  test_rng r = {22};
  for (int32_t ki = 0; ki < count; ki++) {
    const kiln_s8_fc_kernel *kern = &all[ki];
    if ((kern->isa & kiln_cpu_isa()) != kern->isa) continue;
    tested++;
    int64_t bad = 0;
    for (size_t di = 0; di < sizeof depths / sizeof depths[0]; di++)
      for (size_t ri = 0; ri < sizeof row_counts / sizeof row_counts[0]; ri++) {
        const int32_t k = depths[di], rows = row_counts[ri];
        const int32_t kp = (k + kern->kgroup - 1) / kern->kgroup * kern->kgroup;
        for (int32_t i = 0; i < k; i++) x[i] = rand_s8(&r);
        memset(w, 0, sizeof w);
        for (int32_t o = 0; o < rows; o++)
          for (int32_t i = 0; i < k; i++) w[o * kp + i] = rand_s8(&r);
        memset(a, 0x77, sizeof a);
        kern->convert(x, k, kp, a);
        for (int32_t o = 0; o < 32; o++) acc[o] = 0x5a5a5a5a;
        kern->dot(w, a, kp, rows, acc);
        for (int32_t o = 0; o < rows; o++) {
          int32_t want = 0;
          for (int32_t i = 0; i < k; i++)
            want += (int32_t)w[o * kp + i] * ((int32_t)x[i] + kern->a_offset);
          if (acc[o] != want && bad++ == 0)
            fprintf(stderr, "%s k %d rows %d: acc[%d] = %d, exact %d\n", kern->name, (int)k,
                    (int)rows, (int)o, (int)acc[o], (int)want);
        }
        for (int32_t o = rows; o < 32; o++) bad += acc[o] != 0x5a5a5a5a;
      }
    CHECK_MSG(bad == 0, "%s: %lld sums wrong", kern->name, (long long)bad);
    fprintf(stderr, "-- tested %s\n", kern->name);
  }
  CHECK(tested == ((kiln_cpu_isa() & KILN_ISA_NEON_DOT) ? 2 : 1));
}

int main(void) {
  RUN(test_sweep);
  RUN(test_fc);
  return test_summary();
}
