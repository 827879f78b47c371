/*
 * studio/remote_worker.c: `kiln worker` (kiln/worker.h), the client side of
 * studio/api_worker.c, over libcurl. A job works in WORK/jobs/<id>/:
 * dataset/ (dataset.json and images/<hash>.<ext>, each image checked
 * against its SHA-256 name; kept between attempts) and out/ (emptied at
 * each lease, then filled with the checkpoints the studio holds for the
 * job, so the trainer resumes from the last uploaded checkpoint and not
 * from something only this machine saw). Progress events are the same
 * JSON the in-process workers store (worker.c), throttled; heartbeats go
 * out from the progress callback; each checkpoint the trainer writes is
 * uploaded before training goes on.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "kiln/data.h"
#include "kiln/trainer.h"
#include "kiln/worker.h"
#include "studio/studio_int.h"

#define HEARTBEAT_US 1000000
#define EVENT_EVERY_US 500000
#define MAX_CKPT 16

typedef struct rw_buf {
  char *data;
  size_t len, cap;
  FILE *file; /* when set, the body goes here */
} rw_buf;

typedef struct rw_client {
  CURL *h;
  char base[1024];
  char auth[STUDIO_SECRET_MAX + 32];
  char who[128];
  char owner[160];
  char curl_error[CURL_ERROR_SIZE];
} rw_client;

typedef struct rw_ckpt {
  char name[128];
  int64_t size, mtime_ns;
} rw_ckpt;

typedef struct rw_job {
  rw_client *c;
  const kiln_worker_options *o;
  pthread_mutex_t mu; /* the trainer may report from several threads; one curl handle */
  int64_t id;
  int32_t attempts;
  char out_dir[STUDIO_PATH_MAX];
  volatile sig_atomic_t stop;
  bool lost, canceled, upload_failed;
  int64_t last_beat, last_event;
  double progress;
  rw_ckpt sent[MAX_CKPT];
  int32_t n_sent;
} rw_job;

kiln_worker_options kiln_worker_options_default(void) {
  kiln_worker_options o;
  memset(&o, 0, sizeof o);
  o.work_dir = "kiln-worker";
  return o;
}

static size_t on_body(char *p, size_t size, size_t n, void *ctx) {
  rw_buf *b = ctx;
  size_t k = size * n;
  if (b->file) return fwrite(p, 1, k, b->file);
  if (b->len + k + 1 > b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 4096;
    while (cap < b->len + k + 1) cap *= 2;
    char *d = kiln_realloc(b->data, cap);
    if (!d) return 0;
    b->data = d;
    b->cap = cap;
  }
  memcpy(b->data + b->len, p, k);
  b->len += k;
  b->data[b->len] = '\0';
  return k;
}

/* One request. body/n: a JSON body (POST); upload: a file's bytes (PUT,
 * named by filename); out: the reply (into out->file when set). */
static kiln_status request(rw_client *c, const char *method, const char *path, const char *body, FILE *upload,
                           int64_t upload_size, const char *filename, rw_buf *out, long *status, kiln_error *err) {
  CURL *h = c->h;
  curl_easy_reset(h);
  char url[2048], hdr[600];
  snprintf(url, sizeof url, "%s%s", c->base, path);
  struct curl_slist *headers = NULL, *more;
  const char *lines[5] = {c->auth, c->who, "Expect:", NULL, NULL};
  if (body) lines[3] = "Content-Type: application/json";
  if (filename) {
    snprintf(hdr, sizeof hdr, "X-Filename: %s", filename);
    lines[3] = "Content-Type: application/octet-stream";
    lines[4] = hdr;
  }
  for (int i = 0; i < 5; i++) {
    if (!lines[i]) continue;
    if (!(more = curl_slist_append(headers, lines[i]))) {
      curl_slist_free_all(headers);
      return kiln_fail(err, KILN_ERR_NOMEM, "out of memory");
    }
    headers = more;
  }
  curl_easy_setopt(h, CURLOPT_URL, url);
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(h, CURLOPT_USERAGENT, "kiln/worker");
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 10L);
  curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, 60L);
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, c->curl_error);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, out);
  if (body) {
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
  } else if (upload) {
    curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(h, CURLOPT_READDATA, upload);
    curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)upload_size);
  }
  if (strcmp(method, "GET") != 0 && strcmp(method, "POST") != 0 && !upload)
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
  c->curl_error[0] = '\0';
  CURLcode rc = curl_easy_perform(h);
  curl_slist_free_all(headers);
  if (rc != CURLE_OK)
    return kiln_fail(err, KILN_ERR_IO, "%s %s: %s", method, url, c->curl_error[0] ? c->curl_error : curl_easy_strerror(rc));
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
  return KILN_OK;
}

/* A JSON request; a reply other than 2xx is an error naming the studio's
 * message (*status tells which). *out may be NULL. */
static kiln_status call_json(rw_client *c, const char *method, const char *path, json_t *body, long *status,
                             json_t **out, kiln_error *err) {
  char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
  json_decref(body);
  rw_buf b = {0};
  long st = 0;
  kiln_status s = request(c, method, path, text ? text : (strcmp(method, "POST") == 0 ? "{}" : NULL), NULL, 0, NULL,
                          &b, &st, err);
  free(text);
  if (status) *status = st;
  json_t *v = s == KILN_OK && b.data ? json_loadb(b.data, b.len, 0, NULL) : NULL;
  if (s == KILN_OK && (st < 200 || st > 299)) {
    const char *msg = json_string_value(json_object_get(v, "error"));
    s = kiln_fail(err, st == 401 || st == 403 ? KILN_ERR_INVALID_ARG : KILN_ERR_IO, "%s %s: HTTP %ld: %s", method, path,
                  st, msg ? msg : "no message");
  }
  kiln_free(b.data);
  if (s == KILN_OK && out) *out = v;
  else json_decref(v);
  return s;
}

/* GET path into file path (temp file + rename). */
static kiln_status download(rw_client *c, const char *path, const char *dest, kiln_error *err) {
  char tmp[STUDIO_PATH_MAX + 8];
  snprintf(tmp, sizeof tmp, "%s.part", dest);
  FILE *f = fopen(tmp, "wb");
  if (!f) return kiln_fail(err, KILN_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
  rw_buf b = {.file = f};
  long st = 0;
  kiln_status s = request(c, "GET", path, NULL, NULL, 0, NULL, &b, &st, err);
  if (fclose(f) != 0 && s == KILN_OK) s = kiln_fail(err, KILN_ERR_IO, "%s: cannot write", tmp);
  if (s == KILN_OK && st != 200) s = kiln_fail(err, KILN_ERR_IO, "GET %s: HTTP %ld", path, st);
  if (s == KILN_OK && rename(tmp, dest) != 0) s = kiln_fail(err, KILN_ERR_IO, "%s: cannot rename: %s", tmp, strerror(errno));
  if (s != KILN_OK) unlink(tmp);
  return s;
}

static kiln_status upload_file(rw_client *c, int64_t job, const char *kind, const char *name, const char *file,
                               kiln_error *err) {
  FILE *f = fopen(file, "rb");
  if (!f) return kiln_fail(err, KILN_ERR_IO, "%s: cannot open: %s", file, strerror(errno));
  struct stat sb;
  fstat(fileno(f), &sb);
  char path[512];
  snprintf(path, sizeof path, "/api/worker/jobs/%" PRId64 "/%s/%s", job, kind, name);
  rw_buf b = {0};
  long st = 0;
  kiln_status s = request(c, "PUT", path, NULL, f, (int64_t)sb.st_size, name, &b, &st, err);
  fclose(f);
  if (s == KILN_OK && st != 201) s = kiln_fail(err, KILN_ERR_IO, "PUT %s: HTTP %ld: %s", path, st, b.data ? b.data : "");
  kiln_free(b.data);
  return s;
}

static bool sha256_matches(const char *file, const char *hash) {
  FILE *f = fopen(file, "rb");
  if (!f) return false;
  crypto_hash_sha256_state sha;
  crypto_hash_sha256_init(&sha);
  unsigned char buf[65536], digest[crypto_hash_sha256_BYTES];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) crypto_hash_sha256_update(&sha, buf, n);
  fclose(f);
  crypto_hash_sha256_final(&sha, digest);
  char hex[STUDIO_HASH_HEX + 1];
  sodium_bin2hex(hex, sizeof hex, digest, sizeof digest);
  return strcmp(hex, hash) == 0;
}

static void heartbeat(rw_job *j, int64_t now);

/* The job's dataset snapshot into dir (dataset.json, images/); the lease is
 * renewed while it downloads. */
static kiln_status fetch_dataset(rw_job *j, const char *dir, kiln_error *err) {
  rw_client *c = j->c;
  int64_t job = j->id;
  char path[512], images[STUDIO_PATH_MAX], file[STUDIO_PATH_MAX + 200];
  snprintf(images, sizeof images, "%s/images", dir);
  kiln_status s = studio_mkdirs(images, err);
  json_t *manifest = NULL;
  snprintf(path, sizeof path, "/api/worker/jobs/%" PRId64 "/dataset", job);
  if (s == KILN_OK) s = call_json(c, "GET", path, NULL, NULL, &manifest, err);
  size_t i;
  json_t *im;
  json_array_foreach(json_object_get(manifest, "images"), i, im) {
    if (s != KILN_OK) break;
    const char *hash = json_string_value(json_object_get(im, "hash"));
    const char *ext = json_string_value(json_object_get(im, "ext"));
    if (!hash || !ext || !studio_is_hash(hash) || strchr(ext, '/')) {
      s = kiln_fail(err, KILN_ERR_FORMAT, "job %" PRId64 ": a malformed dataset manifest", job);
      break;
    }
    snprintf(file, sizeof file, "%s/%s.%s", images, hash, ext);
    struct stat sb;
    if (stat(file, &sb) == 0) continue; /* kept from an earlier attempt (checked then) */
    int64_t now = studio_now_us();
    if (now - j->last_beat >= HEARTBEAT_US) heartbeat(j, now);
    if (j->lost) {
      s = kiln_fail(err, KILN_ERR_IO, "job %" PRId64 ": the lease was lost", job);
      break;
    }
    snprintf(path, sizeof path, "/api/worker/jobs/%" PRId64 "/dataset/%s.%s", job, hash, ext);
    s = download(c, path, file, err);
    if (s == KILN_OK && !sha256_matches(file, hash)) {
      unlink(file);
      s = kiln_fail(err, KILN_ERR_FORMAT, "%s: the downloaded bytes do not hash to their name", file);
    }
  }
  snprintf(file, sizeof file, "%s/dataset.json", dir);
  if (s == KILN_OK && json_dump_file(manifest, file, JSON_INDENT(1)) != 0)
    s = kiln_fail(err, KILN_ERR_IO, "%s: cannot write", file);
  json_decref(manifest);
  return s;
}

/* The checkpoints the studio holds for the job into out/checkpoints. */
static kiln_status fetch_checkpoints(rw_job *j, kiln_error *err) {
  char path[512], dir[STUDIO_PATH_MAX + 16], file[STUDIO_PATH_MAX + 200];
  snprintf(dir, sizeof dir, "%s/checkpoints", j->out_dir);
  kiln_status s = studio_mkdirs(dir, err);
  json_t *list = NULL;
  snprintf(path, sizeof path, "/api/worker/jobs/%" PRId64 "/checkpoints", j->id);
  if (s == KILN_OK) s = call_json(j->c, "GET", path, NULL, NULL, &list, err);
  size_t i;
  json_t *f;
  json_array_foreach(json_object_get(list, "files"), i, f) {
    const char *name = json_string_value(json_object_get(f, "name"));
    const char *hash = json_string_value(json_object_get(f, "hash"));
    if (s != KILN_OK || !name || !hash || strchr(name, '/') || name[0] == '.') continue;
    snprintf(file, sizeof file, "%s/%s", dir, name);
    snprintf(path, sizeof path, "/api/worker/jobs/%" PRId64 "/checkpoints/%s", j->id, name);
    s = download(j->c, path, file, err);
    if (s == KILN_OK && !sha256_matches(file, hash)) s = kiln_fail(err, KILN_ERR_FORMAT, "%s: corrupt download", file);
  }
  json_decref(list);
  return s;
}

/* Uploads the checkpoint files that changed since the last upload. */
static void send_checkpoints(rw_job *j) {
  char dir[STUDIO_PATH_MAX + 16], file[STUDIO_PATH_MAX + 300];
  snprintf(dir, sizeof dir, "%s/checkpoints", j->out_dir);
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.' || strlen(e->d_name) >= sizeof j->sent[0].name) continue;
    snprintf(file, sizeof file, "%s/%s", dir, e->d_name);
    struct stat sb;
    if (stat(file, &sb) != 0 || !S_ISREG(sb.st_mode)) continue;
    int64_t mtime = (int64_t)sb.st_mtim.tv_sec * 1000000000 + sb.st_mtim.tv_nsec;
    int32_t k = 0;
    while (k < j->n_sent && strcmp(j->sent[k].name, e->d_name) != 0) k++;
    if (k < j->n_sent && j->sent[k].size == (int64_t)sb.st_size && j->sent[k].mtime_ns == mtime) continue;
    kiln_error err = {0};
    if (upload_file(j->c, j->id, "checkpoints", e->d_name, file, &err) != KILN_OK) {
      fprintf(stderr, "kiln worker: job %" PRId64 ": %s\n", j->id, err.msg);
      j->upload_failed = true;
      continue;
    }
    if (k == j->n_sent && k < MAX_CKPT) j->n_sent++;
    if (k < MAX_CKPT) {
      snprintf(j->sent[k].name, sizeof j->sent[k].name, "%s", e->d_name);
      j->sent[k].size = (int64_t)sb.st_size;
      j->sent[k].mtime_ns = mtime;
    }
  }
  closedir(d);
}

static void post_event(rw_job *j, json_t *ev) {
  char path[256];
  snprintf(path, sizeof path, "/api/worker/jobs/%" PRId64 "/events", j->id);
  kiln_error err = {0};
  long st = 0;
  if (call_json(j->c, "POST", path, ev, &st, NULL, &err) != KILN_OK) {
    if (st == 404) j->lost = true;
    else fprintf(stderr, "kiln worker: job %" PRId64 ": %s\n", j->id, err.msg);
  }
}

static void heartbeat(rw_job *j, int64_t now) {
  char path[256];
  snprintf(path, sizeof path, "/api/worker/jobs/%" PRId64 "/heartbeat", j->id);
  kiln_error err = {0};
  long st = 0;
  json_t *out = NULL;
  if (call_json(j->c, "POST", path, NULL, &st, &out, &err) != KILN_OK) {
    if (st == 404) j->lost = true; /* the lease ran out and another worker has the job */
    else fprintf(stderr, "kiln worker: job %" PRId64 ": heartbeat: %s\n", j->id, err.msg);
    return;
  }
  j->last_beat = now;
  if (json_is_true(json_object_get(out, "cancel"))) j->canceled = true;
  json_decref(out);
}

static void report(rw_job *j, const kiln_train_progress *p);

static void on_progress(void *ctx, const kiln_train_progress *p) {
  rw_job *j = ctx;
  pthread_mutex_lock(&j->mu);
  report(j, p);
  pthread_mutex_unlock(&j->mu);
}

static void report(rw_job *j, const kiln_train_progress *p) {
  int64_t now = studio_now_us();
  if (p->event == KILN_EVENT_CHECKPOINT) send_checkpoints(j);
  if (now - j->last_beat >= HEARTBEAT_US) heartbeat(j, now);
  if (j->lost || j->canceled || (j->o->stop && *j->o->stop)) j->stop = 1;
  double progress = studio_phase_progress(p);
  if (progress < j->progress) progress = j->progress;
  bool throttled = (p->event == KILN_EVENT_ITEM || p->event == KILN_EVENT_STEP) && now - j->last_event < EVENT_EVERY_US &&
                   p->done != p->total;
  if (throttled || j->lost) return;
  j->last_event = now;
  j->progress = progress;
  json_t *ev = json_pack("{s:s, s:s, s:f}", "event", studio_event_name(p->event), "phase", kiln_train_phase_name(p->phase),
                         "progress", progress);
  if (!ev) return;
  if (p->message && p->event != KILN_EVENT_CHECKPOINT) json_object_set_new(ev, "message", json_string(p->message));
  if (p->done >= 0) json_object_set_new(ev, "done", json_integer(p->done));
  if (p->total >= 0) json_object_set_new(ev, "total", json_integer(p->total));
  if (p->epoch >= 0) json_object_set_new(ev, "epoch", json_integer(p->epoch));
  if (p->epochs >= 0) json_object_set_new(ev, "epochs", json_integer(p->epochs));
  if (p->loss >= 0) json_object_set_new(ev, "loss", json_real(p->loss));
  if (p->accuracy >= 0) json_object_set_new(ev, "accuracy", json_real(p->accuracy));
  if (p->val_accuracy >= 0) json_object_set_new(ev, "val_accuracy", json_real(p->val_accuracy));
  if (p->images_per_second >= 0) json_object_set_new(ev, "images_per_second", json_real(p->images_per_second));
  if (p->eta_seconds >= 0) json_object_set_new(ev, "eta_seconds", json_real(p->eta_seconds));
  json_object_set_new(ev, "worker", json_string(j->c->owner));
  post_event(j, ev);
}

static kiln_train_options train_options(const kiln_worker_options *wo, json_t *settings, bool detect) {
  kiln_train_options o = kiln_train_options_default();
  o.task = detect ? KILN_TASK_DETECT : KILN_TASK_CLASSIFY;
  const char *preset = json_string_value(json_object_get(settings, "preset"));
  o.preset = !preset ? KILN_PRESET_BALANCED
             : !strcmp(preset, "fast") ? KILN_PRESET_FAST
             : !strcmp(preset, "accurate") ? KILN_PRESET_ACCURATE
                                            : KILN_PRESET_BALANCED;
  json_t *v;
  if ((v = json_object_get(settings, "epochs"))) o.epochs = (int32_t)json_integer_value(v);
  if ((v = json_object_get(settings, "batch"))) o.batch = (int32_t)json_integer_value(v);
  if ((v = json_object_get(settings, "lr"))) o.lr = (float)json_number_value(v);
  if ((v = json_object_get(settings, "fine_tune"))) o.fine_tune = (int32_t)json_integer_value(v);
  if ((v = json_object_get(settings, "seed"))) o.seed = (uint64_t)json_integer_value(v);
  if ((v = json_object_get(settings, "calib_images"))) o.calib_images = (int32_t)json_integer_value(v);
  o.from_scratch = json_is_true(json_object_get(settings, "from_scratch"));
  if ((v = json_object_get(settings, "threads")) && json_integer_value(v) > 0) o.threads = (int32_t)json_integer_value(v);
  if (wo->threads > 0) o.threads = wo->threads;
  return o;
}

static void finish(rw_job *j, const char *state, const char *message) {
  char path[256];
  snprintf(path, sizeof path, "/api/worker/jobs/%" PRId64 "/fail", j->id);
  kiln_error err = {0};
  if (call_json(j->c, "POST", path, json_pack("{s:s, s:s}", "state", state, "message", message), NULL, NULL, &err) !=
      KILN_OK)
    fprintf(stderr, "kiln worker: job %" PRId64 ": %s\n", j->id, err.msg);
}

static kiln_status complete(rw_job *j, const kiln_train_result *res, kiln_error *err) {
  static const char *const names[] = {"model_float.tflite", "model_int8.tflite", "labels.txt", "report.json"};
  char file[STUDIO_PATH_MAX + 64], path[256];
  kiln_status s = KILN_OK;
  for (int i = 0; i < 4 && s == KILN_OK; i++) {
    snprintf(file, sizeof file, "%s/%s", j->out_dir, names[i]);
    s = upload_file(j->c, j->id, "artifacts", names[i], file, err);
  }
  if (s != KILN_OK) return s;
  json_t *body = json_pack("{s:{s:f, s:f, s:I, s:b, s:i, s:s}}", "metrics", "float_accuracy", res->float_accuracy,
                           "int8_accuracy", res->int8_accuracy, "epochs", (json_int_t)res->epochs_done, "resumed",
                           res->resumed, "attempt", j->attempts, "worker", j->c->owner);
  snprintf(path, sizeof path, "/api/worker/jobs/%" PRId64 "/complete", j->id);
  return call_json(j->c, "POST", path, body, NULL, NULL, err);
}

static void run_job(rw_client *c, const kiln_worker_options *o, json_t *job) {
  rw_job j;
  memset(&j, 0, sizeof j);
  j.c = c;
  j.o = o;
  j.id = (int64_t)json_integer_value(json_object_get(job, "id"));
  j.attempts = (int32_t)json_integer_value(json_object_get(job, "attempts"));
  j.last_beat = studio_now_us();
  pthread_mutex_init(&j.mu, NULL);
  json_t *settings = json_object_get(job, "settings");
  char job_dir[STUDIO_PATH_MAX], dataset_dir[STUDIO_PATH_MAX + 16];
  snprintf(job_dir, sizeof job_dir, "%s/jobs/%" PRId64, o->work_dir, j.id);
  snprintf(dataset_dir, sizeof dataset_dir, "%s/dataset", job_dir);
  snprintf(j.out_dir, sizeof j.out_dir, "%s/out", job_dir);
  if (o->verbose) fprintf(stderr, "kiln worker: %s: job %" PRId64 " (attempt %d)\n", c->owner, j.id, j.attempts);
  post_event(&j, json_pack("{s:s, s:i, s:b, s:s}", "event", "start", "attempt", j.attempts, "resumed", j.attempts > 1,
                           "worker", c->owner));
  kiln_error err = {0};
  studio_rmtree(j.out_dir); /* the studio's checkpoints are the truth */
  kiln_status s = fetch_dataset(&j, dataset_dir, &err);
  if (s == KILN_OK) s = fetch_checkpoints(&j, &err);
  kiln_dataset *ds = NULL;
  if (s == KILN_OK) {
    kiln_data_options dopt = kiln_data_options_default();
    dopt.format = KILN_DATA_KILN;
    s = kiln_data_import(dataset_dir, &dopt, &ds, &err);
  }
  kiln_train_result res;
  memset(&res, 0, sizeof res);
  if (s == KILN_OK) {
    kiln_train_options to = train_options(o, settings, ds->task == KILN_TASK_DETECT);
    to.out_dir = j.out_dir;
    to.data_path = dataset_dir;
    to.on_progress = on_progress;
    to.ctx = &j;
    to.stop = &j.stop;
    s = kiln_train_run(ds, &to, &res, &err);
  }
  kiln_dataset_free(ds);
  if (j.lost) {
    if (o->verbose) fprintf(stderr, "kiln worker: job %" PRId64 ": the lease was lost\n", j.id);
    pthread_mutex_destroy(&j.mu);
    return;
  }
  if (s != KILN_OK) {
    post_event(&j, json_pack("{s:s, s:s}", "event", "failed", "message", err.msg));
    finish(&j, "failed", err.msg);
  } else if (res.interrupted) {
    send_checkpoints(&j);
    post_event(&j, json_pack("{s:s}", "event", j.canceled ? "canceled" : "paused"));
    finish(&j, j.canceled ? "canceled" : "queued",
           j.canceled ? "canceled" : "the worker stopped; resumes from its checkpoint");
  } else {
    post_event(&j, json_pack("{s:s, s:s, s:f}", "event", "done", "phase", "done", "progress", 1.0));
    kiln_error cerr = {0};
    if (complete(&j, &res, &cerr) != KILN_OK) {
      post_event(&j, json_pack("{s:s, s:s}", "event", "failed", "message", cerr.msg));
      finish(&j, "failed", cerr.msg);
    }
  }
  if (o->verbose) fprintf(stderr, "kiln worker: job %" PRId64 " ended\n", j.id);
  pthread_mutex_destroy(&j.mu);
}

static void sleep_ms(int32_t ms, volatile sig_atomic_t *stop) {
  for (int32_t t = 0; t < ms && !(stop && *stop); t += 50) {
    struct timespec ts = {0, 50 * 1000000L};
    nanosleep(&ts, NULL);
  }
}

kiln_status kiln_worker_run(const kiln_worker_options *options, kiln_error *err) {
  kiln_worker_options o = *options;
  if (!o.studio_url || !*o.studio_url) return kiln_fail(err, KILN_ERR_INVALID_ARG, "--studio URL is required");
  if (!o.token || strncmp(o.token, "kt_", 3) != 0)
    return kiln_fail(err, KILN_ERR_INVALID_ARG, "--token: a worker token (kt_...) is required");
  if (strlen(o.studio_url) > 900) return kiln_fail(err, KILN_ERR_INVALID_ARG, "--studio: URL too long");
  if (!o.work_dir) o.work_dir = "kiln-worker";
  if (o.poll_ms <= 0) o.poll_ms = 1000;
  kiln_status s = studio_mkdirs(o.work_dir, err);
  if (s != KILN_OK) return s;
  if (sodium_init() < 0) return kiln_fail(err, KILN_ERR_INTERNAL, "cannot start libsodium");
  rw_client c;
  memset(&c, 0, sizeof c);
  size_t ul = strlen(o.studio_url);
  snprintf(c.base, sizeof c.base, "%.*s", (int)(o.studio_url[ul - 1] == '/' ? ul - 1 : ul), o.studio_url);
  snprintf(c.auth, sizeof c.auth, "Authorization: Bearer %s", o.token);
  char name[65];
  if (o.name) {
    snprintf(name, sizeof name, "%s", o.name);
  } else {
    char host[256] = "worker";
    gethostname(host, sizeof host - 1);
    snprintf(name, sizeof name, "%.40s-%ld", host, (long)getpid());
  }
  for (char *p = name; *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '.' || *p == '-'))
      *p = '_';
  snprintf(c.who, sizeof c.who, "X-Kiln-Worker: %s", name);
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) return kiln_fail(err, KILN_ERR_INTERNAL, "cannot start libcurl");
  c.h = curl_easy_init();
  if (!c.h) {
    curl_global_cleanup();
    return kiln_fail(err, KILN_ERR_NOMEM, "cannot start libcurl");
  }
  int32_t done = 0;
  bool told_down = false;
  while (!(o.stop && *o.stop) && (o.max_jobs <= 0 || done < o.max_jobs)) {
    json_t *out = NULL;
    long st = 0;
    kiln_error lerr = {0};
    s = call_json(&c, "POST", "/api/worker/lease", NULL, &st, &out, &lerr);
    if (s != KILN_OK && (st == 401 || st == 403 || st == 400)) {
      *err = lerr;
      break;
    }
    if (s != KILN_OK) {
      if (!told_down) fprintf(stderr, "kiln worker: %s (retrying)\n", lerr.msg);
      told_down = true;
      s = KILN_OK;
      sleep_ms(2000, o.stop);
      continue;
    }
    told_down = false;
    json_t *job = json_object_get(out, "job");
    bool got = json_is_object(job);
    if (got) {
      snprintf(c.owner, sizeof c.owner, "%s", json_string_value(json_object_get(job, "worker")));
      run_job(&c, &o, job);
      done++;
    }
    json_decref(out);
    if (!got) sleep_ms(o.poll_ms, o.stop);
  }
  curl_easy_cleanup(c.h);
  curl_global_cleanup();
  return s;
}
