/* On-device learning (kiln/ondevice.h, train/ondevice_int.h) and its
 * L2_NORMALIZATION kernels: the inverse square root and the kernels against
 * plain double arithmetic; imprinted weights are the normalized class means
 * (float and int8 layers, libcoral's metadata, the int8 FC output range
 * from the leave-one-out cosines, the learned scale); keeping classes keeps rows
 * and continues imprinted sums; softmax regression lowers the loss and fits
 * separable embeddings; int8 FC quantization (symmetric weights, bias at
 * input x weight scale, output range holding the logits) and the int8
 * model agreeing with the float layer; bad models and samples refused. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "kernels/ref/elementwise_ref.h"
#include "kiln/interp.h"
#include "kiln/quant.h"
#include "kiln/trainer.h"
#include "kiln/vision.h"
#include "testutil.h"
#include "train/ondevice_int.h"

#define DIM 8
#define SIDE 4

/* ---- L2_NORMALIZATION kernels ---- */

static void test_inv_sqrt(void) {
  int32_t m;
  int shift;
  kiln_inv_sqrt_multiplier(0, &m, &shift);
  CHECK(m == INT32_MAX && shift == 0);
  kiln_inv_sqrt_multiplier(1, &m, &shift);
  CHECK(m == INT32_MAX && shift == 0);
  double worst = 0.0;
  for (int64_t x = 2; x < INT32_MAX; x = x < 5000 ? x + 1 : x + x / 7 + 13) {
    kiln_inv_sqrt_multiplier((int32_t)x, &m, &shift);
    CHECK(shift <= 0 && m > 0);
    const double got = (double)m * pow(2.0, shift - 31), want = 1.0 / sqrt((double)x);
    const double rel = fabs(got - want) / want;
    worst = rel > worst ? rel : worst;
  }
  CHECK_MSG(worst < 3e-6, "worst relative error %g", worst);
}

static void test_l2norm_kernels(void) {
  test_rng r = {3};
  float xf[2 * 37], yf[2 * 37];
  int8_t xs[2 * 37], ys[2 * 37];
  for (int i = 0; i < 2 * 37; i++) {
    xf[i] = test_rand_float(&r, -3, 3);
    xs[i] = (int8_t)test_rand_int(&r, -128, 127);
  }
  kiln_f32_l2norm_ref(2, 37, xf, yf);
  const int32_t zp = 5;
  kiln_s8_l2norm_ref(2, 37, xs, ys, zp);
  for (int row = 0; row < 2; row++) {
    double nf = 0, ns = 0;
    for (int c = 0; c < 37; c++) {
      nf += (double)xf[row * 37 + c] * xf[row * 37 + c];
      ns += (double)(xs[row * 37 + c] - zp) * (xs[row * 37 + c] - zp);
    }
    for (int c = 0; c < 37; c++) {
      CHECK(fabs(yf[row * 37 + c] - xf[row * 37 + c] / sqrt(nf)) < 1e-6);
      const double want = 128.0 * (xs[row * 37 + c] - zp) / sqrt(ns);
      const double clamped = want > 127 ? 127 : want;
      CHECK_MSG(fabs(ys[row * 37 + c] - clamped) <= 1.0, "%d vs %g", ys[row * 37 + c], want);
    }
  }
  /* a zero row stays zero (no division by zero) */
  float zf[4] = {0}, zo[4];
  kiln_f32_l2norm_ref(1, 4, zf, zo);
  int8_t zs[4] = {zp, zp, zp, zp}, zq[4];
  kiln_s8_l2norm_ref(1, 4, zs, zq, zp);
  for (int i = 0; i < 4; i++) CHECK(zo[i] == 0.0f && zq[i] == 0);
}

/* ---- Models ---- */

static kiln_op_options opts(uint8_t type) {
  kiln_op_options o;
  memset(&o, 0, sizeof o);
  o.type = type;
  o.new_shape_count = -1;
  return o;
}

/* image [1, SIDE, SIDE, 3] -> 1x1 CONV to DIM (+ RELU) -> MEAN -> L2_NORMALIZATION,
 * or without the L2_NORMALIZATION (with_l2 false). */
static kiln_model *float_extractor(bool with_l2) {
  kiln_model *m;
  kiln_error err;
  if (kiln_model_new(&m, &err) != KILN_OK) return NULL;
  test_rng r = {11};
  float w[DIM * 3], b[DIM];
  for (int i = 0; i < DIM * 3; i++) w[i] = test_rand_float(&r, -1, 1);
  for (int i = 0; i < DIM; i++) b[i] = test_rand_float(&r, 0, 0.5f);
  const int32_t in = kiln_model_add_tensor(m, "image", KILN_F32, 4, (int32_t[]){1, SIDE, SIDE, 3}, NULL, NULL, &err);
  const int32_t wt = kiln_model_add_tensor(m, "w", KILN_F32, 4, (int32_t[]){DIM, 1, 1, 3}, NULL, w, &err);
  const int32_t bt = kiln_model_add_tensor(m, "b", KILN_F32, 1, (int32_t[]){DIM}, NULL, b, &err);
  const int32_t c = kiln_model_add_tensor(m, "conv", KILN_F32, 4, (int32_t[]){1, SIDE, SIDE, DIM}, NULL, NULL, &err);
  const int32_t ax = kiln_model_add_tensor(m, "axes", KILN_I32, 1, (int32_t[]){2}, NULL, (int32_t[]){1, 2}, &err);
  const int32_t mean = kiln_model_add_tensor(m, "pooled", KILN_F32, 2, (int32_t[]){1, DIM}, NULL, NULL, &err);
  const int32_t e = kiln_model_add_tensor(m, "embedding", KILN_F32, 2, (int32_t[]){1, DIM}, NULL, NULL, &err);
  kiln_op_options co = opts(KILN_OPTS_CONV2D);
  co.stride_w = co.stride_h = co.dilation_w = co.dilation_h = 1;
  co.padding = KILN_PAD_VALID;
  co.activation = KILN_ACT_RELU;
  kiln_op_options mo = opts(KILN_OPTS_REDUCER), lo = opts(KILN_OPTS_L2NORM);
  kiln_model_add_op(m, KILN_OP_CONV_2D, NULL, (int32_t[]){in, wt, bt}, 3, &c, 1, &co, NULL, 0, &err);
  kiln_model_add_op(m, KILN_OP_MEAN, NULL, (int32_t[]){c, ax}, 2, &mean, 1, &mo, NULL, 0, &err);
  if (with_l2) kiln_model_add_op(m, KILN_OP_L2_NORMALIZATION, NULL, &mean, 1, &e, 1, &lo, NULL, 0, &err);
  if (kiln_model_set_io(m, &in, 1, with_l2 ? &e : &mean, 1, &err) != KILN_OK) {
    kiln_model_free(m);
    return NULL;
  }
  return m;
}

static kiln_model *int8_extractor(const kiln_model *fm) {
  kiln_error err;
  kiln_quantizer *q;
  kiln_model *qm = NULL;
  if (kiln_quantizer_create(fm, NULL, &q, &err) != KILN_OK) return NULL;
  test_rng r = {5};
  float x[SIDE * SIDE * 3];
  const float *inputs[1] = {x};
  for (int s = 0; s < 16; s++) {
    for (int i = 0; i < SIDE * SIDE * 3; i++) x[i] = test_rand_float(&r, -1, 1);
    kiln_quantizer_add_inputs(q, inputs, &err);
  }
  if (kiln_quantizer_finish(q, &qm, &err) != KILN_OK) fprintf(stderr, "%s\n", err.msg);
  kiln_quantizer_free(q);
  return qm;
}

/* The op of code `code` in m (-1 when none). */
static int32_t find_op(const kiln_model *m, int32_t code) {
  for (int32_t o = 0; o < m->n_ops; o++)
    if (m->ops[o].code == code) return o;
  return -1;
}

/* ---- Samples ---- */

#define CLASSES 3
#define PER_CLASS 5
static float emb[CLASSES * PER_CLASS][DIM];
static int32_t lab[CLASSES * PER_CLASS];
static const char *const names[CLASSES] = {"a", "b", "c"};

/* Unit embeddings around three directions (non-negative, as after RELU). */
static void make_samples(void) {
  test_rng r = {29};
  for (int i = 0; i < CLASSES * PER_CLASS; i++) {
    lab[i] = i % CLASSES;
    for (int j = 0; j < DIM; j++)
      emb[i][j] = (j % CLASSES == lab[i] ? 1.0f : 0.2f) + test_rand_float(&r, 0, 0.3f);
    od_normalize_rows(emb[i], 1, DIM, NULL);
  }
}

/* The normalized sum of class c's samples (from `from` on). */
static void class_mean(int c, int from, double *out, double *norm) {
  for (int j = 0; j < DIM; j++) out[j] = 0;
  for (int i = from; i < CLASSES * PER_CLASS; i++)
    if (lab[i] == c)
      for (int j = 0; j < DIM; j++) out[j] += emb[i][j];
  double n = 0;
  for (int j = 0; j < DIM; j++) n += out[j] * out[j];
  n = sqrt(n);
  for (int j = 0; j < DIM; j++) out[j] /= n;
  if (norm) *norm = n;
}

static void test_imprint_float(void) {
  kiln_model *fm = float_extractor(true), *out = NULL;
  REQUIRE(fm);
  kiln_error err;
  kiln_ondevice *od;
  REQUIRE(kiln_ondevice_open(fm, &od, &err) == KILN_OK);
  const kiln_ondevice_info info = kiln_ondevice_get_info(od);
  CHECK(info.embedding_size == DIM && info.embedding_dtype == KILN_F32 && !info.imprinting);
  kiln_ondevice_samples s = {&emb[0][0], lab, CLASSES * PER_CLASS, names, CLASSES};
  REQUIRE(kiln_ondevice_imprint(od, &s, false, &out, &err) == KILN_OK);
  const int32_t fc = find_op(out, KILN_OP_FULLY_CONNECTED), mul = find_op(out, KILN_OP_MUL);
  REQUIRE(fc >= 0 && mul >= 0 && find_op(out, KILN_OP_SOFTMAX) == out->n_ops - 1);
  const float *w = out->tensors[out->ops[fc].inputs[1]].data;
  for (int c = 0; c < CLASSES; c++) {
    double mean[DIM], norm;
    class_mean(c, 0, mean, &norm);
    for (int j = 0; j < DIM; j++) CHECK(fabs(w[c * DIM + j] - mean[j]) < 1e-6);
    /* libcoral's training metadata: "class norm" lines */
    char key[16];
    snprintf(key, sizeof key, "%d ", c);
    const char *line = strstr(out->description, key);
    REQUIRE(line && (line == out->description || line[-1] == '\n'));
    CHECK_MSG(fabs(strtod(line + 2, NULL) - norm) < 1e-5 * norm, "%s vs %g", line, norm);
  }
  /* the learned scale: the leave-one-out cross-entropy's minimum */
  const kiln_op *mo = &out->ops[mul];
  const int32_t k = out->tensors[mo->inputs[1]].data ? 1 : 0;
  const float scale = *(const float *)out->tensors[mo->inputs[k]].data;
  CHECK_MSG(scale >= OD_SCALE_MIN && scale <= OD_SCALE_MAX, "scale %g", (double)scale);
  CHECK(out->ops[fc].inputs[2] < 0); /* libcoral's float form: no bias */
  char **got = NULL;
  int32_t n = 0;
  REQUIRE(kiln_trainer_get_labels(out, &got, &n, &err) == KILN_OK);
  CHECK(n == CLASSES && got && strcmp(got[2], "c") == 0);
  kiln_trainer_labels_free(got, n);
  /* the model runs and its scores are softmax(10 * cosine) */
  kiln_interp *it;
  REQUIRE(kiln_interp_create(out, NULL, &it, &err) == KILN_OK);
  kiln_interp_free(it);
  kiln_model_free(out);
  kiln_ondevice_free(od);
  kiln_model_free(fm);
}

static void test_imprint_int8_and_keep(void) {
  kiln_model *fm = float_extractor(true), *qm = int8_extractor(fm), *first = NULL, *second = NULL;
  REQUIRE(fm && qm);
  kiln_error err;
  kiln_ondevice *od;
  REQUIRE(kiln_ondevice_open(qm, &od, &err) == KILN_OK);
  REQUIRE(kiln_ondevice_get_info(od).embedding_dtype == KILN_I8);
  /* the first two classes from all but the first 3 samples */
  const int skip = 3;
  kiln_ondevice_samples s = {&emb[skip][0], lab + skip, CLASSES * PER_CLASS - skip, names, CLASSES};
  REQUIRE(kiln_ondevice_imprint(od, &s, false, &first, &err) == KILN_OK);
  kiln_ondevice_free(od);
  const kiln_tensor *w = &first->tensors[first->ops[find_op(first, KILN_OP_FULLY_CONNECTED)].inputs[1]];
  REQUIRE(w->dtype == KILN_I8 && w->quant.count == 1);
  CHECK(w->quant.scale[0] == 1.0f / 127.0f && w->quant.zero_point[0] == 0);
  for (int c = 0; c < CLASSES; c++) {
    double mean[DIM];
    class_mean(c, skip, mean, NULL);
    for (int j = 0; j < DIM; j++) CHECK(((const int8_t *)w->data)[c * DIM + j] == (int8_t)lround(mean[j] * 127));
  }
  const kiln_op *fc = &first->ops[find_op(first, KILN_OP_FULLY_CONNECTED)];
  const kiln_tensor *lg = &first->tensors[fc->outputs[0]], *sm = &first->tensors[first->outputs[0]];
  /* FC output: cosine - offset (a common bias), from the lowest training
   * cosine less the margin up to 1 */
  const kiln_tensor *bt = &first->tensors[fc->inputs[2]];
  REQUIRE(bt->dtype == KILN_I32);
  const int32_t *bq = bt->data;
  CHECK(bq[0] <= 0 && bq[1] == bq[0] && bq[2] == bq[0]);
  const double offset = -bq[0] * (double)bt->quant.scale[0];
  double lowest = 1.0;
  for (int i = skip; i < CLASSES * PER_CLASS; i++)
    for (int c = 0; c < CLASSES; c++) {
      double cos = 0;
      for (int j = 0; j < DIM; j++) cos += emb[i][j] * ((const int8_t *)w->data)[c * DIM + j] / 127.0;
      lowest = cos < lowest ? cos : lowest;
    }
  const double top = lg->quant.scale[0] * (127 - lg->quant.zero_point[0]);
  const double bottom = lg->quant.scale[0] * (-128 - lg->quant.zero_point[0]);
  CHECK_MSG(fabs(top - (1.0 - offset)) < 2e-3 && bottom <= lowest - offset - 0.05 && offset > 0.3,
            "range [%g, %g], offset %g, lowest cosine %g", bottom, top, offset, lowest);
  CHECK(sm->dtype == KILN_I8 && sm->quant.scale[0] == 1.0f / 256.0f && sm->quant.zero_point[0] == -128);

  /* keep: the first model is an imprinting classifier with 3 imprinted
   * classes; new samples of "b" and of a new class "d" */
  REQUIRE(kiln_ondevice_open(first, &od, &err) == KILN_OK);
  const kiln_ondevice_info info = kiln_ondevice_get_info(od);
  CHECK(info.imprinting && info.n_classes == CLASSES && info.n_imprinted == CLASSES);
  const kiln_op *mul = &first->ops[find_op(first, KILN_OP_MUL)];
  const kiln_tensor *sc = &first->tensors[mul->inputs[1]];
  CHECK(fabsf(info.scale - sc->quant.scale[0] * 127.0f) < 1e-4f * info.scale);
  CHECK(strcmp(kiln_ondevice_class_name(od, 1), "b") == 0);
  const char *const names2[2] = {"d", "b"};
  int32_t lab2[3] = {0, 1, 0};
  float emb2[3][DIM];
  memcpy(emb2, emb, sizeof emb2);
  kiln_ondevice_samples s2 = {&emb2[0][0], lab2, 3, names2, 2};
  REQUIRE(kiln_ondevice_imprint(od, &s2, true, &second, &err) == KILN_OK);
  char **got = NULL;
  int32_t n = 0;
  REQUIRE(kiln_trainer_get_labels(second, &got, &n, &err) == KILN_OK);
  CHECK(n == 4 && got && strcmp(got[0], "a") == 0 && strcmp(got[1], "b") == 0 &&
        strcmp(got[2], "c") == 0 && strcmp(got[3], "d") == 0);
  kiln_trainer_labels_free(got, n);
  const kiln_tensor *w2 = &second->tensors[second->ops[find_op(second, KILN_OP_FULLY_CONNECTED)].inputs[1]];
  REQUIRE(w2->shape[0] == 4);
  const int8_t *q1 = w->data, *q2 = w2->data;
  /* a and c: the same rows */
  CHECK(memcmp(q1, q2, DIM) == 0 && memcmp(q1 + 2 * DIM, q2 + 2 * DIM, DIM) == 0);
  /* b: its sum (the row dequantized times the stored norm) plus the new sample */
  double norm_b = 0, sum[DIM], nn = 0;
  sscanf(strstr(first->description, "1 ") + 2, "%lf", &norm_b);
  for (int j = 0; j < DIM; j++) {
    sum[j] = q1[DIM + j] / 127.0 * norm_b + emb2[1][j];
    nn += sum[j] * sum[j];
  }
  for (int j = 0; j < DIM; j++) CHECK(abs(q2[DIM + j] - (int)lround(sum[j] / sqrt(nn) * 127)) <= 1);
  CHECK(abs(q2[DIM + 1] - q1[DIM + 1]) + abs(q2[DIM] - q1[DIM]) + abs(q2[DIM + 2] - q1[DIM + 2]) +
        abs(q2[DIM + 3] - q1[DIM + 3]) > 0);
  /* d: the mean of its two samples */
  double dm[DIM], dn = 0;
  for (int j = 0; j < DIM; j++) {
    dm[j] = (double)emb2[0][j] + emb2[2][j];
    dn += dm[j] * dm[j];
  }
  for (int j = 0; j < DIM; j++) CHECK(q2[3 * DIM + j] == (int8_t)lround(dm[j] / sqrt(dn) * 127));
  kiln_ondevice_free(od);

  /* a base class that was not imprinted cannot take samples */
  first->description = "";
  REQUIRE(kiln_ondevice_open(first, &od, &err) == KILN_OK);
  CHECK(kiln_ondevice_get_info(od).n_imprinted == 0);
  kiln_model *third = NULL;
  CHECK(kiln_ondevice_imprint(od, &s2, true, &third, &err) == KILN_ERR_INVALID_ARG);
  CHECK_MSG(strstr(err.msg, "'b'") && strstr(err.msg, "not imprinted"), "%s", err.msg);
  CHECK(third == NULL);
  kiln_ondevice_free(od);
  kiln_model_free(second);
  kiln_model_free(first);
  kiln_model_free(qm);
  kiln_model_free(fm);
}

/* ---- Softmax regression ---- */

static void test_sgd(void) {
  enum { N = 120, D = 16, C = 4 };
  static float x[N][D];
  int32_t y[N];
  test_rng r = {41};
  float centers[C][D];
  for (int c = 0; c < C; c++)
    for (int j = 0; j < D; j++) centers[c][j] = test_rand_float(&r, -1, 1);
  for (int i = 0; i < N; i++) {
    y[i] = i % C;
    for (int j = 0; j < D; j++) x[i][j] = centers[y[i]][j] + test_rand_float(&r, -0.3f, 0.3f);
    od_normalize_rows(x[i], 1, D, NULL);
  }
  kiln_sgd_options o = kiln_sgd_options_default();
  float w[C * D], b[C], w2[C * D], b2[C];
  kiln_sgd_result res;
  kiln_error err;
  REQUIRE(od_sgd_fit(&x[0][0], y, N, D, C, &o, w, b, &res, &err) == KILN_OK);
  CHECK_MSG(res.initial_loss > 1.3 && res.final_loss < 0.25 * res.initial_loss, "loss %g -> %g",
            res.initial_loss, res.final_loss);
  CHECK_MSG(res.train_accuracy >= 0.97, "accuracy %g", res.train_accuracy);
  double loss, acc;
  float lo, hi;
  od_evaluate(&x[0][0], y, N, D, C, w, b, &loss, &acc, &lo, &hi);
  CHECK(loss == res.final_loss && lo == res.logit_min && hi == res.logit_max && lo < hi);
  /* the loss goes down with training */
  o.iterations = 20;
  kiln_sgd_result early;
  REQUIRE(od_sgd_fit(&x[0][0], y, N, D, C, &o, w2, b2, &early, &err) == KILN_OK);
  CHECK(early.initial_loss == res.initial_loss && early.final_loss > res.final_loss &&
        early.final_loss < early.initial_loss);
  /* same seed, same weights */
  o.iterations = 500;
  REQUIRE(od_sgd_fit(&x[0][0], y, N, D, C, &o, w2, b2, NULL, &err) == KILN_OK);
  CHECK(memcmp(w, w2, sizeof w) == 0 && memcmp(b, b2, sizeof b) == 0);
  o.lr = 0;
  CHECK(od_sgd_fit(&x[0][0], y, N, D, C, &o, w2, b2, NULL, &err) == KILN_ERR_INVALID_ARG);
}

/* The learned imprinting scale: large when the own class's cosine always
 * wins, small when the cosines say nothing, and a minimum of the loss. */
static void test_fit_scale(void) {
  enum { N = 30, C = 3 };
  float cos[N][C];
  int32_t y[N];
  bool use[N];
  test_rng r = {9};
  for (int i = 0; i < N; i++) {
    y[i] = i % C;
    use[i] = true;
    for (int c = 0; c < C; c++) cos[i][c] = 0.9f + test_rand_float(&r, 0, 0.02f) + (c == y[i] ? 0.03f : 0.0f);
  }
  const double sep = od_fit_scale(&cos[0][0], y, use, N, C);
  CHECK_MSG(sep > 50.0, "separable: %g", sep);
  for (int i = 0; i < N; i++)
    for (int c = 0; c < C; c++) cos[i][c] = 0.9f + test_rand_float(&r, 0, 0.05f);
  const double noise = od_fit_scale(&cos[0][0], y, use, N, C);
  CHECK_MSG(noise < 20.0, "uninformative: %g", noise);
  for (int i = 0; i < N; i++) cos[i][y[i]] += 0.02f;
  const double mid = od_fit_scale(&cos[0][0], y, use, N, C);
  double f[3];
  for (int k = 0; k < 3; k++) {
    const double sc = mid * (k == 0 ? 0.9 : k == 1 ? 1.0 : 1.1);
    f[k] = 0;
    for (int i = 0; i < N; i++) {
      double sum = 0;
      for (int c = 0; c < C; c++) sum += exp(sc * (cos[i][c] - cos[i][y[i]]));
      f[k] += log(sum);
    }
  }
  CHECK_MSG(mid > OD_SCALE_MIN && mid < OD_SCALE_MAX && f[1] <= f[0] && f[1] <= f[2],
            "s %g: losses %g %g %g", mid, f[0], f[1], f[2]);
  for (int i = 0; i < N; i++) use[i] = false;
  CHECK(od_fit_scale(&cos[0][0], y, use, N, C) == KILN_IMPRINT_DEFAULT_SCALE);
}

static void test_quantize_helpers(void) {
  const float w[5] = {0.5f, -2.0f, 1.0f, 0.0f, 1.99f};
  int8_t q[5];
  float scale;
  od_quantize_symmetric(w, 5, q, &scale);
  CHECK(scale == 2.0f / 127.0f && q[1] == -127 && q[0] == 32 && q[3] == 0 && q[4] == 126);
  int32_t zp;
  od_int8_params(-1.0f, 3.0f, &scale, &zp);
  CHECK(fabsf(scale - 4.0f / 255.0f) < 1e-9f && zp == -64);
  od_int8_params(2.0f, 3.0f, &scale, &zp); /* widened to hold 0 */
  CHECK(fabsf(scale - 3.0f / 255.0f) < 1e-9f && zp == -128);
}

/* retrain-last on an int8 extractor: the int8 layer's parameters, and the
 * int8 model classifying the images as the float layer does. */
static void test_retrain_int8(void) {
  kiln_model *fm = float_extractor(true), *qm = int8_extractor(fm), *out = NULL;
  REQUIRE(fm && qm);
  kiln_error err;
  kiln_ondevice *od;
  REQUIRE(kiln_ondevice_open(qm, &od, &err) == KILN_OK);
  enum { N = 40 };
  kiln_image imgs[N];
  int32_t y[N];
  test_rng r = {77};
  for (int i = 0; i < N; i++) {
    REQUIRE(kiln_image_create(SIDE, SIDE, &imgs[i], &err) == KILN_OK);
    y[i] = i % 2;
    for (int p = 0; p < SIDE * SIDE; p++) {
      uint8_t *px = imgs[i].pixels + (size_t)(p / SIDE) * imgs[i].stride + 3 * (p % SIDE);
      px[0] = (uint8_t)(y[i] ? test_rand_int(&r, 150, 255) : test_rand_int(&r, 0, 100));
      px[1] = (uint8_t)test_rand_int(&r, 0, 255);
      px[2] = (uint8_t)(y[i] ? test_rand_int(&r, 0, 100) : test_rand_int(&r, 150, 255));
    }
  }
  static float e[N][DIM];
  REQUIRE(kiln_ondevice_embed_images(od, imgs, N, 2, &e[0][0], &err) == KILN_OK);
  static float e1[N][DIM];
  REQUIRE(kiln_ondevice_embed_images(od, imgs, N, 1, &e1[0][0], &err) == KILN_OK);
  CHECK(memcmp(e, e1, sizeof e) == 0);
  for (int i = 0; i < N; i++)
    for (int j = 0; j < DIM; j++) CHECK(e[i][j] * 128.0f == roundf(e[i][j] * 128.0f));
  const char *const two[2] = {"blue", "red"};
  kiln_ondevice_samples s = {&e[0][0], y, N, two, 2};
  kiln_sgd_result res;
  kiln_sgd_options o = kiln_sgd_options_default();
  REQUIRE(kiln_ondevice_retrain_last(od, &s, &o, &out, &res, &err) == KILN_OK);
  CHECK(res.final_loss < res.initial_loss && res.train_accuracy >= 0.95);
  REQUIRE(find_op(out, KILN_OP_MUL) < 0);
  const kiln_op *fc = &out->ops[find_op(out, KILN_OP_FULLY_CONNECTED)];
  const kiln_tensor *w = &out->tensors[fc->inputs[1]], *b = &out->tensors[fc->inputs[2]],
                    *lg = &out->tensors[fc->outputs[0]];
  REQUIRE(w->dtype == KILN_I8 && b->dtype == KILN_I32 && lg->dtype == KILN_I8);
  int maxq = 0;
  for (int k = 0; k < 2 * DIM; k++) maxq = abs(((const int8_t *)w->data)[k]) > maxq ? abs(((const int8_t *)w->data)[k]) : maxq;
  CHECK(maxq == 127 && w->quant.zero_point[0] == 0);
  CHECK(fabsf(b->quant.scale[0] - w->quant.scale[0] / 128.0f) < 1e-12f);
  const float lo = lg->quant.scale[0] * (-128 - lg->quant.zero_point[0]);
  const float hi = lg->quant.scale[0] * (127 - lg->quant.zero_point[0]);
  CHECK_MSG(lo <= res.logit_min + lg->quant.scale[0] && hi >= res.logit_max - lg->quant.scale[0],
            "[%g, %g] holds [%g, %g]", (double)lo, (double)hi, (double)res.logit_min, (double)res.logit_max);
  /* the int8 model on the images agrees with the labels it fitted */
  kiln_interp *it;
  REQUIRE(kiln_interp_create(out, NULL, &it, &err) == KILN_OK);
  int agree = 0;
  const kiln_image_norm norm = kiln_ondevice_get_info(od).norm;
  for (int i = 0; i < N; i++) {
    REQUIRE(kiln_vision_set_input(it, 0, &imgs[i], &norm, &err) == KILN_OK);
    REQUIRE(kiln_interp_invoke(it, &err) == KILN_OK);
    const int8_t *p = kiln_interp_output(it, 0).data;
    agree += (p[1] > p[0]) == (y[i] == 1);
  }
  CHECK_MSG(agree >= N - 2, "%d of %d", agree, N);
  kiln_interp_free(it);
  /* keeping classes needs an imprinting classifier */
  kiln_model *none = NULL;
  CHECK(kiln_ondevice_imprint(od, &s, true, &none, &err) == KILN_ERR_INVALID_ARG && !none);
  for (int i = 0; i < N; i++) kiln_image_free(&imgs[i]);
  kiln_model_free(out);
  kiln_ondevice_free(od);
  kiln_model_free(qm);
  kiln_model_free(fm);
}

static void test_refused(void) {
  kiln_error err;
  kiln_ondevice *od = NULL;
  kiln_model *plain = float_extractor(false);
  REQUIRE(plain);
  CHECK(kiln_ondevice_open(plain, &od, &err) == KILN_ERR_UNSUPPORTED && !od);
  CHECK_MSG(strstr(err.msg, "L2_NORMALIZATION") && strstr(err.msg, "--embedding-extractor"), "%s", err.msg);
  kiln_model_free(plain);
  kiln_model *fm = float_extractor(true), *out = NULL;
  REQUIRE(fm && kiln_ondevice_open(fm, &od, &err) == KILN_OK);
  int32_t bad[CLASSES * PER_CLASS];
  memcpy(bad, lab, sizeof bad);
  bad[4] = CLASSES;
  kiln_ondevice_samples s = {&emb[0][0], bad, CLASSES * PER_CLASS, names, CLASSES};
  CHECK(kiln_ondevice_imprint(od, &s, false, &out, &err) == KILN_ERR_INVALID_ARG);
  CHECK_MSG(strstr(err.msg, "sample 4"), "%s", err.msg);
  for (int i = 0; i < CLASSES * PER_CLASS; i++) bad[i] = lab[i] == 2 ? 0 : lab[i];
  s.labels = bad;
  CHECK(kiln_ondevice_retrain_last(od, &s, NULL, &out, NULL, &err) == KILN_ERR_INVALID_ARG);
  CHECK_MSG(strstr(err.msg, "'c' has no training samples"), "%s", err.msg);
  const char *const dup[CLASSES] = {"a", "b", "a"};
  s.labels = lab;
  s.class_names = dup;
  CHECK(kiln_ondevice_imprint(od, &s, false, &out, &err) == KILN_ERR_INVALID_ARG);
  CHECK_MSG(strstr(err.msg, "both named 'a'"), "%s", err.msg);
  CHECK(out == NULL);
  kiln_ondevice_free(od);
  kiln_model_free(fm);
}

int main(void) {
  make_samples();
  RUN(test_inv_sqrt);
  RUN(test_l2norm_kernels);
  RUN(test_imprint_float);
  RUN(test_imprint_int8_and_keep);
  RUN(test_sgd);
  RUN(test_fit_scale);
  RUN(test_quantize_helpers);
  RUN(test_retrain_int8);
  RUN(test_refused);
  return test_summary();
}
