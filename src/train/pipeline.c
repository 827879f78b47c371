/*
 * The training pipeline (kiln_train_run, kiln/trainer.h): splits, the
 * output folder, training by the task's path (classify_tl*.c,
 * pipeline_scratch.c, pipeline_detect.c), export with labels and input
 * normalization as metadata, int8 quantization calibrated on training
 * images, float and int8 evaluation on the test split, and report.json.
 *
 * The phases after training are cheap next to it and always redone by a
 * resumed run; their outputs are written atomically, so an interrupted run
 * never leaves a half-written model.
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/file.h"
#include "kiln/data.h"
#include "kiln/detect.h"
#include "kiln/quant.h"
#include "train/pipeline_int.h"

#define DEFAULT_CALIB_IMAGES 100
#define MAX_EPOCHS 100000
#define MAX_BATCH 4096

kiln_train_settings kiln_train_preset_settings(kiln_train_preset preset, bool from_scratch) {
  const bool fast = preset == KILN_PRESET_FAST, accurate = preset == KILN_PRESET_ACCURATE;
  kiln_train_settings s;
  memset(&s, 0, sizeof s);
  s.hflip = !fast;
  if (from_scratch) {
    s.batch = 64;
    s.lr = 1e-3f;
    s.epochs = fast ? 5 : accurate ? 30 : 15;
    s.min_steps = fast ? 300 : accurate ? 2000 : 1000;
    s.dropout = accurate ? 0.3f : 0.0f;
    return s;
  }
  /* The head alone trains in microseconds per step on cached features, so
   * small datasets get many epochs; fine-tuning (accurate) runs the last
   * backbone layers at every step. */
  s.batch = 32;
  s.lr = accurate ? 1e-3f : 3e-3f;
  s.epochs = fast ? 10 : accurate ? 40 : 20;
  s.min_steps = fast ? 300 : accurate ? 600 : 1500;
  s.dropout = fast ? 0.0f : 0.2f;
  s.label_smoothing = fast ? 0.0f : 0.1f;
  s.fine_tune = accurate ? 4 : 0;
  return s;
}

kiln_train_options kiln_train_options_default(void) {
  kiln_train_options o;
  memset(&o, 0, sizeof o);
  o.task = KILN_TASK_CLASSIFY;
  o.preset = KILN_PRESET_BALANCED;
  o.fine_tune = -1;
  return o;
}

const char *kiln_train_phase_name(kiln_train_phase phase) {
  static const char *const names[] = {"prepare", "train", "export", "quantize", "evaluate", "done"};
  return phase >= 0 && phase <= KILN_PHASE_DONE ? names[phase] : "unknown";
}

static const char *preset_name(kiln_train_preset p) {
  return p == KILN_PRESET_FAST ? "fast" : p == KILN_PRESET_ACCURATE ? "accurate" : "balanced";
}

static kiln_status make_dir(const char *path, kiln_error *err) {
  if (mkdir(path, 0777) == 0 || errno == EEXIST) {
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) return KILN_OK;
  }
  return kiln_fail(err, KILN_ERR_IO, "%s: cannot create the folder (%s)", path, strerror(errno));
}

/* Options checked and the preset resolved into run->set. */
static kiln_status resolve(const kiln_dataset *ds, const kiln_train_options *opt, pl_run *run,
                           kiln_error *err) {
  if (!opt->out_dir || !opt->out_dir[0])
    return kiln_fail(err, KILN_ERR_INVALID_ARG, "train: no output folder");
  if (opt->task != KILN_TASK_CLASSIFY && opt->task != KILN_TASK_DETECT)
    return kiln_fail(err, KILN_ERR_INVALID_ARG, "train: task %d", (int)opt->task);
  if ((int32_t)ds->task != opt->task)
    return kiln_fail(err, KILN_ERR_INVALID_ARG, "train: the dataset is for %s, not %s",
                     kiln_data_task_name(ds->task), kiln_data_task_name((kiln_data_task)opt->task));
  const bool scratch = opt->from_scratch && opt->task == KILN_TASK_CLASSIFY;
  run->set = kiln_train_preset_settings(opt->preset, scratch);
  if (opt->epochs) run->set.epochs = opt->epochs;
  if (opt->batch) run->set.batch = opt->batch;
  if (opt->lr != 0.0f) run->set.lr = opt->lr;
  if (opt->fine_tune >= 0) run->set.fine_tune = opt->fine_tune;
  if (scratch) run->set.fine_tune = 0;
  if (run->set.epochs < 1 || run->set.epochs > MAX_EPOCHS)
    return kiln_fail(err, KILN_ERR_INVALID_ARG, "train: %d epochs (1..%d)", (int)run->set.epochs,
                     MAX_EPOCHS);
  if (run->set.batch < 1 || run->set.batch > MAX_BATCH)
    return kiln_fail(err, KILN_ERR_INVALID_ARG, "train: batch %d (1..%d)", (int)run->set.batch,
                     MAX_BATCH);
  if (!(run->set.lr > 0.0f && run->set.lr < 10.0f))
    return kiln_fail(err, KILN_ERR_INVALID_ARG, "train: learning rate %g", (double)run->set.lr);
  if (opt->from_scratch && opt->fine_tune > 0)
    return kiln_fail(err, KILN_ERR_INVALID_ARG, "train: --fine-tune needs a backbone, not --from-scratch");
  run->threads = opt->threads > 0 ? opt->threads : pl_eval_threads(0);
  run->n_classes = ds->n_labels;
  return KILN_OK;
}

/* The lists of training and validation images; every label needs some
 * training images. */
static kiln_status lists(kiln_dataset *ds, pl_run *run, kiln_error *err) {
  kiln_status s = pl_split_images(ds, KILN_SPLIT_TRAIN, &run->train, &run->n_train, err);
  if (s == KILN_OK) s = pl_split_images(ds, KILN_SPLIT_VAL, &run->val, &run->n_val, err);
  if (s != KILN_OK) return s;
  if (ds->task != KILN_TASK_CLASSIFY) return run->n_train ? KILN_OK
      : kiln_fail(err, KILN_ERR_INVALID_ARG, "train: no training images");
  int32_t *seen = kiln_calloc((size_t)ds->n_labels + 1, sizeof *seen);
  if (!seen) return kiln_fail(err, KILN_ERR_NOMEM, "labels");
  for (int32_t i = 0; i < run->n_train; i++) seen[ds->images[run->train[i]].label]++;
  for (int32_t l = 0; l < ds->n_labels && s == KILN_OK; l++)
    if (!seen[l])
      s = kiln_fail(err, KILN_ERR_INVALID_ARG, "train: label '%s' has no training images",
                    ds->labels[l]);
  kiln_free(seen);
  return s;
}

static kiln_status write_labels(const kiln_dataset *ds, const char *path, kiln_error *err) {
  size_t bytes = 0;
  for (int32_t i = 0; i < ds->n_labels; i++) bytes += strlen(ds->labels[i]) + 1;
  char *text = kiln_malloc(bytes + 1);
  if (!text) return kiln_fail(err, KILN_ERR_NOMEM, "%s", path);
  size_t at = 0;
  for (int32_t i = 0; i < ds->n_labels; i++) at += (size_t)sprintf(text + at, "%s\n", ds->labels[i]);
  kiln_status s = kiln_file_write_atomic(path, text, at, err);
  kiln_free(text);
  return s;
}

/* A float as the shortest decimal that reads back as it (not its double
 * expansion: 0.001, not 0.0010000000474974513). */
static json_t *float_json(float v) {
  char text[32];
  for (int digits = 6; digits <= 9; digits++) {
    snprintf(text, sizeof text, "%.*g", digits, (double)v);
    if (strtof(text, NULL) == v) break;
  }
  return json_real(strtod(text, NULL));
}

static json_t *norm_json(const kiln_image_norm *n) {
  return json_pack("{s:[f, f, f], s:[f, f, f]}", "mean", (double)n->mean[0], (double)n->mean[1],
                   (double)n->mean[2], "std", (double)n->std[0], (double)n->std[1],
                   (double)n->std[2]);
}

static json_t *config_json(const kiln_train_options *opt, const pl_run *run) {
  const bool scratch = opt->from_scratch && opt->task == KILN_TASK_CLASSIFY;
  json_t *c = json_object();
  json_object_set_new(c, "task", json_string(kiln_data_task_name((kiln_data_task)opt->task)));
  json_object_set_new(c, "mode", json_string(opt->task == KILN_TASK_DETECT ? "ssd"
                                             : scratch ? "scratch" : "transfer"));
  json_object_set_new(c, "preset", json_string(preset_name(opt->preset)));
  json_object_set_new(c, "epochs", json_integer(run->set.epochs));
  json_object_set_new(c, "batch", json_integer(run->set.batch));
  json_object_set_new(c, "lr", float_json(run->set.lr));
  json_object_set_new(c, "optimizer", json_string("adam"));
  json_object_set_new(c, "schedule", json_string("linear warmup over half an epoch, cosine decay to 0"));
  json_object_set_new(c, "hflip", json_boolean(run->set.hflip));
  json_object_set_new(c, "dropout", float_json(run->set.dropout));
  json_object_set_new(c, "label_smoothing", float_json(run->set.label_smoothing));
  json_object_set_new(c, "fine_tune", json_integer(run->set.fine_tune));
  json_object_set_new(c, "seed", json_integer((json_int_t)opt->seed));
  json_object_set_new(c, "threads", json_integer(run->threads));
  json_object_set_new(c, "split_policy",
                      json_string("the data's splits; others 80/10/10 stratified, split seed 0; "
                                  "a tenth of train as test when there is no test split"));
  return c;
}

/* The run's key: data and every setting that changes the trained weights. */
static uint64_t run_key(const kiln_dataset *ds, const kiln_train_options *opt, const pl_run *run) {
  uint64_t h = pl_dataset_key(ds);
  const int32_t ints[5] = {opt->task, opt->from_scratch, run->set.epochs, run->set.batch,
                           run->set.fine_tune};
  const float floats[3] = {run->set.lr, run->set.dropout, run->set.label_smoothing};
  h = pl_hash(h, ints, sizeof ints);
  h = pl_hash(h, floats, sizeof floats);
  h = pl_hash(h, &run->set.hflip, sizeof run->set.hflip);
  h = pl_hash(h, &opt->seed, sizeof opt->seed);
  return pl_hash_str(h, opt->feature_tensor);
}

static void phase(const kiln_train_options *opt, kiln_train_phase ph, const char *message) {
  kiln_train_progress p = pl_progress(KILN_EVENT_PHASE, ph);
  p.message = message;
  pl_report(opt->on_progress, opt->ctx, &p);
}

static kiln_status save_model(kiln_model *m, const kiln_dataset *ds, const kiln_image_norm *norm,
                              const char *path, kiln_error *err) {
  kiln_status s = kiln_trainer_set_labels(m, (const char *const *)ds->labels, ds->n_labels, err);
  if (s == KILN_OK) s = kiln_trainer_set_norm(m, norm, err);
  if (s == KILN_OK) s = kiln_model_save(m, path, err);
  return s;
}

/* Quantizes the float model, calibrated on up to n training images in a
 * seeded order (split seed 0: the same images for every training seed). */
static kiln_status quantize(const pl_run *run, const kiln_model *fm, const kiln_image_norm *norm,
                            kiln_model **out, int32_t *used, kiln_error *err) {
  *out = NULL;
  const kiln_train_options *opt = run->opt;
  int32_t n = opt->calib_images > 0 ? opt->calib_images : DEFAULT_CALIB_IMAGES;
  if (n > run->n_train) n = run->n_train;
  *used = n;
  pl_input in;
  kiln_status s = pl_input_of(fm, norm, &in, err);
  if (s != KILN_OK) return s;
  kiln_quant_options qo = kiln_quant_options_default();
  qo.n_threads = run->threads;
  qo.norm = *norm;
  qo.has_norm = true;
  kiln_quantizer *q = NULL;
  int32_t *order = kiln_malloc((size_t)run->n_train * sizeof *order);
  uint8_t *px = kiln_malloc((size_t)in.h * in.w * in.c);
  float *x = kiln_malloc((size_t)in.h * in.w * in.c * sizeof *x);
  if (!order || !px || !x) {
    s = kiln_fail(err, KILN_ERR_NOMEM, "calibration");
    goto done;
  }
  memcpy(order, run->train, (size_t)run->n_train * sizeof *order);
  kiln_rng rng;
  kiln_rng_seed(&rng, 0);
  for (int32_t i = run->n_train - 1; i > 0; i--) {
    const int32_t j = (int32_t)kiln_rng_below(&rng, (uint32_t)i + 1), t = order[i];
    order[i] = order[j];
    order[j] = t;
  }
  if ((s = kiln_quantizer_create(fm, &qo, &q, err)) != KILN_OK) goto done;
  const double t0 = pl_now();
  for (int32_t i = 0; i < n && s == KILN_OK; i++) {
    kiln_image img;
    if ((s = pl_load_image(run->ds, order[i], &img, err)) != KILN_OK) break;
    s = pl_image_pixels(&img, in.h, in.w, in.c, px, err);
    kiln_image_free(&img);
    if (s != KILN_OK) break;
    pl_pixels_to_input(px, &in, x);
    const float *inputs[1] = {x};
    s = kiln_quantizer_add_inputs(q, inputs, err);
    kiln_train_progress p = pl_progress(KILN_EVENT_ITEM, KILN_PHASE_QUANTIZE);
    p.done = i + 1;
    p.total = n;
    p.elapsed_seconds = pl_now() - t0;
    p.images_per_second = (i + 1) / (p.elapsed_seconds > 0 ? p.elapsed_seconds : 1e-9);
    p.eta_seconds = (n - i - 1) / p.images_per_second;
    pl_report(opt->on_progress, opt->ctx, &p);
  }
  if (s != KILN_OK) kiln_error_prefix(err, "calibration");
  if (s == KILN_OK) s = kiln_quantizer_finish(q, out, err);
done:
  kiln_quantizer_free(q);
  kiln_free(order);
  kiln_free(px);
  kiln_free(x);
  return s;
}

/* Evaluates one exported model on the test split into report[key]. */
static kiln_status evaluate(const pl_run *run, const kiln_model *m, json_t *report,
                            const char *key, double *accuracy, kiln_error *err) {
  kiln_model_eval_options eo;
  memset(&eo, 0, sizeof eo);
  eo.split = KILN_SPLIT_TEST;
  eo.threads = run->threads;
  eo.on_progress = run->opt->on_progress;
  eo.ctx = run->opt->ctx;
  json_t *j = NULL;
  kiln_status s;
  const char *const *names = (const char *const *)run->ds->labels;
  if (run->opt->task == KILN_TASK_CLASSIFY) {
    kiln_eval_classification c;
    s = kiln_trainer_eval_classifier(m, run->ds, &eo, &c, err);
    if (s == KILN_OK) {
      *accuracy = c.accuracy;
      s = kiln_eval_classification_to_json(&c, names, &j, err);
    }
    kiln_eval_classification_free(&c);
  } else {
    kiln_eval_detection d;
    s = kiln_trainer_eval_detector(m, run->ds, &eo, &d, err);
    if (s == KILN_OK) {
      *accuracy = d.stats[KILN_EVAL_AP];
      s = kiln_eval_detection_to_json(&d, names, &j, err);
    }
    kiln_eval_detection_free(&d);
  }
  if (s == KILN_OK) json_object_set_new(report, key, j);
  return s;
}

static json_t *history_json(const pl_fit_outcome *o) {
  json_t *a = json_array();
  for (int64_t e = 0; e < o->epochs_done; e++) {
    const pl_epoch_record *r = &o->history[e];
    json_array_append_new(a, json_pack("{s:I, s:f, s:f, s:o, s:f, s:f, s:f}", "epoch",
                                       (json_int_t)(e + 1), "train_loss", r->train_loss,
                                       "train_accuracy", r->train_accuracy, "val_accuracy",
                                       r->val_accuracy >= 0 ? json_real(r->val_accuracy) : json_null(),
                                       "lr", r->lr, "seconds", r->seconds, "images_per_second",
                                       r->images_per_second));
  }
  return a;
}

static json_t *model_json(const kiln_model *m, const char *file) {
  int64_t params = 0, bytes = 0;
  kiln_model_param_stats(m, &params, &bytes);
  return json_pack("{s:s, s:I, s:I, s:i}", "file", file, "parameters", (json_int_t)params,
                   "parameter_bytes", (json_int_t)bytes, "ops", (int)m->n_ops);
}

static kiln_status write_report(json_t *report, const char *path, kiln_error *err) {
  char *text = json_dumps(report, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10));
  if (!text) return kiln_fail(err, KILN_ERR_NOMEM, "%s", path);
  kiln_status s = kiln_file_write_atomic(path, text, strlen(text), err);
  free(text);
  return s;
}

/* Train, then export, quantize, evaluate and report. */
static kiln_status run_phases(pl_run *run, kiln_train_result *res, json_t *report,
                              kiln_error *err) {
  const kiln_train_options *opt = run->opt;
  kiln_dataset *ds = run->ds;
  const double t_start = pl_now();
  const int64_t steps = (run->n_train + run->set.batch - 1) / run->set.batch;
  pl_fit_config fit;
  memset(&fit, 0, sizeof fit);
  fit.epochs = run->set.epochs;
  fit.batch = run->set.batch;
  fit.optim = kiln_optim_default(KILN_OPTIM_ADAM, run->set.lr);
  fit.optim.schedule.warmup_steps = steps / 2;
  fit.optim.schedule.final_lr = 0.0f;
  fit.label_smoothing = run->set.label_smoothing;
  fit.seed = opt->seed;
  fit.key = run_key(ds, opt, run);
  snprintf(run->out_path, sizeof run->out_path, "%s/last.ckpt", run->ckpt_dir);
  char ckpt[4200];
  snprintf(ckpt, sizeof ckpt, "%s", run->out_path);
  fit.checkpoint = ckpt;
  fit.on_progress = opt->on_progress;
  fit.ctx = opt->ctx;
  fit.stop = opt->stop;
  pl_fit_outcome outcome;
  memset(&outcome, 0, sizeof outcome);
  kiln_model *fm = NULL, *qm = NULL;
  kiln_image_norm norm = kiln_image_norm_default();
  kiln_status s;
  if (opt->task == KILN_TASK_DETECT) s = pl_detect_train(run, &fit, &outcome, &fm, &norm, err);
  else if (opt->from_scratch) s = pl_scratch_train(run, &fit, &outcome, &fm, &norm, err);
  else s = pl_transfer_train(run, &fit, &outcome, &fm, &norm, err);
  res->resumed = outcome.resumed;
  res->epochs_done = outcome.epochs_done;
  if (s != KILN_OK || outcome.interrupted) {
    res->interrupted = s == KILN_OK;
    goto done;
  }
  json_object_set_new(run->config, "input_normalization", norm_json(&norm));
  json_object_set_new(report, "resumed", json_boolean(outcome.resumed));
  json_object_set_new(report, "history", history_json(&outcome));
  phase(opt, KILN_PHASE_EXPORT, "writing model_float.tflite");
  double t = pl_now();
  if (opt->task == KILN_TASK_DETECT) {
    kiln_detect_config dc;
    if ((s = kiln_ssd_detect_config(fm, &dc, err)) != KILN_OK) goto done;
    if ((s = kiln_detect_add_postprocess(fm, &dc, err)) != KILN_OK) goto done;
  }
  snprintf(run->out_path, sizeof run->out_path, "%s/model_float.tflite", run->out_dir);
  if ((s = save_model(fm, ds, &norm, run->out_path, err)) != KILN_OK) goto done;
  const double export_s = pl_now() - t;
  if (opt->stop && *opt->stop) {
    res->interrupted = true;
    goto done;
  }
  phase(opt, KILN_PHASE_QUANTIZE, "calibrating and writing model_int8.tflite");
  t = pl_now();
  int32_t calib = 0;
  if ((s = quantize(run, fm, &norm, &qm, &calib, err)) != KILN_OK) goto done;
  snprintf(run->out_path, sizeof run->out_path, "%s/model_int8.tflite", run->out_dir);
  if ((s = save_model(qm, ds, &norm, run->out_path, err)) != KILN_OK) goto done;
  json_object_set_new(run->config, "calibration_images", json_integer(calib));
  const double quantize_s = pl_now() - t;
  if (opt->stop && *opt->stop) {
    res->interrupted = true;
    goto done;
  }
  phase(opt, KILN_PHASE_EVALUATE, "evaluating both models on the test split");
  t = pl_now();
  json_t *ev = json_object();
  json_object_set_new(report, "evaluation", ev);
  json_object_set_new(ev, "split", json_string("test"));
  if ((s = evaluate(run, fm, ev, "float", &res->float_accuracy, err)) != KILN_OK ||
      (s = evaluate(run, qm, ev, "int8", &res->int8_accuracy, err)) != KILN_OK)
    goto done;
  json_object_set_new(ev, opt->task == KILN_TASK_DETECT ? "int8_map_drop" : "int8_accuracy_drop",
                      json_real(res->float_accuracy - res->int8_accuracy));
  json_object_set_new(report, "models", json_pack("{s:o, s:o}", "float",
                                                  model_json(fm, "model_float.tflite"), "int8",
                                                  model_json(qm, "model_int8.tflite")));
  json_object_set_new(report, "timings",
                      json_pack("{s:f, s:f, s:f, s:f, s:f, s:f}", "prepare_seconds",
                                run->prepare_seconds, "train_seconds", outcome.train_seconds,
                                "export_seconds", export_s, "quantize_seconds", quantize_s,
                                "evaluate_seconds", pl_now() - t, "session_seconds",
                                pl_now() - t_start));
  snprintf(run->out_path, sizeof run->out_path, "%s/report.json", run->out_dir);
  if ((s = write_report(report, run->out_path, err)) != KILN_OK) goto done;
  phase(opt, KILN_PHASE_DONE, run->out_dir);
done:
  pl_fit_outcome_free(&outcome);
  kiln_model_free(fm);
  kiln_model_free(qm);
  return s;
}

kiln_status kiln_train_run(kiln_dataset *ds, const kiln_train_options *opt,
                           kiln_train_result *res, kiln_error *err) {
  memset(res, 0, sizeof *res);
  res->float_accuracy = res->int8_accuracy = -1.0;
  pl_run run;
  memset(&run, 0, sizeof run);
  run.ds = ds;
  run.opt = opt;
  run.out_dir = opt->out_dir;
  kiln_status s = resolve(ds, opt, &run, err);
  if (s != KILN_OK) return s;
  json_t *report = json_object();
  if ((s = kiln_trainer_prepare_splits(ds, err)) != KILN_OK || (s = lists(ds, &run, err)) != KILN_OK)
    goto done;
  if (opt->epochs == 0 && run.set.min_steps > 0) {
    const int64_t steps = (run.n_train + run.set.batch - 1) / run.set.batch;
    const int64_t need = (run.set.min_steps + steps - 1) / steps;
    if (need > run.set.epochs) run.set.epochs = (int32_t)(need < MAX_EPOCHS ? need : MAX_EPOCHS);
  }
  run.config = config_json(opt, &run);
  snprintf(run.ckpt_dir, sizeof run.ckpt_dir, "%s/checkpoints", opt->out_dir);
  if ((s = make_dir(opt->out_dir, err)) != KILN_OK || (s = make_dir(run.ckpt_dir, err)) != KILN_OK)
    goto done;
  snprintf(run.out_path, sizeof run.out_path, "%s/labels.txt", opt->out_dir);
  if ((s = write_labels(ds, run.out_path, err)) != KILN_OK) goto done;
  json_object_set_new(report, "kiln_train_report", json_integer(1));
  json_object_set_new(report, "data", pl_dataset_json(ds, opt->data_path));
  json_object_set_new(report, "config", json_incref(run.config));
  s = run_phases(&run, res, report, err);
done:
  json_decref(run.config);
  json_decref(report);
  kiln_free(run.train);
  kiln_free(run.val);
  return s;
}
