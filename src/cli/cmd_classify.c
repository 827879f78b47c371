/* kiln classify MODEL IMAGE: the top classes of an image. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli/cli.h"
#include "kiln/vision.h"

static const char *help =
    "usage: kiln classify MODEL IMAGE [--labels FILE] [--top K] [--json] [--mean M --std S]\n"
    "                     [--threads N]\n\n"
    "Runs an image classifier (one output of class scores, [1,C]) on IMAGE (JPEG or PNG),\n"
    "stretched to the model's input, and prints the K best classes. Float inputs get\n"
    "(x - 127.5) / 127.5 and quantized inputs the pixels, unless --mean/--std or the model's\n"
    "\"kiln_input_norm\" metadata (written by kiln train) say otherwise.\n\n"
    "  --labels FILE   class names: one per line (line i is class i), or 'ID LABEL' lines\n"
    "                  (default: the labels kiln embeds in the models it writes, if any)\n"
    "  --top K         how many classes (default 5)\n"
    "  --json          print JSON\n"
    "  --max-pixels N  refuse larger images (default 50000000)\n"
    "  --threads N     worker threads (default: all cores)\n";

#define CLASSIFY_MAX_TOP 1000

/* The model, its labels (the file, else the model's "kiln_labels") and, when
 * --mean/--std were not given, the model's "kiln_input_norm" if it has one. */
static kiln_status load_model(const char *path, const char *labels_path, kiln_model **m,
                              kiln_labels **labels, kiln_image_norm *norm, bool *has_norm,
                              kiln_error *err) {
  kiln_status s;
  if (labels_path && (s = kiln_labels_load(labels_path, labels, err)) != KILN_OK) return s;
  if ((s = kiln_model_load(path, m, err)) != KILN_OK) return s;
  if (!*labels && (s = kiln_labels_from_model(*m, labels, err)) != KILN_OK) return s;
  if (!*has_norm) *has_norm = kiln_model_input_norm(*m, norm);
  return KILN_OK;
}

int cmd_classify(int argc, char **argv) {
  cli_args a = {argc, argv, 1, "classify"};
  const char *model_path = NULL, *image_path = NULL, *labels_path = NULL, *v;
  float mean = 127.5f, std = 127.5f;
  bool json = false, has_norm = false, bad = false;
  int64_t top = 5, threads = 0, max_pixels = 0;
  while (a.i < argc) {
    if (cli_flag(&a, "--help") || cli_flag(&a, "-h")) {
      fputs(help, stdout);
      return CLI_OK;
    }
    if (cli_flag(&a, "--json")) {
      json = true;
    } else if (cli_flag_value(&a, "--labels", &v, &bad)) {
      labels_path = v;
    } else if (cli_flag_value(&a, "--top", &v, &bad)) {
      if (!bad && !cli_parse_int("classify", "--top", v, 1, CLASSIFY_MAX_TOP, &top)) return CLI_USAGE;
    } else if (cli_flag_value(&a, "--mean", &v, &bad)) {
      if (!bad && !cli_parse_float("classify", "--mean", v, &mean)) return CLI_USAGE;
      has_norm = true;
    } else if (cli_flag_value(&a, "--std", &v, &bad)) {
      if (!bad && !cli_parse_float("classify", "--std", v, &std)) return CLI_USAGE;
      has_norm = true;
    } else if (cli_flag_value(&a, "--threads", &v, &bad)) {
      if (!bad && !cli_parse_int("classify", "--threads", v, 1, 1024, &threads)) return CLI_USAGE;
    } else if (cli_flag_value(&a, "--max-pixels", &v, &bad)) {
      if (!bad && !cli_parse_int("classify", "--max-pixels", v, 1, INT64_MAX, &max_pixels)) return CLI_USAGE;
    } else if (argv[a.i][0] == '-') {
      return cli_usage_error("classify", "unknown option '%s'", argv[a.i]);
    } else if (!model_path) {
      model_path = argv[a.i++];
    } else if (!image_path) {
      image_path = argv[a.i++];
    } else {
      return cli_usage_error("classify", "unexpected argument '%s'", argv[a.i]);
    }
    if (bad) return CLI_USAGE;
  }
  if (!model_path || !image_path) return cli_usage_error("classify", "needs MODEL and IMAGE");
  if (!(std != 0.0f)) return cli_usage_error("classify", "--std must not be 0");

  kiln_error err;
  int rc = CLI_OK;
  kiln_model *m = NULL;
  kiln_interp *it = NULL;
  kiln_labels *labels = NULL;
  kiln_image img = {0};
  kiln_class_score scores[CLASSIFY_MAX_TOP];
  int32_t n = 0;
  kiln_vision_timing timing;
  kiln_interp_options opt = {.n_threads = (int32_t)threads};
  kiln_image_options iopt = {(uint64_t)max_pixels};
  kiln_image_norm norm = {{mean, mean, mean}, {std, std, std}};
  if (load_model(model_path, labels_path, &m, &labels, &norm, &has_norm, &err) != KILN_OK) {
    rc = cli_error("classify", &err);
  } else if (kiln_interp_create(m, &opt, &it, &err) != KILN_OK) {
    kiln_error_prefix(&err, "%s", model_path);
    rc = cli_error("classify", &err);
  } else if (kiln_image_decode_file(image_path, &iopt, &img, &err) != KILN_OK ||
             kiln_classify_run(it, &img, has_norm ? &norm : NULL, (int32_t)top, scores, &n,
                               &timing, &err) != KILN_OK) {
    rc = cli_error("classify", &err);
  } else if (json) {
    json_t *root;
    if (kiln_classify_result_json(&img, scores, n, labels, &timing, &root, &err) != KILN_OK) {
      rc = cli_error("classify", &err);
    } else {
      char *s = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
      if (s) puts(s);
      free(s);
      json_decref(root);
    }
  } else {
    for (int32_t i = 0; i < n; i++) {
      const char *l = kiln_labels_get(labels, scores[i].class_id);
      if (l) printf("%.4f  %s (%d)\n", (double)scores[i].score, l, (int)scores[i].class_id);
      else printf("%.4f  class %d\n", (double)scores[i].score, (int)scores[i].class_id);
    }
  }
  kiln_image_free(&img);
  kiln_labels_free(labels);
  kiln_interp_free(it);
  kiln_model_free(m);
  return rc;
}
