/* The thread pool (see base/threadpool.h). A job is published by bumping a
 * generation counter under the mutex; workers that are spinning see it at
 * once, sleeping ones are woken by the condition variable. Tasks are taken
 * with an atomic counter; the last finisher signals completion. */
#include "base/threadpool.h"

#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#define SPIN_ROUNDS 20000

typedef struct worker {
  kiln_threadpool *pool;
  int32_t index;
  pthread_t thread;
} worker;

struct kiln_threadpool {
  int32_t n_threads;
  worker *workers; /* n_threads - 1 */
  pthread_mutex_t mutex;
  pthread_cond_t wake;
  pthread_cond_t done_cond;
  /* The current job. */
  kiln_task_fn fn;
  void *ctx;
  int32_t n_tasks;
  atomic_int next_task;
  atomic_int active;      /* workers still inside the current job */
  atomic_uint generation; /* bumped per job */
  atomic_bool stop;
};

int32_t kiln_cpu_count(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? (int32_t)n : 1;
}

static void run_tasks(kiln_threadpool *p, int32_t thread) {
  for (;;) {
    int32_t t = atomic_fetch_add_explicit(&p->next_task, 1, memory_order_relaxed);
    if (t >= p->n_tasks) break;
    p->fn(p->ctx, t, thread);
  }
}

static void *worker_main(void *arg) {
  worker *w = arg;
  kiln_threadpool *p = w->pool;
  unsigned seen = 0;
  for (;;) {
    /* Spin a while for the next job, then sleep. */
    unsigned gen = atomic_load_explicit(&p->generation, memory_order_acquire);
    for (int i = 0; gen == seen && i < SPIN_ROUNDS && !atomic_load(&p->stop); i++) {
      sched_yield();
      gen = atomic_load_explicit(&p->generation, memory_order_acquire);
    }
    if (gen == seen) {
      pthread_mutex_lock(&p->mutex);
      while ((gen = atomic_load(&p->generation)) == seen && !atomic_load(&p->stop))
        pthread_cond_wait(&p->wake, &p->mutex);
      pthread_mutex_unlock(&p->mutex);
    }
    if (atomic_load(&p->stop)) return NULL;
    seen = gen;
    run_tasks(p, w->index);
    if (atomic_fetch_sub_explicit(&p->active, 1, memory_order_acq_rel) == 1) {
      pthread_mutex_lock(&p->mutex);
      pthread_cond_signal(&p->done_cond);
      pthread_mutex_unlock(&p->mutex);
    }
  }
}

kiln_status kiln_threadpool_create(int32_t n_threads, kiln_threadpool **out, kiln_error *err) {
  *out = NULL;
  if (n_threads < 1) n_threads = 1;
  kiln_threadpool *p = kiln_calloc(1, sizeof *p);
  if (!p) return kiln_fail(err, KILN_ERR_NOMEM, "out of memory for a thread pool");
  p->n_threads = n_threads;
  pthread_mutex_init(&p->mutex, NULL);
  pthread_cond_init(&p->wake, NULL);
  pthread_cond_init(&p->done_cond, NULL);
  if (n_threads > 1) {
    p->workers = kiln_calloc((size_t)n_threads - 1, sizeof *p->workers);
    if (!p->workers) {
      kiln_threadpool_free(p);
      return kiln_fail(err, KILN_ERR_NOMEM, "out of memory for a thread pool");
    }
    for (int32_t i = 0; i < n_threads - 1; i++) {
      p->workers[i].pool = p;
      p->workers[i].index = i + 1;
      if (pthread_create(&p->workers[i].thread, NULL, worker_main, &p->workers[i]) != 0) {
        p->n_threads = i + 1; /* the ones started so far, for free() to join */
        kiln_threadpool_free(p);
        return kiln_fail(err, KILN_ERR_NOMEM, "cannot start thread %d of %d", (int)i + 2,
                         (int)n_threads);
      }
    }
  }
  *out = p;
  return KILN_OK;
}

int32_t kiln_threadpool_size(const kiln_threadpool *pool) { return pool ? pool->n_threads : 1; }

void kiln_threadpool_run(kiln_threadpool *p, kiln_task_fn fn, void *ctx, int32_t n_tasks) {
  if (n_tasks <= 0) return;
  if (!p || p->n_threads == 1 || n_tasks == 1) {
    for (int32_t t = 0; t < n_tasks; t++) fn(ctx, t, 0);
    return;
  }
  p->fn = fn;
  p->ctx = ctx;
  p->n_tasks = n_tasks;
  atomic_store_explicit(&p->next_task, 0, memory_order_relaxed);
  atomic_store_explicit(&p->active, p->n_threads - 1, memory_order_relaxed);
  pthread_mutex_lock(&p->mutex);
  atomic_fetch_add_explicit(&p->generation, 1, memory_order_release);
  pthread_cond_broadcast(&p->wake);
  pthread_mutex_unlock(&p->mutex);
  run_tasks(p, 0);
  /* Wait for the workers: spin first (jobs are short), then sleep. */
  for (int i = 0; i < SPIN_ROUNDS && atomic_load_explicit(&p->active, memory_order_acquire) > 0; i++)
    sched_yield();
  if (atomic_load_explicit(&p->active, memory_order_acquire) > 0) {
    pthread_mutex_lock(&p->mutex);
    while (atomic_load(&p->active) > 0) pthread_cond_wait(&p->done_cond, &p->mutex);
    pthread_mutex_unlock(&p->mutex);
  }
}

void kiln_threadpool_free(kiln_threadpool *p) {
  if (!p) return;
  if (p->workers) {
    pthread_mutex_lock(&p->mutex);
    atomic_store(&p->stop, true);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mutex);
    for (int32_t i = 0; i < p->n_threads - 1; i++) pthread_join(p->workers[i].thread, NULL);
    kiln_free(p->workers);
  }
  pthread_mutex_destroy(&p->mutex);
  pthread_cond_destroy(&p->wake);
  pthread_cond_destroy(&p->done_cond);
  kiln_free(p);
}
