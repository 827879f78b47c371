/*
 * Transfer learning, the data side (train/classify_tl.h): backbone
 * features of every training and validation image computed once on one
 * interpreter per thread (kiln's float kernels give the same values on any
 * thread count), kept in checkpoints/features.bin for a resumed run, and
 * the path's driver pl_transfer_train.
 *
 * features.bin: "KILNFEAT", u32 version, u32 variants, u64 key, i64 images,
 * i64 floats per variant, the floats, u32 CRC-32 of everything before it.
 * The key covers the backbone file's bytes, the cached tensor and the
 * images (hashes, labels and splits), so a stale cache is never used.
 */
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "base/file.h"
#include "train/classify_tl.h"

#define CACHE_MAGIC "KILNFEAT"
#define CACHE_VERSION 1u

typedef struct cache_head {
  char magic[8];
  uint32_t version, variants;
  uint64_t key;
  int64_t images, size;
} cache_head;

static bool cache_read(const char *path, const cache_head *want, float *out) {
  kiln_mapped_file f;
  kiln_error e;
  if (kiln_file_map(path, &f, &e) != KILN_OK) return false;
  const size_t floats = (size_t)want->images * want->variants * (size_t)want->size;
  const size_t bytes = sizeof *want + floats * sizeof(float) + 4;
  bool ok = f.size == bytes && memcmp(f.data, want, sizeof *want) == 0;
  if (ok) {
    uint32_t crc;
    memcpy(&crc, f.data + bytes - 4, 4);
    ok = crc == (uint32_t)crc32(0L, f.data, (uInt)(bytes - 4));
  }
  if (ok) memcpy(out, f.data + sizeof *want, floats * sizeof(float));
  kiln_file_unmap(&f);
  return ok;
}

/* Writes the cache through a temporary file and a rename. */
static kiln_status cache_write(const char *path, const cache_head *head, const float *data,
                               kiln_error *err) {
  char tmp[4200];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  FILE *f = fopen(tmp, "wb");
  if (!f) return kiln_fail(err, KILN_ERR_IO, "%s: cannot create", tmp);
  const size_t floats = (size_t)head->images * head->variants * (size_t)head->size;
  uLong crc = crc32(0L, (const Bytef *)head, sizeof *head);
  const unsigned char *p = (const unsigned char *)data;
  for (size_t done = 0, total = floats * sizeof(float); done < total;) {
    const size_t n = total - done < (1u << 30) ? total - done : (1u << 30);
    crc = crc32(crc, p + done, (uInt)n);
    done += n;
  }
  const uint32_t c32 = (uint32_t)crc;
  bool ok = fwrite(head, sizeof *head, 1, f) == 1 &&
            fwrite(data, sizeof(float), floats, f) == floats && fwrite(&c32, 4, 1, f) == 1 &&
            fflush(f) == 0 && fsync(fileno(f)) == 0;
  ok = fclose(f) == 0 && ok;
  if (!ok || rename(tmp, path) != 0) {
    remove(tmp);
    return kiln_fail(err, KILN_ERR_IO, "%s: cannot write the feature cache", path);
  }
  return KILN_OK;
}

typedef struct feat_ctx {
  const tl_feature_job *job;
  kiln_interp **interps; /* [threads] */
  uint8_t *pixels;       /* [threads][h * w * 3] */
  pl_input in;
  size_t size;           /* floats per variant */
  float *out;
  double start;
} feat_ctx;

static kiln_status feature_item(void *ctx, int32_t item, int32_t thread, kiln_error *err) {
  feat_ctx *c = ctx;
  const tl_feature_job *job = c->job;
  kiln_image img;
  kiln_status s = pl_load_image(job->ds, job->images[item], &img, err);
  if (s != KILN_OK) return s;
  uint8_t *px = c->pixels + (size_t)thread * c->in.h * c->in.w * 3;
  s = pl_image_pixels(&img, c->in.h, c->in.w, 3, px, err);
  kiln_image_free(&img);
  if (s != KILN_OK) return s;
  kiln_interp *it = c->interps[thread];
  const kiln_tensor_view in = kiln_interp_input(it, 0);
  for (int32_t v = 0; v < job->variants && s == KILN_OK; v++) {
    pl_pixels_to_input(px, &c->in, in.data);
    if (v == 1) pl_mirror(in.data, c->in.h, c->in.w, 3);
    if ((s = kiln_interp_invoke(it, err)) != KILN_OK) break;
    const kiln_tensor_view o = kiln_interp_output(it, 0);
    memcpy(c->out + ((size_t)item * job->variants + v) * c->size, o.data, c->size * sizeof(float));
  }
  if (s != KILN_OK) kiln_error_prefix(err, "%s", pl_image_source(job->ds, job->images[item]));
  return s;
}

static void feature_done(void *ctx, int32_t done) {
  const feat_ctx *c = ctx;
  kiln_train_progress p = pl_progress(KILN_EVENT_ITEM, KILN_PHASE_PREPARE);
  p.done = done;
  p.total = c->job->n;
  p.elapsed_seconds = pl_now() - c->start;
  p.images_per_second = p.elapsed_seconds > 0 ? done / p.elapsed_seconds : -1.0;
  p.eta_seconds = p.images_per_second > 0 ? (c->job->n - done) / p.images_per_second : -1.0;
  pl_report(c->job->on_progress, c->job->ctx, &p);
}

kiln_status tl_compute_features(const tl_feature_job *job, float *out, bool *from_cache,
                                bool *stopped, kiln_error *err) {
  *from_cache = *stopped = false;
  int32_t fh, fw, fc;
  tl_feature_shape(job->backbone, &fh, &fw, &fc);
  cache_head head;
  memset(&head, 0, sizeof head);
  memcpy(head.magic, CACHE_MAGIC, 8);
  head.version = CACHE_VERSION;
  head.variants = (uint32_t)job->variants;
  head.key = job->key;
  head.images = job->n;
  head.size = (int64_t)fh * fw * fc;
  if (job->cache_path && cache_read(job->cache_path, &head, out)) {
    *from_cache = true;
    return KILN_OK;
  }
  feat_ctx c;
  memset(&c, 0, sizeof c);
  c.job = job;
  c.size = (size_t)head.size;
  c.out = out;
  c.start = pl_now();
  const int32_t threads = job->threads < 1 ? 1 : job->threads;
  kiln_model *fm = NULL;
  kiln_status s = tl_feature_model(job->backbone, &fm, err);
  if (s != KILN_OK) return s;
  if ((s = pl_input_of(fm, &job->backbone->norm, &c.in, err)) != KILN_OK) goto done;
  c.interps = kiln_calloc((size_t)threads, sizeof *c.interps);
  c.pixels = kiln_malloc((size_t)threads * c.in.h * c.in.w * 3);
  if (!c.interps || !c.pixels) {
    s = kiln_fail(err, KILN_ERR_NOMEM, "features: %d threads", (int)threads);
    goto done;
  }
  kiln_interp_options io = {.n_threads = 1};
  for (int32_t t = 0; t < threads && s == KILN_OK; t++)
    if ((s = kiln_interp_create(fm, &io, &c.interps[t], err)) != KILN_OK)
      kiln_error_prefix(err, "%s", job->backbone->path);
  if (s != KILN_OK) goto done;
  s = pl_parallel(threads, job->n, feature_item, &c, feature_done, job->stop, stopped, err);
  if (s == KILN_OK && !*stopped && job->cache_path) s = cache_write(job->cache_path, &head, out, err);
done:
  for (int32_t t = 0; c.interps && t < threads; t++) kiln_interp_free(c.interps[t]);
  kiln_free(c.interps);
  kiln_free(c.pixels);
  kiln_model_free(fm);
  return s;
}

kiln_status pl_transfer_train(pl_run *run, const pl_fit_config *fit_in, pl_fit_outcome *outcome,
                              kiln_model **model, kiln_image_norm *norm, kiln_error *err) {
  *model = NULL;
  memset(outcome, 0, sizeof *outcome);
  const kiln_train_options *opt = run->opt;
  tl_backbone b;
  tl_net net = {0};
  float *features = NULL;
  int32_t *labels = NULL, *items = NULL;
  kiln_status s = tl_backbone_open(opt->backbone, opt->feature_tensor, &b, err);
  if (s != KILN_OK) return s;
  if ((s = tl_plan_fine_tune(&b, run->set.fine_tune, err)) != KILN_OK) goto done;
  json_object_set_new(run->config, "backbone", tl_backbone_json(&b));
  const int32_t n = run->n_train + run->n_val, variants = run->set.hflip ? 2 : 1;
  int32_t fh, fw, fc;
  tl_feature_shape(&b, &fh, &fw, &fc);
  const size_t size = (size_t)fh * fw * fc;
  features = kiln_malloc((size_t)n * variants * size * sizeof(float));
  labels = kiln_malloc((size_t)n * sizeof *labels);
  items = kiln_malloc((size_t)n * sizeof *items);
  if (!features || !labels || !items) {
    s = kiln_fail(err, KILN_ERR_NOMEM, "features of %d images (%zu floats each)", (int)n,
                  size * variants);
    goto done;
  }
  memcpy(items, run->train, (size_t)run->n_train * sizeof *items);
  if (run->n_val) memcpy(items + run->n_train, run->val, (size_t)run->n_val * sizeof *items);
  for (int32_t i = 0; i < n; i++) labels[i] = pl_image_label(run->ds, items[i]);
  const char *cut_name = b.model->tensors[b.cut].name;
  uint64_t key = pl_hash(pl_dataset_key(run->ds), &b.key, sizeof b.key);
  key = pl_hash_str(key, cut_name);
  key = pl_hash(key, &variants, sizeof variants);
  snprintf(run->out_path, sizeof run->out_path, "%s/features.bin", run->ckpt_dir);
  tl_feature_job job = {&b, run->ds, items, n, variants, run->threads, key, run->out_path,
                        opt->on_progress, opt->ctx, opt->stop};
  kiln_train_progress p = pl_progress(KILN_EVENT_PHASE, KILN_PHASE_PREPARE);
  p.message = "computing backbone features";
  p.total = n;
  pl_report(opt->on_progress, opt->ctx, &p);
  bool cached = false, stopped = false;
  const double t0 = pl_now();
  if ((s = tl_compute_features(&job, features, &cached, &stopped, err)) != KILN_OK) goto done;
  run->prepare_seconds = pl_now() - t0;
  json_object_set_new(run->config, "features_from_cache", json_boolean(cached));
  if (stopped) {
    outcome->interrupted = true;
    goto done;
  }
  pl_samples train = {run->n_train, labels, fh, fw, fc, NULL, {{0}}, features, variants};
  pl_samples val = {run->n_val, labels + run->n_train, fh, fw, fc, NULL, {{0}},
                    features + (size_t)run->n_train * variants * size, variants};
  if ((s = tl_build_net(&b, run->n_classes, run->set.dropout, run->set.batch, run->threads,
                        opt->seed, &net, err)) != KILN_OK)
    goto done;
  pl_fit_config fit = *fit_in;
  fit.key = pl_hash(pl_hash(fit.key, &b.key, sizeof b.key), cut_name, strlen(cut_name));
  fit.hflip = run->set.hflip;
  p = pl_progress(KILN_EVENT_PHASE, KILN_PHASE_TRAIN);
  p.message = b.n_tuned ? "training the head and the last backbone layers" : "training the head";
  pl_report(opt->on_progress, opt->ctx, &p);
  if ((s = pl_fit(net.net, net.logits, &train, run->n_val ? &val : NULL, &fit, outcome, err)) !=
          KILN_OK ||
      outcome->interrupted)
    goto done;
  if ((s = tl_export(&b, &net, run->n_classes, model, err)) != KILN_OK) goto done;
  *norm = b.norm;
done:
  tl_net_free(&net);
  tl_backbone_free(&b);
  kiln_free(features);
  kiln_free(labels);
  kiln_free(items);
  return s;
}
