/*
 * Building a kiln_net (kiln/train.h): layer records with their shapes,
 * then finalize: the size table, the one allocation, the thread pool and the
 * initial parameters. Layout of the block in train/net_int.h.
 */
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu.h"
#include "train/net_int.h"

/* OpenBLAS's thread control (declared by its cblas.h, not by netlib's). */
void openblas_set_num_threads(int num_threads);

#define ALIGN_FLOATS 16 /* 64 bytes */

static size_t align_floats(size_t n) { return (n + ALIGN_FLOATS - 1) / ALIGN_FLOATS * ALIGN_FLOATS; }

kiln_status kiln_net_create(int32_t h, int32_t w, int32_t c, kiln_net **out, kiln_error *err) {
  *out = NULL;
  if (h < 1 || w < 1 || c < 1)
    return kiln_fail(err, KILN_ERR_INVALID_ARG, "net input: shape [%d, %d, %d] has a size below 1",
                     (int)h, (int)w, (int)c);
  if ((int64_t)h * w * c > INT32_MAX)
    return kiln_fail(err, KILN_ERR_LIMIT, "net input: [%d, %d, %d] is over 2^31 values", (int)h,
                     (int)w, (int)c);
  kiln_net *net = kiln_calloc(1, sizeof *net);
  if (!net) return kiln_fail(err, KILN_ERR_NOMEM, "net: out of memory");
  net->cap_layers = 16;
  net->layers = kiln_calloc((size_t)net->cap_layers, sizeof *net->layers);
  if (!net->layers) {
    kiln_free(net);
    return kiln_fail(err, KILN_ERR_NOMEM, "net: out of memory");
  }
  train_layer *in = &net->layers[0];
  in->kind = KILN_LAYER_INPUT;
  in->in[0] = in->in[1] = -1;
  in->h = h;
  in->w = w;
  in->c = c;
  in->trainable = false; /* true: backward computes the input's gradient */
  net->n_layers = 1;
  *out = net;
  return KILN_OK;
}

void kiln_net_free(kiln_net *net) {
  if (!net) return;
  kiln_threadpool_free(net->pool);
  kiln_free(net->block);
  kiln_free(net->layers);
  kiln_free(net);
}

static const char *kind_name(kiln_layer_kind kind) {
  static const char *const names[] = {"input",   "conv",    "dwconv",         "batchnorm",
                                      "relu",    "relu6",   "hswish",         "maxpool",
                                      "avgpool", "global_avgpool", "dense",   "dropout",
                                      "add",     "reshape"};
  return (unsigned)kind < sizeof names / sizeof names[0] ? names[kind] : "layer";
}

/* Keeps the first build error and returns -1. */
__attribute__((format(printf, 3, 4))) static int32_t build_fail(kiln_net *net, kiln_status status,
                                                                const char *fmt, ...) {
  if (net->build_err.status == KILN_OK) {
    va_list ap;
    va_start(ap, fmt);
    net->build_err.status = status;
    vsnprintf(net->build_err.msg, sizeof net->build_err.msg, fmt, ap);
    va_end(ap);
  }
  return -1;
}

/* A new layer of `kind` reading `input`, shaped like it; NULL on error
 * (kept in the net). */
static train_layer *new_layer(kiln_net *net, kiln_layer_kind kind, int32_t input) {
  if (!net) return NULL;
  if (net->build_err.status != KILN_OK) return NULL;
  int32_t index = net->n_layers;
  if (net->finalized) {
    build_fail(net, KILN_ERR_INVALID_ARG, "net: layer %d (%s): the net is already finalized",
               (int)index, kind_name(kind));
    return NULL;
  }
  if (input < 0 || input >= index) {
    build_fail(net, KILN_ERR_INVALID_ARG, "net: layer %d (%s): input %d is not an earlier layer",
               (int)index, kind_name(kind), (int)input);
    return NULL;
  }
  if (net->n_layers == net->cap_layers) {
    train_layer *grown =
        kiln_realloc(net->layers, (size_t)net->cap_layers * 2 * sizeof *net->layers);
    if (!grown) {
      build_fail(net, KILN_ERR_NOMEM, "net: layer %d: out of memory", (int)index);
      return NULL;
    }
    net->layers = grown;
    net->cap_layers *= 2;
  }
  train_layer *l = &net->layers[net->n_layers++];
  const train_layer *src = &net->layers[input];
  memset(l, 0, sizeof *l);
  l->kind = kind;
  l->in[0] = input;
  l->in[1] = -1;
  l->h = src->h;
  l->w = src->w;
  l->c = src->c;
  l->flat = src->flat;
  l->trainable = true;
  l->kh = l->kw = l->sh = l->sw = l->dh = l->dw = 1;
  return l;
}

/* Drops the last layer again after a shape error. */
static int32_t drop_last(kiln_net *net) {
  net->n_layers--;
  return -1;
}

void train_conv_geometry(int32_t in, int32_t kernel, int32_t stride, int32_t dilation,
                         kiln_padding padding, int32_t *out, int32_t *pad_before) {
  const int32_t span = (kernel - 1) * dilation + 1;
  if (padding == KILN_PAD_SAME) {
    *out = (in + stride - 1) / stride;
    int32_t total = (*out - 1) * stride + span - in;
    *pad_before = total > 0 ? total / 2 : 0;
  } else {
    *out = in >= span ? (in - span) / stride + 1 : 0;
    *pad_before = 0;
  }
}

/* Fills the spatial fields of l from its input and the geometry; -1 when
 * the output would be empty. */
static int32_t spatial(kiln_net *net, train_layer *l, int32_t kh, int32_t kw, int32_t sh,
                       int32_t sw, int32_t dh, int32_t dw, kiln_padding padding) {
  const int32_t index = (int32_t)(l - net->layers);
  const train_layer *src = &net->layers[l->in[0]];
  if (kh < 1 || kw < 1 || sh < 1 || sw < 1 || dh < 1 || dw < 1 ||
      (padding != KILN_PAD_SAME && padding != KILN_PAD_VALID)) {
    build_fail(net, KILN_ERR_INVALID_ARG,
               "net: layer %d (%s): kernel %dx%d, stride %dx%d, dilation %dx%d, padding %d: "
               "sizes must be >= 1 and padding SAME or VALID",
               (int)index, kind_name(l->kind), (int)kh, (int)kw, (int)sh, (int)sw, (int)dh,
               (int)dw, (int)padding);
    return drop_last(net);
  }
  l->kh = kh;
  l->kw = kw;
  l->sh = sh;
  l->sw = sw;
  l->dh = dh;
  l->dw = dw;
  l->padding = padding;
  train_conv_geometry(src->h, kh, sh, dh, padding, &l->h, &l->pad_t);
  train_conv_geometry(src->w, kw, sw, dw, padding, &l->w, &l->pad_l);
  if (l->h < 1 || l->w < 1) {
    build_fail(net, KILN_ERR_INVALID_ARG,
               "net: layer %d (%s): a %dx%d kernel (dilation %dx%d) does not fit the %dx%d input "
               "with VALID padding",
               (int)index, kind_name(l->kind), (int)kh, (int)kw, (int)dh, (int)dw, (int)src->h,
               (int)src->w);
    return drop_last(net);
  }
  l->flat = false;
  return index;
}

static int32_t or1(int32_t v) { return v == 0 ? 1 : v; }

int32_t kiln_net_conv(kiln_net *net, int32_t input, const kiln_conv_spec *spec) {
  train_layer *l = new_layer(net, KILN_LAYER_CONV, input);
  if (!l) return -1;
  const int32_t index = (int32_t)(l - net->layers);
  if (spec->filters < 1) {
    build_fail(net, KILN_ERR_INVALID_ARG, "net: layer %d (conv): %d filters", (int)index,
               (int)spec->filters);
    return drop_last(net);
  }
  const int32_t in_c = l->c;
  if (spatial(net, l, spec->kernel_h, spec->kernel_w, or1(spec->stride_h), or1(spec->stride_w),
              or1(spec->dilation_h), or1(spec->dilation_w), spec->padding) < 0)
    return -1;
  l->c = spec->filters;
  l->has_bias = spec->bias;
  l->w_count = (int64_t)spec->filters * l->kh * l->kw * in_c;
  l->b_count = spec->bias ? spec->filters : 0;
  return index;
}

int32_t kiln_net_dwconv(kiln_net *net, int32_t input, const kiln_conv_spec *spec) {
  train_layer *l = new_layer(net, KILN_LAYER_DWCONV, input);
  if (!l) return -1;
  const int32_t index = (int32_t)(l - net->layers);
  const int32_t mult = or1(spec->filters);
  if (mult < 1) {
    build_fail(net, KILN_ERR_INVALID_ARG, "net: layer %d (dwconv): depth multiplier %d",
               (int)index, (int)mult);
    return drop_last(net);
  }
  if (spatial(net, l, spec->kernel_h, spec->kernel_w, or1(spec->stride_h), or1(spec->stride_w),
              or1(spec->dilation_h), or1(spec->dilation_w), spec->padding) < 0)
    return -1;
  l->mult = mult;
  l->c *= mult;
  l->has_bias = spec->bias;
  l->w_count = (int64_t)l->kh * l->kw * l->c;
  l->b_count = spec->bias ? l->c : 0;
  return index;
}

int32_t kiln_net_batchnorm(kiln_net *net, int32_t input, float momentum, float eps) {
  train_layer *l = new_layer(net, KILN_LAYER_BATCHNORM, input);
  if (!l) return -1;
  const int32_t index = (int32_t)(l - net->layers);
  if (!(momentum >= 0.0f && momentum <= 1.0f) || !(eps > 0.0f)) {
    build_fail(net, KILN_ERR_INVALID_ARG,
               "net: layer %d (batchnorm): momentum %g must be in [0, 1] and eps %g above 0",
               (int)index, (double)momentum, (double)eps);
    return drop_last(net);
  }
  l->momentum = momentum;
  l->eps = eps;
  l->w_count = l->b_count = l->c; /* gamma, beta */
  l->has_bias = true;
  return index;
}

int32_t kiln_net_activation(kiln_net *net, int32_t input, kiln_layer_kind kind) {
  train_layer *l = new_layer(net, kind, input);
  if (!l) return -1;
  if (kind != KILN_LAYER_RELU && kind != KILN_LAYER_RELU6 && kind != KILN_LAYER_HSWISH) {
    build_fail(net, KILN_ERR_INVALID_ARG, "net: layer %d: kind %d is not an activation",
               (int)(l - net->layers), (int)kind);
    return drop_last(net);
  }
  return (int32_t)(l - net->layers);
}

int32_t kiln_net_pool(kiln_net *net, int32_t input, kiln_layer_kind kind, int32_t kernel_h,
                      int32_t kernel_w, int32_t stride_h, int32_t stride_w, kiln_padding padding) {
  train_layer *l = new_layer(net, kind, input);
  if (!l) return -1;
  if (kind != KILN_LAYER_MAXPOOL && kind != KILN_LAYER_AVGPOOL) {
    build_fail(net, KILN_ERR_INVALID_ARG, "net: layer %d: kind %d is not a pool",
               (int)(l - net->layers), (int)kind);
    return drop_last(net);
  }
  return spatial(net, l, kernel_h, kernel_w, stride_h, stride_w, 1, 1, padding);
}

int32_t kiln_net_global_avgpool(kiln_net *net, int32_t input) {
  train_layer *l = new_layer(net, KILN_LAYER_GLOBAL_AVGPOOL, input);
  if (!l) return -1;
  l->h = l->w = 1;
  l->flat = false;
  return (int32_t)(l - net->layers);
}

int32_t kiln_net_dense(kiln_net *net, int32_t input, int32_t units, bool bias) {
  train_layer *l = new_layer(net, KILN_LAYER_DENSE, input);
  if (!l) return -1;
  const int32_t index = (int32_t)(l - net->layers);
  if (units < 1) {
    build_fail(net, KILN_ERR_INVALID_ARG, "net: layer %d (dense): %d units", (int)index,
               (int)units);
    return drop_last(net);
  }
  l->w_count = (int64_t)units * train_size(l);
  l->h = l->w = 1;
  l->c = units;
  l->flat = true;
  l->has_bias = bias;
  l->b_count = bias ? units : 0;
  return index;
}

int32_t kiln_net_dropout(kiln_net *net, int32_t input, float rate) {
  train_layer *l = new_layer(net, KILN_LAYER_DROPOUT, input);
  if (!l) return -1;
  if (!(rate >= 0.0f && rate < 1.0f)) {
    build_fail(net, KILN_ERR_INVALID_ARG, "net: layer %d (dropout): rate %g is not in [0, 1)",
               (int)(l - net->layers), (double)rate);
    return drop_last(net);
  }
  l->rate = rate;
  return (int32_t)(l - net->layers);
}

int32_t kiln_net_add(kiln_net *net, int32_t a, int32_t b) {
  train_layer *l = new_layer(net, KILN_LAYER_ADD, a);
  if (!l) return -1;
  const int32_t index = (int32_t)(l - net->layers);
  if (b < 0 || b >= index) {
    build_fail(net, KILN_ERR_INVALID_ARG, "net: layer %d (add): input %d is not an earlier layer",
               (int)index, (int)b);
    return drop_last(net);
  }
  const train_layer *lb = &net->layers[b];
  if (lb->h != l->h || lb->w != l->w || lb->c != l->c) {
    build_fail(net, KILN_ERR_INVALID_ARG,
               "net: layer %d (add): shapes [%d, %d, %d] (layer %d) and [%d, %d, %d] (layer %d) "
               "differ",
               (int)index, (int)l->h, (int)l->w, (int)l->c, (int)a, (int)lb->h, (int)lb->w,
               (int)lb->c, (int)b);
    return drop_last(net);
  }
  l->in[1] = b;
  return index;
}

int32_t kiln_net_reshape(kiln_net *net, int32_t input, int32_t h, int32_t w, int32_t c) {
  train_layer *l = new_layer(net, KILN_LAYER_RESHAPE, input);
  if (!l) return -1;
  const int32_t index = (int32_t)(l - net->layers);
  if (h < 1 || w < 1 || c < 1 || (int64_t)h * w * c != train_size(l)) {
    build_fail(net, KILN_ERR_INVALID_ARG,
               "net: layer %d (reshape): [%d, %d, %d] does not hold the input's %lld values",
               (int)index, (int)h, (int)w, (int)c, (long long)train_size(l));
    return drop_last(net);
  }
  l->h = h;
  l->w = w;
  l->c = c;
  l->flat = false;
  return index;
}

int32_t kiln_net_flatten(kiln_net *net, int32_t input) {
  if (!net || input < 0 || input >= net->n_layers) return kiln_net_reshape(net, input, 1, 1, 1);
  int32_t l = kiln_net_reshape(net, input, 1, 1, (int32_t)train_size(&net->layers[input]));
  if (l >= 0) net->layers[l].flat = true;
  return l;
}

static bool has_params(const train_layer *l) { return l->w_count > 0; }

/* needs_grad of every layer from the trainable flags. */
static void mark_needs_grad(kiln_net *net) {
  for (int32_t i = 0; i < net->n_layers; i++) {
    train_layer *l = &net->layers[i];
    l->needs_grad = (has_params(l) || l->kind == KILN_LAYER_INPUT) && l->trainable;
    for (int k = 0; k < 2; k++)
      if (l->in[k] >= 0 && net->layers[l->in[k]].needs_grad) l->needs_grad = true;
  }
}

kiln_status kiln_net_set_trainable(kiln_net *net, int32_t layer, bool trainable, kiln_error *err) {
  if (layer < 0 || layer >= net->n_layers)
    return kiln_fail(err, KILN_ERR_INVALID_ARG, "net: layer %d out of range (%d layers)",
                     (int)layer, (int)net->n_layers);
  net->layers[layer].trainable = trainable;
  if (net->finalized) mark_needs_grad(net);
  return KILN_OK;
}

/* He-uniform weights, zero biases, unit gamma and variance. */
static void init_params(kiln_net *net, uint64_t seed) {
  kiln_rng rng;
  kiln_rng_seed(&rng, seed);
  for (int32_t i = 0; i < net->n_layers; i++) {
    const train_layer *l = &net->layers[i];
    if (!has_params(l)) continue;
    float *w = net->params + l->w_off;
    if (l->kind == KILN_LAYER_BATCHNORM) {
      for (int64_t j = 0; j < l->c; j++) {
        w[j] = 1.0f;
        net->params[l->b_off + (size_t)j] = 0.0f;
        net->state[l->mean_off + (size_t)j] = 0.0f;
        net->state[l->var_off + (size_t)j] = 1.0f;
      }
      continue;
    }
    /* conv [c, kh, kw, in_c] and dense [c, in]: fan_in = w_count / c. */
    const int64_t fan_in =
        l->kind == KILN_LAYER_DWCONV ? (int64_t)l->kh * l->kw : l->w_count / l->c;
    const float limit = sqrtf(6.0f / (float)fan_in);
    for (int64_t j = 0; j < l->w_count; j++)
      w[j] = (2.0f * kiln_rng_uniform(&rng) - 1.0f) * limit;
    if (l->b_count) memset(net->params + l->b_off, 0, (size_t)l->b_count * sizeof(float));
  }
}

/* The size table: offsets of every tensor, then the region sizes. */
static kiln_status plan(kiln_net *net, kiln_error *err) {
  size_t params = 0, state = 0, acts = 0, scratch = 0, partials = 0;
  for (int32_t i = 0; i < net->n_layers; i++) {
    train_layer *l = &net->layers[i];
    l->w_off = l->b_off = l->mean_off = l->var_off = l->stat_off = SIZE_MAX;
    if (l->w_count) {
      l->w_off = params;
      params = align_floats(params + (size_t)l->w_count);
    }
    if (l->b_count) {
      l->b_off = params;
      params = align_floats(params + (size_t)l->b_count);
    }
    if (l->kind == KILN_LAYER_BATCHNORM) {
      l->mean_off = state;
      l->var_off = state + (size_t)l->c;
      state = align_floats(state + 2 * (size_t)l->c);
      l->stat_off = acts;
      acts = align_floats(acts + 2 * (size_t)l->c);
      if (l->c > net->max_bn_c) net->max_bn_c = l->c;
    }
    if (l->kind == KILN_LAYER_MAXPOOL) { /* winning tap per output value */
      l->stat_off = acts;
      acts = align_floats(acts + (size_t)net->max_batch * (size_t)train_size(l));
    }

    l->act_off = acts;
    const double act_floats = (double)net->max_batch * (double)train_size(l);
    if (act_floats > (double)(SIZE_MAX / 16))
      return kiln_fail(err, KILN_ERR_LIMIT, "net: layer %d: %g activation values at batch %d",
                       (int)i, act_floats, (int)net->max_batch);
    acts = align_floats(acts + (size_t)act_floats);
    size_t s = train_conv_scratch(net, l);
    if (s > scratch) scratch = s;
    size_t p = train_layer_partials(net, l);
    if (p > partials) partials = p;
    size_t pb = train_conv_packed_bytes(net, l);
    if (pb > net->packed_bytes) net->packed_bytes = pb;
    if (l->kind == KILN_LAYER_CONV) {
      const size_t kc = (size_t)l->kw * (size_t)net->layers[l->in[0]].c;
      if (kc > net->zeros_floats) net->zeros_floats = kc;
    }
  }
  net->n_params = params;
  net->n_state = state;
  net->n_acts = acts;
  net->scratch_per_thread = align_floats(scratch);
  net->partial_floats = align_floats(partials);
  const double total = 4.0 * (double)params + (double)state + 2.0 * (double)acts +
                       (double)net->scratch_per_thread * net->n_threads +
                       (double)net->partial_floats + (double)align_floats(4 * (size_t)net->max_bn_c) +
                       (double)align_floats(net->packed_bytes / sizeof(float) + 1) +
                       (double)align_floats(net->zeros_floats);
  if (total * sizeof(float) > (double)(SIZE_MAX / 2))
    return kiln_fail(err, KILN_ERR_LIMIT, "net: %g floats do not fit in memory", total);
  net->block_bytes = (size_t)total * sizeof(float) + 64 * 16;
  return KILN_OK;
}

kiln_status kiln_net_finalize(kiln_net *net, int32_t max_batch, int32_t n_threads, uint64_t seed,
                              kiln_error *err) {
  if (net->build_err.status != KILN_OK) {
    if (err) *err = net->build_err;
    return net->build_err.status;
  }
  if (net->finalized)
    return kiln_fail(err, KILN_ERR_INVALID_ARG, "net: already finalized");
  if (max_batch < 1)
    return kiln_fail(err, KILN_ERR_INVALID_ARG, "net: batch %d is below 1", (int)max_batch);
  net->max_batch = max_batch;
  net->n_threads = n_threads > 0 ? n_threads : kiln_cpu_count();
  /* KILN_KERNELS=ref selects the portable path (OpenBLAS only). */
  const char *kernels = getenv("KILN_KERNELS");
  net->gemm = kernels && strcmp(kernels, "ref") == 0 ? NULL : kiln_f32_gemm_select(kiln_cpu_isa());
  kiln_status s = plan(net, err);
  if (s != KILN_OK) return s;
  s = kiln_threadpool_create(net->n_threads, &net->pool, err);
  if (s != KILN_OK) return s;
  /* Zeroed: unused batch rows and padding floats stay defined. */
  net->block = kiln_calloc(1, net->block_bytes);
  if (!net->block) {
    kiln_threadpool_free(net->pool);
    net->pool = NULL;
    return kiln_fail(err, KILN_ERR_NOMEM, "net: %zu bytes for parameters and activations",
                     net->block_bytes);
  }
  float *p = (float *)(void *)((char *)net->block + (64 - (uintptr_t)net->block % 64) % 64);
  net->params = p;
  p += net->n_params;
  net->grads = p;
  p += net->n_params;
  net->moment1 = p;
  p += net->n_params;
  net->moment2 = p;
  p += net->n_params;
  net->state = p;
  p += align_floats(net->n_state);
  net->acts = p;
  p += net->n_acts;
  net->dacts = p;
  p += net->n_acts;
  net->scratch = p;
  p += net->scratch_per_thread * (size_t)net->n_threads;
  net->partials = p;
  p += net->partial_floats;
  net->bn_sums = (double *)(void *)p;
  p += align_floats(4 * (size_t)net->max_bn_c);
  net->packed = p;
  p += align_floats(net->packed_bytes / sizeof(float) + 1);
  net->zeros = p;
  openblas_set_num_threads(1);
  net->seed = seed;
  init_params(net, seed);
  mark_needs_grad(net);
  net->finalized = true;
  return KILN_OK;
}

int32_t kiln_net_layer_count(const kiln_net *net) { return net->n_layers; }

kiln_layer_info kiln_net_layer(const kiln_net *net, int32_t layer) {
  kiln_layer_info info;
  memset(&info, 0, sizeof info);
  if (layer < 0 || layer >= net->n_layers) return info;
  const train_layer *l = &net->layers[layer];
  info.kind = l->kind;
  info.inputs[0] = l->in[0];
  info.inputs[1] = l->in[1];
  info.h = l->h;
  info.w = l->w;
  info.c = l->c;
  info.flat = l->flat;
  info.trainable = l->trainable;
  return info;
}

int32_t kiln_net_max_batch(const kiln_net *net) { return net->max_batch; }
int32_t kiln_net_threads(const kiln_net *net) { return net->n_threads; }

int64_t kiln_net_param_count(const kiln_net *net) {
  int64_t n = 0;
  for (int32_t i = 0; i < net->n_layers; i++) n += net->layers[i].w_count + net->layers[i].b_count;
  return n;
}

size_t kiln_net_bytes(const kiln_net *net) { return net->block_bytes; }

static const train_layer *layer_at(const kiln_net *net, int32_t layer) {
  return net->finalized && layer >= 0 && layer < net->n_layers ? &net->layers[layer] : NULL;
}

float *kiln_net_act(kiln_net *net, int32_t layer) {
  const train_layer *l = layer_at(net, layer);
  return l ? train_act(net, l) : NULL;
}

float *kiln_net_grad(kiln_net *net, int32_t layer) {
  const train_layer *l = layer_at(net, layer);
  return l ? train_dact(net, l) : NULL;
}

/* Offset and count of one parameter of l in params (or state); false if
 * absent. *in_state tells which region. */
static bool param_slot(const train_layer *l, kiln_param_kind which, size_t *off, int64_t *count,
                       bool *in_state) {
  const bool bn = l->kind == KILN_LAYER_BATCHNORM;
  *in_state = false;
  switch (which) {
  case KILN_PARAM_WEIGHT:
  case KILN_PARAM_GAMMA:
    if (bn != (which == KILN_PARAM_GAMMA) || !l->w_count) return false;
    *off = l->w_off;
    *count = l->w_count;
    return true;
  case KILN_PARAM_BIAS:
  case KILN_PARAM_BETA:
    if (bn != (which == KILN_PARAM_BETA) || !l->b_count) return false;
    *off = l->b_off;
    *count = l->b_count;
    return true;
  case KILN_PARAM_MEAN:
  case KILN_PARAM_VAR:
    if (!bn) return false;
    *off = which == KILN_PARAM_MEAN ? l->mean_off : l->var_off;
    *count = l->c;
    *in_state = true;
    return true;
  }
  return false;
}

float *kiln_net_param(kiln_net *net, int32_t layer, kiln_param_kind which, int64_t *count) {
  const train_layer *l = layer_at(net, layer);
  size_t off;
  int64_t n;
  bool in_state;
  if (!l || !param_slot(l, which, &off, &n, &in_state)) return NULL;
  if (count) *count = n;
  return (in_state ? net->state : net->params) + off;
}

float *kiln_net_param_grad(kiln_net *net, int32_t layer, kiln_param_kind which, int64_t *count) {
  const train_layer *l = layer_at(net, layer);
  size_t off;
  int64_t n;
  bool in_state;
  if (!l || !param_slot(l, which, &off, &n, &in_state) || in_state) return NULL;
  if (count) *count = n;
  return net->grads + off;
}

int64_t kiln_net_step(const kiln_net *net) { return net->step; }
