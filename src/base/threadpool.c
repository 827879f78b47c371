/* The thread pool (see base/threadpool.h).
 *
 * A job is published as a 64-bit claim word holding its generation, its
 * task count and the next task. Every thread (the caller included) takes
 * tasks by compare-and-swap on that word, so a task is taken only while its
 * own job is current and below that job's own count; a worker that wakes
 * late, or still holds an old word, finds the word changed and takes
 * nothing. The caller waits only for the tasks that were taken to
 * finish (a done counter), never for sleeping or descheduled workers to
 * check in: on a loaded machine the caller simply runs the job itself.
 *
 * fn and ctx are written before the claim word (release) and read after a
 * successful claim (acquire); a job cannot be replaced while one of its
 * tasks is unfinished, so what a claimer reads belongs to its task. */
#include "base/threadpool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>
#include <unistd.h>

/* Waiting: first spin with the CPU's pause hint (a job usually follows the
 * last within microseconds while an invoke runs ops back to back), then
 * yield a while, then sleep on a condition variable. */
#define SPIN_PAUSES 2000
#define SPIN_YIELDS 2000

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ volatile("yield");
#endif
}

/* claim word: generation (24 bits) | task count (20) | next task (20). */
#define CLAIM_TASK_BITS 20
#define CLAIM_MAX_TASKS ((1 << CLAIM_TASK_BITS) - 1)
#define CLAIM_GEN(c) ((uint32_t)((c) >> (2 * CLAIM_TASK_BITS)))
#define CLAIM_COUNT(c) ((int32_t)(((c) >> CLAIM_TASK_BITS) & CLAIM_MAX_TASKS))
#define CLAIM_NEXT(c) ((int32_t)((c)&CLAIM_MAX_TASKS))
#define CLAIM_MAKE(gen, count) \
  (((uint64_t)((gen) & 0xffffff) << (2 * CLAIM_TASK_BITS)) | ((uint64_t)(count) << CLAIM_TASK_BITS))

typedef struct worker {
  kiln_threadpool *pool;
  int32_t index;
  pthread_t thread;
} worker;

struct kiln_threadpool {
  int32_t n_threads;
  worker *workers; /* n_threads - 1 */
  pthread_mutex_t mutex;
  pthread_cond_t wake;      /* workers: a new generation */
  pthread_cond_t done_cond; /* caller: the last task finished */
  /* The current job. */
  kiln_task_fn fn;
  void *ctx;
  _Atomic uint64_t claim; /* see CLAIM_* */
  atomic_int done;        /* tasks finished in the current job */
  atomic_bool caller_sleeping;
  atomic_bool stop;
};

int32_t kiln_cpu_count(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? (int32_t)n : 1;
}

/* Takes and runs tasks of generation gen until none is left. */
static void run_tasks(kiln_threadpool *p, uint32_t gen, int32_t thread) {
  for (;;) {
    uint64_t c = atomic_load_explicit(&p->claim, memory_order_acquire);
    if (CLAIM_GEN(c) != gen || CLAIM_NEXT(c) >= CLAIM_COUNT(c)) return;
    if (!atomic_compare_exchange_weak_explicit(&p->claim, &c, c + 1, memory_order_acq_rel,
                                               memory_order_acquire))
      continue;
    /* The job cannot be replaced before this task is done: fn and ctx are
     * this job's. */
    p->fn(p->ctx, CLAIM_NEXT(c), thread);
    /* Sequentially consistent with the caller's "sleeping, then re-check
     * done" so one side always sees the other (no lost wake-up). */
    const int finished = atomic_fetch_add(&p->done, 1) + 1;
    if (finished == CLAIM_COUNT(c) && atomic_load(&p->caller_sleeping)) {
      pthread_mutex_lock(&p->mutex);
      pthread_cond_signal(&p->done_cond);
      pthread_mutex_unlock(&p->mutex);
    }
  }
}

static uint32_t generation_of(kiln_threadpool *p) {
  return CLAIM_GEN(atomic_load_explicit(&p->claim, memory_order_acquire));
}

static void *worker_main(void *arg) {
  worker *w = arg;
  kiln_threadpool *p = w->pool;
  uint32_t seen = 0;
  for (;;) {
    uint32_t gen = generation_of(p);
    for (int i = 0; gen == seen && i < SPIN_PAUSES + SPIN_YIELDS && !atomic_load(&p->stop); i++) {
      if (i < SPIN_PAUSES) cpu_relax();
      else sched_yield();
      gen = generation_of(p);
    }
    if (gen == seen) {
      pthread_mutex_lock(&p->mutex);
      while ((gen = generation_of(p)) == seen && !atomic_load(&p->stop))
        pthread_cond_wait(&p->wake, &p->mutex);
      pthread_mutex_unlock(&p->mutex);
    }
    if (atomic_load(&p->stop)) return NULL;
    seen = gen;
    run_tasks(p, gen, w->index);
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

/* Tasks [base, base + n) of a larger job, as tasks [0, n) of this one. */
typedef struct offset_job {
  kiln_task_fn fn;
  void *ctx;
  int32_t base;
} offset_job;

static void offset_task(void *arg, int32_t task, int32_t thread) {
  const offset_job *j = arg;
  j->fn(j->ctx, j->base + task, thread);
}

static void run_job(kiln_threadpool *p, kiln_task_fn fn, void *ctx, int32_t n_tasks) {
  p->fn = fn;
  p->ctx = ctx;
  atomic_store_explicit(&p->done, 0, memory_order_relaxed);
  const uint32_t gen = (generation_of(p) + 1) & 0xffffff;
  pthread_mutex_lock(&p->mutex);
  atomic_store_explicit(&p->claim, CLAIM_MAKE(gen, n_tasks), memory_order_release);
  pthread_cond_broadcast(&p->wake);
  pthread_mutex_unlock(&p->mutex);
  run_tasks(p, gen, 0);
  /* Wait only for tasks other threads took and have not finished. */
  for (int i = 0; i < SPIN_PAUSES + SPIN_YIELDS &&
                  atomic_load_explicit(&p->done, memory_order_acquire) < n_tasks;
       i++) {
    if (i < SPIN_PAUSES) cpu_relax();
    else sched_yield();
  }
  if (atomic_load_explicit(&p->done, memory_order_acquire) < n_tasks) {
    pthread_mutex_lock(&p->mutex);
    atomic_store(&p->caller_sleeping, true);
    while (atomic_load(&p->done) < n_tasks) pthread_cond_wait(&p->done_cond, &p->mutex);
    atomic_store(&p->caller_sleeping, false);
    pthread_mutex_unlock(&p->mutex);
  }
}

void kiln_threadpool_run(kiln_threadpool *p, kiln_task_fn fn, void *ctx, int32_t n_tasks) {
  if (n_tasks <= 0) return;
  if (!p || p->n_threads == 1 || n_tasks == 1) {
    for (int32_t t = 0; t < n_tasks; t++) fn(ctx, t, 0);
    return;
  }
  if (n_tasks <= CLAIM_MAX_TASKS) {
    run_job(p, fn, ctx, n_tasks);
    return;
  }
  for (int32_t base = 0; base < n_tasks; base += CLAIM_MAX_TASKS) {
    offset_job j = {fn, ctx, base};
    run_job(p, offset_task, &j, n_tasks - base < CLAIM_MAX_TASKS ? n_tasks - base : CLAIM_MAX_TASKS);
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
