/* kernels/arm/resize_fast_neon.c: RESIZE_BILINEAR kernels (kernels/misc_fast.h) for
 * ARM64 NEON (4 lanes); the code is in kernels/x86/resize_tmpl.h. */
#include "kernels/arm/misc_vec_neon.h"

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

#include "kernels/x86/resize_tmpl.h"
