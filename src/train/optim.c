/*
 * Optimizers, the learning-rate schedule and the random number generator of
 * the training engine (kiln/train.h). An update walks the trainable layers
 * in order: the global gradient norm is summed in double in that order, so
 * clipping and every update are deterministic.
 */
#include <math.h>

#include "train/net_int.h"

float kiln_schedule_lr(const kiln_schedule *s, int64_t step) {
  if (step < 0) step = 0;
  if (step < s->warmup_steps) return s->base_lr * (float)(step + 1) / (float)s->warmup_steps;
  if (s->total_steps <= s->warmup_steps) return s->base_lr;
  double progress = (double)(step - s->warmup_steps) / (double)(s->total_steps - s->warmup_steps);
  if (progress > 1.0) progress = 1.0;
  const double pi = 3.14159265358979323846;
  return (float)(s->final_lr + (s->base_lr - s->final_lr) * 0.5 * (1.0 + cos(pi * progress)));
}

kiln_optim kiln_optim_default(kiln_optim_kind kind, float lr) {
  kiln_optim o = {0};
  o.kind = kind;
  o.schedule.base_lr = lr;
  o.schedule.final_lr = lr;
  o.momentum = 0.9f;
  o.beta1 = 0.9f;
  o.beta2 = 0.999f;
  o.eps = 1e-8f;
  return o;
}

static bool decays(const train_layer *l) {
  return l->kind == KILN_LAYER_CONV || l->kind == KILN_LAYER_DWCONV || l->kind == KILN_LAYER_DENSE;
}

static bool updates(const train_layer *l) { return l->trainable && l->w_count > 0; }

/* One tensor's update: p, g, m1, m2 [count]. */
static void update_tensor(const kiln_optim *o, float lr, float grad_scale, float decay,
                          double bc1, double bc2, float *p, const float *g, float *m1, float *m2,
                          int64_t count) {
  const float wd = decay;
  switch (o->kind) {
  case KILN_OPTIM_SGD:
    for (int64_t i = 0; i < count; i++) {
      const float gi = g[i] * grad_scale + wd * p[i];
      m1[i] = o->momentum * m1[i] + gi;
      p[i] -= lr * (o->nesterov ? gi + o->momentum * m1[i] : m1[i]);
    }
    break;
  case KILN_OPTIM_ADAM:
  case KILN_OPTIM_ADAMW: {
    const bool decoupled = o->kind == KILN_OPTIM_ADAMW;
    const float step1 = (float)(lr / bc1), inv_bc2 = (float)(1.0 / bc2);
    for (int64_t i = 0; i < count; i++) {
      float gi = g[i] * grad_scale;
      if (decoupled)
        p[i] -= lr * wd * p[i];
      else
        gi += wd * p[i];
      m1[i] = o->beta1 * m1[i] + (1.0f - o->beta1) * gi;
      m2[i] = o->beta2 * m2[i] + (1.0f - o->beta2) * gi * gi;
      p[i] -= step1 * m1[i] / (sqrtf(m2[i] * inv_bc2) + o->eps);
    }
    break;
  }
  }
}

void kiln_net_update(kiln_net *net, const kiln_optim *opt, kiln_update_stats *stats) {
  double sq = 0.0;
  for (int32_t i = 0; i < net->n_layers; i++) {
    const train_layer *l = &net->layers[i];
    if (!updates(l)) continue;
    const size_t offs[2] = {l->w_off, l->b_off};
    const int64_t counts[2] = {l->w_count, l->b_count};
    for (int k = 0; k < 2; k++) {
      if (!counts[k]) continue; /* absent: offset SIZE_MAX */
      const float *g = net->grads + offs[k];
      for (int64_t j = 0; j < counts[k]; j++) sq += (double)g[j] * g[j];
    }
  }
  const double norm = sqrt(sq);
  float grad_scale = 1.0f;
  if (opt->clip_norm > 0.0f && norm > opt->clip_norm) grad_scale = (float)(opt->clip_norm / norm);
  const float lr = kiln_schedule_lr(&opt->schedule, net->step);
  const double t = (double)(net->step + 1);
  const double bc1 = 1.0 - pow(opt->beta1, t), bc2 = 1.0 - pow(opt->beta2, t);
  for (int32_t i = 0; i < net->n_layers; i++) {
    const train_layer *l = &net->layers[i];
    if (!updates(l)) continue;
    const size_t offs[2] = {l->w_off, l->b_off};
    const int64_t counts[2] = {l->w_count, l->b_count};
    for (int k = 0; k < 2; k++) {
      if (!counts[k]) continue;
      const float decay = k == 0 && decays(l) ? opt->weight_decay : 0.0f;
      update_tensor(opt, lr, grad_scale, decay, bc1, bc2, net->params + offs[k],
                    net->grads + offs[k], net->moment1 + offs[k], net->moment2 + offs[k],
                    counts[k]);
    }
  }
  if (stats) {
    stats->lr = lr;
    stats->grad_norm = (float)norm;
    stats->step = net->step;
  }
  net->step++;
}

/* ---- random numbers: xoshiro256** ---- */

static uint64_t splitmix64(uint64_t *x) {
  uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

void kiln_rng_seed(kiln_rng *rng, uint64_t seed) {
  for (int i = 0; i < 4; i++) rng->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t kiln_rng_next(kiln_rng *rng) {
  uint64_t *s = rng->s;
  const uint64_t result = rotl(s[1] * 5, 7) * 9;
  const uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return result;
}

float kiln_rng_uniform(kiln_rng *rng) {
  return (float)(kiln_rng_next(rng) >> 40) * (1.0f / 16777216.0f);
}

uint32_t kiln_rng_below(kiln_rng *rng, uint32_t n) {
  /* Lemire's multiply-shift with rejection of the biased low range. */
  uint64_t m = (kiln_rng_next(rng) >> 32) * (uint64_t)n;
  uint32_t low = (uint32_t)m;
  if (low < n) {
    const uint32_t threshold = (uint32_t)(-n) % n;
    while (low < threshold) {
      m = (kiln_rng_next(rng) >> 32) * (uint64_t)n;
      low = (uint32_t)m;
    }
  }
  return (uint32_t)(m >> 32);
}
