/*
 * kiln/train.h: training networks in float32 on the CPU.
 *
 * ==== Training engine ====
 *
 * A kiln_net is a sequence of layers, each with one output tensor; a layer
 * reads the outputs of earlier layers (so a net is a DAG in topological
 * order). Layer 0 is the input. Shapes are per sample, NHWC: a tensor holds
 * [batch, h, w, c] floats. Building records the layers; kiln_net_finalize
 * computes one size table and makes one allocation for parameters,
 * gradients, optimizer state, activations and their gradients, and scratch
 * (llm.c's layout), and initializes the parameters from the seed.
 *
 *   kiln_net *net;
 *   kiln_net_create(28, 28, 1, &net, &err);
 *   kiln_conv_spec c = {.filters = 32, .kernel_h = 3, .kernel_w = 3, .bias = true};
 *   int32_t x = kiln_net_conv(net, 0, &c);
 *   x = kiln_net_activation(net, x, KILN_LAYER_RELU);
 *   x = kiln_net_pool(net, x, KILN_LAYER_MAXPOOL, 2, 2, 2, 2, KILN_PAD_VALID);
 *   x = kiln_net_dense(net, kiln_net_flatten(net, x), 10, true);
 *   if (kiln_net_finalize(net, 64, 2, 1234, &err) != KILN_OK) ...
 *   kiln_optim opt = kiln_optim_default(KILN_OPTIM_ADAM, 1e-3f);
 *   for (each batch of n images) {
 *     memcpy(kiln_net_act(net, 0), images, n * 28 * 28 * sizeof(float));
 *     kiln_net_forward(net, n, true);
 *     double loss = kiln_loss_softmax_xent(kiln_net_act(net, x), labels, NULL, n, 10,
 *                                          0.0f, 1.0f / n, kiln_net_grad(net, x));
 *     kiln_net_backward(net, n);
 *     kiln_net_update(net, &opt, NULL);
 *   }
 *   kiln_net_free(net);
 *
 * Builder functions return the new layer's index, or -1 after an error,
 * which the net keeps: every later builder call returns -1 and
 * kiln_net_finalize reports the first error, so a network can be built
 * without a check after each line.
 *
 * Determinism: every result (forward, gradients, updates) is identical for
 * the same seed, data and calls, whatever the thread count: work is cut into
 * tiles whose boundaries depend only on the shapes and the batch size, and
 * every reduction over tiles adds their partial results in tile order.
 * Results can differ between machines with different instruction sets and
 * between the two conv forward paths below (summation order).
 *
 * Math: conv forwards run on kiln's float GEMM micro-kernels
 * (kernels/f32_gemm.h: AVX-512, AVX2+FMA or NEON, windows read through an
 * indirection, no im2col); KILN_KERNELS=ref, or a CPU without them, uses
 * im2col + OpenBLAS instead. Conv weight and input gradients (im2col /
 * col2im) and dense layers use OpenBLAS's cblas_sgemm, single-threaded
 * inside the tiles (finalize calls openblas_set_num_threads(1), which is
 * process-wide). bench/train/README.md has the measurements behind this.
 */
#ifndef KILN_TRAIN_H
#define KILN_TRAIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kiln/base.h"
#include "kiln/image.h"
#include "kiln/model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kiln_net kiln_net;

typedef enum kiln_layer_kind {
  KILN_LAYER_INPUT = 0,
  KILN_LAYER_CONV,           /* conv2d, weights OHWI [filters, kh, kw, in_c] */
  KILN_LAYER_DWCONV,         /* depthwise, weights [kh, kw, in_c * multiplier] */
  KILN_LAYER_BATCHNORM,      /* per channel: gamma, beta, running mean and variance */
  KILN_LAYER_RELU,
  KILN_LAYER_RELU6,
  KILN_LAYER_HSWISH,         /* x * relu6(x + 3) / 6 */
  KILN_LAYER_MAXPOOL,
  KILN_LAYER_AVGPOOL,        /* the mean of the window's taps inside the image */
  KILN_LAYER_GLOBAL_AVGPOOL, /* [h, w, c] -> [1, 1, c] */
  KILN_LAYER_DENSE,          /* weights [units, in_h * in_w * in_c]; output flat */
  KILN_LAYER_DROPOUT,
  KILN_LAYER_ADD,
  KILN_LAYER_RESHAPE         /* same elements, new shape; flatten is [1, 1, n], flat */
} kiln_layer_kind;

/* Geometry of a conv or depthwise conv. Zero strides and dilations mean 1.
 * SAME padding is TFLite's: out = ceil(in / stride), the odd extra padding
 * row or column after the last. VALID: out = ceil((in - span + 1) / stride)
 * with span = (kernel - 1) * dilation + 1. */
typedef struct kiln_conv_spec {
  int32_t filters; /* output channels (conv) or depth multiplier (dwconv; 0 means 1) */
  int32_t kernel_h, kernel_w;
  int32_t stride_h, stride_w;
  int32_t dilation_h, dilation_w;
  kiln_padding padding;
  bool bias;
} kiln_conv_spec;

/* A layer as built: its kind, inputs (-1 where none) and output shape per
 * sample. flat is true for outputs of dense and flatten (rank 2 at export). */
typedef struct kiln_layer_info {
  kiln_layer_kind kind;
  int32_t inputs[2];
  int32_t h, w, c;
  bool flat;
  bool trainable;
} kiln_layer_info;

/* Which parameter tensor of a layer kiln_net_param returns. */
typedef enum kiln_param_kind {
  KILN_PARAM_WEIGHT = 0, /* conv, dwconv, dense */
  KILN_PARAM_BIAS,       /* conv, dwconv, dense with bias */
  KILN_PARAM_GAMMA,      /* batchnorm scale */
  KILN_PARAM_BETA,       /* batchnorm shift */
  KILN_PARAM_MEAN,       /* batchnorm running mean (state, not trained) */
  KILN_PARAM_VAR         /* batchnorm running variance (state, not trained) */
} kiln_param_kind;

/* A net whose input (layer 0) is [h, w, c] per sample.
 * @retval KILN_ERR_INVALID_ARG  a size below 1
 * @retval KILN_ERR_NOMEM */
kiln_status kiln_net_create(int32_t h, int32_t w, int32_t c, kiln_net **out, kiln_error *err);

/* Layers. Each returns the new layer's index or -1 (error kept by the net:
 * an input index out of range, shapes that do not fit, a net already
 * finalized). */
int32_t kiln_net_conv(kiln_net *net, int32_t input, const kiln_conv_spec *spec);
int32_t kiln_net_dwconv(kiln_net *net, int32_t input, const kiln_conv_spec *spec);
/* Batch norm over N*H*W per channel; training mode uses the batch's mean and
 * biased variance and moves the running statistics by
 * running = (1 - momentum) * running + momentum * batch (variance unbiased,
 * as PyTorch); inference mode uses the running statistics. */
int32_t kiln_net_batchnorm(kiln_net *net, int32_t input, float momentum, float eps);
/* kind: KILN_LAYER_RELU, KILN_LAYER_RELU6 or KILN_LAYER_HSWISH. */
int32_t kiln_net_activation(kiln_net *net, int32_t input, kiln_layer_kind kind);
/* kind: KILN_LAYER_MAXPOOL or KILN_LAYER_AVGPOOL; padding as for convs
 * (padded taps never win a max and are not counted in a mean). */
int32_t kiln_net_pool(kiln_net *net, int32_t input, kiln_layer_kind kind, int32_t kernel_h,
                      int32_t kernel_w, int32_t stride_h, int32_t stride_w, kiln_padding padding);
int32_t kiln_net_global_avgpool(kiln_net *net, int32_t input);
/* Fully connected over all h * w * c input values (in NHWC order). */
int32_t kiln_net_dense(kiln_net *net, int32_t input, int32_t units, bool bias);
/* Training: each value is kept with probability 1 - rate and scaled by
 * 1 / (1 - rate); the mask comes from the net's seed and a counter of
 * training forwards. Inference: identity. 0 <= rate < 1. */
int32_t kiln_net_dropout(kiln_net *net, int32_t input, float rate);
/* a + b, same shape. */
int32_t kiln_net_add(kiln_net *net, int32_t a, int32_t b);
/* Same elements in a new [h, w, c] shape. */
int32_t kiln_net_reshape(kiln_net *net, int32_t input, int32_t h, int32_t w, int32_t c);
/* Reshape to [1, 1, h * w * c], marked flat. */
int32_t kiln_net_flatten(kiln_net *net, int32_t input);

/* Freezes (false) or unfreezes a layer's trainable parameters. Frozen
 * layers get no gradients and no updates, and backward stops where no
 * trainable parameter lies further back. A frozen batch norm uses its
 * running statistics (inference mode) even in training forwards and does
 * not update them. Layer 0 (the input) is frozen by default; marking it
 * trainable makes backward compute the input's gradient. Before or after
 * finalize. */
kiln_status kiln_net_set_trainable(kiln_net *net, int32_t layer, bool trainable, kiln_error *err);

/* Plans and allocates everything for batches of up to max_batch samples,
 * creates a pool of n_threads threads (0: all cores) and initializes the
 * parameters from seed: conv/dense weights He-uniform U(+-sqrt(6 / fan_in)),
 * biases and beta 0, gamma 1, running mean 0 and variance 1.
 * @retval the first error kept while building, or KILN_ERR_NOMEM */
kiln_status kiln_net_finalize(kiln_net *net, int32_t max_batch, int32_t n_threads, uint64_t seed,
                              kiln_error *err);

void kiln_net_free(kiln_net *net);

int32_t kiln_net_layer_count(const kiln_net *net);
/* Layer description; a zeroed record for an index out of range. */
kiln_layer_info kiln_net_layer(const kiln_net *net, int32_t layer);
int32_t kiln_net_max_batch(const kiln_net *net);
int32_t kiln_net_threads(const kiln_net *net);
/* Trainable parameter count (all layers, frozen or not) and bytes of the
 * net's one allocation. */
int64_t kiln_net_param_count(const kiln_net *net);
size_t kiln_net_bytes(const kiln_net *net);

/* A layer's output [max_batch, h, w, c] and its gradient; NULL before
 * finalize or for an index out of range. The input is written to
 * kiln_net_act(net, 0) before kiln_net_forward. */
float *kiln_net_act(kiln_net *net, int32_t layer);
float *kiln_net_grad(kiln_net *net, int32_t layer);
/* A parameter tensor of a layer (layouts in kiln_layer_kind) and its
 * gradient; NULL when the layer has no such parameter. count may be NULL. */
float *kiln_net_param(kiln_net *net, int32_t layer, kiln_param_kind which, int64_t *count);
float *kiln_net_param_grad(kiln_net *net, int32_t layer, kiln_param_kind which, int64_t *count);

/* Runs the first n (1..max_batch) samples of the input through every
 * layer. training selects batch statistics and dropout, and clears every
 * activation gradient so the caller can then write the loss gradients into
 * kiln_net_grad of the output layers. */
void kiln_net_forward(kiln_net *net, int32_t n, bool training);

/* Back-propagates the gradients the caller wrote into kiln_net_grad of the
 * output layers after a training forward of the same n samples, filling
 * every trainable parameter's gradient (overwritten, not accumulated). */
void kiln_net_backward(kiln_net *net, int32_t n);

/* ---- Losses ----
 * Each returns scale * sum over items of weight * loss (weights NULL: 1;
 * scale is typically 1 / batch, or 1 / positives for detection) and writes
 * d(that)/d(input) into grad (overwriting; may be kiln_net_grad of the
 * layer that produced the logits). Sums run in double, in index order. */

/* Softmax cross-entropy over rows of `classes` logits; labels in
 * [0, classes), a negative label ignores the row (zero loss and gradient).
 * Label smoothing s: the target is (1 - s) on the label plus s / classes
 * everywhere. */
double kiln_loss_softmax_xent(const float *logits, const int32_t *labels, const float *weights,
                              int32_t rows, int32_t classes, float smoothing, float scale,
                              float *grad);
/* Sigmoid binary cross-entropy per element, targets in [0, 1]. */
double kiln_loss_sigmoid_bce(const float *logits, const float *targets, const float *weights,
                             int64_t count, float scale, float *grad);
/* Sigmoid focal loss (Lin et al.): -alpha_t (1 - p_t)^gamma log(p_t) per
 * element, with p_t = p for target 1 and 1 - p for target 0, alpha_t =
 * alpha for target 1 and 1 - alpha for 0 (targets may be in between: the
 * two terms are mixed linearly). */
double kiln_loss_focal(const float *logits, const float *targets, const float *weights,
                       int64_t count, float alpha, float gamma, float scale, float *grad);
/* Smooth L1 (Huber with threshold beta > 0): 0.5 d^2 / beta for |d| < beta,
 * else |d| - 0.5 beta, d = pred - target. */
double kiln_loss_smooth_l1(const float *pred, const float *target, const float *weights,
                           int64_t count, float beta, float scale, float *grad);

/* ---- Optimizers and learning-rate schedule ---- */

/* Learning rate at a step: linear warmup from base_lr / warmup_steps to
 * base_lr over steps [0, warmup_steps), then cosine decay from base_lr to
 * final_lr at total_steps, final_lr after. total_steps <= warmup_steps:
 * constant base_lr after the warmup. */
typedef struct kiln_schedule {
  float base_lr;
  float final_lr;
  int64_t warmup_steps;
  int64_t total_steps;
} kiln_schedule;

float kiln_schedule_lr(const kiln_schedule *schedule, int64_t step);

typedef enum kiln_optim_kind {
  KILN_OPTIM_SGD = 0, /* momentum, optional Nesterov; weight decay as L2 in the gradient */
  KILN_OPTIM_ADAM,    /* weight decay as L2 in the gradient */
  KILN_OPTIM_ADAMW    /* decoupled weight decay: w -= lr * weight_decay * w */
} kiln_optim_kind;

typedef struct kiln_optim {
  kiln_optim_kind kind;
  kiln_schedule schedule;
  float momentum;     /* SGD: v = momentum * v + g; w -= lr * (nesterov ? g + momentum * v : v) */
  bool nesterov;
  float beta1, beta2; /* Adam(W): bias-corrected moments */
  float eps;          /* Adam(W): added to sqrt(v_hat) */
  float weight_decay; /* applied to conv, dwconv and dense weights only */
  float clip_norm;    /* > 0: scale all gradients so their global L2 norm <= clip_norm */
} kiln_optim;

/* Defaults: constant lr, SGD momentum 0.9, Adam betas 0.9/0.999, eps 1e-8,
 * no weight decay, no clipping. */
kiln_optim kiln_optim_default(kiln_optim_kind kind, float lr);

/* What one update did. */
typedef struct kiln_update_stats {
  float lr;        /* the schedule's lr at the step */
  float grad_norm; /* global L2 norm before clipping */
  int64_t step;    /* the step just taken (0-based) */
} kiln_update_stats;

/* One optimizer step on every trainable parameter from its gradient, at
 * lr = kiln_schedule_lr(&opt->schedule, step), then step + 1. stats may be
 * NULL. */
void kiln_net_update(kiln_net *net, const kiln_optim *opt, kiln_update_stats *stats);
/* Steps taken so far (the schedule position). */
int64_t kiln_net_step(const kiln_net *net);

/* ---- Random numbers ---- */

/* xoshiro256** seeded through splitmix64; the state is all there is, so a
 * checkpoint that stores it resumes the sequence exactly. */
typedef struct kiln_rng {
  uint64_t s[4];
} kiln_rng;

void kiln_rng_seed(kiln_rng *rng, uint64_t seed);
uint64_t kiln_rng_next(kiln_rng *rng);
/* Uniform in [0, 1) with 24 random bits. */
float kiln_rng_uniform(kiln_rng *rng);
/* Uniform integer in [0, n), n >= 1 (unbiased). */
uint32_t kiln_rng_below(kiln_rng *rng, uint32_t n);

/* ---- Checkpoints ----
 * A checkpoint holds everything a run needs to continue bit-identically:
 * every parameter, the batch norms' running statistics, the optimizer's
 * moments, the step (schedule position), the dropout counter, the run
 * state below and an opaque block of the caller's. File layout: "KILNCKPT",
 * format version, a fingerprint of the net's structure (layer kinds,
 * shapes and parameter counts: a checkpoint of another net is refused),
 * section sizes, the data, and a CRC-32 of everything before it. Written
 * with kiln_file_write_atomic: a crash leaves the old file or the new. */

/* The caller's part of a run: epoch, the data order / augmentation RNG and
 * the optimizer configuration (with its schedule). */
typedef struct kiln_run_state {
  int64_t epoch;
  kiln_rng rng;
  kiln_optim optim;
} kiln_run_state;

/* Saves net (finalized) and state; extra (extra_bytes, may be 0) is stored
 * as is. */
kiln_status kiln_checkpoint_save(const kiln_net *net, const kiln_run_state *state,
                                 const void *extra, size_t extra_bytes, const char *path,
                                 kiln_error *err);
/* Restores into net, which must have been built the same way and finalized
 * (any batch size and thread count); fills *state; *extra gets a kiln_malloc'd
 * copy of the caller's block (NULL when empty; extra may be NULL to skip it).
 * @retval KILN_ERR_IO      unreadable
 * @retval KILN_ERR_FORMAT  not a checkpoint, other version, bad checksum,
 *                          truncated, or a different net (message says which) */
kiln_status kiln_checkpoint_load(kiln_net *net, kiln_run_state *state, void **extra,
                                 size_t *extra_bytes, const char *path, kiln_error *err);

/* ---- Export ---- */

/* Writes the weights and bias of conv or dwconv layer conv_layer with batch
 * norm layer bn_layer (whose input it must be) folded in:
 * w' = w * gamma / sqrt(var + eps) per output channel, b' = (b - mean) *
 * gamma / sqrt(var + eps) + beta. weights holds the conv's weight count,
 * bias its output channels. */
kiln_status kiln_net_fold_batchnorm(const kiln_net *net, int32_t conv_layer, int32_t bn_layer,
                                    float *weights, float *bias, kiln_error *err);

typedef struct kiln_export_options {
  int32_t n_outputs;  /* 0: one output, the last layer */
  int32_t outputs[8]; /* output layers */
  bool softmax;       /* append SOFTMAX (beta 1) to every output */
} kiln_export_options;

/* A float32 kiln_model of the net in inference mode, batch 1: conv ->
 * CONV_2D, dwconv -> DEPTHWISE_CONV_2D, dense -> FULLY_CONNECTED, pools ->
 * MAX_POOL_2D / AVERAGE_POOL_2D, global pool -> MEAN over h, w (kept),
 * add -> ADD, reshape -> RESHAPE, activations -> RELU / RELU6 / HARD_SWISH
 * or fused into the conv, dwconv, dense or add before them, dropout
 * dropped; a batch norm right after a conv or dwconv (its only consumer)
 * is folded into it, any other becomes a 1x1 depthwise conv. Tensors are
 * named after layers ("conv_3"); the input is "input". options may be NULL.
 * The model is the caller's (kiln_model_free). */
kiln_status kiln_net_export(const kiln_net *net, const kiln_export_options *options,
                            kiln_model **out, kiln_error *err);

/* ---- Augmentation (box-aware) ----
 * Images are float [h, w, c] (kiln_fimage, values in [0, max_value]) or
 * RGB8 kiln_image. Boxes are (x1, y1, x2, y2) in pixels of the image they
 * lie on (x right, y down, x1 <= x2, y1 <= y2), with optional labels that
 * travel with them. Transforms that move pixels move the boxes the same
 * way. Box rules after a crop or resize: a box is clipped to the output
 * image, and dropped when less than min_visible of its area (measured in
 * the output's scale, before clipping) remains or when the clipped box is
 * under 1 pixel wide or high; the boxes kept stay in their order, compacted
 * to the front (labels too), and count is updated. Random choices come
 * from the caller's kiln_rng in the order each function documents. */

typedef struct kiln_fimage {
  float *data; /* [h, w, c] row-major */
  int32_t h, w, c;
} kiln_fimage;

typedef struct kiln_boxes {
  float *xyxy;     /* [count][4] */
  int32_t *labels; /* [count] or NULL */
  int32_t count;
} kiln_boxes;

/* Mirrors left-right in place: x -> w - x for box edges. boxes may be NULL. */
void kiln_aug_hflip(kiln_fimage *img, kiln_boxes *boxes);
void kiln_aug_hflip_rgb8(kiln_image *img, kiln_boxes *boxes);

/* Resamples the source window (x, y, width, height in source pixels; it may
 * reach outside the source, where `fill` is used) bilinearly (pixel centres
 * at +0.5) into dst (its h, w, c set, c equal to the source's), and maps
 * boxes from source to dst pixels with the rules above. Exactly one of src
 * and src_rgb8 is non-NULL (RGB8 values are taken as 0..255 floats).
 * @retval KILN_ERR_INVALID_ARG  channel counts differ or an empty window */
kiln_status kiln_aug_crop_resize(const kiln_fimage *src, const kiln_image *src_rgb8,
                                 const float window[4], float fill, kiln_fimage *dst,
                                 kiln_boxes *boxes, float min_visible, kiln_error *err);

/* Random resized crop window (Inception style): up to 10 draws of an area
 * fraction uniform in [min_scale, max_scale] and an aspect ratio (w / h)
 * log-uniform in [min_ratio, max_ratio], each followed by a uniform
 * position (4 draws per attempt); the first that fits inside the w x h
 * image is taken, else the centred largest window with the aspect clamped
 * into the range. Writes window = {x, y, width, height}. */
void kiln_aug_random_crop_window(kiln_rng *rng, int32_t w, int32_t h, float min_scale,
                                 float max_scale, float min_ratio, float max_ratio,
                                 float window[4]);

/* Scale jitter window for an out_w x out_h output: the image is scaled by
 * s * min(out_w / w, out_h / h), s uniform in [min_scale, max_scale] (one
 * draw); when the scaled image is larger than the output a uniform offset
 * picks the part shown (two draws), when smaller it sits at the top left
 * and the rest is padding (crop_resize's fill). window as above. */
void kiln_aug_scale_jitter_window(kiln_rng *rng, int32_t w, int32_t h, int32_t out_w,
                                  int32_t out_h, float min_scale, float max_scale, float window[4]);

/* Colour jitter in place, in this order, each factor uniform in
 * [1 - amount, 1 + amount] (three draws, always made): brightness (values
 * times the factor), contrast (blend with the image's mean grey), saturation
 * (blend each pixel with its grey; 3 channels only), then clamp to
 * [0, max_value]. Grey is 0.299 R + 0.587 G + 0.114 B. The RGB8 form works
 * in float (a temporary copy: KILN_ERR_NOMEM when it cannot be made) and
 * rounds to nearest. */
void kiln_aug_color_jitter(kiln_fimage *img, kiln_rng *rng, float brightness, float contrast,
                           float saturation, float max_value);
kiln_status kiln_aug_color_jitter_rgb8(kiln_image *img, kiln_rng *rng, float brightness,
                                       float contrast, float saturation, kiln_error *err);

/* ---- A classification training loop ----
 * Mini-batch training of a classifier on images held in memory: each epoch
 * shuffles the training set with the run's RNG, builds batches (optionally
 * flipping each image left-right with probability 1/2), runs forward,
 * softmax cross-entropy, backward and an update, then measures accuracy on
 * the test set and saves a checkpoint. Resuming from that checkpoint
 * continues exactly as if the run had not stopped. */

/* Images [count, h, w, c] of uint8, fed to the net as pixel * scale +
 * offset, and their labels in [0, classes). */
typedef struct kiln_class_data {
  const uint8_t *pixels;
  const int32_t *labels;
  int64_t count;
  float scale, offset;
} kiln_class_data;

/* What an epoch did. */
typedef struct kiln_fit_epoch {
  int64_t epoch;           /* 0-based */
  int64_t epochs;
  double train_loss;       /* mean over the epoch's batches */
  double train_accuracy;   /* of the training forwards (dropout on) */
  double test_accuracy;    /* inference mode; -1 without a test set */
  double seconds;          /* training time of the epoch (no evaluation) */
  double images_per_second;
  float lr;                /* at the epoch's last step */
} kiln_fit_epoch;

typedef struct kiln_fit_options {
  int32_t epochs;
  int32_t batch;           /* <= the net's max batch */
  kiln_optim optim;        /* schedule.total_steps 0: epochs * steps per epoch */
  float label_smoothing;
  bool hflip;
  uint64_t seed;           /* the data order and flips */
  const char *checkpoint;  /* saved after every epoch; NULL: none */
  bool resume;             /* continue from checkpoint when the file exists */
  void (*on_epoch)(void *ctx, const kiln_fit_epoch *epoch); /* NULL: none */
  void *ctx;
} kiln_fit_options;

/* Trains net (finalized; its input [h, w, c] must match the data) whose
 * layer logits_layer gives [1, 1, classes] per image. test may be NULL.
 * last (may be NULL) receives the final epoch's figures.
 * @retval KILN_ERR_INVALID_ARG  shapes, labels or options that do not fit
 * @retval the checkpoint's errors when saving or resuming fails */
kiln_status kiln_fit_classifier(kiln_net *net, int32_t logits_layer, const kiln_class_data *train,
                                const kiln_class_data *test, const kiln_fit_options *options,
                                kiln_fit_epoch *last, kiln_error *err);

/* Accuracy of the net (inference mode) on data, in batches of the net's
 * max batch. */
double kiln_evaluate_classifier(kiln_net *net, int32_t logits_layer, const kiln_class_data *data);

/* ==== SSD transfer learning ====
 * Retrains the box and class predictors of a raw-output SSD (such as the
 * shared ssd_mobilenet_v2_oidv4_fp16.tflite) for a dataset's classes,
 * keeping everything before them (backbone and extra feature layers)
 * frozen, as Coral's "retrain the last layers" does:
 *
 *   kiln_ssd_train_options o = kiln_ssd_train_options_default();
 *   kiln_model *raw;                       // same graph, new predictors
 *   kiln_ssd_train(base, ds, &o, &raw, &report, &err);
 *   kiln_detect_config cfg;
 *   kiln_ssd_detect_config(raw, &cfg, &err);
 *   kiln_detect_add_postprocess(raw, &cfg, &err);  // Coral-style outputs
 *   kiln_model_save(raw, "model_float.tflite", &err);
 *   // int8: kiln_quantizer_create(raw, ...) on training images (kiln/quant.h)
 *
 * Each training image (decoded, optionally augmented: left-right flip,
 * random crop, colour jitter; boxes move with the pixels) is resized to
 * the model input and run through the frozen body with kiln's interpreter,
 * which gives the feature maps the predictors read. Without augmentation
 * these are computed once and cached (as float16); with it, every epoch
 * sees new ones. New predictors (one kiln_net per feature map, the
 * original kernel sizes) are trained on them: the box predictors start
 * from the pretrained ones; the class predictors have K + 1 columns per
 * anchor (column 0 background, column k + 1 the dataset's label k; sigmoid
 * scores like the shared SSD), their background column starting from the
 * pretrained one and the others from zero weights with a bias of
 * -log(99) (a 1% prior).
 *
 * Loss (as the TF Object Detection API's SSD MobileNet V2 configurations
 * train, with the sigmoid scores and background column the shared model
 * has): anchors match a box when
 * their IoU is >= match_iou, and each box also takes its best anchor;
 * targets use the Faster R-CNN box coder with scales 10, 10, 5, 5 (what
 * kiln_detect_decode inverts). Sigmoid cross-entropy over all K + 1
 * columns of the positives and of the hardest negatives (neg_pos_ratio per
 * positive, at least min_negatives per image), plus box_weight * smooth L1
 * on the positives' encodings, divided by the positives of the batch. Hard
 * mining rather than focal loss: the pretrained box predictors and
 * background column this starts from were trained that way, so their
 * outputs keep meaning what the loss expects, and TF's 3:1 and 3 per image
 * need no tuning per dataset (focal loss brings alpha, gamma and a prior to
 * balance). Crowd and difficult boxes are ignore regions: anchors matching
 * only them are left out of the loss.
 *
 * Determinism: a run depends only on the dataset, the options (seed
 * included) and the thread count: epoch e's image order and image i's
 * augmentation in epoch e come from RNGs seeded by (seed, e) and (seed, e,
 * i), so a resumed run is bit-identical to an uninterrupted one. */

struct kiln_dataset;       /* kiln/data.h */
struct kiln_detect_config; /* kiln/detect.h */

/* Progress of a run, reported after every step and at the end of every
 * epoch. */
typedef struct kiln_ssd_progress {
  int64_t epoch, epochs;            /* epoch 0-based */
  int64_t step, steps_per_epoch;    /* steps done in this epoch */
  int64_t global_step, total_steps; /* steps done in the run */
  bool epoch_end;                   /* the epoch's summary: means below are over it */
  double loss, class_loss, box_loss; /* the step's, or the epoch's mean at epoch_end */
  double positives_per_image;       /* matched anchors */
  float lr;
  double images_per_second;         /* over the epoch so far */
  double elapsed_seconds;           /* since this call started */
  double eta_seconds;               /* to the end of the run, at the epoch's rate */
} kiln_ssd_progress;

typedef struct kiln_ssd_train_options {
  int32_t epochs;
  int32_t batch;           /* images per step */
  kiln_optim optim;        /* schedule.total_steps 0: epochs * steps per epoch; clip_norm
                            * applies to each feature map's predictors separately */
  float match_iou;         /* anchor-box IoU for a positive */
  float neg_pos_ratio;     /* hard negatives per positive */
  int32_t min_negatives;   /* hard negatives per image at least */
  float box_weight;        /* localization loss weight */
  bool hflip;              /* mirror with probability 1/2 */
  float crop_probability;  /* random crop (kiln_aug_random_crop_window, area 0.3..1, aspect
                            * 0.5..2, boxes under half visible dropped) */
  float color_jitter;      /* brightness, contrast and saturation amount; 0: off */
  int32_t threads;         /* interpreter and heads; 0: all cores */
  uint64_t seed;
  const char *checkpoint;  /* saved after every epoch and on a stop; NULL: none */
  bool resume;             /* continue from checkpoint when the file exists */
  /* Stored in the checkpoint, which is refused on resume when it differs
   * (besides seed, batch, epochs, classes and training images, which are
   * always checked): e.g. a hash of the data and settings. */
  uint64_t checkpoint_key;
  void (*on_progress)(void *ctx, const kiln_ssd_progress *progress); /* NULL: none */
  /* Asked after every step; true stops the run after saving the checkpoint
   * (e.g. on SIGTERM). NULL: never. */
  bool (*should_stop)(void *ctx);
  void *ctx;
} kiln_ssd_train_options;

/* 40 epochs of 16 images, Adam lr 3e-3 with cosine decay to 1e-5 (no
 * warmup), weight decay 1e-4; match IoU 0.5, 3 negatives per positive, at
 * least 3 per image, box weight 1; flip, crop probability 0.5, colour
 * jitter 0.2; all cores, seed 0, no checkpoint. */
kiln_ssd_train_options kiln_ssd_train_options_default(void);

typedef struct kiln_ssd_train_report {
  int32_t classes;          /* K, the dataset's labels */
  int32_t train_images;     /* of the TRAIN split */
  int32_t anchors;
  int32_t heads;            /* feature maps */
  int64_t trainable_params;
  int64_t epochs_done, steps_done;
  double final_loss, final_class_loss, final_box_loss; /* the last epoch's means */
  double seconds;           /* this call, wall clock */
  double feature_seconds;   /* of it: decoding, augmentation and the frozen body */
  double images_per_second; /* training images per second over this call */
  bool resumed;             /* continued from the checkpoint */
  bool stopped;             /* should_stop ended it early; no model */
} kiln_ssd_train_report;

/* Trains new predictors for the labels of ds on base, a raw-output SSD
 * (one float [1,h,w,3] input; outputs box encodings [1,N,4] and class
 * logits [1,N,C] made by conv predictors on feature maps, reshaped and
 * concatenated; N must be the standard SSD anchor count for the input
 * size, kiln_ssd_anchor_config_infer). Trains on ds's TRAIN images (those
 * without boxes as background-only images); box labels must be below
 * ds->n_labels. On success *out_raw_float is base's graph with the new
 * predictors, outputs box encodings [1,N,4] and class logits [1,N,K+1]
 * under base's names (the caller frees it), unless should_stop ended the
 * run (then NULL, rep->stopped). rep may be NULL. base need not stay
 * alive after the call.
 * @retval KILN_ERR_UNSUPPORTED  base is not a raw-output SSD kiln can
 *                               retrain (the message names what differs)
 * @retval KILN_ERR_INVALID_ARG  a detection dataset with labels and
 *                               training images is needed; bad options;
 *                               a checkpoint of another run
 * @retval the image decoder's, interpreter's and checkpoint's errors */
kiln_status kiln_ssd_train(const kiln_model *base, const struct kiln_dataset *ds,
                           const kiln_ssd_train_options *opt, kiln_model **out_raw_float,
                           kiln_ssd_train_report *rep, kiln_error *err);

/* The post-processing for a retrained raw model (kiln_detect_add_postprocess
 * and kiln_detector): anchors for its N and input size, box coder
 * 10/10/5/5, sigmoid scores with a background column, score >= 0.05, IoU
 * 0.6 (TF's SSD settings), NMS per class (TFLite's regular NMS: it keeps a
 * box's second-best class, worth several points of mAP over the one-class
 * fast NMS for a freshly trained head), at most 25 detections.
 * @retval KILN_ERR_UNSUPPORTED  not a raw-output SSD with standard anchors */
kiln_status kiln_ssd_detect_config(const kiln_model *raw, struct kiln_detect_config *out,
                                   kiln_error *err);

#ifdef __cplusplus
}
#endif
#endif
