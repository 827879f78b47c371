/*
 * Box-aware augmentation (kiln/train.h): flips, window resampling for
 * random resized crops and scale jitter, and colour jitter, on float images
 * or RGB8 kiln_images. Boxes follow the pixels; the keep / clip / drop rules
 * are in the header. Random draws are made in the documented order only,
 * so a run with the same RNG state repeats exactly.
 */
#include <math.h>
#include <string.h>

#include "kiln/train.h"

static void flip_boxes(kiln_boxes *boxes, float width) {
  if (!boxes) return;
  for (int32_t i = 0; i < boxes->count; i++) {
    float *b = boxes->xyxy + 4 * (size_t)i;
    const float x1 = width - b[2], x2 = width - b[0];
    b[0] = x1;
    b[2] = x2;
  }
}

void kiln_aug_hflip(kiln_fimage *img, kiln_boxes *boxes) {
  const int32_t c = img->c;
  for (int32_t y = 0; y < img->h; y++) {
    float *row = img->data + (size_t)y * img->w * c;
    for (int32_t x = 0; x < img->w / 2; x++) {
      float *a = row + (size_t)x * c, *b = row + (size_t)(img->w - 1 - x) * c;
      for (int32_t k = 0; k < c; k++) {
        const float t = a[k];
        a[k] = b[k];
        b[k] = t;
      }
    }
  }
  flip_boxes(boxes, (float)img->w);
}

void kiln_aug_hflip_rgb8(kiln_image *img, kiln_boxes *boxes) {
  for (int32_t y = 0; y < img->height; y++) {
    uint8_t *row = img->pixels + (size_t)y * img->stride;
    for (int32_t x = 0; x < img->width / 2; x++) {
      uint8_t *a = row + (size_t)x * 3, *b = row + (size_t)(img->width - 1 - x) * 3;
      for (int k = 0; k < 3; k++) {
        const uint8_t t = a[k];
        a[k] = b[k];
        b[k] = t;
      }
    }
  }
  flip_boxes(boxes, (float)img->width);
}

/* Source pixel (x, y) channel k, or fill outside. */
static float sample_at(const kiln_fimage *f, const kiln_image *g, int32_t x, int32_t y, int32_t k,
                       float fill) {
  if (f) {
    if (x < 0 || y < 0 || x >= f->w || y >= f->h) return fill;
    return f->data[((size_t)y * f->w + x) * f->c + k];
  }
  if (x < 0 || y < 0 || x >= g->width || y >= g->height) return fill;
  return (float)g->pixels[(size_t)y * g->stride + (size_t)x * 3 + k];
}

/* Maps boxes through x' = (x - wx) * sx, y' = (y - wy) * sy and applies the
 * clip / drop rules for a w x h output. */
static void map_boxes(kiln_boxes *boxes, float wx, float wy, float sx, float sy, float w, float h,
                      float min_visible) {
  if (!boxes) return;
  int32_t kept = 0;
  for (int32_t i = 0; i < boxes->count; i++) {
    const float *b = boxes->xyxy + 4 * (size_t)i;
    const float x1 = (b[0] - wx) * sx, y1 = (b[1] - wy) * sy;
    const float x2 = (b[2] - wx) * sx, y2 = (b[3] - wy) * sy;
    const float area = (x2 - x1) * (y2 - y1);
    const float cx1 = fmaxf(x1, 0.0f), cy1 = fmaxf(y1, 0.0f);
    const float cx2 = fminf(x2, w), cy2 = fminf(y2, h);
    const float cw = cx2 - cx1, ch = cy2 - cy1;
    if (!(cw >= 1.0f && ch >= 1.0f && area > 0.0f && cw * ch >= min_visible * area)) continue;
    float *o = boxes->xyxy + 4 * (size_t)kept;
    o[0] = cx1;
    o[1] = cy1;
    o[2] = cx2;
    o[3] = cy2;
    if (boxes->labels) boxes->labels[kept] = boxes->labels[i];
    kept++;
  }
  boxes->count = kept;
}

kiln_status kiln_aug_crop_resize(const kiln_fimage *src, const kiln_image *src_rgb8,
                                 const float window[4], float fill, kiln_fimage *dst,
                                 kiln_boxes *boxes, float min_visible, kiln_error *err) {
  if ((src == NULL) == (src_rgb8 == NULL))
    return kiln_fail(err, KILN_ERR_INVALID_ARG, "crop: give exactly one source image");
  const int32_t c = src ? src->c : 3;
  if (dst->c != c || dst->w < 1 || dst->h < 1 || !(window[2] > 0.0f) || !(window[3] > 0.0f))
    return kiln_fail(err, KILN_ERR_INVALID_ARG,
                     "crop: window %gx%g into %dx%dx%d from %d channels", (double)window[2],
                     (double)window[3], (int)dst->w, (int)dst->h, (int)dst->c, (int)c);
  const float sx = window[2] / (float)dst->w, sy = window[3] / (float)dst->h;
  for (int32_t oy = 0; oy < dst->h; oy++) {
    const float fy = window[1] + ((float)oy + 0.5f) * sy - 0.5f;
    const int32_t y0 = (int32_t)floorf(fy);
    const float ty = fy - (float)y0;
    for (int32_t ox = 0; ox < dst->w; ox++) {
      const float fx = window[0] + ((float)ox + 0.5f) * sx - 0.5f;
      const int32_t x0 = (int32_t)floorf(fx);
      const float tx = fx - (float)x0;
      float *o = dst->data + ((size_t)oy * dst->w + ox) * c;
      for (int32_t k = 0; k < c; k++) {
        const float a = sample_at(src, src_rgb8, x0, y0, k, fill);
        const float b = sample_at(src, src_rgb8, x0 + 1, y0, k, fill);
        const float d = sample_at(src, src_rgb8, x0, y0 + 1, k, fill);
        const float e = sample_at(src, src_rgb8, x0 + 1, y0 + 1, k, fill);
        const float top = a + (b - a) * tx, bottom = d + (e - d) * tx;
        o[k] = top + (bottom - top) * ty;
      }
    }
  }
  map_boxes(boxes, window[0], window[1], 1.0f / sx, 1.0f / sy, (float)dst->w, (float)dst->h,
            min_visible);
  return KILN_OK;
}

static float uniform(kiln_rng *rng, float lo, float hi) {
  return lo + (hi - lo) * kiln_rng_uniform(rng);
}

void kiln_aug_random_crop_window(kiln_rng *rng, int32_t w, int32_t h, float min_scale,
                                 float max_scale, float min_ratio, float max_ratio,
                                 float window[4]) {
  const float area = (float)w * (float)h;
  const float log_lo = logf(min_ratio), log_hi = logf(max_ratio);
  for (int attempt = 0; attempt < 10; attempt++) {
    const float target = area * uniform(rng, min_scale, max_scale);
    const float ratio = expf(uniform(rng, log_lo, log_hi));
    const float cw = sqrtf(target * ratio), ch = sqrtf(target / ratio);
    const float px = kiln_rng_uniform(rng), py = kiln_rng_uniform(rng);
    if (cw <= (float)w && ch <= (float)h) {
      window[0] = px * ((float)w - cw);
      window[1] = py * ((float)h - ch);
      window[2] = cw;
      window[3] = ch;
      return;
    }
  }
  /* Fallback: the whole image cut to the nearest allowed aspect, centred. */
  const float in_ratio = (float)w / (float)h;
  float cw = (float)w, ch = (float)h;
  if (in_ratio < min_ratio)
    ch = cw / min_ratio;
  else if (in_ratio > max_ratio)
    cw = ch * max_ratio;
  window[0] = ((float)w - cw) * 0.5f;
  window[1] = ((float)h - ch) * 0.5f;
  window[2] = cw;
  window[3] = ch;
}

void kiln_aug_scale_jitter_window(kiln_rng *rng, int32_t w, int32_t h, int32_t out_w,
                                  int32_t out_h, float min_scale, float max_scale,
                                  float window[4]) {
  const float fit = fminf((float)out_w / (float)w, (float)out_h / (float)h);
  const float f = fit * uniform(rng, min_scale, max_scale);
  const float scaled_w = (float)w * f, scaled_h = (float)h * f;
  const float px = kiln_rng_uniform(rng), py = kiln_rng_uniform(rng);
  const float off_x = scaled_w > (float)out_w ? px * (scaled_w - (float)out_w) : 0.0f;
  const float off_y = scaled_h > (float)out_h ? py * (scaled_h - (float)out_h) : 0.0f;
  window[0] = off_x / f;
  window[1] = off_y / f;
  window[2] = (float)out_w / f;
  window[3] = (float)out_h / f;
}

/* The jitter on float values v [n pixels * c], whatever their storage. */
static void jitter(float *v, int64_t pixels, int32_t c, float fb, float fc, float fs,
                   float max_value) {
  const int64_t n = pixels * c;
  for (int64_t i = 0; i < n; i++) v[i] *= fb;
  double grey_sum = 0.0;
  for (int64_t p = 0; p < pixels; p++) {
    const float *q = v + p * c;
    grey_sum += c == 3 ? 0.299 * q[0] + 0.587 * q[1] + 0.114 * q[2] : q[0];
  }
  const float mean = pixels ? (float)(grey_sum / (double)pixels) : 0.0f;
  for (int64_t i = 0; i < n; i++) v[i] = mean + (v[i] - mean) * fc;
  if (c == 3)
    for (int64_t p = 0; p < pixels; p++) {
      float *q = v + p * 3;
      const float grey = 0.299f * q[0] + 0.587f * q[1] + 0.114f * q[2];
      for (int k = 0; k < 3; k++) q[k] = grey + (q[k] - grey) * fs;
    }
  for (int64_t i = 0; i < n; i++) v[i] = fminf(fmaxf(v[i], 0.0f), max_value);
}

void kiln_aug_color_jitter(kiln_fimage *img, kiln_rng *rng, float brightness, float contrast,
                           float saturation, float max_value) {
  const float fb = uniform(rng, 1.0f - brightness, 1.0f + brightness);
  const float fc = uniform(rng, 1.0f - contrast, 1.0f + contrast);
  const float fs = uniform(rng, 1.0f - saturation, 1.0f + saturation);
  jitter(img->data, (int64_t)img->h * img->w, img->c, fb, fc, fs, max_value);
}

kiln_status kiln_aug_color_jitter_rgb8(kiln_image *img, kiln_rng *rng, float brightness,
                                       float contrast, float saturation, kiln_error *err) {
  const float fb = uniform(rng, 1.0f - brightness, 1.0f + brightness);
  const float fc = uniform(rng, 1.0f - contrast, 1.0f + contrast);
  const float fs = uniform(rng, 1.0f - saturation, 1.0f + saturation);
  /* The contrast mean is over the whole image: convert it all. */
  const int64_t pixels = (int64_t)img->width * img->height;
  float *v = kiln_malloc((size_t)pixels * 3 * sizeof *v);
  if (!v)
    return kiln_fail(err, KILN_ERR_NOMEM, "colour jitter: %dx%d image", (int)img->width,
                     (int)img->height);
  for (int32_t y = 0; y < img->height; y++)
    for (int32_t i = 0; i < 3 * img->width; i++)
      v[(size_t)y * img->width * 3 + i] = img->pixels[(size_t)y * img->stride + i];
  jitter(v, pixels, 3, fb, fc, fs, 255.0f);
  for (int32_t y = 0; y < img->height; y++)
    for (int32_t i = 0; i < 3 * img->width; i++)
      img->pixels[(size_t)y * img->stride + i] = (uint8_t)lrintf(v[(size_t)y * img->width * 3 + i]);
  kiln_free(v);
  return KILN_OK;
}
