/*
 * The detection path of the training pipeline (kiln_train_run with
 * KILN_TASK_DETECT).
 *
 * pl_detect_train runs the SSD transfer-learning core (kiln_ssd_train,
 * kiln/train.h) on the shared SSD or --backbone, with the preset's settings
 * unless the options name them. Its contract, which pipeline.c relies on:
 *   in   run->ds (a detection dataset, splits assigned), run->train /
 *        run->val (image indices), run->n_classes (labels, no background),
 *        run->set (epochs, batch, lr, hflip: box-aware flips), run->threads,
 *        run->opt (backbone path or NULL for the shared SSD, seed,
 *        on_progress, stop), run->ckpt_dir (for its feature caches),
 *        fit->checkpoint / fit->key / fit->optim (checkpoint per epoch and
 *        on *stop, exact resume, as pl_fit does; it may run pl_fit-like
 *        loops of its own);
 *   out  *model: a float raw-output SSD (box encodings [1, N, 4] and class
 *        logits [1, N, 1 + classes], column 0 background, anchors as
 *        kiln_detect_config_default300's for the shared SSD's 300x300
 *        layout) or NULL when interrupted (outcome->interrupted);
 *        *norm: its input normalization; *outcome: history and timings;
 *        run->config may get a "detector" object for the report.
 * pipeline.c then appends TFLite_Detection_PostProcess, embeds the labels,
 * quantizes (calibration on training images), evaluates float and int8
 * with COCO mAP on the test split and writes the report.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiln/data.h"
#include "train/pipeline_int.h"

#define DEFAULT_SSD "ssd_mobilenet_v2_oidv4_fp16.tflite"

/* Bridges the SSD trainer's callbacks to the pipeline's. */
typedef struct detect_ctx {
  const pl_fit_config *fit;
  pl_epoch_record *history; /* [epochs] */
  int64_t epochs_done;
} detect_ctx;

static void on_ssd_progress(void *arg, const kiln_ssd_progress *sp) {
  detect_ctx *c = arg;
  kiln_train_progress p = pl_progress(sp->epoch_end ? KILN_EVENT_EPOCH : KILN_EVENT_STEP, KILN_PHASE_TRAIN);
  p.epoch = sp->epoch + 1;
  p.epochs = sp->epochs;
  p.step = sp->step;
  p.steps = sp->steps_per_epoch;
  p.done = sp->global_step;
  p.total = sp->total_steps;
  p.loss = sp->loss;
  p.lr = sp->lr;
  p.images_per_second = sp->images_per_second;
  p.elapsed_seconds = sp->elapsed_seconds;
  p.eta_seconds = sp->eta_seconds;
  if (sp->epoch_end && sp->epoch < sp->epochs) {
    pl_epoch_record *r = &c->history[sp->epoch];
    r->train_loss = sp->loss;
    r->train_accuracy = -1;
    r->val_accuracy = -1;
    r->seconds = sp->elapsed_seconds;
    r->images_per_second = sp->images_per_second;
    r->lr = sp->lr;
    if (sp->epoch + 1 > c->epochs_done) c->epochs_done = sp->epoch + 1;
  }
  pl_report(c->fit->on_progress, c->fit->ctx, &p);
}

static bool should_stop(void *arg) {
  const detect_ctx *c = arg;
  return c->fit->stop && *c->fit->stop;
}

/* The preset's SSD settings unless the options name them: fast trains on
 * cached features without augmentation, balanced and accurate augment
 * (recomputing features every epoch) for longer. */
static void ssd_settings(const kiln_train_options *opt, kiln_ssd_train_options *o) {
  if (opt->preset == KILN_PRESET_FAST) {
    o->epochs = 20;
    o->hflip = false;
    o->crop_probability = 0.0f;
    o->color_jitter = 0.0f;
  } else if (opt->preset == KILN_PRESET_ACCURATE) {
    o->epochs = 60;
  }
  if (opt->epochs > 0) o->epochs = opt->epochs;
  if (opt->batch > 0) o->batch = opt->batch;
  if (opt->lr > 0) o->optim.schedule.base_lr = opt->lr;
}

kiln_status pl_detect_train(pl_run *run, const pl_fit_config *fit, pl_fit_outcome *outcome,
                            kiln_model **model, kiln_image_norm *norm, kiln_error *err) {
  *model = NULL;
  memset(outcome, 0, sizeof *outcome);
  const kiln_train_options *opt = run->opt;
  char def[4096];
  const char *path = opt->backbone;
  if (!path) {
    const char *dir = getenv("KILN_MODELS");
    snprintf(def, sizeof def, "%s/%s", dir && *dir ? dir : "../shared/models", DEFAULT_SSD);
    path = def;
  }
  kiln_model *base;
  kiln_status s = kiln_model_load(path, &base, err);
  if (s != KILN_OK) return s;
  kiln_ssd_train_options o = kiln_ssd_train_options_default();
  ssd_settings(opt, &o);
  o.threads = run->threads;
  o.seed = opt->seed;
  o.checkpoint = fit->checkpoint;
  o.resume = true;
  o.checkpoint_key = fit->key;
  detect_ctx c = {fit, kiln_calloc((size_t)o.epochs + 1, sizeof(pl_epoch_record)), 0};
  if (!c.history) {
    kiln_model_free(base);
    return kiln_fail(err, KILN_ERR_NOMEM, "out of memory");
  }
  o.on_progress = on_ssd_progress;
  o.should_stop = should_stop;
  o.ctx = &c;
  kiln_ssd_train_report rep;
  s = kiln_ssd_train(base, run->ds, &o, model, &rep, err);
  kiln_model_free(base);
  if (s != KILN_OK) {
    kiln_error_prefix(err, "%s", path);
    kiln_free(c.history);
    return s;
  }
  outcome->interrupted = rep.stopped;
  outcome->resumed = rep.resumed;
  outcome->epochs_done = rep.stopped ? c.epochs_done : rep.epochs_done;
  outcome->history = c.history;
  outcome->train_seconds = rep.seconds;
  *norm = kiln_image_norm_default(); /* the shared SSD's [-1, 1] */
  return KILN_OK;
}
