/*
 * kiln/trainer.h: the training pipeline, from a dataset to a float and an
 * int8 model with a report (`kiln train`, and the studio's job runner).
 *
 *   kiln_dataset *ds;                                  // kiln/data.h
 *   kiln_data_import("pets/", &dopt, &ds, &err);       // the caller shows ds->problems
 *   kiln_train_options opt = kiln_train_options_default();
 *   opt.out_dir = "out/pets";
 *   opt.on_progress = show;                            // per step, epoch and phase
 *   opt.stop = &stop_flag;                             // set by a SIGTERM handler
 *   kiln_train_result res;
 *   if (kiln_train_run(ds, &opt, &res, &err) != KILN_OK) ...
 *   if (res.interrupted) ... // checkpoint saved; the same call resumes
 *
 * What kiln_train_run writes into out_dir:
 *   model_float.tflite  float32 model, input [1,H,W,C] (C 3, or 1 for grey
 *                       data trained from scratch) with real values
 *                       (pixel - mean) / std, output [1,classes]
 *                       probabilities (SOFTMAX); metadata "kiln_labels"
 *                       (labels.txt's bytes) and "kiln_input_norm"
 *                       ({"mean": [..], "std": [..]})
 *   model_int8.tflite   the same through kiln's quantizer (int8 input and
 *                       output, per-channel weights), calibrated on up to
 *                       calib_images training images prepared exactly as
 *                       at inference; same metadata
 *   labels.txt          one class name per line, class i on line i
 *   report.json         dataset summary, configuration, per-epoch history,
 *                       timings, float and int8 metrics on the test split
 *   checkpoints/        last.ckpt (kiln_checkpoint_save plus the pipeline's
 *                       position in the epoch) and features.bin (the cached
 *                       backbone features of the transfer path)
 *
 * Classification has two paths.
 * Transfer learning (default): the backbone is a pretrained .tflite cut at
 * a feature tensor (default: the MobileNet V2 inside the shared SSD,
 * $KILN_MODELS/ssd_mobilenet_v2_oidv4_fp16.tflite, cut at its last feature
 * map, 10x10x1280, before the SSD's extra layers). int8/uint8 backbones are
 * dequantized to float first (kiln_trainer_dequantize). Every image's
 * feature map is computed once by kiln's interpreter and averaged over
 * height and width by the model's own MEAN op (plus a second, left-right
 * mirrored copy when flips are on); the head (dropout, dense, softmax
 * cross-entropy) trains on those cached vectors. With fine_tune = N the
 * last N conv / depthwise layers of the backbone (moved back to the start
 * of a residual block when N lands inside one) become engine layers with
 * their pretrained weights and train with the head, on cached feature maps
 * of the tensor before them. Export: the backbone sub-graph (with the
 * fine-tuned weights) + MEAN + FULLY_CONNECTED + SOFTMAX.
 * From scratch: a small CNN (conv32-pool-conv64-pool-dense128-dense, as
 * bench/train/fmnist.c) on the images resized to one input size (the
 * images' own size when they all share one of at most 128 pixels a side,
 * else 64x64), grey when the data is grey.
 *
 * Splits: images without a split get one (kiln_dataset_split, 80/10/10,
 * split seed 0, independent of the training seed so that every run and
 * `kiln eval` use the same test images); when the data has no test images
 * a tenth of train becomes test (kiln_dataset_carve, seed 0). The val split
 * (when there is one) is evaluated after every epoch; the test split at the
 * end, with the exported models.
 *
 * Determinism and resume: for the same data, options and seed the models
 * are bit-identical, whatever the thread count (kiln's float kernels and
 * the engine cut work independently of threads). A checkpoint is written
 * after every epoch and when *stop becomes non-zero (between steps); a run
 * with the same out_dir continues from it exactly (same final weights as
 * an uninterrupted run). A checkpoint of another run (other data, options
 * or seed) is refused with a message.
 */
#ifndef KILN_TRAINER_H
#define KILN_TRAINER_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "kiln/base.h"
#include "kiln/eval.h"
#include "kiln/image.h"
#include "kiln/model.h"

#ifdef __cplusplus
extern "C" {
#endif

struct kiln_dataset; /* kiln/data.h */

typedef enum kiln_train_preset {
  KILN_PRESET_FAST = 0,     /* few epochs, no augmentation, no fine-tuning */
  KILN_PRESET_BALANCED = 1, /* the default */
  KILN_PRESET_ACCURATE = 2  /* more epochs; transfer: fine-tunes the last layers */
} kiln_train_preset;

/* What a preset chooses (kiln_train_preset_settings). */
typedef struct kiln_train_settings {
  int32_t epochs;
  int32_t min_steps;   /* without an explicit epoch count, small datasets get more
                        * epochs: at least this many optimizer steps in all */
  int32_t batch;
  float lr;            /* Adam, linear warmup (half an epoch) then cosine to 0 */
  bool hflip;          /* left-right flips (transfer: a second cached feature vector) */
  float dropout;       /* before the classifier's dense layer; 0: none */
  float label_smoothing;
  int32_t fine_tune;   /* transfer: conv layers of the backbone trained too */
} kiln_train_settings;

/* The preset's settings for the transfer (from_scratch false) or the
 * from-scratch path. Unknown presets give the balanced settings. */
kiln_train_settings kiln_train_preset_settings(kiln_train_preset preset, bool from_scratch);

typedef enum kiln_train_phase {
  KILN_PHASE_PREPARE = 0, /* loading images, computing backbone features */
  KILN_PHASE_TRAIN,
  KILN_PHASE_EXPORT,
  KILN_PHASE_QUANTIZE,
  KILN_PHASE_EVALUATE,
  KILN_PHASE_DONE
} kiln_train_phase;

/* "prepare", "train", "export", "quantize", "evaluate", "done". */
const char *kiln_train_phase_name(kiln_train_phase phase);

typedef enum kiln_train_event {
  KILN_EVENT_PHASE = 0, /* a phase starts (message says what it does) */
  KILN_EVENT_ITEM,      /* prepare / quantize / evaluate: done of total items */
  KILN_EVENT_STEP,      /* a training step */
  KILN_EVENT_EPOCH,     /* an epoch ended (val_accuracy set) */
  KILN_EVENT_CHECKPOINT /* a checkpoint was written (message: the path) */
} kiln_train_event;

/* One progress report. Values that do not apply are -1. */
typedef struct kiln_train_progress {
  kiln_train_event event;
  kiln_train_phase phase;
  const char *message;       /* phase and checkpoint events; else NULL */
  int64_t done, total;       /* items of the phase, or steps of the whole training */
  int64_t epoch, epochs;     /* 1-based epoch being trained */
  int64_t step, steps;       /* 1-based step within the epoch, steps per epoch */
  double loss;               /* mean training loss of the epoch so far */
  double accuracy;           /* training accuracy of the epoch so far */
  double val_accuracy;       /* epoch events with a val split */
  double images_per_second;  /* of the phase so far (training: this epoch) */
  double elapsed_seconds;    /* of the phase so far */
  double eta_seconds;        /* until the phase ends */
  float lr;
} kiln_train_progress;

typedef struct kiln_train_options {
  int32_t task;              /* KILN_TASK_CLASSIFY or KILN_TASK_DETECT (kiln/data.h) */
  const char *out_dir;       /* created when missing */
  const char *data_path;     /* for the report only; may be NULL */
  kiln_train_preset preset;
  /* Overrides of the preset; 0 (fine_tune: -1) keeps the preset's value.
   * An explicit epoch count is used as given (no min_steps raise). */
  int32_t epochs;
  int32_t batch;
  float lr;
  int32_t fine_tune;
  bool from_scratch;
  const char *backbone;       /* NULL: the shared SSD in $KILN_MODELS (else ../shared/models) */
  const char *feature_tensor; /* NULL: the default backbone's last feature map, else the
                               * input of the backbone's last global pooling (MEAN or
                               * AVERAGE_POOL_2D to 1x1); an exact tensor name or one of
                               * its ';'-separated parts */
  uint64_t seed;              /* weights, data order, dropout */
  int32_t threads;            /* 0: all cores */
  int32_t calib_images;       /* quantizer calibration images from train; 0: 100 */
  void (*on_progress)(void *ctx, const kiln_train_progress *p); /* NULL: none */
  void *ctx;
  volatile sig_atomic_t *stop; /* non-zero: checkpoint and return (res->interrupted) */
} kiln_train_options;

/* Task classify, balanced preset, fine_tune -1, everything else 0/NULL. */
kiln_train_options kiln_train_options_default(void);

typedef struct kiln_train_result {
  bool interrupted;      /* *stop was set: a checkpoint holds the run (nothing exported
                          * when it came during training) */
  bool resumed;          /* continued from a checkpoint */
  int64_t epochs_done;
  double float_accuracy; /* on the test split (classification); -1 when not reached */
  double int8_accuracy;
} kiln_train_result;

/* Runs the whole pipeline on ds (imported and usable; images without a
 * split are given one, see "Splits", so ds is modified) and writes out_dir
 * as described above. Detection: the task is accepted but the SSD training
 * core is not in this build yet: KILN_ERR_UNSUPPORTED "detection training
 * is not available".
 * @retval KILN_OK  finished, or interrupted (res->interrupted)
 * @retval KILN_ERR_INVALID_ARG  options out of range, a dataset of another
 *   task, labels missing from train, a checkpoint of another run
 * @retval KILN_ERR_IO / FORMAT / UNSUPPORTED  from the backbone, images,
 *   checkpoint or output files (messages name them)
 * @retval KILN_ERR_NOMEM */
kiln_status kiln_train_run(struct kiln_dataset *ds, const kiln_train_options *opt,
                           kiln_train_result *res, kiln_error *err);

/* ---- Evaluation of a model on a dataset (kiln train and kiln eval) ---- */

/* Gives ds the splits kiln_train_run uses (see "Splits"). */
kiln_status kiln_trainer_prepare_splits(struct kiln_dataset *ds, kiln_error *err);

/* Which images: a kiln_split value (KILN_SPLIT_TRAIN, _VAL, _TEST) or -1
 * for all. */
typedef struct kiln_model_eval_options {
  int32_t split;
  const kiln_image_norm *norm; /* NULL: the model's "kiln_input_norm" metadata, else
                                * kiln_image_norm_for_input's convention */
  const char *const *labels;   /* class names of the model (NULL: its "kiln_labels"
                                * metadata, else class i = dataset label i) */
  int32_t n_labels;
  int32_t threads;             /* 0: all cores */
  float score_threshold;       /* detection: detections kept (0: 0.01) */
  void (*on_progress)(void *ctx, const kiln_train_progress *p);
  void *ctx;
} kiln_model_eval_options;

/* Runs a classifier (float or quantized; one input [1,H,W,3] or [1,H,W,1],
 * one output of class scores) on the split's images, each decoded, resized
 * (bilinear, stretched) and normalized as the trainer does, and evaluates
 * the best-scoring class against the dataset's labels (matched to the
 * model's classes by name; top-5 accuracy when there are more than 5
 * classes). *out as kiln_eval_classify.
 * @retval KILN_ERR_INVALID_ARG  no images in the split, a dataset label the
 *   model does not have, a model that is not a classifier */
kiln_status kiln_trainer_eval_classifier(const kiln_model *model, const struct kiln_dataset *ds,
                                         const kiln_model_eval_options *opt,
                                         kiln_eval_classification *out, kiln_error *err);

/* Runs a detector (raw SSD outputs or TFLite_Detection_PostProcess, as
 * kiln_detector_create) on the split's images and evaluates its boxes as
 * COCO does against the dataset's boxes; categories are the dataset's
 * labels, model classes are matched to them by name (detections of other
 * classes are left out). *out as kiln_eval_detect. */
kiln_status kiln_trainer_eval_detector(const kiln_model *model, const struct kiln_dataset *ds,
                                       const kiln_model_eval_options *opt,
                                       kiln_eval_detection *out, kiln_error *err);

/* ---- Models ---- */

/* Attaches a metadata entry `name` holding bytes (copied into the model),
 * replacing an entry of the same name. */
kiln_status kiln_trainer_set_metadata(kiln_model *model, const char *name, const void *bytes,
                                      size_t n, kiln_error *err);
/* The entry `name` or NULL. */
const kiln_metadata *kiln_trainer_get_metadata(const kiln_model *model, const char *name);

/* Labels as the "kiln_labels" metadata entry: names joined by '\n', one
 * trailing '\n' (labels.txt's bytes). */
kiln_status kiln_trainer_set_labels(kiln_model *model, const char *const *labels, int32_t n,
                                    kiln_error *err);
/* Reads "kiln_labels": *labels is a kiln_malloc'd array of kiln_malloc'd
 * names (free with kiln_trainer_labels_free), *n 0 and *labels NULL when
 * the model has no such entry.
 * @retval KILN_ERR_FORMAT  an empty entry, a NUL byte, an empty line */
kiln_status kiln_trainer_get_labels(const kiln_model *model, char ***labels, int32_t *n,
                                    kiln_error *err);
void kiln_trainer_labels_free(char **labels, int32_t n);
/* "kiln_input_norm" metadata: {"mean": [m0, m1, m2], "std": [s0, s1, s2]}. */
kiln_status kiln_trainer_set_norm(kiln_model *model, const kiln_image_norm *norm,
                                  kiln_error *err);
/* false when the model has no (valid) entry. */
bool kiln_trainer_get_norm(const kiln_model *model, kiln_image_norm *norm);

/* A new model computing tensor `tensor` of model (an activation) from the
 * graph inputs it needs: the ops it depends on in their order, the
 * tensors they use (constant data copied), no metadata. Its output is that
 * tensor.
 * @retval KILN_ERR_INVALID_ARG  tensor out of range, or a constant */
kiln_status kiln_trainer_submodel(const kiln_model *model, int32_t tensor, kiln_model **out,
                                  kiln_error *err);

/* Finds a tensor by exact name or as one ';'-separated part of a name
 * (TFLite converters join fused ops' names with ';'); -1 when none, or
 * when a part matches several tensors. */
int32_t kiln_trainer_find_tensor(const kiln_model *model, const char *name);

/* A float copy of a quantized model: int8/uint8 weights and int32 biases
 * dequantized (per channel where they are), activations float32,
 * QUANTIZE and DEQUANTIZE ops removed. The float model's input takes real
 * values, (pixel - mean) / std with the normalization the quantized input
 * encoded (kiln_image_norm_for_input), written to *norm.
 * @retval KILN_ERR_UNSUPPORTED  int16 or other integer activations, a
 *   per-axis activation, an op kiln cannot run in float */
kiln_status kiln_trainer_dequantize(const kiln_model *model, kiln_model **out,
                                    kiln_image_norm *norm, kiln_error *err);

#ifdef __cplusplus
}
#endif
#endif
