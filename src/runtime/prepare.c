/* Services the interpreter offers operators during prepare (runtime/op.h),
 * and small helpers shared by operator implementations. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "kernels/quant_math.h"
#include "runtime/interp_int.h"

void *kiln_prepare_alloc(kiln_prepare_ctx *ctx, size_t bytes) {
  return kiln_pool_alloc(ctx->pool, bytes, 64);
}

static const char *node_name(const kiln_node *node) {
  if (node->op->code == KILN_OP_CUSTOM && node->op->custom_code) return node->op->custom_code;
  return kiln_opcode_name(node->op->code);
}

kiln_status kiln_prepare_fail(kiln_prepare_ctx *ctx, kiln_status status, const char *fmt, ...) {
  if (ctx->err) {
    char detail[KILN_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    kiln_fail(ctx->err, status, "op %d (%s): %s", (int)ctx->node->index, node_name(ctx->node),
              detail);
  }
  return status;
}

kiln_status kiln_prepare_nomem(kiln_prepare_ctx *ctx) {
  return kiln_prepare_fail(ctx, KILN_ERR_NOMEM, "out of memory");
}

bool kiln_prepare_force_ref(const kiln_prepare_ctx *ctx) { return ctx->force_ref; }

uint32_t kiln_prepare_isa(const kiln_prepare_ctx *ctx) { return ctx->force_ref ? 0 : ctx->isa; }

/* The stored blob for the current node's next sequence number, or NULL.
 * Nodes are prepared in order, so a cursor walks the sorted blobs once. */
static const kiln_packed_rec *stored_next(kiln_prepare_ctx *ctx) {
  const int32_t op = ctx->node->index;
  while (ctx->stored_pos < ctx->n_stored &&
         (ctx->stored[ctx->stored_pos].op < op ||
          (ctx->stored[ctx->stored_pos].op == op && ctx->stored[ctx->stored_pos].seq < ctx->seq)))
    ctx->stored_pos++;
  if (ctx->stored_pos == ctx->n_stored) return NULL;
  const kiln_packed_rec *r = &ctx->stored[ctx->stored_pos];
  return r->op == op && r->seq == ctx->seq ? r : NULL;
}

const kiln_packed *kiln_prepare_packed_peek(kiln_prepare_ctx *ctx) {
  const kiln_packed_rec *r = stored_next(ctx);
  return r ? &r->pk : NULL;
}

kiln_status kiln_prepare_packed(kiln_prepare_ctx *ctx, size_t bytes, uint32_t isa,
                                kiln_packed **out) {
  *out = NULL;
  const kiln_packed_rec *stored = stored_next(ctx);
  if (stored) {
    if (stored->pk.bytes != bytes || stored->pk.isa != isa)
      return kiln_prepare_fail(ctx, KILN_ERR_FORMAT,
                               "packed data %d in the bundle is %zu bytes for ISA bits 0x%x, this "
                               "kiln packs %zu for 0x%x (a bundle from another kiln: write it again)",
                               (int)ctx->seq, stored->pk.bytes, (unsigned)stored->pk.isa, bytes,
                               (unsigned)isa);
    /* The op reads it only (fill stays NULL). */
    kiln_packed *pk = kiln_prepare_alloc(ctx, sizeof *pk);
    if (!pk) return kiln_prepare_nomem(ctx);
    *pk = stored->pk;
    pk->fill = NULL;
    ctx->stored_bytes += bytes;
    ctx->seq++;
    *out = pk;
    return KILN_OK;
  }
  kiln_packed_rec *rec = kiln_prepare_alloc(ctx, sizeof *rec);
  void *mem = rec ? kiln_prepare_alloc(ctx, bytes) : NULL;
  if (!mem) return kiln_prepare_nomem(ctx);
  rec->pk.data = mem;
  rec->pk.fill = mem;
  rec->pk.bytes = bytes;
  rec->pk.isa = isa;
  rec->op = ctx->node->index;
  rec->seq = ctx->seq++;
  *ctx->record_tail = rec;
  ctx->record_tail = &rec->next;
  *out = &rec->pk;
  return KILN_OK;
}

int32_t kiln_prepare_threads(const kiln_prepare_ctx *ctx) { return ctx->n_threads; }

static void shape_str(char *buf, size_t cap, int32_t rank, const int32_t *shape) {
  size_t n = (size_t)snprintf(buf, cap, "[");
  for (int32_t i = 0; i < rank && n < cap; i++)
    n += (size_t)snprintf(buf + n, cap - n, i ? ",%d" : "%d", (int)shape[i]);
  if (n < cap) snprintf(buf + n, cap - n, "]");
}

kiln_status kiln_prepare_set_output_shape(kiln_prepare_ctx *ctx, kiln_rt_tensor *t, int32_t rank,
                                          const int32_t *shape) {
  if (rank < 0 || rank > KILN_MAX_RANK)
    return kiln_prepare_fail(ctx, KILN_ERR_UNSUPPORTED, "output '%s' would have rank %d", t->name,
                             (int)rank);
  for (int32_t i = 0; i < rank; i++) {
    if (shape[i] < 0)
      return kiln_prepare_fail(ctx, KILN_ERR_FORMAT, "output '%s' dimension %d is negative",
                               t->name, (int)i);
  }
  bool same = rank == t->rank;
  for (int32_t i = 0; same && i < rank; i++) same = shape[i] == t->shape[i];
  if (!same) {
    char want[96], got[96];
    shape_str(want, sizeof want, t->rank, t->shape);
    shape_str(got, sizeof got, rank, shape);
    return kiln_prepare_fail(ctx, KILN_ERR_FORMAT,
                             "output '%s' is declared %s but the op computes %s", t->name, want,
                             got);
  }
  return KILN_OK;
}

int64_t kiln_rt_elements(const kiln_rt_tensor *t) {
  int64_t n = 1;
  for (int32_t i = 0; i < t->rank; i++) n *= t->shape[i];
  return n;
}

/* zero_point + round(real / scale) as TFLite computes it (in float), but
 * saturated to int32 instead of overflowing for tiny scales. */
static int32_t quantize_real(const kiln_rt_tensor *out, float real) {
  const float scale = out->quant->scale[0];
  const int32_t zp = out->quant->zero_point[0];
  const float q = kiln_round_f(real / scale);
  const double v = (double)zp + (double)q;
  if (!(v > (double)INT32_MIN)) return INT32_MIN;
  if (!(v < (double)INT32_MAX)) return INT32_MAX;
  return zp + (int32_t)q;
}

void kiln_activation_range_q(kiln_activation act, const kiln_rt_tensor *out, int32_t *lo,
                             int32_t *hi) {
  int32_t qmin, qmax;
  switch (out->dtype) {
    case KILN_I8: qmin = -128; qmax = 127; break;
    case KILN_U8: qmin = 0; qmax = 255; break;
    case KILN_I16: qmin = -32768; qmax = 32767; break;
    default: qmin = INT32_MIN; qmax = INT32_MAX; break;
  }
  int32_t a = qmin, b = qmax;
  if (act == KILN_ACT_RELU) {
    a = quantize_real(out, 0.0f);
  } else if (act == KILN_ACT_RELU6) {
    a = quantize_real(out, 0.0f);
    b = quantize_real(out, 6.0f);
  } else if (act == KILN_ACT_RELU_N1_TO_1) {
    a = quantize_real(out, -1.0f);
    b = quantize_real(out, 1.0f);
  }
  *lo = a > qmin ? a : qmin;
  *hi = b < qmax ? b : qmax;
}

void kiln_activation_range_f(kiln_activation act, float *lo, float *hi) {
  switch (act) {
    case KILN_ACT_RELU: *lo = 0.0f; *hi = 3.402823466e+38f; break;
    case KILN_ACT_RELU6: *lo = 0.0f; *hi = 6.0f; break;
    case KILN_ACT_RELU_N1_TO_1: *lo = -1.0f; *hi = 1.0f; break;
    default: *lo = -3.402823466e+38f; *hi = 3.402823466e+38f; break;
  }
}
