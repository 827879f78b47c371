/* kiln studio: runs the web retraining system's server (kiln/studio.h does
 * the work; this file parses flags, prints the URL and turns SIGINT /
 * SIGTERM into an orderly stop). */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "kiln/studio.h"

static const char *help =
    "usage: kiln studio [--host ADDR] [--port N] [--data DIR] [--db sqlite:PATH]\n"
    "                   [--workers N] [--train-threads N] [--lease-seconds N] [--routes]\n\n"
    "Runs kiln studio: accounts, projects, uploads, datasets, training jobs and model\n"
    "downloads behind a JSON REST API (docs/api.md). Prints the URL, then serves until\n"
    "SIGINT or SIGTERM; running jobs then checkpoint and resume at the next start.\n"
    "The first request should be POST /api/setup, which creates the administrator.\n\n"
    "  --host ADDR         IPv4 address to listen on (default 127.0.0.1)\n"
    "  --port N            port (default 8080; 0: any free port)\n"
    "  --data DIR          data directory: blobs, jobs, database (default kiln-studio)\n"
    "  --db sqlite:PATH    the database (default sqlite:DIR/studio.db)\n"
    "  --workers N         in-process job workers (default 1; 0: queue only)\n"
    "  --train-threads N   threads per training job (default: all cores)\n"
    "  --lease-seconds N   a job's lease, renewed while it runs; a job whose worker\n"
    "                      died is taken over after it (default 60)\n"
    "  --routes            print the API's routes and exit\n";

int cmd_studio(int argc, char **argv) {
  kiln_studio_options opt = kiln_studio_options_default();
  cli_args c = {argc, argv, 1, "studio"};
  const char *v;
  bool bad = false;
  int64_t n;
  while (c.i < argc) {
    if (cli_flag(&c, "--help") || cli_flag(&c, "-h")) {
      fputs(help, stdout);
      return CLI_OK;
    }
    if (cli_flag(&c, "--routes")) {
      const char *method;
      for (int32_t i = 0; (v = kiln_studio_route(i, &method)) != NULL; i++) printf("%s %s\n", method, v);
      return CLI_OK;
    }
    if (cli_flag_value(&c, "--host", &v, &bad)) {
      opt.host = v;
    } else if (cli_flag_value(&c, "--port", &v, &bad)) {
      if (!bad && !cli_parse_int("studio", "--port", v, 0, 65535, &n)) return CLI_USAGE;
      opt.port = (int32_t)n;
    } else if (cli_flag_value(&c, "--data", &v, &bad)) {
      opt.data_dir = v;
    } else if (cli_flag_value(&c, "--db", &v, &bad)) {
      opt.db = v;
    } else if (cli_flag_value(&c, "--workers", &v, &bad)) {
      if (!bad && !cli_parse_int("studio", "--workers", v, 0, 64, &n)) return CLI_USAGE;
      opt.workers = (int32_t)n;
    } else if (cli_flag_value(&c, "--train-threads", &v, &bad)) {
      if (!bad && !cli_parse_int("studio", "--train-threads", v, 1, 1024, &n)) return CLI_USAGE;
      opt.train_threads = (int32_t)n;
    } else if (cli_flag_value(&c, "--lease-seconds", &v, &bad)) {
      if (!bad && !cli_parse_int("studio", "--lease-seconds", v, 1, 86400, &n)) return CLI_USAGE;
      opt.lease_seconds = (int32_t)n;
    } else {
      return cli_usage_error("studio", "unknown argument '%s'", argv[c.i]);
    }
    if (bad) return CLI_USAGE;
  }
  /* Block the stop signals in every thread (the studio's threads inherit the
   * mask) and wait for them here, so whichever thread the kernel picks, the
   * main thread sees the signal. */
  sigset_t stop_set;
  sigemptyset(&stop_set);
  sigaddset(&stop_set, SIGINT);
  sigaddset(&stop_set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_set, NULL);
  signal(SIGPIPE, SIG_IGN);
  kiln_studio *st = NULL;
  kiln_error err = {0};
  if (kiln_studio_start(&opt, &st, &err) != KILN_OK) return cli_error("studio", &err);
  printf("kiln studio: serving on %s\n", kiln_studio_url(st));
  fflush(stdout);
  int sig = 0;
  sigwait(&stop_set, &sig);
  fprintf(stderr, "kiln studio: stopping (jobs checkpoint and go back to the queue)\n");
  kiln_studio_stop(st);
  return CLI_OK;
}
