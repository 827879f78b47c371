/* Shared CLI helpers (see cli/cli.h). */
#include "cli/cli.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool cli_flag_value(cli_args *a, const char *name, const char **value, bool *bad) {
  const char *arg = a->argv[a->i];
  size_t n = strlen(name);
  if (strncmp(arg, name, n) != 0) return false;
  if (arg[n] == '=') {
    *value = arg + n + 1;
    a->i++;
    return true;
  }
  if (arg[n] != '\0') return false;
  if (a->i + 1 >= a->argc) {
    cli_usage_error(a->cmd, "%s needs a value", name);
    *bad = true;
    a->i++;
    return true;
  }
  *value = a->argv[a->i + 1];
  a->i += 2;
  return true;
}

bool cli_flag(cli_args *a, const char *name) {
  if (strcmp(a->argv[a->i], name) != 0) return false;
  a->i++;
  return true;
}

bool cli_parse_int(const char *cmd, const char *flag, const char *s, int64_t lo, int64_t hi,
                   int64_t *out) {
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno || end == s || *end || v < lo || v > hi) {
    cli_usage_error(cmd, "%s: '%s' is not an integer in %lld..%lld", flag, s, (long long)lo,
                    (long long)hi);
    return false;
  }
  *out = v;
  return true;
}

bool cli_parse_float(const char *cmd, const char *flag, const char *s, float *out) {
  char *end;
  errno = 0;
  float v = strtof(s, &end);
  if (errno || end == s || *end || !isfinite(v)) {
    cli_usage_error(cmd, "%s: '%s' is not a number", flag, s);
    return false;
  }
  *out = v;
  return true;
}

int cli_error(const char *cmd, const kiln_error *err) {
  fprintf(stderr, "kiln %s: %s\n", cmd, err->msg);
  return CLI_FAIL;
}

int cli_usage_error(const char *cmd, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "kiln %s: ", cmd);
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n(see 'kiln %s --help')\n", cmd);
  va_end(ap);
  return CLI_USAGE;
}

const char *cli_models_dir(void) {
  const char *d = getenv("KILN_MODELS");
  return d && *d ? d : "../shared/models";
}

const char *cli_path_join(int slot, const char *dir, const char *name) {
  static char buf[4][4096];
  snprintf(buf[slot & 3], sizeof buf[0], "%s/%s", dir, name);
  return buf[slot & 3];
}
