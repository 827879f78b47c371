/*
 * test_image.c: decoding. PNG of every colour type and bit depth (written
 * here with libpng, and by Pillow in tests/data/images) checked exactly;
 * JPEG (written here with libjpeg, and by Pillow) checked within a
 * tolerance; format detection and its messages; the pixel limit, checked
 * from the header before the pixels are allocated; zero sizes; the real
 * photo in shared/images.
 */
#include <math.h>
#include <string.h>
#include <zlib.h>

#include "kiln/image.h"
#include "test_image_util.h"
#include "testutil.h"

/* ---- Pixel formulas, the same as tests/data/images/make_fixtures.py ---- */

static void fixture_rgb8(int x, int y, uint8_t rgb[3]) {
  rgb[0] = (uint8_t)((x * 19 + y * 7) & 255);
  rgb[1] = (uint8_t)((x * 5 + y * 29) & 255);
  rgb[2] = (uint8_t)((x * y * 3 + 11) & 255);
}

/* 16 to 8 bits keeps the high byte (TensorFlow's decode_png does too). */
static uint8_t scale16(unsigned v) { return (uint8_t)(v >> 8); }

static void palette_color(int i, uint8_t rgb[3]) {
  rgb[0] = (uint8_t)(i * 16);
  rgb[1] = (uint8_t)(255 - i * 16);
  rgb[2] = (uint8_t)((i * 37) & 255);
}

/* Decodes a fixture file; REQUIREs success in the caller via the result. */
static kiln_status decode_fixture(const char *name, kiln_image *img, kiln_error *err) {
  char rel[256];
  snprintf(rel, sizeof rel, "images/%s", name);
  kiln_status st = kiln_image_decode_file(test_data_path(rel), NULL, img, err);
  if (st != KILN_OK) fprintf(stderr, "%s: %s\n", name, err->msg);
  return st;
}

static const uint8_t *px(const kiln_image *img, int x, int y) {
  return img->pixels + (size_t)y * img->stride + 3 * (size_t)x;
}

/* ---- PNG written by Pillow ---- */

static void test_pil_png_fixtures(void) {
  kiln_error err;
  kiln_image img;
  REQUIRE(decode_fixture("pil_rgb8.png", &img, &err) == KILN_OK);
  CHECK(img.width == 13 && img.height == 9 && img.stride == 39);
  CHECK(img.format == KILN_IMAGE_PNG && img.orientation == 1);
  int bad = 0;
  for (int y = 0; y < 9; y++)
    for (int x = 0; x < 13; x++) {
      uint8_t e[3];
      fixture_rgb8(x, y, e);
      bad += memcmp(px(&img, x, y), e, 3) != 0;
    }
  CHECK_MSG(bad == 0, "%d wrong pixels in pil_rgb8.png", bad);
  kiln_image_free(&img);

  REQUIRE(decode_fixture("pil_gray16.png", &img, &err) == KILN_OK);
  bad = 0;
  for (int y = 0; y < 9; y++)
    for (int x = 0; x < 13; x++) {
      uint8_t v = scale16((unsigned)((x * 4099 + y * 7919) & 0xFFFF));
      const uint8_t *p = px(&img, x, y);
      bad += p[0] != v || p[1] != v || p[2] != v;
    }
  CHECK_MSG(bad == 0, "%d wrong pixels in pil_gray16.png", bad);
  kiln_image_free(&img);

  REQUIRE(decode_fixture("pil_la.png", &img, &err) == KILN_OK);
  bad = 0;
  for (int y = 0; y < 9; y++)
    for (int x = 0; x < 13; x++) {
      uint8_t v = (uint8_t)((x * 20 + y * 9) & 255); /* alpha dropped, not applied */
      const uint8_t *p = px(&img, x, y);
      bad += p[0] != v || p[1] != v || p[2] != v;
    }
  CHECK_MSG(bad == 0, "%d wrong pixels in pil_la.png", bad);
  kiln_image_free(&img);

  REQUIRE(decode_fixture("pil_palette.png", &img, &err) == KILN_OK);
  bad = 0;
  for (int y = 0; y < 9; y++)
    for (int x = 0; x < 13; x++) {
      uint8_t e[3];
      palette_color((x + 2 * y) % 16, e); /* index 3 is transparent: colour kept */
      bad += memcmp(px(&img, x, y), e, 3) != 0;
    }
  CHECK_MSG(bad == 0, "%d wrong pixels in pil_palette.png", bad);
  kiln_image_free(&img);
}

/* ---- PNG written here: every colour type, depth, interlacing ---- */

typedef struct png_case {
  int color_type, bit_depth;
  bool interlace, trns;
} png_case;

/* Expected RGB8 of sample values s (channels of the colour type). */
static void expect_png(const png_case *pc, const uint16_t *s, const png_color *pal, uint8_t e[3]) {
  unsigned maxv = (1u << pc->bit_depth) - 1;
  uint8_t v8[4];
  int ch = test_png_channels(pc->color_type);
  for (int c = 0; c < ch; c++)
    v8[c] = pc->bit_depth == 16 ? scale16(s[c]) : (uint8_t)(s[c] * 255u / maxv);
  switch (pc->color_type) {
    case PNG_COLOR_TYPE_PALETTE:
      e[0] = pal[s[0]].red;
      e[1] = pal[s[0]].green;
      e[2] = pal[s[0]].blue;
      break;
    case PNG_COLOR_TYPE_GRAY:
    case PNG_COLOR_TYPE_GRAY_ALPHA:
      e[0] = e[1] = e[2] = v8[0];
      break;
    default:
      memcpy(e, v8, 3);
  }
}

static void test_png_all_types(void) {
  static const png_case cases[] = {
      {PNG_COLOR_TYPE_GRAY, 1, false, false},       {PNG_COLOR_TYPE_GRAY, 2, false, false},
      {PNG_COLOR_TYPE_GRAY, 4, true, false},        {PNG_COLOR_TYPE_GRAY, 8, false, true},
      {PNG_COLOR_TYPE_GRAY, 16, true, true},        {PNG_COLOR_TYPE_GRAY_ALPHA, 8, false, false},
      {PNG_COLOR_TYPE_GRAY_ALPHA, 16, true, false}, {PNG_COLOR_TYPE_RGB, 8, true, false},
      {PNG_COLOR_TYPE_RGB, 8, false, true},         {PNG_COLOR_TYPE_RGB, 16, false, false},
      {PNG_COLOR_TYPE_RGB, 16, true, true},         {PNG_COLOR_TYPE_RGB_ALPHA, 8, false, false},
      {PNG_COLOR_TYPE_RGB_ALPHA, 8, true, false},   {PNG_COLOR_TYPE_RGB_ALPHA, 16, false, false},
      {PNG_COLOR_TYPE_PALETTE, 1, false, false},    {PNG_COLOR_TYPE_PALETTE, 2, true, true},
      {PNG_COLOR_TYPE_PALETTE, 4, false, true},     {PNG_COLOR_TYPE_PALETTE, 8, true, true},
      {PNG_COLOR_TYPE_PALETTE, 8, false, false},
  };
  test_rng rng = {42};
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    const png_case *pc = &cases[k];
    int w = test_rand_int(&rng, 1, 23), h = test_rand_int(&rng, 1, 17);
    if (k == 0) w = h = 1;
    int ch = test_png_channels(pc->color_type);
    unsigned maxv = (1u << pc->bit_depth) - 1;
    int n_pal = pc->color_type == PNG_COLOR_TYPE_PALETTE ? (int)maxv + 1 : 0;
    png_color pal[256];
    uint8_t trns[256];
    for (int i = 0; i < n_pal; i++) {
      pal[i].red = (png_byte)test_rand_int(&rng, 0, 255);
      pal[i].green = (png_byte)test_rand_int(&rng, 0, 255);
      pal[i].blue = (png_byte)test_rand_int(&rng, 0, 255);
      trns[i] = (uint8_t)test_rand_int(&rng, 0, 255);
    }
    uint16_t *s = malloc(sizeof *s * (size_t)(w * h * ch));
    for (int i = 0; i < w * h * ch; i++) s[i] = (uint16_t)test_rand_int(&rng, 0, (int)maxv);
    png_color_16 tc = {0};
    tc.gray = (png_uint_16)(s[0] & maxv);
    tc.red = tc.green = tc.blue = (png_uint_16)(s[0] & maxv);
    png_spec spec = {pc->color_type, pc->bit_depth, pc->interlace,
                     n_pal ? pal : NULL, n_pal, NULL, 0, NULL};
    if (pc->trns) {
      if (n_pal) {
        spec.trns = trns;
        spec.n_trns = n_pal;
      } else {
        spec.trns_color = &tc;
      }
    }
    size_t size;
    uint8_t *file = test_png_encode(s, w, h, &spec, &size);
    kiln_image img;
    kiln_error err;
    kiln_status st = kiln_image_decode_memory(file, size, "gen.png", NULL, &img, &err);
    CHECK_MSG(st == KILN_OK, "type %d depth %d: %s", pc->color_type, pc->bit_depth, err.msg);
    if (st == KILN_OK) {
      CHECK(img.width == w && img.height == h && img.format == KILN_IMAGE_PNG);
      int bad = 0;
      for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
          uint8_t e[3];
          expect_png(pc, s + ((size_t)y * (size_t)w + (size_t)x) * (size_t)ch, pal, e);
          bad += memcmp(px(&img, x, y), e, 3) != 0;
        }
      CHECK_MSG(bad == 0, "type %d depth %d interlace %d trns %d: %d of %d pixels wrong",
                pc->color_type, pc->bit_depth, pc->interlace, pc->trns, bad, w * h);
    }
    kiln_image_free(&img);
    free(file);
    free(s);
  }
}

/* ---- JPEG ---- */

/* Smooth test content: JPEG at quality 95 keeps it within a few levels. */
static uint8_t *smooth_rgb(int w, int h) {
  uint8_t *p = malloc((size_t)w * (size_t)h * 3);
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      uint8_t *q = p + ((size_t)y * (size_t)w + (size_t)x) * 3;
      q[0] = (uint8_t)(x * 4 > 255 ? 255 : x * 4);
      q[1] = (uint8_t)(y * 4 > 255 ? 255 : y * 4);
      q[2] = (uint8_t)(128 + (x - y) / 4);
    }
  return p;
}

static int max_diff_rgb(const kiln_image *img, const uint8_t *rgb) {
  int worst = 0;
  for (int y = 0; y < img->height; y++)
    for (int i = 0; i < img->width * 3; i++) {
      int d = abs((int)px(img, 0, y)[i] - (int)rgb[((size_t)y * (size_t)img->width) * 3 + (size_t)i]);
      if (d > worst) worst = d;
    }
  return worst;
}

static void test_jpeg_generated(void) {
  const int sizes[][2] = {{1, 1}, {8, 8}, {17, 9}, {64, 48}, {33, 70}};
  for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
    int w = sizes[k][0], h = sizes[k][1];
    uint8_t *rgb = smooth_rgb(w, h);
    for (int progressive = 0; progressive < 2; progressive++) {
      jpeg_spec spec = {3, 95, progressive != 0, false, NULL, 0};
      size_t size;
      uint8_t *file = test_jpeg_encode(rgb, w, h, &spec, &size);
      kiln_image img;
      kiln_error err;
      kiln_status st = kiln_image_decode_memory(file, size, "gen.jpg", NULL, &img, &err);
      CHECK_MSG(st == KILN_OK, "%dx%d: %s", w, h, err.msg);
      if (st == KILN_OK) {
        CHECK(img.width == w && img.height == h && img.format == KILN_IMAGE_JPEG);
        CHECK(img.source_width == w && img.source_height == h && img.orientation == 1);
        int d = max_diff_rgb(&img, rgb);
        CHECK_MSG(d <= 12, "%dx%d progressive %d: max difference %d", w, h, progressive, d);
      }
      kiln_image_free(&img);
      free(file);
    }
    free(rgb);
  }
}

static void test_jpeg_grey_and_cmyk(void) {
  int w = 24, h = 16;
  uint8_t grey[24 * 16], cmyk[24 * 16 * 4], inverted[24 * 16 * 4];
  for (int i = 0; i < w * h; i++) {
    grey[i] = (uint8_t)(i % w * 10);
    cmyk[4 * i + 0] = (uint8_t)(255 - i % w * 10); /* cyan ink: 255 - red */
    cmyk[4 * i + 1] = (uint8_t)(255 - i / w * 15);
    cmyk[4 * i + 2] = 100;
    cmyk[4 * i + 3] = 0; /* no black ink: RGB = 255 - CMY */
    for (int c = 0; c < 4; c++) inverted[4 * i + c] = (uint8_t)(255 - cmyk[4 * i + c]);
  }
  size_t size;
  jpeg_spec spec = {1, 95, false, false, NULL, 0};
  uint8_t *file = test_jpeg_encode(grey, w, h, &spec, &size);
  kiln_image img;
  kiln_error err;
  REQUIRE(kiln_image_decode_memory(file, size, "grey.jpg", NULL, &img, &err) == KILN_OK);
  int worst = 0;
  for (int i = 0; i < w * h; i++)
    for (int c = 0; c < 3; c++) {
      int d = abs((int)img.pixels[3 * i + c] - grey[i]);
      if (d > worst) worst = d;
    }
  CHECK_MSG(worst <= 6, "grey JPEG: max difference %d", worst);
  kiln_image_free(&img);
  free(file);

  /* libjpeg always adds an Adobe marker to CMYK; files with one follow
   * Adobe's convention of inverted values (255: no ink). Without the marker
   * the values are plain ink amounts. Both must give the same RGB. */
  for (int adobe = 0; adobe < 2; adobe++) {
    spec.components = 4;
    spec.no_adobe = !adobe;
    file = test_jpeg_encode(adobe ? inverted : cmyk, w, h, &spec, &size);
    REQUIRE(kiln_image_decode_memory(file, size, "cmyk.jpg", NULL, &img, &err) == KILN_OK);
    worst = 0;
    for (int i = 0; i < w * h; i++) {
      uint8_t e[3] = {(uint8_t)(i % w * 10), (uint8_t)(i / w * 15), 155};
      for (int c = 0; c < 3; c++) {
        int d = abs((int)img.pixels[3 * i + c] - e[c]);
        if (d > worst) worst = d;
      }
    }
    CHECK_MSG(worst <= 8, "CMYK JPEG (Adobe marker %d): max difference %d", adobe, worst);
    kiln_image_free(&img);
    free(file);
  }
}

static void test_pil_jpeg_fixtures(void) {
  const char *names[] = {"pil_baseline.jpg", "pil_progressive.jpg", "pil_cmyk.jpg"};
  for (int k = 0; k < 3; k++) {
    kiln_image img;
    kiln_error err;
    REQUIRE(decode_fixture(names[k], &img, &err) == KILN_OK);
    CHECK(img.width == 32 && img.height == 24 && img.format == KILN_IMAGE_JPEG);
    int worst = 0;
    for (int y = 0; y < 24; y++)
      for (int x = 0; x < 32; x++) {
        const uint8_t *p = px(&img, x, y);
        int e[3] = {x * 8, y * 10, 128};
        for (int c = 0; c < 3; c++)
          if (abs(p[c] - e[c]) > worst) worst = abs(p[c] - e[c]);
      }
    CHECK_MSG(worst <= 10, "%s: max difference %d", names[k], worst);
    kiln_image_free(&img);
  }
  kiln_image img;
  kiln_error err;
  REQUIRE(decode_fixture("pil_gray.jpg", &img, &err) == KILN_OK);
  int worst = 0;
  for (int y = 0; y < 24; y++)
    for (int x = 0; x < 32; x++)
      for (int c = 0; c < 3; c++)
        if (abs(px(&img, x, y)[c] - (x * 4 + y * 5)) > worst) worst = abs(px(&img, x, y)[c] - (x * 4 + y * 5));
  CHECK_MSG(worst <= 4, "pil_gray.jpg: max difference %d", worst);
  kiln_image_free(&img);
}

/* ---- Formats, files, messages ---- */

static void test_not_an_image(void) {
  kiln_image img;
  kiln_error err;
  const char *gif = test_data_path("images/not_an_image.gif");
  char path[4096];
  snprintf(path, sizeof path, "%s", gif);
  CHECK(kiln_image_decode_file(path, NULL, &img, &err) == KILN_ERR_FORMAT);
  CHECK_MSG(strstr(err.msg, path) == err.msg, "%s", err.msg);
  CHECK_MSG(strstr(err.msg, "not a JPEG or PNG") && strstr(err.msg, "GIF"), "%s", err.msg);
  CHECK(img.pixels == NULL && img.width == 0);

  /* Content decides, not the name: a PNG called .jpg decodes. */
  CHECK(kiln_image_decode_file(test_data_path("images/pil_rgb8.png"), NULL, &img, &err) == KILN_OK);
  kiln_image_free(&img);

  const char text[] = "<html>hello</html>";
  CHECK(kiln_image_decode_memory(text, sizeof text - 1, "upload", NULL, &img, &err) ==
        KILN_ERR_FORMAT);
  CHECK_MSG(strstr(err.msg, "upload: not a JPEG or PNG image") == err.msg &&
            strstr(err.msg, "3c 68 74 6d"), "%s", err.msg);

  CHECK(kiln_image_decode_memory("", 0, "empty.png", NULL, &img, &err) == KILN_ERR_FORMAT);
  CHECK_MSG(strstr(err.msg, "empty.png: not a JPEG or PNG image: no data") == err.msg, "%s",
            err.msg);
  const uint8_t two[] = {0xFF, 0xD8};
  CHECK(kiln_image_decode_memory(two, 2, NULL, NULL, &img, &err) == KILN_ERR_FORMAT);
  CHECK_MSG(strstr(err.msg, "truncated"), "%s", err.msg);
  const uint8_t bmp[] = {'B', 'M', 0, 0, 0, 0};
  CHECK(kiln_image_decode_memory(bmp, sizeof bmp, NULL, NULL, &img, &err) == KILN_ERR_FORMAT);
  CHECK_MSG(strstr(err.msg, "BMP"), "%s", err.msg);

  CHECK(kiln_image_decode_file("/nonexistent/x.png", NULL, &img, &err) == KILN_ERR_IO);
  CHECK_MSG(strstr(err.msg, "/nonexistent/x.png") == err.msg, "%s", err.msg);
}

/* ---- Limits ---- */

static void put_be32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}

/* A PNG signature and IHDR claiming w x h RGB8, then an IDAT of junk. */
static size_t fake_png_header(uint8_t *out, uint32_t w, uint32_t h) {
  static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  memcpy(out, sig, 8);
  put_be32(out + 8, 13);
  memcpy(out + 12, "IHDR", 4);
  put_be32(out + 16, w);
  put_be32(out + 20, h);
  out[24] = 8; /* depth */
  out[25] = 2; /* RGB */
  out[26] = out[27] = out[28] = 0;
  put_be32(out + 29, (uint32_t)crc32(0, out + 12, 17));
  put_be32(out + 33, 4);
  memcpy(out + 37, "IDAT", 4);
  memcpy(out + 41, "junk", 4);
  put_be32(out + 45, (uint32_t)crc32(0, out + 37, 8));
  return 49;
}

static void test_limit_png_header(void) {
  uint8_t file[64];
  size_t n = fake_png_header(file, 100000, 100000);
  count_alloc a;
  count_alloc_install(&a, -1);
  kiln_image img;
  kiln_error err;
  kiln_status st = kiln_image_decode_memory(file, n, "huge.png", NULL, &img, &err);
  kiln_set_allocator(NULL);
  CHECK(st == KILN_ERR_LIMIT);
  CHECK_MSG(strstr(err.msg, "huge.png: ") == err.msg && strstr(err.msg, "100000x100000") &&
            strstr(err.msg, "50000000"), "%s", err.msg);
  /* Failed from the header: libpng's structs only, never 30 GB of pixels. */
  CHECK_MSG(a.peak < (1u << 20), "peak %zu bytes", a.peak);
  CHECK(a.live == 0 && a.live_blocks == 0);

  /* Under the limit the header passes and the junk IDAT fails instead. */
  kiln_image_options opts = {4000000};
  n = fake_png_header(file, 2000, 2000);
  st = kiln_image_decode_memory(file, n, "junk.png", &opts, &img, &err);
  CHECK_MSG(st == KILN_ERR_FORMAT && strstr(err.msg, "junk.png: corrupt PNG: "), "%s", err.msg);
  opts.max_pixels = 3999999;
  CHECK(kiln_image_decode_memory(file, n, "junk.png", &opts, &img, &err) == KILN_ERR_LIMIT);

  /* A real 2,000,000 x 1 strip: within the pixel limit, so it decodes
   * (libpng's own default would refuse a width over a million). */
  uint16_t *strip = calloc(2000000, sizeof *strip);
  strip[1999999] = 1;
  png_spec bits = {PNG_COLOR_TYPE_GRAY, 1, false, NULL, 0, NULL, 0, NULL};
  size_t strip_size;
  uint8_t *strip_png = test_png_encode(strip, 2000000, 1, &bits, &strip_size);
  st = kiln_image_decode_memory(strip_png, strip_size, "strip.png", NULL, &img, &err);
  CHECK_MSG(st == KILN_OK, "%s", err.msg);
  if (st == KILN_OK) {
    CHECK(img.width == 2000000 && img.height == 1);
    CHECK(img.pixels[0] == 0 && img.pixels[3 * 1999999] == 255);
  }
  kiln_image_free(&img);
  free(strip_png);
  free(strip);

  n = fake_png_header(file, 0, 10);
  CHECK(kiln_image_decode_memory(file, n, "zero.png", NULL, &img, &err) == KILN_ERR_FORMAT);
  CHECK_MSG(strstr(err.msg, "zero.png: "), "%s", err.msg);
}

static void test_limit_option(void) {
  uint8_t *rgb = smooth_rgb(64, 64);
  uint16_t s[16 * 16 * 3];
  for (int i = 0; i < 16 * 16 * 3; i++) s[i] = rgb[i];
  png_spec ps = {PNG_COLOR_TYPE_RGB, 8, false, NULL, 0, NULL, 0, NULL};
  size_t png_size, jpg_size;
  uint8_t *png = test_png_encode(s, 16, 16, &ps, &png_size);
  jpeg_spec js = {3, 90, false, false, NULL, 0};
  uint8_t *jpg = test_jpeg_encode(rgb, 64, 64, &js, &jpg_size);
  kiln_image img;
  kiln_error err;
  kiln_image_options opts = {255};
  CHECK(kiln_image_decode_memory(png, png_size, "a.png", &opts, &img, &err) == KILN_ERR_LIMIT);
  CHECK_MSG(strstr(err.msg, "a.png: image is 16x16 (256 pixels), over the limit of 255 pixels"),
            "%s", err.msg);
  opts.max_pixels = 256;
  CHECK(kiln_image_decode_memory(png, png_size, "a.png", &opts, &img, &err) == KILN_OK);
  kiln_image_free(&img);

  count_alloc a;
  count_alloc_install(&a, -1);
  opts.max_pixels = 4095;
  CHECK(kiln_image_decode_memory(jpg, jpg_size, "b.jpg", &opts, &img, &err) == KILN_ERR_LIMIT);
  kiln_set_allocator(NULL);
  CHECK(a.peak < 64 * 64 * 3); /* the pixels were never allocated */
  CHECK_MSG(strstr(err.msg, "b.jpg: image is 64x64 (4096 pixels)"), "%s", err.msg);
  opts.max_pixels = 4096;
  CHECK(kiln_image_decode_memory(jpg, jpg_size, "b.jpg", &opts, &img, &err) == KILN_OK);
  kiln_image_free(&img);

  /* A JPEG whose SOF claims 60000x60000: refused from the header. */
  size_t sof = 0;
  for (size_t i = 2; i + 9 < jpg_size; i++)
    if (jpg[i] == 0xFF && jpg[i + 1] == 0xC0) {
      sof = i;
      break;
    }
  REQUIRE(sof != 0);
  jpg[sof + 5] = 0xEA; /* height 0xEA60 = 60000 */
  jpg[sof + 6] = 0x60;
  jpg[sof + 7] = 0xEA;
  jpg[sof + 8] = 0x60;
  count_alloc_install(&a, -1);
  CHECK(kiln_image_decode_memory(jpg, jpg_size, "big.jpg", NULL, &img, &err) == KILN_ERR_LIMIT);
  kiln_set_allocator(NULL);
  CHECK(a.peak < (1u << 20));
  CHECK_MSG(strstr(err.msg, "60000x60000 (3600000000 pixels)"), "%s", err.msg);
  jpg[sof + 5] = jpg[sof + 6] = 0; /* height 0 */
  CHECK(kiln_image_decode_memory(jpg, jpg_size, "zero.jpg", NULL, &img, &err) == KILN_ERR_FORMAT);
  CHECK_MSG(strstr(err.msg, "zero.jpg: "), "%s", err.msg);
  free(png);
  free(jpg);
  free(rgb);
}

/* Offset of the first marker FF code at or after from, or 0. */
static size_t find_marker(const uint8_t *d, size_t n, size_t from, uint8_t code) {
  for (size_t i = from; i + 1 < n; i++)
    if (d[i] == 0xFF && d[i + 1] == code) return i;
  return 0;
}

static void test_jpeg_unsupported_and_hostile(void) {
  uint8_t *rgb = smooth_rgb(32, 16);
  jpeg_spec js = {3, 90, false, false, NULL, 0};
  size_t size;
  uint8_t *jpg = test_jpeg_encode(rgb, 32, 16, &js, &size);
  kiln_image img;
  kiln_error err;
  size_t sof = find_marker(jpg, size, 2, 0xC0);
  REQUIRE(sof != 0);
  jpg[sof + 4] = 12; /* 12-bit samples */
  CHECK(kiln_image_decode_memory(jpg, size, "a.jpg", NULL, &img, &err) == KILN_ERR_UNSUPPORTED);
  CHECK_MSG(strstr(err.msg, "a.jpg: JPEG: "), "%s", err.msg);
  jpg[sof + 4] = 8;
  jpg[sof + 1] = 0xC3; /* lossless */
  CHECK(kiln_image_decode_memory(jpg, size, "b.jpg", NULL, &img, &err) == KILN_ERR_UNSUPPORTED);
  free(jpg);

  /* Two components: no RGB conversion exists. */
  uint8_t two[16 * 8 * 2];
  memset(two, 77, sizeof two);
  struct jpeg_compress_struct c;
  struct jpeg_error_mgr jerr;
  unsigned char *buf = NULL;
  unsigned long len = 0;
  c.err = jpeg_std_error(&jerr);
  jpeg_create_compress(&c);
  jpeg_mem_dest(&c, &buf, &len);
  c.image_width = 16;
  c.image_height = 8;
  c.input_components = 2;
  c.in_color_space = JCS_UNKNOWN;
  jpeg_set_defaults(&c);
  jpeg_start_compress(&c, TRUE);
  while (c.next_scanline < 8) {
    JSAMPROW row = two + (size_t)c.next_scanline * 32;
    jpeg_write_scanlines(&c, &row, 1);
  }
  jpeg_finish_compress(&c);
  jpeg_destroy_compress(&c);
  CHECK(kiln_image_decode_memory(buf, len, "two.jpg", NULL, &img, &err) == KILN_ERR_UNSUPPORTED);
  CHECK_MSG(strstr(err.msg, "two.jpg: JPEG: "), "%s", err.msg);
  free(buf);

  /* A progressive file whose first scan is repeated 1100 times: libjpeg
   * would only warn and spend time on each; kiln stops at 1000. */
  js.progressive = true;
  jpg = test_jpeg_encode(rgb, 32, 16, &js, &size);
  size_t first = find_marker(jpg, size, 2, 0xDA);
  size_t second = first ? find_marker(jpg, size, first + 2, 0xDA) : 0;
  REQUIRE(first && second);
  /* The repeated block: the SOS header, then its entropy data up to the
   * next marker (FF00 is a stuffed byte, FFD0-FFD7 restart markers). */
  size_t end = first + 2 + ((size_t)jpg[first + 2] << 8 | jpg[first + 3]);
  while (end + 1 < size &&
         !(jpg[end] == 0xFF && jpg[end + 1] != 0 && (jpg[end + 1] & 0xF8) != 0xD0))
    end++;
  REQUIRE(end <= second);
  size_t scan = end - first, reps = 1100;
  uint8_t *hostile = malloc(size + scan * reps);
  memcpy(hostile, jpg, end);
  for (size_t r = 0; r < reps; r++) memcpy(hostile + end + r * scan, jpg + first, scan);
  memcpy(hostile + end + reps * scan, jpg + end, size - end);
  kiln_status st =
      kiln_image_decode_memory(hostile, size + scan * reps, "scans.jpg", NULL, &img, &err);
  CHECK_MSG(st == KILN_ERR_LIMIT && strstr(err.msg, "scans.jpg: JPEG: more than 1000"), "%d %s",
            st, err.msg);
  /* The same with 10 repeats decodes (repeated scans are legal, if odd). */
  memcpy(hostile + end + 10 * scan, jpg + end, size - end);
  st = kiln_image_decode_memory(hostile, size + scan * 10, "scans.jpg", NULL, &img, &err);
  CHECK_MSG(st == KILN_OK, "%s", err.msg);
  kiln_image_free(&img);
  free(hostile);
  free(jpg);
  free(rgb);
}

/* ---- The real photo ---- */

static void test_astronaut(void) {
  const char *models = getenv("KILN_MODELS");
  REQUIRE(models && *models);
  char path[4096];
  snprintf(path, sizeof path, "%s/../images/astronaut.png", models);
  kiln_image img;
  kiln_error err;
  kiln_status st = kiln_image_decode_file(path, NULL, &img, &err);
  CHECK_MSG(st == KILN_OK, "%s", err.msg);
  if (st != KILN_OK) return;
  CHECK(img.width == 512 && img.height == 512 && img.format == KILN_IMAGE_PNG);
  /* Checked against Pillow's decode of the same file. */
  uint64_t sum = 0;
  for (size_t i = 0; i < (size_t)512 * 512 * 3; i++) sum += img.pixels[i];
  CHECK_MSG(sum == 90124324u, "sum %llu", (unsigned long long)sum);
  const uint8_t *p = px(&img, 0, 0), *q = px(&img, 300, 200), *r = px(&img, 511, 511);
  CHECK_MSG(p[0] == 154 && p[1] == 147 && p[2] == 151, "%d %d %d", p[0], p[1], p[2]);
  CHECK_MSG(q[0] == 232 && q[1] == 219 && q[2] == 221, "%d %d %d", q[0], q[1], q[2]);
  CHECK_MSG(r[0] == 0 && r[1] == 0 && r[2] == 0, "%d %d %d", r[0], r[1], r[2]);
  kiln_image_free(&img);
}

int main(void) {
  RUN(test_pil_png_fixtures);
  RUN(test_png_all_types);
  RUN(test_jpeg_generated);
  RUN(test_jpeg_grey_and_cmyk);
  RUN(test_pil_jpeg_fixtures);
  RUN(test_not_an_image);
  RUN(test_limit_png_header);
  RUN(test_limit_option);
  RUN(test_jpeg_unsupported_and_hostile);
  RUN(test_astronaut);
  return test_summary();
}
