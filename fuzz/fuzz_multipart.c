/* fuzz/fuzz_multipart.c: multipart/form-data request bodies as `kiln serve`
 * reads them: libmicrohttpd's post processor (which needs a real
 * connection, so the input travels over loopback) feeding serve's `file`
 * part collection, then the image decode (1 Mpx limit) and a classifier run.
 *
 * Once per process: a classifier (RESHAPE of an FP32 [1,2,2,3] image to
 * [1,12] scores, built with the C builder API) is written to a scratch
 * file and served by kiln_server_start on 127.0.0.1 (free port, 1 thread).
 * Each input is one POST /v1/models/m:classify with Connection: close.
 *
 * Input layout: the boundary (bytes up to the first '\n', at most 70, no
 * '\r'), then the body. Content-Type is
 * `multipart/form-data; boundary=<boundary>`.
 * Checked: every request gets a complete HTTP response whose status is 200
 * or a 4xx; a 5xx, no answer or a crash in the server's threads is a bug. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"
#include "kiln/model.h"
#include "kiln/serve.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static kiln_server *g_srv;
static int g_port;
static char g_model[256];

static void die(const char *what, const char *msg) {
  fprintf(stderr, "fuzz_multipart: %s: %s\n", what, msg);
  abort();
}

static void stop(void) {
  kiln_server_stop(g_srv);
  unlink(g_model);
}

static void start(void) {
  kiln_error err;
  kiln_model *m;
  const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
  snprintf(g_model, sizeof g_model, "%s/kiln-fuzz-multipart-%d.tflite", base, (int)getpid());
  if (kiln_model_new(&m, &err) != KILN_OK) die("model", err.msg);
  int32_t img = kiln_model_add_tensor(m, "image", KILN_F32, 4, (const int32_t[4]){1, 2, 2, 3}, NULL, NULL, &err);
  int32_t y = kiln_model_add_tensor(m, "scores", KILN_F32, 2, (const int32_t[2]){1, 12}, NULL, NULL, &err);
  kiln_op_options o = {.type = KILN_OPTS_RESHAPE, .new_shape_count = 2, .new_shape = {1, 12}};
  if (img < 0 || y < 0 || kiln_model_add_op(m, KILN_OP_RESHAPE, NULL, &img, 1, &y, 1, &o, NULL, 0, &err) < 0 ||
      kiln_model_set_io(m, &img, 1, &y, 1, &err) != KILN_OK || kiln_model_save(m, g_model, &err) != KILN_OK)
    die("building the classifier", err.msg);
  kiln_model_free(m);
  kiln_serve_model spec = {"m", g_model, NULL};
  kiln_serve_options opt = kiln_serve_options_default();
  opt.models = &spec;
  opt.n_models = 1;
  opt.port = 0;
  opt.threads = 1;
  opt.max_body = 1 << 20;
  opt.max_pixels = 1 << 20;
  if (kiln_server_start(&opt, &g_srv, &err) != KILN_OK) die("kiln_server_start", err.msg);
  g_port = kiln_server_port(g_srv);
  atexit(stop);
}

static void send_all(int fd, const void *p, size_t n) {
  const char *c = p;
  while (n > 0) {
    ssize_t k = send(fd, c, n, MSG_NOSIGNAL);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return; /* the server may close early (an answer before the body's end) */
    c += k;
    n -= (size_t)k;
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!g_srv) start();
  const uint8_t *nl = memchr(data, '\n', size < 71 ? size : 71);
  if (!nl || memchr(data, '\r', (size_t)(nl - data))) return 0;
  int blen = (int)(nl - data);
  const uint8_t *body = nl + 1;
  size_t n = size - (size_t)(nl + 1 - data);

  int fd = fz_connect(g_port, 10);
  char head[512];
  int hl = snprintf(head, sizeof head,
                    "POST /v1/models/m:classify HTTP/1.1\r\nHost: fuzz\r\nConnection: close\r\n"
                    "Content-Type: multipart/form-data; boundary=%.*s\r\nContent-Length: %zu\r\n\r\n",
                    blen, (const char *)data, n);
  send_all(fd, head, (size_t)hl);
  send_all(fd, body, n);
  char resp[4096];
  size_t got = 0;
  for (;;) {
    ssize_t k = recv(fd, resp + got, sizeof resp - 1 - got, 0);
    if (k < 0 && errno == EINTR) continue; /* libFuzzer's timer signal */
    if (k <= 0) break;
    got += (size_t)k;
    if (got == sizeof resp - 1) got = 64; /* keep the status line, drop the rest */
  }
  close(fd);
  resp[got] = '\0';
  unsigned status = 0;
  if (sscanf(resp, "HTTP/1.%*1[01] %u", &status) != 1) die("no HTTP response", resp);
  if (status != 200 && (status < 400 || status > 499)) die("unexpected status", resp);
  return 0;
}
