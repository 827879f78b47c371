/*
 * Tests of the int8 3x3 depthwise kernels with the dot4 layout
 * (kernels/dwconv.h, kernels/x86/dw_s8_3x3_*): each kernel this CPU can run
 * is called directly on random layers and must match
 * kiln_s8_depthwise_conv2d_ref bit for bit, with the output computed in
 * pieces (row ranges of odd and even lengths, channel ranges on tile
 * boundaries) so that row pairing and channel tails are crossed. The
 * requantization is driven through both forms of the layout: the fast one
 * (shifts in [-23, 0], small biases; with the clamp the whole int8 range or
 * narrower) and the general one (left shifts, shifts down to -31, biases whose
 * sums wrap), with multipliers that make rounding ties frequent. Also checks
 * which form the packing picks.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu.h"
#include "kernels/dwconv.h"
#include "kernels/ref/conv_ref.h"
#include "testutil.h"

/* How a layer's requantization parameters are drawn. */
typedef enum rq_kind {
  RQ_FAST_FULL,  /* fast form, clamp = int8 range */
  RQ_FAST_RELU6, /* fast form, narrower clamp */
  RQ_FAST_TIES,  /* fast form, multiplier 2^30 and small shifts: many ties */
  RQ_GENERAL,    /* left shifts and shifts below -23 */
  RQ_GEN_TIES,   /* general form (a left shift), multiplier 2^30: many ties */
  RQ_WRAP        /* general form: biases near the int32 limits */
} rq_kind;

typedef struct layer {
  int32_t h, w, c, stride, pad_h, pad_w, out_h, out_w;
  int32_t in_zp, out_zp;
  rq_kind kind;
} layer;

static void draw_requant(test_rng *rng, const layer *l, int32_t *mult, int32_t *shift,
                         int32_t *bias) {
  for (int32_t i = 0; i < l->c; i++) {
    mult[i] = test_rand_int(rng, 1 << 30, INT32_MAX);
    bias[i] = test_rand_int(rng, -(1 << 16), 1 << 16);
    switch (l->kind) {
      case RQ_FAST_FULL:
      case RQ_FAST_RELU6:
        shift[i] = test_rand_int(rng, -23, 0);
        if (i % 7 == 3) mult[i] = 0;
        break;
      case RQ_FAST_TIES:
        mult[i] = 1 << 30;
        shift[i] = test_rand_int(rng, -4, 0);
        break;
      case RQ_GENERAL:
        shift[i] = i % 3 == 0 ? test_rand_int(rng, 1, 6) : test_rand_int(rng, -31, -10);
        break;
      case RQ_GEN_TIES:
        mult[i] = 1 << 30;
        shift[i] = i == 0 ? 1 : test_rand_int(rng, -4, 0);
        break;
      case RQ_WRAP:
        shift[i] = test_rand_int(rng, -31, 2);
        bias[i] = i % 2 ? INT32_MAX - test_rand_int(rng, 0, 1000)
                        : INT32_MIN + test_rand_int(rng, 0, 1000);
        break;
    }
  }
}

/* Runs the kernel over the whole output in pieces. */
static void run_pieces(const kiln_dw_dot4_kernel *k, const kiln_dw_s8_params *p,
                       const int8_t *in, int8_t *out, test_rng *rng) {
  const int32_t oh = p->s.out_h, c = p->s.channels;
  const int32_t n_tiles = (c + k->tile - 1) / k->tile;
  const int32_t t_mid = test_rand_int(rng, 0, n_tiles);
  const int32_t c_mid = t_mid * k->tile < c ? t_mid * k->tile : c;
  for (int32_t part = 0; part < 2; part++) {
    const int32_t c0 = part ? c_mid : 0, c1 = part ? c : c_mid;
    if (c0 >= c1) continue;
    for (int32_t oy = 0; oy < oh;) {
      const int32_t n = test_rand_int(rng, 1, 5);
      const int32_t oy1 = oy + n < oh ? oy + n : oh;
      k->s8_3x3(p, in, out, oy, oy1, c0, c1);
      oy = oy1;
    }
  }
}

static void check_layer(const kiln_dw_dot4_kernel *k, const layer *l, test_rng *rng) {
  const size_t n_in = (size_t)l->h * l->w * l->c, n_out = (size_t)l->out_h * l->out_w * l->c;
  int8_t *in = malloc(n_in), *filter = malloc((size_t)9 * l->c);
  int8_t *want = malloc(n_out), *got = malloc(n_out), *zp_row = malloc((size_t)l->w * l->c);
  int32_t *bias = malloc((size_t)l->c * 4), *mult = malloc((size_t)l->c * 4);
  int32_t *shift = malloc((size_t)l->c * 4);
  const size_t packed_bytes = kiln_dw_packed_s8_dot4_count(l->c, k->tile) * 4;
  int32_t *packed = aligned_alloc(64, (packed_bytes + 63) / 64 * 64);
  REQUIRE(in && filter && want && got && zp_row && bias && mult && shift && packed);
  for (size_t i = 0; i < n_in; i++) in[i] = (int8_t)test_rand_int(rng, -128, 127);
  for (int32_t i = 0; i < 9 * l->c; i++) filter[i] = (int8_t)test_rand_int(rng, -128, 127);
  draw_requant(rng, l, mult, shift, bias);
  memset(zp_row, l->in_zp, (size_t)l->w * l->c);

  kiln_conv_params rp;
  memset(&rp, 0, sizeof rp);
  rp.batch = 1;
  rp.in_h = l->h;
  rp.in_w = l->w;
  rp.in_c = rp.out_c = l->c;
  rp.out_h = l->out_h;
  rp.out_w = l->out_w;
  rp.filter_h = rp.filter_w = 3;
  rp.depth_multiplier = 1;
  rp.stride_h = rp.stride_w = l->stride;
  rp.dilation_h = rp.dilation_w = 1;
  rp.pad_h = l->pad_h;
  rp.pad_w = l->pad_w;
  rp.input_offset = -l->in_zp;
  rp.output_offset = l->out_zp;
  rp.multiplier = mult;
  rp.shift = shift;
  rp.act_min = l->kind == RQ_FAST_RELU6 ? l->out_zp : -128;
  rp.act_max = l->kind == RQ_FAST_RELU6 ? (l->out_zp + 60 < 127 ? l->out_zp + 60 : 127) : 127;
  kiln_s8_depthwise_conv2d_ref(&rp, in, filter, bias, want);

  kiln_dw_s8_params p;
  memset(&p, 0, sizeof p);
  p.s = (kiln_dw_shape){l->h, l->w, l->c, l->out_h, l->out_w, l->stride, l->stride,
                        l->pad_h, l->pad_w, 3};
  p.rq_fast = kiln_dw_pack_s8_dot4(l->c, k->tile, filter, bias, -l->in_zp, mult, shift,
                                   l->out_zp, packed);
  const bool expect_fast = l->kind <= RQ_FAST_TIES;
  CHECK_MSG(p.rq_fast == expect_fast, "kind %d: packed the %s form", (int)l->kind,
            p.rq_fast ? "fast" : "general");
  p.packed = packed;
  p.zp_row = zp_row;
  p.input_zp = l->in_zp;
  p.output_zp = l->out_zp;
  p.act_min = rp.act_min;
  p.act_max = rp.act_max;
  memset(got, 0x5a, n_out);
  run_pieces(k, &p, in, got, rng);
  size_t bad = 0, first = 0;
  for (size_t i = 0; i < n_out; i++)
    if (got[i] != want[i] && bad++ == 0) first = i;
  CHECK_MSG(bad == 0,
            "%dx%dx%d s%d pad %d,%d zp %d/%d kind %d: %zu of %zu differ, first at %zu: %d, "
            "reference %d",
            (int)l->h, (int)l->w, (int)l->c, (int)l->stride, (int)l->pad_h, (int)l->pad_w,
            (int)l->in_zp, (int)l->out_zp, (int)l->kind, bad, n_out, first,
            bad ? got[first] : 0, bad ? want[first] : 0);
  free(in);
  free(filter);
  free(want);
  free(got);
  free(zp_row);
  free(bias);
  free(mult);
  free(shift);
  free(packed);
}

/* Output size and leading padding of SAME (TFLite) or VALID padding. */
static void geometry(int32_t in, int32_t stride, bool same, int32_t *out, int32_t *pad) {
  *out = same ? (in + stride - 1) / stride : (in - 3 + stride) / stride;
  const int32_t total = (*out - 1) * stride + 3 - in;
  *pad = same && total > 0 ? total / 2 : 0;
}

static void test_layers(const kiln_dw_dot4_kernel *k) {
  test_rng rng = {0x5eed + k->isa};
  static const int32_t sizes[][2] = {{1, 1}, {2, 5}, {3, 3}, {6, 9}, {11, 7}, {16, 20}};
  static const int32_t channels[] = {1, 5, 16, 17, 31, 48, 70};
  static const int32_t zps[][2] = {{-128, 127}, {127, -128}, {0, 0}, {-3, 11}, {5, -128}};
  int32_t n = 0;
  for (int32_t stride = 1; stride <= 3; stride++)
    for (int32_t same = 0; same < 2; same++)
      for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++)
        for (size_t ch = 0; ch < sizeof channels / sizeof *channels; ch++, n++) {
          layer l;
          l.h = sizes[s][0];
          l.w = sizes[s][1];
          l.c = channels[ch];
          l.stride = stride;
          geometry(l.h, stride, same, &l.out_h, &l.pad_h);
          geometry(l.w, stride, same, &l.out_w, &l.pad_w);
          if (l.out_h < 1 || l.out_w < 1) continue;
          l.in_zp = zps[n % 5][0];
          l.out_zp = zps[(n / 5) % 5][1];
          for (int32_t kind = RQ_FAST_FULL; kind <= RQ_WRAP; kind++) {
            l.kind = (rq_kind)kind;
            check_layer(k, &l, &rng);
          }
        }
}

/* The fast form needs every nonzero multiplier's shift in [-23, 0] and
 * |bias| + 255 * sum |taps| < 2^29. */
static void test_form_choice(void) {
  int8_t filter[9 * 2];
  for (int32_t i = 0; i < 18; i++) filter[i] = (int8_t)(i % 2 ? -128 : 127);
  const int32_t mult[2] = {1 << 30, 0};
  int32_t shift[2] = {-23, 17}, bias[2] = {(1 << 29) - 1 - 255 * 9 * 127, 5};
  int32_t packed[16 * 16];
  CHECK(kiln_dw_pack_s8_dot4(2, 16, filter, bias, 0, mult, shift, 0, packed));
  bias[0]++;
  CHECK(!kiln_dw_pack_s8_dot4(2, 16, filter, bias, 0, mult, shift, 0, packed));
  bias[0]--;
  shift[0] = 1;
  CHECK(!kiln_dw_pack_s8_dot4(2, 16, filter, bias, 0, mult, shift, 0, packed));
  shift[0] = -24;
  CHECK(!kiln_dw_pack_s8_dot4(2, 16, filter, bias, 0, mult, shift, 0, packed));
  shift[0] = 0;
  CHECK(kiln_dw_pack_s8_dot4(2, 16, filter, NULL, 0, mult, shift, 0, packed));
}

int main(void) {
  RUN(test_form_choice);
  for (const kiln_dw_dot4_kernel *const *k = kiln_dw_dot4_tables; *k; k++) {
    if (((*k)->isa & kiln_cpu_isa()) != (*k)->isa) {
      fprintf(stderr, "-- skipping %s: not available here\n", (*k)->name);
      continue;
    }
    const int before = test_failures;
    test_layers(*k);
    fprintf(stderr, "%s test_layers %s\n", test_failures == before ? "ok  " : "FAIL", (*k)->name);
  }
  return test_summary();
}
