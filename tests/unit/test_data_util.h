/*
 * test_data_util.h: what the dataset tests (test_data*.c) share: scratch
 * folders, writing and copying files, importing with every problem printed
 * on failure, and looking problems up by their exact message.
 * Header-only (static functions): each test is one executable.
 */
#ifndef KILN_TEST_DATA_UTIL_H
#define KILN_TEST_DATA_UTIL_H

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kiln/data.h"
#include "testutil.h"

/* Path of a committed fixture (tests/data/datasets/name), in one of four
 * rotating buffers. */
static inline const char *fixture(const char *name) {
  static char bufs[4][4096];
  static int next;
  char *b = bufs[next++ & 3];
  snprintf(b, 4096, "%s", test_data_path("datasets"));
  size_t n = strlen(b);
  snprintf(b + n, 4096 - n, "/%s", name);
  return b;
}

static inline void path_join(char *out, size_t size, const char *dir, const char *rel) {
  snprintf(out, size, "%s/%s", dir, rel);
}

static inline void mkdirs_for(const char *path) {
  char buf[4096];
  snprintf(buf, sizeof buf, "%s", path);
  for (char *p = buf + 1; *p; p++) {
    if (*p != '/') continue;
    *p = '\0';
    mkdir(buf, 0755);
    *p = '/';
  }
}

static inline void write_bytes(const char *dir, const char *rel, const void *data, size_t n) {
  char path[4096];
  path_join(path, sizeof path, dir, rel);
  mkdirs_for(path);
  FILE *f = fopen(path, "wb");
  if (!f) {
    fprintf(stderr, "cannot write %s: %s\n", path, strerror(errno));
    abort();
  }
  if (n) fwrite(data, 1, n, f);
  fclose(f);
}

static inline void write_text(const char *dir, const char *rel, const char *text) {
  write_bytes(dir, rel, text, strlen(text));
}

/* A w x h grey PGM whose pixels depend on seed (distinct seeds, distinct
 * images). */
static inline void write_pgm(const char *dir, const char *rel, int w, int h, unsigned seed) {
  size_t n = (size_t)w * (size_t)h;
  char header[32];
  int hl = snprintf(header, sizeof header, "P5\n%d %d\n255\n", w, h);
  unsigned char *buf = malloc((size_t)hl + n);
  memcpy(buf, header, (size_t)hl);
  for (size_t i = 0; i < n; i++) buf[hl + i] = (unsigned char)((i * 7 + seed * 131 + seed / 7) & 255);
  buf[hl] = (unsigned char)seed; /* so seeds differing by 256 differ too */
  if (n > 1) buf[hl + 1] = (unsigned char)(seed >> 8);
  write_bytes(dir, rel, buf, (size_t)hl + n);
  free(buf);
}

static inline void copy_tree(const char *src, const char *dst) {
  mkdir(dst, 0755);
  DIR *d = opendir(src);
  if (!d) return;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    char s[4096], t[4096];
    path_join(s, sizeof s, src, e->d_name);
    path_join(t, sizeof t, dst, e->d_name);
    struct stat st;
    if (stat(s, &st) != 0) continue;
    if (S_ISDIR(st.st_mode)) {
      copy_tree(s, t);
      continue;
    }
    FILE *in = fopen(s, "rb"), *out = fopen(t, "wb");
    char buf[65536];
    size_t n;
    while (in && out && (n = fread(buf, 1, sizeof buf, in)) > 0) fwrite(buf, 1, n, out);
    if (in) fclose(in);
    if (out) fclose(out);
  }
  closedir(d);
}

static inline void remove_tree(const char *path) {
  struct stat st;
  if (lstat(path, &st) != 0) return;
  if (S_ISDIR(st.st_mode)) {
    DIR *d = opendir(path);
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
      if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
      char p[4096];
      path_join(p, sizeof p, path, e->d_name);
      remove_tree(p);
    }
    if (d) closedir(d);
    rmdir(path);
  } else {
    unlink(path);
  }
}

static char scratch_dirs[4][256];

/* A fresh scratch folder (static buffer per slot 0..3); scratch_done
 * removes it. */
static inline const char *scratch(int slot) {
  const char *tmp = getenv("TMPDIR");
  snprintf(scratch_dirs[slot], sizeof scratch_dirs[slot], "%s/kiln-test-data-XXXXXX",
           tmp && *tmp ? tmp : "/tmp");
  if (!mkdtemp(scratch_dirs[slot])) abort();
  return scratch_dirs[slot];
}

static inline void scratch_done(int slot) {
  if (scratch_dirs[slot][0]) remove_tree(scratch_dirs[slot]);
  scratch_dirs[slot][0] = '\0';
}

/* A copy of a fixture in a scratch folder: dir/<name>. */
static inline const char *scratch_copy(int slot, const char *name) {
  static char paths[4][512];
  const char *dir = scratch(slot);
  snprintf(paths[slot], sizeof paths[slot], "%s/%s", dir, name);
  copy_tree(fixture(name), paths[slot]);
  return paths[slot];
}

static inline void print_problems(const kiln_dataset *ds) {
  for (int32_t i = 0; ds && i < ds->n_problems; i++)
    fprintf(stderr, "    [%s] %s\n", kiln_data_issue_name(ds->problems[i].issue), ds->problems[i].message);
}

/* Imports path; *status gets the result. Never NULL unless out of memory
 * or a bad option. */
static inline kiln_dataset *import_with(const char *path, const kiln_data_options *opt, kiln_status *status) {
  kiln_dataset *ds = NULL;
  kiln_error err = {0};
  *status = kiln_data_import(path, opt, &ds, &err);
  return ds;
}

/* Imports path expecting success; prints the problems otherwise. */
static inline kiln_dataset *import_ok(const char *path) {
  kiln_status s;
  kiln_dataset *ds = import_with(path, NULL, &s);
  if (s != KILN_OK) {
    fprintf(stderr, "  import of %s failed (%s):\n", path, kiln_status_str(s));
    print_problems(ds);
  }
  return ds;
}

/* True when ds has a problem of that issue with exactly that message;
 * prints every problem when not. */
static inline bool has_problem(const kiln_dataset *ds, kiln_data_issue issue, const char *message) {
  for (int32_t i = 0; ds && i < ds->n_problems; i++)
    if (ds->problems[i].issue == issue && strcmp(ds->problems[i].message, message) == 0) return true;
  fprintf(stderr, "  missing [%s] %s\n  problems were:\n", kiln_data_issue_name(issue), message);
  print_problems(ds);
  return false;
}

/* The image whose source is name, or NULL. */
static inline const kiln_data_image *image_named(const kiln_dataset *ds, const char *name) {
  for (int32_t i = 0; ds && i < ds->n_images; i++)
    if (strcmp(ds->images[i].source, name) == 0) return &ds->images[i];
  return NULL;
}

static inline bool box_is(const kiln_data_box *b, float x0, float y0, float x1, float y1, int32_t label, uint32_t flags) {
  bool ok = b->xmin == x0 && b->ymin == y0 && b->xmax == x1 && b->ymax == y1 && b->label == label &&
            b->flags == flags;
  if (!ok)
    fprintf(stderr, "  box (%g,%g)-(%g,%g) label %d flags %u, expected (%g,%g)-(%g,%g) label %d flags %u\n",
            (double)b->xmin, (double)b->ymin, (double)b->xmax, (double)b->ymax, b->label, b->flags,
            (double)x0, (double)y0, (double)x1, (double)y1, label, flags);
  return ok;
}

/* SHA-256 hex of a file's bytes, computed here (not through kiln). */
static inline void file_sha256(const char *path, char hex[KILN_DATA_HASH_HEX + 1]) {
  hex[0] = '\0';
  FILE *f = fopen(path, "rb");
  if (!f) return;
  crypto_hash_sha256_state st;
  crypto_hash_sha256_init(&st);
  unsigned char buf[65536], digest[32];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) crypto_hash_sha256_update(&st, buf, n);
  fclose(f);
  crypto_hash_sha256_final(&st, digest);
  sodium_bin2hex(hex, KILN_DATA_HASH_HEX + 1, digest, sizeof digest);
}

#endif
