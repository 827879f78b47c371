/* kiln detect [MODEL IMAGE]: objects in an image, as text or JSON, and
 * optionally drawn into a PNG. Without MODEL and IMAGE it runs the shared
 * SSD on the shared photo (the built-in default). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "kiln/vision.h"

static const char *help =
    "usage: kiln detect [MODEL IMAGE] [--labels FILE] [--threshold T] [--iou T] [--max N]\n"
    "                   [--json] [--draw OUT.png] [--mean M --std S] [--threads N]\n\n"
    "Finds objects in IMAGE (JPEG or PNG) with an SSD-style MODEL: either raw outputs\n"
    "(box encodings [1,N,4] and class logits [1,N,C], decoded with the standard SSD anchors\n"
    "for N) or a model ending in TFLite_Detection_PostProcess. Boxes are in pixels of the\n"
    "original image. Without MODEL and IMAGE: $KILN_MODELS/ssd_mobilenet_v2_oidv4_fp16.tflite\n"
    "(with its oidv4_labels.txt) on $KILN_MODELS/../images/astronaut.png.\n\n"
    "  --labels FILE     class names: one per line, or 'ID LABEL' lines\n"
    "  --threshold T     minimum score (default 0.5)\n"
    "  --iou T           NMS IoU threshold for raw outputs (default 0.4)\n"
    "  --max N           at most N detections (default 20)\n"
    "  --json            print JSON: image size, detections, timings\n"
    "  --draw OUT.png    write the image with boxes and labels\n"
    "  --mean M --std S  float input normalization (x - M) / S (default 127.5, 127.5)\n"
    "  --max-pixels N    refuse larger images (default 50000000)\n"
    "  --threads N       worker threads (default: all cores)\n";

#define DETECT_MAX 1000

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* The label of a detection's class id (see kiln_box), or "class N". */
static const char *box_label(const kiln_labels *labels, int32_t class_id, char *buf, size_t cap) {
  const char *l = NULL;
  if (labels) l = kiln_labels_get(labels, kiln_labels_has_background(labels) ? class_id : class_id - 1);
  if (l) return l;
  snprintf(buf, cap, "class %d", (int)class_id);
  return buf;
}

static const kiln_rgb palette[] = {{230, 25, 75}, {60, 180, 75}, {255, 225, 25}, {0, 130, 200},
                                   {245, 130, 48}, {145, 30, 180}, {70, 240, 240}, {240, 50, 230}};

static int draw(const char *path, kiln_image *img, const kiln_box *boxes, int32_t n,
                const kiln_labels *labels) {
  int32_t thick = img->width > 800 ? 4 : 2, scale = img->width > 800 ? 3 : 2;
  for (int32_t i = n - 1; i >= 0; i--) { /* best drawn last, on top */
    const kiln_box *b = &boxes[i];
    kiln_rgb c = palette[b->class_id % (int32_t)(sizeof palette / sizeof palette[0])];
    kiln_image_draw_box(img, (int32_t)b->xmin, (int32_t)b->ymin, (int32_t)b->xmax, (int32_t)b->ymax,
                        thick, c);
    char name[64], text[128];
    snprintf(text, sizeof text, "%s %.2f", box_label(labels, b->class_id, name, sizeof name), (double)b->score);
    int32_t tw, th;
    kiln_image_text_size(text, scale, &tw, &th);
    int32_t y = (int32_t)b->ymin - th - 2;
    if (y < 0) y = (int32_t)b->ymin + thick;
    kiln_image_draw_text(img, (int32_t)b->xmin, y, text, scale, (kiln_rgb){0, 0, 0}, &c);
  }
  kiln_error err;
  if (kiln_image_write_png(img, path, &err) != KILN_OK) return cli_error("detect", &err);
  return CLI_OK;
}

static void print_json(const kiln_image *img, const kiln_box *boxes, int32_t n,
                       const kiln_labels *labels, double load_ms, double decode_ms,
                       const kiln_vision_timing *t) {
  json_t *root = json_object();
  json_object_set_new(root, "image", json_pack("{s:i, s:i}", "width", (int)img->width, "height", (int)img->height));
  json_t *dets = json_array();
  for (int32_t i = 0; i < n; i++) {
    char name[64];
    json_t *box = json_pack("{s:f, s:f, s:f, s:f}", "xmin", (double)boxes[i].xmin, "ymin",
                            (double)boxes[i].ymin, "xmax", (double)boxes[i].xmax, "ymax",
                            (double)boxes[i].ymax);
    json_array_append_new(dets, json_pack("{s:s, s:i, s:f, s:o}", "label",
                                          box_label(labels, boxes[i].class_id, name, sizeof name),
                                          "class_id", (int)boxes[i].class_id, "score",
                                          (double)boxes[i].score, "box", box));
  }
  json_object_set_new(root, "detections", dets);
  json_object_set_new(root, "timing_ms",
                      json_pack("{s:f, s:f, s:f, s:f, s:f}", "load", load_ms, "decode", decode_ms,
                                "preprocess", t->preprocess_ms, "invoke", t->invoke_ms,
                                "postprocess", t->postprocess_ms));
  char *s = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
  if (s) puts(s);
  free(s);
  json_decref(root);
}

int cmd_detect(int argc, char **argv) {
  cli_args a = {argc, argv, 1, "detect"};
  const char *model_path = NULL, *image_path = NULL, *labels_path = NULL, *draw_path = NULL, *v;
  float threshold = 0.5f, iou = 0.4f, mean = 127.5f, std = 127.5f;
  bool json = false, has_norm = false, bad = false;
  int64_t max = 20, threads = 0, max_pixels = 0;
  while (a.i < argc) {
    if (cli_flag(&a, "--help") || cli_flag(&a, "-h")) {
      fputs(help, stdout);
      return CLI_OK;
    }
    if (cli_flag(&a, "--json")) {
      json = true;
    } else if (cli_flag_value(&a, "--labels", &v, &bad)) {
      labels_path = v;
    } else if (cli_flag_value(&a, "--draw", &v, &bad)) {
      draw_path = v;
    } else if (cli_flag_value(&a, "--threshold", &v, &bad)) {
      if (!bad && !cli_parse_float("detect", "--threshold", v, &threshold)) return CLI_USAGE;
    } else if (cli_flag_value(&a, "--iou", &v, &bad)) {
      if (!bad && !cli_parse_float("detect", "--iou", v, &iou)) return CLI_USAGE;
    } else if (cli_flag_value(&a, "--mean", &v, &bad)) {
      if (!bad && !cli_parse_float("detect", "--mean", v, &mean)) return CLI_USAGE;
      has_norm = true;
    } else if (cli_flag_value(&a, "--std", &v, &bad)) {
      if (!bad && !cli_parse_float("detect", "--std", v, &std)) return CLI_USAGE;
      has_norm = true;
    } else if (cli_flag_value(&a, "--max", &v, &bad)) {
      if (!bad && !cli_parse_int("detect", "--max", v, 1, DETECT_MAX, &max)) return CLI_USAGE;
    } else if (cli_flag_value(&a, "--threads", &v, &bad)) {
      if (!bad && !cli_parse_int("detect", "--threads", v, 1, 1024, &threads)) return CLI_USAGE;
    } else if (cli_flag_value(&a, "--max-pixels", &v, &bad)) {
      if (!bad && !cli_parse_int("detect", "--max-pixels", v, 1, INT64_MAX, &max_pixels)) return CLI_USAGE;
    } else if (argv[a.i][0] == '-') {
      return cli_usage_error("detect", "unknown option '%s'", argv[a.i]);
    } else if (!model_path) {
      model_path = argv[a.i++];
    } else if (!image_path) {
      image_path = argv[a.i++];
    } else {
      return cli_usage_error("detect", "unexpected argument '%s'", argv[a.i]);
    }
    if (bad) return CLI_USAGE;
  }
  if (model_path && !image_path) return cli_usage_error("detect", "missing IMAGE after MODEL");
  if (threshold < 0.0f || threshold > 1.0f) return cli_usage_error("detect", "--threshold must be in [0, 1]");
  if (!(iou > 0.0f && iou <= 1.0f)) return cli_usage_error("detect", "--iou must be in (0, 1]");
  if (!(std != 0.0f)) return cli_usage_error("detect", "--std must not be 0");
  if (!model_path) { /* the built-in default */
    model_path = cli_path_join(0, cli_models_dir(), "ssd_mobilenet_v2_oidv4_fp16.tflite");
    image_path = cli_path_join(1, cli_models_dir(), "../images/astronaut.png");
    if (!labels_path) labels_path = cli_path_join(2, cli_models_dir(), "oidv4_labels.txt");
  }

  kiln_error err;
  int rc = CLI_FAIL;
  kiln_model *m = NULL;
  kiln_interp *it = NULL;
  kiln_detector *det = NULL;
  kiln_labels *labels = NULL;
  kiln_image img = {0};
  kiln_box boxes[DETECT_MAX];
  double t0 = now_ms();
  if (labels_path && kiln_labels_load(labels_path, &labels, &err) != KILN_OK) goto fail;
  if (kiln_model_load(model_path, &m, &err) != KILN_OK) goto fail;
  kiln_interp_options opt = {.n_threads = (int32_t)threads};
  if (kiln_interp_create(m, &opt, &it, &err) != KILN_OK) {
    kiln_error_prefix(&err, "%s", model_path);
    goto fail;
  }
  kiln_detect_config cfg = kiln_detect_config_default300();
  cfg.score_threshold = threshold;
  cfg.iou_threshold = iou;
  cfg.max_detections = (int32_t)max;
  if (kiln_detector_create(it, m, &cfg, &det, &err) != KILN_OK) {
    kiln_error_prefix(&err, "%s", model_path);
    goto fail;
  }
  double t1 = now_ms();
  kiln_image_options iopt = {(uint64_t)max_pixels};
  if (kiln_image_decode_file(image_path, &iopt, &img, &err) != KILN_OK) goto fail;
  double t2 = now_ms();
  kiln_image_norm norm = {{mean, mean, mean}, {std, std, std}};
  int32_t n = 0;
  kiln_vision_timing timing;
  if (kiln_detector_run(det, &img, has_norm ? &norm : NULL, boxes, (int32_t)max, &n, &timing, &err) != KILN_OK)
    goto fail;
  if (json) {
    print_json(&img, boxes, n, labels, t1 - t0, t2 - t1, &timing);
  } else {
    printf("%s: %dx%d, %d detection%s (invoke %.1f ms)\n", image_path, (int)img.width,
           (int)img.height, (int)n, n == 1 ? "" : "s", timing.invoke_ms);
    for (int32_t i = 0; i < n; i++) {
      char name[64];
      printf("  %-20s %.3f  box (%.0f, %.0f) - (%.0f, %.0f)\n",
             box_label(labels, boxes[i].class_id, name, sizeof name), (double)boxes[i].score,
             (double)boxes[i].xmin, (double)boxes[i].ymin, (double)boxes[i].xmax, (double)boxes[i].ymax);
    }
  }
  rc = draw_path ? draw(draw_path, &img, boxes, n, labels) : CLI_OK;
  goto done;
fail:
  rc = cli_error("detect", &err);
done:
  kiln_image_free(&img);
  kiln_labels_free(labels);
  kiln_detector_free(det);
  kiln_interp_free(it);
  kiln_model_free(m);
  return rc;
}
