/* fuzz/fuzz_tflite.c: the TFLite reader (bounds-checked FlatBuffers,
 * every table, vector, index and shape validated), the load-time passes,
 * interpreter creation (op lookup, shape inference, quantization checks,
 * planning) and one invoke on a zeroed input.
 *
 * Size guard: the reader accepts tensors of up to 2^40 elements, which a
 * real model never has but an allocation of which libFuzzer would report
 * as running out of memory. Models whose tensors together need more than
 * 64 MiB are parsed and simplified but not prepared, and interpreters
 * whose arena and scratch pass 64 MiB are created but not invoked, so the
 * run stays within -rss_limit_mb and -timeout. */
#include <stdlib.h>
#include <string.h>

#include "kiln/interp.h"
#include "kiln/model.h"

#define MAX_BYTES (64u << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool small_enough(const kiln_model *m) {
  uint64_t total = 0;
  for (int32_t i = 0; i < m->n_tensors; i++) {
    total += kiln_tensor_bytes(&m->tensors[i]);
    if (total > MAX_BYTES) return false;
  }
  return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  kiln_model *model = NULL;
  kiln_error err;
  kiln_status s = kiln_model_parse(data, size, true, "fuzz.tflite", &model, &err);
  if (s != KILN_OK) {
    if (model || err.msg[0] == '\0') abort(); /* failures say why, leave nothing */
    return 0;
  }
  if (kiln_model_simplify(model, &err) == KILN_OK && small_enough(model)) {
    kiln_interp_options opt = {.n_threads = 1};
    kiln_interp *it = NULL;
    if (kiln_interp_create(model, &opt, &it, &err) == KILN_OK) {
      kiln_memory_stats ms = kiln_interp_memory(it);
      if (ms.arena_bytes + ms.scratch_bytes <= MAX_BYTES) {
        for (int32_t i = 0; i < kiln_interp_input_count(it); i++) {
          kiln_tensor_view v = kiln_interp_input(it, i);
          if (v.data) memset(v.data, 0, v.bytes);
        }
        kiln_interp_invoke(it, &err);
      }
      kiln_interp_free(it);
    } else if (it || err.msg[0] == '\0') {
      abort();
    }
  }
  kiln_model_free(model);
  return 0;
}
