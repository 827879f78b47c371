/*
 * kiln/studio.h: the studio server, kiln's web-based retraining system
 * (`kiln studio`): accounts, projects, uploads into a content-addressed
 * blob store, datasets, a durable job queue run by worker threads, model
 * versions and their downloads, all behind a JSON REST API (docs/api.md).
 *
 *   kiln_studio_options opt = kiln_studio_options_default();
 *   opt.data_dir = "studio-data";     // blobs/, jobs/, tmp/ and studio.db
 *   opt.port = 8080;                  // 0: any free port
 *   kiln_studio *st;
 *   if (kiln_studio_start(&opt, &st, &err) != KILN_OK) ...
 *   printf("%s\n", kiln_studio_url(st));
 *   ... wait for a signal ...
 *   kiln_studio_stop(st);             // running jobs checkpoint and go back to the queue
 *
 * Durability: an upload is acknowledged only after its bytes are in the
 * blob store (temporary file, fsync, rename, fsync of the directory) and
 * its database rows are committed. Jobs live in the database: a job whose
 * worker stops or dies is leased again when its lease runs out and resumes
 * from the trainer's last checkpoint.
 *
 * One studio process per data directory (DATA/tmp is its scratch space,
 * emptied at start).
 *
 * Threads: the HTTP server runs one thread per connection; each worker
 * thread runs one job at a time. The database is SQLite in WAL mode; the
 * schema is portable SQL so that PostgreSQL can hold it later.
 */
#ifndef KILN_STUDIO_H
#define KILN_STUDIO_H

#include <stdint.h>

#include "kiln/base.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kiln_studio kiln_studio;

typedef struct kiln_studio_options {
  const char *host;     /* address to listen on; "127.0.0.1" by default */
  int32_t port;         /* 0: a free port (kiln_studio_url tells which) */
  const char *data_dir; /* created when missing; "kiln-studio" by default */
  const char *db;       /* "sqlite:PATH"; NULL: sqlite:DATA_DIR/studio.db */
  int32_t workers;      /* in-process job worker threads; 0: none */
  int32_t train_threads;/* threads each training job uses; 0: all cores */
  int32_t lease_seconds;/* a job's lease; a worker renews it while it runs; 0: 60 */
} kiln_studio_options;

/* host 127.0.0.1, port 8080, data_dir "kiln-studio", db NULL, workers 1. */
kiln_studio_options kiln_studio_options_default(void);

/* Opens (creating) the data directory and the database, runs the schema
 * migrations, starts the worker threads and the HTTP server.
 * @retval KILN_ERR_INVALID_ARG  a bad option (an unknown db scheme, port
 *   out of range, negative workers)
 * @retval KILN_ERR_IO  the directory, the database or the listening socket
 *   could not be set up (the message names which and why)
 * @retval KILN_ERR_FORMAT  the database holds a newer schema than this
 *   build knows */
kiln_status kiln_studio_start(const kiln_studio_options *options, kiln_studio **out,
                              kiln_error *err);

/* "http://HOST:PORT/" with the port actually bound. Valid until stop. */
const char *kiln_studio_url(const kiln_studio *studio);

/* Stops accepting requests, asks running jobs to checkpoint and puts them
 * back in the queue, joins every thread and frees everything. NULL is
 * fine. */
void kiln_studio_stop(kiln_studio *studio);

/* The API's routes: the path pattern of route index ("/api/jobs/{id}")
 * and its method in *method; NULL past the last. */
const char *kiln_studio_route(int32_t index, const char **method);

#ifdef __cplusplus
}
#endif
#endif
