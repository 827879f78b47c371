/*
 * runtime/fast_conv.h: optimized paths for the conv family, chosen at
 * prepare time. ops_conv.c validates a node and fills its reference
 * parameters, then asks the matching *_prepare here for a faster plan:
 * packed weights, a kernel picked by kiln_prepare_isa(ctx), a tiling over
 * kiln_prepare_threads(ctx). When one applies it sets *fn and *plan (memory
 * from kiln_prepare_alloc) and may raise node->scratch_bytes (per thread);
 * otherwise it leaves *fn NULL and the reference kernel runs. A fast path's
 * int8 results are bit-identical to the reference kernel's and its float
 * results within 1e-5 relative, for any thread count.
 *
 * eval calls fn(node, plan, ctx) in place of the reference kernel.
 */
#ifndef KILN_RUNTIME_FAST_CONV_H
#define KILN_RUNTIME_FAST_CONV_H

#include "kernels/ref/conv_ref.h"
#include "runtime/op.h"

typedef void (*kiln_fast_fn)(const kiln_node *node, const void *plan, const kiln_eval_ctx *ctx);

/* CONV_2D float32 (fast_conv_f32.c). */
kiln_status kiln_fast_conv2d_f32_prepare(kiln_prepare_ctx *ctx, kiln_node *node,
                                         const kiln_conv_params *p, kiln_fast_fn *fn,
                                         const void **plan);
/* FULLY_CONNECTED float32 (fast_conv_f32.c). */
kiln_status kiln_fast_fc_f32_prepare(kiln_prepare_ctx *ctx, kiln_node *node,
                                     const kiln_fc_params *p, kiln_fast_fn *fn, const void **plan);
/* CONV_2D int8 (fast_conv_s8.c). */
kiln_status kiln_fast_conv2d_s8_prepare(kiln_prepare_ctx *ctx, kiln_node *node,
                                        const kiln_conv_params *p, kiln_fast_fn *fn,
                                        const void **plan);
/* FULLY_CONNECTED int8 (fast_conv_s8.c). */
kiln_status kiln_fast_fc_s8_prepare(kiln_prepare_ctx *ctx, kiln_node *node,
                                    const kiln_fc_params *p, kiln_fast_fn *fn, const void **plan);
/* DEPTHWISE_CONV_2D float32 and int8 (fast_dwconv.c). */
kiln_status kiln_fast_depthwise_f32_prepare(kiln_prepare_ctx *ctx, kiln_node *node,
                                            const kiln_conv_params *p, kiln_fast_fn *fn,
                                            const void **plan);
kiln_status kiln_fast_depthwise_s8_prepare(kiln_prepare_ctx *ctx, kiln_node *node,
                                           const kiln_conv_params *p, kiln_fast_fn *fn,
                                           const void **plan);

#endif
