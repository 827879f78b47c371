/* kiln detect [MODEL IMAGE]: objects in an image, as text or JSON, and
 * optionally drawn into a PNG. Without MODEL and IMAGE it runs the shared
 * SSD on the shared photo (the built-in default). With --video, objects in
 * every frame of a video file or camera (kiln_video_detect), optionally
 * written back as a video with the boxes drawn. */
#include <jansson.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "kiln/video.h"
#include "kiln/vision.h"

static const char *help =
    "usage: kiln detect [MODEL IMAGE] [--labels FILE] [--threshold T] [--iou T] [--max N]\n"
    "                   [--json] [--draw OUT.png] [--mean M --std S] [--threads N]\n"
    "       kiln detect [MODEL] --video FILE|/dev/videoN [--out OUT.mp4] [--max-frames N] ...\n\n"
    "Finds objects in IMAGE (JPEG or PNG) with an SSD-style MODEL: either raw outputs\n"
    "(box encodings [1,N,4] and class logits [1,N,C], decoded with the standard SSD anchors\n"
    "for N) or a model ending in TFLite_Detection_PostProcess. Boxes are in pixels of the\n"
    "original image. Without MODEL and IMAGE: $KILN_MODELS/ssd_mobilenet_v2_oidv4_fp16.tflite\n"
    "(with its oidv4_labels.txt) on $KILN_MODELS/../images/astronaut.png.\n\n"
    "With --video: every frame of a video file (any format FFmpeg reads) or V4L2 camera,\n"
    "decoded, detected and encoded on three overlapping threads. Prints one line per frame\n"
    "(a JSON object per line with --json) and a summary: frames, frames per second (wall\n"
    "clock), and the latency from a frame leaving the decoder to its encoding (median, p90).\n"
    "A video that ends early (truncated, corrupt) is reported as an error after the frames\n"
    "that could be read (exit 1). Ctrl-C stops a camera cleanly.\n\n"
    "  --labels FILE     class names: one per line, or 'ID LABEL' lines\n"
    "                    (default: the labels kiln embeds in the models it writes, if any)\n"
    "  --threshold T     minimum score (default 0.5)\n"
    "  --iou T           NMS IoU threshold for raw outputs (default 0.4)\n"
    "  --max N           at most N detections (default 20)\n"
    "  --json            print JSON: image size, detections, timings\n"
    "  --draw OUT.png    write the image with boxes and labels\n"
    "  --video FILE      detect in a video file or camera (/dev/videoN) instead of an image\n"
    "  --out OUT.mp4     with --video: write the video with boxes (H.264; container by name)\n"
    "  --max-frames N    with --video: stop after N frames\n"
    "  --drop-late       with --video: drop frames that arrive while detection is busy,\n"
    "                    bounding latency (always on for cameras)\n"
    "  --mean M --std S  float input normalization (x - M) / S (default 127.5, 127.5)\n"
    "  --max-pixels N    refuse larger images (default 50000000)\n"
    "  --threads N       worker threads (default: all cores)\n";

#define DETECT_MAX 1000

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Prints root on one line (compact) or indented, and frees it. */
static void print_json(json_t *root, bool one_line) {
  size_t flags = JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6) | (one_line ? JSON_COMPACT : JSON_INDENT(2));
  char *s = json_dumps(root, flags);
  if (s) puts(s);
  free(s);
  json_decref(root);
}

static void print_boxes_text(const kiln_box *boxes, int32_t n, const kiln_labels *labels) {
  for (int32_t i = 0; i < n; i++) {
    char name[64];
    printf("  %-20s %.3f  box (%.0f, %.0f) - (%.0f, %.0f)\n",
           kiln_video_box_label(labels, boxes[i].class_id, name, sizeof name), (double)boxes[i].score,
           (double)boxes[i].xmin, (double)boxes[i].ymin, (double)boxes[i].xmax, (double)boxes[i].ymax);
  }
}

typedef struct detect_args {
  const char *model_path, *image_path, *video_path, *labels_path, *draw_path, *out_path;
  float threshold, iou, mean, std;
  bool json, has_norm, drop_late;
  int64_t max, threads, max_pixels, max_frames;
} detect_args;

static int detect_image(const detect_args *d, kiln_detector *det, const kiln_labels *labels,
                        double load_ms) {
  kiln_error err;
  kiln_image img = {0};
  kiln_box boxes[DETECT_MAX];
  double t1 = now_ms();
  kiln_image_options iopt = {(uint64_t)d->max_pixels};
  if (kiln_image_decode_file(d->image_path, &iopt, &img, &err) != KILN_OK) return cli_error("detect", &err);
  double t2 = now_ms();
  kiln_image_norm norm = {{d->mean, d->mean, d->mean}, {d->std, d->std, d->std}};
  int32_t n = 0;
  kiln_vision_timing t;
  int rc = CLI_OK;
  if (kiln_detector_run(det, &img, d->has_norm ? &norm : NULL, boxes, (int32_t)d->max, &n, &t, &err) != KILN_OK) {
    rc = cli_error("detect", &err);
  } else if (d->json) {
    json_t *root;
    if (kiln_detect_result_json(&img, boxes, n, labels, t2 - t1, &t, &root, &err) != KILN_OK) {
      rc = cli_error("detect", &err);
    } else {
      json_object_set_new(json_object_get(root, "timing_ms"), "load", json_real(load_ms));
      print_json(root, false);
    }
  } else {
    printf("%s: %dx%d, %d detection%s (invoke %.1f ms)\n", d->image_path, (int)img.width,
           (int)img.height, (int)n, n == 1 ? "" : "s", t.invoke_ms);
    print_boxes_text(boxes, n, labels);
  }
  if (rc == CLI_OK && d->draw_path) {
    kiln_video_draw_boxes(&img, boxes, n, labels);
    if (kiln_image_write_png(&img, d->draw_path, &err) != KILN_OK) rc = cli_error("detect", &err);
  }
  kiln_image_free(&img);
  return rc;
}

/* ---- --video ---- */

/* Set by Ctrl-C, read by the pipeline's reporting thread: lock-free, so
 * safe in a signal handler and between threads. */
static atomic_bool video_interrupted;

static void on_sigint(int sig) {
  (void)sig;
  atomic_store(&video_interrupted, true);
}

typedef struct video_printer {
  const kiln_labels *labels;
  bool json;
} video_printer;

static bool print_frame(const kiln_video_frame *f, void *user) {
  const video_printer *vp = user;
  if (vp->json) {
    json_t *dets;
    kiln_error err;
    if (kiln_detections_json(f->boxes, f->n_boxes, vp->labels, &dets, &err) != KILN_OK) {
      cli_error("detect", &err);
      return false;
    }
    json_t *root = json_pack("{s:I, s:f, s:o, s:f}", "frame", (json_int_t)f->index, "time",
                             f->time_s, "detections", dets, "latency_ms", f->latency_ms);
    print_json(root, true);
  } else {
    printf("frame %lld (%.3f s): %d detection%s (invoke %.1f ms, latency %.1f ms)\n",
           (long long)f->index, f->time_s, (int)f->n_boxes, f->n_boxes == 1 ? "" : "s",
           f->timing.invoke_ms, f->latency_ms);
    print_boxes_text(f->boxes, f->n_boxes, vp->labels);
  }
  fflush(stdout);
  return !atomic_load(&video_interrupted);
}

static void print_video_summary(const kiln_video_stats *st, bool json) {
  if (json) {
    json_t *root = json_pack(
        "{s:{s:I, s:I, s:i, s:i, s:f, s:f, s:f, s:{s:f, s:f}, s:{s:f, s:f, s:f}, s:s}}", "summary",
        "frames", (json_int_t)st->frames, "dropped", (json_int_t)st->frames_dropped, "width",
        (int)st->width, "height", (int)st->height, "stream_fps", st->stream_fps, "wall_ms",
        st->wall_ms, "fps", st->fps, "latency_ms", "median", st->latency_median_ms, "p90",
        st->latency_p90_ms, "stage_ms", "decode", st->decode_ms, "detect", st->infer_ms, "encode",
        st->encode_ms, "encoder", st->encoder);
    print_json(root, true);
    return;
  }
  printf("%lld frame%s (%dx%d) in %.2f s: %.1f fps; latency median %.1f ms, p90 %.1f ms\n",
         (long long)st->frames, st->frames == 1 ? "" : "s", (int)st->width, (int)st->height,
         st->wall_ms / 1e3, st->fps, st->latency_median_ms, st->latency_p90_ms);
  if (st->frames_dropped) printf("%lld frames dropped while detection was busy\n", (long long)st->frames_dropped);
  printf("per frame: decode %.1f ms, detect %.1f ms, encode %.1f ms%s%s\n", st->decode_ms,
         st->infer_ms, st->encode_ms, st->encoder[0] ? " with " : "", st->encoder);
}

static int detect_video(const detect_args *d, kiln_detector *det, const kiln_labels *labels) {
  kiln_image_norm norm = {{d->mean, d->mean, d->mean}, {d->std, d->std, d->std}};
  kiln_video_options opt = {.output = d->out_path, .labels = labels,
                            .norm = d->has_norm ? &norm : NULL, .max_frames = d->max_frames,
                            .max_boxes = (int32_t)d->max, .drop_late = d->drop_late};
  video_printer vp = {labels, d->json};
  struct sigaction sa = {.sa_handler = on_sigint, .sa_flags = SA_RESTART};
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  kiln_video_stats st;
  kiln_error err;
  kiln_status s = kiln_video_detect(det, d->video_path, &opt, print_frame, &vp, &st, &err);
  signal(SIGINT, SIG_DFL);
  if (s == KILN_OK || st.frames > 0) print_video_summary(&st, d->json);
  return s == KILN_OK ? CLI_OK : cli_error("detect", &err);
}

/* Parses argv into *d; returns CLI_OK, or the exit code (help, usage). */
static int parse_args(int argc, char **argv, detect_args *d) {
  cli_args a = {argc, argv, 1, "detect"};
  const char *v;
  bool bad = false;
  while (a.i < argc) {
    if (cli_flag(&a, "--help") || cli_flag(&a, "-h")) {
      fputs(help, stdout);
      return -1;
    }
    if (cli_flag(&a, "--json")) {
      d->json = true;
    } else if (cli_flag(&a, "--drop-late")) {
      d->drop_late = true;
    } else if (cli_flag_value(&a, "--labels", &v, &bad)) {
      d->labels_path = v;
    } else if (cli_flag_value(&a, "--draw", &v, &bad)) {
      d->draw_path = v;
    } else if (cli_flag_value(&a, "--video", &v, &bad)) {
      d->video_path = v;
    } else if (cli_flag_value(&a, "--out", &v, &bad)) {
      d->out_path = v;
    } else if (cli_flag_value(&a, "--max-frames", &v, &bad)) {
      if (!bad && !cli_parse_int("detect", "--max-frames", v, 1, INT64_MAX, &d->max_frames)) return CLI_USAGE;
    } else if (cli_flag_value(&a, "--threshold", &v, &bad)) {
      if (!bad && !cli_parse_float("detect", "--threshold", v, &d->threshold)) return CLI_USAGE;
    } else if (cli_flag_value(&a, "--iou", &v, &bad)) {
      if (!bad && !cli_parse_float("detect", "--iou", v, &d->iou)) return CLI_USAGE;
    } else if (cli_flag_value(&a, "--mean", &v, &bad)) {
      if (!bad && !cli_parse_float("detect", "--mean", v, &d->mean)) return CLI_USAGE;
      d->has_norm = true;
    } else if (cli_flag_value(&a, "--std", &v, &bad)) {
      if (!bad && !cli_parse_float("detect", "--std", v, &d->std)) return CLI_USAGE;
      d->has_norm = true;
    } else if (cli_flag_value(&a, "--max", &v, &bad)) {
      if (!bad && !cli_parse_int("detect", "--max", v, 1, DETECT_MAX, &d->max)) return CLI_USAGE;
    } else if (cli_flag_value(&a, "--threads", &v, &bad)) {
      if (!bad && !cli_parse_int("detect", "--threads", v, 1, 1024, &d->threads)) return CLI_USAGE;
    } else if (cli_flag_value(&a, "--max-pixels", &v, &bad)) {
      if (!bad && !cli_parse_int("detect", "--max-pixels", v, 1, INT64_MAX, &d->max_pixels)) return CLI_USAGE;
    } else if (argv[a.i][0] == '-') {
      return cli_usage_error("detect", "unknown option '%s'", argv[a.i]);
    } else if (!d->model_path) {
      d->model_path = argv[a.i++];
    } else if (!d->image_path) {
      d->image_path = argv[a.i++];
    } else {
      return cli_usage_error("detect", "unexpected argument '%s'", argv[a.i]);
    }
    if (bad) return CLI_USAGE;
  }
  if (d->video_path) {
    if (d->image_path) return cli_usage_error("detect", "give either IMAGE or --video, not both");
    if (d->draw_path) return cli_usage_error("detect", "--draw is for images; use --out with --video");
  } else {
    if (d->model_path && !d->image_path) return cli_usage_error("detect", "missing IMAGE after MODEL");
    if (d->out_path) return cli_usage_error("detect", "--out needs --video");
    if (d->max_frames) return cli_usage_error("detect", "--max-frames needs --video");
    if (d->drop_late) return cli_usage_error("detect", "--drop-late needs --video");
  }
  if (d->threshold < 0.0f || d->threshold > 1.0f) return cli_usage_error("detect", "--threshold must be in [0, 1]");
  if (!(d->iou > 0.0f && d->iou <= 1.0f)) return cli_usage_error("detect", "--iou must be in (0, 1]");
  if (!(d->std != 0.0f)) return cli_usage_error("detect", "--std must not be 0");
  if (!d->model_path) { /* the built-in default */
    d->model_path = cli_path_join(0, cli_models_dir(), "ssd_mobilenet_v2_oidv4_fp16.tflite");
    if (!d->video_path) d->image_path = cli_path_join(1, cli_models_dir(), "../images/astronaut.png");
    if (!d->labels_path) d->labels_path = cli_path_join(2, cli_models_dir(), "oidv4_labels.txt");
  }
  return CLI_OK;
}

int cmd_detect(int argc, char **argv) {
  detect_args d = {.threshold = 0.5f, .iou = 0.4f, .mean = 127.5f, .std = 127.5f, .max = 20};
  int rc = parse_args(argc, argv, &d);
  if (rc != CLI_OK) return rc < 0 ? CLI_OK : rc;

  kiln_error err;
  kiln_model *m = NULL;
  kiln_interp *it = NULL;
  kiln_detector *det = NULL;
  kiln_labels *labels = NULL;
  double t0 = now_ms();
  if (d.labels_path && kiln_labels_load(d.labels_path, &labels, &err) != KILN_OK) goto fail;
  if (kiln_model_load(d.model_path, &m, &err) != KILN_OK) goto fail;
  if (!labels && kiln_labels_from_model(m, &labels, &err) != KILN_OK) goto fail;
  kiln_interp_options opt = {.n_threads = (int32_t)d.threads};
  if (kiln_interp_create(m, &opt, &it, &err) != KILN_OK) {
    kiln_error_prefix(&err, "%s", d.model_path);
    goto fail;
  }
  kiln_detect_config cfg = kiln_detect_config_default300();
  cfg.score_threshold = d.threshold;
  cfg.iou_threshold = d.iou;
  cfg.max_detections = (int32_t)d.max;
  if (kiln_detector_create(it, m, &cfg, &det, &err) != KILN_OK) {
    kiln_error_prefix(&err, "%s", d.model_path);
    goto fail;
  }
  rc = d.video_path ? detect_video(&d, det, labels) : detect_image(&d, det, labels, now_ms() - t0);
  goto done;
fail:
  rc = cli_error("detect", &err);
done:
  kiln_labels_free(labels);
  kiln_detector_free(det);
  kiln_interp_free(it);
  kiln_model_free(m);
  return rc;
}
