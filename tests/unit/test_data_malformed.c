/*
 * test_data_malformed.c: broken datasets of every format give the exact
 * message, with the right severity (errors fail the import, warnings skip
 * or fix the item and say so): truncated XML, entity declarations (billion
 * laughs, external entities), bad boxes (reversed, zero-area, outside,
 * partly outside), missing fields and images, COCO bboxes that are not 4
 * numbers, YOLO lines without 5 numbers, bad YAML, bad ML_USE, IDX with a
 * wrong magic or size, files that are not images, duplicates, unknown
 * labels, imbalance, and kiln's own store tampered with. Each case copies a
 * committed fixture into a scratch folder and changes one file.
 */
#include <zlib.h>

#include "kiln/data.h"
#include "test_data_util.h"

/* Imports path, expecting status; returns the dataset (never NULL). */
static kiln_dataset *import_expect(const char *path, kiln_status want) {
  kiln_status s;
  kiln_dataset *ds = import_with(path, NULL, &s);
  if (s != want) {
    fprintf(stderr, "  %s: status %s, expected %s\n", path, kiln_status_str(s), kiln_status_str(want));
    print_problems(ds);
    test_failures++;
  }
  if (!ds) abort();
  return ds;
}

static const char *voc_xml(const char *objects, const char *extra) {
  static char buf[4096];
  snprintf(buf, sizeof buf,
           "<annotation>\n  <filename>a.png</filename>\n  <size><width>16</width><height>12</height></size>\n"
           "%s%s</annotation>\n", extra, objects);
  return buf;
}

#define OBJ(name, x0, y0, x1, y1)                                                          \
  "  <object><name>" name "</name><bndbox><xmin>" x0 "</xmin><ymin>" y0 "</ymin><xmax>" x1 \
  "</xmax><ymax>" y1 "</ymax></bndbox></object>\n"

/* A copy of the VOC fixture whose a.xml is xml. */
static kiln_dataset *voc_with(const char *xml, kiln_status want) {
  const char *root = scratch_copy(0, "voc");
  write_text(root, "Annotations/a.xml", xml);
  kiln_dataset *ds = import_expect(root, want);
  return ds;
}

static void test_voc_boxes(void) {
  kiln_dataset *ds = voc_with(voc_xml(OBJ("cat", "-3", "2", "20", "7") OBJ("dog", "410", "20", "390", "80")
                                          OBJ("dog", "5", "2", "5", "7") OBJ("dog", "20", "2", "30", "7")
                                          OBJ("cat", "1", "2", "5", "2"),
                                      ""),
                              KILN_OK);
  CHECK(has_problem(ds, KILN_ISSUE_BOX_CLAMPED,
                    "Annotations/a.xml: object 1: box (-3,2)-(20,7) extends outside the 16x12 image; clamped to (0,2)-(16,7)"));
  CHECK(has_problem(ds, KILN_ISSUE_BOX_EMPTY,
                    "Annotations/a.xml: object 2: box (410,20)-(390,80) has xmax < xmin; skipped"));
  CHECK(has_problem(ds, KILN_ISSUE_BOX_EMPTY,
                    "Annotations/a.xml: object 3: box (5,2)-(5,7) has zero width (xmin = xmax); skipped"));
  CHECK(has_problem(ds, KILN_ISSUE_BOX_EMPTY,
                    "Annotations/a.xml: object 4: box (20,2)-(30,7) lies outside the 16x12 image; skipped"));
  CHECK(has_problem(ds, KILN_ISSUE_BOX_EMPTY,
                    "Annotations/a.xml: object 5: box (1,2)-(5,2) has zero height (ymin = ymax); skipped"));
  const kiln_data_image *a = image_named(ds, "JPEGImages/a.png");
  REQUIRE(a && a->n_boxes == 1);
  CHECK(box_is(&a->boxes[0], 0, 2, 16, 7, 0, 0));
  kiln_dataset_free(ds);
  scratch_done(0);
  /* a box 0.1 pixel wide is kept, with a warning */
  ds = voc_with(voc_xml(OBJ("cat", "1", "2", "1.1", "7"), ""), KILN_OK);
  CHECK(has_problem(ds, KILN_ISSUE_BOX_SMALL,
                    "Annotations/a.xml: object 1: box (1,2)-(1.1,7) is 0.1x5 pixels, under 1% of the 16x12 image's width; kept"));
  kiln_dataset_free(ds);
  scratch_done(0);
}

static void test_voc_errors(void) {
  kiln_dataset *ds = voc_with("<annotation>\n  <filename>a.png</filename>\n  <object><name>cat</name>\n    <bnd", KILN_ERR_FORMAT);
  CHECK(has_problem(ds, KILN_ISSUE_SYNTAX, "Annotations/a.xml: line 4: XML error: unclosed token"));
  kiln_dataset_free(ds);
  scratch_done(0);
  ds = voc_with("<?xml version=\"1.0\"?>\n<!DOCTYPE lolz [\n <!ENTITY lol \"lol\">\n"
                " <!ENTITY lol2 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">\n"
                " <!ENTITY lol3 \"&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;\">\n]>\n"
                "<annotation><filename>&lol3;</filename></annotation>\n",
                KILN_ERR_FORMAT);
  CHECK(has_problem(ds, KILN_ISSUE_UNSAFE,
                    "Annotations/a.xml: line 3: XML entity declarations are not allowed (<!ENTITY lol ...>); "
                    "refused (billion-laughs and external-entity protection)"));
  CHECK(ds->n_errors == 1);
  kiln_dataset_free(ds);
  scratch_done(0);
  ds = voc_with("<?xml version=\"1.0\"?>\n<!DOCTYPE annotation [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]>\n"
                "<annotation><filename>&xxe;</filename></annotation>\n",
                KILN_ERR_FORMAT);
  CHECK(has_problem(ds, KILN_ISSUE_UNSAFE,
                    "Annotations/a.xml: line 2: XML entity declarations are not allowed (<!ENTITY xxe ...>); "
                    "refused (billion-laughs and external-entity protection)"));
  kiln_dataset_free(ds);
  scratch_done(0);
  ds = voc_with("<annotation><filename>&undefined;</filename></annotation>\n", KILN_ERR_FORMAT);
  CHECK(has_problem(ds, KILN_ISSUE_SYNTAX, "Annotations/a.xml: line 1: XML error: undefined entity"));
  kiln_dataset_free(ds);
  scratch_done(0);
  ds = voc_with(voc_xml("  <object><name>cat</name><bndbox><xmin>1</xmin><ymin>2</ymin><xmax>5</xmax></bndbox></object>\n", ""),
                KILN_ERR_FORMAT);
  CHECK(has_problem(ds, KILN_ISSUE_BAD_ANNOTATION, "Annotations/a.xml: object 1: <bndbox> has no <ymax>"));
  kiln_dataset_free(ds);
  scratch_done(0);
  ds = voc_with(voc_xml(OBJ("cat", "abc", "2", "5", "7"), ""), KILN_ERR_FORMAT);
  CHECK(has_problem(ds, KILN_ISSUE_BAD_ANNOTATION, "Annotations/a.xml: object 1: <xmin> is 'abc', not a number"));
  kiln_dataset_free(ds);
  scratch_done(0);
  ds = voc_with(voc_xml("  <object><bndbox><xmin>1</xmin></bndbox></object>\n", ""), KILN_ERR_FORMAT);
  CHECK(has_problem(ds, KILN_ISSUE_BAD_ANNOTATION, "Annotations/a.xml: object 1: no <name>"));
  kiln_dataset_free(ds);
  scratch_done(0);
  ds = voc_with("<notvoc/>\n", KILN_ERR_FORMAT);
  CHECK(has_problem(ds, KILN_ISSUE_BAD_ANNOTATION, "Annotations/a.xml: root element is <notvoc>, not <annotation>"));
  kiln_dataset_free(ds);
  scratch_done(0);
}

static void test_voc_warnings(void) {
  kiln_dataset *ds = voc_with("<annotation><filename>zz.png</filename></annotation>\n", KILN_OK);
  CHECK(has_problem(ds, KILN_ISSUE_MISSING_IMAGE,
                    "Annotations/a.xml: image 'zz.png' not found (looked in JPEGImages/, images/, beside the "
                    "XML and at the top); skipped"));
  kiln_dataset_free(ds);
  scratch_done(0);
  ds = voc_with("<annotation><filename>a.png</filename><size><width>12</width><height>16</height></size>"
                OBJ("cat", "1", "2", "5", "7") "</annotation>\n", KILN_OK);
  CHECK(has_problem(ds, KILN_ISSUE_SIZE_MISMATCH,
                    "Annotations/a.xml: declared size 12x16 but JPEGImages/a.png is 16x12 (rotated: EXIF "
                    "orientation?); boxes kept as written"));
  kiln_dataset_free(ds);
  scratch_done(0);
  const char *labels[] = {"cat", "dog", "person"};
  kiln_data_options opt = kiln_data_options_default();
  opt.labels = labels;
  opt.n_labels = 3;
  const char *root = scratch_copy(0, "voc");
  write_text(root, "Annotations/a.xml", voc_xml(OBJ("horse", "1", "2", "5", "7"), ""));
  kiln_status s;
  ds = import_with(root, &opt, &s);
  CHECK(s == KILN_OK);
  CHECK(has_problem(ds, KILN_ISSUE_UNKNOWN_LABEL,
                    "Annotations/a.xml: object 1: unknown label 'horse' (not in the given label list); skipped"));
  CHECK(has_problem(ds, KILN_ISSUE_UNANNOTATED,
                    "JPEGImages/a.png: no usable boxes left (see above); kept as a background image"));
  kiln_dataset_free(ds);
  scratch_done(0);
}

/* A COCO dataset of the fixture's images a.png and b.png with json as its
 * annotations file. */
static kiln_dataset *coco_with(const char *json, kiln_status want) {
  const char *root = scratch_copy(0, "coco");
  char path[4096];
  path_join(path, sizeof path, root, "annotations/instances_val.json");
  unlink(path);
  write_text(root, "annotations/instances_train.json", json);
  return import_expect(root, want);
}

#define COCO_HEAD                                                                                   \
  "{\"images\": [{\"id\": 1, \"file_name\": \"a.png\", \"width\": 16, \"height\": 12},\n"             \
  "  {\"id\": 2, \"file_name\": \"b.png\"}],\n \"categories\": [{\"id\": 4, \"name\": \"cat\"}],\n" \
  " \"annotations\": [\n"

static void test_coco(void) {
  kiln_dataset *ds = coco_with(COCO_HEAD "{\"image_id\": 1, \"category_id\": 4, \"bbox\": [1, 2, 4]}]}", KILN_ERR_FORMAT);
  CHECK(has_problem(ds, KILN_ISSUE_BAD_ANNOTATION,
                    "annotations/instances_train.json: annotations[0]: bbox [1,2,4] is not 4 numbers [x, y, width, height]"));
  kiln_dataset_free(ds);
  scratch_done(0);
  ds = coco_with(COCO_HEAD "{\"image_id\": 1, \"category_id\": 4, \"bbox\": [1, 2, \"4\", 5]}]}", KILN_ERR_FORMAT);
  CHECK(has_problem(ds, KILN_ISSUE_BAD_ANNOTATION,
                    "annotations/instances_train.json: annotations[0]: bbox [1,2,\"4\",5] is not 4 numbers [x, y, width, height]"));
  kiln_dataset_free(ds);
  scratch_done(0);
  ds = coco_with(COCO_HEAD "{\"image_id\": 1, \"category_id\": 4, \"bbox\": [1, 2, -4, 5]},\n"
                 "{\"image_id\": 1, \"category_id\": 9, \"bbox\": [1, 2, 4, 5]},\n"
                 "{\"image_id\": 2, \"category_id\": 4, \"bbox\": [10, 2, 10, 5]},\n"
                 "{\"image_id\": 3, \"category_id\": 4, \"bbox\": [1, 1, 1, 1]},\n"
                 "{\"image_id\": 2, \"category_id\": 4, \"bbox\": [1, 1, 8, 0]}]}",
                 KILN_OK);
  CHECK(has_problem(ds, KILN_ISSUE_BOX_EMPTY,
                    "annotations/instances_train.json: annotations[0] (images/a.png): box [1,2,-4,5] has a negative width; skipped"));
  CHECK(has_problem(ds, KILN_ISSUE_UNKNOWN_LABEL,
                    "annotations/instances_train.json: annotations[1] (images/a.png): category_id 9 is not in categories; skipped"));
  CHECK(has_problem(ds, KILN_ISSUE_BOX_CLAMPED,
                    "annotations/instances_train.json: annotations[2] (images/b.png): box [10,2,10,5] extends outside "
                    "the 16x12 image; clamped to (10,2)-(16,7)"));
  CHECK(has_problem(ds, KILN_ISSUE_MISSING_IMAGE,
                    "annotations/instances_train.json: annotations[3]: image_id 3 is not in images; skipped"));
  CHECK(has_problem(ds, KILN_ISSUE_BOX_EMPTY,
                    "annotations/instances_train.json: annotations[4] (images/b.png): box [1,1,8,0] has zero height; skipped"));
  CHECK(has_problem(ds, KILN_ISSUE_UNANNOTATED,
                    "images/a.png: no usable boxes left (see above); kept as a background image"));
  kiln_dataset_free(ds);
  scratch_done(0);
  ds = coco_with("{\"images\": [{\"id\": 1, \"file_name\": \"zz.png\"}, {\"id\": 2, \"file_name\": \"b.png\"}],"
                 " \"categories\": [{\"id\": 4, \"name\": \"cat\"}], \"annotations\": ["
                 "{\"image_id\": 1, \"category_id\": 4, \"bbox\": [1, 2, 4, 5]},"
                 "{\"image_id\": 2, \"category_id\": 4, \"bbox\": [1, 2, 4, 5]}]}",
                 KILN_OK);
  CHECK(has_problem(ds, KILN_ISSUE_MISSING_IMAGE,
                    "annotations/instances_train.json: images[0]: 'zz.png' not found (looked beside the JSON, at "
                    "the top and in images/); skipped"));
  CHECK(ds->n_images == 1);
  kiln_dataset_free(ds);
  scratch_done(0);
  ds = coco_with(COCO_HEAD "{\"image_id\": 1, \"category_id\": 4, \"bbox\": [1, 2", KILN_ERR_FORMAT);
  CHECK(has_problem(ds, KILN_ISSUE_SYNTAX,
                    "annotations/instances_train.json: line 5: JSON error: ']' expected near end of file"));
  kiln_dataset_free(ds);
  scratch_done(0);
  ds = coco_with("{\"images\": [], \"annotations\": [], \"categories\": [{\"id\": 1, \"name\": \"a\"},"
                 " {\"id\": 1, \"name\": \"b\"}]}", KILN_ERR_FORMAT);
  CHECK(has_problem(ds, KILN_ISSUE_BAD_ANNOTATION, "annotations/instances_train.json: category id 1 is used twice"));
  kiln_dataset_free(ds);
  scratch_done(0);
  /* two files that disagree on the categories */
  const char *root = scratch_copy(0, "coco");
  write_text(root, "annotations/instances_val.json",
             "{\"images\": [], \"annotations\": [], \"categories\": [{\"id\": 1, \"name\": \"cat\"}]}");
  ds = import_expect(root, KILN_ERR_FORMAT);
  CHECK(has_problem(ds, KILN_ISSUE_BAD_ANNOTATION,
                    "annotations/instances_val.json: categories differ from those of annotations/instances_train.json"));
  kiln_dataset_free(ds);
  scratch_done(0);
}

static kiln_dataset *yolo_with(const char *rel, const char *content, kiln_status want) {
  const char *root = scratch_copy(0, "yolo");
  if (content) {
    write_text(root, rel, content);
  } else {
    char path[4096];
    path_join(path, sizeof path, root, rel);
    unlink(path);
  }
  return import_expect(root, want);
}

static void test_yolo(void) {
  kiln_dataset *ds = yolo_with("labels/train/a.txt", "0 0.5 0.5 0.25\n", KILN_ERR_FORMAT);
  CHECK(has_problem(ds, KILN_ISSUE_BAD_ANNOTATION,
                    "labels/train/a.txt: line 1: expected 5 numbers (class x_center y_center width height), found 4"));
  kiln_dataset_free(ds);
  scratch_done(0);
  ds = yolo_with("labels/train/a.txt", "\n0 0.5 abc 0.1 0.1\n", KILN_ERR_FORMAT);
  CHECK(has_problem(ds, KILN_ISSUE_BAD_ANNOTATION, "labels/train/a.txt: line 2: 'abc' is not a number"));
  kiln_dataset_free(ds);
  scratch_done(0);
  ds = yolo_with("labels/train/a.txt", "0 0.5 0.5 0.1 0.1 0.2 0.3\n", KILN_ERR_FORMAT);
  CHECK(has_problem(ds, KILN_ISSUE_BAD_ANNOTATION,
                    "labels/train/a.txt: line 1: expected 5 numbers (class x_center y_center width height), found "
                    "7 (polygon/segmentation labels are not supported)"));
  kiln_dataset_free(ds);
  scratch_done(0);
  ds = yolo_with("labels/val/c.txt", "7 0.5 0.5 0.1 0.1\n1 0.9 0.5 0.4 0.2\n0 0.5 0.5 0 0.2\n", KILN_OK);
  CHECK(has_problem(ds, KILN_ISSUE_UNKNOWN_LABEL,
                    "labels/val/c.txt: line 1: class 7 is not in data.yaml's names (2 classes); skipped"));
  CHECK(has_problem(ds, KILN_ISSUE_BOX_CLAMPED,
                    "labels/val/c.txt: line 2: box [0.9 0.5 0.4 0.2] extends outside the 16x12 image; clamped to "
                    "(11.2,4.8)-(16,7.2)"));
  CHECK(has_problem(ds, KILN_ISSUE_BOX_EMPTY, "labels/val/c.txt: line 3: box [0.5 0.5 0 0.2] has zero width; skipped"));
  kiln_dataset_free(ds);
  scratch_done(0);
  ds = yolo_with("labels/val/c.txt", NULL, KILN_OK);
  CHECK(has_problem(ds, KILN_ISSUE_UNANNOTATED,
                    "images/val/c.png: no annotation file (expected labels/val/c.txt); kept as a background image"));
  kiln_dataset_free(ds);
  scratch_done(0);
  ds = yolo_with("labels/train/zz.txt", "0 0.5 0.5 0.1 0.1\n", KILN_OK);
  CHECK(has_problem(ds, KILN_ISSUE_MISSING_IMAGE, "labels/train/zz.txt: no image for this label file; ignored"));
  kiln_dataset_free(ds);
  scratch_done(0);
  /* names as a list, no path:, an absolute path from another machine */
  ds = yolo_with("data.yaml", "path: /content/datasets/x\ntrain: images/train\nval: images/val\nnames: [cat, dog]\n", KILN_OK);
  CHECK(ds->n_images == 3 && ds->n_labels == 2 && strcmp(ds->labels[1], "dog") == 0);
  kiln_dataset_free(ds);
  scratch_done(0);
  ds = yolo_with("data.yaml", "train: images/train\nnames: [cat, dog\n", KILN_ERR_FORMAT);
  CHECK(has_problem(ds, KILN_ISSUE_SYNTAX, "data.yaml: line 3: YAML error: did not find expected ',' or ']'"));
  kiln_dataset_free(ds);
  scratch_done(0);
  ds = yolo_with("data.yaml", "train: /etc\nnames: [cat, dog]\n", KILN_ERR_FORMAT);
  CHECK(has_problem(ds, KILN_ISSUE_BAD_ANNOTATION, "data.yaml: train: '/etc' is outside the dataset"));
  kiln_dataset_free(ds);
  scratch_done(0);
  ds = yolo_with("data.yaml", "train: images/train\nnc: 3\nnames: [cat, dog]\n", KILN_ERR_FORMAT);
  CHECK(has_problem(ds, KILN_ISSUE_BAD_ANNOTATION, "data.yaml: nc is 3 but names has 2 entries"));
  kiln_dataset_free(ds);
  scratch_done(0);
  ds = yolo_with("data.yaml", "train: images/train\n", KILN_ERR_FORMAT);
  CHECK(has_problem(ds, KILN_ISSUE_BAD_ANNOTATION, "data.yaml: no names: list (the class names)"));
  kiln_dataset_free(ds);
  scratch_done(0);
}

static kiln_dataset *csv_with(const char *csv, kiln_status want) {
  const char *root = scratch_copy(0, "automl");
  write_text(root, "data.csv", csv);
  return import_expect(root, want);
}

static void test_automl(void) {
  kiln_dataset *ds = csv_with("TRAIN,images/a.png,cat,0.1,0.1,,,0.5,0.5,,\nTRAIN,images/b.png,cat,0,0,,,1,1,,\n"
                              "TRIAN,images/c.png,dog,0.1,0.1,,,0.5,0.5,,\n", KILN_ERR_FORMAT);
  CHECK(has_problem(ds, KILN_ISSUE_BAD_ANNOTATION,
                    "data.csv: line 3: ML_USE 'TRIAN' is not TRAIN, VALIDATION, TEST or UNASSIGNED"));
  kiln_dataset_free(ds);
  scratch_done(0);
  ds = csv_with("TRAIN,images/a.png,cat,0.1,x,,,0.5,0.5,,\n", KILN_ERR_FORMAT);
  CHECK(has_problem(ds, KILN_ISSUE_BAD_ANNOTATION, "data.csv: line 1: vertex value 'x' is not a number"));
  kiln_dataset_free(ds);
  scratch_done(0);
  ds = csv_with("TRAIN,images/a.png,cat,0.1,0.1,0.5,,,,,\n", KILN_ERR_FORMAT);
  CHECK(has_problem(ds, KILN_ISSUE_BAD_ANNOTATION,
                    "data.csv: line 1: a box needs the vertices (X1,Y1) and (X3,Y3), or all four (found 3 of 8 values)"));
  kiln_dataset_free(ds);
  scratch_done(0);
  ds = csv_with("TRAIN,images/a.png,,0.1,0.1,,,0.5,0.5,,\n", KILN_ERR_FORMAT);
  CHECK(has_problem(ds, KILN_ISSUE_BAD_ANNOTATION, "data.csv: line 1: box without a label"));
  kiln_dataset_free(ds);
  scratch_done(0);
  ds = csv_with("TRAIN,\"images/a.png\",cat,0.125,0.25,,,1.5,0.75,,\r\nTEST,images/zz.png,,,,,,,,,\r\n"
                "VALIDATION,images/b.png,cat,0.5,0.5,,,0.25,0.75,,\r\n", KILN_OK);
  CHECK(has_problem(ds, KILN_ISSUE_BOX_CLAMPED,
                    "data.csv: line 1 (images/a.png): box (0.125,0.25)-(1.5,0.75) extends outside the 16x12 image; "
                    "clamped to (2,3)-(16,9)"));
  CHECK(has_problem(ds, KILN_ISSUE_MISSING_IMAGE, "data.csv: line 2: image 'images/zz.png' not found; its rows are skipped"));
  CHECK(has_problem(ds, KILN_ISSUE_BOX_EMPTY,
                    "data.csv: line 3 (images/b.png): box (0.5,0.5)-(0.25,0.75) has xmax < xmin; skipped"));
  kiln_dataset_free(ds);
  scratch_done(0);
  ds = csv_with("TRAIN,images/a.png,\"big, cat\"\nTRAIN,images/a.png,dog\nimages/b.png,dog\ntest,images/c.png\n", KILN_OK);
  CHECK(ds->task == KILN_TASK_CLASSIFY && ds->n_labels == 2 && strcmp(ds->labels[0], "big, cat") == 0);
  CHECK(has_problem(ds, KILN_ISSUE_CONFLICT,
                    "data.csv: line 2: images/a.png is already labelled 'big, cat' (data.csv: line 1); one label "
                    "per image, keeping 'big, cat'"));
  CHECK(has_problem(ds, KILN_ISSUE_UNANNOTATED, "images/c.png: no label; skipped"));
  const kiln_data_image *b = image_named(ds, "images/b.png");
  CHECK(b && b->split == KILN_SPLIT_UNASSIGNED && b->label == 1);
  kiln_dataset_free(ds);
  scratch_done(0);
  ds = csv_with("TRAIN,\"images/a.png,cat\n", KILN_ERR_FORMAT);
  CHECK(has_problem(ds, KILN_ISSUE_SYNTAX, "data.csv: line 1: unterminated quoted field"));
  kiln_dataset_free(ds);
  scratch_done(0);
}

static void put_be32(unsigned char *p, uint32_t v) {
  p[0] = (unsigned char)(v >> 24), p[1] = (unsigned char)(v >> 16), p[2] = (unsigned char)(v >> 8),
  p[3] = (unsigned char)v;
}

static void test_idx(void) {
  const char *root = scratch_copy(0, "idx");
  unsigned char head[16] = {0, 0, 8, 2};
  put_be32(head + 4, 2);
  put_be32(head + 8, 3);
  put_be32(head + 12, 4);
  unsigned char file[16 + 24] = {0};
  memcpy(file, head, 16);
  write_bytes(root, "t10k-images-idx3-ubyte", file, sizeof file);
  kiln_dataset *ds = import_expect(root, KILN_ERR_FORMAT);
  CHECK(has_problem(ds, KILN_ISSUE_SYNTAX,
                    "t10k-images-idx3-ubyte: not an IDX image file: magic 00 00 08 02 (expected 00 00 08 03)"));
  kiln_dataset_free(ds);
  file[3] = 3;
  write_bytes(root, "t10k-images-idx3-ubyte", file, 30);
  ds = import_expect(root, KILN_ERR_FORMAT);
  CHECK(has_problem(ds, KILN_ISSUE_SYNTAX,
                    "t10k-images-idx3-ubyte: header declares 2 images of 3x4 (24 bytes) but 14 bytes follow it"));
  kiln_dataset_free(ds);
  write_bytes(root, "t10k-images-idx3-ubyte", file, sizeof file);
  unsigned char labels[8 + 3] = {0, 0, 8, 1, 0, 0, 0, 3, 0, 1, 2};
  write_bytes(root, "t10k-labels-idx1-ubyte", labels, sizeof labels);
  ds = import_expect(root, KILN_ERR_FORMAT);
  CHECK(has_problem(ds, KILN_ISSUE_BAD_ANNOTATION,
                    "t10k-labels-idx1-ubyte: 3 labels for the 2 images of t10k-images-idx3-ubyte"));
  kiln_dataset_free(ds);
  unsigned char two[8 + 2] = {0, 0, 8, 1, 0, 0, 0, 2, 5, 1};
  write_bytes(root, "t10k-labels-idx1-ubyte", two, sizeof two);
  ds = import_expect(root, KILN_OK);
  CHECK(has_problem(ds, KILN_ISSUE_UNKNOWN_LABEL,
                    "t10k-labels-idx1-ubyte: label 5 of image 0 is not in labels.txt (3 classes); skipped"));
  CHECK(ds->n_images == 6);
  kiln_dataset_free(ds);
  /* images of 0 rows (found by fuzz_idx): 4 billion empty images before */
  unsigned char empty[16] = {0, 0, 8, 3, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 5};
  write_bytes(root, "t10k-images-idx3-ubyte", empty, sizeof empty);
  ds = import_expect(root, KILN_ERR_FORMAT);
  CHECK(has_problem(ds, KILN_ISSUE_SYNTAX, "t10k-images-idx3-ubyte: images of 0x5 have no pixels"));
  kiln_dataset_free(ds);
  write_bytes(root, "t10k-images-idx3-ubyte", file, sizeof file);
  /* a gzip cut short, and one whose header declares a terabyte */
  char path[4096];
  path_join(path, sizeof path, fixture("idx"), "train-images-idx3-ubyte.gz");
  FILE *f = fopen(path, "rb");
  unsigned char gz[40];
  REQUIRE(f && fread(gz, 1, sizeof gz, f) == sizeof gz);
  fclose(f);
  write_bytes(root, "train-images-idx3-ubyte.gz", gz, sizeof gz);
  ds = import_expect(root, KILN_ERR_FORMAT);
  CHECK(has_problem(ds, KILN_ISSUE_SYNTAX,
                    "train-images-idx3-ubyte.gz: truncated gzip data: the IDX header needs 16 bytes"));
  kiln_dataset_free(ds);
  path_join(path, sizeof path, root, "train-images-idx3-ubyte.gz");
  gzFile z = gzopen(path, "wb");
  head[3] = 3;
  put_be32(head + 4, 1000000);
  put_be32(head + 8, 1000);
  put_be32(head + 12, 1000);
  REQUIRE(z && gzwrite(z, head, 16) == 16);
  gzclose(z);
  struct stat st;
  REQUIRE(stat(path, &st) == 0);
  ds = import_expect(root, KILN_ERR_FORMAT);
  char msg[512];
  snprintf(msg, sizeof msg,
           "train-images-idx3-ubyte.gz: header declares 1000000 images of 1000x1000 (1000000000000 bytes), "
           "more than a %lld-byte file can hold", (long long)st.st_size);
  CHECK(has_problem(ds, KILN_ISSUE_UNSAFE, msg));
  kiln_dataset_free(ds);
  path_join(path, sizeof path, root, "train-labels-idx1-ubyte.gz");
  unlink(path);
  ds = import_expect(root, KILN_ERR_FORMAT);
  CHECK(has_problem(ds, KILN_ISSUE_NOT_FOUND,
                    "train-images-idx3-ubyte.gz: no labels file (expected train-labels-idx1-ubyte.gz)"));
  kiln_dataset_free(ds);
  scratch_done(0);
}

static void test_images(void) {
  const char *root = scratch_copy(0, "folders");
  write_text(root, "train/cat/bad.png", "hello\n");
  char src[4096], hex[KILN_DATA_HASH_HEX + 1];
  path_join(src, sizeof src, root, "train/cat/c1.png");
  FILE *f = fopen(src, "rb");
  unsigned char png[4096];
  size_t n = f ? fread(png, 1, sizeof png, f) : 0;
  if (f) fclose(f);
  REQUIRE(n > 40);
  write_bytes(root, "train/dog/dup.png", png, n);
  write_bytes(root, "val/cat/trunc.png", png, n / 2);
  write_text(root, "train/cat/notes.txt", "a cat\n");
  write_bytes(root, "train/stray.png", png, n);
  file_sha256(src, hex);
  kiln_dataset *ds = import_expect(root, KILN_OK);
  CHECK(has_problem(ds, KILN_ISSUE_UNREADABLE_IMAGE,
                    "train/cat/bad.png: not a JPEG or PNG image (it starts with bytes 68 65 6c 6c 6f 0a, neither "
                    "FF D8 FF nor 89 50 4E 47); skipped"));
  CHECK(has_problem(ds, KILN_ISSUE_UNREADABLE_IMAGE, "val/cat/trunc.png: corrupt PNG: truncated PNG data; skipped"));
  char msg[512];
  snprintf(msg, sizeof msg,
           "train/dog/dup.png: same content as train/cat/c1.png (SHA-256 %.12s...); skipped; it is labelled "
           "'dog', the kept copy 'cat'", hex);
  CHECK(has_problem(ds, KILN_ISSUE_DUPLICATE, msg));
  CHECK(has_problem(ds, KILN_ISSUE_IGNORED_FILE, "train/cat/notes.txt: not an image (by its name); ignored"));
  CHECK(has_problem(ds, KILN_ISSUE_UNANNOTATED, "train/stray.png: image outside any class folder; skipped"));
  CHECK(ds->n_images == 6 && ds->n_errors == 0);
  kiln_dataset_free(ds);
  scratch_done(0);
}

static void test_health(void) {
  const char *root = scratch(0);
  char rel[64];
  for (unsigned i = 0; i < 101; i++) {
    snprintf(rel, sizeof rel, "many/%03u.pgm", i);
    write_pgm(root, rel, 4, 4, i);
  }
  write_pgm(root, "rare/0.pgm", 4, 4, 500);
  kiln_dataset *ds = import_expect(root, KILN_OK);
  CHECK(has_problem(ds, KILN_ISSUE_IMBALANCE,
                    "labels are imbalanced: 'many' has 101 images, 'rare' 1 (101:1, more than 100:1)"));
  CHECK(has_problem(ds, KILN_ISSUE_FEW_IMAGES, "label 'rare' has 1 image (at least 10 recommended)"));
  CHECK(ds->n_warnings == 2 && ds->images[0].pixels && ds->images[0].channels == 1);
  kiln_dataset_free(ds);
  scratch_done(0);
  root = scratch(0);
  write_pgm(root, "only/a.pgm", 4, 4, 1);
  ds = import_expect(root, KILN_ERR_FORMAT);
  char msg[512];
  snprintf(msg, sizeof msg, "%s: 1 label with images; classification needs at least 2", root);
  CHECK(has_problem(ds, KILN_ISSUE_UNUSABLE, msg));
  kiln_dataset_free(ds);
  scratch_done(0);
}

/* kiln's store: a file changed after writing, and a bad manifest. */
static void test_kiln_store(void) {
  kiln_dataset *ds = import_ok(fixture("folders"));
  REQUIRE(ds);
  const char *root = scratch(1);
  kiln_error err;
  REQUIRE(kiln_dataset_write(ds, root, &err) == KILN_OK);
  char rel[128], hash[KILN_DATA_HASH_HEX + 1];
  snprintf(hash, sizeof hash, "%s", ds->images[0].hash);
  kiln_dataset_free(ds);
  snprintf(rel, sizeof rel, "images/%s.png", hash);
  char path[4096];
  path_join(path, sizeof path, root, rel);
  FILE *f = fopen(path, "r+b");
  REQUIRE(f);
  fseek(f, -5, SEEK_END);
  fputc('x', f); /* in the IEND chunk, after the pixels: still decodes, but the hash differs */
  fclose(f);
  char got[KILN_DATA_HASH_HEX + 1], msg[512];
  file_sha256(path, got);
  ds = import_expect(root, KILN_OK);
  snprintf(msg, sizeof msg, "%s: content does not match its name (SHA-256 %.12s...): changed or corrupt; skipped",
           rel, got);
  CHECK(has_problem(ds, KILN_ISSUE_UNREADABLE_IMAGE, msg));
  CHECK(ds->n_images == 5);
  kiln_dataset_free(ds);
  write_text(root, "dataset.json",
             "{\"kiln_dataset\": 1, \"task\": \"classify\", \"labels\": [\"a\", \"b\"], \"images\": ["
             "{\"hash\": \"ABC\", \"ext\": \"png\", \"split\": \"train\", \"label\": 0}]}");
  ds = import_expect(root, KILN_ERR_FORMAT);
  CHECK(has_problem(ds, KILN_ISSUE_BAD_ANNOTATION, "dataset.json: images[0]: \"hash\" must be 64 lowercase hex digits"));
  kiln_dataset_free(ds);
  char manifest[1024];
  snprintf(manifest, sizeof manifest,
           "{\"kiln_dataset\": 1, \"task\": \"classify\", \"labels\": [\"a\", \"b\"], \"images\": ["
           "{\"hash\": \"%s\", \"ext\": \"png\", \"split\": \"training\", \"label\": 0}]}", hash);
  write_text(root, "dataset.json", manifest);
  ds = import_expect(root, KILN_ERR_FORMAT);
  CHECK(has_problem(ds, KILN_ISSUE_BAD_ANNOTATION,
                    "dataset.json: images[0]: \"split\" must be train, val, test or unassigned"));
  kiln_dataset_free(ds);
  write_text(root, "dataset.json", "{\"kiln_dataset\": 2, \"task\": \"classify\", \"labels\": [], \"images\": []}");
  ds = import_expect(root, KILN_ERR_FORMAT);
  CHECK(has_problem(ds, KILN_ISSUE_BAD_ANNOTATION, "dataset.json: \"kiln_dataset\" must be 1 (the version kiln reads)"));
  kiln_dataset_free(ds);
  scratch_done(1);
}

/* Past KILN_DATA_MAX_PROBLEMS messages only the counts go on, and the
 * last entry says so. */
static void test_many_problems(void) {
  const char *root = scratch(0);
  size_t cap = 100001 * 32, used = 0;
  char *csv = malloc(cap);
  REQUIRE(csv);
  for (int i = 0; i < 100001; i++) used += (size_t)snprintf(csv + used, cap - used, "TRAIN,gone/%06d.png,cat\n", i);
  write_text(root, "data.csv", csv);
  free(csv);
  kiln_dataset *ds = import_expect(root, KILN_ERR_FORMAT);
  CHECK(ds->n_problems == KILN_DATA_MAX_PROBLEMS);
  CHECK(ds->n_warnings == 100001 && ds->n_errors == 1);
  CHECK(ds->issue_counts[KILN_ISSUE_MISSING_IMAGE] == 100001 && ds->issue_counts[KILN_ISSUE_UNUSABLE] == 1);
  CHECK(strcmp(ds->problems[0].message, "data.csv: line 1: image 'gone/000000.png' not found; its rows are skipped") == 0);
  CHECK(strcmp(ds->problems[ds->n_problems - 1].message, "(more problems not listed: the counts include them)") == 0);
  kiln_dataset_free(ds);
  scratch_done(0);
}

/* A label name with a control character cannot go into labels.txt. */
static void test_label_names(void) {
  const char *root = scratch(0);
  write_pgm(root, "cat/a.pgm", 4, 4, 1);
  write_pgm(root, "bad\tname/b.pgm", 4, 4, 2);
  kiln_dataset *ds = import_expect(root, KILN_ERR_FORMAT);
  CHECK(has_problem(ds, KILN_ISSUE_BAD_ANNOTATION, "bad\tname: label name 'bad\tname' has a control character (byte 0x09)"));
  kiln_dataset_free(ds);
  scratch_done(0);
}

/* Failing each allocation in turn: a clean NOMEM (or success once past
 * the last), never a crash or a leak (AddressSanitizer checks leaks). */
static int alloc_countdown;

static void *failing_alloc(size_t n, void *ctx) {
  (void)ctx;
  if (alloc_countdown-- == 0) return NULL;
  return malloc(n);
}

static void *failing_realloc(void *p, size_t n, void *ctx) {
  (void)ctx;
  if (alloc_countdown-- == 0) return NULL;
  return realloc(p, n);
}

static void plain_free(void *p, void *ctx) {
  (void)ctx;
  free(p);
}

static void test_out_of_memory(void) {
  static const char *const names[] = {"voc", "yolo", "automl", "coco", "idx", "folders", "voc.zip"};
  kiln_allocator a = {failing_alloc, failing_realloc, plain_free, NULL};
  kiln_data_options opt = kiln_data_options_default();
  opt.threads = 1; /* the same allocations in the same order every time */
  for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
    kiln_set_allocator(&a);
    alloc_countdown = 1 << 30;
    kiln_dataset *ds = NULL;
    kiln_error err;
    kiln_status s = kiln_data_import(fixture(names[k]), &opt, &ds, &err);
    kiln_set_allocator(NULL);
    int total = (1 << 30) - alloc_countdown;
    CHECK(s == KILN_OK);
    kiln_dataset_free(ds);
    int wrong = 0;
    for (int n = 0; n < total; n++) {
      kiln_set_allocator(&a);
      alloc_countdown = n;
      ds = NULL;
      s = kiln_data_import(fixture(names[k]), &opt, &ds, &err);
      kiln_set_allocator(NULL);
      if (s != KILN_ERR_NOMEM || ds != NULL) {
        if (wrong++ == 0) fprintf(stderr, "  %s: allocation %d of %d failing gave %s\n", names[k], n, total,
                                  kiln_status_str(s));
        print_problems(ds);
      }
      kiln_dataset_free(ds);
    }
    CHECK_MSG(wrong == 0, "%s: %d of %d allocation failures not reported as out of memory", names[k], wrong, total);
  }
}

int main(void) {
  RUN(test_voc_boxes);
  RUN(test_voc_errors);
  RUN(test_voc_warnings);
  RUN(test_coco);
  RUN(test_yolo);
  RUN(test_automl);
  RUN(test_idx);
  RUN(test_images);
  RUN(test_health);
  RUN(test_kiln_store);
  RUN(test_many_problems);
  RUN(test_label_names);
  RUN(test_out_of_memory);
  return test_summary();
}
