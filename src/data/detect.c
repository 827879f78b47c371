/*
 * data/detect.c: telling the formats apart in a dataset directory (the
 * rules and their order are in kiln/data.h), and the "where are its
 * annotation files" searches the importers share with detection. Every
 * search returns KILN_ERR_NOMEM when memory runs out (never "not found").
 */
#include <stdio.h>
#include <string.h>

#include "base/file.h"
#include "data/data_int.h"

#define SNIFF_BYTES 4096

/* Finds needle in the first n bytes of hay. */
static bool contains(const unsigned char *hay, size_t n, const char *needle) {
  size_t k = strlen(needle);
  for (const unsigned char *p = hay; n >= k;) {
    const unsigned char *q = memchr(p, needle[0], n - k + 1);
    if (!q) return false;
    if (memcmp(q, needle, k) == 0) return true;
    n -= (size_t)(q - p) + 1;
    p = q + 1;
  }
  return false;
}

bool file_head_contains(const char *path, const char *needle) {
  kiln_mapped_file f;
  kiln_error e;
  if (kiln_file_map(path, &f, &e) != KILN_OK) return false;
  bool yes = f.data && contains(f.data, f.size < SNIFF_BYTES ? f.size : SNIFF_BYTES, needle);
  kiln_file_unmap(&f);
  return yes;
}

/* An object with "images" and "annotations" somewhere in it. */
static bool looks_like_coco(const char *path) {
  kiln_mapped_file f;
  kiln_error e;
  if (kiln_file_map(path, &f, &e) != KILN_OK) return false;
  size_t i = 0;
  while (i < f.size && (f.data[i] == ' ' || f.data[i] == '\n' || f.data[i] == '\r' || f.data[i] == '\t'))
    i++;
  bool yes = f.data && i < f.size && f.data[i] == '{' && contains(f.data, f.size, "\"images\"") &&
             contains(f.data, f.size, "\"annotations\"");
  kiln_file_unmap(&f);
  return yes;
}

static kiln_status find_kiln(dbuild *db, bool *found) {
  const char *p = db_join(db, db->root, "dataset.json");
  *found = fs_is_file(p) && file_head_contains(p, "\"kiln_dataset\"");
  return KILN_OK;
}

typedef kiln_status (*file_pred)(const char *path, bool *yes);

/* Files directly in root/sub ("" for root) accepted by pred, as paths
 * relative to root. An unreadable folder has none. */
static kiln_status files_in(dbuild *db, const char *sub, file_pred pred, slist *out) {
  const char *dir = *sub ? db_join(db, db->root, sub) : db->root;
  fs_entries e;
  kiln_error err;
  if (!fs_is_dir(dir)) return KILN_OK;
  kiln_status s = fs_list(dir, &e, &err);
  if (s != KILN_OK) return s == KILN_ERR_NOMEM ? s : KILN_OK;
  for (int32_t i = 0; i < e.n && s == KILN_OK; i++) {
    if (e.is_dir[i]) continue;
    const char *rel = *sub ? db_join(db, sub, e.names[i]) : db_str(db, e.names[i]);
    bool yes = false;
    s = pred(db_join(db, db->root, rel), &yes);
    if (s == KILN_OK && yes) s = slist_add(db, out, rel);
  }
  fs_entries_free(&e);
  return s;
}

static kiln_status idx_pred(const char *path, bool *yes) {
  const char *name = fs_basename(path);
  *yes = strstr(name, "idx3-ubyte") != NULL || fs_has_ext(name, ".idx3") || fs_has_ext(name, ".idx3.gz");
  return KILN_OK;
}

kiln_status find_idx(dbuild *db, slist *rel) { return files_in(db, "", idx_pred, rel); }

static kiln_status yaml_pred(const char *path, bool *yes) {
  *yes = false;
  if (!fs_has_ext(path, ".yaml") && !fs_has_ext(path, ".yml")) return KILN_OK;
  char *text;
  kiln_error e;
  kiln_status s = fs_read_text(path, 1u << 20, &text, NULL, &e);
  if (s != KILN_OK) return s == KILN_ERR_NOMEM ? s : KILN_OK;
  *yes = strncmp(text, "names:", 6) == 0 || strstr(text, "\nnames:") != NULL;
  kiln_free(text);
  return KILN_OK;
}

kiln_status find_yaml(dbuild *db, const char **rel) {
  *rel = NULL;
  static const char *const preferred[] = {"data.yaml", "data.yml"};
  for (size_t i = 0; i < 2; i++) {
    if (fs_is_file(db_join(db, db->root, preferred[i]))) {
      *rel = preferred[i];
      return KILN_OK;
    }
  }
  slist l = {0};
  kiln_status s = files_in(db, "", yaml_pred, &l);
  if (s == KILN_OK && l.n) *rel = l.s[0];
  slist_free(&l);
  return s;
}

static kiln_status find_yolo_dirs(dbuild *db, bool *found) {
  const char *images = db_join(db, db->root, "images"), *labels = db_join(db, db->root, "labels");
  *found = fs_is_dir(images) && fs_is_dir(labels);
  return KILN_OK;
}

static kiln_status coco_pred(const char *path, bool *yes) {
  *yes = fs_has_ext(path, ".json") && strcmp(fs_basename(path), "dataset.json") != 0 &&
         looks_like_coco(path);
  return KILN_OK;
}

kiln_status find_coco(dbuild *db, slist *rel) {
  kiln_status s = files_in(db, "", coco_pred, rel);
  if (s == KILN_OK) s = files_in(db, "annotations", coco_pred, rel);
  if (s != KILN_OK) return s;
  fs_entries e;
  kiln_error err;
  s = fs_list(db->root, &e, &err);
  if (s != KILN_OK) return s == KILN_ERR_NOMEM ? s : KILN_OK;
  for (int32_t i = 0; i < e.n && s == KILN_OK; i++)
    if (e.is_dir[i] && split_from_name(e.names[i]) != KILN_SPLIT_UNASSIGNED)
      s = files_in(db, e.names[i], coco_pred, rel);
  fs_entries_free(&e);
  return s;
}

static kiln_status csv_pred(const char *path, bool *yes) {
  *yes = fs_has_ext(path, ".csv");
  return KILN_OK;
}

kiln_status find_csv(dbuild *db, slist *rel) { return files_in(db, "", csv_pred, rel); }

static kiln_status xml_pred(const char *path, bool *yes) {
  *yes = fs_has_ext(path, ".xml");
  return KILN_OK;
}

kiln_status find_voc_dir(dbuild *db, const char **dir) {
  static const char *const dirs[] = {"Annotations", "annotations", ""};
  *dir = NULL;
  for (size_t i = 0; i < 3 && !*dir; i++) {
    slist l = {0};
    kiln_status s = files_in(db, dirs[i], xml_pred, &l);
    if (s == KILN_OK && l.n > 0) *dir = dirs[i];
    slist_free(&l);
    if (s != KILN_OK) return s;
  }
  return KILN_OK;
}

/* The first file a search found, as the reason for a format. */
static kiln_status first_of(dbuild *db, kiln_status (*find)(dbuild *, slist *), kiln_data_format f,
                            kiln_data_format *format, const char **why) {
  slist l = {0};
  kiln_status s = find(db, &l);
  if (s == KILN_OK && l.n) {
    *format = f;
    *why = l.s[0];
  }
  slist_free(&l);
  return s;
}

kiln_status data_detect(dbuild *db, kiln_data_format *format, const char **why) {
  *format = KILN_DATA_AUTO;
  *why = NULL;
  bool found = false;
  kiln_status s = find_kiln(db, &found);
  if (s != KILN_OK || found) {
    *format = found ? KILN_DATA_KILN : KILN_DATA_AUTO;
    *why = "dataset.json";
    return s;
  }
  s = first_of(db, find_idx, KILN_DATA_IDX, format, why);
  if (s != KILN_OK || *format) return s;
  const char *yaml;
  s = find_yaml(db, &yaml);
  if (s == KILN_OK && !yaml) s = find_yolo_dirs(db, &found);
  if (s != KILN_OK) return s;
  if (yaml || found) {
    *format = KILN_DATA_YOLO;
    *why = yaml ? yaml : "images/ and labels/";
    return KILN_OK;
  }
  s = first_of(db, find_coco, KILN_DATA_COCO, format, why);
  if (s == KILN_OK && !*format) s = first_of(db, find_csv, KILN_DATA_AUTOML, format, why);
  if (s != KILN_OK || *format) return s;
  const char *voc;
  s = find_voc_dir(db, &voc);
  if (s != KILN_OK) return s;
  if (voc) {
    *format = KILN_DATA_VOC;
    *why = *voc ? db_join(db, voc, "*.xml") : "*.xml";
    return KILN_OK;
  }
  fs_entries e;
  kiln_error err;
  if (fs_list(db->root, &e, &err) != KILN_OK) return db_problem_err(db, KILN_ISSUE_NOT_FOUND, &err);
  bool dirs = false, splits = false;
  for (int32_t i = 0; i < e.n; i++) {
    dirs |= e.is_dir[i];
    splits |= e.is_dir[i] && split_from_name(e.names[i]) != KILN_SPLIT_UNASSIGNED;
  }
  fs_entries_free(&e);
  if (dirs) {
    *format = KILN_DATA_FOLDERS;
    *why = splits ? "split folders" : "class folders";
    return KILN_OK;
  }
  return db_problem(db, KILN_ISSUE_NOT_FOUND,
                    "%s: no dataset found: expected dataset.json (kiln), *idx3-ubyte files (idx), "
                    "data.yaml or images/ + labels/ (yolo), a COCO .json (coco), a .csv (automl), "
                    "Annotations/*.xml (voc) or one folder per class (folders)", db->display);
}
