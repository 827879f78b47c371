/*
 * model/model_int.h: private parts of kiln_model shared by the model
 * layer's files (ir.c, tflite_read.c, tflite_write.c, passes.c).
 */
#ifndef KILN_MODEL_MODEL_INT_H
#define KILN_MODEL_MODEL_INT_H

#include "base/file.h"
#include "base/pool.h"
#include "kiln/model.h"

struct kiln_model_impl {
  kiln_pool pool;          /* names, index arrays, options, owned constants */
  kiln_mapped_file file;   /* the mapped .tflite, if loaded from a file */
  uint8_t *owned_bytes;    /* a private copy of the flatbuffer, if any */
  int32_t cap_tensors;     /* capacity of model->tensors (kiln_realloc'd) */
  int32_t cap_ops;         /* capacity of model->ops (kiln_realloc'd) */
};

/* Grows the tensor/op arrays to hold at least n entries. */
kiln_status kiln_model_reserve(kiln_model *model, int32_t n_tensors, int32_t n_ops,
                               kiln_error *err);

#endif
