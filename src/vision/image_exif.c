/*
 * vision/image_exif.c: the EXIF orientation tag of a JPEG's APP1 segment,
 * and turning stored pixels into displayed ones.
 *
 * The segment is untrusted: every read is checked against its size, and
 * anything malformed just means "no orientation" (1).
 *
 * Layout read: "Exif\0\0", then a TIFF header (byte order "II" little endian
 * or "MM" big endian, the number 42, the offset of IFD0 from the TIFF
 * header), then IFD0: a 16-bit entry count and 12-byte entries (tag, type,
 * count, value or offset). Orientation is tag 0x0112, type SHORT, count 1,
 * its value in the entry's first two value bytes.
 */
#include <string.h>

#include "vision/image_int.h"

#define EXIF_TAG_ORIENTATION 0x0112
#define TIFF_TYPE_SHORT 3

static uint32_t read_u16(const uint8_t *p, int big_endian) {
  return big_endian ? (uint32_t)p[0] << 8 | p[1] : (uint32_t)p[1] << 8 | p[0];
}

static uint32_t read_u32(const uint8_t *p, int big_endian) {
  return big_endian ? read_u16(p, 1) << 16 | read_u16(p + 2, 1)
                    : read_u16(p + 2, 0) << 16 | read_u16(p, 0);
}

int32_t kiln_exif_orientation(const uint8_t *data, size_t size) {
  static const uint8_t exif_id[6] = {'E', 'x', 'i', 'f', 0, 0};
  if (!data || size < sizeof exif_id || memcmp(data, exif_id, sizeof exif_id) != 0) return 1;
  const uint8_t *tiff = data + sizeof exif_id;
  size_t tiff_size = size - sizeof exif_id;
  if (tiff_size < 8) return 1;
  int big_endian;
  if (tiff[0] == 'I' && tiff[1] == 'I')
    big_endian = 0;
  else if (tiff[0] == 'M' && tiff[1] == 'M')
    big_endian = 1;
  else
    return 1;
  if (read_u16(tiff + 2, big_endian) != 42) return 1;
  uint32_t ifd = read_u32(tiff + 4, big_endian);
  if (ifd < 8 || ifd > tiff_size || tiff_size - ifd < 2) return 1;
  uint32_t count = read_u16(tiff + ifd, big_endian);
  size_t entries = (tiff_size - ifd - 2) / 12;
  if (count < entries) entries = count;
  for (size_t i = 0; i < entries; i++) {
    const uint8_t *entry = tiff + ifd + 2 + 12 * i;
    if (read_u16(entry, big_endian) != EXIF_TAG_ORIENTATION) continue;
    if (read_u16(entry + 2, big_endian) != TIFF_TYPE_SHORT) return 1;
    if (read_u32(entry + 4, big_endian) != 1) return 1;
    uint32_t value = read_u16(entry + 8, big_endian);
    return value >= 1 && value <= 8 ? (int32_t)value : 1;
  }
  return 1;
}

/* Where displayed pixel (x, y) comes from in the stored image: a stored
 * column sx = cx + ax * x + bx * y and row sy = cy + ay * x + by * y. */
typedef struct orient_map {
  int32_t ax, bx, cx, ay, by, cy;
} orient_map;

static orient_map map_for(int32_t orientation, int32_t sw, int32_t sh) {
  /* Displayed = stored flipped and/or rotated, as the EXIF 2.3 table says:
   * 2 mirror left-right, 3 rotate 180, 4 mirror top-bottom, 5 transpose,
   * 6 rotate 90 clockwise, 7 transverse, 8 rotate 90 anticlockwise. */
  switch (orientation) {
    case 2: return (orient_map){-1, 0, sw - 1, 0, 1, 0};
    case 3: return (orient_map){-1, 0, sw - 1, 0, -1, sh - 1};
    case 4: return (orient_map){1, 0, 0, 0, -1, sh - 1};
    case 5: return (orient_map){0, 1, 0, 1, 0, 0};
    case 6: return (orient_map){0, 1, 0, -1, 0, sh - 1};
    case 7: return (orient_map){0, -1, sw - 1, -1, 0, sh - 1};
    case 8: return (orient_map){0, -1, sw - 1, 1, 0, 0};
    default: return (orient_map){1, 0, 0, 0, 1, 0};
  }
}

kiln_status kiln_image_apply_orientation(kiln_image *img, int32_t orientation,
                                         kiln_error *err) {
  if (orientation < 2 || orientation > 8) return KILN_OK;
  int32_t sw = img->width, sh = img->height;
  int32_t dw = orientation >= 5 ? sh : sw, dh = orientation >= 5 ? sw : sh;
  size_t dstride = (size_t)dw * 3;
  uint8_t *dst = kiln_malloc(dstride * (size_t)dh);
  if (!dst)
    return kiln_fail(err, KILN_ERR_NOMEM, "out of memory rotating %dx%d pixels", sw, sh);
  orient_map m = map_for(orientation, sw, sh);
  for (int32_t y = 0; y < dh; y++) {
    uint8_t *row = dst + (size_t)y * dstride;
    for (int32_t x = 0; x < dw; x++) {
      int32_t sx = m.cx + m.ax * x + m.bx * y;
      int32_t sy = m.cy + m.ay * x + m.by * y;
      memcpy(row + 3 * (size_t)x, img->pixels + (size_t)sy * img->stride + 3 * (size_t)sx, 3);
    }
  }
  kiln_free(img->pixels);
  img->pixels = dst;
  img->width = dw;
  img->height = dh;
  img->stride = dstride;
  img->orientation = orientation;
  return KILN_OK;
}
