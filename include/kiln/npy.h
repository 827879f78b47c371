/*
 * kiln/npy.h: numpy .npy files (format versions 1-3, little-endian,
 * C order) for raw tensors in and out of `kiln run` and the tests.
 */
#ifndef KILN_NPY_H
#define KILN_NPY_H

#include <stddef.h>
#include <stdint.h>

#include "kiln/base.h"
#include "kiln/model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kiln_npy {
  kiln_dtype dtype;
  int32_t rank;
  int32_t shape[KILN_MAX_RANK];
  void *data; /* kiln_malloc'd, row-major */
  size_t bytes;
} kiln_npy;

/* Reads path. Refuses Fortran order, big-endian and dtypes kiln lacks. */
kiln_status kiln_npy_read(const char *path, kiln_npy *out, kiln_error *err);
/* Parses an .npy image in memory (name prefixes errors). */
kiln_status kiln_npy_parse(const void *bytes, size_t size, const char *name, kiln_npy *out,
                           kiln_error *err);
/* Writes data (shape and dtype given) atomically to path, format 1.0. */
kiln_status kiln_npy_write(const char *path, kiln_dtype dtype, int32_t rank, const int32_t *shape,
                           const void *data, kiln_error *err);
void kiln_npy_free(kiln_npy *npy);

#ifdef __cplusplus
}
#endif
#endif
