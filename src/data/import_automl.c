/*
 * data/import_automl.c: Google Cloud AutoML Vision CSV files:
 *   detection:      [ML_USE,]PATH,LABEL,X1,Y1,X2,Y2,X3,Y3,X4,Y4
 *                   vertices relative (0..1): the 2-vertex form gives the
 *                   top-left (X1,Y1) and bottom-right (X3,Y3) and leaves
 *                   X2,Y2,X4,Y4 empty; the 4-vertex form gives all corners
 *                   (the box is their min/max);
 *   classification: [ML_USE,]PATH,LABEL
 *   an image alone: [ML_USE,]PATH (and empty fields), e.g. TEST,a.jpg,,,,,,,,,
 * ML_USE is TRAIN, VALIDATION, TEST or UNASSIGNED (any case). A first field
 * that is none of these and does not look like a path (no '/' or '.') is a
 * bad ML_USE. The CSV is a detection file when any row has coordinates.
 * Fields follow RFC 4180 (quotes, doubled quotes, CRLF). A first row whose
 * first field is ml_use/set/split or second is path/image/image_path/
 * gcs_file_path is a header. PATH is relative to the CSV's folder; gs://
 * and absolute paths are looked up by their trailing components there and
 * in images/.
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "data/data_int.h"

#define CSV_MAX_BYTES (1ull << 30)
#define CSV_FIELDS 12

typedef struct csv_row {
  int32_t line;
  int n;
  char *f[CSV_FIELDS]; /* into the text, NUL-terminated, unquoted */
} csv_row;

/* Parses the next row at *pos (rows over CSV_FIELDS fields keep the
 * first ones and count the rest). Returns false at the end. */
static bool next_row(char *text, size_t len, size_t *pos, int32_t *line, csv_row *row,
                     bool *bad_quote) {
  size_t p = *pos;
  if (p >= len) return false;
  row->n = 0;
  row->line = ++*line;
  *bad_quote = false;
  for (;;) {
    char *out = text + p, *start = out;
    if (p < len && text[p] == '"') {
      p++;
      for (;;) {
        if (p >= len) {
          *bad_quote = true;
          break;
        }
        if (text[p] == '"') {
          if (p + 1 < len && text[p + 1] == '"') {
            *out++ = '"';
            p += 2;
            continue;
          }
          p++;
          break;
        }
        if (text[p] == '\n') ++*line;
        *out++ = text[p++];
      }
      while (p < len && text[p] != ',' && text[p] != '\n') p++; /* junk after the quote */
    } else {
      while (p < len && text[p] != ',' && text[p] != '\n') *out++ = text[p++];
    }
    char end = p < len ? text[p] : '\n';
    if (out > start && out[-1] == '\r' && end == '\n') out--;
    *out = '\0';
    if (row->n < CSV_FIELDS) row->f[row->n] = start;
    row->n++;
    p++;
    if (end == '\n') break;
  }
  *pos = p;
  return true;
}

static const char *field(const csv_row *r, int i) { return i < r->n && i < CSV_FIELDS ? r->f[i] : ""; }

static bool blank(const char *s) {
  while (isspace((unsigned char)*s)) s++;
  return *s == '\0';
}

static char *trim(char *s) {
  while (isspace((unsigned char)*s)) s++;
  char *e = s + strlen(s);
  while (e > s && isspace((unsigned char)e[-1])) *--e = '\0';
  return s;
}

static bool ml_use(const char *s, kiln_split *out) {
  static const struct {
    const char *name;
    kiln_split split;
  } names[] = {{"TRAIN", KILN_SPLIT_TRAIN}, {"VALIDATION", KILN_SPLIT_VAL},
               {"TEST", KILN_SPLIT_TEST}, {"UNASSIGNED", KILN_SPLIT_UNASSIGNED}};
  for (size_t i = 0; i < 4; i++)
    if (strcasecmp(s, names[i].name) == 0) {
      *out = names[i].split;
      return true;
    }
  return false;
}

static bool is_header(const csv_row *r) {
  static const char *const first[] = {"ml_use", "set", "split"};
  static const char *const second[] = {"path", "image", "image_path", "gcs_file_path"};
  for (size_t i = 0; i < 3; i++)
    if (strcasecmp(field(r, 0), first[i]) == 0) return true;
  for (size_t i = 0; i < 4; i++)
    if (strcasecmp(field(r, 1), second[i]) == 0) return true;
  return false;
}

typedef struct automl_state {
  smap by_path;    /* path as written -> item, or -2 when missing */
  const char *csv_dir;
} automl_state;

/* The item for a path as written in the CSV; -2 when missing (reported
 * once). */
static kiln_status image_for(dbuild *db, automl_state *st, const char *csv_name, int32_t line,
                             const char *written, int32_t *item) {
  *item = smap_get(&st->by_path, written);
  if (*item != -1) return KILN_OK;
  const char *key = db_str(db, written);
  const char *p = written;
  if (strncmp(p, "gs://", 5) == 0) {
    p += 5;
    p = strchr(p, '/') ? strchr(p, '/') + 1 : p; /* the bucket */
  }
  while (*p == '/') p++;
  /* the path, then ever shorter trailing parts, beside the CSV and in images/ */
  for (const char *tail = p; tail && *tail; tail = strchr(tail, '/') ? strchr(tail, '/') + 1 : NULL) {
    if (!rel_is_safe(tail)) continue;
    static const char *const dirs[] = {"", "images/"};
    for (int d = 0; d < 2; d++) {
      char rel[4096];
      snprintf(rel, sizeof rel, "%s%s%s%s", st->csv_dir, *st->csv_dir ? "/" : "", dirs[d], tail);
      const char *full = db_join(db, db->root, rel);
      if (!fs_is_file(full)) continue;
      const char *name = db_name(db, rel);
      kiln_status s = db_add_file(db, full, name, KILN_SPLIT_UNASSIGNED, item);
      return s == KILN_OK ? smap_put(&st->by_path, key, *item) : s;
    }
  }
  *item = -2;
  kiln_status s = smap_put(&st->by_path, key, -2);
  if (s != KILN_OK) return s;
  return db_problem(db, KILN_ISSUE_MISSING_IMAGE, "%s: line %d: image '%s' not found; its rows are skipped",
                    csv_name, line, written);
}

/* The columns after PATH: label and 8 vertex fields. */
typedef struct csv_ann {
  char *label;
  bool has_box;
  float v[4]; /* x1,y1,x2,y2 relative corners */
} csv_ann;

/* Parses a row's annotation; returns false after recording an error. */
static kiln_status parse_ann(dbuild *db, const char *csv_name, const csv_row *r, int first,
                             csv_ann *a, bool *ok) {
  *ok = false;
  a->label = trim((char *)field(r, first));
  a->has_box = false;
  bool present[8];
  float xy[8];
  int n_present = 0;
  for (int k = 0; k < 8; k++) {
    const char *t = field(r, first + 1 + k);
    present[k] = !blank(t);
    if (!present[k]) continue;
    n_present++;
    if (!parse_float(t, &xy[k]))
      return db_problem(db, KILN_ISSUE_BAD_ANNOTATION, "%s: line %d: vertex value '%s' is not a number",
                        csv_name, r->line, t);
  }
  if (r->n > first + 9)
    return db_problem(db, KILN_ISSUE_BAD_ANNOTATION, "%s: line %d: %d fields, more than the %d of %sPATH,LABEL,X1,Y1,...,X4,Y4",
                      csv_name, r->line, r->n, first + 9, first == 2 ? "ML_USE," : "");
  if (n_present == 0) {
    *ok = true;
    return KILN_OK;
  }
  bool two = n_present == 4 && present[0] && present[1] && present[4] && present[5];
  if (!two && n_present != 8)
    return db_problem(db, KILN_ISSUE_BAD_ANNOTATION,
                      "%s: line %d: a box needs the vertices (X1,Y1) and (X3,Y3), or all four (found %d of 8 values)",
                      csv_name, r->line, n_present);
  if (!*a->label)
    return db_problem(db, KILN_ISSUE_BAD_ANNOTATION, "%s: line %d: box without a label", csv_name, r->line);
  if (two) {
    a->v[0] = xy[0], a->v[1] = xy[1], a->v[2] = xy[4], a->v[3] = xy[5];
  } else {
    a->v[0] = a->v[2] = xy[0];
    a->v[1] = a->v[3] = xy[1];
    for (int k = 1; k < 4; k++) {
      if (xy[2 * k] < a->v[0]) a->v[0] = xy[2 * k];
      if (xy[2 * k] > a->v[2]) a->v[2] = xy[2 * k];
      if (xy[2 * k + 1] < a->v[1]) a->v[1] = xy[2 * k + 1];
      if (xy[2 * k + 1] > a->v[3]) a->v[3] = xy[2 * k + 1];
    }
  }
  a->has_box = true;
  *ok = true;
  return KILN_OK;
}

/* One CSV: pass 1 decides the task (any coordinates: detection) and
 * checks the rows; pass 2 adds them. */
static kiln_status import_csv(dbuild *db, automl_state *st, const char *rel, bool detection_pass,
                              bool *any_box) {
  const char *path = db_join(db, db->root, rel), *name = db_name(db, rel);
  char *text;
  size_t len;
  kiln_error e;
  if (fs_read_text(path, CSV_MAX_BYTES, &text, &len, &e) != KILN_OK)
    return db_problem_path(db, KILN_ISSUE_SYNTAX, &e, path, rel);
  char dir[4096];
  snprintf(dir, sizeof dir, "%s", rel);
  char *slash = strrchr(dir, '/');
  if (slash) *slash = '\0';
  else dir[0] = '\0';
  st->csv_dir = db_str(db, dir);
  size_t pos = 0;
  int32_t line = 0, rows = 0;
  csv_row r;
  bool bad_quote;
  kiln_status s = KILN_OK;
  if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) pos = 3; /* UTF-8 BOM */
  while (s == KILN_OK && next_row(text, len, &pos, &line, &r, &bad_quote)) {
    if (bad_quote) {
      s = db_problem(db, KILN_ISSUE_SYNTAX, "%s: line %d: unterminated quoted field", name, r.line);
      break;
    }
    if (r.n == 1 && blank(field(&r, 0))) continue;
    if (rows++ == 0 && is_header(&r)) continue;
    kiln_split split = KILN_SPLIT_UNASSIGNED;
    char *f0 = trim((char *)field(&r, 0));
    int first = 1;
    if (ml_use(f0, &split)) {
      first = 2;
    } else if (!strchr(f0, '/') && !strchr(f0, '.')) {
      s = db_problem(db, KILN_ISSUE_BAD_ANNOTATION,
                     "%s: line %d: ML_USE '%s' is not TRAIN, VALIDATION, TEST or UNASSIGNED", name, r.line, f0);
      continue;
    }
    char *img = trim((char *)field(&r, first - 1));
    if (!*img) {
      s = db_problem(db, KILN_ISSUE_BAD_ANNOTATION, "%s: line %d: no image path", name, r.line);
      continue;
    }
    csv_ann a;
    bool ok;
    s = parse_ann(db, name, &r, first, &a, &ok);
    if (s != KILN_OK || !ok) continue;
    if (detection_pass) {
      *any_box |= a.has_box;
      continue;
    }
    int32_t item;
    s = image_for(db, st, name, r.line, img, &item);
    if (s != KILN_OK || item < 0) continue;
    dloc at = {name, DLOC_LINE, r.line};
    db_annotated(db, item, name);
    s = db_set_split(db, item, split, &at);
    if (s != KILN_OK || !*a.label) continue;
    if (db->task == KILN_TASK_DETECT && !a.has_box) {
      s = db_problem(db, KILN_ISSUE_BAD_ANNOTATION, "%s: line %d: label '%s' without a box in a detection CSV",
                     name, r.line, a.label);
      continue;
    }
    int32_t label;
    s = db_label(db, a.label, &at, &label);
    if (s != KILN_OK) break;
    if (label < 0) {
      db->items[item].dropped_boxes = true;
      continue;
    }
    if (db->task == KILN_TASK_CLASSIFY)
      s = db_set_label(db, item, label, &at);
    else
      s = db_add_box(db, item, DBOX_CORNERS_REL, a.v, label, 0, &at);
  }
  kiln_free(text);
  return s;
}

kiln_status import_automl(dbuild *db) {
  db->shared_ann = true;
  slist files = {0};
  kiln_status s = db->file ? slist_add(db, &files, db->file) : find_csv(db, &files);
  if (s == KILN_OK && files.n == 0)
    s = db_problem(db, KILN_ISSUE_NOT_FOUND, "%s: no .csv file found", db->display);
  automl_state st;
  memset(&st, 0, sizeof st);
  bool any_box = false;
  int32_t errors = db->ds->n_errors;
  for (int32_t i = 0; i < files.n && s == KILN_OK; i++) s = import_csv(db, &st, files.s[i], true, &any_box);
  db->task = any_box ? KILN_TASK_DETECT : KILN_TASK_CLASSIFY;
  for (int32_t i = 0; i < files.n && s == KILN_OK && db->ds->n_errors == errors; i++)
    s = import_csv(db, &st, files.s[i], false, &any_box);
  smap_free(&st.by_path);
  slist_free(&files);
  return s;
}
