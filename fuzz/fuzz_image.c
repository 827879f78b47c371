/* fuzz/fuzz_image.c: JPEG and PNG decoding (libjpeg, libpng, EXIF
 * orientation) from memory with a pixel limit of 4 Mpx, so hostile
 * headers must be refused before allocation; decoded images are checked
 * for consistent sizes and resized once. */
#include <stdlib.h>

#include "kiln/image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  kiln_image_options opt = {.max_pixels = 4u << 20};
  kiln_image img;
  kiln_error err;
  kiln_status s = kiln_image_decode_memory(data, size, "fuzz", &opt, &img, &err);
  if (s != KILN_OK) {
    if (err.msg[0] == '\0' || img.pixels) abort(); /* failures say why, leave nothing */
    return 0;
  }
  if (img.width < 1 || img.height < 1 || (uint64_t)img.source_width * (uint64_t)img.source_height > opt.max_pixels ||
      img.stride < (size_t)img.width * 3)
    abort();
  kiln_image small;
  if (kiln_image_resize_bilinear(&img, 7, 5, &small, &err) == KILN_OK) kiln_image_free(&small);
  kiln_image_free(&img);
  return 0;
}
