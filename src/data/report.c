/*
 * data/report.c: the health summary of a dataset (counts per split and
 * label, image and box sizes) and its JSON form for `kiln data check
 * --json` and the studio.
 */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data/data_int.h"

static int by_float(const void *a, const void *b) {
  float x = *(const float *)a, y = *(const float *)b;
  return (x > y) - (x < y);
}

/* min, median, max of v[0..n) (sorted in place); zeros when n == 0. */
static void stats3(float *v, int64_t n, float out[3]) {
  if (n == 0) {
    out[0] = out[1] = out[2] = 0;
    return;
  }
  qsort(v, (size_t)n, sizeof *v, by_float);
  out[0] = v[0];
  out[1] = n % 2 ? v[n / 2] : 0.5f * (v[n / 2 - 1] + v[n / 2]);
  out[2] = v[n - 1];
}

kiln_status kiln_dataset_summarize(const kiln_dataset *ds, kiln_data_summary *out, kiln_error *err) {
  memset(out, 0, sizeof *out);
  int64_t n_boxes = 0;
  for (int32_t i = 0; i < ds->n_images; i++) n_boxes += ds->images[i].n_boxes;
  out->labels = kiln_calloc((size_t)ds->n_labels + 1, sizeof *out->labels);
  float *w = kiln_malloc(((size_t)n_boxes + 1) * sizeof *w);
  float *h = kiln_malloc(((size_t)n_boxes + 1) * sizeof *h);
  float *r = kiln_malloc(((size_t)n_boxes + 1) * sizeof *r);
  uint8_t *seen = kiln_calloc((size_t)ds->n_labels + 1, 1);
  if (!out->labels || !w || !h || !r || !seen) {
    kiln_free(w);
    kiln_free(h);
    kiln_free(r);
    kiln_free(seen);
    kiln_data_summary_free(out);
    return kiln_fail(err, KILN_ERR_NOMEM, "out of memory summarizing %d images", ds->n_images);
  }
  for (int32_t i = 0; i < ds->n_images; i++) {
    const kiln_data_image *im = &ds->images[i];
    out->images[im->split]++;
    out->total_images++;
    if (i == 0 || im->width < out->min_width) out->min_width = im->width;
    if (i == 0 || im->height < out->min_height) out->min_height = im->height;
    if (im->width > out->max_width) out->max_width = im->width;
    if (im->height > out->max_height) out->max_height = im->height;
    if (im->label >= 0) out->labels[im->label].images[im->split]++;
    if (ds->task == KILN_TASK_DETECT && im->n_boxes == 0) out->unannotated++;
    if (im->n_boxes > out->max_boxes_per_image) out->max_boxes_per_image = im->n_boxes;
    for (int32_t k = 0; k < im->n_boxes; k++) {
      const kiln_data_box *b = &im->boxes[k];
      int32_t l = b->label;
      out->labels[l].boxes++;
      if (!seen[l]) out->labels[l].images[im->split]++;
      seen[l] = 1;
      w[out->boxes] = b->xmax - b->xmin;
      h[out->boxes] = b->ymax - b->ymin;
      r[out->boxes] = sqrtf(w[out->boxes] * h[out->boxes] / ((float)im->width * (float)im->height));
      out->boxes++;
    }
    for (int32_t k = 0; k < im->n_boxes; k++) seen[im->boxes[k].label] = 0;
  }
  stats3(w, out->boxes, out->box_width);
  stats3(h, out->boxes, out->box_height);
  stats3(r, out->boxes, out->box_relative);
  out->usable = ds->n_errors == 0;
  kiln_free(w);
  kiln_free(h);
  kiln_free(r);
  kiln_free(seen);
  return KILN_OK;
}

void kiln_data_summary_free(kiln_data_summary *s) {
  if (!s) return;
  kiln_free(s->labels);
  s->labels = NULL;
}

/* A JSON string of s; bytes that are not UTF-8 (a file name in another
 * encoding) become '?' rather than losing the whole string. */
static json_t *jstr(const char *s) {
  json_t *j = json_string(s);
  if (j) return j;
  char *copy = kiln_strdup(s);
  if (!copy) return json_null();
  for (char *p = copy; *p; p++)
    if ((unsigned char)*p >= 0x80) *p = '?';
  j = json_string(copy);
  kiln_free(copy);
  return j ? j : json_null();
}

static json_t *per_split(const int32_t v[KILN_SPLIT_COUNT]) {
  json_t *o = json_object();
  int64_t total = 0;
  static const kiln_split order[] = {KILN_SPLIT_TRAIN, KILN_SPLIT_VAL, KILN_SPLIT_TEST, KILN_SPLIT_UNASSIGNED};
  for (int k = 0; k < KILN_SPLIT_COUNT; k++) {
    json_object_set_new(o, kiln_split_name(order[k]), json_integer(v[order[k]]));
    total += v[order[k]];
  }
  json_object_set_new(o, "total", json_integer(total));
  return o;
}

static json_t *triple(const float v[3]) { return json_pack("[f, f, f]", (double)v[0], (double)v[1], (double)v[2]); }

kiln_status kiln_dataset_report_json(const kiln_dataset *ds, char **out, kiln_error *err) {
  *out = NULL;
  kiln_data_summary sum;
  kiln_status s = kiln_dataset_summarize(ds, &sum, err);
  if (s != KILN_OK) return s;
  json_t *r = json_object();
  json_object_set_new(r, "format", json_string(kiln_data_format_name(ds->format)));
  json_object_set_new(r, "detected_by", ds->detected_by ? jstr(ds->detected_by) : json_null());
  json_object_set_new(r, "task", json_string(kiln_data_task_name(ds->task)));
  json_object_set_new(r, "usable", json_boolean(sum.usable));
  json_object_set_new(r, "errors", json_integer(ds->n_errors));
  json_object_set_new(r, "warnings", json_integer(ds->n_warnings));
  json_object_set_new(r, "images", per_split(sum.images));
  json_object_set_new(r, "image_size", json_pack("{s:[i, i], s:[i, i]}", "min", sum.min_width, sum.min_height,
                                                 "max", sum.max_width, sum.max_height));
  json_t *labels = json_array();
  for (int32_t l = 0; l < ds->n_labels; l++) {
    json_t *o = json_object();
    json_object_set_new(o, "name", jstr(ds->labels[l]));
    json_object_set_new(o, "images", per_split(sum.labels[l].images));
    if (ds->task == KILN_TASK_DETECT) json_object_set_new(o, "boxes", json_integer(sum.labels[l].boxes));
    json_array_append_new(labels, o);
  }
  json_object_set_new(r, "labels", labels);
  if (ds->task == KILN_TASK_DETECT) {
    json_t *b = json_object();
    json_object_set_new(b, "total", json_integer(sum.boxes));
    json_object_set_new(b, "max_per_image", json_integer(sum.max_boxes_per_image));
    json_object_set_new(b, "background_images", json_integer(sum.unannotated));
    json_object_set_new(b, "width", triple(sum.box_width));
    json_object_set_new(b, "height", triple(sum.box_height));
    json_object_set_new(b, "relative", triple(sum.box_relative));
    json_object_set_new(r, "boxes", b);
  }
  json_t *issues = json_object();
  for (int k = 0; k < KILN_DATA_ISSUE_COUNT; k++)
    if (ds->issue_counts[k])
      json_object_set_new(issues, kiln_data_issue_name((kiln_data_issue)k), json_integer(ds->issue_counts[k]));
  json_object_set_new(r, "issues", issues);
  json_t *problems = json_array();
  for (int32_t i = 0; i < ds->n_problems; i++) {
    const kiln_data_problem *p = &ds->problems[i];
    json_array_append_new(problems, json_pack("{s:s, s:s, s:o}", "severity",
                                              kiln_data_issue_severity(p->issue) == KILN_DATA_ERROR ? "error" : "warning",
                                              "issue", kiln_data_issue_name(p->issue), "message", jstr(p->message)));
  }
  json_object_set_new(r, "problems", problems);
  kiln_data_summary_free(&sum);
  char *text = json_dumps(r, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
  json_decref(r);
  if (!text) return kiln_fail(err, KILN_ERR_NOMEM, "out of memory writing the dataset report");
  *out = kiln_strdup(text);
  free(text);
  return *out ? KILN_OK : kiln_fail(err, KILN_ERR_NOMEM, "out of memory writing the dataset report");
}
