/*
 * serve/serve_int.h: the model server's internals.
 *
 * Ownership and threads:
 * - kiln_server (server.c) owns the HTTP daemon, the current model set, the
 *   per-model admission counters and the metrics. Its event-loop thread
 *   runs every HTTP callback; it routes, stores bodies and answers the
 *   cheap routes itself, and hands inference to a model's queue after
 *   suspending the connection.
 * - serve_set (models.c) is one loaded generation of all models; requests
 *   hold a reference (refs, under server->mu) from routing until their
 *   response is queued.
 *   Reload swaps server->current and frees the old set at refs == 0.
 * - serve_model owns its interpreters (serve_slot, one worker thread each)
 *   and its queue of requests. A worker takes a request, fills r->resp and
 *   resumes the connection; after that it never touches the request.
 */
#ifndef KILN_SERVE_INT_H
#define KILN_SERVE_INT_H

#include <jansson.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kiln/serve.h"
#include "kiln/vision.h"

#define SERVE_VERSION "0.1.0"
#define SERVE_MAX_BOXES 100       /* detections one request may ask for */
#define SERVE_MAX_TOP 1000        /* classes one request may ask for */
#define SERVE_MAX_INSTANCES 64    /* images in one :predict request */
#define SERVE_SMALL_BODY 65536    /* body accepted by routes that take none */

/* Inference endpoints (the ones that need a model's worker). */
typedef enum serve_endpoint {
  SERVE_INFER = 0,
  SERVE_CLASSIFY,
  SERVE_DETECT,
  SERVE_PREDICT,
  SERVE_N_ENDPOINTS
} serve_endpoint;

typedef enum serve_kind {
  SERVE_TENSORS = 0, /* only /v2 infer */
  SERVE_CLASSIFIER,  /* image in, one [1,C] scores out */
  SERVE_DETECTOR     /* raw SSD or TFLite_Detection_PostProcess */
} serve_kind;

typedef struct serve_model serve_model;
typedef struct serve_set serve_set;

/* A response being made: body bytes owned here until handed to MHD. */
typedef struct serve_response {
  unsigned status;
  char *body;
  size_t len;
  void (*free_body)(void *);     /* how body is freed (free or kiln_free) */
  const char *content_type;
  int64_t infer_header_len;      /* >= 0: binary tensors follow the JSON */
  bool retry_after, close;
  const char *allow;             /* 405: the methods allowed */
} serve_response;

typedef struct serve_request {
  kiln_server *srv;
  struct MHD_Connection *conn;
  double t_start;               /* seconds, monotonic */
  int32_t model_index;          /* -1: not a model route */
  int32_t route;                /* http.c's route kind */
  int32_t endpoint;             /* serve_endpoint, -1: answered inline */
  serve_set *set;               /* referenced while non-NULL */
  serve_model *model;           /* in set */
  bool admitted;                /* counted in srv->admitted[model_index] */
  /* query parameters, checked on arrival */
  int32_t top, max_boxes;
  float threshold;
  bool has_threshold;
  /* body */
  uint8_t *body;
  size_t len, cap, limit;
  size_t received;              /* raw body bytes so far (multipart: all parts) */
  int64_t header_len;           /* Inference-Header-Content-Length, -1: none */
  struct MHD_PostProcessor *pp; /* multipart/form-data */
  bool file_part;               /* the multipart body had a `file` part */
  bool answered;                /* resp is ready to send */
  bool sent;
  serve_response resp;
  struct serve_request *next;   /* in a model's queue */
} serve_request;

typedef struct serve_slot {
  serve_model *model;
  kiln_interp *interp;
  kiln_detector *det;           /* SERVE_DETECTOR only */
  pthread_t thread;
  bool started;
} serve_slot;

struct serve_model {
  kiln_server *srv;
  int32_t index;                /* in the server's model list */
  const char *name;
  kiln_model *model;
  kiln_labels *labels;
  serve_kind kind;
  serve_slot *slots;
  int32_t n_slots;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  serve_request *head, *tail;
  bool closing;
};

struct serve_set {
  serve_model *models;
  int32_t n_models;
  int32_t refs;                 /* under server->mu */
};

/* ---- metrics.c ---- */

#define SERVE_N_BUCKETS 14

typedef struct serve_model_metrics {
  uint64_t requests[SERVE_N_ENDPOINTS];
  uint64_t errors[SERVE_N_ENDPOINTS];
  uint64_t rejected;            /* 503: queue full */
  uint64_t buckets[SERVE_N_BUCKETS]; /* cumulative counts are made when rendering */
  double seconds_sum;
  uint64_t seconds_count;
} serve_model_metrics;

typedef struct serve_metrics {
  pthread_mutex_t mu;
  uint64_t by_status[600];
  serve_model_metrics *models;  /* [n_models] */
  uint64_t reloads, reload_failures;
} serve_metrics;

kiln_status serve_metrics_init(serve_metrics *m, int32_t n_models, kiln_error *err);
void serve_metrics_free(serve_metrics *m);
/* Counts one answered request (model_index/endpoint -1 when not a model's). */
void serve_metrics_record(serve_metrics *m, int32_t model_index, int32_t endpoint,
                          unsigned status, double seconds);
void serve_metrics_reload(serve_metrics *m, bool ok);
/* The Prometheus text exposition; NULL when out of memory (kiln_free). */
char *serve_metrics_render(kiln_server *srv, size_t *len);

/* ---- server.c ---- */

struct kiln_server {
  kiln_serve_options opt;     /* models and host point to the copies below */
  kiln_serve_model *specs;
  char **strings;             /* every copied string, for freeing */
  int32_t n_strings;
  struct MHD_Daemon *daemon;
  int32_t port;
  pthread_mutex_t mu;         /* current, refs, active, stopping */
  pthread_cond_t cv;          /* signalled when refs or active drop */
  serve_set *current;
  int32_t active;             /* requests between headers and completion */
  bool stopping;
  atomic_int *admitted;       /* [n_models]: admitted, not yet answered */
  atomic_int *queued;         /* [n_models]: waiting for a worker */
  pthread_mutex_t reload_mu;
  serve_metrics metrics;
};

/* The current set with a reference taken (release with serve_set_release). */
serve_set *serve_set_acquire(kiln_server *srv);
void serve_set_release(kiln_server *srv, serve_set *set);
int32_t serve_find_model(const kiln_server *srv, const char *name);

void serve_log(const kiln_server *srv, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
double serve_now(void);

/* ---- http.c: libmicrohttpd's callbacks ---- */

enum MHD_Result serve_on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version,
                                 const char *upload_data, size_t *upload_size, void **con_cls);
void serve_on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                        enum MHD_RequestTerminationCode code);

/* ---- models.c ---- */

/* Loads every model of the server's list with its interpreters and starts
 * their workers; refs 1 (the server's). */
kiln_status serve_set_load(kiln_server *srv, serve_set **out, kiln_error *err);
/* Closes the queues, joins the workers and frees everything (refs 0). */
void serve_set_free(serve_set *set);
/* Hands r to its model's workers. The connection must be suspended. */
void serve_model_enqueue(serve_model *m, serve_request *r);
/* OIP v2 names: "FP32", "INT8", ...; NULL for a dtype the protocol lacks. */
const char *serve_datatype(kiln_dtype dtype);
/* The v2 model metadata object. */
json_t *serve_model_metadata(const serve_model *m);

/* ---- respond.c ---- */

/* Sets r->resp to {"error": message} with status. */
void serve_error(serve_response *resp, unsigned status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Sets r->resp to the compact JSON of root (consumed); 500 if it cannot. */
void serve_json(serve_response *resp, unsigned status, json_t *root);
/* The HTTP status for a library error: 413 for limits, 503 for memory,
 * 500 for internal errors, else 400. */
unsigned serve_status_for(kiln_status s);
/* Frees a response body not handed to MHD. */
void serve_response_clear(serve_response *resp);

/* ---- infer.c: POST /v2/models/{m}/infer ---- */
void serve_run_infer(serve_slot *slot, serve_request *r);

typedef struct serve_out_pick {
  int32_t index;                /* the model's output */
  bool binary;                  /* returned as bytes after the JSON header */
} serve_out_pick;

typedef struct serve_infer_plan {
  json_t *root;                 /* the request JSON ("id" is read from it) */
  serve_out_pick picks[64];     /* outputs to return, in order */
  int32_t n_out;
} serve_infer_plan;

/* The request parser serve_run_infer uses, bytes in (fuzz/fuzz_infer.c):
 * reads a v2 infer body (header_len >= 0: the first header_len bytes are
 * the JSON, binary tensors follow) into it's inputs and picks the outputs.
 * false with resp set to the 400 saying why; true with plan->root to
 * json_decref. Nothing is invoked. */
bool serve_infer_parse(kiln_interp *it, const char *model_name, const uint8_t *body, size_t len,
                       int64_t header_len, serve_infer_plan *plan, serve_response *resp);

/* ---- vision_routes.c: :classify, :detect, :predict ---- */
void serve_run_vision(serve_slot *slot, serve_request *r);
/* The :predict body parsers serve_run_vision uses, bytes in
 * (fuzz/fuzz_predict_b64.c). serve_predict_parse: the request JSON (to
 * json_decref) with 1 to SERVE_MAX_INSTANCES "instances", or NULL with resp
 * set to the 400. serve_predict_image: instance index's image bytes decoded
 * from base64 (standard or URL-safe; kiln_free), *n of them, or NULL with
 * resp set. */
json_t *serve_predict_parse(const uint8_t *body, size_t len, serve_response *resp);
uint8_t *serve_predict_image(const json_t *inst, size_t index, size_t *n, serve_response *resp);

#endif
