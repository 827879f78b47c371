/*
 * Evaluation of a classifier on a dataset split (kiln_trainer_eval_classifier,
 * kiln/trainer.h), shared by the trainer's report and `kiln eval` so both
 * count the same: images decoded and prepared by pipeline_input.c, one
 * interpreter per thread, scores dequantized, metrics by kiln/eval.h.
 * Also the class-name matching both evaluations use.
 */
#include <string.h>

#include "kiln/vision.h"
#include "train/pipeline_int.h"

kiln_image_norm pl_eval_norm(const kiln_model *model, const kiln_image_norm *given) {
  if (given) return *given;
  kiln_image_norm n;
  if (kiln_trainer_get_norm(model, &n)) return n;
  const kiln_tensor *t = &model->tensors[model->inputs[0]];
  kiln_tensor_view v = {t->name, t->dtype, t->rank, t->shape, &t->quant, NULL, 0};
  return kiln_image_norm_for_input(&v);
}

kiln_status pl_eval_labels(const kiln_model *model, const kiln_model_eval_options *opt,
                           pl_names *out, kiln_error *err) {
  memset(out, 0, sizeof *out);
  if (opt->labels) {
    out->names = (char **)opt->labels;
    out->n = opt->n_labels;
    return KILN_OK;
  }
  kiln_status s = kiln_trainer_get_labels(model, &out->names, &out->n, err);
  out->owned = s == KILN_OK && out->names != NULL;
  return s;
}

void pl_names_free(pl_names *n) {
  if (n->owned) kiln_trainer_labels_free(n->names, n->n);
  memset(n, 0, sizeof *n);
}

int32_t pl_dataset_label_index(const struct kiln_dataset *ds, const char *name) {
  if (!name) return -1;
  for (int32_t l = 0; l < pl_n_labels(ds); l++)
    if (strcmp(pl_label_name(ds, l), name) == 0) return l;
  return -1;
}

typedef struct cls_ctx {
  const struct kiln_dataset *ds;
  const int32_t *images;
  int32_t n, classes;
  kiln_interp **interps;
  uint8_t *pixels; /* [threads][h * w * c] */
  pl_input in;
  float *scores;   /* [n][classes] */
  const kiln_model_eval_options *opt;
  double start;
} cls_ctx;

static kiln_status classify_item(void *ctx, int32_t item, int32_t thread, kiln_error *err) {
  cls_ctx *c = ctx;
  const int32_t image = c->images[item];
  kiln_image img;
  kiln_status s = pl_load_image(c->ds, image, &img, err);
  if (s != KILN_OK) return s;
  uint8_t *px = c->pixels + (size_t)thread * c->in.h * c->in.w * c->in.c;
  s = pl_image_pixels(&img, c->in.h, c->in.w, c->in.c, px, err);
  kiln_image_free(&img);
  kiln_interp *it = c->interps[thread];
  if (s == KILN_OK) {
    pl_pixels_to_input(px, &c->in, kiln_interp_input(it, 0).data);
    s = kiln_interp_invoke(it, err);
  }
  if (s == KILN_OK)
    s = kiln_vision_output_float(it, 0, c->scores + (size_t)item * c->classes, c->classes, err);
  if (s != KILN_OK) kiln_error_prefix(err, "%s", pl_image_source(c->ds, image));
  return s;
}

static void classify_done(void *ctx, int32_t done) {
  const cls_ctx *c = ctx;
  kiln_train_progress p = pl_progress(KILN_EVENT_ITEM, KILN_PHASE_EVALUATE);
  p.done = done;
  p.total = c->n;
  p.elapsed_seconds = pl_now() - c->start;
  p.images_per_second = p.elapsed_seconds > 0 ? done / p.elapsed_seconds : -1.0;
  p.eta_seconds = p.images_per_second > 0 ? (c->n - done) / p.images_per_second : -1.0;
  pl_report(c->opt->on_progress, c->opt->ctx, &p);
}

kiln_status pl_eval_interps(const kiln_model *model, int32_t threads, kiln_interp ***out,
                            kiln_error *err) {
  kiln_interp **its = kiln_calloc((size_t)threads, sizeof *its);
  if (!its) return kiln_fail(err, KILN_ERR_NOMEM, "%d interpreters", (int)threads);
  kiln_interp_options io = {.n_threads = 1};
  for (int32_t t = 0; t < threads; t++) {
    kiln_status s = kiln_interp_create(model, &io, &its[t], err);
    if (s != KILN_OK) {
      pl_eval_interps_free(its, threads);
      return s;
    }
  }
  *out = its;
  return KILN_OK;
}

void pl_eval_interps_free(kiln_interp **its, int32_t threads) {
  for (int32_t t = 0; its && t < threads; t++) kiln_interp_free(its[t]);
  kiln_free(its);
}

int32_t pl_eval_threads(int32_t threads) { return threads > 0 ? threads : kiln_system_cpus(); }

kiln_status kiln_trainer_eval_classifier(const kiln_model *model, const struct kiln_dataset *ds,
                                         const kiln_model_eval_options *opt,
                                         kiln_eval_classification *out, kiln_error *err) {
  memset(out, 0, sizeof *out);
  if (model->n_outputs != 1)
    return kiln_fail(err, KILN_ERR_INVALID_ARG, "a classifier has one output, not %d",
                     (int)model->n_outputs);
  const int64_t classes = kiln_tensor_elements(&model->tensors[model->outputs[0]]);
  if (classes < 2 || classes > (1 << 20))
    return kiln_fail(err, KILN_ERR_INVALID_ARG, "output '%s' has %lld values, not class scores",
                     model->tensors[model->outputs[0]].name, (long long)classes);
  cls_ctx c;
  memset(&c, 0, sizeof c);
  c.ds = ds;
  c.classes = (int32_t)classes;
  c.opt = opt;
  const kiln_image_norm norm = pl_eval_norm(model, opt->norm);
  kiln_status s = pl_input_of(model, &norm, &c.in, err);
  if (s != KILN_OK) return s;
  pl_names names;
  if ((s = pl_eval_labels(model, opt, &names, err)) != KILN_OK) return s;
  const int32_t threads = pl_eval_threads(opt->threads);
  int32_t *truth = NULL;
  int32_t *images = NULL;
  if (names.names && names.n != classes) {
    s = kiln_fail(err, KILN_ERR_INVALID_ARG, "%d labels for a model of %lld classes",
                  (int)names.n, (long long)classes);
    goto done;
  }
  if ((s = pl_split_images(ds, opt->split, &images, &c.n, err)) != KILN_OK) goto done;
  if (c.n == 0) {
    s = kiln_fail(err, KILN_ERR_INVALID_ARG, "no images in the %s split",
                  opt->split < 0 ? "whole" : opt->split == 1 ? "train" : opt->split == 2 ? "val" : "test");
    goto done;
  }
  c.images = images;
  /* dataset label -> model class */
  truth = kiln_malloc((size_t)c.n * sizeof *truth);
  c.scores = kiln_malloc((size_t)c.n * (size_t)classes * sizeof *c.scores);
  c.pixels = kiln_malloc((size_t)threads * c.in.h * c.in.w * c.in.c);
  if (!truth || !c.scores || !c.pixels) {
    s = kiln_fail(err, KILN_ERR_NOMEM, "evaluation of %d images", (int)c.n);
    goto done;
  }
  for (int32_t i = 0; i < c.n; i++) {
    const int32_t l = pl_image_label(ds, images[i]);
    int32_t k = l;
    if (names.names) {
      k = -1;
      for (int32_t j = 0; j < names.n && k < 0; j++)
        if (strcmp(names.names[j], pl_label_name(ds, l)) == 0) k = j;
    }
    if (k < 0 || k >= classes) {
      s = kiln_fail(err, KILN_ERR_INVALID_ARG, "%s: label '%s' is not one of the model's classes",
                    pl_image_source(ds, images[i]), pl_label_name(ds, l));
      goto done;
    }
    truth[i] = k;
  }
  if ((s = pl_eval_interps(model, threads, &c.interps, err)) != KILN_OK) goto done;
  c.start = pl_now();
  if ((s = pl_parallel(threads, c.n, classify_item, &c, classify_done, NULL, NULL, err)) != KILN_OK)
    goto done;
  s = kiln_eval_classify(truth, NULL, c.scores, c.n, c.classes, c.classes > 5 ? 5 : 0, out, err);
done:
  pl_eval_interps_free(c.interps, threads);
  pl_names_free(&names);
  kiln_free(images);
  kiln_free(truth);
  kiln_free(c.scores);
  kiln_free(c.pixels);
  return s;
}
