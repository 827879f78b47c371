/*
 * Checkpoints of a training run (kiln/train.h): everything needed to
 * continue bit-identically, in one versioned, checksummed file written
 * atomically.
 *
 * Layout (little-endian, as the hosts kiln runs on):
 *   "KILNCKPT"  u32 version  u32 reserved (0)
 *   u64 structure fingerprint   u64 n_params   u64 n_state
 *   i64 step   u64 dropout counter   u64 seed
 *   run state: i64 epoch, u64 rng[4], the optimizer (RECORD_OPTIM below)
 *   u64 extra bytes
 *   f32 params[n_params] moment1[n_params] moment2[n_params] state[n_state]
 *   extra
 *   u32 CRC-32 (zlib) of every byte before it
 * n_params and n_state are the net's layout sizes (with alignment gaps), so
 * the fingerprint plus these sizes pin the layout exactly.
 */
#include <string.h>
#include <zlib.h>

#include "base/file.h"
#include "train/net_int.h"

#define MAGIC "KILNCKPT"
#define VERSION 1u

/* FNV-1a over what fixes the layout: every layer's kind, inputs, shape,
 * geometry and parameter counts. */
static uint64_t fingerprint(const kiln_net *net) {
  uint64_t h = 1469598103934665603ull;
  for (int32_t i = 0; i < net->n_layers; i++) {
    const train_layer *l = &net->layers[i];
    const int64_t fields[] = {l->kind, l->in[0], l->in[1], l->h, l->w, l->c, l->kh, l->kw,
                              l->sh, l->sw, l->dh, l->dw, l->pad_t, l->pad_l, l->mult,
                              l->has_bias, l->w_count, l->b_count};
    for (size_t f = 0; f < sizeof fields / sizeof fields[0]; f++) {
      uint64_t v = (uint64_t)fields[f];
      for (int b = 0; b < 8; b++) {
        h ^= (v >> (8 * b)) & 0xff;
        h *= 1099511628211ull;
      }
    }
  }
  return h;
}

/* A growing byte writer over a fixed-size buffer. */
typedef struct writer {
  unsigned char *p;
} writer;

static void put(writer *w, const void *v, size_t n) {
  memcpy(w->p, v, n);
  w->p += n;
}
static void put_u32(writer *w, uint32_t v) { put(w, &v, 4); }
static void put_u64(writer *w, uint64_t v) { put(w, &v, 8); }
static void put_f32(writer *w, float v) { put(w, &v, 4); }

typedef struct reader {
  const unsigned char *p;
} reader;

static void get(reader *r, void *v, size_t n) {
  memcpy(v, r->p, n);
  r->p += n;
}
static uint32_t get_u32(reader *r) {
  uint32_t v;
  get(r, &v, 4);
  return v;
}
static uint64_t get_u64(reader *r) {
  uint64_t v;
  get(r, &v, 8);
  return v;
}
static float get_f32(reader *r) {
  float v;
  get(r, &v, 4);
  return v;
}

/* Fixed part: magic, version, reserved, 6 u64, epoch, rng, optimizer (4 +
 * 4 * 2 + 8 * 2 + 4 + 4 + 4 * 5 bytes), extra size. */
#define OPTIM_BYTES (4 + 8 + 16 + 4 + 4 + 20)
#define FIXED_BYTES (8 + 4 + 4 + 6 * 8 + 8 + 32 + OPTIM_BYTES + 8)

static void put_optim(writer *w, const kiln_optim *o) {
  put_u32(w, (uint32_t)o->kind);
  put_f32(w, o->schedule.base_lr);
  put_f32(w, o->schedule.final_lr);
  put_u64(w, (uint64_t)o->schedule.warmup_steps);
  put_u64(w, (uint64_t)o->schedule.total_steps);
  put_f32(w, o->momentum);
  put_u32(w, o->nesterov ? 1u : 0u);
  put_f32(w, o->beta1);
  put_f32(w, o->beta2);
  put_f32(w, o->eps);
  put_f32(w, o->weight_decay);
  put_f32(w, o->clip_norm);
}

static void get_optim(reader *r, kiln_optim *o) {
  memset(o, 0, sizeof *o);
  o->kind = (kiln_optim_kind)get_u32(r);
  o->schedule.base_lr = get_f32(r);
  o->schedule.final_lr = get_f32(r);
  o->schedule.warmup_steps = (int64_t)get_u64(r);
  o->schedule.total_steps = (int64_t)get_u64(r);
  o->momentum = get_f32(r);
  o->nesterov = get_u32(r) != 0;
  o->beta1 = get_f32(r);
  o->beta2 = get_f32(r);
  o->eps = get_f32(r);
  o->weight_decay = get_f32(r);
  o->clip_norm = get_f32(r);
}

kiln_status kiln_checkpoint_save(const kiln_net *net, const kiln_run_state *state,
                                 const void *extra, size_t extra_bytes, const char *path,
                                 kiln_error *err) {
  if (!net->finalized)
    return kiln_fail(err, KILN_ERR_INVALID_ARG, "%s: the net is not finalized", path);
  const size_t floats = 3 * net->n_params + net->n_state;
  const size_t size = FIXED_BYTES + floats * sizeof(float) + extra_bytes + 4;
  unsigned char *buf = kiln_malloc(size);
  if (!buf) return kiln_fail(err, KILN_ERR_NOMEM, "%s: %zu bytes for the checkpoint", path, size);
  writer w = {buf};
  put(&w, MAGIC, 8);
  put_u32(&w, VERSION);
  put_u32(&w, 0);
  put_u64(&w, fingerprint(net));
  put_u64(&w, net->n_params);
  put_u64(&w, net->n_state);
  put_u64(&w, (uint64_t)net->step);
  put_u64(&w, net->dropout_counter);
  put_u64(&w, net->seed);
  put_u64(&w, (uint64_t)state->epoch);
  for (int i = 0; i < 4; i++) put_u64(&w, state->rng.s[i]);
  put_optim(&w, &state->optim);
  put_u64(&w, extra_bytes);
  put(&w, net->params, net->n_params * sizeof(float));
  put(&w, net->moment1, net->n_params * sizeof(float));
  put(&w, net->moment2, net->n_params * sizeof(float));
  put(&w, net->state, net->n_state * sizeof(float));
  if (extra_bytes) put(&w, extra, extra_bytes);
  put_u32(&w, (uint32_t)crc32_z(0L, buf, size - 4));
  kiln_status s = kiln_file_write_atomic(path, buf, size, err);
  kiln_free(buf);
  return s;
}

kiln_status kiln_checkpoint_load(kiln_net *net, kiln_run_state *state, void **extra,
                                 size_t *extra_bytes, const char *path, kiln_error *err) {
  if (extra) *extra = NULL;
  if (extra_bytes) *extra_bytes = 0;
  if (!net->finalized)
    return kiln_fail(err, KILN_ERR_INVALID_ARG, "%s: the net is not finalized", path);
  kiln_mapped_file f;
  kiln_status s = kiln_file_map(path, &f, err);
  if (s != KILN_OK) return s;
  s = KILN_ERR_FORMAT;
  if (f.size < FIXED_BYTES + 4 || memcmp(f.data, MAGIC, 8) != 0) {
    kiln_fail(err, s, "%s: not a kiln checkpoint", path);
    goto done;
  }
  reader r = {f.data + 8};
  const uint32_t version = get_u32(&r);
  if (version != VERSION) {
    kiln_fail(err, s, "%s: checkpoint version %u, kiln reads version %u", path, version, VERSION);
    goto done;
  }
  uint32_t stored_crc;
  memcpy(&stored_crc, f.data + f.size - 4, 4);
  const uint32_t crc = (uint32_t)crc32_z(0L, f.data, f.size - 4);
  if (crc != stored_crc) {
    kiln_fail(err, s, "%s: checksum %08x does not match the stored %08x (damaged or truncated)",
              path, crc, stored_crc);
    goto done;
  }
  get_u32(&r);
  const uint64_t fp = get_u64(&r), n_params = get_u64(&r), n_state = get_u64(&r);
  if (fp != fingerprint(net) || n_params != net->n_params || n_state != net->n_state) {
    kiln_fail(err, s,
              "%s: the checkpoint is of a different net (%llu parameter and %llu state floats, "
              "structure %016llx; this net: %zu, %zu, %016llx)",
              path, (unsigned long long)n_params, (unsigned long long)n_state,
              (unsigned long long)fp, net->n_params, net->n_state,
              (unsigned long long)fingerprint(net));
    goto done;
  }
  const int64_t step = (int64_t)get_u64(&r);
  const uint64_t counter = get_u64(&r), seed = get_u64(&r);
  kiln_run_state st;
  st.epoch = (int64_t)get_u64(&r);
  for (int i = 0; i < 4; i++) st.rng.s[i] = get_u64(&r);
  get_optim(&r, &st.optim);
  const uint64_t extra_size = get_u64(&r);
  const size_t floats = 3 * net->n_params + net->n_state;
  if (extra_size != f.size - FIXED_BYTES - floats * sizeof(float) - 4) {
    kiln_fail(err, s, "%s: %zu bytes do not match the sections' sizes", path, f.size);
    goto done;
  }
  void *copy = NULL;
  if (extra && extra_size) {
    copy = kiln_malloc(extra_size);
    if (!copy) {
      s = kiln_fail(err, KILN_ERR_NOMEM, "%s: %llu bytes of extra data", path,
                    (unsigned long long)extra_size);
      goto done;
    }
  }
  get(&r, net->params, net->n_params * sizeof(float));
  get(&r, net->moment1, net->n_params * sizeof(float));
  get(&r, net->moment2, net->n_params * sizeof(float));
  get(&r, net->state, net->n_state * sizeof(float));
  if (copy) {
    get(&r, copy, extra_size);
    *extra = copy;
    if (extra_bytes) *extra_bytes = extra_size;
  }
  net->step = step;
  net->dropout_counter = counter;
  net->seed = seed;
  *state = st;
  s = KILN_OK;
done:
  kiln_file_unmap(&f);
  return s;
}
