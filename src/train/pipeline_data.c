/*
 * The dataset as the training pipeline sees it (train/pipeline_int.h):
 * split preparation, image lists per split, labels, boxes and the data's
 * fingerprint, through plain types so that files which also need
 * kiln/vision.h never include kiln/data.h.
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "kiln/data.h"
#include "train/pipeline_int.h"

/* Problems kept in report.json (the counts always cover all of them). */
#define REPORT_MAX_PROBLEMS 100

kiln_status kiln_trainer_prepare_splits(kiln_dataset *ds, kiln_error *err) {
  kiln_split_options so = kiln_split_options_default();
  kiln_status s = kiln_dataset_split(ds, &so, err);
  if (s != KILN_OK) return s;
  int32_t test = 0;
  for (int32_t i = 0; i < ds->n_images; i++) test += ds->images[i].split == KILN_SPLIT_TEST;
  if (test == 0) s = kiln_dataset_carve(ds, KILN_SPLIT_TRAIN, KILN_SPLIT_TEST, 0.1f, 0, NULL, err);
  return s;
}

kiln_status pl_split_images(const kiln_dataset *ds, int32_t split, int32_t **out, int32_t *n,
                            kiln_error *err) {
  *out = NULL;
  *n = 0;
  int32_t count = 0;
  for (int32_t i = 0; i < ds->n_images; i++) count += split < 0 || (int32_t)ds->images[i].split == split;
  if (count == 0) return KILN_OK;
  int32_t *list = kiln_malloc((size_t)count * sizeof *list);
  if (!list) return kiln_fail(err, KILN_ERR_NOMEM, "%d image indices", (int)count);
  int32_t k = 0;
  for (int32_t i = 0; i < ds->n_images; i++)
    if (split < 0 || (int32_t)ds->images[i].split == split) list[k++] = i;
  *out = list;
  *n = count;
  return KILN_OK;
}

int32_t pl_n_labels(const kiln_dataset *ds) { return ds->n_labels; }

const char *pl_label_name(const kiln_dataset *ds, int32_t label) {
  return label >= 0 && label < ds->n_labels ? ds->labels[label] : NULL;
}

int32_t pl_image_label(const kiln_dataset *ds, int32_t image) { return ds->images[image].label; }

kiln_status pl_load_image(const kiln_dataset *ds, int32_t image, kiln_image *out,
                          kiln_error *err) {
  return kiln_dataset_load_image(ds, image, out, err);
}

void pl_image_geometry(const kiln_dataset *ds, int32_t image, int32_t *width, int32_t *height,
                       bool *grey) {
  const kiln_data_image *im = &ds->images[image];
  *width = im->width;
  *height = im->height;
  *grey = im->pixels != NULL && im->channels == 1;
}

const char *pl_image_source(const kiln_dataset *ds, int32_t image) {
  return ds->images[image].source ? ds->images[image].source : ds->images[image].hash;
}

int32_t pl_image_box_count(const kiln_dataset *ds, int32_t image) {
  return ds->images[image].n_boxes;
}

void pl_image_boxes(const kiln_dataset *ds, int32_t image, float *xyxy, int32_t *label,
                    bool *crowd) {
  const kiln_data_image *im = &ds->images[image];
  for (int32_t b = 0; b < im->n_boxes; b++) {
    const kiln_data_box *box = &im->boxes[b];
    xyxy[4 * b + 0] = box->xmin;
    xyxy[4 * b + 1] = box->ymin;
    xyxy[4 * b + 2] = box->xmax;
    xyxy[4 * b + 3] = box->ymax;
    label[b] = box->label;
    crowd[b] = (box->flags & KILN_BOX_CROWD) != 0;
  }
}

uint64_t pl_hash(uint64_t h, const void *data, size_t n) {
  const unsigned char *p = data;
  for (size_t i = 0; i < n; i++) {
    h ^= p[i];
    h *= 1099511628211ull;
  }
  return h;
}

uint64_t pl_dataset_key(const kiln_dataset *ds) {
  uint64_t h = PL_HASH_INIT;
  const int32_t task = (int32_t)ds->task;
  h = pl_hash(h, &task, sizeof task);
  for (int32_t i = 0; i < ds->n_labels; i++) h = pl_hash_str(h, ds->labels[i]);
  for (int32_t i = 0; i < ds->n_images; i++) {
    const kiln_data_image *im = &ds->images[i];
    const int32_t fields[3] = {(int32_t)im->split, im->label, im->n_boxes};
    h = pl_hash(h, im->hash, KILN_DATA_HASH_HEX);
    h = pl_hash(h, fields, sizeof fields);
    for (int32_t b = 0; b < im->n_boxes; b++) {
      const kiln_data_box *box = &im->boxes[b];
      const float c[4] = {box->xmin, box->ymin, box->xmax, box->ymax};
      h = pl_hash(h, c, sizeof c);
      h = pl_hash(h, &box->label, sizeof box->label);
    }
  }
  return h;
}

json_t *pl_dataset_json(const kiln_dataset *ds, const char *path) {
  char *text = NULL;
  kiln_error err;
  json_t *r = NULL;
  if (kiln_dataset_report_json(ds, &text, &err) == KILN_OK) r = json_loads(text, 0, NULL);
  kiln_free(text);
  if (!r) r = json_object();
  json_t *problems = json_object_get(r, "problems");
  if (json_is_array(problems) && json_array_size(problems) > REPORT_MAX_PROBLEMS) {
    while (json_array_size(problems) > REPORT_MAX_PROBLEMS)
      json_array_remove(problems, json_array_size(problems) - 1);
    json_object_set_new(r, "problems_truncated", json_true());
  }
  json_object_set_new(r, "path", path ? json_string(path) : json_null());
  return r;
}
