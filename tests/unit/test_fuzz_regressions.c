/*
 * test_fuzz_regressions.c: the model inputs in fuzz/regressions/tflite/
 * (each once crashed kiln or hit undefined behaviour under libFuzzer) run
 * through parse, simplify, interpreter create and invoke in every build,
 * not only the clang fuzz build: each must give a status with a message
 * or run to the end. The sanitizer build checks the UB and memory errors
 * they used to cause.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiln/interp.h"
#include "kiln/model.h"
#include "testutil.h"

/* Runs one input; returns how far it got (0 parse, 1 create, 2 invoke). */
static int run_model(const uint8_t *data, size_t size, const char *name) {
  kiln_model *m = NULL;
  kiln_error err = {0};
  kiln_status s = kiln_model_parse(data, size, true, name, &m, &err);
  if (s == KILN_OK) s = kiln_model_simplify(m, &err);
  int reached = 0;
  if (s == KILN_OK) {
    kiln_interp_options io = {.n_threads = 1};
    kiln_interp *it = NULL;
    reached = 1;
    s = kiln_interp_create(m, &io, &it, &err);
    if (s == KILN_OK) {
      for (int32_t i = 0; i < kiln_interp_input_count(it); i++) {
        kiln_tensor_view v = kiln_interp_input(it, i);
        memset(v.data, 0, v.bytes);
      }
      s = kiln_interp_invoke(it, &err);
      reached = 2;
      kiln_interp_free(it);
    }
  }
  CHECK_MSG(s == KILN_OK || err.msg[0] != '\0', "%s: status %s without a message", name,
            kiln_status_str(s));
  fprintf(stderr, "%s: %s%s%s\n", name, kiln_status_str(s), s == KILN_OK ? "" : ": ",
          s == KILN_OK ? "" : err.msg);
  kiln_model_free(m);
  return reached;
}

static void test_tflite_regressions(void) {
  char dir[4096];
  snprintf(dir, sizeof dir, "%s/../../fuzz/regressions/tflite", test_data_path(""));
  DIR *d = opendir(dir);
  REQUIRE(d);
  int files = 0, requantize_refused = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.') continue;
    char path[8192];
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    FILE *f = fopen(path, "rb");
    REQUIRE(f);
    uint8_t buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    int reached = run_model(buf, n, e->d_name);
    /* the QUANTIZE op with a 2^122 scale ratio is refused at create */
    if (strcmp(e->d_name, "requantize_shift_122") == 0 && reached == 1) requantize_refused++;
    files++;
  }
  closedir(d);
  CHECK(files >= 3);
  CHECK(requantize_refused == 1);
}

int main(void) {
  RUN(test_tflite_regressions);
  return test_summary();
}
