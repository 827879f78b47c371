/* kernels/x86/add_fast_avx2.c: ADD kernels (kernels/misc_fast.h) for
 * AVX2 (8 lanes); the code is in add_tmpl.h. */
#include "kernels/x86/misc_vec_avx2.h"

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

#include "kernels/x86/add_tmpl.h"
