/*
 * Tests of the optimized DEPTHWISE_CONV_2D (runtime/fast_dwconv.c,
 * kernels/x86/dw_*): one-op models run through the interpreter with the
 * default kernels at 1, 2 and 3 threads must match the reference kernels
 * (int8 bit for bit, float32 within 1e-5 relative), once per ISA variant
 * (a child process per KILN_ISA_MASK: with and without the VNNI bits, so
 * that int8 3x3 runs both the dot4 kernels and the others). The sweep
 * covers 3x3 and 5x5 filters, strides 1-3, SAME and VALID padding, channel
 * counts around the vector widths, odd and 1-pixel spatial sizes, batch 2,
 * every fused activation,
 * zero points at their limits, per-axis weight scales from 1e-6 to 1 and
 * saturating outputs; and checks that the cases the fast path does not take
 * (depth multiplier 2, dilation, other filter sizes) still match.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "kernels/dwconv.h"
#include "test_fast_dw_harness.h"

typedef struct dw_case {
  kiln_dtype dt;
  int32_t batch, h, w, c;
  int32_t kh, kw, stride, mult, dilation;
  kiln_padding pad;
  kiln_activation act;
  bool bias, per_axis;
  int32_t in_zp, out_zp;
  float in_scale, out_scale;
  float w_scale_lo, w_scale_hi; /* per-axis weight scales, log-uniform */
  int32_t bias_range;           /* int8: |bias| <= bias_range */
  bool expect_fast;
} dw_case;

static int32_t out_size(kiln_padding pad, int32_t in, int32_t k, int32_t stride, int32_t dil) {
  const int32_t span = (k - 1) * dil + 1;
  return pad == KILN_PAD_SAME ? (in + stride - 1) / stride : (in - span + stride) / stride;
}

static float log_uniform(test_rng *rng, float lo, float hi) {
  return expf(test_rand_float(rng, logf(lo), logf(hi)));
}

static void run_case(const dw_case *c, test_rng *rng) {
  const int32_t oc = c->c * c->mult;
  const int32_t oh = out_size(c->pad, c->h, c->kh, c->stride, c->dilation);
  const int32_t ow = out_size(c->pad, c->w, c->kw, c->stride, c->dilation);
  if (oh < 1 || ow < 1) return;
  char label[200];
  snprintf(label, sizeof label, "%s b%d %dx%dx%d k%dx%d s%d m%d d%d %s act%d zp %d/%d bias%d",
           kiln_dtype_name(c->dt), (int)c->batch, (int)c->h, (int)c->w, (int)c->c, (int)c->kh,
           (int)c->kw, (int)c->stride, (int)c->mult, (int)c->dilation,
           c->pad == KILN_PAD_SAME ? "SAME" : "VALID", (int)c->act, (int)c->in_zp, (int)c->out_zp,
           (int)c->bias);

  const size_t n_in = (size_t)c->batch * c->h * c->w * c->c;
  const size_t n_f = (size_t)c->kh * c->kw * oc;
  const size_t n_out = (size_t)c->batch * oh * ow * oc;
  const bool q = c->dt == KILN_I8;
  const size_t esize = q ? 1 : 4;
  void *in = malloc(n_in * esize), *filter = malloc(n_f * esize);
  void *bias = malloc((size_t)oc * 4);
  float *w_scales = malloc((size_t)oc * sizeof(float));
  int32_t *w_zps = calloc((size_t)oc, sizeof(int32_t));
  REQUIRE(in && filter && bias && w_scales && w_zps);
  if (q) {
    fx_fill_s8(rng, in, n_in, -128, 127);
    fx_fill_s8(rng, filter, n_f, -128, 127);
    for (int32_t i = 0; i < oc; i++) {
      ((int32_t *)bias)[i] = test_rand_int(rng, -c->bias_range, c->bias_range);
      w_scales[i] = log_uniform(rng, c->w_scale_lo, c->w_scale_hi);
    }
  } else {
    fx_fill_f32(rng, in, n_in, -1.0f, 1.0f);
    for (size_t i = 0; i < n_f; i++) ((float *)filter)[i] = test_rand_float(rng, -1.0f, 1.0f);
    for (int32_t i = 0; i < oc; i++) ((float *)bias)[i] = test_rand_float(rng, -1.0f, 1.0f);
  }

  kiln_model *m = NULL;
  kiln_error err;
  REQUIRE(kiln_model_new(&m, &err) == KILN_OK);
  const int32_t in_shape[4] = {c->batch, c->h, c->w, c->c};
  const int32_t f_shape[4] = {1, c->kh, c->kw, oc};
  const int32_t out_shape[4] = {c->batch, oh, ow, oc};
  float *b_scales = malloc((size_t)oc * sizeof(float));
  REQUIRE(b_scales);
  for (int32_t i = 0; i < oc; i++) b_scales[i] = c->in_scale * w_scales[i];
  const int32_t wq = q ? (c->per_axis ? oc : 1) : 0;
  const int32_t ti = fx_tensor(m, "in", c->dt, 4, in_shape, q, &c->in_scale, &c->in_zp, 0, NULL);
  const int32_t tf = fx_tensor(m, "filter", c->dt, 4, f_shape, wq, w_scales, w_zps, 3, filter);
  const int32_t tb = c->bias ? fx_tensor(m, "bias", q ? KILN_I32 : KILN_F32, 1, &oc, q ? wq : 0,
                                         b_scales, w_zps, 0, bias)
                             : -1;
  const int32_t to =
      fx_tensor(m, "out", c->dt, 4, out_shape, q, &c->out_scale, &c->out_zp, 0, NULL);
  kiln_op_options o;
  memset(&o, 0, sizeof o);
  o.type = KILN_OPTS_DEPTHWISE_CONV2D;
  o.padding = c->pad;
  o.stride_h = o.stride_w = c->stride;
  o.dilation_h = o.dilation_w = c->dilation;
  o.depth_multiplier = c->mult;
  o.activation = c->act;
  const int32_t ins[3] = {ti, tf, tb};
  REQUIRE(kiln_model_add_op(m, KILN_OP_DEPTHWISE_CONV_2D, NULL, ins, 3, &to, 1, &o, NULL, 0,
                            &err) >= 0);
  REQUIRE(kiln_model_set_io(m, &ti, 1, &to, 1, &err) == KILN_OK);
  const void *inputs[1] = {in};
  const fx_outcome r = fx_check(m, inputs, c->dt, n_out * esize, label);
  if (r.ran && fx_fast_expected())
    CHECK_MSG(r.fast == c->expect_fast, "%s: fast path %s, expected %s", label,
              r.fast ? "taken" : "not taken", c->expect_fast ? "taken" : "not taken");
  kiln_model_free(m);
  free(in);
  free(filter);
  free(bias);
  free(w_scales);
  free(w_zps);
  free(b_scales);
}

static dw_case base_case(kiln_dtype dt) {
  dw_case c;
  memset(&c, 0, sizeof c);
  c.dt = dt;
  c.batch = 1;
  c.kh = c.kw = 3;
  c.stride = c.mult = c.dilation = 1;
  c.pad = KILN_PAD_SAME;
  c.bias = true;
  c.per_axis = true;
  c.in_zp = 3;
  c.out_zp = -5;
  c.in_scale = 0.05f;
  c.out_scale = 0.02f;
  c.w_scale_lo = 1e-6f;
  c.w_scale_hi = 1.0f;
  c.bias_range = 1 << 16;
  c.expect_fast = true;
  return c;
}

/* Every filter size, stride, padding, size and channel count. */
static void test_sweep(void) {
  static const int32_t sizes[][2] = {{1, 1}, {2, 3}, {5, 7}, {9, 9}, {12, 13}};
  static const int32_t channels[] = {1, 7, 8, 15, 16, 17, 33, 70};
  static const kiln_activation acts[] = {KILN_ACT_NONE, KILN_ACT_RELU, KILN_ACT_RELU6,
                                         KILN_ACT_RELU_N1_TO_1};
  static const int32_t zps[][2] = {{-128, 127}, {127, -128}, {0, 0}, {-7, 11}};
  test_rng rng = {0x1234567};
  int32_t n = 0;
  for (int32_t dt = 0; dt < 2; dt++)
    for (int32_t k = 3; k <= 5; k += 2)
      for (int32_t stride = 1; stride <= 3; stride++)
        for (int32_t pad = 0; pad < 2; pad++)
          for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++)
            for (size_t ch = 0; ch < sizeof channels / sizeof *channels; ch++, n++) {
              dw_case c = base_case(dt ? KILN_I8 : KILN_F32);
              c.kh = c.kw = k;
              c.stride = stride;
              c.pad = pad ? KILN_PAD_VALID : KILN_PAD_SAME;
              c.h = sizes[s][0];
              c.w = sizes[s][1];
              c.c = channels[ch];
              c.act = acts[n % 4];
              c.batch = 1 + n % 2;
              c.bias = n % 5 != 0;
              c.in_zp = zps[n % 4][0];
              c.out_zp = zps[(n / 4) % 4][1];
              run_case(&c, &rng);
            }
}

/* Requantization extremes: multipliers from 2^-20 to above 1 (left
 * shifts), outputs that saturate, huge biases whose sums wrap. */
static void test_requantization(void) {
  test_rng rng = {0xabcdef};
  const float out_scales[] = {1e-4f, 3e-3f, 0.02f, 1.0f, 40.0f};
  for (size_t i = 0; i < sizeof out_scales / sizeof *out_scales; i++)
    for (int32_t per_axis = 0; per_axis < 2; per_axis++) {
      dw_case c = base_case(KILN_I8);
      c.h = 6;
      c.w = 11;
      c.c = 40;
      c.out_scale = out_scales[i];
      c.per_axis = per_axis;
      c.w_scale_lo = per_axis ? 1e-6f : 0.01f;
      c.w_scale_hi = per_axis ? 1.0f : 0.01f;
      c.act = (kiln_activation)(i % 4 == 2 ? KILN_ACT_RELU6 : KILN_ACT_NONE);
      run_case(&c, &rng);
      c.bias_range = INT32_MAX; /* accumulators wrap */
      c.kh = c.kw = 5;
      run_case(&c, &rng);
    }
}

/* Shapes of MobileNet V2 layers (smaller spatially to keep the test fast),
 * with its small weight scales (int8: the dot4 kernels' fast
 * requantization), fused RELU6 and no activation. */
static void test_mobilenet_shapes(void) {
  test_rng rng = {77};
  static const int32_t shapes[][4] = {
      {24, 24, 96, 2}, {19, 19, 144, 1}, {10, 10, 192, 2}, {7, 7, 576, 1}, {5, 5, 960, 1}};
  for (int32_t dt = 0; dt < 2; dt++)
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++)
      for (int32_t relu6 = 0; relu6 < 2; relu6++) {
        dw_case c = base_case(dt ? KILN_I8 : KILN_F32);
        c.h = shapes[i][0];
        c.w = shapes[i][1];
        c.c = shapes[i][2];
        c.stride = shapes[i][3];
        c.act = relu6 ? KILN_ACT_RELU6 : KILN_ACT_NONE;
        c.w_scale_lo = 0.001f;
        c.w_scale_hi = 0.05f;
        run_case(&c, &rng);
      }
}

/* What the fast path leaves to the reference kernel. */
static void test_fallbacks(void) {
  test_rng rng = {99};
  for (int32_t dt = 0; dt < 2; dt++) {
    dw_case c = base_case(dt ? KILN_I8 : KILN_F32);
    c.h = 7;
    c.w = 8;
    c.c = 5;
    c.expect_fast = false;
    c.mult = 2;
    run_case(&c, &rng);
    c.mult = 1;
    c.dilation = 2;
    run_case(&c, &rng);
    c.dilation = 1;
    c.kw = 5;
    run_case(&c, &rng);
    c.kh = c.kw = 7;
    run_case(&c, &rng);
    c.kh = c.kw = 1;
    run_case(&c, &rng);
  }
}

/* The packing puts channel c of tap t at tile c / T, row 1 + t, lane c % T,
 * and folds input_offset * sum(taps) into the bias modulo 2^32. */
static void test_pack(void) {
  int8_t f[9 * 3];
  for (int32_t i = 0; i < 27; i++) f[i] = (int8_t)(i * 37 - 128);
  const int32_t bias[3] = {INT32_MAX, -5, 0}, mult[3] = {1 << 30, 1 << 30, 0},
                shift[3] = {-31, 3, 0};
  int32_t packed[2 * 15 * 2];
  REQUIRE(kiln_dw_packed_s8_count(3, 3, 2) == 2 * 15 * 2);
  kiln_dw_pack_s8(3, 3, 2, f, bias, 100, mult, shift, packed);
  for (int32_t ch = 0; ch < 3; ch++) {
    const int32_t *t = packed + (ch / 2) * 15 * 2 + ch % 2;
    int64_t sum = 0;
    for (int32_t tap = 0; tap < 9; tap++) {
      sum += f[tap * 3 + ch];
      CHECK(t[(1 + tap) * 2] == (int32_t)(uint16_t)(int16_t)f[tap * 3 + ch]);
    }
    CHECK(t[0] == (int32_t)(uint32_t)((uint64_t)(int64_t)bias[ch] + (uint64_t)(100 * sum)));
    CHECK(t[10 * 2] == mult[ch]);
    CHECK(t[11 * 2] == (shift[ch] > 0 ? shift[ch] : 0));
    CHECK(t[12 * 2] == (shift[ch] < 0 ? -shift[ch] : 0));
    CHECK(t[13 * 2] == (shift[ch] == -31 ? INT32_MAX : 0));
  }
  /* The padding lane of the second tile is zero. */
  for (int32_t row = 0; row < 15; row++) CHECK(packed[15 * 2 + row * 2 + 1] == 0);
}

static void run_all(void) {
  RUN(test_pack);
  RUN(test_sweep);
  RUN(test_requantization);
  RUN(test_mobilenet_shapes);
  RUN(test_fallbacks);
}

int main(int argc, char **argv) {
  (void)argc;
  static const uint32_t variants[] = {KILN_ISA_AVX512 | KILN_ISA_AVX512VNNI,
                                      KILN_ISA_AVX512,
                                      KILN_ISA_AVX2 | KILN_ISA_AVXVNNI,
                                      KILN_ISA_AVX2,
                                      KILN_ISA_NEON,
                                      0};
  return fx_main(argv, variants, run_all);
}
