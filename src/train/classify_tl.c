/*
 * Classification by transfer learning (kiln/trainer.h): a pretrained
 * backbone cut at a feature tensor, its features computed once per image
 * and cached, a head (and optionally the backbone's last conv layers)
 * trained with the engine on the cached features, and the export of
 * backbone + head as one float model.
 *
 * The backbone (tl_backbone) is the loaded .tflite, dequantized when it is
 * quantized. Without fine-tuning the cached feature of an image is the
 * feature map averaged over height and width by a MEAN op appended to the
 * backbone's sub-graph (the same op the exported model ends with), so the
 * exported model computes exactly the vectors the head was trained on.
 * With fine-tuning the cache holds the feature map of the cut tensor (the
 * input of the last converted layers), and those layers are engine layers
 * holding the pretrained weights (batch norm is already folded into them
 * in a .tflite). Files: classify_tl.c (backbone, net, export),
 * classify_tl_features.c (feature computation and cache).
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/file.h"
#include "train/classify_tl.h"

/* The default backbone and its last feature map (10x10x1280, read by the
 * SSD's second box predictor and its extra layers). */
#define DEFAULT_BACKBONE "ssd_mobilenet_v2_oidv4_fp16.tflite"
#define DEFAULT_FEATURE "FeatureExtractor/MobilenetV2/Conv_1/Relu6"

void tl_backbone_free(tl_backbone *b) {
  kiln_model_free(b->model);
  kiln_free(b->tuned_ops);
  memset(b, 0, sizeof *b);
}

static bool is_quantized(const kiln_model *m) {
  for (int32_t t = 0; t < m->n_tensors; t++)
    if (!m->tensors[t].data && (m->tensors[t].dtype == KILN_I8 || m->tensors[t].dtype == KILN_U8))
      return true;
  return false;
}

/* The input of the last global pooling (MEAN over height and width, or an
 * AVERAGE_POOL_2D to 1x1): a classifier's feature map. */
static int32_t pooled_feature(const kiln_model *m) {
  for (int32_t o = m->n_ops - 1; o >= 0; o--) {
    const kiln_op *op = &m->ops[o];
    if (op->code != KILN_OP_MEAN && op->code != KILN_OP_AVERAGE_POOL_2D) continue;
    const kiln_tensor *in = &m->tensors[op->inputs[0]], *out = &m->tensors[op->outputs[0]];
    const bool to_1x1 = out->rank == 2 || (out->rank == 4 && out->shape[1] == 1 && out->shape[2] == 1);
    if (in->rank == 4 && to_1x1) return op->inputs[0];
  }
  return -1;
}

static uint64_t file_key(const char *path, kiln_error *err, kiln_status *s) {
  kiln_mapped_file f;
  *s = kiln_file_map(path, &f, err);
  if (*s != KILN_OK) return 0;
  uint64_t h = pl_hash(PL_HASH_INIT, f.data, f.size);
  kiln_file_unmap(&f);
  return h;
}

kiln_status tl_backbone_open(const char *path, const char *feature, tl_backbone *b,
                             kiln_error *err) {
  memset(b, 0, sizeof *b);
  char def[4096];
  if (!path) {
    const char *dir = getenv("KILN_MODELS");
    snprintf(def, sizeof def, "%s/%s", dir && *dir ? dir : "../shared/models", DEFAULT_BACKBONE);
    path = def;
    if (!feature) feature = DEFAULT_FEATURE;
  }
  snprintf(b->path, sizeof b->path, "%s", path);
  kiln_status s;
  b->key = file_key(path, err, &s);
  if (s != KILN_OK) return s;
  kiln_model *m;
  if ((s = kiln_model_load(path, &m, err)) != KILN_OK) return s;
  b->norm = kiln_image_norm_default();
  b->dequantized = is_quantized(m);
  if (b->dequantized) {
    kiln_model *f;
    s = kiln_trainer_dequantize(m, &f, &b->norm, err);
    kiln_model_free(m);
    if (s != KILN_OK) {
      kiln_error_prefix(err, "%s", path);
      return s;
    }
    m = f;
  }
  b->model = m;
  if (m->n_inputs != 1) {
    s = kiln_fail(err, KILN_ERR_UNSUPPORTED, "%s: %d inputs; a backbone has one image input",
                  path, (int)m->n_inputs);
    goto fail;
  }
  const kiln_tensor *in = &m->tensors[m->inputs[0]];
  if (in->rank != 4 || in->shape[0] != 1 || in->shape[3] != 3 || in->dtype != KILN_F32) {
    s = kiln_fail(err, KILN_ERR_UNSUPPORTED, "%s: input '%s' is not a float [1, H, W, 3] image",
                  path, in->name);
    goto fail;
  }
  b->in_h = in->shape[1];
  b->in_w = in->shape[2];
  b->feature = feature ? kiln_trainer_find_tensor(m, feature) : pooled_feature(m);
  if (b->feature < 0) {
    s = feature ? kiln_fail(err, KILN_ERR_INVALID_ARG,
                            "%s: no tensor named '%s' (or it names several)", path, feature)
                : kiln_fail(err, KILN_ERR_INVALID_ARG,
                            "%s: no global pooling found; name the feature map with --feature-tensor",
                            path);
    goto fail;
  }
  const kiln_tensor *f = &m->tensors[b->feature];
  if (f->data || f->rank != 4 || f->shape[0] != 1 || f->dtype != KILN_F32) {
    s = kiln_fail(err, KILN_ERR_INVALID_ARG,
                  "%s: feature tensor '%s' is not a float activation [1, H, W, C]", path, f->name);
    goto fail;
  }
  b->cut = b->feature;
  return KILN_OK;
fail:
  tl_backbone_free(b);
  return s;
}

/* The op producing tensor t among ops [0, before), or -1. */
static int32_t producer(const kiln_model *m, int32_t t, int32_t before) {
  for (int32_t o = before - 1; o >= 0; o--)
    for (int32_t k = 0; k < m->ops[o].n_outputs; k++)
      if (m->ops[o].outputs[k] == t) return o;
  return -1;
}

static bool convertible(const kiln_op *op) {
  switch (op->code) {
  case KILN_OP_CONV_2D:
  case KILN_OP_DEPTHWISE_CONV_2D:
  case KILN_OP_ADD:
    return op->options.activation == KILN_ACT_NONE || op->options.activation == KILN_ACT_RELU ||
           op->options.activation == KILN_ACT_RELU6;
  case KILN_OP_RELU:
  case KILN_OP_RELU6:
  case KILN_OP_HARD_SWISH:
    return true;
  default:
    return false;
  }
}

/* The activation inputs of an op (not constants). */
static int32_t activation_inputs(const kiln_model *m, const kiln_op *op, int32_t *out) {
  int32_t n = 0;
  for (int32_t k = 0; k < op->n_inputs; k++)
    if (op->inputs[k] >= 0 && !m->tensors[op->inputs[k]].data) out[n++] = op->inputs[k];
  return n;
}

/* True when the ops list[first..n) read nothing from before them but
 * tensor `cut`. */
static bool single_entry(const kiln_model *m, const int32_t *list, int32_t first, int32_t n,
                         int32_t cut) {
  for (int32_t i = first; i < n; i++) {
    int32_t ins[16];
    const int32_t k = activation_inputs(m, &m->ops[list[i]], ins);
    for (int32_t j = 0; j < k; j++) {
      if (ins[j] == cut) continue;
      bool inside = false;
      for (int32_t q = first; q < i && !inside; q++)
        for (int32_t o = 0; o < m->ops[list[q]].n_outputs; o++)
          inside |= m->ops[list[q]].outputs[o] == ins[j];
      if (!inside) return false;
    }
  }
  return true;
}

kiln_status tl_plan_fine_tune(tl_backbone *b, int32_t n_layers, kiln_error *err) {
  const kiln_model *m = b->model;
  kiln_free(b->tuned_ops);
  b->tuned_ops = NULL;
  b->n_tuned = b->n_tuned_convs = 0;
  b->cut = b->feature;
  if (n_layers <= 0) return KILN_OK;
  /* The chain of ops ending at the feature tensor, walking back through
   * first activation inputs (enough for the single-entry check below,
   * which rejects anything else). */
  int32_t *chain = kiln_malloc(((size_t)m->n_ops + 1) * sizeof *chain);
  if (!chain) return kiln_fail(err, KILN_ERR_NOMEM, "fine-tune plan");
  int32_t n = 0, convs = 0, first = -1;
  for (int32_t t = b->feature, o; (o = producer(m, t, m->n_ops)) >= 0;) {
    chain[n++] = o;
    int32_t ins[16];
    if (activation_inputs(m, &m->ops[o], ins) == 0) break;
    t = ins[0];
  }
  /* chain is last op first; reverse into execution order. */
  for (int32_t i = 0; i < n / 2; i++) {
    const int32_t t = chain[i];
    chain[i] = chain[n - 1 - i];
    chain[n - 1 - i] = t;
  }
  for (int32_t i = n - 1; i >= 0; i--) {
    const int32_t code = m->ops[chain[i]].code;
    if (code == KILN_OP_CONV_2D || code == KILN_OP_DEPTHWISE_CONV_2D) convs++;
    if (convs == n_layers) {
      first = i;
      break;
    }
  }
  kiln_status s = KILN_OK;
  if (first < 0) {
    s = kiln_fail(err, KILN_ERR_INVALID_ARG, "%s: --fine-tune %d: the backbone has %d conv layers",
                  b->path, (int)n_layers, (int)convs);
    goto done;
  }
  /* Move the cut back until one tensor feeds everything after it. The
   * chain holds only ops on the first-input path, so a residual ADD's
   * other input must come from inside. */
  for (; first >= 0; first--) {
    int32_t ins[16];
    activation_inputs(m, &m->ops[chain[first]], ins);
    if (single_entry(m, chain, first, n, ins[0])) break;
  }
  if (first < 0) {
    s = kiln_fail(err, KILN_ERR_UNSUPPORTED, "%s: --fine-tune %d: no single tensor feeds the last layers",
                  b->path, (int)n_layers);
    goto done;
  }
  for (int32_t i = first; i < n; i++)
    if (!convertible(&m->ops[chain[i]])) {
      s = kiln_fail(err, KILN_ERR_UNSUPPORTED,
                    "%s: --fine-tune %d: op %d (%s) cannot be trained by kiln's engine", b->path,
                    (int)n_layers, (int)chain[i], kiln_opcode_name(m->ops[chain[i]].code));
      goto done;
    }
  int32_t ins[16];
  activation_inputs(m, &m->ops[chain[first]], ins);
  b->cut = ins[0];
  b->n_tuned = n - first;
  b->tuned_ops = kiln_malloc((size_t)b->n_tuned * sizeof *b->tuned_ops);
  if (!b->tuned_ops) {
    s = kiln_fail(err, KILN_ERR_NOMEM, "fine-tune plan");
    goto done;
  }
  for (int32_t i = 0; i < b->n_tuned; i++) {
    b->tuned_ops[i] = chain[first + i];
    const int32_t code = m->ops[b->tuned_ops[i]].code;
    b->n_tuned_convs += code == KILN_OP_CONV_2D || code == KILN_OP_DEPTHWISE_CONV_2D;
  }
  /* A trained weight must belong to its op alone. */
  for (int32_t i = 0; i < b->n_tuned && s == KILN_OK; i++) {
    const kiln_op *op = &m->ops[b->tuned_ops[i]];
    for (int32_t k = 1; k < op->n_inputs && s == KILN_OK; k++) {
      const int32_t t = op->inputs[k];
      if (t < 0 || !m->tensors[t].data) continue;
      int32_t uses = 0;
      for (int32_t o = 0; o < m->n_ops; o++)
        for (int32_t j = 0; j < m->ops[o].n_inputs; j++) uses += m->ops[o].inputs[j] == t;
      if (uses > 1)
        s = kiln_fail(err, KILN_ERR_UNSUPPORTED,
                      "%s: --fine-tune: weights '%s' are shared by %d ops", b->path,
                      m->tensors[t].name, (int)uses);
    }
  }
done:
  kiln_free(chain);
  return s;
}

static kiln_op_options op_options(uint8_t type) {
  kiln_op_options o;
  memset(&o, 0, sizeof o);
  o.type = type;
  o.new_shape_count = -1;
  return o;
}

/* Appends MEAN over height and width (keep_dims false) of tensor `in`
 * [1, h, w, c]; *out gets the [1, c] tensor "embedding". */
static kiln_status append_mean(kiln_model *m, int32_t in, int32_t *out, kiln_error *err) {
  const int32_t c = m->tensors[in].shape[3];
  const int32_t axes = kiln_model_add_tensor(m, "embedding/axes", KILN_I32, 1, (int32_t[]){2},
                                             NULL, (int32_t[]){1, 2}, err);
  const int32_t e = kiln_model_add_tensor(m, "embedding", KILN_F32, 2, (int32_t[]){1, c}, NULL,
                                          NULL, err);
  if (axes < 0 || e < 0) return err ? err->status : KILN_ERR_INTERNAL;
  kiln_op_options o = op_options(KILN_OPTS_REDUCER);
  o.keep_dims = false;
  if (kiln_model_add_op(m, KILN_OP_MEAN, NULL, (int32_t[]){in, axes}, 2, &e, 1, &o, NULL, 0, err) < 0)
    return err ? err->status : KILN_ERR_INTERNAL;
  *out = e;
  return KILN_OK;
}

kiln_status tl_feature_model(const tl_backbone *b, kiln_model **out, kiln_error *err) {
  kiln_model *m;
  kiln_status s = kiln_trainer_submodel(b->model, b->cut, &m, err);
  if (s != KILN_OK) return s;
  if (b->n_tuned == 0) {
    int32_t e;
    if ((s = append_mean(m, m->outputs[0], &e, err)) == KILN_OK)
      s = kiln_model_set_io(m, m->inputs, 1, &e, 1, err);
  }
  if (s != KILN_OK) {
    kiln_model_free(m);
    return s;
  }
  *out = m;
  return KILN_OK;
}

void tl_feature_shape(const tl_backbone *b, int32_t *h, int32_t *w, int32_t *c) {
  const kiln_tensor *t = &b->model->tensors[b->cut];
  *h = b->n_tuned ? t->shape[1] : 1;
  *w = b->n_tuned ? t->shape[2] : 1;
  *c = t->shape[3];
}

/* Adds the engine layer for one backbone op; map[] holds the layer of each
 * model tensor (-1 when none). */
static int32_t add_layer(kiln_net *net, const kiln_model *m, const kiln_op *op, const int32_t *map) {
  const kiln_op_options *o = &op->options;
  int32_t x;
  switch (op->code) {
  case KILN_OP_CONV_2D:
  case KILN_OP_DEPTHWISE_CONV_2D: {
    const kiln_tensor *w = &m->tensors[op->inputs[1]];
    kiln_conv_spec spec = {.kernel_h = w->shape[1], .kernel_w = w->shape[2],
                           .stride_h = o->stride_h, .stride_w = o->stride_w,
                           .dilation_h = o->dilation_h, .dilation_w = o->dilation_w,
                           .padding = o->padding,
                           .bias = op->n_inputs > 2 && op->inputs[2] >= 0};
    if (op->code == KILN_OP_CONV_2D) {
      spec.filters = w->shape[0];
      x = kiln_net_conv(net, map[op->inputs[0]], &spec);
    } else {
      spec.filters = o->depth_multiplier > 0 ? o->depth_multiplier : 1;
      x = kiln_net_dwconv(net, map[op->inputs[0]], &spec);
    }
    break;
  }
  case KILN_OP_ADD:
    x = kiln_net_add(net, map[op->inputs[0]], map[op->inputs[1]]);
    break;
  case KILN_OP_RELU:
    return kiln_net_activation(net, map[op->inputs[0]], KILN_LAYER_RELU);
  case KILN_OP_RELU6:
    return kiln_net_activation(net, map[op->inputs[0]], KILN_LAYER_RELU6);
  default:
    return kiln_net_activation(net, map[op->inputs[0]], KILN_LAYER_HSWISH);
  }
  if (o->activation == KILN_ACT_RELU) x = kiln_net_activation(net, x, KILN_LAYER_RELU);
  if (o->activation == KILN_ACT_RELU6) x = kiln_net_activation(net, x, KILN_LAYER_RELU6);
  return x;
}

kiln_status tl_build_net(const tl_backbone *b, int32_t classes, float dropout, int32_t batch,
                         int32_t threads, uint64_t seed, tl_net *out, kiln_error *err) {
  memset(out, 0, sizeof *out);
  const kiln_model *m = b->model;
  int32_t h, w, c;
  tl_feature_shape(b, &h, &w, &c);
  kiln_status s = kiln_net_create(h, w, c, &out->net, err);
  if (s != KILN_OK) return s;
  int32_t *map = kiln_malloc((size_t)m->n_tensors * sizeof *map);
  out->op_layer = kiln_calloc((size_t)b->n_tuned + 1, sizeof *out->op_layer);
  if (!map || !out->op_layer) {
    kiln_free(map);
    tl_net_free(out);
    return kiln_fail(err, KILN_ERR_NOMEM, "head net");
  }
  for (int32_t t = 0; t < m->n_tensors; t++) map[t] = -1;
  map[b->cut] = 0;
  int32_t x = 0;
  for (int32_t i = 0; i < b->n_tuned; i++) {
    const kiln_op *op = &m->ops[b->tuned_ops[i]];
    /* the op's own layer (before a fused activation's) holds its weights */
    const int32_t before = kiln_net_layer_count(out->net);
    x = add_layer(out->net, m, op, map);
    out->op_layer[i] = before;
    map[op->outputs[0]] = x;
  }
  if (b->n_tuned) x = kiln_net_global_avgpool(out->net, x);
  if (dropout > 0.0f) x = kiln_net_dropout(out->net, x, dropout);
  out->logits = kiln_net_dense(out->net, x, classes, true);
  kiln_free(map);
  if ((s = kiln_net_finalize(out->net, batch, threads, seed, err)) != KILN_OK) {
    tl_net_free(out);
    return s;
  }
  /* Pretrained weights into the converted layers. */
  for (int32_t i = 0; i < b->n_tuned; i++) {
    const kiln_op *op = &m->ops[b->tuned_ops[i]];
    if (op->code != KILN_OP_CONV_2D && op->code != KILN_OP_DEPTHWISE_CONV_2D) continue;
    const int32_t l = out->op_layer[i];
    int64_t nw = 0, nb = 0;
    float *wt = kiln_net_param(out->net, l, KILN_PARAM_WEIGHT, &nw);
    float *bs = kiln_net_param(out->net, l, KILN_PARAM_BIAS, &nb);
    const kiln_tensor *tw = &m->tensors[op->inputs[1]];
    if (!wt || kiln_tensor_elements(tw) != nw || tw->dtype != KILN_F32 || !tw->data) {
      tl_net_free(out);
      return kiln_fail(err, KILN_ERR_INTERNAL, "fine-tune: weights of op %d do not fit layer %d",
                       (int)b->tuned_ops[i], (int)l);
    }
    memcpy(wt, tw->data, (size_t)nw * sizeof(float));
    if (bs) {
      const kiln_tensor *tb = &m->tensors[op->inputs[2]];
      if (kiln_tensor_elements(tb) != nb || tb->dtype != KILN_F32 || !tb->data) {
        tl_net_free(out);
        return kiln_fail(err, KILN_ERR_INTERNAL, "fine-tune: bias of op %d", (int)b->tuned_ops[i]);
      }
      memcpy(bs, tb->data, (size_t)nb * sizeof(float));
    }
  }
  return KILN_OK;
}

void tl_net_free(tl_net *n) {
  kiln_net_free(n->net);
  kiln_free(n->op_layer);
  memset(n, 0, sizeof *n);
}

/* Points the backbone's tuned weights at the net's trained values (copies
 * in the model's pool). */
static kiln_status store_tuned(tl_backbone *b, const tl_net *n, kiln_error *err) {
  kiln_model *m = b->model;
  for (int32_t i = 0; i < b->n_tuned; i++) {
    const kiln_op *op = &m->ops[b->tuned_ops[i]];
    if (op->code != KILN_OP_CONV_2D && op->code != KILN_OP_DEPTHWISE_CONV_2D) continue;
    const kiln_param_kind kinds[2] = {KILN_PARAM_WEIGHT, KILN_PARAM_BIAS};
    for (int k = 0; k < 2; k++) {
      int64_t count = 0;
      float *v = kiln_net_param(n->net, n->op_layer[i], kinds[k], &count);
      if (!v) continue;
      kiln_tensor *t = &m->tensors[op->inputs[1 + k]];
      void *copy = kiln_model_alloc(m, (size_t)count * sizeof(float));
      if (!copy) return kiln_fail(err, KILN_ERR_NOMEM, "export: tensor '%s'", t->name);
      memcpy(copy, v, (size_t)count * sizeof(float));
      t->data = copy;
      t->data_bytes = (size_t)count * sizeof(float);
    }
  }
  return KILN_OK;
}

kiln_status tl_export(tl_backbone *b, const tl_net *n, int32_t classes, kiln_model **out,
                      kiln_error *err) {
  *out = NULL;
  kiln_status s = store_tuned(b, n, err);
  if (s != KILN_OK) return s;
  kiln_model *m;
  if ((s = kiln_trainer_submodel(b->model, b->feature, &m, err)) != KILN_OK) return s;
  int32_t e = -1;
  if ((s = append_mean(m, m->outputs[0], &e, err)) != KILN_OK) goto fail;
  const int32_t c = m->tensors[e].shape[1];
  int64_t nw = 0, nb = 0;
  const float *w = kiln_net_param(n->net, n->logits, KILN_PARAM_WEIGHT, &nw);
  const float *bias = kiln_net_param(n->net, n->logits, KILN_PARAM_BIAS, &nb);
  if (!w || !bias || nw != (int64_t)classes * c || nb != classes) {
    s = kiln_fail(err, KILN_ERR_INTERNAL, "export: head [%lld] for %d classes x %d features",
                  (long long)nw, (int)classes, (int)c);
    goto fail;
  }
  const int32_t wt = kiln_model_add_tensor(m, "classifier/weights", KILN_F32, 2,
                                           (int32_t[]){classes, c}, NULL, w, err);
  const int32_t bt = kiln_model_add_tensor(m, "classifier/bias", KILN_F32, 1,
                                           (int32_t[]){classes}, NULL, bias, err);
  const int32_t lt = kiln_model_add_tensor(m, "logits", KILN_F32, 2, (int32_t[]){1, classes},
                                           NULL, NULL, err);
  const int32_t st = kiln_model_add_tensor(m, "scores", KILN_F32, 2, (int32_t[]){1, classes},
                                           NULL, NULL, err);
  if (wt < 0 || bt < 0 || lt < 0 || st < 0) goto built;
  kiln_op_options fc = op_options(KILN_OPTS_FULLY_CONNECTED), sm = op_options(KILN_OPTS_SOFTMAX);
  sm.beta = 1.0f;
  if (kiln_model_add_op(m, KILN_OP_FULLY_CONNECTED, NULL, (int32_t[]){e, wt, bt}, 3, &lt, 1, &fc,
                        NULL, 0, err) < 0 ||
      kiln_model_add_op(m, KILN_OP_SOFTMAX, NULL, &lt, 1, &st, 1, &sm, NULL, 0, err) < 0)
    goto built;
  if ((s = kiln_model_set_io(m, m->inputs, 1, &st, 1, err)) != KILN_OK) goto fail;
  m->description = "kiln: transfer-learned classifier";
  *out = m;
  return KILN_OK;
built:
  s = err && err->status != KILN_OK ? err->status : KILN_ERR_INTERNAL;
fail:
  kiln_model_free(m);
  return s;
}

json_t *tl_backbone_json(const tl_backbone *b) {
  const kiln_model *m = b->model;
  json_t *j = json_object();
  json_object_set_new(j, "path", json_string(b->path));
  json_object_set_new(j, "dequantized", json_boolean(b->dequantized));
  json_object_set_new(j, "feature_tensor", json_string(m->tensors[b->feature].name));
  const kiln_tensor *f = &m->tensors[b->feature], *c = &m->tensors[b->cut];
  json_object_set_new(j, "feature_shape",
                      json_pack("[i, i, i]", (int)f->shape[1], (int)f->shape[2], (int)f->shape[3]));
  json_object_set_new(j, "fine_tuned_layers", json_integer(b->n_tuned_convs));
  json_object_set_new(j, "fine_tuned_ops", json_integer(b->n_tuned));
  json_object_set_new(j, "cached_tensor", json_string(c->name));
  json_object_set_new(j, "cached_shape",
                      b->n_tuned ? json_pack("[i, i, i]", (int)c->shape[1], (int)c->shape[2],
                                             (int)c->shape[3])
                                 : json_pack("[i]", (int)c->shape[3]));
  return j;
}
