/*
 * data/import_folders.c: folder-per-class classification datasets:
 *   ROOT/<class>/[any folders/]a.jpg            (no split), or
 *   ROOT/<split>/<class>/[any folders/]a.jpg    (split: train/training,
 *                                   val/valid/validation, test/testing)
 * The class is the first folder under ROOT (or under the split folder);
 * deeper folders belong to it. Images outside any class folder, files kiln
 * cannot decode by their name, and folders beside split folders that are
 * not splits are reported, never silently dropped.
 */
#include <stdio.h>
#include <string.h>

#include "base/dir.h"
#include "data/data_int.h"

#define MAX_FILES 10000000

/* Adds the files under rel (a class folder) with label. */
static kiln_status add_class(dbuild *db, const char *rel, const char *class_name, kiln_split split) {
  const char *dir = db_join(db, db->root, rel);
  int32_t label;
  dloc at = {db_name(db, rel), DLOC_NONE, 0};
  kiln_status s = db_label(db, class_name, &at, &label);
  if (s != KILN_OK) return s;
  kiln_file_list files;
  kiln_error err;
  s = kiln_list_files(dir, NULL, MAX_FILES, &files, &err);
  if (s == KILN_ERR_NOMEM) return s;
  if (s != KILN_OK) return db_problem_err(db, KILN_ISSUE_NOT_FOUND, &err);
  size_t root_len = strlen(db->root) + 1;
  for (size_t i = 0; i < files.count && s == KILN_OK; i++) {
    const char *path = files.paths[i];
    const char *name = db_name(db, path + root_len);
    if (fs_is_image_name(path)) {
      if (label < 0) continue; /* reported once for the folder by db_label */
      int32_t item;
      s = db_add_file(db, path, name, split, &item);
      if (s == KILN_OK) s = db_set_label(db, item, label, &at);
      if (s == KILN_OK) db_annotated(db, item, NULL);
    } else if (fs_is_other_image_name(path)) {
      s = db_problem(db, KILN_ISSUE_IGNORED_FILE,
                     "%s: kiln reads JPEG, PNG and PGM/PPM images, not this format; ignored", name);
    } else {
      s = db_problem(db, KILN_ISSUE_IGNORED_FILE, "%s: not an image (by its name); ignored", name);
    }
  }
  kiln_file_list_free(&files);
  return s;
}

/* One level of class folders under rel ("" = root). */
static kiln_status add_classes(dbuild *db, const char *rel, kiln_split split) {
  const char *dir = *rel ? db_join(db, db->root, rel) : db->root;
  fs_entries e;
  kiln_error err;
  kiln_status s = fs_list(dir, &e, &err);
  if (s == KILN_ERR_NOMEM) return s;
  if (s != KILN_OK) return db_problem_err(db, KILN_ISSUE_NOT_FOUND, &err);
  for (int32_t i = 0; i < e.n && s == KILN_OK; i++) {
    const char *sub = *rel ? db_join(db, rel, e.names[i]) : db_str(db, e.names[i]);
    if (e.is_dir[i])
      s = add_class(db, sub, e.names[i], split);
    else if (fs_is_image_name(e.names[i]) || fs_is_other_image_name(e.names[i]))
      s = db_problem(db, KILN_ISSUE_UNANNOTATED, "%s: image outside any class folder; skipped",
                     db_name(db, sub));
  }
  fs_entries_free(&e);
  return s;
}

kiln_status import_folders(dbuild *db) {
  db->task = KILN_TASK_CLASSIFY;
  fs_entries e;
  kiln_error err;
  kiln_status s = fs_list(db->root, &e, &err);
  if (s == KILN_ERR_NOMEM) return s;
  if (s != KILN_OK) return db_problem_err(db, KILN_ISSUE_NOT_FOUND, &err);
  bool splits = false;
  for (int32_t i = 0; i < e.n; i++)
    splits |= e.is_dir[i] && split_from_name(e.names[i]) != KILN_SPLIT_UNASSIGNED;
  if (!splits) {
    fs_entries_free(&e);
    return add_classes(db, "", KILN_SPLIT_UNASSIGNED);
  }
  for (int32_t i = 0; i < e.n && s == KILN_OK; i++) {
    kiln_split split = split_from_name(e.names[i]);
    if (e.is_dir[i] && split != KILN_SPLIT_UNASSIGNED)
      s = add_classes(db, e.names[i], split);
    else if (e.is_dir[i])
      s = db_problem(db, KILN_ISSUE_IGNORED_FILE,
                     "%s/: not a split folder (train, val, test) but beside them; ignored",
                     db_name(db, e.names[i]));
    else if (fs_is_image_name(e.names[i]) || fs_is_other_image_name(e.names[i]))
      s = db_problem(db, KILN_ISSUE_UNANNOTATED, "%s: image outside any class folder; skipped",
                     db_name(db, e.names[i]));
  }
  fs_entries_free(&e);
  return s;
}
