/*
 * base/pool.h: a bump allocator for objects that share one lifetime (a
 * model's names, shapes and options). Memory comes from kiln_malloc in
 * chunks and is released all at once by kiln_pool_destroy.
 */
#ifndef KILN_BASE_POOL_H
#define KILN_BASE_POOL_H

#include <stddef.h>

typedef struct kiln_pool_chunk kiln_pool_chunk;

typedef struct kiln_pool {
  kiln_pool_chunk *head; /* newest chunk first */
  size_t used;           /* bytes used in head */
  size_t total_bytes;    /* all bytes handed out, for reporting */
} kiln_pool;

void kiln_pool_init(kiln_pool *pool);
/* Zeroed memory aligned to align (a power of two <= 64); NULL on failure. */
void *kiln_pool_alloc(kiln_pool *pool, size_t bytes, size_t align);
/* Copies bytes into the pool; NULL on failure. */
void *kiln_pool_memdup(kiln_pool *pool, const void *src, size_t bytes, size_t align);
/* NUL-terminated copy of the first len bytes of s; NULL on failure. */
char *kiln_pool_strndup(kiln_pool *pool, const char *s, size_t len);
void kiln_pool_destroy(kiln_pool *pool);

#endif
