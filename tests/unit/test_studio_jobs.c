/*
 * test_studio_jobs.c: the studio's durable job queue (src/studio/jobs.c):
 * jobs are leased oldest first and never to two owners; heartbeats renew a
 * lease and tell a worker it lost the job; an expired lease is taken over
 * (attempts counts leases) and the old owner can no longer finish it; a
 * given-back job is leased again; cancel ends a queued job at once and
 * flags a running one; events are numbered per job; two threads leasing
 * at once on their own connections never share a job.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "studio/studio_int.h"
#include "testutil.h"

static char root[256], db_path[300];

static sqlite3 *open_db(void) {
  sqlite3 *db = NULL;
  kiln_error err = {0};
  if (studio_db_open(db_path, &db, &err) != KILN_OK) {
    fprintf(stderr, "%s\n", err.msg);
    abort();
  }
  return db;
}

static int64_t scalar(sqlite3 *db, const char *sql) {
  sqlite3_stmt *q;
  int64_t v = -1;
  if (sqlite3_prepare_v2(db, sql, -1, &q, NULL) != SQLITE_OK) return -1;
  if (sqlite3_step(q) == SQLITE_ROW) v = sqlite3_column_int64(q, 0);
  sqlite3_finalize(q);
  return v;
}

static const int64_t LEASE = 1000000;

static void pause_ms(long ms) {
  struct timespec ts = {0, ms * 1000000L};
  nanosleep(&ts, NULL);
}

static void test_lease_cycle(void) {
  sqlite3 *db = open_db();
  kiln_error err = {0};
  int64_t j1, j2, j3;
  REQUIRE(studio_job_enqueue(db, 1, 1, "train", "{\"n\":1}", &j1, &err) == KILN_OK);
  pause_ms(2);
  REQUIRE(studio_job_enqueue(db, 1, 1, "train", "{\"n\":2}", &j2, &err) == KILN_OK);
  pause_ms(2);
  REQUIRE(studio_job_enqueue(db, 1, 1, "train", "{\"n\":3}", &j3, &err) == KILN_OK);
  int64_t now = studio_now_us() + 10000;
  studio_job a, b, c;
  bool got;
  REQUIRE(studio_job_lease(db, "A", now, LEASE, &a, &got, &err) == KILN_OK && got);
  CHECK(a.id == j1 && a.attempts == 1 && strcmp(a.settings, "{\"n\":1}") == 0 && a.project == 1);
  REQUIRE(studio_job_lease(db, "B", now, LEASE, &b, &got, &err) == KILN_OK && got);
  CHECK(b.id == j2);
  bool mine, cancel;
  CHECK(studio_job_heartbeat(db, a.id, "A", now + LEASE / 2, LEASE, &mine, &cancel, &err) == KILN_OK);
  CHECK(mine && !cancel);
  CHECK(studio_job_heartbeat(db, a.id, "B", now + LEASE / 2, LEASE, &mine, &cancel, &err) == KILN_OK && !mine);
  /* A renewed to now + 1.5 lease; B did not: at now + 1.2 lease B's job is free, A's not */
  int64_t later = now + LEASE + LEASE / 5;
  REQUIRE(studio_job_lease(db, "C", later, LEASE, &c, &got, &err) == KILN_OK && got);
  CHECK(c.id == j2 && c.attempts == 2);
  CHECK(studio_job_heartbeat(db, b.id, "B", later, LEASE, &mine, &cancel, &err) == KILN_OK && !mine);
  CHECK(studio_job_finish(db, b.id, "B", "done", "", 0, &err) == KILN_ERR_INVALID_ARG);
  CHECK(studio_job_finish(db, c.id, "C", "done", "", 0, &err) == KILN_OK);
  char sql[128];
  snprintf(sql, sizeof sql, "SELECT progress FROM jobs WHERE id = %lld AND state = 'done'", (long long)j2);
  CHECK(scalar(db, sql) == 1);
  /* A gives its job back: leased again, attempts 2 */
  CHECK(studio_job_finish(db, a.id, "A", "queued", "paused", 0, &err) == KILN_OK);
  studio_job d;
  REQUIRE(studio_job_lease(db, "D", later, LEASE, &d, &got, &err) == KILN_OK && got);
  CHECK(d.id == j1 && d.attempts == 2);
  /* the third is next; then the queue is empty */
  studio_job e, f;
  REQUIRE(studio_job_lease(db, "E", later, LEASE, &e, &got, &err) == KILN_OK && got);
  CHECK(e.id == j3);
  CHECK(studio_job_lease(db, "F", later, LEASE, &f, &got, &err) == KILN_OK && !got);
  /* cancel of a running job is a request the heartbeat reports */
  bool changed;
  CHECK(studio_job_cancel(db, e.id, &changed, &err) == KILN_OK && changed);
  CHECK(studio_job_heartbeat(db, e.id, "E", later, LEASE, &mine, &cancel, &err) == KILN_OK && mine && cancel);
  CHECK(studio_job_finish(db, e.id, "E", "canceled", "canceled", 0, &err) == KILN_OK);
  CHECK(studio_job_cancel(db, e.id, &changed, &err) == KILN_OK && !changed);
  /* a queued job is canceled at once and never leased */
  int64_t j4;
  REQUIRE(studio_job_enqueue(db, 1, 1, "train", "{}", &j4, &err) == KILN_OK);
  CHECK(studio_job_cancel(db, j4, &changed, &err) == KILN_OK && changed);
  CHECK(studio_job_lease(db, "F", later, LEASE, &f, &got, &err) == KILN_OK && !got);
  /* events are numbered 1, 2, ... per job, and carry progress */
  CHECK(studio_job_event(db, d.id, "{\"a\":1}", 0.25, &err) == KILN_OK);
  CHECK(studio_job_event(db, d.id, "{\"a\":2}", -1, &err) == KILN_OK);
  snprintf(sql, sizeof sql, "SELECT MAX(seq) * 100 + COUNT(*) FROM job_events WHERE job_id = %lld", (long long)d.id);
  CHECK(scalar(db, sql) == 202);
  snprintf(sql, sizeof sql, "SELECT progress * 100 FROM jobs WHERE id = %lld", (long long)d.id);
  CHECK(scalar(db, sql) == 25);
  studio_job_clear(&a);
  studio_job_clear(&b);
  studio_job_clear(&c);
  studio_job_clear(&d);
  studio_job_clear(&e);
  sqlite3_close(db);
}

#define N_RACE_JOBS 40

typedef struct racer {
  char name[8];
  int64_t ids[N_RACE_JOBS];
  int n;
} racer;

static void *race(void *arg) {
  racer *r = arg;
  sqlite3 *db = open_db();
  kiln_error err = {0};
  for (;;) {
    studio_job j;
    bool got = false;
    if (studio_job_lease(db, r->name, studio_now_us(), 60 * LEASE, &j, &got, &err) != KILN_OK) {
      fprintf(stderr, "%s\n", err.msg);
      break;
    }
    if (!got) break;
    r->ids[r->n++] = j.id;
    studio_job_finish(db, j.id, r->name, "done", "", 0, &err);
    studio_job_clear(&j);
  }
  sqlite3_close(db);
  return NULL;
}

static void test_concurrent_leases(void) {
  sqlite3 *db = open_db();
  kiln_error err = {0};
  CHECK(studio_db_exec(db, "DELETE FROM job_events; DELETE FROM jobs", &err) == KILN_OK);
  for (int i = 0; i < N_RACE_JOBS; i++) {
    int64_t id;
    REQUIRE(studio_job_enqueue(db, 1, 1, "train", "{}", &id, &err) == KILN_OK);
  }
  racer rs[2] = {{"R0", {0}, 0}, {"R1", {0}, 0}};
  pthread_t t[2];
  for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, race, &rs[i]);
  for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
  CHECK(rs[0].n + rs[1].n == N_RACE_JOBS);
  int dup = 0;
  for (int i = 0; i < rs[0].n; i++)
    for (int k = 0; k < rs[1].n; k++) dup += rs[0].ids[i] == rs[1].ids[k];
  CHECK(dup == 0);
  CHECK(scalar(db, "SELECT COUNT(*) FROM jobs WHERE state = 'done' AND attempts = 1") == N_RACE_JOBS);
  sqlite3_close(db);
}

int main(void) {
  if (sodium_init() < 0) return 1;
  snprintf(root, sizeof root, "/tmp/kiln-studio-jobs-XXXXXX");
  if (!mkdtemp(root)) return 1;
  snprintf(db_path, sizeof db_path, "%s/jobs.db", root);
  sqlite3 *db = open_db();
  kiln_error err = {0};
  int32_t v;
  if (studio_db_migrate(db, &v, &err) != KILN_OK) return 1;
  /* jobs reference a user and a project */
  studio_db_exec(db, "INSERT INTO users VALUES (1, 'u', 'h', 0, 0);"
                     "INSERT INTO projects VALUES (1, 1, 'p', 'classify', '[]', 0)", &err);
  sqlite3_close(db);
  RUN(test_lease_cycle);
  RUN(test_concurrent_leases);
  studio_rmtree(root);
  return test_summary();
}
