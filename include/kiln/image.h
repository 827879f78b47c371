/*
 * kiln/image.h: images for the vision pipeline: decoding JPEG and PNG to
 * 8-bit RGB, EXIF orientation, bilinear resizing, conversion into a model's
 * input tensor, drawing boxes and labels, and PNG encoding.
 *
 *   kiln_error err;
 *   kiln_image img;
 *   if (kiln_image_decode_file("photo.jpg", NULL, &img, &err) != KILN_OK) {
 *     fprintf(stderr, "%s\n", err.msg);  // "photo.jpg: not a JPEG or PNG ..."
 *     return 1;
 *   }
 *   kiln_tensor_view in = kiln_interp_input(interp, 0);    // [1,300,300,3]
 *   kiln_image_to_tensor(&img, NULL, &in, &err);           // resize + scale
 *   ...
 *   kiln_rgb red = {255, 0, 0}, black = {0, 0, 0};
 *   kiln_image_draw_box(&img, 10, 20, 110, 220, 2, red);
 *   kiln_image_draw_text(&img, 10, 20, "person 0.87", 1, red, &black);
 *   kiln_image_write_png(&img, "out.png", &err);
 *   kiln_image_free(&img);
 *
 * Pixels are always RGB, 8 bits per channel, rows top to bottom, left to
 * right, `stride` bytes from one row to the next; every buffer comes from
 * kiln_malloc. A kiln_image is a plain struct owned by the caller; only
 * kiln_image_free releases its pixels. Decoding never prints and never exits:
 * corrupt, truncated or oversized input returns an error. No function keeps
 * state between calls, so different images can be handled on different
 * threads at once.
 */
#ifndef KILN_IMAGE_H
#define KILN_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kiln/base.h"
#include "kiln/interp.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Where an image's pixels came from. */
typedef enum kiln_image_format {
  KILN_IMAGE_RAW = 0, /* made in memory (kiln_image_create, resize) */
  KILN_IMAGE_JPEG = 1,
  KILN_IMAGE_PNG = 2
} kiln_image_format;

typedef struct kiln_image {
  int32_t width, height; /* as displayed: after EXIF orientation */
  size_t stride;         /* bytes from one row to the next: width * 3 */
  uint8_t *pixels;       /* RGB8, height rows of stride bytes; owned */
  kiln_image_format format;
  int32_t orientation;   /* EXIF orientation applied (1-8); 1 when none */
  int32_t source_width, source_height; /* as stored in the file */
} kiln_image;

/* 50 megapixels: larger than any camera photo a model is fed, small enough
 * that a hostile header cannot make kiln allocate gigabytes. */
#define KILN_IMAGE_DEFAULT_MAX_PIXELS 50000000u

typedef struct kiln_image_options {
  /* Images with more pixels (width * height, as stored) are refused with
   * KILN_ERR_LIMIT after reading the header, before any pixel memory is
   * allocated. 0 means KILN_IMAGE_DEFAULT_MAX_PIXELS. */
  uint64_t max_pixels;
} kiln_image_options;

/* Decodes a JPEG or PNG file to RGB8. The format is recognised from the
 * first bytes, never from the name. options may be NULL for defaults.
 * JPEG: baseline and progressive; greyscale, YCbCr, RGB, CMYK and YCCK
 * (CMYK with an Adobe marker is read as inverted, Adobe's convention);
 * the EXIF orientation in an APP1 segment is applied, so width/height are
 * the displayed size and source_width/source_height the stored one. Truncated or undecodable
 * entropy data is an error, not a grey fill; data after the last scanline
 * is not read.
 * PNG: every colour type and bit depth, interlaced or not. 16-bit samples
 * keep their high byte (v >> 8), and alpha, including a tRNS chunk's, is
 * dropped (not composited): both as TensorFlow's decode_png with 3 uint8
 * channels does. Gamma and colour-profile chunks are ignored. Chunks after
 * the image data are not read.
 * JPEG uses libjpeg's default accurate integer IDCT and fancy upsampling
 * (as PIL and OpenCV do; TensorFlow defaults to the fast IDCT, which can
 * differ by a level or two).
 * On success *out owns its pixels (release with kiln_image_free); on failure
 * *out is zeroed and nothing is left allocated.
 * @retval KILN_ERR_IO      the file could not be read
 * @retval KILN_ERR_FORMAT  not a JPEG or PNG, corrupt or truncated data
 * @retval KILN_ERR_UNSUPPORTED  a JPEG kiln cannot convert: 2 components,
 *   12-bit samples, lossless or hierarchical coding
 * @retval KILN_ERR_LIMIT   over options->max_pixels (the message has the
 *   sizes), or a progressive JPEG of more than 1000 scans (a known way to
 *   make libjpeg spin)
 * @retval KILN_ERR_NOMEM   an allocation failed
 * Every message starts with path. */
kiln_status kiln_image_decode_file(const char *path, const kiln_image_options *options,
                                   kiln_image *out, kiln_error *err);

/* As kiln_image_decode_file, from size bytes at data (not retained). name,
 * if non-NULL, prefixes error messages (a file name, "request body"). */
kiln_status kiln_image_decode_memory(const void *data, size_t size, const char *name,
                                     const kiln_image_options *options, kiln_image *out,
                                     kiln_error *err);

/* Makes a width x height image of black pixels, format KILN_IMAGE_RAW.
 * @retval KILN_ERR_INVALID_ARG  a size below 1
 * @retval KILN_ERR_NOMEM        the pixels could not be allocated */
kiln_status kiln_image_create(int32_t width, int32_t height, kiln_image *out,
                              kiln_error *err);

/* Frees img's pixels and zeroes it. NULL or an already-freed (zeroed) image
 * is fine. */
void kiln_image_free(kiln_image *img);

/* Resizes src to width x height into a new image *out (stretching: no
 * letterbox, aspect ratio not kept). Bilinear with half-pixel centres: the
 * output pixel x samples the source at (x + 0.5) * src_w / width - 0.5,
 * clamped to the edge pixels, and likewise for y. This is TensorFlow's
 * resize_bilinear with half_pixel_centers=True (and TFLite's
 * RESIZE_BILINEAR with that option), then rounded to the nearest integer
 * (halves up). OpenCV's INTER_LINEAR samples the same points but rounds
 * its weights to 11 bits, so it can differ by 1. No antialiasing when
 * shrinking (neither library does). *out must not alias src.
 * @retval KILN_ERR_INVALID_ARG  src has no pixels, or a size below 1
 * @retval KILN_ERR_NOMEM */
kiln_status kiln_image_resize_bilinear(const kiln_image *src, int32_t width, int32_t height,
                                       kiln_image *out, kiln_error *err);

/* How pixel values become a model's real input values, per channel (R, G,
 * B): real = (x - mean[c]) / std[c], computed in float. */
typedef struct kiln_image_norm {
  float mean[3];
  float std[3];
} kiln_image_norm;

/* mean 127.5 and std 127.5 for every channel: x / 255 * 2 - 1, i.e. [-1, 1],
 * what MobileNet and the SSD detectors were trained on. */
kiln_image_norm kiln_image_norm_default(void);

/* Fills a model input tensor from img: batch 1, NHWC, shape [1,H,W,3].
 * If img is not W x H it is first resized with kiln_image_resize_bilinear
 * (stretching). Each value is normalized with norm (NULL: the default), then
 *   float32: stored as the real value;
 *   uint8, int8: quantized with the tensor's per-tensor scale and zero point
 *     the way TFLite's QUANTIZE op does: q = round(real / scale) + zero_point
 *     (float division, halves away from zero), clamped to the type's range.
 * (A model whose uint8 input takes the raw pixel values gets them with
 * mean = zero_point and std = 1 / scale.)
 * dst is typically kiln_interp_input(interp, i); only its dtype, rank, shape,
 * quant, data and bytes are used, and only dst->data is written.
 * @retval KILN_ERR_INVALID_ARG  shape not [1,H,W,3], bytes not matching the
 *   shape, no data, missing or per-axis quantization, scale not positive,
 *   a zero or non-finite std, or img without pixels
 * @retval KILN_ERR_UNSUPPORTED  a dtype other than float32, uint8, int8
 * @retval KILN_ERR_NOMEM        (only when resizing)
 * Messages name the tensor. */
kiln_status kiln_image_to_tensor(const kiln_image *img, const kiln_image_norm *norm,
                                 const kiln_tensor_view *dst, kiln_error *err);

/* Encodes img as an 8-bit RGB, non-interlaced PNG. On success *out_bytes
 * (from kiln_malloc; the caller frees it with kiln_free) holds *out_size
 * bytes.
 * @retval KILN_ERR_INVALID_ARG  img has no pixels
 * @retval KILN_ERR_NOMEM */
kiln_status kiln_image_encode_png(const kiln_image *img, uint8_t **out_bytes, size_t *out_size,
                                  kiln_error *err);

/* Encodes img as PNG and writes it to path atomically (path is either left
 * untouched or complete). Errors as kiln_image_encode_png, plus
 * KILN_ERR_IO when the file cannot be written; messages start with path. */
kiln_status kiln_image_write_png(const kiln_image *img, const char *path, kiln_error *err);

typedef struct kiln_rgb {
  uint8_t r, g, b;
} kiln_rgb;

/* Drawing. Rectangles are half-open: columns left..right-1, rows
 * top..bottom-1; any coordinates are accepted and everything is clipped to
 * the image, so nothing can fail. An empty rectangle draws nothing. */

/* Fills the rectangle with color. */
void kiln_image_fill_rect(kiln_image *img, int32_t left, int32_t top, int32_t right,
                          int32_t bottom, kiln_rgb color);

/* Draws the outline of the rectangle, thickness pixels wide, growing inward
 * from its edges (a box thicker than half its size is filled). thickness
 * below 1 draws nothing. */
void kiln_image_draw_box(kiln_image *img, int32_t left, int32_t top, int32_t right,
                         int32_t bottom, int32_t thickness, kiln_rgb color);

/* Text uses kiln's built-in font: printable ASCII in 5x7 cells (plus one row
 * for descenders), one line; other bytes show as '?'. A label of n
 * characters occupies (6 * n + 1) x 10 pixels times scale: a margin of one
 * pixel all round and one pixel between characters. scale below 1 is 1. */
void kiln_image_text_size(const char *text, int32_t scale, int32_t *width, int32_t *height);

/* Draws text with the label's top-left corner at (x, y) (see
 * kiln_image_text_size), in color, first filling the label's rectangle with
 * *background unless background is NULL. Clipped to the image. */
void kiln_image_draw_text(kiln_image *img, int32_t x, int32_t y, const char *text,
                          int32_t scale, kiln_rgb color, const kiln_rgb *background);

#ifdef __cplusplus
}
#endif
#endif
