/*
 * test_ops_poolshape.c: the pool- and shape-family operators through the
 * interpreter, on one-op models built with the model API: output shapes,
 * options (negative axes, -1 in reshape, squeeze_dims, paddings types,
 * align_corners/half_pixel_centers), quantization handling, and every
 * refusal prepare makes (non-constant shape inputs, unsupported activations,
 * mismatched quantization, malformed options) with its message.
 */
#include <math.h>
#include <string.h>

#include "kernels/quant_math.h"
#include "kernels/ref/pool_ref.h"
#include "kernels/ref/shape_ref.h"
#include "kiln/interp.h"
#include "kiln/model.h"
#include "testutil.h"

/* A one-op model under construction. */
typedef struct one_op {
  kiln_model *m;
  kiln_interp *it;
  kiln_error err;
  int32_t ins[4], n_ins, out;
} one_op;

static void begin(one_op *t) {
  memset(t, 0, sizeof *t);
  if (kiln_model_new(&t->m, &t->err) != KILN_OK) t->m = NULL;
}

/* Adds a tensor; scale > 0 makes it quantized per tensor; data makes it a
 * constant. */
static int32_t tensor(one_op *t, const char *name, kiln_dtype dt, int32_t rank,
                      const int32_t *shape, float scale, int32_t zp, const void *data) {
  kiln_quant q = {0};
  if (scale > 0) {
    q.count = 1;
    q.scale = &scale;
    q.zero_point = &zp;
  }
  return kiln_model_add_tensor(t->m, name, dt, rank, shape, &q, data, &t->err);
}

/* Adds the op reading t->ins and writing t->out, makes every non-constant
 * input a graph input, and creates the interpreter. */
static kiln_status finish(one_op *t, int32_t code, const kiln_op_options *o) {
  kiln_op_options dflt;
  memset(&dflt, 0, sizeof dflt);
  dflt.new_shape_count = -1;
  if (kiln_model_add_op(t->m, code, NULL, t->ins, t->n_ins, &t->out, 1, o ? o : &dflt, NULL, 0,
                        &t->err) < 0)
    return t->err.status;
  int32_t gin[4], n = 0;
  for (int32_t i = 0; i < t->n_ins; i++)
    if (t->ins[i] >= 0 && !t->m->tensors[t->ins[i]].data) gin[n++] = t->ins[i];
  kiln_status s = kiln_model_set_io(t->m, gin, n, &t->out, 1, &t->err);
  if (s != KILN_OK) return s;
  return kiln_interp_create(t->m, NULL, &t->it, &t->err);
}

static void end(one_op *t) {
  kiln_interp_free(t->it);
  kiln_model_free(t->m);
}

static kiln_op_options opts(void) {
  kiln_op_options o;
  memset(&o, 0, sizeof o);
  o.new_shape_count = -1;
  return o;
}

/* Expects prepare to fail with status and a message containing needle. */
#define EXPECT_REFUSAL(t, s, status_, needle)                                                \
  do {                                                                                       \
    CHECK_MSG((s) == (status_), "status %d, want %d (%s)", (int)(s), (int)(status_),         \
              (t)->err.msg);                                                                 \
    CHECK_MSG(strstr((t)->err.msg, needle) != NULL, "message '%s' lacks '%s'", (t)->err.msg, \
              needle);                                                                       \
  } while (0)

static void fill_random(test_rng *r, void *data, size_t bytes) {
  uint8_t *p = data;
  for (size_t i = 0; i < bytes; i++) p[i] = (uint8_t)test_rand_u32(r);
}

/* ---- pooling ---- */

static void test_avg_pool_op(void) {
  test_rng r = {1};
  one_op t;
  begin(&t);
  REQUIRE(t.m);
  const int32_t is[4] = {1, 7, 6, 3}, os[4] = {1, 3, 2, 3};
  t.ins[0] = tensor(&t, "x", KILN_I8, 4, is, 0.05f, -7, NULL);
  t.n_ins = 1;
  t.out = tensor(&t, "y", KILN_I8, 4, os, 0.05f, -7, NULL);
  kiln_op_options o = opts();
  o.padding = KILN_PAD_SAME;
  o.stride_h = 3, o.stride_w = 3, o.filter_h = 3, o.filter_w = 2;
  o.activation = KILN_ACT_RELU6;
  kiln_status s = finish(&t, KILN_OP_AVERAGE_POOL_2D, &o);
  CHECK_MSG(s == KILN_OK, "%s", t.err.msg);
  if (s == KILN_OK) {
    kiln_tensor_view in = kiln_interp_input(t.it, 0);
    fill_random(&r, in.data, in.bytes);
    CHECK(kiln_interp_invoke(t.it, &t.err) == KILN_OK);
    kiln_tensor_view out = kiln_interp_output(t.it, 0);
    /* SAME: 7 rows by 3 -> 3 (padding 1 on top), 6 cols by 3 -> 2. */
    kiln_pool_params p = {3, 3, 3, 2, 1, 0, 0, 0, -7, -7 + 120};
    int8_t want[18];
    kiln_s8_avg_pool_ref(&p, is, in.data, os, want);
    CHECK(out.bytes == sizeof want && memcmp(out.data, want, sizeof want) == 0);
  }
  end(&t);
}

static void test_pool_refusals(void) {
  const int32_t is[4] = {1, 4, 4, 2}, os[4] = {1, 2, 2, 2};
  struct {
    kiln_dtype dt;
    float out_scale;
    int act, padding, filter, rank;
    int32_t declared_h;
    kiln_status status;
    const char *needle;
  } cases[] = {
      {KILN_I8, 0.1f, KILN_ACT_TANH, KILN_PAD_VALID, 2, 4, 2, KILN_ERR_UNSUPPORTED, "activation"},
      {KILN_I8, 0.2f, KILN_ACT_NONE, KILN_PAD_VALID, 2, 4, 2, KILN_ERR_UNSUPPORTED,
       "share quantization"},
      {KILN_F32, 0, KILN_ACT_NONE, KILN_PAD_VALID, 5, 4, 2, KILN_ERR_FORMAT, "does not fit"},
      {KILN_F32, 0, KILN_ACT_NONE, KILN_PAD_VALID, 2, 3, 2, KILN_ERR_FORMAT, "rank 3"},
      {KILN_F32, 0, KILN_ACT_NONE, KILN_PAD_VALID, 2, 4, 3, KILN_ERR_FORMAT, "declared"},
      {KILN_I32, 0, KILN_ACT_NONE, KILN_PAD_VALID, 2, 4, 2, KILN_ERR_UNSUPPORTED, "int32"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    one_op t;
    begin(&t);
    REQUIRE(t.m);
    int32_t ds[4] = {os[0], cases[i].declared_h, os[2], os[3]};
    const float in_scale = cases[i].out_scale > 0 ? 0.1f : 0;
    t.ins[0] = tensor(&t, "x", cases[i].dt, cases[i].rank, is, in_scale, 0, NULL);
    t.n_ins = 1;
    t.out = tensor(&t, "y", cases[i].dt, 4, ds, cases[i].out_scale, 0, NULL);
    kiln_op_options o = opts();
    o.padding = cases[i].padding;
    o.stride_h = o.stride_w = 2;
    o.filter_h = o.filter_w = cases[i].filter;
    o.activation = cases[i].act;
    kiln_status s = finish(&t, KILN_OP_MAX_POOL_2D, &o);
    EXPECT_REFUSAL(&t, s, cases[i].status, cases[i].needle);
    CHECK_MSG(strstr(t.err.msg, "MAX_POOL_2D") != NULL, "message '%s' lacks the op", t.err.msg);
    end(&t);
  }
}

/* ---- MEAN ---- */

static void test_mean_op(void) {
  test_rng r = {2};
  for (int keep = 0; keep < 2; keep++) {
    one_op t;
    begin(&t);
    REQUIRE(t.m);
    const int32_t is[4] = {2, 5, 3, 4}, axes[3] = {-3, 2, 1}, as[1] = {3};
    const int32_t os_keep[4] = {2, 1, 1, 4}, os_drop[2] = {2, 4};
    t.ins[0] = tensor(&t, "x", KILN_U8, 4, is, 0.02f, 250, NULL);
    t.ins[1] = tensor(&t, "axes", KILN_I32, 1, as, 0, 0, axes);
    t.n_ins = 2;
    t.out = keep ? tensor(&t, "y", KILN_U8, 4, os_keep, 0.013f, 3, NULL)
                 : tensor(&t, "y", KILN_U8, 2, os_drop, 0.013f, 3, NULL);
    kiln_op_options o = opts();
    o.keep_dims = keep;
    kiln_status s = finish(&t, KILN_OP_MEAN, &o);
    CHECK_MSG(s == KILN_OK, "%s", t.err.msg);
    if (s == KILN_OK) {
      kiln_tensor_view in = kiln_interp_input(t.it, 0);
      fill_random(&r, in.data, in.bytes);
      CHECK(kiln_interp_invoke(t.it, &t.err) == KILN_OK);
      int32_t m, mm;
      int shift, mshift;
      kiln_quantize_multiplier((double)0.02f / (double)0.013f, &m, &shift);
      kiln_mean_q_multiplier(m, shift, 15, &mm, &mshift);
      uint8_t want[8];
      kiln_u8_mean_ref(4, is, 6u, in.data, 250, mm, mshift, 3, want);
      kiln_tensor_view out = kiln_interp_output(t.it, 0);
      CHECK(out.bytes == 8 && memcmp(out.data, want, 8) == 0);
      CHECK(out.rank == (keep ? 4 : 2));
    }
    end(&t);
  }
}

static void test_mean_refusals(void) {
  const int32_t is[2] = {3, 4}, os[1] = {3}, as[1] = {1};
  const int32_t bad_axis[1] = {2};
  const int64_t axis64[1] = {1};
  for (int c = 0; c < 3; c++) {
    one_op t;
    begin(&t);
    REQUIRE(t.m);
    t.ins[0] = tensor(&t, "x", KILN_F32, 2, is, 0, 0, NULL);
    if (c == 0) t.ins[1] = tensor(&t, "axes", KILN_I32, 1, as, 0, 0, NULL); /* a graph input */
    if (c == 1) t.ins[1] = tensor(&t, "axes", KILN_I32, 1, as, 0, 0, bad_axis);
    if (c == 2) t.ins[1] = tensor(&t, "axes", KILN_I64, 1, as, 0, 0, axis64);
    t.n_ins = 2;
    t.out = tensor(&t, "y", KILN_F32, 1, os, 0, 0, NULL);
    kiln_status s = finish(&t, KILN_OP_MEAN, NULL);
    if (c == 0) EXPECT_REFUSAL(&t, s, KILN_ERR_UNSUPPORTED, "not constant");
    if (c == 1) EXPECT_REFUSAL(&t, s, KILN_ERR_FORMAT, "out of range");
    if (c == 2) EXPECT_REFUSAL(&t, s, KILN_ERR_FORMAT, "int32");
    end(&t);
  }
}

/* ---- CONCATENATION ---- */

static void test_concat_op(void) {
  test_rng r = {3};
  one_op t;
  begin(&t);
  REQUIRE(t.m);
  const int32_t a[3] = {2, 3, 2}, b[3] = {2, 3, 5}, os[3] = {2, 3, 7};
  t.ins[0] = tensor(&t, "a", KILN_U8, 3, a, 0.1f, 128, NULL);
  t.ins[1] = tensor(&t, "b", KILN_U8, 3, b, 0.05f, 10, NULL);
  t.n_ins = 2;
  t.out = tensor(&t, "y", KILN_U8, 3, os, 0.1f, 128, NULL);
  kiln_op_options o = opts();
  o.axis = -1;
  kiln_status s = finish(&t, KILN_OP_CONCATENATION, &o);
  CHECK_MSG(s == KILN_OK, "%s", t.err.msg);
  if (s == KILN_OK) {
    kiln_tensor_view ia = kiln_interp_input(t.it, 0), ib = kiln_interp_input(t.it, 1);
    fill_random(&r, ia.data, ia.bytes);
    fill_random(&r, ib.data, ib.bytes);
    CHECK(kiln_interp_invoke(t.it, &t.err) == KILN_OK);
    const uint8_t *pa = ia.data, *pb = ib.data, *po = kiln_interp_output(t.it, 0).data;
    int bad = 0;
    for (int row = 0; row < 6; row++) {
      for (int k = 0; k < 2; k++) bad += po[row * 7 + k] != pa[row * 2 + k]; /* same quantization */
      for (int k = 0; k < 5; k++) {
        /* 0.05 / 0.1 rescale: q' = round(q * 0.5 - 5) + 128 */
        const float sc = 0.05f * (1.0f / 0.1f);
        const float v = (float)pb[row * 5 + k] * sc + (float)-10 * sc;
        bad += po[row * 7 + 2 + k] != kiln_clamp_i32((int32_t)roundf(v) + 128, 0, 255);
      }
    }
    CHECK(bad == 0);
  }
  end(&t);
}

static void test_concat_refusals(void) {
  const int32_t a[2] = {2, 3}, b[2] = {2, 4}, c3[2] = {3, 3}, os[2] = {2, 7};
  for (int c = 0; c < 4; c++) {
    one_op t;
    begin(&t);
    REQUIRE(t.m);
    const kiln_dtype dt = c == 0 ? KILN_I8 : KILN_F32;
    const float sa = dt == KILN_I8 ? 0.1f : 0, sb = dt == KILN_I8 ? 0.2f : 0;
    t.ins[0] = tensor(&t, "a", dt, 2, a, sa, 0, NULL);
    t.ins[1] = tensor(&t, "b", dt, 2, c == 2 ? c3 : b, sb, 0, NULL);
    t.n_ins = 2;
    t.out = tensor(&t, "y", dt, 2, os, sa, 0, NULL);
    kiln_op_options o = opts();
    o.axis = c == 3 ? 2 : 1;
    o.activation = c == 1 ? KILN_ACT_RELU : KILN_ACT_NONE;
    kiln_status s = finish(&t, KILN_OP_CONCATENATION, &o);
    if (c == 0) EXPECT_REFUSAL(&t, s, KILN_ERR_UNSUPPORTED, "quantization");
    if (c == 1) EXPECT_REFUSAL(&t, s, KILN_ERR_UNSUPPORTED, "activation");
    if (c == 2) EXPECT_REFUSAL(&t, s, KILN_ERR_FORMAT, "dimension 0");
    if (c == 3) EXPECT_REFUSAL(&t, s, KILN_ERR_FORMAT, "axis 2");
    end(&t);
  }
}

/* ---- RESHAPE, SQUEEZE ---- */

static void test_reshape_op(void) {
  const int32_t is[3] = {2, 3, 4}, os[2] = {4, 6}, ss[1] = {2};
  const int32_t from_tensor[2] = {-1, 6}, bad_count[2] = {5, 5}, two_stretch[2] = {-1, -1};
  for (int c = 0; c < 6; c++) {
    one_op t;
    begin(&t);
    REQUIRE(t.m);
    t.ins[0] = tensor(&t, "x", KILN_I8, 3, is, 0.5f, 1, NULL);
    t.n_ins = 1;
    kiln_op_options o = opts();
    const int32_t *shape = c == 2 ? bad_count : c == 3 ? two_stretch : from_tensor;
    if (c == 1) {
      o.new_shape_count = 2; /* from the options */
      o.new_shape[0] = 4, o.new_shape[1] = -1;
    } else {
      t.ins[1] = tensor(&t, "shape", KILN_I32, 1, ss, 0, 0, c == 4 ? NULL : shape);
      t.n_ins = 2;
    }
    t.out = tensor(&t, "y", KILN_I8, 2, os, 0.5f, c == 5 ? 2 : 1, NULL);
    kiln_status s = finish(&t, KILN_OP_RESHAPE, &o);
    if (c <= 1) {
      CHECK_MSG(s == KILN_OK, "case %d: %s", c, t.err.msg);
      if (s == KILN_OK) {
        kiln_tensor_view in = kiln_interp_input(t.it, 0);
        for (int i = 0; i < 24; i++) ((int8_t *)in.data)[i] = (int8_t)(i * 5 - 60);
        CHECK(kiln_interp_invoke(t.it, &t.err) == KILN_OK);
        CHECK(memcmp(kiln_interp_output(t.it, 0).data, in.data, 24) == 0);
      }
    }
    if (c == 2) EXPECT_REFUSAL(&t, s, KILN_ERR_FORMAT, "25 elements");
    if (c == 3) EXPECT_REFUSAL(&t, s, KILN_ERR_FORMAT, "more than one -1");
    if (c == 4) EXPECT_REFUSAL(&t, s, KILN_ERR_UNSUPPORTED, "not constant");
    if (c == 5) EXPECT_REFUSAL(&t, s, KILN_ERR_UNSUPPORTED, "quantization");
    end(&t);
  }
}

static void test_squeeze_op(void) {
  const int32_t is[5] = {1, 3, 1, 1, 2};
  const struct {
    int32_t count, dims[3], out_rank, out_shape[4];
    kiln_status status;
  } cases[] = {
      {0, {0}, 2, {3, 2}, KILN_OK},
      {2, {-2, 0}, 3, {3, 1, 2}, KILN_OK},
      {3, {2, 2, -3}, 4, {1, 3, 1, 2}, KILN_OK},
      {1, {1}, 4, {1, 1, 1, 2}, KILN_ERR_FORMAT},
      {1, {5}, 4, {3, 1, 1, 2}, KILN_ERR_FORMAT},
  };
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    one_op t;
    begin(&t);
    REQUIRE(t.m);
    t.ins[0] = tensor(&t, "x", KILN_F32, 5, is, 0, 0, NULL);
    t.n_ins = 1;
    t.out = tensor(&t, "y", KILN_F32, cases[c].out_rank, cases[c].out_shape, 0, 0, NULL);
    kiln_op_options o = opts();
    o.squeeze_dims_count = cases[c].count;
    memcpy(o.squeeze_dims, cases[c].dims, sizeof cases[c].dims);
    kiln_status s = finish(&t, KILN_OP_SQUEEZE, &o);
    if (cases[c].status == KILN_OK) {
      CHECK_MSG(s == KILN_OK, "case %zu: %s", c, t.err.msg);
      if (s == KILN_OK) {
        kiln_tensor_view in = kiln_interp_input(t.it, 0);
        for (int i = 0; i < 6; i++) ((float *)in.data)[i] = (float)i - 2.5f;
        CHECK(kiln_interp_invoke(t.it, &t.err) == KILN_OK);
        CHECK(memcmp(kiln_interp_output(t.it, 0).data, in.data, 24) == 0);
      }
    } else {
      EXPECT_REFUSAL(&t, s, cases[c].status, "cannot squeeze");
    }
    end(&t);
  }
}

/* ---- PAD, PADV2 ---- */

static void test_pad_op(void) {
  const int32_t is[2] = {2, 3}, os[2] = {3, 6}, ps[2] = {2, 2}, one = 1;
  const int32_t pads32[4] = {1, 0, 2, 1};
  const int64_t pads64[4] = {1, 0, 2, 1};
  const int8_t value = -100;
  for (int c = 0; c < 3; c++) {
    one_op t;
    begin(&t);
    REQUIRE(t.m);
    t.ins[0] = tensor(&t, "x", KILN_I8, 2, is, 0.1f, -20, NULL);
    if (c == 1)
      t.ins[1] = kiln_model_add_tensor(t.m, "p", KILN_I64, 2, ps, NULL, pads64, &t.err);
    else
      t.ins[1] = tensor(&t, "p", KILN_I32, 2, ps, 0, 0, pads32);
    t.n_ins = 2;
    if (c == 2) {
      t.ins[2] = tensor(&t, "v", KILN_I8, 0, &one, 0.1f, -20, &value);
      t.n_ins = 3;
    }
    t.out = tensor(&t, "y", KILN_I8, 2, os, 0.1f, -20, NULL);
    kiln_status s = finish(&t, c == 2 ? KILN_OP_PADV2 : KILN_OP_PAD, NULL);
    CHECK_MSG(s == KILN_OK, "case %d: %s", c, t.err.msg);
    if (s != KILN_OK) {
      end(&t);
      continue;
    }
    kiln_tensor_view in = kiln_interp_input(t.it, 0);
    for (int i = 0; i < 6; i++) ((int8_t *)in.data)[i] = (int8_t)(i + 1);
    CHECK(kiln_interp_invoke(t.it, &t.err) == KILN_OK);
    const int8_t *y = kiln_interp_output(t.it, 0).data;
    const int8_t p = c == 2 ? value : -20; /* PAD pads with the zero point */
    const int8_t want[18] = {p, p, p, p, p, p, p, p, 1, 2, 3, p, p, p, 4, 5, 6, p};
    CHECK(memcmp(y, want, 18) == 0);
    end(&t);
  }
}

static void test_pad_refusals(void) {
  const int32_t is[2] = {2, 3}, os[2] = {3, 6}, ps[2] = {2, 2}, ps3[2] = {3, 2}, one = 1;
  const int32_t negative[4] = {1, 0, -1, 1}, pads[6] = {1, 0, 2, 1, 0, 0};
  const int8_t value = 5;
  for (int c = 0; c < 4; c++) {
    one_op t;
    begin(&t);
    REQUIRE(t.m);
    t.ins[0] = tensor(&t, "x", KILN_I8, 2, is, 0.1f, 0, NULL);
    t.ins[1] = tensor(&t, "p", KILN_I32, 2, c == 2 ? ps3 : ps, 0, 0,
                      c == 0   ? negative
                      : c == 1 ? NULL
                               : pads);
    t.n_ins = 2;
    if (c == 3) {
      t.ins[2] = tensor(&t, "v", KILN_I8, 0, &one, 0.2f, 0, &value);
      t.n_ins = 3;
    }
    t.out = tensor(&t, "y", KILN_I8, 2, os, 0.1f, 0, NULL);
    kiln_status s = finish(&t, c == 3 ? KILN_OP_PADV2 : KILN_OP_PAD, NULL);
    if (c == 0) EXPECT_REFUSAL(&t, s, KILN_ERR_FORMAT, "invalid");
    if (c == 1) EXPECT_REFUSAL(&t, s, KILN_ERR_UNSUPPORTED, "not constant");
    if (c == 2) EXPECT_REFUSAL(&t, s, KILN_ERR_FORMAT, "[2, 2]");
    if (c == 3) EXPECT_REFUSAL(&t, s, KILN_ERR_FORMAT, "quantization");
    end(&t);
  }
}

/* ---- RESIZE ---- */

static void test_resize_ops(void) {
  test_rng r = {4};
  const int32_t is[4] = {1, 3, 4, 2}, os[4] = {1, 5, 9, 2}, ss[1] = {2}, size[2] = {5, 9};
  for (int c = 0; c < 8; c++) {
    const int nearest = c >= 4, align = c & 1, half = (c >> 1) & 1;
    one_op t;
    begin(&t);
    REQUIRE(t.m);
    t.ins[0] = tensor(&t, "x", KILN_I8, 4, is, 0.1f, 3, NULL);
    t.ins[1] = tensor(&t, "size", KILN_I32, 1, ss, 0, 0, size);
    t.n_ins = 2;
    t.out = tensor(&t, "y", KILN_I8, 4, os, 0.1f, 3, NULL);
    kiln_op_options o = opts();
    o.align_corners = align;
    o.half_pixel_centers = half;
    kiln_status s =
        finish(&t, nearest ? KILN_OP_RESIZE_NEAREST_NEIGHBOR : KILN_OP_RESIZE_BILINEAR, &o);
    if (!nearest && align && half) {
      EXPECT_REFUSAL(&t, s, KILN_ERR_FORMAT, "cannot both");
      end(&t);
      continue;
    }
    CHECK_MSG(s == KILN_OK, "case %d: %s", c, t.err.msg);
    if (s == KILN_OK) {
      kiln_tensor_view in = kiln_interp_input(t.it, 0);
      fill_random(&r, in.data, in.bytes);
      CHECK(kiln_interp_invoke(t.it, &t.err) == KILN_OK);
      int8_t want[90];
      if (nearest)
        kiln_resize_nearest_ref(is, 1, in.data, 5, 9, align, half, want);
      else
        kiln_s8_resize_bilinear_ref(is, in.data, 5, 9, align, half, want);
      CHECK(memcmp(kiln_interp_output(t.it, 0).data, want, 90) == 0);
    }
    end(&t);
  }
}

static void test_resize_refusals(void) {
  const int32_t is[4] = {1, 3, 3, 1}, ss[1] = {2}, big[2] = {2047, 3}, os_big[4] = {1, 2047, 3, 1};
  const int32_t os[4] = {1, 6, 6, 1}, size[2] = {6, 6};
  for (int c = 0; c < 3; c++) {
    one_op t;
    begin(&t);
    REQUIRE(t.m);
    t.ins[0] = tensor(&t, "x", KILN_I8, 4, is, 0.1f, 0, NULL);
    t.ins[1] = tensor(&t, "size", KILN_I32, 1, ss, 0, 0, c == 0 ? NULL : c == 1 ? big : size);
    t.n_ins = 2;
    t.out = tensor(&t, "y", KILN_I8, 4, c == 1 ? os_big : os, c == 2 ? 0.2f : 0.1f, 0, NULL);
    kiln_op_options o = opts();
    o.half_pixel_centers = true;
    kiln_status s = finish(&t, KILN_OP_RESIZE_BILINEAR, &o);
    if (c == 0) EXPECT_REFUSAL(&t, s, KILN_ERR_UNSUPPORTED, "not constant");
    if (c == 1) EXPECT_REFUSAL(&t, s, KILN_ERR_UNSUPPORTED, "fixed-point");
    if (c == 2) EXPECT_REFUSAL(&t, s, KILN_ERR_UNSUPPORTED, "quantization");
    end(&t);
  }
}

/* ---- QUANTIZE, DEQUANTIZE ---- */

static void test_quantize_ops(void) {
  const int32_t shape[2] = {2, 3};
  /* float -> uint8 */
  one_op t;
  begin(&t);
  REQUIRE(t.m);
  t.ins[0] = tensor(&t, "x", KILN_F32, 2, shape, 0, 0, NULL);
  t.n_ins = 1;
  t.out = tensor(&t, "y", KILN_U8, 2, shape, 0.5f, 10, NULL);
  kiln_status s = finish(&t, KILN_OP_QUANTIZE, NULL);
  CHECK_MSG(s == KILN_OK, "%s", t.err.msg);
  if (s == KILN_OK) {
    const float x[6] = {0.0f, 0.25f, -0.25f, 0.75f, 1000.0f, -6.0f};
    memcpy(kiln_interp_input(t.it, 0).data, x, sizeof x);
    CHECK(kiln_interp_invoke(t.it, &t.err) == KILN_OK);
    const uint8_t want[6] = {10, 11, 9, 12, 255, 0};
    CHECK(memcmp(kiln_interp_output(t.it, 0).data, want, 6) == 0);
  }
  end(&t);
  /* int8 -> uint8 with the same scale: a shift of the zero point */
  begin(&t);
  REQUIRE(t.m);
  t.ins[0] = tensor(&t, "x", KILN_I8, 2, shape, 0.5f, -3, NULL);
  t.n_ins = 1;
  t.out = tensor(&t, "y", KILN_U8, 2, shape, 0.5f, 125, NULL);
  s = finish(&t, KILN_OP_QUANTIZE, NULL);
  CHECK_MSG(s == KILN_OK, "%s", t.err.msg);
  if (s == KILN_OK) {
    const int8_t x[6] = {-128, -3, 0, 5, 127, 100};
    memcpy(kiln_interp_input(t.it, 0).data, x, sizeof x);
    CHECK(kiln_interp_invoke(t.it, &t.err) == KILN_OK);
    const uint8_t want[6] = {0, 125, 128, 133, 255, 228};
    CHECK(memcmp(kiln_interp_output(t.it, 0).data, want, 6) == 0);
  }
  end(&t);
  /* refused: no output quantization; float output */
  for (int c = 0; c < 2; c++) {
    begin(&t);
    REQUIRE(t.m);
    t.ins[0] = tensor(&t, "x", KILN_F32, 2, shape, 0, 0, NULL);
    t.n_ins = 1;
    t.out = tensor(&t, "y", c ? KILN_F32 : KILN_I8, 2, shape, 0, 0, NULL);
    s = finish(&t, KILN_OP_QUANTIZE, NULL);
    EXPECT_REFUSAL(&t, s, c ? KILN_ERR_UNSUPPORTED : KILN_ERR_FORMAT,
                   c ? "float32" : "no quantization");
    end(&t);
  }
}

static void test_dequantize_ops(void) {
  const int32_t shape[2] = {2, 3};
  /* per-axis int8 along dimension 1 */
  one_op t;
  begin(&t);
  REQUIRE(t.m);
  float scales[3] = {0.5f, 0.25f, 2.0f};
  int32_t zps[3] = {0, 1, -1};
  kiln_quant q = {3, 1, scales, zps};
  t.ins[0] = kiln_model_add_tensor(t.m, "x", KILN_I8, 2, shape, &q, NULL, &t.err);
  t.n_ins = 1;
  t.out = tensor(&t, "y", KILN_F32, 2, shape, 0, 0, NULL);
  kiln_status s = finish(&t, KILN_OP_DEQUANTIZE, NULL);
  CHECK_MSG(s == KILN_OK, "%s", t.err.msg);
  if (s == KILN_OK) {
    const int8_t x[6] = {2, 5, 3, -4, -7, 127};
    memcpy(kiln_interp_input(t.it, 0).data, x, sizeof x);
    CHECK(kiln_interp_invoke(t.it, &t.err) == KILN_OK);
    const float want[6] = {1.0f, 1.0f, 8.0f, -2.0f, -2.0f, 256.0f};
    CHECK(memcmp(kiln_interp_output(t.it, 0).data, want, sizeof want) == 0);
  }
  end(&t);
  /* float16 */
  begin(&t);
  REQUIRE(t.m);
  t.ins[0] = tensor(&t, "x", KILN_F16, 2, shape, 0, 0, NULL);
  t.n_ins = 1;
  t.out = tensor(&t, "y", KILN_F32, 2, shape, 0, 0, NULL);
  s = finish(&t, KILN_OP_DEQUANTIZE, NULL);
  CHECK_MSG(s == KILN_OK, "%s", t.err.msg);
  if (s == KILN_OK) {
    const uint16_t x[6] = {0x3c00, 0xc000, 0x0001, 0x7c00, 0x7bff, 0x8000};
    memcpy(kiln_interp_input(t.it, 0).data, x, sizeof x);
    CHECK(kiln_interp_invoke(t.it, &t.err) == KILN_OK);
    const float *y = kiln_interp_output(t.it, 0).data;
    CHECK(y[0] == 1.0f && y[1] == -2.0f && y[2] == ldexpf(1.0f, -24) && isinf(y[3]) &&
          y[4] == 65504.0f && y[5] == 0.0f && signbit(y[5]));
  }
  end(&t);
  /* refused: int8 without quantization */
  begin(&t);
  REQUIRE(t.m);
  t.ins[0] = tensor(&t, "x", KILN_I8, 2, shape, 0, 0, NULL);
  t.n_ins = 1;
  t.out = tensor(&t, "y", KILN_F32, 2, shape, 0, 0, NULL);
  s = finish(&t, KILN_OP_DEQUANTIZE, NULL);
  EXPECT_REFUSAL(&t, s, KILN_ERR_FORMAT, "no quantization");
  end(&t);
}

int main(void) {
  RUN(test_avg_pool_op);
  RUN(test_pool_refusals);
  RUN(test_mean_op);
  RUN(test_mean_refusals);
  RUN(test_concat_op);
  RUN(test_concat_refusals);
  RUN(test_reshape_op);
  RUN(test_squeeze_op);
  RUN(test_pad_op);
  RUN(test_pad_refusals);
  RUN(test_resize_ops);
  RUN(test_resize_refusals);
  RUN(test_quantize_ops);
  RUN(test_dequantize_ops);
  return test_summary();
}
