/*
 * Evaluation of a detector on a dataset split (kiln_trainer_eval_detector,
 * kiln/trainer.h): kiln_detector (raw SSD outputs or a post-processed
 * model) on every image, one interpreter and detector per thread, boxes in
 * the image's pixels against the dataset's boxes with COCO's rules
 * (kiln_eval_detect). Raw SSD outputs are decoded with NMS per class and up
 * to 100 detections per image, as COCO evaluation expects; a
 * post-processed model keeps the settings built into its op.
 */
#include <strings.h>
#include <string.h>

#include "kiln/vision.h"
#include "train/pipeline_int.h"

#define MAX_DETS 100
#define DEFAULT_THRESHOLD 0.01f

typedef struct det_ctx {
  const struct kiln_dataset *ds;
  const int32_t *images;
  int32_t n;
  kiln_interp **interps;
  kiln_detector **dets;   /* [threads] */
  kiln_image_norm norm;
  const int32_t *class_to_label; /* [model classes + 1]: dataset label of a class id, or -1 */
  int32_t n_class_ids;
  kiln_box *boxes;        /* [n][MAX_DETS] */
  int32_t *counts;        /* [n] */
  const kiln_model_eval_options *opt;
  double start;
} det_ctx;

static kiln_status detect_item(void *ctx, int32_t item, int32_t thread, kiln_error *err) {
  det_ctx *c = ctx;
  kiln_image img;
  kiln_status s = pl_load_image(c->ds, c->images[item], &img, err);
  if (s != KILN_OK) return s;
  s = kiln_detector_run(c->dets[thread], &img, &c->norm, c->boxes + (size_t)item * MAX_DETS,
                        MAX_DETS, &c->counts[item], NULL, err);
  kiln_image_free(&img);
  if (s != KILN_OK) kiln_error_prefix(err, "%s", pl_image_source(c->ds, c->images[item]));
  return s;
}

static void detect_done(void *ctx, int32_t done) {
  const det_ctx *c = ctx;
  kiln_train_progress p = pl_progress(KILN_EVENT_ITEM, KILN_PHASE_EVALUATE);
  p.done = done;
  p.total = c->n;
  p.elapsed_seconds = pl_now() - c->start;
  p.images_per_second = p.elapsed_seconds > 0 ? done / p.elapsed_seconds : -1.0;
  p.eta_seconds = p.images_per_second > 0 ? (c->n - done) / p.images_per_second : -1.0;
  pl_report(c->opt->on_progress, c->opt->ctx, &p);
}

/* Class id (kiln_box: 1 is the first real class) -> dataset label, by name
 * when the model has names (a first name "???" / "background" is the
 * background column), else id - 1. */
static kiln_status class_map(const struct kiln_dataset *ds, const pl_names *names,
                             int32_t *map, int32_t n_ids, kiln_error *err) {
  const bool background = names->names && names->n > 0 &&
                          (strcmp(names->names[0], "???") == 0 ||
                           strcasecmp(names->names[0], "background") == 0 ||
                           strcmp(names->names[0], "__background__") == 0);
  int32_t matched = 0;
  for (int32_t id = 0; id < n_ids; id++) {
    map[id] = -1;
    if (!names->names) {
      map[id] = id >= 1 && id - 1 < pl_n_labels(ds) ? id - 1 : -1;
    } else {
      const int32_t at = background ? id : id - 1;
      if (at >= 0 && at < names->n && !(background && at == 0))
        map[id] = pl_dataset_label_index(ds, names->names[at]);
    }
    matched += map[id] >= 0;
  }
  if (matched == 0)
    return kiln_fail(err, KILN_ERR_INVALID_ARG,
                     "none of the model's class names is a label of the dataset");
  return KILN_OK;
}

static kiln_status gather(const det_ctx *c, kiln_eval_gt **gts, int64_t *n_gt,
                          kiln_eval_det **dets, int64_t *n_det, kiln_error *err) {
  int64_t g = 0, d = 0;
  int32_t most = 0;
  for (int32_t i = 0; i < c->n; i++) {
    const int32_t nb = pl_image_box_count(c->ds, c->images[i]);
    g += nb;
    most = nb > most ? nb : most;
    d += c->counts[i];
  }
  *gts = kiln_malloc((size_t)(g + 1) * sizeof **gts);
  *dets = kiln_malloc((size_t)(d + 1) * sizeof **dets);
  float *xyxy = kiln_malloc((size_t)(most + 1) * 4 * sizeof *xyxy);
  int32_t *labels = kiln_malloc((size_t)(most + 1) * sizeof *labels);
  bool *crowd = kiln_malloc((size_t)(most + 1) * sizeof *crowd);
  kiln_status s = KILN_OK;
  if (!*gts || !*dets || !xyxy || !labels || !crowd) {
    s = kiln_fail(err, KILN_ERR_NOMEM, "%lld boxes", (long long)(g + d));
    goto done;
  }
  *n_gt = *n_det = 0;
  for (int32_t i = 0; i < c->n; i++) {
    const int32_t image = c->images[i], nb = pl_image_box_count(c->ds, image);
    pl_image_boxes(c->ds, image, xyxy, labels, crowd);
    for (int32_t b = 0; b < nb; b++) {
      kiln_eval_gt *t = &(*gts)[(*n_gt)++];
      t->image = image;
      t->category = labels[b];
      t->x = xyxy[4 * b];
      t->y = xyxy[4 * b + 1];
      t->w = (double)xyxy[4 * b + 2] - xyxy[4 * b];
      t->h = (double)xyxy[4 * b + 3] - xyxy[4 * b + 1];
      t->area = -1.0;
      t->iscrowd = crowd[b];
    }
    for (int32_t k = 0; k < c->counts[i]; k++) {
      const kiln_box *bx = &c->boxes[(size_t)i * MAX_DETS + k];
      const int32_t label = bx->class_id >= 0 && bx->class_id < c->n_class_ids
                                ? c->class_to_label[bx->class_id] : -1;
      if (label < 0) continue;
      kiln_eval_det *t = &(*dets)[(*n_det)++];
      t->image = image;
      t->category = label;
      t->score = bx->score;
      t->x = bx->xmin;
      t->y = bx->ymin;
      t->w = (double)bx->xmax - bx->xmin;
      t->h = (double)bx->ymax - bx->ymin;
    }
  }
done:
  kiln_free(xyxy);
  kiln_free(labels);
  kiln_free(crowd);
  return s;
}

/* The number of class columns of the model (for the id map): the raw
 * class output's last dimension, or the post-processing op's classes + 1. */
static int32_t class_ids(const kiln_model *m) {
  int32_t best = 0;
  for (int32_t i = 0; i < m->n_outputs; i++) {
    const kiln_tensor *t = &m->tensors[m->outputs[i]];
    if (t->rank == 3 && t->shape[2] > best && t->shape[2] != 4) best = t->shape[2];
  }
  return best > 0 ? best : 4096;
}

kiln_status kiln_trainer_eval_detector(const kiln_model *model, const struct kiln_dataset *ds,
                                       const kiln_model_eval_options *opt,
                                       kiln_eval_detection *out, kiln_error *err) {
  memset(out, 0, sizeof *out);
  det_ctx c;
  memset(&c, 0, sizeof c);
  c.ds = ds;
  c.opt = opt;
  c.norm = pl_eval_norm(model, opt->norm);
  const int32_t threads = pl_eval_threads(opt->threads);
  pl_names names;
  kiln_status s = pl_eval_labels(model, opt, &names, err);
  if (s != KILN_OK) return s;
  int32_t *images = NULL, *map = NULL;
  kiln_eval_gt *gts = NULL;
  kiln_eval_det *dets = NULL;
  int64_t n_gt = 0, n_det = 0;
  c.n_class_ids = class_ids(model);
  map = kiln_malloc((size_t)c.n_class_ids * sizeof *map);
  if (!map) {
    s = kiln_fail(err, KILN_ERR_NOMEM, "class map");
    goto done;
  }
  if ((s = class_map(ds, &names, map, c.n_class_ids, err)) != KILN_OK) goto done;
  c.class_to_label = map;
  if ((s = pl_split_images(ds, opt->split, &images, &c.n, err)) != KILN_OK) goto done;
  if (c.n == 0) {
    s = kiln_fail(err, KILN_ERR_INVALID_ARG, "no images in the split");
    goto done;
  }
  c.images = images;
  c.boxes = kiln_malloc((size_t)c.n * MAX_DETS * sizeof *c.boxes);
  c.counts = kiln_calloc((size_t)c.n, sizeof *c.counts);
  c.dets = kiln_calloc((size_t)threads, sizeof *c.dets);
  if (!c.boxes || !c.counts || !c.dets) {
    s = kiln_fail(err, KILN_ERR_NOMEM, "detections of %d images", (int)c.n);
    goto done;
  }
  if ((s = pl_eval_interps(model, threads, &c.interps, err)) != KILN_OK) goto done;
  kiln_detect_config cfg = kiln_detect_config_default300();
  cfg.max_detections = MAX_DETS;
  cfg.class_agnostic = false;
  cfg.detections_per_class = MAX_DETS;
  cfg.score_threshold = opt->score_threshold > 0 ? opt->score_threshold : DEFAULT_THRESHOLD;
  for (int32_t t = 0; t < threads && s == KILN_OK; t++)
    if ((s = kiln_detector_create(c.interps[t], model, &cfg, &c.dets[t], err)) == KILN_OK)
      kiln_detector_set_threshold(c.dets[t], cfg.score_threshold);
  if (s != KILN_OK) goto done;
  c.start = pl_now();
  if ((s = pl_parallel(threads, c.n, detect_item, &c, detect_done, NULL, NULL, err)) != KILN_OK)
    goto done;
  if ((s = gather(&c, &gts, &n_gt, &dets, &n_det, err)) != KILN_OK) goto done;
  s = kiln_eval_detect(gts, n_gt, dets, n_det, pl_n_labels(ds), out, err);
done:
  for (int32_t t = 0; c.dets && t < threads; t++) kiln_detector_free(c.dets[t]);
  kiln_free(c.dets);
  pl_eval_interps_free(c.interps, threads);
  pl_names_free(&names);
  kiln_free(images);
  kiln_free(map);
  kiln_free(c.boxes);
  kiln_free(c.counts);
  kiln_free(gts);
  kiln_free(dets);
  return s;
}
