/* numpy .npy reading and writing (see kiln/npy.h). The header is a Python
 * dict literal; only the three keys numpy writes are accepted. */
#include "kiln/npy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/file.h"

static const struct {
  const char *descr;
  kiln_dtype dtype;
} npy_types[] = {
    {"f4", KILN_F32}, {"f2", KILN_F16}, {"i4", KILN_I32}, {"u1", KILN_U8},
    {"i8", KILN_I64}, {"b1", KILN_BOOL}, {"i2", KILN_I16}, {"i1", KILN_I8},
};

/* Finds 'key' in the header and returns a pointer just after its colon. */
static const char *find_key(const char *h, size_t n, const char *key) {
  size_t k = strlen(key);
  for (size_t i = 0; i + k + 2 <= n; i++) {
    if ((h[i] == '\'' || h[i] == '"') && memcmp(h + i + 1, key, k) == 0 && h[i + 1 + k] == h[i]) {
      size_t j = i + k + 2;
      while (j < n && h[j] == ' ') j++;
      if (j < n && h[j] == ':') return h + j + 1;
    }
  }
  return NULL;
}

kiln_status kiln_npy_parse(const void *bytes, size_t size, const char *name, kiln_npy *out,
                           kiln_error *err) {
  memset(out, 0, sizeof *out);
  const unsigned char *p = bytes;
  if (size < 10 || memcmp(p, "\x93NUMPY", 6) != 0)
    return kiln_fail(err, KILN_ERR_FORMAT, "%s: not a .npy file (bad magic)", name);
  unsigned major = p[6];
  size_t hlen, start;
  if (major == 1) {
    hlen = (size_t)p[8] | ((size_t)p[9] << 8);
    start = 10;
  } else if (major == 2 || major == 3) {
    if (size < 12) return kiln_fail(err, KILN_ERR_FORMAT, "%s: truncated .npy header", name);
    hlen = (size_t)p[8] | ((size_t)p[9] << 8) | ((size_t)p[10] << 16) | ((size_t)p[11] << 24);
    start = 12;
  } else {
    return kiln_fail(err, KILN_ERR_UNSUPPORTED, "%s: .npy format version %u", name, major);
  }
  if (hlen > size - start) return kiln_fail(err, KILN_ERR_FORMAT, "%s: truncated .npy header", name);
  const char *h = (const char *)p + start;

  const char *d = find_key(h, hlen, "descr");
  const char *f = find_key(h, hlen, "fortran_order");
  const char *s = find_key(h, hlen, "shape");
  if (!d || !f || !s)
    return kiln_fail(err, KILN_ERR_FORMAT, "%s: .npy header lacks descr, fortran_order or shape", name);
  const char *end = h + hlen;
  while (d < end && *d == ' ') d++;
  if (end - d < 5 || (*d != '\'' && *d != '"'))
    return kiln_fail(err, KILN_ERR_FORMAT, "%s: bad descr in .npy header", name);
  char order = d[1];
  if (order == '>' && !(d[2] == 'u' && d[3] == '1') && !(d[2] == 'i' && d[3] == '1') &&
      !(d[2] == 'b' && d[3] == '1'))
    return kiln_fail(err, KILN_ERR_UNSUPPORTED, "%s: big-endian .npy data is not supported", name);
  if (order != '<' && order != '|' && order != '=' && order != '>')
    return kiln_fail(err, KILN_ERR_FORMAT, "%s: bad byte order in .npy descr", name);
  bool found = false;
  for (size_t i = 0; i < sizeof npy_types / sizeof npy_types[0]; i++) {
    if (memcmp(d + 2, npy_types[i].descr, 2) == 0 && d[4] == d[0]) {
      out->dtype = npy_types[i].dtype;
      found = true;
    }
  }
  if (!found) return kiln_fail(err, KILN_ERR_UNSUPPORTED, "%s: .npy dtype %.6s is not supported", name, d);
  while (f < end && *f == ' ') f++;
  if (end - f >= 4 && memcmp(f, "True", 4) == 0)
    return kiln_fail(err, KILN_ERR_UNSUPPORTED, "%s: Fortran-order .npy data is not supported", name);
  while (s < end && *s == ' ') s++;
  if (s >= end || *s != '(') return kiln_fail(err, KILN_ERR_FORMAT, "%s: bad shape in .npy header", name);
  s++;
  uint64_t elements = 1;
  for (;;) {
    while (s < end && (*s == ' ' || *s == ',')) s++;
    if (s < end && *s == ')') break;
    if (s >= end || *s < '0' || *s > '9')
      return kiln_fail(err, KILN_ERR_FORMAT, "%s: bad shape in .npy header", name);
    uint64_t v = 0;
    while (s < end && *s >= '0' && *s <= '9') {
      v = v * 10 + (uint64_t)(*s - '0');
      if (v > INT32_MAX) return kiln_fail(err, KILN_ERR_FORMAT, "%s: .npy dimension too large", name);
      s++;
    }
    if (out->rank == KILN_MAX_RANK)
      return kiln_fail(err, KILN_ERR_UNSUPPORTED, "%s: .npy rank above %d", name, KILN_MAX_RANK);
    out->shape[out->rank++] = (int32_t)v;
    if (v && elements > (UINT64_C(1) << 40) / v)
      return kiln_fail(err, KILN_ERR_FORMAT, "%s: .npy array too large", name);
    elements *= v;
  }
  size_t need = (size_t)elements * kiln_dtype_size(out->dtype);
  size_t have = size - start - hlen;
  if (have != need)
    return kiln_fail(err, KILN_ERR_FORMAT, "%s: .npy data is %zu bytes but the header needs %zu",
                     name, have, need);
  out->data = kiln_malloc(need);
  if (!out->data) return kiln_fail(err, KILN_ERR_NOMEM, "%s: out of memory", name);
  if (need) memcpy(out->data, p + start + hlen, need);
  out->bytes = need;
  return KILN_OK;
}

kiln_status kiln_npy_read(const char *path, kiln_npy *out, kiln_error *err) {
  kiln_mapped_file file;
  kiln_status s = kiln_file_map(path, &file, err);
  if (s != KILN_OK) return s;
  s = kiln_npy_parse(file.data, file.size, path, out, err);
  kiln_file_unmap(&file);
  return s;
}

static const char *descr_of(kiln_dtype dtype) {
  switch (dtype) {
    case KILN_F32: return "<f4";
    case KILN_F16: return "<f2";
    case KILN_I32: return "<i4";
    case KILN_U8: return "|u1";
    case KILN_I64: return "<i8";
    case KILN_BOOL: return "|b1";
    case KILN_I16: return "<i2";
    case KILN_I8: return "|i1";
  }
  return NULL;
}

kiln_status kiln_npy_write(const char *path, kiln_dtype dtype, int32_t rank, const int32_t *shape,
                           const void *data, kiln_error *err) {
  const char *descr = descr_of(dtype);
  if (!descr) return kiln_fail(err, KILN_ERR_INVALID_ARG, "%s: no .npy dtype for %d", path, (int)dtype);
  char header[256];
  int n = snprintf(header, sizeof header, "{'descr': '%s', 'fortran_order': False, 'shape': (", descr);
  size_t elements = 1;
  for (int32_t i = 0; i < rank; i++) {
    n += snprintf(header + n, sizeof header - (size_t)n, "%d,%s", (int)shape[i],
                  i + 1 < rank ? " " : "");
    elements *= (size_t)shape[i];
  }
  n += snprintf(header + n, sizeof header - (size_t)n, "), }");
  /* Pad with spaces so the data starts 64-byte aligned; end with newline. */
  size_t total = 10 + (size_t)n + 1;
  size_t pad = (64 - total % 64) % 64;
  size_t hlen = (size_t)n + pad + 1;
  size_t bytes = elements * kiln_dtype_size(dtype);
  unsigned char *buf = kiln_malloc(10 + hlen + bytes);
  if (!buf) return kiln_fail(err, KILN_ERR_NOMEM, "%s: out of memory", path);
  memcpy(buf, "\x93NUMPY\x01\x00", 8);
  buf[8] = (unsigned char)(hlen & 0xff);
  buf[9] = (unsigned char)(hlen >> 8);
  memcpy(buf + 10, header, (size_t)n);
  memset(buf + 10 + n, ' ', pad);
  buf[10 + hlen - 1] = '\n';
  if (bytes) memcpy(buf + 10 + hlen, data, bytes);
  kiln_status s = kiln_file_write_atomic(path, buf, 10 + hlen + bytes, err);
  kiln_free(buf);
  return s;
}

void kiln_npy_free(kiln_npy *npy) {
  kiln_free(npy->data);
  memset(npy, 0, sizeof *npy);
}
