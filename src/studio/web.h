/*
 * studio/web.h: the web UI's static files (web/ in the source tree), embedded
 * at build time by cmake/embed_web.cmake into a generated C file, and the
 * handler that serves them at "/" and "/static/..." (web.c).
 */
#ifndef KILN_STUDIO_WEB_H
#define KILN_STUDIO_WEB_H

#include <stddef.h>

#include <microhttpd.h>

typedef struct studio_web_file {
  const char *path; /* URL path: "/" for index.html, "/static/app.js" */
  const char *type; /* Content-Type */
  const unsigned char *data;
  size_t size;
} studio_web_file;

extern const studio_web_file studio_web_files[];
extern const size_t studio_web_n_files;

/* Answers a request for a path outside /api/: an embedded file (GET, HEAD)
 * with its Content-Type, an ETag, Cache-Control: no-cache and a strict
 * Content-Security-Policy; 404 or 405 otherwise. */
enum MHD_Result studio_web_reply(struct MHD_Connection *conn, const char *method, const char *url);

#endif
