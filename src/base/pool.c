/* Bump allocator (see base/pool.h). Large requests get a chunk of their own
 * so a few big constants do not waste a chunk's tail. */
#include "base/pool.h"

#include <stdint.h>
#include <string.h>

#include "kiln/base.h"

#define POOL_CHUNK_BYTES (64 * 1024)

/* kiln_malloc promises only malloc's alignment, so each chunk carries 63
 * spare bytes and `data` is rounded up to a 64-byte boundary: every
 * allocation's alignment (<= 64) then holds in absolute terms. */
struct kiln_pool_chunk {
  kiln_pool_chunk *next;
  size_t capacity;
  unsigned char *data;
};

void kiln_pool_init(kiln_pool *pool) { memset(pool, 0, sizeof *pool); }

static kiln_pool_chunk *chunk_new(size_t capacity) {
  if (capacity > SIZE_MAX - sizeof(kiln_pool_chunk) - 63) return NULL;
  kiln_pool_chunk *c = kiln_malloc(sizeof(kiln_pool_chunk) + capacity + 63);
  if (!c) return NULL;
  c->next = NULL;
  c->capacity = capacity;
  uintptr_t start = (uintptr_t)(c + 1);
  c->data = (unsigned char *)((start + 63) & ~(uintptr_t)63);
  return c;
}

void *kiln_pool_alloc(kiln_pool *pool, size_t bytes, size_t align) {
  if (align == 0) align = 1;
  if (bytes == 0) bytes = 1;
  if (pool->head) {
    size_t start = (pool->used + align - 1) & ~(align - 1);
    if (start <= pool->head->capacity && bytes <= pool->head->capacity - start) {
      pool->used = start + bytes;
      pool->total_bytes += bytes;
      void *p = pool->head->data + start;
      memset(p, 0, bytes);
      return p;
    }
  }
  if (bytes > POOL_CHUNK_BYTES / 4) {
    /* Dedicated chunk, linked behind the head so the head keeps its space. */
    kiln_pool_chunk *c = chunk_new(bytes);
    if (!c) return NULL;
    if (pool->head) {
      c->next = pool->head->next;
      pool->head->next = c;
    } else {
      c->next = NULL;
      pool->head = c;
      pool->used = bytes;
    }
    pool->total_bytes += bytes;
    memset(c->data, 0, bytes);
    return c->data;
  }
  kiln_pool_chunk *c = chunk_new(POOL_CHUNK_BYTES);
  if (!c) return NULL;
  c->next = pool->head;
  pool->head = c;
  pool->used = bytes;
  pool->total_bytes += bytes;
  memset(c->data, 0, bytes);
  return c->data;
}

void *kiln_pool_memdup(kiln_pool *pool, const void *src, size_t bytes, size_t align) {
  void *p = kiln_pool_alloc(pool, bytes, align);
  if (p && bytes) memcpy(p, src, bytes);
  return p;
}

char *kiln_pool_strndup(kiln_pool *pool, const char *s, size_t len) {
  if (len == SIZE_MAX) return NULL;
  char *p = kiln_pool_alloc(pool, len + 1, 1);
  if (!p) return NULL;
  if (len) memcpy(p, s, len);
  p[len] = '\0';
  return p;
}

void kiln_pool_destroy(kiln_pool *pool) {
  kiln_pool_chunk *c = pool->head;
  while (c) {
    kiln_pool_chunk *next = c->next;
    kiln_free(c);
    c = next;
  }
  memset(pool, 0, sizeof *pool);
}
