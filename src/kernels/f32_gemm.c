/* The float32 GEMM kernel table, weight packing and conv indirection (see
 * kernels/f32_gemm.h). Portable C; the micro-kernels are in kernels/x86/ and
 * kernels/arm/. */
#include "kernels/f32_gemm.h"

#include <stdbool.h>
#include <string.h>

#include "base/half.h"
#include "kernels/cpu.h"

#define KERNEL_ENTRY(tile_isa, isa_bits, mr_, nr_, lanes_)                            \
  {"f32_gemm_" #tile_isa, isa_bits, mr_, nr_, lanes_, kiln_f32_gemm_##tile_isa,       \
   kiln_f32_gemm_##tile_isa##_f16},

static const kiln_f32_gemm_kernel kernels[] = {
    KILN_F32_GEMM_KERNELS(KERNEL_ENTRY){NULL, 0, 0, 0, 0, NULL, NULL},
};

int32_t kiln_f32_gemm_kernel_count(void) {
  return (int32_t)(sizeof kernels / sizeof kernels[0]) - 1;
}

const kiln_f32_gemm_kernel *kiln_f32_gemm_kernel_at(int32_t i) {
  return i >= 0 && i < kiln_f32_gemm_kernel_count() ? &kernels[i] : NULL;
}

const kiln_f32_gemm_kernel *kiln_f32_gemm_select(uint32_t isa) {
  for (int32_t i = 0; i < kiln_f32_gemm_kernel_count(); i++)
    if ((kernels[i].isa & isa) == kernels[i].isa) return &kernels[i];
  return NULL;
}

/* Width of the panel starting at column n0 of n. */
static int32_t panel_width(const kiln_f32_gemm_kernel *kern, int32_t n, int32_t n0) {
  const int32_t rest = n - n0;
  if (rest >= kern->nr) return kern->nr;
  return (rest + kern->lanes - 1) / kern->lanes * kern->lanes;
}

bool kiln_f32_gemm_halves_exact(const float *v, size_t n) {
  for (size_t i = 0; i < n; i++) {
    const float back = kiln_half_to_float(kiln_float_to_half(v[i]));
    if (memcmp(&back, &v[i], sizeof back) != 0) return false;
  }
  return true;
}

size_t kiln_f32_gemm_packed_bytes(const kiln_f32_gemm_kernel *kern, int32_t n, int32_t k,
                                  bool half) {
  const int32_t last = (n - 1) / kern->nr * kern->nr;
  return kiln_f32_gemm_panel_bytes(last + panel_width(kern, n, last), k, half);
}

void kiln_f32_gemm_pack(const kiln_f32_gemm_kernel *kern, int32_t n, int32_t k,
                        const float *weights, const float *bias, bool half, void *packed) {
  for (int32_t n0 = 0; n0 < n; n0 += kern->nr) {
    const int32_t width = panel_width(kern, n, n0);
    const int32_t cols = n - n0 < width ? n - n0 : width;
    char *panel = (char *)packed + kiln_f32_gemm_panel_bytes(n0, k, half);
    memset(panel, 0, kiln_f32_gemm_panel_bytes(width, k, half));
    float *panel_bias = (float *)(void *)panel;
    for (int32_t j = 0; j < cols; j++) {
      panel_bias[j] = bias ? bias[n0 + j] : 0.0f;
      const float *w = weights + (size_t)(n0 + j) * (size_t)k;
      const size_t at = (size_t)width + (size_t)j;
      if (half) {
        uint16_t *rows = (uint16_t *)(void *)(panel_bias + width);
        for (int32_t d = 0; d < k; d++)
          rows[(size_t)d * (size_t)width + (size_t)j] = kiln_float_to_half(w[d]);
      } else {
        for (int32_t d = 0; d < k; d++) panel_bias[(size_t)d * (size_t)width + at] = w[d];
      }
    }
  }
}

/* The runs of one output pixel whose window reaches into padding:
 * a[j * rows] for run j. A run with some taps inside and some outside the
 * image is assembled in `edge` (taps outside are zeros). */
static void edge_runs(const kiln_conv_params *p, int32_t run_taps, const float *img,
                      const float *zeros, float *edge, int32_t iy0, int32_t ix0, int32_t rows,
                      const float **a) {
  const size_t c = (size_t)p->in_c;
  for (int32_t fy = 0; fy < p->filter_h; fy++) {
    const int32_t iy = iy0 + fy * p->dilation_h;
    const bool row_in = iy >= 0 && iy < p->in_h;
    for (int32_t fx0 = 0; fx0 < p->filter_w; fx0 += run_taps, a += rows) {
      int32_t inside = 0;
      for (int32_t fx = fx0; row_in && fx < fx0 + run_taps; fx++) {
        const int32_t ix = ix0 + fx * p->dilation_w;
        inside += ix >= 0 && ix < p->in_w;
      }
      if (inside == 0) {
        *a = zeros;
      } else if (inside == run_taps) {
        const int32_t first_x = ix0 + fx0 * p->dilation_w;
        *a = img + ((size_t)iy * (size_t)p->in_w + (size_t)first_x) * c;
      } else {
        float *dst = edge + ((size_t)fy * (size_t)p->filter_w + (size_t)fx0) * c;
        for (int32_t fx = fx0; fx < fx0 + run_taps; fx++, dst += c) {
          const int32_t ix = ix0 + fx * p->dilation_w;
          if (ix >= 0 && ix < p->in_w)
            memcpy(dst, img + ((size_t)iy * (size_t)p->in_w + (size_t)ix) * c, c * sizeof *dst);
          else
            memset(dst, 0, c * sizeof *dst);
        }
        *a = edge + ((size_t)fy * (size_t)p->filter_w + (size_t)fx0) * c;
      }
    }
  }
}

/* The runs of `count` output pixels of one output row whose windows lie
 * inside the image, the first at `origin`, the next `step` floats on:
 * a[j * rows + i] for run j of pixel i. */
static void inner_runs(const float *origin, size_t step, int32_t count, int32_t filter_h,
                       size_t step_y, int32_t runs_x, size_t step_run, int32_t rows,
                       const float **a) {
  for (int32_t fy = 0; fy < filter_h; fy++, origin += step_y) {
    for (int32_t j = 0; j < runs_x; j++, a += rows) {
      const float *src = origin + (size_t)j * step_run;
      for (int32_t i = 0; i < count; i++, src += step) a[i] = src;
    }
  }
}

void kiln_f32_conv_indirection(const kiln_conv_params *p, int32_t run_taps, const float *input,
                               const float *zeros, float *edge, int64_t m0, int32_t rows,
                               const float **a) {
  const int32_t in_h = p->in_h, in_w = p->in_w, out_h = p->out_h, out_w = p->out_w;
  const size_t c = (size_t)p->in_c;
  const size_t window = (size_t)p->filter_h * (size_t)p->filter_w * c;
  const size_t image = (size_t)in_h * (size_t)in_w * c;
  const size_t step_y = (size_t)p->dilation_h * (size_t)in_w * c;
  const size_t step_run = (size_t)run_taps * (size_t)p->dilation_w * c;
  const size_t step_x = (size_t)p->stride_w * c;
  const int32_t runs_x = p->filter_w / run_taps;
  /* The window's extent: a window inside the image has no padded taps. */
  const int32_t span_h = (p->filter_h - 1) * p->dilation_h;
  const int32_t span_w = (p->filter_w - 1) * p->dilation_w;
  const int64_t pixels = (int64_t)out_h * out_w;
  int32_t b = (int32_t)(m0 / pixels);
  const int64_t in_image = m0 - (int64_t)b * pixels;
  int32_t oy = (int32_t)(in_image / out_w), ox = (int32_t)(in_image - (int64_t)oy * out_w);
  /* Output rows, then within one the stretch of windows inside the image
   * (filled at once) and the windows cut by padding (one by one). */
  for (int32_t r = 0; r < rows;) {
    const float *img = input + (size_t)b * image;
    const int32_t iy0 = oy * p->stride_h - p->pad_h;
    const bool y_inside = iy0 >= 0 && iy0 + span_h < in_h;
    const int32_t end = ox + (rows - r < out_w - ox ? rows - r : out_w - ox);
    while (ox < end) {
      const int32_t ix0 = ox * p->stride_w - p->pad_w;
      /* Windows from ox on that end inside the image. */
      int32_t count = 0;
      if (y_inside && ix0 >= 0 && ix0 + span_w < in_w) {
        count = (in_w - 1 - span_w - ix0) / p->stride_w + 1;
        if (count > end - ox) count = end - ox;
      }
      if (count > 0) {
        inner_runs(img + ((size_t)iy0 * (size_t)in_w + (size_t)ix0) * c, step_x, count, p->filter_h,
                   step_y, runs_x, step_run, rows, a + r);
        r += count;
        ox += count;
      } else {
        edge_runs(p, run_taps, img, zeros, edge + (size_t)r * window, iy0, ix0, rows, a + r);
        r++;
        ox++;
      }
    }
    if (ox == out_w) {
      ox = 0;
      if (++oy == out_h) {
        oy = 0;
        b++;
      }
    }
  }
}
