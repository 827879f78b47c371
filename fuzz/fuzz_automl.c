/* fuzz/fuzz_automl.c: AutoML (Vertex AI) CSV. The input is data.csv
 * beside images/a.png .. d.png; imported as AutoML. */
#include "harness.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz_reset();
  fz_write("data.csv", data, size);
  fz_write_image("images/a.png", 0);
  fz_write_image("images/b.png", 1);
  fz_write_image("images/c.png", 2);
  fz_write_image("images/d.png", 3);
  fz_import("", KILN_DATA_AUTOML);
  return 0;
}
