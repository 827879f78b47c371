/*
 * test_studio_store.c: the studio's database migrations and blob store
 * (src/studio/db.c, blob.c): migrations run once, are recorded, leave
 * every table in place and refuse a newer schema; WAL mode is on; blobs
 * are named by their SHA-256, stored once (deduplicated), survive as
 * complete files, and a corrupted blob fails verification.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "studio/studio_int.h"
#include "testutil.h"

static char root[256];

static void make_root(void) {
  snprintf(root, sizeof root, "/tmp/kiln-studio-unit-XXXXXX");
  if (!mkdtemp(root)) abort();
  char tmp[300];
  snprintf(tmp, sizeof tmp, "%s/tmp", root);
  mkdir(tmp, 0755);
}

static int64_t scalar(sqlite3 *db, const char *sql) {
  sqlite3_stmt *q;
  int64_t v = -1;
  if (sqlite3_prepare_v2(db, sql, -1, &q, NULL) != SQLITE_OK) return -1;
  if (sqlite3_step(q) == SQLITE_ROW) v = sqlite3_column_int64(q, 0);
  sqlite3_finalize(q);
  return v;
}

static void test_migrations(void) {
  char path[300];
  snprintf(path, sizeof path, "%s/m.db", root);
  sqlite3 *db = NULL;
  kiln_error err = {0};
  REQUIRE(studio_db_open(path, &db, &err) == KILN_OK);
  int32_t v = 0;
  CHECK(studio_db_migrate(db, &v, &err) == KILN_OK);
  CHECK(v == studio_db_schema_version() && v >= 2);
  CHECK(scalar(db, "SELECT COUNT(*) FROM schema_migrations") == v);
  static const char *const tables[] = {"users", "sessions", "api_tokens", "projects", "project_members",
                                       "blobs", "files", "images", "jobs", "job_events",
                                       "model_versions", "model_artifacts", "uploads"};
  for (size_t i = 0; i < sizeof tables / sizeof tables[0]; i++) {
    char sql[160];
    snprintf(sql, sizeof sql, "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '%s'", tables[i]);
    CHECK_MSG(scalar(db, sql) == 1, "table %s", tables[i]);
  }
  sqlite3_stmt *q;
  REQUIRE(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &q, NULL) == SQLITE_OK);
  REQUIRE(sqlite3_step(q) == SQLITE_ROW);
  CHECK(strcmp(studio_col_text(q, 0), "wal") == 0);
  sqlite3_finalize(q);
  /* again: nothing to do, nothing recorded twice */
  CHECK(studio_db_migrate(db, &v, &err) == KILN_OK);
  CHECK(scalar(db, "SELECT COUNT(*) FROM schema_migrations") == v);
  /* the task check constraint holds */
  CHECK(studio_db_exec(db, "INSERT INTO users VALUES (1, 'u', 'h', 0, 0)", &err) == KILN_OK);
  CHECK(studio_db_exec(db, "INSERT INTO projects VALUES (1, 1, 'p', 'segment', '[]', 0)", &err) != KILN_OK);
  /* a database from a newer kiln is refused */
  CHECK(studio_db_exec(db, "INSERT INTO schema_migrations VALUES (999, 0)", &err) == KILN_OK);
  CHECK(studio_db_migrate(db, &v, &err) == KILN_ERR_FORMAT);
  CHECK(strstr(err.msg, "999") != NULL);
  sqlite3_close(db);
}

static void test_blobs(void) {
  kiln_error err = {0};
  const char text[] = "hello, blobs";
  char h1[STUDIO_HASH_HEX + 1], h2[STUDIO_HASH_HEX + 1];
  REQUIRE(studio_blob_put(root, text, sizeof text - 1, h1, &err) == KILN_OK);
  /* sha256("hello, blobs") computed independently */
  unsigned char d[32];
  char want[65];
  crypto_hash_sha256(d, (const unsigned char *)text, sizeof text - 1);
  sodium_bin2hex(want, sizeof want, d, sizeof d);
  CHECK(strcmp(h1, want) == 0);
  CHECK(studio_is_hash(h1));
  char path[STUDIO_PATH_MAX];
  studio_blob_path(root, h1, path, sizeof path);
  char expect[STUDIO_PATH_MAX];
  snprintf(expect, sizeof expect, "%s/blobs/%.2s/%s", root, h1, h1 + 2);
  CHECK(strcmp(path, expect) == 0);
  struct stat sb;
  CHECK(stat(path, &sb) == 0 && sb.st_size == (off_t)(sizeof text - 1));
  ino_t inode = sb.st_ino;
  /* the same bytes again: the same name, the stored file kept */
  REQUIRE(studio_blob_put(root, text, sizeof text - 1, h2, &err) == KILN_OK);
  CHECK(strcmp(h1, h2) == 0);
  CHECK(stat(path, &sb) == 0 && sb.st_ino == inode);
  CHECK(studio_blob_verify(root, h1, &err) == KILN_OK);
  /* streamed in pieces equals in one piece */
  studio_blob_writer w;
  REQUIRE(studio_blob_begin(root, &w, &err) == KILN_OK);
  CHECK(studio_blob_write(&w, text, 5, &err) == KILN_OK);
  CHECK(studio_blob_write(&w, text + 5, sizeof text - 1 - 5, &err) == KILN_OK);
  uint64_t size = 0;
  CHECK(studio_blob_commit(root, &w, h2, &size, &err) == KILN_OK);
  CHECK(strcmp(h1, h2) == 0 && size == sizeof text - 1);
  /* an aborted blob leaves nothing behind */
  REQUIRE(studio_blob_begin(root, &w, &err) == KILN_OK);
  char tmp_name[STUDIO_PATH_MAX];
  snprintf(tmp_name, sizeof tmp_name, "%s", w.tmp);
  studio_blob_write(&w, "x", 1, &err);
  studio_blob_abort(&w);
  CHECK(access(tmp_name, F_OK) != 0);
  /* a file copied in */
  char src[300];
  snprintf(src, sizeof src, "%s/src.bin", root);
  FILE *f = fopen(src, "wb");
  REQUIRE(f);
  for (int i = 0; i < 200000; i++) fputc(i * 7 & 255, f);
  fclose(f);
  REQUIRE(studio_blob_put_file(root, src, h2, &size, &err) == KILN_OK);
  CHECK(size == 200000 && strcmp(h1, h2) != 0);
  CHECK(studio_blob_verify(root, h2, &err) == KILN_OK);
  /* a corrupted blob is found out */
  studio_blob_path(root, h2, path, sizeof path);
  f = fopen(path, "r+b");
  REQUIRE(f);
  fputc('!', f);
  fclose(f);
  CHECK(studio_blob_verify(root, h2, &err) == KILN_ERR_FORMAT);
  CHECK(studio_blob_verify(root, "nothex", &err) == KILN_ERR_INVALID_ARG);
  CHECK(!studio_is_hash("ABCDEF"));
}

static void test_passwords_and_tokens(void) {
  char path[300];
  snprintf(path, sizeof path, "%s/a.db", root);
  sqlite3 *db = NULL;
  kiln_error err = {0};
  int32_t v;
  REQUIRE(studio_db_open(path, &db, &err) == KILN_OK);
  REQUIRE(studio_db_migrate(db, &v, &err) == KILN_OK);
  char hash[crypto_pwhash_STRBYTES];
  REQUIRE(studio_password_hash("correct horse", hash, sizeof hash, &err) == KILN_OK);
  CHECK(strncmp(hash, "$argon2id$", 10) == 0);
  CHECK(studio_password_check(hash, "correct horse"));
  CHECK(!studio_password_check(hash, "correct horsE"));
  REQUIRE(studio_db_exec(db, "INSERT INTO users VALUES (7, 'u', 'h', 0, 0)", &err) == KILN_OK);
  char token[STUDIO_SECRET_MAX];
  int64_t id, user = 0;
  REQUIRE(studio_token_create(db, 7, "ci", &id, token, &err) == KILN_OK);
  CHECK(studio_token_find(db, token, &user, &err) == KILN_OK && user == 7);
  /* the secret is not stored */
  CHECK(scalar(db, "SELECT COUNT(*) FROM api_tokens WHERE instr(secret_hash, 'kt_') > 0") == 0);
  token[strlen(token) - 1] ^= 1;
  CHECK(studio_token_find(db, token, &user, &err) == KILN_OK && user == 0);
  CHECK(studio_token_find(db, "kt_1_short", &user, &err) == KILN_OK && user == 0);
  char cookie[STUDIO_SECRET_MAX], csrf[STUDIO_HASH_HEX + 1], csrf2[STUDIO_HASH_HEX + 1];
  REQUIRE(studio_session_create(db, 7, cookie, csrf, &err) == KILN_OK);
  CHECK(studio_session_find(db, cookie, &user, csrf2, &err) == KILN_OK && user == 7);
  CHECK(strcmp(csrf, csrf2) == 0 && strlen(csrf) == 64);
  CHECK(studio_session_delete(db, cookie, &err) == KILN_OK);
  CHECK(studio_session_find(db, cookie, &user, csrf2, &err) == KILN_OK && user == 0);
  sqlite3_close(db);
}

int main(void) {
  if (sodium_init() < 0) return 1;
  make_root();
  RUN(test_migrations);
  RUN(test_blobs);
  RUN(test_passwords_and_tokens);
  studio_rmtree(root);
  return test_summary();
}
