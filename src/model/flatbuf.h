/*
 * model/flatbuf.h: bounds-checked FlatBuffers access and a small builder.
 *
 * Reading: every table, vtable, field, vector and string is checked against
 * the buffer before it is touched; a check that fails sets a message in the
 * reader and returns false, so callers can stop at the first bad byte. A
 * budget of visited elements (proportional to the buffer size) stops hostile
 * files that alias one large vector many times from making the reader do
 * quadratic work.
 *
 * Building: objects are written front to back. A table is written with
 * placeholder offset fields; each child (table, vector, string) is written
 * afterwards, at a higher address, and the placeholder is patched, so every
 * uoffset is positive as the format requires.
 */
#ifndef KILN_MODEL_FLATBUF_H
#define KILN_MODEL_FLATBUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kiln/base.h"

typedef struct fb_reader {
  const uint8_t *buf;
  size_t size;
  uint64_t budget; /* elements left to visit */
  char msg[256];   /* first failure */
  bool failed;
} fb_reader;

typedef struct fb_table {
  size_t pos;      /* table start (its soffset to the vtable) */
  size_t vtab;     /* vtable start */
  uint16_t vt_len; /* vtable bytes */
  uint16_t tb_len; /* inline table bytes */
} fb_table;

typedef struct fb_vec {
  size_t data; /* first element */
  uint32_t len;
} fb_vec;

void fb_reader_init(fb_reader *r, const void *buf, size_t size);
bool fb_fail(fb_reader *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The root table (offset at byte 0). */
bool fb_root(fb_reader *r, fb_table *out);
/* True when the field exists in the table. */
bool fb_has(const fb_reader *r, const fb_table *t, int field);

/* Scalars: set *out to the field's value or to def when absent. False if
 * the field does not fit in the table. */
bool fb_u8(fb_reader *r, const fb_table *t, int field, uint8_t def, uint8_t *out);
bool fb_i8(fb_reader *r, const fb_table *t, int field, int8_t def, int8_t *out);
bool fb_bool(fb_reader *r, const fb_table *t, int field, bool def, bool *out);
bool fb_i32(fb_reader *r, const fb_table *t, int field, int32_t def, int32_t *out);
bool fb_u32(fb_reader *r, const fb_table *t, int field, uint32_t def, uint32_t *out);
bool fb_u64(fb_reader *r, const fb_table *t, int field, uint64_t def, uint64_t *out);
bool fb_f32(fb_reader *r, const fb_table *t, int field, float def, float *out);

/* Sub-table: *present false when absent. */
bool fb_table_field(fb_reader *r, const fb_table *t, int field, fb_table *out, bool *present);
/* Vector of elem_size-byte scalars (or of uoffsets with elem_size 4):
 * len 0 when absent. */
bool fb_vector(fb_reader *r, const fb_table *t, int field, size_t elem_size, fb_vec *out);
/* String: *s NULL when absent; not NUL-terminated in the buffer necessarily,
 * use len. */
bool fb_string(fb_reader *r, const fb_table *t, int field, const char **s, uint32_t *len);
/* Element i of a vector of tables. */
bool fb_vec_table(fb_reader *r, const fb_vec *v, uint32_t i, fb_table *out);

/* Unaligned little-endian loads of vector elements (caller checked bounds
 * through fb_vector). */
int32_t fb_vec_i32(const fb_reader *r, const fb_vec *v, uint32_t i);
int64_t fb_vec_i64(const fb_reader *r, const fb_vec *v, uint32_t i);
float fb_vec_f32(const fb_reader *r, const fb_vec *v, uint32_t i);

/* ---- Builder ---- */

typedef struct fb_builder {
  uint8_t *buf;
  size_t len, cap;
  bool failed; /* an allocation failed; the result is unusable */
} fb_builder;

enum { FB_SCALAR = 0, FB_OFFSET = 1 };
#define FB_MAX_FIELDS 32

typedef struct fb_field {
  uint16_t id;
  uint8_t size; /* 1, 2, 4 or 8 */
  uint8_t kind; /* FB_SCALAR or FB_OFFSET (size 4) */
  uint64_t bits;
} fb_field;

void fb_builder_init(fb_builder *b);
void fb_builder_free(fb_builder *b);
/* Appends zeros so len is a multiple of align. */
void fb_align(fb_builder *b, size_t align);
/* Reserves n bytes (zeroed) and returns their position. */
size_t fb_reserve(fb_builder *b, size_t n);
/* Writes a vtable and a table with the given fields; returns the table's
 * position. slots[i] receives the position of field i's uoffset when it is
 * an FB_OFFSET field (patch it later with fb_patch). */
size_t fb_write_table(fb_builder *b, const fb_field *fields, int n, size_t *slots);
/* Writes a vector of count elements of elem_size bytes, data aligned to
 * align (>= 4); returns its position. data may be NULL (zeros, to patch). */
size_t fb_write_vector(fb_builder *b, const void *data, size_t elem_size, uint32_t count,
                       size_t align);
/* Writes a NUL-terminated string; returns its position. */
size_t fb_write_string(fb_builder *b, const char *s, size_t len);
/* Stores at slot the uoffset from slot to target (target > slot). */
void fb_patch(fb_builder *b, size_t slot, size_t target);

#endif
