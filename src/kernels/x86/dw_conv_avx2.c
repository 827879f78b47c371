/*
 * kernels/x86/dw_conv_avx2.c: depthwise conv kernels (kernels/dwconv.h)
 * for AVX2: 8 channels per vector. The loops are in dw_tmpl.h.
 */
#include "kernels/cpu.h"
#include "kernels/dwconv.h"
#include "kernels/x86/misc_vec_avx2.h"

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

#include "kernels/x86/dw_tmpl.h"

const kiln_dw_kernels kiln_dw_avx2 = {KILN_ISA_AVX2,        VT,
                                      kiln_f32_dw_3x3_avx2, kiln_f32_dw_5x5_avx2,
                                      kiln_s8_dw_3x3_avx2,  kiln_s8_dw_5x5_avx2};
