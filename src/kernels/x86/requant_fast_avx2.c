/* kernels/x86/requant_fast_avx2.c: the vector requantization on arrays
 * (kernels/misc_fast.h, for the tests) for AVX2; the code is in requant_tmpl.h. */
#include "kernels/x86/misc_vec_avx2.h"
#include "kernels/x86/requant_tmpl.h"
