/* kiln convert MODEL --out OUT.tflite [--add-postprocess ssd |
 * --embedding-extractor]: writes the model through kiln's writer after its
 * load-time passes, optionally with SSD post-processing appended, or the
 * embedding extractor made from it (kiln/ondevice.h). */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "kiln/detect.h"
#include "kiln/model.h"
#include "kiln/ondevice.h"

static const char *help =
    "usage: kiln convert MODEL --out OUT.tflite [--add-postprocess ssd]\n"
    "                    [--threshold T] [--iou T] [--max N] [--regular-nms]\n"
    "       kiln convert MODEL --out OUT.tflite --embedding-extractor [--feature-tensor NAME]\n\n"
    "Reads MODEL, applies kiln's load-time passes (fp16 weights become float32, constant\n"
    "reshapes fold, dead ops go) and writes OUT.tflite, which LiteRT and kiln both run.\n\n"
    "  --add-postprocess ssd  append LOGISTIC + TFLite_Detection_PostProcess to a raw-output\n"
    "                         SSD (box encodings [1,N,4], class logits [1,N,C]) with anchors\n"
    "                         for the standard layout of N; the outputs become boxes, classes,\n"
    "                         scores and count, as Coral-style detection models have\n"
    "  --threshold T          NMS score threshold (default 0.5)\n"
    "  --iou T                NMS IoU threshold (default 0.4)\n"
    "  --max N                maximum detections (default 20)\n"
    "  --regular-nms          per-class NMS instead of the fast class-agnostic one\n"
    "  --embedding-extractor  write the float embedding extractor 'kiln imprint' and\n"
    "                         'kiln retrain-last' learn on: MODEL (a classifier or backbone,\n"
    "                         float or quantized) cut at a feature map, averaged over height\n"
    "                         and width, L2_NORMALIZATION; 'kiln quantize' makes it int8\n"
    "  --feature-tensor NAME  the feature map to cut at (default: the input of MODEL's last\n"
    "                         global pooling; for the shared SSD name its backbone's last map,\n"
    "                         FeatureExtractor/MobilenetV2/Conv_1/Relu6)\n";

int cmd_convert(int argc, char **argv) {
  cli_args a = {argc, argv, 1, "convert"};
  const char *in_path = NULL, *out_path = NULL, *post = NULL, *feature = NULL, *v;
  float threshold = 0.5f, iou = 0.4f;
  int64_t max = 20;
  bool regular = false, extractor = false, bad = false;
  while (a.i < argc) {
    if (cli_flag(&a, "--help") || cli_flag(&a, "-h")) {
      fputs(help, stdout);
      return CLI_OK;
    }
    if (cli_flag_value(&a, "--out", &v, &bad)) {
      out_path = v;
    } else if (cli_flag_value(&a, "--add-postprocess", &v, &bad)) {
      post = v;
    } else if (cli_flag_value(&a, "--threshold", &v, &bad)) {
      if (!bad && !cli_parse_float("convert", "--threshold", v, &threshold)) return CLI_USAGE;
    } else if (cli_flag_value(&a, "--iou", &v, &bad)) {
      if (!bad && !cli_parse_float("convert", "--iou", v, &iou)) return CLI_USAGE;
    } else if (cli_flag_value(&a, "--max", &v, &bad)) {
      if (!bad && !cli_parse_int("convert", "--max", v, 1, 1000, &max)) return CLI_USAGE;
    } else if (cli_flag(&a, "--regular-nms")) {
      regular = true;
    } else if (cli_flag(&a, "--embedding-extractor")) {
      extractor = true;
    } else if (cli_flag_value(&a, "--feature-tensor", &v, &bad)) {
      feature = v;
    } else if (argv[a.i][0] == '-') {
      return cli_usage_error("convert", "unknown option '%s'", argv[a.i]);
    } else if (!in_path) {
      in_path = argv[a.i++];
    } else {
      return cli_usage_error("convert", "unexpected argument '%s'", argv[a.i]);
    }
    if (bad) return CLI_USAGE;
  }
  if (!in_path) return cli_usage_error("convert", "missing MODEL");
  if (!out_path) return cli_usage_error("convert", "missing --out");
  if (post && strcmp(post, "ssd") != 0)
    return cli_usage_error("convert", "--add-postprocess knows 'ssd', not '%s'", post);
  if (threshold < 0.0f || threshold > 1.0f) return cli_usage_error("convert", "--threshold must be in [0, 1]");
  if (!(iou > 0.0f && iou <= 1.0f)) return cli_usage_error("convert", "--iou must be in (0, 1]");
  if (extractor && post)
    return cli_usage_error("convert", "--embedding-extractor and --add-postprocess exclude each other");
  if (feature && !extractor)
    return cli_usage_error("convert", "--feature-tensor goes with --embedding-extractor");

  kiln_error err;
  kiln_model *m;
  if (extractor ? kiln_ondevice_make_extractor(in_path, feature, &m, &err) != KILN_OK
                : kiln_model_load(in_path, &m, &err) != KILN_OK)
    return cli_error("convert", &err);
  int rc = CLI_OK;
  if (post) {
    kiln_detect_config cfg = kiln_detect_config_default300();
    cfg.score_threshold = threshold;
    cfg.iou_threshold = iou;
    cfg.max_detections = (int32_t)max;
    cfg.class_agnostic = !regular;
    /* Anchors for the model's layout: infer from its box output and input. */
    const kiln_tensor *in = m->n_inputs ? &m->tensors[m->inputs[0]] : NULL;
    int32_t n_anchors = -1;
    for (int32_t i = 0; i < m->n_outputs; i++) {
      const kiln_tensor *t = &m->tensors[m->outputs[i]];
      if (t->rank == 3 && t->shape[2] == 4) n_anchors = t->shape[1];
    }
    if (n_anchors < 0 || !in || in->rank != 4) {
      kiln_fail(&err, KILN_ERR_UNSUPPORTED, "%s: not a raw-output SSD (no [1,N,4] box output)", in_path);
      rc = cli_error("convert", &err);
    } else if (kiln_ssd_anchor_config_infer(n_anchors, in->shape[1], in->shape[2], &cfg.anchors, &err) != KILN_OK ||
               kiln_detect_add_postprocess(m, &cfg, &err) != KILN_OK) {
      kiln_error_prefix(&err, "%s", in_path);
      rc = cli_error("convert", &err);
    }
  }
  if (rc == CLI_OK && kiln_model_save(m, out_path, &err) != KILN_OK) rc = cli_error("convert", &err);
  if (rc == CLI_OK)
    fprintf(stderr, "kiln convert: wrote %s (%d ops, %d tensors)\n", out_path, (int)m->n_ops, (int)m->n_tensors);
  kiln_model_free(m);
  return rc;
}
