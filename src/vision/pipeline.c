/*
 * Image-to-answer pipelines (kiln/vision.h): input normalization defaults,
 * filling inputs, reading outputs as floats, classification, and detection
 * for raw SSD outputs and TFLite_Detection_PostProcess models.
 */
#include <jansson.h>
#include <math.h>
#include <string.h>
#include <time.h>

#include "kiln/vision.h"

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

kiln_image_norm kiln_image_norm_for_input(const kiln_tensor_view *input) {
  kiln_image_norm n = kiln_image_norm_default();
  if ((input->dtype == KILN_U8 || input->dtype == KILN_I8) && input->quant &&
      input->quant->count == 1 && input->quant->scale[0] > 0.0f) {
    /* real = (x - mean) / std must equal scale * (q - zp) with q = x
     * (uint8) or q = x - 128 (int8). */
    float zp = (float)input->quant->zero_point[0] + (input->dtype == KILN_I8 ? 128.0f : 0.0f);
    for (int c = 0; c < 3; c++) {
      n.mean[c] = zp;
      n.std[c] = 1.0f / input->quant->scale[0];
    }
  }
  return n;
}

bool kiln_model_input_norm(const kiln_model *model, kiln_image_norm *norm) {
  const kiln_metadata *md = NULL;
  for (int32_t i = 0; i < model->n_metadata && !md; i++)
    if (strcmp(model->metadata[i].name, "kiln_input_norm") == 0) md = &model->metadata[i];
  if (!md) return false;
  json_t *root = json_loadb((const char *)md->data, md->bytes, 0, NULL);
  bool ok = root != NULL;
  kiln_image_norm n;
  const char *keys[2] = {"mean", "std"};
  for (int k = 0; k < 2 && ok; k++) {
    json_t *a = json_object_get(root, keys[k]);
    ok = json_is_array(a) && json_array_size(a) == 3;
    for (size_t c = 0; c < 3 && ok; c++) {
      json_t *v = json_array_get(a, c);
      ok = json_is_number(v) && isfinite(json_number_value(v));
      if (ok) (k ? n.std : n.mean)[c] = (float)json_number_value(v);
    }
  }
  for (int c = 0; c < 3 && ok; c++) ok = n.std[c] != 0.0f;
  json_decref(root);
  if (ok) *norm = n;
  return ok;
}

kiln_status kiln_vision_set_input(kiln_interp *interp, int32_t input, const kiln_image *img,
                                  const kiln_image_norm *norm, kiln_error *err) {
  kiln_tensor_view in = kiln_interp_input(interp, input);
  if (!in.data) return kiln_fail(err, KILN_ERR_INVALID_ARG, "the model has no input %d", (int)input);
  kiln_image_norm n = norm ? *norm : kiln_image_norm_for_input(&in);
  return kiln_image_to_tensor(img, &n, &in, err);
}

kiln_status kiln_vision_output_float(kiln_interp *interp, int32_t output, float *dst, int64_t n,
                                     kiln_error *err) {
  kiln_tensor_view v = kiln_interp_output(interp, output);
  int64_t count = 1;
  for (int32_t i = 0; i < v.rank; i++) count *= v.shape[i];
  if (!v.data || count != n)
    return kiln_fail(err, KILN_ERR_INVALID_ARG, "output %d has %lld elements, not %lld",
                     (int)output, (long long)count, (long long)n);
  float scale = 1.0f;
  int32_t zp = 0;
  if (v.dtype == KILN_U8 || v.dtype == KILN_I8) {
    if (!v.quant || v.quant->count != 1)
      return kiln_fail(err, KILN_ERR_UNSUPPORTED, "output '%s' is %s without per-tensor quantization",
                       v.name, kiln_dtype_name(v.dtype));
    scale = v.quant->scale[0];
    zp = v.quant->zero_point[0];
  }
  switch (v.dtype) {
    case KILN_F32: memcpy(dst, v.data, (size_t)n * sizeof(float)); break;
    case KILN_U8:
      for (int64_t i = 0; i < n; i++) dst[i] = scale * (float)(((const uint8_t *)v.data)[i] - zp);
      break;
    case KILN_I8:
      for (int64_t i = 0; i < n; i++) dst[i] = scale * (float)(((const int8_t *)v.data)[i] - zp);
      break;
    default:
      return kiln_fail(err, KILN_ERR_UNSUPPORTED, "output '%s' is %s, not a score or box tensor",
                       v.name, kiln_dtype_name(v.dtype));
  }
  return KILN_OK;
}

/* ---- Classification ---- */

kiln_status kiln_classify_run(kiln_interp *interp, const kiln_image *img,
                              const kiln_image_norm *norm, int32_t top_k, kiln_class_score *out,
                              int32_t *n_out, kiln_vision_timing *timing, kiln_error *err) {
  *n_out = 0;
  kiln_vision_timing t = {0};
  if (kiln_interp_output_count(interp) < 1)
    return kiln_fail(err, KILN_ERR_UNSUPPORTED, "the model has no output");
  kiln_tensor_view o = kiln_interp_output(interp, 0);
  int64_t classes = o.rank >= 1 ? o.shape[o.rank - 1] : 1;
  for (int32_t i = 0; i + 1 < o.rank; i++)
    if (o.shape[i] != 1)
      return kiln_fail(err, KILN_ERR_UNSUPPORTED,
                       "output '%s' is not a score vector ([1,C]): dimension %d is %d", o.name,
                       (int)i, (int)o.shape[i]);
  double t0 = now_ms();
  kiln_status s = kiln_vision_set_input(interp, 0, img, norm, err);
  if (s != KILN_OK) return s;
  double t1 = now_ms();
  if ((s = kiln_interp_invoke(interp, err)) != KILN_OK) return s;
  double t2 = now_ms();
  float *scores = kiln_malloc((size_t)classes * sizeof *scores);
  if (!scores) return kiln_fail(err, KILN_ERR_NOMEM, "out of memory");
  s = kiln_vision_output_float(interp, 0, scores, classes, err);
  if (s == KILN_OK) {
    bool probabilities = true;
    float max = -INFINITY;
    for (int64_t i = 0; i < classes; i++) {
      probabilities &= scores[i] >= 0.0f && scores[i] <= 1.0f;
      if (scores[i] > max) max = scores[i];
    }
    if (!probabilities && o.dtype == KILN_F32) {
      double sum = 0;
      for (int64_t i = 0; i < classes; i++) sum += exp((double)(scores[i] - max));
      for (int64_t i = 0; i < classes; i++) scores[i] = (float)(exp((double)(scores[i] - max)) / sum);
    }
    /* Partial selection sort: top_k is small. */
    int32_t k = top_k < classes ? top_k : (int32_t)classes;
    for (int32_t r = 0; r < k; r++) {
      int64_t best = -1;
      for (int64_t i = 0; i < classes; i++) {
        bool taken = false;
        for (int32_t j = 0; j < r; j++) taken |= out[j].class_id == i;
        if (!taken && (best < 0 || scores[i] > scores[best])) best = i;
      }
      out[r].class_id = (int32_t)best;
      out[r].score = scores[best];
    }
    *n_out = k;
  }
  kiln_free(scores);
  t.preprocess_ms = t1 - t0;
  t.invoke_ms = t2 - t1;
  t.postprocess_ms = now_ms() - t2;
  if (timing) *timing = t;
  return s;
}

/* ---- Detection ---- */

struct kiln_detector {
  kiln_interp *interp;
  kiln_detect_config cfg;
  bool postprocessed;
  /* raw layout */
  int32_t n_anchors, n_classes;
  int32_t box_output, class_output;
  float *anchors;  /* [n_anchors][4] */
  float *buffers;  /* encodings, logits */
  kiln_detection *scratch;
  int32_t capacity;
  /* post-processed layout: graph output index of boxes, classes, scores, count */
  int32_t pp_out[4];
  int32_t slots;
};

static bool is_shape(const kiln_tensor_view *v, int32_t rank, const int32_t *shape) {
  if (v->rank != rank) return false;
  for (int32_t i = 0; i < rank; i++)
    if (shape[i] >= 0 && v->shape[i] != shape[i]) return false;
  return true;
}

static kiln_status find_postprocess(kiln_detector *d, const kiln_model *m, kiln_error *err) {
  const kiln_op *pp = NULL;
  for (int32_t i = 0; i < m->n_ops; i++)
    if (m->ops[i].code == KILN_OP_CUSTOM && m->ops[i].custom_code &&
        strcmp(m->ops[i].custom_code, "TFLite_Detection_PostProcess") == 0)
      pp = &m->ops[i];
  if (!pp) return KILN_OK;
  if (pp->n_outputs != 4)
    return kiln_fail(err, KILN_ERR_FORMAT, "TFLite_Detection_PostProcess has %d outputs, not 4",
                     (int)pp->n_outputs);
  for (int k = 0; k < 4; k++) {
    d->pp_out[k] = -1;
    for (int32_t o = 0; o < m->n_outputs; o++)
      if (m->outputs[o] == pp->outputs[k]) d->pp_out[k] = o;
    if (d->pp_out[k] < 0)
      return kiln_fail(err, KILN_ERR_UNSUPPORTED,
                       "TFLite_Detection_PostProcess output %d is not a graph output", k);
  }
  kiln_tensor_view boxes = kiln_interp_output(d->interp, d->pp_out[0]);
  if (boxes.dtype != KILN_F32 || boxes.rank != 3 || boxes.shape[2] != 4)
    return kiln_fail(err, KILN_ERR_FORMAT, "post-processed boxes '%s' are not float [1,M,4]",
                     boxes.name);
  d->slots = boxes.shape[1];
  d->postprocessed = true;
  return KILN_OK;
}

static kiln_status setup_raw(kiln_detector *d, kiln_error *err) {
  if (kiln_interp_output_count(d->interp) != 2)
    return kiln_fail(err, KILN_ERR_UNSUPPORTED,
                     "not a detection model: expected raw SSD outputs (box encodings [1,N,4] and "
                     "class scores [1,N,C]) or TFLite_Detection_PostProcess, found %d outputs",
                     (int)kiln_interp_output_count(d->interp));
  kiln_tensor_view a = kiln_interp_output(d->interp, 0), b = kiln_interp_output(d->interp, 1);
  const int32_t box_shape[3] = {1, -1, 4};
  d->box_output = is_shape(&a, 3, box_shape) ? 0 : 1;
  d->class_output = 1 - d->box_output;
  kiln_tensor_view boxes = d->box_output ? b : a, classes = d->box_output ? a : b;
  if (!is_shape(&boxes, 3, box_shape) || classes.rank != 3 || classes.shape[0] != 1 ||
      classes.shape[1] != boxes.shape[1])
    return kiln_fail(err, KILN_ERR_UNSUPPORTED,
                     "not a detection model: outputs '%s' and '%s' are not [1,N,4] and [1,N,C]",
                     a.name, b.name);
  d->n_anchors = boxes.shape[1];
  d->n_classes = classes.shape[2];
  kiln_tensor_view in = kiln_interp_input(d->interp, 0);
  int32_t count = 0;
  kiln_error ignored;
  if (kiln_ssd_anchor_count(&d->cfg.anchors, &count, &ignored) != KILN_OK || count != d->n_anchors) {
    kiln_status s = kiln_ssd_anchor_config_infer(d->n_anchors, in.rank == 4 ? in.shape[1] : 0,
                                                 in.rank == 4 ? in.shape[2] : 0, &d->cfg.anchors, err);
    if (s != KILN_OK) return s;
  }
  kiln_status s = kiln_ssd_anchors_generate(&d->cfg.anchors, &d->anchors, &count, err);
  if (s != KILN_OK) return s;
  if (count != d->n_anchors)
    return kiln_fail(err, KILN_ERR_INVALID_ARG, "the anchor configuration gives %d anchors, the model has %d",
                     (int)count, (int)d->n_anchors);
  size_t floats = (size_t)d->n_anchors * (4 + (size_t)d->n_classes);
  d->buffers = kiln_malloc(floats * sizeof(float));
  if (!d->buffers) return kiln_fail(err, KILN_ERR_NOMEM, "out of memory");
  return KILN_OK;
}

kiln_status kiln_detector_create(kiln_interp *interp, const kiln_model *model,
                                 const kiln_detect_config *cfg, kiln_detector **out,
                                 kiln_error *err) {
  *out = NULL;
  kiln_detector *d = kiln_calloc(1, sizeof *d);
  if (!d) return kiln_fail(err, KILN_ERR_NOMEM, "out of memory");
  d->interp = interp;
  d->cfg = cfg ? *cfg : kiln_detect_config_default300();
  kiln_status s = find_postprocess(d, model, err);
  if (s == KILN_OK && !d->postprocessed) s = setup_raw(d, err);
  if (s == KILN_OK) {
    d->capacity = d->cfg.max_detections > 0 ? d->cfg.max_detections : 1;
    if (d->postprocessed && d->slots > d->capacity) d->capacity = d->slots;
    d->scratch = kiln_calloc((size_t)d->capacity, sizeof *d->scratch);
    if (!d->scratch) s = kiln_fail(err, KILN_ERR_NOMEM, "out of memory");
  }
  if (s != KILN_OK) {
    kiln_detector_free(d);
    return s;
  }
  *out = d;
  return KILN_OK;
}

bool kiln_detector_is_postprocessed(const kiln_detector *det) { return det->postprocessed; }

void kiln_detector_set_threshold(kiln_detector *det, float score_threshold) {
  det->cfg.score_threshold = score_threshold;
}

static float clampf(float v, float lo, float hi) { return v < lo ? lo : (v > hi ? hi : v); }

static kiln_status read_postprocessed(kiln_detector *d, int32_t *n, kiln_error *err) {
  const float *p[4];
  for (int k = 0; k < 4; k++) {
    kiln_tensor_view v = kiln_interp_output(d->interp, d->pp_out[k]);
    if (v.dtype != KILN_F32)
      return kiln_fail(err, KILN_ERR_FORMAT, "post-process output '%s' is not float32", v.name);
    p[k] = v.data;
  }
  /* TFLite's classes exclude the background column: +1 gives column ids. */
  return kiln_detect_read_postprocessed(p[0], p[1], p[2], p[3], d->slots, 1, 1, d->scratch,
                                        d->capacity, n, err);
}

kiln_status kiln_detector_run(kiln_detector *d, const kiln_image *img,
                              const kiln_image_norm *norm, kiln_box *out, int32_t capacity,
                              int32_t *n_out, kiln_vision_timing *timing, kiln_error *err) {
  *n_out = 0;
  double t0 = now_ms();
  kiln_status s = kiln_vision_set_input(d->interp, 0, img, norm, err);
  if (s != KILN_OK) return s;
  double t1 = now_ms();
  if ((s = kiln_interp_invoke(d->interp, err)) != KILN_OK) return s;
  double t2 = now_ms();
  int32_t n = 0;
  if (d->postprocessed) {
    s = read_postprocessed(d, &n, err);
  } else {
    float *enc = d->buffers, *logits = d->buffers + (size_t)d->n_anchors * 4;
    s = kiln_vision_output_float(d->interp, d->box_output, enc, (int64_t)d->n_anchors * 4, err);
    if (s == KILN_OK)
      s = kiln_vision_output_float(d->interp, d->class_output, logits,
                                   (int64_t)d->n_anchors * d->n_classes, err);
    if (s == KILN_OK)
      s = kiln_detect_decode(enc, logits, d->n_anchors, d->n_classes, d->anchors, &d->cfg,
                             d->scratch, d->capacity, &n, err);
  }
  if (s != KILN_OK) return s;
  const float w = (float)img->width, h = (float)img->height;
  int32_t k = 0;
  for (int32_t i = 0; i < n && k < capacity; i++) {
    const kiln_detection *det = &d->scratch[i];
    if (det->score < d->cfg.score_threshold) continue;
    out[k].class_id = det->class_id;
    out[k].score = det->score;
    out[k].xmin = clampf(det->xmin * w, 0, w);
    out[k].ymin = clampf(det->ymin * h, 0, h);
    out[k].xmax = clampf(det->xmax * w, 0, w);
    out[k].ymax = clampf(det->ymax * h, 0, h);
    k++;
  }
  *n_out = k;
  if (timing) {
    timing->preprocess_ms = t1 - t0;
    timing->invoke_ms = t2 - t1;
    timing->postprocess_ms = now_ms() - t2;
  }
  return KILN_OK;
}

void kiln_detector_free(kiln_detector *det) {
  if (!det) return;
  kiln_free(det->anchors);
  kiln_free(det->buffers);
  kiln_free(det->scratch);
  kiln_free(det);
}
