/*
 * vision/image_jpeg.c: JPEG decoding with libjpeg-turbo's libjpeg API.
 *
 * libjpeg reports fatal errors through error_exit, which by default prints
 * and exits; here it formats the message and longjmps back to the decode
 * function, which destroys the decompressor and frees what it allocated.
 * Warnings that mean pixel data is missing or garbled (the data ended
 * early, a marker cut an entropy segment short, a lost restart marker, an
 * invalid Huffman or arithmetic code) are fatal as well, so a truncated or
 * corrupt file is an error rather than an image with a grey or smeared
 * bottom. Other warnings (extraneous bytes between markers, common in camera
 * files; odd JFIF versions or progression scripts) are ignored.
 *
 * Everything that must survive a longjmp lives in a jpeg_job reached
 * through a pointer, so no local is modified between setjmp and longjmp.
 * libjpeg's own working memory comes from its allocator (malloc); the
 * pixels and row buffers from kiln_malloc.
 */
#include <setjmp.h>
#include <stdio.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>

#include "vision/image_int.h"

/* Progressive files are decoded scan by scan, and a hostile file can
 * repeat scans without end (libjpeg only warns), costing time with no
 * bound; real encoders write about ten. */
#define MAX_SCANS 1000

typedef struct jpeg_fail {
  struct jpeg_error_mgr pub; /* first: libjpeg sees a jpeg_error_mgr */
  jmp_buf jump;
  kiln_status status; /* set when a check of kiln's (not libjpeg's) fails */
  char msg[JMSG_LENGTH_MAX];
} jpeg_fail;

typedef struct jpeg_job {
  struct jpeg_decompress_struct cinfo;
  jpeg_fail fail;
  struct jpeg_progress_mgr progress;
  kiln_image img;
  uint8_t *cmyk_row; /* one row of 4-channel samples, for CMYK/YCCK files */
} jpeg_job;

static void on_error_exit(j_common_ptr cinfo) {
  jpeg_fail *fail = (jpeg_fail *)cinfo->err;
  fail->pub.format_message(cinfo, fail->msg);
  longjmp(fail->jump, 1);
}

static void on_emit_message(j_common_ptr cinfo, int level) {
  if (level >= 0) return; /* trace messages */
  int code = cinfo->err->msg_code;
  if (code == JWRN_JPEG_EOF || code == JWRN_HIT_MARKER || code == JWRN_MUST_RESYNC ||
      code == JWRN_HUFF_BAD_CODE || code == JWRN_ARITH_BAD_CODE)
    on_error_exit(cinfo);
  cinfo->err->num_warnings++;
}

static void on_output_message(j_common_ptr cinfo) { (void)cinfo; }

static void on_progress(j_common_ptr cinfo) {
  j_decompress_ptr d = (j_decompress_ptr)cinfo;
  if (d->input_scan_number <= MAX_SCANS) return;
  jpeg_fail *fail = (jpeg_fail *)cinfo->err;
  fail->status = KILN_ERR_LIMIT;
  snprintf(fail->msg, sizeof fail->msg, "more than %d progressive scans", MAX_SCANS);
  longjmp(fail->jump, 1);
}

/* What a libjpeg error means for the caller. */
static kiln_status status_of(const jpeg_fail *fail) {
  if (fail->status != KILN_OK) return fail->status;
  switch (fail->pub.msg_code) {
    case JERR_OUT_OF_MEMORY: return KILN_ERR_NOMEM;
    case JERR_CONVERSION_NOTIMPL: /* e.g. 2 components */
    case JERR_BAD_PRECISION:      /* 12-bit samples */
    case JERR_NOT_COMPILED:
    case JERR_SOF_UNSUPPORTED:    /* lossless, hierarchical */
      return KILN_ERR_UNSUPPORTED;
    default: return KILN_ERR_FORMAT;
  }
}

/* The orientation of the first APP1 Exif segment, 1 if none. */
static int32_t find_orientation(j_decompress_ptr cinfo) {
  for (jpeg_saved_marker_ptr m = cinfo->marker_list; m; m = m->next) {
    if (m->marker != JPEG_APP0 + 1) continue;
    if (m->data_length >= 6 && memcmp(m->data, "Exif\0\0", 6) == 0)
      return kiln_exif_orientation(m->data, m->data_length);
  }
  return 1;
}

/* CMYK to RGB. libjpeg hands back the stored values; Adobe's files (the
 * only common writer) store them inverted, i.e. 255 means no ink. */
static void cmyk_to_rgb(const uint8_t *cmyk, uint8_t *rgb, int32_t width, bool inverted) {
  for (int32_t x = 0; x < width; x++, cmyk += 4, rgb += 3) {
    uint32_t k = inverted ? cmyk[3] : 255u - cmyk[3];
    for (int c = 0; c < 3; c++) {
      uint32_t v = inverted ? cmyk[c] : 255u - cmyk[c];
      rgb[c] = (uint8_t)((v * k + 127) / 255);
    }
  }
}

/* Runs the decode; libjpeg errors longjmp out of here to kiln_jpeg_decode. */
static kiln_status decode(jpeg_job *job, const uint8_t *data, size_t size,
                          uint64_t max_pixels, kiln_error *err) {
  struct jpeg_decompress_struct *cinfo = &job->cinfo;
  jpeg_create_decompress(cinfo); /* zeroes all but cinfo->err */
  job->progress.progress_monitor = on_progress;
  cinfo->progress = &job->progress;
  jpeg_mem_src(cinfo, data, (unsigned long)size);
  jpeg_save_markers(cinfo, JPEG_APP0 + 1, 0xFFFF);
  jpeg_read_header(cinfo, TRUE);

  kiln_status st = kiln_image_check_size(cinfo->image_width, cinfo->image_height, max_pixels,
                                         err);
  if (st != KILN_OK) return st;
  int32_t orientation = find_orientation(cinfo);

  bool cmyk = cinfo->jpeg_color_space == JCS_CMYK || cinfo->jpeg_color_space == JCS_YCCK;
  cinfo->out_color_space = cmyk ? JCS_CMYK : JCS_RGB;
  jpeg_start_decompress(cinfo);
  int32_t width = (int32_t)cinfo->output_width, height = (int32_t)cinfo->output_height;
  if (cinfo->output_width != cinfo->image_width || cinfo->output_height != cinfo->image_height ||
      cinfo->output_components != (cmyk ? 4 : 3))
    return kiln_fail(err, KILN_ERR_INTERNAL, "JPEG decoder gave %ux%u with %d components",
                     cinfo->output_width, cinfo->output_height, cinfo->output_components);

  st = kiln_image_alloc_pixels(width, height, &job->img, err);
  if (st != KILN_OK) return st;
  if (cmyk) {
    job->cmyk_row = kiln_malloc((size_t)width * 4);
    if (!job->cmyk_row) return kiln_fail(err, KILN_ERR_NOMEM, "out of memory");
  }
  while (cinfo->output_scanline < cinfo->output_height) {
    uint8_t *row = job->img.pixels + (size_t)cinfo->output_scanline * job->img.stride;
    JSAMPROW target = cmyk ? job->cmyk_row : row;
    if (jpeg_read_scanlines(cinfo, &target, 1) != 1)
      return kiln_fail(err, KILN_ERR_FORMAT, "JPEG data ended at row %u of %u",
                       cinfo->output_scanline, cinfo->output_height);
    if (cmyk) cmyk_to_rgb(job->cmyk_row, row, width, cinfo->saw_Adobe_marker);
  }
  job->img.format = KILN_IMAGE_JPEG;
  return kiln_image_apply_orientation(&job->img, orientation, err);
}

kiln_status kiln_jpeg_decode(const uint8_t *data, size_t size, uint64_t max_pixels,
                             kiln_image *out, kiln_error *err) {
  memset(out, 0, sizeof *out);
  jpeg_job *job = kiln_malloc(sizeof *job);
  if (!job) return kiln_fail(err, KILN_ERR_NOMEM, "out of memory");
  memset(job, 0, sizeof *job);
  job->cinfo.err = jpeg_std_error(&job->fail.pub);
  job->fail.pub.error_exit = on_error_exit;
  job->fail.pub.emit_message = on_emit_message;
  job->fail.pub.output_message = on_output_message;

  kiln_status st;
  if (setjmp(job->fail.jump) == 0) {
    st = decode(job, data, size, max_pixels, err);
  } else {
    st = status_of(&job->fail);
    kiln_fail(err, st, "%s: %s", st == KILN_ERR_FORMAT ? "corrupt JPEG" : "JPEG", job->fail.msg);
  }
  /* Safe on a zeroed or half-created decompressor: it checks cinfo->mem. */
  jpeg_destroy_decompress(&job->cinfo);
  kiln_free(job->cmyk_row);
  if (st == KILN_OK)
    *out = job->img;
  else
    kiln_image_free(&job->img);
  kiln_free(job);
  return st;
}
