/*
 * The validating .tflite reader: flatbuffer -> kiln_model.
 *
 * Every index (opcode, tensor, buffer), vector length and shape is checked
 * before use; the first problem stops the read with a message naming the
 * object and the value ("m.tflite: tensor 17: buffer index 900 out of range
 * (120 buffers)"). Constant data stays in the mapped file when it is aligned
 * and is copied (aligned) into the model's pool otherwise.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "model/flatbuf.h"
#include "model/model_int.h"
#include "model/tflite_schema.h"

typedef struct tfl_buffer {
  const uint8_t *data;
  size_t bytes;
} tfl_buffer;

typedef struct tfl_opcode {
  int32_t code;
  const char *custom;
  int32_t version;
} tfl_opcode;

typedef struct reader {
  fb_reader fb;
  kiln_model *model;
  kiln_pool *pool;
  kiln_error *err;
  kiln_status status; /* set when a non-format error (nomem, unsupported) stops the read */
  uint32_t n_buffers;
  tfl_buffer *buffers;
  uint32_t n_opcodes;
  tfl_opcode *opcodes;
} reader;

/* Records a non-format error; the caller returns false. */
static bool fail_with(reader *rd, kiln_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static bool fail_with(reader *rd, kiln_status status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(rd->fb.msg, sizeof rd->fb.msg, fmt, ap);
  va_end(ap);
  rd->fb.failed = true;
  rd->status = status;
  return false;
}

static bool nomem(reader *rd) { return fail_with(rd, KILN_ERR_NOMEM, "out of memory"); }

static char *pool_string(reader *rd, const char *s, uint32_t len) {
  if (!s) return kiln_pool_strndup(rd->pool, "", 0);
  return kiln_pool_strndup(rd->pool, s, len);
}

static bool read_buffers(reader *rd, const fb_table *root) {
  fb_vec v;
  if (!fb_vector(&rd->fb, root, MODEL_BUFFERS, 4, &v)) return false;
  rd->n_buffers = v.len;
  rd->buffers = kiln_pool_alloc(rd->pool, (size_t)v.len * sizeof(tfl_buffer), 8);
  if (!rd->buffers) return nomem(rd);
  for (uint32_t i = 0; i < v.len; i++) {
    fb_table b;
    if (!fb_vec_table(&rd->fb, &v, i, &b)) return false;
    fb_vec data;
    if (!fb_vector(&rd->fb, &b, BUFFER_DATA, 1, &data)) return false;
    uint64_t offset = 0, size = 0;
    if (!fb_u64(&rd->fb, &b, BUFFER_OFFSET, 0, &offset)) return false;
    if (!fb_u64(&rd->fb, &b, BUFFER_SIZE, 0, &size)) return false;
    if (data.len > 0) {
      rd->buffers[i].data = rd->fb.buf + data.data;
      rd->buffers[i].bytes = data.len;
    } else if (offset > 1) {
      /* Large-model layout: data after the flatbuffer, offset from file start. */
      if (offset > rd->fb.size || size > rd->fb.size - offset)
        return fb_fail(&rd->fb, "buffer %u: data at offset %llu size %llu lies outside the %zu-byte file",
                       i, (unsigned long long)offset, (unsigned long long)size, rd->fb.size);
      rd->buffers[i].data = rd->fb.buf + offset;
      rd->buffers[i].bytes = (size_t)size;
    }
  }
  return true;
}

static bool read_opcodes(reader *rd, const fb_table *root) {
  fb_vec v;
  if (!fb_vector(&rd->fb, root, MODEL_OPERATOR_CODES, 4, &v)) return false;
  rd->n_opcodes = v.len;
  rd->opcodes = kiln_pool_alloc(rd->pool, (size_t)v.len * sizeof(tfl_opcode), 8);
  if (!rd->opcodes) return nomem(rd);
  for (uint32_t i = 0; i < v.len; i++) {
    fb_table t;
    if (!fb_vec_table(&rd->fb, &v, i, &t)) return false;
    int8_t deprecated = 0;
    int32_t builtin = 0, version = 1;
    if (!fb_i8(&rd->fb, &t, OPCODE_DEPRECATED_BUILTIN, 0, &deprecated)) return false;
    if (!fb_i32(&rd->fb, &t, OPCODE_BUILTIN, 0, &builtin)) return false;
    if (!fb_i32(&rd->fb, &t, OPCODE_VERSION, 1, &version)) return false;
    /* Files before schema 3a carry the code only in the deprecated byte. */
    int32_t code = builtin > deprecated ? builtin : deprecated;
    if (code < 0) return fb_fail(&rd->fb, "operator code %u: negative builtin code %d", i, (int)code);
    const char *custom;
    uint32_t custom_len;
    if (!fb_string(&rd->fb, &t, OPCODE_CUSTOM, &custom, &custom_len)) return false;
    rd->opcodes[i].code = code;
    rd->opcodes[i].version = version;
    if (code == KILN_OP_CUSTOM) {
      if (!custom) return fb_fail(&rd->fb, "operator code %u: CUSTOM without a custom code", i);
      rd->opcodes[i].custom = pool_string(rd, custom, custom_len);
      if (!rd->opcodes[i].custom) return nomem(rd);
    }
  }
  return true;
}

static bool read_quant(reader *rd, int32_t index, const fb_table *t, kiln_tensor *tensor) {
  fb_table q;
  bool present;
  if (!fb_table_field(&rd->fb, t, TENSOR_QUANTIZATION, &q, &present)) return false;
  if (!present) return true;
  uint8_t details = 0;
  if (!fb_u8(&rd->fb, &q, QUANT_DETAILS_TYPE, 0, &details)) return false;
  if (details != 0)
    return fail_with(rd, KILN_ERR_UNSUPPORTED,
                     "tensor %d '%s': quantization details type %u (custom/blockwise) is not supported",
                     (int)index, tensor->name, details);
  fb_vec scale, zp;
  int32_t axis = 0;
  if (!fb_vector(&rd->fb, &q, QUANT_SCALE, 4, &scale)) return false;
  if (!fb_vector(&rd->fb, &q, QUANT_ZERO_POINT, 8, &zp)) return false;
  if (!fb_i32(&rd->fb, &q, QUANT_QUANTIZED_DIMENSION, 0, &axis)) return false;
  if (scale.len == 0) {
    if (zp.len != 0)
      return fb_fail(&rd->fb, "tensor %d '%s': %u zero points but no scales", (int)index,
                     tensor->name, zp.len);
    return true; /* min/max only: not quantized */
  }
  if (zp.len != 0 && zp.len != scale.len)
    return fb_fail(&rd->fb, "tensor %d '%s': %u scales but %u zero points", (int)index,
                   tensor->name, scale.len, zp.len);
  if (scale.len > 1) {
    if (axis < 0 || axis >= tensor->rank)
      return fb_fail(&rd->fb, "tensor %d '%s': quantized dimension %d outside rank %d",
                     (int)index, tensor->name, (int)axis, (int)tensor->rank);
    if ((int64_t)tensor->shape[axis] != (int64_t)scale.len)
      return fb_fail(&rd->fb, "tensor %d '%s': %u per-axis scales for dimension %d of size %d",
                     (int)index, tensor->name, scale.len, (int)axis, (int)tensor->shape[axis]);
  }
  kiln_quant *qt = &tensor->quant;
  qt->count = (int32_t)scale.len;
  qt->axis = scale.len > 1 ? axis : 0;
  qt->scale = kiln_pool_alloc(rd->pool, scale.len * sizeof(float), 4);
  qt->zero_point = kiln_pool_alloc(rd->pool, scale.len * sizeof(int32_t), 4);
  if (!qt->scale || !qt->zero_point) return nomem(rd);
  for (uint32_t i = 0; i < scale.len; i++) {
    float s = fb_vec_f32(&rd->fb, &scale, i);
    if (!isfinite(s) || s < 0.0f)
      return fb_fail(&rd->fb, "tensor %d '%s': scale %u is %g", (int)index, tensor->name, i,
                     (double)s);
    qt->scale[i] = s;
    int64_t z = zp.len ? fb_vec_i64(&rd->fb, &zp, i) : 0;
    if (z < INT32_MIN || z > INT32_MAX)
      return fb_fail(&rd->fb, "tensor %d '%s': zero point %lld out of range", (int)index,
                     tensor->name, (long long)z);
    qt->zero_point[i] = (int32_t)z;
  }
  return true;
}

static bool dtype_supported(uint8_t type) {
  switch (type) {
    case KILN_F32: case KILN_F16: case KILN_I32: case KILN_U8:
    case KILN_I64: case KILN_BOOL: case KILN_I16: case KILN_I8:
      return true;
    default:
      return false;
  }
}

static const char *tflite_type_name(uint8_t type) {
  static const char *const names[] = {"FLOAT32", "FLOAT16", "INT32",   "UINT8",     "INT64",
                                      "STRING",  "BOOL",    "INT16",   "COMPLEX64", "INT8",
                                      "FLOAT64", "COMPLEX128", "UINT64", "RESOURCE", "VARIANT",
                                      "UINT32",  "UINT16",  "INT4",    "BFLOAT16"};
  return type < sizeof names / sizeof names[0] ? names[type] : "UNKNOWN";
}

static bool read_tensor(reader *rd, int32_t index, const fb_table *t, kiln_tensor *tensor) {
  memset(tensor, 0, sizeof *tensor);
  const char *name;
  uint32_t name_len;
  if (!fb_string(&rd->fb, t, TENSOR_NAME, &name, &name_len)) return false;
  tensor->name = pool_string(rd, name, name_len);
  if (!tensor->name) return nomem(rd);

  uint8_t type = 0;
  if (!fb_u8(&rd->fb, t, TENSOR_TYPE, 0, &type)) return false;
  if (!dtype_supported(type))
    return fail_with(rd, KILN_ERR_UNSUPPORTED, "tensor %d '%s': type %s (%u) is not supported",
                     (int)index, tensor->name, tflite_type_name(type), type);
  tensor->dtype = (kiln_dtype)type;

  fb_vec shape;
  if (!fb_vector(&rd->fb, t, TENSOR_SHAPE, 4, &shape)) return false;
  if (shape.len > KILN_MAX_RANK)
    return fail_with(rd, KILN_ERR_UNSUPPORTED, "tensor %d '%s': rank %u exceeds kiln's maximum %d",
                     (int)index, tensor->name, shape.len, KILN_MAX_RANK);
  tensor->rank = (int32_t)shape.len;
  int64_t elements = 1;
  for (uint32_t i = 0; i < shape.len; i++) {
    int32_t d = fb_vec_i32(&rd->fb, &shape, i);
    if (d < 0)
      return fb_fail(&rd->fb, "tensor %d '%s': dimension %u is %d", (int)index, tensor->name, i,
                     (int)d);
    tensor->shape[i] = d;
    if (d > 0 && elements > (INT64_C(1) << 40) / d)
      return fb_fail(&rd->fb, "tensor %d '%s': shape has too many elements", (int)index,
                     tensor->name);
    elements *= d;
  }

  fb_table sparsity;
  bool sparse;
  if (!fb_table_field(&rd->fb, t, TENSOR_SPARSITY, &sparsity, &sparse)) return false;
  if (sparse)
    return fail_with(rd, KILN_ERR_UNSUPPORTED, "tensor %d '%s': sparse tensors are not supported",
                     (int)index, tensor->name);

  bool is_variable = false;
  if (!fb_bool(&rd->fb, t, TENSOR_IS_VARIABLE, false, &is_variable)) return false;
  if (is_variable) tensor->flags |= KILN_TENSOR_VARIABLE;

  uint32_t buffer = 0;
  if (!fb_u32(&rd->fb, t, TENSOR_BUFFER, 0, &buffer)) return false;
  if (buffer >= rd->n_buffers && !(buffer == 0 && rd->n_buffers == 0))
    return fb_fail(&rd->fb, "tensor %d '%s': buffer index %u out of range (%u buffers)",
                   (int)index, tensor->name, buffer, rd->n_buffers);
  if (elements == 0 && buffer != 0) {
    /* A zero-element constant (e.g. an empty axis list): nothing to read,
     * but it is a constant, not an activation. */
    static const uint64_t empty_constant = 0;
    tensor->data = &empty_constant;
    tensor->data_bytes = 0;
  } else if (rd->n_buffers && rd->buffers[buffer].bytes > 0) {
    const tfl_buffer *b = &rd->buffers[buffer];
    size_t need = (size_t)elements * kiln_dtype_size(tensor->dtype);
    if (b->bytes != need)
      return fb_fail(&rd->fb, "tensor %d '%s': buffer %u holds %zu bytes but %s of %lld elements needs %zu",
                     (int)index, tensor->name, buffer, b->bytes, kiln_dtype_name(tensor->dtype),
                     (long long)elements, need);
    tensor->data_bytes = need;
    if (((uintptr_t)b->data & 15) == 0) {
      tensor->data = b->data;
    } else {
      tensor->data = kiln_pool_memdup(rd->pool, b->data, need, 64);
      if (!tensor->data) return nomem(rd);
    }
  }
  return read_quant(rd, index, t, tensor);
}

/* Reads the builtin options table of one op into o (see kiln_op_options). */
static bool read_options(reader *rd, const fb_table *opt, kiln_op_options *o) {
  fb_reader *r = &rd->fb;
  uint8_t u8v = 0;
  int8_t i8v = 0;
#define U8(field, dst, def) \
  do { if (!fb_u8(r, opt, field, def, &u8v)) return false; dst = u8v; } while (0)
#define I8(field, dst, def) \
  do { if (!fb_i8(r, opt, field, def, &i8v)) return false; dst = i8v; } while (0)
#define I32(field, dst, def) \
  do { if (!fb_i32(r, opt, field, def, &dst)) return false; } while (0)
#define BOOL(field, dst, def) \
  do { if (!fb_bool(r, opt, field, def, &dst)) return false; } while (0)
#define F32(field, dst, def) \
  do { if (!fb_f32(r, opt, field, def, &dst)) return false; } while (0)
  switch (o->type) {
    case KILN_OPTS_CONV2D:
      U8(CONV_PADDING, o->padding, 0);
      I32(CONV_STRIDE_W, o->stride_w, 0);
      I32(CONV_STRIDE_H, o->stride_h, 0);
      U8(CONV_ACTIVATION, o->activation, 0);
      I32(CONV_DILATION_W, o->dilation_w, 1);
      I32(CONV_DILATION_H, o->dilation_h, 1);
      I8(CONV_QUANTIZED_BIAS_TYPE, o->quantized_bias_type, 0);
      break;
    case KILN_OPTS_DEPTHWISE_CONV2D:
      U8(DW_PADDING, o->padding, 0);
      I32(DW_STRIDE_W, o->stride_w, 0);
      I32(DW_STRIDE_H, o->stride_h, 0);
      I32(DW_DEPTH_MULTIPLIER, o->depth_multiplier, 0);
      U8(DW_ACTIVATION, o->activation, 0);
      I32(DW_DILATION_W, o->dilation_w, 1);
      I32(DW_DILATION_H, o->dilation_h, 1);
      break;
    case KILN_OPTS_POOL2D:
      U8(POOL_PADDING, o->padding, 0);
      I32(POOL_STRIDE_W, o->stride_w, 0);
      I32(POOL_STRIDE_H, o->stride_h, 0);
      I32(POOL_FILTER_W, o->filter_w, 0);
      I32(POOL_FILTER_H, o->filter_h, 0);
      U8(POOL_ACTIVATION, o->activation, 0);
      break;
    case KILN_OPTS_FULLY_CONNECTED:
      U8(FC_ACTIVATION, o->activation, 0);
      I8(FC_WEIGHTS_FORMAT, o->weights_format, 0);
      BOOL(FC_KEEP_NUM_DIMS, o->keep_num_dims, false);
      BOOL(FC_ASYMMETRIC, o->asymmetric_quantize_inputs, false);
      I8(FC_QUANTIZED_BIAS_TYPE, o->quantized_bias_type, 0);
      break;
    case KILN_OPTS_SOFTMAX:
      F32(SOFTMAX_BETA, o->beta, 0.0f);
      break;
    case KILN_OPTS_CONCATENATION:
      I32(CONCAT_AXIS, o->axis, 0);
      U8(CONCAT_ACTIVATION, o->activation, 0);
      break;
    case KILN_OPTS_ADD:
      U8(ADD_ACTIVATION, o->activation, 0);
      BOOL(ADD_POT_SCALE_INT16, o->pot_scale_int16, true);
      break;
    case KILN_OPTS_SUB:
      U8(SUB_ACTIVATION, o->activation, 0);
      BOOL(SUB_POT_SCALE_INT16, o->pot_scale_int16, true);
      break;
    case KILN_OPTS_MUL:
      U8(MUL_ACTIVATION, o->activation, 0);
      break;
    case KILN_OPTS_L2NORM:
      U8(L2NORM_ACTIVATION, o->activation, 0);
      break;
    case KILN_OPTS_RESIZE_BILINEAR:
      BOOL(RESIZE_BILINEAR_ALIGN_CORNERS, o->align_corners, false);
      BOOL(RESIZE_BILINEAR_HALF_PIXEL, o->half_pixel_centers, false);
      break;
    case KILN_OPTS_RESIZE_NEAREST_NEIGHBOR:
      BOOL(RESIZE_NN_ALIGN_CORNERS, o->align_corners, false);
      BOOL(RESIZE_NN_HALF_PIXEL, o->half_pixel_centers, false);
      break;
    case KILN_OPTS_RESHAPE: {
      fb_vec v;
      if (!fb_vector(r, opt, RESHAPE_NEW_SHAPE, 4, &v)) return false;
      if (!fb_has(r, opt, RESHAPE_NEW_SHAPE)) break;
      if (v.len > KILN_MAX_RANK)
        return fail_with(rd, KILN_ERR_UNSUPPORTED, "reshape to rank %u exceeds kiln's maximum %d",
                         v.len, KILN_MAX_RANK);
      o->new_shape_count = (int32_t)v.len;
      for (uint32_t i = 0; i < v.len; i++) o->new_shape[i] = fb_vec_i32(r, &v, i);
      break;
    }
    case KILN_OPTS_SQUEEZE: {
      fb_vec v;
      if (!fb_vector(r, opt, SQUEEZE_DIMS, 4, &v)) return false;
      if (v.len > KILN_MAX_RANK)
        return fb_fail(r, "squeeze lists %u dimensions (kiln's maximum rank is %d)", v.len,
                       KILN_MAX_RANK);
      o->squeeze_dims_count = (int32_t)v.len;
      for (uint32_t i = 0; i < v.len; i++) o->squeeze_dims[i] = fb_vec_i32(r, &v, i);
      break;
    }
    case KILN_OPTS_REDUCER:
      BOOL(REDUCER_KEEP_DIMS, o->keep_dims, false);
      break;
    case KILN_OPTS_TRANSPOSE_CONV:
      U8(TCONV_PADDING, o->padding, 0);
      I32(TCONV_STRIDE_W, o->stride_w, 0);
      I32(TCONV_STRIDE_H, o->stride_h, 0);
      U8(TCONV_ACTIVATION, o->activation, 0);
      I8(TCONV_QUANTIZED_BIAS_TYPE, o->quantized_bias_type, 0);
      break;
    case KILN_OPTS_LEAKY_RELU:
      F32(LEAKY_RELU_ALPHA, o->alpha, 0.0f);
      break;
    default:
      break; /* tables without fields, or types kiln does not interpret */
  }
#undef U8
#undef I8
#undef I32
#undef BOOL
#undef F32
  return true;
}

static bool read_index_vector(reader *rd, const fb_table *t, int field, bool allow_absent,
                              const char *what, int32_t op_index, int32_t **out, int32_t *count) {
  fb_vec v;
  if (!fb_vector(&rd->fb, t, field, 4, &v)) return false;
  *count = (int32_t)v.len;
  *out = kiln_pool_alloc(rd->pool, (size_t)v.len * sizeof(int32_t), 4);
  if (!*out) return nomem(rd);
  int32_t n_tensors = rd->model->n_tensors;
  for (uint32_t i = 0; i < v.len; i++) {
    int32_t idx = fb_vec_i32(&rd->fb, &v, i);
    if ((idx < 0 && !(allow_absent && idx == -1)) || idx >= n_tensors) {
      if (op_index >= 0)
        return fb_fail(&rd->fb, "op %d: %s %u: tensor index %d out of range (%d tensors)",
                       (int)op_index, what, i, (int)idx, (int)n_tensors);
      return fb_fail(&rd->fb, "subgraph %s %u: tensor index %d out of range (%d tensors)", what, i,
                     (int)idx, (int)n_tensors);
    }
    (*out)[i] = idx;
  }
  return true;
}

static bool read_op(reader *rd, int32_t index, const fb_table *t, kiln_op *op) {
  memset(op, 0, sizeof *op);
  op->options.new_shape_count = -1;
  uint32_t opcode_index = 0;
  if (!fb_u32(&rd->fb, t, OP_OPCODE_INDEX, 0, &opcode_index)) return false;
  if (opcode_index >= rd->n_opcodes)
    return fb_fail(&rd->fb, "op %d: opcode index %u out of range (%u operator codes)", (int)index,
                   opcode_index, rd->n_opcodes);
  const tfl_opcode *oc = &rd->opcodes[opcode_index];
  op->code = oc->code;
  op->custom_code = oc->custom;
  op->version = oc->version;
  if (!read_index_vector(rd, t, OP_INPUTS, true, "input", index, &op->inputs, &op->n_inputs))
    return false;
  if (!read_index_vector(rd, t, OP_OUTPUTS, false, "output", index, &op->outputs, &op->n_outputs))
    return false;

  uint8_t opt_type = 0;
  if (!fb_u8(&rd->fb, t, OP_BUILTIN_OPTIONS_TYPE, 0, &opt_type)) return false;
  op->options.type = opt_type;
  fb_table opt;
  bool has_opt;
  if (!fb_table_field(&rd->fb, t, OP_BUILTIN_OPTIONS, &opt, &has_opt)) return false;
  if (has_opt && opt_type != 0 && !read_options(rd, &opt, &op->options)) {
    if (rd->status == KILN_OK) {
      char inner[sizeof rd->fb.msg];
      memcpy(inner, rd->fb.msg, sizeof inner);
      rd->fb.failed = false;
      return fb_fail(&rd->fb, "op %d (%s): options: %s", (int)index, kiln_opcode_name(op->code),
                     inner);
    }
    return false;
  }

  fb_vec custom;
  if (!fb_vector(&rd->fb, t, OP_CUSTOM_OPTIONS, 1, &custom)) return false;
  uint64_t large_off = 0, large_size = 0;
  if (!fb_u64(&rd->fb, t, OP_LARGE_CUSTOM_OPTIONS_OFFSET, 0, &large_off)) return false;
  if (!fb_u64(&rd->fb, t, OP_LARGE_CUSTOM_OPTIONS_SIZE, 0, &large_size)) return false;
  if (custom.len) {
    op->custom_options = rd->fb.buf + custom.data;
    op->custom_options_bytes = custom.len;
  } else if (large_off > 1 && large_size > 0) {
    if (large_off > rd->fb.size || large_size > rd->fb.size - large_off)
      return fb_fail(&rd->fb, "op %d: custom options lie outside the file", (int)index);
    op->custom_options = rd->fb.buf + large_off;
    op->custom_options_bytes = (size_t)large_size;
  }
  /* Custom options are parsed later by byte; give them an aligned copy. */
  if (op->custom_options && ((uintptr_t)op->custom_options & 15)) {
    op->custom_options = kiln_pool_memdup(rd->pool, op->custom_options, op->custom_options_bytes, 16);
    if (!op->custom_options) return nomem(rd);
  }
  return true;
}

static bool read_metadata(reader *rd, const fb_table *root) {
  fb_vec v;
  if (!fb_vector(&rd->fb, root, MODEL_METADATA, 4, &v)) return false;
  kiln_model *m = rd->model;
  m->metadata = kiln_pool_alloc(rd->pool, (size_t)v.len * sizeof(kiln_metadata), 8);
  if (!m->metadata) return nomem(rd);
  for (uint32_t i = 0; i < v.len; i++) {
    fb_table t;
    if (!fb_vec_table(&rd->fb, &v, i, &t)) return false;
    const char *name;
    uint32_t name_len, buffer = 0;
    if (!fb_string(&rd->fb, &t, METADATA_NAME, &name, &name_len)) return false;
    if (!fb_u32(&rd->fb, &t, METADATA_BUFFER, 0, &buffer)) return false;
    if (buffer >= rd->n_buffers)
      return fb_fail(&rd->fb, "metadata %u: buffer index %u out of range (%u buffers)", i, buffer,
                     rd->n_buffers);
    kiln_metadata *md = &m->metadata[i];
    md->name = pool_string(rd, name, name_len);
    if (!md->name) return nomem(rd);
    md->data = rd->buffers[buffer].data;
    md->bytes = rd->buffers[buffer].bytes;
    m->n_metadata++;
  }
  return true;
}

static bool read_model(reader *rd) {
  fb_table root;
  if (!fb_root(&rd->fb, &root)) return false;
  uint32_t version = 0;
  if (!fb_u32(&rd->fb, &root, MODEL_VERSION, 0, &version)) return false;
  if (version != TFLITE_SCHEMA_VERSION)
    return fail_with(rd, KILN_ERR_UNSUPPORTED,
                     "schema version %u is not supported (kiln reads version %d)", version,
                     TFLITE_SCHEMA_VERSION);
  if (!read_buffers(rd, &root) || !read_opcodes(rd, &root)) return false;

  const char *desc;
  uint32_t desc_len;
  if (!fb_string(&rd->fb, &root, MODEL_DESCRIPTION, &desc, &desc_len)) return false;
  rd->model->description = pool_string(rd, desc, desc_len);
  if (!rd->model->description) return nomem(rd);

  fb_vec subgraphs;
  if (!fb_vector(&rd->fb, &root, MODEL_SUBGRAPHS, 4, &subgraphs)) return false;
  if (subgraphs.len == 0) return fb_fail(&rd->fb, "the model has no subgraph");
  rd->model->extra_subgraphs = (int32_t)subgraphs.len - 1;
  fb_table sg;
  if (!fb_vec_table(&rd->fb, &subgraphs, 0, &sg)) return false;

  fb_vec tensors, ops;
  if (!fb_vector(&rd->fb, &sg, SUBGRAPH_TENSORS, 4, &tensors)) return false;
  if (!fb_vector(&rd->fb, &sg, SUBGRAPH_OPERATORS, 4, &ops)) return false;
  kiln_error err;
  if (kiln_model_reserve(rd->model, (int32_t)tensors.len, (int32_t)ops.len, &err) != KILN_OK)
    return nomem(rd);
  for (uint32_t i = 0; i < tensors.len; i++) {
    fb_table t;
    if (!fb_vec_table(&rd->fb, &tensors, i, &t)) return false;
    if (!read_tensor(rd, (int32_t)i, &t, &rd->model->tensors[i])) return false;
    rd->model->n_tensors++;
  }
  if (!read_index_vector(rd, &sg, SUBGRAPH_INPUTS, false, "input", -1, &rd->model->inputs,
                         &rd->model->n_inputs))
    return false;
  if (!read_index_vector(rd, &sg, SUBGRAPH_OUTPUTS, false, "output", -1, &rd->model->outputs,
                         &rd->model->n_outputs))
    return false;
  for (uint32_t i = 0; i < ops.len; i++) {
    fb_table t;
    if (!fb_vec_table(&rd->fb, &ops, i, &t)) return false;
    if (!read_op(rd, (int32_t)i, &t, &rd->model->ops[i])) return false;
    rd->model->n_ops++;
  }
  return read_metadata(rd, &root);
}

kiln_status kiln_model_parse(const void *bytes, size_t size, bool copy, const char *name,
                             kiln_model **out, kiln_error *err) {
  *out = NULL;
  kiln_model *m;
  kiln_status s = kiln_model_new(&m, err);
  if (s != KILN_OK) return s;
  if (copy && size > 0) {
    /* 64-byte alignment so constant buffers stay aligned in the copy. */
    m->impl->owned_bytes = kiln_pool_memdup(&m->impl->pool, bytes, size, 64);
    if (!m->impl->owned_bytes) {
      kiln_model_free(m);
      return kiln_fail(err, KILN_ERR_NOMEM, "%s: out of memory copying %zu bytes", name, size);
    }
    bytes = m->impl->owned_bytes;
    m->impl->owned_bytes = NULL; /* lives in the pool */
  }
  reader rd;
  memset(&rd, 0, sizeof rd);
  fb_reader_init(&rd.fb, bytes, size);
  rd.model = m;
  rd.pool = &m->impl->pool;
  rd.err = err;
  if (!read_model(&rd)) {
    kiln_status st = rd.status != KILN_OK ? rd.status : KILN_ERR_FORMAT;
    kiln_fail(err, st, "%s: %s", name, rd.fb.msg);
    kiln_model_free(m);
    return st;
  }
  *out = m;
  return KILN_OK;
}

kiln_status kiln_model_load(const char *path, kiln_model **out, kiln_error *err) {
  *out = NULL;
  kiln_mapped_file file;
  kiln_status s = kiln_file_map(path, &file, err);
  if (s != KILN_OK) return s;
  kiln_model *m;
  /* Mapped pages are page-aligned, so the model can refer into them. A
   * stream that was read into memory is owned by the model the same way. */
  s = kiln_model_parse(file.data, file.size, false, path, &m, err);
  if (s != KILN_OK) {
    kiln_file_unmap(&file);
    return s;
  }
  m->impl->file = file;
  s = kiln_model_simplify(m, err);
  if (s != KILN_OK) {
    kiln_error_prefix(err, "%s", path);
    kiln_model_free(m);
    return s;
  }
  *out = m;
  return KILN_OK;
}
