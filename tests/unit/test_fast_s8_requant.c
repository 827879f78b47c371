/*
 * The int8 GEMM kernels' vector requantization (kernels/s8_gemm.h,
 * requant32 of every kernel this CPU runs) against the scalar
 * kiln_mul_by_quantized_multiplier plus the output zero point: random
 * accumulators over the whole int32 range and edge values (INT32_MIN/MAX,
 * 0, +-1), multipliers across [2^30, 2^31) plus 0, 2^30 exactly (ties of
 * the doubling high multiply) and 2^31 - 1, shifts -31..31, every output
 * zero point class; dense runs of small accumulators hit the rounding ties
 * of the power-of-two division. Both requantization forms are covered: the
 * general one (any shift) and the one-step 64-bit one of kernels whose
 * shifts all lie in [-23, -1].
 */
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu.h"
#include "kernels/quant_math.h"
#include "kernels/s8_gemm.h"
#include "testutil.h"

#define COLS 64 /* a multiple of every kernel's lanes */

typedef struct case_params {
  int32_t mult[COLS], shift[COLS];
  int32_t zp;
} case_params;

static int32_t expected(int32_t x, int32_t mult, int32_t shift, int32_t zp) {
  return (int32_t)((uint32_t)kiln_mul_by_quantized_multiplier(x, mult, shift) + (uint32_t)zp);
}

/* Runs acc through the kernel with params c; returns mismatches (reports the first). */
static int check_block(const kiln_s8_gemm_kernel *kern, const case_params *c, const int32_t *acc,
                       bool want_wide) {
  void *mem = malloc(kiln_s8_requant_bytes(kern, COLS));
  if (!mem) return 1;
  kiln_s8_requant rq;
  kiln_s8_requant_fill(kern, COLS, NULL, c->mult, c->shift, c->zp, -128, 127, mem, &rq);
  int bad = 0;
  if ((rq.wide != NULL) != (want_wide && kern->wide_requant)) {
    fprintf(stderr, "%s: wide form %s, expected %s\n", kern->name, rq.wide ? "used" : "unused",
            want_wide && kern->wide_requant ? "used" : "unused");
    bad++;
  }
  int32_t out[COLS];
  kern->requant32(&rq, acc, COLS, out);
  for (int32_t i = 0; i < COLS; i++) {
    const int32_t want = expected(acc[i], c->mult[i], c->shift[i], c->zp);
    if (out[i] != want) {
      if (!bad)
        fprintf(stderr, "%s: x %d mult %d shift %d zp %d: got %d, expected %d\n", kern->name,
                (int)acc[i], (int)c->mult[i], (int)c->shift[i], (int)c->zp, (int)out[i],
                (int)want);
      bad++;
    }
  }
  free(mem);
  return bad;
}

static int32_t random_mult(test_rng *r) {
  switch (test_rand_int(r, 0, 7)) {
    case 0: return 0;
    case 1: return 1 << 30;
    case 2: return INT32_MAX;
    case 3: return (1 << 30) + test_rand_int(r, 0, 3);
    default: return (int32_t)((1u << 30) + (test_rand_u32(r) >> 2));
  }
}

static int32_t random_acc(test_rng *r) {
  switch (test_rand_int(r, 0, 9)) {
    case 0: return INT32_MIN;
    case 1: return INT32_MAX;
    case 2: return test_rand_int(r, -1, 1);
    case 3: return INT32_MIN + test_rand_int(r, 0, 3);
    case 4: return INT32_MAX - test_rand_int(r, 0, 3);
    case 5: return test_rand_int(r, -300000, 300000);
    default: return (int32_t)test_rand_u32(r);
  }
}

/* shift_lo..shift_hi, zero point in [zp_lo, zp_hi]; wide: expect the
 * one-step form. Zero multipliers (channels of zero scale) come with
 * shift 0, as kiln_quantize_multiplier gives them. */
static void sweep(int32_t shift_lo, int32_t shift_hi, int32_t zp_lo, int32_t zp_hi, bool wide,
                  int rounds) {
  test_rng r = {0x5eed0000u + (uint64_t)(shift_lo + 64) * 131u + (uint64_t)wide};
  for (int32_t ki = 0; ki < kiln_s8_gemm_kernel_count(); ki++) {
    const kiln_s8_gemm_kernel *kern = kiln_s8_gemm_kernel_at(ki);
    if ((kern->isa & kiln_cpu_isa()) != kern->isa) continue;
    int bad = 0;
    for (int round = 0; round < rounds && !bad; round++) {
      case_params c;
      int32_t acc[COLS];
      c.zp = test_rand_int(&r, zp_lo, zp_hi);
      for (int32_t i = 0; i < COLS; i++) {
        c.mult[i] = random_mult(&r);
        c.shift[i] = c.mult[i] ? test_rand_int(&r, shift_lo, shift_hi) : 0;
        acc[i] = random_acc(&r);
      }
      bad += check_block(kern, &c, acc, wide);
    }
    CHECK_MSG(bad == 0, "%s: %d mismatches", kern->name, bad);
  }
}

static void test_general_form(void) {
  sweep(-31, 31, INT32_MIN, INT32_MAX, false, 3000);
  sweep(-31, 31, -128, 127, false, 3000);
  sweep(-31, 0, -128, 127, false, 3000);
  sweep(1, 31, -5, 5, false, 1000);
}

static void test_wide_form(void) {
  sweep(-23, -1, -128, 127, true, 10000);
  sweep(-2, -1, -128, 127, true, 3000);
  sweep(-23, -20, -128, 127, true, 3000);
}

/* Dense runs of consecutive accumulators around 0 and around values whose
 * products sit on rounding boundaries, for each shift and a few
 * multipliers: every tie of both roundings occurs. */
static void test_dense_ties(void) {
  static const int32_t mults[] = {1 << 30, (1 << 30) + 1, 1518500250, INT32_MAX};
  for (int32_t ki = 0; ki < kiln_s8_gemm_kernel_count(); ki++) {
    const kiln_s8_gemm_kernel *kern = kiln_s8_gemm_kernel_at(ki);
    if ((kern->isa & kiln_cpu_isa()) != kern->isa) continue;
    int bad = 0;
    for (int32_t shift = -31; shift <= 31 && !bad; shift++) {
      for (size_t mi = 0; mi < sizeof mults / sizeof mults[0] && !bad; mi++) {
        case_params c;
        c.zp = shift % 2 ? -128 : 127;
        for (int32_t i = 0; i < COLS; i++) {
          c.mult[i] = mults[mi];
          c.shift[i] = shift;
        }
        const bool wide = shift >= -23 && shift <= -1;
        for (int32_t start = -20000; start < 20000 && !bad; start += COLS) {
          int32_t acc[COLS];
          for (int32_t i = 0; i < COLS; i++) acc[i] = start + i;
          bad += check_block(kern, &c, acc, wide);
        }
      }
    }
    CHECK_MSG(bad == 0, "%s: %d mismatches", kern->name, bad);
  }
}

/* The kernels this CPU runs exist (a test that checks nothing would pass). */
static void test_kernels_present(void) {
  int runnable = 0;
  for (int32_t ki = 0; ki < kiln_s8_gemm_kernel_count(); ki++) {
    const kiln_s8_gemm_kernel *kern = kiln_s8_gemm_kernel_at(ki);
    if ((kern->isa & kiln_cpu_isa()) == kern->isa) runnable++;
    fprintf(stderr, "  %s: %s\n", kern->name,
            (kern->isa & kiln_cpu_isa()) == kern->isa ? "tested" : "not on this CPU");
  }
  CHECK(kiln_s8_gemm_select(kiln_cpu_isa()) == NULL || runnable > 0);
#if defined(__x86_64__)
  if (kiln_cpu_isa() & KILN_ISA_AVX2) CHECK(runnable > 0);
#endif
}

int main(void) {
  RUN(test_kernels_present);
  RUN(test_general_form);
  RUN(test_wide_form);
  RUN(test_dense_ties);
  return test_summary();
}
