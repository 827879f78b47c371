/* kiln quantize FLOAT.tflite --calib DIR --out INT8.tflite: post-training
 * full-integer quantization with a progress bar, a held-out evaluation and
 * an optional JSON report. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/dir.h"
#include "base/file.h"
#include "cli/cli.h"
#include "kiln/interp.h"
#include "kiln/npy.h"
#include "kiln/quant.h"

static const char *help =
    "usage: kiln quantize FLOAT.tflite --calib DIR --out INT8.tflite\n"
    "                     [--calib-count N] [--holdout N] [--method minmax|percentile|entropy]\n"
    "                     [--percentile P] [--per-channel|--per-tensor] [--io int8|uint8|float]\n"
    "                     [--allow-float] [--report REPORT.json] [--mean M --std S] [--threads N]\n\n"
    "Quantizes a float model to full integer (int8 weights and activations, int32 biases)\n"
    "following the TFLite int8 specification. Calibration runs the float model over images\n"
    "from DIR (JPEG/PNG, searched recursively, in path order), decoded and normalized exactly\n"
    "as at inference, or raw float32 input tensors (.npy). Samples after the first N are held\n"
    "out: the float and int8 models are compared on them (SQNR and cosine per output).\n\n"
    "  --calib DIR        calibration images (.jpg, .png) or input tensors (.npy)\n"
    "  --calib-count N    images used for calibration (default 100)\n"
    "  --holdout N        held-out images for the evaluation (default 20)\n"
    "  --method M         range selection: minmax (default), percentile, entropy (KL)\n"
    "  --percentile P     mass kept by the percentile method (default 99.99)\n"
    "  --per-channel      per-output-channel conv/depthwise weights (default)\n"
    "  --per-tensor       one scale per weight tensor\n"
    "  --io T             model input/output type: int8 (default), uint8 or float\n"
    "  --allow-float      keep ops kiln cannot quantize in float (default: fail, naming them)\n"
    "  --report FILE      write ranges, scales and the evaluation as JSON\n"
    "  --mean M --std S   float input normalization (x - M) / S (default 127.5, 127.5)\n"
    "  --threads N        threads for calibration (default: all cores)\n";

static const char *const sample_ext[] = {".jpg", ".jpeg", ".png", ".npy", NULL};

static bool is_npy(const char *path) {
  size_t n = strlen(path);
  return n > 4 && strcmp(path + n - 4, ".npy") == 0;
}

/* A raw calibration sample: float32 with the model input's element count. */
static kiln_status load_npy(const char *path, const kiln_model *m, kiln_npy *x, kiln_error *err) {
  kiln_status s = kiln_npy_read(path, x, err);
  if (s != KILN_OK) return s;
  const kiln_tensor *in = &m->tensors[m->inputs[0]];
  if (x->dtype != KILN_F32 || x->bytes != kiln_tensor_bytes(in)) {
    kiln_npy_free(x);
    return kiln_fail(err, KILN_ERR_INVALID_ARG, "%s: %s with %zu bytes does not match input '%s' (float32, %zu bytes)",
                     path, kiln_dtype_name(x->dtype), x->bytes, in->name, kiln_tensor_bytes(in));
  }
  return KILN_OK;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void progress(bool tty, const char *what, int done, int total) {
  if (!tty) return;
  int width = 30, fill = total ? done * width / total : width;
  fprintf(stderr, "\r%s %3d/%-3d [", what, done, total);
  for (int i = 0; i < width; i++) fputc(i < fill ? '#' : '.', stderr);
  fputc(']', stderr);
  if (done == total) fputc('\n', stderr);
  fflush(stderr);
}

static json_t *report_json(const char *in, const char *out, const kiln_quant_options *opt,
                           const kiln_quantizer *q, const kiln_quant_eval *ev, const kiln_model *m8,
                           double seconds) {
  static const char *methods[] = {"minmax", "percentile", "entropy"};
  json_t *r = json_object();
  json_object_set_new(r, "float_model", json_string(in));
  json_object_set_new(r, "int8_model", json_string(out));
  json_object_set_new(r, "method", json_string(methods[opt->method]));
  if (opt->method == KILN_CALIB_PERCENTILE) json_object_set_new(r, "percentile", json_real(opt->percentile));
  json_object_set_new(r, "per_channel", json_boolean(opt->per_channel));
  json_object_set_new(r, "io", json_string(kiln_dtype_name(opt->io_dtype)));
  json_object_set_new(r, "calibration_samples", json_integer(kiln_quantizer_samples(q)));
  json_object_set_new(r, "seconds", json_real(seconds));
  const kiln_quant_tensor_info *info;
  int32_t n = kiln_quantizer_tensor_info(q, &info);
  json_t *tensors = json_array();
  for (int32_t i = 0; i < n; i++)
    json_array_append_new(tensors, json_pack("{s:s, s:f, s:f, s:f, s:f, s:f, s:i, s:b}", "name", info[i].name,
                                             "observed_min", (double)info[i].observed_min,
                                             "observed_max", (double)info[i].observed_max,
                                             "range_min", (double)info[i].range_min, "range_max",
                                             (double)info[i].range_max, "scale", (double)info[i].scale,
                                             "zero_point", (int)info[i].zero_point, "fixed", info[i].fixed));
  json_object_set_new(r, "tensors", tensors);
  json_t *outs = json_array();
  for (int32_t i = 0; ev && i < ev->n_outputs; i++)
    json_array_append_new(outs, json_pack("{s:s, s:f, s:f, s:f}", "name", ev->outputs[i].name, "sqnr_db",
                                          isfinite(ev->outputs[i].sqnr_db) ? ev->outputs[i].sqnr_db : 999.0,
                                          "cosine", ev->outputs[i].cosine, "max_abs_error",
                                          ev->outputs[i].max_abs_error));
  json_object_set_new(r, "holdout_samples", json_integer(ev ? ev->samples : 0));
  json_object_set_new(r, "outputs", outs);
  const char *const *fl;
  int32_t nf = kiln_quantizer_float_ops(q, &fl);
  json_t *float_ops = json_array();
  for (int32_t i = 0; i < nf; i++) json_array_append_new(float_ops, json_string(fl[i]));
  json_object_set_new(r, "float_ops", float_ops);
  json_t *ops = json_object();
  for (int32_t i = 0; i < m8->n_ops; i++) {
    const kiln_op *op = &m8->ops[i];
    const char *name = op->code == KILN_OP_CUSTOM ? op->custom_code : kiln_opcode_name(op->code);
    json_t *c = json_object_get(ops, name);
    json_object_set_new(ops, name, json_integer(c ? json_integer_value(c) + 1 : 1));
  }
  json_object_set_new(r, "int8_model_ops", ops);
  return r;
}

typedef struct qargs {
  const char *in, *out, *calib, *report;
  int64_t count, holdout, threads;
  kiln_quant_options opt;
} qargs;

static int parse(int argc, char **argv, qargs *a) {
  cli_args c = {argc, argv, 1, "quantize"};
  const char *v;
  bool bad = false;
  float mean = 127.5f, std = 127.5f;
  a->count = 100;
  a->holdout = 20;
  a->opt = kiln_quant_options_default();
  while (c.i < argc) {
    if (cli_flag(&c, "--help") || cli_flag(&c, "-h")) {
      fputs(help, stdout);
      return -1;
    }
    if (cli_flag_value(&c, "--calib", &v, &bad)) {
      a->calib = v;
    } else if (cli_flag_value(&c, "--out", &v, &bad)) {
      a->out = v;
    } else if (cli_flag_value(&c, "--report", &v, &bad)) {
      a->report = v;
    } else if (cli_flag_value(&c, "--calib-count", &v, &bad)) {
      if (!bad && !cli_parse_int("quantize", "--calib-count", v, 1, 100000, &a->count)) return CLI_USAGE;
    } else if (cli_flag_value(&c, "--holdout", &v, &bad)) {
      if (!bad && !cli_parse_int("quantize", "--holdout", v, 0, 100000, &a->holdout)) return CLI_USAGE;
    } else if (cli_flag_value(&c, "--threads", &v, &bad)) {
      if (!bad && !cli_parse_int("quantize", "--threads", v, 1, 1024, &a->threads)) return CLI_USAGE;
    } else if (cli_flag_value(&c, "--method", &v, &bad)) {
      if (bad) break;
      if (strcmp(v, "minmax") == 0) a->opt.method = KILN_CALIB_MINMAX;
      else if (strcmp(v, "percentile") == 0) a->opt.method = KILN_CALIB_PERCENTILE;
      else if (strcmp(v, "entropy") == 0) a->opt.method = KILN_CALIB_ENTROPY;
      else return cli_usage_error("quantize", "--method: '%s' is not minmax, percentile or entropy", v);
    } else if (cli_flag_value(&c, "--percentile", &v, &bad)) {
      if (!bad && !cli_parse_float("quantize", "--percentile", v, &a->opt.percentile)) return CLI_USAGE;
    } else if (cli_flag(&c, "--per-channel")) {
      a->opt.per_channel = true;
    } else if (cli_flag(&c, "--per-tensor")) {
      a->opt.per_channel = false;
    } else if (cli_flag(&c, "--allow-float")) {
      a->opt.allow_float = true;
    } else if (cli_flag_value(&c, "--io", &v, &bad)) {
      if (bad) break;
      if (strcmp(v, "int8") == 0) a->opt.io_dtype = KILN_I8;
      else if (strcmp(v, "uint8") == 0) a->opt.io_dtype = KILN_U8;
      else if (strcmp(v, "float") == 0) a->opt.io_dtype = KILN_F32;
      else return cli_usage_error("quantize", "--io: '%s' is not int8, uint8 or float", v);
    } else if (cli_flag_value(&c, "--mean", &v, &bad)) {
      if (!bad && !cli_parse_float("quantize", "--mean", v, &mean)) return CLI_USAGE;
      a->opt.has_norm = true;
    } else if (cli_flag_value(&c, "--std", &v, &bad)) {
      if (!bad && !cli_parse_float("quantize", "--std", v, &std)) return CLI_USAGE;
      a->opt.has_norm = true;
    } else if (argv[c.i][0] == '-') {
      return cli_usage_error("quantize", "unknown option '%s'", argv[c.i]);
    } else if (!a->in) {
      a->in = argv[c.i++];
    } else {
      return cli_usage_error("quantize", "unexpected argument '%s'", argv[c.i]);
    }
    if (bad) return CLI_USAGE;
  }
  if (bad) return CLI_USAGE;
  if (!a->in) return cli_usage_error("quantize", "missing FLOAT.tflite");
  if (!a->calib) return cli_usage_error("quantize", "missing --calib DIR");
  if (!a->out) return cli_usage_error("quantize", "missing --out INT8.tflite");
  if (!(std != 0.0f)) return cli_usage_error("quantize", "--std must not be 0");
  a->opt.norm = (kiln_image_norm){{mean, mean, mean}, {std, std, std}};
  a->opt.n_threads = (int32_t)a->threads;
  return CLI_OK;
}

int cmd_quantize(int argc, char **argv) {
  qargs a;
  memset(&a, 0, sizeof a);
  int rc = parse(argc, argv, &a);
  if (rc != CLI_OK) return rc < 0 ? CLI_OK : rc;

  const bool tty = isatty(2);
  const double t0 = now_s();
  kiln_error err;
  kiln_model *m = NULL, *m8 = NULL;
  kiln_quantizer *q = NULL;
  kiln_file_list files = {0};
  kiln_image *held = NULL;
  kiln_npy *held_raw = NULL;
  const float **held_ptr = NULL;
  int32_t n_held = 0;
  kiln_quant_eval ev = {0};
  rc = CLI_FAIL;
  if (kiln_model_load(a.in, &m, &err) != KILN_OK) goto fail;
  if (kiln_list_files(a.calib, sample_ext, 1000000, &files, &err) != KILN_OK) goto fail;
  if (files.count == 0) {
    kiln_fail(&err, KILN_ERR_INVALID_ARG, "%s: no calibration samples (.jpg, .jpeg, .png, .npy) found", a.calib);
    goto fail;
  }
  const bool raw = is_npy(files.paths[0]);
  for (size_t i = 0; i < files.count; i++) {
    if (is_npy(files.paths[i]) != raw) {
      kiln_fail(&err, KILN_ERR_INVALID_ARG, "%s: mixes images and .npy tensors", a.calib);
      goto fail;
    }
  }
  if (raw && m->n_inputs != 1) {
    kiln_fail(&err, KILN_ERR_UNSUPPORTED, "%s: .npy calibration needs a single-input model", a.in);
    goto fail;
  }
  if (kiln_quantizer_create(m, &a.opt, &q, &err) != KILN_OK) {
    kiln_error_prefix(&err, "%s", a.in);
    goto fail;
  }
  size_t n_calib = files.count < (size_t)a.count ? files.count : (size_t)a.count;
  for (size_t i = 0; i < n_calib; i++) {
    kiln_status s;
    if (raw) {
      kiln_npy x;
      if (load_npy(files.paths[i], m, &x, &err) != KILN_OK) goto fail;
      const float *inputs[1] = {x.data};
      s = kiln_quantizer_add_inputs(q, inputs, &err);
      kiln_npy_free(&x);
    } else {
      kiln_image img = {0};
      if (kiln_image_decode_file(files.paths[i], NULL, &img, &err) != KILN_OK) goto fail;
      s = kiln_quantizer_add_image(q, &img, &err);
      kiln_image_free(&img);
    }
    if (s != KILN_OK) {
      kiln_error_prefix(&err, "%s", files.paths[i]);
      goto fail;
    }
    progress(tty, "calibrating", (int)i + 1, (int)n_calib);
  }
  if (kiln_quantizer_finish(q, &m8, &err) != KILN_OK) goto fail;
  /* The int8 model must run in kiln before it is written. */
  kiln_interp *check;
  if (kiln_interp_create(m8, NULL, &check, &err) != KILN_OK) {
    kiln_error_prefix(&err, "the quantized model does not prepare");
    goto fail;
  }
  kiln_interp_free(check);
  size_t n_hold = files.count - n_calib < (size_t)a.holdout ? files.count - n_calib : (size_t)a.holdout;
  if (n_hold > 0 && m->n_inputs == 1 && !raw) {
    held = calloc(n_hold, sizeof *held);
    if (!held) {
      kiln_fail(&err, KILN_ERR_NOMEM, "out of memory");
      goto fail;
    }
    for (size_t i = 0; i < n_hold; i++) {
      if (kiln_image_decode_file(files.paths[n_calib + i], NULL, &held[n_held], &err) != KILN_OK) goto fail;
      n_held++;
    }
    if (kiln_quant_evaluate(m, m8, held, n_held, a.opt.has_norm ? &a.opt.norm : NULL, &ev, &err) != KILN_OK)
      goto fail;
  } else if (n_hold > 0 && raw) {
    held_raw = calloc(n_hold, sizeof *held_raw);
    held_ptr = calloc(n_hold, sizeof *held_ptr);
    if (!held_raw || !held_ptr) {
      kiln_fail(&err, KILN_ERR_NOMEM, "out of memory");
      goto fail;
    }
    for (size_t i = 0; i < n_hold; i++) {
      if (load_npy(files.paths[n_calib + i], m, &held_raw[n_held], &err) != KILN_OK) goto fail;
      held_ptr[n_held] = held_raw[n_held].data;
      n_held++;
    }
    if (kiln_quant_evaluate_inputs(m, m8, held_ptr, n_held, &ev, &err) != KILN_OK) goto fail;
  }
  if (kiln_model_save(m8, a.out, &err) != KILN_OK) goto fail;
  const double seconds = now_s() - t0;
  const char *const *fl;
  int32_t n_float = kiln_quantizer_float_ops(q, &fl);
  fprintf(stderr, "kiln quantize: wrote %s: %d ops, calibrated on %zu samples in %.1f s\n", a.out,
          (int)m8->n_ops, n_calib, seconds);
  for (int32_t i = 0; i < ev.n_outputs; i++)
    fprintf(stderr, "  %-40s SQNR %6.2f dB  cosine %.5f  (%d held-out samples)\n", ev.outputs[i].name,
            ev.outputs[i].sqnr_db, ev.outputs[i].cosine, (int)ev.samples);
  for (int32_t i = 0; i < n_float; i++) fprintf(stderr, "  kept in float: %s\n", fl[i]);
  if (a.report) {
    json_t *r = report_json(a.in, a.out, &a.opt, q, n_held ? &ev : NULL, m8, seconds);
    char *text = json_dumps(r, JSON_INDENT(2) | JSON_REAL_PRECISION(7));
    json_decref(r);
    if (!text) {
      kiln_fail(&err, KILN_ERR_NOMEM, "%s: out of memory writing the report", a.report);
      goto fail;
    }
    if (kiln_file_write_atomic(a.report, text, strlen(text), &err) != KILN_OK) {
      free(text);
      goto fail;
    }
    free(text);
  }
  rc = CLI_OK;
  goto done;
fail:
  rc = cli_error("quantize", &err);
done:
  kiln_quant_eval_free(&ev);
  for (int32_t i = 0; i < n_held; i++) {
    if (held) kiln_image_free(&held[i]);
    if (held_raw) kiln_npy_free(&held_raw[i]);
  }
  free(held);
  free(held_raw);
  free(held_ptr);
  kiln_file_list_free(&files);
  kiln_quantizer_free(q);
  kiln_model_free(m8);
  kiln_model_free(m);
  return rc;
}
