/*
 * data/data_int.h: what the dataset files share: the builder importers fill
 * (items, boxes in their native form, labels, problems), the file-system
 * helpers, the string map, the netpbm codec, and each importer's entry.
 *
 * Flow: kiln_data_import (dataset.c) makes a builder, extracts an archive
 * (archive.c), detects the format (detect.c), runs one importer
 * (import_*.c), then db_finish (validate.c) hashes and decodes every image
 * once, converts and checks boxes, drops duplicates and reports health.
 * Importers add items in a deterministic order (sorted names) and record
 * problems as they go; they return a non-OK status only for NOMEM (or a
 * failure that makes going on pointless, after recording it as a problem).
 */
#ifndef KILN_DATA_INT_H
#define KILN_DATA_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/pool.h"
#include "kiln/data.h"

/* ---- string -> int32 map (keys are not copied: they must outlive it) ---- */

typedef struct smap {
  const char **keys;
  int32_t *values;
  size_t cap, count; /* cap is 0 or a power of two */
} smap;

/* Inserts or replaces. @retval KILN_ERR_NOMEM */
kiln_status smap_put(smap *m, const char *key, int32_t value);
/* The value, or -1 when absent. */
int32_t smap_get(const smap *m, const char *key);
void smap_free(smap *m);

/* ---- a list of pool strings ---- */

typedef struct slist {
  const char **s;
  int32_t n, cap;
} slist;

/* ---- the builder ---- */

/* Where in an annotation file something came from, for messages. */
typedef enum dloc_kind {
  DLOC_NONE = 0,
  DLOC_LINE,       /* "line N" */
  DLOC_OBJECT,     /* "object N" (VOC, 1-based) */
  DLOC_ANNOTATION, /* "annotations[N]" (COCO, 0-based) */
  DLOC_IMAGE       /* "images[N]" (kiln manifest, 0-based) */
} dloc_kind;

/* How a box was written; its native values are kept for messages. */
typedef enum dbox_form {
  DBOX_CORNERS_PX = 0, /* (xmin,ymin)-(xmax,ymax) pixels: VOC, kiln */
  DBOX_XYWH_PX,        /* [x,y,w,h] pixels: COCO */
  DBOX_CENTER_REL,     /* [cx cy w h] 0..1: YOLO */
  DBOX_CORNERS_REL     /* (x1,y1)-(x2,y2) 0..1: AutoML */
} dbox_form;

typedef struct dloc {
  const char *file; /* display name of the annotation file */
  dloc_kind kind;
  int32_t index;
} dloc;

typedef struct dbox {
  float v[4];       /* native values in `form` */
  int32_t label;
  uint32_t flags;
  dloc where;
  uint8_t form;
} dbox;

typedef struct ditem {
  const char *path;       /* file to read, or NULL for pixels */
  const char *name;       /* display name */
  const uint8_t *pixels;  /* in-memory pixels (not owned by the item) */
  int32_t width, height, channels;
  int32_t declared_w, declared_h; /* from the annotation; 0 when none */
  dloc declared_at;
  kiln_split split;
  dloc split_at;          /* where the split was set, for conflicts */
  int32_t label;          /* classification; -1 none */
  dloc label_at;
  dbox *boxes;
  int32_t n_boxes, cap_boxes;
  const char *ann_file;   /* its annotation record; NULL when none */
  const char *expected_ann; /* the annotation file it lacks, for messages */
  const char *origin;     /* kiln format: the source recorded at import */
  const char *expected_hash; /* kiln format: the hash its file is named by */
  bool annotated;         /* an annotation record exists (maybe empty) */
  bool dropped_boxes;     /* some of its boxes were skipped */
  bool skip;              /* dropped (missing, unreadable, duplicate) */
  char hash[KILN_DATA_HASH_HEX + 1];
} ditem;

struct kiln_data_store {
  kiln_pool pool;  /* strings, boxes of the final images */
  void **blobs;    /* big buffers (IDX, netpbm pixels), kiln_free'd */
  int32_t n_blobs, cap_blobs;
  char *temp_dir;  /* an extracted archive, removed on free */
};

typedef struct dbuild {
  kiln_dataset *ds;
  const kiln_data_options *opt;
  const char *root;     /* the dataset's directory (file system path) */
  const char *prefix;   /* display-name prefix: "" or "pets.zip/pets/" */
  const char *file;     /* the annotation file given as PATH, relative to
                         * root ("a.csv", "annotations/x.json"), or NULL */
  const char *display;  /* PATH as given, for dataset-wide messages */
  kiln_data_task task;
  ditem *items;
  int32_t n_items, cap_items;
  char **label_names;   /* pool strings */
  int32_t n_labels, cap_labels;
  bool labels_fixed;    /* options->labels or the format's numbered list */
  bool labels_from_options;
  smap label_map;
  bool shared_ann;      /* one annotation file for many images (COCO, CSV):
                         * box messages name the image too */
  int32_t problems_cap;
  bool nomem;           /* a pool string could not be allocated */
} dbuild;

/* Pool copy of s / of the first n bytes. Never NULL: when memory runs out
 * they give "" and set db->nomem, which ends the import with
 * KILN_ERR_NOMEM (so call sites need no checks; db_problem stops early). */
const char *db_str(dbuild *db, const char *s);
const char *db_strn(dbuild *db, const char *s, size_t n);
/* Pool string "<prefix><rel>": a display name. */
const char *db_name(dbuild *db, const char *rel);
/* Pool string "<dir>/<rel>". */
const char *db_join(dbuild *db, const char *dir, const char *rel);
/* Keeps a kiln_malloc'd buffer alive as long as the dataset. */
kiln_status db_keep(dbuild *db, void *blob);

/* Appends a copy of s (pool) to l; slist_free frees the array only. */
kiln_status slist_add(dbuild *db, slist *l, const char *s);
void slist_free(slist *l);

/* Records a problem (its severity comes from the issue). @retval NOMEM */
kiln_status db_problem(dbuild *db, kiln_data_issue issue, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Records e's message as a problem (NOMEM when e is out of memory: that
 * is never turned into a data problem). */
kiln_status db_problem_err(dbuild *db, kiln_data_issue issue, const kiln_error *e);
/* As db_problem_err, e's leading file-system path replaced by the display
 * name of rel. */
kiln_status db_problem_path(dbuild *db, kiln_data_issue issue, const kiln_error *e,
                            const char *path, const char *rel);
/* "file: line 3" etc. into buf (just "file" for DLOC_NONE). */
void db_where(const dloc *at, char *buf, size_t size);

/* Adds an image; *index gets its item index. name is a display name. */
kiln_status db_add_file(dbuild *db, const char *path, const char *name, kiln_split split,
                        int32_t *index);
kiln_status db_add_pixels(dbuild *db, const uint8_t *pixels, int32_t width, int32_t height,
                          int32_t channels, const char *name, kiln_split split, int32_t *index);

/* Fixes the label list to names (the format's numbered classes), unless
 * options->labels already fixed it. Copies the names. */
kiln_status db_fix_labels(dbuild *db, const char *const *names, int32_t n);
/* The index of a label name: interned when labels are free; when fixed, an
 * unknown name records an UNKNOWN_LABEL warning at `at` and gives -1.
 * Empty names and names with control characters record a BAD_ANNOTATION
 * error (and give -1). */
kiln_status db_label(dbuild *db, const char *name, const dloc *at, int32_t *index);

/* Sets an item's class (classification); a second, different label is a
 * CONFLICT warning (the first is kept). */
kiln_status db_set_label(dbuild *db, int32_t item, int32_t label, const dloc *at);
/* Sets an item's split when it has none; a different one is a CONFLICT
 * warning (the first is kept). */
kiln_status db_set_split(dbuild *db, int32_t item, kiln_split split, const dloc *at);
/* Adds a box in its native form. Values must be finite (importers refuse
 * others as BAD_ANNOTATION). A box with zero or negative width or height
 * is a BOX_EMPTY warning and is not added. */
kiln_status db_add_box(dbuild *db, int32_t item, dbox_form form, const float v[4],
                       int32_t label, uint32_t flags, const dloc *at);
/* Marks an item as having an annotation record (ann_file may be NULL). */
void db_annotated(dbuild *db, int32_t item, const char *ann_file);

/* Validation and finishing (validate.c): decode/hash, boxes, duplicates,
 * unannotated images, final arrays, label health, usability. */
kiln_status db_finish(dbuild *db);

/* Number formatting for messages: %g of a float, in a static-free way. */
void fmt_num(char *buf, size_t size, float v);
/* The native text of a box ("(410,20)-(390,80)", "[10,20,0,5]"). */
void fmt_box(char *buf, size_t size, dbox_form form, const float v[4]);

/* ---- file system (fsutil.c) ---- */

bool fs_is_dir(const char *path);
bool fs_is_file(const char *path);

typedef struct fs_entries {
  char **names;   /* sorted (strcmp); hidden entries skipped */
  bool *is_dir;   /* following symlinks */
  int32_t n;
} fs_entries;

/* Lists one directory (not recursive). */
kiln_status fs_list(const char *dir, fs_entries *out, kiln_error *err);
void fs_entries_free(fs_entries *e);
/* Case-insensitive "name ends in ext". */
bool fs_has_ext(const char *name, const char *ext);
/* .jpg .jpeg .png .pgm .ppm: what kiln decodes. */
bool fs_is_image_name(const char *name);
/* .bmp .gif .webp .tif .tiff .heic .heif .avif: images kiln cannot read. */
bool fs_is_other_image_name(const char *name);
/* mkdir -p. Messages start with path. */
kiln_status fs_mkdirs(const char *path, kiln_error *err);
/* rm -r that never follows links. */
void fs_remove_tree(const char *path);
/* The last path component (pointer into path). */
const char *fs_basename(const char *path);
/* Reads a whole file of at most max bytes, NUL-terminated (kiln_malloc). */
kiln_status fs_read_text(const char *path, size_t max, char **out, size_t *len, kiln_error *err);

/* True when rel is a relative path without ".." components. */
bool rel_is_safe(const char *rel);

/* The split a folder or file name stands for: train/training,
 * val/valid/validation, test/testing (case-insensitive); UNASSIGNED when
 * none. */
kiln_split split_from_name(const char *name);

/* ---- netpbm (netpbm.c): kiln's encoding of in-memory images ---- */

/* The canonical header "P5\n<w> <h>\n255\n" (P6 for 3 channels) into buf
 * (at least 32 bytes); returns its length. */
size_t netpbm_header(char *buf, int32_t width, int32_t height, int32_t channels);
/* Parses a binary PGM/PPM with maxval 255 (comments allowed in the
 * header). On success *pixels points into data. */
kiln_status netpbm_parse(const uint8_t *data, size_t size, uint64_t max_pixels, int32_t *width,
                         int32_t *height, int32_t *channels, const uint8_t **pixels,
                         kiln_error *err);
bool netpbm_magic(const uint8_t *data, size_t size);

/* ---- archives (archive.c) ---- */

/* Extracts the archive at path into a new directory under temp_dir (set
 * in db->ds->store->temp_dir), refusing unsafe entries (recorded as
 * UNSAFE problems). *root gets the directory to import (the single top
 * folder when there is one) and *inner its path inside the archive ("" or
 * "pets/"). @retval KILN_ERR_FORMAT after recording a problem */
kiln_status data_extract(dbuild *db, const char *path, const char **root, const char **inner);
/* True when path names an archive kiln extracts (by extension). */
bool data_is_archive_name(const char *path);

/* ---- detection and importers ---- */

/* Detects the format of the dataset in db->root (see kiln/data.h);
 * KILN_DATA_AUTO and a NOT_FOUND problem when nothing matches. */
kiln_status data_detect(dbuild *db, kiln_data_format *format, const char **why);

/* What detection looks for, shared with the importers; paths are relative
 * to db->root, in sorted order. */
kiln_status find_idx(dbuild *db, slist *rel);         /* *idx3-ubyte[.gz] */
kiln_status find_yaml(dbuild *db, const char **rel);  /* NULL: none */
kiln_status find_coco(dbuild *db, slist *rel);        /* COCO .json files */
kiln_status find_csv(dbuild *db, slist *rel);         /* *.csv */
kiln_status find_voc_dir(dbuild *db, const char **dir); /* NULL: none */
/* True when needle occurs in the first 4096 bytes of the file. */
bool file_head_contains(const char *path, const char *needle);

kiln_status import_kiln(dbuild *db);
kiln_status import_idx(dbuild *db);
kiln_status import_yolo(dbuild *db);
kiln_status import_coco(dbuild *db);
kiln_status import_automl(dbuild *db);
kiln_status import_voc(dbuild *db);
kiln_status import_folders(dbuild *db);

/* Parses a whole string as a finite float (surrounding spaces allowed). */
bool parse_float(const char *s, float *out);
/* Parses a whole string as a decimal integer in [lo, hi]. */
bool parse_int(const char *s, long long lo, long long hi, long long *out);

#endif
