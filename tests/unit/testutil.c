/* The unit-test harness (see testutil.h). */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>

int test_failures = 0;
int test_checks = 0;

int test_summary(void) {
  fprintf(stderr, "%d checks, %d failed\n", test_checks, test_failures);
  if (test_checks == 0) {
    fprintf(stderr, "no checks ran\n");
    return 1;
  }
  return test_failures ? 1 : 0;
}

uint32_t test_rand_u32(test_rng *r) {
  if (r->s == 0) r->s = 0x9E3779B97F4A7C15ull;
  r->s ^= r->s >> 12;
  r->s ^= r->s << 25;
  r->s ^= r->s >> 27;
  return (uint32_t)((r->s * 2685821657736338717ull) >> 32);
}

int32_t test_rand_int(test_rng *r, int32_t lo, int32_t hi) {
  uint64_t span = (uint64_t)((int64_t)hi - (int64_t)lo + 1);
  return (int32_t)((int64_t)lo + (int64_t)(test_rand_u32(r) % span));
}

float test_rand_float(test_rng *r, float lo, float hi) {
  return lo + (hi - lo) * (float)(test_rand_u32(r) >> 8) / (float)(1u << 24);
}

static const char *env_path(const char *var, const char *fallback, const char *name) {
  static char buf[4096];
  const char *dir = getenv(var);
  if (!dir || !*dir) dir = fallback;
  snprintf(buf, sizeof buf, "%s/%s", dir, name);
  return buf;
}

const char *test_model_path(const char *name) {
  return env_path("KILN_MODELS", "../shared/models", name);
}

const char *test_data_path(const char *name) {
  return env_path("KILN_TEST_DATA", "tests/data", name);
}
