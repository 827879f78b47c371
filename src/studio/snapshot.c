/*
 * studio/snapshot.c: a project's images as kiln's dataset form (kiln/data.h,
 * kiln_dataset_write): images/<sha256>.<ext> as symbolic links into the
 * blob store and dataset.json. The manifest lists images ordered by hash
 * with the project's labels, so the same data gives the same bytes; it is
 * stored as a blob too, and its hash names the dataset version a model was
 * trained on.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kiln/data.h"
#include "studio/studio_int.h"

kiln_status studio_tmpdir(kiln_studio *st, char out[STUDIO_PATH_MAX], kiln_error *err) {
  snprintf(out, STUDIO_PATH_MAX, "%s/tmp/work.XXXXXX", st->data_dir);
  if (!mkdtemp(out)) return kiln_fail(err, KILN_ERR_IO, "%s: cannot create: %s", out, strerror(errno));
  return KILN_OK;
}

static int32_t label_index(json_t *labels, const char *name) {
  size_t i;
  json_t *v;
  json_array_foreach(labels, i, v) {
    if (strcmp(json_string_value(v), name) == 0) return (int32_t)i;
  }
  return -1;
}

/* One image's manifest entry; NULL when out of memory. */
static json_t *manifest_entry(sqlite3_stmt *q, json_t *labels, bool detect) {
  json_t *im = json_pack("{s:s, s:s, s:i, s:i, s:s, s:s}", "hash", studio_col_text(q, 0), "ext",
                         studio_col_text(q, 1), "width", sqlite3_column_int(q, 2), "height",
                         sqlite3_column_int(q, 3), "split", studio_col_text(q, 6), "source",
                         studio_col_text(q, 7));
  if (!im) return NULL;
  if (!detect) {
    int32_t li = sqlite3_column_type(q, 4) == SQLITE_NULL ? -1 : label_index(labels, studio_col_text(q, 4));
    if (li >= 0) json_object_set_new(im, "label", json_integer(li));
    return im;
  }
  json_t *out = json_array(), *boxes = json_loads(studio_col_text(q, 5), 0, NULL);
  size_t i;
  json_t *b;
  json_array_foreach(boxes, i, b) {
    const char *name = json_string_value(json_object_get(b, "label"));
    int32_t li = name ? label_index(labels, name) : -1;
    if (li < 0) continue;
    json_array_append_new(out, json_pack("[f, f, f, f, i]", json_number_value(json_object_get(b, "xmin")),
                                         json_number_value(json_object_get(b, "ymin")),
                                         json_number_value(json_object_get(b, "xmax")),
                                         json_number_value(json_object_get(b, "ymax")), li));
  }
  json_decref(boxes);
  json_object_set_new(im, "boxes", out);
  return im;
}

kiln_status studio_snapshot(kiln_studio *st, sqlite3 *db, int64_t project, const char *dir,
                            char manifest_hash[STUDIO_HASH_HEX + 1], kiln_error *err) {
  char images_dir[STUDIO_PATH_MAX];
  snprintf(images_dir, sizeof images_dir, "%s/images", dir);
  kiln_status s = studio_mkdirs(images_dir, err);
  if (s != KILN_OK) return s;
  sqlite3_stmt *q = NULL;
  json_t *root = NULL, *labels = NULL, *images = json_array();
  bool detect = false;
  if (sqlite3_prepare_v2(db, "SELECT task, labels FROM projects WHERE id = ?", -1, &q, NULL) != SQLITE_OK)
    return studio_db_fail(db, err, "reading a project");
  sqlite3_bind_int64(q, 1, project);
  if (sqlite3_step(q) == SQLITE_ROW) {
    detect = strcmp(studio_col_text(q, 0), "detect") == 0;
    labels = json_loads(studio_col_text(q, 1), 0, NULL);
  }
  sqlite3_finalize(q);
  if (!labels || !images) {
    s = kiln_fail(err, KILN_ERR_INVALID_ARG, "project %lld has no readable labels", (long long)project);
    goto done;
  }
  if (sqlite3_prepare_v2(db,
                         "SELECT blob_hash, ext, width, height, label, boxes, split, source FROM images"
                         " WHERE project_id = ? ORDER BY blob_hash",
                         -1, &q, NULL) != SQLITE_OK) {
    s = studio_db_fail(db, err, "reading images");
    goto done;
  }
  sqlite3_bind_int64(q, 1, project);
  int rc;
  while (s == KILN_OK && (rc = sqlite3_step(q)) == SQLITE_ROW) {
    char blob[STUDIO_PATH_MAX], link_path[STUDIO_PATH_MAX];
    studio_blob_path(st->data_dir, studio_col_text(q, 0), blob, sizeof blob);
    snprintf(link_path, sizeof link_path, "%s/%s.%s", images_dir, studio_col_text(q, 0),
             studio_col_text(q, 1));
    if (symlink(blob, link_path) != 0 && errno != EEXIST)
      s = kiln_fail(err, KILN_ERR_IO, "%s: cannot link: %s", link_path, strerror(errno));
    json_t *im = manifest_entry(q, labels, detect);
    if (!im || json_array_append_new(images, im) != 0) s = kiln_fail(err, KILN_ERR_NOMEM, "out of memory");
  }
  sqlite3_finalize(q);
  if (s != KILN_OK) goto done;
  root = json_pack("{s:i, s:s, s:s, s:O, s:O}", "kiln_dataset", 1, "task", detect ? "detect" : "classify",
                   "source_format", "kiln", "labels", labels, "images", images);
  char *text = root ? json_dumps(root, JSON_INDENT(1)) : NULL;
  if (!text) {
    s = kiln_fail(err, KILN_ERR_NOMEM, "out of memory writing a dataset manifest");
    goto done;
  }
  char path[STUDIO_PATH_MAX];
  snprintf(path, sizeof path, "%s/dataset.json", dir);
  FILE *f = fopen(path, "wb");
  bool written = f && fwrite(text, 1, strlen(text), f) == strlen(text);
  if (f && fclose(f) != 0) written = false;
  if (!written) s = kiln_fail(err, KILN_ERR_IO, "%s: cannot write", path);
  if (s == KILN_OK) s = studio_blob_put(st->data_dir, text, strlen(text), manifest_hash, err);
  if (s == KILN_OK) {
    if (sqlite3_prepare_v2(db, "INSERT INTO blobs (hash, size, created_at) VALUES (?, ?, ?)"
                               " ON CONFLICT (hash) DO NOTHING", -1, &q, NULL) != SQLITE_OK) {
      s = studio_db_fail(db, err, "recording a blob");
    } else {
      sqlite3_bind_text(q, 1, manifest_hash, -1, SQLITE_TRANSIENT);
      sqlite3_bind_int64(q, 2, (int64_t)strlen(text));
      sqlite3_bind_int64(q, 3, studio_now_us());
      if (sqlite3_step(q) != SQLITE_DONE) s = studio_db_fail(db, err, "recording a blob");
      sqlite3_finalize(q);
    }
  }
  free(text);
done:
  json_decref(root);
  json_decref(labels);
  json_decref(images);
  return s;
}

kiln_status studio_project_dataset(kiln_studio *st, sqlite3 *db, int64_t project,
                                   char tmpdir[STUDIO_PATH_MAX], kiln_dataset **ds,
                                   kiln_error *err) {
  *ds = NULL;
  kiln_status s = studio_tmpdir(st, tmpdir, err);
  if (s != KILN_OK) return s;
  char hash[STUDIO_HASH_HEX + 1];
  s = studio_snapshot(st, db, project, tmpdir, hash, err);
  if (s != KILN_OK) return s;
  kiln_data_options opt = kiln_data_options_default();
  opt.format = KILN_DATA_KILN;
  opt.temp_dir = tmpdir;
  return kiln_data_import(tmpdir, &opt, ds, err);
}
