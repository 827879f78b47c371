/*
 * kiln_compile and kiln_compile_write: load the models (the graph exactly as
 * in the file, without kiln's load-time passes, as the Edge TPU compiler
 * sees it), optionally split one into segments, map the ops, cache the
 * parameters, estimate, and write the compiled models, logs, report and
 * (CPU target) bundle.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "base/file.h"
#include "compile/compile_int.h"
#include "kiln/bundle.h"

#define METADATA_NAME "kiln_compile"

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* FNV-1a, 64-bit: the caching token of a set of models. */
static uint64_t fnv1a(uint64_t h, const void *bytes, size_t n) {
  const uint8_t *p = bytes;
  for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
  return h;
}

/* "dir/ssd_int8.tflite" -> "ssd_int8". */
static char *stem_of(const char *path) {
  const char *base = strrchr(path, '/');
  base = base ? base + 1 : path;
  size_t n = strlen(base);
  if (n > 7 && strcmp(base + n - 7, ".tflite") == 0) n -= 7;
  char *s = kiln_malloc(n + 1);
  if (s) {
    memcpy(s, base, n);
    s[n] = '\0';
  }
  return s;
}

static kiln_status load_model(const char *path, kiln_model **out, size_t *bytes, uint64_t *hash,
                              kiln_error *err) {
  kiln_mapped_file f;
  kiln_status s = kiln_file_map(path, &f, err);
  if (s != KILN_OK) return s;
  *bytes = f.size;
  *hash = fnv1a(*hash, f.data, f.size);
  s = kiln_model_parse(f.data, f.size, true, path, out, err);
  kiln_file_unmap(&f);
  return s;
}

static kiln_status init_model(kiln_compiled_model *cm, kiln_model *m, const char *name, const char *path,
                              size_t bytes, kiln_error *err) {
  cm->model = m;
  cm->name = kiln_strdup(name);
  cm->source_path = kiln_strdup(path);
  cm->source_bytes = bytes;
  cm->n_ops = m->n_ops;
  cm->ops = kiln_calloc((size_t)(m->n_ops ? m->n_ops : 1), sizeof *cm->ops);
  if (!cm->name || !cm->source_path || !cm->ops) return kiln_fail(err, KILN_ERR_NOMEM, "%s: out of memory", path);
  for (int32_t i = 0; i < m->n_ops; i++) {
    cm->ops[i].index = i;
    cm->ops[i].type = compile_op_type(&m->ops[i]);
  }
  compile_count_params(cm);
  return KILN_OK;
}

static kiln_status check_options(const kiln_compile_options *o, int32_t n_models, kiln_error *err) {
  if (o->num_segments < 0)
    return kiln_fail(err, KILN_ERR_INVALID_ARG, "--num-segments %d: must be at least 1", (int)o->num_segments);
  const bool split = o->num_segments > 1 || o->n_intermediate_tensors > 0;
  if (o->num_segments > 1 && o->n_intermediate_tensors > 0)
    return kiln_fail(err, KILN_ERR_INVALID_ARG, "--num-segments and --intermediate-tensors exclude each other");
  if (split && n_models > 1)
    return kiln_fail(err, KILN_ERR_INVALID_ARG,
                     "segmentation takes one model (%d given): co-compilation and segments exclude each other",
                     (int)n_models);
  return KILN_OK;
}

static void free_model(kiln_compiled_model *cm) {
  kiln_model_free(cm->model);
  kiln_free(cm->name);
  kiln_free(cm->source_path);
  kiln_free(cm->output_path);
  kiln_free(cm->ops);
  memset(cm, 0, sizeof *cm);
}

/* Replaces r's single model by its segments. */
static kiln_status split_into_segments(kiln_compile_result *r, const kiln_compile_options *o, uint64_t hash,
                                       kiln_error *err) {
  kiln_compiled_model *whole = &r->models[0];
  const int32_t max_segments = o->num_segments + o->n_intermediate_tensors + 1;
  int32_t n_cuts = 0, n = 0;
  int32_t *cuts = kiln_malloc((size_t)max_segments * sizeof *cuts);
  kiln_model **segs = kiln_calloc((size_t)max_segments, sizeof *segs);
  kiln_compiled_model *models = NULL;
  kiln_status s;
  if (!cuts || !segs) {
    s = kiln_fail(err, KILN_ERR_NOMEM, "out of memory");
    goto done;
  }
  if (o->n_intermediate_tensors > 0) {
    s = compile_cuts_by_tensors(whole->model, o->intermediate_tensors, o->n_intermediate_tensors, cuts, &n_cuts, err);
    if (s != KILN_OK) kiln_error_prefix(err, "%s", whole->source_path);
  } else {
    n_cuts = o->num_segments - 1;
    s = compile_cuts_by_params(whole, o->num_segments, cuts, err);
  }
  if (s != KILN_OK) goto done;
  if ((s = kiln_compile_split(whole->model, cuts, n_cuts, segs, err)) != KILN_OK) {
    kiln_error_prefix(err, "%s", whole->source_path);
    goto done;
  }
  n = n_cuts + 1;
  if (!(models = kiln_calloc((size_t)n, sizeof *models))) {
    s = kiln_fail(err, KILN_ERR_NOMEM, "out of memory");
    goto done;
  }
  for (int32_t k = 0; k < n && s == KILN_OK; k++) {
    char name[512];
    snprintf(name, sizeof name, "%s_segment_%d_of_%d", whole->name, (int)k, (int)n);
    s = init_model(&models[k], segs[k], name, whole->source_path, whole->source_bytes, err);
    segs[k] = NULL; /* owned by models[k] now */
    models[k].caching_token = fnv1a(hash, &k, sizeof k);
  }
  if (s == KILN_OK) {
    free_model(whole);
    kiln_free(r->models);
    r->models = models;
    r->n_models = n;
    r->segments = n;
    models = NULL;
  }
done:
  for (int32_t k = 0; models && k < n; k++) free_model(&models[k]);
  for (int32_t k = 0; segs && k < max_segments; k++) kiln_model_free(segs[k]);
  kiln_free(models);
  kiln_free(segs);
  kiln_free(cuts);
  return s;
}

/* Mapping, caching (alone, then shared) and estimates. */
static kiln_status plan(kiln_compile_result *r, kiln_error *err) {
  const kiln_target *t = r->target;
  for (int32_t i = 0; i < r->n_models; i++) {
    kiln_compiled_model *cm = &r->models[i];
    kiln_status s = compile_map_ops(t, cm, err);
    if (s != KILN_OK) return s;
    compile_cache(t, cm, 1, false);
    compile_estimate(t, cm);
    cm->alone_on_chip_bytes = cm->on_chip_bytes;
    cm->alone_latency_seconds = cm->latency_seconds;
    if (!cm->quantized && !t->is_cpu) r->unquantized_models++;
  }
  r->on_chip_capacity = t->param_memory_bytes;
  r->on_chip_used = compile_cache(t, r->models, r->n_models, r->co_compiled);
  r->on_chip_remaining = t->param_memory_bytes >= 0 ? t->param_memory_bytes - r->on_chip_used : 0;
  if (r->on_chip_remaining < 0) r->on_chip_remaining = 0;
  double sum = 0, slowest = 0, separate = 0;
  for (int32_t i = 0; i < r->n_models; i++) {
    kiln_compiled_model *cm = &r->models[i];
    compile_estimate(t, cm);
    sum += cm->latency_seconds;
    if (cm->latency_seconds > slowest) slowest = cm->latency_seconds;
    separate += cm->alone_latency_seconds;
    if (t->link_bytes_per_s > 0 && r->n_models > 1)
      separate += (double)cm->alone_on_chip_bytes / t->link_bytes_per_s;
  }
  r->set_latency_seconds = sum;
  r->separate_latency_seconds = separate;
  r->set_fps = r->segments > 0 ? (slowest > 0 ? 1.0 / slowest : 0) : (sum > 0 ? 1.0 / sum : 0);
  return KILN_OK;
}

kiln_status kiln_compile(const char *const *model_paths, int32_t n_models, const kiln_target *target,
                         const kiln_compile_options *options, kiln_compile_result **out, kiln_error *err) {
  const double t0 = now_ms();
  *out = NULL;
  kiln_compile_options none = {0};
  const kiln_compile_options *o = options ? options : &none;
  if (n_models < 1) return kiln_fail(err, KILN_ERR_INVALID_ARG, "no model to compile");
  kiln_status s = check_options(o, n_models, err);
  if (s != KILN_OK) return s;
  kiln_compile_result *r = kiln_calloc(1, sizeof *r);
  if (!r || !(r->models = kiln_calloc((size_t)n_models, sizeof *r->models))) {
    kiln_free(r);
    return kiln_fail(err, KILN_ERR_NOMEM, "out of memory");
  }
  r->target = target;
  r->co_compiled = n_models > 1;
  uint64_t hash = fnv1a(0xcbf29ce484222325ull, target->name, strlen(target->name));
  for (int32_t i = 0; i < n_models; i++) {
    kiln_model *m = NULL;
    size_t bytes = 0;
    if ((s = load_model(model_paths[i], &m, &bytes, &hash, err)) != KILN_OK) goto fail;
    char *name = stem_of(model_paths[i]);
    r->n_models = i + 1;
    s = name ? init_model(&r->models[i], m, name, model_paths[i], bytes, err)
             : kiln_fail(err, KILN_ERR_NOMEM, "out of memory");
    if (!name) kiln_model_free(m);
    kiln_free(name);
    if (s != KILN_OK) goto fail;
    for (int32_t j = 0; j < i; j++)
      if (strcmp(r->models[j].name, r->models[i].name) == 0) {
        s = kiln_fail(err, KILN_ERR_INVALID_ARG, "%s and %s: two models named '%s' (their outputs would collide)",
                      r->models[j].source_path, model_paths[i], r->models[i].name);
        goto fail;
      }
  }
  for (int32_t i = 0; i < r->n_models; i++) r->models[i].caching_token = hash;
  if ((o->num_segments > 1 || o->n_intermediate_tensors > 0) &&
      (s = split_into_segments(r, o, hash, err)) != KILN_OK)
    goto fail;
  if ((s = plan(r, err)) != KILN_OK) goto fail;
  r->compile_ms = now_ms() - t0;
  *out = r;
  return KILN_OK;
fail:
  kiln_compile_free(r);
  return s;
}

static kiln_status mkdirs(const char *path, kiln_error *err) {
  char buf[4096];
  size_t n = strlen(path);
  if (n == 0 || n >= sizeof buf) return kiln_fail(err, KILN_ERR_INVALID_ARG, "output directory '%s': bad path", path);
  memcpy(buf, path, n + 1);
  for (size_t i = 1; i <= n; i++) {
    if (buf[i] != '/' && buf[i] != '\0') continue;
    char c = buf[i];
    buf[i] = '\0';
    if (mkdir(buf, 0755) != 0 && errno != EEXIST)
      return kiln_fail(err, KILN_ERR_IO, "%s: cannot create directory: %s", buf, strerror(errno));
    buf[i] = c;
  }
  struct stat st;
  if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
    return kiln_fail(err, KILN_ERR_IO, "%s: not a directory", path);
  return KILN_OK;
}

/* Replaces (or adds) the model's METADATA_NAME entry; the new list and
 * bytes live in the model's pool. */
static kiln_status set_metadata(kiln_model *m, const char *text, kiln_error *err) {
  const size_t n = strlen(text);
  int32_t keep = 0;
  for (int32_t i = 0; i < m->n_metadata; i++) keep += strcmp(m->metadata[i].name, METADATA_NAME) != 0;
  kiln_metadata *list = kiln_model_alloc(m, (size_t)(keep + 1) * sizeof *list);
  char *name = kiln_model_alloc(m, sizeof METADATA_NAME);
  uint8_t *bytes = kiln_model_alloc(m, n + 1);
  if (!list || !name || !bytes) return kiln_fail(err, KILN_ERR_NOMEM, "out of memory");
  int32_t k = 0;
  for (int32_t i = 0; i < m->n_metadata; i++)
    if (strcmp(m->metadata[i].name, METADATA_NAME) != 0) list[k++] = m->metadata[i];
  memcpy(name, METADATA_NAME, sizeof METADATA_NAME);
  memcpy(bytes, text, n);
  list[k] = (kiln_metadata){name, bytes, n};
  m->metadata = list;
  m->n_metadata = keep + 1;
  return KILN_OK;
}

static char *join_path(const char *dir, const char *name, const char *target, const char *ext) {
  size_t n = strlen(dir) + strlen(name) + (target ? strlen(target) : 0) + strlen(ext) + 3;
  char *p = kiln_malloc(n);
  if (p) snprintf(p, n, "%s/%s%s%s%s", dir, name, target ? "_" : "", target ? target : "", ext);
  return p;
}

static kiln_status write_text(const char *path, char *text, kiln_error *err) {
  if (!text) return kiln_fail(err, KILN_ERR_NOMEM, "%s: out of memory writing the report", path);
  kiln_status s = kiln_file_write_atomic(path, text, strlen(text), err);
  kiln_free(text);
  return s;
}

static kiln_status write_model(kiln_compile_result *r, int32_t i, const char *dir, kiln_error *err) {
  kiln_compiled_model *cm = &r->models[i];
  json_t *j = compile_model_json(r, i, true);
  char *text = j ? json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(6)) : NULL;
  json_decref(j);
  if (!text) return kiln_fail(err, KILN_ERR_NOMEM, "%s: out of memory", cm->name);
  kiln_status s = set_metadata(cm->model, text, err);
  free(text);
  if (s != KILN_OK) return s;
  char *path = join_path(dir, cm->name, r->target->name, ".tflite");
  if (!path) return kiln_fail(err, KILN_ERR_NOMEM, "out of memory");
  uint8_t *bytes = NULL;
  size_t size = 0;
  s = kiln_model_serialize(cm->model, &bytes, &size, err);
  if (s != KILN_OK) {
    kiln_error_prefix(err, "%s: cannot write the compiled model", path);
  } else {
    s = kiln_file_write_atomic(path, bytes, size, err);
  }
  kiln_free(bytes);
  if (s != KILN_OK) {
    kiln_free(path);
    return s;
  }
  kiln_free(cm->output_path);
  cm->output_path = path;
  cm->output_bytes = size;
  return KILN_OK;
}

static kiln_status write_bundle(kiln_compile_result *r, const char *dir, kiln_error *err) {
  if (r->n_models > KILN_BUNDLE_MAX_MODELS)
    return kiln_fail(err, KILN_ERR_LIMIT, "a CPU bundle holds at most %d models (%d given)", KILN_BUNDLE_MAX_MODELS,
                     (int)r->n_models);
  const char *paths[KILN_BUNDLE_MAX_MODELS];
  for (int32_t i = 0; i < r->n_models; i++) paths[i] = r->models[i].output_path;
  char *path = join_path(dir, "bundle", NULL, ".kbundle");
  if (!path) return kiln_fail(err, KILN_ERR_NOMEM, "out of memory");
  kiln_bundle_info info;
  kiln_status s = kiln_bundle_write(paths, r->n_models, path, &info, err);
  if (s != KILN_OK) {
    kiln_free(path);
    return s;
  }
  r->bundle_shared_arena_bytes = (int64_t)info.shared_arena_bytes;
  r->bundle_sum_arena_bytes = (int64_t)info.sum_arena_bytes;
  r->bundle_saved_bytes = (int64_t)info.saved_bytes;
  r->bundle_file_bytes = (int64_t)info.file_bytes;
  kiln_free(r->bundle_path);
  r->bundle_path = path;
  return KILN_OK;
}

kiln_status kiln_compile_write(kiln_compile_result *r, const char *out_dir, kiln_error *err) {
  kiln_status s = mkdirs(out_dir, err);
  if (s != KILN_OK) return s;
  for (int32_t i = 0; i < r->n_models; i++) {
    if (!r->models[i].quantized && !r->target->is_cpu) continue;
    if ((s = write_model(r, i, out_dir, err)) != KILN_OK) return s;
  }
  if (r->target->is_cpu && (s = write_bundle(r, out_dir, err)) != KILN_OK) return s;
  for (int32_t i = 0; i < r->n_models; i++) {
    char *path = join_path(out_dir, r->models[i].name, r->target->name, ".log");
    if (!path) return kiln_fail(err, KILN_ERR_NOMEM, "out of memory");
    s = write_text(path, kiln_compile_model_report_text(r, i), err);
    kiln_free(path);
    if (s != KILN_OK) return s;
  }
  char *path = join_path(out_dir, "report", NULL, ".json");
  if (!path) return kiln_fail(err, KILN_ERR_NOMEM, "out of memory");
  s = write_text(path, kiln_compile_report_json(r), err);
  kiln_free(path);
  return s;
}

void kiln_compile_free(kiln_compile_result *r) {
  if (!r) return;
  for (int32_t i = 0; r->models && i < r->n_models; i++) free_model(&r->models[i]);
  kiln_free(r->models);
  kiln_free(r->bundle_path);
  kiln_free(r);
}
