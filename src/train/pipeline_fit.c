/*
 * The pipeline's training loop (pl_fit, train/pipeline_int.h): epochs of
 * shuffled mini-batches with a progress report per step, a checkpoint per
 * epoch, and a checkpoint on request (the stop flag) from inside an epoch.
 *
 * Exact resume: everything random comes from the run's kiln_rng in a fixed
 * order (at an epoch's start its permutation, then one flip draw per sample
 * as its batch is built). The checkpoint stores the net and optimizer
 * (kiln_checkpoint_save), the RNG and, in the caller's block, the epoch's
 * permutation, the position in it and the epoch's running sums, so a run
 * resumed anywhere continues with exactly the draws, batches and updates
 * of the uninterrupted run. The block also holds the run's key (data and
 * settings) and the history of finished epochs.
 */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "train/pipeline_int.h"

#define EXTRA_MAGIC "KILNPIPE"
#define EXTRA_VERSION 1u

/* The caller's block of the checkpoint, followed by order[count] (int32)
 * and history[n_history] (pl_epoch_record). */
typedef struct extra_head {
  char magic[8];
  uint32_t version, reserved;
  uint64_t key;
  int64_t count;     /* training samples */
  int64_t position;  /* next index into the epoch's order; 0: the epoch has not started */
  int64_t n_history; /* finished epochs */
  int64_t batches, correct; /* of the current epoch so far */
  double loss_sum;
  double epoch_seconds; /* of the current epoch so far */
  double train_seconds; /* of every session */
} extra_head;

static int32_t argmax(const float *v, int32_t n) {
  int32_t best = 0;
  for (int32_t i = 1; i < n; i++)
    if (v[i] > v[best]) best = i;
  return best;
}

/* Writes sample `index` into dst (the net's input layout). */
static void fill_sample(const pl_samples *s, int64_t index, bool flip, float *dst) {
  const size_t size = (size_t)s->h * s->w * s->c;
  if (s->features) {
    const int32_t v = flip && s->variants > 1 ? 1 : 0;
    memcpy(dst, s->features + ((size_t)index * s->variants + v) * size, size * sizeof(float));
    return;
  }
  const uint8_t *src = s->pixels + (size_t)index * size;
  for (int32_t y = 0; y < s->h; y++)
    for (int32_t x = 0; x < s->w; x++) {
      const uint8_t *p = src + ((size_t)y * s->w + (flip ? s->w - 1 - x : x)) * s->c;
      float *q = dst + ((size_t)y * s->w + x) * s->c;
      for (int32_t k = 0; k < s->c; k++) q[k] = pl_normalize(p[k], s->norm.mean[k], s->norm.std[k]);
    }
}

double pl_accuracy(kiln_net *net, int32_t logits, const pl_samples *s) {
  const kiln_layer_info out = kiln_net_layer(net, logits);
  const size_t size = (size_t)s->h * s->w * s->c;
  const int32_t max_batch = kiln_net_max_batch(net);
  int64_t correct = 0;
  for (int64_t start = 0; start < s->count; start += max_batch) {
    const int32_t n = (int32_t)(s->count - start < max_batch ? s->count - start : max_batch);
    for (int32_t i = 0; i < n; i++) fill_sample(s, start + i, false, kiln_net_act(net, 0) + i * size);
    kiln_net_forward(net, n, false);
    const float *y = kiln_net_act(net, logits);
    for (int32_t i = 0; i < n; i++)
      correct += argmax(y + (size_t)i * out.c, out.c) == s->labels[start + i];
  }
  return s->count ? (double)correct / (double)s->count : -1.0;
}

void pl_fit_outcome_free(pl_fit_outcome *o) {
  kiln_free(o->history);
  memset(o, 0, sizeof *o);
}

/* The whole state of a run between steps. */
typedef struct fit_run {
  kiln_run_state state;
  extra_head head;
  int32_t *order;
  pl_epoch_record *history;
} fit_run;

static kiln_status save(const kiln_net *net, fit_run *r, const char *path, kiln_error *err) {
  const size_t order_bytes = (size_t)r->head.count * sizeof(int32_t);
  const size_t hist_bytes = (size_t)r->head.n_history * sizeof(pl_epoch_record);
  const size_t bytes = sizeof r->head + order_bytes + hist_bytes;
  unsigned char *block = kiln_malloc(bytes);
  if (!block) return kiln_fail(err, KILN_ERR_NOMEM, "%s: %zu bytes", path, bytes);
  memcpy(block, &r->head, sizeof r->head);
  memcpy(block + sizeof r->head, r->order, order_bytes);
  if (hist_bytes) memcpy(block + sizeof r->head + order_bytes, r->history, hist_bytes);
  kiln_status s = kiln_checkpoint_save(net, &r->state, block, bytes, path, err);
  kiln_free(block);
  return s;
}

/* Restores r from the checkpoint at path, checking it belongs to this run. */
static kiln_status load(kiln_net *net, fit_run *r, int32_t epochs, const char *path,
                        kiln_error *err) {
  void *block = NULL;
  size_t bytes = 0;
  kiln_run_state st;
  kiln_status s = kiln_checkpoint_load(net, &st, &block, &bytes, path, err);
  if (s != KILN_OK) {
    if (s == KILN_ERR_FORMAT)
      kiln_error_prefix(err, "cannot resume (remove the checkpoints folder to start over)");
    return s;
  }
  extra_head h;
  const char *why = NULL;
  if (bytes < sizeof h) {
    why = "it holds no pipeline state";
  } else {
    memcpy(&h, block, sizeof h);
    const size_t want = sizeof h + (size_t)h.count * sizeof(int32_t) +
                        (size_t)h.n_history * sizeof(pl_epoch_record);
    if (memcmp(h.magic, EXTRA_MAGIC, 8) != 0 || h.version != EXTRA_VERSION) why = "it holds no pipeline state";
    else if (h.key != r->head.key || h.count != r->head.count)
      why = "it was saved by a run with other data or settings";
    else if (h.n_history < 0 || h.n_history > epochs || h.position < 0 || h.position > h.count ||
             bytes != want)
      why = "its pipeline state is inconsistent";
  }
  if (why) {
    kiln_free(block);
    return kiln_fail(err, KILN_ERR_INVALID_ARG,
                     "%s: cannot resume: %s (remove the checkpoints folder or choose another --out)",
                     path, why);
  }
  r->head = h;
  r->state = st;
  memcpy(r->order, (unsigned char *)block + sizeof h, (size_t)h.count * sizeof(int32_t));
  if (h.n_history)
    memcpy(r->history, (unsigned char *)block + sizeof h + (size_t)h.count * sizeof(int32_t),
           (size_t)h.n_history * sizeof(pl_epoch_record));
  kiln_free(block);
  return KILN_OK;
}

static void shuffle(fit_run *r) {
  const int64_t n = r->head.count;
  for (int64_t i = 0; i < n; i++) r->order[i] = (int32_t)i;
  for (int64_t i = n - 1; i > 0; i--) {
    const int64_t j = (int64_t)kiln_rng_below(&r->state.rng, (uint32_t)(i + 1));
    const int32_t t = r->order[i];
    r->order[i] = r->order[j];
    r->order[j] = t;
  }
}

static void report_checkpoint(const pl_fit_config *cfg) {
  kiln_train_progress p = pl_progress(KILN_EVENT_CHECKPOINT, KILN_PHASE_TRAIN);
  p.message = cfg->checkpoint;
  pl_report(cfg->on_progress, cfg->ctx, &p);
}

static kiln_status check_args(kiln_net *net, int32_t logits, const pl_samples *train,
                              const pl_fit_config *cfg, kiln_error *err) {
  const kiln_layer_info in = kiln_net_layer(net, 0), out = kiln_net_layer(net, logits);
  if (in.h != train->h || in.w != train->w || in.c != train->c)
    return kiln_fail(err, KILN_ERR_INVALID_ARG, "fit: samples [%d, %d, %d] for a net input [%d, %d, %d]",
                     (int)train->h, (int)train->w, (int)train->c, (int)in.h, (int)in.w, (int)in.c);
  if (out.h != 1 || out.w != 1 || out.c < 2)
    return kiln_fail(err, KILN_ERR_INVALID_ARG, "fit: logits layer %d is not [1, 1, classes]",
                     (int)logits);
  if (cfg->batch < 1 || cfg->batch > kiln_net_max_batch(net) || cfg->epochs < 1)
    return kiln_fail(err, KILN_ERR_INVALID_ARG, "fit: batch %d (net max %d), %d epochs",
                     (int)cfg->batch, (int)kiln_net_max_batch(net), (int)cfg->epochs);
  if (train->count < 1 || train->count > INT32_MAX)
    return kiln_fail(err, KILN_ERR_INVALID_ARG, "fit: %lld training samples",
                     (long long)train->count);
  for (int64_t i = 0; i < train->count; i++)
    if (train->labels[i] < 0 || train->labels[i] >= out.c)
      return kiln_fail(err, KILN_ERR_INVALID_ARG, "fit: sample %lld: label %d not in [0, %d)",
                       (long long)i, (int)train->labels[i], (int)out.c);
  return KILN_OK;
}

/* One step on the samples order[position .. position + n). */
static double step(kiln_net *net, int32_t logits, const pl_samples *train,
                   const pl_fit_config *cfg, fit_run *r, int32_t n, int32_t *labels,
                   int64_t *correct) {
  const kiln_layer_info out = kiln_net_layer(net, logits);
  const size_t size = (size_t)train->h * train->w * train->c;
  for (int32_t i = 0; i < n; i++) {
    const int32_t index = r->order[r->head.position + i];
    const bool flip = cfg->hflip && (kiln_rng_next(&r->state.rng) >> 63);
    fill_sample(train, index, flip, kiln_net_act(net, 0) + i * size);
    labels[i] = train->labels[index];
  }
  kiln_net_forward(net, n, true);
  const float *y = kiln_net_act(net, logits);
  for (int32_t i = 0; i < n; i++) *correct += argmax(y + (size_t)i * out.c, out.c) == labels[i];
  const double loss = kiln_loss_softmax_xent(y, labels, NULL, n, out.c, cfg->label_smoothing,
                                             1.0f / (float)n, kiln_net_grad(net, logits));
  kiln_net_backward(net, n);
  kiln_net_update(net, &r->state.optim, NULL);
  return loss;
}

kiln_status pl_fit(kiln_net *net, int32_t logits, const pl_samples *train, const pl_samples *val,
                   const pl_fit_config *cfg, pl_fit_outcome *outcome, kiln_error *err) {
  memset(outcome, 0, sizeof *outcome);
  kiln_status s = check_args(net, logits, train, cfg, err);
  if (s != KILN_OK) return s;
  const int64_t count = train->count, steps_per_epoch = (count + cfg->batch - 1) / cfg->batch;
  fit_run r;
  memset(&r, 0, sizeof r);
  r.state.optim = cfg->optim;
  if (r.state.optim.schedule.total_steps == 0)
    r.state.optim.schedule.total_steps = steps_per_epoch * cfg->epochs;
  kiln_rng_seed(&r.state.rng, cfg->seed);
  memcpy(r.head.magic, EXTRA_MAGIC, 8);
  r.head.version = EXTRA_VERSION;
  r.head.key = cfg->key;
  r.head.count = count;
  r.order = kiln_malloc((size_t)count * sizeof *r.order);
  r.history = kiln_calloc((size_t)cfg->epochs, sizeof *r.history);
  int32_t *labels = kiln_malloc((size_t)cfg->batch * sizeof *labels);
  if (!r.order || !r.history || !labels) {
    s = kiln_fail(err, KILN_ERR_NOMEM, "fit: %lld samples", (long long)count);
    goto done;
  }
  struct stat st;
  if (cfg->checkpoint && stat(cfg->checkpoint, &st) == 0) {
    if ((s = load(net, &r, cfg->epochs, cfg->checkpoint, err)) != KILN_OK) goto done;
    outcome->resumed = true;
  }
  const double session_start = pl_now();
  const double seconds_before = r.head.train_seconds;
  const int64_t samples_before = r.state.epoch * count + r.head.position;
  while (r.state.epoch < cfg->epochs) {
    if (r.head.position == 0) {
      /* Stop here, before the epoch's draws, or only after its first step:
       * a checkpoint at position 0 means the permutation is yet to draw. */
      if (cfg->stop && *cfg->stop) {
        r.head.train_seconds = seconds_before + pl_now() - session_start;
        if (cfg->checkpoint && (s = save(net, &r, cfg->checkpoint, err)) == KILN_OK)
          report_checkpoint(cfg);
        outcome->interrupted = true;
        goto finish;
      }
      shuffle(&r);
      r.head.batches = r.head.correct = 0;
      r.head.loss_sum = 0.0;
      r.head.epoch_seconds = 0.0;
    }
    const double seg_start = pl_now();
    const int64_t seg_first = r.head.position;
    while (r.head.position < count) {
      if (r.head.position > 0 && cfg->stop && *cfg->stop) {
        r.head.epoch_seconds += pl_now() - seg_start;
        r.head.train_seconds = seconds_before + pl_now() - session_start;
        if (cfg->checkpoint && (s = save(net, &r, cfg->checkpoint, err)) == KILN_OK)
          report_checkpoint(cfg);
        outcome->interrupted = true;
        goto finish;
      }
      const int32_t n = (int32_t)(count - r.head.position < cfg->batch ? count - r.head.position
                                                                        : cfg->batch);
      r.head.loss_sum += step(net, logits, train, cfg, &r, n, labels, &r.head.correct);
      r.head.batches++;
      r.head.position += n;
      kiln_train_progress p = pl_progress(KILN_EVENT_STEP, KILN_PHASE_TRAIN);
      const double now = pl_now(), elapsed = now - seg_start;
      const int64_t run_done = r.state.epoch * count + r.head.position;
      p.epoch = r.state.epoch + 1;
      p.epochs = cfg->epochs;
      p.step = r.head.batches;
      p.steps = steps_per_epoch;
      p.done = r.state.epoch * steps_per_epoch + r.head.batches;
      p.total = steps_per_epoch * cfg->epochs;
      p.loss = r.head.loss_sum / (double)r.head.batches;
      p.accuracy = (double)r.head.correct / (double)r.head.position;
      p.images_per_second = elapsed > 0 ? (double)(r.head.position - seg_first) / elapsed : -1.0;
      p.elapsed_seconds = r.head.epoch_seconds + elapsed;
      const double session_rate = (double)(run_done - samples_before) / (now - session_start);
      p.eta_seconds = session_rate > 0
                          ? (double)(count * cfg->epochs - run_done) / session_rate : -1.0;
      p.lr = kiln_schedule_lr(&r.state.optim.schedule, kiln_net_step(net) - 1);
      pl_report(cfg->on_progress, cfg->ctx, &p);
    }
    pl_epoch_record *e = &r.history[r.head.n_history++];
    r.head.epoch_seconds += pl_now() - seg_start;
    e->train_loss = r.head.loss_sum / (double)r.head.batches;
    e->train_accuracy = (double)r.head.correct / (double)count;
    e->seconds = r.head.epoch_seconds;
    e->images_per_second = e->seconds > 0 ? (double)count / e->seconds : -1.0;
    e->lr = kiln_schedule_lr(&r.state.optim.schedule, kiln_net_step(net) - 1);
    e->val_accuracy = val && val->count ? pl_accuracy(net, logits, val) : -1.0;
    r.state.epoch++;
    r.head.position = 0;
    r.head.train_seconds = seconds_before + pl_now() - session_start;
    if (cfg->checkpoint) {
      if ((s = save(net, &r, cfg->checkpoint, err)) != KILN_OK) goto done;
      report_checkpoint(cfg);
    }
    kiln_train_progress p = pl_progress(KILN_EVENT_EPOCH, KILN_PHASE_TRAIN);
    p.epoch = r.state.epoch;
    p.epochs = cfg->epochs;
    p.step = p.steps = steps_per_epoch;
    p.done = r.state.epoch * steps_per_epoch;
    p.total = steps_per_epoch * cfg->epochs;
    p.loss = e->train_loss;
    p.accuracy = e->train_accuracy;
    p.val_accuracy = e->val_accuracy;
    p.images_per_second = e->images_per_second;
    p.elapsed_seconds = e->seconds;
    const double rate = (double)(r.state.epoch * count - samples_before) / (pl_now() - session_start);
    p.eta_seconds = rate > 0 ? (double)(cfg->epochs - r.state.epoch) * (double)count / rate : -1.0;
    p.lr = (float)e->lr;
    pl_report(cfg->on_progress, cfg->ctx, &p);
  }
finish:
  outcome->epochs_done = r.head.n_history;
  outcome->train_seconds = r.head.train_seconds;
  outcome->history = r.history;
  r.history = NULL;
done:
  kiln_free(r.order);
  kiln_free(r.history);
  kiln_free(labels);
  return s;
}
