/*
 * kiln/base.h: status codes, error messages and the replaceable allocator.
 *
 * Every library function that can fail returns a kiln_status and, when the
 * caller passes a non-NULL kiln_error, leaves a message there that names the
 * file, the object and the value that was wrong, e.g.
 *   "model.tflite: tensor 17: buffer index 900 out of range (120 buffers)".
 * Only the CLI prints messages or exits.
 */
#ifndef KILN_BASE_H
#define KILN_BASE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum kiln_status {
  KILN_OK = 0,
  KILN_ERR_IO,          /* a file could not be opened, read or written */
  KILN_ERR_FORMAT,      /* malformed input: model, image, npy, options */
  KILN_ERR_UNSUPPORTED, /* well-formed but outside what kiln implements */
  KILN_ERR_INVALID_ARG, /* the caller passed something inconsistent */
  KILN_ERR_NOMEM,       /* an allocation failed */
  KILN_ERR_LIMIT,       /* over a configured limit (pixels, sizes) */
  KILN_ERR_INTERNAL     /* an invariant broke: a kiln bug */
} kiln_status;

#define KILN_ERROR_MSG_MAX 512

typedef struct kiln_error {
  kiln_status status;
  char msg[KILN_ERROR_MSG_MAX];
} kiln_error;

/* Short name of a status ("format error"). Never NULL. */
const char *kiln_status_str(kiln_status status);

/* Records status and a printf-style message in err (if non-NULL) and returns
 * status, so callers can write `return kiln_fail(err, KILN_ERR_IO, ...)`. */
kiln_status kiln_fail(kiln_error *err, kiln_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefixes the message already in err with "prefix: " (e.g. a file name). */
void kiln_error_prefix(kiln_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The allocator every part of kiln uses. Tests replace it to fail the Nth
 * allocation. The functions receive ctx as their last argument. Passing NULL
 * to kiln_set_allocator restores malloc/realloc/free. Not thread-safe: set it
 * before any other kiln call. */
typedef struct kiln_allocator {
  void *(*alloc)(size_t bytes, void *ctx);
  void *(*realloc)(void *ptr, size_t bytes, void *ctx);
  void (*free)(void *ptr, void *ctx);
  void *ctx;
} kiln_allocator;

void kiln_set_allocator(const kiln_allocator *allocator);

void *kiln_malloc(size_t bytes);
void *kiln_calloc(size_t count, size_t size); /* NULL on overflow too */
void *kiln_realloc(void *ptr, size_t bytes);
void kiln_free(void *ptr);
char *kiln_strdup(const char *s);

#ifdef __cplusplus
}
#endif
#endif
