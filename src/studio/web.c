/*
 * studio/web.c: serves the embedded web UI (studio/web.h). Every answer
 * carries a Content-Security-Policy that allows scripts, styles and
 * connections from the studio itself only (no inline scripts), images also
 * from blob: URLs (previews of files being uploaded). Files are revalidated
 * on each load (Cache-Control: no-cache) with an ETag, so a new kiln binary
 * is picked up at once and an unchanged file costs a 304.
 */
#include <stdio.h>
#include <string.h>

#include "studio/web.h"

#define WEB_CSP                                                                                     \
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "          \
  "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

/* FNV-1a of the bytes: a content ETag that is stable across builds. */
static void etag_of(const studio_web_file *f, char out[24]) {
  unsigned long long h = 1469598103934665603ull;
  for (size_t i = 0; i < f->size; i++) h = (h ^ f->data[i]) * 1099511628211ull;
  snprintf(out, 24, "\"%016llx\"", h);
}

static enum MHD_Result web_send(struct MHD_Connection *conn, unsigned status, struct MHD_Response *resp,
                            const char *type, const char *cache) {
  if (!resp) return MHD_NO;
  MHD_add_response_header(resp, "Content-Type", type);
  MHD_add_response_header(resp, "Cache-Control", cache);
  MHD_add_response_header(resp, "Content-Security-Policy", WEB_CSP);
  MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
  MHD_add_response_header(resp, "X-Frame-Options", "DENY");
  MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
  enum MHD_Result ret = MHD_queue_response(conn, status, resp);
  MHD_destroy_response(resp);
  return ret;
}

static enum MHD_Result send_text(struct MHD_Connection *conn, unsigned status, const char *text) {
  return web_send(conn, status,
              MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_PERSISTENT),
              "text/plain; charset=utf-8", "no-store");
}

enum MHD_Result studio_web_reply(struct MHD_Connection *conn, const char *method, const char *url) {
  const studio_web_file *f = NULL;
  for (size_t i = 0; i < studio_web_n_files; i++)
    if (strcmp(studio_web_files[i].path, url) == 0) f = &studio_web_files[i];
  if (!f) return send_text(conn, 404, "not found\n");
  if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
    static const char not_allowed[] = "method not allowed\n";
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(strlen(not_allowed), (void *)not_allowed, MHD_RESPMEM_PERSISTENT);
    if (resp) MHD_add_response_header(resp, "Allow", "GET, HEAD");
    return web_send(conn, 405, resp, "text/plain; charset=utf-8", "no-store");
  }
  char etag[24];
  etag_of(f, etag);
  const char *match = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "If-None-Match");
  struct MHD_Response *resp;
  unsigned status = 200;
  if (match && strcmp(match, etag) == 0) {
    status = 304;
    resp = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
  } else {
    resp = MHD_create_response_from_buffer(f->size, (void *)f->data, MHD_RESPMEM_PERSISTENT);
  }
  if (resp) MHD_add_response_header(resp, "ETag", etag);
  return web_send(conn, status, resp, f->type, "no-cache");
}
