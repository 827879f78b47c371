/*
 * FlexBuffers: a validating reader for maps of scalars and a writer that
 * reproduces flexbuffers' C++ Builder for maps of int/float/bool entries
 * (see model/flexbuf.h for the format and the guarantees).
 *
 * Reader invariant: a position is only dereferenced after a check that the
 * bytes it names lie inside [0, size). Offsets are subtracted only after a
 * check that they do not exceed the position they are relative to. Sizes
 * read from the buffer are compared with the buffer size before any
 * multiplication, so no arithmetic can wrap.
 */
#include "model/flexbuf.h"

#include <float.h>
#include <math.h>
#include <string.h>

/* ---- Reading helpers ---- */

static bool valid_width(uint64_t w) { return w == 1 || w == 2 || w == 4 || w == 8; }

/* True when bytes [pos, pos + len) lie inside a buffer of `size` bytes. */
static bool in_bounds(size_t pos, size_t len, size_t size) {
  return pos <= size && len <= size - pos;
}

static uint64_t read_u(const uint8_t *p, unsigned w) {
  uint64_t v = 0;
  for (unsigned i = 0; i < w; i++) v |= (uint64_t)p[i] << (8 * i);
  return v;
}

static int64_t read_i(const uint8_t *p, unsigned w) {
  uint64_t u = read_u(p, w);
  if (w < 8) {
    const uint64_t sign = (uint64_t)1 << (8 * w - 1);
    u = (u ^ sign) - sign;
  }
  return (int64_t)u;
}

static double read_float(const uint8_t *p, unsigned w) {
  if (w == 4) {
    uint32_t bits = (uint32_t)read_u(p, 4);
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
  }
  uint64_t bits = read_u(p, 8);
  double d;
  memcpy(&d, &bits, sizeof d);
  return d;
}

const char *kiln_flex_type_name(int type) {
  switch (type) {
    case KILN_FLEX_NULL: return "null";
    case KILN_FLEX_INT: return "int";
    case KILN_FLEX_UINT: return "uint";
    case KILN_FLEX_FLOAT: return "float";
    case KILN_FLEX_KEY: return "key";
    case KILN_FLEX_STRING: return "string";
    case KILN_FLEX_INDIRECT_INT: return "indirect int";
    case KILN_FLEX_INDIRECT_UINT: return "indirect uint";
    case KILN_FLEX_INDIRECT_FLOAT: return "indirect float";
    case KILN_FLEX_MAP: return "map";
    case KILN_FLEX_VECTOR: return "vector";
    case KILN_FLEX_VECTOR_KEY: return "key vector";
    case KILN_FLEX_BLOB: return "blob";
    case KILN_FLEX_BOOL: return "bool";
    case KILN_FLEX_VECTOR_BOOL: return "bool vector";
    default: break;
  }
  if (type >= 11 && type <= 24) return "typed vector";
  return "unknown";
}

static bool known_type(unsigned type) { return type <= KILN_FLEX_BOOL || type == KILN_FLEX_VECTOR_BOOL; }

/* Resolves the offset stored in the w bytes at pos. */
static kiln_status follow(const uint8_t *buf, size_t size, size_t pos, unsigned w, size_t *target,
                          kiln_error *err) {
  if (!in_bounds(pos, w, size))
    return kiln_fail(err, KILN_ERR_FORMAT, "flexbuffer: offset at %zu runs past the end (%zu bytes)",
                     pos, size);
  const uint64_t off = read_u(buf + pos, w);
  if (off > pos)
    return kiln_fail(err, KILN_ERR_FORMAT,
                     "flexbuffer: offset %llu at %zu points before the start of the buffer",
                     (unsigned long long)off, pos);
  *target = pos - (size_t)off;
  return KILN_OK;
}

/* Where a scalar's bytes are, and their width: inline values at pos, indirect
 * ones behind an offset. */
static kiln_status scalar_bytes(const kiln_flex_ref *v, const uint8_t **p, unsigned *w,
                                kiln_error *err) {
  if (!valid_width(v->parent_width) || !valid_width(v->byte_width))
    return kiln_fail(err, KILN_ERR_FORMAT, "flexbuffer: invalid byte width");
  size_t at = v->pos;
  unsigned width = v->parent_width;
  if (v->type == KILN_FLEX_INDIRECT_INT || v->type == KILN_FLEX_INDIRECT_UINT ||
      v->type == KILN_FLEX_INDIRECT_FLOAT) {
    kiln_status st = follow(v->buf, v->size, v->pos, v->parent_width, &at, err);
    if (st != KILN_OK) return st;
    width = v->byte_width;
  }
  if (!in_bounds(at, width, v->size))
    return kiln_fail(err, KILN_ERR_FORMAT, "flexbuffer: %u-byte %s at %zu runs past the end",
                     width, kiln_flex_type_name(v->type), at);
  *p = v->buf + at;
  *w = width;
  return KILN_OK;
}

/* A string's bytes: a size field of byte_width bytes before the data and a
 * NUL after it. */
static kiln_status string_bytes(const kiln_flex_ref *v, const char **s, size_t *len,
                                kiln_error *err) {
  if (!valid_width(v->parent_width) || !valid_width(v->byte_width))
    return kiln_fail(err, KILN_ERR_FORMAT, "flexbuffer: invalid byte width");
  size_t data = 0;
  kiln_status st = follow(v->buf, v->size, v->pos, v->parent_width, &data, err);
  if (st != KILN_OK) return st;
  if (data < v->byte_width)
    return kiln_fail(err, KILN_ERR_FORMAT, "flexbuffer: string size field before the buffer");
  const uint64_t n = read_u(v->buf + data - v->byte_width, v->byte_width);
  if (n >= v->size || !in_bounds(data, (size_t)n + 1, v->size))
    return kiln_fail(err, KILN_ERR_FORMAT,
                     "flexbuffer: string of %llu bytes at %zu runs past the end",
                     (unsigned long long)n, data);
  if (v->buf[data + n] != 0)
    return kiln_fail(err, KILN_ERR_FORMAT, "flexbuffer: string at %zu lacks its terminating NUL",
                     data);
  *s = (const char *)v->buf + data;
  *len = (size_t)n;
  return KILN_OK;
}

/* A key: a NUL-terminated string behind an offset. */
static kiln_status key_at(const uint8_t *buf, size_t size, size_t pos, unsigned w,
                          const char **key, kiln_error *err) {
  size_t target = 0;
  kiln_status st = follow(buf, size, pos, w, &target, err);
  if (st != KILN_OK) return st;
  if (target >= size || !memchr(buf + target, 0, size - target))
    return kiln_fail(err, KILN_ERR_FORMAT, "flexbuffer: key at %zu is not NUL-terminated", target);
  *key = (const char *)buf + target;
  return KILN_OK;
}

/* Checks that a map entry's value can be read (scalars and strings fully;
 * nested containers only as far as their offset). */
static kiln_status check_value(const kiln_flex_ref *v, kiln_error *err) {
  const uint8_t *p;
  unsigned w;
  const char *s;
  size_t len, target;
  switch (v->type) {
    case KILN_FLEX_NULL:
    case KILN_FLEX_INT:
    case KILN_FLEX_UINT:
    case KILN_FLEX_BOOL:
    case KILN_FLEX_INDIRECT_INT:
    case KILN_FLEX_INDIRECT_UINT:
      return scalar_bytes(v, &p, &w, err);
    case KILN_FLEX_FLOAT:
    case KILN_FLEX_INDIRECT_FLOAT: {
      kiln_status st = scalar_bytes(v, &p, &w, err);
      if (st != KILN_OK) return st;
      if (w != 4 && w != 8)
        return kiln_fail(err, KILN_ERR_FORMAT, "flexbuffer: float stored in %u bytes", w);
      return KILN_OK;
    }
    case KILN_FLEX_STRING:
      return string_bytes(v, &s, &len, err);
    case KILN_FLEX_KEY:
      return key_at(v->buf, v->size, v->pos, v->parent_width, &s, err);
    default:
      if (!known_type(v->type))
        return kiln_fail(err, KILN_ERR_FORMAT, "flexbuffer: unknown value type %u",
                         (unsigned)v->type);
      return follow(v->buf, v->size, v->pos, v->parent_width, &target, err);
  }
}

kiln_status kiln_flex_root_map(const uint8_t *buf, size_t size, kiln_flex_map *map,
                               kiln_error *err) {
  if (!buf || size < 3)
    return kiln_fail(err, KILN_ERR_FORMAT, "flexbuffer: %zu bytes is too short", buf ? size : 0);
  const unsigned root_width = buf[size - 1];
  const uint8_t packed = buf[size - 2];
  if (!valid_width(root_width))
    return kiln_fail(err, KILN_ERR_FORMAT, "flexbuffer: root byte width %u", root_width);
  if (size - 2 < root_width)
    return kiln_fail(err, KILN_ERR_FORMAT, "flexbuffer: root value runs past the start");
  if ((packed >> 2) != KILN_FLEX_MAP)
    return kiln_fail(err, KILN_ERR_FORMAT, "flexbuffer: root is a %s, not a map",
                     kiln_flex_type_name(packed >> 2));
  const size_t root_pos = size - 2 - root_width;
  const unsigned w = 1u << (packed & 3);

  size_t data = 0;
  kiln_status st = follow(buf, size, root_pos, root_width, &data, err);
  if (st != KILN_OK) return st;
  if (data < 3 * (size_t)w)
    return kiln_fail(err, KILN_ERR_FORMAT, "flexbuffer: map at %zu has no room for its header",
                     data);
  const uint64_t count = read_u(buf + data - w, w);
  const uint64_t keys_width = read_u(buf + data - 2 * w, w);
  if (!valid_width(keys_width))
    return kiln_fail(err, KILN_ERR_FORMAT, "flexbuffer: map keys byte width %llu",
                     (unsigned long long)keys_width);
  if (count > size || !in_bounds(data, (size_t)count * (w + 1), size))
    return kiln_fail(err, KILN_ERR_FORMAT, "flexbuffer: map of %llu entries runs past the end",
                     (unsigned long long)count);
  size_t keys = 0;
  st = follow(buf, size, data - 3 * (size_t)w, w, &keys, err);
  if (st != KILN_OK) return st;
  if (keys < keys_width)
    return kiln_fail(err, KILN_ERR_FORMAT, "flexbuffer: keys vector size field before the buffer");
  const uint64_t key_count = read_u(buf + keys - keys_width, (unsigned)keys_width);
  if (key_count != count)
    return kiln_fail(err, KILN_ERR_FORMAT, "flexbuffer: map has %llu values but %llu keys",
                     (unsigned long long)count, (unsigned long long)key_count);
  if (!in_bounds(keys, (size_t)count * keys_width, size))
    return kiln_fail(err, KILN_ERR_FORMAT, "flexbuffer: keys vector runs past the end");

  map->buf = buf;
  map->size = size;
  map->count = (size_t)count;
  map->values = data;
  map->types = data + (size_t)count * w;
  map->keys = keys;
  map->width = (uint8_t)w;
  map->keys_width = (uint8_t)keys_width;

  const char *prev = NULL;
  for (size_t i = 0; i < map->count; i++) {
    const char *key = NULL;
    st = key_at(buf, size, keys + i * keys_width, (unsigned)keys_width, &key, err);
    if (st != KILN_OK) return st;
    if (prev && strcmp(prev, key) >= 0)
      return kiln_fail(err, KILN_ERR_FORMAT,
                       "flexbuffer: map keys not strictly sorted ('%s' then '%s')", prev, key);
    prev = key;
    kiln_flex_ref value;
    kiln_flex_map_entry(map, i, &key, &value);
    st = check_value(&value, err);
    if (st != KILN_OK) {
      kiln_error_prefix(err, "key '%s'", key);
      return st;
    }
  }
  return KILN_OK;
}

void kiln_flex_map_entry(const kiln_flex_map *map, size_t i, const char **key,
                         kiln_flex_ref *value) {
  const size_t key_pos = map->keys + i * map->keys_width;
  const uint64_t off = read_u(map->buf + key_pos, map->keys_width);
  *key = (const char *)map->buf + (key_pos - (size_t)off);
  const uint8_t packed = map->buf[map->types + i];
  value->buf = map->buf;
  value->size = map->size;
  value->pos = map->values + i * map->width;
  value->parent_width = map->width;
  value->byte_width = (uint8_t)(1u << (packed & 3));
  value->type = (uint8_t)(packed >> 2);
}

bool kiln_flex_map_find(const kiln_flex_map *map, const char *key, kiln_flex_ref *value) {
  size_t lo = 0, hi = map->count;
  while (lo < hi) {
    const size_t mid = lo + (hi - lo) / 2;
    const char *k;
    kiln_flex_ref v;
    kiln_flex_map_entry(map, mid, &k, &v);
    const int c = strcmp(key, k);
    if (c == 0) {
      *value = v;
      return true;
    }
    if (c < 0) {
      hi = mid;
    } else {
      lo = mid + 1;
    }
  }
  return false;
}

kiln_status kiln_flex_get_int(const kiln_flex_ref *v, int64_t *out, kiln_error *err) {
  const uint8_t *p;
  unsigned w;
  switch (v->type) {
    case KILN_FLEX_INT:
    case KILN_FLEX_INDIRECT_INT: {
      kiln_status st = scalar_bytes(v, &p, &w, err);
      if (st != KILN_OK) return st;
      *out = read_i(p, w);
      return KILN_OK;
    }
    case KILN_FLEX_UINT:
    case KILN_FLEX_INDIRECT_UINT:
    case KILN_FLEX_BOOL: {
      kiln_status st = scalar_bytes(v, &p, &w, err);
      if (st != KILN_OK) return st;
      const uint64_t u = read_u(p, w);
      if (u > (uint64_t)INT64_MAX)
        return kiln_fail(err, KILN_ERR_FORMAT, "flexbuffer: unsigned %llu does not fit an int64",
                         (unsigned long long)u);
      *out = (int64_t)u;
      return KILN_OK;
    }
    default:
      return kiln_fail(err, KILN_ERR_FORMAT, "flexbuffer: value is a %s, not an integer",
                       kiln_flex_type_name(v->type));
  }
}

kiln_status kiln_flex_get_double(const kiln_flex_ref *v, double *out, kiln_error *err) {
  if (v->type == KILN_FLEX_FLOAT || v->type == KILN_FLEX_INDIRECT_FLOAT) {
    const uint8_t *p;
    unsigned w;
    kiln_status st = scalar_bytes(v, &p, &w, err);
    if (st != KILN_OK) return st;
    if (w != 4 && w != 8)
      return kiln_fail(err, KILN_ERR_FORMAT, "flexbuffer: float stored in %u bytes", w);
    *out = read_float(p, w);
    return KILN_OK;
  }
  if (v->type == KILN_FLEX_INT || v->type == KILN_FLEX_INDIRECT_INT || v->type == KILN_FLEX_UINT ||
      v->type == KILN_FLEX_INDIRECT_UINT) {
    const uint8_t *p;
    unsigned w;
    kiln_status st = scalar_bytes(v, &p, &w, err);
    if (st != KILN_OK) return st;
    const bool is_signed = v->type == KILN_FLEX_INT || v->type == KILN_FLEX_INDIRECT_INT;
    *out = is_signed ? (double)read_i(p, w) : (double)read_u(p, w);
    return KILN_OK;
  }
  return kiln_fail(err, KILN_ERR_FORMAT, "flexbuffer: value is a %s, not a number",
                   kiln_flex_type_name(v->type));
}

kiln_status kiln_flex_get_bool(const kiln_flex_ref *v, bool *out, kiln_error *err) {
  switch (v->type) {
    case KILN_FLEX_BOOL:
    case KILN_FLEX_INT:
    case KILN_FLEX_UINT:
    case KILN_FLEX_INDIRECT_INT:
    case KILN_FLEX_INDIRECT_UINT: {
      const uint8_t *p;
      unsigned w;
      kiln_status st = scalar_bytes(v, &p, &w, err);
      if (st != KILN_OK) return st;
      *out = read_u(p, w) != 0;
      return KILN_OK;
    }
    default:
      return kiln_fail(err, KILN_ERR_FORMAT, "flexbuffer: value is a %s, not a bool",
                       kiln_flex_type_name(v->type));
  }
}

kiln_status kiln_flex_get_string(const kiln_flex_ref *v, const char **out, size_t *len,
                                 kiln_error *err) {
  if (v->type != KILN_FLEX_STRING)
    return kiln_fail(err, KILN_ERR_FORMAT, "flexbuffer: value is a %s, not a string",
                     kiln_flex_type_name(v->type));
  return string_bytes(v, out, len, err);
}

/* ---- Writer ---- */

typedef struct out_buf {
  uint8_t *data;
  size_t len, cap;
  bool failed;
} out_buf;

static void put_bytes(out_buf *b, const void *src, size_t n) {
  if (b->failed || n == 0) return;
  if (n > b->cap - b->len) {
    size_t cap = b->cap ? b->cap : 256;
    while (n > cap - b->len) cap *= 2;
    uint8_t *grown = kiln_realloc(b->data, cap);
    if (!grown) {
      b->failed = true;
      return;
    }
    b->data = grown;
    b->cap = cap;
  }
  memcpy(b->data + b->len, src, n);
  b->len += n;
}

static void put_uint(out_buf *b, uint64_t v, unsigned w) {
  uint8_t bytes[8];
  for (unsigned i = 0; i < w; i++) bytes[i] = (uint8_t)(v >> (8 * i));
  put_bytes(b, bytes, w);
}

/* Bit widths as flexbuffers codes them: 0..3 for 1, 2, 4, 8 bytes. */
static unsigned width_u(uint64_t u) {
  if (!(u & ~(uint64_t)0xFF)) return 0;
  if (!(u & ~(uint64_t)0xFFFF)) return 1;
  if (!(u & ~(uint64_t)0xFFFFFFFF)) return 2;
  return 3;
}

static unsigned width_i(int64_t i) {
  const uint64_t u = (uint64_t)i << 1;
  return width_u(i >= 0 ? u : ~u);
}

static float to_float(double d) {
  if (d > FLT_MAX) return INFINITY;
  if (d < -FLT_MAX) return -INFINITY;
  return (float)d;
}

static unsigned width_f(double d) { return (double)to_float(d) == d ? 2 : 3; }

static size_t padding(size_t size, size_t w) { return (~size + 1) & (w - 1); }

/* Pads with zeros to the alignment of a bit width; returns its byte count. */
static unsigned align_to(out_buf *b, unsigned bit_width) {
  static const uint8_t zeros[8] = {0};
  const unsigned w = 1u << bit_width;
  put_bytes(b, zeros, padding(b->len, w));
  return w;
}

/* Builder::Value::ElemWidth for an offset to `target` stored as element
 * elem_index of a vector about to be written at the end of the buffer. */
static unsigned offset_width(size_t buf_len, size_t elem_index, size_t target) {
  for (size_t w = 1; w <= 8; w *= 2) {
    const size_t loc = buf_len + padding(buf_len, w) + elem_index * w;
    if (((size_t)1 << width_u(loc - target)) == w) return width_u(loc - target);
  }
  return 3;
}

static unsigned entry_type(const kiln_flex_entry *e) {
  switch (e->kind) {
    case KILN_FLEX_ENTRY_INT: return KILN_FLEX_INT;
    case KILN_FLEX_ENTRY_BOOL: return KILN_FLEX_BOOL;
    default: return KILN_FLEX_FLOAT;
  }
}

static unsigned entry_min_width(const kiln_flex_entry *e) {
  switch (e->kind) {
    case KILN_FLEX_ENTRY_INT: return width_i(e->i);
    case KILN_FLEX_ENTRY_FLOAT: return 2;
    case KILN_FLEX_ENTRY_DOUBLE: return width_f(e->f);
    default: return 0;
  }
}

static void put_entry_value(out_buf *b, const kiln_flex_entry *e, unsigned w) {
  if (e->kind == KILN_FLEX_ENTRY_INT) {
    put_uint(b, (uint64_t)e->i, w);
  } else if (e->kind == KILN_FLEX_ENTRY_BOOL) {
    put_uint(b, e->b ? 1u : 0u, w);
  } else {
    const double d = e->kind == KILN_FLEX_ENTRY_FLOAT ? (double)to_float(e->f) : e->f;
    if (w == 8) {
      uint64_t bits;
      memcpy(&bits, &d, sizeof bits);
      put_uint(b, bits, 8);
    } else {
      const float f = to_float(d);
      uint32_t bits;
      memcpy(&bits, &f, sizeof bits);
      put_uint(b, bits, 4);
    }
  }
}

kiln_status kiln_flex_write_map(const kiln_flex_entry *entries, size_t n, uint8_t **out,
                                size_t *out_size, kiln_error *err) {
  *out = NULL;
  *out_size = 0;
  for (size_t i = 0; i < n; i++) {
    if (!entries[i].key)
      return kiln_fail(err, KILN_ERR_INVALID_ARG, "flexbuffer writer: entry %zu has no key", i);
    if (entries[i].kind > KILN_FLEX_ENTRY_BOOL)
      return kiln_fail(err, KILN_ERR_INVALID_ARG, "flexbuffer writer: entry '%s' has kind %d",
                       entries[i].key, (int)entries[i].kind);
  }
  size_t *key_loc = kiln_calloc(n ? n : 1, sizeof *key_loc);
  size_t *order = kiln_calloc(n ? n : 1, sizeof *order);
  out_buf b = {0};
  kiln_status st = KILN_OK;
  if (!key_loc || !order) {
    st = kiln_fail(err, KILN_ERR_NOMEM, "flexbuffer writer: out of memory");
    goto done;
  }
  /* Key strings in call order, as Builder::Key writes them. */
  for (size_t i = 0; i < n; i++) {
    key_loc[i] = b.len;
    put_bytes(&b, entries[i].key, strlen(entries[i].key) + 1);
  }
  /* EndMap: entries sorted by key (insertion sort; keys are distinct). */
  for (size_t i = 0; i < n; i++) {
    size_t j = i;
    while (j > 0 && strcmp(entries[order[j - 1]].key, entries[i].key) > 0) {
      order[j] = order[j - 1];
      j--;
    }
    order[j] = i;
    if (j > 0 && strcmp(entries[order[j - 1]].key, entries[i].key) == 0) {
      st = kiln_fail(err, KILN_ERR_INVALID_ARG, "flexbuffer writer: duplicate key '%s'",
                     entries[i].key);
      goto done;
    }
  }
  /* The keys vector: a typed vector of offsets; in the Builder's stack the
   * key of sorted entry k sits at index 2k, hence element index 2k + 1. */
  unsigned keys_bits = width_u(n);
  for (size_t k = 0; k < n; k++) {
    const unsigned bits = offset_width(b.len, 2 * k + 1, key_loc[order[k]]);
    if (bits > keys_bits) keys_bits = bits;
  }
  unsigned w = align_to(&b, keys_bits);
  put_uint(&b, n, w);
  const size_t keys_loc = b.len;
  for (size_t k = 0; k < n; k++) put_uint(&b, b.len - key_loc[order[k]], w);

  /* The values vector, prefixed by the keys offset, keys width and size. */
  unsigned bits = width_u(n);
  const unsigned keys_off_bits = offset_width(b.len, 0, keys_loc);
  if (keys_off_bits > bits) bits = keys_off_bits;
  for (size_t k = 0; k < n; k++) {
    const unsigned ew = entry_min_width(&entries[order[k]]);
    if (ew > bits) bits = ew;
  }
  w = align_to(&b, bits);
  put_uint(&b, b.len - keys_loc, w);
  put_uint(&b, (uint64_t)1 << keys_bits, w);
  put_uint(&b, n, w);
  const size_t values_loc = b.len;
  for (size_t k = 0; k < n; k++) put_entry_value(&b, &entries[order[k]], w);
  for (size_t k = 0; k < n; k++) {
    const kiln_flex_entry *e = &entries[order[k]];
    const unsigned stored = entry_min_width(e) > bits ? entry_min_width(e) : bits;
    const uint8_t packed = (uint8_t)((entry_type(e) << 2) | stored);
    put_bytes(&b, &packed, 1);
  }

  /* Finish: the root offset, its packed type and its byte width. */
  const unsigned root_w = align_to(&b, offset_width(b.len, 0, values_loc));
  put_uint(&b, b.len - values_loc, root_w);
  const uint8_t tail[2] = {(uint8_t)((KILN_FLEX_MAP << 2) | bits), (uint8_t)root_w};
  put_bytes(&b, tail, 2);
  if (b.failed) {
    st = kiln_fail(err, KILN_ERR_NOMEM, "flexbuffer writer: out of memory");
    goto done;
  }
  *out = b.data;
  *out_size = b.len;
  b.data = NULL;
done:
  kiln_free(b.data);
  kiln_free(key_loc);
  kiln_free(order);
  return st;
}
