/* The model server's HTTP side, all on libmicrohttpd's event-loop thread:
 * routing, admission (a model takes at most queue + interpreters requests;
 * more get 503 + Retry-After and their body is never stored), body storage
 * within max_body, multipart `file` parts, the cheap routes (health,
 * metadata, metrics), and handing inference to a model's workers with the
 * connection suspended until they answer.
 *
 * A request's access-handler calls: headers (set up, route, decide early
 * errors); body chunks (stored, or dropped once answered); end of body
 * (answer inline or suspend + enqueue); after a worker resumes the
 * connection (send). Errors decided on arrival are sent after the body has
 * been read so that the client sees them, except a declared Content-Length
 * over the limit, refused at once (the connection then closes). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "serve/serve_int.h"

typedef enum route_kind {
  ROUTE_NONE = 0,
  ROUTE_LIVE,
  ROUTE_READY,
  ROUTE_SERVER_META,
  ROUTE_MODEL_META,
  ROUTE_MODEL_READY,
  ROUTE_METRICS,
  ROUTE_INFER,
  ROUTE_CLASSIFY,
  ROUTE_DETECT,
  ROUTE_PREDICT
} route_kind;

typedef struct route {
  route_kind kind;
  char model[72];
  char version[24];
  bool post; /* the method the route takes */
} route;

static const char *endpoint_names[SERVE_N_ENDPOINTS] = {"infer", "classify", "detect", "predict"};

/* Splits url into at most 8 '/'-separated segments (copied into buf). */
static int split_path(const char *url, char *buf, size_t cap, char **seg) {
  size_t n = strlen(url);
  if (n + 1 > cap) return -1;
  memcpy(buf, url, n + 1);
  int count = 0;
  char *p = buf;
  while (*p == '/') p++;
  while (*p) {
    if (count == 8) return -1;
    seg[count++] = p;
    char *slash = strchr(p, '/');
    if (!slash) break;
    *slash = '\0';
    p = slash + 1;
  }
  return count;
}

static bool copy_seg(char *dst, size_t cap, const char *src) {
  size_t n = strlen(src);
  if (n >= cap) return false;
  memcpy(dst, src, n + 1);
  return true;
}

/* /v2/models/M[/versions/V][/ready|/infer] and /v1/models/M:verb. */
static route parse_route(const char *url) {
  route r = {0};
  char buf[512], *seg[8];
  int n = split_path(url, buf, sizeof buf, seg);
  if (n < 1) return r;
  if (n == 1 && strcmp(seg[0], "metrics") == 0) r.kind = ROUTE_METRICS;
  if (strcmp(seg[0], "v2") == 0) {
    if (n == 1) r.kind = ROUTE_SERVER_META;
    else if (n == 3 && strcmp(seg[1], "health") == 0 && strcmp(seg[2], "live") == 0) r.kind = ROUTE_LIVE;
    else if (n == 3 && strcmp(seg[1], "health") == 0 && strcmp(seg[2], "ready") == 0) r.kind = ROUTE_READY;
    else if (n >= 3 && strcmp(seg[1], "models") == 0 && copy_seg(r.model, sizeof r.model, seg[2])) {
      int k = 3;
      if (n >= 5 && strcmp(seg[3], "versions") == 0) {
        if (!copy_seg(r.version, sizeof r.version, seg[4])) return (route){0};
        k = 5;
      }
      if (n == k) r.kind = ROUTE_MODEL_META;
      else if (n == k + 1 && strcmp(seg[k], "ready") == 0) r.kind = ROUTE_MODEL_READY;
      else if (n == k + 1 && strcmp(seg[k], "infer") == 0) r.kind = ROUTE_INFER, r.post = true;
    }
  } else if (strcmp(seg[0], "v1") == 0 && n == 3 && strcmp(seg[1], "models") == 0) {
    char *colon = strrchr(seg[2], ':');
    if (colon) {
      *colon = '\0';
      const char *verb = colon + 1;
      if (copy_seg(r.model, sizeof r.model, seg[2])) {
        if (strcmp(verb, "classify") == 0) r.kind = ROUTE_CLASSIFY;
        else if (strcmp(verb, "detect") == 0) r.kind = ROUTE_DETECT;
        else if (strcmp(verb, "predict") == 0) r.kind = ROUTE_PREDICT;
        r.post = r.kind != ROUTE_NONE;
      }
    }
  }
  return r;
}

static int32_t endpoint_of(route_kind k) {
  switch (k) {
    case ROUTE_INFER: return SERVE_INFER;
    case ROUTE_CLASSIFY: return SERVE_CLASSIFY;
    case ROUTE_DETECT: return SERVE_DETECT;
    case ROUTE_PREDICT: return SERVE_PREDICT;
    default: return -1;
  }
}

/* The media type of a Content-Type header, without parameters, compared
 * case-insensitively with type. */
static bool media_is(const char *ct, const char *type) {
  size_t n = strlen(type);
  if (strncasecmp(ct, type, n) != 0) return false;
  char c = ct[n];
  return c == '\0' || c == ';' || c == ' ' || c == '\t';
}

static const char *header(struct MHD_Connection *c, const char *name) {
  return MHD_lookup_connection_value(c, MHD_HEADER_KIND, name);
}

/* Parses a non-negative decimal header or query value; false if malformed. */
static bool parse_u64(const char *s, uint64_t *out) {
  if (!s || *s < '0' || *s > '9') return false;
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno || *end) return false;
  *out = v;
  return true;
}

static bool query_params(serve_request *r) {
  const char *v;
  uint64_t u;
  if ((v = MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, "top"))) {
    if (!parse_u64(v, &u) || u < 1 || u > SERVE_MAX_TOP) {
      serve_error(&r->resp, 400, "query parameter top=%s: want an integer from 1 to %d", v, SERVE_MAX_TOP);
      return false;
    }
    r->top = (int32_t)u;
  }
  if ((v = MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, "max"))) {
    if (!parse_u64(v, &u) || u < 1 || u > SERVE_MAX_BOXES) {
      serve_error(&r->resp, 400, "query parameter max=%s: want an integer from 1 to %d", v, SERVE_MAX_BOXES);
      return false;
    }
    r->max_boxes = (int32_t)u;
  }
  if ((v = MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, "threshold"))) {
    char *end;
    float t = strtof(v, &end);
    if (end == v || *end || !(t >= 0.0f && t <= 1.0f)) {
      serve_error(&r->resp, 400, "query parameter threshold=%s: want a number from 0 to 1", v);
      return false;
    }
    r->threshold = t;
    r->has_threshold = true;
  }
  return true;
}

/* Whether the body's Content-Type suits the endpoint; answers 415 if not. */
static bool content_type_ok(serve_request *r, route_kind kind) {
  const char *ct = header(r->conn, MHD_HTTP_HEADER_CONTENT_TYPE);
  if (!ct || !*ct) return true; /* sniffed: magic bytes or JSON */
  bool ok;
  const char *want;
  if (kind == ROUTE_INFER) {
    ok = r->header_len >= 0 || media_is(ct, "application/json");
    want = "application/json (or any type with Inference-Header-Content-Length)";
  } else if (kind == ROUTE_PREDICT) {
    ok = media_is(ct, "application/json");
    want = "application/json";
  } else {
    ok = media_is(ct, "image/jpeg") || media_is(ct, "image/png") ||
         media_is(ct, "application/octet-stream") || media_is(ct, MHD_HTTP_POST_ENCODING_MULTIPART_FORMDATA);
    want = "image/jpeg, image/png, application/octet-stream or multipart/form-data with a 'file' part";
  }
  if (!ok)
    serve_error(&r->resp, 415, "Content-Type '%s' not accepted here; send %s%s", ct, want,
                media_is(ct, "application/x-www-form-urlencoded")
                    ? " (curl --data-binary sends form-urlencoded unless given -H 'Content-Type: image/jpeg')" : "");
  return ok;
}

static bool reserve_body(serve_request *r, size_t bytes);

static enum MHD_Result on_post_data(void *cls, enum MHD_ValueKind kind, const char *key,
                                    const char *filename, const char *content_type,
                                    const char *transfer_encoding, const char *data, uint64_t off,
                                    size_t size) {
  (void)kind, (void)filename, (void)content_type, (void)transfer_encoding, (void)off;
  serve_request *r = cls;
  if (!key || strcmp(key, "file") != 0 || size == 0) return MHD_YES;
  r->file_part = true;
  if (!reserve_body(r, r->len + size)) {
    serve_error(&r->resp, 503, "out of memory");
    r->answered = true;
    return MHD_NO;
  }
  memcpy(r->body + r->len, data, size);
  r->len += size;
  return MHD_YES;
}

static bool reserve_body(serve_request *r, size_t bytes) {
  if (bytes <= r->cap) return true;
  size_t cap = r->cap ? r->cap : 4096;
  while (cap < bytes) cap *= 2;
  if (cap > r->limit) cap = r->limit;
  uint8_t *b = kiln_realloc(r->body, cap);
  if (!b) return false;
  r->body = b;
  r->cap = cap;
  return true;
}

/* Routing and early checks of an inference request; false once answered. */
static bool setup_inference(serve_request *r, const route *rt) {
  kiln_server *s = r->srv;
  const char *ihcl = header(r->conn, "Inference-Header-Content-Length");
  if (ihcl) {
    uint64_t v;
    if (rt->kind != ROUTE_INFER || !parse_u64(ihcl, &v) || v > (uint64_t)s->opt.max_body) {
      serve_error(&r->resp, 400, "Inference-Header-Content-Length '%s' is not a byte count within the body limit", ihcl);
      return false;
    }
    r->header_len = (int64_t)v;
  }
  if (!content_type_ok(r, rt->kind) || !query_params(r)) return false;
  r->set = serve_set_acquire(s);
  r->model = &r->set->models[r->model_index];
  serve_kind need = rt->kind == ROUTE_CLASSIFY ? SERVE_CLASSIFIER : SERVE_DETECTOR;
  if ((rt->kind == ROUTE_CLASSIFY || rt->kind == ROUTE_DETECT) && r->model->kind != need) {
    serve_error(&r->resp, 400, "model '%s' is not a %s (it takes %s)", r->model->name,
                need == SERVE_CLASSIFIER ? "classifier" : "detector",
                r->model->kind == SERVE_TENSORS ? "tensors at /v2/models/NAME/infer" :
                r->model->kind == SERVE_CLASSIFIER ? ":classify" : ":detect");
    return false;
  }
  if (rt->kind == ROUTE_PREDICT && r->model->kind == SERVE_TENSORS) {
    serve_error(&r->resp, 400, "model '%s' takes tensors: use /v2/models/%s/infer", r->model->name, r->model->name);
    return false;
  }
  int limit = s->opt.queue + r->model->n_slots;
  if (atomic_fetch_add(&s->admitted[r->model_index], 1) >= limit) {
    atomic_fetch_sub(&s->admitted[r->model_index], 1);
    serve_error(&r->resp, 503, "model '%s' is busy: %d requests running or queued; retry later",
                r->model->name, limit);
    r->resp.retry_after = true;
    return false;
  }
  r->admitted = true;
  const char *ct = header(r->conn, MHD_HTTP_HEADER_CONTENT_TYPE);
  if (ct && media_is(ct, MHD_HTTP_POST_ENCODING_MULTIPART_FORMDATA)) {
    r->pp = MHD_create_post_processor(r->conn, 65536, on_post_data, r);
    if (!r->pp) {
      serve_error(&r->resp, 400, "multipart/form-data without a boundary");
      return false;
    }
  }
  return true;
}

static void route_request(serve_request *r, const char *url, const char *method) {
  kiln_server *s = r->srv;
  route rt = parse_route(url);
  r->limit = SERVE_SMALL_BODY;
  if (rt.kind == ROUTE_NONE) {
    serve_error(&r->resp, 404, "no route %s %s; see /v2 and docs/deploy.md", method, url);
    return;
  }
  bool is_post = strcmp(method, MHD_HTTP_METHOD_POST) == 0;
  if (rt.post != is_post || (!is_post && strcmp(method, MHD_HTTP_METHOD_GET) != 0)) {
    serve_error(&r->resp, 405, "%s takes %s, not %s", url, rt.post ? "POST" : "GET", method);
    r->resp.allow = rt.post ? "POST" : "GET";
    return;
  }
  r->endpoint = endpoint_of(rt.kind);
  if (rt.model[0]) {
    r->model_index = serve_find_model(s, rt.model);
    if (r->model_index < 0) {
      serve_error(&r->resp, 404, "unknown model '%s'", rt.model);
      r->endpoint = -1;
      return;
    }
    if (rt.version[0] && strcmp(rt.version, "1") != 0) {
      serve_error(&r->resp, 404, "model '%s' has no version '%s' (it has version 1)", rt.model, rt.version);
      return;
    }
  }
  r->route = (int32_t)rt.kind;
  if (r->endpoint < 0) return;
  r->limit = (size_t)s->opt.max_body;
  setup_inference(r, &rt);
}

/* Answers the routes that need no model worker. */
static void answer_inline(serve_request *r) {
  kiln_server *s = r->srv;
  switch ((route_kind)r->route) {
    case ROUTE_LIVE:
      serve_json(&r->resp, 200, json_pack("{s:b}", "live", 1));
      break;
    case ROUTE_READY: {
      pthread_mutex_lock(&s->mu);
      bool ready = !s->stopping;
      pthread_mutex_unlock(&s->mu);
      serve_json(&r->resp, ready ? 200 : 503, json_pack("{s:b}", "ready", ready));
      break;
    }
    case ROUTE_SERVER_META:
      serve_json(&r->resp, 200, json_pack("{s:s, s:s, s:[s]}", "name", "kiln", "version",
                                          SERVE_VERSION, "extensions", "binary_tensor_data"));
      break;
    case ROUTE_MODEL_META:
    case ROUTE_MODEL_READY: {
      serve_set *set = serve_set_acquire(s);
      const serve_model *m = &set->models[r->model_index];
      if (r->route == ROUTE_MODEL_META) serve_json(&r->resp, 200, serve_model_metadata(m));
      else serve_json(&r->resp, 200, json_pack("{s:s, s:b}", "name", m->name, "ready", 1));
      serve_set_release(s, set);
      break;
    }
    case ROUTE_METRICS: {
      size_t len;
      char *text = serve_metrics_render(s, &len);
      if (!text) {
        serve_error(&r->resp, 503, "out of memory");
        break;
      }
      serve_response_clear(&r->resp);
      r->resp = (serve_response){.status = 200, .body = text, .len = len, .free_body = kiln_free,
                                 .content_type = "text/plain; version=0.0.4", .infer_header_len = -1};
      break;
    }
    default:
      serve_error(&r->resp, 500, "internal error: route %d has no handler", (int)r->route);
  }
}

static void release_resources(serve_request *r) {
  kiln_server *s = r->srv;
  if (r->pp) MHD_destroy_post_processor(r->pp);
  r->pp = NULL;
  kiln_free(r->body);
  r->body = NULL;
  r->len = r->cap = 0;
  if (r->admitted) atomic_fetch_sub(&s->admitted[r->model_index], 1);
  r->admitted = false;
  if (r->set) serve_set_release(s, r->set);
  r->set = NULL;
  r->model = NULL;
}

static enum MHD_Result send_response(serve_request *r) {
  serve_response *resp = &r->resp;
  struct MHD_Response *m;
  if (resp->free_body)
    m = MHD_create_response_from_buffer_with_free_callback(resp->len, resp->body, resp->free_body);
  else m = MHD_create_response_from_buffer(resp->len, resp->body, MHD_RESPMEM_PERSISTENT);
  if (!m) return MHD_NO;
  resp->body = NULL; /* MHD frees it now */
  resp->free_body = NULL;
  MHD_add_response_header(m, MHD_HTTP_HEADER_CONTENT_TYPE, resp->content_type);
  if (resp->retry_after) MHD_add_response_header(m, MHD_HTTP_HEADER_RETRY_AFTER, "1");
  if (resp->close) MHD_add_response_header(m, MHD_HTTP_HEADER_CONNECTION, "close");
  if (resp->allow) MHD_add_response_header(m, MHD_HTTP_HEADER_ALLOW, resp->allow);
  if (resp->infer_header_len >= 0) {
    char n[24];
    snprintf(n, sizeof n, "%lld", (long long)resp->infer_header_len);
    MHD_add_response_header(m, "Inference-Header-Content-Length", n);
  }
  enum MHD_Result ok = MHD_queue_response(r->conn, resp->status, m);
  MHD_destroy_response(m);
  r->sent = true;
  serve_metrics_record(&r->srv->metrics, r->model_index, r->endpoint, resp->status,
                       serve_now() - r->t_start);
  release_resources(r);
  return ok;
}

static serve_request *request_new(kiln_server *s, struct MHD_Connection *conn) {
  serve_request *r = kiln_calloc(1, sizeof *r);
  if (!r) return NULL;
  r->srv = s;
  r->conn = conn;
  r->t_start = serve_now();
  r->model_index = -1;
  r->endpoint = -1;
  r->header_len = -1;
  r->top = 5;
  r->max_boxes = 20;
  r->resp.infer_header_len = -1;
  pthread_mutex_lock(&s->mu);
  s->active++;
  bool stopping = s->stopping;
  pthread_mutex_unlock(&s->mu);
  if (stopping) {
    serve_error(&r->resp, 503, "the server is shutting down");
    r->resp.close = true;
    r->resp.retry_after = true;
  }
  return r;
}

static enum MHD_Result on_headers(serve_request *r, const char *url, const char *method) {
  if (!r->resp.status) route_request(r, url, method);
  /* An answer decided already (503 busy included) is sent after the
   * client's body has been read and dropped, up to max_body, so that the
   * client sees it and the connection stays open: with wrk's 200
   * connections on loopback this answered 25% more requests with 200 than
   * replying at once and closing, and a close with unread data can reset
   * the connection before the client reads the answer. */
  if (r->resp.status) r->limit = (size_t)r->srv->opt.max_body;
  const char *cl = header(r->conn, MHD_HTTP_HEADER_CONTENT_LENGTH);
  uint64_t declared = 0;
  bool has_length = cl && parse_u64(cl, &declared);
  if (!r->resp.status && has_length && declared <= r->limit && !reserve_body(r, (size_t)declared)) {
    serve_error(&r->resp, 503, "out of memory for a %llu-byte body", (unsigned long long)declared);
    r->resp.retry_after = true;
  }
  if (has_length && declared > r->limit) {
    if (!r->resp.status)
      serve_error(&r->resp, 413, "request body of %llu bytes is over the limit of %zu bytes",
                  (unsigned long long)declared, r->limit);
    r->resp.close = true;
    return send_response(r); /* at once: the body is not read */
  }
  if (r->resp.status) r->answered = true;
  return MHD_YES;
}

/* Stores (or, once answered, drops) a piece of body; false to close the
 * connection: a chunked body running on past the limit after an answer. */
static bool on_body(serve_request *r, const char *data, size_t size) {
  r->received += size;
  if (r->answered) return r->received <= r->limit;
  if (r->received > r->limit) {
    serve_error(&r->resp, 413, "request body is over the limit of %zu bytes", r->limit);
    r->resp.close = true;
    r->answered = true;
    return true;
  }
  if (r->pp) {
    if (MHD_post_process(r->pp, data, size) != MHD_YES && !r->answered) {
      serve_error(&r->resp, 400, "malformed multipart/form-data body");
      r->answered = true;
    }
    return true;
  }
  if (!reserve_body(r, r->len + size)) {
    serve_error(&r->resp, 503, "out of memory");
    r->resp.retry_after = true;
    r->answered = true;
    return true;
  }
  memcpy(r->body + r->len, data, size);
  r->len += size;
  return true;
}

enum MHD_Result serve_on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version,
                                 const char *upload_data, size_t *upload_size, void **con_cls) {
  (void)version;
  serve_request *r = *con_cls;
  if (!r) {
    r = request_new(cls, conn);
    if (!r) return MHD_NO;
    *con_cls = r;
    return on_headers(r, url, method);
  }
  if (r->sent) return MHD_YES;
  if (*upload_size) {
    bool go_on = on_body(r, upload_data, *upload_size);
    *upload_size = 0;
    return go_on ? MHD_YES : MHD_NO;
  }
  if (r->answered) return send_response(r);
  if (r->endpoint < 0) {
    answer_inline(r);
    return send_response(r);
  }
  if (r->pp && !r->file_part) {
    serve_error(&r->resp, 400, "multipart/form-data body has no 'file' part");
    return send_response(r);
  }
  if (r->len == 0) {
    serve_error(&r->resp, 400, "empty request body; %s takes %s", endpoint_names[r->endpoint],
                r->endpoint == SERVE_INFER || r->endpoint == SERVE_PREDICT ? "JSON" : "an image");
    return send_response(r);
  }
  MHD_suspend_connection(conn);
  serve_model_enqueue(r->model, r);
  return MHD_YES;
}

void serve_on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                        enum MHD_RequestTerminationCode code) {
  (void)conn, (void)code;
  kiln_server *s = cls;
  serve_request *r = *con_cls;
  if (!r) return;
  *con_cls = NULL;
  release_resources(r);
  serve_response_clear(&r->resp);
  kiln_free(r);
  pthread_mutex_lock(&s->mu);
  if (--s->active == 0) pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);
}
