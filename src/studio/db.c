/*
 * studio/db.c: the studio's database. SQLite in WAL mode with a busy
 * timeout, and a list of versioned migrations recorded in
 * schema_migrations, each run in its own transaction at start. The SQL is
 * kept portable (TEXT, INTEGER, BIGINT, DOUBLE PRECISION, plain keys and
 * indexes; ids come from the studio, not from an autoincrement) so that
 * the same migrations run on PostgreSQL.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "studio/studio_int.h"

static const char *const migrations[] = {
    /* 1: accounts, projects, blobs, files, images */
    "CREATE TABLE users ("
    " id BIGINT PRIMARY KEY,"
    " name TEXT NOT NULL UNIQUE,"
    " password_hash TEXT NOT NULL,"
    " is_admin INTEGER NOT NULL DEFAULT 0,"
    " created_at BIGINT NOT NULL);"
    "CREATE TABLE sessions ("
    " id BIGINT PRIMARY KEY,"
    " user_id BIGINT NOT NULL REFERENCES users(id),"
    " secret_hash TEXT NOT NULL,"
    " csrf_token TEXT NOT NULL,"
    " created_at BIGINT NOT NULL,"
    " expires_at BIGINT NOT NULL);"
    "CREATE TABLE api_tokens ("
    " id BIGINT PRIMARY KEY,"
    " user_id BIGINT NOT NULL REFERENCES users(id),"
    " name TEXT NOT NULL,"
    " secret_hash TEXT NOT NULL,"
    " created_at BIGINT NOT NULL);"
    "CREATE TABLE projects ("
    " id BIGINT PRIMARY KEY,"
    " owner_id BIGINT NOT NULL REFERENCES users(id),"
    " name TEXT NOT NULL,"
    " task TEXT NOT NULL CHECK (task IN ('classify', 'detect')),"
    " labels TEXT NOT NULL,"
    " created_at BIGINT NOT NULL);"
    "CREATE TABLE project_members ("
    " project_id BIGINT NOT NULL REFERENCES projects(id),"
    " user_id BIGINT NOT NULL REFERENCES users(id),"
    " created_at BIGINT NOT NULL,"
    " PRIMARY KEY (project_id, user_id));"
    "CREATE TABLE blobs ("
    " hash TEXT PRIMARY KEY,"
    " size BIGINT NOT NULL,"
    " created_at BIGINT NOT NULL);"
    "CREATE TABLE files ("
    " id BIGINT PRIMARY KEY,"
    " project_id BIGINT NOT NULL REFERENCES projects(id),"
    " name TEXT NOT NULL,"
    " blob_hash TEXT NOT NULL REFERENCES blobs(hash),"
    " size BIGINT NOT NULL,"
    " kind TEXT NOT NULL,"
    " result TEXT NOT NULL,"
    " created_by BIGINT NOT NULL REFERENCES users(id),"
    " created_at BIGINT NOT NULL);"
    "CREATE INDEX files_project ON files (project_id, created_at);"
    "CREATE TABLE images ("
    " id BIGINT PRIMARY KEY,"
    " project_id BIGINT NOT NULL REFERENCES projects(id),"
    " blob_hash TEXT NOT NULL REFERENCES blobs(hash),"
    " ext TEXT NOT NULL,"
    " width INTEGER NOT NULL,"
    " height INTEGER NOT NULL,"
    " label TEXT,"
    " boxes TEXT NOT NULL,"
    " split TEXT NOT NULL,"
    " source TEXT NOT NULL,"
    " problems TEXT NOT NULL,"
    " created_at BIGINT NOT NULL,"
    " updated_at BIGINT NOT NULL,"
    " UNIQUE (project_id, blob_hash));"
    "CREATE INDEX images_project ON images (project_id, created_at);",
    /* 2: the job queue, its progress events, model versions, uploads */
    "CREATE TABLE jobs ("
    " id BIGINT PRIMARY KEY,"
    " project_id BIGINT NOT NULL REFERENCES projects(id),"
    " kind TEXT NOT NULL,"
    " state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed', 'canceled')),"
    " settings TEXT NOT NULL,"
    " progress DOUBLE PRECISION NOT NULL DEFAULT 0,"
    " message TEXT NOT NULL DEFAULT '',"
    " lease_owner TEXT,"
    " leased_until BIGINT,"
    " attempts INTEGER NOT NULL DEFAULT 0,"
    " cancel_requested INTEGER NOT NULL DEFAULT 0,"
    " event_seq BIGINT NOT NULL DEFAULT 0,"
    " model_id BIGINT,"
    " created_by BIGINT NOT NULL REFERENCES users(id),"
    " created_at BIGINT NOT NULL,"
    " started_at BIGINT,"
    " finished_at BIGINT);"
    "CREATE INDEX jobs_state ON jobs (state, created_at);"
    "CREATE INDEX jobs_project ON jobs (project_id, created_at);"
    "CREATE TABLE job_events ("
    " job_id BIGINT NOT NULL REFERENCES jobs(id),"
    " seq BIGINT NOT NULL,"
    " data TEXT NOT NULL,"
    " created_at BIGINT NOT NULL,"
    " PRIMARY KEY (job_id, seq));"
    "CREATE TABLE model_versions ("
    " id BIGINT PRIMARY KEY,"
    " project_id BIGINT NOT NULL REFERENCES projects(id),"
    " job_id BIGINT NOT NULL REFERENCES jobs(id),"
    " dataset_hash TEXT NOT NULL REFERENCES blobs(hash),"
    " settings TEXT NOT NULL,"
    " metrics TEXT NOT NULL,"
    " created_at BIGINT NOT NULL);"
    "CREATE INDEX models_project ON model_versions (project_id, created_at);"
    "CREATE TABLE model_artifacts ("
    " model_id BIGINT NOT NULL REFERENCES model_versions(id),"
    " name TEXT NOT NULL,"
    " blob_hash TEXT NOT NULL REFERENCES blobs(hash),"
    " size BIGINT NOT NULL,"
    " PRIMARY KEY (model_id, name));"
    "CREATE TABLE uploads ("
    " id BIGINT PRIMARY KEY,"
    " project_id BIGINT NOT NULL REFERENCES projects(id),"
    " name TEXT NOT NULL,"
    " length BIGINT NOT NULL,"
    " received BIGINT NOT NULL,"
    " file_id BIGINT,"
    " created_by BIGINT NOT NULL REFERENCES users(id),"
    " created_at BIGINT NOT NULL);",
    /* 3: what a job produced besides a model (an evaluation) */
    "ALTER TABLE jobs ADD COLUMN result TEXT;",
    /* 4: remote workers (api_worker.c): worker-scoped API tokens, and the
     * checkpoints and artifacts a remote worker uploaded for a job */
    "ALTER TABLE api_tokens ADD COLUMN scope TEXT NOT NULL DEFAULT 'user';"
    "CREATE TABLE job_files ("
    " job_id BIGINT NOT NULL REFERENCES jobs(id),"
    " kind TEXT NOT NULL CHECK (kind IN ('checkpoint', 'artifact')),"
    " name TEXT NOT NULL,"
    " blob_hash TEXT NOT NULL REFERENCES blobs(hash),"
    " size BIGINT NOT NULL,"
    " updated_at BIGINT NOT NULL,"
    " PRIMARY KEY (job_id, kind, name));",
};
#define N_MIGRATIONS ((int32_t)(sizeof migrations / sizeof migrations[0]))

int32_t studio_db_schema_version(void) { return N_MIGRATIONS; }

kiln_status studio_db_fail(sqlite3 *db, kiln_error *err, const char *what) {
  return kiln_fail(err, KILN_ERR_IO, "database: %s: %s", what, sqlite3_errmsg(db));
}

kiln_status studio_db_exec(sqlite3 *db, const char *sql, kiln_error *err) {
  char *msg = NULL;
  if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
    kiln_fail(err, KILN_ERR_IO, "database: %s", msg ? msg : sqlite3_errmsg(db));
    sqlite3_free(msg);
    return KILN_ERR_IO;
  }
  return KILN_OK;
}

kiln_status studio_db_begin(sqlite3 *db, kiln_error *err) {
  return studio_db_exec(db, "BEGIN IMMEDIATE", err);
}

kiln_status studio_db_commit(sqlite3 *db, kiln_error *err) {
  kiln_status s = studio_db_exec(db, "COMMIT", err);
  if (s != KILN_OK) studio_db_rollback(db);
  return s;
}

void studio_db_rollback(sqlite3 *db) {
  if (!sqlite3_get_autocommit(db)) sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
}

kiln_status studio_db_open(const char *path, sqlite3 **out, kiln_error *err) {
  *out = NULL;
  sqlite3 *db = NULL;
  int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                           NULL);
  if (rc != SQLITE_OK) {
    kiln_fail(err, KILN_ERR_IO, "%s: cannot open the database: %s", path,
              db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
    sqlite3_close(db);
    return KILN_ERR_IO;
  }
  sqlite3_busy_timeout(db, 10000);
  kiln_status s = studio_db_exec(db, "PRAGMA journal_mode=WAL", err);
  if (s == KILN_OK) s = studio_db_exec(db, "PRAGMA synchronous=FULL", err);
  if (s == KILN_OK) s = studio_db_exec(db, "PRAGMA foreign_keys=ON", err);
  if (s != KILN_OK) {
    kiln_error_prefix(err, "%s", path);
    sqlite3_close(db);
    return s;
  }
  *out = db;
  return KILN_OK;
}

static kiln_status current_version(sqlite3 *db, int32_t *version, kiln_error *err) {
  kiln_status s = studio_db_exec(db,
                                 "CREATE TABLE IF NOT EXISTS schema_migrations ("
                                 " version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)",
                                 err);
  if (s != KILN_OK) return s;
  sqlite3_stmt *st;
  if (sqlite3_prepare_v2(db, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations", -1, &st,
                         NULL) != SQLITE_OK)
    return studio_db_fail(db, err, "reading the schema version");
  int rc = sqlite3_step(st);
  *version = rc == SQLITE_ROW ? sqlite3_column_int(st, 0) : 0;
  sqlite3_finalize(st);
  return rc == SQLITE_ROW ? KILN_OK : studio_db_fail(db, err, "reading the schema version");
}

kiln_status studio_db_migrate(sqlite3 *db, int32_t *version, kiln_error *err) {
  int32_t v = 0;
  kiln_status s = studio_db_begin(db, err);
  if (s == KILN_OK) s = current_version(db, &v, err);
  if (s == KILN_OK) s = studio_db_commit(db, err);
  if (s != KILN_OK) return s;
  if (v > N_MIGRATIONS)
    return kiln_fail(err, KILN_ERR_FORMAT,
                     "database schema version %d is newer than this kiln knows (%d)", v,
                     N_MIGRATIONS);
  while (v < N_MIGRATIONS) {
    s = studio_db_begin(db, err);
    int32_t now_v = v;
    /* Another process may have migrated meanwhile: read again inside. */
    if (s == KILN_OK) s = current_version(db, &now_v, err);
    if (s == KILN_OK && now_v == v) {
      s = studio_db_exec(db, migrations[v], err);
      if (s != KILN_OK) kiln_error_prefix(err, "migration %d", v + 1);
      char sql[128];
      snprintf(sql, sizeof sql, "INSERT INTO schema_migrations (version, applied_at) VALUES (%d, %lld)",
               v + 1, (long long)studio_now_us());
      if (s == KILN_OK) s = studio_db_exec(db, sql, err);
      now_v = v + 1;
    }
    if (s == KILN_OK) s = studio_db_commit(db, err);
    if (s != KILN_OK) {
      studio_db_rollback(db);
      return s;
    }
    v = now_v;
  }
  *version = v;
  return KILN_OK;
}

int64_t studio_now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t studio_new_id(void) {
  uint64_t v = 0;
  while (v == 0) {
    randombytes_buf(&v, sizeof v);
    v &= (UINT64_C(1) << 53) - 1;
  }
  return (int64_t)v;
}

const char *studio_col_text(sqlite3_stmt *st, int col) {
  const unsigned char *t = sqlite3_column_text(st, col);
  return t ? (const char *)t : "";
}
