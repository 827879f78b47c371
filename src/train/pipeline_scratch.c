/*
 * Classification from scratch (kiln/trainer.h): a small CNN trained by the
 * engine on the images held in memory as 8-bit pixels at one input size.
 *
 * Net (bench/train/fmnist.c's "tutorial" net, which reaches 92% on
 * Fashion-MNIST): conv32 3x3 ReLU, max pool 2, conv64 3x3 ReLU, max pool 2,
 * and for inputs of 48 pixels or more a third block conv128 3x3 ReLU, max
 * pool 2; flatten, dropout (the preset's, when > 0), dense128 ReLU, dense
 * to the classes (VALID convolutions). Inputs are (pixel - 127.5) / 127.5,
 * kiln's default for float image inputs.
 */
#include <jansson.h>
#include <string.h>

#include "train/pipeline_int.h"

/* Input size when the images do not share one small size. */
#define SCRATCH_DEFAULT_SIDE 64
#define SCRATCH_MIN_SIDE 16
#define SCRATCH_MAX_SIDE 128

typedef struct load_ctx {
  const struct kiln_dataset *ds;
  const int32_t *images;
  int32_t h, w, c;
  uint8_t *out;
  const kiln_train_options *opt;
  int32_t total;
  double start;
} load_ctx;

static kiln_status load_item(void *ctx, int32_t item, int32_t thread, kiln_error *err) {
  (void)thread;
  const load_ctx *l = ctx;
  kiln_image img;
  kiln_status s = pl_load_image(l->ds, l->images[item], &img, err);
  if (s != KILN_OK) return s;
  s = pl_image_pixels(&img, l->h, l->w, l->c, l->out + (size_t)item * l->h * l->w * l->c, err);
  kiln_image_free(&img);
  if (s != KILN_OK) kiln_error_prefix(err, "%s", pl_image_source(l->ds, l->images[item]));
  return s;
}

static void load_done(void *ctx, int32_t done) {
  const load_ctx *l = ctx;
  kiln_train_progress p = pl_progress(KILN_EVENT_ITEM, KILN_PHASE_PREPARE);
  p.done = done;
  p.total = l->total;
  p.elapsed_seconds = pl_now() - l->start;
  p.images_per_second = p.elapsed_seconds > 0 ? done / p.elapsed_seconds : -1.0;
  p.eta_seconds = p.images_per_second > 0 ? (l->total - done) / p.images_per_second : -1.0;
  pl_report(l->opt->on_progress, l->opt->ctx, &p);
}

/* The input size and channels for the images. */
static void choose_input(const pl_run *run, int32_t *h, int32_t *w, int32_t *c) {
  int32_t w0 = -1, h0 = -1;
  bool same = true, grey = true;
  const int32_t *lists[2] = {run->train, run->val};
  const int32_t counts[2] = {run->n_train, run->n_val};
  for (int k = 0; k < 2; k++)
    for (int32_t i = 0; i < counts[k]; i++) {
      int32_t iw, ih;
      bool g;
      pl_image_geometry(run->ds, lists[k][i], &iw, &ih, &g);
      grey &= g;
      if (w0 < 0) {
        w0 = iw;
        h0 = ih;
      }
      same &= iw == w0 && ih == h0;
    }
  const bool fits = same && w0 >= SCRATCH_MIN_SIDE && h0 >= SCRATCH_MIN_SIDE &&
                    w0 <= SCRATCH_MAX_SIDE && h0 <= SCRATCH_MAX_SIDE;
  *w = fits ? w0 : SCRATCH_DEFAULT_SIDE;
  *h = fits ? h0 : SCRATCH_DEFAULT_SIDE;
  *c = grey ? 1 : 3;
}

static int32_t build_net(kiln_net *net, int32_t h, int32_t w, int32_t classes, float dropout) {
  kiln_conv_spec spec = {.filters = 32, .kernel_h = 3, .kernel_w = 3, .bias = true,
                         .padding = KILN_PAD_VALID};
  const int32_t blocks = (h < w ? h : w) >= 48 ? 3 : 2;
  int32_t x = 0;
  for (int32_t b = 0; b < blocks; b++) {
    spec.filters = 32 << b;
    x = kiln_net_conv(net, x, &spec);
    x = kiln_net_activation(net, x, KILN_LAYER_RELU);
    x = kiln_net_pool(net, x, KILN_LAYER_MAXPOOL, 2, 2, 2, 2, KILN_PAD_VALID);
  }
  x = kiln_net_flatten(net, x);
  if (dropout > 0.0f) x = kiln_net_dropout(net, x, dropout);
  x = kiln_net_dense(net, x, 128, true);
  x = kiln_net_activation(net, x, KILN_LAYER_RELU);
  return kiln_net_dense(net, x, classes, true);
}

kiln_status pl_scratch_train(pl_run *run, const pl_fit_config *fit_in, pl_fit_outcome *outcome,
                             kiln_model **model, kiln_image_norm *norm, kiln_error *err) {
  *model = NULL;
  memset(outcome, 0, sizeof *outcome);
  const kiln_train_options *opt = run->opt;
  int32_t h, w, c;
  choose_input(run, &h, &w, &c);
  const int32_t n = run->n_train + run->n_val;
  const size_t size = (size_t)h * w * c;
  uint8_t *pixels = kiln_malloc((size_t)n * size);
  int32_t *labels = kiln_malloc((size_t)n * sizeof *labels);
  int32_t *items = kiln_malloc((size_t)n * sizeof *items);
  kiln_net *net = NULL;
  kiln_status s = KILN_OK;
  if (!pixels || !labels || !items) {
    s = kiln_fail(err, KILN_ERR_NOMEM, "%d images of %dx%dx%d", (int)n, (int)w, (int)h, (int)c);
    goto done;
  }
  memcpy(items, run->train, (size_t)run->n_train * sizeof *items);
  if (run->n_val) memcpy(items + run->n_train, run->val, (size_t)run->n_val * sizeof *items);
  for (int32_t i = 0; i < n; i++) labels[i] = pl_image_label(run->ds, items[i]);
  json_t *net_json = json_pack("{s:s, s:[i, i, i]}", "net", "conv32-pool-conv64-pool(-conv128-pool)-dense128",
                               "input", (int)h, (int)w, (int)c);
  json_object_set_new(run->config, "scratch", net_json);
  kiln_train_progress p = pl_progress(KILN_EVENT_PHASE, KILN_PHASE_PREPARE);
  p.message = "loading images";
  p.total = n;
  pl_report(opt->on_progress, opt->ctx, &p);
  load_ctx lc = {run->ds, items, h, w, c, pixels, opt, n, pl_now()};
  bool stopped = false;
  s = pl_parallel(run->threads, n, load_item, &lc, load_done, opt->stop, &stopped, err);
  run->prepare_seconds = pl_now() - lc.start;
  if (s != KILN_OK) goto done;
  if (stopped) {
    outcome->interrupted = true;
    goto done;
  }
  *norm = kiln_image_norm_default();
  pl_samples train = {run->n_train, labels, h, w, c, pixels, *norm, NULL, 0};
  pl_samples val = {run->n_val, labels + run->n_train, h, w, c, pixels + (size_t)run->n_train * size,
                    *norm, NULL, 0};
  if ((s = kiln_net_create(h, w, c, &net, err)) != KILN_OK) goto done;
  const int32_t logits = build_net(net, h, w, run->n_classes, run->set.dropout);
  if ((s = kiln_net_finalize(net, run->set.batch, run->threads, opt->seed, err)) != KILN_OK) goto done;
  pl_fit_config fit = *fit_in;
  fit.hflip = run->set.hflip;
  p = pl_progress(KILN_EVENT_PHASE, KILN_PHASE_TRAIN);
  p.message = "training from scratch";
  pl_report(opt->on_progress, opt->ctx, &p);
  if ((s = pl_fit(net, logits, &train, run->n_val ? &val : NULL, &fit, outcome, err)) != KILN_OK ||
      outcome->interrupted)
    goto done;
  kiln_export_options eo = {.softmax = true};
  if ((s = kiln_net_export(net, &eo, model, err)) == KILN_OK)
    (*model)->description = "kiln: classifier trained from scratch";
done:
  kiln_net_free(net);
  kiln_free(pixels);
  kiln_free(labels);
  kiln_free(items);
  return s;
}
