/*
 * Checkpoints of SSD transfer learning (train/ssd_int.h): the predictor
 * heads (one kiln_net per feature map) with their optimizer state and the
 * run's position, in one versioned, checksummed file written atomically,
 * so a stopped run resumes bit-identically.
 *
 * Layout (little-endian, as the hosts kiln runs on):
 *   "KILNSSDT"  u32 version  u32 heads
 *   key: u64 seed, u64 caller's key, i32 batch, i32 epochs, i32 columns,
 *        i32 train images
 *   position: i64 epoch, i64 step, f64 sums (loss, class, box, positives),
 *             i64 images done
 *   per head: u64 shape fingerprint, u64 n_params, i64 optimizer step
 *   per head: f32 params[n_params] moment1[n_params] moment2[n_params]
 *   u32 CRC-32 (zlib) of every byte before it
 * The heads hold no batch norm state and no dropout, so parameters, moments
 * and the step are all there is.
 */
#include <string.h>
#include <zlib.h>

#include "base/file.h"
#include "train/net_int.h"
#include "train/ssd_int.h"

#define MAGIC "KILNSSDT"
#define VERSION 1u
#define HEADER_BYTES (8 + 4 + 4 + 8 + 8 + 4 * 4 + 8 + 8 + 4 * 8 + 8)
#define HEAD_BYTES (8 + 8 + 8)

/* FNV-1a over each layer's kind, inputs and shape. */
static uint64_t fingerprint(const kiln_net *net) {
  uint64_t h = 1469598103934665603ull;
  for (int32_t i = 0; i < net->n_layers; i++) {
    const train_layer *l = &net->layers[i];
    const int64_t fields[] = {l->kind, l->in[0], l->in[1], l->h, l->w, l->c,
                              l->kh,   l->kw,    l->w_count, l->b_count};
    for (size_t f = 0; f < sizeof fields / sizeof fields[0]; f++)
      for (int b = 0; b < 8; b++) {
        h ^= ((uint64_t)fields[f] >> (8 * b)) & 0xff;
        h *= 1099511628211ull;
      }
  }
  return h;
}

typedef struct cursor {
  unsigned char *p;
} cursor;

static void put(cursor *c, const void *v, size_t n) {
  memcpy(c->p, v, n);
  c->p += n;
}
typedef struct reader {
  const unsigned char *p;
} reader;

static void get(reader *r, void *v, size_t n) {
  memcpy(v, r->p, n);
  r->p += n;
}

static void put_key_pos(cursor *c, int32_t n_heads, const ssd_run_key *k, const ssd_position *p) {
  const uint32_t version = VERSION, heads = (uint32_t)n_heads;
  put(c, MAGIC, 8);
  put(c, &version, 4);
  put(c, &heads, 4);
  put(c, &k->seed, 8);
  put(c, &k->caller_key, 8);
  put(c, &k->batch, 4);
  put(c, &k->epochs, 4);
  put(c, &k->n_columns, 4);
  put(c, &k->n_train, 4);
  put(c, &p->epoch, 8);
  put(c, &p->step, 8);
  put(c, &p->sum_loss, 8);
  put(c, &p->sum_class, 8);
  put(c, &p->sum_box, 8);
  put(c, &p->sum_positives, 8);
  put(c, &p->images_done, 8);
}

kiln_status ssd_checkpoint_save(kiln_net *const *heads, int32_t n_heads, const ssd_run_key *key,
                                const ssd_position *pos, const char *path, kiln_error *err) {
  size_t size = HEADER_BYTES + 4;
  for (int32_t i = 0; i < n_heads; i++) size += HEAD_BYTES + 3 * heads[i]->n_params * 4;
  unsigned char *buf = kiln_malloc(size);
  if (!buf) return kiln_fail(err, KILN_ERR_NOMEM, "%s: %zu bytes for the checkpoint", path, size);
  cursor c = {buf};
  put_key_pos(&c, n_heads, key, pos);
  for (int32_t i = 0; i < n_heads; i++) {
    const uint64_t fp = fingerprint(heads[i]), np = heads[i]->n_params;
    put(&c, &fp, 8);
    put(&c, &np, 8);
    put(&c, &heads[i]->step, 8);
  }
  for (int32_t i = 0; i < n_heads; i++) {
    const size_t bytes = heads[i]->n_params * sizeof(float);
    put(&c, heads[i]->params, bytes);
    put(&c, heads[i]->moment1, bytes);
    put(&c, heads[i]->moment2, bytes);
  }
  const uint32_t crc = (uint32_t)crc32_z(0L, buf, size - 4);
  put(&c, &crc, 4);
  kiln_status s = kiln_file_write_atomic(path, buf, size, err);
  kiln_free(buf);
  return s;
}

/* Compares the stored key with the run's, naming the first difference. */
static kiln_status check_key(reader *c, const ssd_run_key *k, const char *path,
                             kiln_error *err) {
  ssd_run_key s;
  get(c, &s.seed, 8);
  get(c, &s.caller_key, 8);
  get(c, &s.batch, 4);
  get(c, &s.epochs, 4);
  get(c, &s.n_columns, 4);
  get(c, &s.n_train, 4);
  const char *field = s.seed != k->seed               ? "seed"
                      : s.caller_key != k->caller_key ? "key (data or settings)"
                      : s.batch != k->batch           ? "batch"
                      : s.epochs != k->epochs         ? "epochs"
                      : s.n_columns != k->n_columns   ? "classes"
                      : s.n_train != k->n_train       ? "training images"
                                                      : NULL;
  if (!field) return KILN_OK;
  return kiln_fail(err, KILN_ERR_INVALID_ARG,
                   "%s: the checkpoint's run differs in its %s (seed %llu, batch %d, %d epochs, "
                   "%d class columns, %d training images; this run: %llu, %d, %d, %d, %d)",
                   path, field, (unsigned long long)s.seed, (int)s.batch, (int)s.epochs,
                   (int)s.n_columns, (int)s.n_train, (unsigned long long)k->seed, (int)k->batch,
                   (int)k->epochs, (int)k->n_columns, (int)k->n_train);
}

kiln_status ssd_checkpoint_load(kiln_net *const *heads, int32_t n_heads, const ssd_run_key *key,
                                ssd_position *pos, const char *path, kiln_error *err) {
  kiln_mapped_file f;
  kiln_status s = kiln_file_map(path, &f, err);
  if (s != KILN_OK) return s;
  s = KILN_ERR_FORMAT;
  size_t want = HEADER_BYTES + 4;
  for (int32_t i = 0; i < n_heads; i++) want += HEAD_BYTES + 3 * heads[i]->n_params * 4;
  reader c = {f.data};
  uint32_t version = 0, stored_heads = 0, stored_crc = 0;
  if (f.size < HEADER_BYTES + 4 || memcmp(f.data, MAGIC, 8) != 0) {
    kiln_fail(err, s, "%s: not a kiln SSD training checkpoint", path);
    goto done;
  }
  c.p += 8;
  get(&c, &version, 4);
  get(&c, &stored_heads, 4);
  if (version != VERSION) {
    kiln_fail(err, s, "%s: checkpoint version %u, kiln reads version %u", path, version, VERSION);
    goto done;
  }
  memcpy(&stored_crc, f.data + f.size - 4, 4);
  const uint32_t crc = (uint32_t)crc32_z(0L, f.data, f.size - 4);
  if (crc != stored_crc) {
    kiln_fail(err, s, "%s: checksum %08x does not match the stored %08x (damaged or truncated)",
              path, crc, stored_crc);
    goto done;
  }
  s = check_key(&c, key, path, err);
  if (s != KILN_OK) goto done;
  s = KILN_ERR_FORMAT;
  if (stored_heads != (uint32_t)n_heads || f.size != want) {
    kiln_fail(err, s, "%s: %u predictor heads in %zu bytes; this model has %d heads (%zu bytes)",
              path, stored_heads, f.size, (int)n_heads, want);
    goto done;
  }
  ssd_position p;
  get(&c, &p.epoch, 8);
  get(&c, &p.step, 8);
  get(&c, &p.sum_loss, 8);
  get(&c, &p.sum_class, 8);
  get(&c, &p.sum_box, 8);
  get(&c, &p.sum_positives, 8);
  get(&c, &p.images_done, 8);
  int64_t steps[KILN_SSD_MAX_LAYERS];
  for (int32_t i = 0; i < n_heads; i++) {
    uint64_t fp, np;
    get(&c, &fp, 8);
    get(&c, &np, 8);
    get(&c, &steps[i], 8);
    if (fp != fingerprint(heads[i]) || np != heads[i]->n_params) {
      kiln_fail(err, s, "%s: head %d has another shape (%llu parameters; this one %zu)", path,
                (int)i, (unsigned long long)np, heads[i]->n_params);
      goto done;
    }
  }
  for (int32_t i = 0; i < n_heads; i++) {
    const size_t bytes = heads[i]->n_params * sizeof(float);
    get(&c, heads[i]->params, bytes);
    get(&c, heads[i]->moment1, bytes);
    get(&c, heads[i]->moment2, bytes);
    heads[i]->step = steps[i];
  }
  *pos = p;
  s = KILN_OK;
done:
  kiln_file_unmap(&f);
  return s;
}
