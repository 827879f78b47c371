/* fuzz/harness.c: scratch folder, file writing and the checked import
 * shared by the dataset fuzz targets (see harness.h). */
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "data/data_int.h"

static char g_dir[256];
static uint8_t *g_png[4];
static size_t g_png_size[4];

static void remove_scratch(void) {
  if (g_dir[0]) fs_remove_tree(g_dir);
}

static void die(const char *what, const kiln_error *e) {
  fprintf(stderr, "fuzz harness: %s: %s\n", what, e ? e->msg : "");
  abort();
}

static void init_once(void) {
  if (g_dir[0]) return;
  const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR");
  snprintf(g_dir, sizeof g_dir, "%s/kiln-fuzz-XXXXXX", base ? base : "/tmp");
  if (!mkdtemp(g_dir)) die("mkdtemp", NULL);
  atexit(remove_scratch);
  for (int i = 0; i < 4; i++) {
    kiln_image img;
    kiln_error e;
    if (kiln_image_create(16, 12, &img, &e) != KILN_OK) die("image", &e);
    img.pixels[0] = (uint8_t)(40 * i + 1); /* four different hashes */
    if (kiln_image_encode_png(&img, &g_png[i], &g_png_size[i], &e) != KILN_OK) die("png", &e);
    kiln_image_free(&img);
  }
}

int fz_split(const uint8_t *data, size_t size, fz_part *parts, int max) {
  const size_t sep = sizeof FZ_SEP - 1;
  int n = 0;
  while (n < max - 1) {
    const uint8_t *hit = size >= sep ? memmem(data, size, FZ_SEP, sep) : NULL;
    if (!hit) break;
    parts[n++] = (fz_part){data, (size_t)(hit - data)};
    size -= (size_t)(hit - data) + sep;
    data = hit + sep;
  }
  parts[n++] = (fz_part){data, size};
  return n;
}

const char *fz_reset(void) {
  init_once();
  fs_remove_tree(g_dir);
  kiln_error e;
  if (fs_mkdirs(g_dir, &e) != KILN_OK) die("mkdir", &e);
  return g_dir;
}

void fz_write(const char *rel, const void *data, size_t size) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s", g_dir, rel);
  char *slash = strrchr(path, '/');
  *slash = '\0';
  kiln_error e;
  if (fs_mkdirs(path, &e) != KILN_OK) die("mkdir", &e);
  *slash = '/';
  FILE *f = fopen(path, "wb");
  if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0) die(path, NULL);
}

void fz_write_image(const char *rel, int i) { fz_write(rel, g_png[i], g_png_size[i]); }

static void check(const kiln_dataset *ds) {
  int32_t errors = 0, warnings = 0;
  for (int32_t i = 0; i < ds->n_problems; i++) {
    if (!ds->problems[i].message) abort();
    if (kiln_data_issue_severity(ds->problems[i].issue) == KILN_DATA_ERROR) errors++;
    else warnings++;
  }
  if (ds->n_problems < KILN_DATA_MAX_PROBLEMS && (errors != ds->n_errors || warnings != ds->n_warnings))
    abort();
  for (int32_t i = 0; i < ds->n_images; i++) {
    const kiln_data_image *im = &ds->images[i];
    if (im->width < 1 || im->height < 1 || strlen(im->hash) != KILN_DATA_HASH_HEX) abort();
    if (ds->task == KILN_TASK_CLASSIFY && (im->label < -1 || im->label >= ds->n_labels)) abort();
    for (int32_t b = 0; b < im->n_boxes; b++) {
      const kiln_data_box *bx = &im->boxes[b];
      if (bx->label < 0 || bx->label >= ds->n_labels) abort();
      if (!(bx->xmin >= 0 && bx->xmin < bx->xmax && bx->xmax <= (float)im->width)) abort();
      if (!(bx->ymin >= 0 && bx->ymin < bx->ymax && bx->ymax <= (float)im->height)) abort();
    }
  }
}

void fz_import(const char *rel, kiln_data_format format) {
  char path[512];
  snprintf(path, sizeof path, "%s%s%s", g_dir, *rel ? "/" : "", rel);
  kiln_data_options opt = kiln_data_options_default();
  opt.format = format;
  opt.threads = 1;
  opt.max_pixels = 1u << 20;
  opt.max_extract_bytes = 16u << 20;
  opt.temp_dir = g_dir;
  kiln_dataset *ds = NULL;
  kiln_error err;
  kiln_status s = kiln_data_import(path, &opt, &ds, &err);
  if (s != KILN_OK && err.msg[0] == '\0') abort(); /* a failure always says why */
  if (ds) {
    check(ds);
    char *json = NULL;
    if (kiln_dataset_report_json(ds, &json, &err) == KILN_OK) kiln_free(json);
  }
  kiln_dataset_free(ds);
}

int fz_connect(int port, int timeout_s) {
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  struct timeval tv = {timeout_s, 0};
  for (int tries = 0;; tries++) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket", NULL);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0) return fd;
    int e = errno;
    close(fd);
    if ((e != EADDRNOTAVAIL && e != EINTR && e != EAGAIN) || tries == 1000) {
      fprintf(stderr, "fuzz harness: connect to 127.0.0.1:%d: %s\n", port, strerror(e));
      abort();
    }
    nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
  }
}
