/*
 * data/import_voc.c: Pascal VOC: one XML file per image,
 *   <annotation><filename/><size><width/><height/></size>
 *     <object><name/><difficult/><bndbox><xmin/><ymin/><xmax/><ymax/></bndbox></object>...
 * in Annotations/ (or annotations/, or beside the images), images in
 * JPEGImages/ (or images/, beside the XML, or at the top), splits from
 * ImageSets/Main/{train,val,trainval,test}.txt when present.
 *
 * XML goes through expat with every entity declaration refused: the
 * parser stops at the first <!ENTITY (the file is an UNSAFE error), so
 * neither billion-laughs expansion nor external entities can happen;
 * parameter-entity parsing is off and no external entity is ever loaded.
 */
#include <expat.h>
#include <stdio.h>
#include <string.h>

#include "base/dir.h"
#include "base/file.h"
#include "data/data_int.h"

#define VOC_MAX_XML (16u << 20)
#define VOC_MAX_DEPTH 32
#define VOC_TEXT 1024

typedef struct voc_object {
  char name[256];
  float v[4];
  bool has[4], has_box, has_name, difficult;
  char bad[64]; /* the first field that is not a number */
} voc_object;

typedef struct voc_doc {
  XML_Parser parser;
  const char *path[VOC_MAX_DEPTH];
  int depth;
  char text[VOC_TEXT];
  size_t text_len;
  char filename[1024];
  long width, height;
  voc_object *objects;
  int32_t n_objects, cap_objects;
  bool nomem;
  char root[64];
  char entity[128];         /* the refused entity's name */
  unsigned long entity_line;
} voc_doc;

static const char *const corner_names[4] = {"xmin", "ymin", "xmax", "ymax"};

static bool at(const voc_doc *d, int depth, const char *a, const char *b, const char *c,
               const char *e) {
  const char *want[4] = {a, b, c, e};
  if (d->depth != depth) return false;
  for (int k = 0; k < depth; k++)
    if (strcmp(d->path[k], want[k]) != 0) return false;
  return true;
}

static void XMLCALL on_start(void *ud, const XML_Char *name, const XML_Char **attrs) {
  (void)attrs;
  voc_doc *d = ud;
  if (d->depth == 0) snprintf(d->root, sizeof d->root, "%s", name);
  if (d->depth < VOC_MAX_DEPTH) d->path[d->depth] = name;
  d->depth++;
  d->text_len = 0;
  d->text[0] = '\0';
  if (at(d, 2, "annotation", "object", NULL, NULL)) {
    if (d->n_objects == d->cap_objects) {
      int32_t cap = d->cap_objects ? d->cap_objects * 2 : 8;
      voc_object *p = cap <= (1 << 20) ? kiln_realloc(d->objects, (size_t)cap * sizeof *p) : NULL;
      if (!p) {
        d->nomem = true;
        XML_StopParser(d->parser, XML_FALSE);
        return;
      }
      d->objects = p;
      d->cap_objects = cap;
    }
    memset(&d->objects[d->n_objects++], 0, sizeof(voc_object));
  } else if (at(d, 3, "annotation", "object", "bndbox", NULL) && d->n_objects) {
    d->objects[d->n_objects - 1].has_box = true;
  }
}

static void XMLCALL on_text(void *ud, const XML_Char *s, int len) {
  voc_doc *d = ud;
  size_t n = (size_t)len;
  if (d->text_len + n >= VOC_TEXT) n = VOC_TEXT - 1 - d->text_len;
  memcpy(d->text + d->text_len, s, n);
  d->text_len += n;
  d->text[d->text_len] = '\0';
}

/* d->text without surrounding white space, in place. */
static char *trimmed(voc_doc *d) {
  char *s = d->text;
  while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r') s++;
  char *e = s + strlen(s);
  while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n' || e[-1] == '\r')) *--e = '\0';
  return s;
}

static void XMLCALL on_end(void *ud, const XML_Char *name) {
  (void)name;
  voc_doc *d = ud;
  voc_object *o = d->n_objects ? &d->objects[d->n_objects - 1] : NULL;
  char *t = trimmed(d);
  long long v;
  if (at(d, 2, "annotation", "filename", NULL, NULL)) {
    snprintf(d->filename, sizeof d->filename, "%s", t);
  } else if (at(d, 3, "annotation", "size", "width", NULL)) {
    d->width = parse_int(t, 1, INT32_MAX, &v) ? (long)v : 0;
  } else if (at(d, 3, "annotation", "size", "height", NULL)) {
    d->height = parse_int(t, 1, INT32_MAX, &v) ? (long)v : 0;
  } else if (o && at(d, 3, "annotation", "object", "name", NULL)) {
    snprintf(o->name, sizeof o->name, "%s", t);
    o->has_name = true;
  } else if (o && at(d, 3, "annotation", "object", "difficult", NULL)) {
    o->difficult = strcmp(t, "1") == 0;
  } else if (o && d->depth == 4 && strcmp(d->path[0], "annotation") == 0 &&
             strcmp(d->path[1], "object") == 0 && strcmp(d->path[2], "bndbox") == 0) {
    for (int k = 0; k < 4; k++) {
      if (strcmp(d->path[3], corner_names[k]) != 0) continue;
      o->has[k] = true;
      if (!parse_float(t, &o->v[k]) && !o->bad[0])
        snprintf(o->bad, sizeof o->bad, "<%s> is '%.40s'", corner_names[k], t);
    }
  }
  d->depth--;
  d->text_len = 0;
  d->text[0] = '\0';
}

static void XMLCALL on_entity(void *ud, const XML_Char *name, int is_param, const XML_Char *value,
                              int value_len, const XML_Char *base, const XML_Char *system_id,
                              const XML_Char *public_id, const XML_Char *notation) {
  (void)is_param, (void)value, (void)value_len, (void)base, (void)system_id, (void)public_id;
  (void)notation;
  voc_doc *d = ud;
  snprintf(d->entity, sizeof d->entity, "%s", name);
  d->entity_line = XML_GetCurrentLineNumber(d->parser);
  XML_StopParser(d->parser, XML_FALSE);
}

/* Parses one XML file; problems recorded; *ok when doc holds its content. */
static kiln_status parse_xml(dbuild *db, const char *rel, voc_doc *d, bool *ok) {
  *ok = false;
  const char *path = db_join(db, db->root, rel), *name = db_name(db, rel);
  kiln_mapped_file f;
  kiln_error e;
  if (kiln_file_map(path, &f, &e) != KILN_OK) return db_problem_path(db, KILN_ISSUE_SYNTAX, &e, path, rel);
  if (f.size > VOC_MAX_XML || f.size > (size_t)INT32_MAX) {
    kiln_file_unmap(&f);
    return db_problem(db, KILN_ISSUE_UNSAFE, "%s: %zu bytes, over the %u-byte limit for one VOC file",
                      name, f.size, VOC_MAX_XML);
  }
  XML_Parser p = XML_ParserCreate(NULL);
  if (!p) {
    kiln_file_unmap(&f);
    return KILN_ERR_NOMEM;
  }
  d->parser = p;
  XML_SetUserData(p, d);
  XML_SetElementHandler(p, on_start, on_end);
  XML_SetCharacterDataHandler(p, on_text);
  XML_SetEntityDeclHandler(p, on_entity);
  XML_SetParamEntityParsing(p, XML_PARAM_ENTITY_PARSING_NEVER);
  enum XML_Status r = XML_Parse(p, f.data ? (const char *)f.data : "", (int)f.size, XML_TRUE);
  kiln_status s = KILN_OK;
  if (d->nomem) {
    s = KILN_ERR_NOMEM;
  } else if (d->entity[0]) {
    s = db_problem(db, KILN_ISSUE_UNSAFE,
                   "%s: line %lu: XML entity declarations are not allowed (<!ENTITY %s ...>); "
                   "refused (billion-laughs and external-entity protection)",
                   name, d->entity_line, d->entity);
  } else if (r != XML_STATUS_OK) {
    s = db_problem(db, KILN_ISSUE_SYNTAX, "%s: line %lu: XML error: %s", name,
                   (unsigned long)XML_GetCurrentLineNumber(p), XML_ErrorString(XML_GetErrorCode(p)));
  } else if (strcmp(d->root, "annotation") != 0) {
    s = db_problem(db, KILN_ISSUE_BAD_ANNOTATION, "%s: root element is <%s>, not <annotation>", name,
                   d->root);
  } else {
    *ok = true;
  }
  XML_ParserFree(p);
  kiln_file_unmap(&f);
  return s;
}

/* Finds the image a VOC file names; NULL when missing. */
static const char *find_image(dbuild *db, const char *ann_dir, const char *filename, const char *stem) {
  const char *dirs[4] = {"JPEGImages", "images", ann_dir, ""};
  static const char *const exts[] = {"", ".jpg", ".jpeg", ".png", ".JPG", ".PNG"};
  char rel[2048];
  for (int i = 0; i < 4; i++) {
    for (size_t k = 0; k < sizeof exts / sizeof exts[0]; k++) {
      const char *base = *filename ? filename : stem;
      if (*filename && k > 0 && strchr(fs_basename(filename), '.')) break;
      if (!*filename && k == 0) continue;
      snprintf(rel, sizeof rel, "%s%s%s%s", dirs[i], *dirs[i] ? "/" : "", base, exts[k]);
      if (fs_is_file(db_join(db, db->root, rel))) return db_str(db, rel);
    }
  }
  return NULL;
}

typedef struct voc_state {
  smap by_image; /* image rel -> item */
  smap by_id;    /* stem -> item, for ImageSets */
  smap failed;   /* stems whose XML had errors: their images are not background */
  const char *ann_dir;
} voc_state;

static kiln_status add_objects(dbuild *db, voc_state *vs, const char *xml_rel, const voc_doc *d) {
  const char *name = db_name(db, xml_rel);
  const char *base = fs_basename(xml_rel);
  const char *dot = strrchr(base, '.');
  const char *stem = db_strn(db, base, dot ? (size_t)(dot - base) : strlen(base));
  kiln_status s = KILN_OK;
  /* well-formed but wrong objects fail the file */
  for (int32_t k = 0; k < d->n_objects && s == KILN_OK; k++) {
    const voc_object *o = &d->objects[k];
    int missing = -1;
    for (int q = 0; q < 4; q++)
      if (!o->has[q] && missing < 0) missing = q;
    if (!o->has_name || !o->name[0])
      s = db_problem(db, KILN_ISSUE_BAD_ANNOTATION, "%s: object %d: no <name>", name, k + 1);
    else if (!o->has_box)
      s = db_problem(db, KILN_ISSUE_BAD_ANNOTATION, "%s: object %d: no <bndbox>", name, k + 1);
    else if (missing >= 0)
      s = db_problem(db, KILN_ISSUE_BAD_ANNOTATION, "%s: object %d: <bndbox> has no <%s>", name,
                     k + 1, corner_names[missing]);
    else if (o->bad[0])
      s = db_problem(db, KILN_ISSUE_BAD_ANNOTATION, "%s: object %d: %s, not a number", name, k + 1,
                     o->bad);
    else
      continue;
    return s;
  }
  if (d->filename[0] && !rel_is_safe(d->filename))
    return db_problem(db, KILN_ISSUE_BAD_ANNOTATION,
                      "%s: <filename> '%s' must be a relative name inside the dataset", name, d->filename);
  const char *img_rel = find_image(db, vs->ann_dir, d->filename, stem);
  if (!img_rel)
    return db_problem(db, KILN_ISSUE_MISSING_IMAGE,
                      "%s: image '%s' not found (looked in JPEGImages/, images/, beside the XML "
                      "and at the top); skipped", name, d->filename[0] ? d->filename : stem);
  int32_t item = smap_get(&vs->by_image, img_rel);
  if (item >= 0) {
    s = db_problem(db, KILN_ISSUE_CONFLICT, "%s: image %s is also annotated by %s; boxes merged",
                   name, db->items[item].name, db->items[item].ann_file);
  } else {
    const char *full = db_join(db, db->root, img_rel), *img_name = db_name(db, img_rel);
    s = db_add_file(db, full, img_name, KILN_SPLIT_UNASSIGNED, &item);
    if (s == KILN_OK) s = smap_put(&vs->by_image, img_rel, item);
    if (s == KILN_OK) s = smap_put(&vs->by_id, stem, item);
    if (s != KILN_OK) return s;
    db->items[item].declared_w = (int32_t)d->width;
    db->items[item].declared_h = (int32_t)d->height;
    db->items[item].declared_at = (dloc){name, DLOC_NONE, 0};
  }
  db_annotated(db, item, name);
  for (int32_t k = 0; k < d->n_objects && s == KILN_OK; k++) {
    const voc_object *o = &d->objects[k];
    dloc where = {name, DLOC_OBJECT, k + 1};
    int32_t label;
    s = db_label(db, o->name, &where, &label);
    if (s != KILN_OK) break;
    if (label < 0) {
      db->items[item].dropped_boxes = true;
      continue;
    }
    s = db_add_box(db, item, DBOX_CORNERS_PX, o->v, label, o->difficult ? KILN_BOX_DIFFICULT : 0, &where);
  }
  return s;
}

/* Images in the image folders that no XML names: background images. */
static kiln_status add_unannotated(dbuild *db, voc_state *vs) {
  static const char *const dirs[] = {"JPEGImages", "images"};
  kiln_status s = KILN_OK;
  bool any = false;
  for (int i = 0; i < 2 && s == KILN_OK && !any; i++) {
    const char *dir = db_join(db, db->root, dirs[i]);
    if (!fs_is_dir(dir)) continue;
    any = true;
    kiln_file_list files;
    kiln_error e;
    static const char *const exts[] = {".jpg", ".jpeg", ".png", ".pgm", ".ppm", NULL};
    if (kiln_list_files(dir, exts, 10000000, &files, &e) != KILN_OK)
      return db_problem_err(db, KILN_ISSUE_NOT_FOUND, &e);
    size_t root_len = strlen(db->root) + 1;
    for (size_t k = 0; k < files.count && s == KILN_OK; k++) {
      const char *rel = files.paths[k] + root_len;
      const char *base = fs_basename(rel), *dot = strrchr(base, '.');
      char stem_buf[1024];
      snprintf(stem_buf, sizeof stem_buf, "%.*s", (int)(dot ? dot - base : (long)strlen(base)), base);
      if (smap_get(&vs->by_image, rel) >= 0 || smap_get(&vs->failed, stem_buf) >= 0) continue;
      char expected[2048];
      snprintf(expected, sizeof expected, "%s%s%.*s.xml", vs->ann_dir, *vs->ann_dir ? "/" : "",
               (int)(dot ? dot - base : (long)strlen(base)), base);
      int32_t item;
      const char *name = db_name(db, rel), *exp = db_name(db, expected);
      const char *stem = db_strn(db, base, dot ? (size_t)(dot - base) : strlen(base));
      s = db_add_file(db, files.paths[k], name, KILN_SPLIT_UNASSIGNED, &item);
      if (s == KILN_OK) {
        db->items[item].expected_ann = exp;
        if (smap_get(&vs->by_id, stem) < 0) s = smap_put(&vs->by_id, stem, item);
      }
    }
    kiln_file_list_free(&files);
  }
  return s;
}

/* ImageSets/Main/{train,val,trainval,test}.txt: one image id per line. */
static kiln_status read_splits(dbuild *db, voc_state *vs) {
  static const struct {
    const char *file;
    kiln_split split;
  } lists[] = {{"train.txt", KILN_SPLIT_TRAIN},
               {"val.txt", KILN_SPLIT_VAL},
               {"trainval.txt", KILN_SPLIT_TRAIN},
               {"test.txt", KILN_SPLIT_TEST}};
  kiln_status s = KILN_OK;
  bool have_train = false;
  for (size_t i = 0; i < 4 && s == KILN_OK; i++) {
    char rel[64];
    snprintf(rel, sizeof rel, "ImageSets/Main/%s", lists[i].file);
    const char *path = db_join(db, db->root, rel);
    if (!fs_is_file(path)) continue;
    if (lists[i].split == KILN_SPLIT_TRAIN && have_train) continue; /* trainval after train+val */
    have_train |= lists[i].split == KILN_SPLIT_TRAIN;
    char *text;
    kiln_error e;
    if (fs_read_text(path, 256u << 20, &text, NULL, &e) != KILN_OK)
      return db_problem_path(db, KILN_ISSUE_SYNTAX, &e, path, rel);
    const char *name = db_name(db, rel);
    int32_t line = 0;
    for (char *p = text; s == KILN_OK && *p;) {
      char *nl = strchr(p, '\n');
      if (nl) *nl = '\0';
      line++;
      char id[1024];
      if (sscanf(p, "%1023s", id) == 1) { /* "id" or "id  1" (per-class lists) */
        int32_t item = smap_get(&vs->by_id, id);
        if (item >= 0)
          s = db_set_split(db, item, lists[i].split, &(dloc){name, DLOC_LINE, line});
        else if (smap_get(&vs->failed, id) < 0) /* (a failed XML's error says it all) */
          s = db_problem(db, KILN_ISSUE_MISSING_IMAGE, "%s: line %d: '%s' has no image or annotation; ignored",
                         name, line, id);
      }
      if (!nl) break;
      p = nl + 1;
    }
    kiln_free(text);
  }
  return s;
}

kiln_status import_voc(dbuild *db) {
  db->task = KILN_TASK_DETECT;
  voc_state vs;
  memset(&vs, 0, sizeof vs);
  slist xmls = {0};
  kiln_status s = KILN_OK;
  if (db->file) {
    const char *slash = strrchr(db->file, '/');
    vs.ann_dir = slash ? db_strn(db, db->file, (size_t)(slash - db->file)) : "";
    s = slist_add(db, &xmls, db->file);
  } else {
    s = find_voc_dir(db, &vs.ann_dir);
    if (s != KILN_OK) return s;
    if (!vs.ann_dir)
      return db_problem(db, KILN_ISSUE_NOT_FOUND, "%s: no VOC annotations (Annotations/*.xml or *.xml)",
                        db->display);
    const char *dir = *vs.ann_dir ? db_join(db, db->root, vs.ann_dir) : db->root;
    fs_entries e;
    kiln_error err;
    if (fs_list(dir, &e, &err) != KILN_OK) return db_problem_err(db, KILN_ISSUE_NOT_FOUND, &err);
    for (int32_t i = 0; i < e.n && s == KILN_OK; i++)
      if (!e.is_dir[i] && fs_has_ext(e.names[i], ".xml")) {
        const char *rel = *vs.ann_dir ? db_join(db, vs.ann_dir, e.names[i]) : e.names[i];
        s = slist_add(db, &xmls, rel);
      }
    fs_entries_free(&e);
  }
  for (int32_t i = 0; i < xmls.n && s == KILN_OK; i++) {
    voc_doc d;
    memset(&d, 0, sizeof d);
    bool ok;
    int32_t errors = db->ds->n_errors;
    s = parse_xml(db, xmls.s[i], &d, &ok);
    if (s == KILN_OK && ok) s = add_objects(db, &vs, xmls.s[i], &d);
    kiln_free(d.objects);
    if (s == KILN_OK && db->ds->n_errors > errors) {
      const char *base = fs_basename(xmls.s[i]), *dot = strrchr(base, '.');
      const char *stem = db_strn(db, base, dot ? (size_t)(dot - base) : strlen(base));
      s = stem ? smap_put(&vs.failed, stem, 1) : KILN_ERR_NOMEM;
    }
  }
  if (s == KILN_OK && !db->file) s = add_unannotated(db, &vs);
  if (s == KILN_OK) s = read_splits(db, &vs);
  slist_free(&xmls);
  smap_free(&vs.by_image);
  smap_free(&vs.by_id);
  smap_free(&vs.failed);
  return s;
}
