/* kernels/x86/pool_fast_avx2.c: AVERAGE_POOL_2D and MAX_POOL_2D kernels
 * (kernels/misc_fast.h) for AVX2 (8 lanes); the code is in pool_tmpl.h. */
#include "kernels/x86/misc_vec_avx2.h"

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

#include "kernels/x86/pool_tmpl.h"
