/*
 * studio/auth.c: who is asking. Passwords are stored as argon2id hashes
 * (libsodium crypto_pwhash_str, interactive limits). Login sessions and
 * API tokens are "<id>" plus a random 32-byte secret; the database keeps
 * only the secret's SHA-256, found by id and compared in constant time
 * (sodium_memcmp). Project access: the owner, or an invited member.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "studio/studio_int.h"

#define SESSION_LIFETIME_US (INT64_C(14) * 24 * 3600 * 1000000)

kiln_status studio_password_hash(const char *password, char *out, size_t n, kiln_error *err) {
  if (n < crypto_pwhash_STRBYTES) return kiln_fail(err, KILN_ERR_INTERNAL, "password hash buffer too small");
  if (crypto_pwhash_str(out, password, strlen(password), crypto_pwhash_OPSLIMIT_INTERACTIVE,
                        crypto_pwhash_MEMLIMIT_INTERACTIVE) != 0)
    return kiln_fail(err, KILN_ERR_NOMEM, "out of memory hashing a password");
  return KILN_OK;
}

bool studio_password_check(const char *stored, const char *password) {
  return crypto_pwhash_str_verify(stored, password, strlen(password)) == 0;
}

static void random_hex(char *out, size_t bytes) {
  unsigned char buf[64];
  randombytes_buf(buf, bytes);
  sodium_bin2hex(out, bytes * 2 + 1, buf, bytes);
}

static void sha256_hex(const char *s, char out[STUDIO_HASH_HEX + 1]) {
  unsigned char d[crypto_hash_sha256_BYTES];
  crypto_hash_sha256(d, (const unsigned char *)s, strlen(s));
  sodium_bin2hex(out, STUDIO_HASH_HEX + 1, d, sizeof d);
}

/* Splits "<prefix><id><sep><secret>" ; false when malformed. */
static bool split_secret(const char *s, const char *prefix, char sep, int64_t *id,
                         const char **secret) {
  size_t np = strlen(prefix);
  if (strncmp(s, prefix, np) != 0) return false;
  s += np;
  char *end;
  long long v = strtoll(s, &end, 10);
  if (end == s || *end != sep || v <= 0) return false;
  *id = v;
  *secret = end + 1;
  return strlen(*secret) == 64;
}

/* Reads the secret hash of row id from table; compares with secret. */
static kiln_status check_secret(sqlite3 *db, const char *sql, int64_t id, const char *secret,
                                int64_t now, int64_t *user, char csrf[STUDIO_HASH_HEX + 1],
                                kiln_error *err) {
  *user = 0;
  sqlite3_stmt *st;
  if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
    return studio_db_fail(db, err, "reading credentials");
  sqlite3_bind_int64(st, 1, id);
  if (now) sqlite3_bind_int64(st, 2, now);
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) {
    char want[STUDIO_HASH_HEX + 1];
    sha256_hex(secret, want);
    const char *have = studio_col_text(st, 1);
    if (strlen(have) == STUDIO_HASH_HEX && sodium_memcmp(want, have, STUDIO_HASH_HEX) == 0) {
      *user = sqlite3_column_int64(st, 0);
      if (csrf) snprintf(csrf, STUDIO_HASH_HEX + 1, "%s", studio_col_text(st, 2));
    }
  }
  sqlite3_finalize(st);
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) return studio_db_fail(db, err, "reading credentials");
  return KILN_OK;
}

kiln_status studio_session_create(sqlite3 *db, int64_t user, char cookie[STUDIO_SECRET_MAX],
                                  char csrf[STUDIO_HASH_HEX + 1], kiln_error *err) {
  char secret[65], secret_hash[STUDIO_HASH_HEX + 1];
  random_hex(secret, 32);
  random_hex(csrf, 32);
  sha256_hex(secret, secret_hash);
  int64_t id = studio_new_id(), now = studio_now_us();
  snprintf(cookie, STUDIO_SECRET_MAX, "%" PRId64 ".%s", id, secret);
  sqlite3_stmt *st;
  if (sqlite3_prepare_v2(db,
                         "INSERT INTO sessions (id, user_id, secret_hash, csrf_token, created_at, expires_at)"
                         " VALUES (?, ?, ?, ?, ?, ?)",
                         -1, &st, NULL) != SQLITE_OK)
    return studio_db_fail(db, err, "creating a session");
  sqlite3_bind_int64(st, 1, id);
  sqlite3_bind_int64(st, 2, user);
  sqlite3_bind_text(st, 3, secret_hash, -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(st, 4, csrf, -1, SQLITE_TRANSIENT);
  sqlite3_bind_int64(st, 5, now);
  sqlite3_bind_int64(st, 6, now + SESSION_LIFETIME_US);
  int rc = sqlite3_step(st);
  sqlite3_finalize(st);
  sodium_memzero(secret, sizeof secret);
  return rc == SQLITE_DONE ? KILN_OK : studio_db_fail(db, err, "creating a session");
}

kiln_status studio_session_find(sqlite3 *db, const char *cookie, int64_t *user,
                                char csrf[STUDIO_HASH_HEX + 1], kiln_error *err) {
  *user = 0;
  int64_t id;
  const char *secret;
  if (!split_secret(cookie, "", '.', &id, &secret)) return KILN_OK;
  return check_secret(db,
                      "SELECT user_id, secret_hash, csrf_token FROM sessions WHERE id = ? AND expires_at > ?",
                      id, secret, studio_now_us(), user, csrf, err);
}

kiln_status studio_session_delete(sqlite3 *db, const char *cookie, kiln_error *err) {
  int64_t id, user;
  const char *secret;
  if (!split_secret(cookie, "", '.', &id, &secret)) return KILN_OK;
  kiln_status s = check_secret(db, "SELECT user_id, secret_hash, csrf_token FROM sessions WHERE id = ? AND expires_at > ?",
                               id, secret, studio_now_us(), &user, NULL, err);
  if (s != KILN_OK || user == 0) return s;
  char sql[96];
  snprintf(sql, sizeof sql, "DELETE FROM sessions WHERE id = %" PRId64, id);
  return studio_db_exec(db, sql, err);
}

kiln_status studio_token_create(sqlite3 *db, int64_t user, const char *name, int64_t *id,
                                char token[STUDIO_SECRET_MAX], kiln_error *err) {
  char secret[65], secret_hash[STUDIO_HASH_HEX + 1];
  random_hex(secret, 32);
  sha256_hex(secret, secret_hash);
  *id = studio_new_id();
  snprintf(token, STUDIO_SECRET_MAX, "kt_%" PRId64 "_%s", *id, secret);
  sqlite3_stmt *st;
  if (sqlite3_prepare_v2(db,
                         "INSERT INTO api_tokens (id, user_id, name, secret_hash, created_at)"
                         " VALUES (?, ?, ?, ?, ?)",
                         -1, &st, NULL) != SQLITE_OK)
    return studio_db_fail(db, err, "creating a token");
  sqlite3_bind_int64(st, 1, *id);
  sqlite3_bind_int64(st, 2, user);
  sqlite3_bind_text(st, 3, name, -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(st, 4, secret_hash, -1, SQLITE_TRANSIENT);
  sqlite3_bind_int64(st, 5, studio_now_us());
  int rc = sqlite3_step(st);
  sqlite3_finalize(st);
  sodium_memzero(secret, sizeof secret);
  return rc == SQLITE_DONE ? KILN_OK : studio_db_fail(db, err, "creating a token");
}

kiln_status studio_token_find(sqlite3 *db, const char *token, int64_t *user, kiln_error *err) {
  *user = 0;
  int64_t id;
  const char *secret;
  if (!split_secret(token, "kt_", '_', &id, &secret)) return KILN_OK;
  return check_secret(db, "SELECT user_id, secret_hash, '' FROM api_tokens WHERE id = ?", id,
                      secret, 0, user, NULL, err);
}

kiln_status studio_project_access(sqlite3 *db, int64_t project, int64_t user,
                                  studio_access *access, kiln_error *err) {
  *access = STUDIO_ACCESS_NONE;
  sqlite3_stmt *st;
  if (sqlite3_prepare_v2(db,
                         "SELECT owner_id = ?2, EXISTS (SELECT 1 FROM project_members"
                         " WHERE project_id = ?1 AND user_id = ?2) FROM projects WHERE id = ?1",
                         -1, &st, NULL) != SQLITE_OK)
    return studio_db_fail(db, err, "checking project access");
  sqlite3_bind_int64(st, 1, project);
  sqlite3_bind_int64(st, 2, user);
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) {
    if (sqlite3_column_int(st, 0)) *access = STUDIO_ACCESS_OWNER;
    else if (sqlite3_column_int(st, 1)) *access = STUDIO_ACCESS_MEMBER;
  }
  sqlite3_finalize(st);
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) return studio_db_fail(db, err, "checking project access");
  return KILN_OK;
}
