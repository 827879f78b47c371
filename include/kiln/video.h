/*
 * kiln/video.h: detection on video files and V4L2 cameras, optionally
 * writing the video back with the boxes drawn. Decoding, inference and
 * encoding run on three threads joined by bounded queues, so throughput
 * approaches that of the slowest stage. Built on FFmpeg's libraries
 * (libavformat, libavcodec, libswscale, libavutil, libavdevice).
 *
 *   static bool on_frame(const kiln_video_frame *f, void *user) {
 *     printf("frame %lld: %d boxes\n", (long long)f->index, (int)f->n_boxes);
 *     return true;                        // false stops early (not an error)
 *   }
 *   kiln_video_options opt = {.output = "out.mp4", .labels = labels};
 *   kiln_video_stats stats;
 *   kiln_status s = kiln_video_detect(det, "clip.mp4", &opt, on_frame, NULL, &stats, &err);
 *   // stats.frames were processed even when s != KILN_OK (input cut short)
 *
 * libav's own log lines are kept off stderr: on first use kiln installs an
 * av_log callback that drops them and keeps the last error line of each
 * thread for kiln's error messages.
 */
#ifndef KILN_VIDEO_H
#define KILN_VIDEO_H

#include <stdbool.h>
#include <stdint.h>

#include "kiln/base.h"
#include "kiln/image.h"
#include "kiln/vision.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kiln_video_options {
  /* The video to write (its container is chosen from the name: .mp4, .mkv,
   * ...), H.264 (libx264) when libavcodec has it, else MPEG-4 part 2. It is
   * written under a temporary name and renamed when complete. NULL: none. */
  const char *output;
  /* Names drawn next to the boxes (NULL: "class N"). Used only for output. */
  const kiln_labels *labels;
  /* Input normalization (NULL: kiln_image_norm_for_input). */
  const kiln_image_norm *norm;
  /* Stop after this many frames decoded (0: at the end of the input). */
  int64_t max_frames;
  /* At most this many boxes per frame (0: 20). */
  int32_t max_boxes;
  /* Drop a decoded frame when detection is still busy with earlier ones
   * (its queue is full) instead of waiting: latency stays bounded when the
   * input comes faster than frames can be detected. Always on for V4L2
   * cameras, whose unread frames would otherwise pile up in the driver. */
  bool drop_late;
} kiln_video_options;

/* One processed frame, as handed to the callback. Pointers are valid only
 * during the call. */
typedef struct kiln_video_frame {
  int64_t index;           /* 0, 1, ... in presentation order (gaps: dropped) */
  double time_s;           /* presentation time since the first frame */
  const kiln_image *image; /* the RGB frame (boxes drawn when writing output) */
  const kiln_box *boxes;   /* best first, in the frame's pixels */
  int32_t n_boxes;
  kiln_vision_timing timing; /* of kiln_detector_run */
  double decode_ms;        /* demux + decode + conversion to RGB */
  double encode_ms;        /* drawing + conversion + encoding (0 without output) */
  double latency_ms;       /* from leaving the decoder to its encode finishing */
} kiln_video_frame;

/* Called once per frame, in order, from the pipeline's last thread (one
 * call at a time). Return false to stop: frames still in flight are dropped,
 * the output is completed, and kiln_video_detect returns KILN_OK. */
typedef bool (*kiln_video_frame_fn)(const kiln_video_frame *frame, void *user);

typedef struct kiln_video_stats {
  int32_t width, height; /* of the frames (the input stream's size) */
  double stream_fps;     /* the input's nominal frame rate, 0 if unknown */
  /* Frames the container's index lists, 0 if none. Only a hint (for
   * progress): an edit list can hide some of them. */
  int64_t frames_declared;
  char encoder[32];      /* "libx264", "mpeg4", or "" without output */
  int64_t frames;        /* frames processed: detected, encoded, reported */
  int64_t frames_dropped; /* decoded but dropped (drop_late) */
  double wall_ms;        /* from the first read to the last frame's report */
  double fps;            /* frames / wall time */
  double latency_median_ms, latency_p90_ms; /* over the frames processed */
  /* Mean busy time per frame of each stage; the largest bounds the fps. */
  double decode_ms, infer_ms, encode_ms;
} kiln_video_stats;

/* Runs det on every frame of input: a file (any container and codec
 * libavformat/libavcodec read) or a V4L2 camera ("/dev/videoN", opened with
 * libavdevice's video4linux2 input). Frames are converted to RGB at the
 * stream's size, detected with kiln_detector_run and, when options->output
 * is set, drawn (kiln_video_draw_boxes) and encoded with timestamps taken
 * from the input (starting at 0). det must not be used elsewhere meanwhile.
 * options may be NULL (no output); stats may be NULL. On return *stats
 * describes the frames processed, whatever the status.
 * @retval KILN_ERR_IO      input or output cannot be opened (a missing
 *   camera: "/dev/video9: cannot open: No such file or directory"), or
 *   writing the output failed
 * @retval KILN_ERR_FORMAT  input is not a video libavformat recognises
 *   (a guess it calls a possible misdetection is refused), has no video
 *   stream or no
 *   decodable frame, or ends early: a read error, a packet the demuxer marks
 *   corrupt (a truncated file), or a decode error. Frames decoded before
 *   the error, including those still in the decoder, are processed and the
 *   output is completed with them; the message says how many
 *   ("clip.mp4: truncated or corrupt after 12 frames: ..."). A truncation
 *   that falls exactly between two packets looks like a clean end.
 * @retval KILN_ERR_UNSUPPORTED  no decoder for the stream, no encoder
 * @retval KILN_ERR_LIMIT   frames over KILN_IMAGE_DEFAULT_MAX_PIXELS
 * @retval KILN_ERR_NOMEM
 * Errors of kiln_detector_run stop the pipeline and are returned as they
 * are. Messages start with the input's or the output's name. */
kiln_status kiln_video_detect(kiln_detector *det, const char *input,
                              const kiln_video_options *options, kiln_video_frame_fn on_frame,
                              void *user, kiln_video_stats *stats, kiln_error *err);

/* The display name of a box's class (see kiln_box): its label from labels
 * (NULL allowed), else "class N" written into buf. */
const char *kiln_video_box_label(const kiln_labels *labels, int32_t class_id, char *buf,
                                 size_t cap);

/* Draws boxes (best on top) into img with "LABEL 0.87" tags, colour by
 * class, line width and text size scaled to the image. Cannot fail. */
void kiln_video_draw_boxes(kiln_image *img, const kiln_box *boxes, int32_t n,
                           const kiln_labels *labels);

#ifdef __cplusplus
}
#endif
#endif
