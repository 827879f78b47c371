/*
 * On-device learning, the base model (kiln/ondevice.h): finding the
 * L2-normalized embedding, cutting the extractor there, reading an
 * imprinting classifier's classes (libcoral's form and training metadata),
 * and extracting embeddings from images with one interpreter per thread,
 * images prepared exactly as kiln's evaluation prepares them.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiln/vision.h"
#include "train/ondevice_int.h"
#include "train/pipeline_int.h"

#define BASE_NEEDS                                                                             \
  "on-device learning needs an embedding extractor whose output is an L2-normalized "         \
  "embedding (make one with 'kiln convert MODEL --embedding-extractor') or an imprinting "   \
  "classifier (... L2_NORMALIZATION -> FULLY_CONNECTED -> MUL -> SOFTMAX)"

void kiln_ondevice_free(kiln_ondevice *od) {
  if (!od) return;
  kiln_model_free(od->extractor);
  kiln_free(od->rows);
  kiln_free(od->sum_norms);
  for (int32_t i = 0; od->names && i < od->n_classes; i++) kiln_free(od->names[i]);
  kiln_free(od->names);
  kiln_free(od);
}

/* The op reading tensor t (-1 when none or several). */
static int32_t sole_consumer(const kiln_model *m, int32_t t) {
  int32_t found = -1;
  for (int32_t o = 0; o < m->n_ops; o++)
    for (int32_t k = 0; k < m->ops[o].n_inputs; k++)
      if (m->ops[o].inputs[k] == t) {
        if (found >= 0 && found != o) return -1;
        found = o;
      }
  return found;
}

static bool is_graph_output(const kiln_model *m, int32_t t) {
  return m->n_outputs == 1 && m->outputs[0] == t;
}

/* A constant's values as floats (dequantized per tensor or per axis). */
static kiln_status constant_floats(const kiln_tensor *t, float *dst, kiln_error *err) {
  const int64_t n = kiln_tensor_elements(t);
  const kiln_quant *q = &t->quant;
  if (t->dtype == KILN_F32) {
    memcpy(dst, t->data, (size_t)n * sizeof(float));
    return KILN_OK;
  }
  if ((t->dtype != KILN_I8 && t->dtype != KILN_U8) || q->count < 1 ||
      (q->count > 1 && (q->axis < 0 || q->axis >= t->rank || t->shape[q->axis] != q->count)))
    return kiln_fail(err, KILN_ERR_UNSUPPORTED, "tensor '%s': %s constant without usable quantization",
                     t->name, kiln_dtype_name(t->dtype));
  int64_t inner = 1;
  for (int32_t d = q->count > 1 ? q->axis + 1 : t->rank; d < t->rank; d++) inner *= t->shape[d];
  for (int64_t i = 0; i < n; i++) {
    const int32_t c = q->count > 1 ? (int32_t)((i / inner) % q->count) : 0;
    const int32_t v = t->dtype == KILN_I8 ? ((const int8_t *)t->data)[i] : ((const uint8_t *)t->data)[i];
    dst[i] = q->scale[c] * (float)(v - q->zero_point[c]);
  }
  return KILN_OK;
}

/* libcoral's training metadata in the description: "i norm" pairs. Like
 * libcoral, anything that does not parse means no class was imprinted. */
static void parse_training_metadata(const char *text, int32_t n_classes, float *norms) {
  for (int32_t i = 0; i < n_classes; i++) norms[i] = 0.0f;
  float *parsed = kiln_calloc((size_t)n_classes + 1, sizeof *parsed);
  if (!parsed) return;
  const char *p = text;
  bool ok = true;
  while (ok) {
    while (*p == ' ' || *p == '\n') p++;
    if (!*p) break;
    char *end;
    const long id = strtol(p, &end, 10);
    ok = end != p && *end == ' ';
    if (!ok) break;
    p = end;
    const float v = strtof(p, &end);
    ok = end != p && (*end == '\n' || *end == ' ' || !*end) && id >= 0 && id < n_classes &&
         isfinite(v) && v > 0.0f;
    p = end;
    if (ok) parsed[id] = v;
  }
  if (ok) memcpy(norms, parsed, (size_t)n_classes * sizeof *norms);
  kiln_free(parsed);
}

/* The imprinting head after the embedding, libcoral's form (b). Leaves
 * od->imprinting false when the ops after the embedding are anything else
 * (that head is then simply cut off). */
static kiln_status read_imprinting_head(kiln_ondevice *od, int32_t embedding, kiln_error *err) {
  const kiln_model *m = od->base;
  int32_t t = embedding, o = sole_consumer(m, t);
  if (o >= 0 && m->ops[o].code == KILN_OP_QUANTIZE) o = sole_consumer(m, t = m->ops[o].outputs[0]);
  if (o < 0 || (m->ops[o].code != KILN_OP_FULLY_CONNECTED && m->ops[o].code != KILN_OP_CONV_2D))
    return KILN_OK;
  const kiln_op *fc = &m->ops[o];
  if (fc->n_inputs < 2 || fc->inputs[0] != t || fc->inputs[1] < 0) return KILN_OK;
  const kiln_tensor *w = &m->tensors[fc->inputs[1]];
  const bool conv_1x1 = fc->code == KILN_OP_CONV_2D && w->rank == 4 && w->shape[1] == 1 &&
                        w->shape[2] == 1 && fc->options.stride_w == 1 && fc->options.stride_h == 1;
  if (!w->data || w->shape[w->rank - 1] != od->dim || (fc->code == KILN_OP_CONV_2D && !conv_1x1) ||
      (fc->code == KILN_OP_FULLY_CONNECTED && w->rank != 2) || fc->options.activation != KILN_ACT_NONE)
    return KILN_OK;
  const int32_t classes = w->shape[0];
  int32_t mul = sole_consumer(m, t = fc->outputs[0]);
  if (mul < 0 || m->ops[mul].code != KILN_OP_MUL || m->ops[mul].n_inputs != 2) return KILN_OK;
  const int32_t k = m->ops[mul].inputs[0] == t ? 1 : 0;
  const kiln_tensor *sc = m->ops[mul].inputs[k] >= 0 ? &m->tensors[m->ops[mul].inputs[k]] : NULL;
  if (!sc || !sc->data || kiln_tensor_elements(sc) != 1 || m->ops[mul].inputs[1 - k] != t) return KILN_OK;
  int32_t s = sole_consumer(m, t = m->ops[mul].outputs[0]);
  if (s >= 0 && m->ops[s].code == KILN_OP_RESHAPE) s = sole_consumer(m, t = m->ops[s].outputs[0]);
  if (s < 0 || m->ops[s].code != KILN_OP_SOFTMAX) return KILN_OK;
  t = m->ops[s].outputs[0];
  const int32_t dq = sole_consumer(m, t);
  if (!is_graph_output(m, t) && !(dq >= 0 && m->ops[dq].code == KILN_OP_DEQUANTIZE &&
                                   is_graph_output(m, m->ops[dq].outputs[0])))
    return KILN_OK;
  /* It is an imprinting classifier: read its classes. */
  float scale;
  kiln_status st = constant_floats(sc, &scale, err);
  if (st != KILN_OK) return st;
  if (!(scale > 0.0f) || !isfinite(scale))
    return kiln_fail(err, KILN_ERR_UNSUPPORTED, "imprinting head: MUL scale %g is not positive",
                     (double)scale);
  od->rows = kiln_malloc((size_t)classes * od->dim * sizeof(float) + 1);
  od->sum_norms = kiln_calloc((size_t)classes + 1, sizeof(float));
  od->names = kiln_calloc((size_t)classes + 1, sizeof(char *));
  if (!od->rows || !od->sum_norms || !od->names)
    return kiln_fail(err, KILN_ERR_NOMEM, "imprinting head: %d classes", (int)classes);
  od->n_classes = classes;
  if ((st = constant_floats(w, od->rows, err)) != KILN_OK) return st;
  char **labels = NULL;
  int32_t n_labels = 0;
  if ((st = kiln_trainer_get_labels(m, &labels, &n_labels, err)) != KILN_OK) return st;
  for (int32_t c = 0; c < classes; c++) {
    char id[16];
    snprintf(id, sizeof id, "%d", (int)c);
    od->names[c] = kiln_strdup(n_labels == classes ? labels[c] : id);
    if (!od->names[c]) st = kiln_fail(err, KILN_ERR_NOMEM, "class names");
  }
  kiln_trainer_labels_free(labels, n_labels);
  if (st != KILN_OK) return st;
  parse_training_metadata(m->description, classes, od->sum_norms);
  od->scale = scale;
  od->imprinting = true;
  return KILN_OK;
}

kiln_status kiln_ondevice_open(const kiln_model *model, kiln_ondevice **out, kiln_error *err) {
  *out = NULL;
  int32_t l2 = -1, count = 0;
  for (int32_t o = 0; o < model->n_ops; o++)
    if (model->ops[o].code == KILN_OP_L2_NORMALIZATION) {
      l2 = o;
      count++;
    }
  if (count == 0)
    return kiln_fail(err, KILN_ERR_UNSUPPORTED, "the model has no L2_NORMALIZATION op; " BASE_NEEDS);
  if (count > 1)
    return kiln_fail(err, KILN_ERR_UNSUPPORTED,
                     "the model has %d L2_NORMALIZATION ops; %s", (int)count,
                     "on-device learning needs exactly one, producing the embedding");
  const int32_t e = model->ops[l2].outputs[0];
  const kiln_tensor *t = &model->tensors[e];
  bool vector = t->rank == 2 || t->rank == 4;
  for (int32_t d = 0; d + 1 < t->rank; d++) vector = vector && t->shape[d] == 1;
  if (!vector)
    return kiln_fail(err, KILN_ERR_UNSUPPORTED,
                     "embedding '%s' (the L2_NORMALIZATION output) is not one vector [1, D] or "
                     "[1, 1, 1, D]", t->name);
  if (t->dtype == KILN_U8)
    return kiln_fail(err, KILN_ERR_UNSUPPORTED,
                     "embedding '%s' is uint8 (the older Edge TPU form); kiln learns on int8 or "
                     "float32 embeddings: quantize the float model with 'kiln quantize'", t->name);
  if (t->dtype == KILN_I8 &&
      (t->quant.count != 1 || t->quant.scale[0] != 1.0f / 128.0f || t->quant.zero_point[0] != 0))
    return kiln_fail(err, KILN_ERR_UNSUPPORTED,
                     "int8 embedding '%s' must have scale 1/128 and zero point 0 (the TFLite int8 "
                     "specification of L2_NORMALIZATION)", t->name);
  if (t->dtype != KILN_I8 && t->dtype != KILN_F32)
    return kiln_fail(err, KILN_ERR_UNSUPPORTED, "embedding '%s' is %s, not float32 or int8",
                     t->name, kiln_dtype_name(t->dtype));
  kiln_ondevice *od = kiln_calloc(1, sizeof *od);
  if (!od) return kiln_fail(err, KILN_ERR_NOMEM, "on-device learner");
  od->base = model;
  od->dim = t->shape[t->rank - 1];
  od->dtype = t->dtype;
  od->scale = KILN_IMPRINT_DEFAULT_SCALE;
  od->norm = pl_eval_norm(model, NULL);
  kiln_status s = kiln_trainer_submodel(model, e, &od->extractor, err);
  if (s == KILN_OK) s = read_imprinting_head(od, e, err);
  if (s != KILN_OK) {
    kiln_ondevice_free(od);
    return s;
  }
  *out = od;
  return KILN_OK;
}

kiln_ondevice_info kiln_ondevice_get_info(const kiln_ondevice *od) {
  kiln_ondevice_info i;
  memset(&i, 0, sizeof i);
  i.embedding_size = od->dim;
  i.embedding_dtype = od->dtype;
  i.imprinting = od->imprinting;
  i.n_classes = od->n_classes;
  for (int32_t c = 0; c < od->n_classes; c++) i.n_imprinted += od->sum_norms[c] > 0.0f;
  i.scale = od->scale;
  i.norm = od->norm;
  return i;
}

const char *kiln_ondevice_class_name(const kiln_ondevice *od, int32_t i) {
  return i >= 0 && i < od->n_classes ? od->names[i] : NULL;
}

const kiln_model *kiln_ondevice_extractor(const kiln_ondevice *od) { return od->extractor; }

/* ---- Embedding extraction ---- */

typedef struct embed_ctx {
  const kiln_ondevice *od;
  const struct kiln_dataset *ds; /* with images, or */
  const int32_t *images;
  const kiln_image *decoded;     /* these */
  kiln_interp **interps;
  uint8_t *pixels;               /* [threads][h * w * c] */
  pl_input in;
  float *out;
} embed_ctx;

static kiln_status embed_item(void *ctx, int32_t item, int32_t thread, kiln_error *err) {
  embed_ctx *c = ctx;
  kiln_image loaded = {0};
  const kiln_image *img = c->decoded ? &c->decoded[item] : &loaded;
  kiln_status s = c->decoded ? KILN_OK : pl_load_image(c->ds, c->images[item], &loaded, err);
  uint8_t *px = c->pixels + (size_t)thread * c->in.h * c->in.w * c->in.c;
  if (s == KILN_OK) s = pl_image_pixels(img, c->in.h, c->in.w, c->in.c, px, err);
  kiln_image_free(&loaded);
  kiln_interp *it = c->interps[thread];
  if (s == KILN_OK) {
    pl_pixels_to_input(px, &c->in, kiln_interp_input(it, 0).data);
    s = kiln_interp_invoke(it, err);
  }
  if (s == KILN_OK)
    s = kiln_vision_output_float(it, 0, c->out + (size_t)item * c->od->dim, c->od->dim, err);
  if (s != KILN_OK) {
    if (c->ds) kiln_error_prefix(err, "%s", pl_image_source(c->ds, c->images[item]));
    else kiln_error_prefix(err, "image %d", (int)item);
  }
  return s;
}

static kiln_status embed(embed_ctx *c, int32_t n, int32_t threads, kiln_error *err) {
  threads = pl_eval_threads(threads);
  if (threads > n) threads = n > 0 ? n : 1;
  kiln_status s = pl_input_of(c->od->extractor, &c->od->norm, &c->in, err);
  if (s != KILN_OK) {
    kiln_error_prefix(err, "the extractor's input");
    return s;
  }
  c->pixels = kiln_malloc((size_t)threads * c->in.h * c->in.w * c->in.c);
  if (!c->pixels) return kiln_fail(err, KILN_ERR_NOMEM, "embeddings: %d threads", (int)threads);
  if ((s = pl_eval_interps(c->od->extractor, threads, &c->interps, err)) == KILN_OK)
    s = pl_parallel(threads, n, embed_item, c, NULL, NULL, NULL, err);
  pl_eval_interps_free(c->interps, threads);
  kiln_free(c->pixels);
  return s;
}

kiln_status kiln_ondevice_embed_images(const kiln_ondevice *od, const kiln_image *images,
                                       int32_t n, int32_t threads, float *out, kiln_error *err) {
  embed_ctx c = {.od = od, .decoded = images, .out = out};
  return embed(&c, n, threads, err);
}

kiln_status kiln_ondevice_embed_dataset(const kiln_ondevice *od, const struct kiln_dataset *ds,
                                        const int32_t *images, int32_t n, int32_t threads,
                                        float *out, kiln_error *err) {
  embed_ctx c = {.od = od, .ds = ds, .images = images, .out = out};
  return embed(&c, n, threads, err);
}
