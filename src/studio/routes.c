/*
 * studio/routes.c: every endpoint of the studio's REST API, with what it
 * needs checked before its handler runs (studio/http_int.h). docs/api.md
 * and docs/openapi.json describe the same list; the API test checks that
 * openapi.json names exactly these routes (`kiln studio --routes`).
 */
#include <stdio.h>

#include "studio/http_int.h"

const studio_route studio_routes[] = {
    {"GET", "/api/health", api_health, R_PUBLIC},
    {"POST", "/api/setup", api_setup, R_PUBLIC},
    {"POST", "/api/login", api_login, R_PUBLIC},
    {"POST", "/api/logout", api_logout, 0},
    {"GET", "/api/me", api_me, 0},
    {"GET", "/api/users", api_users_list, R_ADMIN},
    {"POST", "/api/users", api_users_create, R_ADMIN},
    {"GET", "/api/tokens", api_tokens_list, 0},
    {"POST", "/api/tokens", api_tokens_create, 0},
    {"DELETE", "/api/tokens/{id}", api_tokens_delete, 0},
    {"GET", "/api/projects", api_projects_list, 0},
    {"POST", "/api/projects", api_projects_create, 0},
    {"GET", "/api/projects/{id}", api_project_get, R_PROJECT},
    {"PATCH", "/api/projects/{id}", api_project_update, R_PROJECT},
    {"DELETE", "/api/projects/{id}", api_project_delete, R_PROJECT | R_OWNER},
    {"GET", "/api/projects/{id}/members", api_members_list, R_PROJECT},
    {"POST", "/api/projects/{id}/members", api_members_add, R_PROJECT | R_OWNER},
    {"POST", "/api/projects/{id}/files", api_files_upload, R_PROJECT | R_FILES},
    {"GET", "/api/projects/{id}/files", api_files_list, R_PROJECT},
    {"POST", "/api/projects/{id}/uploads", api_uploads_create, R_PROJECT},
    {"HEAD", "/api/uploads/{id}", api_upload_head, R_UPLOAD},
    {"PATCH", "/api/uploads/{id}", api_upload_patch, R_UPLOAD | R_CHUNK},
    {"GET", "/api/projects/{id}/images", api_images_list, R_PROJECT},
    {"GET", "/api/projects/{id}/images/{id}", api_image_get, R_PROJECT},
    {"GET", "/api/projects/{id}/images/{id}/file", api_image_file, R_PROJECT},
    {"GET", "/api/projects/{id}/images/{id}/thumbnail", api_image_thumbnail, R_PROJECT},
    {"GET", "/api/projects/{id}/images/{id}/annotation", api_image_annotation_get, R_PROJECT},
    {"PUT", "/api/projects/{id}/images/{id}/annotation", api_image_annotation_put, R_PROJECT},
    {"GET", "/api/projects/{id}/health", api_dataset_health, R_PROJECT},
    {"POST", "/api/projects/{id}/jobs", api_jobs_create, R_PROJECT},
    {"GET", "/api/projects/{id}/jobs", api_jobs_list, R_PROJECT},
    {"GET", "/api/jobs/{id}", api_job_get, R_JOB},
    {"GET", "/api/jobs/{id}/events", api_job_events, R_JOB},
    {"POST", "/api/jobs/{id}/cancel", api_job_cancel, R_JOB},
    {"GET", "/api/projects/{id}/models", api_models_list, R_PROJECT},
    {"GET", "/api/models/{id}", api_model_get, R_MODEL},
    {"GET", "/api/models/{id}/artifacts/{name}", api_model_artifact, R_MODEL},
    {"POST", "/api/models/{id}/try", api_model_try, R_MODEL},
    /* remote workers (api_worker.c): an administrator makes worker tokens;
     * the rest take only a worker token and name the worker in X-Kiln-Worker */
    {"POST", "/api/worker-tokens", api_worker_tokens_create, R_ADMIN},
    {"POST", "/api/worker/lease", api_worker_lease, R_WORKER},
    {"POST", "/api/worker/jobs/{id}/heartbeat", api_worker_heartbeat, R_WORKER | R_HELD},
    {"POST", "/api/worker/jobs/{id}/events", api_worker_event, R_WORKER | R_HELD},
    {"GET", "/api/worker/jobs/{id}/dataset", api_worker_dataset, R_WORKER | R_HELD},
    {"GET", "/api/worker/jobs/{id}/dataset/{name}", api_worker_dataset_file, R_WORKER | R_HELD},
    {"GET", "/api/worker/jobs/{id}/checkpoints", api_worker_files_list, R_WORKER | R_HELD},
    {"GET", "/api/worker/jobs/{id}/checkpoints/{name}", api_worker_file_get, R_WORKER | R_HELD},
    {"PUT", "/api/worker/jobs/{id}/checkpoints/{name}", api_worker_file_put, R_WORKER | R_HELD | R_FILES},
    {"PUT", "/api/worker/jobs/{id}/artifacts/{name}", api_worker_file_put, R_WORKER | R_HELD | R_FILES},
    {"POST", "/api/worker/jobs/{id}/complete", api_worker_complete, R_WORKER | R_HELD},
    {"POST", "/api/worker/jobs/{id}/fail", api_worker_fail, R_WORKER | R_HELD},
};
const size_t studio_n_routes = sizeof studio_routes / sizeof studio_routes[0];

const char *kiln_studio_route(int32_t index, const char **method) {
  if (index < 0 || (size_t)index >= studio_n_routes) return NULL;
  if (method) *method = studio_routes[index].method;
  return studio_routes[index].pattern;
}
