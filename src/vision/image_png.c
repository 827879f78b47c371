/*
 * vision/image_png.c: PNG decoding and encoding with libpng.
 *
 * libpng reports errors through an error function that must not return;
 * ours copies the message and longjmps to the setjmp in the decode or
 * encode function, which destroys the libpng structs and frees what was
 * allocated. libpng allocates through kiln_malloc/kiln_free (so a failing
 * allocator is seen as KILN_ERR_NOMEM), reads from memory through a reader
 * that refuses to run past the end, and never prints: warnings are dropped.
 *
 * Everything that must survive a longjmp lives in a png_job reached through
 * a pointer, so no local is modified between setjmp and longjmp.
 */
#include <setjmp.h>
#include <stdio.h>
#include <string.h>

#include <png.h>

#include "base/file.h"
#include "vision/image_int.h"

typedef struct png_job {
  png_structp png;
  png_infop info;
  char msg[256];
  bool out_of_memory; /* an allocation failed: the error is NOMEM */
  /* decoding */
  const uint8_t *data;
  size_t size, pos;
  kiln_image img;
  png_bytep *rows;
  /* encoding */
  uint8_t *bytes;
  size_t len, cap;
} png_job;

static void on_error(png_structp png, png_const_charp msg) {
  png_job *job = png_get_error_ptr(png);
  snprintf(job->msg, sizeof job->msg, "%s", msg);
  png_longjmp(png, 1);
}

static void on_warning(png_structp png, png_const_charp msg) {
  (void)png;
  (void)msg;
}

static png_voidp on_malloc(png_structp png, png_alloc_size_t bytes) {
  void *p = kiln_malloc(bytes);
  if (!p) {
    png_job *job = png_get_mem_ptr(png);
    job->out_of_memory = true;
  }
  return p;
}

static void on_free(png_structp png, png_voidp p) {
  (void)png;
  kiln_free(p);
}

static void on_read(png_structp png, png_bytep out, size_t bytes) {
  png_job *job = png_get_io_ptr(png);
  if (bytes > job->size - job->pos) png_error(png, "truncated PNG data");
  memcpy(out, job->data + job->pos, bytes);
  job->pos += bytes;
}

/* Sets up libpng's conversions from any colour type and depth to RGB8. */
static void set_rgb8_transforms(png_structp png, png_infop info) {
  int color_type = png_get_color_type(png, info);
  int bit_depth = png_get_bit_depth(png, info);
  if (color_type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (color_type == PNG_COLOR_TYPE_GRAY && bit_depth < 8) png_set_expand_gray_1_2_4_to_8(png);
  if (bit_depth == 16) png_set_strip_16(png); /* keep the high byte, as TensorFlow does */
  if (!(color_type & PNG_COLOR_MASK_COLOR)) png_set_gray_to_rgb(png);
  /* Palette expansion turns tRNS into an alpha channel; drop that too. */
  if ((color_type & PNG_COLOR_MASK_ALPHA) || png_get_valid(png, info, PNG_INFO_tRNS))
    png_set_strip_alpha(png);
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
}

/* Runs the decode; libpng errors longjmp out of here to kiln_png_decode. */
static kiln_status decode(png_job *job, uint64_t max_pixels, kiln_error *err) {
  png_structp png = job->png;
  png_infop info = job->info;
  png_set_read_fn(png, job, on_read);
  /* libpng refuses widths or heights over a million by default; kiln's
   * pixel limit decides instead (a 2,000,000 x 1 strip is fine). */
  png_set_user_limits(png, PNG_UINT_31_MAX, PNG_UINT_31_MAX);
  png_read_info(png, info);
  uint32_t width = png_get_image_width(png, info), height = png_get_image_height(png, info);
  kiln_status st = kiln_image_check_size(width, height, max_pixels, err);
  if (st != KILN_OK) return st;

  set_rgb8_transforms(png, info);
  if (png_get_channels(png, info) != 3 || png_get_bit_depth(png, info) != 8 ||
      png_get_rowbytes(png, info) != (size_t)width * 3)
    return kiln_fail(err, KILN_ERR_INTERNAL,
                     "PNG conversion gave %d channels of %d bits (colour type %d)",
                     png_get_channels(png, info), png_get_bit_depth(png, info),
                     png_get_color_type(png, info));

  st = kiln_image_alloc_pixels((int32_t)width, (int32_t)height, &job->img, err);
  if (st != KILN_OK) return st;
  job->rows = kiln_malloc(sizeof *job->rows * height);
  if (!job->rows) return kiln_fail(err, KILN_ERR_NOMEM, "out of memory");
  for (uint32_t y = 0; y < height; y++) job->rows[y] = job->img.pixels + y * job->img.stride;
  png_read_image(png, job->rows);
  job->img.format = KILN_IMAGE_PNG;
  return KILN_OK;
}

kiln_status kiln_png_decode(const uint8_t *data, size_t size, uint64_t max_pixels,
                            kiln_image *out, kiln_error *err) {
  memset(out, 0, sizeof *out);
  png_job *job = kiln_malloc(sizeof *job);
  if (!job) return kiln_fail(err, KILN_ERR_NOMEM, "out of memory");
  memset(job, 0, sizeof *job);
  job->data = data;
  job->size = size;
  job->png = png_create_read_struct_2(PNG_LIBPNG_VER_STRING, job, on_error, on_warning, job,
                                      on_malloc, on_free);
  if (job->png) job->info = png_create_info_struct(job->png);

  kiln_status st;
  if (!job->info) {
    st = kiln_fail(err, KILN_ERR_NOMEM, "out of memory");
  } else if (setjmp(png_jmpbuf(job->png)) == 0) {
    st = decode(job, max_pixels, err);
  } else {
    st = job->out_of_memory ? KILN_ERR_NOMEM : KILN_ERR_FORMAT;
    kiln_fail(err, st, "corrupt PNG: %s", job->msg);
  }
  if (job->png) png_destroy_read_struct(&job->png, job->info ? &job->info : NULL, NULL);
  kiln_free(job->rows);
  if (st == KILN_OK)
    *out = job->img;
  else
    kiln_image_free(&job->img);
  kiln_free(job);
  return st;
}

static void on_write(png_structp png, png_bytep bytes, size_t n) {
  png_job *job = png_get_io_ptr(png);
  if (n > job->cap - job->len) {
    size_t cap = job->cap ? job->cap : 4096;
    while (cap - job->len < n) {
      if (cap > SIZE_MAX / 2) png_error(png, "PNG too large");
      cap *= 2;
    }
    uint8_t *grown = kiln_realloc(job->bytes, cap);
    if (!grown) {
      job->out_of_memory = true;
      png_error(png, "out of memory");
    }
    job->bytes = grown;
    job->cap = cap;
  }
  memcpy(job->bytes + job->len, bytes, n);
  job->len += n;
}

static void on_flush(png_structp png) { (void)png; }

/* Runs the encode; libpng errors longjmp out of here to kiln_image_encode_png. */
static void encode(png_job *job, const kiln_image *img) {
  png_structp png = job->png;
  png_set_write_fn(png, job, on_write, on_flush);
  png_set_IHDR(png, job->info, (uint32_t)img->width, (uint32_t)img->height, 8,
               PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
               PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, job->info);
  for (int32_t y = 0; y < img->height; y++)
    png_write_row(png, img->pixels + (size_t)y * img->stride);
  png_write_end(png, NULL);
}

kiln_status kiln_image_encode_png(const kiln_image *img, uint8_t **out_bytes, size_t *out_size,
                                  kiln_error *err) {
  *out_bytes = NULL;
  *out_size = 0;
  if (!img || !img->pixels || img->width < 1 || img->height < 1 ||
      img->stride < (size_t)img->width * 3)
    return kiln_fail(err, KILN_ERR_INVALID_ARG, "cannot encode an image without pixels");
  png_job *job = kiln_malloc(sizeof *job);
  if (!job) return kiln_fail(err, KILN_ERR_NOMEM, "out of memory");
  memset(job, 0, sizeof *job);
  job->png = png_create_write_struct_2(PNG_LIBPNG_VER_STRING, job, on_error, on_warning, job,
                                       on_malloc, on_free);
  if (job->png) job->info = png_create_info_struct(job->png);

  kiln_status st = KILN_OK;
  if (!job->info) {
    st = kiln_fail(err, KILN_ERR_NOMEM, "out of memory");
  } else if (setjmp(png_jmpbuf(job->png)) == 0) {
    encode(job, img);
  } else {
    st = job->out_of_memory ? KILN_ERR_NOMEM : KILN_ERR_INTERNAL;
    kiln_fail(err, st, "PNG encoding failed: %s", job->msg);
  }
  if (job->png) png_destroy_write_struct(&job->png, job->info ? &job->info : NULL);
  if (st == KILN_OK) {
    *out_bytes = job->bytes;
    *out_size = job->len;
  } else {
    kiln_free(job->bytes);
  }
  kiln_free(job);
  return st;
}

kiln_status kiln_image_write_png(const kiln_image *img, const char *path, kiln_error *err) {
  uint8_t *bytes;
  size_t size;
  kiln_status st = kiln_image_encode_png(img, &bytes, &size, err);
  if (st != KILN_OK) {
    kiln_error_prefix(err, "%s", path);
    return st;
  }
  st = kiln_file_write_atomic(path, bytes, size, err); /* its message starts with path */
  kiln_free(bytes);
  return st;
}
