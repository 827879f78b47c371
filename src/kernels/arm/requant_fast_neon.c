/* kernels/arm/requant_fast_neon.c: the vector requantization on arrays
 * (kernels/misc_fast.h, for the tests) for ARM64 NEON; the code is in
 * kernels/x86/requant_tmpl.h. */
#include "kernels/arm/misc_vec_neon.h"
#include "kernels/x86/requant_tmpl.h"
