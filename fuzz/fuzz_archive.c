/* fuzz/fuzz_archive.c: archive extraction (libarchive: zip, tar and
 * compressed tar; kiln's own checks for absolute and ".." names, links,
 * entry count, depth and sizes) followed by format detection and import
 * of what was extracted. The input is written as data.tar (libarchive
 * recognises the format from the bytes, not the name) and imported with
 * format detection. */
#include "harness.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz_reset();
  fz_write("data.tar", data, size);
  fz_import("data.tar", KILN_DATA_AUTO);
  return 0;
}
