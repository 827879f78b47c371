/*
 * Tests of the optimized RESIZE_BILINEAR (kernels/x86/resize_fast_*) and
 * the threaded CONCATENATION (runtime/ops_shape.c): one-op models run
 * through the interpreter with the default kernels at 1, 2 and 3 threads
 * must match the reference kernels (int8 bit for bit, float32 within 1e-5
 * relative), once per ISA variant (a child process per KILN_ISA_MASK).
 * Resizes go up and down, to and from one pixel, with every coordinate mode;
 * concatenations cover every axis, several inputs, and outputs large enough
 * to be split over threads.
 */
#include <stdio.h>
#include <string.h>

#include "kernels/misc_fast.h"
#include "test_fast_dw_harness.h"

static void test_resize_bilinear(void) {
  static const int32_t sizes[][4] = {{1, 1, 4, 5},   {4, 5, 1, 1},   {3, 3, 7, 9},
                                     {10, 12, 5, 5}, {7, 9, 14, 18}, {19, 19, 38, 38},
                                     {16, 16, 8, 8}, {5, 6, 33, 17}, {2, 2, 63, 61}};
  static const int32_t channels[] = {1, 3, 8, 17, 32};
  test_rng rng = {3};
  int32_t n = 0;
  for (int32_t dt = 0; dt < 2; dt++)
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++)
      for (int32_t mode = 0; mode < 3; mode++, n++) {
        const int32_t c = channels[n % 5], b = 1 + n % 2;
        fx_tspec in = fx_t4(b, sizes[s][0], sizes[s][1], c);
        fx_tspec out = fx_t4(b, sizes[s][2], sizes[s][3], c);
        in.zp = out.zp = n % 4 == 0 ? -128 : 9;
        kiln_op_options o;
        memset(&o, 0, sizeof o);
        o.type = KILN_OPTS_RESIZE_BILINEAR;
        o.align_corners = mode == 1;
        o.half_pixel_centers = mode == 2;
        const int32_t size[2] = {sizes[s][2], sizes[s][3]};
        char label[128];
        snprintf(label, sizeof label, "RESIZE_BILINEAR %s %dx%d -> %dx%d c%d b%d mode %d",
                 dt ? "int8" : "float32", (int)sizes[s][0], (int)sizes[s][1], (int)size[0],
                 (int)size[1], (int)c, (int)b, (int)mode);
        fx_check_op(dt ? KILN_I8 : KILN_F32, KILN_OP_RESIZE_BILINEAR, &o, &in, 1, &out, size, 2,
                    true, &rng, label);
      }
}

/* n inputs of shape `shape` except along axis, where input i has sizes[i].
 * The copy is threaded (with 3 threads, the last run) from 256 KiB on. */
static void check_concat(kiln_dtype dt, int32_t rank, const int32_t *shape, int32_t axis, int32_t n,
                         const int32_t *sizes, test_rng *rng) {
  fx_tspec ins[6], out = {rank, {0}, 0.05f, -3};
  memcpy(out.shape, shape, (size_t)rank * sizeof *shape);
  out.shape[axis] = 0;
  for (int32_t i = 0; i < n; i++) {
    ins[i] = out;
    ins[i].shape[axis] = sizes[i];
    out.shape[axis] += sizes[i];
  }
  const bool expect_fast = fx_elements(&out) * (dt == KILN_I8 ? 1 : 4) >= 256 * 1024;
  kiln_op_options o;
  memset(&o, 0, sizeof o);
  o.type = KILN_OPTS_CONCATENATION;
  o.axis = axis == rank - 1 && axis % 2 ? -1 : axis;
  char label[96];
  snprintf(label, sizeof label, "CONCATENATION %s rank %d axis %d of %d inputs",
           dt == KILN_I8 ? "int8" : "float32", (int)rank, (int)axis, (int)n);
  fx_check_op(dt, KILN_OP_CONCATENATION, &o, ins, n, &out, NULL, 0, expect_fast, rng, label);
}

static void test_concat(void) {
  test_rng rng = {13};
  const int32_t small[4] = {2, 3, 4, 5}, large[4] = {2, 40, 41, 30};
  const int32_t sizes[5] = {7, 1, 16, 3, 40};
  for (int32_t dt = 0; dt < 2; dt++) {
    const kiln_dtype t = dt ? KILN_I8 : KILN_F32;
    for (int32_t axis = 0; axis < 4; axis++) {
      check_concat(t, 4, small, axis, 3, sizes, &rng);
      check_concat(t, 4, large, axis, 5, sizes, &rng);
    }
    const int32_t flat[2] = {1, 300000};
    const int32_t parts[2] = {123457, 176543};
    check_concat(t, 2, flat, 1, 2, parts, &rng);
  }
}

static void run_all(void) {
  RUN(test_resize_bilinear);
  RUN(test_concat);
}

int main(int argc, char **argv) {
  (void)argc;
  static const uint32_t variants[] = {KILN_ISA_AVX512, KILN_ISA_AVX2, KILN_ISA_NEON, 0};
  return fx_main(argv, variants, run_all);
}
