/*
 * cli/cli.h: shared pieces of the kiln command-line tool. The CLI is a thin
 * face: it parses flags, calls the library and prints. Only the CLI prints
 * errors and chooses exit codes (0 ok, 1 failure, 2 usage).
 */
#ifndef KILN_CLI_H
#define KILN_CLI_H

#include <stdbool.h>
#include <stdint.h>

#include "kiln/base.h"

#define CLI_OK 0
#define CLI_FAIL 1
#define CLI_USAGE 2

/* Argument cursor over argv for one command. */
typedef struct cli_args {
  int argc;
  char **argv;
  int i;
  const char *cmd; /* for messages */
} cli_args;

/* True if argv[i] is the flag `name` (also "--name=value"); *value gets the
 * value (the next argument or the part after '='). Advances the cursor.
 * Prints a usage error and sets *bad when the value is missing. */
bool cli_flag_value(cli_args *a, const char *name, const char **value, bool *bad);
/* True if argv[i] is the switch `name` (no value). Advances the cursor. */
bool cli_flag(cli_args *a, const char *name);
bool cli_parse_int(const char *cmd, const char *flag, const char *s, int64_t lo, int64_t hi,
                   int64_t *out);
bool cli_parse_float(const char *cmd, const char *flag, const char *s, float *out);

/* Prints "kiln CMD: message" to stderr; returns CLI_FAIL. */
int cli_error(const char *cmd, const kiln_error *err);
/* Prints "kiln CMD: <formatted>" plus a hint to run --help; returns CLI_USAGE. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Default locations of the shared models and photo: $KILN_MODELS (default
 * ../shared/models) and its sibling images/ folder. */
const char *cli_models_dir(void);
/* Joins dir and name into a static buffer (one per slot 0..3). */
const char *cli_path_join(int slot, const char *dir, const char *name);

int cmd_inspect(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_classify(int argc, char **argv);
int cmd_detect(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_data(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_studio(int argc, char **argv);
int cmd_worker(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_compile(int argc, char **argv);
int cmd_imprint(int argc, char **argv);
int cmd_retrain_last(int argc, char **argv);
int cmd_package(int argc, char **argv);
int cmd_health(int argc, char **argv);

#endif
