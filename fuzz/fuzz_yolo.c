/* fuzz/fuzz_yolo.c: YOLO data.yaml (libyaml) and label .txt files. The
 * input is cut at FZ_SEP into data.yaml, labels/train/a.txt,
 * labels/train/b.txt and labels/val/c.txt, beside images/train/a.png,
 * b.png and images/val/c.png; imported as YOLO. An input with no FZ_SEP
 * is data.yaml alone. */
#include "harness.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const char *const names[] = {"data.yaml", "labels/train/a.txt", "labels/train/b.txt",
                                      "labels/val/c.txt"};
  fz_part parts[4];
  int n = fz_split(data, size, parts, 4);
  fz_reset();
  for (int i = 0; i < n; i++) fz_write(names[i], parts[i].data, parts[i].size);
  fz_write_image("images/train/a.png", 0);
  fz_write_image("images/train/b.png", 1);
  fz_write_image("images/val/c.png", 2);
  fz_import("", KILN_DATA_YOLO);
  return 0;
}
