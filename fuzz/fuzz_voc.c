/* fuzz/fuzz_voc.c: Pascal VOC XML (expat, entity declarations refused).
 * The input is Annotations/a.xml of a VOC folder whose JPEGImages/ holds
 * a.png, b.png and c.png; imported as VOC. */
#include "harness.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz_reset();
  fz_write("Annotations/a.xml", data, size);
  fz_write_image("JPEGImages/a.png", 0);
  fz_write_image("JPEGImages/b.png", 1);
  fz_write_image("JPEGImages/c.png", 2);
  fz_import("", KILN_DATA_VOC);
  return 0;
}
