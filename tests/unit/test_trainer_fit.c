/* The pipeline's training loop (pl_fit, train/pipeline_int.h): a run
 * stopped by the stop flag inside an epoch (and another at an epoch's end)
 * and resumed from its checkpoint ends with the uninterrupted run's
 * weights, bit for bit, and with its whole history; the per-step progress
 * counts are right; a checkpoint of another run (other key) is refused;
 * pixel samples with flips train deterministically. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"
#include "train/pipeline_int.h"

#define N 37
#define DIM 6
#define CLASSES 3
#define EPOCHS 4
#define BATCH 8

static float features[N * 2 * DIM];
static int32_t labels[N];

static void make_data(void) {
  test_rng r = {99};
  for (int i = 0; i < N; i++) {
    labels[i] = i % CLASSES;
    for (int v = 0; v < 2; v++)
      for (int k = 0; k < DIM; k++)
        features[(i * 2 + v) * DIM + k] =
            test_rand_float(&r, -1, 1) + (k % CLASSES == labels[i] ? 1.5f : 0.0f) + 0.1f * v;
  }
}

static kiln_net *make_net(int32_t threads) {
  kiln_net *net;
  kiln_error err;
  if (kiln_net_create(1, 1, DIM, &net, &err) != KILN_OK) return NULL;
  int32_t x = kiln_net_dense(net, 0, 8, true);
  x = kiln_net_activation(net, x, KILN_LAYER_RELU);
  x = kiln_net_dropout(net, x, 0.2f);
  kiln_net_dense(net, x, CLASSES, true);
  if (kiln_net_finalize(net, BATCH, threads, 42, &err) != KILN_OK) {
    kiln_net_free(net);
    return NULL;
  }
  return net;
}

typedef struct watcher {
  volatile sig_atomic_t flag;
  int64_t stop_at;  /* raise the flag after this many steps (-1: never) */
  int64_t steps, epochs, checkpoints;
  int64_t last_done, last_total;
  bool counts_ok;
} watcher;

static void on_progress(void *ctx, const kiln_train_progress *p) {
  watcher *w = ctx;
  if (p->event == KILN_EVENT_STEP) {
    w->steps++;
    w->counts_ok &= p->step >= 1 && p->step <= p->steps && p->steps == (N + BATCH - 1) / BATCH &&
                    p->total == p->steps * EPOCHS && p->loss > 0 && p->lr > 0;
    w->last_done = p->done;
    w->last_total = p->total;
    if (w->stop_at >= 0 && p->done >= w->stop_at) w->flag = 1;
  }
  if (p->event == KILN_EVENT_EPOCH) w->epochs++;
  if (p->event == KILN_EVENT_CHECKPOINT) w->checkpoints++;
}

static pl_fit_config config(const char *ckpt, watcher *w) {
  pl_fit_config c;
  memset(&c, 0, sizeof c);
  c.epochs = EPOCHS;
  c.batch = BATCH;
  c.optim = kiln_optim_default(KILN_OPTIM_ADAM, 1e-2f);
  c.optim.schedule.warmup_steps = 2;
  c.label_smoothing = 0.1f;
  c.hflip = true;
  c.seed = 7;
  c.key = 0x1234;
  c.checkpoint = ckpt;
  c.on_progress = on_progress;
  c.ctx = w;
  c.stop = &w->flag;
  return c;
}

static void params(kiln_net *net, float *out) {
  int64_t at = 0;
  for (int32_t l = 1; l < kiln_net_layer_count(net); l++)
    for (int k = 0; k < 2; k++) {
      int64_t n = 0;
      const float *p = kiln_net_param(net, l, k ? KILN_PARAM_BIAS : KILN_PARAM_WEIGHT, &n);
      if (p) memcpy(out + at, p, (size_t)n * sizeof(float));
      at += p ? n : 0;
    }
}

/* Stops after stop_steps steps, resumes with another thread count, and
 * compares with the straight run. */
static void resume_case(int64_t stop_steps) {
  const pl_samples train = {N, labels, 1, 1, DIM, NULL, {{0}}, features, 2};
  char path[64];
  snprintf(path, sizeof path, "/tmp/kiln_test_fit_%d.ckpt", (int)getpid());
  remove(path);
  kiln_error err;
  float straight[DIM * 8 + 8 + 8 * CLASSES + CLASSES], resumed[sizeof straight / sizeof(float)];
  watcher w0 = {0, -1, 0, 0, 0, 0, 0, true};
  kiln_net *a = make_net(1);
  REQUIRE(a);
  pl_fit_config c0 = config(NULL, &w0);
  pl_fit_outcome o0;
  REQUIRE(pl_fit(a, kiln_net_layer_count(a) - 1, &train, &train, &c0, &o0, &err) == KILN_OK);
  CHECK(!o0.interrupted && !o0.resumed && o0.epochs_done == EPOCHS && w0.counts_ok);
  CHECK(w0.steps == EPOCHS * ((N + BATCH - 1) / BATCH) && w0.epochs == EPOCHS && w0.checkpoints == 0);
  CHECK(w0.last_done == w0.last_total);
  CHECK(o0.history[EPOCHS - 1].train_loss < o0.history[0].train_loss);
  params(a, straight);

  watcher w1 = {0, stop_steps, 0, 0, 0, 0, 0, true};
  kiln_net *b = make_net(2);
  REQUIRE(b);
  pl_fit_config c1 = config(path, &w1);
  pl_fit_outcome o1;
  REQUIRE(pl_fit(b, kiln_net_layer_count(b) - 1, &train, &train, &c1, &o1, &err) == KILN_OK);
  CHECK(o1.interrupted && w1.steps == stop_steps);
  CHECK(o1.epochs_done == stop_steps / ((N + BATCH - 1) / BATCH));
  kiln_net_free(b);
  pl_fit_outcome_free(&o1);

  watcher w2 = {0, -1, 0, 0, 0, 0, 0, true};
  kiln_net *c = make_net(3);
  REQUIRE(c);
  pl_fit_config c2 = config(path, &w2);
  pl_fit_outcome o2;
  REQUIRE(pl_fit(c, kiln_net_layer_count(c) - 1, &train, &train, &c2, &o2, &err) == KILN_OK);
  CHECK(!o2.interrupted && o2.resumed && o2.epochs_done == EPOCHS);
  CHECK(w1.steps + w2.steps == w0.steps);
  params(c, resumed);
  CHECK(memcmp(straight, resumed, sizeof straight) == 0);
  for (int e = 0; e < EPOCHS; e++) {
    CHECK(o2.history[e].train_loss == o0.history[e].train_loss);
    CHECK(o2.history[e].train_accuracy == o0.history[e].train_accuracy);
    CHECK(o2.history[e].val_accuracy == o0.history[e].val_accuracy);
  }
  pl_fit_outcome_free(&o2);
  kiln_net_free(c);

  /* another run's key is refused, with a message naming the file */
  watcher w3 = {0, -1, 0, 0, 0, 0, 0, true};
  kiln_net *d = make_net(1);
  REQUIRE(d);
  pl_fit_config c3 = config(path, &w3);
  c3.key = 0x4321;
  pl_fit_outcome o3;
  CHECK(pl_fit(d, kiln_net_layer_count(d) - 1, &train, NULL, &c3, &o3, &err) == KILN_ERR_INVALID_ARG);
  CHECK(strstr(err.msg, path) && strstr(err.msg, "other data or settings"));
  pl_fit_outcome_free(&o3);
  kiln_net_free(d);
  pl_fit_outcome_free(&o0);
  kiln_net_free(a);
  remove(path);
}

static void test_resume_mid_epoch(void) { resume_case(7); }
static void test_resume_epoch_end(void) { resume_case(10); }

/* Pixel samples: flips and normalization, two runs with different thread
 * counts agree; accuracy on separable data rises. */
static void test_pixels(void) {
  enum { S = 24, H = 4, W = 5, C = 3 };
  static uint8_t px[S * H * W * C];
  static int32_t lab[S];
  test_rng r = {5};
  for (int i = 0; i < S; i++) {
    lab[i] = i % 2;
    for (int k = 0; k < H * W * C; k++)
      px[i * H * W * C + k] = (uint8_t)(test_rand_int(&r, 0, 120) + (lab[i] && k % 3 == 0 ? 120 : 0));
  }
  const pl_samples s = {S, lab, H, W, C, px, {{127.5f, 127.5f, 127.5f}, {127.5f, 127.5f, 127.5f}}, NULL, 0};
  float out[2][H * W * C * 2 + 2];
  for (int run = 0; run < 2; run++) {
    kiln_net *net;
    kiln_error err;
    REQUIRE(kiln_net_create(H, W, C, &net, &err) == KILN_OK);
    kiln_net_dense(net, 0, 2, true);
    REQUIRE(kiln_net_finalize(net, 6, run + 1, 3, &err) == KILN_OK);
    watcher w = {0, -1, 0, 0, 0, 0, 0, true};
    pl_fit_config c = config(NULL, &w);
    c.batch = 6;
    pl_fit_outcome o;
    REQUIRE(pl_fit(net, 1, &s, NULL, &c, &o, &err) == KILN_OK);
    CHECK(o.history[0].val_accuracy == -1.0);
    CHECK(pl_accuracy(net, 1, &s) > 0.9);
    params(net, out[run]);
    pl_fit_outcome_free(&o);
    kiln_net_free(net);
  }
  CHECK(memcmp(out[0], out[1], sizeof out[0]) == 0);
}

int main(void) {
  make_data();
  RUN(test_resume_mid_epoch);
  RUN(test_resume_epoch_end);
  RUN(test_pixels);
  return test_summary();
}
