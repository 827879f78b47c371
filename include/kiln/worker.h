/*
 * kiln/worker.h: a remote worker (`kiln worker`): runs a studio's training
 * jobs on another machine through the studio's HTTP API (docs/api.md,
 * "Remote workers"), so that training scales past the studio's machine.
 *
 *   kiln_worker_options o = kiln_worker_options_default();
 *   o.studio_url = "http://studio:8080/";
 *   o.token = "kt_...";             // a worker token (POST /api/worker-tokens)
 *   o.work_dir = "/var/lib/kiln-worker";
 *   o.stop = &stop_flag;            // set from a signal handler to stop
 *   if (kiln_worker_run(&o, &err) != KILN_OK) ...
 *
 * The loop: lease a train job (atomic in the studio's database), download
 * the job's dataset snapshot and the checkpoints an earlier attempt
 * uploaded, train with kiln_train_run (resuming from those checkpoints),
 * heartbeat while training (the lease is renewed; a cancel stops the run),
 * post progress events (the studio stores them and streams them as SSE),
 * upload each new checkpoint, then upload the artifacts and complete the
 * job (or fail it). A worker killed mid-training loses only the work since
 * its last uploaded checkpoint: the job's lease runs out and another worker
 * leases it and resumes. Stopping (*stop set) checkpoints the running job,
 * uploads the checkpoint and gives the job back to the queue.
 */
#ifndef KILN_WORKER_H
#define KILN_WORKER_H

#include <signal.h>
#include <stdint.h>

#include "kiln/base.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kiln_worker_options {
  const char *studio_url;      /* "http://HOST:PORT/" (required) */
  const char *token;           /* a worker-scoped API token (required) */
  const char *name;            /* this worker's name; NULL: "<hostname>-<pid>" */
  const char *work_dir;        /* datasets and checkpoints; NULL: "kiln-worker" */
  int32_t threads;             /* training threads; 0: the job's setting, else all cores */
  int32_t poll_ms;             /* wait between empty leases; 0: 1000 */
  int32_t max_jobs;            /* stop after this many jobs; 0: never */
  volatile sig_atomic_t *stop; /* non-zero: give the running job back and return */
  int verbose;                 /* log each job to stderr */
} kiln_worker_options;

kiln_worker_options kiln_worker_options_default(void);

/* Runs jobs until *stop is set (or max_jobs ran). The studio being
 * unreachable is not an error: the worker retries.
 * @retval KILN_ERR_INVALID_ARG  no URL or token, or the studio refused the
 *   token (401/403: not a worker token)
 * @retval KILN_ERR_IO  the work directory cannot be made */
kiln_status kiln_worker_run(const kiln_worker_options *options, kiln_error *err);

#ifdef __cplusplus
}
#endif

#endif
