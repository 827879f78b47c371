/*
 * train/classify_tl.h: transfer learning for classification (see
 * classify_tl.c): the backbone, its fine-tuning plan, the head net, the
 * feature cache and the export.
 */
#ifndef KILN_TRAIN_CLASSIFY_TL_H
#define KILN_TRAIN_CLASSIFY_TL_H

#include "train/pipeline_int.h"

typedef struct tl_backbone {
  char path[4096];
  uint64_t key;          /* FNV-1a of the file's bytes */
  kiln_model *model;     /* float (dequantized when the file was quantized) */
  bool dequantized;
  kiln_image_norm norm;  /* what the input takes */
  int32_t in_h, in_w;
  int32_t feature;       /* the feature map [1, h, w, c] */
  int32_t cut;           /* the tensor whose values are cached (feature without fine-tuning) */
  int32_t *tuned_ops;    /* ops after cut up to feature, in order (engine layers) */
  int32_t n_tuned;
  int32_t n_tuned_convs;
} tl_backbone;

/* Loads path (NULL: the shared SSD in $KILN_MODELS, cut at its last
 * feature map) and finds the feature tensor (NULL: the input of the
 * model's last global pooling). */
kiln_status tl_backbone_open(const char *path, const char *feature, tl_backbone *b,
                             kiln_error *err);
void tl_backbone_free(tl_backbone *b);
/* Makes the last n_layers conv / depthwise layers (and the ops between
 * them) trainable: sets cut and tuned_ops. 0 undoes it. */
kiln_status tl_plan_fine_tune(tl_backbone *b, int32_t n_layers, kiln_error *err);
/* The model whose output is what is cached: the cut tensor's map (with
 * fine-tuning), else the feature map averaged by MEAN to [1, c]. */
kiln_status tl_feature_model(const tl_backbone *b, kiln_model **out, kiln_error *err);
/* The cached sample's shape (1, 1, c without fine-tuning). */
void tl_feature_shape(const tl_backbone *b, int32_t *h, int32_t *w, int32_t *c);
/* The report's "backbone" object. */
struct json_t *tl_backbone_json(const tl_backbone *b);

/* The trained part: converted backbone layers, global pooling (with
 * fine-tuning), dropout, dense. */
typedef struct tl_net {
  kiln_net *net;
  int32_t logits;
  int32_t *op_layer; /* [n_tuned]: layer of each tuned op */
} tl_net;

kiln_status tl_build_net(const tl_backbone *b, int32_t classes, float dropout, int32_t batch,
                         int32_t threads, uint64_t seed, tl_net *out, kiln_error *err);
void tl_net_free(tl_net *n);

/* backbone sub-graph (trained weights written into b's tuned tensors) +
 * MEAN + FULLY_CONNECTED + SOFTMAX; input "normalized" as b->norm, output
 * "scores" [1, classes]. */
kiln_status tl_export(tl_backbone *b, const tl_net *n, int32_t classes, kiln_model **out,
                      kiln_error *err);

/* Features of images[0..n) (dataset indices) with `variants` per image (2:
 * the second from the left-right mirrored input) into out[n][variants]
 * [size], computed on `threads` interpreters, or read from cache_path when
 * it holds the same key (then written there when computed). progress
 * reports KILN_PHASE_PREPARE items. *stopped when the stop flag ended it. */
typedef struct tl_feature_job {
  const tl_backbone *backbone;
  const struct kiln_dataset *ds;
  const int32_t *images;
  int32_t n;
  int32_t variants;
  int32_t threads;
  uint64_t key;            /* of the data and backbone */
  const char *cache_path;  /* NULL: no cache */
  void (*on_progress)(void *ctx, const kiln_train_progress *p);
  void *ctx;
  volatile sig_atomic_t *stop;
} tl_feature_job;

kiln_status tl_compute_features(const tl_feature_job *job, float *out, bool *from_cache,
                                bool *stopped, kiln_error *err);

#endif
