/*
 * studio/studio.c: starting and stopping the studio: the data directory
 * (blobs/, tmp/, uploads/, jobs/), the database and its migrations, the
 * connection pool the HTTP threads share, the workers and the server.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "studio/studio_int.h"

kiln_studio_options kiln_studio_options_default(void) {
  kiln_studio_options o = {0};
  o.host = "127.0.0.1";
  o.port = 8080;
  o.data_dir = "kiln-studio";
  o.workers = 1;
  return o;
}

const char *kiln_studio_url(const kiln_studio *studio) { return studio->url; }

sqlite3 *studio_db_acquire(kiln_studio *st, kiln_error *err) {
  sqlite3 *db = NULL;
  pthread_mutex_lock(&st->pool_mu);
  if (st->n_pool > 0) db = st->pool[--st->n_pool];
  pthread_mutex_unlock(&st->pool_mu);
  if (db) return db;
  if (studio_db_open(st->db_path, &db, err) != KILN_OK) return NULL;
  return db;
}

void studio_db_release(kiln_studio *st, sqlite3 *db) {
  if (!db) return;
  studio_db_rollback(db); /* never hand on an open transaction */
  pthread_mutex_lock(&st->pool_mu);
  bool kept = st->n_pool < (int32_t)(sizeof st->pool / sizeof st->pool[0]);
  if (kept) st->pool[st->n_pool++] = db;
  pthread_mutex_unlock(&st->pool_mu);
  if (!kept) sqlite3_close(db);
}

static kiln_status check_options(const kiln_studio_options *o, kiln_error *err) {
  if (o->port < 0 || o->port > 65535) return kiln_fail(err, KILN_ERR_INVALID_ARG, "port %d is not 0-65535", o->port);
  if (o->workers < 0 || o->workers > 64) return kiln_fail(err, KILN_ERR_INVALID_ARG, "workers must be 0-64");
  if (o->train_threads < 0) return kiln_fail(err, KILN_ERR_INVALID_ARG, "train_threads must be >= 0");
  if (!o->data_dir || !*o->data_dir) return kiln_fail(err, KILN_ERR_INVALID_ARG, "a data directory is needed");
  if (o->db && strncmp(o->db, "sqlite:", 7) != 0) {
    if (strncmp(o->db, "postgres://", 11) == 0 || strncmp(o->db, "postgresql://", 13) == 0)
      return kiln_fail(err, KILN_ERR_UNSUPPORTED,
                       "%s: PostgreSQL is not supported by this build yet; use sqlite:PATH", o->db);
    return kiln_fail(err, KILN_ERR_INVALID_ARG, "%s: the database must be sqlite:PATH", o->db);
  }
  if (o->db && !o->db[7]) return kiln_fail(err, KILN_ERR_INVALID_ARG, "sqlite: needs a path");
  return KILN_OK;
}

kiln_status kiln_studio_start(const kiln_studio_options *options, kiln_studio **out, kiln_error *err) {
  *out = NULL;
  kiln_studio_options o = options ? *options : kiln_studio_options_default();
  if (!o.host) o.host = "127.0.0.1";
  kiln_status s = check_options(&o, err);
  if (s != KILN_OK) return s;
  if (sodium_init() < 0) return kiln_fail(err, KILN_ERR_INTERNAL, "libsodium failed to initialize");
  kiln_studio *st = kiln_calloc(1, sizeof *st);
  if (!st) return kiln_fail(err, KILN_ERR_NOMEM, "out of memory");
  pthread_mutex_init(&st->pool_mu, NULL);
  atomic_init(&st->stopping, 0);
  snprintf(st->host, sizeof st->host, "%s", o.host);
  o.host = st->host;
  /* An absolute data directory: symbolic links in snapshots point into it. */
  if (o.data_dir[0] == '/') {
    snprintf(st->data_dir, sizeof st->data_dir, "%s", o.data_dir);
  } else {
    char cwd[STUDIO_PATH_MAX];
    if (!getcwd(cwd, sizeof cwd)) cwd[0] = '\0';
    snprintf(st->data_dir, sizeof st->data_dir, "%s/%s", cwd, o.data_dir);
  }
  o.data_dir = st->data_dir;
  if (o.db) snprintf(st->db_path, sizeof st->db_path, "%s", o.db + 7);
  else snprintf(st->db_path, sizeof st->db_path, "%s/studio.db", st->data_dir);
  o.db = NULL;
  st->opt = o;
  unsigned char inst[6];
  randombytes_buf(inst, sizeof inst);
  char hex[13];
  sodium_bin2hex(hex, sizeof hex, inst, sizeof inst);
  snprintf(st->instance, sizeof st->instance, "%ld-%s", (long)getpid(), hex);

  /* tmp/ holds only this process's scratch (unfinished blobs, snapshots): what a
   * crashed run left there is dropped. One studio process per data directory. */
  char tmp_dir[STUDIO_PATH_MAX];
  snprintf(tmp_dir, sizeof tmp_dir, "%s/tmp", st->data_dir);
  studio_rmtree(tmp_dir);
  static const char *const subdirs[] = {"blobs", "tmp", "uploads", "jobs"};
  for (size_t i = 0; i < 4 && s == KILN_OK; i++) {
    char dir[STUDIO_PATH_MAX];
    snprintf(dir, sizeof dir, "%s/%s", st->data_dir, subdirs[i]);
    s = studio_mkdirs(dir, err);
  }
  sqlite3 *db = NULL;
  if (s == KILN_OK) s = studio_db_open(st->db_path, &db, err);
  int32_t version = 0;
  if (s == KILN_OK) s = studio_db_migrate(db, &version, err);
  if (db) studio_db_release(st, db);
  if (s == KILN_OK) s = studio_workers_start(st, err);
  if (s == KILN_OK) s = studio_http_start(st, err);
  if (s != KILN_OK) {
    kiln_studio_stop(st);
    return s;
  }
  *out = st;
  return KILN_OK;
}

void kiln_studio_stop(kiln_studio *st) {
  if (!st) return;
  atomic_store(&st->stopping, 1);
  studio_http_stop(st);
  studio_workers_join(st);
  for (int32_t i = 0; i < st->n_pool; i++) sqlite3_close(st->pool[i]);
  pthread_mutex_destroy(&st->pool_mu);
  kiln_free(st);
}
