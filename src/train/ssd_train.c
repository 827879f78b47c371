/*
 * SSD transfer learning (kiln_ssd_train, kiln/train.h): sets up the frozen
 * body and one predictor head (a kiln_net of two convs) per feature map,
 * runs epochs of mini-batches (samples from train/ssd_sample.c, the loss
 * from train/ssd_loss.c), checkpoints, and writes the heads back into the
 * graph (train/ssd_graph.c).
 *
 * A batch's predictions are gathered from the heads into anchor order:
 * head k's box output for one image, [h, w, A * 4], is already the [h * w
 * * A][4] block of its anchors (see train/ssd_int.h), so gathering and
 * scattering the gradients back are copies.
 */
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kiln/data.h"
#include "train/ssd_int.h"

/* A 1% prior for the new classes' sigmoid: bias log(0.01 / 0.99). */
#define CLASS_PRIOR_BIAS (-4.59511985f)

kiln_ssd_train_options kiln_ssd_train_options_default(void) {
  kiln_ssd_train_options o;
  memset(&o, 0, sizeof o);
  o.epochs = 40;
  o.batch = 16;
  o.optim = kiln_optim_default(KILN_OPTIM_ADAM, 3e-3f);
  o.optim.schedule.final_lr = 1e-5f;
  o.optim.weight_decay = 1e-4f;
  o.match_iou = 0.5f;
  o.neg_pos_ratio = 3.0f;
  o.min_negatives = 3;
  o.box_weight = 1.0f;
  o.hflip = true;
  o.crop_probability = 0.5f;
  o.color_jitter = 0.2f;
  return o;
}

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static kiln_status check_options(const kiln_ssd_train_options *o, kiln_error *err) {
  const char *bad = o->epochs < 1                                           ? "epochs"
                    : o->batch < 1                                          ? "batch"
                    : !(o->match_iou > 0.0f && o->match_iou <= 1.0f)        ? "match_iou"
                    : !(o->neg_pos_ratio >= 0.0f)                           ? "neg_pos_ratio"
                    : o->min_negatives < 0                                  ? "min_negatives"
                    : !(o->box_weight >= 0.0f)                              ? "box_weight"
                    : !(o->crop_probability >= 0.0f && o->crop_probability <= 1.0f)
                        ? "crop_probability"
                    : !(o->color_jitter >= 0.0f && o->color_jitter < 1.0f) ? "color_jitter"
                    : o->threads < 0                                        ? "threads"
                                                                            : NULL;
  if (!bad) return KILN_OK;
  return kiln_fail(err, KILN_ERR_INVALID_ARG,
                   "ssd train: option %s out of range (epochs %d, batch %d, match_iou %g, "
                   "neg_pos_ratio %g, min_negatives %d, box_weight %g, crop_probability %g, "
                   "color_jitter %g, threads %d)",
                   bad, (int)o->epochs, (int)o->batch, (double)o->match_iou,
                   (double)o->neg_pos_ratio, (int)o->min_negatives, (double)o->box_weight,
                   (double)o->crop_probability, (double)o->color_jitter, (int)o->threads);
}

/* The TRAIN images, labels checked; box_capacity from the largest. */
static kiln_status pick_images(ssd_trainer *t, kiln_error *err) {
  const kiln_dataset *ds = t->ds;
  if (ds->task != KILN_TASK_DETECT || ds->n_labels < 1)
    return kiln_fail(err, KILN_ERR_INVALID_ARG,
                     "ssd train: a detection dataset with labels is needed (task %d, %d labels)",
                     (int)ds->task, (int)ds->n_labels);
  t->train = kiln_malloc(((size_t)ds->n_images + 1) * sizeof *t->train);
  if (!t->train) return kiln_fail(err, KILN_ERR_NOMEM, "ssd train: out of memory");
  t->box_capacity = 1;
  for (int32_t i = 0; i < ds->n_images; i++) {
    const kiln_data_image *im = &ds->images[i];
    if (im->split != KILN_SPLIT_TRAIN) continue;
    for (int32_t b = 0; b < im->n_boxes; b++)
      if (im->boxes[b].label < 0 || im->boxes[b].label >= ds->n_labels)
        return kiln_fail(err, KILN_ERR_INVALID_ARG, "ssd train: %s: box %d has label %d of %d",
                         im->source ? im->source : im->hash, (int)b, (int)im->boxes[b].label,
                         (int)ds->n_labels);
    if (im->n_boxes > t->box_capacity) t->box_capacity = im->n_boxes;
    t->train[t->n_train++] = i;
  }
  if (t->n_train == 0)
    return kiln_fail(err, KILN_ERR_INVALID_ARG,
                     "ssd train: the dataset has no TRAIN images (%d images; split it first)",
                     (int)ds->n_images);
  return KILN_OK;
}

/* Head k: [h, w, c] -> box conv (layer 1), class conv (layer 2), with the
 * pretrained box predictor and background column. */
static kiln_status make_head(ssd_trainer *t, int32_t k, kiln_error *err) {
  const ssd_head *h = &t->layout.heads[k];
  const kiln_model *m = t->full;
  kiln_net *net;
  kiln_status s = kiln_net_create(h->h, h->w, h->c, &net, err);
  if (s != KILN_OK) return s;
  t->heads[k] = net;
  const int32_t a = h->anchors_per_cell, cols = t->n_columns, base_cols = t->layout.n_columns;
  kiln_conv_spec spec = {.filters = a * 4, .kernel_h = h->kernel_h, .kernel_w = h->kernel_w,
                         .padding = h->padding, .bias = true};
  kiln_net_conv(net, 0, &spec);
  spec.filters = a * cols;
  kiln_net_conv(net, 0, &spec);
  s = kiln_net_finalize(net, t->opt.batch, t->opt.threads, ssd_seed(t->opt.seed, 1000, (uint64_t)k),
                        err);
  if (s != KILN_OK) return s;
  const size_t taps = (size_t)h->kernel_h * h->kernel_w * h->c;
  int64_t n;
  float *bw = kiln_net_param(net, 1, KILN_PARAM_WEIGHT, &n);
  memcpy(bw, m->tensors[m->ops[h->box_op].inputs[1]].data, (size_t)n * sizeof(float));
  float *bb = kiln_net_param(net, 1, KILN_PARAM_BIAS, &n);
  memcpy(bb, m->tensors[m->ops[h->box_op].inputs[2]].data, (size_t)n * sizeof(float));
  const float *pw = m->tensors[m->ops[h->class_op].inputs[1]].data;
  const float *pb = m->tensors[m->ops[h->class_op].inputs[2]].data;
  float *cw = kiln_net_param(net, 2, KILN_PARAM_WEIGHT, NULL);
  float *cb = kiln_net_param(net, 2, KILN_PARAM_BIAS, NULL);
  for (int32_t j = 0; j < a; j++)
    for (int32_t c = 0; c < cols; c++) {
      const size_t o = (size_t)j * cols + c;
      if (c == 0) {
        memcpy(cw + o * taps, pw + (size_t)j * base_cols * taps, taps * sizeof(float));
        cb[o] = pb[(size_t)j * base_cols];
      } else {
        memset(cw + o * taps, 0, taps * sizeof(float));
        cb[o] = CLASS_PRIOR_BIAS;
      }
    }
  return KILN_OK;
}

static kiln_status alloc_buffers(ssd_trainer *t, kiln_error *err) {
  const size_t n = (size_t)t->n_anchors, b = (size_t)t->opt.batch, c = (size_t)t->n_columns;
  const size_t box = (size_t)t->box_capacity * 4;
  t->anchors = kiln_malloc(n * 4 * sizeof(float));
  t->corners = kiln_malloc(n * 4 * sizeof(float));
  t->pixels = kiln_malloc((size_t)t->layout.input_h * t->layout.input_w * 3 * sizeof(float));
  t->box_xyxy = kiln_malloc(box * sizeof(float));
  t->gt = kiln_malloc(box * sizeof(float));
  t->ignore = kiln_malloc(box * sizeof(float));
  t->box_labels = kiln_malloc((size_t)t->box_capacity * sizeof(int32_t));
  t->gt_labels = kiln_malloc((size_t)t->box_capacity * sizeof(int32_t));
  t->logits = kiln_malloc(b * n * c * sizeof(float));
  t->grad_logits = kiln_malloc(b * n * c * sizeof(float));
  t->encodings = kiln_malloc(b * n * 4 * sizeof(float));
  t->grad_encodings = kiln_malloc(b * n * 4 * sizeof(float));
  t->box_targets = kiln_malloc(b * n * 4 * sizeof(float));
  t->match = kiln_malloc(b * n * sizeof(int32_t));
  t->columns = kiln_malloc(b * n * sizeof(int32_t));
  t->loss.targets = kiln_malloc(b * n * c * sizeof(float));
  t->loss.class_weights = kiln_malloc(b * n * c * sizeof(float));
  t->loss.box_weights = kiln_malloc(b * n * 4 * sizeof(float));
  t->loss.anchor_loss = kiln_malloc(n * sizeof(float));
  t->loss.ranked = kiln_malloc(n * sizeof(ssd_ranked));
  t->loss.selected = kiln_malloc(n);
  bool ok = t->anchors && t->corners && t->pixels && t->box_xyxy && t->gt && t->ignore &&
            t->box_labels && t->gt_labels && t->logits && t->grad_logits && t->encodings &&
            t->grad_encodings && t->box_targets && t->match && t->columns && t->loss.targets &&
            t->loss.class_weights && t->loss.box_weights && t->loss.anchor_loss &&
            t->loss.ranked && t->loss.selected;
  if (ok && !t->augment) {
    t->cache = kiln_malloc((size_t)t->n_train * (size_t)t->feature_floats * sizeof(uint16_t));
    t->cached = kiln_calloc((size_t)t->n_train, 1);
    ok = t->cache && t->cached;
  }
  if (!ok)
    return kiln_fail(err, KILN_ERR_NOMEM,
                     "ssd train: out of memory for %d anchors, batch %d, %d training images",
                     (int)n, (int)b, (int)t->n_train);
  return KILN_OK;
}

static void trainer_free(ssd_trainer *t) {
  for (int32_t k = 0; k < KILN_SSD_MAX_LAYERS; k++) kiln_net_free(t->heads[k]);
  kiln_interp_free(t->interp);
  kiln_model_free(t->body);
  kiln_model_free(t->full);
  void *bufs[] = {t->train,       t->anchors,        t->corners,
                  t->pixels,      t->box_xyxy,       t->gt,
                  t->ignore,      t->box_labels,     t->gt_labels,
                  t->logits,      t->grad_logits,    t->encodings,
                  t->grad_encodings, t->box_targets, t->match,
                  t->columns,     t->loss.targets,   t->loss.class_weights,
                  t->loss.box_weights, t->loss.anchor_loss, t->loss.ranked,
                  t->loss.selected, t->cache,        t->cached};
  for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) kiln_free(bufs[i]);
}

static kiln_status setup(ssd_trainer *t, const kiln_model *base, kiln_error *err) {
  kiln_status s = check_options(&t->opt, err);
  if (s == KILN_OK) s = pick_images(t, err);
  if (s == KILN_OK) s = ssd_model_copy(base, &t->full, err);
  if (s == KILN_OK) s = ssd_layout_find(t->full, &t->layout, err);
  if (s == KILN_OK) s = ssd_model_copy(base, &t->body, err);
  if (s == KILN_OK) s = ssd_make_body(t->body, &t->layout, err);
  if (s != KILN_OK) return s;
  const ssd_layout *l = &t->layout;
  t->n_anchors = l->n_anchors;
  t->n_columns = t->ds->n_labels + 1;
  t->augment = t->opt.hflip || t->opt.crop_probability > 0.0f || t->opt.color_jitter > 0.0f;
  for (int32_t k = 0; k < l->n_heads; k++)
    t->feature_floats += (int64_t)l->heads[k].h * l->heads[k].w * l->heads[k].c;
  t->coder = kiln_detect_config_default300();
  s = kiln_ssd_anchor_config_infer(l->n_anchors, l->input_h, l->input_w, &t->coder.anchors, err);
  if (s != KILN_OK) return s;
  s = alloc_buffers(t, err);
  if (s != KILN_OK) return s;
  float *anchors = NULL;
  int32_t count = 0;
  s = kiln_ssd_anchors_generate(&t->coder.anchors, &anchors, &count, err);
  if (s != KILN_OK) return s;
  memcpy(t->anchors, anchors, (size_t)count * 4 * sizeof(float));
  kiln_free(anchors);
  ssd_anchor_corners(t->anchors, count, t->corners);
  kiln_interp_options io = {.n_threads = t->opt.threads};
  s = kiln_interp_create(t->body, &io, &t->interp, err);
  for (int32_t k = 0; k < l->n_heads && s == KILN_OK; k++) s = make_head(t, k, err);
  return s;
}

/* Copies the heads' outputs into anchor order (to_heads false), or the
 * anchor-order gradients into the heads (true), for n images. */
static void shuffle_heads(ssd_trainer *t, int32_t n, bool to_heads) {
  const int32_t cols = t->n_columns;
  for (int32_t k = 0; k < t->layout.n_heads; k++) {
    const ssd_head *h = &t->layout.heads[k];
    const size_t anchors = (size_t)h->h * h->w * h->anchors_per_cell;
    for (int32_t b = 0; b < n; b++) {
      const size_t at = (size_t)b * t->n_anchors + h->first_anchor;
      float *box = (to_heads ? kiln_net_grad : kiln_net_act)(t->heads[k], 1) + b * anchors * 4;
      float *cls = (to_heads ? kiln_net_grad : kiln_net_act)(t->heads[k], 2) +
                   b * anchors * cols;
      float *enc = (to_heads ? t->grad_encodings : t->encodings) + at * 4;
      float *logit = (to_heads ? t->grad_logits : t->logits) + at * cols;
      if (to_heads) {
        memcpy(box, enc, anchors * 4 * sizeof(float));
        memcpy(cls, logit, anchors * cols * sizeof(float));
      } else {
        memcpy(enc, box, anchors * 4 * sizeof(float));
        memcpy(logit, cls, anchors * cols * sizeof(float));
      }
    }
  }
}

/* One training step on images order[first .. first + n). */
static kiln_status step(ssd_trainer *t, const int32_t *order, int32_t n, int64_t epoch,
                        ssd_loss_parts *parts, kiln_update_stats *stats, kiln_error *err) {
  for (int32_t b = 0; b < n; b++) {
    kiln_status s = ssd_sample(t, order[b], epoch, b, err);
    if (s != KILN_OK) return s;
  }
  for (int32_t k = 0; k < t->layout.n_heads; k++) kiln_net_forward(t->heads[k], n, true);
  shuffle_heads(t, n, false);
  const ssd_loss_params lp = {t->opt.neg_pos_ratio, t->opt.min_negatives, t->opt.box_weight};
  ssd_loss(t->logits, t->encodings, t->match, t->columns, t->box_targets, n, t->n_anchors,
           t->n_columns, &lp, &t->loss, t->grad_logits, t->grad_encodings, parts);
  shuffle_heads(t, n, true);
  for (int32_t k = 0; k < t->layout.n_heads; k++) {
    kiln_net_backward(t->heads[k], n);
    kiln_net_update(t->heads[k], &t->opt.optim, stats);
  }
  return KILN_OK;
}

/* Epoch e's image order: a Fisher-Yates shuffle from (seed, e). */
static void epoch_order(const ssd_trainer *t, int64_t epoch, int32_t *order) {
  kiln_rng rng;
  kiln_rng_seed(&rng, ssd_seed(t->opt.seed, (uint64_t)epoch, UINT64_MAX));
  for (int32_t i = 0; i < t->n_train; i++) order[i] = i;
  for (int32_t i = t->n_train - 1; i > 0; i--) {
    const int32_t j = (int32_t)kiln_rng_below(&rng, (uint32_t)i + 1);
    const int32_t x = order[i];
    order[i] = order[j];
    order[j] = x;
  }
}

typedef struct run_clock {
  double start, epoch_start;
  int64_t epoch_images; /* trained this epoch since epoch_start */
  int64_t images;       /* trained in this call */
} run_clock;

/* Reports step pos->step (done) of n images with its loss parts, or the
 * epoch's summary when parts is NULL. */
static void report_progress(const ssd_trainer *t, const ssd_position *pos, const run_clock *c,
                            int64_t steps_per_epoch, const ssd_loss_parts *parts, int32_t n,
                            float lr) {
  if (!t->opt.on_progress) return;
  const double now = now_seconds(), dt = now - c->epoch_start;
  kiln_ssd_progress g;
  memset(&g, 0, sizeof g);
  g.epoch = pos->epoch;
  g.epochs = t->opt.epochs;
  g.step = pos->step;
  g.steps_per_epoch = steps_per_epoch;
  g.global_step = pos->epoch * steps_per_epoch + pos->step;
  g.total_steps = (int64_t)t->opt.epochs * steps_per_epoch;
  g.epoch_end = parts == NULL;
  if (parts) {
    g.loss = parts->total;
    g.class_loss = parts->classification;
    g.box_loss = parts->localization;
    g.positives_per_image = (double)parts->positives / n;
  } else {
    g.loss = pos->sum_loss / (double)steps_per_epoch;
    g.class_loss = pos->sum_class / (double)steps_per_epoch;
    g.box_loss = pos->sum_box / (double)steps_per_epoch;
    g.positives_per_image = pos->sum_positives / (double)(pos->images_done ? pos->images_done : 1);
  }
  g.lr = lr;
  g.images_per_second = dt > 0 ? (double)c->epoch_images / dt : 0.0;
  g.elapsed_seconds = now - c->start;
  if (c->epoch_images > 0)
    g.eta_seconds = (double)(g.total_steps - g.global_step) * t->opt.batch * dt /
                    (double)c->epoch_images;
  t->opt.on_progress(t->opt.ctx, &g);
}

/* Runs the epochs from pos; sets rep->stopped when should_stop asked. */
static kiln_status train_loop(ssd_trainer *t, ssd_position *pos, const ssd_run_key *key,
                              kiln_ssd_train_report *rep, kiln_error *err) {
  const int32_t b = t->opt.batch;
  const int64_t steps_per_epoch = (t->n_train + b - 1) / b;
  if (t->opt.optim.schedule.total_steps == 0)
    t->opt.optim.schedule.total_steps = steps_per_epoch * t->opt.epochs;
  int32_t *order = kiln_malloc((size_t)t->n_train * sizeof *order);
  if (!order) return kiln_fail(err, KILN_ERR_NOMEM, "ssd train: out of memory");
  run_clock clock = {now_seconds(), 0, 0, 0};
  kiln_status s = KILN_OK;
  while (pos->epoch < t->opt.epochs && s == KILN_OK && !rep->stopped) {
    epoch_order(t, pos->epoch, order);
    clock.epoch_start = now_seconds();
    clock.epoch_images = 0;
    kiln_update_stats stats = {0};
    while (pos->step < steps_per_epoch) {
      const int32_t first = (int32_t)(pos->step * b);
      const int32_t n = t->n_train - first < b ? t->n_train - first : b;
      ssd_loss_parts parts;
      s = step(t, order + first, n, pos->epoch, &parts, &stats, err);
      if (s != KILN_OK) break;
      pos->step++;
      pos->sum_loss += parts.total;
      pos->sum_class += parts.classification;
      pos->sum_box += parts.localization;
      pos->sum_positives += (double)parts.positives;
      pos->images_done += n;
      clock.epoch_images += n;
      clock.images += n;
      report_progress(t, pos, &clock, steps_per_epoch, &parts, n, stats.lr);
      if (t->opt.should_stop && t->opt.should_stop(t->opt.ctx)) {
        rep->stopped = true;
        break;
      }
    }
    if (s != KILN_OK) break;
    if (!rep->stopped) {
      report_progress(t, pos, &clock, steps_per_epoch, NULL, 0, stats.lr);
      rep->final_loss = pos->sum_loss / (double)steps_per_epoch;
      rep->final_class_loss = pos->sum_class / (double)steps_per_epoch;
      rep->final_box_loss = pos->sum_box / (double)steps_per_epoch;
      rep->epochs_done = pos->epoch + 1;
      *pos = (ssd_position){pos->epoch + 1, 0, 0, 0, 0, 0, 0};
    }
    if (t->opt.checkpoint)
      s = ssd_checkpoint_save(t->heads, t->layout.n_heads, key, pos, t->opt.checkpoint, err);
  }
  rep->steps_done = kiln_net_step(t->heads[0]);
  const double seconds = now_seconds() - clock.start;
  rep->images_per_second = seconds > 0 ? (double)clock.images / seconds : 0.0;
  kiln_free(order);
  return s;
}

kiln_status kiln_ssd_train(const kiln_model *base, const kiln_dataset *ds,
                           const kiln_ssd_train_options *opt, kiln_model **out_raw_float,
                           kiln_ssd_train_report *rep, kiln_error *err) {
  *out_raw_float = NULL;
  const double start = now_seconds();
  kiln_ssd_train_report local;
  if (!rep) rep = &local;
  memset(rep, 0, sizeof *rep);
  ssd_trainer t;
  memset(&t, 0, sizeof t);
  t.ds = ds;
  t.opt = *opt;
  kiln_status s = setup(&t, base, err);
  if (s != KILN_OK) goto done;
  rep->classes = ds->n_labels;
  rep->train_images = t.n_train;
  rep->anchors = t.n_anchors;
  rep->heads = t.layout.n_heads;
  for (int32_t k = 0; k < t.layout.n_heads; k++)
    rep->trainable_params += kiln_net_param_count(t.heads[k]);
  const ssd_run_key key = {opt->seed,   opt->checkpoint_key, opt->batch,
                           opt->epochs, t.n_columns,          t.n_train};
  ssd_position pos;
  memset(&pos, 0, sizeof pos);
  if (opt->checkpoint && opt->resume && access(opt->checkpoint, F_OK) == 0) {
    s = ssd_checkpoint_load(t.heads, t.layout.n_heads, &key, &pos, opt->checkpoint, err);
    if (s != KILN_OK) goto done;
    rep->resumed = true;
  }
  s = train_loop(&t, &pos, &key, rep, err);
  if (s != KILN_OK || rep->stopped) goto done;
  s = ssd_export_heads(t.full, &t.layout, t.heads, t.n_columns, err);
  if (s == KILN_OK) {
    *out_raw_float = t.full;
    t.full = NULL;
  }
done:
  rep->feature_seconds = t.feature_seconds;
  trainer_free(&t);
  rep->seconds = now_seconds() - start;
  return s;
}
