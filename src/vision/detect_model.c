/*
 * kiln_detect_add_postprocess (kiln/detect.h): appends TF's SSD export
 * tail to a raw-output model: score conversion, a constant anchors tensor
 * and the TFLite_Detection_PostProcess custom op, whose four outputs become
 * the graph outputs under the names TF's exporter gives them.
 *
 * Everything that can be refused (the model's outputs, the config, name
 * clashes) is checked before the model is touched. The custom options are
 * written with the keys, kinds and order of TF's converter
 * (tensorflow/compiler/mlir/lite/utils/nms_utils.cc), so the bytes equal
 * what it produces; detections_per_class, which it omits (the op's default
 * is 100), is appended only when it differs.
 */
#include <math.h>
#include <string.h>

#include "kiln/detect.h"
#include "model/flexbuf.h"

static const char *const output_names[4] = {
    "TFLite_Detection_PostProcess", "TFLite_Detection_PostProcess:1",
    "TFLite_Detection_PostProcess:2", "TFLite_Detection_PostProcess:3"};

static bool is_float3(const kiln_tensor *t) {
  return t->dtype == KILN_F32 && t->rank == 3 && t->shape[0] == 1 && t->shape[1] > 0 &&
         t->shape[2] > 0;
}

/* Finds the box-encodings and class-logits outputs (in either order). */
static kiln_status find_raw_outputs(const kiln_model *m, int32_t *box, int32_t *cls,
                                    kiln_error *err) {
  if (m->n_outputs != 2)
    return kiln_fail(err, KILN_ERR_INVALID_ARG,
                     "add postprocess: the model has %d outputs; expected 2 (box encodings "
                     "[1,N,4] and class logits [1,N,C])",
                     (int)m->n_outputs);
  for (int k = 0; k < 2; k++) {
    const int32_t b = m->outputs[k], c = m->outputs[1 - k];
    const kiln_tensor *tb = &m->tensors[b], *tc = &m->tensors[c];
    if (is_float3(tb) && tb->shape[2] == 4 && is_float3(tc) && tc->shape[1] == tb->shape[1]) {
      *box = b;
      *cls = c;
      return KILN_OK;
    }
  }
  return kiln_fail(err, KILN_ERR_INVALID_ARG,
                   "add postprocess: outputs '%s' and '%s' are not float32 box encodings "
                   "[1,N,4] and class logits [1,N,C]",
                   m->tensors[m->outputs[0]].name, m->tensors[m->outputs[1]].name);
}

static kiln_status check_config(const kiln_detect_config *cfg, kiln_error *err) {
  const float scales[4] = {cfg->y_scale, cfg->x_scale, cfg->h_scale, cfg->w_scale};
  for (int i = 0; i < 4; i++) {
    if (!isfinite(scales[i]) || scales[i] == 0.0f)
      return kiln_fail(err, KILN_ERR_INVALID_ARG, "add postprocess: box coder scale %g",
                       (double)scales[i]);
  }
  if (cfg->score_fn != KILN_SCORE_SIGMOID && cfg->score_fn != KILN_SCORE_SOFTMAX &&
      cfg->score_fn != KILN_SCORE_NONE)
    return kiln_fail(err, KILN_ERR_INVALID_ARG, "add postprocess: score_fn %d",
                     (int)cfg->score_fn);
  if (cfg->max_detections < 1 || cfg->max_detections > (1 << 20))
    return kiln_fail(err, KILN_ERR_INVALID_ARG, "add postprocess: max_detections %d",
                     (int)cfg->max_detections);
  if (!cfg->class_agnostic && cfg->detections_per_class < 1)
    return kiln_fail(err, KILN_ERR_INVALID_ARG, "add postprocess: detections_per_class %d",
                     (int)cfg->detections_per_class);
  if (!(cfg->iou_threshold > 0.0f && cfg->iou_threshold <= 1.0f))
    return kiln_fail(err, KILN_ERR_INVALID_ARG,
                     "add postprocess: iou_threshold %g is not in (0, 1]",
                     (double)cfg->iou_threshold);
  if (isnan(cfg->score_threshold))
    return kiln_fail(err, KILN_ERR_INVALID_ARG, "add postprocess: score_threshold is NaN");
  return KILN_OK;
}

static kiln_status write_options(const kiln_detect_config *cfg, int32_t num_classes,
                                 uint8_t **bytes, size_t *size, kiln_error *err) {
  kiln_flex_entry e[11];
  size_t n = 0;
  memset(e, 0, sizeof e);
  e[n++] = (kiln_flex_entry){"max_detections", KILN_FLEX_ENTRY_INT, cfg->max_detections, 0, false};
  e[n++] = (kiln_flex_entry){"max_classes_per_detection", KILN_FLEX_ENTRY_INT, 1, 0, false};
  e[n++] = (kiln_flex_entry){"num_classes", KILN_FLEX_ENTRY_INT, num_classes, 0, false};
  e[n++] = (kiln_flex_entry){"nms_score_threshold", KILN_FLEX_ENTRY_FLOAT, 0,
                             cfg->score_threshold, false};
  e[n++] = (kiln_flex_entry){"nms_iou_threshold", KILN_FLEX_ENTRY_FLOAT, 0, cfg->iou_threshold,
                             false};
  e[n++] = (kiln_flex_entry){"y_scale", KILN_FLEX_ENTRY_FLOAT, 0, cfg->y_scale, false};
  e[n++] = (kiln_flex_entry){"x_scale", KILN_FLEX_ENTRY_FLOAT, 0, cfg->x_scale, false};
  e[n++] = (kiln_flex_entry){"h_scale", KILN_FLEX_ENTRY_FLOAT, 0, cfg->h_scale, false};
  e[n++] = (kiln_flex_entry){"w_scale", KILN_FLEX_ENTRY_FLOAT, 0, cfg->w_scale, false};
  e[n++] = (kiln_flex_entry){"use_regular_nms", KILN_FLEX_ENTRY_INT,
                             cfg->class_agnostic ? 0 : 1, 0, false};
  if (!cfg->class_agnostic && cfg->detections_per_class != 100)
    e[n++] = (kiln_flex_entry){"detections_per_class", KILN_FLEX_ENTRY_INT,
                               cfg->detections_per_class, 0, false};
  return kiln_flex_write_map(e, n, bytes, size, err);
}

kiln_status kiln_detect_add_postprocess(kiln_model *model, const kiln_detect_config *cfg,
                                        kiln_error *err) {
  kiln_error local_err;
  if (!err) err = &local_err;
  if (!model || !cfg) return kiln_fail(err, KILN_ERR_INVALID_ARG, "add postprocess: NULL argument");
  int32_t box = -1, cls = -1;
  kiln_status st = find_raw_outputs(model, &box, &cls, err);
  if (st != KILN_OK) return st;
  if ((st = check_config(cfg, err)) != KILN_OK) return st;
  const int32_t n = model->tensors[box].shape[1];
  const int32_t n_classes = model->tensors[cls].shape[2];
  const int32_t background = cfg->background_class ? 1 : 0;
  if (n_classes < 1 + background)
    return kiln_fail(err, KILN_ERR_INVALID_ARG,
                     "add postprocess: '%s' has %d class columns, too few with%s a background "
                     "column",
                     model->tensors[cls].name, (int)n_classes, background ? "" : "out");
  const char *names[6] = {output_names[0], output_names[1], output_names[2], output_names[3],
                          "anchors", "convert_scores"};
  for (int i = 0; i < 6; i++) {
    if (kiln_model_find_tensor(model, names[i]) >= 0)
      return kiln_fail(err, KILN_ERR_INVALID_ARG,
                       "add postprocess: the model already has a tensor named '%s'", names[i]);
  }

  float *anchors = NULL;
  int32_t n_anchors = 0;
  uint8_t *options = NULL;
  size_t options_bytes = 0;
  int32_t *inputs = NULL;
  if ((st = kiln_ssd_anchors_generate(&cfg->anchors, &anchors, &n_anchors, err)) != KILN_OK)
    goto done;
  if (n_anchors != n) {
    st = kiln_fail(err, KILN_ERR_INVALID_ARG,
                   "add postprocess: '%s' has %d anchors but the anchor config gives %d",
                   model->tensors[box].name, (int)n, (int)n_anchors);
    goto done;
  }
  if ((st = write_options(cfg, n_classes - background, &options, &options_bytes, err)) != KILN_OK)
    goto done;
  inputs = kiln_calloc((size_t)model->n_inputs + 1, sizeof *inputs);
  if (!inputs) {
    st = kiln_fail(err, KILN_ERR_NOMEM, "add postprocess: out of memory");
    goto done;
  }
  memcpy(inputs, model->inputs, (size_t)model->n_inputs * sizeof *inputs);

  int32_t scores = cls;
  if (cfg->score_fn != KILN_SCORE_NONE) {
    const int32_t shape[3] = {1, n, n_classes};
    scores = kiln_model_add_tensor(model, "convert_scores", KILN_F32, 3, shape, NULL, NULL, err);
    if (scores < 0) goto fail;
    kiln_op_options o;
    memset(&o, 0, sizeof o);
    o.new_shape_count = -1;
    int32_t code = KILN_OP_LOGISTIC;
    if (cfg->score_fn == KILN_SCORE_SOFTMAX) {
      code = KILN_OP_SOFTMAX;
      o.type = KILN_OPTS_SOFTMAX;
      o.beta = 1.0f;
    }
    if (kiln_model_add_op(model, code, NULL, &cls, 1, &scores, 1, &o, NULL, 0, err) < 0) goto fail;
  }
  const int32_t anchor_shape[2] = {n, 4};
  const int32_t anchor_t =
      kiln_model_add_tensor(model, "anchors", KILN_F32, 2, anchor_shape, NULL, anchors, err);
  if (anchor_t < 0) goto fail;
  const int32_t m = cfg->max_detections;
  const int32_t shapes[4][3] = {{1, m, 4}, {1, m, 0}, {1, m, 0}, {1, 0, 0}};
  const int32_t ranks[4] = {3, 2, 2, 1};
  int32_t outs[4];
  for (int i = 0; i < 4; i++) {
    outs[i] = kiln_model_add_tensor(model, output_names[i], KILN_F32, ranks[i], shapes[i], NULL,
                                    NULL, err);
    if (outs[i] < 0) goto fail;
  }
  const int32_t op_inputs[3] = {box, scores, anchor_t};
  if (kiln_model_add_op(model, KILN_OP_CUSTOM, output_names[0], op_inputs, 3, outs, 4, NULL,
                        options, options_bytes, err) < 0)
    goto fail;
  st = kiln_model_set_io(model, inputs, model->n_inputs, outs, 4, err);
  goto done;
fail:
  st = err->status != KILN_OK ? err->status : KILN_ERR_INTERNAL;
done:
  kiln_free(anchors);
  kiln_free(options);
  kiln_free(inputs);
  return st;
}
