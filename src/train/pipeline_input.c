/*
 * Images into model inputs for the training pipeline (train/pipeline_int.h):
 * one path from a decoded RGB8 image to a float or quantized input, used
 * for training samples, quantizer calibration and every evaluation, so
 * that the trainer's report and `kiln eval` feed models identical values.
 * Also the parallel loop over images and the progress helpers.
 */
#include <math.h>
#include <string.h>
#include <time.h>

#include "base/threadpool.h"
#include "train/pipeline_int.h"

double pl_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

kiln_train_progress pl_progress(kiln_train_event event, kiln_train_phase phase) {
  kiln_train_progress p;
  memset(&p, 0, sizeof p);
  p.event = event;
  p.phase = phase;
  p.done = p.total = p.epoch = p.epochs = p.step = p.steps = -1;
  p.loss = p.accuracy = p.val_accuracy = p.images_per_second = -1.0;
  p.elapsed_seconds = p.eta_seconds = -1.0;
  p.lr = -1.0f;
  return p;
}

kiln_status pl_input_of(const kiln_model *model, const kiln_image_norm *norm, pl_input *out,
                        kiln_error *err) {
  if (model->n_inputs != 1)
    return kiln_fail(err, KILN_ERR_INVALID_ARG, "the model has %d inputs, not 1",
                     (int)model->n_inputs);
  const kiln_tensor *t = &model->tensors[model->inputs[0]];
  if (t->rank != 4 || t->shape[0] != 1 || t->shape[1] < 1 || t->shape[2] < 1 ||
      (t->shape[3] != 1 && t->shape[3] != 3))
    return kiln_fail(err, KILN_ERR_INVALID_ARG,
                     "input '%s' is not an image [1, height, width, 1 or 3]", t->name);
  memset(out, 0, sizeof *out);
  out->h = t->shape[1];
  out->w = t->shape[2];
  out->c = t->shape[3];
  out->dtype = t->dtype;
  out->norm = *norm;
  if (t->dtype == KILN_I8 || t->dtype == KILN_U8) {
    if (t->quant.count != 1 || !(t->quant.scale[0] > 0.0f))
      return kiln_fail(err, KILN_ERR_INVALID_ARG,
                       "input '%s' is %s without one positive scale", t->name,
                       kiln_dtype_name(t->dtype));
    out->scale = t->quant.scale[0];
    out->zero_point = t->quant.zero_point[0];
  } else if (t->dtype != KILN_F32) {
    return kiln_fail(err, KILN_ERR_INVALID_ARG, "input '%s' is %s, not float32, int8 or uint8",
                     t->name, kiln_dtype_name(t->dtype));
  }
  for (int c = 0; c < out->c; c++)
    if (!(norm->std[c] != 0.0f) || !isfinite(norm->std[c]) || !isfinite(norm->mean[c]))
      return kiln_fail(err, KILN_ERR_INVALID_ARG, "normalization of channel %d: std %g", c,
                       (double)norm->std[c]);
  return KILN_OK;
}

kiln_status pl_image_pixels(const kiln_image *img, int32_t h, int32_t w, int32_t c, uint8_t *dst,
                            kiln_error *err) {
  kiln_image resized = {0};
  const kiln_image *src = img;
  if (img->width != w || img->height != h) {
    kiln_status s = kiln_image_resize_bilinear(img, w, h, &resized, err);
    if (s != KILN_OK) return s;
    src = &resized;
  }
  for (int32_t y = 0; y < h; y++) {
    const uint8_t *row = src->pixels + (size_t)y * src->stride;
    uint8_t *out = dst + (size_t)y * w * c;
    if (c == 3) {
      memcpy(out, row, (size_t)w * 3);
      continue;
    }
    for (int32_t x = 0; x < w; x++) {
      const uint8_t *p = row + 3 * x;
      out[x] = (uint8_t)((299u * p[0] + 587u * p[1] + 114u * p[2] + 500u) / 1000u);
    }
  }
  kiln_image_free(&resized);
  return KILN_OK;
}

void pl_pixels_to_input(const uint8_t *pixels, const pl_input *in, void *dst) {
  const size_t n = (size_t)in->h * in->w * in->c;
  const int32_t lo = in->dtype == KILN_I8 ? -128 : 0, hi = in->dtype == KILN_I8 ? 127 : 255;
  for (size_t i = 0; i < n; i++) {
    const int32_t c = (int32_t)(i % (size_t)in->c);
    const float real = pl_normalize(pixels[i], in->norm.mean[c], in->norm.std[c]);
    if (in->dtype == KILN_F32) {
      ((float *)dst)[i] = real;
      continue;
    }
    float q = roundf(real / in->scale) + (float)in->zero_point;
    int32_t v = q < (float)lo ? lo : q > (float)hi ? hi : (int32_t)q;
    if (in->dtype == KILN_I8) ((int8_t *)dst)[i] = (int8_t)v;
    else ((uint8_t *)dst)[i] = (uint8_t)v;
  }
}

void pl_mirror(float *x, int32_t h, int32_t w, int32_t c) {
  for (int32_t y = 0; y < h; y++) {
    float *row = x + (size_t)y * w * c;
    for (int32_t a = 0, b = w - 1; a < b; a++, b--)
      for (int32_t k = 0; k < c; k++) {
        const float t = row[(size_t)a * c + k];
        row[(size_t)a * c + k] = row[(size_t)b * c + k];
        row[(size_t)b * c + k] = t;
      }
  }
}

/* The parallel loop: one task per item; each thread keeps the failure of
 * the lowest item index it saw. */
typedef struct loop {
  pl_item_fn fn;
  void *ctx;
  volatile sig_atomic_t *stop;
  int32_t *fail_item; /* [threads]: lowest failing item, or INT32_MAX */
  kiln_error *fail;   /* [threads] */
} loop;

static void loop_task(loop *l, int32_t item, int32_t thread) {
  if (l->stop && *l->stop) return;
  if (l->fail_item[thread] < item) return;
  kiln_error e;
  e.status = KILN_OK;
  e.msg[0] = '\0';
  if (l->fn(l->ctx, item, thread, &e) != KILN_OK && item < l->fail_item[thread]) {
    l->fail_item[thread] = item;
    l->fail[thread] = e;
  }
}

typedef struct loop_range {
  loop *l;
  int32_t first;
} loop_range;

static void range_task(void *ctx, int32_t task, int32_t thread) {
  const loop_range *r = ctx;
  loop_task(r->l, r->first + task, thread);
}

kiln_status pl_parallel(int32_t threads, int32_t n, pl_item_fn fn, void *ctx,
                        void (*on_done)(void *ctx, int32_t done), volatile sig_atomic_t *stop,
                        bool *stopped, kiln_error *err) {
  if (stopped) *stopped = false;
  if (threads < 1) threads = 1;
  kiln_threadpool *pool = NULL;
  loop l = {fn, ctx, stop, NULL, NULL};
  l.fail_item = kiln_malloc((size_t)threads * sizeof *l.fail_item);
  l.fail = kiln_malloc((size_t)threads * sizeof *l.fail);
  kiln_status s = KILN_OK;
  if (!l.fail_item || !l.fail) {
    s = kiln_fail(err, KILN_ERR_NOMEM, "%d threads", (int)threads);
    goto done;
  }
  for (int32_t t = 0; t < threads; t++) l.fail_item[t] = INT32_MAX;
  if (threads > 1 && (s = kiln_threadpool_create(threads, &pool, err)) != KILN_OK) goto done;
  /* Chunks of items, so progress is reported from the calling thread and a
   * failure stops the loop soon. */
  const int32_t chunk = threads * 4 > 16 ? threads * 4 : 16;
  for (int32_t first = 0; first < n; first += chunk) {
    loop_range r = {&l, first};
    kiln_threadpool_run(pool, range_task, &r, n - first < chunk ? n - first : chunk);
    bool failed = false;
    for (int32_t t = 0; t < threads; t++) failed |= l.fail_item[t] != INT32_MAX;
    if (failed || (stop && *stop)) break;
    if (on_done) on_done(ctx, first + chunk < n ? first + chunk : n);
  }
  int32_t worst = -1;
  for (int32_t t = 0; t < threads; t++)
    if (l.fail_item[t] != INT32_MAX && (worst < 0 || l.fail_item[t] < l.fail_item[worst])) worst = t;
  if (worst >= 0) {
    if (err) *err = l.fail[worst];
    s = l.fail[worst].status != KILN_OK ? l.fail[worst].status : KILN_ERR_INTERNAL;
  }
  if (stopped) *stopped = stop && *stop;
done:
  kiln_threadpool_free(pool);
  kiln_free(l.fail_item);
  kiln_free(l.fail);
  return s;
}
