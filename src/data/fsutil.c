/*
 * data/fsutil.c: the small file-system helpers the importers share
 * (listing one directory sorted, extension tests, mkdir -p, rm -r without
 * following links, whole-file reads with a size cap).
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/file.h"
#include "data/data_int.h"

bool fs_is_dir(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

bool fs_is_file(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static int by_name(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

kiln_status fs_list(const char *dir, fs_entries *out, kiln_error *err) {
  memset(out, 0, sizeof *out);
  DIR *d = opendir(dir);
  if (!d) return kiln_fail(err, KILN_ERR_IO, "%s: cannot open directory: %s", dir, strerror(errno));
  int32_t cap = 0;
  struct dirent *e;
  kiln_status s = KILN_OK;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.') continue;
    if (out->n == cap) {
      if (cap >= (1 << 26)) {
        s = kiln_fail(err, KILN_ERR_LIMIT, "%s: more than %d entries", dir, 1 << 26);
        break;
      }
      cap = cap ? cap * 2 : 32;
      char **names = kiln_realloc(out->names, (size_t)cap * sizeof *names);
      if (!names) {
        s = kiln_fail(err, KILN_ERR_NOMEM, "%s: out of memory", dir);
        break;
      }
      out->names = names;
    }
    out->names[out->n] = kiln_strdup(e->d_name);
    if (!out->names[out->n]) {
      s = kiln_fail(err, KILN_ERR_NOMEM, "%s: out of memory", dir);
      break;
    }
    out->n++;
  }
  closedir(d);
  if (s == KILN_OK && out->n) {
    qsort(out->names, (size_t)out->n, sizeof *out->names, by_name);
    out->is_dir = kiln_calloc((size_t)out->n, sizeof *out->is_dir);
    if (!out->is_dir) s = kiln_fail(err, KILN_ERR_NOMEM, "%s: out of memory", dir);
    for (int32_t i = 0; s == KILN_OK && i < out->n; i++) {
      size_t len = strlen(dir) + strlen(out->names[i]) + 2;
      char *p = kiln_malloc(len);
      if (!p) {
        s = kiln_fail(err, KILN_ERR_NOMEM, "%s: out of memory", dir);
        break;
      }
      snprintf(p, len, "%s/%s", dir, out->names[i]);
      out->is_dir[i] = fs_is_dir(p);
      kiln_free(p);
    }
  }
  if (s != KILN_OK) fs_entries_free(out);
  return s;
}

void fs_entries_free(fs_entries *e) {
  for (int32_t i = 0; i < e->n; i++) kiln_free(e->names[i]);
  kiln_free(e->names);
  kiln_free(e->is_dir);
  memset(e, 0, sizeof *e);
}

bool fs_has_ext(const char *name, const char *ext) {
  size_t n = strlen(name), e = strlen(ext);
  return n > e && strcasecmp(name + n - e, ext) == 0;
}

bool fs_is_image_name(const char *name) {
  return fs_has_ext(name, ".jpg") || fs_has_ext(name, ".jpeg") || fs_has_ext(name, ".png") ||
         fs_has_ext(name, ".pgm") || fs_has_ext(name, ".ppm");
}

bool fs_is_other_image_name(const char *name) {
  static const char *const ext[] = {".bmp", ".gif", ".webp", ".tif", ".tiff",
                                    ".heic", ".heif", ".avif"};
  for (size_t i = 0; i < sizeof ext / sizeof ext[0]; i++)
    if (fs_has_ext(name, ext[i])) return true;
  return false;
}

kiln_status fs_mkdirs(const char *path, kiln_error *err) {
  char buf[4096];
  size_t n = strlen(path);
  if (n == 0 || n >= sizeof buf) return kiln_fail(err, KILN_ERR_IO, "%s: bad directory name", path);
  memcpy(buf, path, n + 1);
  for (size_t i = 1; i <= n; i++) {
    if (buf[i] != '/' && buf[i] != '\0') continue;
    char c = buf[i];
    buf[i] = '\0';
    if (mkdir(buf, 0755) != 0 && errno != EEXIST)
      return kiln_fail(err, KILN_ERR_IO, "%s: cannot create directory: %s", buf, strerror(errno));
    if (!fs_is_dir(buf)) return kiln_fail(err, KILN_ERR_IO, "%s: exists and is not a directory", buf);
    buf[i] = c;
  }
  return KILN_OK;
}

void fs_remove_tree(const char *path) {
  struct stat st;
  if (lstat(path, &st) != 0) return;
  if (!S_ISDIR(st.st_mode)) {
    unlink(path);
    return;
  }
  DIR *d = opendir(path);
  if (d) {
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
      if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
      /* no allocation: removing must work when memory has run out */
      char p[PATH_MAX];
      if ((size_t)snprintf(p, sizeof p, "%s/%s", path, e->d_name) >= sizeof p) continue;
      fs_remove_tree(p);
    }
    closedir(d);
  }
  rmdir(path);
}

const char *fs_basename(const char *path) {
  const char *slash = strrchr(path, '/');
  return slash ? slash + 1 : path;
}

kiln_status fs_read_text(const char *path, size_t max, char **out, size_t *len, kiln_error *err) {
  *out = NULL;
  kiln_mapped_file f;
  kiln_status s = kiln_file_map(path, &f, err);
  if (s != KILN_OK) return s;
  if (f.size > max) {
    kiln_file_unmap(&f);
    return kiln_fail(err, KILN_ERR_LIMIT, "%s: %zu bytes, over the limit of %zu", path, f.size, max);
  }
  char *text = kiln_malloc(f.size + 1);
  if (!text) {
    kiln_file_unmap(&f);
    return kiln_fail(err, KILN_ERR_NOMEM, "%s: out of memory", path);
  }
  if (f.size) memcpy(text, f.data, f.size);
  text[f.size] = '\0';
  if (len) *len = f.size;
  kiln_file_unmap(&f);
  *out = text;
  return KILN_OK;
}
