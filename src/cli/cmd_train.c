/* kiln train: a dataset in, a float and an int8 model with a report out
 * (kiln/trainer.h does the work; this file parses flags, imports the
 * dataset, shows progress and turns SIGTERM / SIGINT into a checkpoint). */
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "kiln/data.h"
#include "kiln/trainer.h"

static const char *help =
    "usage: kiln train --task classify|detect --data PATH --out DIR [--format F]\n"
    "                  [--preset fast|balanced|accurate] [--epochs N] [--batch B] [--lr X]\n"
    "                  [--backbone MODEL] [--feature-tensor NAME] [--from-scratch]\n"
    "                  [--fine-tune N] [--seed S] [--threads N] [--calib-images N]\n"
    "                  [--progress-json]\n\n"
    "Trains an image classifier (or detector) on the labelled images at PATH (any format\n"
    "'kiln data check' reads) and writes into DIR:\n"
    "  model_float.tflite  float32 model, labels embedded as metadata (\"kiln_labels\")\n"
    "  model_int8.tflite   full-integer int8 model (kiln's quantizer, calibrated on\n"
    "                      training images)\n"
    "  labels.txt          class names, one per line\n"
    "  report.json         dataset summary, settings, per-epoch history, timings, and\n"
    "                      float and int8 accuracy, per-class precision/recall and\n"
    "                      confusion matrix on the test split\n"
    "  checkpoints/        the run's last checkpoint (every epoch, and on SIGTERM/SIGINT)\n"
    "Running the same command on the same DIR resumes an interrupted run exactly.\n"
    "Images without a split get one (80/10/10, stratified, split seed 0).\n\n"
    "Classification transfer-learns by default: the MobileNet V2 inside the shared SSD\n"
    "($KILN_MODELS/ssd_mobilenet_v2_oidv4_fp16.tflite) computes each image's features\n"
    "once; a dense softmax head trains on them. --from-scratch trains a small CNN instead\n"
    "(for small images such as Fashion-MNIST).\n\n"
    "  --task T            classify (default) or detect\n"
    "  --data PATH         folder, archive or annotation file\n"
    "  --format F          force the dataset format (see 'kiln data --help')\n"
    "  --out DIR           output folder (created)\n"
    "  --preset P          fast, balanced (default) or accurate: epochs, learning rate,\n"
    "                      flips, dropout, label smoothing, fine-tuning\n"
    "  --epochs N          override the preset's epochs\n"
    "  --batch B           override the preset's batch size\n"
    "  --lr X              override the preset's learning rate (Adam, warmup + cosine)\n"
    "  --backbone MODEL    another pretrained .tflite (float or int8; int8 is dequantized)\n"
    "  --feature-tensor N  the backbone tensor to train on (default: the input of its\n"
    "                      global pooling; for the shared SSD its last 10x10x1280 map)\n"
    "  --from-scratch      train a small CNN from random weights\n"
    "  --fine-tune N       also train the backbone's last N conv layers\n"
    "  --seed S            weights, data order, augmentation (default 0)\n"
    "  --threads N         worker threads (default: all cores)\n"
    "  --calib-images N    quantizer calibration images (default 100)\n"
    "  --progress-json     one JSON line per step, epoch and phase on stdout\n";

static volatile sig_atomic_t stop_signal = 0;

static void on_signal(int sig) { stop_signal = sig; }

typedef struct train_args {
  const char *data, *format;
  bool json;
  kiln_train_options opt;
} train_args;

static int parse(int argc, char **argv, train_args *a) {
  cli_args c = {argc, argv, 1, "train"};
  const char *v;
  bool bad = false;
  int64_t n;
  a->opt = kiln_train_options_default();
  while (c.i < argc) {
    if (cli_flag(&c, "--help") || cli_flag(&c, "-h")) {
      fputs(help, stdout);
      return -1;
    }
    if (cli_flag_value(&c, "--task", &v, &bad)) {
      if (bad) break;
      if (strcmp(v, "classify") == 0) a->opt.task = KILN_TASK_CLASSIFY;
      else if (strcmp(v, "detect") == 0) a->opt.task = KILN_TASK_DETECT;
      else return cli_usage_error("train", "--task: '%s' is not classify or detect", v);
    } else if (cli_flag_value(&c, "--data", &v, &bad)) {
      a->data = v;
    } else if (cli_flag_value(&c, "--format", &v, &bad)) {
      a->format = v;
    } else if (cli_flag_value(&c, "--out", &v, &bad)) {
      a->opt.out_dir = v;
    } else if (cli_flag_value(&c, "--preset", &v, &bad)) {
      if (bad) break;
      if (strcmp(v, "fast") == 0) a->opt.preset = KILN_PRESET_FAST;
      else if (strcmp(v, "balanced") == 0) a->opt.preset = KILN_PRESET_BALANCED;
      else if (strcmp(v, "accurate") == 0) a->opt.preset = KILN_PRESET_ACCURATE;
      else return cli_usage_error("train", "--preset: '%s' is not fast, balanced or accurate", v);
    } else if (cli_flag_value(&c, "--epochs", &v, &bad)) {
      if (!bad && !cli_parse_int("train", "--epochs", v, 1, 100000, &n)) return CLI_USAGE;
      a->opt.epochs = (int32_t)n;
    } else if (cli_flag_value(&c, "--batch", &v, &bad)) {
      if (!bad && !cli_parse_int("train", "--batch", v, 1, 4096, &n)) return CLI_USAGE;
      a->opt.batch = (int32_t)n;
    } else if (cli_flag_value(&c, "--lr", &v, &bad)) {
      if (!bad && !cli_parse_float("train", "--lr", v, &a->opt.lr)) return CLI_USAGE;
      if (!bad && !(a->opt.lr > 0.0f && a->opt.lr < 10.0f))
        return cli_usage_error("train", "--lr: '%s' is not in (0, 10)", v);
    } else if (cli_flag_value(&c, "--backbone", &v, &bad)) {
      a->opt.backbone = v;
    } else if (cli_flag_value(&c, "--feature-tensor", &v, &bad)) {
      a->opt.feature_tensor = v;
    } else if (cli_flag(&c, "--from-scratch")) {
      a->opt.from_scratch = true;
    } else if (cli_flag_value(&c, "--fine-tune", &v, &bad)) {
      if (!bad && !cli_parse_int("train", "--fine-tune", v, 0, 1000, &n)) return CLI_USAGE;
      a->opt.fine_tune = (int32_t)n;
    } else if (cli_flag_value(&c, "--seed", &v, &bad)) {
      if (!bad && !cli_parse_int("train", "--seed", v, 0, INT64_MAX, &n)) return CLI_USAGE;
      a->opt.seed = (uint64_t)n;
    } else if (cli_flag_value(&c, "--threads", &v, &bad)) {
      if (!bad && !cli_parse_int("train", "--threads", v, 1, 1024, &n)) return CLI_USAGE;
      a->opt.threads = (int32_t)n;
    } else if (cli_flag_value(&c, "--calib-images", &v, &bad)) {
      if (!bad && !cli_parse_int("train", "--calib-images", v, 1, 100000, &n)) return CLI_USAGE;
      a->opt.calib_images = (int32_t)n;
    } else if (cli_flag(&c, "--progress-json")) {
      a->json = true;
    } else {
      return cli_usage_error("train", "unknown argument '%s'", argv[c.i]);
    }
    if (bad) return CLI_USAGE;
  }
  if (bad) return CLI_USAGE;
  if (!a->data) return cli_usage_error("train", "missing --data PATH");
  if (!a->opt.out_dir) return cli_usage_error("train", "missing --out DIR");
  if (a->opt.from_scratch && (a->opt.backbone || a->opt.feature_tensor))
    return cli_usage_error("train", "--from-scratch takes no --backbone or --feature-tensor");
  if (a->opt.from_scratch && a->opt.task == KILN_TASK_DETECT)
    return cli_usage_error("train", "--from-scratch is for classification");
  a->opt.data_path = a->data;
  return CLI_OK;
}

/* ---- Progress ---- */

typedef struct view {
  bool json, tty;
  int last_width; /* of the bar line on the terminal */
} view;

static const char *event_name(kiln_train_event e) {
  static const char *const names[] = {"phase", "progress", "step", "epoch", "checkpoint"};
  return e >= 0 && e <= KILN_EVENT_CHECKPOINT ? names[e] : "unknown";
}

/* Prints one JSON object as a line on stdout and releases it. */
static void print_line(json_t *o) {
  char *text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(7));
  if (text) printf("%s\n", text);
  free(text);
  json_decref(o);
  fflush(stdout);
}

static void put_number(json_t *o, const char *key, double v, bool integer) {
  if (v < 0) return;
  json_object_set_new(o, key, integer ? json_integer((json_int_t)v) : json_real(v));
}

static void print_json(const kiln_train_progress *p) {
  json_t *o = json_object();
  json_object_set_new(o, "event", json_string(event_name(p->event)));
  json_object_set_new(o, "phase", json_string(kiln_train_phase_name(p->phase)));
  if (p->message) json_object_set_new(o, "message", json_string(p->message));
  put_number(o, "epoch", (double)p->epoch, true);
  put_number(o, "epochs", (double)p->epochs, true);
  put_number(o, "step", (double)p->step, true);
  put_number(o, "steps", (double)p->steps, true);
  put_number(o, "done", (double)p->done, true);
  put_number(o, "total", (double)p->total, true);
  put_number(o, "loss", p->loss, false);
  put_number(o, "accuracy", p->accuracy, false);
  put_number(o, "val_accuracy", p->val_accuracy, false);
  put_number(o, "images_per_second", p->images_per_second, false);
  put_number(o, "elapsed_seconds", p->elapsed_seconds, false);
  put_number(o, "eta_seconds", p->eta_seconds, false);
  put_number(o, "lr", (double)p->lr, false);
  print_line(o);
}

static void clear_bar(view *v) {
  if (v->last_width) fprintf(stderr, "\r%*s\r", v->last_width, "");
  v->last_width = 0;
}

static void eta_text(double s, char *buf, size_t cap) {
  if (s < 0) snprintf(buf, cap, "--:--");
  else snprintf(buf, cap, "%d:%02d", (int)(s / 60), (int)s % 60);
}

static void print_bar(view *v, const kiln_train_progress *p) {
  char line[256], eta[32], bar[31];
  const double frac = p->total > 0 ? (double)p->done / (double)p->total : 0.0;
  const int fill = (int)(frac * 30);
  for (int i = 0; i < 30; i++) bar[i] = i < fill ? '#' : '.';
  bar[30] = '\0';
  eta_text(p->eta_seconds, eta, sizeof eta);
  int n;
  if (p->event == KILN_EVENT_STEP)
    n = p->accuracy >= 0
            ? snprintf(line, sizeof line,
                       "train epoch %lld/%lld [%s] loss %.4f acc %.1f%% %.0f img/s ETA %s",
                       (long long)p->epoch, (long long)p->epochs, bar, p->loss,
                       100.0 * p->accuracy, p->images_per_second, eta)
            : snprintf(line, sizeof line, "train epoch %lld/%lld [%s] loss %.4f %.0f img/s ETA %s",
                       (long long)p->epoch, (long long)p->epochs, bar, p->loss,
                       p->images_per_second, eta);
  else
    n = snprintf(line, sizeof line, "%s %lld/%lld [%s] %.0f img/s ETA %s",
                 kiln_train_phase_name(p->phase), (long long)p->done, (long long)p->total, bar,
                 p->images_per_second, eta);
  if (n < 0 || n >= (int)sizeof line) n = (int)strlen(line);
  fprintf(stderr, "\r%s%*s", line, v->last_width > n ? v->last_width - n : 0, "");
  v->last_width = n;
  fflush(stderr);
}

static void on_progress(void *ctx, const kiln_train_progress *p) {
  view *v = ctx;
  if (v->json) print_json(p);
  const bool live = p->event == KILN_EVENT_STEP || p->event == KILN_EVENT_ITEM;
  if (live) {
    if (v->tty) print_bar(v, p);
    return;
  }
  if (v->tty) clear_bar(v);
  if (p->event == KILN_EVENT_PHASE && p->message)
    fprintf(stderr, "%s: %s\n", kiln_train_phase_name(p->phase), p->message);
  else if (p->event == KILN_EVENT_EPOCH) {
    fprintf(stderr, "epoch %lld/%lld  loss %.4f", (long long)p->epoch, (long long)p->epochs,
            p->loss);
    if (p->accuracy >= 0) fprintf(stderr, "  train %.2f%%", 100.0 * p->accuracy);
    if (p->val_accuracy >= 0) fprintf(stderr, "  val %.2f%%", 100.0 * p->val_accuracy);
    fprintf(stderr, "  %.1f s  %.0f img/s  lr %.2e\n", p->elapsed_seconds, p->images_per_second,
            (double)p->lr);
  }
}

static void print_problems(const kiln_dataset *ds) {
  for (int32_t i = 0; i < ds->n_problems; i++)
    fprintf(stderr, "%s: %s\n",
            kiln_data_issue_severity(ds->problems[i].issue) == KILN_DATA_ERROR ? "error" : "warning",
            ds->problems[i].message);
}

int cmd_train(int argc, char **argv) {
  train_args a;
  memset(&a, 0, sizeof a);
  int rc = parse(argc, argv, &a);
  if (rc != CLI_OK) return rc < 0 ? CLI_OK : rc;
  kiln_data_options dopt = kiln_data_options_default();
  dopt.threads = a.opt.threads;
  if (a.format && !kiln_data_format_parse(a.format, &dopt.format))
    return cli_usage_error("train", "--format: unknown format '%s'", a.format);
  kiln_error err;
  kiln_dataset *ds = NULL;
  kiln_status s = kiln_data_import(a.data, &dopt, &ds, &err);
  if (ds) print_problems(ds);
  if (s != KILN_OK) {
    kiln_dataset_free(ds);
    return cli_error("train", &err);
  }
  view v = {a.json, isatty(STDERR_FILENO) != 0, 0};
  a.opt.on_progress = on_progress;
  a.opt.ctx = &v;
  a.opt.stop = &stop_signal;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  kiln_train_result res;
  s = kiln_train_run(ds, &a.opt, &res, &err);
  if (v.tty) clear_bar(&v);
  kiln_dataset_free(ds);
  if (s != KILN_OK) return cli_error("train", &err);
  if (res.interrupted) {
    const int sig = stop_signal ? (int)stop_signal : SIGTERM;
    const char *name = sig == SIGINT ? "SIGINT" : "SIGTERM";
    if (a.json)
      print_line(json_pack("{s:s, s:s, s:I}", "event", "interrupted", "signal", name,
                           "epochs_done", (json_int_t)res.epochs_done));
    fprintf(stderr,
            "kiln train: stopped by %s after %lld finished epoch(s); the checkpoint is in "
            "%s/checkpoints; run the same command again to resume\n",
            name, (long long)res.epochs_done, a.opt.out_dir);
    return 128 + sig;
  }
  if (a.json) {
    print_line(json_pack("{s:s, s:s, s:b, s:f, s:f}", "event", "done", "out", a.opt.out_dir,
                         "resumed", res.resumed, "float_accuracy", res.float_accuracy,
                         "int8_accuracy", res.int8_accuracy));
  } else {
    const bool det = a.opt.task == KILN_TASK_DETECT;
    printf("%s: float %s %.4f, int8 %.4f on the test split\n", a.opt.out_dir,
           det ? "mAP@[.5:.95]" : "accuracy", res.float_accuracy, res.int8_accuracy);
    printf("wrote %s/model_float.tflite, model_int8.tflite, labels.txt, report.json\n",
           a.opt.out_dir);
  }
  return CLI_OK;
}
