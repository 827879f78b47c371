/*
 * test_image_corrupt.c: hostile input. Every prefix of small JPEG and PNG
 * files, and thousands of randomly damaged copies, must decode or fail with
 * a format error, never crash, leak or read out of bounds (run under the
 * sanitizers). Every allocation in decode, encode, resize and tensor fill
 * is failed in turn: each must report KILN_ERR_NOMEM and leave nothing
 * allocated.
 */
#include <string.h>

#include "kiln/image.h"
#include "test_image_util.h"
#include "testutil.h"

typedef struct sample_file {
  const char *name;
  uint8_t *data;
  size_t size;
  size_t trailer; /* bytes at the end a decoder may never read (EOI, IEND) */
} sample_file;

#define N_SAMPLES 8
static sample_file samples[N_SAMPLES];
static int n_samples;

static void add_sample(const char *name, uint8_t *data, size_t size, size_t trailer) {
  samples[n_samples++] = (sample_file){name, data, size, trailer};
}

static void make_samples(void) {
  int w = 40, h = 30;
  uint8_t *rgb = malloc((size_t)w * h * 3);
  uint16_t *s16 = malloc(sizeof *s16 * (size_t)w * h * 4);
  test_rng rng = {99};
  for (int i = 0; i < w * h * 3; i++)
    rgb[i] = (uint8_t)((i % (w * 3)) * 2 + (i / (w * 3)) * 3 + test_rand_int(&rng, 0, 20));
  size_t size;
  jpeg_spec js = {3, 85, false, false, NULL, 0};
  uint8_t *f = test_jpeg_encode(rgb, w, h, &js, &size);
  add_sample("baseline.jpg", f, size, 2);
  js.progressive = true;
  f = test_jpeg_encode(rgb, w, h, &js, &size);
  add_sample("progressive.jpg", f, size, 2);
  static const uint8_t exif[] = {'E', 'x', 'i', 'f', 0, 0, 'I', 'I', 42, 0, 8, 0, 0, 0,
                                 1, 0, 0x12, 0x01, 3, 0, 1, 0, 0, 0, 6, 0, 0, 0, 0, 0,
                                 0, 0, 0, 0};
  jpeg_spec je = {1, 80, false, false, exif, sizeof exif};
  f = test_jpeg_encode(rgb, 24, 16, &je, &size);
  add_sample("grey-exif.jpg", f, size, 2);

  for (int i = 0; i < w * h * 3; i++) s16[i] = rgb[i];
  png_spec ps = {PNG_COLOR_TYPE_RGB, 8, false, NULL, 0, NULL, 0, NULL};
  f = test_png_encode(s16, w, h, &ps, &size);
  add_sample("rgb8.png", f, size, 12);
  for (int i = 0; i < w * h * 4; i++) s16[i] = (uint16_t)test_rand_u32(&rng);
  png_spec p16 = {PNG_COLOR_TYPE_RGB_ALPHA, 16, true, NULL, 0, NULL, 0, NULL};
  f = test_png_encode(s16, 13, 11, &p16, &size);
  add_sample("rgba16-interlaced.png", f, size, 12);
  png_color pal[16];
  uint8_t trns[16];
  for (int i = 0; i < 16; i++) {
    pal[i] = (png_color){(png_byte)(i * 16), (png_byte)(i * 7), (png_byte)(255 - i)};
    trns[i] = (uint8_t)(i * 16);
  }
  for (int i = 0; i < 17 * 9; i++) s16[i] = (uint16_t)(i % 16);
  png_spec pp = {PNG_COLOR_TYPE_PALETTE, 4, true, pal, 16, trns, 16, NULL};
  f = test_png_encode(s16, 17, 9, &pp, &size);
  add_sample("palette-interlaced.png", f, size, 12);
  f = test_read_file(test_data_path("images/pil_cmyk.jpg"), &size);
  if (f) add_sample("pil_cmyk.jpg", f, size, 2);
  f = test_read_file(test_data_path("images/pil_gray16.png"), &size);
  if (f) add_sample("pil_gray16.png", f, size, 12);
  free(rgb);
  free(s16);
}

/* Every kiln allocation of this test goes through a counting allocator
 * (blocks carry its header, so it stays installed; the failure tests
 * install their own and put this one back). */
static count_alloc counter;

/* Decodes an exactly sized copy of data (so overreads trap) and checks the
 * invariants every outcome must keep. */
static kiln_status decode_checked(const uint8_t *data, size_t size, const char *name,
                                  kiln_image *img, kiln_error *err) {
  uint8_t *copy = malloc(size ? size : 1);
  memcpy(copy, data, size);
  size_t live = counter.live;
  kiln_status st = kiln_image_decode_memory(copy, size, name, NULL, img, err);
  if (st != KILN_OK) {
    CHECK_MSG(counter.live == live, "%s: %zu bytes left allocated after an error", name,
              counter.live - live);
    CHECK(img->pixels == NULL && img->width == 0);
    CHECK_MSG(strncmp(err->msg, name, strlen(name)) == 0, "%s", err->msg);
  } else {
    CHECK(img->pixels && img->width > 0 && img->height > 0);
    CHECK(img->stride == (size_t)img->width * 3);
  }
  free(copy);
  return st;
}

static void use_counter(void) {
  kiln_allocator al = {count_alloc_fn, count_realloc_fn, count_free_fn, &counter};
  kiln_set_allocator(&al);
}

static void test_prefixes(void) {
  for (int k = 0; k < n_samples; k++) {
    const sample_file *sf = &samples[k];
    kiln_image full;
    kiln_error err;
    REQUIRE(kiln_image_decode_memory(sf->data, sf->size, sf->name, NULL, &full, &err) ==
            KILN_OK);
    int ok = 0, failed = 0;
    for (size_t n = 0; n < sf->size; n++) {
      kiln_image img;
      kiln_status st = decode_checked(sf->data, n, sf->name, &img, &err);
      if (st == KILN_OK) {
        ok++;
        CHECK_MSG(n + sf->trailer >= sf->size, "%s: prefix of %zu of %zu bytes decoded",
                  sf->name, n, sf->size);
        CHECK_MSG(test_image_max_diff(&img, &full) == 0, "%s: prefix %zu decoded differently",
                  sf->name, n);
        kiln_image_free(&img);
      } else {
        failed++;
        CHECK_MSG(st == KILN_ERR_FORMAT, "%s: prefix %zu: status %d: %s", sf->name, n, st,
                  err.msg);
      }
    }
    CHECK(failed + ok == (int)sf->size);
    kiln_image_free(&full);
  }
}

static void test_random_damage(void) {
  test_rng rng = {2024};
  for (int k = 0; k < n_samples; k++) {
    const sample_file *sf = &samples[k];
    uint8_t *buf = malloc(sf->size);
    int ok = 0;
    for (int iter = 0; iter < 4000; iter++) {
      memcpy(buf, sf->data, sf->size);
      int flips = test_rand_int(&rng, 1, 8);
      for (int f = 0; f < flips; f++) {
        size_t pos = (size_t)test_rand_int(&rng, 0, (int32_t)sf->size - 1);
        if (test_rand_int(&rng, 0, 1))
          buf[pos] ^= (uint8_t)(1u << test_rand_int(&rng, 0, 7));
        else
          buf[pos] = (uint8_t)test_rand_u32(&rng);
      }
      kiln_image img;
      kiln_error err;
      kiln_status st = decode_checked(buf, sf->size, sf->name, &img, &err);
      CHECK_MSG(st == KILN_OK || st == KILN_ERR_FORMAT || st == KILN_ERR_UNSUPPORTED ||
                    st == KILN_ERR_LIMIT,
                "%s: status %d: %s", sf->name, st, err.msg);
      ok += st == KILN_OK;
      kiln_image_free(&img);
    }
    fprintf(stderr, "  %s: %d of 4000 damaged copies decoded\n", sf->name, ok);
    free(buf);
  }
}

static void test_failing_allocations_decode(void) {
  for (int k = 0; k < n_samples; k++) {
    const sample_file *sf = &samples[k];
    int nomem = 0;
    for (long fail_at = 0; fail_at < 10000; fail_at++) {
      count_alloc a;
      count_alloc_install(&a, fail_at);
      kiln_image img;
      kiln_error err;
      kiln_status st = kiln_image_decode_memory(sf->data, sf->size, sf->name, NULL, &img, &err);
      if (st == KILN_OK) kiln_image_free(&img);
      use_counter();
      CHECK_MSG(a.live == 0 && a.live_blocks == 0, "%s: fail at %ld: %zu bytes leaked", sf->name,
                fail_at, a.live);
      if (a.failed == 0) break; /* fewer allocations than fail_at: done */
      if (st != KILN_OK) {
        nomem++;
        CHECK_MSG(st == KILN_ERR_NOMEM, "%s: fail at %ld: status %d: %s", sf->name, fail_at, st,
                  err.msg);
      }
    }
    CHECK_MSG(nomem >= 2, "%s: only %d allocation failures seen", sf->name, nomem);
  }
}

static void test_failing_allocations_other(void) {
  kiln_image img;
  kiln_error err;
  REQUIRE(kiln_image_create(21, 13, &img, &err) == KILN_OK);
  for (size_t i = 0; i < img.stride * 13; i++) img.pixels[i] = (uint8_t)(i * 7);
  float tensor[9 * 7 * 3];
  int32_t shape[4] = {1, 9, 7, 3};
  kiln_tensor_view view = {"in", KILN_F32, 4, shape, NULL, tensor, sizeof tensor};
  int seen[3] = {0, 0, 0};
  for (int what = 0; what < 3; what++) {
    for (long fail_at = 0; fail_at < 1000; fail_at++) {
      count_alloc a;
      count_alloc_install(&a, fail_at);
      kiln_status st;
      if (what == 0) {
        uint8_t *bytes;
        size_t size;
        st = kiln_image_encode_png(&img, &bytes, &size, &err);
        if (st == KILN_OK) kiln_free(bytes);
      } else if (what == 1) {
        kiln_image out;
        st = kiln_image_resize_bilinear(&img, 50, 3, &out, &err);
        if (st == KILN_OK) kiln_image_free(&out);
      } else {
        st = kiln_image_to_tensor(&img, NULL, &view, &err);
      }
      use_counter();
      CHECK_MSG(a.live == 0, "case %d fail at %ld: %zu bytes leaked", what, fail_at, a.live);
      if (a.failed == 0) {
        CHECK(st == KILN_OK);
        break;
      }
      seen[what]++;
      CHECK_MSG(st == KILN_ERR_NOMEM, "case %d fail at %ld: status %d: %s", what, fail_at, st,
                err.msg);
    }
  }
  CHECK(seen[0] >= 3 && seen[1] >= 2 && seen[2] >= 2);
  kiln_image_free(&img);
  CHECK(counter.live == 0);
}

int main(void) {
  count_alloc_install(&counter, -1);
  make_samples();
  if (n_samples != N_SAMPLES) {
    fprintf(stderr, "missing fixtures: %d of %d samples\n", n_samples, N_SAMPLES);
    test_failures++;
  }
  RUN(test_prefixes);
  RUN(test_random_damage);
  RUN(test_failing_allocations_decode);
  RUN(test_failing_allocations_other);
  for (int k = 0; k < n_samples; k++) free(samples[k].data);
  return test_summary();
}
