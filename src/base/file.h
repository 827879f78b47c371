/*
 * base/file.h: reading files by mapping them, and writing files atomically
 * (a temporary file in the same directory, fsync, rename), so a reader never
 * sees a half-written model or image.
 */
#ifndef KILN_BASE_FILE_H
#define KILN_BASE_FILE_H

#include <stdbool.h>
#include <stddef.h>

#include "kiln/base.h"

typedef struct kiln_mapped_file {
  const unsigned char *data; /* read-only; NULL for an empty file */
  size_t size;
  bool mapped; /* true: munmap on close; false: kiln_free */
} kiln_mapped_file;

/* Maps path read-only (falls back to reading it for non-regular files such
 * as pipes). The error message starts with path. */
kiln_status kiln_file_map(const char *path, kiln_mapped_file *out, kiln_error *err);
void kiln_file_unmap(kiln_mapped_file *file);

/* Writes bytes to path atomically: path is either untouched or complete. */
kiln_status kiln_file_write_atomic(const char *path, const void *bytes, size_t size,
                                   kiln_error *err);

#endif
