/*
 * kiln/ondevice.h: on-device learning, what Coral's libcoral runs on the
 * device itself: weight imprinting (ImprintingEngine) and last-layer
 * softmax regression (SoftmaxRegressionModel), from a few images per class,
 * in well under a second once the embeddings are extracted.
 *
 *   kiln_model *base;                         // an extractor or imprinting classifier
 *   kiln_model_load("extractor_int8.tflite", &base, &err);
 *   kiln_ondevice *od;
 *   kiln_ondevice_open(base, &od, &err);      // refuses other models, saying why
 *   float *emb = malloc(n * kiln_ondevice_get_info(od).embedding_size * sizeof(float));
 *   kiln_ondevice_embed_images(od, images, n, 0, emb, &err);
 *   kiln_ondevice_samples s = {emb, labels, n, names, n_classes};
 *   kiln_model *clf;
 *   kiln_ondevice_imprint(od, &s, false, &clf, &err);   // or kiln_ondevice_retrain_last
 *   kiln_model_save(clf, "new.tflite", &err);
 *   kiln_model_free(clf); kiln_ondevice_free(od); kiln_model_free(base);
 * or, from a folder-per-class dataset to files: kiln_ondevice_run.
 *
 * Base models. One L2_NORMALIZATION op whose output is one embedding
 * ([1, D] or [1, 1, 1, D], float32, or int8 with the spec's scale 1/128 and
 * zero point 0) marks the embedding; everything before it is the embedding
 * extractor, which every output model keeps unchanged. Either
 *   (a) the embedding is the graph's output (`kiln convert MODEL
 *       --embedding-extractor` makes such a model; `kiln quantize` makes it
 *       int8), or
 *   (b) the model is an imprinting classifier of libcoral's form:
 *       L2_NORMALIZATION -> [QUANTIZE] -> FULLY_CONNECTED (or a 1x1 CONV_2D)
 *       -> MUL(constant scale) -> [RESHAPE] -> SOFTMAX -> output, with its
 *       class names in "kiln_labels" metadata (else "0", "1", ...) and, in
 *       the model description, libcoral's training metadata: "i norm" lines
 *       naming the imprinted classes and the L2 norm of each one's embedding
 *       sum. Its classes can be kept; an imprinted class's sum is its row
 *       times that norm, so training images of it continue the mean.
 *   (c) any other head after the embedding (e.g. retrain_last's FC +
 *       SOFTMAX) is cut off; its classes cannot be kept.
 *
 * Output models: the extractor, then
 *   imprinting:  FULLY_CONNECTED (rows: each class's normalized embedding
 *                sum) -> MUL(scale s) -> SOFTMAX, i.e. softmax(s * cosine),
 *   retrain-last: FULLY_CONNECTED (learned W, b) -> SOFTMAX.
 * With an int8 embedding the new layers are full integer (TFLite int8
 * spec): FC weights int8 symmetric per tensor (imprinting: scale 1/127,
 * exact for unit rows; retrain-last: max|W| / 127), int32 bias at input
 * scale x weight scale, SOFTMAX output 1/256, -128, and MUL by s stored as
 * int8 127 at scale s/127 with the output the FC's integers at s times its
 * scale (libcoral's form). The FC output range: retrain-last, the range of
 * the training logits; imprinting, not libcoral's fixed [-1, 1] (1/128
 * steps): cosines of pooled ReLU features crowd near 1 (0.95-0.99 between
 * an image and every class with MobileNet V2), where 1/128 steps tie the
 * best classes (19 of 50 test images in kiln's test), so the FC outputs
 * cosine - offset (the same bias for every class, which changes no SOFTMAX
 * output) over [lowest leave-one-out training cosine - 0.1, 1] (0 kept
 * representable). With a float embedding the new layers are float32 and
 * the imprinting FC has no bias. The scale s is the base classifier's, else
 * learned as in Qi et al.: the s in [1, 100] minimizing the cross-entropy
 * of softmax(s * cosine) over the training samples, each against its own
 * class's row without itself (leave-one-out). Labels are the "kiln_labels"
 * metadata (`kiln classify` and `kiln eval` read it), "kiln_input_norm" is
 * carried over from the base model, and an imprinted model's description
 * holds libcoral's training metadata.
 */
#ifndef KILN_ONDEVICE_H
#define KILN_ONDEVICE_H

#include <stdbool.h>
#include <stdint.h>

#include "kiln/base.h"
#include "kiln/image.h"
#include "kiln/model.h"

#ifdef __cplusplus
extern "C" {
#endif

struct kiln_dataset; /* kiln/data.h */

/* The imprinting scale when there is nothing to learn it from (no class
 * with two samples). */
#define KILN_IMPRINT_DEFAULT_SCALE 10.0f

typedef struct kiln_ondevice kiln_ondevice;

/* Analyses model (see "Base models") and prepares its extractor. model
 * must outlive od.
 * @retval KILN_ERR_UNSUPPORTED  no (or several) L2_NORMALIZATION, an
 *   embedding that is not one vector of float32 or int8 (1/128, 0), a
 *   malformed imprinting head; the message says what a base model needs
 * @retval KILN_ERR_NOMEM */
kiln_status kiln_ondevice_open(const kiln_model *model, kiln_ondevice **out, kiln_error *err);
void kiln_ondevice_free(kiln_ondevice *od);

typedef struct kiln_ondevice_info {
  int32_t embedding_size;    /* D */
  kiln_dtype embedding_dtype; /* KILN_F32 or KILN_I8 */
  bool imprinting;           /* form (b): an imprinting classifier */
  int32_t n_classes;         /* its classes (0 otherwise) */
  int32_t n_imprinted;       /* of those, the ones its metadata marks imprinted */
  float scale;               /* its MUL scale, else KILN_IMPRINT_DEFAULT_SCALE (imprinting
                              * then learns one) */
  kiln_image_norm norm;      /* how images become its input ("kiln_input_norm",
                              * else kiln_image_norm_for_input's) */
} kiln_ondevice_info;

kiln_ondevice_info kiln_ondevice_get_info(const kiln_ondevice *od);
/* Name of class i of an imprinting classifier (NULL out of range). */
const char *kiln_ondevice_class_name(const kiln_ondevice *od, int32_t i);
/* The extractor: the base model cut at the embedding (owned by od). */
const kiln_model *kiln_ondevice_extractor(const kiln_ondevice *od);

/* Embeddings of n decoded images (stretched to the input and normalized as
 * at inference: kiln_ondevice_info.norm) into out[n][D], dequantized, on
 * `threads` interpreters (0: all cores).
 * @retval KILN_ERR_INVALID_ARG  the extractor's input is not an image */
kiln_status kiln_ondevice_embed_images(const kiln_ondevice *od, const kiln_image *images,
                                       int32_t n, int32_t threads, float *out, kiln_error *err);
/* The same for images[0..n) of a dataset (decoded in parallel); messages
 * name the image's source. */
kiln_status kiln_ondevice_embed_dataset(const kiln_ondevice *od, const struct kiln_dataset *ds,
                                        const int32_t *images, int32_t n, int32_t threads,
                                        float *out, kiln_error *err);

/* Training samples: embeddings (as the extractor outputs them) with class
 * indices into class_names. */
typedef struct kiln_ondevice_samples {
  const float *embeddings;        /* [n][D] */
  const int32_t *labels;          /* [n], 0 .. n_classes - 1 */
  int32_t n;
  const char *const *class_names; /* [n_classes], distinct, non-empty */
  int32_t n_classes;
} kiln_ondevice_samples;

/* Weight imprinting (Qi et al. 2018, as libcoral): each class's weight is
 * the L2-normalized sum of its embeddings. Without keep_classes the output
 * has exactly the samples' classes, in their order. With keep_classes (base
 * form (b) only) it has the base's classes, then the samples' classes the
 * base does not have (by name); samples of an imprinted base class add to
 * its sum, those of a class it did not imprint are refused. Every class of
 * the output needs at least one sample or a kept row.
 * @retval KILN_ERR_INVALID_ARG  bad samples (a label out of range, a class
 *   without samples, a non-finite value, duplicate names), keep_classes on
 *   a base that is not an imprinting classifier, samples for a base class
 *   that was not imprinted
 * @retval KILN_ERR_NOMEM */
kiln_status kiln_ondevice_imprint(const kiln_ondevice *od, const kiln_ondevice_samples *s,
                                  bool keep_classes, kiln_model **out, kiln_error *err);

/* Softmax regression on embeddings (libcoral's SoftmaxRegressionModel):
 * logits = XW + b, mean cross-entropy, plain SGD on minibatches drawn
 * uniformly with replacement, W ~ N(0, 1) * weight_scale, b = 0. */
typedef struct kiln_sgd_options {
  int32_t iterations; /* steps (default 500) */
  int32_t batch;      /* samples per step (default 100) */
  float lr;           /* learning rate (default 3; libcoral's 0.01 barely moves the
                       * loss on unit-norm embeddings, whose logits change slowly) */
  float weight_scale; /* initial weights' standard deviation (default 0.01) */
  uint64_t seed;      /* weights and batches (default 0) */
} kiln_sgd_options;

kiln_sgd_options kiln_sgd_options_default(void);

typedef struct kiln_sgd_result {
  double initial_loss, final_loss; /* mean cross-entropy over all samples */
  double train_accuracy;           /* of the float layer on the samples */
  float logit_min, logit_max;      /* over the samples: the int8 output range */
} kiln_sgd_result;

/* Trains the layer on the samples and appends it (FC + SOFTMAX) to the
 * extractor; the output has the samples' classes. res may be NULL.
 * @retval KILN_ERR_INVALID_ARG  bad samples or options
 * @retval KILN_ERR_NOMEM */
kiln_status kiln_ondevice_retrain_last(const kiln_ondevice *od, const kiln_ondevice_samples *s,
                                       const kiln_sgd_options *opt, kiln_model **out,
                                       kiln_sgd_result *res, kiln_error *err);

/* ---- From a dataset to files (`kiln imprint`, `kiln retrain-last`) ---- */

typedef enum kiln_ondevice_method {
  KILN_ONDEVICE_IMPRINT = 0,
  KILN_ONDEVICE_RETRAIN_LAST = 1
} kiln_ondevice_method;

typedef struct kiln_ondevice_run_options {
  kiln_ondevice_method method;
  bool keep_classes;   /* imprinting only */
  kiln_sgd_options sgd; /* retrain-last only */
  int32_t threads;     /* 0: all cores */
} kiln_ondevice_run_options;

typedef struct kiln_ondevice_report {
  int32_t train_images;      /* learned from: train, val and unassigned splits */
  int32_t test_images;       /* the test split, evaluated when there is one */
  int32_t classes;           /* of the output */
  int32_t kept_classes;      /* from the base, unchanged */
  int32_t updated_classes;   /* from the base, with new images */
  int32_t new_classes;
  int32_t embedding_size;
  kiln_dtype embedding_dtype;
  double extract_seconds;    /* decoding + extractor, training images */
  double learn_seconds;      /* imprinting or SGD, and building the new layers */
  double eval_seconds;       /* the written model on the test split */
  double test_accuracy;      /* -1 without a test split */
  kiln_sgd_result sgd;       /* retrain-last */
} kiln_ondevice_report;

/* Learns new classes from a classification dataset (imported with
 * kiln/data.h; its split is used as found: train, val and unassigned
 * images are learned from, the test split evaluated) and writes the new
 * model to out_path and the class names to labels.txt in its directory,
 * both atomically. Checked before any work: out_path's directory exists,
 * the dataset is a classification one with no unreadable or missing image
 * (the import's warning is the message), every class has training images.
 * @retval KILN_ERR_INVALID_ARG / UNSUPPORTED / IO / NOMEM  with messages
 *   naming the file, class or image */
kiln_status kiln_ondevice_run(const kiln_model *base, const struct kiln_dataset *ds,
                              const char *out_path, const kiln_ondevice_run_options *opt,
                              kiln_ondevice_report *rep, kiln_error *err);

/* ---- Embedding extractors ---- */

/* Builds a float embedding extractor from a classifier or backbone
 * (float, or int8/uint8 which is dequantized): the model cut at the feature
 * map `feature` (NULL: the input of its last global pooling), averaged over
 * height and width (MEAN) and L2-normalized. The input takes (pixel -
 * 127.5) / 127.5 (or what a quantized input encoded), recorded as
 * "kiln_input_norm". Quantize it with kiln/quant.h for the int8 flow.
 * @retval KILN_ERR_INVALID_ARG  no such tensor, no global pooling
 * @retval KILN_ERR_UNSUPPORTED  not a one-image-input model */
kiln_status kiln_ondevice_make_extractor(const char *path, const char *feature,
                                         kiln_model **out, kiln_error *err);

#ifdef __cplusplus
}
#endif
#endif
