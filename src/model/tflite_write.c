/*
 * The .tflite writer: kiln_model -> flatbuffer (schema v3, identifier
 * "TFL3"). Buffer 0 is the empty sentinel; each constant tensor gets its own
 * buffer with data aligned to 16 bytes; metadata entries follow. Options are
 * written with every field explicit. The result reads back to the same graph
 * (tested) and loads in LiteRT.
 */
#include <string.h>

#include "model/flatbuf.h"
#include "model/model_int.h"
#include "model/tflite_schema.h"

typedef struct opcode_entry {
  int32_t code;
  const char *custom;
  int32_t version;
} opcode_entry;

typedef struct writer {
  fb_builder b;
  const kiln_model *m;
  kiln_error *err;
  kiln_status status;
  opcode_entry *opcodes;
  int32_t n_opcodes;
  int32_t *op_opcode;     /* per op: index into opcodes */
  uint32_t *tensor_buffer; /* per tensor: buffer index (0: none) */
  uint32_t n_buffers;
} writer;

static bool same_opcode(const opcode_entry *e, const kiln_op *op) {
  if (e->code != op->code || e->version != op->version) return false;
  if (op->code != KILN_OP_CUSTOM) return true;
  return strcmp(e->custom, op->custom_code) == 0;
}

static kiln_status collect(writer *w) {
  const kiln_model *m = w->m;
  w->opcodes = kiln_calloc((size_t)m->n_ops + 1, sizeof *w->opcodes);
  w->op_opcode = kiln_calloc((size_t)m->n_ops + 1, sizeof *w->op_opcode);
  w->tensor_buffer = kiln_calloc((size_t)m->n_tensors + 1, sizeof *w->tensor_buffer);
  if (!w->opcodes || !w->op_opcode || !w->tensor_buffer)
    return kiln_fail(w->err, KILN_ERR_NOMEM, "out of memory");
  for (int32_t i = 0; i < m->n_ops; i++) {
    const kiln_op *op = &m->ops[i];
    if (op->code == KILN_OP_CUSTOM && !op->custom_code)
      return kiln_fail(w->err, KILN_ERR_INVALID_ARG, "op %d: custom op without a name", (int)i);
    int32_t k = 0;
    while (k < w->n_opcodes && !same_opcode(&w->opcodes[k], op)) k++;
    if (k == w->n_opcodes) {
      w->opcodes[k] = (opcode_entry){op->code, op->custom_code, op->version > 0 ? op->version : 1};
      w->n_opcodes++;
    }
    w->op_opcode[i] = k;
  }
  w->n_buffers = 1;
  for (int32_t i = 0; i < m->n_tensors; i++)
    if (m->tensors[i].data) w->tensor_buffer[i] = w->n_buffers++;
  return KILN_OK;
}

static size_t write_i32_vector(writer *w, const int32_t *v, int32_t n) {
  return fb_write_vector(&w->b, v, 4, (uint32_t)n, 4);
}

static size_t write_opcodes(writer *w) {
  size_t vec = fb_write_vector(&w->b, NULL, 4, (uint32_t)w->n_opcodes, 4);
  for (int32_t i = 0; i < w->n_opcodes; i++) {
    const opcode_entry *e = &w->opcodes[i];
    fb_field f[4] = {
        {OPCODE_DEPRECATED_BUILTIN, 1, FB_SCALAR, (uint64_t)(e->code < 127 ? e->code : 127)},
        {OPCODE_VERSION, 4, FB_SCALAR, (uint64_t)(uint32_t)e->version},
        {OPCODE_BUILTIN, 4, FB_SCALAR, (uint64_t)(uint32_t)e->code},
        {OPCODE_CUSTOM, 4, FB_OFFSET, 0},
    };
    size_t slots[4];
    size_t t = fb_write_table(&w->b, f, e->custom ? 4 : 3, slots);
    fb_patch(&w->b, vec + 4 + 4 * (size_t)i, t);
    if (e->custom) fb_patch(&w->b, slots[3], fb_write_string(&w->b, e->custom, strlen(e->custom)));
  }
  return vec;
}

static size_t write_quant(writer *w, const kiln_quant *q) {
  fb_field f[3] = {
      {QUANT_SCALE, 4, FB_OFFSET, 0},
      {QUANT_ZERO_POINT, 4, FB_OFFSET, 0},
      {QUANT_QUANTIZED_DIMENSION, 4, FB_SCALAR, (uint64_t)(uint32_t)q->axis},
  };
  size_t slots[3];
  size_t t = fb_write_table(&w->b, f, 3, slots);
  fb_patch(&w->b, slots[0], fb_write_vector(&w->b, q->scale, 4, (uint32_t)q->count, 4));
  size_t zp = fb_write_vector(&w->b, NULL, 8, (uint32_t)q->count, 8);
  if (!w->b.failed) {
    for (int32_t i = 0; i < q->count; i++) {
      int64_t z = q->zero_point[i];
      uint8_t *p = w->b.buf + zp + 4 + 8 * (size_t)i;
      for (int k = 0; k < 8; k++) p[k] = (uint8_t)((uint64_t)z >> (8 * k));
    }
  }
  fb_patch(&w->b, slots[1], zp);
  return t;
}

static size_t write_tensor(writer *w, int32_t i) {
  const kiln_tensor *t = &w->m->tensors[i];
  fb_field f[6] = {
      {TENSOR_SHAPE, 4, FB_OFFSET, 0},
      {TENSOR_NAME, 4, FB_OFFSET, 0},
      {TENSOR_TYPE, 1, FB_SCALAR, (uint64_t)t->dtype},
      {TENSOR_BUFFER, 4, FB_SCALAR, w->tensor_buffer[i]},
      {TENSOR_IS_VARIABLE, 1, FB_SCALAR, (t->flags & KILN_TENSOR_VARIABLE) ? 1u : 0u},
      {TENSOR_QUANTIZATION, 4, FB_OFFSET, 0},
  };
  size_t slots[6];
  size_t tb = fb_write_table(&w->b, f, t->quant.count > 0 ? 6 : 5, slots);
  fb_patch(&w->b, slots[0], write_i32_vector(w, t->shape, t->rank));
  fb_patch(&w->b, slots[1], fb_write_string(&w->b, t->name, strlen(t->name)));
  if (t->quant.count > 0) fb_patch(&w->b, slots[5], write_quant(w, &t->quant));
  return tb;
}

/* Fills the option fields of one op. Returns the number of fields, or -1 for
 * an option type kiln cannot write. vec_field receives the index of a field
 * holding a vector (new_shape / squeeze_dims), or -1. */
static int option_fields(const kiln_op_options *o, fb_field *f, int *vec_field) {
  int n = 0;
  *vec_field = -1;
#define S(id, size, v) f[n++] = (fb_field){(uint16_t)(id), size, FB_SCALAR, (uint64_t)(uint32_t)(v)}
  switch (o->type) {
    case KILN_OPTS_CONV2D:
      S(CONV_PADDING, 1, o->padding); S(CONV_STRIDE_W, 4, o->stride_w);
      S(CONV_STRIDE_H, 4, o->stride_h); S(CONV_ACTIVATION, 1, o->activation);
      S(CONV_DILATION_W, 4, o->dilation_w); S(CONV_DILATION_H, 4, o->dilation_h);
      S(CONV_QUANTIZED_BIAS_TYPE, 1, (uint8_t)o->quantized_bias_type);
      break;
    case KILN_OPTS_DEPTHWISE_CONV2D:
      S(DW_PADDING, 1, o->padding); S(DW_STRIDE_W, 4, o->stride_w);
      S(DW_STRIDE_H, 4, o->stride_h); S(DW_DEPTH_MULTIPLIER, 4, o->depth_multiplier);
      S(DW_ACTIVATION, 1, o->activation); S(DW_DILATION_W, 4, o->dilation_w);
      S(DW_DILATION_H, 4, o->dilation_h);
      break;
    case KILN_OPTS_POOL2D:
      S(POOL_PADDING, 1, o->padding); S(POOL_STRIDE_W, 4, o->stride_w);
      S(POOL_STRIDE_H, 4, o->stride_h); S(POOL_FILTER_W, 4, o->filter_w);
      S(POOL_FILTER_H, 4, o->filter_h); S(POOL_ACTIVATION, 1, o->activation);
      break;
    case KILN_OPTS_FULLY_CONNECTED:
      S(FC_ACTIVATION, 1, o->activation); S(FC_WEIGHTS_FORMAT, 1, (uint8_t)o->weights_format);
      S(FC_KEEP_NUM_DIMS, 1, o->keep_num_dims); S(FC_ASYMMETRIC, 1, o->asymmetric_quantize_inputs);
      S(FC_QUANTIZED_BIAS_TYPE, 1, (uint8_t)o->quantized_bias_type);
      break;
    case KILN_OPTS_SOFTMAX: {
      uint32_t bits;
      memcpy(&bits, &o->beta, 4);
      S(SOFTMAX_BETA, 4, bits);
      break;
    }
    case KILN_OPTS_CONCATENATION:
      S(CONCAT_AXIS, 4, o->axis); S(CONCAT_ACTIVATION, 1, o->activation);
      break;
    case KILN_OPTS_ADD:
      S(ADD_ACTIVATION, 1, o->activation); S(ADD_POT_SCALE_INT16, 1, o->pot_scale_int16);
      break;
    case KILN_OPTS_SUB:
      S(SUB_ACTIVATION, 1, o->activation); S(SUB_POT_SCALE_INT16, 1, o->pot_scale_int16);
      break;
    case KILN_OPTS_MUL:
      S(MUL_ACTIVATION, 1, o->activation);
      break;
    case KILN_OPTS_L2NORM:
      S(L2NORM_ACTIVATION, 1, o->activation);
      break;
    case KILN_OPTS_RESIZE_BILINEAR:
      S(RESIZE_BILINEAR_ALIGN_CORNERS, 1, o->align_corners);
      S(RESIZE_BILINEAR_HALF_PIXEL, 1, o->half_pixel_centers);
      break;
    case KILN_OPTS_RESIZE_NEAREST_NEIGHBOR:
      S(RESIZE_NN_ALIGN_CORNERS, 1, o->align_corners);
      S(RESIZE_NN_HALF_PIXEL, 1, o->half_pixel_centers);
      break;
    case KILN_OPTS_RESHAPE:
      if (o->new_shape_count >= 0) {
        *vec_field = n;
        f[n++] = (fb_field){RESHAPE_NEW_SHAPE, 4, FB_OFFSET, 0};
      }
      break;
    case KILN_OPTS_SQUEEZE:
      *vec_field = n;
      f[n++] = (fb_field){SQUEEZE_DIMS, 4, FB_OFFSET, 0};
      break;
    case KILN_OPTS_REDUCER:
      S(REDUCER_KEEP_DIMS, 1, o->keep_dims);
      break;
    case KILN_OPTS_TRANSPOSE_CONV:
      S(TCONV_PADDING, 1, o->padding); S(TCONV_STRIDE_W, 4, o->stride_w);
      S(TCONV_STRIDE_H, 4, o->stride_h); S(TCONV_ACTIVATION, 1, o->activation);
      S(TCONV_QUANTIZED_BIAS_TYPE, 1, (uint8_t)o->quantized_bias_type);
      break;
    case KILN_OPTS_LEAKY_RELU: {
      uint32_t bits;
      memcpy(&bits, &o->alpha, 4);
      S(LEAKY_RELU_ALPHA, 4, bits);
      break;
    }
    case KILN_OPTS_PAD:
    case KILN_OPTS_PADV2:
    case KILN_OPTS_DEQUANTIZE:
    case KILN_OPTS_QUANTIZE:
    case KILN_OPTS_HARD_SWISH:
      break; /* tables without fields */
    default:
      return -1;
  }
#undef S
  return n;
}

static size_t write_op(writer *w, int32_t i) {
  const kiln_op *op = &w->m->ops[i];
  fb_field opt[FB_MAX_FIELDS];
  int vec_field = -1;
  int n_opt = 0;
  if (op->options.type != KILN_OPTS_NONE) {
    n_opt = option_fields(&op->options, opt, &vec_field);
    if (n_opt < 0) {
      w->status = kiln_fail(w->err, KILN_ERR_UNSUPPORTED,
                            "op %d (%s): builtin options of type %u cannot be written", (int)i,
                            kiln_opcode_name(op->code), op->options.type);
      return 0;
    }
  }
  fb_field f[7] = {
      {OP_OPCODE_INDEX, 4, FB_SCALAR, (uint64_t)(uint32_t)w->op_opcode[i]},
      {OP_INPUTS, 4, FB_OFFSET, 0},
      {OP_OUTPUTS, 4, FB_OFFSET, 0},
      {OP_BUILTIN_OPTIONS_TYPE, 1, FB_SCALAR, op->options.type},
      {OP_CUSTOM_OPTIONS_FORMAT, 1, FB_SCALAR, 0},
  };
  size_t slots[7];
  int n = 5;
  int opt_slot = -1, custom_slot = -1;
  if (op->options.type != KILN_OPTS_NONE) {
    opt_slot = n;
    f[n++] = (fb_field){OP_BUILTIN_OPTIONS, 4, FB_OFFSET, 0};
  }
  if (op->custom_options_bytes) {
    custom_slot = n;
    f[n++] = (fb_field){OP_CUSTOM_OPTIONS, 4, FB_OFFSET, 0};
  }
  size_t t = fb_write_table(&w->b, f, n, slots);
  fb_patch(&w->b, slots[1], write_i32_vector(w, op->inputs, op->n_inputs));
  fb_patch(&w->b, slots[2], write_i32_vector(w, op->outputs, op->n_outputs));
  if (opt_slot >= 0) {
    size_t opt_slots[FB_MAX_FIELDS];
    size_t ot = fb_write_table(&w->b, opt, n_opt, opt_slots);
    fb_patch(&w->b, slots[opt_slot], ot);
    if (vec_field >= 0) {
      const kiln_op_options *o = &op->options;
      size_t v = o->type == KILN_OPTS_RESHAPE
                     ? write_i32_vector(w, o->new_shape, o->new_shape_count)
                     : write_i32_vector(w, o->squeeze_dims, o->squeeze_dims_count);
      fb_patch(&w->b, opt_slots[vec_field], v);
    }
  }
  if (custom_slot >= 0)
    fb_patch(&w->b, slots[custom_slot],
             fb_write_vector(&w->b, op->custom_options, 1, (uint32_t)op->custom_options_bytes, 4));
  return t;
}

static size_t write_subgraph(writer *w) {
  const kiln_model *m = w->m;
  fb_field f[5] = {
      {SUBGRAPH_TENSORS, 4, FB_OFFSET, 0}, {SUBGRAPH_INPUTS, 4, FB_OFFSET, 0},
      {SUBGRAPH_OUTPUTS, 4, FB_OFFSET, 0}, {SUBGRAPH_OPERATORS, 4, FB_OFFSET, 0},
      {SUBGRAPH_NAME, 4, FB_OFFSET, 0},
  };
  size_t slots[5];
  size_t t = fb_write_table(&w->b, f, 5, slots);
  size_t tv = fb_write_vector(&w->b, NULL, 4, (uint32_t)m->n_tensors, 4);
  fb_patch(&w->b, slots[0], tv);
  for (int32_t i = 0; i < m->n_tensors; i++)
    fb_patch(&w->b, tv + 4 + 4 * (size_t)i, write_tensor(w, i));
  fb_patch(&w->b, slots[1], write_i32_vector(w, m->inputs, m->n_inputs));
  fb_patch(&w->b, slots[2], write_i32_vector(w, m->outputs, m->n_outputs));
  size_t ov = fb_write_vector(&w->b, NULL, 4, (uint32_t)m->n_ops, 4);
  fb_patch(&w->b, slots[3], ov);
  for (int32_t i = 0; i < m->n_ops && w->status == KILN_OK; i++)
    fb_patch(&w->b, ov + 4 + 4 * (size_t)i, write_op(w, i));
  fb_patch(&w->b, slots[4], fb_write_string(&w->b, "main", 4));
  return t;
}

static size_t write_buffer(writer *w, const void *data, size_t bytes) {
  fb_field f[1] = {{BUFFER_DATA, 4, FB_OFFSET, 0}};
  size_t slot;
  size_t t = fb_write_table(&w->b, f, bytes ? 1 : 0, &slot);
  if (bytes) fb_patch(&w->b, slot, fb_write_vector(&w->b, data, 1, (uint32_t)bytes, 16));
  return t;
}

static size_t write_buffers(writer *w) {
  const kiln_model *m = w->m;
  uint32_t total = w->n_buffers + (uint32_t)m->n_metadata;
  size_t vec = fb_write_vector(&w->b, NULL, 4, total, 4);
  fb_patch(&w->b, vec + 4, write_buffer(w, NULL, 0));
  for (int32_t i = 0; i < m->n_tensors; i++) {
    uint32_t k = w->tensor_buffer[i];
    if (k) fb_patch(&w->b, vec + 4 + 4 * (size_t)k, write_buffer(w, m->tensors[i].data, m->tensors[i].data_bytes));
  }
  for (int32_t i = 0; i < m->n_metadata; i++) {
    uint32_t k = w->n_buffers + (uint32_t)i;
    fb_patch(&w->b, vec + 4 + 4 * (size_t)k,
             write_buffer(w, m->metadata[i].data, m->metadata[i].bytes));
  }
  return vec;
}

static size_t write_metadata(writer *w) {
  const kiln_model *m = w->m;
  size_t vec = fb_write_vector(&w->b, NULL, 4, (uint32_t)m->n_metadata, 4);
  for (int32_t i = 0; i < m->n_metadata; i++) {
    fb_field f[2] = {{METADATA_NAME, 4, FB_OFFSET, 0},
                     {METADATA_BUFFER, 4, FB_SCALAR, w->n_buffers + (uint32_t)i}};
    size_t slots[2];
    size_t t = fb_write_table(&w->b, f, 2, slots);
    fb_patch(&w->b, vec + 4 + 4 * (size_t)i, t);
    fb_patch(&w->b, slots[0],
             fb_write_string(&w->b, m->metadata[i].name, strlen(m->metadata[i].name)));
  }
  return vec;
}

kiln_status kiln_model_serialize(const kiln_model *model, uint8_t **out_bytes, size_t *out_size,
                                 kiln_error *err) {
  *out_bytes = NULL;
  *out_size = 0;
  writer w;
  memset(&w, 0, sizeof w);
  w.m = model;
  w.err = err;
  fb_builder_init(&w.b);
  kiln_status s = collect(&w);
  if (s == KILN_OK) {
    size_t root = fb_reserve(&w.b, 8);
    if (!w.b.failed) memcpy(w.b.buf + root + 4, TFLITE_FILE_ID, 4);
    fb_field f[6] = {
        {MODEL_VERSION, 4, FB_SCALAR, TFLITE_SCHEMA_VERSION},
        {MODEL_OPERATOR_CODES, 4, FB_OFFSET, 0},
        {MODEL_SUBGRAPHS, 4, FB_OFFSET, 0},
        {MODEL_DESCRIPTION, 4, FB_OFFSET, 0},
        {MODEL_BUFFERS, 4, FB_OFFSET, 0},
        {MODEL_METADATA, 4, FB_OFFSET, 0},
    };
    size_t slots[6];
    size_t t = fb_write_table(&w.b, f, model->n_metadata ? 6 : 5, slots);
    fb_patch(&w.b, root, t);
    fb_patch(&w.b, slots[1], write_opcodes(&w));
    size_t sv = fb_write_vector(&w.b, NULL, 4, 1, 4);
    fb_patch(&w.b, slots[2], sv);
    fb_patch(&w.b, sv + 4, write_subgraph(&w));
    const char *desc = model->description ? model->description : "";
    fb_patch(&w.b, slots[3], fb_write_string(&w.b, desc, strlen(desc)));
    fb_patch(&w.b, slots[4], write_buffers(&w));
    if (model->n_metadata) fb_patch(&w.b, slots[5], write_metadata(&w));
    s = w.status;
    if (s == KILN_OK && w.b.failed) s = kiln_fail(err, KILN_ERR_NOMEM, "out of memory serializing the model");
    if (s == KILN_OK && w.b.len > INT32_MAX)
      s = kiln_fail(err, KILN_ERR_LIMIT, "model of %zu bytes exceeds the 2 GiB flatbuffer limit", w.b.len);
  }
  kiln_free(w.opcodes);
  kiln_free(w.op_opcode);
  kiln_free(w.tensor_buffer);
  if (s != KILN_OK) {
    fb_builder_free(&w.b);
    return s;
  }
  *out_bytes = w.b.buf;
  *out_size = w.b.len;
  return KILN_OK;
}

kiln_status kiln_model_save(const kiln_model *model, const char *path, kiln_error *err) {
  uint8_t *bytes;
  size_t size;
  kiln_status s = kiln_model_serialize(model, &bytes, &size, err);
  if (s != KILN_OK) {
    kiln_error_prefix(err, "%s", path);
    return s;
  }
  s = kiln_file_write_atomic(path, bytes, size, err);
  kiln_free(bytes);
  return s;
}
