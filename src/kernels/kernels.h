/*
 * kernels/kernels.h: every compute kernel kiln has, by family.
 *
 * Kernels never see the graph or the runtime: they take buffers, shapes and
 * parameters precomputed at prepare time (multipliers, shifts, clamp bounds),
 * and they never allocate. The reference kernels in kernels/ref/ are portable
 * C and the definition of correct: int8/uint8 results are bit-exact with
 * TFLite's reference kernels. Names: kiln_<dtype>_<op>_ref, dtype one of
 * f32, s8 (int8, per-axis symmetric weights), u8 (uint8 asymmetric).
 *
 * Layouts: activations are NHWC; CONV_2D filters OHWI; DEPTHWISE_CONV_2D
 * filters 1HW(I*M); FULLY_CONNECTED weights [out, in]. Each kernel's comment
 * gives the shape of every argument.
 */
#ifndef KILN_KERNELS_H
#define KILN_KERNELS_H

#include "kernels/ref/conv_ref.h"
#include "kernels/ref/elementwise_ref.h"
#include "kernels/ref/pool_ref.h"
#include "kernels/ref/shape_ref.h"

#endif
