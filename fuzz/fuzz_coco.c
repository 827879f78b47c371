/* fuzz/fuzz_coco.c: COCO JSON (jansson). The input is
 * annotations/instances_train.json beside images/a.png, b.png, c.png;
 * imported as COCO. */
#include "harness.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz_reset();
  fz_write("annotations/instances_train.json", data, size);
  fz_write_image("images/a.png", 0);
  fz_write_image("images/b.png", 1);
  fz_write_image("images/c.png", 2);
  fz_import("", KILN_DATA_COCO);
  return 0;
}
