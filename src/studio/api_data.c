/*
 * studio/api_data.c: uploads and the dataset. Files come as a raw body
 * (name in X-Filename) or multipart/form-data, or as a resumable upload
 * (create, PATCH chunks at Upload-Offset, HEAD for the offset). Each file
 * is a durable blob before studio_ingest records it and before the answer.
 * Images are listed with filters and paging, served whole or as
 * thumbnails, and their annotations edited; health is the dataset layer's
 * report on the project's images.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kiln/data.h"
#include "kiln/image.h"
#include "studio/http_int.h"

static enum MHD_Result db_error(studio_req *r) {
  return studio_reply_error(r, 500, "database: %s", sqlite3_errmsg(r->db));
}

enum MHD_Result api_files_upload(studio_req *r) {
  if (r->n_parts == 0) return studio_reply_error(r, 400, "no file in the request");
  json_t *files = json_array();
  kiln_error err = {0};
  for (int32_t i = 0; i < r->n_parts; i++) {
    json_t *res = json_object();
    if (studio_ingest(r->st, r->db, r->project, r->user, r->parts[i].name, r->parts[i].hash,
                      r->parts[i].size, res, &err) != KILN_OK) {
      json_decref(res);
      json_decref(files);
      return studio_reply_fail(r, &err);
    }
    json_array_append_new(files, res);
  }
  return studio_reply_json(r, 201, json_pack("{s:o}", "files", files));
}

enum MHD_Result api_files_list(studio_req *r) {
  sqlite3_stmt *q;
  if (sqlite3_prepare_v2(r->db, "SELECT result, created_at FROM files WHERE project_id = ? ORDER BY created_at",
                         -1, &q, NULL) != SQLITE_OK)
    return db_error(r);
  sqlite3_bind_int64(q, 1, r->project);
  json_t *files = json_array();
  while (sqlite3_step(q) == SQLITE_ROW) {
    json_t *f = json_loads(studio_col_text(q, 0), 0, NULL);
    if (!f) continue;
    json_object_set_new(f, "created_at", json_integer(sqlite3_column_int64(q, 1)));
    json_array_append_new(files, f);
  }
  sqlite3_finalize(q);
  return studio_reply_json(r, 200, json_pack("{s:o}", "files", files));
}

/* ---- resumable uploads ---- */

#define UPLOAD_MAX_BYTES (INT64_C(64) << 30)

static void upload_part_path(studio_req *r, int64_t id, char *out, size_t n) {
  snprintf(out, n, "%s/uploads/%lld.part", r->st->data_dir, (long long)id);
}

enum MHD_Result api_uploads_create(studio_req *r) {
  enum MHD_Result res;
  json_t *body = studio_body_json(r, &res);
  if (!body) return res;
  const char *name = json_string_value(json_object_get(body, "name"));
  json_t *len = json_object_get(body, "length");
  if (!name || !*name || strlen(name) > 500 || !json_is_integer(len) || json_integer_value(len) < 1 ||
      json_integer_value(len) > UPLOAD_MAX_BYTES) {
    json_decref(body);
    return studio_reply_error(r, 400, "\"name\" and \"length\" (1 byte to 64 GiB) are required");
  }
  int64_t id = studio_new_id(), length = json_integer_value(len);
  char path[STUDIO_PATH_MAX];
  upload_part_path(r, id, path, sizeof path);
  kiln_error err = {0};
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) {
    json_decref(body);
    return studio_reply_error(r, 500, "%s: %s", path, strerror(errno));
  }
  close(fd);
  char dir[STUDIO_PATH_MAX];
  snprintf(dir, sizeof dir, "%s/uploads", r->st->data_dir);
  kiln_status s = studio_fsync_dir(dir, &err);
  sqlite3_stmt *q;
  if (s == KILN_OK && sqlite3_prepare_v2(r->db,
                                         "INSERT INTO uploads (id, project_id, name, length, received, created_by,"
                                         " created_at) VALUES (?, ?, ?, ?, 0, ?, ?)",
                                         -1, &q, NULL) == SQLITE_OK) {
    sqlite3_bind_int64(q, 1, id);
    sqlite3_bind_int64(q, 2, r->project);
    sqlite3_bind_text(q, 3, name, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(q, 4, length);
    sqlite3_bind_int64(q, 5, r->user);
    sqlite3_bind_int64(q, 6, studio_now_us());
    if (sqlite3_step(q) != SQLITE_DONE) s = studio_db_fail(r->db, &err, "creating an upload");
    sqlite3_finalize(q);
  } else if (s == KILN_OK) {
    s = studio_db_fail(r->db, &err, "creating an upload");
  }
  json_decref(body);
  if (s != KILN_OK) {
    unlink(path);
    return studio_reply_fail(r, &err);
  }
  char loc[64];
  snprintf(loc, sizeof loc, "/api/uploads/%lld", (long long)id);
  studio_reply_header(r, "Location", loc);
  studio_reply_header(r, "Upload-Offset", "0");
  return studio_reply_json(r, 201, json_pack("{s:I, s:s, s:I, s:i}", "id", (json_int_t)id, "url", loc,
                                             "length", (json_int_t)length, "offset", 0));
}

static bool upload_row(studio_req *r, int64_t *length, int64_t *received, int64_t *file_id,
                       char *name, size_t n) {
  sqlite3_stmt *q;
  bool found = false;
  if (sqlite3_prepare_v2(r->db, "SELECT length, received, COALESCE(file_id, 0), name FROM uploads WHERE id = ?",
                         -1, &q, NULL) != SQLITE_OK)
    return false;
  sqlite3_bind_int64(q, 1, r->ids[0]);
  if (sqlite3_step(q) == SQLITE_ROW) {
    *length = sqlite3_column_int64(q, 0);
    *received = sqlite3_column_int64(q, 1);
    *file_id = sqlite3_column_int64(q, 2);
    snprintf(name, n, "%s", studio_col_text(q, 3));
    found = true;
  }
  sqlite3_finalize(q);
  return found;
}

enum MHD_Result api_upload_head(studio_req *r) {
  int64_t length, received, file_id;
  char name[512], buf[32];
  if (!upload_row(r, &length, &received, &file_id, name, sizeof name))
    return studio_reply_error(r, 404, "not found");
  snprintf(buf, sizeof buf, "%lld", (long long)received);
  studio_reply_header(r, "Upload-Offset", buf);
  snprintf(buf, sizeof buf, "%lld", (long long)length);
  studio_reply_header(r, "Upload-Length", buf);
  return studio_reply_bytes(r, 200, "application/json", NULL, 0);
}

enum MHD_Result api_upload_patch(studio_req *r) {
  int64_t length, received, file_id;
  char name[512], path[STUDIO_PATH_MAX];
  if (!upload_row(r, &length, &received, &file_id, name, sizeof name))
    return studio_reply_error(r, 404, "not found");
  upload_part_path(r, r->ids[0], path, sizeof path);
  int64_t now_received = r->chunk_offset + r->chunk_received;
  if (now_received > length) {
    if (ftruncate(r->chunk_fd, (off_t)r->chunk_offset) != 0) { /* the part stays as before */
    }
    return studio_reply_error(r, 413, "the chunk runs past the upload's length (%lld bytes)", (long long)length);
  }
  if (fsync(r->chunk_fd) != 0) return studio_reply_error(r, 500, "%s: fsync: %s", path, strerror(errno));
  kiln_error err = {0};
  sqlite3_stmt *q;
  if (sqlite3_prepare_v2(r->db, "UPDATE uploads SET received = ? WHERE id = ?", -1, &q, NULL) != SQLITE_OK)
    return db_error(r);
  sqlite3_bind_int64(q, 1, now_received);
  sqlite3_bind_int64(q, 2, r->ids[0]);
  int rc = sqlite3_step(q);
  sqlite3_finalize(q);
  if (rc != SQLITE_DONE) return db_error(r);
  char off[32];
  snprintf(off, sizeof off, "%lld", (long long)now_received);
  studio_reply_header(r, "Upload-Offset", off);
  json_t *out = json_pack("{s:I, s:I, s:b}", "offset", (json_int_t)now_received, "length",
                          (json_int_t)length, "complete", now_received == length);
  if (now_received < length) return studio_reply_json(r, 200, out);
  char hash[STUDIO_HASH_HEX + 1];
  uint64_t size = 0;
  json_t *res = json_object();
  kiln_status s = studio_blob_put_file(r->st->data_dir, path, hash, &size, &err);
  if (s == KILN_OK) s = studio_ingest(r->st, r->db, r->project, r->user, name, hash, size, res, &err);
  if (s == KILN_OK &&
      sqlite3_prepare_v2(r->db, "UPDATE uploads SET file_id = ? WHERE id = ?", -1, &q, NULL) == SQLITE_OK) {
    sqlite3_bind_int64(q, 1, json_integer_value(json_object_get(res, "id")));
    sqlite3_bind_int64(q, 2, r->ids[0]);
    if (sqlite3_step(q) != SQLITE_DONE) s = studio_db_fail(r->db, &err, "finishing an upload");
    sqlite3_finalize(q);
  }
  if (s != KILN_OK) {
    json_decref(res);
    json_decref(out);
    return studio_reply_fail(r, &err);
  }
  unlink(path);
  json_object_set_new(out, "file", res);
  return studio_reply_json(r, 200, out);
}

/* ---- images ---- */

#define IMAGE_COLS "id, blob_hash, ext, width, height, label, boxes, split, source, problems, updated_at"

static json_t *image_json(sqlite3_stmt *q) {
  json_t *boxes = json_loads(studio_col_text(q, 6), 0, NULL);
  json_t *problems = json_loads(studio_col_text(q, 9), 0, NULL);
  json_t *im = json_pack("{s:I, s:s, s:s, s:i, s:i, s:o, s:o, s:s, s:s, s:o, s:I}", "id",
                         (json_int_t)sqlite3_column_int64(q, 0), "hash", studio_col_text(q, 1), "ext",
                         studio_col_text(q, 2), "width", sqlite3_column_int(q, 3), "height",
                         sqlite3_column_int(q, 4), "label",
                         sqlite3_column_type(q, 5) == SQLITE_NULL ? json_null()
                                                                  : json_string(studio_col_text(q, 5)),
                         "boxes", boxes ? boxes : json_array(), "split", studio_col_text(q, 7), "source",
                         studio_col_text(q, 8), "problems", problems ? problems : json_array(),
                         "updated_at", (json_int_t)sqlite3_column_int64(q, 10));
  return im;
}

static int64_t query_int(studio_req *r, const char *name, int64_t def, int64_t lo, int64_t hi) {
  const char *v = studio_query(r, name);
  if (!v) return def;
  char *end;
  long long x = strtoll(v, &end, 10);
  if (*end || x < lo) return lo;
  return x > hi ? hi : x;
}

enum MHD_Result api_images_list(studio_req *r) {
  const char *label = studio_query(r, "label"), *split = studio_query(r, "split");
  const char *problem = studio_query(r, "problem");
  int64_t offset = query_int(r, "offset", 0, 0, INT32_MAX), limit = query_int(r, "limit", 100, 1, 1000);
  char pattern[160] = "";
  if (problem && strcmp(problem, "any") != 0) snprintf(pattern, sizeof pattern, "%%\"%s\"%%", problem);
  const char *where =
      " FROM images WHERE project_id = ?1"
      " AND (?2 IS NULL OR (?2 = '' AND label IS NULL) OR label = ?2)"
      " AND (?3 IS NULL OR split = ?3)"
      " AND (?4 IS NULL OR (?4 = 'any' AND problems <> '[]') OR problems LIKE ?5)";
  char sql[1024];
  json_int_t total = 0;
  sqlite3_stmt *q;
  for (int pass = 0; pass < 2; pass++) {
    snprintf(sql, sizeof sql, pass == 0 ? "SELECT COUNT(*)%s" : "SELECT " IMAGE_COLS "%s ORDER BY created_at, id LIMIT ?6 OFFSET ?7", where);
    if (sqlite3_prepare_v2(r->db, sql, -1, &q, NULL) != SQLITE_OK) return db_error(r);
    sqlite3_bind_int64(q, 1, r->project);
    if (label) sqlite3_bind_text(q, 2, label, -1, SQLITE_TRANSIENT);
    if (split) sqlite3_bind_text(q, 3, split, -1, SQLITE_TRANSIENT);
    if (problem) sqlite3_bind_text(q, 4, problem, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(q, 5, pattern, -1, SQLITE_TRANSIENT);
    if (pass == 0) {
      if (sqlite3_step(q) == SQLITE_ROW) total = sqlite3_column_int64(q, 0);
      sqlite3_finalize(q);
      continue;
    }
    sqlite3_bind_int64(q, 6, limit);
    sqlite3_bind_int64(q, 7, offset);
  }
  json_t *list = json_array();
  while (sqlite3_step(q) == SQLITE_ROW) json_array_append_new(list, image_json(q));
  sqlite3_finalize(q);
  return studio_reply_json(r, 200, json_pack("{s:I, s:I, s:I, s:o}", "total", total, "offset",
                                             (json_int_t)offset, "limit", (json_int_t)limit, "images", list));
}

/* The image row named by the path (ids[1]) in the project; NULL: replied. */
static sqlite3_stmt *image_row(studio_req *r, enum MHD_Result *res) {
  sqlite3_stmt *q;
  if (sqlite3_prepare_v2(r->db, "SELECT " IMAGE_COLS " FROM images WHERE id = ? AND project_id = ?", -1, &q,
                         NULL) != SQLITE_OK) {
    *res = db_error(r);
    return NULL;
  }
  sqlite3_bind_int64(q, 1, r->ids[1]);
  sqlite3_bind_int64(q, 2, r->project);
  if (sqlite3_step(q) != SQLITE_ROW) {
    sqlite3_finalize(q);
    *res = studio_reply_error(r, 404, "not found");
    return NULL;
  }
  return q;
}

enum MHD_Result api_image_get(studio_req *r) {
  enum MHD_Result res;
  sqlite3_stmt *q = image_row(r, &res);
  if (!q) return res;
  json_t *im = image_json(q);
  sqlite3_finalize(q);
  return studio_reply_json(r, 200, im);
}

enum MHD_Result api_image_file(studio_req *r) {
  enum MHD_Result res;
  sqlite3_stmt *q = image_row(r, &res);
  if (!q) return res;
  char hash[STUDIO_HASH_HEX + 1];
  snprintf(hash, sizeof hash, "%s", studio_col_text(q, 1));
  bool png = strcmp(studio_col_text(q, 2), "png") == 0;
  sqlite3_finalize(q);
  return studio_reply_blob(r, hash, png ? "image/png" : "image/jpeg", NULL);
}

#define THUMB_SIDE 160

enum MHD_Result api_image_thumbnail(studio_req *r) {
  enum MHD_Result res;
  sqlite3_stmt *q = image_row(r, &res);
  if (!q) return res;
  char path[STUDIO_PATH_MAX];
  studio_blob_path(r->st->data_dir, studio_col_text(q, 1), path, sizeof path);
  sqlite3_finalize(q);
  kiln_image img = {0}, small = {0};
  kiln_error err = {0};
  kiln_status s = kiln_image_decode_file(path, NULL, &img, &err);
  if (s == KILN_OK) {
    int32_t side = img.width > img.height ? img.width : img.height;
    int32_t w = img.width, h = img.height;
    if (side > THUMB_SIDE) {
      w = (int32_t)((int64_t)img.width * THUMB_SIDE / side);
      h = (int32_t)((int64_t)img.height * THUMB_SIDE / side);
    }
    s = kiln_image_resize_bilinear(&img, w > 0 ? w : 1, h > 0 ? h : 1, &small, &err);
  }
  uint8_t *png = NULL;
  size_t n = 0;
  if (s == KILN_OK) s = kiln_image_encode_png(&small, &png, &n, &err);
  kiln_image_free(&img);
  kiln_image_free(&small);
  if (s != KILN_OK) return studio_reply_fail(r, &err);
  return studio_reply_bytes(r, 200, "image/png", png, n);
}

static bool in_labels(json_t *labels, const char *name) {
  size_t i;
  json_t *v;
  json_array_foreach(labels, i, v) if (strcmp(json_string_value(v), name) == 0) return true;
  return false;
}

/* Checks boxes against the image size and labels; a message or NULL. */
static const char *bad_boxes(json_t *boxes, json_t *labels, int32_t w, int32_t h) {
  if (!json_is_array(boxes)) return "\"boxes\" must be an array";
  size_t i;
  json_t *b;
  json_array_foreach(boxes, i, b) {
    json_t *x0 = json_object_get(b, "xmin"), *y0 = json_object_get(b, "ymin");
    json_t *x1 = json_object_get(b, "xmax"), *y1 = json_object_get(b, "ymax");
    const char *label = json_string_value(json_object_get(b, "label"));
    if (!json_is_number(x0) || !json_is_number(y0) || !json_is_number(x1) || !json_is_number(y1) || !label)
      return "each box needs numbers xmin, ymin, xmax, ymax and a label";
    double a = json_number_value(x0), bb = json_number_value(y0), c = json_number_value(x1),
           d = json_number_value(y1);
    if (!(a >= 0 && bb >= 0 && c <= w && d <= h && a < c && bb < d))
      return "a box must lie inside the image with xmin < xmax and ymin < ymax (pixels)";
    if (!in_labels(labels, label)) return "a box names a label the project does not have";
  }
  return NULL;
}

enum MHD_Result api_image_annotation_get(studio_req *r) {
  enum MHD_Result res;
  sqlite3_stmt *q = image_row(r, &res);
  if (!q) return res;
  json_t *im = image_json(q);
  sqlite3_finalize(q);
  json_t *out = json_pack("{s:O, s:O, s:O, s:O, s:O, s:O}", "label", json_object_get(im, "label"), "boxes",
                          json_object_get(im, "boxes"), "split", json_object_get(im, "split"), "width",
                          json_object_get(im, "width"), "height", json_object_get(im, "height"),
                          "updated_at", json_object_get(im, "updated_at"));
  json_decref(im);
  return studio_reply_json(r, 200, out);
}

enum MHD_Result api_image_annotation_put(studio_req *r) {
  enum MHD_Result res;
  sqlite3_stmt *q = image_row(r, &res);
  if (!q) return res;
  int32_t w = sqlite3_column_int(q, 3), h = sqlite3_column_int(q, 4);
  sqlite3_finalize(q);
  json_t *body = studio_body_json(r, &res);
  if (!body) return res;
  json_t *project = studio_project_json(r->db, r->project);
  json_t *labels = json_object_get(project, "labels");
  json_t *label = json_object_get(body, "label"), *boxes = json_object_get(body, "boxes");
  const char *split = json_string_value(json_object_get(body, "split"));
  const char *bad = NULL;
  if (label && !json_is_null(label) && (!json_is_string(label) || !in_labels(labels, json_string_value(label))))
    bad = "\"label\" must be one of the project's labels, or null";
  else if (boxes)
    bad = bad_boxes(boxes, labels, w, h);
  if (!bad && json_object_get(body, "split") &&
      (!split || (strcmp(split, "train") && strcmp(split, "val") && strcmp(split, "test") &&
                  strcmp(split, "unassigned"))))
    bad = "\"split\" must be train, val, test or unassigned";
  if (bad) {
    json_decref(body);
    json_decref(project);
    return studio_reply_error(r, 400, "%s", bad);
  }
  char *boxes_text = boxes ? json_dumps(boxes, JSON_COMPACT) : NULL;
  int rc = SQLITE_ERROR;
  if (sqlite3_prepare_v2(r->db,
                         "UPDATE images SET label = CASE WHEN ?1 THEN ?2 ELSE label END,"
                         " boxes = COALESCE(?3, boxes), split = COALESCE(?4, split), updated_at = ?5"
                         " WHERE id = ?6 AND project_id = ?7",
                         -1, &q, NULL) == SQLITE_OK) {
    sqlite3_bind_int(q, 1, label != NULL);
    if (json_is_string(label)) sqlite3_bind_text(q, 2, json_string_value(label), -1, SQLITE_TRANSIENT);
    if (boxes_text) sqlite3_bind_text(q, 3, boxes_text, -1, SQLITE_TRANSIENT);
    if (split) sqlite3_bind_text(q, 4, split, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(q, 5, studio_now_us());
    sqlite3_bind_int64(q, 6, r->ids[1]);
    sqlite3_bind_int64(q, 7, r->project);
    rc = sqlite3_step(q);
    sqlite3_finalize(q);
  }
  free(boxes_text);
  json_decref(body);
  json_decref(project);
  if (rc != SQLITE_DONE) return db_error(r);
  return api_image_get(r);
}

enum MHD_Result api_dataset_health(studio_req *r) {
  char tmp[STUDIO_PATH_MAX] = "";
  kiln_dataset *ds = NULL;
  kiln_error err = {0};
  kiln_status s = studio_project_dataset(r->st, r->db, r->project, tmp, &ds, &err);
  char *report = NULL;
  enum MHD_Result res;
  if (ds && kiln_dataset_report_json(ds, &report, &err) == KILN_OK) {
    json_t *v = json_loads(report, 0, NULL);
    res = v ? studio_reply_json(r, 200, v) : studio_reply_error(r, 500, "unreadable health report");
  } else {
    res = studio_reply_fail(r, &err);
  }
  (void)s;
  kiln_free(report);
  kiln_dataset_free(ds);
  if (tmp[0]) studio_rmtree(tmp);
  return res;
}
