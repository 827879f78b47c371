/*
 * vision/image_resize.c: bilinear resizing with half-pixel centres, and
 * filling a model's NHWC input tensor from an image.
 *
 * Resizing: for each output column x the source position is
 * (x + 0.5) * (src_w / dst_w) - 0.5, as TensorFlow's
 * resize_bilinear(half_pixel_centers=True); its two neighbours are clamped
 * to the image, which makes positions left of the first pixel (or right of
 * the last) copy the edge, as TensorFlow and OpenCV do. Taps are computed
 * once per column and per row, in double (TensorFlow uses float, which
 * drifts by up to ~0.01 of a level on large images); each output value is
 * top + (bottom - top) * fy in float, with top and bottom the horizontal
 * lerps, rounded half up.
 *
 * Tensor fill: normalization and quantization are precomputed into a
 * 256-entry table per channel, so every pixel value maps exactly as the
 * per-value formula would.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "vision/image_int.h"

typedef struct resize_tap {
  size_t lo, hi; /* byte offsets of the two neighbours along the axis */
  float frac;    /* weight of hi */
} resize_tap;

static void compute_taps(int32_t src, int32_t dst, size_t step, resize_tap *taps) {
  double scale = (double)src / (double)dst;
  for (int32_t i = 0; i < dst; i++) {
    double pos = ((double)i + 0.5) * scale - 0.5;
    double base = floor(pos);
    int32_t lo = (int32_t)base, hi = lo + 1;
    float frac = (float)(pos - base);
    if (lo < 0) lo = 0;
    if (hi < 0) hi = 0;
    if (lo > src - 1) lo = src - 1;
    if (hi > src - 1) hi = src - 1;
    taps[i].lo = (size_t)lo * step;
    taps[i].hi = (size_t)hi * step;
    taps[i].frac = frac;
  }
}

static bool image_ok(const kiln_image *img) {
  return img && img->pixels && img->width >= 1 && img->height >= 1 &&
         img->stride >= (size_t)img->width * 3;
}

kiln_status kiln_image_resize_bilinear(const kiln_image *src, int32_t width, int32_t height,
                                       kiln_image *out, kiln_error *err) {
  memset(out, 0, sizeof *out);
  if (!image_ok(src))
    return kiln_fail(err, KILN_ERR_INVALID_ARG, "resize: the source image has no pixels");
  kiln_status st = kiln_image_create(width, height, out, err);
  if (st != KILN_OK) {
    kiln_error_prefix(err, "resize");
    return st;
  }
  resize_tap *taps = kiln_malloc(sizeof *taps * ((size_t)width + (size_t)height));
  if (!taps) {
    kiln_image_free(out);
    return kiln_fail(err, KILN_ERR_NOMEM, "resize: out of memory");
  }
  resize_tap *xt = taps, *yt = taps + width;
  compute_taps(src->width, width, 3, xt);
  compute_taps(src->height, height, src->stride, yt);
  for (int32_t y = 0; y < height; y++) {
    const uint8_t *top = src->pixels + yt[y].lo, *bottom = src->pixels + yt[y].hi;
    float fy = yt[y].frac;
    uint8_t *row = out->pixels + (size_t)y * out->stride;
    for (int32_t x = 0; x < width; x++) {
      size_t lo = xt[x].lo, hi = xt[x].hi;
      float fx = xt[x].frac;
      for (int c = 0; c < 3; c++) {
        float t = (float)top[lo + c] + ((float)top[hi + c] - (float)top[lo + c]) * fx;
        float b = (float)bottom[lo + c] + ((float)bottom[hi + c] - (float)bottom[lo + c]) * fx;
        float v = t + (b - t) * fy + 0.5f;
        row[3 * (size_t)x + c] = (uint8_t)(v <= 0.0f ? 0 : v >= 255.0f ? 255 : (int)v);
      }
    }
  }
  kiln_free(taps);
  return KILN_OK;
}

kiln_image_norm kiln_image_norm_default(void) {
  return (kiln_image_norm){{127.5f, 127.5f, 127.5f}, {127.5f, 127.5f, 127.5f}};
}

/* The per-channel value tables: float reals, or quantized bytes. */
typedef struct tensor_lut {
  float real[3][256];
  uint8_t q[3][256]; /* uint8 values, or int8 values stored as bytes */
} tensor_lut;

/* Fills lut for dst's dtype; refuses what cannot be represented. */
static kiln_status build_lut(const kiln_image_norm *norm, const kiln_tensor_view *dst,
                             tensor_lut *lut, kiln_error *err) {
  for (int c = 0; c < 3; c++) {
    if (!isfinite(norm->mean[c]) || !isfinite(norm->std[c]) || norm->std[c] == 0.0f)
      return kiln_fail(err, KILN_ERR_INVALID_ARG,
                       "normalization of channel %d: mean %g, std %g (std must be finite and "
                       "non-zero)", c, (double)norm->mean[c], (double)norm->std[c]);
    for (int v = 0; v < 256; v++)
      lut->real[c][v] = ((float)v - norm->mean[c]) / norm->std[c];
  }
  if (dst->dtype == KILN_F32) return KILN_OK;

  const kiln_quant *q = dst->quant;
  if (!q || q->count == 0)
    return kiln_fail(err, KILN_ERR_INVALID_ARG, "%s tensor has no quantization parameters",
                     kiln_dtype_name(dst->dtype));
  if (q->count != 1)
    return kiln_fail(err, KILN_ERR_INVALID_ARG,
                     "per-axis quantization (%d scales) on an input tensor is not supported",
                     q->count);
  float scale = q->scale[0];
  int32_t zp = q->zero_point[0];
  int32_t qmin = dst->dtype == KILN_U8 ? 0 : -128, qmax = dst->dtype == KILN_U8 ? 255 : 127;
  if (!(scale > 0.0f) || !isfinite(scale) || zp < qmin || zp > qmax)
    return kiln_fail(err, KILN_ERR_INVALID_ARG, "quantization scale %g, zero point %d: "
                     "the scale must be positive and the zero point in [%d, %d]",
                     (double)scale, zp, qmin, qmax);
  for (int c = 0; c < 3; c++) {
    for (int v = 0; v < 256; v++) {
      /* TFLite's QUANTIZE: round(real / scale) in float, halves away from 0. */
      float r = roundf(lut->real[c][v] / scale);
      int32_t qv = r < -1e6f ? -1000000 : r > 1e6f ? 1000000 : (int32_t)r;
      qv += zp;
      if (qv < qmin) qv = qmin;
      if (qv > qmax) qv = qmax;
      lut->q[c][v] = (uint8_t)(dst->dtype == KILN_U8 ? qv : (int32_t)(int8_t)qv);
    }
  }
  return KILN_OK;
}

/* Checks dst is a [1,H,W,3] float32/uint8/int8 tensor with matching bytes. */
static kiln_status check_tensor(const kiln_tensor_view *dst, kiln_error *err) {
  if (dst->rank != 4 || !dst->shape || dst->shape[0] != 1 || dst->shape[1] < 1 ||
      dst->shape[2] < 1 || dst->shape[3] != 3) {
    char shape[96] = "";
    size_t used = 0;
    for (int32_t i = 0; dst->shape && i < dst->rank && i < 8 && used < sizeof shape; i++)
      used += (size_t)snprintf(shape + used, sizeof shape - used, "%s%d", i ? "," : "",
                               dst->shape[i]);
    return kiln_fail(err, KILN_ERR_INVALID_ARG,
                     "shape [%s] is not an image input: it must be [1,height,width,3] "
                     "(batch 1, NHWC, RGB)", shape);
  }
  size_t elem;
  switch (dst->dtype) {
    case KILN_F32: elem = 4; break;
    case KILN_U8:
    case KILN_I8: elem = 1; break;
    default:
      return kiln_fail(err, KILN_ERR_UNSUPPORTED,
                       "%s input: images fill only float32, uint8 and int8 tensors",
                       kiln_dtype_name(dst->dtype));
  }
  if ((uint64_t)dst->shape[1] * (uint64_t)dst->shape[2] > SIZE_MAX / 3 / elem)
    return kiln_fail(err, KILN_ERR_INVALID_ARG, "shape [1,%d,%d,3] is too large",
                     dst->shape[1], dst->shape[2]);
  size_t need = (size_t)dst->shape[1] * (size_t)dst->shape[2] * 3 * elem;
  if (!dst->data || dst->bytes != need)
    return kiln_fail(err, KILN_ERR_INVALID_ARG, "%s buffer of %zu bytes%s, shape needs %zu",
                     kiln_dtype_name(dst->dtype), dst->bytes, dst->data ? "" : " (no data)", need);
  return KILN_OK;
}

static void fill(const kiln_image *img, const tensor_lut *lut, const kiln_tensor_view *dst) {
  int32_t h = dst->shape[1], w = dst->shape[2];
  for (int32_t y = 0; y < h; y++) {
    const uint8_t *row = img->pixels + (size_t)y * img->stride;
    size_t base = (size_t)y * (size_t)w * 3;
    if (dst->dtype == KILN_F32) {
      float *out = (float *)dst->data + base;
      for (size_t i = 0; i < (size_t)w * 3; i++) out[i] = lut->real[i % 3][row[i]];
    } else {
      uint8_t *out = (uint8_t *)dst->data + base;
      for (size_t i = 0; i < (size_t)w * 3; i++) out[i] = lut->q[i % 3][row[i]];
    }
  }
}

kiln_status kiln_image_to_tensor(const kiln_image *img, const kiln_image_norm *norm,
                                 const kiln_tensor_view *dst, kiln_error *err) {
  const char *name = dst && dst->name ? dst->name : "";
  kiln_image_norm def = kiln_image_norm_default();
  kiln_image resized = {0};
  tensor_lut *lut = NULL;
  kiln_status st;
  if (!dst) {
    st = kiln_fail(err, KILN_ERR_INVALID_ARG, "no tensor given");
    goto done;
  }
  st = check_tensor(dst, err);
  if (st != KILN_OK) goto done;
  if (!image_ok(img)) {
    st = kiln_fail(err, KILN_ERR_INVALID_ARG, "the image has no pixels");
    goto done;
  }
  lut = kiln_malloc(sizeof *lut);
  if (!lut) {
    st = kiln_fail(err, KILN_ERR_NOMEM, "out of memory");
    goto done;
  }
  st = build_lut(norm ? norm : &def, dst, lut, err);
  if (st != KILN_OK) goto done;
  const kiln_image *src = img;
  if (img->width != dst->shape[2] || img->height != dst->shape[1]) {
    st = kiln_image_resize_bilinear(img, dst->shape[2], dst->shape[1], &resized, err);
    if (st != KILN_OK) goto done;
    src = &resized;
  }
  fill(src, lut, dst);
done:
  kiln_image_free(&resized);
  kiln_free(lut);
  if (st != KILN_OK) kiln_error_prefix(err, "input tensor '%s'", name);
  return st;
}
