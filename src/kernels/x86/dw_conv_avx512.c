/*
 * kernels/x86/dw_conv_avx512.c: depthwise conv kernels (kernels/dwconv.h)
 * for AVX-512: 16 channels per vector, masked loads and stores for the last
 * partial tile. The loops are in dw_tmpl.h.
 */
#include "kernels/cpu.h"
#include "kernels/dwconv.h"
#include "kernels/x86/misc_vec_avx512.h"

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

#include "kernels/x86/dw_tmpl.h"

const kiln_dw_kernels kiln_dw_avx512 = {KILN_ISA_AVX512,        VT,
                                        kiln_f32_dw_3x3_avx512, kiln_f32_dw_5x5_avx512,
                                        kiln_s8_dw_3x3_avx512,  kiln_s8_dw_5x5_avx512};
