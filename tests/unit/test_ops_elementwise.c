/*
 * Tests of the elementwise operators through the interpreter
 * (runtime/ops_elementwise.c): one-op models built in memory are prepared
 * and invoked, and their outputs compared with the reference kernels
 * called directly; prepare must refuse what the ops do not support
 * (mismatched dtypes, per-axis quantization, shapes that do not broadcast,
 * output shapes that disagree, fixed output quantization not respected,
 * unsupported fused activations and out-of-range rescales) with a message.
 */
#include <math.h>
#include <string.h>

#include "kernels/ref/elementwise_ref.h"
#include "kiln/interp.h"
#include "kiln/model.h"
#include "testutil.h"

typedef struct tdesc {
  kiln_dtype dtype;
  int32_t rank;
  int32_t shape[6];
  float scale; /* 0: not quantized */
  int32_t zp;
  int32_t n_scales; /* > 1: per-axis along the last dimension */
  const void *data; /* constant contents, or NULL for a graph input */
} tdesc;

/* A model with one op of `code`, inputs ins[0..n_in) and one output. */
static kiln_model *one_op(int32_t code, const tdesc *ins, int n_in, const tdesc *out,
                          const kiln_op_options *opts) {
  kiln_error err;
  kiln_model *m;
  if (kiln_model_new(&m, &err) != KILN_OK) return NULL;
  int32_t idx[3], graph_in[2], n_graph_in = 0;
  for (int i = 0; i <= n_in; i++) {
    const tdesc *d = i < n_in ? &ins[i] : out;
    float scales[8];
    int32_t zps[8];
    kiln_quant q = {0, 0, scales, zps};
    if (d->scale > 0) {
      q.count = d->n_scales > 1 ? d->n_scales : 1;
      q.axis = d->rank - 1;
      for (int32_t k = 0; k < q.count; k++) scales[k] = d->scale, zps[k] = d->zp;
    }
    char name[8];
    snprintf(name, sizeof name, i < n_in ? "in%d" : "out", i);
    idx[i] = kiln_model_add_tensor(m, name, d->dtype, d->rank, d->shape, &q, d->data, &err);
    if (idx[i] < 0) goto fail;
    if (i < n_in && !d->data) graph_in[n_graph_in++] = idx[i];
  }
  if (kiln_model_add_op(m, code, NULL, idx, n_in, &idx[n_in], 1, opts, NULL, 0, &err) < 0) goto fail;
  if (kiln_model_set_io(m, graph_in, n_graph_in, &idx[n_in], 1, &err) != KILN_OK) goto fail;
  return m;
fail:
  fprintf(stderr, "building the model failed: %s\n", err.msg);
  kiln_model_free(m);
  return NULL;
}

/* Prepares the model; returns the status and leaves the message in err. */
static kiln_status create(const kiln_model *m, kiln_interp **it, kiln_error *err) {
  kiln_interp_options o = {1, true, false};
  return kiln_interp_create(m, &o, it, err);
}

static void fill_random(test_rng *rng, kiln_tensor_view v) {
  const size_t n = v.bytes / kiln_dtype_size(v.dtype);
  for (size_t i = 0; i < n; i++) {
    if (v.dtype == KILN_F32)
      ((float *)v.data)[i] = test_rand_float(rng, -8, 8);
    else
      ((uint8_t *)v.data)[i] = (uint8_t)test_rand_u32(rng);
  }
}

static tdesc tensor(kiln_dtype dtype, int32_t rank, const int32_t *shape, float scale, int32_t zp) {
  tdesc d = {dtype, rank, {0}, dtype == KILN_F32 ? 0.0f : scale, zp, 1, NULL};
  memcpy(d.shape, shape, sizeof(int32_t) * (size_t)rank);
  return d;
}

/* ---- Running ops ---- */

static void test_binary_ops(void) {
  test_rng rng = {61};
  const int32_t s1[4] = {2, 3, 1, 5}, s2[3] = {1, 4, 5}, so[4] = {2, 3, 4, 5};
  const int32_t codes[3] = {KILN_OP_ADD, KILN_OP_SUB, KILN_OP_MUL};
  const kiln_dtype dtypes[3] = {KILN_F32, KILN_I8, KILN_U8};
  for (int c = 0; c < 3; c++) {
    for (int d = 0; d < 3; d++) {
      const kiln_dtype dt = dtypes[d];
      const int32_t zp = dt == KILN_I8 ? -5 : 130;
      const tdesc ins[2] = {tensor(dt, 4, s1, 0.05f, zp), tensor(dt, 3, s2, 0.02f, zp + 3)};
      const tdesc out = tensor(dt, 4, so, codes[c] == KILN_OP_MUL ? 0.01f : 0.07f, zp - 2);
      kiln_op_options opts = {0};
      opts.activation = KILN_ACT_RELU6;
      kiln_model *m = one_op(codes[c], ins, 2, &out, &opts);
      REQUIRE(m);
      kiln_interp *it;
      kiln_error err;
      REQUIRE(create(m, &it, &err) == KILN_OK);
      kiln_tensor_view a = kiln_interp_input(it, 0), b = kiln_interp_input(it, 1);
      fill_random(&rng, a);
      fill_random(&rng, b);
      REQUIRE(kiln_interp_invoke(it, &err) == KILN_OK);
      kiln_tensor_view o = kiln_interp_output(it, 0);
      CHECK(o.rank == 4 && o.shape[2] == 4 && o.bytes == 120 * kiln_dtype_size(dt));
      kiln_bcast bc;
      REQUIRE(kiln_bcast_init(4, s1, 3, s2, &bc));
      uint8_t want[480];
      if (dt == KILN_F32) {
        void (*f)(const kiln_bcast *, const float *, const float *, float *, float, float) =
            c == 0 ? kiln_f32_add_ref : (c == 1 ? kiln_f32_sub_ref : kiln_f32_mul_ref);
        f(&bc, a.data, b.data, (float *)want, 0.0f, 6.0f);
      } else {
        const int32_t lo = zp - 2, hi = dt == KILN_I8 ? 127 : 255;
        const int32_t six = zp - 2 + (int32_t)roundf(6.0f / out.scale);
        const int32_t act_hi = six < hi ? six : hi;
        if (c < 2) {
          kiln_addsub_q p;
          REQUIRE(kiln_addsub_q_init(0.05f, zp, 0.02f, zp + 3, out.scale, zp - 2, lo, act_hi, &p));
          if (dt == KILN_I8)
            (c == 0 ? kiln_s8_add_ref : kiln_s8_sub_ref)(&bc, a.data, b.data, (int8_t *)want, &p);
          else
            (c == 0 ? kiln_u8_add_ref : kiln_u8_sub_ref)(&bc, a.data, b.data, want, &p);
        } else {
          kiln_mul_q p;
          REQUIRE(kiln_mul_q_init(0.05f, zp, 0.02f, zp + 3, out.scale, zp - 2, lo, act_hi, &p));
          if (dt == KILN_I8)
            kiln_s8_mul_ref(&bc, a.data, b.data, (int8_t *)want, &p);
          else
            kiln_u8_mul_ref(&bc, a.data, b.data, want, &p);
        }
      }
      CHECK_MSG(memcmp(o.data, want, o.bytes) == 0, "op %d dtype %s", (int)codes[c],
                kiln_dtype_name(dt));
      kiln_interp_free(it);
      kiln_model_free(m);
    }
  }
}

/* Computes into `out` what a one-input op should produce for `in`. */
typedef void (*expect_fn)(const kiln_tensor_view *in, void *out, const tdesc *ti,
                          const tdesc *to, const kiln_op_options *opts);

/* Runs a one-input op on random data through the interpreter and checks
 * its output against `expect`. */
static void run_unary(int32_t code, kiln_dtype dt, float in_scale, int32_t in_zp, float out_scale,
                      int32_t out_zp, const kiln_op_options *opts, expect_fn expect) {
  test_rng rng = {62};
  const int32_t shape[3] = {2, 7, 33};
  const tdesc ti = tensor(dt, 3, shape, in_scale, in_zp), to = tensor(dt, 3, shape, out_scale, out_zp);
  kiln_model *m = one_op(code, &ti, 1, &to, opts);
  REQUIRE(m);
  kiln_interp *it;
  kiln_error err;
  kiln_status s = create(m, &it, &err);
  CHECK_MSG(s == KILN_OK, "%s %s: %s", kiln_opcode_name(code), kiln_dtype_name(dt), err.msg);
  if (s != KILN_OK) {
    kiln_model_free(m);
    return;
  }
  kiln_tensor_view in = kiln_interp_input(it, 0);
  fill_random(&rng, in);
  REQUIRE(kiln_interp_invoke(it, &err) == KILN_OK);
  kiln_tensor_view out = kiln_interp_output(it, 0);
  static uint8_t want[4 * 2 * 7 * 33];
  expect(&in, want, &ti, &to, opts);
  CHECK_MSG(memcmp(out.data, want, out.bytes) == 0, "%s %s", kiln_opcode_name(code),
            kiln_dtype_name(dt));
  kiln_interp_free(it);
  kiln_model_free(m);
}

static int64_t n_of(const kiln_tensor_view *v) { return (int64_t)(v->bytes / kiln_dtype_size(v->dtype)); }

static void expect_relu6(const kiln_tensor_view *in, void *out, const tdesc *ti, const tdesc *to,
                         const kiln_op_options *o) {
  (void)o;
  if (in->dtype == KILN_F32) return kiln_f32_relu6_ref(n_of(in), in->data, out);
  kiln_relu_q p;
  const int32_t hi_t = in->dtype == KILN_I8 ? 127 : 255;
  const int32_t six = to->zp + (int32_t)roundf(6.0f / to->scale);
  REQUIRE(kiln_relu_q_init(ti->scale, ti->zp, to->scale, to->zp, to->zp, six < hi_t ? six : hi_t, &p));
  if (in->dtype == KILN_I8)
    kiln_s8_relu_ref(n_of(in), in->data, out, &p);
  else
    kiln_u8_relu_ref(n_of(in), in->data, out, &p);
}

static void expect_leaky(const kiln_tensor_view *in, void *out, const tdesc *ti, const tdesc *to,
                         const kiln_op_options *o) {
  if (in->dtype == KILN_F32) return kiln_f32_leaky_relu_ref(n_of(in), in->data, out, o->alpha);
  kiln_leaky_relu_q p;
  REQUIRE(kiln_leaky_relu_q_init(ti->scale, ti->zp, to->scale, to->zp, o->alpha, &p));
  if (in->dtype == KILN_I8)
    kiln_s8_leaky_relu_ref(n_of(in), in->data, out, &p);
  else
    kiln_u8_leaky_relu_ref(n_of(in), in->data, out, &p);
}

static void expect_hard_swish(const kiln_tensor_view *in, void *out, const tdesc *ti,
                              const tdesc *to, const kiln_op_options *o) {
  (void)o;
  if (in->dtype == KILN_F32) return kiln_f32_hard_swish_ref(n_of(in), in->data, out);
  kiln_hard_swish_q p;
  REQUIRE(kiln_hard_swish_q_init(ti->scale, ti->zp, to->scale, to->zp, &p));
  if (in->dtype == KILN_I8)
    kiln_s8_hard_swish_ref(n_of(in), in->data, out, &p);
  else
    kiln_u8_hard_swish_ref(n_of(in), in->data, out, &p);
}

static void expect_table(const kiln_tensor_view *in, void *out, const tdesc *ti, const tdesc *to,
                         bool logistic) {
  if (in->dtype == KILN_F32)
    return (logistic ? kiln_f32_logistic_ref : kiln_f32_tanh_ref)(n_of(in), in->data, out);
  float (*fn)(float) = logistic ? kiln_logistic_table_fn : kiln_tanh_table_fn;
  uint8_t lut[256];
  if (in->dtype == KILN_I8) {
    kiln_s8_lut_init(ti->scale, ti->zp, to->scale, to->zp, fn, (int8_t *)lut);
    kiln_s8_lut_ref(n_of(in), in->data, out, (int8_t *)lut);
  } else {
    kiln_u8_lut_init(ti->scale, ti->zp, to->scale, to->zp, fn, lut);
    kiln_u8_lut_ref(n_of(in), in->data, out, lut);
  }
}

static void expect_logistic(const kiln_tensor_view *in, void *out, const tdesc *ti,
                            const tdesc *to, const kiln_op_options *o) {
  (void)o;
  expect_table(in, out, ti, to, true);
}

static void expect_tanh(const kiln_tensor_view *in, void *out, const tdesc *ti, const tdesc *to,
                        const kiln_op_options *o) {
  (void)o;
  expect_table(in, out, ti, to, false);
}

static void expect_softmax(const kiln_tensor_view *in, void *out, const tdesc *ti,
                           const tdesc *to, const kiln_op_options *o) {
  (void)to;
  if (in->dtype == KILN_F32) return kiln_f32_softmax_ref(14, 33, in->data, out, o->beta);
  kiln_softmax_q p;
  REQUIRE(kiln_softmax_q_init(o->beta, ti->scale, &p));
  if (in->dtype == KILN_I8)
    kiln_s8_softmax_ref(14, 33, in->data, out, &p);
  else
    kiln_u8_softmax_ref(14, 33, in->data, out, &p);
}

static void test_unary_ops(void) {
  const kiln_dtype dtypes[3] = {KILN_F32, KILN_I8, KILN_U8};
  for (int d = 0; d < 3; d++) {
    const kiln_dtype dt = dtypes[d];
    const bool s8 = dt == KILN_I8;
    const int32_t zmin = s8 ? -128 : 0;
    kiln_op_options o = {0};
    run_unary(KILN_OP_RELU6, dt, 0.05f, zmin + 10, 0.03f, zmin + 1, &o, expect_relu6);
    o.alpha = 0.2f;
    run_unary(KILN_OP_LEAKY_RELU, dt, 0.05f, zmin + 100, 0.04f, zmin + 90, &o, expect_leaky);
    o.alpha = -0.5f;
    run_unary(KILN_OP_LEAKY_RELU, dt, 0.05f, zmin + 100, 0.04f, zmin + 90, &o, expect_leaky);
    run_unary(KILN_OP_HARD_SWISH, dt, 0.05f, zmin + 128, 0.03f, zmin + 20, &o, expect_hard_swish);
    run_unary(KILN_OP_LOGISTIC, dt, 0.05f, zmin + 128, 1.0f / 256, zmin, &o, expect_logistic);
    run_unary(KILN_OP_TANH, dt, 0.05f, zmin + 128, 1.0f / 128, s8 ? 0 : 128, &o, expect_tanh);
    o.beta = 0.7f;
    run_unary(KILN_OP_SOFTMAX, dt, 0.1f, zmin + 3, 1.0f / 256, zmin, &o, expect_softmax);
  }
}

static void test_prelu_op(void) {
  test_rng rng = {63};
  const int32_t shape[4] = {1, 3, 4, 8}, ashape[3] = {1, 1, 8};
  int8_t alpha[8];
  for (int i = 0; i < 8; i++) alpha[i] = (int8_t)test_rand_int(&rng, -128, 127);
  tdesc ins[2] = {tensor(KILN_I8, 4, shape, 0.05f, 3), tensor(KILN_I8, 3, ashape, 0.01f, -4)};
  ins[1].data = alpha;
  const tdesc out = tensor(KILN_I8, 4, shape, 0.04f, -7);
  kiln_model *m = one_op(KILN_OP_PRELU, ins, 2, &out, NULL);
  REQUIRE(m);
  kiln_interp *it;
  kiln_error err;
  REQUIRE(create(m, &it, &err) == KILN_OK);
  kiln_tensor_view in = kiln_interp_input(it, 0);
  fill_random(&rng, in);
  REQUIRE(kiln_interp_invoke(it, &err) == KILN_OK);
  kiln_bcast bc;
  REQUIRE(kiln_bcast_init(4, shape, 3, ashape, &bc));
  kiln_prelu_q p;
  REQUIRE(kiln_prelu_q_init(0.05f, 3, 0.01f, -4, 0.04f, -7, &p));
  int8_t want[96];
  kiln_s8_prelu_ref(&bc, in.data, alpha, want, &p);
  CHECK(memcmp(kiln_interp_output(it, 0).data, want, 96) == 0);
  kiln_interp_free(it);
  kiln_model_free(m);
}

/* ---- Refusals ---- */

/* Prepares and expects `status` with `needle` in the message. */
static void expect_refusal(int32_t code, const tdesc *ins, int n_in, const tdesc *out,
                           const kiln_op_options *opts, kiln_status status, const char *needle) {
  kiln_model *m = one_op(code, ins, n_in, out, opts);
  REQUIRE(m);
  kiln_interp *it = NULL;
  kiln_error err = {0};
  const kiln_status s = create(m, &it, &err);
  CHECK_MSG(s == status && strstr(err.msg, needle), "%s: status %d, message '%s', wanted '%s'",
            kiln_opcode_name(code), (int)s, err.msg, needle);
  if (s == KILN_OK) kiln_interp_free(it);
  kiln_model_free(m);
}

static void test_refusals(void) {
  const int32_t s4[4] = {1, 2, 3, 4}, s2[2] = {5, 4}, s_out[4] = {1, 2, 3, 5}, s3[1] = {3};
  kiln_op_options o = {0};
  /* dtypes must match */
  tdesc in2[2] = {tensor(KILN_I8, 4, s4, 0.1f, 0), tensor(KILN_I8, 4, s4, 0.1f, 0)};
  tdesc out = tensor(KILN_U8, 4, s4, 0.1f, 0);
  expect_refusal(KILN_OP_ADD, in2, 2, &out, &o, KILN_ERR_FORMAT, "expected int8");
  /* int32 arithmetic is not implemented */
  tdesc i32[2] = {tensor(KILN_I32, 4, s4, 0, 0), tensor(KILN_I32, 4, s4, 0, 0)};
  tdesc o32 = tensor(KILN_I32, 4, s4, 0, 0);
  expect_refusal(KILN_OP_MUL, i32, 2, &o32, &o, KILN_ERR_UNSUPPORTED, "supported: float32");
  /* per-axis quantization */
  out = tensor(KILN_I8, 4, s4, 0.1f, 0);
  in2[1].n_scales = 4;
  expect_refusal(KILN_OP_SUB, in2, 2, &out, &o, KILN_ERR_UNSUPPORTED, "per-tensor");
  in2[1].n_scales = 1;
  /* zero point outside the type */
  in2[0].zp = 200;
  expect_refusal(KILN_OP_ADD, in2, 2, &out, &o, KILN_ERR_FORMAT, "zero point 200");
  in2[0].zp = 0;
  /* shapes that do not broadcast, and a declared output that disagrees */
  tdesc bad[2] = {tensor(KILN_F32, 4, s4, 0, 0), tensor(KILN_F32, 2, s2, 0, 0)};
  tdesc fout = tensor(KILN_F32, 4, s4, 0, 0);
  expect_refusal(KILN_OP_ADD, bad, 2, &fout, &o, KILN_ERR_FORMAT, "do not broadcast");
  tdesc fin[2] = {tensor(KILN_F32, 4, s4, 0, 0), tensor(KILN_F32, 4, s4, 0, 0)};
  tdesc wrong = tensor(KILN_F32, 4, s_out, 0, 0);
  expect_refusal(KILN_OP_ADD, fin, 2, &wrong, &o, KILN_ERR_FORMAT, "declared");
  /* fused TANH is not an activation TFLite fuses into ADD */
  o.activation = KILN_ACT_TANH;
  expect_refusal(KILN_OP_ADD, fin, 2, &fout, &o, KILN_ERR_UNSUPPORTED, "fused activation");
  o.activation = KILN_ACT_NONE;
  /* an output scale too fine for the ADD rescale */
  out.scale = 1e-8f;
  expect_refusal(KILN_OP_ADD, in2, 2, &out, &o, KILN_ERR_UNSUPPORTED, "out of range");
  /* fixed output quantization of LOGISTIC, TANH, SOFTMAX */
  tdesc q1 = tensor(KILN_I8, 4, s4, 0.1f, 0);
  tdesc qo = tensor(KILN_I8, 4, s4, 1.0f / 256, 0);
  expect_refusal(KILN_OP_LOGISTIC, &q1, 1, &qo, &o, KILN_ERR_UNSUPPORTED, "zero point -128");
  qo = tensor(KILN_U8, 4, s4, 1.0f / 100, 128);
  q1.dtype = KILN_U8;
  expect_refusal(KILN_OP_TANH, &q1, 1, &qo, &o, KILN_ERR_UNSUPPORTED, "scale 0.0078125");
  o.beta = 1.0f;
  qo = tensor(KILN_U8, 4, s4, 1.0f / 256, 5);
  expect_refusal(KILN_OP_SOFTMAX, &q1, 1, &qo, &o, KILN_ERR_UNSUPPORTED, "zero point 0");
  /* softmax needs beta * scale above 2^-26 */
  o.beta = 1e-9f;
  qo.zp = 0;
  expect_refusal(KILN_OP_SOFTMAX, &q1, 1, &qo, &o, KILN_ERR_UNSUPPORTED, "too small");
  /* hard-swish output finer than input / 128 */
  qo = tensor(KILN_U8, 4, s4, 0.1f / 200, 0);
  expect_refusal(KILN_OP_HARD_SWISH, &q1, 1, &qo, &o, KILN_ERR_UNSUPPORTED, "out of range");
  /* PRELU's alpha may not grow the input */
  tdesc pin[2] = {tensor(KILN_F32, 1, s3, 0, 0), tensor(KILN_F32, 4, s4, 0, 0)};
  tdesc pout = tensor(KILN_F32, 1, s3, 0, 0);
  expect_refusal(KILN_OP_PRELU, pin, 2, &pout, &o, KILN_ERR_FORMAT, "must broadcast");
  /* arity */
  expect_refusal(KILN_OP_ADD, fin, 1, &fout, &o, KILN_ERR_FORMAT, "expects 2 inputs");
}

int main(void) {
  RUN(test_binary_ops);
  RUN(test_unary_ops);
  RUN(test_prelu_op);
  RUN(test_refusals);
  return test_summary();
}
