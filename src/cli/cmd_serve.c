/* kiln serve --model NAME=PATH[,labels=FILE] ...: the model server
 * (include/kiln/serve.h) until SIGTERM or Ctrl-C (drain, exit 0); SIGHUP
 * reloads the models from their files without dropping requests. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "kiln/serve.h"

static const char *help =
    "usage: kiln serve --model NAME=PATH[,labels=FILE] [--model ...] [--host ADDR] [--port N]\n"
    "                  [--threads N] [--interpreters K] [--queue Q] [--max-body BYTES]\n"
    "                  [--max-pixels N] [--timeout S]\n\n"
    "Serves models over HTTP: the Open Inference Protocol v2 (KServe, Triton, MLServer:\n"
    "/v2/health/live, /v2/health/ready, /v2, /v2/models/NAME, /v2/models/NAME/ready,\n"
    "POST /v2/models/NAME/infer with JSON or binary tensors), image endpoints\n"
    "POST /v1/models/NAME:classify and :detect (a JPEG/PNG body or a multipart 'file'\n"
    "part; answers as 'kiln classify/detect --json'; query top=, threshold=, max=),\n"
    "TF-Serving's POST /v1/models/NAME:predict ({\"instances\": [{\"b64\": ...}]}) and\n"
    "Prometheus metrics at /metrics. Prints 'listening on http://ADDR:PORT' when ready.\n"
    "SIGHUP reloads every model from its file (requests in flight finish on the old ones);\n"
    "SIGTERM or Ctrl-C stops accepting, answers what was received, and exits 0.\n\n"
    "  --model NAME=PATH[,labels=FILE]  a model and its URL name; repeat for more (labels:\n"
    "                                   default: those kiln embeds in the models it writes)\n"
    "  --host ADDR        address to listen on (default 127.0.0.1; 0.0.0.0 for all)\n"
    "  --port N           port (default 8500; 0: any free port)\n"
    "  --threads N        inference threads per model (default: all cores)\n"
    "  --interpreters K   interpreters per model sharing the threads (default: N, one\n"
    "                     thread each: the most throughput; 1 gives the least latency)\n"
    "  --queue Q          requests waiting per model beyond the running ones; more get\n"
    "                     503 with Retry-After (default 32)\n"
    "  --max-body BYTES   largest request body (default 16777216)\n"
    "  --max-pixels N     largest image, width x height (default 25000000)\n"
    "  --timeout S        close connections idle for S seconds (default 30)\n";

#define SERVE_CLI_MAX_MODELS 64

/* Signals arrive on whatever thread (libraries start threads of their
 * own), so the handler only writes the signal number to a pipe that the
 * main thread reads. */
static int signal_pipe[2] = {-1, -1};

static void on_signal(int sig) {
  unsigned char c = (unsigned char)sig;
  int saved = errno;
  ssize_t n = write(signal_pipe[1], &c, 1);
  (void)n;
  errno = saved;
}

static void log_line(void *ctx, const char *line) {
  (void)ctx;
  fprintf(stderr, "kiln serve: %s\n", line);
}

/* NAME=PATH[,labels=FILE]: splits spec in place. */
static bool parse_model(char *spec, kiln_serve_model *m) {
  char *eq = strchr(spec, '=');
  if (!eq || eq == spec || !eq[1]) return false;
  *eq = '\0';
  m->name = spec;
  m->path = eq + 1;
  char *comma = strstr(m->path, ",labels=");
  if (comma) {
    *comma = '\0';
    m->labels_path = comma + strlen(",labels=");
    if (!*m->labels_path) return false;
  }
  return *m->path != '\0';
}

static int parse_args(int argc, char **argv, kiln_serve_options *o, kiln_serve_model *models) {
  cli_args a = {argc, argv, 1, "serve"};
  const char *v;
  bool bad = false;
  int64_t n;
  while (a.i < argc) {
    if (cli_flag(&a, "--help") || cli_flag(&a, "-h")) {
      fputs(help, stdout);
      return -1;
    }
    if (cli_flag_value(&a, "--model", &v, &bad)) {
      if (bad) return CLI_USAGE;
      if (o->n_models == SERVE_CLI_MAX_MODELS)
        return cli_usage_error("serve", "at most %d models", SERVE_CLI_MAX_MODELS);
      if (!parse_model((char *)v, &models[o->n_models]))
        return cli_usage_error("serve", "--model '%s': want NAME=PATH or NAME=PATH,labels=FILE", v);
      o->n_models++;
    } else if (cli_flag_value(&a, "--host", &v, &bad)) {
      o->host = v;
    } else if (cli_flag_value(&a, "--port", &v, &bad)) {
      if (bad || !cli_parse_int("serve", "--port", v, 0, 65535, &n)) return CLI_USAGE;
      o->port = (int32_t)n;
    } else if (cli_flag_value(&a, "--threads", &v, &bad)) {
      if (bad || !cli_parse_int("serve", "--threads", v, 1, 1024, &n)) return CLI_USAGE;
      o->threads = (int32_t)n;
    } else if (cli_flag_value(&a, "--interpreters", &v, &bad)) {
      if (bad || !cli_parse_int("serve", "--interpreters", v, 1, 1024, &n)) return CLI_USAGE;
      o->interpreters = (int32_t)n;
    } else if (cli_flag_value(&a, "--queue", &v, &bad)) {
      if (bad || !cli_parse_int("serve", "--queue", v, 0, 1 << 20, &n)) return CLI_USAGE;
      o->queue = (int32_t)n;
    } else if (cli_flag_value(&a, "--max-body", &v, &bad)) {
      if (bad || !cli_parse_int("serve", "--max-body", v, 1, INT64_MAX, &o->max_body)) return CLI_USAGE;
    } else if (cli_flag_value(&a, "--max-pixels", &v, &bad)) {
      if (bad || !cli_parse_int("serve", "--max-pixels", v, 1, INT64_MAX, &o->max_pixels)) return CLI_USAGE;
    } else if (cli_flag_value(&a, "--timeout", &v, &bad)) {
      if (bad || !cli_parse_int("serve", "--timeout", v, 1, 86400, &n)) return CLI_USAGE;
      o->timeout_s = (int32_t)n;
    } else if (argv[a.i][0] == '-') {
      return cli_usage_error("serve", "unknown option '%s'", argv[a.i]);
    } else {
      return cli_usage_error("serve", "unexpected argument '%s' (models are given with --model)", argv[a.i]);
    }
    if (bad) return CLI_USAGE;
  }
  if (o->n_models == 0) return cli_usage_error("serve", "no models: give --model NAME=PATH");
  return CLI_OK;
}

int cmd_serve(int argc, char **argv) {
  kiln_serve_model models[SERVE_CLI_MAX_MODELS] = {0};
  kiln_serve_options opt = kiln_serve_options_default();
  opt.models = models;
  opt.log = log_line;
  int rc = parse_args(argc, argv, &opt, models);
  if (rc != CLI_OK) return rc < 0 ? CLI_OK : rc;

  if (pipe(signal_pipe) != 0) {
    perror("kiln serve: pipe");
    return CLI_FAIL;
  }
  struct sigaction sa = {.sa_handler = on_signal, .sa_flags = SA_RESTART};
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGHUP, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);

  kiln_error err;
  kiln_server *srv;
  if (kiln_server_start(&opt, &srv, &err) != KILN_OK) return cli_error("serve", &err);
  printf("kiln serve: listening on http://%s%s%s:%d\n", strchr(opt.host, ':') ? "[" : "", opt.host,
         strchr(opt.host, ':') ? "]" : "", (int)kiln_server_port(srv));
  fflush(stdout);
  for (;;) {
    unsigned char sig;
    ssize_t n = read(signal_pipe[0], &sig, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n != 1 || sig != SIGHUP) break;
    if (kiln_server_reload(srv, &err) == KILN_OK) fprintf(stderr, "kiln serve: models reloaded\n");
    else fprintf(stderr, "kiln serve: reload failed, still serving the previous models: %s\n", err.msg);
  }
  fprintf(stderr, "kiln serve: stopping: answering the requests in flight\n");
  kiln_server_stop(srv);
  fprintf(stderr, "kiln serve: stopped\n");
  return CLI_OK;
}
