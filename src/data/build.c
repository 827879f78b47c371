/*
 * data/build.c: the builder importers fill (see data_int.h): items, labels,
 * boxes in their native form, problems with their messages; plus the
 * string map and the small parsing and formatting helpers.
 *
 * Invariants: every string an item or box points to lives in the store's
 * pool; label indices in items and boxes are valid for db->label_names
 * (unknown labels never get in); boxes have positive width and height in
 * their native form.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "data/data_int.h"

/* ---- string map ---- */

static uint64_t str_hash(const char *s) {
  uint64_t h = 1469598103934665603ull;
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return h;
}

static kiln_status smap_grow(smap *m) {
  size_t cap = m->cap ? m->cap * 2 : 64;
  const char **keys = kiln_calloc(cap, sizeof *keys);
  int32_t *values = kiln_calloc(cap, sizeof *values);
  if (!keys || !values) {
    kiln_free(keys);
    kiln_free(values);
    return KILN_ERR_NOMEM;
  }
  for (size_t i = 0; i < m->cap; i++) {
    if (!m->keys[i]) continue;
    size_t j = str_hash(m->keys[i]) & (cap - 1);
    while (keys[j]) j = (j + 1) & (cap - 1);
    keys[j] = m->keys[i];
    values[j] = m->values[i];
  }
  kiln_free(m->keys);
  kiln_free(m->values);
  m->keys = keys;
  m->values = values;
  m->cap = cap;
  return KILN_OK;
}

kiln_status smap_put(smap *m, const char *key, int32_t value) {
  if ((m->count + 1) * 2 > m->cap && smap_grow(m) != KILN_OK) return KILN_ERR_NOMEM;
  size_t j = str_hash(key) & (m->cap - 1);
  while (m->keys[j] && strcmp(m->keys[j], key) != 0) j = (j + 1) & (m->cap - 1);
  if (!m->keys[j]) m->count++;
  m->keys[j] = key;
  m->values[j] = value;
  return KILN_OK;
}

int32_t smap_get(const smap *m, const char *key) {
  if (!m->cap) return -1;
  size_t j = str_hash(key) & (m->cap - 1);
  while (m->keys[j]) {
    if (strcmp(m->keys[j], key) == 0) return m->values[j];
    j = (j + 1) & (m->cap - 1);
  }
  return -1;
}

void smap_free(smap *m) {
  kiln_free(m->keys);
  kiln_free(m->values);
  memset(m, 0, sizeof *m);
}

/* ---- strings ---- */

const char *db_strn(dbuild *db, const char *s, size_t n) {
  const char *copy = kiln_pool_strndup(&db->ds->store->pool, s, n);
  if (copy) return copy;
  db->nomem = true;
  return "";
}

const char *db_str(dbuild *db, const char *s) { return db_strn(db, s, strlen(s)); }

static const char *concat3(dbuild *db, const char *a, const char *sep, const char *b) {
  size_t na = strlen(a), ns = strlen(sep), nb = strlen(b);
  char *s = kiln_pool_alloc(&db->ds->store->pool, na + ns + nb + 1, 1);
  if (!s) {
    db->nomem = true;
    return "";
  }
  memcpy(s, a, na);
  memcpy(s + na, sep, ns);
  memcpy(s + na + ns, b, nb + 1);
  return s;
}

const char *db_name(dbuild *db, const char *rel) { return concat3(db, db->prefix, "", rel); }

const char *db_join(dbuild *db, const char *dir, const char *rel) {
  size_t n = strlen(dir);
  return concat3(db, dir, n && dir[n - 1] == '/' ? "" : "/", rel);
}

kiln_status db_keep(dbuild *db, void *blob) {
  kiln_data_store *st = db->ds->store;
  if (st->n_blobs == st->cap_blobs) {
    int32_t cap = st->cap_blobs ? st->cap_blobs * 2 : 8;
    void **b = kiln_realloc(st->blobs, (size_t)cap * sizeof *b);
    if (!b) return KILN_ERR_NOMEM;
    st->blobs = b;
    st->cap_blobs = cap;
  }
  st->blobs[st->n_blobs++] = blob;
  return KILN_OK;
}

kiln_status slist_add(dbuild *db, slist *l, const char *s) {
  if (l->n == l->cap) {
    int32_t cap = l->cap ? l->cap * 2 : 16;
    const char **p = kiln_realloc(l->s, (size_t)cap * sizeof *p);
    if (!p) return KILN_ERR_NOMEM;
    l->s = p;
    l->cap = cap;
  }
  l->s[l->n++] = db_str(db, s);
  return KILN_OK;
}

void slist_free(slist *l) {
  kiln_free(l->s);
  memset(l, 0, sizeof *l);
}

/* ---- problems ---- */

static kiln_status db_vproblem(dbuild *db, kiln_data_issue issue, const char *fmt, va_list ap) {
  kiln_dataset *ds = db->ds;
  if (db->nomem) return KILN_ERR_NOMEM;
  if (kiln_data_issue_severity(issue) == KILN_DATA_ERROR)
    ds->n_errors++;
  else
    ds->n_warnings++;
  ds->issue_counts[issue]++;
  if (ds->n_problems >= KILN_DATA_MAX_PROBLEMS - 1) return KILN_OK; /* counted; see db_finish */
  if (ds->n_problems == db->problems_cap) {
    int32_t cap = db->problems_cap ? db->problems_cap * 2 : 32;
    kiln_data_problem *p = kiln_realloc(ds->problems, (size_t)cap * sizeof *p);
    if (!p) return KILN_ERR_NOMEM;
    ds->problems = p;
    db->problems_cap = cap;
  }
  char buf[1024];
  vsnprintf(buf, sizeof buf, fmt, ap);
  const char *msg = db_str(db, buf);
  if (db->nomem) return KILN_ERR_NOMEM;
  ds->problems[ds->n_problems].issue = issue;
  ds->problems[ds->n_problems].message = (char *)msg;
  ds->n_problems++;
  return KILN_OK;
}

kiln_status db_problem(dbuild *db, kiln_data_issue issue, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  kiln_status s = db_vproblem(db, issue, fmt, ap);
  va_end(ap);
  return s;
}

kiln_status db_problem_err(dbuild *db, kiln_data_issue issue, const kiln_error *e) {
  if (e->status == KILN_ERR_NOMEM) return KILN_ERR_NOMEM;
  return db_problem(db, issue, "%s", e->msg);
}

kiln_status db_problem_path(dbuild *db, kiln_data_issue issue, const kiln_error *e,
                            const char *path, const char *rel) {
  if (e->status == KILN_ERR_NOMEM) return KILN_ERR_NOMEM;
  size_t n = strlen(path);
  const char *rest = strncmp(e->msg, path, n) == 0 ? e->msg + n : NULL;
  if (rest) return db_problem(db, issue, "%s%s%s", db->prefix, rel, rest);
  return db_problem(db, issue, "%s%s: %s", db->prefix, rel, e->msg);
}

void db_where(const dloc *at, char *buf, size_t size) {
  const char *file = at->file ? at->file : "";
  switch (at->kind) {
    case DLOC_LINE: snprintf(buf, size, "%s: line %d", file, at->index); break;
    case DLOC_OBJECT: snprintf(buf, size, "%s: object %d", file, at->index); break;
    case DLOC_ANNOTATION: snprintf(buf, size, "%s: annotations[%d]", file, at->index); break;
    case DLOC_IMAGE: snprintf(buf, size, "%s: images[%d]", file, at->index); break;
    case DLOC_NONE: snprintf(buf, size, "%s", file); break;
  }
}

/* ---- items ---- */

static kiln_status add_item(dbuild *db, int32_t *index, ditem **out) {
  if (db->n_items == INT32_MAX - 1) return KILN_ERR_LIMIT;
  if (db->n_items == db->cap_items) {
    int32_t cap = db->cap_items ? (db->cap_items > INT32_MAX / 2 ? INT32_MAX - 1 : db->cap_items * 2) : 64;
    ditem *p = kiln_realloc(db->items, (size_t)cap * sizeof *p);
    if (!p) return KILN_ERR_NOMEM;
    db->items = p;
    db->cap_items = cap;
  }
  ditem *it = &db->items[db->n_items];
  memset(it, 0, sizeof *it);
  it->label = -1;
  *index = db->n_items++;
  *out = it;
  return KILN_OK;
}

kiln_status db_add_file(dbuild *db, const char *path, const char *name, kiln_split split,
                        int32_t *index) {
  ditem *it;
  kiln_status s = add_item(db, index, &it);
  if (s != KILN_OK) return s;
  it->path = db_str(db, path);
  it->name = db_str(db, name);
  it->channels = 3;
  it->split = split;
  return KILN_OK;
}

kiln_status db_add_pixels(dbuild *db, const uint8_t *pixels, int32_t width, int32_t height,
                          int32_t channels, const char *name, kiln_split split, int32_t *index) {
  ditem *it;
  kiln_status s = add_item(db, index, &it);
  if (s != KILN_OK) return s;
  it->name = db_str(db, name);
  it->pixels = pixels;
  it->width = width;
  it->height = height;
  it->channels = channels;
  it->split = split;
  return KILN_OK;
}

void db_annotated(dbuild *db, int32_t item, const char *ann_file) {
  db->items[item].annotated = true;
  if (ann_file && !db->items[item].ann_file) db->items[item].ann_file = ann_file;
}

/* ---- labels ---- */

static kiln_status intern_label(dbuild *db, const char *name, int32_t *index) {
  if (db->n_labels == db->cap_labels) {
    int32_t cap = db->cap_labels ? db->cap_labels * 2 : 16;
    char **p = kiln_realloc(db->label_names, (size_t)cap * sizeof *p);
    if (!p) return KILN_ERR_NOMEM;
    db->label_names = p;
    db->cap_labels = cap;
  }
  const char *copy = db_str(db, name);
  db->label_names[db->n_labels] = (char *)copy;
  if (smap_put(&db->label_map, copy, db->n_labels) != KILN_OK) return KILN_ERR_NOMEM;
  *index = db->n_labels++;
  return KILN_OK;
}

kiln_status db_fix_labels(dbuild *db, const char *const *names, int32_t n) {
  if (db->labels_from_options) return KILN_OK;
  db->n_labels = 0;
  smap_free(&db->label_map);
  for (int32_t i = 0; i < n; i++) {
    int32_t idx;
    kiln_status s = intern_label(db, names[i], &idx);
    if (s != KILN_OK) return s;
  }
  db->labels_fixed = true;
  return KILN_OK;
}

kiln_status db_label(dbuild *db, const char *name, const dloc *at, int32_t *index) {
  char where[512];
  *index = -1;
  if (!*name) {
    db_where(at, where, sizeof where);
    return db_problem(db, KILN_ISSUE_BAD_ANNOTATION, "%s: empty label name", where);
  }
  for (const char *p = name; *p; p++)
    if ((unsigned char)*p < 0x20 || *p == 0x7f) {
      db_where(at, where, sizeof where);
      return db_problem(db, KILN_ISSUE_BAD_ANNOTATION,
                        "%s: label name '%s' has a control character (byte 0x%02x)", where, name,
                        (unsigned char)*p);
    }
  int32_t idx = smap_get(&db->label_map, name);
  if (idx >= 0) {
    *index = idx;
    return KILN_OK;
  }
  if (!db->labels_fixed) return intern_label(db, name, index);
  db_where(at, where, sizeof where);
  return db_problem(db, KILN_ISSUE_UNKNOWN_LABEL, "%s: unknown label '%s' (not in the %s); skipped",
                    where, name, db->labels_from_options ? "given label list" : "dataset's class list");
}

kiln_status db_set_label(dbuild *db, int32_t item, int32_t label, const dloc *at) {
  ditem *it = &db->items[item];
  if (it->label < 0) {
    it->label = label;
    it->label_at = *at;
    return KILN_OK;
  }
  if (it->label == label) return KILN_OK;
  char where[512], first[512];
  db_where(at, where, sizeof where);
  db_where(&it->label_at, first, sizeof first);
  return db_problem(db, KILN_ISSUE_CONFLICT,
                    "%s: %s is already labelled '%s' (%s); one label per image, keeping '%s'",
                    where, it->name, db->label_names[it->label], first, db->label_names[it->label]);
}

kiln_status db_set_split(dbuild *db, int32_t item, kiln_split split, const dloc *at) {
  ditem *it = &db->items[item];
  if (it->split == KILN_SPLIT_UNASSIGNED) {
    it->split = split;
    it->split_at = *at;
    return KILN_OK;
  }
  if (it->split == split || split == KILN_SPLIT_UNASSIGNED) return KILN_OK;
  char where[512], first[512];
  db_where(at, where, sizeof where);
  db_where(&it->split_at, first, sizeof first);
  return db_problem(db, KILN_ISSUE_CONFLICT, "%s: %s is already in %s (%s); keeping %s", where,
                    it->name, kiln_split_name(it->split), first, kiln_split_name(it->split));
}

/* ---- boxes ---- */

void fmt_num(char *buf, size_t size, float v) { snprintf(buf, size, "%.6g", (double)v); }

void fmt_box(char *buf, size_t size, dbox_form form, const float v[4]) {
  char a[32], b[32], c[32], d[32];
  fmt_num(a, sizeof a, v[0]);
  fmt_num(b, sizeof b, v[1]);
  fmt_num(c, sizeof c, v[2]);
  fmt_num(d, sizeof d, v[3]);
  switch ((dbox_form)form) {
    case DBOX_CORNERS_PX:
    case DBOX_CORNERS_REL: snprintf(buf, size, "(%s,%s)-(%s,%s)", a, b, c, d); break;
    case DBOX_XYWH_PX: snprintf(buf, size, "[%s,%s,%s,%s]", a, b, c, d); break;
    case DBOX_CENTER_REL: snprintf(buf, size, "[%s %s %s %s]", a, b, c, d); break;
  }
}

/* What is wrong with a box's extent in its native form, or NULL. */
static const char *empty_reason(dbox_form form, const float v[4]) {
  if (form == DBOX_CORNERS_PX || form == DBOX_CORNERS_REL) {
    if (v[2] < v[0]) return "has xmax < xmin";
    if (v[2] == v[0]) return "has zero width (xmin = xmax)";
    if (v[3] < v[1]) return "has ymax < ymin";
    if (v[3] == v[1]) return "has zero height (ymin = ymax)";
    return NULL;
  }
  if (v[2] < 0) return "has a negative width";
  if (v[2] == 0) return "has zero width";
  if (v[3] < 0) return "has a negative height";
  if (v[3] == 0) return "has zero height";
  return NULL;
}

kiln_status db_add_box(dbuild *db, int32_t item, dbox_form form, const float v[4],
                       int32_t label, uint32_t flags, const dloc *at) {
  ditem *it = &db->items[item];
  const char *why = empty_reason(form, v);
  if (why) {
    char where[512], box[160];
    db_where(at, where, sizeof where);
    fmt_box(box, sizeof box, form, v);
    it->dropped_boxes = true;
    if (db->shared_ann)
      return db_problem(db, KILN_ISSUE_BOX_EMPTY, "%s (%s): box %s %s; skipped", where, it->name,
                        box, why);
    return db_problem(db, KILN_ISSUE_BOX_EMPTY, "%s: box %s %s; skipped", where, box, why);
  }
  if (it->n_boxes == it->cap_boxes) {
    int32_t cap = it->cap_boxes ? it->cap_boxes * 2 : 4;
    if (cap > (1 << 24)) return KILN_ERR_LIMIT;
    dbox *p = kiln_realloc(it->boxes, (size_t)cap * sizeof *p);
    if (!p) return KILN_ERR_NOMEM;
    it->boxes = p;
    it->cap_boxes = cap;
  }
  dbox *b = &it->boxes[it->n_boxes++];
  memcpy(b->v, v, sizeof b->v);
  b->label = label;
  b->flags = flags;
  b->where = *at;
  b->form = (uint8_t)form;
  return KILN_OK;
}

/* ---- parsing ---- */

bool parse_float(const char *s, float *out) {
  while (isspace((unsigned char)*s)) s++;
  if (!*s) return false;
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  while (isspace((unsigned char)*end)) end++;
  if (*end || errno == ERANGE || !isfinite(v) || fabs(v) > 3.0e38) return false;
  *out = (float)v;
  return true;
}

bool parse_int(const char *s, long long lo, long long hi, long long *out) {
  while (isspace((unsigned char)*s)) s++;
  if (!*s) return false;
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  while (isspace((unsigned char)*end)) end++;
  if (*end || errno == ERANGE || v < lo || v > hi) return false;
  *out = v;
  return true;
}

bool rel_is_safe(const char *rel) {
  if (!*rel || rel[0] == '/') return false;
  for (const char *p = rel; *p;) {
    const char *slash = strchr(p, '/');
    size_t n = slash ? (size_t)(slash - p) : strlen(p);
    if (n == 2 && p[0] == '.' && p[1] == '.') return false;
    if (!slash) break;
    p = slash + 1;
  }
  return true;
}

kiln_split split_from_name(const char *name) {
  static const struct {
    const char *name;
    kiln_split split;
  } names[] = {{"train", KILN_SPLIT_TRAIN}, {"training", KILN_SPLIT_TRAIN},
               {"val", KILN_SPLIT_VAL},     {"valid", KILN_SPLIT_VAL},
               {"validation", KILN_SPLIT_VAL}, {"test", KILN_SPLIT_TEST},
               {"testing", KILN_SPLIT_TEST}};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    if (strcasecmp(name, names[i].name) == 0) return names[i].split;
  return KILN_SPLIT_UNASSIGNED;
}
