/* The table of operator implementations: joins the family tables. */
#include <string.h>

#include "runtime/op.h"

static const kiln_op_reg *const families[] = {
    kiln_ops_conv, kiln_ops_pool, kiln_ops_elementwise, kiln_ops_shape, kiln_ops_detect,
};

const kiln_op_impl *kiln_op_lookup(int32_t code, const char *custom_code) {
  for (size_t f = 0; f < sizeof families / sizeof families[0]; f++) {
    for (const kiln_op_reg *r = families[f]; r->code >= 0; r++) {
      if (r->code != code) continue;
      if (code == KILN_OP_CUSTOM) {
        if (custom_code && r->custom_code && strcmp(custom_code, r->custom_code) == 0)
          return &r->impl;
      } else {
        return &r->impl;
      }
    }
  }
  return NULL;
}
