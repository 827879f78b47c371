/* kernels/x86/prelu_fast_avx512.c: PRELU kernels (kernels/misc_fast.h) for
 * AVX-512 (16 lanes); the code is in prelu_tmpl.h. */
#include "kernels/x86/misc_vec_avx512.h"

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

#include "kernels/x86/prelu_tmpl.h"
