/*
 * vision/video_int.h: the pieces of kiln_video_detect (kiln/video.h).
 * video_queue.c: a bounded blocking queue joining the pipeline's threads.
 * video_io.c: FFmpeg input (demux + decode + RGB conversion) and output
 * (RGB -> YUV conversion + encode + mux). Each input or output object is
 * used by one thread at a time.
 */
#ifndef KILN_VIDEO_INT_H
#define KILN_VIDEO_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "kiln/video.h"

/* ---- Bounded queue of pointers ---- */

typedef struct video_queue {
  pthread_mutex_t mu;
  pthread_cond_t not_empty, not_full;
  void **items;
  int32_t capacity, head, count;
  bool closed;  /* no more pushes: pop drains, then returns NULL */
  bool aborted; /* push and pop return at once */
} video_queue;

kiln_status video_queue_init(video_queue *q, int32_t capacity, kiln_error *err);
void video_queue_destroy(video_queue *q);
/* Blocks while full. False (item not queued) once aborted. */
bool video_queue_push(video_queue *q, void *item);
/* Never blocks: 1 queued, 0 full (not queued), -1 aborted. */
int video_queue_try_push(video_queue *q, void *item);
/* Blocks while empty and open. NULL once aborted, or closed and empty. */
void *video_queue_pop(video_queue *q);
void video_queue_close(video_queue *q);
void video_queue_abort(video_queue *q);

/* ---- Input ---- */

typedef struct video_input video_input;

typedef struct video_input_info {
  int32_t width, height;
  int32_t fps_num, fps_den; /* nominal frame rate; 0/1 if unknown */
  int64_t frames_declared;  /* 0 if unknown */
  int32_t time_base_num, time_base_den; /* of frame pts */
  bool live;                /* a camera: frames come at its pace, not ours */
} video_input_info;

/* Opens a file or a V4L2 device ("/dev/video*") and its best video stream's
 * decoder. Errors as kiln_video_detect's for the input; on failure nothing
 * is left open. */
kiln_status video_input_open(const char *path, video_input **out, video_input_info *info,
                             kiln_error *err);
/* Decodes the next frame into img (allocated on first use, then reused:
 * width x height of info, with padding past the last row that
 * video_output_write needs; free with kiln_image_free), with its presentation time in the time base of
 * info (*pts; a frame without one gets the previous + one frame).
 * *end is set (KILN_OK) when the input ended cleanly. */
kiln_status video_input_read(video_input *in, kiln_image *img, int64_t *pts, bool *end,
                             kiln_error *err);
void video_input_close(video_input *in);

/* ---- Output ---- */

typedef struct video_output video_output;

/* Creates path's temporary sibling ("PATH.partial") and an encoder for
 * width x height frames whose pts count in tb_num/tb_den seconds;
 * fps_num/fps_den is the nominal rate (0/1 if unknown). *encoder gets the
 * encoder's name. On failure nothing is left behind. */
kiln_status video_output_open(const char *path, int32_t width, int32_t height, int32_t tb_num,
                              int32_t tb_den, int32_t fps_num, int32_t fps_den,
                              video_output **out, char encoder[32], kiln_error *err);
/* Encodes img (the size given at open, from video_input_read) at pts (strictly increasing; a pts
 * not above the last is moved one tick after it) and writes the packets
 * the encoder has ready. */
kiln_status video_output_write(video_output *o, const kiln_image *img, int64_t pts,
                               kiln_error *err);
/* Flushes the encoder, writes the trailer and renames the file into place.
 * Frees o whatever happens. */
kiln_status video_output_finish(video_output *o, kiln_error *err);
/* Frees o and removes its temporary file. NULL is fine. */
void video_output_discard(video_output *o);

#endif
