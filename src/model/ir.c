/*
 * The graph IR: building, querying and freeing models (kiln/model.h).
 * Tensors and ops live in growable arrays; everything they point to lives
 * in the model's pool or in the mapped file.
 */
#include <string.h>

#include "model/model_int.h"

size_t kiln_dtype_size(kiln_dtype dtype) {
  switch (dtype) {
    case KILN_F32: return 4;
    case KILN_F16: return 2;
    case KILN_I32: return 4;
    case KILN_U8: return 1;
    case KILN_I64: return 8;
    case KILN_BOOL: return 1;
    case KILN_I16: return 2;
    case KILN_I8: return 1;
  }
  return 0;
}

const char *kiln_dtype_name(kiln_dtype dtype) {
  switch (dtype) {
    case KILN_F32: return "float32";
    case KILN_F16: return "float16";
    case KILN_I32: return "int32";
    case KILN_U8: return "uint8";
    case KILN_I64: return "int64";
    case KILN_BOOL: return "bool";
    case KILN_I16: return "int16";
    case KILN_I8: return "int8";
  }
  return "unknown";
}

/* BuiltinOperator names, indexed by code (the TFLite schema's enum). */
static const char *const opcode_names[] = {
    "ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D", "DEPTH_TO_SPACE",
    "DEQUANTIZE", "EMBEDDING_LOOKUP", "FLOOR", "FULLY_CONNECTED", "HASHTABLE_LOOKUP",
    "L2_NORMALIZATION", "L2_POOL_2D", "LOCAL_RESPONSE_NORMALIZATION", "LOGISTIC",
    "LSH_PROJECTION", "LSTM", "MAX_POOL_2D", "MUL", "RELU", "RELU_N1_TO_1", "RELU6", "RESHAPE",
    "RESIZE_BILINEAR", "RNN", "SOFTMAX", "SPACE_TO_DEPTH", "SVDF", "TANH", "CONCAT_EMBEDDINGS",
    "SKIP_GRAM", "CALL", "CUSTOM", "EMBEDDING_LOOKUP_SPARSE", "PAD",
    "UNIDIRECTIONAL_SEQUENCE_RNN", "GATHER", "BATCH_TO_SPACE_ND", "SPACE_TO_BATCH_ND",
    "TRANSPOSE", "MEAN", "SUB", "DIV", "SQUEEZE", "UNIDIRECTIONAL_SEQUENCE_LSTM",
    "STRIDED_SLICE", "BIDIRECTIONAL_SEQUENCE_RNN", "EXP", "TOPK_V2", "SPLIT", "LOG_SOFTMAX",
    "DELEGATE", "BIDIRECTIONAL_SEQUENCE_LSTM", "CAST", "PRELU", "MAXIMUM", "ARG_MAX", "MINIMUM",
    "LESS", "NEG", "PADV2", "GREATER", "GREATER_EQUAL", "LESS_EQUAL", "SELECT", "SLICE", "SIN",
    "TRANSPOSE_CONV", "SPARSE_TO_DENSE", "TILE", "EXPAND_DIMS", "EQUAL", "NOT_EQUAL", "LOG",
    "SUM", "SQRT", "RSQRT", "SHAPE", "POW", "ARG_MIN", "FAKE_QUANT", "REDUCE_PROD", "REDUCE_MAX",
    "PACK", "LOGICAL_OR", "ONE_HOT", "LOGICAL_AND", "LOGICAL_NOT", "UNPACK", "REDUCE_MIN",
    "FLOOR_DIV", "REDUCE_ANY", "SQUARE", "ZEROS_LIKE", "FILL", "FLOOR_MOD", "RANGE",
    "RESIZE_NEAREST_NEIGHBOR", "LEAKY_RELU", "SQUARED_DIFFERENCE", "MIRROR_PAD", "ABS",
    "SPLIT_V", "UNIQUE", "CEIL", "REVERSE_V2", "ADD_N", "GATHER_ND", "COS", "WHERE", "RANK",
    "ELU", "REVERSE_SEQUENCE", "MATRIX_DIAG", "QUANTIZE", "MATRIX_SET_DIAG", "ROUND",
    "HARD_SWISH", "IF", "WHILE", "NON_MAX_SUPPRESSION_V4", "NON_MAX_SUPPRESSION_V5",
    "SCATTER_ND", "SELECT_V2", "DENSIFY", "SEGMENT_SUM", "BATCH_MATMUL",
    "PLACEHOLDER_FOR_GREATER_OP_CODES", "CUMSUM", "CALL_ONCE", "BROADCAST_TO", "RFFT2D",
    "CONV_3D", "IMAG", "REAL", "COMPLEX_ABS", "HASHTABLE", "HASHTABLE_FIND", "HASHTABLE_IMPORT",
    "HASHTABLE_SIZE", "REDUCE_ALL", "CONV_3D_TRANSPOSE", "VAR_HANDLE", "READ_VARIABLE",
    "ASSIGN_VARIABLE", "BROADCAST_ARGS", "RANDOM_STANDARD_NORMAL", "BUCKETIZE", "RANDOM_UNIFORM",
    "MULTINOMIAL", "GELU", "DYNAMIC_UPDATE_SLICE", "RELU_0_TO_1", "UNSORTED_SEGMENT_PROD",
    "UNSORTED_SEGMENT_MAX", "UNSORTED_SEGMENT_SUM", "ATAN2", "UNSORTED_SEGMENT_MIN", "SIGN",
    "BITCAST", "BITWISE_XOR", "RIGHT_SHIFT", "STABLEHLO_LOGISTIC", "STABLEHLO_ADD",
    "STABLEHLO_DIVIDE", "STABLEHLO_MULTIPLY", "STABLEHLO_MAXIMUM", "STABLEHLO_RESHAPE",
    "STABLEHLO_CLAMP", "STABLEHLO_CONCATENATE", "STABLEHLO_BROADCAST_IN_DIM",
    "STABLEHLO_CONVOLUTION", "STABLEHLO_SLICE", "STABLEHLO_CUSTOM_CALL", "STABLEHLO_REDUCE",
    "STABLEHLO_ABS", "STABLEHLO_AND", "STABLEHLO_COSINE", "STABLEHLO_EXPONENTIAL",
    "STABLEHLO_FLOOR", "STABLEHLO_LOG", "STABLEHLO_MINIMUM", "STABLEHLO_NEGATE", "STABLEHLO_OR",
    "STABLEHLO_POWER", "STABLEHLO_REMAINDER", "STABLEHLO_RSQRT", "STABLEHLO_SELECT",
    "STABLEHLO_SUBTRACT", "STABLEHLO_TANH", "STABLEHLO_SCATTER", "STABLEHLO_COMPARE",
    "STABLEHLO_CONVERT", "STABLEHLO_DYNAMIC_SLICE", "STABLEHLO_DYNAMIC_UPDATE_SLICE",
    "STABLEHLO_PAD", "STABLEHLO_IOTA", "STABLEHLO_DOT_GENERAL", "STABLEHLO_REDUCE_WINDOW",
    "STABLEHLO_SORT", "STABLEHLO_WHILE", "STABLEHLO_GATHER", "STABLEHLO_TRANSPOSE", "DILATE",
    "STABLEHLO_RNG_BIT_GENERATOR", "REDUCE_WINDOW", "STABLEHLO_COMPOSITE",
    "STABLEHLO_SHIFT_LEFT", "STABLEHLO_CBRT", "STABLEHLO_CASE",
};

const char *kiln_opcode_name(int32_t code) {
  if (code >= 0 && (size_t)code < sizeof opcode_names / sizeof opcode_names[0] &&
      opcode_names[code][0])
    return opcode_names[code];
  return "UNKNOWN";
}

kiln_status kiln_model_new(kiln_model **out, kiln_error *err) {
  *out = NULL;
  kiln_model *m = kiln_calloc(1, sizeof *m);
  kiln_model_impl *impl = kiln_calloc(1, sizeof *impl);
  if (!m || !impl) {
    kiln_free(m);
    kiln_free(impl);
    return kiln_fail(err, KILN_ERR_NOMEM, "out of memory");
  }
  kiln_pool_init(&impl->pool);
  m->impl = impl;
  m->description = "";
  *out = m;
  return KILN_OK;
}

void kiln_model_free(kiln_model *model) {
  if (!model) return;
  if (model->impl) {
    kiln_pool_destroy(&model->impl->pool);
    kiln_file_unmap(&model->impl->file);
    kiln_free(model->impl->owned_bytes);
    kiln_free(model->impl);
  }
  kiln_free(model->tensors);
  kiln_free(model->ops);
  kiln_free(model);
}

kiln_status kiln_model_reserve(kiln_model *model, int32_t n_tensors, int32_t n_ops,
                               kiln_error *err) {
  kiln_model_impl *impl = model->impl;
  if (n_tensors > impl->cap_tensors) {
    int32_t cap = impl->cap_tensors ? impl->cap_tensors : 16;
    while (cap < n_tensors) cap = cap > INT32_MAX / 2 ? n_tensors : cap * 2;
    kiln_tensor *t = kiln_realloc(model->tensors, (size_t)cap * sizeof *t);
    if (!t) return kiln_fail(err, KILN_ERR_NOMEM, "out of memory for %d tensors", (int)cap);
    model->tensors = t;
    impl->cap_tensors = cap;
  }
  if (n_ops > impl->cap_ops) {
    int32_t cap = impl->cap_ops ? impl->cap_ops : 16;
    while (cap < n_ops) cap = cap > INT32_MAX / 2 ? n_ops : cap * 2;
    kiln_op *o = kiln_realloc(model->ops, (size_t)cap * sizeof *o);
    if (!o) return kiln_fail(err, KILN_ERR_NOMEM, "out of memory for %d ops", (int)cap);
    model->ops = o;
    impl->cap_ops = cap;
  }
  return KILN_OK;
}

void *kiln_model_alloc(kiln_model *model, size_t size) {
  return kiln_pool_alloc(&model->impl->pool, size, 64);
}

int64_t kiln_tensor_elements(const kiln_tensor *t) {
  int64_t n = 1;
  for (int32_t i = 0; i < t->rank; i++) n *= t->shape[i];
  return n;
}

size_t kiln_tensor_bytes(const kiln_tensor *t) {
  return (size_t)kiln_tensor_elements(t) * kiln_dtype_size(t->dtype);
}

int32_t kiln_model_add_tensor(kiln_model *model, const char *name, kiln_dtype dtype, int32_t rank,
                              const int32_t *shape, const kiln_quant *quant, const void *data,
                              kiln_error *err) {
  kiln_pool *pool = &model->impl->pool;
  if (kiln_dtype_size(dtype) == 0) {
    kiln_fail(err, KILN_ERR_INVALID_ARG, "tensor '%s': unknown dtype %d", name ? name : "",
              (int)dtype);
    return -1;
  }
  if (rank < 0 || rank > KILN_MAX_RANK) {
    kiln_fail(err, KILN_ERR_INVALID_ARG, "tensor '%s': rank %d outside 0..%d", name ? name : "",
              (int)rank, KILN_MAX_RANK);
    return -1;
  }
  int64_t elements = 1;
  for (int32_t i = 0; i < rank; i++) {
    if (shape[i] < 0 || (shape[i] > 0 && elements > (INT64_C(1) << 40) / shape[i])) {
      kiln_fail(err, KILN_ERR_INVALID_ARG, "tensor '%s': bad dimension %d", name ? name : "",
                (int)shape[i]);
      return -1;
    }
    elements *= shape[i];
  }
  if (kiln_model_reserve(model, model->n_tensors + 1, model->n_ops, err) != KILN_OK) return -1;
  kiln_tensor t;
  memset(&t, 0, sizeof t);
  t.name = kiln_pool_strndup(pool, name ? name : "", name ? strlen(name) : 0);
  t.dtype = dtype;
  t.rank = rank;
  for (int32_t i = 0; i < rank; i++) t.shape[i] = shape[i];
  if (!t.name) goto nomem;
  if (quant && quant->count > 0) {
    t.quant.count = quant->count;
    t.quant.axis = quant->axis;
    t.quant.scale = kiln_pool_memdup(pool, quant->scale, (size_t)quant->count * sizeof(float), 4);
    t.quant.zero_point = kiln_pool_alloc(pool, (size_t)quant->count * sizeof(int32_t), 4);
    if (!t.quant.scale || !t.quant.zero_point) goto nomem;
    if (quant->zero_point)
      memcpy(t.quant.zero_point, quant->zero_point, (size_t)quant->count * sizeof(int32_t));
  }
  if (data) {
    t.data_bytes = kiln_tensor_bytes(&t);
    t.data = kiln_pool_memdup(pool, data, t.data_bytes, 64);
    if (!t.data) goto nomem;
  }
  model->tensors[model->n_tensors] = t;
  return model->n_tensors++;
nomem:
  kiln_fail(err, KILN_ERR_NOMEM, "out of memory adding tensor '%s'", name ? name : "");
  return -1;
}

int32_t kiln_model_add_op(kiln_model *model, int32_t code, const char *custom_code,
                          const int32_t *inputs, int32_t n_inputs, const int32_t *outputs,
                          int32_t n_outputs, const kiln_op_options *options,
                          const void *custom_options, size_t custom_options_bytes,
                          kiln_error *err) {
  kiln_pool *pool = &model->impl->pool;
  if (code < 0 || (code == KILN_OP_CUSTOM) != (custom_code != NULL)) {
    kiln_fail(err, KILN_ERR_INVALID_ARG, "op code %d and custom code %s do not agree", (int)code,
              custom_code ? custom_code : "(none)");
    return -1;
  }
  if (n_inputs < 0 || n_outputs < 0) {
    kiln_fail(err, KILN_ERR_INVALID_ARG, "negative operand count");
    return -1;
  }
  for (int32_t i = 0; i < n_inputs; i++) {
    if (inputs[i] < -1 || inputs[i] >= model->n_tensors) {
      kiln_fail(err, KILN_ERR_INVALID_ARG, "op input %d: tensor %d out of range (%d tensors)",
                (int)i, (int)inputs[i], (int)model->n_tensors);
      return -1;
    }
  }
  for (int32_t i = 0; i < n_outputs; i++) {
    if (outputs[i] < 0 || outputs[i] >= model->n_tensors) {
      kiln_fail(err, KILN_ERR_INVALID_ARG, "op output %d: tensor %d out of range (%d tensors)",
                (int)i, (int)outputs[i], (int)model->n_tensors);
      return -1;
    }
  }
  if (kiln_model_reserve(model, model->n_tensors, model->n_ops + 1, err) != KILN_OK) return -1;
  kiln_op op;
  memset(&op, 0, sizeof op);
  op.code = code;
  op.version = 1;
  op.n_inputs = n_inputs;
  op.n_outputs = n_outputs;
  op.inputs = kiln_pool_memdup(pool, inputs, (size_t)n_inputs * sizeof(int32_t), 4);
  op.outputs = kiln_pool_memdup(pool, outputs, (size_t)n_outputs * sizeof(int32_t), 4);
  if (!op.inputs || !op.outputs) goto nomem;
  if (options) {
    op.options = *options;
  } else {
    op.options.new_shape_count = -1;
  }
  if (custom_code) {
    op.custom_code = kiln_pool_strndup(pool, custom_code, strlen(custom_code));
    if (!op.custom_code) goto nomem;
  }
  if (custom_options && custom_options_bytes) {
    op.custom_options = kiln_pool_memdup(pool, custom_options, custom_options_bytes, 16);
    if (!op.custom_options) goto nomem;
    op.custom_options_bytes = custom_options_bytes;
  }
  model->ops[model->n_ops] = op;
  return model->n_ops++;
nomem:
  kiln_fail(err, KILN_ERR_NOMEM, "out of memory adding op %s", kiln_opcode_name(code));
  return -1;
}

kiln_status kiln_model_set_io(kiln_model *model, const int32_t *inputs, int32_t n_inputs,
                              const int32_t *outputs, int32_t n_outputs, kiln_error *err) {
  for (int32_t i = 0; i < n_inputs; i++)
    if (inputs[i] < 0 || inputs[i] >= model->n_tensors)
      return kiln_fail(err, KILN_ERR_INVALID_ARG, "graph input %d: tensor %d out of range",
                       (int)i, (int)inputs[i]);
  for (int32_t i = 0; i < n_outputs; i++)
    if (outputs[i] < 0 || outputs[i] >= model->n_tensors)
      return kiln_fail(err, KILN_ERR_INVALID_ARG, "graph output %d: tensor %d out of range",
                       (int)i, (int)outputs[i]);
  kiln_pool *pool = &model->impl->pool;
  int32_t *in = kiln_pool_memdup(pool, inputs, (size_t)n_inputs * sizeof(int32_t), 4);
  int32_t *out = kiln_pool_memdup(pool, outputs, (size_t)n_outputs * sizeof(int32_t), 4);
  if (!in || !out) return kiln_fail(err, KILN_ERR_NOMEM, "out of memory");
  model->inputs = in;
  model->n_inputs = n_inputs;
  model->outputs = out;
  model->n_outputs = n_outputs;
  return KILN_OK;
}

int32_t kiln_model_find_tensor(const kiln_model *model, const char *name) {
  for (int32_t i = 0; i < model->n_tensors; i++)
    if (strcmp(model->tensors[i].name, name) == 0) return i;
  return -1;
}

void kiln_model_param_stats(const kiln_model *model, int64_t *params, int64_t *bytes) {
  int64_t p = 0, b = 0;
  for (int32_t i = 0; i < model->n_tensors; i++) {
    const kiln_tensor *t = &model->tensors[i];
    if (!t->data) continue;
    p += kiln_tensor_elements(t);
    b += (int64_t)t->data_bytes;
  }
  *params = p;
  *bytes = b;
}
