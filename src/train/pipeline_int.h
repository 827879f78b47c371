/*
 * train/pipeline_int.h: the pieces of the training pipeline
 * (kiln/trainer.h) shared by its files:
 *   pipeline_data.c    the dataset seen through plain types (this header
 *                      does not include kiln/data.h, so the other pipeline
 *                      files depend on the dataset layer in one place)
 *   pipeline_input.c   images -> model inputs (resize, grey, normalize,
 *                      quantize) and a parallel loop over images
 *   pipeline_fit.c     the training loop: epochs, steps, checkpoints with
 *                      the position inside an epoch, stop flag, progress
 *   pipeline_eval*.c   classification / detection evaluation of models
 *   classify_tl*.c     transfer learning (backbone features, head, fine-tune)
 *   pipeline_scratch.c the from-scratch CNN
 *   pipeline.c         kiln_train_run: the phases and report.json
 *   pipeline_detect.c  the detection path's entry point
 */
#ifndef KILN_TRAIN_PIPELINE_INT_H
#define KILN_TRAIN_PIPELINE_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "kiln/image.h"
#include "kiln/interp.h"
#include "kiln/model.h"
#include "kiln/train.h"
#include "kiln/trainer.h"

struct json_t;

/* ---- The dataset (pipeline_data.c) ---- */

/* Indices of the images in split (a kiln_split value, -1: all), in
 * dataset order; *out kiln_malloc'd (NULL when *n is 0). */
kiln_status pl_split_images(const struct kiln_dataset *ds, int32_t split, int32_t **out,
                            int32_t *n, kiln_error *err);
int32_t pl_n_labels(const struct kiln_dataset *ds);
const char *pl_label_name(const struct kiln_dataset *ds, int32_t label);
int32_t pl_image_label(const struct kiln_dataset *ds, int32_t image);
/* Decodes an image (kiln_dataset_load_image): RGB8, grey replicated. */
kiln_status pl_load_image(const struct kiln_dataset *ds, int32_t image, kiln_image *out,
                          kiln_error *err);
/* Size as displayed, and whether the image is grey (in-memory, 1 channel). */
void pl_image_geometry(const struct kiln_dataset *ds, int32_t image, int32_t *width,
                       int32_t *height, bool *grey);
const char *pl_image_source(const struct kiln_dataset *ds, int32_t image);
/* Boxes of a detection image: *n boxes as (xmin, ymin, xmax, ymax, label,
 * crowd) in pixels, written to xyxy[4 * i], label[i], crowd[i] (arrays of
 * at least pl_image_box_count). */
int32_t pl_image_box_count(const struct kiln_dataset *ds, int32_t image);
void pl_image_boxes(const struct kiln_dataset *ds, int32_t image, float *xyxy, int32_t *label,
                    bool *crowd);
/* FNV-1a of every image's hash, label, boxes and split, and the labels: a
 * checkpoint is only resumed on the same data. */
uint64_t pl_dataset_key(const struct kiln_dataset *ds);
/* The report's "data" object. */
struct json_t *pl_dataset_json(const struct kiln_dataset *ds, const char *path);

/* ---- Inputs (pipeline_input.c) ---- */

/* How an image becomes one model input [1, h, w, c] (c 1 or 3). */
typedef struct pl_input {
  int32_t h, w, c;
  kiln_dtype dtype;   /* F32, I8 or U8 */
  float scale;        /* I8 / U8 */
  int32_t zero_point;
  kiln_image_norm norm;
} pl_input;

/* The spec of a model's first input, with norm. KILN_ERR_INVALID_ARG for
 * an input that is not [1, h, w, 1 or 3] of float32 or per-tensor int8 /
 * uint8. */
kiln_status pl_input_of(const kiln_model *model, const kiln_image_norm *norm, pl_input *out,
                        kiln_error *err);
/* img stretched to w x h (kiln_image_resize_bilinear) as h * w * c bytes:
 * RGB, or grey (0.299 R + 0.587 G + 0.114 B, rounded; exact for grey
 * replicated to RGB). */
kiln_status pl_image_pixels(const kiln_image *img, int32_t h, int32_t w, int32_t c, uint8_t *dst,
                            kiln_error *err);
/* One normalized value: (v - mean) / std. */
static inline float pl_normalize(uint8_t v, float mean, float std) {
  return ((float)v - mean) / std;
}
/* Pixels [h * w * c] from pl_image_pixels -> the input's values in dst
 * (float, or quantized as TFLite's QUANTIZE: round half away from zero,
 * clamped). */
void pl_pixels_to_input(const uint8_t *pixels, const pl_input *in, void *dst);
/* Mirrors a float map [h, w, c] left-right in place. */
void pl_mirror(float *x, int32_t h, int32_t w, int32_t c);

/* Calls fn(ctx, item, thread) for items [0, n) on `threads` threads
 * (kiln_threadpool; thread < threads picks per-thread state), in chunks
 * after each of which on_done(ctx, items done) (may be NULL) runs on the
 * calling thread. fn returns a status and fills its own error; the loop
 * stops after the chunk of a failure, and the result is the failure of the
 * lowest item index, so messages do not depend on the thread count. stop
 * (may be NULL) ends the loop after a chunk with *stopped set. */
typedef kiln_status (*pl_item_fn)(void *ctx, int32_t item, int32_t thread, kiln_error *err);
kiln_status pl_parallel(int32_t threads, int32_t n, pl_item_fn fn, void *ctx,
                        void (*on_done)(void *ctx, int32_t done), volatile sig_atomic_t *stop,
                        bool *stopped, kiln_error *err);

/* Seconds of a monotonic clock. */
double pl_now(void);

/* Progress helper: calls opt's callback (if any) with p. */
static inline void pl_report(void (*cb)(void *, const kiln_train_progress *), void *ctx,
                             const kiln_train_progress *p) {
  if (cb) cb(ctx, p);
}
/* A progress record of `event` in `phase` with every value -1. */
kiln_train_progress pl_progress(kiln_train_event event, kiln_train_phase phase);

/* ---- Evaluation helpers (pipeline_eval.c) ---- */

/* A model's class names: the options', or its "kiln_labels" (owned). */
typedef struct pl_names {
  char **names;
  int32_t n;
  bool owned;
} pl_names;

kiln_status pl_eval_labels(const kiln_model *model, const kiln_model_eval_options *opt,
                           pl_names *out, kiln_error *err);
void pl_names_free(pl_names *n);
/* The normalization to feed a model: given, else its "kiln_input_norm",
 * else kiln_image_norm_for_input's. */
kiln_image_norm pl_eval_norm(const kiln_model *model, const kiln_image_norm *given);
/* The dataset label called name, or -1. */
int32_t pl_dataset_label_index(const struct kiln_dataset *ds, const char *name);
/* threads single-threaded interpreters of model (all freed on failure). */
kiln_status pl_eval_interps(const kiln_model *model, int32_t threads, kiln_interp ***out,
                            kiln_error *err);
void pl_eval_interps_free(kiln_interp **its, int32_t threads);
/* threads, or all cores for 0. */
int32_t pl_eval_threads(int32_t threads);

/* ---- Training loop (pipeline_fit.c) ---- */

/* The samples the net is fed: either uint8 pixels [count][h][w][c]
 * normalized with mean/std per channel (flips mirror them), or float
 * features [count][variants][h * w * c] (variant 1, when there are two, is
 * the flipped image's). */
typedef struct pl_samples {
  int64_t count;
  const int32_t *labels;
  int32_t h, w, c;
  const uint8_t *pixels;
  kiln_image_norm norm;
  const float *features;
  int32_t variants;
} pl_samples;

typedef struct pl_epoch_record {
  double train_loss, train_accuracy;
  double val_accuracy; /* -1 without a val split */
  double seconds, images_per_second;
  double lr;
} pl_epoch_record;

typedef struct pl_fit_config {
  int32_t epochs, batch;
  kiln_optim optim; /* schedule.total_steps 0: epochs * steps per epoch */
  float label_smoothing;
  bool hflip;
  uint64_t seed;
  uint64_t key;     /* of the run's data and settings; stored in the checkpoint */
  const char *checkpoint;
  void (*on_progress)(void *ctx, const kiln_train_progress *p);
  void *ctx;
  volatile sig_atomic_t *stop;
} pl_fit_config;

typedef struct pl_fit_outcome {
  bool interrupted, resumed;
  int64_t epochs_done;
  pl_epoch_record *history; /* [epochs_done], kiln_malloc'd */
  double train_seconds;     /* over every session of the run */
} pl_fit_outcome;

/* Trains net (finalized, input [h, w, c] of the samples) whose layer
 * logits gives [1, 1, classes]; val may be NULL. Resumes from
 * cfg->checkpoint when it exists (refusing one of another key), saves it
 * after every epoch and, when *stop is set, before the next step (then
 * returns KILN_OK with outcome->interrupted). */
kiln_status pl_fit(kiln_net *net, int32_t logits, const pl_samples *train, const pl_samples *val,
                   const pl_fit_config *cfg, pl_fit_outcome *outcome, kiln_error *err);
void pl_fit_outcome_free(pl_fit_outcome *o);
/* Accuracy of the net in inference mode on samples (variant 0). */
double pl_accuracy(kiln_net *net, int32_t logits, const pl_samples *s);

/* FNV-1a helpers for run keys. */
uint64_t pl_hash(uint64_t h, const void *data, size_t n);
static inline uint64_t pl_hash_str(uint64_t h, const char *s) {
  return pl_hash(h, s ? s : "", s ? strlen(s) + 1 : 1);
}
#define PL_HASH_INIT 1469598103934665603ull

/* ---- A classifier's training plan (classify_tl.c, pipeline_scratch.c) ---- */

/* What pipeline.c needs from either path. */
typedef struct pl_run {
  struct kiln_dataset *ds;
  const kiln_train_options *opt;
  kiln_train_settings set;
  int32_t threads;
  int32_t n_classes;
  int32_t *train, *val;     /* image indices */
  int32_t n_train, n_val;
  char out_path[4096];      /* scratch for file names */
  const char *out_dir;
  char ckpt_dir[4096];
  struct json_t *config;    /* the report's "config" object (paths add to it) */
  double prepare_seconds;
} pl_run;

/* Each path: prepares its samples, builds the net, trains (pl_fit) and
 * exports a float model with a SOFTMAX output (metadata set by the
 * caller); *model NULL when interrupted. *norm is the model's input
 * normalization. */
kiln_status pl_transfer_train(pl_run *run, const pl_fit_config *fit, pl_fit_outcome *outcome,
                              kiln_model **model, kiln_image_norm *norm, kiln_error *err);
kiln_status pl_scratch_train(pl_run *run, const pl_fit_config *fit, pl_fit_outcome *outcome,
                             kiln_model **model, kiln_image_norm *norm, kiln_error *err);
/* The detection path (pipeline_detect.c). */
kiln_status pl_detect_train(pl_run *run, const pl_fit_config *fit, pl_fit_outcome *outcome,
                            kiln_model **model, kiln_image_norm *norm, kiln_error *err);

#endif
