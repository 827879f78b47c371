/* Bounds-checked FlatBuffers reading and front-to-back building
 * (see model/flatbuf.h). All multi-byte values are little-endian. */
#include "model/flatbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* ---- Reading ---- */

static uint16_t ld_u16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static uint32_t ld_u32(const uint8_t *p) {
  return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static uint64_t ld_u64(const uint8_t *p) {
  return (uint64_t)ld_u32(p) | ((uint64_t)ld_u32(p + 4) << 32);
}

void fb_reader_init(fb_reader *r, const void *buf, size_t size) {
  memset(r, 0, sizeof *r);
  r->buf = buf;
  r->size = size;
  r->budget = (uint64_t)size * 16 + 4096;
}

bool fb_fail(fb_reader *r, const char *fmt, ...) {
  if (!r->failed) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->msg, sizeof r->msg, fmt, ap);
    va_end(ap);
    r->failed = true;
  }
  return false;
}

static bool spend(fb_reader *r, uint64_t n) {
  if (n > r->budget)
    return fb_fail(r, "too many objects for a %zu-byte file (aliased or hostile offsets)",
                   r->size);
  r->budget -= n;
  return true;
}

static bool table_at(fb_reader *r, size_t pos, fb_table *out) {
  if (!spend(r, 1)) return false;
  if (pos > r->size || r->size - pos < 4)
    return fb_fail(r, "table at offset %zu is outside the %zu-byte file", pos, r->size);
  int32_t soff = (int32_t)ld_u32(r->buf + pos);
  int64_t vt = (int64_t)pos - (int64_t)soff;
  if (vt < 0 || (uint64_t)vt > r->size - 4)
    return fb_fail(r, "table at offset %zu has its vtable outside the file", pos);
  uint16_t vt_len = ld_u16(r->buf + vt);
  uint16_t tb_len = ld_u16(r->buf + vt + 2);
  if (vt_len < 4 || (vt_len & 1) || (uint64_t)vt + vt_len > r->size)
    return fb_fail(r, "table at offset %zu has a bad vtable (%u bytes)", pos, vt_len);
  if (tb_len < 4 || (uint64_t)pos + tb_len > r->size)
    return fb_fail(r, "table at offset %zu runs past the end of the file", pos);
  out->pos = pos;
  out->vtab = (size_t)vt;
  out->vt_len = vt_len;
  out->tb_len = tb_len;
  return true;
}

bool fb_root(fb_reader *r, fb_table *out) {
  if (r->size < 8) return fb_fail(r, "file too short (%zu bytes) to be a flatbuffer", r->size);
  return table_at(r, ld_u32(r->buf), out);
}

/* Offset of the field inside the table, 0 when absent. */
static uint16_t voff(const fb_reader *r, const fb_table *t, int field) {
  size_t e = 4 + 2 * (size_t)field;
  if (e + 2 > t->vt_len) return 0;
  return ld_u16(r->buf + t->vtab + e);
}

bool fb_has(const fb_reader *r, const fb_table *t, int field) { return voff(r, t, field) != 0; }

static bool scalar_pos(fb_reader *r, const fb_table *t, int field, size_t size, size_t *pos,
                       bool *present) {
  uint16_t o = voff(r, t, field);
  *present = o != 0;
  if (!o) return true;
  if ((size_t)o + size > t->tb_len)
    return fb_fail(r, "field %d of the table at offset %zu lies outside the table", field, t->pos);
  *pos = t->pos + o;
  return true;
}

#define FB_SCALAR_GETTER(name, type, size, load)                                  \
  bool name(fb_reader *r, const fb_table *t, int field, type def, type *out) {    \
    size_t pos = 0;                                                               \
    bool present = false;                                                         \
    if (!scalar_pos(r, t, field, size, &pos, &present)) return false;             \
    *out = present ? (type)(load) : def;                                          \
    return true;                                                                  \
  }

FB_SCALAR_GETTER(fb_u8, uint8_t, 1, r->buf[pos])
FB_SCALAR_GETTER(fb_i8, int8_t, 1, (int8_t)r->buf[pos])
FB_SCALAR_GETTER(fb_bool, bool, 1, r->buf[pos] != 0)
FB_SCALAR_GETTER(fb_i32, int32_t, 4, (int32_t)ld_u32(r->buf + pos))
FB_SCALAR_GETTER(fb_u32, uint32_t, 4, ld_u32(r->buf + pos))
FB_SCALAR_GETTER(fb_u64, uint64_t, 8, ld_u64(r->buf + pos))

bool fb_f32(fb_reader *r, const fb_table *t, int field, float def, float *out) {
  uint32_t bits = 0;
  size_t pos = 0;
  bool present = false;
  if (!scalar_pos(r, t, field, 4, &pos, &present)) return false;
  if (!present) {
    *out = def;
    return true;
  }
  bits = ld_u32(r->buf + pos);
  memcpy(out, &bits, 4);
  return true;
}

/* Follows the uoffset stored in a field; *target 0 when absent. */
static bool follow(fb_reader *r, const fb_table *t, int field, size_t *target) {
  size_t pos = 0;
  bool present = false;
  *target = 0;
  if (!scalar_pos(r, t, field, 4, &pos, &present)) return false;
  if (!present) return true;
  uint32_t off = ld_u32(r->buf + pos);
  if (off == 0 || (uint64_t)pos + off >= r->size)
    return fb_fail(r, "field %d of the table at offset %zu points outside the file", field,
                   t->pos);
  *target = pos + off;
  return true;
}

bool fb_table_field(fb_reader *r, const fb_table *t, int field, fb_table *out, bool *present) {
  size_t target;
  *present = false;
  if (!follow(r, t, field, &target)) return false;
  if (!target) return true;
  *present = true;
  return table_at(r, target, out);
}

static bool vector_at(fb_reader *r, size_t pos, size_t elem_size, fb_vec *out) {
  if (pos > r->size || r->size - pos < 4)
    return fb_fail(r, "vector at offset %zu is outside the file", pos);
  uint32_t len = ld_u32(r->buf + pos);
  uint64_t bytes = (uint64_t)len * elem_size;
  if (bytes > r->size - pos - 4)
    return fb_fail(r, "vector at offset %zu claims %u elements, past the end of the file", pos,
                   len);
  if (!spend(r, elem_size == 1 ? len / 64 : len)) return false;
  out->data = pos + 4;
  out->len = len;
  return true;
}

bool fb_vector(fb_reader *r, const fb_table *t, int field, size_t elem_size, fb_vec *out) {
  size_t target;
  out->data = 0;
  out->len = 0;
  if (!follow(r, t, field, &target)) return false;
  if (!target) return true;
  return vector_at(r, target, elem_size, out);
}

bool fb_string(fb_reader *r, const fb_table *t, int field, const char **s, uint32_t *len) {
  fb_vec v = {0, 0};
  *s = NULL;
  *len = 0;
  size_t target;
  if (!follow(r, t, field, &target)) return false;
  if (!target) return true;
  if (!vector_at(r, target, 1, &v)) return false;
  *s = (const char *)r->buf + v.data;
  *len = v.len;
  return true;
}

bool fb_vec_table(fb_reader *r, const fb_vec *v, uint32_t i, fb_table *out) {
  size_t slot = v->data + (size_t)i * 4;
  uint32_t off = ld_u32(r->buf + slot);
  if (off == 0 || (uint64_t)slot + off >= r->size)
    return fb_fail(r, "vector element %u at offset %zu points outside the file", i, slot);
  return table_at(r, slot + off, out);
}

int32_t fb_vec_i32(const fb_reader *r, const fb_vec *v, uint32_t i) {
  return (int32_t)ld_u32(r->buf + v->data + (size_t)i * 4);
}
int64_t fb_vec_i64(const fb_reader *r, const fb_vec *v, uint32_t i) {
  return (int64_t)ld_u64(r->buf + v->data + (size_t)i * 8);
}
float fb_vec_f32(const fb_reader *r, const fb_vec *v, uint32_t i) {
  uint32_t bits = ld_u32(r->buf + v->data + (size_t)i * 4);
  float f;
  memcpy(&f, &bits, 4);
  return f;
}

/* ---- Building ---- */

void fb_builder_init(fb_builder *b) { memset(b, 0, sizeof *b); }
void fb_builder_free(fb_builder *b) {
  kiln_free(b->buf);
  memset(b, 0, sizeof *b);
}

static void st_u16(uint8_t *p, uint16_t v) {
  p[0] = (uint8_t)v;
  p[1] = (uint8_t)(v >> 8);
}
static void st_u32(uint8_t *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void st_bits(uint8_t *p, uint64_t v, size_t size) {
  for (size_t i = 0; i < size; i++) p[i] = (uint8_t)(v >> (8 * i));
}

size_t fb_reserve(fb_builder *b, size_t n) {
  if (b->failed) return 0;
  if (n > SIZE_MAX / 2 - b->len) {
    b->failed = true;
    return 0;
  }
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + n) cap *= 2;
    uint8_t *p = kiln_realloc(b->buf, cap);
    if (!p) {
      b->failed = true;
      return 0;
    }
    b->buf = p;
    b->cap = cap;
  }
  size_t pos = b->len;
  memset(b->buf + pos, 0, n);
  b->len += n;
  return pos;
}

void fb_align(fb_builder *b, size_t align) {
  size_t pad = (align - b->len % align) % align;
  if (pad) fb_reserve(b, pad);
}

size_t fb_write_table(fb_builder *b, const fb_field *fields, int n, size_t *slots) {
  int max_id = -1;
  for (int i = 0; i < n; i++)
    if (fields[i].id > max_id) max_id = fields[i].id;
  size_t vt_len = 4 + 2 * (size_t)(max_id + 1);
  /* Lay out fields by decreasing size, each at an offset that is a multiple
   * of its size; the table starts 8-aligned so every field is aligned. */
  uint16_t offs[FB_MAX_FIELDS];
  size_t tb = 4;
  if (n > FB_MAX_FIELDS) {
    b->failed = true;
    return 0;
  }
  for (size_t size = 8; size >= 1; size /= 2) {
    for (int i = 0; i < n; i++) {
      if (fields[i].size != size) continue;
      tb = (tb + size - 1) / size * size;
      offs[i] = (uint16_t)tb;
      tb += size;
    }
  }
  tb = (tb + 3) / 4 * 4;
  /* vtable, then the table at an 8-aligned position. */
  fb_align(b, 4);
  size_t pad = (8 - (b->len + vt_len) % 8) % 8;
  size_t vt = fb_reserve(b, pad + vt_len) + pad;
  size_t t = fb_reserve(b, tb);
  if (b->failed) return 0;
  st_u16(b->buf + vt, (uint16_t)vt_len);
  st_u16(b->buf + vt + 2, (uint16_t)tb);
  st_u32(b->buf + t, (uint32_t)(t - vt));
  for (int i = 0; i < n; i++) {
    st_u16(b->buf + vt + 4 + 2 * fields[i].id, offs[i]);
    if (fields[i].kind == FB_OFFSET) {
      if (slots) slots[i] = t + offs[i];
    } else {
      st_bits(b->buf + t + offs[i], fields[i].bits, fields[i].size);
    }
  }
  return t;
}

size_t fb_write_vector(fb_builder *b, const void *data, size_t elem_size, uint32_t count,
                       size_t align) {
  if (align < 4) align = 4;
  size_t pad = (align - (b->len + 4) % align) % align;
  if (pad) fb_reserve(b, pad);
  size_t pos = fb_reserve(b, 4 + elem_size * count);
  if (b->failed) return 0;
  st_u32(b->buf + pos, count);
  if (data && count) memcpy(b->buf + pos + 4, data, elem_size * count);
  return pos;
}

size_t fb_write_string(fb_builder *b, const char *s, size_t len) {
  fb_align(b, 4);
  size_t pos = fb_reserve(b, 4 + len + 1);
  if (b->failed) return 0;
  st_u32(b->buf + pos, (uint32_t)len);
  if (len) memcpy(b->buf + pos + 4, s, len);
  return pos;
}

void fb_patch(fb_builder *b, size_t slot, size_t target) {
  if (b->failed) return;
  st_u32(b->buf + slot, (uint32_t)(target - slot));
}
