/*
 * kernels/cpu.h: which instruction sets this CPU (and OS) offers, read once.
 *
 * Optimized kernels live in files named by ISA (kernels/x86/NAME_avx2.c,
 * NAME_avx512.c, NAME_avxvnni.c, kernels/arm/NAME_neon.c); CMake compiles each with
 * its ISA's flags, and prepare picks the best kernel whose ISA bits are all
 * in kiln_cpu_isa(). KILN_KERNELS=ref (or interpreter option force_ref)
 * selects the portable reference kernels; KILN_ISA_MASK=0x.. (hex) masks
 * ISA bits off, so tests and benchmarks can run every compiled path.
 */
#ifndef KILN_KERNELS_CPU_H
#define KILN_KERNELS_CPU_H

#include <stdint.h>

enum {
  KILN_ISA_AVX2 = 1u << 0,       /* AVX2 + FMA + F16C */
  KILN_ISA_AVX512 = 1u << 1,     /* AVX-512 F, BW, DQ, VL */
  KILN_ISA_AVX512VNNI = 1u << 2, /* AVX-512 VNNI (vpdpbusd) */
  KILN_ISA_AVXVNNI = 1u << 3,    /* AVX-VNNI (256-bit vpdpbusd) */
  KILN_ISA_NEON = 1u << 8,       /* ARM64 Advanced SIMD */
  KILN_ISA_NEON_DOT = 1u << 9    /* ARM64 SDOT/UDOT */
};

/* ISA bits available here (after KILN_ISA_MASK). */
uint32_t kiln_cpu_isa(void);
/* "avx2+fma", "avx512", ... for one bit; "ref" for 0. */
const char *kiln_isa_name(uint32_t isa_bit);
/* A line describing the CPU's ISA bits, for benchmarks ("avx2 avx512 ..."). */
void kiln_cpu_describe(char *buf, int cap);

#endif
