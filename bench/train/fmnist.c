/*
 * bench/train/fmnist.c: trains a small CNN on Fashion-MNIST from scratch with
 * kiln's training engine (kiln_fit_classifier), prints one line per epoch
 * and a JSON summary, and optionally exports the trained net as a float
 * .tflite (DIR/fmnist.tflite) with test images and the engine's outputs for checking against
 * LiteRT (check_export.py).
 *
 *   fmnist [--data DIR] [--net tutorial|bn] [--epochs N] [--batch B]
 *          [--threads T] [--lr X] [--seed S] [--max-train N] [--steps N]
 *          [--export OUT_DIR] [--checkpoint FILE]
 *
 * --steps N times N training steps only (no evaluation) for the speed
 * comparison with PyTorch (torch_anchor.py); --max-train N uses the first N
 * training images. Reads the gzipped IDX files itself with zlib.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>

#include "kiln/interp.h"
#include "kiln/model.h"
#include "kiln/train.h"

/* Reads a gzipped IDX file: magic 0x00000801 (labels) or 0x00000803
 * (images), big-endian sizes. Returns the bytes after the header. */
static uint8_t *read_idx(const char *path, int rank, int32_t *dims) {
  gzFile f = gzopen(path, "rb");
  if (!f) {
    fprintf(stderr, "%s: cannot open\n", path);
    return NULL;
  }
  unsigned char head[16];
  const int head_bytes = 4 + 4 * rank;
  uint8_t *data = NULL;
  if (gzread(f, head, (unsigned)head_bytes) != head_bytes || head[2] != 0x08 || head[3] != rank) {
    fprintf(stderr, "%s: not an IDX file of rank %d\n", path, rank);
    goto done;
  }
  size_t total = 1;
  for (int i = 0; i < rank; i++) {
    const unsigned char *p = head + 4 + 4 * i;
    dims[i] = (int32_t)((uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]);
    total *= (size_t)dims[i];
  }
  data = malloc(total);
  if (!data || gzread(f, data, (unsigned)total) != (int)total) {
    fprintf(stderr, "%s: truncated (%zu bytes expected)\n", path, total);
    free(data);
    data = NULL;
  }
done:
  gzclose(f);
  return data;
}

static int load_split(const char *dir, const char *prefix, kiln_class_data *out) {
  char path[1024];
  int32_t idims[3], ldims[1];
  snprintf(path, sizeof path, "%s/%s-images-idx3-ubyte.gz", dir, prefix);
  uint8_t *pixels = read_idx(path, 3, idims);
  snprintf(path, sizeof path, "%s/%s-labels-idx1-ubyte.gz", dir, prefix);
  uint8_t *raw = read_idx(path, 1, ldims);
  if (!pixels || !raw || idims[0] != ldims[0] || idims[1] != 28 || idims[2] != 28) {
    free(pixels);
    free(raw);
    return -1;
  }
  int32_t *labels = malloc((size_t)ldims[0] * sizeof *labels);
  if (!labels) return -1;
  for (int32_t i = 0; i < ldims[0]; i++) labels[i] = raw[i];
  free(raw);
  out->pixels = pixels;
  out->labels = labels;
  out->count = ldims[0];
  out->scale = 1.0f / 255.0f;
  out->offset = 0.0f;
  return 0;
}

/* The nets (torch_anchor.py builds the same):
 * tutorial: TensorFlow's CNN tutorial net: conv32 3x3 relu, maxpool 2,
 *   conv64 3x3 relu, maxpool 2, flatten, dense128 relu, dense10 (VALID).
 * bn: conv32 3x3 SAME, BN, relu, maxpool 2, conv64 3x3 SAME, BN, relu,
 *   maxpool 2, flatten, dropout 0.3, dense128 relu, dense10. */
static int32_t build_net(kiln_net *net, const char *kind) {
  const bool bn = strcmp(kind, "bn") == 0;
  kiln_conv_spec c1 = {.filters = 32, .kernel_h = 3, .kernel_w = 3, .bias = !bn,
                       .padding = bn ? KILN_PAD_SAME : KILN_PAD_VALID};
  kiln_conv_spec c2 = c1;
  c2.filters = 64;
  int32_t x = kiln_net_conv(net, 0, &c1);
  if (bn) x = kiln_net_batchnorm(net, x, 0.1f, 1e-5f);
  x = kiln_net_activation(net, x, KILN_LAYER_RELU);
  x = kiln_net_pool(net, x, KILN_LAYER_MAXPOOL, 2, 2, 2, 2, KILN_PAD_VALID);
  x = kiln_net_conv(net, x, &c2);
  if (bn) x = kiln_net_batchnorm(net, x, 0.1f, 1e-5f);
  x = kiln_net_activation(net, x, KILN_LAYER_RELU);
  x = kiln_net_pool(net, x, KILN_LAYER_MAXPOOL, 2, 2, 2, 2, KILN_PAD_VALID);
  x = kiln_net_flatten(net, x);
  if (bn) x = kiln_net_dropout(net, x, 0.3f);
  x = kiln_net_dense(net, x, 128, true);
  x = kiln_net_activation(net, x, KILN_LAYER_RELU);
  return kiln_net_dense(net, x, 10, true);
}

static void print_epoch(void *ctx, const kiln_fit_epoch *e) {
  (void)ctx;
  printf("epoch %lld/%lld  loss %.4f  train %.2f%%  test %.2f%%  %.1f s  %.0f images/s  lr %.2e\n",
         (long long)e->epoch + 1, (long long)e->epochs, e->train_loss, 100.0 * e->train_accuracy,
         100.0 * e->test_accuracy, e->seconds, e->images_per_second, (double)e->lr);
  fflush(stdout);
}

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Times `steps` training steps on the first images (no evaluation). */
static double time_steps(kiln_net *net, int32_t logits, const kiln_class_data *d, int32_t batch,
                         int32_t steps, const kiln_optim *opt) {
  float *in = kiln_net_act(net, 0);
  int32_t labels[4096];
  const double t0 = now_seconds();
  for (int32_t s = 0; s < steps; s++) {
    const int64_t start = ((int64_t)s * batch) % (d->count - batch);
    for (int32_t i = 0; i < batch * 784; i++) in[i] = d->pixels[start * 784 + i] * d->scale;
    for (int32_t i = 0; i < batch; i++) labels[i] = d->labels[start + i];
    kiln_net_forward(net, batch, true);
    kiln_loss_softmax_xent(kiln_net_act(net, logits), labels, NULL, batch, 10, 0.0f,
                           1.0f / batch, kiln_net_grad(net, logits));
    kiln_net_backward(net, batch);
    kiln_net_update(net, opt, NULL);
  }
  return (double)steps * batch / (now_seconds() - t0);
}

/* Writes model.tflite, inputs.bin (n float images) and expected.bin (the
 * engine's inference logits) into dir, and checks kiln's interpreter. */
static int export_net(kiln_net *net, int32_t logits, const kiln_class_data *test, const char *dir) {
  kiln_error err;
  kiln_model *model;
  if (kiln_net_export(net, NULL, &model, &err) != KILN_OK) {
    fprintf(stderr, "export: %s\n", err.msg);
    return 1;
  }
  char path[1024];
  snprintf(path, sizeof path, "%s/fmnist.tflite", dir);
  if (kiln_model_save(model, path, &err) != KILN_OK) {
    fprintf(stderr, "%s\n", err.msg);
    kiln_model_free(model);
    return 1;
  }
  const int32_t n = kiln_net_max_batch(net) < 64 ? kiln_net_max_batch(net) : 64;
  float *in = kiln_net_act(net, 0);
  for (int32_t i = 0; i < n * 784; i++) in[i] = test->pixels[i] * test->scale;
  kiln_net_forward(net, n, false);
  snprintf(path, sizeof path, "%s/fmnist.inputs.bin", dir);
  FILE *f = fopen(path, "wb");
  if (f) fwrite(in, sizeof(float), (size_t)n * 784, f), fclose(f);
  snprintf(path, sizeof path, "%s/fmnist.expected.bin", dir);
  f = fopen(path, "wb");
  if (f) fwrite(kiln_net_act(net, logits), sizeof(float), (size_t)n * 10, f), fclose(f);
  kiln_interp *it;
  double worst = 0.0;
  if (kiln_interp_create(model, NULL, &it, &err) != KILN_OK) {
    fprintf(stderr, "interp: %s\n", err.msg);
    kiln_model_free(model);
    return 1;
  }
  for (int32_t i = 0; i < n; i++) {
    memcpy(kiln_interp_input(it, 0).data, in + (size_t)i * 784, 784 * sizeof(float));
    kiln_interp_invoke(it, &err);
    const float *o = kiln_interp_output(it, 0).data;
    const float *e = kiln_net_act(net, logits) + (size_t)i * 10;
    for (int k = 0; k < 10; k++) {
      double d = o[k] > e[k] ? o[k] - e[k] : e[k] - o[k];
      if (d > worst) worst = d;
    }
  }
  printf("export: %s/fmnist.tflite, kiln interpreter vs engine: max abs difference %.3g\n", dir,
         worst);
  kiln_interp_free(it);
  kiln_model_free(model);
  return 0;
}

int main(int argc, char **argv) {
  const char *data_dir = "/usr/share/datasets/fashion-mnist", *kind = "tutorial";
  const char *export_dir = NULL, *checkpoint = NULL;
  int32_t epochs = 10, batch = 64, threads = 1, steps = 0;
  int64_t max_train = 0;
  float lr = 1e-3f;
  uint64_t seed = 1;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!v) {
      fprintf(stderr, "%s: missing value\n", a);
      return 2;
    }
    i++;
    if (!strcmp(a, "--data")) data_dir = v;
    else if (!strcmp(a, "--net")) kind = v;
    else if (!strcmp(a, "--epochs")) epochs = atoi(v);
    else if (!strcmp(a, "--batch")) batch = atoi(v);
    else if (!strcmp(a, "--threads")) threads = atoi(v);
    else if (!strcmp(a, "--lr")) lr = (float)atof(v);
    else if (!strcmp(a, "--seed")) seed = strtoull(v, NULL, 10);
    else if (!strcmp(a, "--steps")) steps = atoi(v);
    else if (!strcmp(a, "--max-train")) max_train = atoll(v);
    else if (!strcmp(a, "--export")) export_dir = v;
    else if (!strcmp(a, "--checkpoint")) checkpoint = v;
    else {
      fprintf(stderr, "unknown option %s\n", a);
      return 2;
    }
  }
  if (batch < 1 || batch > 4096) {
    fprintf(stderr, "--batch %d: 1..4096\n", (int)batch);
    return 2;
  }
  kiln_class_data train, test;
  if (load_split(data_dir, "train", &train) || load_split(data_dir, "t10k", &test)) return 1;
  if (max_train > 0 && max_train < train.count) train.count = max_train;
  kiln_error err;
  kiln_net *net;
  if (kiln_net_create(28, 28, 1, &net, &err) != KILN_OK) return 1;
  const int32_t logits = build_net(net, kind);
  if (kiln_net_finalize(net, batch, threads, seed, &err) != KILN_OK) {
    fprintf(stderr, "%s\n", err.msg);
    return 1;
  }
  kiln_optim opt = kiln_optim_default(KILN_OPTIM_ADAM, lr);
  if (steps > 0) {
    time_steps(net, logits, &train, batch, steps / 10 + 1, &opt); /* warm-up */
    const double ips = time_steps(net, logits, &train, batch, steps, &opt);
    printf("{\"net\": \"%s\", \"batch\": %d, \"threads\": %d, \"steps\": %d, "
           "\"images_per_second\": %.1f}\n",
           kind, (int)batch, (int)threads, (int)steps, ips);
    kiln_net_free(net);
    return 0;
  }
  opt.schedule.final_lr = 0.0f;
  opt.schedule.warmup_steps = (train.count + batch - 1) / batch / 2;
  kiln_fit_options fo = {0};
  fo.epochs = epochs;
  fo.batch = batch;
  fo.optim = opt;
  fo.seed = seed;
  fo.hflip = true;
  fo.checkpoint = checkpoint;
  fo.resume = checkpoint != NULL;
  fo.on_epoch = print_epoch;
  kiln_fit_epoch last;
  const double t0 = now_seconds();
  if (kiln_fit_classifier(net, logits, &train, &test, &fo, &last, &err) != KILN_OK) {
    fprintf(stderr, "%s\n", err.msg);
    return 1;
  }
  printf("{\"net\": \"%s\", \"epochs\": %d, \"batch\": %d, \"threads\": %d, \"seed\": %llu, "
         "\"test_accuracy\": %.4f, \"seconds\": %.1f, \"images_per_second\": %.1f}\n",
         kind, (int)epochs, (int)batch, (int)threads, (unsigned long long)seed,
         last.test_accuracy, now_seconds() - t0, last.images_per_second);
  int rc = export_dir ? export_net(net, logits, &test, export_dir) : 0;
  kiln_net_free(net);
  return rc;
}
