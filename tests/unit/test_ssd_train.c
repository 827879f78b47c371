/*
 * End-to-end tests of kiln_ssd_train (train/ssd_train.c, ssd_sample.c,
 * ssd_checkpoint.c) on the shared SSD with a small synthetic detection
 * dataset written as COCO JSON + PNGs and imported by kiln's data layer:
 * red squares and blue discs on noisy backgrounds.
 *  - training finds the objects: after a few seconds of training, at least
 *    80% of the training boxes are detected (right class, IoU >= 0.5,
 *    score >= 0.3); the untrained predictors (a 1% prior) detect none;
 *  - a run stopped by should_stop and resumed from its checkpoint ends
 *    bit-identical to an uninterrupted run; a checkpoint of another run is
 *    refused; two augmented runs with one seed are bit-identical;
 *  - bad datasets, options and base models give the documented errors.
 *
 * Driver mode (used by tests/conformance/test_ssd_train.py and for the
 * benchmark figures): with KILN_SSD_TRAIN_DATA=DIR (a detection dataset,
 * e.g. from scripts/make-detection-dataset) and KILN_SSD_TRAIN_OUT=DIR it
 * trains (KILN_SSD_TRAIN_EPOCHS, _LR, _AUGMENT=0/1 override the defaults),
 * writes model_raw.tflite, model_float.tflite (post-processed),
 * model_int8.tflite (kiln's quantizer, calibrated on up to 100 training
 * images), labels.txt and metrics.json (training time; COCO mAP of the
 * float and int8 models on the train and test splits, from kiln_eval_detect
 * on the post-processed models' detections).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kiln/data.h"
#include "kiln/detect.h"
#include "kiln/eval.h"
#include "kiln/interp.h"
#include "kiln/quant.h"
#include "kiln/train.h"
#include "testutil.h"

#define SSD "ssd_mobilenet_v2_oidv4_fp16.tflite"
#define N_IMAGES 12
#define W 160
#define H 120

static char dir[256];
static kiln_model *base;
static kiln_dataset *ds;

/* ---- The synthetic dataset ---- */

typedef struct obj {
  int32_t label, x0, y0, x1, y1;
} obj;

static void background(kiln_image *img, test_rng *rng) {
  const int32_t r0 = test_rand_int(rng, 40, 200), g0 = test_rand_int(rng, 40, 200);
  const int32_t b0 = test_rand_int(rng, 40, 200);
  for (int32_t y = 0; y < H; y++)
    for (int32_t x = 0; x < W; x++) {
      uint8_t *p = img->pixels + (size_t)y * img->stride + (size_t)x * 3;
      const int32_t n = test_rand_int(rng, -25, 25);
      p[0] = (uint8_t)(r0 * (W - x) / W + 30 + n);
      p[1] = (uint8_t)(g0 * (H - y) / H + 30 + n);
      p[2] = (uint8_t)(b0 / 2 + 40 + n);
    }
}

/* Draws a red square (label 0) or blue disc (label 1); the box is the
 * pixels drawn. */
static void draw(kiln_image *img, obj *o, int32_t size) {
  const float r = size / 2.0f, cx = o->x0 + r, cy = o->y0 + r;
  int32_t x0 = W, y0 = H, x1 = 0, y1 = 0;
  for (int32_t y = o->y0; y < o->y0 + size; y++)
    for (int32_t x = o->x0; x < o->x0 + size; x++) {
      const float dx = x + 0.5f - cx, dy = y + 0.5f - cy;
      if (o->label == 1 && dx * dx + dy * dy > r * r) continue;
      uint8_t *p = img->pixels + (size_t)y * img->stride + (size_t)x * 3;
      p[0] = o->label ? 30 : 225;
      p[1] = o->label ? 70 : 35;
      p[2] = o->label ? 225 : 30;
      x0 = x < x0 ? x : x0;
      y0 = y < y0 ? y : y0;
      x1 = x + 1 > x1 ? x + 1 : x1;
      y1 = y + 1 > y1 ? y + 1 : y1;
    }
  o->x0 = x0;
  o->y0 = y0;
  o->x1 = x1;
  o->y1 = y1;
}

static bool overlaps(const obj *a, int32_t x, int32_t y, int32_t size) {
  return x < a->x1 + 4 && a->x0 < x + size + 4 && y < a->y1 + 4 && a->y0 < y + size + 4;
}

/* Writes dir/train/NNN.png and dir/annotations/instances_train.json. */
static bool write_dataset(void) {
  char path[512];
  snprintf(path, sizeof path, "%s/train", dir);
  if (mkdir(path, 0755) != 0) return false;
  snprintf(path, sizeof path, "%s/annotations", dir);
  if (mkdir(path, 0755) != 0) return false;
  snprintf(path, sizeof path, "%s/annotations/instances_train.json", dir);
  FILE *json = fopen(path, "w");
  if (!json) return false;
  fprintf(json, "{\"categories\": [{\"id\": 1, \"name\": \"red\"}, "
                "{\"id\": 2, \"name\": \"blue\"}],\n \"images\": [");
  for (int i = 0; i < N_IMAGES; i++)
    fprintf(json, "%s{\"id\": %d, \"file_name\": \"%03d.png\", \"width\": %d, \"height\": %d}",
            i ? ", " : "", i + 1, i, W, H);
  fprintf(json, "],\n \"annotations\": [");
  test_rng rng = {2024};
  int ann = 0;
  bool ok = true;
  for (int i = 0; i < N_IMAGES && ok; i++) {
    kiln_image img;
    kiln_error err;
    ok = kiln_image_create(W, H, &img, &err) == KILN_OK;
    if (!ok) break;
    background(&img, &rng);
    obj objs[2];
    const int n = 1 + (i % 2);
    for (int k = 0; k < n; k++) {
      const int32_t size = test_rand_int(&rng, 36, 64);
      int32_t x, y, tries = 0;
      do {
        x = test_rand_int(&rng, 0, W - size);
        y = test_rand_int(&rng, 0, H - size);
      } while (k == 1 && overlaps(&objs[0], x, y, size) && ++tries < 100);
      objs[k] = (obj){(i + k) % 2, x, y, 0, 0};
      draw(&img, &objs[k], size);
      fprintf(json,
              "%s{\"id\": %d, \"image_id\": %d, \"category_id\": %d, "
              "\"bbox\": [%d, %d, %d, %d], \"iscrowd\": 0}",
              ann ? ", " : "", ann + 1, i + 1, objs[k].label + 1, objs[k].x0, objs[k].y0,
              objs[k].x1 - objs[k].x0, objs[k].y1 - objs[k].y0);
      ann++;
    }
    snprintf(path, sizeof path, "%s/train/%03d.png", dir, i);
    ok = kiln_image_write_png(&img, path, &err) == KILN_OK;
    kiln_image_free(&img);
  }
  fprintf(json, "]}\n");
  return fclose(json) == 0 && ok;
}

static void remove_dataset(void) {
  char path[512];
  for (int i = 0; i < N_IMAGES; i++) {
    snprintf(path, sizeof path, "%s/train/%03d.png", dir, i);
    unlink(path);
  }
  const char *rest[] = {"annotations/instances_train.json", "annotations", "train", "ckpt", ""};
  for (size_t i = 0; i < sizeof rest / sizeof rest[0]; i++) {
    snprintf(path, sizeof path, "%s/%s", dir, rest[i]);
    if (unlink(path) != 0) rmdir(path);
  }
}

/* ---- Detections of a model on the dataset's images ---- */

/* Runs a raw or post-processed model on image i; writes up to cap
 * detections in normalized coordinates. */
static int32_t detect(kiln_interp *it, const kiln_model *m, int32_t i, kiln_detection *out,
                      int32_t cap, float threshold) {
  kiln_error err;
  kiln_image img;
  if (kiln_dataset_load_image(ds, i, &img, &err) != KILN_OK) return -1;
  kiln_tensor_view in = kiln_interp_input(it, 0);
  kiln_status s = kiln_image_to_tensor(&img, NULL, &in, &err);
  kiln_image_free(&img);
  if (s == KILN_OK) s = kiln_interp_invoke(it, &err);
  if (s != KILN_OK) return -1;
  int32_t n = 0;
  if (kiln_interp_output_count(it) == 4) {
    const float *p[4];
    for (int k = 0; k < 4; k++) p[k] = kiln_interp_output(it, k).data;
    s = kiln_detect_read_postprocessed(p[0], p[1], p[2], p[3], kiln_interp_output(it, 0).shape[1],
                                       1, 1, out, cap, &n, &err);
  } else {
    kiln_detect_config cfg;
    float *anchors = NULL;
    int32_t count = 0;
    s = kiln_ssd_detect_config(m, &cfg, &err);
    cfg.score_threshold = threshold;
    if (s == KILN_OK) s = kiln_ssd_anchors_generate(&cfg.anchors, &anchors, &count, &err);
    const kiln_tensor_view cls = kiln_interp_output(it, 1);
    if (s == KILN_OK)
      s = kiln_detect_decode(kiln_interp_output(it, 0).data, cls.data, count, cls.shape[2],
                             anchors, &cfg, out, cap, &n, &err);
    kiln_free(anchors);
  }
  int32_t kept = 0;
  for (int32_t k = 0; k < n && s == KILN_OK; k++)
    if (out[k].score >= threshold) out[kept++] = out[k];
  return s == KILN_OK ? kept : -1;
}

static float iou_px(const kiln_detection *d, const kiln_data_box *b, float w, float h) {
  const float x0 = fmaxf(d->xmin * w, b->xmin), y0 = fmaxf(d->ymin * h, b->ymin);
  const float x1 = fminf(d->xmax * w, b->xmax), y1 = fminf(d->ymax * h, b->ymax);
  if (x1 <= x0 || y1 <= y0) return 0.0f;
  const float inter = (x1 - x0) * (y1 - y0);
  const float area = (d->xmax - d->xmin) * w * (d->ymax - d->ymin) * h +
                     (b->xmax - b->xmin) * (b->ymax - b->ymin);
  return inter / (area - inter);
}

/* Fraction of the training boxes found: a detection of its class (column
 * label + 1) with IoU >= 0.5 and score >= 0.3. */
static double recall(const kiln_model *m) {
  kiln_interp *it = NULL;
  kiln_error err;
  if (kiln_interp_create(m, NULL, &it, &err) != KILN_OK) return -1.0;
  int32_t found = 0, total = 0;
  for (int32_t i = 0; i < ds->n_images; i++) {
    kiln_detection dets[25];
    const int32_t n = detect(it, m, i, dets, 25, 0.3f);
    if (n < 0) {
      kiln_interp_free(it);
      return -1.0;
    }
    const kiln_data_image *im = &ds->images[i];
    for (int32_t b = 0; b < im->n_boxes; b++) {
      total++;
      for (int32_t k = 0; k < n; k++)
        if (dets[k].class_id == im->boxes[b].label + 1 &&
            iou_px(&dets[k], &im->boxes[b], (float)im->width, (float)im->height) >= 0.5f) {
          found++;
          break;
        }
    }
  }
  kiln_interp_free(it);
  return total ? (double)found / total : -1.0;
}

/* ---- Tests ---- */

typedef struct progress_log {
  double first_epoch_loss, last_epoch_loss;
  int64_t steps, epochs;
  int64_t stop_after; /* should_stop answers true after this many steps (0: never) */
} progress_log;

static void on_progress(void *ctx, const kiln_ssd_progress *p) {
  progress_log *log = ctx;
  if (!p->epoch_end) {
    log->steps++;
    return;
  }
  if (log->epochs++ == 0) log->first_epoch_loss = p->loss;
  log->last_epoch_loss = p->loss;
}

static bool should_stop(void *ctx) {
  const progress_log *log = ctx;
  return log->stop_after > 0 && log->steps >= log->stop_after;
}

static kiln_ssd_train_options quick_options(progress_log *log) {
  kiln_ssd_train_options o = kiln_ssd_train_options_default();
  o.epochs = 12;
  o.batch = 4;
  o.optim = kiln_optim_default(KILN_OPTIM_ADAM, 0.01f);
  o.optim.schedule.final_lr = 1e-4f;
  o.hflip = false;
  o.crop_probability = 0.0f;
  o.color_jitter = 0.0f;
  o.threads = 2;
  o.seed = 3;
  o.on_progress = on_progress;
  o.should_stop = should_stop;
  o.ctx = log;
  return o;
}

/* Serialized bytes of a model, for bit-identity checks. */
static bool same_model(const kiln_model *a, const kiln_model *b) {
  uint8_t *x = NULL, *y = NULL;
  size_t nx = 0, ny = 0;
  kiln_error err;
  bool same = kiln_model_serialize(a, &x, &nx, &err) == KILN_OK &&
              kiln_model_serialize(b, &y, &ny, &err) == KILN_OK && nx == ny &&
              memcmp(x, y, nx) == 0;
  kiln_free(x);
  kiln_free(y);
  return same;
}

static kiln_model *trained; /* from test_train_and_detect, reused by test_resume */

static void test_train_and_detect(void) {
  progress_log log = {0};
  kiln_ssd_train_options o = quick_options(&log);
  kiln_ssd_train_report rep;
  kiln_error err;
  REQUIRE(kiln_ssd_train(base, ds, &o, &trained, &rep, &err) == KILN_OK);
  REQUIRE(trained);
  CHECK(rep.classes == 2 && rep.train_images == N_IMAGES && rep.anchors == 1917 && rep.heads == 6);
  CHECK(rep.epochs_done == 12 && rep.steps_done == 12 * 3 && !rep.stopped && !rep.resumed);
  CHECK(log.steps == 36 && log.epochs == 12);
  /* 6 maps: A * (4 + 3) outputs per cell, weights c + 1 each. */
  const int64_t chans[6] = {576, 1280, 512, 256, 256, 128};
  int64_t params = 0;
  for (int k = 0; k < 6; k++) params += (k ? 6 : 3) * 7 * (chans[k] + 1);
  CHECK(rep.trainable_params == params);
  CHECK_MSG(log.last_epoch_loss < 0.5 * log.first_epoch_loss, "loss %g -> %g",
            log.first_epoch_loss, log.last_epoch_loss);
  REQUIRE(trained->n_outputs == 2);
  CHECK(trained->tensors[trained->outputs[1]].shape[2] == 3);
  const double found = recall(trained);
  CHECK_MSG(found >= 0.8, "found %.2f of the training boxes", found);
  /* The post-processed form finds them too. */
  kiln_model *pp = NULL;
  uint8_t *bytes = NULL;
  size_t size = 0;
  kiln_detect_config cfg;
  REQUIRE(kiln_model_serialize(trained, &bytes, &size, &err) == KILN_OK);
  REQUIRE(kiln_model_parse(bytes, size, true, "pp", &pp, &err) == KILN_OK);
  kiln_free(bytes);
  CHECK(kiln_ssd_detect_config(pp, &cfg, &err) == KILN_OK);
  CHECK(kiln_detect_add_postprocess(pp, &cfg, &err) == KILN_OK);
  const double found_pp = recall(pp);
  CHECK_MSG(found_pp >= 0.8, "post-processed: found %.2f", found_pp);
  fprintf(stderr, "loss %.3f -> %.3f over 12 epochs; found %.2f (raw), %.2f (post-processed)\n",
          log.first_epoch_loss, log.last_epoch_loss, found, found_pp);
  kiln_model_free(pp);
}

/* The untrained predictors: one step at learning rate 0. */
static void test_untrained_baseline(void) {
  progress_log log = {0};
  kiln_ssd_train_options o = quick_options(&log);
  o.epochs = 1;
  o.optim = kiln_optim_default(KILN_OPTIM_SGD, 0.0f);
  log.stop_after = 0;
  kiln_model *m = NULL;
  kiln_error err;
  REQUIRE(kiln_ssd_train(base, ds, &o, &m, NULL, &err) == KILN_OK);
  CHECK(recall(m) == 0.0);
  kiln_model_free(m);
}

static void test_resume(void) {
  REQUIRE(trained);
  char ckpt[512];
  snprintf(ckpt, sizeof ckpt, "%s/ckpt", dir);
  progress_log log = {0};
  log.stop_after = 7; /* mid-epoch 3 */
  kiln_ssd_train_options o = quick_options(&log);
  o.checkpoint = ckpt;
  o.resume = true;
  kiln_ssd_train_report rep;
  kiln_model *m = NULL;
  kiln_error err;
  REQUIRE(kiln_ssd_train(base, ds, &o, &m, &rep, &err) == KILN_OK);
  CHECK(rep.stopped && m == NULL && access(ckpt, F_OK) == 0);
  CHECK(rep.steps_done == 7);
  /* Another seed: refused. */
  o.seed = 4;
  CHECK(kiln_ssd_train(base, ds, &o, &m, &rep, &err) == KILN_ERR_INVALID_ARG);
  CHECK_MSG(strstr(err.msg, "seed") != NULL, "%s", err.msg);
  o.seed = 3;
  o.checkpoint_key = 99; /* the caller's key: another dataset */
  CHECK(kiln_ssd_train(base, ds, &o, &m, &rep, &err) == KILN_ERR_INVALID_ARG);
  CHECK_MSG(strstr(err.msg, "key (data or settings)") != NULL, "%s", err.msg);
  o.checkpoint_key = 0;
  log.stop_after = 0;
  REQUIRE(kiln_ssd_train(base, ds, &o, &m, &rep, &err) == KILN_OK);
  CHECK(rep.resumed && !rep.stopped && rep.steps_done == 36);
  CHECK(m && same_model(m, trained));
  kiln_model_free(m);
  /* A damaged checkpoint. */
  FILE *f = fopen(ckpt, "r+b");
  REQUIRE(f);
  fseek(f, 100, SEEK_SET);
  fputc(0x5a, f);
  fclose(f);
  CHECK(kiln_ssd_train(base, ds, &o, &m, &rep, &err) == KILN_ERR_FORMAT);
  CHECK_MSG(strstr(err.msg, "checksum") != NULL, "%s", err.msg);
}

static void test_augmented_determinism(void) {
  progress_log log = {0};
  kiln_ssd_train_options o = quick_options(&log);
  o.epochs = 2;
  o.batch = 6;
  o.hflip = true;
  o.crop_probability = 0.5f;
  o.color_jitter = 0.2f;
  kiln_model *a = NULL, *b = NULL;
  kiln_ssd_train_report rep;
  kiln_error err;
  REQUIRE(kiln_ssd_train(base, ds, &o, &a, &rep, &err) == KILN_OK);
  CHECK(isfinite(rep.final_loss) && rep.final_loss > 0.0);
  CHECK(rep.feature_seconds > 0.0 && rep.feature_seconds <= rep.seconds);
  REQUIRE(kiln_ssd_train(base, ds, &o, &b, &rep, &err) == KILN_OK);
  CHECK(same_model(a, b));
  kiln_model_free(a);
  kiln_model_free(b);
}

static void test_errors(void) {
  progress_log log = {0};
  kiln_ssd_train_options o = quick_options(&log);
  kiln_model *m = NULL;
  kiln_error err;
  o.epochs = 0;
  CHECK(kiln_ssd_train(base, ds, &o, &m, NULL, &err) == KILN_ERR_INVALID_ARG);
  CHECK_MSG(strstr(err.msg, "option epochs"), "%s", err.msg);
  o = quick_options(&log);
  o.match_iou = 1.5f;
  CHECK(kiln_ssd_train(base, ds, &o, &m, NULL, &err) == KILN_ERR_INVALID_ARG);
  CHECK_MSG(strstr(err.msg, "option match_iou"), "%s", err.msg);
  /* No training images. */
  o = quick_options(&log);
  for (int32_t i = 0; i < ds->n_images; i++) ds->images[i].split = KILN_SPLIT_TEST;
  CHECK(kiln_ssd_train(base, ds, &o, &m, NULL, &err) == KILN_ERR_INVALID_ARG);
  CHECK_MSG(strstr(err.msg, "no TRAIN images"), "%s", err.msg);
  for (int32_t i = 0; i < ds->n_images; i++) ds->images[i].split = KILN_SPLIT_TRAIN;
  /* A classification dataset. */
  ds->task = KILN_TASK_CLASSIFY;
  CHECK(kiln_ssd_train(base, ds, &o, &m, NULL, &err) == KILN_ERR_INVALID_ARG);
  CHECK_MSG(strstr(err.msg, "detection dataset"), "%s", err.msg);
  ds->task = KILN_TASK_DETECT;
  /* A base that ends in TFLite_Detection_PostProcess. */
  kiln_model *pp = NULL;
  uint8_t *bytes = NULL;
  size_t size = 0;
  REQUIRE(kiln_model_serialize(base, &bytes, &size, &err) == KILN_OK);
  REQUIRE(kiln_model_parse(bytes, size, true, "pp", &pp, &err) == KILN_OK);
  kiln_free(bytes);
  kiln_detect_config cfg = kiln_detect_config_default300();
  REQUIRE(kiln_detect_add_postprocess(pp, &cfg, &err) == KILN_OK);
  CHECK(kiln_ssd_train(pp, ds, &o, &m, NULL, &err) == KILN_ERR_UNSUPPORTED);
  CHECK_MSG(strstr(err.msg, "TFLite_Detection_PostProcess"), "%s", err.msg);
  kiln_model_free(pp);
  CHECK(m == NULL);
}

/* An allocator that counts allocations and fails the Nth (-1: none). */
typedef struct failing {
  int64_t count, fail_at;
  int failed;
} failing;

static void *fail_alloc(size_t bytes, void *ctx) {
  failing *f = ctx;
  if (f->count++ == f->fail_at) {
    f->failed++;
    return NULL;
  }
  return malloc(bytes);
}
static void *fail_realloc(void *ptr, size_t bytes, void *ctx) {
  failing *f = ctx;
  if (f->count++ == f->fail_at) {
    f->failed++;
    return NULL;
  }
  return realloc(ptr, bytes);
}
static void fail_free(void *ptr, void *ctx) {
  (void)ctx;
  free(ptr);
}

/* Allocations failing at 24 points spread over a whole run, the first and
 * the last included (setup, images, checkpoints, export): KILN_ERR_NOMEM,
 * no model, no crash and no leak (the sanitizer build checks leaks). */
static void test_allocation_failures(void) {
  char ckpt[512];
  snprintf(ckpt, sizeof ckpt, "%s/ckpt", dir);
  progress_log log = {0};
  kiln_ssd_train_options o = quick_options(&log);
  o.epochs = 2;
  o.threads = 1;
  o.checkpoint = ckpt;
  failing f = {0, -1, 0};
  const kiln_allocator a = {fail_alloc, fail_realloc, fail_free, &f};
  kiln_model *m = NULL;
  kiln_error err;
  kiln_set_allocator(&a);
  const kiln_status full = kiln_ssd_train(base, ds, &o, &m, NULL, &err);
  kiln_set_allocator(NULL);
  REQUIRE(full == KILN_OK && m);
  kiln_model_free(m);
  const int64_t total = f.count;
  int nomem = 0;
  for (int k = 0; k < 24; k++) {
    f = (failing){0, (total - 1) * k / 23, 0};
    m = NULL;
    kiln_set_allocator(&a);
    const kiln_status st = kiln_ssd_train(base, ds, &o, &m, NULL, &err);
    kiln_set_allocator(NULL);
    CHECK_MSG(st == KILN_ERR_NOMEM && m == NULL && f.failed == 1,
              "allocation %lld of %lld failing: status %d: %s", (long long)f.fail_at,
              (long long)total, (int)st, err.msg);
    nomem += st == KILN_ERR_NOMEM;
    kiln_model_free(m);
  }
  CHECK(nomem == 24);
  unlink(ckpt);
}

/* ---- Driver mode ---- */

typedef struct split_map {
  double ap, ap50;
} split_map;

/* COCO mAP of a post-processed model's detections (score >= 0.01) on one
 * split of ds. */
static kiln_status evaluate(const kiln_model *m, kiln_split split, split_map *out,
                            kiln_error *err) {
  kiln_interp *it = NULL;
  kiln_status s = kiln_interp_create(m, NULL, &it, err);
  if (s != KILN_OK) return s;
  int64_t n_gt = 0, n_det = 0;
  for (int32_t i = 0; i < ds->n_images; i++) n_gt += ds->images[i].n_boxes;
  kiln_eval_gt *gts = kiln_calloc((size_t)n_gt + 1, sizeof *gts);
  kiln_eval_det *dets = kiln_calloc((size_t)ds->n_images * 100 + 1, sizeof *dets);
  n_gt = 0;
  for (int32_t i = 0; i < ds->n_images && gts && dets; i++) {
    const kiln_data_image *im = &ds->images[i];
    if (im->split != split) continue;
    for (int32_t b = 0; b < im->n_boxes; b++) {
      const kiln_data_box *x = &im->boxes[b];
      gts[n_gt++] = (kiln_eval_gt){i, x->label, x->xmin, x->ymin, x->xmax - x->xmin,
                                   x->ymax - x->ymin, -1.0, false};
    }
    kiln_detection found[100];
    const int32_t n = detect(it, m, i, found, 100, 0.01f);
    if (n < 0) {
      s = kiln_fail(err, KILN_ERR_INTERNAL, "detection failed on image %d", (int)i);
      break;
    }
    const float w = (float)im->width, h = (float)im->height;
    for (int32_t k = 0; k < n; k++) {
      const kiln_detection *d = &found[k];
      const float x0 = fmaxf(0.0f, d->xmin * w), y0 = fmaxf(0.0f, d->ymin * h);
      const float x1 = fminf(w, d->xmax * w), y1 = fminf(h, d->ymax * h);
      if (d->class_id < 1 || d->class_id > ds->n_labels || x1 <= x0 || y1 <= y0) continue;
      dets[n_det++] = (kiln_eval_det){i, d->class_id - 1, d->score, x0, y0, x1 - x0, y1 - y0};
    }
  }
  if (s == KILN_OK && (!gts || !dets)) s = kiln_fail(err, KILN_ERR_NOMEM, "out of memory");
  kiln_eval_detection ev;
  if (s == KILN_OK) s = kiln_eval_detect(gts, n_gt, dets, n_det, ds->n_labels, &ev, err);
  if (s == KILN_OK) {
    *out = (split_map){ev.stats[KILN_EVAL_AP], ev.stats[KILN_EVAL_AP50]};
    kiln_eval_detection_free(&ev);
  }
  kiln_free(gts);
  kiln_free(dets);
  kiln_interp_free(it);
  return s;
}

static kiln_status quantize(const kiln_model *float_pp, kiln_model **out, kiln_error *err) {
  kiln_quant_options qo = kiln_quant_options_default();
  kiln_quantizer *q = NULL;
  kiln_status s = kiln_quantizer_create(float_pp, &qo, &q, err);
  for (int32_t i = 0, used = 0; i < ds->n_images && used < 100 && s == KILN_OK; i++) {
    if (ds->images[i].split != KILN_SPLIT_TRAIN) continue;
    kiln_image img;
    s = kiln_dataset_load_image(ds, i, &img, err);
    if (s == KILN_OK) s = kiln_quantizer_add_image(q, &img, err);
    kiln_image_free(&img);
    used++;
  }
  if (s == KILN_OK) s = kiln_quantizer_finish(q, out, err);
  kiln_quantizer_free(q);
  return s;
}

static void progress_line(void *ctx, const kiln_ssd_progress *p) {
  (void)ctx;
  if (p->epoch_end)
    fprintf(stderr, "epoch %lld/%lld loss %.4f (class %.4f, box %.4f) %.1f images/s\n",
            (long long)p->epoch + 1, (long long)p->epochs, p->loss, p->class_loss, p->box_loss,
            p->images_per_second);
}

static int drive(const char *data, const char *out) {
  kiln_error err;
  kiln_data_options dopt = kiln_data_options_default();
  char path[4096];
  if (kiln_data_import(data, &dopt, &ds, &err) != KILN_OK) {
    fprintf(stderr, "%s\n", err.msg);
    return 1;
  }
  kiln_ssd_train_options o = kiln_ssd_train_options_default();
  const char *epochs = getenv("KILN_SSD_TRAIN_EPOCHS"), *augment = getenv("KILN_SSD_TRAIN_AUGMENT");
  const char *lr = getenv("KILN_SSD_TRAIN_LR");
  if (epochs) o.epochs = atoi(epochs);
  if (lr) o.optim.schedule.base_lr = (float)atof(lr);
  if (augment && atoi(augment) == 0) {
    o.hflip = false;
    o.crop_probability = 0.0f;
    o.color_jitter = 0.0f;
  }
  o.on_progress = progress_line;
  kiln_ssd_train_report rep;
  kiln_model *raw = NULL, *pp = NULL, *int8 = NULL;
  kiln_detect_config cfg;
  split_map fm[2] = {0}, qm[2] = {0};
  kiln_status s = kiln_ssd_train(base, ds, &o, &raw, &rep, &err);
  snprintf(path, sizeof path, "%s/model_raw.tflite", out);
  if (s == KILN_OK) s = kiln_model_save(raw, path, &err);
  if (s == KILN_OK) s = kiln_ssd_detect_config(raw, &cfg, &err);
  if (s == KILN_OK) s = kiln_detect_add_postprocess(raw, &cfg, &err);
  pp = raw;
  snprintf(path, sizeof path, "%s/model_float.tflite", out);
  if (s == KILN_OK) s = kiln_model_save(pp, path, &err);
  if (s == KILN_OK) s = quantize(pp, &int8, &err);
  snprintf(path, sizeof path, "%s/model_int8.tflite", out);
  if (s == KILN_OK) s = kiln_model_save(int8, path, &err);
  const kiln_split splits[2] = {KILN_SPLIT_TRAIN, KILN_SPLIT_TEST};
  for (int k = 0; k < 2 && s == KILN_OK; k++) {
    s = evaluate(pp, splits[k], &fm[k], &err);
    if (s == KILN_OK) s = evaluate(int8, splits[k], &qm[k], &err);
  }
  if (s == KILN_OK) {
    snprintf(path, sizeof path, "%s/labels.txt", out);
    FILE *f = fopen(path, "w");
    for (int32_t i = 0; f && i < ds->n_labels; i++) fprintf(f, "%s\n", ds->labels[i]);
    snprintf(path, sizeof path, "%s/metrics.json", out);
    FILE *j = fopen(path, "w");
    if (j)
      fprintf(j,
              "{\"train_images\": %d, \"epochs\": %lld, \"seconds\": %.2f, "
              "\"feature_seconds\": %.2f, \"images_per_second\": %.1f, \"final_loss\": %.5f,\n"
              " \"float\": {\"train\": {\"map\": %.5f, \"map50\": %.5f}, "
              "\"test\": {\"map\": %.5f, \"map50\": %.5f}},\n"
              " \"int8\": {\"train\": {\"map\": %.5f, \"map50\": %.5f}, "
              "\"test\": {\"map\": %.5f, \"map50\": %.5f}}}\n",
              (int)rep.train_images, (long long)rep.epochs_done, rep.seconds, rep.feature_seconds,
              rep.images_per_second, rep.final_loss, fm[0].ap, fm[0].ap50, fm[1].ap, fm[1].ap50,
              qm[0].ap, qm[0].ap50, qm[1].ap, qm[1].ap50);
    if (!f || !j || fclose(f) != 0 || fclose(j) != 0)
      s = kiln_fail(&err, KILN_ERR_IO, "%s: cannot write the outputs", out);
  }
  if (s != KILN_OK) fprintf(stderr, "%s\n", err.msg);
  kiln_model_free(pp);
  kiln_model_free(int8);
  return s == KILN_OK ? 0 : 1;
}

int main(void) {
  kiln_error err;
  if (kiln_model_load(test_model_path(SSD), &base, &err) != KILN_OK) {
    fprintf(stderr, "%s\n", err.msg);
    return 1;
  }
  const char *data = getenv("KILN_SSD_TRAIN_DATA"), *out = getenv("KILN_SSD_TRAIN_OUT");
  if (data && out) {
    const int rc = drive(data, out);
    kiln_dataset_free(ds);
    kiln_model_free(base);
    return rc;
  }
  const char *tmp = getenv("TMPDIR");
  snprintf(dir, sizeof dir, "%s/kiln-ssd-train-XXXXXX", tmp && *tmp ? tmp : "/tmp");
  if (!mkdtemp(dir) || !write_dataset()) {
    fprintf(stderr, "cannot write the synthetic dataset under %s\n", dir);
    return 1;
  }
  kiln_data_options dopt = kiln_data_options_default();
  if (kiln_data_import(dir, &dopt, &ds, &err) != KILN_OK) {
    fprintf(stderr, "%s\n", err.msg);
    return 1;
  }
  RUN(test_train_and_detect);
  RUN(test_untrained_baseline);
  RUN(test_resume);
  RUN(test_augmented_determinism);
  RUN(test_errors);
  RUN(test_allocation_failures);
  kiln_model_free(trained);
  kiln_dataset_free(ds);
  kiln_model_free(base);
  remove_dataset();
  return test_summary();
}
