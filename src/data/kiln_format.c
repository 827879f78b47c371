/*
 * data/kiln_format.c: kiln's own dataset form (documented with
 * kiln_dataset_write in kiln/data.h): images/<sha256>.<ext> named by their
 * content, and dataset.json. Writing copies each image once (a file of
 * that name already there is the same content and is kept) and writes the
 * manifest atomically last; reading checks every field and, through
 * db_finish, that each file still hashes to its name.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/file.h"
#include "data/data_int.h"

/* ---- writing ---- */

typedef struct strbuf {
  char *s;
  size_t len, cap;
  bool nomem;
} strbuf;

static void sb_add(strbuf *b, const char *s, size_t n) {
  if (b->nomem) return;
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + n + 1) cap *= 2;
    char *p = kiln_realloc(b->s, cap);
    if (!p) {
      b->nomem = true;
      return;
    }
    b->s = p;
    b->cap = cap;
  }
  memcpy(b->s + b->len, s, n);
  b->len += n;
  b->s[b->len] = '\0';
}

static void sb_printf(strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(strbuf *b, const char *fmt, ...) {
  char buf[256];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (n > 0) sb_add(b, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
}

static void sb_json_string(strbuf *b, const char *s) {
  sb_add(b, "\"", 1);
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (*p == '"' || *p == '\\') {
      char esc[2] = {'\\', (char)*p};
      sb_add(b, esc, 2);
    } else if (*p < 0x20) {
      sb_printf(b, "\\u%04x", *p);
    } else {
      sb_add(b, (const char *)p, 1);
    }
  }
  sb_add(b, "\"", 1);
}

static void sb_float(strbuf *b, float v) { sb_printf(b, "%.9g", (double)v); }

static const char *ext_of(const uint8_t *d, size_t n) {
  if (n >= 3 && d[0] == 0xFF && d[1] == 0xD8 && d[2] == 0xFF) return "jpg";
  if (n >= 4 && d[0] == 0x89 && d[1] == 'P' && d[2] == 'N' && d[3] == 'G') return "png";
  return NULL;
}

/* Writes two pieces to path through a temporary name and a rename. */
static kiln_status write_store_file(const char *path, const void *a, size_t na, const void *b,
                                    size_t nb, kiln_error *err) {
  char tmp[4200];
  snprintf(tmp, sizeof tmp, "%s.tmpXXXXXX", path);
  int fd = mkstemp(tmp);
  if (fd < 0) return kiln_fail(err, KILN_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
  const void *parts[2] = {a, b};
  size_t sizes[2] = {na, nb};
  bool ok = fchmod(fd, 0644) == 0;
  for (int i = 0; i < 2 && ok; i++) {
    const char *p = parts[i];
    for (size_t left = sizes[i]; left > 0 && ok;) {
      ssize_t w = write(fd, p, left);
      if (w < 0 && errno == EINTR) continue;
      ok = w > 0;
      if (ok) {
        p += w;
        left -= (size_t)w;
      }
    }
  }
  int saved = errno;
  if (close(fd) != 0) ok = false;
  if (ok && rename(tmp, path) == 0) return KILN_OK;
  unlink(tmp);
  return kiln_fail(err, KILN_ERR_IO, "%s: write failed: %s", path, strerror(saved ? saved : errno));
}

/* Copies one image into the store; *ext gets its extension. */
static kiln_status store_image(const kiln_data_image *im, const char *images_dir, const char **ext,
                               kiln_error *err) {
  char path[4200];
  if (im->pixels) {
    *ext = im->channels == 1 ? "pgm" : "ppm";
    snprintf(path, sizeof path, "%s/%s.%s", images_dir, im->hash, *ext);
    if (fs_is_file(path)) return KILN_OK;
    char header[32];
    size_t n = netpbm_header(header, im->width, im->height, im->channels);
    return write_store_file(path, header, n, im->pixels,
                            (size_t)im->width * (size_t)im->height * (size_t)im->channels, err);
  }
  kiln_mapped_file f;
  kiln_status s = kiln_file_map(im->path, &f, err);
  if (s != KILN_OK) return s;
  *ext = ext_of(f.data, f.size);
  unsigned char digest[crypto_hash_sha256_BYTES];
  char hex[KILN_DATA_HASH_HEX + 1];
  crypto_hash_sha256(digest, f.data ? f.data : (const unsigned char *)"", f.size);
  sodium_bin2hex(hex, sizeof hex, digest, sizeof digest);
  if (!*ext || strcmp(hex, im->hash) != 0) {
    kiln_file_unmap(&f);
    return kiln_fail(err, KILN_ERR_IO, "%s: changed since it was imported (SHA-256 differs); not written",
                     im->source);
  }
  snprintf(path, sizeof path, "%s/%s.%s", images_dir, im->hash, *ext);
  s = fs_is_file(path) ? KILN_OK : write_store_file(path, f.data, f.size, "", 0, err);
  kiln_file_unmap(&f);
  return s;
}

static void manifest_image(strbuf *b, const kiln_dataset *ds, const kiln_data_image *im, const char *ext) {
  sb_add(b, "    {\"hash\": ", 13);
  sb_json_string(b, im->hash);
  sb_printf(b, ", \"ext\": \"%s\", \"width\": %d, \"height\": %d, \"split\": \"%s\", \"source\": ", ext,
            im->width, im->height, kiln_split_name(im->split));
  sb_json_string(b, im->source);
  if (ds->task == KILN_TASK_CLASSIFY) {
    sb_printf(b, ", \"label\": %d}", im->label);
    return;
  }
  sb_add(b, ", \"boxes\": [", 12);
  for (int32_t k = 0; k < im->n_boxes; k++) {
    const kiln_data_box *x = &im->boxes[k];
    sb_add(b, k ? ", [" : "[", k ? 3 : 1);
    sb_float(b, x->xmin);
    sb_add(b, ", ", 2);
    sb_float(b, x->ymin);
    sb_add(b, ", ", 2);
    sb_float(b, x->xmax);
    sb_add(b, ", ", 2);
    sb_float(b, x->ymax);
    sb_printf(b, ", %d", x->label);
    if (x->flags) sb_printf(b, ", %u", x->flags);
    sb_add(b, "]", 1);
  }
  sb_add(b, "]}", 2);
}

kiln_status kiln_dataset_write(const kiln_dataset *ds, const char *dir, kiln_error *err) {
  if (sodium_init() < 0) return kiln_fail(err, KILN_ERR_INTERNAL, "libsodium failed to initialize");
  char images_dir[4200], manifest[4200];
  snprintf(images_dir, sizeof images_dir, "%s/images", dir);
  snprintf(manifest, sizeof manifest, "%s/dataset.json", dir);
  kiln_status s = fs_mkdirs(images_dir, err);
  if (s != KILN_OK) return s;
  strbuf b = {0};
  sb_printf(&b, "{\n  \"kiln_dataset\": 1,\n  \"task\": \"%s\",\n  \"source_format\": \"%s\",\n  \"labels\": [",
            kiln_data_task_name(ds->task), kiln_data_format_name(ds->format));
  for (int32_t l = 0; l < ds->n_labels; l++) {
    if (l) sb_add(&b, ", ", 2);
    sb_json_string(&b, ds->labels[l]);
  }
  sb_add(&b, "],\n  \"images\": [\n", 17);
  for (int32_t i = 0; i < ds->n_images && s == KILN_OK; i++) {
    const char *ext = NULL;
    s = store_image(&ds->images[i], images_dir, &ext, err);
    if (s != KILN_OK) break;
    manifest_image(&b, ds, &ds->images[i], ext);
    sb_add(&b, i + 1 < ds->n_images ? ",\n" : "\n", i + 1 < ds->n_images ? 2 : 1);
  }
  sb_add(&b, "  ]\n}\n", 6);
  if (s == KILN_OK && b.nomem) s = kiln_fail(err, KILN_ERR_NOMEM, "%s: out of memory", manifest);
  if (s == KILN_OK) s = kiln_file_write_atomic(manifest, b.s, b.len, err);
  kiln_free(b.s);
  return s;
}

/* ---- reading ---- */

static bool is_hash(const char *s) {
  size_t n = 0;
  for (; s[n]; n++)
    if (!((s[n] >= '0' && s[n] <= '9') || (s[n] >= 'a' && s[n] <= 'f'))) return false;
  return n == KILN_DATA_HASH_HEX;
}

static bool parse_split(const char *s, kiln_split *out) {
  for (int k = 0; k < KILN_SPLIT_COUNT; k++)
    if (strcmp(s, kiln_split_name((kiln_split)k)) == 0) {
      *out = (kiln_split)k;
      return true;
    }
  return false;
}

/* The label index in the dataset for manifest label v (through the names,
 * so a fixed label list applies); -1 after a warning. */
static kiln_status map_label(dbuild *db, const char **names, int32_t n, json_t *v, const dloc *at,
                             int32_t *label) {
  *label = -1;
  char where[512];
  db_where(at, where, sizeof where);
  if (!json_is_integer(v))
    return db_problem(db, KILN_ISSUE_BAD_ANNOTATION, "%s: label must be an integer", where);
  long long x = json_integer_value(v);
  if (x < 0 || x >= n)
    return db_problem(db, KILN_ISSUE_UNKNOWN_LABEL, "%s: label %lld is not in labels (%d); skipped",
                      where, x, n);
  return db_label(db, names[x], at, label);
}

static kiln_status read_boxes(dbuild *db, int32_t item, const char **names, int32_t n_names,
                              json_t *boxes, const dloc *at) {
  char where[512];
  db_where(at, where, sizeof where);
  if (!json_is_array(boxes))
    return db_problem(db, KILN_ISSUE_BAD_ANNOTATION, "%s: a detection dataset needs \"boxes\"", where);
  kiln_status s = KILN_OK;
  for (size_t k = 0; k < json_array_size(boxes) && s == KILN_OK; k++) {
    json_t *b = json_array_get(boxes, k);
    size_t n = json_array_size(b);
    float v[4];
    bool ok = json_is_array(b) && (n == 5 || n == 6);
    for (size_t q = 0; ok && q < 4; q++) {
      json_t *x = json_array_get(b, q);
      double d = json_number_value(x);
      ok = json_is_number(x) && d > -3.0e38 && d < 3.0e38;
      v[q] = (float)d;
    }
    json_t *flags = n == 6 ? json_array_get(b, 5) : NULL;
    if (!ok || (flags && (!json_is_integer(flags) || json_integer_value(flags) < 0 ||
                          json_integer_value(flags) > 0xFFFFFFFFll)))
      return db_problem(db, KILN_ISSUE_BAD_ANNOTATION,
                        "%s: boxes[%zu] is not [xmin, ymin, xmax, ymax, label(, flags)]", where, k);
    int32_t label;
    s = map_label(db, names, n_names, json_array_get(b, 4), at, &label);
    if (s == KILN_OK && label < 0) db->items[item].dropped_boxes = true;
    if (s == KILN_OK && label >= 0)
      s = db_add_box(db, item, DBOX_CORNERS_PX, v, label, flags ? (uint32_t)json_integer_value(flags) : 0, at);
  }
  return s;
}

static kiln_status read_image(dbuild *db, const char *mname, json_t *im, int32_t i,
                              const char **names, int32_t n_names) {
  dloc at = {mname, DLOC_IMAGE, i};
  const char *hash = json_string_value(json_object_get(im, "hash"));
  const char *ext = json_string_value(json_object_get(im, "ext"));
  const char *split_s = json_string_value(json_object_get(im, "split"));
  const char *source = json_string_value(json_object_get(im, "source"));
  json_t *w = json_object_get(im, "width"), *h = json_object_get(im, "height");
  kiln_split split = KILN_SPLIT_UNASSIGNED;
  const char *bad = !hash || !is_hash(hash) ? "\"hash\" must be 64 lowercase hex digits"
                    : !ext || (strcmp(ext, "jpg") && strcmp(ext, "png") && strcmp(ext, "pgm") && strcmp(ext, "ppm"))
                        ? "\"ext\" must be jpg, png, pgm or ppm"
                    : split_s && !parse_split(split_s, &split) ? "\"split\" must be train, val, test or unassigned"
                    : (w && !json_is_integer(w)) || (h && !json_is_integer(h)) ? "\"width\"/\"height\" must be integers"
                                                                               : NULL;
  if (bad) return db_problem(db, KILN_ISSUE_BAD_ANNOTATION, "%s: images[%d]: %s", mname, i, bad);
  char rel[128];
  snprintf(rel, sizeof rel, "images/%s.%s", hash, ext);
  const char *full = db_join(db, db->root, rel), *name = db_name(db, rel);
  if (!fs_is_file(full))
    return db_problem(db, KILN_ISSUE_MISSING_IMAGE, "%s: images[%d]: %s is missing; skipped", mname, i, name);
  int32_t item;
  kiln_status s = db_add_file(db, full, name, split, &item);
  if (s != KILN_OK) return s;
  ditem *it = &db->items[item];
  it->split_at = at;
  it->expected_hash = db_str(db, hash);
  it->origin = source ? db_str(db, source) : NULL;
  if (w && h && json_integer_value(w) > 0 && json_integer_value(h) > 0 &&
      json_integer_value(w) <= INT32_MAX && json_integer_value(h) <= INT32_MAX) {
    it->declared_w = (int32_t)json_integer_value(w);
    it->declared_h = (int32_t)json_integer_value(h);
    it->declared_at = at;
  }
  db_annotated(db, item, mname);
  if (db->task == KILN_TASK_DETECT) return read_boxes(db, item, names, n_names, json_object_get(im, "boxes"), &at);
  int32_t label;
  s = map_label(db, names, n_names, json_object_get(im, "label"), &at, &label);
  if (s == KILN_OK && label < 0) db->items[item].skip = true; /* reported */
  if (s == KILN_OK && label >= 0) s = db_set_label(db, item, label, &at);
  return s;
}

kiln_status import_kiln(dbuild *db) {
  const char *rel = db->file ? db->file : "dataset.json";
  const char *path = db_join(db, db->root, rel), *mname = db_name(db, rel);
  json_error_t je;
  json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
  if (!root) return db_problem(db, KILN_ISSUE_SYNTAX, "%s: line %d: JSON error: %s", mname, je.line, je.text);
  kiln_status s = KILN_OK;
  json_t *version = json_object_get(root, "kiln_dataset"), *labels = json_object_get(root, "labels"),
         *images = json_object_get(root, "images");
  const char *task = json_string_value(json_object_get(root, "task"));
  const char **names = NULL;
  int32_t n_names = 0;
  if (!json_is_integer(version) || json_integer_value(version) != 1) {
    s = db_problem(db, KILN_ISSUE_BAD_ANNOTATION, "%s: \"kiln_dataset\" must be 1 (the version kiln reads)", mname);
    goto out;
  }
  if (!task || (strcmp(task, "classify") && strcmp(task, "detect"))) {
    s = db_problem(db, KILN_ISSUE_BAD_ANNOTATION, "%s: \"task\" must be \"classify\" or \"detect\"", mname);
    goto out;
  }
  db->task = strcmp(task, "detect") == 0 ? KILN_TASK_DETECT : KILN_TASK_CLASSIFY;
  if (!json_is_array(labels) || !json_is_array(images)) {
    s = db_problem(db, KILN_ISSUE_BAD_ANNOTATION, "%s: needs \"labels\" and \"images\" arrays", mname);
    goto out;
  }
  n_names = (int32_t)json_array_size(labels);
  names = kiln_calloc((size_t)n_names + 1, sizeof *names);
  if (!names) {
    s = KILN_ERR_NOMEM;
    goto out;
  }
  for (int32_t l = 0; l < n_names; l++) {
    names[l] = json_string_value(json_array_get(labels, (size_t)l));
    bool dup = false;
    for (int32_t j = 0; names[l] && j < l; j++) dup |= strcmp(names[l], names[j]) == 0;
    if (!names[l] || !*names[l] || dup) {
      s = db_problem(db, KILN_ISSUE_BAD_ANNOTATION, "%s: labels[%d] must be a non-empty name used once",
                     mname, l);
      goto out;
    }
  }
  s = db_fix_labels(db, names, n_names);
  for (size_t i = 0; i < json_array_size(images) && s == KILN_OK && db->ds->n_errors == 0; i++)
    s = read_image(db, mname, json_array_get(images, i), (int32_t)i, names, n_names);
out:
  kiln_free(names);
  json_decref(root);
  return s;
}
