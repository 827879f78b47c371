/*
 * model/flexbuf.h: a validating FlexBuffers reader for maps of scalars, and
 * a writer for maps of int/float/bool entries. TFLite stores the options of
 * its custom operators (TFLite_Detection_PostProcess, ...) as a FlexBuffer
 * map in Operator.custom_options.
 *
 * Format (google/flatbuffers include/flatbuffers/flexbuffers.h): the buffer
 * ends with the root value, then the root's packed type byte, then the
 * root's byte width. A packed type is (type << 2) | log2(byte width). Every
 * multi-byte value is little-endian; an offset is unsigned and points
 * backwards (target = position - offset). A map's value vector is preceded
 * by three fields of the map's width: the offset to its keys vector, that
 * vector's byte width, and the element count; the values are followed by
 * one packed type byte per value. Keys are NUL-terminated strings, sorted
 * by strcmp, reached through a typed vector of offsets.
 *
 * The reader never trusts the bytes: kiln_flex_root_map checks every width,
 * offset, size and string terminator of the root map and its entries before
 * anything is read, and every accessor checks its bounds again, so hostile
 * input yields KILN_ERR_FORMAT, never an out-of-bounds read or a loop.
 * Nothing is allocated; results point into the caller's buffer.
 */
#ifndef KILN_MODEL_FLEXBUF_H
#define KILN_MODEL_FLEXBUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kiln/base.h"

/* FlexBuffers value types (the upper six bits of a packed type). */
typedef enum kiln_flex_type {
  KILN_FLEX_NULL = 0,
  KILN_FLEX_INT = 1,
  KILN_FLEX_UINT = 2,
  KILN_FLEX_FLOAT = 3,
  KILN_FLEX_KEY = 4,
  KILN_FLEX_STRING = 5,
  KILN_FLEX_INDIRECT_INT = 6,
  KILN_FLEX_INDIRECT_UINT = 7,
  KILN_FLEX_INDIRECT_FLOAT = 8,
  KILN_FLEX_MAP = 9,
  KILN_FLEX_VECTOR = 10,
  KILN_FLEX_VECTOR_KEY = 14,
  KILN_FLEX_BLOB = 25,
  KILN_FLEX_BOOL = 26,
  KILN_FLEX_VECTOR_BOOL = 36
} kiln_flex_type;

/* "int", "float", "map", ... for messages; "unknown" for other values. */
const char *kiln_flex_type_name(int type);

/* One value: where it is stored and how to read it. For inline scalars the
 * value is the parent_width bytes at pos; for other types those bytes are an
 * offset to data of byte_width-sized fields. */
typedef struct kiln_flex_ref {
  const uint8_t *buf;
  size_t size;
  size_t pos;
  uint8_t parent_width;
  uint8_t byte_width;
  uint8_t type; /* a kiln_flex_type */
} kiln_flex_ref;

/* A validated map. */
typedef struct kiln_flex_map {
  const uint8_t *buf;
  size_t size;
  size_t count;
  size_t values;      /* position of value 0 */
  size_t types;       /* position of the packed type of value 0 */
  size_t keys;        /* position of the offset to key 0 */
  uint8_t width;      /* byte width of values (and of the map's prefix) */
  uint8_t keys_width; /* byte width of the key offsets */
} kiln_flex_map;

/* Checks buf[0..size) and opens its root, which must be a map: widths are
 * 1, 2, 4 or 8, offsets and sizes stay inside the buffer, keys are
 * NUL-terminated and strictly increasing (no duplicates), and every scalar
 * and string entry is readable. Returns KILN_ERR_FORMAT with a message
 * naming the offending position, key or value otherwise. */
kiln_status kiln_flex_root_map(const uint8_t *buf, size_t size, kiln_flex_map *map,
                               kiln_error *err);

/* Entry i (< map->count) of a validated map: its key (NUL-terminated,
 * inside buf) and value. */
void kiln_flex_map_entry(const kiln_flex_map *map, size_t i, const char **key,
                         kiln_flex_ref *value);

/* Looks key up (binary search, as flexbuffers' Map::operator[] does).
 * Returns false when absent. */
bool kiln_flex_map_find(const kiln_flex_map *map, const char *key, kiln_flex_ref *value);

/* Typed reads. Each returns KILN_ERR_FORMAT for a value of another kind
 * (message naming the type found), or when the value does not fit:
 *   get_int:    INT, UINT, BOOL, INDIRECT_INT/UINT of any width;
 *   get_double: FLOAT (4 or 8 bytes), INDIRECT_FLOAT, and integers;
 *   get_bool:   BOOL, INT, UINT (nonzero is true);
 *   get_string: STRING (*len excludes the terminating NUL, which is present). */
kiln_status kiln_flex_get_int(const kiln_flex_ref *value, int64_t *out, kiln_error *err);
kiln_status kiln_flex_get_double(const kiln_flex_ref *value, double *out, kiln_error *err);
kiln_status kiln_flex_get_bool(const kiln_flex_ref *value, bool *out, kiln_error *err);
kiln_status kiln_flex_get_string(const kiln_flex_ref *value, const char **out, size_t *len,
                                 kiln_error *err);

/* ---- Writer ---- */

typedef enum kiln_flex_kind {
  KILN_FLEX_ENTRY_INT,    /* stored in the fewest bytes that hold it */
  KILN_FLEX_ENTRY_FLOAT,  /* a 32-bit float (flexbuffers Builder::Float) */
  KILN_FLEX_ENTRY_DOUBLE, /* 32 bits when exact as a float, else 64 (Builder::Double) */
  KILN_FLEX_ENTRY_BOOL
} kiln_flex_kind;

typedef struct kiln_flex_entry {
  const char *key;
  kiln_flex_kind kind;
  int64_t i;
  double f; /* FLOAT entries store (float)f */
  bool b;
} kiln_flex_entry;

/* Serializes a root map of n scalar entries byte for byte as flexbuffers'
 * C++ Builder does for StartMap; Int/Float/Double/Bool(key, v) calls in the
 * order given; EndMap; Finish() (the way TFLite's converter writes custom
 * options): key strings appear in call order, the keys vector and values
 * sorted by key. Keys must be distinct (KILN_ERR_INVALID_ARG otherwise).
 * *out is kiln_malloc'd and owned by the caller. */
kiln_status kiln_flex_write_map(const kiln_flex_entry *entries, size_t n, uint8_t **out,
                                size_t *out_size, kiln_error *err);

#endif
