/*
 * base/dir.h: listing the regular files under a directory (recursively,
 * sorted by path, symbolic links to files followed, directories not), for
 * calibration images and datasets.
 */
#ifndef KILN_BASE_DIR_H
#define KILN_BASE_DIR_H

#include <stddef.h>

#include "kiln/base.h"

typedef struct kiln_file_list {
  char **paths; /* kiln_malloc'd strings */
  size_t count;
} kiln_file_list;

/* Lists files under dir whose names end (case-insensitively) in one of the
 * NULL-terminated extensions (".jpg", ...); NULL extensions: every file.
 * Hidden entries (".name") are skipped. At most max_files (KILN_ERR_LIMIT
 * past it). */
kiln_status kiln_list_files(const char *dir, const char *const *extensions, size_t max_files,
                            kiln_file_list *out, kiln_error *err);
void kiln_file_list_free(kiln_file_list *list);

#endif
