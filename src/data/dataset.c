/*
 * data/dataset.c: kiln_data_import (what PATH is, archive extraction,
 * format detection, the importer, validation), the dataset's lifetime,
 * loading an image's pixels, label lists, and the names of formats,
 * splits, tasks and issues.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "base/file.h"
#include "data/data_int.h"

kiln_data_options kiln_data_options_default(void) {
  kiln_data_options o;
  memset(&o, 0, sizeof o);
  o.format = KILN_DATA_AUTO;
  return o;
}

static const char *const format_names[KILN_DATA_FORMAT_COUNT] = {
    "auto", "kiln", "idx", "yolo", "coco", "automl", "voc", "folders"};

const char *kiln_data_format_name(kiln_data_format format) {
  return (unsigned)format < KILN_DATA_FORMAT_COUNT ? format_names[format] : "unknown";
}

bool kiln_data_format_parse(const char *name, kiln_data_format *out) {
  for (int i = 0; i < KILN_DATA_FORMAT_COUNT; i++)
    if (strcmp(name, format_names[i]) == 0) {
      *out = (kiln_data_format)i;
      return true;
    }
  return false;
}

const char *kiln_split_name(kiln_split split) {
  switch (split) {
    case KILN_SPLIT_UNASSIGNED: return "unassigned";
    case KILN_SPLIT_TRAIN: return "train";
    case KILN_SPLIT_VAL: return "val";
    case KILN_SPLIT_TEST: return "test";
  }
  return "unknown";
}

const char *kiln_data_task_name(kiln_data_task task) {
  return task == KILN_TASK_CLASSIFY ? "classify" : task == KILN_TASK_DETECT ? "detect" : "unknown";
}

static const char *const issue_names[KILN_DATA_ISSUE_COUNT] = {
    "not_found",     "syntax",        "unsafe",        "bad_annotation", "unusable",
    "unreadable_image", "missing_image", "ignored_file", "box_clamped",  "box_empty",
    "box_small",     "unknown_label", "duplicate",     "unannotated",    "conflict",
    "size_mismatch", "few_images",    "imbalance"};

const char *kiln_data_issue_name(kiln_data_issue issue) {
  return (unsigned)issue < KILN_DATA_ISSUE_COUNT ? issue_names[issue] : "unknown";
}

kiln_data_severity kiln_data_issue_severity(kiln_data_issue issue) {
  return issue <= KILN_ISSUE_UNUSABLE ? KILN_DATA_ERROR : KILN_DATA_WARNING;
}

void kiln_dataset_free(kiln_dataset *ds) {
  if (!ds) return;
  kiln_data_store *st = ds->store;
  if (st) {
    if (st->temp_dir) {
      fs_remove_tree(st->temp_dir);
      kiln_free(st->temp_dir);
    }
    for (int32_t i = 0; i < st->n_blobs; i++) kiln_free(st->blobs[i]);
    kiln_free(st->blobs);
    kiln_pool_destroy(&st->pool);
    kiln_free(st);
  }
  kiln_free(ds->labels);
  kiln_free(ds->images);
  kiln_free(ds->problems);
  kiln_free(ds);
}

/* ---- what PATH is ---- */

static bool is_idx_name(const char *name) {
  return strstr(name, "idx3-ubyte") != NULL || fs_has_ext(name, ".idx3");
}

/* The format an annotation file given as PATH stands for. */
static kiln_data_format format_of_file(const char *path) {
  const char *name = fs_basename(path);
  if (fs_has_ext(name, ".csv")) return KILN_DATA_AUTOML;
  if (fs_has_ext(name, ".yaml") || fs_has_ext(name, ".yml")) return KILN_DATA_YOLO;
  if (is_idx_name(name)) return KILN_DATA_IDX;
  if (fs_has_ext(name, ".json"))
    return file_head_contains(path, "\"kiln_dataset\"") ? KILN_DATA_KILN : KILN_DATA_COCO;
  if (fs_has_ext(name, ".xml")) return KILN_DATA_VOC;
  return KILN_DATA_AUTO;
}

/* The folder of path ("." for a bare name). */
static const char *dir_of(dbuild *db, const char *path) {
  const char *slash = strrchr(path, '/');
  if (!slash) return ".";
  if (slash == path) return "/";
  return db_strn(db, path, (size_t)(slash - path));
}

/* An annotation file given as PATH: the dataset is its folder, or the
 * folder above when that is annotations/ (VOC's Annotations/, COCO's
 * annotations/), so image paths resolve as for the whole folder. */
static void file_root(dbuild *db, const char *path) {
  const char *dir = dir_of(db, path), *name = fs_basename(dir);
  if (strcasecmp(name, "annotations") == 0) {
    size_t keep = (size_t)(name - dir); /* up to and with the '/' */
    if (keep > 1) keep--;               /* without it, unless it is "/" */
    db->root = keep ? db_strn(db, dir, keep) : ".";
    db->file = db_join(db, name, fs_basename(path));
  } else {
    db->root = dir;
    db->file = db_str(db, fs_basename(path));
  }
}

static kiln_status run_importer(dbuild *db, kiln_data_format f) {
  switch (f) {
    case KILN_DATA_KILN: return import_kiln(db);
    case KILN_DATA_IDX: return import_idx(db);
    case KILN_DATA_YOLO: return import_yolo(db);
    case KILN_DATA_COCO: return import_coco(db);
    case KILN_DATA_AUTOML: return import_automl(db);
    case KILN_DATA_VOC: return import_voc(db);
    case KILN_DATA_FOLDERS: return import_folders(db);
    case KILN_DATA_AUTO: break;
  }
  return KILN_ERR_INTERNAL;
}

static kiln_status check_options(const kiln_data_options *o, kiln_error *err) {
  if ((unsigned)o->format >= KILN_DATA_FORMAT_COUNT)
    return kiln_fail(err, KILN_ERR_INVALID_ARG, "data options: format %d out of range", (int)o->format);
  if (o->n_labels < 0 || (o->n_labels > 0 && !o->labels))
    return kiln_fail(err, KILN_ERR_INVALID_ARG, "data options: %d labels without a list", o->n_labels);
  for (int32_t i = 0; i < o->n_labels; i++) {
    if (!o->labels[i] || !*o->labels[i])
      return kiln_fail(err, KILN_ERR_INVALID_ARG, "data options: label %d is empty", i);
    for (int32_t j = 0; j < i; j++)
      if (strcmp(o->labels[i], o->labels[j]) == 0)
        return kiln_fail(err, KILN_ERR_INVALID_ARG, "data options: label '%s' given twice (%d and %d)",
                         o->labels[i], j, i);
  }
  return KILN_OK;
}

/* Finds the root, prefix and format; records NOT_FOUND problems. */
static kiln_status locate(dbuild *db, const char *path, kiln_data_format *format) {
  struct stat st;
  if (stat(path, &st) != 0)
    return db_problem(db, KILN_ISSUE_NOT_FOUND, "%s: no such file or directory", path) == KILN_OK
               ? KILN_ERR_IO : KILN_ERR_NOMEM;
  if (S_ISDIR(st.st_mode)) {
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/') n--; /* "data/" -> "data": names are cut after root + '/' */
    db->root = db_strn(db, path, n);
    return KILN_OK;
  }
  if (!S_ISREG(st.st_mode))
    return db_problem(db, KILN_ISSUE_NOT_FOUND, "%s: not a directory or a regular file", path) == KILN_OK
               ? KILN_ERR_IO : KILN_ERR_NOMEM;
  if (data_is_archive_name(path)) {
    const char *root, *inner;
    kiln_status s = data_extract(db, path, &root, &inner);
    if (s != KILN_OK) return s;
    db->root = root;
    char prefix[4096];
    snprintf(prefix, sizeof prefix, "%s/%s", fs_basename(path), inner);
    db->prefix = db_str(db, prefix);
    return KILN_OK;
  }
  kiln_data_format f = format_of_file(path);
  if (f == KILN_DATA_AUTO)
    return db_problem(db, KILN_ISSUE_NOT_FOUND,
                      "%s: not a dataset: expected a directory, an archive (.zip, .tar, .tar.gz, "
                      ".tgz, .tar.bz2, .tar.xz) or an annotation file (.csv, .json, .yaml, "
                      "*idx3-ubyte)", path) == KILN_OK ? KILN_ERR_IO : KILN_ERR_NOMEM;
  file_root(db, path);
  if (*format == KILN_DATA_AUTO) {
    *format = f;
    db->ds->detected_by = db_str(db, fs_basename(path));
  }
  return KILN_OK;
}

static void free_builder(dbuild *db) {
  for (int32_t i = 0; i < db->n_items; i++) kiln_free(db->items[i].boxes);
  kiln_free(db->items);
  kiln_free(db->label_names);
  smap_free(&db->label_map);
}

static kiln_status import_into(dbuild *db, const char *path, kiln_data_format format) {
  kiln_dataset *ds = db->ds;
  for (int32_t i = 0; i < db->opt->n_labels; i++) {
    int32_t idx;
    if (db_label(db, db->opt->labels[i], &(dloc){0}, &idx) != KILN_OK) return KILN_ERR_NOMEM;
  }
  db->labels_fixed = db->labels_from_options = db->opt->n_labels > 0;
  if (format != KILN_DATA_AUTO) ds->detected_by = "--format";
  kiln_status s = locate(db, path, &format);
  if (s != KILN_OK) return s;
  if (format == KILN_DATA_AUTO) {
    const char *why = NULL;
    s = data_detect(db, &format, &why);
    if (s != KILN_OK) return s;
    if (format == KILN_DATA_AUTO) return KILN_ERR_IO;
    ds->detected_by = why;
  }
  ds->format = format;
  s = run_importer(db, format);
  if (s == KILN_OK) s = db_finish(db);
  ds->task = db->task;
  return s;
}

kiln_status kiln_data_import(const char *path, const kiln_data_options *options,
                             kiln_dataset **out, kiln_error *err) {
  *out = NULL;
  kiln_data_options o = options ? *options : kiln_data_options_default();
  if (!path || !*path) return kiln_fail(err, KILN_ERR_INVALID_ARG, "data import: no path");
  kiln_status s = check_options(&o, err);
  if (s != KILN_OK) return s;
  kiln_dataset *ds = kiln_calloc(1, sizeof *ds);
  if (ds) ds->store = kiln_calloc(1, sizeof *ds->store);
  if (!ds || !ds->store) {
    kiln_free(ds);
    return kiln_fail(err, KILN_ERR_NOMEM, "%s: out of memory", path);
  }
  kiln_pool_init(&ds->store->pool);
  ds->task = KILN_TASK_CLASSIFY;
  dbuild db;
  memset(&db, 0, sizeof db);
  db.ds = ds;
  db.opt = &o;
  db.prefix = "";
  db.display = path;
  db.task = KILN_TASK_CLASSIFY;
  s = import_into(&db, path, o.format);
  if (db.nomem) s = KILN_ERR_NOMEM;
  free_builder(&db);
  if (s == KILN_ERR_NOMEM || s == KILN_ERR_INTERNAL || s == KILN_ERR_LIMIT) {
    kiln_dataset_free(ds);
    return kiln_fail(err, s, "%s: %s while importing", path,
                     s == KILN_ERR_NOMEM ? "out of memory" : s == KILN_ERR_LIMIT ? "over a size limit" : "internal error");
  }
  *out = ds;
  if (ds->n_errors == 0) return KILN_OK;
  const char *first = "";
  for (int32_t i = 0; i < ds->n_problems; i++)
    if (kiln_data_issue_severity(ds->problems[i].issue) == KILN_DATA_ERROR) {
      first = ds->problems[i].message;
      break;
    }
  if (ds->n_errors > 1)
    kiln_fail(err, KILN_ERR_FORMAT, "%s (and %d more error%s)", first, ds->n_errors - 1,
              ds->n_errors == 2 ? "" : "s");
  else
    kiln_fail(err, KILN_ERR_FORMAT, "%s", first);
  return s == KILN_ERR_IO ? KILN_ERR_IO : KILN_ERR_FORMAT;
}

/* ---- pixels ---- */

kiln_status kiln_dataset_load_image(const kiln_dataset *ds, int32_t index, kiln_image *out,
                                    kiln_error *err) {
  memset(out, 0, sizeof *out);
  if (!ds || index < 0 || index >= ds->n_images)
    return kiln_fail(err, KILN_ERR_INVALID_ARG, "dataset image %d out of range (%d images)", index,
                     ds ? ds->n_images : 0);
  const kiln_data_image *im = &ds->images[index];
  if (!im->pixels) {
    kiln_mapped_file f;
    kiln_status s = kiln_file_map(im->path, &f, err);
    if (s != KILN_OK) return s;
    s = kiln_image_decode_memory(f.data, f.size, im->source, NULL, out, err);
    kiln_file_unmap(&f);
    return s;
  }
  kiln_status s = kiln_image_create(im->width, im->height, out, err);
  if (s != KILN_OK) return s;
  size_t n = (size_t)im->width * (size_t)im->height;
  if (im->channels == 3) {
    memcpy(out->pixels, im->pixels, n * 3);
  } else {
    for (size_t i = 0; i < n; i++)
      out->pixels[3 * i] = out->pixels[3 * i + 1] = out->pixels[3 * i + 2] = im->pixels[i];
  }
  return KILN_OK;
}

/* ---- label lists ---- */

void kiln_data_labels_free(char **names, int32_t n) {
  for (int32_t i = 0; names && i < n; i++) kiln_free(names[i]);
  kiln_free(names);
}

kiln_status kiln_data_labels_read(const char *path, char ***names, int32_t *n, kiln_error *err) {
  *names = NULL;
  *n = 0;
  char *text;
  size_t len;
  kiln_status s = fs_read_text(path, 64u << 20, &text, &len, err);
  if (s != KILN_OK) return s;
  if (memchr(text, '\0', len)) {
    kiln_free(text);
    return kiln_fail(err, KILN_ERR_FORMAT, "%s: not a text file (NUL byte)", path);
  }
  int32_t cap = 0, count = 0, line = 0;
  char **list = NULL;
  for (char *p = text; s == KILN_OK && *p;) {
    char *nl = strchr(p, '\n');
    if (nl) *nl = '\0';
    line++;
    while (isspace((unsigned char)*p)) p++;
    char *e = p + strlen(p);
    while (e > p && isspace((unsigned char)e[-1])) *--e = '\0';
    if (*p) {
      for (int32_t i = 0; i < count && s == KILN_OK; i++)
        if (strcmp(list[i], p) == 0)
          s = kiln_fail(err, KILN_ERR_FORMAT, "%s: line %d: label '%s' given twice", path, line, p);
      if (s == KILN_OK && count == cap) {
        cap = cap ? cap * 2 : 16;
        char **grown = kiln_realloc(list, (size_t)cap * sizeof *grown);
        if (!grown) s = kiln_fail(err, KILN_ERR_NOMEM, "%s: out of memory", path);
        else list = grown;
      }
      if (s == KILN_OK && !(list[count++] = kiln_strdup(p))) {
        count--;
        s = kiln_fail(err, KILN_ERR_NOMEM, "%s: out of memory", path);
      }
    }
    if (!nl) break;
    p = nl + 1;
  }
  kiln_free(text);
  if (s == KILN_OK && count == 0) s = kiln_fail(err, KILN_ERR_FORMAT, "%s: no labels", path);
  if (s != KILN_OK) {
    kiln_data_labels_free(list, count);
    return s;
  }
  *names = list;
  *n = count;
  return KILN_OK;
}
