/*
 * studio/api_jobs.c: jobs (queue one, list, read, cancel, follow its
 * progress as Server-Sent Events) and model versions with their artifacts.
 * The event stream reads the job's stored events from the database, so it
 * works whichever worker runs the job; Last-Event-ID resumes a stream.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kiln/trainer.h"
#include "studio/http_int.h"

static enum MHD_Result db_error(studio_req *r) {
  return studio_reply_error(r, 500, "database: %s", sqlite3_errmsg(r->db));
}

#define JOB_COLS \
  "id, project_id, kind, state, settings, progress, message, attempts, model_id, created_at," \
  " started_at, finished_at, result"

static json_t *nullable_int(sqlite3_stmt *q, int col) {
  return sqlite3_column_type(q, col) == SQLITE_NULL ? json_null() : json_integer(sqlite3_column_int64(q, col));
}

static json_t *job_json(sqlite3_stmt *q) {
  json_t *settings = json_loads(studio_col_text(q, 4), 0, NULL);
  return json_pack("{s:I, s:I, s:s, s:s, s:o, s:f, s:s, s:i, s:o, s:I, s:o, s:o, s:o*}", "id",
                   (json_int_t)sqlite3_column_int64(q, 0), "project_id", (json_int_t)sqlite3_column_int64(q, 1),
                   "kind", studio_col_text(q, 2), "state", studio_col_text(q, 3), "settings",
                   settings ? settings : json_object(), "progress", sqlite3_column_double(q, 5), "message",
                   studio_col_text(q, 6), "attempts", sqlite3_column_int(q, 7), "model_id",
                   nullable_int(q, 8), "created_at", (json_int_t)sqlite3_column_int64(q, 9), "started_at",
                   nullable_int(q, 10), "finished_at", nullable_int(q, 11), "result",
                   sqlite3_column_type(q, 12) == SQLITE_NULL ? json_null()
                                                              : json_loads(studio_col_text(q, 12), 0, NULL));
}

static json_t *load_job(sqlite3 *db, int64_t id) {
  sqlite3_stmt *q;
  json_t *j = NULL;
  if (sqlite3_prepare_v2(db, "SELECT " JOB_COLS " FROM jobs WHERE id = ?", -1, &q, NULL) != SQLITE_OK) return NULL;
  sqlite3_bind_int64(q, 1, id);
  if (sqlite3_step(q) == SQLITE_ROW) j = job_json(q);
  sqlite3_finalize(q);
  return j;
}

/* Train settings: known keys with sane values; a message or NULL. */
static const char *bad_settings(json_t *s) {
  if (!json_is_object(s)) return "\"settings\" must be an object";
  const char *key;
  json_t *v;
  json_object_foreach(s, key, v) {
    if (!strcmp(key, "preset")) {
      const char *p = json_string_value(v);
      if (!p || (strcmp(p, "fast") && strcmp(p, "balanced") && strcmp(p, "accurate")))
        return "settings.preset must be fast, balanced or accurate";
    } else if (!strcmp(key, "epochs") || !strcmp(key, "batch") || !strcmp(key, "calib_images") ||
               !strcmp(key, "threads") || !strcmp(key, "seed") || !strcmp(key, "fine_tune")) {
      json_int_t lo = !strcmp(key, "fine_tune") ? -1 : !strcmp(key, "seed") || !strcmp(key, "threads") ? 0 : 1;
      if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > 100000)
        return "settings.epochs, batch, calib_images, threads, seed and fine_tune must be integers in range";
    } else if (!strcmp(key, "lr")) {
      if (!json_is_number(v) || json_number_value(v) <= 0 || json_number_value(v) > 10)
        return "settings.lr must be a number in (0, 10]";
    } else if (!strcmp(key, "from_scratch")) {
      if (!json_is_boolean(v)) return "settings.from_scratch must be true or false";
    } else {
      return "settings has an unknown key (preset, epochs, batch, lr, seed, threads, calib_images,"
             " fine_tune, from_scratch)";
    }
  }
  return NULL;
}

/* Evaluate settings: a model version of this project, which model, which
 * split. */
static const char *bad_eval_settings(studio_req *r, json_t *s) {
  json_t *model = json_object_get(s, "model_id");
  if (!json_is_object(s) || !json_is_integer(model))
    return "an evaluate job needs settings.model_id (a model version of this project)";
  const char *key;
  json_t *v;
  json_object_foreach(s, key, v) {
    if (!strcmp(key, "model_id")) continue;
    const char *t = json_string_value(v);
    if (!strcmp(key, "model") && t && (!strcmp(t, "int8") || !strcmp(t, "float"))) continue;
    if (!strcmp(key, "split") && t && (!strcmp(t, "test") || !strcmp(t, "val") || !strcmp(t, "train") || !strcmp(t, "all")))
      continue;
    return "evaluate settings: model_id, model (int8 or float), split (test, val, train or all)";
  }
  sqlite3_stmt *q;
  bool found = false;
  if (sqlite3_prepare_v2(r->db, "SELECT 1 FROM model_versions WHERE id = ? AND project_id = ?", -1, &q, NULL) ==
      SQLITE_OK) {
    sqlite3_bind_int64(q, 1, json_integer_value(model));
    sqlite3_bind_int64(q, 2, r->project);
    found = sqlite3_step(q) == SQLITE_ROW;
    sqlite3_finalize(q);
  }
  return found ? NULL : "settings.model_id is not a model version of this project";
}

enum MHD_Result api_jobs_create(studio_req *r) {
  enum MHD_Result res;
  json_t *body = studio_body_json(r, &res);
  if (!body) return res;
  const char *kind = json_string_value(json_object_get(body, "kind"));
  json_t *settings = json_object_get(body, "settings");
  const char *bad = NULL;
  if (!kind) bad = "\"kind\" is required (train or evaluate)";
  else if (!strcmp(kind, "quantize") || !strcmp(kind, "compile") || !strcmp(kind, "package"))
    bad = "this job kind is not available yet: a train job quantizes and evaluates its model";
  else if (!strcmp(kind, "evaluate")) bad = bad_eval_settings(r, settings);
  else if (strcmp(kind, "train") != 0) bad = "\"kind\" must be train or evaluate";
  else if (settings) bad = bad_settings(settings);
  if (bad) {
    json_decref(body);
    return studio_reply_error(r, 400, "%s", bad);
  }
  char *text = settings ? json_dumps(settings, JSON_COMPACT | JSON_SORT_KEYS) : strdup("{}");
  int64_t id = 0;
  kiln_error err = {0};
  kiln_status s = text ? studio_job_enqueue(r->db, r->project, r->user, kind, text, &id, &err)
                       : kiln_fail(&err, KILN_ERR_NOMEM, "out of memory");
  free(text);
  json_decref(body);
  if (s != KILN_OK) return studio_reply_fail(r, &err);
  return studio_reply_json(r, 201, load_job(r->db, id));
}

enum MHD_Result api_jobs_list(studio_req *r) {
  sqlite3_stmt *q;
  if (sqlite3_prepare_v2(r->db, "SELECT " JOB_COLS " FROM jobs WHERE project_id = ? ORDER BY created_at DESC",
                         -1, &q, NULL) != SQLITE_OK)
    return db_error(r);
  sqlite3_bind_int64(q, 1, r->project);
  json_t *list = json_array();
  while (sqlite3_step(q) == SQLITE_ROW) json_array_append_new(list, job_json(q));
  sqlite3_finalize(q);
  return studio_reply_json(r, 200, json_pack("{s:o}", "jobs", list));
}

enum MHD_Result api_job_get(studio_req *r) {
  json_t *j = load_job(r->db, r->ids[0]);
  return j ? studio_reply_json(r, 200, j) : studio_reply_error(r, 404, "not found");
}

enum MHD_Result api_job_cancel(studio_req *r) {
  bool changed;
  kiln_error err = {0};
  if (studio_job_cancel(r->db, r->ids[0], &changed, &err) != KILN_OK) return studio_reply_fail(r, &err);
  if (!changed) return studio_reply_error(r, 409, "the job has ended already");
  return studio_reply_json(r, 200, load_job(r->db, r->ids[0]));
}

/* ---- Server-Sent Events ---- */

typedef struct sse_stream {
  kiln_studio *st;
  int64_t job;
  int64_t last_seq;
  bool ended;
  char *buf;
  size_t len, off, cap;
} sse_stream;

static void sse_add(sse_stream *s, const char *text) {
  size_t n = strlen(text);
  if (s->len + n + 1 > s->cap) {
    size_t cap = s->cap ? s->cap * 2 : 8192;
    while (cap < s->len + n + 1) cap *= 2;
    char *p = kiln_realloc(s->buf, cap);
    if (!p) return;
    s->buf = p;
    s->cap = cap;
  }
  memcpy(s->buf + s->len, text, n + 1);
  s->len += n;
}

/* Appends new events; true when something was added. */
static bool sse_poll(sse_stream *s) {
  kiln_error err = {0};
  sqlite3 *db = studio_db_acquire(s->st, &err);
  if (!db) return false;
  sqlite3_stmt *q;
  bool added = false;
  if (sqlite3_prepare_v2(db, "SELECT seq, data FROM job_events WHERE job_id = ? AND seq > ? ORDER BY seq LIMIT 200",
                         -1, &q, NULL) == SQLITE_OK) {
    sqlite3_bind_int64(q, 1, s->job);
    sqlite3_bind_int64(q, 2, s->last_seq);
    while (sqlite3_step(q) == SQLITE_ROW) {
      char head[64];
      s->last_seq = sqlite3_column_int64(q, 0);
      snprintf(head, sizeof head, "id: %lld\nevent: progress\ndata: ", (long long)s->last_seq);
      sse_add(s, head);
      sse_add(s, studio_col_text(q, 1));
      sse_add(s, "\n\n");
      added = true;
    }
    sqlite3_finalize(q);
  }
  if (!added) {
    json_t *job = load_job(db, s->job);
    const char *state = json_string_value(json_object_get(job, "state"));
    int64_t seq = 0;
    if (sqlite3_prepare_v2(db, "SELECT event_seq FROM jobs WHERE id = ?", -1, &q, NULL) == SQLITE_OK) {
      sqlite3_bind_int64(q, 1, s->job);
      if (sqlite3_step(q) == SQLITE_ROW) seq = sqlite3_column_int64(q, 0);
      sqlite3_finalize(q);
    }
    if (!job || (state && seq <= s->last_seq &&
                 (!strcmp(state, "done") || !strcmp(state, "failed") || !strcmp(state, "canceled")))) {
      char *text = job ? json_dumps(job, JSON_COMPACT) : NULL;
      sse_add(s, "event: end\ndata: ");
      sse_add(s, text ? text : "{}");
      sse_add(s, "\n\n");
      free(text);
      s->ended = true;
      added = true;
    }
    json_decref(job);
  }
  studio_db_release(s->st, db);
  return added;
}

static ssize_t sse_read(void *cls, uint64_t pos, char *out, size_t max) {
  (void)pos;
  sse_stream *s = cls;
  if (s->off == s->len) {
    s->off = s->len = 0;
    if (s->ended || atomic_load(&s->st->stopping)) return MHD_CONTENT_READER_END_OF_STREAM;
    /* Wait up to 15 s for news, then send a comment so proxies keep the stream. */
    for (int i = 0; i < 150 && !sse_poll(s); i++) {
      if (atomic_load(&s->st->stopping)) return MHD_CONTENT_READER_END_OF_STREAM;
      struct timespec ts = {0, 100 * 1000000L};
      nanosleep(&ts, NULL);
    }
    if (s->len == 0) sse_add(s, ": keep-alive\n\n");
    if (s->len == 0) return MHD_CONTENT_READER_END_WITH_ERROR;
  }
  size_t n = s->len - s->off < max ? s->len - s->off : max;
  memcpy(out, s->buf + s->off, n);
  s->off += n;
  return (ssize_t)n;
}

static void sse_free(void *cls) {
  sse_stream *s = cls;
  kiln_free(s->buf);
  kiln_free(s);
}

enum MHD_Result api_job_events(studio_req *r) {
  sse_stream *s = kiln_calloc(1, sizeof *s);
  if (!s) return studio_reply_error(r, 500, "out of memory");
  s->st = r->st;
  s->job = r->ids[0];
  const char *last = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Last-Event-ID");
  if (last) s->last_seq = strtoll(last, NULL, 10);
  struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, sse_read, s, sse_free);
  if (!resp) {
    sse_free(s);
    return MHD_NO;
  }
  MHD_add_response_header(resp, "Content-Type", "text/event-stream");
  MHD_add_response_header(resp, "Cache-Control", "no-store");
  MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
  enum MHD_Result ret = MHD_queue_response(r->conn, 200, resp);
  MHD_destroy_response(resp);
  return ret;
}

/* ---- model versions ---- */

static json_t *artifacts_json(sqlite3 *db, int64_t model) {
  sqlite3_stmt *q;
  json_t *list = json_array();
  if (sqlite3_prepare_v2(db, "SELECT name, blob_hash, size FROM model_artifacts WHERE model_id = ? ORDER BY name",
                         -1, &q, NULL) != SQLITE_OK)
    return list;
  sqlite3_bind_int64(q, 1, model);
  while (sqlite3_step(q) == SQLITE_ROW)
    json_array_append_new(list, json_pack("{s:s, s:s, s:I}", "name", studio_col_text(q, 0), "hash",
                                          studio_col_text(q, 1), "size", (json_int_t)sqlite3_column_int64(q, 2)));
  sqlite3_finalize(q);
  return list;
}

#define MODEL_COLS "id, project_id, job_id, dataset_hash, settings, metrics, created_at"

static json_t *model_json(sqlite3 *db, sqlite3_stmt *q) {
  json_t *settings = json_loads(studio_col_text(q, 4), 0, NULL);
  json_t *metrics = json_loads(studio_col_text(q, 5), 0, NULL);
  int64_t id = sqlite3_column_int64(q, 0);
  return json_pack("{s:I, s:I, s:I, s:s, s:o, s:o, s:I, s:o}", "id", (json_int_t)id, "project_id",
                   (json_int_t)sqlite3_column_int64(q, 1), "job_id", (json_int_t)sqlite3_column_int64(q, 2),
                   "dataset_version", studio_col_text(q, 3), "settings", settings ? settings : json_object(),
                   "metrics", metrics ? metrics : json_object(), "created_at",
                   (json_int_t)sqlite3_column_int64(q, 6), "artifacts", artifacts_json(db, id));
}

enum MHD_Result api_models_list(studio_req *r) {
  sqlite3_stmt *q;
  if (sqlite3_prepare_v2(r->db, "SELECT " MODEL_COLS " FROM model_versions WHERE project_id = ? ORDER BY created_at DESC",
                         -1, &q, NULL) != SQLITE_OK)
    return db_error(r);
  sqlite3_bind_int64(q, 1, r->project);
  json_t *list = json_array();
  while (sqlite3_step(q) == SQLITE_ROW) json_array_append_new(list, model_json(r->db, q));
  sqlite3_finalize(q);
  return studio_reply_json(r, 200, json_pack("{s:o}", "models", list));
}

enum MHD_Result api_model_get(studio_req *r) {
  sqlite3_stmt *q;
  if (sqlite3_prepare_v2(r->db, "SELECT " MODEL_COLS " FROM model_versions WHERE id = ?", -1, &q, NULL) != SQLITE_OK)
    return db_error(r);
  sqlite3_bind_int64(q, 1, r->ids[0]);
  json_t *m = sqlite3_step(q) == SQLITE_ROW ? model_json(r->db, q) : NULL;
  sqlite3_finalize(q);
  if (!m) return studio_reply_error(r, 404, "not found");
  /* The evaluation: report.json's contents. */
  size_t i;
  json_t *a;
  json_array_foreach(json_object_get(m, "artifacts"), i, a) {
    if (strcmp(json_string_value(json_object_get(a, "name")), "report.json") != 0) continue;
    char path[STUDIO_PATH_MAX];
    studio_blob_path(r->st->data_dir, json_string_value(json_object_get(a, "hash")), path, sizeof path);
    json_t *report = json_load_file(path, 0, NULL);
    if (report) json_object_set_new(m, "report", report);
  }
  return studio_reply_json(r, 200, m);
}

enum MHD_Result api_model_artifact(studio_req *r) {
  sqlite3_stmt *q;
  if (sqlite3_prepare_v2(r->db, "SELECT blob_hash FROM model_artifacts WHERE model_id = ? AND name = ?", -1, &q,
                         NULL) != SQLITE_OK)
    return db_error(r);
  sqlite3_bind_int64(q, 1, r->ids[0]);
  sqlite3_bind_text(q, 2, r->names[0], -1, SQLITE_TRANSIENT);
  char hash[STUDIO_HASH_HEX + 1] = "";
  if (sqlite3_step(q) == SQLITE_ROW) snprintf(hash, sizeof hash, "%s", studio_col_text(q, 0));
  sqlite3_finalize(q);
  if (!hash[0]) return studio_reply_error(r, 404, "model %lld has no artifact '%s'", (long long)r->ids[0], r->names[0]);
  const char *name = r->names[0];
  size_t n = strlen(name);
  const char *type = n > 5 && !strcmp(name + n - 5, ".json") ? "application/json"
                     : n > 4 && !strcmp(name + n - 4, ".txt") ? "text/plain; charset=utf-8"
                                                              : "application/octet-stream";
  return studio_reply_blob(r, hash, type, name);
}
