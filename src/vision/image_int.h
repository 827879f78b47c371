/*
 * vision/image_int.h: what the image files share with each other and with
 * their tests: the size check every decoder runs on the header, the pixel
 * allocation, the per-format decoders, the EXIF parser and orientation
 * transform, and the font table.
 */
#ifndef KILN_VISION_IMAGE_INT_H
#define KILN_VISION_IMAGE_INT_H

#include <stddef.h>
#include <stdint.h>

#include "kiln/image.h"

/* Refuses a zero size (KILN_ERR_FORMAT) and width * height > max_pixels
 * (KILN_ERR_LIMIT, with the sizes in the message), and sizes whose RGB8
 * buffer would not fit in size_t or in int32 dimensions. width and height
 * must be below 2^32 (true of every JPEG and PNG header). */
kiln_status kiln_image_check_size(uint64_t width, uint64_t height, uint64_t max_pixels,
                                  kiln_error *err);

/* Allocates width x height RGB8 pixels (uninitialised) into *out and sets
 * width, height, stride, the source sizes and orientation 1. The sizes must
 * have passed kiln_image_check_size or be small. */
kiln_status kiln_image_alloc_pixels(int32_t width, int32_t height, kiln_image *out,
                                    kiln_error *err);

/* The format decoders: data is the whole file. On failure *out is zeroed and
 * messages carry no file name (the caller prefixes it). */
kiln_status kiln_jpeg_decode(const uint8_t *data, size_t size, uint64_t max_pixels,
                             kiln_image *out, kiln_error *err);
kiln_status kiln_png_decode(const uint8_t *data, size_t size, uint64_t max_pixels,
                            kiln_image *out, kiln_error *err);

/* The EXIF orientation (1-8) in an APP1 segment's payload (starting with
 * "Exif\0\0"). Returns 1 when there is none or the segment is malformed or
 * the value is out of range: a bad EXIF block never fails a decode. Reads
 * nothing outside data[0, size). */
int32_t kiln_exif_orientation(const uint8_t *data, size_t size);

/* Transforms img's pixels from stored to displayed order for an EXIF
 * orientation (2-8; 1 and out-of-range values leave img as it is), swapping
 * width and height for 5-8, and records the orientation. */
kiln_status kiln_image_apply_orientation(kiln_image *img, int32_t orientation,
                                         kiln_error *err);

/* The built-in font: printable ASCII 0x20..0x7E, 8 rows per glyph (rows 0-6
 * the 5x7 cell with the baseline under row 6, row 7 for descenders), bit 4
 * the leftmost of 5 columns. */
#define KILN_FONT_FIRST 0x20
#define KILN_FONT_LAST 0x7E
#define KILN_FONT_W 5
#define KILN_FONT_H 8
extern const uint8_t kiln_font_5x8[KILN_FONT_LAST - KILN_FONT_FIRST + 1][KILN_FONT_H];

#endif
