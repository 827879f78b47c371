/*
 * studio/studio_int.h: the studio's internal pieces, each in its own file:
 *   db.c       SQLite connections (WAL, busy timeout) and versioned migrations
 *   blob.c     the content-addressed, durable blob store
 *   auth.c     password hashes, login sessions, API tokens, project access
 *   jobs.c     the durable job queue: enqueue, lease, heartbeat, finish, events
 *   snapshot.c a project's images as a kiln dataset directory (training, health)
 *   ingest.c   uploaded files (images, archives) into a project's images
 *   worker.c   worker threads that lease and run jobs (train, evaluate)
 *   http.c     libmicrohttpd glue: request bodies, routing, auth, replies
 *   routes.c   the route table (http_int.h)
 *   api_*.c    the REST handlers (api_worker.c: remote workers' endpoints)
 *   remote_worker.c  `kiln worker`: the remote workers' HTTP client side
 *   studio.c   kiln_studio_start / stop
 * Invariants: a blob is durable on disk before any row names it; ids are
 * random positive 53-bit integers made by the studio (portable SQL: no
 * autoincrement); times are microseconds since the epoch (BIGINT).
 */
#ifndef KILN_STUDIO_INT_H
#define KILN_STUDIO_INT_H

#include <jansson.h>
#include <pthread.h>
#include <sodium.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "kiln/base.h"
#include "kiln/studio.h"

#define STUDIO_PATH_MAX 4096
#define STUDIO_HASH_HEX 64

/* ---- db.c ---- */

/* The schema version this build migrates to. */
int32_t studio_db_schema_version(void);
/* Opens path (created), WAL mode, busy timeout 10 s, foreign keys on. */
kiln_status studio_db_open(const char *path, sqlite3 **out, kiln_error *err);
/* Runs the migrations not yet recorded in schema_migrations, each in its
 * own transaction. *version gets the schema version after. A database
 * newer than this build is KILN_ERR_FORMAT. */
kiln_status studio_db_migrate(sqlite3 *db, int32_t *version, kiln_error *err);
kiln_status studio_db_exec(sqlite3 *db, const char *sql, kiln_error *err);
kiln_status studio_db_fail(sqlite3 *db, kiln_error *err, const char *what);
/* BEGIN IMMEDIATE (a write transaction from the start, so no upgrade
 * deadlock), COMMIT, ROLLBACK. */
kiln_status studio_db_begin(sqlite3 *db, kiln_error *err);
kiln_status studio_db_commit(sqlite3 *db, kiln_error *err);
void studio_db_rollback(sqlite3 *db);
int64_t studio_now_us(void);
/* A random id in [1, 2^53) (safe as a JavaScript number). */
int64_t studio_new_id(void);
/* sqlite3_column_text as a C string ("" for NULL). */
const char *studio_col_text(sqlite3_stmt *st, int col);

/* ---- blob.c ---- */

typedef struct studio_blob_writer {
  int fd;
  char tmp[STUDIO_PATH_MAX];
  crypto_hash_sha256_state sha;
  uint64_t size;
} studio_blob_writer;

/* DATA/blobs/ab/cdef... for the hash's hex. */
void studio_blob_path(const char *data_dir, const char *hash, char *out, size_t n);
/* Starts a blob in DATA/tmp. */
kiln_status studio_blob_begin(const char *data_dir, studio_blob_writer *w, kiln_error *err);
kiln_status studio_blob_write(studio_blob_writer *w, const void *data, size_t n, kiln_error *err);
/* fsync, rename to its content address (or drop it when that blob exists:
 * deduplicated), fsync of the directories. hash gets the SHA-256 hex. */
kiln_status studio_blob_commit(const char *data_dir, studio_blob_writer *w,
                               char hash[STUDIO_HASH_HEX + 1], uint64_t *size, kiln_error *err);
/* As studio_blob_commit; with defer_dir_sync the blob's bytes are fsynced
 * but its folder is not: the caller makes many blobs and then calls
 * studio_blob_sync_all once before anything names them. */
kiln_status studio_blob_commit_deferred(const char *data_dir, studio_blob_writer *w,
                                        char hash[STUDIO_HASH_HEX + 1], uint64_t *size,
                                        bool defer_dir_sync, kiln_error *err);
kiln_status studio_blob_put_file_deferred(const char *data_dir, const char *path,
                                          char hash[STUDIO_HASH_HEX + 1], uint64_t *size,
                                          bool defer_dir_sync, kiln_error *err);
/* syncfs of the data directory's file system: every rename made durable. */
kiln_status studio_blob_sync_all(const char *data_dir, kiln_error *err);
void studio_blob_abort(studio_blob_writer *w);
kiln_status studio_blob_put(const char *data_dir, const void *data, size_t n,
                            char hash[STUDIO_HASH_HEX + 1], kiln_error *err);
kiln_status studio_blob_put_file(const char *data_dir, const char *path,
                                 char hash[STUDIO_HASH_HEX + 1], uint64_t *size, kiln_error *err);
/* Re-hashes the blob: KILN_ERR_FORMAT when it differs from its name. */
kiln_status studio_blob_verify(const char *data_dir, const char *hash, kiln_error *err);
bool studio_is_hash(const char *s);
/* Makes dir and its parents (0755); fsyncs each parent it creates into. */
kiln_status studio_mkdirs(const char *dir, kiln_error *err);
kiln_status studio_fsync_dir(const char *dir, kiln_error *err);
/* Removes a tree (no symlinks followed). */
void studio_rmtree(const char *path);

/* ---- auth.c ---- */

#define STUDIO_SECRET_MAX 160

kiln_status studio_password_hash(const char *password, char *out, size_t n, kiln_error *err);
bool studio_password_check(const char *stored, const char *password);
/* A new session for user: *cookie is "<id>.<secret hex>", *csrf a random
 * token. Only SHA-256 of the secret is stored. */
kiln_status studio_session_create(sqlite3 *db, int64_t user, char cookie[STUDIO_SECRET_MAX],
                                  char csrf[STUDIO_HASH_HEX + 1], kiln_error *err);
/* *user 0 when the cookie names no live session. */
kiln_status studio_session_find(sqlite3 *db, const char *cookie, int64_t *user,
                                char csrf[STUDIO_HASH_HEX + 1], kiln_error *err);
kiln_status studio_session_delete(sqlite3 *db, const char *cookie, kiln_error *err);
/* A new API token "kt_<id>_<secret hex>" (shown once). */
kiln_status studio_token_create(sqlite3 *db, int64_t user, const char *name, int64_t *id,
                                char token[STUDIO_SECRET_MAX], kiln_error *err);
kiln_status studio_token_find(sqlite3 *db, const char *token, int64_t *user, kiln_error *err);

typedef enum studio_access {
  STUDIO_ACCESS_NONE = 0,
  STUDIO_ACCESS_MEMBER = 1,
  STUDIO_ACCESS_OWNER = 2
} studio_access;
kiln_status studio_project_access(sqlite3 *db, int64_t project, int64_t user,
                                  studio_access *access, kiln_error *err);

/* ---- jobs.c ---- */

typedef struct studio_job {
  int64_t id, project;
  char kind[32];
  char *settings; /* JSON text, kiln_malloc'd */
  int32_t attempts;
} studio_job;
void studio_job_clear(studio_job *job);

kiln_status studio_job_enqueue(sqlite3 *db, int64_t project, int64_t user, const char *kind,
                               const char *settings_json, int64_t *id, kiln_error *err);
/* Takes the oldest queued job, or a running one whose lease ran out
 * before now, for owner until now + lease_us. *got false when none. */
kiln_status studio_job_lease(sqlite3 *db, const char *owner, int64_t now, int64_t lease_us,
                             studio_job *job, bool *got, kiln_error *err);
/* As studio_job_lease, only jobs of kind (NULL: any). */
kiln_status studio_job_lease_kind(sqlite3 *db, const char *owner, int64_t now, int64_t lease_us,
                                  const char *kind, studio_job *job, bool *got, kiln_error *err);
/* Renews the lease; *mine false when another owner took the job (or it
 * ended); *cancel true when a cancel was asked for. */
kiln_status studio_job_heartbeat(sqlite3 *db, int64_t id, const char *owner, int64_t now,
                                 int64_t lease_us, bool *mine, bool *cancel, kiln_error *err);
/* Ends the job: state "done", "failed" or "canceled"; or "queued" to give
 * it back (the lease is cleared). Only the lease's owner may. */
kiln_status studio_job_finish(sqlite3 *db, int64_t id, const char *owner, const char *state,
                              const char *message, int64_t model, kiln_error *err);
/* Stores what the job produced (JSON text), e.g. an evaluation. */
kiln_status studio_job_set_result(sqlite3 *db, int64_t id, const char *result_json, kiln_error *err);
/* Appends a progress event (JSON text) with the job's progress 0..1. */
kiln_status studio_job_event(sqlite3 *db, int64_t id, const char *data_json, double progress,
                             kiln_error *err);
/* The checkpoint files a remote worker uploaded for the job (job_files)
 * into dir, then forgets them (dir is newest from then on): an in-process
 * worker resumes where the remote one stopped. Nothing when none. */
kiln_status studio_job_restore_checkpoints(sqlite3 *db, const char *data_dir, int64_t id, const char *dir,
                                           kiln_error *err);
/* Queued: canceled at once; running: cancel_requested set. *found false
 * when the job has ended already. */
kiln_status studio_job_cancel(sqlite3 *db, int64_t id, bool *changed, kiln_error *err);

/* ---- the server ---- */

struct kiln_studio {
  kiln_studio_options opt;
  char host[256];
  char data_dir[STUDIO_PATH_MAX];
  char db_path[STUDIO_PATH_MAX];
  char url[320];
  struct MHD_Daemon *mhd;
  atomic_int stopping;
  pthread_mutex_t pool_mu;
  sqlite3 *pool[32];
  int32_t n_pool;
  pthread_t *workers;
  int32_t n_workers;
  char instance[40]; /* this process's worker-name prefix */
};

/* A connection from the pool (opened when the pool is empty); NULL with
 * err set on failure. Give it back with studio_db_release. */
sqlite3 *studio_db_acquire(kiln_studio *st, kiln_error *err);
void studio_db_release(kiln_studio *st, sqlite3 *db);

/* worker.c */
struct kiln_train_progress;
/* A training job's overall progress in [0, 1] from the trainer's phase and
 * position (the same scale for in-process and remote workers). */
double studio_phase_progress(const struct kiln_train_progress *p);
/* The SSE event name of a trainer progress event ("step", "epoch", ...). */
const char *studio_event_name(int event);
kiln_status studio_workers_start(kiln_studio *st, kiln_error *err);
void studio_workers_join(kiln_studio *st);

/* http.c */
kiln_status studio_http_start(kiln_studio *st, kiln_error *err);
void studio_http_stop(kiln_studio *st);

/* snapshot.c: writes dir/images/<hash>.<ext> (symbolic links into the blob
 * store) and dir/dataset.json for a project; *manifest_hash gets the
 * dataset.json's blob hash (stored as a blob: the dataset version). */
kiln_status studio_snapshot(kiln_studio *st, sqlite3 *db, int64_t project, const char *dir,
                            char manifest_hash[STUDIO_HASH_HEX + 1], kiln_error *err);
/* The project's images as an imported kiln dataset in a fresh temp dir
 * (removed by the caller with studio_rmtree(tmpdir)). */
struct kiln_dataset;
kiln_status studio_project_dataset(kiln_studio *st, sqlite3 *db, int64_t project,
                                   char tmpdir[STUDIO_PATH_MAX], struct kiln_dataset **ds,
                                   kiln_error *err);
/* A fresh directory under DATA/tmp. */
kiln_status studio_tmpdir(kiln_studio *st, char out[STUDIO_PATH_MAX], kiln_error *err);

/* ingest.c: adds one stored blob (uploaded as name) to the project's
 * images; result gets {"name", "hash", "size", "kind", "added",
 * "duplicates", "problems": [{severity, issue, message}]}. A file that is
 * not a dataset is a problem in the result, not a failure. */
kiln_status studio_ingest(kiln_studio *st, sqlite3 *db, int64_t project, int64_t user,
                          const char *name, const char *hash, uint64_t size, json_t *result,
                          kiln_error *err);

#endif
