/*
 * Export of a trained kiln_net as a float32 kiln_model (kiln_net_export,
 * kiln/train.h) in inference mode, batch 1, with batch norms folded.
 *
 * Walks the layers in order, keeping for each the model tensor that holds
 * its output. A conv or dwconv absorbs a batch norm that is its only
 * consumer (kiln_net_fold_batchnorm), and a conv, dwconv, dense, add or
 * standalone batch norm absorbs a ReLU / ReLU6 that is the only consumer of
 * what it produced (a fused activation); absorbed layers map to the fusing
 * op's output. A layer that is an export output is never absorbed into an
 * earlier op, so its tensor keeps its own value. Dense outputs and flattened
 * tensors are rank 2 ([1, n], as TFLite's FULLY_CONNECTED gives); others
 * are [1, h, w, c].
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "kiln/model.h"
#include "train/net_int.h"

typedef struct exporter {
  const kiln_net *net;
  kiln_model *m;
  kiln_error *err;
  int32_t *tensor;    /* [n_layers]: model tensor of each layer's output */
  int32_t *consumers; /* [n_layers]: layers reading it, +1 for an export output */
  bool *is_output;    /* [n_layers] */
  bool failed;
} exporter;

kiln_status kiln_net_fold_batchnorm(const kiln_net *net, int32_t conv_layer, int32_t bn_layer,
                                    float *weights, float *bias, kiln_error *err) {
  if (!net->finalized || conv_layer < 1 || conv_layer >= net->n_layers || bn_layer < 1 ||
      bn_layer >= net->n_layers)
    return kiln_fail(err, KILN_ERR_INVALID_ARG, "fold: layers %d and %d of %d (finalized: %d)",
                     (int)conv_layer, (int)bn_layer, (int)net->n_layers, (int)net->finalized);
  const train_layer *c = &net->layers[conv_layer], *bn = &net->layers[bn_layer];
  if ((c->kind != KILN_LAYER_CONV && c->kind != KILN_LAYER_DWCONV) ||
      bn->kind != KILN_LAYER_BATCHNORM || bn->in[0] != conv_layer)
    return kiln_fail(err, KILN_ERR_INVALID_ARG,
                     "fold: layer %d is not a batch norm reading conv or dwconv layer %d",
                     (int)bn_layer, (int)conv_layer);
  const float *gamma = net->params + bn->w_off, *beta = net->params + bn->b_off;
  const float *mean = net->state + bn->mean_off, *var = net->state + bn->var_off;
  const float *w = net->params + c->w_off;
  const float *b = c->has_bias ? net->params + c->b_off : NULL;
  const int32_t co = c->c;
  /* conv: [co][k] rows; dwconv: [taps][co] columns. */
  const int64_t per = c->w_count / co;
  for (int32_t o = 0; o < co; o++) {
    const double scale = (double)gamma[o] / sqrt((double)var[o] + bn->eps);
    bias[o] = (float)(((b ? b[o] : 0.0) - mean[o]) * scale + beta[o]);
    for (int64_t k = 0; k < per; k++) {
      const size_t at = c->kind == KILN_LAYER_CONV ? (size_t)o * per + k : (size_t)k * co + o;
      weights[at] = (float)(w[at] * scale);
    }
  }
  return KILN_OK;
}

/* Records a failure from the model builder (err already set). */
static int32_t check(exporter *x, int32_t index) {
  if (index < 0) x->failed = true;
  return index;
}

static int32_t add_tensor(exporter *x, const char *name, kiln_dtype dt, int32_t rank,
                          const int32_t *shape, const void *data) {
  if (x->failed) return -1;
  return check(x, kiln_model_add_tensor(x->m, name, dt, rank, shape, NULL, data, x->err));
}

/* The activation tensor of layer l's output: [1, h, w, c] or [1, c] when
 * rank2. */
static int32_t act_tensor(exporter *x, const train_layer *l, int32_t index, bool rank2) {
  static const char *const tags[] = {"input",   "conv",    "dwconv",  "batchnorm", "relu",
                                     "relu6",   "hswish",  "maxpool", "avgpool",   "gap",
                                     "dense",   "dropout", "add",     "reshape"};
  char name[48];
  snprintf(name, sizeof name, "%s_%d", tags[l->kind], (int)index);
  if (rank2) return add_tensor(x, name, KILN_F32, 2, (int32_t[]){1, l->c * l->h * l->w}, NULL);
  return add_tensor(x, name, KILN_F32, 4, (int32_t[]){1, l->h, l->w, l->c}, NULL);
}

static int32_t add_op(exporter *x, int32_t code, const int32_t *in, int32_t n_in, int32_t out,
                      const kiln_op_options *o) {
  if (x->failed) return -1;
  return check(x, kiln_model_add_op(x->m, code, NULL, in, n_in, &out, 1, o, NULL, 0, x->err));
}

static kiln_op_options options(uint8_t type) {
  kiln_op_options o;
  memset(&o, 0, sizeof o);
  o.type = type;
  o.new_shape_count = -1;
  return o;
}

/* The single consumer of layer i when there is exactly one and i is not an
 * export output; -1 otherwise. */
static int32_t sole_consumer(const exporter *x, int32_t i) {
  if (x->consumers[i] != 1 || x->is_output[i]) return -1;
  for (int32_t j = i + 1; j < x->net->n_layers; j++) {
    const train_layer *l = &x->net->layers[j];
    if (l->in[0] == i || l->in[1] == i) return j;
  }
  return -1;
}

/* A ReLU / ReLU6 that can be fused after layer i: sets *act and returns its
 * index, else returns i. */
static int32_t fuse_activation(const exporter *x, int32_t i, kiln_activation *act) {
  *act = KILN_ACT_NONE;
  const int32_t j = sole_consumer(x, i);
  if (j < 0) return i;
  const kiln_layer_kind k = x->net->layers[j].kind;
  if (k == KILN_LAYER_RELU) *act = KILN_ACT_RELU;
  else if (k == KILN_LAYER_RELU6) *act = KILN_ACT_RELU6;
  else return i;
  return j;
}

static bool is_rank2(const exporter *x, int32_t tensor) {
  return x->m->tensors[tensor].rank == 2;
}

/* conv / dwconv (with an absorbed batch norm) or a standalone batch norm as
 * a 1x1 depthwise conv. Returns the last layer absorbed. */
static int32_t export_conv(exporter *x, int32_t i) {
  const kiln_net *net = x->net;
  const train_layer *l = &net->layers[i];
  const train_layer *src = &net->layers[l->in[0]];
  const bool bn_alone = l->kind == KILN_LAYER_BATCHNORM;
  int32_t last = i;
  const int32_t next = bn_alone ? -1 : sole_consumer(x, i);
  const bool fold = next >= 0 && net->layers[next].kind == KILN_LAYER_BATCHNORM;
  if (fold) last = next;
  kiln_activation act;
  last = fuse_activation(x, last, &act);
  const int32_t co = l->c;
  const int64_t w_count = bn_alone ? co : l->w_count;
  float *w = kiln_model_alloc(x->m, (size_t)w_count * sizeof(float));
  float *b = kiln_model_alloc(x->m, (size_t)co * sizeof(float));
  if (!w || !b) {
    kiln_fail(x->err, KILN_ERR_NOMEM, "export: layer %d: weights", (int)i);
    x->failed = true;
    return last;
  }
  if (bn_alone) {
    for (int32_t o = 0; o < co; o++) {
      const double scale =
          net->params[l->w_off + o] / sqrt((double)net->state[l->var_off + o] + l->eps);
      w[o] = (float)scale;
      b[o] = (float)(net->params[l->b_off + o] - net->state[l->mean_off + o] * scale);
    }
  } else if (fold) {
    if (kiln_net_fold_batchnorm(net, i, next, w, b, x->err) != KILN_OK) x->failed = true;
  } else {
    memcpy(w, net->params + l->w_off, (size_t)w_count * sizeof(float));
    if (l->has_bias) memcpy(b, net->params + l->b_off, (size_t)co * sizeof(float));
  }
  const bool dw = l->kind != KILN_LAYER_CONV;
  char name[48];
  snprintf(name, sizeof name, "weights_%d", (int)i);
  const int32_t kh = bn_alone ? 1 : l->kh, kw = bn_alone ? 1 : l->kw;
  int32_t wshape[4] = {dw ? 1 : co, kh, kw, dw ? co : src->c};
  const int32_t wt = add_tensor(x, name, KILN_F32, 4, wshape, w);
  snprintf(name, sizeof name, "bias_%d", (int)i);
  const int32_t bt = add_tensor(x, name, KILN_F32, 1, (int32_t[]){co}, b);
  const int32_t out = act_tensor(x, &net->layers[last], last, false);
  kiln_op_options o = options(dw ? KILN_OPTS_DEPTHWISE_CONV2D : KILN_OPTS_CONV2D);
  o.padding = bn_alone ? KILN_PAD_VALID : l->padding;
  o.stride_h = l->sh;
  o.stride_w = l->sw;
  o.dilation_h = l->dh;
  o.dilation_w = l->dw;
  o.depth_multiplier = bn_alone ? 1 : l->mult;
  o.activation = act;
  add_op(x, dw ? KILN_OP_DEPTHWISE_CONV_2D : KILN_OP_CONV_2D,
         (int32_t[]){x->tensor[l->in[0]], wt, bt}, 3, out, &o);
  x->tensor[last] = out;
  if (fold) x->tensor[next] = out;
  x->tensor[i] = out;
  return last;
}

static int32_t export_dense(exporter *x, int32_t i) {
  const kiln_net *net = x->net;
  const train_layer *l = &net->layers[i];
  const int32_t in_f = (int32_t)(l->w_count / l->c);
  kiln_activation act;
  const int32_t last = fuse_activation(x, i, &act);
  char name[48];
  snprintf(name, sizeof name, "weights_%d", (int)i);
  const int32_t wt = add_tensor(x, name, KILN_F32, 2, (int32_t[]){l->c, in_f},
                                net->params + l->w_off);
  float *b = kiln_model_alloc(x->m, (size_t)l->c * sizeof(float));
  if (!b) {
    kiln_fail(x->err, KILN_ERR_NOMEM, "export: layer %d: bias", (int)i);
    x->failed = true;
    return last;
  }
  if (l->has_bias) memcpy(b, net->params + l->b_off, (size_t)l->c * sizeof(float));
  snprintf(name, sizeof name, "bias_%d", (int)i);
  const int32_t bt = add_tensor(x, name, KILN_F32, 1, (int32_t[]){l->c}, b);
  const int32_t out = act_tensor(x, &net->layers[last], last, true);
  kiln_op_options o = options(KILN_OPTS_FULLY_CONNECTED);
  o.activation = act;
  add_op(x, KILN_OP_FULLY_CONNECTED, (int32_t[]){x->tensor[l->in[0]], wt, bt}, 3, out, &o);
  x->tensor[i] = x->tensor[last] = out;
  return last;
}

/* Every other layer; returns the last layer absorbed. */
static int32_t export_other(exporter *x, int32_t i) {
  const kiln_net *net = x->net;
  const train_layer *l = &net->layers[i];
  const int32_t in = x->tensor[l->in[0]];
  const bool rank2 = !x->failed && is_rank2(x, in);
  kiln_op_options o = options(KILN_OPTS_NONE);
  switch (l->kind) {
  case KILN_LAYER_DROPOUT:
    x->tensor[i] = in;
    return i;
  case KILN_LAYER_RELU:
  case KILN_LAYER_RELU6:
  case KILN_LAYER_HSWISH: {
    const int32_t code = l->kind == KILN_LAYER_RELU    ? KILN_OP_RELU
                         : l->kind == KILN_LAYER_RELU6 ? KILN_OP_RELU6
                                                       : KILN_OP_HARD_SWISH;
    const int32_t out = act_tensor(x, l, i, rank2);
    add_op(x, code, &in, 1, out, &o);
    x->tensor[i] = out;
    return i;
  }
  case KILN_LAYER_MAXPOOL:
  case KILN_LAYER_AVGPOOL: {
    o = options(KILN_OPTS_POOL2D);
    o.padding = l->padding;
    o.stride_h = l->sh;
    o.stride_w = l->sw;
    o.filter_h = l->kh;
    o.filter_w = l->kw;
    const int32_t out = act_tensor(x, l, i, false);
    add_op(x, l->kind == KILN_LAYER_MAXPOOL ? KILN_OP_MAX_POOL_2D : KILN_OP_AVERAGE_POOL_2D, &in,
           1, out, &o);
    x->tensor[i] = out;
    return i;
  }
  case KILN_LAYER_GLOBAL_AVGPOOL: {
    char name[48];
    snprintf(name, sizeof name, "axes_%d", (int)i);
    const int32_t axes = add_tensor(x, name, KILN_I32, 1, (int32_t[]){2}, (int32_t[]){1, 2});
    o = options(KILN_OPTS_REDUCER);
    o.keep_dims = true;
    const int32_t out = act_tensor(x, l, i, false);
    add_op(x, KILN_OP_MEAN, (int32_t[]){in, axes}, 2, out, &o);
    x->tensor[i] = out;
    return i;
  }
  case KILN_LAYER_ADD: {
    kiln_activation act;
    const int32_t last = fuse_activation(x, i, &act);
    o = options(KILN_OPTS_ADD);
    o.activation = act;
    const int32_t out = act_tensor(x, &net->layers[last], last, rank2);
    add_op(x, KILN_OP_ADD, (int32_t[]){in, x->tensor[l->in[1]]}, 2, out, &o);
    x->tensor[i] = x->tensor[last] = out;
    return last;
  }
  default: { /* reshape */
    char name[48];
    snprintf(name, sizeof name, "shape_%d", (int)i);
    o = options(KILN_OPTS_RESHAPE);
    int32_t shape[4] = {1, l->h, l->w, l->c};
    if (l->flat) {
      shape[1] = l->h * l->w * l->c;
      o.new_shape_count = 2;
    } else {
      o.new_shape_count = 4;
    }
    memcpy(o.new_shape, shape, sizeof shape);
    const int32_t st =
        add_tensor(x, name, KILN_I32, 1, (int32_t[]){o.new_shape_count}, shape);
    const int32_t out = act_tensor(x, l, i, l->flat);
    add_op(x, KILN_OP_RESHAPE, (int32_t[]){in, st}, 2, out, &o);
    x->tensor[i] = out;
    return i;
  }
  }
}

kiln_status kiln_net_export(const kiln_net *net, const kiln_export_options *opts,
                            kiln_model **out, kiln_error *err) {
  *out = NULL;
  if (!net->finalized) return kiln_fail(err, KILN_ERR_INVALID_ARG, "export: net not finalized");
  kiln_export_options def = {0};
  if (!opts) opts = &def;
  int32_t outputs[8];
  int32_t n_out = opts->n_outputs;
  if (n_out <= 0) {
    n_out = 1;
    outputs[0] = net->n_layers - 1;
  } else {
    if (n_out > 8) return kiln_fail(err, KILN_ERR_INVALID_ARG, "export: %d outputs (most 8)", (int)n_out);
    for (int32_t k = 0; k < n_out; k++) {
      outputs[k] = opts->outputs[k];
      if (outputs[k] < 1 || outputs[k] >= net->n_layers)
        return kiln_fail(err, KILN_ERR_INVALID_ARG, "export: output layer %d out of range",
                         (int)outputs[k]);
    }
  }
  exporter x = {net, NULL, err, NULL, NULL, NULL, false};
  kiln_status s = kiln_model_new(&x.m, err);
  if (s != KILN_OK) return s;
  x.tensor = kiln_calloc((size_t)net->n_layers, sizeof *x.tensor);
  x.consumers = kiln_calloc((size_t)net->n_layers, sizeof *x.consumers);
  x.is_output = kiln_calloc((size_t)net->n_layers, sizeof *x.is_output);
  if (!x.tensor || !x.consumers || !x.is_output) {
    s = kiln_fail(err, KILN_ERR_NOMEM, "export: %d layers", (int)net->n_layers);
    goto done;
  }
  for (int32_t i = 1; i < net->n_layers; i++)
    for (int k = 0; k < 2; k++)
      if (net->layers[i].in[k] >= 0) x.consumers[net->layers[i].in[k]]++;
  for (int32_t k = 0; k < n_out; k++) {
    x.is_output[outputs[k]] = true;
    x.consumers[outputs[k]]++;
  }
  const train_layer *in = &net->layers[0];
  x.tensor[0] = add_tensor(&x, "input", KILN_F32, 4, (int32_t[]){1, in->h, in->w, in->c}, NULL);
  int32_t last_layer = 0;
  for (int32_t i = 1; i < net->n_layers && !x.failed; i++) {
    if (i <= last_layer) continue; /* absorbed */
    const kiln_layer_kind k = net->layers[i].kind;
    if (k == KILN_LAYER_CONV || k == KILN_LAYER_DWCONV || k == KILN_LAYER_BATCHNORM)
      last_layer = export_conv(&x, i);
    else if (k == KILN_LAYER_DENSE)
      last_layer = export_dense(&x, i);
    else
      last_layer = export_other(&x, i);
  }
  int32_t io_out[8];
  for (int32_t k = 0; k < n_out && !x.failed; k++) {
    io_out[k] = x.tensor[outputs[k]];
    if (opts->softmax) {
      char name[48];
      snprintf(name, sizeof name, "softmax_%d", (int)outputs[k]);
      const kiln_tensor *t = &x.m->tensors[io_out[k]];
      const int32_t sm = add_tensor(&x, name, KILN_F32, t->rank, t->shape, NULL);
      kiln_op_options o = options(KILN_OPTS_SOFTMAX);
      o.beta = 1.0f;
      add_op(&x, KILN_OP_SOFTMAX, &io_out[k], 1, sm, &o);
      io_out[k] = sm;
    }
  }
  if (x.failed) {
    s = err ? err->status : KILN_ERR_INTERNAL;
    if (s == KILN_OK) s = KILN_ERR_INTERNAL;
    goto done;
  }
  s = kiln_model_set_io(x.m, &x.tensor[0], 1, io_out, n_out, err);
done:
  kiln_free(x.tensor);
  kiln_free(x.consumers);
  kiln_free(x.is_output);
  if (s != KILN_OK) {
    kiln_model_free(x.m);
    return s;
  }
  *out = x.m;
  return KILN_OK;
}
