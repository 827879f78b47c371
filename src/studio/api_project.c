/*
 * studio/api_project.c: projects (a name, classify or detect, labels),
 * owned by their creator, shared with invited members. Listing shows only
 * what the caller owns or was invited to.
 */
#include <stdio.h>
#include <string.h>

#include "studio/http_int.h"

static int64_t count_of(sqlite3 *db, const char *table, int64_t project) {
  char sql[128];
  snprintf(sql, sizeof sql, "SELECT COUNT(*) FROM %s WHERE project_id = ?", table);
  sqlite3_stmt *q;
  int64_t n = 0;
  if (sqlite3_prepare_v2(db, sql, -1, &q, NULL) != SQLITE_OK) return 0;
  sqlite3_bind_int64(q, 1, project);
  if (sqlite3_step(q) == SQLITE_ROW) n = sqlite3_column_int64(q, 0);
  sqlite3_finalize(q);
  return n;
}

json_t *studio_project_json(sqlite3 *db, int64_t project) {
  sqlite3_stmt *q;
  json_t *p = NULL;
  if (sqlite3_prepare_v2(db,
                         "SELECT p.id, p.name, p.task, p.labels, p.created_at, u.name FROM projects p"
                         " JOIN users u ON u.id = p.owner_id WHERE p.id = ?",
                         -1, &q, NULL) != SQLITE_OK)
    return NULL;
  sqlite3_bind_int64(q, 1, project);
  if (sqlite3_step(q) == SQLITE_ROW) {
    json_t *labels = json_loads(studio_col_text(q, 3), 0, NULL);
    p = json_pack("{s:I, s:s, s:s, s:o, s:I, s:s}", "id", (json_int_t)sqlite3_column_int64(q, 0), "name",
                  studio_col_text(q, 1), "task", studio_col_text(q, 2), "labels",
                  labels ? labels : json_array(), "created_at", (json_int_t)sqlite3_column_int64(q, 4),
                  "owner", studio_col_text(q, 5));
  }
  sqlite3_finalize(q);
  if (p) {
    json_object_set_new(p, "images", json_integer(count_of(db, "images", project)));
    json_object_set_new(p, "jobs", json_integer(count_of(db, "jobs", project)));
    json_object_set_new(p, "models", json_integer(count_of(db, "model_versions", project)));
  }
  return p;
}

enum MHD_Result api_projects_list(studio_req *r) {
  sqlite3_stmt *q;
  if (sqlite3_prepare_v2(r->db,
                         "SELECT id FROM projects WHERE owner_id = ?1 OR id IN"
                         " (SELECT project_id FROM project_members WHERE user_id = ?1) ORDER BY created_at",
                         -1, &q, NULL) != SQLITE_OK)
    return studio_reply_error(r, 500, "database: %s", sqlite3_errmsg(r->db));
  sqlite3_bind_int64(q, 1, r->user);
  json_t *list = json_array();
  while (sqlite3_step(q) == SQLITE_ROW) {
    json_t *p = studio_project_json(r->db, sqlite3_column_int64(q, 0));
    if (p) json_array_append_new(list, p);
  }
  sqlite3_finalize(q);
  return studio_reply_json(r, 200, json_pack("{s:o}", "projects", list));
}

/* A label list: unique non-empty strings of at most 128 bytes without '\n'. */
static const char *bad_labels(json_t *labels) {
  if (!json_is_array(labels)) return "\"labels\" must be an array of names";
  size_t i, j;
  json_t *v, *w;
  json_array_foreach(labels, i, v) {
    const char *s = json_string_value(v);
    if (!s || !*s || strlen(s) > 128 || strchr(s, '\n') || strchr(s, '\r'))
      return "each label must be a non-empty one-line string of at most 128 bytes";
    json_array_foreach(labels, j, w) if (j < i && strcmp(json_string_value(w), s) == 0) return "labels must be unique";
  }
  return NULL;
}

enum MHD_Result api_projects_create(studio_req *r) {
  enum MHD_Result res;
  json_t *body = studio_body_json(r, &res);
  if (!body) return res;
  const char *name = json_string_value(json_object_get(body, "name"));
  const char *task = json_string_value(json_object_get(body, "task"));
  json_t *labels = json_object_get(body, "labels");
  const char *bad = !name || !*name || strlen(name) > 200 ? "\"name\" (1-200 characters) is required"
                    : !task || (strcmp(task, "classify") && strcmp(task, "detect"))
                        ? "\"task\" must be \"classify\" or \"detect\""
                    : labels ? bad_labels(labels)
                             : NULL;
  if (bad) {
    json_decref(body);
    return studio_reply_error(r, 400, "%s", bad);
  }
  char *labels_text = labels ? json_dumps(labels, JSON_COMPACT) : strdup("[]");
  int64_t id = studio_new_id();
  sqlite3_stmt *q;
  int rc = SQLITE_ERROR;
  if (labels_text && sqlite3_prepare_v2(r->db,
                                        "INSERT INTO projects (id, owner_id, name, task, labels, created_at)"
                                        " VALUES (?, ?, ?, ?, ?, ?)",
                                        -1, &q, NULL) == SQLITE_OK) {
    sqlite3_bind_int64(q, 1, id);
    sqlite3_bind_int64(q, 2, r->user);
    sqlite3_bind_text(q, 3, name, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(q, 4, task, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(q, 5, labels_text, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(q, 6, studio_now_us());
    rc = sqlite3_step(q);
    sqlite3_finalize(q);
  }
  free(labels_text);
  json_decref(body);
  if (rc != SQLITE_DONE) return studio_reply_error(r, 500, "database: %s", sqlite3_errmsg(r->db));
  return studio_reply_json(r, 201, studio_project_json(r->db, id));
}

enum MHD_Result api_project_get(studio_req *r) {
  json_t *p = studio_project_json(r->db, r->project);
  if (!p) return studio_reply_error(r, 404, "not found");
  json_object_set_new(p, "role", json_string(r->access == STUDIO_ACCESS_OWNER ? "owner" : "member"));
  return studio_reply_json(r, 200, p);
}

enum MHD_Result api_project_update(studio_req *r) {
  enum MHD_Result res;
  json_t *body = studio_body_json(r, &res);
  if (!body) return res;
  const char *name = json_string_value(json_object_get(body, "name"));
  json_t *labels = json_object_get(body, "labels");
  const char *bad = json_object_get(body, "name") && (!name || !*name || strlen(name) > 200)
                        ? "\"name\" must be 1-200 characters"
                    : labels ? bad_labels(labels)
                             : NULL;
  if (bad) {
    json_decref(body);
    return studio_reply_error(r, 400, "%s", bad);
  }
  char *labels_text = labels ? json_dumps(labels, JSON_COMPACT) : NULL;
  sqlite3_stmt *q;
  int rc = SQLITE_ERROR;
  if (sqlite3_prepare_v2(r->db,
                         "UPDATE projects SET name = COALESCE(?, name), labels = COALESCE(?, labels) WHERE id = ?",
                         -1, &q, NULL) == SQLITE_OK) {
    if (name) sqlite3_bind_text(q, 1, name, -1, SQLITE_TRANSIENT);
    if (labels_text) sqlite3_bind_text(q, 2, labels_text, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(q, 3, r->project);
    rc = sqlite3_step(q);
    sqlite3_finalize(q);
  }
  free(labels_text);
  json_decref(body);
  if (rc != SQLITE_DONE) return studio_reply_error(r, 500, "database: %s", sqlite3_errmsg(r->db));
  return studio_reply_json(r, 200, studio_project_json(r->db, r->project));
}

enum MHD_Result api_project_delete(studio_req *r) {
  static const char *const sql[] = {
      "DELETE FROM job_events WHERE job_id IN (SELECT id FROM jobs WHERE project_id = ?)",
      "DELETE FROM model_artifacts WHERE model_id IN (SELECT id FROM model_versions WHERE project_id = ?)",
      "DELETE FROM model_versions WHERE project_id = ?",
      "DELETE FROM jobs WHERE project_id = ?",
      "DELETE FROM uploads WHERE project_id = ?",
      "DELETE FROM images WHERE project_id = ?",
      "DELETE FROM files WHERE project_id = ?",
      "DELETE FROM project_members WHERE project_id = ?",
      "DELETE FROM projects WHERE id = ?",
  };
  kiln_error err = {0};
  kiln_status s = studio_db_begin(r->db, &err);
  for (size_t i = 0; i < sizeof sql / sizeof sql[0] && s == KILN_OK; i++) {
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(r->db, sql[i], -1, &q, NULL) != SQLITE_OK) {
      s = studio_db_fail(r->db, &err, "deleting a project");
      break;
    }
    sqlite3_bind_int64(q, 1, r->project);
    if (sqlite3_step(q) != SQLITE_DONE) s = studio_db_fail(r->db, &err, "deleting a project");
    sqlite3_finalize(q);
  }
  if (s == KILN_OK) s = studio_db_commit(r->db, &err);
  else studio_db_rollback(r->db);
  if (s != KILN_OK) return studio_reply_fail(r, &err);
  return studio_reply_json(r, 200, json_pack("{s:b}", "ok", 1));
}

enum MHD_Result api_members_list(studio_req *r) {
  sqlite3_stmt *q;
  if (sqlite3_prepare_v2(r->db,
                         "SELECT u.id, u.name, 'owner' FROM projects p JOIN users u ON u.id = p.owner_id"
                         " WHERE p.id = ?1 UNION ALL SELECT u.id, u.name, 'member' FROM project_members m"
                         " JOIN users u ON u.id = m.user_id WHERE m.project_id = ?1",
                         -1, &q, NULL) != SQLITE_OK)
    return studio_reply_error(r, 500, "database: %s", sqlite3_errmsg(r->db));
  sqlite3_bind_int64(q, 1, r->project);
  json_t *list = json_array();
  while (sqlite3_step(q) == SQLITE_ROW)
    json_array_append_new(list, json_pack("{s:I, s:s, s:s}", "id", (json_int_t)sqlite3_column_int64(q, 0),
                                          "name", studio_col_text(q, 1), "role", studio_col_text(q, 2)));
  sqlite3_finalize(q);
  return studio_reply_json(r, 200, json_pack("{s:o}", "members", list));
}

enum MHD_Result api_members_add(studio_req *r) {
  enum MHD_Result res;
  json_t *body = studio_body_json(r, &res);
  if (!body) return res;
  const char *name = json_string_value(json_object_get(body, "name"));
  sqlite3_stmt *q;
  int64_t user = 0;
  if (name && sqlite3_prepare_v2(r->db, "SELECT id FROM users WHERE name = ?", -1, &q, NULL) == SQLITE_OK) {
    sqlite3_bind_text(q, 1, name, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(q) == SQLITE_ROW) user = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
  }
  if (!user) {
    res = studio_reply_error(r, 400, "\"name\" must name an existing user");
    json_decref(body);
    return res;
  }
  json_decref(body);
  if (user == r->user) return studio_reply_error(r, 400, "the owner is a member already");
  if (sqlite3_prepare_v2(r->db,
                         "INSERT INTO project_members (project_id, user_id, created_at) VALUES (?, ?, ?)"
                         " ON CONFLICT (project_id, user_id) DO NOTHING",
                         -1, &q, NULL) != SQLITE_OK)
    return studio_reply_error(r, 500, "database: %s", sqlite3_errmsg(r->db));
  sqlite3_bind_int64(q, 1, r->project);
  sqlite3_bind_int64(q, 2, user);
  sqlite3_bind_int64(q, 3, studio_now_us());
  int rc = sqlite3_step(q);
  sqlite3_finalize(q);
  if (rc != SQLITE_DONE) return studio_reply_error(r, 500, "database: %s", sqlite3_errmsg(r->db));
  return api_members_list(r);
}
