/* CPU feature detection (see kernels/cpu.h): CPUID and XGETBV on x86-64
 * (the OS must save the wider registers), HWCAP on ARM64. */
#include "kernels/cpu.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include <cpuid.h>

static uint64_t xgetbv0(void) {
  uint32_t eax, edx;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return ((uint64_t)edx << 32) | eax;
}

static uint32_t detect(void) {
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
  const bool osxsave = c & (1u << 27), fma = c & (1u << 12), f16c = c & (1u << 29);
  if (!osxsave) return 0;
  const uint64_t xcr0 = xgetbv0();
  const bool ymm = (xcr0 & 0x6) == 0x6, zmm = (xcr0 & 0xe6) == 0xe6;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
  const bool avx2 = b & (1u << 5), avx512f = b & (1u << 16), avx512dq = b & (1u << 17),
             avx512bw = b & (1u << 30), avx512vl = b & (1u << 31), vnni512 = c & (1u << 11);
  unsigned a1 = 0, b1, c1, d1;
  __get_cpuid_count(7, 1, &a1, &b1, &c1, &d1);
  const bool avxvnni = a1 & (1u << 4);
  uint32_t isa = 0;
  if (ymm && avx2 && fma && f16c) isa |= KILN_ISA_AVX2;
  if ((isa & KILN_ISA_AVX2) && zmm && avx512f && avx512dq && avx512bw && avx512vl) isa |= KILN_ISA_AVX512;
  if ((isa & KILN_ISA_AVX512) && vnni512) isa |= KILN_ISA_AVX512VNNI;
  if ((isa & KILN_ISA_AVX2) && avxvnni) isa |= KILN_ISA_AVXVNNI;
  return isa;
}
#elif defined(__aarch64__)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)
#endif
static uint32_t detect(void) {
  unsigned long hw = getauxval(AT_HWCAP);
  return KILN_ISA_NEON | ((hw & HWCAP_ASIMDDP) ? KILN_ISA_NEON_DOT : 0);
}
#else
static uint32_t detect(void) { return 0; }
#endif

static uint32_t g_isa;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void init_isa(void) {
  g_isa = detect();
  const char *mask = getenv("KILN_ISA_MASK");
  if (mask && *mask) g_isa &= (uint32_t)strtoul(mask, NULL, 16);
}

uint32_t kiln_cpu_isa(void) {
  pthread_once(&g_once, init_isa);
  return g_isa;
}

const char *kiln_isa_name(uint32_t bit) {
  switch (bit) {
    case 0: return "ref";
    case KILN_ISA_AVX2: return "avx2+fma";
    case KILN_ISA_AVX512: return "avx512";
    case KILN_ISA_AVX512VNNI: return "avx512vnni";
    case KILN_ISA_AVXVNNI: return "avxvnni";
    case KILN_ISA_NEON: return "neon";
    case KILN_ISA_NEON_DOT: return "neon-dot";
    default: return "?";
  }
}

void kiln_cpu_describe(char *buf, int cap) {
  uint32_t isa = kiln_cpu_isa();
  int n = 0;
  buf[0] = '\0';
  for (uint32_t bit = 1; bit && n < cap; bit <<= 1)
    if (isa & bit) n += snprintf(buf + n, (size_t)(cap - n), "%s%s", n ? " " : "", kiln_isa_name(bit));
  if (n == 0) snprintf(buf, (size_t)cap, "(none: reference kernels only)");
}
