/*
 * Writing a bundle (kiln/bundle.h): each model is loaded (with the load-time
 * passes), serialized and parsed back exactly as the loader will parse it,
 * and prepared by an interpreter that lists every blob it packs and keeps
 * its memory plan; the file (runtime/bundle_format.h) is built in memory,
 * checksummed and written atomically.
 */
#include <stdio.h>
#include <string.h>

#include "base/file.h"
#include "kernels/cpu.h"
#include "runtime/bundle_format.h"
#include "runtime/interp_int.h"

typedef struct prepared_model {
  const char *path;
  uint8_t *bytes; /* serialized model (kiln_malloc) */
  size_t size;
  kiln_model *model;
  kiln_interp *interp;
  int32_t n_packed;
  uint64_t packed_bytes;
} prepared_model;

static uint64_t align_up(uint64_t x, uint64_t to) { return (x + to - 1) / to * to; }

static const char *base_name(const char *path) {
  const char *slash = strrchr(path, '/');
  return slash ? slash + 1 : path;
}

/* Load, serialize, parse back, prepare (writing nothing but the list of
 * packed blobs: no arena is allocated). */
static kiln_status prepare_model(const char *path, prepared_model *pm, kiln_error *err) {
  pm->path = path;
  kiln_model *loaded;
  kiln_status s = kiln_model_load(path, &loaded, err);
  if (s != KILN_OK) return s;
  s = kiln_model_serialize(loaded, &pm->bytes, &pm->size, err);
  kiln_model_free(loaded);
  if (s != KILN_OK) {
    kiln_error_prefix(err, "%s", path);
    return s;
  }
  s = kiln_model_parse(pm->bytes, pm->size, false, path, &pm->model, err);
  if (s != KILN_OK) return s;
  kiln_interp_options options = {.n_threads = 1};
  kiln_interp_setup setup = {.isa = kiln_cpu_isa(), .defer_memory = true};
  s = kiln_interp_create_setup(pm->model, &options, &setup, &pm->interp, err);
  if (s != KILN_OK) {
    kiln_error_prefix(err, "%s", path);
    return s;
  }
  for (const kiln_packed_rec *r = kiln_interp_packed(pm->interp); r; r = r->next) {
    pm->n_packed++;
    pm->packed_bytes += r->pk.bytes;
  }
  return KILN_OK;
}

/* Places every section (see runtime/bundle_format.h); returns the file size. */
static uint64_t lay_out(const prepared_model *pms, int32_t n, kiln_bundle_model_rec *recs) {
  uint64_t off = sizeof(kiln_bundle_header) + (uint64_t)n * sizeof(kiln_bundle_model_rec);
  for (int32_t i = 0; i < n; i++) {
    recs[i].offsets_offset = align_up(off, 8);
    off = recs[i].offsets_offset + (uint64_t)pms[i].model->n_tensors * sizeof(uint64_t);
    recs[i].packed_offset = align_up(off, 8);
    off = recs[i].packed_offset + (uint64_t)pms[i].n_packed * sizeof(kiln_bundle_packed_rec);
  }
  for (int32_t i = 0; i < n; i++) {
    recs[i].model_offset = align_up(off, KILN_BUNDLE_ALIGN);
    recs[i].model_bytes = pms[i].size;
    off = recs[i].model_offset + pms[i].size;
  }
  for (int32_t i = 0; i < n; i++)
    for (const kiln_packed_rec *r = kiln_interp_packed(pms[i].interp); r; r = r->next)
      off = align_up(off, KILN_BUNDLE_ALIGN) + r->pk.bytes;
  return off;
}

/* Fills the image laid out in recs (zeroed, file_bytes long). */
static void fill_image(const prepared_model *pms, int32_t n, kiln_bundle_model_rec *recs,
                       uint8_t *file, uint64_t file_bytes) {
  kiln_bundle_header h;
  memset(&h, 0, sizeof h);
  memcpy(h.magic, KILN_BUNDLE_MAGIC, sizeof h.magic);
  h.version = KILN_BUNDLE_VERSION;
  h.byte_order = KILN_BUNDLE_BYTE_ORDER;
  h.file_bytes = file_bytes;
  h.header_bytes = sizeof h;
  h.arch = KILN_BUNDLE_ARCH;
  h.isa = kiln_interp_isa(pms[0].interp);
  h.n_models = (uint32_t)n;
  h.models_offset = sizeof h;
  uint64_t blob_off = recs[n - 1].model_offset + recs[n - 1].model_bytes;
  for (int32_t i = 0; i < n; i++) {
    const prepared_model *pm = &pms[i];
    const kiln_memory_stats mem = kiln_interp_memory(pm->interp);
    kiln_bundle_model_rec *rec = &recs[i];
    snprintf(rec->name, sizeof rec->name, "%s", base_name(pm->path));
    rec->arena_bytes = mem.arena_bytes;
    rec->scratch_bytes = mem.scratch_bytes;
    rec->params_bytes = mem.params_bytes;
    rec->packed_bytes = pm->packed_bytes;
    rec->n_tensors = pm->model->n_tensors;
    rec->n_ops = pm->model->n_ops;
    rec->n_packed = pm->n_packed;
    memcpy(file + rec->model_offset, pm->bytes, pm->size);
    const size_t *offsets = kiln_interp_arena_offsets(pm->interp);
    for (int32_t t = 0; t < pm->model->n_tensors; t++) {
      const uint64_t o = offsets[t] == KILN_NO_OFFSET ? KILN_BUNDLE_NO_OFFSET : offsets[t];
      memcpy(file + rec->offsets_offset + (uint64_t)t * sizeof o, &o, sizeof o);
    }
    int32_t k = 0;
    for (const kiln_packed_rec *r = kiln_interp_packed(pm->interp); r; r = r->next, k++) {
      kiln_bundle_packed_rec pr = {r->op, r->seq, r->pk.info, r->pk.isa, 0, r->pk.bytes};
      h.isa_required |= r->pk.isa;
      pr.offset = blob_off = align_up(blob_off, KILN_BUNDLE_ALIGN);
      memcpy(file + pr.offset, r->pk.data, r->pk.bytes);
      blob_off += r->pk.bytes;
      memcpy(file + rec->packed_offset + (uint64_t)k * sizeof pr, &pr, sizeof pr);
    }
  }
  memcpy(file + h.models_offset, recs, (size_t)n * sizeof *recs);
  memcpy(file, &h, sizeof h);
  h.checksum = kiln_bundle_checksum(file, file_bytes);
  memcpy(file, &h, sizeof h);
}

kiln_status kiln_bundle_write(const char *const *model_paths, int32_t n_models,
                              const char *out_path, kiln_bundle_info *info, kiln_error *err) {
  if (n_models < 1 || n_models > KILN_BUNDLE_MAX_MODELS || !model_paths || !out_path)
    return kiln_fail(err, KILN_ERR_INVALID_ARG, "a bundle holds 1 to %d models (got %d)",
                     KILN_BUNDLE_MAX_MODELS, (int)n_models);
  prepared_model pms[KILN_BUNDLE_MAX_MODELS];
  kiln_bundle_model_rec recs[KILN_BUNDLE_MAX_MODELS];
  memset(pms, 0, sizeof pms);
  memset(recs, 0, sizeof recs);
  uint8_t *file = NULL;
  kiln_status s = KILN_OK;
  for (int32_t i = 0; i < n_models && s == KILN_OK; i++)
    s = model_paths[i] ? prepare_model(model_paths[i], &pms[i], err)
                       : kiln_fail(err, KILN_ERR_INVALID_ARG, "model path %d is NULL", (int)i);
  uint64_t file_bytes = 0;
  if (s == KILN_OK) {
    file_bytes = lay_out(pms, n_models, recs);
    file = file_bytes <= SIZE_MAX ? kiln_calloc(1, (size_t)file_bytes) : NULL;
    if (!file)
      s = kiln_fail(err, KILN_ERR_NOMEM, "%s: out of memory for a %llu-byte bundle", out_path,
                    (unsigned long long)file_bytes);
  }
  if (s == KILN_OK) {
    fill_image(pms, n_models, recs, file, file_bytes);
    s = kiln_file_write_atomic(out_path, file, (size_t)file_bytes, err);
  }
  if (s == KILN_OK && info) kiln_bundle_info_from(file, info);
  kiln_free(file);
  for (int32_t i = 0; i < n_models; i++) {
    kiln_interp_free(pms[i].interp);
    kiln_model_free(pms[i].model);
    kiln_free(pms[i].bytes);
  }
  return s;
}
