/*
 * kiln_video_detect (kiln/video.h): a three-stage pipeline.
 *
 *   decode thread --infer_q--> calling thread --encode_q--> encode thread
 *   (read, decode, RGB)        (kiln_detector_run)          (draw, encode, report)
 *         ^------------------------- free_q <---------------------|
 *
 * Frames live in VIDEO_SLOTS slots that circulate through the queues; the
 * two work queues hold at most VIDEO_QUEUE_DEPTH frames each, so memory is
 * bounded and each stage runs ahead of the next by at most that many
 * frames. Slots keep their pixel buffers from frame to frame.
 *
 * Ending: the decoder closes infer_q at the end of the input (or after an
 * input error, which is kept and returned after the frames already decoded
 * are finished); the inference stage closes encode_q when infer_q is
 * drained. A failure of inference or encoding, or the callback asking to
 * stop, aborts every queue so all threads return at once.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vision/video_int.h"

#define VIDEO_QUEUE_DEPTH 2
/* One frame in each queue slot plus one in the hands of each stage. */
#define VIDEO_SLOTS (2 * VIDEO_QUEUE_DEPTH + 3)
#define VIDEO_DEFAULT_BOXES 20

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* ---- Drawing ---- */

const char *kiln_video_box_label(const kiln_labels *labels, int32_t class_id, char *buf,
                                 size_t cap) {
  const char *l = NULL;
  if (labels) l = kiln_labels_get(labels, kiln_labels_has_background(labels) ? class_id : class_id - 1);
  if (l) return l;
  snprintf(buf, cap, "class %d", (int)class_id);
  return buf;
}

static const kiln_rgb palette[] = {{230, 25, 75}, {60, 180, 75}, {255, 225, 25}, {0, 130, 200},
                                   {245, 130, 48}, {145, 30, 180}, {70, 240, 240}, {240, 50, 230}};

void kiln_video_draw_boxes(kiln_image *img, const kiln_box *boxes, int32_t n,
                           const kiln_labels *labels) {
  int32_t thick = img->width > 800 ? 4 : 2, scale = img->width > 800 ? 3 : 2;
  for (int32_t i = n - 1; i >= 0; i--) { /* best drawn last, on top */
    const kiln_box *b = &boxes[i];
    kiln_rgb c = palette[(uint32_t)b->class_id % (sizeof palette / sizeof palette[0])];
    kiln_image_draw_box(img, (int32_t)b->xmin, (int32_t)b->ymin, (int32_t)b->xmax, (int32_t)b->ymax,
                        thick, c);
    char name[64], text[128];
    snprintf(text, sizeof text, "%s %.2f", kiln_video_box_label(labels, b->class_id, name, sizeof name),
             (double)b->score);
    int32_t tw, th;
    kiln_image_text_size(text, scale, &tw, &th);
    int32_t y = (int32_t)b->ymin - th - 2;
    if (y < 0) y = (int32_t)b->ymin + thick;
    kiln_image_draw_text(img, (int32_t)b->xmin, y, text, scale, (kiln_rgb){0, 0, 0}, &c);
  }
}

/* ---- Pipeline ---- */

typedef struct video_slot {
  kiln_image image; /* RGB at the stream's size; buffer kept across frames */
  kiln_box *boxes;  /* max_boxes */
  int32_t n_boxes;
  int64_t index, pts;
  double time_s;
  double t_decoded; /* now_ms() when it left the decoder */
  double decode_ms;
  kiln_vision_timing timing;
} video_slot;

typedef struct pipeline {
  kiln_detector *det;
  const kiln_video_options *opt;
  kiln_video_frame_fn on_frame;
  void *user;
  int32_t max_boxes;
  bool drop_late;
  double time_base; /* seconds per pts tick */
  video_input *in;
  video_output *out;
  video_queue free_q, infer_q, encode_q;
  video_slot slots[VIDEO_SLOTS];

  pthread_mutex_t mu;  /* guards status and err */
  kiln_status status;  /* first failure of any stage */
  kiln_error err;

  /* Each written by one stage only, read after the threads are joined. */
  kiln_status input_status; /* decode: the input ended early */
  kiln_error input_err;
  int64_t decoded, dropped, inferred, frames;
  double decode_ms, infer_ms, encode_ms;
  double t_start, t_last;
  double *latency; /* encode stage: per frame */
  int64_t latency_cap;
} pipeline;

static void abort_all(pipeline *p) {
  video_queue_abort(&p->free_q);
  video_queue_abort(&p->infer_q);
  video_queue_abort(&p->encode_q);
}

static void fail(pipeline *p, kiln_status s, const kiln_error *e) {
  pthread_mutex_lock(&p->mu);
  if (p->status == KILN_OK) {
    p->status = s;
    p->err = *e;
  }
  pthread_mutex_unlock(&p->mu);
  abort_all(p);
}

/* With drop_late a frame that finds infer_q full is dropped and its slot
 * reused for the next one, so a camera's frames never wait behind stale
 * ones; otherwise the decoder waits for room. */
static void *decode_stage(void *arg) {
  pipeline *p = arg;
  int64_t max = p->opt->max_frames;
  video_slot *s = NULL;
  for (int64_t i = 0; max == 0 || i < max; i++) {
    if (!s && !(s = video_queue_pop(&p->free_q))) break;
    double t0 = now_ms();
    bool end = false;
    kiln_status st = video_input_read(p->in, &s->image, &s->pts, &end, &p->input_err);
    if (st != KILN_OK) p->input_status = st;
    if (st != KILN_OK || end) break;
    s->index = i;
    s->time_s = (double)s->pts * p->time_base;
    s->t_decoded = now_ms();
    s->decode_ms = s->t_decoded - t0;
    p->decode_ms += s->decode_ms;
    p->decoded++;
    int pushed = p->drop_late ? video_queue_try_push(&p->infer_q, s)
                              : (video_queue_push(&p->infer_q, s) ? 1 : -1);
    if (pushed < 0) break;
    if (pushed == 0) {
      p->dropped++;
      continue;
    }
    s = NULL;
  }
  video_queue_close(&p->infer_q);
  return NULL;
}

static void infer_stage(pipeline *p) {
  video_slot *s;
  while ((s = video_queue_pop(&p->infer_q))) {
    double t0 = now_ms();
    kiln_error e;
    kiln_status st = kiln_detector_run(p->det, &s->image, p->opt->norm, s->boxes, p->max_boxes,
                                       &s->n_boxes, &s->timing, &e);
    if (st != KILN_OK) {
      fail(p, st, &e);
      break;
    }
    p->infer_ms += now_ms() - t0;
    p->inferred++;
    if (!video_queue_push(&p->encode_q, s)) break;
  }
  video_queue_close(&p->encode_q);
}

static bool record_latency(pipeline *p, double ms) {
  if (p->frames == p->latency_cap) {
    int64_t cap = p->latency_cap ? p->latency_cap * 2 : 256;
    double *l = kiln_realloc(p->latency, (size_t)cap * sizeof *l);
    if (!l) return false;
    p->latency = l;
    p->latency_cap = cap;
  }
  p->latency[p->frames] = ms;
  return true;
}

static void *encode_stage(void *arg) {
  pipeline *p = arg;
  video_slot *s;
  while ((s = video_queue_pop(&p->encode_q))) {
    double t0 = now_ms();
    if (p->out) {
      kiln_video_draw_boxes(&s->image, s->boxes, s->n_boxes, p->opt->labels);
      kiln_error e;
      kiln_status st = video_output_write(p->out, &s->image, s->pts, &e);
      if (st != KILN_OK) {
        fail(p, st, &e);
        break;
      }
    }
    double t1 = now_ms();
    kiln_video_frame f = {.index = s->index, .time_s = s->time_s, .image = &s->image,
                          .boxes = s->boxes, .n_boxes = s->n_boxes, .timing = s->timing,
                          .decode_ms = s->decode_ms, .encode_ms = t1 - t0,
                          .latency_ms = t1 - s->t_decoded};
    if (!record_latency(p, f.latency_ms)) {
      kiln_error e;
      fail(p, kiln_fail(&e, KILN_ERR_NOMEM, "video: out of memory for frame statistics"), &e);
      break;
    }
    p->encode_ms += f.encode_ms;
    p->frames++;
    bool go_on = !p->on_frame || p->on_frame(&f, p->user);
    p->t_last = now_ms();
    if (!go_on) {
      abort_all(p);
      break;
    }
    video_queue_push(&p->free_q, s);
  }
  return NULL;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* The q-quantile of sorted v[0..n-1], interpolating between ranks. */
static double quantile(const double *v, int64_t n, double q) {
  if (n == 0) return 0.0;
  double pos = q * (double)(n - 1);
  int64_t lo = (int64_t)pos;
  int64_t hi = lo + 1 < n ? lo + 1 : lo;
  return v[lo] + (v[hi] - v[lo]) * (pos - (double)lo);
}

static void fill_stats(pipeline *p, kiln_video_stats *st) {
  st->frames = p->frames;
  st->frames_dropped = p->dropped;
  st->wall_ms = p->frames > 0 ? p->t_last - p->t_start : 0.0;
  st->fps = st->wall_ms > 0 ? (double)p->frames * 1e3 / st->wall_ms : 0.0;
  qsort(p->latency, (size_t)p->frames, sizeof *p->latency, cmp_double);
  st->latency_median_ms = quantile(p->latency, p->frames, 0.5);
  st->latency_p90_ms = quantile(p->latency, p->frames, 0.9);
  st->decode_ms = p->decoded > 0 ? p->decode_ms / (double)p->decoded : 0.0;
  st->infer_ms = p->inferred > 0 ? p->infer_ms / (double)p->inferred : 0.0;
  st->encode_ms = p->frames > 0 ? p->encode_ms / (double)p->frames : 0.0;
}

/* Allocates the slots' boxes and the queues, with every slot free. */
static kiln_status pipeline_init(pipeline *p, kiln_error *err) {
  kiln_status s;
  if ((s = video_queue_init(&p->free_q, VIDEO_SLOTS, err)) != KILN_OK ||
      (s = video_queue_init(&p->infer_q, VIDEO_QUEUE_DEPTH, err)) != KILN_OK ||
      (s = video_queue_init(&p->encode_q, VIDEO_QUEUE_DEPTH, err)) != KILN_OK)
    return s;
  for (int i = 0; i < VIDEO_SLOTS; i++) {
    p->slots[i].boxes = kiln_calloc((size_t)p->max_boxes, sizeof(kiln_box));
    if (!p->slots[i].boxes) return kiln_fail(err, KILN_ERR_NOMEM, "video: out of memory");
    video_queue_push(&p->free_q, &p->slots[i]);
  }
  return KILN_OK;
}

static void pipeline_free(pipeline *p) {
  for (int i = 0; i < VIDEO_SLOTS; i++) {
    kiln_image_free(&p->slots[i].image);
    kiln_free(p->slots[i].boxes);
  }
  video_queue_destroy(&p->free_q);
  video_queue_destroy(&p->infer_q);
  video_queue_destroy(&p->encode_q);
  video_output_discard(p->out);
  video_input_close(p->in);
  kiln_free(p->latency);
  pthread_mutex_destroy(&p->mu);
  kiln_free(p);
}

/* Runs the three stages to the end; the result is in p->status. */
static void run_stages(pipeline *p) {
  pthread_t decoder, encoder;
  kiln_error e;
  p->t_start = now_ms();
  if (pthread_create(&decoder, NULL, decode_stage, p) != 0) {
    fail(p, kiln_fail(&e, KILN_ERR_NOMEM, "video: cannot start the decoding thread"), &e);
    return;
  }
  if (pthread_create(&encoder, NULL, encode_stage, p) != 0) {
    fail(p, kiln_fail(&e, KILN_ERR_NOMEM, "video: cannot start the encoding thread"), &e);
    pthread_join(decoder, NULL);
    return;
  }
  infer_stage(p);
  pthread_join(decoder, NULL);
  pthread_join(encoder, NULL);
}

kiln_status kiln_video_detect(kiln_detector *det, const char *input,
                              const kiln_video_options *options, kiln_video_frame_fn on_frame,
                              void *user, kiln_video_stats *stats, kiln_error *err) {
  static const kiln_video_options no_options;
  kiln_video_stats st = {0};
  if (stats) *stats = st;
  const kiln_video_options *opt = options ? options : &no_options;
  if (opt->max_frames < 0 || opt->max_boxes < 0)
    return kiln_fail(err, KILN_ERR_INVALID_ARG, "video: negative max_frames or max_boxes");
  pipeline *p = kiln_calloc(1, sizeof *p);
  if (!p) return kiln_fail(err, KILN_ERR_NOMEM, "video: out of memory");
  p->det = det;
  p->opt = opt;
  p->on_frame = on_frame;
  p->user = user;
  p->max_boxes = opt->max_boxes ? opt->max_boxes : VIDEO_DEFAULT_BOXES;
  pthread_mutex_init(&p->mu, NULL);

  video_input_info info;
  kiln_status s = video_input_open(input, &p->in, &info, err);
  if (s == KILN_OK) {
    st.width = info.width;
    st.height = info.height;
    st.stream_fps = info.fps_num > 0 ? (double)info.fps_num / info.fps_den : 0.0;
    st.frames_declared = info.frames_declared;
    p->time_base = (double)info.time_base_num / info.time_base_den;
    p->drop_late = opt->drop_late || info.live;
    if (opt->output)
      s = video_output_open(opt->output, info.width, info.height, info.time_base_num,
                            info.time_base_den, info.fps_num, info.fps_den, &p->out, st.encoder, err);
  }
  if (s == KILN_OK) s = pipeline_init(p, err);
  if (s == KILN_OK) {
    run_stages(p);
    fill_stats(p, &st);
    s = p->status;
    if (s != KILN_OK && err) *err = p->err;
  }
  if (s == KILN_OK && p->out && p->frames > 0) { /* else discarded: a video of no frames */
    video_output *out = p->out;
    p->out = NULL;
    s = video_output_finish(out, err);
  }
  if (s == KILN_OK && p->input_status != KILN_OK) {
    s = p->input_status;
    if (err) *err = p->input_err;
  }
  if (s == KILN_OK && p->frames == 0)
    s = kiln_fail(err, KILN_ERR_FORMAT, "%s: no frame could be decoded", input);
  if (stats) *stats = st;
  pipeline_free(p);
  return s;
}
