/* kiln imprint and kiln retrain-last: on-device learning of new classes
 * from a few images per class (kiln/ondevice.h does the work; this file
 * parses flags, imports the dataset and prints timings). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "kiln/data.h"
#include "kiln/ondevice.h"

static const char *imprint_help =
    "usage: kiln imprint --model MODEL --data DIR --out NEW.tflite [--keep-classes]\n"
    "                    [--threads N] [--json]\n\n"
    "Weight imprinting (Qi et al. 2018, as Coral's libcoral does it on the device): each\n"
    "class's weights are the normalized mean of its images' embeddings. MODEL is an\n"
    "embedding extractor ending in L2_NORMALIZATION (see 'kiln convert --embedding-extractor',\n"
    "then 'kiln quantize' for int8) or an imprinting classifier (e.g. an earlier output of\n"
    "this command). DIR holds a folder per class (optionally inside train/ and test/): train\n"
    "and unassigned images are learned from, the test split is evaluated. Writes NEW.tflite\n"
    "(extractor + FULLY_CONNECTED + MUL + SOFTMAX, int8 after an int8 extractor, labels\n"
    "embedded) and labels.txt beside it.\n\n"
    "  --model MODEL    base model\n"
    "  --data DIR       images, a folder per class\n"
    "  --out FILE       the new model (its directory must exist)\n"
    "  --keep-classes   keep MODEL's classes (an imprinting classifier): DIR's classes are\n"
    "                   added, or, when MODEL has them, their means continue\n"
    "  --threads N      extraction threads (default: all cores)\n"
    "  --json           print the report as JSON on stdout\n";

static const char *retrain_help =
    "usage: kiln retrain-last --model MODEL --data DIR --out NEW.tflite [--iterations N]\n"
    "                         [--batch B] [--lr X] [--seed S] [--threads N] [--json]\n\n"
    "Last-layer softmax regression (as Coral's libcoral does it on the device): a new\n"
    "FULLY_CONNECTED + SOFTMAX layer trained by SGD on the embeddings of DIR's images\n"
    "(logits = XW + b, mean cross-entropy, W ~ N(0,1) * 0.01, b = 0). MODEL and DIR as for\n"
    "'kiln imprint'; the new layer is int8 after an int8 extractor (its output range from\n"
    "the training logits). Writes NEW.tflite and labels.txt beside it.\n\n"
    "  --model MODEL    base model (its head, if any, is replaced)\n"
    "  --data DIR       images, a folder per class\n"
    "  --out FILE       the new model (its directory must exist)\n"
    "  --iterations N   SGD steps (default 500)\n"
    "  --batch B        samples per step, drawn with replacement (default 100)\n"
    "  --lr X           learning rate (default 3)\n"
    "  --seed S         initial weights and batches (default 0)\n"
    "  --threads N      extraction threads (default: all cores)\n"
    "  --json           print the report as JSON on stdout\n";

typedef struct ondevice_args {
  const char *cmd, *model, *data, *out;
  bool json;
  kiln_ondevice_run_options opt;
} ondevice_args;

static int parse(int argc, char **argv, ondevice_args *a) {
  cli_args c = {argc, argv, 1, a->cmd};
  const bool imprint = a->opt.method == KILN_ONDEVICE_IMPRINT;
  const char *v;
  bool bad = false;
  int64_t n;
  while (c.i < argc && !bad) {
    if (cli_flag(&c, "--help") || cli_flag(&c, "-h")) {
      fputs(imprint ? imprint_help : retrain_help, stdout);
      return -1;
    }
    if (cli_flag_value(&c, "--model", &v, &bad)) {
      a->model = v;
    } else if (cli_flag_value(&c, "--data", &v, &bad)) {
      a->data = v;
    } else if (cli_flag_value(&c, "--out", &v, &bad)) {
      a->out = v;
    } else if (cli_flag(&c, "--json")) {
      a->json = true;
    } else if (cli_flag_value(&c, "--threads", &v, &bad)) {
      if (!bad && !cli_parse_int(a->cmd, "--threads", v, 1, 1024, &n)) return CLI_USAGE;
      a->opt.threads = (int32_t)n;
    } else if (imprint && cli_flag(&c, "--keep-classes")) {
      a->opt.keep_classes = true;
    } else if (!imprint && cli_flag_value(&c, "--iterations", &v, &bad)) {
      if (!bad && !cli_parse_int(a->cmd, "--iterations", v, 1, 10000000, &n)) return CLI_USAGE;
      a->opt.sgd.iterations = (int32_t)n;
    } else if (!imprint && cli_flag_value(&c, "--batch", &v, &bad)) {
      if (!bad && !cli_parse_int(a->cmd, "--batch", v, 1, 1000000, &n)) return CLI_USAGE;
      a->opt.sgd.batch = (int32_t)n;
    } else if (!imprint && cli_flag_value(&c, "--lr", &v, &bad)) {
      if (!bad && !cli_parse_float(a->cmd, "--lr", v, &a->opt.sgd.lr)) return CLI_USAGE;
      if (!bad && !(a->opt.sgd.lr > 0.0f && a->opt.sgd.lr < 1000.0f))
        return cli_usage_error(a->cmd, "--lr: '%s' is not in (0, 1000)", v);
    } else if (!imprint && cli_flag_value(&c, "--seed", &v, &bad)) {
      if (!bad && !cli_parse_int(a->cmd, "--seed", v, 0, INT64_MAX, &n)) return CLI_USAGE;
      a->opt.sgd.seed = (uint64_t)n;
    } else {
      return cli_usage_error(a->cmd, "unknown argument '%s'", argv[c.i]);
    }
  }
  if (bad) return CLI_USAGE;
  if (!a->model) return cli_usage_error(a->cmd, "missing --model MODEL");
  if (!a->data) return cli_usage_error(a->cmd, "missing --data DIR");
  if (!a->out) return cli_usage_error(a->cmd, "missing --out FILE");
  return CLI_OK;
}

static void print_problems(const kiln_dataset *ds) {
  for (int32_t i = 0; i < ds->n_problems; i++)
    fprintf(stderr, "%s: %s\n",
            kiln_data_issue_severity(ds->problems[i].issue) == KILN_DATA_ERROR ? "error" : "warning",
            ds->problems[i].message);
}

static void print_report(const ondevice_args *a, const kiln_ondevice_report *r) {
  const bool imprint = a->opt.method == KILN_ONDEVICE_IMPRINT;
  if (a->json) {
    json_t *o = json_object();
    json_object_set_new(o, "method", json_string(imprint ? "imprint" : "retrain-last"));
    json_object_set_new(o, "model", json_string(a->model));
    json_object_set_new(o, "out", json_string(a->out));
    json_object_set_new(o, "train_images", json_integer(r->train_images));
    json_object_set_new(o, "test_images", json_integer(r->test_images));
    json_object_set_new(o, "classes", json_integer(r->classes));
    json_object_set_new(o, "new_classes", json_integer(r->new_classes));
    json_object_set_new(o, "kept_classes", json_integer(r->kept_classes));
    json_object_set_new(o, "updated_classes", json_integer(r->updated_classes));
    json_object_set_new(o, "embedding", json_pack("{s:i, s:s}", "size", (int)r->embedding_size,
                                                  "dtype", kiln_dtype_name(r->embedding_dtype)));
    json_object_set_new(o, "timing_seconds",
                        json_pack("{s:f, s:f, s:f}", "extraction", r->extract_seconds, "learning",
                                  r->learn_seconds, "evaluation", r->eval_seconds));
    json_object_set_new(o, "test_accuracy", r->test_accuracy >= 0 ? json_real(r->test_accuracy) : json_null());
    if (!imprint)
      json_object_set_new(o, "sgd", json_pack("{s:f, s:f, s:f, s:f, s:f}", "initial_loss",
                                              r->sgd.initial_loss, "final_loss", r->sgd.final_loss,
                                              "train_accuracy", r->sgd.train_accuracy, "logit_min",
                                              (double)r->sgd.logit_min, "logit_max",
                                              (double)r->sgd.logit_max));
    char *s = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
    if (s) puts(s);
    free(s);
    json_decref(o);
    return;
  }
  printf("%s: %d training images, %d classes (%d new, %d updated, %d kept), embedding %d %s\n",
         a->cmd, (int)r->train_images, (int)r->classes, (int)r->new_classes,
         (int)r->updated_classes, (int)r->kept_classes, (int)r->embedding_size,
         kiln_dtype_name(r->embedding_dtype));
  printf("  extraction %.3f s (%.1f ms per image), learning %.4f s\n", r->extract_seconds,
         r->train_images ? 1000.0 * r->extract_seconds / r->train_images : 0.0, r->learn_seconds);
  if (!imprint)
    printf("  SGD: loss %.4f -> %.4f, training accuracy %.4f\n", r->sgd.initial_loss,
           r->sgd.final_loss, r->sgd.train_accuracy);
  if (r->test_accuracy >= 0)
    printf("  test split: %d images, accuracy %.4f (%.3f s)\n", (int)r->test_images,
           r->test_accuracy, r->eval_seconds);
  printf("wrote %s and labels.txt beside it\n", a->out);
}

static int run(int argc, char **argv, kiln_ondevice_method method, const char *cmd) {
  ondevice_args a;
  memset(&a, 0, sizeof a);
  a.cmd = cmd;
  a.opt.method = method;
  a.opt.sgd = kiln_sgd_options_default();
  int rc = parse(argc, argv, &a);
  if (rc != CLI_OK) return rc < 0 ? CLI_OK : rc;
  kiln_error err;
  kiln_model *base = NULL;
  if (kiln_model_load(a.model, &base, &err) != KILN_OK) return cli_error(cmd, &err);
  kiln_ondevice *od = NULL; /* checked first, so the message can name the file */
  if (kiln_ondevice_open(base, &od, &err) != KILN_OK) {
    kiln_error_prefix(&err, "%s", a.model);
    kiln_model_free(base);
    return cli_error(cmd, &err);
  }
  kiln_ondevice_free(od);
  kiln_data_options dopt = kiln_data_options_default();
  dopt.threads = a.opt.threads;
  kiln_dataset *ds = NULL;
  kiln_status s = kiln_data_import(a.data, &dopt, &ds, &err);
  if (ds) print_problems(ds);
  kiln_ondevice_report rep;
  if (s == KILN_OK) s = kiln_ondevice_run(base, ds, a.out, &a.opt, &rep, &err);
  kiln_dataset_free(ds);
  kiln_model_free(base);
  if (s != KILN_OK) return cli_error(cmd, &err);
  print_report(&a, &rep);
  return CLI_OK;
}

int cmd_imprint(int argc, char **argv) { return run(argc, argv, KILN_ONDEVICE_IMPRINT, "imprint"); }

int cmd_retrain_last(int argc, char **argv) {
  return run(argc, argv, KILN_ONDEVICE_RETRAIN_LAST, "retrain-last");
}
