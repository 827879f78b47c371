/*
 * On-device learning, the new layers (kiln/ondevice.h "Output models"):
 * a copy of the extractor with FULLY_CONNECTED [-> MUL] -> SOFTMAX
 * appended, full integer after an int8 embedding (TFLite int8 spec), float
 * after a float one, plus the labels and the base's input normalization as
 * metadata.
 */
#include <math.h>
#include <string.h>

#include "kiln/trainer.h"
#include "train/ondevice_int.h"

typedef struct head_builder {
  kiln_model *m;
  bool q; /* int8 layers */
  kiln_error *err;
} head_builder;

/* A tensor of the new layers; quantized (scale, zp) when the head is int8
 * and dtype is not float. -1 on failure (err set). */
static int32_t add(head_builder *hb, const char *name, kiln_dtype dtype, int32_t rank,
                   const int32_t *shape, float scale, int32_t zp, const void *data) {
  kiln_quant q = {1, 0, &scale, &zp};
  return kiln_model_add_tensor(hb->m, name, dtype, rank, shape, dtype == KILN_F32 ? NULL : &q,
                               data, hb->err);
}

static int32_t add_op(head_builder *hb, int32_t code, uint8_t options, const int32_t *ins,
                      int32_t n_ins, int32_t out) {
  kiln_op_options o;
  memset(&o, 0, sizeof o);
  o.type = options;
  o.new_shape_count = -1;
  o.beta = 1.0f;
  const int32_t i = kiln_model_add_op(hb->m, code, NULL, ins, n_ins, &out, 1, &o, NULL, 0, hb->err);
  /* TFLite op versions of the int8 forms (op_version.cc); float ones are 1. */
  if (i >= 0 && hb->q) hb->m->ops[i].version = code == KILN_OP_FULLY_CONNECTED ? 4 : 2;
  return i;
}

/* FULLY_CONNECTED from the embedding e: *out gets its output tensor, and
 * (int8) *o_scale, *o_zp its quantization. */
static kiln_status add_fc(head_builder *hb, const od_head *h, int32_t dim, int32_t e,
                          int32_t *out, float *o_scale, int32_t *o_zp) {
  const int32_t n = h->classes;
  const int32_t w_shape[2] = {n, dim}, o_shape[2] = {1, n};
  int32_t wt, bt = -1, ot;
  if (!hb->q) {
    wt = add(hb, "classifier/weights", KILN_F32, 2, w_shape, 0, 0, h->w);
    if (h->b) bt = add(hb, "classifier/bias", KILN_F32, 1, &n, 0, 0, h->b);
    ot = add(hb, "classifier/logits", KILN_F32, 2, o_shape, 0, 0, NULL);
  } else {
    int8_t *wq = kiln_model_alloc(hb->m, (size_t)n * dim);
    int32_t *bq = kiln_model_alloc(hb->m, (size_t)n * sizeof *bq);
    if (!wq || !bq) return kiln_fail(hb->err, KILN_ERR_NOMEM, "classifier: %d x %d", (int)n, (int)dim);
    float w_scale;
    od_quantize_symmetric(h->w, (int64_t)n * dim, wq, &w_scale);
    if (h->imprint && w_scale < 1.0f / 127.0f) {
      /* Unit rows: scale 1/127 keeps every cosine in the output's range. */
      w_scale = 1.0f / 127.0f;
      for (int64_t k = 0; k < (int64_t)n * dim; k++) wq[k] = (int8_t)roundf(h->w[k] * 127.0f);
    }
    const float in_scale = 1.0f / 128.0f, b_scale = in_scale * w_scale;
    for (int32_t c = 0; c < n; c++) {
      const double v = h->b ? round((double)h->b[c] / b_scale) : 0.0;
      bq[c] = v > INT32_MAX ? INT32_MAX : (v < -INT32_MAX ? -INT32_MAX : (int32_t)v);
    }
    od_int8_params(h->logit_min, h->logit_max, o_scale, o_zp);
    wt = add(hb, "classifier/weights", KILN_I8, 2, w_shape, w_scale, 0, wq);
    bt = add(hb, "classifier/bias", KILN_I32, 1, &n, b_scale, 0, bq);
    ot = add(hb, "classifier/logits", KILN_I8, 2, o_shape, *o_scale, *o_zp, NULL);
  }
  if (wt < 0 || ((h->b || hb->q) && bt < 0) || ot < 0 ||
      add_op(hb, KILN_OP_FULLY_CONNECTED, KILN_OPTS_FULLY_CONNECTED, (int32_t[]){e, wt, bt}, 3, ot) < 0)
    return hb->err ? hb->err->status : KILN_ERR_INTERNAL;
  *out = ot;
  return KILN_OK;
}

/* MUL by the imprinting scale s. int8: s is 127 at scale s/127 and the
 * output has the input's zero point and s times its scale (the rescale is
 * 1/127, so the output equals the input's integers: libcoral's form). */
static kiln_status add_mul(head_builder *hb, const od_head *h, int32_t x, float in_scale,
                           int32_t in_zp, int32_t *out) {
  const int32_t one = 1, shape[2] = {1, h->classes};
  const float s = h->scale;
  const int8_t q = 127;
  const int32_t st = hb->q ? add(hb, "classifier/scale", KILN_I8, 1, &one, s / 127.0f, 0, &q)
                           : add(hb, "classifier/scale", KILN_F32, 1, &one, 0, 0, &s);
  const int32_t ot = hb->q ? add(hb, "classifier/scaled_logits", KILN_I8, 2, shape, s * in_scale,
                                 in_zp, NULL)
                           : add(hb, "classifier/scaled_logits", KILN_F32, 2, shape, 0, 0, NULL);
  if (st < 0 || ot < 0 || add_op(hb, KILN_OP_MUL, KILN_OPTS_MUL, (int32_t[]){x, st}, 2, ot) < 0)
    return hb->err ? hb->err->status : KILN_ERR_INTERNAL;
  *out = ot;
  return KILN_OK;
}

kiln_status od_build_model(const kiln_ondevice *od, const od_head *h, kiln_model **out,
                           kiln_error *err) {
  *out = NULL;
  kiln_model *m;
  const kiln_model *x = od->extractor;
  kiln_status s = kiln_trainer_submodel(x, x->outputs[0], &m, err);
  if (s != KILN_OK) return s;
  head_builder hb = {m, od->dtype == KILN_I8, err};
  int32_t t = m->outputs[0], scores = -1, o_zp = 0;
  float o_scale = 0.0f;
  const int32_t shape[2] = {1, h->classes};
  if ((s = add_fc(&hb, h, od->dim, t, &t, &o_scale, &o_zp)) != KILN_OK) goto fail;
  if (h->imprint && (s = add_mul(&hb, h, t, o_scale, o_zp, &t)) != KILN_OK) goto fail;
  scores = hb.q ? add(&hb, "scores", KILN_I8, 2, shape, 1.0f / 256.0f, -128, NULL)
                : add(&hb, "scores", KILN_F32, 2, shape, 0, 0, NULL);
  if (scores < 0 || add_op(&hb, KILN_OP_SOFTMAX, KILN_OPTS_SOFTMAX, &t, 1, scores) < 0) {
    s = err ? err->status : KILN_ERR_INTERNAL;
    goto fail;
  }
  if ((s = kiln_model_set_io(m, m->inputs, m->n_inputs, &scores, 1, err)) != KILN_OK) goto fail;
  if ((s = kiln_trainer_set_labels(m, h->names, h->classes, err)) != KILN_OK) goto fail;
  kiln_image_norm norm;
  if (kiln_trainer_get_norm(od->base, &norm) && (s = kiln_trainer_set_norm(m, &norm, err)) != KILN_OK)
    goto fail;
  char *desc = kiln_model_alloc(m, strlen(h->description) + 1);
  if (!desc) {
    s = kiln_fail(err, KILN_ERR_NOMEM, "model description");
    goto fail;
  }
  memcpy(desc, h->description, strlen(h->description) + 1);
  m->description = desc;
  *out = m;
  return KILN_OK;
fail:
  kiln_model_free(m);
  return s;
}
