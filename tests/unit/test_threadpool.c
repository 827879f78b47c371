/* The thread pool runs every task exactly once for any pool size and task
 * count, back to back and after idle sleeps, and a pool can be freed
 * while idle. */
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "base/threadpool.h"
#include "testutil.h"

typedef struct job {
  atomic_int *hits;
  atomic_int max_thread;
  int32_t n_threads;
} job;

static void count_task(void *ctx, int32_t task, int32_t thread) {
  job *j = ctx;
  atomic_fetch_add(&j->hits[task], 1);
  int prev = atomic_load(&j->max_thread);
  while (thread > prev && !atomic_compare_exchange_weak(&j->max_thread, &prev, thread)) {
  }
}

static void run_and_check(kiln_threadpool *pool, int32_t n_tasks) {
  atomic_int *hits = calloc((size_t)n_tasks + 1, sizeof *hits);
  job j = {hits, 0, kiln_threadpool_size(pool)};
  kiln_threadpool_run(pool, count_task, &j, n_tasks);
  int bad = 0;
  for (int32_t t = 0; t < n_tasks; t++) bad += atomic_load(&hits[t]) != 1;
  CHECK_MSG(bad == 0, "%d of %d tasks not run exactly once", bad, (int)n_tasks);
  CHECK(atomic_load(&j.max_thread) < j.n_threads);
  free(hits);
}

static void test_sizes(void) {
  for (int32_t threads = 1; threads <= 4; threads++) {
    kiln_threadpool *pool;
    kiln_error err;
    REQUIRE(kiln_threadpool_create(threads, &pool, &err) == KILN_OK);
    CHECK(kiln_threadpool_size(pool) == threads);
    for (int32_t n = 0; n <= 67; n++) run_and_check(pool, n);
    for (int rep = 0; rep < 2000; rep++) run_and_check(pool, 1 + rep % 9);
    /* Let workers fall asleep, then wake them. */
    struct timespec ts = {0, 60 * 1000 * 1000};
    nanosleep(&ts, NULL);
    run_and_check(pool, 1000);
    kiln_threadpool_free(pool);
  }
  run_and_check(NULL, 10); /* no pool: inline */
}

static void test_create_free_idle(void) {
  for (int i = 0; i < 50; i++) {
    kiln_threadpool *pool;
    kiln_error err;
    REQUIRE(kiln_threadpool_create(3, &pool, &err) == KILN_OK);
    kiln_threadpool_free(pool);
  }
  CHECK(kiln_cpu_count() >= 1);
}

int main(void) {
  RUN(test_sizes);
  RUN(test_create_free_idle);
  return test_summary();
}
