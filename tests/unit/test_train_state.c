/* Determinism and checkpoints of the training engine: the same seed gives
 * bit-identical parameters for 1, 2 and 3 threads; N steps straight equal
 * N/2 steps, a checkpoint, a restore into a fresh net (other thread count)
 * and N/2 more, bit for bit, with the run state and the caller's block
 * restored; kiln_fit_classifier resumed from its per-epoch checkpoint ends
 * where the uninterrupted run ends; damaged, truncated or foreign
 * checkpoints are refused with a message. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "kiln/train.h"
#include "testutil.h"
#include "train/net_int.h"

#define BATCH 6
#define CLASSES 4

/* conv + BN + relu + maxpool + dwconv + hswish + GAP-free head with
 * dropout: every kind of state (moments, running statistics, dropout
 * counter) matters for exact resume. */
static kiln_net *make_net(int32_t threads, uint64_t seed) {
  kiln_net *net;
  kiln_error err;
  if (kiln_net_create(10, 9, 2, &net, &err) != KILN_OK) return NULL;
  kiln_conv_spec c = {.filters = 8, .kernel_h = 3, .kernel_w = 3, .stride_h = 2, .stride_w = 2};
  int32_t x = kiln_net_conv(net, 0, &c);
  x = kiln_net_batchnorm(net, x, 0.1f, 1e-3f);
  x = kiln_net_activation(net, x, KILN_LAYER_RELU);
  kiln_conv_spec d = {.kernel_h = 3, .kernel_w = 3, .bias = true};
  x = kiln_net_dwconv(net, x, &d);
  x = kiln_net_activation(net, x, KILN_LAYER_HSWISH);
  x = kiln_net_pool(net, x, KILN_LAYER_MAXPOOL, 2, 2, 2, 2, KILN_PAD_SAME);
  x = kiln_net_dropout(net, kiln_net_flatten(net, x), 0.25f);
  x = kiln_net_dense(net, x, CLASSES, true);
  if (kiln_net_finalize(net, BATCH, threads, seed, &err) != KILN_OK) {
    fprintf(stderr, "%s\n", err.msg);
    kiln_net_free(net);
    return NULL;
  }
  return net;
}

static int32_t logits_of(const kiln_net *net) { return kiln_net_layer_count(net) - 1; }

/* Step `step` of a fixed synthetic stream: inputs and labels depend only on
 * the step. */
static void train_steps(kiln_net *net, const kiln_optim *opt, int64_t from, int64_t to) {
  const int32_t logits = logits_of(net);
  for (int64_t s = from; s < to; s++) {
    test_rng r = {0x1234 + (uint64_t)s * 77};
    float *in = kiln_net_act(net, 0);
    for (int i = 0; i < BATCH * 10 * 9 * 2; i++) in[i] = test_rand_float(&r, -1.0f, 1.0f);
    int32_t labels[BATCH];
    for (int i = 0; i < BATCH; i++) labels[i] = test_rand_int(&r, 0, CLASSES - 1);
    kiln_net_forward(net, BATCH, true);
    kiln_loss_softmax_xent(kiln_net_act(net, logits), labels, NULL, BATCH, CLASSES, 0.1f,
                           1.0f / BATCH, kiln_net_grad(net, logits));
    kiln_net_backward(net, BATCH);
    kiln_net_update(net, opt, NULL);
  }
}

static kiln_optim test_optim(void) {
  kiln_optim o = kiln_optim_default(KILN_OPTIM_ADAMW, 0.01f);
  o.weight_decay = 0.01f;
  o.clip_norm = 1.0f;
  o.schedule = (kiln_schedule){0.01f, 0.0f, 2, 8};
  return o;
}

static bool same_state(const kiln_net *a, const kiln_net *b) {
  return a->n_params == b->n_params &&
         memcmp(a->params, b->params, a->n_params * sizeof(float)) == 0 &&
         memcmp(a->moment1, b->moment1, a->n_params * sizeof(float)) == 0 &&
         memcmp(a->moment2, b->moment2, a->n_params * sizeof(float)) == 0 &&
         memcmp(a->state, b->state, a->n_state * sizeof(float)) == 0 && a->step == b->step;
}

static void test_threads_and_seeds(void) {
  kiln_optim o = test_optim();
  kiln_net *ref = make_net(1, 99);
  REQUIRE(ref);
  train_steps(ref, &o, 0, 6);
  for (int32_t threads = 2; threads <= 3; threads++) {
    kiln_net *net = make_net(threads, 99);
    REQUIRE(net);
    train_steps(net, &o, 0, 6);
    CHECK_MSG(same_state(ref, net), "%d threads differ from 1", (int)threads);
    kiln_net_free(net);
  }
  kiln_net *other = make_net(1, 100);
  REQUIRE(other);
  train_steps(other, &o, 0, 6);
  CHECK(memcmp(ref->params, other->params, ref->n_params * sizeof(float)) != 0);
  kiln_net_free(other);
  kiln_net_free(ref);
}

static void ckpt_path(char *buf, size_t cap, const char *name) {
  snprintf(buf, cap, "/tmp/kiln_test_train_%d_%s", (int)getpid(), name);
}

static void test_exact_resume(void) {
  kiln_optim o = test_optim();
  kiln_net *straight = make_net(1, 5);
  REQUIRE(straight);
  train_steps(straight, &o, 0, 8);

  kiln_net *first = make_net(2, 5);
  REQUIRE(first);
  train_steps(first, &o, 0, 4);
  char path[256];
  ckpt_path(path, sizeof path, "resume.ckpt");
  kiln_run_state st = {3, {{1, 2, 3, 4}}, o};
  kiln_rng_seed(&st.rng, 77);
  kiln_rng_next(&st.rng);
  const char extra[] = "caller state";
  kiln_error err;
  REQUIRE(kiln_checkpoint_save(first, &st, extra, sizeof extra, path, &err) == KILN_OK);
  kiln_net_free(first);

  kiln_net *second = make_net(3, 12345); /* other seed and threads: all restored */
  REQUIRE(second);
  kiln_run_state back;
  void *blob = NULL;
  size_t blob_bytes = 0;
  REQUIRE(kiln_checkpoint_load(second, &back, &blob, &blob_bytes, path, &err) == KILN_OK);
  CHECK(back.epoch == 3 && memcmp(&back.rng, &st.rng, sizeof st.rng) == 0);
  CHECK(back.optim.kind == o.kind && back.optim.schedule.total_steps == 8 &&
        back.optim.clip_norm == o.clip_norm && back.optim.weight_decay == o.weight_decay);
  CHECK(blob_bytes == sizeof extra && blob && memcmp(blob, extra, sizeof extra) == 0);
  kiln_free(blob);
  CHECK(kiln_net_step(second) == 4);
  train_steps(second, &back.optim, 4, 8);
  CHECK_MSG(same_state(straight, second), "resumed run differs from the straight run");
  kiln_net_free(second);
  kiln_net_free(straight);
  remove(path);
}

static void test_refused(void) {
  kiln_net *net = make_net(1, 5);
  REQUIRE(net);
  char path[256];
  ckpt_path(path, sizeof path, "bad.ckpt");
  kiln_run_state st;
  memset(&st, 0, sizeof st);
  kiln_error err;
  REQUIRE(kiln_checkpoint_save(net, &st, NULL, 0, path, &err) == KILN_OK);
  FILE *f = fopen(path, "rb");
  REQUIRE(f);
  fseek(f, 0, SEEK_END);
  long size = ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char *bytes = malloc((size_t)size);
  REQUIRE(bytes && fread(bytes, 1, (size_t)size, f) == (size_t)size);
  fclose(f);

  /* one flipped byte in the parameters */
  bytes[size / 2] ^= 0x40;
  f = fopen(path, "wb");
  fwrite(bytes, 1, (size_t)size, f);
  fclose(f);
  CHECK(kiln_checkpoint_load(net, &st, NULL, NULL, path, &err) == KILN_ERR_FORMAT);
  CHECK(strstr(err.msg, "checksum") != NULL);
  bytes[size / 2] ^= 0x40;
  /* truncated */
  f = fopen(path, "wb");
  fwrite(bytes, 1, (size_t)size - 100, f);
  fclose(f);
  CHECK(kiln_checkpoint_load(net, &st, NULL, NULL, path, &err) == KILN_ERR_FORMAT);
  /* not a checkpoint */
  f = fopen(path, "wb");
  fwrite("hello", 1, 5, f);
  fclose(f);
  CHECK(kiln_checkpoint_load(net, &st, NULL, NULL, path, &err) == KILN_ERR_FORMAT);
  CHECK(strstr(err.msg, "not a kiln checkpoint") != NULL);
  /* a different net */
  f = fopen(path, "wb");
  fwrite(bytes, 1, (size_t)size, f);
  fclose(f);
  kiln_net *other;
  REQUIRE(kiln_net_create(10, 9, 2, &other, &err) == KILN_OK);
  kiln_net_dense(other, 0, 3, true);
  REQUIRE(kiln_net_finalize(other, 2, 1, 1, &err) == KILN_OK);
  CHECK(kiln_checkpoint_load(other, &st, NULL, NULL, path, &err) == KILN_ERR_FORMAT);
  CHECK(strstr(err.msg, "different net") != NULL);
  CHECK(kiln_checkpoint_load(net, &st, NULL, NULL, path, &err) == KILN_OK);
  ckpt_path(path, sizeof path, "missing.ckpt");
  CHECK(kiln_checkpoint_load(net, &st, NULL, NULL, path, &err) == KILN_ERR_IO);
  kiln_net_free(other);
  kiln_net_free(net);
  free(bytes);
  ckpt_path(path, sizeof path, "bad.ckpt");
  remove(path);
}

/* The fit loop: 3 epochs straight vs 1 epoch, then a resume for the rest
 * from its checkpoint, on 30 synthetic images (5 batches of 6). */
static void test_fit_resume(void) {
  enum { COUNT = 30 };
  static uint8_t pixels[COUNT * 10 * 9 * 2];
  static int32_t labels[COUNT];
  test_rng r = {77};
  for (size_t i = 0; i < sizeof pixels; i++) pixels[i] = (uint8_t)test_rand_int(&r, 0, 255);
  for (int i = 0; i < COUNT; i++) labels[i] = i % CLASSES;
  kiln_class_data data = {pixels, labels, COUNT, 1.0f / 255.0f, -0.5f};
  char path[256];
  ckpt_path(path, sizeof path, "fit.ckpt");
  remove(path);
  kiln_fit_options fo = {0};
  fo.epochs = 3;
  fo.batch = BATCH;
  fo.optim = test_optim();
  fo.optim.schedule.total_steps = 0; /* filled by fit: 15 */
  fo.hflip = true;
  fo.seed = 9;
  kiln_error err;
  kiln_net *straight = make_net(1, 4);
  REQUIRE(straight);
  kiln_fit_epoch last;
  REQUIRE(kiln_fit_classifier(straight, logits_of(straight), &data, &data, &fo, &last, &err) ==
          KILN_OK);
  CHECK(last.epoch == 2 && last.test_accuracy >= 0.0 && kiln_net_step(straight) == 15);

  kiln_net *part = make_net(2, 4);
  REQUIRE(part);
  fo.checkpoint = path;
  fo.resume = true;
  fo.epochs = 1;
  /* total_steps is filled from epochs: keep the full run's schedule. */
  fo.optim.schedule.total_steps = 15;
  REQUIRE(kiln_fit_classifier(part, logits_of(part), &data, NULL, &fo, NULL, &err) == KILN_OK);
  kiln_net_free(part);
  kiln_net *rest = make_net(1, 4);
  REQUIRE(rest);
  fo.epochs = 3;
  REQUIRE(kiln_fit_classifier(rest, logits_of(rest), &data, NULL, &fo, &last, &err) == KILN_OK);
  CHECK(last.epoch == 2);
  CHECK_MSG(same_state(straight, rest), "resumed fit differs from the straight fit");
  kiln_net_free(rest);
  kiln_net_free(straight);
  remove(path);
}

static void test_build_errors(void) {
  kiln_net *net;
  kiln_error err;
  REQUIRE(kiln_net_create(4, 4, 1, &net, &err) == KILN_OK);
  kiln_conv_spec big = {.filters = 2, .kernel_h = 5, .kernel_w = 5, .padding = KILN_PAD_VALID};
  CHECK(kiln_net_conv(net, 0, &big) == -1);
  CHECK(kiln_net_dense(net, 0, 3, true) == -1); /* sticky: refused after the error */
  CHECK(kiln_net_finalize(net, 2, 1, 1, &err) == KILN_ERR_INVALID_ARG);
  CHECK(strstr(err.msg, "layer 1 (conv)") != NULL);
  kiln_net_free(net);
  REQUIRE(kiln_net_create(4, 4, 1, &net, &err) == KILN_OK);
  int32_t a = kiln_net_dense(net, 0, 3, true);
  CHECK(kiln_net_add(net, 0, a) == -1); /* shapes differ */
  CHECK(kiln_net_finalize(net, 2, 1, 1, &err) == KILN_ERR_INVALID_ARG);
  CHECK(strstr(err.msg, "add") != NULL);
  kiln_net_free(net);
  CHECK(kiln_net_create(0, 4, 1, &net, &err) == KILN_ERR_INVALID_ARG);
}

int main(void) {
  RUN(test_threads_and_seeds);
  RUN(test_exact_resume);
  RUN(test_refused);
  RUN(test_fit_resume);
  RUN(test_build_errors);
  return test_summary();
}
