/*
 * data/netpbm.c: binary PGM (P5) and PPM (P6) with 8-bit samples: how kiln
 * stores images that came without a file (IDX digits), and the canonical
 * bytes their content hash is taken over. kiln writes exactly
 * "P5\n<w> <h>\n255\n" + pixels; the reader also takes other whitespace and
 * '#' comments in the header, but only maxval 255.
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "data/data_int.h"
#include "vision/image_int.h"

size_t netpbm_header(char *buf, int32_t width, int32_t height, int32_t channels) {
  return (size_t)snprintf(buf, 32, "P%c\n%d %d\n255\n", channels == 1 ? '5' : '6', width, height);
}

bool netpbm_magic(const uint8_t *data, size_t size) {
  return size >= 3 && data[0] == 'P' && (data[1] == '5' || data[1] == '6') &&
         isspace(data[2]);
}

/* Skips whitespace and comments, then reads a decimal number. */
static bool header_number(const uint8_t *d, size_t n, size_t *pos, uint64_t *out) {
  size_t p = *pos;
  for (;;) {
    while (p < n && isspace(d[p])) p++;
    if (p < n && d[p] == '#') {
      while (p < n && d[p] != '\n') p++;
      continue;
    }
    break;
  }
  if (p >= n || !isdigit(d[p])) return false;
  uint64_t v = 0;
  while (p < n && isdigit(d[p])) {
    v = v * 10 + (uint64_t)(d[p] - '0');
    if (v > 0xFFFFFFFFull) return false;
    p++;
  }
  *pos = p;
  *out = v;
  return true;
}

kiln_status netpbm_parse(const uint8_t *data, size_t size, uint64_t max_pixels, int32_t *width,
                         int32_t *height, int32_t *channels, const uint8_t **pixels,
                         kiln_error *err) {
  if (!netpbm_magic(data, size))
    return kiln_fail(err, KILN_ERR_FORMAT, "not a binary PGM/PPM image (P5/P6)");
  int32_t c = data[1] == '5' ? 1 : 3;
  size_t pos = 2;
  uint64_t w, h, maxval;
  if (!header_number(data, size, &pos, &w) || !header_number(data, size, &pos, &h) ||
      !header_number(data, size, &pos, &maxval) || pos >= size || !isspace(data[pos]))
    return kiln_fail(err, KILN_ERR_FORMAT, "truncated or malformed P%c header", data[1]);
  pos++;
  if (maxval != 255)
    return kiln_fail(err, KILN_ERR_UNSUPPORTED, "P%c maxval %llu (kiln reads 255 only)", data[1],
                     (unsigned long long)maxval);
  kiln_status s = kiln_image_check_size(w, h, max_pixels, err);
  if (s != KILN_OK) return s;
  uint64_t need = w * h * (uint64_t)c;
  if (size - pos < need)
    return kiln_fail(err, KILN_ERR_FORMAT, "truncated image: %llu of %llu pixel bytes",
                     (unsigned long long)(size - pos), (unsigned long long)need);
  *width = (int32_t)w;
  *height = (int32_t)h;
  *channels = c;
  *pixels = data + pos;
  return KILN_OK;
}
