/* kiln eval MODEL --data PATH: accuracy, per-class precision/recall and the
 * confusion matrix of a classifier, or COCO mAP of a detector, on a
 * dataset split (kiln/trainer.h evaluates; kiln/eval.h counts; this file
 * parses flags and prints). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "kiln/data.h"
#include "kiln/eval.h"
#include "kiln/trainer.h"

static const char *help =
    "usage: kiln eval MODEL --data PATH [--format F] [--split test|val|train|all]\n"
    "                 [--labels FILE] [--json] [--threads N] [--threshold T]\n"
    "                 [--mean M --std S]\n\n"
    "Runs MODEL (float or int8 .tflite) on the images of one split of a dataset and\n"
    "prints how well it does. The dataset's task decides what is measured:\n"
    "  classification  accuracy (top-5 with more than 5 classes), per-class precision,\n"
    "                  recall, F1 and support, the confusion matrix (rows: true class)\n"
    "  detection       COCO mAP@[.5:.95], mAP@.5, mAP@.75, recall, per-class AP (raw SSD\n"
    "                  outputs or TFLite_Detection_PostProcess models)\n"
    "Images without a split get the one 'kiln train' gives them (80/10/10, split seed 0,\n"
    "a tenth of train as test when there is no test split), so 'kiln eval' on the data\n"
    "a model was trained on measures the same test images as the training report.\n"
    "Model classes are matched to the dataset's labels by name: names from --labels, else\n"
    "the model's \"kiln_labels\" metadata, else class i is label i. Inputs are prepared as\n"
    "the model's \"kiln_input_norm\" metadata says, else as 'kiln classify' does.\n\n"
    "  --data PATH     folder, archive or annotation file (see 'kiln data --help')\n"
    "  --format F      force the dataset format\n"
    "  --split S       test (default), val, train or all\n"
    "  --labels FILE   the model's class names, one per line\n"
    "  --json          print JSON\n"
    "  --threads N     worker threads (default: all cores)\n"
    "  --threshold T   detection: lowest score kept (default 0.01)\n"
    "  --mean M --std S  float input normalization (x - M) / S\n";

typedef struct eval_args {
  const char *model, *data, *format, *labels;
  int32_t split;
  bool json, has_norm;
  float mean, std, threshold;
  int64_t threads;
} eval_args;

static int parse(int argc, char **argv, eval_args *a) {
  cli_args c = {argc, argv, 1, "eval"};
  const char *v;
  bool bad = false;
  a->split = KILN_SPLIT_TEST;
  a->mean = a->std = 127.5f;
  while (c.i < argc) {
    if (cli_flag(&c, "--help") || cli_flag(&c, "-h")) {
      fputs(help, stdout);
      return -1;
    }
    if (cli_flag_value(&c, "--data", &v, &bad)) {
      a->data = v;
    } else if (cli_flag_value(&c, "--format", &v, &bad)) {
      a->format = v;
    } else if (cli_flag_value(&c, "--labels", &v, &bad)) {
      a->labels = v;
    } else if (cli_flag_value(&c, "--split", &v, &bad)) {
      if (bad) break;
      if (strcmp(v, "test") == 0) a->split = KILN_SPLIT_TEST;
      else if (strcmp(v, "val") == 0) a->split = KILN_SPLIT_VAL;
      else if (strcmp(v, "train") == 0) a->split = KILN_SPLIT_TRAIN;
      else if (strcmp(v, "all") == 0) a->split = -1;
      else return cli_usage_error("eval", "--split: '%s' is not test, val, train or all", v);
    } else if (cli_flag(&c, "--json")) {
      a->json = true;
    } else if (cli_flag_value(&c, "--threads", &v, &bad)) {
      if (!bad && !cli_parse_int("eval", "--threads", v, 1, 1024, &a->threads)) return CLI_USAGE;
    } else if (cli_flag_value(&c, "--threshold", &v, &bad)) {
      if (!bad && !cli_parse_float("eval", "--threshold", v, &a->threshold)) return CLI_USAGE;
    } else if (cli_flag_value(&c, "--mean", &v, &bad)) {
      if (!bad && !cli_parse_float("eval", "--mean", v, &a->mean)) return CLI_USAGE;
      a->has_norm = true;
    } else if (cli_flag_value(&c, "--std", &v, &bad)) {
      if (!bad && !cli_parse_float("eval", "--std", v, &a->std)) return CLI_USAGE;
      a->has_norm = true;
    } else if (argv[c.i][0] == '-') {
      return cli_usage_error("eval", "unknown option '%s'", argv[c.i]);
    } else if (!a->model) {
      a->model = argv[c.i++];
    } else {
      return cli_usage_error("eval", "unexpected argument '%s'", argv[c.i]);
    }
    if (bad) return CLI_USAGE;
  }
  if (bad) return CLI_USAGE;
  if (!a->model) return cli_usage_error("eval", "missing MODEL");
  if (!a->data) return cli_usage_error("eval", "missing --data PATH");
  if (!(a->std != 0.0f)) return cli_usage_error("eval", "--std must not be 0");
  return CLI_OK;
}

static void print_classification(const kiln_eval_classification *c, const char *const *names) {
  printf("images: %lld\naccuracy: %.4f\n", (long long)c->n_samples, c->accuracy);
  if (c->top_k > 0) printf("top-%d accuracy: %.4f\n", (int)c->top_k, c->top_k_accuracy);
  printf("macro precision %.4f  recall %.4f  F1 %.4f\n\n", c->macro_precision, c->macro_recall,
         c->macro_f1);
  printf("%-24s %9s %9s %9s %8s\n", "class", "precision", "recall", "F1", "support");
  for (int32_t k = 0; k < c->n_classes; k++) {
    char fallback[32];
    snprintf(fallback, sizeof fallback, "class %d", (int)k);
    const kiln_eval_class_metrics *m = &c->classes[k];
    printf("%-24s %9.4f %9.4f %9.4f %8lld\n", names && names[k] ? names[k] : fallback,
           m->precision, m->recall, m->f1, (long long)m->support);
  }
  printf("\nconfusion matrix (rows: true class, columns: predicted)\n");
  for (int32_t r = 0; r < c->n_classes; r++) {
    for (int32_t k = 0; k < c->n_classes; k++)
      printf("%s%6lld", k ? " " : "", (long long)c->confusion[(int64_t)r * c->n_classes + k]);
    printf("\n");
  }
}

static void print_detection(const kiln_eval_detection *d, const char *const *names) {
  printf("images: %lld\nmAP@[.5:.95]: %.4f\nmAP@.5: %.4f\nmAP@.75: %.4f\nAR@100: %.4f\n\n",
         (long long)d->n_images, d->stats[KILN_EVAL_AP], d->stats[KILN_EVAL_AP50],
         d->stats[KILN_EVAL_AP75], d->stats[KILN_EVAL_AR100]);
  printf("%-24s %9s %9s %8s %10s\n", "class", "AP", "AP@.5", "boxes", "detections");
  for (int32_t k = 0; k < d->n_classes; k++) {
    if (d->class_ap[k] < 0) {
      printf("%-24s %9s %9s %8lld %10lld\n", names[k], "-", "-", (long long)d->class_gt[k],
             (long long)d->class_dets[k]);
      continue;
    }
    printf("%-24s %9.4f %9.4f %8lld %10lld\n", names[k], d->class_ap[k], d->class_ap50[k],
           (long long)d->class_gt[k], (long long)d->class_dets[k]);
  }
}

/* Evaluates and prints; returns the CLI status. */
static int evaluate(const eval_args *a, kiln_dataset *ds, const kiln_model *m,
                    const kiln_model_eval_options *eo) {
  kiln_error err;
  json_t *j = NULL;
  kiln_status s;
  const char *const *ds_names = (const char *const *)ds->labels;
  if (ds->task == KILN_TASK_CLASSIFY) {
    kiln_eval_classification c;
    s = kiln_trainer_eval_classifier(m, ds, eo, &c, &err);
    char **meta = NULL;
    int32_t n_meta = 0;
    const char *const *names = eo->labels;
    if (s == KILN_OK && !names && kiln_trainer_get_labels(m, &meta, &n_meta, &err) == KILN_OK && meta)
      names = (const char *const *)meta;
    if (!names && s == KILN_OK && c.n_classes == ds->n_labels) names = ds_names;
    if (s == KILN_OK && a->json) s = kiln_eval_classification_to_json(&c, names, &j, &err);
    else if (s == KILN_OK) print_classification(&c, names);
    kiln_trainer_labels_free(meta, n_meta);
    kiln_eval_classification_free(&c);
  } else {
    kiln_eval_detection d;
    s = kiln_trainer_eval_detector(m, ds, eo, &d, &err);
    if (s == KILN_OK && a->json) s = kiln_eval_detection_to_json(&d, ds_names, &j, &err);
    else if (s == KILN_OK) print_detection(&d, ds_names);
    kiln_eval_detection_free(&d);
  }
  if (s != KILN_OK) return cli_error("eval", &err);
  if (j) {
    static const char *const splits[] = {"unassigned", "train", "val", "test"};
    json_t *root = json_pack("{s:s, s:s, s:s}", "model", a->model, "data", a->data, "split",
                             a->split < 0 ? "all" : splits[a->split]);
    json_object_set_new(root, "evaluation", j);
    char *text = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10));
    if (text) puts(text);
    free(text);
    json_decref(root);
  }
  return CLI_OK;
}

int cmd_eval(int argc, char **argv) {
  eval_args a;
  memset(&a, 0, sizeof a);
  int rc = parse(argc, argv, &a);
  if (rc != CLI_OK) return rc < 0 ? CLI_OK : rc;
  kiln_data_options dopt = kiln_data_options_default();
  dopt.threads = (int32_t)a.threads;
  if (a.format && !kiln_data_format_parse(a.format, &dopt.format))
    return cli_usage_error("eval", "--format: unknown format '%s'", a.format);
  kiln_error err;
  kiln_dataset *ds = NULL;
  kiln_model *m = NULL;
  char **labels = NULL;
  int32_t n_labels = 0;
  kiln_status s = kiln_data_import(a.data, &dopt, &ds, &err);
  if (ds)
    for (int32_t i = 0; i < ds->n_problems; i++)
      fprintf(stderr, "%s: %s\n",
              kiln_data_issue_severity(ds->problems[i].issue) == KILN_DATA_ERROR ? "error" : "warning",
              ds->problems[i].message);
  if (s == KILN_OK) s = kiln_trainer_prepare_splits(ds, &err);
  if (s == KILN_OK && a.labels) s = kiln_data_labels_read(a.labels, &labels, &n_labels, &err);
  if (s == KILN_OK) s = kiln_model_load(a.model, &m, &err);
  if (s != KILN_OK) {
    rc = cli_error("eval", &err);
    goto done;
  }
  kiln_image_norm norm = {{a.mean, a.mean, a.mean}, {a.std, a.std, a.std}};
  kiln_model_eval_options eo;
  memset(&eo, 0, sizeof eo);
  eo.split = a.split;
  eo.norm = a.has_norm ? &norm : NULL;
  eo.labels = (const char *const *)labels;
  eo.n_labels = n_labels;
  eo.threads = (int32_t)a.threads;
  eo.score_threshold = a.threshold;
  rc = evaluate(&a, ds, m, &eo);
done:
  kiln_data_labels_free(labels, n_labels);
  kiln_model_free(m);
  kiln_dataset_free(ds);
  return rc;
}
