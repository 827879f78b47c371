/*
 * On-device learning from a dataset to files (kiln_ondevice_run, `kiln
 * imprint`, `kiln retrain-last`): checks everything that can be checked
 * before extraction (the output directory, unreadable images, classes
 * without training images), extracts the training images' embeddings,
 * learns, writes the model and labels.txt atomically, and evaluates the
 * written model on the test split. Also the embedding-extractor builder
 * (`kiln convert --embedding-extractor`), which reuses the trainer's
 * backbone cut (train/classify_tl.h).
 */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "base/file.h"
#include "kiln/data.h"
#include "train/classify_tl.h"
#include "train/ondevice_int.h"

/* out_path's directory must exist (checked before any work). */
static kiln_status check_out_dir(const char *out_path, char *labels_path, size_t cap,
                                 kiln_error *err) {
  if (!out_path || !*out_path) return kiln_fail(err, KILN_ERR_INVALID_ARG, "no output path");
  const char *slash = strrchr(out_path, '/');
  char dir[4096];
  if (!slash) snprintf(dir, sizeof dir, ".");
  else if (slash == out_path) snprintf(dir, sizeof dir, "/");
  else snprintf(dir, sizeof dir, "%.*s", (int)(slash - out_path), out_path);
  struct stat st;
  if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
    return kiln_fail(err, KILN_ERR_IO, "%s: the directory '%s' does not exist", out_path, dir);
  if (slash && slash[1] == '\0')
    return kiln_fail(err, KILN_ERR_INVALID_ARG, "%s: names a directory, not a model file", out_path);
  snprintf(labels_path, cap, "%s/labels.txt", dir);
  return KILN_OK;
}

/* A classification dataset whose every image was read: an unreadable or
 * missing image is an error here (the import only warns), since a few-shot
 * class silently losing images is worse than stopping. */
static kiln_status check_dataset(const kiln_dataset *ds, kiln_error *err) {
  if (ds->task != KILN_TASK_CLASSIFY)
    return kiln_fail(err, KILN_ERR_INVALID_ARG,
                     "the dataset has boxes (detection); on-device learning needs one label per "
                     "image, e.g. a folder per class");
  for (int32_t i = 0; i < ds->n_problems; i++) {
    const kiln_data_issue issue = ds->problems[i].issue;
    if (issue == KILN_ISSUE_UNREADABLE_IMAGE || issue == KILN_ISSUE_MISSING_IMAGE)
      return kiln_fail(err, KILN_ERR_FORMAT, "%s (every image is used; fix or remove it)",
                       ds->problems[i].message);
  }
  return KILN_OK;
}

/* Training images (every split but test) and their labels; each class
 * needs one. */
static kiln_status training_images(const kiln_dataset *ds, int32_t **images, int32_t **labels,
                                   int32_t *n, int32_t *n_test, kiln_error *err) {
  *images = kiln_malloc(((size_t)ds->n_images + 1) * sizeof **images);
  *labels = kiln_malloc(((size_t)ds->n_images + 1) * sizeof **labels);
  int32_t *per_class = kiln_calloc((size_t)ds->n_labels + 1, sizeof *per_class);
  if (!*images || !*labels || !per_class) {
    kiln_free(per_class);
    return kiln_fail(err, KILN_ERR_NOMEM, "%d images", (int)ds->n_images);
  }
  *n = *n_test = 0;
  for (int32_t i = 0; i < ds->n_images; i++) {
    if (ds->images[i].split == KILN_SPLIT_TEST) {
      (*n_test)++;
      continue;
    }
    (*images)[*n] = i;
    (*labels)[(*n)++] = ds->images[i].label;
    per_class[ds->images[i].label]++;
  }
  kiln_status s = KILN_OK;
  for (int32_t c = 0; c < ds->n_labels && s == KILN_OK; c++)
    if (per_class[c] == 0)
      s = kiln_fail(err, KILN_ERR_INVALID_ARG,
                    "class '%s' has no training images (an empty folder, or only test images)",
                    ds->labels[c]);
  kiln_free(per_class);
  return s;
}

static kiln_status write_labels(const kiln_model *m, const char *path, kiln_error *err) {
  const kiln_metadata *md = kiln_trainer_get_metadata(m, "kiln_labels");
  if (!md) return kiln_fail(err, KILN_ERR_INTERNAL, "the new model has no labels");
  return kiln_file_write_atomic(path, md->data, md->bytes, err);
}

static void count_classes(const kiln_ondevice *od, const kiln_dataset *ds, bool keep,
                          kiln_ondevice_report *rep) {
  int32_t updated = 0;
  for (int32_t c = 0; keep && c < ds->n_labels; c++)
    for (int32_t k = 0; k < od->n_classes; k++) updated += strcmp(od->names[k], ds->labels[c]) == 0;
  rep->updated_classes = updated;
  rep->kept_classes = keep ? od->n_classes - updated : 0;
  rep->new_classes = ds->n_labels - updated;
  rep->classes = rep->kept_classes + updated + rep->new_classes;
}

kiln_status kiln_ondevice_run(const kiln_model *base, const kiln_dataset *ds,
                              const char *out_path, const kiln_ondevice_run_options *opt,
                              kiln_ondevice_report *rep, kiln_error *err) {
  memset(rep, 0, sizeof *rep);
  rep->test_accuracy = -1.0;
  if (opt->keep_classes && opt->method != KILN_ONDEVICE_IMPRINT)
    return kiln_fail(err, KILN_ERR_INVALID_ARG, "keeping classes is for imprinting only");
  char labels_path[4200];
  kiln_status s = check_out_dir(out_path, labels_path, sizeof labels_path, err);
  if (s == KILN_OK) s = check_dataset(ds, err);
  if (s != KILN_OK) return s;
  kiln_ondevice *od = NULL;
  int32_t *images = NULL, *labels = NULL, n = 0;
  float *emb = NULL;
  kiln_model *m = NULL;
  if ((s = kiln_ondevice_open(base, &od, err)) != KILN_OK) return s;
  if (opt->keep_classes && !od->imprinting) {
    s = kiln_fail(err, KILN_ERR_INVALID_ARG,
                  "--keep-classes needs an imprinting classifier (L2_NORMALIZATION -> "
                  "FULLY_CONNECTED -> MUL -> SOFTMAX, e.g. the output of 'kiln imprint'); the base "
                  "model is an embedding extractor without imprinted classes");
    goto done;
  }
  if ((s = training_images(ds, &images, &labels, &n, &rep->test_images, err)) != KILN_OK) goto done;
  rep->train_images = n;
  rep->embedding_size = od->dim;
  rep->embedding_dtype = od->dtype;
  emb = kiln_malloc((size_t)n * od->dim * sizeof *emb + 1);
  if (!emb) {
    s = kiln_fail(err, KILN_ERR_NOMEM, "embeddings of %d images", (int)n);
    goto done;
  }
  double t0 = pl_now();
  if ((s = kiln_ondevice_embed_dataset(od, ds, images, n, opt->threads, emb, err)) != KILN_OK)
    goto done;
  rep->extract_seconds = pl_now() - t0;
  kiln_ondevice_samples smp = {emb, labels, n, (const char *const *)ds->labels, ds->n_labels};
  t0 = pl_now();
  s = opt->method == KILN_ONDEVICE_IMPRINT
          ? kiln_ondevice_imprint(od, &smp, opt->keep_classes, &m, err)
          : kiln_ondevice_retrain_last(od, &smp, &opt->sgd, &m, &rep->sgd, err);
  if (s != KILN_OK) goto done;
  rep->learn_seconds = pl_now() - t0;
  count_classes(od, ds, opt->keep_classes, rep);
  if ((s = kiln_model_save(m, out_path, err)) != KILN_OK || (s = write_labels(m, labels_path, err)) != KILN_OK)
    goto done;
  if (rep->test_images > 0) {
    kiln_model_eval_options eo = {.split = KILN_SPLIT_TEST, .threads = opt->threads};
    kiln_eval_classification ev;
    t0 = pl_now();
    if ((s = kiln_trainer_eval_classifier(m, ds, &eo, &ev, err)) != KILN_OK) goto done;
    rep->eval_seconds = pl_now() - t0;
    rep->test_accuracy = ev.accuracy;
    kiln_eval_classification_free(&ev);
  }
done:
  kiln_model_free(m);
  kiln_free(emb);
  kiln_free(images);
  kiln_free(labels);
  kiln_ondevice_free(od);
  return s;
}

/* ---- Embedding extractors ---- */

kiln_status kiln_ondevice_make_extractor(const char *path, const char *feature,
                                         kiln_model **out, kiln_error *err) {
  *out = NULL;
  if (!path) return kiln_fail(err, KILN_ERR_INVALID_ARG, "no model path");
  tl_backbone b;
  kiln_status s = tl_backbone_open(path, feature, &b, err);
  if (s != KILN_OK) return s;
  kiln_model *m = NULL;
  if ((s = tl_feature_model(&b, &m, err)) != KILN_OK) goto done;
  const int32_t pooled = m->outputs[0];
  const int32_t e = kiln_model_add_tensor(m, "embedding/l2_normalized", KILN_F32, 2,
                                          m->tensors[pooled].shape, NULL, NULL, err);
  kiln_op_options o;
  memset(&o, 0, sizeof o);
  o.type = KILN_OPTS_L2NORM;
  o.new_shape_count = -1;
  if (e < 0 || kiln_model_add_op(m, KILN_OP_L2_NORMALIZATION, NULL, &pooled, 1, &e, 1, &o, NULL, 0,
                                 err) < 0) {
    s = err ? err->status : KILN_ERR_INTERNAL;
    goto done;
  }
  if ((s = kiln_model_set_io(m, m->inputs, 1, &e, 1, err)) != KILN_OK) goto done;
  if ((s = kiln_trainer_set_norm(m, &b.norm, err)) != KILN_OK) goto done;
  m->description = "kiln: embedding extractor (L2-normalized)";
  *out = m;
  m = NULL;
done:
  kiln_model_free(m);
  tl_backbone_free(&b);
  return s;
}
