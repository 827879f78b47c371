/*
 * test_data_formats.c: importing the committed fixture of every format
 * (tests/data/datasets, written by make_fixtures.py with Pillow) gives the
 * exact images, labels, splits and boxes its files describe, including each
 * format's coordinate conversion: VOC pixel corners, COCO [x,y,w,h], YOLO
 * normalized centers, AutoML relative corners (2- and 4-vertex forms); IDX
 * pixels held in memory; archives; a single annotation file as PATH; kiln's
 * own form written and read back unchanged.
 */
#include <string.h>

#include "kiln/data.h"
#include "test_data_util.h"

static void test_folders(void) {
  kiln_dataset *ds = import_ok(fixture("folders"));
  REQUIRE(ds && ds->n_errors == 0);
  CHECK(ds->format == KILN_DATA_FOLDERS && ds->task == KILN_TASK_CLASSIFY);
  CHECK(strcmp(ds->detected_by, "split folders") == 0);
  REQUIRE(ds->n_labels == 2 && ds->n_images == 6);
  CHECK(strcmp(ds->labels[0], "cat") == 0 && strcmp(ds->labels[1], "dog") == 0);
  static const struct {
    const char *name;
    kiln_split split;
    int32_t label;
  } want[] = {{"test/dog/d3.png", KILN_SPLIT_TEST, 1}, {"train/cat/c1.png", KILN_SPLIT_TRAIN, 0},
              {"train/cat/c2.png", KILN_SPLIT_TRAIN, 0}, {"train/dog/d1.png", KILN_SPLIT_TRAIN, 1},
              {"val/cat/c3.png", KILN_SPLIT_VAL, 0},     {"val/dog/d2.png", KILN_SPLIT_VAL, 1}};
  for (int i = 0; i < 6; i++) {
    const kiln_data_image *im = &ds->images[i]; /* import order: sorted names */
    CHECK_MSG(strcmp(im->source, want[i].name) == 0, "image %d is %s", i, im->source);
    CHECK(im->split == want[i].split && im->label == want[i].label);
    CHECK(im->width == 8 && im->height == 8 && im->channels == 3 && !im->pixels && im->n_boxes == 0);
    char hex[KILN_DATA_HASH_HEX + 1];
    file_sha256(im->path, hex);
    CHECK_MSG(strcmp(hex, im->hash) == 0, "%s: hash %s, file %s", im->source, im->hash, hex);
  }
  CHECK(has_problem(ds, KILN_ISSUE_FEW_IMAGES, "label 'cat' has 3 images (at least 10 recommended)"));
  CHECK(ds->n_warnings == 2);
  kiln_image rgb;
  kiln_error err;
  REQUIRE(kiln_dataset_load_image(ds, 0, &rgb, &err) == KILN_OK);
  CHECK(rgb.width == 8 && rgb.height == 8);
  kiln_image_free(&rgb);
  CHECK(kiln_dataset_load_image(ds, 6, &rgb, &err) == KILN_ERR_INVALID_ARG);
  kiln_dataset_free(ds);
}

/* VOC pixel corners as written; difficult flagged; ImageSets splits; an
 * image without XML is a background image. */
static void check_voc(const kiln_dataset *ds, const char *prefix) {
  char name[256];
  REQUIRE(ds && ds->n_errors == 0 && ds->task == KILN_TASK_DETECT && ds->format == KILN_DATA_VOC);
  REQUIRE(ds->n_labels == 3 && ds->n_images == 3);
  CHECK(strcmp(ds->labels[0], "cat") == 0 && strcmp(ds->labels[1], "dog") == 0 &&
        strcmp(ds->labels[2], "person") == 0);
  snprintf(name, sizeof name, "%sJPEGImages/a.png", prefix);
  const kiln_data_image *a = image_named(ds, name);
  REQUIRE(a && a->n_boxes == 2);
  CHECK(a->split == KILN_SPLIT_TRAIN && a->label == -1 && a->width == 16 && a->height == 12);
  CHECK(box_is(&a->boxes[0], 1, 2, 5, 7, 0, 0));
  CHECK(box_is(&a->boxes[1], 8.5f, 1, 15, 11, 1, 0));
  snprintf(name, sizeof name, "%sJPEGImages/b.jpg", prefix);
  const kiln_data_image *b = image_named(ds, name);
  REQUIRE(b && b->n_boxes == 1);
  CHECK(b->split == KILN_SPLIT_VAL);
  CHECK(box_is(&b->boxes[0], 0, 0, 16, 12, 2, KILN_BOX_DIFFICULT));
  snprintf(name, sizeof name, "%sJPEGImages/c.png", prefix);
  const kiln_data_image *c = image_named(ds, name);
  REQUIRE(c);
  CHECK(c->n_boxes == 0 && c->split == KILN_SPLIT_TRAIN);
  char msg[512];
  snprintf(msg, sizeof msg,
           "%sJPEGImages/c.png: no annotation file (expected %sAnnotations/c.xml); kept as a background image",
           prefix, prefix);
  CHECK(has_problem(ds, KILN_ISSUE_UNANNOTATED, msg));
  CHECK(ds->n_warnings == 4); /* c.png and three labels under 10 images */
}

static void test_voc(void) {
  kiln_dataset *ds = import_ok(fixture("voc"));
  check_voc(ds, "");
  CHECK(ds && strcmp(ds->detected_by, "Annotations/*.xml") == 0);
  kiln_dataset_free(ds);
}

/* COCO: non-contiguous category ids 1, 3, 7 -> labels 0, 1, 2 by id;
 * bbox [x,y,w,h]; iscrowd flagged; split from the file name. */
static void test_coco(void) {
  kiln_dataset *ds = import_ok(fixture("coco"));
  REQUIRE(ds && ds->n_errors == 0 && ds->format == KILN_DATA_COCO && ds->task == KILN_TASK_DETECT);
  REQUIRE(ds->n_labels == 3 && ds->n_images == 3);
  CHECK(strcmp(ds->labels[0], "cat") == 0 && strcmp(ds->labels[1], "dog") == 0 &&
        strcmp(ds->labels[2], "bird") == 0);
  const kiln_data_image *a = image_named(ds, "images/a.png"), *b = image_named(ds, "images/b.png"),
                        *c = image_named(ds, "images/c.png");
  REQUIRE(a && b && c && a->n_boxes == 2 && b->n_boxes == 1 && c->n_boxes == 1);
  CHECK(box_is(&a->boxes[0], 1, 2, 5, 7, 1, 0));
  CHECK(box_is(&a->boxes[1], 6.5f, 0, 16, 12, 2, KILN_BOX_CROWD));
  CHECK(box_is(&b->boxes[0], 2, 3, 12, 11, 0, 0));
  CHECK(box_is(&c->boxes[0], 0, 0, 16, 12, 0, 0));
  CHECK(a->split == KILN_SPLIT_TRAIN && b->split == KILN_SPLIT_TRAIN && c->split == KILN_SPLIT_VAL);
  kiln_dataset_free(ds);
}

/* YOLO: names as a mapping; "class cx cy w h" normalized on 16x12. */
static void test_yolo(void) {
  kiln_dataset *ds = import_ok(fixture("yolo"));
  REQUIRE(ds && ds->n_errors == 0 && ds->format == KILN_DATA_YOLO);
  CHECK(strcmp(ds->detected_by, "data.yaml") == 0);
  REQUIRE(ds->n_labels == 2 && ds->n_images == 3);
  CHECK(strcmp(ds->labels[0], "cat") == 0 && strcmp(ds->labels[1], "dog") == 0);
  const kiln_data_image *a = image_named(ds, "images/train/a.png"),
                        *b = image_named(ds, "images/train/b.png"), *c = image_named(ds, "images/val/c.png");
  REQUIRE(a && b && c && a->n_boxes == 2 && c->n_boxes == 1);
  CHECK(box_is(&a->boxes[0], 6, 3, 10, 9, 0, 0));  /* 0 0.5 0.5 0.25 0.5 */
  CHECK(box_is(&a->boxes[1], 8, 0, 16, 6, 1, 0));  /* 1 0.75 0.25 0.5 0.5 */
  CHECK(box_is(&c->boxes[0], 0, 0, 8, 6, 1, 0));   /* 1 0.25 0.25 0.5 0.5 */
  CHECK(b->n_boxes == 0 && a->split == KILN_SPLIT_TRAIN && c->split == KILN_SPLIT_VAL);
  CHECK(has_problem(ds, KILN_ISSUE_UNANNOTATED,
                    "images/train/b.png: no objects annotated in labels/train/b.txt; kept as a background image"));
  kiln_dataset_free(ds);
}

/* AutoML CSV: relative corners, 2-vertex and 4-vertex forms, ML_USE, an
 * image-only TEST row. */
static void check_automl(const kiln_dataset *ds) {
  REQUIRE(ds && ds->n_errors == 0 && ds->format == KILN_DATA_AUTOML && ds->task == KILN_TASK_DETECT);
  REQUIRE(ds->n_labels == 2 && ds->n_images == 4);
  const kiln_data_image *a = image_named(ds, "images/a.png"), *b = image_named(ds, "images/b.png"),
                        *c = image_named(ds, "images/c.png"), *d = image_named(ds, "images/d.png");
  REQUIRE(a && b && c && d && a->n_boxes == 2 && b->n_boxes == 1 && d->n_boxes == 1);
  CHECK(box_is(&a->boxes[0], 2, 3, 8, 9, 0, 0));
  CHECK(box_is(&a->boxes[1], 8, 6, 12, 12, 1, 0));
  CHECK(box_is(&b->boxes[0], 0, 0, 16, 12, 0, 0));
  CHECK(box_is(&d->boxes[0], 4, 3, 12, 9, 1, 0));
  CHECK(c->n_boxes == 0);
  CHECK(a->split == KILN_SPLIT_TRAIN && b->split == KILN_SPLIT_VAL && c->split == KILN_SPLIT_TEST &&
        d->split == KILN_SPLIT_UNASSIGNED);
  CHECK(has_problem(ds, KILN_ISSUE_UNANNOTATED,
                    "images/c.png: no objects annotated in data.csv; kept as a background image"));
}

static void test_automl(void) {
  kiln_dataset *ds = import_ok(fixture("automl"));
  check_automl(ds);
  kiln_dataset_free(ds);
  ds = import_ok(fixture("automl/")); /* a trailing slash changes no name */
  check_automl(ds);
  kiln_dataset_free(ds);
  ds = import_ok(fixture("automl/data.csv")); /* the CSV as PATH */
  check_automl(ds);
  CHECK(ds && strcmp(ds->detected_by, "data.csv") == 0);
  kiln_dataset_free(ds);
}

/* IDX: gzipped train, raw t10k; pixels in memory; names from labels.txt;
 * hash over the image's PGM form. */
static void test_idx(void) {
  kiln_dataset *ds = import_ok(fixture("idx"));
  REQUIRE(ds && ds->n_errors == 0 && ds->format == KILN_DATA_IDX && ds->task == KILN_TASK_CLASSIFY);
  REQUIRE(ds->n_labels == 3 && ds->n_images == 7);
  CHECK(strcmp(ds->labels[0], "shirt") == 0 && strcmp(ds->labels[2], "bag") == 0);
  static const int32_t labels[7] = {2, 2, 0, 1, 2, 0, 1}; /* t10k first (sorted names) */
  static const int first[7] = {5, 6, 0, 1, 2, 3, 4};      /* image number in the formula */
  for (int i = 0; i < 7; i++) {
    const kiln_data_image *im = &ds->images[i];
    REQUIRE(im->pixels && !im->path && im->width == 4 && im->height == 3 && im->channels == 1);
    CHECK(im->label == labels[i]);
    CHECK(im->split == (i < 2 ? KILN_SPLIT_TEST : KILN_SPLIT_TRAIN));
    unsigned char pgm[11 + 12];
    memcpy(pgm, "P5\n4 3\n255\n", 11);
    bool same = true;
    for (int p = 0; p < 12; p++) {
      pgm[11 + p] = (unsigned char)((first[i] * 50 + (p / 4) * 4 + p % 4) & 255);
      same &= im->pixels[p] == pgm[11 + p];
    }
    CHECK_MSG(same, "image %d pixels", i);
    unsigned char digest[32];
    char hex[65];
    crypto_hash_sha256(digest, pgm, sizeof pgm);
    sodium_bin2hex(hex, sizeof hex, digest, sizeof digest);
    CHECK(strcmp(hex, im->hash) == 0);
  }
  CHECK(strcmp(ds->images[0].source, "t10k-images-idx3-ubyte: image 0") == 0);
  kiln_image rgb;
  kiln_error err;
  REQUIRE(kiln_dataset_load_image(ds, 2, &rgb, &err) == KILN_OK);
  CHECK(rgb.width == 4 && rgb.height == 3 && rgb.pixels[0] == 0 && rgb.pixels[2] == 0 &&
        rgb.pixels[3 * 5] == 5 && rgb.pixels[3 * 5 + 1] == 5);
  kiln_image_free(&rgb);
  kiln_dataset_free(ds);
}

/* Archives: the zip's single top folder is entered; the tar.gz has none.
 * The extraction folder is gone once the dataset is freed. */
static void test_archives(void) {
  kiln_dataset *ds = import_ok(fixture("voc.zip"));
  check_voc(ds, "voc.zip/voc/");
  REQUIRE(ds && ds->n_images > 0);
  char dir[4096];
  snprintf(dir, sizeof dir, "%s", ds->images[0].path);
  *strstr(dir, "/voc/JPEGImages") = '\0';
  struct stat st;
  CHECK(stat(dir, &st) == 0);
  kiln_dataset_free(ds);
  CHECK(stat(dir, &st) != 0);
  ds = import_ok(fixture("yolo.tar.gz"));
  REQUIRE(ds && ds->n_errors == 0 && ds->n_images == 3);
  CHECK(image_named(ds, "yolo.tar.gz/images/val/c.png") != NULL);
  kiln_dataset_free(ds);
}

/* Every image, label, split and box survives kiln_dataset_write and a new
 * import exactly; writing again over the store changes nothing. */
static void roundtrip(const char *fixture_name) {
  kiln_dataset *a = import_ok(fixture(fixture_name));
  REQUIRE(a && a->n_errors == 0);
  kiln_error err;
  const char *dir = scratch(0);
  REQUIRE(kiln_dataset_write(a, dir, &err) == KILN_OK);
  REQUIRE(kiln_dataset_write(a, dir, &err) == KILN_OK);
  kiln_dataset *b = import_ok(dir);
  REQUIRE(b && b->n_errors == 0);
  CHECK(b->format == KILN_DATA_KILN && b->task == a->task);
  CHECK(b->n_images == a->n_images && b->n_labels == a->n_labels);
  for (int32_t l = 0; l < a->n_labels && l < b->n_labels; l++) CHECK(strcmp(a->labels[l], b->labels[l]) == 0);
  for (int32_t i = 0; i < a->n_images && i < b->n_images; i++) {
    const kiln_data_image *x = &a->images[i], *y = &b->images[i];
    CHECK_MSG(strcmp(x->hash, y->hash) == 0 && strcmp(x->source, y->source) == 0, "%s: %s", fixture_name,
              x->source);
    CHECK(x->split == y->split && x->label == y->label && x->n_boxes == y->n_boxes);
    CHECK(x->width == y->width && x->height == y->height && x->channels == y->channels);
    CHECK((x->pixels != NULL) == (y->pixels != NULL));
    if (x->pixels && y->pixels)
      CHECK(memcmp(x->pixels, y->pixels, (size_t)x->width * x->height * x->channels) == 0);
    for (int32_t k = 0; k < x->n_boxes && k < y->n_boxes; k++)
      CHECK(memcmp(&x->boxes[k], &y->boxes[k], sizeof x->boxes[k]) == 0);
  }
  kiln_dataset_free(a);
  kiln_dataset_free(b);
  scratch_done(0);
}

static void test_roundtrip(void) {
  static const char *const names[] = {"folders", "voc", "coco", "yolo", "automl", "idx"};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) roundtrip(names[i]);
}

/* One annotation file as PATH: its format from the name, the dataset
 * around it. */
static void test_single_file(void) {
  static const struct {
    const char *file;
    kiln_data_format format;
    int32_t images, boxes;
  } cases[] = {{"voc/Annotations/a.xml", KILN_DATA_VOC, 1, 2},
               {"yolo/data.yaml", KILN_DATA_YOLO, 3, 3},
               {"coco/annotations/instances_val.json", KILN_DATA_COCO, 1, 1},
               {"idx/train-images-idx3-ubyte.gz", KILN_DATA_IDX, 5, 0}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    kiln_dataset *ds = import_ok(fixture(cases[i].file));
    REQUIRE(ds && ds->n_errors == 0);
    int32_t boxes = 0;
    for (int32_t k = 0; k < ds->n_images; k++) boxes += ds->images[k].n_boxes;
    CHECK_MSG(ds->format == cases[i].format && ds->n_images == cases[i].images && boxes == cases[i].boxes,
              "%s: %s, %d images, %d boxes", cases[i].file, kiln_data_format_name(ds->format), ds->n_images, boxes);
    CHECK(strcmp(ds->detected_by, strrchr(cases[i].file, '/') + 1) == 0);
    kiln_dataset_free(ds);
  }
}

/* Detection and its failures: a forced format that is not there, an
 * empty folder, a path that does not exist. */
static void test_detection_failures(void) {
  kiln_data_options opt = kiln_data_options_default();
  opt.format = KILN_DATA_VOC;
  kiln_status s;
  char msg[1024];
  kiln_dataset *ds = import_with(fixture("yolo"), &opt, &s);
  CHECK(s == KILN_ERR_FORMAT);
  snprintf(msg, sizeof msg, "%s: no VOC annotations (Annotations/*.xml or *.xml)", fixture("yolo"));
  CHECK(has_problem(ds, KILN_ISSUE_NOT_FOUND, msg));
  CHECK(ds && strcmp(ds->detected_by, "--format") == 0);
  kiln_dataset_free(ds);
  const char *empty = scratch(0);
  ds = import_with(empty, NULL, &s);
  CHECK(s == KILN_ERR_IO);
  snprintf(msg, sizeof msg,
           "%s: no dataset found: expected dataset.json (kiln), *idx3-ubyte files (idx), data.yaml or "
           "images/ + labels/ (yolo), a COCO .json (coco), a .csv (automl), Annotations/*.xml (voc) or "
           "one folder per class (folders)", empty);
  CHECK(has_problem(ds, KILN_ISSUE_NOT_FOUND, msg));
  kiln_dataset_free(ds);
  scratch_done(0);
  ds = import_with("/nonexistent/kiln/data", NULL, &s);
  CHECK(s == KILN_ERR_IO);
  CHECK(has_problem(ds, KILN_ISSUE_NOT_FOUND, "/nonexistent/kiln/data: no such file or directory"));
  kiln_dataset_free(ds);
  kiln_error err;
  opt.format = (kiln_data_format)99;
  CHECK(kiln_data_import(fixture("voc"), &opt, &ds, &err) == KILN_ERR_INVALID_ARG && ds == NULL);
}

/* A fixed label list: names outside it are unknown; its order is kept. */
static void test_label_list(void) {
  const char *labels[] = {"person", "cat"};
  kiln_data_options opt = kiln_data_options_default();
  opt.labels = labels;
  opt.n_labels = 2;
  kiln_status s;
  kiln_dataset *ds = import_with(fixture("voc"), &opt, &s);
  REQUIRE(ds && s == KILN_OK);
  REQUIRE(ds->n_labels == 2);
  CHECK(strcmp(ds->labels[0], "person") == 0 && strcmp(ds->labels[1], "cat") == 0);
  CHECK(has_problem(ds, KILN_ISSUE_UNKNOWN_LABEL,
                    "Annotations/a.xml: object 2: unknown label 'dog' (not in the given label list); skipped"));
  const kiln_data_image *a = image_named(ds, "JPEGImages/a.png");
  REQUIRE(a && a->n_boxes == 1);
  CHECK(box_is(&a->boxes[0], 1, 2, 5, 7, 1, 0));
  kiln_dataset_free(ds);
  /* the CLI's list reader */
  const char *dir = scratch(0);
  write_text(dir, "labels.txt", " cat \n\ndog\r\n");
  char path[4096], **names;
  int32_t n;
  kiln_error err;
  path_join(path, sizeof path, dir, "labels.txt");
  REQUIRE(kiln_data_labels_read(path, &names, &n, &err) == KILN_OK);
  CHECK(n == 2 && strcmp(names[0], "cat") == 0 && strcmp(names[1], "dog") == 0);
  kiln_data_labels_free(names, n);
  write_text(dir, "labels.txt", "cat\ndog\ncat\n");
  CHECK(kiln_data_labels_read(path, &names, &n, &err) == KILN_ERR_FORMAT);
  CHECK(strstr(err.msg, "line 3: label 'cat' given twice") != NULL);
  scratch_done(0);
}

int main(void) {
  RUN(test_folders);
  RUN(test_voc);
  RUN(test_coco);
  RUN(test_yolo);
  RUN(test_automl);
  RUN(test_idx);
  RUN(test_archives);
  RUN(test_roundtrip);
  RUN(test_single_file);
  RUN(test_detection_failures);
  RUN(test_label_list);
  return test_summary();
}
