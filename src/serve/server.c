/* The model server's life: options, starting the HTTP daemon on the loaded
 * model set, reloading the set, and stopping with every request already
 * received answered first (serve_int.h has the threads and ownership). */
#include <netdb.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "serve/serve_int.h"

#define SERVE_MAX_CONNECTIONS 1024
#define SERVE_NAME_MAX 64

kiln_serve_options kiln_serve_options_default(void) {
  return (kiln_serve_options){.host = "127.0.0.1", .port = 8500, .queue = 32,
                              .max_body = 16 << 20, .max_pixels = 25000000, .timeout_s = 30};
}

double serve_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void serve_log(const kiln_server *srv, const char *fmt, ...) {
  if (!srv->opt.log) return;
  char line[KILN_ERROR_MSG_MAX + 256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  srv->opt.log(srv->opt.log_ctx, line);
}

int32_t serve_find_model(const kiln_server *srv, const char *name) {
  for (int32_t i = 0; i < srv->opt.n_models; i++)
    if (strcmp(srv->specs[i].name, name) == 0) return i;
  return -1;
}

serve_set *serve_set_acquire(kiln_server *srv) {
  pthread_mutex_lock(&srv->mu);
  serve_set *set = srv->current;
  set->refs++;
  pthread_mutex_unlock(&srv->mu);
  return set;
}

void serve_set_release(kiln_server *srv, serve_set *set) {
  pthread_mutex_lock(&srv->mu);
  if (--set->refs == 0) pthread_cond_broadcast(&srv->cv);
  pthread_mutex_unlock(&srv->mu);
}

int32_t kiln_server_port(const kiln_server *server) { return server->port; }

static bool valid_name(const char *name) {
  size_t n = strlen(name);
  if (n == 0 || n > SERVE_NAME_MAX) return false;
  for (size_t i = 0; i < n; i++) {
    char c = name[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-';
    if (!ok) return false;
  }
  return true;
}

static kiln_status check_options(const kiln_serve_options *o, kiln_error *err) {
  if (o->n_models < 1 || !o->models) return kiln_fail(err, KILN_ERR_INVALID_ARG, "no models to serve");
  for (int32_t i = 0; i < o->n_models; i++) {
    const kiln_serve_model *m = &o->models[i];
    if (!m->name || !valid_name(m->name))
      return kiln_fail(err, KILN_ERR_INVALID_ARG,
                       "model name '%s': use 1 to %d of A-Z a-z 0-9 _ . -", m->name ? m->name : "",
                       SERVE_NAME_MAX);
    if (!m->path || !*m->path) return kiln_fail(err, KILN_ERR_INVALID_ARG, "model '%s': no file", m->name);
    for (int32_t j = 0; j < i; j++)
      if (strcmp(o->models[j].name, m->name) == 0)
        return kiln_fail(err, KILN_ERR_INVALID_ARG, "model name '%s' given twice", m->name);
  }
  if (o->port < 0 || o->port > 65535) return kiln_fail(err, KILN_ERR_INVALID_ARG, "port %d out of range", (int)o->port);
  if (o->threads < 0 || o->interpreters < 0 || o->queue < 0)
    return kiln_fail(err, KILN_ERR_INVALID_ARG, "threads, interpreters and queue must not be negative");
  if (o->max_body < 1 || o->max_pixels < 1 || o->timeout_s < 1)
    return kiln_fail(err, KILN_ERR_INVALID_ARG, "max_body, max_pixels and timeout_s must be positive");
  return KILN_OK;
}

static char *keep_string(kiln_server *s, const char *str) {
  if (!str) return NULL;
  char *c = kiln_strdup(str);
  if (c) s->strings[s->n_strings++] = c;
  return c;
}

/* Copies the options, the model list and every string they point to. */
static kiln_status copy_options(kiln_server *s, const kiln_serve_options *o, kiln_error *err) {
  s->opt = *o;
  s->specs = kiln_calloc((size_t)o->n_models, sizeof *s->specs);
  s->strings = kiln_calloc((size_t)o->n_models * 3 + 1, sizeof *s->strings);
  s->admitted = kiln_calloc((size_t)o->n_models, sizeof *s->admitted);
  s->queued = kiln_calloc((size_t)o->n_models, sizeof *s->queued);
  if (!s->specs || !s->strings || !s->admitted || !s->queued) return kiln_fail(err, KILN_ERR_NOMEM, "out of memory");
  s->opt.host = keep_string(s, o->host ? o->host : "127.0.0.1");
  bool ok = s->opt.host != NULL;
  for (int32_t i = 0; i < o->n_models && ok; i++) {
    s->specs[i].name = keep_string(s, o->models[i].name);
    s->specs[i].path = keep_string(s, o->models[i].path);
    s->specs[i].labels_path = keep_string(s, o->models[i].labels_path);
    ok = s->specs[i].name && s->specs[i].path && (!o->models[i].labels_path || s->specs[i].labels_path);
  }
  s->opt.models = s->specs;
  for (int32_t i = 0; i < o->n_models; i++) {
    atomic_init(&s->admitted[i], 0);
    atomic_init(&s->queued[i], 0);
  }
  return ok ? KILN_OK : kiln_fail(err, KILN_ERR_NOMEM, "out of memory");
}

static void server_free(kiln_server *s) {
  serve_set_free(s->current);
  serve_metrics_free(&s->metrics);
  for (int32_t i = 0; i < s->n_strings; i++) kiln_free(s->strings[i]);
  kiln_free(s->strings);
  kiln_free(s->specs);
  kiln_free(s->admitted);
  kiln_free(s->queued);
  pthread_mutex_destroy(&s->mu);
  pthread_cond_destroy(&s->cv);
  pthread_mutex_destroy(&s->reload_mu);
  kiln_free(s);
}

static void mhd_log(void *cls, const char *fmt, va_list ap) {
  const kiln_server *s = cls;
  char line[512];
  vsnprintf(line, sizeof line, fmt, ap);
  size_t n = strlen(line);
  while (n && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = '\0';
  serve_log(s, "http: %s", line);
}

/* Resolves host:port and starts the daemon on the first address that binds. */
static kiln_status start_daemon(kiln_server *s, kiln_error *err) {
  char port[16];
  snprintf(port, sizeof port, "%d", (int)s->opt.port);
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                           .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
  struct addrinfo *res = NULL;
  int rc = getaddrinfo(s->opt.host, port, &hints, &res);
  if (rc != 0) return kiln_fail(err, KILN_ERR_IO, "host '%s': %s", s->opt.host, gai_strerror(rc));
  for (struct addrinfo *a = res; a && !s->daemon; a = a->ai_next) {
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_USE_ITC | MHD_USE_ERROR_LOG;
    if (a->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
    s->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, serve_on_request, s, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, s,
        MHD_OPTION_SOCK_ADDR, a->ai_addr,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)s->opt.timeout_s, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)SERVE_MAX_CONNECTIONS, MHD_OPTION_NOTIFY_COMPLETED, serve_on_completed, s,
        MHD_OPTION_LISTEN_BACKLOG_SIZE, 256u,
        MHD_OPTION_END);
  }
  freeaddrinfo(res);
  if (!s->daemon)
    return kiln_fail(err, KILN_ERR_IO, "cannot listen on %s port %d (in use, or not an address of this machine)",
                     s->opt.host, (int)s->opt.port);
  const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
  s->port = info ? (int32_t)info->port : s->opt.port;
  return KILN_OK;
}

kiln_status kiln_server_start(const kiln_serve_options *options, kiln_server **out,
                              kiln_error *err) {
  *out = NULL;
  kiln_status st = check_options(options, err);
  if (st != KILN_OK) return st;
  if (sodium_init() < 0) return kiln_fail(err, KILN_ERR_INTERNAL, "libsodium failed to initialise");
  kiln_server *s = kiln_calloc(1, sizeof *s);
  if (!s) return kiln_fail(err, KILN_ERR_NOMEM, "out of memory");
  pthread_mutex_init(&s->mu, NULL);
  pthread_cond_init(&s->cv, NULL);
  pthread_mutex_init(&s->reload_mu, NULL);
  st = copy_options(s, options, err);
  if (st == KILN_OK) st = serve_metrics_init(&s->metrics, options->n_models, err);
  if (st == KILN_OK) st = serve_set_load(s, &s->current, err);
  if (st == KILN_OK) st = start_daemon(s, err);
  if (st != KILN_OK) {
    server_free(s);
    return st;
  }
  for (int32_t i = 0; i < s->opt.n_models; i++) {
    const serve_model *m = &s->current->models[i];
    static const char *kinds[] = {"tensors (v2 infer)", "classifier", "detector"};
    serve_log(s, "model %s: %s, %s, %d interpreter%s", m->name, s->specs[i].path, kinds[m->kind],
              (int)m->n_slots, m->n_slots == 1 ? "" : "s");
  }
  *out = s;
  return KILN_OK;
}

kiln_status kiln_server_reload(kiln_server *server, kiln_error *err) {
  pthread_mutex_lock(&server->reload_mu);
  serve_set *fresh;
  kiln_status st = serve_set_load(server, &fresh, err);
  serve_metrics_reload(&server->metrics, st == KILN_OK);
  if (st != KILN_OK) {
    pthread_mutex_unlock(&server->reload_mu);
    return st;
  }
  pthread_mutex_lock(&server->mu);
  serve_set *old = server->current;
  server->current = fresh;
  old->refs--; /* the server's reference */
  while (old->refs > 0) pthread_cond_wait(&server->cv, &server->mu);
  pthread_mutex_unlock(&server->mu);
  serve_set_free(old);
  pthread_mutex_unlock(&server->reload_mu);
  return KILN_OK;
}

void kiln_server_stop(kiln_server *server) {
  if (!server) return;
  pthread_mutex_lock(&server->reload_mu);
  pthread_mutex_lock(&server->mu);
  server->stopping = true;
  pthread_mutex_unlock(&server->mu);
  MHD_socket listener = MHD_quiesce_daemon(server->daemon);
  if (listener != MHD_INVALID_SOCKET) close(listener);
  pthread_mutex_lock(&server->mu);
  while (server->active > 0) pthread_cond_wait(&server->cv, &server->mu);
  pthread_mutex_unlock(&server->mu);
  MHD_stop_daemon(server->daemon);
  pthread_mutex_unlock(&server->reload_mu);
  server_free(server);
}
