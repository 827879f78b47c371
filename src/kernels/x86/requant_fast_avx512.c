/* kernels/x86/requant_fast_avx512.c: the vector requantization on arrays
 * (kernels/misc_fast.h, for the tests) for AVX-512; the code is in requant_tmpl.h. */
#include "kernels/x86/misc_vec_avx512.h"
#include "kernels/x86/requant_tmpl.h"
