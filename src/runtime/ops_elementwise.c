/*
 * Operator implementations: elementwise family (see runtime/op.h): ADD,
 * SUB, MUL (fused activation, broadcasting up to rank 6), PRELU, RELU,
 * RELU6, RELU_N1_TO_1, LEAKY_RELU, HARD_SWISH, LOGISTIC, TANH, SOFTMAX and
 * L2_NORMALIZATION, for float32, int8 and uint8.
 *
 * Prepare follows the Prepare functions of TFLite's add.cc, sub.cc, mul.cc
 * and activations.cc as registered by BuiltinRefOpResolver: it checks that
 * input and output types match and that quantization is per tensor,
 * computes the broadcast output shape, and precomputes every multiplier,
 * shift, clamp bound and lookup table (kernels/ref/elementwise_ref.h) so
 * that eval only calls a kernel. Float32 and int8 ADD and PRELU take the
 * vectorized, threaded kernels of kernels/misc_fast.h when the CPU has them.
 */
#include <math.h>

#include "kernels/misc_fast.h"
#include "kernels/ref/elementwise_ref.h"
#include "runtime/op.h"

/* ---- Checks shared by the ops ---- */

static kiln_status check_arity(kiln_node *node, kiln_prepare_ctx *ctx, int32_t n_inputs) {
  if (node->n_inputs != n_inputs || node->n_outputs != 1)
    return kiln_prepare_fail(ctx, KILN_ERR_FORMAT, "expects %d inputs and 1 output, has %d and %d",
                             (int)n_inputs, (int)node->n_inputs, (int)node->n_outputs);
  for (int32_t i = 0; i < n_inputs; i++)
    if (!node->inputs[i])
      return kiln_prepare_fail(ctx, KILN_ERR_FORMAT, "input %d is missing", (int)i);
  if (!node->outputs[0]) return kiln_prepare_fail(ctx, KILN_ERR_FORMAT, "output is missing");
  return KILN_OK;
}

static bool is_quantized(kiln_dtype dtype) { return dtype == KILN_I8 || dtype == KILN_U8; }

static float scale_of(const kiln_rt_tensor *t) { return t->quant->scale[0]; }
static int32_t zero_point_of(const kiln_rt_tensor *t) { return t->quant->zero_point[0]; }

/* A tensor of the op's dtype: float32, or int8/uint8 with one finite
 * positive scale and a zero point inside the type's range. */
static kiln_status check_tensor(kiln_prepare_ctx *ctx, const kiln_rt_tensor *t, kiln_dtype dtype) {
  if (t->dtype != dtype)
    return kiln_prepare_fail(ctx, KILN_ERR_FORMAT, "tensor '%s' is %s, expected %s like the input",
                             t->name, kiln_dtype_name(t->dtype), kiln_dtype_name(dtype));
  if (!is_quantized(dtype)) return KILN_OK;
  if (t->quant->count != 1)
    return kiln_prepare_fail(ctx, KILN_ERR_UNSUPPORTED,
                             "tensor '%s' needs per-tensor quantization (has %d scales)", t->name,
                             (int)t->quant->count);
  const float scale = scale_of(t);
  const int32_t zp = zero_point_of(t);
  if (!(scale > 0) || !isfinite(scale))
    return kiln_prepare_fail(ctx, KILN_ERR_FORMAT, "tensor '%s' has scale %g", t->name,
                             (double)scale);
  const int32_t lo = dtype == KILN_I8 ? INT8_MIN : 0;
  const int32_t hi = dtype == KILN_I8 ? INT8_MAX : UINT8_MAX;
  if (zp < lo || zp > hi)
    return kiln_prepare_fail(ctx, KILN_ERR_FORMAT, "tensor '%s' has zero point %d outside %s",
                             t->name, (int)zp, kiln_dtype_name(dtype));
  return KILN_OK;
}

/* The first input's dtype must be float32, int8 or uint8; every other
 * input listed and the output must have the same dtype. */
static kiln_status check_types(kiln_node *node, kiln_prepare_ctx *ctx, int32_t n_inputs) {
  const kiln_dtype dtype = node->inputs[0]->dtype;
  if (dtype != KILN_F32 && !is_quantized(dtype))
    return kiln_prepare_fail(ctx, KILN_ERR_UNSUPPORTED,
                             "input '%s' is %s; supported: float32, int8, uint8",
                             node->inputs[0]->name, kiln_dtype_name(dtype));
  kiln_status s;
  for (int32_t i = 0; i < n_inputs; i++)
    if ((s = check_tensor(ctx, node->inputs[i], dtype)) != KILN_OK) return s;
  return check_tensor(ctx, node->outputs[0], dtype);
}

static kiln_status check_activation(kiln_prepare_ctx *ctx, kiln_activation act) {
  if (act == KILN_ACT_NONE || act == KILN_ACT_RELU || act == KILN_ACT_RELU6 ||
      act == KILN_ACT_RELU_N1_TO_1)
    return KILN_OK;
  return kiln_prepare_fail(ctx, KILN_ERR_UNSUPPORTED, "fused activation %d is not supported",
                           (int)act);
}

/* The quantized bounds of RELU6 and RELU_N1_TO_1 are zero point +
 * round(bound / scale) in int32: refuse scales so small that it overflows. */
static kiln_status check_bound_fits(kiln_prepare_ctx *ctx, kiln_activation act,
                                    const kiln_rt_tensor *out) {
  if (!is_quantized(out->dtype) || act == KILN_ACT_NONE || act == KILN_ACT_RELU) return KILN_OK;
  const float bound = act == KILN_ACT_RELU6 ? 6.0f : 1.0f;
  if (bound / scale_of(out) < 1e9f) return KILN_OK;
  return kiln_prepare_fail(ctx, KILN_ERR_UNSUPPORTED, "output '%s' scale %g is too small",
                           out->name, (double)scale_of(out));
}

static kiln_status set_same_shape(kiln_prepare_ctx *ctx, const kiln_rt_tensor *in,
                                  kiln_rt_tensor *out) {
  return kiln_prepare_set_output_shape(ctx, out, in->rank, in->shape);
}

/* ---- Optimized broadcast runs (ADD, PRELU; kernels/misc_fast.h) ----
 * The broadcast with dimensions of extent 1 dropped and neighbours merged
 * where both inputs continue contiguously (or both repeat), so a kernel call
 * covers a long run of the last dimension, along which each input's stride
 * is 1 or 0. The output is split into n_tasks ranges of whole 64-element
 * blocks. */

typedef enum fast_kind { FAST_ADD, FAST_PRELU } fast_kind;

typedef struct bcast_fast {
  const kiln_misc_kernels *k;
  fast_kind kind;
  bool s8;      /* int8, else float32 */
  int32_t rank; /* >= 1 */
  int64_t shape[KILN_BCAST_MAX_RANK];
  int64_t s1[KILN_BCAST_MAX_RANK], s2[KILN_BCAST_MAX_RANK];
  int64_t count;
  int32_t n_tasks;
} bcast_fast;

/* The plan for a float32 / int8 op when the CPU has the kernels; *out NULL
 * otherwise. */
static kiln_status bcast_fast_prepare(kiln_prepare_ctx *ctx, const kiln_bcast *b, fast_kind kind,
                                      kiln_dtype dtype, const bcast_fast **out) {
  *out = NULL;
  const kiln_misc_kernels *k = kiln_misc_pick(kiln_prepare_isa(ctx));
  if (!k || (dtype != KILN_F32 && dtype != KILN_I8) || b->count == 0) return KILN_OK;
  bcast_fast *f = kiln_prepare_alloc(ctx, sizeof *f);
  if (!f) return kiln_prepare_nomem(ctx);
  f->k = k;
  f->kind = kind;
  f->s8 = dtype == KILN_I8;
  for (int32_t d = 0; d < b->rank; d++) {
    if (b->shape[d] == 1) continue;
    const int32_t q = f->rank - 1;
    if (q >= 0 && f->s1[q] == b->stride1[d] * b->shape[d] &&
        f->s2[q] == b->stride2[d] * b->shape[d]) {
      f->shape[q] *= b->shape[d];
    } else {
      f->shape[++f->rank - 1] = b->shape[d];
    }
    f->s1[f->rank - 1] = b->stride1[d];
    f->s2[f->rank - 1] = b->stride2[d];
  }
  if (f->rank == 0) { /* one element */
    f->rank = 1;
    f->shape[0] = 1;
    f->s1[0] = f->s2[0] = 0;
  }
  f->count = b->count;
  const int32_t threads = kiln_prepare_threads(ctx);
  const int64_t tasks = b->count / 16384;
  f->n_tasks = threads <= 1 || tasks < 2 ? 1 : (int32_t)(tasks < 4 * threads ? tasks : 4 * threads);
  *out = f;
  return KILN_OK;
}

typedef struct bcast_job {
  const bcast_fast *f;
  const void *a, *b;
  void *out;
  const void *q;          /* kiln_addsub_q or kiln_prelu_q (int8) */
  float act_min, act_max; /* float ADD */
} bcast_job;

/* The start of task t's output range. */
static int64_t bcast_bound(const bcast_fast *f, int32_t t) {
  if (t >= f->n_tasks) return f->count;
  const int64_t e = (f->count * t / f->n_tasks + 63) / 64 * 64;
  return e < f->count ? e : f->count;
}

/* One kernel call: n outputs from offsets o1 / o2 with strides is1 / is2. */
static void bcast_run(const bcast_job *j, int64_t n, int64_t o1, int64_t is1, int64_t o2,
                      int64_t is2, int64_t e) {
  const bcast_fast *f = j->f;
  if (f->s8) {
    const int8_t *a = (const int8_t *)j->a + o1, *b = (const int8_t *)j->b + o2;
    int8_t *out = (int8_t *)j->out + e;
    if (f->kind == FAST_ADD)
      f->k->s8_add(n, a, is1, b, is2, out, j->q);
    else
      f->k->s8_prelu(n, a, is1, b, is2, out, j->q);
  } else {
    const float *a = (const float *)j->a + o1, *b = (const float *)j->b + o2;
    float *out = (float *)j->out + e;
    if (f->kind == FAST_ADD)
      f->k->f32_add(n, a, is1, b, is2, out, j->act_min, j->act_max);
    else
      f->k->f32_prelu(n, a, is1, b, is2, out);
  }
}

/* Walks the task's outputs run by run (a run ends with the last dimension). */
static void bcast_task(void *arg, int32_t task, int32_t thread) {
  (void)thread;
  const bcast_job *j = arg;
  const bcast_fast *f = j->f;
  const int64_t e0 = bcast_bound(f, task), e1 = bcast_bound(f, task + 1);
  const int32_t last = f->rank - 1;
  const int64_t inner = f->shape[last], is1 = f->s1[last], is2 = f->s2[last];
  int64_t idx[KILN_BCAST_MAX_RANK] = {0};
  int64_t row = e0 / inner, col = e0 % inner, base1 = 0, base2 = 0;
  for (int32_t d = last - 1; d >= 0; d--) {
    idx[d] = row % f->shape[d];
    row /= f->shape[d];
    base1 += idx[d] * f->s1[d];
    base2 += idx[d] * f->s2[d];
  }
  for (int64_t e = e0; e < e1; col = 0) {
    const int64_t n = inner - col < e1 - e ? inner - col : e1 - e;
    bcast_run(j, n, base1 + col * is1, is1, base2 + col * is2, is2, e);
    e += n;
    for (int32_t d = last - 1; d >= 0; d--) {
      base1 += f->s1[d];
      base2 += f->s2[d];
      if (++idx[d] < f->shape[d]) break;
      idx[d] = 0;
      base1 -= f->s1[d] * f->shape[d];
      base2 -= f->s2[d] * f->shape[d];
    }
  }
}

static void bcast_fast_eval(const kiln_node *node, const kiln_eval_ctx *ctx, const bcast_fast *f,
                            const void *q, float act_min, float act_max) {
  bcast_job job = {f, node->inputs[0]->data, node->inputs[1]->data, node->outputs[0]->data,
                   q, act_min, act_max};
  kiln_threadpool_run(ctx->pool, bcast_task, &job, f->n_tasks);
}

/* ---- ADD, SUB, MUL ---- */

typedef enum binary_kind { BINARY_ADD, BINARY_SUB, BINARY_MUL } binary_kind;

typedef struct binary_op {
  kiln_bcast bcast;
  float act_min, act_max; /* float32 */
  kiln_addsub_q addsub;   /* quantized ADD, SUB */
  kiln_mul_q mul;         /* quantized MUL */
  const bcast_fast *fast; /* ADD's optimized plan, or NULL: reference kernel */
} binary_op;

static kiln_status prepare_binary(kiln_node *node, kiln_prepare_ctx *ctx, binary_kind kind) {
  kiln_status s = check_arity(node, ctx, 2);
  if (s != KILN_OK) return s;
  if ((s = check_types(node, ctx, 2)) != KILN_OK) return s;
  const kiln_rt_tensor *a = node->inputs[0], *b = node->inputs[1];
  kiln_rt_tensor *out = node->outputs[0];
  const kiln_activation act = node->op->options.activation;
  if ((s = check_activation(ctx, act)) != KILN_OK) return s;
  if ((s = check_bound_fits(ctx, act, out)) != KILN_OK) return s;

  binary_op *p = kiln_prepare_alloc(ctx, sizeof *p);
  if (!p) return kiln_prepare_nomem(ctx);
  if (!kiln_bcast_init(a->rank, a->shape, b->rank, b->shape, &p->bcast))
    return kiln_prepare_fail(ctx, KILN_ERR_FORMAT,
                             "inputs '%s' (rank %d) and '%s' (rank %d) do not broadcast", a->name,
                             (int)a->rank, b->name, (int)b->rank);
  if ((s = kiln_prepare_set_output_shape(ctx, out, p->bcast.rank, p->bcast.shape)) != KILN_OK)
    return s;

  if (a->dtype == KILN_F32) {
    kiln_activation_range_f(act, &p->act_min, &p->act_max);
  } else {
    int32_t lo, hi;
    kiln_activation_range_q(act, out, &lo, &hi);
    bool ok;
    if (kind == BINARY_MUL)
      ok = kiln_mul_q_init(scale_of(a), zero_point_of(a), scale_of(b), zero_point_of(b),
                           scale_of(out), zero_point_of(out), lo, hi, &p->mul);
    else
      ok = kiln_addsub_q_init(scale_of(a), zero_point_of(a), scale_of(b), zero_point_of(b),
                              scale_of(out), zero_point_of(out), lo, hi, &p->addsub);
    if (!ok)
      return kiln_prepare_fail(ctx, KILN_ERR_UNSUPPORTED,
                               "output scale %g is out of range for input scales %g and %g",
                               (double)scale_of(out), (double)scale_of(a), (double)scale_of(b));
  }
  node->params = p;
  return KILN_OK;
}

static kiln_status prepare_add(kiln_node *node, kiln_prepare_ctx *ctx) {
  kiln_status s = prepare_binary(node, ctx, BINARY_ADD);
  if (s != KILN_OK) return s;
  binary_op *p = node->params;
  return bcast_fast_prepare(ctx, &p->bcast, FAST_ADD, node->inputs[0]->dtype, &p->fast);
}
static kiln_status prepare_sub(kiln_node *node, kiln_prepare_ctx *ctx) {
  return prepare_binary(node, ctx, BINARY_SUB);
}
static kiln_status prepare_mul(kiln_node *node, kiln_prepare_ctx *ctx) {
  return prepare_binary(node, ctx, BINARY_MUL);
}

static void eval_add(const kiln_node *node, const kiln_eval_ctx *ctx) {
  const binary_op *p = node->params;
  const void *a = node->inputs[0]->data, *b = node->inputs[1]->data;
  void *out = node->outputs[0]->data;
  if (p->fast) {
    bcast_fast_eval(node, ctx, p->fast, &p->addsub, p->act_min, p->act_max);
    return;
  }
  switch (node->inputs[0]->dtype) {
    case KILN_F32: kiln_f32_add_ref(&p->bcast, a, b, out, p->act_min, p->act_max); break;
    case KILN_I8: kiln_s8_add_ref(&p->bcast, a, b, out, &p->addsub); break;
    default: kiln_u8_add_ref(&p->bcast, a, b, out, &p->addsub); break;
  }
}

static void eval_sub(const kiln_node *node, const kiln_eval_ctx *ctx) {
  (void)ctx;
  const binary_op *p = node->params;
  const void *a = node->inputs[0]->data, *b = node->inputs[1]->data;
  void *out = node->outputs[0]->data;
  switch (node->inputs[0]->dtype) {
    case KILN_F32: kiln_f32_sub_ref(&p->bcast, a, b, out, p->act_min, p->act_max); break;
    case KILN_I8: kiln_s8_sub_ref(&p->bcast, a, b, out, &p->addsub); break;
    default: kiln_u8_sub_ref(&p->bcast, a, b, out, &p->addsub); break;
  }
}

static void eval_mul(const kiln_node *node, const kiln_eval_ctx *ctx) {
  (void)ctx;
  const binary_op *p = node->params;
  const void *a = node->inputs[0]->data, *b = node->inputs[1]->data;
  void *out = node->outputs[0]->data;
  switch (node->inputs[0]->dtype) {
    case KILN_F32: kiln_f32_mul_ref(&p->bcast, a, b, out, p->act_min, p->act_max); break;
    case KILN_I8: kiln_s8_mul_ref(&p->bcast, a, b, out, &p->mul); break;
    default: kiln_u8_mul_ref(&p->bcast, a, b, out, &p->mul); break;
  }
}

/* ---- PRELU ---- */

typedef struct prelu_op {
  kiln_bcast bcast;
  kiln_prelu_q q;
  const bcast_fast *fast; /* optimized plan, or NULL: reference kernel */
} prelu_op;

static kiln_status prepare_prelu(kiln_node *node, kiln_prepare_ctx *ctx) {
  kiln_status s = check_arity(node, ctx, 2);
  if (s != KILN_OK) return s;
  if ((s = check_types(node, ctx, 2)) != KILN_OK) return s;
  const kiln_rt_tensor *in = node->inputs[0], *alpha = node->inputs[1];
  kiln_rt_tensor *out = node->outputs[0];
  prelu_op *p = kiln_prepare_alloc(ctx, sizeof *p);
  if (!p) return kiln_prepare_nomem(ctx);
  bool same = kiln_bcast_init(in->rank, in->shape, alpha->rank, alpha->shape, &p->bcast) &&
              p->bcast.rank == in->rank;
  for (int32_t i = 0; same && i < in->rank; i++) same = p->bcast.shape[i] == in->shape[i];
  if (!same)
    return kiln_prepare_fail(ctx, KILN_ERR_FORMAT,
                             "alpha '%s' (rank %d) must broadcast to the shape of input '%s'",
                             alpha->name, (int)alpha->rank, in->name);
  if ((s = set_same_shape(ctx, in, out)) != KILN_OK) return s;
  if (is_quantized(in->dtype) &&
      !kiln_prelu_q_init(scale_of(in), zero_point_of(in), scale_of(alpha), zero_point_of(alpha),
                         scale_of(out), zero_point_of(out), &p->q))
    return kiln_prepare_fail(ctx, KILN_ERR_UNSUPPORTED,
                             "rescale from input scale %g and alpha scale %g to output scale %g "
                             "is out of range",
                             (double)scale_of(in), (double)scale_of(alpha), (double)scale_of(out));
  node->params = p;
  return bcast_fast_prepare(ctx, &p->bcast, FAST_PRELU, in->dtype, &p->fast);
}

static void eval_prelu(const kiln_node *node, const kiln_eval_ctx *ctx) {
  const prelu_op *p = node->params;
  if (p->fast) {
    bcast_fast_eval(node, ctx, p->fast, &p->q, 0.0f, 0.0f);
    return;
  }
  const void *in = node->inputs[0]->data, *alpha = node->inputs[1]->data;
  void *out = node->outputs[0]->data;
  switch (node->inputs[0]->dtype) {
    case KILN_F32: kiln_f32_prelu_ref(&p->bcast, in, alpha, out); break;
    case KILN_I8: kiln_s8_prelu_ref(&p->bcast, in, alpha, out, &p->q); break;
    default: kiln_u8_prelu_ref(&p->bcast, in, alpha, out, &p->q); break;
  }
}

/* ---- One-input activations ---- */

typedef struct unary_op {
  int64_t n;
  float alpha; /* float LEAKY_RELU */
  union {
    kiln_relu_q relu;
    kiln_leaky_relu_q leaky;
    kiln_hard_swish_q hard_swish;
    int8_t s8_lut[256];
    uint8_t u8_lut[256];
  } q;
} unary_op;

/* Arity, matching types and the output shape; *out_p gets zeroed params. */
static kiln_status prepare_unary(kiln_node *node, kiln_prepare_ctx *ctx, unary_op **out_p) {
  kiln_status s = check_arity(node, ctx, 1);
  if (s != KILN_OK) return s;
  if ((s = check_types(node, ctx, 1)) != KILN_OK) return s;
  if ((s = set_same_shape(ctx, node->inputs[0], node->outputs[0])) != KILN_OK) return s;
  unary_op *p = kiln_prepare_alloc(ctx, sizeof *p);
  if (!p) return kiln_prepare_nomem(ctx);
  p->n = kiln_rt_elements(node->inputs[0]);
  node->params = p;
  *out_p = p;
  return KILN_OK;
}

static kiln_status rescale_fail(kiln_prepare_ctx *ctx, const kiln_rt_tensor *in,
                                const kiln_rt_tensor *out) {
  return kiln_prepare_fail(ctx, KILN_ERR_UNSUPPORTED,
                           "rescale from input scale %g to output scale %g is out of range",
                           (double)scale_of(in), (double)scale_of(out));
}

/* RELU, RELU6, RELU_N1_TO_1: act gives the clamp range. */
static kiln_status prepare_relu_family(kiln_node *node, kiln_prepare_ctx *ctx, kiln_activation act) {
  unary_op *p = NULL;
  kiln_status s = prepare_unary(node, ctx, &p);
  if (s != KILN_OK) return s;
  const kiln_rt_tensor *in = node->inputs[0], *out = node->outputs[0];
  if (!is_quantized(in->dtype)) return KILN_OK;
  /* TFLite QuantizedReluX clamps to zero point + round(bound / scale),
   * limited to the type's range: the same bounds as a fused activation. */
  if ((s = check_bound_fits(ctx, act, out)) != KILN_OK) return s;
  int32_t lo, hi;
  kiln_activation_range_q(act, out, &lo, &hi);
  if (!kiln_relu_q_init(scale_of(in), zero_point_of(in), scale_of(out), zero_point_of(out), lo, hi,
                        &p->q.relu))
    return rescale_fail(ctx, in, out);
  return KILN_OK;
}

static kiln_status prepare_relu(kiln_node *node, kiln_prepare_ctx *ctx) {
  return prepare_relu_family(node, ctx, KILN_ACT_RELU);
}
static kiln_status prepare_relu6(kiln_node *node, kiln_prepare_ctx *ctx) {
  return prepare_relu_family(node, ctx, KILN_ACT_RELU6);
}
static kiln_status prepare_relu_n1_to_1(kiln_node *node, kiln_prepare_ctx *ctx) {
  return prepare_relu_family(node, ctx, KILN_ACT_RELU_N1_TO_1);
}

/* Quantized RELU family eval; the float kernel differs per op. */
static void eval_relu_q(const kiln_node *node) {
  const unary_op *p = node->params;
  if (node->inputs[0]->dtype == KILN_I8)
    kiln_s8_relu_ref(p->n, node->inputs[0]->data, node->outputs[0]->data, &p->q.relu);
  else
    kiln_u8_relu_ref(p->n, node->inputs[0]->data, node->outputs[0]->data, &p->q.relu);
}

static void eval_relu(const kiln_node *node, const kiln_eval_ctx *ctx) {
  (void)ctx;
  const unary_op *p = node->params;
  if (node->inputs[0]->dtype == KILN_F32)
    kiln_f32_relu_ref(p->n, node->inputs[0]->data, node->outputs[0]->data);
  else
    eval_relu_q(node);
}

static void eval_relu6(const kiln_node *node, const kiln_eval_ctx *ctx) {
  (void)ctx;
  const unary_op *p = node->params;
  if (node->inputs[0]->dtype == KILN_F32)
    kiln_f32_relu6_ref(p->n, node->inputs[0]->data, node->outputs[0]->data);
  else
    eval_relu_q(node);
}

static void eval_relu_n1_to_1(const kiln_node *node, const kiln_eval_ctx *ctx) {
  (void)ctx;
  const unary_op *p = node->params;
  if (node->inputs[0]->dtype == KILN_F32)
    kiln_f32_relu_n1_to_1_ref(p->n, node->inputs[0]->data, node->outputs[0]->data);
  else
    eval_relu_q(node);
}

static kiln_status prepare_leaky_relu(kiln_node *node, kiln_prepare_ctx *ctx) {
  unary_op *p = NULL;
  kiln_status s = prepare_unary(node, ctx, &p);
  if (s != KILN_OK) return s;
  const kiln_rt_tensor *in = node->inputs[0], *out = node->outputs[0];
  p->alpha = node->op->options.alpha;
  if (is_quantized(in->dtype) &&
      !kiln_leaky_relu_q_init(scale_of(in), zero_point_of(in), scale_of(out), zero_point_of(out),
                              p->alpha, &p->q.leaky))
    return kiln_prepare_fail(ctx, KILN_ERR_UNSUPPORTED,
                             "alpha %g with input scale %g and output scale %g is out of range",
                             (double)p->alpha, (double)scale_of(in), (double)scale_of(out));
  return KILN_OK;
}

static void eval_leaky_relu(const kiln_node *node, const kiln_eval_ctx *ctx) {
  (void)ctx;
  const unary_op *p = node->params;
  const void *in = node->inputs[0]->data;
  void *out = node->outputs[0]->data;
  switch (node->inputs[0]->dtype) {
    case KILN_F32: kiln_f32_leaky_relu_ref(p->n, in, out, p->alpha); break;
    case KILN_I8: kiln_s8_leaky_relu_ref(p->n, in, out, &p->q.leaky); break;
    default: kiln_u8_leaky_relu_ref(p->n, in, out, &p->q.leaky); break;
  }
}

static kiln_status prepare_hard_swish(kiln_node *node, kiln_prepare_ctx *ctx) {
  unary_op *p = NULL;
  kiln_status s = prepare_unary(node, ctx, &p);
  if (s != KILN_OK) return s;
  const kiln_rt_tensor *in = node->inputs[0], *out = node->outputs[0];
  if (is_quantized(in->dtype) &&
      !kiln_hard_swish_q_init(scale_of(in), zero_point_of(in), scale_of(out), zero_point_of(out),
                              &p->q.hard_swish))
    return kiln_prepare_fail(ctx, KILN_ERR_UNSUPPORTED,
                             "input scale %g and output scale %g are out of range (the output "
                             "scale must exceed input scale / 128)",
                             (double)scale_of(in), (double)scale_of(out));
  return KILN_OK;
}

static void eval_hard_swish(const kiln_node *node, const kiln_eval_ctx *ctx) {
  (void)ctx;
  const unary_op *p = node->params;
  const void *in = node->inputs[0]->data;
  void *out = node->outputs[0]->data;
  switch (node->inputs[0]->dtype) {
    case KILN_F32: kiln_f32_hard_swish_ref(p->n, in, out); break;
    case KILN_I8: kiln_s8_hard_swish_ref(p->n, in, out, &p->q.hard_swish); break;
    default: kiln_u8_hard_swish_ref(p->n, in, out, &p->q.hard_swish); break;
  }
}

/* LOGISTIC and TANH: quantized outputs must use the fixed quantization of
 * the TFLite spec; the table is filled from fn. */
static kiln_status prepare_table_op(kiln_node *node, kiln_prepare_ctx *ctx, float (*fn)(float),
                                    double out_scale, int32_t s8_zero_point,
                                    int32_t u8_zero_point) {
  unary_op *p = NULL;
  kiln_status s = prepare_unary(node, ctx, &p);
  if (s != KILN_OK) return s;
  const kiln_rt_tensor *in = node->inputs[0], *out = node->outputs[0];
  if (!is_quantized(in->dtype)) return KILN_OK;
  const int32_t want_zp = in->dtype == KILN_I8 ? s8_zero_point : u8_zero_point;
  if ((double)scale_of(out) != out_scale || zero_point_of(out) != want_zp)
    return kiln_prepare_fail(ctx, KILN_ERR_UNSUPPORTED,
                             "%s output '%s' must have scale %g and zero point %d, has %g and %d",
                             kiln_dtype_name(in->dtype), out->name, out_scale, (int)want_zp,
                             (double)scale_of(out), (int)zero_point_of(out));
  if (in->dtype == KILN_I8)
    kiln_s8_lut_init(scale_of(in), zero_point_of(in), scale_of(out), zero_point_of(out), fn,
                     p->q.s8_lut);
  else
    kiln_u8_lut_init(scale_of(in), zero_point_of(in), scale_of(out), zero_point_of(out), fn,
                     p->q.u8_lut);
  return KILN_OK;
}

static kiln_status prepare_logistic(kiln_node *node, kiln_prepare_ctx *ctx) {
  return prepare_table_op(node, ctx, kiln_logistic_table_fn, 1.0 / 256, -128, 0);
}
static kiln_status prepare_tanh(kiln_node *node, kiln_prepare_ctx *ctx) {
  return prepare_table_op(node, ctx, kiln_tanh_table_fn, 1.0 / 128, 0, 128);
}

/* Quantized table lookup shared by LOGISTIC and TANH. */
static void eval_table_q(const kiln_node *node) {
  const unary_op *p = node->params;
  if (node->inputs[0]->dtype == KILN_I8)
    kiln_s8_lut_ref(p->n, node->inputs[0]->data, node->outputs[0]->data, p->q.s8_lut);
  else
    kiln_u8_lut_ref(p->n, node->inputs[0]->data, node->outputs[0]->data, p->q.u8_lut);
}

static void eval_logistic(const kiln_node *node, const kiln_eval_ctx *ctx) {
  (void)ctx;
  const unary_op *p = node->params;
  if (node->inputs[0]->dtype == KILN_F32)
    kiln_f32_logistic_ref(p->n, node->inputs[0]->data, node->outputs[0]->data);
  else
    eval_table_q(node);
}

static void eval_tanh(const kiln_node *node, const kiln_eval_ctx *ctx) {
  (void)ctx;
  const unary_op *p = node->params;
  if (node->inputs[0]->dtype == KILN_F32)
    kiln_f32_tanh_ref(p->n, node->inputs[0]->data, node->outputs[0]->data);
  else
    eval_table_q(node);
}

/* ---- SOFTMAX ---- */

typedef struct softmax_op {
  int64_t outer;
  int32_t depth;
  float beta;
  kiln_softmax_q q;
} softmax_op;

static kiln_status prepare_softmax(kiln_node *node, kiln_prepare_ctx *ctx) {
  kiln_status s = check_arity(node, ctx, 1);
  if (s != KILN_OK) return s;
  if ((s = check_types(node, ctx, 1)) != KILN_OK) return s;
  const kiln_rt_tensor *in = node->inputs[0], *out = node->outputs[0];
  if (in->rank < 1)
    return kiln_prepare_fail(ctx, KILN_ERR_FORMAT, "input '%s' is a scalar; softmax needs rank >= 1",
                             in->name);
  if ((s = set_same_shape(ctx, in, node->outputs[0])) != KILN_OK) return s;
  softmax_op *p = kiln_prepare_alloc(ctx, sizeof *p);
  if (!p) return kiln_prepare_nomem(ctx);
  p->depth = in->shape[in->rank - 1];
  p->outer = 1;
  for (int32_t i = 0; i + 1 < in->rank; i++) p->outer *= in->shape[i];
  p->beta = node->op->options.beta;
  if (!isfinite(p->beta))
    return kiln_prepare_fail(ctx, KILN_ERR_FORMAT, "beta is %g", (double)p->beta);
  if (is_quantized(in->dtype)) {
    /* The kernel always writes scale 1/256 with the zero point at the
     * type's minimum; TFLite accepts scales within 0.1% of 1/256. */
    const int32_t want_zp = in->dtype == KILN_I8 ? -128 : 0;
    if (fabs((double)scale_of(out) - 1.0 / 256) > 0.001 / 256 || zero_point_of(out) != want_zp)
      return kiln_prepare_fail(ctx, KILN_ERR_UNSUPPORTED,
                               "%s output '%s' must have scale 1/256 and zero point %d, has %g "
                               "and %d",
                               kiln_dtype_name(in->dtype), out->name, (int)want_zp,
                               (double)scale_of(out), (int)zero_point_of(out));
    if (!kiln_softmax_q_init(p->beta, scale_of(in), &p->q))
      return kiln_prepare_fail(ctx, KILN_ERR_UNSUPPORTED,
                               "beta %g times input scale %g is too small (needs > 2^-26)",
                               (double)p->beta, (double)scale_of(in));
  }
  node->params = p;
  return KILN_OK;
}

static void eval_softmax(const kiln_node *node, const kiln_eval_ctx *ctx) {
  (void)ctx;
  const softmax_op *p = node->params;
  const void *in = node->inputs[0]->data;
  void *out = node->outputs[0]->data;
  switch (node->inputs[0]->dtype) {
    case KILN_F32: kiln_f32_softmax_ref(p->outer, p->depth, in, out, p->beta); break;
    case KILN_I8: kiln_s8_softmax_ref(p->outer, p->depth, in, out, &p->q); break;
    default: kiln_u8_softmax_ref(p->outer, p->depth, in, out, &p->q); break;
  }
}

/* ---- L2_NORMALIZATION (TFLite l2norm.cc Prepare) ---- */

typedef struct l2norm_op {
  int64_t outer;
  int32_t depth;
} l2norm_op;

static kiln_status prepare_l2norm(kiln_node *node, kiln_prepare_ctx *ctx) {
  kiln_status s = check_arity(node, ctx, 1);
  if (s != KILN_OK) return s;
  if ((s = check_types(node, ctx, 1)) != KILN_OK) return s;
  const kiln_rt_tensor *in = node->inputs[0], *out = node->outputs[0];
  if (in->rank < 1 || in->rank > 4)
    return kiln_prepare_fail(ctx, KILN_ERR_UNSUPPORTED, "input '%s' has rank %d; supported: 1 to 4",
                             in->name, (int)in->rank);
  if (node->op->options.activation != KILN_ACT_NONE)
    return kiln_prepare_fail(ctx, KILN_ERR_UNSUPPORTED, "fused activation %d (TFLite allows none)",
                             (int)node->op->options.activation);
  if ((s = set_same_shape(ctx, in, node->outputs[0])) != KILN_OK) return s;
  l2norm_op *p = kiln_prepare_alloc(ctx, sizeof *p);
  if (!p) return kiln_prepare_nomem(ctx);
  p->depth = in->shape[in->rank - 1];
  p->outer = 1;
  for (int32_t i = 0; i + 1 < in->rank; i++) p->outer *= in->shape[i];
  if (is_quantized(in->dtype)) {
    const int32_t want_zp = in->dtype == KILN_I8 ? 0 : 128;
    if (scale_of(out) != 1.0f / 128.0f || zero_point_of(out) != want_zp)
      return kiln_prepare_fail(ctx, KILN_ERR_UNSUPPORTED,
                               "%s output '%s' must have scale 1/128 and zero point %d, has %g and %d",
                               kiln_dtype_name(in->dtype), out->name, (int)want_zp,
                               (double)scale_of(out), (int)zero_point_of(out));
    /* 255^2 per element: beyond this depth TFLite's int32 sum could wrap. */
    if (p->depth > INT32_MAX / (255 * 255))
      return kiln_prepare_fail(ctx, KILN_ERR_UNSUPPORTED, "depth %d is too large for the int32 sum",
                               (int)p->depth);
  }
  node->params = p;
  return KILN_OK;
}

static void eval_l2norm(const kiln_node *node, const kiln_eval_ctx *ctx) {
  (void)ctx;
  const l2norm_op *p = node->params;
  const void *in = node->inputs[0]->data;
  void *out = node->outputs[0]->data;
  const int32_t zp = is_quantized(node->inputs[0]->dtype) ? zero_point_of(node->inputs[0]) : 0;
  switch (node->inputs[0]->dtype) {
    case KILN_F32: kiln_f32_l2norm_ref(p->outer, p->depth, in, out); break;
    case KILN_I8: kiln_s8_l2norm_ref(p->outer, p->depth, in, out, zp); break;
    default: kiln_u8_l2norm_ref(p->outer, p->depth, in, out, zp); break;
  }
}

const kiln_op_reg kiln_ops_elementwise[] = {
    {KILN_OP_ADD, NULL, {prepare_add, eval_add}},
    {KILN_OP_SUB, NULL, {prepare_sub, eval_sub}},
    {KILN_OP_MUL, NULL, {prepare_mul, eval_mul}},
    {KILN_OP_PRELU, NULL, {prepare_prelu, eval_prelu}},
    {KILN_OP_RELU, NULL, {prepare_relu, eval_relu}},
    {KILN_OP_RELU6, NULL, {prepare_relu6, eval_relu6}},
    {KILN_OP_RELU_N1_TO_1, NULL, {prepare_relu_n1_to_1, eval_relu_n1_to_1}},
    {KILN_OP_LEAKY_RELU, NULL, {prepare_leaky_relu, eval_leaky_relu}},
    {KILN_OP_HARD_SWISH, NULL, {prepare_hard_swish, eval_hard_swish}},
    {KILN_OP_LOGISTIC, NULL, {prepare_logistic, eval_logistic}},
    {KILN_OP_TANH, NULL, {prepare_tanh, eval_tanh}},
    {KILN_OP_SOFTMAX, NULL, {prepare_softmax, eval_softmax}},
    {KILN_OP_L2_NORMALIZATION, NULL, {prepare_l2norm, eval_l2norm}},
    {-1, NULL, {NULL, NULL}},
};
