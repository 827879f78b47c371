/*
 * kernels/arm/dw_conv_neon.c: depthwise conv kernels (kernels/dwconv.h) for
 * ARM64 NEON: 4 channels per vector (the packing tile). The loops are in
 * kernels/x86/dw_tmpl.h.
 */
#include "kernels/arm/misc_vec_neon.h"
#include "kernels/cpu.h"
#include "kernels/dwconv.h"

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

#include "kernels/x86/dw_tmpl.h"

const kiln_dw_kernels kiln_dw_neon = {KILN_ISA_NEON,        VT,
                                      kiln_f32_dw_3x3_neon, kiln_f32_dw_5x5_neon,
                                      kiln_s8_dw_3x3_neon,  kiln_s8_dw_5x5_neon};
