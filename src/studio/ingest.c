/*
 * studio/ingest.c: an uploaded file (already a durable blob) becomes
 * images of a project. A JPEG or PNG is decoded once (size, validity) and
 * added; in classification projects a folder name in the uploaded name
 * ("cat/001.jpg") is its label. An archive (zip, tar, tar.gz, tgz,
 * tar.bz2, tar.xz) is imported by the dataset layer (kiln_data_import: any
 * format it reads, with its validation) and every usable image is stored
 * as a blob with its label or boxes and split; the archive's labels join
 * the project's. Everything the dataset layer reports comes back as the
 * file's problems. Rows for one file commit in one transaction.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "kiln/data.h"
#include "kiln/image.h"
#include "studio/studio_int.h"

static bool ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), k = strlen(suffix);
  return n >= k && strcasecmp(s + n - k, suffix) == 0;
}

static bool is_archive_name(const char *name) {
  static const char *const exts[] = {".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz"};
  for (size_t i = 0; i < sizeof exts / sizeof exts[0]; i++)
    if (ends_with(name, exts[i])) return true;
  return false;
}

/* "jpg", "png" or NULL from the first bytes of a blob. */
static const char *image_ext(const char *path) {
  unsigned char m[4] = {0};
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return NULL;
  ssize_t n = read(fd, m, sizeof m);
  close(fd);
  if (n >= 3 && m[0] == 0xFF && m[1] == 0xD8 && m[2] == 0xFF) return "jpg";
  if (n >= 4 && m[0] == 0x89 && m[1] == 'P' && m[2] == 'N' && m[3] == 'G') return "png";
  return NULL;
}

static void add_problem(json_t *problems, const char *severity, const char *issue, const char *msg) {
  json_array_append_new(problems, json_pack("{s:s, s:s, s:s}", "severity", severity, "issue", issue,
                                            "message", msg));
}

static kiln_status record_blob(sqlite3 *db, const char *hash, uint64_t size, kiln_error *err) {
  sqlite3_stmt *q;
  if (sqlite3_prepare_v2(db, "INSERT INTO blobs (hash, size, created_at) VALUES (?, ?, ?)"
                             " ON CONFLICT (hash) DO NOTHING", -1, &q, NULL) != SQLITE_OK)
    return studio_db_fail(db, err, "recording a blob");
  sqlite3_bind_text(q, 1, hash, -1, SQLITE_TRANSIENT);
  sqlite3_bind_int64(q, 2, (int64_t)size);
  sqlite3_bind_int64(q, 3, studio_now_us());
  int rc = sqlite3_step(q);
  sqlite3_finalize(q);
  return rc == SQLITE_DONE ? KILN_OK : studio_db_fail(db, err, "recording a blob");
}

typedef struct new_image {
  char hash[STUDIO_HASH_HEX + 1];
  const char *ext;
  uint64_t size;
  int32_t width, height;
  const char *label;  /* NULL: none */
  char *boxes;        /* JSON text */
  const char *split;
  char source[1024];
  char *problems;     /* JSON text: issue names */
} new_image;

/* Inserts the image unless the project has it; *added tells which. */
static kiln_status insert_image(sqlite3 *db, int64_t project, const new_image *im, bool *added,
                                kiln_error *err) {
  kiln_status s = record_blob(db, im->hash, im->size, err);
  if (s != KILN_OK) return s;
  sqlite3_stmt *q;
  if (sqlite3_prepare_v2(db,
                         "INSERT INTO images (id, project_id, blob_hash, ext, width, height, label, boxes,"
                         " split, source, problems, created_at, updated_at)"
                         " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                         " ON CONFLICT (project_id, blob_hash) DO NOTHING",
                         -1, &q, NULL) != SQLITE_OK)
    return studio_db_fail(db, err, "adding an image");
  int64_t now = studio_now_us();
  sqlite3_bind_int64(q, 1, studio_new_id());
  sqlite3_bind_int64(q, 2, project);
  sqlite3_bind_text(q, 3, im->hash, -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(q, 4, im->ext, -1, SQLITE_TRANSIENT);
  sqlite3_bind_int(q, 5, im->width);
  sqlite3_bind_int(q, 6, im->height);
  if (im->label) sqlite3_bind_text(q, 7, im->label, -1, SQLITE_TRANSIENT);
  else sqlite3_bind_null(q, 7);
  sqlite3_bind_text(q, 8, im->boxes ? im->boxes : "[]", -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(q, 9, im->split, -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(q, 10, im->source, -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(q, 11, im->problems ? im->problems : "[]", -1, SQLITE_TRANSIENT);
  sqlite3_bind_int64(q, 12, now);
  sqlite3_bind_int64(q, 13, now);
  int rc = sqlite3_step(q);
  sqlite3_finalize(q);
  if (rc != SQLITE_DONE) return studio_db_fail(db, err, "adding an image");
  *added = sqlite3_changes(db) == 1;
  return KILN_OK;
}

/* The project's task and labels (a new reference). */
static kiln_status project_labels(sqlite3 *db, int64_t project, bool *detect, json_t **labels,
                                  kiln_error *err) {
  sqlite3_stmt *q;
  *labels = NULL;
  if (sqlite3_prepare_v2(db, "SELECT task, labels FROM projects WHERE id = ?", -1, &q, NULL) != SQLITE_OK)
    return studio_db_fail(db, err, "reading a project");
  sqlite3_bind_int64(q, 1, project);
  if (sqlite3_step(q) == SQLITE_ROW) {
    *detect = strcmp(studio_col_text(q, 0), "detect") == 0;
    *labels = json_loads(studio_col_text(q, 1), 0, NULL);
  }
  sqlite3_finalize(q);
  if (!json_is_array(*labels)) {
    json_decref(*labels);
    *labels = NULL;
    return kiln_fail(err, KILN_ERR_INVALID_ARG, "project %lld not found", (long long)project);
  }
  return KILN_OK;
}

static kiln_status save_labels(sqlite3 *db, int64_t project, json_t *labels, kiln_error *err) {
  char *text = json_dumps(labels, JSON_COMPACT);
  if (!text) return kiln_fail(err, KILN_ERR_NOMEM, "out of memory");
  sqlite3_stmt *q;
  kiln_status s = KILN_OK;
  if (sqlite3_prepare_v2(db, "UPDATE projects SET labels = ? WHERE id = ?", -1, &q, NULL) != SQLITE_OK) {
    s = studio_db_fail(db, err, "saving labels");
  } else {
    sqlite3_bind_text(q, 1, text, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(q, 2, project);
    if (sqlite3_step(q) != SQLITE_DONE) s = studio_db_fail(db, err, "saving labels");
    sqlite3_finalize(q);
  }
  free(text);
  return s;
}

static bool has_label(json_t *labels, const char *name) {
  size_t i;
  json_t *v;
  json_array_foreach(labels, i, v) if (strcmp(json_string_value(v), name) == 0) return true;
  return false;
}

/* A single JPEG/PNG. */
static kiln_status ingest_image(kiln_studio *st, sqlite3 *db, int64_t project, const char *name,
                                const char *hash, uint64_t size, const char *ext, json_t *result,
                                kiln_error *err) {
  json_t *problems = json_object_get(result, "problems");
  char path[STUDIO_PATH_MAX];
  studio_blob_path(st->data_dir, hash, path, sizeof path);
  kiln_image img;
  kiln_error ierr = {0};
  if (kiln_image_decode_file(path, NULL, &img, &ierr) != KILN_OK) {
    char msg[KILN_ERROR_MSG_MAX + 300];
    const char *why = strstr(ierr.msg, ": ") ? strstr(ierr.msg, ": ") + 2 : ierr.msg;
    snprintf(msg, sizeof msg, "%s: %s; skipped", name, why);
    add_problem(problems, "warning", "unreadable_image", msg);
    return KILN_OK;
  }
  new_image im = {0};
  memcpy(im.hash, hash, sizeof im.hash);
  im.ext = ext;
  im.size = size;
  im.width = img.width;
  im.height = img.height;
  im.split = "unassigned";
  snprintf(im.source, sizeof im.source, "%s", name);
  kiln_image_free(&img);
  bool detect = false;
  json_t *labels = NULL;
  kiln_status s = project_labels(db, project, &detect, &labels, err);
  if (s != KILN_OK) return s;
  char folder[256] = "";
  const char *slash = strrchr(name, '/');
  if (!detect && slash) {
    const char *start = slash;
    while (start > name && start[-1] != '/') start--;
    snprintf(folder, sizeof folder, "%.*s", (int)(slash - start), start);
  }
  if (folder[0]) {
    im.label = folder;
    if (!has_label(labels, folder)) {
      json_array_append_new(labels, json_string(folder));
      s = save_labels(db, project, labels, err);
    }
  }
  bool added = false;
  if (s == KILN_OK) s = insert_image(db, project, &im, &added, err);
  json_decref(labels);
  if (s != KILN_OK) return s;
  json_object_set_new(result, added ? "added" : "duplicates", json_integer(1));
  if (!added) {
    char msg[1200];
    snprintf(msg, sizeof msg, "%s: the project has this image already; skipped", name);
    add_problem(problems, "warning", "duplicate", msg);
  }
  return KILN_OK;
}

/* Boxes of a dataset image as the studio's JSON, label names. */
static char *boxes_json(const kiln_dataset *ds, const kiln_data_image *im) {
  json_t *a = json_array();
  for (int32_t b = 0; b < im->n_boxes; b++) {
    const kiln_data_box *x = &im->boxes[b];
    json_array_append_new(a, json_pack("{s:f, s:f, s:f, s:f, s:s}", "xmin", x->xmin, "ymin", x->ymin,
                                       "xmax", x->xmax, "ymax", x->ymax, "label",
                                       ds->labels[x->label]));
  }
  char *t = json_dumps(a, JSON_COMPACT);
  json_decref(a);
  return t;
}

/* Whether message names source as a whole path (followed by ':', ')',
 * ' ', ',' or the end). */
static bool names_source(const char *message, const char *source) {
  size_t n = strlen(source);
  for (const char *p = strstr(message, source); p; p = strstr(p + 1, source)) {
    char after = p[n];
    bool start = p == message || p[-1] == ' ' || p[-1] == '(' || p[-1] == '/';
    if (start && (after == '\0' || after == ':' || after == ')' || after == ' ' || after == ',')) return true;
  }
  return false;
}

/* Issue names of the problems that name this image's source. */
static char *image_problems(const kiln_dataset *ds, const char *source) {
  json_t *a = json_array();
  for (int32_t p = 0; p < ds->n_problems && source[0]; p++) {
    if (!names_source(ds->problems[p].message, source)) continue;
    const char *issue = kiln_data_issue_name(ds->problems[p].issue);
    bool seen = false;
    size_t i;
    json_t *v;
    json_array_foreach(a, i, v) seen = seen || strcmp(json_string_value(v), issue) == 0;
    if (!seen) json_array_append_new(a, json_string(issue));
  }
  char *t = json_dumps(a, JSON_COMPACT);
  json_decref(a);
  return t;
}

/* Stores dataset image i as a blob; ext and hash out. */
static kiln_status store_dataset_image(kiln_studio *st, const kiln_dataset *ds, int32_t i,
                                       new_image *im, kiln_error *err) {
  const kiln_data_image *d = &ds->images[i];
  if (d->path) {
    im->ext = image_ext(d->path);
    if (!im->ext) return kiln_fail(err, KILN_ERR_FORMAT, "%s: not a JPEG or PNG", d->source);
    return studio_blob_put_file_deferred(st->data_dir, d->path, im->hash, &im->size, true, err);
  }
  kiln_image img;
  kiln_status s = kiln_dataset_load_image(ds, i, &img, err);
  if (s != KILN_OK) return s;
  uint8_t *png = NULL;
  size_t n = 0;
  s = kiln_image_encode_png(&img, &png, &n, err);
  kiln_image_free(&img);
  if (s == KILN_OK) s = studio_blob_put(st->data_dir, png, n, im->hash, err);
  kiln_free(png);
  im->ext = "png";
  im->size = n;
  return s;
}

static kiln_status ingest_archive(kiln_studio *st, sqlite3 *db, int64_t project, const char *name,
                                  const char *hash, json_t *result, kiln_error *err) {
  json_t *problems = json_object_get(result, "problems");
  char tmp[STUDIO_PATH_MAX], link_path[STUDIO_PATH_MAX], blob[STUDIO_PATH_MAX];
  kiln_status s = studio_tmpdir(st, tmp, err);
  if (s != KILN_OK) return s;
  const char *base = strrchr(name, '/') ? strrchr(name, '/') + 1 : name;
  studio_blob_path(st->data_dir, hash, blob, sizeof blob);
  snprintf(link_path, sizeof link_path, "%s/%s", tmp, base);
  kiln_dataset *ds = NULL;
  json_t *labels = NULL;
  if (symlink(blob, link_path) != 0) {
    s = kiln_fail(err, KILN_ERR_IO, "%s: cannot link: %s", link_path, strerror(errno));
    goto done;
  }
  kiln_data_options opt = kiln_data_options_default();
  opt.temp_dir = tmp;
  opt.threads = 1;
  kiln_error derr = {0};
  kiln_status ds_status = kiln_data_import(link_path, &opt, &ds, &derr);
  if (ds_status == KILN_ERR_NOMEM || ds_status == KILN_ERR_INVALID_ARG) {
    s = kiln_fail(err, ds_status, "%s", derr.msg);
    goto done;
  }
  for (int32_t p = 0; ds && p < ds->n_problems; p++) {
    kiln_data_issue is = ds->problems[p].issue;
    add_problem(problems, kiln_data_issue_severity(is) == KILN_DATA_ERROR ? "error" : "warning",
                kiln_data_issue_name(is), ds->problems[p].message);
  }
  if (ds_status != KILN_OK) goto done; /* the problems say why */
  bool detect = false;
  s = project_labels(db, project, &detect, &labels, err);
  if (s != KILN_OK) goto done;
  if ((ds->task == KILN_TASK_DETECT) != detect) {
    char msg[1200];
    snprintf(msg, sizeof msg, "%s: holds a %s dataset but the project is %s; nothing added", name,
             kiln_data_task_name(ds->task), detect ? "detect" : "classify");
    add_problem(problems, "error", "unusable", msg);
    goto done;
  }
  bool labels_changed = false;
  for (int32_t l = 0; l < ds->n_labels; l++)
    if (!has_label(labels, ds->labels[l])) {
      json_array_append_new(labels, json_string(ds->labels[l]));
      labels_changed = true;
    }
  /* Blobs first (durable), then the rows in one transaction. */
  new_image *ims = kiln_calloc((size_t)ds->n_images, sizeof *ims);
  if (!ims && ds->n_images > 0) {
    s = kiln_fail(err, KILN_ERR_NOMEM, "out of memory");
    goto done;
  }
  for (int32_t i = 0; i < ds->n_images && s == KILN_OK; i++) {
    const kiln_data_image *d = &ds->images[i];
    s = store_dataset_image(st, ds, i, &ims[i], err);
    ims[i].width = d->width;
    ims[i].height = d->height;
    ims[i].label = !detect && d->label >= 0 ? ds->labels[d->label] : NULL;
    ims[i].boxes = detect ? boxes_json(ds, d) : NULL;
    ims[i].split = kiln_split_name(d->split);
    snprintf(ims[i].source, sizeof ims[i].source, "%s/%s", name, d->source ? d->source : "");
    ims[i].problems = image_problems(ds, d->source ? d->source : "");
  }
  int64_t added = 0, dups = 0;
  /* The blobs' folders were not fsynced one by one: once for all here. */
  if (s == KILN_OK) s = studio_blob_sync_all(st->data_dir, err);
  if (s == KILN_OK) s = studio_db_begin(db, err);
  if (s == KILN_OK && labels_changed) s = save_labels(db, project, labels, err);
  for (int32_t i = 0; i < ds->n_images && s == KILN_OK; i++) {
    bool a = false;
    s = insert_image(db, project, &ims[i], &a, err);
    if (a) added++;
    else dups++;
  }
  if (s == KILN_OK) s = studio_db_commit(db, err);
  else studio_db_rollback(db);
  for (int32_t i = 0; i < ds->n_images; i++) {
    free(ims[i].boxes);
    free(ims[i].problems);
  }
  kiln_free(ims);
  json_object_set_new(result, "added", json_integer(added));
  json_object_set_new(result, "duplicates", json_integer(dups));
  json_object_set_new(result, "task", json_string(kiln_data_task_name(ds->task)));
  json_object_set_new(result, "format", json_string(kiln_data_format_name(ds->format)));
done:
  json_decref(labels);
  kiln_dataset_free(ds);
  studio_rmtree(tmp);
  return s;
}

static kiln_status record_file(sqlite3 *db, int64_t project, int64_t user, const char *name,
                               const char *hash, uint64_t size, json_t *result, kiln_error *err) {
  int64_t id = studio_new_id();
  json_object_set_new(result, "id", json_integer(id));
  char *text = json_dumps(result, JSON_COMPACT);
  if (!text) return kiln_fail(err, KILN_ERR_NOMEM, "out of memory");
  sqlite3_stmt *q;
  kiln_status s = record_blob(db, hash, size, err);
  if (s == KILN_OK &&
      sqlite3_prepare_v2(db,
                         "INSERT INTO files (id, project_id, name, blob_hash, size, kind, result, created_by,"
                         " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         -1, &q, NULL) != SQLITE_OK)
    s = studio_db_fail(db, err, "recording a file");
  if (s == KILN_OK) {
    sqlite3_bind_int64(q, 1, id);
    sqlite3_bind_int64(q, 2, project);
    sqlite3_bind_text(q, 3, name, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(q, 4, hash, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(q, 5, (int64_t)size);
    sqlite3_bind_text(q, 6, json_string_value(json_object_get(result, "kind")), -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(q, 7, text, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(q, 8, user);
    sqlite3_bind_int64(q, 9, studio_now_us());
    if (sqlite3_step(q) != SQLITE_DONE) s = studio_db_fail(db, err, "recording a file");
    sqlite3_finalize(q);
  }
  free(text);
  return s;
}

kiln_status studio_ingest(kiln_studio *st, sqlite3 *db, int64_t project, int64_t user,
                          const char *name, const char *hash, uint64_t size, json_t *result,
                          kiln_error *err) {
  char path[STUDIO_PATH_MAX];
  studio_blob_path(st->data_dir, hash, path, sizeof path);
  const char *ext = image_ext(path);
  const char *kind = ext ? "image" : is_archive_name(name) ? "archive" : "other";
  json_object_set_new(result, "name", json_string(name));
  json_object_set_new(result, "hash", json_string(hash));
  json_object_set_new(result, "size", json_integer((json_int_t)size));
  json_object_set_new(result, "kind", json_string(kind));
  json_object_set_new(result, "added", json_integer(0));
  json_object_set_new(result, "duplicates", json_integer(0));
  json_object_set_new(result, "problems", json_array());
  kiln_status s = KILN_OK;
  if (ext) {
    s = studio_db_begin(db, err);
    if (s == KILN_OK) s = ingest_image(st, db, project, name, hash, size, ext, result, err);
    if (s == KILN_OK) s = record_file(db, project, user, name, hash, size, result, err);
    if (s == KILN_OK) return studio_db_commit(db, err);
    studio_db_rollback(db);
    return s;
  }
  if (strcmp(kind, "archive") == 0) {
    s = ingest_archive(st, db, project, name, hash, result, err);
  } else {
    char msg[1200];
    snprintf(msg, sizeof msg,
             "%s: not a JPEG, PNG or archive (zip, tar, tar.gz, tgz, tar.bz2, tar.xz); annotation"
             " files are read together with their images from an archive; stored, nothing added",
             name);
    add_problem(json_object_get(result, "problems"), "warning", "ignored_file", msg);
  }
  if (s == KILN_OK) s = studio_db_begin(db, err);
  if (s == KILN_OK) s = record_file(db, project, user, name, hash, size, result, err);
  if (s == KILN_OK) return studio_db_commit(db, err);
  studio_db_rollback(db);
  return s;
}
