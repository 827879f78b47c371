/*
 * data/import_idx.c: MNIST-style IDX files, raw or gzipped:
 *   images: 00 00 08 03, then big-endian uint32 count, rows, cols, then
 *           count*rows*cols unsigned bytes (grey, row-major);
 *   labels: 00 00 08 01, then count, then count unsigned bytes.
 * Each *idx3-ubyte[.gz] file is paired with the file named with
 * "images"->"labels" and "idx3"->"idx1" (same compression or the other).
 * The split comes from the name (train..., t10k... or test..., val...). Class names
 * come from labels.txt (or classes.txt) beside the files, else "0".."N-1".
 *
 * The pixels are read straight into one buffer per file that the dataset
 * keeps; images point into it (no per-image allocation), so the 70,000
 * Fashion-MNIST images import in a fraction of a second. Sizes are checked
 * against the header before anything is allocated: the declared payload
 * must equal the file's size (raw) or fit what gzip can expand to (at most
 * 1032:1), and rows*cols must be at least 1 and within the pixel limit.
 */
#include <stdio.h>
#include <string.h>
#include <zlib.h>

#include "base/file.h"
#include "data/data_int.h"

#define IDX_MAX_BYTES (16ull << 30)
#define GZIP_MAX_RATIO 1032ull

typedef struct idx_src {
  kiln_mapped_file f;
  bool gz;
  bool z_open, z_end;
  z_stream zs;
  size_t pos; /* raw: read position */
} idx_src;

/* Reads up to n bytes; *got may be short only at the end of the data.
 * Returns a zlib error text, or NULL. */
static const char *src_read(idx_src *s, uint8_t *dst, size_t n, size_t *got) {
  *got = 0;
  if (!s->gz) {
    size_t left = s->f.size - s->pos;
    *got = n < left ? n : left;
    if (*got) memcpy(dst, s->f.data + s->pos, *got);
    s->pos += *got;
    return NULL;
  }
  while (*got < n && !s->z_end) {
    size_t want = n - *got;
    s->zs.next_out = dst + *got;
    s->zs.avail_out = want > (1u << 30) ? (1u << 30) : (uInt)want;
    uInt before = s->zs.avail_out;
    int r = inflate(&s->zs, Z_NO_FLUSH);
    *got += before - s->zs.avail_out;
    if (r == Z_STREAM_END) {
      s->z_end = true;
    } else if (r == Z_BUF_ERROR && s->zs.avail_in == 0) {
      return "truncated gzip data";
    } else if (r != Z_OK) {
      return s->zs.msg ? s->zs.msg : "corrupt gzip data";
    }
  }
  return NULL;
}

static void src_close(idx_src *s) {
  if (s->z_open) inflateEnd(&s->zs);
  kiln_file_unmap(&s->f);
}

typedef struct idx_file {
  uint8_t *data;     /* payload (kiln_malloc) */
  uint32_t dims[3];
} idx_file;

static uint32_t be32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Reads an IDX file with `ndims` dimensions. Problems are recorded as
 * SYNTAX/UNSAFE errors; *ok tells whether out holds data. */
static kiln_status idx_read(dbuild *db, const char *rel, int ndims, idx_file *out, bool *ok) {
  *ok = false;
  memset(out, 0, sizeof *out);
  const char *name = db_name(db, rel), *path = db_join(db, db->root, rel);
  idx_src s;
  memset(&s, 0, sizeof s);
  kiln_error e;
  if (kiln_file_map(path, &s.f, &e) != KILN_OK)
    return db_problem_path(db, KILN_ISSUE_NOT_FOUND, &e, path, rel);
  s.gz = s.f.size >= 2 && s.f.data[0] == 0x1f && s.f.data[1] == 0x8b;
  kiln_status st = KILN_OK;
  if (s.gz) {
    s.zs.next_in = (Bytef *)s.f.data;
    s.zs.avail_in = (uInt)s.f.size;
    if (s.f.size > 0xFFFFFFFFu) {
      src_close(&s);
      return db_problem(db, KILN_ISSUE_UNSAFE, "%s: gzip file over 4 GiB", name);
    }
    if (inflateInit2(&s.zs, 15 + 16) != Z_OK) {
      src_close(&s);
      return KILN_ERR_NOMEM;
    }
    s.z_open = true;
  }
  uint8_t head[16];
  size_t head_len = 4 + 4 * (size_t)ndims, got;
  const char *zerr = src_read(&s, head, head_len, &got);
  if (zerr || got < head_len) {
    st = db_problem(db, KILN_ISSUE_SYNTAX, "%s: %s: the IDX header needs %zu bytes", name,
                    zerr ? zerr : "file too short", head_len);
    goto done;
  }
  if (head[0] != 0 || head[1] != 0 || head[2] != 0x08 || head[3] != ndims) {
    st = db_problem(db, KILN_ISSUE_SYNTAX,
                    "%s: not an IDX %s file: magic %02x %02x %02x %02x (expected 00 00 08 %02x)", name,
                    ndims == 3 ? "image" : "label", head[0], head[1], head[2], head[3], ndims);
    goto done;
  }
  uint64_t payload = 1;
  for (int k = 0; k < ndims; k++) {
    out->dims[k] = be32(head + 4 + 4 * k);
    payload *= out->dims[k];
    if (payload > IDX_MAX_BYTES) break;
  }
  if (ndims == 3 && (out->dims[1] == 0 || out->dims[2] == 0)) {
    st = db_problem(db, KILN_ISSUE_SYNTAX, "%s: images of %ux%u have no pixels", name, out->dims[1],
                    out->dims[2]);
    goto done;
  }
  if (ndims == 3 && (uint64_t)out->dims[1] * out->dims[2] >
                        (db->opt->max_pixels ? db->opt->max_pixels : KILN_IMAGE_DEFAULT_MAX_PIXELS)) {
    st = db_problem(db, KILN_ISSUE_UNSAFE, "%s: images of %ux%u are over the pixel limit", name,
                    out->dims[1], out->dims[2]);
    goto done;
  }
  bool absurd = payload > IDX_MAX_BYTES || (s.gz && payload > GZIP_MAX_RATIO * s.f.size);
  if (absurd || (!s.gz && payload != s.f.size - head_len)) {
    char what[96];
    if (ndims == 3)
      snprintf(what, sizeof what, "%u images of %ux%u", out->dims[0], out->dims[1], out->dims[2]);
    else
      snprintf(what, sizeof what, "%u labels", out->dims[0]);
    if (absurd)
      st = db_problem(db, KILN_ISSUE_UNSAFE, "%s: header declares %s (%llu bytes), more than a %zu-byte file can hold",
                      name, what, (unsigned long long)payload, s.f.size);
    else
      st = db_problem(db, KILN_ISSUE_SYNTAX, "%s: header declares %s (%llu bytes) but %zu bytes follow it",
                      name, what, (unsigned long long)payload, s.f.size - head_len);
    goto done;
  }
  out->data = kiln_malloc(payload ? (size_t)payload : 1);
  if (!out->data) {
    st = KILN_ERR_NOMEM;
    goto done;
  }
  zerr = src_read(&s, out->data, (size_t)payload, &got);
  if (zerr || got < payload) {
    st = db_problem(db, KILN_ISSUE_SYNTAX, "%s: %s: header declares %llu data bytes, got %zu", name,
                    zerr ? zerr : "truncated", (unsigned long long)payload, got);
    goto done;
  }
  uint8_t extra;
  zerr = src_read(&s, &extra, 1, &got);
  if (zerr || got) {
    st = db_problem(db, KILN_ISSUE_SYNTAX, "%s: %s after the %llu bytes the header declares", name,
                    zerr ? zerr : "more data", (unsigned long long)payload);
    goto done;
  }
  *ok = true;
done:
  src_close(&s);
  if (!*ok) {
    kiln_free(out->data);
    out->data = NULL;
  }
  return st;
}

/* "train-images-idx3-ubyte.gz" -> "train-labels-idx1-ubyte.gz" (or the
 * other compression) when it exists. */
static const char *labels_name(dbuild *db, const char *rel, const char **expected) {
  char buf[4096];
  snprintf(buf, sizeof buf, "%s", rel);
  char *p = strstr(buf, "images");
  if (p) memcpy(p, "labels", 6);
  p = strstr(buf, "idx3");
  if (p) p[3] = '1';
  *expected = db_str(db, buf);
  if (fs_is_file(db_join(db, db->root, buf))) return *expected;
  size_t n = strlen(buf);
  if (n > 3 && strcmp(buf + n - 3, ".gz") == 0)
    buf[n - 3] = '\0';
  else if (n + 3 < sizeof buf)
    strcat(buf, ".gz");
  return fs_is_file(db_join(db, db->root, buf)) ? db_str(db, buf) : NULL;
}

static kiln_split split_of(const char *name) {
  if (strncmp(name, "train", 5) == 0) return KILN_SPLIT_TRAIN;
  if (strncmp(name, "t10k", 4) == 0 || strncmp(name, "test", 4) == 0) return KILN_SPLIT_TEST;
  if (strncmp(name, "val", 3) == 0) return KILN_SPLIT_VAL;
  return KILN_SPLIT_UNASSIGNED;
}

/* Class names (pool strings in *names, kiln_malloc'd array): labels.txt /
 * classes.txt, else "0".."max". The dataset's list is fixed to them. */
static kiln_status class_names(dbuild *db, int32_t max_label, const char ***names, int32_t *n,
                               const char **from) {
  static const char *const files[] = {"labels.txt", "classes.txt"};
  *names = NULL;
  *n = 0;
  *from = "the class list";
  char **read = NULL;
  int32_t n_read = 0;
  for (int i = 0; i < 2 && !read; i++) {
    const char *p = db_join(db, db->root, files[i]);
    if (!fs_is_file(p)) continue;
    kiln_error e;
    if (kiln_data_labels_read(p, &read, &n_read, &e) != KILN_OK)
      return db_problem_path(db, KILN_ISSUE_SYNTAX, &e, p, files[i]);
    *from = files[i];
  }
  int32_t count = read ? n_read : max_label + 1;
  const char **list = kiln_calloc((size_t)count + 1, sizeof *list);
  kiln_status s = list ? KILN_OK : KILN_ERR_NOMEM;
  for (int32_t i = 0; i < count && s == KILN_OK; i++) {
    char digits[16];
    snprintf(digits, sizeof digits, "%d", i);
    list[i] = db_str(db, read ? read[i] : digits);
  }
  kiln_data_labels_free(read, n_read);
  if (s == KILN_OK) s = db_fix_labels(db, list, count);
  if (s != KILN_OK) {
    kiln_free(list);
    return s;
  }
  *names = list;
  *n = count;
  return KILN_OK;
}

typedef struct idx_pair {
  const char *images_rel, *labels_rel;
  idx_file images, labels;
} idx_pair;

kiln_status import_idx(dbuild *db) {
  db->task = KILN_TASK_CLASSIFY;
  slist files = {0};
  kiln_status s = KILN_OK;
  if (db->file)
    s = slist_add(db, &files, db->file);
  else
    s = find_idx(db, &files);
  idx_pair *pairs = kiln_calloc((size_t)files.n + 1, sizeof *pairs);
  if (!pairs) s = KILN_ERR_NOMEM;
  int32_t max_label = -1;
  for (int32_t i = 0; i < files.n && s == KILN_OK; i++) {
    idx_pair *p = &pairs[i];
    p->images_rel = files.s[i];
    const char *expected;
    p->labels_rel = labels_name(db, p->images_rel, &expected);
    if (!p->labels_rel) {
      s = db_problem(db, KILN_ISSUE_NOT_FOUND, "%s: no labels file (expected %s)",
                     db_name(db, p->images_rel), db_name(db, expected));
      continue;
    }
    bool ok_images, ok_labels;
    s = idx_read(db, p->images_rel, 3, &p->images, &ok_images);
    if (s == KILN_OK) s = idx_read(db, p->labels_rel, 1, &p->labels, &ok_labels);
    if (s != KILN_OK || !ok_images || !ok_labels) continue;
    if (p->labels.dims[0] != p->images.dims[0]) {
      s = db_problem(db, KILN_ISSUE_BAD_ANNOTATION, "%s: %u labels for the %u images of %s",
                     db_name(db, p->labels_rel), p->labels.dims[0], p->images.dims[0],
                     db_name(db, p->images_rel));
      continue;
    }
    for (uint32_t k = 0; k < p->labels.dims[0]; k++)
      if (p->labels.data[k] > max_label) max_label = p->labels.data[k];
  }
  const char **names = NULL, *names_from = "";
  int32_t n_names = 0;
  if (s == KILN_OK && max_label >= 0) s = class_names(db, max_label, &names, &n_names, &names_from);
  for (int32_t i = 0; i < files.n && s == KILN_OK; i++) {
    idx_pair *p = &pairs[i];
    if (!p->images.data || !p->labels.data || p->labels.dims[0] != p->images.dims[0]) continue;
    if (db_keep(db, p->images.data) != KILN_OK) {
      s = KILN_ERR_NOMEM;
      break;
    }
    uint8_t *pixels = p->images.data;
    p->images.data = NULL;
    int32_t rows = (int32_t)p->images.dims[1], cols = (int32_t)p->images.dims[2];
    size_t stride = (size_t)rows * (size_t)cols;
    kiln_split split = split_of(fs_basename(p->images_rel));
    const char *img_name = db_name(db, p->images_rel);
    dloc at = {db_name(db, p->labels_rel), DLOC_NONE, 0};
    for (uint32_t k = 0; k < p->images.dims[0] && s == KILN_OK; k++) {
      char name[4200];
      snprintf(name, sizeof name, "%s: image %u", img_name, k);
      int32_t v = p->labels.data[k], label = -1;
      if (v >= n_names) {
        s = db_problem(db, KILN_ISSUE_UNKNOWN_LABEL, "%s: label %d of image %u is not in %s (%d classes); skipped",
                       at.file, v, k, names_from, n_names);
        continue;
      }
      s = db_label(db, names[v], &at, &label);
      if (s != KILN_OK || label < 0) continue;
      int32_t item;
      s = db_add_pixels(db, pixels + k * stride, cols, rows, 1, name, split, &item);
      if (s == KILN_OK) s = db_set_label(db, item, label, &at);
    }
  }
  for (int32_t i = 0; pairs && i < files.n; i++) {
    kiln_free(pairs[i].images.data);
    kiln_free(pairs[i].labels.data);
  }
  kiln_free(pairs);
  kiln_free(names);
  slist_free(&files);
  return s;
}
