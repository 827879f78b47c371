/* Transfer learning on the shared SSD's MobileNet V2 (train/classify_tl.h):
 * cached features are identical for 1 and 2 threads and through the cache
 * file (a stale key recomputes); the exported classifier (backbone + MEAN +
 * FULLY_CONNECTED + SOFTMAX) gives on an image what the engine's head gives
 * on that image's cached feature; with --fine-tune 4 the converted layers
 * hold the pretrained weights (engine on cached cut maps = exported model)
 * and their trained values reach the export. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kiln/data.h"
#include "testutil.h"
#include "train/classify_tl.h"

#define IMAGES 6

static char root[128];
static kiln_dataset *ds;

static void write_image(const char *cls, int i, test_rng *r) {
  char path[256];
  snprintf(path, sizeof path, "%s/%s", root, cls);
  mkdir(path, 0777);
  snprintf(path, sizeof path, "%s/%s/%d.png", root, cls, i);
  kiln_image img;
  kiln_error err;
  if (kiln_image_create(40 + 3 * i, 30, &img, &err) != KILN_OK) return;
  for (int32_t y = 0; y < img.height; y++)
    for (int32_t x = 0; x < img.width; x++) {
      uint8_t *p = img.pixels + (size_t)y * img.stride + 3 * (size_t)x;
      p[0] = (uint8_t)(cls[0] == 'a' ? 200 : 40 + x * 4);
      p[1] = (uint8_t)test_rand_int(r, 0, 255);
      p[2] = (uint8_t)(y * 8);
    }
  kiln_image_write_png(&img, path, &err);
  kiln_image_free(&img);
}

static int make_dataset(void) {
  snprintf(root, sizeof root, "/tmp/kiln_test_head_%d", (int)getpid());
  mkdir(root, 0777);
  test_rng r = {17};
  for (int i = 0; i < IMAGES; i++) write_image(i % 2 ? "a_cls" : "b_cls", i, &r);
  kiln_data_options o = kiln_data_options_default();
  o.threads = 1;
  kiln_error err;
  if (kiln_data_import(root, &o, &ds, &err) != KILN_OK) {
    fprintf(stderr, "%s\n", err.msg);
    return -1;
  }
  return ds->n_images == IMAGES ? 0 : -1;
}

static tl_feature_job job_for(const tl_backbone *b, const int32_t *items, int32_t threads,
                              const char *cache) {
  tl_feature_job j;
  memset(&j, 0, sizeof j);
  j.backbone = b;
  j.ds = ds;
  j.images = items;
  j.n = IMAGES;
  j.variants = 2;
  j.threads = threads;
  j.key = 77;
  j.cache_path = cache;
  return j;
}

static void test_features(void) {
  tl_backbone b;
  kiln_error err;
  REQUIRE(tl_backbone_open(NULL, NULL, &b, &err) == KILN_OK);
  int32_t *items, n;
  REQUIRE(pl_split_images(ds, -1, &items, &n, &err) == KILN_OK && n == IMAGES);
  const size_t floats = (size_t)IMAGES * 2 * 1280;
  float *a = kiln_malloc(floats * sizeof(float)), *c = kiln_malloc(floats * sizeof(float));
  REQUIRE(a && c);
  bool cached, stopped;
  tl_feature_job j1 = job_for(&b, items, 1, NULL), j2 = job_for(&b, items, 2, NULL);
  REQUIRE(tl_compute_features(&j1, a, &cached, &stopped, &err) == KILN_OK && !cached && !stopped);
  REQUIRE(tl_compute_features(&j2, c, &cached, &stopped, &err) == KILN_OK);
  CHECK(memcmp(a, c, floats * sizeof(float)) == 0);
  /* the mirrored input gives another vector; values are ReLU6 averages */
  CHECK(memcmp(a, a + 1280, 1280 * sizeof(float)) != 0);
  for (size_t i = 0; i < floats; i++) CHECK(a[i] >= 0.0f && a[i] <= 6.0f);
  char cache[192];
  snprintf(cache, sizeof cache, "%s/features.bin", root);
  tl_feature_job j3 = job_for(&b, items, 2, cache);
  REQUIRE(tl_compute_features(&j3, c, &cached, &stopped, &err) == KILN_OK && !cached);
  memset(c, 0, floats * sizeof(float));
  REQUIRE(tl_compute_features(&j3, c, &cached, &stopped, &err) == KILN_OK && cached);
  CHECK(memcmp(a, c, floats * sizeof(float)) == 0);
  j3.key = 78;
  REQUIRE(tl_compute_features(&j3, c, &cached, &stopped, &err) == KILN_OK && !cached);
  remove(cache);
  kiln_free(a);
  kiln_free(c);
  kiln_free(items);
  tl_backbone_free(&b);
}

/* Scores of the exported model on image `index` (prepared as the trainer
 * prepares it). */
static bool model_scores(const kiln_model *m, const kiln_image_norm *norm, int32_t index,
                         float *out, int32_t classes) {
  kiln_error err;
  pl_input in;
  kiln_interp *it;
  if (pl_input_of(m, norm, &in, &err) != KILN_OK || kiln_interp_create(m, NULL, &it, &err) != KILN_OK)
    return false;
  kiln_image img;
  uint8_t *px = kiln_malloc((size_t)in.h * in.w * 3);
  bool ok = px && pl_load_image(ds, index, &img, &err) == KILN_OK;
  if (ok) {
    ok = pl_image_pixels(&img, in.h, in.w, 3, px, &err) == KILN_OK;
    kiln_image_free(&img);
  }
  if (ok) {
    pl_pixels_to_input(px, &in, kiln_interp_input(it, 0).data);
    ok = kiln_interp_invoke(it, &err) == KILN_OK;
  }
  if (ok) memcpy(out, kiln_interp_output(it, 0).data, (size_t)classes * sizeof(float));
  kiln_free(px);
  kiln_interp_free(it);
  return ok;
}

/* Softmax of the engine's logits for cached feature (image, variant 0). */
static void engine_scores(tl_net *n, const float *feature, size_t size, float *out, int32_t classes) {
  memcpy(kiln_net_act(n->net, 0), feature, size * sizeof(float));
  kiln_net_forward(n->net, 1, false);
  const float *z = kiln_net_act(n->net, n->logits);
  double m = z[0], sum = 0.0;
  for (int32_t k = 1; k < classes; k++) m = fmax(m, z[k]);
  for (int32_t k = 0; k < classes; k++) sum += exp(z[k] - m);
  for (int32_t k = 0; k < classes; k++) out[k] = (float)(exp(z[k] - m) / sum);
}

static void check_export(tl_backbone *b, int32_t fine_tune, double tolerance) {
  kiln_error err;
  REQUIRE(tl_plan_fine_tune(b, fine_tune, &err) == KILN_OK);
  int32_t fh, fw, fc;
  tl_feature_shape(b, &fh, &fw, &fc);
  const size_t size = (size_t)fh * fw * fc;
  int32_t *items, n;
  REQUIRE(pl_split_images(ds, -1, &items, &n, &err) == KILN_OK);
  float *feat = kiln_malloc((size_t)IMAGES * 2 * size * sizeof(float));
  REQUIRE(feat);
  bool cached, stopped;
  tl_feature_job j = job_for(b, items, 2, NULL);
  REQUIRE(tl_compute_features(&j, feat, &cached, &stopped, &err) == KILN_OK);
  tl_net net;
  REQUIRE(tl_build_net(b, 3, 0.2f, 4, 1, 5, &net, &err) == KILN_OK);
  if (fine_tune) {
    /* change a converted layer so the export must carry trained values */
    int64_t count;
    float *w = kiln_net_param(net.net, net.op_layer[0], KILN_PARAM_WEIGHT, &count);
    REQUIRE(w && count > 0);
    for (int64_t i = 0; i < count; i += 7) w[i] *= 1.25f;
  }
  kiln_model *m;
  REQUIRE(tl_export(b, &net, 3, &m, &err) == KILN_OK);
  const kiln_tensor *in = &m->tensors[m->inputs[0]], *out = &m->tensors[m->outputs[0]];
  CHECK(in->rank == 4 && in->shape[1] == 300 && in->shape[2] == 300 && in->shape[3] == 3);
  CHECK(out->rank == 2 && out->shape[1] == 3 && strcmp(out->name, "scores") == 0);
  REQUIRE(m->n_ops >= 3);
  CHECK(m->ops[m->n_ops - 3].code == KILN_OP_MEAN && m->ops[m->n_ops - 2].code == KILN_OP_FULLY_CONNECTED &&
        m->ops[m->n_ops - 1].code == KILN_OP_SOFTMAX);
  double worst = 0.0;
  for (int32_t i = 0; i < IMAGES; i++) {
    float a[3], e[3];
    REQUIRE(model_scores(m, &b->norm, items[i], a, 3));
    engine_scores(&net, feat + (size_t)i * 2 * size, size, e, 3);
    for (int k = 0; k < 3; k++) worst = fmax(worst, fabs((double)a[k] - e[k]));
  }
  CHECK_MSG(worst < tolerance, "fine-tune %d: exported vs engine: %g", (int)fine_tune, worst);
  kiln_model_free(m);
  tl_net_free(&net);
  kiln_free(feat);
  kiln_free(items);
}

static void test_export(void) {
  tl_backbone b;
  kiln_error err;
  REQUIRE(tl_backbone_open(NULL, NULL, &b, &err) == KILN_OK);
  check_export(&b, 0, 1e-5);
  tl_backbone_free(&b);
}

static void test_fine_tune(void) {
  tl_backbone b;
  kiln_error err;
  REQUIRE(tl_backbone_open(NULL, NULL, &b, &err) == KILN_OK);
  REQUIRE(tl_plan_fine_tune(&b, 4, &err) == KILN_OK);
  CHECK(b.n_tuned_convs == 4 && b.n_tuned == 4);
  CHECK(strstr(b.model->tensors[b.cut].name, "expanded_conv_15/add") != NULL);
  /* 5 layers reach back into expanded_conv_15, a residual block: the cut
   * moves to the block's input */
  REQUIRE(tl_plan_fine_tune(&b, 5, &err) == KILN_OK);
  CHECK(b.n_tuned_convs == 7 && strstr(b.model->tensors[b.cut].name, "expanded_conv_14/add") != NULL);
  CHECK(tl_plan_fine_tune(&b, 1000, &err) == KILN_ERR_INVALID_ARG);
  check_export(&b, 4, 1e-4);
  tl_backbone_free(&b);
}

int main(void) {
  if (make_dataset() != 0) {
    fprintf(stderr, "cannot make the test dataset\n");
    return 1;
  }
  RUN(test_features);
  RUN(test_export);
  RUN(test_fine_tune);
  kiln_dataset_free(ds);
  char cmd[256];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", root);
  return test_summary();
}
