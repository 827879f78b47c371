/*
 * studio/http_int.h: one HTTP request as the studio's handlers see it, the
 * route table, and the reply helpers (http.c). By the time a handler runs,
 * the caller is authenticated (unless the route is public), the CSRF token
 * of a cookie session matched, access to the project the path names was
 * checked (404 when the caller cannot see it), and the body is complete:
 * JSON in body, or uploaded files already committed as blobs in parts.
 */
#ifndef KILN_STUDIO_HTTP_INT_H
#define KILN_STUDIO_HTTP_INT_H

#include <microhttpd.h>

#include "studio/studio_int.h"

/* route flags */
#define R_PUBLIC 1u      /* no authentication */
#define R_ADMIN 2u       /* administrators only (403) */
#define R_PROJECT 4u     /* ids[0] is a project the caller must see */
#define R_OWNER 8u       /* ... and own (403 for members) */
#define R_JOB 16u        /* ids[0] is a job; its project must be visible */
#define R_MODEL 32u      /* ids[0] is a model version; likewise */
#define R_UPLOAD 64u     /* ids[0] is a resumable upload; likewise */
#define R_FILES 128u     /* body: files (raw with X-Filename, or multipart) */
#define R_CHUNK 256u     /* body: a chunk of a resumable upload */
#define R_WORKER 512u    /* a worker token's endpoint (api_worker.c); needs X-Kiln-Worker */
#define R_HELD 1024u     /* ids[0] is a job leased to the calling worker (404 otherwise) */

#define MAX_PARTS 256
#define JSON_BODY_MAX (1u << 20)

typedef struct upload_part {
  char name[512];
  char hash[STUDIO_HASH_HEX + 1];
  uint64_t size;
} upload_part;

typedef struct studio_req studio_req;
typedef enum MHD_Result (*studio_handler)(studio_req *r);

typedef struct studio_route {
  const char *method;
  const char *pattern; /* "{id}": a positive integer; "{name}": a segment */
  studio_handler fn;
  unsigned flags;
} studio_route;

struct studio_req {
  kiln_studio *st;
  struct MHD_Connection *conn;
  const char *method;
  const studio_route *route;
  int64_t ids[3];
  char names[2][256];
  sqlite3 *db;
  /* who */
  int64_t user;
  bool admin, cookie_auth;
  int64_t worker_token;   /* the id of a worker-scoped token, else 0 */
  char worker_owner[160]; /* R_WORKER: "remote/<token id>/<X-Kiln-Worker>" */
  char user_name[128];
  char csrf[STUDIO_HASH_HEX + 1];
  int64_t project;       /* resolved from the path (R_PROJECT/JOB/MODEL/UPLOAD) */
  studio_access access;
  /* an error found before the body (sent once the body is read) */
  unsigned early_status;
  char early_msg[600];
  /* body */
  char *body;
  size_t body_len, body_cap;
  bool multipart;
  struct MHD_PostProcessor *pp;
  studio_blob_writer blob;
  bool blob_open;
  char part_name[512];
  upload_part parts[MAX_PARTS];
  int32_t n_parts;
  int chunk_fd;
  int64_t chunk_offset, chunk_received;
  kiln_error err;
  bool failed; /* err holds a body error */
  unsigned fail_status;
  char headers[4][2][512]; /* extra response headers */
  int32_t n_headers;
};

extern const studio_route studio_routes[];
extern const size_t studio_n_routes;

/* Replies; each queues the response and returns MHD's result. body is
 * stolen. */
enum MHD_Result studio_reply_json(studio_req *r, unsigned status, json_t *body);
enum MHD_Result studio_reply_error(studio_req *r, unsigned status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* 500 with the kiln error's message (logged). */
enum MHD_Result studio_reply_fail(studio_req *r, const kiln_error *err);
/* A blob as a download; name NULL: shown inline. */
enum MHD_Result studio_reply_blob(studio_req *r, const char *hash, const char *type,
                                  const char *name);
enum MHD_Result studio_reply_bytes(studio_req *r, unsigned status, const char *type,
                                   void *data, size_t n); /* data: kiln_malloc'd, taken */
/* Sets a header on the response the next reply creates. */
void studio_reply_header(studio_req *r, const char *name, const char *value);

/* The body as JSON (object); NULL after replying 400 (*result set). */
json_t *studio_body_json(studio_req *r, enum MHD_Result *result);
/* A query argument or NULL. */
const char *studio_query(studio_req *r, const char *name);

/* handlers: api_account.c */
enum MHD_Result api_health(studio_req *r);
enum MHD_Result api_setup(studio_req *r);
enum MHD_Result api_login(studio_req *r);
enum MHD_Result api_logout(studio_req *r);
enum MHD_Result api_me(studio_req *r);
enum MHD_Result api_users_list(studio_req *r);
enum MHD_Result api_users_create(studio_req *r);
enum MHD_Result api_tokens_list(studio_req *r);
enum MHD_Result api_tokens_create(studio_req *r);
enum MHD_Result api_tokens_delete(studio_req *r);
/* api_project.c */
enum MHD_Result api_projects_list(studio_req *r);
enum MHD_Result api_projects_create(studio_req *r);
enum MHD_Result api_project_get(studio_req *r);
enum MHD_Result api_project_update(studio_req *r);
enum MHD_Result api_project_delete(studio_req *r);
enum MHD_Result api_members_list(studio_req *r);
enum MHD_Result api_members_add(studio_req *r);
/* api_data.c */
enum MHD_Result api_files_upload(studio_req *r);
enum MHD_Result api_files_list(studio_req *r);
enum MHD_Result api_uploads_create(studio_req *r);
enum MHD_Result api_upload_head(studio_req *r);
enum MHD_Result api_upload_patch(studio_req *r);
enum MHD_Result api_images_list(studio_req *r);
enum MHD_Result api_image_get(studio_req *r);
enum MHD_Result api_image_file(studio_req *r);
enum MHD_Result api_image_thumbnail(studio_req *r);
enum MHD_Result api_image_annotation_get(studio_req *r);
enum MHD_Result api_image_annotation_put(studio_req *r);
enum MHD_Result api_dataset_health(studio_req *r);
/* api_jobs.c */
enum MHD_Result api_jobs_create(studio_req *r);
enum MHD_Result api_jobs_list(studio_req *r);
enum MHD_Result api_job_get(studio_req *r);
enum MHD_Result api_job_events(studio_req *r);
enum MHD_Result api_job_cancel(studio_req *r);
enum MHD_Result api_models_list(studio_req *r);
enum MHD_Result api_model_get(studio_req *r);
enum MHD_Result api_model_artifact(studio_req *r);
/* api_try.c */
enum MHD_Result api_model_try(studio_req *r);
/* api_worker.c: remote workers (`kiln worker`) */
enum MHD_Result api_worker_tokens_create(studio_req *r);
enum MHD_Result api_worker_lease(studio_req *r);
enum MHD_Result api_worker_heartbeat(studio_req *r);
enum MHD_Result api_worker_event(studio_req *r);
enum MHD_Result api_worker_dataset(studio_req *r);
enum MHD_Result api_worker_dataset_file(studio_req *r);
enum MHD_Result api_worker_files_list(studio_req *r);
enum MHD_Result api_worker_file_get(studio_req *r);
enum MHD_Result api_worker_file_put(studio_req *r);
enum MHD_Result api_worker_complete(studio_req *r);
enum MHD_Result api_worker_fail(studio_req *r);
/* For a Bearer token: *worker_token its id when its scope is "worker". */
kiln_status studio_worker_token(sqlite3 *db, const char *token, int64_t *worker_token, kiln_error *err);
/* R_WORKER / R_HELD checks (after authentication); false after early(). */
bool studio_worker_check(studio_req *r, char *msg, size_t n, unsigned *status);

/* A row of the project as JSON (NULL when missing). */
json_t *studio_project_json(sqlite3 *db, int64_t project);

#endif
