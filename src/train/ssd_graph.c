/*
 * SSD graph surgery for transfer learning (train/ssd_int.h): finding the
 * box and class predictors of a raw-output SSD, cutting the frozen body
 * that computes the feature maps, and writing retrained predictors back.
 *
 * The pattern recognised is what TF's SSD exporter and the converter make:
 *   feature map -> CONV_2D (box, A*4) -> RESHAPE [1, hwA, 1, 4] \
 *   ...                                            CONCATENATION (anchors)
 *   -> [RESHAPE] -> box encodings [1, N, 4]
 *   feature map -> CONV_2D (class, A*C) -> RESHAPE [1, hwA, C]  \
 *   ...                                            CONCATENATION -> [RESHAPE]
 *   -> class logits [1, N, C]
 * Everything else in the graph is the body and is left untouched.
 */
#include <stdio.h>
#include <string.h>

#include "train/ssd_int.h"

/* The op producing each tensor, or -1. */
static int32_t *producers(const kiln_model *m) {
  int32_t *p = kiln_malloc(((size_t)m->n_tensors + 1) * sizeof *p);
  if (!p) return NULL;
  for (int32_t t = 0; t < m->n_tensors; t++) p[t] = -1;
  for (int32_t i = 0; i < m->n_ops; i++)
    for (int32_t k = 0; k < m->ops[i].n_outputs; k++) p[m->ops[i].outputs[k]] = i;
  return p;
}

static bool is_const_f32(const kiln_model *m, int32_t t) {
  return t >= 0 && t < m->n_tensors && m->tensors[t].dtype == KILN_F32 && m->tensors[t].data;
}

/* Checks one predictor conv and returns its output channels, or -1. */
static int32_t check_conv(const kiln_model *m, int32_t op_index, const char *what,
                          kiln_error *err) {
  const kiln_op *op = &m->ops[op_index];
  const char *name = op->n_outputs ? m->tensors[op->outputs[0]].name : "";
  if (op->code != KILN_OP_CONV_2D || op->n_inputs < 3 || op->n_outputs != 1) {
    kiln_fail(err, KILN_ERR_UNSUPPORTED,
              "ssd: op %d (%s) feeding the %s reshape is not a CONV_2D with a bias",
              (int)op_index, kiln_opcode_name(op->code), what);
    return -1;
  }
  const kiln_op_options *o = &op->options;
  const kiln_tensor *wt = &m->tensors[op->inputs[1]], *in = &m->tensors[op->inputs[0]];
  const kiln_tensor *out = &m->tensors[op->outputs[0]];
  if (!is_const_f32(m, op->inputs[1]) || !is_const_f32(m, op->inputs[2]) || wt->rank != 4 ||
      in->rank != 4 || out->rank != 4 || in->dtype != KILN_F32 || wt->shape[3] != in->shape[3]) {
    kiln_fail(err, KILN_ERR_UNSUPPORTED,
              "ssd: %s predictor '%s' (op %d) needs float32 constant weights [O,kh,kw,I] and "
              "bias on a float [1,h,w,I] feature map",
              what, name, (int)op_index);
    return -1;
  }
  if ((o->stride_h > 1 || o->stride_w > 1) || (o->dilation_h > 1 || o->dilation_w > 1) ||
      o->activation != KILN_ACT_NONE || out->shape[1] != in->shape[1] ||
      out->shape[2] != in->shape[2]) {
    kiln_fail(err, KILN_ERR_UNSUPPORTED,
              "ssd: %s predictor '%s' (op %d) has stride %dx%d, dilation %dx%d or fused "
              "activation %d; kiln retrains stride-1, undilated predictors without activation",
              what, name, (int)op_index, (int)o->stride_h, (int)o->stride_w, (int)o->dilation_h,
              (int)o->dilation_w, (int)o->activation);
    return -1;
  }
  return wt->shape[0];
}

/* Walks back from a raw output to its CONCATENATION, recording a reshape
 * between them. */
static int32_t find_concat(const kiln_model *m, const int32_t *prod, int32_t output,
                           int32_t *final_reshape, kiln_error *err) {
  int32_t op = prod[output];
  *final_reshape = -1;
  if (op >= 0 && m->ops[op].code == KILN_OP_RESHAPE) {
    *final_reshape = op;
    op = prod[m->ops[op].inputs[0]];
  }
  if (op < 0 || m->ops[op].code != KILN_OP_CONCATENATION) {
    kiln_fail(err, KILN_ERR_UNSUPPORTED,
              "ssd: output '%s' does not come from a CONCATENATION of predictor outputs",
              m->tensors[output].name);
    return -1;
  }
  const kiln_tensor *t = &m->tensors[m->ops[op].outputs[0]];
  const int32_t axis = m->ops[op].options.axis < 0 ? m->ops[op].options.axis + t->rank
                                                  : m->ops[op].options.axis;
  if (axis != 1) {
    kiln_fail(err, KILN_ERR_UNSUPPORTED, "ssd: concatenation '%s' is along axis %d, not anchors",
              t->name, (int)m->ops[op].options.axis);
    return -1;
  }
  return op;
}

/* The conv behind input k of a concat (through its RESHAPE). */
static int32_t conv_behind(const kiln_model *m, const int32_t *prod, int32_t concat, int32_t k,
                           int32_t *reshape, kiln_error *err) {
  const int32_t r = prod[m->ops[concat].inputs[k]];
  if (r < 0 || m->ops[r].code != KILN_OP_RESHAPE) {
    kiln_fail(err, KILN_ERR_UNSUPPORTED,
              "ssd: input %d of concatenation '%s' is not a RESHAPE of a predictor", (int)k,
              m->tensors[m->ops[concat].outputs[0]].name);
    return -1;
  }
  *reshape = r;
  const int32_t c = prod[m->ops[r].inputs[0]];
  if (c < 0) {
    kiln_fail(err, KILN_ERR_UNSUPPORTED, "ssd: reshape '%s' has no producing op",
              m->tensors[m->ops[r].outputs[0]].name);
    return -1;
  }
  return c;
}

static kiln_status find_outputs(const kiln_model *m, ssd_layout *l, kiln_error *err) {
  for (int32_t i = 0; i < m->n_ops; i++)
    if (m->ops[i].code == KILN_OP_CUSTOM && m->ops[i].custom_code &&
        strcmp(m->ops[i].custom_code, "TFLite_Detection_PostProcess") == 0)
      return kiln_fail(err, KILN_ERR_UNSUPPORTED,
                       "ssd: the model ends in TFLite_Detection_PostProcess (op %d); retraining "
                       "needs its raw-output form (box encodings [1,N,4], class logits [1,N,C])",
                       (int)i);
  if (m->n_outputs != 2 || m->n_inputs != 1)
    return kiln_fail(err, KILN_ERR_UNSUPPORTED,
                     "ssd: the model has %d inputs and %d outputs; a raw-output SSD has one "
                     "image input and two outputs (box encodings [1,N,4], class logits [1,N,C])",
                     (int)m->n_inputs, (int)m->n_outputs);
  for (int k = 0; k < 2; k++) {
    const kiln_tensor *b = &m->tensors[m->outputs[k]], *c = &m->tensors[m->outputs[1 - k]];
    if (b->rank == 3 && b->shape[2] == 4 && c->rank == 3 && c->shape[1] == b->shape[1] &&
        b->dtype == KILN_F32 && c->dtype == KILN_F32) {
      l->box_output = m->outputs[k];
      l->class_output = m->outputs[1 - k];
      l->n_anchors = b->shape[1];
      l->n_columns = c->shape[2];
      const kiln_tensor *in = &m->tensors[m->inputs[0]];
      if (in->rank != 4 || in->shape[3] != 3 || in->dtype != KILN_F32)
        return kiln_fail(err, KILN_ERR_UNSUPPORTED,
                         "ssd: input '%s' is not a float32 [1,h,w,3] image", in->name);
      l->input_h = in->shape[1];
      l->input_w = in->shape[2];
      return KILN_OK;
    }
  }
  return kiln_fail(err, KILN_ERR_UNSUPPORTED,
                   "ssd: outputs '%s' and '%s' are not float32 box encodings [1,N,4] and class "
                   "logits [1,N,C]",
                   m->tensors[m->outputs[0]].name, m->tensors[m->outputs[1]].name);
}

/* Fills head k from its box and class convs. */
static kiln_status fill_head(const kiln_model *m, ssd_layout *l, int32_t k, int32_t box_conv,
                             int32_t class_conv, int32_t *anchor, kiln_error *err) {
  ssd_head *h = &l->heads[k];
  const int32_t box_out = check_conv(m, box_conv, "box", err);
  if (box_out < 0) return err ? err->status : KILN_ERR_UNSUPPORTED;
  const int32_t class_out = check_conv(m, class_conv, "class", err);
  if (class_out < 0) return err ? err->status : KILN_ERR_UNSUPPORTED;
  const kiln_op *bo = &m->ops[box_conv], *co = &m->ops[class_conv];
  const kiln_tensor *f = &m->tensors[bo->inputs[0]];
  const kiln_tensor *bw = &m->tensors[bo->inputs[1]], *cw = &m->tensors[co->inputs[1]];
  if (co->inputs[0] != bo->inputs[0] || box_out % 4 != 0 ||
      class_out != box_out / 4 * l->n_columns ||
      bw->shape[1] != cw->shape[1] || bw->shape[2] != cw->shape[2] ||
      bo->options.padding != co->options.padding)
    return kiln_fail(err, KILN_ERR_UNSUPPORTED,
                     "ssd: predictors %d ('%s', %d channels) and '%s' (%d channels) do not read "
                     "the same feature map with the same kernel and A*4 / A*%d channels",
                     (int)k, m->tensors[bo->outputs[0]].name, (int)box_out,
                     m->tensors[co->outputs[0]].name, (int)class_out, (int)l->n_columns);
  h->feature = bo->inputs[0];
  h->h = f->shape[1];
  h->w = f->shape[2];
  h->c = f->shape[3];
  h->anchors_per_cell = box_out / 4;
  h->first_anchor = *anchor;
  h->box_op = box_conv;
  h->class_op = class_conv;
  h->kernel_h = bw->shape[1];
  h->kernel_w = bw->shape[2];
  h->padding = bo->options.padding;
  *anchor += h->h * h->w * h->anchors_per_cell;
  return KILN_OK;
}

kiln_status ssd_layout_find(const kiln_model *m, ssd_layout *out, kiln_error *err) {
  memset(out, 0, sizeof *out);
  kiln_status s = find_outputs(m, out, err);
  if (s != KILN_OK) return s;
  int32_t *prod = producers(m);
  if (!prod) return kiln_fail(err, KILN_ERR_NOMEM, "ssd: out of memory");
  int32_t box_final;
  out->box_concat = find_concat(m, prod, out->box_output, &box_final, err);
  out->class_concat = out->box_concat < 0 ? -1
                                          : find_concat(m, prod, out->class_output,
                                                        &out->class_final_reshape, err);
  if (out->class_concat < 0) {
    kiln_free(prod);
    return err ? err->status : KILN_ERR_UNSUPPORTED;
  }
  const kiln_op *bc = &m->ops[out->box_concat], *cc = &m->ops[out->class_concat];
  if (bc->n_inputs != cc->n_inputs || bc->n_inputs < 1 || bc->n_inputs > KILN_SSD_MAX_LAYERS) {
    kiln_free(prod);
    return kiln_fail(err, KILN_ERR_UNSUPPORTED,
                     "ssd: %d box and %d class predictor outputs (1 to %d each, equal)",
                     (int)bc->n_inputs, (int)cc->n_inputs, KILN_SSD_MAX_LAYERS);
  }
  out->n_heads = bc->n_inputs;
  int32_t anchor = 0;
  for (int32_t k = 0; k < out->n_heads && s == KILN_OK; k++) {
    ssd_head *h = &out->heads[k];
    const int32_t box_conv = conv_behind(m, prod, out->box_concat, k, &h->box_reshape, err);
    const int32_t class_conv =
        box_conv < 0 ? -1 : conv_behind(m, prod, out->class_concat, k, &h->class_reshape, err);
    if (class_conv < 0) s = err ? err->status : KILN_ERR_UNSUPPORTED;
    else s = fill_head(m, out, k, box_conv, class_conv, &anchor, err);
  }
  kiln_free(prod);
  if (s == KILN_OK && anchor != out->n_anchors)
    s = kiln_fail(err, KILN_ERR_UNSUPPORTED,
                  "ssd: the predictors give %d anchors but the outputs have %d", (int)anchor,
                  (int)out->n_anchors);
  return s;
}

kiln_status ssd_model_copy(const kiln_model *base, kiln_model **out, kiln_error *err) {
  uint8_t *bytes = NULL;
  size_t size = 0;
  *out = NULL;
  kiln_status s = kiln_model_serialize(base, &bytes, &size, err);
  if (s == KILN_OK) s = kiln_model_parse(bytes, size, true, "base SSD", out, err);
  kiln_free(bytes);
  if (s == KILN_OK) s = kiln_model_simplify(*out, err);
  if (s != KILN_OK && *out) {
    kiln_model_free(*out);
    *out = NULL;
  }
  return s;
}

kiln_status ssd_make_body(kiln_model *copy, const ssd_layout *layout, kiln_error *err) {
  int32_t features[KILN_SSD_MAX_LAYERS];
  for (int32_t k = 0; k < layout->n_heads; k++) {
    features[k] = layout->heads[k].feature;
    for (int32_t j = 0; j < k; j++)
      if (features[j] == features[k])
        return kiln_fail(err, KILN_ERR_UNSUPPORTED,
                         "ssd: predictors %d and %d read the same feature map '%s'", (int)j,
                         (int)k, copy->tensors[features[k]].name);
  }
  kiln_status s =
      kiln_model_set_io(copy, copy->inputs, copy->n_inputs, features, layout->n_heads, err);
  return s == KILN_OK ? kiln_model_simplify(copy, err) : s;
}

/* A new constant tensor named after the one it replaces. */
static int32_t replace_const(kiln_model *m, int32_t old, int32_t rank, const int32_t *shape,
                             const void *data, kiln_dtype dtype, kiln_error *err) {
  char name[256];
  snprintf(name, sizeof name, "%s_retrained", m->tensors[old].name);
  return kiln_model_add_tensor(m, name, dtype, rank, shape, NULL, data, err);
}

/* Points a reshape's target shape (input and option) at columns as its
 * last dimension. */
static kiln_status retarget_reshape(kiln_model *m, int32_t op_index, int32_t columns,
                                    int32_t *shared_shape, kiln_error *err) {
  kiln_op *op = &m->ops[op_index];
  kiln_tensor *out = &m->tensors[op->outputs[0]];
  out->shape[out->rank - 1] = columns;
  if (op->options.new_shape_count > 0)
    op->options.new_shape[op->options.new_shape_count - 1] = columns;
  if (op->n_inputs < 2 || op->inputs[1] < 0) return KILN_OK;
  const kiln_tensor *st = &m->tensors[op->inputs[1]];
  if (st->dtype != KILN_I32 || !st->data || st->rank != 1 || st->shape[0] != out->rank)
    return kiln_fail(err, KILN_ERR_UNSUPPORTED,
                     "ssd: reshape '%s' takes its shape from '%s', not an int32 constant",
                     out->name, st->name);
  int32_t dims[KILN_MAX_RANK];
  memcpy(dims, st->data, (size_t)out->rank * sizeof *dims);
  dims[out->rank - 1] = columns;
  /* Reshapes sharing one shape tensor share its replacement too. */
  if (*shared_shape < 0 || memcmp(m->tensors[*shared_shape].data, dims,
                                  (size_t)out->rank * sizeof *dims) != 0) {
    const int32_t t = replace_const(m, op->inputs[1], 1, (int32_t[]){out->rank}, dims, KILN_I32,
                                    err);
    if (t < 0) return err ? err->status : KILN_ERR_NOMEM;
    *shared_shape = t;
    op = &m->ops[op_index];
  }
  op->inputs[1] = *shared_shape;
  return KILN_OK;
}

/* Gives conv op_index the weights and bias of net layer `layer`. */
static kiln_status set_conv(kiln_model *m, int32_t op_index, kiln_net *net, int32_t layer,
                            kiln_error *err) {
  const kiln_tensor *wt = &m->tensors[m->ops[op_index].inputs[1]];
  const kiln_layer_info info = kiln_net_layer(net, layer);
  int32_t shape[4] = {info.c, wt->shape[1], wt->shape[2], wt->shape[3]};
  const float *w = kiln_net_param(net, layer, KILN_PARAM_WEIGHT, NULL);
  const float *b = kiln_net_param(net, layer, KILN_PARAM_BIAS, NULL);
  const int32_t wi = replace_const(m, m->ops[op_index].inputs[1], 4, shape, w, KILN_F32, err);
  if (wi < 0) return err ? err->status : KILN_ERR_NOMEM;
  const int32_t bi =
      replace_const(m, m->ops[op_index].inputs[2], 1, (int32_t[]){info.c}, b, KILN_F32, err);
  if (bi < 0) return err ? err->status : KILN_ERR_NOMEM;
  kiln_op *op = &m->ops[op_index];
  op->inputs[1] = wi;
  op->inputs[2] = bi;
  kiln_tensor *out = &m->tensors[op->outputs[0]];
  out->shape[3] = info.c;
  return KILN_OK;
}

kiln_status ssd_export_heads(kiln_model *copy, const ssd_layout *layout, kiln_net *const *heads,
                             int32_t n_columns, kiln_error *err) {
  kiln_status s = KILN_OK;
  int32_t shared_shape = -1;
  for (int32_t k = 0; k < layout->n_heads && s == KILN_OK; k++) {
    const ssd_head *h = &layout->heads[k];
    s = set_conv(copy, h->box_op, heads[k], 1, err);
    if (s == KILN_OK) s = set_conv(copy, h->class_op, heads[k], 2, err);
    if (s == KILN_OK) s = retarget_reshape(copy, h->class_reshape, n_columns, &shared_shape, err);
  }
  if (s != KILN_OK) return s;
  kiln_tensor *concat = &copy->tensors[copy->ops[layout->class_concat].outputs[0]];
  concat->shape[concat->rank - 1] = n_columns;
  if (layout->class_final_reshape >= 0) {
    shared_shape = -1;
    s = retarget_reshape(copy, layout->class_final_reshape, n_columns, &shared_shape, err);
  }
  return s == KILN_OK ? kiln_model_simplify(copy, err) : s;
}

kiln_status kiln_ssd_detect_config(const kiln_model *raw, kiln_detect_config *out,
                                   kiln_error *err) {
  *out = kiln_detect_config_default300();
  ssd_layout l;
  kiln_status s = find_outputs(raw, &l, err);
  if (s == KILN_OK)
    s = kiln_ssd_anchor_config_infer(l.n_anchors, l.input_h, l.input_w, &out->anchors, err);
  if (s != KILN_OK) return s;
  out->score_threshold = 0.05f;
  out->iou_threshold = 0.6f;
  out->max_detections = 25;
  out->class_agnostic = false;
  out->detections_per_class = 25;
  return KILN_OK;
}
