/* Optimizer steps of the training engine against values computed by hand
 * (SGD with momentum and Nesterov, Adam, AdamW, weight decay only on
 * weights), the warmup + cosine schedule, global-norm clipping, and the
 * RNG's known first values and ranges. */
#include <math.h>
#include <string.h>

#include "kiln/train.h"
#include "testutil.h"

#define NEAR(a, b) (fabs((double)(a) - (double)(b)) <= 1e-6 * fmax(1.0, fabs((double)(b))))

/* input [1, 1, 2] -> dense 1 unit with bias: weights w[2], bias b[1]. */
static kiln_net *tiny(float **w, float **b, float **gw, float **gb) {
  kiln_net *net;
  kiln_error err;
  if (kiln_net_create(1, 1, 2, &net, &err) != KILN_OK) return NULL;
  int32_t d = kiln_net_dense(net, 0, 1, true);
  if (kiln_net_finalize(net, 1, 1, 3, &err) != KILN_OK) return NULL;
  *w = kiln_net_param(net, d, KILN_PARAM_WEIGHT, NULL);
  *b = kiln_net_param(net, d, KILN_PARAM_BIAS, NULL);
  *gw = kiln_net_param_grad(net, d, KILN_PARAM_WEIGHT, NULL);
  *gb = kiln_net_param_grad(net, d, KILN_PARAM_BIAS, NULL);
  return net;
}

static void set(float *w, float *b, float w0, float w1, float b0) {
  w[0] = w0;
  w[1] = w1;
  b[0] = b0;
}

static void test_sgd(void) {
  float *w, *b, *gw, *gb;
  kiln_net *net = tiny(&w, &b, &gw, &gb);
  REQUIRE(net);
  set(w, b, 1.0f, -2.0f, 0.5f);
  kiln_optim o = kiln_optim_default(KILN_OPTIM_SGD, 0.1f);
  o.weight_decay = 0.01f;
  /* step 1: g' = g + wd * w (weights only); v = g'; p -= lr * v */
  set(gw, gb, 0.5f, 1.0f, -1.0f);
  kiln_net_update(net, &o, NULL);
  const double v0 = 0.5 + 0.01 * 1.0, v1 = 1.0 + 0.01 * -2.0, vb = -1.0;
  double p0 = 1.0 - 0.1 * v0, p1 = -2.0 - 0.1 * v1, pb = 0.5 - 0.1 * vb;
  CHECK(NEAR(w[0], p0) && NEAR(w[1], p1) && NEAR(b[0], pb));
  /* step 2: v = 0.9 v + g' */
  set(gw, gb, -0.25f, 0.0f, 2.0f);
  kiln_net_update(net, &o, NULL);
  const double u0 = 0.9 * v0 + (-0.25 + 0.01 * p0), u1 = 0.9 * v1 + 0.01 * p1,
               ub = 0.9 * vb + 2.0;
  CHECK(NEAR(w[0], p0 - 0.1 * u0) && NEAR(w[1], p1 - 0.1 * u1) && NEAR(b[0], pb - 0.1 * ub));
  CHECK(kiln_net_step(net) == 2);
  kiln_net_free(net);

  /* Nesterov: p -= lr * (g + momentum * v) */
  net = tiny(&w, &b, &gw, &gb);
  REQUIRE(net);
  set(w, b, 1.0f, 1.0f, 0.0f);
  o = kiln_optim_default(KILN_OPTIM_SGD, 0.5f);
  o.nesterov = true;
  set(gw, gb, 1.0f, -1.0f, 0.0f);
  kiln_net_update(net, &o, NULL);
  CHECK(NEAR(w[0], 1.0 - 0.5 * (1.0 + 0.9 * 1.0)) && NEAR(w[1], 1.0 + 0.5 * 1.9));
  kiln_net_update(net, &o, NULL); /* v = 1.9 */
  CHECK(NEAR(w[0], 1.0 - 0.95 - 0.5 * (1.0 + 0.9 * 1.9)));
  kiln_net_free(net);
}

static void test_adam(void) {
  for (int decoupled = 0; decoupled < 2; decoupled++) {
    float *w, *b, *gw, *gb;
    kiln_net *net = tiny(&w, &b, &gw, &gb);
    REQUIRE(net);
    set(w, b, 1.0f, -1.0f, 0.25f);
    kiln_optim o = kiln_optim_default(decoupled ? KILN_OPTIM_ADAMW : KILN_OPTIM_ADAM, 0.01f);
    o.weight_decay = 0.1f;
    double p[3] = {1.0, -1.0, 0.25}, m[3] = {0}, v[3] = {0};
    const double g_seq[2][3] = {{0.3, -0.2, 1.0}, {-0.1, 0.4, 0.5}};
    for (int t = 1; t <= 2; t++) {
      set(gw, gb, (float)g_seq[t - 1][0], (float)g_seq[t - 1][1], (float)g_seq[t - 1][2]);
      kiln_net_update(net, &o, NULL);
      for (int i = 0; i < 3; i++) {
        double g = g_seq[t - 1][i];
        const bool weight = i < 2;
        if (weight && decoupled) p[i] -= 0.01 * 0.1 * p[i];
        if (weight && !decoupled) g += 0.1 * p[i];
        m[i] = 0.9 * m[i] + 0.1 * g;
        v[i] = 0.999 * v[i] + 0.001 * g * g;
        const double mh = m[i] / (1.0 - pow(0.9, t)), vh = v[i] / (1.0 - pow(0.999, t));
        p[i] -= 0.01 * mh / (sqrt(vh) + 1e-8);
      }
      CHECK_MSG(NEAR(w[0], p[0]) && NEAR(w[1], p[1]) && NEAR(b[0], p[2]),
                "adam%s step %d: %.8f %.8f %.8f vs %.8f %.8f %.8f", decoupled ? "w" : "", t,
                (double)w[0], (double)w[1], (double)b[0], p[0], p[1], p[2]);
    }
    kiln_net_free(net);
  }
}

static void test_clipping(void) {
  float *w, *b, *gw, *gb;
  kiln_net *net = tiny(&w, &b, &gw, &gb);
  REQUIRE(net);
  set(w, b, 0.0f, 0.0f, 0.0f);
  kiln_optim o = kiln_optim_default(KILN_OPTIM_SGD, 1.0f);
  o.momentum = 0.0f;
  o.clip_norm = 1.0f;
  set(gw, gb, 3.0f, 0.0f, 4.0f); /* norm 5 -> scaled by 1/5 */
  kiln_update_stats st;
  kiln_net_update(net, &o, &st);
  CHECK(NEAR(st.grad_norm, 5.0) && NEAR(st.lr, 1.0) && st.step == 0);
  CHECK(NEAR(w[0], -0.6) && NEAR(w[1], 0.0) && NEAR(b[0], -0.8));
  set(gw, gb, 0.3f, 0.0f, 0.4f); /* under the limit: unchanged */
  kiln_net_update(net, &o, &st);
  CHECK(NEAR(w[0], -0.9) && NEAR(b[0], -1.2) && st.step == 1);
  kiln_net_free(net);
}

static void test_frozen(void) {
  float *w, *b, *gw, *gb;
  kiln_net *net = tiny(&w, &b, &gw, &gb);
  REQUIRE(net);
  kiln_error err;
  REQUIRE(kiln_net_set_trainable(net, 1, false, &err) == KILN_OK);
  set(w, b, 1.0f, 2.0f, 3.0f);
  set(gw, gb, 1.0f, 1.0f, 1.0f);
  kiln_optim o = kiln_optim_default(KILN_OPTIM_ADAM, 0.1f);
  kiln_net_update(net, &o, NULL);
  CHECK(w[0] == 1.0f && w[1] == 2.0f && b[0] == 3.0f);
  CHECK(kiln_net_set_trainable(net, 7, false, &err) == KILN_ERR_INVALID_ARG);
  kiln_net_free(net);
}

static void test_schedule(void) {
  kiln_schedule s = {1.0f, 0.0f, 10, 110};
  CHECK(NEAR(kiln_schedule_lr(&s, 0), 0.1));
  CHECK(NEAR(kiln_schedule_lr(&s, 4), 0.5));
  CHECK(NEAR(kiln_schedule_lr(&s, 9), 1.0));
  CHECK(NEAR(kiln_schedule_lr(&s, 10), 1.0));
  CHECK(NEAR(kiln_schedule_lr(&s, 60), 0.5));
  CHECK(NEAR(kiln_schedule_lr(&s, 35), 0.5 * (1.0 + cos(3.14159265358979 * 0.25))));
  CHECK(NEAR(kiln_schedule_lr(&s, 110), 0.0));
  CHECK(NEAR(kiln_schedule_lr(&s, 500), 0.0));
  kiln_schedule c = {0.3f, 0.01f, 0, 0};
  CHECK(NEAR(kiln_schedule_lr(&c, 0), 0.3) && NEAR(kiln_schedule_lr(&c, 1000), 0.3));
  kiln_schedule f = {2.0f, 0.5f, 0, 4};
  CHECK(NEAR(kiln_schedule_lr(&f, 0), 2.0) && NEAR(kiln_schedule_lr(&f, 2), 1.25) &&
        NEAR(kiln_schedule_lr(&f, 4), 0.5));
}

static void test_random(void) {
  kiln_rng a, b;
  kiln_rng_seed(&a, 42);
  kiln_rng_seed(&b, 42);
  for (int i = 0; i < 100; i++) CHECK(kiln_rng_next(&a) == kiln_rng_next(&b));
  kiln_rng_seed(&b, 43);
  CHECK(kiln_rng_next(&a) != kiln_rng_next(&b));
  int hist[8] = {0}, out_of_range = 0;
  double sum = 0.0;
  for (int i = 0; i < 70000; i++) {
    uint32_t k = kiln_rng_below(&a, 7);
    hist[k < 7 ? k : 7]++;
    float u = kiln_rng_uniform(&a);
    out_of_range += !(u >= 0.0f && u < 1.0f);
    sum += u;
  }
  CHECK(hist[7] == 0 && out_of_range == 0);
  for (int k = 0; k < 7; k++) CHECK(hist[k] > 9500 && hist[k] < 10500);
  CHECK(fabs(sum / 70000 - 0.5) < 0.01);
}

int main(void) {
  RUN(test_sgd);
  RUN(test_adam);
  RUN(test_clipping);
  RUN(test_frozen);
  RUN(test_schedule);
  RUN(test_random);
  return test_summary();
}
