/*
 * testutil.h: the small harness every C unit test uses. A test file defines
 * test functions, lists them in main with RUN(fn), and returns test_summary().
 * CHECK records a failure with file and line and continues; REQUIRE stops the
 * current test function.
 */
#ifndef KILN_TESTUTIL_H
#define KILN_TESTUTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

extern int test_failures;
extern int test_checks;

#define CHECK(cond)                                                         \
  do {                                                                      \
    test_checks++;                                                          \
    if (!(cond)) {                                                          \
      test_failures++;                                                      \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
    }                                                                       \
  } while (0)

#define CHECK_MSG(cond, ...)                                                \
  do {                                                                      \
    test_checks++;                                                          \
    if (!(cond)) {                                                          \
      test_failures++;                                                      \
      fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond); \
      fprintf(stderr, __VA_ARGS__);                                         \
      fputc('\n', stderr);                                                  \
    }                                                                       \
  } while (0)

#define REQUIRE(cond)                                                       \
  do {                                                                      \
    test_checks++;                                                          \
    if (!(cond)) {                                                          \
      test_failures++;                                                      \
      fprintf(stderr, "%s:%d: REQUIRE failed: %s\n", __FILE__, __LINE__, #cond); \
      return;                                                               \
    }                                                                       \
  } while (0)

#define RUN(fn)                                    \
  do {                                             \
    int before_ = test_failures;                   \
    fn();                                          \
    fprintf(stderr, "%s %s\n", test_failures == before_ ? "ok  " : "FAIL", #fn); \
  } while (0)

/* Prints "N checks, N failed" and returns the process exit code. */
int test_summary(void);

/* Deterministic random numbers for tests (xorshift64*). */
typedef struct test_rng { uint64_t s; } test_rng;
uint32_t test_rand_u32(test_rng *r);
/* Uniform integer in [lo, hi]. */
int32_t test_rand_int(test_rng *r, int32_t lo, int32_t hi);
/* Uniform float in [lo, hi). */
float test_rand_float(test_rng *r, float lo, float hi);

/* Path of a shared real model ($KILN_MODELS/name) in a static buffer. */
const char *test_model_path(const char *name);
/* Path of a file under tests/data ($KILN_TEST_DATA/name) in a static buffer. */
const char *test_data_path(const char *name);

#endif
