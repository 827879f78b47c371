/*
 * Tests of the optimized ADD, PRELU, AVERAGE_POOL_2D, MAX_POOL_2D and MEAN
 * (kernels/misc_fast.h, kernels/x86/{add,prelu,pool,mean}_fast_*): one-op models
 * run through the interpreter with the default kernels at 1, 2 and 3 threads
 * must match the reference kernels (int8 bit for bit, float32 within 1e-5
 * relative), once per ISA variant (a child process per KILN_ISA_MASK).
 * Shapes have channel counts around the vector widths, odd and 1-pixel
 * spatial sizes, batch 2 and sizes that split into several tasks; int8
 * cases put zero points at their limits and make outputs saturate. Also the
 * vector requantization against the scalar one on operands no model reaches.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "kernels/misc_fast.h"
#include "kernels/quant_math.h"
#include "test_fast_dw_harness.h"

/* ---- ADD ---- */

typedef struct add_shapes {
  int32_t ra, rb;
  int32_t a[6], b[6];
} add_shapes;

static void test_add(void) {
  static const add_shapes shapes[] = {
      {4, 4, {1, 5, 7, 3}, {1, 5, 7, 3}},       /* same shape, odd */
      {4, 4, {2, 33, 31, 33}, {2, 33, 31, 33}}, /* same shape, several tasks */
      {4, 1, {2, 9, 9, 19}, {19}},              /* per-channel */
      {1, 4, {17}, {1, 8, 9, 17}},              /* per-channel, first input */
      {4, 4, {2, 6, 5, 24}, {2, 1, 1, 24}},     /* per image and channel */
      {4, 1, {1, 40, 40, 37}, {1}},             /* scalar */
      {1, 4, {1}, {1, 3, 3, 5}},                /* scalar first */
      {4, 4, {1, 7, 7, 1}, {1, 7, 7, 40}},      /* per pixel */
      {3, 3, {4, 1, 6}, {1, 5, 1}},             /* both broadcast */
      {4, 3, {2, 4, 5, 6}, {4, 1, 6}},          /* lower rank */
      {1, 1, {1}, {1}},                         /* one element */
      {2, 2, {1, 1}, {1, 1}},
      {4, 4, {1, 64, 64, 64}, {1, 64, 64, 64}}, /* large */
  };
  static const kiln_activation acts[] = {KILN_ACT_NONE, KILN_ACT_RELU, KILN_ACT_RELU6,
                                         KILN_ACT_RELU_N1_TO_1};
  /* in1 scale, zp; in2 scale, zp; out scale, zp */
  static const float qs[][3] = {
      {0.05f, 0.05f, 0.1f}, {0.02f, 0.5f, 0.03f}, {1.0f, 1e-3f, 5e-4f}, {0.3f, 0.3f, 2e-3f}};
  static const int32_t zps[][3] = {{0, 0, 0}, {-128, 127, -128}, {127, -128, 127}, {5, -9, 3}};
  test_rng rng = {42};
  int32_t n = 0;
  for (int32_t dt = 0; dt < 2; dt++)
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
      for (int32_t v = 0; v < 4; v++, n++) {
        const add_shapes *sh = &shapes[s];
        fx_tspec ins[2] = {{sh->ra, {0}, qs[v][0], zps[v][0]}, {sh->rb, {0}, qs[v][1], zps[v][1]}};
        memcpy(ins[0].shape, sh->a, sizeof sh->a);
        memcpy(ins[1].shape, sh->b, sizeof sh->b);
        fx_tspec out = {sh->ra > sh->rb ? sh->ra : sh->rb, {0}, qs[v][2], zps[v][2]};
        for (int32_t d = 0; d < out.rank; d++) {
          const int32_t da = d - (out.rank - sh->ra), db = d - (out.rank - sh->rb);
          const int32_t ea = da >= 0 ? sh->a[da] : 1, eb = db >= 0 ? sh->b[db] : 1;
          out.shape[d] = ea > eb ? ea : eb;
        }
        kiln_op_options o;
        memset(&o, 0, sizeof o);
        o.type = KILN_OPTS_ADD;
        o.activation = acts[n % 4];
        char label[96];
        snprintf(label, sizeof label, "ADD %s shapes %d variant %d act %d", dt ? "int8" : "float32",
                 (int)s, (int)v, (int)o.activation);
        fx_check_op(dt ? KILN_I8 : KILN_F32, KILN_OP_ADD, &o, ins, 2, &out, NULL, 0, true, &rng,
                    label);
      }
}

/* ---- PRELU ---- */

static void test_prelu(void) {
  /* input shape, alpha rank and shape */
  static const add_shapes shapes[] = {
      {4, 3, {1, 9, 11, 17}, {1, 1, 17}}, /* per channel, as converters write it */
      {4, 1, {2, 40, 40, 24}, {24}},      /* several tasks */
      {4, 4, {1, 5, 6, 7}, {1, 5, 6, 7}}, /* elementwise */
      {4, 1, {1, 3, 3, 33}, {1}},         /* one alpha */
      {3, 3, {6, 1, 8}, {6, 1, 1}},       /* per row */
      {1, 1, {1}, {1}},
  };
  /* in scale, zp; alpha scale, zp; out scale, zp */
  static const float qs[][3] = {{0.05f, 0.01f, 0.05f}, {0.1f, 0.002f, 0.02f}, {0.02f, 0.5f, 1.0f}};
  static const int32_t zps[][3] = {{0, 0, 0}, {-128, 127, -128}, {127, -128, 5}};
  test_rng rng = {21};
  for (int32_t dt = 0; dt < 2; dt++)
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
      for (int32_t v = 0; v < 3; v++) {
        const add_shapes *sh = &shapes[s];
        fx_tspec ins[2] = {{sh->ra, {0}, qs[v][0], zps[v][0]}, {sh->rb, {0}, qs[v][1], zps[v][1]}};
        memcpy(ins[0].shape, sh->a, sizeof sh->a);
        memcpy(ins[1].shape, sh->b, sizeof sh->b);
        fx_tspec out = ins[0];
        out.scale = qs[v][2];
        out.zp = zps[v][2];
        kiln_op_options o;
        memset(&o, 0, sizeof o);
        char label[96];
        snprintf(label, sizeof label, "PRELU %s shapes %d variant %d", dt ? "int8" : "float32",
                 (int)s, (int)v);
        fx_check_op(dt ? KILN_I8 : KILN_F32, KILN_OP_PRELU, &o, ins, 2, &out, NULL, 0, true, &rng,
                    label);
      }
}

/* ---- AVERAGE_POOL_2D, MAX_POOL_2D ---- */

static void test_pool(void) {
  static const int32_t sizes[][2] = {{1, 1}, {3, 5}, {7, 7}, {10, 9}, {17, 16}};
  static const int32_t channels[] = {1, 8, 15, 17, 40};
  static const int32_t windows[][3] = {{1, 1, 1}, {2, 2, 2}, {3, 3, 1},
                                       {3, 3, 2}, {5, 3, 3}, {7, 7, 1}};
  test_rng rng = {7};
  int32_t n = 0;
  for (int32_t dt = 0; dt < 2; dt++)
    for (int32_t is_max = 0; is_max < 2; is_max++)
      for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++)
        for (size_t w = 0; w < sizeof windows / sizeof *windows; w++)
          for (int32_t pad = 0; pad < 2; pad++, n++) {
            const int32_t fh = windows[w][0], fw = windows[w][1], st = windows[w][2];
            const int32_t h = sizes[s][0], wd = sizes[s][1];
            const bool same = pad == 0;
            const int32_t oh = same ? (h + st - 1) / st : (h + st - fh) / st;
            const int32_t ow = same ? (wd + st - 1) / st : (wd + st - fw) / st;
            if (oh < 1 || ow < 1) continue;
            const int32_t c = channels[n % 5], b = 1 + n % 2;
            fx_tspec in = fx_t4(b, h, wd, c), out = fx_t4(b, oh, ow, c);
            in.zp = out.zp = n % 3 == 0 ? -128 : (n % 3 == 1 ? 127 : 4);
            kiln_op_options o;
            memset(&o, 0, sizeof o);
            o.type = KILN_OPTS_POOL2D;
            o.padding = same ? KILN_PAD_SAME : KILN_PAD_VALID;
            o.filter_h = fh;
            o.filter_w = fw;
            o.stride_h = o.stride_w = st;
            o.activation = (kiln_activation)(n % 4 == 3 ? KILN_ACT_RELU6 : n % 4);
            char label[128];
            snprintf(label, sizeof label, "%s %s %dx%dx%d b%d filter %dx%d s%d %s act %d",
                     is_max ? "MAX_POOL" : "AVG_POOL", dt ? "int8" : "float32", (int)h, (int)wd,
                     (int)c, (int)b, (int)fh, (int)fw, (int)st, same ? "SAME" : "VALID",
                     (int)o.activation);
            fx_check_op(dt ? KILN_I8 : KILN_F32,
                        is_max ? KILN_OP_MAX_POOL_2D : KILN_OP_AVERAGE_POOL_2D, &o, &in, 1, &out,
                        NULL, 0, true, &rng, label);
          }
}

/* ---- MEAN ---- */

static void test_mean(void) {
  static const int32_t shapes[][4] = {{1, 1, 1, 1},    {1, 7, 7, 17},    {2, 5, 3, 64},
                                      {2, 9, 11, 130}, {1, 14, 14, 300}, {3, 1, 2, 9}};
  static const float scales[][2] = {{0.05f, 0.05f}, {0.1f, 0.01f}, {0.01f, 0.2f}, {1e-3f, 1.0f}};
  static const int32_t zps[][2] = {{0, 0}, {-128, 127}, {127, -128}, {3, -2}};
  test_rng rng = {11};
  int32_t n = 0;
  for (int32_t dt = 0; dt < 2; dt++)
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
      for (int32_t v = 0; v < 4; v++, n++) {
        const int32_t *sh = shapes[s];
        const bool keep = n % 2;
        fx_tspec in = fx_t4(sh[0], sh[1], sh[2], sh[3]);
        fx_tspec out = keep ? fx_t4(sh[0], 1, 1, sh[3]) : (fx_tspec){2, {sh[0], sh[3]}, 0, 0};
        in.scale = scales[v][0];
        out.scale = scales[v][1];
        in.zp = zps[v][0];
        out.zp = zps[v][1];
        kiln_op_options o;
        memset(&o, 0, sizeof o);
        o.type = KILN_OPTS_REDUCER;
        o.keep_dims = keep;
        const int32_t axes[2] = {n % 3 == 0 ? -3 : 1, 2};
        char label[96];
        snprintf(label, sizeof label, "MEAN %s %dx%dx%dx%d variant %d", dt ? "int8" : "float32",
                 (int)sh[0], (int)sh[1], (int)sh[2], (int)sh[3], (int)v);
        fx_check_op(dt ? KILN_I8 : KILN_F32, KILN_OP_MEAN, &o, &in, 1, &out, axes, 2, true, &rng,
                    label);
      }
  /* Other axes stay on the reference kernel. */
  for (int32_t dt = 0; dt < 2; dt++) {
    fx_tspec in = fx_t4(2, 3, 4, 5), out = fx_t4(2, 3, 4, 1);
    kiln_op_options o;
    memset(&o, 0, sizeof o);
    o.type = KILN_OPTS_REDUCER;
    o.keep_dims = true;
    const int32_t axes[1] = {3};
    fx_check_op(dt ? KILN_I8 : KILN_F32, KILN_OP_MEAN, &o, &in, 1, &out, axes, 1, false, &rng,
                "MEAN over channels");
  }
}

/* ---- The vector requantization itself ---- */

static void test_requant(void) {
  test_rng rng = {5};
  enum { N = 4099 };
  static int32_t x[N], mult[N], shift[N], got[N];
  const int32_t edge_x[] = {INT32_MIN, INT32_MIN + 1, -1, 0, 1, INT32_MAX, 1 << 30, -(1 << 30)};
  const int32_t edge_m[] = {INT32_MIN, INT32_MAX, 1 << 30, 0, 1, -1, 1518500250, INT32_MIN + 1};
  for (int32_t i = 0; i < N; i++) {
    if (i < 8 * 8 * 3) {
      x[i] = edge_x[i % 8];
      mult[i] = edge_m[(i / 8) % 8];
      shift[i] = (i / 64) == 0 ? 0 : ((i / 64) == 1 ? -31 : 30);
    } else {
      x[i] = (int32_t)test_rand_u32(&rng);
      mult[i] = i % 3 ? test_rand_int(&rng, 1 << 30, INT32_MAX) : (int32_t)test_rand_u32(&rng);
      shift[i] = test_rand_int(&rng, -31, 30);
      if (i % 5 == 0) x[i] >>= test_rand_int(&rng, 0, 31);
    }
  }
  int32_t tables = 0;
  for (const kiln_misc_kernels *const *t = kiln_misc_tables; *t; t++) {
    if (((*t)->isa & kiln_cpu_isa()) != (*t)->isa) continue;
    tables++;
    for (int32_t len = 1; len <= N; len = len * 3 + 1) {
      memset(got, 0x5a, sizeof got);
      (*t)->requant(len, x, mult, shift, got);
      int32_t bad = 0;
      for (int32_t i = 0; i < len; i++) {
        const int32_t want = kiln_mul_by_quantized_multiplier(x[i], mult[i], shift[i]);
        if (got[i] != want && bad++ == 0)
          fprintf(stderr, "%s: x %d mult %d shift %d: %d, reference %d\n", kiln_isa_name((*t)->isa),
                  (int)x[i], (int)mult[i], (int)shift[i], (int)got[i], (int)want);
      }
      CHECK_MSG(bad == 0, "%s, %d elements: %d differ", kiln_isa_name((*t)->isa), (int)len,
                (int)bad);
      CHECK(got[len] == 0x5a5a5a5a || len == N); /* nothing written past n */
    }
  }
  if (fx_fast_expected()) CHECK(tables > 0);
}

static void run_all(void) {
  RUN(test_requant);
  RUN(test_add);
  RUN(test_prelu);
  RUN(test_pool);
  RUN(test_mean);
}

int main(int argc, char **argv) {
  (void)argc;
  static const uint32_t variants[] = {KILN_ISA_AVX512, KILN_ISA_AVX2, KILN_ISA_NEON, 0};
  return fx_main(argv, variants, run_all);
}
