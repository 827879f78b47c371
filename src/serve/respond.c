/* Responses of the model server: JSON bodies and {"error": "..."} with the
 * status that fits the library's error. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "serve/serve_int.h"

void serve_response_clear(serve_response *resp) {
  if (resp->body && resp->free_body) resp->free_body(resp->body);
  *resp = (serve_response){0};
}

static const char fallback_nomem[] = "{\"error\":\"out of memory\"}";

void serve_json(serve_response *resp, unsigned status, json_t *root) {
  serve_response_clear(resp);
  char *s = root ? json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9)) : NULL;
  json_decref(root);
  resp->content_type = "application/json";
  resp->infer_header_len = -1;
  if (!s) { /* a static body: nothing to free */
    resp->status = 500;
    resp->body = (char *)fallback_nomem;
    resp->len = sizeof fallback_nomem - 1;
    return;
  }
  resp->status = status;
  resp->body = s;
  resp->len = strlen(s);
  resp->free_body = free; /* jansson's allocator is malloc */
}

void serve_error(serve_response *resp, unsigned status, const char *fmt, ...) {
  char msg[KILN_ERROR_MSG_MAX + 128];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  for (char *c = msg; *c; c++) /* names from URLs need not be UTF-8 */
    if ((unsigned char)*c < 0x20 || (unsigned char)*c >= 0x7f) *c = '?';
  serve_json(resp, status, json_pack("{s:s}", "error", msg));
}

unsigned serve_status_for(kiln_status s) {
  switch (s) {
    case KILN_ERR_LIMIT: return 413;
    case KILN_ERR_NOMEM: return 503;
    case KILN_ERR_INTERNAL: return 500;
    default: return 400;
  }
}
