/*
 * FFmpeg input and output for kiln_video_detect (vision/video_int.h).
 *
 * Input: libavformat demuxes a file, or a V4L2 camera through libavdevice's
 * video4linux2 input; libavcodec decodes the best video stream (one
 * thread); libswscale converts each frame to RGB24 at the stream's size
 * (honouring BT.709 and full-range tags). A read error, a packet the
 * demuxer marks corrupt, or a decode error ends the input: the decoder is
 * drained first, so every frame it holds is still delivered, then the error
 * is returned.
 *
 * Output: libswscale converts RGB24 to YUV 4:2:0 (BT.601, limited range, as
 * tagged), libx264 (preset veryfast, tune zerolatency: no lookahead and no
 * B-frames, so each frame's packet is ready when its encode returns) or else
 * the MPEG-4 part 2 encoder, and the muxer chosen from the file name. The
 * file is written under a temporary name and renamed when complete.
 *
 * libav logs through a callback installed once: nothing is printed, and the
 * last error line of each thread is kept to enrich kiln's messages.
 */
#include <errno.h>
#include <libavcodec/avcodec.h>
#include <libavdevice/avdevice.h>
#include <libavformat/avformat.h>
#include <libavutil/opt.h>
#include <libavutil/pixdesc.h>
#include <libswscale/swscale.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "vision/video_int.h"

/* ---- libav logging and errors ---- */

static _Thread_local char av_last_line[256];
static pthread_once_t av_once = PTHREAD_ONCE_INIT;

static void av_log_keep_errors(void *avcl, int level, const char *fmt, va_list vl) {
  if (level > AV_LOG_ERROR) return;
  char line[sizeof av_last_line];
  int print_prefix = 0;
  av_log_format_line2(avcl, level, fmt, vl, line, sizeof line, &print_prefix);
  size_t n = strlen(line);
  while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r' || line[n - 1] == ' ')) line[--n] = '\0';
  if (n > 0) memcpy(av_last_line, line, n + 1);
}

static void av_setup(void) {
  av_log_set_callback(av_log_keep_errors);
  avdevice_register_all();
}

static kiln_status status_of(int averr) {
  if (averr == AVERROR(ENOMEM)) return KILN_ERR_NOMEM;
  if (averr == AVERROR_INVALIDDATA || averr == AVERROR_EOF) return KILN_ERR_FORMAT;
  if (averr == AVERROR_DECODER_NOT_FOUND || averr == AVERROR_ENCODER_NOT_FOUND ||
      averr == AVERROR_PATCHWELCOME)
    return KILN_ERR_UNSUPPORTED;
  return KILN_ERR_IO;
}

/* "<formatted>: <libav's reason> (<libav's last error line>)", status from
 * averr unless status is given (not KILN_OK). */
static kiln_status av_fail(kiln_error *err, kiln_status status, int averr, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static kiln_status av_fail(kiln_error *err, kiln_status status, int averr, const char *fmt, ...) {
  char what[KILN_ERROR_MSG_MAX], reason[128];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  av_strerror(averr, reason, sizeof reason);
  bool detail = av_last_line[0] && strcmp(av_last_line, reason) != 0;
  return kiln_fail(err, status != KILN_OK ? status : status_of(averr), "%s: %s%s%s%s", what,
                   reason, detail ? " (" : "", detail ? av_last_line : "", detail ? ")" : "");
}

/* ---- Input ---- */

struct video_input {
  char *path;
  AVFormatContext *fmt;
  AVCodecContext *dec;
  AVPacket *pkt;
  AVFrame *frame;
  struct SwsContext *sws;
  int stream;
  int32_t width, height;
  int64_t frames;                 /* delivered so far */
  int64_t first_pts, last_pts, frame_ticks;
  bool draining;                  /* the decoder was sent end of stream */
  int pending;                    /* libav error to return once drained, or 0 */
  const char *pending_what;       /* what it was */
  char pending_detail[sizeof av_last_line]; /* libav's last error line then */
  int sws_key[5];                 /* source w, h, format, colorspace, range */
};

static bool is_v4l2_path(const char *path) { return strncmp(path, "/dev/video", 10) == 0; }

static kiln_status input_open(video_input *in, const char *path, video_input_info *info,
                              kiln_error *err) {
  const AVInputFormat *ifmt = NULL;
  if (is_v4l2_path(path) && !(ifmt = av_find_input_format("video4linux2")))
    return kiln_fail(err, KILN_ERR_UNSUPPORTED, "%s: libavdevice has no video4linux2 input", path);
  int r = avformat_open_input(&in->fmt, path, ifmt, NULL);
  if (r == AVERROR_INVALIDDATA) return av_fail(err, KILN_ERR_FORMAT, r, "%s: not a recognised video", path);
  if (r < 0) return av_fail(err, KILN_OK, r, "%s: cannot open", path);
  /* A guess libavformat itself calls a possible misdetection (an .nfo
   * text file as ANSI art) is not taken for a video. */
  if (!ifmt && in->fmt->probe_score <= AVPROBE_SCORE_RETRY)
    return kiln_fail(err, KILN_ERR_FORMAT,
                     "%s: not a recognised video (libavformat's best guess, %s, has confidence "
                     "%d/100)", path, in->fmt->iformat->name, in->fmt->probe_score);
  if ((r = avformat_find_stream_info(in->fmt, NULL)) < 0)
    return av_fail(err, KILN_ERR_FORMAT, r, "%s: cannot read the stream parameters", path);
  in->stream = av_find_best_stream(in->fmt, AVMEDIA_TYPE_VIDEO, -1, -1, NULL, 0);
  if (in->stream < 0)
    return kiln_fail(err, KILN_ERR_FORMAT, "%s: no video stream (%s)", path, in->fmt->iformat->name);
  AVStream *st = in->fmt->streams[in->stream];
  const AVCodec *codec = avcodec_find_decoder(st->codecpar->codec_id);
  if (!codec)
    return kiln_fail(err, KILN_ERR_UNSUPPORTED, "%s: no decoder for %s video", path,
                     avcodec_get_name(st->codecpar->codec_id));
  in->width = st->codecpar->width;
  in->height = st->codecpar->height;
  if (in->width < 1 || in->height < 1)
    return kiln_fail(err, KILN_ERR_FORMAT, "%s: the video stream has no frame size", path);
  if ((uint64_t)in->width * (uint64_t)in->height > KILN_IMAGE_DEFAULT_MAX_PIXELS)
    return kiln_fail(err, KILN_ERR_LIMIT, "%s: %dx%d frames are over the limit of %u pixels", path,
                     (int)in->width, (int)in->height, KILN_IMAGE_DEFAULT_MAX_PIXELS);
  if (!(in->dec = avcodec_alloc_context3(codec)) || !(in->pkt = av_packet_alloc()) ||
      !(in->frame = av_frame_alloc()))
    return kiln_fail(err, KILN_ERR_NOMEM, "%s: out of memory", path);
  if ((r = avcodec_parameters_to_context(in->dec, st->codecpar)) < 0)
    return av_fail(err, KILN_OK, r, "%s: decoder parameters", path);
  in->dec->thread_count = 1;
  in->dec->pkt_timebase = st->time_base;
  if ((r = avcodec_open2(in->dec, codec, NULL)) < 0)
    return av_fail(err, KILN_ERR_UNSUPPORTED, r, "%s: cannot open the %s decoder", path, codec->name);

  AVRational fr = av_guess_frame_rate(in->fmt, st, NULL);
  bool has_rate = fr.num > 0 && fr.den > 0;
  in->frame_ticks = av_rescale_q(1, has_rate ? av_inv_q(fr) : (AVRational){1, 25}, st->time_base);
  if (in->frame_ticks < 1) in->frame_ticks = 1;
  *info = (video_input_info){
      .width = in->width,
      .height = in->height,
      .fps_num = has_rate ? fr.num : 0,
      .fps_den = has_rate ? fr.den : 1,
      .frames_declared = st->nb_frames > 0 ? st->nb_frames : 0,
      .time_base_num = st->time_base.num,
      .time_base_den = st->time_base.den,
      .live = ifmt != NULL,
  };
  return KILN_OK;
}

kiln_status video_input_open(const char *path, video_input **out, video_input_info *info,
                             kiln_error *err) {
  pthread_once(&av_once, av_setup);
  av_last_line[0] = '\0';
  *out = NULL;
  video_input *in = kiln_calloc(1, sizeof *in);
  if (!in || !(in->path = kiln_strdup(path))) {
    kiln_free(in);
    return kiln_fail(err, KILN_ERR_NOMEM, "%s: out of memory", path);
  }
  kiln_status s = input_open(in, path, info, err);
  if (s != KILN_OK) {
    video_input_close(in);
    return s;
  }
  *out = in;
  return KILN_OK;
}

/* libswscale's SIMD code reads (and may write) whole vectors past the end
 * of a row, so frame buffers get this much more than their rows. */
#define SWS_PADDING 64

/* Converts in->frame to RGB24 at the stream's size into img. */
static kiln_status to_rgb(video_input *in, kiln_image *img, kiln_error *err) {
  const AVFrame *f = in->frame;
  if (!img->pixels) {
    size_t stride = (size_t)in->width * 3;
    *img = (kiln_image){.width = in->width, .height = in->height, .stride = stride,
                        .format = KILN_IMAGE_RAW, .orientation = 1,
                        .source_width = in->width, .source_height = in->height};
    img->pixels = kiln_malloc(stride * (size_t)in->height + SWS_PADDING);
    if (!img->pixels) return kiln_fail(err, KILN_ERR_NOMEM, "%s: out of memory for a frame", in->path);
  }
  in->sws = sws_getCachedContext(in->sws, f->width, f->height, (enum AVPixelFormat)f->format,
                                 in->width, in->height, AV_PIX_FMT_RGB24, SWS_BILINEAR, NULL,
                                 NULL, NULL);
  if (!in->sws)
    return kiln_fail(err, KILN_ERR_UNSUPPORTED, "%s: cannot convert %dx%d %s frames to RGB",
                     in->path, f->width, f->height,
                     av_get_pix_fmt_name((enum AVPixelFormat)f->format));
  int key[5] = {f->width, f->height, f->format, f->colorspace, f->color_range};
  const AVPixFmtDescriptor *desc = av_pix_fmt_desc_get((enum AVPixelFormat)f->format);
  if (memcmp(key, in->sws_key, sizeof key) != 0 && desc && !(desc->flags & AV_PIX_FMT_FLAG_RGB)) {
    /* Keep libswscale's defaults (BT.601; full range for yuvj formats)
     * unless the frame says otherwise. */
    int *inv_table, *table, src_range, dst_range, brightness, contrast, saturation;
    if (sws_getColorspaceDetails(in->sws, &inv_table, &src_range, &table, &dst_range, &brightness,
                                 &contrast, &saturation) >= 0) {
      const int *coefs = f->colorspace == AVCOL_SPC_BT709 ? sws_getCoefficients(SWS_CS_ITU709) : inv_table;
      if (f->color_range != AVCOL_RANGE_UNSPECIFIED) src_range = f->color_range == AVCOL_RANGE_JPEG;
      sws_setColorspaceDetails(in->sws, coefs, src_range, table, dst_range, brightness, contrast,
                               saturation);
    }
  }
  memcpy(in->sws_key, key, sizeof key);
  uint8_t *dst[4] = {img->pixels, NULL, NULL, NULL};
  int dst_stride[4] = {(int)img->stride, 0, 0, 0};
  sws_scale(in->sws, (const uint8_t *const *)f->data, f->linesize, 0, f->height, dst, dst_stride);
  return KILN_OK;
}

/* Remembers the error that ends the input and starts draining. */
static void end_early(video_input *in, int averr, const char *what) {
  in->pending = averr;
  in->pending_what = what;
  memcpy(in->pending_detail, av_last_line, sizeof av_last_line);
  in->draining = true;
  avcodec_send_packet(in->dec, NULL);
}

kiln_status video_input_read(video_input *in, kiln_image *img, int64_t *pts, bool *end,
                             kiln_error *err) {
  *end = false;
  av_last_line[0] = '\0';
  for (;;) {
    int r = avcodec_receive_frame(in->dec, in->frame);
    if (r == 0) {
      kiln_status s = to_rgb(in, img, err);
      int64_t p = in->frame->best_effort_timestamp;
      av_frame_unref(in->frame);
      if (s != KILN_OK) return s;
      if (p == AV_NOPTS_VALUE) p = in->frames == 0 ? 0 : in->last_pts + in->frame_ticks;
      if (in->frames == 0) in->first_pts = p;
      in->last_pts = p;
      *pts = p - in->first_pts;
      in->frames++;
      return KILN_OK;
    }
    if (r == AVERROR_EOF) {
      if (in->pending == 0) {
        *end = true;
        return KILN_OK;
      }
      memcpy(av_last_line, in->pending_detail, sizeof av_last_line);
      return av_fail(err, KILN_ERR_FORMAT, in->pending, "%s: truncated or corrupt after %lld frames: %s",
                     in->path, (long long)in->frames, in->pending_what);
    }
    if (r != AVERROR(EAGAIN))
      return av_fail(err, KILN_ERR_FORMAT, r, "%s: truncated or corrupt after %lld frames: decode error",
                     in->path, (long long)in->frames);
    if (in->draining) /* cannot happen: a drained decoder ends with EOF */
      return kiln_fail(err, KILN_ERR_INTERNAL, "%s: the decoder wants input after the end", in->path);
    r = av_read_frame(in->fmt, in->pkt);
    if (r == AVERROR_EOF) {
      in->draining = true;
      avcodec_send_packet(in->dec, NULL);
      continue;
    }
    if (r < 0) {
      end_early(in, r, "read error");
      continue;
    }
    if (in->pkt->stream_index != in->stream) {
      av_packet_unref(in->pkt);
      continue;
    }
    if (in->pkt->flags & AV_PKT_FLAG_CORRUPT) {
      av_packet_unref(in->pkt);
      end_early(in, AVERROR_INVALIDDATA, "corrupt packet");
      continue;
    }
    r = avcodec_send_packet(in->dec, in->pkt);
    av_packet_unref(in->pkt);
    if (r < 0) end_early(in, r, "undecodable packet");
  }
}

void video_input_close(video_input *in) {
  if (!in) return;
  sws_freeContext(in->sws);
  av_frame_free(&in->frame);
  av_packet_free(&in->pkt);
  avcodec_free_context(&in->dec);
  avformat_close_input(&in->fmt);
  kiln_free(in->path);
  kiln_free(in);
}

/* ---- Output ---- */

struct video_output {
  char *path, *tmp_path;
  AVFormatContext *fmt;
  AVCodecContext *enc;
  AVStream *st;
  AVFrame *frame;
  AVPacket *pkt;
  struct SwsContext *sws;
  AVRational in_tb;
  int64_t last_pts;
  bool any_frame;
  bool file_open; /* pb is open */
  bool created;   /* tmp_path exists */
};

static void output_free(video_output *o) {
  if (o->file_open) avio_closep(&o->fmt->pb);
  sws_freeContext(o->sws);
  av_packet_free(&o->pkt);
  av_frame_free(&o->frame);
  avcodec_free_context(&o->enc);
  avformat_free_context(o->fmt);
  kiln_free(o->path);
  kiln_free(o->tmp_path);
  kiln_free(o);
}

static const AVCodec *choose_encoder(const AVOutputFormat *of) {
  const AVCodec *c = avcodec_find_encoder_by_name("libx264");
  if (c && avformat_query_codec(of, AV_CODEC_ID_H264, FF_COMPLIANCE_NORMAL) != 0) return c;
  return avcodec_find_encoder(AV_CODEC_ID_MPEG4);
}

/* A time base for the encoder: the input's when MPEG-4 part 2 can code it
 * (denominator below 2^16), else one tick per nominal frame, else 1 ms. */
static AVRational encoder_time_base(AVRational in_tb, AVRational fps) {
  if (in_tb.den > 0 && in_tb.den < 65536) return in_tb;
  if (fps.num > 0 && fps.num < 65536) return av_inv_q(fps);
  return (AVRational){1, 1000};
}

static kiln_status setup_encoder(video_output *o, const AVCodec *codec, int32_t width,
                                 int32_t height, AVRational fps, kiln_error *err) {
  AVCodecContext *e = o->enc;
  e->width = width & ~1;
  e->height = height & ~1;
  e->pix_fmt = AV_PIX_FMT_YUV420P;
  e->color_range = AVCOL_RANGE_MPEG;
  e->colorspace = AVCOL_SPC_SMPTE170M;
  e->time_base = encoder_time_base(o->in_tb, fps);
  if (fps.num > 0) e->framerate = fps;
  e->thread_count = 1;
  if (o->fmt->oformat->flags & AVFMT_GLOBALHEADER) e->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
  if (strcmp(codec->name, "libx264") == 0) {
    av_opt_set(e->priv_data, "preset", "veryfast", 0);
    av_opt_set(e->priv_data, "tune", "zerolatency", 0);
  } else {
    e->flags |= AV_CODEC_FLAG_QSCALE;
    e->global_quality = FF_QP2LAMBDA * 3;
    e->max_b_frames = 0;
  }
  int r = avcodec_open2(e, codec, NULL);
  if (r < 0) return av_fail(err, KILN_ERR_UNSUPPORTED, r, "%s: cannot open the %s encoder", o->path, codec->name);
  if (!(o->st = avformat_new_stream(o->fmt, NULL)))
    return kiln_fail(err, KILN_ERR_NOMEM, "%s: out of memory", o->path);
  if ((r = avcodec_parameters_from_context(o->st->codecpar, e)) < 0)
    return av_fail(err, KILN_OK, r, "%s: encoder parameters", o->path);
  o->st->time_base = e->time_base;
  if (fps.num > 0) o->st->avg_frame_rate = fps;
  o->frame->format = e->pix_fmt;
  o->frame->width = e->width;
  o->frame->height = e->height;
  if ((r = av_frame_get_buffer(o->frame, 0)) < 0) return av_fail(err, KILN_OK, r, "%s: frame buffer", o->path);
  o->sws = sws_getContext(width, height, AV_PIX_FMT_RGB24, e->width, e->height, AV_PIX_FMT_YUV420P,
                          SWS_BILINEAR, NULL, NULL, NULL);
  if (!o->sws) return kiln_fail(err, KILN_ERR_NOMEM, "%s: cannot set up the RGB to YUV conversion", o->path);
  return KILN_OK;
}

static kiln_status output_open(video_output *o, const AVOutputFormat *of, const AVCodec *codec,
                               int32_t width, int32_t height, AVRational fps, kiln_error *err) {
  int r = avformat_alloc_output_context2(&o->fmt, of, NULL, o->tmp_path);
  if (r < 0) return av_fail(err, KILN_OK, r, "%s: output context", o->path);
  if (!(o->enc = avcodec_alloc_context3(codec)) || !(o->frame = av_frame_alloc()) ||
      !(o->pkt = av_packet_alloc()))
    return kiln_fail(err, KILN_ERR_NOMEM, "%s: out of memory", o->path);
  kiln_status s = setup_encoder(o, codec, width, height, fps, err);
  if (s != KILN_OK) return s;
  if (!(of->flags & AVFMT_NOFILE)) {
    if ((r = avio_open(&o->fmt->pb, o->tmp_path, AVIO_FLAG_WRITE)) < 0)
      return av_fail(err, KILN_ERR_IO, r, "%s: cannot create", o->tmp_path);
    o->file_open = o->created = true;
  }
  if ((r = avformat_write_header(o->fmt, NULL)) < 0)
    return av_fail(err, KILN_ERR_IO, r, "%s: cannot write the header", o->path);
  return KILN_OK;
}

kiln_status video_output_open(const char *path, int32_t width, int32_t height, int32_t tb_num,
                              int32_t tb_den, int32_t fps_num, int32_t fps_den,
                              video_output **out, char encoder[32], kiln_error *err) {
  pthread_once(&av_once, av_setup);
  av_last_line[0] = '\0';
  *out = NULL;
  encoder[0] = '\0';
  if (width < 2 || height < 2)
    return kiln_fail(err, KILN_ERR_UNSUPPORTED, "%s: cannot encode %dx%d frames", path, (int)width,
                     (int)height);
  const AVOutputFormat *of = av_guess_format(NULL, path, NULL);
  if (!of)
    return kiln_fail(err, KILN_ERR_UNSUPPORTED,
                     "%s: no container for this file name (use .mp4, .mkv, .avi, ...)", path);
  const AVCodec *codec = choose_encoder(of);
  if (!codec) return kiln_fail(err, KILN_ERR_UNSUPPORTED, "%s: libavcodec has no H.264 or MPEG-4 encoder", path);
  video_output *o = kiln_calloc(1, sizeof *o);
  size_t n = strlen(path) + sizeof ".partial";
  if (!o || !(o->path = kiln_strdup(path)) || !(o->tmp_path = kiln_malloc(n))) {
    if (o) output_free(o);
    return kiln_fail(err, KILN_ERR_NOMEM, "%s: out of memory", path);
  }
  snprintf(o->tmp_path, n, "%s.partial", path);
  o->in_tb = (AVRational){tb_num, tb_den};
  kiln_status s = output_open(o, of, codec, width, height, (AVRational){fps_num, fps_den}, err);
  if (s != KILN_OK) {
    video_output_discard(o);
    return s;
  }
  snprintf(encoder, 32, "%s", codec->name);
  *out = o;
  return KILN_OK;
}

/* Writes every packet the encoder has ready. */
static kiln_status drain(video_output *o, kiln_error *err) {
  for (;;) {
    int r = avcodec_receive_packet(o->enc, o->pkt);
    if (r == AVERROR(EAGAIN) || r == AVERROR_EOF) return KILN_OK;
    if (r < 0) return av_fail(err, KILN_ERR_IO, r, "%s: encoding failed", o->path);
    av_packet_rescale_ts(o->pkt, o->enc->time_base, o->st->time_base);
    o->pkt->stream_index = o->st->index;
    if ((r = av_interleaved_write_frame(o->fmt, o->pkt)) < 0)
      return av_fail(err, KILN_ERR_IO, r, "%s: cannot write", o->path);
  }
}

kiln_status video_output_write(video_output *o, const kiln_image *img, int64_t pts,
                               kiln_error *err) {
  av_last_line[0] = '\0';
  int r = av_frame_make_writable(o->frame);
  if (r < 0) return av_fail(err, KILN_OK, r, "%s: frame buffer", o->path);
  const uint8_t *src[4] = {img->pixels, NULL, NULL, NULL};
  int src_stride[4] = {(int)img->stride, 0, 0, 0};
  sws_scale(o->sws, src, src_stride, 0, img->height, o->frame->data, o->frame->linesize);
  int64_t p = av_rescale_q(pts, o->in_tb, o->enc->time_base);
  if (o->any_frame && p <= o->last_pts) p = o->last_pts + 1;
  o->frame->pts = p;
  o->last_pts = p;
  o->any_frame = true;
  if ((r = avcodec_send_frame(o->enc, o->frame)) < 0)
    return av_fail(err, KILN_ERR_IO, r, "%s: encoding failed", o->path);
  return drain(o, err);
}

kiln_status video_output_finish(video_output *o, kiln_error *err) {
  av_last_line[0] = '\0';
  int r = avcodec_send_frame(o->enc, NULL);
  kiln_status s = r < 0 ? av_fail(err, KILN_ERR_IO, r, "%s: flushing the encoder", o->path) : drain(o, err);
  if (s == KILN_OK && (r = av_write_trailer(o->fmt)) < 0)
    s = av_fail(err, KILN_ERR_IO, r, "%s: cannot write the trailer", o->path);
  if (s == KILN_OK && o->file_open) {
    o->file_open = false;
    if ((r = avio_closep(&o->fmt->pb)) < 0) s = av_fail(err, KILN_ERR_IO, r, "%s: cannot write", o->path);
  }
  if (s == KILN_OK && o->created && rename(o->tmp_path, o->path) != 0)
    s = kiln_fail(err, KILN_ERR_IO, "%s: cannot rename %s into place: %s", o->path, o->tmp_path,
                  strerror(errno));
  if (s != KILN_OK) {
    video_output_discard(o);
    return s;
  }
  output_free(o);
  return KILN_OK;
}

void video_output_discard(video_output *o) {
  if (!o) return;
  bool created = o->created;
  char *tmp = o->tmp_path;
  o->tmp_path = NULL;
  output_free(o);
  if (created && tmp) remove(tmp);
  kiln_free(tmp);
}
