/* fuzz/fuzz_predict_b64.c: the TF-Serving :predict body of `kiln serve`
 * ({"instances": [{"b64": ...}, {"image_bytes": {"b64": ...}, "key": ...}]}):
 * serve_predict_parse and serve_predict_image, the functions the server's
 * predict route calls, then each decoded image through
 * kiln_image_decode_memory with a 1 Mpx limit, as the route does before
 * running the model. The input is the HTTP body. */
#include <stdlib.h>
#include <string.h>

#include "kiln/image.h"
#include "serve/serve_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_refused(serve_response *resp) {
  if (resp->status != 400 || !resp->body || !strstr(resp->body, "\"error\"")) abort();
  serve_response_clear(resp);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  serve_response resp = {0};
  json_t *root = serve_predict_parse(data, size, &resp);
  if (!root) {
    check_refused(&resp);
    return 0;
  }
  const json_t *instances = json_object_get(root, "instances");
  size_t n = json_array_size(instances);
  if (n < 1 || n > SERVE_MAX_INSTANCES) abort();
  kiln_image_options iopt = {1u << 20};
  for (size_t i = 0; i < n; i++) {
    size_t len = 0;
    uint8_t *bytes = serve_predict_image(json_array_get(instances, i), i, &len, &resp);
    if (!bytes) {
      check_refused(&resp);
      continue;
    }
    kiln_image img = {0};
    kiln_error err;
    if (kiln_image_decode_memory(bytes, len, "instance", &iopt, &img, &err) == KILN_OK) {
      if (img.width < 1 || img.height < 1 || (uint64_t)img.width * (uint64_t)img.height > (1u << 20)) abort();
      kiln_image_free(&img);
    } else if (err.msg[0] == '\0') {
      abort();
    }
    kiln_free(bytes);
  }
  json_decref(root);
  return 0;
}
