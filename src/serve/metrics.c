/* The model server's Prometheus metrics (text exposition format 0.0.4):
 * answers by status, inference requests and errors by model and endpoint,
 * requests refused because a model's queue was full, a latency histogram
 * per model, queue depth and admitted requests per model, reloads.
 * Counted when a response is queued, so a client that has its answer
 * sees it counted in the next scrape. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "serve/serve_int.h"

static const double bucket_le[SERVE_N_BUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                                  0.25,  0.5,    1.0,   2.5,  5.0,   10.0, 30.0};
static const char *endpoints[SERVE_N_ENDPOINTS] = {"infer", "classify", "detect", "predict"};

kiln_status serve_metrics_init(serve_metrics *m, int32_t n_models, kiln_error *err) {
  memset(m, 0, sizeof *m);
  m->models = kiln_calloc((size_t)n_models, sizeof *m->models);
  if (!m->models) return kiln_fail(err, KILN_ERR_NOMEM, "out of memory");
  pthread_mutex_init(&m->mu, NULL);
  return KILN_OK;
}

void serve_metrics_free(serve_metrics *m) {
  if (!m->models) return;
  kiln_free(m->models);
  m->models = NULL;
  pthread_mutex_destroy(&m->mu);
}

void serve_metrics_record(serve_metrics *m, int32_t model_index, int32_t endpoint,
                          unsigned status, double seconds) {
  pthread_mutex_lock(&m->mu);
  if (status < 600) m->by_status[status]++;
  if (model_index >= 0 && endpoint >= 0) {
    serve_model_metrics *mm = &m->models[model_index];
    mm->requests[endpoint]++;
    if (status >= 400) mm->errors[endpoint]++;
    if (status == 503) mm->rejected++;
    int b = 0;
    while (b < SERVE_N_BUCKETS && seconds > bucket_le[b]) b++;
    if (b < SERVE_N_BUCKETS) mm->buckets[b]++;
    mm->seconds_sum += seconds;
    mm->seconds_count++;
  }
  pthread_mutex_unlock(&m->mu);
}

void serve_metrics_reload(serve_metrics *m, bool ok) {
  pthread_mutex_lock(&m->mu);
  if (ok) m->reloads++;
  else m->reload_failures++;
  pthread_mutex_unlock(&m->mu);
}

typedef struct text {
  char *buf;
  size_t len, cap;
  bool failed;
} text;

static void put(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(text *t, const char *fmt, ...) {
  if (t->failed) return;
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(t->buf + t->len, t->cap - t->len, fmt, ap);
    va_end(ap);
    if (n < 0) {
      t->failed = true;
      return;
    }
    if (t->len + (size_t)n < t->cap) {
      t->len += (size_t)n;
      return;
    }
    size_t cap = t->cap * 2 + (size_t)n;
    char *b = kiln_realloc(t->buf, cap);
    if (!b) {
      t->failed = true;
      return;
    }
    t->buf = b;
    t->cap = cap;
  }
}

static void header(text *t, const char *name, const char *type, const char *help) {
  put(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void per_model(text *t, kiln_server *srv, const serve_metrics *m) {
  int32_t n = srv->opt.n_models;
  header(t, "kiln_inference_requests_total", "counter",
         "Inference requests answered, by model and endpoint.");
  for (int32_t i = 0; i < n; i++)
    for (int e = 0; e < SERVE_N_ENDPOINTS; e++)
      put(t, "kiln_inference_requests_total{model=\"%s\",endpoint=\"%s\"} %llu\n", srv->specs[i].name,
          endpoints[e], (unsigned long long)m->models[i].requests[e]);
  header(t, "kiln_inference_errors_total", "counter",
         "Inference requests answered with a 4xx or 5xx status, by model and endpoint.");
  for (int32_t i = 0; i < n; i++)
    for (int e = 0; e < SERVE_N_ENDPOINTS; e++)
      put(t, "kiln_inference_errors_total{model=\"%s\",endpoint=\"%s\"} %llu\n", srv->specs[i].name,
          endpoints[e], (unsigned long long)m->models[i].errors[e]);
  header(t, "kiln_inference_rejected_total", "counter",
         "Inference requests refused with 503 (queue full or shutting down), by model.");
  for (int32_t i = 0; i < n; i++)
    put(t, "kiln_inference_rejected_total{model=\"%s\"} %llu\n", srv->specs[i].name,
        (unsigned long long)m->models[i].rejected);
  header(t, "kiln_request_duration_seconds", "histogram",
         "Inference request latency from its headers to its response, by model.");
  for (int32_t i = 0; i < n; i++) {
    const serve_model_metrics *mm = &m->models[i];
    uint64_t cum = 0;
    for (int b = 0; b < SERVE_N_BUCKETS; b++) {
      cum += mm->buckets[b];
      put(t, "kiln_request_duration_seconds_bucket{model=\"%s\",le=\"%g\"} %llu\n", srv->specs[i].name,
          bucket_le[b], (unsigned long long)cum);
    }
    put(t, "kiln_request_duration_seconds_bucket{model=\"%s\",le=\"+Inf\"} %llu\n", srv->specs[i].name,
        (unsigned long long)mm->seconds_count);
    put(t, "kiln_request_duration_seconds_sum{model=\"%s\"} %.6f\n", srv->specs[i].name, mm->seconds_sum);
    put(t, "kiln_request_duration_seconds_count{model=\"%s\"} %llu\n", srv->specs[i].name,
        (unsigned long long)mm->seconds_count);
  }
}

char *serve_metrics_render(kiln_server *srv, size_t *len) {
  text t = {.cap = 8192};
  t.buf = kiln_malloc(t.cap);
  if (!t.buf) return NULL;
  serve_metrics *m = &srv->metrics;
  pthread_mutex_lock(&m->mu);
  header(&t, "kiln_http_requests_total", "counter", "HTTP requests answered, by status code.");
  for (unsigned code = 100; code < 600; code++)
    if (m->by_status[code]) put(&t, "kiln_http_requests_total{code=\"%u\"} %llu\n", code,
                                (unsigned long long)m->by_status[code]);
  per_model(&t, srv, m);
  header(&t, "kiln_model_reloads_total", "counter", "Model set reloads that succeeded.");
  put(&t, "kiln_model_reloads_total %llu\n", (unsigned long long)m->reloads);
  header(&t, "kiln_model_reload_failures_total", "counter",
         "Model set reloads that failed (the previous set kept serving).");
  put(&t, "kiln_model_reload_failures_total %llu\n", (unsigned long long)m->reload_failures);
  pthread_mutex_unlock(&m->mu);
  header(&t, "kiln_queue_depth", "gauge", "Inference requests waiting for an interpreter, by model.");
  for (int32_t i = 0; i < srv->opt.n_models; i++)
    put(&t, "kiln_queue_depth{model=\"%s\"} %d\n", srv->specs[i].name, atomic_load(&srv->queued[i]));
  header(&t, "kiln_requests_in_flight", "gauge",
         "Inference requests admitted and not yet answered (receiving, queued or running), by model.");
  for (int32_t i = 0; i < srv->opt.n_models; i++)
    put(&t, "kiln_requests_in_flight{model=\"%s\"} %d\n", srv->specs[i].name, atomic_load(&srv->admitted[i]));
  if (t.failed) {
    kiln_free(t.buf);
    return NULL;
  }
  *len = t.len;
  return t.buf;
}
