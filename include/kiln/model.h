/*
 * kiln/model.h: the in-memory graph IR and the TFLite (.tflite, schema v3)
 * reader and writer.
 *
 * A kiln_model is one graph: tensors (shape, dtype, quantization, optional
 * constant data), operators in execution order, and the graph's inputs and
 * outputs. It knows nothing of execution. Everything a model points to is
 * owned by the model: names and arrays live in its pool, constant data either
 * in the mapped file (read-only, valid until kiln_model_free) or in the pool.
 *
 *   kiln_error err;
 *   kiln_model *m;
 *   if (kiln_model_load("ssd.tflite", &m, &err) != KILN_OK) {
 *     fprintf(stderr, "%s\n", err.msg);  // "ssd.tflite: tensor 3: ..."
 *     return 1;
 *   }
 *   ... m->tensors[m->inputs[0]].shape ...
 *   kiln_model_save(m, "copy.tflite", &err);
 *   kiln_model_free(m);
 *
 * Op codes, tensor types, padding and activation values equal the TFLite
 * schema's, so models move between kiln and other runtimes unchanged.
 */
#ifndef KILN_MODEL_H
#define KILN_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kiln/base.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KILN_MAX_RANK 6

/* Tensor element types; values are the TFLite TensorType values. */
typedef enum kiln_dtype {
  KILN_F32 = 0,
  KILN_F16 = 1,
  KILN_I32 = 2,
  KILN_U8 = 3,
  KILN_I64 = 4,
  KILN_BOOL = 6,
  KILN_I16 = 7,
  KILN_I8 = 9
} kiln_dtype;

/* Bytes per element; 0 for a value that is not a kiln_dtype. */
size_t kiln_dtype_size(kiln_dtype dtype);
/* "float32", "int8", ... ; "unknown" for other values. */
const char *kiln_dtype_name(kiln_dtype dtype);

/* Builtin operator codes (TFLite BuiltinOperator values) kiln names. Any
 * other code can still be read and written; the runtime refuses it. */
typedef enum kiln_opcode {
  KILN_OP_ADD = 0,
  KILN_OP_AVERAGE_POOL_2D = 1,
  KILN_OP_CONCATENATION = 2,
  KILN_OP_CONV_2D = 3,
  KILN_OP_DEPTHWISE_CONV_2D = 4,
  KILN_OP_DEQUANTIZE = 6,
  KILN_OP_FULLY_CONNECTED = 9,
  KILN_OP_L2_NORMALIZATION = 11,
  KILN_OP_LOGISTIC = 14,
  KILN_OP_MAX_POOL_2D = 17,
  KILN_OP_MUL = 18,
  KILN_OP_RELU = 19,
  KILN_OP_RELU_N1_TO_1 = 20,
  KILN_OP_RELU6 = 21,
  KILN_OP_RESHAPE = 22,
  KILN_OP_RESIZE_BILINEAR = 23,
  KILN_OP_SOFTMAX = 25,
  KILN_OP_TANH = 28,
  KILN_OP_CUSTOM = 32,
  KILN_OP_PAD = 34,
  KILN_OP_MEAN = 40,
  KILN_OP_SUB = 41,
  KILN_OP_SQUEEZE = 43,
  KILN_OP_PRELU = 54,
  KILN_OP_PADV2 = 60,
  KILN_OP_TRANSPOSE_CONV = 67,
  KILN_OP_RESIZE_NEAREST_NEIGHBOR = 97,
  KILN_OP_LEAKY_RELU = 98,
  KILN_OP_QUANTIZE = 114,
  KILN_OP_HARD_SWISH = 117
} kiln_opcode;

/* The TFLite name of a builtin code ("CONV_2D"); "UNKNOWN" when unnamed. */
const char *kiln_opcode_name(int32_t code);

typedef enum kiln_padding { KILN_PAD_SAME = 0, KILN_PAD_VALID = 1 } kiln_padding;

/* Fused activations (TFLite ActivationFunctionType values). */
typedef enum kiln_activation {
  KILN_ACT_NONE = 0,
  KILN_ACT_RELU = 1,
  KILN_ACT_RELU_N1_TO_1 = 2,
  KILN_ACT_RELU6 = 3,
  KILN_ACT_TANH = 4,
  KILN_ACT_SIGN_BIT = 5
} kiln_activation;

/* Affine quantization: real = scale * (q - zero_point). count 0: none;
 * count 1: per-tensor; count > 1: per-axis along `axis`, count equal to the
 * size of that dimension. */
typedef struct kiln_quant {
  int32_t count;
  int32_t axis;
  float *scale;        /* [count] */
  int32_t *zero_point; /* [count] */
} kiln_quant;

#define KILN_TENSOR_VARIABLE 1u

typedef struct kiln_tensor {
  const char *name; /* never NULL; "" when the file has none */
  kiln_dtype dtype;
  int32_t rank;
  int32_t shape[KILN_MAX_RANK];
  kiln_quant quant;
  const void *data; /* constant contents (row-major), or NULL */
  size_t data_bytes;
  uint32_t flags;
} kiln_tensor;

/* Builtin options, one flat record for every option table kiln knows.
 * `type` is the TFLite BuiltinOptions union type (0: none); the fields used
 * depend on it. Unused fields are zero. */
typedef struct kiln_op_options {
  uint8_t type;
  kiln_padding padding;
  int32_t stride_w, stride_h;
  int32_t dilation_w, dilation_h;
  int32_t filter_w, filter_h;
  int32_t depth_multiplier;
  kiln_activation activation;
  int32_t axis;
  bool keep_dims;
  bool align_corners;
  bool half_pixel_centers;
  bool keep_num_dims;
  bool asymmetric_quantize_inputs;
  bool pot_scale_int16;
  int8_t weights_format;
  int8_t quantized_bias_type;
  float alpha; /* LEAKY_RELU */
  float beta;  /* SOFTMAX */
  int32_t new_shape_count; /* RESHAPE; -1: the option is absent */
  int32_t new_shape[KILN_MAX_RANK];
  int32_t squeeze_dims_count; /* SQUEEZE */
  int32_t squeeze_dims[KILN_MAX_RANK];
} kiln_op_options;

/* TFLite BuiltinOptions union types kiln reads and writes. */
enum {
  KILN_OPTS_NONE = 0,
  KILN_OPTS_CONV2D = 1,
  KILN_OPTS_DEPTHWISE_CONV2D = 2,
  KILN_OPTS_POOL2D = 5,
  KILN_OPTS_FULLY_CONNECTED = 8,
  KILN_OPTS_SOFTMAX = 9,
  KILN_OPTS_CONCATENATION = 10,
  KILN_OPTS_ADD = 11,
  KILN_OPTS_L2NORM = 12,
  KILN_OPTS_RESIZE_BILINEAR = 15,
  KILN_OPTS_RESHAPE = 17,
  KILN_OPTS_MUL = 21,
  KILN_OPTS_PAD = 22,
  KILN_OPTS_REDUCER = 27,
  KILN_OPTS_SUB = 28,
  KILN_OPTS_SQUEEZE = 30,
  KILN_OPTS_DEQUANTIZE = 38,
  KILN_OPTS_PADV2 = 43,
  KILN_OPTS_TRANSPOSE_CONV = 49,
  KILN_OPTS_RESIZE_NEAREST_NEIGHBOR = 74,
  KILN_OPTS_LEAKY_RELU = 75,
  KILN_OPTS_QUANTIZE = 89,
  KILN_OPTS_HARD_SWISH = 91
};

typedef struct kiln_op {
  int32_t code;            /* builtin code; KILN_OP_CUSTOM for custom ops */
  const char *custom_code; /* custom ops only, else NULL */
  int32_t version;         /* operator-code version from the file (>= 1) */
  int32_t n_inputs, n_outputs;
  int32_t *inputs;  /* tensor indices; -1 marks an absent optional input */
  int32_t *outputs; /* tensor indices */
  kiln_op_options options;
  const uint8_t *custom_options; /* raw bytes (flexbuffers for TFLite ops) */
  size_t custom_options_bytes;
} kiln_op;

/* A named metadata entry (e.g. TFLITE_METADATA, min_runtime_version),
 * carried through read -> write unchanged. */
typedef struct kiln_metadata {
  const char *name;
  const uint8_t *data;
  size_t bytes;
} kiln_metadata;

typedef struct kiln_model_impl kiln_model_impl;

typedef struct kiln_model {
  int32_t n_tensors;
  kiln_tensor *tensors;
  int32_t n_ops;
  kiln_op *ops; /* execution order */
  int32_t n_inputs, n_outputs;
  int32_t *inputs, *outputs;
  const char *description; /* never NULL */
  int32_t n_metadata;
  kiln_metadata *metadata;
  int32_t extra_subgraphs; /* subgraphs after the first, ignored */
  kiln_model_impl *impl;   /* memory ownership; private */
} kiln_model;

/* Reads and validates a .tflite file. The file is mapped, not copied; the
 * model refers into the mapping until kiln_model_free. Then runs the
 * load-time passes (kiln_model_simplify). The error message starts with the
 * path. */
kiln_status kiln_model_load(const char *path, kiln_model **out, kiln_error *err);

/* Parses a .tflite image in memory. With copy false the model refers into
 * bytes, which must stay valid and unchanged until kiln_model_free; with copy
 * true the model keeps its own copy. `name` prefixes error messages. Does not
 * run kiln_model_simplify. */
kiln_status kiln_model_parse(const void *bytes, size_t size, bool copy, const char *name,
                             kiln_model **out, kiln_error *err);

/* Load-time passes: fp16 (and other constant) weights behind DEQUANTIZE
 * become f32 constants, RESHAPE/SQUEEZE of constants fold, and tensors no op
 * or graph edge uses are dropped. Tensor indices change. */
kiln_status kiln_model_simplify(kiln_model *model, kiln_error *err);

/* Serializes to a .tflite flatbuffer in memory; *out_bytes is kiln_malloc'd
 * and owned by the caller (kiln_free). */
kiln_status kiln_model_serialize(const kiln_model *model, uint8_t **out_bytes, size_t *out_size,
                                 kiln_error *err);

/* Serializes and writes atomically to path. */
kiln_status kiln_model_save(const kiln_model *model, const char *path, kiln_error *err);

void kiln_model_free(kiln_model *model);

/* ---- Building models (used by the writer's tests, quantizer, trainer) ---- */

/* An empty model. */
kiln_status kiln_model_new(kiln_model **out, kiln_error *err);

/* Appends a tensor; name, shape, quantization and data (if non-NULL) are
 * copied into the model. Returns the new index or -1 (err set). */
int32_t kiln_model_add_tensor(kiln_model *model, const char *name, kiln_dtype dtype, int32_t rank,
                              const int32_t *shape, const kiln_quant *quant, const void *data,
                              kiln_error *err);

/* Appends an operator; arrays and strings are copied. custom_code is NULL
 * for builtin ops. Returns the new index or -1 (err set). */
int32_t kiln_model_add_op(kiln_model *model, int32_t code, const char *custom_code,
                          const int32_t *inputs, int32_t n_inputs, const int32_t *outputs,
                          int32_t n_outputs, const kiln_op_options *options,
                          const void *custom_options, size_t custom_options_bytes,
                          kiln_error *err);

/* Sets the graph inputs and outputs (copied). */
kiln_status kiln_model_set_io(kiln_model *model, const int32_t *inputs, int32_t n_inputs,
                              const int32_t *outputs, int32_t n_outputs, kiln_error *err);

/* Allocates size bytes owned by the model (zeroed, 64-byte aligned), for
 * building constants in place. NULL on failure. */
void *kiln_model_alloc(kiln_model *model, size_t size);

/* ---- Queries ---- */

/* Elements of a tensor (product of its shape; 1 for a scalar). */
int64_t kiln_tensor_elements(const kiln_tensor *t);
/* Bytes of a tensor's contents. */
size_t kiln_tensor_bytes(const kiln_tensor *t);
/* Index of the tensor named `name`, or -1. */
int32_t kiln_model_find_tensor(const kiln_model *model, const char *name);
/* Sums over constant tensors: element count and bytes. */
void kiln_model_param_stats(const kiln_model *model, int64_t *params, int64_t *bytes);

#ifdef __cplusplus
}
#endif
#endif
