/* kernels/arm/mean_fast_neon.c: MEAN over height and width kernels (kernels/misc_fast.h) for
 * ARM64 NEON (4 lanes); the code is in kernels/x86/mean_tmpl.h. */
#include "kernels/arm/misc_vec_neon.h"

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

#include "kernels/x86/mean_tmpl.h"
