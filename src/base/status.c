/* Status names and error-message formatting (see kiln/base.h). */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "kiln/base.h"

const char *kiln_status_str(kiln_status status) {
  switch (status) {
    case KILN_OK: return "ok";
    case KILN_ERR_IO: return "i/o error";
    case KILN_ERR_FORMAT: return "format error";
    case KILN_ERR_UNSUPPORTED: return "unsupported";
    case KILN_ERR_INVALID_ARG: return "invalid argument";
    case KILN_ERR_NOMEM: return "out of memory";
    case KILN_ERR_LIMIT: return "limit exceeded";
    case KILN_ERR_INTERNAL: return "internal error";
  }
  return "unknown status";
}

kiln_status kiln_fail(kiln_error *err, kiln_status status, const char *fmt, ...) {
  if (err) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    err->status = status;
  }
  return status;
}

void kiln_error_prefix(kiln_error *err, const char *fmt, ...) {
  if (!err) return;
  char prefix[KILN_ERROR_MSG_MAX];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(prefix, sizeof prefix, fmt, ap);
  va_end(ap);
  char joined[KILN_ERROR_MSG_MAX];
  snprintf(joined, sizeof joined, "%s: %s", prefix, err->msg);
  memcpy(err->msg, joined, sizeof joined);
}
