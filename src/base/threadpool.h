/*
 * base/threadpool.h: a small pthread pool for data-parallel loops.
 *
 * kiln_threadpool_run(pool, fn, ctx, n_tasks) calls fn(ctx, task, thread)
 * once for every task in [0, n_tasks), spread over the pool's threads (the
 * calling thread is thread 0 and works too), and returns when all are done.
 * Tasks are handed out in order from a shared counter, so which thread runs
 * a task varies, but a task's work must not depend on the thread: kernels
 * split their output into tiles whose results are independent of who
 * computes them, which keeps results identical for every thread count.
 * `thread` is only for choosing per-thread scratch memory.
 *
 * Workers spin briefly after a job (invoke runs ops back to back) and then
 * sleep on a condition variable. One job runs at a time per pool; a pool is
 * driven by one thread (an interpreter's invoke).
 */
#ifndef KILN_BASE_THREADPOOL_H
#define KILN_BASE_THREADPOOL_H

#include <stdint.h>

#include "kiln/base.h"

typedef struct kiln_threadpool kiln_threadpool;

typedef void (*kiln_task_fn)(void *ctx, int32_t task, int32_t thread);

/* A pool of n_threads threads in all (the caller plus n_threads - 1
 * workers); n_threads <= 1 makes a pool that runs everything inline. */
kiln_status kiln_threadpool_create(int32_t n_threads, kiln_threadpool **out, kiln_error *err);
int32_t kiln_threadpool_size(const kiln_threadpool *pool);
/* Runs fn for every task (see above). pool may be NULL: runs inline. */
void kiln_threadpool_run(kiln_threadpool *pool, kiln_task_fn fn, void *ctx, int32_t n_tasks);
void kiln_threadpool_free(kiln_threadpool *pool);

/* Number of online CPUs (>= 1). */
int32_t kiln_cpu_count(void);

#endif
