/*
 * studio/http.c: the studio's HTTP face on libmicrohttpd (one thread per
 * connection). For each request: match the route, authenticate (Bearer API
 * token, or the session cookie plus X-CSRF-Token for anything that is not
 * GET/HEAD), check access to the project the path names, read the body
 * (JSON up to 1 MiB; uploaded files streamed into the blob store; a chunk
 * of a resumable upload appended and fsynced), then call the handler. An
 * error found before the body is answered after the body was read, so the
 * client always gets the answer.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "studio/http_int.h"
#include "studio/web.h"

/* ---- replies ---- */

void studio_reply_header(studio_req *r, const char *name, const char *value) {
  if (r->n_headers >= 4) return;
  snprintf(r->headers[r->n_headers][0], 512, "%s", name);
  snprintf(r->headers[r->n_headers][1], 512, "%s", value);
  r->n_headers++;
}

static enum MHD_Result queue(studio_req *r, unsigned status, struct MHD_Response *resp,
                             const char *type) {
  if (!resp) return MHD_NO;
  if (type) MHD_add_response_header(resp, "Content-Type", type);
  MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
  MHD_add_response_header(resp, "Cache-Control", "no-store");
  for (int32_t i = 0; i < r->n_headers; i++)
    MHD_add_response_header(resp, r->headers[i][0], r->headers[i][1]);
  enum MHD_Result ret = MHD_queue_response(r->conn, status, resp);
  MHD_destroy_response(resp);
  return ret;
}

enum MHD_Result studio_reply_json(studio_req *r, unsigned status, json_t *body) {
  char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
  json_decref(body);
  if (!text) {
    static const char nomem[] = "{\"error\":\"out of memory\"}";
    return queue(r, 500,
                 MHD_create_response_from_buffer(sizeof nomem - 1, (void *)nomem, MHD_RESPMEM_PERSISTENT),
                 "application/json");
  }
  return queue(r, status, MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE),
               "application/json");
}

enum MHD_Result studio_reply_error(studio_req *r, unsigned status, const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return studio_reply_json(r, status, json_pack("{s:s}", "error", msg));
}

enum MHD_Result studio_reply_fail(studio_req *r, const kiln_error *err) {
  fprintf(stderr, "kiln studio: %s %s: %s\n", r->method, r->route ? r->route->pattern : "?", err->msg);
  unsigned status = err->status == KILN_ERR_INVALID_ARG || err->status == KILN_ERR_FORMAT ? 400
                    : err->status == KILN_ERR_LIMIT                                       ? 413
                                                                                          : 500;
  return studio_reply_error(r, status, "%s", err->msg);
}

enum MHD_Result studio_reply_bytes(studio_req *r, unsigned status, const char *type, void *data,
                                   size_t n) {
  struct MHD_Response *resp =
      MHD_create_response_from_buffer_with_free_callback(n, data, kiln_free);
  return queue(r, status, resp, type);
}

enum MHD_Result studio_reply_blob(studio_req *r, const char *hash, const char *type,
                                  const char *name) {
  char path[STUDIO_PATH_MAX];
  studio_blob_path(r->st->data_dir, hash, path, sizeof path);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return studio_reply_error(r, 500, "blob %s is missing from the store", hash);
  off_t size = lseek(fd, 0, SEEK_END);
  lseek(fd, 0, SEEK_SET);
  if (name) {
    char disp[600];
    snprintf(disp, sizeof disp, "attachment; filename=\"%s\"", name);
    studio_reply_header(r, "Content-Disposition", disp);
  }
  studio_reply_header(r, "ETag", hash);
  return queue(r, 200, MHD_create_response_from_fd((uint64_t)size, fd), type);
}

const char *studio_query(studio_req *r, const char *name) {
  return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name);
}

json_t *studio_body_json(studio_req *r, enum MHD_Result *result) {
  json_error_t je;
  memset(&je, 0, sizeof je);
  json_t *v = r->body_len ? json_loadb(r->body, r->body_len, 0, &je) : NULL;
  if (json_is_object(v)) return v;
  if (v) *result = studio_reply_error(r, 400, "request body: a JSON object is needed");
  else if (r->body_len) *result = studio_reply_error(r, 400, "request body: line %d: %s", je.line, je.text);
  else *result = studio_reply_error(r, 400, "request body: a JSON object is needed");
  json_decref(v);
  return NULL;
}

/* ---- routing ---- */

static bool match(const char *pattern, const char *url, int64_t ids[3], char names[2][256]) {
  int ni = 0, nn = 0;
  while (*pattern && *url) {
    if (*pattern == '{') {
      bool is_id = strncmp(pattern, "{id}", 4) == 0;
      const char *end = strchr(url, '/');
      size_t len = end ? (size_t)(end - url) : strlen(url);
      if (len == 0 || len >= 256) return false;
      if (is_id) {
        if (ni >= 3) return false;
        int64_t v = 0;
        for (size_t i = 0; i < len; i++) {
          if (url[i] < '0' || url[i] > '9' || v > (INT64_MAX - 9) / 10) return false;
          v = v * 10 + (url[i] - '0');
        }
        if (v <= 0) return false;
        ids[ni++] = v;
      } else {
        if (nn >= 2) return false;
        memcpy(names[nn], url, len);
        names[nn++][len] = '\0';
      }
      pattern = strchr(pattern, '}') + 1;
      url += len;
      continue;
    }
    if (*pattern != *url) return false;
    pattern++;
    url++;
  }
  return *pattern == '\0' && *url == '\0';
}

/* Finds the route; *path_known tells a 405 from a 404. */
static const studio_route *find_route(studio_req *r, const char *method, const char *url,
                                      bool *path_known) {
  *path_known = false;
  for (size_t i = 0; i < studio_n_routes; i++) {
    const studio_route *rt = &studio_routes[i];
    int64_t ids[3] = {0};
    char names[2][256] = {{0}};
    if (!match(rt->pattern, url, ids, names)) continue;
    *path_known = true;
    if (strcmp(rt->method, method) != 0) continue;
    memcpy(r->ids, ids, sizeof ids);
    memcpy(r->names, names, sizeof names);
    return rt;
  }
  return NULL;
}

static void early(studio_req *r, unsigned status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void early(studio_req *r, unsigned status, const char *fmt, ...) {
  if (r->early_status) return;
  r->early_status = status;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(r->early_msg, sizeof r->early_msg, fmt, ap);
  va_end(ap);
}

/* The project a job, model or upload belongs to; 0 when none. */
static int64_t owner_project(sqlite3 *db, const char *table, int64_t id) {
  char sql[128];
  snprintf(sql, sizeof sql, "SELECT project_id FROM %s WHERE id = ?", table);
  sqlite3_stmt *q;
  int64_t p = 0;
  if (sqlite3_prepare_v2(db, sql, -1, &q, NULL) != SQLITE_OK) return 0;
  sqlite3_bind_int64(q, 1, id);
  if (sqlite3_step(q) == SQLITE_ROW) p = sqlite3_column_int64(q, 0);
  sqlite3_finalize(q);
  return p;
}

static void authenticate(studio_req *r) {
  kiln_error err = {0};
  const char *auth = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Authorization");
  const char *cookie = MHD_lookup_connection_value(r->conn, MHD_COOKIE_KIND, "kiln_session");
  kiln_status s = KILN_OK;
  if (auth && strncasecmp(auth, "Bearer ", 7) == 0) {
    s = studio_token_find(r->db, auth + 7, &r->user, &err);
    if (s == KILN_OK && r->user) s = studio_worker_token(r->db, auth + 7, &r->worker_token, &err);
  } else if (cookie) {
    s = studio_session_find(r->db, cookie, &r->user, r->csrf, &err);
    r->cookie_auth = r->user != 0;
  }
  if (s != KILN_OK) {
    early(r, 500, "%s", err.msg);
    return;
  }
  if (r->user) {
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(r->db, "SELECT name, is_admin FROM users WHERE id = ?", -1, &q, NULL) == SQLITE_OK) {
      sqlite3_bind_int64(q, 1, r->user);
      if (sqlite3_step(q) == SQLITE_ROW) {
        snprintf(r->user_name, sizeof r->user_name, "%s", studio_col_text(q, 0));
        r->admin = sqlite3_column_int(q, 1) != 0;
      } else {
        r->user = 0;
      }
      sqlite3_finalize(q);
    }
  }
  const studio_route *rt = r->route;
  if (rt->flags & R_PUBLIC) return;
  if (!r->user) {
    early(r, 401, "authentication required: log in (POST /api/login) or send an API token");
    return;
  }
  bool safe = !strcmp(r->method, "GET") || !strcmp(r->method, "HEAD");
  if (r->cookie_auth && !safe) {
    const char *tok = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "X-CSRF-Token");
    if (!tok || strlen(tok) != STUDIO_HASH_HEX || sodium_memcmp(tok, r->csrf, STUDIO_HASH_HEX) != 0) {
      early(r, 403, "CSRF check failed: send the session's token in the X-CSRF-Token header");
      return;
    }
  }
  unsigned wstatus = 0;
  if ((r->worker_token || (rt->flags & R_WORKER)) && !studio_worker_check(r, r->early_msg, sizeof r->early_msg, &wstatus)) {
    r->early_status = wstatus;
    return;
  }
  if (rt->flags & R_WORKER) return;
  if ((rt->flags & R_ADMIN) && !r->admin) {
    early(r, 403, "only an administrator may do this");
    return;
  }
  if (rt->flags & (R_PROJECT | R_JOB | R_MODEL | R_UPLOAD)) {
    r->project = (rt->flags & R_PROJECT)  ? r->ids[0]
                 : (rt->flags & R_JOB)    ? owner_project(r->db, "jobs", r->ids[0])
                 : (rt->flags & R_MODEL)  ? owner_project(r->db, "model_versions", r->ids[0])
                                          : owner_project(r->db, "uploads", r->ids[0]);
    if (r->project && studio_project_access(r->db, r->project, r->user, &r->access, &err) != KILN_OK) {
      early(r, 500, "%s", err.msg);
      return;
    }
    if (!r->project || r->access == STUDIO_ACCESS_NONE) {
      early(r, 404, "not found");
      return;
    }
    if ((rt->flags & R_OWNER) && r->access != STUDIO_ACCESS_OWNER)
      early(r, 403, "only the project's owner may do this");
  }
}

/* ---- bodies ---- */

static void body_fail(studio_req *r, unsigned status) {
  r->failed = true;
  r->fail_status = status;
}

static void append_json(studio_req *r, const char *data, size_t n) {
  if (r->failed) return;
  if (r->body_len + n > JSON_BODY_MAX) {
    kiln_fail(&r->err, KILN_ERR_LIMIT, "request body over %u bytes", JSON_BODY_MAX);
    body_fail(r, 413);
    return;
  }
  if (r->body_len + n + 1 > r->body_cap) {
    size_t cap = r->body_cap ? r->body_cap * 2 : 4096;
    while (cap < r->body_len + n + 1) cap *= 2;
    char *p = kiln_realloc(r->body, cap);
    if (!p) {
      kiln_fail(&r->err, KILN_ERR_NOMEM, "out of memory");
      body_fail(r, 500);
      return;
    }
    r->body = p;
    r->body_cap = cap;
  }
  memcpy(r->body + r->body_len, data, n);
  r->body_len += n;
  r->body[r->body_len] = '\0';
}

static bool part_begin(studio_req *r, const char *name) {
  if (r->n_parts >= MAX_PARTS) {
    kiln_fail(&r->err, KILN_ERR_LIMIT, "more than %d files in one request", MAX_PARTS);
    body_fail(r, 413);
    return false;
  }
  while (*name == '/') name++;
  if (!*name) name = "upload";
  snprintf(r->part_name, sizeof r->part_name, "%s", name);
  if (studio_blob_begin(r->st->data_dir, &r->blob, &r->err) != KILN_OK) {
    body_fail(r, 500);
    return false;
  }
  r->blob_open = true;
  return true;
}

static void part_end(studio_req *r) {
  if (!r->blob_open) return;
  r->blob_open = false;
  upload_part *p = &r->parts[r->n_parts];
  if (studio_blob_commit(r->st->data_dir, &r->blob, p->hash, &p->size, &r->err) != KILN_OK) {
    body_fail(r, 500);
    return;
  }
  snprintf(p->name, sizeof p->name, "%s", r->part_name);
  r->n_parts++;
}

static enum MHD_Result post_iterator(void *cls, enum MHD_ValueKind kind, const char *key,
                                     const char *filename, const char *content_type,
                                     const char *transfer_encoding, const char *data, uint64_t off,
                                     size_t size) {
  (void)kind;
  (void)key;
  (void)content_type;
  (void)transfer_encoding;
  studio_req *r = cls;
  if (r->failed || !filename) return MHD_YES; /* plain form fields are ignored */
  if (off == 0) {
    part_end(r);
    if (!part_begin(r, filename)) return MHD_YES;
  }
  if (size && r->blob_open && studio_blob_write(&r->blob, data, size, &r->err) != KILN_OK)
    body_fail(r, 500);
  return MHD_YES;
}

static void files_start(studio_req *r) {
  const char *type = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Content-Type");
  if (type && strncasecmp(type, "multipart/form-data", 19) == 0) {
    r->multipart = true;
    r->pp = MHD_create_post_processor(r->conn, 65536, post_iterator, r);
    if (!r->pp) early(r, 400, "multipart/form-data body without a usable boundary");
    return;
  }
  const char *name = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "X-Filename");
  if (!name || !*name) {
    early(r, 400, "a raw upload needs the file's name in the X-Filename header");
    return;
  }
  char decoded[512];
  snprintf(decoded, sizeof decoded, "%s", name);
  MHD_http_unescape(decoded); /* percent-encoded names (non-ASCII) */
  if (!decoded[0] || memchr(decoded, '\n', strlen(decoded))) {
    early(r, 400, "X-Filename: not a usable file name");
    return;
  }
  part_begin(r, decoded);
}

/* A chunk of a resumable upload goes to DATA/uploads/<id>.part at
 * Upload-Offset, which must be what was received so far. */
static void chunk_start(studio_req *r) {
  const char *off = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Upload-Offset");
  char *end;
  long long o = off ? strtoll(off, &end, 10) : -1;
  if (!off || *end || o < 0) {
    early(r, 400, "PATCH needs an Upload-Offset header (bytes received so far)");
    return;
  }
  sqlite3_stmt *q;
  int64_t received = -1, length = 0, file_id = 0;
  if (sqlite3_prepare_v2(r->db, "SELECT received, length, COALESCE(file_id, 0) FROM uploads WHERE id = ?", -1,
                         &q, NULL) == SQLITE_OK) {
    sqlite3_bind_int64(q, 1, r->ids[0]);
    if (sqlite3_step(q) == SQLITE_ROW) {
      received = sqlite3_column_int64(q, 0);
      length = sqlite3_column_int64(q, 1);
      file_id = sqlite3_column_int64(q, 2);
    }
    sqlite3_finalize(q);
  }
  if (received < 0) {
    early(r, 404, "not found");
    return;
  }
  if (file_id || received >= length) {
    early(r, 409, "this upload is complete");
    return;
  }
  if (o != received) {
    early(r, 409, "Upload-Offset %lld does not match the %lld bytes received", o, (long long)received);
    return;
  }
  char path[STUDIO_PATH_MAX];
  snprintf(path, sizeof path, "%s/uploads/%lld.part", r->st->data_dir, (long long)r->ids[0]);
  r->chunk_fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  if (r->chunk_fd < 0 || ftruncate(r->chunk_fd, (off_t)received) != 0 ||
      lseek(r->chunk_fd, (off_t)received, SEEK_SET) < 0)
    early(r, 500, "%s: %s", path, strerror(errno));
  r->chunk_offset = received;
}

static void chunk_write(studio_req *r, const char *data, size_t n) {
  if (r->failed || r->chunk_fd < 0) return;
  while (n > 0) {
    ssize_t k = write(r->chunk_fd, data, n);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) {
      kiln_fail(&r->err, KILN_ERR_IO, "writing an upload chunk: %s", strerror(errno));
      body_fail(r, 500);
      return;
    }
    data += k;
    n -= (size_t)k;
    r->chunk_received += k;
  }
}

static void consume(studio_req *r, const char *data, size_t n) {
  if (r->early_status) return; /* read and dropped */
  if (r->route->flags & R_CHUNK) {
    chunk_write(r, data, n);
    return;
  }
  if (r->route->flags & R_FILES) {
    if (r->pp) {
      if (MHD_post_process(r->pp, data, n) != MHD_YES && !r->failed) {
        kiln_fail(&r->err, KILN_ERR_FORMAT, "malformed multipart/form-data body");
        body_fail(r, 400);
      }
    } else if (r->blob_open && !r->failed && studio_blob_write(&r->blob, data, n, &r->err) != KILN_OK) {
      body_fail(r, 500);
    }
    return;
  }
  append_json(r, data, n);
}

/* ---- the request cycle ---- */

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_size, void **con_cls) {
  (void)version;
  kiln_studio *st = cls;
  studio_req *r = *con_cls;
  if (!r) {
    if (strncmp(url, "/api/", 5) != 0) return studio_web_reply(conn, method, url); /* web UI */
    r = kiln_calloc(1, sizeof *r);
    if (!r) return MHD_NO;
    *con_cls = r;
    r->st = st;
    r->conn = conn;
    r->method = method;
    r->chunk_fd = -1;
    bool known = false;
    r->route = find_route(r, method, url, &known);
    if (!r->route) {
      early(r, known ? 405 : 404, known ? "method %s not allowed here" : "no such endpoint: %s",
            known ? method : url);
      return MHD_YES;
    }
    r->db = studio_db_acquire(st, &r->err);
    if (!r->db) {
      early(r, 503, "%s", r->err.msg);
      return MHD_YES;
    }
    authenticate(r);
    if (!r->early_status && (r->route->flags & R_FILES)) files_start(r);
    if (!r->early_status && (r->route->flags & R_CHUNK)) chunk_start(r);
    return MHD_YES;
  }
  if (*upload_size) {
    consume(r, upload_data, *upload_size);
    *upload_size = 0;
    return MHD_YES;
  }
  if (r->early_status) return studio_reply_error(r, r->early_status, "%s", r->early_msg);
  if (r->route->flags & R_FILES) {
    if (r->pp && MHD_destroy_post_processor(r->pp) != MHD_YES && !r->failed) {
      kiln_fail(&r->err, KILN_ERR_FORMAT, "truncated multipart/form-data body");
      body_fail(r, 400);
    }
    r->pp = NULL;
    if (!r->failed) part_end(r);
  }
  if (r->failed) return studio_reply_error(r, r->fail_status, "%s", r->err.msg);
  return r->route->fn(r);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
  (void)conn;
  (void)toe;
  kiln_studio *st = cls;
  studio_req *r = *con_cls;
  if (!r) return;
  if (r->pp) MHD_destroy_post_processor(r->pp);
  if (r->blob_open) studio_blob_abort(&r->blob);
  if (r->chunk_fd >= 0) close(r->chunk_fd);
  if (r->db) studio_db_release(st, r->db);
  kiln_free(r->body);
  kiln_free(r);
  *con_cls = NULL;
}

kiln_status studio_http_start(kiln_studio *st, kiln_error *err) {
  struct sockaddr_in addr;
  memset(&addr, 0, sizeof addr);
  addr.sin_family = AF_INET;
  addr.sin_port = htons((uint16_t)st->opt.port);
  const char *host = strcmp(st->host, "localhost") == 0 ? "127.0.0.1" : st->host;
  if (inet_pton(AF_INET, host, &addr.sin_addr) != 1)
    return kiln_fail(err, KILN_ERR_INVALID_ARG, "--host %s: not an IPv4 address", st->host);
  /* No MHD_USE_ERROR_LOG: it reports every client that closes an event
   * stream; the studio reports its own errors. */
  st->mhd = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION,
                             0, NULL, NULL, on_request, st, MHD_OPTION_SOCK_ADDR, &addr,
                             MHD_OPTION_NOTIFY_COMPLETED, on_completed, st,
                             MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)120,
                             MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned)1, MHD_OPTION_END);
  if (!st->mhd)
    return kiln_fail(err, KILN_ERR_IO, "cannot listen on %s:%d (in use, or not an address of this machine)",
                     st->host, st->opt.port);
  const union MHD_DaemonInfo *info = MHD_get_daemon_info(st->mhd, MHD_DAEMON_INFO_BIND_PORT);
  int port = info ? info->port : st->opt.port;
  snprintf(st->url, sizeof st->url, "http://%s:%d/", st->host, port);
  return KILN_OK;
}

void studio_http_stop(kiln_studio *st) {
  if (st->mhd) MHD_stop_daemon(st->mhd);
  st->mhd = NULL;
}
