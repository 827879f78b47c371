/*
 * data/import_yolo.c: YOLO (Ultralytics/Darknet) detection datasets:
 *   data.yaml: path (base folder), train/val/test (a folder of images, a
 *              .txt list of image paths, or a list of either), names (a
 *              list, or a mapping 0: a, 1: b, ...), nc (optional check);
 *   one label file per image: the image path with its last images/
 *   folder replaced by labels/ and the extension by .txt; one line per
 *   box "class x_center y_center width height", normalized to 0..1; an
 *   empty file means no objects.
 * Without a data.yaml: images/ beside labels/ and classes.txt for the names,
 * split from images/{train,val,test} when those exist.
 * Every path data.yaml gives must stay inside the dataset (an archive's
 * data.yaml cannot make kiln read elsewhere); a "path:" that does not exist
 * inside it (an absolute path from the exporting machine) falls back to
 * data.yaml's folder, and "../x" that leaves it is read as "x" (Roboflow's
 * exports).
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <yaml.h>

#include "base/dir.h"
#include "data/data_int.h"

#define YAML_MAX_BYTES (1u << 20)
#define LABEL_MAX_BYTES (64u << 20)
#define MAX_FILES 10000000

typedef struct yolo_state {
  const char **names;
  int32_t n_names;
  const char *names_from; /* "data.yaml" or "classes.txt", for messages */
  smap by_image;          /* image rel -> item */
  smap labels_used;       /* label rel -> 1 */
} yolo_state;

/* ---- YAML ---- */

static yaml_node_t *map_get(yaml_document_t *doc, yaml_node_t *map, const char *key) {
  if (!map || map->type != YAML_MAPPING_NODE) return NULL;
  for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
    yaml_node_t *k = yaml_document_get_node(doc, p->key);
    if (k && k->type == YAML_SCALAR_NODE && strcmp((const char *)k->data.scalar.value, key) == 0)
      return yaml_document_get_node(doc, p->value);
  }
  return NULL;
}

static const char *scalar(yaml_node_t *n) {
  return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

/* names: as a list or a {index: name} mapping with keys 0..n-1. */
static kiln_status read_names(dbuild *db, yolo_state *ys, const char *yname, yaml_document_t *doc,
                              yaml_node_t *names) {
  int32_t n = 0;
  if (names && names->type == YAML_SEQUENCE_NODE)
    n = (int32_t)(names->data.sequence.items.top - names->data.sequence.items.start);
  else if (names && names->type == YAML_MAPPING_NODE)
    n = (int32_t)(names->data.mapping.pairs.top - names->data.mapping.pairs.start);
  else
    return db_problem(db, KILN_ISSUE_BAD_ANNOTATION, "%s: no names: list (the class names)", yname);
  ys->names = kiln_calloc((size_t)n + 1, sizeof *ys->names);
  if (!ys->names) return KILN_ERR_NOMEM;
  ys->n_names = n;
  for (int32_t i = 0; i < n; i++) {
    if (names->type == YAML_SEQUENCE_NODE) {
      const char *v = scalar(yaml_document_get_node(doc, names->data.sequence.items.start[i]));
      if (!v || !*v)
        return db_problem(db, KILN_ISSUE_BAD_ANNOTATION, "%s: names[%d] is not a name", yname, i);
      ys->names[i] = db_str(db, v);
      continue;
    }
    yaml_node_pair_t *p = &names->data.mapping.pairs.start[i];
    const char *k = scalar(yaml_document_get_node(doc, p->key));
    const char *v = scalar(yaml_document_get_node(doc, p->value));
    long long idx;
    if (!k || !parse_int(k, 0, n - 1, &idx) || !v || !*v)
      return db_problem(db, KILN_ISSUE_BAD_ANNOTATION,
                        "%s: names: entry '%s' is not 'index: name' with an index in 0..%d", yname,
                        k ? k : "?", n - 1);
    if (ys->names[idx])
      return db_problem(db, KILN_ISSUE_BAD_ANNOTATION, "%s: names: index %lld given twice", yname, idx);
    ys->names[idx] = db_str(db, v);
  }
  return KILN_OK;
}

/* ---- paths ---- */

/* Normalizes "a/./b/../c" lexically into out; false when it leaves the
 * root (more ".." than folders) or is absolute. */
static bool normalize(const char *in, char *out, size_t size) {
  if (in[0] == '/') return false;
  size_t len = 0;
  out[0] = '\0';
  for (const char *p = in; *p;) {
    const char *slash = strchr(p, '/');
    size_t n = slash ? (size_t)(slash - p) : strlen(p);
    if (n == 2 && p[0] == '.' && p[1] == '.') {
      if (len == 0) return false;
      while (len > 0 && out[len - 1] != '/') len--;
      if (len > 0) len--;
      out[len] = '\0';
    } else if (n > 0 && !(n == 1 && p[0] == '.')) {
      if (len + n + 2 > size) return false;
      if (len) out[len++] = '/';
      memcpy(out + len, p, n);
      len += n;
      out[len] = '\0';
    }
    if (!slash) break;
    p = slash + 1;
  }
  return true;
}

/* dir + "/" + p normalized inside the root; "../x" leaving it is read as
 * "x" relative to dir (see the file comment). */
static bool resolve(const char *dir, const char *p, char *out, size_t size) {
  char joined[4096];
  snprintf(joined, sizeof joined, "%s%s%s", dir, *dir ? "/" : "", p);
  if (normalize(joined, out, size)) return true;
  while (strncmp(p, "../", 3) == 0) p += 3;
  snprintf(joined, sizeof joined, "%s%s%s", dir, *dir ? "/" : "", p);
  return normalize(joined, out, size);
}

/* The label file of an image: last "images" folder -> "labels", .txt. */
static void label_rel(const char *img_rel, char *out, size_t size) {
  char buf[4096];
  snprintf(buf, sizeof buf, "%s", img_rel);
  char *hit = NULL;
  for (char *p = buf; (p = strstr(p, "images/")) != NULL; p++)
    if (p == buf || p[-1] == '/') hit = p;
  if (hit) memcpy(hit, "labels", 6);
  char *dot = strrchr(buf, '.');
  char *slash = strrchr(buf, '/');
  if (dot && (!slash || dot > slash)) *dot = '\0';
  snprintf(out, size, "%s.txt", buf);
}

/* ---- label files ---- */

static kiln_status read_labels(dbuild *db, yolo_state *ys, int32_t item, const char *lrel) {
  const char *path = db_join(db, db->root, lrel), *name = db_name(db, lrel);
  char *text;
  size_t len;
  kiln_error e;
  if (fs_read_text(path, LABEL_MAX_BYTES, &text, &len, &e) != KILN_OK)
    return db_problem_path(db, KILN_ISSUE_SYNTAX, &e, path, lrel);
  db_annotated(db, item, name);
  kiln_status s = KILN_OK;
  int32_t line = 0;
  for (char *p = text; s == KILN_OK && p < text + len;) {
    char *nl = memchr(p, '\n', (size_t)(text + len - p));
    if (nl) *nl = '\0';
    line++;
    char *field[8];
    int n = 0;
    for (char *t = p; *t && n < 8;) {
      while (*t && isspace((unsigned char)*t)) *t++ = '\0';
      if (!*t) break;
      field[n++] = t;
      while (*t && !isspace((unsigned char)*t)) t++;
    }
    dloc at = {name, DLOC_LINE, line};
    if (n == 0) {
      /* blank line */
    } else if (n != 5) {
      s = db_problem(db, KILN_ISSUE_BAD_ANNOTATION,
                     "%s: line %d: expected 5 numbers (class x_center y_center width height), found %s%d%s",
                     name, line, n == 8 ? "more than " : "", n == 8 ? 7 : n,
                     n > 5 ? " (polygon/segmentation labels are not supported)" : "");
      break;
    } else {
      long long cls;
      float v[4];
      int bad = -1;
      for (int k = 0; k < 4 && bad < 0; k++)
        if (!parse_float(field[k + 1], &v[k])) bad = k + 1;
      if (!parse_int(field[0], 0, INT32_MAX, &cls)) {
        s = db_problem(db, KILN_ISSUE_BAD_ANNOTATION, "%s: line %d: class '%s' is not a non-negative integer",
                       name, line, field[0]);
        break;
      }
      if (bad >= 0) {
        s = db_problem(db, KILN_ISSUE_BAD_ANNOTATION, "%s: line %d: '%s' is not a number", name, line,
                       field[bad]);
        break;
      }
      if (cls >= ys->n_names) {
        s = db_problem(db, KILN_ISSUE_UNKNOWN_LABEL, "%s: line %d: class %lld is not in %s's names (%d classes); skipped",
                       name, line, cls, ys->names_from, ys->n_names);
        db->items[item].dropped_boxes = true;
      } else {
        int32_t label;
        s = db_label(db, ys->names[cls], &at, &label);
        if (s == KILN_OK && label < 0) db->items[item].dropped_boxes = true;
        if (s == KILN_OK && label >= 0) s = db_add_box(db, item, DBOX_CENTER_REL, v, label, 0, &at);
      }
    }
    if (!nl) break;
    p = nl + 1;
  }
  kiln_free(text);
  return s;
}

/* One image (path relative to the root) of a split. */
static kiln_status add_image(dbuild *db, yolo_state *ys, const char *rel, kiln_split split,
                             const dloc *from) {
  int32_t item = smap_get(&ys->by_image, rel);
  if (item >= 0) return db_set_split(db, item, split, from);
  const char *full = db_join(db, db->root, rel), *name = db_name(db, rel), *key = db_str(db, rel);
  kiln_status s = db_add_file(db, full, name, split, &item);
  if (s == KILN_OK) s = smap_put(&ys->by_image, key, item);
  if (s == KILN_OK) db->items[item].split_at = *from;
  char lrel[4096];
  label_rel(rel, lrel, sizeof lrel);
  const char *lpath = db_join(db, db->root, lrel), *lkey = db_str(db, lrel);
  if (s != KILN_OK) return s;
  if (!fs_is_file(lpath)) {
    db->items[item].expected_ann = db_name(db, lrel);
    return KILN_OK;
  }
  s = smap_put(&ys->labels_used, lkey, 1);
  return s == KILN_OK ? read_labels(db, ys, item, lrel) : s;
}

/* A split source: a folder of images or a .txt list of image paths. */
static kiln_status add_source(dbuild *db, yolo_state *ys, const char *yname, const char *key,
                              const char *base, const char *value, kiln_split split) {
  char rel[4096];
  if (!resolve(base, value, rel, sizeof rel))
    return db_problem(db, KILN_ISSUE_BAD_ANNOTATION, "%s: %s: '%s' is outside the dataset", yname, key, value);
  const char *full = *rel ? db_join(db, db->root, rel) : db->root;
  dloc from = {yname, DLOC_NONE, 0};
  kiln_status s = KILN_OK;
  if (fs_is_dir(full)) {
    kiln_file_list files;
    kiln_error e;
    static const char *const exts[] = {".jpg", ".jpeg", ".png", ".pgm", ".ppm", NULL};
    if (kiln_list_files(full, exts, MAX_FILES, &files, &e) != KILN_OK)
      return db_problem_err(db, KILN_ISSUE_NOT_FOUND, &e);
    size_t skip = strlen(db->root) + 1;
    for (size_t i = 0; i < files.count && s == KILN_OK; i++)
      s = add_image(db, ys, files.paths[i] + skip, split, &from);
    kiln_file_list_free(&files);
    return s;
  }
  if (!fs_is_file(full))
    return db_problem(db, KILN_ISSUE_NOT_FOUND, "%s: %s: '%s' not found (as %s)", yname, key, value,
                      db_name(db, rel));
  char *text;
  kiln_error e;
  if (fs_read_text(full, LABEL_MAX_BYTES, &text, NULL, &e) != KILN_OK)
    return db_problem_path(db, KILN_ISSUE_SYNTAX, &e, full, rel);
  char list_dir[4096];
  snprintf(list_dir, sizeof list_dir, "%s", rel);
  char *slash = strrchr(list_dir, '/');
  if (slash) *slash = '\0';
  else list_dir[0] = '\0';
  const char *lname = db_name(db, rel);
  int32_t line = 0;
  for (char *p = text; s == KILN_OK && *p;) {
    char *nl = strchr(p, '\n');
    if (nl) *nl = '\0';
    line++;
    char item_path[4096], img[4096];
    if (sscanf(p, " %4095[^\r\n]", item_path) == 1) {
      char *end = item_path + strlen(item_path);
      while (end > item_path && isspace((unsigned char)end[-1])) *--end = '\0';
      if (!resolve(list_dir, item_path, img, sizeof img))
        s = db_problem(db, KILN_ISSUE_BAD_ANNOTATION, "%s: line %d: '%s' is outside the dataset", lname,
                       line, item_path);
      else if (!fs_is_file(db_join(db, db->root, img)))
        s = db_problem(db, KILN_ISSUE_MISSING_IMAGE, "%s: line %d: '%s' not found; skipped", lname, line,
                       item_path);
      else
        s = add_image(db, ys, img, split, &(dloc){lname, DLOC_LINE, line});
    }
    if (!nl) break;
    p = nl + 1;
  }
  kiln_free(text);
  return s;
}

/* data.yaml: names, then each split's sources. */
static kiln_status read_yaml(dbuild *db, yolo_state *ys, const char *yrel) {
  const char *path = db_join(db, db->root, yrel), *yname = db_name(db, yrel);
  char *text;
  size_t len;
  kiln_error e;
  if (fs_read_text(path, YAML_MAX_BYTES, &text, &len, &e) != KILN_OK)
    return db_problem_path(db, KILN_ISSUE_SYNTAX, &e, path, yrel);
  yaml_parser_t parser;
  yaml_document_t doc;
  if (!yaml_parser_initialize(&parser)) {
    kiln_free(text);
    return KILN_ERR_NOMEM;
  }
  yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
  kiln_status s = KILN_OK;
  if (!yaml_parser_load(&parser, &doc)) {
    s = db_problem(db, KILN_ISSUE_SYNTAX, "%s: line %zu: YAML error: %s", yname,
                   parser.problem_mark.line + 1, parser.problem ? parser.problem : "malformed");
    yaml_parser_delete(&parser);
    kiln_free(text);
    return s;
  }
  yaml_node_t *root = yaml_document_get_root_node(&doc);
  if (!root || root->type != YAML_MAPPING_NODE) {
    s = db_problem(db, KILN_ISSUE_BAD_ANNOTATION, "%s: not a YAML mapping (names:, train:, val:)", yname);
    goto out;
  }
  ys->names_from = fs_basename(yrel);
  s = read_names(db, ys, yname, &doc, map_get(&doc, root, "names"));
  if (s != KILN_OK || db->ds->n_errors) goto out;
  const char *nc = scalar(map_get(&doc, root, "nc"));
  long long ncv;
  if (nc && (!parse_int(nc, 0, INT32_MAX, &ncv) || ncv != ys->n_names)) {
    s = db_problem(db, KILN_ISSUE_BAD_ANNOTATION, "%s: nc is %s but names has %d entries", yname, nc,
                   ys->n_names);
    goto out;
  }
  s = db_fix_labels(db, ys->names, ys->n_names);
  char ydir[4096], base[4096];
  snprintf(ydir, sizeof ydir, "%s", yrel);
  char *slash = strrchr(ydir, '/');
  if (slash) *slash = '\0';
  else ydir[0] = '\0';
  const char *pv = scalar(map_get(&doc, root, "path"));
  const char *full_base = NULL;
  if (pv && resolve(ydir, pv, base, sizeof base)) full_base = *base ? db_join(db, db->root, base) : db->root;
  if (!full_base || !fs_is_dir(full_base)) snprintf(base, sizeof base, "%s", ydir);
  static const struct {
    const char *key;
    kiln_split split;
  } keys[] = {{"train", KILN_SPLIT_TRAIN}, {"val", KILN_SPLIT_VAL}, {"test", KILN_SPLIT_TEST}};
  bool any = false;
  for (size_t k = 0; k < 3 && s == KILN_OK; k++) {
    yaml_node_t *v = map_get(&doc, root, keys[k].key);
    if (!v || (scalar(v) && !*scalar(v))) continue;
    if (scalar(v)) {
      any = true;
      s = add_source(db, ys, yname, keys[k].key, base, scalar(v), keys[k].split);
    } else if (v->type == YAML_SEQUENCE_NODE) {
      for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top && s == KILN_OK; it++) {
        const char *sv = scalar(yaml_document_get_node(&doc, *it));
        if (!sv) {
          s = db_problem(db, KILN_ISSUE_BAD_ANNOTATION, "%s: %s: list entries must be paths", yname, keys[k].key);
          break;
        }
        any = true;
        s = add_source(db, ys, yname, keys[k].key, base, sv, keys[k].split);
      }
    } else {
      s = db_problem(db, KILN_ISSUE_BAD_ANNOTATION, "%s: %s: must be a path or a list of paths", yname,
                     keys[k].key);
    }
  }
  if (s == KILN_OK && !any)
    s = db_problem(db, KILN_ISSUE_BAD_ANNOTATION, "%s: no train:, val: or test: image paths", yname);
out:
  yaml_document_delete(&doc);
  yaml_parser_delete(&parser);
  kiln_free(text);
  return s;
}

/* No data.yaml: classes.txt, images/{train,val,test} or images/. */
static kiln_status read_plain(dbuild *db, yolo_state *ys) {
  const char *ct = db_join(db, db->root, "classes.txt");
  if (!fs_is_file(ct))
    return db_problem(db, KILN_ISSUE_NOT_FOUND,
                      "%s: YOLO layout without data.yaml or classes.txt: the class names are unknown",
                      db->display);
  char **names;
  int32_t n;
  kiln_error e;
  if (kiln_data_labels_read(ct, &names, &n, &e) != KILN_OK)
    return db_problem_path(db, KILN_ISSUE_SYNTAX, &e, ct, "classes.txt");
  ys->names = kiln_calloc((size_t)n + 1, sizeof *ys->names);
  kiln_status s = ys->names ? KILN_OK : KILN_ERR_NOMEM;
  for (int32_t i = 0; i < n && s == KILN_OK; i++)
    ys->names[i] = db_str(db, names[i]);
  kiln_data_labels_free(names, n);
  if (s != KILN_OK) return s;
  ys->n_names = n;
  ys->names_from = "classes.txt";
  s = db_fix_labels(db, ys->names, n);
  bool splits = false;
  static const char *const dirs[] = {"train", "val", "valid", "test"};
  for (size_t k = 0; k < 4 && s == KILN_OK; k++) {
    char rel[64];
    snprintf(rel, sizeof rel, "images/%s", dirs[k]);
    const char *full = db_join(db, db->root, rel);
    if (!fs_is_dir(full)) continue;
    splits = true;
    s = add_source(db, ys, "images/", dirs[k], "", rel, split_from_name(dirs[k]));
  }
  if (s == KILN_OK && !splits) s = add_source(db, ys, "images/", "images", "", "images", KILN_SPLIT_UNASSIGNED);
  return s;
}

/* Label files no image claimed. */
static kiln_status report_orphans(dbuild *db, yolo_state *ys) {
  const char *dir = db_join(db, db->root, "labels");
  if (!fs_is_dir(dir)) return KILN_OK;
  kiln_file_list files;
  kiln_error e;
  static const char *const exts[] = {".txt", NULL};
  kiln_status s = kiln_list_files(dir, exts, MAX_FILES, &files, &e);
  if (s != KILN_OK) return s == KILN_ERR_NOMEM ? s : KILN_OK; /* no listing, no orphans to name */
  size_t skip = strlen(db->root) + 1;
  for (size_t i = 0; i < files.count && s == KILN_OK; i++) {
    const char *rel = files.paths[i] + skip;
    if (smap_get(&ys->labels_used, rel) < 0 && strcmp(rel, "labels/classes.txt") != 0)
      s = db_problem(db, KILN_ISSUE_MISSING_IMAGE, "%s%s: no image for this label file; ignored", db->prefix, rel);
  }
  kiln_file_list_free(&files);
  return s;
}

kiln_status import_yolo(dbuild *db) {
  db->task = KILN_TASK_DETECT;
  yolo_state ys;
  memset(&ys, 0, sizeof ys);
  const char *yrel = NULL;
  kiln_status s = KILN_OK;
  if (db->file)
    yrel = db->file;
  else
    s = find_yaml(db, &yrel);
  if (s == KILN_OK) s = yrel ? read_yaml(db, &ys, yrel) : read_plain(db, &ys);
  if (s == KILN_OK && db->ds->n_errors == 0) s = report_orphans(db, &ys);
  kiln_free(ys.names);
  smap_free(&ys.by_image);
  smap_free(&ys.labels_used);
  return s;
}
