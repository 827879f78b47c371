/* Optimized conv-family paths (see runtime/fast_conv.h). */
#include "runtime/fast_conv.h"

kiln_status kiln_fast_depthwise_f32_prepare(kiln_prepare_ctx *ctx, kiln_node *node,
                                const kiln_conv_params *p, kiln_fast_fn *fn, const void **plan) {
  (void)ctx;
  (void)node;
  (void)p;
  *fn = NULL;
  *plan = NULL;
  return KILN_OK;
}

kiln_status kiln_fast_depthwise_s8_prepare(kiln_prepare_ctx *ctx, kiln_node *node,
                                const kiln_conv_params *p, kiln_fast_fn *fn, const void **plan) {
  (void)ctx;
  (void)node;
  (void)p;
  *fn = NULL;
  *plan = NULL;
  return KILN_OK;
}
