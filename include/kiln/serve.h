/*
 * kiln/serve.h: the model server (`kiln serve`): models behind HTTP, with
 * the Open Inference Protocol v2 REST API (KServe, Triton, Seldon
 * MLServer), image endpoints for classifiers and detectors, TF-Serving's
 * :predict, and Prometheus metrics. docs/deploy.md lists every route.
 *
 *   kiln_serve_model models[] = {{"ssd", "ssd_int8.tflite", "labels.txt"}};
 *   kiln_serve_options opt = kiln_serve_options_default();
 *   opt.models = models;
 *   opt.n_models = 1;
 *   opt.port = 0;                          // any free port
 *   kiln_server *srv;
 *   if (kiln_server_start(&opt, &srv, &err) != KILN_OK) ...
 *   printf("port %d\n", kiln_server_port(srv));
 *   ... kiln_server_reload(srv, &err) when the files changed ...
 *   kiln_server_stop(srv);                 // answers what is in flight, then frees
 *
 * Threads: one thread runs the HTTP event loop (libmicrohttpd, epoll) and
 * never runs a model; each model has `interpreters` worker threads, each
 * owning one interpreter of threads / interpreters threads, fed by a
 * bounded queue. Requests beyond queue + interpreters per model get 503
 * with Retry-After (their body is read and dropped, never stored), so
 * memory stays bounded by (queue + interpreters) x max_body per model.
 *
 * Reload loads the whole model set anew while the old one keeps serving,
 * swaps them atomically, and frees the old set when the last request using
 * it has been answered (a reference count): no request is dropped or sees
 * a half-loaded model.
 */
#ifndef KILN_SERVE_H
#define KILN_SERVE_H

#include <stdint.h>

#include "kiln/base.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kiln_server kiln_server;

/* A model to serve: its name in URLs ([A-Za-z0-9_.-], at most 64
 * characters), its .tflite file, and an optional label file (one label per
 * line or "ID LABEL" lines; NULL: none). */
typedef struct kiln_serve_model {
  const char *name;
  const char *path;
  const char *labels_path;
} kiln_serve_model;

typedef struct kiln_serve_options {
  const kiln_serve_model *models; /* copied by kiln_server_start */
  int32_t n_models;
  const char *host;        /* address to listen on (IPv4 or IPv6 literal or name) */
  int32_t port;            /* 0: a free port (kiln_server_port tells which) */
  int32_t threads;         /* inference threads per model; 0: all cores */
  int32_t interpreters;    /* interpreters per model sharing them; 0: threads (1 thread each) */
  int32_t queue;           /* requests waiting per model beyond those running */
  int64_t max_body;        /* bytes of a request body */
  int64_t max_pixels;      /* pixels of an uploaded image (width x height) */
  int32_t timeout_s;       /* an idle connection is closed after this */
  /* Called with one line (no newline) for startup, reloads and errors;
   * from any of the server's threads. NULL: silent. */
  void (*log)(void *ctx, const char *line);
  void *log_ctx;
} kiln_serve_options;

/* host 127.0.0.1, port 8500, threads 0, interpreters 0, queue 32,
 * max_body 16 MiB, max_pixels 25 000 000, timeout_s 30, no models, no log. */
kiln_serve_options kiln_serve_options_default(void);

/* Loads every model (model, interpreters, detector or classifier set-up,
 * labels), binds host:port and starts serving. Nothing is left running on
 * failure.
 * @retval KILN_ERR_INVALID_ARG  no models, a bad or duplicate name, an
 *   option out of range
 * @retval KILN_ERR_IO  a model or label file cannot be read, or the
 *   address cannot be bound (the message says which)
 * @retval KILN_ERR_FORMAT, KILN_ERR_UNSUPPORTED  a model kiln cannot run
 *   (the message starts with its path) */
kiln_status kiln_server_start(const kiln_serve_options *options, kiln_server **out,
                              kiln_error *err);

/* The port the server listens on (the chosen one when options.port was 0). */
int32_t kiln_server_port(const kiln_server *server);

/* Reloads every model from its files (see the top of this file). Returns
 * once the new set serves and the old one is freed. On failure the old set
 * keeps serving and err says which model failed. Not to be called from two
 * threads at once with kiln_server_stop. */
kiln_status kiln_server_reload(kiln_server *server, kiln_error *err);

/* Stops accepting connections, answers new requests on open connections
 * with 503, waits for every request already received to be answered, then
 * closes everything and frees the server. NULL is fine. */
void kiln_server_stop(kiln_server *server);

#ifdef __cplusplus
}
#endif
#endif
