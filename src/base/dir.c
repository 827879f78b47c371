/* Recursive, sorted file listing (see base/dir.h). */
#include "base/dir.h"

#include <dirent.h>
#include <stdbool.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#define DIR_MAX_DEPTH 32

static bool wanted(const char *name, const char *const *ext) {
  if (!ext) return true;
  size_t n = strlen(name);
  for (; *ext; ext++) {
    size_t e = strlen(*ext);
    if (n > e && strcasecmp(name + n - e, *ext) == 0) return true;
  }
  return false;
}

static kiln_status add(kiln_file_list *l, size_t *cap, const char *path, size_t max,
                       kiln_error *err) {
  if (l->count == max)
    return kiln_fail(err, KILN_ERR_LIMIT, "more than %zu files", max);
  if (l->count == *cap) {
    size_t c = *cap ? *cap * 2 : 64;
    char **p = kiln_realloc(l->paths, c * sizeof *p);
    if (!p) return kiln_fail(err, KILN_ERR_NOMEM, "out of memory listing files");
    l->paths = p;
    *cap = c;
  }
  l->paths[l->count] = kiln_strdup(path);
  if (!l->paths[l->count]) return kiln_fail(err, KILN_ERR_NOMEM, "out of memory listing files");
  l->count++;
  return KILN_OK;
}

static kiln_status walk(const char *dir, int depth, const char *const *ext, size_t max,
                        kiln_file_list *l, size_t *cap, kiln_error *err) {
  if (depth > DIR_MAX_DEPTH)
    return kiln_fail(err, KILN_ERR_LIMIT, "%s: directories nested deeper than %d", dir, DIR_MAX_DEPTH);
  DIR *d = opendir(dir);
  if (!d) return kiln_fail(err, KILN_ERR_IO, "%s: cannot open directory: %s", dir, strerror(errno));
  kiln_status s = KILN_OK;
  struct dirent *e;
  char path[4096];
  while (s == KILN_OK && (e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.') continue;
    int n = snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    if (n < 0 || (size_t)n >= sizeof path) continue;
    struct stat lst, st;
    if (lstat(path, &lst) != 0) continue;
    if (S_ISDIR(lst.st_mode)) {
      s = walk(path, depth + 1, ext, max, l, cap, err);
    } else if (stat(path, &st) == 0 && S_ISREG(st.st_mode) && wanted(e->d_name, ext)) {
      s = add(l, cap, path, max, err);
    }
  }
  closedir(d);
  return s;
}

static int by_path(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

kiln_status kiln_list_files(const char *dir, const char *const *extensions, size_t max_files,
                            kiln_file_list *out, kiln_error *err) {
  memset(out, 0, sizeof *out);
  size_t cap = 0;
  kiln_status s = walk(dir, 0, extensions, max_files, out, &cap, err);
  if (s != KILN_OK) {
    kiln_file_list_free(out);
    return s;
  }
  if (out->count) qsort(out->paths, out->count, sizeof *out->paths, by_path);
  return KILN_OK;
}

void kiln_file_list_free(kiln_file_list *list) {
  for (size_t i = 0; i < list->count; i++) kiln_free(list->paths[i]);
  kiln_free(list->paths);
  memset(list, 0, sizeof *list);
}
