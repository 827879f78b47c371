/* kiln worker: runs a studio's training jobs on this machine through the
 * studio's HTTP API (kiln/worker.h does the work; this file parses flags
 * and turns SIGINT / SIGTERM into an orderly stop: the running job
 * checkpoints and goes back to the queue). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "kiln/worker.h"

static const char *help =
    "usage: kiln worker --studio URL --token T [--threads N] [--work-dir DIR]\n"
    "                   [--name NAME] [--poll-ms N] [--max-jobs N] [--verbose]\n\n"
    "Runs kiln studio's training jobs on this machine: leases a job, downloads its\n"
    "dataset and the last checkpoint, trains, heartbeats and streams progress,\n"
    "uploads checkpoints and the model, and completes the job; then the next one.\n"
    "A job whose worker dies is leased again by another worker and resumes from its\n"
    "last uploaded checkpoint. SIGINT / SIGTERM: the running job checkpoints and goes\n"
    "back to the queue. An administrator makes the token: POST /api/worker-tokens.\n\n"
    "  --studio URL      the studio, e.g. http://studio:8080/\n"
    "  --token T         a worker token (or the KILN_WORKER_TOKEN environment variable)\n"
    "  --threads N       training threads (default: the job's setting, else all cores)\n"
    "  --work-dir DIR    datasets and checkpoints (default kiln-worker)\n"
    "  --name NAME       this worker's name (default HOSTNAME-PID)\n"
    "  --poll-ms N       wait between empty leases (default 1000)\n"
    "  --max-jobs N      exit after N jobs (default: run until stopped)\n"
    "  --verbose         log each job on stderr\n";

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig) {
  (void)sig;
  stop_flag = 1;
}

int cmd_worker(int argc, char **argv) {
  kiln_worker_options o = kiln_worker_options_default();
  o.token = getenv("KILN_WORKER_TOKEN");
  cli_args c = {argc, argv, 1, "worker"};
  const char *v;
  bool bad = false;
  int64_t n;
  while (c.i < argc) {
    if (cli_flag(&c, "--help") || cli_flag(&c, "-h")) {
      fputs(help, stdout);
      return CLI_OK;
    }
    if (cli_flag(&c, "--verbose")) {
      o.verbose = 1;
      continue;
    }
    if (cli_flag_value(&c, "--studio", &v, &bad)) {
      o.studio_url = v;
    } else if (cli_flag_value(&c, "--token", &v, &bad)) {
      o.token = v;
    } else if (cli_flag_value(&c, "--work-dir", &v, &bad)) {
      o.work_dir = v;
    } else if (cli_flag_value(&c, "--name", &v, &bad)) {
      o.name = v;
    } else if (cli_flag_value(&c, "--threads", &v, &bad)) {
      if (!bad && !cli_parse_int("worker", "--threads", v, 1, 1024, &n)) return CLI_USAGE;
      o.threads = (int32_t)n;
    } else if (cli_flag_value(&c, "--poll-ms", &v, &bad)) {
      if (!bad && !cli_parse_int("worker", "--poll-ms", v, 10, 600000, &n)) return CLI_USAGE;
      o.poll_ms = (int32_t)n;
    } else if (cli_flag_value(&c, "--max-jobs", &v, &bad)) {
      if (!bad && !cli_parse_int("worker", "--max-jobs", v, 1, 1000000, &n)) return CLI_USAGE;
      o.max_jobs = (int32_t)n;
    } else {
      return cli_usage_error("worker", "unknown argument '%s'", argv[c.i]);
    }
    if (bad) return CLI_USAGE;
  }
  if (!o.studio_url) return cli_usage_error("worker", "--studio URL is required");
  if (!o.token) return cli_usage_error("worker", "--token T (or KILN_WORKER_TOKEN) is required");
  if (strncmp(o.studio_url, "http://", 7) != 0 && strncmp(o.studio_url, "https://", 8) != 0)
    return cli_usage_error("worker", "--studio '%s': an http:// or https:// URL is needed", o.studio_url);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
  o.stop = &stop_flag;
  kiln_error err = {0};
  if (kiln_worker_run(&o, &err) != KILN_OK) return cli_error("worker", &err);
  return CLI_OK;
}
