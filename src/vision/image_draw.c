/*
 * vision/image_draw.c: filled and outlined rectangles and text labels on an
 * RGB8 image, for `kiln detect --draw`. Rectangles are half-open and clipped
 * to the image; coordinates are widened to 64 bits before any arithmetic so
 * extreme values cannot overflow.
 */
#include <string.h>

#include "vision/image_int.h"

/* Glyph cell: 5 columns plus 1 of spacing; 8 rows. Label margin: 1. */
#define CELL_W (KILN_FONT_W + 1)
#define LABEL_H (KILN_FONT_H + 2)

static bool drawable(const kiln_image *img) {
  return img && img->pixels && img->width >= 1 && img->height >= 1 &&
         img->stride >= (size_t)img->width * 3;
}

static int64_t clamp64(int64_t v, int64_t lo, int64_t hi) {
  return v < lo ? lo : v > hi ? hi : v;
}

static void fill(kiln_image *img, int64_t left, int64_t top, int64_t right, int64_t bottom,
                 kiln_rgb color) {
  left = clamp64(left, 0, img->width);
  right = clamp64(right, 0, img->width);
  top = clamp64(top, 0, img->height);
  bottom = clamp64(bottom, 0, img->height);
  for (int64_t y = top; y < bottom; y++) {
    uint8_t *p = img->pixels + (size_t)y * img->stride + 3 * (size_t)left;
    for (int64_t x = left; x < right; x++, p += 3) {
      p[0] = color.r;
      p[1] = color.g;
      p[2] = color.b;
    }
  }
}

void kiln_image_fill_rect(kiln_image *img, int32_t left, int32_t top, int32_t right,
                          int32_t bottom, kiln_rgb color) {
  if (drawable(img)) fill(img, left, top, right, bottom, color);
}

void kiln_image_draw_box(kiln_image *img, int32_t left, int32_t top, int32_t right,
                         int32_t bottom, int32_t thickness, kiln_rgb color) {
  if (!drawable(img) || thickness < 1 || right <= left || bottom <= top) return;
  int64_t l = left, t = top, r = right, b = bottom, k = thickness;
  if (2 * k >= r - l || 2 * k >= b - t) {
    fill(img, l, t, r, b, color);
    return;
  }
  fill(img, l, t, r, t + k, color);         /* top edge */
  fill(img, l, b - k, r, b, color);         /* bottom edge */
  fill(img, l, t + k, l + k, b - k, color); /* left edge */
  fill(img, r - k, t + k, r, b - k, color); /* right edge */
}

void kiln_image_text_size(const char *text, int32_t scale, int32_t *width, int32_t *height) {
  size_t n = text ? strlen(text) : 0;
  if (scale < 1) scale = 1;
  if (n == 0) {
    *width = *height = 0;
    return;
  }
  int64_t w = ((int64_t)n * CELL_W + 1) * scale, h = (int64_t)LABEL_H * scale;
  *width = (int32_t)clamp64(w, 0, INT32_MAX);
  *height = (int32_t)clamp64(h, 0, INT32_MAX);
}

void kiln_image_draw_text(kiln_image *img, int32_t x, int32_t y, const char *text,
                          int32_t scale, kiln_rgb color, const kiln_rgb *background) {
  if (!drawable(img) || !text || !*text) return;
  if (scale < 1) scale = 1;
  int64_t s = scale;
  if (background) {
    int32_t w, h;
    kiln_image_text_size(text, scale, &w, &h);
    fill(img, x, y, (int64_t)x + w, (int64_t)y + h, *background);
  }
  int64_t gx = (int64_t)x + s, gy = (int64_t)y + s; /* inside the margin */
  for (const char *c = text; *c; c++, gx += CELL_W * s) {
    if (gx >= img->width) break;
    unsigned char ch = (unsigned char)*c;
    if (ch < KILN_FONT_FIRST || ch > KILN_FONT_LAST) ch = '?';
    const uint8_t *glyph = kiln_font_5x8[ch - KILN_FONT_FIRST];
    for (int row = 0; row < KILN_FONT_H; row++) {
      for (int col = 0; col < KILN_FONT_W; col++) {
        if (!(glyph[row] >> (KILN_FONT_W - 1 - col) & 1)) continue;
        int64_t px = gx + col * s, py = gy + row * s;
        fill(img, px, py, px + s, py + s, color);
      }
    }
  }
}
