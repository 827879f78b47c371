/* The model server's model sets: loading every model with its
 * interpreters, deciding what each model is (detector, classifier, plain
 * tensors), the bounded work queue and the worker threads that run it.
 * A set is immutable once loaded; reload makes a new one (serve_int.h). */
#include <string.h>

#include "serve/serve_int.h"

const char *serve_datatype(kiln_dtype dtype) {
  switch (dtype) {
    case KILN_F32: return "FP32";
    case KILN_F16: return "FP16";
    case KILN_I32: return "INT32";
    case KILN_U8: return "UINT8";
    case KILN_I64: return "INT64";
    case KILN_BOOL: return "BOOL";
    case KILN_I16: return "INT16";
    case KILN_I8: return "INT8";
  }
  return NULL;
}

static json_t *tensor_metadata(const kiln_tensor *t) {
  json_t *shape = json_array();
  for (int32_t d = 0; d < t->rank; d++) json_array_append_new(shape, json_integer(t->shape[d]));
  return json_pack("{s:s, s:s, s:o}", "name", t->name, "datatype", serve_datatype(t->dtype),
                   "shape", shape);
}

json_t *serve_model_metadata(const serve_model *m) {
  static const char *kinds[] = {"tensors", "classifier", "detector"};
  json_t *ins = json_array(), *outs = json_array();
  for (int32_t i = 0; i < m->model->n_inputs; i++)
    json_array_append_new(ins, tensor_metadata(&m->model->tensors[m->model->inputs[i]]));
  for (int32_t i = 0; i < m->model->n_outputs; i++)
    json_array_append_new(outs, tensor_metadata(&m->model->tensors[m->model->outputs[i]]));
  return json_pack("{s:s, s:[s], s:s, s:o, s:o, s:{s:s}}", "name", m->name, "versions", "1",
                   "platform", "tflite", "inputs", ins, "outputs", outs, "parameters", "kind",
                   kinds[m->kind]);
}

/* One image input [1,H,W,3] and one output of scores [1,C] or [C]: what
 * kiln_classify_run takes. */
static bool is_classifier(const kiln_model *m) {
  if (m->n_inputs != 1 || m->n_outputs != 1) return false;
  const kiln_tensor *in = &m->tensors[m->inputs[0]], *out = &m->tensors[m->outputs[0]];
  bool image = in->rank == 4 && in->shape[0] == 1 && in->shape[3] == 3 &&
               (in->dtype == KILN_F32 || in->dtype == KILN_U8 || in->dtype == KILN_I8);
  bool scores = out->rank == 1 || (out->rank == 2 && out->shape[0] == 1);
  return image && scores;
}

static void *worker_main(void *arg) {
  serve_slot *slot = arg;
  serve_model *m = slot->model;
  for (;;) {
    pthread_mutex_lock(&m->mu);
    while (!m->head && !m->closing) pthread_cond_wait(&m->cv, &m->mu);
    serve_request *r = m->head;
    if (r) {
      m->head = r->next;
      if (!m->head) m->tail = NULL;
    }
    pthread_mutex_unlock(&m->mu);
    if (!r) return NULL;
    atomic_fetch_sub(&m->srv->queued[m->index], 1);
    if (r->endpoint == SERVE_INFER) serve_run_infer(slot, r);
    else serve_run_vision(slot, r);
    r->answered = true;
    /* From here on the request belongs to the event loop again. */
    MHD_resume_connection(r->conn);
  }
}

void serve_model_enqueue(serve_model *m, serve_request *r) {
  atomic_fetch_add(&m->srv->queued[m->index], 1);
  r->next = NULL;
  pthread_mutex_lock(&m->mu);
  if (m->tail) m->tail->next = r;
  else m->head = r;
  m->tail = r;
  pthread_cond_signal(&m->cv);
  pthread_mutex_unlock(&m->mu);
}

static void model_close(serve_model *m) {
  if (!m->srv) return; /* never initialised */
  pthread_mutex_lock(&m->mu);
  m->closing = true;
  pthread_cond_broadcast(&m->cv);
  pthread_mutex_unlock(&m->mu);
  for (int32_t i = 0; i < m->n_slots; i++) {
    serve_slot *s = &m->slots[i];
    if (s->started) pthread_join(s->thread, NULL);
    kiln_detector_free(s->det);
    kiln_interp_free(s->interp);
  }
  kiln_free(m->slots);
  kiln_model_free(m->model);
  kiln_labels_free(m->labels);
  pthread_mutex_destroy(&m->mu);
  pthread_cond_destroy(&m->cv);
}

static kiln_status create_interpreters(serve_model *m, const kiln_serve_model *spec,
                                       kiln_error *err) {
  const kiln_serve_options *opt = &m->srv->opt;
  int32_t threads = opt->threads > 0 ? opt->threads : kiln_system_cpus();
  m->n_slots = opt->interpreters > 0 ? opt->interpreters : threads;
  int32_t per_slot = threads / m->n_slots > 0 ? threads / m->n_slots : 1;
  m->slots = kiln_calloc((size_t)m->n_slots, sizeof *m->slots);
  if (!m->slots) return kiln_fail(err, KILN_ERR_NOMEM, "out of memory");
  kiln_interp_options iopt = {.n_threads = per_slot};
  kiln_detect_config cfg = kiln_detect_config_default300();
  cfg.score_threshold = 0.5f; /* as kiln detect */
  cfg.iou_threshold = 0.4f;
  cfg.max_detections = SERVE_MAX_BOXES;
  for (int32_t i = 0; i < m->n_slots; i++) {
    serve_slot *s = &m->slots[i];
    s->model = m;
    if (kiln_interp_create(m->model, &iopt, &s->interp, err) != KILN_OK) {
      kiln_error_prefix(err, "%s", spec->path);
      return err ? err->status : KILN_ERR_INTERNAL;
    }
    if (i == 0) {
      kiln_error probe;
      if (kiln_detector_create(s->interp, m->model, &cfg, &s->det, &probe) == KILN_OK)
        m->kind = SERVE_DETECTOR;
      else m->kind = is_classifier(m->model) ? SERVE_CLASSIFIER : SERVE_TENSORS;
    } else if (m->kind == SERVE_DETECTOR &&
               kiln_detector_create(s->interp, m->model, &cfg, &s->det, err) != KILN_OK) {
      kiln_error_prefix(err, "%s", spec->path);
      return err ? err->status : KILN_ERR_INTERNAL;
    }
  }
  return KILN_OK;
}

static kiln_status model_load(kiln_server *srv, int32_t index, serve_model *m, kiln_error *err) {
  const kiln_serve_model *spec = &srv->specs[index];
  if (pthread_mutex_init(&m->mu, NULL) != 0) return kiln_fail(err, KILN_ERR_NOMEM, "mutex");
  if (pthread_cond_init(&m->cv, NULL) != 0) {
    pthread_mutex_destroy(&m->mu);
    return kiln_fail(err, KILN_ERR_NOMEM, "condition variable");
  }
  m->srv = srv;
  m->index = index;
  m->name = spec->name;
  if (spec->labels_path && kiln_labels_load(spec->labels_path, &m->labels, err) != KILN_OK)
    return err ? err->status : KILN_ERR_IO;
  if (kiln_model_load(spec->path, &m->model, err) != KILN_OK) return err ? err->status : KILN_ERR_IO;
  if (!m->labels && kiln_labels_from_model(m->model, &m->labels, err) != KILN_OK) return err ? err->status : KILN_ERR_IO;
  for (int32_t i = 0; i < m->model->n_inputs + m->model->n_outputs; i++) {
    int32_t t = i < m->model->n_inputs ? m->model->inputs[i] : m->model->outputs[i - m->model->n_inputs];
    if (!serve_datatype(m->model->tensors[t].dtype))
      return kiln_fail(err, KILN_ERR_UNSUPPORTED, "%s: tensor '%s': dtype %s has no inference-protocol datatype",
                       spec->path, m->model->tensors[t].name, kiln_dtype_name(m->model->tensors[t].dtype));
  }
  kiln_status s = create_interpreters(m, spec, err);
  if (s != KILN_OK) return s;
  for (int32_t i = 0; i < m->n_slots; i++) {
    if (pthread_create(&m->slots[i].thread, NULL, worker_main, &m->slots[i]) != 0)
      return kiln_fail(err, KILN_ERR_NOMEM, "%s: cannot start a worker thread", spec->name);
    m->slots[i].started = true;
  }
  return KILN_OK;
}

kiln_status serve_set_load(kiln_server *srv, serve_set **out, kiln_error *err) {
  int32_t n = srv->opt.n_models;
  serve_set *set = kiln_calloc(1, sizeof *set);
  if (set) set->models = kiln_calloc((size_t)n, sizeof *set->models);
  if (!set || !set->models) {
    kiln_free(set);
    return kiln_fail(err, KILN_ERR_NOMEM, "out of memory loading models");
  }
  set->n_models = n;
  set->refs = 1;
  for (int32_t i = 0; i < n; i++) {
    kiln_status s = model_load(srv, i, &set->models[i], err);
    if (s != KILN_OK) {
      serve_set_free(set);
      return s;
    }
  }
  *out = set;
  return KILN_OK;
}

void serve_set_free(serve_set *set) {
  if (!set) return;
  for (int32_t i = 0; i < set->n_models; i++) model_close(&set->models[i]);
  kiln_free(set->models);
  kiln_free(set);
}
