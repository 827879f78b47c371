/*
 * studio/api_worker.c: the server side of remote workers (`kiln worker`,
 * studio/remote_worker.c). An administrator makes a worker token
 * (POST /api/worker-tokens: an API token whose scope is "worker"); such a
 * token may use only the /api/worker/ endpoints (403 elsewhere), and each
 * request names the worker process in X-Kiln-Worker. The job's lease owner
 * is "remote/<token id>/<worker>", so several workers may share a token.
 * A worker leases a train job through jobs.c (the same atomic lease the
 * in-process workers use), reads the job's frozen dataset (DATA/jobs/<id>/
 * dataset, made on first use exactly like worker.c makes it) and the
 * checkpoints an earlier attempt uploaded, heartbeats (the reply says
 * whether a cancel was asked for), posts progress events (stored in
 * job_events like in-process progress, so SSE forwards them), uploads
 * checkpoints and artifacts (blobs named in job_files), and completes the
 * job (a model version made from the uploaded artifacts) or fails it. A
 * job that an in-process worker checkpointed before offers those
 * checkpoints to the remote worker that takes it over. The
 * per-job endpoints answer 404 unless the job is running and leased to the
 * calling worker: a worker token reads nothing of a job it does not hold.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "studio/http_int.h"

static const char *const artifact_names[] = {"model_float.tflite", "model_int8.tflite", "labels.txt",
                                             "report.json"};
#define N_ARTIFACTS 4

kiln_status studio_worker_token(sqlite3 *db, const char *token, int64_t *worker_token, kiln_error *err) {
  *worker_token = 0;
  char *end;
  if (strncmp(token, "kt_", 3) != 0) return KILN_OK;
  long long id = strtoll(token + 3, &end, 10);
  if (*end != '_' || id <= 0) return KILN_OK;
  sqlite3_stmt *q;
  if (sqlite3_prepare_v2(db, "SELECT scope FROM api_tokens WHERE id = ?", -1, &q, NULL) != SQLITE_OK)
    return studio_db_fail(db, err, "reading a token's scope");
  sqlite3_bind_int64(q, 1, id);
  if (sqlite3_step(q) == SQLITE_ROW && strcmp(studio_col_text(q, 0), "worker") == 0) *worker_token = id;
  sqlite3_finalize(q);
  return KILN_OK;
}

static bool good_name(const char *s, size_t max) {
  size_t n = strlen(s);
  if (n == 0 || n > max || s[0] == '.') return false;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
          c == '-'))
      return false;
  }
  return true;
}

bool studio_worker_check(studio_req *r, char *msg, size_t n, unsigned *status) {
  if (!(r->route->flags & R_WORKER)) {
    *status = 403;
    snprintf(msg, n, "a worker token may only use the worker endpoints (/api/worker/...)");
    return false;
  }
  if (!r->worker_token) {
    if (r->route->flags & R_HELD) { /* a job's worker data: not there for anyone else */
      *status = 404;
      snprintf(msg, n, "not found");
      return false;
    }
    *status = 403;
    snprintf(msg, n, "this endpoint needs a worker token (POST /api/worker-tokens)");
    return false;
  }
  const char *name = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "X-Kiln-Worker");
  if (!name || !good_name(name, 64)) {
    *status = 400;
    snprintf(msg, n, "X-Kiln-Worker: the worker's name is needed (1-64 of A-Z a-z 0-9 . _ -)");
    return false;
  }
  snprintf(r->worker_owner, sizeof r->worker_owner, "remote/%" PRId64 "/%s", r->worker_token, name);
  if (!(r->route->flags & R_HELD)) return true;
  sqlite3_stmt *q;
  r->project = 0;
  if (sqlite3_prepare_v2(r->db, "SELECT project_id FROM jobs WHERE id = ? AND state = 'running' AND lease_owner = ?",
                         -1, &q, NULL) == SQLITE_OK) {
    sqlite3_bind_int64(q, 1, r->ids[0]);
    sqlite3_bind_text(q, 2, r->worker_owner, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(q) == SQLITE_ROW) r->project = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
  }
  if (!r->project) {
    *status = 404;
    snprintf(msg, n, "job %" PRId64 " is not leased to this worker", r->ids[0]);
    return false;
  }
  return true;
}

static int64_t lease_us(studio_req *r) {
  return (int64_t)(r->st->opt.lease_seconds > 0 ? r->st->opt.lease_seconds : 60) * 1000000;
}

enum MHD_Result api_worker_tokens_create(studio_req *r) {
  enum MHD_Result res;
  json_t *body = studio_body_json(r, &res);
  if (!body) return res;
  const char *name = json_string_value(json_object_get(body, "name"));
  if (!name || !*name || strlen(name) > 100) {
    json_decref(body);
    return studio_reply_error(r, 400, "name: a token name of 1-100 characters is needed");
  }
  int64_t id;
  char token[STUDIO_SECRET_MAX], name_copy[128];
  snprintf(name_copy, sizeof name_copy, "%s", name);
  json_decref(body);
  kiln_error err = {0};
  /* one transaction: the token never exists without its worker scope */
  kiln_status s = studio_db_begin(r->db, &err);
  if (s == KILN_OK) s = studio_token_create(r->db, r->user, name_copy, &id, token, &err);
  sqlite3_stmt *q;
  if (s == KILN_OK) {
    if (sqlite3_prepare_v2(r->db, "UPDATE api_tokens SET scope = 'worker' WHERE id = ?", -1, &q, NULL) != SQLITE_OK) {
      s = studio_db_fail(r->db, &err, "scoping a worker token");
    } else {
      sqlite3_bind_int64(q, 1, id);
      if (sqlite3_step(q) != SQLITE_DONE) s = studio_db_fail(r->db, &err, "scoping a worker token");
      sqlite3_finalize(q);
    }
  }
  if (s == KILN_OK) s = studio_db_commit(r->db, &err);
  else studio_db_rollback(r->db);
  if (s != KILN_OK) return studio_reply_fail(r, &err);
  json_t *out = json_pack("{s:I, s:s, s:s, s:s}", "id", (json_int_t)id, "name", name_copy,
                          "scope", "worker", "token", token);
  sodium_memzero(token, sizeof token);
  return studio_reply_json(r, 201, out);
}

enum MHD_Result api_worker_lease(studio_req *r) {
  studio_job job;
  bool got = false;
  kiln_error err = {0};
  if (studio_job_lease_kind(r->db, r->worker_owner, studio_now_us(), lease_us(r), "train", &job, &got, &err) !=
      KILN_OK)
    return studio_reply_fail(r, &err);
  if (!got) return studio_reply_json(r, 200, json_pack("{s:n}", "job"));
  json_t *settings = json_loads(job.settings, 0, NULL);
  json_t *out = json_pack("{s:{s:I, s:I, s:s, s:o, s:i, s:i, s:s}}", "job", "id", (json_int_t)job.id, "project",
                          (json_int_t)job.project, "kind", job.kind, "settings", settings ? settings : json_object(),
                          "attempts", job.attempts, "lease_seconds", (int)(lease_us(r) / 1000000), "worker",
                          r->worker_owner);
  studio_job_clear(&job);
  return studio_reply_json(r, 200, out);
}

enum MHD_Result api_worker_heartbeat(studio_req *r) {
  bool mine = false, cancel = false;
  kiln_error err = {0};
  if (studio_job_heartbeat(r->db, r->ids[0], r->worker_owner, studio_now_us(), lease_us(r), &mine, &cancel, &err) !=
      KILN_OK)
    return studio_reply_fail(r, &err);
  if (!mine) return studio_reply_error(r, 404, "job %" PRId64 " is not leased to this worker", r->ids[0]);
  return studio_reply_json(r, 200, json_pack("{s:b, s:i}", "cancel", cancel, "lease_seconds",
                                             (int)(lease_us(r) / 1000000)));
}

enum MHD_Result api_worker_event(studio_req *r) {
  enum MHD_Result res;
  json_t *body = studio_body_json(r, &res);
  if (!body) return res;
  if (!json_is_string(json_object_get(body, "event"))) {
    json_decref(body);
    return studio_reply_error(r, 400, "event: a progress event object with an \"event\" name is needed");
  }
  json_t *p = json_object_get(body, "progress");
  double progress = json_is_number(p) ? json_number_value(p) : -1.0;
  if (progress > 1.0) progress = 1.0;
  char *text = json_dumps(body, JSON_COMPACT);
  json_decref(body);
  kiln_error err = {0};
  kiln_status s = text ? studio_job_event(r->db, r->ids[0], text, progress, &err)
                       : kiln_fail(&err, KILN_ERR_NOMEM, "out of memory");
  free(text);
  if (s != KILN_OK) return studio_reply_fail(r, &err);
  return studio_reply_json(r, 200, json_pack("{s:b}", "ok", true));
}

/* DATA/jobs/<id>/dataset: the project's images frozen when the job first
 * needed them (the same folder worker.c makes), so every attempt of a job
 * trains on the same data. */
static kiln_status job_dataset(studio_req *r, char *dir, size_t n, kiln_error *err) {
  char job_dir[STUDIO_PATH_MAX], tmp[STUDIO_PATH_MAX], hash[STUDIO_HASH_HEX + 1];
  snprintf(job_dir, sizeof job_dir, "%s/jobs/%" PRId64, r->st->data_dir, r->ids[0]);
  snprintf(dir, n, "%s/dataset", job_dir);
  struct stat sb;
  if (stat(dir, &sb) == 0) return KILN_OK;
  kiln_status s = studio_mkdirs(job_dir, err);
  if (s != KILN_OK) return s;
  snprintf(tmp, sizeof tmp, "%s/dataset.tmp", job_dir);
  studio_rmtree(tmp);
  s = studio_snapshot(r->st, r->db, r->project, tmp, hash, err);
  if (s == KILN_OK && rename(tmp, dir) != 0)
    s = kiln_fail(err, KILN_ERR_IO, "%s: cannot rename: %s", tmp, strerror(errno));
  if (s == KILN_OK) s = studio_fsync_dir(job_dir, err);
  return s;
}

enum MHD_Result api_worker_dataset(studio_req *r) {
  char dir[STUDIO_PATH_MAX], path[STUDIO_PATH_MAX];
  kiln_error err = {0};
  if (job_dataset(r, dir, sizeof dir, &err) != KILN_OK) return studio_reply_fail(r, &err);
  snprintf(path, sizeof path, "%s/dataset.json", dir);
  json_error_t je;
  json_t *manifest = json_load_file(path, 0, &je);
  if (!manifest) return studio_reply_error(r, 500, "%s: %s", path, je.text);
  return studio_reply_json(r, 200, manifest);
}

enum MHD_Result api_worker_dataset_file(studio_req *r) {
  const char *name = r->names[0];
  char dir[STUDIO_PATH_MAX], path[STUDIO_PATH_MAX], hash[STUDIO_HASH_HEX + 1];
  if (!good_name(name, 80) || strlen(name) < STUDIO_HASH_HEX + 2 || name[STUDIO_HASH_HEX] != '.')
    return studio_reply_error(r, 404, "not found");
  memcpy(hash, name, STUDIO_HASH_HEX);
  hash[STUDIO_HASH_HEX] = '\0';
  if (!studio_is_hash(hash)) return studio_reply_error(r, 404, "not found");
  kiln_error err = {0};
  if (job_dataset(r, dir, sizeof dir, &err) != KILN_OK) return studio_reply_fail(r, &err);
  snprintf(path, sizeof path, "%s/images/%s", dir, name);
  struct stat sb;
  if (lstat(path, &sb) != 0) return studio_reply_error(r, 404, "%s is not in this job's dataset", name);
  return studio_reply_blob(r, hash, "application/octet-stream", NULL);
}

/* job_files.kind from the route: .../checkpoints[/{name}] or .../artifacts/{name} */
static const char *file_kind(studio_req *r) {
  return strstr(r->route->pattern, "/checkpoints") ? "checkpoint" : "artifact";
}

/* A blob row and the job's file row naming it (inside the caller's
 * transaction). */
static kiln_status record_file(studio_req *r, const char *kind, const char *name, const char *hash, uint64_t size,
                               kiln_error *err) {
  int64_t now = studio_now_us();
  sqlite3_stmt *q;
  if (sqlite3_prepare_v2(r->db, "INSERT INTO blobs (hash, size, created_at) VALUES (?, ?, ?) ON CONFLICT (hash) DO NOTHING",
                         -1, &q, NULL) != SQLITE_OK)
    return studio_db_fail(r->db, err, "recording a blob");
  sqlite3_bind_text(q, 1, hash, -1, SQLITE_TRANSIENT);
  sqlite3_bind_int64(q, 2, (int64_t)size);
  sqlite3_bind_int64(q, 3, now);
  int rc = sqlite3_step(q);
  sqlite3_finalize(q);
  if (rc != SQLITE_DONE) return studio_db_fail(r->db, err, "recording a blob");
  if (sqlite3_prepare_v2(r->db,
                         "INSERT INTO job_files (job_id, kind, name, blob_hash, size, updated_at) VALUES (?, ?, ?, ?, ?, ?)"
                         " ON CONFLICT (job_id, kind, name) DO UPDATE SET blob_hash = excluded.blob_hash,"
                         " size = excluded.size, updated_at = excluded.updated_at",
                         -1, &q, NULL) != SQLITE_OK)
    return studio_db_fail(r->db, err, "recording a job's file");
  sqlite3_bind_int64(q, 1, r->ids[0]);
  sqlite3_bind_text(q, 2, kind, -1, SQLITE_STATIC);
  sqlite3_bind_text(q, 3, name, -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(q, 4, hash, -1, SQLITE_TRANSIENT);
  sqlite3_bind_int64(q, 5, (int64_t)size);
  sqlite3_bind_int64(q, 6, now);
  rc = sqlite3_step(q);
  sqlite3_finalize(q);
  return rc == SQLITE_DONE ? KILN_OK : studio_db_fail(r->db, err, "recording a job's file");
}

/* A job that ran in the studio's own workers before has its checkpoints
 * in DATA/jobs/<id>/out/checkpoints: when no remote worker uploaded any,
 * those become the job's checkpoint files, so a remote worker resumes
 * from them too. */
static kiln_status import_local_checkpoints(studio_req *r, kiln_error *err) {
  sqlite3_stmt *q;
  int64_t n = 0;
  if (sqlite3_prepare_v2(r->db, "SELECT COUNT(*) FROM job_files WHERE job_id = ? AND kind = 'checkpoint'", -1, &q,
                         NULL) != SQLITE_OK)
    return studio_db_fail(r->db, err, "reading a job's files");
  sqlite3_bind_int64(q, 1, r->ids[0]);
  if (sqlite3_step(q) == SQLITE_ROW) n = sqlite3_column_int64(q, 0);
  sqlite3_finalize(q);
  char dir[STUDIO_PATH_MAX], path[STUDIO_PATH_MAX + 300], hash[STUDIO_HASH_HEX + 1];
  snprintf(dir, sizeof dir, "%s/jobs/%" PRId64 "/out/checkpoints", r->st->data_dir, r->ids[0]);
  DIR *d = n == 0 ? opendir(dir) : NULL;
  if (!d) return KILN_OK;
  kiln_status s = studio_db_begin(r->db, err);
  struct dirent *e;
  while (s == KILN_OK && (e = readdir(d)) != NULL) {
    struct stat sb;
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    if (!good_name(e->d_name, 128) || stat(path, &sb) != 0 || !S_ISREG(sb.st_mode)) continue;
    uint64_t size = 0;
    s = studio_blob_put_file(r->st->data_dir, path, hash, &size, err);
    if (s == KILN_OK) s = record_file(r, "checkpoint", e->d_name, hash, size, err);
  }
  closedir(d);
  if (s == KILN_OK) return studio_db_commit(r->db, err);
  studio_db_rollback(r->db);
  return s;
}

enum MHD_Result api_worker_files_list(studio_req *r) {
  kiln_error err = {0};
  if (strcmp(file_kind(r), "checkpoint") == 0 && import_local_checkpoints(r, &err) != KILN_OK)
    return studio_reply_fail(r, &err);
  sqlite3_stmt *q;
  if (sqlite3_prepare_v2(r->db, "SELECT name, blob_hash, size FROM job_files WHERE job_id = ? AND kind = ? ORDER BY name",
                         -1, &q, NULL) != SQLITE_OK)
    return studio_reply_error(r, 500, "database: %s", sqlite3_errmsg(r->db));
  sqlite3_bind_int64(q, 1, r->ids[0]);
  sqlite3_bind_text(q, 2, file_kind(r), -1, SQLITE_STATIC);
  json_t *files = json_array();
  while (sqlite3_step(q) == SQLITE_ROW)
    json_array_append_new(files, json_pack("{s:s, s:s, s:I}", "name", studio_col_text(q, 0), "hash",
                                           studio_col_text(q, 1), "size", (json_int_t)sqlite3_column_int64(q, 2)));
  sqlite3_finalize(q);
  return studio_reply_json(r, 200, json_pack("{s:o}", "files", files));
}

enum MHD_Result api_worker_file_get(studio_req *r) {
  sqlite3_stmt *q;
  char hash[STUDIO_HASH_HEX + 1] = "";
  if (sqlite3_prepare_v2(r->db, "SELECT blob_hash FROM job_files WHERE job_id = ? AND kind = ? AND name = ?", -1, &q,
                         NULL) != SQLITE_OK)
    return studio_reply_error(r, 500, "database: %s", sqlite3_errmsg(r->db));
  sqlite3_bind_int64(q, 1, r->ids[0]);
  sqlite3_bind_text(q, 2, file_kind(r), -1, SQLITE_STATIC);
  sqlite3_bind_text(q, 3, r->names[0], -1, SQLITE_TRANSIENT);
  if (sqlite3_step(q) == SQLITE_ROW) snprintf(hash, sizeof hash, "%s", studio_col_text(q, 0));
  sqlite3_finalize(q);
  if (!hash[0]) return studio_reply_error(r, 404, "this job has no %s %s", file_kind(r), r->names[0]);
  return studio_reply_blob(r, hash, "application/octet-stream", NULL);
}

enum MHD_Result api_worker_file_put(studio_req *r) {
  if (!good_name(r->names[0], 128)) return studio_reply_error(r, 400, "%s: not a usable file name", r->names[0]);
  if (r->n_parts != 1) return studio_reply_error(r, 400, "send exactly one file (raw body with X-Filename)");
  const upload_part *p = &r->parts[0];
  kiln_error err = {0};
  kiln_status s = studio_db_begin(r->db, &err);
  if (s == KILN_OK) s = record_file(r, file_kind(r), r->names[0], p->hash, p->size, &err);
  if (s == KILN_OK) s = studio_db_commit(r->db, &err);
  else studio_db_rollback(r->db);
  if (s != KILN_OK) return studio_reply_fail(r, &err);
  return studio_reply_json(r, 201, json_pack("{s:s, s:s, s:I}", "name", r->names[0], "hash", p->hash, "size",
                                             (json_int_t)p->size));
}

static kiln_status exec_bind(sqlite3 *db, const char *sql, kiln_error *err, const char *what, int64_t a, int64_t b,
                             const char *t1, const char *t2, const char *t3, int64_t c, int64_t d) {
  sqlite3_stmt *q;
  if (sqlite3_prepare_v2(db, sql, -1, &q, NULL) != SQLITE_OK) return studio_db_fail(db, err, what);
  sqlite3_bind_int64(q, 1, a);
  sqlite3_bind_int64(q, 2, b);
  sqlite3_bind_text(q, 3, t1, -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(q, 4, t2, -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(q, 5, t3, -1, SQLITE_TRANSIENT);
  sqlite3_bind_int64(q, 6, c);
  sqlite3_bind_int64(q, 7, d); /* parameters a statement lacks are ignored (SQLITE_RANGE) */
  int rc = sqlite3_step(q);
  sqlite3_finalize(q);
  return rc == SQLITE_DONE ? KILN_OK : studio_db_fail(db, err, what);
}

/* body {"metrics": {...}}: a model version from the uploaded artifacts and
 * the job's dataset version; the job is done (one transaction). */
enum MHD_Result api_worker_complete(studio_req *r) {
  enum MHD_Result res;
  json_t *body = studio_body_json(r, &res);
  if (!body) return res;
  json_t *metrics = json_object_get(body, "metrics");
  char *metrics_text = json_is_object(metrics) ? json_dumps(metrics, JSON_COMPACT) : NULL;
  json_decref(body);
  if (!metrics_text) return studio_reply_error(r, 400, "metrics: an object is needed");
  char hashes[N_ARTIFACTS][STUDIO_HASH_HEX + 1];
  int64_t sizes[N_ARTIFACTS];
  sqlite3_stmt *q;
  for (int i = 0; i < N_ARTIFACTS; i++) {
    hashes[i][0] = '\0';
    if (sqlite3_prepare_v2(r->db, "SELECT blob_hash, size FROM job_files WHERE job_id = ? AND kind = 'artifact' AND name = ?",
                           -1, &q, NULL) != SQLITE_OK)
      break;
    sqlite3_bind_int64(q, 1, r->ids[0]);
    sqlite3_bind_text(q, 2, artifact_names[i], -1, SQLITE_STATIC);
    if (sqlite3_step(q) == SQLITE_ROW) {
      snprintf(hashes[i], sizeof hashes[i], "%s", studio_col_text(q, 0));
      sizes[i] = sqlite3_column_int64(q, 1);
    }
    sqlite3_finalize(q);
    if (!hashes[i][0]) {
      free(metrics_text);
      return studio_reply_error(r, 409, "artifact %s was not uploaded", artifact_names[i]);
    }
  }
  char dir[STUDIO_PATH_MAX], path[STUDIO_PATH_MAX], dataset_hash[STUDIO_HASH_HEX + 1], *settings = NULL;
  uint64_t dsize = 0;
  kiln_error err = {0};
  kiln_status s = job_dataset(r, dir, sizeof dir, &err);
  snprintf(path, sizeof path, "%s/dataset.json", dir);
  if (s == KILN_OK) s = studio_blob_put_file(r->st->data_dir, path, dataset_hash, &dsize, &err);
  if (s == KILN_OK && sqlite3_prepare_v2(r->db, "SELECT settings FROM jobs WHERE id = ?", -1, &q, NULL) == SQLITE_OK) {
    sqlite3_bind_int64(q, 1, r->ids[0]);
    if (sqlite3_step(q) == SQLITE_ROW) {
      const char *text = studio_col_text(q, 0);
      settings = kiln_malloc(strlen(text) + 1);
      if (settings) memcpy(settings, text, strlen(text) + 1);
    }
    sqlite3_finalize(q);
  }
  if (s == KILN_OK && !settings) s = kiln_fail(&err, KILN_ERR_IO, "cannot read job %" PRId64, r->ids[0]);
  int64_t model = studio_new_id(), now = studio_now_us();
  if (s == KILN_OK) s = studio_db_begin(r->db, &err);
  else {
    free(metrics_text);
    kiln_free(settings);
    return studio_reply_fail(r, &err);
  }
  if (s == KILN_OK)
    s = exec_bind(r->db, "INSERT INTO blobs (hash, size, created_at) VALUES (?3, ?1, ?2) ON CONFLICT (hash) DO NOTHING",
                  &err, "recording a blob", (int64_t)dsize, now, dataset_hash, "", "", 0, 0);
  if (s == KILN_OK)
    s = exec_bind(r->db,
                  "INSERT INTO model_versions (id, project_id, job_id, dataset_hash, settings, metrics, created_at)"
                  " VALUES (?1, ?2, ?6, ?3, ?4, ?5, ?7)",
                  &err, "recording a model", model, r->project, dataset_hash, settings, metrics_text, r->ids[0], now);
  for (int i = 0; i < N_ARTIFACTS && s == KILN_OK; i++)
    s = exec_bind(r->db, "INSERT INTO model_artifacts (model_id, name, blob_hash, size) VALUES (?1, ?3, ?4, ?2)", &err,
                  "recording an artifact", model, sizes[i], artifact_names[i], hashes[i], "", 0, 0);
  if (s == KILN_OK) s = studio_job_finish(r->db, r->ids[0], r->worker_owner, "done", "", model, &err);
  if (s == KILN_OK) s = studio_db_commit(r->db, &err);
  else studio_db_rollback(r->db);
  free(metrics_text);
  kiln_free(settings);
  if (s != KILN_OK) return studio_reply_fail(r, &err);
  return studio_reply_json(r, 200, json_pack("{s:I, s:s}", "model_id", (json_int_t)model, "state", "done"));
}

/* body {"state": "failed" | "canceled" | "queued", "message": "..."};
 * "queued" gives the job back (it resumes from its uploaded checkpoint). */
enum MHD_Result api_worker_fail(studio_req *r) {
  enum MHD_Result res;
  json_t *body = studio_body_json(r, &res);
  if (!body) return res;
  const char *state = json_string_value(json_object_get(body, "state"));
  const char *message = json_string_value(json_object_get(body, "message"));
  if (!state) state = "failed";
  if (strcmp(state, "failed") != 0 && strcmp(state, "canceled") != 0 && strcmp(state, "queued") != 0) {
    json_decref(body);
    return studio_reply_error(r, 400, "state: \"failed\", \"canceled\" or \"queued\", not \"%s\"", state);
  }
  kiln_error err = {0};
  kiln_status s = studio_job_finish(r->db, r->ids[0], r->worker_owner, state, message ? message : "", 0, &err);
  json_t *out = json_pack("{s:s}", "state", state);
  json_decref(body);
  if (s != KILN_OK) {
    json_decref(out);
    return studio_reply_fail(r, &err);
  }
  return studio_reply_json(r, 200, out);
}
