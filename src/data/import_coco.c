/*
 * data/import_coco.c: COCO detection JSON (through jansson):
 *   {"images": [{"id", "file_name", "width", "height"}],
 *    "annotations": [{"id", "image_id", "category_id", "bbox": [x, y, w, h], "iscrowd"}],
 *    "categories": [{"id", "name"}]}
 * bbox is the top-left corner and size in pixels. Category ids need not be
 * contiguous or start anywhere: labels are the categories sorted by id.
 * Several files (instances_train.json, instances_val.json, or Roboflow's
 * train/_annotations.coco.json ...) must agree on the categories; each
 * file's split comes from its folder or its name (train, val, test).
 * An image's file is looked up beside the JSON, at the top, in images/,
 * and in the folder named after the file (instances_train2017 -> train2017/).
 */
#include <ctype.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "data/data_int.h"

typedef struct id_map {
  long long id;
  int32_t value; /* item index, or label name index; -1 missing */
} id_map;

static int by_id(const void *a, const void *b) {
  const id_map *x = a, *y = b;
  return (x->id > y->id) - (x->id < y->id);
}

static const id_map *find_id(const id_map *m, int32_t n, long long id) {
  id_map key = {id, 0};
  return n ? bsearch(&key, m, (size_t)n, sizeof *m, by_id) : NULL;
}

typedef struct coco_state {
  id_map *cats;            /* category id -> index into names, sorted */
  int32_t n_cats;
  const char **names;      /* category names by sorted id */
  const char *first_file;  /* the file that defined the categories */
  smap by_image;           /* image rel path -> item */
} coco_state;

static bool contains_word(const char *s, const char *w) {
  size_t n = strlen(w);
  for (; *s; s++)
    if (strncasecmp(s, w, n) == 0) return true;
  return false;
}

static kiln_split split_of(const char *rel) {
  const char *slash = strchr(rel, '/');
  if (slash) {
    char dir[256];
    snprintf(dir, sizeof dir, "%.*s", (int)(slash - rel), rel);
    kiln_split s = split_from_name(dir);
    if (s != KILN_SPLIT_UNASSIGNED) return s;
  }
  const char *base = fs_basename(rel);
  if (contains_word(base, "train")) return KILN_SPLIT_TRAIN;
  if (contains_word(base, "val")) return KILN_SPLIT_VAL;
  if (contains_word(base, "test")) return KILN_SPLIT_TEST;
  return KILN_SPLIT_UNASSIGNED;
}

static kiln_status read_categories(dbuild *db, coco_state *cs, const char *name, json_t *cats) {
  size_t n = json_array_size(cats);
  id_map *m = kiln_calloc(n + 1, sizeof *m);
  const char **names = kiln_calloc(n + 1, sizeof *names);
  kiln_status s = KILN_OK;
  if (!m || !names) {
    s = KILN_ERR_NOMEM;
    goto out;
  }
  for (size_t i = 0; i < n; i++) {
    json_t *c = json_array_get(cats, i), *id = json_object_get(c, "id"), *nm = json_object_get(c, "name");
    if (!json_is_integer(id) || !json_is_string(nm) || !*json_string_value(nm)) {
      s = db_problem(db, KILN_ISSUE_BAD_ANNOTATION,
                     "%s: categories[%zu]: needs an integer \"id\" and a non-empty \"name\"", name, i);
      goto out;
    }
    m[i] = (id_map){json_integer_value(id), (int32_t)i};
  }
  qsort(m, n, sizeof *m, by_id);
  for (size_t i = 0; i < n; i++) {
    if (i > 0 && m[i].id == m[i - 1].id) {
      s = db_problem(db, KILN_ISSUE_BAD_ANNOTATION, "%s: category id %lld is used twice", name, m[i].id);
      goto out;
    }
    json_t *c = json_array_get(cats, (size_t)m[i].value);
    names[i] = db_str(db, json_string_value(json_object_get(c, "name")));
    m[i].value = (int32_t)i;
    for (size_t j = 0; j < i; j++)
      if (strcmp(names[i], names[j]) == 0) {
        s = db_problem(db, KILN_ISSUE_BAD_ANNOTATION, "%s: category name '%s' is used by ids %lld and %lld",
                       name, names[i], m[j].id, m[i].id);
        goto out;
      }
  }
  if (cs->first_file) { /* later files must agree with the first */
    bool same = (int32_t)n == cs->n_cats;
    for (size_t i = 0; same && i < n; i++)
      same = m[i].id == cs->cats[i].id && strcmp(names[i], cs->names[i]) == 0;
    if (!same)
      s = db_problem(db, KILN_ISSUE_BAD_ANNOTATION, "%s: categories differ from those of %s", name,
                     cs->first_file);
    goto out;
  }
  cs->cats = m;
  cs->names = names;
  cs->n_cats = (int32_t)n;
  cs->first_file = name;
  return db_fix_labels(db, names, (int32_t)n);
out:
  kiln_free(m);
  kiln_free(names);
  return s;
}

/* The image file for file_name, as a path relative to the root; NULL when
 * missing. An absolute or ".." name is looked up by its last component. */
static const char *find_image(dbuild *db, const char *json_rel, const char *file_name) {
  const char *fn = rel_is_safe(file_name) ? file_name : fs_basename(file_name);
  const char *slash = strrchr(json_rel, '/');
  const char *base = fs_basename(json_rel), *us = strrchr(base, '_'), *dot = strrchr(base, '.');
  int named_len = us && dot && dot > us + 1 ? (int)(dot - us - 1) : 0;
  char cand[5][4096];
  int n = 0;
  if (slash) snprintf(cand[n++], sizeof cand[0], "%.*s/%s", (int)(slash - json_rel), json_rel, fn);
  snprintf(cand[n++], sizeof cand[0], "%s", fn);
  snprintf(cand[n++], sizeof cand[0], "images/%s", fn);
  if (named_len) {
    snprintf(cand[n++], sizeof cand[0], "%.*s/%s", named_len, us + 1, fn);
    snprintf(cand[n++], sizeof cand[0], "images/%.*s/%s", named_len, us + 1, fn);
  }
  for (int i = 0; i < n; i++) {
    if (fs_is_file(db_join(db, db->root, cand[i]))) return db_str(db, cand[i]);
  }
  return NULL;
}

static kiln_status read_images(dbuild *db, coco_state *cs, const char *rel, const char *name,
                               json_t *images, kiln_split split, id_map *ids) {
  kiln_status s = KILN_OK;
  size_t n = json_array_size(images);
  for (size_t i = 0; i < n && s == KILN_OK; i++) {
    json_t *im = json_array_get(images, i), *id = json_object_get(im, "id"),
           *fn = json_object_get(im, "file_name");
    if (!json_is_integer(id) || !json_is_string(fn) || !*json_string_value(fn))
      return db_problem(db, KILN_ISSUE_BAD_ANNOTATION,
                        "%s: images[%zu]: needs an integer \"id\" and a \"file_name\"", name, i);
    ids[i] = (id_map){json_integer_value(id), -1};
    const char *img_rel = find_image(db, rel, json_string_value(fn));
    if (!img_rel) {
      s = db_problem(db, KILN_ISSUE_MISSING_IMAGE,
                     "%s: images[%zu]: '%s' not found (looked beside the JSON, at the top and in "
                     "images/); skipped", name, i, json_string_value(fn));
      continue;
    }
    int32_t item = smap_get(&cs->by_image, img_rel);
    if (item >= 0) {
      s = db_problem(db, KILN_ISSUE_CONFLICT, "%s: images[%zu]: %s is listed again (id %lld); annotations merged",
                     name, i, db->items[item].name, ids[i].id);
    } else {
      const char *full = db_join(db, db->root, img_rel), *img_name = db_name(db, img_rel);
      s = db_add_file(db, full, img_name, KILN_SPLIT_UNASSIGNED, &item);
      if (s == KILN_OK) s = smap_put(&cs->by_image, img_rel, item);
      if (s != KILN_OK) return s;
      json_t *w = json_object_get(im, "width"), *h = json_object_get(im, "height");
      if (json_is_integer(w) && json_is_integer(h) && json_integer_value(w) > 0 &&
          json_integer_value(h) > 0 && json_integer_value(w) <= INT32_MAX &&
          json_integer_value(h) <= INT32_MAX) {
        db->items[item].declared_w = (int32_t)json_integer_value(w);
        db->items[item].declared_h = (int32_t)json_integer_value(h);
        db->items[item].declared_at = (dloc){name, DLOC_NONE, 0};
      }
    }
    ids[i].value = item;
    db_annotated(db, item, name);
    s = db_set_split(db, item, split, &(dloc){name, DLOC_NONE, 0});
  }
  return s;
}

/* bbox as 4 finite numbers, or false. */
static bool read_bbox(json_t *bbox, float v[4]) {
  if (!json_is_array(bbox) || json_array_size(bbox) != 4) return false;
  for (size_t k = 0; k < 4; k++) {
    json_t *x = json_array_get(bbox, k);
    if (!json_is_number(x)) return false;
    double d = json_number_value(x);
    if (!(d > -3.0e38 && d < 3.0e38)) return false;
    v[k] = (float)d;
  }
  return true;
}

static kiln_status read_annotations(dbuild *db, coco_state *cs, const char *name, json_t *anns,
                                    const id_map *ids, int32_t n_ids) {
  kiln_status s = KILN_OK;
  size_t n = json_array_size(anns);
  for (size_t i = 0; i < n && s == KILN_OK; i++) {
    json_t *a = json_array_get(anns, i), *iid = json_object_get(a, "image_id"),
           *cid = json_object_get(a, "category_id"), *crowd = json_object_get(a, "iscrowd");
    dloc at = {name, DLOC_ANNOTATION, (int32_t)i};
    float v[4];
    if (!json_is_integer(iid) || !json_is_integer(cid))
      return db_problem(db, KILN_ISSUE_BAD_ANNOTATION,
                        "%s: annotations[%zu]: needs an integer \"image_id\" and \"category_id\"", name, i);
    if (!read_bbox(json_object_get(a, "bbox"), v)) {
      char *text = json_dumps(json_object_get(a, "bbox"), JSON_COMPACT | JSON_ENCODE_ANY);
      s = db_problem(db, KILN_ISSUE_BAD_ANNOTATION,
                     "%s: annotations[%zu]: bbox %.60s is not 4 numbers [x, y, width, height]", name, i,
                     text ? text : "(missing)");
      free(text);
      return s;
    }
    const id_map *img = find_id(ids, n_ids, json_integer_value(iid));
    if (!img) {
      s = db_problem(db, KILN_ISSUE_MISSING_IMAGE, "%s: annotations[%zu]: image_id %lld is not in images; skipped",
                     name, i, (long long)json_integer_value(iid));
      continue;
    }
    if (img->value < 0) continue; /* its image is missing: reported once */
    const id_map *cat = find_id(cs->cats, cs->n_cats, json_integer_value(cid));
    if (!cat) {
      s = db_problem(db, KILN_ISSUE_UNKNOWN_LABEL,
                     "%s: annotations[%zu] (%s): category_id %lld is not in categories; skipped", name, i,
                     db->items[img->value].name, (long long)json_integer_value(cid));
      db->items[img->value].dropped_boxes = true;
      continue;
    }
    int32_t label;
    s = db_label(db, cs->names[cat->value], &at, &label);
    if (s != KILN_OK) break;
    if (label < 0) {
      db->items[img->value].dropped_boxes = true;
      continue;
    }
    uint32_t flags = json_is_integer(crowd) && json_integer_value(crowd) == 1 ? KILN_BOX_CROWD : 0;
    s = db_add_box(db, img->value, DBOX_XYWH_PX, v, label, flags, &at);
  }
  return s;
}

static kiln_status import_file(dbuild *db, coco_state *cs, const char *rel) {
  const char *path = db_join(db, db->root, rel), *name = db_name(db, rel);
  json_error_t je;
  json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
  if (!root)
    return db_problem(db, KILN_ISSUE_SYNTAX, "%s: line %d: JSON error: %s", name, je.line, je.text);
  kiln_status s = KILN_OK;
  json_t *images = json_object_get(root, "images"), *anns = json_object_get(root, "annotations"),
         *cats = json_object_get(root, "categories");
  const char *missing = !json_is_array(images) ? "images" : !json_is_array(anns) ? "annotations"
                        : !json_is_array(cats) ? "categories" : NULL;
  if (!json_is_object(root) || missing) {
    s = db_problem(db, KILN_ISSUE_BAD_ANNOTATION, "%s: not COCO detection JSON: no \"%s\" array", name,
                   missing ? missing : "images");
    json_decref(root);
    return s;
  }
  int32_t errors = db->ds->n_errors;
  s = read_categories(db, cs, name, cats);
  id_map *ids = kiln_calloc(json_array_size(images) + 1, sizeof *ids);
  if (s == KILN_OK && !ids) s = KILN_ERR_NOMEM;
  if (s == KILN_OK && db->ds->n_errors == errors)
    s = read_images(db, cs, rel, name, images, split_of(rel), ids);
  int32_t n_ids = (int32_t)json_array_size(images);
  if (s == KILN_OK && db->ds->n_errors == errors) {
    qsort(ids, (size_t)n_ids, sizeof *ids, by_id);
    for (int32_t i = 1; i < n_ids && s == KILN_OK; i++)
      if (ids[i].id == ids[i - 1].id)
        s = db_problem(db, KILN_ISSUE_BAD_ANNOTATION, "%s: image id %lld is used twice", name, ids[i].id);
  }
  if (s == KILN_OK && db->ds->n_errors == errors) s = read_annotations(db, cs, name, anns, ids, n_ids);
  kiln_free(ids);
  json_decref(root);
  return s;
}

kiln_status import_coco(dbuild *db) {
  db->task = KILN_TASK_DETECT;
  db->shared_ann = true;
  slist files = {0};
  kiln_status s = db->file ? slist_add(db, &files, db->file) : find_coco(db, &files);
  if (s == KILN_OK && files.n == 0)
    s = db_problem(db, KILN_ISSUE_NOT_FOUND, "%s: no COCO .json (with \"images\" and \"annotations\") found",
                   db->display);
  coco_state cs;
  memset(&cs, 0, sizeof cs);
  for (int32_t i = 0; i < files.n && s == KILN_OK; i++) s = import_file(db, &cs, files.s[i]);
  kiln_free(cs.cats);
  kiln_free(cs.names);
  smap_free(&cs.by_image);
  slist_free(&files);
  return s;
}
