/* kernels/x86/resize_fast_avx512.c: RESIZE_BILINEAR kernels
 * (kernels/misc_fast.h) for AVX-512 (16 lanes); the code is in resize_tmpl.h. */
#include "kernels/x86/misc_vec_avx512.h"

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

#include "kernels/x86/resize_tmpl.h"
