/*
 * vision/image_decode.c: the format-independent part of decoding: telling
 * JPEG from PNG by their first bytes, the header size check, pixel
 * allocation, and kiln_image_create/kiln_image_free.
 *
 * Invariant: a kiln_image either has pixels of height * stride bytes from
 * kiln_malloc with stride == width * 3, or is all zero.
 */
#include <stdio.h>
#include <string.h>

#include "base/file.h"
#include "vision/image_int.h"

static const uint8_t png_magic[4] = {0x89, 'P', 'N', 'G'};
static const uint8_t jpeg_magic[3] = {0xFF, 0xD8, 0xFF};

kiln_status kiln_image_check_size(uint64_t width, uint64_t height, uint64_t max_pixels,
                                  kiln_error *err) {
  if (max_pixels == 0) max_pixels = KILN_IMAGE_DEFAULT_MAX_PIXELS;
  if (width == 0 || height == 0)
    return kiln_fail(err, KILN_ERR_FORMAT, "image has no pixels (%llux%llu)",
                     (unsigned long long)width, (unsigned long long)height);
  /* Callers pass header values below 2^32 (JPEG has 16 bits, PNG 31), so
   * the product cannot overflow. */
  uint64_t pixels = width * height;
  if (pixels > max_pixels)
    return kiln_fail(err, KILN_ERR_LIMIT,
                     "image is %llux%llu (%llu pixels), over the limit of %llu pixels",
                     (unsigned long long)width, (unsigned long long)height,
                     (unsigned long long)pixels, (unsigned long long)max_pixels);
  if (width > INT32_MAX || height > INT32_MAX || pixels > SIZE_MAX / 3)
    return kiln_fail(err, KILN_ERR_LIMIT, "image is %llux%llu, too large for this machine",
                     (unsigned long long)width, (unsigned long long)height);
  return KILN_OK;
}

kiln_status kiln_image_alloc_pixels(int32_t width, int32_t height, kiln_image *out,
                                    kiln_error *err) {
  memset(out, 0, sizeof *out);
  size_t stride = (size_t)width * 3;
  uint8_t *pixels = kiln_malloc(stride * (size_t)height);
  if (!pixels)
    return kiln_fail(err, KILN_ERR_NOMEM, "out of memory for %dx%d pixels", width, height);
  out->width = out->source_width = width;
  out->height = out->source_height = height;
  out->stride = stride;
  out->pixels = pixels;
  out->orientation = 1;
  return KILN_OK;
}

kiln_status kiln_image_create(int32_t width, int32_t height, kiln_image *out,
                              kiln_error *err) {
  memset(out, 0, sizeof *out);
  if (width < 1 || height < 1)
    return kiln_fail(err, KILN_ERR_INVALID_ARG, "image size %dx%d: both must be at least 1",
                     width, height);
  if ((uint64_t)width * (uint64_t)height > SIZE_MAX / 3)
    return kiln_fail(err, KILN_ERR_LIMIT, "image size %dx%d: too large", width, height);
  kiln_status st = kiln_image_alloc_pixels(width, height, out, err);
  if (st == KILN_OK) memset(out->pixels, 0, out->stride * (size_t)height);
  return st;
}

void kiln_image_free(kiln_image *img) {
  if (!img) return;
  kiln_free(img->pixels);
  memset(img, 0, sizeof *img);
}

/* Names a few formats people mistake for images kiln reads. */
static const char *other_format(const uint8_t *d, size_t n) {
  if (n >= 6 && (memcmp(d, "GIF87a", 6) == 0 || memcmp(d, "GIF89a", 6) == 0)) return "a GIF image";
  if (n >= 12 && memcmp(d, "RIFF", 4) == 0 && memcmp(d + 8, "WEBP", 4) == 0) return "a WebP image";
  if (n >= 4 && (memcmp(d, "II*\0", 4) == 0 || memcmp(d, "MM\0*", 4) == 0)) return "a TIFF image";
  if (n >= 12 && memcmp(d + 4, "ftyp", 4) == 0) {
    if (memcmp(d + 8, "avif", 4) == 0) return "an AVIF image";
    if (memcmp(d + 8, "heic", 4) == 0 || memcmp(d + 8, "mif1", 4) == 0) return "a HEIF image";
  }
  if (n >= 2 && memcmp(d, "BM", 2) == 0) return "a BMP image";
  if (n >= 8 && memcmp(d + 4, "TFL3", 4) == 0) return "a TFLite model";
  return NULL;
}

static kiln_status decode_any(const uint8_t *d, size_t n, const kiln_image_options *options,
                              kiln_image *out, kiln_error *err) {
  uint64_t max_pixels = options ? options->max_pixels : 0;
  if (max_pixels == 0) max_pixels = KILN_IMAGE_DEFAULT_MAX_PIXELS;
  if (n >= sizeof png_magic && memcmp(d, png_magic, sizeof png_magic) == 0)
    return kiln_png_decode(d, n, max_pixels, out, err);
  if (n >= sizeof jpeg_magic && memcmp(d, jpeg_magic, sizeof jpeg_magic) == 0)
    return kiln_jpeg_decode(d, n, max_pixels, out, err);
  if (n == 0) return kiln_fail(err, KILN_ERR_FORMAT, "not a JPEG or PNG image: no data");
  if ((n < sizeof png_magic && memcmp(d, png_magic, n) == 0) ||
      (n < sizeof jpeg_magic && memcmp(d, jpeg_magic, n) == 0))
    return kiln_fail(err, KILN_ERR_FORMAT, "truncated image: only %zu bytes", n);
  const char *what = other_format(d, n);
  if (what)
    return kiln_fail(err, KILN_ERR_FORMAT, "not a JPEG or PNG image: it looks like %s", what);
  char first[3 * 8] = "";
  for (size_t i = 0, used = 0; i < n && i < 8; i++)
    used += (size_t)snprintf(first + used, sizeof first - used, "%s%02x", i ? " " : "", d[i]);
  return kiln_fail(err, KILN_ERR_FORMAT,
                   "not a JPEG or PNG image (it starts with bytes %s, neither FF D8 FF nor "
                   "89 50 4E 47)", first);
}

kiln_status kiln_image_decode_memory(const void *data, size_t size, const char *name,
                                     const kiln_image_options *options, kiln_image *out,
                                     kiln_error *err) {
  memset(out, 0, sizeof *out);
  kiln_status st;
  if (!data && size > 0)
    st = kiln_fail(err, KILN_ERR_INVALID_ARG, "image data is NULL");
  else
    st = decode_any(data, size, options, out, err);
  if (st != KILN_OK && name) kiln_error_prefix(err, "%s", name);
  return st;
}

kiln_status kiln_image_decode_file(const char *path, const kiln_image_options *options,
                                   kiln_image *out, kiln_error *err) {
  memset(out, 0, sizeof *out);
  kiln_mapped_file file;
  kiln_status st = kiln_file_map(path, &file, err); /* its message starts with path */
  if (st != KILN_OK) return st;
  st = decode_any(file.data, file.size, options, out, err);
  kiln_file_unmap(&file);
  if (st != KILN_OK) kiln_error_prefix(err, "%s", path);
  return st;
}
