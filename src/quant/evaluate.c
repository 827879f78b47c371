/*
 * Float vs int8 agreement on held-out samples (kiln_quant_evaluate*): both
 * models see the same float input values (the int8 model's input quantized
 * with its own parameters when it is an integer input); outputs are
 * compared after dequantizing, as SQNR and cosine similarity per output.
 */
#include <math.h>
#include <string.h>

#include "kiln/interp.h"
#include "kiln/quant.h"
#include "kiln/vision.h"

typedef struct acc {
  double signal, noise, dot, norm_f, norm_q, max_abs;
} acc;

static kiln_status fill_int8_input(kiln_interp *it, const float *x, int64_t n, kiln_error *err) {
  kiln_tensor_view v = kiln_interp_input(it, 0);
  if ((int64_t)(v.bytes / kiln_dtype_size(v.dtype)) != n)
    return kiln_fail(err, KILN_ERR_INVALID_ARG, "the models' inputs differ in size");
  if (v.dtype == KILN_F32) {
    memcpy(v.data, x, (size_t)n * sizeof(float));
    return KILN_OK;
  }
  if (!v.quant || v.quant->count != 1)
    return kiln_fail(err, KILN_ERR_UNSUPPORTED, "input '%s' lacks per-tensor quantization", v.name);
  const float s = v.quant->scale[0];
  const int32_t z = v.quant->zero_point[0];
  const int32_t lo = v.dtype == KILN_U8 ? 0 : -128, hi = v.dtype == KILN_U8 ? 255 : 127;
  for (int64_t i = 0; i < n; i++) {
    long q = lroundf(x[i] / s) + z;
    q = q < lo ? lo : (q > hi ? hi : q);
    if (v.dtype == KILN_U8) ((uint8_t *)v.data)[i] = (uint8_t)q;
    else ((int8_t *)v.data)[i] = (int8_t)q;
  }
  return KILN_OK;
}

/* Samples are images (filled with norm) or raw float inputs. */
typedef struct samples {
  const kiln_image *images;
  const float *const *raw;
  int32_t n;
  const kiln_image_norm *norm;
} samples;

static kiln_status fill_float_input(kiln_interp *fi, const samples *src, int32_t k, kiln_error *err) {
  if (src->images) return kiln_vision_set_input(fi, 0, &src->images[k], src->norm, err);
  kiln_tensor_view in = kiln_interp_input(fi, 0);
  memcpy(in.data, src->raw[k], in.bytes);
  return KILN_OK;
}

static kiln_status evaluate(const kiln_model *float_model, const kiln_model *int8_model,
                            const samples *src, kiln_quant_eval *out, kiln_error *err) {
  const int32_t n_images = src->n;
  memset(out, 0, sizeof *out);
  if (float_model->n_inputs != 1 || int8_model->n_inputs != 1 ||
      float_model->n_outputs != int8_model->n_outputs)
    return kiln_fail(err, KILN_ERR_INVALID_ARG,
                     "evaluation needs one image input and the same outputs in both models");
  kiln_interp *fi = NULL, *qi = NULL;
  float *fo = NULL, *qo = NULL;
  acc *a = kiln_calloc((size_t)float_model->n_outputs, sizeof *a);
  kiln_status s = a ? KILN_OK : kiln_fail(err, KILN_ERR_NOMEM, "out of memory");
  if (s == KILN_OK) s = kiln_interp_create(float_model, NULL, &fi, err);
  if (s == KILN_OK) s = kiln_interp_create(int8_model, NULL, &qi, err);
  int64_t max_out = 0;
  for (int32_t o = 0; s == KILN_OK && o < float_model->n_outputs; o++) {
    kiln_tensor_view fv = kiln_interp_output(fi, o), qv = kiln_interp_output(qi, o);
    int64_t nf = (int64_t)(fv.bytes / kiln_dtype_size(fv.dtype)), nq = (int64_t)(qv.bytes / kiln_dtype_size(qv.dtype));
    if (nf != nq)
      s = kiln_fail(err, KILN_ERR_INVALID_ARG, "output %d: %lld float elements vs %lld int8", (int)o,
                    (long long)nf, (long long)nq);
    if (nf > max_out) max_out = nf;
  }
  if (s == KILN_OK) {
    fo = kiln_malloc((size_t)max_out * sizeof(float));
    qo = kiln_malloc((size_t)max_out * sizeof(float));
    if (!fo || !qo) s = kiln_fail(err, KILN_ERR_NOMEM, "out of memory");
  }
  for (int32_t k = 0; s == KILN_OK && k < n_images; k++) {
    s = fill_float_input(fi, src, k, err);
    kiln_tensor_view in = kiln_interp_input(fi, 0);
    if (s == KILN_OK) s = fill_int8_input(qi, in.data, (int64_t)(in.bytes / sizeof(float)), err);
    if (s == KILN_OK) s = kiln_interp_invoke(fi, err);
    if (s == KILN_OK) s = kiln_interp_invoke(qi, err);
    for (int32_t o = 0; s == KILN_OK && o < float_model->n_outputs; o++) {
      kiln_tensor_view fv = kiln_interp_output(fi, o);
      int64_t n = (int64_t)(fv.bytes / kiln_dtype_size(fv.dtype));
      s = kiln_vision_output_float(fi, o, fo, n, err);
      if (s == KILN_OK) s = kiln_vision_output_float(qi, o, qo, n, err);
      for (int64_t i = 0; s == KILN_OK && i < n; i++) {
        double f = fo[i], q = qo[i], d = f - q;
        a[o].signal += f * f;
        a[o].noise += d * d;
        a[o].dot += f * q;
        a[o].norm_f += f * f;
        a[o].norm_q += q * q;
        if (fabs(d) > a[o].max_abs) a[o].max_abs = fabs(d);
      }
    }
  }
  if (s == KILN_OK) {
    out->outputs = kiln_calloc((size_t)float_model->n_outputs, sizeof *out->outputs);
    if (!out->outputs) s = kiln_fail(err, KILN_ERR_NOMEM, "out of memory");
  }
  if (s == KILN_OK) {
    out->samples = n_images;
    out->n_outputs = float_model->n_outputs;
    for (int32_t o = 0; o < out->n_outputs; o++) {
      kiln_quant_output_eval *e = &out->outputs[o];
      e->name = float_model->tensors[float_model->outputs[o]].name;
      e->sqnr_db = a[o].noise > 0 ? 10.0 * log10(a[o].signal / a[o].noise) : INFINITY;
      e->cosine = a[o].norm_f > 0 && a[o].norm_q > 0 ? a[o].dot / sqrt(a[o].norm_f * a[o].norm_q) : 0.0;
      e->max_abs_error = a[o].max_abs;
    }
  }
  kiln_free(a);
  kiln_free(fo);
  kiln_free(qo);
  kiln_interp_free(fi);
  kiln_interp_free(qi);
  return s;
}

kiln_status kiln_quant_evaluate(const kiln_model *float_model, const kiln_model *int8_model,
                                const kiln_image *images, int32_t n_images,
                                const kiln_image_norm *norm, kiln_quant_eval *out,
                                kiln_error *err) {
  samples src = {images, NULL, n_images, norm};
  return evaluate(float_model, int8_model, &src, out, err);
}

kiln_status kiln_quant_evaluate_inputs(const kiln_model *float_model, const kiln_model *int8_model,
                                       const float *const *inputs, int32_t n_samples,
                                       kiln_quant_eval *out, kiln_error *err) {
  samples src = {NULL, inputs, n_samples, NULL};
  return evaluate(float_model, int8_model, &src, out, err);
}

void kiln_quant_eval_free(kiln_quant_eval *e) {
  kiln_free(e->outputs);
  memset(e, 0, sizeof *e);
}
