/*
 * studio/jobs.c: the durable job queue. A job is a row: queued -> running
 * (leased to an owner until leased_until, renewed by heartbeats) -> done,
 * failed or canceled. Leasing is one conditional UPDATE inside a write
 * transaction, so two workers never hold the same job; a running job whose
 * lease ran out is leased again (attempts counts the leases), and the
 * worker that lost it learns so at its next heartbeat. Progress events are
 * numbered per job (event_seq) for Server-Sent Events.
 */
#include <stdio.h>
#include <string.h>

#include "base/file.h"
#include "studio/studio_int.h"

void studio_job_clear(studio_job *job) {
  kiln_free(job->settings);
  memset(job, 0, sizeof *job);
}

kiln_status studio_job_enqueue(sqlite3 *db, int64_t project, int64_t user, const char *kind,
                               const char *settings_json, int64_t *id, kiln_error *err) {
  sqlite3_stmt *st;
  *id = studio_new_id();
  if (sqlite3_prepare_v2(db,
                         "INSERT INTO jobs (id, project_id, kind, state, settings, created_by, created_at)"
                         " VALUES (?, ?, ?, 'queued', ?, ?, ?)",
                         -1, &st, NULL) != SQLITE_OK)
    return studio_db_fail(db, err, "queueing a job");
  sqlite3_bind_int64(st, 1, *id);
  sqlite3_bind_int64(st, 2, project);
  sqlite3_bind_text(st, 3, kind, -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(st, 4, settings_json, -1, SQLITE_TRANSIENT);
  sqlite3_bind_int64(st, 5, user);
  sqlite3_bind_int64(st, 6, studio_now_us());
  int rc = sqlite3_step(st);
  sqlite3_finalize(st);
  return rc == SQLITE_DONE ? KILN_OK : studio_db_fail(db, err, "queueing a job");
}

static kiln_status step_done(sqlite3 *db, sqlite3_stmt *st, const char *what, kiln_error *err) {
  int rc = sqlite3_step(st);
  sqlite3_finalize(st);
  return rc == SQLITE_DONE ? KILN_OK : studio_db_fail(db, err, what);
}

kiln_status studio_job_lease(sqlite3 *db, const char *owner, int64_t now, int64_t lease_us,
                             studio_job *job, bool *got, kiln_error *err) {
  return studio_job_lease_kind(db, owner, now, lease_us, NULL, job, got, err);
}

kiln_status studio_job_lease_kind(sqlite3 *db, const char *owner, int64_t now, int64_t lease_us,
                                  const char *kind, studio_job *job, bool *got, kiln_error *err) {
  memset(job, 0, sizeof *job);
  *got = false;
  kiln_status s = studio_db_begin(db, err);
  if (s != KILN_OK) return s;
  sqlite3_stmt *st = NULL;
  /* A canceled job whose worker died is ended here rather than run. */
  if (sqlite3_prepare_v2(db,
                         "UPDATE jobs SET state = 'canceled', finished_at = ?1, lease_owner = NULL,"
                         " leased_until = NULL WHERE state = 'running' AND leased_until < ?1"
                         " AND cancel_requested = 1",
                         -1, &st, NULL) != SQLITE_OK) {
    s = studio_db_fail(db, err, "leasing a job");
    goto done;
  }
  sqlite3_bind_int64(st, 1, now);
  s = step_done(db, st, "leasing a job", err);
  if (s != KILN_OK) goto done;
  if (sqlite3_prepare_v2(db,
                         "SELECT id, project_id, kind, settings, attempts FROM jobs"
                         " WHERE (state = 'queued' OR (state = 'running' AND leased_until < ?1))"
                         " AND (?2 IS NULL OR kind = ?2) ORDER BY created_at, id LIMIT 1",
                         -1, &st, NULL) != SQLITE_OK) {
    s = studio_db_fail(db, err, "leasing a job");
    goto done;
  }
  sqlite3_bind_int64(st, 1, now);
  if (kind) sqlite3_bind_text(st, 2, kind, -1, SQLITE_TRANSIENT);
  else sqlite3_bind_null(st, 2);
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) {
    job->id = sqlite3_column_int64(st, 0);
    job->project = sqlite3_column_int64(st, 1);
    snprintf(job->kind, sizeof job->kind, "%s", studio_col_text(st, 2));
    const char *settings = studio_col_text(st, 3);
    job->settings = kiln_malloc(strlen(settings) + 1);
    if (job->settings) memcpy(job->settings, settings, strlen(settings) + 1);
    job->attempts = sqlite3_column_int(st, 4) + 1;
  }
  sqlite3_finalize(st);
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
    s = studio_db_fail(db, err, "leasing a job");
    goto done;
  }
  if (rc == SQLITE_DONE) goto done;
  if (!job->settings) {
    s = kiln_fail(err, KILN_ERR_NOMEM, "out of memory leasing a job");
    goto done;
  }
  if (sqlite3_prepare_v2(db,
                         "UPDATE jobs SET state = 'running', lease_owner = ?, leased_until = ?,"
                         " attempts = attempts + 1, started_at = COALESCE(started_at, ?)"
                         " WHERE id = ? AND (state = 'queued' OR (state = 'running' AND leased_until < ?))",
                         -1, &st, NULL) != SQLITE_OK) {
    s = studio_db_fail(db, err, "leasing a job");
    goto done;
  }
  sqlite3_bind_text(st, 1, owner, -1, SQLITE_TRANSIENT);
  sqlite3_bind_int64(st, 2, now + lease_us);
  sqlite3_bind_int64(st, 3, now);
  sqlite3_bind_int64(st, 4, job->id);
  sqlite3_bind_int64(st, 5, now);
  s = step_done(db, st, "leasing a job", err);
  if (s == KILN_OK) *got = sqlite3_changes(db) == 1;
done:
  if (s == KILN_OK) s = studio_db_commit(db, err);
  else studio_db_rollback(db);
  if (s != KILN_OK || !*got) {
    studio_job_clear(job);
    *got = false;
  }
  return s;
}

kiln_status studio_job_heartbeat(sqlite3 *db, int64_t id, const char *owner, int64_t now,
                                 int64_t lease_us, bool *mine, bool *cancel, kiln_error *err) {
  *mine = false;
  *cancel = false;
  sqlite3_stmt *st;
  if (sqlite3_prepare_v2(db,
                         "UPDATE jobs SET leased_until = ? WHERE id = ? AND state = 'running'"
                         " AND lease_owner = ?",
                         -1, &st, NULL) != SQLITE_OK)
    return studio_db_fail(db, err, "renewing a lease");
  sqlite3_bind_int64(st, 1, now + lease_us);
  sqlite3_bind_int64(st, 2, id);
  sqlite3_bind_text(st, 3, owner, -1, SQLITE_TRANSIENT);
  kiln_status s = step_done(db, st, "renewing a lease", err);
  if (s != KILN_OK) return s;
  *mine = sqlite3_changes(db) == 1;
  if (sqlite3_prepare_v2(db, "SELECT cancel_requested FROM jobs WHERE id = ?", -1, &st, NULL) !=
      SQLITE_OK)
    return studio_db_fail(db, err, "renewing a lease");
  sqlite3_bind_int64(st, 1, id);
  if (sqlite3_step(st) == SQLITE_ROW) *cancel = sqlite3_column_int(st, 0) != 0;
  sqlite3_finalize(st);
  return KILN_OK;
}

kiln_status studio_job_finish(sqlite3 *db, int64_t id, const char *owner, const char *state,
                              const char *message, int64_t model, kiln_error *err) {
  bool requeue = strcmp(state, "queued") == 0;
  sqlite3_stmt *st;
  const char *sql = requeue
                        ? "UPDATE jobs SET state = 'queued', lease_owner = NULL, leased_until = NULL,"
                          " message = ?1 WHERE id = ?3 AND state = 'running' AND lease_owner = ?4"
                        : "UPDATE jobs SET state = ?5, lease_owner = NULL, leased_until = NULL,"
                          " message = ?1, finished_at = ?2, model_id = ?6,"
                          " progress = CASE WHEN ?5 = 'done' THEN 1 ELSE progress END"
                          " WHERE id = ?3 AND state = 'running' AND lease_owner = ?4";
  if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
    return studio_db_fail(db, err, "ending a job");
  sqlite3_bind_text(st, 1, message ? message : "", -1, SQLITE_TRANSIENT);
  if (!requeue) sqlite3_bind_int64(st, 2, studio_now_us());
  sqlite3_bind_int64(st, 3, id);
  sqlite3_bind_text(st, 4, owner, -1, SQLITE_TRANSIENT);
  if (!requeue) {
    sqlite3_bind_text(st, 5, state, -1, SQLITE_TRANSIENT);
    if (model) sqlite3_bind_int64(st, 6, model);
    else sqlite3_bind_null(st, 6);
  }
  kiln_status s = step_done(db, st, "ending a job", err);
  if (s == KILN_OK && sqlite3_changes(db) != 1)
    return kiln_fail(err, KILN_ERR_INVALID_ARG, "job %lld is not leased to %s", (long long)id, owner);
  return s;
}

kiln_status studio_job_set_result(sqlite3 *db, int64_t id, const char *result_json, kiln_error *err) {
  sqlite3_stmt *st;
  if (sqlite3_prepare_v2(db, "UPDATE jobs SET result = ? WHERE id = ?", -1, &st, NULL) != SQLITE_OK)
    return studio_db_fail(db, err, "recording a job's result");
  sqlite3_bind_text(st, 1, result_json, -1, SQLITE_TRANSIENT);
  sqlite3_bind_int64(st, 2, id);
  return step_done(db, st, "recording a job's result", err);
}

kiln_status studio_job_event(sqlite3 *db, int64_t id, const char *data_json, double progress,
                             kiln_error *err) {
  kiln_status s = studio_db_begin(db, err);
  if (s != KILN_OK) return s;
  sqlite3_stmt *st;
  if (sqlite3_prepare_v2(db,
                         "UPDATE jobs SET event_seq = event_seq + 1,"
                         " progress = CASE WHEN ?2 >= 0 THEN ?2 ELSE progress END WHERE id = ?1",
                         -1, &st, NULL) != SQLITE_OK) {
    studio_db_rollback(db);
    return studio_db_fail(db, err, "recording progress");
  }
  sqlite3_bind_int64(st, 1, id);
  sqlite3_bind_double(st, 2, progress);
  s = step_done(db, st, "recording progress", err);
  if (s == KILN_OK &&
      sqlite3_prepare_v2(db,
                         "INSERT INTO job_events (job_id, seq, data, created_at)"
                         " SELECT id, event_seq, ?, ? FROM jobs WHERE id = ?",
                         -1, &st, NULL) != SQLITE_OK)
    s = studio_db_fail(db, err, "recording progress");
  if (s == KILN_OK) {
    sqlite3_bind_text(st, 1, data_json, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 2, studio_now_us());
    sqlite3_bind_int64(st, 3, id);
    s = step_done(db, st, "recording progress", err);
  }
  if (s == KILN_OK) return studio_db_commit(db, err);
  studio_db_rollback(db);
  return s;
}

kiln_status studio_job_cancel(sqlite3 *db, int64_t id, bool *changed, kiln_error *err) {
  *changed = false;
  sqlite3_stmt *st;
  if (sqlite3_prepare_v2(db,
                         "UPDATE jobs SET state = CASE WHEN state = 'queued' THEN 'canceled' ELSE state END,"
                         " finished_at = CASE WHEN state = 'queued' THEN ?2 ELSE finished_at END,"
                         " cancel_requested = 1 WHERE id = ?1 AND state IN ('queued', 'running')",
                         -1, &st, NULL) != SQLITE_OK)
    return studio_db_fail(db, err, "canceling a job");
  sqlite3_bind_int64(st, 1, id);
  sqlite3_bind_int64(st, 2, studio_now_us());
  kiln_status s = step_done(db, st, "canceling a job", err);
  if (s == KILN_OK) *changed = sqlite3_changes(db) == 1;
  return s;
}

kiln_status studio_job_restore_checkpoints(sqlite3 *db, const char *data_dir, int64_t id, const char *dir,
                                           kiln_error *err) {
  sqlite3_stmt *st;
  if (sqlite3_prepare_v2(db, "SELECT name, blob_hash FROM job_files WHERE job_id = ? AND kind = 'checkpoint'", -1, &st,
                         NULL) != SQLITE_OK)
    return studio_db_fail(db, err, "reading a job's checkpoints");
  sqlite3_bind_int64(st, 1, id);
  kiln_status s = KILN_OK;
  bool any = false;
  while (s == KILN_OK && sqlite3_step(st) == SQLITE_ROW) {
    const char *name = studio_col_text(st, 0);
    if (!any) s = studio_mkdirs(dir, err);
    any = true;
    char blob[STUDIO_PATH_MAX], path[STUDIO_PATH_MAX + 200];
    studio_blob_path(data_dir, studio_col_text(st, 1), blob, sizeof blob);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    kiln_mapped_file f;
    if (s == KILN_OK && strchr(name, '/') == NULL && (s = kiln_file_map(blob, &f, err)) == KILN_OK) {
      s = kiln_file_write_atomic(path, f.data, f.size, err);
      kiln_file_unmap(&f);
    }
  }
  sqlite3_finalize(st);
  if (s != KILN_OK || !any) return s;
  /* the local folder holds the newest checkpoint from now on */
  if (sqlite3_prepare_v2(db, "DELETE FROM job_files WHERE job_id = ? AND kind = 'checkpoint'", -1, &st, NULL) != SQLITE_OK)
    return studio_db_fail(db, err, "reading a job's checkpoints");
  sqlite3_bind_int64(st, 1, id);
  return step_done(db, st, "reading a job's checkpoints", err);
}
