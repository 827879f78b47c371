/*
 * Opening a bundle (kiln/bundle.h): map the file, check it (magic, byte
 * order, version, size, checksum, instruction set, then every record's
 * offsets against the file), parse each stored model in place, and create
 * its interpreter with the stored packed blobs and memory plan, on one
 * shared thread pool; then give all of them one arena and one scratch
 * area, as large as the largest model needs.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "base/file.h"
#include "kernels/cpu.h"
#include "runtime/bundle_format.h"
#include "runtime/interp_int.h"

struct kiln_bundle {
  kiln_mapped_file file;
  const uint8_t *data; /* the image: the mapping, or an aligned copy */
  int32_t n_models;
  kiln_model *models[KILN_BUNDLE_MAX_MODELS];
  kiln_interp *interps[KILN_BUNDLE_MAX_MODELS];
  kiln_threadpool *threads;
  kiln_pool pool; /* stored blob lists, plans, the shared arena and scratch */
  kiln_bundle_info info;
};

uint64_t kiln_bundle_checksum(const uint8_t *file, size_t file_bytes) {
  return XXH3_64bits(file + KILN_BUNDLE_CHECKED_FROM, file_bytes - KILN_BUNDLE_CHECKED_FROM);
}

void kiln_bundle_isa_name(uint32_t isa, char *buf, size_t cap) {
  size_t n = 0;
  buf[0] = '\0';
  for (uint32_t bit = 1; bit && n < cap; bit <<= 1)
    if (isa & bit) n += (size_t)snprintf(buf + n, cap - n, "%s%s", n ? " " : "", kiln_isa_name(bit));
  if (isa == 0) snprintf(buf, cap, "ref");
}

void kiln_bundle_info_from(const uint8_t *file, kiln_bundle_info *info) {
  kiln_bundle_header h;
  memcpy(&h, file, sizeof h);
  memset(info, 0, sizeof *info);
  info->n_models = (int32_t)h.n_models;
  info->isa = h.isa_required;
  kiln_bundle_isa_name(h.isa_required, info->isa_name, sizeof info->isa_name);
  info->file_bytes = (size_t)h.file_bytes;
  for (int32_t i = 0; i < info->n_models; i++) {
    kiln_bundle_model_rec rec;
    memcpy(&rec, file + h.models_offset + (uint64_t)i * sizeof rec, sizeof rec);
    kiln_bundle_model_info *m = &info->models[i];
    snprintf(m->name, sizeof m->name, "%s", rec.name);
    m->n_ops = rec.n_ops;
    m->model_bytes = (size_t)rec.model_bytes;
    m->packed_bytes = (size_t)rec.packed_bytes;
    m->params_bytes = (size_t)rec.params_bytes;
    m->arena_bytes = (size_t)rec.arena_bytes;
    m->scratch_bytes = (size_t)rec.scratch_bytes;
    info->sum_arena_bytes += m->arena_bytes;
    if (m->arena_bytes > info->shared_arena_bytes) info->shared_arena_bytes = m->arena_bytes;
  }
  info->saved_bytes = info->sum_arena_bytes - info->shared_arena_bytes;
}

bool kiln_bundle_detect(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return false;
  char magic[8];
  const bool yes = fread(magic, 1, sizeof magic, f) == sizeof magic &&
                   memcmp(magic, KILN_BUNDLE_MAGIC, sizeof magic) == 0;
  fclose(f);
  return yes;
}

/* Whether count elements of elem bytes at off lie inside the file. */
static bool in_file(uint64_t off, uint64_t count, uint64_t elem, uint64_t file_bytes) {
  return off <= file_bytes && (elem == 0 || count <= (file_bytes - off) / elem);
}

static kiln_status check_header(const uint8_t *d, size_t size, kiln_bundle_header *h,
                                kiln_error *err) {
  if (size < 8 || memcmp(d, KILN_BUNDLE_MAGIC, 8) != 0)
    return kiln_fail(err, KILN_ERR_FORMAT, "not a kiln bundle (no %s magic)", KILN_BUNDLE_MAGIC);
  if (size < sizeof *h)
    return kiln_fail(err, KILN_ERR_FORMAT, "truncated bundle: %zu bytes, shorter than its header",
                     size);
  memcpy(h, d, sizeof *h);
  if (h->byte_order == __builtin_bswap32(KILN_BUNDLE_BYTE_ORDER))
    return kiln_fail(err, KILN_ERR_FORMAT,
                     "bundle written on a machine of the other byte order: write it again here");
  if (h->byte_order != KILN_BUNDLE_BYTE_ORDER)
    return kiln_fail(err, KILN_ERR_FORMAT, "corrupted bundle header (byte order mark 0x%08x)",
                     (unsigned)h->byte_order);
  if (h->version != KILN_BUNDLE_VERSION)
    return kiln_fail(err, KILN_ERR_FORMAT,
                     "bundle format version %u, this kiln reads version %u: write it again "
                     "with this kiln",
                     (unsigned)h->version, (unsigned)KILN_BUNDLE_VERSION);
  if (h->file_bytes > size)
    return kiln_fail(err, KILN_ERR_FORMAT, "truncated bundle: %zu of its %llu bytes", size,
                     (unsigned long long)h->file_bytes);
  if (h->file_bytes < size)
    return kiln_fail(err, KILN_ERR_FORMAT, "bundle has %zu bytes, its header says %llu",
                     size, (unsigned long long)h->file_bytes);
  const uint64_t sum = kiln_bundle_checksum(d, size);
  if (sum != h->checksum)
    return kiln_fail(err, KILN_ERR_FORMAT,
                     "corrupted bundle: checksum %016llx, the header says %016llx",
                     (unsigned long long)sum, (unsigned long long)h->checksum);
  if (h->header_bytes != sizeof *h || h->n_models < 1 || h->n_models > KILN_BUNDLE_MAX_MODELS ||
      !in_file(h->models_offset, h->n_models, sizeof(kiln_bundle_model_rec), size))
    return kiln_fail(err, KILN_ERR_FORMAT, "inconsistent bundle header (%u models at %llu)",
                     (unsigned)h->n_models, (unsigned long long)h->models_offset);
  return KILN_OK;
}

static const char *arch_name(uint32_t arch) {
  if (arch == KILN_BUNDLE_ARCH_X86_64) return "x86-64";
  return arch == KILN_BUNDLE_ARCH_ARM64 ? "arm64" : "another CPU";
}

/* The kernels the blobs are laid out for must run on this CPU. */
static kiln_status check_isa(const kiln_bundle_header *h, kiln_error *err) {
  if (h->isa_required == 0) return KILN_OK;
  char want[96], have[96], missing[96];
  kiln_bundle_isa_name(h->isa_required, want, sizeof want);
  if (h->arch != KILN_BUNDLE_ARCH)
    return kiln_fail(err, KILN_ERR_UNSUPPORTED,
                     "bundle packed for %s kernels (%s), this is %s: write it again on this machine",
                     arch_name(h->arch), want, arch_name(KILN_BUNDLE_ARCH));
  const uint32_t lacking = h->isa_required & ~kiln_cpu_isa();
  if (lacking == 0) return KILN_OK;
  kiln_bundle_isa_name(kiln_cpu_isa(), have, sizeof have);
  kiln_bundle_isa_name(lacking, missing, sizeof missing);
  return kiln_fail(err, KILN_ERR_UNSUPPORTED,
                   "bundle packed for %s kernels, but this CPU lacks %s (it has: %s); write the "
                   "bundle again on this machine",
                   want, missing, kiln_cpu_isa() ? have : "none");
}

/* Checks a model record against the file and loads its plan and blob list
 * into setup (memory from the bundle's pool). */
static kiln_status read_model_rec(kiln_bundle *b, const kiln_bundle_model_rec *rec, int32_t i,
                                  kiln_interp_setup *setup, kiln_error *err) {
  const uint64_t size = b->file.size;
  if (!memchr(rec->name, '\0', sizeof rec->name) || rec->n_tensors < 0 || rec->n_ops < 0 ||
      rec->n_packed < 0 || rec->model_offset % KILN_BUNDLE_ALIGN != 0 ||
      !in_file(rec->model_offset, rec->model_bytes, 1, size) ||
      !in_file(rec->offsets_offset, (uint64_t)rec->n_tensors, sizeof(uint64_t), size) ||
      !in_file(rec->packed_offset, (uint64_t)rec->n_packed, sizeof(kiln_bundle_packed_rec), size) ||
      rec->arena_bytes > SIZE_MAX / 2)
    return kiln_fail(err, KILN_ERR_FORMAT, "model %d: inconsistent record", (int)i);
  size_t *offsets = kiln_pool_alloc(&b->pool, ((size_t)rec->n_tensors + 1) * sizeof *offsets, 8);
  kiln_packed_rec *stored =
      kiln_pool_alloc(&b->pool, ((size_t)rec->n_packed + 1) * sizeof *stored, 8);
  if (!offsets || !stored) return kiln_fail(err, KILN_ERR_NOMEM, "out of memory");
  for (int32_t t = 0; t < rec->n_tensors; t++) {
    uint64_t o;
    memcpy(&o, b->data + rec->offsets_offset + (uint64_t)t * sizeof o, sizeof o);
    offsets[t] = o == KILN_BUNDLE_NO_OFFSET || o > SIZE_MAX / 2 ? KILN_NO_OFFSET : (size_t)o;
  }
  for (int32_t k = 0; k < rec->n_packed; k++) {
    kiln_bundle_packed_rec pr;
    memcpy(&pr, b->data + rec->packed_offset + (uint64_t)k * sizeof pr, sizeof pr);
    const bool after = k == 0 || pr.op > stored[k - 1].op ||
                       (pr.op == stored[k - 1].op && pr.seq > stored[k - 1].seq);
    if (!after || pr.op < 0 || pr.op >= rec->n_ops || pr.seq < 0 ||
        pr.offset % KILN_BUNDLE_ALIGN != 0 || !in_file(pr.offset, pr.bytes, 1, size))
      return kiln_fail(err, KILN_ERR_FORMAT, "model %d: inconsistent packed record %d", (int)i,
                       (int)k);
    stored[k].op = pr.op;
    stored[k].seq = pr.seq;
    stored[k].pk.data = b->data + pr.offset;
    stored[k].pk.bytes = (size_t)pr.bytes;
    stored[k].pk.info = pr.info;
    stored[k].pk.isa = pr.isa;
  }
  setup->stored = stored;
  setup->n_stored = rec->n_packed;
  setup->arena_offsets = offsets;
  setup->arena_bytes = (size_t)rec->arena_bytes;
  return KILN_OK;
}

/* Parses model i in place and creates its interpreter (memory deferred). */
static kiln_status open_model(kiln_bundle *b, const kiln_bundle_header *h, int32_t i,
                              const kiln_interp_options *options, kiln_error *err) {
  kiln_bundle_model_rec rec;
  memcpy(&rec, b->data + h->models_offset + (uint64_t)i * sizeof rec, sizeof rec);
  /* With the writer's bits (as far as this CPU has them) prepare picks the
   * kernels it picked: those of isa_required, which check_isa found here. */
  kiln_interp_setup setup = {.isa = h->isa & kiln_cpu_isa(), .threads = b->threads,
                             .defer_memory = true};
  kiln_status s = read_model_rec(b, &rec, i, &setup, err);
  if (s != KILN_OK) return s;
  char label[160];
  snprintf(label, sizeof label, "model %d (%s)", (int)i, rec.name);
  s = kiln_model_parse(b->data + rec.model_offset, (size_t)rec.model_bytes, false, label,
                       &b->models[i], err);
  if (s != KILN_OK) return s;
  if (b->models[i]->n_tensors != rec.n_tensors || b->models[i]->n_ops != rec.n_ops)
    return kiln_fail(err, KILN_ERR_FORMAT, "%s: %d tensors and %d ops, its record says %d and %d",
                     label, (int)b->models[i]->n_tensors, (int)b->models[i]->n_ops,
                     (int)rec.n_tensors, (int)rec.n_ops);
  s = kiln_interp_create_setup(b->models[i], options, &setup, &b->interps[i], err);
  if (s != KILN_OK) kiln_error_prefix(err, "%s", label);
  return s;
}

/* One arena and one scratch area for all the interpreters. */
static kiln_status share_memory(kiln_bundle *b, int32_t n_threads, kiln_error *err) {
  size_t arena = 0, stride = 0;
  for (int32_t i = 0; i < b->n_models; i++) {
    const kiln_memory_stats mem = kiln_interp_memory(b->interps[i]);
    if (mem.arena_bytes > arena) arena = mem.arena_bytes;
    const size_t need = (mem.scratch_bytes + 63) / 64 * 64;
    if (need > stride) stride = need;
  }
  if (stride > SIZE_MAX / 2 / (size_t)n_threads)
    return kiln_fail(err, KILN_ERR_LIMIT, "scratch of %zu bytes per thread is too large", stride);
  uint8_t *arena_mem = kiln_pool_alloc(&b->pool, arena, 64);
  uint8_t *scratch = kiln_pool_alloc(&b->pool, stride * (size_t)n_threads, 64);
  if (!arena_mem || !scratch)
    return kiln_fail(err, KILN_ERR_NOMEM, "out of memory for a %zu-byte arena", arena);
  for (int32_t i = 0; i < b->n_models; i++)
    kiln_interp_bind_memory(b->interps[i], arena_mem, scratch, stride);
  return KILN_OK;
}

/* The file's bytes, 64-byte aligned (a mapping is; a read pipe may not be). */
static kiln_status align_image(kiln_bundle *b, kiln_error *err) {
  b->data = b->file.data;
  if ((uintptr_t)b->data % KILN_BUNDLE_ALIGN == 0) return KILN_OK;
  b->data = kiln_pool_memdup(&b->pool, b->file.data, b->file.size, 64);
  return b->data ? KILN_OK : kiln_fail(err, KILN_ERR_NOMEM, "out of memory");
}

kiln_status kiln_bundle_open(const char *path, const kiln_interp_options *options,
                             kiln_bundle **out, kiln_error *err) {
  *out = NULL;
  kiln_bundle *b = kiln_calloc(1, sizeof *b);
  if (!b) return kiln_fail(err, KILN_ERR_NOMEM, "out of memory");
  kiln_pool_init(&b->pool);
  kiln_interp_options opt = {0};
  if (options) opt = *options;
  const char *kernels = getenv("KILN_KERNELS");
  if (kernels && strcmp(kernels, "ref") == 0) opt.force_ref = true;
  if (opt.n_threads <= 0) opt.n_threads = kiln_cpu_count();
  kiln_bundle_header h;
  kiln_status s = kiln_file_map(path, &b->file, err);
  bool mapped = s == KILN_OK;
  if (s == KILN_OK) s = align_image(b, err);
  if (s == KILN_OK) s = check_header(b->data, b->file.size, &h, err);
  if (s == KILN_OK && !opt.force_ref) s = check_isa(&h, err);
  if (s == KILN_OK && opt.n_threads > 1) s = kiln_threadpool_create(opt.n_threads, &b->threads, err);
  for (int32_t i = 0; s == KILN_OK && i < (int32_t)h.n_models; i++) {
    s = open_model(b, &h, i, &opt, err);
    b->n_models = i + 1;
  }
  if (s == KILN_OK) s = share_memory(b, opt.n_threads, err);
  if (s == KILN_OK) kiln_bundle_info_from(b->data, &b->info);
  if (s != KILN_OK) {
    if (mapped) kiln_error_prefix(err, "%s", path);
    kiln_bundle_free(b);
    return s;
  }
  *out = b;
  return KILN_OK;
}

int32_t kiln_bundle_model_count(const kiln_bundle *b) { return b->n_models; }

kiln_interp *kiln_bundle_interp(kiln_bundle *b, int32_t i) {
  return i >= 0 && i < b->n_models ? b->interps[i] : NULL;
}

const kiln_model *kiln_bundle_model(const kiln_bundle *b, int32_t i) {
  return i >= 0 && i < b->n_models ? b->models[i] : NULL;
}

void kiln_bundle_get_info(const kiln_bundle *b, kiln_bundle_info *info) { *info = b->info; }

void kiln_bundle_free(kiln_bundle *b) {
  if (!b) return;
  for (int32_t i = 0; i < b->n_models; i++) {
    kiln_interp_free(b->interps[i]);
    kiln_model_free(b->models[i]);
  }
  kiln_threadpool_free(b->threads);
  kiln_pool_destroy(&b->pool);
  kiln_file_unmap(&b->file);
  kiln_free(b);
}
