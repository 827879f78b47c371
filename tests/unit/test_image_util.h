/*
 * test_image_util.h: helpers shared by the test_image_*.c tests: encoders
 * that write test images straight with libjpeg and libpng (so the decoder
 * is checked against files kiln did not write), a counting allocator that
 * can fail the Nth allocation, and file loading. Header-only (static
 * inline) because each test is its own executable.
 */
#ifndef KILN_TEST_IMAGE_UTIL_H
#define KILN_TEST_IMAGE_UTIL_H

#include <setjmp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <png.h>

#include "kiln/image.h"

/* ---- JPEG writing (libjpeg, into a malloc'd buffer) ---- */

typedef struct jpeg_spec {
  int components;       /* 1 grey, 3 RGB, 4 CMYK (written as Adobe YCCK/CMYK) */
  int quality;          /* 1..100 */
  bool progressive;
  bool no_adobe;        /* CMYK without the Adobe marker libjpeg adds */
  const uint8_t *app1;  /* an APP1 payload to write, or NULL */
  size_t app1_len;
} jpeg_spec;

/* Encodes w x h samples (components per pixel, row-major). Returns a
 * malloc'd buffer (free with free) and its size. */
static inline uint8_t *test_jpeg_encode(const uint8_t *samples, int w, int h,
                                        const jpeg_spec *spec, size_t *size) {
  struct jpeg_compress_struct c;
  struct jpeg_error_mgr jerr;
  unsigned char *buf = NULL;
  unsigned long len = 0;
  c.err = jpeg_std_error(&jerr);
  jpeg_create_compress(&c);
  jpeg_mem_dest(&c, &buf, &len);
  c.image_width = (JDIMENSION)w;
  c.image_height = (JDIMENSION)h;
  c.input_components = spec->components;
  c.in_color_space = spec->components == 1 ? JCS_GRAYSCALE
                     : spec->components == 4 ? JCS_CMYK
                                             : JCS_RGB;
  jpeg_set_defaults(&c);
  jpeg_set_quality(&c, spec->quality, TRUE);
  if (spec->progressive) jpeg_simple_progression(&c);
  if (spec->no_adobe) c.write_Adobe_marker = FALSE;
  jpeg_start_compress(&c, TRUE);
  if (spec->app1) jpeg_write_marker(&c, JPEG_APP0 + 1, spec->app1, (unsigned)spec->app1_len);
  while (c.next_scanline < c.image_height) {
    JSAMPROW row = (JSAMPROW)(samples + (size_t)c.next_scanline * (size_t)w * (size_t)spec->components);
    jpeg_write_scanlines(&c, &row, 1);
  }
  jpeg_finish_compress(&c);
  jpeg_destroy_compress(&c);
  *size = len;
  return buf;
}

/* ---- PNG writing (libpng, into a malloc'd buffer) ---- */

typedef struct png_spec {
  int color_type; /* PNG_COLOR_TYPE_* */
  int bit_depth;
  bool interlace;
  const png_color *palette; /* for PNG_COLOR_TYPE_PALETTE */
  int n_palette;
  const uint8_t *trns; /* palette alpha, or NULL */
  int n_trns;
  const png_color_16 *trns_color; /* grey/RGB transparent colour, or NULL */
} png_spec;

typedef struct test_buf {
  uint8_t *data;
  size_t len, cap;
} test_buf;

static inline void test_png_write_cb(png_structp png, png_bytep bytes, size_t n) {
  test_buf *b = png_get_io_ptr(png);
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap : 1024;
    while (cap < b->len + n) cap *= 2;
    b->data = realloc(b->data, cap);
    if (!b->data) abort();
    b->cap = cap;
  }
  memcpy(b->data + b->len, bytes, n);
  b->len += n;
}

static inline void test_png_flush_cb(png_structp png) { (void)png; }

static inline int test_png_channels(int color_type) {
  switch (color_type) {
    case PNG_COLOR_TYPE_GRAY: return 1;
    case PNG_COLOR_TYPE_GRAY_ALPHA: return 2;
    case PNG_COLOR_TYPE_RGB: return 3;
    case PNG_COLOR_TYPE_RGB_ALPHA: return 4;
    default: return 1; /* palette: one index */
  }
}

/* Encodes w x h pixels given as one uint16 per sample (channels per pixel:
 * the colour type's, palette images one index), each below 2^bit_depth.
 * Packs sub-byte depths and writes 16-bit samples big-endian. */
static inline uint8_t *test_png_encode(const uint16_t *samples, int w, int h,
                                       const png_spec *spec, size_t *size) {
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
  png_infop info = png_create_info_struct(png);
  test_buf b = {0};
  int ch = test_png_channels(spec->color_type);
  size_t rowbytes = ((size_t)w * (size_t)ch * (size_t)spec->bit_depth + 7) / 8;
  uint8_t **rows = calloc((size_t)h, sizeof *rows);
  uint8_t *all = calloc(rowbytes * (size_t)h, 1);
  if (setjmp(png_jmpbuf(png))) abort();
  png_set_write_fn(png, &b, test_png_write_cb, test_png_flush_cb);
  png_set_user_limits(png, PNG_UINT_31_MAX, PNG_UINT_31_MAX);
  png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, spec->bit_depth, spec->color_type,
               spec->interlace ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  if (spec->palette) png_set_PLTE(png, info, spec->palette, spec->n_palette);
  if (spec->trns || spec->trns_color)
    png_set_tRNS(png, info, spec->trns, spec->n_trns, spec->trns_color);
  for (int y = 0; y < h; y++) {
    uint8_t *r = all + (size_t)y * rowbytes;
    for (int i = 0; i < w * ch; i++) {
      unsigned v = samples[(size_t)y * (size_t)w * (size_t)ch + (size_t)i];
      switch (spec->bit_depth) {
        case 16: r[2 * i] = (uint8_t)(v >> 8); r[2 * i + 1] = (uint8_t)v; break;
        case 8: r[i] = (uint8_t)v; break;
        default: {
          int per = 8 / spec->bit_depth;
          int shift = 8 - spec->bit_depth * (i % per + 1);
          r[i / per] |= (uint8_t)(v << shift);
        }
      }
    }
    rows[y] = r;
  }
  png_write_info(png, info);
  png_write_image(png, rows);
  png_write_end(png, NULL);
  png_destroy_write_struct(&png, &info);
  free(rows);
  free(all);
  *size = b.len;
  return b.data;
}

/* ---- A counting allocator that can fail the Nth allocation ---- */

typedef struct count_alloc {
  long calls;        /* allocations (and reallocs) so far */
  long fail_at;      /* fail the call with this number (0-based); -1: never */
  long failed;       /* how many calls were failed */
  size_t live;       /* bytes currently allocated */
  size_t peak;       /* most bytes allocated at once */
  long live_blocks;
} count_alloc;

#define COUNT_HDR 16

static inline void *count_alloc_fn(size_t bytes, void *ctx) {
  count_alloc *a = ctx;
  if (a->calls++ == a->fail_at) {
    a->failed++;
    return NULL;
  }
  uint8_t *p = malloc(bytes + COUNT_HDR);
  if (!p) return NULL;
  memcpy(p, &bytes, sizeof bytes);
  a->live += bytes;
  a->live_blocks++;
  if (a->live > a->peak) a->peak = a->live;
  return p + COUNT_HDR;
}

static inline void count_free_fn(void *ptr, void *ctx) {
  count_alloc *a = ctx;
  if (!ptr) return;
  uint8_t *p = (uint8_t *)ptr - COUNT_HDR;
  size_t bytes;
  memcpy(&bytes, p, sizeof bytes);
  a->live -= bytes;
  a->live_blocks--;
  free(p);
}

static inline void *count_realloc_fn(void *ptr, size_t bytes, void *ctx) {
  count_alloc *a = ctx;
  if (!ptr) return count_alloc_fn(bytes, ctx);
  if (a->calls++ == a->fail_at) {
    a->failed++;
    return NULL;
  }
  uint8_t *p = (uint8_t *)ptr - COUNT_HDR;
  size_t old;
  memcpy(&old, p, sizeof old);
  uint8_t *q = realloc(p, bytes + COUNT_HDR);
  if (!q) return NULL;
  memcpy(q, &bytes, sizeof bytes);
  a->live = a->live - old + bytes;
  if (a->live > a->peak) a->peak = a->live;
  return q + COUNT_HDR;
}

/* Installs a counting allocator on a (zeroed, fail_at as given). */
static inline void count_alloc_install(count_alloc *a, long fail_at) {
  memset(a, 0, sizeof *a);
  a->fail_at = fail_at;
  kiln_allocator al = {count_alloc_fn, count_realloc_fn, count_free_fn, a};
  kiln_set_allocator(&al);
}

/* ---- Files ---- */

/* Reads a whole file into a malloc'd buffer; NULL if it cannot. */
static inline uint8_t *test_read_file(const char *path, size_t *size) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  uint8_t *data = NULL;
  size_t len = 0, cap = 0;
  for (;;) {
    if (len == cap) {
      cap = cap ? cap * 2 : 4096;
      data = realloc(data, cap);
      if (!data) abort();
    }
    size_t n = fread(data + len, 1, cap - len, f);
    if (n == 0) break;
    len += n;
  }
  fclose(f);
  *size = len;
  return data;
}

/* The largest difference between two images' samples, or 256 when their
 * sizes differ. */
static inline int test_image_max_diff(const kiln_image *a, const kiln_image *b) {
  if (a->width != b->width || a->height != b->height) return 256;
  int worst = 0;
  for (int32_t y = 0; y < a->height; y++)
    for (int32_t i = 0; i < a->width * 3; i++) {
      int d = abs((int)a->pixels[(size_t)y * a->stride + (size_t)i] -
                  (int)b->pixels[(size_t)y * b->stride + (size_t)i]);
      if (d > worst) worst = d;
    }
  return worst;
}

#endif
