/*
 * The classification training loop (kiln_fit_classifier, kiln/train.h):
 * epochs of shuffled mini-batches, evaluation and a checkpoint per epoch.
 *
 * Everything random comes from the run's kiln_rng in a fixed order (the
 * epoch's permutation, then one flip draw per image as its batch is built),
 * and the RNG is saved in the checkpoint after each epoch, so a resumed run
 * draws exactly what the uninterrupted run would have.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "train/net_int.h"

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Writes image `index` of data into dst (pixel * scale + offset), mirrored
 * left-right when flip. */
static void load_image(const kiln_class_data *data, int64_t index, int32_t h, int32_t w, int32_t c,
                       bool flip, float *dst) {
  const size_t size = (size_t)h * w * c;
  const uint8_t *src = data->pixels + (size_t)index * size;
  for (int32_t y = 0; y < h; y++)
    for (int32_t x = 0; x < w; x++) {
      const uint8_t *p = src + ((size_t)y * w + (flip ? w - 1 - x : x)) * c;
      float *q = dst + ((size_t)y * w + x) * c;
      for (int32_t k = 0; k < c; k++) q[k] = (float)p[k] * data->scale + data->offset;
    }
}

static int32_t argmax(const float *v, int32_t n) {
  int32_t best = 0;
  for (int32_t i = 1; i < n; i++)
    if (v[i] > v[best]) best = i;
  return best;
}

double kiln_evaluate_classifier(kiln_net *net, int32_t logits_layer, const kiln_class_data *data) {
  const train_layer *in = &net->layers[0], *out = &net->layers[logits_layer];
  const size_t size = (size_t)train_size(in);
  int64_t correct = 0;
  for (int64_t start = 0; start < data->count; start += net->max_batch) {
    const int32_t n =
        (int32_t)(data->count - start < net->max_batch ? data->count - start : net->max_batch);
    for (int32_t i = 0; i < n; i++)
      load_image(data, start + i, in->h, in->w, in->c, false, train_act(net, in) + i * size);
    kiln_net_forward(net, n, false);
    for (int32_t i = 0; i < n; i++)
      correct += argmax(train_act(net, out) + (size_t)i * out->c, out->c) == data->labels[start + i];
  }
  return data->count ? (double)correct / (double)data->count : 0.0;
}

static kiln_status check_data(const train_layer *out, const kiln_class_data *d, const char *what,
                              kiln_error *err) {
  if (!d->pixels || !d->labels || d->count < 1)
    return kiln_fail(err, KILN_ERR_INVALID_ARG, "fit: %s set is empty", what);
  for (int64_t i = 0; i < d->count; i++)
    if (d->labels[i] < 0 || d->labels[i] >= out->c)
      return kiln_fail(err, KILN_ERR_INVALID_ARG,
                       "fit: %s image %lld: label %d is not in [0, %d)", what, (long long)i,
                       (int)d->labels[i], (int)out->c);
  return KILN_OK;
}

kiln_status kiln_fit_classifier(kiln_net *net, int32_t logits_layer, const kiln_class_data *train,
                                const kiln_class_data *test, const kiln_fit_options *options,
                                kiln_fit_epoch *last, kiln_error *err) {
  if (!net->finalized) return kiln_fail(err, KILN_ERR_INVALID_ARG, "fit: net not finalized");
  if (logits_layer < 1 || logits_layer >= net->n_layers)
    return kiln_fail(err, KILN_ERR_INVALID_ARG, "fit: logits layer %d out of range",
                     (int)logits_layer);
  const train_layer *in = &net->layers[0], *out = &net->layers[logits_layer];
  if (out->h != 1 || out->w != 1 || out->c < 2)
    return kiln_fail(err, KILN_ERR_INVALID_ARG,
                     "fit: logits layer %d is [%d, %d, %d], not [1, 1, classes]",
                     (int)logits_layer, (int)out->h, (int)out->w, (int)out->c);
  const int32_t batch = options->batch;
  if (batch < 1 || batch > net->max_batch || options->epochs < 1)
    return kiln_fail(err, KILN_ERR_INVALID_ARG,
                     "fit: batch %d (net max %d) and %d epochs: need 1 <= batch <= max, epochs >= 1",
                     (int)batch, (int)net->max_batch, (int)options->epochs);
  kiln_status s = check_data(out, train, "training", err);
  if (s == KILN_OK && test) s = check_data(out, test, "test", err);
  if (s != KILN_OK) return s;

  const int64_t steps_per_epoch = (train->count + batch - 1) / batch;
  kiln_run_state run;
  memset(&run, 0, sizeof run);
  run.optim = options->optim;
  if (run.optim.schedule.total_steps == 0)
    run.optim.schedule.total_steps = steps_per_epoch * options->epochs;
  kiln_rng_seed(&run.rng, options->seed);
  if (options->checkpoint && options->resume) {
    FILE *probe = fopen(options->checkpoint, "rb");
    if (probe) {
      fclose(probe);
      s = kiln_checkpoint_load(net, &run, NULL, NULL, options->checkpoint, err);
      if (s != KILN_OK) return s;
    }
  }
  int64_t *order = kiln_malloc((size_t)train->count * sizeof *order);
  int32_t *labels = kiln_malloc((size_t)batch * sizeof *labels);
  if (!order || !labels) {
    kiln_free(order);
    kiln_free(labels);
    return kiln_fail(err, KILN_ERR_NOMEM, "fit: %lld images", (long long)train->count);
  }
  const size_t size = (size_t)train_size(in);
  kiln_fit_epoch e;
  memset(&e, 0, sizeof e);
  e.epochs = options->epochs;
  for (; run.epoch < options->epochs && s == KILN_OK; run.epoch++) {
    for (int64_t i = 0; i < train->count; i++) order[i] = i;
    for (int64_t i = train->count - 1; i > 0; i--) {
      const int64_t j = (int64_t)kiln_rng_below(&run.rng, (uint32_t)(i + 1));
      const int64_t t = order[i];
      order[i] = order[j];
      order[j] = t;
    }
    double loss_sum = 0.0, t0 = now_seconds();
    int64_t correct = 0;
    kiln_update_stats st = {0};
    for (int64_t start = 0; start < train->count; start += batch) {
      const int32_t n = (int32_t)(train->count - start < batch ? train->count - start : batch);
      for (int32_t i = 0; i < n; i++) {
        const bool flip = options->hflip && (kiln_rng_next(&run.rng) >> 63);
        load_image(train, order[start + i], in->h, in->w, in->c, flip,
                   train_act(net, in) + i * size);
        labels[i] = train->labels[order[start + i]];
      }
      kiln_net_forward(net, n, true);
      const float *logits = train_act(net, out);
      for (int32_t i = 0; i < n; i++) correct += argmax(logits + (size_t)i * out->c, out->c) == labels[i];
      loss_sum += kiln_loss_softmax_xent(logits, labels, NULL, n, out->c, options->label_smoothing,
                                         1.0f / (float)n, train_dact(net, out));
      kiln_net_backward(net, n);
      kiln_net_update(net, &run.optim, &st);
    }
    e.epoch = run.epoch;
    e.seconds = now_seconds() - t0;
    e.images_per_second = e.seconds > 0 ? (double)train->count / e.seconds : 0.0;
    e.train_loss = loss_sum / (double)steps_per_epoch;
    e.train_accuracy = (double)correct / (double)train->count;
    e.test_accuracy = test ? kiln_evaluate_classifier(net, logits_layer, test) : -1.0;
    e.lr = st.lr;
    if (options->checkpoint) {
      kiln_run_state saved = run;
      saved.epoch = run.epoch + 1;
      s = kiln_checkpoint_save(net, &saved, NULL, 0, options->checkpoint, err);
    }
    if (options->on_epoch) options->on_epoch(options->ctx, &e);
  }
  if (last) *last = e;
  kiln_free(order);
  kiln_free(labels);
  return s;
}
