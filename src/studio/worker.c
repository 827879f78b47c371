/*
 * studio/worker.c: in-process workers. Each thread leases a job, runs it
 * and records the result. A train job works in DATA/jobs/<id>/: dataset/
 * (the project's images frozen when the job first ran, so a resumed run
 * sees the same data) and out/ (kiln_train_run's output and checkpoints,
 * so a job leased again after its worker died resumes from its last
 * checkpoint). Progress goes to job_events (throttled), the lease is
 * renewed from the progress callback, and a cancel request or the studio
 * stopping sets the trainer's stop flag. At the end the artifacts become
 * blobs linked to a new model version, in the same transaction that marks
 * the job done. An evaluate job measures a model version on the project's
 * current images (the trainer's splits) and stores the metrics as the
 * job's result.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "kiln/data.h"
#include "kiln/eval.h"
#include "kiln/model.h"
#include "kiln/trainer.h"
#include "studio/studio_int.h"

#define HEARTBEAT_US 500000 /* also how soon a cancel is seen */
#define EVENT_EVERY_US 500000

typedef struct job_run {
  kiln_studio *st;
  sqlite3 *db;
  const char *owner;
  const studio_job *job;
  int64_t lease_us;
  pthread_mutex_t mu;
  volatile sig_atomic_t stop;
  bool lost, canceled;
  int64_t last_beat, last_event;
  double progress;
} job_run;

double studio_phase_progress(const kiln_train_progress *p) {
  double f = p->total > 0 && p->done >= 0 ? (double)p->done / (double)p->total : 0.0;
  switch (p->phase) {
    case KILN_PHASE_PREPARE: return 0.15 * f;
    case KILN_PHASE_TRAIN: return 0.15 + 0.65 * f;
    case KILN_PHASE_EXPORT: return 0.80;
    case KILN_PHASE_QUANTIZE: return 0.82 + 0.08 * f;
    case KILN_PHASE_EVALUATE: return 0.90 + 0.09 * f;
    default: return 0.99;
  }
}

const char *studio_event_name(int e) {
  static const char *const names[] = {"phase", "item", "step", "epoch", "checkpoint"};
  return (unsigned)e < 5 ? names[e] : "event";
}

static void record(job_run *run, json_t *ev, double progress) {
  char *text = json_dumps(ev, JSON_COMPACT);
  kiln_error err = {0};
  if (text && studio_job_event(run->db, run->job->id, text, progress, &err) != KILN_OK)
    fprintf(stderr, "kiln studio: job %lld: %s\n", (long long)run->job->id, err.msg);
  free(text);
  json_decref(ev);
}

static void heartbeat(job_run *run, int64_t now) {
  bool mine = true, cancel = false;
  kiln_error err = {0};
  if (studio_job_heartbeat(run->db, run->job->id, run->owner, now, run->lease_us, &mine, &cancel, &err) != KILN_OK)
    return; /* a busy database: the lease is long enough for the next try */
  run->last_beat = now;
  if (!mine) run->lost = true;
  if (cancel) run->canceled = true;
}

static void on_progress(void *ctx, const kiln_train_progress *p) {
  job_run *run = ctx;
  pthread_mutex_lock(&run->mu);
  int64_t now = studio_now_us();
  if (now - run->last_beat >= HEARTBEAT_US) heartbeat(run, now);
  if (run->lost || run->canceled || atomic_load(&run->st->stopping)) run->stop = 1;
  double progress = studio_phase_progress(p);
  if (progress < run->progress) progress = run->progress; /* monotonic for the UI */
  bool throttled = (p->event == KILN_EVENT_ITEM || p->event == KILN_EVENT_STEP) &&
                   now - run->last_event < EVENT_EVERY_US && p->done != p->total;
  if (!throttled && !run->lost) {
    run->last_event = now;
    run->progress = progress;
    json_t *ev = json_pack("{s:s, s:s, s:f}", "event", studio_event_name(p->event), "phase",
                           kiln_train_phase_name(p->phase), "progress", progress);
    if (p->message) json_object_set_new(ev, "message", json_string(p->message));
    if (p->done >= 0) json_object_set_new(ev, "done", json_integer(p->done));
    if (p->total >= 0) json_object_set_new(ev, "total", json_integer(p->total));
    if (p->epoch >= 0) json_object_set_new(ev, "epoch", json_integer(p->epoch));
    if (p->epochs >= 0) json_object_set_new(ev, "epochs", json_integer(p->epochs));
    if (p->loss >= 0) json_object_set_new(ev, "loss", json_real(p->loss));
    if (p->accuracy >= 0) json_object_set_new(ev, "accuracy", json_real(p->accuracy));
    if (p->val_accuracy >= 0) json_object_set_new(ev, "val_accuracy", json_real(p->val_accuracy));
    if (p->images_per_second >= 0) json_object_set_new(ev, "images_per_second", json_real(p->images_per_second));
    if (p->eta_seconds >= 0) json_object_set_new(ev, "eta_seconds", json_real(p->eta_seconds));
    record(run, ev, progress);
  }
  pthread_mutex_unlock(&run->mu);
}

static kiln_train_options train_options(kiln_studio *st, json_t *settings, bool detect) {
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
  o.threads = st->opt.train_threads;
  if ((v = json_object_get(settings, "threads")) && json_integer_value(v) > 0)
    o.threads = (int32_t)json_integer_value(v);
  return o;
}

/* The job's frozen dataset: made once, atomically (a renamed folder). */
static kiln_status job_dataset(job_run *run, const char *job_dir, char *dataset_dir, size_t n,
                               kiln_error *err) {
  snprintf(dataset_dir, n, "%s/dataset", job_dir);
  struct stat sb;
  if (stat(dataset_dir, &sb) == 0) return KILN_OK;
  char tmp[STUDIO_PATH_MAX], hash[STUDIO_HASH_HEX + 1];
  snprintf(tmp, sizeof tmp, "%s/dataset.tmp", job_dir);
  studio_rmtree(tmp);
  kiln_status s = studio_snapshot(run->st, run->db, run->job->project, tmp, hash, err);
  if (s == KILN_OK && rename(tmp, dataset_dir) != 0)
    s = kiln_fail(err, KILN_ERR_IO, "%s: cannot rename: %s", tmp, strerror(errno));
  if (s == KILN_OK) s = studio_fsync_dir(job_dir, err);
  return s;
}

static const char *const artifact_names[] = {"model_float.tflite", "model_int8.tflite", "labels.txt",
                                             "report.json"};
#define N_ARTIFACTS 4

/* Stores the artifacts and the model version; marks the job done. */
static kiln_status publish(job_run *run, const char *job_dir, const kiln_train_result *res,
                           kiln_error *err) {
  char hashes[N_ARTIFACTS][STUDIO_HASH_HEX + 1], dataset_hash[STUDIO_HASH_HEX + 1], path[STUDIO_PATH_MAX];
  uint64_t sizes[N_ARTIFACTS], dsize;
  kiln_status s = KILN_OK;
  for (int i = 0; i < N_ARTIFACTS && s == KILN_OK; i++) {
    snprintf(path, sizeof path, "%s/out/%s", job_dir, artifact_names[i]);
    s = studio_blob_put_file(run->st->data_dir, path, hashes[i], &sizes[i], err);
  }
  snprintf(path, sizeof path, "%s/dataset/dataset.json", job_dir);
  if (s == KILN_OK) s = studio_blob_put_file(run->st->data_dir, path, dataset_hash, &dsize, err);
  if (s != KILN_OK) return s;
  int64_t model = studio_new_id(), now = studio_now_us();
  json_t *metrics = json_pack("{s:f, s:f, s:I, s:b}", "float_accuracy", res->float_accuracy, "int8_accuracy",
                              res->int8_accuracy, "epochs", (json_int_t)res->epochs_done, "resumed", res->resumed);
  char *metrics_text = json_dumps(metrics, JSON_COMPACT);
  json_decref(metrics);
  sqlite3 *db = run->db;
  sqlite3_stmt *q;
  s = studio_db_begin(db, err);
  for (int i = -1; i < N_ARTIFACTS && s == KILN_OK; i++) {
    if (sqlite3_prepare_v2(db, "INSERT INTO blobs (hash, size, created_at) VALUES (?, ?, ?) ON CONFLICT (hash) DO NOTHING",
                           -1, &q, NULL) != SQLITE_OK) {
      s = studio_db_fail(db, err, "recording a blob");
      break;
    }
    sqlite3_bind_text(q, 1, i < 0 ? dataset_hash : hashes[i], -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(q, 2, (int64_t)(i < 0 ? dsize : sizes[i]));
    sqlite3_bind_int64(q, 3, now);
    if (sqlite3_step(q) != SQLITE_DONE) s = studio_db_fail(db, err, "recording a blob");
    sqlite3_finalize(q);
  }
  if (s == KILN_OK && sqlite3_prepare_v2(db,
                                         "INSERT INTO model_versions (id, project_id, job_id, dataset_hash, settings,"
                                         " metrics, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                                         -1, &q, NULL) == SQLITE_OK) {
    sqlite3_bind_int64(q, 1, model);
    sqlite3_bind_int64(q, 2, run->job->project);
    sqlite3_bind_int64(q, 3, run->job->id);
    sqlite3_bind_text(q, 4, dataset_hash, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(q, 5, run->job->settings, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(q, 6, metrics_text ? metrics_text : "{}", -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(q, 7, now);
    if (sqlite3_step(q) != SQLITE_DONE) s = studio_db_fail(db, err, "recording a model");
    sqlite3_finalize(q);
  } else if (s == KILN_OK) {
    s = studio_db_fail(db, err, "recording a model");
  }
  for (int i = 0; i < N_ARTIFACTS && s == KILN_OK; i++) {
    if (sqlite3_prepare_v2(db, "INSERT INTO model_artifacts (model_id, name, blob_hash, size) VALUES (?, ?, ?, ?)",
                           -1, &q, NULL) != SQLITE_OK) {
      s = studio_db_fail(db, err, "recording an artifact");
      break;
    }
    sqlite3_bind_int64(q, 1, model);
    sqlite3_bind_text(q, 2, artifact_names[i], -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 3, hashes[i], -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(q, 4, (int64_t)sizes[i]);
    if (sqlite3_step(q) != SQLITE_DONE) s = studio_db_fail(db, err, "recording an artifact");
    sqlite3_finalize(q);
  }
  if (s == KILN_OK) s = studio_job_finish(db, run->job->id, run->owner, "done", "", model, err);
  if (s == KILN_OK) s = studio_db_commit(db, err);
  else studio_db_rollback(db);
  free(metrics_text);
  return s;
}

static void run_train(job_run *run) {
  kiln_error err = {0};
  char job_dir[STUDIO_PATH_MAX], dataset_dir[STUDIO_PATH_MAX], out_dir[STUDIO_PATH_MAX];
  snprintf(job_dir, sizeof job_dir, "%s/jobs/%lld", run->st->data_dir, (long long)run->job->id);
  snprintf(out_dir, sizeof out_dir, "%s/out", job_dir);
  record(run, json_pack("{s:s, s:i, s:b}", "event", "start", "attempt", run->job->attempts, "resumed",
                        run->job->attempts > 1),
         -1);
  json_t *settings = json_loads(run->job->settings, 0, NULL);
  kiln_dataset *ds = NULL;
  kiln_status s = studio_mkdirs(job_dir, &err);
  if (s == KILN_OK) s = job_dataset(run, job_dir, dataset_dir, sizeof dataset_dir, &err);
  if (s == KILN_OK) { /* checkpoints a remote worker (api_worker.c) uploaded */
    char ckpt_dir[STUDIO_PATH_MAX + 16];
    snprintf(ckpt_dir, sizeof ckpt_dir, "%s/checkpoints", out_dir);
    s = studio_job_restore_checkpoints(run->db, run->st->data_dir, run->job->id, ckpt_dir, &err);
  }
  if (s == KILN_OK) {
    kiln_data_options dopt = kiln_data_options_default();
    dopt.format = KILN_DATA_KILN;
    s = kiln_data_import(dataset_dir, &dopt, &ds, &err);
  }
  kiln_train_result res = {0};
  if (s == KILN_OK) {
    kiln_train_options o = train_options(run->st, settings, ds->task == KILN_TASK_DETECT);
    o.out_dir = out_dir;
    o.data_path = dataset_dir;
    o.on_progress = on_progress;
    o.ctx = run;
    o.stop = &run->stop;
    s = kiln_train_run(ds, &o, &res, &err);
  }
  kiln_dataset_free(ds);
  json_decref(settings);
  if (run->lost) return; /* another worker has the job now */
  kiln_error ferr = {0};
  kiln_status fs = KILN_OK;
  if (s != KILN_OK) {
    record(run, json_pack("{s:s, s:s}", "event", "failed", "message", err.msg), -1);
    fs = studio_job_finish(run->db, run->job->id, run->owner, "failed", err.msg, 0, &ferr);
  } else if (res.interrupted) {
    bool cancel = run->canceled;
    record(run, json_pack("{s:s}", "event", cancel ? "canceled" : "paused"), -1);
    fs = studio_job_finish(run->db, run->job->id, run->owner, cancel ? "canceled" : "queued",
                           cancel ? "canceled" : "the studio stopped; resumes from its checkpoint", 0, &ferr);
  } else {
    record(run, json_pack("{s:s, s:s, s:f}", "event", "done", "phase", "done", "progress", 1.0), 1.0);
    fs = publish(run, job_dir, &res, &ferr);
    if (fs != KILN_OK) record(run, json_pack("{s:s, s:s}", "event", "failed", "message", ferr.msg), -1);
    if (fs != KILN_OK) fs = studio_job_finish(run->db, run->job->id, run->owner, "failed", ferr.msg, 0, &ferr);
  }
  if (fs != KILN_OK) fprintf(stderr, "kiln studio: job %lld: %s\n", (long long)run->job->id, ferr.msg);
}

/* The artifact's blob path of a model version of the job's project. */
static bool artifact_path(job_run *run, int64_t model, const char *name, char *out, size_t n) {
  sqlite3_stmt *q;
  bool found = false;
  if (sqlite3_prepare_v2(run->db,
                         "SELECT a.blob_hash FROM model_artifacts a JOIN model_versions m ON m.id = a.model_id"
                         " WHERE a.model_id = ? AND a.name = ? AND m.project_id = ?",
                         -1, &q, NULL) != SQLITE_OK)
    return false;
  sqlite3_bind_int64(q, 1, model);
  sqlite3_bind_text(q, 2, name, -1, SQLITE_STATIC);
  sqlite3_bind_int64(q, 3, run->job->project);
  if (sqlite3_step(q) == SQLITE_ROW) {
    studio_blob_path(run->st->data_dir, studio_col_text(q, 0), out, n);
    found = true;
  }
  sqlite3_finalize(q);
  return found;
}

/* An evaluate job: a model version on the project's current images (the
 * trainer's splits), classification metrics or COCO mAP as the result. */
static kiln_status evaluate(job_run *run, const char *job_dir, json_t *settings, json_t **result,
                            kiln_error *err) {
  int64_t model_id = json_integer_value(json_object_get(settings, "model_id"));
  const char *which = json_string_value(json_object_get(settings, "model"));
  const char *split = json_string_value(json_object_get(settings, "split"));
  if (!which) which = "int8";
  if (!split) split = "test";
  char path[STUDIO_PATH_MAX], dataset_dir[STUDIO_PATH_MAX], name[64];
  snprintf(name, sizeof name, "model_%s.tflite", which);
  if (!artifact_path(run, model_id, name, path, sizeof path))
    return kiln_fail(err, KILN_ERR_INVALID_ARG, "model %lld has no %s", (long long)model_id, name);
  kiln_dataset *ds = NULL;
  kiln_model *model = NULL;
  kiln_status s = job_dataset(run, job_dir, dataset_dir, sizeof dataset_dir, err);
  if (s == KILN_OK) {
    kiln_data_options dopt = kiln_data_options_default();
    dopt.format = KILN_DATA_KILN;
    s = kiln_data_import(dataset_dir, &dopt, &ds, err);
  }
  if (s == KILN_OK) s = kiln_trainer_prepare_splits(ds, err);
  if (s == KILN_OK) s = kiln_model_load(path, &model, err);
  kiln_model_eval_options eo = {0};
  eo.split = !strcmp(split, "all") ? -1 : !strcmp(split, "train") ? KILN_SPLIT_TRAIN
             : !strcmp(split, "val") ? KILN_SPLIT_VAL : KILN_SPLIT_TEST;
  eo.threads = run->st->opt.train_threads;
  eo.on_progress = on_progress;
  eo.ctx = run;
  json_t *metrics = NULL;
  if (s == KILN_OK && ds->task == KILN_TASK_DETECT) {
    kiln_eval_detection d = {0};
    s = kiln_trainer_eval_detector(model, ds, &eo, &d, err);
    if (s == KILN_OK) s = kiln_eval_detection_to_json(&d, (const char *const *)ds->labels, &metrics, err);
    kiln_eval_detection_free(&d);
  } else if (s == KILN_OK) {
    kiln_eval_classification c = {0};
    s = kiln_trainer_eval_classifier(model, ds, &eo, &c, err);
    if (s == KILN_OK) s = kiln_eval_classification_to_json(&c, (const char *const *)ds->labels, &metrics, err);
    kiln_eval_classification_free(&c);
  }
  if (s == KILN_OK)
    *result = json_pack("{s:I, s:s, s:s, s:o}", "model_id", (json_int_t)model_id, "model", which, "split", split,
                        "evaluation", metrics);
  kiln_model_free(model);
  kiln_dataset_free(ds);
  return s;
}

static void run_evaluate(job_run *run) {
  kiln_error err = {0}, ferr = {0};
  char job_dir[STUDIO_PATH_MAX];
  snprintf(job_dir, sizeof job_dir, "%s/jobs/%lld", run->st->data_dir, (long long)run->job->id);
  record(run, json_pack("{s:s, s:i, s:b}", "event", "start", "attempt", run->job->attempts, "resumed", false), -1);
  json_t *settings = json_loads(run->job->settings, 0, NULL), *result = NULL;
  kiln_status s = studio_mkdirs(job_dir, &err);
  if (s == KILN_OK) s = evaluate(run, job_dir, settings, &result, &err);
  json_decref(settings);
  if (run->lost) {
    json_decref(result);
    return;
  }
  char *text = result ? json_dumps(result, JSON_COMPACT) : NULL;
  json_decref(result);
  kiln_status fs;
  if (s == KILN_OK && text) {
    record(run, json_pack("{s:s, s:s, s:f}", "event", "done", "phase", "done", "progress", 1.0), 1.0);
    fs = studio_job_set_result(run->db, run->job->id, text, &ferr);
    if (fs == KILN_OK) fs = studio_job_finish(run->db, run->job->id, run->owner, "done", "", 0, &ferr);
  } else {
    if (s == KILN_OK) kiln_fail(&err, KILN_ERR_NOMEM, "out of memory");
    record(run, json_pack("{s:s, s:s}", "event", "failed", "message", err.msg), -1);
    fs = studio_job_finish(run->db, run->job->id, run->owner, "failed", err.msg, 0, &ferr);
  }
  free(text);
  if (fs != KILN_OK) fprintf(stderr, "kiln studio: job %lld: %s\n", (long long)run->job->id, ferr.msg);
}

typedef struct worker {
  kiln_studio *st;
  int32_t index;
} worker;

static void *worker_main(void *arg) {
  worker *w = arg;
  kiln_studio *st = w->st;
  const int32_t index = w->index;
  kiln_free(w);
  char owner[96];
  snprintf(owner, sizeof owner, "%s/%d", st->instance, index);
  int64_t lease_us = (int64_t)(st->opt.lease_seconds > 0 ? st->opt.lease_seconds : 60) * 1000000;
  kiln_error err = {0};
  sqlite3 *db = NULL;
  if (studio_db_open(st->db_path, &db, &err) != KILN_OK) {
    fprintf(stderr, "kiln studio: worker %d: %s\n", index, err.msg);
    return NULL;
  }
  while (!atomic_load(&st->stopping)) {
    studio_job job;
    bool got = false;
    if (studio_job_lease(db, owner, studio_now_us(), lease_us, &job, &got, &err) != KILN_OK)
      fprintf(stderr, "kiln studio: worker %d: %s\n", index, err.msg);
    if (!got) {
      struct timespec ts = {0, 250 * 1000000L};
      nanosleep(&ts, NULL);
      continue;
    }
    job_run run = {.st = st, .db = db, .owner = owner, .job = &job, .lease_us = lease_us};
    pthread_mutex_init(&run.mu, NULL);
    run.last_beat = studio_now_us();
    if (strcmp(job.kind, "train") == 0) {
      run_train(&run);
    } else if (strcmp(job.kind, "evaluate") == 0) {
      run_evaluate(&run);
    } else {
      kiln_error ferr = {0};
      studio_job_finish(db, job.id, owner, "failed", "this job kind is not available in this build", 0, &ferr);
    }
    pthread_mutex_destroy(&run.mu);
    studio_job_clear(&job);
  }
  sqlite3_close(db);
  return NULL;
}

kiln_status studio_workers_start(kiln_studio *st, kiln_error *err) {
  int32_t n = st->opt.workers;
  if (n <= 0) return KILN_OK;
  st->workers = kiln_calloc((size_t)n, sizeof *st->workers);
  if (!st->workers) return kiln_fail(err, KILN_ERR_NOMEM, "out of memory");
  for (int32_t i = 0; i < n; i++) {
    worker *w = kiln_malloc(sizeof *w);
    if (!w) return kiln_fail(err, KILN_ERR_NOMEM, "out of memory");
    w->st = st;
    w->index = i;
    if (pthread_create(&st->workers[i], NULL, worker_main, w) != 0) {
      kiln_free(w);
      return kiln_fail(err, KILN_ERR_IO, "cannot start worker thread %d", i);
    }
    st->n_workers = i + 1;
  }
  return KILN_OK;
}

void studio_workers_join(kiln_studio *st) {
  for (int32_t i = 0; i < st->n_workers; i++) pthread_join(st->workers[i], NULL);
  kiln_free(st->workers);
  st->workers = NULL;
  st->n_workers = 0;
}
