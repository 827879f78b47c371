/* Optimized conv-family paths (see runtime/fast_conv.h). */
#include "runtime/fast_conv.h"

kiln_status kiln_fast_conv2d_s8_prepare(kiln_prepare_ctx *ctx, kiln_node *node,
                                const kiln_conv_params *p, kiln_fast_fn *fn, const void **plan) {
  (void)ctx;
  (void)node;
  (void)p;
  *fn = NULL;
  *plan = NULL;
  return KILN_OK;
}

kiln_status kiln_fast_fc_s8_prepare(kiln_prepare_ctx *ctx, kiln_node *node,
                                const kiln_fc_params *p, kiln_fast_fn *fn, const void **plan) {
  (void)ctx;
  (void)node;
  (void)p;
  *fn = NULL;
  *plan = NULL;
  return KILN_OK;
}
