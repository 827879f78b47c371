/*
 * A bounded blocking FIFO of pointers (vision/video_int.h): one mutex, two
 * condition variables. close() lets the consumer drain what is queued;
 * abort() wakes everyone and makes every later call return at once.
 */
#include "vision/video_int.h"

kiln_status video_queue_init(video_queue *q, int32_t capacity, kiln_error *err) {
  *q = (video_queue){.capacity = capacity};
  q->items = kiln_calloc((size_t)capacity, sizeof *q->items);
  if (!q->items) return kiln_fail(err, KILN_ERR_NOMEM, "video queue: out of memory");
  pthread_mutex_init(&q->mu, NULL);
  pthread_cond_init(&q->not_empty, NULL);
  pthread_cond_init(&q->not_full, NULL);
  return KILN_OK;
}

void video_queue_destroy(video_queue *q) {
  if (!q->items) return;
  pthread_mutex_destroy(&q->mu);
  pthread_cond_destroy(&q->not_empty);
  pthread_cond_destroy(&q->not_full);
  kiln_free(q->items);
  q->items = NULL;
}

bool video_queue_push(video_queue *q, void *item) {
  pthread_mutex_lock(&q->mu);
  while (q->count == q->capacity && !q->aborted) pthread_cond_wait(&q->not_full, &q->mu);
  bool ok = !q->aborted;
  if (ok) {
    q->items[(q->head + q->count) % q->capacity] = item;
    q->count++;
    pthread_cond_signal(&q->not_empty);
  }
  pthread_mutex_unlock(&q->mu);
  return ok;
}

int video_queue_try_push(video_queue *q, void *item) {
  pthread_mutex_lock(&q->mu);
  int r = q->aborted ? -1 : q->count == q->capacity ? 0 : 1;
  if (r == 1) {
    q->items[(q->head + q->count) % q->capacity] = item;
    q->count++;
    pthread_cond_signal(&q->not_empty);
  }
  pthread_mutex_unlock(&q->mu);
  return r;
}

void *video_queue_pop(video_queue *q) {
  pthread_mutex_lock(&q->mu);
  while (q->count == 0 && !q->closed && !q->aborted) pthread_cond_wait(&q->not_empty, &q->mu);
  void *item = NULL;
  if (!q->aborted && q->count > 0) {
    item = q->items[q->head];
    q->head = (q->head + 1) % q->capacity;
    q->count--;
    pthread_cond_signal(&q->not_full);
  }
  pthread_mutex_unlock(&q->mu);
  return item;
}

void video_queue_close(video_queue *q) {
  pthread_mutex_lock(&q->mu);
  q->closed = true;
  pthread_cond_broadcast(&q->not_empty);
  pthread_mutex_unlock(&q->mu);
}

void video_queue_abort(video_queue *q) {
  pthread_mutex_lock(&q->mu);
  q->aborted = true;
  pthread_cond_broadcast(&q->not_empty);
  pthread_cond_broadcast(&q->not_full);
  pthread_mutex_unlock(&q->mu);
}
