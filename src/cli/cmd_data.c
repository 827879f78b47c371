/* kiln data check|import: validate a dataset in any supported format and
 * print its health, or convert it to kiln's own form (kiln/data.h does
 * the work; this file parses flags and prints). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "kiln/data.h"

static const char *help =
    "usage: kiln data check PATH [--format F] [--labels FILE] [--json] [--threads N]\n"
    "       kiln data import PATH --out DIR [--format F] [--labels FILE]\n"
    "                        [--split TRAIN/VAL/TEST] [--seed S] [--threads N]\n\n"
    "check   reads a dataset, decodes every image once, and prints the format found, the\n"
    "        images per split and per label, image and box sizes, and every problem.\n"
    "        Exit status 0 when the dataset is usable (warnings allowed), 1 when not.\n"
    "import  does the same, gives images without a split one (stratified by class,\n"
    "        seeded, default 80/10/10), and writes kiln's form: DIR/images/<sha256>.<ext>\n"
    "        and DIR/dataset.json. Nothing is written when there are errors.\n\n"
    "PATH is a folder, an archive (.zip, .tar, .tar.gz, .tgz, .tar.bz2, .tar.xz) or one\n"
    "annotation file. Formats (--format, or detected in this order):\n"
    "  kiln     dataset.json written by kiln data import\n"
    "  idx      MNIST-style *idx3-ubyte[.gz] + *idx1-ubyte[.gz] (labels.txt for names)\n"
    "  yolo     data.yaml (path, train, val, test, names) or images/ + labels/ + classes.txt;\n"
    "           label lines 'class x_center y_center width height', normalized\n"
    "  coco     COCO detection JSON (bbox [x, y, width, height] in pixels)\n"
    "  automl   AutoML Vision CSV: [ML_USE,]PATH[,LABEL[,X1,Y1,,,X3,Y3,,]], relative\n"
    "  voc      Pascal VOC XML (Annotations/*.xml, JPEGImages/, ImageSets/Main/*.txt)\n"
    "  folders  one folder per class, optionally inside train/ val/ test/\n\n"
    "Errors (the dataset is not usable): an annotation file that cannot be parsed, XML\n"
    "with entity declarations (billion laughs, external entities), an unsafe archive\n"
    "(absolute or ../ paths, links out of it, sizes over the limit), an annotation that\n"
    "is well-formed but wrong (missing field, bad ML_USE, YOLO line without 5 numbers,\n"
    "COCO bbox that is not 4 numbers), nothing to train on.\n"
    "Warnings (reported; the item is skipped or fixed as the message says): unreadable,\n"
    "truncated or missing images; boxes partly outside the image (clamped) or with zero\n"
    "or negative area (skipped); unknown labels (skipped); duplicate images by SHA-256\n"
    "(later copies skipped); images without annotations (classification: skipped,\n"
    "detection: kept as background); declared sizes that differ from the image; files\n"
    "that are not images; boxes under 1% of the image side; labels with fewer than 10\n"
    "images; label counts more than 100:1 apart.\n\n"
    "  --format F     force a format (see above)\n"
    "  --labels FILE  the label list, one per line: other labels are unknown\n"
    "  --json         print the report as JSON (check)\n"
    "  --out DIR      where import writes the dataset\n"
    "  --split T/V/T  fractions for images without a split (default 80/10/10)\n"
    "  --seed S       split seed (default 0)\n"
    "  --threads N    threads for decoding and hashing (default: all cores)\n";

typedef struct data_args {
  const char *sub, *path, *out, *labels_file;
  bool json;
  kiln_data_options opt;
  kiln_split_options split;
} data_args;

static bool parse_split(const char *s, kiln_split_options *o) {
  float v[3];
  char extra;
  if (sscanf(s, "%f/%f/%f%c", &v[0], &v[1], &v[2], &extra) != 3) return false;
  float sum = v[0] + v[1] + v[2];
  if (!(v[0] >= 0 && v[1] >= 0 && v[2] >= 0 && sum > 0)) return false;
  o->train = v[0] / sum;
  o->val = v[1] / sum;
  o->test = v[2] / sum;
  return true;
}

static int parse(int argc, char **argv, data_args *a) {
  cli_args c = {argc, argv, 1, "data"};
  a->opt = kiln_data_options_default();
  a->split = kiln_split_options_default();
  const char *v;
  bool bad = false;
  int64_t n;
  while (c.i < argc && !bad) {
    if (cli_flag(&c, "--help") || cli_flag(&c, "-h")) {
      fputs(help, stdout);
      return -1;
    }
    if (cli_flag(&c, "--json")) {
      a->json = true;
    } else if (cli_flag_value(&c, "--format", &v, &bad)) {
      if (!bad && !kiln_data_format_parse(v, &a->opt.format))
        return cli_usage_error("data", "--format: unknown format '%s'", v);
    } else if (cli_flag_value(&c, "--labels", &v, &bad)) {
      a->labels_file = v;
    } else if (cli_flag_value(&c, "--out", &v, &bad)) {
      a->out = v;
    } else if (cli_flag_value(&c, "--split", &v, &bad)) {
      if (!bad && !parse_split(v, &a->split))
        return cli_usage_error("data", "--split: '%s' is not TRAIN/VAL/TEST fractions (e.g. 80/10/10)", v);
    } else if (cli_flag_value(&c, "--seed", &v, &bad)) {
      if (!bad && !cli_parse_int("data", "--seed", v, 0, INT64_MAX, &n)) return CLI_USAGE;
      a->split.seed = (uint64_t)n;
    } else if (cli_flag_value(&c, "--threads", &v, &bad)) {
      if (!bad && !cli_parse_int("data", "--threads", v, 1, 1024, &n)) return CLI_USAGE;
      a->opt.threads = (int32_t)n;
    } else if (argv[c.i][0] == '-' && argv[c.i][1]) {
      return cli_usage_error("data", "unknown option '%s'", argv[c.i]);
    } else if (!a->sub) {
      a->sub = argv[c.i++];
    } else if (!a->path) {
      a->path = argv[c.i++];
    } else {
      return cli_usage_error("data", "unexpected argument '%s'", argv[c.i]);
    }
  }
  if (bad) return CLI_USAGE;
  if (!a->sub) return cli_usage_error("data", "missing subcommand: check or import");
  if (strcmp(a->sub, "check") != 0 && strcmp(a->sub, "import") != 0)
    return cli_usage_error("data", "unknown subcommand '%s' (check or import)", a->sub);
  if (!a->path) return cli_usage_error("data", "%s needs a PATH", a->sub);
  if (strcmp(a->sub, "import") == 0 && !a->out) return cli_usage_error("data", "import needs --out DIR");
  if (strcmp(a->sub, "check") == 0 && a->out) return cli_usage_error("data", "--out is for import");
  return 0;
}

static void print_problems(FILE *f, const kiln_dataset *ds) {
  for (int32_t i = 0; i < ds->n_problems; i++)
    fprintf(f, "  %s: %s\n",
            kiln_data_issue_severity(ds->problems[i].issue) == KILN_DATA_ERROR ? "error" : "warning",
            ds->problems[i].message);
}

static void print_report(const char *path, const kiln_dataset *ds, const kiln_data_summary *s) {
  printf("%s: %s (%s), %s, %d label%s\n", path, kiln_data_format_name(ds->format),
         ds->detected_by ? ds->detected_by : "-",
         ds->task == KILN_TASK_DETECT ? "detection" : "classification", ds->n_labels,
         ds->n_labels == 1 ? "" : "s");
  printf("images: %d (train %d, val %d, test %d, unassigned %d)", s->total_images,
         s->images[KILN_SPLIT_TRAIN], s->images[KILN_SPLIT_VAL], s->images[KILN_SPLIT_TEST],
         s->images[KILN_SPLIT_UNASSIGNED]);
  if (s->total_images)
    printf("; sizes %dx%d to %dx%d", s->min_width, s->min_height, s->max_width, s->max_height);
  printf("\n");
  if (ds->n_labels) {
    printf("  %-24s %7s %7s %7s %10s", "label", "train", "val", "test", "unassigned");
    printf(ds->task == KILN_TASK_DETECT ? " %8s\n" : "\n", "boxes");
    for (int32_t l = 0; l < ds->n_labels; l++) {
      const kiln_data_label_stats *st = &s->labels[l];
      printf("  %-24s %7d %7d %7d %10d", ds->labels[l], st->images[KILN_SPLIT_TRAIN],
             st->images[KILN_SPLIT_VAL], st->images[KILN_SPLIT_TEST], st->images[KILN_SPLIT_UNASSIGNED]);
      if (ds->task == KILN_TASK_DETECT) printf(" %8lld", (long long)st->boxes);
      printf("\n");
    }
  }
  if (ds->task == KILN_TASK_DETECT)
    printf("boxes: %lld, up to %d per image, %d background image%s; width %.4g..%.4g px (median %.4g), "
           "height %.4g..%.4g px (median %.4g), relative size %.3g..%.3g (median %.3g)\n",
           (long long)s->boxes, s->max_boxes_per_image, s->unannotated, s->unannotated == 1 ? "" : "s",
           (double)s->box_width[0], (double)s->box_width[2], (double)s->box_width[1],
           (double)s->box_height[0], (double)s->box_height[2], (double)s->box_height[1],
           (double)s->box_relative[0], (double)s->box_relative[2], (double)s->box_relative[1]);
  printf("problems: %d error%s, %d warning%s\n", ds->n_errors, ds->n_errors == 1 ? "" : "s",
         ds->n_warnings, ds->n_warnings == 1 ? "" : "s");
  print_problems(stdout, ds);
  if (ds->n_errors)
    printf("result: not usable (%d error%s)\n", ds->n_errors, ds->n_errors == 1 ? "" : "s");
  else
    printf("result: usable%s\n", ds->n_warnings ? " (see the warnings)" : "");
}

static int check(const data_args *a, kiln_dataset *ds) {
  kiln_error err;
  if (a->json) {
    char *text;
    if (kiln_dataset_report_json(ds, &text, &err) != KILN_OK) return cli_error("data", &err);
    printf("%s\n", text);
    kiln_free(text);
  } else {
    kiln_data_summary s;
    if (kiln_dataset_summarize(ds, &s, &err) != KILN_OK) return cli_error("data", &err);
    print_report(a->path, ds, &s);
    kiln_data_summary_free(&s);
  }
  return ds->n_errors ? CLI_FAIL : CLI_OK;
}

static int import(const data_args *a, kiln_dataset *ds) {
  kiln_error err;
  if (ds->n_errors) {
    fprintf(stderr, "kiln data: %s: not imported (%d error%s, %d warning%s):\n", a->path, ds->n_errors,
            ds->n_errors == 1 ? "" : "s", ds->n_warnings, ds->n_warnings == 1 ? "" : "s");
    print_problems(stderr, ds);
    return CLI_FAIL;
  }
  if (ds->n_warnings) {
    fprintf(stderr, "kiln data: %s: %d warning%s:\n", a->path, ds->n_warnings, ds->n_warnings == 1 ? "" : "s");
    print_problems(stderr, ds);
  }
  int32_t unassigned = 0;
  for (int32_t i = 0; i < ds->n_images; i++) unassigned += ds->images[i].split == KILN_SPLIT_UNASSIGNED;
  if (kiln_dataset_split(ds, &a->split, &err) != KILN_OK) return cli_error("data", &err);
  if (kiln_dataset_write(ds, a->out, &err) != KILN_OK) return cli_error("data", &err);
  int32_t per[KILN_SPLIT_COUNT] = {0};
  for (int32_t i = 0; i < ds->n_images; i++) per[ds->images[i].split]++;
  printf("%s: %d images, %d labels (%s) -> %s: train %d, val %d, test %d", a->path, ds->n_images,
         ds->n_labels, kiln_data_format_name(ds->format), a->out, per[KILN_SPLIT_TRAIN],
         per[KILN_SPLIT_VAL], per[KILN_SPLIT_TEST]);
  if (unassigned)
    printf(" (%d split by kiln: %g/%g/%g, seed %llu)", unassigned, (double)a->split.train * 100,
           (double)a->split.val * 100, (double)a->split.test * 100, (unsigned long long)a->split.seed);
  printf("\n");
  return CLI_OK;
}

int cmd_data(int argc, char **argv) {
  data_args a;
  memset(&a, 0, sizeof a);
  int r = parse(argc, argv, &a);
  if (r) return r < 0 ? CLI_OK : r;
  char **names = NULL;
  int32_t n_names = 0;
  kiln_error err;
  if (a.labels_file) {
    if (kiln_data_labels_read(a.labels_file, &names, &n_names, &err) != KILN_OK) return cli_error("data", &err);
    a.opt.labels = (const char *const *)names;
    a.opt.n_labels = n_names;
  }
  kiln_dataset *ds;
  /* a dataset with errors still comes back, carrying every problem */
  if (kiln_data_import(a.path, &a.opt, &ds, &err) != KILN_OK && !ds) {
    kiln_data_labels_free(names, n_names);
    return cli_error("data", &err);
  }
  kiln_data_labels_free(names, n_names);
  r = strcmp(a.sub, "check") == 0 ? check(&a, ds) : import(&a, ds);
  kiln_dataset_free(ds);
  return r;
}
