/* fuzz/fuzz_idx.c: IDX (MNIST) files. The input is cut at FZ_SEP into
 * train-images-idx3-ubyte, train-labels-idx1-ubyte and labels.txt; a part
 * starting with the gzip magic gets a .gz name (read through zlib).
 * Imported as IDX. */
#include <stdio.h>

#include "harness.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const char *const names[] = {"train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                      "labels.txt"};
  fz_part parts[3];
  int n = fz_split(data, size, parts, 3);
  fz_reset();
  for (int i = 0; i < n; i++) {
    char name[64];
    bool gz = i < 2 && parts[i].size >= 2 && parts[i].data[0] == 0x1f && parts[i].data[1] == 0x8b;
    snprintf(name, sizeof name, "%s%s", names[i], gz ? ".gz" : "");
    fz_write(name, parts[i].data, parts[i].size);
  }
  fz_import("", KILN_DATA_IDX);
  return 0;
}
