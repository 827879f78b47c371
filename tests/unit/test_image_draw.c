/*
 * test_image_draw.c: rectangles (filled and outlined, thickness, clipping at
 * any coordinates), text labels against the font table, the font table's
 * own sanity, and PNG encoding: encode then decode gives the same pixels,
 * the file is written atomically and errors name the path.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kiln/image.h"
#include "test_image_util.h"
#include "testutil.h"
#include "vision/image_int.h"

static const kiln_rgb red = {255, 0, 0}, white = {255, 255, 255}, black = {0, 0, 0};

static bool is(const kiln_image *img, int x, int y, kiln_rgb c) {
  const uint8_t *p = img->pixels + (size_t)y * img->stride + 3 * (size_t)x;
  return p[0] == c.r && p[1] == c.g && p[2] == c.b;
}

static int count(const kiln_image *img, kiln_rgb c) {
  int n = 0;
  for (int y = 0; y < img->height; y++)
    for (int x = 0; x < img->width; x++) n += is(img, x, y, c);
  return n;
}

static void test_boxes(void) {
  kiln_image img;
  kiln_error err;
  REQUIRE(kiln_image_create(20, 20, &img, &err) == KILN_OK);
  CHECK(count(&img, black) == 400);
  kiln_image_draw_box(&img, 5, 5, 15, 15, 2, red);
  CHECK(count(&img, red) == 100 - 36);
  CHECK(is(&img, 5, 5, red) && is(&img, 6, 6, red) && is(&img, 14, 14, red));
  CHECK(is(&img, 7, 7, black) && is(&img, 15, 15, black) && is(&img, 4, 5, black));
  CHECK(is(&img, 10, 6, red) && is(&img, 10, 7, black) && is(&img, 13, 10, red));

  memset(img.pixels, 0, img.stride * 20);
  kiln_image_draw_box(&img, 0, 0, 20, 20, 1, white); /* the border */
  CHECK(count(&img, white) == 76);
  memset(img.pixels, 0, img.stride * 20);
  kiln_image_draw_box(&img, 2, 2, 8, 6, 2, white); /* 2*2 >= height 4: filled */
  CHECK(count(&img, white) == 24);
  memset(img.pixels, 0, img.stride * 20);
  kiln_image_draw_box(&img, -5, -5, 5, 5, 1, white); /* only right and bottom inside */
  CHECK(count(&img, white) == 9);
  CHECK(is(&img, 4, 0, white) && is(&img, 0, 4, white) && is(&img, 4, 4, white));
  memset(img.pixels, 0, img.stride * 20);
  kiln_image_draw_box(&img, INT32_MIN, INT32_MIN, INT32_MAX, INT32_MAX, 3, white);
  CHECK(count(&img, white) == 0); /* the outline is far outside */
  kiln_image_draw_box(&img, INT32_MIN, 3, INT32_MAX, 6, INT32_MAX, white);
  CHECK(count(&img, white) == 60); /* filled band, clipped */
  memset(img.pixels, 0, img.stride * 20);
  kiln_image_draw_box(&img, 5, 5, 5, 10, 1, white);  /* empty */
  kiln_image_draw_box(&img, 5, 5, 10, 10, 0, white); /* no thickness */
  kiln_image_draw_box(&img, 30, 30, 40, 40, 1, white);
  CHECK(count(&img, white) == 0);
  kiln_image_fill_rect(&img, 18, -3, 25, 2, white);
  CHECK(count(&img, white) == 4);
  kiln_image empty = {0};
  kiln_image_draw_box(&empty, 0, 0, 5, 5, 1, white); /* nothing to draw on: no crash */
  kiln_image_draw_text(&empty, 0, 0, "x", 1, white, &black);
  kiln_image_free(&img);
}

static void test_font_table(void) {
  int n = KILN_FONT_LAST - KILN_FONT_FIRST + 1;
  CHECK(n == 95);
  for (int i = 0; i < n; i++) {
    int bits = 0;
    for (int r = 0; r < KILN_FONT_H; r++) {
      CHECK_MSG((kiln_font_5x8[i][r] & ~0x1F) == 0, "glyph '%c' row %d wider than 5", i + 32, r);
      bits += kiln_font_5x8[i][r] != 0;
    }
    CHECK_MSG((bits == 0) == (i == 0), "glyph '%c': %d rows set", i + 32, bits);
    bool descends = kiln_font_5x8[i][7] != 0;
    CHECK_MSG(descends == (strchr("gjpqy", i + 32) != NULL), "glyph '%c' descender", i + 32);
    for (int j = 0; j < i; j++)
      CHECK_MSG(memcmp(kiln_font_5x8[i], kiln_font_5x8[j], KILN_FONT_H) != 0,
                "glyphs '%c' and '%c' are the same", i + 32, j + 32);
  }
}

static void test_text(void) {
  int32_t w, h;
  kiln_image_text_size("person 0.87", 1, &w, &h);
  CHECK(w == 6 * 11 + 1 && h == 10);
  kiln_image_text_size("ab", 3, &w, &h);
  CHECK(w == 39 && h == 30);
  kiln_image_text_size("", 2, &w, &h);
  CHECK(w == 0 && h == 0);
  kiln_image_text_size("a", 0, &w, &h);
  CHECK(w == 7 && h == 10);

  kiln_image img;
  kiln_error err;
  REQUIRE(kiln_image_create(40, 30, &img, &err) == KILN_OK);
  for (int scale = 1; scale <= 2; scale++) {
    kiln_image_fill_rect(&img, 0, 0, 40, 30, red);
    kiln_image_draw_text(&img, 3, 4, "Ag", scale, white, &black);
    kiln_image_text_size("Ag", scale, &w, &h);
    int bad = 0;
    for (int y = 0; y < 30; y++)
      for (int x = 0; x < 40; x++) {
        kiln_rgb want = red;
        int lx = x - 3, ly = y - 4;
        if (lx >= 0 && ly >= 0 && lx < w && ly < h) {
          want = black;
          int gx = lx / scale - 1, gy = ly / scale - 1; /* inside the 1-pixel margin */
          int ch = gx / 6, col = gx % 6;
          if (gx >= 0 && gy >= 0 && gy < 8 && ch < 2 && col < 5) {
            uint8_t row = kiln_font_5x8[(ch ? 'g' : 'A') - 32][gy];
            if (row >> (4 - col) & 1) want = white;
          }
        }
        bad += !is(&img, x, y, want);
      }
    CHECK_MSG(bad == 0, "scale %d: %d pixels wrong", scale, bad);
  }
  /* Without background only glyph pixels change; unknown bytes are '?'. */
  kiln_image_fill_rect(&img, 0, 0, 40, 30, red);
  kiln_image_draw_text(&img, 0, 0, "\x01", 1, white, NULL);
  int glyph_bits = 0;
  for (int r = 0; r < 8; r++)
    for (int b = 0; b < 5; b++) glyph_bits += kiln_font_5x8['?' - 32][r] >> b & 1;
  CHECK(count(&img, white) == glyph_bits && count(&img, black) == 0);
  CHECK(is(&img, 2, 1, white)); /* '?' top row .###. starts at column 1 */
  /* Clipped at every edge, including far outside. */
  kiln_image_fill_rect(&img, 0, 0, 40, 30, red);
  kiln_image_draw_text(&img, -20, -5, "WWWWWWWWWW", 2, white, &black);
  kiln_image_draw_text(&img, 35, 25, "M", 3, white, &black);
  kiln_image_draw_text(&img, INT32_MAX - 3, INT32_MIN, "x", 5, white, &black);
  kiln_image_draw_text(&img, INT32_MIN, 0, "x", INT32_MAX, white, &black);
  CHECK(!is(&img, 39, 29, red) && !is(&img, 0, 0, red) && is(&img, 20, 20, red));
  CHECK(count(&img, red) == 40 * 30 - 40 * 15 - 5 * 5);
  kiln_image_free(&img);
}

static void test_png_round_trip(void) {
  test_rng rng = {77};
  const int sizes[][2] = {{1, 1}, {1, 300}, {300, 1}, {97, 61}};
  for (int k = 0; k < 4; k++) {
    kiln_image img, back;
    kiln_error err;
    REQUIRE(kiln_image_create(sizes[k][0], sizes[k][1], &img, &err) == KILN_OK);
    for (size_t i = 0; i < img.stride * (size_t)img.height; i++)
      img.pixels[i] = (uint8_t)(k == 3 && i > 5000 ? i / 37 : test_rand_u32(&rng));
    uint8_t *bytes;
    size_t size;
    REQUIRE(kiln_image_encode_png(&img, &bytes, &size, &err) == KILN_OK);
    CHECK(size > 8 && memcmp(bytes, "\x89PNG\r\n\x1a\n", 8) == 0);
    REQUIRE(kiln_image_decode_memory(bytes, size, "enc.png", NULL, &back, &err) == KILN_OK);
    CHECK(test_image_max_diff(&img, &back) == 0);
    CHECK(back.format == KILN_IMAGE_PNG);
    kiln_free(bytes);
    kiln_image_free(&back);
    kiln_image_free(&img);
  }
}

static void test_write_png_file(void) {
  char dir[] = "/tmp/kiln_image_test_XXXXXX";
  REQUIRE(mkdtemp(dir) != NULL);
  char path[256];
  snprintf(path, sizeof path, "%s/out.png", dir);
  kiln_image img, back;
  kiln_error err;
  REQUIRE(kiln_image_create(33, 17, &img, &err) == KILN_OK);
  kiln_image_draw_box(&img, 2, 2, 30, 15, 2, red);
  kiln_image_draw_text(&img, 2, 2, "cat 0.9", 1, white, &red);
  CHECK(kiln_image_write_png(&img, path, &err) == KILN_OK);
  REQUIRE(kiln_image_decode_file(path, NULL, &back, &err) == KILN_OK);
  CHECK(test_image_max_diff(&img, &back) == 0);
  kiln_image_free(&back);
  /* Overwrite: the new file replaces the old one whole. */
  kiln_image_fill_rect(&img, 0, 0, 33, 17, white);
  CHECK(kiln_image_write_png(&img, path, &err) == KILN_OK);
  REQUIRE(kiln_image_decode_file(path, NULL, &back, &err) == KILN_OK);
  CHECK(test_image_max_diff(&img, &back) == 0);
  kiln_image_free(&back);
  unlink(path);
  rmdir(dir);

  CHECK(kiln_image_write_png(&img, "/nonexistent-dir/out.png", &err) == KILN_ERR_IO);
  CHECK_MSG(strstr(err.msg, "/nonexistent-dir/out.png") == err.msg, "%s", err.msg);
  kiln_image empty = {0};
  CHECK(kiln_image_write_png(&empty, "x.png", &err) == KILN_ERR_INVALID_ARG);
  CHECK_MSG(strstr(err.msg, "x.png: ") == err.msg, "%s", err.msg);
  CHECK(kiln_image_create(0, 5, &back, &err) == KILN_ERR_INVALID_ARG);
  kiln_image_free(&img);
  kiln_image_free(NULL);
}

int main(void) {
  RUN(test_boxes);
  RUN(test_font_table);
  RUN(test_text);
  RUN(test_png_round_trip);
  RUN(test_write_png_file);
  return test_summary();
}
