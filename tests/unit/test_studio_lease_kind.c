/*
 * test_studio_lease_kind.c: leasing by kind (studio_job_lease_kind, used by
 * remote workers, which run only train jobs): an older job of another kind
 * is passed over and stays queued for a worker that leases any kind; a
 * kind with no queued job leases nothing; the worker schema (migration 4)
 * is there: worker-scoped tokens and job_files; a remote worker's uploaded
 * checkpoints are restored into an in-process worker's folder once.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "studio/studio_int.h"
#include "testutil.h"

static char root[256], db_path[300];

static int64_t scalar(sqlite3 *db, const char *sql) {
  sqlite3_stmt *q;
  int64_t v = -1;
  if (sqlite3_prepare_v2(db, sql, -1, &q, NULL) != SQLITE_OK) return -1;
  if (sqlite3_step(q) == SQLITE_ROW) v = sqlite3_column_int64(q, 0);
  sqlite3_finalize(q);
  return v;
}

static void test_lease_kind(sqlite3 *db) {
  kiln_error err = {0};
  int64_t eval_job, train_job;
  REQUIRE(studio_job_enqueue(db, 1, 1, "evaluate", "{}", &eval_job, &err) == KILN_OK);
  struct timespec ts = {0, 2000000L};
  nanosleep(&ts, NULL);
  REQUIRE(studio_job_enqueue(db, 1, 1, "train", "{}", &train_job, &err) == KILN_OK);
  int64_t now = studio_now_us() + 10000;
  studio_job job;
  bool got = false;
  REQUIRE(studio_job_lease_kind(db, "remote/1/w", now, 1000000, "train", &job, &got, &err) == KILN_OK);
  CHECK(got && job.id == train_job && strcmp(job.kind, "train") == 0 && job.attempts == 1);
  studio_job_clear(&job);
  REQUIRE(studio_job_lease_kind(db, "remote/1/w", now, 1000000, "train", &job, &got, &err) == KILN_OK);
  CHECK(!got);
  REQUIRE(studio_job_lease_kind(db, "remote/1/w", now, 1000000, "package", &job, &got, &err) == KILN_OK);
  CHECK(!got);
  char sql[128];
  snprintf(sql, sizeof sql, "SELECT state = 'queued' FROM jobs WHERE id = %lld", (long long)eval_job);
  CHECK(scalar(db, sql) == 1);
  REQUIRE(studio_job_lease(db, "local/0", now, 1000000, &job, &got, &err) == KILN_OK);
  CHECK(got && job.id == eval_job);
  studio_job_clear(&job);
}

static void test_worker_schema(sqlite3 *db) {
  CHECK(scalar(db, "SELECT COUNT(*) FROM pragma_table_info('api_tokens') WHERE name = 'scope'") == 1);
  CHECK(scalar(db, "SELECT COUNT(*) FROM job_files") == 0);
  kiln_error err = {0};
  CHECK(studio_db_exec(db, "INSERT INTO job_files VALUES (1, 'weights', 'x', 'h', 1, 0)", &err) != KILN_OK);
}

static void test_restore_checkpoints(sqlite3 *db) {
  kiln_error err = {0};
  int64_t job;
  REQUIRE(studio_job_enqueue(db, 1, 1, "train", "{}", &job, &err) == KILN_OK);
  char hash[STUDIO_HASH_HEX + 1], dir[400], path[500], sql[400];
  snprintf(dir, sizeof dir, "%s/tmp", root);
  REQUIRE(studio_mkdirs(dir, &err) == KILN_OK);
  snprintf(dir, sizeof dir, "%s/blobs", root);
  REQUIRE(studio_mkdirs(dir, &err) == KILN_OK);
  REQUIRE(studio_blob_put(root, "checkpoint bytes", 16, hash, &err) == KILN_OK);
  snprintf(sql, sizeof sql,
           "INSERT INTO blobs VALUES ('%s', 16, 0); INSERT INTO job_files VALUES (%lld, 'checkpoint', 'last.ckpt', '%s', 16, 0)",
           hash, (long long)job, hash);
  REQUIRE(studio_db_exec(db, sql, &err) == KILN_OK);
  snprintf(dir, sizeof dir, "%s/out/checkpoints", root);
  REQUIRE(studio_job_restore_checkpoints(db, root, job, dir, &err) == KILN_OK);
  snprintf(path, sizeof path, "%s/last.ckpt", dir);
  char buf[32] = {0};
  FILE *f = fopen(path, "rb");
  size_t n = f ? fread(buf, 1, sizeof buf, f) : 0;
  if (f) fclose(f);
  CHECK(n == 16 && memcmp(buf, "checkpoint bytes", 16) == 0);
  snprintf(sql, sizeof sql, "SELECT COUNT(*) FROM job_files WHERE job_id = %lld", (long long)job);
  CHECK(scalar(db, sql) == 0);
  remove(path);
  REQUIRE(studio_job_restore_checkpoints(db, root, job, dir, &err) == KILN_OK);
  f = fopen(path, "rb");
  CHECK(f == NULL); /* nothing left to restore */
  if (f) fclose(f);
}

int main(void) {
  if (sodium_init() < 0) return 1;
  snprintf(root, sizeof root, "/tmp/kiln-studio-kind-XXXXXX");
  if (!mkdtemp(root)) return 1;
  snprintf(db_path, sizeof db_path, "%s/jobs.db", root);
  sqlite3 *db = NULL;
  kiln_error err = {0};
  int32_t v = 0;
  if (studio_db_open(db_path, &db, &err) != KILN_OK || studio_db_migrate(db, &v, &err) != KILN_OK) {
    fprintf(stderr, "%s\n", err.msg);
    return 1;
  }
  /* jobs reference a user and a project */
  studio_db_exec(db, "INSERT INTO users VALUES (1, 'u', 'h', 0, 0);"
                     "INSERT INTO projects VALUES (1, 1, 'p', 'classify', '[]', 0)", &err);
  test_lease_kind(db);
  test_worker_schema(db);
  test_restore_checkpoints(db);
  sqlite3_close(db);
  studio_rmtree(root);
  return test_summary();
}
