/* fuzz/fuzz_studio_json.c: the JSON request bodies of `kiln studio` through
 * its real handlers (body reading, jansson parse, validation, the database
 * writes of accepted requests), driven over loopback so that nothing of the
 * request path is duplicated here.
 *
 * Once per process: a studio with no workers (jobs stay queued) on a
 * scratch data folder on tmpfs, port 0; an administrator is set up and
 * logged in (session cookie + CSRF token), a detect project with labels
 * "cat" and "dog" is made and a 16x12 PNG uploaded into it.
 *
 * Input layout: byte 0 picks the request (mod 5), the rest is its body:
 *   0 POST /api/login                     {"name", "password"}
 *   1 POST /api/projects                  {"name", "task", "labels"}
 *   2 PUT  /api/projects/P/images/I/annotation {"label", "boxes", "split"}
 *   3 POST /api/projects/P/jobs           {"kind", "settings"}
 *   4 PATCH /api/projects/P               {"name", "labels"}
 * Checked: every request gets a complete HTTP response, 2xx or 4xx; a 5xx,
 * no answer or a crash in the studio's threads is a bug. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "data/data_int.h"
#include "harness.h"
#include "kiln/image.h"
#include "kiln/studio.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static kiln_studio *g_st;
static int g_port;
static char g_dir[256];
static char g_auth[512];   /* Cookie and X-CSRF-Token header lines */
static long long g_project, g_image;
static char g_resp[1 << 16];

static void die(const char *what, const char *msg) {
  fprintf(stderr, "fuzz_studio_json: %s: %s\n", what, msg);
  abort();
}

static void send_all(int fd, const void *p, size_t n) {
  const char *c = p;
  while (n > 0) {
    ssize_t k = send(fd, c, n, MSG_NOSIGNAL);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return; /* the studio may answer and close before the body's end */
    c += k;
    n -= (size_t)k;
  }
}

/* One request with Connection: close; the status, the whole response in
 * g_resp (cut at its size). */
static unsigned request(const char *method, const char *path, const char *headers, const void *body, size_t n) {
  int fd = fz_connect(g_port, 10);
  char head[1024];
  int hl = snprintf(head, sizeof head, "%s %s HTTP/1.1\r\nHost: fuzz\r\nConnection: close\r\n%s%s"
                    "Content-Length: %zu\r\n\r\n", method, path, g_auth, headers, n);
  send_all(fd, head, (size_t)hl);
  send_all(fd, body, n);
  size_t got = 0;
  int rerr = 0;
  for (;;) {
    ssize_t k = recv(fd, g_resp + got, sizeof g_resp - 1 - got, 0);
    if (k < 0 && errno == EINTR) continue; /* libFuzzer's timer signal */
    if (k < 0) rerr = errno;
    if (k <= 0) break;
    got += (size_t)k;
    if (got == sizeof g_resp - 1) got = 64; /* keep the status line, drop the rest */
  }
  close(fd);
  g_resp[got] = '\0';
  unsigned status = 0;
  if (sscanf(g_resp, "HTTP/1.%*1[01] %u", &status) != 1) die("no HTTP response", rerr ? strerror(rerr) : g_resp);
  return status;
}

static json_t *resp_json(void) {
  const char *b = strstr(g_resp, "\r\n\r\n");
  json_t *j = b ? json_loads(b + 4, 0, NULL) : NULL;
  if (!j) die("not a JSON answer", g_resp);
  return j;
}

static void expect(unsigned got, unsigned want, const char *what) {
  if (got != want) die(what, g_resp);
}

static void stop(void) {
  kiln_studio_stop(g_st);
  fs_remove_tree(g_dir);
}

static void start(void) {
  kiln_error err;
  const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
  snprintf(g_dir, sizeof g_dir, "%s/kiln-fuzz-studio-XXXXXX", base);
  if (!mkdtemp(g_dir)) die("mkdtemp", g_dir);
  kiln_studio_options opt = kiln_studio_options_default();
  opt.data_dir = g_dir;
  opt.port = 0;
  opt.workers = 0;
  if (kiln_studio_start(&opt, &g_st, &err) != KILN_OK) die("kiln_studio_start", err.msg);
  atexit(stop);
  const char *url = kiln_studio_url(g_st), *colon = strrchr(url, ':');
  g_port = colon ? atoi(colon + 1) : 0;

  static const char cred[] = "{\"name\":\"fuzzadmin\",\"password\":\"fuzz-password-1\"}";
  const char *js = "Content-Type: application/json\r\n";
  expect(request("POST", "/api/setup", js, cred, sizeof cred - 1), 201, "setup");
  expect(request("POST", "/api/login", js, cred, sizeof cred - 1), 200, "login");
  const char *c = strstr(g_resp, "kiln_session=");
  if (!c) die("no session cookie", g_resp);
  size_t clen = strcspn(c, ";\r\n");
  json_t *j = resp_json();
  const char *csrf = json_string_value(json_object_get(j, "csrf_token"));
  if (!csrf) die("no csrf_token", g_resp);
  snprintf(g_auth, sizeof g_auth, "Cookie: %.*s\r\nX-CSRF-Token: %s\r\n", (int)clen, c, csrf);
  json_decref(j);

  static const char proj[] = "{\"name\":\"fuzz\",\"task\":\"detect\",\"labels\":[\"cat\",\"dog\"]}";
  expect(request("POST", "/api/projects", js, proj, sizeof proj - 1), 201, "project");
  j = resp_json();
  g_project = json_integer_value(json_object_get(j, "id"));
  json_decref(j);

  kiln_image img;
  uint8_t *png = NULL;
  size_t png_size = 0;
  if (kiln_image_create(16, 12, &img, &err) != KILN_OK || kiln_image_encode_png(&img, &png, &png_size, &err) != KILN_OK)
    die("png", err.msg);
  kiln_image_free(&img);
  char path[256];
  snprintf(path, sizeof path, "/api/projects/%lld/files", g_project);
  expect(request("POST", path, "Content-Type: application/octet-stream\r\nX-Filename: a.png\r\n", png, png_size),
         201, "upload");
  kiln_free(png);
  snprintf(path, sizeof path, "/api/projects/%lld/images", g_project);
  expect(request("GET", path, "", "", 0), 200, "images");
  j = resp_json();
  g_image = json_integer_value(json_object_get(json_array_get(json_object_get(j, "images"), 0), "id"));
  json_decref(j);
  if (!g_project || !g_image) die("no project or image id", g_resp);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!g_st) start();
  if (size < 1) return 0;
  char path[256];
  const char *method = "POST";
  switch (data[0] % 5) {
    case 0: snprintf(path, sizeof path, "/api/login"); break;
    case 1: snprintf(path, sizeof path, "/api/projects"); break;
    case 2:
      method = "PUT";
      snprintf(path, sizeof path, "/api/projects/%lld/images/%lld/annotation", g_project, g_image);
      break;
    case 3: snprintf(path, sizeof path, "/api/projects/%lld/jobs", g_project); break;
    default:
      method = "PATCH";
      snprintf(path, sizeof path, "/api/projects/%lld", g_project);
      break;
  }
  unsigned status = request(method, path, "Content-Type: application/json\r\n", data + 1, size - 1);
  if (status < 200 || (status > 299 && status < 400) || status > 499) die("unexpected status", g_resp);
  return 0;
}
