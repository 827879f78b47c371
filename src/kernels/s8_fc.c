/* The int8 FULLY_CONNECTED kernel table (see kernels/s8_fc.h). */
#include "kernels/s8_fc.h"

#include "kernels/cpu.h"

static const kiln_s8_fc_kernel kernels[] = {
#if defined(__x86_64__)
    {"s8_fc_avx512vnni", KILN_ISA_AVX512VNNI, 64, 128, kiln_s8_fc_convert_u8_avx512vnni,
     kiln_s8_fc_dot_avx512vnni},
    {"s8_fc_avx2", KILN_ISA_AVX2, 16, 0, kiln_s8_fc_convert_s8_avx2, kiln_s8_fc_dot_avx2},
#elif defined(__aarch64__)
    {"s8_fc_neondot", KILN_ISA_NEON | KILN_ISA_NEON_DOT, 16, 0, kiln_s8_fc_convert_s8_neondot,
     kiln_s8_fc_dot_neondot},
    {"s8_fc_neon", KILN_ISA_NEON, 16, 0, kiln_s8_fc_convert_s8_neon, kiln_s8_fc_dot_neon},
#endif
    {NULL, 0, 0, 0, NULL, NULL},
};

const kiln_s8_fc_kernel *kiln_s8_fc_select(uint32_t isa) {
  for (const kiln_s8_fc_kernel *k = kernels; k->name; k++)
    if ((k->isa & isa) == k->isa) return k;
  return NULL;
}

const kiln_s8_fc_kernel *kiln_s8_fc_kernels(int32_t *count) {
  *count = (int32_t)(sizeof kernels / sizeof kernels[0]) - 1;
  return kernels;
}
