/*
 * Tests of the float32 GEMM micro-kernels, their weight packing and the conv
 * indirection (kernels/f32_gemm.h), called directly for every kernel this
 * CPU can run: every row count 1..mr, column counts around the panel and
 * vector widths, several depths split into runs, row pointers at odd
 * addresses, all clamp ranges. Results are checked against a plain double
 * sum within 1e-5 of the output's magnitude, columns past nc must be left
 * untouched, and a row's result must not depend on mr or on the panels a
 * call covers.
 */
#include <math.h>
#include <string.h>

#include "base/half.h"
#include "kernels/cpu.h"
#include "kernels/f32_gemm.h"
#include "testutil.h"

#define MAX_K 300
#define MAX_N 80
#define MAX_ROWS 16
#define GUARD 1234.5f

static float rnd(test_rng *r) { return test_rand_float(r, -1.0f, 1.0f); }

/* Random weights [n][k] (halves when `halves`) and bias. */
static void random_weights(test_rng *r, int32_t n, int32_t k, bool halves, float *weights,
                           float *bias, bool with_bias) {
  for (int32_t i = 0; i < n * k; i++) {
    weights[i] = rnd(r);
    if (halves) weights[i] = kiln_half_to_float(kiln_float_to_half(weights[i]));
  }
  for (int32_t i = 0; i < n; i++) bias[i] = with_bias ? rnd(r) : 0.0f;
}

/* Packs into one of two static buffers (64-byte aligned); NULL if too big. */
static void *pack(const kiln_f32_gemm_kernel *kern, int32_t n, int32_t k, const float *weights,
                  const float *bias, bool half, int32_t slot) {
  static float buffers[2][(MAX_K + 1) * (MAX_N + 64)] __attribute__((aligned(64)));
  if (kiln_f32_gemm_packed_bytes(kern, n, k, half) > sizeof buffers[0]) return NULL;
  kiln_f32_gemm_pack(kern, n, k, weights, bias, half, buffers[slot]);
  return buffers[slot];
}

static void test_halves_exact(void) {
  const float halves[] = {0.0f,           -0.0f,   1.0f, -2.5f, 65504.0f, 6.103515625e-05f,
                          5.9604645e-08f, INFINITY};
  CHECK(kiln_f32_gemm_halves_exact(halves, sizeof halves / sizeof halves[0]));
  const float others[] = {0.1f, 1.0f + 1.0f / 4096, 70000.0f, 1e-9f};
  for (size_t i = 0; i < sizeof others / sizeof others[0]; i++)
    CHECK_MSG(!kiln_f32_gemm_halves_exact(&others[i], 1), "%g", (double)others[i]);
  /* A NaN whose payload a half keeps is exact; one with low payload bits
   * is not. */
  const uint32_t nan_bits[2] = {0x7fc00000u, 0x7fc00001u};
  float nans[2];
  memcpy(nans, nan_bits, sizeof nans);
  CHECK(kiln_f32_gemm_halves_exact(&nans[0], 1));
  CHECK(!kiln_f32_gemm_halves_exact(&nans[1], 1));
}

/* The packed layout: panel p holds float bias then k rows of its columns
 * (float or half), zeros past n, the last panel rounded up to the vector
 * width. */
static void test_pack_layout(void) {
  for (int32_t i = 0; i < kiln_f32_gemm_kernel_count(); i++) {
    const kiln_f32_gemm_kernel *kern = kiln_f32_gemm_kernel_at(i);
    test_rng r = {7};
    const int32_t k = 5;
    const int32_t ns[] = {1,        kern->lanes,  kern->lanes + 1,
                          kern->nr, kern->nr + 1, 2 * kern->nr + kern->lanes - 1};
    for (size_t t = 0; t < sizeof ns / sizeof ns[0]; t++) {
      for (int half = 0; half < 2; half++) {
        const int32_t n = ns[t];
        float weights[MAX_N * 5], bias[MAX_N];
        random_weights(&r, n, k, half, weights, bias, true);
        const char *packed = pack(kern, n, k, weights, bias, half, 0);
        REQUIRE(packed);
        const int32_t last = (n - 1) / kern->nr * kern->nr;
        const int32_t last_width = (n - last + kern->lanes - 1) / kern->lanes * kern->lanes;
        const size_t size = half ? 2 : 4;
        CHECK(kiln_f32_gemm_packed_bytes(kern, n, k, half) ==
              (size_t)(last + last_width) * (4 + k * size));
        for (int32_t col = 0; col < last + last_width; col++) {
          const int32_t n0 = col / kern->nr * kern->nr;
          const int32_t width = n0 == last ? last_width : kern->nr;
          const char *panel = packed + kiln_f32_gemm_panel_bytes(n0, k, half);
          const int32_t j = col - n0;
          float b;
          memcpy(&b, panel + 4 * j, 4);
          CHECK(b == (col < n ? bias[col] : 0.0f));
          for (int32_t d = 0; d < k; d++) {
            const char *at = panel + 4 * width + size * (size_t)(d * width + j);
            float w;
            uint16_t h;
            if (half) {
              memcpy(&h, at, 2);
              w = kiln_half_to_float(h);
            } else {
              memcpy(&w, at, 4);
            }
            CHECK(w == (col < n ? weights[col * k + d] : 0.0f));
          }
        }
      }
    }
  }
}

typedef struct gemm_case {
  int32_t n, kc, ks;
  float min, max;
  bool bias;
} gemm_case;

/* Runs one kernel on every row count for one case and checks the results.
 * With `halves` the weights are halves, and the half-weight kernel must
 * give exactly the float-weight kernel's results. */
static void check_case(const kiln_f32_gemm_kernel *kern, const gemm_case *g, bool halves,
                       test_rng *r) {
  const int32_t k = g->kc * g->ks;
  static float weights[MAX_N * MAX_K], bias[MAX_N];
  static float a_data[MAX_ROWS * MAX_K + 1];
  static float c[MAX_ROWS * (MAX_N + 3)], c_split[MAX_ROWS * (MAX_N + 3)];
  static float c_half[MAX_ROWS * (MAX_N + 3)];
  random_weights(r, g->n, k, halves, weights, bias, g->bias);
  const char *packed = pack(kern, g->n, k, weights, g->bias ? bias : NULL, false, 0);
  const char *packed_half =
      halves ? pack(kern, g->n, k, weights, g->bias ? bias : NULL, true, 1) : NULL;
  REQUIRE(packed && (packed_half || !halves));
  /* Row i's run t is at a_data + 1 + (t * MAX_ROWS + i) * kc: odd addresses,
   * runs of different rows interleaved. */
  for (size_t i = 0; i < sizeof a_data / sizeof a_data[0]; i++) a_data[i] = rnd(r);
  const float *a[MAX_ROWS * 32];
  REQUIRE(g->ks <= 32 && kern->mr <= MAX_ROWS);
  const size_t c_stride = (size_t)g->n + 3;
  for (int32_t mr = 1; mr <= kern->mr; mr++) {
    for (int32_t t = 0; t < g->ks; t++)
      for (int32_t i = 0; i < mr; i++)
        a[t * mr + i] = a_data + 1 + (size_t)(t * MAX_ROWS + i) * g->kc;
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) c[i] = c_split[i] = c_half[i] = GUARD;
    kern->fn(mr, g->n, g->kc, g->ks, a, packed, c, c_stride, g->min, g->max);
    if (halves)
      kern->fn_f16(mr, g->n, g->kc, g->ks, a, packed_half, c_half, c_stride, g->min, g->max);
    /* The same product one panel at a time. */
    for (int32_t n0 = 0; n0 < g->n; n0 += kern->nr)
      kern->fn(mr, g->n - n0 < kern->nr ? g->n - n0 : kern->nr, g->kc, g->ks, a,
               packed + kiln_f32_gemm_panel_bytes(n0, k, false), c_split + n0, c_stride, g->min,
               g->max);
    double magnitude = 1.0;
    for (int32_t i = 0; i < mr; i++) {
      for (int32_t j = 0; j < g->n; j++) {
        double sum = g->bias ? bias[j] : 0.0;
        for (int32_t t = 0; t < g->ks; t++)
          for (int32_t d = 0; d < g->kc; d++)
            sum += (double)a[t * mr + i][d] * weights[(size_t)j * k + t * g->kc + d];
        if (fabs(sum) > magnitude) magnitude = fabs(sum);
      }
    }
    int bad = 0;
    for (int32_t i = 0; i < mr && bad < 5; i++) {
      for (int32_t j = 0; j < (int32_t)c_stride; j++) {
        const float got = c[i * c_stride + j];
        if (halves && memcmp(&got, &c_half[i * c_stride + j], sizeof got) != 0) bad++;
        CHECK_MSG(!halves || memcmp(&got, &c_half[i * c_stride + j], sizeof got) == 0,
                  "%s_f16 mr %d n %d [%d][%d]: %.8g, float weights give %.8g", kern->name, (int)mr,
                  (int)g->n, (int)i, (int)j, (double)c_half[i * c_stride + j], (double)got);
        if (j >= g->n) {
          if (got != GUARD) bad++;
          CHECK_MSG(got == GUARD, "%s wrote column %d past nc %d", kern->name, (int)j, (int)g->n);
          continue;
        }
        double sum = g->bias ? bias[j] : 0.0;
        for (int32_t t = 0; t < g->ks; t++)
          for (int32_t d = 0; d < g->kc; d++)
            sum += (double)a[t * mr + i][d] * weights[(size_t)j * k + t * g->kc + d];
        const double want = fmin(fmax(sum, g->min), g->max);
        const bool ok = fabs(got - want) <= 1e-5 * magnitude;
        if (!ok) bad++;
        CHECK_MSG(ok, "%s mr %d n %d kc %d ks %d [%d][%d]: %.8g, expected %.8g", kern->name,
                  (int)mr, (int)g->n, (int)g->kc, (int)g->ks, (int)i, (int)j, (double)got, want);
        CHECK_MSG(got == c_split[i * c_stride + j], "%s: result depends on the panels per call",
                  kern->name);
      }
    }
    /* Rows beyond mr are untouched. */
    for (int32_t i = mr; i < MAX_ROWS; i++)
      CHECK(c[i * c_stride] == GUARD && c_half[i * c_stride] == GUARD);
  }
}

/* Row results do not depend on how many rows a call computes. */
static void check_rows_independent(const kiln_f32_gemm_kernel *kern, test_rng *r) {
  const int32_t n = kern->nr + kern->lanes + 3, kc = 37;
  static float weights[MAX_N * MAX_K], bias[MAX_N], a_data[MAX_ROWS * 37];
  static float one[MAX_N], all[MAX_ROWS * MAX_N];
  random_weights(r, n, kc, false, weights, bias, true);
  const void *packed = pack(kern, n, kc, weights, bias, false, 0);
  REQUIRE(packed);
  for (int32_t i = 0; i < MAX_ROWS * kc; i++) a_data[i] = rnd(r);
  const float *rows[MAX_ROWS];
  for (int32_t i = 0; i < kern->mr; i++) rows[i] = a_data + i * kc;
  kern->fn(kern->mr, n, kc, 1, rows, packed, all, (size_t)n, -INFINITY, INFINITY);
  for (int32_t i = 0; i < kern->mr; i++) {
    kern->fn(1, n, kc, 1, &rows[i], packed, one, (size_t)n, -INFINITY, INFINITY);
    CHECK_MSG(memcmp(one, all + i * n, (size_t)n * sizeof(float)) == 0,
              "%s: row %d differs between mr 1 and mr %d", kern->name, (int)i, (int)kern->mr);
  }
}

/* A NaN in a row passes the clamp (as in the reference) and stays in its
 * row; infinities clamp. */
static void check_nan_passes(const kiln_f32_gemm_kernel *kern, test_rng *r) {
  const int32_t n = kern->nr + kern->lanes + 1, kc = 5;
  static float weights[MAX_N * MAX_K], bias[MAX_N], a_data[MAX_ROWS * 5], c[MAX_ROWS * MAX_N];
  random_weights(r, n, kc, false, weights, bias, true);
  const void *packed = pack(kern, n, kc, weights, bias, false, 0);
  REQUIRE(packed);
  for (int32_t i = 0; i < MAX_ROWS * kc; i++) a_data[i] = rnd(r);
  a_data[2] = NAN;
  a_data[kc + 1] = INFINITY;
  const float *rows[MAX_ROWS];
  for (int32_t i = 0; i < kern->mr; i++) rows[i] = a_data + i * kc;
  kern->fn(kern->mr, n, kc, 1, rows, packed, c, (size_t)n, 0.0f, 6.0f);
  for (int32_t j = 0; j < n; j++) {
    CHECK_MSG(isnan(c[j]), "%s: column %d of the NaN row is %g", kern->name, (int)j, (double)c[j]);
    if (kern->mr > 1) CHECK(c[n + j] == 0.0f || c[n + j] == 6.0f);
    for (int32_t i = 2; i < kern->mr; i++) CHECK(!isnan(c[i * n + j]));
  }
}

static void test_kernels(void) {
  int ran = 0;
  for (int32_t i = 0; i < kiln_f32_gemm_kernel_count(); i++) {
    const kiln_f32_gemm_kernel *kern = kiln_f32_gemm_kernel_at(i);
    if ((kern->isa & kiln_cpu_isa()) != kern->isa) {
      fprintf(stderr, "  skipping %s (CPU lacks it)\n", kern->name);
      continue;
    }
    ran++;
    test_rng r = {1000u + (uint64_t)i};
    const int32_t nr = kern->nr, lanes = kern->lanes;
    const int32_t ns[] = {1,      lanes - 1, lanes,  lanes + 1,  2 * lanes + 1, 3 * lanes,
                          nr - 1, nr,        nr + 1, nr + lanes, 2 * nr + 5,    MAX_N};
    const gemm_case shapes[] = {
        {0, 1, 1, -INFINITY, INFINITY, true},  {0, 3, 9, 0.0f, INFINITY, true},
        {0, 17, 1, 0.0f, 6.0f, false},         {0, 64, 2, -1.0f, 1.0f, true},
        {0, 5, 25, -INFINITY, INFINITY, true}, {0, 300, 1, -INFINITY, INFINITY, false},
    };
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
      for (size_t t = 0; t < sizeof ns / sizeof ns[0]; t++) {
        gemm_case g = shapes[s];
        g.n = ns[t];
        check_case(kern, &g, false, &r);
        check_case(kern, &g, true, &r);
      }
    }
    check_rows_independent(kern, &r);
    check_nan_passes(kern, &r);
  }
  fprintf(stderr, "  %d of %d kernels ran\n", ran, (int)kiln_f32_gemm_kernel_count());
}

static void test_select(void) {
  CHECK(kiln_f32_gemm_select(0) == NULL);
  for (int32_t i = 0; i < kiln_f32_gemm_kernel_count(); i++) {
    const kiln_f32_gemm_kernel *kern = kiln_f32_gemm_kernel_at(i);
    CHECK(kern->mr >= 1 && kern->mr <= KILN_F32_GEMM_MAX_MR);
    CHECK(kern->nr % kern->lanes == 0);
    /* Its own ISA bits select it or an earlier (better) kernel. */
    const kiln_f32_gemm_kernel *sel = kiln_f32_gemm_select(kern->isa);
    CHECK(sel != NULL && sel <= kern);
  }
  CHECK(kiln_f32_gemm_kernel_at(kiln_f32_gemm_kernel_count()) == NULL);
}

/* The definition of run j of output pixel m's window, for comparison. */
static void expect_run(const kiln_conv_params *p, int32_t run_taps, const float *input, int32_t m,
                       int32_t j, float *want) {
  const int32_t pixels = p->out_h * p->out_w, b = m / pixels;
  const int32_t oy = m % pixels / p->out_w, ox = m % p->out_w;
  const int32_t runs_x = p->filter_w / run_taps, fy = j / runs_x;
  for (int32_t t = 0; t < run_taps; t++) {
    const int32_t fx = j % runs_x * run_taps + t;
    const int32_t iy = oy * p->stride_h - p->pad_h + fy * p->dilation_h;
    const int32_t ix = ox * p->stride_w - p->pad_w + fx * p->dilation_w;
    for (int32_t ch = 0; ch < p->in_c; ch++) {
      const bool inside = iy >= 0 && iy < p->in_h && ix >= 0 && ix < p->in_w;
      want[t * p->in_c + ch] =
          inside ? input[((b * p->in_h + iy) * p->in_w + ix) * p->in_c + ch] : 0.0f;
    }
  }
}

/* The indirection of convs with padding, strides and dilation, runs of one
 * tap and of a row of taps, against the definition, for row ranges that
 * cross image and batch boundaries. */
static void test_indirection(void) {
  kiln_conv_params p;
  memset(&p, 0, sizeof p);
  p.batch = 2;
  p.in_h = 5;
  p.in_w = 6;
  p.in_c = 3;
  p.filter_h = 3;
  p.filter_w = 3;
  p.stride_h = 2;
  p.stride_w = 1;
  p.dilation_h = 1;
  p.pad_h = 1;
  p.pad_w = 2;
  p.out_h = 3;
  p.out_w = 6;
  static float input[2 * 5 * 6 * 3], zeros[9], edge[7 * 27];
  for (size_t i = 0; i < sizeof input / sizeof input[0]; i++) input[i] = (float)i + 1.0f;
  for (int32_t variant = 0; variant < 4; variant++) {
    const int32_t dilation_w = 1 + variant % 2;
    p.dilation_w = dilation_w;
    p.stride_w = 1 + variant / 2;
    p.out_w = p.stride_w == 1 ? 6 : 4;
    const int32_t run_list[2] = {1, dilation_w == 1 ? 3 : 1};
    for (int32_t v = 0; v < 2; v++) {
      const int32_t run_taps = run_list[v], runs = 9 / run_taps, m = 2 * 3 * p.out_w;
      const float *a[9 * 7];
      for (int32_t m0 = 0; m0 < m; m0 += 7) {
        const int32_t rows = m - m0 < 7 ? m - m0 : 7;
        kiln_f32_conv_indirection(&p, run_taps, input, zeros, edge, m0, rows, a);
        for (int32_t r = 0; r < rows; r++) {
          for (int32_t j = 0; j < runs; j++) {
            float want[9];
            expect_run(&p, run_taps, input, m0 + r, j, want);
            CHECK_MSG(memcmp(a[j * rows + r], want, (size_t)run_taps * 3 * sizeof(float)) == 0,
                      "dilation %d stride %d run_taps %d pixel %d run %d", (int)dilation_w,
                      (int)p.stride_w, (int)run_taps, (int)(m0 + r), (int)j);
          }
        }
      }
    }
  }
  for (size_t i = 0; i < sizeof zeros / sizeof zeros[0]; i++) CHECK(zeros[i] == 0.0f);
}

int main(void) {
  RUN(test_select);
  RUN(test_halves_exact);
  RUN(test_pack_layout);
  RUN(test_indirection);
  RUN(test_kernels);
  return test_summary();
}
