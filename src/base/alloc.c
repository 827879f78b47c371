/* The replaceable allocator (see kiln/base.h). All kiln memory goes through
 * kiln_malloc/kiln_realloc/kiln_free so tests can inject failures. */
#include <stdlib.h>
#include <string.h>

#include "kiln/base.h"

static void *default_alloc(size_t bytes, void *ctx) {
  (void)ctx;
  return malloc(bytes);
}
static void *default_realloc(void *ptr, size_t bytes, void *ctx) {
  (void)ctx;
  return realloc(ptr, bytes);
}
static void default_free(void *ptr, void *ctx) {
  (void)ctx;
  free(ptr);
}

static kiln_allocator g_alloc = {default_alloc, default_realloc, default_free, NULL};

void kiln_set_allocator(const kiln_allocator *allocator) {
  if (allocator) {
    g_alloc = *allocator;
  } else {
    g_alloc = (kiln_allocator){default_alloc, default_realloc, default_free, NULL};
  }
}

void *kiln_malloc(size_t bytes) { return g_alloc.alloc(bytes ? bytes : 1, g_alloc.ctx); }

void *kiln_calloc(size_t count, size_t size) {
  if (size && count > SIZE_MAX / size) return NULL;
  size_t bytes = count * size;
  void *p = kiln_malloc(bytes);
  if (p && bytes > 0) memset(p, 0, bytes);
  return p;
}

void *kiln_realloc(void *ptr, size_t bytes) {
  return g_alloc.realloc(ptr, bytes ? bytes : 1, g_alloc.ctx);
}

void kiln_free(void *ptr) {
  if (ptr) g_alloc.free(ptr, g_alloc.ctx);
}

char *kiln_strdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *p = kiln_malloc(n);
  if (p) memcpy(p, s, n);
  return p;
}
