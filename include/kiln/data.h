/*
 * kiln/data.h: datasets: importing labelled images from the formats people
 * already have, validating them with exact messages, splitting them, and
 * kiln's own on-disk form (which the studio stores too).
 *
 *   kiln_data_options opt = kiln_data_options_default();
 *   kiln_dataset *ds;
 *   kiln_error err;
 *   kiln_status s = kiln_data_import("pets.zip", &opt, &ds, &err);
 *   if (ds) for (int32_t i = 0; i < ds->n_problems; i++)
 *     fprintf(stderr, "%s\n", ds->problems[i].message);   // errors and warnings
 *   if (s != KILN_OK) { fprintf(stderr, "%s\n", err.msg); kiln_dataset_free(ds); return 1; }
 *   kiln_split_options so = kiln_split_options_default();    // 80/10/10, seed 0
 *   kiln_dataset_split(ds, &so, &err);                       // only unassigned images
 *   for (int32_t i = 0; i < ds->n_images; i++) {
 *     const kiln_data_image *im = &ds->images[i];
 *     kiln_image rgb;
 *     kiln_dataset_load_image(ds, i, &rgb, &err);            // file or memory -> RGB8
 *     ... im->split, im->label or im->boxes[0..n_boxes) in pixels ...
 *     kiln_image_free(&rgb);
 *   }
 *   kiln_dataset_write(ds, "out/pets", &err);                // dataset.json + images/
 *   kiln_dataset_free(ds);
 *
 * The representation. A dataset is a list of images and a list of labels
 * (index -> name). Each image is identified by the SHA-256 of its content
 * (lowercase hex): of the file's bytes for images that are files, and of
 * their binary PGM/PPM encoding ("P5\n<w> <h>\n255\n" + pixels; P6 for RGB)
 * for images that live in memory (IDX). It has a path (a file to decode) or
 * in-memory 8-bit pixels, its size as displayed (after EXIF orientation),
 * a split, and either one class label (classification) or boxes in pixels
 * (detection). Image order is the import order: sorted by name within each
 * source, so it never depends on the file system's listing order.
 *
 * Formats (KILN_DATA_AUTO detects them in this order, on the directory
 * PATH or, when PATH is an archive, on its extracted contents; the first
 * rule that matches wins and ds->detected_by says which one):
 *   kiln     dataset.json with a "kiln_dataset" key (kiln's own form, below)
 *   idx      files named *idx3-ubyte[.gz] (MNIST style), each paired with
 *            the file named with images->labels and idx3->idx1; split from
 *            the name (train*, t10k* / test*); class names from labels.txt
 *            beside them, else "0", "1", ...; pixels held in memory, grey
 *   yolo     data.yaml (or another *.yaml with names:) at the top, or
 *            labels/ beside images/ with classes.txt
 *   coco     a *.json with "images" and "annotations" at the top, in
 *            annotations/, or in a split folder (train/, valid/, test/)
 *   automl   a *.csv at the top
 *   voc      Annotations/ or annotations/ holding *.xml, or *.xml at the top
 *   folders  otherwise: one folder per class, optionally inside split
 *            folders train/ (training/), val/ (valid/, validation/),
 *            test/ (testing/)
 * PATH may also be one annotation file (a .csv, a COCO .json, a kiln
 * dataset.json, a data.yaml, an idx3 file, one VOC .xml: the dataset is
 * its folder, or the folder above when that is annotations/), or an
 * archive (.zip, .tar, .tar.gz, .tgz, .tar.bz2, .tar.xz) of any of these. Archives are extracted into a fresh directory
 * under options->temp_dir, removed by kiln_dataset_free; a single top
 * folder is entered. Entries with absolute paths or ".." components,
 * symbolic or hard links that point outside the tree, entries that would
 * be written through a link, and declared or actual sizes over
 * options->max_extract_bytes are refused (the import fails).
 *
 * Coordinates. Boxes are [xmin, ymin, xmax, ymax] in pixels of the image
 * as displayed, floats, xmin < xmax and ymin < ymax, inside [0,w]x[0,h].
 * VOC: pixel corners as written (no 1-based shift). COCO: bbox [x,y,w,h]
 * -> [x, y, x+w, y+h]. YOLO: "class cx cy w h" normalized -> [(cx-w/2)W,
 * (cy-h/2)H, (cx+w/2)W, (cy+h/2)H]. AutoML: relative vertices (x1,y1) and
 * (x3,y3) of the 2-vertex form, or the min/max of 4 vertices, times W, H.
 *
 * Errors and warnings: nothing is dropped without a message. Every problem
 * is one entry in ds->problems whose message names the file (relative to
 * PATH; "archive.zip/inner/path" inside archives), the line, object or
 * element when there is one, and what is wrong, e.g.
 *   "annotations/img_03.xml: object 2: box (410,20)-(390,80) has xmax < xmin; skipped".
 * Errors make the dataset unusable (kiln_data_import fails): a file that
 * cannot be parsed (XML, JSON, YAML, CSV, IDX), a document with entity
 * declarations, an unsafe archive, an annotation that is well-formed but
 * wrong (a missing field, a bad ML_USE, a YOLO line without 5 numbers, a
 * COCO bbox that is not 4 numbers, a non-finite coordinate), and a dataset
 * with nothing to train on (no images; fewer than 2 labels for
 * classification; no boxes for detection). Warnings leave it usable; the
 * item is skipped or fixed as the message says: unreadable or truncated
 * images and images listed but missing (skipped), boxes partly outside the
 * image (clamped; the message has the original values), boxes with zero or
 * negative area or wholly outside (skipped), unknown labels (the
 * annotation is skipped), duplicate images by hash (later copies skipped),
 * images without annotations (classification: skipped; detection: kept as
 * background images), a declared size that differs from the decoded one,
 * conflicting annotations of one image, files that are not images
 * (ignored), boxes smaller than 1% of the image side (kept), labels with
 * fewer than 10 images and a largest:smallest label ratio above 100:1.
 *
 * Threads: a dataset is not thread-safe to modify, but once imported any
 * number of threads may read it and call kiln_dataset_load_image at once.
 */
#ifndef KILN_DATA_H
#define KILN_DATA_H

#include <stdbool.h>
#include <stdint.h>

#include "kiln/base.h"
#include "kiln/image.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KILN_DATA_HASH_HEX 64 /* SHA-256 in lowercase hex */

typedef enum kiln_split {
  KILN_SPLIT_UNASSIGNED = 0,
  KILN_SPLIT_TRAIN = 1,
  KILN_SPLIT_VAL = 2,
  KILN_SPLIT_TEST = 3
} kiln_split;
#define KILN_SPLIT_COUNT 4

typedef enum kiln_data_format {
  KILN_DATA_AUTO = 0,
  KILN_DATA_KILN,
  KILN_DATA_IDX,
  KILN_DATA_YOLO,
  KILN_DATA_COCO,
  KILN_DATA_AUTOML,
  KILN_DATA_VOC,
  KILN_DATA_FOLDERS
} kiln_data_format;
#define KILN_DATA_FORMAT_COUNT 8

typedef enum kiln_data_task {
  KILN_TASK_CLASSIFY = 1, /* one label per image */
  KILN_TASK_DETECT = 2    /* boxes */
} kiln_data_task;

/* kiln_data_box.flags */
#define KILN_BOX_DIFFICULT 1u /* VOC <difficult>1</difficult> */
#define KILN_BOX_CROWD 2u     /* COCO "iscrowd": 1 */

typedef struct kiln_data_box {
  float xmin, ymin, xmax, ymax; /* pixels, see "Coordinates" above */
  int32_t label;                /* index into kiln_dataset.labels */
  uint32_t flags;               /* KILN_BOX_* */
} kiln_data_box;

typedef struct kiln_data_image {
  char hash[KILN_DATA_HASH_HEX + 1]; /* SHA-256 of the content, see above */
  const char *path;     /* the file to decode; NULL when pixels is set */
  const char *source;   /* where it came from, for people: "train/cat/a.png",
                         * "train-images-idx3-ubyte.gz: image 17" */
  const uint8_t *pixels; /* in-memory images: height rows of width * channels
                          * bytes; NULL for files */
  int32_t width, height; /* as displayed (after EXIF orientation) */
  int32_t channels;      /* 1 (grey) or 3 (RGB) for in-memory; 3 for files */
  kiln_split split;
  int32_t label;         /* classification: 0..n_labels-1; detection: -1 */
  int32_t n_boxes;       /* detection; 0 for a background image */
  kiln_data_box *boxes;
} kiln_data_image;

/* What a problem is. The severity of each is fixed (see above and
 * kiln_data_issue_severity). */
typedef enum kiln_data_issue {
  KILN_ISSUE_NOT_FOUND = 0,   /* error: the path, or no dataset in it */
  KILN_ISSUE_SYNTAX,          /* error: a file that cannot be parsed */
  KILN_ISSUE_UNSAFE,          /* error: entity declarations, unsafe archive */
  KILN_ISSUE_BAD_ANNOTATION,  /* error: well-formed but wrong annotation */
  KILN_ISSUE_UNUSABLE,        /* error: nothing to train on */
  KILN_ISSUE_UNREADABLE_IMAGE,/* warning: image skipped */
  KILN_ISSUE_MISSING_IMAGE,   /* warning: listed image not found, skipped */
  KILN_ISSUE_IGNORED_FILE,    /* warning: a file that is not an image */
  KILN_ISSUE_BOX_CLAMPED,     /* warning: box clamped to the image */
  KILN_ISSUE_BOX_EMPTY,       /* warning: zero/negative area, box skipped */
  KILN_ISSUE_BOX_SMALL,       /* warning: under 1% of a side, kept */
  KILN_ISSUE_UNKNOWN_LABEL,   /* warning: annotation skipped */
  KILN_ISSUE_DUPLICATE,       /* warning: later copy skipped */
  KILN_ISSUE_UNANNOTATED,     /* warning: see above */
  KILN_ISSUE_CONFLICT,        /* warning: one image annotated twice */
  KILN_ISSUE_SIZE_MISMATCH,   /* warning: declared size != decoded size */
  KILN_ISSUE_FEW_IMAGES,      /* warning: a label with < 10 images */
  KILN_ISSUE_IMBALANCE        /* warning: label ratio above 100:1 */
} kiln_data_issue;
#define KILN_DATA_ISSUE_COUNT 18

typedef enum kiln_data_severity {
  KILN_DATA_WARNING = 1,
  KILN_DATA_ERROR = 2
} kiln_data_severity;

typedef struct kiln_data_problem {
  kiln_data_issue issue;
  char *message; /* see "Errors and warnings" */
} kiln_data_problem;

/* At most this many problems keep their message; the counts below count
 * all of them and the last entry says how many were left out. */
#define KILN_DATA_MAX_PROBLEMS 100000

typedef struct kiln_data_store kiln_data_store; /* private: memory, temp dir */

typedef struct kiln_dataset {
  kiln_data_task task;
  kiln_data_format format; /* what it was imported from */
  const char *detected_by; /* why: "data.yaml", "--format", ... */
  int32_t n_labels;
  char **labels;           /* [n_labels] names; sorted by name unless the
                            * format numbers its classes (COCO by category
                            * id, YOLO, IDX, kiln) or options->labels gave
                            * the list */
  int32_t n_images;
  kiln_data_image *images;
  int32_t n_problems;
  kiln_data_problem *problems; /* in the order found */
  int32_t n_errors, n_warnings;
  int32_t issue_counts[KILN_DATA_ISSUE_COUNT];
  kiln_data_store *store;
} kiln_dataset;

typedef struct kiln_data_options {
  kiln_data_format format;  /* KILN_DATA_AUTO: detect */
  /* A fixed label list (names, in index order): annotations naming any
   * other label are skipped with an UNKNOWN_LABEL warning. NULL: the
   * labels come from the data. Copied; need not outlive the call. */
  const char *const *labels;
  int32_t n_labels;
  int32_t threads;          /* for decoding and hashing; 0: all cores */
  uint64_t max_pixels;      /* per image; 0: KILN_IMAGE_DEFAULT_MAX_PIXELS */
  uint64_t max_extract_bytes; /* archives, all entries together; 0: 8 GiB */
  const char *temp_dir;     /* for archives; NULL: $TMPDIR, else /tmp */
} kiln_data_options;

kiln_data_options kiln_data_options_default(void);

/* Imports the dataset at path (see "Formats") and validates it: every
 * image file is read once, hashed and fully decoded with kiln_image's
 * decoder (options->max_pixels applies), boxes are converted to pixels and
 * checked, duplicates, unannotated images and label health are reported.
 * Splits come from the data; images without one stay UNASSIGNED (see
 * kiln_dataset_split).
 * @retval KILN_OK          *out is a usable dataset (warnings possible)
 * @retval KILN_ERR_FORMAT  the data has errors: err->msg is the first,
 *   with the number of errors; *out still holds what was read and every
 *   problem (the caller frees it)
 * @retval KILN_ERR_IO      path missing, not a dataset, or no format
 *   found in it: *out holds the NOT_FOUND problem (err->msg has it too)
 * @retval KILN_ERR_INVALID_ARG  a bad option (no path, format out of
 *   range, an empty or repeated label); *out is NULL
 * @retval KILN_ERR_NOMEM   out of memory anywhere (never reported as a data
 *   problem); *out is NULL
 * Messages are as described above. */
kiln_status kiln_data_import(const char *path, const kiln_data_options *options,
                             kiln_dataset **out, kiln_error *err);

/* Frees everything, removing an extracted archive's directory. NULL is
 * fine. */
void kiln_dataset_free(kiln_dataset *ds);

/* Decodes image index to RGB8 (grey in-memory pixels are replicated).
 * Thread-safe. Messages start with the image's source.
 * @retval KILN_ERR_INVALID_ARG  index out of range
 * other codes as kiln_image_decode_file */
kiln_status kiln_dataset_load_image(const kiln_dataset *ds, int32_t index, kiln_image *out,
                                    kiln_error *err);

typedef struct kiln_split_options {
  float train, val, test; /* fractions, >= 0, summing to 1 (+-1e-4) */
  uint64_t seed;
} kiln_split_options;

/* 0.8 / 0.1 / 0.1, seed 0. */
kiln_split_options kiln_split_options_default(void);

/* Gives every UNASSIGNED image a split; images that have one keep it.
 * Stratified: images are grouped by class (detection: the image's most
 * frequent box label, ties to the lowest index; background images form
 * their own group), each group is ordered by a seeded hash of the image
 * hashes, and cut so that every group and the whole come as close to the
 * fractions as whole numbers allow (cumulative rounding over the groups);
 * a group with any images keeps at least one in train. The result depends
 * only on the images' hashes, labels, the fractions and the seed: not on
 * import order or thread count.
 * @retval KILN_ERR_INVALID_ARG  bad fractions */
kiln_status kiln_dataset_split(kiln_dataset *ds, const kiln_split_options *options,
                               kiln_error *err);

/* Moves a stratified fraction (0..1) of the images in split from to split
 * to, chosen as kiln_dataset_split chooses (e.g. a validation set out of a
 * dataset that has only train and test). Returns the number moved in
 * *moved (may be NULL).
 * @retval KILN_ERR_INVALID_ARG  fraction outside [0,1], from == to */
kiln_status kiln_dataset_carve(kiln_dataset *ds, kiln_split from, kiln_split to, float fraction,
                               uint64_t seed, int32_t *moved, kiln_error *err);

/* Writes kiln's form into dir (created if missing): images/<hash>.<ext>
 * (the file's bytes as imported, ext jpg or png; in-memory images as
 * binary PGM/PPM, whose SHA-256 is their hash) and dataset.json:
 *   {"kiln_dataset": 1, "task": "classify"|"detect", "source_format": "voc",
 *    "labels": ["cat", ...],
 *    "images": [{"hash": "<64 hex>", "ext": "png", "width": 8, "height": 8,
 *                "split": "train"|"val"|"test"|"unassigned",
 *                "source": "train/cat/a.png",
 *                "label": 0 | "boxes": [[xmin, ymin, xmax, ymax, label(, flags)], ...]}]}
 * Images already present under their hash are not rewritten (a content
 * store); dataset.json is written atomically last. Importing dir gives back
 * the same images, labels, splits and boxes (floats round-trip exactly).
 * @retval KILN_ERR_IO  messages start with the path */
kiln_status kiln_dataset_write(const kiln_dataset *ds, const char *dir, kiln_error *err);

/* Per-label and per-split figures for reports. */
typedef struct kiln_data_label_stats {
  int32_t images[KILN_SPLIT_COUNT]; /* images with this label (detection:
                                     * with at least one box of it) */
  int64_t boxes;
} kiln_data_label_stats;

typedef struct kiln_data_summary {
  int32_t images[KILN_SPLIT_COUNT];
  int32_t total_images;
  int32_t min_width, min_height, max_width, max_height; /* 0 when empty */
  int64_t boxes;
  int32_t max_boxes_per_image;
  int32_t unannotated;  /* detection: background images */
  /* box sizes in pixels and relative (sqrt(box area / image area)); 0
   * when there are no boxes */
  float box_width[3], box_height[3], box_relative[3]; /* min, median, max */
  kiln_data_label_stats *labels; /* [n_labels] */
  bool usable;          /* no errors */
} kiln_data_summary;

/* Fills *out (its labels array is allocated; kiln_data_summary_free).
 * @retval KILN_ERR_NOMEM */
kiln_status kiln_dataset_summarize(const kiln_dataset *ds, kiln_data_summary *out,
                                   kiln_error *err);
void kiln_data_summary_free(kiln_data_summary *s);

/* The health report as JSON (kiln data check --json): format, detected_by,
 * task, counts per split and per label, image and box size figures, every
 * problem {severity, issue, message}, error and warning counts, usable.
 * *out is a NUL-terminated string from kiln_malloc.
 * @retval KILN_ERR_NOMEM */
kiln_status kiln_dataset_report_json(const kiln_dataset *ds, char **out, kiln_error *err);

/* Reads a label list: one name per line, trimmed; blank lines ignored.
 * *names (kiln_malloc'd array of kiln_malloc'd strings) is freed with
 * kiln_data_labels_free.
 * @retval KILN_ERR_FORMAT  a duplicate name, a NUL byte, no names */
kiln_status kiln_data_labels_read(const char *path, char ***names, int32_t *n,
                                  kiln_error *err);
void kiln_data_labels_free(char **names, int32_t n);

/* Names: "kiln", "idx", "yolo", "coco", "automl", "voc", "folders",
 * "auto"; "unassigned", "train", "val", "test"; "classify", "detect";
 * issue names in snake case ("box_clamped"). Never NULL. */
const char *kiln_data_format_name(kiln_data_format format);
/* Parses a format name (as above); false for an unknown one. */
bool kiln_data_format_parse(const char *name, kiln_data_format *out);
const char *kiln_split_name(kiln_split split);
const char *kiln_data_task_name(kiln_data_task task);
const char *kiln_data_issue_name(kiln_data_issue issue);
kiln_data_severity kiln_data_issue_severity(kiln_data_issue issue);

#ifdef __cplusplus
}
#endif
#endif
