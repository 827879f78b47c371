/*
 * Operator implementations: detect family (see runtime/op.h): the custom op
 * TFLite_Detection_PostProcess (tflite/kernels/detection_postprocess.cc).
 *
 * Inputs: box encodings [1,N,E] (E >= 4; ty, tx, th, tw first), class
 * scores [1,N,Cb] (Cb = num_classes, or num_classes + 1 with a background
 * column 0), anchors [N,4] (ycenter, xcenter, h, w), a constant. Each may be
 * float32, uint8 or int8 (per-tensor quantized, dequantized as TFLite does;
 * TFLite itself takes float32 and uint8 only, and with uint8 encodings reads
 * the anchors as uint8 whatever their type). Outputs, all float32: boxes
 * [1,S,4], classes [1,S], scores [1,S], count [1], S = max_detections *
 * max_classes_per_detection. Slots TFLite leaves unwritten are zero.
 *
 * Options come from the flexbuffer map in custom_options. Prepare refuses
 * what TFLite would fail on at invoke (IoU threshold outside (0, 1], anchors
 * with negative sizes that make decoded boxes invalid) and what it would
 * silently misread (missing or unknown keys, values of the wrong kind or
 * out of range). Keys starting with '_' are TF-internal attributes
 * (_output_quantized, ...) and are ignored, as TFLite ignores them.
 */
#include <float.h>
#include <math.h>
#include <string.h>

#include "kernels/ref/detection_postprocess_ref.h"
#include "model/flexbuf.h"
#include "runtime/op.h"

/* Output slots kiln accepts (S): TF exporters use 10..300. */
#define MAX_SLOTS (1 << 20)

typedef struct detpp_options {
  int64_t max_detections, max_classes_per_detection, detections_per_class, num_classes;
  bool use_regular_nms;
  double score_threshold, iou_threshold;
  double y_scale, x_scale, h_scale, w_scale;
} detpp_options;

enum opt_kind { OPT_INT, OPT_FLOAT, OPT_BOOL };

typedef struct opt_spec {
  const char *key;
  enum opt_kind kind;
  bool required;
  size_t offset;
} opt_spec;

static const opt_spec option_specs[] = {
    {"max_detections", OPT_INT, true, offsetof(detpp_options, max_detections)},
    {"max_classes_per_detection", OPT_INT, true,
     offsetof(detpp_options, max_classes_per_detection)},
    {"detections_per_class", OPT_INT, false, offsetof(detpp_options, detections_per_class)},
    {"use_regular_nms", OPT_BOOL, false, offsetof(detpp_options, use_regular_nms)},
    {"nms_score_threshold", OPT_FLOAT, true, offsetof(detpp_options, score_threshold)},
    {"nms_iou_threshold", OPT_FLOAT, true, offsetof(detpp_options, iou_threshold)},
    {"num_classes", OPT_INT, true, offsetof(detpp_options, num_classes)},
    {"y_scale", OPT_FLOAT, true, offsetof(detpp_options, y_scale)},
    {"x_scale", OPT_FLOAT, true, offsetof(detpp_options, x_scale)},
    {"h_scale", OPT_FLOAT, true, offsetof(detpp_options, h_scale)},
    {"w_scale", OPT_FLOAT, true, offsetof(detpp_options, w_scale)},
};
#define N_SPECS (sizeof option_specs / sizeof option_specs[0])

static kiln_status read_option(kiln_prepare_ctx *ctx, const opt_spec *spec,
                               const kiln_flex_ref *v, detpp_options *o) {
  kiln_error ferr;
  kiln_status st = KILN_OK;
  char *field = (char *)o + spec->offset;
  if (spec->kind == OPT_INT) {
    int64_t i = 0;
    st = kiln_flex_get_int(v, &i, &ferr);
    if (st == KILN_OK && (i < INT32_MIN || i > INT32_MAX))
      return kiln_prepare_fail(ctx, KILN_ERR_UNSUPPORTED, "option %s = %lld is out of range",
                               spec->key, (long long)i);
    if (st == KILN_OK) memcpy(field, &i, sizeof i);
  } else if (spec->kind == OPT_FLOAT) {
    double d = 0;
    st = kiln_flex_get_double(v, &d, &ferr);
    if (st == KILN_OK) memcpy(field, &d, sizeof d);
  } else {
    bool b = false;
    st = kiln_flex_get_bool(v, &b, &ferr);
    if (st == KILN_OK) memcpy(field, &b, sizeof b);
  }
  if (st != KILN_OK) return kiln_prepare_fail(ctx, st, "option %s: %s", spec->key, ferr.msg);
  return KILN_OK;
}

static kiln_status parse_options(kiln_node *node, kiln_prepare_ctx *ctx, detpp_options *o) {
  const kiln_op *op = node->op;
  if (!op->custom_options || op->custom_options_bytes == 0)
    return kiln_prepare_fail(ctx, KILN_ERR_FORMAT,
                             "has no custom options (a flexbuffer map with max_detections, "
                             "num_classes, nms thresholds and box scales)");
  kiln_flex_map map;
  kiln_error ferr;
  if (kiln_flex_root_map(op->custom_options, op->custom_options_bytes, &map, &ferr) != KILN_OK)
    return kiln_prepare_fail(ctx, KILN_ERR_FORMAT, "custom options: %s", ferr.msg);
  memset(o, 0, sizeof *o);
  o->detections_per_class = 100;
  bool seen[N_SPECS] = {false};
  for (size_t i = 0; i < map.count; i++) {
    const char *key;
    kiln_flex_ref v;
    kiln_flex_map_entry(&map, i, &key, &v);
    size_t s = 0;
    while (s < N_SPECS && strcmp(option_specs[s].key, key) != 0) s++;
    if (s == N_SPECS) {
      if (key[0] == '_') continue;
      return kiln_prepare_fail(ctx, KILN_ERR_UNSUPPORTED, "unknown option '%s'", key);
    }
    kiln_status st = read_option(ctx, &option_specs[s], &v, o);
    if (st != KILN_OK) return st;
    seen[s] = true;
  }
  for (size_t s = 0; s < N_SPECS; s++) {
    if (option_specs[s].required && !seen[s])
      return kiln_prepare_fail(ctx, KILN_ERR_FORMAT, "option %s is missing",
                               option_specs[s].key);
  }
  return KILN_OK;
}

/* A double option as the float TFLite reads (AsFloat), without C's
 * undefined behaviour for out-of-range conversions. */
static float narrow(double d) {
  if (d > FLT_MAX) return INFINITY;
  if (d < -FLT_MAX) return -INFINITY;
  return (float)d;
}

/* The checks TFLite makes (or should make) on the options' values. */
static kiln_status check_options(kiln_prepare_ctx *ctx, const detpp_options *o) {
  if (o->max_detections < 1)
    return kiln_prepare_fail(ctx, KILN_ERR_UNSUPPORTED, "max_detections %lld must be >= 1",
                             (long long)o->max_detections);
  if (o->max_classes_per_detection < 1)
    return kiln_prepare_fail(ctx, KILN_ERR_UNSUPPORTED,
                             "max_classes_per_detection %lld must be >= 1",
                             (long long)o->max_classes_per_detection);
  if (o->use_regular_nms && o->detections_per_class < 1)
    return kiln_prepare_fail(ctx, KILN_ERR_UNSUPPORTED,
                             "detections_per_class %lld must be >= 1 with use_regular_nms",
                             (long long)o->detections_per_class);
  if (o->num_classes < 1)
    return kiln_prepare_fail(ctx, KILN_ERR_FORMAT, "num_classes %lld must be >= 1",
                             (long long)o->num_classes);
  if (o->max_detections * o->max_classes_per_detection > MAX_SLOTS)
    return kiln_prepare_fail(ctx, KILN_ERR_LIMIT,
                             "max_detections %lld x max_classes_per_detection %lld is over %d "
                             "output slots",
                             (long long)o->max_detections, (long long)o->max_classes_per_detection,
                             MAX_SLOTS);
  const float iou = narrow(o->iou_threshold);
  if (!(iou > 0.0f && iou <= 1.0f))
    return kiln_prepare_fail(ctx, KILN_ERR_FORMAT, "nms_iou_threshold %g is not in (0, 1]",
                             o->iou_threshold);
  if (isnan(o->score_threshold))
    return kiln_prepare_fail(ctx, KILN_ERR_FORMAT, "nms_score_threshold is NaN");
  const double scales[4] = {o->y_scale, o->x_scale, o->h_scale, o->w_scale};
  static const char *names[4] = {"y_scale", "x_scale", "h_scale", "w_scale"};
  for (int i = 0; i < 4; i++) {
    if (!isfinite(narrow(scales[i])) || narrow(scales[i]) == 0.0f)
      return kiln_prepare_fail(ctx, KILN_ERR_FORMAT, "%s %g must be finite and nonzero", names[i],
                               scales[i]);
  }
  return KILN_OK;
}

/* float32, or uint8/int8 with per-tensor quantization whose zero point lies
 * in the type's range. */
static kiln_status check_input_type(kiln_prepare_ctx *ctx, const kiln_rt_tensor *t,
                                    const char *what) {
  if (t->dtype == KILN_F32) return KILN_OK;
  if (t->dtype != KILN_U8 && t->dtype != KILN_I8)
    return kiln_prepare_fail(ctx, KILN_ERR_UNSUPPORTED,
                             "%s '%s' is %s; supported: float32, uint8, int8", what, t->name,
                             kiln_dtype_name(t->dtype));
  if (t->quant->count != 1)
    return kiln_prepare_fail(ctx, KILN_ERR_UNSUPPORTED,
                             "%s '%s' is %s without per-tensor quantization (%d scales)", what,
                             t->name, kiln_dtype_name(t->dtype), (int)t->quant->count);
  const int32_t zp = t->quant->zero_point[0];
  const int32_t lo = t->dtype == KILN_U8 ? 0 : -128, hi = t->dtype == KILN_U8 ? 255 : 127;
  const float scale = t->quant->scale[0];
  if (zp < lo || zp > hi || !isfinite(scale) || scale <= 0.0f)
    return kiln_prepare_fail(ctx, KILN_ERR_FORMAT, "%s '%s' has scale %g and zero point %d",
                             what, t->name, (double)scale, (int)zp);
  return KILN_OK;
}

/* Converts n values of t to float (dequantizing uint8/int8). */
static void to_float(const kiln_rt_tensor *t, const void *data, size_t n, float *out) {
  if (t->dtype == KILN_F32) {
    memcpy(out, data, n * sizeof(float));
  } else if (t->dtype == KILN_U8) {
    kiln_u8_detection_dequantize_ref(data, n, t->quant->zero_point[0], t->quant->scale[0], out);
  } else {
    kiln_s8_detection_dequantize_ref(data, n, t->quant->zero_point[0], t->quant->scale[0], out);
  }
}

typedef struct detpp_op {
  kiln_detpp_params p;
  float y_scale, x_scale, h_scale, w_scale;
  int32_t enc_stride;
  const float *anchors; /* [N][4], prepared */
  size_t enc_offset;    /* scratch: dequantized encodings (quantized input only) */
  size_t scores_offset; /* scratch: dequantized scores (quantized input only) */
  size_t decoded_offset;
  size_t nms_offset;
} detpp_op;

static size_t scratch_take(size_t *offset, size_t bytes) {
  const size_t at = *offset;
  *offset += (bytes + 63) & ~(size_t)63;
  return at;
}

static kiln_status check_shapes(kiln_prepare_ctx *ctx, const kiln_rt_tensor *enc,
                                const kiln_rt_tensor *cls, const kiln_rt_tensor *anchors,
                                const detpp_options *o) {
  if (enc->rank != 3 || enc->shape[0] != 1 || enc->shape[1] < 1 || enc->shape[2] < 4)
    return kiln_prepare_fail(ctx, KILN_ERR_FORMAT,
                             "box encodings '%s' must be [1,N,E] with N >= 1 and E >= 4",
                             enc->name);
  const int32_t n = enc->shape[1];
  if (cls->rank != 3 || cls->shape[0] != 1 || cls->shape[1] != n)
    return kiln_prepare_fail(ctx, KILN_ERR_FORMAT, "class predictions '%s' must be [1,%d,C]",
                             cls->name, (int)n);
  const int64_t cb = cls->shape[2];
  if (cb != o->num_classes && cb != o->num_classes + 1)
    return kiln_prepare_fail(ctx, KILN_ERR_FORMAT,
                             "class predictions '%s' have %lld columns; num_classes %lld needs "
                             "%lld, or %lld with a background column",
                             cls->name, (long long)cb, (long long)o->num_classes,
                             (long long)o->num_classes, (long long)o->num_classes + 1);
  if ((int64_t)n * cb > INT32_MAX || (int64_t)n * enc->shape[2] > INT32_MAX)
    return kiln_prepare_fail(ctx, KILN_ERR_LIMIT, "%d anchors x %lld classes is too large",
                             (int)n, (long long)cb);
  if (anchors->rank != 2 || anchors->shape[0] != n || anchors->shape[1] != 4)
    return kiln_prepare_fail(ctx, KILN_ERR_FORMAT, "anchors '%s' must be [%d,4]", anchors->name,
                             (int)n);
  if (!anchors->is_const || !anchors->data)
    return kiln_prepare_fail(ctx, KILN_ERR_UNSUPPORTED,
                             "anchors '%s' must be a constant tensor", anchors->name);
  return KILN_OK;
}

/* Anchors as float; negative sizes are refused because TFLite's invoke
 * fails on the inverted boxes they decode to. */
static kiln_status prepare_anchors(kiln_prepare_ctx *ctx, const kiln_rt_tensor *t, int32_t n,
                                   detpp_op *op) {
  float *anchors = kiln_prepare_alloc(ctx, (size_t)n * 4 * sizeof(float));
  if (!anchors) return kiln_prepare_nomem(ctx);
  to_float(t, t->data, (size_t)n * 4, anchors);
  for (int32_t i = 0; i < n; i++) {
    const float h = anchors[4 * i + 2], w = anchors[4 * i + 3];
    if (h < 0.0f || w < 0.0f)
      return kiln_prepare_fail(ctx, KILN_ERR_FORMAT,
                               "anchor %d of '%s' has negative size (h %g, w %g)", (int)i,
                               t->name, (double)h, (double)w);
  }
  op->anchors = anchors;
  return KILN_OK;
}

static kiln_status prepare_detpp(kiln_node *node, kiln_prepare_ctx *ctx) {
  if (node->n_inputs != 3 || node->n_outputs != 4)
    return kiln_prepare_fail(ctx, KILN_ERR_FORMAT, "expects 3 inputs and 4 outputs, has %d and %d",
                             (int)node->n_inputs, (int)node->n_outputs);
  for (int32_t i = 0; i < 3; i++)
    if (!node->inputs[i])
      return kiln_prepare_fail(ctx, KILN_ERR_FORMAT, "input %d is missing", (int)i);
  detpp_options o;
  kiln_status st = parse_options(node, ctx, &o);
  if (st != KILN_OK) return st;
  if ((st = check_options(ctx, &o)) != KILN_OK) return st;
  const kiln_rt_tensor *enc = node->inputs[0], *cls = node->inputs[1], *anc = node->inputs[2];
  if ((st = check_input_type(ctx, enc, "box encodings")) != KILN_OK) return st;
  if ((st = check_input_type(ctx, cls, "class predictions")) != KILN_OK) return st;
  if ((st = check_input_type(ctx, anc, "anchors")) != KILN_OK) return st;
  if ((st = check_shapes(ctx, enc, cls, anc, &o)) != KILN_OK) return st;

  detpp_op *op = kiln_prepare_alloc(ctx, sizeof *op);
  if (!op) return kiln_prepare_nomem(ctx);
  const int32_t n = enc->shape[1];
  op->p.num_boxes = n;
  op->p.num_classes = (int32_t)o.num_classes;
  op->p.num_classes_with_bg = cls->shape[2];
  op->p.max_detections = (int32_t)o.max_detections;
  op->p.max_classes_per_detection = (int32_t)o.max_classes_per_detection;
  op->p.detections_per_class = o.use_regular_nms ? (int32_t)o.detections_per_class : 1;
  op->p.use_regular_nms = o.use_regular_nms;
  op->p.score_threshold = narrow(o.score_threshold);
  op->p.iou_threshold = narrow(o.iou_threshold);
  op->y_scale = narrow(o.y_scale);
  op->x_scale = narrow(o.x_scale);
  op->h_scale = narrow(o.h_scale);
  op->w_scale = narrow(o.w_scale);
  op->enc_stride = enc->shape[2];
  if ((st = prepare_anchors(ctx, anc, n, op)) != KILN_OK) return st;

  const int32_t slots = op->p.max_detections * op->p.max_classes_per_detection;
  const int32_t box_shape[3] = {1, slots, 4}, vec_shape[2] = {1, slots}, one[1] = {1};
  for (int32_t i = 0; i < 4; i++) {
    if (node->outputs[i]->dtype != KILN_F32)
      return kiln_prepare_fail(ctx, KILN_ERR_FORMAT, "output %d '%s' is %s, expected float32",
                               (int)i, node->outputs[i]->name,
                               kiln_dtype_name(node->outputs[i]->dtype));
  }
  if ((st = kiln_prepare_set_output_shape(ctx, node->outputs[0], 3, box_shape)) != KILN_OK ||
      (st = kiln_prepare_set_output_shape(ctx, node->outputs[1], 2, vec_shape)) != KILN_OK ||
      (st = kiln_prepare_set_output_shape(ctx, node->outputs[2], 2, vec_shape)) != KILN_OK ||
      (st = kiln_prepare_set_output_shape(ctx, node->outputs[3], 1, one)) != KILN_OK)
    return st;

  size_t off = 0;
  if (enc->dtype != KILN_F32)
    op->enc_offset = scratch_take(&off, (size_t)n * (size_t)op->enc_stride * sizeof(float));
  if (cls->dtype != KILN_F32)
    op->scores_offset =
        scratch_take(&off, (size_t)n * (size_t)op->p.num_classes_with_bg * sizeof(float));
  op->decoded_offset = scratch_take(&off, (size_t)n * 4 * sizeof(float));
  op->nms_offset = scratch_take(&off, kiln_detection_nms_scratch_bytes(&op->p));
  node->scratch_bytes = off;
  node->params = op;
  return KILN_OK;
}

static void eval_detpp(const kiln_node *node, const kiln_eval_ctx *ctx) {
  const detpp_op *op = node->params;
  uint8_t *scratch = ctx->scratch;
  const kiln_rt_tensor *enc_t = node->inputs[0], *cls_t = node->inputs[1];
  const size_t n = (size_t)op->p.num_boxes;
  const float *enc = enc_t->data;
  if (enc_t->dtype != KILN_F32) {
    float *f = (float *)(void *)(scratch + op->enc_offset);
    to_float(enc_t, enc_t->data, n * (size_t)op->enc_stride, f);
    enc = f;
  }
  const float *scores = cls_t->data;
  if (cls_t->dtype != KILN_F32) {
    float *f = (float *)(void *)(scratch + op->scores_offset);
    to_float(cls_t, cls_t->data, n * (size_t)op->p.num_classes_with_bg, f);
    scores = f;
  }
  float *decoded = (float *)(void *)(scratch + op->decoded_offset);
  kiln_f32_detection_decode_ref(enc, op->enc_stride, op->anchors, op->p.num_boxes, op->y_scale,
                                op->x_scale, op->h_scale, op->w_scale, decoded);
  const int32_t count =
      kiln_f32_detection_nms_ref(&op->p, decoded, scores, scratch + op->nms_offset,
                                 node->outputs[0]->data, node->outputs[1]->data,
                                 node->outputs[2]->data);
  ((float *)node->outputs[3]->data)[0] = (float)count;
}

const kiln_op_reg kiln_ops_detect[] = {
    {KILN_OP_CUSTOM, "TFLite_Detection_PostProcess", {prepare_detpp, eval_detpp}},
    {-1, NULL, {NULL, NULL}},
};
