/*
 * studio/api_account.c: health, first-run setup of the administrator,
 * login and logout (session cookie: HttpOnly, SameSite=Strict, Path=/),
 * the caller's identity and CSRF token, users (administrators) and API
 * tokens.
 */
#include <stdio.h>
#include <string.h>

#include "studio/http_int.h"

static int64_t count_users(sqlite3 *db) {
  sqlite3_stmt *q;
  int64_t n = -1;
  if (sqlite3_prepare_v2(db, "SELECT COUNT(*) FROM users", -1, &q, NULL) != SQLITE_OK) return -1;
  if (sqlite3_step(q) == SQLITE_ROW) n = sqlite3_column_int64(q, 0);
  sqlite3_finalize(q);
  return n;
}

enum MHD_Result api_health(studio_req *r) {
  int64_t n = count_users(r->db);
  if (n < 0) return studio_reply_error(r, 503, "database: %s", sqlite3_errmsg(r->db));
  return studio_reply_json(r, 200, json_pack("{s:b, s:b, s:i}", "ok", 1, "setup_needed", n == 0,
                                             "schema_version", studio_db_schema_version()));
}

/* A user name: 1-64 of letters, digits, '.', '_', '-', '@'. */
static const char *bad_name(const char *name) {
  if (!name || !*name) return "\"name\" is required";
  if (strlen(name) > 64) return "\"name\" is longer than 64 characters";
  for (const char *p = name; *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
          strchr("._-@", *p)))
      return "\"name\" may hold only letters, digits and . _ - @";
  return NULL;
}

static const char *bad_password(const char *pw) {
  if (!pw) return "\"password\" is required";
  if (strlen(pw) < 8) return "\"password\" must have at least 8 characters";
  if (strlen(pw) > 1024) return "\"password\" is longer than 1024 characters";
  return NULL;
}

static json_t *user_json(int64_t id, const char *name, bool admin) {
  return json_pack("{s:I, s:s, s:b}", "id", (json_int_t)id, "name", name, "admin", admin);
}

/* Inserts a user (inside the caller's transaction when there is one). */
static kiln_status insert_user(sqlite3 *db, const char *name, const char *hash, bool admin,
                               int64_t *id, bool *exists, kiln_error *err) {
  sqlite3_stmt *q;
  *id = studio_new_id();
  *exists = false;
  if (sqlite3_prepare_v2(db,
                         "INSERT INTO users (id, name, password_hash, is_admin, created_at)"
                         " VALUES (?, ?, ?, ?, ?)",
                         -1, &q, NULL) != SQLITE_OK)
    return studio_db_fail(db, err, "adding a user");
  sqlite3_bind_int64(q, 1, *id);
  sqlite3_bind_text(q, 2, name, -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(q, 3, hash, -1, SQLITE_TRANSIENT);
  sqlite3_bind_int(q, 4, admin ? 1 : 0);
  sqlite3_bind_int64(q, 5, studio_now_us());
  int rc = sqlite3_step(q);
  sqlite3_finalize(q);
  if (rc == SQLITE_CONSTRAINT) {
    *exists = true;
    return KILN_OK;
  }
  return rc == SQLITE_DONE ? KILN_OK : studio_db_fail(db, err, "adding a user");
}

/* Reads name and password from the body and hashes the password. */
static json_t *credentials(studio_req *r, enum MHD_Result *res, const char **name,
                           char hash[crypto_pwhash_STRBYTES]) {
  json_t *body = studio_body_json(r, res);
  if (!body) return NULL;
  *name = json_string_value(json_object_get(body, "name"));
  const char *pw = json_string_value(json_object_get(body, "password"));
  const char *bad = bad_name(*name);
  if (!bad) bad = bad_password(pw);
  kiln_error err = {0};
  if (bad) *res = studio_reply_error(r, 400, "%s", bad);
  else if (studio_password_hash(pw, hash, crypto_pwhash_STRBYTES, &err) != KILN_OK)
    *res = studio_reply_fail(r, &err);
  else return body;
  json_decref(body);
  return NULL;
}

enum MHD_Result api_setup(studio_req *r) {
  enum MHD_Result res;
  const char *name;
  char hash[crypto_pwhash_STRBYTES];
  json_t *body = credentials(r, &res, &name, hash);
  if (!body) return res;
  kiln_error err = {0};
  int64_t id = 0;
  bool exists = false, done = false;
  kiln_status s = studio_db_begin(r->db, &err);
  if (s == KILN_OK && count_users(r->db) == 0) {
    s = insert_user(r->db, name, hash, true, &id, &exists, &err);
    done = s == KILN_OK;
  }
  if (s == KILN_OK) s = studio_db_commit(r->db, &err);
  else studio_db_rollback(r->db);
  if (s != KILN_OK) res = studio_reply_fail(r, &err);
  else if (!done) res = studio_reply_error(r, 409, "setup is done already: log in instead");
  else res = studio_reply_json(r, 201, user_json(id, name, true));
  json_decref(body);
  return res;
}

static char dummy_hash[crypto_pwhash_STRBYTES];
static pthread_once_t dummy_once = PTHREAD_ONCE_INIT;
static void make_dummy(void) { studio_password_hash("not a password", dummy_hash, sizeof dummy_hash, NULL); }

enum MHD_Result api_login(studio_req *r) {
  enum MHD_Result res;
  json_t *body = studio_body_json(r, &res);
  if (!body) return res;
  const char *name = json_string_value(json_object_get(body, "name"));
  const char *pw = json_string_value(json_object_get(body, "password"));
  if (!name || !pw) {
    json_decref(body);
    return studio_reply_error(r, 400, "\"name\" and \"password\" are required");
  }
  sqlite3_stmt *q;
  int64_t id = 0;
  bool admin = false;
  char stored[crypto_pwhash_STRBYTES + 1] = "";
  if (sqlite3_prepare_v2(r->db, "SELECT id, password_hash, is_admin FROM users WHERE name = ?", -1, &q,
                         NULL) == SQLITE_OK) {
    sqlite3_bind_text(q, 1, name, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(q) == SQLITE_ROW) {
      id = sqlite3_column_int64(q, 0);
      snprintf(stored, sizeof stored, "%s", studio_col_text(q, 1));
      admin = sqlite3_column_int(q, 2) != 0;
    }
    sqlite3_finalize(q);
  }
  /* Unknown names cost a hash too, so timing does not tell names apart. */
  pthread_once(&dummy_once, make_dummy);
  bool ok = studio_password_check(id ? stored : dummy_hash, pw) && id;
  if (!ok) {
    json_decref(body);
    return studio_reply_error(r, 401, "wrong user name or password");
  }
  char cookie[STUDIO_SECRET_MAX], csrf[STUDIO_HASH_HEX + 1], header[STUDIO_SECRET_MAX + 128];
  kiln_error err = {0};
  if (studio_session_create(r->db, id, cookie, csrf, &err) != KILN_OK) {
    json_decref(body);
    return studio_reply_fail(r, &err);
  }
  snprintf(header, sizeof header, "kiln_session=%s; HttpOnly; SameSite=Strict; Path=/; Max-Age=1209600",
           cookie);
  studio_reply_header(r, "Set-Cookie", header);
  json_t *user = user_json(id, name, admin);
  json_decref(body);
  return studio_reply_json(r, 200, json_pack("{s:o, s:s}", "user", user, "csrf_token", csrf));
}

enum MHD_Result api_logout(studio_req *r) {
  const char *cookie = MHD_lookup_connection_value(r->conn, MHD_COOKIE_KIND, "kiln_session");
  kiln_error err = {0};
  if (cookie && studio_session_delete(r->db, cookie, &err) != KILN_OK) return studio_reply_fail(r, &err);
  studio_reply_header(r, "Set-Cookie", "kiln_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0");
  return studio_reply_json(r, 200, json_pack("{s:b}", "ok", 1));
}

enum MHD_Result api_me(studio_req *r) {
  json_t *me = json_pack("{s:o}", "user", user_json(r->user, r->user_name, r->admin));
  if (r->cookie_auth) json_object_set_new(me, "csrf_token", json_string(r->csrf));
  return studio_reply_json(r, 200, me);
}

enum MHD_Result api_users_list(studio_req *r) {
  sqlite3_stmt *q;
  if (sqlite3_prepare_v2(r->db, "SELECT id, name, is_admin FROM users ORDER BY name", -1, &q, NULL) != SQLITE_OK)
    return studio_reply_error(r, 500, "database: %s", sqlite3_errmsg(r->db));
  json_t *users = json_array();
  while (sqlite3_step(q) == SQLITE_ROW)
    json_array_append_new(users, user_json(sqlite3_column_int64(q, 0), studio_col_text(q, 1),
                                           sqlite3_column_int(q, 2) != 0));
  sqlite3_finalize(q);
  return studio_reply_json(r, 200, json_pack("{s:o}", "users", users));
}

enum MHD_Result api_users_create(studio_req *r) {
  enum MHD_Result res;
  const char *name;
  char hash[crypto_pwhash_STRBYTES];
  json_t *body = credentials(r, &res, &name, hash);
  if (!body) return res;
  bool admin = json_is_true(json_object_get(body, "admin"));
  kiln_error err = {0};
  int64_t id;
  bool exists;
  if (insert_user(r->db, name, hash, admin, &id, &exists, &err) != KILN_OK) res = studio_reply_fail(r, &err);
  else if (exists) res = studio_reply_error(r, 409, "a user named '%s' exists", name);
  else res = studio_reply_json(r, 201, user_json(id, name, admin));
  json_decref(body);
  return res;
}

enum MHD_Result api_tokens_list(studio_req *r) {
  sqlite3_stmt *q;
  if (sqlite3_prepare_v2(r->db, "SELECT id, name, created_at FROM api_tokens WHERE user_id = ? ORDER BY created_at",
                         -1, &q, NULL) != SQLITE_OK)
    return studio_reply_error(r, 500, "database: %s", sqlite3_errmsg(r->db));
  sqlite3_bind_int64(q, 1, r->user);
  json_t *tokens = json_array();
  while (sqlite3_step(q) == SQLITE_ROW)
    json_array_append_new(tokens, json_pack("{s:I, s:s, s:I}", "id", (json_int_t)sqlite3_column_int64(q, 0),
                                            "name", studio_col_text(q, 1), "created_at",
                                            (json_int_t)sqlite3_column_int64(q, 2)));
  sqlite3_finalize(q);
  return studio_reply_json(r, 200, json_pack("{s:o}", "tokens", tokens));
}

enum MHD_Result api_tokens_create(studio_req *r) {
  enum MHD_Result res;
  json_t *body = studio_body_json(r, &res);
  if (!body) return res;
  const char *name = json_string_value(json_object_get(body, "name"));
  if (!name || !*name || strlen(name) > 128) {
    json_decref(body);
    return studio_reply_error(r, 400, "\"name\" (1-128 characters) is required");
  }
  char token[STUDIO_SECRET_MAX];
  int64_t id;
  kiln_error err = {0};
  if (studio_token_create(r->db, r->user, name, &id, token, &err) != KILN_OK) res = studio_reply_fail(r, &err);
  else
    res = studio_reply_json(r, 201, json_pack("{s:I, s:s, s:s}", "id", (json_int_t)id, "name", name,
                                              "token", token));
  json_decref(body);
  return res;
}

enum MHD_Result api_tokens_delete(studio_req *r) {
  sqlite3_stmt *q;
  if (sqlite3_prepare_v2(r->db, "DELETE FROM api_tokens WHERE id = ? AND user_id = ?", -1, &q, NULL) != SQLITE_OK)
    return studio_reply_error(r, 500, "database: %s", sqlite3_errmsg(r->db));
  sqlite3_bind_int64(q, 1, r->ids[0]);
  sqlite3_bind_int64(q, 2, r->user);
  int rc = sqlite3_step(q);
  sqlite3_finalize(q);
  if (rc != SQLITE_DONE) return studio_reply_error(r, 500, "database: %s", sqlite3_errmsg(r->db));
  if (sqlite3_changes(r->db) == 0) return studio_reply_error(r, 404, "not found");
  return studio_reply_json(r, 200, json_pack("{s:b}", "ok", 1));
}
