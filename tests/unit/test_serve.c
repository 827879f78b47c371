/*
 * The model server's C API (include/kiln/serve.h) as the studio will embed
 * it: option checks, start on a free port, a v2 infer over a raw socket on
 * a model built here, reload (good and broken file), stop; under ASan this
 * also checks that every path frees what it made.
 */
#include <arpa/inet.h>
#include <jansson.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "kiln/model.h"
#include "kiln/serve.h"
#include "testutil.h"

static char model_path[256];

/* [1,4] + [1,4] -> [1,4], float32, inputs "a" and "b". */
static void write_add_model(const char *path) {
  kiln_error err;
  kiln_model *m;
  if (kiln_model_new(&m, &err) != KILN_OK) abort();
  int32_t shape[2] = {1, 4};
  int32_t a = kiln_model_add_tensor(m, "a", KILN_F32, 2, shape, NULL, NULL, &err);
  int32_t b = kiln_model_add_tensor(m, "b", KILN_F32, 2, shape, NULL, NULL, &err);
  int32_t y = kiln_model_add_tensor(m, "y", KILN_F32, 2, shape, NULL, NULL, &err);
  kiln_op_options o = {.type = KILN_OPTS_ADD, .new_shape_count = -1};
  int32_t ins[2] = {a, b};
  if (kiln_model_add_op(m, KILN_OP_ADD, NULL, ins, 2, &y, 1, &o, NULL, 0, &err) < 0 ||
      kiln_model_set_io(m, ins, 2, &y, 1, &err) != KILN_OK || kiln_model_save(m, path, &err) != KILN_OK) {
    fprintf(stderr, "building the model: %s\n", err.msg);
    abort();
  }
  kiln_model_free(m);
}

/* One request with Connection: close; returns the status, body in *body
 * (malloc'd). */
static int http(int port, const char *method, const char *path, const char *body, char **out) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
    if (fd >= 0) close(fd);
    return -1;
  }
  char head[512];
  size_t blen = body ? strlen(body) : 0;
  int n = snprintf(head, sizeof head,
                   "%s %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n"
                   "Content-Length: %zu\r\n\r\n", method, path, blen);
  if (write(fd, head, (size_t)n) != n || (blen && write(fd, body, blen) != (ssize_t)blen)) {
    close(fd);
    return -1;
  }
  size_t cap = 65536, len = 0;
  char *buf = malloc(cap);
  ssize_t got;
  while ((got = read(fd, buf + len, cap - len - 1)) > 0) len += (size_t)got;
  close(fd);
  buf[len] = '\0';
  int status = -1;
  sscanf(buf, "HTTP/1.1 %d", &status);
  char *sep = strstr(buf, "\r\n\r\n");
  *out = strdup(sep ? sep + 4 : "");
  free(buf);
  return status;
}

static void test_options(void) {
  kiln_error err;
  kiln_server *s = (kiln_server *)1;
  kiln_serve_options o = kiln_serve_options_default();
  CHECK(kiln_server_start(&o, &s, &err) == KILN_ERR_INVALID_ARG && s == NULL);
  CHECK(strstr(err.msg, "no models") != NULL);
  kiln_serve_model bad[2] = {{"a b", model_path, NULL}, {"m", model_path, NULL}};
  o.models = bad;
  o.n_models = 1;
  CHECK(kiln_server_start(&o, &s, &err) == KILN_ERR_INVALID_ARG && strstr(err.msg, "'a b'"));
  kiln_serve_model twice[2] = {{"m", model_path, NULL}, {"m", model_path, NULL}};
  o.models = twice;
  o.n_models = 2;
  CHECK(kiln_server_start(&o, &s, &err) == KILN_ERR_INVALID_ARG && strstr(err.msg, "twice"));
  kiln_serve_model missing = {"m", "/nonexistent/model.tflite", NULL};
  o.models = &missing;
  o.n_models = 1;
  o.port = 0;
  CHECK(kiln_server_start(&o, &s, &err) == KILN_ERR_IO && strstr(err.msg, "/nonexistent/model.tflite"));
  kiln_serve_model ok = {"m", model_path, NULL};
  o.models = &ok;
  o.port = 70000;
  CHECK(kiln_server_start(&o, &s, &err) == KILN_ERR_INVALID_ARG);
  o.port = 0;
  o.host = "no.such.host.invalid";
  CHECK(kiln_server_start(&o, &s, &err) == KILN_ERR_IO && strstr(err.msg, "no.such.host.invalid"));
}

/* POSTs a + b and checks y. */
static void check_add(int port) {
  char *body = NULL;
  int status = http(port, "POST", "/v2/models/m/infer",
                    "{\"inputs\": [{\"name\": \"a\", \"shape\": [1, 4], \"datatype\": \"FP32\", \"data\": [1, 2, 3, 4]},"
                    "{\"name\": \"b\", \"shape\": [1, 4], \"datatype\": \"FP32\", \"data\": [0.5, 0.25, -3, 10]}]}",
                    &body);
  CHECK_MSG(status == 200, "status %d: %s", status, body ? body : "");
  json_t *root = body ? json_loads(body, 0, NULL) : NULL;
  json_t *data = json_object_get(json_array_get(json_object_get(root, "outputs"), 0), "data");
  const double want[4] = {1.5, 2.25, 0, 14};
  CHECK(json_array_size(data) == 4);
  for (size_t i = 0; i < 4 && i < json_array_size(data); i++)
    CHECK(json_number_value(json_array_get(data, i)) == want[i]);
  json_decref(root);
  free(body);
}

static void test_serve_reload_stop(void) {
  kiln_error err;
  kiln_serve_model m = {"m", model_path, NULL};
  kiln_serve_options o = kiln_serve_options_default();
  o.models = &m;
  o.n_models = 1;
  o.port = 0;
  o.threads = 2;
  kiln_server *s;
  REQUIRE(kiln_server_start(&o, &s, &err) == KILN_OK);
  int port = kiln_server_port(s);
  CHECK(port > 0 && port < 65536);
  check_add(port);
  char *body = NULL;
  CHECK(http(port, "GET", "/v2/health/ready", NULL, &body) == 200 && strstr(body, "true"));
  free(body);
  CHECK(http(port, "GET", "/v2/models/other", NULL, &body) == 404 && strstr(body, "unknown model 'other'"));
  free(body);
  CHECK(kiln_server_reload(s, &err) == KILN_OK);
  check_add(port);
  /* A broken file (put in place by rename, as a deployment would: the
   * loaded model maps its file): the reload fails naming it, and the
   * loaded model still serves. */
  char tmp[300];
  snprintf(tmp, sizeof tmp, "%s.new", model_path);
  FILE *f = fopen(tmp, "wb");
  REQUIRE(f != NULL);
  fputs("garbage!", f);
  fclose(f);
  REQUIRE(rename(tmp, model_path) == 0);
  CHECK(kiln_server_reload(s, &err) != KILN_OK && strstr(err.msg, model_path));
  check_add(port);
  CHECK(http(port, "GET", "/metrics", NULL, &body) == 200 && strstr(body, "kiln_model_reload_failures_total 1"));
  free(body);
  kiln_server_stop(s);
  CHECK(http(port, "GET", "/v2/health/live", NULL, &body) == -1);
  kiln_server_stop(NULL);
}

int main(void) {
  snprintf(model_path, sizeof model_path, "%s/kiln_test_serve_%d.tflite", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp",
           (int)getpid());
  write_add_model(model_path);
  RUN(test_options);
  RUN(test_serve_reload_stop);
  remove(model_path);
  return test_summary();
}
